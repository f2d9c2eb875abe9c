//! The store on its own: schema, merges, the bulk-import index path.

use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
    BULK_MIN_MESSAGES,
};

fn conv(id: u8) -> Conversation {
    Conversation {
        disappearing: None,
        id: vec![id; 16],
        kind: ConversationKind::Group,
        created_at_ns: 1,
        name: format!("c{id}"),
        description: String::new(),
        image_url: String::new(),
        creator_inbox_id: "me".into(),
        dm_peer_inbox_id: None,
        dm_id: None,
        membership: Membership::Active,
        last_message_ns: None,
    }
}

fn msg(n: u32, conv: u8) -> Message {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[4] = conv;
    Message {
        expire_at_ns: None,
        id: id.to_vec(),
        conversation_id: vec![conv; 16],
        sender_inbox_id: format!("inbox-{}", n % 7),
        sender_installation_id: vec![(n % 3) as u8; 32],
        sent_at_ns: i64::from(n),
        kind: MessageKind::Application,
        content_type: if n.is_multiple_of(5) {
            ContentType {
                authority: "example.org".into(),
                type_id: "reaction".into(),
                major: 1,
                minor: 0,
            }
        } else {
            ContentType::text()
        },
        content: format!("text {n}").into_bytes(),
        fallback: None,
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
    }
}

fn has_time_index(s: &Store) -> bool {
    s.conn()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'messages_conversation_time'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

#[test]
fn senders_and_content_types_are_stored_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("s.db")).unwrap();
    s.insert_conversation(&conv(1)).unwrap();
    for n in 0..100 {
        assert!(s.insert_message(&msg(n, 1)).unwrap());
    }
    assert!(
        !s.insert_message(&msg(3, 1)).unwrap(),
        "a duplicate id is not inserted"
    );
    let senders: i64 = s
        .conn()
        .query_row("SELECT count(*) FROM senders", [], |r| r.get(0))
        .unwrap();
    let types: i64 = s
        .conn()
        .query_row("SELECT count(*) FROM content_types", [], |r| r.get(0))
        .unwrap();
    assert_eq!(senders, 21, "7 inboxes x 3 installations");
    assert_eq!(types, 2);
    let back = s.messages(&MessageFilter::default()).unwrap();
    assert_eq!(back, (0..100).map(|n| msg(n, 1)).collect::<Vec<_>>());
    assert_eq!(
        s.conversation(&[1; 16]).unwrap().unwrap().last_message_ns,
        Some(99)
    );
}

#[test]
fn a_bulk_merge_rebuilds_the_time_index_and_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut s = Store::open(&path).unwrap();
    let n = BULK_MIN_MESSAGES as u32 + 1000;
    let mut m = s.merge_expecting(u64::from(n)).unwrap();
    for c in 0..4u8 {
        m.conversation(&conv(c)).unwrap();
    }
    // While the merge runs, the index is gone (dropped inside the transaction).
    for i in 0..n {
        assert!(m.message(&msg(i, (i % 4) as u8)).unwrap());
    }
    m.commit().unwrap();
    assert!(has_time_index(&s));
    let plan: String = s
        .conn()
        .query_row(
            "EXPLAIN QUERY PLAN SELECT * FROM messages WHERE conversation = 1 ORDER BY sent_at_ns",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("messages_conversation_time"), "{plan}");
    let got = s
        .messages(&MessageFilter {
            conversation_id: Some(vec![2; 16]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(got.len(), (n / 4) as usize);
    assert!(got.windows(2).all(|w| w[0].sent_at_ns < w[1].sent_at_ns));
}

#[test]
fn a_rolled_back_bulk_merge_keeps_the_index_and_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path().join("s.db")).unwrap();
    s.insert_conversation(&conv(1)).unwrap();
    s.insert_message(&msg(1, 1)).unwrap();
    let before = s.dump().unwrap();
    {
        let mut m = s.merge_expecting(BULK_MIN_MESSAGES * 10).unwrap();
        m.conversation(&conv(2)).unwrap();
        m.message(&msg(2, 2)).unwrap();
        // Dropped without commit.
    }
    assert!(has_time_index(&s));
    assert_eq!(s.dump().unwrap(), before);
}

#[test]
fn open_rebuilds_an_index_lost_between_commit_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let s = Store::open(&path).unwrap();
        s.conn()
            .execute_batch("DROP INDEX messages_conversation_time")
            .unwrap();
        assert!(!has_time_index(&s));
    }
    let s = Store::open(&path).unwrap();
    assert!(has_time_index(&s));
}

