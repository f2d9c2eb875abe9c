//! The HTTP API: routes, handlers and the per-client rate limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio_stream::{Stream, StreamExt};
use tokio_util::io::ReaderStream;

use crate::storage::{PayloadId, PayloadStorage};
use crate::HistoryConfig;

/// The client's address, put into each request's extensions by the connection loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// What a successful `POST /upload` says. On the wire the body is the id as plain text (as
/// XMTP's history server answers, so libxmtp clients work unchanged); the other facts are in
/// the headers [`BYTES_HEADER`] and [`EXPIRES_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadReply {
    /// The payload's id: download it from `/files/{id}`.
    pub id: String,
    /// How many bytes were stored.
    pub bytes: u64,
    /// When the payload expires, in nanoseconds since the Unix epoch.
    pub expires_at_ns: u64,
}

/// Response header of an upload: how many bytes were stored.
pub const BYTES_HEADER: &str = "x-ferry-bytes";
/// Response header of an upload: when the payload expires (ns since the Unix epoch).
pub const EXPIRES_HEADER: &str = "x-ferry-expires-at-ns";

/// What the handlers share.
pub(crate) struct App {
    /// History archives: `POST /upload`, `GET /files/{id}`.
    pub archives: Class,
    /// Remote attachments' files: `POST /attachments`, `GET /attachments/{id}`.
    pub attachments: Class,
    pub max_bytes: u64,
    pub idle_timeout: Duration,
    pub limiter: RateLimiter,
}

/// One class of payloads: where they are kept, how long, and whether one download ends them.
pub(crate) struct Class {
    pub storage: Arc<dyn PayloadStorage>,
    pub ttl: Duration,
    pub delete_after_download: bool,
}

/// Which class a request is for.
#[derive(Clone, Copy)]
enum Which {
    Archives,
    Attachments,
}

impl App {
    pub(crate) fn new(
        config: &HistoryConfig,
        storage: Arc<dyn PayloadStorage>,
        attachments: Arc<dyn PayloadStorage>,
    ) -> App {
        App {
            archives: Class {
                storage,
                ttl: config.ttl,
                delete_after_download: config.delete_after_download,
            },
            attachments: Class {
                storage: attachments,
                ttl: config.attachment_ttl,
                // Every member of a conversation downloads an attachment.
                delete_after_download: false,
            },
            max_bytes: config.max_bytes,
            idle_timeout: config.idle_timeout,
            limiter: RateLimiter::new(config.requests_per_minute),
        }
    }

    fn class(&self, which: Which) -> &Class {
        match which {
            Which::Archives => &self.archives,
            Which::Attachments => &self.attachments,
        }
    }
}

impl Class {
    fn expired(&self, stored_at: SystemTime, now: SystemTime) -> bool {
        match stored_at.checked_add(self.ttl) {
            Some(expires) => expires <= now,
            None => false,
        }
    }
}

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        // `GET /` is the health check XMTP's clients use; `/health` is Ferry's.
        .route("/", get(health))
        .route("/health", get(health))
        .route("/upload", post(upload_archive))
        .route("/files/{id}", get(download_archive))
        .route("/attachments", post(upload_attachment))
        .route("/attachments/{id}", get(download_attachment))
        // Clients that join a base URL ending in `/` with `/upload` (libxmtp does) ask for
        // `//upload` and then `//files/{id}`.
        .route("//upload", post(upload_archive))
        .route("//files/{id}", get(download_archive))
        .fallback(not_found_handler)
        .layer(axum::middleware::from_fn(cors))
        .with_state(app)
}

/// Any origin, method and header may call (browser SDKs upload from web pages; the payloads
/// are encrypted and the ids unguessable): preflights are answered here, every other answer
/// carries `Access-Control-Allow-Origin: *`.
async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let asked_headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned();
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            asked_headers.unwrap_or(HeaderValue::from_static("*")),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(86_400));
        r
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "x-ferry-bytes, x-ferry-expires-at-ns, content-range, accept-ranges, etag",
        ),
    );
    response
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found_handler() -> Response {
    not_found()
}

/// The same answer for unknown, malformed, expired and never-existing ids.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

