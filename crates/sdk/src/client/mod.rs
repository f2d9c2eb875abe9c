//! The messaging client: one installation of an inbox, online through a delivery node.
//!
//! A [`Client`] owns the installation's store (`<home>/ferry.db`: conversations, messages,
//! consent and the MLS state in one SQLite file) and a [`Transport`] to the node. Its API is
//! async (tokio; [`crate::blocking`] wraps it for callers without a runtime); every call that
//! changes MLS state runs in one immediate SQLite transaction that also holds the rows it
//! produced and the node cursor it advanced, so a crash leaves either the whole step or none
//! of it, and two processes on one folder take turns instead of corrupting each other's state.
//!
//! Who is who: an inbox is controlled by an account key; each installation has its own
//! Ed25519 key, which is also its MLS signature key and its installation id. Every MLS leaf
//! carries the credential `installation id (32 bytes) || inbox id`, and every leaf is checked
//! against its inbox's identity log (fetched from the node, verified here) when a group is
//! created, when members are added, when a welcome is processed and on every commit.

mod archive;
mod archive_bytes;
mod conversations;
mod device_sync;
mod identity;
mod sync;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use ferry_identity::{Account, KeyPair};
use ferry_mls::{Identity, Provider};
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, Conversation, ConversationKind, Message, Store,
};
use ferry_transport::{CaCerts, GrpcTransport, HistoryClient, Transport};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;
use zeroize::Zeroizing;

pub(crate) use archive::installation_signer;
pub use conversations::{Group, GroupOptions, Member, MessageQuery};
pub use device_sync::{
    ArchiveState, AvailableArchive, HistoryRequest, HmacKey, SyncOptions, HMAC_PERIOD_NS,
};
pub use identity::InboxInfo;
pub use sync::SyncReport;
pub use worker::{Worker, EXPIRY_TICK};

use crate::{Error, Result};

/// How often, at most, sending checks the conversation's members for installations to add or
/// remove (the seed's debounce for sends).
pub const DEFAULT_SEND_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often, at most, syncing does the same.
pub const DEFAULT_SYNC_CHECK_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Which inbox a new installation belongs to.
pub enum AccountKey {
    /// Create a new inbox with a fresh account key ([`Registration::account_key`] returns it).
    New,
    /// A new installation of the inbox this account key controls (its 32-byte secret seed).
    Existing(Zeroizing<[u8; 32]>),
    /// A new installation of the inbox whose account key this signer keeps (a keystore, a
    /// hardware token): the SDK only asks it to sign the installation's identity update.
    Signer(Arc<dyn ferry_identity::AccountSigner>),
}

/// How to make a client.
pub struct ClientOptions {
    /// The installation's data folder (created if missing); the store is `<home>/ferry.db`.
    pub home: PathBuf,
    /// The delivery node, `http://host:port` or `https://host:port`.
    pub node_url: String,
    /// The history server for history sync; empty turns history sync off.
    pub history_sync_url: String,
    /// A CA certificate file (PEM): `https://` node and history servers must present a
    /// certificate this CA signed, instead of one from a public root (for deployments with
    /// their own CA). Kept in the store (its absolute path) and used whenever the
    /// installation is opened.
    pub tls_ca: Option<PathBuf>,
    /// A new inbox, or a new installation of an existing one.
    pub account: AccountKey,
    /// How often, at most, sending checks the conversation's members for installations to add
    /// or remove (default [`DEFAULT_SEND_CHECK_INTERVAL`]).
    pub send_check_interval: Duration,
    /// How often, at most, syncing does the same (default [`DEFAULT_SYNC_CHECK_INTERVAL`]).
    pub sync_check_interval: Duration,
}

impl ClientOptions {
    /// Options with history sync off, the public TLS roots and the default check intervals.
    pub fn new(home: impl Into<PathBuf>, node_url: impl Into<String>, account: AccountKey) -> Self {
        ClientOptions {
            home: home.into(),
            node_url: node_url.into(),
            history_sync_url: String::new(),
            tls_ca: None,
            account,
            send_check_interval: DEFAULT_SEND_CHECK_INTERVAL,
            sync_check_interval: DEFAULT_SYNC_CHECK_INTERVAL,
        }
    }
}

