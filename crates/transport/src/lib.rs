//! The network behind the Ferry SDK.
//!
//! [`Transport`] is everything a client asks of the delivery node: identity logs, key packages,
//! group messages and welcomes, and subscriptions to new ones. The SDK holds a
//! `Arc<dyn Transport>`, so state (ferry-store, ferry-mls) never depends on how bytes move.
//! [`Transport`] is async; [`GrpcTransport`] is the implementation over tonic and runs on the
//! caller's tokio runtime (it owns none and never blocks a thread). Subscriptions are
//! [`futures::Stream`]s.
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

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferry_identity::request_auth;

use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::node_client::NodeClient;
use ferry_proto::node::{
    FetchKeyPackagesRequest, GetIdentityLogsRequest, GroupMessage, GroupMessageInput,
    PublishIdentityUpdateRequest, QueryGroupMessagesRequest, QueryWelcomesRequest,
    SendGroupMessagesRequest, SendWelcomesRequest, SubscribeGroupMessagesRequest,
    SubscribeWelcomesRequest, UploadKeyPackageRequest, Welcome, WelcomeInput,
};
use futures::stream::{BoxStream, Stream, StreamExt};
use tonic::metadata::MetadataValue;
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
    /// A node URL that cannot be used (not `http://` or `https://`, no host, ...).
    #[error("invalid node url {url}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The node could not be reached (dead server, refused connection, timeout).
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// Another commit for the same group and epoch was stored first: sync the group, then
    /// commit again on the new epoch.
    #[error("commit conflict: {0}")]
    CommitConflict(String),
    /// An identity update whose sequence is already taken (a concurrent update won): read
    /// the log again, then append after its new head.
    #[error("identity update conflict: {0}")]
    IdentityConflict(String),
    /// The node refused the request (an invalid argument, a failed precondition such as a
    /// revoked installation, an internal failure, a subscriber that lagged behind).
    #[error("node refused the request ({code}): {message}")]
    Rejected {
        /// The gRPC status code's name (`InvalidArgument`, `FailedPrecondition`, ...).
        code: String,
        /// The node's message.
        message: String,
    },
    /// A subscription ended (the node stopped or the subscriber lagged behind).
    #[error("subscription closed: {0}")]
    Closed(String),
    /// The node refuses this installation: it is revoked in its inbox's identity log.
    #[error("the node refuses this installation: {0}")]
    Revoked(String),
}

impl TransportError {
    /// Whether the same call may succeed if made again later: the node was unreachable or
    /// timed out, a subscription closed (subscribe again), the node was out of resources, or
    /// a conflict with a concurrent writer (after reading what won). False for a bad URL and
    /// for requests the node refused as invalid.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Unavailable(_)
            | TransportError::Closed(_)
            | TransportError::CommitConflict(_)
            | TransportError::IdentityConflict(_) => true,
            TransportError::Rejected { code, .. } => code == "ResourceExhausted",
            TransportError::InvalidUrl { .. } | TransportError::Revoked(_) => false,
        }
    }
}

/// The transport's result: [`TransportError`] unless said otherwise.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

impl From<tonic::Status> for TransportError {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            Code::Aborted => TransportError::CommitConflict(message),
            Code::AlreadyExists => TransportError::IdentityConflict(message),
            Code::PermissionDenied if message == request_auth::REVOKED => {
                TransportError::Revoked(message)
            }
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
    /// The node held nothing after this page when it answered (false when it does not say).
    pub last_page: bool,
}

/// Items pushed by the node as they are stored: a [`Stream`] that ends (after one
/// [`TransportError::Closed`]) when the node ends it. Dropping it ends the subscription.
pub struct Subscription<T> {
    inner: BoxStream<'static, Result<T>>,
}

impl<T> Subscription<T> {
    /// A subscription over any stream of items (for transports other than gRPC, and tests).
    pub fn new(stream: impl Stream<Item = Result<T>> + Send + 'static) -> Self {
        Subscription {
            inner: stream.boxed(),
        }
    }

    /// Waits up to `timeout` for the next item: `Ok(None)` when none came in time; an error
    /// when the subscription ended (resubscribe, and query from the cursor to catch up).
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Option<T>> {
        match tokio::time::timeout(timeout, self.inner.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(item))) => Ok(Some(item)),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(TransportError::Closed("stream ended".into())),
        }
    }
}

