//! Ferry's MLS layer: openmls 0.9 with its state in the installation's SQLite file.
//!
//! openmls keeps every group's state (tree, epoch secrets, sender ratchets, pending commits),
//! the installation's key packages and its signature key in a storage provider. Here that is
//! [`openmls_sqlite_storage`] on the **store's own connection** (`ferry_store::Store::conn`),
//! in `openmls_*` tables beside Ferry's own. So a message row and the MLS state change that
//! produced it can commit in one SQLite transaction.
//!
//! # Setup
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In Ferry this is the store's connection (`ferry_store::Store::conn_mut`).
//! let mut conn = rusqlite::Connection::open("ferry.db")?;
//! ferry_mls::migrate(&mut conn)?; // once per open; idempotent
//! let provider = ferry_mls::Provider::new(&conn);
//! let me = ferry_mls::Identity::generate(&provider, b"installation id")?;
//! let _group = ferry_mls::create_group(&provider, &me, b"group id")?;
//! # Ok(()) }
//! ```
//!
//! # Wire format
//!
//! Every byte string this crate hands out or takes in is a TLS-serialized RFC 9420
//! `MLSMessage` ([`MlsMessageOut::tls_serialize_detached`] /
//! `MlsMessageIn::tls_deserialize_exact`): key packages (wire format `mls_key_package`),
//! welcomes (`mls_welcome`), and commits and application messages (`mls_private_message`:
//! groups use openmls' default pure-ciphertext policy, so handshakes are encrypted too).
//!
//! # Atomicity
//!
//! Each operation that changes MLS state runs inside a SQLite `SAVEPOINT`: it applies whole or
//! not at all, and when the caller has a transaction open (see [`Provider::transaction`]) it
//! becomes part of that transaction. When an operation fails, the group passed in is reloaded
//! from storage, so memory and disk agree again. When the *caller* rolls back its own
//! transaction, groups in memory are ahead of the disk: load them again with [`load_group`].
//!
//! # Commits
//!
//! [`add_members`], [`remove_members`] and [`update_metadata`] merge their commit at once.
//! Their `stage_*` twins leave it pending instead, for a delivery service where two members
//! may commit in the same epoch: publish the pending commit, then [`process`] the channel in
//! order; meeting it first yields [`Processed::OwnCommit`] (merged), while a rival commit of
//! the same epoch met first is applied and the pending one dropped (publish the change again
//! on the new epoch). An author of a merged commit must not [`process`] its echo (it would be
//! rejected as [`Error::WrongEpoch`]).

mod group;
mod identity;
pub mod limits;
mod message;
mod storage;
mod wire;

use openmls::framing::errors::MessageDecryptionError;
use openmls::prelude::Ciphersuite;

pub use group::{
    add_members, clear_pending_commit, create_group, create_group_with_metadata, epoch,
    generate_key_package, group_metadata, has_pending_commit, join_from_welcome,
    join_from_welcome_replacing, key_package_identity, load_group, member_keys, members,
    merge_pending_commit, remove_members, stage_add_members, stage_remove_members,
    stage_update_metadata, update_metadata,
};
pub use identity::Identity;
pub use message::{encrypt, process, Processed};
pub use openmls::group::MlsGroup;
pub use storage::{migrate, JsonCodec, Provider, Storage};

/// The one ciphersuite Ferry uses: X25519, AES-128-GCM, SHA-256, Ed25519.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The group-context extension (a private-use type) in which Ferry keeps a group's metadata
/// (name, description, kind, ...): installations added later read it from their welcome.
pub const METADATA_EXTENSION: u16 = 0xff01;

/// How many past epochs' secrets a member keeps, so an application message sent just before a
/// commit it had not seen yet still decrypts after that commit.
pub const MAX_PAST_EPOCHS: usize = 8;

