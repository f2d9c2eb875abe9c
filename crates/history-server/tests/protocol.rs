//! XMTP's history-server protocol both ways, and resumable downloads: a client that does what
//! libxmtp's does against Ferry's server, Ferry's client against a stand-in that behaves like
//! XMTP's server (xmtp-message-history-server), range requests, and downloads cut midway by a
//! proxy and resumed. The tests of `on_both_stores!` run on a folder and on S3.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::*;
use ferry_transport::{HistoryClient, HistoryError};

on_both_stores!(
    a_client_like_libxmtps_uses_ferrys_server,
    ranges_are_served_for_the_version_asked_for,
    a_download_cut_at_30_and_at_90_percent_resumes_with_only_the_rest,
    a_payload_changed_between_the_parts_is_read_from_the_start_never_spliced,
    a_download_that_keeps_failing_gives_up_with_the_url,
);

/// What libxmtp's client does: the base URL (documented with a trailing `/`) joined to
/// `/upload` by string concatenation, the raw payload as the body, any 2xx, and the body
/// text as the id, then `{base}/files/{id}`.
fn a_client_like_libxmtps_uses_ferrys_server(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let base = format!("http://{}/", f.addr());
    let upload_path = format!("{base}/upload").replacen(&format!("http://{}", f.addr()), "", 1);
    assert_eq!(upload_path, "//upload");
    let payload = pseudo_random(70_000, 9);
    let mut request = format!(
        "POST {upload_path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(&payload);
    let up = raw(f.addr(), &request);
    assert!((200..300).contains(&up.status), "{up:?}");
    let id = String::from_utf8(up.body.clone()).unwrap();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
    assert_eq!(
        up.header("access-control-allow-origin").as_deref(),
        Some("*")
    );

    let down = raw_get(f.addr(), &format!("//files/{id}"));
    assert_eq!(down.status, 200);
    assert_eq!(down.body, payload);
    let down = raw_get(f.addr(), &format!("/files/{id}"));
    assert_eq!(down.body, payload);
    // `GET /` is the health check; unknown ids are 404.
    assert_eq!(raw_get(f.addr(), "/").status, 200);
    assert_eq!(
        raw_get(f.addr(), &format!("//files/{}", "0".repeat(32))).status,
        404
    );

    // A browser's preflight from any origin is answered.
    let pre = raw(
        f.addr(),
        b"OPTIONS /upload HTTP/1.1\r\nHost: test\r\nOrigin: https://app.example\r\n\
          Access-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: content-type, x-custom\r\nConnection: close\r\n\r\n",
    );
    assert!((200..300).contains(&pre.status), "{pre:?}");
    assert_eq!(
        pre.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert_eq!(
        pre.header("access-control-allow-headers").as_deref(),
        Some("content-type, x-custom")
    );
    // The server's own limits still hold on the XMTP paths.
    assert_eq!(f.stored().len(), 1);
}

/// The stand-in's stored payloads: id and bytes.
type Files = Mutex<Vec<(String, Vec<u8>)>>;

/// A stand-in written from the behaviour of XMTP's history server: `POST /upload` stores the
/// body and answers 200 with a UUIDv4 as plain text, 400 over its size limit; `GET
/// /files/{id}` answers the bytes or 404; `GET /` is health. No expiry or size headers.
struct XmtpLikeServer {
    addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl XmtpLikeServer {
    fn start(limit: usize) -> XmtpLikeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Arc<Files> = Arc::default();
        let thread = std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { return };
                let files = files.clone();
                std::thread::spawn(move || xmtp_like_connection(conn, n, limit, &files));
            }
        });
        XmtpLikeServer {
            addr,
            _thread: thread,
        }
    }
}

fn xmtp_like_connection(conn: TcpStream, n: usize, limit: usize, files: &Files) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let (line, headers) = match read_head(&mut reader) {
            Some(h) => h,
            None => return,
        };
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (status, body): (&str, Vec<u8>) = match (method, path) {
            ("POST", "/upload") => {
                if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
                    out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                }
                let len: usize = header("content-length").unwrap().parse().unwrap();
                let mut data = vec![0u8; len];
                reader.read_exact(&mut data).unwrap();
                if len > limit {
                    ("400 Bad Request", b"File too large".to_vec())
                } else {
                    // A UUIDv4-shaped id (not random: the stand-in needs none).
                    let id = format!("{:08x}-7d1a-4c2b-9e3f-{:012x}", n, len);
                    files.lock().unwrap().push((id.clone(), data));
                    ("200 OK", id.into_bytes())
                }
            }
            ("GET", "/") => ("200 OK", b"OK".to_vec()),
            ("GET", p) if p.starts_with("/files/") => {
                let id = &p["/files/".len()..];
                match files.lock().unwrap().iter().find(|(i, _)| i == id) {
                    Some((_, d)) => ("200 OK", d.clone()),
                    None => ("404 Not Found", Vec::new()),
                }
            }
            _ => ("404 Not Found", Vec::new()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
            return;
        }
    }
}

