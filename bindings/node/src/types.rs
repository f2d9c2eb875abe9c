//! Plain JS objects crossing the boundary, and their conversions. Ids are hex strings; times
//! are `bigint` nanoseconds since the Unix epoch.

use ferry_sdk::archive::{
    ArchiveElement, ArchiveFormat, ArchiveMetadata, ArchiveOptions, ImportReport, SignatureStatus,
};
use ferry_sdk::store::{ConsentEntity, ConsentState};
use ferry_sdk::{ArchiveKey, AvailableArchive, ContentTypeId, Envelope, Member, SyncOptions};
use napi::bindgen_prelude::{BigInt, Buffer, Either};
use napi_derive::napi;

use crate::invalid;

/// A content type: who defines it, its name and its version (XMTP's `ContentTypeId`).
#[napi(object)]
pub struct ContentType {
    pub authority_id: String,
    pub type_id: String,
    pub version_major: u32,
    pub version_minor: u32,
}

/// Content to send: its type, the encoded bytes and a text to show where the type is unknown.
#[napi(object)]
pub struct EncodedContent {
    #[napi(js_name = "type")]
    pub content_type: ContentType,
    pub content: Buffer,
    pub fallback: Option<String>,
    pub parameters: Option<Buffer>,
}

/// A conversation's disappearing messages (XMTP's shape).
#[napi(object)]
pub struct MessageDisappearingSettings {
    pub from_ns: BigInt,
    pub in_ns: BigInt,
}

/// A stored message.
#[napi(object)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub sender_inbox_id: String,
    pub sender_installation_id: String,
    pub sent_at_ns: BigInt,
    /// `application` or `membership_change`.
    pub kind: String,
    pub content_type: ContentType,
    /// The text: the content of a text message, else the fallback (if any).
    pub content: Option<String>,
    pub encoded_content: Buffer,
    pub fallback: Option<String>,
    pub reference_id: Option<String>,
    /// `unpublished`, `published` or `failed`.
    pub delivery_status: String,
    /// When the message disappears (disappearing messages), or null.
    pub expires_at_ns: Option<BigInt>,
}

pub(crate) fn message_to_js(m: &ferry_sdk::store::Message) -> Message {
    Message {
        id: hex::encode(&m.id),
        conversation_id: hex::encode(&m.conversation_id),
        sender_inbox_id: m.sender_inbox_id.clone(),
        sender_installation_id: hex::encode(&m.sender_installation_id),
        sent_at_ns: BigInt::from(m.sent_at_ns),
        kind: m.kind.as_str().to_string(),
        content_type: ContentType {
            authority_id: m.content_type.authority.clone(),
            type_id: m.content_type.type_id.clone(),
            version_major: m.content_type.major,
            version_minor: m.content_type.minor,
        },
        content: m.text(),
        encoded_content: m.content.clone().into(),
        fallback: m.fallback.clone(),
        reference_id: m.reference_id.as_ref().map(hex::encode),
        delivery_status: m.delivery_status.as_str().to_string(),
        expires_at_ns: m.expire_at_ns.map(BigInt::from),
    }
}

pub(crate) fn envelope_from_js(c: EncodedContent) -> Envelope {
    Envelope {
        content_type: Some(ContentTypeId {
            authority: c.content_type.authority_id,
            type_id: c.content_type.type_id,
            major: c.content_type.version_major,
            minor: c.content_type.version_minor,
        }),
        content: c.content.to_vec(),
        fallback: c.fallback,
        idempotency_key: None,
        sent_at_ns: 0,
        reference_id: None,
        parameters: c.parameters.map(|p| p.to_vec()),
    }
}

/// Which messages `messages()` returns.
#[napi(object)]
pub struct ListMessagesOptions {
    pub sent_after_ns: Option<BigInt>,
    pub sent_before_ns: Option<BigInt>,
    pub limit: Option<i64>,
}

pub(crate) fn ns(b: &Option<BigInt>) -> Option<i64> {
    b.as_ref().map(|b| b.get_i64().0)
}

/// A member of a conversation: an inbox and its installations there.
#[napi(object)]
pub struct GroupMember {
    pub inbox_id: String,
    pub installation_ids: Vec<String>,
}

