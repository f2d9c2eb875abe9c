//! Migration 4: the SDK's state moves out of `settings` key strings into tables of its own.
//! `legacy.rs` says what the schema-3 fixture holds.

mod legacy;

use std::path::{Path, PathBuf};

use ferry_store::rusqlite::{self, Connection};
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationKind,
    DeliveryStatus, DeviceSyncFlag, Membership, Message, MessageKind, PendingCommit, Store,
    SyncImport, SyncRequest,
};

use legacy::*;

/// The schema version a store has after opening (migrations 5, the sent-messages table, and 6,
/// disappearing messages, follow migration 4 and move nothing).
const CURRENT: i64 = 6;

fn user_version(s: &Store) -> i64 {
    s.conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn fixture_conversation() -> Conversation {
    Conversation {
        disappearing: None,
        id: group_a(),
        kind: ConversationKind::Group,
        created_at_ns: 10,
        name: "fixture group".into(),
        description: String::new(),
        image_url: String::new(),
        creator_inbox_id: "inbox-fixture".into(),
        dm_peer_inbox_id: None,
        dm_id: None,
        membership: Membership::Active,
        last_message_ns: None,
    }
}

fn fixture_message() -> Message {
    Message {
        expire_at_ns: None,
        id: id(0xf0),
        conversation_id: group_a(),
        sender_inbox_id: "inbox-fixture".into(),
        sender_installation_id: id(0x0f),
        sent_at_ns: 1_000,
        kind: MessageKind::Application,
        content_type: ContentType::text(),
        content: b"hello".to_vec(),
        fallback: None,
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Unpublished,
    }
}

/// Writes `tests/fixtures/schema3.db`. Run once, at the last commit before migration 4 (it
/// refuses to run on a newer schema): see `tests/fixtures/README.md`.
#[test]
#[ignore = "writes the schema-3 fixture; run by hand at the pre-migration commit"]
fn write_schema3_fixture() {
    let path = fixture_path();
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        user_version(&store),
        3,
        "the fixture must be written by the schema-3 code"
    );
    store.insert_conversation(&fixture_conversation()).unwrap();
    store.insert_message(&fixture_message()).unwrap();
    store
        .set_consent(&ConsentRecord {
            entity_type: ConsentEntity::Conversation,
            entity: hex::encode(group_a()),
            state: ConsentState::Allowed,
            updated_at_ns: 10,
        })
        .unwrap();
    store.set_cursor("group/a1", 7).unwrap();
    store
        .set_sync_message_state(&id(0x91), 2, 1, None, 333)
        .unwrap();
    for (k, v) in kept_settings() {
        store.set_setting(k, &v).unwrap();
    }
    for (k, v) in moved_settings() {
        store.set_setting(&k, &v).unwrap();
    }
    // One self-contained file, with small pages: out of WAL mode, then rebuilt.
    store
        .conn()
        .execute_batch("PRAGMA journal_mode = DELETE; PRAGMA page_size = 4096; VACUUM;")
        .unwrap();
}

/// A copy of the fixture in a fresh directory (the directory lives as long as the guard).
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    std::fs::copy(fixture_path(), &path).unwrap();
    (dir, path)
}

