//! The messaging client against a real delivery node on loopback: several inboxes and
//! installations, each with its own store, talking through `ferry-node` over gRPC.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_node::{NodeConfig, RunningNode};
use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::{GroupMessage, GroupMessageInput, Welcome, WelcomeInput};
use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::store::{
    ConsentEntity, ConsentState, Conversation, ConversationFilter, ConversationKind, Membership,
    MessageKind,
};
use ferry_sdk::{AccountKey, ClientOptions, Error, GroupOptions, MessageQuery};
use ferry_transport::{GrpcTransport, Page, Subscription, Transport, TransportError};
use zeroize::Zeroizing;

struct Net {
    node: RunningNode,
    dir: tempfile::TempDir,
    db: Option<PathBuf>,
}

impl Net {
    fn new() -> Net {
        Self::with_db(false)
    }

    fn with_db(on_disk: bool) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let db = on_disk.then(|| dir.path().join("node.db"));
        let node = RunningNode::start(NodeConfig {
            listen: "127.0.0.1:0".into(),
            db: db
                .clone()
                .map_or(ferry_node::Database::Memory, ferry_node::Database::Sqlite),
            ..Default::default()
        })
        .unwrap();
        Net { node, dir, db }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, name: &str, account: AccountKey) -> ClientOptions {
        let mut o = ClientOptions::new(self.home(name), self.node.url(), account);
        // Tests drive member checks explicitly unless they say otherwise.
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        o
    }

    /// A new inbox with one installation; returns it and the account key.
    fn inbox(&self, name: &str) -> (Client, Zeroizing<[u8; 32]>) {
        let reg = Client::create(self.options(name, AccountKey::New)).unwrap();
        (reg.client, reg.account_key.unwrap())
    }

    /// Another installation of the inbox `key` controls.
    fn installation(&self, name: &str, key: &Zeroizing<[u8; 32]>) -> Client {
        Client::create(self.options(name, AccountKey::Existing(key.clone())))
            .unwrap()
            .client
    }
}

fn texts(g: &Group) -> Vec<String> {
    g.messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect()
}

fn app_ids(g: &Group) -> Vec<Vec<u8>> {
    g.messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .map(|m| m.id)
        .collect()
}

fn groups(c: &Client) -> Vec<Conversation> {
    c.list_conversations(&ConversationFilter::default())
        .unwrap()
}

fn member_inboxes(g: &Group) -> Vec<String> {
    let mut v: Vec<String> = g
        .members()
        .unwrap()
        .into_iter()
        .map(|m| m.inbox_id.to_string())
        .collect();
    v.sort();
    v
}

fn installation_count(g: &Group) -> usize {
    g.members()
        .unwrap()
        .iter()
        .map(|m| m.installation_ids.len())
        .sum()
}

#[test]
fn a_group_of_three_inboxes_one_with_two_installations_sees_every_message_in_order() {
    let net = Net::new();
    let (alice1, alice_key) = net.inbox("alice1");
    let alice2 = net.installation("alice2", &alice_key);
    let (bob, _) = net.inbox("bob");
    let (carol, _) = net.inbox("carol");
    assert_eq!(alice1.inbox_id(), alice2.inbox_id());
    assert_ne!(alice1.installation_id(), alice2.installation_id());

    let g = alice1
        .create_group(
            &[bob.inbox_id().into(), carol.inbox_id().into()],
            GroupOptions {
                message_disappearing_settings: None,
                name: "Hiking".into(),
                description: "weekend plans".into(),
            },
        )
        .unwrap();
    assert_eq!(installation_count(&g), 4, "both of alice's, bob's, carol's");
    for c in [&alice2, &bob, &carol] {
        let r = c.sync_all().unwrap();
        assert_eq!(r.conversations_joined, 1);
    }
    let id = g.id().to_vec();
    let bob_g = bob.conversation(&id).unwrap();
    assert_eq!(bob_g.info().unwrap().name, "Hiking");
    assert_eq!(bob_g.info().unwrap().description, "weekend plans");

    let mut sent = Vec::new();
    for (i, c) in [&alice1, &bob, &carol, &alice2, &bob].iter().enumerate() {
        let text = format!("message {i}");
        c.sync_all().unwrap();
        c.conversation(&id).unwrap().send(&text).unwrap();
        sent.push(text);
    }
    alice1.sync_all().unwrap();
    let reference = app_ids(&g);
    assert_eq!(reference.len(), 5);
    for c in [&alice1, &alice2, &bob, &carol] {
        c.sync_all().unwrap();
        let h = c.conversation(&id).unwrap();
        assert_eq!(texts(&h), sent, "{} sees everything in order", c.inbox_id());
        assert_eq!(app_ids(&h), app_ids(&c.conversation(&id).unwrap()));
        // The same 32-byte ids everywhere, the sender's own copy included.
        assert_eq!(app_ids(&h), reference);
        assert!(reference.iter().all(|i| i.len() == 32));
    }
}

