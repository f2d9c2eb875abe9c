use std::io;

/// Everything that can go wrong reading or writing an archive.
///
/// Each variant names one cause, so a caller (or a person reading the one-line message) can tell
/// a wrong key from a damaged file from a newer format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying reader or writer failed (a file that cannot be read or written, a full
    /// disk).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A raw key that is not 32 bytes long.
    #[error("archive key must be exactly 32 bytes, got {0}")]
    KeyLength(usize),
    /// A key file that holds neither 32 raw bytes nor 64 hex digits.
    #[error("key file must hold 32 raw bytes or 64 hex digits")]
    KeyFileFormat,
    /// The file does not start with Ferry's magic bytes.
    #[error("not a Ferry archive (bad magic bytes)")]
    NotAnArchive,
    /// A format version this build does not read (a newer major version: update Ferry).
    #[error("{}", version_message(*major, *minor))]
    UnsupportedVersion {
        /// The archive's major version.
        major: u8,
        /// The archive's minor version.
        minor: u8,
    },
    /// The header's checksum does not match: the file is damaged.
    #[error("archive header is corrupted (checksum mismatch)")]
    HeaderCorrupted,
    /// The header holds a value out of bounds (the message names the field).
    #[error("archive header is malformed: {0}")]
    HeaderMalformed(&'static str),
    /// The key (or passphrase) is not the one the archive was sealed with.
    #[error("wrong key: this archive was sealed with a different {0}")]
    WrongKey(KeyKindName),
    /// A raw key given for a passphrase archive, or the other way round.
    #[error("this archive is sealed with a {needed}, but a {given} was given")]
    KeyKindMismatch {
        /// The kind of secret the archive needs.
        needed: KeyKindName,
        /// The kind given.
        given: KeyKindName,
    },
    /// The header's authentication tag does not verify under the right key: it was changed.
    #[error("archive header failed authentication (tampered)")]
    HeaderTampered,
    /// The file ends before the archive's final chunk.
    #[error("archive is truncated")]
    Truncated,
    /// A chunk does not authenticate: damaged, reordered, duplicated or changed.
    #[error("archive chunk {index} failed authentication (corrupted, reordered or tampered)")]
    ChunkCorrupted {
        /// The chunk's position (0 is the first).
        index: u64,
    },
    /// Bytes follow the final chunk.
    #[error("archive has data after its final chunk")]
    TrailingData,
    /// An element larger than the reader accepts (a hostile or damaged archive).
    #[error("archive element of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The element's declared length in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// Authenticated content that does not decode (an element, the metadata).
    #[error("archive is malformed: {0}")]
    Malformed(String),
    /// Deriving the key from a passphrase failed (Argon2 parameters out of range).
    #[error("archive key derivation failed: {0}")]
    Kdf(String),
    /// The archive would need more chunks than the nonce counter allows.
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
    /// A raw 32-byte key.
    Key,
    /// A passphrase (stretched with Argon2id).
    Passphrase,
}

impl Error {
    /// Whether the same call may succeed if made again: only a read or write that was
    /// interrupted or timed out. Every other error is about the archive or the key (wrong,
    /// damaged, tampered, unsupported) and stays the same however often it is tried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

impl std::fmt::Display for KeyKindName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKindName::Key => "32-byte key",
            KeyKindName::Passphrase => "passphrase",
        })
    }
}

/// The archive crate's result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn version_message(major: u8, minor: u8) -> String {
    if major > crate::FORMAT_MAJOR {
        format!("archive format version {major}.{minor} is newer than this Ferry reads (1.x): update Ferry")
    } else {
        format!("archive format version {major}.{minor} is not supported (this Ferry reads 1.x)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_interrupted_io_is_retryable() {
        let io = |kind| Error::Io(io::Error::new(kind, "x"));
        assert!(io(io::ErrorKind::Interrupted).is_retryable());
        assert!(io(io::ErrorKind::TimedOut).is_retryable());
        for e in [
            io(io::ErrorKind::NotFound),
            io(io::ErrorKind::UnexpectedEof),
            Error::WrongKey(KeyKindName::Key),
            Error::Truncated,
            Error::ChunkCorrupted { index: 1 },
            Error::BadSignature("forged".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }
}
