//! A person's history moving to a new installation, on the async SDK: backup, restore,
//! re-adding and history sync.
//!
//!     cargo run -p ferry-sdk --example history_journey
//!
//! A delivery node and a history server run in this process on loopback (in production they
//! are `ferry node` and `ferry history-server`); each installation keeps its store in its own
//! folder of a temporary directory. Alice's phone and Bob chat in a DM and a group; the phone
//! backs up; Alice's new tablet restores the backup (read-only), the phone re-adds it, and
//! history sync brings what the backup lacked. Every step checks what it says: a failed check
//! ends the program with an error (exit code 1).

use std::path::Path;
use std::time::Instant;

use ferry_history_server::{HistoryConfig, RunningHistoryServer};
use ferry_node::RunningNode;
use ferry_sdk::archive::{ArchiveOptions, Control, SignatureStatus};
use ferry_sdk::store::MessageKind;
use ferry_sdk::{
    AccountKey, ArchiveKey, Client, ClientOptions, Conversation, ConversationId, Error,
    GroupOptions, InboxId, MessageQuery, SyncOptions,
};

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Ends the program with `what` unless `ok`.
fn check(ok: bool, what: &str) -> Result {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

/// A new installation in `<dir>/<name>`: of a new inbox (`AccountKey::New`) or of the inbox
/// whose account key is given.
async fn install(
    dir: &Path,
    name: &str,
    node_url: &str,
    account: AccountKey,
) -> Result<(Client, Option<zeroize::Zeroizing<[u8; 32]>>)> {
    let registration =
        Client::create(ClientOptions::new(dir.join(name), node_url, account)).await?;
    Ok((registration.client, registration.account_key))
}

fn inbox(client: &Client) -> Result<InboxId> {
    Ok(client.inbox_id().clone())
}

fn conversation(client: &Client, id: &ConversationId) -> Result<Conversation> {
    Ok(client
        .conversations()
        .get_conversation_by_id(id)?
        .ok_or_else(|| format!("no conversation {id} on {}", client.inbox_id()))?)
}

/// A conversation's texts, oldest first.
fn texts(client: &Client, id: &ConversationId) -> Result<Vec<String>> {
    Ok(conversation(client, id)?
        .messages(&MessageQuery::default())?
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect())
}

#[tokio::main]
async fn main() -> Result {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let node = RunningNode::start(Default::default())?;
    let history = RunningHistoryServer::start(HistoryConfig {
        dir: dir.join("history-server"),
        ..Default::default()
    })?;
    let node_url = node.url();
    println!(
        "1. A delivery node at {node_url} and a history server at {}",
        history.url()
    );

    // Two inboxes: Alice (her phone) and Bob.
    let (phone, account_key) = install(dir, "alice-phone", &node_url, AccountKey::New).await?;
    let account_key = account_key.ok_or("a new inbox comes with its account key")?;
    phone.set_history_sync_url(&history.url())?;
    let (bob, _) = install(dir, "bob", &node_url, AccountKey::New).await?;
    println!(
        "2. Alice's phone (inbox {:.8}…) and Bob (inbox {:.8}…) registered",
        phone.inbox_id(),
        bob.inbox_id()
    );

    // They chat in a group and a DM.
    let trip = GroupOptions {
        name: "Trip".into(),
        ..Default::default()
    };
    let group = phone
        .conversations()
        .create_group(&[inbox(&bob)?], trip)
        .await?;
    let group_id = group.conversation_id();
    group.send_text("Who's in for the trip?").await?;
    bob.conversations().sync_all(&[]).await?;
    conversation(&bob, &group_id)?
        .send_text("Me! I'll bring the tent.")
        .await?;
    let dm = bob
        .conversations()
        .find_or_create_dm(&inbox(&phone)?)
        .await?;
    let dm_id = dm.id();
    dm.send_text("Can you send me the address?").await?;
    phone.conversations().sync_all(&[]).await?;
    conversation(&phone, &dm_id)?
        .send_text("12 Harbour Road.")
        .await?;
    bob.conversations().sync_all(&[]).await?;
    check(texts(&bob, &dm_id)?.len() == 2, "bob has both DM messages")?;
    println!("3. They chat: 2 messages in the group \"Trip\", 2 in their DM");

    // The phone backs up.
    let key = ArchiveKey::generate();
    let backup = dir.join("alice-backup.ferry");
    let made = phone
        .create_archive(&backup, &key, &ArchiveOptions::default(), &Control::new())
        .await?;
    let metadata = phone.archive_metadata(&backup, &key).await?;
    check(
        metadata.signature == SignatureStatus::Valid,
        "the backup is signed by the phone",
    )?;
    check(
        made.conversation_count == Some(2),
        "the backup holds both conversations",
    )?;
    println!(
        "4. The phone backs up: {} conversations, {} messages, {} bytes, signed by the phone",
        made.conversation_count.unwrap_or(0),
        made.message_count.unwrap_or(0),
        made.file_bytes
    );

    // Life goes on: messages the backup does not have.
    conversation(&bob, &group_id)?
        .send_text("The bus leaves at 9.")
        .await?;
    phone.conversations().sync_all(&[]).await?;
    conversation(&phone, &dm_id)?
        .send_text("See you at the station.")
        .await?;
    bob.conversations().sync_all(&[]).await?;
    println!("5. After the backup: one more message in the group, one more in the DM");

    // A new installation of Alice's inbox (her tablet, same account key) restores the backup.
    // (History sync is turned on later, in step 8, so that each step shows on its own; an app
    // would give the history server at creation and the tablet would ask at once.)
    let (tablet, _) = install(
        dir,
        "alice-tablet",
        &node_url,
        AccountKey::Existing(account_key),
    )
    .await?;
    let report = tablet
        .import_archive(&backup, &key, &Control::new())
        .await?;
    check(
        report.conversations_added == 2,
        "both conversations restored",
    )?;
    let restored = conversation(&tablet, &group_id)?;
    check(
        !restored.is_active()?,
        "a restored conversation is inactive",
    )?;
    match restored.send_text("Hello from the tablet").await {
        Err(e @ Error::Inactive) => println!(
            "6. The tablet imports the backup: {} conversations, {} messages, read-only \
             (sending fails: \"{e}\")",
            report.conversations_added, report.messages_imported
        ),
        other => return Err(format!("sending on a restored conversation gave {other:?}").into()),
    }

    // The phone syncs: it adds its inbox's new installation to every recent conversation, and
    // the tablet's welcomes turn the restored conversations active.
    let added = phone.conversations().sync_all(&[]).await?;
    check(
        added.installations_added_to == 2,
        "the phone re-adds the tablet to both",
    )?;
    tablet.conversations().sync_all(&[]).await?;
    check(
        conversation(&tablet, &group_id)?.is_active()?,
        "the group is active again",
    )?;
    check(
        conversation(&tablet, &dm_id)?.is_active()?,
        "the DM is active again",
    )?;
    conversation(&tablet, &group_id)?
        .send_text("Hello from the tablet")
        .await?;
    for reader in [&bob, &phone] {
        reader.conversations().sync_all(&[]).await?;
        let last = texts(reader, &group_id)?.pop();
        check(
            last.as_deref() == Some("Hello from the tablet"),
            "bob and the phone read the tablet",
        )?;
    }
    println!(
        "7. The phone re-adds the tablet to {} conversations: both active again; the tablet \
         writes, Bob and the phone read it",
        added.installations_added_to
    );

    // What the backup lacked and the tablet missed while it was not a member.
    let missing: Vec<String> = [&group_id, &dm_id]
        .into_iter()
        .map(|id| Ok((texts(&phone, id)?, texts(&tablet, id)?)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flat_map(|(phone, tablet)| phone.into_iter().filter(move |t| !tablet.contains(t)))
        .collect();
    check(
        missing.len() == 2,
        "the tablet lacks the two messages sent after the backup",
    )?;
    println!("8. The tablet lacks {missing:?}; it asks for history:");

    // History sync: the tablet asks over its inbox's sync group, the phone answers with an
    // encrypted archive on the history server, the tablet imports it.
    tablet.set_history_sync_url(&history.url())?;
    let pin = tablet
        .device_sync()
        .send_sync_request(&SyncOptions::default())
        .await?;
    println!("   the tablet sends a history request ({:.8}…)", pin);
    phone.device_sync().sync_all_device_sync_groups().await?;
    let available = tablet.device_sync().list_available_archives(1).await?;
    let answer = available
        .iter()
        .find(|a| a.pin == pin)
        .ok_or("the phone answered")?;
    println!(
        "   the phone answers: an archive of {} messages, {} bytes on the history server",
        answer.message_count, answer.size_bytes
    );
    let imported = tablet
        .device_sync()
        .process_sync_archive(Some(&pin))
        .await?;
    println!(
        "   the tablet imports it: {} messages new, {} already there",
        imported.messages_imported, imported.messages_skipped
    );
    for id in [&group_id, &dm_id] {
        check(
            texts(&tablet, id)? == texts(&phone, id)?,
            "the tablet has what the phone has",
        )?;
    }
    println!("9. The tablet's history is whole:");
    for (name, id) in [("Trip", &group_id), ("DM with Bob", &dm_id)] {
        println!("   {name}: {}", texts(&tablet, id)?.join(" / "));
    }
    println!("Done in {} ms.", started.elapsed().as_millis());
    Ok(())
}
