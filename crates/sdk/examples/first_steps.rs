//! First steps with the Ferry SDK: two inboxes chat through a delivery node.
//!
//!     cargo run -p ferry-sdk --example first_steps
//!
//! The node runs in this process on loopback (in production it is `ferry node`); each client
//! keeps its store in its own folder. README.md shows the same code.

use ferry_node::{NodeConfig, RunningNode};
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, Client, ClientOptions, GroupOptions, MessageQuery};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = RunningNode::start(NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: None,
        ..Default::default()
    })?;
    let dir = tempfile::tempdir()?;

    // Register two inboxes, one installation each. `account_key` controls the inbox: keep it.
    let alice = Client::create(ClientOptions::new(
        dir.path().join("alice"),
        node.url(),
        AccountKey::New,
    ))?;
    let bob = Client::create(ClientOptions::new(
        dir.path().join("bob"),
        node.url(),
        AccountKey::New,
    ))?;
    let (alice, bob) = (alice.client, bob.client);

    // Alice starts a group with Bob and says hello.
    let group = alice.create_group(&[bob.inbox_id().to_string()], GroupOptions::default())?;
    group.send("hello bob")?;

    // Bob syncs: he joins the group and reads the message.
    bob.sync_all()?;
    for m in bob
        .conversation(group.id())?
        .messages(&MessageQuery::default())?
    {
        if m.kind == MessageKind::Application {
            println!(
                "{}: {}",
                &m.sender_inbox_id[..8],
                m.text().unwrap_or_default()
            );
        }
    }
    Ok(())
}
