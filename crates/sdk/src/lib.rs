//! The Ferry SDK.
//!
//! Today it holds an installation's local state ([`ferry_store::Store`]) and archive-based
//! backups ([`backup`]): create an encrypted archive of conversations, messages and consent,
//! read its metadata, and import it — additively, all or nothing — into another installation.
//! Archives written by libxmtp are imported too (see [`backup::import_archive`]).

pub mod backup;
pub mod backups;
pub mod dev;
mod error;

pub use error::{Error, Result};
pub use ferry_archive::ArchiveKey;
pub use ferry_store as store;

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
