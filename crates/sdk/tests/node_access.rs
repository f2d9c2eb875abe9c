//! The node's access control as members see it: Ferry clients on a real node whose rate
//! limits are small, while a registered installation that is not a member floods their
//! conversation through its own signed transport. The members keep sending and syncing; what
//! their sync has to reject is bounded by the flooder's limit, not by the size of the flood.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_identity::{Account, InboxState, KeyPair};
use ferry_node::{AccessPolicy, NodeConfig, RateLimits, RunningNode};
use ferry_sdk::blocking::Client;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};
use ferry_transport::node::GroupMessageInput;
use ferry_transport::{GrpcTransport, Transport};

const WRITES_PER_SECOND: u32 = 20;
const WRITE_BURST: u32 = 50;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn client(dir: &std::path::Path, node: &RunningNode, name: &str) -> Client {
    let mut o = ClientOptions::new(dir.join(name), node.url(), AccountKey::New);
    o.send_check_interval = Duration::from_secs(3600);
    o.sync_check_interval = Duration::from_secs(3600);
    Client::create(o).unwrap().client
}

/// A registered installation of a new inbox, and a transport that signs as it.
async fn stranger(url: &str) -> GrpcTransport {
    let transport = GrpcTransport::connect(url).unwrap();
    let account = Account::new(KeyPair::generate());
    let create = account.create_inbox(now_ns()).unwrap();
    transport
        .publish_identity_update(create.clone())
        .await
        .unwrap();
    let state = InboxState::replay(&account.inbox_id(), &[create]).unwrap();
    let installation = KeyPair::generate();
    let add = account
        .add_installation(&state, &installation, now_ns())
        .unwrap();
    transport.publish_identity_update(add).await.unwrap();
    transport.with_signer(Arc::new(installation))
}

#[test]
fn members_keep_syncing_while_a_registered_stranger_floods_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(NodeConfig {
        access: AccessPolicy {
            authenticate: true,
            limits: RateLimits {
                writes_per_second: WRITES_PER_SECOND,
                write_burst: WRITE_BURST,
                ..RateLimits::default()
            },
        },
        ..NodeConfig::default()
    })
    .unwrap();
    let alice = client(dir.path(), &node, "alice");
    let bob = client(dir.path(), &node, "bob");
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("before the flood").unwrap();
    bob.sync_all().unwrap();

    // The flooder honours the node's hints (it is Ferry's own transport), so it sends at
    // the limit: a burst, then the steady rate.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = node.url();
    let group = g.id().to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        runtime.spawn(async move {
            let transport = stranger(&url).await;
            for i in 0..3000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let junk = GroupMessageInput {
                    group_id: group.clone(),
                    data: i.to_be_bytes().repeat(75),
                    commit_epoch: None,
                };
                transport
                    .send_group_messages(vec![junk])
                    .await
                    .expect("a throttled send waits as hinted and then goes through");
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let it run into its limit.
    while sent.load(Ordering::Relaxed) < WRITE_BURST + 10 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the flood stalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The members are not throttled by someone else's flood.
    g.send("during the flood").unwrap();
    let synced = Instant::now();
    bob.sync_all().unwrap();
    let bob_sync = synced.elapsed();
    let texts: Vec<String> = bob
        .conversation(g.id())
        .unwrap()
        .messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text())
        .collect();
    assert!(
        texts.contains(&"during the flood".to_string()),
        "bob has alice's message: {texts:?}"
    );
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(flood).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    let allowed = f64::from(WRITE_BURST) + f64::from(WRITES_PER_SECOND) * elapsed;
    assert!(
        f64::from(sent) <= allowed + 1.0,
        "{sent} junk messages stored in {elapsed:.2} s; the limit allows {allowed:.0}"
    );
    eprintln!(
        "flood: {sent} junk messages in {elapsed:.2} s (limit {allowed:.0}); bob's sync took \
         {} ms",
        bob_sync.as_millis()
    );
}
