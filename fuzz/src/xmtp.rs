//! A libxmtp archive encoder (format version 0) written from
//! `tests/vectors/xmtp/FORMAT.md`, for the `xmtp_records` target and the seeds. Ferry itself
//! never writes this format.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

/// N0 + i over 12 little-endian bytes, wrapping at 2^96.
pub fn nonce_add(n0: [u8; 12], i: u64) -> [u8; 12] {
    let mut x = [0u8; 16];
    x[..12].copy_from_slice(&n0);
    let sum = u128::from_le_bytes(x).wrapping_add(u128::from(i)) & ((1u128 << 96) - 1);
    let mut out = [0u8; 12];
    out.copy_from_slice(&sum.to_le_bytes()[..12]);
    out
}

/// `u32 LE length || AES-256-GCM(plaintext) || tag` under `nonce`, empty associated data.
pub fn record(key: &[u8; 32], nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let ct = Aes256Gcm::new_from_slice(key)
        .expect("32-byte key")
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .expect("seal");
    let mut out = (ct.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&ct);
    out
}

/// How the zstd frame is written (libxmtp: default level, no checksum, content size unknown).
#[derive(Debug, Clone, Copy)]
pub struct Zstd {
    pub level: i32,
    pub checksum: bool,
    pub content_size: bool,
}

impl Default for Zstd {
    fn default() -> Self {
        Zstd {
            level: 3,
            checksum: false,
            content_size: false,
        }
    }
}

/// `u16 LE version || N0 || zstd(records)`.
pub fn file(version: u16, n0: [u8; 12], records: &[u8], z: Zstd) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    out.extend_from_slice(&n0);
    let mut enc = zstd::stream::write::Encoder::new(out, z.level).expect("zstd");
    enc.include_checksum(z.checksum).expect("zstd");
    if z.content_size {
        enc.include_contentsize(true).expect("zstd");
        enc.set_pledged_src_size(Some(records.len() as u64))
            .expect("zstd");
    } else {
        enc.include_contentsize(false).expect("zstd");
    }
    std::io::Write::write_all(&mut enc, records).expect("zstd");
    enc.finish().expect("zstd")
}
