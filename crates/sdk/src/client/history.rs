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
use crate::backup::{ArchiveElement, ArchiveOptions, Control, ImportReport};
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
const S_ROTATE: &str = "hmac.rotate_pending";
/// Set when a wanted history request could not be sent yet (retried by `sync_all`).
const S_REQUEST_WANTED: &str = "sync_request_wanted";
const PENDING: i64 = 1;
const PROCESSED: i64 = 2;
const FAILED: i64 = 3;
/// The inbox's HMAC secret (an encoded [`HmacKeyUpdate`]); settings, so never in archives.
const S_HMAC: &str = "hmac.key";
/// Preference updates waiting to go out over the sync group.
const OUTBOX: &str = "preference_outbox/";
/// HMAC keys change every 30 days; [`Client::hmac_keys`] gives the previous, current and next.
pub const HMAC_PERIOD_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;

fn request_key(id: &str) -> String {
    format!("sync_request/{id}")
}

/// Marks a request this installation answered, so a request sent again (a requester that
/// moved to the inbox's surviving sync group re-sends what is still open) is not answered twice.
fn answered_key(id: &str) -> String {
    format!("sync_answered/{id}")
}

/// A pending request of this installation reused instead of sending a new one while it is
/// younger than this (the history server keeps an answer's payload about as long).
const REUSE_REQUEST_NS: i64 = 24 * 3600 * 1_000_000_000;

/// What this installation asked for under a pin (kept under [`request_key`] until answered).
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
    pub pin: String,
    pub reused: bool,
}

/// Where the import of one reply (the sync message `message_id`) to `pin` is recorded. Stores
/// written when a request took one reply have one record at `sync_import/{pin}`.
fn import_key(pin: &str, message_id: &[u8]) -> String {
    format!("sync_import/{pin}/{}", hex::encode(message_id))
}

/// A request stays open for more replies this long after its first one was imported: every
/// installation that answers within it adds what it holds (imports are additive), so the new
/// installation ends with the union of the inbox's histories.
const REPLY_WINDOW_NS: i64 = 24 * 3600 * 1_000_000_000;

/// What importing one announced archive did (kept under [`import_key`]).
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
    pub messages: bool,
    pub consent: bool,
    /// Only messages sent at or after this time (ns since the epoch).
    pub start_ns: Option<i64>,
    /// Only messages sent before this time.
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
    pub fn consent_only() -> Self {
        SyncOptions {
            messages: false,
            ..Default::default()
        }
    }

    pub fn messages_only() -> Self {
        SyncOptions {
            consent: false,
            ..Default::default()
        }
    }
}

/// A history archive another installation of this inbox announced in the sync group.
#[derive(Clone, Serialize)]
pub struct AvailableArchive {
    /// The request id it answers (or the pin its sender chose).
    pub pin: String,
    /// The installation that made it (hex).
    pub sender_installation_id: String,
    pub sent_at_ns: i64,
    pub created_at_ns: i64,
    pub conversation_count: u64,
    pub message_count: u64,
    pub messages: bool,
    pub consent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<i64>,
    pub size_bytes: u64,
    pub url: String,
    /// `new` (not handled yet), `pending` (to be retried), `processed` (handled: imported,
    /// or ignored as an answer to someone else's request) or `failed`.
    pub state: &'static str,
    /// Whether this installation imported it.
    pub imported: bool,
    pub attempts: i64,
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

impl Client {
    // ---- requests ----------------------------------------------------------------------

    /// Asks this inbox's other installations for history over the sync group; returns the
    /// request id (the "pin") a reply will name. An online installation answers when it next
    /// syncs (`ferry run` answers at once); the reply is imported on this installation's next
    /// sync. Fails when history sync is off (no history server URL).
    pub fn send_sync_request(&self, options: &SyncOptions) -> Result<String> {
        if self.history_sync_url().is_empty() {
            return Err(Error::HistorySyncOff);
        }
        if !options.messages && !options.consent {
            return Err(Error::NoElements);
        }
        let group = self.ensure_sync_group()?;
        let id = random_pin();
        let record = RequestRecord {
            messages: options.messages,
            consent: options.consent,
            start_ns: options.start_ns,
            end_ns: options.end_ns,
            sent_at_ns: crate::now_ns(),
            answered_at_ns: None,
        };
        self.store().set_setting(
            &request_key(&id),
            &serde_json::to_vec(&record).expect("a record serializes"),
        )?;
        self.send_sync_payload(&group, record.payload(&id))?;
        Ok(id)
    }

