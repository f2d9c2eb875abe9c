//! The backup manager: passphrase keys, schedules with an injected clock, the activity trigger,
//! retention, corrupted archives, and destinations (local folder, object_store in memory and on
//! the local file system).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_sdk::backup::{self, ArchiveElement, ArchiveFormat, ArchiveOptions, Control, Origin};
use ferry_sdk::backups::{
    self, archive_key_kind, plan_prune, BackupRecord, Destination, DestinationSpec, Entry,
    Frequency, ListedBackup, LocalFolder, ObjectStoreDestination, Policy, Reason, Weekday,
};
use ferry_sdk::store::{
    ContentType, Conversation, ConversationKind, DeliveryStatus, Membership, Message, MessageKind,
    Store,
};
use ferry_sdk::{ArchiveKey, Error};

// ---- helpers --------------------------------------------------------------------------------

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[7u8; 32]).unwrap()
}

/// `y-mo-d h:mi` wall-clock time in `tz`, as ns since the epoch.
fn at(tz: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
    jiff::civil::date(y, mo, d)
        .at(h, mi, 0, 0)
        .in_tz(tz)
        .unwrap()
        .timestamp()
        .as_nanosecond() as i64
}

fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
    at("UTC", y, mo, d, h, mi)
}

const HOUR: i64 = 3600 * 1_000_000_000;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A store with one conversation and `n` messages sent at 1, 2, ... ns.
    fn store(&self, name: &str, n: u64) -> Store {
        let store = Store::open(self.path(&format!("{name}.db"))).unwrap();
        store.insert_conversation(&conversation(1)).unwrap();
        for i in 0..n {
            store.insert_message(&message(i, 1, 1 + i as i64)).unwrap();
        }
        store
    }
    fn folder(&self) -> LocalFolder {
        LocalFolder::new(self.path("backups"))
    }
}

fn conversation(id: u8) -> Conversation {
    Conversation {
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

fn message(i: u64, conv: u8, sent: i64) -> Message {
    let mut id = vec![0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    id[8] = conv;
    Message {
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

fn daily(hour: u8, tz: &str) -> Policy {
    Policy {
        frequency: Frequency::Daily { hour },
        time_zone: tz.into(),
        ..Policy::default()
    }
}

/// Overwrites 16 bytes in the middle of a file: the header and metadata chunk stay intact, a
/// later chunk fails authentication.
fn corrupt_middle(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[0xA5; 16]).unwrap();
}

fn made(r: &backups::RunReport) -> &BackupRecord {
    r.made.as_ref().expect("a backup was made")
}

// ---- passphrase keys ------------------------------------------------------------------------

#[test]
fn passphrase_round_trip_and_header_tells_the_key_kind() {
    let env = Env::new();
    let src = env.store("src", 25);
    let pass = ArchiveKey::passphrase("correct horse battery staple");
    let path = env.path("p.ferry");
    let meta = backup::create_archive(
        &src,
        &path,
        &pass,
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    assert_eq!(meta.key_kind, "passphrase");

    // Readable without any key: format, version, key kind and the Argon2 cost.
    let kind = archive_key_kind(&path).unwrap();
    assert_eq!(kind.format, ArchiveFormat::Ferry);
    assert_eq!(kind.format_version, "1.0");
    assert_eq!(kind.key_kind, "passphrase");
    let a = kind.argon2.expect("argon2 parameters");
    let d = ferry_archive::Argon2Params::DEFAULT;
    assert_eq!(
        (a.m_cost_kib, a.t_cost, a.p_cost),
        (d.m_cost_kib, d.t_cost, d.p_cost)
    );

    // The same passphrase restores everything.
    let mut dst = env.store("dst", 0);
    let report = backup::import_archive(&mut dst, &path, &pass, &Control::new()).unwrap();
    assert_eq!(report.messages_imported, 25);

    // A raw-key archive says "key" and has no Argon2 parameters.
    let raw_path = env.path("k.ferry");
    backup::create_archive(
        &src,
        &raw_path,
        &key(),
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    let kind = archive_key_kind(&raw_path).unwrap();
    assert_eq!((kind.key_kind, kind.argon2), ("key", None));
}

#[test]
fn wrong_passphrase_is_reported_as_such() {
    let env = Env::new();
    let src = env.store("src", 3);
    let path = env.path("p.ferry");
    backup::create_archive(
        &src,
        &path,
        &ArchiveKey::passphrase("right"),
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    let mut dst = env.store("dst", 0);
    let err = backup::import_archive(
        &mut dst,
        &path,
        &ArchiveKey::passphrase("wrong"),
        &Control::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive(ferry_archive::Error::WrongKey(
                ferry_archive::KeyKindName::Passphrase
            ))
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "wrong key: this archive was sealed with a different passphrase"
    );
    // A raw key on a passphrase archive names the kind it needs.
    let err = backup::archive_metadata(&path, &key()).unwrap_err();
    assert!(
        err.to_string().contains("sealed with a passphrase"),
        "{err}"
    );
}

#[test]
fn key_kind_of_libxmtp_and_foreign_files() {
    let env = Env::new();
    // A libxmtp archive starts with u16 version 0, a 12-byte nonce, then a zstd frame.
    let mut xmtp = vec![0u8, 0];
    xmtp.extend_from_slice(&[9u8; 12]);
    xmtp.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]);
    std::fs::write(env.path("x.zst"), &xmtp).unwrap();
    let kind = archive_key_kind(&env.path("x.zst")).unwrap();
    assert_eq!(kind.format, ArchiveFormat::Xmtp);
    assert_eq!((kind.format_version.as_str(), kind.key_kind), ("0", "key"));

    std::fs::write(env.path("t.txt"), b"hello, this is not an archive").unwrap();
    let err = archive_key_kind(&env.path("t.txt")).unwrap_err();
    assert!(err.to_string().contains("not a Ferry archive"), "{err}");
}

// ---- schedules with an injected clock -------------------------------------------------------

#[test]
fn daily_slots_cross_day_boundaries_in_utc_and_other_zones() {
    let p = daily(3, "UTC");
    // Just before 03:00 the last slot is yesterday's; at 03:00 exactly it is today's.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 10, 2, 59)).unwrap(),
        Some(utc(2025, 3, 9, 3, 0))
    );
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 10, 3, 0)).unwrap(),
        Some(utc(2025, 3, 10, 3, 0))
    );
    assert_eq!(
        p.next_slot_after(utc(2025, 3, 10, 3, 0)).unwrap(),
        Some(utc(2025, 3, 11, 3, 0))
    );
    // New Year's Eve to New Year's Day.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 1, 1, 1, 0)).unwrap(),
        Some(utc(2024, 12, 31, 3, 0))
    );

    // Berlin midnight is 23:00 UTC the day before (winter): the local date decides.
    let berlin = daily(0, "Europe/Berlin");
    assert_eq!(
        berlin
            .last_slot_at_or_before(utc(2025, 1, 15, 23, 30))
            .unwrap(),
        Some(utc(2025, 1, 15, 23, 0))
    );
    assert_eq!(
        berlin
            .last_slot_at_or_before(utc(2025, 1, 15, 22, 59))
            .unwrap(),
        Some(utc(2025, 1, 14, 23, 0))
    );
    // A negative offset: 03:00 in Los Angeles (PST, UTC-8) is 11:00 UTC.
    let la = daily(3, "America/Los_Angeles");
    assert_eq!(
        la.last_slot_at_or_before(utc(2025, 1, 15, 10, 0)).unwrap(),
        Some(utc(2025, 1, 14, 11, 0))
    );
    // A half-hour zone: 03:00 in Kolkata (UTC+5:30) is 21:30 UTC the day before.
    let kolkata = daily(3, "Asia/Kolkata");
    assert_eq!(
        kolkata
            .last_slot_at_or_before(utc(2025, 6, 1, 0, 0))
            .unwrap(),
        Some(utc(2025, 5, 31, 21, 30))
    );
}