fn internal(what: &'static str, e: std::io::Error) -> Response {
    tracing::error!(error = %e, "{what}");
    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

fn too_many(retry_after: Duration) -> Response {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
    if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn upload_archive(
    State(app): State<Arc<App>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    upload(app, Which::Archives, peer, headers, body).await
}

async fn upload_attachment(
    State(app): State<Arc<App>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    upload(app, Which::Attachments, peer, headers, body).await
}

async fn download_archive(
    State(app): State<Arc<App>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    headers: HeaderMap,
    raw_id: Result<Path<String>, PathRejection>,
) -> Response {
    download(app, Which::Archives, peer, headers, raw_id).await
}

async fn download_attachment(
    State(app): State<Arc<App>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    headers: HeaderMap,
    raw_id: Result<Path<String>, PathRejection>,
) -> Response {
    download(app, Which::Attachments, peer, headers, raw_id).await
}

async fn upload(
    app: Arc<App>,
    which: Which,
    peer: std::net::SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let class = app.class(which);
    if let Err(wait) = app.limiter.check(peer.ip()) {
        return too_many(wait);
    }
    // A declared length is checked before anything is stored. With `Expect: 100-continue`
    // the client then never sends the body.
    if let Some(declared) = headers.get(header::CONTENT_LENGTH) {
        match declared.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
            Some(0) => return plain(StatusCode::BAD_REQUEST, "empty body\n"),
            Some(n) if n > app.max_bytes => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n")
            }
            Some(_) => {}
            None => return plain(StatusCode::BAD_REQUEST, "bad content-length\n"),
        }
    }
    let id = match PayloadId::random() {
        Ok(id) => id,
        Err(e) => return internal("cannot draw a random id", e),
    };
    let mut sink = match class.storage.create(id).await {
        Ok(sink) => sink,
        Err(e) => return internal("cannot start an upload", e),
    };
    // Dropping `sink` on any early return discards the partial upload.
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(app.idle_timeout, stream.next()).await {
            Err(_) => {
                tracing::debug!(%peer, received = total, "upload stalled; dropped");
                return plain(StatusCode::REQUEST_TIMEOUT, "upload stalled\n");
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(%peer, error = %e, "upload interrupted");
                return plain(StatusCode::BAD_REQUEST, "upload interrupted\n");
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        total = total.saturating_add(chunk.len() as u64);
        if total > app.max_bytes {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n");
        }
        if let Err(e) = sink.write(&chunk).await {
            return internal("cannot write an upload", e);
        }
    }
    if total == 0 {
        return plain(StatusCode::BAD_REQUEST, "empty body\n");
    }
    let stored_at = match sink.commit().await {
        Ok(t) => t,
        Err(e) => return internal("cannot store an upload", e),
    };
    let expires_at = stored_at.checked_add(class.ttl).unwrap_or(stored_at);
    tracing::debug!(%peer, %id, bytes = total, "stored");
    // The body is the id alone, as XMTP's history server answers; the rest in headers.
    let mut response = (StatusCode::CREATED, id.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(BYTES_HEADER, HeaderValue::from(total));
    h.insert(EXPIRES_HEADER, HeaderValue::from(unix_ns(expires_at)));
    response
}

/// A strong validator of one stored payload: its id, size, time of storing and the store's
/// own version tag if it has one (an S3 ETag, which every replica reads alike). A payload
/// replaced under the same id (which the server never does by itself) gets another one.
fn etag(id: PayloadId, len: u64, stored_at: SystemTime, version: Option<&str>) -> String {
    let mut tag = format!("\"{id}-{len:x}-{:x}", unix_ns(stored_at));
    if let Some(version) = version {
        tag.push('-');
        tag.extend(
            version
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-'),
        );
    }
    tag.push('"');
    tag
}

/// A single byte range of `Range: bytes=...` against a payload of `len` bytes: `Some(Ok((first,
/// last)))` (inclusive), `Some(Err(()))` when it cannot be satisfied, `None` to send it all
/// (no header, or one this server does not serve, such as several ranges).
fn byte_range(value: &HeaderValue, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last `b` bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let first: u64 = a.parse().ok()?;
        let last = if b.is_empty() {
            len.checked_sub(1)
        } else {
            Some(b.parse::<u64>().ok()?.min(len.saturating_sub(1)))
        };
        match last {
            Some(last) if first <= last && first < len => (first, last),
            _ => return Some(Err(())),
        }
    };
    Some(Ok(range))
}

async fn download(
    app: Arc<App>,
    which: Which,
    peer: std::net::SocketAddr,
    headers: HeaderMap,
    raw_id: Result<Path<String>, PathRejection>,
) -> Response {
    let class = app.class(which);
    if let Err(wait) = app.limiter.check(peer.ip()) {
        return too_many(wait);
    }
    // Strict validation before the id goes anywhere near the file system.
    let Some(id) = raw_id.ok().and_then(|Path(raw)| PayloadId::parse(&raw)) else {
        return not_found();
    };
    let payload = match class.storage.open(id).await {
        Ok(Some(payload)) => payload,
        Ok(None) => return not_found(),
        Err(e) => return internal("cannot open a payload", e),
    };
    if class.expired(payload.stored_at, SystemTime::now()) {
        drop(payload);
        if let Err(e) = class.storage.remove(id).await {
            tracing::warn!(%id, error = %e, "cannot remove an expired payload");
        }
        return not_found();
    }
    let len = payload.len;
    let version = payload.version.clone();
    let tag = etag(id, len, payload.stored_at, version.as_deref());
    // A resumed download names the version it has (If-Range); another version is sent whole.
    let same_version = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == tag.as_bytes());
    let range = match headers.get(header::RANGE) {
        Some(v) if same_version => byte_range(v, len),
        _ => None,
    };
    let (status, first, count) = match range {
        None => (StatusCode::OK, 0, len),
        Some(Ok((first, last))) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Some(Err(())) => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let mut payload = payload;
    if first > 0 {
        drop(payload);
        payload = match class.storage.open_at(id, first).await {
            Ok(Some(p)) if p.len == len && p.version == version => p,
            Ok(_) => return not_found(),
            Err(e) => return internal("cannot open a payload", e),
        };
    }
    // With delete-after-download, only a body that reaches the payload's end completes it.
    let on_complete = (class.delete_after_download && first + count == len)
        .then(|| (Arc::clone(&class.storage), id));
    let body = DownloadStream {
        inner: ReaderStream::with_capacity(payload.reader.take(count), 64 * 1024),
        remaining: count,
        on_complete,
    };
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {first}-{}/{len}", first + count - 1);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

type PayloadReader = tokio::io::Take<Pin<Box<dyn tokio::io::AsyncRead + Send>>>;

/// A payload's bytes; with delete-after-download, removes the payload when the connection
/// is done with a body whose every byte it took. (With a known length, hyper does not poll
/// for the end of the stream, so this happens on drop.)
struct DownloadStream {
    inner: ReaderStream<PayloadReader>,
    remaining: u64,
    on_complete: Option<(Arc<dyn PayloadStorage>, PayloadId)>,
}

impl Stream for DownloadStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if this.remaining > 0 => {
                // The file is shorter than it was when opened; never end a body early.
                this.on_complete = None;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "payload shorter than announced",
                ))))
            }
            other => other,
        }
    }
}

