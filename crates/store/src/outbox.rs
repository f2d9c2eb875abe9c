//! What waits to go out: each group's unpublished messages, the welcomes of confirmed commits,
//! this installation's staged commit per group, and preference updates for the sync group.
//!
//! Every method runs on the store's connection, so inside a transaction it is part of it (a
//! message is queued in the transaction that stores it and steps the ratchet).

use rusqlite::{params, OptionalExtension, Row};

use crate::{Result, Store};

/// A message in a group's send outbox: encrypted and stored, not yet taken by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub group_id: Vec<u8>,
    pub message_id: Vec<u8>,
    /// The MLS message, published as it is (again, if the node may not have it).
    pub data: Vec<u8>,
}

/// An application message of this installation as it was sent: kept until the group's channel
/// shows it, to be encrypted again if the node ordered it after a commit it predates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The id every member derives (the same for a copy sent again).
    pub message_id: Vec<u8>,
    /// The encoded envelope.
    pub plaintext: Vec<u8>,
    /// The MLS epoch it was encrypted in.
    pub epoch: u64,
}

/// The welcome of a confirmed commit, waiting to reach the installations the commit added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxWelcome {
    /// Its place in the outbox, for [`Store::welcome_outbox_remove`].
    pub id: i64,
    pub group_id: Vec<u8>,
    /// The SDK's record: the welcome and its recipients.
    pub welcome: Vec<u8>,
}

/// This installation's staged commit in a group: published (or about to be), not yet
/// confirmed by the group's channel. A group has at most one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCommit {
    /// The commit's message id: MLS cannot open its own commits, so the channel tells ours by
    /// this.
    pub commit_id: Vec<u8>,
    /// The MLS message, published again when its first publication is in doubt.
    pub commit: Vec<u8>,
    /// The SDK's welcome record for the installations the commit adds, sent once it is
    /// confirmed.
    pub welcome: Option<Vec<u8>>,
}

/// Preference updates (consent, the HMAC key) waiting to go out over the sync group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPreferenceUpdate {
    /// Its place in the outbox, for [`Store::preference_outbox_remove`].
    pub id: i64,
    /// The SDK's encoded updates.
    pub updates: Vec<u8>,
}

impl Store {
    // ---- send outbox ----------------------------------------------------------------------

    /// Queues a group's message for the node, after those already queued. False when this
    /// message is queued already (it keeps its place and data).
    pub fn send_outbox_push(
        &self,
        group_id: &[u8],
        message_id: &[u8],
        data: &[u8],
    ) -> Result<bool> {
        Ok(self.conn.prepare_cached(
            "INSERT OR IGNORE INTO send_outbox (group_id, message_id, data) VALUES (?1, ?2, ?3)")?.execute(params![group_id, message_id, data],
        )? > 0)
    }

    /// A group's queued messages in publish order: the order they were queued.
    pub fn send_outbox(&self, group_id: &[u8]) -> Result<Vec<OutboxMessage>> {
        self.rows(
            "SELECT group_id, message_id, data FROM send_outbox WHERE group_id = ?1 ORDER BY seq",
            [group_id],
            |r| {
                Ok(OutboxMessage {
                    group_id: r.get(0)?,
                    message_id: r.get(1)?,
                    data: r.get(2)?,
                })
            },
        )
    }

