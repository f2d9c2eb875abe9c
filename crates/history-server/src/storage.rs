//! Where payloads live: the [`PayloadStorage`] trait and its folder implementation (the object
//! store one is in `object.rs`).

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// A future returned by [`PayloadStorage`] and [`PayloadSink`] methods.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// Number of random bytes in a [`PayloadId`] (128 bits).
pub const ID_BYTES: usize = 16;
/// Length of a [`PayloadId`] in its text form (lowercase hex).
pub const ID_HEX_LEN: usize = ID_BYTES * 2;

/// The name of a stored payload: 128 bits from the operating system's random number
/// generator, written as 32 lowercase hex digits.
///
/// Parsing is strict (exactly 32 characters, `0-9a-f` only), so a parsed id is always safe
/// to use as a file name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadId([u8; ID_BYTES]);

impl PayloadId {
    /// A fresh id from the OS random number generator.
    pub fn random() -> io::Result<PayloadId> {
        let mut bytes = [0u8; ID_BYTES];
        getrandom::getrandom(&mut bytes).map_err(io::Error::other)?;
        Ok(PayloadId(bytes))
    }

    /// Parses the text form; `None` unless `s` is exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<PayloadId> {
        let valid =
            s.len() == ID_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return None;
        }
        let mut bytes = [0u8; ID_BYTES];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(PayloadId(bytes))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }
}

impl FromStr for PayloadId {
    type Err = InvalidPayloadId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PayloadId::parse(s).ok_or(InvalidPayloadId)
    }
}

/// A string that is not a valid [`PayloadId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a payload id (expected 32 lowercase hex digits)")]
pub struct InvalidPayloadId;

impl fmt::Display for PayloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PayloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadId({self})")
    }
}

/// A stored payload opened for reading.
pub struct StoredPayload {
    /// Its size in bytes.
    pub len: u64,
    /// When its upload completed; expiry counts from here.
    pub stored_at: SystemTime,
    /// The store's own tag of this version of the payload, if it keeps one (an S3 ETag). The
    /// server folds it into the ETag it answers, so a payload replaced under its id within
    /// the store's time resolution still gets another one.
    pub version: Option<String>,
    /// Its contents, `len` bytes (or from the offset asked for).
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

impl fmt::Debug for StoredPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPayload")
            .field("len", &self.len)
            .field("stored_at", &self.stored_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An upload in progress, from [`PayloadStorage::create`].
///
/// Nothing is visible under the payload's id until [`commit`](PayloadSink::commit) succeeds.
/// Dropping a sink without committing discards everything written to it.
pub trait PayloadSink: Send {
    /// Appends `chunk` to the payload.
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> StorageFuture<'a, ()>;

    /// Makes the payload durable and visible under its id; returns the time it was stored
    /// (the start of its time to live).
    fn commit(self: Box<Self>) -> StorageFuture<'static, SystemTime>;
}

/// Where the history server keeps payloads.
///
/// Implementations store opaque bytes under a [`PayloadId`]; the server decides ids, sizes
/// and expiry. [`FolderStorage`] is the default; [`ObjectStorage`](crate::ObjectStorage) keeps
/// payloads in S3-compatible object storage.
pub trait PayloadStorage: Send + Sync + 'static {
    /// Checks that the storage answers (called once before a server starts serving); the
    /// default has nothing to check.
    fn check(&self) -> StorageFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Starts a new payload under `id` (a fresh random id, never used before).
    fn create(&self, id: PayloadId) -> StorageFuture<'_, Box<dyn PayloadSink>>;

    /// Opens a committed payload; `None` if there is none under `id`.
    fn open(&self, id: PayloadId) -> StorageFuture<'_, Option<StoredPayload>>;

    /// Opens a committed payload with its reader at byte `offset` (for range requests); `len`
    /// and `stored_at` still describe the whole payload. The default reads and drops the
    /// bytes before `offset`; stores that can seek do better.
    fn open_at(&self, id: PayloadId, offset: u64) -> StorageFuture<'_, Option<StoredPayload>> {
        Box::pin(async move {
            let Some(mut payload) = self.open(id).await? else {
                return Ok(None);
            };
            let skip = offset.min(payload.len);
            tokio::io::copy(
                &mut (&mut payload.reader).take(skip),
                &mut tokio::io::sink(),
            )
            .await?;
            Ok(Some(payload))
        })
    }

