//! A blocking client for Ferry's history server (`ferry-history-server`).
//!
//! The history server keeps encrypted archives for a short time: one installation uploads
//! with [`HistoryClient::upload_file`] and passes the returned URL (and, separately, the
//! key) to another, which fetches it with [`HistoryClient::download_to`].
//!
//! URLs are checked before any request: the base URL must be `http://` or `https://` with a
//! plain host (no user info, query or fragment), and a download URL must be
//! `{base}/files/{id}` on the same scheme, host and port as the base URL, so a sync reply
//! cannot make the client fetch from another host ([`HistoryError::ForeignHost`]).
//!
//! An `https://` server's certificate is verified against the public web PKI roots, or with
//! [`HistoryClient::with_ca`] against a deployment's own CA instead. A failed handshake is
//! [`HistoryError::Unavailable`] naming the URL and the cause.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_tls::CaCerts;
use ureq::http::header::CONTENT_LENGTH;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

/// Default for [`HistoryClient::with_timeout`]: the longest wait for a connection or for the
/// next bytes from or to the server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`HistoryClient::with_max_download`]: 1 GiB, the server's default limit.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 1 << 30;
/// Longest server message kept in [`HistoryError::Rejected`] and longest upload reply read.
const MAX_REPLY: u64 = 4096;
/// How many times one download is resumed after its connection was lost.
pub const RESUME_ATTEMPTS: u32 = 5;
/// The wait before the first resume; it doubles with each next one.
const RESUME_BACKOFF: Duration = Duration::from_millis(200);

/// The first byte of `Content-Range: bytes FIRST-LAST/LEN`.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes ")?
        .split_once('-')?
        .0
        .trim()
        .parse()
        .ok()
}

/// Why a call to the history server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// A base or download URL that is not acceptable.
    #[error("invalid history url {url}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A download URL on another scheme, host or port than the client's server.
    #[error("refusing to download from {0}: not the configured history server")]
    ForeignHost(String),
    /// The server could not be reached or did not answer in time (retryable).
    #[error("history server unavailable: {0}")]
    Unavailable(String),
    /// No such file: never uploaded, expired, already downloaded or a wrong id.
    #[error("history file not found")]
    NotFound,
    /// More bytes than the server (upload) or this client (download) accepts.
    #[error("history file too large")]
    TooLarge,
    /// The server refused the request.
    #[error("history server refused the request ({status}): {message}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// The server's answer (its body, shortened).
        message: String,
    },
    /// Reading or writing a local file failed.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The local file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl HistoryError {
    /// Whether the same call may succeed if made again later: the server was unreachable or
    /// timed out, answered 5xx or 429 (too many requests), or a local read or write was
    /// interrupted. False for a bad or foreign URL, a file not found (expired, already
    /// downloaded), one too large, and other refusals.
    pub fn is_retryable(&self) -> bool {
        match self {
            HistoryError::Unavailable(_) => true,
            HistoryError::Rejected { status, .. } => *status >= 500 || *status == 429,
            HistoryError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            HistoryError::InvalidUrl { .. }
            | HistoryError::ForeignHost(_)
            | HistoryError::NotFound
            | HistoryError::TooLarge => false,
        }
    }
}

/// The scheme, host and port of a URL, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Origin {
    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A URL split into its origin and the rest (path, query, fragment).
#[derive(Debug)]
struct ParsedUrl<'a> {
    origin: Origin,
    rest: &'a str,
}

