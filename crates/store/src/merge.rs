//! All-or-nothing merges into the store (archive imports).

use std::collections::HashMap;

use rusqlite::{params, Connection};

use crate::consent::set_consent;
use crate::conversations::insert_conversation;
use crate::messages::{expiry, insert_message, intern_content_type, intern_sender};
use crate::{
    schema, ConsentRecord, ContentType, Conversation, DisappearingSettings, Error, Message, Result,
    Store, BULK_MIN_MESSAGES, CACHE_KIB,
};

impl Store {
    // ---- bulk -----------------------------------------------------------------------------

    /// Starts an all-or-nothing merge (an archive import): nothing is visible to other
    /// connections until [`Merge::commit`]; dropping it rolls everything back.
    pub fn merge(&mut self) -> Result<Merge<'_>> {
        self.merge_expecting(0)
    }

    /// [`Store::merge`] for about `incoming` messages. When they far outnumber the messages
    /// already stored (a restore onto a new installation), the merge drops the
    /// conversation-and-time index and rebuilds it at commit, inside the same transaction.
    pub fn merge_expecting(&mut self, incoming: u64) -> Result<Merge<'_>> {
        // BEGIN IMMEDIATE by hand (rolled back by Merge's Drop) so the merge can keep using
        // the connection after COMMIT, to rebuild the index.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let tx = MergeTx {
            conn: &self.conn,
            open: true,
        };
        let mut rebuild_index = false;
        if incoming >= BULK_MIN_MESSAGES {
            let limit = (incoming / 4) as i64 + 1;
            let existing: i64 = tx.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM messages LIMIT ?1)",
                [limit],
                |r| r.get(0),
            )?;
            if existing < limit {
                tx.execute_batch(schema::DROP_MESSAGES_TIME_INDEX)?;
                rebuild_index = true;
            }
        }
        let mut convs = HashMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT id, seq, disappear_from_ns, disappear_in_ns FROM conversations")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let d = DisappearingSettings::from_parts(r.get(2)?, r.get(3)?);
                convs.insert(r.get::<_, Vec<u8>>(0)?, (r.get::<_, i64>(1)?, None, d));
            }
        }
        Ok(Merge {
            tx,
            convs,
            rebuild_index,
            dup_score: 0,
            senders: HashMap::new(),
            ctypes: HashMap::new(),
        })
    }
}

/// What happened to one conversation in a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationOutcome {
    /// New here: inserted (as restored).
    Added,
    /// Already here: kept as it is.
    Existing,
}

/// An all-or-nothing merge into the store. See [`Store::merge`].
pub struct Merge<'a> {
    tx: MergeTx<'a>,
    /// Conversation id -> (seq, newest message merged in this transaction, its disappearing
    /// setting).
    convs: HashMap<Vec<u8>, (i64, Option<i64>, Option<DisappearingSettings>)>,
    /// The time index was dropped for this merge and must be rebuilt before commit.
    rebuild_index: bool,
    /// Recent duplicates minus recent inserts, clamped: above zero, probe before inserting.
    dup_score: i32,
    /// Inbox -> (installation, sender seq), filled as senders are met.
    senders: HashMap<String, Vec<(Vec<u8>, i64)>>,
    ctypes: HashMap<ContentType, i64>,
}

const DUP_SCORE_MAX: i32 = 32;

