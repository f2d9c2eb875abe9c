//! History sync over the inbox's hidden sync group (seeds 001 and 002).
//!
//! - **Requests and replies.** A new installation asks; an installation that sees the request
//!   builds an archive with a fresh random key, uploads it to the history server and answers
//!   with its URL and key over the (end-to-end encrypted) sync group; the requester downloads,
//!   verifies and imports it. A reply is imported by itself only when it answers a request this
//!   installation made and has not had answered yet; every reply seen stays listed
//!   ([`Client::list_available_archives`]) and can be imported by hand
//!   ([`Client::process_sync_archive`]).
//! - **Preferences.** Consent changes and the inbox's HMAC secret travel as preference updates
//!   that every installation applies (newest consent wins; see [`Client::hmac_keys`]). They
//!   wait in an outbox in the store until they are sent, so a dead node delays them and loses
//!   nothing.
//! - **Once, with retries.** Each sync message's state (pending, processed, failed), attempts
//!   and last error are kept in the store. A retryable failure (the node or the history server
//!   unreachable) is tried again with exponential backoff; a permanent one (a tampered or
//!   foreign archive, a reply pointing to another host, an expired payload) or too many
//!   attempts mark it failed, with the reason. Nothing is imported twice.
//! - Only messages from this inbox's own, currently active installations count; everything
//!   else is ignored and logged with its reason. A reply's archive must be signed by the
//!   installation that sent the reply; one that is not (unsigned, or signed by another
//!   installation) fails for good and imports nothing. An empty `history_sync_url` turns
//!   requests, replies and uploads off (preferences still sync).

mod handling;
mod preferences;
mod requests;

use std::collections::{BTreeMap, BTreeSet};

use ferry_proto::message::{
    sync_payload, ConsentUpdate, ContentTypeId, Envelope, HmacKeyUpdate, PreferenceUpdates,
    SyncPayload, SyncReply, SyncRequest,
};
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ConversationFilter, ConversationKind, Message,
    MessageFilter, MessageKind,
};
use ferry_transport::HistoryError;
use prost::Message as _;
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Client, DeviceSyncEvent, Event};
use crate::archive::{ArchiveElement, ArchiveOptions, Control, ImportReport};
use crate::{ArchiveKey, Error, Result};