/// Reads a request or response head: the first line and the headers.
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    if reader.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some((first.trim_end().to_string(), headers))
}

#[test]
fn ferrys_client_uses_a_server_that_behaves_like_xmtps() {
    let server = XmtpLikeServer::start(100_000);
    let dir = tempfile::tempdir().unwrap();
    // XMTP documents its base URLs with a trailing slash.
    let client = HistoryClient::new(&format!("http://{}/", server.addr)).unwrap();
    client.health().unwrap();
    let payload = pseudo_random(50_000, 3);
    let path = dir.path().join("up");
    std::fs::write(&path, &payload).unwrap();
    let url = client.upload_file(&path).unwrap();
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {url}");
    assert_eq!(url, format!("http://{}/files/{id}", server.addr));
    let dest = dir.path().join("down");
    assert_eq!(client.download_to(&url, &dest).unwrap(), 50_000);
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
    // A URL a libxmtp peer announced (`{base}/files/{id}` with the base's slash) is accepted.
    let theirs = format!("http://{}//files/{id}", server.addr);
    client.download_to(&theirs, &dest).unwrap();
    // Over its limit the stand-in answers 400: a refusal, not a retry.
    std::fs::write(&path, pseudo_random(100_001, 4)).unwrap();
    match client.upload_file(&path) {
        Err(HistoryError::Rejected { status: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
}

fn ranges_are_served_for_the_version_asked_for(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let data = pseudo_random(1000, 5);
    let url = f.upload(&data);
    let target = format!("/files/{}", url.rsplit('/').next().unwrap());
    let get = |extra: &str| {
        raw(
            f.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let whole = get("");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges").as_deref(), Some("bytes"));
    let etag = whole.header("etag").unwrap();

    let part = get("Range: bytes=10-19\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 10-19/1000")
    );
    assert_eq!(part.body, data[10..20]);
    let tail = get("Range: bytes=990-\r\n");
    assert_eq!(tail.body, data[990..]);
    let last = get("Range: bytes=-5\r\n");
    assert_eq!(last.body, data[995..]);
    let beyond = get("Range: bytes=1000-\r\n");
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range").as_deref(),
        Some("bytes */1000")
    );
    // If-Range with this version: the range; with another: the whole payload.
    let same = get(&format!("Range: bytes=500-\r\nIf-Range: {etag}\r\n"));
    assert_eq!((same.status, same.body.len()), (206, 500));
    let other = get("Range: bytes=500-\r\nIf-Range: \"another\"\r\n");
    assert_eq!((other.status, other.body), (200, data));
}

/// A proxy in front of the history server that cuts the first `cuts.len()` download answers
/// after so many body bytes and records what each download asked for and got.
struct CuttingProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Download>>>,
}

#[derive(Debug, Clone)]
struct Download {
    range: Option<String>,
    status: u16,
    body_bytes: u64,
}

/// Runs when the proxy has cut a connection, before it takes the next one.
type OnCut = Arc<dyn Fn() + Send + Sync>;

impl CuttingProxy {
    fn start(upstream: SocketAddr, cuts: Vec<u64>) -> CuttingProxy {
        CuttingProxy::start_with(upstream, cuts, Arc::new(|| {}))
    }

    fn start_with(upstream: SocketAddr, cuts: Vec<u64>, on_cut: OnCut) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Download>>> = Arc::default();
        let shared = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (log, cuts, on_cut) = (shared.clone(), cuts.clone(), on_cut.clone());
                std::thread::spawn(move || {
                    if proxy_connection(conn, upstream, &cuts, &log) {
                        on_cut();
                    }
                });
            }
        });
        CuttingProxy { addr, log }
    }

    fn downloads(&self) -> Vec<Download> {
        self.log.lock().unwrap().clone()
    }
}

