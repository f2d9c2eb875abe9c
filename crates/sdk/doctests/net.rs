// The in-process network of the SDK's doc examples, which `include!` it from hidden lines
// (it is not part of the crate): a delivery node and a history server on loopback, and a
// temporary folder for the installations' stores. Everything stops when it is dropped.

/// A node, a history server and a folder, for one doc example.
struct Net {
    node: ferry_node::RunningNode,
    history: ferry_history_server::RunningHistoryServer,
    dir: tempfile::TempDir,
}

impl Net {
    fn start() -> Net {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let history = ferry_history_server::RunningHistoryServer::start(
            ferry_history_server::HistoryConfig {
                dir: dir.path().join("history"),
                ..Default::default()
            },
        )
        .expect("a history server on loopback");
        let node = ferry_node::RunningNode::start(Default::default()).expect("a node on loopback");
        Net { node, history, dir }
    }

    /// The folder the installations' stores go in.
    fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn node_url(&self) -> String {
        self.node.url()
    }

    fn history_url(&self) -> String {
        self.history.url()
    }

    /// A new inbox's first installation in `<dir>/<name>`, history sync on.
    async fn client(&self, name: &str) -> ferry_sdk::Result<ferry_sdk::Client> {
        let mut options = ferry_sdk::ClientOptions::new(
            self.dir().join(name),
            self.node_url(),
            ferry_sdk::AccountKey::New,
        );
        options.history_sync_url = self.history_url();
        Ok(ferry_sdk::Client::create(options).await?.client)
    }
}
