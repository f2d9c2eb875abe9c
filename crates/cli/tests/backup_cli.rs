//! The `ferry backup ...` commands and passphrase archives, driven through the binary.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ferry(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("FERRY_HOME")
        .output()
        .expect("run ferry")
}

fn ok_json(home: &Path, args: &[&str]) -> Value {
    let out = ferry(home, args);
    assert!(
        out.status.success(),
        "ferry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ferry {args:?}: stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a command that must fail; returns its one stderr line.
fn err_line(home: &Path, args: &[&str]) -> String {
    let out = ferry(home, args);
    assert!(!out.status.success(), "ferry {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line on stderr, got: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    err
}

struct T {
    dir: tempfile::TempDir,
}

impl T {
    fn new() -> Self {
        T {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A home with a seeded store.
    fn seeded(&self, name: &str, messages: u64) -> PathBuf {
        let home = self.path(name);
        let n = messages.to_string();
        ok_json(
            &home,
            &[
                "dev",
                "seed",
                "--conversations",
                "4",
                "--messages",
                &n,
                "--consent",
                "3",
                "--json",
            ],
        );
        home
    }
    fn keyfile(&self, name: &str) -> String {
        let p = self.p(name);
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["keygen", &p])
            .output()
            .unwrap();
        assert!(out.status.success());
        p
    }
    fn passfile(&self, name: &str, pass: &str) -> String {
        let p = self.p(name);
        std::fs::write(&p, format!("{pass}\n")).unwrap();
        p
    }
}

fn corrupt_middle(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[0x5A; 16]).unwrap();
}

const DAY: i64 = 24 * 3600 * 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

// ---- passphrase archives ----------------------------------------------------------------------

#[test]
fn passphrase_archive_create_inspect_verify_import_and_wrong_passphrase() {
    let t = T::new();
    let a = t.seeded("a", 300);
    let pass = t.passfile("pass.txt", "correct horse battery staple");
    let out = t.p("p.ferry");
    let meta = ok_json(
        &a,
        &[
            "archive",
            "create",
            &out,
            "--passphrase-file",
            &pass,
            "--label",
            "before the move",
            "--json",
        ],
    );
    assert_eq!(meta["key_kind"], "passphrase");
    assert_eq!(meta["label"], "before the move");
    assert_eq!(meta["message_count"], 300);

    // Without a key: only the format and the kind of key it needs.
    let b = t.path("b");
    let kind = ok_json(&b, &["archive", "inspect", &out, "--json"]);
    let keys: Vec<&String> = kind.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{kind}");
    assert_eq!(kind["format"], "ferry");
    assert_eq!(kind["format_version"], "1.0");
    assert_eq!(kind["key_kind"], "passphrase");

    // With the passphrase: the full metadata, label included.
    let full = ok_json(
        &b,
        &[
            "archive",
            "inspect",
            &out,
            "--passphrase-file",
            &pass,
            "--json",
        ],
    );
    assert_eq!(full["label"], "before the move");
    assert_eq!(full["message_count"], 300);

    let v = ok_json(
        &b,
        &[
            "archive",
            "verify",
            &out,
            "--passphrase-file",
            &pass,
            "--json",
        ],
    );
    assert_eq!(v["intact"], true);
    assert_eq!(v["messages"], 300);

    // A wrong passphrase is named as such, and imports nothing.
    let wrong = t.passfile("wrong.txt", "correct horse battery stapler");
    let err = err_line(
        &b,
        &[
            "archive",
            "import",
            &out,
            "--passphrase-file",
            &wrong,
            "--json",
        ],
    );
    assert_eq!(
        err,
        "error: wrong key: this archive was sealed with a different passphrase"
    );
    let msgs = ok_json(&b, &["messages", "list", "--json"]);
    assert_eq!(msgs.as_array().unwrap().len(), 0);
    // A key file on a passphrase archive says what it needs.
    let k = t.keyfile("k");
    let err = err_line(&b, &["archive", "import", &out, "--key-file", &k]);
    assert!(err.contains("sealed with a passphrase"), "{err}");

    let imported = ok_json(
        &b,
        &[
            "archive",
            "import",
            &out,
            "--passphrase-file",
            &pass,
            "--json",
        ],
    );
    assert_eq!(imported["messages_imported"], 300);
}

#[test]
fn inspect_without_a_key_on_a_raw_key_archive_and_on_garbage() {
    let t = T::new();
    let a = t.seeded("a", 10);
    let k = t.keyfile("k");
    let out = t.p("k.ferry");
    ok_json(&a, &["archive", "create", &out, "--key-file", &k, "--json"]);
    let kind = ok_json(&a, &["archive", "inspect", &out, "--json"]);
    assert_eq!(kind["key_kind"], "key");
    assert!(kind.get("created_at_ns").is_none());
    // Text output too.
    let o = ferry(&a, &["archive", "inspect", &out]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("key kind:      key"));

    std::fs::write(t.path("junk"), b"definitely not an archive").unwrap();
    let err = err_line(&a, &["archive", "inspect", &t.p("junk"), "--json"]);
    assert!(err.contains("not a Ferry archive"), "{err}");
}

// ---- the backup manager --------------------------------------------------------------------

#[test]
fn policy_set_show_and_validation() {
    let t = T::new();
    let home = t.seeded("h", 5);
    let k = t.keyfile("k");
    let dest = t.p("dest");
    let p = ok_json(
        &home,
        &[
            "backup",
            "policy",
            "set",
            "--frequency",
            "weekly",
            "--weekday",
            "tue",
            "--hour",
            "4",
            "--every-messages",
            "1000",
            "--retention",
            "7",
            "--label",
            "Weekly {date}",
            "--elements",
            "messages",
            "--time-zone",
            "Europe/Paris",
            "--destination",
            &dest,
            "--key-file",
            &k,
            "--json",
        ],
    );
    assert_eq!(p["frequency"]["every"], "weekly");
    assert_eq!(p["frequency"]["weekday"], "tue");
    assert_eq!(p["frequency"]["hour"], 4);
    assert_eq!(p["activity_every"], 1000);
    assert_eq!(p["retention"], 7);
    assert_eq!(p["elements"], serde_json::json!(["messages"]));
    assert_eq!(p["time_zone"], "Europe/Paris");
    assert_eq!(p["destination"]["path"], dest);
    // The key file's path is stored, not the key.
    assert_eq!(p["key_source"]["kind"], "key_file");
    assert_eq!(p["key_source"]["path"], k);
    let key_bytes = std::fs::read(&k).unwrap();
    let db = std::fs::read(home.join("ferry.db")).unwrap();
    assert!(!db.windows(32).any(|w| w == &key_bytes[..]));

    let shown = ok_json(&home, &["backup", "policy", "show", "--json"]);
    assert_eq!(shown, p);

    // Defaults: daily at 03:00, retention 5, HOME/backups.
    let d = ok_json(
        &home,
        &[
            "backup",
            "policy",
            "set",
            "--frequency",
            "daily",
            "--key-file",
            &k,
            "--json",
        ],
    );
    assert_eq!(
        d["frequency"],
        serde_json::json!({"every": "daily", "hour": 3})
    );
    assert_eq!(d["retention"], 5);
    assert_eq!(
        d["destination"]["path"],
        home.join("backups").to_string_lossy().as_ref()
    );

    for (args, needle) in [
        (
            vec!["--frequency", "daily", "--weekday", "mon"],
            "--weekday applies to --frequency weekly only",
        ),
        (vec!["--frequency", "hourly"], "unknown frequency"),
        (
            vec!["--frequency", "daily", "--hour", "24"],
            "hour must be 0..23",
        ),
        (
            vec!["--frequency", "monthly", "--day", "32"],
            "day of the month must be 1..31",
        ),
        (
            vec!["--frequency", "daily", "--time-zone", "Europe/Atlantis"],
            "unknown time zone",
        ),
        (
            vec!["--frequency", "weekly", "--weekday", "funday"],
            "unknown weekday",
        ),
        (
            vec!["--frequency", "daily", "--retention", "0"],
            "at least 1",
        ),
    ] {
        let mut full = vec!["backup", "policy", "set", "--key-file", k.as_str()];
        full.extend(args);
        let err = err_line(&home, &full);
        assert!(err.contains(needle), "{full:?}: {err}");
    }
    // A key is required, and must be readable.
    let err = err_line(&home, &["backup", "policy", "set", "--frequency", "daily"]);
    assert!(err.contains("--key-file or --passphrase-file"), "{err}");
    let err = err_line(
        &home,
        &[
            "backup",
            "policy",
            "set",
            "--frequency",
            "daily",
            "--key-file",
            &t.p("missing-key"),
        ],
    );
    assert!(err.contains("missing-key"), "{err}");
    // The failed attempts left the last good policy in place.
    let shown = ok_json(&home, &["backup", "policy", "show", "--json"]);
    assert_eq!(shown, d);
}

#[test]
fn run_list_status_with_retention_and_a_corrupted_archive() {
    let t = T::new();
    let home = t.seeded("h", 2000);
    let k = t.keyfile("k");
    let dest = t.path("dest");
    let dest_s = dest.to_string_lossy().into_owned();

    let err = err_line(&home, &["backup", "run", "--json"]);
    assert!(err.contains("no backup policy is set"), "{err}");

    ok_json(
        &home,
        &[
            "backup",
            "policy",
            "set",
            "--frequency",
            "daily",
            "--hour",
            "3",
            "--retention",
            "2",
            "--label",
            "Nightly {date}",
            "--destination",
            &dest_s,
            "--key-file",
            &k,
            "--json",
        ],
    );
    let status = ok_json(&home, &["backup", "status", "--json"]);
    assert_eq!(status["last_backup_ns"], Value::Null);
    assert_eq!(status["overdue"], false);
    assert!(status["next_due_ns"].as_i64().unwrap() > now_ns() - DAY);

    // Two days later (injected clock) a scheduled backup is due and made.
    let later = (now_ns() + 2 * DAY).to_string();
    let s = ok_json(&home, &["backup", "status", "--clock-ns", &later, "--json"]);
    assert_eq!(s["due"], true);
    assert_eq!(s["due_reason"], "schedule");
    assert_eq!(s["overdue"], true);
    let r = ok_json(&home, &["backup", "run", "--clock-ns", &later, "--json"]);
    assert_eq!(r["reason"], "schedule");
    let first = r["made"]["name"].as_str().unwrap().to_string();
    assert!(first.starts_with("ferry-backup-"));
    assert!(r["made"]["label"]
        .as_str()
        .unwrap()
        .starts_with("Nightly 20"));
    assert_eq!(r["made"]["message_count"], 2000);
    // Not due again at the same time.
    let r = ok_json(&home, &["backup", "run", "--clock-ns", &later, "--json"]);
    assert_eq!(r["made"], Value::Null);
    assert_eq!(r["reason"], Value::Null);
    let s = ok_json(&home, &["backup", "status", "--clock-ns", &later, "--json"]);
    assert_eq!(s["due"], false);
    assert_eq!(s["overdue"], false);
    assert_eq!(s["last_backup_name"], first.as_str());

    // --now forces more; retention 2 drops the oldest.
    let second = ok_json(&home, &["backup", "run", "--now", "--json"])["made"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ok_json(&home, &["backup", "run", "--now", "--json"]);
    let third = r["made"]["name"].as_str().unwrap().to_string();
    assert_eq!(r["reason"], "manual");
    assert_eq!(r["prune"]["deleted"], serde_json::json!([first]));
    assert_eq!(r["prune"]["kept"], serde_json::json!([third, second]));

    let list = ok_json(&home, &["backup", "list", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for b in list {
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
        ] {
            assert!(b.get(field).is_some(), "{field} missing in {b}");
        }
        assert_eq!(b["verified"], true);
        assert_eq!(b["error"], Value::Null);
        assert!(b["label"].as_str().unwrap().starts_with("Nightly "));
        assert_eq!(b["elements"], serde_json::json!(["messages", "consent"]));
        assert_eq!(
            b["size_bytes"].as_u64().unwrap(),
            std::fs::metadata(dest.join(b["name"].as_str().unwrap()))
                .unwrap()
                .len()
        );
    }
    assert_eq!(list[0]["name"], third.as_str());

    // Damage the newest in the destination: list says so; it is not counted as kept.
    corrupt_middle(&dest.join(&third));
    let list = ok_json(&home, &["backup", "list", "--json"]);
    let bad = &list.as_array().unwrap()[0];
    assert_eq!(bad["name"], third.as_str());
    assert_eq!(bad["verified"], false);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("failed authentication"),
        "{bad}"
    );
    let r = ok_json(&home, &["backup", "run", "--now", "--json"]);
    let fourth = r["made"]["name"].as_str().unwrap().to_string();
    // Kept: the new one and `second` (the damaged `third` is not counted); nothing older than
    // `second` exists, so nothing is deleted; `third` is reported.
    assert_eq!(r["prune"]["kept"], serde_json::json!([fourth, second]));
    assert_eq!(r["prune"]["deleted"], serde_json::json!([]));
    assert_eq!(r["prune"]["not_verified"][0]["name"], third.as_str());

    // Text output of list names the damaged one.
    let o = ferry(&home, &["backup", "list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("NOT VERIFIED"), "{text}");
}

#[test]
fn passphrase_backups_and_activity_trigger() {
    let t = T::new();
    let home = t.seeded("h", 50);
    let pass = t.passfile("pass", "tr\u{e8}s secret");
    let dest = t.p("dest");
    ok_json(
        &home,
        &[
            "backup",
            "policy",
            "set",
            "--frequency",
            "never",
            "--every-messages",
            "20",
            "--destination",
            &dest,
            "--passphrase-file",
            &pass,
            "--json",
        ],
    );
    // Never backed up: the 50 seeded messages are new activity.
    let s = ok_json(&home, &["backup", "status", "--json"]);
    assert_eq!(s["due_reason"], "activity");
    assert_eq!(s["next_due_ns"], Value::Null);
    let r = ok_json(&home, &["backup", "run", "--json"]);
    assert_eq!(r["reason"], "activity");
    let name = r["made"]["name"].as_str().unwrap().to_string();
    let r = ok_json(&home, &["backup", "run", "--json"]);
    assert_eq!(r["made"], Value::Null);

    // The archive in the destination needs a passphrase, and the same passphrase typed
    // decomposed (e + U+0300) opens it.
    let path = Path::new(&dest).join(&name);
    let p = path.to_string_lossy();
    let kind = ok_json(&home, &["archive", "inspect", &p, "--json"]);
    assert_eq!(kind["key_kind"], "passphrase");
    let decomposed = t.passfile("pass2", "tre\u{300}s secret");
    let v = ok_json(
        &t.path("other"),
        &[
            "archive",
            "verify",
            &p,
            "--passphrase-file",
            &decomposed,
            "--json",
        ],
    );
    assert_eq!(v["intact"], true);
    assert_eq!(v["messages"], 50);
    // Listing with a wrong passphrase reports it, without failing the command.
    let wrong = t.passfile("wrong", "tres secret");
    let list = ok_json(
        &home,
        &["backup", "list", "--passphrase-file", &wrong, "--json"],
    );
    assert_eq!(list[0]["verified"], false);
    assert!(list[0]["error"]
        .as_str()
        .unwrap()
        .contains("different passphrase"));
}

// ---- listing before a key is given ------------------------------------------------------------

#[test]
fn list_without_a_key_on_a_new_folder_and_on_one_with_a_policy() {
    let t = T::new();
    let a = t.seeded("a", 100);
    let k = t.keyfile("k");
    let pass = t.passfile("pass", "correct horse");
    // A new device's folder: no store, no policy; its default destination is HOME/backups.
    let fresh = t.path("fresh");
    let folder = fresh.join("backups");
    std::fs::create_dir_all(&folder).unwrap();
    let raw = folder.join("ferry-backup-2000.ferry");
    let sealed = folder.join("ferry-backup-3000.ferry");
    for (path, flag, file) in [
        (&raw, "--key-file", &k),
        (&sealed, "--passphrase-file", &pass),
    ] {
        let p = path.to_string_lossy();
        ok_json(&a, &["archive", "create", &p, flag, file, "--json"]);
    }
    std::fs::write(folder.join("ferry-backup-1000.ferry"), [7u8; 200]).unwrap();

    let list = ok_json(&fresh, &["backup", "list", "--json"]);
    assert!(!fresh.join("ferry.db").exists(), "listing creates no store");
    let list = list.as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ferry-backup-3000.ferry",
            "ferry-backup-2000.ferry",
            "ferry-backup-1000.ferry"
        ]
    );
    for b in list {
        assert_eq!(b["locked"], true);
        assert_eq!(b["verified"], false);
        let name = b["name"].as_str().unwrap();
        assert_eq!(
            b["size_bytes"].as_u64().unwrap(),
            std::fs::metadata(folder.join(name)).unwrap().len()
        );
        let t = b["modified_ns"].as_i64().unwrap();
        assert!((now_ns() - t).abs() < DAY, "{b}");
    }
    assert_eq!(list[0]["key_kind"], "passphrase");
    assert_eq!(list[1]["key_kind"], "key");
    assert_eq!(list[1]["format_version"], "1.0");
    assert_eq!(list[1]["error"], Value::Null);
    assert_eq!(list[2]["key_kind"], Value::Null);
    assert!(list[2]["error"]
        .as_str()
        .unwrap()
        .contains("not a Ferry archive"));
    let text = String::from_utf8_lossy(&ferry(&fresh, &["backup", "list"]).stdout).into_owned();
    assert!(text.contains("locked (passphrase, format 1.0)"), "{text}");
    assert!(text.contains("DAMAGED"), "{text}");

    // With the key: verified as before (the passphrase one does not open with it).
    let list = ok_json(&fresh, &["backup", "list", "--key-file", &k, "--json"]);
    assert_eq!(list[0]["name"], "ferry-backup-2000.ferry");
    assert_eq!(list[0]["verified"], true);
    assert_eq!(list[0]["locked"], false);
    assert_eq!(list[0]["message_count"], 100);

    // A folder whose policy names a destination and a key file: verified as before; --locked
    // lists it without the key.
    let dest = t.p("dest");
    ok_json(
        &a,
        &[
            "backup",
            "policy",
            "set",
            "--frequency",
            "never",
            "--destination",
            &dest,
            "--key-file",
            &k,
            "--json",
        ],
    );
    let made = ok_json(&a, &["backup", "run", "--now", "--json"]);
    let name = made["made"]["name"].clone();
    let list = ok_json(&a, &["backup", "list", "--json"]);
    assert_eq!(list[0]["name"], name);
    assert_eq!(list[0]["verified"], true);
    assert_eq!(list[0]["key_kind"], "key");
    let list = ok_json(&a, &["backup", "list", "--locked", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], name);
    assert_eq!(
        (&list[0]["locked"], &list[0]["verified"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(list[0]["created_at_ns"], Value::Null);
    assert_eq!(list[0]["key_kind"], "key");
}
