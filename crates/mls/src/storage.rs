//! openmls' state in SQLite: the codec, the provider over a borrowed connection, and the
//! savepoints that make every operation whole or nothing.

use std::fmt;

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::{Error, MlsGroup, Result};

/// The storage codec: openmls' values as JSON (what openmls' own storage tests use).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// openmls' storage on a borrowed connection.
pub type Storage<'a> = SqliteStorageProvider<JsonCodec, &'a Connection>;

/// Creates or updates openmls' tables in this database.
///
/// Run it once per open, before the first [`Provider`] use; it is idempotent. It records what
/// it applied in its own table (`openmls_sqlite_storage_migrations`, kept by `refinery`) and
/// never reads or writes `PRAGMA user_version`, which stays ferry-store's. It needs the
/// connection outside any transaction (each migration runs in a transaction of its own).
pub fn migrate(conn: &mut Connection) -> Result<()> {
    SqliteStorageProvider::<JsonCodec, &mut Connection>::new(conn)
        .run_migrations()
        .map_err(|e| Error::Migration(Box::new(e)))
}

/// What openmls needs: RustCrypto for crypto and randomness, SQLite for state.
pub struct Provider<'a> {
    crypto: RustCrypto,
    storage: Storage<'a>,
    conn: &'a Connection,
}

impl fmt::Debug for Provider<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

impl<'a> Provider<'a> {
    /// A provider over `conn`, normally the store's (`ferry_store::Store::conn`). [`migrate`]
    /// must have run on this database.
    pub fn new(conn: &'a Connection) -> Self {
        Provider {
            crypto: RustCrypto::default(),
            storage: SqliteStorageProvider::new(conn),
            conn,
        }
    }

    /// The connection MLS state is written through (to write app rows in the same transaction).
    pub fn conn(&self) -> &'a Connection {
        self.conn
    }

    /// Runs `f` in one immediate SQLite transaction: MLS state written by the operations in `f`
    /// and any rows `f` writes through [`Provider::conn`] commit together, or not at all when
    /// `f` fails. After a failure, reload the groups `f` changed ([`load_group`]). Fails when
    /// a transaction is already open on the connection (then just use that one).
    pub fn transaction<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction_keeping(f, |_| false)
    }

    /// [`Provider::transaction`], except that when `f` fails with an error for which
    /// `keep(&error)` is true, what `f` wrote so far commits before the error is returned
    /// (for work done in steps, each in a [`Provider::savepoint`], that stops midway for a
    /// reason that is no fault of the finished steps).
    pub fn transaction_keeping<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
        keep: impl FnOnce(&E) -> bool,
    ) -> Result<T, E> {
        let tx = Transaction::new_unchecked(self.conn, TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        match f(self) {
            Ok(out) => {
                tx.commit().map_err(Error::from)?;
                Ok(out)
            }
            Err(e) if keep(&e) => {
                tx.commit().map_err(Error::from)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `f` in a savepoint: what it wrote stays (as part of the enclosing transaction)
    /// when it succeeds and is rolled back when it fails. Groups in memory that `f` changed
    /// are ahead of the disk after a failure: load them again ([`load_group`](crate::load_group)).
    pub fn savepoint<T, E: From<Error>>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let sp = Savepoint::named(self.conn, "ferry_step")?;
        let out = f()?;
        sp.release()?;
        Ok(out)
    }
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = Storage<'a>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

/// The savepoint every state-changing operation runs in.
const SAVEPOINT: &str = "ferry_mls";

/// A savepoint released by [`Savepoint::release`] and rolled back when dropped before that.
struct Savepoint<'c> {
    conn: &'c Connection,
    name: &'static str,
    open: bool,
}

impl<'c> Savepoint<'c> {
    fn new(conn: &'c Connection) -> Result<Self> {
        Self::named(conn, SAVEPOINT)
    }

    fn named(conn: &'c Connection, name: &'static str) -> Result<Self> {
        conn.prepare_cached(&format!("SAVEPOINT {name}"))?
            .execute([])?;
        Ok(Savepoint {
            conn,
            name,
            open: true,
        })
    }

    fn release(mut self) -> Result<()> {
        self.conn
            .prepare_cached(&format!("RELEASE {}", self.name))?
            .execute([])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch(&format!(
                "ROLLBACK TO {name}; RELEASE {name}",
                name = self.name
            ));
        }
    }
}

/// Runs `f` whole or not at all (see the crate docs on atomicity).
pub(crate) fn atomic<T>(provider: &Provider<'_>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let sp = Savepoint::new(provider.conn)?;
    let out = f()?;
    sp.release()?;
    Ok(out)
}

/// [`atomic`] for an operation on `group`; on failure the group is reloaded from storage.
pub(crate) fn atomic_on<T>(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    f: impl FnOnce(&mut MlsGroup) -> Result<T>,
) -> Result<T> {
    let out = atomic(provider, || f(group));
    if out.is_err() {
        if let Ok(Some(stored)) = MlsGroup::load(provider.storage(), group.group_id()) {
            *group = stored;
        }
    }
    out
}
