//! Access control, tried from the outside: a raw gRPC client (tonic's generated one) against a
//! real node on 127.0.0.1, with no keys, a stranger's keys, a revoked installation's keys, or
//! requests copied off the wire. Each refusal is checked by its status code; the legitimate
//! installation's calls keep working throughout.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_identity::request_auth::HEADER_RETRY_AFTER_MS;
use ferry_identity::{Account, InboxState, KeyPair};
use ferry_node::{AccessPolicy, NodeConfig, RateLimits, RunningNode};
use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::node_client::NodeClient;
use ferry_proto::node::*;
use ferry_proto::tonic::transport::Channel;
use ferry_proto::tonic::{Code, Request, Status};

/// Limits small enough to reach in a test: 20 messages a second, 50 at once.
const LIMITS: RateLimits = RateLimits {
    writes_per_second: 20,
    write_burst: 50,
    reads_per_second: 1000,
    read_burst: 5000,
    anonymous_per_second: 1000,
    anonymous_burst: 5000,
};

async fn start(limits: RateLimits) -> RunningNode {
    tokio::task::spawn_blocking(move || {
        RunningNode::start(NodeConfig {
            access: AccessPolicy {
                authenticate: true,
                limits,
            },
            ..NodeConfig::default()
        })
        .expect("node starts")
    })
    .await
    .unwrap()
}

