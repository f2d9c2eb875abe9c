//! Replies, reactions and files through the `ferry` binary against `ferry node` and
//! `ferry history-server` on loopback, and what `messages list --json` says of them.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::Value;

fn init_with_history(home: &std::path::Path, node: &Node, history: &str) -> Value {
    json(ferry(home).args([
        "init",
        "--node",
        &node.url,
        "--history-url",
        history,
        "--json",
    ]))
}

fn listed(home: &std::path::Path, gid: &str) -> Vec<Value> {
    json(ferry(home).args(["messages", "list", "--conversation", gid, "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "application")
        .cloned()
        .collect()
}

#[test]
fn replies_reactions_and_files_round_trip_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let history = HistoryServer::start(&t.path().join("history"));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    init_with_history(&a, &node, &history.url);
    let bob = init_with_history(&b, &node, &history.url);
    let gid = create_group(&a, &[bob["inbox_id"].as_str().unwrap()]);
    let hello = json(ferry(&a).args(["send", &gid, "look at this", "--json"]));
    assert_eq!(hello["content_kind"], "text");
    let hello = hello["message_id"].as_str().unwrap().to_string();
    json(ferry(&b).args(["sync", "--json"]));

    let reply = json(ferry(&b).args(["send", &gid, "nice!", "--reply-to", &hello, "--json"]));
    assert_eq!(reply["content_kind"], "reply");
    json(ferry(&b).args(["react", &gid, &hello, "👍", "--json"]));
    json(ferry(&b).args(["react", &gid, &hello, "🔥", "--json"]));
    json(ferry(&b).args(["react", &gid, &hello, "🔥", "--remove", "--json"]));

    let small = t.path().join("cat.png");
    std::fs::write(&small, vec![3u8; 5000]).unwrap();
    let big = t.path().join("movie.mp4");
    let big_bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &big_bytes).unwrap();
    let s = json(ferry(&a).args(["send-file", &gid, small.to_str().unwrap(), "--json"]));
    assert_eq!(s["content_kind"], "attachment");
    let inline_id = s["message_id"].as_str().unwrap().to_string();
    let s = json(ferry(&a).args(["send-file", &gid, big.to_str().unwrap(), "--json"]));
    assert_eq!(s["content_kind"], "remote_attachment");
    let remote_id = s["message_id"].as_str().unwrap().to_string();
    assert_eq!(
        count_files(&t.path().join("history").join("attachments")),
        1,
        "one encrypted upload, in the history server's attachment class"
    );
    json(ferry(&b).args(["sync", "--json"]));
    json(ferry(&a).args(["sync", "--json"]));

    for home in [&a, &b] {
        let list = listed(home, &gid);
        let kinds: Vec<&str> = list
            .iter()
            .map(|m| m["content_kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "text",
                "reply",
                "reaction",
                "reaction",
                "reaction",
                "attachment",
                "remote_attachment"
            ]
        );
        let first = &list[0];
        assert_eq!(first["text"], "look at this");
        assert_eq!(first["reactions"].as_array().unwrap().len(), 1, "{first}");
        assert_eq!(first["reactions"][0]["content"], "👍");
        assert_eq!(first["reactions"][0]["count"], 1);
        assert_eq!(first["reactions"][0]["inbox_ids"][0], bob["inbox_id"]);
        assert_eq!(list[1]["reply_to"], hello.as_str());
        assert_eq!(list[1]["text"], "nice!");
        assert_eq!(list[1]["content_type"], "xmtp.org/reply:1.0");
        assert_eq!(list[2]["content_type"], "xmtp.org/reaction:2.0");
        assert!(list[2]["fallback"].as_str().unwrap().contains("👍"));
        let inline = &list[5]["attachment"];
        assert_eq!(inline["filename"], "cat.png");
        assert_eq!(inline["mime_type"], "image/png");
        assert_eq!(inline["size"], 5000);
        assert_eq!(inline["stored"], true);
        let remote = &list[6]["attachment"];
        assert_eq!(remote["filename"], "movie.mp4");
        // The sender keeps its encrypted file; bob has only the message until he fetches it.
        assert_eq!(remote["stored"], *home == a, "{home:?}");
        assert!(remote["url"].as_str().unwrap().starts_with(&history.url));
    }

    // Both files come back whole on the other side.
    let out = t.path().join("got.png");
    let got = json(ferry(&b).args([
        "attachment",
        "get",
        &inline_id,
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(got["remote"], false);
    assert_eq!(std::fs::read(&out).unwrap(), vec![3u8; 5000]);
    let out = t.path().join("got.mp4");
    let got = json(ferry(&b).args([
        "attachment",
        "get",
        &remote_id,
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(got["remote"], true);
    assert_eq!(got["mime_type"], "video/mp4");
    assert_eq!(std::fs::read(&out).unwrap(), big_bytes);

    assert_eq!(
        listed(&b, &gid)[6]["attachment"]["stored"],
        true,
        "kept once fetched"
    );

    // A message that is no attachment says so, and writes nothing.
    let out = t.path().join("nothing");
    let err = fails(ferry(&b).args(["attachment", "get", &hello, out.to_str().unwrap()]));
    assert!(err.contains("not an attachment"), "{err}");
    assert!(!out.exists());

    // A backup with element attachments carries the movie; after the history server dropped
    // it, a restore from that backup still plays it, one without the files cannot.
    let key = t.path().join("backup.key");
    std::fs::write(&key, [5u8; 32]).unwrap();
    let (with, without) = (t.path().join("with.ferry"), t.path().join("without.ferry"));
    // A scheduled backup (here run now) with element attachments carries the file too.
    let backups = t.path().join("backups");
    json(ferry(&b).args([
        "backup",
        "policy",
        "set",
        "--frequency",
        "never",
        "--elements",
        "messages,consent,attachments",
        "--key-file",
        key.to_str().unwrap(),
        "--destination",
        backups.to_str().unwrap(),
        "--json",
    ]));
    json(ferry(&b).args(["backup", "run", "--now", "--json"]));
    let backup = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "ferry"))
        .expect("a backup file");
    let meta = archive(&b, "inspect", &backup, &key, &[]);
    assert_eq!(meta["attachment_count"], 1, "{meta}");
    let meta = archive(
        &b,
        "create",
        &with,
        &key,
        &["--elements", "messages,consent,attachments"],
    );
    assert_eq!(meta["attachment_count"], 1);
    archive(&b, "create", &without, &key, &[]);
    let attachments = t.path().join("history").join("attachments");
    for e in std::fs::read_dir(&attachments).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::remove_file(p).unwrap();
        }
    }
    assert_eq!(count_files(&attachments), 0);
    for (name, file, plays) in [("r1", &with, true), ("r2", &without, false)] {
        let home = t.path().join(name);
        let report = archive(&home, "import", file, &key, &[]);
        assert_eq!(report["attachments_imported"], u64::from(plays));
        assert_eq!(listed(&home, &gid)[6]["attachment"]["stored"], plays);
    }
}

#[test]
fn disappearing_messages_through_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let node = Node::start(&t.path().join("node.db"));
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    init(&a, &node, None);
    let bob = init(&b, &node, None);
    let gid = create_group(&a, &[bob["inbox_id"].as_str().unwrap()]);
    json(ferry(&a).args(["send", &gid, "stays", "--json"]));
    // A duration the CLI cannot read is refused with one clear line.
    let err = fails(ferry(&a).args(["group", "set-disappearing", &gid, "--after", "soon"]));
    assert!(err.contains("not a duration"), "{err}");
    let set = json(ferry(&a).args(["group", "set-disappearing", &gid, "--after", "3s", "--json"]));
    assert_eq!(set["disappearing"]["in_ns"], 3_000_000_000i64);
    assert_eq!(set["disappearing"]["after"], "3s");
    json(ferry(&b).args(["sync", "--json"]));
    let listed_b = json(ferry(&b).args(["conversations", "list", "--json"]));
    assert_eq!(listed_b[0]["disappearing"]["in_ns"], 3_000_000_000i64);
    json(ferry(&b).args(["send", &gid, "vanishes", "--json"]));
    json(ferry(&a).args(["sync", "--json"]));
    let list = listed(&a, &gid);
    let vanishing = list.iter().find(|m| m["text"] == "vanishes").unwrap();
    let expire = vanishing["expire_at_ns"].as_i64().unwrap();
    assert_eq!(
        expire,
        vanishing["sent_at_ns"].as_i64().unwrap() + 3_000_000_000
    );
    assert!(list.iter().find(|m| m["text"] == "stays").unwrap()["expire_at_ns"].is_null());

    // An archive made with the option leaves it out.
    let key = t.path().join("k");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let out = t.path().join("x.ferry");
    let meta = archive(
        &a,
        "create",
        &out,
        &key,
        &["--exclude-disappearing-messages"],
    );
    let with = archive(&a, "create", &t.path().join("y.ferry"), &key, &[]);
    assert_eq!(
        with["message_count"].as_u64().unwrap(),
        meta["message_count"].as_u64().unwrap() + 1
    );

    // After its time, every command sees it gone (opening deletes what expired).
    let wait = expire - ferry_sdk::now_ns();
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_nanos(wait as u64 + 50_000_000));
    }
    for home in [&a, &b] {
        assert_eq!(texts(home, &gid), vec!["stays"]);
    }
    let off = json(ferry(&a).args(["group", "set-disappearing", &gid, "--off", "--json"]));
    assert!(off["disappearing"].is_null());
}

/// `ferry archive VERB PATH --key-file KEY [EXTRA...] --json`.
fn archive(
    home: &std::path::Path,
    verb: &str,
    path: &std::path::Path,
    key: &std::path::Path,
    extra: &[&str],
) -> Value {
    json(
        ferry(home)
            .args(["archive", verb])
            .arg(path)
            .arg("--key-file")
            .arg(key)
            .args(extra)
            .arg("--json"),
    )
}
