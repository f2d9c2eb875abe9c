//! Archives on the real client: export this installation's conversations, import an archive
//! of the same inbox. Imported conversations that are new here arrive **restored**: history
//! visible, read-only (`Group is inactive`) until an active member's installation adds this
//! one through MLS; then the welcome turns the same conversation (same id) active.
//!
//! Every archive a client makes is signed by its installation key (format 1.1). Reading or
//! importing one, a client that can reach its node also looks the signer up in the inbox's
//! verified identity log: `active`, `revoked` (reported, not refused) or `unknown`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use ferry_archive::{ArchiveSigner, SIGNATURE_LEN};
use ferry_mls::{Identity, Provider};
use ferry_store::{ConversationFilter, Membership, Store};

use super::{credential, Client, Event, S_INBOX, S_INSTALLATION};
use crate::backup::{
    self, ArchiveFormat, ArchiveMetadata, ArchiveOptions, Control, ImportPreview, ImportReport,
    InstallationStatus, Origin, SignatureStatus,
};
use crate::{ArchiveKey, Error, Result};

/// Signs archives with an installation's key, which stays in its MLS identity.
struct InstallationSigner {
    inbox_id: String,
    installation_id: [u8; 32],
    identity: Identity,
}

impl ArchiveSigner for InstallationSigner {
    fn inbox_id(&self) -> &str {
        &self.inbox_id
    }

    fn installation_id(&self) -> [u8; 32] {
        self.installation_id
    }

    fn sign(&self, message: &[u8]) -> std::result::Result<[u8; SIGNATURE_LEN], String> {
        let sig = self.identity.sign(message).map_err(|e| e.to_string())?;
        sig.try_into()
            .map_err(|_| "the installation key made a signature of the wrong length".into())
    }
}

/// The signer of the installation `store` holds, if it holds a registered one (settings
/// `inbox_id` and `installation_id`, and the installation's key in its MLS tables). A store
/// without an installation has none; one that names an installation whose key is missing is
/// an error.
pub(crate) fn installation_signer(store: &Store) -> Result<Option<Arc<dyn ArchiveSigner>>> {
    let (Some(installation), Some(inbox)) =
        (store.setting(S_INSTALLATION)?, store.setting(S_INBOX)?)
    else {
        return Ok(None);
    };
    let installation_id: [u8; 32] = installation
        .try_into()
        .map_err(|_| Error::MissingSignatureKey)?;
    let inbox_id = String::from_utf8_lossy(&inbox).into_owned();
    let identity = Identity::load(
        &Provider::new(store.conn()),
        &credential(&inbox_id, &installation_id),
        &installation_id,
    )?
    .ok_or(Error::MissingSignatureKey)?;
    Ok(Some(Arc::new(InstallationSigner {
        inbox_id,
        installation_id,
        identity,
    })))
}

impl Client {
    /// Writes an archive of this installation's conversations, messages and consent (see
    /// [`backup::create_archive`]), signed by this installation (format 1.1); it records this
    /// inbox and installation as its origin. It never holds MLS or installation secrets.
    pub fn create_archive(
        &self,
        path: &Path,
        key: &ArchiveKey,
        options: &ArchiveOptions,
        ctl: &Control,
    ) -> Result<ArchiveMetadata> {
        let identity = {
            let store = self.store();
            self.mls_identity(&Provider::new(store.conn()))?
        };
        let origin = Origin {
            inbox_id: self.inner.inbox_id.clone(),
            installation_id: self.inner.installation_id.to_vec(),
            signer: Some(Arc::new(InstallationSigner {
                inbox_id: self.inner.inbox_id.clone(),
                installation_id: self.inner.installation_id,
                identity,
            })),
        };
        backup::create_archive(&self.store(), path, key, options, &origin, ctl)
    }

    /// An archive's metadata and signature (see [`backup::archive_metadata`]); for a valid
    /// signature, where its installation stands in its inbox's identity log, when the node can
    /// be asked.
    pub fn archive_metadata(&self, path: &Path, key: &ArchiveKey) -> Result<ArchiveMetadata> {
        let mut m = backup::archive_metadata(path, key)?;
        if m.signature == SignatureStatus::Valid {
            if let Some(s) = &m.signed_by {
                m.installation_status = self.installation_status(&s.inbox_id, &s.installation_id);
            }
        }
        Ok(m)
    }

