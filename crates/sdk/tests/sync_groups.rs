//! The hidden sync groups, against a real node and history server on loopback: an inbox's
//! installations settle on one, nothing user-facing shows them, a pending history request is
//! reused instead of sent twice, the history server URL can be set later, and device sync
//! tells what it did.

mod net_common;

use std::collections::{BTreeSet, HashSet};

use ferry_sdk::backup::{ArchiveOptions, Control};
use ferry_sdk::store::{ConversationFilter, ConversationKind, MessageFilter};
use ferry_sdk::{
    AccountKey, ArchiveKey, Client, DeviceSyncEvent, Error, GroupOptions, SyncOptions,
};
use net_common::{texts, Net};

/// The ids of a client's active sync groups.
fn active_sync_groups(c: &Client) -> Vec<Vec<u8>> {
    c.store()
        .conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            active: Some(true),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Every sync group a client knows, of any membership.
fn all_sync_groups(c: &Client) -> BTreeSet<Vec<u8>> {
    c.store()
        .conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
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
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("from the first phone").unwrap();
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
    while let Ok(e) = answered.try_recv() {
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
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("hello").unwrap();
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
        let all = c.store().messages(&MessageFilter::default()).unwrap();
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
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    a1.create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap()
        .send("hi")
        .unwrap();
    // The new installation asked on start.
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), true);
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
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("old news").unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), false);
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
    let a1_said: Vec<DeviceSyncEvent> = a1_events.try_iter().collect();
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
    let a2_said: Vec<DeviceSyncEvent> = a2_events.try_iter().collect();
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