/// What [`Client::create`] made.
pub struct Registration {
    /// The new installation's client.
    pub client: Client,
    /// The new inbox's account key (32-byte secret seed) when [`AccountKey::New`] was asked
    /// for: keep it like a password; it is needed to add installations.
    pub account_key: Option<Zeroizing<[u8; 32]>>,
}

/// Something that changed, for streams.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message was stored (received, sent here, or from another of this inbox's installations).
    Message(Message),
    /// A conversation appeared (created here or joined from a welcome) or was reactivated.
    Conversation(Conversation),
    /// A consent decision changed (made here, or on another installation of this inbox and
    /// applied from the sync group).
    Consent(ConsentRecord),
    /// The inbox's HMAC secret changed (made here, rotated after a revocation, or received
    /// from another installation): the HMAC keys of every conversation are new. The secret
    /// itself is never in an event.
    HmacKeyChanged {
        /// The new secret's revision.
        revision: u64,
    },
    /// Messages of a conversation reached their disappearing time and were deleted here.
    MessagesExpired {
        /// The conversation (a group's id; for a DM, the stitched group it was stored in).
        conversation_id: Vec<u8>,
        /// The deleted messages' ids.
        message_ids: Vec<Vec<u8>>,
    },
    /// Device sync did something worth telling the person (answered a history request,
    /// imported history, added a new installation of this inbox to conversations).
    DeviceSync(DeviceSyncEvent),
}

/// What device sync did, for [`Event::DeviceSync`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeviceSyncEvent {
    /// This installation answered another installation's history request with an archive.
    RequestAnswered {
        /// The request's pin.
        pin: String,
        /// The requesting installation.
        requester_installation_id: crate::InstallationId,
        /// Conversations in the archive sent.
        conversations: u64,
        /// Messages in the archive sent.
        messages: u64,
    },
    /// History from another installation of this inbox was imported here.
    HistoryImported {
        /// The request's pin.
        pin: String,
        /// What the import did.
        report: crate::archive::ImportReport,
    },
    /// New installations of this inbox were added to this many conversations.
    InstallationsAdded {
        /// The new installations.
        installations: Vec<crate::InstallationId>,
        /// How many conversations they were added to.
        conversations: u64,
    },
}

/// Events of one kind as a [`futures::Stream`] (see [`Client::stream`]). It ends when the
/// client closes; dropping it unsubscribes.
pub struct EventStream<T> {
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    pick: Box<dyn Fn(Event) -> Option<T> + Send + Sync>,
}

impl<T> futures::Stream for EventStream<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        loop {
            match self.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(e)) => {
                    if let Some(item) = (self.pick)(e) {
                        return std::task::Poll::Ready(Some(item));
                    }
                }
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

/// One installation's client. Cheap to clone; clones share the store and the node connection.
/// `Send + Sync`: use it from any task of a multi-threaded tokio runtime.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    store: Mutex<Store>,
    transport: Arc<dyn Transport>,
    inbox_id: String,
    installation_id: [u8; 32],
    /// The same two, typed, for the API.
    inbox: crate::InboxId,
    installation: crate::InstallationId,
    node_url: String,
    /// Changeable while the client is shared ([`Client::set_history_sync_url`]).
    history_sync_url: RwLock<String>,
    /// The CA that https servers must chain to (`None`: the public roots).
    tls_ca: Option<CaCerts>,
    /// Milliseconds (atomics, so they can change while the client is shared).
    send_check_ms: AtomicU64,
    sync_check_ms: AtomicU64,
    /// Verified identity logs, by inbox.
    inboxes: Mutex<HashMap<String, ferry_identity::InboxState>>,
    subscribers: Mutex<Vec<UnboundedSender<Event>>>,
    /// Set by [`Client::close`]: streams have ended and no new ones start.
    closed: std::sync::atomic::AtomicBool,
    /// Held while sync-group messages are handled (one pass at a time per client; held over
    /// network calls, so an async lock).
    history_lock: tokio::sync::Mutex<()>,
    /// Held from applying a group message to reporting it, so streams see messages in the
    /// order they were applied (the node's) even when two threads sync at once.
    apply_lock: Mutex<()>,
    /// One publisher per group at a time: concurrent sends queue in the outbox and go out
    /// together, in outbox order, with the next publish (held over the network call).
    publish_locks: Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
    /// Sends waiting to be encrypted, per group (see `Group::send_optimistic`).
    send_queues: Mutex<HashMap<Vec<u8>, Arc<SendQueue>>>,
}

