#![warn(missing_docs)]

//! The Ferry SDK: end-to-end encrypted messaging (MLS) for one installation of an inbox, with
//! encrypted archives for backups and history sync between a person's own installations.
//!
//! # The client and its handles
//!
//! A [`Client`] is one installation of an inbox: its store in a folder of its own
//! (`<home>/ferry.db`) and a connection to a delivery node. It is async on tokio, cheap to
//! clone and `Send + Sync`. [`Client::create`] registers a new installation (of a new inbox, or
//! of an existing one with its account key); [`Client::open`] opens one made before. Its
//! handles group the calls as XMTP's SDKs do:
//!
//! - [`Client::conversations`] gives [`Conversations`]: create groups and DMs, find, list, sync
//!   and stream them. Each is a [`Conversation`]: a [`Group`] or a [`Dm`].
//! - [`Client::preferences`] gives [`Preferences`]: consent decisions and HMAC keys, the same
//!   on every installation of the inbox.
//! - [`Client::device_sync`] gives [`DeviceSync`]: history moving from one installation to a
//!   new one of the same inbox, through a history server.
//! - [`Client::start_worker`] keeps the client online in the background (new conversations,
//!   messages, device sync). Event streams ([`Conversations::stream_all_messages`],
//!   [`Conversation::stream`], [`Client::stream`], ...) are [`futures::Stream`]s; they end when
//!   dropped or when the client closes.
//!
//! Ids are typed ([`InboxId`], [`InstallationId`], [`ConversationId`], [`MessageId`]; hex as
//! text). Every call fails with one [`Error`]; [`Error::is_retryable`] says whether trying again
//! later may help.
//!
//! # Archives
//!
//! [`Client::create_archive`] writes an encrypted archive of conversations, messages and
//! consent, signed by the installation; [`Client::archive_metadata`] reads what it holds;
//! [`Client::import_archive`] imports it into another installation of the same inbox, all or
//! nothing and additively. Imported conversations arrive restored: readable, inactive (sending
//! fails with [`Error::Inactive`]) until a member's installation adds the new one. Archives
//! written by libxmtp import too. The [`archive`] module has the formats and options;
//! [`backup_manager`] runs backups on a schedule with retention and destinations.
//!
//! # Without an async runtime
//!
//! [`blocking`] wraps the async client for programs without a runtime: every async call has a
//! blocking twin (the `ferry` CLI is written on it).
//!
//! # A first example
//!
//! Two inboxes chat through a delivery node (here one started in this process, on loopback;
//! `cargo run -p ferry-sdk --example history_journey` tells a longer story):
//!
//! ```
//! # include!("../doctests/net.rs");
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> ferry_sdk::Result<()> {
//! # let net = Net::start();
//! # let (dir, node_url) = (net.dir(), net.node_url());
//! // `node_url` is a delivery node's address (`http://host:port`); each installation keeps
//! // its store in a folder of its own, here under `dir`.
//! use ferry_sdk::store::MessageKind;
//! use ferry_sdk::{AccountKey, Client, ClientOptions, GroupOptions, InboxId, MessageQuery};
//!
//! // Two inboxes, one installation each (a folder per installation).
//! let alice = Client::create(ClientOptions::new(dir.join("alice"), &node_url, AccountKey::New))
//!     .await?
//!     .client;
//! let bob = Client::create(ClientOptions::new(dir.join("bob"), &node_url, AccountKey::New))
//!     .await?
//!     .client;
//! let bob_inbox = bob.inbox_id().clone();
//!
//! // Alice starts a group with Bob and says hello.
//! let group = alice
//!     .conversations()
//!     .create_group(&[bob_inbox], GroupOptions::default())
//!     .await?;
//! group.send_text("hello bob").await?;
//!
//! // Bob syncs: he joins the group from his welcome and reads.
//! bob.conversations().sync_all(&[]).await?;
//! let conversation = bob
//!     .conversations()
//!     .get_conversation_by_id(&group.conversation_id())?
//!     .expect("bob joined");
//! let texts: Vec<String> = conversation
//!     .messages(&MessageQuery::default())?
//!     .into_iter()
//!     .filter(|m| m.kind == MessageKind::Application)
//!     .filter_map(|m| m.text())
//!     .collect();
//! assert_eq!(texts, ["hello bob"]);
//! # Ok(())
//! # }
//! ```

pub mod archive;
pub mod backup_manager;
pub mod blocking;
pub mod client;
pub mod content;
pub mod conversations;
pub mod dev;
pub mod device_sync;
mod error;
mod ids;
pub mod preferences;

pub use client::{
    AccountKey, ArchiveState, AvailableArchive, Client, ClientOptions, DeviceSyncEvent, Event,
    EventStream, Group, GroupOptions, HistoryRequest, HmacKey, Member, MessageQuery, Registration,
    SyncOptions, SyncReport, Worker, EXPIRY_TICK, HMAC_PERIOD_NS,
};
pub use conversations::{Conversation, Conversations, Dm, ListConversationsOptions};
pub use device_sync::DeviceSync;
pub use error::{Error, Result};
pub use ferry_archive::ArchiveKey;
pub use ferry_identity::{AccountSigner, KeyPair, SignerError};
/// What [`Conversation::send`] takes: a content type, the encoded content and a fallback text.
pub use ferry_proto::message::{ContentTypeId, Envelope};
pub use ferry_store as store;
pub use ferry_store::{ConsentEntity, ConsentRecord, ConsentState, DisappearingSettings};
pub use ids::{ConversationId, InboxId, InstallationId, InvalidId, MessageId};
pub use preferences::{ConsentUpdate, PreferenceEvent, Preferences};

/// The inbox id the account key with this 32-byte secret seed controls.
pub fn inbox_id_of_account_key(seed: &[u8; 32]) -> String {
    ferry_identity::Account::new(ferry_identity::KeyPair::from_seed(seed)).inbox_id()
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
