//! The messaging commands through the `ferry` binary, against `ferry node` on loopback: the CLI
//! contract (`init`, `whoami`, `group create`, `dm`, `send`, `sync`, `conversations list`,
//! `messages list`, `consent set/list`, `run`).
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[test]
fn the_messaging_commands_tell_a_conversation_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let (a1, a2, b) = (t.path().join("a1"), t.path().join("a2"), t.path().join("b"));

    let alice = init(&a1, &node, None);
    let alice_inbox = alice["inbox_id"].as_str().unwrap().to_string();
    assert_eq!(alice["installation_id"].as_str().unwrap().len(), 64);
    let key = a1.join("account.key");
    assert!(key.exists(), "the new inbox's account key is saved");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let alice2 = init(&a2, &node, Some(&key));
    assert_eq!(alice2["inbox_id"], alice["inbox_id"], "same inbox");
    assert_ne!(alice2["installation_id"], alice["installation_id"]);
    let bob = json(ferry(&b).args([
        "init",
        "--node",
        &node.url,
        "--send-check-interval-ms",
        "0",
        "--json",
    ]));
    let bob_inbox = bob["inbox_id"].as_str().unwrap().to_string();
    let who = json(ferry(&b).args(["whoami", "--json"]));
    assert_eq!(who["inbox_id"], bob["inbox_id"]);
    assert_eq!(who["installation_id"], bob["installation_id"]);

    let g = json(ferry(&a1).args(["group", "create", "--name", "Trip", &bob_inbox, "--json"]));
    let gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["name"], "Trip");
    assert_eq!(g["active"], true);
    let sent = json(ferry(&a1).args(["send", &gid, "hello bob", "--json"]));
    assert_eq!(sent["message_id"].as_str().unwrap().len(), 64);
    let synced = json(ferry(&b).args(["sync", "--json"]));
    assert_eq!(synced["conversations_joined"], 1);
    json(ferry(&b).args(["send", &gid, "hi alice", "--json"]));
    json(ferry(&a2).args(["sync", "--json"]));
    assert_eq!(texts(&a2, &gid), ["hello bob", "hi alice"]);
    let convs = json(ferry(&b).args(["conversations", "list", "--json"]));
    assert_eq!(convs.as_array().unwrap().len(), 1);
    assert_eq!(convs[0]["id"], gid.as_str());
    assert_eq!(convs[0]["kind"], "group");
    assert_eq!(convs[0]["active"], true);
    assert_eq!(convs[0]["restored"], false);
    // The sender's copy has the same id as the receivers'.
    let ids = |home: &Path| -> Vec<Value> {
        json(ferry(home).args(["messages", "list", "--conversation", &gid, "--json"]))
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "application")
            .map(|m| m["id"].clone())
            .collect()
    };
    json(ferry(&a1).args(["sync", "--json"]));
    assert_eq!(ids(&a1), ids(&b));
    assert_eq!(ids(&a1), ids(&a2));

    // A DM, found again rather than made twice.
    let dm = json(ferry(&b).args(["dm", &alice_inbox, "--json"]));
    let dm_id = dm["id"].as_str().unwrap().to_string();
    assert_eq!(dm["kind"], "dm");
    json(ferry(&b).args(["send", &dm_id, "psst", "--json"]));
    let again = json(ferry(&a1).args(["dm", &bob_inbox, "--json"]));
    assert_eq!(again["id"], dm_id.as_str());
    assert_eq!(texts(&a1, &dm_id), ["psst"]);

    // Consent: set, list, filter.
    json(ferry(&b).args(["consent", "set", "denied", "--conversation", &gid, "--json"]));
    ferry(&b)
        .args(["consent", "set", "allowed", "--inbox", &alice_inbox])
        .output()
        .unwrap();
    let consent = json(ferry(&b).args(["consent", "list", "--json"]));
    let find = |entity: &str| {
        consent
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["entity"] == entity)
            .cloned()
            .unwrap()
    };
    assert_eq!(find(&gid)["state"], "denied");
    assert_eq!(find(&alice_inbox)["state"], "allowed");
    let denied = json(ferry(&b).args(["conversations", "list", "--consent", "denied", "--json"]));
    assert_eq!(denied.as_array().unwrap().len(), 1);
    assert_eq!(denied[0]["id"], gid.as_str());

    // Errors: one line naming the cause.
    let e = fails(ferry(&b).args(["send", "00ff", "x", "--json"]));
    assert!(e.contains("not found"), "{e}");
    let e = fails(ferry(&b).args(["dm", "nosuchinbox", "--json"]));
    assert!(e.contains("unknown"), "{e}");
    let e = fails(ferry(&t.path().join("nobody")).args(["send", &gid, "x"]));
    assert!(e.contains("ferry init"), "{e}");

    // A backup restored on a new installation of alice: read-only until re-added.
    let k = t.path().join("archive.key");
    assert!(bin().arg("keygen").arg(&k).status().unwrap().success());
    let archive = t.path().join("a.ferry");
    let made = json(
        ferry(&a1)
            .args(["archive", "create"])
            .arg(&archive)
            .arg("--key-file")
            .arg(&k)
            .arg("--json"),
    );
    assert_eq!(made["inbox_id"], alice_inbox.as_str());
    // Signed by the installation that made it.
    assert_eq!(made["signature"], "valid");
    assert_eq!(made["signed_by"]["inbox_id"], alice_inbox.as_str());
    assert_eq!(
        made["signed_by"]["installation_id"],
        alice["installation_id"]
    );
    let a3 = t.path().join("a3");
    init(&a3, &node, Some(&key));
    let inspected = json(
        ferry(&a3)
            .args(["archive", "inspect"])
            .arg(&archive)
            .arg("--key-file")
            .arg(&k)
            .arg("--json"),
    );
    assert_eq!(inspected["format_version"], "1.1");
    assert_eq!(inspected["signature"], "valid");
    assert_eq!(inspected["signed_by"], made["signed_by"]);
    assert_eq!(inspected["installation_status"], "active", "{inspected}");
    let report = json(
        ferry(&a3)
            .args(["archive", "import"])
            .arg(&archive)
            .arg("--key-file")
            .arg(&k)
            .arg("--json"),
    );
    assert_eq!(report["conversations_added"], 2);
    assert_eq!(report["signature"], "valid");
    assert_eq!(report["installation_status"], "active");
    let restored = json(ferry(&a3).args(["conversations", "list", "--json"]));
    let r = restored
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == gid.as_str())
        .unwrap()
        .clone();
    assert_eq!(r["active"], false);
    assert_eq!(r["restored"], true);
    let e = fails(ferry(&a3).args(["send", &gid, "can I?", "--json"]));
    assert!(e.starts_with("error: Group is inactive\n"), "{e}");
    // The second line says how it turns active.
    assert!(e.contains("hint: ") && e.contains("`ferry sync`"), "{e}");
    assert_eq!(
        texts(&a3, &gid),
        ["hello bob", "hi alice"],
        "history is visible"
    );
    // Bob's next send adds the new installation; it syncs and the same conversation is active.
    json(ferry(&b).args(["send", &gid, "welcome back", "--json"]));
    json(ferry(&a3).args(["sync", "--json"]));
    let now = json(ferry(&a3).args(["conversations", "list", "--active", "true", "--json"]));
    assert!(now
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == gid.as_str()));
    assert_eq!(texts(&a3, &gid), ["hello bob", "hi alice", "welcome back"]);
    json(ferry(&a3).args(["send", &gid, "from my new phone", "--json"]));
    json(ferry(&b).args(["sync", "--json"]));
    assert_eq!(texts(&b, &gid).last().unwrap(), "from my new phone");

    // Another inbox's archive is refused, naming that inbox, and writes nothing.
    let c = t.path().join("c");
    init(&c, &node, None);
    let e = fails(
        ferry(&c)
            .args(["archive", "import"])
            .arg(&archive)
            .arg("--key-file")
            .arg(&k)
            .arg("--json"),
    );
    assert!(e.contains(&alice_inbox), "{e}");
    let none = json(ferry(&c).args(["conversations", "list", "--json"]));
    assert!(none.as_array().unwrap().is_empty());

    node.stop();
}

