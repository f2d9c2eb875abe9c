//! The worker's part of device sync: handling each sync-group message once (requests
//! answered, replies imported, preferences applied), with retries and backoff.

use super::*;

impl Client {
    // ---- the worker's part -------------------------------------------------------------

    /// Brings a sync group in line with the inbox's log before anything secret goes into it:
    /// revoked installations are removed first (and new ones added), so an archive key or the
    /// HMAC secret reaches only installations that are active now.
    pub(super) async fn secure_sync_group(&self, group: &[u8]) -> Result<()> {
        self.group_handle(group.to_vec())
            .add_missing_installations()
            .await
    }

    pub(super) async fn send_sync_payload(
        &self,
        group: &[u8],
        kind: sync_payload::Kind,
    ) -> Result<()> {
        let env = Envelope {
            content_type: Some(ContentTypeId {
                authority: SYNC_AUTHORITY.into(),
                type_id: SYNC_TYPE.into(),
                major: 1,
                minor: 0,
            }),
            content: SyncPayload { kind: Some(kind) }.encode_to_vec(),
            fallback: None,
            idempotency_key: None,
            sent_at_ns: crate::now_ns(),
            reference_id: None,
            parameters: None,
        };
        self.group_handle(group.to_vec()).send(env).await?;
        Ok(())
    }

