//! Backup retention: the oldest backups pruned first, damaged and unreadable archives listed as
//! such and never deleted or kept in place of a good one, and the prune plan's rules.

mod backup_common;

use ferry_sdk::backup_manager::{self, plan_prune, ListedBackup, Policy};
use ferry_sdk::ArchiveKey;

use backup_common::{corrupt_middle, key, made, utc, Env};

#[test]
fn retention_drops_the_oldest_first() {
    let env = Env::new();
    let store = env.store("s", 5);
    let dest = env.folder();
    backup_manager::set_policy(
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
        let r = backup_manager::run_backup_now(&store, utc(2025, 1, 1 + i, 3, 0), &key(), &dest)
            .unwrap();
        names.push(made(&r).name.clone());
        let p = r.prune.clone().expect("pruned");
        assert!(p.kept.len() <= 3);
        assert_eq!(p.kept[0], made(&r).name, "the new backup is kept");
        deleted.extend(p.deleted);
    }
    // Each run past the third deleted exactly the oldest one left.
    assert_eq!(deleted, names[..3].to_vec());
    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
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
        backup_manager::run_backup_now(&store, utc(2025, 2, day, 3, 0), &key(), &dest)
            .unwrap()
            .made
            .unwrap()
            .name
    };
    backup_manager::set_policy(
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

    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
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
    let p = backup_manager::prune_backups(&dest, &key(), 1).unwrap();
    assert_eq!(p.kept, vec![b.clone()]);
    assert!(p.deleted.is_empty(), "{p:?}");
    assert_eq!(p.not_verified.len(), 1);
    assert_eq!(p.not_verified[0].name, c);
    assert!(!p.not_verified[0].deleted);
    assert!(dest.dir().join(&b).exists() && dest.dir().join(&c).exists());

    // Retention 2 with one good archive and one damaged one: the damaged one is not counted,
    // so nothing is pruned.
    let p = backup_manager::prune_backups(&dest, &key(), 2).unwrap();
    assert_eq!(p.kept, vec![b.clone()]);
    assert!(p.deleted.is_empty());

    // Two newer good backups: now retention (2) is met by d and e, and b and the damaged c are
    // older than both, so they go, oldest first.
    let d = run(4);
    let e = run(5);
    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
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
    let old = made(
        &backup_manager::run_backup_now(&store, utc(2025, 1, 1, 0, 0), &other, &dest).unwrap(),
    )
    .name
    .clone();
    // And one whose header is destroyed.
    let wrecked = "ferry-backup-1000.ferry";
    std::fs::write(dest.dir().join(wrecked), b"\x89FERRY\r\n garbage").unwrap();
    // Objects that are not backups are ignored entirely.
    std::fs::write(dest.dir().join("notes.txt"), b"mine").unwrap();

    for day in 2..6 {
        backup_manager::run_backup_now(&store, utc(2025, 1, day, 0, 0), &key(), &dest).unwrap();
    }
    let p = backup_manager::prune_backups(&dest, &key(), 1).unwrap();
    assert_eq!(p.kept.len(), 1);
    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
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
