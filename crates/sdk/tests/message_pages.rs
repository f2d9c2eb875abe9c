//! The fast messaging paths against a real node on loopback: a page of messages applied in
//! one transaction (a bad message in it undoes only itself), the node's `last_page` answer,
//! several sends in flight reaching the node in call order, and optimistic sends published
//! later.

use std::time::Duration;

use ferry_node::{AccessPolicy, NodeConfig, RunningNode};
use ferry_proto::node::GroupMessageInput;
use ferry_sdk::blocking::{block_on, Client, Group};
use ferry_sdk::store::{DeliveryStatus, MessageKind};
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};
use ferry_transport::{GrpcTransport, Transport};

mod net_common;
use net_common::texts;

struct Net {
    node: RunningNode,
    dir: tempfile::TempDir,
}

impl Net {
    /// A node that checks no signatures: the tests put raw bytes on a group's topic.
    fn open() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let node = RunningNode::start(NodeConfig {
            listen: "127.0.0.1:0".into(),
            access: AccessPolicy::open(),
            ..Default::default()
        })
        .unwrap();
        Net { node, dir }
    }

    fn client(&self, name: &str) -> Client {
        let mut o =
            ClientOptions::new(self.dir.path().join(name), self.node.url(), AccountKey::New);
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        Client::create(o).unwrap().client
    }

    /// Alice and Bob in one group, Bob joined.
    fn pair(&self) -> (Client, Client, Group) {
        let alice = self.client("alice");
        let bob = self.client("bob");
        let g = alice
            .create_group(&[bob.inbox_id().to_string()], GroupOptions::default())
            .unwrap();
        bob.sync_all().unwrap();
        (alice, bob, g)
    }
}

/// A raw connection to the node, made on the blocking SDK's runtime (its calls run there too).
fn raw(net: &Net) -> GrpcTransport {
    let url = net.node.url();
    block_on(async move { GrpcTransport::connect(&url) }).unwrap()
}

#[test]
fn bad_messages_inside_a_page_are_skipped_and_the_good_ones_around_them_kept() {
    let net = Net::open();
    let (_alice, bob, g) = net.pair();
    let t = raw(&net);
    let junk = |data: &[u8]| {
        block_on(t.send_group_messages(vec![GroupMessageInput {
            group_id: g.id().to_vec(),
            data: data.to_vec(),
            commit_epoch: None,
        }]))
        .unwrap()
    };
    g.send("one").unwrap();
    junk(b"not an MLS message");
    g.send("two").unwrap();
    // A real message sent twice: the second copy reuses a spent ratchet generation.
    let page = block_on(t.query_group_messages(g.id(), 0, 1000)).unwrap();
    let copy = page.items.last().unwrap().data.clone();
    junk(&copy);
    g.send("three").unwrap();

    let report = bob.sync_all().unwrap();
    assert_eq!(report.messages_processed, 3, "{report:?}");
    let bg = bob.conversation(g.id()).unwrap();
    assert_eq!(texts(&bg), ["one", "two", "three"]);
    // Everything was handled: the cursor is past the junk, nothing is applied again.
    assert_eq!(bob.sync_all().unwrap().messages_processed, 0);
    assert_eq!(texts(&bg), ["one", "two", "three"]);
    // And the group still works both ways after the page.
    bg.send("four").unwrap();
    g.sync().unwrap();
    assert_eq!(texts(&g), ["one", "two", "three", "four"]);
}

#[test]
fn the_node_says_which_page_is_the_last() {
    let net = Net::open();
    let (_alice, _bob, g) = net.pair();
    for i in 0..5 {
        g.send(&format!("m{i}")).unwrap();
    }
    let t = raw(&net);
    let all = block_on(t.query_group_messages(g.id(), 0, 1000)).unwrap();
    assert!(all.last_page, "everything in one page");
    let n = all.items.len();
    assert!(n >= 5, "{n} messages (the welcome's commit and five texts)");
    let first = block_on(t.query_group_messages(g.id(), 0, 2)).unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(!first.last_page, "more after the first two");
    let exact = block_on(t.query_group_messages(g.id(), 0, n as u32)).unwrap();
    assert_eq!(exact.items.len(), n);
    assert!(
        exact.last_page,
        "a page that ends exactly at the last message is the last"
    );
    let tail = block_on(t.query_group_messages(g.id(), all.cursor, 2)).unwrap();
    assert!(tail.items.is_empty() && tail.last_page);
}

#[test]
fn sends_in_flight_together_reach_every_member_once_in_call_order() {
    let net = Net::open();
    let (alice, bob, g) = net.pair();
    let want: Vec<String> = (0..150).map(|i| format!("m{i}")).collect();
    let inner: &ferry_sdk::Group = &g;
    let sends = want.iter().map(|text| inner.send_text(text));
    let ids: Vec<Vec<u8>> = block_on(futures::future::join_all(sends))
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids.len(), 150);
    // The sender's own copies are published, in the order of the calls.
    let mine = g.messages(&MessageQuery::default()).unwrap();
    let mine: Vec<_> = mine
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .collect();
    assert_eq!(
        mine.iter().filter_map(|m| m.text()).collect::<Vec<_>>(),
        want
    );
    assert!(mine
        .iter()
        .all(|m| m.delivery_status == DeliveryStatus::Published));
    // The node holds each once, in that order.
    bob.sync_all().unwrap();
    assert_eq!(texts(&bob.conversation(g.id()).unwrap()), want);
    drop(alice);
}

fn unpublished_count(g: &Group) -> usize {
    g.messages(&MessageQuery::default())
        .unwrap()
        .iter()
        .filter(|m| m.delivery_status == DeliveryStatus::Unpublished)
        .count()
}

#[test]
fn optimistic_sends_wait_in_the_outbox_until_published() {
    let net = Net::open();
    let (_alice, bob, g) = net.pair();
    for i in 0..5 {
        g.send_text_optimistic(&format!("o{i}")).unwrap();
    }
    assert_eq!(unpublished_count(&g), 5);
    assert_eq!(
        bob.sync_all().unwrap().messages_processed,
        0,
        "nothing on the node yet"
    );
    assert_eq!(g.publish_messages().unwrap(), 5);
    assert_eq!(g.publish_messages().unwrap(), 0, "published once");
    assert_eq!(unpublished_count(&g), 0);
    bob.sync_all().unwrap();
    assert_eq!(
        texts(&bob.conversation(g.id()).unwrap()),
        ["o0", "o1", "o2", "o3", "o4"]
    );
}
