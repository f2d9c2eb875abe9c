//! Backups listed before a key is given (issue 19, part 5): `list_locked_backups` reads only each
//! archive's plaintext header (name, size, time, format version, key kind), marks entries
//! `locked`, and lists a damaged file as damaged instead of failing; `list_backups` with a key
//! verifies as before and now also says the format and key kind.

use std::path::PathBuf;

use ferry_archive::{Argon2Params, WriterOptions};
use ferry_sdk::archive::{self, ArchiveFormat, ArchiveOptions, Control, Origin};
use ferry_sdk::backup_manager::{
    self, Destination, DestinationSpec, ListedBackup, ObjectStoreDestination, Policy,
};
use ferry_sdk::dev::{seed, SeedOptions};
use ferry_sdk::store::Store;
use ferry_sdk::ArchiveKey;

const XMTP_VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/xmtp/archive-legacy.xmtp"
);

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[5u8; 32]).unwrap()
}

fn now_ns() -> i64 {
    ferry_sdk::now_ns()
}

const MINUTE: i64 = 60 * 1_000_000_000;

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
    fn store(&self) -> Store {
        let mut s = Store::open(self.path("phone.db")).unwrap();
        seed(
            &mut s,
            &SeedOptions {
                conversations: 2,
                messages: 40,
                consent: 2,
                ..Default::default()
            },
        )
        .unwrap();
        s
    }
    /// A passphrase archive of `store` (cheap Argon2id parameters, so the test is quick).
    fn passphrase_archive(&self, store: &Store) -> PathBuf {
        let path = self.path("pass.ferry");
        archive::create_archive_with(
            store,
            &path,
            &ArchiveKey::passphrase("open sesame"),
            &ArchiveOptions::default(),
            &Origin::default(),
            &Control::new(),
            &WriterOptions {
                kdf: Argon2Params {
                    m_cost_kib: 64,
                    t_cost: 1,
                    p_cost: 1,
                },
                ..Default::default()
            },
        )
        .unwrap();
        path
    }
}

/// Fills `dest` with: two raw-key backups made by the manager, a passphrase backup, a libxmtp
/// archive, four damaged files (garbage, a few bytes, a flipped header byte, empty) and a file
/// that is not a backup. Returns the manager's two names, newest first.
fn fill(env: &Env, store: &Store, dest: &dyn Destination) -> [String; 2] {
    let first = backup_manager::run_backup_now(store, now_ns(), &key(), dest).unwrap();
    let second = backup_manager::run_backup_now(store, now_ns(), &key(), dest).unwrap();
    let name = |r: &backup_manager::RunReport| r.made.as_ref().unwrap().name.clone();
    dest.put("ferry-backup-9.ferry", &env.passphrase_archive(store))
        .unwrap();
    let local = |n: &str, bytes: &[u8]| {
        let p = env.path(n);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A fresh copy (a local folder hard-links what it is given, keeping its file time).
    let xmtp = local("xmtp", &std::fs::read(XMTP_VECTOR).unwrap());
    dest.put("ferry-backup-8.ferry", &xmtp).unwrap();
    dest.put("ferry-backup-1.ferry", &local("garbage", &[0x42; 300]))
        .unwrap();
    dest.put("ferry-backup-2.ferry", &local("short", b"\x89FERRY"))
        .unwrap();
    let mut flipped = std::fs::read(env.passphrase_archive(store)).unwrap();
    flipped[20] ^= 1;
    dest.put("ferry-backup-3.ferry", &local("flipped", &flipped))
        .unwrap();
    dest.put("ferry-backup-4.ferry", &local("empty", b""))
        .unwrap();
    dest.put("notes.txt", &local("notes", b"not a backup"))
        .unwrap();
    [name(&second), name(&first)]
}

fn by_name<'a>(list: &'a [ListedBackup], name: &str) -> &'a ListedBackup {
    list.iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("{name} listed"))
}

/// What a locked listing must say about the destination [`fill`] made.
fn check_locked(list: &[ListedBackup], made: &[String; 2], sizes: impl Fn(&str) -> u64) {
    let t0 = now_ns();
    assert_eq!(list.len(), 8, "{list:#?}");
    // Newest first by name; the manager's names carry their creation times.
    let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);
    for b in list {
        assert!(b.locked && !b.verified, "{b:?}");
        assert_eq!(b.size_bytes, sizes(&b.name), "{}", b.name);
        let t = b.modified_ns.expect("a time");
        assert!(t > t0 - 10 * MINUTE && t <= t0 + MINUTE, "{}: {t}", b.name);
        // Nothing behind the header was read.
        assert_eq!((b.created_at_ns, b.label.as_str()), (None, ""));
        assert!(b.elements.is_empty() && b.message_count.is_none());
    }
    for name in made {
        let b = by_name(list, name);
        assert_eq!(b.format, Some(ArchiveFormat::Ferry));
        assert_eq!(b.format_version.as_deref(), Some("1.0"));
        assert_eq!(b.key_kind, Some("key"));
        assert_eq!(b.error, None);
    }
    let p = by_name(list, "ferry-backup-9.ferry");
    assert_eq!((p.key_kind, p.error.as_deref()), (Some("passphrase"), None));
    let x = by_name(list, "ferry-backup-8.ferry");
    assert_eq!(x.format, Some(ArchiveFormat::Xmtp));
    assert_eq!(x.format_version.as_deref(), Some("0"));
    assert_eq!(x.key_kind, Some("key"));
    for damaged in 1..=4 {
        let b = by_name(list, &format!("ferry-backup-{damaged}.ferry"));
        assert!(b.error.is_some(), "{b:?}");
        assert_eq!((b.format, b.key_kind), (None, None));
    }
    assert!(by_name(list, "ferry-backup-3.ferry")
        .error
        .as_deref()
        .unwrap()
        .contains("header"));
}

