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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;
    use crate::key::{ArchiveKey, Argon2Params};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The worked example of docs/archive-format.md §15.4, computed there by an independent
    /// script (Python `hashlib`, `hmac`, `zlib` and the `cryptography` package's Ed25519), not
    /// taken from Ferry's output.
    #[test]
    fn signature_matches_the_spec_worked_example() {
        let key_bytes: Vec<u8> = (0u8..32).collect();
        let key = ArchiveKey::from_bytes(&key_bytes).unwrap();
        let salt: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
        let (h, _) = Header::seal_with_salt(&key, 1 << 20, Argon2Params::DEFAULT, salt, 1).unwrap();
        assert_eq!(h.as_bytes()[9], 1);
        assert_eq!(
            hex(&h.as_bytes()[76..108]),
            "78d616cd1cb4b44947706e92528fed96ffe2480208c40f82e246a62b5a99c79f"
        );
        assert_eq!(hex(&h.as_bytes()[108..112]), "05257805");
        let seed: [u8; 32] = std::array::from_fn(|i| 0x40 + i as u8);
        let signer = Ed25519Signer::from_seed("inbox-example", &seed);
        assert_eq!(
            hex(&signer.installation_id()),
            "2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d"
        );
        let mut chunks = ChunkHash::default();
        chunks.chunk(&(0u8..0x14).collect::<Vec<_>>());
        chunks.chunk(&[0xff; 10]);
        assert_eq!(
            hex(&chunks.clone().finish()),
            "c0e11cb6cdc799d31fc02c55958d40fa55241633f47681f589b7d544a4c3ef82"
        );
        let who = SignedBy {
            inbox_id: "inbox-example".into(),
            installation_id: signer.installation_id(),
        };
        let input = signing_input(h.as_bytes(), &who, chunks);
        assert_eq!(input.len(), 219);
        assert_eq!(
            hex(&Sha256::digest(&input)),
            "17d578ef0f83bd92efaacc4aef17ff0ac8cfee3d3da2d1e9ff012da66bbba654"
        );
        assert_eq!(
            hex(&signer.sign(&input).unwrap()),
            "1c0acded9c928709e21e2e94aa24c76b09d11f62838b4576b0e48338d8169a05\
             c7e108d1041fd08ba8f12f85e598daa1948fa614a54392dcff67ac21c4d3110c"
        );
        // And the final chunk's plaintext: the frame length 68, then ArchiveElement field 5
        // (a Signature of 66 bytes), whose field 1 holds the 64-byte signature.
        let frame = sign_frame(&signer, &input).unwrap();
        assert_eq!(hex(&frame[..5]), "442a420a40");
        assert_eq!(frame.len(), 69);
        check_final_chunk(&frame, &who, &input).unwrap();
    }
}
