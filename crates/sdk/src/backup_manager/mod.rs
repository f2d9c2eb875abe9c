//! Backups people keep: a policy, a destination, retention, and status for reminders.
//!
//! [`crate::archive`] makes, reads and imports one archive. This module runs them on a
//! schedule:
//!
//! * A [`Policy`] says when ([`Frequency`]: never, daily, weekly or monthly at a wall-clock hour
//!   in an IANA time zone, and/or every N new messages), what (elements), how many to keep
//!   (retention, default 5), the label, and where ([`DestinationSpec`]). It is stored in the
//!   store's `settings` table (JSON), with a journal of the backups made.
//! * [`run_due_backups`] makes a backup when one is due, uploads it to a [`Destination`] as
//!   `ferry-backup-<created_at_ns>.ferry`, verifies the destination's copy (every chunk read and
//!   authenticated), records it, then prunes.
//! * Pruning keeps the newest `retention` archives that verify. It deletes an archive only when
//!   its own authenticated metadata proves it older than the oldest kept one, and only once
//!   `retention` verified archives are kept; so the newest verified archive is never deleted, an
//!   archive that fails verification is never counted as kept, an archive it cannot read (a
//!   different key, a damaged header, a network error) is never deleted, and the oldest go first.
//! * [`list_backups`] shows what a destination holds and whether each verifies;
//!   [`list_locked_backups`] lists them before any key is given (name, size, time, format
//!   version and the kind of secret each needs, from their plaintext headers);
//!   [`backup_status`] says when the last backup was made, when the next is due and whether one
//!   is overdue, so an app can remind a person gently.
//!
//! Every function takes the time as an argument (`now_ns`, nanoseconds since the Unix epoch), so
//! callers and tests control the clock.

mod destination;
mod keykind;
mod object;
mod policy;

use std::path::PathBuf;

use ferry_archive::ArchiveKey;
use ferry_store::Store;
use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveElement, ArchiveFormat, ArchiveOptions, Control, Origin};

pub use destination::{check_name, Destination, Entry, Fetched, LocalFolder};
pub use keykind::{archive_key_kind, key_kind_of_head, Argon2Info, KeyKindInfo, HEAD_LEN};
pub use object::ObjectStoreDestination;
pub use policy::{
    DestinationSpec, Frequency, KeySource, Policy, Weekday, DEFAULT_HOUR, DEFAULT_LABEL,
    DEFAULT_RETENTION,
};

/// The `settings` key holding the policy (JSON).
pub const POLICY_SETTING: &str = "backups.policy";
/// The `settings` key holding the journal (JSON).
pub const JOURNAL_SETTING: &str = "backups.journal";
/// Backup object names start with this and end with [`NAME_SUFFIX`].
pub const NAME_PREFIX: &str = "ferry-backup-";
/// Backup object names end with this (see [`NAME_PREFIX`]).
pub const NAME_SUFFIX: &str = ".ferry";
/// A scheduled backup is overdue once it has been due for this long (24 hours).
pub const OVERDUE_GRACE_NS: i64 = 24 * 3600 * 1_000_000_000;
/// Journal entries kept.
const HISTORY: usize = 50;

/// Errors of the backup manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Making, reading or verifying an archive failed (the SDK's error says why).
    #[error("{0}")]
    Sdk(#[from] crate::Error),
    /// The store could not be read or written.
    #[error("{0}")]
    Store(#[from] ferry_store::Error),
    /// The destination failed an operation (`op`: list, put, get, delete, ...) on object `name`:
    /// a folder that cannot be written, a bucket that cannot be reached.
    #[error("backup destination: cannot {op} {name}: {message}")]
    Destination {
        /// What was being done.
        op: &'static str,
        /// The object (or folder) it was done to.
        name: String,
        /// The destination's own error.
        message: String,
    },
    /// An object name a destination does not accept (see [`check_name`]).
    #[error("invalid backup name {0:?} (letters, digits, '.', '_', '-'; not starting with '.')")]
    InvalidName(String),
    /// A policy that cannot work (an hour past 23, an unknown time zone, no elements, ...).
    #[error("invalid backup policy: {0}")]
    InvalidPolicy(String),
    /// The store holds no policy and the call needs one.
    #[error("no backup policy is set")]
    NoPolicy,
    /// The policy names no destination and the call needs one.
    #[error("the backup policy names no destination")]
    NoDestination,
    /// The policy names no key file and the call needs one.
    #[error("the backup policy names no key file")]
    NoKeySource,
    /// The key file at `path` cannot be read or holds no usable key.
    #[error("key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The backup reached the destination, but reading it back failed verification; it is
    /// not recorded as a success.
    #[error("backup {name} was uploaded but its copy does not verify: {message}")]
    NotVerified {
        /// The uploaded object.
        name: String,
        /// Why it does not verify.
        message: String,
    },
    /// The policy or journal kept in the store cannot be read (or written) as JSON.
    #[error("stored backup {what} is unreadable: {message}")]
    Settings {
        /// `policy` or `journal`.
        what: &'static str,
        /// The JSON error.
        message: String,
    },
}

impl Error {
    /// Whether trying again later may succeed: an SDK error that is retryable, or a destination
    /// that failed (a network or disk error); not a bad policy, name, key file or a copy that
    /// does not verify.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sdk(e) => e.is_retryable(),
            Error::Destination { .. } => true,
            _ => false,
        }
    }
}

