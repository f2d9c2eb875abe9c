//! Ferry's MLS layer: openmls 0.9 with its state in the installation's SQLite file.
//!
//! openmls keeps every group's state (tree, epoch secrets, sender ratchets, pending commits),
//! the installation's key packages and its signature key in a storage provider. Here that is
//! [`openmls_sqlite_storage`] on the **store's own connection** ([`ferry_store::Store::conn`]),
//! in `openmls_*` tables beside Ferry's own. So a message row and the MLS state change that
//! produced it can commit in one SQLite transaction.
//!
//! # Setup
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut store = ferry_store::Store::open("ferry.db")?;
//! ferry_mls::migrate(store.conn_mut())?; // once per open; idempotent
//! let provider = ferry_mls::Provider::new(store.conn());
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

use std::fmt;

use ferry_store::rusqlite::{self, Connection, Transaction, TransactionBehavior};
use openmls::framing::errors::{MessageDecryptionError, SecretTreeError};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, Credential, CredentialWithKey, Extension,
    ExtensionType, Extensions, GroupContext, GroupId, KeyPackage, KeyPackageIn, LeafNodeIndex,
    MlsGroupCreateConfig, MlsGroupJoinConfig, MlsGroupStateError, MlsMessageBodyIn, MlsMessageIn,
    MlsMessageOut, ProcessMessageError, ProcessedMessageContent, ProtocolMessage, ProtocolVersion,
    RequiredCapabilitiesExtension, StagedWelcome, UnknownExtension, ValidationError, WelcomeError,
};
use openmls_basic_credential::{SignatureKeyPair, StorageId};
use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::signatures::Signer as _;
use openmls_traits::storage::StorageProvider as _;
use openmls_traits::types::SignatureScheme;
use openmls_traits::OpenMlsProvider;

pub use openmls::group::MlsGroup;

/// The one ciphersuite Ferry uses: X25519, AES-128-GCM, SHA-256, Ed25519.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The group-context extension (a private-use type) in which Ferry keeps a group's metadata
/// (name, description, kind, ...): installations added later read it from their welcome.
pub const METADATA_EXTENSION: u16 = 0xff01;

/// How many past epochs' secrets a member keeps, so an application message sent just before a
/// commit it had not seen yet still decrypts after that commit.
pub const MAX_PAST_EPOCHS: usize = 8;

/// The savepoint every state-changing operation runs in.
const SAVEPOINT: &str = "ferry_mls";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("openmls storage migrations failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("malformed MLS message: {0}")]
    Malformed(#[source] openmls::prelude::tls_codec::Error),
    #[error("expected an MLS {expected}, got {got}")]
    UnexpectedMessage {
        expected: &'static str,
        got: &'static str,
    },
    #[error("invalid key package: {0}")]
    InvalidKeyPackage(#[source] openmls::prelude::KeyPackageVerifyError),
    #[error("key package uses ciphersuite {0:?}, not Ferry's")]
    WrongCiphersuite(Ciphersuite),
    #[error(
        "no key package of this installation opens this welcome (already used or not made here)"
    )]
    NoMatchingKeyPackage,
    #[error("the group already exists on this installation")]
    GroupExists,
    #[error("message is for another group")]
    WrongGroup,
    #[error("message is for epoch {message} but the group is at epoch {group}")]
    WrongEpoch { message: u64, group: u64 },
    #[error("message is from epoch {message}, whose secrets this installation does not have (group at epoch {group})")]
    EpochTooOld { message: u64, group: u64 },
    #[error("message cannot be decrypted: {0}")]
    Undecryptable(#[source] MessageDecryptionError),
    #[error("this installation is no longer a member of the group")]
    Removed,
    #[error("installation {0} is not a member of the group")]
    NotAMember(String),
    #[error("the Ed25519 secret key does not match its public key")]
    KeyMismatch,
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("{op} failed: {source}")]
    Openmls {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn mls_err<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| Error::Openmls {
        op,
        source: Box::new(e),
    }
}

// ---- storage ----------------------------------------------------------------------------------

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
    /// A provider over `conn`, normally [`ferry_store::Store::conn`]. [`migrate`] must have run
    /// on this database.
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
        let tx = Transaction::new_unchecked(self.conn, TransactionBehavior::Immediate)
            .map_err(Error::from)?;
        let out = f(self)?;
        tx.commit().map_err(Error::from)?;
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

/// A savepoint released by [`Savepoint::release`] and rolled back when dropped before that.
struct Savepoint<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Savepoint<'c> {
    fn new(conn: &'c Connection) -> Result<Self> {
        conn.execute_batch(&format!("SAVEPOINT {SAVEPOINT}"))?;
        Ok(Savepoint { conn, open: true })
    }

    fn release(mut self) -> Result<()> {
        self.conn.execute_batch(&format!("RELEASE {SAVEPOINT}"))?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self
                .conn
                .execute_batch(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}"));
        }
    }
}