    /// Asks for history unless a request for the same thing is still waiting for its answer
    /// (sent in the last 24 hours): then that one's pin comes back and nothing is sent, so an
    /// online installation does not build and upload a second archive for the same need.
    pub fn request_history(&self, options: &SyncOptions) -> Result<HistoryRequest> {
        if self.history_sync_url().is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let now = crate::now_ns();
        let pending = self.store().settings_with_prefix("sync_request/")?;
        for (key, value) in pending {
            let record = RequestRecord::decode(&value);
            if record.answered_at_ns.is_none()
                && record.options() == *options
                && now.saturating_sub(record.sent_at_ns) < REUSE_REQUEST_NS
            {
                return Ok(HistoryRequest {
                    pin: key["sync_request/".len()..].to_string(),
                    reused: true,
                });
            }
        }
        Ok(HistoryRequest {
            pin: self.send_sync_request(options)?,
            reused: false,
        })
    }

    /// Sends this installation's unanswered requests again into `group` (the inbox's sync
    /// group it has just settled on), with their pins, for installations that never read the
    /// group they first went to. Whoever answered one already does not answer it twice.
    pub(crate) fn resend_pending_requests(&self, group: &[u8]) -> Result<u64> {
        let pending = self.store().settings_with_prefix("sync_request/")?;
        let mut sent = 0;
        for (key, value) in pending {
            let record = RequestRecord::decode(&value);
            if record.answered_at_ns.is_some() {
                continue;
            }
            self.send_sync_payload(group, record.payload(&key["sync_request/".len()..]))?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Requests messages and consent (seed 002's `sync_history`); returns the pin (that of the
    /// request still pending, if there is one: see [`Client::request_history`]).
    pub fn sync_history(&self) -> Result<String> {
        Ok(self.request_history(&SyncOptions::default())?.pin)
    }

    /// Requests consent only; returns the pin.
    pub fn sync_consent(&self) -> Result<String> {
        self.send_sync_request(&SyncOptions::consent_only())
    }

    /// Requests messages only; returns the pin.
    pub fn sync_messages(&self) -> Result<String> {
        self.send_sync_request(&SyncOptions::messages_only())
    }

    /// This installation's requests that no reply has answered yet (their pins).
    pub fn pending_sync_requests(&self) -> Result<Vec<String>> {
        Ok(self
            .open_requests()?
            .into_iter()
            .filter(|(_, r)| r.answered_at_ns.is_none())
            .map(|(pin, _)| pin)
            .collect())
    }

    /// This installation's requests still taking replies, by pin (closing those whose window
    /// has passed).
    fn open_requests(&self) -> Result<Vec<(String, RequestRecord)>> {
        let now = crate::now_ns();
        let store = self.store();
        let mut out = Vec::new();
        for (key, value) in store.settings_with_prefix("sync_request/")? {
            let record = RequestRecord::decode(&value);
            if record.is_open(now) {
                out.push((key["sync_request/".len()..].to_string(), record));
            } else {
                store.delete_setting(&key)?;
            }
        }
        Ok(out)
    }

    /// The report of the first import for the request with this pin, if this installation
    /// imported an answer to it (see [`Client::sync_import_reports`] for every answer's).
    pub fn sync_import_report(&self, pin: &str) -> Result<Option<ImportReport>> {
        Ok(self
            .import_records(pin)?
            .into_iter()
            .next()
            .map(|r| r.report))
    }

    /// Every answer to the request with this pin that was imported here, first first: the
    /// answering installation (hex) and what its archive added.
    pub fn sync_import_reports(&self, pin: &str) -> Result<Vec<(String, ImportReport)>> {
        Ok(self
            .import_records(pin)?
            .into_iter()
            .map(|r| (r.sender_installation_id, r.report))
            .collect())
    }

    /// The import records of `pin`, in the order they were made.
    fn import_records(&self, pin: &str) -> Result<Vec<ImportRecord>> {
        let mut records: Vec<ImportRecord> = self
            .store()
            .settings_with_prefix(&format!("sync_import/{pin}"))?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        records.sort_by_key(|r| r.imported_at_ns);
        Ok(records)
    }

    // ---- archives ----------------------------------------------------------------------

    /// Builds an archive now, uploads it and announces it in the sync group under `pin` (a
    /// fresh random one when `None`), without waiting for a request. The installation that
    /// made a request with that pin imports it by itself; any other can import it with
    /// [`Client::process_sync_archive`]. Returns the pin.
    pub fn send_sync_archive(&self, options: &SyncOptions, pin: Option<&str>) -> Result<String> {
        if self.history_sync_url().is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let pin = pin.map(str::to_string).unwrap_or_else(random_pin);
        let group = self.ensure_sync_group()?;
        self.upload_and_reply(&group, &pin, options)?;
        Ok(pin)
    }

    /// The archives announced in the sync group in the last `days` days, newest first (after
    /// catching up with the sync group, when the node is reachable).
    pub fn list_available_archives(&self, days: u32) -> Result<Vec<AvailableArchive>> {
        // An answer may come in the inbox's older sync group, which this installation may not
        // have joined yet.
        if let Err(e) = self.sync_welcomes() {
            tracing::info!(error = %e, "welcomes not fetched; listing what is here");
        }
        for g in self.active_group_ids(Some(ConversationKind::Sync))? {
            if let Err(e) = self.sync_group(&g) {
                tracing::info!(error = %e, "sync group not caught up; listing what is here");
                break;
            }
        }
        let since =
            crate::now_ns().saturating_sub((days as i64).saturating_mul(86_400 * 1_000_000_000));
        let own_active = self.own_active_installations()?;
        let mut out = Vec::new();
        for m in self.sync_group_payloads()? {
            if m.sent_at_ns < since || !self.is_own_installation(&m, &own_active) {
                continue;
            }
            let Ok(SyncPayload {
                kind: Some(sync_payload::Kind::Reply(r)),
            }) = SyncPayload::decode(m.content.as_slice())
            else {
                continue;
            };
            let record = self.store().sync_message_record(&m.id)?;
            let imported = self
                .import_records(&r.request_id)?
                .iter()
                .any(|i| i.message_id == hex::encode(&m.id));
            out.push(AvailableArchive {
                pin: r.request_id,
                sender_installation_id: hex::encode(&m.sender_installation_id),
                sent_at_ns: m.sent_at_ns,
                created_at_ns: r.created_at_ns,
                conversation_count: r.conversation_count,
                message_count: r.message_count,
                messages: r.messages,
                consent: r.consent,
                start_ns: r.start_ns,
                end_ns: r.end_ns,
                size_bytes: r.size_bytes,
                url: r.url,
                state: match record.as_ref().map(|r| r.state) {
                    None => "new",
                    Some(PROCESSED) => "processed",
                    Some(FAILED) => "failed",
                    Some(_) => "pending",
                },
                imported,
                attempts: record.as_ref().map_or(0, |r| r.attempts),
                last_error: record.and_then(|r| r.last_error),
                key: Zeroizing::new(r.key),
                message_id: m.id,
            });
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.sent_at_ns));
        Ok(out)
    }

    /// Downloads, verifies and imports an announced archive: the one with `pin`, or the newest
    /// when `None` (additive; what is here already is skipped). Returns the import report.
    pub fn process_sync_archive(&self, pin: Option<&str>) -> Result<ImportReport> {
        let archives = self.list_available_archives(u32::MAX)?;
        let chosen = match pin {
            Some(p) => archives.into_iter().find(|a| a.pin == p),
            None => archives.into_iter().next(),
        }
        .ok_or_else(|| Error::NoSuchArchive(pin.unwrap_or("(latest)").to_string()))?;
        let report = self.import_announced(
            &chosen.message_id,
            &chosen.sender_installation_id,
            &chosen.pin,
            &chosen.url,
            &chosen.key,
        )?;
        let attempts = self
            .store()
            .sync_message_record(&chosen.message_id)?
            .map_or(0, |r| r.attempts);
        self.store().set_sync_message_state(
            &chosen.message_id,
            PROCESSED,
            attempts + 1,
            None,
            crate::now_ns(),
        )?;
        Ok(report)
    }

    // ---- preferences -------------------------------------------------------------------

    /// Per-conversation HMAC keys (for push notification topics) for the previous, current and
    /// next 30-day period, by conversation id (hex). They derive from one secret per inbox that
    /// its installations share over the sync group, so they are the same on every installation
    /// of the inbox; revoking an installation rotates the secret.
    pub fn hmac_keys(&self) -> Result<BTreeMap<String, Vec<HmacKey>>> {
        let secret = self.ensure_hmac_secret()?;
        let now = crate::now_ns().div_euclid(HMAC_PERIOD_NS);
        let conversations = self.store().conversations(&ConversationFilter::default())?;
        Ok(conversations
            .into_iter()
            .map(|c| {
                let keys = (now - 1..=now + 1)
                    .map(|epoch| HmacKey {
                        epoch,
                        key: hex::encode(derive_hmac_key(&secret.secret, &c.id, epoch).as_ref()),
                    })
                    .collect();
                (hex::encode(&c.id), keys)
            })
            .collect())
    }

    /// The revision of the inbox's HMAC secret held here (`None` before there is one).
    pub fn hmac_key_revision(&self) -> Result<Option<u64>> {
        Ok(self.hmac_secret()?.map(|k| k.revision))
    }

    fn hmac_secret(&self) -> Result<Option<HmacKeyUpdate>> {
        Ok(self
            .store()
            .setting(S_HMAC)?
            .and_then(|v| HmacKeyUpdate::decode(v.as_slice()).ok()))
    }

    /// The inbox's secret; one is made (revision 0) and shared when none has arrived yet. Two
    /// installations that do so at once settle on the same one (see [`hmac_beats`]).
    pub(crate) fn ensure_hmac_secret(&self) -> Result<HmacKeyUpdate> {
        if let Some(k) = self.hmac_secret()? {
            return Ok(k);
        }
        self.new_hmac_secret(0)
    }

    /// Rotates the inbox's HMAC secret after one of its installations was revoked: every sync
    /// group first drops revoked installations and this installation catches up with them (so
    /// it holds the newest revision), then a secret one revision past it goes to the
    /// installations that remain. Recorded first, so a failure midway is retried by the next
    /// [`Client::sync_all`].
    pub(crate) fn rotate_after_revocation(&self) -> Result<()> {
        self.store().set_setting(S_ROTATE, b"1")?;
        for id in self.active_group_ids(Some(ConversationKind::Sync))? {
            self.group_handle(id.clone()).add_missing_installations()?;
            self.sync_group(&id)?;
        }
        self.process_sync_messages()?;
        let next = self
            .hmac_secret()?
            .map_or(0, |k| k.revision.saturating_add(1));
        self.new_hmac_secret(next)?;
        self.store().delete_setting(S_ROTATE)?;
        Ok(())
    }

    /// Work a crash or a dead node left undone: a rotation, a history request.
    pub(crate) fn resume_history_chores(&self) {
        if matches!(self.store().setting(S_ROTATE), Ok(Some(_))) {
            if let Err(e) = self.rotate_after_revocation() {
                tracing::warn!(error = %e, "HMAC secret rotation still pending");
            }
        }
        if matches!(self.store().setting(S_REQUEST_WANTED), Ok(Some(_))) {
            match self.sync_history() {
                Ok(_) => {
                    let _ = self.store().delete_setting(S_REQUEST_WANTED);
                }
                Err(e) => tracing::info!(error = %e, "history request still not sent"),
            }
        }
    }

    /// Remembers that a history request is wanted but could not be sent yet.
    pub(crate) fn want_history_request(&self) -> Result<()> {
        self.store().set_setting(S_REQUEST_WANTED, b"1")?;
        Ok(())
    }

    fn new_hmac_secret(&self, revision: u64) -> Result<HmacKeyUpdate> {
        let mut secret = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let key = HmacKeyUpdate {
            secret,
            revision,
            created_at_ns: crate::now_ns(),
        };
        {
            let store = self.store();
            store.set_setting(S_HMAC, &key.encode_to_vec())?;
            queue_preferences(
                &store,
                &PreferenceUpdates {
                    consent: Vec::new(),
                    hmac_key: Some(key.clone()),
                },
            )?;
        }
        self.flush_or_log();
        Ok(key)
    }

    /// Queues the current HMAC secret for the sync group (for installations just added to it).
    pub(crate) fn share_hmac_secret(&self) -> Result<()> {
        if let Some(key) = self.hmac_secret()? {
            queue_preferences(
                &self.store(),
                &PreferenceUpdates {
                    consent: Vec::new(),
                    hmac_key: Some(key),
                },
            )?;
        }
        Ok(())
    }

    /// Queues a consent change for the inbox's other installations (called with the store
    /// held, in the transaction that records it).
    pub(crate) fn queue_consent(store: &ferry_store::Store, c: &ConsentRecord) -> Result<()> {
        queue_preferences(
            store,
            &PreferenceUpdates {
                consent: vec![ConsentUpdate {
                    entity_type: c.entity_type.as_i64() as i32,
                    entity: c.entity.clone(),
                    state: c.state.as_i64() as i32,
                    updated_at_ns: c.updated_at_ns,
                }],
                hmac_key: None,
            },
        )
    }

    /// Sends the queued preference updates over the sync group; returns how many went out.
    /// Each leaves the outbox only once sent.
    pub fn flush_preference_outbox(&self) -> Result<u64> {
        let queued = self.store().settings_with_prefix(OUTBOX)?;
        if queued.is_empty() {
            return Ok(0);
        }
        let group = self.ensure_sync_group()?;
        self.secure_sync_group(&group)?;
        let mut sent = 0;
        for (key, bytes) in queued {
            if let Ok(update) = PreferenceUpdates::decode(bytes.as_slice()) {
                self.send_sync_payload(&group, sync_payload::Kind::Preferences(update))?;
                sent += 1;
            }
            self.store().delete_setting(&key)?;
        }
        Ok(sent)
    }

    /// Sends what waits in the outbox now if it can; otherwise the next sync does.
    pub(crate) fn flush_or_log(&self) {
        if let Err(e) = self.flush_preference_outbox() {
            tracing::info!(error = %e, "preference updates wait for the next sync");
        }
    }

    fn apply_preferences(&self, p: PreferenceUpdates) -> Result<()> {
        let mut events = Vec::new();
        {
            let store = self.store();
            for c in p.consent {
                let (Some(entity_type), Some(state)) = (
                    ConsentEntity::from_i64(c.entity_type as i64),
                    ConsentState::from_i64(c.state as i64),
                ) else {
                    tracing::warn!("consent update of an unknown kind ignored");
                    continue;
                };
                let record = ConsentRecord {
                    entity_type,
                    entity: c.entity,
                    state,
                    updated_at_ns: c.updated_at_ns,
                };
                if store.set_consent(&record)? {
                    events.push(Event::Consent(record));
                }
            }
            if let Some(k) = p.hmac_key {
                if k.secret.len() != 32 {
                    tracing::warn!("HMAC secret of the wrong size ignored");
                } else {
                    let held = store
                        .setting(S_HMAC)?
                        .and_then(|v| HmacKeyUpdate::decode(v.as_slice()).ok());
                    // A revision may move on by one at a time: a jump (say, to the top, which
                    // would win every later rotation) is refused.
                    let plausible = held
                        .as_ref()
                        .is_none_or(|h| k.revision <= h.revision.saturating_add(1));
                    if !plausible {
                        tracing::warn!(revision = k.revision, "HMAC secret revision jump refused");
                    } else if held.as_ref().is_none_or(|h| hmac_beats(&k, h)) {
                        store.set_setting(S_HMAC, &k.encode_to_vec())?;
                    }
                }
            }
        }
        self.emit(events);
        Ok(())
    }

    // ---- the worker's part -------------------------------------------------------------

    /// Brings a sync group in line with the inbox's log before anything secret goes into it:
    /// revoked installations are removed first (and new ones added), so an archive key or the
    /// HMAC secret reaches only installations that are active now.
    fn secure_sync_group(&self, group: &[u8]) -> Result<()> {
        self.group_handle(group.to_vec())
            .add_missing_installations()
    }

    fn send_sync_payload(&self, group: &[u8], kind: sync_payload::Kind) -> Result<()> {
        let env = Envelope {
            content_type: Some(ContentTypeId {
                authority: SYNC_AUTHORITY.into(),
                type_id: SYNC_TYPE.into(),
                major: 1,
                minor: 0,
            }),
            content: SyncPayload { kind: Some(kind) }.encode_to_vec(),
            fallback: None,
            sent_at_ns: crate::now_ns(),
            reference_id: None,
            parameters: None,
        };
        self.group_handle(group.to_vec()).send_envelope(env)?;
        Ok(())
    }

    /// Every sync payload stored from every sync group (of any membership), oldest first;
    /// with `unhandled`, only those not processed or failed yet (what a pass works on, so its
    /// cost does not grow with the group's history).
    fn sync_group_payloads_where(&self, unhandled: bool) -> Result<Vec<Message>> {
        let groups = self.store().conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })?;
        let mut out = Vec::new();
        for g in groups {
            let messages = if unhandled {
                self.store().unhandled_sync_messages(&g.id)?
            } else {
                self.store().messages(&MessageFilter {
                    conversation_id: Some(g.id.clone()),
                    include_sync: true,
                    ..Default::default()
                })?
            };
            out.extend(messages.into_iter().filter(is_sync_payload));
        }
        Ok(out)
    }