impl Error {
    pub(crate) fn destination(op: &'static str, name: &str, e: impl std::fmt::Display) -> Self {
        Error::Destination {
            op,
            name: name.to_string(),
            message: e.to_string(),
        }
    }
}

impl From<ferry_archive::Error> for Error {
    fn from(e: ferry_archive::Error) -> Self {
        Error::Sdk(e.into())
    }
}

/// The backup manager's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `name` is a backup object this module made (and may prune).
pub fn is_backup_name(name: &str) -> bool {
    name.len() > NAME_PREFIX.len() + NAME_SUFFIX.len()
        && name.starts_with(NAME_PREFIX)
        && name.ends_with(NAME_SUFFIX)
        && check_name(name).is_ok()
}

// ---- policy and journal in the store ---------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPolicy {
    policy: Policy,
    /// When the policy was set: the schedule's starting point until a backup is made.
    set_at_ns: i64,
}

/// Validates and stores `policy`; `now_ns` is when it takes effect.
pub fn set_policy(store: &Store, policy: &Policy, now_ns: i64) -> Result<()> {
    policy.validate()?;
    let stored = StoredPolicy {
        policy: policy.clone(),
        set_at_ns: now_ns,
    };
    let json = serde_json::to_vec(&stored).map_err(|e| Error::Settings {
        what: "policy",
        message: e.to_string(),
    })?;
    store.set_setting(POLICY_SETTING, &json)?;
    Ok(())
}

/// The stored policy, if any.
pub fn policy(store: &Store) -> Result<Option<Policy>> {
    Ok(stored_policy(store)?.map(|s| s.policy))
}

fn stored_policy(store: &Store) -> Result<Option<StoredPolicy>> {
    match store.setting(POLICY_SETTING)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| Error::Settings {
                what: "policy",
                message: e.to_string(),
            }),
    }
}

/// Why a backup was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A scheduled time (daily, weekly, monthly) passed since the last backup.
    Schedule,
    /// At least `activity_every` new messages since the last backup.
    Activity,
    /// Asked for (`--now`).
    Manual,
}

/// One backup made by [`run_due_backups`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Its object name in the destination (`ferry-backup-<created_at_ns>.ferry`).
    pub name: String,
    /// The caller's clock when the backup was made (the `now_ns` passed in).
    pub at_ns: i64,
    /// The archive's own creation time (its metadata).
    pub created_at_ns: i64,
    /// The label the archive carries.
    pub label: String,
    /// Why it was made.
    pub reason: Reason,
    /// The archive's size in bytes.
    pub size_bytes: u64,
    /// Conversations in the archive.
    pub conversation_count: u64,
    /// Messages in the archive.
    pub message_count: u64,
    /// Consent records in the archive.
    pub consent_count: u64,
    /// Where it went ([`Destination::describe`]).
    pub destination: String,
}

/// What the manager remembers between runs (in the store's `settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The last backup that was uploaded and verified.
    pub last_success: Option<BackupRecord>,
    /// When a backup was last tried (the caller's clock), whether or not it succeeded.
    pub last_attempt_ns: Option<i64>,
    /// Why the last attempt failed (cleared by a success).
    pub last_error: Option<String>,
    /// Recent backups, oldest first.
    pub history: Vec<BackupRecord>,
}

/// The stored journal (empty when none).
pub fn journal(store: &Store) -> Result<Journal> {
    match store.setting(JOURNAL_SETTING)? {
        None => Ok(Journal::default()),
        Some(v) => serde_json::from_slice(&v).map_err(|e| Error::Settings {
            what: "journal",
            message: e.to_string(),
        }),
    }
}

