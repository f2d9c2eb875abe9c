//! SDK clients on different node replicas of one PostgreSQL database (a throwaway cluster
//! started here): the rules the clients rely on hold across replicas. Rival commits made at
//! once through two replicas end, on every member, in one epoch with both changes applied
//! (the first valid commit wins everywhere, the loser retries on the new epoch), and the
//! group goes on talking.

use std::time::Duration;

use ferry_node::{Database, NodeConfig, RunningNode};
use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};

struct Replicas {
    nodes: Vec<RunningNode>,
    dir: tempfile::TempDir,
}

impl Replicas {
    fn start(n: usize) -> Replicas {
        let url = ferry_testkit::Postgres::shared().fresh_database();
        let nodes = (0..n)
            .map(|_| {
                RunningNode::start(NodeConfig {
                    listen: "127.0.0.1:0".into(),
                    db: Database::parse(&url),
                    ..Default::default()
                })
                .unwrap()
            })
            .collect();
        Replicas {
            nodes,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new inbox whose installation talks to replica `replica`.
    fn client(&self, name: &str, replica: usize) -> Client {
        let mut o = ClientOptions::new(
            self.dir.path().join(name),
            self.nodes[replica].url(),
            AccountKey::New,
        );
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        Client::create(o).unwrap().client
    }
}

fn texts(g: &Group) -> Vec<String> {
    g.messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect()
}

fn view(c: &Client, id: &[u8]) -> (u64, Vec<String>, String) {
    let g = c.conversation(id).unwrap();
    let mut members: Vec<String> = g
        .members()
        .unwrap()
        .into_iter()
        .map(|m| m.inbox_id.to_string())
        .collect();
    members.sort();
    (g.epoch().unwrap(), members, g.name().unwrap())
}

#[test]
fn rival_commits_through_two_replicas_end_in_one_epoch_with_both_changes() {
    let net = Replicas::start(2);
    // Alice and Carol on replica 0, Bob and Dave on replica 1.
    let alice = net.client("alice", 0);
    let bob = net.client("bob", 1);
    let carol = net.client("carol", 0);
    let dave = net.client("dave", 1);
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    let id = g.id().to_vec();
    let everyone = [&alice, &bob, &carol, &dave];

    // Round 1: both add someone at once, through different replicas.
    let (c, d) = (carol.inbox_id().to_string(), dave.inbox_id().to_string());
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            alice
                .conversation(&id)
                .unwrap()
                .add_members(std::slice::from_ref(&c))
        });
        let b = s.spawn(|| {
            bob.conversation(&id)
                .unwrap()
                .add_members(std::slice::from_ref(&d))
        });
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    for cl in everyone {
        cl.sync_all().unwrap();
    }
    let views: Vec<_> = everyone.iter().map(|cl| view(cl, &id)).collect();
    assert_eq!(views[0].1.len(), 4, "no add was lost: {views:?}");
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");

    // Round 2: two members on different replicas rename the group at once: everyone ends
    // with the same name (the later commit's), in the same epoch.
    std::thread::scope(|s| {
        let a = s.spawn(|| carol.conversation(&id).unwrap().update_name("from carol"));
        let b = s.spawn(|| dave.conversation(&id).unwrap().update_name("from dave"));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    for cl in everyone {
        cl.sync_all().unwrap();
    }
    let views: Vec<_> = everyone.iter().map(|cl| view(cl, &id)).collect();
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
    assert!(
        ["from carol", "from dave"].contains(&views[0].2.as_str()),
        "{views:?}"
    );

    // The group still talks across replicas: everyone holds everyone's messages, once.
    std::thread::scope(|s| {
        for (i, cl) in everyone.iter().enumerate() {
            let id = &id;
            s.spawn(move || {
                let g = cl.conversation(id).unwrap();
                for j in 0..5 {
                    g.send(&format!("{i}-{j}")).unwrap();
                }
            });
        }
    });
    for cl in everyone {
        cl.sync_all().unwrap();
    }
    for cl in everyone {
        let mut got = texts(&cl.conversation(&id).unwrap());
        got.sort();
        let mut want: Vec<String> = (0..4)
            .flat_map(|i| (0..5).map(move |j| format!("{i}-{j}")))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
    for node in net.nodes {
        node.stop();
    }
}