    fn sync_group_payloads(&self) -> Result<Vec<Message>> {
        self.sync_group_payloads_where(false)
    }

    /// This inbox's active installations per its verified log, fetched now: a node that
    /// cannot be asked is a retryable error, never a reason to ignore a message for good.
    fn own_active_installations(&self) -> Result<BTreeSet<Vec<u8>>> {
        let me = self.inner.inbox_id.clone();
        let state = self
            .refresh_inboxes(std::slice::from_ref(&me))?
            .remove(&me)
            .ok_or_else(|| Error::UnknownInbox(me.clone()))?;
        Ok(state
            .active_installations()
            .iter()
            .map(|i| i.to_vec())
            .collect())
    }

    /// Whether a sync message comes from an active installation of this inbox (anything else
    /// is logged with its reason).
    fn is_own_installation(&self, m: &Message, own_active: &BTreeSet<Vec<u8>>) -> bool {
        if m.sender_inbox_id != self.inner.inbox_id {
            tracing::warn!(sender = %m.sender_inbox_id, "sync message from another inbox ignored");
            return false;
        }
        if !own_active.contains(&m.sender_installation_id) {
            tracing::warn!(
                installation = %hex::encode(&m.sender_installation_id),
                "sync message from an installation not active in this inbox's log ignored"
            );
            return false;
        }
        true
    }