    /// Imports an archive of this inbox: additive, all or nothing, duplicates ignored.
    /// Conversations new here arrive restored and are reported once on the conversation
    /// stream. A Ferry archive made by another inbox is refused before anything is written:
    /// its conversations could never become active here. (libxmtp archives, read for
    /// migration, are taken as they are: their conversations stay restored history.) A signed
    /// archive whose signature fails writes nothing; the report names the signer and, when the
    /// node can be asked, where it stands in the inbox's log (a revoked installation's archive
    /// is imported and reported as `revoked`).
    pub fn import_archive(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
    ) -> Result<ImportReport> {
        self.import_checked(path, key, ctl, None)
    }

    /// [`Client::import_archive`] of an archive that must be signed by installation `signer`
    /// (hex; history sync: the installation that sent the reply); anything else is refused
    /// before a row is written.
    pub(crate) fn import_archive_signed_by(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
        signer: &str,
    ) -> Result<ImportReport> {
        self.import_checked(path, key, ctl, Some(signer))
    }

    fn import_checked(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
        signer: Option<&str>,
    ) -> Result<ImportReport> {
        self.refuse_foreign(path, key, signer)?;
        let all = ConversationFilter {
            include_sync: true,
            ..Default::default()
        };
        let (mut report, fresh) = {
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
        if let Some(s) = &report.signed_by {
            report.installation_status = self.installation_status(&s.inbox_id, &s.installation_id);
        }
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
        self.refuse_foreign(path, key, None)?;
        let mut p = backup::import_archive_preview(&self.store(), path, key, ctl)?;
        if let Some(s) = &p.totals.signed_by {
            p.totals.installation_status =
                self.installation_status(&s.inbox_id, &s.installation_id);
        }
        Ok(p)
    }

    /// Before anything is read further (from the header and the metadata chunk): a Ferry
    /// archive made by another inbox is refused, and so, when `signer` (hex) is given, is one
    /// that does not name that installation as its signer. (The signature itself is verified
    /// by the import, before it commits.)
    fn refuse_foreign(&self, path: &Path, key: &ArchiveKey, signer: Option<&str>) -> Result<()> {
        let meta = backup::archive_metadata_unchecked(path, key)?;
        if meta.format == ArchiveFormat::Ferry
            && !meta.inbox_id.is_empty()
            && meta.inbox_id != self.inner.inbox_id
        {
            return Err(Error::ForeignArchive {
                archive_inbox: meta.inbox_id,
                inbox: self.inner.inbox_id.clone(),
            });
        }
        if let Some(expected) = signer {
            let expected = expected.to_lowercase();
            let found = match &meta.signed_by {
                Some(s) if s.installation_id == expected => return Ok(()),
                Some(s) => format!("signed by installation {}", s.installation_id),
                None => "unsigned".to_string(),
            };
            return Err(Error::ArchiveNotSignedBySender {
                sender: expected,
                found,
            });
        }
        Ok(())
    }

    /// Where `installation` (hex) stands in `inbox`'s verified identity log; `None` when the
    /// node cannot be asked.
    fn installation_status(&self, inbox: &str, installation: &str) -> Option<InstallationStatus> {
        let installation: [u8; 32] = hex::decode(installation).ok()?.try_into().ok()?;
        match self.refresh_inboxes(&[inbox.to_string()]) {
            Ok(states) => Some(
                match states
                    .get(inbox)
                    .and_then(|s| s.installations.get(&installation))
                {
                    None => InstallationStatus::Unknown,
                    Some(i) if i.revoked_at.is_some() => InstallationStatus::Revoked,
                    Some(_) => InstallationStatus::Active,
                },
            ),
            Err(e) => {
                tracing::info!(error = %e, "archive signer not checked against its identity log");
                None
            }
        }
    }
}
