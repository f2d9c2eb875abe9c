//! Backups on the real client (seed 000, sections 3 and 4), against a real node on loopback:
//! an archive restored onto a new installation is read-only until MLS adds the installation,
//! then the same conversations turn active with their history intact.

use std::path::PathBuf;
use std::time::Duration;

use ferry_node::{NodeConfig, RunningNode};
use ferry_sdk::archive::{ArchiveElement, ArchiveOptions, Control};
use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::store::{
    ConsentEntity, ConsentState, Conversation, ConversationFilter, ConversationKind, Membership,
    MessageKind, Table,
};
use ferry_sdk::{AccountKey, ArchiveKey, ClientOptions, Error, GroupOptions, MessageQuery};
use zeroize::Zeroizing;

struct Net {
    node: RunningNode,
    dir: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        Net {
            node: RunningNode::start(NodeConfig {
                listen: "127.0.0.1:0".into(),
                db: ferry_node::Database::Memory,
                ..Default::default()
            })
            .unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn options(&self, name: &str, account: AccountKey) -> ClientOptions {
        let mut o = ClientOptions::new(self.dir.path().join(name), self.node.url(), account);
        // Sends check members every time: "bob sends" is what adds a new installation.
        o.send_check_interval = Duration::ZERO;
        o.sync_check_interval = Duration::from_secs(3600);
        o
    }

    fn inbox(&self, name: &str) -> (Client, Zeroizing<[u8; 32]>) {
        let reg = Client::create(self.options(name, AccountKey::New)).unwrap();
        (reg.client, reg.account_key.unwrap())
    }

    fn installation(&self, name: &str, key: &Zeroizing<[u8; 32]>) -> Client {
        Client::create(self.options(name, AccountKey::Existing(key.clone())))
            .unwrap()
            .client
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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

fn all(c: &Client) -> Vec<Conversation> {
    c.list_conversations(&ConversationFilter::default())
        .unwrap()
}

fn dump(c: &Client) -> Vec<String> {
    c.with_store(|s| s.dump()).unwrap()
}

/// Alice's first installation and bob, with a group and a DM and some talk.
struct Story {
    net: Net,
    a1: Client,
    alice_key: Zeroizing<[u8; 32]>,
    bob: Client,
    group: Vec<u8>,
    dm: Vec<u8>,
    key: ArchiveKey,
}

fn story() -> Story {
    let net = Net::new();
    let (a1, alice_key) = net.inbox("a1");
    let (bob, _) = net.inbox("bob");
    let g = a1
        .create_group(
            &[bob.inbox_id().into()],
            GroupOptions {
                name: "Trip".into(),
                ..Default::default()
            },
        )
        .unwrap();
    bob.sync_all().unwrap();
    g.send("g1 from alice").unwrap();
    bob.sync_all().unwrap();
    bob.conversation(g.id())
        .unwrap()
        .send("g2 from bob")
        .unwrap();
    let dm = bob.find_or_create_dm(a1.inbox_id()).unwrap();
    dm.send("d1 from bob").unwrap();
    a1.sync_all().unwrap();
    a1.conversation(dm.id())
        .unwrap()
        .send("d2 from alice")
        .unwrap();
    bob.sync_all().unwrap();
    Story {
        a1,
        alice_key,
        bob,
        group: g.id().to_vec(),
        dm: dm.id().to_vec(),
        key: ArchiveKey::generate(),
        net,
    }
}

impl Story {
    fn archive(&self, from: &Client, name: &str, opts: &ArchiveOptions) -> PathBuf {
        let p = self.net.path(name);
        from.create_archive(&p, &self.key, opts, &Control::new())
            .unwrap();
        p
    }
}

#[test]
fn a_restored_installation_reads_history_then_turns_active_when_bob_sends() {
    let s = story();
    let archive = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let meta = s.a1.archive_metadata(&archive, &s.key).unwrap();
    assert_eq!(meta.inbox_id, s.a1.inbox_id());
    assert_eq!(meta.conversation_count, Some(2));

    // A new device: a new installation of the same inbox, with keys of its own.
    let a2 = s.net.installation("a2", &s.alice_key);
    assert_ne!(a2.installation_id(), s.a1.installation_id());
    let events = a2.stream_conversations();
    let report = a2
        .import_archive(&archive, &s.key, &Control::new())
        .unwrap();
    assert_eq!(report.conversations_added, 2);
    assert_eq!(report.messages_imported, 4);

    // Every conversation and message is there, read-only.
    let convs = all(&a2);
    assert_eq!(convs.len(), 2);
    assert!(convs
        .iter()
        .all(|c| !c.is_active() && c.membership == Membership::Restored));
    let g2 = a2.conversation(&s.group).unwrap();
    assert_eq!(texts(&g2), ["g1 from alice", "g2 from bob"]);
    let d2 = a2.conversation(&s.dm).unwrap();
    assert_eq!(texts(&d2), ["d1 from bob", "d2 from alice"]);
    assert_eq!(
        g2.send("too early").unwrap_err().to_string(),
        "Group is inactive"
    );
    assert_eq!(g2.sync().unwrap_err().to_string(), "Group is inactive");
    // The conversations keep the time of their newest message, not the import's.
    let newest = g2
        .messages(&MessageQuery::default())
        .unwrap()
        .iter()
        .map(|m| m.sent_at_ns)
        .max();
    assert_eq!(g2.info().unwrap().last_message_ns, newest);
    // The stream reported each restored conversation once, marked restored.
    let mut seen = Vec::new();
    while let Ok(c) = events.recv_timeout(Duration::from_millis(200)) {
        seen.push(c);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|c| c.membership == Membership::Restored));

    // Bob sends: his client adds alice's new installation, which joins the same conversation.
    s.bob
        .conversation(&s.group)
        .unwrap()
        .send("g3 from bob")
        .unwrap();
    a2.sync_all().unwrap();
    assert!(g2.is_active().unwrap());
    assert_eq!(texts(&g2), ["g1 from alice", "g2 from bob", "g3 from bob"]);
    g2.send("g4 from alice's new phone").unwrap();
    s.bob.sync_all().unwrap();
    s.a1.sync_all().unwrap();
    for c in [&s.bob, &s.a1] {
        assert_eq!(
            texts(&c.conversation(&s.group).unwrap()),
            [
                "g1 from alice",
                "g2 from bob",
                "g3 from bob",
                "g4 from alice's new phone"
            ]
        );
    }
    // The DM stays read-only until someone writes in it (or re-creates it: see below).
    assert!(!d2.is_active().unwrap());
}

#[test]
fn own_installations_add_a_new_installation_at_once_except_where_consent_is_denied() {
    let s = story();
    // A third conversation that alice denies.
    let (carol, _) = s.net.inbox("carol");
    let spam = carol
        .create_group(&[s.a1.inbox_id().into()], GroupOptions::default())
        .unwrap();
    s.a1.sync_all().unwrap();
    s.a1.set_consent(
        ConsentEntity::Conversation,
        &hex::encode(spam.id()),
        ConsentState::Denied,
    )
    .unwrap();
    let archive = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let a2 = s.net.installation("a2", &s.alice_key);
    a2.import_archive(&archive, &s.key, &Control::new())
        .unwrap();
    assert_eq!(all(&a2).len(), 3);
    // Alice's old installation learns of the new one on its next sync and adds it to every
    // recent conversation that is not denied, without anyone sending.
    let r = s.a1.sync_all().unwrap();
    assert_eq!(
        r.installations_added_to, 2,
        "the group and the DM (the hidden sync group too, but it is not counted)"
    );
    a2.sync_all().unwrap();
    assert!(a2.conversation(&s.group).unwrap().is_active().unwrap());
    assert!(a2.conversation(&s.dm).unwrap().is_active().unwrap());
    assert!(!a2.conversation(spam.id()).unwrap().is_active().unwrap());
    // Only once: a second sync adds nobody.
    assert_eq!(s.a1.sync_all().unwrap().installations_added_to, 0);
}

#[test]
fn reimports_and_archives_of_two_installations_give_each_message_once() {
    let s = story();
    let a2 = s.net.installation("a2", &s.alice_key);
    s.a1.sync_all().unwrap(); // adds a2 everywhere
    a2.sync_all().unwrap();
    s.bob
        .conversation(&s.group)
        .unwrap()
        .send("g3 from bob")
        .unwrap();
    a2.sync_all().unwrap();
    s.a1.sync_all().unwrap();
    let from_a1 = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let from_a2 = s.archive(&a2, "a2.ferry", &ArchiveOptions::default());

    let a3 = s.net.installation("a3", &s.alice_key);
    let first = a3
        .import_archive(&from_a1, &s.key, &Control::new())
        .unwrap();
    let before = dump(&a3);
    let again = a3
        .import_archive(&from_a1, &s.key, &Control::new())
        .unwrap();
    assert_eq!(again.messages_imported, 0);
    assert_eq!(again.conversations_added, 0);
    assert_eq!(
        dump(&a3),
        before,
        "importing the same archive twice changes nothing"
    );
    a3.import_archive(&from_a2, &s.key, &Control::new())
        .unwrap();
    let g = a3.conversation(&s.group).unwrap();
    assert_eq!(texts(&g), ["g1 from alice", "g2 from bob", "g3 from bob"]);
    let ids: std::collections::HashSet<_> = g
        .messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        ids.len(),
        g.messages(&MessageQuery::default()).unwrap().len()
    );
    assert!(first.messages_imported > 0);
}

#[test]
fn time_ranged_and_consent_only_archives() {
    let s = story();
    let msgs =
        s.a1.conversation(&s.group)
            .unwrap()
            .messages(&MessageQuery::default())
            .unwrap();
    let cut = msgs
        .iter()
        .find(|m| m.text().as_deref() == Some("g2 from bob"))
        .unwrap()
        .sent_at_ns;
    let ranged = s.archive(
        &s.a1,
        "ranged.ferry",
        &ArchiveOptions {
            start_ns: Some(cut),
            ..Default::default()
        },
    );
    let a2 = s.net.installation("a2", &s.alice_key);
    a2.import_archive(&ranged, &s.key, &Control::new()).unwrap();
    assert_eq!(
        texts(&a2.conversation(&s.group).unwrap()),
        ["g2 from bob"],
        "only what was sent at or after the start"
    );

    let consent_only = s.archive(
        &s.a1,
        "consent.ferry",
        &ArchiveOptions {
            elements: vec![ArchiveElement::Consent],
            ..Default::default()
        },
    );
    let a3 = s.net.installation("a3", &s.alice_key);
    let r = a3
        .import_archive(&consent_only, &s.key, &Control::new())
        .unwrap();
    assert_eq!(r.messages_imported, 0);
    assert_eq!(r.conversations_added, 0);
    assert!(r.consent_applied >= 2);
    assert_eq!(a3.with_store(|s| s.count(Table::Messages)).unwrap(), 0);
    assert_eq!(
        a3.consent(ConsentEntity::Conversation, &hex::encode(&s.group))
            .unwrap(),
        ConsentState::Allowed
    );
}

#[test]
fn importing_into_an_installation_already_active_keeps_it_active_and_adds_what_is_missing() {
    let s = story();
    let a2 = s.net.installation("a2", &s.alice_key);
    s.a1.sync_all().unwrap(); // a2 is added to both conversations
    a2.sync_all().unwrap();
    let g2 = a2.conversation(&s.group).unwrap();
    assert!(g2.is_active().unwrap());
    assert!(texts(&g2).is_empty(), "joined after the talk");
    let archive = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let r = a2
        .import_archive(&archive, &s.key, &Control::new())
        .unwrap();
    assert_eq!(r.conversations_added, 0);
    assert_eq!(r.conversations_merged, 2);
    assert!(g2.is_active().unwrap());
    assert_eq!(texts(&g2), ["g1 from alice", "g2 from bob"]);
    // And it keeps working.
    g2.send("still active").unwrap();
    s.bob.sync_all().unwrap();
    assert_eq!(
        texts(&s.bob.conversation(&s.group).unwrap())
            .last()
            .unwrap(),
        "still active"
    );
}

#[test]
fn a_dm_recreated_after_restore_stitches_with_the_restored_one() {
    let s = story();
    let archive = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let a2 = s.net.installation("a2", &s.alice_key);
    a2.import_archive(&archive, &s.key, &Control::new())
        .unwrap();
    // Alice opens the DM with bob on the new device: the restored one is inactive, so a new
    // DM group is made, and both show as one conversation.
    let dm = a2.find_or_create_dm(s.bob.inbox_id()).unwrap();
    assert_ne!(dm.id(), s.dm.as_slice());
    dm.send("d3 from the new phone").unwrap();
    let dms = a2
        .list_conversations(&ConversationFilter {
            kind: Some(ConversationKind::Dm),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dms.len(), 1);
    assert!(dms[0].is_active());
    assert_eq!(
        texts(&a2.conversation(&dms[0].id).unwrap()),
        ["d1 from bob", "d2 from alice", "d3 from the new phone"]
    );
    // Bob sees one DM too, with everything.
    s.bob.sync_all().unwrap();
    let bob_dm = s.bob.find_or_create_dm(s.a1.inbox_id()).unwrap();
    assert_eq!(
        texts(&bob_dm),
        ["d1 from bob", "d2 from alice", "d3 from the new phone"]
    );
}

#[test]
fn an_archive_of_another_inbox_is_refused_and_nothing_is_written() {
    let s = story();
    let archive = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let before = dump(&s.bob);
    let err = s
        .bob
        .import_archive(&archive, &s.key, &Control::new())
        .unwrap_err();
    assert!(matches!(err, Error::ForeignArchive { .. }), "{err}");
    assert!(err.to_string().contains(s.a1.inbox_id().as_str()), "{err}");
    assert_eq!(dump(&s.bob), before);
}

/// XMTP's archive test, step by step: alice's first installation re-adds her restored second
/// one (a commit), and bob sends before his client has applied that commit, so his message is
/// in the epoch before it. The node orders it after the commit; the re-added installation,
/// which cannot read the older epoch, must still get it (bob re-sends it in the new epoch under
/// the same id), and nobody may see it twice.
#[test]
fn a_message_sent_in_the_epoch_before_a_re_add_reaches_the_re_added_installation() {
    let s = story();
    // Bob's send must not check members (which would sync him first).
    s.bob
        .set_check_intervals(Duration::from_secs(3600), Duration::from_secs(3600))
        .unwrap();
    let archive = s.archive(&s.a1, "a1.ferry", &ArchiveOptions::default());
    let a2 = s.net.installation("a2", &s.alice_key);
    a2.import_archive(&archive, &s.key, &Control::new())
        .unwrap();
    // a1 adds a2 to the group (and the DM): a new epoch bob has not seen.
    assert!(s.a1.sync_all().unwrap().installations_added_to >= 1);
    let bob_group = s.bob.conversation(&s.group).unwrap();
    let epoch_before = bob_group.epoch().unwrap();
    let hey = bob_group.send("hey").unwrap();
    assert_eq!(
        bob_group.epoch().unwrap(),
        epoch_before,
        "sent in the old epoch"
    );

    // Everyone syncs until nothing changes.
    for _ in 0..3 {
        for c in [&s.bob, &s.a1, &a2] {
            c.sync_all().unwrap();
        }
    }
    let g2 = a2.conversation(&s.group).unwrap();
    assert!(g2.is_active().unwrap());
    for (who, c) in [("bob", &s.bob), ("a1", &s.a1), ("a2", &a2)] {
        let g = c.conversation(&s.group).unwrap();
        assert_eq!(
            texts(&g),
            ["g1 from alice", "g2 from bob", "hey"],
            "{who} sees bob's message once"
        );
        let ids: Vec<_> = g
            .messages(&MessageQuery::default())
            .unwrap()
            .into_iter()
            .filter(|m| m.text().as_deref() == Some("hey"))
            .map(|m| m.id)
            .collect();
        assert_eq!(
            ids,
            std::slice::from_ref(&hey),
            "{who} knows it by the id bob's send returned"
        );
    }
}