#[test]
fn dm_groups_between_the_same_inboxes_are_stitched_into_one_conversation() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let (bob, _) = net.inbox("bob");
    // Both start a DM before hearing of the other's: two MLS groups.
    let a = alice.create_dm(bob.inbox_id()).unwrap();
    let b = bob.create_dm(alice.inbox_id()).unwrap();
    assert_ne!(a.id(), b.id());
    a.send("from alice, first group").unwrap();
    b.send("from bob, second group").unwrap();
    alice.sync_all().unwrap();
    bob.sync_all().unwrap();

    for (me, peer) in [(&alice, &bob), (&bob, &alice)] {
        let dms = me
            .list_conversations(&ConversationFilter {
                kind: Some(ConversationKind::Dm),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(dms.len(), 1, "one conversation for two DM groups");
        assert_eq!(
            dms[0].dm_peer_inbox_id.as_deref(),
            Some(peer.inbox_id().as_str())
        );
        let dm = me.conversation(&dms[0].id).unwrap();
        let mut t = texts(&dm);
        t.sort();
        assert_eq!(t, ["from alice, first group", "from bob, second group"]);
        // Any of the stitched ids finds the same conversation.
        assert_eq!(me.conversation(a.id()).unwrap().id(), dm.id());
        assert_eq!(me.conversation(b.id()).unwrap().id(), dm.id());
    }
    // find_or_create_dm returns the newest active group on both sides, not a third one.
    let fa = alice.find_or_create_dm(bob.inbox_id()).unwrap();
    let fb = bob.find_or_create_dm(alice.inbox_id()).unwrap();
    assert_eq!(fa.id(), fb.id());
    assert_eq!(fa.id(), b.id(), "bob's group was created last");
    fa.send("after stitching").unwrap();
    bob.sync_all().unwrap();
    assert!(texts(&fb).contains(&"after stitching".to_string()));
    assert_eq!(groups(&alice).len(), 1);
}

#[test]
fn members_are_added_and_removed_and_a_removed_member_reads_nothing_new() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let (bob, _) = net.inbox("bob");
    let (carol, _) = net.inbox("carol");
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    g.send("before carol").unwrap();

    g.add_members(&[carol.inbox_id().into()]).unwrap();
    let mut want = vec![
        alice.inbox_id().to_string(),
        bob.inbox_id().to_string(),
        carol.inbox_id().to_string(),
    ];
    want.sort();
    assert_eq!(member_inboxes(&g), want);
    g.send("carol is here").unwrap();
    carol.sync_all().unwrap();
    let cg = carol.conversation(g.id()).unwrap();
    assert_eq!(
        texts(&cg),
        ["carol is here"],
        "nothing from before she joined"
    );
    assert_eq!(member_inboxes(&cg), want);

    g.remove_members(&[bob.inbox_id().into()]).unwrap();
    g.send("bob is gone").unwrap();
    bob.sync_all().unwrap();
    let bg = bob.conversation(g.id()).unwrap();
    assert!(!bg.is_active().unwrap(), "bob's copy is no longer active");
    assert_eq!(bg.info().unwrap().membership, Membership::Left);
    assert_eq!(texts(&bg), ["before carol", "carol is here"]);
    assert!(matches!(bg.send("still here?"), Err(Error::Inactive)));
    carol.sync_all().unwrap();
    assert_eq!(texts(&cg), ["carol is here", "bob is gone"]);
    assert!(!member_inboxes(&cg).contains(&bob.inbox_id().to_string()));

    // Renames reach every member.
    g.update_name("Book club").unwrap();
    carol.sync_all().unwrap();
    assert_eq!(cg.info().unwrap().name, "Book club");
}

