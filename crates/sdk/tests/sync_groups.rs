//! The hidden sync groups, against a real node and history server on loopback: an inbox's
//! installations settle on one, nothing user-facing shows them, a pending history request is
//! reused instead of sent twice, the history server URL can be set later, and device sync
//! tells what it did.

mod net_common;

use std::collections::{BTreeSet, HashSet};

use ferry_sdk::archive::{ArchiveOptions, Control};
use ferry_sdk::blocking::Client;
use ferry_sdk::store::{ConversationFilter, ConversationKind, MessageFilter};
use ferry_sdk::{AccountKey, ArchiveKey, DeviceSyncEvent, Error, SyncOptions};
use net_common::{texts, Net};

/// The ids of a client's active sync groups.
fn active_sync_groups(c: &Client) -> Vec<Vec<u8>> {
    c.with_store(|s| {
        s.conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            active: Some(true),
            ..Default::default()
        })
    })
    .unwrap()
    .into_iter()
    .map(|c| c.id)
    .collect()
}

/// Every sync group a client knows, of any membership.
fn all_sync_groups(c: &Client) -> BTreeSet<Vec<u8>> {
    c.with_store(|s| {
        s.conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })
    })
    .unwrap()
    .into_iter()
    .map(|c| c.id)
    .collect()
}

/// At least `n` events from a stream (its forwarding thread may lag behind the call that
/// caused them), or what came within 5 s.
fn collect(rx: &crossbeam_channel::Receiver<DeviceSyncEvent>, n: usize) -> Vec<DeviceSyncEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(e) => out.push(e),
            Err(_) => break,
        }
    }
    out
}

/// Syncs every client, round after round, until a round changes nothing anywhere.
fn settle(clients: &[&Client]) {
    for _ in 0..12 {
        let mut changed = false;
        for c in clients {
            let r = c.sync_all().unwrap();
            changed |= r.conversations_joined + r.messages_processed + r.history_imported > 0;
        }
        let pending: usize = clients
            .iter()
            .map(|c| c.pending_sync_requests().unwrap().len())
            .sum();
        let groups: usize = clients.iter().map(|c| active_sync_groups(c).len()).sum();
        if !changed && pending == 0 && groups == clients.len() {
            return;
        }
    }
}

#[test]
fn five_installations_settle_on_one_sync_group_and_each_gets_its_history() {
    let net = Net::new();
    let (a1, key, _bob, g) = net.alice_in_a_group(true, "from the first phone");
    a1.sync_all().unwrap();
    let answered = a1.stream_device_sync();

    let mut own = vec![a1];
    for i in 2..=5 {
        // Each new installation asks for history at once: before anyone added it to the
        // inbox's sync group, it has to make one of its own to ask in.
        let (c, _) = net.create(&format!("a{i}"), AccountKey::Existing(key.clone()), true);
        own.push(c);
        let refs: Vec<&Client> = own.iter().collect();
        settle(&refs);
    }
    let refs: Vec<&Client> = own.iter().collect();
    settle(&refs);

    let first = active_sync_groups(&own[0]);
    assert_eq!(first.len(), 1, "one active sync group on a1");
    for (i, c) in own.iter().enumerate() {
        assert_eq!(
            active_sync_groups(c),
            first,
            "installation a{} is active in exactly the inbox's one sync group",
            i + 1
        );
        assert!(c.pending_sync_requests().unwrap().is_empty());
        // Its history arrived, whichever group its request first went to.
        assert_eq!(
            texts(&c.conversation(g.id()).unwrap()),
            ["from the first phone"],
            "a{} has the history",
            i + 1
        );
    }
    // The younger groups new installations made were left, not kept on.
    let known: BTreeSet<Vec<u8>> = own.iter().flat_map(all_sync_groups).collect();
    assert!(known.len() > 1, "the new installations did make their own");
    // No request was answered twice by the same installation (re-sent requests keep their pin).
    let mut seen = HashSet::new();
    while let Ok(e) = answered.recv_timeout(std::time::Duration::from_millis(500)) {
        if let DeviceSyncEvent::RequestAnswered { pin, .. } = e {
            assert!(
                seen.insert(pin.clone()),
                "request {pin} answered twice by a1"
            );
        }
    }
    assert!(!seen.is_empty(), "a1 answered requests");
}

