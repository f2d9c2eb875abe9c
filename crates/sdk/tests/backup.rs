//! Archive create / metadata / import against real SQLite stores.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_sdk::archive::{self, ArchiveElement, ArchiveOptions, Control, ImportReport, Origin};
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
};
use ferry_sdk::{ArchiveKey, Error};

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[3u8; 32]).unwrap()
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

fn conv(id: u8, kind: ConversationKind, created: i64) -> Conversation {
    Conversation {
        disappearing: None,
        id: vec![id; 32],
        kind,
        created_at_ns: created,
        name: format!("conversation {id}"),
        description: format!("about {id}"),
        image_url: format!("https://img.example/{id}.png"),
        creator_inbox_id: format!("creator-{id}"),
        dm_peer_inbox_id: (kind == ConversationKind::Dm).then(|| format!("peer-{id}")),
        dm_id: (kind == ConversationKind::Dm).then(|| format!("dm:me:peer-{id}")),
        membership: Membership::Active,
        last_message_ns: None,
    }
}

fn msg(id: u8, conv: u8, sent: i64) -> Message {
    Message {
        expire_at_ns: None,
        id: {
            let mut v = vec![id; 32];
            v[0] = conv;
            v
        },
        conversation_id: vec![conv; 32],
        sender_inbox_id: format!("sender-{}", id % 3),
        sender_installation_id: vec![id % 3; 32],
        sent_at_ns: sent,
        kind: MessageKind::Application,
        content_type: ContentType::text(),
        content: format!("message {id} in {conv}").into_bytes(),
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

/// A store with three conversations (group, dm, and a hidden sync group), messages with every
/// optional field, and consent of every entity type.
fn rich_store(s: &Store) {
    s.insert_conversation(&conv(1, ConversationKind::Group, 50))
        .unwrap();
    s.insert_conversation(&conv(2, ConversationKind::Dm, 60))
        .unwrap();
    s.insert_conversation(&conv(3, ConversationKind::Sync, 70))
        .unwrap();
    s.insert_message(&msg(10, 1, 100)).unwrap();
    s.insert_message(&Message {
        kind: MessageKind::MembershipChange,
        delivery_status: DeliveryStatus::Unpublished,
        reference_id: Some(msg(10, 1, 0).id),
        ..msg(11, 1, 200)
    })
    .unwrap();
    s.insert_message(&Message {
        content_type: ContentType {
            authority: "example.org".into(),
            type_id: "reaction".into(),
            major: 2,
            minor: 1,
        },
        content: vec![0, 1, 2, 255],
        fallback: Some("reacted with a heart".into()),
        parameters: Some(vec![9, 9]),
        delivery_status: DeliveryStatus::Failed,
        ..msg(12, 2, 300)
    })
    .unwrap();
    s.insert_message(&msg(13, 3, 150)).unwrap();
    s.set_consent(&consent(
        ConsentEntity::Conversation,
        &hex::encode([1u8; 32]),
        ConsentState::Allowed,
        10,
    ))
    .unwrap();
    s.set_consent(&consent(
        ConsentEntity::Inbox,
        "spammer",
        ConsentState::Denied,
        20,
    ))
    .unwrap();
    s.set_consent(&consent(
        ConsentEntity::Address,
        "0xabc",
        ConsentState::Unknown,
        30,
    ))
    .unwrap();
}

fn create(s: &Store, path: &Path, opts: &ArchiveOptions) -> archive::ArchiveMetadata {
    archive::create_archive(s, path, &key(), opts, &Origin::default(), &Control::new()).unwrap()
}

fn import(s: &mut Store, path: &Path) -> ImportReport {
    archive::import_archive(s, path, &key(), &Control::new()).unwrap()
}

fn all_messages(s: &Store) -> Vec<Message> {
    s.messages(&MessageFilter::default()).unwrap()
}

#[test]
fn round_trip_keeps_every_field() {
    let env = Env::new();
    let a = env.store("a");
    rich_store(&a);
    let path = env.path("a.ferry");
    let meta = create(
        &a,
        &path,
        &ArchiveOptions {
            label: "weekly".into(),
            ..Default::default()
        },
    );
    assert_eq!(
        meta.conversation_count,
        Some(2),
        "the sync conversation is never exported"
    );
    assert_eq!(meta.message_count, Some(3));
    assert_eq!(meta.consent_count, Some(3));
    assert_eq!(
        meta.elements,
        vec![ArchiveElement::Messages, ArchiveElement::Consent]
    );

    let read = archive::archive_metadata(&path, &key()).unwrap();
    assert_eq!(read.label, "weekly");
    assert_eq!(read.created_at_ns, meta.created_at_ns);
    assert_eq!(read.file_bytes, std::fs::metadata(&path).unwrap().len());

    let mut b = env.store("b");
    let report = import(&mut b, &path);
    assert_eq!(
        report,
        ImportReport {
            conversations_added: 2,
            messages_imported: 3,
            consent_applied: 3,
            ..Default::default()
        }
    );
    // Conversations: every field, restored, last_message_ns from the newest message.
    for (id, newest) in [(1u8, 200), (2, 300)] {
        let orig = a.conversation(&[id; 32]).unwrap().unwrap();
        let got = b.conversation(&[id; 32]).unwrap().unwrap();
        assert_eq!(
            got,
            Conversation {
                membership: Membership::Restored,
                last_message_ns: Some(newest),
                ..orig
            }
        );
        assert!(!got.is_active());
    }
    assert!(b.conversation(&[3; 32]).unwrap().is_none());
    // Messages: every field of the exported ones.
    let want: Vec<Message> = all_messages(&a)
        .into_iter()
        .filter(|m| m.conversation_id != vec![3; 32])
        .collect();
    assert_eq!(all_messages(&b), want);
    assert_eq!(b.consent_list().unwrap(), a.consent_list().unwrap());
}

#[test]
fn time_range_is_start_inclusive_end_exclusive() {
    let env = Env::new();
    let a = env.store("a");
    a.insert_conversation(&conv(1, ConversationKind::Group, 50))
        .unwrap();
    a.insert_conversation(&conv(2, ConversationKind::Group, 250))
        .unwrap(); // created in range, no messages
    a.insert_conversation(&conv(4, ConversationKind::Group, 10))
        .unwrap(); // out of range entirely
    for (id, t) in [(1u8, 100), (2, 200), (3, 299), (4, 300)] {
        a.insert_message(&msg(id, 1, t)).unwrap();
    }
    a.insert_message(&msg(5, 4, 400)).unwrap();
    a.set_consent(&consent(
        ConsentEntity::Inbox,
        "x",
        ConsentState::Allowed,
        5,
    ))
    .unwrap();
    let path = env.path("r.ferry");
    let meta = create(
        &a,
        &path,
        &ArchiveOptions {
            start_ns: Some(200),
            end_ns: Some(300),
            ..Default::default()
        },
    );
    assert_eq!((meta.start_ns, meta.end_ns), (Some(200), Some(300)));
    assert_eq!(meta.message_count, Some(2));
    let mut b = env.store("b");
    import(&mut b, &path);
    let times: Vec<i64> = all_messages(&b).iter().map(|m| m.sent_at_ns).collect();
    assert_eq!(times, vec![200, 299]);
    let mut ids: Vec<Vec<u8>> = b
        .conversations(&ConversationFilter::default())
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![vec![1; 32], vec![2; 32]]);
    // Consent is never time-filtered (its time, 5, is outside the range).
    assert_eq!(b.consent_list().unwrap().len(), 1);
    // Only a start, only an end.
    let p2 = env.path("s.ferry");
    assert_eq!(
        create(
            &a,
            &p2,
            &ArchiveOptions {
                start_ns: Some(300),
                ..Default::default()
            }
        )
        .message_count,
        Some(2)
    );
    assert_eq!(
        create(
            &a,
            &p2,
            &ArchiveOptions {
                end_ns: Some(100),
                ..Default::default()
            }
        )
        .message_count,
        Some(0)
    );
    // An inverted range is an error, and writes nothing.
    let p3 = env.path("bad.ferry");
    let err = archive::create_archive(
        &a,
        &p3,
        &key(),
        &ArchiveOptions {
            start_ns: Some(5),
            end_ns: Some(1),
            ..Default::default()
        },
        &Origin::default(),
        &Control::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("start_ns"), "{err}");
    assert!(!p3.exists());
}

#[test]
fn element_subsets() {
    let env = Env::new();
    let a = env.store("a");
    rich_store(&a);
    let consent_only = env.path("c.ferry");
    let meta = create(
        &a,
        &consent_only,
        &ArchiveOptions {
            elements: vec![ArchiveElement::Consent],
            ..Default::default()
        },
    );
    assert_eq!(meta.elements, vec![ArchiveElement::Consent]);
    assert_eq!(
        (
            meta.conversation_count,
            meta.message_count,
            meta.consent_count
        ),
        (Some(0), Some(0), Some(3))
    );
    let mut b = env.store("b");
    let r = import(&mut b, &consent_only);
    assert_eq!(
        (
            r.conversations_added,
            r.messages_imported,
            r.consent_applied
        ),
        (0, 0, 3)
    );
    assert!(all_messages(&b).is_empty());

    let messages_only = env.path("m.ferry");
    let meta = create(
        &a,
        &messages_only,
        &ArchiveOptions {
            elements: vec![ArchiveElement::Messages],
            ..Default::default()
        },
    );
    assert_eq!(meta.elements, vec![ArchiveElement::Messages]);
    let mut c = env.store("c");
    let r = import(&mut c, &messages_only);
    assert_eq!(
        (
            r.conversations_added,
            r.messages_imported,
            r.consent_applied
        ),
        (2, 3, 0)
    );
    assert!(c.consent_list().unwrap().is_empty());

    let err = archive::create_archive(
        &a,
        &env.path("n.ferry"),
        &key(),
        &ArchiveOptions {
            elements: vec![],
            ..Default::default()
        },
        &Origin::default(),
        &Control::new(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoElements));
}

#[test]
fn reimport_changes_nothing() {
    let env = Env::new();
    let mut a = env.store("a");
    ferry_sdk::dev::seed(
        &mut a,
        &ferry_sdk::dev::SeedOptions {
            conversations: 7,
            messages: 3000,
            consent: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let path = env.path("a.ferry");
    create(&a, &path, &ArchiveOptions::default());
    let mut b = env.store("b");
    let first = import(&mut b, &path);
    assert_eq!(first.messages_imported, 3000);
    let dump = b.dump().unwrap();
    let second = import(&mut b, &path);
    assert_eq!(
        second,
        ImportReport {
            conversations_merged: 7,
            messages_skipped: 3000,
            consent_skipped: first.consent_applied,
            ..Default::default()
        }
    );
    assert_eq!(b.dump().unwrap(), dump);
}

#[test]
fn import_into_a_store_that_has_some_of_the_data() {
    let env = Env::new();
    let a = env.store("a");
    rich_store(&a);
    let path = env.path("a.ferry");
    create(&a, &path, &ArchiveOptions::default());

    let mut b = env.store("b");
    // b is active in conversation 1 and has one of its messages plus a newer one of its own.
    b.insert_conversation(&conv(1, ConversationKind::Group, 50))
        .unwrap();
    b.insert_message(&msg(10, 1, 100)).unwrap();
    b.insert_message(&msg(99, 1, 150)).unwrap();
    // Newer local consent for the inbox, older for the conversation.
    b.set_consent(&consent(
        ConsentEntity::Inbox,
        "spammer",
        ConsentState::Allowed,
        25,
    ))
    .unwrap();
    b.set_consent(&consent(
        ConsentEntity::Conversation,
        &hex::encode([1u8; 32]),
        ConsentState::Denied,
        5,
    ))
    .unwrap();

    let r = import(&mut b, &path);
    assert_eq!(r.conversations_added, 1);
    assert_eq!(r.conversations_merged, 1);
    assert_eq!((r.messages_imported, r.messages_skipped), (2, 1));
    assert_eq!((r.consent_applied, r.consent_skipped), (2, 1));
    let c1 = b.conversation(&[1; 32]).unwrap().unwrap();
    assert_eq!(
        c1.membership,
        Membership::Active,
        "an existing conversation keeps its state"
    );
    assert_eq!(
        c1.last_message_ns,
        Some(200),
        "takes the later last_message_ns"
    );
    assert!(
        b.message(&msg(99, 1, 0).id).unwrap().is_some(),
        "nothing local is deleted"
    );
    assert_eq!(
        b.consent(ConsentEntity::Inbox, "spammer")
            .unwrap()
            .unwrap()
            .state,
        ConsentState::Allowed
    );
    assert_eq!(
        b.consent(ConsentEntity::Conversation, &hex::encode([1u8; 32]))
            .unwrap()
            .unwrap()
            .state,
        ConsentState::Allowed
    );
}

/// Imports that must fail, each leaving the store exactly as it was.
#[test]
fn failed_imports_write_nothing() {
    let env = Env::new();
    let mut a = env.store("a");
    ferry_sdk::dev::seed(
        &mut a,
        &ferry_sdk::dev::SeedOptions {
            conversations: 5,
            messages: 20_000,
            consent: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let path = env.path("a.ferry");
    create(&a, &path, &ArchiveOptions::default());
    let good = std::fs::read(&path).unwrap();

    let mut b = env.store("b");
    rich_store(&b);
    let before = b.dump().unwrap();
    let variant = |name: &str, bytes: &[u8]| {
        let p = env.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut flipped_middle = good.clone();
    let mid = good.len() / 2;
    flipped_middle[mid] ^= 1;
    let mut flipped_last = good.clone();
    let last = good.len() - 3;
    flipped_last[last] ^= 1;
    let mut future = good.clone();
    future[8] = 9;
    let mut appended = good.clone();
    appended.extend_from_slice(b"extra");
    let cases: Vec<(&str, PathBuf, ArchiveKey, &str)> = vec![
        (
            "wrong key",
            path.clone(),
            ArchiveKey::from_bytes(&[4u8; 32]).unwrap(),
            "wrong key",
        ),
        (
            "not an archive",
            variant("junk", b"just some text, not an archive at all"),
            key(),
            "not a Ferry archive",
        ),
        (
            "future version",
            variant("future", &future),
            key(),
            "newer than this Ferry reads",
        ),
        (
            "middle chunk",
            variant("mid", &flipped_middle),
            key(),
            "failed authentication",
        ),
        (
            "last chunk",
            variant("last", &flipped_last),
            key(),
            "failed authentication",
        ),
        (
            "truncated",
            variant("trunc", &good[..good.len() - 10]),
            key(),
            "truncated",
        ),
        (
            "appended",
            variant("app", &appended),
            key(),
            "data after its final chunk",
        ),
    ];
    // Damage at the chunk level too: the header, the metadata chunk, chunks swapped,
    // duplicated, dropped, and a cut exactly at a chunk boundary. (The format crate's tests
    // check each error; here the point is that none of them writes anything.)
    let header_len = ferry_archive::HEADER_LEN;
    let mut bounds = Vec::new();
    let mut at = header_len;
    while at < good.len() {
        let len = u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
        bounds.push((at, 4 + len));
        at += 4 + len;
    }
    assert!(bounds.len() >= 3, "the fixture needs several chunks");
    let rebuild = |order: &[usize]| -> Vec<u8> {
        let mut out = good[..header_len].to_vec();
        for &i in order {
            let (o, l) = bounds[i];
            out.extend_from_slice(&good[o..o + l]);
        }
        out
    };
    let n = bounds.len();
    let all: Vec<usize> = (0..n).collect();
    let mut header_flip = good.clone();
    header_flip[40] ^= 1;
    let mut metadata_flip = good.clone();
    metadata_flip[header_len + 10] ^= 1;
    let mut swapped = all.clone();
    swapped.swap(n - 2, n - 1);
    let mut duplicated = all.clone();
    duplicated.insert(1, 1);
    let mut dropped = all.clone();
    dropped.remove(1);
    let more: Vec<(&str, Vec<u8>)> = vec![
        ("header flip", header_flip),
        ("metadata flip", metadata_flip),
        ("chunks swapped", rebuild(&swapped)),
        ("chunk duplicated", rebuild(&duplicated)),
        ("chunk dropped", rebuild(&dropped)),
        ("cut at a chunk boundary", rebuild(&all[..n - 1])),
    ];
    let mut cases = cases;
    for (name, bytes) in more {
        cases.push((name, variant(name, &bytes), key(), ""));
    }
    for (name, p, k, want) in cases {
        let err = archive::import_archive(&mut b, &p, &k, &Control::new()).unwrap_err();
        assert!(err.to_string().contains(want), "{name}: {err}");
        assert_eq!(b.dump().unwrap(), before, "{name} changed the store");
    }
    // A missing file.
    let err =
        archive::import_archive(&mut b, &env.path("nope"), &key(), &Control::new()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(b.dump().unwrap(), before);
}

#[test]
fn missing_parent_folder_is_a_clear_error() {
    let env = Env::new();
    let a = env.store("a");
    rich_store(&a);
    let path = env.path("no/such/folder/a.ferry");
    let err = archive::create_archive(
        &a,
        &path,
        &key(),
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::ParentMissing(_)), "{err}");
    assert!(err.to_string().contains("does not exist"));
    assert!(!env.path("no").exists());
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn cancel_midway_leaves_no_file_and_no_rows() {
    let env = Env::new();
    let mut a = env.store("a");
    ferry_sdk::dev::seed(
        &mut a,
        &ferry_sdk::dev::SeedOptions {
            conversations: 5,
            messages: 40_000,
            consent: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let out_dir = env.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let path = out_dir.join("a.ferry");
    // An older archive at the path stays as it was when a new one is cancelled.
    std::fs::write(&path, b"previous archive").unwrap();

    let calls = Arc::new(AtomicU64::new(0));
    let ctl = Control::new();
    let flag = ctl.cancel_flag();
    let c2 = calls.clone();
    let ctl = ctl.on_progress(move |p| {
        c2.fetch_add(1, Ordering::Relaxed);
        if p.elements_done >= 10_000 {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let err = archive::create_archive(
        &a,
        &path,
        &key(),
        &ArchiveOptions::default(),
        &Origin::default(),
        &ctl,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(calls.load(Ordering::Relaxed) >= 1);
    assert_eq!(std::fs::read(&path).unwrap(), b"previous archive");
    assert_eq!(
        files_in(&out_dir),
        vec!["a.ferry".to_string()],
        "no temporary file is left"
    );

    // A whole archive, then an import cancelled midway.
    create(&a, &path, &ArchiveOptions::default());
    let mut b = env.store("b");
    let before = b.dump().unwrap();
    let ctl = Control::new();
    let flag = ctl.cancel_flag();
    let ctl = ctl.on_progress(move |p| {
        if p.elements_done >= 10_000 && p.elements_done < p.elements_total {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let err = archive::import_archive(&mut b, &path, &key(), &ctl).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(b.dump().unwrap(), before);
}

#[test]
fn progress_is_reported_and_reaches_the_total() {
    let env = Env::new();
    let mut a = env.store("a");
    ferry_sdk::dev::seed(
        &mut a,
        &ferry_sdk::dev::SeedOptions {
            conversations: 3,
            messages: 30_000,
            consent: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let path = env.path("a.ferry");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let ctl = Control::new().on_progress(move |p| s2.lock().unwrap().push(p));
    archive::create_archive(
        &a,
        &path,
        &key(),
        &ArchiveOptions::default(),
        &Origin::default(),
        &ctl,
    )
    .unwrap();
    let create_seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(create_seen.len() >= 3);
    assert!(create_seen
        .windows(2)
        .all(|w| w[0].elements_done <= w[1].elements_done));
    let last = create_seen.last().unwrap();
    assert_eq!(last.elements_done, 30_003);
    assert_eq!(last.elements_total, 30_003);

    let mut b = env.store("b");
    let s3 = seen.clone();
    let ctl = Control::new().on_progress(move |p| s3.lock().unwrap().push(p));
    archive::import_archive(&mut b, &path, &key(), &ctl).unwrap();
    let import_seen = seen.lock().unwrap().clone();
    assert!(import_seen.len() >= 3);
    let last = import_seen.last().unwrap();
    assert_eq!(last.bytes_done, std::fs::metadata(&path).unwrap().len());
    assert_eq!(last.elements_done, 30_003);
}

#[test]
fn metadata_reports_the_origin() {
    let env = Env::new();
    let a = env.store("a");
    rich_store(&a);
    let path = env.path("a.ferry");
    let origin = Origin {
        inbox_id: "alice".into(),
        installation_id: vec![0xaa; 32],
        ..Default::default()
    };
    archive::create_archive(
        &a,
        &path,
        &key(),
        &ArchiveOptions::default(),
        &origin,
        &Control::new(),
    )
    .unwrap();
    let m = archive::archive_metadata(&path, &key()).unwrap();
    assert_eq!(m.inbox_id, "alice");
    assert_eq!(m.installation_id, hex::encode([0xaa; 32]));
    assert_eq!(m.format_version, "1.0");
    assert_eq!(m.key_kind, "key");
}

#[test]
fn restored_conversations_are_listed_as_inactive() {
    let env = Env::new();
    let a = env.store("a");
    rich_store(&a);
    let path = env.path("a.ferry");
    create(&a, &path, &ArchiveOptions::default());
    let mut b = env.store("b");
    import(&mut b, &path);
    let inactive = b
        .conversations(&ConversationFilter {
            active: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(inactive.len(), 2);
    assert!(b
        .conversations(&ConversationFilter {
            active: Some(true),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
}

#[test]
fn unknown_elements_are_skipped_and_counted() {
    use ferry_archive::proto as pb;
    use ferry_archive::{ArchiveWriter, Element, WriterOptions};
    let env = Env::new();
    let path = env.path("newer.ferry");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = ArchiveWriter::new(
        file,
        &key(),
        pb::Metadata {
            elements: vec![pb::ElementKind::Messages as i32],
            conversation_count: 1,
            message_count: 1,
            ..Default::default()
        },
        &WriterOptions::default(),
    )
    .unwrap();
    w.write(Element::Conversation(pb::Conversation {
        id: vec![1; 32],
        kind: pb::ConversationKind::Group as i32,
        name: "from a newer Ferry".into(),
        ..Default::default()
    }))
    .unwrap();
    // A kind this version does not know (field 15).
    w.write_encoded(&[0x7a, 2, 1, 2]).unwrap();
    w.write(Element::Message(pb::Message {
        id: vec![5; 32],
        conversation_id: vec![1; 32],
        sender_inbox_id: "bob".into(),
        sent_at_ns: 7,
        content_type: Some(pb::ContentType {
            authority: "ferry.chat".into(),
            type_id: "text".into(),
            major: 1,
            minor: 0,
        }),
        content: b"hi".to_vec(),
        ..Default::default()
    }))
    .unwrap();
    w.finish().unwrap();
    let mut b = env.store("b");
    let r = import(&mut b, &path);
    assert_eq!(r.unknown_skipped, 1);
    assert_eq!(r.messages_imported, 1);
    assert_eq!(r.conversations_added, 1);
    assert_eq!(all_messages(&b)[0].text().as_deref(), Some("hi"));
}
