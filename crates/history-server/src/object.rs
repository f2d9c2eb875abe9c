//! Payloads in object storage (S3-compatible services) through the `object_store` crate.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutPayload, RetryConfig, WriteMultipart,
};
use tokio_util::io::StreamReader;

use crate::storage::{PayloadId, PayloadSink, PayloadStorage, StorageFuture, StoredPayload};

/// Size of the parts of a multipart upload: S3's minimum (every part but the last must be at
/// least 5 MiB). An upload no larger than this goes up in one request when it completes.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload sent at once; with the part being filled, an upload holds about
/// `(PARTS_IN_FLIGHT + 1) * PART_BYTES` in memory at the most.
const PARTS_IN_FLIGHT: usize = 2;

/// Why an [`ObjectStorage`] cannot be made, or what a request to it failed with (inside the
/// `io::Error`s of [`PayloadStorage`]'s methods: `get_ref()` and downcast to read it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectStorageError {
    /// The location is not `s3://bucket[/prefix]`.
    #[error("not an S3 location: {0:?} (expected s3://bucket/prefix)")]
    InvalidUrl(String),
    /// A setting's name is not one of object_store's S3 settings (`AWS_ENDPOINT`, ...).
    #[error("unknown S3 setting {0:?}")]
    UnknownSetting(String),
    /// The prefix is not a valid object path (empty segments, `.` or `..`, ...).
    #[error("invalid prefix {prefix:?}: {source}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// What object_store says.
        source: Box<object_store::path::Error>,
    },
    /// object_store refused the settings (e.g. a malformed endpoint).
    #[error("cannot configure {location}: {source}")]
    Config {
        /// The location ([`ObjectStorage::describe`]).
        location: String,
        /// What object_store says.
        source: Box<object_store::Error>,
    },
    /// A request to the store failed (after object_store's retries).
    #[error("{location}: cannot {op} {key}: {source}")]
    Request {
        /// The location ([`ObjectStorage::describe`]).
        location: String,
        /// What was being done: `list`, `upload`, `download`, ...
        op: &'static str,
        /// The object's key (or the prefix, for a listing).
        key: String,
        /// What object_store says.
        source: Box<object_store::Error>,
    },
}

/// Keeps each payload as one object in an [`ObjectStore`] (S3 or any S3-compatible service),
/// under a prefix. Several history servers can share one bucket and prefix: each serves the
/// others' uploads, since nothing is kept outside the bucket.
///
/// - A committed payload is the object `<prefix>/<id>` (32 hex digits). Objects under the
///   prefix with other names are left alone.
/// - **Uploads stream.** Up to [`PART_BYTES`] are held in memory; an upload that grows past it
///   becomes a multipart upload, sent in parts of [`PART_BYTES`] (at most two in flight).
///   Nothing is visible under the id until the upload completes; an upload dropped before
///   [`commit`](PayloadSink::commit) (too large, stalled, the client gone) is aborted, which
///   removes its parts. Parts of an upload whose process died are not visible either, but
///   only a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them.
/// - **Stored time** is the object's Last-Modified truncated to the second, plus one second:
///   S3 keeps whole seconds (and some services truncate listings and headers differently),
///   so a payload never expires before its time to live and at most a second after, and every
///   replica computes the same time from any request. Some services date a multipart object
///   from the start of its upload, which makes a large payload expire earlier by as long as its
///   upload took. Expiry compares it with this machine's clock: keep the clocks in sync.
/// - **Sweeps** list the prefix and delete the payloads stored before the cutoff.
/// - **Downloads stream** from the object (a range request for a resumed download).
#[derive(Clone)]
pub struct ObjectStorage {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    describe: String,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("location", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

impl ObjectStorage {
    /// Payloads under `prefix` (`""` for the store's root) of `store`; `describe` names the
    /// place in logs and errors (e.g. `s3://bucket/prefix`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        describe: impl Into<String>,
    ) -> Result<ObjectStorage, ObjectStorageError> {
        let trimmed = prefix.trim_matches('/');
        let prefix =
            ObjectPath::parse(trimmed).map_err(|source| ObjectStorageError::InvalidPrefix {
                prefix: prefix.to_string(),
                source: Box::new(source),
            })?;
        Ok(ObjectStorage {
            inner: Arc::new(Inner {
                store,
                prefix,
                describe: describe.into(),
            }),
        })
    }

    /// S3-compatible storage at `s3://bucket/optional/prefix`, with credentials, region and
    /// endpoint from the environment, as the `ferry history-server --store` command reads them:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ENDPOINT` (or `AWS_ENDPOINT_URL`) for a service other than
    /// AWS, `AWS_ALLOW_HTTP=true` for a plain-http endpoint, and object_store's other `AWS_*`
    /// settings. Without keys in the environment, object_store asks the instance's metadata
    /// service (an IAM role).
    pub fn s3_from_env(url: &str) -> Result<ObjectStorage, ObjectStorageError> {
        let settings = std::env::vars().filter(|(key, _)| {
            key.starts_with("AWS_")
                && key
                    .to_ascii_lowercase()
                    .parse::<AmazonS3ConfigKey>()
                    .is_ok()
        });
        Self::s3(url, settings)
    }

    /// Like [`s3_from_env`](Self::s3_from_env) with the settings given instead of read from
    /// the environment: names as the environment variables (`AWS_ENDPOINT`, any case) or as
    /// object_store's keys (`endpoint`); an unknown name is an error.
    pub fn s3<K: AsRef<str>, V: Into<String>>(
        url: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ObjectStorage, ObjectStorageError> {
        let invalid = || ObjectStorageError::InvalidUrl(url.to_string());
        let rest = url.strip_prefix("s3://").ok_or_else(invalid)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid());
        }
        // Requests are answered while a client waits: a few quick retries, no limit on a
        // whole request (a download streams as slowly as its client reads) but one on each
        // read, so a stalled connection is noticed and the read resumed.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
        };
        let client = ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(5))
            .with_read_timeout(Duration::from_secs(30));
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(retry);
        for (key, value) in settings {
            let key = key.as_ref();
            let parsed: AmazonS3ConfigKey = key
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| ObjectStorageError::UnknownSetting(key.to_string()))?;
            builder = builder.with_config(parsed, value);
        }
        let store = builder.with_bucket_name(bucket).build().map_err(|source| {
            ObjectStorageError::Config {
                location: url.to_string(),
                source: Box::new(source),
            }
        })?;
        Self::new(Arc::new(store), prefix, url)
    }

    /// The place, as given (e.g. `s3://bucket/prefix`).
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// The key of a payload's object.
    pub fn key_of(&self, id: PayloadId) -> String {
        self.inner.path_of(id).to_string()
    }
}