#[test]
fn a_new_installation_is_added_on_the_next_send_and_on_sync_after_the_interval() {
    let net = Net::new();
    let (alice1, alice_key) = net.inbox("alice1");
    let (bob, _) = net.inbox("bob");
    let g = alice1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    g.send("old news").unwrap();

    // On send: alice1 checks members at most every 200 ms.
    alice1
        .set_check_intervals(Duration::from_millis(200), Duration::from_secs(3600))
        .unwrap();
    let g = alice1.conversation(g.id()).unwrap();
    let alice2 = net.installation("alice2", &alice_key);
    std::thread::sleep(Duration::from_millis(250));
    g.send("hello new phone").unwrap();
    alice2.sync_all().unwrap();
    let g2 = alice2.conversation(g.id()).unwrap();
    assert!(g2.is_active().unwrap());
    assert_eq!(texts(&g2), ["hello new phone"], "new messages only");
    assert_eq!(installation_count(&g), 3);

    // On sync: bob's interval is an hour, so a sync now adds nobody ...
    let alice3 = net.installation("alice3", &alice_key);
    let bg = bob.conversation(g.id()).unwrap();
    bg.sync().unwrap();
    assert_eq!(installation_count(&bg), 3);
    // ... and once it has passed, a sync adds alice3.
    drop(bg);
    bob.set_check_intervals(Duration::from_secs(3600), Duration::from_millis(100))
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    bob.sync_all().unwrap();
    let bg = bob.conversation(g.id()).unwrap();
    assert_eq!(installation_count(&bg), 4);
    bg.send("welcome, third phone").unwrap();
    alice3.sync_all().unwrap();
    let g3 = alice3.conversation(g.id()).unwrap();
    assert_eq!(texts(&g3), ["welcome, third phone"]);
}

#[test]
fn a_revoked_installation_is_removed_and_can_no_longer_decrypt() {
    let net = Net::new();
    let (alice1, alice_key) = net.inbox("alice1");
    let alice2 = net.installation("alice2", &alice_key);
    let (bob, _) = net.inbox("bob");
    let g = alice1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    alice2.sync_all().unwrap();
    bob.sync_all().unwrap();
    g.send("everyone").unwrap();
    alice2.sync_all().unwrap();
    assert_eq!(texts(&alice2.conversation(g.id()).unwrap()), ["everyone"]);

    alice1
        .revoke_installation(
            std::sync::Arc::new(ferry_sdk::KeyPair::from_seed(&alice_key)),
            alice2.installation_id(),
        )
        .unwrap();
    assert_eq!(
        alice1.inbox_info(alice1.inbox_id()).unwrap().revoked.len(),
        1
    );
    let bg = bob.conversation(g.id()).unwrap();
    bg.add_missing_installations().unwrap();
    assert_eq!(installation_count(&bg), 2, "alice2's leaf is gone");
    bg.send("not for the lost phone").unwrap();

    // The node refuses the revoked installation at once (and its group state, without its
    // leaf, could not open the new ciphertext anyway); what it had stays readable.
    let err = alice2.sync_all().unwrap_err();
    assert_eq!(err.code(), "INSTALLATION_REVOKED", "{err}");
    let g2 = alice2.conversation(g.id()).unwrap();
    assert_eq!(texts(&g2), ["everyone"]);
    alice1.sync_all().unwrap();
    assert_eq!(texts(&g), ["everyone", "not for the lost phone"]);
    // A revoked installation cannot be added back by anyone.
    alice1
        .set_check_intervals(Duration::from_millis(1), Duration::from_millis(1))
        .unwrap();
    alice1.sync_all().unwrap();
    assert_eq!(installation_count(&alice1.conversation(g.id()).unwrap()), 2);
}