#[test]
fn run_keeps_an_installation_online_while_other_commands_use_the_same_folder() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    init(&a, &node, None);
    let bob_inbox = init(&b, &node, None)["inbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gid = json(ferry(&a).args(["group", "create", &bob_inbox, "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut run = ferry(&b)
        .args(["run", "--check-every-secs", "3600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = run.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if line.starts_with("message ") && line.ends_with(&format!(": {want}")) {
                    return true;
                }
            }
        }
        false
    };
    // The running process receives pushes and prints each new message.
    for i in 0..3 {
        json(ferry(&a).args(["send", &gid, &format!("push{i}"), "--json"]));
        assert!(wait_for(&format!("push{i}")), "run printed push{i}");
    }
    // Alice sends while bob's `run` applies pushes and bob's own commands write too.
    for i in 0..5 {
        json(ferry(&a).args(["send", &gid, &format!("a{i}"), "--json"]));
        json(ferry(&b).args(["sync", "--json"]));
        json(ferry(&b).args(["send", &gid, &format!("b{i}"), "--json"]));
    }
    unsafe_kill(run.id(), 15);
    let status = run.wait().unwrap();
    assert!(status.success());
    json(ferry(&a).args(["sync", "--json"]));
    let mut want: Vec<String> = (0..3).map(|i| format!("push{i}")).collect();
    want.extend((0..5).flat_map(|i| [format!("a{i}"), format!("b{i}")]));
    assert_eq!(
        texts(&a, &gid),
        want,
        "nothing lost, nothing twice, in order"
    );
    assert_eq!(texts(&b, &gid), want);
    node.stop();
}

#[test]
fn the_history_server_command_serves_until_sigterm() {
    let t = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_listening(
        &["history-server", "--listen", "127.0.0.1:0", "--dir"],
        &t.path().join("payloads"),
    );
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(t.path().join("payloads").is_dir(), "its folder was created");
    unsafe_kill(child.id(), 15);
    exits_cleanly(&mut child, "the history server");
}