fn save_journal(store: &Store, j: &Journal) -> Result<()> {
    let json = serde_json::to_vec(j).map_err(|e| Error::Settings {
        what: "journal",
        message: e.to_string(),
    })?;
    store.set_setting(JOURNAL_SETTING, &json)?;
    Ok(())
}

// ---- due-ness -------------------------------------------------------------------------------

/// Messages sent after `since_ns` (all messages when `None`), counting at most `cap`.
///
/// Walks only conversations whose last message is newer than `since_ns`, through the
/// (conversation, time) index.
pub fn new_messages_since(store: &Store, since_ns: Option<i64>, cap: u64) -> Result<u64> {
    let since = since_ns.unwrap_or(i64::MIN);
    let cap = cap.min(i64::MAX as u64) as i64;
    let n: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM (
                 SELECT 1 FROM conversations c CROSS JOIN messages m
                     ON m.conversation = c.seq AND m.sent_at_ns > ?1
                 WHERE c.last_message_ns > ?1
                 LIMIT ?2)",
            ferry_store::rusqlite::params![since, cap],
            |r| r.get(0),
        )
        .map_err(ferry_store::Error::from)?;
    Ok(n as u64)
}

/// Why a backup is due now, if it is.
fn due_reason(
    store: &Store,
    stored: &StoredPolicy,
    journal: &Journal,
    now_ns: i64,
) -> Result<Option<Reason>> {
    let p = &stored.policy;
    let last = journal.last_success.as_ref().map(|r| r.at_ns);
    let baseline = last.unwrap_or(stored.set_at_ns);
    if let Some(slot) = p.last_slot_at_or_before(now_ns)? {
        if slot > baseline {
            return Ok(Some(Reason::Schedule));
        }
    }
    if let Some(n) = p.activity_every {
        if new_messages_since(store, last, n)? >= n {
            return Ok(Some(Reason::Activity));
        }
    }
    Ok(None)
}

/// What [`backup_status`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct BackupStatus {
    /// The stored policy; `None` when there is none.
    pub policy: Option<Policy>,
    /// When the last verified backup was made (the caller's clock), if ever.
    pub last_backup_ns: Option<i64>,
    /// The last verified backup's object name, if ever.
    pub last_backup_name: Option<String>,
    /// The next scheduled time (already past when a scheduled backup is due); `None` without
    /// a schedule.
    pub next_due_ns: Option<i64>,
    /// A backup would be made now by [`run_due_backups`].
    pub due: bool,
    /// Why it is due (schedule or activity), when it is.
    pub due_reason: Option<Reason>,
    /// A scheduled backup has been due for more than [`OVERDUE_GRACE_NS`] (a day): the app may
    /// remind the person.
    pub overdue: bool,
    /// Messages sent since the last backup (all messages when there was none).
    pub new_messages: u64,
    /// When a backup was last tried (the caller's clock), if ever.
    pub last_attempt_ns: Option<i64>,
    /// Why the last attempt failed (`None` after a success).
    pub last_error: Option<String>,
}

/// When the last backup was made, when the next one is due and whether one is overdue.
pub fn backup_status(store: &Store, now_ns: i64) -> Result<BackupStatus> {
    let journal = journal(store)?;
    let last = journal.last_success.as_ref();
    let new_messages = new_messages_since(store, last.map(|r| r.at_ns), u64::MAX)?;
    let mut status = BackupStatus {
        policy: None,
        last_backup_ns: last.map(|r| r.at_ns),
        last_backup_name: last.map(|r| r.name.clone()),
        next_due_ns: None,
        due: false,
        due_reason: None,
        overdue: false,
        new_messages,
        last_attempt_ns: journal.last_attempt_ns,
        last_error: journal.last_error.clone(),
    };
    let Some(stored) = stored_policy(store)? else {
        return Ok(status);
    };
    let baseline = last.map(|r| r.at_ns).unwrap_or(stored.set_at_ns);
    status.next_due_ns = stored.policy.next_slot_after(baseline)?;
    status.due_reason = due_reason(store, &stored, &journal, now_ns)?;
    status.due = status.due_reason.is_some();
    status.overdue = status
        .next_due_ns
        .is_some_and(|d| now_ns >= d.saturating_add(OVERDUE_GRACE_NS));
    status.policy = Some(stored.policy);
    Ok(status)
}

// ---- listing and pruning --------------------------------------------------------------------

