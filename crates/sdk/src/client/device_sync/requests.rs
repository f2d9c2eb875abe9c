//! History requests and the archives that answer them: asking, listing, answering by hand,
//! importing by hand.

use super::*;

impl Client {
    // ---- requests ----------------------------------------------------------------------

    /// Asks this inbox's other installations for history over the sync group; returns the
    /// request id (the "pin") a reply will name. An online installation answers when it next
    /// syncs (`ferry run` answers at once); the reply is imported on this installation's next
    /// sync. Fails when history sync is off (no history server URL).
    pub async fn send_sync_request(&self, options: &SyncOptions) -> Result<String> {
        if self.history_sync_url().is_empty() {
            return Err(Error::HistorySyncOff);
        }
        if !options.messages && !options.consent {
            return Err(Error::NoElements);
        }
        let group = self.ensure_sync_group().await?;
        let id = random_pin();
        let record = RequestRecord {
            messages: options.messages,
            consent: options.consent,
            start_ns: options.start_ns,
            end_ns: options.end_ns,
            sent_at_ns: crate::now_ns(),
            answered_at_ns: None,
        };
        self.store().put_sync_request(&record.to_row(&id))?;
        self.send_sync_payload(&group, record.payload(&id)).await?;
        Ok(id)
    }

    /// Asks for history unless a request for the same thing is still waiting for its answer
    /// (sent in the last 24 hours): then that one's pin comes back and nothing is sent, so an
    /// online installation does not build and upload a second archive for the same need.
    pub async fn request_history(&self, options: &SyncOptions) -> Result<HistoryRequest> {
        if self.history_sync_url().is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let now = crate::now_ns();
        let pending = self.store().sync_requests()?;
        for row in pending {
            let record = RequestRecord::of_row(&row);
            if record.answered_at_ns.is_none()
                && record.options() == *options
                && now.saturating_sub(record.sent_at_ns) < REUSE_REQUEST_NS
            {
                return Ok(HistoryRequest {
                    pin: row.pin,
                    reused: true,
                });
            }
        }
        Ok(HistoryRequest {
            pin: self.send_sync_request(options).await?,
            reused: false,
        })
    }

    /// Sends this installation's unanswered requests again into `group` (the inbox's sync
    /// group it has just settled on), with their pins, for installations that never read the
    /// group they first went to. Whoever answered one already does not answer it twice.
    pub(crate) async fn resend_pending_requests(&self, group: &[u8]) -> Result<u64> {
        let pending = self.store().sync_requests()?;
        let mut sent = 0;
        for row in pending {
            let record = RequestRecord::of_row(&row);
            if record.answered_at_ns.is_some() {
                continue;
            }
            self.send_sync_payload(group, record.payload(&row.pin))
                .await?;
            sent += 1;
        }
        Ok(sent)
    }

    /// Requests messages and consent (seed 002's `sync_history`); returns the pin (that of the
    /// request still pending, if there is one: see [`Client::request_history`]).
    pub async fn sync_history(&self) -> Result<String> {
        Ok(self.request_history(&SyncOptions::default()).await?.pin)
    }

    /// Requests consent only; returns the pin.
    pub async fn sync_consent(&self) -> Result<String> {
        self.send_sync_request(&SyncOptions::consent_only()).await
    }

    /// Requests messages only; returns the pin.
    pub async fn sync_messages(&self) -> Result<String> {
        self.send_sync_request(&SyncOptions::messages_only()).await
    }

    /// This installation's requests that no reply has answered yet (their pins).
    pub fn pending_sync_requests(&self) -> Result<Vec<String>> {
        Ok(self
            .open_requests()?
            .into_iter()
            .filter(|(_, r)| r.answered_at_ns.is_none())
            .map(|(pin, _)| pin)
            .collect())
    }

    /// This installation's requests still taking replies, by pin (closing those whose window
    /// has passed).
    pub(super) fn open_requests(&self) -> Result<Vec<(String, RequestRecord)>> {
        let now = crate::now_ns();
        let store = self.store();
        let mut out = Vec::new();
        for row in store.sync_requests()? {
            let record = RequestRecord::of_row(&row);
            if record.is_open(now) {
                out.push((row.pin, record));
            } else {
                store.delete_sync_request(&row.pin)?;
            }
        }
        Ok(out)
    }

    /// The report of the first import for the request with this pin, if this installation
    /// imported an answer to it (see [`Client::sync_import_reports`] for every answer's).
    pub fn sync_import_report(&self, pin: &str) -> Result<Option<ImportReport>> {
        Ok(self
            .import_records(pin)?
            .into_iter()
            .next()
            .map(|r| r.report))
    }

    /// Every answer to the request with this pin that was imported here, first first: the
    /// answering installation (hex) and what its archive added.
    pub fn sync_import_reports(&self, pin: &str) -> Result<Vec<(String, ImportReport)>> {
        Ok(self
            .import_records(pin)?
            .into_iter()
            .map(|r| (r.sender_installation_id, r.report))
            .collect())
    }

