//! An installation's MLS identity: its signature key and credential.

use std::fmt;

use openmls::prelude::{BasicCredential, CredentialWithKey};
use openmls_basic_credential::{SignatureKeyPair, StorageId};
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::signatures::Signer as _;
use openmls_traits::storage::StorageProvider as _;
use openmls_traits::types::SignatureScheme;
use openmls_traits::OpenMlsProvider;

use crate::wire::hex;
use crate::{mls_err, Error, Provider, Result, CIPHERSUITE};

/// An installation's MLS identity: its Ed25519 signature key pair (kept in openmls' storage,
/// `openmls_signature_keys`, secret key in clear like the rest of the file's MLS secrets) and a
/// basic credential whose identity bytes are the installation id.
pub struct Identity {
    installation_id: Vec<u8>,
    pub(crate) keys: SignatureKeyPair,
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