/// A send waiting for its group's next encryption batch, with where its answer goes.
pub(crate) type QueuedSend = (
    ferry_proto::message::Envelope,
    tokio::sync::oneshot::Sender<Result<ferry_store::Message>>,
);

/// One group's sends in flight: queued in call order, encrypted by batches in that order.
#[derive(Default)]
pub(crate) struct SendQueue {
    pub(crate) pending: Mutex<Vec<QueuedSend>>,
    /// Held from taking the queue to the batch's commit.
    pub(crate) encrypting: Mutex<()>,
}

/// A std mutex's guard, poisoned or not (what it guards stays consistent: every writer
/// under it finishes its step or rolls back in the store).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Settings keys (the store's `settings` table).
const S_INBOX: &str = "inbox_id";
const S_INSTALLATION: &str = "installation_id";
const S_NODE: &str = "client.node_url";
const S_HISTORY: &str = "client.history_sync_url";
/// The CA certificate file for https servers (absolute path; absent or empty: public roots).
const S_TLS_CA: &str = "client.tls_ca";
const S_SEND_CHECK_MS: &str = "client.send_check_interval_ms";
const S_SYNC_CHECK_MS: &str = "client.sync_check_interval_ms";
/// This inbox's installations as last seen (hex, comma-separated).
pub(crate) const S_KNOWN_OWN: &str = "client.known_own_installations";
/// How many revoked installations this inbox's log held when this installation last looked.
pub(crate) const S_REVOCATIONS_SEEN: &str = "client.revocations_seen";

/// The store file in a data folder.
pub fn store_path(home: &Path) -> PathBuf {
    home.join("ferry.db")
}

/// The MLS credential of an installation: its id (public key) then its inbox id.
pub(crate) fn credential(inbox_id: &str, installation_id: &[u8; 32]) -> Vec<u8> {
    let mut c = installation_id.to_vec();
    c.extend_from_slice(inbox_id.as_bytes());
    c
}

/// Splits a credential made by [`credential`].
pub(crate) fn parse_credential(c: &[u8]) -> Option<(String, [u8; 32])> {
    if c.len() <= 32 {
        return None;
    }
    let inst: [u8; 32] = c[..32].try_into().ok()?;
    let inbox = std::str::from_utf8(&c[32..]).ok()?;
    Some((inbox.to_string(), inst))
}

/// An application message's id: the same on every installation, derived from the group, the
/// sending installation and the plaintext envelope (which carries a random idempotency key), so
/// a copy encrypted again in a later epoch keeps it.
pub fn application_message_id(
    group_id: &[u8],
    sender_installation: &[u8; 32],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"ferry message id v2\0");
    h.update((group_id.len() as u32).to_be_bytes());
    h.update(group_id);
    h.update(sender_installation);
    h.update(plaintext);
    h.finalize().to_vec()
}

/// The id of a commit (and the hash by which an installation knows its own MLS messages on
/// the channel): derived from what the node stores.
pub fn message_id(group_id: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"ferry message id v1\0");
    h.update((group_id.len() as u32).to_be_bytes());
    h.update(group_id);
    h.update(data);
    h.finalize().to_vec()
}

