//! The rows the store holds, as plain Rust values.

macro_rules! int_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr => $s:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v = $n),+ }
        impl $name {
            pub fn from_i64(v: i64) -> Option<Self> {
                match v { $($n => Some($name::$v),)+ _ => None }
            }
            pub fn as_i64(self) -> i64 { self as i64 }
            /// The lowercase name used in JSON and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

int_enum!(
    /// What a conversation is.
    ConversationKind { Group = 1 => "group", Dm = 2 => "dm",
        /// The hidden group of one inbox's own installations (history sync).
        Sync = 3 => "sync" }
);
int_enum!(
    /// Where this installation stands in a conversation.
    Membership { Active = 1 => "active",
        /// Imported from an archive: history visible, read-only until an MLS add.
        Restored = 2 => "restored", Left = 3 => "left" }
);
int_enum!(MessageKind { Application = 1 => "application", MembershipChange = 2 => "membership_change" });
int_enum!(DeliveryStatus { Unpublished = 1 => "unpublished", Published = 2 => "published", Failed = 3 => "failed" });
int_enum!(ConsentEntity { Conversation = 1 => "conversation", Inbox = 2 => "inbox", Address = 3 => "address" });
int_enum!(ConsentState { Unknown = 1 => "unknown", Allowed = 2 => "allowed", Denied = 3 => "denied" });
int_enum!(
    /// Where the handling of one sync-group message stands (the `state` of a
    /// [`SyncMessageRecord`](crate::SyncMessageRecord)).
    SyncMessageState {
        /// Not handled yet, or failed in a way worth retrying.
        Pending = 1 => "pending",
        Processed = 2 => "processed",
        /// Given up on.
        Failed = 3 => "failed" }
);
int_enum!(
    /// Device-sync work that a crash or a dead node left undone, kept until it is done (see
    /// [`Store::set_device_sync_flag`](crate::Store::set_device_sync_flag)).
    DeviceSyncFlag {
        /// The inbox's HMAC key must be rotated (an installation was revoked).
        HmacRotationPending = 1 => "hmac_rotation_pending",
        /// A history request is wanted but could not be sent yet.
        HistoryRequestWanted = 2 => "history_request_wanted" }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: Vec<u8>,
    pub kind: ConversationKind,
    pub created_at_ns: i64,
    pub name: String,
    pub description: String,
    pub image_url: String,
    pub creator_inbox_id: String,
    pub dm_peer_inbox_id: Option<String>,
    pub dm_id: Option<String>,
    pub membership: Membership,
    pub last_message_ns: Option<i64>,
    /// Disappearing messages, when on (from the group's metadata).
    pub disappearing: Option<DisappearingSettings>,
}

/// A conversation's disappearing messages: each application message sent at or after
/// `from_ns` is deleted on every installation `in_ns` after it was sent. Membership notices
/// never disappear (they are the record of who changed what).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisappearingSettings {
    /// Messages sent from this time on disappear (usually when the setting was made).
    pub from_ns: i64,
    /// How long after it was sent a message disappears; more than zero.
    pub in_ns: i64,
}

impl DisappearingSettings {
    /// The setting held in two nullable columns or fields: on when both are present and the
    /// duration is positive.
    pub fn from_parts(from_ns: Option<i64>, in_ns: Option<i64>) -> Option<Self> {
        match (from_ns, in_ns) {
            (Some(from_ns), Some(in_ns)) if in_ns > 0 => {
                Some(DisappearingSettings { from_ns, in_ns })
            }
            _ => None,
        }
    }

    /// When a message of this kind sent at `sent_at_ns` expires under this setting (`None`:
    /// never).
    pub fn expire_at(&self, sent_at_ns: i64, kind: MessageKind) -> Option<i64> {
        (kind == MessageKind::Application && sent_at_ns >= self.from_ns)
            .then(|| sent_at_ns.saturating_add(self.in_ns))
    }
}

impl Conversation {
    /// Whether this installation can send and sync here.
    pub fn is_active(&self) -> bool {
        self.membership == Membership::Active
    }
}

/// A content type: who defines it, its name, and its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentType {
    pub authority: String,
    pub type_id: String,
    pub major: u32,
    pub minor: u32,
}

impl ContentType {
    /// Ferry's plain text: the content is UTF-8.
    pub fn text() -> Self {
        ContentType {
            authority: "ferry.chat".into(),
            type_id: "text".into(),
            major: 1,
            minor: 0,
        }
    }

    /// Whether the content is plain UTF-8 text (Ferry's or XMTP's text type).
    pub fn is_text(&self) -> bool {
        self.type_id == "text" && matches!(self.authority.as_str(), "ferry.chat" | "xmtp.org")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 32 bytes, the same on every installation that holds the message.
    pub id: Vec<u8>,
    pub conversation_id: Vec<u8>,
    pub sender_inbox_id: String,
    pub sender_installation_id: Vec<u8>,
    pub sent_at_ns: i64,
    pub kind: MessageKind,
    pub content_type: ContentType,
    pub content: Vec<u8>,
    pub fallback: Option<String>,
    pub parameters: Option<Vec<u8>>,
    pub reference_id: Option<Vec<u8>>,
    pub delivery_status: DeliveryStatus,
    /// When the message disappears from every installation (`None`: never). Fixed when it is
    /// stored, from its conversation's setting then; a message stored with `None` takes its
    /// conversation's current setting.
    pub expire_at_ns: Option<i64>,
}

impl Message {
    /// The text to show: the content for text types (when it is UTF-8), else the fallback.
    pub fn text(&self) -> Option<String> {
        if self.content_type.is_text() {
            if let Ok(s) = std::str::from_utf8(&self.content) {
                return Some(s.to_string());
            }
        }
        self.fallback.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub entity_type: ConsentEntity,
    pub entity: String,
    pub state: ConsentState,
    pub updated_at_ns: i64,
}