#[test]
fn nothing_user_facing_shows_the_sync_groups() {
    let net = Net::new();
    let (a1, key, bob, g) = net.alice_in_a_group(true, "hello");
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), true);
    settle(&[&a1, &a2, &bob]);
    assert_eq!(texts(&a2.conversation(g.id()).unwrap()), ["hello"]);

    for c in [&a1, &a2] {
        let sync: BTreeSet<Vec<u8>> = all_sync_groups(c);
        assert!(!sync.is_empty(), "there is a sync group to hide");
        let shown: Vec<Vec<u8>> = c
            .list_conversations(&ConversationFilter::default())
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(shown, [g.id().to_vec()]);
        // Messages of every conversation: none of a sync group.
        let all = c
            .with_store(|s| s.messages(&MessageFilter::default()))
            .unwrap();
        assert!(!all.is_empty());
        assert!(all.iter().all(|m| !sync.contains(&m.conversation_id)));
        // Consent: nothing about a sync group.
        for r in c.consent_list().unwrap() {
            assert!(
                !sync.iter().any(|id| hex::encode(id) == r.entity),
                "consent record about a sync group: {r:?}"
            );
        }
        // Not openable by id either.
        for id in &sync {
            assert!(matches!(
                c.conversation(id),
                Err(Error::NoSuchConversation(_))
            ));
        }
        // An archive holds the person's conversations and consent only.
        let dir = tempfile::tempdir().unwrap();
        let meta = c
            .create_archive(
                &dir.path().join("a.ferry"),
                &ArchiveKey::generate(),
                &ArchiveOptions::default(),
                &Control::new(),
            )
            .unwrap();
        assert_eq!(meta.conversation_count, Some(1));
        assert_eq!(
            meta.consent_count,
            Some(c.consent_list().unwrap().len() as u64)
        );
    }

    // Sync reports count the person's conversations: one message in one conversation, while
    // the sync group is busy too (a consent change travels over it).
    let convs = a2.conversation(g.id()).unwrap();
    a1.set_consent(
        ferry_sdk::store::ConsentEntity::Inbox,
        bob.inbox_id(),
        ferry_sdk::store::ConsentState::Allowed,
    )
    .unwrap();
    bob.conversation(g.id()).unwrap().send("one more").unwrap();
    let r = a2.sync_all().unwrap();
    assert_eq!(r.messages_processed, 1, "{r:?}");
    assert_eq!(r.conversations_synced, 1, "{r:?}");
    assert_eq!(texts(&convs), ["hello", "one more"]);

    // A new installation is added to one conversation (the sync group is not counted).
    let (a3, _) = net.create("a3", AccountKey::Existing(key), false);
    let r = a1.sync_all().unwrap();
    assert_eq!(r.installations_added_to, 1, "{r:?}");
    a3.sync_all().unwrap();
    assert!(a3.conversation(g.id()).unwrap().is_active().unwrap());
}

#[test]
fn a_pending_history_request_is_reused_and_answered_once() {
    let net = Net::new();
    let (a1, key, _bob, _g) = net.alice_in_a_group(true, "hi");
    // The new installation asked on start.
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    let pending = a2.pending_sync_requests().unwrap();
    assert_eq!(pending.len(), 1);
    // Asking again for the same thing takes that request: nothing new is sent.
    let again = a2.request_history(&SyncOptions::default()).unwrap();
    assert!(again.reused);
    assert_eq!(again.pin, pending[0]);
    assert_eq!(a2.sync_history().unwrap(), pending[0]);
    // Something else is a new request.
    let consent = a2.request_history(&SyncOptions::consent_only()).unwrap();
    assert!(!consent.reused);
    assert_ne!(consent.pin, pending[0]);

    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 2, "one archive per request, not per ask");
    a2.sync_all().unwrap();
    assert!(a2.pending_sync_requests().unwrap().is_empty());
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 2);
    // With nothing pending, a request goes out again.
    assert!(!a2.request_history(&SyncOptions::default()).unwrap().reused);
}

#[test]
fn the_history_server_url_can_be_set_later_and_device_sync_says_what_it_did() {
    let net = Net::new();
    let (a1, key, _bob, g) = net.alice_in_a_group(true, "old news");
    let (a2, _) = net.create("a2", AccountKey::Existing(key), false);
    let e = a2.sync_history().unwrap_err();
    assert!(matches!(e, Error::HistorySyncOff));
    assert!(
        e.to_string().contains("ferry history url set URL"),
        "the error names the command: {e}"
    );
    assert!(a2.set_history_sync_url("ftp://example.invalid").is_err());
    assert_eq!(a2.history_sync_url(), "");
    a2.set_history_sync_url(&net.history_url).unwrap();
    // Kept for later runs.
    let home = net.dir.path().join("a2");
    assert_eq!(
        Client::open(&home).unwrap().history_sync_url(),
        net.history_url
    );

    let a1_events = a1.stream_device_sync();
    let a2_events = a2.stream_device_sync();
    let pin = a2.sync_history().unwrap();
    a1.sync_all().unwrap();
    a2.sync_all().unwrap();
    let a1_said = collect(&a1_events, 2);
    assert!(
        a1_said.iter().any(|e| matches!(e,
            DeviceSyncEvent::InstallationsAdded { installations, conversations: 1 }
                if installations == &[hex::encode(a2.installation_id())])),
        "{a1_said:?}"
    );
    assert!(
        a1_said.iter().any(|e| matches!(e,
            DeviceSyncEvent::RequestAnswered { pin: p, requester_installation_id, messages, .. }
                if *p == pin && *requester_installation_id == hex::encode(a2.installation_id())
                    && *messages >= 1)),
        "{a1_said:?}"
    );
    let a2_said = collect(&a2_events, 1);
    assert!(
        a2_said.iter().any(|e| matches!(e,
            DeviceSyncEvent::HistoryImported { pin: p, report }
                if *p == pin && report.messages_imported >= 1)),
        "{a2_said:?}"
    );
    assert_eq!(texts(&a2.conversation(g.id()).unwrap()), ["old news"]);
}

