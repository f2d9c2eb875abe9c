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
use crate::archive::{
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
    /// [`archive::create_archive`]), signed by this installation (format 1.1); it records this
    /// inbox and installation as its origin. It never holds MLS or installation secrets. The
    /// path holds a whole archive or nothing, also when it fails or is cancelled.
    ///
    /// A backup, its metadata, and its import on a new installation of the same inbox:
    ///
    /// ```
    /// # include!("../../doctests/net.rs");
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() -> ferry_sdk::Result<()> {
    /// # let net = Net::start();
    /// # let (dir, node_url) = (net.dir(), net.node_url());
    /// # let bob = net.client("bob").await?;
    /// # let bob_inbox = bob.inbox_id().clone();
    /// use ferry_sdk::archive::{ArchiveOptions, Control, SignatureStatus};
    /// use ferry_sdk::{AccountKey, ArchiveKey, Client, ClientOptions};
    ///
    /// let options = ClientOptions::new(dir.join("phone"), &node_url, AccountKey::New);
    /// let registration = Client::create(options).await?;
    /// let (phone, account_key) = (registration.client, registration.account_key.unwrap());
    /// let dm = phone.conversations().find_or_create_dm(&bob_inbox).await?;
    /// dm.send_text("see you at eight").await?;
    ///
    /// // Everything, sealed with a fresh random key (keep it apart from the file).
    /// let key = ArchiveKey::generate();
    /// let path = dir.join("backup.ferry");
    /// let made = phone
    ///     .create_archive(&path, &key, &ArchiveOptions::default(), &Control::new())
    ///     .await?;
    /// assert!(made.message_count.unwrap_or(0) >= 1);
    ///
    /// // What it holds and who made it, read with the key.
    /// let metadata = phone.archive_metadata(&path, &key).await?;
    /// assert_eq!(metadata.message_count, made.message_count);
    /// assert_eq!(metadata.signature, SignatureStatus::Valid);
    /// assert_eq!(metadata.inbox_id, phone.inbox_id());
    ///
    /// // A new installation of the inbox imports it: the DM is back, read-only until a
    /// // member's installation adds this one.
    /// let existing = AccountKey::Existing(account_key);
    /// let options = ClientOptions::new(dir.join("tablet"), &node_url, existing);
    /// let tablet = Client::create(options).await?.client;
    /// let report = tablet.import_archive(&path, &key, &Control::new()).await?;
    /// assert_eq!(report.conversations_added, 1);
    /// assert_eq!(Some(report.messages_imported), made.message_count);
    /// let restored = tablet.conversations().get_dm_by_inbox_id(&bob_inbox)?.expect("the DM");
    /// assert!(!restored.is_active()?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_archive(
        &self,
        path: &Path,
        key: &ArchiveKey,
        options: &ArchiveOptions,
        ctl: &Control,
    ) -> Result<ArchiveMetadata> {
        if options
            .elements
            .contains(&archive::ArchiveElement::Attachments)
        {
            self.hold_attachment_files(options).await?;
        }
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
        let (path, key, options, ctl) = (
            path.to_path_buf(),
            key.clone(),
            options.clone(),
            ctl.clone(),
        );
        self.off_executor(move |c| {
            archive::create_archive(&c.store(), &path, &key, &options, &origin, &ctl)
        })
        .await
    }

    /// Downloads (and keeps) the encrypted files of the remote attachments an archive with
    /// `options` selects that this installation does not hold yet, so the archive can carry
    /// them. A file that cannot be had (the store dropped it, the server is down) is left
    /// out of the archive and logged; returns how many were missing. [`Client::create_archive`]
    /// calls it when `options` name element `attachments`.
    pub async fn hold_attachment_files(&self, options: &ArchiveOptions) -> Result<u64> {
        let wanted = archive::selected_remote_attachments(&self.store(), options)?;
        let mut missing = 0;
        for remote in wanted {
            if self.holds_attachment_file(&remote)? {
                continue;
            }
            if let Err(e) = self.fetch_remote_attachment(&remote).await {
                tracing::warn!(url = %remote.url, error = %e, "attachment file not carried");
                missing += 1;
            }
        }
        Ok(missing)
    }

    /// Runs long, blocking work (an archive's reading, writing, hashing; a file's upload or
    /// download) on tokio's blocking pool, off the async executor threads.
    pub(crate) async fn off_executor<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let client = self.clone();
        tokio::task::spawn_blocking(move || work(&client))
            .await
            .map_err(|e| Error::InvalidArgument(format!("background task failed: {e}")))?
    }

    /// An archive's metadata and signature (see [`archive::archive_metadata`]); for a valid
    /// signature, where its installation stands in its inbox's identity log, when the node can
    /// be asked. Fails with a wrong key or a damaged header; an invalid signature is reported,
    /// not returned as an error. Example: [`Client::create_archive`].
    pub async fn archive_metadata(&self, path: &Path, key: &ArchiveKey) -> Result<ArchiveMetadata> {
        let (p, k) = (path.to_path_buf(), key.clone());
        let mut m = self
            .off_executor(move |_| archive::archive_metadata(&p, &k))
            .await?;
        if m.signature == SignatureStatus::Valid {
            if let Some(s) = &m.signed_by {
                m.installation_status = self
                    .installation_status(&s.inbox_id, &s.installation_id)
                    .await;
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
    /// is imported and reported as `revoked`). Example: [`Client::create_archive`].
    pub async fn import_archive(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
    ) -> Result<ImportReport> {
        self.import_checked(path, key, ctl, None).await
    }

    /// [`Client::import_archive`] of an archive that must be signed by installation `signer`
    /// (hex; history sync: the installation that sent the reply); anything else is refused
    /// before a row is written.
    pub(crate) async fn import_archive_signed_by(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
        signer: &str,
    ) -> Result<ImportReport> {
        self.import_checked(path, key, ctl, Some(signer)).await
    }

    async fn import_checked(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
        signer: Option<&str>,
    ) -> Result<ImportReport> {
        self.refuse_foreign(path, key, signer).await?;
        let all = ConversationFilter {
            include_sync: true,
            ..Default::default()
        };
        let (path, key, ctl) = (path.to_path_buf(), key.clone(), ctl.clone());
        let (mut report, fresh) = self
            .off_executor(move |c| {
                let (path, key, ctl) = (&path, &key, &ctl);
                let mut store = c.store();
                let before: HashSet<Vec<u8>> = store
                    .conversations(&all)?
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
                let report = archive::import_archive(&mut store, path, key, ctl)?;
                let fresh: Vec<_> = store
                    .conversations(&all)?
                    .into_iter()
                    .filter(|c| !before.contains(&c.id) && c.membership == Membership::Restored)
                    .collect();
                Ok((report, fresh))
            })
            .await?;
        if let Some(s) = &report.signed_by {
            report.installation_status = self
                .installation_status(&s.inbox_id, &s.installation_id)
                .await;
        }
        self.emit(fresh.into_iter().map(Event::Conversation).collect());
        Ok(report)
    }

    /// What [`Client::import_archive`] would do with this archive, without writing anything
    /// (see [`archive::import_archive_preview`]): the same totals the import would report, per
    /// conversation and in total. Another inbox's archive is refused as the import refuses it.
    pub async fn import_archive_preview(
        &self,
        path: &Path,
        key: &ArchiveKey,
        ctl: &Control,
    ) -> Result<ImportPreview> {
        self.refuse_foreign(path, key, None).await?;
        let (path, key, ctl) = (path.to_path_buf(), key.clone(), ctl.clone());
        let mut p = self
            .off_executor(move |c| archive::import_archive_preview(&c.store(), &path, &key, &ctl))
            .await?;
        if let Some(s) = &p.totals.signed_by {
            p.totals.installation_status = self
                .installation_status(&s.inbox_id, &s.installation_id)
                .await;
        }
        Ok(p)
    }

    /// Before anything is read further (from the header and the metadata chunk): a Ferry
    /// archive made by another inbox is refused, and so, when `signer` (hex) is given, is one
    /// that does not name that installation as its signer. (The signature itself is verified
    /// by the import, before it commits.)
    async fn refuse_foreign(
        &self,
        path: &Path,
        key: &ArchiveKey,
        signer: Option<&str>,
    ) -> Result<()> {
        let meta = archive::archive_metadata_unchecked(path, key)?;
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
    async fn installation_status(
        &self,
        inbox: &str,
        installation: &str,
    ) -> Option<InstallationStatus> {
        let installation: [u8; 32] = hex::decode(installation).ok()?.try_into().ok()?;
        match self.refresh_inboxes(&[inbox.to_string()]).await {
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
