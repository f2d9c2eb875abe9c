//! History sync's request / reply core against a real node and a real history server on
//! loopback: a new installation asks, an online one answers through the history server, the
//! history arrives once.

mod net_common;

use std::time::Duration;

use ferry_history_server::{HistoryConfig, RunningHistoryServer};
use ferry_proto::message::{sync_payload, SyncPayload, SyncReply};
use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, ConversationFilter, ConversationKind,
    MessageFilter, MessageKind, SyncMessageRecord,
};
use ferry_sdk::{AccountKey, Error, GroupOptions, SyncOptions};
use net_common::{count_files, sync_envelope, texts, Net};
use prost::Message as _;
use zeroize::Zeroizing;

#[test]
fn a_new_installation_gets_its_history_from_an_online_one_once() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    g.send("before the new phone").unwrap();
    bob.sync_all().unwrap();
    bob.conversation(g.id()).unwrap().send("hi").unwrap();
    a1.sync_all().unwrap();

    // The new installation asks on start.
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), true);
    assert_eq!(net.payloads(), 0);
    // The old one, online, answers: an archive uploaded, a reply over the sync group.
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 1, "one archive uploaded");
    let r = a2.sync_all().unwrap();
    assert_eq!(r.history_imported, 1);
    let g2 = a2.conversation(g.id()).unwrap();
    assert_eq!(texts(&g2), ["before the new phone", "hi"]);
    assert!(
        g2.is_active().unwrap(),
        "and the old installation added the new one"
    );
    // Once: later syncs import nothing more, and nothing is uploaded again.
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 1);

    // History sync off: no request, no reply, no upload.
    let (a3, _) = net.create("a3", AccountKey::Existing(key), false);
    assert!(matches!(
        a3.send_sync_request(&ferry_sdk::SyncOptions::default()),
        Err(Error::HistorySyncOff)
    ));
    a1.sync_all().unwrap();
    a3.sync_all().unwrap();
    assert_eq!(net.payloads(), 1);
    assert!(texts(&a3.conversation(g.id()).unwrap()).is_empty());
}

#[test]
fn a_payload_tampered_on_the_server_is_refused_and_nothing_is_imported() {
    let net = Net::new();
    let (a1, key, _bob, g) = net.alice_in_a_group(true, "secret history");
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    a1.sync_all().unwrap();
    // The history server (or someone on it) flips a byte of the stored archive.
    let dir = net.dir.path().join("history");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    for _ in 0..3 {
        assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    }
    let g2 = a2.conversation(g.id()).unwrap();
    assert!(texts(&g2).is_empty(), "nothing from the tampered archive");
    // It was tried once and given up on (damage does not heal), with the reason.
    let listed = a2.list_available_archives(1).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "failed");
    assert_eq!(listed[0].attempts, 1);
    assert!(
        listed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("failed authentication"),
        "{:?}",
        listed[0].last_error
    );
    let imported = a2
        .with_store(|store| store.messages(&ferry_sdk::store::MessageFilter::default()))
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application && m.content_type.type_id != "sync")
        .count();
    assert_eq!(imported, 0, "only sync-group and membership rows");
}

/// The replies stored in `c`'s sync groups.
fn replies(c: &Client) -> Vec<SyncReply> {
    let syncs = c
        .with_store(|s| {
            s.conversations(&ConversationFilter {
                kind: Some(ConversationKind::Sync),
                ..Default::default()
            })
        })
        .unwrap();
    let mut out = Vec::new();
    for g in syncs {
        let ms = c
            .with_store(|s| {
                s.messages(&MessageFilter {
                    conversation_id: Some(g.id),
                    include_sync: true,
                    ..Default::default()
                })
            })
            .unwrap();
        for m in ms {
            if let Ok(SyncPayload {
                kind: Some(sync_payload::Kind::Reply(r)),
            }) = SyncPayload::decode(m.content.as_slice())
            {
                out.push(r);
            }
        }
    }
    out
}

/// The handling records of every message in `c`'s sync groups.
fn sync_records(c: &Client) -> Vec<SyncMessageRecord> {
    c.with_store(|store| sync_records_in(store))
}

