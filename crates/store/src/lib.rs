//! Ferry's local store: one SQLite file per installation.
//!
//! It holds conversations, messages, consent and preferences (and, with the SDK, the MLS state
//! in openmls' own tables), so a message and the state that produced it commit together.
//! Schema changes are numbered migrations (see `schema.rs`); opening a store runs the ones it
//! lacks.

mod model;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

pub use model::*;
pub use rusqlite;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store at {path} was made by a newer Ferry (schema {found}, this one knows {known})")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store holds an invalid value in {0}")]
    Corrupt(&'static str),
    #[error("conversation {0} not found")]
    NoSuchConversation(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Imports of at least this many messages may rebuild the time index (see
/// [`Store::merge_expecting`]).
pub const BULK_MIN_MESSAGES: u64 = 50_000;

/// The page cache: 32 MiB (negative means KiB), enough to keep the hot part of large imports.
const CACHE_KIB: i64 = -32768;

/// One installation's store.
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
}

/// Which conversations to list.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub kind: Option<ConversationKind>,
    /// Include the hidden sync conversation (never listed by default).
    pub include_sync: bool,
    pub active: Option<bool>,
    pub consent: Option<ConsentState>,
}

/// What the store knows of one handled sync-group message (see
/// [`Store::sync_message_record`]); state 1 pending, 2 processed, 3 failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessageRecord {
    pub state: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at_ns: i64,
}

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub conversation_id: Option<Vec<u8>>,
    pub sent_after_ns: Option<i64>,
    pub sent_before_ns: Option<i64>,
    pub limit: Option<u64>,
    /// Include the hidden sync conversations' messages (the SDK's own use; never shown).
    pub include_sync: bool,
}

const CONVERSATION_COLS: &str = "seq, id, kind, created_at_ns, name, description, image_url, \
     creator_inbox_id, dm_peer_inbox_id, dm_id, membership, last_message_ns";
const MESSAGE_COLS: &str = "m.id, c.id, s.inbox_id, s.installation_id, m.sent_at_ns, m.kind, \
     t.authority, t.type_id, t.major, t.minor, m.content, m.fallback, m.parameters, \
     m.reference_id, m.delivery_status";
/// Consent rows that are not about a hidden sync conversation (stores written before sync
/// conversations stopped getting consent rows may hold some).
const NOT_SYNC_CONSENT: &str = "NOT (entity_type = 1 AND entity IN \
     (SELECT lower(hex(id)) FROM conversations WHERE kind = 3))";
