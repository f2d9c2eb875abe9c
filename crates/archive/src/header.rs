//! The 112-byte plaintext header. Layout in docs/archive-format.md.

use std::io::Read;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{Error, KeyKindName, Result};
use crate::key::{ArchiveKey, Argon2Params, DerivedKeys};

/// The archive's magic bytes. The high first byte and the CR LF catch text-mode transfers.
pub const MAGIC: [u8; 8] = *b"\x89FERRY\r\n";
/// Format major version this crate writes and reads.
pub const FORMAT_MAJOR: u8 = 1;
/// The newest format minor version this crate writes: 1, signed archives. An archive written
/// without a signer is written as 1.0, exactly as before signatures existed.
pub const FORMAT_MINOR: u8 = 1;
/// Archives of this minor version and later are signed (docs/archive-format.md §15).
pub const SIGNED_MINOR: u8 = 1;
/// Length of the header in bytes.
pub const HEADER_LEN: usize = 112;
/// Smallest and largest segment (plaintext bytes per chunk) a reader accepts.
pub const MIN_SEGMENT: u32 = 4 * 1024;
pub const MAX_SEGMENT: u32 = 16 * 1024 * 1024;

const KEY_KIND_RAW: u8 = 1;
const KEY_KIND_PASSPHRASE: u8 = 2;
const COMPRESSION_ZSTD: u8 = 1;

/// Which secret an archive needs, readable without any secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A raw 32-byte key.
    Raw,
    /// A passphrase, stretched with Argon2id using these parameters.
    Passphrase(Argon2Params),
}

/// The parsed header: everything in it is readable without the key (see [`read_header`]); none
/// of it is trusted until `Header::unlock` has checked the key and the MAC.
#[derive(Debug, Clone)]
pub struct Header {
    pub major: u8,
    pub minor: u8,
    pub key_kind: KeyKind,
    pub segment_size: u32,
    pub salt: [u8; 32],
    key_check: [u8; 16],
    mac: [u8; 32],
    bytes: [u8; HEADER_LEN],
}

impl Header {
    /// A new header with a fresh random salt: minor version [`SIGNED_MINOR`] when `signed`,
    /// else 0.
    pub(crate) fn seal(
        key: &ArchiveKey,
        segment_size: u32,
        kdf: Argon2Params,
        signed: bool,
    ) -> Result<(Header, DerivedKeys)> {
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        let minor = if signed { SIGNED_MINOR } else { 0 };
        Self::seal_with_salt(key, segment_size, kdf, salt, minor)
    }

    pub(crate) fn seal_with_salt(
        key: &ArchiveKey,
        segment_size: u32,
        kdf: Argon2Params,
        salt: [u8; 32],
        minor: u8,
    ) -> Result<(Header, DerivedKeys)> {
        let params = match key {
            ArchiveKey::Raw(_) => None,
            ArchiveKey::Passphrase(_) => Some(kdf),
        };
        let keys = DerivedKeys::derive(&*key.ikm(&salt, params)?, &salt);
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8] = FORMAT_MAJOR;
        b[9] = minor;
        b[10] = if params.is_some() {
            KEY_KIND_PASSPHRASE
        } else {
            KEY_KIND_RAW
        };
        b[11] = COMPRESSION_ZSTD;
        b[12..16].copy_from_slice(&segment_size.to_le_bytes());
        if let Some(p) = params {
            b[16..20].copy_from_slice(&p.m_cost_kib.to_le_bytes());
            b[20..24].copy_from_slice(&p.t_cost.to_le_bytes());
            b[24..28].copy_from_slice(&p.p_cost.to_le_bytes());
        }
        b[28..60].copy_from_slice(&salt);
        b[60..76].copy_from_slice(&keys.key_check);
        let mac = header_mac(&keys, &b[..76]);
        b[76..108].copy_from_slice(&mac);
        let crc = crc32fast::hash(&b[..108]);
        b[108..112].copy_from_slice(&crc.to_le_bytes());
        let header = Header::parse(&b)?;
        Ok((header, keys))
    }

    /// The header's bytes as written to the file.
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.bytes
    }

    /// Whether the archive is signed (minor version 1 or later; docs/archive-format.md §15).
    pub fn is_signed(&self) -> bool {
        self.minor >= SIGNED_MINOR
    }

    /// The Argon2 parameters of a passphrase archive (`None` for a raw key).
    pub(crate) fn kdf(&self) -> Option<Argon2Params> {
        match self.key_kind {
            KeyKind::Raw => None,
            KeyKind::Passphrase(p) => Some(p),
        }
    }

    fn parse(b: &[u8; HEADER_LEN]) -> Result<Header> {
        if crc32fast::hash(&b[..108]).to_le_bytes() != b[108..112] {
            return Err(Error::HeaderCorrupted);
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let key_kind = match b[10] {
            KEY_KIND_RAW => {
                if b[16..28].iter().any(|&x| x != 0) {
                    return Err(Error::HeaderMalformed(
                        "raw-key archive with KDF parameters",
                    ));
                }
                KeyKind::Raw
            }
            KEY_KIND_PASSPHRASE => {
                let p = Argon2Params {
                    m_cost_kib: u32_at(16),
                    t_cost: u32_at(20),
                    p_cost: u32_at(24),
                };
                p.check_bounds()?;
                KeyKind::Passphrase(p)
            }
            _ => return Err(Error::HeaderMalformed("unknown key kind")),
        };
        if b[11] != COMPRESSION_ZSTD {
            return Err(Error::HeaderMalformed("unknown compression"));
        }
        let segment_size = u32_at(12);
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&segment_size) {
            return Err(Error::HeaderMalformed("segment size out of range"));
        }
        Ok(Header {
            major: b[8],
            minor: b[9],
            key_kind,
            segment_size,
            salt: b[28..60].try_into().expect("32 bytes"),
            key_check: b[60..76].try_into().expect("16 bytes"),
            mac: b[76..108].try_into().expect("32 bytes"),
            bytes: *b,
        })
    }

    /// Checks `key` against the header: the kind of secret, the key check (a wrong key is
    /// reported as [`Error::WrongKey`]), then the header MAC ([`Error::HeaderTampered`]).
    pub(crate) fn unlock(&self, key: &ArchiveKey) -> Result<DerivedKeys> {
        let params = self.kdf();
        let needed = match self.key_kind {
            KeyKind::Raw => KeyKindName::Key,
            KeyKind::Passphrase(_) => KeyKindName::Passphrase,
        };
        if key.kind_name() != needed {
            return Err(Error::KeyKindMismatch {
                needed,
                given: key.kind_name(),
            });
        }
        let keys = DerivedKeys::derive(&*key.ikm(&self.salt, params)?, &self.salt);
        if !bool::from(keys.key_check.ct_eq(&self.key_check)) {
            return Err(Error::WrongKey(needed));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&keys.header_mac_key[..]).expect("any key");
        mac.update(&self.bytes[..76]);
        mac.verify_slice(&self.mac)
            .map_err(|_| Error::HeaderTampered)?;
        Ok(keys)
    }
}