#[test]
fn consent_keeps_the_newer_record() {
    let s = Store::open_in_memory().unwrap();
    let rec = |state, at| ConsentRecord {
        entity_type: ConsentEntity::Inbox,
        entity: "x".into(),
        state,
        updated_at_ns: at,
    };
    assert!(s.set_consent(&rec(ConsentState::Allowed, 10)).unwrap());
    assert!(!s.set_consent(&rec(ConsentState::Denied, 5)).unwrap());
    assert!(
        !s.set_consent(&rec(ConsentState::Denied, 10)).unwrap(),
        "a tie keeps the stored one"
    );
    assert_eq!(
        s.consent(ConsentEntity::Inbox, "x").unwrap().unwrap().state,
        ConsentState::Allowed
    );
    assert!(s.set_consent(&rec(ConsentState::Denied, 11)).unwrap());
    assert_eq!(
        s.consent(ConsentEntity::Inbox, "x").unwrap().unwrap().state,
        ConsentState::Denied
    );
}

#[test]
fn the_sync_conversation_is_hidden_from_lists() {
    let s = Store::open_in_memory().unwrap();
    s.insert_conversation(&conv(1)).unwrap();
    s.insert_conversation(&Conversation {
        kind: ConversationKind::Sync,
        ..conv(2)
    })
    .unwrap();
    assert_eq!(
        s.conversations(&ConversationFilter::default())
            .unwrap()
            .len(),
        1
    );
    let all = s
        .conversations(&ConversationFilter {
            include_sync: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let s = Store::open(&path).unwrap();
        s.conn().pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path).err().expect("refused");
    assert!(err.to_string().contains("newer Ferry"), "{err}");
}

mod client_state;
mod migration;

#[test]
fn messages_take_their_conversations_disappearing_setting_and_expire_on_time() {
    use ferry_store::DisappearingSettings;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("s.db")).unwrap();
    s.insert_conversation(&conv(1)).unwrap();
    s.insert_conversation(&Conversation {
        disappearing: Some(DisappearingSettings {
            from_ns: 100,
            in_ns: 50,
        }),
        ..conv(2)
    })
    .unwrap();
    let at = |n: u32, c: u8, sent: i64| Message {
        sent_at_ns: sent,
        ..msg(n, c)
    };
    // Conversation 1 has no setting; in 2, messages from 100 on expire 50 after sending.
    s.insert_message(&at(1, 1, 120)).unwrap();
    s.insert_message(&at(2, 2, 90)).unwrap(); // before from_ns: kept
    s.insert_message(&at(3, 2, 100)).unwrap(); // expires at 150
    s.insert_message(&at(4, 2, 130)).unwrap(); // expires at 180
    let notice = Message {
        kind: MessageKind::MembershipChange,
        ..at(5, 2, 110)
    };
    s.insert_message(&notice).unwrap(); // notices never expire
                                        // An expiry the message brings (an archive's) is kept as it is.
    s.insert_message(&Message {
        expire_at_ns: Some(400),
        ..at(6, 1, 10)
    })
    .unwrap();
    let expiry = |n: u32, c: u8| s.message(&msg(n, c).id).unwrap().map(|m| m.expire_at_ns);
    assert_eq!(expiry(1, 1), Some(None));
    assert_eq!(expiry(2, 2), Some(None));
    assert_eq!(expiry(3, 2), Some(Some(150)));
    assert_eq!(expiry(4, 2), Some(Some(180)));
    assert_eq!(expiry(5, 2), Some(None));
    assert_eq!(expiry(6, 1), Some(Some(400)));
    assert_eq!(
        s.expiry_for(&[2; 16], 200, MessageKind::Application)
            .unwrap(),
        Some(250)
    );
    assert_eq!(s.next_expiry().unwrap(), Some(150));

    // Exports can leave the expiring ones out.
    let convs = [conv(1), conv(2)];
    {
        let snap = s.snapshot().unwrap();
        assert_eq!(snap.count_messages(&convs, None, None, false).unwrap(), 6);
        assert_eq!(snap.count_messages(&convs, None, None, true).unwrap(), 3);
        let mut seen = Vec::new();
        snap.for_each_message::<ferry_store::Error>(&convs, None, None, true, |m| {
            seen.push(m.expire_at_ns);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![None, None, None]);
    }

    // Nothing is due before 150; at 180 two are.
    assert!(s.delete_expired_messages(149).unwrap().is_empty());
    let gone = s.delete_expired_messages(180).unwrap();
    let mut ids: Vec<Vec<u8>> = gone.iter().map(|(_, m)| m.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec![msg(3, 2).id, msg(4, 2).id]);
    assert!(gone.iter().all(|(c, _)| *c == vec![2u8; 16]));
    assert_eq!(expiry(3, 2), None);
    assert_eq!(expiry(2, 2), Some(None));
    assert_eq!(s.next_expiry().unwrap(), Some(400));

    // Turned off: later messages keep; the setting reads back as off.
    s.set_disappearing(&[2; 16], None).unwrap();
    s.insert_message(&at(7, 2, 300)).unwrap();
    assert_eq!(expiry(7, 2), Some(None));
    assert_eq!(
        s.conversation(&[2; 16]).unwrap().unwrap().disappearing,
        None
    );
}