fn invalid(url: &str, reason: impl Into<String>) -> HistoryError {
    HistoryError::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// Parses `scheme://host[:port][rest]` strictly, with no user info.
fn parse_url(url: &str) -> Result<ParsedUrl<'_>, HistoryError> {
    if url.is_empty() {
        return Err(invalid(url, "empty"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(url, "contains whitespace or control characters"));
    }
    let Some((scheme, after)) = url.split_once("://") else {
        return Err(invalid(url, "expected http:// or https://"));
    };
    let (scheme, default_port) = if scheme.eq_ignore_ascii_case("http") {
        ("http", 80)
    } else if scheme.eq_ignore_ascii_case("https") {
        ("https", 443)
    } else {
        return Err(invalid(url, "expected http:// or https://"));
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.is_empty() {
        return Err(invalid(url, "missing host"));
    }
    if authority.contains('@') {
        return Err(invalid(url, "user info is not allowed"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after_bracket)) = v6.split_once(']') else {
            return Err(invalid(url, "unclosed IPv6 address"));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(url, "bad IPv6 address"));
        }
        let port = match after_bracket {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(invalid(url, "bad port")),
            },
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !host_ok {
            return Err(invalid(url, "bad host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => default_port,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse() {
            Ok(port) if port != 0 => port,
            _ => return Err(invalid(url, "bad port")),
        },
        Some(_) => return Err(invalid(url, "bad port")),
    };
    Ok(ParsedUrl {
        origin: Origin { scheme, host, port },
        rest,
    })
}

/// A blocking client for one history server.
#[derive(Debug, Clone)]
pub struct HistoryClient {
    base_url: String,
    origin: Origin,
    /// The base URL's path without a trailing slash (usually empty).
    base_path: String,
    timeout: Duration,
    max_download: u64,
    ca: Option<CaCerts>,
    agent: Agent,
}

impl HistoryClient {
    /// A client for the server at `base_url` (`http://` or `https://`, optionally with a
    /// path prefix; no query, fragment or user info). Makes no request.
    pub fn new(base_url: &str) -> Result<HistoryClient, HistoryError> {
        let parsed = parse_url(base_url)?;
        if parsed.rest.contains(['?', '#']) {
            return Err(invalid(base_url, "query and fragment are not allowed"));
        }
        let base_path = parsed.rest.trim_end_matches('/').to_string();
        let base_url = base_url.trim_end_matches('/').to_string();
        let origin = parsed.origin;
        let agent = make_agent(&origin, DEFAULT_TIMEOUT, None);
        Ok(HistoryClient {
            base_url,
            origin,
            base_path,
            timeout: DEFAULT_TIMEOUT,
            max_download: DEFAULT_MAX_DOWNLOAD,
            ca: None,
            agent,
        })
    }

    /// Verifies an `https://` server against `ca`'s certificates instead of the public roots
    /// (`None`: the public roots again).
    pub fn with_ca(mut self, ca: Option<CaCerts>) -> HistoryClient {
        self.ca = ca;
        self.agent = make_agent(&self.origin, self.timeout, self.ca.as_ref());
        self
    }

    /// Refuses downloads larger than `bytes`.
    pub fn with_max_download(mut self, bytes: u64) -> HistoryClient {
        self.max_download = bytes;
        self
    }

    /// The longest wait for a connection, or for the next bytes to or from the server.
    pub fn with_timeout(mut self, timeout: Duration) -> HistoryClient {
        self.timeout = timeout;
        self.agent = make_agent(&self.origin, timeout, self.ca.as_ref());
        self
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Checks that `url` is a download URL of this client's server: the same scheme, host
    /// and port as the base URL, and the path `{base path}/files/{id}` with a lowercase hex
    /// id.
    pub fn check_download_url(&self, url: &str) -> Result<(), HistoryError> {
        self.canonical_download_url(url).map(|_| ())
    }

    /// The download URL checked and written the one way this client asks for it:
    /// `{base}/files/{id}`.
    fn canonical_download_url(&self, url: &str) -> Result<String, HistoryError> {
        let parsed = parse_url(url)?;
        if parsed.origin != self.origin {
            return Err(HistoryError::ForeignHost(url.to_string()));
        }
        // `{base}//files/{id}` too: clients that join a base URL ending in `/` make those.
        // Attachments (`{base}/attachments/{id}`) are the server's longer-lived class.
        let rest = parsed
            .rest
            .strip_prefix(self.base_path.as_str())
            .and_then(|p| p.strip_prefix('/'))
            .map(|p| p.trim_start_matches('/'))
            .ok_or_else(|| invalid(url, "not a history file url"))?;
        let (class, id) = ["files", "attachments"]
            .iter()
            .find_map(|c| {
                rest.strip_prefix(c)
                    .and_then(|r| r.strip_prefix('/'))
                    .map(|id| (*c, id))
            })
            .ok_or_else(|| invalid(url, "not a history file url"))?;
        if !is_id(id) {
            return Err(invalid(url, "not a history file id"));
        }
        Ok(format!("{}/{class}/{id}", self.base_url))
    }

    /// Uploads the file at `path`, streaming it; returns its download URL
    /// (`{base}/files/{id}`).
    pub fn upload_file(&self, path: &Path) -> Result<String, HistoryError> {
        self.upload_as(path, "upload", "files")
    }

    /// Uploads a remote attachment's encrypted file to the server's attachment class (kept
    /// longer than history archives, and never removed after a download: every member of
    /// a conversation fetches it); returns its download URL (`{base}/attachments/{id}`).
    pub fn upload_attachment(&self, path: &Path) -> Result<String, HistoryError> {
        self.upload_as(path, "attachments", "attachments")
    }

    fn upload_as(&self, path: &Path, route: &str, class: &str) -> Result<String, HistoryError> {
        let io_err = |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let upload_url = format!("{}/{route}", self.base_url);
        let response = self
            .agent
            .post(&upload_url)
            .header("expect", "100-continue")
            .content_type("application/octet-stream")
            .send(file)
            .map_err(|e| from_ureq(&upload_url, e))?;
        let mut response = check_status(response)?;
        let status = response.status().as_u16();
        let header_u64 = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let stored = header_u64("x-ferry-bytes");
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY)
            .read_to_string()
            .map_err(|e| from_ureq(&upload_url, e))?;
        let body = body.trim();
        // The id as plain text (Ferry's server and XMTP's), or the JSON of Ferry servers
        // before they spoke XMTP's protocol.
        let (id, stored) = if body.starts_with('{') {
            let reply: UploadReply =
                serde_json::from_str(body).map_err(|e| HistoryError::Rejected {
                    status,
                    message: format!("unreadable upload reply: {e}"),
                })?;
            (reply.id, Some(reply.bytes))
        } else {
            (body.to_string(), stored)
        };
        let reply = UploadReply {
            id,
            bytes: stored.unwrap_or(len),
        };
        Ok(format!("{}/{class}/{}", self.base_url, reply.id))
    }

    /// Downloads `url` (see [`check_download_url`](Self::check_download_url)) to `dest`,
    /// streaming it into a temporary file beside `dest` that is synced and renamed over
    /// `dest` once complete. Refuses more than the client's maximum download size. Returns
    /// the number of bytes written.
    ///
    /// A connection lost midway is resumed from the bytes already here (a range request with
    /// `If-Range`, after a short backoff, up to [`RESUME_ATTEMPTS`] times); a server that
    /// answers with the whole file instead (it changed, or it cannot serve ranges) is read
    /// from the start again, so two versions are never spliced. What arrives is still checked
    /// by the archive's authenticated chunks when it is read.
    pub fn download_to(&self, url: &str, dest: &Path) -> Result<u64, HistoryError> {
        let url = &self.canonical_download_url(url)?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| HistoryError::Io {
                path: dest.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            })?
            .to_string_lossy()
            .into_owned();
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|source| HistoryError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        let temp_err = |source| HistoryError::Io {
            path: dest.to_path_buf(),
            source,
        };

        // How many bytes of the whole are here, and which version they are of.
        let mut have: u64 = 0;
        let mut version: Option<String> = None;
        let mut resumes = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut request = self.agent.get(url);
            if have > 0 {
                request = request.header("range", format!("bytes={have}-"));
                if let Some(v) = &version {
                    request = request.header("if-range", v.as_str());
                }
            }
            let interrupted = match request.call() {
                Err(e) if have > 0 => Some(from_ureq(url, e)),
                Err(e) => return Err(from_ureq(url, e)),
                Ok(response) => {
                    let mut response = check_status(response)?;
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let etag = header("etag");
                    let declared =
                        header(CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
                    let resumed = response.status().as_u16() == 206
                        && header("content-range")
                            .and_then(|v| content_range_start(&v))
                            .is_some_and(|start| start == have)
                        && etag == version;
                    if !resumed && have > 0 {
                        // The whole file again (or a range we did not ask for): start over.
                        tracing::info!(url, have, "history download restarts from the beginning");
                        temp.as_file_mut().set_len(0).map_err(temp_err)?;
                        temp.as_file_mut()
                            .seek(io::SeekFrom::Start(0))
                            .map_err(temp_err)?;
                        have = 0;
                        if response.status().as_u16() == 206 {
                            resumes += 1;
                            version = None;
                            continue;
                        }
                    }
                    version = etag;
                    let expected = declared.map(|n| have + n);
                    if expected.is_some_and(|n| n > self.max_download) {
                        return Err(HistoryError::TooLarge);
                    }
                    let mut reader = response.body_mut().as_reader();
                    let mut cut = None;
                    loop {
                        let n = match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                cut = Some(HistoryError::Unavailable(format!(
                                    "{url}: download failed: {e}"
                                )));
                                break;
                            }
                        };
                        have += n as u64;
                        if have > self.max_download {
                            return Err(HistoryError::TooLarge);
                        }
                        temp.write_all(&buf[..n]).map_err(temp_err)?;
                    }
                    match (cut, expected) {
                        (Some(e), _) => Some(e),
                        (None, Some(n)) if have < n => Some(HistoryError::Unavailable(format!(
                            "{url}: download ended early"
                        ))),
                        _ => None,
                    }
                }
            };
            match interrupted {
                None => break,
                Some(e) if resumes >= RESUME_ATTEMPTS => return Err(e),
                Some(e) => {
                    resumes += 1;
                    tracing::info!(url, have, error = %e, resumes, "history download interrupted; resuming");
                    std::thread::sleep(RESUME_BACKOFF * (1 << (resumes - 1).min(5)));
                }
            }
        }
        let total = have;
        temp.as_file().sync_all().map_err(temp_err)?;
        temp.persist(dest).map_err(|e| temp_err(e.error))?;
        sync_dir(dir);
        Ok(total)
    }

    /// Asks the server whether it is up.
    pub fn health(&self) -> Result<(), HistoryError> {
        // `GET {base}/`: the health check of XMTP's server and of Ferry's.
        let health_url = format!("{}/", self.base_url);
        let response = self
            .agent
            .get(&health_url)
            .call()
            .map_err(|e| from_ureq(&health_url, e))?;
        check_status(response)?;
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct UploadReply {
    id: String,
    bytes: u64,
}

/// A payload id: Ferry's (32 lowercase hex digits) or XMTP's (a UUID); nothing that could
/// leave the `/files/` path.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn make_agent(origin: &Origin, timeout: Duration, ca: Option<&CaCerts>) -> Agent {
    let roots = match ca {
        Some(ca) => RootCerts::Specific(Arc::new(
            ca.certs()
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
        )),
        None => RootCerts::WebPki,
    };
    // The provider is named: rustls cannot choose one itself in this dependency graph.
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(ferry_tls::crypto_provider())
        .root_certs(roots)
        .build();
    let mut config = Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .user_agent(concat!("ferry-transport/", env!("CARGO_PKG_VERSION")));
    if origin.is_loopback() {
        // A proxy from the environment cannot reach this machine's loopback.
        config = config.proxy(None);
    }
    config.build().into()
}

fn from_ureq(url: &str, e: ureq::Error) -> HistoryError {
    match e {
        ureq::Error::BadUri(reason) => invalid(url, reason),
        e => {
            let tls = match &e {
                ureq::Error::Rustls(r) => ferry_tls::tls_failure(r),
                ureq::Error::Io(io) => ferry_tls::tls_failure(io),
                e => ferry_tls::tls_failure(e),
            };
            HistoryError::Unavailable(format!("{url}: {}", tls.unwrap_or_else(|| e.to_string())))
        }
    }
}

/// Passes 2xx responses through and turns the others into errors.
fn check_status(
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, HistoryError> {
    let status = response.status().as_u16();
    match status {
        200..=299 => Ok(response),
        404 => Err(HistoryError::NotFound),
        413 => Err(HistoryError::TooLarge),
        _ => {
            let message = response
                .body_mut()
                .with_config()
                .limit(MAX_REPLY)
                .lossy_utf8(true)
                .read_to_string()
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if matches!(status, 502..=504) {
                Err(HistoryError::Unavailable(format!(
                    "server answered {status}: {message}"
                )))
            } else {
                Err(HistoryError::Rejected { status, message })
            }
        }
    }
}

/// Makes a rename in `dir` durable where the platform allows it; best effort.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn base_urls_are_validated() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "https://history.example.com",
            "HTTP://Example.COM:81/prefix/",
            "http://[::1]:9000",
        ] {
            assert!(HistoryClient::new(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://example.com",
            "file:///etc/passwd",
            "http://",
            "http:///path",
            "http://user:pw@example.com",
            "http://example.com:0",
            "http://example.com:99999",
            "http://example.com:",
            "http://example.com:80x",
            "http://exa mple.com",
            "http://example.com/?q=1",
            "http://example.com/#frag",
            "http://[::1",
            "http://[nothex]:80",
            "http://a:1:2",
            " http://example.com",
        ] {
            assert!(
                matches!(
                    HistoryClient::new(bad),
                    Err(HistoryError::InvalidUrl { .. })
                ),
                "{bad:?} should be refused"
            );
        }
        let c = HistoryClient::new("http://127.0.0.1:8080///").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn download_urls_must_be_on_the_same_origin() {
        let c = HistoryClient::new("http://127.0.0.1:8080").unwrap();
        c.check_download_url(&format!("http://127.0.0.1:8080/files/{ID}"))
            .unwrap();
        // The attachment class's files too, under their own route.
        assert_eq!(
            c.canonical_download_url(&format!("http://127.0.0.1:8080//attachments/{ID}"))
                .unwrap(),
            format!("http://127.0.0.1:8080/attachments/{ID}")
        );
        for foreign in [
            format!("http://127.0.0.2:8080/files/{ID}"),
            format!("http://127.0.0.1:8081/files/{ID}"),
            format!("https://127.0.0.1:8080/files/{ID}"),
            format!("http://localhost:8080/files/{ID}"),
            format!("http://evil.example/files/{ID}"),
        ] {
            assert!(
                matches!(
                    c.check_download_url(&foreign),
                    Err(HistoryError::ForeignHost(_))
                ),
                "{foreign} should be foreign"
            );
        }
        for bad in [
            format!("http://evil.example@127.0.0.1:8080/files/{ID}"),
            format!("http://127.0.0.1:8080/files/{ID}/x"),
            format!("http://127.0.0.1:8080/files/{ID}?x=1"),
            format!("http://127.0.0.1:8080/upload/{ID}"),
            format!("http://127.0.0.1:8080/attachments/{ID}/x"),
            format!("http://127.0.0.1:8080/attachmentsx/{ID}"),
            "http://127.0.0.1:8080/files/".to_string(),
            "http://127.0.0.1:8080/files/../../etc/passwd".to_string(),
            "http://127.0.0.1:8080/files/%2e%2e%2f".to_string(),
            "http://127.0.0.1:8080/health".to_string(),
            "ftp://127.0.0.1:8080/files/ab".to_string(),
        ] {
            assert!(
                matches!(
                    c.check_download_url(&bad),
                    Err(HistoryError::InvalidUrl { .. })
                ),
                "{bad} should be invalid"
            );
        }
    }

    #[test]
    fn default_ports_and_case_are_normalised() {
        let c = HistoryClient::new("HTTPS://History.Example.com").unwrap();
        c.check_download_url(&format!("https://history.example.com:443/files/{ID}"))
            .unwrap();
        let c = HistoryClient::new("http://example.com:80").unwrap();
        c.check_download_url(&format!("http://EXAMPLE.com/files/{ID}"))
            .unwrap();
        assert!(matches!(
            c.check_download_url(&format!("http://example.com:443/files/{ID}")),
            Err(HistoryError::ForeignHost(_))
        ));
    }

    #[test]
    fn path_prefixes_are_kept() {
        let c = HistoryClient::new("https://example.com/history/").unwrap();
        assert_eq!(c.base_url(), "https://example.com/history");
        c.check_download_url(&format!("https://example.com/history/files/{ID}"))
            .unwrap();
        assert!(matches!(
            c.check_download_url(&format!("https://example.com/files/{ID}")),
            Err(HistoryError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        let origin = |url: &str| parse_url(url).unwrap().origin;
        assert!(origin("http://127.0.0.1:1").is_loopback());
        assert!(origin("http://localhost:1").is_loopback());
        assert!(origin("http://[::1]:1").is_loopback());
        assert!(!origin("http://example.com").is_loopback());
    }

    #[test]
    fn retryable_errors_are_the_ones_a_later_try_may_fix() {
        let io = |kind| HistoryError::Io {
            path: "f".into(),
            source: io::Error::new(kind, "x"),
        };
        let rejected = |status| HistoryError::Rejected {
            status,
            message: String::new(),
        };
        for e in [
            HistoryError::Unavailable("refused".into()),
            rejected(500),
            rejected(429),
            io(io::ErrorKind::Interrupted),
        ] {
            assert!(e.is_retryable(), "{e:?}");
        }
        for e in [
            invalid("ftp://x", "scheme"),
            HistoryError::ForeignHost("http://elsewhere".into()),
            HistoryError::NotFound,
            HistoryError::TooLarge,
            rejected(400),
            io(io::ErrorKind::NotFound),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }
}
