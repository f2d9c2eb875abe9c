//! What people send: content types and their codecs.
//!
//! A message's content travels as an [`EncodedContent`]: a [`ContentTypeId`] (authority, type,
//! major and minor version), string parameters, an optional fallback text (what a client that
//! does not know the type shows) and the content bytes. The built-in types use **XMTP's type
//! ids and encodings** (authority `xmtp.org`), so content made by XMTP clients (a libxmtp
//! archive's reactions and replies, say) reads as the same types here, and the other way:
//!
//! | type | id | content |
//! |---|---|---|
//! | [`Text`] | `xmtp.org/text:1.0` | UTF-8 (parameter `encoding`) |
//! | [`Reply`] | `xmtp.org/reply:1.0` | the replied content's `EncodedContent`; parameters `reference` (hex message id), `referenceInboxId`, `contentType` |
//! | [`Reaction`] | `xmtp.org/reaction:2.0` (reads 1.0's JSON too) | protobuf: reference, reference inbox, action, content, schema |
//! | [`ReadReceipt`] | `xmtp.org/readReceipt:1.0` | empty |
//! | [`Attachment`] | `xmtp.org/attachment:1.0` | the file; parameters `filename`, `mimeType` |
//! | [`RemoteAttachment`] | `xmtp.org/remoteStaticAttachment:1.0` | the URL; parameters `contentDigest`, `secret`, `salt`, `nonce` (hex), `scheme`, `contentLength`, `filename` |
//! | [`GroupUpdated`] | `xmtp.org/group_updated:1.0` | protobuf: who changed members, name or description |
//!
//! Types are open: an app defines its own by implementing [`ContentCodec`] and sends it like a
//! built-in one. A type nobody here knows is still stored, archived and shown by its fallback
//! ([`Content::Unknown`]).
//!
//! [`remote`] encrypts a file for a remote attachment (HKDF-SHA256 and AES-256-GCM, the digest
//! a SHA-256 of the encrypted bytes) and checks the digest before it decrypts one.

mod codecs;
pub mod remote;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use codecs::{
    short_duration, Attachment, AttachmentCodec, GroupUpdated, GroupUpdatedCodec,
    MetadataFieldChange, Reaction, ReactionAction, ReactionCodec, ReactionSchema, ReadReceipt,
    ReadReceiptCodec, RemoteAttachment, RemoteAttachmentCodec, Reply, ReplyCodec, Text, TextCodec,
    MAX_INLINE_ATTACHMENT_BYTES,
};

/// The authority of XMTP's content types (and so of Ferry's built-in ones).
pub const XMTP: &str = "xmtp.org";

/// Which content type: who defines it, its name, and its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentTypeId {
    pub authority: String,
    pub type_id: String,
    pub major: u32,
    pub minor: u32,
}

impl ContentTypeId {
    /// `authority/type_id:major.minor`.
    pub fn new(authority: &str, type_id: &str, major: u32, minor: u32) -> ContentTypeId {
        ContentTypeId {
            authority: authority.to_string(),
            type_id: type_id.to_string(),
            major,
            minor,
        }
    }

    /// Whether `other` is this type in a version this side reads: the same authority, type
    /// and major version (a newer minor version only adds).
    pub fn same_major(&self, other: &ContentTypeId) -> bool {
        self.authority == other.authority
            && self.type_id == other.type_id
            && self.major == other.major
    }
}

impl fmt::Display for ContentTypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}:{}.{}",
            self.authority, self.type_id, self.major, self.minor
        )
    }
}

impl FromStr for ContentTypeId {
    type Err = ContentError;

    /// Parses `authority/type_id:major.minor`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ContentError::Invalid(format!("not a content type id: {s:?}"));
        let (authority, rest) = s.split_once('/').ok_or_else(bad)?;
        let (type_id, version) = rest.rsplit_once(':').ok_or_else(bad)?;
        let (major, minor) = version.split_once('.').ok_or_else(bad)?;
        if authority.is_empty() || type_id.is_empty() {
            return Err(bad());
        }
        Ok(ContentTypeId {
            authority: authority.to_string(),
            type_id: type_id.to_string(),
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// A message's content as it travels and is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedContent {
    pub content_type: ContentTypeId,
    pub parameters: BTreeMap<String, String>,
    pub fallback: Option<String>,
    pub content: Vec<u8>,
}

impl EncodedContent {
    /// Content of `content_type` with no parameters and no fallback.
    pub fn new(content_type: ContentTypeId, content: Vec<u8>) -> EncodedContent {
        EncodedContent {
            content_type,
            parameters: BTreeMap::new(),
            fallback: None,
            content,
        }
    }

    /// The parameters as Ferry stores them beside a message: the protobuf encoding of an XMTP
    /// `EncodedContent` that holds only its parameters map (field 2, entries in key order, so
    /// the bytes are the same everywhere); `None` when there are none.
    pub fn parameters_bytes(&self) -> Option<Vec<u8>> {
        wire::parameters_bytes(&self.parameters)
    }

    /// Reads parameters stored by [`EncodedContent::parameters_bytes`] (or imported from a
    /// libxmtp archive, which may also record a compression there).
    pub fn parameters_from_bytes(bytes: &[u8]) -> Result<BTreeMap<String, String>, ContentError> {
        wire::parameters_from_bytes(bytes)
    }

    /// The XMTP `EncodedContent` protobuf of this content (what a reply carries inside, and
    /// what a remote attachment encrypts).
    pub fn to_protobuf(&self) -> Vec<u8> {
        wire::encode_content(self)
    }

    /// Reads an XMTP `EncodedContent` protobuf.
    pub fn from_protobuf(bytes: &[u8]) -> Result<EncodedContent, ContentError> {
        wire::decode_content(bytes)
    }

    fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, ContentError> {
        self.parameter(name).ok_or_else(|| {
            ContentError::Invalid(format!(
                "{} content lacks the parameter {name:?}",
                self.content_type
            ))
        })
    }
}

/// Why content cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The content is not of the type the codec handles.
    #[error("expected {expected} content, got {got}")]
    WrongType {
        expected: ContentTypeId,
        got: ContentTypeId,
    },
    /// The content or its parameters do not decode, or a value to encode is out of bounds.
    #[error("invalid content: {0}")]
    Invalid(String),
    /// An attachment is larger than inline attachments may be.
    #[error("attachment of {size} bytes is over the inline limit of {limit} bytes (send it as a remote attachment)")]
    TooLarge { size: usize, limit: usize },
    /// A remote attachment's downloaded bytes do not match its digest: not decrypted.
    #[error(
        "remote attachment refused: its digest does not match (expected {expected}, got {got})"
    )]
    DigestMismatch { expected: String, got: String },
    /// A remote attachment did not decrypt with its secret (the bytes were swapped or damaged).
    #[error("remote attachment does not decrypt with its key")]
    Decrypt,
}

