//! Hand-written protobuf messages for the libxmtp archive (packages `xmtp.device_sync` and
//! `xmtp.mls.message_contents`), with the field numbers and types listed in FORMAT.md.
//!
//! Enum-typed fields are stored as `i32` (as prost does); use the generated getters
//! (`group.conversation_type()`, `consent.state()`, ...) for the typed value. Unknown enum numbers
//! read back as the enum's default (`Unspecified`) through those getters.

use std::collections::HashMap;

/// One record of an archive. Tag 5 (a deprecated "event" element, never written) is deliberately
/// left out, so such a record decodes with `element == None`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupElement {
    #[prost(oneof = "backup_element::Element", tags = "1, 2, 3, 4")]
    pub element: Option<backup_element::Element>,
}

pub mod backup_element {
    /// The `element` oneof of [`super::BackupElement`].
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Element {
        #[prost(message, tag = "1")]
        Metadata(super::BackupMetadataSave),
        #[prost(message, tag = "2")]
        Group(super::GroupSave),
        #[prost(message, tag = "3")]
        GroupMessage(super::GroupMessageSave),
        #[prost(message, tag = "4")]
        Consent(super::ConsentSave),
    }
}

/// The first record of every archive.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupMetadataSave {
    #[prost(
        enumeration = "BackupElementSelection",
        repeated,
        packed = "true",
        tag = "2"
    )]
    pub elements: Vec<i32>,
    #[prost(int64, tag = "3")]
    pub exported_at_ns: i64,
    #[prost(int64, optional, tag = "4")]
    pub start_ns: Option<i64>,
    #[prost(int64, optional, tag = "5")]
    pub end_ns: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BackupElementSelection {
    Unspecified = 0,
    Messages = 1,
    Consent = 2,
    /// Deprecated; never written by current libxmtp.
    Event = 3,
}

/// A conversation (group, DM or sync group).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupSave {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub created_at_ns: i64,
    #[prost(enumeration = "GroupMembershipState", tag = "3")]
    pub membership_state: i32,
    #[prost(int64, tag = "4")]
    pub installations_last_checked: i64,
    #[prost(string, tag = "5")]
    pub added_by_inbox_id: String,
    #[prost(int64, optional, tag = "6")]
    pub welcome_id: Option<i64>,
    #[prost(int64, tag = "7")]
    pub rotated_at_ns: i64,
    #[prost(enumeration = "ConversationType", tag = "8")]
    pub conversation_type: i32,
    #[prost(string, optional, tag = "9")]
    pub dm_id: Option<String>,
    #[prost(int64, optional, tag = "10")]
    pub last_message_ns: Option<i64>,
    #[prost(int64, optional, tag = "11")]
    pub message_disappear_from_ns: Option<i64>,
    #[prost(int64, optional, tag = "12")]
    pub message_disappear_in_ns: Option<i64>,
    #[prost(message, optional, tag = "13")]
    pub metadata: Option<ImmutableMetadataSave>,
    #[prost(message, optional, tag = "14")]
    pub mutable_metadata: Option<MutableMetadataSave>,
    #[prost(string, optional, tag = "15")]
    pub paused_for_version: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum GroupMembershipState {
    Unspecified = 0,
    Allowed = 1,
    Rejected = 2,
    Pending = 3,
    Restored = 4,
    PendingRemove = 5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConversationType {
    Unspecified = 0,
    Group = 1,
    Dm = 2,
    Sync = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImmutableMetadataSave {
    #[prost(string, tag = "1")]
    pub creator_inbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MutableMetadataSave {
    /// Keys seen: `group_name`, `description`, `group_image_url_square`, `app_data`, and internal
    /// ones starting with `_`.
    #[prost(map = "string, string", tag = "1")]
    pub attributes: HashMap<String, String>,
    #[prost(string, repeated, tag = "2")]
    pub admin_list: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub super_admin_list: Vec<String>,
}

/// One message of a conversation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupMessageSave {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub group_id: Vec<u8>,
    /// Usually an [`EncodedContent`]; see [`crate::decode_encoded_content`].
    #[prost(bytes = "vec", tag = "3")]
    pub decrypted_message_bytes: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub sent_at_ns: i64,
    #[prost(enumeration = "GroupMessageKind", tag = "5")]
    pub kind: i32,
    #[prost(bytes = "vec", tag = "6")]
    pub sender_installation_id: Vec<u8>,
    #[prost(string, tag = "7")]
    pub sender_inbox_id: String,
    #[prost(enumeration = "DeliveryStatus", tag = "8")]
    pub delivery_status: i32,
    #[prost(enumeration = "ContentType", tag = "9")]
    pub content_type_save: i32,
    #[prost(int32, tag = "10")]
    pub version_major: i32,
    #[prost(int32, tag = "11")]
    pub version_minor: i32,
    #[prost(string, tag = "12")]
    pub authority_id: String,
    #[prost(bytes = "vec", optional, tag = "13")]
    pub reference_id: Option<Vec<u8>>,
    #[prost(int64, optional, tag = "14")]
    pub sequence_id: Option<i64>,
    #[prost(int64, optional, tag = "15")]
    pub originator_id: Option<i64>,
    #[prost(string, tag = "16")]
    pub content_type: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum GroupMessageKind {
    Unspecified = 0,
    Application = 1,
    MembershipChange = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DeliveryStatus {
    Unspecified = 0,
    Unpublished = 1,
    Published = 2,
    Failed = 3,
}

/// `content_type_save` of a [`GroupMessageSave`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ContentType {
    Unspecified = 0,
    Unknown = 1,
    Text = 2,
    GroupMembershipChange = 3,
    GroupUpdated = 4,
    Reaction = 5,
    ReadReceipt = 6,
    Reply = 7,
    Attachment = 8,
    RemoteAttachment = 9,
    TransactionReference = 10,
}

/// A consent decision about a conversation, an inbox or an address.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConsentSave {
    #[prost(enumeration = "ConsentType", tag = "1")]
    pub entity_type: i32,
    #[prost(enumeration = "ConsentState", tag = "2")]
    pub state: i32,
    #[prost(string, tag = "3")]
    pub entity: String,
    #[prost(int64, tag = "4")]
    pub consented_at_ns: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConsentType {
    Unspecified = 0,
    ConversationId = 1,
    InboxId = 2,
    Address = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConsentState {
    Unspecified = 0,
    Unknown = 1,
    Allowed = 2,
    Denied = 3,
}

/// `xmtp.mls.message_contents.ContentTypeId`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContentTypeId {
    #[prost(string, tag = "1")]
    pub authority_id: String,
    #[prost(string, tag = "2")]
    pub type_id: String,
    #[prost(uint32, tag = "3")]
    pub version_major: u32,
    #[prost(uint32, tag = "4")]
    pub version_minor: u32,
}

/// `xmtp.mls.message_contents.EncodedContent`: the usual payload of
/// [`GroupMessageSave::decrypted_message_bytes`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedContent {
    #[prost(message, optional, tag = "1")]
    pub r#type: Option<ContentTypeId>,
    #[prost(map = "string, string", tag = "2")]
    pub parameters: HashMap<String, String>,
    #[prost(string, optional, tag = "3")]
    pub fallback: Option<String>,
    #[prost(bytes = "vec", tag = "4")]
    pub content: Vec<u8>,
    #[prost(enumeration = "Compression", optional, tag = "5")]
    pub compression: Option<i32>,
}

/// Compression of [`EncodedContent::content`] (XMTP's public content-type protocol numbers these
/// 0 = deflate, 1 = gzip; FORMAT.md only says "enum").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Compression {
    Deflate = 0,
    Gzip = 1,
}