fn sync_records_in(store: &ferry_sdk::store::Store) -> Vec<SyncMessageRecord> {
    store
        .conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .flat_map(|c| {
            store
                .messages(&MessageFilter {
                    conversation_id: Some(c.id),
                    include_sync: true,
                    ..Default::default()
                })
                .unwrap()
        })
        .filter_map(|m| store.sync_message_record(&m.id).unwrap())
        .collect()
}

/// Alice (one installation) in a group with bob, three messages.
fn alice_with_history(net: &Net) -> (Client, Zeroizing<[u8; 32]>, Client, Group) {
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    g.send("one").unwrap();
    bob.conversation(g.id()).unwrap().send("two").unwrap();
    a1.sync_all().unwrap();
    g.send("three").unwrap();
    (a1, key.unwrap(), bob, g)
}

#[test]
fn two_online_installations_answer_and_each_message_arrives_once() {
    let net = Net::new();
    let (a1, key, _bob, g) = alice_with_history(&net);
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), true);
    a1.sync_all().unwrap();
    assert_eq!(a2.sync_all().unwrap().history_imported, 1);
    // A third installation; both others are online and both answer its request.
    let (a3, _) = net.create("a3", AccountKey::Existing(key), true);
    let before = net.payloads();
    a1.sync_all().unwrap();
    a2.sync_all().unwrap();
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), before + 2, "two answers uploaded");
    assert_eq!(
        a3.sync_all().unwrap().history_imported,
        2,
        "both replies (imports are additive: the union of what each holds)"
    );
    assert_eq!(a3.sync_all().unwrap().history_imported, 0, "once each");
    assert_eq!(
        texts(&a3.conversation(g.id()).unwrap()),
        ["one", "two", "three"],
        "every message exactly once, in order"
    );
    let listed = a3.list_available_archives(1).unwrap();
    let mine: Vec<_> = listed
        .iter()
        .filter(|a| a3.sync_import_report(&a.pin).unwrap().is_some())
        .collect();
    assert_eq!(mine.len(), 2, "both replies answer a3's request");
    assert_eq!(mine.iter().filter(|a| a.imported).count(), 2);
    let reports = a3.sync_import_reports(&mine[0].pin).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports[0].1.messages_imported >= 3, "{reports:?}");
    assert_eq!(
        (
            reports[1].1.messages_imported,
            reports[1].1.messages_skipped
        ),
        (0, reports[0].1.messages_imported),
        "the second added nothing the first had brought: {reports:?}"
    );
    assert!(mine.iter().all(|a| a.state == "processed"));
    assert!(a3.pending_sync_requests().unwrap().is_empty());
}

