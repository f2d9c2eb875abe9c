//! What the history server tests share: a server on loopback with a client, over a folder or
//! over S3 (a real S3-compatible server, moto, started by the tests), and raw HTTP/1.1.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_history_server::object_store::aws::{AmazonS3, AmazonS3Builder};
use ferry_history_server::object_store::path::Path as ObjectPath;
use ferry_history_server::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use ferry_history_server::{HistoryConfig, ObjectStorage, PayloadStorage, RunningHistoryServer};
use ferry_testkit::S3;
use ferry_transport::{HistoryClient, HistoryError};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Where a test's server keeps payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A folder (`FolderStorage`).
    Folder,
    /// A fresh bucket on a real S3-compatible server (`ObjectStorage`).
    S3,
}

/// `on_both_stores!(a, b)`: the test bodies `fn a(backend: Backend)` and `fn b(...)` run as
/// tests `folder::a`, `s3::a`, `folder::b` and `s3::b`.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod folder {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::Backend::Folder)
                }
            )+
        }
        mod s3 {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::common::Backend::S3)
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// One S3-compatible server for the tests of a binary that run at the same time: started by
/// the first, stopped when the last one lets it go.
pub fn shared_s3() -> Arc<S3> {
    static SHARED: Mutex<Weak<S3>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s3) = shared.upgrade() {
        return s3;
    }
    let s3 = Arc::new(S3::start());
    *shared = Arc::downgrade(&s3);
    s3
}

/// A bucket of its own on an S3 server, with a client to look into it.
pub struct Bucket {
    pub name: String,
    pub prefix: String,
    client: AmazonS3,
    runtime: tokio::runtime::Runtime,
    // Last: the server outlives the client.
    pub s3: Arc<S3>,
}

impl Bucket {
    /// A fresh bucket on the shared server.
    pub fn new() -> Bucket {
        Bucket::on(shared_s3())
    }

    /// A fresh bucket on `s3`.
    pub fn on(s3: Arc<S3>) -> Bucket {
        let name = format!("ferry-{}", &random_hex()[..16]);
        s3.create_bucket(&name);
        let mut builder = AmazonS3Builder::new().with_bucket_name(&name);
        for (key, value) in s3.env() {
            builder = builder.with_config(key.to_ascii_lowercase().parse().unwrap(), value);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Bucket {
            name,
            prefix: "history/payloads".to_string(),
            client: builder.build().unwrap(),
            runtime,
            s3,
        }
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.name, self.prefix)
    }

    /// A storage over this bucket and prefix, as one history server replica has it (the
    /// endpoint and credentials given explicitly, not through the environment).
    pub fn storage(&self) -> Arc<dyn PayloadStorage> {
        Arc::new(ObjectStorage::s3(&self.url(), self.s3.env()).unwrap())
    }

    /// Every key in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.runtime.block_on(sorted_keys(&self.client))
    }

    /// The names of the objects directly under the prefix, sorted.
    pub fn names(&self) -> Vec<String> {
        let prefix = format!("{}/", self.prefix);
        // Directly under the prefix: not the attachment class's `attachments/...`.
        self.keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .filter(|name| !name.contains('/'))
            .collect()
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}", self.prefix))
    }

    pub fn remove(&self, name: &str) {
        self.runtime
            .block_on(self.client.delete(&self.path(name)))
            .unwrap();
    }

    pub fn put(&self, name: &str, data: &[u8]) {
        let payload = PutPayload::from(data.to_vec());
        self.runtime
            .block_on(self.client.put(&self.path(name), payload))
            .unwrap();
    }

    /// How many multipart uploads are in progress in the bucket (S3's ListMultipartUploads,
    /// which object_store does not offer; the test server takes it unsigned).
    pub fn multipart_uploads(&self) -> usize {
        let endpoint = self.s3.endpoint();
        let hostport = endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(hostport).unwrap();
        write!(
            stream,
            "GET /{}?uploads HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n",
            self.name
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        reply.matches("<Upload>").count()
    }
}

/// Every key in `store`, sorted.
pub async fn sorted_keys(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    keys.sort();
    keys
}

