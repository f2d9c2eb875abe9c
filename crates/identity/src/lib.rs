//! Inboxes and installations.
//!
//! A person's **inbox** is controlled by an **account key** (Ed25519) that they keep, like a
//! wallet key or a password; the inbox id is derived from its public key. Each app
//! **installation** has a key of its own (also its MLS signature key) and never shares it.
//!
//! Which installations belong to an inbox is an append-only **log** of signed updates: create
//! the inbox, add an installation (signed by the account key *and* by the new installation's
//! key, proving possession), revoke an installation. Each entry names its position and the hash
//! of the entry before it. The node stores logs; clients replay and verify them with
//! [`InboxState::replay`] and never take the node's word for membership.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ferry_proto::identity::{
    unsigned_identity_update::Action, AddInstallation, CreateInbox, IdentityUpdate,
    RevokeInstallation, UnsignedIdentityUpdate,
};
use prost::Message;
use sha2::{Digest, Sha256};

pub use ferry_proto::identity as proto;

pub mod request_auth;

const ACCOUNT_CONTEXT: &[u8] = b"ferry identity v1 account\0";
const INSTALLATION_CONTEXT: &[u8] = b"ferry identity v1 installation\0";
const INBOX_ID_CONTEXT: &[u8] = b"ferry inbox v1\0";

/// Why an identity update or log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The update's signed bytes are not a valid protobuf update.
    #[error("identity update does not decode: {0}")]
    Decode(String),
    /// The update names another inbox than the log it was given for.
    #[error("identity update is for inbox {found}, not {expected}")]
    WrongInbox {
        /// The log's inbox id.
        expected: String,
        /// The inbox id the update names.
        found: String,
    },
    /// The update's position in the log is not the next one (or a create-inbox entry after
    /// the first).
    #[error("identity update has sequence {found}, expected {expected}")]
    WrongSequence {
        /// The next position of the log.
        expected: u64,
        /// The position the update names.
        found: u64,
    },
    /// The update's previous hash is not the hash of the entry before it.
    #[error("identity update {sequence} does not follow the log (previous hash mismatch)")]
    BrokenChain {
        /// The update's position in the log.
        sequence: u64,
    },
    /// The log is empty or does not start with a create-inbox entry.
    #[error("an inbox log must start with a create-inbox entry")]
    NotCreated,
    /// The inbox id is not the one derived from the log's account key.
    #[error("the inbox id does not match the account key")]
    InboxIdMismatch,
    /// The account key's signature of the update does not verify.
    #[error("identity update {sequence} has an invalid account signature")]
    BadAccountSignature {
        /// The update's position in the log.
        sequence: u64,
    },
    /// An add-installation entry without a valid signature by the installation's own key.
    #[error("identity update {sequence} lacks a valid signature by the installation it adds")]
    BadInstallationSignature {
        /// The update's position in the log.
        sequence: u64,
    },
    /// A public key in the update that is not a 32-byte Ed25519 key.
    #[error("malformed public key in identity update {sequence}")]
    BadKey {
        /// The update's position in the log.
        sequence: u64,
    },
    /// An installation (hex) added a second time: it is already in the inbox, or was
    /// revoked from it.
    #[error("installation {0} is already in this inbox (or was revoked)")]
    InstallationExists(String),
    /// Revoking an installation (hex) that is not active in the inbox.
    #[error("installation {0} is not an active installation of this inbox")]
    UnknownInstallation(String),
    /// The update carries no action.
    #[error("identity update has no action")]
    NoAction,
}

impl IdentityError {
    /// Whether the same call may succeed if made again later: never. Each variant says the
    /// update or log itself is invalid (malformed, out of order, badly signed), which
    /// trying again does not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            IdentityError::Decode(_)
            | IdentityError::WrongInbox { .. }
            | IdentityError::WrongSequence { .. }
            | IdentityError::BrokenChain { .. }
            | IdentityError::NotCreated
            | IdentityError::InboxIdMismatch
            | IdentityError::BadAccountSignature { .. }
            | IdentityError::BadInstallationSignature { .. }
            | IdentityError::BadKey { .. }
            | IdentityError::InstallationExists(_)
            | IdentityError::UnknownInstallation(_)
            | IdentityError::NoAction => false,
        }
    }
}

