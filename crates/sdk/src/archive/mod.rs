//! Archive-based backups: `create_archive`, `archive_metadata`, `import_archive`.
//!
//! * An archive holds conversations and their messages (element `messages`) and consent records
//!   (element `consent`); never MLS state or any installation secret.
//! * The time range selects messages by `sent_at_ns` in `[start_ns, end_ns)`: start inclusive,
//!   end exclusive, so consecutive ranges never overlap. A conversation is included when any of
//!   its messages are, or when it was created in the range. Consent is never time-filtered.
//! * Creation writes a temporary file in the target folder, fsyncs it and renames it over the
//!   path: the path holds a whole archive or nothing, also on error or cancel.
//! * Import is one transaction: all or nothing. It is additive: nothing local is deleted or
//!   overwritten; messages already present (same id) are skipped; consent keeps the newer
//!   record; an existing conversation keeps its state. New conversations arrive as
//!   [`Membership::Restored`](ferry_store::Membership::Restored): visible, read-only.
//! * [`import_archive_preview`] says what an import would do (per conversation and in total)
//!   without writing anything; its totals equal the import's report on the same store.
//! * An archive made with an [`Origin`] that has a signer (every archive a registered
//!   installation makes) is **signed** by that installation (format 1.1). Metadata, verify and
//!   import report who signed it and whether the signature holds; an import of an archive whose
//!   signature fails writes nothing. Archives made before signatures, or from a store without
//!   an installation, are reported as unsigned and import as before.

mod convert;
mod import;
mod preview;
mod xmtp;

pub use import::*;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_archive::{
    ArchiveKey, ArchiveReader, ArchiveSigner, ArchiveWriter, Element, Header, WriterOptions,
};
use ferry_proto::archive as pb;
use ferry_store::{ConsentRecord, Conversation, ConversationOutcome, Message, Store};
use serde::Serialize;

use crate::{Error, Result};

pub use preview::{
    import_archive_preview, ConsentChange, ConsentStep, ConversationPreview, ImportPreview,
    PreviewAction,
};

/// What an archive carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveElement {
    /// Conversations and their messages.
    Messages,
    /// Consent records.
    Consent,
    /// The encrypted files of the remote attachments among the messages, when this
    /// installation holds them (sent from here, fetched, or brought by an archive), so a
    /// restore shows them even after the attachment store dropped them. Goes with `messages`.
    Attachments,
}

impl ArchiveElement {
    /// The element named `messages`, `consent` or `attachments` (as the CLI and JSON spell
    /// them); `None` for any other word.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "messages" => Some(ArchiveElement::Messages),
            "consent" => Some(ArchiveElement::Consent),
            "attachments" => Some(ArchiveElement::Attachments),
            _ => None,
        }
    }
}

/// Options of [`create_archive`]. The default is everything, all time.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Messages sent at or after this time (inclusive).
    pub start_ns: Option<i64>,
    /// Messages sent before this time (exclusive).
    pub end_ns: Option<i64>,
    /// What to put in the archive; empty fails with [`Error::NoElements`].
    pub elements: Vec<ArchiveElement>,
    /// A person's name for the archive, kept in its metadata.
    pub label: String,
    /// Leave out messages that will disappear (XMTP's option of the same name): those stored
    /// with an expiry, from conversations with disappearing messages on.
    pub exclude_disappearing_messages: bool,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            start_ns: None,
            end_ns: None,
            elements: vec![ArchiveElement::Messages, ArchiveElement::Consent],
            label: String::new(),
            exclude_disappearing_messages: false,
        }
    }
}

/// Who made an archive, recorded in its metadata, and the key that signs it.
#[derive(Clone, Default)]
pub struct Origin {
    /// The inbox whose history this is (hex inbox id; may be empty).
    pub inbox_id: String,
    /// The installation that made the archive: its 32-byte id (may be empty).
    pub installation_id: Vec<u8>,
    /// The installation's key: with one, the archive is signed (format 1.1) and the inbox and
    /// installation recorded are the signer's (empty fields are filled in from it). `None`
    /// writes an unsigned archive (format 1.0).
    pub signer: Option<Arc<dyn ArchiveSigner>>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("inbox_id", &self.inbox_id)
            .field("installation_id", &hex::encode(&self.installation_id))
            .field("signed", &self.signer.is_some())
            .finish()
    }
}