/// Runs `f` whole or not at all (see the crate docs on atomicity).
fn atomic<T>(provider: &Provider<'_>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let sp = Savepoint::new(provider.conn)?;
    let out = f()?;
    sp.release()?;
    Ok(out)
}

/// [`atomic`] for an operation on `group`; on failure the group is reloaded from storage.
fn atomic_on<T>(
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

// ---- identity ---------------------------------------------------------------------------------

/// An installation's MLS identity: its Ed25519 signature key pair (kept in openmls' storage,
/// `openmls_signature_keys`, secret key in clear like the rest of the file's MLS secrets) and a
/// basic credential whose identity bytes are the installation id.
pub struct Identity {
    installation_id: Vec<u8>,
    keys: SignatureKeyPair,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("installation_id", &hex(&self.installation_id))
            .field("signature_public_key", &hex(self.keys.public()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random signature key, stored. Keep [`Identity::signature_public_key`] (e.g. in
    /// the store's settings) to [`Identity::load`] it after a restart.
    pub fn generate(provider: &Provider<'_>, installation_id: &[u8]) -> Result<Identity> {
        let keys = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .map_err(mls_err("generating a signature key"))?;
        Self::store(provider, installation_id, keys)
    }

    /// The identity for an existing Ed25519 key (ferry-identity's installation key is also its
    /// MLS signature key): its 32-byte secret seed and public key. Stored like
    /// [`Identity::generate`]'s; fails with [`Error::KeyMismatch`] when they don't belong
    /// together.
    pub fn from_ed25519(
        provider: &Provider<'_>,
        installation_id: &[u8],
        secret_seed: &[u8; 32],
        public_key: &[u8; 32],
    ) -> Result<Identity> {
        let keys = SignatureKeyPair::from_raw(
            SignatureScheme::ED25519,
            secret_seed.to_vec(),
            public_key.to_vec(),
        );
        let probe = b"ferry-mls key check";
        let sig = keys.sign(probe).map_err(|_| Error::KeyMismatch)?;
        provider
            .crypto()
            .verify_signature(SignatureScheme::ED25519, probe, public_key, &sig)
            .map_err(|_| Error::KeyMismatch)?;
        Self::store(provider, installation_id, keys)
    }

    fn store(
        provider: &Provider<'_>,
        installation_id: &[u8],
        keys: SignatureKeyPair,
    ) -> Result<Identity> {
        keys.store(provider.storage())?;
        Ok(Identity {
            installation_id: installation_id.to_vec(),
            keys,
        })
    }

    /// The stored identity whose signature public key is `signature_public_key`, if any.
    pub fn load(
        provider: &Provider<'_>,
        installation_id: &[u8],
        signature_public_key: &[u8],
    ) -> Result<Option<Identity>> {
        let scheme = CIPHERSUITE.signature_algorithm();
        // `SignatureKeyPair::read` turns storage errors into "not found"; read through the
        // storage trait instead, with the id the basic-credential crate derives.
        let id: StorageId =
            SignatureKeyPair::from_raw(scheme, Vec::new(), signature_public_key.to_vec()).id();
        let keys: Option<SignatureKeyPair> = provider.storage().signature_key_pair(&id)?;
        Ok(keys.map(|keys| Identity {
            installation_id: installation_id.to_vec(),
            keys,
        }))
    }

    pub fn installation_id(&self) -> &[u8] {
        &self.installation_id
    }

    pub fn signature_public_key(&self) -> &[u8] {
        self.keys.public()
    }

    /// Signs `payload` with the installation's key outside MLS (plain Ed25519, RFC 8032, no
    /// MLS label): for what the installation vouches for elsewhere, such as the archives it
    /// makes. Callers put their own context string in `payload`.
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        self.keys
            .sign(payload)
            .map_err(|e| Error::Signing(format!("{e:?}")))
    }

    /// The credential (basic, identity = installation id) with the signature public key.
    pub fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.installation_id.clone()).into(),
            signature_key: self.keys.public().into(),
        }
    }
}

