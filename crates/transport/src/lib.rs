//! The network behind the Ferry SDK.
//!
//! [`Transport`] is everything a client asks of the delivery node: identity logs, key packages,
//! group messages and welcomes, and subscriptions to new ones. The SDK holds a
//! `Arc<dyn Transport>`, so state (ferry-store, ferry-mls) never depends on how bytes move.
//! [`GrpcTransport`] is the implementation over tonic; it is **blocking** (it owns a small
//! tokio runtime), matching the SDK's synchronous API.
//!
//! The node is not trusted: it stores and orders opaque bytes. Clients verify identity logs
//! and MLS messages themselves.
//!
//! **TLS.** An `https://` node URL (and history server URL) is reached over TLS (rustls, ring)
//! and the server's certificate is verified: against the CA certificates of a [`CaCerts`]
//! when one is given (a deployment with its own CA), else against the public web PKI roots
//! (Mozilla's, bundled by `webpki-roots`, so it works the same on every machine, with or
//! without an OS certificate store). A failed handshake is a
//! [`TransportError::Unavailable`] naming the URL and what was wrong with the certificate.
//! `http://` URLs stay plain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::node_client::NodeClient;
use ferry_proto::node::{
    FetchKeyPackagesRequest, GetIdentityLogsRequest, GroupMessage, GroupMessageInput,
    PublishIdentityUpdateRequest, QueryGroupMessagesRequest, QueryWelcomesRequest,
    SendGroupMessagesRequest, SendWelcomesRequest, SubscribeGroupMessagesRequest,
    SubscribeWelcomesRequest, UploadKeyPackageRequest, Welcome, WelcomeInput,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

pub mod history;

pub use ferry_proto::node;
pub use ferry_tls::{CaCerts, TlsError};
pub use history::{HistoryClient, HistoryError};

/// Why a call to the node failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("invalid node url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The node could not be reached (dead server, refused connection, timeout).
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// Another commit for the same group and epoch was stored first.
    #[error("commit conflict: {0}")]
    CommitConflict(String),
    /// An identity update whose sequence is already taken (a concurrent update won).
    #[error("identity update conflict: {0}")]
    IdentityConflict(String),
    /// The node refused the request.
    #[error("node refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
    /// A subscription ended (the node stopped or the subscriber lagged behind).
    #[error("subscription closed: {0}")]
    Closed(String),
}

pub type Result<T, E = TransportError> = std::result::Result<T, E>;

impl From<tonic::Status> for TransportError {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            Code::Aborted => TransportError::CommitConflict(message),
            Code::AlreadyExists => TransportError::IdentityConflict(message),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                TransportError::Unavailable(if message.is_empty() {
                    format!("{:?}", s.code())
                } else {
                    message
                })
            }
            code => TransportError::Rejected {
                code: format!("{code:?}"),
                message,
            },
        }
    }
}

/// A page of a topic: the items and where to continue.
#[derive(Debug, Clone, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: u64,
}

/// Items pushed by the node as they are stored. Dropping it ends the subscription.
pub struct Subscription<T> {
    rx: Receiver<Result<T>>,
    stop: Arc<AtomicBool>,
}