impl Client {
    /// Registers a new installation (and, with [`AccountKey::New`], a new inbox) at the node
    /// and sets up `options.home`. Fails with [`Error::AlreadyRegistered`] if the folder already
    /// holds an installation, and with a transport error if the node cannot be reached.
    ///
    /// ```
    /// # include!("../../doctests/net.rs");
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() -> ferry_sdk::Result<()> {
    /// # let net = Net::start();
    /// # let (dir, node_url) = (net.dir(), net.node_url());
    /// // `node_url` is a delivery node's address (`http://host:port`); each installation keeps
    /// // its store in a folder of its own, here under `dir`.
    /// use ferry_sdk::{AccountKey, Client, ClientOptions, Error};
    ///
    /// // A new inbox: its account key is returned once; keep it like a password.
    /// let options = ClientOptions::new(dir.join("phone"), &node_url, AccountKey::New);
    /// let registration = Client::create(options).await?;
    /// let phone = registration.client;
    /// let account_key = registration.account_key.expect("a new inbox's key");
    ///
    /// // Another installation of the same inbox, made with that key.
    /// let existing = AccountKey::Existing(account_key);
    /// let options = ClientOptions::new(dir.join("laptop"), &node_url, existing);
    /// let laptop = Client::create(options).await?.client;
    /// assert_eq!(laptop.inbox_id(), phone.inbox_id());
    /// assert_ne!(laptop.installation_id(), phone.installation_id());
    ///
    /// // A folder holds one installation; later runs open it.
    /// let again = ClientOptions::new(dir.join("phone"), &node_url, AccountKey::New);
    /// assert!(matches!(Client::create(again).await, Err(Error::AlreadyRegistered(_))));
    /// let reopened = Client::open(&dir.join("phone")).await?;
    /// assert_eq!(reopened.installation_id(), phone.installation_id());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(options: ClientOptions) -> Result<Registration> {
        std::fs::create_dir_all(&options.home).map_err(|e| Error::io(&options.home, e))?;
        let mut store = Store::open(store_path(&options.home))?;
        if store.setting(S_INSTALLATION)?.is_some() {
            return Err(Error::AlreadyRegistered(options.home.clone()));
        }
        ferry_mls::migrate(store.conn_mut())?;
        let tls_ca = match &options.tls_ca {
            Some(path) => {
                let ca = CaCerts::from_file(path)?;
                // Later opens may run in another working directory.
                let absolute = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
                Some((ca, absolute))
            }
            None => None,
        };
        let transport: Arc<dyn Transport> = Arc::new(GrpcTransport::connect_with_ca(
            &options.node_url,
            tls_ca.as_ref().map(|(ca, _)| ca),
        )?);

        let (account, new_key) = match &options.account {
            AccountKey::New => {
                let key = KeyPair::generate();
                let seed = key.seed();
                (Account::new(key), Some(seed))
            }
            AccountKey::Existing(seed) => (Account::new(KeyPair::from_seed(seed)), None),
            AccountKey::Signer(signer) => (Account::with_signer(signer.clone()), None),
        };
        let inbox_id = account.inbox_id();
        if new_key.is_some() {
            transport
                .publish_identity_update(account.create_inbox(crate::now_ns())?)
                .await?;
        }
        let installation = KeyPair::generate();
        let installation_id = installation.public_key();
        // From its key packages on, the installation signs its calls to the node.
        transport.set_request_signer(Arc::new(KeyPair::from_seed(&installation.seed())));
        // Append the add after the log's head; retry when another installation won the race.
        let mut attempts = 0;
        let known_own = loop {
            let state = identity::fetch_verified(transport.as_ref(), &inbox_id)
                .await?
                .ok_or_else(|| Error::UnknownInbox(inbox_id.clone()))?;
            let update = account.add_installation(&state, &installation, crate::now_ns())?;
            match transport.publish_identity_update(update).await {
                Ok(_) => {
                    let mut known: Vec<String> = state
                        .active_installations()
                        .iter()
                        .map(hex::encode)
                        .collect();
                    known.push(hex::encode(installation_id));
                    break known;
                }
                Err(ferry_transport::TransportError::IdentityConflict(_)) if attempts < 5 => {
                    attempts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };

        let (last_resort, regular) = {
            let provider = Provider::new(store.conn());
            let identity = Identity::from_ed25519(
                &provider,
                &credential(&inbox_id, &installation_id),
                &installation.seed(),
                &installation_id,
            )?;
            (
                ferry_mls::generate_key_package(&provider, &identity, true)?,
                ferry_mls::generate_key_package(&provider, &identity, false)?,
            )
        };
        transport
            .upload_key_package(&installation_id, &last_resort, true)
            .await?;
        transport
            .upload_key_package(&installation_id, &regular, false)
            .await?;
        store.set_setting(S_NODE, options.node_url.as_bytes())?;
        store.set_setting(S_HISTORY, options.history_sync_url.as_bytes())?;
        if let Some((_, path)) = &tls_ca {
            store.set_setting(S_TLS_CA, path.as_os_str().as_encoded_bytes())?;
        }
        store.set_setting(
            S_SEND_CHECK_MS,
            options
                .send_check_interval
                .as_millis()
                .to_string()
                .as_bytes(),
        )?;
        store.set_setting(
            S_SYNC_CHECK_MS,
            options
                .sync_check_interval
                .as_millis()
                .to_string()
                .as_bytes(),
        )?;
        store.set_setting(S_KNOWN_OWN, known_own.join(",").as_bytes())?;
        store.set_setting(S_INBOX, inbox_id.as_bytes())?;
        if new_key.is_some() {
            // A new inbox's first installation makes the inbox's HMAC secret; it reaches the
            // others when they join the sync group. Later installations receive it.
            device_sync::init_hmac_secret(&store)?;
        }
        // Last: its presence means "registered".
        store.set_setting(S_INSTALLATION, &installation_id)?;
        let client = Self::from_parts(store, transport, tls_ca.map(|(ca, _)| ca))?;
        // A new installation with history sync on asks its inbox's others for history (they
        // answer when they next sync); failing to ask is no reason to fail registering.
        // (A new inbox's first installation has nobody to ask.)
        if !client.history_sync_url().is_empty() && new_key.is_none() {
            if let Err(e) = client.sync_history().await {
                tracing::warn!(error = %e, "history request not sent yet; the next sync sends it");
                client.want_history_request()?;
            }
        }
        Ok(Registration {
            client,
            account_key: new_key,
        })
    }

    /// Opens the installation in `home`, connecting to the node it was registered with (and
    /// trusting the CA file it was registered with, if any).
    pub async fn open(home: &Path) -> Result<Client> {
        Self::open_inner(home, None).await
    }

    /// Like [`open`](Self::open), trusting the CA certificate file `tls_ca` for this client
    /// instead of the one kept in the store (which stays as it is).
    pub async fn open_with_tls_ca(home: &Path, tls_ca: &Path) -> Result<Client> {
        Self::open_inner(home, Some(tls_ca)).await
    }

    async fn open_inner(home: &Path, tls_ca: Option<&Path>) -> Result<Client> {
        let path = store_path(home);
        if !path.exists() {
            return Err(Error::NotRegistered(home.to_path_buf()));
        }
        let mut store = Store::open(&path)?;
        let url = setting_string(&store, S_NODE)?
            .ok_or_else(|| Error::NotRegistered(home.to_path_buf()))?;
        ferry_mls::migrate(store.conn_mut())?;
        let tls_ca = match tls_ca {
            Some(path) => Some(CaCerts::from_file(path)?),
            None => stored_tls_ca(&store)?,
        };
        let transport: Arc<dyn Transport> =
            Arc::new(GrpcTransport::connect_with_ca(&url, tls_ca.as_ref())?);
        Self::from_parts(store, transport, tls_ca)
    }

    /// Opens the installation in `home` over a transport of the caller's.
    pub async fn open_with(home: &Path, transport: Arc<dyn Transport>) -> Result<Client> {
        let mut store = Store::open(store_path(home))?;
        ferry_mls::migrate(store.conn_mut())?;
        let tls_ca = stored_tls_ca(&store)?;
        Self::from_parts(store, transport, tls_ca)
    }

    fn from_parts(
        store: Store,
        transport: Arc<dyn Transport>,
        tls_ca: Option<CaCerts>,
    ) -> Result<Client> {
        let home = store
            .path()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let installation_id: [u8; 32] = store
            .setting(S_INSTALLATION)?
            .ok_or_else(|| Error::NotRegistered(home.clone()))?
            .try_into()
            .map_err(|_| Error::NotRegistered(home.clone()))?;
        let inbox_id =
            setting_string(&store, S_INBOX)?.ok_or_else(|| Error::NotRegistered(home.clone()))?;
        let ms = |key: &str, default: Duration| -> Result<Duration> {
            Ok(setting_string(&store, key)?
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_millis)
                .unwrap_or(default))
        };
        let inner = Inner {
            node_url: setting_string(&store, S_NODE)?.unwrap_or_default(),
            history_sync_url: RwLock::new(setting_string(&store, S_HISTORY)?.unwrap_or_default()),
            tls_ca,
            send_check_ms: AtomicU64::new(
                ms(S_SEND_CHECK_MS, DEFAULT_SEND_CHECK_INTERVAL)?.as_millis() as u64,
            ),
            sync_check_ms: AtomicU64::new(
                ms(S_SYNC_CHECK_MS, DEFAULT_SYNC_CHECK_INTERVAL)?.as_millis() as u64,
            ),
            store: Mutex::new(store),
            transport,
            inbox: crate::InboxId::trusted(&inbox_id),
            installation: crate::InstallationId::from(installation_id),
            inbox_id,
            installation_id,
            inboxes: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            history_lock: tokio::sync::Mutex::new(()),
            apply_lock: Mutex::new(()),
            publish_locks: Mutex::new(HashMap::new()),
            send_queues: Mutex::new(HashMap::new()),
        };
        // The signature key must be there; it signs every call to the node.
        let client = Client {
            inner: Arc::new(inner),
        };
        let identity = {
            let store = client.store();
            client.mls_identity(&Provider::new(store.conn()))?
        };
        client
            .inner
            .transport
            .set_request_signer(Arc::new(InstallationSigner {
                installation_id,
                identity,
            }));
        // What disappeared while the app was closed is gone before anything reads it.
        client.delete_expired_messages()?;
        Ok(client)
    }

    /// This installation's inbox id (64 hex digits; parse it into an
    /// [`InboxId`](crate::InboxId) for the typed id).
    pub fn inbox_id(&self) -> &crate::InboxId {
        &self.inner.inbox
    }

    /// This installation's id: its 32-byte Ed25519 public key.
    pub fn installation_id(&self) -> &crate::InstallationId {
        &self.inner.installation
    }

    /// The delivery node this installation was registered with.
    pub fn node_url(&self) -> &str {
        &self.inner.node_url
    }

    /// The history server used by history sync (empty: history sync is off).
    pub fn history_sync_url(&self) -> String {
        self.inner
            .history_sync_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets (or, with an empty string, clears) the history server this installation uses for
    /// history sync, kept in its store for later runs. The URL must be `http://` or
    /// `https://`. Turning history sync on does not send a request by itself:
    /// [`Client::sync_history`] does.
    pub fn set_history_sync_url(&self, url: &str) -> Result<()> {
        let url = url.trim();
        if !url.is_empty() {
            // The same check the history client makes, so a bad URL fails here and now.
            ferry_transport::HistoryClient::new(url)?;
        }
        self.store().set_setting(S_HISTORY, url.as_bytes())?;
        *self
            .inner
            .history_sync_url
            .write()
            .unwrap_or_else(|p| p.into_inner()) = url.to_string();
        Ok(())
    }

    /// Whether `home` holds a registered installation (without creating or changing anything).
    pub fn is_registered(home: &Path) -> Result<bool> {
        let path = store_path(home);
        if !path.exists() {
            return Ok(false);
        }
        Ok(Store::open(&path)?.setting(S_INSTALLATION)?.is_some())
    }

    /// The node connection.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The CA certificate file that https servers must chain to (`None`: the public roots).
    pub fn tls_ca(&self) -> Option<&Path> {
        self.inner.tls_ca.as_ref().map(CaCerts::path)
    }

    /// A client for this installation's history server, trusting what the node client trusts.
    pub(crate) fn history_client(&self) -> Result<HistoryClient> {
        Ok(HistoryClient::new(&self.history_sync_url())?.with_ca(self.inner.tls_ca.clone()))
    }

    /// Sets the intervals of the member checks (see [`Group::add_missing_installations`]),
    /// for this client and the ones opened later on this folder.
    pub fn set_check_intervals(&self, send: Duration, sync: Duration) -> Result<()> {
        let store = self.store();
        store.set_setting(S_SEND_CHECK_MS, send.as_millis().to_string().as_bytes())?;
        store.set_setting(S_SYNC_CHECK_MS, sync.as_millis().to_string().as_bytes())?;
        drop(store);
        self.inner
            .send_check_ms
            .store(send.as_millis() as u64, Ordering::Relaxed);
        self.inner
            .sync_check_ms
            .store(sync.as_millis() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// How often, at most, sending checks members for installations to add or remove.
    pub fn send_check_interval(&self) -> Duration {
        Duration::from_millis(self.inner.send_check_ms.load(Ordering::Relaxed))
    }

    /// How often, at most, syncing does the same.
    pub fn sync_check_interval(&self) -> Duration {
        Duration::from_millis(self.inner.sync_check_ms.load(Ordering::Relaxed))
    }

    /// The store, locked for this thread (reads; writes go through the client's methods).
    /// Drop the guard before calling other methods of the client, and take it once per
    /// expression: the lock is not reentrant.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.inner
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the store, locked for the call (white-box checks in tests and
    /// benchmarks; not part of the API).
    #[doc(hidden)]
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.store())
    }

    fn credential(&self) -> Vec<u8> {
        credential(&self.inner.inbox_id, &self.inner.installation_id)
    }

    /// The send queue of a group.
    pub(crate) fn send_queue(&self, group_id: &[u8]) -> Arc<SendQueue> {
        lock(&self.inner.send_queues)
            .entry(group_id.to_vec())
            .or_default()
            .clone()
    }

    fn mls_identity(&self, provider: &Provider<'_>) -> Result<Identity> {
        Identity::load(provider, &self.credential(), &self.inner.installation_id)?
            .ok_or(Error::MissingSignatureKey)
    }

    // ---- streams ------------------------------------------------------------------------

    /// Every change from now on: messages stored, conversations that appear, consent and
    /// device sync events. Events come from this client's own calls and from syncing (run a
    /// [`Worker`] to stay online). The stream ends when the client closes ([`Client::close`],
    /// or every clone dropped).
    pub fn stream(&self) -> EventStream<Event> {
        self.stream_of(Some)
    }

    /// New messages in every conversation (the hidden sync conversation excluded).
    pub fn stream_messages(&self) -> EventStream<Message> {
        self.stream_of(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
    }

    /// New conversations (created here, joined from a welcome, or reactivated).
    pub fn stream_conversations(&self) -> EventStream<Conversation> {
        self.stream_of(|e| match e {
            Event::Conversation(c) => Some(c),
            _ => None,
        })
    }

    /// Consent changes, made here or on another installation of this inbox.
    pub fn stream_consent(&self) -> EventStream<ConsentRecord> {
        self.stream_of(|e| match e {
            Event::Consent(c) => Some(c),
            _ => None,
        })
    }

    /// What device sync does in the background (see [`DeviceSyncEvent`]).
    pub fn stream_device_sync(&self) -> EventStream<DeviceSyncEvent> {
        self.stream_of(|e| match e {
            Event::DeviceSync(d) => Some(d),
            _ => None,
        })
    }

    /// The events `pick` keeps, as a stream.
    pub(crate) fn stream_of<T>(
        &self,
        pick: impl Fn(Event) -> Option<T> + Send + Sync + 'static,
    ) -> EventStream<T> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut subs = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A closed client's streams end at once (the sender is dropped here).
        if !self.inner.closed.load(Ordering::SeqCst) {
            subs.push(tx);
        }
        EventStream {
            rx,
            pick: Box::new(pick),
        }
    }

    /// Closes this client (and its clones): every stream ends. The store stays open for
    /// calls that are still running; stop a [`Worker`] with [`Worker::stop`].
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Deletes the messages whose disappearing time has come (the worker does this every
    /// [`EXPIRY_TICK`], and opening a client once); returns how many were deleted. Streams
    /// get an [`Event::MessagesExpired`] per conversation.
    pub fn delete_expired_messages(&self) -> Result<usize> {
        let gone = self.store().delete_expired_messages(crate::now_ns())?;
        let n = gone.len();
        let mut by_conversation: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
        for (conversation_id, id) in gone {
            match by_conversation
                .iter_mut()
                .find(|(c, _)| *c == conversation_id)
            {
                Some((_, ids)) => ids.push(id),
                None => by_conversation.push((conversation_id, vec![id])),
            }
        }
        self.emit(
            by_conversation
                .into_iter()
                .map(|(conversation_id, message_ids)| Event::MessagesExpired {
                    conversation_id,
                    message_ids,
                })
                .collect(),
        );
        Ok(n)
    }

    fn emit(&self, events: Vec<Event>) {
        // The hidden sync conversation never shows in streams, as in lists.
        let events: Vec<Event> = events
            .into_iter()
            .filter(|e| match e {
                Event::Conversation(c) => c.kind != ConversationKind::Sync,
                Event::Consent(_) | Event::DeviceSync(_) | Event::HmacKeyChanged { .. } => true,
                Event::Message(m) => !matches!(
                    self.store().conversation(&m.conversation_id),
                    Ok(Some(c)) if c.kind == ConversationKind::Sync
                ),
                Event::MessagesExpired { .. } => true,
            })
            .collect();
        if events.is_empty() {
            return;
        }
        let mut subs = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }

    // ---- consent ------------------------------------------------------------------------

    /// Records a consent decision now (it wins over older ones, also from archives) and sends
    /// it to this inbox's other installations over the sync group (at once if the node is
    /// reachable, else on the next sync: it waits in the store).
    pub async fn set_consent(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
        state: ConsentState,
    ) -> Result<()> {
        let entity = match entity_type {
            ConsentEntity::Conversation => {
                hex::decode(entity).map_err(|_| {
                    Error::InvalidArgument(format!("conversation id {entity} is not hex"))
                })?;
                entity.to_lowercase()
            }
            _ => entity.to_string(),
        };
        let record = ConsentRecord {
            entity_type,
            entity,
            state,
            updated_at_ns: crate::now_ns(),
        };
        {
            let store = self.store();
            let provider = Provider::new(store.conn());
            provider.transaction(|_| -> Result<()> {
                store.set_consent(&record)?;
                Self::queue_consent(&store, &record)
            })?;
        }
        self.emit(vec![Event::Consent(record)]);
        self.flush_or_log().await;
        Ok(())
    }

    /// The consent state of one entity (a conversation id in hex, an inbox id, an address):
    /// [`ConsentState::Unknown`] when nothing was decided.
    pub fn consent(&self, entity_type: ConsentEntity, entity: &str) -> Result<ConsentState> {
        Ok(self
            .store()
            .consent(entity_type, entity)?
            .map(|c| c.state)
            .unwrap_or(ConsentState::Unknown))
    }

    /// The consent record of one entity (its state and when it was decided), if any.
    pub fn consent_record(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
    ) -> Result<Option<ConsentRecord>> {
        Ok(self.store().consent(entity_type, entity)?)
    }

    /// Every consent decision, with when it was made.
    pub fn consent_list(&self) -> Result<Vec<ConsentRecord>> {
        Ok(self.store().consent_list()?)
    }
}

/// The CA file kept at registration, read now (an error names the file when it is gone).
fn stored_tls_ca(store: &Store) -> Result<Option<CaCerts>> {
    match setting_string(store, S_TLS_CA)? {
        Some(path) if !path.is_empty() => Ok(Some(CaCerts::from_file(path)?)),
        _ => Ok(None),
    }
}

fn setting_string(store: &Store, key: &str) -> Result<Option<String>> {
    Ok(store
        .setting(key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Signs this installation's calls to the node with its key (the MLS signature key).
struct InstallationSigner {
    installation_id: [u8; 32],
    identity: Identity,
}

impl ferry_transport::RequestSigner for InstallationSigner {
    fn installation_id(&self) -> [u8; 32] {
        self.installation_id
    }

    fn sign_request(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
        self.identity
            .sign(&ferry_identity::request_auth::signed_message(payload))
            .map_err(|e| e.to_string())
    }
}
