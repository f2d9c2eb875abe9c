//! Typed content: replies, reactions, read receipts, attachments (inline and remote), and
//! any app's own types, over [`ferry_content`] (re-exported here).
//!
//! Sending: [`Group::send_content`] takes any [`ContentCodec`]'s value; the shorthands
//! [`Group::send_reply`], [`Group::send_reaction`], [`Group::send_read_receipt`],
//! [`Group::send_attachment`] and [`Group::send_remote_attachment`] cover the built-in types.
//! Reading: [`content_of`] decodes a stored message, [`reactions`] sums up the reactions of a
//! conversation's messages. A stored message keeps its content type, bytes, parameters,
//! fallback and reference as they arrived, so archives and history sync carry every type,
//! known or not.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_proto::message::{ContentTypeId as WireTypeId, Envelope};
use ferry_store::{ContentType, Message, MessageKind};
use ferry_transport::HistoryClient;

pub use ferry_content::*;

use crate::client::Group;
use crate::{Error, Result};

/// The envelope that carries `encoded` (with the referenced message's id for replies and
/// reactions, so every store can find them without decoding).
pub fn envelope_of(encoded: &EncodedContent, sent_at_ns: i64) -> Envelope {
    let reference_id = Content::decode(encoded).reference().map(<[u8]>::to_vec);
    Envelope {
        content_type: Some(WireTypeId {
            authority: encoded.content_type.authority.clone(),
            type_id: encoded.content_type.type_id.clone(),
            major: encoded.content_type.major,
            minor: encoded.content_type.minor,
        }),
        content: encoded.content.clone(),
        fallback: encoded.fallback.clone(),
        sent_at_ns,
        reference_id,
        parameters: encoded.parameters_bytes(),
        idempotency_key: None,
    }
}

/// A stored message's content as it was sent.
pub fn encoded_of(m: &Message) -> EncodedContent {
    let ContentType {
        authority,
        type_id,
        major,
        minor,
    } = m.content_type.clone();
    EncodedContent {
        content_type: ContentTypeId {
            authority,
            type_id,
            major,
            minor,
        },
        parameters: m
            .parameters
            .as_deref()
            .and_then(|p| EncodedContent::parameters_from_bytes(p).ok())
            .unwrap_or_default(),
        fallback: m.fallback.clone(),
        content: m.content.clone(),
    }
}

/// A stored message's content, decoded by the built-in codecs ([`Content::Unknown`] for other
/// types: show [`Message::text`], which falls back to the sender's fallback text).
pub fn content_of(m: &Message) -> Content {
    Content::decode_stored(&encoded_of(m), m.reference_id.as_deref())
}

/// One emoji (or shortcode) on a message and who has it on now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    /// The emoji, shortcode or custom value.
    pub content: String,
    /// Inbox ids, in the order their reaction arrived.
    pub inboxes: Vec<String>,
}

/// The reactions on each message of `messages` (keyed by the message id), as they stand: per
/// inbox and content, the last of its added/removed reactions (in the given order) counts.
pub fn reactions(messages: &[Message]) -> BTreeMap<Vec<u8>, Vec<ReactionCount>> {
    let mut state: BTreeMap<Vec<u8>, Vec<(String, String, bool)>> = BTreeMap::new();
    for m in messages {
        if m.kind != MessageKind::Application {
            continue;
        }
        let Content::Reaction(r) = content_of(m) else {
            continue;
        };
        let on = r.action == ReactionAction::Added;
        let entries = state.entry(r.reference).or_default();
        match entries
            .iter_mut()
            .find(|(inbox, content, _)| *inbox == m.sender_inbox_id && *content == r.content)
        {
            Some(e) => e.2 = on,
            None => entries.push((m.sender_inbox_id.clone(), r.content, on)),
        }
    }
    state
        .into_iter()
        .filter_map(|(id, entries)| {
            let mut counts: Vec<ReactionCount> = Vec::new();
            for (inbox, content, _) in entries.into_iter().filter(|e| e.2) {
                match counts.iter_mut().find(|c| c.content == content) {
                    Some(c) => c.inboxes.push(inbox),
                    None => counts.push(ReactionCount {
                        content,
                        inboxes: vec![inbox],
                    }),
                }
            }
            (!counts.is_empty()).then_some((id, counts))
        })
        .collect()
}

/// Where remote attachments' encrypted files go and come from.
pub trait AttachmentStore: Send + Sync {
    /// Uploads the file at `path`; returns its download URL.
    fn upload(&self, path: &Path) -> Result<String>;
    /// Downloads `url` to `dest` (replacing it); returns the bytes written.
    fn download(&self, url: &str, dest: &Path) -> Result<u64>;
}

/// An [`AttachmentStore`] on a history server's HTTP protocol for attachments (`POST
/// /attachments`, `GET /attachments/{id}`: kept 30 days by default, never removed after a
/// download): uploads go to this installation's server, downloads come from whichever
/// server the sender's URL names.
pub struct HttpAttachmentStore {
    uploads: Option<HistoryClient>,
}

