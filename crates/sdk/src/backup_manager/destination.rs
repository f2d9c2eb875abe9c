//! Where backups are kept: the [`Destination`] trait and a local folder.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// One object in a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The object's name (flat: no `/`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the destination last wrote the object (ns since the epoch), when it says.
    pub modified_ns: Option<i64>,
}

/// A local file holding one object's bytes: the object itself (local folders) or a temporary
/// copy that is deleted when this is dropped.
pub enum Fetched {
    /// The object's own file (a local folder's).
    Local(PathBuf),
    /// A downloaded copy, deleted on drop.
    Temp(tempfile::TempPath),
}

impl Fetched {
    /// Where the bytes are.
    pub fn path(&self) -> &Path {
        match self {
            Fetched::Local(p) => p,
            Fetched::Temp(t) => t,
        }
    }
}

/// A place that keeps backup archives by name: a folder, a bucket.
///
/// Names are flat (no `/`); [`check_name`] says which are allowed. `put` must make an object
/// appear whole or not at all. Implementations are blocking; call them off any async runtime.
pub trait Destination: Send + Sync {
    /// A short description for reports ("folder /x", "s3://bucket/prefix").
    fn describe(&self) -> String;
    /// Stores the local file `from` under `name`, replacing any object of that name.
    fn put(&self, name: &str, from: &Path) -> Result<()>;
    /// Copies the object `name` into the local file `to` (created or truncated).
    fn get(&self, name: &str, to: &Path) -> Result<()>;
    /// The objects, with their sizes, in no particular order.
    fn list(&self) -> Result<Vec<Entry>>;
    /// Deletes the object `name`.
    fn delete(&self, name: &str) -> Result<()>;
    /// A local path with the object's bytes: by default a temporary copy made with `get`.
    fn fetch(&self, name: &str) -> Result<Fetched> {
        let tmp = tempfile::Builder::new()
            .prefix(".ferry-fetch-")
            .tempfile()
            .map_err(|e| Error::destination("fetch", name, e))?
            .into_temp_path();
        self.get(name, &tmp)?;
        Ok(Fetched::Temp(tmp))
    }
    /// The object's first `len` bytes (fewer when it is shorter): enough to read an archive's
    /// plaintext header without fetching the whole object. By default through [`fetch`].
    ///
    /// [`fetch`]: Destination::fetch
    fn read_prefix(&self, name: &str, len: u64) -> Result<Vec<u8>> {
        let fetched = self.fetch(name)?;
        read_head(fetched.path(), len).map_err(|e| Error::destination("read", name, e))
    }
    /// A folder on the same file system where an archive can be written before `put`, so a
    /// local destination can rename instead of copying. `None` means the system temp folder.
    fn staging_dir(&self) -> Option<PathBuf> {
        None
    }
}

impl<D: Destination + ?Sized> Destination for Box<D> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn put(&self, name: &str, from: &Path) -> Result<()> {
        (**self).put(name, from)
    }
    fn get(&self, name: &str, to: &Path) -> Result<()> {
        (**self).get(name, to)
    }
    fn list(&self) -> Result<Vec<Entry>> {
        (**self).list()
    }
    fn delete(&self, name: &str) -> Result<()> {
        (**self).delete(name)
    }
    fn fetch(&self, name: &str) -> Result<Fetched> {
        (**self).fetch(name)
    }
    fn read_prefix(&self, name: &str, len: u64) -> Result<Vec<u8>> {
        (**self).read_prefix(name, len)
    }
    fn staging_dir(&self) -> Option<PathBuf> {
        (**self).staging_dir()
    }
}

/// The first `len` bytes of a local file (fewer when it is shorter).
pub(crate) fn read_head(path: &Path, len: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(len).read_to_end(&mut out)?;
    Ok(out)
}

/// Object names a destination accepts: 1..=200 characters of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.` (so no paths, no hidden or temporary files).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// Backups in a local folder (the default destination). Writes go to a temporary file in the
/// folder, are fsynced and renamed, so a name holds a whole archive or nothing.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    dir: PathBuf,
}

impl LocalFolder {
    /// The folder is created (mode 0700 on Unix) on the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalFolder { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::destination("create folder", &self.dir.display().to_string(), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    fn sync_dir(&self) {
        #[cfg(unix)]
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }
}

impl Destination for LocalFolder {
    fn describe(&self) -> String {
        format!("folder {}", self.dir.display())
    }

    fn put(&self, name: &str, from: &Path) -> Result<()> {
        check_name(name)?;
        self.ensure_dir()?;
        let err = |e: std::io::Error| Error::destination("put", name, e);
        let target = self.dir.join(name);
        // On the same file system (an archive staged in this folder), a hard link to a fresh
        // name and a rename make the object appear whole without copying; `from` was fsynced
        // by whoever wrote it.
        let link = self.dir.join(format!(
            ".ferry-upload-{}-{}.tmp",
            std::process::id(),
            crate::now_ns()
        ));
        if std::fs::hard_link(from, &link).is_ok() {
            if let Err(e) = std::fs::rename(&link, &target) {
                let _ = std::fs::remove_file(&link);
                return Err(err(e));
            }
            self.sync_dir();
            return Ok(());
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".ferry-upload-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(err)?;
        let mut src = File::open(from).map_err(err)?;
        std::io::copy(&mut src, tmp.as_file_mut()).map_err(err)?;
        tmp.as_file_mut().flush().map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&target)
            .map_err(|e| Error::destination("put", name, e.error))?;
        self.sync_dir();
        Ok(())
    }

    fn get(&self, name: &str, to: &Path) -> Result<()> {
        check_name(name)?;
        std::fs::copy(self.dir.join(name), to).map_err(|e| Error::destination("get", name, e))?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<Entry>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::destination(
                    "list",
                    &self.dir.display().to_string(),
                    e,
                ))
            }
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::destination("list", "", e))?;
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            let meta = ent
                .metadata()
                .map_err(|e| Error::destination("list", &name, e))?;
            if meta.is_file() {
                let modified_ns = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_nanos()).ok());
                out.push(Entry {
                    name,
                    size: meta.len(),
                    modified_ns,
                });
            }
        }
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        std::fs::remove_file(self.dir.join(name))
            .map_err(|e| Error::destination("delete", name, e))?;
        self.sync_dir();
        Ok(())
    }

    fn fetch(&self, name: &str) -> Result<Fetched> {
        check_name(name)?;
        Ok(Fetched::Local(self.dir.join(name)))
    }

    fn read_prefix(&self, name: &str, len: u64) -> Result<Vec<u8>> {
        check_name(name)?;
        read_head(&self.dir.join(name), len).map_err(|e| Error::destination("read", name, e))
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        self.ensure_dir().ok()?;
        Some(self.dir.clone())
    }
}