    /// Removes a payload; `false` if there was none.
    fn remove(&self, id: PayloadId) -> StorageFuture<'_, bool>;

    /// Removes every payload stored before `cutoff` and the leftovers of uploads that are no
    /// longer in progress (e.g. from a crashed process); returns how many entries it removed.
    fn sweep(&self, cutoff: SystemTime) -> StorageFuture<'_, usize>;

    /// A storage of the same kind for another class of payloads, named `name`: a sub-folder
    /// or sub-prefix (whose payloads this one never lists, serves or sweeps).
    fn class(&self, name: &str) -> StorageFuture<'_, Arc<dyn PayloadStorage>>;
}

/// Prefix of the names of uploads in progress; never a valid id, so never served.
const TEMP_PREFIX: &str = ".upload-";
/// Write buffer of an upload, to keep the number of blocking file writes low.
const WRITE_BUFFER: usize = 256 * 1024;

/// Keeps each payload as one file in a folder.
///
/// - A committed payload is the file `<dir>/<id>` (32 hex digits, nothing else).
/// - An upload in progress is written to `<dir>/.upload-<id>` and renamed into place only
///   once complete and synced, so a partial upload is never readable under its id.
/// - **Stored time** is the file's modification time, set explicitly at commit; expiry
///   counts from it. No sidecar files are kept.
/// - [`open`](FolderStorage::open) removes the temp files of a previous process; later
///   [`sweep`](PayloadStorage::sweep)s remove temp files no upload of this process owns.
/// - Files with other names are left alone.
pub struct FolderStorage {
    dir: PathBuf,
    /// Temp names of uploads in progress, registered before their file is created and
    /// unregistered after it is renamed or removed, so a sweep never removes a live upload.
    active: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for FolderStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FolderStorage")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FolderStorage {
    /// Uses `dir` (created if missing) and removes leftover temp files in it.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FolderStorage> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        if !std::fs::metadata(&dir)?.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        let storage = FolderStorage {
            dir,
            active: Arc::new(Mutex::new(HashSet::new())),
        };
        let removed = sweep_dir(&storage.dir, None, &storage.active)?;
        if removed > 0 {
            tracing::info!(dir = %storage.dir.display(), removed, "removed leftover uploads");
        }
        Ok(storage)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, id: PayloadId) -> PathBuf {
        self.dir.join(id.to_string())
    }
}

impl PayloadStorage for FolderStorage {
    fn create(&self, id: PayloadId) -> StorageFuture<'_, Box<dyn PayloadSink>> {
        Box::pin(async move {
            let temp_name = format!("{TEMP_PREFIX}{id}");
            let temp = self.dir.join(&temp_name);
            lock(&self.active).insert(temp_name.clone());
            // From here on the guard unregisters the name (and removes the file) on failure.
            let mut guard = TempGuard {
                path: temp.clone(),
                name: temp_name,
                active: Arc::clone(&self.active),
                armed: true,
            };
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .await;
            let file = match file {
                Ok(file) => file,
                Err(e) => {
                    // Do not remove a file we did not create.
                    guard.forget_file();
                    return Err(e);
                }
            };
            let sink: Box<dyn PayloadSink> = Box::new(FolderSink {
                file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
                final_path: self.path_of(id),
                guard,
            });
            Ok(sink)
        })
    }

    fn open(&self, id: PayloadId) -> StorageFuture<'_, Option<StoredPayload>> {
        self.open_at(id, 0)
    }

    fn open_at(&self, id: PayloadId, offset: u64) -> StorageFuture<'_, Option<StoredPayload>> {
        Box::pin(async move {
            let mut file = match tokio::fs::File::open(self.path_of(id)).await {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let meta = file.metadata().await?;
            if !meta.is_file() {
                return Ok(None);
            }
            if offset > 0 {
                file.seek(std::io::SeekFrom::Start(offset.min(meta.len())))
                    .await?;
            }
            Ok(Some(StoredPayload {
                len: meta.len(),
                stored_at: meta.modified()?,
                version: None,
                reader: Box::pin(file),
            }))
        })
    }

    fn remove(&self, id: PayloadId) -> StorageFuture<'_, bool> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path_of(id)).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn sweep(&self, cutoff: SystemTime) -> StorageFuture<'_, usize> {
        let dir = self.dir.clone();
        let active = Arc::clone(&self.active);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || sweep_dir(&dir, Some(cutoff), &active))
                .await
                .map_err(io::Error::other)?
        })
    }

    fn class(&self, name: &str) -> StorageFuture<'_, Arc<dyn PayloadStorage>> {
        let dir = self.dir.join(name);
        Box::pin(async move {
            let storage = tokio::task::spawn_blocking(move || FolderStorage::open(&dir))
                .await
                .map_err(io::Error::other)??;
            Ok(Arc::new(storage) as Arc<dyn PayloadStorage>)
        })
    }
}