impl Merge<'_> {
    /// Adds a conversation unless one with its id exists, which keeps its state.
    pub fn conversation(&mut self, c: &Conversation) -> Result<ConversationOutcome> {
        if self.convs.contains_key(&c.id) {
            return Ok(ConversationOutcome::Existing);
        }
        insert_conversation(&self.tx, c)?;
        let seq = self.tx.last_insert_rowid();
        self.convs.insert(c.id.clone(), (seq, None, c.disappearing));
        Ok(ConversationOutcome::Added)
    }

    /// Whether a conversation with this id is known (stored or merged).
    pub fn has_conversation(&self, id: &[u8]) -> bool {
        self.convs.contains_key(id)
    }

    /// Adds a message unless its id is stored; true when added. Its conversation must be known.
    pub fn message(&mut self, m: &Message) -> Result<bool> {
        let Some(&(seq, _, disappearing)) = self.convs.get(&m.conversation_id) else {
            return Err(Error::NoSuchConversation(hex::encode(&m.conversation_id)));
        };
        // While recent messages were mostly duplicates (a re-import), probe for the id first:
        // a one-column lookup is far cheaper than building a whole row that then conflicts.
        if self.dup_score > 0 {
            let exists: bool = self
                .tx
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM messages WHERE id = ?1)")?
                .query_row([&m.id], |r| r.get(0))?;
            if exists {
                self.dup_score = (self.dup_score + 1).min(DUP_SCORE_MAX);
                return Ok(false);
            }
        }
        let sender = self.sender(&m.sender_inbox_id, &m.sender_installation_id)?;
        let ctype = match self.ctypes.get(&m.content_type) {
            Some(&t) => t,
            None => {
                let t = intern_content_type(&self.tx, &m.content_type)?;
                self.ctypes.insert(m.content_type.clone(), t);
                t
            }
        };
        let added = insert_message(&self.tx, seq, sender, ctype, m, expiry(m, disappearing))?;
        if added {
            if let Some((_, newest, _)) = self.convs.get_mut(&m.conversation_id) {
                *newest = Some(newest.map_or(m.sent_at_ns, |n| n.max(m.sent_at_ns)));
            }
            self.dup_score = (self.dup_score - 1).max(-DUP_SCORE_MAX);
        } else {
            self.dup_score = (self.dup_score + 1).min(DUP_SCORE_MAX);
        }
        Ok(added)
    }

    fn sender(&mut self, inbox: &str, installation: &[u8]) -> Result<i64> {
        if let Some(list) = self.senders.get(inbox) {
            if let Some((_, seq)) = list.iter().find(|(i, _)| i == installation) {
                return Ok(*seq);
            }
        }
        let seq = intern_sender(&self.tx, inbox, installation)?;
        self.senders
            .entry(inbox.to_string())
            .or_default()
            .push((installation.to_vec(), seq));
        Ok(seq)
    }

    /// Keeps a remote attachment's encrypted file under its digest; false when one is kept.
    pub fn attachment_file(&mut self, digest: &str, data: &[u8]) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached(crate::attachments::PUT)?
            .execute(params![digest, data])?
            > 0)
    }

    /// Applies a consent record if it is newer than the stored one; true when applied.
    pub fn consent(&mut self, c: &ConsentRecord) -> Result<bool> {
        set_consent(&self.tx, c)
    }

    /// Makes the merge visible: every conversation that received messages takes the newest
    /// message time (never the import time) as its last_message_ns.
    pub fn commit(self) -> Result<()> {
        {
            let mut stmt = self.tx.prepare(
                "UPDATE conversations SET last_message_ns = max(coalesce(last_message_ns, ?2), ?2)
                 WHERE seq = ?1",
            )?;
            for (seq, newest, _) in self.convs.values() {
                if let Some(n) = newest {
                    stmt.execute(params![seq, n])?;
                }
            }
        }
        let mut tx = self.tx;
        tx.conn.execute_batch("COMMIT")?;
        tx.open = false;
        if self.rebuild_index {
            // The index is derived data and the messages are already durable: it is built
            // in a transaction of its own, from clean pages. If this fails or the process
            // dies here, the next `Store::open` builds it.
            // A small cache bounds the sort's memory; the rebuild streams through temp files.
            // The import's reading thread is done, so the sort may use a second core.
            tx.conn.pragma_update(None, "cache_size", -8192)?;
            tx.conn.pragma_update(None, "threads", 2)?;
            let built = tx.conn.execute_batch(schema::MESSAGES_TIME_INDEX);
            tx.conn.pragma_update(None, "threads", 0)?;
            tx.conn.pragma_update(None, "cache_size", CACHE_KIB)?;
            built?;
        }
        Ok(())
    }
}

/// The write transaction of a [`Merge`]: rolled back unless committed.
struct MergeTx<'a> {
    conn: &'a Connection,
    open: bool,
}

impl std::ops::Deref for MergeTx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for MergeTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
