//! The commands over the local store and archives.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ferry_sdk::backup::{self, ArchiveElement, ArchiveOptions, Origin};
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, Conversation, ConversationFilter, ConversationKind,
    Message, MessageFilter, Store,
};
use ferry_sdk::ArchiveKey;
use serde::Serialize;

use crate::output::anyhow_like::Result;
use crate::output::{local_time, print_json, progress};

#[derive(Args)]
pub struct KeyArgs {
    /// File with the 32-byte key (32 raw bytes or 64 hex digits).
    #[arg(long, conflicts_with = "passphrase_file")]
    pub key_file: Option<PathBuf>,
    /// File whose first line is the passphrase (Argon2id-stretched).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn key(&self) -> Result<ArchiveKey> {
        if let Some(p) = &self.key_file {
            let bytes = zeroize::Zeroizing::new(
                std::fs::read(p)
                    .map_err(|e| format!("cannot read key file {}: {e}", p.display()))?,
            );
            return Ok(ArchiveKey::from_key_file(&bytes)
                .map_err(|e| format!("key file {}: {e}", p.display()))?);
        }
        if let Some(p) = &self.passphrase_file {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read passphrase file {}: {e}", p.display()))?,
            );
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                return Err(format!("passphrase file {} is empty", p.display()).into());
            }
            return Ok(ArchiveKey::passphrase(line));
        }
        Err("give --key-file or --passphrase-file".into())
    }
}