// ---- groups -----------------------------------------------------------------------------------

/// What Ferry's leaf nodes support beyond the defaults: last-resort key packages (a key
/// package carrying that extension fails validation unless its leaf lists it).
fn capabilities() -> Capabilities {
    Capabilities::builder()
        .extensions(vec![
            ExtensionType::LastResort,
            ExtensionType::Unknown(METADATA_EXTENSION),
        ])
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build()
}

/// A new key package for `identity`, TLS-serialized as an `MLSMessage` (wire format
/// `mls_key_package`, i.e. `MlsMessageOut::from(KeyPackage)`). Its private keys are stored:
/// an ordinary key package is deleted when a welcome uses it; a `last_resort` one stays and
/// can be used by any number of welcomes.
pub fn generate_key_package(
    provider: &Provider<'_>,
    identity: &Identity,
    last_resort: bool,
) -> Result<Vec<u8>> {
    atomic(provider, || {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                provider,
                &identity.keys,
                identity.credential_with_key(),
            )
            .map_err(mls_err("building a key package"))?;
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    })
}

/// Creates the group `group_id` with `identity` as its only member (epoch 0), using
/// [`CIPHERSUITE`] and the ratchet-tree extension (welcomes carry the tree).
pub fn create_group(
    provider: &Provider<'_>,
    identity: &Identity,
    group_id: &[u8],
) -> Result<MlsGroup> {
    create_group_with_metadata(provider, identity, group_id, None)
}

/// [`create_group`] with the application's `metadata` in the [`METADATA_EXTENSION`]
/// group-context extension (read it with [`group_metadata`]).
pub fn create_group_with_metadata(
    provider: &Provider<'_>,
    identity: &Identity,
    group_id: &[u8],
    metadata: Option<&[u8]>,
) -> Result<MlsGroup> {
    let mut builder = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .capabilities(capabilities());
    if let Some(m) = metadata {
        builder = builder.with_group_context_extensions(metadata_extensions(m)?);
    }
    let config = builder.build();
    atomic(provider, || {
        MlsGroup::new_with_group_id(
            provider,
            &identity.keys,
            &config,
            GroupId::from_slice(group_id),
            identity.credential_with_key(),
        )
        .map_err(|e| match e {
            openmls::group::NewGroupError::GroupAlreadyExists => Error::GroupExists,
            openmls::group::NewGroupError::StorageError(e) => Error::Sqlite(e),
            e => mls_err("creating a group")(e),
        })
    })
}

/// The group context's extensions: the metadata, and the requirement that every member
/// support it (without which a later metadata change is refused).
fn metadata_extensions(metadata: &[u8]) -> Result<Extensions<GroupContext>> {
    Extensions::from_vec(vec![
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &[ExtensionType::Unknown(METADATA_EXTENSION)],
            &[],
            &[],
        )),
        Extension::Unknown(METADATA_EXTENSION, UnknownExtension(metadata.to_vec())),
    ])
    .map_err(mls_err("building the metadata extension"))
}

/// The bytes in the group's [`METADATA_EXTENSION`], if it has one.
pub fn group_metadata(group: &MlsGroup) -> Option<Vec<u8>> {
    group
        .extensions()
        .unknown(METADATA_EXTENSION)
        .map(|u| u.0.clone())
}

/// Replaces the group's metadata in one commit (a group-context-extensions proposal), merges
/// it and returns the commit.
pub fn update_metadata(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    metadata: &[u8],
) -> Result<Vec<u8>> {
    let out = stage_update_metadata(group, provider, identity, metadata)?;
    merge_pending_commit(group, provider)?;
    Ok(out)
}

/// [`update_metadata`] without the merge (see [`stage_add_members`]).
pub fn stage_update_metadata(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    metadata: &[u8],
) -> Result<Vec<u8>> {
    let extensions = metadata_extensions(metadata)?;
    atomic_on(group, provider, |group| {
        let (commit, _welcome, _group_info) = group
            .update_group_context_extensions(provider, extensions, &identity.keys)
            .map_err(mls_err("updating the group's metadata"))?;
        serialize(&commit)
    })
}

