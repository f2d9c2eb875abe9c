//! Backups in object storage through the `object_store` crate: S3-compatible services (feature
//! `s3`), and its local-filesystem and in-memory stores (used by tests, and usable for a mounted
//! share).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::destination::{check_name, Destination, Entry};
use super::{Error, Result};

/// Objects at most this large are uploaded in one request; larger ones in parts.
const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3 needs at least 5 MiB per part but the last).
const PART: usize = 8 * 1024 * 1024;

/// A [`Destination`] over any [`ObjectStore`], objects under one prefix.
///
/// `object_store` is async; the backup manager is blocking (it runs on a schedule, from a
/// thread of its own or the CLI). This runs object_store on a small current-thread runtime of
/// its own; called from inside another tokio runtime (an async app's task), each operation
/// runs on a short-lived thread instead, so it never blocks on one runtime from another.
pub struct ObjectStoreDestination {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    describe: String,
    /// Taken only by `Drop`.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for ObjectStoreDestination {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a task of another runtime must not do.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for ObjectStoreDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreDestination")
            .field("describe", &self.describe)
            .finish()
    }
}

impl ObjectStoreDestination {
    /// Objects go under `prefix` ("" for the store's root) in `store`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        describe: impl Into<String>,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::destination("start runtime", "", e))?;
        let prefix = ObjectPath::parse(prefix.trim_matches('/'))
            .map_err(|e| Error::destination("prefix", prefix, e))?;
        Ok(ObjectStoreDestination {
            store,
            prefix,
            describe: describe.into(),
            rt: Some(rt),
        })
    }

    /// An in-memory store (for tests; its objects live as long as this value).
    pub fn in_memory() -> Result<Self> {
        Self::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "in-memory object store",
        )
    }

    /// object_store's local-filesystem store rooted at `root` (created when missing).
    pub fn local_filesystem(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::destination("create folder", &root.display().to_string(), e))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| Error::destination("open", &root.display().to_string(), e))?;
        Self::new(
            Arc::new(fs),
            "",
            format!("object store (local files) {}", root.display()),
        )
    }

    /// S3-compatible storage at `s3://bucket/optional/prefix`. Credentials, region and endpoint
    /// come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT` for a non-AWS
    /// service, `AWS_ALLOW_HTTP=true` for a plain-http endpoint such as a local test server).
    #[cfg(feature = "s3")]
    pub fn s3(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::InvalidPolicy(format!("S3 URL must start with s3://, got {url:?}"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidPolicy(format!(
                "S3 URL {url:?} names no bucket"
            )));
        }
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::destination("open", url, e))?;
        Self::new(Arc::new(store), prefix, url.to_string())
    }

    /// Runs `work` to its end on this destination's runtime: on this thread, or on a scoped
    /// thread when this thread belongs to a tokio runtime already.
    fn run<T: Send>(&self, work: impl std::future::Future<Output = T> + Send) -> T {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(work);
        }
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(work))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn path(&self, name: &str) -> Result<ObjectPath> {
        check_name(name)?;
        Ok(self.prefix.clone().join(name))
    }
}

impl Destination for ObjectStoreDestination {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn put(&self, name: &str, from: &Path) -> Result<()> {
        let path = self.path(name)?;
        let err = |e: &dyn std::fmt::Display| Error::destination("put", name, e.to_string());
        let len = std::fs::metadata(from).map_err(|e| err(&e))?.len();
        self.run(async {
            if len <= SINGLE_PUT_MAX {
                let bytes = std::fs::read(from).map_err(|e| err(&e))?;
                self.store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| err(&e))?;
                return Ok(());
            }
            // Parts appear as one object only when the upload completes, so a failed upload
            // leaves nothing under the name.
            let upload = self.store.put_multipart(&path).await.map_err(|e| err(&e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut f = std::fs::File::open(from).map_err(|e| err(&e))?;
            let mut buf = vec![0u8; PART];
            loop {
                let n = match read_some(&mut f, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = w.abort().await;
                        return Err(err(&e));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = w.wait_for_capacity(4).await {
                    let _ = w.abort().await;
                    return Err(err(&e));
                }
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(|e| err(&e))?;
            Ok(())
        })
    }

    fn get(&self, name: &str, to: &Path) -> Result<()> {
        let path = self.path(name)?;
        let err = |e: &dyn std::fmt::Display| Error::destination("get", name, e.to_string());
        self.run(async {
            let got = self.store.get(&path).await.map_err(|e| err(&e))?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(to).map_err(|e| err(&e))?);
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| err(&e))?;
                out.write_all(&chunk).map_err(|e| err(&e))?;
            }
            out.flush().map_err(|e| err(&e))?;
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<Entry>> {
        let prefix = if self.prefix.as_ref().is_empty() {
            None
        } else {
            Some(&self.prefix)
        };
        self.run(async {
            // Only the objects directly under the prefix: a destination is flat.
            let listed = self
                .store
                .list_with_delimiter(prefix)
                .await
                .map_err(|e| Error::destination("list", &self.describe, e.to_string()))?;
            Ok(listed
                .objects
                .into_iter()
                .filter_map(|m| {
                    let name = m.location.filename()?.to_string();
                    check_name(&name).ok()?;
                    Some(Entry {
                        name,
                        size: m.size,
                        modified_ns: m.last_modified.timestamp_nanos_opt(),
                    })
                })
                .collect())
        })
    }

    fn read_prefix(&self, name: &str, len: u64) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        self.run(async {
            // A range past the end gives what there is; an empty object has no range at all.
            let meta = self
                .store
                .head(&path)
                .await
                .map_err(|e| Error::destination("read", name, e.to_string()))?;
            if meta.size == 0 {
                return Ok(Vec::new());
            }
            let bytes = self
                .store
                .get_range(&path, 0..len.min(meta.size))
                .await
                .map_err(|e| Error::destination("read", name, e.to_string()))?;
            Ok(bytes.to_vec())
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        self.run(async {
            self.store
                .delete(&path)
                .await
                .map_err(|e| Error::destination("delete", name, e.to_string()))
        })
    }
}

fn read_some(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