/// The content type of sync-group payloads.
const SYNC_AUTHORITY: &str = "ferry.chat";
const SYNC_TYPE: &str = "sync";
/// A sync message that keeps failing is given up on after this many attempts: with the
/// backoff below, about two and a half hours of retrying (a history server down for a while
/// is waited out; the payloads it keeps live 24 h).
const MAX_ATTEMPTS: i64 = 16;
/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF_NS`].
const BACKOFF_NS: i64 = 1_000_000_000;
const MAX_BACKOFF_NS: i64 = 30 * 60 * 1_000_000_000;
/// Set when the inbox lost an installation and the HMAC secret must rotate (kept until done).
/// Set when a wanted history request could not be sent yet (retried by `sync_all`).
const PENDING: i64 = 1;
const PROCESSED: i64 = 2;
const FAILED: i64 = 3;
/// The inbox's HMAC secret (an encoded [`HmacKeyUpdate`]); settings, so never in archives.
/// Preference updates waiting to go out over the sync group.
/// HMAC keys change every 30 days; [`Client::hmac_keys`] gives the previous, current and next.
pub const HMAC_PERIOD_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;

/// A pending request of this installation reused instead of sending a new one while it is
/// younger than this (the history server keeps an answer's payload about as long).
const REUSE_REQUEST_NS: i64 = 24 * 3600 * 1_000_000_000;

/// What this installation asked for under a pin (the store's `sync_requests` row: the times in
/// its columns, the rest in its record).
#[derive(serde::Serialize, serde::Deserialize)]
struct RequestRecord {
    messages: bool,
    consent: bool,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    sent_at_ns: i64,
    /// When the first reply was imported (`None`: still waiting for one).
    #[serde(default)]
    answered_at_ns: Option<i64>,
}

impl RequestRecord {
    /// Still taking replies: waiting for its first, or within the window after it.
    fn is_open(&self, now: i64) -> bool {
        self.answered_at_ns
            .is_none_or(|t| now < t.saturating_add(REPLY_WINDOW_NS))
    }

    /// Stores written before requests kept their options hold `pending`: everything, long ago.
    fn decode(v: &[u8]) -> RequestRecord {
        serde_json::from_slice(v).unwrap_or(RequestRecord {
            messages: true,
            consent: true,
            start_ns: None,
            end_ns: None,
            sent_at_ns: 0,
            answered_at_ns: None,
        })
    }

    /// A stored request: its record, with the times its row's columns hold.
    fn of_row(row: &ferry_store::SyncRequest) -> RequestRecord {
        RequestRecord {
            sent_at_ns: row.sent_at_ns,
            answered_at_ns: row.answered_at_ns,
            ..RequestRecord::decode(&row.request)
        }
    }

    /// The row to store for request `pin`.
    fn to_row(&self, pin: &str) -> ferry_store::SyncRequest {
        ferry_store::SyncRequest {
            pin: pin.to_string(),
            sent_at_ns: self.sent_at_ns,
            answered_at_ns: self.answered_at_ns,
            request: serde_json::to_vec(self).expect("a record serializes"),
        }
    }

    fn options(&self) -> SyncOptions {
        SyncOptions {
            messages: self.messages,
            consent: self.consent,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
        }
    }

    fn payload(&self, request_id: &str) -> sync_payload::Kind {
        sync_payload::Kind::Request(SyncRequest {
            request_id: request_id.to_string(),
            messages: self.messages,
            consent: self.consent,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
        })
    }
}

/// A history request: its pin, and whether it was one already pending (nothing new sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRequest {
    /// The request's id (32 hex digits): answers carry it.
    pub pin: String,
    /// Whether an equal request was already waiting for an answer (nothing new was sent).
    pub reused: bool,
}

/// A request stays open for more replies this long after its first one was imported: every
/// installation that answers within it adds what it holds (imports are additive), so the new
/// installation ends with the union of the inbox's histories.
const REPLY_WINDOW_NS: i64 = 24 * 3600 * 1_000_000_000;

/// What importing one announced archive did (the record of a `sync_imports` row).
#[derive(serde::Serialize, serde::Deserialize)]
struct ImportRecord {
    /// The sync message (hex) that announced the archive imported.
    message_id: String,
    /// The installation that answered (hex; empty in records written before it was kept).
    #[serde(default)]
    sender_installation_id: String,
    #[serde(default)]
    imported_at_ns: i64,
    /// Where the archive was (a replay of the same answer is not imported again).
    #[serde(default)]
    url: String,
    report: ImportReport,
}

/// What to ask for, or what to send, in history sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// Conversations and their messages.
    pub messages: bool,
    /// Consent records.
    pub consent: bool,
    /// Only messages sent at or after this time (ns since the epoch).
    pub start_ns: Option<i64>,
    /// Only messages sent before this time (ns since the epoch, exclusive).
    pub end_ns: Option<i64>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            messages: true,
            consent: true,
            start_ns: None,
            end_ns: None,
        }
    }
}

impl SyncOptions {
    /// Consent records only, no messages.
    pub fn consent_only() -> Self {
        SyncOptions {
            messages: false,
            ..Default::default()
        }
    }

    /// Conversations and messages only, no consent.
    pub fn messages_only() -> Self {
        SyncOptions {
            consent: false,
            ..Default::default()
        }
    }
}

/// Where this installation stands with an announced archive ([`AvailableArchive::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveState {
    /// Not handled yet.
    New,
    /// Tried and to be tried again (a dead server, say).
    Pending,
    /// Handled: imported, or ignored as an answer to another installation's request.
    Processed,
    /// Given up on, for good (see [`AvailableArchive::last_error`]).
    Failed,
}