    /// Every sync payload stored from every sync group (of any membership), oldest first;
    /// with `unhandled`, only those not processed or failed yet (what a pass works on, so its
    /// cost does not grow with the group's history).
    pub(super) fn sync_group_payloads_where(&self, unhandled: bool) -> Result<Vec<Message>> {
        let groups = self.store().conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })?;
        let mut out = Vec::new();
        for g in groups {
            let messages = if unhandled {
                self.store().unhandled_sync_messages(&g.id)?
            } else {
                self.store().messages(&MessageFilter {
                    conversation_id: Some(g.id.clone()),
                    include_sync: true,
                    ..Default::default()
                })?
            };
            out.extend(messages.into_iter().filter(is_sync_payload));
        }
        Ok(out)
    }

    pub(super) fn sync_group_payloads(&self) -> Result<Vec<Message>> {
        self.sync_group_payloads_where(false)
    }

    /// This inbox's active installations per its verified log, fetched now: a node that
    /// cannot be asked is a retryable error, never a reason to ignore a message for good.
    pub(super) async fn own_active_installations(&self) -> Result<BTreeSet<Vec<u8>>> {
        let me = self.inner.inbox_id.clone();
        let state = self
            .refresh_inboxes(std::slice::from_ref(&me))
            .await?
            .remove(&me)
            .ok_or_else(|| Error::UnknownInbox(me.clone()))?;
        Ok(state
            .active_installations()
            .iter()
            .map(|i| i.to_vec())
            .collect())
    }

    /// Whether a sync message comes from an active installation of this inbox (anything else
    /// is logged with its reason).
    pub(super) fn is_own_installation(&self, m: &Message, own_active: &BTreeSet<Vec<u8>>) -> bool {
        if m.sender_inbox_id != self.inner.inbox_id {
            tracing::warn!(sender = %m.sender_inbox_id, "sync message from another inbox ignored");
            return false;
        }
        if !own_active.contains(&m.sender_installation_id) {
            tracing::warn!(
                installation = %hex::encode(&m.sender_installation_id),
                "sync message from an installation not active in this inbox's log ignored"
            );
            return false;
        }
        true
    }

    /// Handles the sync-group messages not handled yet: applies preference updates, answers
    /// requests, imports replies to this installation's requests. Returns how many archives it
    /// imported. A message that failed waits out its backoff before it is tried again.
    pub async fn process_sync_messages(&self) -> Result<u64> {
        // One pass at a time in this process (the worker and the app may both sync); other
        // processes are kept off each message by the claim below.
        let _one = self.inner.history_lock.lock().await;
        let mut own_active: Option<BTreeSet<Vec<u8>>> = None;
        let mut imported = 0;
        for m in self.sync_group_payloads_where(true)? {
            let Some(attempts) = self.claim_sync_message(&m.id)? else {
                continue;
            };
            if own_active.is_none() {
                match self.own_active_installations().await {
                    Ok(a) => own_active = Some(a),
                    Err(e) => {
                        // Not handled: the claim's backoff brings it back.
                        self.record_attempt(&m.id, attempts, &e)?;
                        return Err(e);
                    }
                }
            }
            let outcome = if self.is_own_installation(&m, own_active.as_ref().expect("set")) {
                self.handle_sync_message(&m).await
            } else {
                Ok(false)
            };
            match outcome {
                Ok(did_import) => {
                    imported += did_import as u64;
                    self.store().set_sync_message_state(
                        &m.id,
                        PROCESSED,
                        attempts,
                        None,
                        crate::now_ns(),
                    )?;
                }
                Err(e) => self.record_attempt(&m.id, attempts, &e)?,
            }
        }
        Ok(imported)
    }

    /// Takes a sync message for handling, in one transaction: `None` when it is done, given
    /// up on, waiting out its backoff, or being handled elsewhere right now; else the number
    /// of this attempt, recorded before the work starts.
    pub(super) fn claim_sync_message(&self, id: &[u8]) -> Result<Option<i64>> {
        let store = self.store();
        let tx = ferry_store::rusqlite::Transaction::new_unchecked(
            store.conn(),
            ferry_store::rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(ferry_store::Error::from)?;
        let now = crate::now_ns();
        let attempts = match store.sync_message_record(id)? {
            Some(r) if r.state == PROCESSED || r.state == FAILED => return Ok(None),
            Some(r) if now < r.updated_at_ns.saturating_add(backoff_ns(r.attempts)) => {
                return Ok(None)
            }
            Some(r) => r.attempts + 1,
            None => 1,
        };
        store.set_sync_message_state(id, PENDING, attempts, Some("in progress"), now)?;
        tx.commit().map_err(ferry_store::Error::from)?;
        Ok(Some(attempts))
    }

    /// A failed attempt: pending (to retry after its backoff) or, when the failure cannot
    /// pass or the attempts are used up, failed with its reason.
    pub(super) fn record_attempt(&self, id: &[u8], attempts: i64, e: &Error) -> Result<()> {
        let state = if retryable(e) && attempts < MAX_ATTEMPTS {
            PENDING
        } else {
            FAILED
        };
        let reason = e.to_string();
        tracing::warn!(
            error = %reason,
            attempts,
            gave_up = state == FAILED,
            "sync message not handled"
        );
        self.store()
            .set_sync_message_state(id, state, attempts, Some(&reason), crate::now_ns())?;
        Ok(())
    }

    /// One sync message from an own installation; `Ok(true)` when it imported an archive.
    /// Messages to ignore (a reply to someone else's request, a replay) are `Ok(false)`.
    pub(super) async fn handle_sync_message(&self, m: &Message) -> Result<bool> {
        let Ok(SyncPayload { kind: Some(kind) }) = SyncPayload::decode(m.content.as_slice()) else {
            tracing::warn!("undecodable sync message ignored");
            return Ok(false);
        };
        let mine = m.sender_installation_id == self.inner.installation_id;
        match kind {
            sync_payload::Kind::Preferences(p) => {
                if !mine {
                    self.apply_preferences(p).await?;
                }
                Ok(false)
            }
            sync_payload::Kind::Request(r) => {
                if mine || self.history_sync_url().is_empty() {
                    return Ok(false);
                }
                if self.store().sync_answer_sent(&r.request_id)?.is_some() {
                    tracing::info!(request = %r.request_id, "request answered here before; not again");
                    return Ok(false);
                }
                if !self.pending_sync_requests()?.is_empty() {
                    // New here too and still waiting for history: an answer now would be
                    // (nearly) empty and could close the request before a full one comes.
                    tracing::info!(request = %r.request_id, "not answering: this installation is waiting for its own history");
                    return Ok(false);
                }
                let options = SyncOptions {
                    messages: r.messages,
                    consent: r.consent,
                    start_ns: r.start_ns,
                    end_ns: r.end_ns,
                };
                if options.messages || options.consent {
                    // The answer goes to the inbox's surviving sync group (the requester is
                    // added to it first), whichever group the request came through.
                    let group = self.ensure_sync_group().await?;
                    let meta = self
                        .upload_and_reply(&group, &r.request_id, &options)
                        .await?;
                    self.store()
                        .record_sync_answer_sent(&r.request_id, crate::now_ns())?;
                    // The requester is new here: it needs the inbox's HMAC secret too.
                    self.share_hmac_secret().await?;
                    self.flush_or_log().await;
                    self.emit(vec![Event::DeviceSync(DeviceSyncEvent::RequestAnswered {
                        pin: r.request_id.clone(),
                        requester_installation_id: crate::InstallationId::try_from(
                            m.sender_installation_id.as_slice(),
                        )
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?,
                        conversations: meta.conversation_count.unwrap_or(0),
                        messages: meta.message_count.unwrap_or(0),
                    })]);
                }
                Ok(false)
            }
            sync_payload::Kind::Reply(r) => {
                // Every answer to an open request of ours is imported: the first one and any
                // other that comes within the window after it (imports are additive, so the
                // result is the union of what the answering installations hold).
                let open = self
                    .open_requests()?
                    .into_iter()
                    .any(|(pin, _)| pin == r.request_id);
                if !open {
                    tracing::info!(request = %r.request_id, "sync reply for a request not ours (or closed) ignored");
                    return Ok(false);
                }
                if self
                    .import_records(&r.request_id)?
                    .iter()
                    .any(|i| i.url == r.url)
                {
                    tracing::info!(request = %r.request_id, "replayed sync reply ignored");
                    return Ok(false);
                }
                let report = self
                    .import_announced(
                        &m.id,
                        &hex::encode(&m.sender_installation_id),
                        &r.request_id,
                        &r.url,
                        &r.key,
                    )
                    .await?;
                self.emit(vec![Event::DeviceSync(DeviceSyncEvent::HistoryImported {
                    pin: r.request_id.clone(),
                    report,
                })]);
                Ok(true)
            }
        }
    }

    pub(super) fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let home = self
            .store()
            .path()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        tempfile::tempdir_in(&home).map_err(|e| Error::io(home, e))
    }

    /// Builds an archive with a fresh key, uploads it and announces it in `group` under `pin`.
    pub(super) async fn upload_and_reply(
        &self,
        group: &[u8],
        pin: &str,
        options: &SyncOptions,
    ) -> Result<crate::archive::ArchiveMetadata> {
        let mut elements = Vec::new();
        if options.messages {
            elements.push(ArchiveElement::Messages);
        }
        if options.consent {
            elements.push(ArchiveElement::Consent);
        }
        if elements.is_empty() {
            return Err(Error::NoElements);
        }
        let key = ArchiveKey::generate();
        let dir = self.scratch_dir()?;
        let path = dir.path().join("history.ferry");
        let meta = self
            .create_archive(
                &path,
                &key,
                &ArchiveOptions {
                    start_ns: options.start_ns,
                    end_ns: options.end_ns,
                    elements,
                    label: format!("history sync {pin}"),
                    // The new installation stores them with their expiry and deletes them
                    // on time, like this one.
                    exclude_disappearing_messages: false,
                },
                &Control::new(),
            )
            .await?;
        let history = self.history_client()?;
        let url = self
            .off_executor(move |_| Ok(history.upload_file(&path)?))
            .await?;
        self.secure_sync_group(group).await?;
        self.send_sync_payload(
            group,
            sync_payload::Kind::Reply(SyncReply {
                request_id: pin.to_string(),
                url,
                key: key.raw_bytes().expect("a generated key is raw").to_vec(),
                created_at_ns: meta.created_at_ns,
                conversation_count: meta.conversation_count.unwrap_or(0),
                message_count: meta.message_count.unwrap_or(0),
                messages: options.messages,
                consent: options.consent,
                start_ns: options.start_ns,
                end_ns: options.end_ns,
                size_bytes: meta.file_bytes,
            }),
        )
        .await?;
        Ok(meta)
    }

    /// Downloads (from this installation's own history server only), verifies and imports an
    /// announced archive; records the report and closes the request with that pin. The
    /// archive must be signed by `sender_installation_id` (hex), the installation that sent
    /// the reply; else nothing is imported ([`Error::ArchiveNotSignedBySender`], or the
    /// signature's own error).
    pub(super) async fn import_announced(
        &self,
        message_id: &[u8],
        sender_installation_id: &str,
        pin: &str,
        url: &str,
        key: &[u8],
    ) -> Result<ImportReport> {
        let base = self.history_sync_url();
        if base.is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let key = ArchiveKey::from_bytes(key)?;
        let dir = self.scratch_dir()?;
        let dest = dir.path().join("history.ferry");
        let (history, from, to) = (self.history_client()?, url.to_string(), dest.clone());
        self.off_executor(move |_| Ok(history.download_to(&from, &to)?))
            .await?;
        let report = self
            .import_archive_signed_by(&dest, &key, &Control::new(), sender_installation_id)
            .await?;
        {
            let store = self.store();
            let now = crate::now_ns();
            let record = ImportRecord {
                message_id: hex::encode(message_id),
                sender_installation_id: sender_installation_id.to_string(),
                imported_at_ns: now,
                url: url.to_string(),
                report: report.clone(),
            };
            store.put_sync_import(&ferry_store::SyncImport {
                pin: pin.to_string(),
                message_id: message_id.to_vec(),
                imported_at_ns: now,
                record: serde_json::to_vec(&record).expect("a report serializes"),
            })?;
            // The request is answered; it stays open for the others' answers a while.
            store.set_sync_request_answered(pin, now)?;
        }
        Ok(report)
    }
}