    /// Handles the sync-group messages not handled yet: applies preference updates, answers
    /// requests, imports replies to this installation's requests. Returns how many archives it
    /// imported. A message that failed waits out its backoff before it is tried again.
    pub fn process_sync_messages(&self) -> Result<u64> {
        // One pass at a time in this process (the worker and the app may both sync); other
        // processes are kept off each message by the claim below.
        let _one = self
            .inner
            .history_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut own_active: Option<BTreeSet<Vec<u8>>> = None;
        let mut imported = 0;
        for m in self.sync_group_payloads_where(true)? {
            let Some(attempts) = self.claim_sync_message(&m.id)? else {
                continue;
            };
            if own_active.is_none() {
                match self.own_active_installations() {
                    Ok(a) => own_active = Some(a),
                    Err(e) => {
                        // Not handled: the claim's backoff brings it back.
                        self.record_attempt(&m.id, attempts, &e)?;
                        return Err(e);
                    }
                }
            }
            let outcome = if self.is_own_installation(&m, own_active.as_ref().expect("set")) {
                self.handle_sync_message(&m)
            } else {
                Ok(false)
            };
            match outcome {
                Ok(did_import) => {
                    imported += did_import as u64;
                    self.store().set_sync_message_state(
                        &m.id,
                        PROCESSED,
                        attempts,
                        None,
                        crate::now_ns(),
                    )?;
                }
                Err(e) => self.record_attempt(&m.id, attempts, &e)?,
            }
        }
        Ok(imported)
    }

