//! The store on its own: schema, merges, the bulk-import index path.

use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
    BULK_MIN_MESSAGES,
};

fn conv(id: u8) -> Conversation {
    Conversation {
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