/// Each member's credential identity and signature public key, in leaf order.
pub fn member_keys(group: &MlsGroup) -> Vec<(Vec<u8>, Vec<u8>)> {
    group
        .members()
        .map(|m| (credential_id(&m.credential), m.signature_key))
        .collect()
}

/// Validates a key package (as [`add_members`] would) and returns its leaf's credential
/// identity and signature public key, so the caller can check them before adding it.
pub fn key_package_identity(
    provider: &Provider<'_>,
    key_package: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let kp = parse_key_package(provider, key_package)?;
    let leaf = kp.leaf_node();
    Ok((
        credential_id(leaf.credential()),
        leaf.signature_key().as_slice().to_vec(),
    ))
}

/// The group `group_id` as stored, if this installation has it.
pub fn load_group(provider: &Provider<'_>, group_id: &[u8]) -> Result<Option<MlsGroup>> {
    Ok(MlsGroup::load(
        provider.storage(),
        &GroupId::from_slice(group_id),
    )?)
}

/// The group's current epoch.
pub fn epoch(group: &MlsGroup) -> u64 {
    group.epoch().as_u64()
}

/// The installation ids (credential identities) of the group's members, in leaf order.
pub fn members(group: &MlsGroup) -> Vec<Vec<u8>> {
    group
        .members()
        .map(|m| credential_id(&m.credential))
        .collect()
}

/// Adds the owners of `key_packages` (as made by [`generate_key_package`]) in one commit,
/// merges it, and returns `(commit, welcome)`: the commit for the current members, the
/// welcome (with the ratchet tree) for the new ones.
pub fn add_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    key_packages: &[&[u8]],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let out = stage_add_members(group, provider, identity, key_packages)?;
    merge_pending_commit(group, provider)?;
    Ok(out)
}

/// [`add_members`] without the merge: the commit stays pending (stored) until
/// [`process`] meets it in the delivery order ([`Processed::OwnCommit`]) or another member's
/// commit of the same epoch comes first (then it is dropped).
pub fn stage_add_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    key_packages: &[&[u8]],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let kps = key_packages
        .iter()
        .map(|b| parse_key_package(provider, b))
        .collect::<Result<Vec<_>>>()?;
    atomic_on(group, provider, |group| {
        let (commit, welcome, _group_info) = group
            .add_members(provider, &identity.keys, &kps)
            .map_err(|e| match e {
                openmls::group::AddMembersError::GroupStateError(
                    MlsGroupStateError::UseAfterEviction,
                ) => Error::Removed,
                openmls::group::AddMembersError::StorageError(e) => Error::Sqlite(e),
                e => mls_err("adding members")(e),
            })?;
        Ok((serialize(&commit)?, serialize(&welcome)?))
    })
}

/// Merges the group's pending commit (made by a `stage_*` function).
pub fn merge_pending_commit(group: &mut MlsGroup, provider: &Provider<'_>) -> Result<()> {
    atomic_on(group, provider, |group| {
        group
            .merge_pending_commit(provider)
            .map_err(mls_err("merging a commit"))
    })
}

/// Drops the group's pending commit (one the delivery service refused).
pub fn clear_pending_commit(group: &mut MlsGroup, provider: &Provider<'_>) -> Result<()> {
    atomic_on(group, provider, |group| {
        Ok(group.clear_pending_commit(provider.storage())?)
    })
}

/// Whether the group has a commit of this installation's waiting to be confirmed.
pub fn has_pending_commit(group: &MlsGroup) -> bool {
    group.pending_commit().is_some()
}

/// Removes the members whose installation ids are `installation_ids` in one commit, merges
/// it and returns the commit.
pub fn remove_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    installation_ids: &[&[u8]],
) -> Result<Vec<u8>> {
    let out = stage_remove_members(group, provider, identity, installation_ids)?;
    merge_pending_commit(group, provider)?;
    Ok(out)
}