#[test]
fn daily_slots_follow_the_wall_clock_across_daylight_saving() {
    // Berlin springs forward on 2025-03-30 at 02:00 (to 03:00) and falls back on 2025-10-26 at
    // 03:00 (to 02:00).
    let p = daily(2, "Europe/Berlin");
    // The day before: 02:00 CET = 01:00 UTC.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 29, 12, 0)).unwrap(),
        Some(utc(2025, 3, 29, 1, 0))
    );
    // 02:00 does not exist on the 30th: the slot moves past the gap, 03:00 CEST = 01:00 UTC.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 30, 12, 0)).unwrap(),
        Some(utc(2025, 3, 30, 1, 0))
    );
    // The day after: 02:00 CEST = 00:00 UTC (the UTC time moved by an hour, the local one not).
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 31, 12, 0)).unwrap(),
        Some(utc(2025, 3, 31, 0, 0))
    );
    // 02:00 happens twice on 2025-10-26: the slot is the first (CEST, 00:00 UTC) ...
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 10, 26, 12, 0)).unwrap(),
        Some(utc(2025, 10, 26, 0, 0))
    );
    // ... and so the backup is not due again an hour later at the second 02:00.
    assert_eq!(
        p.next_slot_after(utc(2025, 10, 26, 0, 0)).unwrap(),
        Some(utc(2025, 10, 27, 1, 0))
    );
    // New York too (springs forward 2025-03-09): 09:00 EDT = 13:00 UTC, 09:00 EST = 14:00 UTC.
    let ny = daily(9, "America/New_York");
    assert_eq!(
        ny.next_slot_after(utc(2025, 3, 8, 15, 0)).unwrap(),
        Some(utc(2025, 3, 9, 13, 0))
    );
    assert_eq!(
        ny.last_slot_at_or_before(utc(2025, 3, 8, 15, 0)).unwrap(),
        Some(utc(2025, 3, 8, 14, 0))
    );
}