    /// Takes a message out of its group's send outbox (the node has it); false when it was not
    /// queued.
    pub fn send_outbox_remove(&self, group_id: &[u8], message_id: &[u8]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM send_outbox WHERE group_id = ?1 AND message_id = ?2")?
            .execute(params![group_id, message_id])?
            > 0)
    }

    // ---- sent messages --------------------------------------------------------------------

    /// Records an application message of ours as sent: its MLS message's hash, its id, its
    /// plaintext and the epoch it was encrypted in.
    pub fn sent_message_put(
        &self,
        group_id: &[u8],
        payload_hash: &[u8],
        sent: &SentMessage,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sent_messages \
             (group_id, payload_hash, message_id, plaintext, epoch) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                group_id,
                payload_hash,
                sent.message_id,
                sent.plaintext,
                sent.epoch as i64
            ])?;
        Ok(())
    }

    /// Takes the record of the message of ours whose MLS message hashes to `payload_hash` (the
    /// channel has just shown it); `None` when it is not one of ours (or was seen before).
    pub fn sent_message_take(
        &self,
        group_id: &[u8],
        payload_hash: &[u8],
    ) -> Result<Option<SentMessage>> {
        let found = self
            .conn
            .query_row(
                "SELECT message_id, plaintext, epoch FROM sent_messages \
                 WHERE group_id = ?1 AND payload_hash = ?2",
                params![group_id, payload_hash],
                |r| {
                    Ok(SentMessage {
                        message_id: r.get(0)?,
                        plaintext: r.get(1)?,
                        epoch: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()?;
        if found.is_some() {
            self.conn
                .prepare_cached(
                    "DELETE FROM sent_messages WHERE group_id = ?1 AND payload_hash = ?2",
                )?
                .execute(params![group_id, payload_hash])?;
        }
        Ok(found)
    }

    // ---- welcome outbox -------------------------------------------------------------------

    /// Queues the welcome (the SDK's record) of a confirmed commit in `group_id`; returns its
    /// id. Welcomes queued before it stay queued.
    pub fn welcome_outbox_push(&self, group_id: &[u8], welcome: &[u8]) -> Result<i64> {
        self.conn
            .prepare_cached("INSERT INTO welcome_outbox (group_id, welcome) VALUES (?1, ?2)")?
            .execute(params![group_id, welcome])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A group's welcomes waiting to be sent, oldest first.
    pub fn welcome_outbox(&self, group_id: &[u8]) -> Result<Vec<OutboxWelcome>> {
        self.rows(
            "SELECT seq, group_id, welcome FROM welcome_outbox WHERE group_id = ?1 ORDER BY seq",
            [group_id],
            |r| {
                Ok(OutboxWelcome {
                    id: r.get(0)?,
                    group_id: r.get(1)?,
                    welcome: r.get(2)?,
                })
            },
        )
    }

    /// Takes a sent welcome out of the outbox; false when it was not there. Ids are never
    /// reused, so a stale id removes nothing else.
    pub fn welcome_outbox_remove(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM welcome_outbox WHERE seq = ?1", [id])?
            > 0)
    }

    // ---- pending commits ------------------------------------------------------------------

    /// Records this installation's staged commit in a group, replacing any earlier one (a
    /// group has one pending commit at most).
    pub fn set_pending_commit(&self, group_id: &[u8], c: &PendingCommit) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO pending_commits (group_id, commit_id, commit_data, welcome)
             VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![group_id, c.commit_id, c.commit, c.welcome])?;
        Ok(())
    }

    /// This installation's staged commit in a group, if there is one.
    pub fn pending_commit(&self, group_id: &[u8]) -> Result<Option<PendingCommit>> {
        Ok(self
            .conn
            .query_row(
                "SELECT commit_id, commit_data, welcome FROM pending_commits WHERE group_id = ?1",
                [group_id],
                pending_commit_from_row,
            )
            .optional()?)
    }

    /// Forgets a group's staged commit (confirmed, replaced by a rival, or refused) and returns
    /// it: a confirmed one's welcome goes to [`Store::welcome_outbox_push`].
    pub fn take_pending_commit(&self, group_id: &[u8]) -> Result<Option<PendingCommit>> {
        Ok(self
            .conn
            .query_row(
                "DELETE FROM pending_commits WHERE group_id = ?1
                 RETURNING commit_id, commit_data, welcome",
                [group_id],
                pending_commit_from_row,
            )
            .optional()?)
    }

    // ---- preference outbox ----------------------------------------------------------------

    /// Queues preference updates (the SDK's encoding) for the sync group; returns their id.
    pub fn preference_outbox_push(&self, updates: &[u8]) -> Result<i64> {
        self.conn
            .prepare_cached("INSERT INTO preference_outbox (updates) VALUES (?1)")?
            .execute([updates])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The queued preference updates, oldest first (the order to send them in).
    pub fn preference_outbox(&self) -> Result<Vec<OutboxPreferenceUpdate>> {
        self.rows(
            "SELECT seq, updates FROM preference_outbox ORDER BY seq",
            [],
            |r| {
                Ok(OutboxPreferenceUpdate {
                    id: r.get(0)?,
                    updates: r.get(1)?,
                })
            },
        )
    }

    /// Takes sent (or undecodable) updates out of the outbox; false when they were not there.
    /// Ids are never reused.
    pub fn preference_outbox_remove(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM preference_outbox WHERE seq = ?1", [id])?
            > 0)
    }
}

fn pending_commit_from_row(r: &Row<'_>) -> rusqlite::Result<PendingCommit> {
    Ok(PendingCommit {
        commit_id: r.get(0)?,
        commit: r.get(1)?,
        welcome: r.get(2)?,
    })
}