#[test]
fn manual_request_list_and_process_by_pin_with_consent_only_and_messages_only() {
    let net = Net::new();
    let (a1, key, bob, g) = alice_with_history(&net);
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    // Besides the request made on start, two manual ones.
    let consent_pin = a2.sync_consent().unwrap();
    let messages_pin = a2.sync_messages().unwrap();
    assert_eq!(a2.pending_sync_requests().unwrap().len(), 3);
    a1.sync_all().unwrap();
    assert_eq!(a2.sync_all().unwrap().history_imported, 3);
    assert!(a2.pending_sync_requests().unwrap().is_empty());

    let listed = a2.list_available_archives(7).unwrap();
    let consent = listed.iter().find(|a| a.pin == consent_pin).unwrap();
    assert!(consent.consent && !consent.messages);
    assert_eq!(consent.message_count, 0);
    let messages = listed.iter().find(|a| a.pin == messages_pin).unwrap();
    assert!(messages.messages && !messages.consent);
    assert!(
        messages.message_count >= 3,
        "three texts (and membership rows)"
    );
    let in_archive = messages.message_count;
    assert!(messages.size_bytes > 0);
    // What each import brought: no messages from the consent-only archive, no consent from
    // the messages-only one.
    let r = a2.sync_import_report(&consent_pin).unwrap().unwrap();
    assert_eq!(r.messages_imported + r.messages_skipped, 0);
    let r = a2.sync_import_report(&messages_pin).unwrap().unwrap();
    assert_eq!(r.consent_applied + r.consent_skipped, 0);
    assert!(r.messages_imported + r.messages_skipped >= 3);

    // An archive sent without a request (the seed's send_sync_archive): listed, not imported
    // by itself, imported by pin on demand.
    let when = 1_000;
    a1.with_store(|s| {
        s.set_consent(&ConsentRecord {
            entity_type: ConsentEntity::Inbox,
            entity: bob.inbox_id().into(),
            state: ConsentState::Denied,
            updated_at_ns: when,
        })
    })
    .unwrap();
    let pin = a1
        .send_sync_archive(&SyncOptions::consent_only(), Some("hand-made"))
        .unwrap();
    assert_eq!(pin, "hand-made");
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    let listed = a2.list_available_archives(7).unwrap();
    let hand = listed.iter().find(|a| a.pin == "hand-made").unwrap();
    assert!(!hand.imported && hand.state == "processed");
    assert_eq!(
        a2.consent(ConsentEntity::Inbox, bob.inbox_id()).unwrap(),
        ConsentState::Unknown
    );
    // The newest announced archive is this one.
    let report = a2.process_sync_archive(None).unwrap();
    assert_eq!(report.consent_applied, 1);
    assert_eq!(
        a2.consent(ConsentEntity::Inbox, bob.inbox_id()).unwrap(),
        ConsentState::Denied
    );
    assert!(a2
        .list_available_archives(7)
        .unwrap()
        .iter()
        .any(|a| a.pin == "hand-made" && a.imported));
    // Again by pin: additive, nothing new.
    let again = a2.process_sync_archive(Some(&messages_pin)).unwrap();
    assert_eq!(again.messages_imported, 0);
    assert_eq!(again.messages_skipped, in_archive);
    assert!(matches!(
        a2.process_sync_archive(Some("no-such-pin")),
        Err(Error::NoSuchArchive(_))
    ));
    assert_eq!(texts(&a2.conversation(g.id()).unwrap()).len(), 3);
}

#[test]
fn consent_and_hmac_keys_converge_across_three_installations_and_a_revocation_rotates_the_secret() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let dm = a1.find_or_create_dm(bob.inbox_id()).unwrap();
    // Preferences sync without a history server.
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), false);
    let (a3, _) = net.create("a3", AccountKey::Existing(key.clone()), false);
    a1.sync_all().unwrap();
    a2.sync_all().unwrap();
    a3.sync_all().unwrap();
    let keys1 = a1.hmac_keys().unwrap();
    assert!(keys1.contains_key(&hex::encode(g.id())));
    assert!(keys1.contains_key(&hex::encode(dm.id())));
    assert_eq!(
        keys1[&hex::encode(g.id())].len(),
        3,
        "previous, current, next"
    );
    assert_eq!(a2.hmac_keys().unwrap(), keys1);
    assert_eq!(a3.hmac_keys().unwrap(), keys1);

    let s1 = a1.stream_consent();
    let s3 = a3.stream_consent();
    a2.set_consent(
        ConsentEntity::Conversation,
        &hex::encode(g.id()),
        ConsentState::Denied,
    )
    .unwrap();
    a3.set_consent(ConsentEntity::Inbox, bob.inbox_id(), ConsentState::Allowed)
        .unwrap();
    for c in [&a1, &a2, &a3] {
        c.sync_all().unwrap();
    }
    for c in [&a1, &a2, &a3] {
        assert_eq!(
            c.consent(ConsentEntity::Conversation, &hex::encode(g.id()))
                .unwrap(),
            ConsentState::Denied
        );
        assert_eq!(
            c.consent(ConsentEntity::Inbox, bob.inbox_id()).unwrap(),
            ConsentState::Allowed
        );
    }
    // The two changes each stream saw (a stream's forwarding thread may still be on its way).
    let got = |s: &crossbeam_channel::Receiver<ConsentRecord>| -> Vec<ConsentState> {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match s.recv_timeout(Duration::from_secs(5)) {
                Ok(r) => seen.push(r.state),
                Err(_) => break,
            }
        }
        seen
    };
    let mut on1 = got(&s1);
    on1.sort_by_key(|s| s.as_i64());
    assert_eq!(on1, [ConsentState::Allowed, ConsentState::Denied]);
    let on3 = got(&s3);
    assert!(on3.contains(&ConsentState::Denied) && on3.contains(&ConsentState::Allowed));

    // Revoking a3 rotates the secret; a3 never sees the new one.
    a1.revoke_installation(
        std::sync::Arc::new(ferry_sdk::KeyPair::from_seed(&key)),
        a3.installation_id(),
    )
    .unwrap();
    // a2 rotates too when it sees the revocation (it cannot know a1 already did); the two
    // settle on the higher revision.
    for _ in 0..2 {
        a2.sync_all().unwrap();
        a1.sync_all().unwrap();
    }
    let _ = a3.sync_all();
    let rotated = a1.hmac_keys().unwrap();
    assert_ne!(rotated, keys1);
    assert!(a1.hmac_key_revision().unwrap() >= Some(1));
    assert_eq!(a2.hmac_keys().unwrap(), rotated);
    assert_eq!(a3.hmac_key_revision().unwrap(), Some(0));
    assert_eq!(a3.hmac_keys().unwrap(), keys1);
}