#[test]
fn weekly_slots_cross_week_and_year_boundaries() {
    let p = Policy {
        frequency: Frequency::Weekly {
            weekday: Weekday::Mon,
            hour: 9,
        },
        ..Policy::default()
    };
    // 2025-03-16 is a Sunday: the last slot is Monday the 10th.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 16, 23, 0)).unwrap(),
        Some(utc(2025, 3, 10, 9, 0))
    );
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 17, 8, 59)).unwrap(),
        Some(utc(2025, 3, 10, 9, 0))
    );
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 17, 9, 0)).unwrap(),
        Some(utc(2025, 3, 17, 9, 0))
    );
    assert_eq!(
        p.next_slot_after(utc(2025, 3, 17, 9, 0)).unwrap(),
        Some(utc(2025, 3, 24, 9, 0))
    );
    // 2025-01-01 is a Wednesday: the last Monday is in 2024.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 1, 1, 12, 0)).unwrap(),
        Some(utc(2024, 12, 30, 9, 0))
    );
    // In Auckland (UTC+13 in January) Monday 01:00 is Sunday 12:00 UTC: the zone's weekday
    // counts, not UTC's.
    let nz = Policy {
        frequency: Frequency::Weekly {
            weekday: Weekday::Mon,
            hour: 1,
        },
        time_zone: "Pacific/Auckland".into(),
        ..Policy::default()
    };
    assert_eq!(
        nz.last_slot_at_or_before(utc(2025, 1, 12, 12, 30)).unwrap(),
        Some(utc(2025, 1, 12, 12, 0))
    );
    assert_eq!(
        nz.last_slot_at_or_before(utc(2025, 1, 12, 11, 59)).unwrap(),
        Some(utc(2025, 1, 5, 12, 0))
    );
}

#[test]
fn monthly_slots_cross_month_and_year_boundaries_and_clamp_short_months() {
    let first = Policy {
        frequency: Frequency::Monthly { day: 1, hour: 3 },
        ..Policy::default()
    };
    assert_eq!(
        first.last_slot_at_or_before(utc(2025, 3, 1, 2, 0)).unwrap(),
        Some(utc(2025, 2, 1, 3, 0))
    );
    assert_eq!(
        first.last_slot_at_or_before(utc(2025, 3, 1, 3, 0)).unwrap(),
        Some(utc(2025, 3, 1, 3, 0))
    );
    assert_eq!(
        first.last_slot_at_or_before(utc(2025, 1, 1, 0, 0)).unwrap(),
        Some(utc(2024, 12, 1, 3, 0))
    );
    // Day 31 is the last day of shorter months, leap years included.
    let last = Policy {
        frequency: Frequency::Monthly { day: 31, hour: 3 },
        ..Policy::default()
    };
    assert_eq!(
        last.next_slot_after(utc(2025, 1, 31, 4, 0)).unwrap(),
        Some(utc(2025, 2, 28, 3, 0))
    );
    assert_eq!(
        last.next_slot_after(utc(2024, 2, 1, 0, 0)).unwrap(),
        Some(utc(2024, 2, 29, 3, 0))
    );
    assert_eq!(
        last.last_slot_at_or_before(utc(2025, 5, 15, 0, 0)).unwrap(),
        Some(utc(2025, 4, 30, 3, 0))
    );
    // In Tokyo (UTC+9), the 1st at 03:00 is 18:00 UTC on the last day of the month before.
    let tokyo = Policy {
        frequency: Frequency::Monthly { day: 1, hour: 3 },
        time_zone: "Asia/Tokyo".into(),
        ..Policy::default()
    };
    assert_eq!(
        tokyo
            .last_slot_at_or_before(utc(2025, 2, 28, 18, 0))
            .unwrap(),
        Some(utc(2025, 2, 28, 18, 0))
    );
    assert_eq!(
        Policy {
            frequency: Frequency::Never,
            ..Policy::default()
        }
        .last_slot_at_or_before(utc(2025, 1, 1, 0, 0))
        .unwrap(),
        None
    );
}

#[test]
fn policies_are_validated_and_stored_as_json_in_settings() {
    let env = Env::new();
    let store = env.store("s", 0);
    assert!(backups::policy(&store).unwrap().is_none());
    for bad in [
        daily(24, "UTC"),
        daily(3, "Mars/Olympus_Mons"),
        Policy {
            retention: 0,
            ..Policy::default()
        },
        Policy {
            frequency: Frequency::Monthly { day: 0, hour: 3 },
            ..Policy::default()
        },
        Policy {
            elements: vec![],
            ..Policy::default()
        },
        Policy {
            activity_every: Some(0),
            ..Policy::default()
        },
    ] {
        let err = backups::set_policy(&store, &bad, 0).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid backup policy"),
            "{err}"
        );
    }
    let p = Policy {
        frequency: Frequency::Weekly {
            weekday: Weekday::Fri,
            hour: 22,
        },
        activity_every: Some(500),
        retention: 9,
        label: "Weekly {date}".into(),
        elements: vec![ArchiveElement::Consent],
        time_zone: "Europe/Lisbon".into(),
        destination: Some(DestinationSpec::Folder {
            path: env.path("b"),
        }),
        key_source: None,
    };
    backups::set_policy(&store, &p, 5).unwrap();
    assert_eq!(backups::policy(&store).unwrap(), Some(p));
    let raw = store.setting(backups::POLICY_SETTING).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["policy"]["frequency"]["weekday"], "fri");
    assert_eq!(v["set_at_ns"], 5);
}

