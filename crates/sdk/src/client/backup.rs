//! Archives on the real client: export this installation's conversations, import an archive
//! of the same inbox. Imported conversations that are new here arrive **restored**: history
//! visible, read-only (`Group is inactive`) until an active member's installation adds this
//! one through MLS; then the welcome turns the same conversation (same id) active.

use std::collections::HashSet;
use std::path::Path;

use ferry_store::{ConversationFilter, Membership};

use super::{Client, Event};
use crate::backup::{
    self, ArchiveFormat, ArchiveMetadata, ArchiveOptions, Control, ImportPreview, ImportReport,
    Origin,
};
use crate::{ArchiveKey, Error, Result};

impl Client {
    /// Writes an archive of this installation's conversations, messages and consent (see
    /// [`backup::create_archive`]); it records this inbox and installation as its origin. It
    /// never holds MLS or installation secrets.
    pub fn create_archive(
        &self,
        path: &Path,
        key: &ArchiveKey,
        options: &ArchiveOptions,
        ctl: &Control,
    ) -> Result<ArchiveMetadata> {
        let origin = Origin {
            inbox_id: self.inner.inbox_id.clone(),
            installation_id: self.inner.installation_id.to_vec(),
        };
        backup::create_archive(&self.store(), path, key, options, &origin, ctl)
    }

    /// An archive's metadata (header and first chunk only).
    pub fn archive_metadata(&self, path: &Path, key: &ArchiveKey) -> Result<ArchiveMetadata> {
        backup::archive_metadata(path, key)
    }

    /// Imports an archive of this inbox: additive, all or nothing, duplicates ignored.
    /// Conversations new here arrive restored and are reported once on the conversation
    /// stream. A Ferry archive made by another inbox is refused before anything is written:
    /// its conversations could never become active here. (libxmtp archives, read for
    /// migration, are taken as they are: their conversations stay restored history.)
    pub fn import_archive(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
    ) -> Result<ImportReport> {
        self.refuse_foreign(path, key)?;
        let all = ConversationFilter {
            include_sync: true,
            ..Default::default()
        };
        let (report, fresh) = {
            let mut store = self.store();
            let before: HashSet<Vec<u8>> = store
                .conversations(&all)?
                .into_iter()
                .map(|c| c.id)
                .collect();
            let report = backup::import_archive(&mut store, path, key, ctl)?;
            let fresh: Vec<_> = store
                .conversations(&all)?
                .into_iter()
                .filter(|c| !before.contains(&c.id) && c.membership == Membership::Restored)
                .collect();
            (report, fresh)
        };
        self.emit(fresh.into_iter().map(Event::Conversation).collect());
        Ok(report)
    }

    /// What [`Client::import_archive`] would do with this archive, without writing anything
    /// (see [`backup::import_archive_preview`]): the same totals the import would report, per
    /// conversation and in total. Another inbox's archive is refused as the import refuses it.
    pub fn import_archive_preview(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
    ) -> Result<ImportPreview> {
        self.refuse_foreign(path, key)?;
        backup::import_archive_preview(&self.store(), path, key, ctl)
    }

    /// A Ferry archive made by another inbox is refused before anything is read further.
    fn refuse_foreign(&self, path: &Path, key: &ArchiveKey) -> Result<()> {
        let meta = backup::archive_metadata(path, key)?;
        if meta.format == ArchiveFormat::Ferry
            && !meta.inbox_id.is_empty()
            && meta.inbox_id != self.inner.inbox_id
        {
            return Err(Error::ForeignArchive {
                archive_inbox: meta.inbox_id,
                inbox: self.inner.inbox_id.clone(),
            });
        }
        Ok(())
    }
}
