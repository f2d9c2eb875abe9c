//! The client: one installation of an inbox, with its conversations, preferences, device sync
//! and archives.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_sdk::archive::Control;
use ferry_sdk::{AccountKey, ClientOptions as SdkOptions, Worker};
use napi::bindgen_prelude::{BigInt, Buffer, Either};
use napi_derive::napi;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::conversation::{Conversations, Preferences};
use crate::types::*;
use crate::{invalid, Js};

/// How to reach the network and where the installation keeps its data.
#[napi(object)]
pub struct ClientOptions {
    /// The delivery node, `http://host:port` (needed to create an installation; an existing
    /// one connects to the node it was registered with).
    pub node_url: Option<String>,
    /// The history server for history sync (left out: history sync off).
    pub history_sync_url: Option<String>,
    /// The installation's data folder (Ferry keeps its SQLite store, `ferry.db`, in it).
    pub db_path: String,
    /// A CA certificate file (PEM) for `https://` servers with their own CA.
    pub tls_ca: Option<String>,
    /// Don't run the background worker that answers history requests and keeps the
    /// installation current (as XMTP's `disableDeviceSync`).
    pub disable_device_sync: Option<bool>,
    /// How often, at most, sending checks a conversation's members against their identity
    /// logs (milliseconds; the SDK's default when left out).
    pub send_check_interval_ms: Option<u32>,
    /// How often, at most, syncing does the same (milliseconds).
    pub sync_check_interval_ms: Option<u32>,
}

/// Applies the options' check intervals, if any.
fn check_intervals(client: &ferry_sdk::Client, o: &ClientOptions) -> napi::Result<()> {
    if o.send_check_interval_ms.is_none() && o.sync_check_interval_ms.is_none() {
        return Ok(());
    }
    let ms = |v: Option<u32>, d: std::time::Duration| {
        v.map_or(d, |v| std::time::Duration::from_millis(v.into()))
    };
    client
        .set_check_intervals(
            ms(o.send_check_interval_ms, client.send_check_interval()),
            ms(o.sync_check_interval_ms, client.sync_check_interval()),
        )
        .js()
}

/// One installation of an inbox.
#[napi]
pub struct Client {
    pub(crate) inner: ferry_sdk::Client,
    account_key: Option<Zeroizing<Vec<u8>>>,
    worker: Arc<Mutex<Option<Worker>>>,
}

impl Client {
    fn wrap(
        inner: ferry_sdk::Client,
        account_key: Option<Zeroizing<Vec<u8>>>,
        worker: bool,
    ) -> Client {
        let worker = worker.then(|| inner.start_worker());
        Client {
            inner,
            account_key,
            worker: Arc::new(Mutex::new(worker)),
        }
    }
}

/// Registers a new installation: of a new inbox (`accountKey` null) or of the inbox whose
/// 32-byte account key is given.
#[napi]
pub async fn create_client(
    account_key: Option<Buffer>,
    options: ClientOptions,
) -> napi::Result<Client> {
    let account = match &account_key {
        None => AccountKey::New,
        Some(k) => {
            let k: [u8; 32] = k[..]
                .try_into()
                .map_err(|_| invalid(format!("account key must be 32 bytes, got {}", k.len())))?;
            AccountKey::Existing(k.into())
        }
    };
    let node_url = options
        .node_url
        .clone()
        .ok_or_else(|| invalid("nodeUrl is needed to create an installation"))?;
    let mut o = SdkOptions::new(PathBuf::from(&options.db_path), node_url, account);
    o.history_sync_url = options.history_sync_url.clone().unwrap_or_default();
    o.tls_ca = options.tls_ca.as_ref().map(PathBuf::from);
    let reg = ferry_sdk::Client::create(o).await.js()?;
    check_intervals(&reg.client, &options)?;
    let key = reg
        .account_key
        .map(|k| Zeroizing::new(k.to_vec()))
        .or_else(|| account_key.map(|k| Zeroizing::new(k.to_vec())));
    Ok(Client::wrap(
        reg.client,
        key,
        options.disable_device_sync != Some(true),
    ))
}