/// The identity crate's result: [`IdentityError`] unless said otherwise.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// The inbox id of an account public key: lowercase hex of
/// SHA-256("ferry inbox v1\0" || key).
pub fn inbox_id(account_public_key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(INBOX_ID_CONTEXT);
    h.update(account_public_key);
    hex::encode(h.finalize())
}

/// SHA-256 of an update's encoding: what the next entry's `previous_hash` must be.
pub fn update_hash(update: &IdentityUpdate) -> [u8; 32] {
    Sha256::digest(update.encode_to_vec()).into()
}

/// An Ed25519 key pair: an account key or an installation key. Zeroized on drop.
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    pub fn generate() -> Self {
        KeyPair {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// From the 32-byte secret seed (as kept in a keychain or key file).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        KeyPair {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte secret seed; keep it secret.
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.signing.to_bytes())
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    fn sign(&self, context: &[u8], msg: &[u8]) -> Vec<u8> {
        self.signing
            .sign(&signed_bytes(context, msg))
            .to_bytes()
            .to_vec()
    }
}

fn verify(public: &[u8], context: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    let key = VerifyingKey::from_bytes(public.try_into().ok()?).ok()?;
    let sig = Signature::from_slice(sig).ok()?;
    let mut m = Vec::with_capacity(context.len() + msg.len());
    m.extend_from_slice(context);
    m.extend_from_slice(msg);
    Some(key.verify_strict(&m, &sig).is_ok())
}

/// Why an [`AccountSigner`] did not sign (a keystore that is locked, a user who declined, a
/// hardware token that is gone).
///
/// The message is the signer's own: what happened and, where it knows, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the account key did not sign: {0}")]
pub struct SignerError(
    /// The signer's explanation.
    pub String,
);

impl SignerError {
    /// Whether the same call may succeed if made again later: false. A signer's error is only
    /// a message, so a caller cannot tell a keystore that may unlock later from a user who
    /// declined or a key that is gone; asking again is the app's decision, not a retry.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Signs with an account key (Ed25519), wherever the key is kept: in memory ([`KeyPair`]), in a
/// key file, in the platform's keystore or on a hardware token. Only the public key and
/// signatures cross this trait, so an app never has to hand the secret to the SDK.
pub trait AccountSigner: Send + Sync {
    /// The account's Ed25519 public key (32 bytes); the inbox id derives from it.
    fn public_key(&self) -> [u8; 32];
    /// An Ed25519 signature (64 bytes) of exactly `message`.
    fn sign(&self, message: &[u8]) -> std::result::Result<[u8; 64], SignerError>;
}

impl AccountSigner for KeyPair {
    fn public_key(&self) -> [u8; 32] {
        KeyPair::public_key(self)
    }

    fn sign(&self, message: &[u8]) -> std::result::Result<[u8; 64], SignerError> {
        Ok(self.signing.sign(message).to_bytes())
    }
}

/// `context || msg`, the bytes an identity signature covers.
fn signed_bytes(context: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + msg.len());
    m.extend_from_slice(context);
    m.extend_from_slice(msg);
    m
}

/// Where an installation stands in its inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationState {
    pub added_at: u64,
    pub added_at_ns: i64,
    pub revoked_at: Option<u64>,
}

/// An inbox as its verified log describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxState {
    pub inbox_id: String,
    pub account_public_key: [u8; 32],
    /// Every installation ever added, by public key (its installation id).
    pub installations: BTreeMap<[u8; 32], InstallationState>,
    /// Sequence of the last entry applied.
    pub sequence: u64,
    /// Hash of the last entry applied.
    pub head: [u8; 32],
}

impl InboxState {
    /// Verifies a whole log from its first entry.
    pub fn replay(inbox_id: &str, log: &[IdentityUpdate]) -> Result<InboxState> {
        let (first, rest) = log.split_first().ok_or(IdentityError::NotCreated)?;
        let mut state = Self::create(inbox_id, first)?;
        for u in rest {
            state.apply(u)?;
        }
        Ok(state)
    }

