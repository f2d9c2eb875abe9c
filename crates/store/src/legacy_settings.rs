//! Migration 4's Rust step: the SDK's state that schema 3 kept as key strings in `settings`
//! moves into the tables migration 4 creates, in the same transaction. The key shapes are
//! those the SDK wrote:
//!
//! | `settings` key | moves to |
//! |---|---|
//! | `send_outbox/{group}/{time:020}-{message}` | `send_outbox`, queued in key order (time, then id) |
//! | `welcome_outbox/{group}` | `welcome_outbox` |
//! | `pending_commit/{group}`, `pending_commit_data/{group}`, `pending_welcome/{group}` | one `pending_commits` row |
//! | `preference_outbox/{time:020}-{random}` | `preference_outbox`, queued in key order |
//! | `sync_request/{pin}` | `sync_requests` (times read from the JSON record; none in `pending`) |
//! | `sync_answered/{pin}` (time, 8 bytes big-endian) | `sync_answers_sent` |
//! | `sync_import/{pin}/{message}`, and the older `sync_import/{pin}` | `sync_imports` |
//! | `hmac.rotate_pending`, `sync_request_wanted` | `device_sync_flags` |
//! | `hmac.key` | `hmac_key` |
//!
//! (`{group}` and `{message}` are lowercase hex.) A row of one of these shapes that does not
//! parse (bad hex, a pending commit without its data), which the SDK never wrote, stays in
//! `settings` as it is: nothing is lost, and nothing reads it any more.

use std::collections::BTreeMap;

use rusqlite::types::Value;

use crate::{DeviceSyncFlag, PendingCommit, Result, Store, SyncImport, SyncRequest};

pub(crate) fn move_to_tables(store: &Store) -> Result<()> {
    let rows: BTreeMap<String, Vec<u8>> = store
        .rows("SELECT key, CAST(value AS BLOB) FROM settings", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .into_iter()
        .collect();
    let mut moved: Vec<&str> = Vec::new();
    // In key order: a group's send outbox and the preference outbox are queued in it.
    for (key, value) in &rows {
        let key = key.as_str();
        let done = if let Some(rest) = key.strip_prefix("send_outbox/") {
            send_outbox(store, rest, value)?
        } else if let Some(group) = key.strip_prefix("welcome_outbox/") {
            match hex_id(group) {
                Some(g) => {
                    store.welcome_outbox_push(&g, value)?;
                    true
                }
                None => false,
            }
        } else if let Some(group) = key.strip_prefix("pending_commit/") {
            let data_key = format!("pending_commit_data/{group}");
            let welcome_key = format!("pending_welcome/{group}");
            match (hex_id(group), rows.get(&data_key)) {
                (Some(g), Some(commit)) => {
                    let welcome = rows.get_key_value(&welcome_key);
                    store.set_pending_commit(
                        &g,
                        &PendingCommit {
                            commit_id: value.clone(),
                            commit: commit.clone(),
                            welcome: welcome.map(|(_, w)| w.clone()),
                        },
                    )?;
                    moved.push(rows.get_key_value(&data_key).expect("present").0);
                    if let Some((k, _)) = welcome {
                        moved.push(k);
                    }
                    true
                }
                _ => false,
            }
        } else if key.starts_with("preference_outbox/") {
            store.preference_outbox_push(value)?;
            true
        } else if let Some(pin) = key.strip_prefix("sync_request/") {
            store.put_sync_request(&SyncRequest {
                pin: pin.to_string(),
                sent_at_ns: json_i64(store, value, "$.sent_at_ns")?.unwrap_or(0),
                answered_at_ns: json_i64(store, value, "$.answered_at_ns")?,
                request: value.clone(),
            })?;
            true
        } else if let Some(pin) = key.strip_prefix("sync_answered/") {
            let at = <[u8; 8]>::try_from(value.as_slice()).map_or(0, i64::from_be_bytes);
            store.record_sync_answer_sent(pin, at)?;
            true
        } else if let Some(rest) = key.strip_prefix("sync_import/") {
            sync_import(store, rest, value)?
        } else if key == "hmac.rotate_pending" {
            store.set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, true)?;
            true
        } else if key == "sync_request_wanted" {
            store.set_device_sync_flag(DeviceSyncFlag::HistoryRequestWanted, true)?;
            true
        } else if key == "hmac.key" {
            store.set_hmac_key(value)?;
            true
        } else {
            false
        };
        if done {
            moved.push(key);
        }
    }
    let mut delete = store.conn.prepare("DELETE FROM settings WHERE key = ?1")?;
    for key in moved {
        delete.execute([key])?;
    }
    Ok(())
}

/// `{group}/{time:020}-{message}`: the message id is what follows the last `-`.
fn send_outbox(store: &Store, rest: &str, data: &[u8]) -> Result<bool> {
    let Some((group, entry)) = rest.split_once('/') else {
        return Ok(false);
    };
    let message = entry.rsplit('-').next().unwrap_or(entry);
    let (Some(g), Some(m)) = (hex_id(group), hex_id(message)) else {
        return Ok(false);
    };
    store.send_outbox_push(&g, &m, data)?;
    Ok(true)
}

/// `{pin}/{message}`, or `{pin}` alone (one import per request, the message id only in the
/// record).
fn sync_import(store: &Store, rest: &str, record: &[u8]) -> Result<bool> {
    let (pin, message_id) = match rest.rsplit_once('/') {
        Some((pin, m)) if hex_id(m).is_some() => (pin, hex_id(m).expect("checked")),
        _ => {
            let named = json_text(store, record, "$.message_id")?;
            (rest, named.as_deref().and_then(hex_id).unwrap_or_default())
        }
    };
    if pin.is_empty() {
        return Ok(false);
    }
    store.put_sync_import(&SyncImport {
        pin: pin.to_string(),
        message_id,
        imported_at_ns: json_i64(store, record, "$.imported_at_ns")?.unwrap_or(0),
        record: record.to_vec(),
    })?;
    Ok(true)
}

/// Lowercase (or any) hex of a non-empty id.
fn hex_id(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok().filter(|b| !b.is_empty())
}

/// A field of a JSON record, read by SQLite; `Null` when the record is not JSON text.
fn json_field(store: &Store, record: &[u8], path: &str) -> Result<Value> {
    Ok(store.conn.query_row(
        "SELECT CASE WHEN json_valid(CAST(?1 AS TEXT)) THEN json_extract(CAST(?1 AS TEXT), ?2) END",
        rusqlite::params![record, path],
        |r| r.get(0),
    )?)
}

fn json_i64(store: &Store, record: &[u8], path: &str) -> Result<Option<i64>> {
    Ok(match json_field(store, record, path)? {
        Value::Integer(i) => Some(i),
        _ => None,
    })
}

fn json_text(store: &Store, record: &[u8], path: &str) -> Result<Option<String>> {
    Ok(match json_field(store, record, path)? {
        Value::Text(s) => Some(s),
        _ => None,
    })
}
