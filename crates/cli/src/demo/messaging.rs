//! The demo's first part: real clients talking over MLS through a delivery node on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::content::{self, Content};
use ferry_sdk::store::{ConsentEntity, ConsentState, ConversationFilter, MessageKind};
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};

use crate::output::anyhow_like::Result;

fn chapter(title: &str) {
    println!("\n== {title}");
}

fn say(line: impl AsRef<str>) {
    println!("   {}", line.as_ref());
}

fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

fn show(name: &str, who: &[(&str, &Client)], g: &Group) -> Result<()> {
    say(format!("{name}, as {} sees it:", who[0].0));
    let messages = g.messages(&MessageQuery::default())?;
    let reactions = content::reactions(&messages);
    let name_of = |inbox: &str| {
        who.iter()
            .find(|(_, c)| c.inbox_id() == inbox)
            .map(|(n, _)| *n)
            .unwrap_or("someone")
    };
    for m in &messages {
        if m.kind != MessageKind::Application {
            continue;
        }
        let line = match content::content_of(m) {
            // Shown on the message they are about.
            Content::Reaction(_) | Content::ReadReceipt => continue,
            Content::Attachment(a) => format!(
                "[photo {}, {} bytes, {}]",
                a.filename.as_deref().unwrap_or("?"),
                a.data.len(),
                a.mime_type
            ),
            Content::Reply(r) => {
                let to = messages
                    .iter()
                    .find(|x| x.id == r.reference)
                    .map(|x| match content::content_of(x) {
                        Content::Attachment(_) => "the photo".to_string(),
                        _ => format!("\"{}\"", x.text().unwrap_or_default()),
                    })
                    .unwrap_or_else(|| "an earlier message".into());
                format!(
                    "{} (a reply to {to})",
                    content::TextCodec::decode_text(&r.content)
                )
            }
            _ => m.text().unwrap_or_default(),
        };
        let on_it = reactions
            .get(&m.id)
            .map(|counts| {
                counts
                    .iter()
                    .map(|c| {
                        let names: Vec<&str> = c.inboxes.iter().map(|i| name_of(i)).collect();
                        format!(" ({} {})", c.content, names.join(", "))
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        say(format!(
            "  {:>6}: {line}{on_it}",
            name_of(&m.sender_inbox_id)
        ));
    }
    Ok(())
}

/// The photo alice sends (any bytes do; these start like a PNG and, like a real one, do not
/// compress).
fn photo() -> content::Attachment {
    let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    data.extend((0..40_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    content::Attachment {
        filename: Some("route-map.png".into()),
        mime_type: "image/png".into(),
        data,
    }
}

/// "the photo (N bytes) and bob's 👍" as `c` holds them in the group, or what is missing.
fn photo_and_reaction(c: &Client, group: &[u8]) -> Result<String> {
    let messages = c.conversation(group)?.messages(&MessageQuery::default())?;
    let reactions = content::reactions(&messages);
    let photo = messages.iter().find_map(|m| match content::content_of(m) {
        Content::Attachment(a) if a.data == photo().data => Some((m.id.clone(), a.data.len())),
        _ => None,
    });
    Ok(match photo {
        Some((id, len)) => {
            let thumbs = reactions
                .get(&id)
                .is_some_and(|r| r.iter().any(|c| c.content == "👍"));
            format!(
                "the photo ({len} bytes, byte for byte){}",
                if thumbs {
                    " with bob's 👍 on it"
                } else {
                    " but no 👍 (missing!)"
                }
            )
        }
        None => "no photo (missing!)".into(),
    })
}

pub fn run(root: &Path) -> Result<()> {
    chapter("A1. A delivery node and a history server on loopback");
    let node = ferry_node::RunningNode::start(ferry_node::NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: ferry_node::Database::Sqlite(root.join("node.db")),
        ..Default::default()
    })?;
    say(format!(
        "node listening on {} (it stores and orders ciphertext; it never sees a message)",
        node.addr()
    ));
    let history =
        ferry_history_server::RunningHistoryServer::start(ferry_history_server::HistoryConfig {
            dir: root.join("history-server"),
            ..Default::default()
        })?;
    say(format!(
        "history server listening on {} (it keeps encrypted archives for 24 h; it never sees a key)",
        history.addr()
    ));
    let opts = |name: &str, account: AccountKey| {
        let mut o = ClientOptions::new(root.join(name), node.url(), account);
        o.send_check_interval = Duration::from_millis(0);
        o
    };
    // Alice's phone and (in A7) her watch use history sync; her other installations here
    // leave it off, so chapters A5 and A6 show what happens without it.
    let with_history = |name: &str, account: AccountKey| {
        let mut o = opts(name, account);
        o.history_sync_url = history.url();
        o
    };

    chapter("A2. Alice (phone and laptop) and Bob register");
    let reg = Client::create(with_history("alice-phone", AccountKey::New))?;
    let alice_key = reg.account_key.expect("a new inbox has a key");
    let phone = reg.client;
    let laptop = Client::create(opts(
        "alice-laptop",
        AccountKey::Existing(alice_key.clone()),
    ))?
    .client;
    let bob = Client::create(opts("bob", AccountKey::New))?.client;
    say(format!("alice's inbox {}…", short(phone.inbox_id())));
    say(format!(
        "  phone installation {}…, laptop installation {}… (each with its own key, both signed into alice's identity log by her account key)",
        short(&hex::encode(phone.installation_id())),
        short(&hex::encode(laptop.installation_id()))
    ));
    say(format!("bob's inbox {}…", short(bob.inbox_id())));
    let everyone = [("alice", &phone), ("bob", &bob)];

    chapter("A3. A group and a DM, over MLS (openmls)");
    let t = Instant::now();
    let trip = phone.create_group(
        &[bob.inbox_id().to_string()],
        GroupOptions {
            message_disappearing_settings: None,
            name: "Road trip".into(),
            description: "August".into(),
        },
    )?;
    say(format!(
        "alice's phone made \"Road trip\" in {:.1} ms: {} installations are leaves of the group (alice's laptop too)",
        t.elapsed().as_secs_f64() * 1e3,
        trip.members()?.iter().map(|m| m.installation_ids.len()).sum::<usize>()
    ));
    bob.sync_all()?;
    laptop.sync_all()?;
    let trip_bob = bob.conversation(trip.id())?;
    let trip_laptop = laptop.conversation(trip.id())?;
    trip.send("Who's driving?")?;
    bob.sync_all()?;
    trip_bob.send("Me! I'll bring snacks.")?;
    laptop.sync_all()?;
    trip_laptop.send("(from my laptop) Great, I'll plan the route.")?;
    phone.sync_all()?;
    let map = trip.send_attachment(&photo())?;
    bob.sync_all()?;
    trip_bob.send_reaction(&map, "👍", false)?;
    trip_bob.send_reply(&map, "Looks long. Snacks x2.")?;
    bob.sync_all()?;
    phone.sync_all()?;
    show("Road trip", &everyone, &trip_bob)?;
    say("the photo went inside the message (XMTP's attachment type; a file over 1 MB would be encrypted and uploaded instead), bob's 👍 and reply point at it by id");
    say(format!(
        "every installation holds the same {} message ids (derived from what the node stores)",
        trip.messages(&MessageQuery::default())?.len()
    ));

    let dm = bob.find_or_create_dm(phone.inbox_id())?;
    dm.send("Psst, what should we get alice for her birthday?")?;
    phone.sync_all()?;
    let dm_alice = phone.find_or_create_dm(bob.inbox_id())?;
    say(format!(
        "bob's DM reached alice; her find_or_create_dm found it instead of making a second one: {}",
        dm_alice.id() == dm.id()
    ));

    chapter("A4. Consent");
    let hex_trip = hex::encode(trip.id());
    say(format!(
        "alice made the group, so it is {} for her; bob was invited, so it started {} for him and became {} when he wrote",
        phone.consent(ConsentEntity::Conversation, &hex_trip)?,
        "unknown",
        bob.consent(ConsentEntity::Conversation, &hex_trip)?,
    ));
    bob.set_consent(ConsentEntity::Conversation, &hex_trip, ConsentState::Denied)?;
    let allowed = bob.list_conversations(&ConversationFilter {
        consent: Some(ConsentState::Allowed),
        ..Default::default()
    })?;
    say(format!(
        "bob denies the group (too many notifications): his allowed list now holds {} conversation(s), the DM",
        allowed.len()
    ));

    chapter("A5. A new installation joins on the next send");
    let tablet = Client::create(opts(
        "alice-tablet",
        AccountKey::Existing(alice_key.clone()),
    ))?
    .client;
    trip_bob.send("Tickets are booked!")?;
    tablet.sync_all()?;
    let trip_tablet = tablet.conversation(trip.id())?;
    say(format!(
        "bob's next send added alice's tablet; the tablet sees {:?} and nothing from before it joined (that is what backups and history sync are for)",
        trip_tablet
            .messages(&MessageQuery::default())?
            .iter()
            .filter(|m| m.kind == MessageKind::Application)
            .filter_map(|m| m.text())
            .collect::<Vec<_>>()
    ));
    chapter("A6. A backup restored on a new phone: read-only until bob writes");
    let key = ferry_sdk::ArchiveKey::generate();
    let archive = root.join("alice-messaging.ferry");
    let meta = phone.create_archive(
        &archive,
        &key,
        &ferry_sdk::archive::ArchiveOptions {
            label: "Before the new phone".into(),
            ..Default::default()
        },
        &ferry_sdk::archive::Control::new(),
    )?;
    say(format!(
        "alice's phone wrote \"{}\": {} conversations, {} messages, {} bytes (no MLS or installation secrets inside)",
        meta.label,
        meta.conversation_count.unwrap_or(0),
        meta.message_count.unwrap_or(0),
        meta.file_bytes
    ));
    let newphone = Client::create(opts(
        "alice-newphone",
        AccountKey::Existing(alice_key.clone()),
    ))?
    .client;
    let report = newphone.import_archive(&archive, &key, &ferry_sdk::archive::Control::new())?;
    let trip_new = newphone.conversation(trip.id())?;
    say(format!(
        "the new phone (a new installation, keys of its own) imported {} conversations and {} messages; \"Road trip\" is active: {}",
        report.conversations_added,
        report.messages_imported,
        trip_new.is_active()?
    ));
    match trip_new.send("Am I back?") {
        Err(e) => say(format!(
            "sending there now fails: \"{e}\" (history visible, read-only)"
        )),
        Ok(_) => say("unexpected: a restored conversation accepted a message"),
    }
    trip_bob.send("Alice, are you there?")?;
    newphone.sync_all()?;
    say(format!(
        "bob wrote, his client added alice's new phone through MLS; \"Road trip\" is active: {}, same id, with {} messages in order",
        trip_new.is_active()?,
        trip_new
            .messages(&MessageQuery::default())?
            .iter()
            .filter(|m| m.kind == MessageKind::Application)
            .count()
    ));
    say(format!(
        "restored from the backup: {}",
        photo_and_reaction(&newphone, trip.id())?
    ));
    trip_new.send("Yes! New phone, same history.")?;
    bob.sync_all()?;
    show("Road trip", &everyone, &trip_bob)?;

    history_sync(&phone, &alice_key, &with_history, trip.id(), dm_alice.id())?;
    history.stop();
    node.stop();
    Ok(())
}

/// Chapter A7: a new installation with history sync gets its history from an online one by
/// itself, and preferences follow.
fn history_sync(
    phone: &Client,
    alice_key: &zeroize::Zeroizing<[u8; 32]>,
    with_history: &dyn Fn(&str, AccountKey) -> ClientOptions,
    trip: &[u8],
    dm: &[u8],
) -> Result<()> {
    chapter("A7. History sync: alice's new watch gets her history from her phone, by itself");
    let phone_worker = phone.start_worker();
    let phone_consent = phone.stream_consent();
    say("alice's phone is online (its sync worker follows the node)");
    let watch = Client::create(with_history(
        "alice-watch",
        AccountKey::Existing(alice_key.clone()),
    ))?
    .client;
    let pin = watch
        .pending_sync_requests()?
        .into_iter()
        .next()
        .ok_or("the watch sent no history request")?;
    say(format!(
        "the watch registered with the history server's URL and asked its inbox's other installations for history (request {}…) over the hidden sync group",
        short(&pin)
    ));
    let t = Instant::now();
    let watch_worker = watch.start_worker();
    let report = loop {
        if let Some(r) = watch.sync_import_report(&pin)? {
            break r;
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err("the history did not arrive within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let archive = watch
        .list_available_archives(1)?
        .into_iter()
        .find(|a| a.pin == pin)
        .ok_or("the answer is not listed")?;
    say(format!(
        "{:.2} s later: the phone had built an archive with a fresh key, uploaded {} bytes to the history server and sent its URL and key over the sync group; the watch downloaded, verified and imported {} messages in {} conversations",
        t.elapsed().as_secs_f64(),
        archive.size_bytes,
        report.messages_imported,
        report.conversations_added + report.conversations_merged
    ));
    let texts: Vec<String> = watch
        .conversation(trip)?
        .messages(&MessageQuery::default())?
        .iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect();
    say(format!(
        "\"Road trip\" on the watch starts with {:?} and holds all {} messages, {}",
        texts.first().map(String::as_str).unwrap_or(""),
        texts.len(),
        photo_and_reaction(&watch, trip)?
    ));

    watch.set_consent(
        ConsentEntity::Conversation,
        &hex::encode(dm),
        ConsentState::Denied,
    )?;
    say("on the watch, alice mutes her DM with bob (consent: denied)");
    let seen = phone_consent
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the consent change did not reach the phone")?;
    say(format!(
        "the phone's consent stream fired: {} {}… is now {} there too",
        seen.entity_type,
        short(&seen.entity),
        phone.consent(ConsentEntity::Conversation, &hex::encode(dm))?
    ));
    let t = Instant::now();
    while watch.hmac_keys()? != phone.hmac_keys()? {
        if t.elapsed() > Duration::from_secs(30) {
            return Err("the HMAC keys did not converge".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys = watch.hmac_keys()?;
    say(format!(
        "push HMAC keys agree on phone and watch: {} conversations × {} periods, from one inbox secret shared over the sync group",
        keys.len(),
        keys.values().next().map_or(0, Vec::len)
    ));
    watch_worker.stop();
    phone_worker.stop();
    Ok(())
}