impl ArchiveState {
    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveState::New => "new",
            ArchiveState::Pending => "pending",
            ArchiveState::Processed => "processed",
            ArchiveState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ArchiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ArchiveState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A history archive another installation of this inbox announced in the sync group.
#[derive(Clone, Serialize)]
pub struct AvailableArchive {
    /// The request id it answers (or the pin its sender chose).
    pub pin: String,
    /// The installation that made it.
    pub sender_installation_id: crate::InstallationId,
    /// When the announcement was sent (ns since the Unix epoch).
    pub sent_at_ns: i64,
    /// When the archive was made (ns since the Unix epoch).
    pub created_at_ns: i64,
    /// Conversations in the archive.
    pub conversation_count: u64,
    /// Messages in the archive.
    pub message_count: u64,
    /// Whether it carries conversations and messages.
    pub messages: bool,
    /// Whether it carries consent records.
    pub consent: bool,
    /// The start of its time range (inclusive, ns), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<i64>,
    /// The end of its time range (exclusive, ns), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<i64>,
    /// The encrypted archive's size in bytes.
    pub size_bytes: u64,
    /// Where it is on the history server.
    pub url: String,
    /// Where handling it stands (`new`, `pending`, `processed` or `failed` in JSON).
    pub state: ArchiveState,
    /// Whether this installation imported it.
    pub imported: bool,
    /// How many times handling it was tried.
    pub attempts: i64,
    /// Why the last try failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip)]
    key: Zeroizing<Vec<u8>>,
    #[serde(skip)]
    message_id: Vec<u8>,
}

impl std::fmt::Debug for AvailableArchive {
    // By hand: the archive key never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvailableArchive")
            .field("pin", &self.pin)
            .field("sender_installation_id", &self.sender_installation_id)
            .field("sent_at_ns", &self.sent_at_ns)
            .field("message_count", &self.message_count)
            .field("url", &self.url)
            .field("state", &self.state)
            .field("imported", &self.imported)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// One HMAC key of a conversation, for one 30-day period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HmacKey {
    /// The period: nanoseconds since the epoch divided by [`HMAC_PERIOD_NS`].
    pub epoch: i64,
    /// 32 bytes, hex.
    pub key: String,
}

/// Whether an HMAC secret update beats the one held: a higher revision, then the earlier
/// created, then the lower bytes. Every installation picks the same one.
fn hmac_beats(new: &HmacKeyUpdate, old: &HmacKeyUpdate) -> bool {
    (
        std::cmp::Reverse(new.revision),
        new.created_at_ns,
        &new.secret,
    ) < (
        std::cmp::Reverse(old.revision),
        old.created_at_ns,
        &old.secret,
    )
}

/// The key of one conversation for one period: HKDF-SHA256 of the inbox's secret.
fn derive_hmac_key(secret: &[u8], conversation_id: &[u8], epoch: i64) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"ferry hmac key v1"), secret);
    let mut info = Vec::with_capacity(conversation_id.len() + 8);
    info.extend_from_slice(conversation_id);
    info.extend_from_slice(&epoch.to_be_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(&info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// Whether trying again later may succeed.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Transport(_) | Error::Io { .. } => true,
        Error::History(h) => match h {
            HistoryError::Unavailable(_) | HistoryError::Io { .. } => true,
            HistoryError::Rejected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        },
        _ => false,
    }
}

fn backoff_ns(attempts: i64) -> i64 {
    let shift = (attempts - 1).clamp(0, 20) as u32;
    BACKOFF_NS.saturating_mul(1 << shift).min(MAX_BACKOFF_NS)
}

fn random_pin() -> String {
    let mut raw = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

fn is_sync_payload(m: &Message) -> bool {
    m.kind == MessageKind::Application
        && m.content_type.authority == SYNC_AUTHORITY
        && m.content_type.type_id == SYNC_TYPE
}

/// A new inbox's first HMAC secret (revision 0), kept without sending: there is nobody to
/// send it to yet.
pub(crate) fn init_hmac_secret(store: &ferry_store::Store) -> Result<()> {
    let mut secret = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let key = HmacKeyUpdate {
        secret,
        revision: 0,
        created_at_ns: crate::now_ns(),
    };
    store.set_hmac_key(&key.encode_to_vec())?;
    Ok(())
}

fn queue_preferences(store: &ferry_store::Store, p: &PreferenceUpdates) -> Result<()> {
    store.preference_outbox_push(&p.encode_to_vec())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(revision: u64, created_at_ns: i64, byte: u8) -> HmacKeyUpdate {
        HmacKeyUpdate {
            secret: vec![byte; 32],
            revision,
            created_at_ns,
        }
    }

    #[test]
    fn the_hmac_secret_every_installation_keeps_is_the_same() {
        // A higher revision wins whatever its age; within one, the earliest; then the bytes.
        assert!(hmac_beats(&key(1, 50, 9), &key(0, 10, 1)));
        assert!(!hmac_beats(&key(0, 10, 1), &key(1, 50, 9)));
        assert!(hmac_beats(&key(0, 10, 9), &key(0, 20, 1)));
        assert!(hmac_beats(&key(0, 10, 1), &key(0, 10, 2)));
        assert!(!hmac_beats(&key(0, 10, 1), &key(0, 10, 1)));
    }

    #[test]
    fn hmac_keys_differ_by_conversation_and_period_and_are_stable() {
        let s = [7u8; 32];
        let a = derive_hmac_key(&s, b"group-a", 100);
        assert_eq!(*a, *derive_hmac_key(&s, b"group-a", 100));
        assert_ne!(*a, *derive_hmac_key(&s, b"group-b", 100));
        assert_ne!(*a, *derive_hmac_key(&s, b"group-a", 101));
        assert_ne!(*a, *derive_hmac_key(&[8u8; 32], b"group-a", 100));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(backoff_ns(1), BACKOFF_NS);
        assert_eq!(backoff_ns(2), 2 * BACKOFF_NS);
        assert_eq!(backoff_ns(4), 8 * BACKOFF_NS);
        assert_eq!(backoff_ns(40), MAX_BACKOFF_NS);
    }
}
