//! [`NodeStorage`] in PostgreSQL: one database that several node processes (replicas) share.
//!
//! What makes replicas safe on one database:
//! - **Sequence ids become visible in id order.** A transaction that stores group messages
//!   (or welcomes) first takes a transaction-level advisory lock, then draws its ids, then
//!   commits, and PostgreSQL makes a commit visible before it releases the transaction's
//!   locks. So an id is never visible before a smaller one that will still commit, and a
//!   reader paging by cursor (`sequence_id > after`) never skips a message that committed
//!   late. (xmtpd orders its envelopes the same way.)
//! - **One order for everyone.** Rival commits of one epoch get ids in the order their
//!   transactions took the lock; every replica serves that one order, so "the first valid
//!   commit wins" picks the same winner on every client, whichever replica it talks to.
//! - **An inbox's log never forks.** Appends take an advisory lock on the inbox, check the
//!   log's length and insert under the `(inbox_id, sequence)` primary key.
//! - **A key package is handed out once.** `DELETE … RETURNING` takes it in one statement.
//! - **Pushes reach every replica.** A storing transaction sends `NOTIFY ferry_node` (delivered
//!   when it commits); each replica listens on a connection of its own and feeds its
//!   subscribers from the committed rows ([`NodeStorage::wait_for_writes`]).
//!
//! The schema is versioned by numbered migrations ([`MIGRATIONS`]) recorded in
//! `ferry_node_migrations`; replicas that start together apply them once (under an advisory
//! lock), and a database migrated by a newer node is refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::{GroupMessage, GroupMessageInput, Welcome, WelcomeInput};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use prost::Message;
use r2d2_postgres::PostgresConnectionManager;

use super::{
    to_sql_id, DbError, InstallationChange, InstallationRecord, NodeStorage, StorageError,
    NONCE_SWEEP_EVERY,
};

/// The numbered migrations, applied in order; the last number is the schema version.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "
CREATE TABLE identity_updates (
    inbox_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    update_bytes BYTEA NOT NULL,
    PRIMARY KEY (inbox_id, sequence)
);
CREATE TABLE installations (
    installation_id BYTEA PRIMARY KEY,
    inbox_id TEXT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE key_packages (
    installation_id BYTEA NOT NULL,
    last_resort BOOLEAN NOT NULL,
    key_package BYTEA NOT NULL,
    PRIMARY KEY (installation_id, last_resort)
);
CREATE TABLE group_messages (
    sequence_id BIGSERIAL PRIMARY KEY,
    group_id BYTEA NOT NULL,
    created_at_ns BIGINT NOT NULL,
    data BYTEA NOT NULL,
    commit_epoch BIGINT
);
CREATE INDEX group_messages_by_group ON group_messages (group_id, sequence_id);
CREATE TABLE welcomes (
    sequence_id BIGSERIAL PRIMARY KEY,
    installation_id BYTEA NOT NULL,
    created_at_ns BIGINT NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX welcomes_by_installation ON welcomes (installation_id, sequence_id);
CREATE TABLE request_nonces (
    installation_id BYTEA NOT NULL,
    nonce BYTEA NOT NULL,
    seen_at_ns BIGINT NOT NULL,
    PRIMARY KEY (installation_id, nonce)
);
CREATE INDEX request_nonces_by_age ON request_nonces (seen_at_ns);
",
)];

/// The channel that storing transactions notify and replicas listen on.
const CHANNEL: &str = "ferry_node";
/// Advisory lock keys (one 64-bit key space per database; "ferry" in ASCII, then a number).
const LOCK_MIGRATE: i64 = 0x6665_7272_7900_0001;
const LOCK_GROUP_MESSAGES: i64 = 0x6665_7272_7900_0002;
const LOCK_WELCOMES: i64 = 0x6665_7272_7900_0003;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// [`NodeStorage`] in a PostgreSQL database, through a pool of connections.
pub struct PostgresStorage {
    /// `None` only while dropping (see the `Drop` impl).
    pool: Option<Pool>,
    /// Connections for request nonces, which commit without waiting for the disk
    /// (`synchronous_commit = off`; see [`PostgresStorage::open`]).
    nonces: Option<Pool>,
    /// The connection that `LISTEN`s (opened again if it breaks).
    listener: Mutex<Option<Client>>,
    config: postgres::Config,
    remembered: AtomicU64,
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        let retryable = e.is_closed()
            || match e.code() {
                None => true, // I/O: the connection broke
                Some(code) => {
                    *code == SqlState::T_R_SERIALIZATION_FAILURE
                        || *code == SqlState::T_R_DEADLOCK_DETECTED
                        || *code == SqlState::ADMIN_SHUTDOWN
                        || *code == SqlState::CANNOT_CONNECT_NOW
                        || *code == SqlState::TOO_MANY_CONNECTIONS
                        || code.code().starts_with("08")
                }
            };
        DbError::new("postgres", retryable, e)
    }
}