#[test]
fn scheduled_runs_with_an_injected_clock() {
    let env = Env::new();
    let store = env.store("s", 10);
    let dest = env.folder();
    // Set on Friday 2025-03-07 at 12:00 UTC: daily at 03:00 in Berlin (02:00 UTC in winter).
    let set_at = utc(2025, 3, 7, 12, 0);
    backups::set_policy(&store, &daily(3, "Europe/Berlin"), set_at).unwrap();

    // Nothing due until the first slot after the policy was set.
    let r = backups::run_due_backups(&store, utc(2025, 3, 8, 1, 59), &key(), &dest).unwrap();
    assert!(r.made.is_none() && r.reason.is_none());
    let s = backups::backup_status(&store, utc(2025, 3, 8, 1, 59)).unwrap();
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 8, 2, 0)));
    assert!(!s.due && !s.overdue);
    assert_eq!(s.last_backup_ns, None);

    // At the slot it is due, and the label carries the local date.
    let r = backups::run_due_backups(&store, utc(2025, 3, 8, 2, 0), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Schedule));
    let first = made(&r).clone();
    assert_eq!(first.at_ns, utc(2025, 3, 8, 2, 0));
    assert_eq!(first.label, "Ferry backup 2025-03-08");
    assert_eq!(first.message_count, 10);
    assert!(first.name.starts_with("ferry-backup-") && first.name.ends_with(".ferry"));

    // Later the same day: not due again.
    let r = backups::run_due_backups(&store, utc(2025, 3, 8, 23, 0), &key(), &dest).unwrap();
    assert!(r.made.is_none());
    let s = backups::backup_status(&store, utc(2025, 3, 8, 23, 0)).unwrap();
    assert_eq!(s.last_backup_ns, Some(utc(2025, 3, 8, 2, 0)));
    assert_eq!(s.last_backup_name.as_deref(), Some(first.name.as_str()));
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 9, 2, 0)));
    assert!(!s.due && !s.overdue);

    // The app was closed for two days: due, and overdue once a day past the missed slot.
    let s = backups::backup_status(&store, utc(2025, 3, 9, 12, 0)).unwrap();
    assert!(s.due && !s.overdue);
    let s = backups::backup_status(&store, utc(2025, 3, 10, 2, 0)).unwrap();
    assert!(s.due && s.overdue);
    // One backup catches up (not one per missed day).
    let r = backups::run_due_backups(&store, utc(2025, 3, 10, 9, 0), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Schedule));
    let r = backups::run_due_backups(&store, utc(2025, 3, 10, 9, 1), &key(), &dest).unwrap();
    assert!(r.made.is_none());
    let s = backups::backup_status(&store, utc(2025, 3, 10, 9, 1)).unwrap();
    assert!(!s.due && !s.overdue);
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 11, 2, 0)));

    let listed = backups::list_backups(&dest, &key()).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|b| b.verified));
    assert_eq!(listed[1].label, "Ferry backup 2025-03-08");
    assert_eq!(listed[0].label, "Ferry backup 2025-03-10");
    let j = backups::journal(&store).unwrap();
    assert_eq!(j.history.len(), 2);
    assert_eq!(j.last_error, None);
}

