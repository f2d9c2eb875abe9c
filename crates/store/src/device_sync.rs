//! Device sync's own state: the handled sync-group messages, this installation's history
//! requests and the replies imported for them, the requests it answered, the work left to
//! resume, and the inbox's HMAC key.

use rusqlite::{params, OptionalExtension, Row};

use crate::messages::{message_from_row, MESSAGE_COLS, MESSAGE_FROM};
use crate::{DeviceSyncFlag, Message, Result, Store};

/// What the store knows of one handled sync-group message (see
/// [`Store::sync_message_record`]); state 1 pending, 2 processed, 3 failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessageRecord {
    pub state: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at_ns: i64,
}

/// A history request this installation sent, kept until its reply window closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The request's id in the sync group (random hex, or a pin the app chose).
    pub pin: String,
    pub sent_at_ns: i64,
    /// When the first reply was imported; `None` while the request waits for one.
    pub answered_at_ns: Option<i64>,
    /// The SDK's record of what was asked for. In rows moved from `settings` by migration 4 it
    /// is the record as the SDK wrote it then (also holding the two times, which the columns
    /// above now own; or `pending` from stores older still).
    pub request: Vec<u8>,
}

impl SyncRequest {
    /// Whether a reply to it was imported.
    pub fn is_answered(&self) -> bool {
        self.answered_at_ns.is_some()
    }
}

/// One reply to a request of this installation that was imported here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncImport {
    pub pin: String,
    /// The sync message that announced the archive (empty for an import recorded before
    /// replies were told apart, when the record did not name it).
    pub message_id: Vec<u8>,
    pub imported_at_ns: i64,
    /// The SDK's record of the import (who answered, where from, the import's report).
    pub record: Vec<u8>,
}