impl Origin {
    /// The inbox and installation the store records (settings `inbox_id`, `installation_id`;
    /// empty when it records none), with the installation's key as signer when the store holds
    /// a registered installation (a folder made by `ferry init` / `Client::create`). A store
    /// without one (`ferry dev seed`, a folder that only imported archives) has no signer.
    pub fn of_store(store: &Store) -> Result<Origin> {
        let signer = crate::client::installation_signer(store)?;
        Ok(Origin {
            inbox_id: store
                .setting("inbox_id")?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
            installation_id: store.setting("installation_id")?.unwrap_or_default(),
            signer,
        })
    }
}

/// The installation that signed an archive (as its metadata names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SignedBy {
    /// The signer's inbox id (hex).
    pub inbox_id: String,
    /// Hex of the 32-byte installation id (its Ed25519 public key).
    pub installation_id: String,
}

impl From<&ferry_archive::SignedBy> for SignedBy {
    fn from(s: &ferry_archive::SignedBy) -> Self {
        SignedBy {
            inbox_id: s.inbox_id.clone(),
            installation_id: hex::encode(s.installation_id),
        }
    }
}

/// Whether an archive's signature holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureStatus {
    /// Signed, and the signature verifies over the header and every chunk.
    Valid,
    /// Signed, but the signature does not verify (or the file is damaged before it).
    Invalid,
    /// Not signed: made before archives were signed (format 1.0), from a store without an
    /// installation, or by another tool.
    #[default]
    Unsigned,
}

/// Where the installation that signed an archive stands in its inbox's identity log (checked
/// by a [`Client`](crate::Client) that can reach its node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallationStatus {
    /// In the inbox now.
    Active,
    /// Was in the inbox and has been revoked.
    Revoked,
    /// Never in that inbox's log (or the inbox is unknown to the node).
    Unknown,
}

/// The archive's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// Ferry's own encrypted format (`ferry-archive`).
    #[default]
    Ferry,
    /// An archive written by libxmtp (read for migration only).
    Xmtp,
}

/// What [`archive_metadata`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveMetadata {
    /// Ferry's format or libxmtp's.
    pub format: ArchiveFormat,
    /// "1.1" for signed Ferry archives, "1.0" for older ones, "0" for libxmtp ones.
    pub format_version: String,
    /// "key" or "passphrase": what the archive needs to be opened.
    pub key_kind: &'static str,
    /// When the archive was made (nanoseconds since the Unix epoch).
    pub created_at_ns: i64,
    /// The start of the time range it was made with (inclusive, ns), if any.
    pub start_ns: Option<i64>,
    /// The end of the time range it was made with (exclusive, ns), if any.
    pub end_ns: Option<i64>,
    /// What it carries.
    pub elements: Vec<ArchiveElement>,
    /// The inbox whose history it is (hex; empty when the maker recorded none).
    pub inbox_id: String,
    /// The installation that made it (hex; empty when the maker recorded none).
    pub installation_id: String,
    /// How many conversations it holds, when the format records it (Ferry archives do).
    pub conversation_count: Option<u64>,
    /// How many messages it holds, when the format records it (Ferry archives do).
    pub message_count: Option<u64>,
    /// How many consent records it holds, when the format records it (Ferry archives do).
    pub consent_count: Option<u64>,
    /// Remote attachments' files the archive carries (element `attachments`).
    pub attachment_count: Option<u64>,
    /// The label given at creation ([`ArchiveOptions::label`]).
    pub label: String,
    /// The program that wrote it, e.g. `ferry 0.1.0` or `libxmtp`.
    pub producer: String,
    /// Size of the archive file in bytes.
    pub file_bytes: u64,
    /// Element bytes before compression (known when the archive was just created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_bytes: Option<u64>,
    /// The installation that signed the archive; `None` when it is unsigned.
    pub signed_by: Option<SignedBy>,
    /// `valid`, `invalid` or `unsigned`.
    pub signature: SignatureStatus,
    /// Why the signature is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_error: Option<String>,
    /// The signer in its inbox's identity log, when a client checked it (online).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_status: Option<InstallationStatus>,
}