const MESSAGE_FROM: &str = "messages m JOIN conversations c ON c.seq = m.conversation \
     JOIN senders s ON s.seq = m.sender JOIN content_types t ON t.seq = m.content_type";

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let conn = Connection::open(path)?;
        Self::setup(conn, Some(path.to_path_buf()))
    }

    /// A store in memory, for tests.
    pub fn open_in_memory() -> Result<Store> {
        Self::setup(Connection::open_in_memory()?, None)
    }

    fn setup(conn: Connection, path: Option<PathBuf>) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Takes effect when the file is new; larger pages mean fewer splits on bulk imports.
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        // 32 MiB of page cache: large imports keep the message-id index hot.
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        let mut store = Store { conn, path };
        store.migrate()?;
        // A bulk import that died between its commit and its index rebuild left no index.
        store
            .conn
            .execute_batch(&schema::MESSAGES_TIME_INDEX.replace("INDEX", "INDEX IF NOT EXISTS"))?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = schema::MIGRATIONS.len() as i64;
        let found: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(Error::NewerSchema {
                path: self.path.clone().unwrap_or_default(),
                found,
                known,
            });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            // IMMEDIATE, so two processes opening a new store take turns.
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The underlying connection (the SDK keeps MLS state in the same file).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    // ---- settings -------------------------------------------------------------------------

    pub fn setting(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    // ---- cursors --------------------------------------------------------------------------

    /// A named position (0 when never set): how far a node topic has been processed, or when a
    /// chore last ran.
    pub fn cursor(&self, topic: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM cursors WHERE topic = ?1", [topic], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0))
    }

    pub fn set_cursor(&self, topic: &str, value: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO cursors(topic, value) VALUES (?1, ?2)
             ON CONFLICT(topic) DO UPDATE SET value = excluded.value",
            params![topic, value],
        )?;
        Ok(())
    }

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
        self.conn.execute(
            "INSERT INTO sync_messages(id, state, attempts, last_error, updated_at_ns)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
                 last_error = excluded.last_error, updated_at_ns = excluded.updated_at_ns",
            params![id, state, attempts, last_error, now_ns],
        )?;
        Ok(())
    }

    /// Updates a conversation's name, description and image url.
    pub fn set_conversation_metadata(
        &self,
        id: &[u8],
        name: &str,
        description: &str,
        image_url: &str,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET name = ?2, description = ?3, image_url = ?4 WHERE id = ?1",
            params![id, name, description, image_url],
        )?;
        Ok(())
    }

    /// The settings whose keys start with `prefix`, in key order.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_setting(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM settings WHERE key = ?1", [key])?;
        Ok(())
    }

    // ---- conversations --------------------------------------------------------------------

    /// Inserts a conversation; false when one with this id exists (it is left as it is).
    pub fn insert_conversation(&self, c: &Conversation) -> Result<bool> {
        insert_conversation(&self.conn, c)
    }

    pub fn conversation(&self, id: &[u8]) -> Result<Option<Conversation>> {
        self.conn
            .query_row(
                &format!("SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1"),
                [id],
                conversation_from_row,
            )
            .optional()?
            .transpose()
    }

    pub fn set_membership(&self, id: &[u8], m: Membership) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE conversations SET membership = ?2 WHERE id = ?1",
            params![id, m.as_i64()],
        )?;
        if n == 0 {
            return Err(Error::NoSuchConversation(hex::encode(id)));
        }
        Ok(())
    }

    /// Conversations, newest activity first.
    pub fn conversations(&self, f: &ConversationFilter) -> Result<Vec<Conversation>> {
        let mut sql = format!(
            "SELECT {} FROM conversations c WHERE 1=1",
            CONVERSATION_COLS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut args: Vec<i64> = Vec::new();
        if let Some(k) = f.kind {
            sql.push_str(" AND c.kind = ?");
            args.push(k.as_i64());
        } else if !f.include_sync {
            sql.push_str(" AND c.kind != ?");
            args.push(ConversationKind::Sync.as_i64());
        }
        if let Some(a) = f.active {
            sql.push_str(if a {
                " AND c.membership = ?"
            } else {
                " AND c.membership != ?"
            });
            args.push(Membership::Active.as_i64());
        }
        if let Some(state) = f.consent {
            sql.push_str(
                " AND coalesce((SELECT state FROM consent WHERE entity_type = 1 \
                 AND entity = lower(hex(c.id))), 1) = ?",
            );
            args.push(state.as_i64());
        }
        sql.push_str(" ORDER BY coalesce(c.last_message_ns, c.created_at_ns) DESC, c.seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), conversation_from_row)?;
        rows.map(|r| r?).collect()
    }

    // ---- messages -------------------------------------------------------------------------

    /// Sets a stored message's delivery status; false when there is no such message.
    pub fn set_delivery_status(&self, id: &[u8], status: DeliveryStatus) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE messages SET delivery_status = ?2 WHERE id = ?1",
            params![id, status.as_i64()],
        )? > 0)
    }

    /// Inserts a message into an existing conversation; false when its id is already stored.
    pub fn insert_message(&self, m: &Message) -> Result<bool> {
        let conv = self
            .conversation_seq(&m.conversation_id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&m.conversation_id)))?;
        let sender = intern_sender(&self.conn, &m.sender_inbox_id, &m.sender_installation_id)?;
        let ctype = intern_content_type(&self.conn, &m.content_type)?;
        let added = insert_message(&self.conn, conv, sender, ctype, m)?;
        if added {
            self.conn.execute(
                "UPDATE conversations SET last_message_ns = max(coalesce(last_message_ns, ?2), ?2)
                 WHERE seq = ?1",
                params![conv, m.sent_at_ns],
            )?;
        }
        Ok(added)
    }

    fn conversation_seq(&self, id: &[u8]) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT seq FROM conversations WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Messages in sending order (sent_at_ns, then arrival).
    pub fn messages(&self, f: &MessageFilter) -> Result<Vec<Message>> {
        let mut sql = format!("SELECT {MESSAGE_COLS} FROM {MESSAGE_FROM} WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(id) = &f.conversation_id {
            sql.push_str(" AND c.id = ?");
            args.push(id.clone().into());
        }
        if !f.include_sync {
            sql.push_str(" AND c.kind != 3");
        }
        if let Some(t) = f.sent_after_ns {
            sql.push_str(" AND m.sent_at_ns > ?");
            args.push(t.into());
        }
        if let Some(t) = f.sent_before_ns {
            sql.push_str(" AND m.sent_at_ns < ?");
            args.push(t.into());
        }
        sql.push_str(" ORDER BY m.sent_at_ns, m.id");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), message_from_row)?;
        rows.map(|r| r?).collect()
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

    pub fn message(&self, id: &[u8]) -> Result<Option<Message>> {
        self.conn
            .query_row(
                &format!("SELECT {MESSAGE_COLS} FROM {MESSAGE_FROM} WHERE m.id = ?1"),
                [id],
                message_from_row,
            )
            .optional()?
            .transpose()
    }

    pub fn count(&self, table: Table) -> Result<u64> {
        Ok(self
            .conn
            .query_row(&format!("SELECT count(*) FROM {}", table.name()), [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    // ---- consent --------------------------------------------------------------------------

    /// Records consent if it is newer than what is stored; true when it was applied.
    pub fn set_consent(&self, c: &ConsentRecord) -> Result<bool> {
        set_consent(&self.conn, c)
    }

    pub fn consent(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
    ) -> Result<Option<ConsentRecord>> {
        self.conn
            .query_row(
                "SELECT entity_type, entity, state, updated_at_ns FROM consent
                 WHERE entity_type = ?1 AND entity = ?2",
                params![entity_type.as_i64(), entity],
                consent_from_row,
            )
            .optional()?
            .transpose()
    }

    /// Every consent record a person made (never one about a hidden sync conversation).
    pub fn consent_list(&self) -> Result<Vec<ConsentRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT entity_type, entity, state, updated_at_ns FROM consent
             WHERE {NOT_SYNC_CONSENT} ORDER BY entity_type, entity"
        ))?;
        let rows = stmt.query_map([], consent_from_row)?;
        rows.map(|r| r?).collect()
    }

    // ---- preferences ----------------------------------------------------------------------

    pub fn preference(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value, updated_at_ns FROM preferences WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Stores a preference if newer than the stored one; true when applied.
    pub fn set_preference(&self, key: &str, value: &[u8], updated_at_ns: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT INTO preferences(key, value, updated_at_ns) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at_ns = excluded.updated_at_ns
             WHERE excluded.updated_at_ns > preferences.updated_at_ns",
            params![key, value, updated_at_ns],
        )? > 0)
    }

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
            let mut stmt = tx.prepare("SELECT id, seq FROM conversations")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                convs.insert(r.get::<_, Vec<u8>>(0)?, (r.get::<_, i64>(1)?, None));
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

    /// A consistent read-only view of the store for an export or an import preview.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        let tx = self.conn.unchecked_transaction()?;
        // Reading one row pins the snapshot now, not at the first query of the export.
        tx.query_row("SELECT count(*) FROM settings", [], |_| Ok(()))?;
        Ok(Snapshot { tx })
    }

    /// Every row of the app's tables in a stable order, as text: two stores with the same dump
    /// hold the same data (tests compare dumps before and after failed imports).
    pub fn dump(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (table, order) in [
            ("conversations", "seq"),
            ("messages", "id"),
            ("senders", "seq"),
            ("content_types", "seq"),
            ("consent", "entity_type, entity"),
            ("preferences", "key"),
            ("settings", "key"),
        ] {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))?;
            let n = stmt.column_count();
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let mut line = format!("{table}:");
                for i in 0..n {
                    line.push_str(&format!(" {:?}", r.get_ref(i)?));
                }
                out.push(line);
            }
        }
        Ok(out)
    }
}

