//! What the node keeps: identity logs, key packages, group messages and welcomes.
//!
//! [`NodeStorage`] is synchronous; the server calls it from blocking tasks. Two backends:
//! [`SqliteStorage`] (one file, the embedded default) and [`PostgresStorage`] (one database
//! that several node processes, replicas, share). [`Database`] names one of them and
//! [`Database::open`] opens it. Errors are the same type whichever backend made them.

mod postgres;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::{GroupMessage, GroupMessageInput, Welcome, WelcomeInput};

pub use postgres::{PostgresStorage, MIGRATIONS as POSTGRES_MIGRATIONS};
pub use sqlite::{SqliteStorage, SCHEMA_VERSION};

/// How many remembered requests between two sweeps of the expired ones.
const NONCE_SWEEP_EVERY: u64 = 1024;

/// Where a node keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// In memory (SQLite), lost when the node stops: tests and throwaway nodes.
    Memory,
    /// One SQLite file (the embedded default). One node process per file.
    Sqlite(PathBuf),
    /// A PostgreSQL database that any number of node processes (replicas) may share.
    Postgres {
        /// `postgres://user[:password]@host[:port]/database[?options]`.
        url: String,
        /// Connections this process keeps open at most.
        pool_size: u32,
    },
}

/// Default [`Database::Postgres`] pool size (per node process).
pub const DEFAULT_POOL_SIZE: u32 = 16;

impl Database {
    /// `postgres://…` or `postgresql://…` is PostgreSQL (with the default pool size); anything
    /// else is a SQLite file path.
    pub fn parse(s: &str) -> Database {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Database::Postgres {
                url: s.to_string(),
                pool_size: DEFAULT_POOL_SIZE,
            }
        } else {
            Database::Sqlite(PathBuf::from(s))
        }
    }

    /// Opens (creating or migrating the schema if needed) the storage.
    pub fn open(&self) -> Result<Arc<dyn NodeStorage>, StorageError> {
        Ok(match self {
            Database::Memory => Arc::new(SqliteStorage::in_memory()?),
            Database::Sqlite(path) => Arc::new(SqliteStorage::open(path)?),
            Database::Postgres { url, pool_size } => {
                Arc::new(PostgresStorage::open(url, *pool_size)?)
            }
        })
    }

    /// Where the data is, for messages (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Database::Memory => "memory (lost when the node stops)".to_string(),
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres { url, .. } => postgres::redact(url),
        }
    }
}

/// A failure inside the database engine, whichever engine it is.
#[derive(Debug, thiserror::Error)]
#[error("{engine}: {source}")]
pub struct DbError {
    engine: &'static str,
    retryable: bool,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl DbError {
    pub(crate) fn new(
        engine: &'static str,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DbError {
        DbError {
            engine,
            retryable,
            source: source.into(),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// Whether the engine said to try again: SQLite's busy or locked database, PostgreSQL's
    /// serialization failure, deadlock, or a connection that could not be had or was lost.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database could not be opened, reached or initialised.
    #[error("cannot open node database {location}: {source}")]
    Open {
        /// The database file (`:memory:` for one in memory) or URL (without password).
        location: String,
        /// The engine's error.
        #[source]
        source: DbError,
    },
    /// The database was written by a newer version of the node.
    #[error("node database {location} has schema version {found}; this node knows up to {known}")]
    UnsupportedVersion {
        /// The database file or URL (without password).
        location: String,
        /// The database's schema version.
        found: i64,
        /// The newest version this node knows.
        known: i64,
    },
    /// Another update already holds this position of the inbox's log.
    #[error("sequence {sequence} of inbox {inbox_id} is already taken")]
    SequenceTaken {
        /// The inbox.
        inbox_id: String,
        /// The position that is taken.
        sequence: u64,
    },
    /// The installation was already added to an inbox (possibly another one).
    #[error("installation {installation} already belongs to inbox {inbox_id}")]
    InstallationTaken {
        /// The installation (hex).
        installation: String,
        /// The inbox it belongs to.
        inbox_id: String,
    },
    /// Stored data does not decode.
    #[error("corrupt node database: {0}")]
    Corrupt(String),
    /// A query or write failed in the database engine.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl StorageError {
    /// Whether the same operation may succeed if made again later: the engine found the
    /// database busy or locked, or lost its connection (see [`DbError::is_retryable`]), or a
    /// concurrent identity update took the position first (a lost race: read the log again
    /// and append after its new head). False for a newer or corrupt database, an installation
    /// that belongs to an inbox already, and other engine failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Open { source: e, .. } | StorageError::Database(e) => e.is_retryable(),
            StorageError::SequenceTaken { .. } => true,
            StorageError::UnsupportedVersion { .. }
            | StorageError::InstallationTaken { .. }
            | StorageError::Corrupt(_) => false,
        }
    }
}

/// How an identity update changes the installation index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallationChange {
    /// The update adds this installation to its inbox.
    Add(Vec<u8>),
    /// The update revokes this installation.
    Revoke(Vec<u8>),
}