#[test]
fn locked_list_of_a_policy_destination_then_verified_with_the_key() {
    let env = Env::new();
    let store = env.store();
    let dir = env.path("backups");
    backup_manager::set_policy(
        &store,
        &Policy {
            destination: Some(DestinationSpec::Folder { path: dir.clone() }),
            ..Policy::default()
        },
        now_ns(),
    )
    .unwrap();
    let dest = backup_manager::policy(&store)
        .unwrap()
        .unwrap()
        .destination
        .unwrap()
        .open()
        .unwrap();
    let made = fill(&env, &store, &dest);

    let locked = backup_manager::list_locked_backups(&dest).unwrap();
    check_locked(&locked, &made, |n| {
        std::fs::metadata(dir.join(n)).unwrap().len()
    });
    // Its JSON keeps the fields of a verified listing and adds the locked ones.
    let j = serde_json::to_value(by_name(&locked, "ferry-backup-9.ferry")).unwrap();
    for field in [
        "name",
        "label",
        "created_at_ns",
        "start_ns",
        "end_ns",
        "elements",
        "size_bytes",
        "verified",
        "error",
        "locked",
        "modified_ns",
        "format",
        "format_version",
        "key_kind",
    ] {
        assert!(j.get(field).is_some(), "{field} missing in {j}");
    }
    assert_eq!(j["locked"], true);
    assert_eq!(j["key_kind"], "passphrase");
    assert_eq!(j["format"], "ferry");

    // With the key: verified as before, and the header's facts too.
    let listed = backup_manager::list_backups(&dest, &key()).unwrap();
    assert_eq!(listed.len(), 8);
    assert!(listed.iter().all(|b| !b.locked));
    for name in &made {
        let b = by_name(&listed, name);
        assert!(b.verified && b.error.is_none(), "{b:?}");
        assert_eq!(b.message_count, Some(40));
        assert_eq!(b.key_kind, Some("key"));
        assert_eq!(b.format_version.as_deref(), Some("1.0"));
        assert!(b.modified_ns.is_some());
    }
    assert_eq!(listed[0].name, made[0], "verified ones first, newest first");
    // The passphrase archive does not open with the raw key, but says what it needs.
    let p = by_name(&listed, "ferry-backup-9.ferry");
    assert!(!p.verified && p.error.is_some());
    assert_eq!(p.key_kind, Some("passphrase"));
    assert!(!by_name(&listed, "ferry-backup-1.ferry").verified);
}

#[test]
fn locked_list_of_object_storage_reads_only_the_headers() {
    let env = Env::new();
    let store = env.store();
    let root = env.path("bucket");
    std::fs::create_dir_all(&root).unwrap();
    let dest = ObjectStoreDestination::local_filesystem(&root).unwrap();
    let made = fill(&env, &store, &dest);
    let locked = backup_manager::list_locked_backups(&dest).unwrap();
    check_locked(&locked, &made, |n| {
        std::fs::metadata(root.join(n)).unwrap().len()
    });

    let mem = ObjectStoreDestination::in_memory().unwrap();
    let made = fill(&env, &store, &mem);
    let sizes: std::collections::HashMap<String, u64> = mem
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    let locked = backup_manager::list_locked_backups(&mem).unwrap();
    check_locked(&locked, &made, |n| sizes[n]);
    // The prefix read is a prefix.
    let whole = std::fs::read(XMTP_VECTOR).unwrap();
    assert_eq!(
        mem.read_prefix("ferry-backup-8.ferry", 18).unwrap(),
        whole[..18]
    );
    assert!(mem
        .read_prefix("ferry-backup-4.ferry", 112)
        .unwrap()
        .is_empty());
}

#[test]
fn an_empty_or_missing_destination_lists_nothing() {
    let env = Env::new();
    let missing = backup_manager::LocalFolder::new(env.path("nowhere"));
    assert!(backup_manager::list_locked_backups(&missing)
        .unwrap()
        .is_empty());
    assert!(!env.path("nowhere").exists(), "listing creates no folder");
}
