//! The history server against real clients on loopback: the transport's `HistoryClient`
//! for the normal paths, hand-written HTTP/1.1 over a `TcpStream` for the abusive ones. The
//! tests of `on_both_stores!` run on a folder and on S3 (a real S3-compatible server).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use ferry_history_server::{
    HistoryConfig, HistoryServerError, ObjectStorage, ObjectStorageError, RunningHistoryServer,
    ID_HEX_LEN,
};
use ferry_transport::{HistoryClient, HistoryError};

on_both_stores!(
    round_trip_of_a_few_megabytes,
    upload_reply_is_the_plain_text_id_with_facts_in_headers,
    oversize_uploads_are_refused_and_leave_nothing,
    empty_uploads_are_refused,
    unknown_and_malformed_ids_are_not_found,
    random_ids_never_hit,
    expired_files_are_not_served_and_are_swept,
    delete_after_download,
    attachments_are_a_class_of_their_own,
    parallel_uploads_and_downloads_stay_intact,
    slow_uploads_are_cut_off,
    many_slow_uploads_at_once_do_not_exhaust_the_server,
    rate_limit_answers_429,
    downloads_over_the_client_limit_are_refused,
    stop_is_prompt,
);

fn round_trip_of_a_few_megabytes(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    f.client.health().unwrap();
    // Over two S3 parts.
    let data = pseudo_random(11 * 1024 * 1024 + 17, 1);
    let url = f.upload(&data);
    let id = id_of(&url);
    assert_eq!(url, format!("{}/files/{id}", f.server.url()));
    assert_eq!(id.len(), ID_HEX_LEN);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // Exactly the payload, under its id, and no temp file or unfinished upload.
    assert_eq!(f.stored(), vec![id.to_string()]);
    assert_eq!(f.store.partial_uploads(), 0);

    let back = f.download(&url).unwrap();
    assert_eq!(sha256(&back), sha256(&data));

    let response = raw_get(f.addr(), &format!("/files/{id}"));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        response.header("content-length"),
        Some(data.len().to_string())
    );
    assert_eq!(sha256(&response.body), sha256(&data));
    // Downloading does not delete by default.
    assert_eq!(f.stored(), vec![id.to_string()]);
}

fn upload_reply_is_the_plain_text_id_with_facts_in_headers(backend: Backend) {
    let f = Fixture::on(backend, |c| c.ttl = Duration::from_secs(600));
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let response = raw(
        f.addr(),
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(response.status, 201);
    // The body is the id alone, as XMTP's history server answers.
    let id = String::from_utf8(response.body.clone()).unwrap();
    assert_eq!(id.len(), ID_HEX_LEN, "{id:?}");
    assert_eq!(response.header("x-ferry-bytes").as_deref(), Some("5"));
    let expires: u64 = response
        .header("x-ferry-expires-at-ns")
        .unwrap()
        .parse()
        .unwrap();
    let ttl = Duration::from_nanos(expires).saturating_sub(before);
    assert!(
        ttl >= Duration::from_secs(599) && ttl <= Duration::from_secs(602),
        "{ttl:?}"
    );
    let back = f
        .download(&format!("{}/files/{id}", f.server.url()))
        .unwrap();
    assert_eq!(back, b"hello");
}

fn oversize_uploads_are_refused_and_leave_nothing(backend: Backend) {
    let limit = 64 * 1024;
    let f = Fixture::on(backend, |c| c.max_bytes = limit);

    // Exactly the limit is fine.
    let url = f.upload(&pseudo_random(limit as usize, 2));
    f.store.remove(id_of(&url));

    // Declared too large: refused before the body is sent (Expect: 100-continue).
    let big = f.file("big", &pseudo_random(limit as usize + 1, 3));
    assert!(matches!(
        f.client.upload_file(&big),
        Err(HistoryError::TooLarge)
    ));
    assert_eq!(f.stored(), Vec::<String>::new());

    // A huge declared length is refused from the headers alone.
    let response = raw(
        f.addr(),
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1099511627776\r\n\r\n",
    );
    assert_eq!(response.status, 413);

    // No declared length: the limit is enforced while streaming.
    let mut stream = connect(f.addr());
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = pseudo_random(8 * 1024, 4);
    for _ in 0..10 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 413);
    assert_eq!(f.stored(), Vec::<String>::new(), "not even a temp file");
    assert_eq!(f.store.partial_uploads(), 0);
}

