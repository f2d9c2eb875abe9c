//! Ferry's history server: a short-lived drop box for encrypted history archives.
//!
//! When a user adds an installation, another installation of theirs seals its history into
//! a Ferry archive with a fresh random key, uploads the archive here and sends the download
//! URL and the key to the new installation over MLS. The server only ever sees ciphertext
//! and never the key.
//!
//! # API
//!
//! - `POST /upload`: the body is the archive, streamed to storage (never held whole in memory;
//!   an object store holds up to a few parts of it). Answers `201` with
//!   `{"id": "<32 hex>", "bytes": N, "expires_at_ns": T}`. An empty body is `400`; more than
//!   [`HistoryConfig::max_bytes`] is `413`, checked against `Content-Length` before anything
//!   is stored and again while streaming. A body that stalls for
//!   [`HistoryConfig::idle_timeout`] is cut off with `408`. Clients should send
//!   `Expect: 100-continue` so a refused upload is refused before its body is sent.
//! - `GET /files/{id}`: the archive, `200` with `application/octet-stream` and
//!   `Content-Length`. Unknown, malformed and expired ids all get the same `404`.
//! - `POST /attachments` and `GET /attachments/{id}`: the same for remote attachments'
//!   encrypted files, a class of their own: kept for [`HistoryConfig::attachment_ttl`]
//!   (30 days by default) and never removed after a download.
//! - `GET /health`: `200` `ok`.
//!
//! There is no way to list payloads. Ids are 128 bits from the OS random number generator,
//! so they cannot be guessed; they are checked strictly (32 lowercase hex digits) before
//! the storage sees them, so a request cannot name a path.
//!
//! # Lifetime of a payload
//!
//! A payload lives for [`HistoryConfig::ttl`] from the end of its upload. An expired
//! payload is never served; a sweeper removes expired payloads (at start and then every
//! `min(ttl, 60 s)`). With [`HistoryConfig::delete_after_download`], a payload is removed
//! as soon as one download has streamed all of it. [`FolderStorage`] keeps the upload time
//! as the file's modification time (see there).
//!
//! # Storage
//!
//! Payloads live in a folder ([`HistoryConfig::dir`], [`FolderStorage`]) or in S3-compatible
//! object storage ([`HistoryConfig::store`] `= "s3://bucket/prefix"`, [`ObjectStorage`]), both
//! behind [`PayloadStorage`]. Several servers may share one bucket and prefix: nothing is
//! kept outside it, so any of them serves any upload, and their sweeps remove expired
//! payloads whichever server stored them.
//!
//! # Abuse
//!
//! Uploads and downloads are rate limited per client IP address with a token bucket of
//! [`HistoryConfig::requests_per_minute`] (`429` with `Retry-After` beyond it). Request
//! headers must also arrive within the idle timeout, and idle keep-alive connections are
//! closed after it.
//!
//! # TLS
//!
//! With [`HistoryConfig::tls`] (a certificate chain and key, PEM files) the server speaks
//! HTTPS: each connection's TLS handshake must finish within the idle timeout, then the
//! same HTTP/1.1 service runs over it, with the same limits.
//!
//! Run it in-process with [`RunningHistoryServer`] (its own thread and runtime) or with
//! [`serve`] on a runtime of your own.

mod object;
mod server;
mod storage;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_service::Service;

pub use ferry_tls::{ServerTls, TlsError};
pub use object::{ObjectStorage, ObjectStorageError, PART_BYTES};
/// The `object_store` crate, for [`ObjectStorage::new`] over a store of your own.
pub use object_store;
pub use server::UploadReply;
pub use storage::{
    FolderStorage, InvalidPayloadId, PayloadId, PayloadSink, PayloadStorage, StorageFuture,
    StoredPayload, ID_BYTES, ID_HEX_LEN,
};