/// What [`import_archive`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportReport {
    /// The format of the archive imported (`ferry`, or `xmtp` for a libxmtp archive).
    pub format: ArchiveFormat,
    /// Conversations new here, added as restored.
    pub conversations_added: u64,
    /// Conversations already here, kept as they were.
    pub conversations_merged: u64,
    /// Messages new here, added.
    pub messages_imported: u64,
    /// Messages already here (same id).
    pub messages_skipped: u64,
    /// Consent records newer than the stored ones (or with none stored), applied.
    pub consent_applied: u64,
    /// Consent records older than (or as old as) the stored ones.
    pub consent_skipped: u64,
    /// Attachment files (element `attachments`) new here, kept.
    #[serde(default)]
    pub attachments_imported: u64,
    /// Attachment files already kept here.
    #[serde(default)]
    pub attachments_skipped: u64,
    /// Elements of kinds this version does not know, or that Ferry does not import (libxmtp
    /// sync groups and their messages).
    pub unknown_skipped: u64,
    /// The installation that signed the archive (its signature verified before the import
    /// committed); `None` for an unsigned archive.
    #[serde(default)]
    pub signed_by: Option<SignedBy>,
    /// `valid` or `unsigned` (an archive whose signature fails is not imported).
    #[serde(default)]
    pub signature: SignatureStatus,
    /// The signer in its inbox's identity log, when a client checked it (online): an archive
    /// of a revoked installation is imported and reported as such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_status: Option<InstallationStatus>,
}

/// Progress of a long operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Archive bytes written or read so far.
    pub bytes_done: u64,
    /// Known for imports (the file size); for creation, 0.
    pub bytes_total: u64,
    /// Elements (conversations, messages, consent records) written or read so far.
    pub elements_done: u64,
    /// Known for creation (from the counts); for imports, from the metadata when it has them.
    pub elements_total: u64,
}

/// Progress reporting and cancellation for [`create_archive`] and [`import_archive`].
#[derive(Clone, Default)]
pub struct Control {
    cancel: Arc<AtomicBool>,
    #[allow(clippy::type_complexity)]
    progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl Control {
    /// A control that reports no progress and is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` as work proceeds (every few thousand elements, and at the end).
    pub fn on_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Asks the operation to stop; it returns [`Error::Cancelled`] having written nothing.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// A handle that cancels this operation from another thread.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    fn check(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    fn report(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }
}

const REPORT_EVERY: u64 = 8192;

/// Writes an archive of `store` to `path`. See the module docs for what is included.
pub fn create_archive(
    store: &Store,
    path: &Path,
    key: &ArchiveKey,
    opts: &ArchiveOptions,
    origin: &Origin,
    ctl: &Control,
) -> Result<ArchiveMetadata> {
    create_archive_with(
        store,
        path,
        key,
        opts,
        origin,
        ctl,
        &WriterOptions::default(),
    )
}

/// [`create_archive`] with explicit writer options (chunk size, compression level, threads).
pub fn create_archive_with(
    store: &Store,
    path: &Path,
    key: &ArchiveKey,
    opts: &ArchiveOptions,
    origin: &Origin,
    ctl: &Control,
    wopts: &WriterOptions,
) -> Result<ArchiveMetadata> {
    let mut elements = opts.elements.clone();
    elements.sort();
    elements.dedup();
    if elements.is_empty() {
        return Err(Error::NoElements);
    }
    if let (Some(s), Some(e)) = (opts.start_ns, opts.end_ns) {
        if s > e {
            return Err(Error::InvalidArchive(format!(
                "start_ns {s} is after end_ns {e}"
            )));
        }
    }
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(Error::ParentMissing(path.to_path_buf())),
    };
    if !parent.is_dir() {
        return Err(Error::ParentMissing(parent.to_path_buf()));
    }
    // The temporary file is removed on every early return (error or cancel).
    let tmp = tempfile::Builder::new()
        .prefix(".ferry-archive-")
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(|e| Error::io(parent, e))?;

