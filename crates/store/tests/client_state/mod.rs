//! The messaging client's state tables (migration 4): outboxes, pending commits, device sync.

use ferry_store::{
    DeviceSyncFlag, OutboxMessage, PendingCommit, Store, SyncImport, SyncMessageState, SyncRequest,
};

const G: &[u8] = b"group-1";
const H: &[u8] = b"group-2";

#[test]
fn a_send_outbox_publishes_in_queue_order_and_forgets_what_the_node_took() {
    let s = Store::open_in_memory().unwrap();
    // Queued in an order that is neither the ids' order nor their reverse.
    for id in [b"m2", b"m9", b"m1"] {
        assert!(s.send_outbox_push(G, id, b"data").unwrap());
    }
    s.send_outbox_push(H, b"m0", b"other group").unwrap();
    // Queuing the same message again keeps its place and data.
    assert!(!s.send_outbox_push(G, b"m2", b"changed").unwrap());
    let ids = |s: &Store| -> Vec<Vec<u8>> {
        s.send_outbox(G)
            .unwrap()
            .into_iter()
            .map(|m| m.message_id)
            .collect()
    };
    assert_eq!(
        ids(&s),
        vec![b"m2".to_vec(), b"m9".to_vec(), b"m1".to_vec()]
    );
    assert_eq!(
        s.send_outbox(G).unwrap()[0],
        OutboxMessage {
            group_id: G.to_vec(),
            message_id: b"m2".to_vec(),
            data: b"data".to_vec(),
        }
    );
    assert!(s.send_outbox_remove(G, b"m9").unwrap());
    assert!(!s.send_outbox_remove(G, b"m9").unwrap());
    assert!(
        !s.send_outbox_remove(H, b"m1").unwrap(),
        "only in its own group"
    );
    // A message queued after a removal still goes last.
    s.send_outbox_remove(G, b"m1").unwrap();
    s.send_outbox_push(G, b"m3", b"data").unwrap();
    assert_eq!(ids(&s), vec![b"m2".to_vec(), b"m3".to_vec()]);
    assert_eq!(s.send_outbox(H).unwrap().len(), 1);
}

#[test]
fn welcomes_queue_per_group_and_ids_are_not_reused() {
    let s = Store::open_in_memory().unwrap();
    let first = s.welcome_outbox_push(G, b"w1").unwrap();
    let second = s.welcome_outbox_push(G, b"w2").unwrap();
    s.welcome_outbox_push(H, b"other").unwrap();
    let queued: Vec<Vec<u8>> = s
        .welcome_outbox(G)
        .unwrap()
        .into_iter()
        .map(|w| w.welcome)
        .collect();
    assert_eq!(queued, vec![b"w1".to_vec(), b"w2".to_vec()]);
    assert!(s.welcome_outbox_remove(second).unwrap());
    let third = s.welcome_outbox_push(G, b"w3").unwrap();
    assert!(third > second, "a removed id is not handed out again");
    assert!(!s.welcome_outbox_remove(second).unwrap());
    assert_eq!(s.welcome_outbox(G).unwrap()[0].id, first);
}

#[test]
fn a_pending_commit_is_replaced_and_taken_whole() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(s.pending_commit(G).unwrap(), None);
    let with_welcome = PendingCommit {
        commit_id: b"c1".to_vec(),
        commit: b"commit 1".to_vec(),
        welcome: Some(b"welcome".to_vec()),
    };
    s.set_pending_commit(G, &with_welcome).unwrap();
    assert_eq!(s.pending_commit(G).unwrap(), Some(with_welcome));
    let without = PendingCommit {
        commit_id: b"c2".to_vec(),
        commit: b"commit 2".to_vec(),
        welcome: None,
    };
    s.set_pending_commit(G, &without).unwrap();
    assert_eq!(s.pending_commit(H).unwrap(), None);
    assert_eq!(s.take_pending_commit(G).unwrap(), Some(without));
    assert_eq!(s.take_pending_commit(G).unwrap(), None);
    assert_eq!(s.pending_commit(G).unwrap(), None);
}

#[test]
fn preference_updates_go_out_oldest_first() {
    let s = Store::open_in_memory().unwrap();
    let a = s.preference_outbox_push(b"a").unwrap();
    let b = s.preference_outbox_push(b"b").unwrap();
    assert_eq!(
        s.preference_outbox()
            .unwrap()
            .iter()
            .map(|p| (p.id, p.updates.clone()))
            .collect::<Vec<_>>(),
        vec![(a, b"a".to_vec()), (b, b"b".to_vec())]
    );
    assert!(s.preference_outbox_remove(b).unwrap());
    assert!(s.preference_outbox_push(b"c").unwrap() > b);
    assert!(s.preference_outbox_remove(a).unwrap());
    assert_eq!(s.preference_outbox().unwrap().len(), 1);
}

