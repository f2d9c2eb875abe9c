//! Several node replicas on one PostgreSQL database (a throwaway cluster started by the
//! tests), each a real `RunningNode` on loopback, driven over gRPC.
//!
//! A replica killed with SIGKILL is proven by `ferry bench load --replicas` (its test is in
//! crates/cli/tests/node_load.rs): real node processes, real SDK clients.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry_node::{AccessPolicy, Database, NodeConfig, RunningNode};
use ferry_proto::node::node_client::NodeClient;
use ferry_proto::node::*;
use ferry_proto::tonic::transport::Channel;

/// `n` replicas (open access: these tests are about ordering and relaying) on one new
/// database.
async fn replicas(n: usize) -> Vec<RunningNode> {
    tokio::task::spawn_blocking(move || {
        let url = ferry_testkit::Postgres::shared().fresh_database();
        (0..n)
            .map(|_| {
                RunningNode::start(NodeConfig {
                    listen: "127.0.0.1:0".into(),
                    db: Database::parse(&url),
                    access: AccessPolicy::open(),
                    ..Default::default()
                })
                .expect("replica starts")
            })
            .collect()
    })
    .await
    .unwrap()
}

async fn stop(nodes: Vec<RunningNode>) {
    tokio::task::spawn_blocking(move || nodes.into_iter().for_each(RunningNode::stop))
        .await
        .unwrap();
}

async fn client(node: &RunningNode) -> NodeClient<Channel> {
    NodeClient::connect(node.url()).await.expect("connects")
}

fn msg(group: &[u8], data: Vec<u8>, commit_epoch: Option<u64>) -> GroupMessageInput {
    GroupMessageInput {
        group_id: group.to_vec(),
        data,
        commit_epoch,
    }
}

async fn query_all(c: &mut NodeClient<Channel>, group: &[u8]) -> Vec<GroupMessage> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let page = c
            .query_group_messages(QueryGroupMessagesRequest {
                group_id: group.to_vec(),
                after_sequence_id: cursor,
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        cursor = page.cursor;
        let done = page.last_page || page.messages.is_empty();
        all.extend(page.messages);
        if done {
            return all;
        }
    }
}

/// Writers on both replicas send batches into one group while a reader on one of them pages
/// by cursor as fast as it can: the reader never skips a message that commits late (it ends
/// up with every message, each once, in id order, without ever going back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_paging_by_cursor_never_skips_a_message_written_through_another_replica() {
    let nodes = replicas(2).await;
    const WRITERS: usize = 4;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 3;
    let total = WRITERS * BATCHES * PER_BATCH;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut c = client(&nodes[w % 2]).await;
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for b in 0..BATCHES {
                let batch = (0..PER_BATCH)
                    .map(|i| msg(b"g", format!("{w}-{b}-{i}").into_bytes(), None))
                    .collect();
                let r = c
                    .send_group_messages(SendGroupMessagesRequest { messages: batch })
                    .await
                    .unwrap()
                    .into_inner();
                ids.extend(r.sequence_ids);
            }
            ids
        }));
    }
    let mut reader = client(&nodes[1]).await;
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} seen",
            seen.len()
        );
        let page = reader
            .query_group_messages(QueryGroupMessagesRequest {
                group_id: b"g".to_vec(),
                after_sequence_id: cursor,
                limit: 7,
            })
            .await
            .unwrap()
            .into_inner();
        for m in &page.messages {
            assert!(m.sequence_id > cursor, "ids ascend past the cursor");
            cursor = m.sequence_id;
            seen.push(m.sequence_id);
        }
    }
    let mut written = BTreeSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    assert_eq!(written.len(), total);
    assert_eq!(seen.len(), total, "each message seen once");
    assert_eq!(
        seen.iter().copied().collect::<BTreeSet<_>>(),
        written,
        "none skipped"
    );
    stop(nodes).await;
}

/// A subscriber on replica B gets what is published through replica A, in order, quickly:
/// p99 of publish-to-receipt under 200 ms on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_replica_gets_what_another_stores_within_200_ms() {
    let nodes = replicas(2).await;
    let mut sub = client(&nodes[1])
        .await
        .subscribe_group_messages(SubscribeGroupMessagesRequest {
            group_ids: vec![b"g".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut sender = client(&nodes[0]).await;
    const N: usize = 200;
    let mut latencies = Vec::with_capacity(N);
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let sent = Instant::now();
        let r = sender
            .send_group_messages(SendGroupMessagesRequest {
                messages: vec![msg(b"g", (i as u32).to_be_bytes().to_vec(), None)],
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(r.sequence_ids);
        let got = tokio::time::timeout(Duration::from_secs(5), sub.message())
            .await
            .expect("pushed within 5 s")
            .unwrap()
            .expect("stream open");
        latencies.push(sent.elapsed());
        assert_eq!(got.data, (i as u32).to_be_bytes(), "in order");
        assert_eq!(Some(&got.sequence_id), ids.last());
    }
    latencies.sort();
    let p99 = latencies[N * 99 / 100 - 1];
    eprintln!(
        "cross-replica push: p50 {:?}, p99 {p99:?}, max {:?}",
        latencies[N / 2],
        latencies[N - 1]
    );
    assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");
    stop(nodes).await;
}

/// Rival commits of one epoch sent at once through two replicas: every replica serves them
/// in one and the same order, so every client applies the same first one ("the first valid
/// commit wins" agrees across replicas); a subscriber on each replica is pushed that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rival_commits_through_two_replicas_are_served_in_one_order_everywhere() {
    let nodes = replicas(2).await;
    let mut subs = Vec::new();
    for node in &nodes {
        subs.push(
            client(node)
                .await
                .subscribe_group_messages(SubscribeGroupMessagesRequest {
                    group_ids: vec![b"g".to_vec()],
                })
                .await
                .unwrap()
                .into_inner(),
        );
    }
    const ROUNDS: u64 = 20;
    for epoch in 0..ROUNDS {
        let mut a = client(&nodes[0]).await;
        let mut b = client(&nodes[1]).await;
        let (ra, rb) = tokio::join!(
            a.send_group_messages(SendGroupMessagesRequest {
                messages: vec![msg(b"g", format!("a{epoch}").into_bytes(), Some(epoch))],
            }),
            b.send_group_messages(SendGroupMessagesRequest {
                messages: vec![msg(b"g", format!("b{epoch}").into_bytes(), Some(epoch))],
            }),
        );
        let (ia, ib) = (ra.unwrap().into_inner(), rb.unwrap().into_inner());
        assert_ne!(ia.sequence_ids, ib.sequence_ids);
    }
    let mut orders = Vec::new();
    for node in &nodes {
        let mut c = client(node).await;
        orders.push(
            query_all(&mut c, b"g")
                .await
                .into_iter()
                .map(|m| (m.sequence_id, m.data))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(orders[0].len(), 2 * ROUNDS as usize);
    assert_eq!(orders[0], orders[1], "both replicas serve one order");
    for sub in &mut subs {
        let mut pushed = Vec::new();
        while pushed.len() < orders[0].len() {
            let m = tokio::time::timeout(Duration::from_secs(5), sub.message())
                .await
                .expect("pushed")
                .unwrap()
                .expect("open");
            pushed.push((m.sequence_id, m.data));
        }
        assert_eq!(pushed, orders[0], "pushed in the stored order");
    }
    stop(nodes).await;
}
