//! The SDK for callers without an async runtime: scripts, command-line programs (the `ferry`
//! CLI uses it), tests.
//!
//! [`Client`] and [`Group`] wrap the async [`crate::Client`] and [`crate::Group`]: every
//! async method has a blocking twin of the same name and arguments that runs it to completion
//! on a runtime this module owns (one multi-threaded tokio runtime per process, started on
//! first use), and everything that does not wait (ids, local reads) is reached through
//! `Deref`. Streams become [`Receiver`]s. Do not call it from async code (that would block an
//! executor thread; tokio panics): use the async [`crate::Client`] there.
//!
//! ```
//! # include!("../doctests/net.rs");
//! use ferry_sdk::blocking::Client;
//! use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};
//!
//! # fn main() -> ferry_sdk::Result<()> {
//! # let net = Net::start();
//! # let (dir, node_url) = (net.dir(), net.node_url());
//! let alice = Client::create(ClientOptions::new(dir.join("alice"), &node_url, AccountKey::New))?
//!     .client;
//! let group = alice.create_group(&[], GroupOptions::default())?;
//! group.send("hello")?;
//! let last = group.messages(&MessageQuery::default())?.pop().expect("a message");
//! assert_eq!(last.text().as_deref(), Some("hello"));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Receiver;
use ferry_proto::message::Envelope;
use ferry_store::{ConsentEntity, ConsentRecord, ConsentState, Conversation, Message};
use ferry_transport::Transport;
use futures::{Stream, StreamExt};

use crate::archive::{ArchiveMetadata, ArchiveOptions, Control, ImportPreview, ImportReport};
use crate::client::{DeviceSyncEvent, Event, InboxInfo};
use crate::{
    AccountSigner, ArchiveKey, AvailableArchive, ClientOptions, GroupOptions, HistoryRequest,
    Result, SyncOptions, SyncReport,
};

/// The runtime blocking calls run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // One worker: the facade's calls run on the caller's thread (block_on) and the worker
        // only drives connections and background tasks. With two, a node call's tasks hop
        // between workers and one sender's sends/s fell from ~880 to ~500 (`ferry bench node`,
        // measured against the same build with one).
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferry-sdk")
            .enable_all()
            .build()
            .expect("start the ferry-sdk runtime")
    })
}