    fn create(inbox: &str, update: &IdentityUpdate) -> Result<InboxState> {
        let u = decode(update)?;
        check_inbox(inbox, &u)?;
        if u.sequence != 0 {
            return Err(IdentityError::WrongSequence {
                expected: 0,
                found: u.sequence,
            });
        }
        let Some(Action::CreateInbox(c)) = &u.action else {
            return Err(IdentityError::NotCreated);
        };
        let key: [u8; 32] = c
            .account_public_key
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::BadKey { sequence: 0 })?;
        if inbox_id(&key) != inbox {
            return Err(IdentityError::InboxIdMismatch);
        }
        if !u.previous_hash.is_empty() {
            return Err(IdentityError::BrokenChain { sequence: 0 });
        }
        if verify(
            &key,
            ACCOUNT_CONTEXT,
            &update.unsigned,
            &update.account_signature,
        ) != Some(true)
        {
            return Err(IdentityError::BadAccountSignature { sequence: 0 });
        }
        Ok(InboxState {
            inbox_id: inbox.to_string(),
            account_public_key: key,
            installations: BTreeMap::new(),
            sequence: 0,
            head: update_hash(update),
        })
    }

    /// Verifies and applies the next entry. On error the state is unchanged.
    pub fn apply(&mut self, update: &IdentityUpdate) -> Result<()> {
        let u = decode(update)?;
        check_inbox(&self.inbox_id, &u)?;
        let expected = self.sequence + 1;
        if u.sequence != expected {
            return Err(IdentityError::WrongSequence {
                expected,
                found: u.sequence,
            });
        }
        if u.previous_hash != self.head {
            return Err(IdentityError::BrokenChain {
                sequence: u.sequence,
            });
        }
        if verify(
            &self.account_public_key,
            ACCOUNT_CONTEXT,
            &update.unsigned,
            &update.account_signature,
        ) != Some(true)
        {
            return Err(IdentityError::BadAccountSignature {
                sequence: u.sequence,
            });
        }
        let key_of = |k: &[u8]| -> Result<[u8; 32]> {
            k.try_into().map_err(|_| IdentityError::BadKey {
                sequence: u.sequence,
            })
        };
        match &u.action {
            Some(Action::AddInstallation(a)) => {
                let key = key_of(&a.installation_public_key)?;
                if verify(
                    &key,
                    INSTALLATION_CONTEXT,
                    &update.unsigned,
                    &update.installation_signature,
                ) != Some(true)
                {
                    return Err(IdentityError::BadInstallationSignature {
                        sequence: u.sequence,
                    });
                }
                if self.installations.contains_key(&key) {
                    return Err(IdentityError::InstallationExists(hex::encode(key)));
                }
                self.installations.insert(
                    key,
                    InstallationState {
                        added_at: u.sequence,
                        added_at_ns: u.created_at_ns,
                        revoked_at: None,
                    },
                );
            }
            Some(Action::RevokeInstallation(r)) => {
                let key = key_of(&r.installation_public_key)?;
                match self.installations.get_mut(&key) {
                    Some(s) if s.revoked_at.is_none() => s.revoked_at = Some(u.sequence),
                    _ => return Err(IdentityError::UnknownInstallation(hex::encode(key))),
                }
            }
            Some(Action::CreateInbox(_)) => {
                return Err(IdentityError::WrongSequence { expected, found: 0 })
            }
            None => return Err(IdentityError::NoAction),
        }
        self.sequence = u.sequence;
        self.head = update_hash(update);
        Ok(())
    }

    /// Whether `installation` is in the inbox now (added and not revoked).
    pub fn is_active(&self, installation: &[u8]) -> bool {
        <&[u8; 32]>::try_from(installation)
            .ok()
            .and_then(|k| self.installations.get(k))
            .is_some_and(|s| s.revoked_at.is_none())
    }

    /// The installations in the inbox now.
    pub fn active_installations(&self) -> Vec<[u8; 32]> {
        self.installations
            .iter()
            .filter(|(_, s)| s.revoked_at.is_none())
            .map(|(k, _)| *k)
            .collect()
    }
}

fn decode(update: &IdentityUpdate) -> Result<UnsignedIdentityUpdate> {
    UnsignedIdentityUpdate::decode(update.unsigned.as_slice())
        .map_err(|e| IdentityError::Decode(e.to_string()))
}

