//! Test-only helpers: a small libxmtp archive *encoder* written from FORMAT.md (Ferry itself never
//! writes this format), after crates/xmtp-archive/tests/common. It seals records with RustCrypto's
//! aes-gcm and compresses with zstd, as libxmtp does.
#![allow(dead_code)]

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use ferry_proto::Message as _;
use ferry_xmtp_archive::proto::{self, backup_element::Element, BackupElement};

pub const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/xmtp/archive-legacy.xmtp"
);

pub fn vector() -> Vec<u8> {
    std::fs::read(VECTOR).expect("the libxmtp vector is readable")
}

// ---- the archive --------------------------------------------------------------------------

/// N0 + i over 12 little-endian bytes, wrapping at 2^96.
pub fn nonce_add(n0: [u8; 12], i: u64) -> [u8; 12] {
    let add = i.to_le_bytes();
    let mut out = [0u8; 12];
    let mut carry = 0u16;
    for j in 0..12 {
        let sum = u16::from(n0[j]) + u16::from(*add.get(j).unwrap_or(&0)) + carry;
        out[j] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// A libxmtp archive in the current nonce scheme: record i sealed with N0 + i.
pub fn archive(key: &[u8; 32], n0: [u8; 12], elements: &[BackupElement]) -> Vec<u8> {
    let aes = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let mut payload = Vec::new();
    for (i, e) in elements.iter().enumerate() {
        let nonce = nonce_add(n0, i as u64);
        let ct = aes
            .encrypt(Nonce::from_slice(&nonce), e.encode_to_vec().as_slice())
            .expect("seal");
        payload.extend_from_slice(&(ct.len() as u32).to_le_bytes());
        payload.extend(ct);
    }
    let mut out = 0u16.to_le_bytes().to_vec();
    out.extend_from_slice(&n0);
    out.extend(zstd::encode_all(payload.as_slice(), 3).expect("zstd"));
    out
}

pub fn element(e: Element) -> BackupElement {
    BackupElement { element: Some(e) }
}

pub fn metadata(
    elements: &[i32],
    exported_at_ns: i64,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
) -> BackupElement {
    element(Element::Metadata(proto::BackupMetadataSave {
        elements: elements.to_vec(),
        exported_at_ns,
        start_ns,
        end_ns,
    }))
}