/// [`remove_members`] without the merge (see [`stage_add_members`]).
pub fn stage_remove_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    installation_ids: &[&[u8]],
) -> Result<Vec<u8>> {
    let mut leaves: Vec<LeafNodeIndex> = Vec::with_capacity(installation_ids.len());
    for id in installation_ids {
        let leaf = group
            .members()
            .find(|m| credential_id(&m.credential) == *id)
            .ok_or_else(|| Error::NotAMember(hex(id)))?;
        leaves.push(leaf.index);
    }
    atomic_on(group, provider, |group| {
        let (commit, _welcome, _group_info) = group
            .remove_members(provider, &identity.keys, &leaves)
            .map_err(|e| match e {
                openmls::group::RemoveMembersError::GroupStateError(
                    MlsGroupStateError::UseAfterEviction,
                ) => Error::Removed,
                openmls::group::RemoveMembersError::StorageError(e) => Error::Sqlite(e),
                e => mls_err("removing members")(e),
            })?;
        serialize(&commit)
    })
}

/// Joins a group from a welcome made by [`add_members`]. Uses up (deletes) the key package it
/// was made for, unless that one is last-resort.
pub fn join_from_welcome(provider: &Provider<'_>, welcome: &[u8]) -> Result<MlsGroup> {
    join_from_welcome_replacing(provider, welcome, |_| false)
}

/// [`join_from_welcome`]; when this installation already holds the welcome's group,
/// `replace(group_id)` decides whether its old state (say, kept after a removal) gives way to
/// the new one or the join fails with [`Error::GroupExists`].
pub fn join_from_welcome_replacing(
    provider: &Provider<'_>,
    welcome: &[u8],
    replace: impl FnOnce(&[u8]) -> bool,
) -> Result<MlsGroup> {
    let welcome = match deserialize(welcome)?.extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        other => {
            return Err(Error::UnexpectedMessage {
                expected: "welcome",
                got: body_name(&other),
            })
        }
    };
    let map = |e: WelcomeError<rusqlite::Error>| match e {
        WelcomeError::NoMatchingKeyPackage | WelcomeError::JoinerSecretNotFound => {
            Error::NoMatchingKeyPackage
        }
        WelcomeError::GroupAlreadyExists => Error::GroupExists,
        WelcomeError::StorageError(e) => Error::Sqlite(e),
        e => mls_err("joining from a welcome")(e),
    };
    atomic(provider, || {
        let mut builder =
            StagedWelcome::build_from_welcome(provider, &join_config(), welcome).map_err(map)?;
        let group_id = builder
            .processed_welcome()
            .unverified_group_info()
            .group_id()
            .as_slice()
            .to_vec();
        if load_group(provider, &group_id)?.is_some() {
            if !replace(&group_id) {
                return Err(Error::GroupExists);
            }
            builder = builder.replace_old_group();
        }
        builder
            .build()
            .and_then(|staged| staged.into_group(provider))
            .map_err(map)
    })
}

/// Encrypts an application message for the group's current epoch.
pub fn encrypt(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    atomic_on(group, provider, |group| {
        let msg = group
            .create_message(provider, &identity.keys, plaintext)
            .map_err(|e| match e {
                openmls::group::CreateMessageError::GroupStateError(
                    MlsGroupStateError::UseAfterEviction,
                ) => Error::Removed,
                e => mls_err("encrypting a message")(e),
            })?;
        serialize(&msg)
    })
}

/// What [`process`] made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Processed {
    /// An application message and the installation id of its sender.
    Application { sender: Vec<u8>, plaintext: Vec<u8> },
    /// A commit, merged: the group is now at `epoch`.
    Commit {
        /// Installation id of the member that committed.
        committer: Vec<u8>,
        epoch: u64,
        /// Installation ids added by this commit.
        added: Vec<Vec<u8>>,
        /// Installation ids removed by this commit.
        removed: Vec<Vec<u8>>,
        /// This installation was removed: the group is now inactive.
        self_removed: bool,
    },
    /// This installation's own pending commit, met in the delivery order before any rival:
    /// it is merged now and the group is at `epoch`.
    OwnCommit { epoch: u64 },
    /// A standalone proposal. Ferry sends none, and one from a member is not queued: a queued
    /// proposal would block sending and ride along, unchecked, in this installation's next
    /// commit.
    Proposal,
    /// Nothing to apply: an echo of this installation's own message, or an external join
    /// proposal (not queued).
    Other,
}

