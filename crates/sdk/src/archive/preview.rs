//! Import previews: what [`import_archive`](super::import_archive) would do to a store, found
//! without writing to it.
//!
//! * The archive is streamed exactly as an import streams it (the same reading thread, the same
//!   conversions, the same checks, so an archive an import refuses is refused here too), and the
//!   same counting code runs over a read-only probe of the store instead of its merge: the
//!   totals are the numbers the import would report on the same store.
//! * The store is only read, in one read transaction (a consistent snapshot; no lock that
//!   blocks writers in WAL mode).
//! * Memory does not grow with the messages: a message id is looked up in the store, and the ids
//!   of messages new to it are remembered (to count a message the archive carries twice as the
//!   import does: the first is imported, the second skipped) in a private temporary SQLite
//!   database whose page cache is bounded and which spills to a temporary file. What is kept per
//!   conversation and per applied consent record is bounded by the archive's conversations and
//!   consent records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ferry_archive::ArchiveKey;
use ferry_store::rusqlite::{self, Connection};
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, Conversation, ConversationKind,
    ConversationOutcome, Message, Snapshot, Store,
};
use serde::{Serialize, Serializer};

use super::{
    ferry_source, sniff, stream_items, xmtp, ArchiveFormat, Control, ImportReport, Progress, Target,
};
use crate::Result;

/// What happens to a conversation of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviewAction {
    /// New here: it would be added as restored.
    Add,
    /// Already here: it keeps its state and receives the messages it lacks.
    Merge,
}

/// A consent state before and after the import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConsentStep {
    /// The stored state; `None` when the store has no record.
    #[serde(serialize_with = "opt_state")]
    pub from: Option<ConsentState>,
    /// The state after the import.
    #[serde(serialize_with = "state")]
    pub to: ConsentState,
}

/// A consent record the import would apply (it is newer than the stored one, or there is none).
/// `from` may equal `to`: the record is newer but says the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentChange {
    /// What the decision is about: a conversation, an inbox, an address.
    #[serde(serialize_with = "entity")]
    pub entity_type: ConsentEntity,
    /// The conversation id (hex), inbox id or address.
    pub entity: String,
    /// The state before and after.
    #[serde(flatten)]
    pub step: ConsentStep,
    /// When the archive's record was decided (ns since the Unix epoch).
    pub updated_at_ns: i64,
}

/// One conversation the archive brings (or adds messages to), in the archive's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationPreview {
    /// The conversation's id (bytes; hex in JSON).
    #[serde(serialize_with = "hex_bytes")]
    pub id: Vec<u8>,
    /// Group or DM.
    #[serde(serialize_with = "kind")]
    pub kind: ConversationKind,
    /// The stored name for a merge, the archive's for an add.
    pub name: String,
    /// For a DM, the other inbox.
    pub dm_peer_inbox_id: Option<String>,
    /// Added as restored, or merged into the stored one.
    pub action: PreviewAction,
    /// Messages the import would add to it.
    pub messages_new: u64,
    /// Its messages the import would skip: already stored (same id), or carried twice.
    pub messages_present: u64,
    /// Its consent, when the archive's record would be applied.
    pub consent: Option<ConsentStep>,
}

/// What [`import_archive_preview`] found. `totals` has [`ImportReport`]'s fields (flattened in
/// JSON) with the values the import would report on the same store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportPreview {
    /// The counts the import would report.
    #[serde(flatten)]
    pub totals: ImportReport,
    /// Per conversation, in the order the archive holds them. A conversation the archive lists
    /// twice appears once (the import counts the second as merged). Messages that belong to a
    /// stored conversation the archive does not list appear under that conversation (merge).
    pub conversations: Vec<ConversationPreview>,
    /// Consent records that would be applied, by entity type and entity.
    pub consent_changes: Vec<ConsentChange>,
}

/// Reads `path` as [`import_archive`](super::import_archive) would and reports what it would do
/// to `store`, writing nothing (see the module docs). Ferry and libxmtp archives both work. A
/// wrong key, damage or an invalid element is the same error the import would return.
pub fn import_archive_preview(
    store: &Store,
    path: &Path,
    key: &ArchiveKey,
    ctl: &Control,
) -> Result<ImportPreview> {
    let (f, format, len) = sniff(path)?;
    let snap = store.snapshot()?;
    let mut probe = Probe::new(&snap)?;
    let (totals, total) = match format {
        ArchiveFormat::Xmtp => {
            let s = xmtp::source(f, key)?;
            let t = s.elements_total;
            let totals = stream_items(&mut probe, len, t, ctl, s.produce)?;
            (totals.signed(s.signed_by), t)
        }
        ArchiveFormat::Ferry => {
            // Read to its end, so a signed archive's signature is verified as the import
            // verifies it.
            let s = ferry_source(f, key)?;
            let t = s.elements_total;
            let totals = stream_items(&mut probe, len, t, ctl, s.produce)?;
            (totals.signed(s.signed_by), t)
        }
    };
    ctl.report(Progress {
        bytes_done: len,
        bytes_total: len,
        elements_done: total,
        elements_total: total,
    });
    Ok(probe.finish(ImportReport { format, ..totals }))
}

