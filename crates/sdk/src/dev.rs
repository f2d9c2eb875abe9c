//! Synthetic but realistic data, without a network: for benchmarks, tests and demos.
//!
//! Conversations are groups and DMs among a pool of inboxes; messages are text of varying
//! length (most short, some long), from several senders, arriving evenly over the year before
//! `now_ns` across conversations of very different activity; a few are replies. Everything derives from `seed`, so the
//! same options give the same store.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationKind,
    DeliveryStatus, Membership, Message, MessageKind, Store,
};

use crate::Result;

/// What [`seed`] makes.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Conversations to make (groups and DMs).
    pub conversations: u64,
    /// Messages to spread over them.
    pub messages: u64,
    /// Consent records to make.
    pub consent: u64,
    /// The random seed: the same options give the same store.
    pub seed: u64,
    /// The newest message time; messages spread over the year before it.
    pub now_ns: i64,
    /// The inbox that owns the store (a member of every conversation).
    pub self_inbox_id: String,
    /// Mixed content as people send it: 10 % reactions and 5 % replies to recent messages,
    /// 1 % remote attachments, the rest text (otherwise all text).
    pub mixed_content: bool,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            conversations: 10,
            messages: 1000,
            consent: 10,
            seed: 1,
            now_ns: crate::now_ns(),
            self_inbox_id: String::new(),
            mixed_content: false,
        }
    }
}

/// What [`seed`] made.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeedReport {
    /// Conversations made.
    pub conversations: u64,
    /// Messages made.
    pub messages: u64,
    /// Consent records made.
    pub consent: u64,
    /// Bytes of message content made (encoded, before compression or encryption).
    pub plaintext_bytes: u64,
}

const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "and",
    "of",
    "you",
    "I",
    "it",
    "is",
    "that",
    "in",
    "we",
    "for",
    "on",
    "this",
    "are",
    "with",
    "be",
    "have",
    "not",
    "just",
    "so",
    "but",
    "what",
    "can",
    "do",
    "will",
    "at",
    "my",
    "me",
    "was",
    "your",
    "all",
    "there",
    "if",
    "about",
    "out",
    "up",
    "they",
    "get",
    "like",
    "one",
    "time",
    "now",
    "know",
    "see",
    "think",
    "going",
    "good",
    "yes",
    "no",
    "okay",
    "thanks",
    "tomorrow",
    "today",
    "tonight",
    "meeting",
    "coffee",
    "lunch",
    "dinner",
    "train",
    "late",
    "early",
    "sorry",
    "great",
    "love",
    "call",
    "later",
    "weekend",
    "plan",
    "project",
    "review",
    "draft",
    "send",
    "photo",
    "link",
    "address",
    "ticket",
    "flight",
    "hotel",
    "room",
    "kids",
    "school",
    "game",
    "match",
    "score",
    "birthday",
    "party",
    "gift",
    "cake",
    "music",
    "concert",
    "movie",
    "book",
    "chapter",
    "deadline",
    "budget",
    "invoice",
    "client",
    "server",
    "deploy",
    "release",
    "bug",
    "fix",
    "test",
    "merge",
    "branch",
    "backup",
    "phone",
    "laptop",
    "battery",
    "charger",
    "weather",
    "rain",
    "sunny",
    "cold",
    "walk",
    "run",
    "gym",
    "bike",
    "shop",
    "milk",
    "bread",
    "pasta",
    "wine",
    "beer",
    "tea",
    "doctor",
    "appointment",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "morning",
    "evening",
    "maybe",
    "definitely",
    "probably",
    "awesome",
    "haha",
    "lol",
    "wow",
    "really",
    "sure",
    "where",
    "when",
    "how",
    "why",
    "who",
    "which",
    "here",
    "home",
    "work",
    "office",
    "car",
];

fn sentence(rng: &mut StdRng, out: &mut String) {
    // Mostly short chat lines, sometimes a paragraph.
    let n = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(1..8),
        60..=89 => rng.gen_range(8..24),
        _ => rng.gen_range(24..90),
    };
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    out.push(match rng.gen_range(0..10) {
        0..=5 => '.',
        6..=8 => '?',
        _ => '!',
    });
}