/// A content type: how a value of it is encoded into an [`EncodedContent`] and back.
///
/// Implement it for an app's own types (with an authority of the app's own, not `xmtp.org`).
pub trait ContentCodec {
    /// The values this codec encodes.
    type Value;

    /// The type it writes (and reads, in this major version).
    fn content_type() -> ContentTypeId;

    /// Encodes a value, with a fallback text for clients that do not know the type.
    fn encode(value: &Self::Value) -> Result<EncodedContent, ContentError>;

    /// Decodes content of this type.
    fn decode(content: &EncodedContent) -> Result<Self::Value, ContentError>;

    /// Whether a notification should announce content of this type (false for reactions,
    /// read receipts and group notices).
    fn should_push() -> bool {
        true
    }
}

/// Checks that `content` is `C`'s type, in a major version it reads.
fn expect_type<C: ContentCodec>(content: &EncodedContent) -> Result<(), ContentError> {
    let expected = C::content_type();
    if expected.same_major(&content.content_type) {
        Ok(())
    } else {
        Err(ContentError::WrongType {
            expected,
            got: content.content_type.clone(),
        })
    }
}

/// Any content, decoded by the built-in codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Reply(Reply),
    Reaction(Reaction),
    ReadReceipt,
    Attachment(Attachment),
    RemoteAttachment(RemoteAttachment),
    GroupUpdated(GroupUpdated),
    /// A type the built-in codecs do not know (an app's own, or a newer one), kept as it is:
    /// show its fallback.
    Unknown(EncodedContent),
}

impl Content {
    /// Decodes with the built-in codecs; content of an unknown type, or of a known type that
    /// does not decode, is [`Content::Unknown`].
    pub fn decode(encoded: &EncodedContent) -> Content {
        let ct = &encoded.content_type;
        let is = |other: ContentTypeId| other.same_major(ct);
        let decoded = if is(TextCodec::content_type()) || is(codecs::ferry_text()) {
            TextCodec::decode_any_text(encoded).map(Content::Text)
        } else if is(ReplyCodec::content_type()) {
            ReplyCodec::decode(encoded).map(Content::Reply)
        } else if is(ReactionCodec::content_type()) || is(codecs::reaction_v1()) {
            ReactionCodec::decode(encoded).map(Content::Reaction)
        } else if is(ReadReceiptCodec::content_type()) {
            ReadReceiptCodec::decode(encoded).map(|_| Content::ReadReceipt)
        } else if is(AttachmentCodec::content_type()) {
            AttachmentCodec::decode(encoded).map(Content::Attachment)
        } else if is(RemoteAttachmentCodec::content_type()) {
            RemoteAttachmentCodec::decode(encoded).map(Content::RemoteAttachment)
        } else if is(GroupUpdatedCodec::content_type()) {
            GroupUpdatedCodec::decode(encoded).map(Content::GroupUpdated)
        } else {
            return Content::Unknown(encoded.clone());
        };
        decoded.unwrap_or_else(|_| Content::Unknown(encoded.clone()))
    }

    /// Like [`Content::decode`], for a stored message whose reference (of a reply or
    /// reaction) is also kept beside it: a reaction whose body lacks its reference (as in
    /// libxmtp archives) takes that one.
    pub fn decode_stored(encoded: &EncodedContent, reference_id: Option<&[u8]>) -> Content {
        let ct = &encoded.content_type;
        if codecs::reaction_v1().same_major(ct) {
            return ReactionCodec::decode_with_reference(encoded, reference_id)
                .map(Content::Reaction)
                .unwrap_or_else(|_| Content::Unknown(encoded.clone()));
        }
        Content::decode(encoded)
    }

    /// The short name of the kind of content, for listings: `text`, `reply`, `reaction`,
    /// `read_receipt`, `attachment`, `remote_attachment`, `group_updated` or `unknown`.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text(_) => "text",
            Content::Reply(_) => "reply",
            Content::Reaction(_) => "reaction",
            Content::ReadReceipt => "read_receipt",
            Content::Attachment(_) => "attachment",
            Content::RemoteAttachment(_) => "remote_attachment",
            Content::GroupUpdated(_) => "group_updated",
            Content::Unknown(_) => "unknown",
        }
    }

    /// The id of the message this content refers to (replies and reactions).
    pub fn reference(&self) -> Option<&[u8]> {
        match self {
            Content::Reply(r) => Some(&r.reference),
            Content::Reaction(r) => Some(&r.reference),
            _ => None,
        }
    }
}
