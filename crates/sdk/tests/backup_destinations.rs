//! Backup destinations: failed and damaged uploads, the local folder, object_store in memory, on
//! the local file system and under a prefix, and a destination opened from its spec.

mod backup_common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_sdk::archive::{self, Control};
use ferry_sdk::backup_manager::{
    self, Destination, DestinationSpec, Entry, LocalFolder, ObjectStoreDestination, Policy, Reason,
};

use backup_common::{corrupt_middle, daily, key, made, utc, Env};

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
    fn put(&self, name: &str, from: &Path) -> backup_manager::Result<()> {
        if self.fail_put {
            return Err(backup_manager::Error::Destination {
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
    fn get(&self, name: &str, to: &Path) -> backup_manager::Result<()> {
        self.inner.get(name, to)
    }
    fn list(&self) -> backup_manager::Result<Vec<Entry>> {
        self.inner.list()
    }
    fn delete(&self, name: &str) -> backup_manager::Result<()> {
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
    backup_manager::set_policy(&store, &daily(3, "UTC"), 0).unwrap();
    let failing = Faulty {
        inner: LocalFolder::new(env.path("f")),
        fail_put: true,
        damage_put: Arc::new(AtomicBool::new(false)),
    };
    let now = utc(2025, 1, 1, 4, 0);
    let err = backup_manager::run_due_backups(&store, now, &key(), &failing).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    let s = backup_manager::backup_status(&store, now).unwrap();
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
    let err = backup_manager::run_due_backups(&store, now, &key(), &damaging).unwrap_err();
    assert!(
        matches!(err, backup_manager::Error::NotVerified { .. }),
        "{err:?}"
    );
    assert!(backup_manager::backup_status(&store, now).unwrap().due);
    // Once uploads are good again, the next run succeeds and clears the error.
    damaging.damage_put.store(false, Ordering::Relaxed);
    let r = backup_manager::run_due_backups(&store, now, &key(), &damaging).unwrap();
    assert!(r.made.is_some());
    let s = backup_manager::backup_status(&store, now).unwrap();
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
            Err(backup_manager::Error::InvalidName(_))
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
    backup_manager::set_policy(
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
        let r =
            backup_manager::run_due_backups(&store, utc(2025, 1, day, 3, 0), &key(), dest).unwrap();
        assert_eq!(r.reason, Some(Reason::Schedule));
        names.push(made(&r).name.clone());
    }
    let listed = backup_manager::list_backups(dest, &key()).unwrap();
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
        archive::import_archive(&mut restored, fetched.path(), &key(), &Control::new()).unwrap();
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
    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
    corrupt_middle(&root.join(&listed[0].name));
    let again = backup_manager::list_backups(&dest, &key()).unwrap();
    assert!(!again[0].verified && again[0].error.is_some());
    assert!(again[1].verified);
    let p = backup_manager::prune_backups(&dest, &key(), 1).unwrap();
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
fn destination_spec_opens_a_folder() {
    let env = Env::new();
    let spec = DestinationSpec::Folder {
        path: env.path("via-spec"),
    };
    let dest = spec.open().unwrap();
    let store = env.store("s", 1);
    backup_manager::run_backup_now(&store, 1, &key(), &dest).unwrap();
    assert_eq!(std::fs::read_dir(env.path("via-spec")).unwrap().count(), 1);
    assert!(dest.describe().contains("via-spec"));
}