impl HttpAttachmentStore {
    /// Uploads to the history server at `base_url`.
    pub fn new(base_url: &str) -> Result<HttpAttachmentStore> {
        Ok(HttpAttachmentStore {
            uploads: Some(HistoryClient::new(base_url)?),
        })
    }

    /// Downloads from the URLs messages name; uploads are refused.
    pub fn downloads_only() -> HttpAttachmentStore {
        HttpAttachmentStore { uploads: None }
    }
}

impl AttachmentStore for HttpAttachmentStore {
    fn upload(&self, path: &Path) -> Result<String> {
        match &self.uploads {
            Some(c) => Ok(c.upload_attachment(path)?),
            None => Err(Error::InvalidArgument(
                "this attachment store only downloads (no history server to upload to)".into(),
            )),
        }
    }

    fn download(&self, url: &str, dest: &Path) -> Result<u64> {
        remote::check_url(url)?;
        let base = url
            .rsplit_once("/attachments/")
            .or_else(|| url.rsplit_once("/files/"))
            .map(|(base, _)| base)
            .ok_or_else(|| Error::InvalidArgument(format!("not a file URL: {url}")))?;
        Ok(HistoryClient::new(base)?.download_to(url, dest)?)
    }
}

/// An [`AttachmentStore`] in object storage (S3 or any S3-compatible service, through
/// `object_store`): each upload is an object named by 128 random bits under a prefix, and the
/// URL the message carries is `{public_base_url}/{name}`, where recipients fetch it (a public
/// bucket or a CDN in front of it: the file is encrypted, its key travels only in the
/// message). Downloads of this store's own URLs go through `object_store` with the store's
/// credentials; uploads and downloads stream between the file and the bucket (large files in
/// parts), in constant memory.
pub struct ObjectAttachmentStore {
    objects: crate::backup_manager::ObjectStoreDestination,
    public_base_url: String,
}

impl ObjectAttachmentStore {
    /// Objects of `objects` (a store and prefix), reachable at `public_base_url`.
    pub fn new(
        objects: crate::backup_manager::ObjectStoreDestination,
        public_base_url: &str,
    ) -> Result<ObjectAttachmentStore> {
        remote::check_url(&format!("{}/x", public_base_url.trim_end_matches('/')))?;
        Ok(ObjectAttachmentStore {
            objects,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
        })
    }

    /// S3-compatible storage at `s3://bucket/prefix` (credentials, region and endpoint from
    /// the `AWS_*` environment, as for backups), reachable at `public_base_url`.
    #[cfg(feature = "s3")]
    pub fn s3(url: &str, public_base_url: &str) -> Result<ObjectAttachmentStore> {
        let objects = crate::backup_manager::ObjectStoreDestination::s3(url).map_err(|e| {
            Error::AttachmentStore {
                op: "open",
                name: url.to_string(),
                message: e.to_string(),
            }
        })?;
        Self::new(objects, public_base_url)
    }

    fn store_error(op: &'static str, name: &str) -> impl Fn(crate::backup_manager::Error) -> Error {
        let name = name.to_string();
        move |e| Error::AttachmentStore {
            op,
            name: name.clone(),
            message: e.to_string(),
        }
    }
}

impl AttachmentStore for ObjectAttachmentStore {
    fn upload(&self, path: &Path) -> Result<String> {
        use crate::backup_manager::Destination as _;
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let name = hex::encode(id);
        self.objects
            .put(&name, path)
            .map_err(Self::store_error("upload", &name))?;
        Ok(format!("{}/{name}", self.public_base_url))
    }

    fn download(&self, url: &str, dest: &Path) -> Result<u64> {
        use crate::backup_manager::Destination as _;
        let name = url
            .strip_prefix(&self.public_base_url)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|n| !n.contains('/'))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{url} is not in this attachment store ({})",
                    self.public_base_url
                ))
            })?;
        self.objects
            .get(name, dest)
            .map_err(Self::store_error("download", url))?;
        std::fs::metadata(dest)
            .map(|m| m.len())
            .map_err(|e| Error::Io {
                path: dest.to_path_buf(),
                source: e,
            })
    }
}

/// Downloads a remote attachment, refuses it unless it matches its digest, and decrypts it.
pub async fn fetch_remote_attachment(
    remote: &RemoteAttachment,
    store: std::sync::Arc<dyn AttachmentStore>,
) -> Result<Attachment> {
    let payload = download_payload(remote, store).await?;
    Ok(remote::open_owned(remote, payload)?)
}