impl<T> Stream for Subscription<T> {
    type Item = Result<T>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// What a client asks of the delivery node. Async (every method is a future that is `Send`);
/// implementations are shared across tasks.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    async fn publish_identity_update(&self, update: IdentityUpdate) -> Result<u64>;
    /// Each inbox's log, in order (an unknown inbox has an empty log).
    async fn identity_logs(
        &self,
        inbox_ids: &[String],
    ) -> Result<Vec<(String, Vec<IdentityUpdate>)>>;
    async fn upload_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<()>;
    /// One key package per installation, in request order (empty when it has none).
    async fn fetch_key_packages(&self, installation_ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>>;
    /// Stores messages in order, all or none; a commit that lost its epoch fails with
    /// [`TransportError::CommitConflict`].
    async fn send_group_messages(&self, messages: Vec<GroupMessageInput>) -> Result<Vec<u64>>;
    async fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<GroupMessage>>;
    async fn send_welcomes(&self, welcomes: Vec<WelcomeInput>) -> Result<()>;
    async fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<Welcome>>;
    async fn subscribe_group_messages(
        &self,
        group_ids: Vec<Vec<u8>>,
    ) -> Result<Subscription<GroupMessage>>;
    async fn subscribe_welcomes(&self, installation_id: &[u8]) -> Result<Subscription<Welcome>>;

    /// Signs every later call with `signer`'s installation key, as the node requires of all
    /// calls but identity updates and identity-log reads (see
    /// [`ferry_identity::request_auth`]). The SDK sets it when a client opens; a transport that
    /// wraps another passes it on. The default ignores it (a transport that is not the node's
    /// gRPC API).
    fn set_request_signer(&self, signer: Arc<dyn RequestSigner>) {
        let _ = signer;
    }
}

/// Signs an installation's requests to the node: the SDK's installation identity, or a
/// [`ferry_identity::KeyPair`] (tests, tools).
pub trait RequestSigner: Send + Sync {
    /// The installation id: its Ed25519 public key.
    fn installation_id(&self) -> [u8; 32];
    /// The installation key's signature over
    /// [`request_auth::signed_message`]`(payload)`, which is what
    /// [`KeyPair::sign_request`](ferry_identity::KeyPair::sign_request) makes.
    fn sign_request(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, String>;
}

impl RequestSigner for ferry_identity::KeyPair {
    fn installation_id(&self) -> [u8; 32] {
        self.public_key()
    }