fn raw_user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn raw_settings(conn: &Connection) -> Vec<(String, Vec<u8>)> {
    conn.prepare("SELECT key, value FROM settings ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn tables(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn the_schema3_fixture_migrates_every_moved_row_into_its_table() {
    let (_dir, path) = fixture_copy();
    assert_eq!(raw_user_version(&path), 3);
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&store), CURRENT);

    // Send outboxes: each group's messages in the order they were queued (time, not id).
    let a = store.send_outbox(&group_a()).unwrap();
    let ids: Vec<Vec<u8>> = a.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids, group_a_order());
    for s in sends() {
        let queued = store.send_outbox(&s.group).unwrap();
        let m = queued
            .iter()
            .find(|m| m.message_id == s.message_id)
            .unwrap();
        assert_eq!(
            (m.group_id.as_slice(), m.data.as_slice()),
            (&s.group[..], s.data)
        );
    }
    assert_eq!(store.send_outbox(&group_b()).unwrap().len(), 1);
    assert!(store.send_outbox(&group_c()).unwrap().is_empty());

    // The welcome outbox and the pending commits.
    let w = store.welcome_outbox(&group_b()).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].group_id.clone(), w[0].welcome.clone()),
        (group_b(), welcome_outbox_b())
    );
    assert!(store.welcome_outbox(&group_a()).unwrap().is_empty());
    for p in pending_commits() {
        assert_eq!(
            store.pending_commit(&p.group).unwrap(),
            Some(PendingCommit {
                commit_id: p.commit_id,
                commit: p.commit.to_vec(),
                welcome: p.welcome,
            })
        );
    }
    assert_eq!(store.pending_commit(&group_b()).unwrap(), None);

    // Preference updates, oldest first.
    let prefs: Vec<Vec<u8>> = store
        .preference_outbox()
        .unwrap()
        .into_iter()
        .map(|p| p.updates)
        .collect();
    let mut expected = preference_updates();
    expected.sort_by_key(|(t, _, _)| *t);
    assert_eq!(
        prefs,
        expected
            .iter()
            .map(|(_, _, v)| v.to_vec())
            .collect::<Vec<_>>()
    );

    // History requests: their times out of the JSON record (none in the oldest form).
    let request = |pin: &str, sent, answered, record: &[u8]| SyncRequest {
        pin: pin.into(),
        sent_at_ns: sent,
        answered_at_ns: answered,
        request: record.to_vec(),
    };
    assert_eq!(
        store.sync_requests().unwrap(),
        vec![
            request(PIN_OLD, 0, None, b"pending"),
            request(PIN_WAITING, 111, None, request_waiting().as_bytes()),
            request(PIN_ANSWERED, 222, Some(333), request_answered().as_bytes()),
        ]
    );
    assert_eq!(
        store.sync_answer_sent(PIN_ANSWERED_HERE).unwrap(),
        Some(ANSWERED_HERE_AT)
    );
    assert_eq!(store.sync_answer_sent(PIN_WAITING).unwrap(), None);

    // Import records: per reply, in import order; the old one-per-request record too.
    let expected = |pin: &str| -> Vec<SyncImport> {
        let mut v: Vec<SyncImport> = imports()
            .into_iter()
            .filter(|(p, ..)| *p == pin)
            .map(|(pin, message_id, imported_at_ns, record)| SyncImport {
                pin: pin.into(),
                message_id,
                imported_at_ns,
                record: record.into_bytes(),
            })
            .collect();
        v.sort_by_key(|i| i.imported_at_ns);
        v
    };
    assert_eq!(
        store.sync_imports(PIN_ANSWERED).unwrap(),
        expected(PIN_ANSWERED)
    );
    assert_eq!(
        store.sync_imports(PIN_ANSWERED).unwrap()[0].message_id,
        id(0x92)
    );
    assert_eq!(
        store.sync_imports(PIN_OLD_IMPORT).unwrap(),
        expected(PIN_OLD_IMPORT)
    );

    // Flags and the HMAC key.
    assert!(store
        .device_sync_flag(DeviceSyncFlag::HmacRotationPending)
        .unwrap());
    assert!(store
        .device_sync_flag(DeviceSyncFlag::HistoryRequestWanted)
        .unwrap());
    assert_eq!(store.hmac_key().unwrap(), Some(hmac_key()));

    // Settings keep exactly the small client settings.
    let mut kept: Vec<(String, Vec<u8>)> = kept_settings()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    kept.sort();
    assert_eq!(raw_settings(store.conn()), kept);
    for (key, _) in moved_settings() {
        assert_eq!(store.setting(&key).unwrap(), None, "{key} left in settings");
    }

    // The other tables are as they were.
    assert_eq!(
        store.conversation(&group_a()).unwrap(),
        Some(Conversation {
            last_message_ns: Some(1_000),
            ..fixture_conversation()
        })
    );
    assert_eq!(store.message(&id(0xf0)).unwrap(), Some(fixture_message()));
    assert_eq!(
        store
            .consent(ConsentEntity::Conversation, &hex::encode(group_a()))
            .unwrap()
            .map(|c| c.state),
        Some(ConsentState::Allowed)
    );
    assert_eq!(store.cursor("group/a1").unwrap(), 7);
    assert_eq!(store.sync_message_state(&id(0x91)).unwrap(), Some((2, 1)));
}