pub(crate) fn member_to_js(m: &Member) -> GroupMember {
    GroupMember {
        inbox_id: m.inbox_id.to_string(),
        installation_ids: m.installation_ids.iter().map(|i| i.to_string()).collect(),
    }
}

/// One installation of an inbox.
#[napi(object)]
pub struct Installation {
    pub id: String,
}

/// An inbox as its verified identity log says.
#[napi(object)]
pub struct InboxState {
    pub inbox_id: String,
    pub installations: Vec<Installation>,
    pub revoked_installations: Vec<Installation>,
}

/// A consent decision to set.
#[napi(object)]
pub struct ConsentInput {
    /// `conversation` (a conversation id) or `inbox` (an inbox id).
    pub entity_type: String,
    pub entity: String,
    /// `allowed`, `denied` or `unknown`.
    pub state: String,
}

/// A consent decision held.
#[napi(object)]
pub struct ConsentRecord {
    pub entity_type: String,
    pub entity: String,
    pub state: String,
    pub updated_at_ns: BigInt,
}

pub(crate) fn consent_to_js(c: &ferry_sdk::ConsentRecord) -> ConsentRecord {
    ConsentRecord {
        entity_type: c.entity_type.as_str().to_string(),
        entity: c.entity.clone(),
        state: c.state.as_str().to_string(),
        updated_at_ns: BigInt::from(c.updated_at_ns),
    }
}

pub(crate) fn consent_state(s: &str) -> napi::Result<ConsentState> {
    ConsentState::parse(s).ok_or_else(|| {
        invalid(format!(
            "consent state {s:?}: use allowed, denied or unknown"
        ))
    })
}

pub(crate) fn consent_entity(s: &str) -> napi::Result<ConsentEntity> {
    ConsentEntity::parse(s).ok_or_else(|| {
        invalid(format!(
            "consent entity type {s:?}: use conversation or inbox"
        ))
    })
}

/// What an archive (or a history-sync archive) holds: a time range and its elements.
#[napi(object)]
pub struct ArchiveOptionsJs {
    pub start_ns: Option<BigInt>,
    pub end_ns: Option<BigInt>,
    /// `messages`, `consent` (both when left out).
    pub elements: Option<Vec<String>>,
}

fn elements(e: &Option<Vec<String>>) -> napi::Result<Vec<ArchiveElement>> {
    match e {
        None => Ok(vec![ArchiveElement::Messages, ArchiveElement::Consent]),
        Some(list) => list
            .iter()
            .map(|s| {
                ArchiveElement::parse(s).ok_or_else(|| {
                    invalid(format!("archive element {s:?}: use messages or consent"))
                })
            })
            .collect(),
    }
}

pub(crate) fn archive_options(o: &Option<ArchiveOptionsJs>) -> napi::Result<ArchiveOptions> {
    let mut out = ArchiveOptions::default();
    if let Some(o) = o {
        out.start_ns = ns(&o.start_ns);
        out.end_ns = ns(&o.end_ns);
        out.elements = elements(&o.elements)?;
    }
    Ok(out)
}

pub(crate) fn sync_options(o: &Option<ArchiveOptionsJs>) -> napi::Result<SyncOptions> {
    let mut out = SyncOptions::default();
    if let Some(o) = o {
        let e = elements(&o.elements)?;
        out.messages = e.contains(&ArchiveElement::Messages);
        out.consent = e.contains(&ArchiveElement::Consent);
        out.start_ns = ns(&o.start_ns);
        out.end_ns = ns(&o.end_ns);
    }
    Ok(out)
}

/// A 32-byte key (Uint8Array) or a passphrase (string).
pub(crate) fn archive_key(k: Either<Buffer, String>) -> napi::Result<ArchiveKey> {
    match k {
        Either::A(bytes) => ArchiveKey::from_bytes(&bytes).map_err(|e| invalid(e.to_string())),
        Either::B(pass) => Ok(ArchiveKey::passphrase(pass)),
    }
}