    /// Takes a sync message for handling, in one transaction: `None` when it is done, given
    /// up on, waiting out its backoff, or being handled elsewhere right now; else the number
    /// of this attempt, recorded before the work starts.
    fn claim_sync_message(&self, id: &[u8]) -> Result<Option<i64>> {
        let store = self.store();
        let tx = ferry_store::rusqlite::Transaction::new_unchecked(
            store.conn(),
            ferry_store::rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(ferry_store::Error::from)?;
        let now = crate::now_ns();
        let attempts = match store.sync_message_record(id)? {
            Some(r) if r.state == PROCESSED || r.state == FAILED => return Ok(None),
            Some(r) if now < r.updated_at_ns.saturating_add(backoff_ns(r.attempts)) => {
                return Ok(None)
            }
            Some(r) => r.attempts + 1,
            None => 1,
        };
        store.set_sync_message_state(id, PENDING, attempts, Some("in progress"), now)?;
        tx.commit().map_err(ferry_store::Error::from)?;
        Ok(Some(attempts))
    }

    /// A failed attempt: pending (to retry after its backoff) or, when the failure cannot
    /// pass or the attempts are used up, failed with its reason.
    fn record_attempt(&self, id: &[u8], attempts: i64, e: &Error) -> Result<()> {
        let state = if retryable(e) && attempts < MAX_ATTEMPTS {
            PENDING
        } else {
            FAILED
        };
        let reason = e.to_string();
        tracing::warn!(
            error = %reason,
            attempts,
            gave_up = state == FAILED,
            "sync message not handled"
        );
        self.store()
            .set_sync_message_state(id, state, attempts, Some(&reason), crate::now_ns())?;
        Ok(())
    }

    /// One sync message from an own installation; `Ok(true)` when it imported an archive.
    /// Messages to ignore (a reply to someone else's request, a replay) are `Ok(false)`.
    fn handle_sync_message(&self, m: &Message) -> Result<bool> {
        let Ok(SyncPayload { kind: Some(kind) }) = SyncPayload::decode(m.content.as_slice()) else {
            tracing::warn!("undecodable sync message ignored");
            return Ok(false);
        };
        let mine = m.sender_installation_id == self.inner.installation_id;
        match kind {
            sync_payload::Kind::Preferences(p) => {
                if !mine {
                    self.apply_preferences(p)?;
                }
                Ok(false)
            }
            sync_payload::Kind::Request(r) => {
                if mine || self.history_sync_url().is_empty() {
                    return Ok(false);
                }
                if self
                    .store()
                    .setting(&answered_key(&r.request_id))?
                    .is_some()
                {
                    tracing::info!(request = %r.request_id, "request answered here before; not again");
                    return Ok(false);
                }
                if !self.pending_sync_requests()?.is_empty() {
                    // New here too and still waiting for history: an answer now would be
                    // (nearly) empty and could close the request before a full one comes.
                    tracing::info!(request = %r.request_id, "not answering: this installation is waiting for its own history");
                    return Ok(false);
                }
                let options = SyncOptions {
                    messages: r.messages,
                    consent: r.consent,
                    start_ns: r.start_ns,
                    end_ns: r.end_ns,
                };
                if options.messages || options.consent {
                    // The answer goes to the inbox's surviving sync group (the requester is
                    // added to it first), whichever group the request came through.
                    let group = self.ensure_sync_group()?;
                    let meta = self.upload_and_reply(&group, &r.request_id, &options)?;
                    self.store().set_setting(
                        &answered_key(&r.request_id),
                        &crate::now_ns().to_be_bytes(),
                    )?;
                    // The requester is new here: it needs the inbox's HMAC secret too.
                    self.share_hmac_secret()?;
                    self.flush_or_log();
                    self.emit(vec![Event::DeviceSync(DeviceSyncEvent::RequestAnswered {
                        pin: r.request_id.clone(),
                        requester_installation_id: hex::encode(&m.sender_installation_id),
                        conversations: meta.conversation_count.unwrap_or(0),
                        messages: meta.message_count.unwrap_or(0),
                    })]);
                }
                Ok(false)
            }
            sync_payload::Kind::Reply(r) => {
                // Every answer to an open request of ours is imported: the first one and any
                // other that comes within the window after it (imports are additive, so the
                // result is the union of what the answering installations hold).
                let open = self
                    .open_requests()?
                    .into_iter()
                    .any(|(pin, _)| pin == r.request_id);
                if !open {
                    tracing::info!(request = %r.request_id, "sync reply for a request not ours (or closed) ignored");
                    return Ok(false);
                }
                if self
                    .import_records(&r.request_id)?
                    .iter()
                    .any(|i| i.url == r.url)
                {
                    tracing::info!(request = %r.request_id, "replayed sync reply ignored");
                    return Ok(false);
                }
                let report = self.import_announced(
                    &m.id,
                    &hex::encode(&m.sender_installation_id),
                    &r.request_id,
                    &r.url,
                    &r.key,
                )?;
                self.emit(vec![Event::DeviceSync(DeviceSyncEvent::HistoryImported {
                    pin: r.request_id.clone(),
                    report,
                })]);
                Ok(true)
            }
        }
    }

    fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let home = self
            .store()
            .path()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        tempfile::tempdir_in(&home).map_err(|e| Error::io(home, e))
    }