impl Drop for DownloadStream {
    fn drop(&mut self) {
        if self.remaining > 0 {
            return;
        }
        let Some((storage, id)) = self.on_complete.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match storage.remove(id).await {
                Ok(_) => tracing::debug!(%id, "deleted after download"),
                Err(e) => tracing::warn!(%id, error = %e, "cannot delete after download"),
            }
        });
    }
}

/// A token bucket per client IP address: `per_minute` requests in a burst, refilled at
/// `per_minute / 60` per second. `per_minute == 0` turns the limit off.
pub(crate) struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Above this many tracked clients, full buckets are dropped on insert.
const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.capacity() / 60.0).min(self.capacity());
        bucket.updated = now;
    }

    /// Takes a token for `ip`, or says how long until one is available.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&ip) {
            self.prune_locked(&mut buckets, now);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.capacity(),
            updated: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing * 60.0 / self.capacity()))
        }
    }

    /// Forgets clients whose bucket is full again (they are indistinguishable from new ones).
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        self.prune_locked(&mut buckets, now);
    }

    fn prune_locked(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            self.refill(bucket, now);
            bucket.tokens < self.capacity()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_limits_each_client() {
        let limiter = RateLimiter::new(3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert!(limiter.check(b).is_ok());
        limiter.prune();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 2);
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = RateLimiter::new(0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert!(limiter.check(a).is_ok());
        }
    }
}