/// Opens an installation registered before, in `options.dbPath`.
#[napi]
pub async fn build_client(options: ClientOptions) -> napi::Result<Client> {
    let home = PathBuf::from(&options.db_path);
    let client = match &options.tls_ca {
        Some(ca) => ferry_sdk::Client::open_with_tls_ca(&home, &PathBuf::from(ca)).await,
        None => ferry_sdk::Client::open(&home).await,
    }
    .js()?;
    if let Some(url) = &options.history_sync_url {
        client.set_history_sync_url(url).js()?;
    }
    check_intervals(&client, &options)?;
    Ok(Client::wrap(
        client,
        None,
        options.disable_device_sync != Some(true),
    ))
}

#[napi]
impl Client {
    /// The inbox id (hex).
    #[napi(getter)]
    pub fn inbox_id(&self) -> String {
        self.inner.inbox_id().to_string()
    }

    /// This installation's id (hex).
    #[napi(getter)]
    pub fn installation_id(&self) -> String {
        self.inner.installation_id().to_string()
    }

    /// The account key of the inbox this client created (keep it like a password), or of the
    /// inbox it was created for; null for a client that was built.
    #[napi(getter)]
    pub fn account_key(&self) -> Option<Buffer> {
        self.account_key.as_ref().map(|k| Buffer::from(k.to_vec()))
    }

    /// The history server in use ('' when history sync is off).
    #[napi(getter)]
    pub fn history_sync_url(&self) -> String {
        self.inner.history_sync_url()
    }

    /// Conversations: create, find, list, sync and stream.
    #[napi(getter)]
    pub fn conversations(&self) -> Conversations {
        Conversations {
            inner: self.inner.conversations(),
        }
    }

    /// Consent and HMAC keys, the same on every installation of the inbox.
    #[napi(getter)]
    pub fn preferences(&self) -> Preferences {
        Preferences {
            inner: self.inner.preferences(),
        }
    }

