//! `ferry archive ...` and `ferry keygen`: archives of a data folder, made, inspected,
//! verified and imported.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ferry_sdk::archive::{self, ArchiveElement, ArchiveOptions, Origin};
use ferry_sdk::store::Store;
use ferry_sdk::ArchiveKey;

use crate::output::anyhow_like::Result;
use crate::output::{local_time, print_json, progress};

use crate::cmd::{home_path, open_store, read_store, registered_client};

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
        /// What to include: messages, consent, attachments (the files of remote attachments,
        /// with messages), comma-separated. Default messages,consent.
        #[arg(long, value_delimiter = ',')]
        elements: Option<Vec<String>>,
        /// A name for the archive, kept in its metadata.
        #[arg(long, default_value = "")]
        label: String,
        /// Leave out messages that will disappear (from conversations with disappearing
        /// messages on).
        #[arg(long)]
        exclude_disappearing_messages: bool,
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

fn install_ctrlc(ctl: &archive::Control) {
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
            exclude_disappearing_messages,
            json,
        } => {
            let key = key.key()?;
            let mut opts = ArchiveOptions {
                start_ns,
                end_ns,
                label,
                exclude_disappearing_messages,
                ..ArchiveOptions::default()
            };
            if let Some(list) = elements {
                opts.elements = list
                    .iter()
                    .map(|s| {
                        ArchiveElement::parse(s).ok_or_else(|| {
                            format!("unknown element {s:?} (use messages, consent, attachments)")
                        })
                    })
                    .collect::<std::result::Result<_, _>>()?;
            }
            if opts.elements.contains(&ArchiveElement::Attachments) {
                // Files of attachments not held here yet are fetched first, to be carried.
                if let Some(client) = registered_client(&home)? {
                    let missing = client.hold_attachment_files(&opts)?;
                    if missing > 0 && !json {
                        eprintln!("warning: {missing} attachment files could not be fetched and are not carried");
                    }
                }
            }
            let store = read_store(home)?;
            let (ctl, bar) = progress(json, "creating");
            install_ctrlc(&ctl);
            let meta = archive::create_archive(
                &store,
                &out,
                &key,
                &opts,
                &Origin::of_store(&store)?,
                &ctl,
            );
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
                let kind = ferry_sdk::backup_manager::archive_key_kind(&input)?;
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
                None => archive::archive_metadata(&input, &key)?,
            };
            if json {
                print_json(&meta)?;
            } else {
                print_metadata(&meta);
            }
        }
        ArchiveCmd::Verify { input, key, json } => {
            let key = key.key()?;
            let report = archive::verify_archive(&input, &key)?;
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
                    archive::import_archive_preview(&store, &input, &key, &ctl)
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
                None => archive::import_archive(&mut open_store(home)?, &input, &key, &ctl),
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

fn print_preview(p: &archive::ImportPreview) {
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

fn print_metadata(m: &archive::ArchiveMetadata) {
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
    signature: archive::SignatureStatus,
    by: Option<&archive::SignedBy>,
    status: Option<archive::InstallationStatus>,
    error: Option<&str>,
) -> String {
    use archive::{InstallationStatus, SignatureStatus};
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
