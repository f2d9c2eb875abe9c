//! What the schema-3 fixture holds: the SDK's state as `settings` key strings, in the shapes
//! today's SDK writes them (`crates/sdk/src/client/{conversations,sync,history}.rs`), plus a
//! few rows of the other tables. The generator writes these values; the migration test
//! expects them back in the new tables.

use std::path::PathBuf;

/// The fixture file, relative to this crate.
pub const FIXTURE: &str = "tests/fixtures/schema3.db";

pub fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// A 32-byte id: `tag` repeated (group ids, message ids and installation ids are 32 bytes).
pub fn id(tag: u8) -> Vec<u8> {
    vec![tag; 32]
}

pub fn group_a() -> Vec<u8> {
    id(0xa1)
}
pub fn group_b() -> Vec<u8> {
    id(0xb2)
}
pub fn group_c() -> Vec<u8> {
    id(0xc3)
}

/// A welcome and its recipients, encoded as `encode_welcome_record` does.
pub fn welcome_record(welcome: &[u8], to: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (to.len() as u32).to_be_bytes().to_vec();
    for i in to {
        out.extend_from_slice(i);
    }
    out.extend_from_slice(welcome);
    out
}

/// One queued message of a send outbox.
pub struct Send {
    pub group: Vec<u8>,
    pub queued_at_ns: i64,
    pub message_id: Vec<u8>,
    pub data: &'static [u8],
}

/// The send outboxes. In group A the time order is not the message-id order: the queue is
/// kept in time order (the key is `send_outbox/{group}/{time:020}-{message id}`).
pub fn sends() -> Vec<Send> {
    let s = |group: Vec<u8>, queued_at_ns, tag, data| Send {
        group,
        queued_at_ns,
        message_id: id(tag),
        data,
    };
    vec![
        s(group_a(), 1_000, 0xf0, b"ciphertext a1"),
        s(group_a(), 2_000, 0x10, b"ciphertext a2"),
        s(group_a(), 3_000, 0x05, b"ciphertext a3"),
        s(group_b(), 1_500, 0x33, b"ciphertext b1"),
    ]
}

/// Group A's publish order (message ids).
pub fn group_a_order() -> Vec<Vec<u8>> {
    vec![id(0xf0), id(0x10), id(0x05)]
}

/// Group B's confirmed commit's welcome, waiting to be sent.
pub fn welcome_outbox_b() -> Vec<u8> {
    welcome_record(b"welcome b", &[id(0x01), id(0x02)])
}

/// A staged commit: its message id, its bytes and the welcome it sends once confirmed.
pub struct Pending {
    pub group: Vec<u8>,
    pub commit_id: Vec<u8>,
    pub commit: &'static [u8],
    pub welcome: Option<Vec<u8>>,
}

pub fn pending_commits() -> Vec<Pending> {
    vec![
        Pending {
            group: group_a(),
            commit_id: id(0x77),
            commit: b"commit a",
            welcome: Some(welcome_record(b"welcome a", &[id(0x03)])),
        },
        Pending {
            group: group_c(),
            commit_id: id(0x78),
            commit: b"commit c",
            welcome: None,
        },
    ]
}

/// Preference updates waiting to go out: (time in the key, random part, encoded updates).
/// Written newest first; sent oldest first.
pub fn preference_updates() -> Vec<(i64, &'static str, &'static [u8])> {
    vec![
        (5_000, "9f86d081884c7d659a2feaa0c55ad015", b"\x0a\x03two"),
        (4_000, "a3bf4f1b2b0b822cd15d6c15b0f00a08", b"\x0a\x03one"),
    ]
}

pub const PIN_WAITING: &str = "0b5d1c44a4e6bde26c3a1e7a8e5d4f01";
pub const PIN_ANSWERED: &str = "1c6e2d55b5f7cef37d4b2f8b9f6e5a12";
/// A request written before requests kept their options: the value is `pending`.
pub const PIN_OLD: &str = "2d7f3e66c608d0048e5c309ca07f6b23";
/// A request of another installation that this one answered.
pub const PIN_ANSWERED_HERE: &str = "3e804f77d719e1159f6d41adb1807c34";
/// A request whose one import was recorded before records were kept per reply
/// (`sync_import/{pin}`).
pub const PIN_OLD_IMPORT: &str = "4f915088e82af226a07e52bec2918d45";

