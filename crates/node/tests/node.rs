//! The node over gRPC: a real `RunningNode` on 127.0.0.1 and the generated tonic client.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_identity::{Account, InboxState, KeyPair};
use ferry_node::{AccessPolicy, Database, NodeConfig, NodeError, RunningNode, StorageError};
use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::node_client::NodeClient;
use ferry_proto::node::*;
use ferry_proto::tonic::transport::Channel;
use ferry_proto::tonic::{Code, Status, Streaming};

const WAIT: Duration = Duration::from_secs(10);

/// A node that serves unsigned calls: these tests are about storage, ordering and relaying
/// and drive the API with made-up key packages and messages; access control (signatures,
/// key-package checks, rate limits) has its own suite, tests/access.rs.
/// Every test of this suite runs on both storage backends: SQLite (in memory, or a file when
/// a test restarts the node) and PostgreSQL (a throwaway cluster started by the tests, one
/// database per test).
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A new, empty database that outlives a node (SQLite: a file in `dir`).
    async fn database(self, dir: &Path) -> Database {
        match self {
            Backend::Sqlite => Database::Sqlite(dir.join("node.db")),
            Backend::Postgres => tokio::task::spawn_blocking(|| {
                Database::parse(&ferry_testkit::Postgres::shared().fresh_database())
            })
            .await
            .unwrap(),
        }
    }

    /// A node on a new, empty database of this backend.
    async fn start(self) -> RunningNode {
        let db = match self {
            Backend::Sqlite => Database::Memory,
            Backend::Postgres => self.database(Path::new("")).await,
        };
        start(db).await
    }
}

/// Runs each named test body once per backend, as `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    identity_log_accepts_valid_updates_in_order,
    forged_account_signature_is_refused,
    add_without_installation_signature_is_refused,
    replayed_update_and_unknown_inbox_are_refused,
    key_packages_regular_once_then_last_resort,
    group_messages_get_increasing_ids_and_page_in_order,
    rival_commits_for_an_epoch_are_kept_in_arrival_order,
    subscription_sees_new_messages_of_its_groups_only,
    welcomes_are_stored_queried_and_relayed_per_installation,
    restart_on_the_same_database_keeps_everything,
    stop_is_prompt_with_a_subscription_open,
    lagging_subscriber_is_told_to_requery,
    pages_are_capped_by_bytes_so_large_messages_still_page,
);

async fn start(db: Database) -> RunningNode {
    tokio::task::spawn_blocking(move || {
        RunningNode::start(NodeConfig {
            listen: "127.0.0.1:0".into(),
            db,
            access: AccessPolicy::open(),
            ..Default::default()
        })
        .expect("node starts")
    })
    .await
    .unwrap()
}

async fn stop(node: RunningNode) {
    tokio::task::spawn_blocking(move || node.stop())
        .await
        .unwrap();
}

async fn client(node: &RunningNode) -> NodeClient<Channel> {
    NodeClient::connect(node.url()).await.expect("connects")
}

/// An inbox being built up on the client side, with its log so far.
struct Inbox {
    account: Account,
    state: InboxState,
    log: Vec<IdentityUpdate>,
}

impl Inbox {
    fn new() -> Self {
        let account = Account::new(KeyPair::generate());
        let create = account.create_inbox(1).unwrap();
        let state = InboxState::replay(&account.inbox_id(), std::slice::from_ref(&create)).unwrap();
        Inbox {
            account,
            state,
            log: vec![create],
        }
    }

    fn id(&self) -> String {
        self.account.inbox_id()
    }

    /// The next entry adding `installation`, applied locally.
    fn add(&mut self, installation: &KeyPair) -> IdentityUpdate {
        let u = self
            .account
            .add_installation(&self.state, installation, 2)
            .unwrap();
        self.state.apply(&u).unwrap();
        self.log.push(u.clone());
        u
    }