fn check_inbox(expected: &str, u: &UnsignedIdentityUpdate) -> Result<()> {
    if u.inbox_id != expected {
        return Err(IdentityError::WrongInbox {
            expected: expected.to_string(),
            found: u.inbox_id.clone(),
        });
    }
    Ok(())
}

/// Writing updates: what an account key holder does. Signing may fail when the key is kept
/// outside ([`AccountSigner`]).
#[derive(Clone)]
pub struct Account {
    signer: std::sync::Arc<dyn AccountSigner>,
}

impl Account {
    /// An account whose key is in memory.
    pub fn new(key: KeyPair) -> Self {
        Account {
            signer: std::sync::Arc::new(key),
        }
    }

    /// An account whose key is kept by `signer`.
    pub fn with_signer(signer: std::sync::Arc<dyn AccountSigner>) -> Self {
        Account { signer }
    }

    /// The inbox this account key controls.
    pub fn inbox_id(&self) -> String {
        inbox_id(&self.signer.public_key())
    }

    fn account_signature(&self, unsigned: &[u8]) -> std::result::Result<Vec<u8>, SignerError> {
        Ok(self
            .signer
            .sign(&signed_bytes(ACCOUNT_CONTEXT, unsigned))?
            .to_vec())
    }

    /// The first entry of a new inbox's log.
    pub fn create_inbox(&self, now_ns: i64) -> std::result::Result<IdentityUpdate, SignerError> {
        let unsigned = UnsignedIdentityUpdate {
            inbox_id: self.inbox_id(),
            sequence: 0,
            previous_hash: Vec::new(),
            created_at_ns: now_ns,
            action: Some(Action::CreateInbox(CreateInbox {
                account_public_key: self.signer.public_key().to_vec(),
            })),
        }
        .encode_to_vec();
        Ok(IdentityUpdate {
            account_signature: self.account_signature(&unsigned)?,
            unsigned,
            installation_signature: Vec::new(),
        })
    }

    /// Adds `installation` after the log's current head; the installation signs too.
    pub fn add_installation(
        &self,
        state: &InboxState,
        installation: &KeyPair,
        now_ns: i64,
    ) -> std::result::Result<IdentityUpdate, SignerError> {
        let unsigned = self.next(
            state,
            now_ns,
            Action::AddInstallation(AddInstallation {
                installation_public_key: installation.public_key().to_vec(),
            }),
        );
        Ok(IdentityUpdate {
            account_signature: self.account_signature(&unsigned)?,
            installation_signature: installation.sign(INSTALLATION_CONTEXT, &unsigned),
            unsigned,
        })
    }

    /// Revokes the installation with this public key.
    pub fn revoke_installation(
        &self,
        state: &InboxState,
        installation_public_key: &[u8; 32],
        now_ns: i64,
    ) -> std::result::Result<IdentityUpdate, SignerError> {
        let unsigned = self.next(
            state,
            now_ns,
            Action::RevokeInstallation(RevokeInstallation {
                installation_public_key: installation_public_key.to_vec(),
            }),
        );
        Ok(IdentityUpdate {
            account_signature: self.account_signature(&unsigned)?,
            unsigned,
            installation_signature: Vec::new(),
        })
    }

    fn next(&self, state: &InboxState, now_ns: i64, action: Action) -> Vec<u8> {
        UnsignedIdentityUpdate {
            inbox_id: state.inbox_id.clone(),
            sequence: state.sequence + 1,
            previous_hash: state.head.to_vec(),
            created_at_ns: now_ns,
            action: Some(action),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_signer_errors_are_not_retryable() {
        let refused = InboxState::replay("00", &[]).unwrap_err();
        assert_eq!(refused, IdentityError::NotCreated);
        for e in [
            refused,
            IdentityError::Decode("bad".into()),
            IdentityError::WrongSequence {
                expected: 2,
                found: 1,
            },
            IdentityError::BadAccountSignature { sequence: 1 },
            IdentityError::InstallationExists("00".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
        assert!(!SignerError("keystore locked".into()).is_retryable());
    }
}