    /// Builds an archive with a fresh key, uploads it and announces it in `group` under `pin`.
    fn upload_and_reply(
        &self,
        group: &[u8],
        pin: &str,
        options: &SyncOptions,
    ) -> Result<crate::backup::ArchiveMetadata> {
        let mut elements = Vec::new();
        if options.messages {
            elements.push(ArchiveElement::Messages);
        }
        if options.consent {
            elements.push(ArchiveElement::Consent);
        }
        if elements.is_empty() {
            return Err(Error::NoElements);
        }
        let key = ArchiveKey::generate();
        let dir = self.scratch_dir()?;
        let path = dir.path().join("history.ferry");
        let meta = self.create_archive(
            &path,
            &key,
            &ArchiveOptions {
                start_ns: options.start_ns,
                end_ns: options.end_ns,
                elements,
                label: format!("history sync {pin}"),
            },
            &Control::new(),
        )?;
        let url = self.history_client()?.upload_file(&path)?;
        self.secure_sync_group(group)?;
        self.send_sync_payload(
            group,
            sync_payload::Kind::Reply(SyncReply {
                request_id: pin.to_string(),
                url,
                key: key.raw_bytes().expect("a generated key is raw").to_vec(),
                created_at_ns: meta.created_at_ns,
                conversation_count: meta.conversation_count.unwrap_or(0),
                message_count: meta.message_count.unwrap_or(0),
                messages: options.messages,
                consent: options.consent,
                start_ns: options.start_ns,
                end_ns: options.end_ns,
                size_bytes: meta.file_bytes,
            }),
        )?;
        Ok(meta)
    }