    fn revoke(&mut self, installation: &KeyPair) -> IdentityUpdate {
        let u = self
            .account
            .revoke_installation(&self.state, &installation.public_key(), 3)
            .unwrap();
        self.state.apply(&u).unwrap();
        self.log.push(u.clone());
        u
    }
}

async fn publish(c: &mut NodeClient<Channel>, update: &IdentityUpdate) -> Result<u64, Status> {
    c.publish_identity_update(PublishIdentityUpdateRequest {
        update: Some(update.clone()),
    })
    .await
    .map(|r| r.into_inner().sequence)
}

async fn log_of(c: &mut NodeClient<Channel>, inbox_id: &str) -> Vec<IdentityUpdate> {
    let logs = c
        .get_identity_logs(GetIdentityLogsRequest {
            inbox_ids: vec![inbox_id.to_string()],
        })
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].inbox_id, inbox_id);
    logs.into_iter().next().unwrap().updates
}

/// A new inbox with one installation, published.
async fn registered_installation(c: &mut NodeClient<Channel>) -> (Inbox, KeyPair) {
    let mut inbox = Inbox::new();
    let installation = KeyPair::generate();
    let add = inbox.add(&installation);
    publish(c, &inbox.log[0]).await.unwrap();
    publish(c, &add).await.unwrap();
    (inbox, installation)
}

fn msg(group: &[u8], data: &[u8], commit_epoch: Option<u64>) -> GroupMessageInput {
    GroupMessageInput {
        group_id: group.to_vec(),
        data: data.to_vec(),
        commit_epoch,
    }
}

async fn send(
    c: &mut NodeClient<Channel>,
    messages: Vec<GroupMessageInput>,
) -> Result<Vec<u64>, Status> {
    c.send_group_messages(SendGroupMessagesRequest { messages })
        .await
        .map(|r| r.into_inner().sequence_ids)
}

