//! `ferry demo`: the story of a person's history moving to a new installation, told with the
//! real store and archive code on temporary storage.
//!
//! Part A (`demo_messaging`) has alice (several installations) and bob talk over MLS through a
//! delivery node on loopback: a group, a DM, consent, a backup restored onto a new phone, and
//! history sync through a history server onto a new watch. Part B shows local history at
//! scale, encrypted archives, restore onto a new installation, and what the format refuses.

mod messaging;

use std::path::Path;
use std::time::Instant;

use ferry_sdk::archive::{self, ArchiveElement, ArchiveOptions, Control, Origin};
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
};
use ferry_sdk::ArchiveKey;

use crate::output::anyhow_like::Result;

const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";

fn chapter(title: &str) {
    println!("\n== {title}");
}

fn say(line: impl AsRef<str>) {
    println!("   {}", line.as_ref());
}

fn id32(tag: &str) -> Vec<u8> {
    // Readable, stable ids for the demo's own conversations and messages.
    let mut v = tag.as_bytes().to_vec();
    v.resize(32, b'.');
    v
}

fn text(conv: &[u8], n: u32, from: &str, at: i64, body: &str) -> Message {
    Message {
        expire_at_ns: None,
        id: id32(&format!("{}#{n}", String::from_utf8_lossy(&conv[..6]))),
        conversation_id: conv.to_vec(),
        sender_inbox_id: from.into(),
        sender_installation_id: id32(&format!("{from}-phone")),
        sent_at_ns: at,
        kind: MessageKind::Application,
        content_type: ContentType::text(),
        content: body.as_bytes().to_vec(),
        fallback: None,
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
    }
}

fn alice_phone(store: &mut Store, now: i64) -> Result<()> {
    let day = 86_400_000_000_000i64;
    let hiking = id32("hiking");
    let dm = id32("dm-bob");
    store.insert_conversation(&Conversation {
        disappearing: None,
        id: hiking.clone(),
        kind: ConversationKind::Group,
        created_at_ns: now - 40 * day,
        name: "Hiking club".into(),
        description: "Saturday walks".into(),
        image_url: String::new(),
        creator_inbox_id: ALICE.into(),
        dm_peer_inbox_id: None,
        dm_id: None,
        membership: Membership::Active,
        last_message_ns: None,
    })?;
    store.insert_conversation(&Conversation {
        disappearing: None,
        id: dm.clone(),
        kind: ConversationKind::Dm,
        created_at_ns: now - 30 * day,
        name: String::new(),
        description: String::new(),
        image_url: String::new(),
        creator_inbox_id: BOB.into(),
        dm_peer_inbox_id: Some(BOB.into()),
        dm_id: Some("dm:alice:bob".into()),
        membership: Membership::Active,
        last_message_ns: None,
    })?;
    let lines = [
        (
            &hiking,
            ALICE,
            35,
            "Who is up for the ridge trail on Saturday?",
        ),
        (&hiking, BOB, 35, "Me! Leaving at 8?"),
        (&hiking, CAROL, 34, "Count me in, I'll bring coffee."),
        (&dm, BOB, 20, "Did you get the photos from the ridge?"),
        (
            &dm,
            ALICE,
            20,
            "Yes, they are great. The one at the top is my new wallpaper.",
        ),
        (&hiking, ALICE, 3, "Next walk: the lake loop, same time."),
        (&dm, BOB, 1, "Call me when you have your new phone."),
    ];
    for (i, (conv, from, days_ago, body)) in lines.iter().enumerate() {
        store.insert_message(&text(conv, i as u32, from, now - days_ago * day, body))?;
    }
    store.set_consent(&ConsentRecord {
        entity_type: ConsentEntity::Inbox,
        entity: "spam-bot".into(),
        state: ConsentState::Denied,
        updated_at_ns: now - 10 * day,
    })?;
    // A year of ordinary life around those conversations.
    ferry_sdk::dev::seed(
        store,
        &ferry_sdk::dev::SeedOptions {
            conversations: 40,
            messages: 50_000,
            consent: 20,
            seed: 2026,
            now_ns: now - day,
            self_inbox_id: ALICE.into(),
            ..Default::default()
        },
    )?;
    Ok(())
}

fn show_conversation(store: &Store, id: &[u8], last: usize) -> Result<()> {
    let msgs = store.messages(&MessageFilter {
        conversation_id: Some(id.to_vec()),
        ..Default::default()
    })?;
    for m in msgs.iter().skip(msgs.len().saturating_sub(last)) {
        say(format!(
            "  {:>6}: {}",
            m.sender_inbox_id,
            m.text().unwrap_or_default()
        ));
    }
    Ok(())
}

