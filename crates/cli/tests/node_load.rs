//! Node load with a crash (issue 6, bounded for CI): 50 clients in 10 groups send at once
//! through `ferry node`, which is killed with SIGKILL halfway and restarted on the same file.
//! Afterwards every client holds every message of its group exactly once (checked here in
//! each client's own store, independently of the command's own check), received in the
//! node's order. `ferry bench load` with its defaults (1,000 messages each) is the long run.
#![cfg(unix)]

use std::collections::HashSet;
use std::process::Command;

use ferry_store::{ConversationFilter, MessageFilter, MessageKind, Store};

#[test]
fn fifty_clients_and_a_node_killed_midway_lose_and_double_nothing() {
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("run");
    let (clients, groups, messages) = (50usize, 10usize, 10usize);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_remove("FERRY_HOME")
        .args(["bench", "load", "--json"])
        .args(["--clients", &clients.to_string()])
        .args(["--groups", &groups.to_string()])
        .args(["--messages", &messages.to_string()])
        .arg("--keep")
        .arg(&keep)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["node_restarts"], 1);
    assert_eq!(report["exactly_once"], true, "{report}");
    assert_eq!(report["in_node_order"], true, "{report}");
    assert_eq!(report["messages_sent"], (clients * messages) as u64);

    every_store_holds_every_message_once(&keep, clients, groups, messages);
}

/// Each client's own store under `root`, read directly: its group's messages, each once, its
/// own among them.
fn every_store_holds_every_message_once(
    root: &std::path::Path,
    clients: usize,
    groups: usize,
    messages: usize,
) {
    let per_group = clients / groups * messages;
    for i in 0..clients {
        let store = Store::open(root.join(format!("c{i}")).join("ferry.db")).unwrap();
        let convs = store.conversations(&ConversationFilter::default()).unwrap();
        assert_eq!(convs.len(), 1, "client {i} is in one group");
        let texts: Vec<String> = store
            .messages(&MessageFilter {
                conversation_id: Some(convs[0].id.clone()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == MessageKind::Application)
            .filter_map(|m| m.text())
            .collect();
        let distinct: HashSet<&String> = texts.iter().collect();
        assert_eq!(texts.len(), per_group, "client {i}: every message once");
        assert_eq!(distinct.len(), per_group, "client {i}: no message twice");
        for j in 0..messages {
            assert!(
                distinct.contains(&format!("c{i} m{j}")),
                "client {i} has its own message {j}"
            );
        }
    }
}

/// Scale-out (issue 16, bounded for CI): the same load through a single SQLite node and then
/// through two `ferry node` replicas on one PostgreSQL database (a throwaway cluster started
/// here) behind the command's loopback balancer. One replica is SIGKILLed midway and stays
/// dead: its clients reconnect through the balancer to the other and resume from their
/// cursors. Every client holds every message of its group exactly once (read here from the
/// stores), in the node's order, and every message is in the database once.
#[test]
fn two_postgres_replicas_one_killed_midway_lose_and_double_nothing() {
    let pg = ferry_testkit::Postgres::shared();
    let url = pg.fresh_database();
    let t = tempfile::tempdir().unwrap();
    let keep = t.path().join("run");
    let (clients, groups, messages) = (20usize, 4usize, 10usize);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_remove("FERRY_HOME")
        .args(["bench", "load", "--json", "--replicas", "2", "--db", &url])
        .args(["--clients", &clients.to_string()])
        .args(["--groups", &groups.to_string()])
        .args(["--messages", &messages.to_string()])
        .arg("--keep")
        .arg(&keep)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let single = &both["single_sqlite_node"];
    let report = &both["postgres_replicas"];
    assert_eq!(single["backend"], "sqlite", "{both}");
    assert_eq!(report["backend"], "postgres", "{both}");
    assert_eq!(report["replicas"], 2);
    assert_eq!(report["node_restarts"], 1, "one replica killed");
    for r in [single, report] {
        assert_eq!(r["exactly_once"], true, "{r}");
        assert_eq!(r["in_node_order"], true, "{r}");
        assert_eq!(r["messages_sent"], (clients * messages) as u64);
        assert!(r["delivered_per_second"].as_f64().unwrap() > 0.0);
    }

    every_store_holds_every_message_once(&keep.join("postgres"), clients, groups, messages);

    // The database holds every sent message, plus the commits that set the groups up and any
    // send whose reply the kill cut off and that went out again (the clients drop that copy):
    // a few rows, not one per message.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let stored: i64 = db
        .query_one("SELECT COUNT(*) FROM group_messages", &[])
        .unwrap()
        .get(0);
    let sent = (clients * messages) as i64;
    assert!(
        stored >= sent && stored < sent + (clients * 2) as i64,
        "{stored} stored for {sent} sent"
    );
}