impl<T> Subscription<T> {
    /// Waits up to `timeout` for the next item: `Ok(None)` when none came in time; an error
    /// when the subscription ended (resubscribe, and query from the cursor to catch up).
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(item)) => Ok(Some(item)),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(TransportError::Closed("stream ended".into()))
            }
        }
    }

    /// The channel the items arrive on (to `select!` over several subscriptions).
    pub fn receiver(&self) -> &Receiver<Result<T>> {
        &self.rx
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What a client asks of the delivery node. Blocking; implementations are shared across
/// threads.
pub trait Transport: Send + Sync {
    fn publish_identity_update(&self, update: IdentityUpdate) -> Result<u64>;
    /// Each inbox's log, in order (an unknown inbox has an empty log).
    fn identity_logs(&self, inbox_ids: &[String]) -> Result<Vec<(String, Vec<IdentityUpdate>)>>;
    fn upload_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<()>;
    /// One key package per installation, in request order (empty when it has none).
    fn fetch_key_packages(&self, installation_ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>>;
    /// Stores messages in order, all or none; a commit that lost its epoch fails with
    /// [`TransportError::CommitConflict`].
    fn send_group_messages(&self, messages: Vec<GroupMessageInput>) -> Result<Vec<u64>>;
    fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<GroupMessage>>;
    fn send_welcomes(&self, welcomes: Vec<WelcomeInput>) -> Result<()>;
    fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<Welcome>>;
    fn subscribe_group_messages(
        &self,
        group_ids: Vec<Vec<u8>>,
    ) -> Result<Subscription<GroupMessage>>;
    fn subscribe_welcomes(&self, installation_id: &[u8]) -> Result<Subscription<Welcome>>;
}

/// [`Transport`] over gRPC (tonic), blocking on a runtime of its own.
pub struct GrpcTransport {
    runtime: tokio::runtime::Runtime,
    client: NodeClient<Channel>,
    url: String,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("url", &self.url)
            .finish()
    }
}

/// How long one call may take before it fails as [`TransportError::Unavailable`].
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl GrpcTransport {
    /// A transport to the node at `url` (`http://host:port`, or `https://host:port` verified
    /// against the public roots). Connects lazily: a dead node shows up as
    /// [`TransportError::Unavailable`] on the first call, not here.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with_ca(url, None)
    }

    /// Like [`connect`](Self::connect); an `https://` node's certificate must then chain to
    /// one of `ca`'s certificates (instead of a public root). `ca` is ignored for `http://`.
    pub fn connect_with_ca(url: &str, ca: Option<&CaCerts>) -> Result<Self> {
        let invalid = |reason: String| TransportError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("it must start with http:// or https://".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferry-transport")
            .enable_all()
            .build()
            .map_err(|e| TransportError::Unavailable(format!("cannot start runtime: {e}")))?;
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let tls = match ca {
                Some(ca) => ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem())),
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls.timeout(CONNECT_TIMEOUT))
                .map_err(|e| invalid(error_chain(&e)))?;
        }
        let channel = {
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(GrpcTransport {
            runtime,
            client: NodeClient::new(channel).max_decoding_message_size(8 << 20),
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A failed call's error; one that may be the connection's names the URL and the cause.
    fn error(&self, status: tonic::Status) -> TransportError {
        let detail = ferry_tls::tls_failure(&status).unwrap_or_else(|| status_chain(&status));
        // An internal error with a source was made here from a broken connection (e.g. a
        // plain client at a TLS port), not answered by the node.
        let broken_connection =
            status.code() == Code::Internal && std::error::Error::source(&status).is_some();
        match TransportError::from(status) {
            TransportError::Unavailable(_) => {
                TransportError::Unavailable(format!("{}: {detail}", self.url))
            }
            _ if broken_connection => {
                TransportError::Unavailable(format!("{}: {detail}", self.url))
            }
            other => other,
        }
    }

    fn call<T, F>(&self, f: impl FnOnce(NodeClient<Channel>) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        let started = std::time::Instant::now();
        let out = self.runtime.block_on(async move {
            match tokio::time::timeout(CALL_TIMEOUT, f(client)).await {
                Ok(r) => r.map(|r| r.into_inner()).map_err(|s| self.error(s)),
                Err(_) => Err(TransportError::Unavailable(format!(
                    "{}: no answer within {} s",
                    self.url,
                    CALL_TIMEOUT.as_secs()
                ))),
            }
        });
        tracing::trace!(
            call = std::any::type_name::<T>(),
            micros = started.elapsed().as_micros() as u64,
            ok = out.is_ok(),
            "node call"
        );
        out
    }

    fn subscribe<T: Send + 'static>(
        &self,
        open: impl std::future::Future<
                Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
            > + Send
            + 'static,
    ) -> Result<Subscription<T>> {
        let mut stream = self.runtime.block_on(async move {
            match tokio::time::timeout(CALL_TIMEOUT, open).await {
                Ok(r) => r.map(|r| r.into_inner()).map_err(|s| self.error(s)),
                Err(_) => Err(TransportError::Unavailable(format!(
                    "{}: subscribe timed out",
                    self.url
                ))),
            }
        })?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        self.runtime.spawn(async move {
            loop {
                // Wake up now and then to notice that the subscriber went away.
                let next = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let item = match next {
                    Err(_) => continue,
                    Ok(Ok(Some(item))) => Ok(item),
                    Ok(Ok(None)) => Err(TransportError::Closed("the node ended the stream".into())),
                    Ok(Err(status)) => Err(TransportError::Closed(status.message().to_string())),
                };
                let end = item.is_err();
                if tx.send(item).is_err() || end {
                    break;
                }
            }
        });
        Ok(Subscription { rx, stop })
    }
}

/// `err` and its sources on one line, skipping a source whose text the previous one already
/// shows.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    chain_from(err.to_string(), err.source())
}

