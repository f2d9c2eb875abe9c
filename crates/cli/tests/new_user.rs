//! What a new user tripped over, through the `ferry` binary against `ferry node` and
//! `ferry history-server` on loopback: the hidden sync groups never show, errors say what to do,
//! a pending history request is not sent twice, `ferry run` says what it did in the background,
//! read-only commands create nothing, and the servers say where their data is.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn ids(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

fn init_with_history(home: &Path, node: &Node, history: &str, key: Option<&Path>) -> Value {
    let mut c = ferry(home);
    c.args([
        "init",
        "--node",
        &node.url,
        "--history-url",
        history,
        "--json",
    ]);
    if let Some(k) = key {
        c.arg("--account-key").arg(k);
    }
    json(&mut c)
}

#[test]
fn sync_groups_never_show_and_a_pending_request_is_not_sent_twice() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let history_dir = t.path().join("history");
    let history = HistoryServer::start(&history_dir);
    let (a1, a2, b) = (t.path().join("a1"), t.path().join("a2"), t.path().join("b"));
    init_with_history(&a1, &node, &history.url, None);
    let key = a1.join("account.key");
    let bob = json(ferry(&b).args(["init", "--node", &node.url, "--json"]));
    let bob_inbox = bob["inbox_id"].as_str().unwrap();
    let gid = json(ferry(&a1).args(["group", "create", bob_inbox, "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    json(ferry(&a1).args(["send", &gid, "before the new phone", "--json"]));
    json(ferry(&b).args(["sync", "--json"]));

    // Alice's first installation stays online; her new one asks for history on init.
    let run = Run::start(&a1);
    init_with_history(&a2, &node, &history.url, Some(&key));
    let added = run
        .wait_for(|l| l.starts_with("new installation of this inbox"))
        .unwrap_or_else(|| panic!("run says it added the new installation:\n{}", run.log()));
    assert!(added.ends_with("added to 1 conversations"), "{added}");

    // Asking again right away reuses the pending request: no second archive is made. (The
    // request may have gone to the sync group a2 made for itself before a1 added it to the
    // inbox's; once a2 settles on that one, it sends it there again, with the same pin.)
    let outcome = json(ferry(&a2).args(["history", "sync", "--wait-secs", "20", "--json"]));
    assert_eq!(outcome["reused"], true, "{outcome}");
    assert_eq!(outcome["status"], "imported", "{outcome}");
    let answered = run
        .wait_for(|l| l.starts_with("history request "))
        .unwrap_or_else(|| panic!("run says it answered the request:\n{}", run.log()));
    assert!(
        answered.contains(outcome["pin"].as_str().unwrap()) && answered.contains("answered"),
        "{answered}"
    );
    assert_eq!(count_files(&history_dir), 1, "one archive uploaded");
    // `history list` shows each pin once, its replies under it.
    let listed = json(ferry(&a2).args(["history", "list", "--json"]));
    let pins: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pin"].as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<&&str> = pins.iter().collect();
    assert_eq!(unique.len(), pins.len(), "{listed}");
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pin"] == outcome["pin"])
        .unwrap();
    assert_eq!(entry["replies"].as_array().unwrap().len(), 1, "{entry}");
    assert_eq!(entry["replies"][0]["imported"], true);
    assert_eq!(entry["imported"], true);
    assert!(run
        .wait_within(Duration::from_secs(2), |l| l
            .starts_with("history request "))
        .is_none());
    drop(run);

    for home in [&a1, &a2] {
        let convs = json(ferry(home).args(["conversations", "list", "--json"]));
        assert_eq!(ids(&convs, "id"), std::slice::from_ref(&gid));
        // Messages of all conversations: only the group's.
        let all = json(ferry(home).args(["messages", "list", "--json"]));
        assert!(!all.as_array().unwrap().is_empty());
        for m in all.as_array().unwrap() {
            assert_eq!(m["conversation_id"], gid.as_str(), "{m}");
        }
        let text = String::from_utf8(
            ferry(home)
                .args(["messages", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(!text.contains("unsupported content"), "{text}");
        // Consent: the group and bob's inbox at most, nothing else.
        let consent = json(ferry(home).args(["consent", "list", "--json"]));
        for c in consent.as_array().unwrap() {
            let e = c["entity"].as_str().unwrap();
            assert!(e == gid || e == bob_inbox, "consent about {e}");
        }
    }
    // A sync report counts the person's conversations only. (Bob syncs first: a message sent
    // in the epoch before a2 was added never reaches a2, the re-send bug of issue #21.)
    json(ferry(&b).args(["sync", "--json"]));
    json(ferry(&b).args(["send", &gid, "one more", "--json"]));
    let report = json(ferry(&a2).args(["sync", "--json"]));
    assert_eq!(report["messages_processed"], 1, "{report}");
    assert_eq!(report["conversations_synced"], 1, "{report}");
    let text = String::from_utf8(ferry(&a1).arg("sync").output().unwrap().stdout).unwrap();
    assert_eq!(
        text.trim(),
        "joined 0 conversations, applied 1 messages in 1 conversations"
    );
}

#[test]
fn errors_say_what_to_do() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let history_dir = t.path().join("history");
    let history = HistoryServer::start(&history_dir);
    let a = t.path().join("a");
    json(ferry(&a).args(["init", "--node", &node.url, "--json"]));

    // A registered folder says so, whatever the flags.
    for extra in [
        vec![],
        vec!["--account-key", "/nonexistent/key"],
        vec!["--history-url", "http://127.0.0.1:9"],
    ] {
        let mut c = ferry(&a);
        c.args(["init", "--node", &node.url]).args(&extra);
        let e = fails(&mut c);
        assert!(e.contains("already registered"), "{extra:?}: {e}");
    }

    // History sync off names the command that turns it on; that command works.
    let e = fails(ferry(&a).args(["history", "sync", "--json"]));
    assert!(e.contains("`ferry history url set URL`"), "{e}");
    let shown = json(ferry(&a).args(["history", "url", "show", "--json"]));
    assert_eq!(shown["enabled"], false);
    let set = json(ferry(&a).args(["history", "url", "set", &history.url, "--json"]));
    assert_eq!(set["history_sync_url"], history.url.as_str());
    let who = json(ferry(&a).args(["whoami", "--json"]));
    assert_eq!(who["history_sync_url"], history.url.as_str());
    let e = fails(ferry(&a).args(["history", "url", "set", "ftp://nowhere"]));
    assert!(e.contains("ftp://nowhere"), "{e}");
    // No other installation to answer, but the request is made.
    let out = json(ferry(&a).args(["history", "sync", "--wait-secs", "0", "--json"]));
    assert_eq!(out["status"], "waiting");

    // A dead node is named.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let e = fails(ferry(&t.path().join("d")).args(["init", "--node", &dead]));
    assert!(e.contains(&dead), "{e}");
    // And a dead history server.
    let c = t.path().join("c");
    json(ferry(&c).args(["init", "--node", &node.url, "--json"]));
    let dead_history = format!("http://127.0.0.1:{port}");
    json(ferry(&c).args(["history", "url", "set", &dead_history, "--json"]));
    let e = fails(ferry(&c).args(["history", "send-archive", "--json"]));
    assert!(e.contains(&dead_history), "{e}");
}

#[test]
fn read_only_commands_create_nothing_and_text_shows_local_times() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nobody");
    let e = fails(ferry(&missing).args(["whoami"]));
    assert!(e.contains("ferry init"), "{e}");
    for args in [
        &["conversations", "list"][..],
        &["messages", "list"],
        &["consent", "list"],
        &["installations", "list"],
        &["history", "list"],
    ] {
        let out = ferry(&missing).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} on a missing folder fails");
    }
    assert!(!missing.exists(), "no empty home folder was made");

    let node = Node::start(&t.path().join("node.db"));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    json(ferry(&a).args(["init", "--node", &node.url, "--json"]));
    let bob = json(ferry(&b).args(["init", "--node", &node.url, "--json"]));
    let gid = json(ferry(&a).args([
        "group",
        "create",
        bob["inbox_id"].as_str().unwrap(),
        "--json",
    ]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    json(ferry(&a).args(["send", &gid, "what time is it", "--json"]));
    let text = String::from_utf8(
        ferry(&a)
            .args(["messages", "list", "--conversation", &gid])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let line = text.lines().last().unwrap();
    // `YYYY-MM-DD HH:MM:SS conv sender: text`
    let (date, rest) = line.split_at(19);
    let b = date.as_bytes();
    assert!(
        b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':',
        "{line}"
    );
    assert!(date.starts_with("20"), "{line}");
    assert!(rest.ends_with(": what time is it"), "{line}");
}

#[test]
fn servers_name_their_data_and_hide_the_client_flags() {
    let help = String::from_utf8(bin().args(["node", "--help"]).output().unwrap().stdout).unwrap();
    assert!(
        help.contains("--listen") && help.contains("--in-memory"),
        "{help}"
    );
    assert!(!help.contains("--home"), "{help}");
    let help = String::from_utf8(
        bin()
            .args(["history-server", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!help.contains("--home"), "{help}");
    let help = String::from_utf8(bin().args(["sync", "--help"]).output().unwrap().stdout).unwrap();
    assert!(help.contains("--home"), "clients keep it: {help}");

    // Without --db the node keeps its data in a file in its data folder, and says where.
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("node-data");
    let mut child = bin()
        .args(["node", "--listen", "127.0.0.1:0"])
        .env("FERRY_NODE_DATA", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    let second = lines.next().unwrap().unwrap();
    let db = data.join("node.db");
    assert_eq!(second, format!("data in {}", db.display()));
    assert!(db.exists());
    let url = format!("http://{}", first.trim_start_matches("listening on "));
    json(ferry(&t.path().join("a")).args(["init", "--node", &url, "--json"]));
    unsafe_kill(child.id(), 15);
    exits_cleanly(&mut child, "the node");

    // Memory only when asked.
    let mut child = bin()
        .args(["node", "--listen", "127.0.0.1:0", "--in-memory"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    lines.next().unwrap().unwrap();
    assert!(lines.next().unwrap().unwrap().starts_with("data in memory"));
    unsafe_kill(child.id(), 15);
    exits_cleanly(&mut child, "the node");
}

#[test]
fn a_new_conversations_first_message_reaches_run_like_the_others() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    json(ferry(&a).args(["init", "--node", &node.url, "--json"]));
    let bob = json(ferry(&b).args(["init", "--node", &node.url, "--json"]));
    let bob_inbox = bob["inbox_id"].as_str().unwrap().to_string();
    let run = Run::start(&b);
    // Bob's `run` is subscribed once it has synced; a new group and its first message come
    // through the welcome and message streams, not the 10 s safety-net sync.
    let mut gaps = Vec::new();
    for i in 0..3 {
        let gid = json(ferry(&a).args(["group", "create", &bob_inbox, "--json"]))["id"]
            .as_str()
            .unwrap()
            .to_string();
        json(ferry(&a).args(["send", &gid, &format!("first {i}"), "--json"]));
        let sent = Instant::now();
        let want = format!(": first {i}");
        run.wait_for(|l| l.starts_with("message ") && l.ends_with(&want))
            .expect("run printed the first message");
        gaps.push(sent.elapsed());
    }
    // The safety-net sync runs every 10 s: every first message came well before it would.
    for g in &gaps {
        assert!(g.as_secs_f64() < 5.0, "first messages took {gaps:?}");
    }
}