impl Inner {
    fn path_of(&self, id: PayloadId) -> ObjectPath {
        self.prefix.clone().join(id.to_string())
    }

    fn listed_prefix(&self) -> Option<&ObjectPath> {
        (!self.prefix.as_ref().is_empty()).then_some(&self.prefix)
    }

    /// Whether `location` is a payload's object (directly under the prefix, named by an id).
    fn is_payload(&self, location: &ObjectPath) -> bool {
        location
            .filename()
            .and_then(PayloadId::parse)
            .is_some_and(|id| self.path_of(id) == *location)
    }

    fn error(&self, op: &'static str, key: &ObjectPath, source: object_store::Error) -> io::Error {
        let kind = match &source {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(
            kind,
            ObjectStorageError::Request {
                location: self.describe.clone(),
                op,
                key: key.to_string(),
                source: Box::new(source),
            },
        )
    }
}

/// The stored time of an object (see [`ObjectStorage`]).
fn stored_time(meta: &ObjectMeta) -> SystemTime {
    let secs = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs.saturating_add(1))
}

impl PayloadStorage for ObjectStorage {
    fn check(&self) -> StorageFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            // One page of the listing: the bucket exists, the endpoint answers and the
            // credentials are good.
            let mut listing = inner.store.list(inner.listed_prefix());
            match listing.next().await {
                None | Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(inner.error("list", &inner.prefix, e)),
            }
        })
    }

    fn create(&self, id: PayloadId) -> StorageFuture<'_, Box<dyn PayloadSink>> {
        Box::pin(async move {
            let sink: Box<dyn PayloadSink> = Box::new(ObjectSink {
                inner: Arc::clone(&self.inner),
                path: self.inner.path_of(id),
                buffer: Vec::new(),
                upload: None,
            });
            Ok(sink)
        })
    }

    fn open(&self, id: PayloadId) -> StorageFuture<'_, Option<StoredPayload>> {
        self.open_at(id, 0)
    }

    fn open_at(&self, id: PayloadId, offset: u64) -> StorageFuture<'_, Option<StoredPayload>> {
        Box::pin(async move {
            let inner = Arc::clone(&self.inner);
            let path = inner.path_of(id);
            let options = GetOptions {
                range: (offset > 0).then_some(GetRange::Offset(offset)),
                ..GetOptions::default()
            };
            let got = match inner.store.get_opts(&path, options).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(inner.error("download", &path, e)),
            };
            let meta = got.meta.clone();
            let stream = got
                .into_stream()
                .map_err(move |e| inner.error("download", &path, e));
            Ok(Some(StoredPayload {
                len: meta.size,
                stored_at: stored_time(&meta),
                version: meta.e_tag,
                reader: Box::pin(StreamReader::new(stream)),
            }))
        })
    }

    fn remove(&self, id: PayloadId) -> StorageFuture<'_, bool> {
        Box::pin(async move {
            let inner = &self.inner;
            let path = inner.path_of(id);
            // S3 deletes a missing object without a word: ask first, for the answer.
            match inner.store.head(&path).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(inner.error("look up", &path, e)),
            }
            match inner.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                Err(e) => Err(inner.error("delete", &path, e)),
            }
        })
    }

    fn sweep(&self, cutoff: SystemTime) -> StorageFuture<'_, usize> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut expired = Vec::new();
            let mut listing = inner.store.list(inner.listed_prefix());
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| inner.error("list", &inner.prefix, e))?;
                if inner.is_payload(&meta.location) && stored_time(&meta) < cutoff {
                    expired.push(meta.location);
                }
            }
            if expired.is_empty() {
                return Ok(0);
            }
            // In batches where the service has them (S3's DeleteObjects). Another replica may
            // be removing the same objects: one already gone counts for nothing.
            let mut deleted = inner
                .store
                .delete_stream(futures::stream::iter(expired.into_iter().map(Ok)).boxed());
            let mut removed = 0;
            while let Some(result) = deleted.next().await {
                match result {
                    Ok(_) => removed += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(inner.error("delete", &inner.prefix, e)),
                }
            }
            Ok(removed)
        })
    }

    fn class(&self, name: &str) -> StorageFuture<'_, Arc<dyn PayloadStorage>> {
        let prefix = match self.inner.prefix.as_ref() {
            "" => name.to_string(),
            p => format!("{p}/{name}"),
        };
        let describe = format!("{}/{name}", self.inner.describe.trim_end_matches('/'));
        let store = Arc::clone(&self.inner.store);
        Box::pin(async move {
            let storage = ObjectStorage::new(store, &prefix, describe).map_err(io::Error::other)?;
            Ok(Arc::new(storage) as Arc<dyn PayloadStorage>)
        })
    }
}