/// The read-only stand-in for the store's merge.
struct Probe<'a, 's> {
    snap: &'a Snapshot<'s>,
    /// Ids of messages new to the store met so far (see the module docs).
    seen: Connection,
    conversations: Vec<ConversationPreview>,
    /// Conversation id -> index in `conversations`: every conversation known to the merge so
    /// far that the archive touched (added by it, or stored).
    index: HashMap<Vec<u8>, usize>,
    /// Applied consent records: (type, entity) -> (stored state, newest applied record).
    consent: BTreeMap<(i64, String), (Option<ConsentState>, ConsentRecord)>,
}

impl<'a, 's> Probe<'a, 's> {
    fn new(snap: &'a Snapshot<'s>) -> Result<Self> {
        // "" opens a private temporary database, deleted when closed. Its cache is bounded;
        // beyond it, pages go to a temporary file.
        let seen = Connection::open("").map_err(ferry_store::Error::from)?;
        seen.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA cache_size = -8192;
             CREATE TABLE seen (id BLOB PRIMARY KEY) WITHOUT ROWID;
             BEGIN;",
        )
        .map_err(ferry_store::Error::from)?;
        Ok(Probe {
            snap,
            seen,
            conversations: Vec::new(),
            index: HashMap::new(),
            consent: BTreeMap::new(),
        })
    }

    fn entry(&mut self, c: &Conversation, action: PreviewAction) {
        self.index.insert(c.id.clone(), self.conversations.len());
        self.conversations.push(ConversationPreview {
            id: c.id.clone(),
            kind: c.kind,
            name: c.name.clone(),
            dm_peer_inbox_id: c.dm_peer_inbox_id.clone(),
            action,
            messages_new: 0,
            messages_present: 0,
            consent: None,
        });
    }

    /// Whether `id` was not met before (and is now remembered).
    fn first_time(&self, id: &[u8]) -> rusqlite::Result<bool> {
        Ok(self
            .seen
            .prepare_cached("INSERT OR IGNORE INTO seen (id) VALUES (?1)")?
            .execute([id])?
            > 0)
    }

    fn finish(mut self, totals: ImportReport) -> ImportPreview {
        let mut consent_changes = Vec::with_capacity(self.consent.len());
        for (from, record) in std::mem::take(&mut self.consent).into_values() {
            let step = ConsentStep {
                from,
                to: record.state,
            };
            if record.entity_type == ConsentEntity::Conversation {
                let at = hex::decode(&record.entity)
                    .ok()
                    .and_then(|id| self.index.get(&id));
                if let Some(&i) = at {
                    self.conversations[i].consent = Some(step);
                }
            }
            consent_changes.push(ConsentChange {
                entity_type: record.entity_type,
                entity: record.entity,
                step,
                updated_at_ns: record.updated_at_ns,
            });
        }
        ImportPreview {
            totals,
            conversations: self.conversations,
            consent_changes,
        }
    }
}

impl Target for Probe<'_, '_> {
    fn conversation(&mut self, c: &Conversation) -> Result<ConversationOutcome> {
        if self.index.contains_key(&c.id) {
            return Ok(ConversationOutcome::Existing);
        }
        match self.snap.conversation(&c.id)? {
            Some(stored) => {
                self.entry(&stored, PreviewAction::Merge);
                Ok(ConversationOutcome::Existing)
            }
            None => {
                self.entry(c, PreviewAction::Add);
                Ok(ConversationOutcome::Added)
            }
        }
    }

    fn has_conversation(&mut self, id: &[u8]) -> Result<bool> {
        if self.index.contains_key(id) {
            return Ok(true);
        }
        // A stored conversation the archive does not list: the merge knows it too.
        match self.snap.conversation(id)? {
            Some(stored) => {
                self.entry(&stored, PreviewAction::Merge);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn message(&mut self, m: &Message) -> Result<bool> {
        let new = !self.snap.has_message(&m.id)?
            && self.first_time(&m.id).map_err(ferry_store::Error::from)?;
        if let Some(&i) = self.index.get(&m.conversation_id) {
            let c = &mut self.conversations[i];
            if new {
                c.messages_new += 1;
            } else {
                c.messages_present += 1;
            }
        }
        Ok(new)
    }

    fn attachment_file(&mut self, digest: &str, _data: &[u8]) -> Result<bool> {
        // An archive carries each file once.
        Ok(self.snap.attachment_file_len(digest)?.is_none())
    }

    fn consent(&mut self, c: &ConsentRecord) -> Result<bool> {
        let key = (c.entity_type.as_i64(), c.entity.clone());
        let (from, newest) = match self.consent.get(&key) {
            Some((from, applied)) => (*from, Some(applied.updated_at_ns)),
            None => {
                let stored = self.snap.consent_record(c.entity_type, &c.entity)?;
                (
                    stored.as_ref().map(|s| s.state),
                    stored.map(|s| s.updated_at_ns),
                )
            }
        };
        // The store applies a record only when it is newer than the one it holds.
        if newest.is_some_and(|t| c.updated_at_ns <= t) {
            return Ok(false);
        }
        self.consent.insert(key, (from, c.clone()));
        Ok(true)
    }
}

fn hex_bytes<S: Serializer>(v: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn kind<S: Serializer>(v: &ConversationKind, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn entity<S: Serializer>(v: &ConsentEntity, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn state<S: Serializer>(v: &ConsentState, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn opt_state<S: Serializer>(
    v: &Option<ConsentState>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.as_str()),
        None => s.serialize_none(),
    }
}