/// Removes payloads older than `cutoff` (none if `None`) and temp files not in `active`.
fn sweep_dir(
    dir: &Path,
    cutoff: Option<SystemTime>,
    active: &Mutex<HashSet<String>>,
) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let remove = if name.starts_with(TEMP_PREFIX) {
            !lock(active).contains(&name)
        } else if PayloadId::parse(&name).is_some() {
            match (cutoff, entry.metadata().and_then(|m| m.modified())) {
                (Some(cutoff), Ok(stored_at)) => stored_at < cutoff,
                (Some(_), Err(e)) if e.kind() == io::ErrorKind::NotFound => false,
                (Some(_), Err(e)) => return Err(e),
                (None, _) => false,
            }
        } else {
            false
        };
        if remove {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Owns an upload's temp file: unless disarmed, removes it and unregisters its name.
struct TempGuard {
    path: PathBuf,
    name: String,
    active: Arc<Mutex<HashSet<String>>>,
    armed: bool,
}

impl TempGuard {
    /// Unregisters the name without touching the file (it was renamed or never created).
    fn forget_file(&mut self) {
        self.armed = false;
        lock(&self.active).remove(&self.name);
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove partial upload");
                }
            }
            lock(&self.active).remove(&self.name);
        }
    }
}

struct FolderSink {
    file: Option<BufWriter<tokio::fs::File>>,
    final_path: PathBuf,
    guard: TempGuard,
}

impl PayloadSink for FolderSink {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            match self.file.as_mut() {
                Some(file) => file.write_all(chunk).await,
                None => Err(io::Error::other("upload already finished")),
            }
        })
    }

    fn commit(mut self: Box<Self>) -> StorageFuture<'static, SystemTime> {
        Box::pin(async move {
            let mut file = self
                .file
                .take()
                .ok_or_else(|| io::Error::other("upload already finished"))?;
            file.flush().await?;
            let file = file.into_inner();
            file.sync_all().await?;
            let file = file.into_std().await;
            let temp = self.guard.path.clone();
            let final_path = self.final_path.clone();
            let stored_at = tokio::task::spawn_blocking(move || -> io::Result<SystemTime> {
                file.set_modified(SystemTime::now())?;
                let stored_at = file.metadata()?.modified()?;
                drop(file);
                std::fs::rename(&temp, &final_path)?;
                Ok(stored_at)
            })
            .await
            .map_err(io::Error::other)??;
            self.guard.forget_file();
            Ok(stored_at)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_strictly() {
        let id = PayloadId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), ID_HEX_LEN);
        assert_eq!(PayloadId::parse(&text), Some(id));
        assert_eq!(PayloadId::parse(&text.to_uppercase()), None);
        assert_eq!(PayloadId::parse(&text[1..]), None);
        assert_eq!(PayloadId::parse(&format!("{text}0")), None);
        assert_eq!(PayloadId::parse("../../etc/passwd"), None);
        assert_eq!(PayloadId::parse(&"g".repeat(ID_HEX_LEN)), None);
        assert_eq!(PayloadId::parse(&format!("..{}", &text[2..])), None);
        assert_eq!(PayloadId::parse(""), None);
        assert_ne!(PayloadId::random().unwrap(), id);
    }
}
