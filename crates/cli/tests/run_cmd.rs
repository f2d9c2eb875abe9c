//! `ferry run`: due backups happen in the background; other commands work meanwhile; SIGTERM
//! stops it cleanly.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn ferry(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--home").arg(home).env_remove("FERRY_HOME");
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn run_makes_due_backups_in_the_background_and_stops_on_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("h");
    let dest = t.path().join("backups");
    let key = t.path().join("k");
    ok(ferry(&home).args(["dev", "seed", "--conversations", "3", "--messages", "200"]));
    ok(ferry(&home).arg("keygen").arg(&key));
    // Never on a schedule, but every new message counts: due at once.
    ok(ferry(&home)
        .args([
            "backup",
            "policy",
            "set",
            "--frequency",
            "never",
            "--every-messages",
            "1",
            "--key-file",
        ])
        .arg(&key)
        .arg("--destination")
        .arg(&dest));

    let mut child = ferry(&home)
        .args(["run", "--check-every-secs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.starts_with("running in"), "{first}");
    let made = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(made.starts_with("made ferry-backup-"), "{made}");
    assert!(made.contains("200 messages"), "{made}");

    // Other commands on the same folder work while it runs.
    let convs: serde_json::Value =
        serde_json::from_str(&ok(ferry(&home).args(["conversations", "list", "--json"]))).unwrap();
    assert_eq!(convs.as_array().unwrap().len(), 3);

    // Nothing new is due: a few more checks make no second backup.
    let quiet_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < quiet_until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            panic!("unexpected output: {line}");
        }
    }

    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let last = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(last, "stopped");

    let list: serde_json::Value =
        serde_json::from_str(&ok(ferry(&home).args(["backup", "list", "--json"]))).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["verified"], true);
}