fn empty_uploads_are_refused(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let response = raw(
        f.addr(),
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 400);
    let response = raw(
        f.addr(),
        b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(response.status, 400);
    let empty = f.file("empty", b"");
    assert!(matches!(
        f.client.upload_file(&empty),
        Err(HistoryError::Rejected { status: 400, .. })
    ));
    assert_eq!(f.stored(), Vec::<String>::new());
}

fn unknown_and_malformed_ids_are_not_found(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let secret = b"outside the store";
    f.file("secret", secret);
    let url = f.upload(b"payload");
    let id = id_of(&url).to_string();

    assert!(matches!(
        f.download(&format!("{}/files/{}", f.server.url(), random_hex())),
        Err(HistoryError::NotFound)
    ));

    let temp_name = format!(".upload-{id}");
    let targets = [
        "/files/../../etc/passwd".to_string(),
        "/files/..%2f..%2fetc%2fpasswd".to_string(),
        "/files/%2e%2e%2f".to_string(),
        "/files/%2e%2e%2fsecret".to_string(),
        "/files/..%2fsecret".to_string(),
        "/files/%2e%2e/secret".to_string(),
        "/files/abc".to_string(),
        format!("/files/{}", &id[1..]),
        format!("/files/{id}0"),
        format!("/files/{}", id.to_uppercase()),
        format!("/files/{}", "g".repeat(ID_HEX_LEN)),
        format!("/files/{}%00", &id[..ID_HEX_LEN - 1]),
        format!("/files/%ff{}", &id[2..]),
        format!("/files/{id}/x"),
        format!("/files/{temp_name}"),
        "/files/".to_string(),
        "/files".to_string(),
        "//".to_string(),
        "/upload".to_string(),
    ];
    for target in &targets {
        let response = raw_get(f.addr(), target);
        assert!(
            response.status == 404 || (target == "/upload" && response.status == 405),
            "{target}: {}",
            response.status
        );
        assert!(
            !response
                .body
                .windows(secret.len())
                .any(|w| w == secret.as_slice()),
            "{target} leaked a file"
        );
    }
    // Unknown and malformed look the same.
    let unknown = raw_get(f.addr(), &format!("/files/{}", random_hex()));
    let malformed = raw_get(f.addr(), "/files/%2e%2e%2f");
    assert_eq!(unknown.body, malformed.body);
    // The real one is still there and intact.
    assert_eq!(f.download(&url).unwrap(), b"payload");
}

fn random_ids_never_hit(backend: Backend) {
    let f = Fixture::on(backend, |c| c.requests_per_minute = 0);
    for i in 0..3 {
        f.upload(&pseudo_random(100, i));
    }
    let dest = f.root.path().join("probe");
    // Each probe of a bucket is a request to the S3 server too: fewer of them there.
    let probes = match backend {
        Backend::Folder => 10_000,
        Backend::S3 => 2_000,
    };
    for _ in 0..probes {
        let url = format!("{}/files/{}", f.server.url(), random_hex());
        match f.client.download_to(&url, &dest) {
            Err(HistoryError::NotFound) => {}
            other => panic!("probe {url}: {other:?}"),
        }
    }
    assert!(!dest.exists());
    // No partial downloads were left beside the destination either.
    let leftovers: Vec<String> = entries(f.root.path())
        .into_iter()
        .filter(|n| n.starts_with(".probe"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn expired_files_are_not_served_and_are_swept(backend: Backend) {
    let f = Fixture::on(backend, |c| c.ttl = Duration::from_secs(1));
    let served = f.upload(b"first");
    let swept = f.upload(b"second");
    let uploaded = Instant::now();
    assert_eq!(f.download(&served).unwrap(), b"first");
    assert_eq!(f.stored().len(), 2);

    // Past the TTL (and the store's time resolution) nothing is served, swept or not.
    while uploaded.elapsed() < Duration::from_millis(1100) + f.store.time_resolution() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(f.download(&served), Err(HistoryError::NotFound)));
    // The sweeper removes the other one without being asked.
    assert!(
        wait_for(Duration::from_secs(4), || f.stored().is_empty()),
        "still stored: {:?}",
        f.stored()
    );
    assert!(matches!(f.download(&swept), Err(HistoryError::NotFound)));
}

#[test]
fn startup_removes_expired_files_and_leftover_uploads() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let old = store.join(random_hex());
    let fresh_id = random_hex();
    let leftover = store.join(format!(".upload-{}", random_hex()));
    let unrelated = store.join("README");
    for path in [&old, &store.join(&fresh_id), &leftover, &unrelated] {
        std::fs::write(path, b"x").unwrap();
    }
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();

    let server = RunningHistoryServer::start(HistoryConfig {
        dir: store.clone(),
        ..HistoryConfig::default()
    })
    .unwrap();
    assert!(wait_for(Duration::from_secs(3), || entries(&store).len() == 2));
    let mut expected = vec![fresh_id.clone(), "README".to_string()];
    expected.sort();
    assert_eq!(entries(&store), expected);
    let client = HistoryClient::new(&server.url()).unwrap();
    let dest = root.path().join("fresh");
    client
        .download_to(&format!("{}/files/{fresh_id}", server.url()), &dest)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"x");
    server.stop();
}

fn delete_after_download(backend: Backend) {
    let f = Fixture::on(backend, |c| c.delete_after_download = true);
    let data = pseudo_random(300_000, 5);
    let url = f.upload(&data);
    assert_eq!(sha256(&f.download(&url).unwrap()), sha256(&data));
    assert!(
        wait_for(Duration::from_secs(3), || f.stored().is_empty()),
        "still stored: {:?}",
        f.stored()
    );
    assert!(matches!(f.download(&url), Err(HistoryError::NotFound)));
}

/// Remote attachments' files (`POST /attachments`) outlive history archives, survive their
/// downloads (every member fetches one) and are never served as archives.
fn attachments_are_a_class_of_their_own(backend: Backend) {
    let f = Fixture::on(backend, |c| {
        c.ttl = Duration::from_secs(1);
        c.delete_after_download = true;
    });
    let data = pseudo_random(200_000, 9);
    let path = f.file("photo.enc", &data);
    let url = f.client.upload_attachment(&path).unwrap();
    assert!(url.contains("/attachments/"), "{url}");
    let archive = f.upload(b"history");
    let uploaded = Instant::now();
    // Downloaded by three members: still there.
    for _ in 0..3 {
        assert_eq!(sha256(&f.download(&url).unwrap()), sha256(&data));
    }
    // Not under the archives' route, and not among the archives' payloads.
    let id = url.rsplit('/').next().unwrap();
    let as_archive = format!("{}/files/{id}", f.server.url());
    assert!(matches!(
        f.download(&as_archive),
        Err(HistoryError::NotFound)
    ));
    assert!(!f.stored().iter().any(|n| n == id), "{:?}", f.stored());
    // Past the archives' time to live the archive is swept; the attachment stays.
    while uploaded.elapsed() < Duration::from_millis(1100) + f.store.time_resolution() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(wait_for(Duration::from_secs(4), || f.stored().is_empty()));
    assert!(matches!(f.download(&archive), Err(HistoryError::NotFound)));
    assert_eq!(sha256(&f.download(&url).unwrap()), sha256(&data));
}

/// The attachment class has a time to live of its own.
#[test]
fn attachments_expire_after_their_own_time_to_live() {
    let f = Fixture::new(|c| c.attachment_ttl = Duration::from_secs(1));
    let url = f
        .client
        .upload_attachment(&f.file("a.enc", b"attachment"))
        .unwrap();
    let archive = f.upload(b"history");
    std::thread::sleep(Duration::from_millis(1100) + f.store.time_resolution());
    assert!(matches!(f.download(&url), Err(HistoryError::NotFound)));
    assert_eq!(f.download(&archive).unwrap(), b"history");
}

fn parallel_uploads_and_downloads_stay_intact(backend: Backend) {
    // (All from one address: the per-client limit is off here; it has its own test.)
    let f = Fixture::on(backend, |c| c.requests_per_minute = 0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                let f = &f;
                scope.spawn(move || {
                    let data = pseudo_random(20_000 + i as usize * 1013, 100 + i);
                    let url = f.upload(&data);
                    let back = f.download(&url).unwrap();
                    assert_eq!(sha256(&back), sha256(&data), "upload {i}");
                    id_of(&url).to_string()
                })
            })
            .collect();
        let mut ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 100);
        assert_eq!(f.stored(), ids);
    });
}