/// What an archive holds, read from its header and footer.
#[napi(object)]
pub struct ArchiveMetadataJs {
    pub format: String,
    pub format_version: String,
    pub created_at_ns: BigInt,
    /// XMTP's name for `createdAtNs`.
    pub exported_at_ns: BigInt,
    pub start_ns: Option<BigInt>,
    pub end_ns: Option<BigInt>,
    pub elements: Vec<String>,
    pub inbox_id: String,
    pub installation_id: String,
    pub conversation_count: Option<i64>,
    pub message_count: Option<i64>,
    pub consent_count: Option<i64>,
    /// `valid`, `invalid` or `unsigned`.
    pub signature: String,
}

fn element_name(e: &ArchiveElement) -> String {
    match e {
        ArchiveElement::Messages => "messages".into(),
        ArchiveElement::Consent => "consent".into(),
        ArchiveElement::Attachments => "attachments".into(),
    }
}

pub(crate) fn metadata_to_js(m: &ArchiveMetadata) -> ArchiveMetadataJs {
    ArchiveMetadataJs {
        format: match m.format {
            ArchiveFormat::Ferry => "ferry",
            ArchiveFormat::Xmtp => "xmtp",
        }
        .into(),
        format_version: m.format_version.clone(),
        created_at_ns: BigInt::from(m.created_at_ns),
        exported_at_ns: BigInt::from(m.created_at_ns),
        start_ns: m.start_ns.map(BigInt::from),
        end_ns: m.end_ns.map(BigInt::from),
        elements: m.elements.iter().map(element_name).collect(),
        inbox_id: m.inbox_id.clone(),
        installation_id: m.installation_id.clone(),
        conversation_count: m.conversation_count.map(|n| n as i64),
        message_count: m.message_count.map(|n| n as i64),
        consent_count: m.consent_count.map(|n| n as i64),
        signature: match m.signature {
            SignatureStatus::Valid => "valid",
            SignatureStatus::Invalid => "invalid",
            SignatureStatus::Unsigned => "unsigned",
        }
        .into(),
    }
}

/// What an import did.
#[napi(object)]
pub struct ImportReportJs {
    pub conversations_added: i64,
    pub conversations_merged: i64,
    pub messages_imported: i64,
    pub messages_skipped: i64,
    pub consent_applied: i64,
    pub consent_skipped: i64,
}

pub(crate) fn report_to_js(r: &ImportReport) -> ImportReportJs {
    ImportReportJs {
        conversations_added: r.conversations_added as i64,
        conversations_merged: r.conversations_merged as i64,
        messages_imported: r.messages_imported as i64,
        messages_skipped: r.messages_skipped as i64,
        consent_applied: r.consent_applied as i64,
        consent_skipped: r.consent_skipped as i64,
    }
}

/// A history archive another installation sent to the sync group.
#[napi(object)]
pub struct AvailableArchiveJs {
    pub pin: String,
    pub sender_installation_id: String,
    pub sent_at_ns: BigInt,
    pub created_at_ns: BigInt,
    pub conversation_count: i64,
    pub message_count: i64,
    pub messages: bool,
    pub consent: bool,
    pub state: String,
}

pub(crate) fn available_to_js(a: &AvailableArchive) -> AvailableArchiveJs {
    AvailableArchiveJs {
        pin: a.pin.clone(),
        sender_installation_id: a.sender_installation_id.to_string(),
        sent_at_ns: BigInt::from(a.sent_at_ns),
        created_at_ns: BigInt::from(a.created_at_ns),
        conversation_count: a.conversation_count as i64,
        message_count: a.message_count as i64,
        messages: a.messages,
        consent: a.consent,
        state: a.state.as_str().to_string(),
    }
}

/// What `syncAll` did.
#[napi(object)]
pub struct SyncSummary {
    pub conversations_joined: i64,
    pub messages_processed: i64,
    pub conversations_synced: i64,
    /// XMTP's name: how many conversations were synced.
    pub num_synced: i64,
    pub history_imported: i64,
}

pub(crate) fn summary_to_js(r: &ferry_sdk::SyncReport) -> SyncSummary {
    SyncSummary {
        conversations_joined: r.conversations_joined as i64,
        messages_processed: r.messages_processed as i64,
        conversations_synced: r.conversations_synced as i64,
        num_synced: r.conversations_synced as i64,
        history_imported: r.history_imported as i64,
    }
}

/// An HMAC key of a conversation for one period.
#[napi(object)]
pub struct HmacKeyJs {
    pub epoch: BigInt,
    pub key: Buffer,
}
