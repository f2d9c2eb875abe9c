//! History sync's request / reply core against a real node and a real history server on
//! loopback: a new installation asks, an online one answers through the history server, the
//! history arrives once.

use std::path::Path;
use std::time::Duration;

use ferry_history::{HistoryConfig, RunningHistoryServer};
use ferry_node::{NodeConfig, RunningNode};
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, Client, ClientOptions, Error, Group, GroupOptions, MessageQuery};
use zeroize::Zeroizing;

struct Net {
    node: RunningNode,
    history: RunningHistoryServer,
    dir: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let history = RunningHistoryServer::start(HistoryConfig {
            dir: dir.path().join("history"),
            ..Default::default()
        })
        .unwrap();
        Net {
            node: RunningNode::start(NodeConfig {
                listen: "127.0.0.1:0".into(),
                db: None,
            })
            .unwrap(),
            history,
            dir,
        }
    }

    fn create(
        &self,
        name: &str,
        account: AccountKey,
        history: bool,
    ) -> (Client, Option<Zeroizing<[u8; 32]>>) {
        let mut o = ClientOptions::new(self.dir.path().join(name), self.node.url(), account);
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        if history {
            o.history_sync_url = self.history.url();
        }
        let reg = Client::create(o).unwrap();
        (reg.client, reg.account_key)
    }

    fn payloads(&self) -> usize {
        count_files(&self.dir.path().join("history"))
    }
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
        .unwrap_or(0)
}

fn texts(g: &Group) -> Vec<String> {
    g.messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect()
}

#[test]
fn a_new_installation_gets_its_history_from_an_online_one_once() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    bob.sync_all().unwrap();
    g.send("before the new phone").unwrap();
    bob.sync_all().unwrap();
    bob.conversation(g.id()).unwrap().send("hi").unwrap();
    a1.sync_all().unwrap();

    // The new installation asks on start.
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), true);
    assert_eq!(net.payloads(), 0);
    // The old one, online, answers: an archive uploaded, a reply over the sync group.
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 1, "one archive uploaded");
    let r = a2.sync_all().unwrap();
    assert_eq!(r.history_imported, 1);
    let g2 = a2.conversation(g.id()).unwrap();
    assert_eq!(texts(&g2), ["before the new phone", "hi"]);
    assert!(
        g2.is_active().unwrap(),
        "and the old installation added the new one"
    );
    // Once: later syncs import nothing more, and nothing is uploaded again.
    assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    a1.sync_all().unwrap();
    assert_eq!(net.payloads(), 1);

    // History sync off: no request, no reply, no upload.
    let (a3, _) = net.create("a3", AccountKey::Existing(key), false);
    assert!(matches!(
        a3.send_sync_request(true, true),
        Err(Error::HistorySyncOff)
    ));
    a1.sync_all().unwrap();
    a3.sync_all().unwrap();
    assert_eq!(net.payloads(), 1);
    assert!(texts(&a3.conversation(g.id()).unwrap()).is_empty());
}

#[test]
fn a_payload_tampered_on_the_server_is_refused_and_nothing_is_imported() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("secret history").unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), true);
    a1.sync_all().unwrap();
    // The history server (or someone on it) flips a byte of the stored archive.
    let dir = net.dir.path().join("history");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    for _ in 0..3 {
        assert_eq!(a2.sync_all().unwrap().history_imported, 0);
    }
    let g2 = a2.conversation(g.id()).unwrap();
    assert!(texts(&g2).is_empty(), "nothing from the tampered archive");
    let store = a2.store();
    let imported = store
        .messages(&ferry_sdk::store::MessageFilter::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application && m.content_type.type_id != "sync")
        .count();
    assert_eq!(imported, 0, "only sync-group and membership rows");
}
