//! Ferry's local store: one SQLite file per installation.
//!
//! It holds conversations, messages, consent and preferences, the messaging client's own state
//! (outboxes, pending commits, device sync's requests and marks) and, with the SDK, the MLS
//! state in openmls' own tables, so a message and the state that produced it commit together.
//! Schema changes are numbered migrations (see `schema.rs`); opening a store runs the ones it
//! lacks.

mod attachments;
mod consent;
mod conversations;
mod device_sync;
mod legacy_settings;
mod merge;
mod messages;
mod model;
mod outbox;
mod schema;
mod settings;
mod snapshot;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, Row, Transaction, TransactionBehavior};

pub use conversations::ConversationFilter;
pub use device_sync::{SyncImport, SyncMessageRecord, SyncRequest};
pub use merge::{ConversationOutcome, Merge};
pub use messages::MessageFilter;
pub use model::*;
pub use outbox::{
    OutboxMessage, OutboxPreferenceUpdate, OutboxWelcome, PendingCommit, SentMessage,
};
pub use rusqlite;
pub use snapshot::{ContentAndParameters, Snapshot, Table};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite failed: the file cannot be opened or written, a constraint was violated, the
    /// database is damaged, or it stayed busy (locked by another connection) longer than the
    /// store waits.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store's schema is newer than this build knows: it was written by a newer Ferry.
    #[error("store at {path} was made by a newer Ferry (schema {found}, this one knows {known})")]
    NewerSchema {
        /// The store's file (empty for a store in memory).
        path: PathBuf,
        /// The store's schema version.
        found: i64,
        /// The newest schema version this build knows.
        known: i64,
    },
    /// A row holds a value this build cannot read (the message names the table or column).
    #[error("store holds an invalid value in {0}")]
    Corrupt(&'static str),
    /// No conversation with this id (hex) in the store.
    #[error("conversation {0} not found")]
    NoSuchConversation(String),
}

impl Error {
    /// Whether the same call may succeed if made again later: only when SQLite found the
    /// database busy or locked by another connection (after the store's own wait). False for
    /// a violated constraint, a damaged or newer store, a missing conversation, a file that
    /// cannot be opened.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Error::NewerSchema { .. } | Error::Corrupt(_) | Error::NoSuchConversation(_) => false,
        }
    }
}

/// The store's result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Imports of at least this many messages may rebuild the time index (see
/// [`Store::merge_expecting`]).
pub const BULK_MIN_MESSAGES: u64 = 50_000;

/// The page cache: 32 MiB (negative means KiB), enough to keep the hot part of large imports.
pub(crate) const CACHE_KIB: i64 = -32768;

/// How long [`Store::open`] keeps trying while another connection holds the file busy.
pub const OPEN_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// One installation's store.
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    ///
    /// Two processes (or threads) opening one store at once take turns. Most waits happen in
    /// SQLite's busy handler; a few steps (switching an old file to WAL while another
    /// connection reads it, say) report the file busy at once instead, so opening is tried
    /// again, with a short pause, for up to [`OPEN_RETRY_FOR`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let started = std::time::Instant::now();
        loop {
            let conn = Connection::open(path)?;
            match Self::setup(conn, Some(path.to_path_buf())) {
                Err(e) if e.is_retryable() && started.elapsed() < OPEN_RETRY_FOR => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
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
        // Statements the messaging path runs per message stay compiled (parsing SQL cost as
        // much as the rest of applying a message).
        conn.set_prepared_statement_cache_capacity(128);
        // Savepoints (one per message applied) journal the pages they change: in memory, not
        // in a temp file written and read back for each one.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let store = Store { conn, path };
        store.migrate()?;
        // A bulk import that died between its commit and its index rebuild left no index.
        store
            .conn
            .execute_batch(&schema::MESSAGES_TIME_INDEX.replace("INDEX", "INDEX IF NOT EXISTS"))?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
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
        for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = (i + 1) as i64;
            // IMMEDIATE, so two processes opening an old store take turns; the one that waited
            // finds the step done. Unchecked, so the Rust step can use the store's own methods
            // (they run on the same connection, inside this transaction).
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if now >= version {
                continue;
            }
            tx.execute_batch(m.sql)?;
            if let Some(step) = m.then {
                step(self)?;
            }
            tx.pragma_update(None, "user_version", version)?;
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

    /// The rows of a query, each made into a `T` by `f`.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, f)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_or_locked_database_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let busy = Error::from(other.execute_batch("BEGIN IMMEDIATE").unwrap_err());
        assert!(busy.is_retryable(), "{busy:?}");
        let code = |c| {
            Error::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(c),
                None,
            ))
        };
        assert!(code(rusqlite::ffi::SQLITE_LOCKED).is_retryable());

        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE); INSERT INTO t VALUES (1);")
            .unwrap();
        let constraint = Error::from(conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err());
        for e in [
            constraint,
            code(rusqlite::ffi::SQLITE_CORRUPT),
            Error::Sqlite(rusqlite::Error::QueryReturnedNoRows),
            Error::NewerSchema {
                path: PathBuf::from("ferry.db"),
                found: 99,
                known: 1,
            },
            Error::Corrupt("consent"),
            Error::NoSuchConversation("00".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }
}
