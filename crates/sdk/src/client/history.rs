//! History sync over the inbox's hidden sync group (seeds 001 and 002), the request / reply
//! core: a new installation asks; an installation that sees the request builds an archive with
//! a fresh random key, uploads it to the history server and answers with its URL and key over
//! the (end-to-end encrypted) sync group; the requester downloads, verifies and imports it.
//! Each sync message is handled once: its state and attempts are kept in the store, so a crash
//! or a dead server is retried and nothing is imported twice. An empty `history_sync_url`
//! turns all of it off: no request, no reply, no upload.

use ferry_proto::message::{
    sync_payload, ContentTypeId, Envelope, SyncPayload, SyncReply, SyncRequest,
};
use ferry_store::{ConversationFilter, ConversationKind, Message, MessageFilter, MessageKind};
use ferry_transport::HistoryClient;
use prost::Message as _;
use rand::RngCore;

use super::Client;
use crate::backup::{ArchiveElement, ArchiveOptions, Control};
use crate::{ArchiveKey, Error, Result};

/// The content type of sync-group payloads.
const SYNC_AUTHORITY: &str = "ferry.chat";
const SYNC_TYPE: &str = "sync";
/// A sync message that keeps failing is given up on after this many attempts.
const MAX_ATTEMPTS: i64 = 5;
const PENDING: i64 = 1;
const PROCESSED: i64 = 2;
const FAILED: i64 = 3;

fn request_key(id: &str) -> String {
    format!("sync_request/{id}")
}

impl Client {
    /// Asks this inbox's other installations for history (messages and/or consent) over the
    /// sync group; returns the request id (the "pin") a reply will name. Fails when history
    /// sync is off (no history server URL).
    pub fn send_sync_request(&self, messages: bool, consent: bool) -> Result<String> {
        if self.inner.history_sync_url.is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let group = self.ensure_sync_group()?;
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = hex::encode(raw);
        self.store().set_setting(&request_key(&id), b"pending")?;
        self.send_sync_payload(
            &group,
            sync_payload::Kind::Request(SyncRequest {
                request_id: id.clone(),
                messages,
                consent,
                start_ns: None,
                end_ns: None,
            }),
        )?;
        Ok(id)
    }

    fn send_sync_payload(&self, group: &[u8], kind: sync_payload::Kind) -> Result<()> {
        let env = Envelope {
            content_type: Some(ContentTypeId {
                authority: SYNC_AUTHORITY.into(),
                type_id: SYNC_TYPE.into(),
                major: 1,
                minor: 0,
            }),
            content: SyncPayload { kind: Some(kind) }.encode_to_vec(),
            fallback: None,
            sent_at_ns: crate::now_ns(),
            reference_id: None,
            parameters: None,
        };
        self.group_handle(group.to_vec()).send_envelope(env)?;
        Ok(())
    }

    /// Handles the sync-group messages not handled yet (answering requests, importing replies
    /// to this installation's requests); returns how many archives it imported.
    pub fn process_sync_messages(&self) -> Result<u64> {
        let groups = self.store().conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })?;
        let mut imported = 0;
        for g in groups {
            let messages = self.store().messages(&MessageFilter {
                conversation_id: Some(g.id.clone()),
                ..Default::default()
            })?;
            for m in messages {
                if m.kind != MessageKind::Application
                    || m.content_type.authority != SYNC_AUTHORITY
                    || m.content_type.type_id != SYNC_TYPE
                {
                    continue;
                }
                let attempts = match self.store().sync_message_state(&m.id)? {
                    Some((PROCESSED | FAILED, _)) => continue,
                    Some((_, a)) => a,
                    None => 0,
                };
                let now = crate::now_ns();
                match self.handle_sync_message(&g.id, &m) {
                    Ok(did_import) => {
                        imported += did_import as u64;
                        self.store().set_sync_message_state(
                            &m.id,
                            PROCESSED,
                            attempts + 1,
                            None,
                            now,
                        )?;
                    }
                    Err(e) => {
                        let state = if attempts + 1 >= MAX_ATTEMPTS {
                            FAILED
                        } else {
                            PENDING
                        };
                        let reason = e.to_string();
                        tracing::warn!(error = %reason, attempts = attempts + 1, "sync message not handled");
                        self.store().set_sync_message_state(
                            &m.id,
                            state,
                            attempts + 1,
                            Some(&reason),
                            now,
                        )?;
                    }
                }
            }
        }
        Ok(imported)
    }

    /// One sync message; `Ok(true)` when it imported an archive. Messages to ignore (not from
    /// this inbox, a reply to someone else's request, a replay) are `Ok(false)`, logged.
    fn handle_sync_message(&self, group: &[u8], m: &Message) -> Result<bool> {
        if m.sender_inbox_id != self.inner.inbox_id {
            tracing::warn!(sender = %m.sender_inbox_id, "sync message from another inbox ignored");
            return Ok(false);
        }
        let Ok(SyncPayload { kind: Some(kind) }) = SyncPayload::decode(m.content.as_slice()) else {
            tracing::warn!("undecodable sync message ignored");
            return Ok(false);
        };
        match kind {
            sync_payload::Kind::Request(r) => {
                if m.sender_installation_id == self.inner.installation_id
                    || self.inner.history_sync_url.is_empty()
                {
                    return Ok(false);
                }
                self.answer_sync_request(group, &r)?;
                Ok(false)
            }
            sync_payload::Kind::Reply(r) => {
                if self.store().setting(&request_key(&r.request_id))?.is_none() {
                    tracing::info!(request = %r.request_id, "sync reply for a request not ours (or already answered) ignored");
                    return Ok(false);
                }
                self.import_sync_reply(&r)?;
                self.store().delete_setting(&request_key(&r.request_id))?;
                Ok(true)
            }
        }
    }

    fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let home = self
            .store()
            .path()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        tempfile::tempdir_in(&home).map_err(|e| Error::io(home, e))
    }

    fn answer_sync_request(&self, group: &[u8], r: &SyncRequest) -> Result<()> {
        let mut elements = Vec::new();
        if r.messages {
            elements.push(ArchiveElement::Messages);
        }
        if r.consent {
            elements.push(ArchiveElement::Consent);
        }
        if elements.is_empty() {
            return Ok(());
        }
        let key = ArchiveKey::generate();
        let dir = self.scratch_dir()?;
        let path = dir.path().join("history.ferry");
        let meta = self.create_archive(
            &path,
            &key,
            &ArchiveOptions {
                start_ns: r.start_ns,
                end_ns: r.end_ns,
                elements,
                label: format!("history sync {}", r.request_id),
            },
            &Control::new(),
        )?;
        let url = HistoryClient::new(&self.inner.history_sync_url)?.upload_file(&path)?;
        self.send_sync_payload(
            group,
            sync_payload::Kind::Reply(SyncReply {
                request_id: r.request_id.clone(),
                url,
                key: key.raw_bytes().expect("a generated key is raw").to_vec(),
                created_at_ns: meta.created_at_ns,
                conversation_count: meta.conversation_count.unwrap_or(0),
                message_count: meta.message_count.unwrap_or(0),
            }),
        )
    }

    fn import_sync_reply(&self, r: &SyncReply) -> Result<()> {
        if self.inner.history_sync_url.is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let key = ArchiveKey::from_bytes(&r.key)?;
        let dir = self.scratch_dir()?;
        let dest = dir.path().join("history.ferry");
        // Only from our own history server: a reply pointing elsewhere is refused.
        HistoryClient::new(&self.inner.history_sync_url)?.download_to(&r.url, &dest)?;
        self.import_archive(&dest, &key, &Control::new())?;
        Ok(())
    }
}