impl From<postgres::Error> for StorageError {
    fn from(e: postgres::Error) -> StorageError {
        StorageError::Database(e.into())
    }
}

impl From<r2d2::Error> for StorageError {
    fn from(e: r2d2::Error) -> StorageError {
        // The pool could not hand out a connection in time: the database is unreachable or
        // every connection is busy. Both may pass.
        StorageError::Database(DbError::new("postgres", true, e))
    }
}

fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl PostgresStorage {
    /// Connects to the database at `url` (keeping at most `pool_size` connections), applies
    /// the migrations it lacks and starts listening for other replicas' writes.
    pub fn open(url: &str, pool_size: u32) -> Result<PostgresStorage, StorageError> {
        let location = redact(url);
        let open_err = |source: DbError| StorageError::Open {
            location: location.clone(),
            source,
        };
        let config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| open_err(DbError::new("postgres", false, e)))?;
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            // A broken connection is noticed by the call that uses it (and retried by the
            // client); checking each one out with a query would cost a round trip per call.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build(PostgresConnectionManager::new(config.clone(), NoTls))
            .map_err(|e| open_err(DbError::new("postgres", true, e)))?;
        // Request nonces commit asynchronously: a nonce only has to outlive the window in which
        // a replay's timestamp is accepted, and a commit that waits for the disk on every
        // signed request would cost a WAL flush per call. (PostgreSQL itself crashing can
        // forget the last fraction of a second of nonces; messages, identity updates and key
        // packages keep full durability on the other pool.)
        let mut nonce_config = config.clone();
        let options = match config.get_options() {
            Some(given) => format!("{given} -c synchronous_commit=off"),
            None => "-c synchronous_commit=off".to_string(),
        };
        nonce_config.options(&options);
        let nonces = r2d2::Pool::builder()
            .max_size((pool_size / 4).max(2))
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build(PostgresConnectionManager::new(nonce_config, NoTls))
            .map_err(|e| open_err(DbError::new("postgres", true, e)))?;
        let storage = PostgresStorage {
            pool: Some(pool),
            nonces: Some(nonces),
            listener: Mutex::new(None),
            config,
            remembered: AtomicU64::new(0),
        };
        let mut conn = storage
            .pool
            .as_ref()
            .expect("just made")
            .get()
            .map_err(|e| open_err(DbError::new("postgres", true, e)))?;
        migrate(&mut conn, &location)?;
        drop(conn);
        let listener = storage.listen().map_err(|e| open_err(e.into()))?;
        *storage.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
        Ok(storage)
    }

    /// The schema version of this code (the last migration's number).
    pub fn schema_version() -> i32 {
        MIGRATIONS.last().map_or(0, |m| m.0)
    }

    fn listen(&self) -> Result<Client, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(client)
    }

    fn conn(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, StorageError> {
        Ok(self.pool.as_ref().expect("open until dropped").get()?)
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        // The blocking client's connections each end on a runtime of their own, which must
        // not happen on an async runtime's thread (the last owner of a node's storage may be
        // one of its tasks): they are closed on a thread of their own.
        let owned = (
            self.pool.take(),
            self.nonces.take(),
            self.listener.get_mut().map(Option::take).unwrap_or(None),
        );
        let _ = std::thread::Builder::new()
            .name("ferry-pg-close".into())
            .spawn(move || drop(owned));
    }
}