/// A transport that hands out a forged key package for one installation.
struct ForgingTransport {
    inner: GrpcTransport,
    victim: Vec<u8>,
    forged: Vec<u8>,
}

#[async_trait::async_trait]
impl Transport for ForgingTransport {
    async fn publish_identity_update(&self, u: IdentityUpdate) -> Result<u64, TransportError> {
        self.inner.publish_identity_update(u).await
    }
    async fn identity_logs(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Vec<IdentityUpdate>)>, TransportError> {
        self.inner.identity_logs(ids).await
    }
    async fn upload_key_package(
        &self,
        i: &[u8],
        kp: &[u8],
        lr: bool,
    ) -> Result<(), TransportError> {
        self.inner.upload_key_package(i, kp, lr).await
    }
    async fn fetch_key_packages(&self, ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, TransportError> {
        let mut kps = self.inner.fetch_key_packages(ids).await?;
        for (id, kp) in ids.iter().zip(kps.iter_mut()) {
            if *id == self.victim {
                *kp = self.forged.clone();
            }
        }
        Ok(kps)
    }
    async fn send_group_messages(
        &self,
        m: Vec<GroupMessageInput>,
    ) -> Result<Vec<u64>, TransportError> {
        self.inner.send_group_messages(m).await
    }
    async fn query_group_messages(
        &self,
        g: &[u8],
        a: u64,
        l: u32,
    ) -> Result<Page<GroupMessage>, TransportError> {
        self.inner.query_group_messages(g, a, l).await
    }
    async fn send_welcomes(&self, w: Vec<WelcomeInput>) -> Result<(), TransportError> {
        self.inner.send_welcomes(w).await
    }
    async fn query_welcomes(
        &self,
        i: &[u8],
        a: u64,
        l: u32,
    ) -> Result<Page<Welcome>, TransportError> {
        self.inner.query_welcomes(i, a, l).await
    }
    async fn subscribe_group_messages(
        &self,
        g: Vec<Vec<u8>>,
    ) -> Result<Subscription<GroupMessage>, TransportError> {
        self.inner.subscribe_group_messages(g).await
    }
    async fn subscribe_welcomes(&self, i: &[u8]) -> Result<Subscription<Welcome>, TransportError> {
        self.inner.subscribe_welcomes(i).await
    }
    fn set_request_signer(&self, signer: std::sync::Arc<dyn ferry_transport::RequestSigner>) {
        self.inner.set_request_signer(signer);
    }
}

/// An MLS identity the attacker controls, claiming to be an installation of `inbox`, with a
/// key package; made in a scratch store.
fn attacker_key_package(
    dir: &Path,
    name: &str,
    inbox: &str,
) -> (Vec<u8>, [u8; 32], ferry_sdk::store::Store) {
    let mut store = ferry_sdk::store::Store::open(dir.join(format!("{name}.db"))).unwrap();
    ferry_mls::migrate(store.conn_mut()).unwrap();
    let key = ferry_identity::KeyPair::generate();
    let installation = key.public_key();
    let mut cred = installation.to_vec();
    cred.extend_from_slice(inbox.as_bytes());
    let kp = {
        let p = ferry_mls::Provider::new(store.conn());
        let id = ferry_mls::Identity::from_ed25519(&p, &cred, &key.seed(), &installation).unwrap();
        ferry_mls::generate_key_package(&p, &id, false).unwrap()
    };
    (kp, installation, store)
}

#[test]
fn forged_identity_updates_key_packages_and_leaves_and_replayed_commits_are_rejected() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let (bob, bob_key) = net.inbox("bob");
    let (carol, _) = net.inbox("carol");