pub fn request_waiting() -> &'static str {
    r#"{"messages":true,"consent":true,"start_ns":null,"end_ns":null,"sent_at_ns":111,"answered_at_ns":null}"#
}
pub fn request_answered() -> &'static str {
    r#"{"messages":true,"consent":false,"start_ns":10,"end_ns":20,"sent_at_ns":222,"answered_at_ns":333}"#
}

pub const ANSWERED_HERE_AT: i64 = 444;

/// The import records: (pin, message id, imported at, the record as the SDK wrote it). The
/// second reply to PIN_ANSWERED was imported before the first in key order.
pub fn imports() -> Vec<(&'static str, Vec<u8>, i64, String)> {
    let record = |mid: &[u8], at: Option<i64>| {
        let at = at.map_or(String::new(), |t| format!(r#","imported_at_ns":{t}"#));
        format!(
            r#"{{"message_id":"{}","sender_installation_id":"{}"{at},"url":"https://history.example/a","report":{{"conversations":1,"messages":2}}}}"#,
            hex::encode(mid),
            hex::encode(id(0x0e)),
        )
    };
    vec![
        (PIN_ANSWERED, id(0x91), 333, record(&id(0x91), Some(333))),
        (PIN_ANSWERED, id(0x92), 300, record(&id(0x92), Some(300))),
        (PIN_OLD_IMPORT, id(0x95), 0, record(&id(0x95), None)),
    ]
}

/// The inbox's HMAC secret, an encoded `HmacKeyUpdate` (secret, revision 2, created at).
pub fn hmac_key() -> Vec<u8> {
    let mut v = vec![0x0a, 32];
    v.extend_from_slice(&[0x5a; 32]);
    v.extend_from_slice(&[0x10, 2, 0x18, 0x80, 0x01]);
    v
}

/// Settings that stay where they are.
pub fn kept_settings() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("inbox_id", b"inbox-fixture".to_vec()),
        ("installation_id", id(0x0f)),
        ("client.node_url", b"http://127.0.0.1:5556".to_vec()),
        ("client.history_sync_url", b"http://127.0.0.1:5558".to_vec()),
        ("client.send_check_interval_ms", b"500".to_vec()),
        (
            "client.known_own_installations",
            hex::encode(id(0x0f)).into_bytes(),
        ),
        ("backups.policy", br#"{"every_hours":24}"#.to_vec()),
        ("backups.journal", br#"{"entries":[]}"#.to_vec()),
    ]
}

/// Every moved row as the SDK keys it: (key, value).
pub fn moved_settings() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for s in sends() {
        out.push((
            format!(
                "send_outbox/{}/{:020}-{}",
                hex::encode(&s.group),
                s.queued_at_ns,
                hex::encode(&s.message_id)
            ),
            s.data.to_vec(),
        ));
    }
    out.push((
        format!("welcome_outbox/{}", hex::encode(group_b())),
        welcome_outbox_b(),
    ));
    for p in pending_commits() {
        let g = hex::encode(&p.group);
        out.push((format!("pending_commit/{g}"), p.commit_id.clone()));
        out.push((format!("pending_commit_data/{g}"), p.commit.to_vec()));
        if let Some(w) = &p.welcome {
            out.push((format!("pending_welcome/{g}"), w.clone()));
        }
    }
    for (t, random, v) in preference_updates() {
        out.push((format!("preference_outbox/{t:020}-{random}"), v.to_vec()));
    }
    out.push((
        format!("sync_request/{PIN_WAITING}"),
        request_waiting().into(),
    ));
    out.push((
        format!("sync_request/{PIN_ANSWERED}"),
        request_answered().into(),
    ));
    out.push((format!("sync_request/{PIN_OLD}"), b"pending".to_vec()));
    out.push((
        format!("sync_answered/{PIN_ANSWERED_HERE}"),
        ANSWERED_HERE_AT.to_be_bytes().to_vec(),
    ));
    for (pin, mid, _, record) in imports() {
        let key = if pin == PIN_OLD_IMPORT {
            format!("sync_import/{pin}")
        } else {
            format!("sync_import/{pin}/{}", hex::encode(mid))
        };
        out.push((key, record.into_bytes()));
    }
    out.push(("sync_request_wanted".into(), b"1".to_vec()));
    out.push(("hmac.rotate_pending".into(), b"1".to_vec()));
    out.push(("hmac.key".into(), hmac_key()));
    out
}
