//! The caller's secret and the keys derived from it.

use hkdf::Hkdf;
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, KeyKindName, Result};

/// Length of a raw archive key.
pub const KEY_LEN: usize = 32;

/// Argon2id cost parameters stored in the header of a passphrase-sealed archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Argon2Params {
    /// The defaults for new archives: 64 MiB, 28 passes, 1 lane.
    ///
    /// Measured with `ferry bench passphrase` (release build, median of 7): 0.95 s on one core
    /// of the project's 2-core x86-64 machine (AVX-512), i.e. about 34 ms per pass at 64 MiB;
    /// 4 passes took 0.15 s. A phone core may take two to three times as long.
    pub const DEFAULT: Argon2Params = Argon2Params {
        m_cost_kib: 64 * 1024,
        t_cost: 28,
        p_cost: 1,
    };

    /// Upper bounds a reader accepts, so a hostile header cannot make it allocate without limit.
    pub(crate) fn check_bounds(&self) -> Result<()> {
        // 1 GiB and 64 passes (the spec's pass limit): well above the defaults, low enough for a
        // phone to refuse a hostile header rather than exhaust itself.
        if self.m_cost_kib > 1024 * 1024 || self.t_cost == 0 || self.t_cost > 64 {
            return Err(Error::HeaderMalformed(
                "passphrase cost parameters out of range",
            ));
        }
        if self.p_cost == 0 || self.p_cost > 16 || self.m_cost_kib < 8 * self.p_cost {
            return Err(Error::HeaderMalformed(
                "passphrase cost parameters out of range",
            ));
        }
        Ok(())
    }
}

/// The secret an archive is sealed with: a raw 32-byte key or a passphrase.
///
/// Both are zeroized when dropped.
#[derive(Clone)]
pub enum ArchiveKey {
    Raw(Zeroizing<[u8; KEY_LEN]>),
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveKey::Raw(_) => f.write_str("ArchiveKey::Raw(..)"),
            ArchiveKey::Passphrase(_) => f.write_str("ArchiveKey::Passphrase(..)"),
        }
    }
}

impl ArchiveKey {
    /// A raw key: exactly 32 bytes, never truncated or padded.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::KeyLength(bytes.len()))?;
        Ok(ArchiveKey::Raw(Zeroizing::new(arr)))
    }

    /// A passphrase key (Argon2id stretches it; see [`Argon2Params`]).
    ///
    /// The passphrase is normalized to Unicode NFC first, so "é" typed as one code point
    /// (U+00E9) or as "e" and a combining accent (U+0065 U+0301), as different keyboards and
    /// systems do, opens the same archive. Nothing else is changed: no trimming, no case folding.
    /// (The normalization happens when the key is stretched, so a `Passphrase` built directly
    /// is normalized too.)
    pub fn passphrase(passphrase: impl Into<String>) -> Self {
        ArchiveKey::Passphrase(Zeroizing::new(passphrase.into()))
    }

    /// A fresh random raw key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k[..]);
        ArchiveKey::Raw(k)
    }

    /// Parses a key file: 32 raw bytes, or 64 hex digits; one trailing newline (LF or CRLF) is
    /// allowed after the hex digits.
    pub fn from_key_file(contents: &[u8]) -> Result<Self> {
        if contents.len() == KEY_LEN {
            return Self::from_bytes(contents);
        }
        let trimmed = contents
            .strip_suffix(b"\r\n")
            .or_else(|| contents.strip_suffix(b"\n"))
            .unwrap_or(contents);
        if trimmed.len() != 2 * KEY_LEN {
            return Err(Error::KeyFileFormat);
        }
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        for (i, pair) in trimmed.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(Error::KeyFileFormat)?;
            let lo = hex_val(pair[1]).ok_or(Error::KeyFileFormat)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(ArchiveKey::Raw(out))
    }

    /// The raw bytes, when this is a raw key.
    pub fn raw_bytes(&self) -> Option<&[u8; KEY_LEN]> {
        match self {
            ArchiveKey::Raw(k) => Some(k),
            ArchiveKey::Passphrase(_) => None,
        }
    }

    pub(crate) fn kind_name(&self) -> KeyKindName {
        match self {
            ArchiveKey::Raw(_) => KeyKindName::Key,
            ArchiveKey::Passphrase(_) => KeyKindName::Passphrase,
        }
    }

    /// The 32 bytes of input keying material for HKDF.
    pub(crate) fn ikm(
        &self,
        salt: &[u8; 32],
        params: Option<Argon2Params>,
    ) -> Result<Zeroizing<[u8; 32]>> {
        match (self, params) {
            (ArchiveKey::Raw(k), None) => Ok(k.clone()),
            (ArchiveKey::Passphrase(p), Some(params)) => {
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
                        .map_err(|e| Error::Kdf(e.to_string()))?,
                );
                let mut out = Zeroizing::new([0u8; 32]);
                argon
                    .hash_password_into(nfc(p).as_bytes(), salt, &mut out[..])
                    .map_err(|e| Error::Kdf(e.to_string()))?;
                Ok(out)
            }
            (ArchiveKey::Raw(_), Some(_)) => Err(Error::KeyKindMismatch {
                needed: KeyKindName::Passphrase,
                given: KeyKindName::Key,
            }),
            (ArchiveKey::Passphrase(_), None) => Err(Error::KeyKindMismatch {
                needed: KeyKindName::Key,
                given: KeyKindName::Passphrase,
            }),
        }
    }
}

/// The passphrase in Unicode NFC (docs/archive-format.md §4.1), in a buffer that is zeroized.
fn nfc(p: &str) -> Zeroizing<String> {
    // Room for the usual expansion up front, so the copy is rarely reallocated (a reallocation
    // would leave an unzeroized copy behind).
    let mut out = Zeroizing::new(String::with_capacity(p.len() * 3 + 16));
    if unicode_normalization::is_nfc_quick(p.chars()) == unicode_normalization::IsNormalized::Yes {
        out.push_str(p);
    } else {
        out.extend(p.nfc());
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The keys one archive uses, all derived with HKDF-SHA256 from the caller's secret and the
/// archive's random salt, so one caller key never reuses a payload key or nonce across archives.
pub(crate) struct DerivedKeys {
    pub key_check: [u8; 16],
    pub header_mac_key: Zeroizing<[u8; 32]>,
    pub payload_key: Zeroizing<[u8; 32]>,
    pub nonce_prefix: [u8; 7],
}

impl DerivedKeys {
    pub(crate) fn derive(ikm: &[u8; 32], salt: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
        let mut key_check = [0u8; 16];
        let mut header_mac_key = Zeroizing::new([0u8; 32]);
        let mut payload_key = Zeroizing::new([0u8; 32]);
        let mut nonce_prefix = [0u8; 7];
        // Lengths are far below HKDF's limit, so expand cannot fail.
        hk.expand(b"ferry-archive v1 key-check", &mut key_check)
            .expect("hkdf length");
        hk.expand(b"ferry-archive v1 header-mac", &mut header_mac_key[..])
            .expect("hkdf length");
        hk.expand(b"ferry-archive v1 payload-key", &mut payload_key[..])
            .expect("hkdf length");
        hk.expand(b"ferry-archive v1 payload-nonce", &mut nonce_prefix)
            .expect("hkdf length");
        DerivedKeys {
            key_check,
            header_mac_key,
            payload_key,
            nonce_prefix,
        }
    }
}

impl Drop for DerivedKeys {
    fn drop(&mut self) {
        self.key_check.zeroize();
        self.nonce_prefix.zeroize();
    }
}
