//! Remote attachments' encrypted files held in the store, by digest: what this installation
//! sent or fetched, and what an archive with element `attachments` brought. Callers check the
//! digest; the store keeps the bytes it is given under the name it is given.

use rusqlite::{params, OptionalExtension};

use crate::{Result, Snapshot, Store};

pub(crate) const PUT: &str =
    "INSERT OR IGNORE INTO attachment_files (digest, data) VALUES (?1, ?2)";
const GET: &str = "SELECT data FROM attachment_files WHERE digest = ?1";
const HAS: &str = "SELECT EXISTS(SELECT 1 FROM attachment_files WHERE digest = ?1)";

impl Store {
    /// Keeps an encrypted file under its digest; false when one is already kept.
    pub fn put_attachment_file(&self, digest: &str, data: &[u8]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(PUT)?
            .execute(params![digest, data])?
            > 0)
    }

    /// The encrypted file kept under this digest.
    pub fn attachment_file(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(GET)?
            .query_row([digest], |r| r.get(0))
            .optional()?)
    }

    /// Whether a file is kept under this digest.
    pub fn has_attachment_file(&self, digest: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(HAS)?
            .query_row([digest], |r| r.get(0))?)
    }
}

impl Snapshot<'_> {
    /// The encrypted file kept under this digest, as of the snapshot.
    pub fn attachment_file(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tx
            .prepare_cached(GET)?
            .query_row([digest], |r| r.get(0))
            .optional()?)
    }

    /// The length of the file kept under this digest, as of the snapshot.
    pub fn attachment_file_len(&self, digest: &str) -> Result<Option<u64>> {
        Ok(self
            .tx
            .prepare_cached("SELECT length(data) FROM attachment_files WHERE digest = ?1")?
            .query_row([digest], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|n| n as u64))
    }
}