/// Downloads a remote attachment's encrypted file and refuses it unless it matches the
/// message's digest (nothing is decrypted).
pub async fn download_payload(
    remote: &RemoteAttachment,
    store: std::sync::Arc<dyn AttachmentStore>,
) -> Result<Vec<u8>> {
    let remote = remote.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
        let path = dir.path().join("attachment");
        store.download(&remote.url, &path)?;
        let payload = std::fs::read(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        let actual = remote::digest(&payload);
        if actual != remote.content_digest.to_ascii_lowercase() {
            return Err(ContentError::DigestMismatch {
                expected: remote.content_digest.clone(),
                got: actual,
            }
            .into());
        }
        Ok(payload)
    })
    .await
    .map_err(|e| Error::InvalidArgument(format!("download task failed: {e}")))?
}

impl crate::Client {
    /// A remote attachment's file, decrypted: from this installation's store when it holds
    /// the encrypted file (sent from here, fetched before, or brought by an archive with
    /// element `attachments`), else downloaded from the URL the message names, checked
    /// against its digest and kept. Works after the attachment store dropped the file when
    /// a copy is held here.
    pub async fn fetch_remote_attachment(&self, remote: &RemoteAttachment) -> Result<Attachment> {
        self.fetch_remote_attachment_from(
            remote,
            std::sync::Arc::new(HttpAttachmentStore::downloads_only()),
        )
        .await
    }

    /// [`Client::fetch_remote_attachment`], downloading through `store` (an S3 bucket, say)
    /// when the file is not held here.
    pub async fn fetch_remote_attachment_from(
        &self,
        remote: &RemoteAttachment,
        store: std::sync::Arc<dyn AttachmentStore>,
    ) -> Result<Attachment> {
        let digest = remote.content_digest.to_ascii_lowercase();
        let held = self.store().attachment_file(&digest)?;
        let payload = match held {
            Some(p) => p,
            None => {
                let p = download_payload(remote, store).await?;
                self.store().put_attachment_file(&digest, &p)?;
                p
            }
        };
        Ok(remote::open_owned(remote, payload)?)
    }

    /// Whether this installation holds the encrypted file of this remote attachment.
    pub fn holds_attachment_file(&self, remote: &RemoteAttachment) -> Result<bool> {
        Ok(self
            .store()
            .has_attachment_file(&remote.content_digest.to_ascii_lowercase())?)
    }
}

impl Group {
    /// Sends content of any type (built-in or an app's own codec); returns the message's id.
    pub async fn send_content<C: ContentCodec>(&self, value: &C::Value) -> Result<Vec<u8>> {
        self.send_encoded(&C::encode(value)?).await
    }

    /// Sends already encoded content; returns the message's id.
    pub async fn send_encoded(&self, encoded: &EncodedContent) -> Result<Vec<u8>> {
        self.send(envelope_of(encoded, crate::now_ns())).await
    }

    /// Replies to message `reference` with text.
    pub async fn send_reply(&self, reference: &[u8], text: &str) -> Result<Vec<u8>> {
        self.send_content::<ReplyCodec>(&Reply::text(reference, text))
            .await
    }

    /// Adds (`remove` false) or takes back a reaction (an emoji) to message `reference`.
    pub async fn send_reaction(
        &self,
        reference: &[u8],
        emoji: &str,
        remove: bool,
    ) -> Result<Vec<u8>> {
        let mut r = Reaction::emoji(reference, emoji);
        if remove {
            r.action = ReactionAction::Removed;
        }
        self.send_content::<ReactionCodec>(&r).await
    }

    /// Tells the other members this installation has read the conversation.
    pub async fn send_read_receipt(&self) -> Result<Vec<u8>> {
        self.send_content::<ReadReceiptCodec>(&ReadReceipt).await
    }

    /// Sends a small file inside the message (at most [`MAX_INLINE_ATTACHMENT_BYTES`]).
    pub async fn send_attachment(&self, attachment: &Attachment) -> Result<Vec<u8>> {
        self.send_content::<AttachmentCodec>(attachment).await
    }

    /// Encrypts a file of any size with a fresh key, uploads it to `store` and sends the
    /// message that says where it is and how to open it.
    pub async fn send_remote_attachment(
        &self,
        attachment: &Attachment,
        store: std::sync::Arc<dyn AttachmentStore>,
    ) -> Result<Vec<u8>> {
        let sealed = remote::seal(attachment)?;
        // The sender keeps the encrypted file: its backups can carry it (element
        // `attachments`) and it opens without a download.
        self.client
            .store()
            .put_attachment_file(sealed.digest(), &sealed.payload)?;
        let (sealed, url) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut file = tempfile::NamedTempFile::new().map_err(|e| Error::Io {
                path: std::env::temp_dir(),
                source: e,
            })?;
            std::io::Write::write_all(&mut file, &sealed.payload).map_err(|e| Error::Io {
                path: file.path().to_path_buf(),
                source: e,
            })?;
            let url = store.upload(file.path())?;
            Ok((sealed, url))
        })
        .await
        .map_err(|e| Error::InvalidArgument(format!("upload task failed: {e}")))??;
        self.send_content::<RemoteAttachmentCodec>(&sealed.at(&url)?)
            .await
    }
}