    let with_messages = elements.contains(&ArchiveElement::Messages);
    let with_consent = elements.contains(&ArchiveElement::Consent);
    if elements.contains(&ArchiveElement::Attachments) && !with_messages {
        return Err(Error::InvalidArgument(
            "element attachments goes with messages (the files belong to messages)".into(),
        ));
    }
    let snap = store.snapshot()?;
    let conversations = if with_messages {
        snap.conversations(opts.start_ns, opts.end_ns)?
    } else {
        Vec::new()
    };
    let message_count = if with_messages {
        snap.count_messages(
            &conversations,
            opts.start_ns,
            opts.end_ns,
            opts.exclude_disappearing_messages,
        )?
    } else {
        0
    };
    let consent = if with_consent {
        snap.consent()?
    } else {
        Vec::new()
    };
    // The files to carry: those of the selected remote attachments that are held here.
    let mut files: Vec<(String, u64)> = Vec::new();
    if elements.contains(&ArchiveElement::Attachments) {
        for digest in remote_attachment_digests(&snap, &conversations, opts)? {
            if let Some(len) = snap.attachment_file_len(&digest)? {
                files.push((digest, len));
            }
        }
    }
    let piece_count: u64 = files.iter().map(|(_, len)| pieces_of(*len)).sum();
    let metadata = pb::Metadata {
        created_at_ns: crate::now_ns(),
        start_ns: opts.start_ns,
        end_ns: opts.end_ns,
        elements: elements
            .iter()
            .map(|e| convert::element_to_pb(*e) as i32)
            .collect(),
        // A signer fills in what the origin leaves empty (the writer refuses a mismatch).
        inbox_id: match &origin.signer {
            Some(s) if origin.inbox_id.is_empty() => s.inbox_id().to_string(),
            _ => origin.inbox_id.clone(),
        },
        installation_id: match &origin.signer {
            Some(s) if origin.installation_id.is_empty() => s.installation_id().to_vec(),
            _ => origin.installation_id.clone(),
        },
        conversation_count: conversations.len() as u64,
        message_count,
        consent_count: consent.len() as u64,
        label: opts.label.clone(),
        producer: concat!("ferry ", env!("CARGO_PKG_VERSION")).to_string(),
        attachment_count: files.len() as u64,
        attachment_piece_count: piece_count,
    };
    let total = metadata.conversation_count + message_count + metadata.consent_count + piece_count;
    let out = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let mut w = match &origin.signer {
        Some(signer) => ArchiveWriter::signed(out, key, metadata.clone(), wopts, signer.clone())?,
        None => ArchiveWriter::new(out, key, metadata.clone(), wopts)?,
    };
    let mut done = 0u64;
    let mut step = |w: &mut ArchiveWriter<_>, e: Element| -> Result<()> {
        w.write(e)?;
        done += 1;
        if done.is_multiple_of(REPORT_EVERY) {
            ctl.check()?;
            ctl.report(Progress {
                bytes_done: w.summary().bytes_written,
                bytes_total: 0,
                elements_done: done,
                elements_total: total,
            });
        }
        Ok(())
    };
    for c in &conversations {
        step(
            &mut w,
            Element::Conversation(convert::conversation_to_pb(c)),
        )?;
    }
    if with_messages {
        snap.for_each_message(
            &conversations,
            opts.start_ns,
            opts.end_ns,
            opts.exclude_disappearing_messages,
            |m| step(&mut w, Element::Message(convert::message_to_pb(m))),
        )?;
    }
    for (digest, _) in &files {
        // One file in memory at a time, written in pieces.
        let data = snap
            .attachment_file(digest)?
            .ok_or_else(|| Error::InvalidArchive(format!("attachment file {digest} vanished")))?;
        for (i, piece) in data.chunks(ATTACHMENT_PIECE).enumerate() {
            step(
                &mut w,
                Element::AttachmentPiece(pb::AttachmentPiece {
                    content_digest: digest.clone(),
                    offset: (i * ATTACHMENT_PIECE) as u64,
                    total_length: data.len() as u64,
                    data: piece.to_vec(),
                }),
            )?;
        }
    }
    for c in &consent {
        step(&mut w, Element::Consent(convert::consent_to_pb(c)))?;
    }
    ctl.check()?;
    let (out, summary) = w.finish()?;
    drop(out);
    drop(snap);
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(parent);
    ctl.report(Progress {
        bytes_done: summary.bytes_written,
        bytes_total: summary.bytes_written,
        elements_done: total,
        elements_total: total,
    });
    let signed_by = origin.signer.as_ref().map(|s| ferry_archive::SignedBy {
        inbox_id: s.inbox_id().to_string(),
        installation_id: s.installation_id(),
    });
    let mut meta = ferry_metadata(&metadata, key, summary.bytes_written, signed_by.as_ref());
    if meta.signed_by.is_some() {
        // The writer checked its signature before writing it.
        meta.signature = SignatureStatus::Valid;
    }
    meta.plaintext_bytes = Some(summary.plaintext_bytes);
    Ok(meta)
}

