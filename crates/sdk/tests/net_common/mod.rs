//! A real node and a real history server on loopback, with clients made in one temporary
//! folder: the set-up of the device sync tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ferry_history_server::{HistoryConfig, RunningHistoryServer};
use ferry_node::{NodeConfig, RunningNode};
use ferry_proto::message::{sync_payload, ContentTypeId, Envelope, SyncPayload};
use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};
use prost::Message as _;
use zeroize::Zeroizing;

/// A node and a history server on loopback, and a folder for clients.
pub struct Net {
    pub node: RunningNode,
    pub history: Option<RunningHistoryServer>,
    pub history_url: String,
    pub dir: tempfile::TempDir,
}

impl Net {
    pub fn new() -> Net {
        Net::with(|_| {})
    }

    /// A node and a history server whose configuration `tune` may change.
    pub fn with(tune: impl FnOnce(&mut HistoryConfig)) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let mut config = HistoryConfig {
            dir: dir.path().join("history"),
            ..Default::default()
        };
        tune(&mut config);
        let history = RunningHistoryServer::start(config).unwrap();
        Net {
            node: RunningNode::start(NodeConfig {
                listen: "127.0.0.1:0".into(),
                db: ferry_node::Database::Memory,
                ..Default::default()
            })
            .unwrap(),
            history_url: history.url(),
            history: Some(history),
            dir,
        }
    }

    pub fn stop_history(&mut self) -> std::net::SocketAddr {
        let h = self.history.take().unwrap();
        let addr = h.addr();
        h.stop();
        addr
    }

    pub fn start_history(&mut self, addr: std::net::SocketAddr) {
        self.history = Some(
            RunningHistoryServer::start(HistoryConfig {
                listen: addr.to_string(),
                dir: self.dir.path().join("history"),
                ..Default::default()
            })
            .unwrap(),
        );
    }

    pub fn create(
        &self,
        name: &str,
        account: AccountKey,
        history: bool,
    ) -> (Client, Option<Zeroizing<[u8; 32]>>) {
        let mut o = ClientOptions::new(self.dir.path().join(name), self.node.url(), account);
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        if history {
            o.history_sync_url = self.history_url.clone();
        }
        let reg = Client::create(o).unwrap();
        (reg.client, reg.account_key)
    }

    /// Alice's first installation (history sync on or off) in a group with bob, with one
    /// message: alice, her account key, bob and the group.
    pub fn alice_in_a_group(
        &self,
        history: bool,
        text: &str,
    ) -> (Client, Zeroizing<[u8; 32]>, Client, Group) {
        let (a1, key) = self.create("a1", AccountKey::New, history);
        let (bob, _) = self.create("bob", AccountKey::New, false);
        let g = a1
            .create_group(&[bob.inbox_id().into()], GroupOptions::default())
            .unwrap();
        g.send(text).unwrap();
        (a1, key.unwrap(), bob, g)
    }

    pub fn payloads(&self) -> usize {
        count_files(&self.dir.path().join("history"))
    }
}

pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
        .unwrap_or(0)
}

pub fn texts(g: &Group) -> Vec<String> {
    g.messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect()
}

/// A sync-group payload as an installation would send it (for forged and replayed replies).
pub fn sync_envelope(kind: sync_payload::Kind) -> Envelope {
    Envelope {
        content_type: Some(ContentTypeId {
            authority: "ferry.chat".into(),
            type_id: "sync".into(),
            major: 1,
            minor: 0,
        }),
        content: SyncPayload { kind: Some(kind) }.encode_to_vec(),
        fallback: None,
        sent_at_ns: ferry_sdk::now_ns(),
        reference_id: None,
        parameters: None,
        idempotency_key: None,
    }
}