impl Store {
    /// The state (1 pending, 2 processed, 3 failed) and attempts of a handled sync message.
    pub fn sync_message_state(&self, id: &[u8]) -> Result<Option<(i64, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, attempts FROM sync_messages WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Everything known of a handled sync message: state, attempts, the last error and when
    /// it was last tried.
    pub fn sync_message_record(&self, id: &[u8]) -> Result<Option<SyncMessageRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, attempts, last_error, updated_at_ns FROM sync_messages WHERE id = ?1",
                [id],
                |r| {
                    Ok(SyncMessageRecord {
                        state: r.get(0)?,
                        attempts: r.get(1)?,
                        last_error: r.get(2)?,
                        updated_at_ns: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn set_sync_message_state(
        &self,
        id: &[u8],
        state: i64,
        attempts: i64,
        last_error: Option<&str>,
        now_ns: i64,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO sync_messages(id, state, attempts, last_error, updated_at_ns)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
                 last_error = excluded.last_error, updated_at_ns = excluded.updated_at_ns",
            )?
            .execute(params![id, state, attempts, last_error, now_ns])?;
        Ok(())
    }

    /// A conversation's messages that no sync-message record marks processed or failed
    /// (never handled, or pending a retry), in time order.
    pub fn unhandled_sync_messages(&self, conversation_id: &[u8]) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLS} FROM {MESSAGE_FROM} LEFT JOIN sync_messages x ON x.id = m.id
             WHERE c.id = ?1 AND (x.state IS NULL OR x.state = 1)
             ORDER BY m.sent_at_ns, m.id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([conversation_id], message_from_row)?;
        rows.map(|r| r?).collect()
    }

    // ---- requests -------------------------------------------------------------------------

    /// Records a history request of this installation, replacing one with the same pin.
    pub fn put_sync_request(&self, r: &SyncRequest) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sync_requests (pin, sent_at_ns, answered_at_ns, request)
             VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![r.pin, r.sent_at_ns, r.answered_at_ns, r.request])?;
        Ok(())
    }

    /// The request with this pin, if this installation sent it and still keeps it.
    pub fn sync_request(&self, pin: &str) -> Result<Option<SyncRequest>> {
        Ok(self
            .conn
            .query_row(
                "SELECT pin, sent_at_ns, answered_at_ns, request FROM sync_requests WHERE pin = ?1",
                [pin],
                sync_request_from_row,
            )
            .optional()?)
    }

    /// This installation's kept requests, oldest first.
    pub fn sync_requests(&self) -> Result<Vec<SyncRequest>> {
        self.rows(
            "SELECT pin, sent_at_ns, answered_at_ns, request FROM sync_requests
             ORDER BY sent_at_ns, pin",
            [],
            sync_request_from_row,
        )
    }

    /// Marks a request answered at `at_ns` (its first reply imported); true when it was waiting
    /// (a later reply leaves the first time as it is).
    pub fn set_sync_request_answered(&self, pin: &str, at_ns: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE sync_requests SET answered_at_ns = ?2
             WHERE pin = ?1 AND answered_at_ns IS NULL",
            )?
            .execute(params![pin, at_ns])?
            > 0)
    }

    /// Forgets a request (its reply window closed); false when it was not kept. Its import
    /// records stay.
    pub fn delete_sync_request(&self, pin: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM sync_requests WHERE pin = ?1", [pin])?
            > 0)
    }

    // ---- answers sent ---------------------------------------------------------------------

    /// Records that this installation answered another installation's request `pin` at
    /// `sent_at_ns` (a request sent again is not answered twice).
    pub fn record_sync_answer_sent(&self, pin: &str, sent_at_ns: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sync_answers_sent (pin, sent_at_ns) VALUES (?1, ?2)",
            )?
            .execute(params![pin, sent_at_ns])?;
        Ok(())
    }

    /// When this installation answered the request `pin`, if it did.
    pub fn sync_answer_sent(&self, pin: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT sent_at_ns FROM sync_answers_sent WHERE pin = ?1",
                [pin],
                |r| r.get(0),
            )
            .optional()?)
    }

    // ---- imports --------------------------------------------------------------------------

    /// Records an imported reply, replacing the record of the same reply (pin and message).
    pub fn put_sync_import(&self, i: &SyncImport) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sync_imports (pin, message_id, imported_at_ns, record)
             VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![i.pin, i.message_id, i.imported_at_ns, i.record])?;
        Ok(())
    }

    /// The replies imported for the request `pin` (exactly that pin), first imported first.
    pub fn sync_imports(&self, pin: &str) -> Result<Vec<SyncImport>> {
        self.rows(
            "SELECT pin, message_id, imported_at_ns, record FROM sync_imports WHERE pin = ?1
             ORDER BY imported_at_ns, message_id",
            [pin],
            |r| {
                Ok(SyncImport {
                    pin: r.get(0)?,
                    message_id: r.get(1)?,
                    imported_at_ns: r.get(2)?,
                    record: r.get(3)?,
                })
            },
        )
    }

    // ---- flags and the HMAC key -----------------------------------------------------------

    /// Raises (`true`) or clears (`false`) a flag for work to resume.
    pub fn set_device_sync_flag(&self, flag: DeviceSyncFlag, raised: bool) -> Result<()> {
        let sql = if raised {
            "INSERT OR IGNORE INTO device_sync_flags (flag) VALUES (?1)"
        } else {
            "DELETE FROM device_sync_flags WHERE flag = ?1"
        };
        self.conn.execute(sql, [flag.as_i64()])?;
        Ok(())
    }

    /// Whether a flag is raised.
    pub fn device_sync_flag(&self, flag: DeviceSyncFlag) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM device_sync_flags WHERE flag = ?1)")?
            .query_row([flag.as_i64()], |r| r.get(0))?)
    }

    /// The inbox's HMAC key (the SDK's encoding), if this installation holds one.
    pub fn hmac_key(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT key FROM hmac_key WHERE id = 1", [], |r| r.get(0))
            .optional()?)
    }

    /// Replaces the inbox's HMAC key.
    pub fn set_hmac_key(&self, key: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO hmac_key (id, key) VALUES (1, ?1)")?
            .execute([key])?;
        Ok(())
    }
}

fn sync_request_from_row(r: &Row<'_>) -> rusqlite::Result<SyncRequest> {
    Ok(SyncRequest {
        pin: r.get(0)?,
        sent_at_ns: r.get(1)?,
        answered_at_ns: r.get(2)?,
        request: r.get(3)?,
    })
}