#[test]
fn a_dead_history_server_is_retried_with_backoff_until_it_is_back() {
    let mut net = Net::new();
    let (a1, key, _bob, g) = alice_with_history(&net);
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    let addr = net.stop_history();
    // The answer cannot be uploaded: the message stays pending, nothing arrives.
    a1.sync_all().unwrap();
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    let waiting: Vec<_> = sync_records(&a1)
        .into_iter()
        .filter(|r| r.state == 1)
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].attempts, 1, "pending, tried once");
    assert!(waiting[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("unavailable"));
    net.start_history(addr);
    // The retry waits out its backoff (one second for the first), then succeeds.
    let mut imported = 0;
    for _ in 0..40 {
        a1.sync_all().unwrap();
        imported += a2.sync_all().unwrap().history_imported;
        if imported > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(imported, 1);
    assert_eq!(texts(&a2.conversation(g.id()).unwrap()).len(), 3);
}

#[test]
fn hostile_and_stale_replies_import_nothing() {
    let net = Net::new();
    let (a1, key, _bob, g) = alice_with_history(&net);
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    let pending = a2.pending_sync_requests().unwrap();
    assert_eq!(pending.len(), 1);
    let pin = pending[0].clone();
    a1.sync_all().unwrap(); // adds a2 everywhere; uploads its answer
    let honest = replies(&a1)
        .into_iter()
        .find(|r| r.request_id == pin)
        .unwrap();

    // Another inbox knows the pin and answers with its own archive, in a group it shares with
    // alice: it is no sync group of alice's, so it counts for nothing.
    let (eve, _) = net.create("eve", AccountKey::New, true);
    let eg = eve
        .create_group(&[a2.inbox_id().into()], GroupOptions::default())
        .unwrap();
    // Her archive holds a conversation alice is not in.
    let planted = eve.create_group(&[], GroupOptions::default()).unwrap();
    planted.send("planted").unwrap();
    let eve_pin = eve
        .send_sync_archive(&SyncOptions::default(), None)
        .unwrap();
    let mut forged = replies(&eve)
        .into_iter()
        .find(|r| r.request_id == eve_pin)
        .unwrap();
    forged.request_id = pin.clone();
    eg.send_envelope(sync_envelope(sync_payload::Kind::Reply(forged)))
        .unwrap();

    // A reply for a pin nobody asked for (announced, never imported by itself).
    a1.send_sync_archive(&SyncOptions::default(), Some("unknown-pin"))
        .unwrap();

    let r = a2.sync_all().unwrap();
    assert_eq!(r.history_imported, 1, "only the honest reply");
    assert!(
        a2.with_store(|s| s.conversation(planted.id()))
            .unwrap()
            .is_none(),
        "nothing of eve's archive"
    );
    assert_eq!(texts(&a2.conversation(g.id()).unwrap()).len(), 3);
    assert!(a2
        .list_available_archives(1)
        .unwrap()
        .iter()
        .any(|a| a.pin == "unknown-pin" && !a.imported));

    // The honest reply again (a replay): the same archive is not imported twice.
    let sync = a1.ensure_sync_group().unwrap();
    let sync1 = a1.sync_group_conversation(&sync).unwrap();
    sync1
        .send_envelope(sync_envelope(sync_payload::Kind::Reply(honest.clone())))
        .unwrap();
    let before = a2.sync_import_report(&pin).unwrap();
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    assert_eq!(a2.sync_import_report(&pin).unwrap(), before);

    // A reply pointing at another history server: refused before any download, marked
    // failed with its reason, nothing imported.
    let other_dir = tempfile::tempdir().unwrap();
    let other = RunningHistoryServer::start(HistoryConfig {
        dir: other_dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let foreign_pin = a2.sync_history().unwrap();
    let mut elsewhere = honest.clone();
    elsewhere.request_id = foreign_pin.clone();
    elsewhere.url = format!("{}/files/{}", other.url(), "0".repeat(32));
    sync1
        .send_envelope(sync_envelope(sync_payload::Kind::Reply(elsewhere)))
        .unwrap();
    a2.sync_all().unwrap();
    let listed = a2.list_available_archives(1).unwrap();
    let bad = listed
        .iter()
        .find(|a| a.pin == foreign_pin && a.url.starts_with(&other.url()))
        .unwrap();
    assert_eq!(bad.state, "failed");
    assert!(bad.last_error.as_deref().unwrap().contains("refusing"));
    assert!(!bad.imported);
    assert!(a2.pending_sync_requests().unwrap().contains(&foreign_pin));
    assert_eq!(count_files(other_dir.path()), 0);
}

#[test]
fn an_expired_payload_fails_with_its_reason_and_imports_nothing() {
    let net = Net::with(|c| c.ttl = Duration::from_millis(300));
    let (a1, key, _bob, g) = alice_with_history(&net);
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    assert!(texts(&a2.conversation(g.id()).unwrap()).is_empty());
    let listed = a2.list_available_archives(1).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "failed");
    assert!(listed[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("not found"));
    // Asked by hand, it fails the same way, typed.
    assert!(matches!(
        a2.process_sync_archive(None),
        Err(Error::History(ferry_transport::HistoryError::NotFound))
    ));
}

#[test]
fn an_answer_over_the_servers_size_limit_fails_at_once_and_leaves_nothing_on_disk() {
    let net = Net::with(|c| c.max_bytes = 512);
    let (a1, key, _bob, g) = alice_with_history(&net);
    for i in 0..50 {
        g.send(&format!(
            "a message long enough to push the archive past the limit {i}"
        ))
        .unwrap();
    }
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 0, "the partial upload is removed");
    // The answering installation recorded the request as failed, with the reason (no retry:
    // a second try would be refused the same way).
    let failed: Vec<_> = sync_records(&a1)
        .into_iter()
        .filter(|r| r.state == 3)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 1);
    assert!(failed[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("too large"));
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    assert_eq!(a2.pending_sync_requests().unwrap().len(), 1);
}

#[test]
fn an_answering_installation_without_a_history_server_uploads_nothing() {
    let net = Net::new();
    let (a1, key, _bob, _g) = net.alice_in_a_group(false, "history");
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    for _ in 0..2 {
        a1.sync_all().unwrap();
        assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    }
    assert_eq!(net.payloads(), 0, "nothing on the history server");
    assert_eq!(
        a2.pending_sync_requests().unwrap().len(),
        1,
        "still waiting"
    );
}

#[test]
fn a_reply_from_an_installation_revoked_since_is_ignored() {
    let net = Net::new();
    let (a1, key, _bob, g) = net.alice_in_a_group(false, "history");
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), true);
    a1.sync_all().unwrap();
    a2.sync_all().unwrap();
    let (a3, _) = net.create("a3", AccountKey::Existing(key.clone()), true);
    let pin = a3.pending_sync_requests().unwrap()[0].clone();
    // a2 joins a3's sync group and announces an archive under a3's pin…
    a2.sync_all().unwrap();
    let own_pin = a2.send_sync_archive(&SyncOptions::default(), None).unwrap();
    let mut reply = replies(&a2)
        .into_iter()
        .find(|r| r.request_id == own_pin)
        .unwrap();
    reply.request_id = pin.clone();
    // Into the inbox's sync group, which a3 settles on too.
    let sync = a2.ensure_sync_group().unwrap();
    a2.sync_group_conversation(&sync)
        .unwrap()
        .send_envelope(sync_envelope(sync_payload::Kind::Reply(reply)))
        .unwrap();
    // …and is revoked before a3 reads it.
    a1.sync_all().unwrap();
    a1.revoke_installation(
        std::sync::Arc::new(ferry_sdk::KeyPair::from_seed(&key)),
        a2.installation_id(),
    )
    .unwrap();
    assert_eq!(a3.sync_all().unwrap().history_imported, 0);
    assert!(texts(&a3.conversation(g.id()).unwrap()).is_empty());
    assert_eq!(a3.pending_sync_requests().unwrap(), [pin]);
}