fn slow_uploads_are_cut_off(backend: Backend) {
    let f = Fixture::on(backend, |c| c.idle_timeout = Duration::from_secs(1));

    // Slow body: headers and a few bytes, then nothing.
    let mut stream = connect(f.addr());
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nabcdefghij",
        )
        .unwrap();
    f.store.await_small_upload();
    let start = Instant::now();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 408);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(f.stored(), Vec::<String>::new(), "partial upload removed");

    // Slow headers: the connection is closed.
    let mut stream = connect(f.addr());
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: te")
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let mut seen = Vec::new();
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        seen.is_empty() || seen.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&seen)
    );

    // The server is still fine.
    assert_eq!(f.download(&f.upload(b"after")).unwrap(), b"after");
}

fn many_slow_uploads_at_once_do_not_exhaust_the_server(backend: Backend) {
    let f = Fixture::on(backend, |c| {
        c.idle_timeout = Duration::from_secs(1);
        c.requests_per_minute = 0;
    });
    // Fifty connections that start an upload and then stall.
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(f.addr());
            s.write_all(
                b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nabc",
            )
            .unwrap();
            s
        })
        .collect();
    // Meanwhile an honest client is served at once.
    let start = Instant::now();
    assert_eq!(f.download(&f.upload(b"honest")).unwrap(), b"honest");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // Every stalled one is cut off, and nothing of theirs stays on disk.
    for s in &mut stalled {
        assert_eq!(read_response(s).status, 408);
    }
    assert!(
        wait_for(Duration::from_secs(3), || f.stored().len() == 1),
        "{:?}",
        f.stored()
    );
}

