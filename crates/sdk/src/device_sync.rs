//! [`Client::device_sync`]: history moving between a person's own installations. A new
//! installation asks ([`DeviceSync::send_sync_request`]); another answers with an encrypted
//! archive on the history server; the asker imports it. The worker ([`Client::start_worker`])
//! does all of this by itself; these calls are the manual controls.
//!
//! ```
//! # include!("../doctests/net.rs");
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> ferry_sdk::Result<()> {
//! # let net = Net::start();
//! # let (dir, node_url, history_url) = (net.dir(), net.node_url(), net.history_url());
//! # let bob = net.client("bob").await?;
//! # let bob_inbox = bob.inbox_id().clone();
//! use ferry_sdk::{AccountKey, Client, ClientOptions, MessageQuery, SyncOptions};
//!
//! // Alice's phone, with a history server for history sync, writes to bob.
//! let mut options = ClientOptions::new(dir.join("phone"), &node_url, AccountKey::New);
//! options.history_sync_url = history_url.clone();
//! let registration = Client::create(options).await?;
//! let phone = registration.client;
//! let account_key = registration.account_key.expect("a new inbox's key");
//! let dm = phone.conversations().find_or_create_dm(&bob_inbox).await?;
//! dm.send_text("sent from the phone").await?;
//!
//! // A new installation of the same inbox asks for history. (Made with a history server URL,
//! // it would have asked by itself on creation.)
//! let existing = AccountKey::Existing(account_key);
//! let options = ClientOptions::new(dir.join("tablet"), &node_url, existing);
//! let tablet = Client::create(options).await?.client;
//! tablet.set_history_sync_url(&history_url)?;
//! let pin = tablet.device_sync().send_sync_request(&SyncOptions::default()).await?;
//!
//! // The phone joins the sync group the request came in and answers: an encrypted archive
//! // goes to the history server, where it is and its key go over the sync group.
//! phone.conversations().sync().await?;
//! phone.device_sync().sync_all_device_sync_groups().await?;
//!
//! // The tablet sees the answer and imports it.
//! let sync = tablet.device_sync();
//! let available = sync.list_available_archives(7).await?;
//! assert!(available.iter().any(|a| a.pin == pin && a.message_count >= 1));
//! let report = sync.process_sync_archive(Some(&pin)).await?;
//! assert_eq!(report.conversations_added, 1);
//! let restored = tablet.conversations().get_dm_by_inbox_id(&bob_inbox)?.expect("the DM");
//! let texts: Vec<String> = restored
//!     .messages(&MessageQuery::default())?
//!     .iter()
//!     .filter_map(|m| m.text())
//!     .collect();
//! assert!(texts.contains(&"sent from the phone".to_string()));
//! # Ok(())
//! # }
//! ```

use ferry_store::ConversationKind;

use crate::archive::ImportReport;
use crate::client::{AvailableArchive, Client, DeviceSyncEvent, EventStream, SyncOptions};
use crate::Result;

/// [`Client::device_sync`]: the manual controls of history sync.
#[derive(Clone)]
pub struct DeviceSync {
    client: Client,
}

impl Client {
    /// History sync between this inbox's installations.
    pub fn device_sync(&self) -> DeviceSync {
        DeviceSync {
            client: self.clone(),
        }
    }
}

impl DeviceSync {
    /// Asks this inbox's other installations for history; returns the request's pin.
    pub async fn send_sync_request(&self, options: &SyncOptions) -> Result<String> {
        self.client.send_sync_request(options).await
    }

    /// Uploads an archive of this installation's history and announces it in the sync group,
    /// answering the request `pin` (or unasked, with a fresh pin); returns the pin.
    pub async fn send_sync_archive(
        &self,
        options: &SyncOptions,
        pin: Option<&str>,
    ) -> Result<String> {
        self.client.send_sync_archive(options, pin).await
    }

    /// Archives announced in the sync group within the last `days_cutoff` days.
    pub async fn list_available_archives(&self, days_cutoff: u32) -> Result<Vec<AvailableArchive>> {
        self.client.list_available_archives(days_cutoff).await
    }

    /// Downloads and imports the archive announced for `pin` (the newest when `None`).
    pub async fn process_sync_archive(&self, pin: Option<&str>) -> Result<ImportReport> {
        self.client.process_sync_archive(pin).await
    }

    /// Syncs this inbox's sync groups and handles what they bring (requests answered,
    /// replies imported, preferences applied); returns how many messages were applied.
    pub async fn sync_all_device_sync_groups(&self) -> Result<u64> {
        let mut applied = 0;
        for id in self.client.active_group_ids(Some(ConversationKind::Sync))? {
            applied += self.client.sync_group(&id).await?;
        }
        self.client.process_sync_messages().await?;
        Ok(applied)
    }

    /// What device sync does in the background.
    pub fn stream(&self) -> EventStream<DeviceSyncEvent> {
        self.client.stream_device_sync()
    }
}
