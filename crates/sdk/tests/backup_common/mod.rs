//! Helpers shared by the backup manager tests (`backup_keys`, `backup_schedules`,
//! `backup_policies`, `backup_retention`, `backup_destinations`): a folder with seeded stores,
//! wall-clock times in a zone, daily policies and a way to damage an archive.
#![allow(dead_code)]

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ferry_sdk::backup_manager::{self, BackupRecord, Frequency, LocalFolder, Policy};
use ferry_sdk::store::{
    ContentType, Conversation, ConversationKind, DeliveryStatus, Membership, Message, MessageKind,
    Store,
};
use ferry_sdk::ArchiveKey;

pub fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[7u8; 32]).unwrap()
}

/// `y-mo-d h:mi` wall-clock time in `tz`, as ns since the epoch.
pub fn at(tz: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
    jiff::civil::date(y, mo, d)
        .at(h, mi, 0, 0)
        .in_tz(tz)
        .unwrap()
        .timestamp()
        .as_nanosecond() as i64
}

pub fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
    at("UTC", y, mo, d, h, mi)
}

pub const HOUR: i64 = 3600 * 1_000_000_000;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A store with one conversation and `n` messages sent at 1, 2, ... ns.
    pub fn store(&self, name: &str, n: u64) -> Store {
        let store = Store::open(self.path(&format!("{name}.db"))).unwrap();
        store.insert_conversation(&conversation(1)).unwrap();
        for i in 0..n {
            store.insert_message(&message(i, 1, 1 + i as i64)).unwrap();
        }
        store
    }
    pub fn folder(&self) -> LocalFolder {
        LocalFolder::new(self.path("backups"))
    }
}

pub fn conversation(id: u8) -> Conversation {
    Conversation {
        disappearing: None,
        id: vec![id; 32],
        kind: ConversationKind::Group,
        created_at_ns: 1,
        name: format!("conversation {id}"),
        description: String::new(),
        image_url: String::new(),
        creator_inbox_id: "creator".into(),
        dm_peer_inbox_id: None,
        dm_id: None,
        membership: Membership::Active,
        last_message_ns: None,
    }
}

pub fn message(i: u64, conv: u8, sent: i64) -> Message {
    let mut id = vec![0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    id[8] = conv;
    Message {
        expire_at_ns: None,
        id,
        conversation_id: vec![conv; 32],
        sender_inbox_id: "sender".into(),
        sender_installation_id: vec![1; 32],
        sent_at_ns: sent,
        kind: MessageKind::Application,
        content_type: ContentType::text(),
        content: format!("message {i}").into_bytes(),
        fallback: None,
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
    }
}

pub fn daily(hour: u8, tz: &str) -> Policy {
    Policy {
        frequency: Frequency::Daily { hour },
        time_zone: tz.into(),
        ..Policy::default()
    }
}

/// Overwrites 16 bytes in the middle of a file: the header and metadata chunk stay intact, a
/// later chunk fails authentication.
pub fn corrupt_middle(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[0xA5; 16]).unwrap();
}

pub fn made(r: &backup_manager::RunReport) -> &BackupRecord {
    r.made.as_ref().expect("a backup was made")
}
