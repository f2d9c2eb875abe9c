//! Signed requests to the node: how an installation proves that a call is its own.
//!
//! Every call a client makes to the node carries four gRPC metadata entries: the installation
//! id (its Ed25519 public key), a timestamp, a random nonce and an Ed25519 signature by the
//! installation key over [`signing_payload`]: a context string, the gRPC method, the timestamp,
//! the nonce and the SHA-256 of the request's protobuf encoding. The node checks the signature,
//! that the installation is active in its inbox's identity log, that the timestamp is within
//! [`MAX_CLOCK_SKEW_NS`] of its own clock, and that the (installation, nonce) pair is new; a
//! copied request is therefore refused, and a request cannot be moved to another method or
//! have its body changed.
//!
//! The installation key is also the installation's MLS signature key; the context string keeps
//! these signatures apart from MLS's own and from identity updates'.

use sha2::{Digest, Sha256};

use crate::verify;

/// Metadata key of the signing installation's id (32 bytes, binary).
pub const HEADER_INSTALLATION: &str = "ferry-installation-bin";
/// Metadata key of the request's timestamp (nanoseconds since the Unix epoch, decimal).
pub const HEADER_TIMESTAMP: &str = "ferry-timestamp";
/// Metadata key of the request's nonce ([`NONCE_LEN`] random bytes, binary).
pub const HEADER_NONCE: &str = "ferry-nonce-bin";
/// Metadata key of the signature (64 bytes, binary).
pub const HEADER_SIGNATURE: &str = "ferry-signature-bin";

/// Metadata key, on a `RESOURCE_EXHAUSTED` answer, of how many milliseconds the caller should
/// wait before calling again (decimal).
pub const HEADER_RETRY_AFTER_MS: &str = "retry-after-ms";

/// The node's message (with `PERMISSION_DENIED`) to a revoked installation.
pub const REVOKED: &str = "the installation is revoked";

/// Bytes of a request nonce.
pub const NONCE_LEN: usize = 16;
/// How far a request's timestamp may be from the node's clock, either way (5 minutes).
pub const MAX_CLOCK_SKEW_NS: i64 = 300 * 1_000_000_000;

const CONTEXT: &[u8] = b"ferry node request v1\0";
/// The gRPC service whose methods are signed.
const SERVICE: &str = "ferry.node.v1.Node";

/// The bytes an installation signs for one call: `method` is the method's name in the node's
/// service (`SendGroupMessages`), `body` the request's protobuf encoding.
pub fn signing_payload(
    method: &str,
    timestamp_ns: i64,
    nonce: &[u8; NONCE_LEN],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SERVICE.len() + method.len() + 2 + 8 + NONCE_LEN + 32);
    out.extend_from_slice(SERVICE.as_bytes());
    out.push(b'/');
    out.extend_from_slice(method.as_bytes());
    out.push(0);
    out.extend_from_slice(&timestamp_ns.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&Sha256::digest(body));
    out
}

/// The message an installation key signs for `payload` (the context string, then the payload):
/// what [`crate::KeyPair`] or an MLS signature key pair signs with plain Ed25519.
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    crate::signed_bytes(CONTEXT, payload)
}

/// Whether `signature` is `installation`'s signature over [`signed_message`]`(payload)`
/// (strict Ed25519 verification).
pub fn verify_request(installation: &[u8], payload: &[u8], signature: &[u8]) -> bool {
    verify(installation, CONTEXT, payload, signature) == Some(true)
}

impl crate::KeyPair {
    /// Signs a request payload ([`signing_payload`]) for the node.
    pub fn sign_request(&self, payload: &[u8]) -> Vec<u8> {
        self.sign(CONTEXT, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

    #[test]
    fn a_signature_covers_method_time_nonce_and_body() {
        let key = KeyPair::generate();
        let nonce = [7u8; NONCE_LEN];
        let payload = signing_payload("/m/A", 5, &nonce, b"body");
        let sig = key.sign_request(&payload);
        assert!(verify_request(&key.public_key(), &payload, &sig));
        for other in [
            signing_payload("/m/B", 5, &nonce, b"body"),
            signing_payload("/m/A", 6, &nonce, b"body"),
            signing_payload("/m/A", 5, &[8u8; NONCE_LEN], b"body"),
            signing_payload("/m/A", 5, &nonce, b"bodY"),
        ] {
            assert!(!verify_request(&key.public_key(), &other, &sig));
        }
        assert!(!verify_request(
            &KeyPair::generate().public_key(),
            &payload,
            &sig
        ));
        assert!(!verify_request(&key.public_key(), &payload, &sig[..63]));
    }

    #[test]
    fn signed_message_is_what_a_plain_ed25519_signer_signs() {
        use ed25519_dalek::{Signer, SigningKey};
        let seed = [3u8; 32];
        let payload = signing_payload("/m/A", 1, &[0; NONCE_LEN], b"");
        let sig = SigningKey::from_bytes(&seed).sign(&signed_message(&payload));
        let public = KeyPair::from_seed(&seed).public_key();
        assert!(verify_request(&public, &payload, &sig.to_bytes()));
    }
}