fn rate_limit_answers_429(backend: Backend) {
    let f = Fixture::on(backend, |c| c.requests_per_minute = 5);
    let url = f.upload(b"limited");
    for _ in 0..4 {
        assert_eq!(f.download(&url).unwrap(), b"limited");
    }
    match f.download(&url) {
        Err(HistoryError::Rejected { status: 429, .. }) => {}
        other => panic!("expected 429, got {other:?}"),
    }
    let response = raw_get(f.addr(), &format!("/files/{}", id_of(&url)));
    assert_eq!(response.status, 429);
    let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    let other = f.file("other", b"x");
    assert!(matches!(
        f.client.upload_file(&other),
        Err(HistoryError::Rejected { status: 429, .. })
    ));
    // Health checks are not limited.
    f.client.health().unwrap();
}

fn downloads_over_the_client_limit_are_refused(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let url = f.upload(&pseudo_random(10_000, 6));
    let small = f.client.clone().with_max_download(9_999);
    let dest = f.root.path().join("limited");
    assert!(matches!(
        small.download_to(&url, &dest),
        Err(HistoryError::TooLarge)
    ));
    assert!(!dest.exists());
    let exact = f.client.clone().with_max_download(10_000);
    assert_eq!(exact.download_to(&url, &dest).unwrap(), 10_000);
}

#[test]
fn downloads_from_another_host_are_refused() {
    let a = Fixture::new(|_| {});
    let b = Fixture::new(|_| {});
    let url = b.upload(b"elsewhere");
    let dest = a.root.path().join("foreign");
    assert!(matches!(
        a.client.download_to(&url, &dest),
        Err(HistoryError::ForeignHost(_))
    ));
    assert!(!dest.exists());
}

fn stop_is_prompt(backend: Backend) {
    let f = Fixture::on(backend, |_| {});
    let url = f.upload(b"kept");
    // An idle keep-alive connection and a stalled upload must not hold the server.
    let mut idle = connect(f.addr());
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).status, 200);
    let mut stalled = connect(f.addr());
    stalled
        .write_all(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nabc")
        .unwrap();
    f.store.await_small_upload();

    let Fixture {
        server,
        client,
        store,
        root: _root,
    } = f;
    let start = Instant::now();
    server.stop();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    assert!(matches!(client.health(), Err(HistoryError::Unavailable(_))));
    // The stalled upload was dropped with its partial file; the payload stays.
    assert_eq!(store.names(), vec![id_of(&url).to_string()]);
}

