//! What an archive needs to be opened, read without any key.

use std::path::Path;

use ferry_archive::KeyKind;
use serde::Serialize;

use crate::archive::ArchiveFormat;

/// Argon2id parameters of a passphrase-sealed archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Argon2Info {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Time cost (passes over the memory).
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

/// What [`archive_key_kind`] reports: enough for an app to ask for the right secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyKindInfo {
    /// Ferry's format or libxmtp's.
    pub format: ArchiveFormat,
    /// "1.1" (signed) or "1.0" for Ferry archives, "0" for libxmtp ones.
    pub format_version: String,
    /// "key" (a raw 32-byte key) or "passphrase".
    pub key_kind: &'static str,
    /// The Argon2id cost a passphrase will take, for passphrase archives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argon2: Option<Argon2Info>,
}

/// How many of an archive's first bytes [`key_kind_of_head`] needs: a Ferry header (112 bytes);
/// libxmtp archives need 18.
pub const HEAD_LEN: u64 = ferry_archive::HEADER_LEN as u64;

/// Reads an archive's first bytes and says which format it is in and which kind of secret it
/// needs, without any key. Ferry archives are read through `ferry_archive::read_header`
/// (checksum, version and bounds checks included), so a damaged or foreign file is an error.
pub fn archive_key_kind(path: &Path) -> crate::Result<KeyKindInfo> {
    let head =
        super::destination::read_head(path, HEAD_LEN).map_err(|e| crate::Error::io(path, e))?;
    key_kind_of_head(&head)
}

/// [`archive_key_kind`] over an archive's first [`HEAD_LEN`] bytes (or all of a shorter file).
/// A libxmtp archive reports the version its first two bytes hold (little-endian).
pub fn key_kind_of_head(head: &[u8]) -> crate::Result<KeyKindInfo> {
    if crate::archive::looks_like_xmtp(head) {
        return Ok(KeyKindInfo {
            format: ArchiveFormat::Xmtp,
            format_version: u16::from_le_bytes([head[0], head[1]]).to_string(),
            key_kind: "key",
            argon2: None,
        });
    }
    let header = ferry_archive::read_header(&mut &head[..])?;
    let (key_kind, argon2) = match header.key_kind {
        KeyKind::Raw => ("key", None),
        KeyKind::Passphrase(p) => (
            "passphrase",
            Some(Argon2Info {
                m_cost_kib: p.m_cost_kib,
                t_cost: p.t_cost,
                p_cost: p.p_cost,
            }),
        ),
    };
    Ok(KeyKindInfo {
        format: ArchiveFormat::Ferry,
        format_version: format!("{}.{}", header.major, header.minor),
        key_kind,
        argon2,
    })
}
