//! Ferry's delivery node: stores and relays, never sees plaintext.
//!
//! The node keeps four things, in SQLite ([`SqliteStorage`], behind the [`NodeStorage`] trait):
//!
//! - **Identity logs**: each inbox's append-only log of signed updates, and an index from
//!   installation id to its inbox (and whether it was revoked). The node verifies every
//!   update against the stored log before appending it, but clients verify logs themselves.
//! - **Key packages**: per installation one regular package (handed out once) and one
//!   last-resort package (handed out as often as asked).
//! - **Group messages**: MLS commits and application messages, opaque bytes.
//! - **Welcomes**: MLS welcomes, opaque bytes addressed to installations.
//!
//! **Ordering.** Group messages take sequence ids from one global counter, as do welcomes;
//! ids only increase, also across restarts, and subscribers receive messages in id order.
//! Clients page with "everything after this id".
//!
//! **Conflicts.** Two members may commit in the same epoch. The node keeps both, in order;
//! clients apply the first *valid* commit of an epoch and drop later ones as stale, and the
//! losing sender retries its change on the new epoch. The node does not refuse the second
//! commit itself: it cannot tell a valid commit from a forged one, so a rule "one commit per
//! epoch" would let one misbehaving member freeze a group with a commit everyone rejects.
//! `commit_epoch` is kept for operators. A batch of messages is stored all or nothing.
//!
//! **Access.** Calls are signed by the calling installation's key and checked against the
//! identity logs; key packages are verified before they are stored; every installation and
//! address has rate limits ([`AccessPolicy`]; the table of who may call what is in the
//! `access` module's source and in docs/reliability.md).
//!
//! **What it never sees.** Message and welcome contents are MLS ciphertext; key packages are
//! public. The node holds no keys and cannot read, forge or alter what it relays undetected.
//!
//! Run it in-process with [`RunningNode`] (its own thread and runtime) or with [`serve`] on a
//! runtime of your own.
//!
//! **TLS.** With [`NodeConfig::tls`] (a certificate chain and key, PEM files) the node serves
//! gRPC over TLS (rustls, ALPN `h2`; see [`serve_tls`]) and clients use `https://` URLs.

mod access;
mod service;
mod storage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use ferry_proto::node::node_server::NodeServer;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;

pub use access::{AccessPolicy, RateLimits};
pub use ferry_tls::{ServerTls, TlsError};

pub use service::{
    ResponseStream, DEFAULT_QUERY_LIMIT, MAX_IDS_PER_REQUEST, MAX_KEY_PACKAGE_BYTES,
    MAX_MESSAGE_BYTES, MAX_PAGE_BYTES, MAX_QUERY_LIMIT,
};
pub use storage::{
    Database, DbError, InstallationChange, InstallationRecord, NodeStorage, PostgresStorage,
    SqliteStorage, StorageError, DEFAULT_POOL_SIZE, POSTGRES_MIGRATIONS, SCHEMA_VERSION,
};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the database or a later storage operation failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node's thread or runtime could not be started.
    #[error("cannot start the node's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS certificate or key could not be used (the error names the file).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl NodeError {
    /// Whether starting the node may succeed if tried again later: binding or starting the
    /// runtime was interrupted or timed out, the database was busy (see
    /// [`StorageError::is_retryable`]), or reading a TLS file was interrupted. False for an
    /// address in use or not allowed, a newer or corrupt database, unusable TLS files, and a
    /// failed gRPC server.
    pub fn is_retryable(&self) -> bool {
        match self {
            NodeError::Bind { source: e, .. } | NodeError::Runtime(e) => matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            NodeError::Storage(e) => e.is_retryable(),
            NodeError::Tls(e) => e.is_retryable(),
            NodeError::Transport(_) => false,
        }
    }
}

/// Where a [`RunningNode`] listens and keeps its data.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on, e.g. `"127.0.0.1:0"` for any free port.
    pub listen: String,
    /// Where the node keeps its data: memory, a SQLite file, or a PostgreSQL database
    /// shared with other replicas.
    pub db: Database,
    /// Serve gRPC over TLS with this certificate chain and key (PEM files, read at start);
    /// `None` serves plain HTTP/2.
    pub tls: Option<ServerTls>,
    /// Who may call what, and how often.
    pub access: AccessPolicy,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: "127.0.0.1:0".to_string(),
            db: Database::Memory,
            tls: None,
            access: AccessPolicy::default(),
        }
    }
}

/// Serves the node's gRPC API on `listener` until `shutdown` completes.
///
/// When `shutdown` fires, open subscription streams end (with `UNAVAILABLE`) and the server
/// finishes in-flight requests before returning.
pub async fn serve(
    listener: TcpListener,
    storage: Arc<dyn NodeStorage>,
    policy: AccessPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    // Small responses go out at once: without TCP_NODELAY, a response written in two parts
    // waits for the client's delayed ACK (about 40 ms on Linux).
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    });
    serve_incoming(incoming, storage, policy, shutdown).await
}