/// Default for [`HistoryConfig::max_bytes`]: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default for [`HistoryConfig::ttl`]: 24 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Default for [`HistoryConfig::attachment_ttl`]: 30 days.
pub const DEFAULT_ATTACHMENT_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The sub-folder (or sub-prefix) of the storage where attachments live.
pub const ATTACHMENTS_CLASS: &str = "attachments";
/// Default for [`HistoryConfig::requests_per_minute`].
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 120;
/// Default for [`HistoryConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The sweeper runs at least this often.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long a stopping server lets requests in progress finish before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why the history server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryServerError {
    /// Neither [`HistoryConfig::dir`] nor [`HistoryConfig::store`] was set.
    #[error(
        "the history server needs a storage folder or store (HistoryConfig::dir and \
         HistoryConfig::store are both empty)"
    )]
    MissingDir,
    /// A setting is out of range.
    #[error("invalid history server setting: {0}")]
    InvalidConfig(String),
    /// The storage folder cannot be created or read.
    #[error("cannot use storage folder {}: {source}", dir.display())]
    Storage {
        /// The folder ([`HistoryConfig::dir`]).
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The object store ([`HistoryConfig::store`]) cannot be set up: a location that is not
    /// `s3://bucket/prefix`, or settings object_store refuses.
    #[error("cannot use object store {location}: {source}")]
    ObjectStore {
        /// The location given.
        location: String,
        /// Why.
        #[source]
        source: ObjectStorageError,
    },
    /// The storage did not answer its check at start (for an object store: listing its
    /// prefix failed, e.g. an endpoint that does not answer, a missing bucket or refused
    /// credentials). The error names the place and what the store said.
    #[error("the payload storage does not answer: {0}")]
    StorageUnavailable(#[source] io::Error),
    /// The server's thread or runtime could not be started.
    #[error("cannot start the history server's runtime: {0}")]
    Runtime(#[source] io::Error),
    /// The TLS certificate or key could not be used (the error names the file).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl HistoryServerError {
    /// Whether starting the server may succeed if tried again later: using the storage
    /// folder, binding or starting the runtime was interrupted or timed out, or reading a TLS
    /// file was; the storage did not answer at start (unless it refused access outright).
    /// False for a missing folder or setting out of range, a folder that
    /// cannot be used, an invalid object store location, an address in use or not allowed,
    /// and unusable TLS files.
    pub fn is_retryable(&self) -> bool {
        match self {
            HistoryServerError::StorageUnavailable(e) => !matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound
            ),
            HistoryServerError::ObjectStore { .. } => false,
            HistoryServerError::Storage { source: e, .. }
            | HistoryServerError::Bind { source: e, .. }
            | HistoryServerError::Runtime(e) => matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            HistoryServerError::Tls(e) => e.is_retryable(),
            HistoryServerError::MissingDir | HistoryServerError::InvalidConfig(_) => false,
        }
    }
}

/// How a history server listens, where it keeps payloads and its limits.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Address to listen on, e.g. `"127.0.0.1:0"` for any free port.
    pub listen: String,
    /// Folder for payloads (created if missing). This or [`store`](Self::store) must be set:
    /// the default is empty.
    pub dir: PathBuf,
    /// Where payloads are kept instead of [`dir`](Self::dir): `s3://bucket/prefix` for
    /// S3-compatible object storage (see [`ObjectStorage::s3_from_env`] for the `AWS_*`
    /// environment variables it reads), or a folder (`file:///path` or a path). `None` (the
    /// default) uses `dir`; setting both is an error.
    pub store: Option<String>,
    /// Largest accepted upload, in bytes.
    pub max_bytes: u64,
    /// How long a payload is kept after its upload completed.
    pub ttl: Duration,
    /// How long a remote attachment's file (`POST /attachments`) is kept: a class of its
    /// own, longer-lived than history archives and never removed after a download (every
    /// member of a conversation fetches it). Kept beside the archives, in `attachments/`.
    pub attachment_ttl: Duration,
    /// Remove a payload once it has been downloaded completely.
    pub delete_after_download: bool,
    /// Uploads plus downloads per client IP address and minute (burst of the same size);
    /// `0` turns the limit off.
    pub requests_per_minute: u32,
    /// Longest wait for the next bytes of a request (headers or upload body), and longest
    /// idle time of a keep-alive connection. Also bounds a TLS handshake.
    pub idle_timeout: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM files, read at start); `None`
    /// serves plain HTTP.
    pub tls: Option<ServerTls>,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            listen: "127.0.0.1:0".to_string(),
            dir: PathBuf::new(),
            store: None,
            max_bytes: DEFAULT_MAX_BYTES,
            ttl: DEFAULT_TTL,
            attachment_ttl: DEFAULT_ATTACHMENT_TTL,
            delete_after_download: false,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            tls: None,
        }
    }
}

