//! Signed archives (format 1.1): the installation that makes an archive signs its header and a
//! running SHA-256 of every chunk before the final one; the signature is alone in the final
//! chunk, so writing stays one streaming pass. Byte layout: docs/archive-format.md §15.

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use ferry_proto::archive::{archive_element, ArchiveElement};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::header::HEADER_LEN;

/// What the signing input starts with (ASCII, no terminator).
pub const SIGNATURE_CONTEXT: &[u8] = b"ferry-archive v1 signature";
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Signs archives for the installation that makes them. The caller keeps its key: the writer
/// only asks for one signature, over the signing input of docs/archive-format.md §15.2, when the
/// archive is finished.
pub trait ArchiveSigner: Send + Sync {
    /// The inbox the installation belongs to, written into the metadata and signed.
    fn inbox_id(&self) -> &str;
    /// The installation id: its Ed25519 public key.
    fn installation_id(&self) -> [u8; 32];
    /// An Ed25519 (RFC 8032) signature over `message` by the installation's key.
    fn sign(&self, message: &[u8]) -> std::result::Result<[u8; SIGNATURE_LEN], String>;
}

impl<T: ArchiveSigner + ?Sized> ArchiveSigner for Arc<T> {
    fn inbox_id(&self) -> &str {
        (**self).inbox_id()
    }
    fn installation_id(&self) -> [u8; 32] {
        (**self).installation_id()
    }
    fn sign(&self, message: &[u8]) -> std::result::Result<[u8; SIGNATURE_LEN], String> {
        (**self).sign(message)
    }
}

/// An [`ArchiveSigner`] over an Ed25519 key held in memory (zeroized on drop).
pub struct Ed25519Signer {
    inbox_id: String,
    key: SigningKey,
}

impl Ed25519Signer {
    /// The signer of installation `seed` (its 32-byte secret seed) of `inbox_id`.
    pub fn from_seed(inbox_id: impl Into<String>, seed: &[u8; 32]) -> Self {
        Ed25519Signer {
            inbox_id: inbox_id.into(),
            key: SigningKey::from_bytes(seed),
        }
    }
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("inbox_id", &self.inbox_id)
            .field("installation_id", &self.installation_id())
            .finish_non_exhaustive()
    }
}

impl ArchiveSigner for Ed25519Signer {
    fn inbox_id(&self) -> &str {
        &self.inbox_id
    }
    fn installation_id(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
    fn sign(&self, message: &[u8]) -> std::result::Result<[u8; SIGNATURE_LEN], String> {
        Ok(self.key.sign(message).to_bytes())
    }
}

/// Who signed an archive, as its metadata says (trusted once [`crate::ArchiveReader`] has
/// verified the signature at the end of the archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    pub inbox_id: String,
    /// The installation id: its Ed25519 public key.
    pub installation_id: [u8; 32],
}

/// The running hash of every chunk before the final one: each chunk's 4-byte length prefix and
/// its ciphertext, in file order (the file's bytes from the end of the header to the start of
/// the final chunk).
#[derive(Clone, Default)]
pub(crate) struct ChunkHash(Sha256);

impl ChunkHash {
    pub(crate) fn chunk(&mut self, ciphertext: &[u8]) {
        self.0.update((ciphertext.len() as u32).to_le_bytes());
        self.0.update(ciphertext);
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The bytes an archive's signature covers (docs/archive-format.md §15.2).
pub(crate) fn signing_input(
    header: &[u8; HEADER_LEN],
    signer: &SignedBy,
    chunks: ChunkHash,
) -> Vec<u8> {
    let inbox = signer.inbox_id.as_bytes();
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + HEADER_LEN + 4 + inbox.len() + 64);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(header);
    m.extend_from_slice(&(inbox.len() as u32).to_le_bytes());
    m.extend_from_slice(inbox);
    m.extend_from_slice(&signer.installation_id);
    m.extend_from_slice(&chunks.finish());
    m
}

/// Signs for the writer: the signature frame that makes up the final chunk's plaintext. The
/// signature is checked against the signer's installation id before it is written, so a signer
/// whose key is not the one it names fails here, not at every reader.
pub(crate) fn sign_frame(signer: &dyn ArchiveSigner, input: &[u8]) -> Result<Vec<u8>> {
    let sig = signer.sign(input).map_err(Error::Signer)?;
    if verify(&signer.installation_id(), input, &sig).is_err() {
        return Err(Error::Signer(
            "its signature does not verify under the installation id it names".into(),
        ));
    }
    let element = ArchiveElement {
        element: Some(archive_element::Element::Signature(
            ferry_proto::archive::Signature {
                signature: sig.to_vec(),
            },
        )),
    };
    let mut frame = Vec::with_capacity(element.encoded_len() + 1);
    prost::encoding::encode_varint(element.encoded_len() as u64, &mut frame);
    element.encode(&mut frame).expect("Vec grows");
    Ok(frame)
}

/// Checks the final chunk's plaintext of a signed archive: exactly one frame, a signature
/// element, whose signature verifies over `input`.
pub(crate) fn check_final_chunk(plain: &[u8], signer: &SignedBy, input: &[u8]) -> Result<()> {
    let bad = |why: &str| Error::BadSignature(why.to_string());
    let mut rest = plain;
    let len = prost::encoding::decode_varint(&mut rest)
        .map_err(|_| bad("the final chunk holds no signature"))?;
    if len != rest.len() as u64 {
        return Err(bad("the final chunk holds more or less than one signature"));
    }
    let sig = match ArchiveElement::decode(rest) {
        Ok(ArchiveElement {
            element: Some(archive_element::Element::Signature(s)),
        }) => s.signature,
        _ => return Err(bad("the final chunk holds no signature")),
    };
    let sig: [u8; SIGNATURE_LEN] = sig
        .try_into()
        .map_err(|_| bad("the signature is not 64 bytes"))?;
    verify(&signer.installation_id, input, &sig)
        .map_err(|_| bad("it was not made by the installation the archive names, or the archive was changed after signing"))
}

fn verify(
    installation_id: &[u8; 32],
    input: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> std::result::Result<(), ()> {
    let key = VerifyingKey::from_bytes(installation_id).map_err(|_| ())?;
    key.verify_strict(input, &Signature::from_bytes(sig))
        .map_err(|_| ())
}