async fn query(
    c: &mut NodeClient<Channel>,
    group: &[u8],
    after: u64,
    limit: u32,
) -> QueryGroupMessagesResponse {
    c.query_group_messages(QueryGroupMessagesRequest {
        group_id: group.to_vec(),
        after_sequence_id: after,
        limit,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn fetch_key_package(c: &mut NodeClient<Channel>, installation: &KeyPair) -> Vec<u8> {
    let entries = c
        .fetch_key_packages(FetchKeyPackagesRequest {
            installation_ids: vec![installation.public_key().to_vec()],
        })
        .await
        .unwrap()
        .into_inner()
        .key_packages;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].installation_id, installation.public_key());
    entries.into_iter().next().unwrap().key_package
}

async fn upload_key_package(
    c: &mut NodeClient<Channel>,
    installation: &[u8],
    key_package: &[u8],
    last_resort: bool,
) -> Result<(), Status> {
    c.upload_key_package(UploadKeyPackageRequest {
        key_package: key_package.to_vec(),
        last_resort,
        installation_id: installation.to_vec(),
    })
    .await
    .map(|_| ())
}

async fn next_item<T>(stream: &mut Streaming<T>) -> Result<Option<T>, Status> {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("stream item within the timeout")
}

async fn identity_log_accepts_valid_updates_in_order(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let mut inbox = Inbox::new();
    let (a, b) = (KeyPair::generate(), KeyPair::generate());
    inbox.add(&a);
    inbox.add(&b);
    for (i, u) in inbox.log.iter().enumerate() {
        assert_eq!(publish(&mut c, u).await.unwrap(), i as u64);
    }

    let logs = c
        .get_identity_logs(GetIdentityLogsRequest {
            inbox_ids: vec![inbox.id(), "no-such-inbox".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].inbox_id, inbox.id());
    assert_eq!(logs[0].updates, inbox.log);
    assert_eq!(logs[1].inbox_id, "no-such-inbox");
    assert!(logs[1].updates.is_empty());

    let state = InboxState::replay(&inbox.id(), &logs[0].updates).unwrap();
    assert!(state.is_active(&a.public_key()) && state.is_active(&b.public_key()));
    stop(node).await;
}

async fn forged_account_signature_is_refused(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let inbox = Inbox::new();
    publish(&mut c, &inbox.log[0]).await.unwrap();

    // Someone else's account key signs an addition to this inbox.
    let mallory = Account::new(KeyPair::generate());
    let forged = mallory
        .add_installation(&inbox.state, &KeyPair::generate(), 2)
        .unwrap();
    let err = publish(&mut c, &forged).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("account signature"), "{err:?}");

    // A forged first entry: the inbox id is not the signer's.
    let mut forged_create = mallory.create_inbox(1).unwrap();
    forged_create.account_signature[0] ^= 1;
    let err = publish(&mut c, &forged_create).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    assert_eq!(log_of(&mut c, &inbox.id()).await.len(), 1);
    assert!(log_of(&mut c, &mallory.inbox_id()).await.is_empty());
    stop(node).await;
}

async fn add_without_installation_signature_is_refused(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let mut inbox = Inbox::new();
    publish(&mut c, &inbox.log[0]).await.unwrap();
    let installation = KeyPair::generate();
    let mut add = inbox.add(&installation);
    add.installation_signature.clear();

    let err = publish(&mut c, &add).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("installation"), "{err:?}");
    assert_eq!(log_of(&mut c, &inbox.id()).await.len(), 1);

    // Nor can the installation upload key packages.
    let err = upload_key_package(&mut c, &installation.public_key(), b"kp", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    stop(node).await;
}

async fn replayed_update_and_unknown_inbox_are_refused(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let mut inbox = Inbox::new();
    let add = inbox.add(&KeyPair::generate());
    publish(&mut c, &inbox.log[0]).await.unwrap();
    publish(&mut c, &add).await.unwrap();

    for u in [&inbox.log[0], &add] {
        let err = publish(&mut c, u).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    }
    assert_eq!(log_of(&mut c, &inbox.id()).await, inbox.log);

    // An addition to an inbox the node has never seen.
    let mut unknown = Inbox::new();
    let add = unknown.add(&KeyPair::generate());
    let err = publish(&mut c, &add).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // The same installation cannot join a second inbox.
    let mut other = Inbox::new();
    publish(&mut c, &other.log[0]).await.unwrap();
    let shared = KeyPair::generate();
    let first = inbox.add(&shared);
    publish(&mut c, &first).await.unwrap();
    let second = other.add(&shared);
    let err = publish(&mut c, &second).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    stop(node).await;
}

async fn key_packages_regular_once_then_last_resort(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;

    let stranger = KeyPair::generate();
    let err = upload_key_package(&mut c, &stranger.public_key(), b"kp", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(fetch_key_package(&mut c, &stranger).await.is_empty());

    let (mut inbox, installation) = registered_installation(&mut c).await;
    let id = installation.public_key();
    let err = upload_key_package(&mut c, &id, b"", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = upload_key_package(&mut c, &id, &vec![7; 64 * 1024 + 1], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    upload_key_package(&mut c, &id, b"regular-1", false)
        .await
        .unwrap();
    upload_key_package(&mut c, &id, b"regular-2", false)
        .await
        .unwrap(); // replaces regular-1
    upload_key_package(&mut c, &id, b"last-resort", true)
        .await
        .unwrap();

    assert_eq!(fetch_key_package(&mut c, &installation).await, b"regular-2");
    for _ in 0..3 {
        assert_eq!(
            fetch_key_package(&mut c, &installation).await,
            b"last-resort"
        );
    }

    upload_key_package(&mut c, &id, b"regular-3", false)
        .await
        .unwrap();
    let revoke = inbox.revoke(&installation);
    publish(&mut c, &revoke).await.unwrap();
    assert!(fetch_key_package(&mut c, &installation).await.is_empty());
    let err = upload_key_package(&mut c, &id, b"regular-4", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(fetch_key_package(&mut c, &installation).await.is_empty());
    stop(node).await;
}

async fn group_messages_get_increasing_ids_and_page_in_order(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;

    let mut ids = send(&mut c, vec![msg(b"a", b"a0", None), msg(b"b", b"b0", None)])
        .await
        .unwrap();
    ids.extend(
        send(
            &mut c,
            vec![
                msg(b"a", b"a1", None),
                msg(b"a", b"a2", Some(0)),
                msg(b"a", b"a3", None),
            ],
        )
        .await
        .unwrap(),
    );
    ids.extend(send(&mut c, vec![msg(b"a", b"a4", None)]).await.unwrap());
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let a_ids: Vec<u64> = [0, 2, 3, 4, 5].iter().map(|&i| ids[i]).collect();

    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = query(&mut c, b"a", after, 2).await;
        if page.messages.is_empty() {
            assert_eq!(page.cursor, after);
            break;
        }
        assert_eq!(page.cursor, page.messages.last().unwrap().sequence_id);
        after = page.cursor;
        pages.push(page.messages);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let all: Vec<GroupMessage> = pages.into_iter().flatten().collect();
    assert_eq!(all.iter().map(|m| m.sequence_id).collect::<Vec<_>>(), a_ids);
    assert_eq!(
        all.iter().map(|m| m.data.as_slice()).collect::<Vec<_>>(),
        [b"a0", b"a1", b"a2", b"a3", b"a4"]
    );
    assert!(all
        .iter()
        .all(|m| m.group_id == b"a" && m.created_at_ns > 0));

    // Limit 0 means the default page; other groups stay apart.
    let b = query(&mut c, b"b", 0, 0).await;
    assert_eq!(b.messages.len(), 1);
    assert_eq!(b.messages[0].data, b"b0");

    let err = send(&mut c, vec![msg(b"", b"x", None)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = send(&mut c, vec![msg(b"a", b"", None)]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    stop(node).await;
}

async fn rival_commits_for_an_epoch_are_kept_in_arrival_order(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let first = send(&mut c, vec![msg(b"g", b"commit-e1", Some(1))])
        .await
        .unwrap();
    // The node keeps order; deciding which commit counts is the clients' job.
    let second = send(
        &mut c,
        vec![msg(b"g", b"app", None), msg(b"g", b"rival-e1", Some(1))],
    )
    .await
    .unwrap();
    assert!(first[0] < second[0]);
    assert!(second[0] < second[1]);
    let stored = query(&mut c, b"g", 0, 0).await.messages;
    assert_eq!(
        stored.iter().map(|m| m.data.as_slice()).collect::<Vec<_>>(),
        [b"commit-e1".as_slice(), b"app", b"rival-e1"]
    );
    stop(node).await;
}

async fn subscription_sees_new_messages_of_its_groups_only(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    send(&mut c, vec![msg(b"mine", b"before", None)])
        .await
        .unwrap();

    let mut sub = c
        .subscribe_group_messages(SubscribeGroupMessagesRequest {
            group_ids: vec![b"mine".to_vec(), b"also-mine".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();

    let mut sender = client(&node).await;
    send(&mut sender, vec![msg(b"theirs", b"not for me", None)])
        .await
        .unwrap();
    let ids = send(
        &mut sender,
        vec![
            msg(b"mine", b"after", None),
            msg(b"also-mine", b"too", None),
        ],
    )
    .await
    .unwrap();

    // Delivered in order, so had "before" or "theirs" slipped through they would come first.
    let first = next_item(&mut sub).await.unwrap().expect("a message");
    assert_eq!(
        (first.group_id.as_slice(), first.data.as_slice()),
        (b"mine".as_slice(), b"after".as_slice())
    );
    assert_eq!(first.sequence_id, ids[0]);
    let second = next_item(&mut sub).await.unwrap().expect("a message");
    assert_eq!(second.data, b"too");
    assert_eq!(second.sequence_id, ids[1]);

    drop(sub);
    stop(node).await;
}

async fn welcomes_are_stored_queried_and_relayed_per_installation(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let (me, them) = (
        KeyPair::generate().public_key(),
        KeyPair::generate().public_key(),
    );
    let welcome = |to: &[u8; 32], data: &[u8]| WelcomeInput {
        installation_id: to.to_vec(),
        data: data.to_vec(),
    };
    c.send_welcomes(SendWelcomesRequest {
        welcomes: vec![welcome(&me, b"w0")],
    })
    .await
    .unwrap();

    let mut sub = c
        .subscribe_welcomes(SubscribeWelcomesRequest {
            installation_id: me.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut sender = client(&node).await;
    sender
        .send_welcomes(SendWelcomesRequest {
            welcomes: vec![
                welcome(&them, b"theirs"),
                welcome(&me, b"w1"),
                welcome(&me, b"w2"),
            ],
        })
        .await
        .unwrap();

    let w = next_item(&mut sub).await.unwrap().expect("a welcome");
    assert_eq!(
        (w.installation_id.as_slice(), w.data.as_slice()),
        (me.as_slice(), b"w1".as_slice())
    );
    let w = next_item(&mut sub).await.unwrap().expect("a welcome");
    assert_eq!(w.data, b"w2");

    let page = c
        .query_welcomes(QueryWelcomesRequest {
            installation_id: me.to_vec(),
            after_sequence_id: 0,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.welcomes
            .iter()
            .map(|w| w.data.as_slice())
            .collect::<Vec<_>>(),
        [b"w0", b"w1"]
    );
    assert_eq!(page.cursor, page.welcomes[1].sequence_id);
    let rest = c
        .query_welcomes(QueryWelcomesRequest {
            installation_id: me.to_vec(),
            after_sequence_id: page.cursor,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.welcomes.len(), 1);
    assert_eq!(rest.welcomes[0].data, b"w2");
    assert!(rest.welcomes[0].sequence_id > page.cursor);

    let err = c
        .send_welcomes(SendWelcomesRequest {
            welcomes: vec![WelcomeInput {
                installation_id: b"short".to_vec(),
                data: b"x".to_vec(),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    drop(sub);
    stop(node).await;
}

async fn restart_on_the_same_database_keeps_everything(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path()).await;
    let installation = KeyPair::generate().public_key();

    let node = start(db.clone()).await;
    let mut c = client(&node).await;
    let (inbox, _) = registered_installation(&mut c).await;
    let first_ids = send(
        &mut c,
        vec![msg(b"g", b"m0", Some(0)), msg(b"g", b"m1", None)],
    )
    .await
    .unwrap();
    c.send_welcomes(SendWelcomesRequest {
        welcomes: vec![WelcomeInput {
            installation_id: installation.to_vec(),
            data: b"w0".to_vec(),
        }],
    })
    .await
    .unwrap();
    drop(c);
    stop(node).await;

    let node = start(db).await;
    let mut c = client(&node).await;
    assert_eq!(log_of(&mut c, &inbox.id()).await, inbox.log);
    let stored = query(&mut c, b"g", 0, 0).await.messages;
    assert_eq!(
        stored.iter().map(|m| m.sequence_id).collect::<Vec<_>>(),
        first_ids
    );
    let new_ids = send(&mut c, vec![msg(b"g", b"m2", None)]).await.unwrap();
    assert!(new_ids[0] > first_ids[1], "{new_ids:?} after {first_ids:?}");

    let welcomes = |after| QueryWelcomesRequest {
        installation_id: installation.to_vec(),
        after_sequence_id: after,
        limit: 0,
    };
    let before = c.query_welcomes(welcomes(0)).await.unwrap().into_inner();
    assert_eq!(before.welcomes.len(), 1);
    assert_eq!(before.welcomes[0].data, b"w0");
    c.send_welcomes(SendWelcomesRequest {
        welcomes: vec![WelcomeInput {
            installation_id: installation.to_vec(),
            data: b"w1".to_vec(),
        }],
    })
    .await
    .unwrap();
    let after = c
        .query_welcomes(welcomes(before.cursor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.welcomes.len(), 1);
    assert!(after.welcomes[0].sequence_id > before.cursor);
    stop(node).await;
}

async fn stop_is_prompt_with_a_subscription_open(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let mut groups = c
        .subscribe_group_messages(SubscribeGroupMessagesRequest {
            group_ids: vec![b"g".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut welcomes = c
        .subscribe_welcomes(SubscribeWelcomesRequest {
            installation_id: vec![1; 32],
        })
        .await
        .unwrap()
        .into_inner();

    let started = Instant::now();
    tokio::time::timeout(WAIT, stop(node))
        .await
        .expect("stop returns");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The streams end rather than hang.
    let groups_end = next_item(&mut groups).await;
    assert!(
        matches!(&groups_end, Ok(None))
            || matches!(&groups_end, Err(s) if s.code() == Code::Unavailable),
        "{groups_end:?}"
    );
    let welcomes_end = next_item(&mut welcomes).await;
    assert!(
        matches!(&welcomes_end, Ok(None))
            || matches!(&welcomes_end, Err(s) if s.code() == Code::Unavailable),
        "{welcomes_end:?}"
    );
}

async fn lagging_subscriber_is_told_to_requery(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let mut sub = c
        .subscribe_group_messages(SubscribeGroupMessagesRequest {
            group_ids: vec![b"g".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();

    // Far more than the subscriber buffer plus what HTTP/2 flow control lets through, while the
    // subscriber reads nothing.
    let mut sender = client(&node).await;
    let batches = 50u64;
    for i in 0..batches {
        let batch = (0..10)
            .map(|_| msg(b"g", &vec![i as u8; 64 * 1024], None))
            .collect();
        send(&mut sender, batch).await.unwrap();
    }

    let mut received = 0u64;
    let status = loop {
        match next_item(&mut sub).await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("stream ended without a status after {received} messages"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(received < batches * 10, "{received}");
    stop(node).await;
}

#[test]
fn start_errors_name_the_address_and_the_path() {
    let first = RunningNode::start(NodeConfig::default()).unwrap();
    let err = RunningNode::start(NodeConfig {
        listen: first.addr().to_string(),
        db: ferry_node::Database::Memory,
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, NodeError::Bind { .. }), "{err:?}");
    assert!(err.to_string().contains(&first.addr().to_string()), "{err}");
    first.stop();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("node.db");
    let err = RunningNode::start(NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: ferry_node::Database::Sqlite(path.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, NodeError::Storage(StorageError::Open { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // PostgreSQL that does not answer: a typed error naming the URL, without its password.
    let port = ferry_testkit::free_port();
    let err = RunningNode::start(NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: Database::Postgres {
            url: format!("postgres://ferry:secret@127.0.0.1:{port}/ferry?connect_timeout=2"),
            pool_size: 2,
        },
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, NodeError::Storage(StorageError::Open { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert!(
        err.is_retryable(),
        "an unreachable database may come back: {err:?}"
    );
}

async fn pages_are_capped_by_bytes_so_large_messages_still_page(backend: Backend) {
    let node = backend.start().await;
    let mut c = client(&node).await;
    let big = vec![7u8; 3 << 20];
    for _ in 0..3 {
        send(&mut c, vec![msg(b"g", &big, None)]).await.unwrap();
    }
    send(&mut c, vec![msg(b"g", b"small", None)]).await.unwrap();
    // 3 MiB messages: one per page, then the rest, never a page over the cap.
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = query(&mut c, b"g", after, 0).await;
        if page.messages.is_empty() {
            break;
        }
        let bytes: usize = page.messages.iter().map(|m| m.data.len()).sum();
        assert!(bytes <= ferry_node::MAX_PAGE_BYTES || page.messages.len() == 1);
        pages.push(page.messages.len());
        after = page.cursor;
    }
    assert_eq!(pages, [1, 1, 2], "{pages:?}");
    stop(node).await;
}