/// One archive in a destination, as [`list_backups`] or [`list_locked_backups`] found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListedBackup {
    /// Its object name in the destination.
    pub name: String,
    /// From the archive's metadata ("" when it could not be read).
    pub label: String,
    /// From the archive's authenticated metadata; `None` when it could not be read.
    pub created_at_ns: Option<i64>,
    /// The start of the archive's time range (inclusive, ns), if it has one.
    pub start_ns: Option<i64>,
    /// The end of the archive's time range (exclusive, ns), if it has one.
    pub end_ns: Option<i64>,
    /// What the archive carries (empty when its metadata could not be read).
    pub elements: Vec<ArchiveElement>,
    /// The object's size in bytes.
    pub size_bytes: u64,
    /// Conversations, from the metadata.
    pub conversation_count: Option<u64>,
    /// Messages, from the metadata.
    pub message_count: Option<u64>,
    /// Consent records, from the metadata.
    pub consent_count: Option<u64>,
    /// Every chunk was read and authenticated and the counts match the metadata.
    pub verified: bool,
    /// Why it does not verify (or, when locked, why its header cannot be read: it is damaged or
    /// not an archive).
    pub error: Option<String>,
    /// Listed without a key: only the plaintext header was read (nothing is verified, and the
    /// metadata fields are empty).
    pub locked: bool,
    /// When the destination last wrote the object (file time, object time), when it says.
    pub modified_ns: Option<i64>,
    /// From the plaintext header; `None` when it cannot be read.
    pub format: Option<ArchiveFormat>,
    /// "1.1" (signed) or "1.0" for Ferry archives; libxmtp archives' own version ("0").
    pub format_version: Option<String>,
    /// "key" (a raw 32-byte key) or "passphrase": which secret the archive needs.
    pub key_kind: Option<&'static str>,
}

/// The backups in `destination` (objects named `ferry-backup-*.ferry`), newest first, each
/// read whole and verified with `key`. Other objects are ignored.
pub fn list_backups(destination: &dyn Destination, key: &ArchiveKey) -> Result<Vec<ListedBackup>> {
    let mut out: Vec<ListedBackup> = backup_entries(destination)?
        .iter()
        .map(|e| inspect(destination, e, key))
        .collect();
    sort_newest_first(&mut out);
    Ok(out)
}

/// The backups in `destination` without any key, marked `locked`: for each, what can be read
/// without one — name, size, the destination's time, and from the plaintext header the format,
/// its version and the kind of secret it needs — so an app can list backups first and ask for
/// the chosen one's password. Only each archive's first [`HEAD_LEN`] bytes are read. An archive
/// whose header cannot be read is listed with the error; the list fails only when the
/// destination cannot be listed. Newest first by name (the manager names backups by their
/// creation time).
pub fn list_locked_backups(destination: &dyn Destination) -> Result<Vec<ListedBackup>> {
    let mut out: Vec<ListedBackup> = backup_entries(destination)?
        .iter()
        .map(|e| {
            let mut b = listed_entry(e);
            b.locked = true;
            match destination.read_prefix(&e.name, HEAD_LEN.min(e.size)) {
                Ok(head) => match key_kind_of_head(&head) {
                    Ok(k) => fill_key_kind(&mut b, &k),
                    Err(err) => b.error = Some(err.to_string()),
                },
                Err(err) => b.error = Some(err.to_string()),
            }
            b
        })
        .collect();
    sort_newest_first(&mut out);
    Ok(out)
}

fn backup_entries(destination: &dyn Destination) -> Result<Vec<Entry>> {
    Ok(destination
        .list()?
        .into_iter()
        .filter(|e| is_backup_name(&e.name))
        .collect())
}

fn sort_newest_first(out: &mut [ListedBackup]) {
    out.sort_by(|a, b| {
        b.created_at_ns
            .is_some()
            .cmp(&a.created_at_ns.is_some())
            .then(b.created_at_ns.cmp(&a.created_at_ns))
            .then(b.name.cmp(&a.name))
    });
}

fn listed_entry(entry: &Entry) -> ListedBackup {
    ListedBackup {
        name: entry.name.clone(),
        size_bytes: entry.size,
        modified_ns: entry.modified_ns,
        ..ListedBackup::default()
    }
}

fn fill_key_kind(b: &mut ListedBackup, k: &KeyKindInfo) {
    b.format = Some(k.format);
    b.format_version = Some(k.format_version.clone());
    b.key_kind = Some(k.key_kind);
}

