//! First steps with the Ferry SDK: two inboxes chat through a delivery node.
//!
//!     cargo run -p ferry-sdk --example first_steps
//!
//! The node runs in this process on loopback (in production it is `ferry node`); each client
//! keeps its store in its own folder. README.md shows the same code.

use ferry_node::RunningNode;
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, Client, ClientOptions, GroupOptions, MessageQuery};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = RunningNode::start(Default::default())?; // on 127.0.0.1, a free port
    let dir = tempfile::tempdir()?;

    // Register two inboxes, one installation each. `account_key` controls the inbox: keep it.
    let alice = Client::create(ClientOptions::new(
        dir.path().join("alice"),
        node.url(),
        AccountKey::New,
    ))
    .await?;
    let bob = Client::create(ClientOptions::new(
        dir.path().join("bob"),
        node.url(),
        AccountKey::New,
    ))
    .await?;
    let (alice, bob) = (alice.client, bob.client);

    // Alice starts a group with Bob and says hello.
    let bob_inbox = bob.inbox_id().clone();
    let group = alice
        .conversations()
        .create_group(&[bob_inbox], GroupOptions::default())
        .await?;
    group.send_text("hello bob").await?;

    // Bob syncs: he joins the group and reads the message.
    bob.conversations().sync_all(&[]).await?;
    let conversation = bob
        .conversations()
        .get_conversation_by_id(&group.conversation_id())?
        .ok_or("bob has not joined the group")?;
    for m in conversation.messages(&MessageQuery::default())? {
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