#[test]
fn start_errors_name_the_problem() {
    let root = tempfile::tempdir().unwrap();
    assert!(matches!(
        RunningHistoryServer::start(HistoryConfig::default()),
        Err(HistoryServerError::MissingDir)
    ));

    let file = root.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = RunningHistoryServer::start(HistoryConfig {
        dir: file.clone(),
        ..HistoryConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, HistoryServerError::Storage { .. }), "{err}");
    assert!(err.to_string().contains(&file.display().to_string()));

    let err = RunningHistoryServer::start(HistoryConfig {
        dir: root.path().join("store"),
        listen: "256.0.0.1:1".to_string(),
        ..HistoryConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, HistoryServerError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("256.0.0.1:1"));

    let err = RunningHistoryServer::start(HistoryConfig {
        dir: root.path().join("store"),
        ttl: Duration::ZERO,
        ..HistoryConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, HistoryServerError::InvalidConfig(_)), "{err}");
}

#[test]
fn an_unreachable_server_is_unavailable() {
    let server = Fixture::new(|_| {});
    let url = server.server.url();
    drop(server);
    let client = HistoryClient::new(&url)
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    assert!(matches!(client.health(), Err(HistoryError::Unavailable(_))));
}

#[test]
fn the_store_setting_names_a_folder_or_a_bucket() {
    let root = tempfile::tempdir().unwrap();
    let up = root.path().join("up");
    std::fs::write(&up, b"in a folder").unwrap();
    let by_url = root.path().join("by-url");
    let by_path = root.path().join("by-path");
    for (location, dir) in [
        (format!("file://{}", by_url.display()), &by_url),
        (by_path.display().to_string(), &by_path),
    ] {
        let server = RunningHistoryServer::start(HistoryConfig {
            store: Some(location),
            ..HistoryConfig::default()
        })
        .unwrap();
        let client = HistoryClient::new(&server.url()).unwrap();
        let url = client.upload_file(&up).unwrap();
        assert_eq!(entries(dir), vec![id_of(&url).to_string()]);
    }
    let start = |dir: &str, store: &str| {
        RunningHistoryServer::start(HistoryConfig {
            dir: dir.into(),
            store: Some(store.to_string()),
            ..HistoryConfig::default()
        })
        .unwrap_err()
    };
    let both = start("somewhere", "s3://bucket/prefix");
    assert!(
        matches!(both, HistoryServerError::InvalidConfig(_)),
        "{both}"
    );
    let other = start("", "ftp://host/x");
    assert!(
        matches!(other, HistoryServerError::InvalidConfig(_)),
        "{other}"
    );
    let no_bucket = start("", "s3:///prefix");
    assert!(
        matches!(no_bucket, HistoryServerError::ObjectStore { .. }),
        "{no_bucket}"
    );
    assert!(!no_bucket.is_retryable());
}

/// Sends `total` bytes as a chunked upload without the final chunk (the body goes on).
fn send_chunked(stream: &mut TcpStream, total: usize) -> std::io::Result<()> {
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    let chunk = pseudo_random(256 * 1024, 7);
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        stream.write_all(format!("{n:x}\r\n").as_bytes())?;
        stream.write_all(&chunk[..n])?;
        stream.write_all(b"\r\n")?;
        sent += n;
    }
    Ok(())
}

/// The status of a response, or `None` if the server closed the connection first.
fn try_read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn s3_an_oversize_or_abandoned_upload_leaves_no_object_and_no_parts() {
    let limit = 12 * 1024 * 1024;
    let f = Fixture::on(Backend::S3, |c| {
        c.max_bytes = limit;
        c.requests_per_minute = 0;
    });
    let Store::S3(bucket) = f.store.clone() else {
        unreachable!()
    };

    // No declared length: two parts go up before the limit is passed, then the upload is
    // refused and aborted.
    let mut stream = connect(f.addr());
    let mut sender = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let _ = send_chunked(&mut sender, 16 * 1024 * 1024);
        let _ = sender.write_all(b"0\r\n\r\n");
    });
    let status = try_read_status(&mut stream);
    assert!(matches!(status, None | Some(413)), "{status:?}");
    drop(stream);
    sending.join().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || bucket.multipart_uploads() == 0),
        "the multipart upload was not aborted"
    );
    assert_eq!(bucket.keys(), Vec::<String>::new(), "no object at all");

    // A client that goes away midway, after a part went up.
    let mut stream = connect(f.addr());
    send_chunked(&mut stream, 8 * 1024 * 1024).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || bucket.multipart_uploads() == 1),
        "a multipart upload should be in progress"
    );
    drop(stream);
    assert!(
        wait_for(Duration::from_secs(10), || bucket.multipart_uploads() == 0),
        "the multipart upload was not aborted"
    );
    assert_eq!(bucket.keys(), Vec::<String>::new(), "no object at all");

    // Exactly the limit is stored, in parts.
    let data = pseudo_random(limit as usize, 8);
    let url = f.upload(&data);
    assert_eq!(sha256(&f.download(&url).unwrap()), sha256(&data));
    assert_eq!(f.stored(), vec![id_of(&url).to_string()]);
}