#[test]
fn a_sync_request_keeps_its_first_answer_time() {
    let s = Store::open_in_memory().unwrap();
    let request = |pin: &str, sent| SyncRequest {
        pin: pin.into(),
        sent_at_ns: sent,
        answered_at_ns: None,
        request: b"{}".to_vec(),
    };
    s.put_sync_request(&request("later", 20)).unwrap();
    s.put_sync_request(&request("early", 10)).unwrap();
    let pins: Vec<String> = s
        .sync_requests()
        .unwrap()
        .into_iter()
        .map(|r| r.pin)
        .collect();
    assert_eq!(pins, ["early", "later"]);
    assert!(!s.sync_request("early").unwrap().unwrap().is_answered());
    assert!(s.set_sync_request_answered("early", 30).unwrap());
    assert!(!s.set_sync_request_answered("early", 40).unwrap());
    assert!(!s.set_sync_request_answered("unknown", 40).unwrap());
    assert_eq!(
        s.sync_request("early").unwrap().unwrap().answered_at_ns,
        Some(30)
    );
    assert!(s.delete_sync_request("early").unwrap());
    assert_eq!(s.sync_request("early").unwrap(), None);
    assert!(!s.delete_sync_request("early").unwrap());
}

#[test]
fn answers_sent_imports_flags_and_the_hmac_key() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(s.sync_answer_sent("p").unwrap(), None);
    s.record_sync_answer_sent("p", 5).unwrap();
    assert_eq!(s.sync_answer_sent("p").unwrap(), Some(5));

    let import = |pin: &str, m: &[u8], at| SyncImport {
        pin: pin.into(),
        message_id: m.to_vec(),
        imported_at_ns: at,
        record: b"{}".to_vec(),
    };
    s.put_sync_import(&import("p", b"m1", 9)).unwrap();
    s.put_sync_import(&import("p", b"m2", 7)).unwrap();
    // A pin that the first one is a prefix of is another request.
    s.put_sync_import(&import("p2", b"m3", 1)).unwrap();
    let got: Vec<Vec<u8>> = s
        .sync_imports("p")
        .unwrap()
        .into_iter()
        .map(|i| i.message_id)
        .collect();
    assert_eq!(got, vec![b"m2".to_vec(), b"m1".to_vec()]);

    for flag in [
        DeviceSyncFlag::HmacRotationPending,
        DeviceSyncFlag::HistoryRequestWanted,
    ] {
        assert!(!s.device_sync_flag(flag).unwrap());
        s.set_device_sync_flag(flag, true).unwrap();
        s.set_device_sync_flag(flag, true).unwrap();
        assert!(s.device_sync_flag(flag).unwrap());
    }
    s.set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, false)
        .unwrap();
    assert!(!s
        .device_sync_flag(DeviceSyncFlag::HmacRotationPending)
        .unwrap());
    assert!(s
        .device_sync_flag(DeviceSyncFlag::HistoryRequestWanted)
        .unwrap());

    assert_eq!(s.hmac_key().unwrap(), None);
    s.set_hmac_key(b"k1").unwrap();
    s.set_hmac_key(b"k2").unwrap();
    assert_eq!(s.hmac_key().unwrap(), Some(b"k2".to_vec()));
    assert_eq!(
        SyncMessageState::from_i64(2),
        Some(SyncMessageState::Processed)
    );
}

#[test]
fn the_state_methods_join_an_open_transaction() {
    let s = Store::open_in_memory().unwrap();
    s.conn().execute_batch("BEGIN").unwrap();
    s.send_outbox_push(G, b"m", b"data").unwrap();
    s.set_pending_commit(
        G,
        &PendingCommit {
            commit_id: b"c".to_vec(),
            commit: b"commit".to_vec(),
            welcome: None,
        },
    )
    .unwrap();
    s.preference_outbox_push(b"p").unwrap();
    s.set_hmac_key(b"k").unwrap();
    s.conn().execute_batch("ROLLBACK").unwrap();
    assert!(s.send_outbox(G).unwrap().is_empty());
    assert_eq!(s.pending_commit(G).unwrap(), None);
    assert!(s.preference_outbox().unwrap().is_empty());
    assert_eq!(s.hmac_key().unwrap(), None);
}
