//! Typed content from the command line: replies, reactions, files (inline or remote) and
//! getting a message's attachment back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use ferry_sdk::content::{self, Attachment, AttachmentStore, Content, HttpAttachmentStore};
use serde::Serialize;

use crate::msg_cmd::open_client;
use crate::output::anyhow_like::Result;
use crate::output::print_json;

#[derive(Subcommand)]
pub enum AttachmentCmd {
    /// Write a message's attachment to OUT (a remote one is downloaded, checked against its
    /// digest and decrypted first).
    Get {
        message_id: String,
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Sent {
    message_id: String,
    conversation_id: String,
    /// `text`, `reply`, `reaction`, `attachment` or `remote_attachment`.
    content_kind: &'static str,
}

fn hex_arg(what: &str, s: &str) -> Result<Vec<u8>> {
    Ok(hex::decode(s.trim()).map_err(|_| format!("{what} {s} is not hex"))?)
}

fn report(sent: Sent, json: bool) -> Result<()> {
    if json {
        print_json(&sent)?;
    } else {
        println!("{}", sent.message_id);
    }
    Ok(())
}

/// `ferry send CONV TEXT [--reply-to MSG]`.
pub fn send(
    home: Option<PathBuf>,
    conversation: String,
    text: String,
    reply_to: Option<String>,
    json: bool,
) -> Result<()> {
    let client = open_client(home)?;
    let g = client.conversation(&hex_arg("conversation id", &conversation)?)?;
    let (id, kind) = match reply_to {
        Some(msg) => (g.send_reply(&hex_arg("message id", &msg)?, &text)?, "reply"),
        None => (g.send(&text)?, "text"),
    };
    report(
        Sent {
            message_id: hex::encode(id),
            conversation_id: hex::encode(g.id()),
            content_kind: kind,
        },
        json,
    )
}

/// `ferry react CONV MSG EMOJI [--remove]`.
pub fn react(
    home: Option<PathBuf>,
    conversation: String,
    message: String,
    emoji: String,
    remove: bool,
    json: bool,
) -> Result<()> {
    let client = open_client(home)?;
    let g = client.conversation(&hex_arg("conversation id", &conversation)?)?;
    let id = g.send_reaction(&hex_arg("message id", &message)?, &emoji, remove)?;
    report(
        Sent {
            message_id: hex::encode(id),
            conversation_id: hex::encode(g.id()),
            content_kind: "reaction",
        },
        json,
    )
}

/// The MIME type of a file, from its extension.
fn mime_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/mp4",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// `ferry send-file CONV PATH`: inline up to the inline limit, otherwise encrypted and
/// uploaded to this installation's history server as a remote attachment.
pub fn send_file(
    home: Option<PathBuf>,
    conversation: String,
    path: PathBuf,
    json: bool,
) -> Result<()> {
    let client = open_client(home)?;
    let g = client.conversation(&hex_arg("conversation id", &conversation)?)?;
    let data = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let attachment = Attachment {
        filename: path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string),
        mime_type: mime_of(&path).to_string(),
        data,
    };
    let (id, kind) = if attachment.data.len() <= content::MAX_INLINE_ATTACHMENT_BYTES {
        (g.send_attachment(&attachment)?, "attachment")
    } else {
        let url = client.history_sync_url();
        if url.is_empty() {
            return Err(format!(
                "{} is {} bytes, over the inline limit of {}: a remote attachment needs a \
                 history server (`ferry init --history-url URL`)",
                path.display(),
                attachment.data.len(),
                content::MAX_INLINE_ATTACHMENT_BYTES
            )
            .into());
        }
        let store: Arc<dyn AttachmentStore> = Arc::new(HttpAttachmentStore::new(&url)?);
        (
            g.send_remote_attachment(&attachment, store)?,
            "remote_attachment",
        )
    };
    report(
        Sent {
            message_id: hex::encode(id),
            conversation_id: hex::encode(g.id()),
            content_kind: kind,
        },
        json,
    )
}

#[derive(Serialize)]
struct Saved {
    message_id: String,
    path: String,
    filename: Option<String>,
    mime_type: String,
    size: u64,
    /// Whether it came from a remote store (downloaded, digest checked, decrypted).
    remote: bool,
}

/// `ferry attachment get MSG OUT`.
pub fn attachment(home: Option<PathBuf>, c: AttachmentCmd) -> Result<()> {
    let AttachmentCmd::Get {
        message_id,
        out,
        json,
    } = c;
    let client = open_client(home)?;
    let id = hex_arg("message id", &message_id)?;
    let m = client
        .with_store(|s| s.message(&id))?
        .ok_or_else(|| format!("message {message_id} not found"))?;
    let (a, remote) = match content::content_of(&m) {
        Content::Attachment(a) => (a, false),
        // Held here (sent from here, fetched before, restored from an archive with its
        // files), else downloaded, checked against its digest and kept.
        Content::RemoteAttachment(r) => (client.fetch_remote_attachment(&r)?, true),
        other => {
            return Err(format!(
                "message {message_id} is a {}, not an attachment",
                other.kind()
            )
            .into())
        }
    };
    // Written whole or not at all: a temporary file beside OUT, renamed over it.
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, &a.data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    tmp.persist(&out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let saved = Saved {
        message_id,
        path: out.display().to_string(),
        filename: a.filename,
        mime_type: a.mime_type,
        size: a.data.len() as u64,
        remote,
    };
    if json {
        print_json(&saved)?;
    } else {
        println!("{} ({} bytes)", saved.path, saved.size);
    }
    Ok(())
}
