//! Archives taken apart and sealed again by someone who holds the key: every chunk's plaintext,
//! changeable, sealed again under the same header (or a new one). This is what an attacker who
//! knows an archive's key can do anyway (docs/archive-format.md says how), so it is offered for
//! tools and for tests that play that attacker: the chunks authenticate, and only a signed
//! archive's signature (§15) can tell that the archive is no longer the one its maker wrote.

use crate::chunk::ChunkCipher;
use crate::error::{Error, Result};
use crate::header::{read_header, Header};
use crate::key::{ArchiveKey, Argon2Params, DerivedKeys};

/// An archive opened chunk by chunk (not frame by frame).
pub struct RawArchive {
    header: Header,
    keys: DerivedKeys,
    /// Each chunk's plaintext (the zstd frame's content), in file order; [`RawArchive::seal`]
    /// seals the last one as the final chunk.
    pub chunks: Vec<Vec<u8>>,
}

impl RawArchive {
    /// Authenticates the header and every chunk of `bytes` with `key` and decompresses them.
    pub fn open(bytes: &[u8], key: &ArchiveKey) -> Result<Self> {
        let mut rest = bytes;
        let header = read_header(&mut rest)?;
        let keys = header.unlock(key)?;
        let cipher = ChunkCipher::new(&keys);
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let index = chunks.len() as u64;
            let (len, tail) = rest.split_first_chunk::<4>().ok_or(Error::Truncated)?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(Error::Truncated);
            }
            let mut ct = tail[..len].to_vec();
            rest = &tail[len..];
            if !cipher.open(index, rest.is_empty(), &mut ct) {
                return Err(Error::ChunkCorrupted { index });
            }
            let plain = zstd::bulk::decompress(&ct, header.segment_size as usize)
                .map_err(|e| Error::Malformed(format!("chunk {index}: {e}")))?;
            chunks.push(plain);
        }
        Ok(RawArchive {
            header,
            keys,
            chunks,
        })
    }

    /// The header the chunks are sealed under.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Replaces the header with a new one for the same secret, with this salt (the same salt
    /// keeps the keys, so chunks seal to the same bytes), minor version and segment size, and
    /// the same Argon2 parameters; the key check, MAC and checksum are made anew, so the header
    /// authenticates.
    pub fn new_header(
        &mut self,
        key: &ArchiveKey,
        salt: [u8; 32],
        minor: u8,
        segment_size: u32,
    ) -> Result<()> {
        let kdf = self.header.kdf().unwrap_or(Argon2Params::DEFAULT);
        let (header, keys) = Header::seal_with_salt(key, segment_size, kdf, salt, minor)?;
        self.header = header;
        self.keys = keys;
        Ok(())
    }

    /// The archive's bytes: the header, then every chunk compressed and sealed at its position,
    /// the last one as the final chunk.
    pub fn seal(&self) -> Result<Vec<u8>> {
        let cipher = ChunkCipher::new(&self.keys);
        let mut out = self.header.as_bytes().to_vec();
        for (i, plain) in self.chunks.iter().enumerate() {
            let mut c = zstd::bulk::compress(plain, 3)
                .map_err(|e| Error::Malformed(format!("zstd: {e}")))?;
            cipher.seal(i as u64, i + 1 == self.chunks.len(), &mut c)?;
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}
