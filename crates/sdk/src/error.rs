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
    /// Sending, syncing or changing a conversation this installation is not (yet) an active
    /// member of: a restored conversation waits for an active member to add it.
    #[error("Group is inactive")]
    Inactive,
    #[error("{0}")]
    Transport(#[from] ferry_transport::TransportError),
    #[error("mls: {0}")]
    Mls(#[from] ferry_mls::Error),
    #[error("identity log of inbox {inbox} does not verify: {source}")]
    Identity {
        inbox: String,
        #[source]
        source: ferry_identity::IdentityError,
    },
    #[error("inbox {0} is unknown to the node")]
    UnknownInbox(String),
    /// A group member, key package or welcome failed the identity check.
    #[error("invalid member: {0}")]
    InvalidMember(String),
    #[error("conversation {0} not found")]
    NoSuchConversation(String),
    #[error("{0} already holds an installation")]
    AlreadyRegistered(PathBuf),
    #[error("{0} holds no installation: run `ferry init` (or Client::create) first")]
    NotRegistered(PathBuf),
    #[error("this installation's signature key is missing from its store")]
    MissingSignatureKey,
    #[error("commit kept losing its epoch to other members' commits; try again")]
    CommitRetriesExhausted,
    #[error("{0}")]
    InvalidArgument(String),
    #[error(
        "history sync is off (this installation has no history server URL): set one with \
         `ferry history url set URL` (Client::set_history_sync_url)"
    )]
    HistorySyncOff,
    #[error("no history archive {0} in the sync group (see `ferry history list`)")]
    NoSuchArchive(String),
    #[error("history server: {0}")]
    History(#[from] ferry_transport::HistoryError),
    /// A TLS CA file that cannot be used (the error names it).
    #[error("{0}")]
    Tls(#[from] ferry_transport::TlsError),
    /// A history-sync reply whose archive was not signed by the installation that sent the
    /// reply (unsigned, or signed by another installation): nothing of it is imported.
    #[error("history archive refused: the reply came from installation {sender}, but the archive is {found}")]
    ArchiveNotSignedBySender { sender: String, found: String },
    /// An archive of another inbox: its conversations could never become active here.
    #[error("archive belongs to inbox {archive_inbox}, not to this installation's inbox {inbox}")]
    ForeignArchive {
        archive_inbox: String,
        inbox: String,
    },
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