pub fn run(keep: bool) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("ferry-demo-").tempdir()?;
    let root = dir.path();
    let now = ferry_sdk::now_ns();
    println!("Ferry demo: moving a person's whole history to a new installation.");
    println!("(working in {})", root.display());

    println!("\nPart A: talking, with real clients, MLS and a delivery node.");
    messaging::run(root)?;

    println!("\nPart B: a whole history in one encrypted archive.");

    chapter("1. Alice's phone");
    let mut phone = Store::open(root.join("alice-phone.db"))?;
    alice_phone(&mut phone, now)?;
    let convs = phone.conversations(&ConversationFilter::default())?;
    say(format!(
        "{} conversations, {} messages, {} consent records in one SQLite file",
        convs.len(),
        phone.count(ferry_sdk::store::Table::Messages)?,
        phone.consent_list()?.len()
    ));
    say("The hiking club, as Alice sees it:");
    show_conversation(&phone, &id32("hiking"), 3)?;

    chapter("2. A backup, sealed with a 32-byte key kept in Alice's keychain");
    let key = ArchiveKey::generate();
    let archive = root.join("alice.ferry");
    let origin = Origin {
        inbox_id: ALICE.into(),
        installation_id: id32("alice-phone"),
        ..Default::default()
    };
    let t = Instant::now();
    let meta = archive::create_archive(
        &phone,
        &archive,
        &key,
        &ArchiveOptions {
            label: "Before the phone swap".into(),
            ..Default::default()
        },
        &origin,
        &Control::new(),
    )?;
    say(format!(
        "wrote {} in {:.0} ms: {} bytes for {} bytes of history ({:.0} %)",
        archive.file_name().unwrap().to_string_lossy(),
        t.elapsed().as_secs_f64() * 1e3,
        meta.file_bytes,
        meta.plaintext_bytes.unwrap_or(0),
        100.0 * meta.file_bytes as f64 / meta.plaintext_bytes.unwrap_or(1) as f64
    ));
    let t = Instant::now();
    let read = archive::archive_metadata(&archive, &key)?;
    say(format!(
        "its metadata, read in {:.2} ms without reading the rest: \"{}\", by {}, {} conversations, {} messages, {} consent records",
        t.elapsed().as_secs_f64() * 1e3,
        read.label,
        read.inbox_id,
        read.conversation_count.unwrap_or(0),
        read.message_count.unwrap_or(0),
        read.consent_count.unwrap_or(0)
    ));

    chapter("3. The archive refuses what it should");
    let mut new_phone = Store::open(root.join("alice-new-phone.db"))?;
    let before = new_phone.dump()?;
    let wrong = ArchiveKey::generate();
    report_refusal(&mut new_phone, &archive, &wrong, "with the wrong key")?;
    let bytes = std::fs::read(&archive)?;
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    let tampered = root.join("tampered.ferry");
    std::fs::write(&tampered, &flipped)?;
    report_refusal(
        &mut new_phone,
        &tampered,
        &key,
        "with one bit flipped in the middle",
    )?;
    let cut = root.join("cut.ferry");
    std::fs::write(&cut, &bytes[..bytes.len() - 100])?;
    report_refusal(&mut new_phone, &cut, &key, "cut short by 100 bytes")?;
    say(format!(
        "the new phone's store is unchanged after all three: {}",
        if new_phone.dump()? == before {
            "yes"
        } else {
            "NO"
        }
    ));

    chapter("4. Alice's new phone imports the backup");
    let t = Instant::now();
    let report = archive::import_archive(&mut new_phone, &archive, &key, &Control::new())?;
    say(format!(
        "imported {} messages and {} conversations, applied {} consent records in {:.0} ms (one transaction)",
        report.messages_imported,
        report.conversations_added,
        report.consent_applied,
        t.elapsed().as_secs_f64() * 1e3
    ));
    let hiking = new_phone
        .conversation(&id32("hiking"))?
        .ok_or("hiking club missing")?;
    say(format!(
        "\"{}\" is {}: history visible, read-only until a member's installation adds this one through MLS",
        hiking.name,
        if hiking.is_active() { "active" } else { "inactive (restored)" }
    ));
    show_conversation(&new_phone, &hiking.id, 3)?;
    let denied = new_phone.consent(ConsentEntity::Inbox, "spam-bot")?;
    say(format!(
        "consent came along: spam-bot is {}",
        denied.map_or("unknown".into(), |c| c.state.to_string())
    ));

    chapter("5. Importing again changes nothing");
    let dump = new_phone.dump()?;
    let again = archive::import_archive(&mut new_phone, &archive, &key, &Control::new())?;
    say(format!(
        "{} messages skipped as duplicates, {} imported; store identical: {}",
        again.messages_skipped,
        again.messages_imported,
        if new_phone.dump()? == dump {
            "yes"
        } else {
            "NO"
        }
    ));

    chapter("6. Smaller archives: the last week, or consent only");
    let week = root.join("last-week.ferry");
    let m = archive::create_archive(
        &phone,
        &week,
        &key,
        &ArchiveOptions {
            start_ns: Some(now - 7 * 86_400_000_000_000),
            ..Default::default()
        },
        &origin,
        &Control::new(),
    )?;
    say(format!(
        "last 7 days: {} messages in {} conversations, {} bytes",
        m.message_count.unwrap_or(0),
        m.conversation_count.unwrap_or(0),
        m.file_bytes
    ));
    let consent_only = root.join("consent.ferry");
    let m = archive::create_archive(
        &phone,
        &consent_only,
        &key,
        &ArchiveOptions {
            elements: vec![ArchiveElement::Consent],
            ..Default::default()
        },
        &origin,
        &Control::new(),
    )?;
    say(format!(
        "consent only: {} records, {} bytes",
        m.consent_count.unwrap_or(0),
        m.file_bytes
    ));

    if keep {
        let kept = dir.keep();
        println!("\nkept {}", kept.display());
    }
    Ok(())
}

fn report_refusal(store: &mut Store, path: &Path, key: &ArchiveKey, how: &str) -> Result<()> {
    match archive::import_archive(store, path, key, &Control::new()) {
        Ok(_) => Err(format!("an archive {how} was accepted").into()),
        Err(e) => {
            say(format!("{how}: refused ({e})"));
            Ok(())
        }
    }
}