#[test]
fn weekly_and_monthly_runs_with_an_injected_clock() {
    let env = Env::new();
    let store = env.store("s", 2);
    let dest = env.folder();
    let weekly = Policy {
        frequency: Frequency::Weekly {
            weekday: Weekday::Sun,
            hour: 4,
        },
        time_zone: "America/New_York".into(),
        ..Policy::default()
    };
    // Set Monday 2025-03-03; Sunday 04:00 EST is 09:00 UTC on the 9th... which is the day New
    // York springs forward, so it is 04:00 EDT = 08:00 UTC.
    backups::set_policy(&store, &weekly, utc(2025, 3, 3, 12, 0)).unwrap();
    for day in 3..9 {
        let r = backups::run_due_backups(&store, utc(2025, 3, day, 23, 0), &key(), &dest).unwrap();
        assert!(r.made.is_none(), "not due on March {day}");
    }
    assert!(
        backups::run_due_backups(&store, utc(2025, 3, 9, 7, 59), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    let r = backups::run_due_backups(&store, utc(2025, 3, 9, 8, 0), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Schedule));
    assert!(
        backups::run_due_backups(&store, utc(2025, 3, 15, 8, 0), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    let s = backups::backup_status(&store, utc(2025, 3, 15, 8, 0)).unwrap();
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 16, 8, 0)));

    let monthly = Policy {
        frequency: Frequency::Monthly { day: 31, hour: 3 },
        ..Policy::default()
    };
    // The policy changes; the last backup (March 9th) stays the starting point.
    backups::set_policy(&store, &monthly, utc(2025, 3, 20, 0, 0)).unwrap();
    assert!(
        backups::run_due_backups(&store, utc(2025, 3, 31, 2, 59), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    assert!(
        backups::run_due_backups(&store, utc(2025, 3, 31, 3, 0), &key(), &dest)
            .unwrap()
            .made
            .is_some()
    );
    let s = backups::backup_status(&store, utc(2025, 4, 1, 0, 0)).unwrap();
    assert_eq!(s.next_due_ns, Some(utc(2025, 4, 30, 3, 0)));
    assert!(
        backups::run_due_backups(&store, utc(2025, 4, 29, 0, 0), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    assert!(
        backups::run_due_backups(&store, utc(2025, 4, 30, 3, 0), &key(), &dest)
            .unwrap()
            .made
            .is_some()
    );
}

#[test]
fn activity_trigger_counts_new_messages_since_the_last_backup() {
    let env = Env::new();
    let store = env.store("s", 4);
    let dest = env.folder();
    let p = Policy {
        frequency: Frequency::Never,
        activity_every: Some(3),
        ..Policy::default()
    };
    let t0 = utc(2025, 6, 1, 12, 0);
    backups::set_policy(&store, &p, t0).unwrap();
    // Never backed up: all 4 messages count.
    assert_eq!(
        backups::new_messages_since(&store, None, u64::MAX).unwrap(),
        4
    );
    let r = backups::run_due_backups(&store, t0, &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Activity));
    assert_eq!(made(&r).message_count, 4);

    // Two new messages (sent after the backup): not yet.
    store.insert_conversation(&conversation(2)).unwrap();
    store.insert_message(&message(100, 2, t0 + 1)).unwrap();
    store.insert_message(&message(101, 1, t0 + 2)).unwrap();
    let s = backups::backup_status(&store, t0 + HOUR).unwrap();
    assert_eq!(s.new_messages, 2);
    assert!(!s.due && s.next_due_ns.is_none() && !s.overdue);
    assert!(backups::run_due_backups(&store, t0 + HOUR, &key(), &dest)
        .unwrap()
        .made
        .is_none());
    // An old message arriving late does not count as new activity.
    store.insert_message(&message(102, 2, 5)).unwrap();
    assert!(!backups::backup_status(&store, t0 + HOUR).unwrap().due);
    // The third new one triggers a backup, which holds all 8 messages.
    store.insert_message(&message(103, 2, t0 + 3)).unwrap();
    let s = backups::backup_status(&store, t0 + HOUR).unwrap();
    assert_eq!((s.new_messages, s.due_reason), (3, Some(Reason::Activity)));
    let r = backups::run_due_backups(&store, t0 + HOUR, &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Activity));
    assert_eq!(made(&r).message_count, 8);
    // The counter starts again from this backup.
    let s = backups::backup_status(&store, t0 + 2 * HOUR).unwrap();
    assert_eq!((s.new_messages, s.due), (0, false));
}

#[test]
fn no_policy_means_no_scheduled_run_but_manual_works() {
    let env = Env::new();
    let store = env.store("s", 1);
    let dest = env.folder();
    let err = backups::run_due_backups(&store, 0, &key(), &dest).unwrap_err();
    assert!(matches!(err, backups::Error::NoPolicy), "{err:?}");
    let s = backups::backup_status(&store, 0).unwrap();
    assert!(s.policy.is_none() && !s.due && !s.overdue && s.next_due_ns.is_none());
    let r = backups::run_backup_now(&store, utc(2025, 1, 2, 3, 4), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Manual));
    assert_eq!(made(&r).label, "Ferry backup 2025-01-02");
    assert_eq!(
        backups::backup_status(&store, 0).unwrap().last_backup_ns,
        Some(utc(2025, 1, 2, 3, 4))
    );
}

// ---- retention and corrupted archives -------------------------------------------------------

#[test]
fn retention_drops_the_oldest_first() {
    let env = Env::new();
    let store = env.store("s", 5);
    let dest = env.folder();
    backups::set_policy(
        &store,
        &Policy {
            retention: 3,
            ..Policy::default()
        },
        0,
    )
    .unwrap();
    let mut names = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..6 {
        let r = backups::run_backup_now(&store, utc(2025, 1, 1 + i, 3, 0), &key(), &dest).unwrap();
        names.push(made(&r).name.clone());
        let p = r.prune.clone().expect("pruned");
        assert!(p.kept.len() <= 3);
        assert_eq!(p.kept[0], made(&r).name, "the new backup is kept");
        deleted.extend(p.deleted);
    }
    // Each run past the third deleted exactly the oldest one left.
    assert_eq!(deleted, names[..3].to_vec());
    let listed = backups::list_backups(&dest, &key()).unwrap();
    let left: Vec<_> = listed.iter().map(|b| b.name.clone()).collect();
    assert_eq!(
        left,
        vec![names[5].clone(), names[4].clone(), names[3].clone()]
    );
    // Names sort like creation times.
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, names);
}

