use std::path::PathBuf;

/// Errors of the SDK. Each names its cause in one line; [`Error::is_retryable`] says whether
/// trying the same call again later may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing or reading a Ferry archive failed: a wrong key, a damaged or truncated file, a
    /// bad signature, ... (the inner error names which).
    #[error("{0}")]
    Archive(#[from] ferry_archive::Error),
    /// The installation's store (SQLite) failed, or holds what this version cannot read (a
    /// busy database is waited for inside the store first).
    #[error("{0}")]
    Store(#[from] ferry_store::Error),
    /// Reading a libxmtp archive failed (wrong key, truncated, trailing bytes, ...).
    #[error("{0}")]
    Xmtp(#[from] ferry_xmtp_archive::XmtpError),
    /// libxmtp archives are sealed with a raw key; they have no passphrase mode.
    #[error("xmtp archives take a 32-byte key, not a passphrase")]
    XmtpPassphrase,
    /// Reading or writing a local file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An archive was to be written into a folder that does not exist.
    #[error("parent folder {0} does not exist")]
    ParentMissing(PathBuf),
    /// An archive that decrypts but whose content is not what Ferry writes (a malformed
    /// element, a count that does not match).
    #[error("archive is invalid: {0}")]
    InvalidArchive(String),
    /// [`ArchiveOptions::elements`](crate::archive::ArchiveOptions::elements) was empty.
    #[error("no archive elements selected (choose messages, consent or both)")]
    NoElements,
    /// The operation was cancelled through its [`Control`](crate::archive::Control); nothing
    /// was written.
    #[error("cancelled")]
    Cancelled,
    /// Sending, syncing or changing a conversation this installation is not (yet) an active
    /// member of: a restored conversation waits for an active member to add it.
    #[error("Group is inactive")]
    Inactive,
    /// A call to the delivery node failed: unreachable, refused, or a conflict with another
    /// writer (the inner error says which).
    #[error("{0}")]
    Transport(#[from] ferry_transport::TransportError),
    /// The MLS layer refused or failed: a malformed or undecryptable message, a key package
    /// that does not verify, a welcome for another installation, ...
    #[error("mls: {0}")]
    Mls(#[from] ferry_mls::Error),
    /// An inbox's identity log, as the node served it, does not verify: nothing from that
    /// inbox is trusted.
    #[error("identity log of inbox {inbox} does not verify: {source}")]
    Identity {
        /// The inbox (hex).
        inbox: String,
        /// Why the log does not verify.
        #[source]
        source: ferry_identity::IdentityError,
    },
    /// Internal: a step verified leaves from the cache and needs this inbox's identity log
    /// fetched first (never returned by a public call).
    #[doc(hidden)]
    #[error("identity log of inbox {0} not fetched yet")]
    IdentityMiss(String),
    /// The account key's signer refused or failed (see [`crate::AccountSigner`]).
    #[error("{0}")]
    Signer(#[from] ferry_identity::SignerError),
    /// The node has no identity log for this inbox id.
    #[error("inbox {0} is unknown to the node")]
    UnknownInbox(String),
    /// A group member, key package or welcome failed the identity check.
    #[error("invalid member: {0}")]
    InvalidMember(String),
    /// No conversation with this id (hex) on this installation.
    #[error("conversation {0} not found")]
    NoSuchConversation(String),
    /// [`Client::create`](crate::Client::create) on a folder that already holds an
    /// installation (open it with [`Client::open`](crate::Client::open)).
    #[error("{0} already holds an installation")]
    AlreadyRegistered(PathBuf),
    /// [`Client::open`](crate::Client::open) on a folder without a registered installation.
    #[error("{0} holds no installation: run `ferry init` (or Client::create) first")]
    NotRegistered(PathBuf),
    /// The store lacks this installation's MLS signature key (a damaged or foreign store).
    #[error("this installation's signature key is missing from its store")]
    MissingSignatureKey,
    /// A commit (adding, removing, renaming) lost its epoch to other members' commits on every
    /// attempt; the group is intact, and trying again later usually succeeds.
    #[error("commit kept losing its epoch to other members' commits; try again")]
    CommitRetriesExhausted,
    /// An argument the call cannot use (the message says which and why).
    #[error("{0}")]
    InvalidArgument(String),
    /// A history sync call on an installation without a history server URL.
    #[error(
        "history sync is off (this installation has no history server URL): set one with \
         `ferry history url set URL` (Client::set_history_sync_url)"
    )]
    HistorySyncOff,
    /// No archive announced in the sync group answers this pin (yet: an answer may still be
    /// on its way, so this one is retryable).
    #[error("no history archive {0} in the sync group (see `ferry history list`)")]
    NoSuchArchive(String),
    /// A call to the history server failed (the inner error says how).
    #[error("history server: {0}")]
    History(#[from] ferry_transport::HistoryError),
    /// A TLS CA file that cannot be used (the error names it).
    #[error("{0}")]
    Tls(#[from] ferry_transport::TlsError),
    /// A history-sync reply whose archive was not signed by the installation that sent the
    /// reply (unsigned, or signed by another installation): nothing of it is imported.
    #[error("history archive refused: the reply came from installation {sender}, but the archive is {found}")]
    ArchiveNotSignedBySender {
        /// The installation that sent the reply (hex).
        sender: String,
        /// Who signed the archive (an installation in hex, or `unsigned`).
        found: String,
    },
    /// An attachment store in object storage failed (`op` on `name`: the store's message
    /// says why). Worth retrying: the service may be back.
    #[error("attachment store: cannot {op} {name}: {message}")]
    AttachmentStore {
        /// What was tried: `upload`, `download`.
        op: &'static str,
        /// The object's URL or name.
        name: String,
        /// What the store said.
        message: String,
    },
    /// Content that does not encode or decode, an attachment over the inline limit, or a
    /// remote attachment whose download does not match its digest or key.
    #[error("{0}")]
    Content(#[from] ferry_content::ContentError),
    /// An archive of another inbox: its conversations could never become active here.
    #[error("archive belongs to inbox {archive_inbox}, not to this installation's inbox {inbox}")]
    ForeignArchive {
        /// The inbox the archive belongs to.
        archive_inbox: String,
        /// This installation's inbox.
        inbox: String,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again later, unchanged: the node or the
    /// history server was unreachable or timed out, a commit kept losing its epoch race, an
    /// answer is not there yet, a local read or write was interrupted. False for what only a
    /// change fixes: a wrong key, a damaged or foreign archive, an invalid argument, an
    /// inactive conversation, a refused request.
    ///
    /// ```
    /// use ferry_sdk::Error;
    /// use ferry_transport::TransportError;
    ///
    /// assert!(Error::from(TransportError::Unavailable("connection refused".into())).is_retryable());
    /// assert!(!Error::Inactive.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Archive(e) => e.is_retryable(),
            Error::Store(e) => e.is_retryable(),
            Error::Xmtp(e) => e.is_retryable(),
            Error::Transport(e) => e.is_retryable(),
            Error::Mls(e) => e.is_retryable(),
            Error::Identity { source, .. } => source.is_retryable(),
            Error::Signer(e) => e.is_retryable(),
            Error::History(e) => e.is_retryable(),
            Error::Tls(e) => e.is_retryable(),
            Error::Io { source, .. } => io_retryable(source),
            Error::AttachmentStore { .. } => true,
            Error::CommitRetriesExhausted | Error::NoSuchArchive(_) | Error::IdentityMiss(_) => {
                true
            }
            Error::XmtpPassphrase
            | Error::Content(_)
            | Error::ParentMissing(_)
            | Error::InvalidArchive(_)
            | Error::NoElements
            | Error::Cancelled
            | Error::Inactive
            | Error::UnknownInbox(_)
            | Error::InvalidMember(_)
            | Error::NoSuchConversation(_)
            | Error::AlreadyRegistered(_)
            | Error::NotRegistered(_)
            | Error::MissingSignatureKey
            | Error::InvalidArgument(_)
            | Error::HistorySyncOff
            | Error::ArchiveNotSignedBySender { .. }
            | Error::ForeignArchive { .. } => false,
        }
    }

    /// A short, stable name for what went wrong, for programs and language bindings to match
    /// on (the Node.js SDK sets it as the JS error's `code`): `GROUP_INACTIVE`, `WRONG_KEY`,
    /// `ARCHIVE_DAMAGED`, `ARCHIVE_UNSUPPORTED_VERSION`, `NODE_UNREACHABLE`,
    /// `INSTALLATION_REVOKED` (the node refuses this installation), `RATE_LIMITED` (the node's
    /// limit, still reached after waiting as it asked), ... Codes are
    /// never renamed; new ones may be added. The message ([`std::fmt::Display`]) says more.
    ///
    /// ```
    /// assert_eq!(ferry_sdk::Error::Inactive.code(), "GROUP_INACTIVE");
    /// ```
    pub fn code(&self) -> &'static str {
        use ferry_archive::Error as A;
        use ferry_transport::{HistoryError as H, TransportError as T};
        use ferry_xmtp_archive::XmtpError as X;
        match self {
            Error::Archive(e) => match e {
                A::Io(_) => "IO_ERROR",
                A::KeyLength(_) | A::KeyFileFormat => "INVALID_KEY",
                A::WrongKey(_) | A::KeyKindMismatch { .. } => "WRONG_KEY",
                A::UnsupportedVersion { .. } => "ARCHIVE_UNSUPPORTED_VERSION",
                A::BadSignature(_) => "ARCHIVE_BAD_SIGNATURE",
                A::Signer(_) => "SIGNER_ERROR",
                A::Kdf(_) => "INVALID_KEY",
                _ => "ARCHIVE_DAMAGED",
            },
            Error::Xmtp(e) => match e {
                X::Io(_) => "IO_ERROR",
                X::KeyLength(_) => "INVALID_KEY",
                X::UnsupportedVersion(_) => "ARCHIVE_UNSUPPORTED_VERSION",
                // libxmtp archives cannot tell a wrong key from damage at the first record.
                X::WrongKeyOrCorrupted { record: 0 } => "WRONG_KEY",
                _ => "ARCHIVE_DAMAGED",
            },
            Error::XmtpPassphrase => "INVALID_KEY",
            Error::InvalidArchive(_) => "ARCHIVE_DAMAGED",
            Error::Io { .. } | Error::ParentMissing(_) => "IO_ERROR",
            Error::NoElements | Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::Cancelled => "CANCELLED",
            Error::Inactive => "GROUP_INACTIVE",
            Error::Content(e) => match e {
                ferry_content::ContentError::TooLarge { .. } => "ATTACHMENT_TOO_LARGE",
                ferry_content::ContentError::DigestMismatch { .. }
                | ferry_content::ContentError::Decrypt => "ATTACHMENT_REFUSED",
                _ => "INVALID_CONTENT",
            },
            Error::Transport(e) => match e {
                T::InvalidUrl { .. } => "INVALID_ARGUMENT",
                T::Unavailable(_) | T::Closed(_) => "NODE_UNREACHABLE",
                T::CommitConflict(_) | T::IdentityConflict(_) => "CONFLICT",
                T::Revoked(_) => "INSTALLATION_REVOKED",
                T::Rejected { code, .. } if code == "ResourceExhausted" => "RATE_LIMITED",
                T::Rejected { code, .. } if code == "Unauthenticated" => "UNAUTHENTICATED",
                _ => "NODE_REJECTED",
            },
            Error::CommitRetriesExhausted => "CONFLICT",
            Error::AttachmentStore { .. } => "ATTACHMENT_STORE_ERROR",
            Error::Store(_) | Error::MissingSignatureKey => "STORAGE_ERROR",
            Error::Mls(_) => "MLS_ERROR",
            Error::Identity { .. } | Error::IdentityMiss(_) => "IDENTITY_ERROR",
            Error::Signer(_) => "SIGNER_ERROR",
            Error::UnknownInbox(_) => "INBOX_NOT_FOUND",
            Error::InvalidMember(_) => "INVALID_MEMBER",
            Error::NoSuchConversation(_) => "CONVERSATION_NOT_FOUND",
            Error::AlreadyRegistered(_) => "ALREADY_REGISTERED",
            Error::NotRegistered(_) => "NOT_REGISTERED",
            Error::HistorySyncOff => "HISTORY_SYNC_OFF",
            Error::NoSuchArchive(_) => "ARCHIVE_NOT_FOUND",
            Error::History(e) => match e {
                H::InvalidUrl { .. } | H::ForeignHost(_) => "INVALID_ARGUMENT",
                H::Unavailable(_) => "HISTORY_SERVER_UNREACHABLE",
                H::NotFound => "ARCHIVE_NOT_FOUND",
                H::Io { .. } => "IO_ERROR",
                _ => "HISTORY_SERVER_REJECTED",
            },
            Error::Tls(_) => "TLS_ERROR",
            Error::ArchiveNotSignedBySender { .. } | Error::ForeignArchive { .. } => {
                "ARCHIVE_FOREIGN"
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// An interrupted or timed-out read or write; not a missing file, a full disk or a denied
/// permission.
fn io_retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), Interrupted | WouldBlock | TimedOut)
}

/// The SDK's result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_transport::{HistoryError, TransportError};

    #[test]
    fn retryable_means_a_later_try_may_succeed() {
        let io = |kind| std::io::Error::new(kind, "x");
        let retryable = [
            Error::Transport(TransportError::Unavailable("connection refused".into())),
            Error::Transport(TransportError::CommitConflict("epoch 3".into())),
            Error::History(HistoryError::Unavailable("timed out".into())),
            Error::History(HistoryError::Rejected {
                status: 503,
                message: "busy".into(),
            }),
            Error::CommitRetriesExhausted,
            Error::NoSuchArchive("pin".into()),
            Error::io("/tmp/a", io(std::io::ErrorKind::Interrupted)),
            Error::Archive(ferry_archive::Error::Io(io(std::io::ErrorKind::TimedOut))),
        ];
        for e in &retryable {
            assert!(e.is_retryable(), "{e:?} is retryable");
        }
        let permanent = [
            Error::Archive(ferry_archive::Error::WrongKey(
                ferry_archive::KeyKindName::Key,
            )),
            Error::Archive(ferry_archive::Error::Truncated),
            Error::Archive(ferry_archive::Error::Io(io(std::io::ErrorKind::NotFound))),
            Error::Xmtp(ferry_xmtp_archive::XmtpError::WrongKeyOrCorrupted { record: 0 }),
            Error::InvalidArgument("bad".into()),
            Error::Inactive,
            Error::HistorySyncOff,
            Error::NoSuchConversation("00".into()),
            Error::Transport(TransportError::Rejected {
                code: "InvalidArgument".into(),
                message: "no".into(),
            }),
            Error::History(HistoryError::NotFound),
            Error::History(HistoryError::ForeignHost("https://elsewhere".into())),
            Error::io("/tmp/a", io(std::io::ErrorKind::PermissionDenied)),
            Error::ForeignArchive {
                archive_inbox: "a".into(),
                inbox: "b".into(),
            },
            Error::Cancelled,
        ];
        for e in &permanent {
            assert!(!e.is_retryable(), "{e:?} is not retryable");
        }
    }

    #[test]
    fn codes_are_stable_names() {
        let io = |kind| std::io::Error::new(kind, "x");
        let cases = [
            (Error::Inactive, "GROUP_INACTIVE"),
            (
                Error::Archive(ferry_archive::Error::WrongKey(
                    ferry_archive::KeyKindName::Passphrase,
                )),
                "WRONG_KEY",
            ),
            (
                Error::Archive(ferry_archive::Error::Truncated),
                "ARCHIVE_DAMAGED",
            ),
            (
                Error::Archive(ferry_archive::Error::HeaderTampered),
                "ARCHIVE_DAMAGED",
            ),
            (
                Error::Archive(ferry_archive::Error::Io(io(std::io::ErrorKind::NotFound))),
                "IO_ERROR",
            ),
            (
                Error::Xmtp(ferry_xmtp_archive::XmtpError::WrongKeyOrCorrupted { record: 0 }),
                "WRONG_KEY",
            ),
            (
                Error::Xmtp(ferry_xmtp_archive::XmtpError::WrongKeyOrCorrupted { record: 3 }),
                "ARCHIVE_DAMAGED",
            ),
            (
                Error::Transport(TransportError::Unavailable("refused".into())),
                "NODE_UNREACHABLE",
            ),
            (
                Error::History(HistoryError::Unavailable("refused".into())),
                "HISTORY_SERVER_UNREACHABLE",
            ),
            (
                Error::NoSuchConversation("00".into()),
                "CONVERSATION_NOT_FOUND",
            ),
            (Error::InvalidArgument("x".into()), "INVALID_ARGUMENT"),
            (
                Error::Transport(TransportError::Revoked("revoked".into())),
                "INSTALLATION_REVOKED",
            ),
            (
                Error::Transport(TransportError::Rejected {
                    code: "ResourceExhausted".into(),
                    message: "slow down".into(),
                }),
                "RATE_LIMITED",
            ),
            (
                Error::Transport(TransportError::Rejected {
                    code: "Unauthenticated".into(),
                    message: "unsigned".into(),
                }),
                "UNAUTHENTICATED",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }
}