/// The app tables, for counting.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Conversations,
    Messages,
    Consent,
    Preferences,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Conversations => "conversations",
            Table::Messages => "messages",
            Table::Consent => "consent",
            Table::Preferences => "preferences",
        }
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
    /// Conversation id -> (seq, newest message merged in this transaction).
    convs: HashMap<Vec<u8>, (i64, Option<i64>)>,
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
        self.convs.insert(c.id.clone(), (seq, None));
        Ok(ConversationOutcome::Added)
    }

    /// Whether a conversation with this id is known (stored or merged).
    pub fn has_conversation(&self, id: &[u8]) -> bool {
        self.convs.contains_key(id)
    }

    /// Adds a message unless its id is stored; true when added. Its conversation must be known.
    pub fn message(&mut self, m: &Message) -> Result<bool> {
        let Some(&(seq, _)) = self.convs.get(&m.conversation_id) else {
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
        let added = insert_message(&self.tx, seq, sender, ctype, m)?;
        if added {
            if let Some((_, newest)) = self.convs.get_mut(&m.conversation_id) {
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
            for (seq, newest) in self.convs.values() {
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

/// A read transaction for exports. See [`Store::snapshot`].
pub struct Snapshot<'a> {
    tx: Transaction<'a>,
}

impl Snapshot<'_> {
    /// Conversations (never the sync conversation) with a message in `[start, end)` or created
    /// in it.
    pub fn conversations(&self, start: Option<i64>, end: Option<i64>) -> Result<Vec<Conversation>> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let mut stmt = self.tx.prepare(&format!(
            "SELECT {CONVERSATION_COLS} FROM conversations c WHERE c.kind != 3 AND (
                 (c.created_at_ns >= ?1 AND c.created_at_ns < ?2)
                 OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation = c.seq
                            AND m.sent_at_ns >= ?1 AND m.sent_at_ns < ?2))
             ORDER BY c.seq"
        ))?;
        let rows = stmt.query_map(params![s, e], conversation_from_row)?;
        rows.map(|r| r?).collect()
    }

    /// How many messages of these conversations fall in `[start, end)`.
    pub fn count_messages(
        &self,
        conversations: &[Conversation],
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<u64> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let mut stmt = self.tx.prepare(
            "SELECT count(*) FROM messages m JOIN conversations c ON c.seq = m.conversation
             WHERE c.id = ?1 AND m.sent_at_ns >= ?2 AND m.sent_at_ns < ?3",
        )?;
        let mut total = 0u64;
        for c in conversations {
            total += stmt.query_row(params![c.id, s, e], |r| r.get::<_, i64>(0))? as u64;
        }
        Ok(total)
    }

    /// Calls `f` for every message of these conversations in `[start, end)`, in id order (the
    /// table's own order, so this is a sequential scan).
    pub fn for_each_message<E: From<Error>>(
        &self,
        conversations: &[Conversation],
        start: Option<i64>,
        end: Option<i64>,
        mut f: impl FnMut(Message) -> Result<(), E>,
    ) -> Result<(), E> {
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        let mut ids: HashMap<i64, &[u8]> = HashMap::new();
        {
            let mut stmt = self
                .tx
                .prepare("SELECT seq, id FROM conversations")
                .map_err(Error::from)?;
            let mut rows = stmt.query([]).map_err(Error::from)?;
            let wanted: std::collections::HashSet<&[u8]> =
                conversations.iter().map(|c| c.id.as_slice()).collect();
            while let Some(r) = rows.next().map_err(Error::from)? {
                let id: Vec<u8> = r.get(1).map_err(Error::from)?;
                if let Some(w) = wanted.get(id.as_slice()) {
                    ids.insert(r.get(0).map_err(Error::from)?, w);
                }
            }
        }
        let senders: HashMap<i64, (String, Vec<u8>)> = self
            .lookup("SELECT seq, inbox_id, installation_id FROM senders", |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .map_err(Error::from)?;
        let ctypes: HashMap<i64, ContentType> = self
            .lookup(
                "SELECT seq, authority, type_id, major, minor FROM content_types",
                |r| {
                    Ok(ContentType {
                        authority: r.get(1)?,
                        type_id: r.get(2)?,
                        major: r.get(3)?,
                        minor: r.get(4)?,
                    })
                },
            )
            .map_err(Error::from)?;
        let mut stmt = self
            .tx
            .prepare(
                "SELECT conversation, id, sender, sent_at_ns, kind, content_type, content,
                        fallback, parameters, reference_id, delivery_status
                 FROM messages WHERE sent_at_ns >= ?1 AND sent_at_ns < ?2 ORDER BY id",
            )
            .map_err(Error::from)?;
        let mut rows = stmt.query(params![s, e]).map_err(Error::from)?;
        while let Some(r) = rows.next().map_err(Error::from)? {
            let Some(conv) = ids.get(&r.get::<_, i64>(0).map_err(Error::from)?) else {
                continue;
            };
            let m = (|| -> Result<Message> {
                let (inbox, installation) = senders
                    .get(&r.get::<_, i64>(2)?)
                    .ok_or(Error::Corrupt("messages.sender"))?;
                let content_type = ctypes
                    .get(&r.get::<_, i64>(5)?)
                    .ok_or(Error::Corrupt("messages.content_type"))?;
                Ok(Message {
                    id: r.get(1)?,
                    conversation_id: conv.to_vec(),
                    sender_inbox_id: inbox.clone(),
                    sender_installation_id: installation.clone(),
                    sent_at_ns: r.get(3)?,
                    kind: MessageKind::from_i64(r.get(4)?).unwrap_or(MessageKind::Application),
                    content_type: content_type.clone(),
                    content: r.get(6)?,
                    fallback: r.get(7)?,
                    parameters: r.get(8)?,
                    reference_id: r.get(9)?,
                    delivery_status: DeliveryStatus::from_i64(r.get(10)?)
                        .unwrap_or(DeliveryStatus::Published),
                })
            })()?;
            f(m)?;
        }
        Ok(())
    }

    /// A table of small rows keyed by their `seq` (column 0).
    fn lookup<T>(
        &self,
        sql: &str,
        f: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<HashMap<i64, T>> {
        let mut stmt = self.tx.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            out.insert(r.get(0)?, f(r)?);
        }
        Ok(out)
    }

    /// The conversation with this id (the sync conversation included), if stored.
    pub fn conversation(&self, id: &[u8]) -> Result<Option<Conversation>> {
        self.tx
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1"
            ))?
            .query_row([id], conversation_from_row)
            .optional()?
            .transpose()
    }

    /// Whether a message with this id is stored (in any conversation).
    pub fn has_message(&self, id: &[u8]) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM messages WHERE id = ?1)")?
            .query_row([id], |r| r.get(0))?)
    }

    /// The stored consent record of one entity, if any.
    pub fn consent_record(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
    ) -> Result<Option<ConsentRecord>> {
        self.tx
            .prepare_cached(
                "SELECT entity_type, entity, state, updated_at_ns FROM consent
                 WHERE entity_type = ?1 AND entity = ?2",
            )?
            .query_row(params![entity_type.as_i64(), entity], consent_from_row)
            .optional()?
            .transpose()
    }

    pub fn consent(&self) -> Result<Vec<ConsentRecord>> {
        let mut stmt = self.tx.prepare(&format!(
            "SELECT entity_type, entity, state, updated_at_ns FROM consent
             WHERE {NOT_SYNC_CONSENT} ORDER BY entity_type, entity"
        ))?;
        let rows = stmt.query_map([], consent_from_row)?;
        rows.map(|r| r?).collect()
    }
}