    /// The import records of `pin`, in the order they were made.
    pub(super) fn import_records(&self, pin: &str) -> Result<Vec<ImportRecord>> {
        let mut records: Vec<ImportRecord> = self
            .store()
            .sync_imports(pin)?
            .into_iter()
            .filter_map(|i| serde_json::from_slice(&i.record).ok())
            .collect();
        records.sort_by_key(|r| r.imported_at_ns);
        Ok(records)
    }

    // ---- archives ----------------------------------------------------------------------

    /// Builds an archive now, uploads it and announces it in the sync group under `pin` (a
    /// fresh random one when `None`), without waiting for a request. The installation that
    /// made a request with that pin imports it by itself; any other can import it with
    /// [`Client::process_sync_archive`]. Returns the pin.
    pub async fn send_sync_archive(
        &self,
        options: &SyncOptions,
        pin: Option<&str>,
    ) -> Result<String> {
        if self.history_sync_url().is_empty() {
            return Err(Error::HistorySyncOff);
        }
        let pin = pin.map(str::to_string).unwrap_or_else(random_pin);
        let group = self.ensure_sync_group().await?;
        self.upload_and_reply(&group, &pin, options).await?;
        Ok(pin)
    }

    /// The archives announced in the sync group in the last `days` days, newest first (after
    /// catching up with the sync group, when the node is reachable).
    pub async fn list_available_archives(&self, days: u32) -> Result<Vec<AvailableArchive>> {
        // An answer may come in the inbox's older sync group, which this installation may not
        // have joined yet.
        if let Err(e) = self.sync_welcomes().await {
            tracing::info!(error = %e, "welcomes not fetched; listing what is here");
        }
        for g in self.active_group_ids(Some(ConversationKind::Sync))? {
            if let Err(e) = self.sync_group(&g).await {
                tracing::info!(error = %e, "sync group not caught up; listing what is here");
                break;
            }
        }
        let since =
            crate::now_ns().saturating_sub((days as i64).saturating_mul(86_400 * 1_000_000_000));
        let own_active = self.own_active_installations().await?;
        let mut out = Vec::new();
        for m in self.sync_group_payloads()? {
            if m.sent_at_ns < since || !self.is_own_installation(&m, &own_active) {
                continue;
            }
            let Ok(SyncPayload {
                kind: Some(sync_payload::Kind::Reply(r)),
            }) = SyncPayload::decode(m.content.as_slice())
            else {
                continue;
            };
            let Ok(sender) = crate::InstallationId::try_from(m.sender_installation_id.as_slice())
            else {
                continue;
            };
            let record = self.store().sync_message_record(&m.id)?;
            let imported = self
                .import_records(&r.request_id)?
                .iter()
                .any(|i| i.message_id == hex::encode(&m.id));
            out.push(AvailableArchive {
                pin: r.request_id,
                sender_installation_id: sender,
                sent_at_ns: m.sent_at_ns,
                created_at_ns: r.created_at_ns,
                conversation_count: r.conversation_count,
                message_count: r.message_count,
                messages: r.messages,
                consent: r.consent,
                start_ns: r.start_ns,
                end_ns: r.end_ns,
                size_bytes: r.size_bytes,
                url: r.url,
                state: match record.as_ref().map(|r| r.state) {
                    None => ArchiveState::New,
                    Some(PROCESSED) => ArchiveState::Processed,
                    Some(FAILED) => ArchiveState::Failed,
                    Some(_) => ArchiveState::Pending,
                },
                imported,
                attempts: record.as_ref().map_or(0, |r| r.attempts),
                last_error: record.and_then(|r| r.last_error),
                key: Zeroizing::new(r.key),
                message_id: m.id,
            });
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.sent_at_ns));
        Ok(out)
    }

    /// Downloads, verifies and imports an announced archive: the one with `pin`, or the newest
    /// when `None` (additive; what is here already is skipped). Returns the import report.
    pub async fn process_sync_archive(&self, pin: Option<&str>) -> Result<ImportReport> {
        let archives = self.list_available_archives(u32::MAX).await?;
        let chosen = match pin {
            Some(p) => archives.into_iter().find(|a| a.pin == p),
            None => archives.into_iter().next(),
        }
        .ok_or_else(|| Error::NoSuchArchive(pin.unwrap_or("(latest)").to_string()))?;
        let report = self
            .import_announced(
                &chosen.message_id,
                &chosen.sender_installation_id.to_string(),
                &chosen.pin,
                &chosen.url,
                &chosen.key,
            )
            .await?;
        let attempts = self
            .store()
            .sync_message_record(&chosen.message_id)?
            .map_or(0, |r| r.attempts);
        self.store().set_sync_message_state(
            &chosen.message_id,
            PROCESSED,
            attempts + 1,
            None,
            crate::now_ns(),
        )?;
        Ok(report)
    }
}
