//! The `ferry` command-line contract: exact commands, JSON fields, one-line errors.

use std::path::Path;
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
    fn home(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn keygen_writes_32_private_bytes() {
    let t = T::new();
    let out = ferry(&t.home("h"), &["keygen", &t.p("k")]);
    assert!(out.status.success());
    let bytes = std::fs::read(t.p("k")).unwrap();
    assert_eq!(bytes.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(t.p("k")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Never overwrites a key.
    let err = err_line(&t.home("h"), &["keygen", &t.p("k")]);
    assert!(err.contains("cannot create key file"), "{err}");
    assert_eq!(std::fs::read(t.p("k")).unwrap(), bytes);
}

#[test]
fn seed_create_inspect_import_list() {
    let t = T::new();
    let (a, b) = (t.home("a"), t.home("b"));
    let seeded = ok_json(
        &a,
        &[
            "dev",
            "seed",
            "--conversations",
            "4",
            "--messages",
            "500",
            "--consent",
            "3",
            "--json",
        ],
    );
    assert_eq!(seeded["conversations"], 4);
    assert_eq!(seeded["messages"], 500);
    assert_eq!(seeded["consent"], 3);
    assert!(ferry(&a, &["keygen", &t.p("k")]).status.success());
    let archive = t.p("a.ferry");

    let created = ok_json(
        &a,
        &[
            "archive",
            "create",
            &archive,
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    for field in [
        "format_version",
        "created_at_ns",
        "start_ns",
        "end_ns",
        "elements",
    ] {
        assert!(
            created.get(field).is_some(),
            "create JSON lacks {field}: {created}"
        );
    }
    assert_eq!(
        created["elements"],
        serde_json::json!(["messages", "consent"])
    );
    assert_eq!(created["message_count"], 500);

    let inspected = ok_json(
        &b,
        &[
            "archive",
            "inspect",
            &archive,
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert_eq!(inspected["format"], "ferry");
    assert_eq!(inspected["format_version"], created["format_version"]);
    assert_eq!(inspected["created_at_ns"], created["created_at_ns"]);
    assert_eq!(inspected["elements"], created["elements"]);
    // A seeded folder has no installation: its archives are unsigned (format 1.0).
    for j in [&created, &inspected] {
        assert_eq!(j["format_version"], "1.0");
        assert_eq!(j["signature"], "unsigned");
        assert!(j["signed_by"].is_null(), "{j}");
    }

    let report = ok_json(
        &b,
        &[
            "archive",
            "import",
            &archive,
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert_eq!(report["conversations_added"], 4);
    assert_eq!(report["messages_imported"], 500);
    assert_eq!(report["messages_skipped"], 0);
    assert_eq!(report["consent_applied"], 3);
    let again = ok_json(
        &b,
        &[
            "archive",
            "import",
            &archive,
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert_eq!(again["messages_imported"], 0);
    assert_eq!(again["messages_skipped"], 500);

    let convs = ok_json(&b, &["conversations", "list", "--json"]);
    let convs = convs.as_array().unwrap();
    assert_eq!(convs.len(), 4);
    for c in convs {
        assert_eq!(c["active"], false);
        assert_eq!(c["restored"], true);
        assert!(c["kind"] == "group" || c["kind"] == "dm");
        assert_eq!(c["id"].as_str().unwrap().len(), 64);
        assert!(c.get("name").is_some());
    }
    // The source store's own conversations are active.
    let source = ok_json(&a, &["conversations", "list", "--json"]);
    assert!(source
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["active"] == true && c["restored"] == false));

    let all = ok_json(&b, &["messages", "list", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 500);
    let cid = convs[0]["id"].as_str().unwrap();
    let msgs = ok_json(&b, &["messages", "list", "--conversation", cid, "--json"]);
    let msgs = msgs.as_array().unwrap();
    assert!(!msgs.is_empty());
    let mut last = 0;
    for m in msgs {
        assert_eq!(m["conversation_id"], cid);
        assert_eq!(m["id"].as_str().unwrap().len(), 64);
        assert!(!m["sender_inbox_id"].as_str().unwrap().is_empty());
        assert!(!m["text"].as_str().unwrap().is_empty());
        let t = m["sent_at_ns"].as_i64().unwrap();
        assert!(t >= last, "messages in sending order");
        last = t;
    }
    // Messages match the source, byte for byte.
    let src_msgs = ok_json(&a, &["messages", "list", "--conversation", cid, "--json"]);
    assert_eq!(src_msgs.as_array().unwrap(), msgs);
}

#[test]
fn options_on_the_command_line() {
    let t = T::new();
    let a = t.home("a");
    ok_json(
        &a,
        &[
            "dev",
            "seed",
            "--conversations",
            "3",
            "--messages",
            "300",
            "--consent",
            "2",
            "--json",
        ],
    );
    std::fs::write(t.p("k"), format!("{}\n", "ab".repeat(32))).unwrap(); // hex key file
    let c = ok_json(
        &a,
        &[
            "archive",
            "create",
            &t.p("c.ferry"),
            "--key-file",
            &t.p("k"),
            "--elements",
            "consent",
            "--json",
        ],
    );
    assert_eq!(c["elements"], serde_json::json!(["consent"]));
    assert_eq!(c["message_count"], 0);
    let msgs = ok_json(&a, &["messages", "list", "--json"]);
    let times: Vec<i64> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sent_at_ns"].as_i64().unwrap())
        .collect();
    let mid = times[times.len() / 2];
    let r = ok_json(
        &a,
        &[
            "archive",
            "create",
            &t.p("r.ferry"),
            "--key-file",
            &t.p("k"),
            "--start-ns",
            &mid.to_string(),
            "--json",
        ],
    );
    assert_eq!(r["start_ns"], mid);
    assert_eq!(r["end_ns"], Value::Null);
    let want = times.iter().filter(|&&x| x >= mid).count();
    assert_eq!(r["message_count"], want);
    let err = err_line(
        &a,
        &[
            "archive",
            "create",
            &t.p("x.ferry"),
            "--key-file",
            &t.p("k"),
            "--elements",
            "pictures",
        ],
    );
    assert!(err.contains("unknown element"), "{err}");
}

#[test]
fn errors_name_their_cause() {
    let t = T::new();
    let a = t.home("a");
    ok_json(
        &a,
        &[
            "dev",
            "seed",
            "--conversations",
            "2",
            "--messages",
            "3000",
            "--json",
        ],
    );
    ferry(&a, &["keygen", &t.p("k")]);
    ferry(&a, &["keygen", &t.p("k2")]);
    let archive = t.p("a.ferry");
    ok_json(
        &a,
        &[
            "archive",
            "create",
            &archive,
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    let b = t.home("b");

    let err = err_line(
        &b,
        &[
            "archive",
            "import",
            &archive,
            "--key-file",
            &t.p("k2"),
            "--json",
        ],
    );
    assert!(err.contains("wrong key"), "{err}");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(t.p("trunc"), &bytes[..bytes.len() - 7]).unwrap();
    let err = err_line(
        &b,
        &[
            "archive",
            "import",
            &t.p("trunc"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert!(err.contains("archive is truncated"), "{err}");
    let err = err_line(
        &b,
        &[
            "archive",
            "inspect",
            &t.p("k"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert!(err.contains("not a Ferry archive"), "{err}");
    std::fs::write(t.p("short.key"), [1u8; 31]).unwrap();
    let err = err_line(
        &b,
        &[
            "archive",
            "inspect",
            &archive,
            "--key-file",
            &t.p("short.key"),
            "--json",
        ],
    );
    assert!(err.contains("32 raw bytes or 64 hex digits"), "{err}");
    let err = err_line(
        &a,
        &[
            "archive",
            "create",
            &t.p("missing/dir/a.ferry"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert!(err.contains("does not exist"), "{err}");
    // Nothing was imported by the failed attempts.
    let convs = ok_json(&b, &["conversations", "list", "--json"]);
    assert_eq!(convs.as_array().unwrap().len(), 0);
}

#[test]
fn verify_reads_the_whole_archive() {
    let t = T::new();
    let a = t.home("a");
    ok_json(
        &a,
        &[
            "dev",
            "seed",
            "--conversations",
            "2",
            "--messages",
            "5000",
            "--json",
        ],
    );
    ferry(&a, &["keygen", &t.p("k")]);
    ok_json(
        &a,
        &[
            "archive",
            "create",
            &t.p("a.ferry"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    let v = ok_json(
        &a,
        &[
            "archive",
            "verify",
            &t.p("a.ferry"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert_eq!(v["intact"], true);
    assert_eq!(v["messages"], 5000);
    let mut bytes = std::fs::read(t.p("a.ferry")).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    std::fs::write(t.p("bad.ferry"), &bytes).unwrap();
    // Metadata still reads (first chunk only) but verify finds the damage.
    ok_json(
        &a,
        &[
            "archive",
            "inspect",
            &t.p("bad.ferry"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    let err = err_line(
        &a,
        &[
            "archive",
            "verify",
            &t.p("bad.ferry"),
            "--key-file",
            &t.p("k"),
            "--json",
        ],
    );
    assert!(err.contains("failed authentication"), "{err}");
}

#[test]
fn libxmtp_archives_are_recognised_and_imported() {
    let t = T::new();
    let vector = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/xmtp/archive-legacy.xmtp"
    );
    std::fs::write(t.p("zero.key"), [0u8; 32]).unwrap();
    let h = t.home("h");
    let meta = ok_json(
        &h,
        &[
            "archive",
            "inspect",
            vector,
            "--key-file",
            &t.p("zero.key"),
            "--json",
        ],
    );
    assert_eq!(meta["format"], "xmtp");
    assert_eq!(meta["format_version"], "0");
    assert_eq!(meta["elements"], serde_json::json!(["messages", "consent"]));
    // Exported on 2025-11-12 (UTC).
    let t_ns = meta["created_at_ns"].as_i64().unwrap();
    assert!(
        (1_762_905_600_000_000_000..1_762_992_000_000_000_000).contains(&t_ns),
        "{t_ns}"
    );

    let report = ok_json(
        &h,
        &[
            "archive",
            "import",
            vector,
            "--key-file",
            &t.p("zero.key"),
            "--json",
        ],
    );
    assert_eq!(report["format"], "xmtp");
    assert_eq!(report["conversations_added"], 1);
    assert_eq!(report["messages_imported"], 1);
    assert_eq!(report["consent_applied"], 1);
    let convs = ok_json(&h, &["conversations", "list", "--json"]);
    assert_eq!(convs[0]["name"], "My group");
    assert_eq!(convs[0]["active"], false);
    assert_eq!(convs[0]["restored"], true);
    let msgs = ok_json(&h, &["messages", "list", "--json"]);
    assert_eq!(msgs[0]["text"], "hello there");
    let consent = ok_json(&h, &["consent", "list", "--json"]);
    assert_eq!(consent[0]["state"], "allowed");
    assert_eq!(consent[0]["entity_type"], "conversation");

    std::fs::write(t.p("one.key"), [1u8; 32]).unwrap();
    let err = err_line(
        &t.home("other"),
        &[
            "archive",
            "import",
            vector,
            "--key-file",
            &t.p("one.key"),
            "--json",
        ],
    );
    assert!(err.contains("wrong key or corrupted xmtp archive"), "{err}");
}

#[test]
fn import_dry_run_says_what_the_import_will_do_and_writes_nothing() {
    let t = T::new();
    let (a, b) = (t.home("a"), t.home("b"));
    let seed = |home: &Path, messages: &str, seed: &str| {
        ok_json(
            home,
            &[
                "dev",
                "seed",
                "--conversations",
                "3",
                "--messages",
                messages,
                "--consent",
                "2",
                "--seed",
                seed,
                "--json",
            ],
        )
    };
    seed(&a, "300", "1");
    assert!(ferry(&a, &["keygen", &t.p("k")]).status.success());
    let archive = t.p("a.ferry");
    let key = t.p("k");
    ok_json(
        &a,
        &["archive", "create", &archive, "--key-file", &key, "--json"],
    );

    // A folder with no store: previewed as empty, and nothing is created.
    let dry = [
        "archive",
        "import",
        &archive,
        "--key-file",
        &key,
        "--dry-run",
    ];
    let mut args: Vec<&str> = dry.to_vec();
    args.push("--json");
    let p = ok_json(&b, &args);
    assert!(!b.exists(), "a dry run creates no folder");
    assert_eq!(p["conversations_added"], 3);
    assert_eq!(p["messages_imported"], 300);
    let convs = p["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 3);
    for c in convs {
        for field in [
            "id",
            "kind",
            "name",
            "action",
            "messages_new",
            "messages_present",
        ] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
        assert_eq!(c["action"], "add");
    }

    // A store with history of its own: the preview is the import's report, field by field,
    // and the store is unchanged by it.
    seed(&b, "50", "2");
    let db = b.join("ferry.db");
    let dump = || ferry_store::Store::open(&db).unwrap().dump().unwrap();
    let before = dump();
    let p = ok_json(&b, &args);
    assert_eq!(dump(), before, "the dry run wrote nothing");
    let r = ok_json(
        &b,
        &["archive", "import", &archive, "--key-file", &key, "--json"],
    );
    for (k, v) in r.as_object().unwrap() {
        assert_eq!(&p[k], v, "{k}");
    }
    // Again: all of it is here now.
    let p = ok_json(&b, &args);
    assert_eq!(p["messages_imported"], 0);
    assert_eq!(p["messages_skipped"], 300);
    assert!(p["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["action"] == "merge" && c["messages_new"] == 0));

    // Text: a short summary.
    let out = ferry(&b, &dry);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dry run"), "{text}");
    assert!(
        text.contains("import 0 messages (300 already here"),
        "{text}"
    );
}