/// An installation as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationRecord {
    pub inbox_id: String,
    pub revoked: bool,
}

/// Sequence ids and cursors are u64 on the wire and i64 in the databases.
fn to_sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

pub trait NodeStorage: Send + Sync + 'static {
    /// The inbox's log in sequence order; empty when the inbox does not exist.
    fn identity_log(&self, inbox_id: &str) -> Result<Vec<IdentityUpdate>, StorageError>;

    /// Appends an already verified update at `sequence` and applies `change` to the
    /// installation index, atomically. Fails with [`StorageError::SequenceTaken`] when the
    /// position is taken and [`StorageError::InstallationTaken`] when an added installation
    /// is already indexed.
    fn append_identity_update(
        &self,
        inbox_id: &str,
        sequence: u64,
        update: &IdentityUpdate,
        change: Option<&InstallationChange>,
    ) -> Result<(), StorageError>;

    /// The index entry of an installation, if it was ever added.
    fn installation(
        &self,
        installation_id: &[u8],
    ) -> Result<Option<InstallationRecord>, StorageError>;

    /// Stores the installation's regular or last-resort key package, replacing the previous.
    fn put_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<(), StorageError>;

    /// Hands out the regular key package (deleting it) or else the last-resort one.
    fn take_key_package(&self, installation_id: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores a batch of group messages in one transaction, all or nothing, assigning
    /// increasing sequence ids (rival commits of one epoch are all kept, in order).
    fn insert_group_messages(
        &self,
        messages: &[GroupMessageInput],
        created_at_ns: i64,
    ) -> Result<Vec<GroupMessage>, StorageError>;

    /// Up to `limit` messages of the group with a sequence id above `after`, ascending.
    fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Vec<GroupMessage>, StorageError>;

    /// Stores a batch of welcomes in one transaction, assigning increasing sequence ids.
    fn insert_welcomes(
        &self,
        welcomes: &[WelcomeInput],
        created_at_ns: i64,
    ) -> Result<Vec<Welcome>, StorageError>;

    /// Up to `limit` welcomes of the installation with a sequence id above `after`, ascending.
    fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Vec<Welcome>, StorageError>;

    /// Remembers that the installation signed a request with `nonce` (at `now_ns`): false
    /// when it was remembered already, i.e. the request is a replay. Entries seen before
    /// `forget_before_ns` may be dropped (requests that old are refused by their timestamp).
    fn remember_request(
        &self,
        installation_id: &[u8],
        nonce: &[u8],
        now_ns: i64,
        forget_before_ns: i64,
    ) -> Result<bool, StorageError>;

    /// Whether other node processes write to this storage too (a shared database). A node
    /// over a shared storage feeds its subscribers from what the storage has committed
    /// ([`NodeStorage::wait_for_writes`], [`NodeStorage::group_messages_after`],
    /// [`NodeStorage::welcomes_after`]), so they also get what other replicas stored; over a
    /// storage of its own it hands them what it stores itself.
    fn is_shared(&self) -> bool {
        false
    }

    /// The largest sequence ids committed so far: (group messages, welcomes); 0 when none.
    /// Sequence ids become visible in id order: once one is visible, so is every smaller one.
    fn heads(&self) -> Result<(u64, u64), StorageError>;

    /// Up to `limit` group messages of any group with a sequence id above `after`, ascending.
    fn group_messages_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<GroupMessage>, StorageError>;

    /// Up to `limit` welcomes of any installation with a sequence id above `after`, ascending.
    fn welcomes_after(&self, after: u64, limit: u32) -> Result<Vec<Welcome>, StorageError>;

    /// Blocks until a write may have been committed by any process, or `timeout` passed
    /// (a storage that cannot tell just sleeps `timeout`). Spurious wake-ups are allowed.
    fn wait_for_writes(&self, timeout: Duration) -> Result<(), StorageError> {
        std::thread::sleep(timeout);
        Ok(())
    }
}
