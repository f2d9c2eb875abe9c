//! Import previews (issue 19, part 4): `import_archive_preview` reports what `import_archive`
//! would do, writes nothing, and its numbers are the import's, field by field and per
//! conversation, on fresh, overlapping and identical stores, for Ferry and libxmtp archives.

mod xmtp_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferry_archive::{ArchiveWriter, Element, WriterOptions};
use ferry_proto::archive as pb;
use ferry_sdk::archive::{
    self, ArchiveOptions, ConsentStep, Control, ImportPreview, ImportReport, Origin, PreviewAction,
};
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationKind,
    DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
};
use ferry_sdk::{ArchiveKey, Error};
use ferry_xmtp_archive::proto::{self as xp, backup_element::Element as XElement};

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[7u8; 32]).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn store(&self, name: &str) -> Store {
        Store::open(self.dir.path().join(format!("{name}.db"))).unwrap()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn conversation(id: u8, kind: ConversationKind, name: &str) -> Conversation {
    let dm = kind == ConversationKind::Dm;
    Conversation {
        disappearing: None,
        id: vec![id; 32],
        kind,
        created_at_ns: 1_000 + i64::from(id),
        name: name.into(),
        description: String::new(),
        image_url: String::new(),
        creator_inbox_id: "me".into(),
        dm_peer_inbox_id: dm.then(|| format!("peer-{id}")),
        dm_id: dm.then(|| format!("dm:me:peer-{id}")),
        membership: Membership::Active,
        last_message_ns: None,
    }
}

/// Message `n` of conversation `conv` (ids differ across conversations).
fn message(conv: u8, n: u8) -> Message {
    let mut id = vec![n; 32];
    id[0] = conv;
    Message {
        expire_at_ns: None,
        id,
        conversation_id: vec![conv; 32],
        sender_inbox_id: format!("sender-{}", n % 2),
        sender_installation_id: vec![n % 2; 32],
        sent_at_ns: 10_000 + i64::from(conv) * 1_000 + i64::from(n),
        kind: MessageKind::Application,
        content_type: ContentType::text(),
        content: format!("{conv}/{n}").into_bytes(),
        fallback: None,
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
    }
}

fn consent(
    entity_type: ConsentEntity,
    entity: &str,
    state: ConsentState,
    at: i64,
) -> ConsentRecord {
    ConsentRecord {
        entity_type,
        entity: entity.into(),
        state,
        updated_at_ns: at,
    }
}

fn conv_entity(id: u8) -> String {
    hex::encode([id; 32])
}

/// The phone the backup comes from: a group (20 messages), a DM (8) and a second group (5),
/// and consent for two conversations and an inbox.
fn phone(s: &Store) {
    s.insert_conversation(&conversation(1, ConversationKind::Group, "Trip"))
        .unwrap();
    s.insert_conversation(&conversation(2, ConversationKind::Dm, ""))
        .unwrap();
    s.insert_conversation(&conversation(3, ConversationKind::Group, "Book club"))
        .unwrap();
    for (conv, n) in [(1u8, 20u8), (2, 8), (3, 5)] {
        for i in 1..=n {
            s.insert_message(&message(conv, i)).unwrap();
        }
    }
    let c = ConsentEntity::Conversation;
    s.set_consent(&consent(c, &conv_entity(1), ConsentState::Allowed, 100))
        .unwrap();
    s.set_consent(&consent(c, &conv_entity(2), ConsentState::Denied, 100))
        .unwrap();
    s.set_consent(&consent(
        ConsentEntity::Inbox,
        "peer-2",
        ConsentState::Allowed,
        100,
    ))
    .unwrap();
}

fn phone_archive(env: &Env) -> PathBuf {
    let src = env.store("phone");
    phone(&src);
    let path = env.path("phone.ferry");
    archive::create_archive(
        &src,
        &path,
        &key(),
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    path
}

fn messages_in(s: &Store, id: &[u8]) -> u64 {
    s.messages(&MessageFilter {
        conversation_id: Some(id.to_vec()),
        include_sync: true,
        ..Default::default()
    })
    .unwrap()
    .len() as u64
}

fn preview(s: &Store, archive: &Path, key: &ArchiveKey) -> ImportPreview {
    archive::import_archive_preview(s, archive, key, &Control::new()).unwrap()
}

/// Previews `archive` on `s`, checks that nothing was written, imports it, and checks that the
/// preview said exactly what the import did: the totals field by field, and per conversation
/// (action, messages added and skipped) and per consent record (before and after).
fn preview_then_import(s: &mut Store, archive: &Path, key: &ArchiveKey) -> ImportPreview {
    let before = s.dump().unwrap();
    let p = preview(s, archive, key);
    assert_eq!(s.dump().unwrap(), before, "the preview wrote nothing");
    // Twice gives the same answer (nothing was remembered between runs).
    assert_eq!(preview(s, archive, key), p);

    let existed: HashMap<Vec<u8>, (bool, u64)> = p
        .conversations
        .iter()
        .map(|c| {
            let here = s.conversation(&c.id).unwrap().is_some();
            (c.id.clone(), (here, messages_in(s, &c.id)))
        })
        .collect();
    let consent_before: HashMap<(ConsentEntity, String), ConsentRecord> = s
        .consent_list()
        .unwrap()
        .into_iter()
        .map(|c| ((c.entity_type, c.entity.clone()), c))
        .collect();

    let report: ImportReport = archive::import_archive(s, archive, key, &Control::new()).unwrap();
    assert_eq!(p.totals, report, "preview totals == import report");

    for c in &p.conversations {
        let (here, n_before) = existed[&c.id];
        let id = hex::encode(&c.id);
        assert_eq!(c.action == PreviewAction::Merge, here, "action of {id}");
        assert_eq!(
            messages_in(s, &c.id) - n_before,
            c.messages_new,
            "messages_new of {id}"
        );
    }
    assert_eq!(
        p.conversations.iter().map(|c| c.messages_new).sum::<u64>(),
        report.messages_imported
    );
    assert_eq!(
        p.conversations
            .iter()
            .map(|c| c.messages_present)
            .sum::<u64>(),
        report.messages_skipped
    );

    let consent_after = s.consent_list().unwrap();
    let changed: Vec<&ConsentRecord> = consent_after
        .iter()
        .filter(|c| consent_before.get(&(c.entity_type, c.entity.clone())) != Some(*c))
        .collect();
    assert_eq!(changed.len(), p.consent_changes.len(), "{changed:?}");
    for ch in &p.consent_changes {
        let now = s.consent(ch.entity_type, &ch.entity).unwrap().unwrap();
        assert_eq!(
            (now.state, now.updated_at_ns),
            (ch.step.to, ch.updated_at_ns)
        );
        let was = consent_before.get(&(ch.entity_type, ch.entity.clone()));
        assert_eq!(was.map(|r| r.state), ch.step.from);
        if ch.entity_type == ConsentEntity::Conversation {
            let id = hex::decode(&ch.entity).unwrap();
            if let Some(c) = p.conversations.iter().find(|c| c.id == id) {
                assert_eq!(c.consent, Some(ch.step));
            }
        }
    }
    p
}

fn entry(p: &ImportPreview, id: u8) -> &archive::ConversationPreview {
    p.conversations
        .iter()
        .find(|c| c.id == [id; 32])
        .unwrap_or_else(|| panic!("conversation {id} in the preview"))
}

#[test]
fn fresh_store_everything_is_added() {
    let env = Env::new();
    let archive = phone_archive(&env);
    let mut s = env.store("new");
    let p = preview_then_import(&mut s, &archive, &key());
    let t = &p.totals;
    assert_eq!(
        (t.conversations_added, t.conversations_merged),
        (3, 0),
        "{t:?}"
    );
    assert_eq!((t.messages_imported, t.messages_skipped), (33, 0));
    assert_eq!((t.consent_applied, t.consent_skipped), (3, 0));
    let trip = entry(&p, 1);
    assert_eq!(trip.action, PreviewAction::Add);
    assert_eq!(trip.kind, ConversationKind::Group);
    assert_eq!(trip.name, "Trip");
    assert_eq!((trip.messages_new, trip.messages_present), (20, 0));
    assert_eq!(
        trip.consent,
        Some(ConsentStep {
            from: None,
            to: ConsentState::Allowed
        })
    );
    let dm = entry(&p, 2);
    assert_eq!(dm.kind, ConversationKind::Dm);
    assert_eq!(dm.dm_peer_inbox_id.as_deref(), Some("peer-2"));
    assert_eq!(entry(&p, 3).consent, None);
    assert!(p
        .consent_changes
        .iter()
        .any(|c| c.entity_type == ConsentEntity::Inbox && c.entity == "peer-2"));

    // The JSON: ImportReport's field names for the totals, plus the lists.
    let j = serde_json::to_value(&p).unwrap();
    let r = serde_json::to_value(&p.totals).unwrap();
    for (k, v) in r.as_object().unwrap() {
        assert_eq!(&j[k], v, "{k}");
    }
    let c = &j["conversations"][0];
    assert_eq!(c["id"], hex::encode([1u8; 32]));
    assert_eq!(c["kind"], "group");
    assert_eq!(c["name"], "Trip");
    assert_eq!(c["action"], "add");
    assert_eq!(c["messages_new"], 20);
    assert_eq!(c["messages_present"], 0);
    assert_eq!(c["consent"]["from"], serde_json::Value::Null);
    assert_eq!(c["consent"]["to"], "allowed");
    assert_eq!(j["consent_changes"][0]["entity_type"], "conversation");
}

#[test]
fn overlapping_store_part_of_the_history_and_different_consent() {
    let env = Env::new();
    let archive = phone_archive(&env);
    let mut s = env.store("tablet");
    // The group is here under a local name with its first 12 messages; a local-only
    // conversation; consent: newer here for the group, older here for the DM, none for the
    // inbox.
    s.insert_conversation(&conversation(1, ConversationKind::Group, "Trip (tablet)"))
        .unwrap();
    for i in 1..=12 {
        s.insert_message(&message(1, i)).unwrap();
    }
    s.insert_conversation(&conversation(9, ConversationKind::Group, "Local"))
        .unwrap();
    s.insert_message(&message(9, 1)).unwrap();
    use ConsentState::*;
    s.set_consent(&consent(
        ConsentEntity::Conversation,
        &conv_entity(1),
        Denied,
        200,
    ))
    .unwrap();
    s.set_consent(&consent(
        ConsentEntity::Conversation,
        &conv_entity(2),
        Unknown,
        50,
    ))
    .unwrap();

    let p = preview_then_import(&mut s, &archive, &key());
    let t = &p.totals;
    assert_eq!((t.conversations_added, t.conversations_merged), (2, 1));
    assert_eq!((t.messages_imported, t.messages_skipped), (21, 12));
    assert_eq!((t.consent_applied, t.consent_skipped), (2, 1));
    let trip = entry(&p, 1);
    assert_eq!(trip.action, PreviewAction::Merge);
    assert_eq!(
        trip.name, "Trip (tablet)",
        "a merge shows the name kept here"
    );
    assert_eq!((trip.messages_new, trip.messages_present), (8, 12));
    assert_eq!(trip.consent, None, "the newer local consent stays");
    assert_eq!(
        entry(&p, 2).consent,
        Some(ConsentStep {
            from: Some(Unknown),
            to: Denied
        })
    );
    assert!(p.conversations.iter().all(|c| c.id != [9; 32]));
}

#[test]
fn identical_store_everything_is_present() {
    let env = Env::new();
    let archive = phone_archive(&env);
    // A store that imported the archive already.
    let mut s = env.store("copy");
    archive::import_archive(&mut s, &archive, &key(), &Control::new()).unwrap();
    let p = preview_then_import(&mut s, &archive, &key());
    let t = &p.totals;
    assert_eq!((t.conversations_added, t.conversations_merged), (0, 3));
    assert_eq!((t.messages_imported, t.messages_skipped), (0, 33));
    assert_eq!((t.consent_applied, t.consent_skipped), (0, 3));
    assert!(p.consent_changes.is_empty());
    assert!(p
        .conversations
        .iter()
        .all(|c| c.action == PreviewAction::Merge && c.messages_new == 0 && c.consent.is_none()));

    // The phone the archive came from: the same, with its own (active) conversations.
    let mut phone_store = env.store("phone");
    let p = preview_then_import(&mut phone_store, &archive, &key());
    assert_eq!(
        p.totals,
        ImportReport {
            conversations_merged: 3,
            messages_skipped: 33,
            consent_skipped: 3,
            ..Default::default()
        }
    );
}

/// A Ferry archive written element by element: conversations, messages and consent as given,
/// then one element of an unknown kind.
fn handmade(path: &Path, convs: &[Conversation], msgs: &[Message], consent: &[ConsentRecord]) {
    let file = std::fs::File::create(path).unwrap();
    let metadata = pb::Metadata {
        created_at_ns: 1,
        conversation_count: convs.len() as u64,
        message_count: msgs.len() as u64,
        consent_count: consent.len() as u64,
        ..Default::default()
    };
    let mut w = ArchiveWriter::new(file, &key(), metadata, &WriterOptions::default()).unwrap();
    for c in convs {
        w.write(Element::Conversation(pb::Conversation {
            id: c.id.clone(),
            kind: match c.kind {
                ConversationKind::Dm => pb::ConversationKind::Dm,
                _ => pb::ConversationKind::Group,
            } as i32,
            created_at_ns: c.created_at_ns,
            name: c.name.clone(),
            ..Default::default()
        }))
        .unwrap();
    }
    for m in msgs {
        w.write(Element::Message(pb::Message {
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
            sender_inbox_id: m.sender_inbox_id.clone(),
            sent_at_ns: m.sent_at_ns,
            kind: pb::MessageKind::Application as i32,
            content_type: Some(pb::ContentType {
                authority: "ferry.chat".into(),
                type_id: "text".into(),
                major: 1,
                minor: 0,
            }),
            content: m.content.clone(),
            delivery_status: pb::DeliveryStatus::Published as i32,
            ..Default::default()
        }))
        .unwrap();
    }
    for c in consent {
        w.write(Element::Consent(pb::Consent {
            entity_type: c.entity_type.as_i64() as i32,
            entity: c.entity.clone(),
            state: c.state.as_i64() as i32,
            updated_at_ns: c.updated_at_ns,
        }))
        .unwrap();
    }
    w.write_encoded(&[0x7a, 2, 1, 2]).unwrap();
    w.finish().unwrap();
}

#[test]
fn duplicates_inside_one_archive_are_counted_as_the_import_counts_them() {
    let env = Env::new();
    let path = env.path("dups.ferry");
    let (a, b) = (
        conversation(1, ConversationKind::Group, "A"),
        conversation(2, ConversationKind::Group, "B"),
    );
    let m1 = message(1, 1);
    let m1_in_b = Message {
        conversation_id: b.id.clone(),
        ..m1.clone()
    };
    use ConsentState::*;
    let x = |state, at| consent(ConsentEntity::Inbox, "x", state, at);
    handmade(
        &path,
        &[a.clone(), a.clone(), b.clone()],
        &[
            m1.clone(),
            m1.clone(),
            message(2, 1),
            m1_in_b,
            message(1, 2),
        ],
        &[
            x(Allowed, 10),
            x(Denied, 5),
            x(Denied, 20),
            x(Unknown, 20),
            consent(ConsentEntity::Conversation, &conv_entity(2), Denied, 7),
        ],
    );

    // Fresh: the first of each is imported, the repeats are skipped.
    let mut fresh = env.store("fresh");
    let p = preview_then_import(&mut fresh, &path, &key());
    assert_eq!(
        p.totals,
        ImportReport {
            conversations_added: 2,
            conversations_merged: 1,
            messages_imported: 3,
            messages_skipped: 2,
            consent_applied: 3,
            consent_skipped: 2,
            unknown_skipped: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        p.conversations.len(),
        2,
        "a conversation listed twice appears once"
    );
    assert_eq!(
        (entry(&p, 1).messages_new, entry(&p, 1).messages_present),
        (2, 1)
    );
    assert_eq!(
        (entry(&p, 2).messages_new, entry(&p, 2).messages_present),
        (1, 1)
    );
    let xs: Vec<_> = p
        .consent_changes
        .iter()
        .filter(|c| c.entity == "x")
        .collect();
    assert_eq!(xs.len(), 1);
    assert_eq!(
        (xs[0].step.from, xs[0].step.to, xs[0].updated_at_ns),
        (None, Denied, 20)
    );

    // A store holding B, its message and a consent record between the archive's.
    let mut partly = env.store("partly");
    partly.insert_conversation(&b).unwrap();
    partly.insert_message(&message(2, 1)).unwrap();
    partly.set_consent(&x(Allowed, 15)).unwrap();
    let p = preview_then_import(&mut partly, &path, &key());
    assert_eq!(
        (p.totals.conversations_added, p.totals.conversations_merged),
        (1, 2)
    );
    assert_eq!(
        (p.totals.messages_imported, p.totals.messages_skipped),
        (2, 3)
    );
    assert_eq!((p.totals.consent_applied, p.totals.consent_skipped), (2, 3));
    let xs: Vec<_> = p
        .consent_changes
        .iter()
        .filter(|c| c.entity == "x")
        .collect();
    assert_eq!((xs[0].step.from, xs[0].step.to), (Some(Allowed), Denied));
}

#[test]
fn messages_of_a_stored_conversation_the_archive_does_not_list() {
    let env = Env::new();
    let path = env.path("orphans.ferry");
    handmade(&path, &[], &[message(4, 1), message(4, 2)], &[]);
    // Nowhere to put them: the preview fails as the import does, and nothing is written.
    let mut s = env.store("s");
    let before = s.dump().unwrap();
    let e = archive::import_archive_preview(&s, &path, &key(), &Control::new()).unwrap_err();
    assert!(matches!(e, Error::InvalidArchive(_)), "{e}");
    let e2 = archive::import_archive(&mut s, &path, &key(), &Control::new()).unwrap_err();
    assert_eq!(e.to_string(), e2.to_string());
    assert_eq!(s.dump().unwrap(), before);
    // With the conversation stored, they go there (a merge).
    s.insert_conversation(&conversation(4, ConversationKind::Group, "Here"))
        .unwrap();
    s.insert_message(&message(4, 2)).unwrap();
    let p = preview_then_import(&mut s, &path, &key());
    let c = entry(&p, 4);
    assert_eq!(
        (c.action, c.messages_new, c.messages_present),
        (PreviewAction::Merge, 1, 1)
    );
    assert_eq!(p.totals.conversations_merged, 0, "no conversation element");
}

#[test]
fn wrong_key_damage_and_cancel_fail_and_write_nothing() {
    let env = Env::new();
    let archive = phone_archive(&env);
    let s = env.store("s");
    s.insert_conversation(&conversation(1, ConversationKind::Group, "Trip"))
        .unwrap();
    let before = s.dump().unwrap();
    let wrong = ArchiveKey::from_bytes(&[8u8; 32]).unwrap();
    assert!(archive::import_archive_preview(&s, &archive, &wrong, &Control::new()).is_err());
    let ctl = Control::new();
    ctl.cancel();
    assert!(matches!(
        archive::import_archive_preview(&s, &archive, &key(), &ctl),
        Err(Error::Cancelled)
    ));
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let damaged = env.path("damaged.ferry");
    std::fs::write(&damaged, bytes).unwrap();
    assert!(archive::import_archive_preview(&s, &damaged, &key(), &Control::new()).is_err());
    assert_eq!(s.dump().unwrap(), before);
}

// ---- libxmtp archives -------------------------------------------------------------------------

fn group(id: u8, ty: xp::ConversationType) -> xp::GroupSave {
    xp::GroupSave {
        id: vec![id; 16],
        created_at_ns: 5,
        conversation_type: ty as i32,
        ..Default::default()
    }
}

fn xmtp_message(n: u8, group: u8) -> xp::GroupMessageSave {
    xp::GroupMessageSave {
        id: vec![n; 32],
        group_id: vec![group; 16],
        decrypted_message_bytes: format!("hello {n}").into_bytes(),
        sent_at_ns: 100 + i64::from(n),
        kind: xp::GroupMessageKind::Application as i32,
        sender_inbox_id: "someone".into(),
        sender_installation_id: vec![1; 32],
        delivery_status: xp::DeliveryStatus::Published as i32,
        ..Default::default()
    }
}

#[test]
fn libxmtp_archives_preview_like_their_import() {
    use xmtp_common::{archive, element, metadata};
    let env = Env::new();
    let k = [9u8; 32];
    let xkey = ArchiveKey::from_bytes(&k).unwrap();
    let elements = vec![
        metadata(
            &[xp::BackupElementSelection::Messages as i32],
            1,
            None,
            None,
        ),
        element(XElement::Group(group(1, xp::ConversationType::Group))),
        element(XElement::Group(group(2, xp::ConversationType::Dm))),
        element(XElement::Group(group(3, xp::ConversationType::Sync))),
        element(XElement::GroupMessage(xmtp_message(1, 1))),
        element(XElement::GroupMessage(xmtp_message(2, 1))),
        element(XElement::GroupMessage(xmtp_message(1, 1))),
        element(XElement::GroupMessage(xmtp_message(3, 2))),
        element(XElement::GroupMessage(xmtp_message(4, 3))),
        element(XElement::Consent(xp::ConsentSave {
            entity_type: xp::ConsentType::ConversationId as i32,
            entity: hex::encode([1u8; 16]),
            state: xp::ConsentState::Allowed as i32,
            consented_at_ns: 50,
        })),
    ];
    let path = env.path("x.xmtp");
    std::fs::write(&path, archive(&k, [3; 12], &elements)).unwrap();

    let mut s = env.store("s");
    let p = preview_then_import(&mut s, &path, &xkey);
    assert_eq!(
        p.totals,
        ImportReport {
            format: archive::ArchiveFormat::Xmtp,
            conversations_added: 2,
            messages_imported: 3,
            messages_skipped: 1,
            consent_applied: 1,
            // The sync group and its message.
            unknown_skipped: 2,
            ..Default::default()
        }
    );
    // Again: everything is present now.
    let p = preview_then_import(&mut s, &path, &xkey);
    assert_eq!(
        (p.totals.conversations_merged, p.totals.messages_skipped),
        (2, 4)
    );

    // The committed libxmtp vector, fresh and again.
    let mut v = env.store("v");
    let zero = ArchiveKey::from_bytes(&[0; 32]).unwrap();
    let p = preview_then_import(&mut v, Path::new(xmtp_common::VECTOR), &zero);
    assert!(p.totals.conversations_added > 0 && p.totals.messages_imported > 0);
    let p = preview_then_import(&mut v, Path::new(xmtp_common::VECTOR), &zero);
    assert_eq!(
        (p.totals.conversations_added, p.totals.messages_imported),
        (0, 0)
    );
}

// ---- the client ----------------------------------------------------------------------------

#[test]
fn client_previews_its_inbox_archive_and_refuses_another_inbox_archive() {
    use ferry_node::{NodeConfig, RunningNode};
    use ferry_sdk::blocking::Client;
    use ferry_sdk::{AccountKey, ClientOptions, GroupOptions};
    let node = RunningNode::start(NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: ferry_node::Database::Memory,
        ..Default::default()
    })
    .unwrap();
    let env = Env::new();
    let make = |name: &str, account| {
        Client::create(ClientOptions::new(env.path(name), node.url(), account)).unwrap()
    };
    let a1 = make("a1", AccountKey::New);
    let alice_key = a1.account_key.unwrap();
    let a1 = a1.client;
    let bob = make("bob", AccountKey::New).client;
    let g = a1
        .create_group(
            &[bob.inbox_id().to_string()],
            GroupOptions {
                name: "Trip".into(),
                ..Default::default()
            },
        )
        .unwrap();
    g.send("one").unwrap();
    g.send("two").unwrap();
    let path = env.path("a1.ferry");
    a1.create_archive(&path, &key(), &ArchiveOptions::default(), &Control::new())
        .unwrap();

    // A new installation of alice's inbox.
    let a2 = make("a2", AccountKey::Existing(alice_key)).client;
    let before = a2.with_store(|s| s.dump()).unwrap();
    let p = a2
        .import_archive_preview(&path, &key(), &Control::new())
        .unwrap();
    assert_eq!(
        a2.with_store(|s| s.dump()).unwrap(),
        before,
        "the preview wrote nothing"
    );
    let trip = p.conversations.iter().find(|c| c.id == g.id()).unwrap();
    assert_eq!(trip.action, PreviewAction::Add);
    assert_eq!(trip.name, "Trip");
    assert!(trip.messages_new >= 2);
    let r = a2.import_archive(&path, &key(), &Control::new()).unwrap();
    assert_eq!(p.totals, r);

    // Bob's client refuses alice's archive, as its import does.
    let before = bob.with_store(|s| s.dump()).unwrap();
    let e = bob
        .import_archive_preview(&path, &key(), &Control::new())
        .unwrap_err();
    assert!(matches!(e, Error::ForeignArchive { .. }), "{e}");
    assert_eq!(bob.with_store(|s| s.dump()).unwrap(), before);
}