fn inspect(destination: &dyn Destination, entry: &Entry, key: &ArchiveKey) -> ListedBackup {
    let mut b = listed_entry(entry);
    let fetched = match destination.fetch(&entry.name) {
        Ok(f) => f,
        Err(e) => {
            b.error = Some(e.to_string());
            return b;
        }
    };
    // The header says the format and the kind of secret even when the key is wrong.
    if let Ok(k) = archive_key_kind(fetched.path()) {
        fill_key_kind(&mut b, &k);
    }
    let fill = |b: &mut ListedBackup, m: &archive::ArchiveMetadata| {
        b.label = m.label.clone();
        b.created_at_ns = Some(m.created_at_ns);
        b.start_ns = m.start_ns;
        b.end_ns = m.end_ns;
        b.elements = m.elements.clone();
        b.conversation_count = m.conversation_count;
        b.message_count = m.message_count;
        b.consent_count = m.consent_count;
    };
    match archive::verify_archive(fetched.path(), key) {
        Ok(report) => {
            fill(&mut b, &report.metadata);
            b.verified = report.intact;
            if !report.intact {
                b.error = Some("element counts differ from the archive's metadata".into());
            }
        }
        Err(e) => {
            b.error = Some(e.to_string());
            // The header and metadata chunk may still authenticate (damage further on): then
            // the creation time is proven and the archive can be aged out like any other.
            if let Ok(m) = archive::archive_metadata(fetched.path(), key) {
                fill(&mut b, &m);
            }
        }
    }
    b
}

/// What pruning kept and deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Verified archives kept by the retention, newest first.
    pub kept: Vec<String>,
    /// Archives deleted, oldest first.
    pub deleted: Vec<String>,
    /// Archives that do not verify (never counted as kept), with why.
    pub not_verified: Vec<NotVerified>,
}

/// An archive in a destination that does not verify, as [`PruneReport`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotVerified {
    /// Its object name.
    pub name: String,
    /// Why it does not verify.
    pub error: String,
    /// Deleted by this prune (its authenticated creation time put it past the retention).
    pub deleted: bool,
}

/// Decides what to delete from `listed` (as [`list_backups`] returns it) to keep `retention`
/// verified archives. Pure: see the module docs for the rules.
pub fn plan_prune(listed: &[ListedBackup], retention: u32) -> PruneReport {
    let retention = retention.max(1) as usize;
    let mut dated: Vec<&ListedBackup> = listed
        .iter()
        .filter(|b| b.created_at_ns.is_some())
        .collect();
    dated.sort_by(|a, b| {
        b.created_at_ns
            .cmp(&a.created_at_ns)
            .then(b.name.cmp(&a.name))
    });
    let kept: Vec<&ListedBackup> = dated
        .iter()
        .copied()
        .filter(|b| b.verified)
        .take(retention)
        .collect();
    let mut deleted: Vec<&ListedBackup> = Vec::new();
    if kept.len() == retention {
        let cutoff = kept.last().and_then(|b| b.created_at_ns).expect("dated");
        let newest = kept[0].created_at_ns.expect("dated");
        deleted = dated
            .iter()
            .copied()
            .filter(|b| {
                let t = b.created_at_ns.expect("dated");
                t < cutoff && t < newest && !kept.iter().any(|k| k.name == b.name)
            })
            .collect();
        deleted.reverse();
    }
    PruneReport {
        kept: kept.iter().map(|b| b.name.clone()).collect(),
        deleted: deleted.iter().map(|b| b.name.clone()).collect(),
        not_verified: listed
            .iter()
            .filter(|b| !b.verified)
            .map(|b| NotVerified {
                name: b.name.clone(),
                error: b.error.clone().unwrap_or_default(),
                deleted: deleted.iter().any(|d| d.name == b.name),
            })
            .collect(),
    }
}

/// Lists, verifies and prunes `destination` down to `retention` verified archives.
pub fn prune_backups(
    destination: &dyn Destination,
    key: &ArchiveKey,
    retention: u32,
) -> Result<PruneReport> {
    let listed = list_backups(destination, key)?;
    let report = plan_prune(&listed, retention);
    for name in &report.deleted {
        destination.delete(name)?;
    }
    Ok(report)
}

// ---- running --------------------------------------------------------------------------------

/// What [`run_due_backups`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Why a backup was made; `None` when none was due.
    pub reason: Option<Reason>,
    /// The backup made, uploaded and verified; `None` when none was due.
    pub made: Option<BackupRecord>,
    /// Pruning after a backup was made.
    pub prune: Option<PruneReport>,
    /// Pruning failed (the backup itself was made and verified).
    pub prune_error: Option<String>,
}

