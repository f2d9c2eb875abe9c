//! Preferences over the sync group: HMAC keys and their rotation, consent and the outbox that
//! carries decisions to this inbox's other installations.

use super::*;
use ferry_store::DeviceSyncFlag;

impl Client {
    // ---- preferences -------------------------------------------------------------------

    /// Per-conversation HMAC keys (for push notification topics) for the previous, current and
    /// next 30-day period, by conversation id (hex). They derive from one secret per inbox that
    /// its installations share over the sync group, so they are the same on every installation
    /// of the inbox; revoking an installation rotates the secret.
    pub async fn hmac_keys(&self) -> Result<BTreeMap<String, Vec<HmacKey>>> {
        let secret = self.ensure_hmac_secret().await?;
        let now = crate::now_ns().div_euclid(HMAC_PERIOD_NS);
        let conversations = self.store().conversations(&ConversationFilter::default())?;
        Ok(conversations
            .into_iter()
            .map(|c| {
                let keys = (now - 1..=now + 1)
                    .map(|epoch| HmacKey {
                        epoch,
                        key: hex::encode(derive_hmac_key(&secret.secret, &c.id, epoch).as_ref()),
                    })
                    .collect();
                (hex::encode(&c.id), keys)
            })
            .collect())
    }

    /// The revision of the inbox's HMAC secret held here (`None` before there is one).
    pub fn hmac_key_revision(&self) -> Result<Option<u64>> {
        Ok(self.hmac_secret()?.map(|k| k.revision))
    }

    pub(super) fn hmac_secret(&self) -> Result<Option<HmacKeyUpdate>> {
        Ok(self
            .store()
            .hmac_key()?
            .and_then(|v| HmacKeyUpdate::decode(v.as_slice()).ok()))
    }

    /// The inbox's secret; one is made (revision 0) and shared when none has arrived yet. Two
    /// installations that do so at once settle on the same one (see [`hmac_beats`]).
    pub(crate) async fn ensure_hmac_secret(&self) -> Result<HmacKeyUpdate> {
        if let Some(k) = self.hmac_secret()? {
            return Ok(k);
        }
        self.new_hmac_secret(0).await
    }