#[test]
fn a_revoked_installation_still_in_a_sync_group_is_removed_before_an_answer_goes_in() {
    let net = Net::new();
    let (a1, key, bob, _g) = alice_with_history(&net);
    // a2 is new and still waiting for its own history (so it answers nothing by itself).
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), true);
    a2.create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap()
        .send("a2's own history")
        .unwrap();
    // a3 asks in a sync group of its own; a2 joins it and adds a3 to the inbox's sync group.
    let (a3, _) = net.create("a3", AccountKey::Existing(key.clone()), true);
    let pin = a3.pending_sync_requests().unwrap()[0].clone();
    a2.sync_all().unwrap();
    let sync = a2.ensure_sync_group().unwrap();
    let in_sync = |c: &Client| {
        c.sync_group_conversation(&sync)
            .unwrap()
            .members()
            .unwrap()
            .iter()
            .flat_map(|m| m.installation_ids.clone())
            .any(|i| i == hex::encode(a3.installation_id()))
    };
    assert!(in_sync(&a2), "a3 is in the inbox's sync group");
    // a1 revokes a3, so a3 is still in the group…
    a1.revoke_installation(
        std::sync::Arc::new(ferry_sdk::KeyPair::from_seed(&key)),
        a3.installation_id(),
    )
    .unwrap();
    // …when a2 answers a3's pin by hand: a3 is out of the group before the answer goes in.
    a2.send_sync_archive(&SyncOptions::default(), Some(&pin))
        .unwrap();
    let members = a2
        .sync_group_conversation(&sync)
        .unwrap()
        .members()
        .unwrap();
    assert!(
        !members
            .iter()
            .flat_map(|m| m.installation_ids.iter())
            .any(|i| *i == hex::encode(a3.installation_id())),
        "a2 removed the revoked installation from the group"
    );
    let _ = a3.sync_all();
    assert_eq!(
        a3.pending_sync_requests().unwrap(),
        [pin],
        "nothing readable arrived"
    );
}

#[test]
fn two_installations_that_make_an_hmac_secret_at_once_settle_on_one() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    a1.create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    // a2 joins the conversations, then asks for keys before it handled the sync group's
    // messages (a1's secret among them): it makes a secret of its own.
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), false);
    a1.sync_all().unwrap();
    a2.sync_welcomes().unwrap();
    assert_eq!(a2.hmac_key_revision().unwrap(), None);
    let early = a2.hmac_keys().unwrap();
    assert!(!early.is_empty());
    assert_ne!(early, a1.hmac_keys().unwrap(), "two secrets for a moment");
    for _ in 0..2 {
        a1.sync_all().unwrap();
        a2.sync_all().unwrap();
    }
    let (k1, k2) = (a1.hmac_keys().unwrap(), a2.hmac_keys().unwrap());
    assert_eq!(k1, k2, "one secret on both");
    assert_ne!(early, k2, "the earlier one (a1's, made with the inbox) won");
    assert_eq!(a1.hmac_key_revision().unwrap(), Some(0));
}