/// Like [`serve`], over TLS: each connection's handshake (bounded by
/// [`ferry_tls::DEFAULT_HANDSHAKE_TIMEOUT`]) runs on a task of its own before gRPC sees it.
/// Make `acceptor` with [`ServerTls::acceptor`] and ALPN [`ferry_tls::ALPN_H2`].
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: ferry_tls::tokio_rustls::TlsAcceptor,
    storage: Arc<dyn NodeStorage>,
    policy: AccessPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let incoming = ferry_tls::incoming(
        listener,
        acceptor,
        ferry_tls::DEFAULT_HANDSHAKE_TIMEOUT,
        true,
    );
    serve_incoming(incoming, storage, policy, shutdown).await
}

async fn serve_incoming<I, IO, IE>(
    incoming: I,
    storage: Arc<dyn NodeStorage>,
    policy: AccessPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let svc = service::NodeService::new(storage, policy, stop_rx);
    let (fired_tx, fired_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("node shutting down");
        // Ends the subscription streams, so that the graceful shutdown does not wait on them.
        let _ = stop_tx.send(true);
        let _ = fired_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .add_service(NodeServer::new(svc))
        .serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    // In-flight requests get SHUTDOWN_GRACE to finish; a client that keeps an idle
    // connection open does not keep the node from stopping.
    let grace = async {
        if fired_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = &mut server => served?,
        _ = grace => tracing::info!("node stopped with connections still open"),
    }
    Ok(())
}

/// How long a stopping node waits for in-flight requests and open connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A node serving on its own thread, with a two-worker tokio runtime.
///
/// Start and stop it from synchronous code (not from inside an async runtime). Dropping it
/// also shuts it down.
pub struct RunningNode {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningNode {
    /// Reads the TLS files (if any), opens the storage, binds the listen address and starts
    /// serving; returns once bound.
    pub fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
        let acceptor = match &config.tls {
            Some(tls) => Some(tls.acceptor(&[ferry_tls::ALPN_H2])?),
            None => None,
        };
        let tls = acceptor.is_some();
        let storage = config.db.open()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-node-worker")
            .enable_all()
            .build()
            .map_err(NodeError::Runtime)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let listen = config.listen;
        let policy = config.access;
        let thread = std::thread::Builder::new()
            .name("ferry-node".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let bound = TcpListener::bind(&listen)
                        .await
                        .and_then(|l| Ok((l.local_addr()?, l)));
                    let listener = match bound {
                        Ok((addr, listener)) => {
                            let _ = ready_tx.send(Ok(addr));
                            listener
                        }
                        Err(source) => {
                            let _ = ready_tx.send(Err(NodeError::Bind {
                                addr: listen,
                                source,
                            }));
                            return;
                        }
                    };
                    let shutdown = async move {
                        // A dropped sender also means stop.
                        let _ = stop_rx.await;
                    };
                    let served = match acceptor {
                        Some(acceptor) => {
                            serve_tls(listener, acceptor, storage, policy, shutdown).await
                        }
                        None => serve(listener, storage, policy, shutdown).await,
                    };
                    if let Err(e) = served {
                        tracing::error!(error = %e, "node stopped with an error");
                    }
                });
                // Whatever is left (e.g. connections of clients that never hung up) is
                // abandoned rather than waited for.
                runtime.shutdown_timeout(Duration::from_millis(500));
            })
            .map_err(NodeError::Runtime)?;
        let addr = match ready_rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(NodeError::Runtime(std::io::Error::other(
                    "node thread ended before binding",
                )));
            }
        };
        tracing::info!(%addr, tls, "node listening");
        Ok(RunningNode {
            addr,
            tls,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's URL for gRPC clients, e.g. `http://127.0.0.1:50051`, or
    /// `https://127.0.0.1:50051` with TLS (the certificate must then name the IP address).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the node serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Shuts the node down gracefully and waits for its thread.
    pub fn stop(self) {
        // Drop does the work.
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("node thread panicked");
            }
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_use_is_not_retryable_an_interrupted_bind_is() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let Err(err) = RunningNode::start(NodeConfig {
            listen: taken.local_addr().unwrap().to_string(),
            ..NodeConfig::default()
        }) else {
            panic!("the address is taken")
        };
        assert!(matches!(err, NodeError::Bind { .. }), "{err:?}");
        assert!(!err.is_retryable(), "{err:?}");

        let interrupted = NodeError::Bind {
            addr: "127.0.0.1:0".into(),
            source: std::io::Error::new(std::io::ErrorKind::Interrupted, "x"),
        };
        assert!(interrupted.is_retryable());
        let busy = DbError::new("sqlite", true, "database is locked");
        assert!(NodeError::Storage(busy.into()).is_retryable());
        let newer = NodeError::Storage(StorageError::UnsupportedVersion {
            location: "node.db".into(),
            found: 99,
            known: SCHEMA_VERSION,
        });
        assert!(!newer.is_retryable());
    }
}