#[derive(Subcommand)]
pub enum ArchiveCmd {
    /// Write an encrypted archive of this installation's conversations, messages and consent,
    /// signed by this installation (a folder without an installation writes it unsigned).
    Create {
        out: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Only messages sent at or after this time (ns since the epoch, inclusive).
        #[arg(long)]
        start_ns: Option<i64>,
        /// Only messages sent before this time (ns since the epoch, exclusive).
        #[arg(long)]
        end_ns: Option<i64>,
        /// What to include: messages, consent, or both (comma-separated). Default both.
        #[arg(long, value_delimiter = ',')]
        elements: Option<Vec<String>>,
        /// A name for the archive, kept in its metadata.
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        json: bool,
    },
    /// Show an archive's metadata and who signed it (the signature is checked by hashing the
    /// file; only the first and last chunks are decrypted); in a registered folder, also where
    /// the signer stands in its inbox's identity log. Without a key, only its format and the
    /// kind of key it needs.
    Inspect {
        input: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        json: bool,
    },
    /// Read a whole archive without importing it, and say whether it is intact.
    Verify {
        input: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        json: bool,
    },
    /// Import an archive (Ferry's or libxmtp's) into this installation: additive, all or nothing.
    Import {
        input: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Write nothing: say what the import would add or merge, per conversation and in
        /// total (the same totals the import would report).
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ConversationsCmd {
    /// List conversations, newest activity first (a DM's groups appear once).
    List {
        /// Only active (true) or only inactive (false) ones.
        #[arg(long)]
        active: Option<bool>,
        /// Only conversations with this consent: allowed, denied or unknown.
        #[arg(long)]
        consent: Option<String>,
        /// Only groups or only DMs.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum MessagesCmd {
    /// List messages in sending order.
    List {
        /// Conversation id (hex).
        #[arg(long)]
        conversation: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// List consent records.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Record a consent decision (allowed, denied or unknown) for a conversation or an inbox.
    Set {
        state: String,
        #[arg(long, conflicts_with = "inbox", required_unless_present = "inbox")]
        conversation: Option<String>,
        #[arg(long)]
        inbox: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum DevCmd {
    /// Fill the store with synthetic data (no network).
    Seed {
        #[arg(long, default_value_t = 10)]
        conversations: u64,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        #[arg(long, default_value_t = 10)]
        consent: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

/// The installation's data folder (`--home`, `FERRY_HOME`, else `~/.ferry`), not created.
pub fn home_path(home: Option<PathBuf>) -> Result<PathBuf> {
    Ok(match home {
        Some(h) => h,
        None => {
            let base = std::env::var_os("HOME").ok_or("set --home or FERRY_HOME")?;
            PathBuf::from(base).join(".ferry")
        }
    })
}

/// The data folder, created (mode 0700) if missing: for commands that write into it.
pub fn home_dir(home: Option<PathBuf>) -> Result<PathBuf> {
    let dir = home_path(home)?;
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create home folder {}: {e}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    Ok(dir)
}

pub fn open_store(home: Option<PathBuf>) -> Result<Store> {
    let dir = home_dir(home)?;
    Ok(Store::open(dir.join("ferry.db"))?)
}

/// The store of a folder that has one, for commands that only read: a folder without one is
/// an error, never created.
pub fn read_store(home: Option<PathBuf>) -> Result<Store> {
    let dir = home_path(home)?;
    let path = dir.join("ferry.db");
    if !path.exists() {
        return Err(format!(
            "{} holds no Ferry data: run `ferry init --node URL` (or import an archive) first",
            dir.display()
        )
        .into());
    }
    Ok(Store::open(path)?)
}

pub fn keygen(out: &Path, hex_out: bool) -> Result<()> {
    use std::io::Write;
    let key = ArchiveKey::generate();
    let raw = key.raw_bytes().expect("generated keys are raw");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(out)
        .map_err(|e| format!("cannot create key file {}: {e}", out.display()))?;
    if hex_out {
        let mut s = zeroize::Zeroizing::new(hex::encode(raw));
        s.push('\n');
        f.write_all(s.as_bytes())?;
    } else {
        f.write_all(raw)?;
    }
    f.sync_all()?;
    Ok(())
}

fn install_ctrlc(ctl: &backup::Control) {
    let flag = ctl.cancel_flag();
    let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
}

pub fn archive(home: Option<PathBuf>, c: ArchiveCmd) -> Result<()> {
    match c {
        ArchiveCmd::Create {
            out,
            key,
            start_ns,
            end_ns,
            elements,
            label,
            json,
        } => {
            let key = key.key()?;
            let mut opts = ArchiveOptions {
                start_ns,
                end_ns,
                label,
                ..ArchiveOptions::default()
            };
            if let Some(list) = elements {
                opts.elements = list
                    .iter()
                    .map(|s| {
                        ArchiveElement::parse(s)
                            .ok_or_else(|| format!("unknown element {s:?} (use messages, consent)"))
                    })
                    .collect::<std::result::Result<_, _>>()?;
            }
            let store = read_store(home)?;
            let (ctl, bar) = progress(json, "creating");
            install_ctrlc(&ctl);
            let meta =
                backup::create_archive(&store, &out, &key, &opts, &Origin::of_store(&store)?, &ctl);
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let meta = meta?;
            if json {
                print_json(&meta)?;
            } else {
                println!(
                    "wrote {} ({} bytes): {} conversations, {} messages, {} consent records",
                    out.display(),
                    meta.file_bytes,
                    meta.conversation_count.unwrap_or(0),
                    meta.message_count.unwrap_or(0),
                    meta.consent_count.unwrap_or(0)
                );
                println!(
                    "signature: {}",
                    signature_line(meta.signature, meta.signed_by.as_ref(), None, None)
                );
            }
        }
        ArchiveCmd::Inspect { input, key, json } => {
            if key.key_file.is_none() && key.passphrase_file.is_none() {
                // Without a key: only what the header says, so an app can ask for the right
                // secret.
                let kind = ferry_sdk::backups::archive_key_kind(&input)?;
                if json {
                    print_json(&serde_json::json!({
                        "format": kind.format,
                        "format_version": kind.format_version,
                        "key_kind": kind.key_kind,
                    }))?;
                } else {
                    println!("format:        {:?} {}", kind.format, kind.format_version);
                    println!("key kind:      {}", kind.key_kind);
                    if let Some(a) = kind.argon2 {
                        println!(
                            "argon2id:      {} KiB, {} passes, {} lanes",
                            a.m_cost_kib, a.t_cost, a.p_cost
                        );
                    }
                }
                return Ok(());
            }
            let key = key.key()?;
            // A registered installation also looks the signer up in its inbox's identity log.
            let meta = match registered_client(&home)? {
                Some(client) => client.archive_metadata(&input, &key)?,
                None => backup::archive_metadata(&input, &key)?,
            };
            if json {
                print_json(&meta)?;
            } else {
                print_metadata(&meta);
            }
        }
        ArchiveCmd::Verify { input, key, json } => {
            let key = key.key()?;
            let report = backup::verify_archive(&input, &key)?;
            if json {
                print_json(&report)?;
            } else {
                print_metadata(&report.metadata);
                println!(
                    "intact:        {} ({} conversations, {} messages, {} consent records read)",
                    if report.intact {
                        "yes"
                    } else {
                        "NO: counts differ from the metadata"
                    },
                    report.conversations,
                    report.messages,
                    report.consent
                );
            }
            if !report.intact {
                return Err(
                    "archive is not intact: element counts differ from its metadata".into(),
                );
            }
        }
        ArchiveCmd::Import {
            input,
            key,
            dry_run: true,
            json,
        } => {
            let key = key.key()?;
            let (ctl, bar) = progress(json, "reading");
            install_ctrlc(&ctl);
            let preview = match registered_client(&home)? {
                Some(client) => client.import_archive_preview(&input, &key, &ctl),
                None => {
                    // Only read: a folder without a store is previewed as an empty one, and
                    // nothing is created.
                    let db = home_path(home)?.join("ferry.db");
                    let store = if db.exists() {
                        Store::open(&db)?
                    } else {
                        Store::open_in_memory()?
                    };
                    backup::import_archive_preview(&store, &input, &key, &ctl)
                }
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let preview = preview?;
            if json {
                print_json(&preview)?;
            } else {
                print_preview(&preview);
            }
        }
        ArchiveCmd::Import {
            input,
            key,
            dry_run: false,
            json,
        } => {
            let key = key.key()?;
            let (ctl, bar) = progress(json, "importing");
            install_ctrlc(&ctl);
            // A registered installation imports through its client: it refuses another
            // inbox's archive and announces the restored conversations.
            let report = match registered_client(&home)? {
                Some(client) => client.import_archive(&input, &key, &ctl),
                None => backup::import_archive(&mut open_store(home)?, &input, &key, &ctl),
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let report = report?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "imported {} messages ({} already here), {} new conversations ({} already here), {} consent records applied ({} older skipped)",
                    report.messages_imported,
                    report.messages_skipped,
                    report.conversations_added,
                    report.conversations_merged,
                    report.consent_applied,
                    report.consent_skipped
                );
                if report.unknown_skipped > 0 {
                    println!(
                        "skipped {} elements of unknown kinds",
                        report.unknown_skipped
                    );
                }
                println!(
                    "signature: {}",
                    signature_line(
                        report.signature,
                        report.signed_by.as_ref(),
                        report.installation_status,
                        None
                    )
                );
            }
        }
    }
    Ok(())
}

fn print_preview(p: &backup::ImportPreview) {
    let t = &p.totals;
    println!("dry run, nothing written: the import would");
    println!(
        "  add {} conversations (restored) and merge into {} already here",
        t.conversations_added, t.conversations_merged
    );
    println!(
        "  import {} messages ({} already here, skipped)",
        t.messages_imported, t.messages_skipped
    );
    let state_changes = p
        .consent_changes
        .iter()
        .filter(|c| c.step.from != Some(c.step.to))
        .count();
    println!(
        "  apply {} consent records ({state_changes} change a state; {} older skipped)",
        t.consent_applied, t.consent_skipped
    );
    if t.unknown_skipped > 0 {
        println!("  skip {} elements of unknown kinds", t.unknown_skipped);
    }
}

fn print_metadata(m: &backup::ArchiveMetadata) {
    let opt = |v: Option<i64>| v.map_or("-".to_string(), local_time);
    println!("format:        {:?} {}", m.format, m.format_version);
    println!("key kind:      {}", m.key_kind);
    println!("created at:    {}", local_time(m.created_at_ns));
    println!("range:         [{}, {})", opt(m.start_ns), opt(m.end_ns));
    println!(
        "elements:      {}",
        m.elements
            .iter()
            .map(|e| format!("{e:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    );
    if !m.label.is_empty() {
        println!("label:         {}", m.label);
    }
    if !m.inbox_id.is_empty() {
        println!("made by inbox: {}", m.inbox_id);
    }
    if let (Some(c), Some(n), Some(k)) = (m.conversation_count, m.message_count, m.consent_count) {
        println!("holds:         {c} conversations, {n} messages, {k} consent records");
    }
    println!("file bytes:    {}", m.file_bytes);
    println!(
        "signature:     {}",
        signature_line(
            m.signature,
            m.signed_by.as_ref(),
            m.installation_status,
            m.signature_error.as_deref()
        )
    );
}

/// Who signed an archive and whether it holds, in one line.
fn signature_line(
    signature: backup::SignatureStatus,
    by: Option<&backup::SignedBy>,
    status: Option<backup::InstallationStatus>,
    error: Option<&str>,
) -> String {
    use backup::{InstallationStatus, SignatureStatus};
    let Some(by) = by else {
        return "none (unsigned: made before archives were signed, or without an installation)"
            .into();
    };
    let who = format!(
        "installation {} of inbox {}",
        by.installation_id, by.inbox_id
    );
    match signature {
        SignatureStatus::Valid => {
            let standing = match status {
                Some(InstallationStatus::Active) => " (active in its inbox's identity log)",
                Some(InstallationStatus::Revoked) => " (REVOKED from its inbox since)",
                Some(InstallationStatus::Unknown) => " (NOT in that inbox's identity log)",
                None => "",
            };
            format!("valid, by {who}{standing}")
        }
        _ => format!(
            "INVALID: claims {who}, but {}",
            error.unwrap_or("the signature does not verify")
        ),
    }
}

#[derive(Serialize)]
pub struct ConversationJson {
    pub id: String,
    pub kind: &'static str,
    pub active: bool,
    pub restored: bool,
    pub membership: &'static str,
    pub name: String,
    pub description: String,
    pub image_url: String,
    pub creator_inbox_id: String,
    pub dm_peer_inbox_id: Option<String>,
    pub created_at_ns: i64,
    pub last_message_ns: Option<i64>,
}

impl From<&Conversation> for ConversationJson {
    fn from(c: &Conversation) -> Self {
        ConversationJson {
            id: hex::encode(&c.id),
            kind: c.kind.as_str(),
            active: c.is_active(),
            restored: c.membership == ferry_sdk::store::Membership::Restored,
            membership: c.membership.as_str(),
            name: c.name.clone(),
            description: c.description.clone(),
            image_url: c.image_url.clone(),
            creator_inbox_id: c.creator_inbox_id.clone(),
            dm_peer_inbox_id: c.dm_peer_inbox_id.clone(),
            created_at_ns: c.created_at_ns,
            last_message_ns: c.last_message_ns,
        }
    }
}

#[derive(Serialize)]
pub struct MessageJson {
    pub id: String,
    pub conversation_id: String,
    pub sender_inbox_id: String,
    pub sender_installation_id: String,
    pub sent_at_ns: i64,
    pub kind: &'static str,
    pub content_type: String,
    pub text: Option<String>,
    pub reference_id: Option<String>,
    pub delivery_status: &'static str,
}

impl From<&Message> for MessageJson {
    fn from(m: &Message) -> Self {
        let ct = &m.content_type;
        MessageJson {
            id: hex::encode(&m.id),
            conversation_id: hex::encode(&m.conversation_id),
            sender_inbox_id: m.sender_inbox_id.clone(),
            sender_installation_id: hex::encode(&m.sender_installation_id),
            sent_at_ns: m.sent_at_ns,
            kind: m.kind.as_str(),
            content_type: format!("{}/{}:{}.{}", ct.authority, ct.type_id, ct.major, ct.minor),
            text: m.text(),
            reference_id: m.reference_id.as_ref().map(hex::encode),
            delivery_status: m.delivery_status.as_str(),
        }
    }
}

/// The messaging client of this folder, when it is a registered installation (opening it
/// touches no network).
fn registered_client(home: &Option<PathBuf>) -> Result<Option<ferry_sdk::Client>> {
    let dir = home_path(home.clone())?;
    match crate::msg_cmd::open_installation(&dir) {
        Ok(c) => Ok(Some(c)),
        Err(ferry_sdk::Error::NotRegistered(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn conversations(home: Option<PathBuf>, c: ConversationsCmd) -> Result<()> {
    let ConversationsCmd::List {
        active,
        consent,
        kind,
        json,
    } = c;
    let filter =
        ConversationFilter {
            active,
            consent: match consent.as_deref() {
                None => None,
                Some(s) => Some(ConsentState::parse(s).ok_or_else(|| {
                    format!("consent must be allowed, denied or unknown, not {s}")
                })?),
            },
            kind: match kind.as_deref() {
                None => None,
                Some(k) => Some(
                    ConversationKind::parse(k)
                        .filter(|k| *k != ConversationKind::Sync)
                        .ok_or_else(|| format!("kind must be group or dm, not {k}"))?,
                ),
            },
            ..Default::default()
        };
    let list = match registered_client(&home)? {
        Some(client) => client.list_conversations(&filter)?,
        None => read_store(home)?.conversations(&filter)?,
    };
    if json {
        print_json(&list.iter().map(ConversationJson::from).collect::<Vec<_>>())?;
    } else {
        for c in &list {
            println!(
                "{} {:5} {:8} {}",
                hex::encode(&c.id),
                c.kind.as_str(),
                c.membership.as_str(),
                if c.name.is_empty() {
                    c.dm_peer_inbox_id.as_deref().unwrap_or("")
                } else {
                    &c.name
                }
            );
        }
    }
    Ok(())
}

pub fn messages(home: Option<PathBuf>, c: MessagesCmd) -> Result<()> {
    let MessagesCmd::List {
        conversation,
        limit,
        json,
    } = c;
    let conversation_id = match conversation {
        Some(h) => Some(hex::decode(h.trim()).map_err(|_| "conversation id must be hex")?),
        None => None,
    };
    let client = match &conversation_id {
        Some(_) => registered_client(&home)?,
        None => None,
    };
    let list = match (client, conversation_id) {
        // A DM shows the messages of all its stitched groups.
        (Some(client), Some(id)) => {
            client
                .conversation(&id)?
                .messages(&ferry_sdk::MessageQuery {
                    limit,
                    ..Default::default()
                })?
        }
        (_, conversation_id) => {
            let store = read_store(home)?;
            if let Some(id) = &conversation_id {
                if store.conversation(id)?.is_none() {
                    return Err(format!("conversation {} not found", hex::encode(id)).into());
                }
            }
            store.messages(&MessageFilter {
                conversation_id,
                limit,
                ..Default::default()
            })?
        }
    };
    if json {
        print_json(&list.iter().map(MessageJson::from).collect::<Vec<_>>())?;
    } else {
        for m in &list {
            println!(
                "{} {} {}: {}",
                local_time(m.sent_at_ns),
                &hex::encode(&m.conversation_id)[..8],
                &m.sender_inbox_id[..m.sender_inbox_id.len().min(8)],
                m.text().unwrap_or_else(|| "(unsupported content)".into())
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ConsentJson {
    entity_type: &'static str,
    entity: String,
    state: &'static str,
    updated_at_ns: i64,
}

impl From<&ConsentRecord> for ConsentJson {
    fn from(c: &ConsentRecord) -> Self {
        ConsentJson {
            entity_type: c.entity_type.as_str(),
            entity: c.entity.clone(),
            state: c.state.as_str(),
            updated_at_ns: c.updated_at_ns,
        }
    }
}

pub fn consent(home: Option<PathBuf>, c: ConsentCmd) -> Result<()> {
    let json = match c {
        ConsentCmd::List { json } => json,
        ConsentCmd::Set {
            state,
            conversation,
            inbox,
            json,
        } => {
            let state = ConsentState::parse(&state)
                .ok_or_else(|| format!("state must be allowed, denied or unknown, not {state}"))?;
            let (entity_type, entity) = match (conversation, inbox) {
                (Some(c), _) => {
                    let id = hex::decode(c.trim()).map_err(|_| "conversation id must be hex")?;
                    (ConsentEntity::Conversation, hex::encode(id))
                }
                (None, Some(i)) => (ConsentEntity::Inbox, i),
                (None, None) => return Err("give --conversation ID or --inbox ID".into()),
            };
            let home = home_dir(home)?;
            let record = match crate::msg_cmd::open_installation(&home) {
                // An installation: the decision also goes to the inbox's other installations.
                Ok(client) => {
                    client.set_consent(entity_type, &entity, state)?;
                    let stored = client.store().consent(entity_type, &entity)?;
                    stored.ok_or("consent not recorded")?
                }
                // A folder without an installation (archives only): just the store.
                Err(ferry_sdk::Error::NotRegistered(_)) => {
                    let record = ConsentRecord {
                        entity_type,
                        entity,
                        state,
                        updated_at_ns: ferry_sdk::now_ns(),
                    };
                    open_store(Some(home))?.set_consent(&record)?;
                    record
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                print_json(&ConsentJson::from(&record))?;
            } else {
                println!("{} {} {}", record.entity_type, record.entity, record.state);
            }
            return Ok(());
        }
    };
    let store = read_store(home)?;
    let list = store.consent_list()?;
    if json {
        print_json(&list.iter().map(ConsentJson::from).collect::<Vec<_>>())?;
    } else {
        for c in &list {
            println!(
                "{:12} {:8} {}",
                c.entity_type.as_str(),
                c.state.as_str(),
                c.entity
            );
        }
    }
    Ok(())
}

pub fn dev(home: Option<PathBuf>, c: DevCmd) -> Result<()> {
    let DevCmd::Seed {
        conversations,
        messages,
        consent,
        seed,
        json,
    } = c;
    let mut store = open_store(home)?;
    let inbox = match store.setting("inbox_id")? {
        Some(v) => String::from_utf8_lossy(&v).into_owned(),
        None => {
            let mut b = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            let inbox = hex::encode(b);
            store.set_setting("inbox_id", inbox.as_bytes())?;
            inbox
        }
    };
    let report = ferry_sdk::dev::seed(
        &mut store,
        &ferry_sdk::dev::SeedOptions {
            conversations,
            messages,
            consent,
            seed,
            self_inbox_id: inbox,
            ..Default::default()
        },
    )?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "seeded {} conversations, {} messages, {} consent records",
            report.conversations, report.messages, report.consent
        );
    }
    Ok(())
}
