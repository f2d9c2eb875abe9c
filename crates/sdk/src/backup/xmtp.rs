//! libxmtp archives: read for migration (see the ferry-xmtp crate). Wired up below.

use std::fs::File;

use ferry_archive::ArchiveKey;
use ferry_store::Store;

use super::{ArchiveMetadata, Control, ImportReport, VerifyReport};
use crate::{Error, Result};

pub(crate) fn metadata(_f: File, _key: &ArchiveKey, _len: u64) -> Result<ArchiveMetadata> {
    Err(Error::InvalidArchive(
        "xmtp archives are not supported yet".into(),
    ))
}

pub(crate) fn verify(_f: File, _key: &ArchiveKey, _len: u64) -> Result<VerifyReport> {
    Err(Error::InvalidArchive(
        "xmtp archives are not supported yet".into(),
    ))
}

pub(crate) fn import(
    _s: &mut Store,
    _f: File,
    _key: &ArchiveKey,
    _len: u64,
    _ctl: &Control,
) -> Result<ImportReport> {
    Err(Error::InvalidArchive(
        "xmtp archives are not supported yet".into(),
    ))
}

pub(crate) fn looks_like_xmtp(head: &[u8]) -> bool {
    head.len() >= 18 && head[0..2] == [0, 0] && head[14..18] == [0x28, 0xb5, 0x2f, 0xfd]
}
