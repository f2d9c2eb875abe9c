//! Chunk sealing: zstd, then AES-256-GCM under the STREAM construction (big-endian 32-bit
//! counter and a last-chunk flag in the nonce), from RustCrypto's `aead::stream`.

use aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::{Aes256Gcm, KeyInit};

use crate::error::{Error, Result};
use crate::key::DerivedKeys;

pub(crate) const TAG_LEN: usize = 16;

pub(crate) struct ChunkCipher {
    stream: StreamBE32<Aes256Gcm>,
}

impl ChunkCipher {
    pub(crate) fn new(keys: &DerivedKeys) -> Self {
        let aead = Aes256Gcm::new_from_slice(&keys.payload_key[..]).expect("32-byte key");
        ChunkCipher {
            stream: StreamBE32::from_aead(aead, (&keys.nonce_prefix).into()),
        }
    }

    pub(crate) fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<()> {
        let pos = u32::try_from(index).map_err(|_| Error::TooManyChunks)?;
        self.stream
            .encrypt_in_place(pos, last, &[], buf)
            .map_err(|_| Error::TooManyChunks)
    }

    /// Opens `buf` in place; false when the tag does not verify for this position and flag.
    pub(crate) fn open(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> bool {
        let Ok(pos) = u32::try_from(index) else {
            return false;
        };
        self.stream.decrypt_in_place(pos, last, &[], buf).is_ok()
    }
}

/// The largest ciphertext a chunk of `segment_size` plaintext bytes can have.
pub(crate) fn max_chunk_len(segment_size: u32) -> usize {
    zstd::zstd_safe::compress_bound(segment_size as usize) + TAG_LEN
}