/// Makes a backup if the stored policy says one is due at `now_ns`, then prunes; see the module
/// docs. The key and destination are the caller's (an app's keychain, its configured
/// destination; [`Policy::destination`] and [`Policy::key_source`] are conveniences for the
/// `ferry` command).
pub fn run_due_backups(
    store: &Store,
    now_ns: i64,
    key: &ArchiveKey,
    destination: &dyn Destination,
) -> Result<RunReport> {
    run(store, now_ns, key, destination, false)
}

/// Makes a backup now whatever the schedule (the stored policy's elements, label and retention,
/// or the defaults when there is none), then prunes.
pub fn run_backup_now(
    store: &Store,
    now_ns: i64,
    key: &ArchiveKey,
    destination: &dyn Destination,
) -> Result<RunReport> {
    run(store, now_ns, key, destination, true)
}

fn run(
    store: &Store,
    now_ns: i64,
    key: &ArchiveKey,
    destination: &dyn Destination,
    force: bool,
) -> Result<RunReport> {
    let stored = match stored_policy(store)? {
        Some(s) => s,
        None if force => StoredPolicy {
            policy: Policy::default(),
            set_at_ns: now_ns,
        },
        None => return Err(Error::NoPolicy),
    };
    let mut journal = journal(store)?;
    let reason = if force {
        Some(Reason::Manual)
    } else {
        due_reason(store, &stored, &journal, now_ns)?
    };
    let Some(reason) = reason else {
        return Ok(RunReport {
            reason: None,
            made: None,
            prune: None,
            prune_error: None,
        });
    };
    journal.last_attempt_ns = Some(now_ns);
    let made = make_backup(store, now_ns, key, destination, &stored.policy, reason);
    let record = match made {
        Ok(r) => r,
        Err(e) => {
            // One line, as a person will see it (servers put XML in their errors).
            journal.last_error = Some(e.to_string().replace(['\r', '\n'], " "));
            save_journal(store, &journal)?;
            return Err(e);
        }
    };
    journal.last_error = None;
    journal.last_success = Some(record.clone());
    journal.history.push(record.clone());
    let excess = journal.history.len().saturating_sub(HISTORY);
    journal.history.drain(..excess);
    save_journal(store, &journal)?;
    let (prune, prune_error) = match prune_backups(destination, key, stored.policy.retention) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(RunReport {
        reason: Some(reason),
        made: Some(record),
        prune,
        prune_error,
    })
}

fn make_backup(
    store: &Store,
    now_ns: i64,
    key: &ArchiveKey,
    destination: &dyn Destination,
    policy: &Policy,
    reason: Reason,
) -> Result<BackupRecord> {
    // Staged beside the destination when it is local (so `put` is a rename), else in the
    // system temp folder; removed on every path out of here.
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix(".ferry-staging-");
        b
    };
    let staging = match destination.staging_dir() {
        Some(dir) => builder.tempdir_in(&dir),
        None => builder.tempdir(),
    }
    .map_err(|e| Error::destination("stage", "", e))?;
    let path = staging.path().join("backup.ferry");
    let label = policy.label_at(now_ns);
    let opts = ArchiveOptions {
        start_ns: None,
        end_ns: None,
        elements: policy.elements.clone(),
        label: label.clone(),
        exclude_disappearing_messages: policy.exclude_disappearing_messages,
    };
    let meta = archive::create_archive(
        store,
        &path,
        key,
        &opts,
        &Origin::of_store(store)?,
        &Control::new(),
    )?;
    let name = format!("{NAME_PREFIX}{}{NAME_SUFFIX}", meta.created_at_ns.max(0));
    destination.put(&name, &path)?;
    drop(staging);
    // Verify what the destination holds, not what we wrote.
    let fetched = destination.fetch(&name)?;
    let not_verified = |message: String| Error::NotVerified {
        name: name.clone(),
        message,
    };
    let report =
        archive::verify_archive(fetched.path(), key).map_err(|e| not_verified(e.to_string()))?;
    if !report.intact || report.metadata.created_at_ns != meta.created_at_ns {
        return Err(not_verified(
            "the copy's contents differ from the archive written".into(),
        ));
    }
    Ok(BackupRecord {
        name,
        at_ns: now_ns,
        created_at_ns: meta.created_at_ns,
        label,
        reason,
        size_bytes: meta.file_bytes,
        conversation_count: report.conversations,
        message_count: report.messages,
        consent_count: report.consent,
        destination: destination.describe(),
    })
}