/// Decrypts and applies one message from the group's channel (commits are merged).
pub fn process(group: &mut MlsGroup, provider: &Provider<'_>, message: &[u8]) -> Result<Processed> {
    let message: ProtocolMessage = match deserialize(message)?.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => m.into(),
        MlsMessageBodyIn::PublicMessage(m) => m.into(),
        other => {
            return Err(Error::UnexpectedMessage {
                expected: "group message",
                got: body_name(&other),
            })
        }
    };
    let message_epoch = message.epoch().as_u64();
    atomic_on(group, provider, |group| {
        let group_epoch = epoch(group);
        let processed = group
            .process_message(provider, message)
            .map_err(|e| match e {
                ProcessMessageError::ValidationError(ValidationError::WrongEpoch) => {
                    Error::WrongEpoch {
                        message: message_epoch,
                        group: group_epoch,
                    }
                }
                // Public messages of a dropped epoch fail here; private ones fail in the
                // secret tree (which says the same of a generation too old in this epoch).
                ProcessMessageError::ValidationError(ValidationError::NoPastEpochData) => {
                    Error::EpochTooOld {
                        message: message_epoch,
                        group: group_epoch,
                    }
                }
                ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(
                    MessageDecryptionError::SecretTreeError(SecretTreeError::TooDistantInThePast),
                )) if message_epoch < group_epoch => Error::EpochTooOld {
                    message: message_epoch,
                    group: group_epoch,
                },
                ProcessMessageError::ValidationError(ValidationError::WrongGroupId) => {
                    Error::WrongGroup
                }
                ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(e)) => {
                    Error::Undecryptable(e)
                }
                ProcessMessageError::GroupStateError(MlsGroupStateError::UseAfterEviction) => {
                    Error::Removed
                }
                ProcessMessageError::StorageError(e) => Error::Sqlite(e),
                e => mls_err("processing a message")(e),
            })?;
        let sender = credential_id(processed.credential());
        Ok(match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => Processed::Application {
                sender,
                plaintext: m.into_bytes(),
            },
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let added = staged
                    .add_proposals()
                    .map(|p| credential_id(p.add_proposal().key_package().leaf_node().credential()))
                    .collect();
                let removed = staged
                    .remove_proposals()
                    .filter_map(|p| group.member(p.remove_proposal().removed()))
                    .map(credential_id)
                    .collect();
                let self_removed = staged.self_removed();
                group
                    .merge_staged_commit(provider, *staged)
                    .map_err(mls_err("merging a commit"))?;
                Processed::Commit {
                    committer: sender,
                    epoch: epoch(group),
                    added,
                    removed,
                    self_removed,
                }
            }
            ProcessedMessageContent::ProposalMessage(_) => Processed::Proposal,
            ProcessedMessageContent::OwnPendingCommit => {
                group
                    .merge_pending_commit(provider)
                    .map_err(mls_err("merging a commit"))?;
                Processed::OwnCommit {
                    epoch: epoch(group),
                }
            }
            _ => Processed::Other,
        })
    })
}

// ---- helpers ----------------------------------------------------------------------------------

fn parse_key_package(provider: &Provider<'_>, bytes: &[u8]) -> Result<KeyPackage> {
    let kp: KeyPackageIn = match deserialize(bytes)?.extract() {
        MlsMessageBodyIn::KeyPackage(kp) => kp,
        other => {
            return Err(Error::UnexpectedMessage {
                expected: "key package",
                got: body_name(&other),
            })
        }
    };
    let kp = kp
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(Error::InvalidKeyPackage)?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(Error::WrongCiphersuite(kp.ciphersuite()));
    }
    Ok(kp)
}

fn serialize(msg: &MlsMessageOut) -> Result<Vec<u8>> {
    msg.tls_serialize_detached().map_err(Error::Malformed)
}

fn deserialize(bytes: &[u8]) -> Result<MlsMessageIn> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(Error::Malformed)
}

fn body_name(body: &MlsMessageBodyIn) -> &'static str {
    match body {
        MlsMessageBodyIn::PublicMessage(_) => "public message",
        MlsMessageBodyIn::PrivateMessage(_) => "private message",
        MlsMessageBodyIn::Welcome(_) => "welcome",
        MlsMessageBodyIn::GroupInfo(_) => "group info",
        MlsMessageBodyIn::KeyPackage(_) => "key package",
        #[allow(unreachable_patterns)]
        _ => "other message",
    }
}

/// The installation id in a credential: a basic credential's identity bytes.
fn credential_id(c: &Credential) -> Vec<u8> {
    c.serialized_content().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