fn insert_conversation(conn: &Connection, c: &Conversation) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT OR IGNORE INTO conversations (id, kind, created_at_ns, name, description,
                 image_url, creator_inbox_id, dm_peer_inbox_id, dm_id, membership, last_message_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            c.id,
            c.kind.as_i64(),
            c.created_at_ns,
            c.name,
            c.description,
            c.image_url,
            c.creator_inbox_id,
            c.dm_peer_inbox_id,
            c.dm_id,
            c.membership.as_i64(),
            c.last_message_ns
        ])?
        > 0)
}

fn insert_message(
    conn: &Connection,
    conv: i64,
    sender: i64,
    content_type: i64,
    m: &Message,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (id, conversation, sender, sent_at_ns, kind,
                 content_type, content, fallback, parameters, reference_id, delivery_status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            m.id,
            conv,
            sender,
            m.sent_at_ns,
            m.kind.as_i64(),
            content_type,
            m.content,
            m.fallback,
            m.parameters,
            m.reference_id,
            m.delivery_status.as_i64()
        ])?
        > 0)
}

/// The number of a sender (inbox and installation), adding it when new.
fn intern_sender(conn: &Connection, inbox: &str, installation: &[u8]) -> Result<i64> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO senders (inbox_id, installation_id) VALUES (?1, ?2)",
    )?
    .execute(params![inbox, installation])?;
    Ok(conn
        .prepare_cached("SELECT seq FROM senders WHERE inbox_id = ?1 AND installation_id = ?2")?
        .query_row(params![inbox, installation], |r| r.get(0))?)
}