/// A test's view into where its server keeps payloads.
#[derive(Clone)]
pub enum Store {
    Folder(PathBuf),
    S3(Arc<Bucket>),
}

/// A [`Store`] that does not keep its bucket (and S3 server) alive: for threads that may
/// outlive the test, which would otherwise leave the server running after the tests end.
#[derive(Clone)]
pub enum WeakStore {
    Folder(PathBuf),
    S3(Weak<Bucket>),
}

impl WeakStore {
    pub fn upgrade(&self) -> Option<Store> {
        match self {
            WeakStore::Folder(dir) => Some(Store::Folder(dir.clone())),
            WeakStore::S3(bucket) => bucket.upgrade().map(Store::S3),
        }
    }
}

impl Store {
    pub fn downgrade(&self) -> WeakStore {
        match self {
            Store::Folder(dir) => WeakStore::Folder(dir.clone()),
            Store::S3(bucket) => WeakStore::S3(Arc::downgrade(bucket)),
        }
    }

    /// What the store holds: file names in the folder (payloads and uploads in progress),
    /// object names under the prefix in the bucket; sorted.
    pub fn names(&self) -> Vec<String> {
        match self {
            Store::Folder(dir) => entries(dir),
            Store::S3(bucket) => bucket.names(),
        }
    }

    /// Removes a payload behind the server's back.
    pub fn remove(&self, id: &str) {
        match self {
            Store::Folder(dir) => std::fs::remove_file(dir.join(id)).unwrap(),
            Store::S3(bucket) => bucket.remove(id),
        }
    }

    /// Replaces a payload behind the server's back (in one step).
    pub fn replace(&self, id: &str, data: &[u8]) {
        match self {
            Store::Folder(dir) => {
                let path = dir.join(id);
                let tmp = path.with_extension("swap");
                std::fs::write(&tmp, data).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            }
            Store::S3(bucket) => bucket.put(id, data),
        }
    }

    /// Uploads in progress that the store shows: temp files in the folder, multipart
    /// uploads in the bucket.
    pub fn partial_uploads(&self) -> usize {
        match self {
            Store::Folder(_) => self
                .names()
                .iter()
                .filter(|n| n.starts_with(".upload-"))
                .count(),
            Store::S3(bucket) => bucket.multipart_uploads(),
        }
    }

    /// Waits until the server has begun storing a small upload that was just sent. A folder
    /// shows its temp file; a bucket shows nothing of an upload smaller than a part, so this
    /// only gives the server a moment.
    pub fn await_small_upload(&self) {
        match self {
            Store::Folder(_) => assert!(
                wait_for(Duration::from_secs(2), || self.partial_uploads() > 0),
                "the upload should have started"
            ),
            Store::S3(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }

    /// How much later than its time to live a payload may expire: S3 keeps whole seconds.
    pub fn time_resolution(&self) -> Duration {
        match self {
            Store::Folder(_) => Duration::ZERO,
            Store::S3(_) => Duration::from_secs(1),
        }
    }
}

pub struct Fixture {
    // Field order: the server stops before its storage goes away.
    pub server: RunningHistoryServer,
    pub client: HistoryClient,
    pub store: Store,
    pub root: TempDir,
}

impl Fixture {
    /// A server over a folder.
    pub fn new(configure: impl FnOnce(&mut HistoryConfig)) -> Fixture {
        Fixture::on(Backend::Folder, configure)
    }

    /// A server over `backend` (a fresh folder or bucket).
    pub fn on(backend: Backend, configure: impl FnOnce(&mut HistoryConfig)) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let mut config = HistoryConfig::default();
        configure(&mut config);
        let (server, store) = match backend {
            Backend::Folder => {
                let dir = root.path().join("store");
                config.dir = dir.clone();
                (RunningHistoryServer::start(config), Store::Folder(dir))
            }
            Backend::S3 => {
                let bucket = Bucket::new();
                let server = RunningHistoryServer::start_with_storage(config, bucket.storage());
                (server, Store::S3(Arc::new(bucket)))
            }
        };
        let server = server.unwrap();
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
        self.store.names()
    }
}

/// The files in a folder (not its sub-folders, such as the attachments class's).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.path().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
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