/// The largest piece of an attachment file in an archive (well under the 8 MiB frame limit).
pub(crate) const ATTACHMENT_PIECE: usize = 1 << 20;

fn pieces_of(len: u64) -> u64 {
    len.div_ceil(ATTACHMENT_PIECE as u64).max(1)
}

/// The content digests (hex) of the remote attachments among the selected messages, each once,
/// in message order.
pub(crate) fn remote_attachment_digests(
    snap: &ferry_store::Snapshot<'_>,
    conversations: &[Conversation],
    opts: &ArchiveOptions,
) -> Result<Vec<String>> {
    Ok(remote_attachments(snap, conversations, opts)?
        .into_iter()
        .map(|r| r.content_digest.to_ascii_lowercase())
        .collect())
}

/// The remote attachments among the messages an archive with `opts` selects, one per digest,
/// in message order.
pub(crate) fn selected_remote_attachments(
    store: &Store,
    opts: &ArchiveOptions,
) -> Result<Vec<ferry_content::RemoteAttachment>> {
    let snap = store.snapshot()?;
    let conversations = snap.conversations(opts.start_ns, opts.end_ns)?;
    remote_attachments(&snap, &conversations, opts)
}

fn remote_attachments(
    snap: &ferry_store::Snapshot<'_>,
    conversations: &[Conversation],
    opts: &ArchiveOptions,
) -> Result<Vec<ferry_content::RemoteAttachment>> {
    use ferry_content::ContentCodec as _;
    let t = ferry_content::RemoteAttachmentCodec::content_type();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (content, parameters) in snap.contents_of_type(
        conversations,
        opts.start_ns,
        opts.end_ns,
        opts.exclude_disappearing_messages,
        &t.authority,
        &t.type_id,
    )? {
        let encoded = ferry_content::EncodedContent {
            content_type: t.clone(),
            parameters: parameters
                .as_deref()
                .and_then(|p| ferry_content::EncodedContent::parameters_from_bytes(p).ok())
                .unwrap_or_default(),
            fallback: None,
            content,
        };
        if let Ok(r) = ferry_content::RemoteAttachmentCodec::decode(&encoded) {
            if seen.insert(r.content_digest.to_ascii_lowercase()) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) {
    // Makes the rename durable; failure here does not undo a complete archive.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) {}

/// The metadata of a Ferry archive; its signature is `unsigned` when `signed_by` is `None`, and
/// left `invalid` (unchecked) otherwise, for the caller to settle.
fn ferry_metadata(
    m: &pb::Metadata,
    key: &ArchiveKey,
    file_bytes: u64,
    signed_by: Option<&ferry_archive::SignedBy>,
) -> ArchiveMetadata {
    let mut elements: Vec<ArchiveElement> = m
        .elements
        .iter()
        .filter_map(|e| convert::element_from_pb(*e))
        .collect();
    elements.sort();
    elements.dedup();
    ArchiveMetadata {
        format: ArchiveFormat::Ferry,
        format_version: format!(
            "{}.{}",
            ferry_archive::FORMAT_MAJOR,
            if signed_by.is_some() {
                ferry_archive::SIGNED_MINOR
            } else {
                0
            }
        ),
        key_kind: match key {
            ArchiveKey::Raw(_) => "key",
            ArchiveKey::Passphrase(_) => "passphrase",
        },
        created_at_ns: m.created_at_ns,
        start_ns: m.start_ns,
        end_ns: m.end_ns,
        elements,
        inbox_id: m.inbox_id.clone(),
        installation_id: hex::encode(&m.installation_id),
        conversation_count: Some(m.conversation_count),
        message_count: Some(m.message_count),
        consent_count: Some(m.consent_count),
        attachment_count: Some(m.attachment_count),
        label: m.label.clone(),
        producer: m.producer.clone(),
        file_bytes,
        plaintext_bytes: None,
        signed_by: signed_by.map(SignedBy::from),
        signature: if signed_by.is_some() {
            SignatureStatus::Invalid
        } else {
            SignatureStatus::Unsigned
        },
        signature_error: None,
        installation_status: None,
    }
}

pub(crate) use xmtp::looks_like_xmtp;

/// The metadata of an open reader (the header and chunk 0), its signature not checked yet.
fn reader_metadata<R: Read>(r: &ArchiveReader<R>, key: &ArchiveKey, len: u64) -> ArchiveMetadata {
    let mut m = ferry_metadata(r.metadata(), key, len, r.signed_by());
    m.format_version = version(r.header());
    m
}

fn version(h: &Header) -> String {
    format!("{}.{}", h.major, h.minor)
}

/// Which format a file is in, from its first bytes; the file is returned rewound.
pub(crate) fn sniff(path: &Path) -> Result<(File, ArchiveFormat, u64)> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 18];
    let n = ferry_read_full(&mut f, &mut head).map_err(|e| Error::io(path, e))?;
    f.rewind().map_err(|e| Error::io(path, e))?;
    let format = if xmtp::looks_like_xmtp(&head[..n]) {
        ArchiveFormat::Xmtp
    } else {
        ArchiveFormat::Ferry
    };
    Ok((f, format, len))
}

fn ferry_read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads an archive's metadata and checks its signature. The metadata comes from the header
/// and the first chunk; a signed archive's signature is checked by hashing the chunks after
/// them (none is decrypted) and opening the last one, so the time grows with the archive's
/// size at hashing speed. A signature that does not verify is reported (`invalid`, with why),
/// not returned as an error. Recognises libxmtp archives by their first bytes.
pub fn archive_metadata(path: &Path, key: &ArchiveKey) -> Result<ArchiveMetadata> {
    let (f, format, len) = sniff(path)?;
    match format {
        ArchiveFormat::Xmtp => xmtp::metadata(f, key, len),
        ArchiveFormat::Ferry => {
            let r = ArchiveReader::open(BufReader::with_capacity(1 << 20, f), key)?;
            let mut m = reader_metadata(&r, key, len);
            if m.signed_by.is_some() {
                match r.check_signature() {
                    Ok(()) => m.signature = SignatureStatus::Valid,
                    Err(e) => m.signature_error = Some(e.to_string()),
                }
            }
            Ok(m)
        }
    }
}

/// An archive's metadata from the header and the first chunk alone: who it names as signer,
/// its signature not checked (`invalid` until checked, for a signed archive).
pub(crate) fn archive_metadata_unchecked(path: &Path, key: &ArchiveKey) -> Result<ArchiveMetadata> {
    let (f, format, len) = sniff(path)?;
    match format {
        ArchiveFormat::Xmtp => xmtp::metadata(f, key, len),
        ArchiveFormat::Ferry => {
            let r = ArchiveReader::open(BufReader::new(f), key)?;
            Ok(reader_metadata(&r, key, len))
        }
    }
}

/// What [`verify_archive`] found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The archive's metadata, its signature checked.
    pub metadata: ArchiveMetadata,
    /// Whether the elements read match the counts the metadata records.
    pub intact: bool,
    /// Conversations read.
    pub conversations: u64,
    /// Messages read.
    pub messages: u64,
    /// Consent records read.
    pub consent: u64,
    /// Pieces of attachment files (element `attachments`).
    pub attachment_pieces: u64,
    /// Elements of kinds this version does not know (skipped by an import).
    pub unknown: u64,
}

/// Reads a whole archive without importing it: every chunk is authenticated, every element
/// decoded and a signed archive's signature verified. An archive that fails (a bad signature
/// included) is reported with the error.
pub fn verify_archive(path: &Path, key: &ArchiveKey) -> Result<VerifyReport> {
    let (f, format, len) = sniff(path)?;
    if format == ArchiveFormat::Xmtp {
        return xmtp::verify(f, key, len);
    }
    let mut r = ArchiveReader::open(BufReader::new(f), key)?;
    let mut metadata = reader_metadata(&r, key, len);
    let pieces_expected = r.metadata().attachment_piece_count;
    let [conversations, messages, consent, attachment_pieces, unknown] = r.verify_rest()?;
    if r.signature_verified() {
        metadata.signature = SignatureStatus::Valid;
    }
    let counts_match = metadata.conversation_count == Some(conversations)
        && metadata.message_count == Some(messages)
        && metadata.consent_count == Some(consent)
        && attachment_pieces == pieces_expected;
    Ok(VerifyReport {
        metadata,
        intact: counts_match,
        conversations,
        messages,
        consent,
        attachment_pieces,
        unknown,
    })
}