/// Why an MLS operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing MLS state in SQLite failed (a busy database is retryable, see
    /// [`Error::is_retryable`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Creating or updating openmls' storage tables failed.
    #[error("openmls storage migrations failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Bytes that are not a TLS-serialized MLS message (or one that does not serialize).
    #[error("malformed MLS message: {0}")]
    Malformed(#[source] openmls::prelude::tls_codec::Error),
    /// A valid MLS message of another kind than the call takes (a welcome where a key package
    /// was expected, ...).
    #[error("expected an MLS {expected}, got {got}")]
    UnexpectedMessage {
        /// The kind the call takes.
        expected: &'static str,
        /// The kind given.
        got: &'static str,
    },
    /// A key package whose signature or content does not verify.
    #[error("invalid key package: {0}")]
    InvalidKeyPackage(#[source] openmls::prelude::KeyPackageVerifyError),
    /// A key package of another ciphersuite than [`CIPHERSUITE`].
    #[error("key package uses ciphersuite {0:?}, not Ferry's")]
    WrongCiphersuite(Ciphersuite),
    /// A welcome that none of this installation's key packages opens: made for another
    /// installation, or its key package was already used.
    #[error(
        "no key package of this installation opens this welcome (already used or not made here)"
    )]
    NoMatchingKeyPackage,
    /// Creating or joining a group whose id this installation already has.
    #[error("the group already exists on this installation")]
    GroupExists,
    /// A message of another group than the one it was processed in.
    #[error("message is for another group")]
    WrongGroup,
    /// A message of another epoch than the group's (a commit already merged, or one of an
    /// epoch this installation has not reached).
    #[error("message is for epoch {message} but the group is at epoch {group}")]
    WrongEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// A message of a past epoch whose secrets were already dropped (more than
    /// [`MAX_PAST_EPOCHS`] ago).
    #[error("message is from epoch {message}, whose secrets this installation does not have (group at epoch {group})")]
    EpochTooOld {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// A message that does not decrypt (damaged, or not for this member).
    #[error("message cannot be decrypted: {0}")]
    Undecryptable(#[source] MessageDecryptionError),
    /// This installation was removed from the group: it can no longer read or send in it.
    #[error("this installation is no longer a member of the group")]
    Removed,
    /// Removing an installation (hex) that is not in the group.
    #[error("installation {0} is not a member of the group")]
    NotAMember(String),
    /// An Ed25519 secret key given with a public key that is not its own.
    #[error("the Ed25519 secret key does not match its public key")]
    KeyMismatch,
    /// Signing with the installation's key failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// Another openmls operation failed (the operation is named, openmls' error is the
    /// source).
    #[error("{op} failed: {source}")]
    Openmls {
        /// What was being done.
        op: &'static str,
        /// openmls' error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the same call may succeed if made again later: only when SQLite found the
    /// database busy or locked by another connection. False for everything about the
    /// messages, keys and groups themselves (malformed, undecryptable, of another group or
    /// epoch, a removed member), which trying again does not change; a message of a later
    /// epoch needs the commits before it processed first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Error::Migration(_)
            | Error::Malformed(_)
            | Error::UnexpectedMessage { .. }
            | Error::InvalidKeyPackage(_)
            | Error::WrongCiphersuite(_)
            | Error::NoMatchingKeyPackage
            | Error::GroupExists
            | Error::WrongGroup
            | Error::WrongEpoch { .. }
            | Error::EpochTooOld { .. }
            | Error::Undecryptable(_)
            | Error::Removed
            | Error::NotAMember(_)
            | Error::KeyMismatch
            | Error::Signing(_)
            | Error::Openmls { .. } => false,
        }
    }
}

/// The MLS layer's result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn mls_err<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| Error::Openmls {
        op,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_or_locked_database_is_retryable() {
        let sqlite = |code| {
            Error::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(sqlite(rusqlite::ffi::SQLITE_BUSY).is_retryable());
        assert!(sqlite(rusqlite::ffi::SQLITE_LOCKED).is_retryable());
        for e in [
            sqlite(rusqlite::ffi::SQLITE_CONSTRAINT),
            sqlite(rusqlite::ffi::SQLITE_CORRUPT),
            Error::WrongEpoch {
                message: 3,
                group: 2,
            },
            Error::EpochTooOld {
                message: 1,
                group: 20,
            },
            Error::NoMatchingKeyPackage,
            Error::Removed,
            Error::Signing("no key".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }
}