#[test]
fn a_dead_node_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = match Client::create(ferry_sdk::ClientOptions::new(
        dir.path().join("x"),
        url.clone(),
        AccountKey::New,
    )) {
        Ok(_) => panic!("registered with a dead node"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            Error::Transport(ferry_transport::TransportError::Unavailable(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "names {url}: {err}");
}

#[test]
fn every_answering_installation_adds_what_it_holds_and_the_new_one_gets_the_union() {
    let net = Net::new();
    let (a1, key, bob, g) = net.alice_in_a_group(true, "old 1");
    g.send("old 2").unwrap();
    // a1b came later without history sync: it holds only what came after it was added…
    let (a1b, _) = net.create("a1b", AccountKey::Existing(key.clone()), false);
    a1.sync_all().unwrap();
    a1b.sync_all().unwrap();
    bob.sync_all().unwrap();
    bob.conversation(g.id()).unwrap().send("recent").unwrap();
    a1b.sync_all().unwrap();
    a1.sync_all().unwrap();
    assert_eq!(texts(&a1b.conversation(g.id()).unwrap()), ["recent"]);
    // …and history of its own that a1 lacks: an old backup of this inbox restored on it.
    let dir = tempfile::tempdir().unwrap();
    let (archive, archive_key) = (dir.path().join("old.ferry"), ArchiveKey::generate());
    {
        let mut old = ferry_sdk::store::Store::open(dir.path().join("old.db")).unwrap();
        ferry_sdk::dev::seed(
            &mut old,
            &ferry_sdk::dev::SeedOptions {
                conversations: 3,
                messages: 30,
                consent: 0,
                self_inbox_id: a1.inbox_id().to_string(),
                ..Default::default()
            },
        )
        .unwrap();
        let origin = ferry_sdk::archive::Origin::of_store(&old).unwrap();
        ferry_sdk::archive::create_archive(
            &old,
            &archive,
            &archive_key,
            &ArchiveOptions::default(),
            &origin,
            &Control::new(),
        )
        .unwrap();
    }
    a1b.import_archive(&archive, &archive_key, &Control::new())
        .unwrap();
    a1b.set_history_sync_url(&net.history_url).unwrap();
    let count = |c: &Client| {
        c.with_store(|s| s.messages(&MessageFilter::default()))
            .unwrap()
            .len()
    };
    let (on_a1, on_a1b) = (count(&a1), count(&a1b));

    // A new installation asks once; both answer (a1b first).
    let (a3, _) = net.create("a3", AccountKey::Existing(key), true);
    let pin = a3.pending_sync_requests().unwrap()[0].clone();
    a1b.sync_all().unwrap();
    a3.sync_all().unwrap();
    assert!(a3.pending_sync_requests().unwrap().is_empty(), "answered");
    a1.sync_all().unwrap();
    a3.sync_all().unwrap();

    // The union, each message once.
    let all = a3
        .with_store(|s| s.messages(&MessageFilter::default()))
        .unwrap();
    let ids: HashSet<Vec<u8>> = all.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), all.len(), "no message twice");
    assert!(all.len() >= 30 + 3, "{} of the union", all.len());
    assert!(all.len() > on_a1 && all.len() > on_a1b);
    assert_eq!(
        texts(&a3.conversation(g.id()).unwrap()),
        ["old 1", "old 2", "recent"]
    );
    // Each answer's report says what it added.
    let reports = a3.sync_import_reports(&pin).unwrap();
    assert_eq!(reports.len(), 2, "both answers imported");
    assert_eq!(reports[0].0, hex::encode(a1b.installation_id()));
    assert_eq!(reports[1].0, hex::encode(a1.installation_id()));
    assert!(reports[0].1.messages_imported >= 30, "{:?}", reports[0].1);
    assert!(
        reports[1].1.messages_imported >= 2,
        "a1's answer added the old messages: {:?}",
        reports[1].1
    );
    assert!(
        reports[1].1.messages_skipped >= 1,
        "and skipped what was there"
    );
    assert_eq!(
        a3.sync_import_report(&pin)
            .unwrap()
            .unwrap()
            .messages_imported,
        reports[0].1.messages_imported,
        "the first report is the first answer's"
    );
    // Listed once per answer, both imported.
    let listed: Vec<_> = a3
        .list_available_archives(1)
        .unwrap()
        .into_iter()
        .filter(|a| a.pin == pin)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|a| a.imported));
}