async fn client(node: &RunningNode) -> NodeClient<Channel> {
    NodeClient::connect(node.url()).await.expect("connects")
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// `body` for `method`, signed by `key` at `timestamp_ns` with `nonce`.
fn signed_at<T: prost::Message>(
    key: &KeyPair,
    method: &str,
    body: T,
    timestamp_ns: i64,
    nonce: [u8; 16],
) -> Request<T> {
    ferry_transport::signed_request(key, method, body, timestamp_ns, nonce).unwrap()
}

/// `body` for `method`, signed by `key` now with a fresh nonce.
fn signed<T: prost::Message>(key: &KeyPair, method: &str, body: T) -> Request<T> {
    let nonce: [u8; 16] = KeyPair::generate().public_key()[..16].try_into().unwrap();
    signed_at(key, method, body, now_ns(), nonce)
}

/// An inbox with one registered installation, made through the node's public calls.
struct Person {
    account: Account,
    state: InboxState,
    log: Vec<IdentityUpdate>,
    installation: KeyPair,
}

impl Person {
    async fn register(c: &mut NodeClient<Channel>) -> Person {
        let account = Account::new(KeyPair::generate());
        let create = account.create_inbox(1).unwrap();
        let inbox = account.inbox_id();
        let state = InboxState::replay(&inbox, std::slice::from_ref(&create)).unwrap();
        let mut person = Person {
            account,
            state,
            log: vec![create.clone()],
            installation: KeyPair::generate(),
        };
        publish(c, create).await.unwrap();
        let installation = KeyPair::from_seed(&person.installation.seed());
        person.add(c, &installation).await;
        person
    }

    async fn add(&mut self, c: &mut NodeClient<Channel>, installation: &KeyPair) {
        let update = self
            .account
            .add_installation(&self.state, installation, 2)
            .unwrap();
        self.apply(c, update).await;
    }

    async fn revoke(&mut self, c: &mut NodeClient<Channel>, installation: &KeyPair) {
        let update = self
            .account
            .revoke_installation(&self.state, &installation.public_key(), 3)
            .unwrap();
        self.apply(c, update).await;
    }

    async fn apply(&mut self, c: &mut NodeClient<Channel>, update: IdentityUpdate) {
        self.state.apply(&update).unwrap();
        self.log.push(update.clone());
        publish(c, update).await.unwrap();
    }

    fn id(&self) -> Vec<u8> {
        self.installation.public_key().to_vec()
    }
}

async fn publish(c: &mut NodeClient<Channel>, update: IdentityUpdate) -> Result<u64, Status> {
    c.publish_identity_update(PublishIdentityUpdateRequest {
        update: Some(update),
    })
    .await
    .map(|r| r.into_inner().sequence)
}

/// A real key package (what ferry-mls makes for an installation), signed by `key`.
fn key_package(key: &KeyPair, last_resort: bool) -> Vec<u8> {
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    ferry_mls::migrate(&mut conn).unwrap();
    let provider = ferry_mls::Provider::new(&conn);
    let identity =
        ferry_mls::Identity::from_ed25519(&provider, b"test", &key.seed(), &key.public_key())
            .unwrap();
    ferry_mls::generate_key_package(&provider, &identity, last_resort).unwrap()
}

/// `key`'s installation uploads `key_package` as the regular one of `installation`.
async fn upload_as(
    c: &mut NodeClient<Channel>,
    key: &KeyPair,
    installation: &[u8],
    key_package: Vec<u8>,
) -> Result<(), Status> {
    let request = signed(key, "UploadKeyPackage", upload(installation, key_package));
    c.upload_key_package(request).await.map(|_| ())
}

/// The key package the node hands `key`'s installation for `installation`.
async fn fetch_as(c: &mut NodeClient<Channel>, key: &KeyPair, installation: &[u8]) -> Vec<u8> {
    let request = FetchKeyPackagesRequest {
        installation_ids: vec![installation.to_vec()],
    };
    let mut fetched = c
        .fetch_key_packages(signed(key, "FetchKeyPackages", request))
        .await
        .unwrap()
        .into_inner();
    fetched.key_packages.remove(0).key_package
}

fn upload(installation: &[u8], key_package: Vec<u8>) -> UploadKeyPackageRequest {
    UploadKeyPackageRequest {
        key_package,
        last_resort: false,
        installation_id: installation.to_vec(),
    }
}

fn junk(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn send(group: &[u8], data: Vec<u8>) -> SendGroupMessagesRequest {
    SendGroupMessagesRequest {
        messages: vec![GroupMessageInput {
            group_id: group.to_vec(),
            data,
            commit_epoch: None,
        }],
    }
}

fn query(group: &[u8]) -> QueryGroupMessagesRequest {
    QueryGroupMessagesRequest {
        group_id: group.to_vec(),
        after_sequence_id: 0,
        limit: 1000,
    }
}

fn welcomes_of(installation: &[u8]) -> QueryWelcomesRequest {
    QueryWelcomesRequest {
        installation_id: installation.to_vec(),
        after_sequence_id: 0,
        limit: 100,
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("the node refuses");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_without_keys_gets_only_the_public_calls() {
    let node = start(LIMITS).await;
    let mut c = client(&node).await;
    let victim = Person::register(&mut c).await;
    let id = victim.id();
    let real = key_package(&victim.installation, false);
    upload_as(&mut c, &victim.installation, &id, real.clone())
        .await
        .expect("the installation uploads its own key package");

    // The overwrite that blocked a person from every new conversation: refused.
    let st = refused(
        c.upload_key_package(upload(&id, junk(300, 1))).await,
        Code::Unauthenticated,
    );
    assert!(st.message().contains("signed"), "{st:?}");
    refused(
        c.send_group_messages(send(b"group", junk(100, 2))).await,
        Code::Unauthenticated,
    );
    refused(
        c.query_group_messages(query(b"group")).await,
        Code::Unauthenticated,
    );
    refused(
        c.subscribe_group_messages(SubscribeGroupMessagesRequest {
            group_ids: vec![b"group".to_vec()],
        })
        .await,
        Code::Unauthenticated,
    );
    refused(
        c.send_welcomes(SendWelcomesRequest {
            welcomes: vec![WelcomeInput {
                installation_id: id.clone(),
                data: junk(100, 3),
            }],
        })
        .await,
        Code::Unauthenticated,
    );
    refused(
        c.query_welcomes(welcomes_of(&id)).await,
        Code::Unauthenticated,
    );
    refused(
        c.subscribe_welcomes(SubscribeWelcomesRequest {
            installation_id: id.clone(),
        })
        .await,
        Code::Unauthenticated,
    );
    refused(
        c.fetch_key_packages(FetchKeyPackagesRequest {
            installation_ids: vec![id.clone()],
        })
        .await,
        Code::Unauthenticated,
    );
    // A made-up key signing its requests is no better.
    let nobody = KeyPair::generate();
    let st = refused(
        c.query_group_messages(signed(&nobody, "QueryGroupMessages", query(b"group")))
            .await,
        Code::Unauthenticated,
    );
    assert!(st.message().contains("not an installation"), "{st:?}");

    // Identity logs are public, and the victim's key package is still the real one.
    let logs = c
        .get_identity_logs(GetIdentityLogsRequest {
            inbox_ids: vec![victim.account.inbox_id()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logs.logs[0].updates, victim.log);
    let stranger = Person::register(&mut c).await;
    assert_eq!(fetch_as(&mut c, &stranger.installation, &id).await, real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_packages_are_verified_and_only_their_installation_replaces_them() {
    let node = start(LIMITS).await;
    let mut c = client(&node).await;
    let victim = Person::register(&mut c).await;
    let stranger = Person::register(&mut c).await;
    let id = victim.id();
    let real = key_package(&victim.installation, false);
    upload_as(&mut c, &victim.installation, &id, real.clone())
        .await
        .unwrap();

    // A stranger's signed request for the victim's installation, even with a valid package.
    let st = refused(
        upload_as(&mut c, &stranger.installation, &id, real.clone()).await,
        Code::PermissionDenied,
    );
    assert!(st.message().contains("installation itself"), "{st:?}");
    // The installation itself uploading bytes that are no key package.
    let st = refused(
        upload_as(&mut c, &victim.installation, &id, junk(300, 4)).await,
        Code::InvalidArgument,
    );
    assert!(st.message().contains("not an MLS message"), "{st:?}");
    // A valid key package whose signature key is another installation's.
    let st = refused(
        upload_as(
            &mut c,
            &victim.installation,
            &id,
            key_package(&stranger.installation, false),
        )
        .await,
        Code::InvalidArgument,
    );
    assert!(
        st.message().contains("not the installation's key"),
        "{st:?}"
    );
    // A key package with one byte of its signature changed.
    let mut tampered = real.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    refused(
        upload_as(&mut c, &victim.installation, &id, tampered).await,
        Code::InvalidArgument,
    );

    // What is handed out is still the victim's own package.
    assert_eq!(fetch_as(&mut c, &stranger.installation, &id).await, real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_a_stale_or_altered_request_is_refused() {
    let node = start(LIMITS).await;
    let mut c = client(&node).await;
    let alice = Person::register(&mut c).await;
    let key = &alice.installation;
    let nonce = [9u8; 16];
    let at = now_ns();
    let body = send(b"group", junk(64, 5));
    c.send_group_messages(signed_at(key, "SendGroupMessages", body.clone(), at, nonce))
        .await
        .expect("the first time");
    // The same request again, byte for byte (as copied off the wire).
    let st = refused(
        c.send_group_messages(signed_at(key, "SendGroupMessages", body.clone(), at, nonce))
            .await,
        Code::Unauthenticated,
    );
    assert!(st.message().contains("replayed"), "{st:?}");
    // The signature with another body.
    let mut request = signed_at(key, "SendGroupMessages", body.clone(), at, [10; 16]);
    request.get_mut().messages[0].data = junk(64, 6);
    let st = refused(c.send_group_messages(request).await, Code::Unauthenticated);
    assert!(st.message().contains("does not verify"), "{st:?}");
    // A signature made for another method.
    let request = signed_at(key, "SendWelcomes", body.clone(), at, [11; 16]);
    refused(c.send_group_messages(request).await, Code::Unauthenticated);
    // Signed ten minutes ago (or ten minutes ahead).
    for skew in [-600i64, 600] {
        let st = refused(
            c.send_group_messages(signed_at(
                key,
                "SendGroupMessages",
                body.clone(),
                at + skew * 1_000_000_000,
                [12; 16],
            ))
            .await,
            Code::Unauthenticated,
        );
        assert!(st.message().contains("clock"), "{st:?}");
    }
    // Only the first one was stored.
    let page = c
        .query_group_messages(signed(key, "QueryGroupMessages", query(b"group")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.messages.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcomes_are_read_only_by_their_installation() {
    let node = start(LIMITS).await;
    let mut c = client(&node).await;
    let victim = Person::register(&mut c).await;
    let stranger = Person::register(&mut c).await;
    let id = victim.id();
    // Anyone registered may send a welcome (that is how members add people).
    c.send_welcomes(signed(
        &stranger.installation,
        "SendWelcomes",
        SendWelcomesRequest {
            welcomes: vec![WelcomeInput {
                installation_id: id.clone(),
                data: junk(80, 7),
            }],
        },
    ))
    .await
    .unwrap();
    refused(
        c.query_welcomes(signed(
            &stranger.installation,
            "QueryWelcomes",
            welcomes_of(&id),
        ))
        .await,
        Code::PermissionDenied,
    );
    refused(
        c.subscribe_welcomes(signed(
            &stranger.installation,
            "SubscribeWelcomes",
            SubscribeWelcomesRequest {
                installation_id: id.clone(),
            },
        ))
        .await,
        Code::PermissionDenied,
    );
    let own = c
        .query_welcomes(signed(
            &victim.installation,
            "QueryWelcomes",
            welcomes_of(&id),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.welcomes.len(), 1);
    c.subscribe_welcomes(signed(
        &victim.installation,
        "SubscribeWelcomes",
        SubscribeWelcomesRequest {
            installation_id: id.clone(),
        },
    ))
    .await
    .expect("its own welcome stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_installation_is_refused_at_once() {
    let node = start(LIMITS).await;
    let mut c = client(&node).await;
    let mut alice = Person::register(&mut c).await;
    let tablet = KeyPair::generate();
    alice.add(&mut c, &tablet).await;
    c.send_group_messages(signed(
        &tablet,
        "SendGroupMessages",
        send(b"g", junk(50, 8)),
    ))
    .await
    .expect("active: accepted");
    alice.revoke(&mut c, &tablet).await;
    let st = refused(
        c.send_group_messages(signed(
            &tablet,
            "SendGroupMessages",
            send(b"g", junk(50, 9)),
        ))
        .await,
        Code::PermissionDenied,
    );
    assert!(st.message().contains("revoked"), "{st:?}");
    refused(
        c.query_group_messages(signed(&tablet, "QueryGroupMessages", query(b"g")))
            .await,
        Code::PermissionDenied,
    );
    refused(
        upload_as(
            &mut c,
            &tablet,
            &tablet.public_key(),
            key_package(&tablet, false),
        )
        .await,
        Code::PermissionDenied,
    );
    // It can still read its inbox's log, and so learn that it was revoked.
    c.get_identity_logs(signed(
        &tablet,
        "GetIdentityLogs",
        GetIdentityLogsRequest {
            inbox_ids: vec![alice.account.inbox_id()],
        },
    ))
    .await
    .expect("identity logs stay public");
    // The inbox's other installation is unaffected.
    c.send_group_messages(signed(
        &alice.installation,
        "SendGroupMessages",
        send(b"g", junk(50, 10)),
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_by_a_registered_installation_is_throttled_and_members_are_not() {
    let node = start(LIMITS).await;
    let mut c = client(&node).await;
    let member = Person::register(&mut c).await;
    let flooder = Person::register(&mut c).await;
    let group = b"a busy group".to_vec();

    // 3,000 junk messages as fast as the node answers, ignoring its hints.
    let started = Instant::now();
    let (mut accepted, mut throttled) = (0u32, 0u32);
    for i in 0..3000u32 {
        let result = c
            .send_group_messages(signed(
                &flooder.installation,
                "SendGroupMessages",
                send(&group, junk(300, i as u8)),
            ))
            .await;
        match result {
            Ok(_) => accepted += 1,
            Err(st) => {
                assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
                let hint: u64 = st
                    .metadata()
                    .get(HEADER_RETRY_AFTER_MS)
                    .expect("a retry hint")
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=1000).contains(&hint), "{hint}");
                throttled += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = f64::from(LIMITS.write_burst) + f64::from(LIMITS.writes_per_second) * elapsed;
    assert!(
        f64::from(accepted) <= allowed + 1.0,
        "{accepted} accepted in {elapsed:.2} s; at most {allowed:.0} allowed"
    );
    assert!(throttled >= 3000 - allowed as u32 - 1, "{throttled}");

    // A member's own bucket is untouched: it sends and reads at once.
    c.send_group_messages(signed(
        &member.installation,
        "SendGroupMessages",
        send(&group, junk(80, 11)),
    ))
    .await
    .expect("the member is not throttled");
    let page = c
        .query_group_messages(signed(
            &member.installation,
            "QueryGroupMessages",
            query(&group),
        ))
        .await
        .unwrap()
        .into_inner();
    // What a member's sync has to reject is bounded by the limit, not by the flood.
    assert_eq!(page.messages.len() as u32, accepted + 1);
    // After waiting as hinted, the flooder may send again, at the steady rate.
    tokio::time::sleep(Duration::from_millis(
        1000 / u64::from(LIMITS.writes_per_second) + 20,
    ))
    .await;
    c.send_group_messages(signed(
        &flooder.installation,
        "SendGroupMessages",
        send(&group, junk(80, 12)),
    ))
    .await
    .expect("refilled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_attempts_are_limited_per_address() {
    let node = start(RateLimits {
        anonymous_per_second: 5,
        anonymous_burst: 10,
        ..LIMITS
    })
    .await;
    let mut c = client(&node).await;
    let mut codes = Vec::new();
    for _ in 0..30 {
        let r = c.query_group_messages(query(b"g")).await;
        codes.push(r.unwrap_err().code());
    }
    let unauthenticated = codes
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    let exhausted = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert!((10..=12).contains(&unauthenticated), "{codes:?}");
    assert_eq!(unauthenticated + exhausted, 30, "{codes:?}");
}