fn header_mac(keys: &DerivedKeys, bytes: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&keys.header_mac_key[..]).expect("any key");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// Reads and parses the header without any key. A newer major version is refused after the
/// first ten bytes, before anything else is interpreted.
pub fn read_header<R: Read>(r: &mut R) -> Result<Header> {
    let mut b = [0u8; HEADER_LEN];
    let n = read_full(r, &mut b[..10])?;
    if n < 10 {
        return Err(if n > 0 && b[..n.min(8)] == MAGIC[..n.min(8)] {
            Error::Truncated
        } else {
            Error::NotAnArchive
        });
    }
    if b[..8] != MAGIC {
        return Err(Error::NotAnArchive);
    }
    if b[8] != FORMAT_MAJOR {
        return Err(Error::UnsupportedVersion {
            major: b[8],
            minor: b[9],
        });
    }
    if read_full(r, &mut b[10..])? < HEADER_LEN - 10 {
        return Err(Error::Truncated);
    }
    Header::parse(&b)
}

/// Reads until `buf` is full or the reader is at its end; returns how many bytes were read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The worked example of docs/archive-format.md §14, computed there by an independent
    /// script: this writer must produce exactly those bytes.
    #[test]
    fn header_matches_the_spec_worked_example() {
        let key_bytes: Vec<u8> = (0u8..32).collect();
        let salt: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
        let key = ArchiveKey::from_bytes(&key_bytes).unwrap();
        let (h, keys) =
            Header::seal_with_salt(&key, 1 << 20, Argon2Params::DEFAULT, salt, 0).unwrap();
        let b = h.as_bytes();
        // magic, major 1, minor 0, raw key, zstd, S = 1 MiB, Argon2 fields zero, salt.
        let mut want = "8946455252590d0a".to_string() + "0100" + "0101" + "00001000";
        want += &"00".repeat(12);
        want += &hex(&salt);
        assert_eq!(hex(&b[0..60]), want);
        assert_eq!(hex(&b[60..76]), "3bff4a7c6c13ecbcdf02b4b382ab6f0d");
        assert_eq!(
            hex(&b[76..108]),
            "3668f860f9b0af4b1060beae41603a0cafb3852c2ff09342e6f4e1a7e8a831e7"
        );
        assert_eq!(hex(&b[108..112]), "3f95c1b3");
        assert_eq!(
            hex(&keys.header_mac_key[..]),
            "c2f482923fc6a2415779bff52ba5e3fde7afc7f24b45a32dc1156981d9efa8e4"
        );
        assert_eq!(
            hex(&keys.payload_key[..]),
            "c91e5d2d10f5a55ffe253d074d39691a0311eabbea76509e235a05cd332a8032"
        );
        assert_eq!(hex(&keys.nonce_prefix), "73d8e4b2b655ee");
    }
}
