//! [`NodeStorage`] in one SQLite file: the embedded default.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::{GroupMessage, GroupMessageInput, Welcome, WelcomeInput};
use prost::Message;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::{
    to_sql_id, DbError, InstallationChange, InstallationRecord, NodeStorage, StorageError,
    NONCE_SWEEP_EVERY,
};

/// The schema version this code writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE identity_updates (
    inbox_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    update_bytes BLOB NOT NULL,
    PRIMARY KEY (inbox_id, sequence)
) WITHOUT ROWID;

CREATE TABLE installations (
    installation_id BLOB PRIMARY KEY,
    inbox_id TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE key_packages (
    installation_id BLOB NOT NULL,
    last_resort INTEGER NOT NULL,
    key_package BLOB NOT NULL,
    PRIMARY KEY (installation_id, last_resort)
) WITHOUT ROWID;

CREATE TABLE group_messages (
    sequence_id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    created_at_ns INTEGER NOT NULL,
    data BLOB NOT NULL,
    commit_epoch INTEGER
);
CREATE INDEX group_messages_by_group ON group_messages (group_id, sequence_id);

CREATE TABLE welcomes (
    sequence_id INTEGER PRIMARY KEY AUTOINCREMENT,
    installation_id BLOB NOT NULL,
    created_at_ns INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX welcomes_by_installation ON welcomes (installation_id, sequence_id);
";

/// Version 2: the nonces of signed requests seen lately (replays are refused).
const SCHEMA_2: &str = "
CREATE TABLE request_nonces (
    installation_id BLOB NOT NULL,
    nonce BLOB NOT NULL,
    seen_at_ns INTEGER NOT NULL,
    PRIMARY KEY (installation_id, nonce)
) WITHOUT ROWID;
CREATE INDEX request_nonces_by_age ON request_nonces (seen_at_ns);
";

/// [`NodeStorage`] in one SQLite database (WAL mode), behind a mutex.
///
/// Request nonces go through a second connection to the same file that does not wait for the
/// disk on commit (`synchronous = OFF`): a nonce only has to outlive the node process, which
/// the operating system's cache guarantees, and the connection that stores messages keeps
/// its full durability. (A database in memory uses its one connection for both.)
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    nonces: Option<Mutex<Connection>>,
    remembered: std::sync::atomic::AtomicU64,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref();
        let conn = Connection::open(path).map_err(open_error(path))?;
        let mut storage = Self::init(conn, path)?;
        let nonces = Connection::open(path)
            .and_then(|c| {
                c.busy_timeout(Duration::from_secs(5))?;
                c.pragma_update(None, "synchronous", "OFF")?;
                Ok(c)
            })
            .map_err(open_error(path))?;
        storage.nonces = Some(Mutex::new(nonces));
        Ok(storage)
    }

    /// A database that lives as long as this value (for tests and throwaway nodes).
    pub fn in_memory() -> Result<Self, StorageError> {
        let conn = Connection::open_in_memory().map_err(open_error(Path::new(":memory:")))?;
        Self::init(conn, Path::new(":memory:"))
    }

    fn init(mut conn: Connection, path: &Path) -> Result<Self, StorageError> {
        let open_err = open_error(path);
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // In-memory databases answer "memory"; that is fine.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::UnsupportedVersion {
                location: path.display().to_string(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            tx.execute_batch(SCHEMA).map_err(open_err)?;
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_2).map_err(open_err)?;
        }
        if version != SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_err)?;
        }
        tx.commit().map_err(open_err)?;
        Ok(SqliteStorage {
            conn: Mutex::new(conn),
            nonces: None,
            remembered: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn nonce_conn(&self) -> MutexGuard<'_, Connection> {
        match &self.nonces {
            Some(c) => c.lock().unwrap_or_else(|e| e.into_inner()),
            None => self.conn(),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        DbError::new("sqlite", retryable, e)
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> StorageError {
        StorageError::Database(e.into())
    }
}

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> StorageError + Copy + '_ {
    move |e| StorageError::Open {
        location: path.display().to_string(),
        source: e.into(),
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

impl NodeStorage for SqliteStorage {
    fn remember_request(
        &self,
        installation_id: &[u8],
        nonce: &[u8],
        now_ns: i64,
        forget_before_ns: i64,
    ) -> Result<bool, StorageError> {
        let conn = self.nonce_conn();
        let n = self
            .remembered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(NONCE_SWEEP_EVERY) {
            conn.prepare_cached("DELETE FROM request_nonces WHERE seen_at_ns < ?1")?
                .execute([forget_before_ns])?;
        }
        let inserted = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO request_nonces (installation_id, nonce, seen_at_ns)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![installation_id, nonce, now_ns])?;
        Ok(inserted == 1)
    }

    fn identity_log(&self, inbox_id: &str) -> Result<Vec<IdentityUpdate>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT update_bytes FROM identity_updates WHERE inbox_id = ?1 ORDER BY sequence",
        )?;
        let rows = stmt.query_map([inbox_id], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|bytes| {
            IdentityUpdate::decode(bytes?.as_slice()).map_err(|e| {
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
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken = || StorageError::SequenceTaken {
            inbox_id: inbox_id.to_string(),
            sequence,
        };
        let next: i64 = tx.query_row(
            "SELECT COUNT(*) FROM identity_updates WHERE inbox_id = ?1",
            [inbox_id],
            |r| r.get(0),
        )?;
        if to_sql_id(sequence) < next {
            return Err(taken());
        }
        tx.execute(
            "INSERT INTO identity_updates (inbox_id, sequence, update_bytes) VALUES (?1, ?2, ?3)",
            params![inbox_id, to_sql_id(sequence), update.encode_to_vec()],
        )
        .map_err(|e| if is_constraint(&e) { taken() } else { e.into() })?;
        match change {
            Some(InstallationChange::Add(installation)) => {
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT inbox_id FROM installations WHERE installation_id = ?1",
                        [installation],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(owner) = existing {
                    return Err(StorageError::InstallationTaken {
                        installation: hex::encode(installation),
                        inbox_id: owner,
                    });
                }
                tx.execute(
                    "INSERT INTO installations (installation_id, inbox_id, revoked) VALUES (?1, ?2, 0)",
                    params![installation, inbox_id],
                )?;
            }
            Some(InstallationChange::Revoke(installation)) => {
                tx.execute(
                    "UPDATE installations SET revoked = 1 WHERE installation_id = ?1 AND inbox_id = ?2",
                    params![installation, inbox_id],
                )?;
                tx.execute(
                    "DELETE FROM key_packages WHERE installation_id = ?1",
                    [installation],
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
        let conn = self.conn();
        let record = conn
            .query_row(
                "SELECT inbox_id, revoked FROM installations WHERE installation_id = ?1",
                [installation_id],
                |r| {
                    Ok(InstallationRecord {
                        inbox_id: r.get(0)?,
                        revoked: r.get(1)?,
                    })
                },
            )
            .optional()?;
        Ok(record)
    }

    fn put_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO key_packages (installation_id, last_resort, key_package)
             VALUES (?1, ?2, ?3)",
            params![installation_id, last_resort, key_package],
        )?;
        Ok(())
    }

    fn take_key_package(&self, installation_id: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Regular (last_resort = 0) sorts first.
        let found: Option<(bool, Vec<u8>)> = tx
            .query_row(
                "SELECT last_resort, key_package FROM key_packages WHERE installation_id = ?1
                 ORDER BY last_resort LIMIT 1",
                [installation_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((false, _)) = found {
            tx.execute(
                "DELETE FROM key_packages WHERE installation_id = ?1 AND last_resort = 0",
                [installation_id],
            )?;
        }
        tx.commit()?;
        Ok(found.map(|(_, kp)| kp))
    }

    fn insert_group_messages(
        &self,
        messages: &[GroupMessageInput],
        created_at_ns: i64,
    ) -> Result<Vec<GroupMessage>, StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = Vec::with_capacity(messages.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO group_messages (group_id, created_at_ns, data, commit_epoch)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for m in messages {
                // Epochs are stored bit-for-bit as i64; only equality matters.
                let epoch = m.commit_epoch.map(|e| e as i64);
                stmt.execute(params![m.group_id, created_at_ns, m.data, epoch])?;
                stored.push(GroupMessage {
                    group_id: m.group_id.clone(),
                    sequence_id: tx.last_insert_rowid() as u64,
                    created_at_ns,
                    data: m.data.clone(),
                });
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Vec<GroupMessage>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sequence_id, created_at_ns, data FROM group_messages
             WHERE group_id = ?1 AND sequence_id > ?2 ORDER BY sequence_id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![group_id, to_sql_id(after), limit], |r| {
            Ok(GroupMessage {
                group_id: group_id.to_vec(),
                sequence_id: r.get::<_, i64>(0)? as u64,
                created_at_ns: r.get(1)?,
                data: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_welcomes(
        &self,
        welcomes: &[WelcomeInput],
        created_at_ns: i64,
    ) -> Result<Vec<Welcome>, StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut stored = Vec::with_capacity(welcomes.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO welcomes (installation_id, created_at_ns, data) VALUES (?1, ?2, ?3)",
            )?;
            for w in welcomes {
                stmt.execute(params![w.installation_id, created_at_ns, w.data])?;
                stored.push(Welcome {
                    installation_id: w.installation_id.clone(),
                    sequence_id: tx.last_insert_rowid() as u64,
                    created_at_ns,
                    data: w.data.clone(),
                });
            }
        }
        tx.commit()?;
        Ok(stored)
    }

    fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Vec<Welcome>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sequence_id, created_at_ns, data FROM welcomes
             WHERE installation_id = ?1 AND sequence_id > ?2 ORDER BY sequence_id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![installation_id, to_sql_id(after), limit], |r| {
            Ok(Welcome {
                installation_id: installation_id.to_vec(),
                sequence_id: r.get::<_, i64>(0)? as u64,
                created_at_ns: r.get(1)?,
                data: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn heads(&self) -> Result<(u64, u64), StorageError> {
        let conn = self.conn();
        let head = |table: &str| -> Result<u64, StorageError> {
            let max: Option<i64> = conn
                .prepare_cached(&format!("SELECT MAX(sequence_id) FROM {table}"))?
                .query_row([], |r| r.get(0))?;
            Ok(max.unwrap_or(0) as u64)
        };
        Ok((head("group_messages")?, head("welcomes")?))
    }

    fn group_messages_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<GroupMessage>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sequence_id, group_id, created_at_ns, data FROM group_messages
             WHERE sequence_id > ?1 ORDER BY sequence_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![to_sql_id(after), limit], |r| {
            Ok(GroupMessage {
                sequence_id: r.get::<_, i64>(0)? as u64,
                group_id: r.get(1)?,
                created_at_ns: r.get(2)?,
                data: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn welcomes_after(&self, after: u64, limit: u32) -> Result<Vec<Welcome>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sequence_id, installation_id, created_at_ns, data FROM welcomes
             WHERE sequence_id > ?1 ORDER BY sequence_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![to_sql_id(after), limit], |r| {
            Ok(Welcome {
                sequence_id: r.get::<_, i64>(0)? as u64,
                installation_id: r.get(1)?,
                created_at_ns: r.get(2)?,
                data: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(group: &[u8], data: &[u8], epoch: Option<u64>) -> GroupMessageInput {
        GroupMessageInput {
            group_id: group.to_vec(),
            data: data.to_vec(),
            commit_epoch: epoch,
        }
    }

    #[test]
    fn rival_commits_are_both_kept_in_order() {
        let s = SqliteStorage::in_memory().unwrap();
        s.insert_group_messages(&[input(b"g", b"c1", Some(1))], 1)
            .unwrap();
        s.insert_group_messages(&[input(b"g", b"m", None), input(b"g", b"c1'", Some(1))], 2)
            .unwrap();
        let all = s.query_group_messages(b"g", 0, 100).unwrap();
        let data: Vec<&[u8]> = all.iter().map(|m| m.data.as_slice()).collect();
        assert_eq!(data, [b"c1".as_slice(), b"m", b"c1'"]);
        assert!(all.windows(2).all(|w| w[0].sequence_id < w[1].sequence_id));
    }

    #[test]
    fn busy_and_lost_races_are_retryable() {
        let sqlite = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        for e in [
            StorageError::from(sqlite(rusqlite::ffi::SQLITE_BUSY)),
            StorageError::Open {
                location: "node.db".into(),
                source: sqlite(rusqlite::ffi::SQLITE_LOCKED).into(),
            },
            StorageError::SequenceTaken {
                inbox_id: "00".into(),
                sequence: 1,
            },
        ] {
            assert!(e.is_retryable(), "{e:?}");
        }
        for e in [
            StorageError::from(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)),
            StorageError::Open {
                location: "node.db".into(),
                source: sqlite(rusqlite::ffi::SQLITE_CANTOPEN).into(),
            },
            StorageError::UnsupportedVersion {
                location: "node.db".into(),
                found: 99,
                known: SCHEMA_VERSION,
            },
            StorageError::InstallationTaken {
                installation: "01".into(),
                inbox_id: "00".into(),
            },
            StorageError::Corrupt("bad row".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn schema_version_is_set_and_newer_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        drop(SqliteStorage::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStorage::open(&path)
            .err()
            .expect("newer schema refused");
        assert!(
            matches!(err, StorageError::UnsupportedVersion { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO group_messages (group_id, created_at_ns, data) VALUES (x'01', 1, x'02')",
                [],
            )
            .unwrap();
        }
        let storage = SqliteStorage::open(&path).unwrap();
        assert_eq!(storage.query_group_messages(&[1], 0, 10).unwrap().len(), 1);
        assert!(storage.remember_request(&[9; 32], &[1; 16], 10, 0).unwrap());
    }

    #[test]
    fn a_request_nonce_is_accepted_once_and_forgotten_when_old() {
        let dir = tempfile::tempdir().unwrap();
        for storage in [
            SqliteStorage::in_memory().unwrap(),
            SqliteStorage::open(dir.path().join("n.db")).unwrap(),
        ] {
            let (a, b) = ([1u8; 32], [2u8; 32]);
            assert!(storage.remember_request(&a, &[7; 16], 100, 0).unwrap());
            assert!(!storage.remember_request(&a, &[7; 16], 101, 0).unwrap());
            // The same nonce from another installation is another request.
            assert!(storage.remember_request(&b, &[7; 16], 102, 0).unwrap());
            // Sweeps drop what is older than the window; the next sweep runs after
            // NONCE_SWEEP_EVERY requests.
            for i in 0..NONCE_SWEEP_EVERY {
                let nonce = i.to_be_bytes();
                assert!(storage.remember_request(&b, &nonce, 200, 150).unwrap());
            }
            assert!(storage.remember_request(&a, &[7; 16], 300, 150).unwrap());
        }
    }
}