    fn sign_request(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
        Ok(ferry_identity::KeyPair::sign_request(self, payload))
    }
}

/// [`Transport`] over gRPC (tonic). Calls run on the caller's tokio runtime.
#[derive(Clone)]
pub struct GrpcTransport {
    client: NodeClient<Channel>,
    url: String,
    /// Shared by clones: set once the installation is known.
    signer: Arc<RwLock<Option<Arc<dyn RequestSigner>>>>,
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
    /// [`TransportError::Unavailable`] on the first call, not here. Must be called within a
    /// tokio runtime (the connection's background task runs on it).
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
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TransportError::Unavailable(format!(
                "{url}: a node connection needs a tokio runtime (call from async code, or use \
                 ferry_sdk::blocking)"
            )));
        }
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
        let channel = endpoint.connect_lazy();
        Ok(GrpcTransport {
            client: NodeClient::new(channel).max_decoding_message_size(8 << 20),
            url: url.to_string(),
            signer: Arc::default(),
        })
    }

    /// A transport whose calls are signed by `signer` from the start.
    pub fn with_signer(self, signer: Arc<dyn RequestSigner>) -> Self {
        Transport::set_request_signer(&self, signer);
        self
    }

    /// `body` as a request for `method` (its name in the `Node` service), signed when a
    /// signer is set.
    fn request<T: prost::Message>(&self, method: &str, body: T) -> Result<tonic::Request<T>> {
        let signer = self
            .signer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(signer) = signer else {
            return Ok(tonic::Request::new(body));
        };
        let mut nonce = [0u8; request_auth::NONCE_LEN];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| TransportError::Unavailable(format!("no randomness for a nonce: {e}")))?;
        signed_request(signer.as_ref(), method, body, now_ns(), nonce)
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

    /// Makes the call `method` with `body`, signed; while the node answers
    /// `RESOURCE_EXHAUSTED` with a retry hint that still fits in [`CALL_TIMEOUT`], waits as
    /// long as it says and calls again (with a new signature: the node refuses a replay).
    async fn call<Req, T, F, Fut>(&self, method: &str, body: Req, f: F) -> Result<T>
    where
        Req: prost::Message + Clone,
        F: Fn(NodeClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = tokio::time::Instant::now();
        let deadline = started + CALL_TIMEOUT;
        let mut throttled = 0u32;
        let out = loop {
            let request = self.request(method, body.clone())?;
            match tokio::time::timeout_at(deadline, f(self.client.clone(), request)).await {
                Ok(Ok(r)) => break Ok(r.into_inner()),
                Ok(Err(status)) => {
                    if let Some(wait) = retry_after(&status) {
                        if tokio::time::Instant::now() + wait < deadline {
                            throttled += 1;
                            tracing::debug!(
                                method,
                                wait_ms = wait.as_millis() as u64,
                                "node asks to slow down"
                            );
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    break Err(self.error(status));
                }
                Err(_) => {
                    break Err(TransportError::Unavailable(format!(
                        "{}: no answer within {} s",
                        self.url,
                        CALL_TIMEOUT.as_secs()
                    )))
                }
            }
        };
        tracing::trace!(
            method,
            micros = started.elapsed().as_micros() as u64,
            throttled,
            ok = out.is_ok(),
            "node call"
        );
        out
    }

    async fn subscribe<Req, T, F, Fut>(
        &self,
        method: &str,
        body: Req,
        f: F,
    ) -> Result<Subscription<T>>
    where
        T: Send + 'static,
        Req: prost::Message + Clone,
        F: Fn(NodeClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<
            Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
        >,
    {
        let stream = self.call(method, body, f).await?;
        // Items, then one `Closed` error when the node ends the stream or it breaks.
        let items = futures::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            match stream.message().await {
                Ok(Some(item)) => Some((Ok(item), Some(stream))),
                Ok(None) => Some((
                    Err(TransportError::Closed("the node ended the stream".into())),
                    None,
                )),
                Err(status) => Some((
                    Err(TransportError::Closed(status.message().to_string())),
                    None,
                )),
            }
        });
        Ok(Subscription::new(items))
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

#[async_trait::async_trait]
impl Transport for GrpcTransport {
    async fn publish_identity_update(&self, update: IdentityUpdate) -> Result<u64> {
        let body = PublishIdentityUpdateRequest {
            update: Some(update),
        };
        self.call("PublishIdentityUpdate", body, |mut c, r| async move {
            c.publish_identity_update(r).await
        })
        .await
        .map(|r| r.sequence)
    }

    async fn identity_logs(
        &self,
        inbox_ids: &[String],
    ) -> Result<Vec<(String, Vec<IdentityUpdate>)>> {
        let body = GetIdentityLogsRequest {
            inbox_ids: inbox_ids.to_vec(),
        };
        let r = self
            .call("GetIdentityLogs", body, |mut c, r| async move {
                c.get_identity_logs(r).await
            })
            .await?;
        Ok(r.logs
            .into_iter()
            .map(|l| (l.inbox_id, l.updates))
            .collect())
    }

    async fn upload_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<()> {
        let body = UploadKeyPackageRequest {
            key_package: key_package.to_vec(),
            last_resort,
            installation_id: installation_id.to_vec(),
        };
        self.call("UploadKeyPackage", body, |mut c, r| async move {
            c.upload_key_package(r).await
        })
        .await
        .map(|_| ())
    }

    async fn fetch_key_packages(&self, installation_ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let body = FetchKeyPackagesRequest {
            installation_ids: installation_ids.to_vec(),
        };
        let r = self
            .call("FetchKeyPackages", body, |mut c, r| async move {
                c.fetch_key_packages(r).await
            })
            .await?;
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

    async fn send_group_messages(&self, messages: Vec<GroupMessageInput>) -> Result<Vec<u64>> {
        let body = SendGroupMessagesRequest { messages };
        self.call("SendGroupMessages", body, |mut c, r| async move {
            c.send_group_messages(r).await
        })
        .await
        .map(|r| r.sequence_ids)
    }

    async fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<GroupMessage>> {
        let body = QueryGroupMessagesRequest {
            group_id: group_id.to_vec(),
            after_sequence_id: after,
            limit,
        };
        let r = self
            .call("QueryGroupMessages", body, |mut c, r| async move {
                c.query_group_messages(r).await
            })
            .await?;
        Ok(Page {
            items: r.messages,
            cursor: r.cursor,
            last_page: r.last_page,
        })
    }

    async fn send_welcomes(&self, welcomes: Vec<WelcomeInput>) -> Result<()> {
        let body = SendWelcomesRequest { welcomes };
        self.call("SendWelcomes", body, |mut c, r| async move {
            c.send_welcomes(r).await
        })
        .await
        .map(|_| ())
    }

    async fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<Welcome>> {
        let body = QueryWelcomesRequest {
            installation_id: installation_id.to_vec(),
            after_sequence_id: after,
            limit,
        };
        let r = self
            .call("QueryWelcomes", body, |mut c, r| async move {
                c.query_welcomes(r).await
            })
            .await?;
        Ok(Page {
            items: r.welcomes,
            cursor: r.cursor,
            last_page: r.last_page,
        })
    }

    async fn subscribe_group_messages(
        &self,
        group_ids: Vec<Vec<u8>>,
    ) -> Result<Subscription<GroupMessage>> {
        let body = SubscribeGroupMessagesRequest { group_ids };
        self.subscribe("SubscribeGroupMessages", body, |mut c, r| async move {
            c.subscribe_group_messages(r).await
        })
        .await
    }

    async fn subscribe_welcomes(&self, installation_id: &[u8]) -> Result<Subscription<Welcome>> {
        let body = SubscribeWelcomesRequest {
            installation_id: installation_id.to_vec(),
        };
        self.subscribe("SubscribeWelcomes", body, |mut c, r| async move {
            c.subscribe_welcomes(r).await
        })
        .await
    }

    fn set_request_signer(&self, signer: Arc<dyn RequestSigner>) {
        *self.signer.write().unwrap_or_else(|e| e.into_inner()) = Some(signer);
    }
}

/// The wait a `RESOURCE_EXHAUSTED` answer asks for (its `retry-after-ms` metadata), if any.
fn retry_after(status: &tonic::Status) -> Option<Duration> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    let ms: u64 = status
        .metadata()
        .get(request_auth::HEADER_RETRY_AFTER_MS)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms.max(1)))
}