/// A status's message and its sources (its own `Display` is made for debugging).
fn status_chain(status: &tonic::Status) -> String {
    let message = match status.message() {
        "" => format!("{:?}", status.code()),
        m => m.to_string(),
    };
    chain_from(message, std::error::Error::source(status))
}

fn chain_from(first: String, mut next: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = first;
    let mut last = out.clone();
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        next = e.source();
    }
    out
}

impl Transport for GrpcTransport {
    fn publish_identity_update(&self, update: IdentityUpdate) -> Result<u64> {
        self.call(|mut c| async move {
            c.publish_identity_update(PublishIdentityUpdateRequest {
                update: Some(update),
            })
            .await
        })
        .map(|r| r.sequence)
    }

    fn identity_logs(&self, inbox_ids: &[String]) -> Result<Vec<(String, Vec<IdentityUpdate>)>> {
        let inbox_ids = inbox_ids.to_vec();
        let r = self.call(|mut c| async move {
            c.get_identity_logs(GetIdentityLogsRequest { inbox_ids })
                .await
        })?;
        Ok(r.logs
            .into_iter()
            .map(|l| (l.inbox_id, l.updates))
            .collect())
    }

    fn upload_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<()> {
        let req = UploadKeyPackageRequest {
            key_package: key_package.to_vec(),
            last_resort,
            installation_id: installation_id.to_vec(),
        };
        self.call(|mut c| async move { c.upload_key_package(req).await })
            .map(|_| ())
    }

    fn fetch_key_packages(&self, installation_ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let req = FetchKeyPackagesRequest {
            installation_ids: installation_ids.to_vec(),
        };
        let r = self.call(|mut c| async move { c.fetch_key_packages(req).await })?;
        // Answer in request order whatever order the node used.
        Ok(installation_ids
            .iter()
            .map(|id| {
                r.key_packages
                    .iter()
                    .find(|e| &e.installation_id == id)
                    .map(|e| e.key_package.clone())
                    .unwrap_or_default()
            })
            .collect())
    }

    fn send_group_messages(&self, messages: Vec<GroupMessageInput>) -> Result<Vec<u64>> {
        self.call(|mut c| async move {
            c.send_group_messages(SendGroupMessagesRequest { messages })
                .await
        })
        .map(|r| r.sequence_ids)
    }

    fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<GroupMessage>> {
        let req = QueryGroupMessagesRequest {
            group_id: group_id.to_vec(),
            after_sequence_id: after,
            limit,
        };
        let r = self.call(|mut c| async move { c.query_group_messages(req).await })?;
        Ok(Page {
            items: r.messages,
            cursor: r.cursor,
        })
    }

    fn send_welcomes(&self, welcomes: Vec<WelcomeInput>) -> Result<()> {
        self.call(|mut c| async move { c.send_welcomes(SendWelcomesRequest { welcomes }).await })
            .map(|_| ())
    }

    fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<Welcome>> {
        let req = QueryWelcomesRequest {
            installation_id: installation_id.to_vec(),
            after_sequence_id: after,
            limit,
        };
        let r = self.call(|mut c| async move { c.query_welcomes(req).await })?;
        Ok(Page {
            items: r.welcomes,
            cursor: r.cursor,
        })
    }

    fn subscribe_group_messages(
        &self,
        group_ids: Vec<Vec<u8>>,
    ) -> Result<Subscription<GroupMessage>> {
        let mut c = self.client.clone();
        self.subscribe(async move {
            c.subscribe_group_messages(SubscribeGroupMessagesRequest { group_ids })
                .await
        })
    }

    fn subscribe_welcomes(&self, installation_id: &[u8]) -> Result<Subscription<Welcome>> {
        let mut c = self.client.clone();
        let installation_id = installation_id.to_vec();
        self.subscribe(async move {
            c.subscribe_welcomes(SubscribeWelcomesRequest { installation_id })
                .await
        })
    }
}