    // 1. An identity update signed by a key that does not control the inbox.
    let mallory = ferry_identity::Account::new(ferry_identity::KeyPair::generate());
    let bob_state = {
        let logs = ferry_sdk::blocking::block_on(
            alice
                .transport()
                .identity_logs(&[bob.inbox_id().to_string()]),
        )
        .unwrap();
        ferry_identity::InboxState::replay(bob.inbox_id(), &logs[0].1).unwrap()
    };
    let forged = mallory
        .add_installation(
            &bob_state,
            &ferry_identity::KeyPair::generate(),
            ferry_sdk::now_ns(),
        )
        .unwrap();
    match ferry_sdk::blocking::block_on(alice.transport().publish_identity_update(forged)) {
        Err(TransportError::Rejected { message, .. }) => {
            assert!(message.contains("signature"), "{message}")
        }
        other => panic!("forged update accepted: {other:?}"),
    }
    assert_eq!(
        alice
            .inbox_info(bob.inbox_id())
            .unwrap()
            .installations
            .len(),
        1
    );
    // The real account key still works.
    let _ = bob_key;

    // 2. A key package whose installation is not in bob's log: alice leaves it out.
    let (forged_kp, _, _s) = attacker_key_package(net.dir.path(), "mallory1", bob.inbox_id());
    let alice_home = net.home("alice");
    drop(alice);
    let alice = Client::open_with(
        &alice_home,
        Arc::new(ForgingTransport {
            inner: ferry_sdk::blocking::block_on(async { GrpcTransport::connect(&net.node.url()) })
                .unwrap(),
            victim: bob.installation_id().to_vec(),
            forged: forged_kp,
        }),
    )
    .unwrap();
    let g = alice
        .create_group(
            &[bob.inbox_id().into(), carol.inbox_id().into()],
            GroupOptions::default(),
        )
        .unwrap();
    assert_eq!(
        member_inboxes(&g),
        {
            let mut v = vec![alice.inbox_id().to_string(), carol.inbox_id().to_string()];
            v.sort();
            v
        },
        "the forged key package was not added"
    );
    drop(g);
    drop(alice);
    let alice = Client::open(&alice_home).unwrap();
    let g = alice.conversation(&groups(&alice)[0].id).unwrap();
    carol.sync_all().unwrap();
    let epoch_before = g.epoch().unwrap();

    // 3. A member (carol, misbehaving) commits a leaf that is not in its inbox's log.
    let (evil_kp, _, _s2) = attacker_key_package(net.dir.path(), "mallory2", carol.inbox_id());
    let carol_home = net.home("carol");
    drop(carol);
    {
        let store = ferry_sdk::store::Store::open(carol_home.join("ferry.db")).unwrap();
        let p = ferry_mls::Provider::new(store.conn());
        let inst: [u8; 32] = store
            .setting("installation_id")
            .unwrap()
            .unwrap()
            .try_into()
            .unwrap();
        let inbox = String::from_utf8(store.setting("inbox_id").unwrap().unwrap()).unwrap();
        let mut cred = inst.to_vec();
        cred.extend_from_slice(inbox.as_bytes());
        let id = ferry_mls::Identity::load(&p, &cred, &inst)
            .unwrap()
            .unwrap();
        let mut group = ferry_mls::load_group(&p, g.id()).unwrap().unwrap();
        let epoch = ferry_mls::epoch(&group);
        let (commit, _w) = ferry_mls::add_members(&mut group, &p, &id, &[&evil_kp]).unwrap();
        ferry_sdk::blocking::block_on(alice.transport().send_group_messages(vec![
            GroupMessageInput {
                group_id: g.id().to_vec(),
                data: commit,
                commit_epoch: Some(epoch),
            },
        ]))
        .unwrap();
    }
    alice.sync_all().unwrap();
    assert_eq!(g.epoch().unwrap(), epoch_before, "the commit was refused");
    assert_eq!(installation_count(&g), 2);

