//! The history server over HTTPS: a real server on 127.0.0.1 with a certificate made at test
//! time (a throwaway CA); the transport's `HistoryClient` and a hand-driven rustls client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_history_server::{HistoryConfig, HistoryServerError, RunningHistoryServer, ServerTls};
use ferry_tls::rustls;
use ferry_tls::test_certs::{TestPki, TestPkiFiles};
use ferry_transport::{HistoryClient, HistoryError};
use tempfile::TempDir;

struct Fixture {
    server: RunningHistoryServer,
    pki: TestPkiFiles,
    root: TempDir,
}

impl Fixture {
    fn new(configure: impl FnOnce(&mut HistoryConfig)) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let pki = TestPki::new().write_to(root.path());
        let mut config = HistoryConfig {
            dir: root.path().join("store"),
            tls: Some(pki.server_tls()),
            ..HistoryConfig::default()
        };
        configure(&mut config);
        let server = RunningHistoryServer::start(config).unwrap();
        Fixture { server, pki, root }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    fn trusting_client(&self) -> HistoryClient {
        HistoryClient::new(&self.server.url())
            .unwrap()
            .with_ca(Some(self.pki.ca_certs()))
    }

    /// A TLS connection made by hand, trusting the test CA.
    fn tls_stream(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(self.pki.ca_certs().certs().to_vec());
        let config = rustls::ClientConfig::builder_with_provider(ferry_tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(self.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        tls
    }
}

/// Reads until the server closes the connection (or 10 s pass); returns what came.
fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn uploads_and_downloads_over_https_with_the_ca() {
    let f = Fixture::new(|_| {});
    assert!(f.server.is_tls());
    let url = f.server.url();
    assert_eq!(url, format!("https://{}", f.addr()));

    let client = f.trusting_client();
    client.health().expect("health over https");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = f.root.path().join("archive.bin");
    std::fs::write(&path, &data).unwrap();
    let file_url = client.upload_file(&path).expect("upload over https");
    assert!(file_url.starts_with(&format!("{url}/files/")), "{file_url}");
    let dest = f.root.path().join("downloaded.bin");
    let n = client.download_to(&file_url, &dest).expect("download");
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn without_the_ca_the_server_is_refused_with_an_error_naming_the_url() {
    let f = Fixture::new(|_| {});
    let url = f.server.url();

    // The public roots only.
    let client = HistoryClient::new(&url).unwrap();
    let err = client.health().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HistoryError::Unavailable(_)), "{text}");
    assert!(text.contains(&url), "names the URL: {text}");
    assert!(
        text.contains("not signed by a trusted CA"),
        "says why: {text}"
    );
    let path = f.root.path().join("archive.bin");
    std::fs::write(&path, b"secret history").unwrap();
    let text = client.upload_file(&path).unwrap_err().to_string();
    assert!(text.contains("not signed by a trusted CA"), "{text}");

    // Another CA.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestPki::new().write_to(other_dir.path());
    let client = HistoryClient::new(&url)
        .unwrap()
        .with_ca(Some(other.ca_certs()));
    let text = client.health().unwrap_err().to_string();
    assert!(text.contains("not signed by a trusted CA"), "{text}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = format!("http://{}", f.addr());
    let client = HistoryClient::new(&plain)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let err = client.health().unwrap_err();
    assert!(err.to_string().contains(&plain), "{err}");

    // Nothing was stored, and a trusting client still gets through.
    assert_eq!(
        std::fs::read_dir(f.root.path().join("store"))
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().path().is_dir())
            .count(),
        0
    );
    f.trusting_client().health().unwrap();
}

#[test]
fn the_idle_timeout_holds_over_tls() {
    let f = Fixture::new(|c| c.idle_timeout = Duration::from_secs(1));

    // A client that never starts its handshake is dropped.
    let mut silent = TcpStream::connect(f.addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    read_to_close(&mut silent);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // Slow headers after the handshake: the connection is closed.
    let mut tls = f.tls_stream();
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: te").unwrap();
    tls.flush().unwrap();
    let start = Instant::now();
    read_to_close(&mut tls);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // A stalled upload body gets 408.
    let mut tls = f.tls_stream();
    tls.write_all(
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nabcdefghij",
    )
    .unwrap();
    tls.flush().unwrap();
    let start = Instant::now();
    let answer = String::from_utf8_lossy(&read_to_close(&mut tls)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // The server is still there.
    f.trusting_client().health().unwrap();
}

#[test]
fn bad_tls_files_fail_the_start_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let pki = TestPki::new().write_to(root.path());
    let missing = root.path().join("no-such-cert.pem");
    let err = RunningHistoryServer::start(HistoryConfig {
        dir: root.path().join("store"),
        tls: Some(ServerTls::new(&missing, &pki.key)),
        ..HistoryConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, HistoryServerError::Tls(_)), "{err}");
    assert!(err.to_string().contains("no-such-cert.pem"), "{err}");

    // A key file that holds a certificate.
    let err = RunningHistoryServer::start(HistoryConfig {
        dir: root.path().join("store"),
        tls: Some(ServerTls::new(&pki.cert, &pki.cert)),
        ..HistoryConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");
    assert!(err.to_string().contains("no private key"), "{err}");
}