/// The number of a content type, adding it when new.
fn intern_content_type(conn: &Connection, t: &ContentType) -> Result<i64> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO content_types (authority, type_id, major, minor)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![t.authority, t.type_id, t.major, t.minor])?;
    Ok(conn
        .prepare_cached(
            "SELECT seq FROM content_types
             WHERE authority = ?1 AND type_id = ?2 AND major = ?3 AND minor = ?4",
        )?
        .query_row(params![t.authority, t.type_id, t.major, t.minor], |r| {
            r.get(0)
        })?)
}

fn set_consent(conn: &Connection, c: &ConsentRecord) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO consent (entity_type, entity, state, updated_at_ns) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(entity_type, entity) DO UPDATE
                 SET state = excluded.state, updated_at_ns = excluded.updated_at_ns
                 WHERE excluded.updated_at_ns > consent.updated_at_ns",
        )?
        .execute(params![
            c.entity_type.as_i64(),
            c.entity,
            c.state.as_i64(),
            c.updated_at_ns
        ])?
        > 0)
}

fn conversation_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Conversation>> {
    let kind = r.get::<_, i64>(2)?;
    let membership = r.get::<_, i64>(10)?;
    let (Some(kind), Some(membership)) = (
        ConversationKind::from_i64(kind),
        Membership::from_i64(membership),
    ) else {
        return Ok(Err(Error::Corrupt("conversations")));
    };
    Ok(Ok(Conversation {
        id: r.get(1)?,
        kind,
        created_at_ns: r.get(3)?,
        name: r.get(4)?,
        description: r.get(5)?,
        image_url: r.get(6)?,
        creator_inbox_id: r.get(7)?,
        dm_peer_inbox_id: r.get(8)?,
        dm_id: r.get(9)?,
        membership,
        last_message_ns: r.get(11)?,
    }))
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Message>> {
    let conv: Vec<u8> = r.get(1)?;
    Ok(Ok(message_fields(r, 0, conv)?))
}

/// Reads a message whose id is in column `id_col` and whose other fields are in columns 2..=14
/// (the layout of MESSAGE_COLS).
fn message_fields(
    r: &Row<'_>,
    id_col: usize,
    conversation_id: Vec<u8>,
) -> rusqlite::Result<Message> {
    let kind = MessageKind::from_i64(r.get(5)?).unwrap_or(MessageKind::Application);
    let delivery = DeliveryStatus::from_i64(r.get(14)?).unwrap_or(DeliveryStatus::Published);
    Ok(Message {
        id: r.get(id_col)?,
        conversation_id,
        sender_inbox_id: r.get(2)?,
        sender_installation_id: r.get(3)?,
        sent_at_ns: r.get(4)?,
        kind,
        content_type: ContentType {
            authority: r.get(6)?,
            type_id: r.get(7)?,
            major: r.get(8)?,
            minor: r.get(9)?,
        },
        content: r.get(10)?,
        fallback: r.get(11)?,
        parameters: r.get(12)?,
        reference_id: r.get(13)?,
        delivery_status: delivery,
    })
}

fn consent_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ConsentRecord>> {
    let (Some(entity_type), Some(state)) = (
        ConsentEntity::from_i64(r.get(0)?),
        ConsentState::from_i64(r.get(2)?),
    ) else {
        return Ok(Err(Error::Corrupt("consent")));
    };
    Ok(Ok(ConsentRecord {
        entity_type,
        entity: r.get(1)?,
        state,
        updated_at_ns: r.get(3)?,
    }))
}
