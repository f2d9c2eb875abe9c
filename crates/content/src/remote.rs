//! Remote attachments: a file encrypted with a fresh key, uploaded anywhere, and the message
//! that says where it is and how to open it.
//!
//! As XMTP does it: the plaintext is the attachment's [`EncodedContent`] protobuf (so the
//! file name and MIME type travel encrypted too); a 32-byte random secret and a 32-byte random
//! salt give the key (HKDF-SHA256, no info); AES-256-GCM with a 12-byte random nonce, the tag
//! after the ciphertext; the digest is the lowercase hex SHA-256 of those encrypted bytes. A
//! download is checked against the digest **before** it is decrypted.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codecs::{Attachment, AttachmentCodec, RemoteAttachment};
use crate::{ContentCodec, ContentError, EncodedContent};

/// An attachment encrypted for upload, and what the message about it needs besides its URL.
pub struct Sealed {
    /// The bytes to upload.
    pub payload: Vec<u8>,
    /// The message's content once the URL is known: see [`Sealed::at`].
    secret: Zeroizing<Vec<u8>>,
    salt: Vec<u8>,
    nonce: Vec<u8>,
    digest: String,
    filename: Option<String>,
}

impl Sealed {
    /// The remote attachment to send, for the payload uploaded at `url`.
    pub fn at(&self, url: &str) -> Result<RemoteAttachment, ContentError> {
        check_url(url)?;
        Ok(RemoteAttachment {
            url: url.to_string(),
            content_digest: self.digest.clone(),
            secret: self.secret.clone(),
            salt: self.salt.clone(),
            nonce: self.nonce.clone(),
            scheme: url.split(':').next().unwrap_or("https").to_string(),
            content_length: Some(self.payload.len() as u64),
            filename: self.filename.clone(),
        })
    }

    /// The lowercase hex SHA-256 of [`Sealed::payload`].
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

fn key(secret: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, ContentError> {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), secret)
        .expand(&[], key.as_mut())
        .map_err(|_| ContentError::Invalid("remote attachment key".into()))?;
    Ok(key)
}

/// Lowercase hex SHA-256.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Encrypts an attachment (of any size) for upload.
pub fn seal(attachment: &Attachment) -> Result<Sealed, ContentError> {
    let mut plain = EncodedContent::new(AttachmentCodec::content_type(), Vec::new());
    plain
        .parameters
        .insert("mimeType".into(), attachment.mime_type.clone());
    if let Some(name) = &attachment.filename {
        plain.parameters.insert("filename".into(), name.clone());
    }
    plain.content = attachment.data.clone();
    let plaintext = Zeroizing::new(plain.to_protobuf());

    let mut rng = rand::rngs::OsRng;
    let mut secret = Zeroizing::new(vec![0u8; 32]);
    rng.fill_bytes(&mut secret);
    let mut salt = vec![0u8; 32];
    rng.fill_bytes(&mut salt);
    let mut nonce = vec![0u8; 12];
    rng.fill_bytes(&mut nonce);
    let key = key(&secret, &salt)?;
    let payload = Aes256Gcm::new_from_slice(key.as_ref())
        .expect("32-byte key")
        .encrypt(Nonce::from_slice(&nonce), plaintext.as_slice())
        .map_err(|_| ContentError::Invalid("remote attachment encryption".into()))?;
    Ok(Sealed {
        digest: digest(&payload),
        payload,
        secret,
        salt,
        nonce,
        filename: attachment.filename.clone(),
    })
}

/// Opens downloaded bytes: refuses them unless their digest is the message's
/// ([`ContentError::DigestMismatch`]), then decrypts ([`ContentError::Decrypt`] when the key
/// does not open them) and decodes the attachment.
pub fn open(remote: &RemoteAttachment, payload: &[u8]) -> Result<Attachment, ContentError> {
    open_owned(remote, payload.to_vec())
}

/// [`open`], decrypting the payload where it lies: the file is in memory once, plus the
/// attachment's bytes (XMTP's format is one AES-GCM message over the whole file, so it cannot
/// be authenticated before all of it is read).
pub fn open_owned(remote: &RemoteAttachment, payload: Vec<u8>) -> Result<Attachment, ContentError> {
    let got = digest(&payload);
    if got != remote.content_digest.to_ascii_lowercase() {
        return Err(ContentError::DigestMismatch {
            expected: remote.content_digest.clone(),
            got,
        });
    }
    if remote.secret.len() != 32 || remote.salt.len() != 32 || remote.nonce.len() != 12 {
        return Err(ContentError::Invalid(
            "remote attachment key material has the wrong length".into(),
        ));
    }
    let key = key(&remote.secret, &remote.salt)?;
    let mut plain = Zeroizing::new(payload);
    Aes256Gcm::new_from_slice(key.as_ref())
        .expect("32-byte key")
        .decrypt_in_place(Nonce::from_slice(&remote.nonce), b"", &mut *plain)
        .map_err(|_| ContentError::Decrypt)?;
    AttachmentCodec::decode(&EncodedContent::from_protobuf(&plain)?)
}

/// Ferry's URL rule for remote attachments: `https://`, or `http://` to a loopback host
/// (tests and a history server on the same machine).
pub fn check_url(url: &str) -> Result<(), ContentError> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host
            .rsplit_once(':')
            .filter(|(h, port)| !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Ok(());
        }
    }
    Err(ContentError::Invalid(format!(
        "remote attachment URL must be https (or http on loopback): {url:?}"
    )))
}