#[test]
fn a_corrupted_archive_is_listed_as_such_never_kept_and_never_the_reason_to_drop_a_good_one() {
    let env = Env::new();
    let store = env.store("s", 2000);
    let dest = env.folder();
    let run = |day: i8| {
        backups::run_backup_now(&store, utc(2025, 2, day, 3, 0), &key(), &dest)
            .unwrap()
            .made
            .unwrap()
            .name
    };
    backups::set_policy(
        &store,
        &Policy {
            retention: 2,
            ..Policy::default()
        },
        0,
    )
    .unwrap();
    let a = run(1);
    let b = run(2);
    let c = run(3); // prunes a
    assert!(!dest.dir().join(&a).exists());
    // The newest archive gets damaged in the destination.
    corrupt_middle(&dest.dir().join(&c));

    let listed = backups::list_backups(&dest, &key()).unwrap();
    assert_eq!(listed.len(), 2);
    let bad = listed.iter().find(|x| x.name == c).unwrap();
    assert!(!bad.verified);
    assert!(
        bad.error
            .as_deref()
            .unwrap()
            .contains("failed authentication"),
        "{:?}",
        bad.error
    );
    // Its header and metadata still authenticate, so its creation time is known.
    assert!(bad.created_at_ns.is_some());
    assert!(listed.iter().find(|x| x.name == b).unwrap().verified);

    // Retention 1: the newest *verified* archive (b) is kept, not the damaged newer one; b is
    // not deleted to make room, and c is not deleted either (it is newer than b).
    let p = backups::prune_backups(&dest, &key(), 1).unwrap();
    assert_eq!(p.kept, vec![b.clone()]);
    assert!(p.deleted.is_empty(), "{p:?}");
    assert_eq!(p.not_verified.len(), 1);
    assert_eq!(p.not_verified[0].name, c);
    assert!(!p.not_verified[0].deleted);
    assert!(dest.dir().join(&b).exists() && dest.dir().join(&c).exists());

    // Retention 2 with one good archive and one damaged one: the damaged one is not counted,
    // so nothing is pruned.
    let p = backups::prune_backups(&dest, &key(), 2).unwrap();
    assert_eq!(p.kept, vec![b.clone()]);
    assert!(p.deleted.is_empty());

    // Two newer good backups: now retention (2) is met by d and e, and b and the damaged c are
    // older than both, so they go, oldest first.
    let d = run(4);
    let e = run(5);
    let listed = backups::list_backups(&dest, &key()).unwrap();
    let names: Vec<_> = listed.iter().map(|x| x.name.clone()).collect();
    assert_eq!(names, vec![e.clone(), d.clone()]);
    assert!(listed.iter().all(|x| x.verified));
}

#[test]
fn archives_it_cannot_read_are_never_deleted() {
    let env = Env::new();
    let store = env.store("s", 3);
    let dest = env.folder();
    // Made with another key (the person changed it): unreadable with the current one.
    let other = ArchiveKey::from_bytes(&[9u8; 32]).unwrap();
    let old = made(&backups::run_backup_now(&store, utc(2025, 1, 1, 0, 0), &other, &dest).unwrap())
        .name
        .clone();
    // And one whose header is destroyed.
    let wrecked = "ferry-backup-1000.ferry";
    std::fs::write(dest.dir().join(wrecked), b"\x89FERRY\r\n garbage").unwrap();
    // Objects that are not backups are ignored entirely.
    std::fs::write(dest.dir().join("notes.txt"), b"mine").unwrap();

    for day in 2..6 {
        backups::run_backup_now(&store, utc(2025, 1, day, 0, 0), &key(), &dest).unwrap();
    }
    let p = backups::prune_backups(&dest, &key(), 1).unwrap();
    assert_eq!(p.kept.len(), 1);
    let listed = backups::list_backups(&dest, &key()).unwrap();
    let unreadable: Vec<_> = listed.iter().filter(|b| !b.verified).collect();
    assert_eq!(unreadable.len(), 2);
    let wrong = unreadable.iter().find(|b| b.name == old).unwrap();
    assert!(wrong.error.as_deref().unwrap().starts_with("wrong key"));
    assert_eq!(wrong.created_at_ns, None);
    assert!(unreadable.iter().any(|b| b.name == wrecked));
    assert!(dest.dir().join(&old).exists());
    assert!(dest.dir().join(wrecked).exists());
    assert!(dest.dir().join("notes.txt").exists());
    assert_eq!(listed.len(), 3, "1 kept + 2 unreadable");
}

fn listed(name: &str, created: Option<i64>, verified: bool) -> ListedBackup {
    ListedBackup {
        name: name.into(),
        label: String::new(),
        created_at_ns: created,
        start_ns: None,
        end_ns: None,
        elements: vec![],
        size_bytes: 1,
        conversation_count: None,
        message_count: None,
        consent_count: None,
        verified,
        error: (!verified).then(|| "damaged".to_string()),
        ..Default::default()
    }
}

#[test]
fn prune_plan_rules() {
    // Fewer verified archives than the retention: nothing is deleted, damaged or not.
    let l = vec![
        listed("a", Some(1), false),
        listed("b", Some(2), true),
        listed("c", Some(3), false),
    ];
    let p = plan_prune(&l, 2);
    assert_eq!(p.kept, vec!["b"]);
    assert!(p.deleted.is_empty());
    // Retention met: everything older than the oldest kept goes, oldest first; a damaged one
    // between kept ones stays; one without a provable date stays.
    let l = vec![
        listed("a", Some(1), true),
        listed("b", Some(2), false),
        listed("c", Some(3), true),
        listed("d", Some(4), true),
        listed("x", None, false),
        listed("e", Some(5), false),
        listed("f", Some(6), true),
    ];
    let p = plan_prune(&l, 2);
    assert_eq!(p.kept, vec!["f", "d"]);
    assert_eq!(p.deleted, vec!["a", "b", "c"]);
    assert_eq!(
        p.not_verified
            .iter()
            .map(|n| (n.name.as_str(), n.deleted))
            .collect::<Vec<_>>(),
        vec![("b", true), ("x", false), ("e", false)]
    );
    // Retention 1 never deletes the newest verified archive, even when newer damaged ones exist.
    let l = vec![
        listed("a", Some(1), true),
        listed("b", Some(2), false),
        listed("c", Some(3), false),
    ];
    let p = plan_prune(&l, 1);
    assert_eq!(p.kept, vec!["a"]);
    assert!(p.deleted.is_empty());
    // Nothing verified: nothing deleted.
    let p = plan_prune(
        &[listed("a", Some(1), false), listed("b", Some(2), false)],
        1,
    );
    assert!(p.kept.is_empty() && p.deleted.is_empty());
}

