//! The Ferry archive format.
//!
//! A Ferry archive carries a person's conversations, messages and consent records from one
//! installation to another. This crate is the format alone: no database, no MLS, no network.
//! It reads and writes a byte stream; the SDK decides what goes in and where it lands.
//!
//! ```text
//! header (112 bytes, plaintext, checksummed and MACed)
//! chunk 0: the metadata element, alone
//! chunk 1..n: the elements, in segments of the frame stream; chunk n carries the last flag
//! ```
//!
//! A **signed** archive (format 1.1, [`ArchiveWriter::signed`]) ends with one more chunk: the
//! Ed25519 signature of the installation the metadata names, over the header and a running
//! SHA-256 of every chunk before it. The reader verifies it when it reaches the end
//! ([`Error::BadSignature`] otherwise); archives without it (1.0) still read, as unsigned.
//!
//! Each chunk is a zstd frame sealed with AES-256-GCM under the STREAM construction, with keys
//! derived (HKDF-SHA256) from the caller's 32-byte key (or an Argon2id-stretched passphrase) and
//! a random per-archive salt. Truncation, reordering, duplication, dropping and appended data
//! are each detected in one pass, and each failure has its own [`Error`]. The byte-level
//! specification is `docs/archive-format.md`.
//!
//! ```
//! use ferry_archive::{ArchiveKey, ArchiveReader, ArchiveWriter, Element, WriterOptions};
//! use ferry_proto::archive::{Consent, Metadata};
//!
//! let key = ArchiveKey::generate();
//! let mut w = ArchiveWriter::new(Vec::new(), &key, Metadata::default(), &WriterOptions::default())?;
//! w.write(Element::Consent(Consent { entity: "inbox-1".into(), ..Default::default() }))?;
//! let (bytes, _summary) = w.finish()?;
//!
//! let mut r = ArchiveReader::open(&bytes[..], &key)?;
//! assert!(matches!(r.next_element()?, Some(Element::Consent(c)) if c.entity == "inbox-1"));
//! assert!(r.next_element()?.is_none());
//! # Ok::<(), ferry_archive::Error>(())
//! ```

mod chunk;
mod error;
mod header;
mod key;
pub mod raw;
mod reader;
mod signature;
mod writer;

pub use error::{Error, KeyKindName, Result};
pub use header::{
    read_header, Header, KeyKind, FORMAT_MAJOR, FORMAT_MINOR, HEADER_LEN, MAGIC, MAX_SEGMENT,
    MIN_SEGMENT, SIGNED_MINOR,
};
pub use key::{ArchiveKey, Argon2Params, KEY_LEN};
pub use reader::ArchiveReader;
pub use signature::{ArchiveSigner, Ed25519Signer, SignedBy, SIGNATURE_CONTEXT, SIGNATURE_LEN};
pub use writer::{ArchiveWriter, Summary, WriterOptions};

pub use ferry_proto::archive as proto;

/// The largest element (one protobuf frame) an archive may hold: 8 MiB.
pub const MAX_FRAME: u64 = 8 * 1024 * 1024;

/// One element of an archive after the metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    Conversation(proto::Conversation),
    Message(proto::Message),
    Consent(proto::Consent),
    /// A piece of a remote attachment's encrypted file (element `attachments`).
    AttachmentPiece(proto::AttachmentPiece),
    /// An element of a kind this version does not know (written by a newer 1.x writer).
    Unknown,
}