/// Runs `f` to completion on the blocking facade's runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Feeds a stream into a channel from a task on the runtime (it ends when the stream ends or
/// when the receiver is dropped and the next item comes).
fn into_receiver<T: Send + 'static>(stream: impl Stream<Item = T> + Send + 'static) -> Receiver<T> {
    let (tx, rx) = crossbeam_channel::unbounded();
    runtime().spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

/// What [`Client::create`] made.
pub struct Registration {
    /// The new installation's client.
    pub client: Client,
    /// See [`crate::Registration::account_key`].
    pub account_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

/// A blocking [`crate::Client`]. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: crate::Client,
}

impl Deref for Client {
    type Target = crate::Client;
    fn deref(&self) -> &crate::Client {
        &self.inner
    }
}

impl From<crate::Client> for Client {
    fn from(inner: crate::Client) -> Self {
        Client { inner }
    }
}

/// A blocking [`crate::Group`].
#[derive(Clone, Debug)]
pub struct Group {
    inner: crate::Group,
}

impl Deref for Group {
    type Target = crate::Group;
    fn deref(&self) -> &crate::Group {
        &self.inner
    }
}

impl From<crate::Group> for Group {
    fn from(inner: crate::Group) -> Self {
        Group { inner }
    }
}

/// Blocking twins of async methods: `fn name(&self, args) -> T` runs `self.inner.name(args)`;
/// `wraps` names the async type (for the docs' links).
macro_rules! blocking {
    (wraps $target:literal; $( $(#[$meta:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        $(
            $(#[$meta])*
            #[doc = concat!("Blocking [`", stringify!($name), "`](", $target, "::", stringify!($name), ").")]
            pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                block_on(self.inner.$name($($arg),*))
            }
        )*
    };
}

impl Client {
    /// Blocking [`crate::Client::create`].
    pub fn create(options: ClientOptions) -> Result<Registration> {
        let r = block_on(crate::Client::create(options))?;
        Ok(Registration {
            client: r.client.into(),
            account_key: r.account_key,
        })
    }

    /// Blocking [`crate::Client::open`].
    pub fn open(home: &Path) -> Result<Client> {
        block_on(crate::Client::open(home)).map(Client::from)
    }

    /// Blocking [`crate::Client::open_with_tls_ca`].
    pub fn open_with_tls_ca(home: &Path, tls_ca: &Path) -> Result<Client> {
        block_on(crate::Client::open_with_tls_ca(home, tls_ca)).map(Client::from)
    }

    /// Blocking [`crate::Client::open_with`].
    pub fn open_with(home: &Path, transport: Arc<dyn Transport>) -> Result<Client> {
        block_on(crate::Client::open_with(home, transport)).map(Client::from)
    }

    /// [`crate::Client::is_registered`].
    pub fn is_registered(home: &Path) -> Result<bool> {
        crate::Client::is_registered(home)
    }

    /// The async client this one wraps.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    blocking! {
        wraps "crate::Client";
        fn create_archive(&self, path: &Path, key: &ArchiveKey, options: &ArchiveOptions, ctl: &Control) -> Result<ArchiveMetadata>;
        fn archive_metadata(&self, path: &Path, key: &ArchiveKey) -> Result<ArchiveMetadata>;
        fn import_archive(&self, path: &Path, key: &ArchiveKey, ctl: &Control) -> Result<ImportReport>;
        fn fetch_remote_attachment(&self, remote: &crate::content::RemoteAttachment) -> Result<crate::content::Attachment>;
        fn hold_attachment_files(&self, options: &ArchiveOptions) -> Result<u64>;
        fn import_archive_preview(&self, path: &Path, key: &ArchiveKey, ctl: &Control) -> Result<ImportPreview>;
        fn create_archive_bytes(&self, key: &ArchiveKey, options: &ArchiveOptions, ctl: &Control) -> Result<Vec<u8>>;
        fn archive_metadata_bytes(&self, archive: &[u8], key: &ArchiveKey) -> Result<ArchiveMetadata>;
        fn import_archive_bytes(&self, archive: &[u8], key: &ArchiveKey, ctl: &Control) -> Result<ImportReport>;
        fn ensure_sync_group(&self) -> Result<Vec<u8>>;
        fn converge_sync_groups(&self) -> Result<u64>;
        fn send_sync_request(&self, options: &SyncOptions) -> Result<String>;
        fn request_history(&self, options: &SyncOptions) -> Result<HistoryRequest>;
        fn sync_history(&self) -> Result<String>;
        fn sync_consent(&self) -> Result<String>;
        fn sync_messages(&self) -> Result<String>;
        fn send_sync_archive(&self, options: &SyncOptions, pin: Option<&str>) -> Result<String>;
        fn list_available_archives(&self, days: u32) -> Result<Vec<AvailableArchive>>;
        fn process_sync_archive(&self, pin: Option<&str>) -> Result<ImportReport>;
        fn flush_preference_outbox(&self) -> Result<u64>;
        fn process_sync_messages(&self) -> Result<u64>;
        fn inbox_info(&self, inbox: &str) -> Result<InboxInfo>;
        fn revoke_installation(&self, account: Arc<dyn AccountSigner>, installation_id: &[u8; 32]) -> Result<()>;
        fn set_consent(&self, entity_type: ConsentEntity, entity: &str, state: ConsentState) -> Result<()>;
        fn sync_welcomes(&self) -> Result<u64>;
        fn sync_all(&self) -> Result<SyncReport>;
        fn add_new_own_installations(&self) -> Result<u64>;
        fn hmac_keys(&self) -> Result<std::collections::BTreeMap<String, Vec<crate::HmacKey>>>;
    }

    /// Blocking [`crate::Client::create_group`].
    pub fn create_group(&self, members: &[String], options: GroupOptions) -> Result<Group> {
        block_on(self.inner.create_group(members, options)).map(Group::from)
    }

    /// Blocking [`crate::Client::create_dm`].
    pub fn create_dm(&self, peer: &str) -> Result<Group> {
        block_on(self.inner.create_dm(peer)).map(Group::from)
    }

    /// Blocking [`crate::Client::find_or_create_dm`].
    pub fn find_or_create_dm(&self, peer: &str) -> Result<Group> {
        block_on(self.inner.find_or_create_dm(peer)).map(Group::from)
    }

    /// [`crate::Client::conversation`], as a blocking [`Group`].
    pub fn conversation(&self, id: &[u8]) -> Result<Group> {
        self.inner.conversation(id).map(Group::from)
    }

    /// [`crate::Client::sync_group_conversation`], as a blocking [`Group`].
    #[doc(hidden)]
    pub fn sync_group_conversation(&self, id: &[u8]) -> Result<Group> {
        self.inner.sync_group_conversation(id).map(Group::from)
    }

    /// Starts the background sync ([`crate::Client::start_worker`]) on the facade's runtime.
    pub fn start_worker(&self) -> Worker {
        let _enter = runtime().enter();
        Worker {
            inner: Some(self.inner.start_worker()),
        }
    }

    /// Every change from now on (see [`crate::Client::stream`]).
    pub fn stream(&self) -> Receiver<Event> {
        into_receiver(self.inner.stream())
    }

    /// New messages (see [`crate::Client::stream_messages`]).
    pub fn stream_messages(&self) -> Receiver<Message> {
        into_receiver(self.inner.stream_messages())
    }

    /// New conversations (see [`crate::Client::stream_conversations`]).
    pub fn stream_conversations(&self) -> Receiver<Conversation> {
        into_receiver(self.inner.stream_conversations())
    }

    /// Consent changes (see [`crate::Client::stream_consent`]).
    pub fn stream_consent(&self) -> Receiver<ConsentRecord> {
        into_receiver(self.inner.stream_consent())
    }

    /// Device sync events (see [`crate::Client::stream_device_sync`]).
    pub fn stream_device_sync(&self) -> Receiver<DeviceSyncEvent> {
        into_receiver(self.inner.stream_device_sync())
    }
}

impl Group {
    /// Sends a text message (blocking [`crate::Group::send_text`]); returns its id.
    pub fn send(&self, text: &str) -> Result<Vec<u8>> {
        block_on(self.inner.send_text(text))
    }

    /// Sends any content (blocking [`crate::Group::send`]); returns its id.
    pub fn send_envelope(&self, env: Envelope) -> Result<Vec<u8>> {
        block_on(self.inner.send(env))
    }

    blocking! {
        wraps "crate::Group";
        fn sync(&self) -> Result<u64>;
        fn add_members(&self, inboxes: &[String]) -> Result<()>;
        fn remove_members(&self, inboxes: &[String]) -> Result<()>;
        fn update_name(&self, name: &str) -> Result<()>;
        fn update_description(&self, description: &str) -> Result<()>;
        fn update_message_disappearing_settings(
            &self,
            settings: crate::DisappearingSettings
        ) -> Result<()>;
        fn remove_message_disappearing_settings(&self) -> Result<()>;
        fn add_missing_installations(&self) -> Result<()>;
        fn send_text_optimistic(&self, text: &str) -> Result<Vec<u8>>;
        fn send_optimistic(&self, env: Envelope) -> Result<Vec<u8>>;
        fn publish_messages(&self) -> Result<u64>;
        fn send_encoded(&self, encoded: &crate::content::EncodedContent) -> Result<Vec<u8>>;
        fn send_reply(&self, reference: &[u8], text: &str) -> Result<Vec<u8>>;
        fn send_reaction(&self, reference: &[u8], emoji: &str, remove: bool) -> Result<Vec<u8>>;
        fn send_read_receipt(&self) -> Result<Vec<u8>>;
        fn send_attachment(&self, attachment: &crate::content::Attachment) -> Result<Vec<u8>>;
        fn send_remote_attachment(
            &self,
            attachment: &crate::content::Attachment,
            store: std::sync::Arc<dyn crate::content::AttachmentStore>
        ) -> Result<Vec<u8>>;
    }
}

/// The background sync of a blocking client. Stops when dropped (or with [`Worker::stop`]).
pub struct Worker {
    inner: Option<crate::Worker>,
}

impl Worker {
    /// Stops the worker and waits until it has stopped.
    pub fn stop(mut self) {
        if let Some(w) = self.inner.take() {
            block_on(w.stop());
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(w) = self.inner.take() {
            block_on(w.stop());
        }
    }
}
