//! The Ferry SDK.
//!
//! - [`Client`] ([`client`]): one installation of an inbox, online through a delivery node:
//!   MLS conversations (openmls) and DMs, members, consent, sync and streams.
//! - [`backup`]: create an encrypted archive of conversations, messages and consent, read its
//!   metadata, and import it — additively, all or nothing — into another installation.
//!   Archives written by libxmtp are imported too (see [`backup::import_archive`]).
//! - [`backups`]: policies, schedules, retention and destinations around those archives.

pub mod backup;
pub mod backups;
pub mod client;
pub mod dev;
mod error;

pub use client::{
    AccountKey, AvailableArchive, Client, ClientOptions, DeviceSyncEvent, Event, Group,
    GroupOptions, HistoryRequest, HmacKey, Member, MessageQuery, Registration, SyncOptions,
    SyncReport, Worker, HMAC_PERIOD_NS,
};
pub use error::{Error, Result};
pub use ferry_archive::ArchiveKey;
pub use ferry_store as store;

/// The inbox id the account key with this 32-byte secret seed controls.
pub fn inbox_id_of_account_key(seed: &[u8; 32]) -> String {
    ferry_identity::Account::new(ferry_identity::KeyPair::from_seed(seed)).inbox_id()
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
