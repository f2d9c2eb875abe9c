use std::io;

/// Everything that can go wrong reading or writing an archive.
///
/// Each variant names one cause, so a caller (or a person reading the one-line message) can tell
/// a wrong key from a damaged file from a newer format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("archive key must be exactly 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("key file must hold 32 raw bytes or 64 hex digits")]
    KeyFileFormat,
    #[error("not a Ferry archive (bad magic bytes)")]
    NotAnArchive,
    #[error("{}", version_message(*major, *minor))]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("archive header is corrupted (checksum mismatch)")]
    HeaderCorrupted,
    #[error("archive header is malformed: {0}")]
    HeaderMalformed(&'static str),
    #[error("wrong key: this archive was sealed with a different {0}")]
    WrongKey(KeyKindName),
    #[error("this archive is sealed with a {needed}, but a {given} was given")]
    KeyKindMismatch {
        needed: KeyKindName,
        given: KeyKindName,
    },
    #[error("archive header failed authentication (tampered)")]
    HeaderTampered,
    #[error("archive is truncated")]
    Truncated,
    #[error("archive chunk {index} failed authentication (corrupted, reordered or tampered)")]
    ChunkCorrupted { index: u64 },
    #[error("archive has data after its final chunk")]
    TrailingData,
    #[error("archive element of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u64 },
    #[error("archive is malformed: {0}")]
    Malformed(String),
    #[error("archive key derivation failed: {0}")]
    Kdf(String),
    #[error("too many chunks for one archive")]
    TooManyChunks,
    /// A signed archive (format 1.1) whose signature does not verify: it was not made by the
    /// installation it names, or it was changed after signing (by someone holding its key).
    #[error("archive signature does not verify: {0}")]
    BadSignature(String),
    /// The signer given to the writer failed, or signed with another key than it names.
    #[error("archive signer: {0}")]
    Signer(String),
}

/// The kind of secret an archive is sealed with, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKindName {
    Key,
    Passphrase,
}

impl std::fmt::Display for KeyKindName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKindName::Key => "32-byte key",
            KeyKindName::Passphrase => "passphrase",
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn version_message(major: u8, minor: u8) -> String {
    if major > crate::FORMAT_MAJOR {
        format!("archive format version {major}.{minor} is newer than this Ferry reads (1.x): update Ferry")
    } else {
        format!("archive format version {major}.{minor} is not supported (this Ferry reads 1.x)")
    }
}