    // 4. A replayed commit: alice's own rename, sent to the node again.
    g.update_name("renamed").unwrap();
    let epoch = g.epoch().unwrap();
    let page =
        ferry_sdk::blocking::block_on(alice.transport().query_group_messages(g.id(), 0, 100))
            .unwrap();
    let last_commit = page.items.last().unwrap().data.clone();
    let count = g.messages(&MessageQuery::default()).unwrap().len();
    ferry_sdk::blocking::block_on(
        alice
            .transport()
            .send_group_messages(vec![GroupMessageInput {
                group_id: g.id().to_vec(),
                data: last_commit,
                commit_epoch: None,
            }]),
    )
    .unwrap();
    alice.sync_all().unwrap();
    assert_eq!(g.epoch().unwrap(), epoch);
    assert_eq!(g.messages(&MessageQuery::default()).unwrap().len(), count);
    // The group still works for honest members.
    g.send("still fine").unwrap();
    assert_eq!(texts(&g), ["still fine"]);
}

#[test]
fn concurrent_commits_end_in_the_same_epoch_and_membership() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let (bob, _) = net.inbox("bob");
    let (carol, _) = net.inbox("carol");
    let (dave, _) = net.inbox("dave");
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    let id = g.id().to_vec();
    let (c, d) = (carol.inbox_id().to_string(), dave.inbox_id().to_string());
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            alice
                .conversation(&id)
                .unwrap()
                .add_members(std::slice::from_ref(&c))
        });
        let b = s.spawn(|| {
            bob.conversation(&id)
                .unwrap()
                .add_members(std::slice::from_ref(&d))
        });
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    for cl in [&alice, &bob, &carol, &dave] {
        cl.sync_all().unwrap();
    }
    let views: Vec<(u64, Vec<String>)> = [&alice, &bob, &carol, &dave]
        .iter()
        .map(|cl| {
            let h = cl.conversation(&id).unwrap();
            (h.epoch().unwrap(), member_inboxes(&h))
        })
        .collect();
    assert_eq!(views[0].1.len(), 4, "no add was lost: {views:?}");
    assert!(
        views.iter().all(|v| *v == views[0]),
        "one epoch, one membership: {views:?}"
    );
    // And the group still talks.
    dave.conversation(&id).unwrap().send("hi all").unwrap();
    carol.sync_all().unwrap();
    assert_eq!(texts(&carol.conversation(&id).unwrap()), ["hi all"]);
}

#[test]
fn a_node_restart_mid_conversation_loses_nothing() {
    let net = Net::with_db(true);
    let (alice, _) = net.inbox("alice");
    let (bob, _) = net.inbox("bob");
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("one").unwrap();
    g.send("two").unwrap();
    let addr = net.node.addr();
    let Net { node, dir, db } = net;
    node.stop();
    // While it is down, sending fails with a clear error; the message is kept, unpublished,
    // and goes out (once) when the node is back.
    let err = g.send("not lost").unwrap_err();
    assert!(
        matches!(err, Error::Transport(TransportError::Unavailable(_))),
        "{err}"
    );
    assert_eq!(texts(&g), ["one", "two", "not lost"]);
    let waiting = g.messages(&MessageQuery::default()).unwrap();
    assert_eq!(
        waiting.last().unwrap().delivery_status,
        ferry_sdk::store::DeliveryStatus::Unpublished
    );
    let node = RunningNode::start(NodeConfig {
        listen: addr.to_string(),
        db: db.map_or(ferry_node::Database::Memory, ferry_node::Database::Sqlite),
        ..Default::default()
    })
    .unwrap();
    g.send("three").unwrap();
    bob.sync_all().unwrap();
    let bg = bob.conversation(g.id()).unwrap();
    bg.send("four").unwrap();
    alice.sync_all().unwrap();
    assert_eq!(texts(&bg), ["one", "two", "not lost", "three", "four"]);
    assert!(g
        .messages(&MessageQuery::default())
        .unwrap()
        .iter()
        .all(|m| m.delivery_status == ferry_sdk::store::DeliveryStatus::Published));
    assert_eq!(texts(&g), ["one", "two", "not lost", "three", "four"]);
    node.stop();
    drop(dir);
}