// ---- destinations ---------------------------------------------------------------------------

/// A destination that fails or damages uploads, to check the manager verifies the copy.
struct Faulty {
    inner: LocalFolder,
    fail_put: bool,
    damage_put: Arc<AtomicBool>,
}

impl Destination for Faulty {
    fn describe(&self) -> String {
        "faulty".into()
    }
    fn put(&self, name: &str, from: &Path) -> backups::Result<()> {
        if self.fail_put {
            return Err(backups::Error::Destination {
                op: "put",
                name: name.into(),
                message: "disk full".into(),
            });
        }
        self.inner.put(name, from)?;
        if self.damage_put.load(Ordering::Relaxed) {
            corrupt_middle(&self.inner.dir().join(name));
        }
        Ok(())
    }
    fn get(&self, name: &str, to: &Path) -> backups::Result<()> {
        self.inner.get(name, to)
    }
    fn list(&self) -> backups::Result<Vec<Entry>> {
        self.inner.list()
    }
    fn delete(&self, name: &str) -> backups::Result<()> {
        self.inner.delete(name)
    }
    fn staging_dir(&self) -> Option<PathBuf> {
        self.inner.staging_dir()
    }
}

#[test]
fn failed_and_damaged_uploads_are_errors_recorded_in_the_journal() {
    let env = Env::new();
    let store = env.store("s", 3000);
    backups::set_policy(&store, &daily(3, "UTC"), 0).unwrap();
    let failing = Faulty {
        inner: LocalFolder::new(env.path("f")),
        fail_put: true,
        damage_put: Arc::new(AtomicBool::new(false)),
    };
    let now = utc(2025, 1, 1, 4, 0);
    let err = backups::run_due_backups(&store, now, &key(), &failing).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    let s = backups::backup_status(&store, now).unwrap();
    assert!(s.due && s.last_backup_ns.is_none());
    assert!(s.last_error.as_deref().unwrap().contains("disk full"));
    assert_eq!(s.last_attempt_ns, Some(now));
    // The archive was staged in the folder and is gone again.
    assert_eq!(std::fs::read_dir(env.path("f")).unwrap().count(), 0);

    let damaging = Faulty {
        inner: LocalFolder::new(env.path("g")),
        fail_put: false,
        damage_put: Arc::new(AtomicBool::new(true)),
    };
    let err = backups::run_due_backups(&store, now, &key(), &damaging).unwrap_err();
    assert!(matches!(err, backups::Error::NotVerified { .. }), "{err:?}");
    assert!(backups::backup_status(&store, now).unwrap().due);
    // Once uploads are good again, the next run succeeds and clears the error.
    damaging.damage_put.store(false, Ordering::Relaxed);
    let r = backups::run_due_backups(&store, now, &key(), &damaging).unwrap();
    assert!(r.made.is_some());
    let s = backups::backup_status(&store, now).unwrap();
    assert!(!s.due && s.last_error.is_none());
    // The damaged one is listed as such and not kept.
    let p = r.prune.unwrap();
    assert_eq!(p.kept.len(), 1);
    assert_eq!(p.not_verified.len(), 1);
}

#[test]
fn local_folder_rejects_path_names_and_hides_temporary_files() {
    let env = Env::new();
    let dest = env.folder();
    let src = env.path("x");
    std::fs::write(&src, b"abc").unwrap();
    for bad in ["../x", "a/b", ".hidden", "", "sp ace"] {
        assert!(matches!(
            dest.put(bad, &src),
            Err(backups::Error::InvalidName(_))
        ));
    }
    dest.put("ferry-backup-1.ferry", &src).unwrap();
    std::fs::write(dest.dir().join(".ferry-upload-1.tmp"), b"partial").unwrap();
    let names: Vec<_> = dest.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["ferry-backup-1.ferry"]);
    assert!(src.exists(), "put leaves the source in place");
}

