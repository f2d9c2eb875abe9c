//! Backups against a real S3-compatible server: moto's server mode on loopback, started here
//! through ferry-testkit (`pip install 'moto[server]'`; scripts/test installs it, and without
//! it the test fails with that hint rather than passing).
//!
//! The destination logic is also tested in `backup_destinations.rs` (object_store's in-memory
//! and local-file stores through the same trait); this adds the S3 wire protocol. The
//! destination reads its endpoint and credentials from the `AWS_*` environment variables, so
//! this binary holds this one test, the only one to set them.

#![cfg(feature = "s3")]

use ferry_sdk::archive::{self, Control};
use ferry_sdk::backup_manager::{self, Destination, DestinationSpec, Policy, Reason};
use ferry_sdk::store::{
    ContentType, Conversation, ConversationKind, DeliveryStatus, Membership, Message, MessageKind,
    Store,
};
use ferry_sdk::ArchiveKey;

#[test]
fn s3_destination_round_trip() {
    let s3 = ferry_testkit::S3::start();
    let bucket = format!("ferry-test-{}", std::process::id());
    s3.create_bucket(&bucket);
    // object_store reads these through AmazonS3Builder::from_env.
    for (key, value) in s3.env() {
        std::env::set_var(key, value);
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db")).unwrap();
    store
        .insert_conversation(&Conversation {
            disappearing: None,
            id: vec![1; 32],
            kind: ConversationKind::Group,
            created_at_ns: 1,
            name: "c".into(),
            description: String::new(),
            image_url: String::new(),
            creator_inbox_id: "me".into(),
            dm_peer_inbox_id: None,
            dm_id: None,
            membership: Membership::Active,
            last_message_ns: None,
        })
        .unwrap();
    for i in 0..30u8 {
        store
            .insert_message(&Message {
                expire_at_ns: None,
                id: vec![i; 32],
                conversation_id: vec![1; 32],
                sender_inbox_id: "me".into(),
                sender_installation_id: vec![2; 32],
                sent_at_ns: 10 + i as i64,
                kind: MessageKind::Application,
                content_type: ContentType::text(),
                content: vec![b'x'; 100],
                fallback: None,
                parameters: None,
                reference_id: None,
                delivery_status: DeliveryStatus::Published,
            })
            .unwrap();
    }
    let key = ArchiveKey::from_bytes(&[5; 32]).unwrap();
    let dest = DestinationSpec::S3 {
        url: format!("s3://{bucket}/phone-1"),
    }
    .open()
    .unwrap();

    // A large object goes up in parts and comes back whole.
    let big = dir.path().join("big");
    let bytes: Vec<u8> = (0..(18 * 1024 * 1024u32))
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    dest.put("big.bin", &big).unwrap();
    let back = dir.path().join("back");
    dest.get("big.bin", &back).unwrap();
    assert!(std::fs::read(&back).unwrap() == bytes);
    dest.delete("big.bin").unwrap();

    backup_manager::set_policy(
        &store,
        &Policy {
            retention: 2,
            ..Policy::default()
        },
        0,
    )
    .unwrap();
    let day = 24 * 3600 * 1_000_000_000i64;
    let mut names = Vec::new();
    for d in 1..=3 {
        let r = backup_manager::run_due_backups(
            &store,
            d * day + 4 * 3600 * 1_000_000_000,
            &key,
            &dest,
        )
        .unwrap();
        assert_eq!(r.reason, Some(Reason::Schedule));
        names.push(r.made.unwrap().name);
    }
    let listed = backup_manager::list_backups(&dest, &key).unwrap();
    assert_eq!(
        listed.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
        vec![names[2].clone(), names[1].clone()]
    );
    assert!(listed.iter().all(|b| b.verified));
    let fetched = dest.fetch(&names[2]).unwrap();
    let mut restored = Store::open(dir.path().join("r.db")).unwrap();
    let rep =
        archive::import_archive(&mut restored, fetched.path(), &key, &Control::new()).unwrap();
    assert_eq!(rep.messages_imported, 30);
}
