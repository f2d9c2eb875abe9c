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

    // Each client's own store, read directly.
    let per_group = clients / groups * messages;
    for i in 0..clients {
        let store = Store::open(keep.join(format!("c{i}")).join("ferry.db")).unwrap();
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