#[test]
fn s3_replicas_on_one_bucket_serve_each_others_uploads() {
    let bucket = Bucket::new();
    let root = tempfile::tempdir().unwrap();
    let replica = |ttl: Duration| {
        let config = HistoryConfig {
            ttl,
            requests_per_minute: 0,
            ..HistoryConfig::default()
        };
        let server = RunningHistoryServer::start_with_storage(config, bucket.storage()).unwrap();
        let client = HistoryClient::new(&server.url()).unwrap();
        (server, client)
    };
    let (a, a_client) = replica(Duration::from_secs(3600));
    let (b, b_client) = replica(Duration::from_secs(3600));
    let download = |client: &HistoryClient, server: &RunningHistoryServer, id: &str| {
        let dest = root.path().join(format!("down-{}", random_hex()));
        client
            .download_to(&format!("{}/files/{id}", server.url()), &dest)
            .unwrap();
        std::fs::read(&dest).unwrap()
    };

    let mut ids = Vec::new();
    for i in 0..6u64 {
        let data = pseudo_random(50_000 + i as usize * 7919, 40 + i);
        let path = root.path().join(format!("up-{i}"));
        std::fs::write(&path, &data).unwrap();
        // Uploaded through one, downloaded through the other.
        let (up, down) = if i % 2 == 0 {
            ((&a, &a_client), (&b, &b_client))
        } else {
            ((&b, &b_client), (&a, &a_client))
        };
        let url = up.1.upload_file(&path).unwrap();
        assert!(url.starts_with(&up.0.url()), "{url}");
        let id = id_of(&url).to_string();
        assert_eq!(sha256(&download(down.1, down.0, &id)), sha256(&data), "{i}");
        ids.push(id);
    }
    ids.sort();
    assert_eq!(bucket.names(), ids);

    // A download begun on one replica resumes on the other: both name the payload alike.
    let id = &ids[0];
    let whole = raw_get(a.addr(), &format!("/files/{id}"));
    let etag = whole.header("etag").unwrap();
    let rest = raw(
        b.addr(),
        format!(
            "GET /files/{id} HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-\r\nIf-Range: {etag}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(rest.status, 206, "{rest:?}");
    assert_eq!(rest.body, whole.body[1000..]);

    // An id no replica made is unknown to all.
    for server in [&a, &b] {
        let response = raw_get(server.addr(), &format!("/files/{}", random_hex()));
        assert_eq!(response.status, 404);
    }

    // Any replica's sweep removes expired payloads, whoever stored them: here one with a
    // TTL of a second.
    let (_c, _) = replica(Duration::from_secs(1));
    assert!(
        wait_for(Duration::from_secs(10), || bucket.names().is_empty()),
        "{:?}",
        bucket.names()
    );
    let response = raw_get(b.addr(), &format!("/files/{}", ids[1]));
    assert_eq!(response.status, 404);
}

#[test]
fn s3_a_dead_endpoint_is_a_clear_error_not_a_hang() {
    // Nothing listens here.
    let dead = format!("http://127.0.0.1:{}", ferry_testkit::free_port());
    let settings = [
        ("AWS_ENDPOINT", dead.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let storage = ObjectStorage::s3("s3://nowhere/history", settings).unwrap();
    let started = Instant::now();
    let err = RunningHistoryServer::start_with_storage(HistoryConfig::default(), Arc::new(storage))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let HistoryServerError::StorageUnavailable(io) = &err else {
        panic!("{err:?}")
    };
    assert!(err.to_string().contains("s3://nowhere/history"), "{err}");
    let typed = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<ObjectStorageError>());
    assert!(
        matches!(typed, Some(ObjectStorageError::Request { op: "list", .. })),
        "{typed:?}"
    );
    assert!(err.is_retryable());

    // A server whose S3 goes away answers 5xx, promptly, and keeps running.
    let bucket = Bucket::on(Arc::new(ferry_testkit::S3::start()));
    let f_root = tempfile::tempdir().unwrap();
    let server =
        RunningHistoryServer::start_with_storage(HistoryConfig::default(), bucket.storage())
            .unwrap();
    let client = HistoryClient::new(&server.url()).unwrap();
    let up = f_root.path().join("up");
    std::fs::write(&up, b"before").unwrap();
    let url = client.upload_file(&up).unwrap();
    drop(bucket); // stops the S3 server
    let started = Instant::now();
    let response = raw_get(server.addr(), &format!("/files/{}", id_of(&url)));
    assert_eq!(response.status, 500, "{response:?}");
    let response = raw(
        server.addr(),
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(response.status, 500, "{response:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    client.health().unwrap();
}