    /// Rotates the inbox's HMAC secret after one of its installations was revoked: every sync
    /// group first drops revoked installations and this installation catches up with them (so
    /// it holds the newest revision), then a secret one revision past it goes to the
    /// installations that remain. Recorded first, so a failure midway is retried by the next
    /// [`Client::sync_all`].
    pub(crate) async fn rotate_after_revocation(&self) -> Result<()> {
        self.store()
            .set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, true)?;
        for id in self.active_group_ids(Some(ConversationKind::Sync))? {
            self.group_handle(id.clone())
                .add_missing_installations()
                .await?;
            self.sync_group(&id).await?;
        }
        self.process_sync_messages().await?;
        // Revision 0 is an inbox's first secret: a rotation is at least 1, even on an
        // installation too new to hold a secret yet, so it beats what the revoked one holds.
        let next = self
            .hmac_secret()?
            .map_or(1, |k| k.revision.saturating_add(1));
        self.new_hmac_secret(next).await?;
        self.store()
            .set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, false)?;
        Ok(())
    }

    /// Work a crash or a dead node left undone: a rotation, a history request.
    pub(crate) async fn resume_history_chores(&self) {
        if matches!(
            self.store()
                .device_sync_flag(DeviceSyncFlag::HmacRotationPending),
            Ok(true)
        ) {
            if let Err(e) = self.rotate_after_revocation().await {
                tracing::warn!(error = %e, "HMAC secret rotation still pending");
            }
        }
        if matches!(
            self.store()
                .device_sync_flag(DeviceSyncFlag::HistoryRequestWanted),
            Ok(true)
        ) {
            match self.sync_history().await {
                Ok(_) => {
                    let _ = self
                        .store()
                        .set_device_sync_flag(DeviceSyncFlag::HistoryRequestWanted, false);
                }
                Err(e) => tracing::info!(error = %e, "history request still not sent"),
            }
        }
    }

    /// Remembers that a history request is wanted but could not be sent yet.
    pub(crate) fn want_history_request(&self) -> Result<()> {
        self.store()
            .set_device_sync_flag(DeviceSyncFlag::HistoryRequestWanted, true)?;
        Ok(())
    }

    pub(super) async fn new_hmac_secret(&self, revision: u64) -> Result<HmacKeyUpdate> {
        let mut secret = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let key = HmacKeyUpdate {
            secret,
            revision,
            created_at_ns: crate::now_ns(),
        };
        {
            let store = self.store();
            store.set_hmac_key(&key.encode_to_vec())?;
            queue_preferences(
                &store,
                &PreferenceUpdates {
                    consent: Vec::new(),
                    hmac_key: Some(key.clone()),
                },
            )?;
        }
        self.emit(vec![Event::HmacKeyChanged { revision }]);
        self.flush_or_log().await;
        Ok(key)
    }

    /// Queues the current HMAC secret for the sync group (for installations just added to it).
    pub(crate) async fn share_hmac_secret(&self) -> Result<()> {
        if let Some(key) = self.hmac_secret()? {
            queue_preferences(
                &self.store(),
                &PreferenceUpdates {
                    consent: Vec::new(),
                    hmac_key: Some(key),
                },
            )?;
        }
        Ok(())
    }

    /// Queues every consent decision held here for the inbox's other installations: a new
    /// installation learns them over the sync group, with no history server needed (and
    /// those that know them already keep the newer of each).
    pub(crate) fn share_consent(&self) -> Result<()> {
        let store = self.store();
        let all = store.consent_list()?;
        for chunk in all.chunks(256) {
            queue_preferences(
                &store,
                &PreferenceUpdates {
                    consent: chunk
                        .iter()
                        .map(|c| ConsentUpdate {
                            entity_type: c.entity_type.as_i64() as i32,
                            entity: c.entity.clone(),
                            state: c.state.as_i64() as i32,
                            updated_at_ns: c.updated_at_ns,
                        })
                        .collect(),
                    hmac_key: None,
                },
            )?;
        }
        Ok(())
    }

    /// Queues a consent change for the inbox's other installations (called with the store
    /// held, in the transaction that records it).
    pub(crate) fn queue_consent(store: &ferry_store::Store, c: &ConsentRecord) -> Result<()> {
        queue_preferences(
            store,
            &PreferenceUpdates {
                consent: vec![ConsentUpdate {
                    entity_type: c.entity_type.as_i64() as i32,
                    entity: c.entity.clone(),
                    state: c.state.as_i64() as i32,
                    updated_at_ns: c.updated_at_ns,
                }],
                hmac_key: None,
            },
        )
    }

    /// Sends the queued preference updates over the sync group; returns how many went out.
    /// Each leaves the outbox only once sent.
    pub async fn flush_preference_outbox(&self) -> Result<u64> {
        let queued = self.store().preference_outbox()?;
        if queued.is_empty() {
            return Ok(0);
        }
        let group = self.ensure_sync_group().await?;
        self.secure_sync_group(&group).await?;
        let mut sent = 0;
        for entry in queued {
            if let Ok(update) = PreferenceUpdates::decode(entry.updates.as_slice()) {
                self.send_sync_payload(&group, sync_payload::Kind::Preferences(update))
                    .await?;
                sent += 1;
            }
            self.store().preference_outbox_remove(entry.id)?;
        }
        Ok(sent)
    }

    /// Sends what waits in the outbox now if it can; otherwise the next sync does.
    pub(crate) async fn flush_or_log(&self) {
        if let Err(e) = self.flush_preference_outbox().await {
            tracing::info!(error = %e, "preference updates wait for the next sync");
        }
    }

    pub(super) async fn apply_preferences(&self, p: PreferenceUpdates) -> Result<()> {
        let mut events = Vec::new();
        {
            let store = self.store();
            for c in p.consent {
                let (Some(entity_type), Some(state)) = (
                    ConsentEntity::from_i64(c.entity_type as i64),
                    ConsentState::from_i64(c.state as i64),
                ) else {
                    tracing::warn!("consent update of an unknown kind ignored");
                    continue;
                };
                let record = ConsentRecord {
                    entity_type,
                    entity: c.entity,
                    state,
                    updated_at_ns: c.updated_at_ns,
                };
                if store.set_consent(&record)? {
                    events.push(Event::Consent(record));
                }
            }
            if let Some(k) = p.hmac_key {
                if k.secret.len() != 32 {
                    tracing::warn!("HMAC secret of the wrong size ignored");
                } else {
                    let held = store
                        .hmac_key()?
                        .and_then(|v| HmacKeyUpdate::decode(v.as_slice()).ok());
                    // A revision may move on by one at a time: a jump (say, to the top, which
                    // would win every later rotation) is refused.
                    let plausible = held
                        .as_ref()
                        .is_none_or(|h| k.revision <= h.revision.saturating_add(1));
                    if !plausible {
                        tracing::warn!(revision = k.revision, "HMAC secret revision jump refused");
                    } else if held.as_ref().is_none_or(|h| hmac_beats(&k, h)) {
                        store.set_hmac_key(&k.encode_to_vec())?;
                        events.push(Event::HmacKeyChanged {
                            revision: k.revision,
                        });
                    }
                }
            }
        }
        self.emit(events);
        Ok(())
    }
}