    /// Downloads (from this installation's own history server only), verifies and imports an
    /// announced archive; records the report and closes the request with that pin. The
    /// archive must be signed by `sender_installation_id` (hex), the installation that sent
    /// the reply; else nothing is imported ([`Error::ArchiveNotSignedBySender`], or the
    /// signature's own error).
    fn import_announced(
        &self,
        message_id: &[u8],
        sender_installation_id: &str,
        pin: &str,
        url: &str,
        key: &[u8],
    ) -> Result<ImportReport> {
        let base = self.history_sync_url();
        if base.is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let key = ArchiveKey::from_bytes(key)?;
        let dir = self.scratch_dir()?;
        let dest = dir.path().join("history.ferry");
        self.history_client()?.download_to(url, &dest)?;
        let report =
            self.import_archive_signed_by(&dest, &key, &Control::new(), sender_installation_id)?;
        {
            let store = self.store();
            let now = crate::now_ns();
            let record = ImportRecord {
                message_id: hex::encode(message_id),
                sender_installation_id: sender_installation_id.to_string(),
                imported_at_ns: now,
                url: url.to_string(),
                report: report.clone(),
            };
            store.set_setting(
                &import_key(pin, message_id),
                &serde_json::to_vec(&record).expect("a report serializes"),
            )?;
            // The request is answered; it stays open for the others' answers a while.
            if let Some(v) = store.setting(&request_key(pin))? {
                let mut request = RequestRecord::decode(&v);
                if request.answered_at_ns.is_none() {
                    request.answered_at_ns = Some(now);
                    store.set_setting(
                        &request_key(pin),
                        &serde_json::to_vec(&request).expect("a record serializes"),
                    )?;
                }
            }
        }
        Ok(report)
    }
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
    store.set_setting(S_HMAC, &key.encode_to_vec())?;
    Ok(())
}

fn queue_preferences(store: &ferry_store::Store, p: &PreferenceUpdates) -> Result<()> {
    let key = format!("{OUTBOX}{:020}-{}", crate::now_ns(), random_pin());
    store.set_setting(&key, &p.encode_to_vec())?;
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
