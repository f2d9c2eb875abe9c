//! Backup policies: validated and stored in the settings, scheduled runs and the status they
//! report with an injected clock, the activity trigger, and manual runs without a policy.

mod backup_common;

use ferry_sdk::archive::ArchiveElement;
use ferry_sdk::backup_manager::{self, DestinationSpec, Frequency, Policy, Reason, Weekday};

use backup_common::{conversation, daily, key, made, message, utc, Env, HOUR};

#[test]
fn policies_are_validated_and_stored_as_json_in_settings() {
    let env = Env::new();
    let store = env.store("s", 0);
    assert!(backup_manager::policy(&store).unwrap().is_none());
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
        let err = backup_manager::set_policy(&store, &bad, 0).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid backup policy"),
            "{err}"
        );
    }
    let p = Policy {
        exclude_disappearing_messages: false,
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
    backup_manager::set_policy(&store, &p, 5).unwrap();
    assert_eq!(backup_manager::policy(&store).unwrap(), Some(p));
    let raw = store
        .setting(backup_manager::POLICY_SETTING)
        .unwrap()
        .unwrap();
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
    backup_manager::set_policy(&store, &daily(3, "Europe/Berlin"), set_at).unwrap();

    // Nothing due until the first slot after the policy was set.
    let r = backup_manager::run_due_backups(&store, utc(2025, 3, 8, 1, 59), &key(), &dest).unwrap();
    assert!(r.made.is_none() && r.reason.is_none());
    let s = backup_manager::backup_status(&store, utc(2025, 3, 8, 1, 59)).unwrap();
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 8, 2, 0)));
    assert!(!s.due && !s.overdue);
    assert_eq!(s.last_backup_ns, None);

    // At the slot it is due, and the label carries the local date.
    let r = backup_manager::run_due_backups(&store, utc(2025, 3, 8, 2, 0), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Schedule));
    let first = made(&r).clone();
    assert_eq!(first.at_ns, utc(2025, 3, 8, 2, 0));
    assert_eq!(first.label, "Ferry backup 2025-03-08");
    assert_eq!(first.message_count, 10);
    assert!(first.name.starts_with("ferry-backup-") && first.name.ends_with(".ferry"));

    // Later the same day: not due again.
    let r = backup_manager::run_due_backups(&store, utc(2025, 3, 8, 23, 0), &key(), &dest).unwrap();
    assert!(r.made.is_none());
    let s = backup_manager::backup_status(&store, utc(2025, 3, 8, 23, 0)).unwrap();
    assert_eq!(s.last_backup_ns, Some(utc(2025, 3, 8, 2, 0)));
    assert_eq!(s.last_backup_name.as_deref(), Some(first.name.as_str()));
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 9, 2, 0)));
    assert!(!s.due && !s.overdue);

    // The app was closed for two days: due, and overdue once a day past the missed slot.
    let s = backup_manager::backup_status(&store, utc(2025, 3, 9, 12, 0)).unwrap();
    assert!(s.due && !s.overdue);
    let s = backup_manager::backup_status(&store, utc(2025, 3, 10, 2, 0)).unwrap();
    assert!(s.due && s.overdue);
    // One backup catches up (not one per missed day).
    let r = backup_manager::run_due_backups(&store, utc(2025, 3, 10, 9, 0), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Schedule));
    let r = backup_manager::run_due_backups(&store, utc(2025, 3, 10, 9, 1), &key(), &dest).unwrap();
    assert!(r.made.is_none());
    let s = backup_manager::backup_status(&store, utc(2025, 3, 10, 9, 1)).unwrap();
    assert!(!s.due && !s.overdue);
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 11, 2, 0)));

    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|b| b.verified));
    assert_eq!(listed[1].label, "Ferry backup 2025-03-08");
    assert_eq!(listed[0].label, "Ferry backup 2025-03-10");
    let j = backup_manager::journal(&store).unwrap();
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
    backup_manager::set_policy(&store, &weekly, utc(2025, 3, 3, 12, 0)).unwrap();
    for day in 3..9 {
        let r = backup_manager::run_due_backups(&store, utc(2025, 3, day, 23, 0), &key(), &dest)
            .unwrap();
        assert!(r.made.is_none(), "not due on March {day}");
    }
    assert!(
        backup_manager::run_due_backups(&store, utc(2025, 3, 9, 7, 59), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    let r = backup_manager::run_due_backups(&store, utc(2025, 3, 9, 8, 0), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Schedule));
    assert!(
        backup_manager::run_due_backups(&store, utc(2025, 3, 15, 8, 0), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    let s = backup_manager::backup_status(&store, utc(2025, 3, 15, 8, 0)).unwrap();
    assert_eq!(s.next_due_ns, Some(utc(2025, 3, 16, 8, 0)));

    let monthly = Policy {
        frequency: Frequency::Monthly { day: 31, hour: 3 },
        ..Policy::default()
    };
    // The policy changes; the last backup (March 9th) stays the starting point.
    backup_manager::set_policy(&store, &monthly, utc(2025, 3, 20, 0, 0)).unwrap();
    assert!(
        backup_manager::run_due_backups(&store, utc(2025, 3, 31, 2, 59), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    assert!(
        backup_manager::run_due_backups(&store, utc(2025, 3, 31, 3, 0), &key(), &dest)
            .unwrap()
            .made
            .is_some()
    );
    let s = backup_manager::backup_status(&store, utc(2025, 4, 1, 0, 0)).unwrap();
    assert_eq!(s.next_due_ns, Some(utc(2025, 4, 30, 3, 0)));
    assert!(
        backup_manager::run_due_backups(&store, utc(2025, 4, 29, 0, 0), &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    assert!(
        backup_manager::run_due_backups(&store, utc(2025, 4, 30, 3, 0), &key(), &dest)
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
    backup_manager::set_policy(&store, &p, t0).unwrap();
    // Never backed up: all 4 messages count.
    assert_eq!(
        backup_manager::new_messages_since(&store, None, u64::MAX).unwrap(),
        4
    );
    let r = backup_manager::run_due_backups(&store, t0, &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Activity));
    assert_eq!(made(&r).message_count, 4);

    // Two new messages (sent after the backup): not yet.
    store.insert_conversation(&conversation(2)).unwrap();
    store.insert_message(&message(100, 2, t0 + 1)).unwrap();
    store.insert_message(&message(101, 1, t0 + 2)).unwrap();
    let s = backup_manager::backup_status(&store, t0 + HOUR).unwrap();
    assert_eq!(s.new_messages, 2);
    assert!(!s.due && s.next_due_ns.is_none() && !s.overdue);
    assert!(
        backup_manager::run_due_backups(&store, t0 + HOUR, &key(), &dest)
            .unwrap()
            .made
            .is_none()
    );
    // An old message arriving late does not count as new activity.
    store.insert_message(&message(102, 2, 5)).unwrap();
    assert!(
        !backup_manager::backup_status(&store, t0 + HOUR)
            .unwrap()
            .due
    );
    // The third new one triggers a backup, which holds all 8 messages.
    store.insert_message(&message(103, 2, t0 + 3)).unwrap();
    let s = backup_manager::backup_status(&store, t0 + HOUR).unwrap();
    assert_eq!((s.new_messages, s.due_reason), (3, Some(Reason::Activity)));
    let r = backup_manager::run_due_backups(&store, t0 + HOUR, &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Activity));
    assert_eq!(made(&r).message_count, 8);
    // The counter starts again from this backup.
    let s = backup_manager::backup_status(&store, t0 + 2 * HOUR).unwrap();
    assert_eq!((s.new_messages, s.due), (0, false));
}

#[test]
fn no_policy_means_no_scheduled_run_but_manual_works() {
    let env = Env::new();
    let store = env.store("s", 1);
    let dest = env.folder();
    let err = backup_manager::run_due_backups(&store, 0, &key(), &dest).unwrap_err();
    assert!(matches!(err, backup_manager::Error::NoPolicy), "{err:?}");
    let s = backup_manager::backup_status(&store, 0).unwrap();
    assert!(s.policy.is_none() && !s.due && !s.overdue && s.next_due_ns.is_none());
    let r = backup_manager::run_backup_now(&store, utc(2025, 1, 2, 3, 4), &key(), &dest).unwrap();
    assert_eq!(r.reason, Some(Reason::Manual));
    assert_eq!(made(&r).label, "Ferry backup 2025-01-02");
    assert_eq!(
        backup_manager::backup_status(&store, 0)
            .unwrap()
            .last_backup_ns,
        Some(utc(2025, 1, 2, 3, 4))
    );
}