/// Relays one client connection; true when it was cut.
fn proxy_connection(
    client: TcpStream,
    upstream: SocketAddr,
    cuts: &[u64],
    log: &Mutex<Vec<Download>>,
) -> bool {
    let mut from_client = BufReader::new(client.try_clone().unwrap());
    let mut to_client = client;
    let server = TcpStream::connect(upstream).unwrap();
    let mut from_server = BufReader::new(server.try_clone().unwrap());
    let mut to_server = server;
    loop {
        let Some((line, headers)) = read_head(&mut from_client) else {
            return false;
        };
        let header = |hs: &[(String, String)], name: &str| {
            hs.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut head = format!("{line}\r\n");
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        to_server.write_all(head.as_bytes()).unwrap();
        let body_len: u64 = header(&headers, "content-length").map_or(0, |v| v.parse().unwrap());
        if header(&headers, "expect").is_some() {
            // Let the server's 100 Continue through first.
            let (l, h) = read_head(&mut from_server).unwrap();
            let mut interim = format!("{l}\r\n");
            for (k, v) in &h {
                interim.push_str(&format!("{k}: {v}\r\n"));
            }
            to_client
                .write_all(format!("{interim}\r\n").as_bytes())
                .unwrap();
        }
        std::io::copy(&mut (&mut from_client).take(body_len), &mut to_server).unwrap();
        let (status_line, response_headers) = read_head(&mut from_server).unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let len: u64 =
            header(&response_headers, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut head = format!("{status_line}\r\n");
        for (k, v) in &response_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        to_client
            .write_all(format!("{head}\r\n").as_bytes())
            .unwrap();
        let download = line.starts_with("GET /files/");
        let cut = if download {
            let mut log = log.lock().unwrap();
            let cut = cuts.get(log.len()).copied();
            log.push(Download {
                range: header(&headers, "range"),
                status,
                body_bytes: cut.map_or(len, |c| c.min(len)),
            });
            cut
        } else {
            None
        };
        let send = cut.map_or(len, |c| c.min(len));
        std::io::copy(&mut (&mut from_server).take(send), &mut to_client).unwrap();
        to_client.flush().unwrap();
        if cut.is_some() {
            // The connection is lost midway.
            let _ = to_client.shutdown(std::net::Shutdown::Both);
            return true;
        }
    }
}

fn id_in(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

fn a_download_cut_at_30_and_at_90_percent_resumes_with_only_the_rest(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let len = 400_000u64;
    let data = pseudo_random(len as usize, 11);
    let id = id_in(&f.upload(&data));
    for percent in [30u64, 90] {
        let cut = len * percent / 100;
        let proxy = CuttingProxy::start(f.addr(), vec![cut]);
        let client = HistoryClient::new(&format!("http://{}", proxy.addr)).unwrap();
        let dest = f.root.path().join(format!("resumed-{percent}"));
        let url = format!("http://{}/files/{id}", proxy.addr);
        assert_eq!(client.download_to(&url, &dest).unwrap(), len);
        assert_eq!(std::fs::read(&dest).unwrap(), data, "cut at {percent} %");
        let d = proxy.downloads();
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            (d[0].status, d[0].range.clone(), d[0].body_bytes),
            (200, None, cut)
        );
        assert_eq!(d[1].status, 206, "{d:?}");
        assert_eq!(
            d[1].range.as_deref(),
            Some(format!("bytes={cut}-").as_str())
        );
        assert_eq!(d[1].body_bytes, len - cut, "only the rest");
        assert_eq!(
            d.iter().map(|x| x.body_bytes).sum::<u64>(),
            len,
            "no byte twice"
        );
    }
}

fn a_payload_changed_between_the_parts_is_read_from_the_start_never_spliced(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let len = 300_000usize;
    let first = pseudo_random(len, 21);
    let id = id_in(&f.upload(&first));
    // Once the first half has gone out and the connection is lost, the payload under the id
    // is replaced by another (the client waits a backoff before it asks for the rest).
    let second = pseudo_random(len, 22);
    let swap: OnCut = {
        // The proxy's thread outlives the test: it must not keep the store alive.
        let (store, id, second) = (f.store.downgrade(), id.clone(), second.clone());
        Arc::new(move || {
            if let Some(store) = store.upgrade() {
                store.replace(&id, &second);
            }
        })
    };
    let proxy = CuttingProxy::start_with(f.addr(), vec![len as u64 / 2], swap);
    let client = HistoryClient::new(&format!("http://{}", proxy.addr)).unwrap();
    let dest = f.root.path().join("swapped");
    client
        .download_to(&format!("http://{}/files/{id}", proxy.addr), &dest)
        .unwrap();
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got, second, "the new payload whole, not half of each");
    let d = proxy.downloads();
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[1].status, 200, "the server sent it whole: {d:?}");
}

fn a_download_that_keeps_failing_gives_up_with_the_url(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let data = pseudo_random(100_000, 31);
    let id = id_in(&f.upload(&data));
    // Every answer is cut.
    let proxy = CuttingProxy::start(f.addr(), vec![1000; 10]);
    let client = HistoryClient::new(&format!("http://{}", proxy.addr)).unwrap();
    let url = format!("http://{}/files/{id}", proxy.addr);
    let dest = f.root.path().join("never");
    match client.download_to(&url, &dest) {
        Err(HistoryError::Unavailable(m)) => assert!(m.contains(&url), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!dest.exists());
    let d = proxy.downloads();
    assert_eq!(
        d.len() as u32,
        1 + ferry_transport::history::RESUME_ATTEMPTS,
        "{d:?}"
    );
}