/// Applies the migrations the database lacks, in one transaction, under an advisory lock
/// (replicas starting together take turns; the second finds nothing to do).
fn migrate(conn: &mut Client, location: &str) -> Result<(), StorageError> {
    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ferry_node_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let found: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM ferry_node_migrations",
            &[],
        )?
        .get(0);
    let known = PostgresStorage::schema_version();
    if found > known {
        return Err(StorageError::UnsupportedVersion {
            location: location.to_string(),
            found: found.into(),
            known: known.into(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO ferry_node_migrations (version) VALUES ($1)",
            &[version],
        )?;
        tracing::info!(version, "node database migrated");
    }
    tx.commit()?;
    Ok(())
}

impl NodeStorage for PostgresStorage {
    fn remember_request(
        &self,
        installation_id: &[u8],
        nonce: &[u8],
        now_ns: i64,
        forget_before_ns: i64,
    ) -> Result<bool, StorageError> {
        let mut conn = self.nonces.as_ref().expect("open until dropped").get()?;
        let n = self.remembered.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(NONCE_SWEEP_EVERY) {
            conn.execute(
                "DELETE FROM request_nonces WHERE seen_at_ns < $1",
                &[&forget_before_ns],
            )?;
        }
        let inserted = conn.execute(
            "INSERT INTO request_nonces (installation_id, nonce, seen_at_ns) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&installation_id, &nonce, &now_ns],
        )?;
        Ok(inserted == 1)
    }

    fn identity_log(&self, inbox_id: &str) -> Result<Vec<IdentityUpdate>, StorageError> {
        let mut conn = self.conn()?;
        let rows = conn.query(
            "SELECT update_bytes FROM identity_updates WHERE inbox_id = $1 ORDER BY sequence",
            &[&inbox_id],
        )?;
        rows.iter()
            .map(|r| {
                IdentityUpdate::decode(r.get::<_, &[u8]>(0)).map_err(|e| {
                    StorageError::Corrupt(format!("identity update of inbox {inbox_id}: {e}"))
                })
            })
            .collect()
    }

    fn append_identity_update(
        &self,
        inbox_id: &str,
        sequence: u64,
        update: &IdentityUpdate,
        change: Option<&InstallationChange>,
    ) -> Result<(), StorageError> {
        let taken = || StorageError::SequenceTaken {
            inbox_id: inbox_id.to_string(),
            sequence,
        };
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // Appends to one inbox take turns, whichever replica makes them.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&inbox_id],
        )?;
        let next: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM identity_updates WHERE inbox_id = $1",
                &[&inbox_id],
            )?
            .get(0);
        if to_sql_id(sequence) < next {
            return Err(taken());
        }
        tx.execute(
            "INSERT INTO identity_updates (inbox_id, sequence, update_bytes) VALUES ($1, $2, $3)",
            &[&inbox_id, &to_sql_id(sequence), &update.encode_to_vec()],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                taken()
            } else {
                e.into()
            }
        })?;
        match change {
            Some(InstallationChange::Add(installation)) => {
                // Another inbox may add the same installation at the same time: the insert
                // waits for it and then finds the row.
                let added = tx.execute(
                    "INSERT INTO installations (installation_id, inbox_id, revoked)
                     VALUES ($1, $2, FALSE) ON CONFLICT DO NOTHING",
                    &[installation, &inbox_id],
                )?;
                if added == 0 {
                    let owner: String = tx
                        .query_one(
                            "SELECT inbox_id FROM installations WHERE installation_id = $1",
                            &[installation],
                        )?
                        .get(0);
                    return Err(StorageError::InstallationTaken {
                        installation: hex::encode(installation),
                        inbox_id: owner,
                    });
                }
            }
            Some(InstallationChange::Revoke(installation)) => {
                tx.execute(
                    "UPDATE installations SET revoked = TRUE
                     WHERE installation_id = $1 AND inbox_id = $2",
                    &[installation, &inbox_id],
                )?;
                tx.execute(
                    "DELETE FROM key_packages WHERE installation_id = $1",
                    &[installation],
                )?;
            }
            None => {}
        }
        tx.commit()?;
        Ok(())
    }

    fn installation(
        &self,
        installation_id: &[u8],
    ) -> Result<Option<InstallationRecord>, StorageError> {
        let mut conn = self.conn()?;
        let row = conn.query_opt(
            "SELECT inbox_id, revoked FROM installations WHERE installation_id = $1",
            &[&installation_id],
        )?;
        Ok(row.map(|r| InstallationRecord {
            inbox_id: r.get(0),
            revoked: r.get(1),
        }))
    }

    fn put_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<(), StorageError> {
        self.conn()?.execute(
            "INSERT INTO key_packages (installation_id, last_resort, key_package)
             VALUES ($1, $2, $3)
             ON CONFLICT (installation_id, last_resort)
             DO UPDATE SET key_package = EXCLUDED.key_package",
            &[&installation_id, &last_resort, &key_package],
        )?;
        Ok(())
    }

    fn take_key_package(&self, installation_id: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let mut conn = self.conn()?;
        // One statement takes the regular package: two replicas asking at once cannot both
        // get it (the second DELETE waits for the first and then finds no row).
        let regular = conn.query_opt(
            "DELETE FROM key_packages WHERE installation_id = $1 AND NOT last_resort
             RETURNING key_package",
            &[&installation_id],
        )?;
        if let Some(row) = regular {
            return Ok(Some(row.get(0)));
        }
        let last_resort = conn.query_opt(
            "SELECT key_package FROM key_packages WHERE installation_id = $1 AND last_resort",
            &[&installation_id],
        )?;
        Ok(last_resort.map(|r| r.get(0)))
    }

    fn insert_group_messages(
        &self,
        messages: &[GroupMessageInput],
        created_at_ns: i64,
    ) -> Result<Vec<GroupMessage>, StorageError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let groups: Vec<&[u8]> = messages.iter().map(|m| m.group_id.as_slice()).collect();
        let data: Vec<&[u8]> = messages.iter().map(|m| m.data.as_slice()).collect();
        // Epochs are stored bit-for-bit as i64; only equality matters.
        let epochs: Vec<Option<i64>> = messages
            .iter()
            .map(|m| m.commit_epoch.map(|e| e as i64))
            .collect();
        let ids = insert_ordered(
            self,
            LOCK_GROUP_MESSAGES,
            "INSERT INTO group_messages (group_id, created_at_ns, data, commit_epoch)
             SELECT g, $4, d, e FROM unnest($1::bytea[], $2::bytea[], $3::int8[])
                 WITH ORDINALITY AS t(g, d, e, n)
             ORDER BY n
             RETURNING sequence_id",
            &[&groups, &data, &epochs, &created_at_ns],
            messages.len(),
        )?;
        Ok(messages
            .iter()
            .zip(ids)
            .map(|(m, sequence_id)| GroupMessage {
                group_id: m.group_id.clone(),
                sequence_id,
                created_at_ns,
                data: m.data.clone(),
            })
            .collect())
    }

    fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Vec<GroupMessage>, StorageError> {
        let rows = self.conn()?.query(
            "SELECT sequence_id, created_at_ns, data FROM group_messages
             WHERE group_id = $1 AND sequence_id > $2 ORDER BY sequence_id LIMIT $3",
            &[&group_id, &to_sql_id(after), &i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| GroupMessage {
                group_id: group_id.to_vec(),
                sequence_id: r.get::<_, i64>(0) as u64,
                created_at_ns: r.get(1),
                data: r.get(2),
            })
            .collect())
    }

    fn insert_welcomes(
        &self,
        welcomes: &[WelcomeInput],
        created_at_ns: i64,
    ) -> Result<Vec<Welcome>, StorageError> {
        if welcomes.is_empty() {
            return Ok(Vec::new());
        }
        let installations: Vec<&[u8]> = welcomes
            .iter()
            .map(|w| w.installation_id.as_slice())
            .collect();
        let data: Vec<&[u8]> = welcomes.iter().map(|w| w.data.as_slice()).collect();
        let ids = insert_ordered(
            self,
            LOCK_WELCOMES,
            "INSERT INTO welcomes (installation_id, created_at_ns, data)
             SELECT i, $3, d FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS t(i, d, n)
             ORDER BY n
             RETURNING sequence_id",
            &[&installations, &data, &created_at_ns],
            welcomes.len(),
        )?;
        Ok(welcomes
            .iter()
            .zip(ids)
            .map(|(w, sequence_id)| Welcome {
                installation_id: w.installation_id.clone(),
                sequence_id,
                created_at_ns,
                data: w.data.clone(),
            })
            .collect())
    }

    fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Vec<Welcome>, StorageError> {
        let rows = self.conn()?.query(
            "SELECT sequence_id, created_at_ns, data FROM welcomes
             WHERE installation_id = $1 AND sequence_id > $2 ORDER BY sequence_id LIMIT $3",
            &[&installation_id, &to_sql_id(after), &i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| Welcome {
                installation_id: installation_id.to_vec(),
                sequence_id: r.get::<_, i64>(0) as u64,
                created_at_ns: r.get(1),
                data: r.get(2),
            })
            .collect())
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn heads(&self) -> Result<(u64, u64), StorageError> {
        let row = self.conn()?.query_one(
            "SELECT (SELECT COALESCE(MAX(sequence_id), 0) FROM group_messages),
                    (SELECT COALESCE(MAX(sequence_id), 0) FROM welcomes)",
            &[],
        )?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    fn group_messages_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<GroupMessage>, StorageError> {
        let rows = self.conn()?.query(
            "SELECT sequence_id, group_id, created_at_ns, data FROM group_messages
             WHERE sequence_id > $1 ORDER BY sequence_id LIMIT $2",
            &[&to_sql_id(after), &i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| GroupMessage {
                sequence_id: r.get::<_, i64>(0) as u64,
                group_id: r.get(1),
                created_at_ns: r.get(2),
                data: r.get(3),
            })
            .collect())
    }

    fn welcomes_after(&self, after: u64, limit: u32) -> Result<Vec<Welcome>, StorageError> {
        let rows = self.conn()?.query(
            "SELECT sequence_id, installation_id, created_at_ns, data FROM welcomes
             WHERE sequence_id > $1 ORDER BY sequence_id LIMIT $2",
            &[&to_sql_id(after), &i64::from(limit)],
        )?;
        Ok(rows
            .iter()
            .map(|r| Welcome {
                sequence_id: r.get::<_, i64>(0) as u64,
                installation_id: r.get(1),
                created_at_ns: r.get(2),
                data: r.get(3),
            })
            .collect())
    }

    fn wait_for_writes(&self, timeout: Duration) -> Result<(), StorageError> {
        let mut guard = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        let client = match guard.as_mut() {
            Some(c) if !c.is_closed() => c,
            _ => {
                // Lost: listen again. Writes made meanwhile are found by the caller's
                // next read (it reads everything after what it has seen).
                *guard = None;
                match self.listen() {
                    Ok(c) => guard.insert(c),
                    Err(e) => {
                        drop(guard);
                        std::thread::sleep(timeout);
                        return Err(e.into());
                    }
                }
            }
        };
        let waited = {
            let mut notifications = client.notifications();
            let waited = notifications.timeout_iter(timeout).next().map(|_| ());
            // Several commits may have notified: one wake-up covers them all.
            while let Ok(Some(_)) = notifications.iter().next() {}
            waited
        };
        if let Err(e) = waited {
            *guard = None;
            return Err(e.into());
        }
        Ok(())
    }
}

/// Inserts rows in one transaction that holds the advisory lock `lock` while it draws its
/// sequence ids and until it commits (so ids become visible in id order), notifies the
/// replicas, and returns the ids in input order.
fn insert_ordered(
    storage: &PostgresStorage,
    lock: i64,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    count: usize,
) -> Result<Vec<u64>, StorageError> {
    let mut conn = storage.conn()?;
    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
    let rows = tx.query(sql, params)?;
    let ids: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
    // The SELECT's ORDER BY draws the ids in input order; check rather than trust it.
    if ids.len() != count || !ids.windows(2).all(|w| w[0] < w[1]) {
        return Err(StorageError::Corrupt(format!(
            "{} rows stored out of input order ({count} given); nothing kept",
            ids.len()
        )));
    }
    tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
    tx.commit()?;
    Ok(ids)
}