#[test]
fn opening_a_migrated_store_again_changes_nothing() {
    let (_dir, path) = fixture_copy();
    let first = Store::open(&path).unwrap().dump().unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&store), CURRENT);
    assert_eq!(store.dump().unwrap(), first);
    assert!(first.iter().any(|l| l.starts_with("send_outbox:")));
}

#[test]
fn a_move_that_fails_leaves_the_schema3_store_as_it_was() {
    let (_dir, path) = fixture_copy();
    // A trigger that refuses deletes from settings makes the Rust step fail after it has
    // filled the new tables.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER keep_settings BEFORE DELETE ON settings
         BEGIN SELECT RAISE(ABORT, 'settings rows are kept'); END;",
    )
    .unwrap();
    let (settings, schema) = (raw_settings(&conn), tables(&conn));
    drop(conn);

    let err = Store::open(&path).err().expect("the migration fails");
    assert!(err.to_string().contains("settings rows are kept"), "{err}");

    let conn = Connection::open(&path).unwrap();
    assert_eq!(raw_user_version(&path), 3);
    assert_eq!(raw_settings(&conn), settings);
    assert_eq!(tables(&conn), schema, "no table of migration 4 remains");
    conn.execute_batch("DROP TRIGGER keep_settings").unwrap();
    drop(conn);

    // Without the obstacle the same file migrates.
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(&store), CURRENT);
    assert_eq!(store.send_outbox(&group_a()).unwrap().len(), 3);
}

#[test]
fn rows_the_sdk_never_wrote_stay_in_settings() {
    let (_dir, path) = fixture_copy();
    let odd = [
        // Not hex.
        "send_outbox/zz/00000000000000000001-ab".to_string(),
        "welcome_outbox/not-hex".to_string(),
        // A pending commit without its data.
        format!("pending_commit/{}", hex::encode(id(0xd4))),
        format!("pending_welcome/{}", hex::encode(id(0xd5))),
    ];
    let conn = Connection::open(&path).unwrap();
    for k in &odd {
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
            rusqlite::params![k, b"odd".as_slice()],
        )
        .unwrap();
    }
    drop(conn);
    let store = Store::open(&path).unwrap();
    for k in &odd {
        assert_eq!(store.setting(k).unwrap(), Some(b"odd".to_vec()), "{k}");
    }
    assert_eq!(store.pending_commit(&id(0xd4)).unwrap(), None);
    // Everything well-formed moved all the same.
    assert_eq!(store.send_outbox(&group_a()).unwrap().len(), 3);
    assert_eq!(store.setting("hmac.key").unwrap(), None);
}

#[test]
fn two_openers_of_an_old_store_both_succeed() {
    for _ in 0..4 {
        let (_dir, path) = fixture_copy();
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let openers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Store::open(&path).map(|s| user_version(&s))
                    })
                })
                .collect();
            for o in openers {
                assert_eq!(o.join().unwrap().unwrap(), CURRENT);
            }
        });
        let store = Store::open(&path).unwrap();
        assert_eq!(store.send_outbox(&group_a()).unwrap().len(), 3);
    }
}
