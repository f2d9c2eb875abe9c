//! Archives as bytes in and bytes out, for apps that keep them in memory or hand them to
//! their own storage (XMTP's browser SDK has the same calls). The archive passes through a
//! private temporary folder (mode 0700, removed when the call ends) that only ever holds its
//! encrypted form; the format's reader and writer work on files.

use std::path::PathBuf;

use super::Client;
use crate::archive::{ArchiveMetadata, ArchiveOptions, Control, ImportReport};
use crate::{ArchiveKey, Error, Result};

/// A private scratch folder and the archive path in it.
fn scratch() -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-archive-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("archive.ferry");
    Ok((dir, path))
}

impl Client {
    /// [`Client::create_archive`], returning the archive's bytes instead of writing a file of
    /// the caller's.
    ///
    /// ```
    /// # include!("../../doctests/net.rs");
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() -> ferry_sdk::Result<()> {
    /// # let net = Net::start();
    /// # let alice = net.client("alice").await?;
    /// use ferry_sdk::archive::{ArchiveOptions, Control};
    /// use ferry_sdk::ArchiveKey;
    ///
    /// let key = ArchiveKey::generate();
    /// let bytes = alice
    ///     .create_archive_bytes(&key, &ArchiveOptions::default(), &Control::new())
    ///     .await?;
    /// let meta = alice.archive_metadata_bytes(&bytes, &key).await?;
    /// assert_eq!(meta.file_bytes, bytes.len() as u64);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_archive_bytes(
        &self,
        key: &ArchiveKey,
        options: &ArchiveOptions,
        ctl: &Control,
    ) -> Result<Vec<u8>> {
        let (dir, path) = scratch()?;
        self.create_archive(&path, key, options, ctl).await?;
        let bytes = self
            .off_executor(move |_| std::fs::read(&path).map_err(|e| Error::io(&path, e)))
            .await?;
        drop(dir);
        Ok(bytes)
    }

    /// [`Client::archive_metadata`] of an archive held in memory.
    pub async fn archive_metadata_bytes(
        &self,
        archive: &[u8],
        key: &ArchiveKey,
    ) -> Result<ArchiveMetadata> {
        let (_dir, path) = self.stage(archive).await?;
        self.archive_metadata(&path, key).await
    }

    /// [`Client::import_archive`] of an archive held in memory: additive, all or nothing.
    pub async fn import_archive_bytes(
        &self,
        archive: &[u8],
        key: &ArchiveKey,
        ctl: &Control,
    ) -> Result<ImportReport> {
        let (_dir, path) = self.stage(archive).await?;
        self.import_archive(&path, key, ctl).await
    }

    /// Writes `archive` into a fresh scratch folder (kept while the returned guard lives).
    async fn stage(&self, archive: &[u8]) -> Result<(tempfile::TempDir, PathBuf)> {
        let (dir, path) = scratch()?;
        let (bytes, to) = (archive.to_vec(), path.clone());
        self.off_executor(move |_| std::fs::write(&to, bytes).map_err(|e| Error::io(&to, e)))
            .await?;
        Ok((dir, path))
    }
}