    /// Stops the background worker and closes the client: its streams end.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        if let Some(w) = self.worker.lock().await.take() {
            w.stop().await;
        }
        self.inner.close();
        Ok(())
    }

    fn with_server(&self, server_url: &Option<String>) -> napi::Result<()> {
        if let Some(url) = server_url {
            self.inner.set_history_sync_url(url).js()?;
        }
        Ok(())
    }

    /// Revokes installations of this inbox (hex ids), signed with the inbox's account key:
    /// the one given, else the one this client was created with.
    #[napi]
    pub async fn revoke_installations(
        &self,
        installation_ids: Vec<String>,
        account_key: Option<Buffer>,
    ) -> napi::Result<()> {
        let key = match (&account_key, &self.account_key) {
            (Some(k), _) => Zeroizing::new(k.to_vec()),
            (None, Some(k)) => k.clone(),
            (None, None) => return Err(invalid("revoking needs the inbox's account key")),
        };
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(key[..].try_into().map_err(|_| {
                invalid(format!("account key must be 32 bytes, got {}", key.len()))
            })?);
        let signer: Arc<dyn ferry_sdk::AccountSigner> =
            Arc::new(ferry_sdk::KeyPair::from_seed(&seed));
        for id in &installation_ids {
            let id: ferry_sdk::InstallationId = id
                .parse()
                .map_err(|e| invalid(format!("installation id {id:?}: {e}")))?;
            self.inner
                .revoke_installation(signer.clone(), id.as_bytes())
                .await
                .js()?;
        }
        Ok(())
    }

    /// Asks the inbox's other installations for history; resolves with the request's pin.
    #[napi]
    pub async fn send_sync_request(
        &self,
        options: Option<ArchiveOptionsJs>,
        server_url: Option<String>,
    ) -> napi::Result<String> {
        self.with_server(&server_url)?;
        let o = sync_options(&options)?;
        self.inner.device_sync().send_sync_request(&o).await.js()
    }

    /// Uploads an archive of this installation's history to the history server and announces
    /// it in the sync group (answering the request with this pin, when one is given).
    #[napi]
    pub async fn send_sync_archive(
        &self,
        pin: Option<String>,
        options: Option<ArchiveOptionsJs>,
        server_url: Option<String>,
    ) -> napi::Result<String> {
        self.with_server(&server_url)?;
        let o = sync_options(&options)?;
        self.inner
            .device_sync()
            .send_sync_archive(&o, pin.as_deref())
            .await
            .js()
    }

    /// Archives announced in the sync group in the last `daysCutoff` days.
    #[napi]
    pub async fn list_available_archives(
        &self,
        days_cutoff: u32,
    ) -> napi::Result<Vec<AvailableArchiveJs>> {
        let list = self
            .inner
            .device_sync()
            .list_available_archives(days_cutoff)
            .await
            .js()?;
        Ok(list.iter().map(available_to_js).collect())
    }

    /// Downloads and imports an announced archive (the newest one when no pin is given).
    #[napi]
    pub async fn process_sync_archive(&self, pin: Option<String>) -> napi::Result<ImportReportJs> {
        let r = self
            .inner
            .device_sync()
            .process_sync_archive(pin.as_deref())
            .await
            .js()?;
        Ok(report_to_js(&r))
    }

    /// Syncs the inbox's sync groups and handles what arrived there (requests, archives,
    /// preferences); resolves with how many messages were handled.
    #[napi]
    pub async fn sync_all_device_sync_groups(&self) -> napi::Result<i64> {
        let n = self
            .inner
            .device_sync()
            .sync_all_device_sync_groups()
            .await
            .js()?;
        Ok(n as i64)
    }

    /// Writes an encrypted, signed archive of this installation's history to `path`.
    #[napi]
    pub async fn create_archive(
        &self,
        path: String,
        key: Either<Buffer, String>,
        options: Option<ArchiveOptionsJs>,
    ) -> napi::Result<ArchiveMetadataJs> {
        let key = archive_key(key)?;
        let o = archive_options(&options)?;
        let m = self
            .inner
            .create_archive(&PathBuf::from(path), &key, &o, &Control::new())
            .await
            .js()?;
        Ok(metadata_to_js(&m))
    }

    /// Reads what an archive holds (its key is needed: the metadata is encrypted too).
    #[napi]
    pub async fn archive_metadata(
        &self,
        path: String,
        key: Either<Buffer, String>,
    ) -> napi::Result<ArchiveMetadataJs> {
        let key = archive_key(key)?;
        let m = self
            .inner
            .archive_metadata(&PathBuf::from(path), &key)
            .await
            .js()?;
        Ok(metadata_to_js(&m))
    }

    /// Imports an archive of this inbox, all or nothing and additively; restored
    /// conversations are inactive until a member re-adds this installation.
    #[napi]
    pub async fn import_archive(
        &self,
        path: String,
        key: Either<Buffer, String>,
    ) -> napi::Result<ImportReportJs> {
        let key = archive_key(key)?;
        let r = self
            .inner
            .import_archive(&PathBuf::from(path), &key, &Control::new())
            .await
            .js()?;
        Ok(report_to_js(&r))
    }

    /// [`create_archive`](Self::create_archive) into memory.
    #[napi]
    pub async fn create_archive_bytes(
        &self,
        key: Either<Buffer, String>,
        options: Option<ArchiveOptionsJs>,
    ) -> napi::Result<Buffer> {
        let key = archive_key(key)?;
        let o = archive_options(&options)?;
        let bytes = self
            .inner
            .create_archive_bytes(&key, &o, &Control::new())
            .await
            .js()?;
        Ok(bytes.into())
    }

    /// [`archive_metadata`](Self::archive_metadata) of an archive in memory.
    #[napi]
    pub async fn archive_metadata_bytes(
        &self,
        archive: Buffer,
        key: Either<Buffer, String>,
    ) -> napi::Result<ArchiveMetadataJs> {
        let key = archive_key(key)?;
        let m = self
            .inner
            .archive_metadata_bytes(&archive, &key)
            .await
            .js()?;
        Ok(metadata_to_js(&m))
    }

    /// [`import_archive`](Self::import_archive) of an archive in memory.
    #[napi]
    pub async fn import_archive_bytes(
        &self,
        archive: Buffer,
        key: Either<Buffer, String>,
    ) -> napi::Result<ImportReportJs> {
        let key = archive_key(key)?;
        let r = self
            .inner
            .import_archive_bytes(&archive, &key, &Control::new())
            .await
            .js()?;
        Ok(report_to_js(&r))
    }
}

/// Nanoseconds since the Unix epoch, now (for archive ranges).
#[napi]
pub fn now_ns() -> BigInt {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    BigInt::from(ns)
}
