use std::path::PathBuf;

/// Errors of the SDK. Each names its cause in one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Archive(#[from] ferry_archive::Error),
    #[error("{0}")]
    Store(#[from] ferry_store::Error),
    /// Reading a libxmtp archive failed (wrong key, truncated, trailing bytes, ...).
    #[error("{0}")]
    Xmtp(#[from] ferry_xmtp::XmtpError),
    /// libxmtp archives are sealed with a raw key; they have no passphrase mode.
    #[error("xmtp archives take a 32-byte key, not a passphrase")]
    XmtpPassphrase,
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parent folder {0} does not exist")]
    ParentMissing(PathBuf),
    #[error("archive is invalid: {0}")]
    InvalidArchive(String),
    #[error("no archive elements selected (choose messages, consent or both)")]
    NoElements,
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
