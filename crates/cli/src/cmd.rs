//! The commands over the local store and archives.

use std::path::PathBuf;

use clap::Subcommand;
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, Conversation, ConversationFilter, ConversationKind,
    Message, MessageFilter, Store,
};
use serde::Serialize;

use crate::output::anyhow_like::Result;
use crate::output::{local_time, print_json};

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
        /// Mixed content: 10 % reactions, 5 % replies, 1 % remote attachments.
        #[arg(long)]
        mixed: bool,
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
    /// Disappearing messages, when on.
    pub disappearing: Option<DisappearingJson>,
}

#[derive(Serialize)]
pub struct DisappearingJson {
    /// Messages sent from this time on disappear.
    pub from_ns: i64,
    /// How long after it was sent a message disappears.
    pub in_ns: i64,
    /// `in_ns` as a person reads it ("1h", "7d").
    pub after: String,
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
            disappearing: c.disappearing.map(|d| DisappearingJson {
                from_ns: d.from_ns,
                in_ns: d.in_ns,
                after: ferry_sdk::content::short_duration(d.in_ns),
            }),
        }
    }
}

/// A duration as people write it: a number with a unit, `500ms`, `30s`, `5m`, `2h`, `7d`,
/// `1w` (a bare number is seconds); parts may be joined, `1h30m`. In nanoseconds, positive.
pub fn parse_duration(s: &str) -> std::result::Result<i64, String> {
    let bad = || format!("{s:?} is not a duration (write 30s, 5m, 2h, 7d or 1h30m)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .filter(|n| *n > 0)
            .ok_or_else(bad);
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: i64 = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total <= 0 {
        return Err(bad());
    }
    Ok(total)
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
    /// When the message disappears (ns since the Unix epoch); absent: never.
    pub expire_at_ns: Option<i64>,
    /// `text`, `reply`, `reaction`, `read_receipt`, `attachment`, `remote_attachment`,
    /// `group_updated` or `unknown`.
    pub content_kind: &'static str,
    /// What the sender gave to show where the type is not known.
    pub fallback: Option<String>,
    /// Replies: the message replied to (hex id).
    pub reply_to: Option<String>,
    /// The reactions on this message as they stand.
    pub reactions: Vec<ReactionJson>,
    /// Attachments: what the file is, and whether its bytes are in this store.
    pub attachment: Option<AttachmentJson>,
}

#[derive(Serialize)]
pub struct ReactionJson {
    pub content: String,
    pub count: usize,
    pub inbox_ids: Vec<String>,
}

#[derive(Serialize)]
pub struct AttachmentJson {
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    /// Bytes of the file (inline), or of the encrypted upload (remote) when the sender said.
    pub size: Option<u64>,
    /// Whether the file's bytes are in this installation's store: always for an inline one;
    /// for a remote one when it was sent from here, fetched before, or restored from an
    /// archive with element `attachments` (otherwise it is fetched from `url`).
    pub stored: bool,
    pub url: Option<String>,
}

impl MessageJson {
    /// The message, with the reactions on it from `reactions` (see
    /// [`ferry_sdk::content::reactions`]).
    pub fn with_reactions(
        m: &Message,
        reactions: &std::collections::BTreeMap<Vec<u8>, Vec<ferry_sdk::content::ReactionCount>>,
    ) -> MessageJson {
        let mut j = MessageJson::from(m);
        if let Some(counts) = reactions.get(&m.id) {
            j.reactions = counts
                .iter()
                .map(|c| ReactionJson {
                    content: c.content.clone(),
                    count: c.inboxes.len(),
                    inbox_ids: c.inboxes.clone(),
                })
                .collect();
        }
        j
    }
}

impl From<&Message> for MessageJson {
    fn from(m: &Message) -> Self {
        use ferry_sdk::content::{Content, TextCodec};
        let ct = &m.content_type;
        let content = ferry_sdk::content::content_of(m);
        let (text, reply_to, attachment) = match &content {
            Content::Reply(r) => (
                Some(TextCodec::decode_text(&r.content)),
                Some(hex::encode(&r.reference)),
                None,
            ),
            Content::Attachment(a) => (
                m.text(),
                None,
                Some(AttachmentJson {
                    filename: a.filename.clone(),
                    mime_type: Some(a.mime_type.clone()),
                    size: Some(a.data.len() as u64),
                    stored: true,
                    url: None,
                }),
            ),
            Content::RemoteAttachment(r) => (
                m.text(),
                None,
                Some(AttachmentJson {
                    filename: r.filename.clone(),
                    mime_type: None,
                    size: r.content_length,
                    stored: false,
                    url: Some(r.url.clone()),
                }),
            ),
            _ => (m.text(), None, None),
        };
        MessageJson {
            content_kind: content.kind(),
            fallback: m.fallback.clone(),
            reply_to,
            reactions: Vec::new(),
            attachment,
            id: hex::encode(&m.id),
            conversation_id: hex::encode(&m.conversation_id),
            sender_inbox_id: m.sender_inbox_id.clone(),
            sender_installation_id: hex::encode(&m.sender_installation_id),
            sent_at_ns: m.sent_at_ns,
            kind: m.kind.as_str(),
            content_type: format!("{}/{}:{}.{}", ct.authority, ct.type_id, ct.major, ct.minor),
            text,
            reference_id: m.reference_id.as_ref().map(hex::encode),
            delivery_status: m.delivery_status.as_str(),
            expire_at_ns: m.expire_at_ns,
        }
    }
}

/// The messaging client of this folder, when it is a registered installation (opening it
/// touches no network).
pub fn registered_client(home: &Option<PathBuf>) -> Result<Option<ferry_sdk::blocking::Client>> {
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
    let fetch = |limit: Option<u64>| -> Result<Vec<Message>> {
        Ok(match (&client, &conversation_id) {
            // A DM shows the messages of all its stitched groups.
            (Some(client), Some(id)) => {
                client
                    .conversation(id)?
                    .messages(&ferry_sdk::MessageQuery {
                        limit,
                        ..Default::default()
                    })?
            }
            (_, conversation_id) => {
                let store = read_store(home.clone())?;
                if let Some(id) = conversation_id {
                    if store.conversation(id)?.is_none() {
                        return Err(format!("conversation {} not found", hex::encode(id)).into());
                    }
                }
                store.messages(&MessageFilter {
                    conversation_id: conversation_id.clone(),
                    limit,
                    ..Default::default()
                })?
            }
        })
    };
    let list = fetch(limit)?;
    let list_all = match (&conversation_id, limit) {
        (Some(_), Some(_)) if json => Some(fetch(None)?),
        _ => None,
    };
    if json {
        // Reactions count whatever the listing's limit: they are summed over the whole
        // conversation when the listing is of one.
        let reactions = match (&list_all, limit) {
            (Some(all), Some(_)) => ferry_sdk::content::reactions(all),
            _ => ferry_sdk::content::reactions(&list),
        };
        // Remote attachments: whether this installation holds the file.
        let held = read_store(home.clone())?;
        let out = list
            .iter()
            .map(|m| -> Result<MessageJson> {
                let mut j = MessageJson::with_reactions(m, &reactions);
                if let (Some(a), ferry_sdk::content::Content::RemoteAttachment(r)) =
                    (&mut j.attachment, ferry_sdk::content::content_of(m))
                {
                    a.stored = held.has_attachment_file(&r.content_digest.to_ascii_lowercase())?;
                }
                Ok(j)
            })
            .collect::<Result<Vec<_>>>()?;
        print_json(&out)?;
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
                    let stored = client.consent_record(entity_type, &entity)?;
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
        mixed,
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
            mixed_content: mixed,
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