/// An upload in progress: in memory up to [`PART_BYTES`], then a multipart upload.
struct ObjectSink {
    inner: Arc<Inner>,
    path: ObjectPath,
    buffer: Vec<u8>,
    /// Set once the payload outgrew one part; aborted on drop unless committed.
    upload: Option<WriteMultipart>,
}

impl PayloadSink for ObjectSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            if let Some(upload) = self.upload.as_mut() {
                upload
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.inner.error("upload a part of", &self.path, e))?;
                upload.write(chunk);
                return Ok(());
            }
            self.buffer.extend_from_slice(chunk);
            if self.buffer.len() >= PART_BYTES {
                let multipart = self
                    .inner
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|e| self.inner.error("start uploading", &self.path, e))?;
                let mut upload = WriteMultipart::new_with_chunk_size(multipart, PART_BYTES);
                upload.put(Bytes::from(std::mem::take(&mut self.buffer)));
                self.upload = Some(upload);
            }
            Ok(())
        })
    }

    fn commit(mut self: Box<Self>) -> StorageFuture<'static, SystemTime> {
        Box::pin(async move {
            let inner = Arc::clone(&self.inner);
            let path = self.path.clone();
            match self.upload.take() {
                None => {
                    let data = PutPayload::from(std::mem::take(&mut self.buffer));
                    inner
                        .store
                        .put(&path, data)
                        .await
                        .map_err(|e| inner.error("upload", &path, e))?;
                }
                Some(upload) => {
                    // On a task of its own, so that a client gone at this point leaves either
                    // a whole object (swept when it expires) or an aborted upload.
                    tokio::spawn(upload.finish())
                        .await
                        .map_err(io::Error::other)?
                        .map_err(|e| inner.error("complete the upload of", &path, e))?;
                }
            }
            let meta = inner
                .store
                .head(&path)
                .await
                .map_err(|e| inner.error("look up", &path, e))?;
            Ok(stored_time(&meta))
        })
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let (location, key) = (self.inner.describe.clone(), self.path.to_string());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    match upload.abort().await {
                        Ok(()) => tracing::debug!(%location, %key, "aborted an unfinished upload"),
                        Err(e) => tracing::warn!(
                            %location, %key, error = %e,
                            "cannot abort an unfinished upload (a bucket lifecycle rule removes its parts)"
                        ),
                    }
                });
            }
            Err(_) => tracing::warn!(
                %location, %key,
                "unfinished upload dropped outside a runtime (a bucket lifecycle rule removes its parts)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_settings_are_checked() {
        let settings = [("AWS_REGION", "us-east-1")];
        for bad in ["http://bucket/x", "s3://", "s3:///prefix", "bucket"] {
            assert!(
                matches!(
                    ObjectStorage::s3(bad, settings),
                    Err(ObjectStorageError::InvalidUrl(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            ObjectStorage::s3("s3://b/../x", settings),
            Err(ObjectStorageError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            ObjectStorage::s3("s3://b", [("AWS_NO_SUCH_THING", "1")]),
            Err(ObjectStorageError::UnknownSetting(_))
        ));
        let s = ObjectStorage::s3("s3://b/one/two", settings).unwrap();
        assert_eq!(s.describe(), "s3://b/one/two");
        let id = PayloadId::random().unwrap();
        assert_eq!(s.key_of(id), format!("one/two/{id}"));
    }
}