/// `body` as a request for the node's method `method` (`SendGroupMessages`), signed by
/// `signer` at `timestamp_ns` with `nonce`: what [`GrpcTransport`] sends for every call (with
/// the time now and a random nonce). Public for tools and tests that speak to the node through
/// tonic's generated client.
pub fn signed_request<T: prost::Message>(
    signer: &dyn RequestSigner,
    method: &str,
    body: T,
    timestamp_ns: i64,
    nonce: [u8; request_auth::NONCE_LEN],
) -> Result<tonic::Request<T>> {
    let payload =
        request_auth::signing_payload(method, timestamp_ns, &nonce, &body.encode_to_vec());
    let signature = signer
        .sign_request(&payload)
        .map_err(|e| TransportError::Rejected {
            code: "Unauthenticated".into(),
            message: format!("the installation key did not sign the request: {e}"),
        })?;
    let mut request = tonic::Request::new(body);
    let m = request.metadata_mut();
    m.insert_bin(
        request_auth::HEADER_INSTALLATION,
        MetadataValue::from_bytes(&signer.installation_id()),
    );
    m.insert(
        request_auth::HEADER_TIMESTAMP,
        MetadataValue::from(timestamp_ns),
    );
    m.insert_bin(
        request_auth::HEADER_NONCE,
        MetadataValue::from_bytes(&nonce),
    );
    m.insert_bin(
        request_auth::HEADER_SIGNATURE,
        MetadataValue::from_bytes(&signature),
    );
    Ok(request)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_ones_a_later_try_may_fix() {
        for status in [
            tonic::Status::unavailable("down"),
            tonic::Status::deadline_exceeded("slow"),
            tonic::Status::aborted("epoch taken"),
            tonic::Status::already_exists("sequence taken"),
            tonic::Status::resource_exhausted("lagged"),
        ] {
            let e = TransportError::from(status);
            assert!(e.is_retryable(), "{e:?}");
        }
        assert!(TransportError::Closed("node stopped".into()).is_retryable());
        for status in [
            tonic::Status::invalid_argument("bad"),
            tonic::Status::failed_precondition("revoked"),
            tonic::Status::internal("storage failure"),
            tonic::Status::unauthenticated("unsigned"),
            tonic::Status::permission_denied(request_auth::REVOKED),
        ] {
            let e = TransportError::from(status);
            assert!(!e.is_retryable(), "{e:?}");
        }
        assert!(matches!(
            TransportError::from(tonic::Status::permission_denied(request_auth::REVOKED)),
            TransportError::Revoked(_)
        ));
        let bad_url = TransportError::InvalidUrl {
            url: "ftp://x".into(),
            reason: "scheme".into(),
        };
        assert!(!bad_url.is_retryable());
    }

    #[test]
    fn a_retry_hint_is_read_from_resource_exhausted_only() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(request_auth::HEADER_RETRY_AFTER_MS, 250u64.into());
        let hinted =
            tonic::Status::with_metadata(Code::ResourceExhausted, "slow down", metadata.clone());
        assert_eq!(retry_after(&hinted), Some(Duration::from_millis(250)));
        assert_eq!(
            retry_after(&tonic::Status::resource_exhausted("lagged")),
            None
        );
        let other = tonic::Status::with_metadata(Code::Unavailable, "down", metadata);
        assert_eq!(retry_after(&other), None);
    }
}