fn object_store_round_trip(dest: &dyn Destination, env: &Env) {
    // The raw trait: put, list with sizes, get, replace, delete; large files in parts.
    let small = env.path("small");
    std::fs::write(&small, b"hello").unwrap();
    let big = env.path("big");
    let big_bytes: Vec<u8> = (0..(20 * 1024 * 1024 + 123u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &big_bytes).unwrap();
    dest.put("a.bin", &small).unwrap();
    dest.put("b.bin", &big).unwrap();
    let mut listed = dest.list().unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(listed.iter().all(|e| e.modified_ns.is_some()), "{listed:?}");
    let listed: Vec<(String, u64)> = listed.into_iter().map(|e| (e.name, e.size)).collect();
    assert_eq!(
        listed,
        vec![
            ("a.bin".to_string(), 5),
            ("b.bin".to_string(), big_bytes.len() as u64)
        ]
    );
    let out = env.path("out");
    dest.get("b.bin", &out).unwrap();
    assert!(std::fs::read(&out).unwrap() == big_bytes);
    dest.delete("a.bin").unwrap();
    dest.delete("b.bin").unwrap();
    assert!(dest.list().unwrap().is_empty());
    assert!(dest.get("a.bin", &out).is_err());

    // Backups through the manager, verified from the store's copy, and restorable.
    let store = env.store("src", 40);
    backups::set_policy(
        &store,
        &Policy {
            retention: 2,
            ..daily(3, "UTC")
        },
        0,
    )
    .unwrap();
    let mut names = Vec::new();
    for day in 1..=3 {
        let r = backups::run_due_backups(&store, utc(2025, 1, day, 3, 0), &key(), dest).unwrap();
        assert_eq!(r.reason, Some(Reason::Schedule));
        names.push(made(&r).name.clone());
    }
    let listed = backups::list_backups(dest, &key()).unwrap();
    assert_eq!(
        listed.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
        vec![names[2].clone(), names[1].clone()]
    );
    assert!(listed
        .iter()
        .all(|b| b.verified && b.message_count == Some(40)));
    let fetched = dest.fetch(&names[2]).unwrap();
    let mut restored = env.store("restored", 0);
    let report =
        backup::import_archive(&mut restored, fetched.path(), &key(), &Control::new()).unwrap();
    assert_eq!(report.messages_imported, 40);
}

#[test]
fn object_store_in_memory_round_trip() {
    let env = Env::new();
    let dest = ObjectStoreDestination::in_memory().unwrap();
    object_store_round_trip(&dest, &env);
}

#[test]
fn object_store_local_filesystem_round_trip_and_corruption() {
    let env = Env::new();
    let root = env.path("bucket");
    let dest = ObjectStoreDestination::local_filesystem(&root).unwrap();
    object_store_round_trip(&dest, &env);
    // Damage one object behind the store's back: list reports it, prune does not keep it.
    let listed = backups::list_backups(&dest, &key()).unwrap();
    corrupt_middle(&root.join(&listed[0].name));
    let again = backups::list_backups(&dest, &key()).unwrap();
    assert!(!again[0].verified && again[0].error.is_some());
    assert!(again[1].verified);
    let p = backups::prune_backups(&dest, &key(), 1).unwrap();
    assert_eq!(p.kept, vec![again[1].name.clone()]);
    assert!(p.deleted.is_empty());
}

#[test]
fn object_store_under_a_prefix_sees_only_its_own_objects() {
    let env = Env::new();
    let mem: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let a = ObjectStoreDestination::new(mem.clone(), "phone/backups", "a").unwrap();
    let b = ObjectStoreDestination::new(mem, "laptop", "b").unwrap();
    let f = env.path("f");
    std::fs::write(&f, b"x").unwrap();
    a.put("ferry-backup-1.ferry", &f).unwrap();
    b.put("ferry-backup-2.ferry", &f).unwrap();
    assert_eq!(a.list().unwrap().len(), 1);
    assert_eq!(a.list().unwrap()[0].name, "ferry-backup-1.ferry");
    assert_eq!(b.list().unwrap()[0].name, "ferry-backup-2.ferry");
}

#[test]
fn passphrase_backups_through_the_manager() {
    let env = Env::new();
    let store = env.store("s", 12);
    let dest = ObjectStoreDestination::in_memory().unwrap();
    let pass = ArchiveKey::passphrase("tr\u{e8}s secret");
    let r = backups::run_backup_now(&store, utc(2025, 5, 5, 5, 5), &pass, &dest).unwrap();
    let name = made(&r).name.clone();
    let fetched = dest.fetch(&name).unwrap();
    assert_eq!(
        archive_key_kind(fetched.path()).unwrap().key_kind,
        "passphrase"
    );
    // The same passphrase typed with a combining accent lists it as verified.
    let decomposed = ArchiveKey::passphrase("tre\u{300}s secret");
    let listed = backups::list_backups(&dest, &decomposed).unwrap();
    assert!(listed[0].verified, "{:?}", listed[0].error);
    let listed = backups::list_backups(&dest, &ArchiveKey::passphrase("tres secret")).unwrap();
    assert!(!listed[0].verified);
    assert!(listed[0]
        .error
        .as_deref()
        .unwrap()
        .contains("different passphrase"));
}

#[test]
fn destination_spec_opens_a_folder() {
    let env = Env::new();
    let spec = DestinationSpec::Folder {
        path: env.path("via-spec"),
    };
    let dest = spec.open().unwrap();
    let store = env.store("s", 1);
    backups::run_backup_now(&store, 1, &key(), &dest).unwrap();
    assert_eq!(std::fs::read_dir(env.path("via-spec")).unwrap().count(), 1);
    assert!(dest.describe().contains("via-spec"));
}