#[test]
fn the_history_commands_request_list_process_and_share_preferences() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let (mut history, addr) = spawn_listening(
        &["history-server", "--listen", "127.0.0.1:0", "--dir"],
        &t.path().join("payloads"),
    );
    let history_url = format!("http://{addr}");
    let (a1, a2, b) = (t.path().join("a1"), t.path().join("a2"), t.path().join("b"));
    let with_history = |home: &Path, key: Option<&PathBuf>| {
        let mut c = ferry(home);
        c.args([
            "init",
            "--node",
            &node.url,
            "--history-url",
            &history_url,
            "--json",
        ]);
        if let Some(k) = key {
            c.arg("--account-key").arg(k);
        }
        json(&mut c)
    };
    with_history(&a1, None);
    let bob = init(&b, &node, None)["inbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gid = json(ferry(&a1).args(["group", "create", &bob, "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    json(ferry(&a1).args(["send", &gid, "from before", "--json"]));

    // A new installation and nobody online to answer: it says so, and its request waits.
    with_history(&a2, Some(&a1.join("account.key")));
    let waiting = json(ferry(&a2).args(["history", "sync", "--wait-secs", "0", "--json"]));
    assert_eq!(waiting["status"], "waiting");
    assert_eq!(waiting["other_installations"], 1);
    assert!(waiting["message"]
        .as_str()
        .unwrap()
        .contains("waiting for an online installation"));
    let pin = waiting["pin"].as_str().unwrap().to_string();
    assert_eq!(pin.len(), 32);

    // The old installation comes online and answers; the new one lists and imports by pin.
    json(ferry(&a1).args(["sync", "--json"]));
    let listed = json(ferry(&a2).args(["history", "list", "--json"]));
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["pin"] == pin.as_str())
        .cloned()
        .expect("the answer to our request is listed");
    assert!(entry["message_count"].as_u64().unwrap() >= 1);
    assert!(entry.get("key").is_none(), "keys are never printed");
    let report = json(ferry(&a2).args(["history", "process", "--pin", &pin, "--json"]));
    assert_eq!(report["pin"], pin.as_str());
    assert_eq!(report["format"], "ferry");
    assert!(report["messages_imported"].as_u64().unwrap() >= 1);
    assert!(texts(&a2, &gid).contains(&"from before".to_string()));

    // A manual request answered by `send-archive --pin`, imported by the next sync.
    let manual = json(ferry(&a2).args(["history", "request", "--messages-only", "--json"]))["pin"]
        .as_str()
        .unwrap()
        .to_string();
    json(ferry(&a1).args(["send", &gid, "after the request", "--json"]));
    let sent = json(ferry(&a1).args([
        "history",
        "send-archive",
        "--pin",
        &manual,
        "--messages-only",
        "--json",
    ]));
    assert_eq!(sent["pin"], manual.as_str());
    let synced = json(ferry(&a2).args(["sync", "--json"]));
    assert!(synced["history_imported"].as_u64().unwrap() >= 1);
    let listed = json(ferry(&a2).args(["history", "list", "--json"]));
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["pin"] == manual.as_str() && a["imported"] == true && a["consent"] == false));
    let e = fails(ferry(&a2).args(["history", "process", "--pin", "nope", "--json"]));
    assert!(e.contains("no history archive nope"), "{e}");

    // Consent set on one installation shows on the other; HMAC keys agree.
    json(ferry(&a1).args(["consent", "set", "denied", "--inbox", &bob, "--json"]));
    json(ferry(&a2).args(["sync", "--json"]));
    let consent = json(ferry(&a2).args(["consent", "list", "--json"]));
    assert!(
        consent
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["entity"] == bob.as_str() && c["state"] == "denied"),
        "{consent}"
    );
    let k1 = json(ferry(&a1).args(["hmac-keys", "--json"]));
    let k2 = json(ferry(&a2).args(["hmac-keys", "--json"]));
    assert_eq!(k1, k2);
    assert_eq!(k1["keys"][gid.as_str()].as_array().unwrap().len(), 3);

    // With an installation online (`ferry run`), `history sync` on a new one gets its answer
    // while it waits.
    let mut online = ferry(&a1)
        .args(["run", "--check-every-secs", "3600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let a3 = t.path().join("a3");
    with_history(&a3, Some(&a1.join("account.key")));
    let done = json(ferry(&a3).args(["history", "sync", "--wait-secs", "60", "--json"]));
    assert_eq!(done["status"], "imported", "{done}");
    // (The request `init` sent may have brought the messages first: then these are skips.)
    let import = &done["import"];
    assert!(
        import["messages_imported"].as_u64().unwrap()
            + import["messages_skipped"].as_u64().unwrap()
            >= 2
    );
    let got = texts(&a3, &gid);
    assert!(
        got.contains(&"from before".to_string()) && got.contains(&"after the request".to_string())
    );
    unsafe_kill(online.id(), 15);
    exits_cleanly(&mut online, "ferry run");

    unsafe_kill(history.id(), 15);
    exits_cleanly(&mut history, "the history server");
    node.stop();
}
