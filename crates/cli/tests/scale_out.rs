//! The scaled-out servers through the `ferry` binary (issue 16): two `ferry node` replicas on
//! one PostgreSQL database and a `ferry history-server` on an S3 bucket (a throwaway
//! PostgreSQL cluster and moto, started here). Alice's old installation and her new one talk
//! to different node replicas; the new installation gets its history through the history
//! server, which keeps payloads in the bucket. (Installations of one inbox download only from
//! their configured history server, so a deployment gives them one URL in front of its
//! history-server replicas; two replicas on one bucket serving each other's uploads are
//! tested in crates/history-server.)
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::*;

/// `ferry ARGS` with `envs`; the child and the two first lines it prints.
fn spawn_with(args: &[&str], envs: &[(&'static str, String)]) -> (Child, String, String) {
    let mut child = bin()
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    let second = lines.next().unwrap().unwrap();
    (child, addr, second)
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_new_installation_gets_its_history_through_node_replicas_and_an_s3_history_server() {
    let pg = ferry_testkit::Postgres::shared();
    let db = pg.fresh_database();
    let s3 = ferry_testkit::S3::start();
    s3.create_bucket("ferry-history");
    let mut children = Killed(Vec::new());

    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (child, addr, second) =
            spawn_with(&["node", "--listen", "127.0.0.1:0", "--db", &db], &[]);
        children.0.push(child);
        // Where the data is, with no password in it.
        assert_eq!(second, format!("data in {db}"));
        nodes.push(format!("http://{addr}"));
    }
    let history = {
        let (child, addr, second) = spawn_with(
            &[
                "history-server",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "s3://ferry-history/payloads",
            ],
            &s3.env(),
        );
        children.0.push(child);
        assert!(second.contains("s3://ferry-history/payloads"), "{second}");
        format!("http://{addr}")
    };

    let t = tempfile::tempdir().unwrap();
    let (a1, a2, b) = (t.path().join("a1"), t.path().join("a2"), t.path().join("b"));
    let init =
        |home: &std::path::Path, node: &str, history: &str, key: Option<&std::path::Path>| {
            let mut c = ferry(home);
            c.args(["init", "--node", node, "--history-url", history, "--json"]);
            if let Some(k) = key {
                c.arg("--account-key").arg(k);
            }
            json(&mut c)
        };
    init(&a1, &nodes[0], &history, None);
    let bob = init(&b, &nodes[1], &history, None);
    let bob_inbox = bob["inbox_id"].as_str().unwrap();
    let gid = json(ferry(&a1).args(["group", "create", bob_inbox, "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    json(ferry(&a1).args(["send", &gid, "sent through replica one", "--json"]));
    json(ferry(&b).args(["sync", "--json"]));
    json(ferry(&b).args(["send", &gid, "sent through replica two", "--json"]));
    json(ferry(&a1).args(["sync", "--json"]));
    assert_eq!(
        texts(&a1, &gid),
        ["sent through replica one", "sent through replica two"]
    );

    // Alice's new installation, on the other replica.
    let run = Run::start(&a1);
    init(&a2, &nodes[1], &history, Some(&a1.join("account.key")));
    run.wait_for(|l| l.starts_with("new installation of this inbox"))
        .unwrap_or_else(|| panic!("run adds the new installation:\n{}", run.log()));
    let outcome = json(ferry(&a2).args(["history", "sync", "--wait-secs", "30", "--json"]));
    if outcome["status"] != "imported" {
        let listed = ferry(&a2)
            .args(["history", "list", "--json"])
            .output()
            .unwrap();
        panic!(
            "{outcome}\nthe old installation's run:\n{}\nhistory list: {}",
            run.log(),
            String::from_utf8_lossy(&listed.stdout),
        );
    }
    drop(run);
    assert_eq!(
        texts(&a2, &gid),
        ["sent through replica one", "sent through replica two"],
        "history arrived through the bucket"
    );
    // And the new installation takes part: Bob, on the other replica, gets its message.
    json(ferry(&a2).args(["sync", "--json"]));
    json(ferry(&a2).args(["send", &gid, "from the new phone", "--json"]));
    json(ferry(&b).args(["sync", "--json"]));
    assert_eq!(texts(&b, &gid).last().unwrap(), "from the new phone");
}