impl HistoryConfig {
    /// Checks the limits (not `listen` or `dir`).
    pub fn validate(&self) -> Result<(), HistoryServerError> {
        if self.max_bytes == 0 {
            return Err(HistoryServerError::InvalidConfig(
                "max_bytes must be at least 1".into(),
            ));
        }
        if self.ttl.is_zero() || self.attachment_ttl.is_zero() {
            return Err(HistoryServerError::InvalidConfig(
                "ttl must be positive".into(),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(HistoryServerError::InvalidConfig(
                "idle_timeout must be positive".into(),
            ));
        }
        Ok(())
    }

    fn sweep_interval(&self) -> Duration {
        self.ttl
            .min(self.attachment_ttl)
            .min(MAX_SWEEP_INTERVAL)
            .max(Duration::from_millis(50))
    }
}

/// Serves the history API on `listener` until `shutdown` completes.
///
/// Uses the limits and the TLS files of `config` (its `listen` and `dir` are ignored: the
/// listener and the storage are given). Sweeps expired payloads first and then periodically.
/// On shutdown it stops accepting, lets requests in progress finish for up to
/// [`SHUTDOWN_GRACE`] and returns; connections still open then are left to the caller's
/// runtime to drop.
pub async fn serve(
    listener: TcpListener,
    storage: Arc<dyn PayloadStorage>,
    config: &HistoryConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), HistoryServerError> {
    config.validate()?;
    let acceptor = tls_acceptor(config)?;
    serve_with(listener, storage, config, acceptor, shutdown).await
}

fn tls_acceptor(
    config: &HistoryConfig,
) -> Result<Option<ferry_tls::tokio_rustls::TlsAcceptor>, HistoryServerError> {
    match &config.tls {
        Some(tls) => Ok(Some(tls.acceptor(&[ferry_tls::ALPN_HTTP_1_1])?)),
        None => Ok(None),
    }
}

async fn serve_with(
    listener: TcpListener,
    storage: Arc<dyn PayloadStorage>,
    config: &HistoryConfig,
    acceptor: Option<ferry_tls::tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), HistoryServerError> {
    let attachments =
        storage
            .class(ATTACHMENTS_CLASS)
            .await
            .map_err(|source| HistoryServerError::Storage {
                dir: PathBuf::from(ATTACHMENTS_CLASS),
                source,
            })?;
    let app = Arc::new(server::App::new(config, Arc::clone(&storage), attachments));
    sweep(&app).await;
    let sweeper = {
        let app = Arc::clone(&app);
        let every = config.sweep_interval();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                sweep(&app).await;
            }
        })
    };
    let router = server::router(Arc::clone(&app));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(server::PeerAddr(peer));
            router.clone().call(req)
        });
        match &acceptor {
            None => {
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                // The handshake runs on the connection's task, so a slow client holds up
                // nobody; it gets the idle timeout, like request headers.
                let acceptor = acceptor.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = config.idle_timeout;
                tokio::spawn(async move {
                    let Some(tls) =
                        ferry_tls::handshake(&acceptor, stream, peer, handshake_timeout).await
                    else {
                        return;
                    };
                    let connection = http.serve_connection(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    tracing::info!("history server shutting down");
    drop(listener);
    sweeper.abort();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::info!("abandoning requests still in progress");
        }
    }
    Ok(())
}

async fn sweep(app: &server::App) {
    app.limiter.prune();
    for (what, class) in [
        ("archives", &app.archives),
        ("attachments", &app.attachments),
    ] {
        let Some(cutoff) = SystemTime::now().checked_sub(class.ttl) else {
            continue;
        };
        match class.storage.sweep(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, what, "swept expired payloads"),
            Err(e) => tracing::warn!(error = %e, what, "sweeping expired payloads failed"),
        }
    }
}

fn open_folder(dir: &std::path::Path) -> Result<Arc<dyn PayloadStorage>, HistoryServerError> {
    let storage = FolderStorage::open(dir).map_err(|source| HistoryServerError::Storage {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(storage))
}

/// The storage a [`HistoryConfig::store`] names: `s3://` (from the environment), `file://` or
/// a path (a folder).
fn open_store(location: &str) -> Result<Arc<dyn PayloadStorage>, HistoryServerError> {
    if location.starts_with("s3://") {
        let storage = ObjectStorage::s3_from_env(location).map_err(|source| {
            HistoryServerError::ObjectStore {
                location: location.to_string(),
                source,
            }
        })?;
        return Ok(Arc::new(storage));
    }
    if let Some(path) = location.strip_prefix("file://") {
        return open_folder(std::path::Path::new(path));
    }
    if location.is_empty() || location.contains("://") {
        return Err(HistoryServerError::InvalidConfig(format!(
            "unsupported store {location:?}: use s3://bucket/prefix, file:///path or a folder"
        )));
    }
    open_folder(std::path::Path::new(location))
}

/// A history server on its own thread, with a two-worker tokio runtime.
///
/// Start and stop it from synchronous code (not from inside an async runtime). Dropping it
/// also shuts it down.
pub struct RunningHistoryServer {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningHistoryServer {
    /// Opens the storage ([`HistoryConfig::dir`] or [`HistoryConfig::store`]), checks that it
    /// answers, binds the listen address and starts serving; returns once bound.
    pub fn start(config: HistoryConfig) -> Result<RunningHistoryServer, HistoryServerError> {
        config.validate()?;
        let storage = match (&config.store, config.dir.as_os_str().is_empty()) {
            (Some(_), false) => {
                return Err(HistoryServerError::InvalidConfig(
                    "set either dir or store, not both".into(),
                ))
            }
            (Some(location), true) => open_store(location)?,
            (None, true) => return Err(HistoryServerError::MissingDir),
            (None, false) => open_folder(&config.dir)?,
        };
        Self::start_with_storage(config, storage)
    }

    /// Like [`start`](Self::start) with a storage of your own (`config.dir` and
    /// `config.store` are ignored).
    pub fn start_with_storage(
        config: HistoryConfig,
        storage: Arc<dyn PayloadStorage>,
    ) -> Result<RunningHistoryServer, HistoryServerError> {
        config.validate()?;
        let acceptor = tls_acceptor(&config)?;
        let tls = acceptor.is_some();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-history-worker")
            .enable_all()
            .build()
            .map_err(HistoryServerError::Runtime)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferry-history-server".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Err(e) = storage.check().await {
                        let _ = ready_tx.send(Err(HistoryServerError::StorageUnavailable(e)));
                        return;
                    }
                    let bound = TcpListener::bind(&config.listen)
                        .await
                        .and_then(|l| Ok((l.local_addr()?, l)));
                    let listener = match bound {
                        Ok((addr, listener)) => {
                            let _ = ready_tx.send(Ok(addr));
                            listener
                        }
                        Err(source) => {
                            let _ = ready_tx.send(Err(HistoryServerError::Bind {
                                addr: config.listen.clone(),
                                source,
                            }));
                            return;
                        }
                    };
                    let shutdown = async move {
                        // A dropped sender also means stop.
                        let _ = stop_rx.await;
                    };
                    let served = serve_with(listener, storage, &config, acceptor, shutdown);
                    if let Err(e) = served.await {
                        tracing::error!(error = %e, "history server stopped with an error");
                    }
                });
                // Connections still open (e.g. stalled clients) are dropped, not waited for;
                // dropping an upload removes its partial file.
                runtime.shutdown_timeout(Duration::from_millis(500));
            })
            .map_err(HistoryServerError::Runtime)?;
        let addr = match ready_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(HistoryServerError::Runtime(io::Error::other(
                    "history server thread ended before binding",
                )));
            }
        };
        tracing::info!(%addr, tls, "history server listening");
        Ok(RunningHistoryServer {
            addr,
            tls,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, e.g. `http://127.0.0.1:8080`, or `https://127.0.0.1:8080` with
    /// TLS (the certificate must then name the IP address).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Shuts the server down and waits for its thread (at most about
    /// [`SHUTDOWN_GRACE`] plus half a second).
    pub fn stop(self) {
        // Drop does the work.
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("history server thread panicked");
            }
        }
    }
}

impl Drop for RunningHistoryServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for RunningHistoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHistoryServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_interrupted_starts_are_retryable() {
        let config = |dir: PathBuf| HistoryConfig {
            dir,
            ..HistoryConfig::default()
        };
        let Err(missing) = RunningHistoryServer::start(config(PathBuf::new())) else {
            panic!("no folder")
        };
        let dir = tempfile::tempdir().unwrap();
        let Err(invalid) = RunningHistoryServer::start(HistoryConfig {
            ttl: Duration::ZERO,
            ..config(dir.path().to_path_buf())
        }) else {
            panic!("ttl 0")
        };
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let Err(in_use) = RunningHistoryServer::start(HistoryConfig {
            listen: taken.local_addr().unwrap().to_string(),
            ..config(dir.path().to_path_buf())
        }) else {
            panic!("address taken")
        };
        assert!(
            matches!(in_use, HistoryServerError::Bind { .. }),
            "{in_use:?}"
        );
        for e in [missing, invalid, in_use] {
            assert!(!e.is_retryable(), "{e:?}");
        }
        let interrupted =
            HistoryServerError::Runtime(io::Error::new(io::ErrorKind::Interrupted, "x"));
        assert!(interrupted.is_retryable());
    }
}