fn random_id(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// One message of mixed content (see [`SeedOptions::mixed_content`]): a reaction or a reply
/// to `target`, or a remote attachment; `None` for text (84 %).
fn mixed_content(
    rng: &mut StdRng,
    target: &[u8],
    text: &str,
) -> Option<crate::content::EncodedContent> {
    use crate::content::*;
    const EMOJI: [&str; 6] = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
    let roll = rng.gen_range(0..100);
    let encoded = match roll {
        0..=9 => {
            let mut r = Reaction::emoji(target, EMOJI[rng.gen_range(0..EMOJI.len())]);
            if rng.gen_range(0..10) == 0 {
                r.action = ReactionAction::Removed;
            }
            ReactionCodec::encode(&r)
        }
        10..=14 => ReplyCodec::encode(&Reply::text(target, text)),
        15 => {
            let key = |rng: &mut StdRng, n| random_id(rng, n);
            let r = RemoteAttachment {
                url: format!("https://files.example/{}", hex::encode(key(rng, 16))),
                content_digest: hex::encode(key(rng, 32)),
                secret: zeroize::Zeroizing::new(key(rng, 32)),
                salt: key(rng, 32),
                nonce: key(rng, 12),
                scheme: "https".into(),
                content_length: Some(rng.gen_range(100_000..5_000_000)),
                filename: Some(format!("IMG_{:04}.jpg", rng.gen_range(0..10_000))),
            };
            RemoteAttachmentCodec::encode(&r)
        }
        _ => return None,
    };
    encoded.ok()
}

/// Fills `store` with synthetic conversations, messages and consent in one transaction.
pub fn seed(store: &mut Store, opts: &SeedOptions) -> Result<SeedReport> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let year_ns: i64 = 365 * 24 * 3600 * 1_000_000_000;
    let start_ns = opts.now_ns - year_ns;
    // A pool of inboxes, each with one or two installations.
    let me = if opts.self_inbox_id.is_empty() {
        hex::encode(random_id(&mut rng, 32))
    } else {
        opts.self_inbox_id.clone()
    };
    let pool: Vec<(String, Vec<Vec<u8>>)> = (0..64)
        .map(|i| {
            let inbox = if i == 0 {
                me.clone()
            } else {
                hex::encode(random_id(&mut rng, 32))
            };
            let installs = (0..rng.gen_range(1..=2))
                .map(|_| random_id(&mut rng, 32))
                .collect();
            (inbox, installs)
        })
        .collect();

    struct Conv {
        id: Vec<u8>,
        members: Vec<usize>,
    }
    let mut convs = Vec::new();
    let mut report = SeedReport::default();
    let mut merge = store.merge()?;
    for _ in 0..opts.conversations {
        let is_dm = rng.gen_range(0..10) < 3;
        let mut members = vec![0usize];
        let others = if is_dm { 1 } else { rng.gen_range(2..8) };
        while members.len() < others + 1 {
            let m = rng.gen_range(1..pool.len());
            if !members.contains(&m) {
                members.push(m);
            }
        }
        let id = random_id(&mut rng, 32);
        let created = start_ns - rng.gen_range(0..year_ns / 12);
        let c = Conversation {
            id: id.clone(),
            kind: if is_dm {
                ConversationKind::Dm
            } else {
                ConversationKind::Group
            },
            created_at_ns: created,
            name: if is_dm {
                String::new()
            } else {
                format!(
                    "{} {}",
                    WORDS[rng.gen_range(0..WORDS.len())],
                    WORDS[rng.gen_range(0..WORDS.len())]
                )
            },
            description: String::new(),
            image_url: String::new(),
            creator_inbox_id: pool[members[rng.gen_range(0..members.len())]].0.clone(),
            dm_peer_inbox_id: is_dm.then(|| pool[members[1]].0.clone()),
            dm_id: is_dm.then(|| {
                let mut pair = [pool[0].0.clone(), pool[members[1]].0.clone()];
                pair.sort();
                format!("dm:{}:{}", pair[0], pair[1])
            }),
            membership: Membership::Active,
            last_message_ns: None,
            disappearing: None,
        };
        merge.conversation(&c)?;
        report.conversations += 1;
        convs.push(Conv { id, members });
    }
    if !convs.is_empty() {
        let mut text = String::new();
        let mut recent: Vec<Vec<u8>> = Vec::new();
        // Messages arrive evenly over the year, each in some conversation.
        let step = (year_ns / opts.messages.max(1) as i64).max(1);
        for i in 0..opts.messages {
            // Some conversations are much busier than others.
            let ci = {
                let a = rng.gen_range(0..convs.len());
                let b = rng.gen_range(0..convs.len());
                a.min(b)
            };
            let conv = &convs[ci];
            let sent_at_ns = start_ns + i as i64 * step + rng.gen_range(0..step);
            let sender = conv.members[rng.gen_range(0..conv.members.len())];
            let (inbox, installs) = &pool[sender];
            text.clear();
            sentence(&mut rng, &mut text);
            let reply = rng.gen_range(0..20) == 0 && !recent.is_empty();
            let mut m = Message {
                id: random_id(&mut rng, 32),
                conversation_id: conv.id.clone(),
                sender_inbox_id: inbox.clone(),
                sender_installation_id: installs[rng.gen_range(0..installs.len())].clone(),
                sent_at_ns,
                kind: MessageKind::Application,
                content_type: ContentType::text(),
                content: text.as_bytes().to_vec(),
                fallback: None,
                parameters: None,
                reference_id: if reply && !opts.mixed_content {
                    Some(recent[rng.gen_range(0..recent.len())].clone())
                } else {
                    None
                },
                delivery_status: DeliveryStatus::Published,
                expire_at_ns: None,
            };
            if opts.mixed_content && !recent.is_empty() {
                let target = recent[rng.gen_range(0..recent.len())].clone();
                if let Some(encoded) = mixed_content(&mut rng, &target, &text) {
                    let ct = &encoded.content_type;
                    m.content_type = ContentType {
                        authority: ct.authority.clone(),
                        type_id: ct.type_id.clone(),
                        major: ct.major,
                        minor: ct.minor,
                    };
                    m.reference_id = crate::content::Content::decode(&encoded)
                        .reference()
                        .map(<[u8]>::to_vec);
                    m.parameters = encoded.parameters_bytes();
                    m.fallback = encoded.fallback;
                    m.content = encoded.content;
                }
            }
            report.plaintext_bytes += m.content.len() as u64;
            if recent.len() < 64 {
                recent.push(m.id.clone());
            } else {
                let k = rng.gen_range(0..recent.len());
                recent[k] = m.id.clone();
            }
            if merge.message(&m)? {
                report.messages += 1;
            }
        }
    }
    for i in 0..opts.consent {
        let (entity_type, entity) = if i % 2 == 0 && !convs.is_empty() {
            (
                ConsentEntity::Conversation,
                hex::encode(&convs[(i / 2) as usize % convs.len()].id),
            )
        } else {
            (
                ConsentEntity::Inbox,
                pool[1 + (i as usize % (pool.len() - 1))].0.clone(),
            )
        };
        let r = ConsentRecord {
            entity_type,
            entity,
            state: match rng.gen_range(0..10) {
                0..=6 => ConsentState::Allowed,
                7..=8 => ConsentState::Denied,
                _ => ConsentState::Unknown,
            },
            updated_at_ns: start_ns + rng.gen_range(0..year_ns),
        };
        if merge.consent(&r)? {
            report.consent += 1;
        }
    }
    merge.commit()?;
    Ok(report)
}

/// Seeds a registered installation's store (see [`seed`]) with history only: the
/// conversations are marked restored (no MLS group stands behind them), as if an archive had
/// brought them. For benchmarks of history transfer.
pub fn seed_history(client: &crate::Client, opts: &SeedOptions) -> crate::Result<SeedReport> {
    let mut store = client.store();
    let report = seed(&mut store, opts)?;
    for c in store.conversations(&ferry_store::ConversationFilter::default())? {
        store.set_membership(&c.id, ferry_store::Membership::Restored)?;
    }
    Ok(report)
}