#[test]
fn streams_report_new_conversations_and_messages_as_they_arrive() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let (bob, _) = net.inbox("bob");
    let conversations = bob.stream_conversations();
    let messages = bob.stream_messages();
    let worker = bob.start_worker();
    let g = alice
        .create_group(
            &[bob.inbox_id().into()],
            GroupOptions {
                name: "live".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let c = conversations.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(c.id, g.id());
    assert_eq!(c.name, "live");
    g.send("pushed").unwrap();
    let m = loop {
        let m = messages.recv_timeout(Duration::from_secs(15)).unwrap();
        if m.kind == MessageKind::Application {
            break m;
        }
    };
    assert_eq!(m.text().as_deref(), Some("pushed"));
    assert_eq!(m.sender_inbox_id, alice.inbox_id());
    worker.stop();
}

#[test]
fn consent_follows_creating_and_sending_and_filters_lists() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let (bob, _) = net.inbox("bob");
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let hex_id = hex::encode(g.id());
    assert_eq!(
        alice.consent(ConsentEntity::Conversation, &hex_id).unwrap(),
        ConsentState::Allowed
    );
    bob.sync_all().unwrap();
    assert_eq!(
        bob.consent(ConsentEntity::Conversation, &hex_id).unwrap(),
        ConsentState::Unknown,
        "started by someone else"
    );
    let unknown = bob
        .list_conversations(&ConversationFilter {
            consent: Some(ConsentState::Unknown),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(unknown.len(), 1);
    bob.conversation(g.id()).unwrap().send("ok").unwrap();
    assert_eq!(
        bob.consent(ConsentEntity::Conversation, &hex_id).unwrap(),
        ConsentState::Allowed
    );
    bob.set_consent(ConsentEntity::Conversation, &hex_id, ConsentState::Denied)
        .unwrap();
    let denied = bob
        .list_conversations(&ConversationFilter {
            consent: Some(ConsentState::Denied),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(denied.len(), 1);
    assert!(bob
        .list_conversations(&ConversationFilter {
            consent: Some(ConsentState::Allowed),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    // A DM allows its peer's inbox too.
    let _dm = alice.find_or_create_dm(bob.inbox_id()).unwrap();
    assert_eq!(
        alice.consent(ConsentEntity::Inbox, bob.inbox_id()).unwrap(),
        ConsentState::Allowed
    );
}

#[test]
fn a_restored_conversation_is_read_only_with_group_is_inactive() {
    let net = Net::new();
    let (alice, _) = net.inbox("alice");
    let id = vec![7u8; 32];
    alice
        .with_store(|s| {
            s.insert_conversation(&Conversation {
                disappearing: None,
                id: id.clone(),
                kind: ConversationKind::Group,
                created_at_ns: 1,
                name: "old".into(),
                description: String::new(),
                image_url: String::new(),
                creator_inbox_id: String::new(),
                dm_peer_inbox_id: None,
                dm_id: None,
                membership: Membership::Restored,
                last_message_ns: None,
            })
        })
        .unwrap();
    let g = alice.conversation(&id).unwrap();
    assert!(!g.is_active().unwrap());
    let e = g.send("hi").unwrap_err();
    assert_eq!(e.to_string(), "Group is inactive");
    assert_eq!(g.sync().unwrap_err().to_string(), "Group is inactive");
    assert_eq!(
        g.add_members(&["x".into()]).unwrap_err().to_string(),
        "Group is inactive"
    );
    assert_eq!(
        g.update_name("n").unwrap_err().to_string(),
        "Group is inactive"
    );
    assert!(g.messages(&MessageQuery::default()).unwrap().is_empty());
}

#[test]
fn a_dead_node_is_a_clear_error_and_a_second_init_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Client::create(ClientOptions::new(
        dir.path().join("a"),
        format!("http://127.0.0.1:{port}"),
        AccountKey::New,
    ))
    .err()
    .unwrap();
    assert!(
        matches!(err, Error::Transport(TransportError::Unavailable(_))),
        "{err}"
    );
    assert!(matches!(
        Client::open(&dir.path().join("nowhere")),
        Err(Error::NotRegistered(_))
    ));
    let net = Net::new();
    let (_alice, _) = net.inbox("alice");
    assert!(matches!(
        Client::create(net.options("alice", AccountKey::New)),
        Err(Error::AlreadyRegistered(_))
    ));
}

#[test]
fn each_inbox_has_a_hidden_sync_group_of_its_own_installations() {
    let net = Net::new();
    let (alice1, alice_key) = net.inbox("alice1");
    let (bob, _) = net.inbox("bob");
    let events = alice1.stream_conversations();
    alice1.sync_all().unwrap();
    let sync_id = alice1.ensure_sync_group().unwrap();
    assert_eq!(
        alice1.ensure_sync_group().unwrap(),
        sync_id,
        "one, not one per call"
    );
    // Hidden: not listed, not streamed.
    assert!(groups(&alice1).is_empty());
    assert!(events.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(matches!(
        alice1.conversation(&sync_id),
        Err(Error::NoSuchConversation(_))
    ));
    let sync = alice1.sync_group_conversation(&sync_id).unwrap();
    assert_eq!(sync.info().unwrap().kind, ConversationKind::Sync);
    // A new installation of the inbox joins it on the old one's next sync.
    let alice2 = net.installation("alice2", &alice_key);
    alice1.sync_all().unwrap();
    alice2.sync_all().unwrap();
    assert_eq!(alice2.ensure_sync_group().unwrap(), sync_id);
    assert_eq!(member_inboxes(&sync), [alice1.inbox_id().to_string()]);
    assert_eq!(installation_count(&sync), 2);
    // A welcome to a "sync group" holding another inbox's installation is refused: bob
    // builds one by hand (his own store, openmls directly) and sends it to alice1.
    let bob_home = net.home("bob");
    let bob_inst = *bob.installation_id();
    let bob_inbox = bob.inbox_id().to_string();
    let kp = ferry_sdk::blocking::block_on(
        bob.transport()
            .fetch_key_packages(&[alice1.installation_id().to_vec()]),
    )
    .unwrap()
    .remove(0);
    drop(bob);
    let forged_id = vec![0x5a; 32];
    {
        let store = ferry_sdk::store::Store::open(bob_home.join("ferry.db")).unwrap();
        let p = ferry_mls::Provider::new(store.conn());
        let mut cred = bob_inst.to_vec();
        cred.extend_from_slice(bob_inbox.as_bytes());
        let id = ferry_mls::Identity::load(&p, &cred, bob_inst.as_slice())
            .unwrap()
            .unwrap();
        let meta = ferry_proto::message::GroupMetadata {
            kind: 3,
            creator_inbox_id: bob_inbox.clone(),
            ..Default::default()
        };
        let mut g = ferry_mls::create_group_with_metadata(
            &p,
            &id,
            &forged_id,
            Some(&ferry_proto::Message::encode_to_vec(&meta)),
        )
        .unwrap();
        let (_commit, welcome) = ferry_mls::add_members(&mut g, &p, &id, &[&kp]).unwrap();
        ferry_sdk::blocking::block_on(alice1.transport().send_welcomes(vec![WelcomeInput {
            installation_id: alice1.installation_id().to_vec(),
            data: welcome,
        }]))
        .unwrap();
    }
    let r = alice1.sync_all().unwrap();
    assert_eq!(r.conversations_joined, 0);
    assert!(alice1.conversation(&forged_id).is_err(), "not joined");
    assert_eq!(alice1.ensure_sync_group().unwrap(), sync_id);
}
