//! What the history server tests share: a server on loopback with a client, and raw HTTP/1.1.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_history_server::{HistoryConfig, RunningHistoryServer};
use ferry_transport::{HistoryClient, HistoryError};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub struct Fixture {
    // Field order: the server stops before its folder is removed.
    pub server: RunningHistoryServer,
    pub client: HistoryClient,
    pub store: PathBuf,
    pub root: TempDir,
}

impl Fixture {
    pub fn new(configure: impl FnOnce(&mut HistoryConfig)) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("store");
        let mut config = HistoryConfig {
            dir: store.clone(),
            ..HistoryConfig::default()
        };
        configure(&mut config);
        let server = RunningHistoryServer::start(config).unwrap();
        let client = HistoryClient::new(&server.url()).unwrap();
        Fixture {
            server,
            client,
            store,
            root,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Writes `data` to a file in the scratch folder (outside the store).
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.root.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    pub fn upload(&self, data: &[u8]) -> String {
        let path = self.file(&format!("up-{}", random_hex()), data);
        self.client.upload_file(&path).unwrap()
    }

    pub fn download(&self, url: &str) -> Result<Vec<u8>, HistoryError> {
        let dest = self.root.path().join(format!("down-{}", random_hex()));
        let n = self.client.download_to(url, &dest)?;
        let data = std::fs::read(&dest).unwrap();
        assert_eq!(n, data.len() as u64);
        Ok(data)
    }

    pub fn stored(&self) -> Vec<String> {
        entries(&self.store)
    }
}

pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// 32 hex digits that are not from the server's generator.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn fill_random(buf: &mut [u8]) {
    // The test does not need the OS generator: a hash of time and a counter suffices.
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let digest = Sha256::new()
        .chain_update(n.to_le_bytes())
        .chain_update(now.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .finalize();
    buf.copy_from_slice(&digest[..buf.len()]);
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn id_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// Waits until `cond` holds, for at most `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads one response (with `Content-Length`) from `stream`.
pub fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut buf).expect("reading a response");
        assert!(n > 0, "connection closed before a response: {data:?}");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let mut response = RawResponse {
        status,
        head,
        body: data[head_end + 4..].to_vec(),
    };
    let len: usize = response
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    while response.body.len() < len {
        let n = stream.read(&mut buf).expect("reading a body");
        assert!(n > 0, "connection closed in the body");
        response.body.extend_from_slice(&buf[..n]);
    }
    response
}

pub fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_response(&mut stream)
}

pub fn raw_get(addr: SocketAddr, target: &str) -> RawResponse {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}
