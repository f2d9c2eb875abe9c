//! A conversation handle's own calls: reading, sending, syncing, members, and the commits
//! that change them.

use super::*;

impl Group {
    /// The conversation's id as bytes (see [`Group::conversation_id`] for the typed id).
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The conversation as stored (for a DM: its primary group's row).
    pub fn info(&self) -> Result<Conversation> {
        self.client
            .store()
            .conversation(&self.id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))
    }

    /// Whether this installation can send and sync here (false for restored conversations
    /// until an active member's installation adds this one).
    pub fn is_active(&self) -> Result<bool> {
        Ok(self.info()?.is_active())
    }

    pub(super) fn require_active(&self) -> Result<Conversation> {
        let c = self.info()?;
        if !c.is_active() {
            return Err(Error::Inactive);
        }
        Ok(c)
    }

    /// The ids of every group shown as this conversation (one, or a DM's stitched groups).
    pub(super) fn stitched_ids(&self) -> Result<Vec<Vec<u8>>> {
        let c = self.info()?;
        if let (ConversationKind::Dm, Some(dm)) = (c.kind, &c.dm_id) {
            let all = self.client.store().conversations(&ConversationFilter {
                kind: Some(ConversationKind::Dm),
                ..Default::default()
            })?;
            return Ok(all
                .into_iter()
                .filter(|o| o.dm_id.as_deref() == Some(dm.as_str()))
                .map(|o| o.id)
                .collect());
        }
        Ok(vec![c.id])
    }

    /// Messages in sending order (for a DM: of all its stitched groups).
    pub fn messages(&self, q: &MessageQuery) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        for id in self.stitched_ids()? {
            all.extend(self.client.store().messages(&MessageFilter {
                conversation_id: Some(id),
                sent_after_ns: q.sent_after_ns,
                sent_before_ns: q.sent_before_ns,
                limit: None,
                include_sync: false,
            })?);
        }
        all.sort_by(|a, b| (a.sent_at_ns, &a.id).cmp(&(b.sent_at_ns, &b.id)));
        if let Some(l) = q.limit {
            // The newest `l`, still in order.
            let skip = all.len().saturating_sub(l as usize);
            all.drain(..skip);
        }
        Ok(all)
    }

    /// Sends a text message; returns its id (the same on every installation).
    pub async fn send_text(&self, text: &str) -> Result<Vec<u8>> {
        self.send(text_envelope(text, crate::now_ns())).await
    }

    /// Sends any content (an [`Envelope`]: content type, bytes and fallback text); returns
    /// the message's id (the same on every installation) once the node has it.
    ///
    /// Sends may overlap (say, several futures joined): each is encrypted and queued in the
    /// order the calls reach this point, and the group's outbox goes to the node in that
    /// order, in batches, so many sends in flight cost one round trip per batch.
    pub async fn send(&self, env: Envelope) -> Result<Vec<u8>> {
        let id = self.send_optimistic(env).await?;
        // Publish (no store lock held over the network), after anything still waiting in
        // this group's outbox. On failure the message stays unpublished and goes out with
        // the next send or sync: the same ciphertext, so members see it once whatever
        // happens (a node that stored it but could not answer included).
        self.client.publish_outbox(&self.id).await?;
        Ok(id)
    }

    /// [`send`](Self::send) without waiting for the node: the message is encrypted, stored
    /// (delivery status unpublished) and queued; [`publish_messages`](Self::publish_messages),
    /// the next send or the next sync publishes it. Returns its id.
    pub async fn send_optimistic(&self, env: Envelope) -> Result<Vec<u8>> {
        let c = self.require_active()?;
        if self
            .client
            .chore_due(&self.id, self.client.send_check_interval())?
        {
            // The seed's debounce: at most every few seconds per conversation.
            if let Err(e) = self.add_missing_installations().await {
                tracing::warn!(error = %e, "member check before sending failed");
            }
        }
        // Sends in flight together are encrypted together: queued in call order, then the
        // first to run takes the queue and encrypts it in one transaction (the group loaded
        // once, one commit), in that order.
        let queue = self.client.send_queue(&self.id);
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&queue.pending).push((env, tx));
        tokio::task::yield_now().await;
        {
            // Held from taking the queue to its commit: batches go in the order taken.
            let _one_batch = lock(&queue.encrypting);
            let batch = std::mem::take(&mut *lock(&queue.pending));
            if !batch.is_empty() {
                self.encrypt_queued(&c, batch);
            }
        }
        let m = rx
            .await
            .map_err(|_| Error::InvalidArgument("the send was abandoned".into()))??;
        Ok(m.id)
    }

    /// Encrypts queued sends in one transaction, each in a savepoint of its own (one that
    /// fails undoes only itself); answers each, and reports the messages in order. When the
    /// transaction itself fails, each send is tried alone, so each gets its own answer.
    fn encrypt_queued(&self, c: &ferry_store::Conversation, batch: Vec<QueuedSend>) {
        let client = &self.client;
        let results = {
            let store = client.store();
            let provider = Provider::new(store.conn());
            client.mls_identity(&provider).and_then(|identity| {
                provider.transaction(|p| -> Result<Vec<Result<Message>>> {
                    let load = || {
                        ferry_mls::load_group(p, &self.id)?
                            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))
                    };
                    let mut group = load()?;
                    let mut out = Vec::with_capacity(batch.len());
                    for (env, _) in &batch {
                        let r = p.savepoint(|| {
                            self.encrypt_one(&store, p, &mut group, &identity, c, env.clone())
                        });
                        if r.is_err() {
                            // Rolled back: the group in memory went ahead of the disk.
                            group = load()?;
                        }
                        out.push(r);
                    }
                    Ok(out)
                })
            })
        };
        match results {
            Ok(results) => {
                let events = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|m| Event::Message(m.clone()))
                    .collect();
                client.emit(events);
                for ((_, tx), r) in batch.into_iter().zip(results) {
                    let _ = tx.send(r);
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, tx)) = batch.into_iter().next() {
                    let _ = tx.send(Err(e));
                }
            }
            Err(_) => {
                for item in batch {
                    self.encrypt_queued(c, vec![item]);
                }
            }
        }
    }

    /// One send, inside the batch's transaction: the ratchet step (a generation used once is
    /// never used again), the sender's own copy (unpublished until the node has it) with the
    /// id every member derives, and the ciphertext in the group's send outbox.
    fn encrypt_one(
        &self,
        store: &ferry_store::Store,
        p: &Provider<'_>,
        group: &mut ferry_mls::MlsGroup,
        identity: &ferry_mls::Identity,
        c: &ferry_store::Conversation,
        env: Envelope,
    ) -> Result<Message> {
        let mut env = env;
        if env.idempotency_key.is_none() {
            let mut key = vec![0u8; 16];
            rand::thread_rng().fill_bytes(&mut key);
            env.idempotency_key = Some(key);
        }
        let plaintext = env.encode_to_vec();
        let data = ferry_mls::encrypt(group, p, identity, &plaintext)?;
        let id = application_message_id(&self.id, &self.client.inner.installation_id, &plaintext);
        store.sent_message_put(
            &self.id,
            &message_id(&self.id, &data),
            &SentMessage {
                message_id: id.clone(),
                plaintext,
                epoch: ferry_mls::epoch(group),
            },
        )?;
        let m = envelope_message(
            store,
            id.clone(),
            &self.id,
            &self.client.inner.inbox_id,
            &self.client.inner.installation_id,
            env,
            DeliveryStatus::Unpublished,
        )?;
        store.insert_message(&m)?;
        store.send_outbox_push(&self.id, &id, &data)?;
        let hex_id = hex::encode(&c.id);
        if c.kind != ConversationKind::Sync
            && store
                .consent(ConsentEntity::Conversation, &hex_id)?
                .map(|r| r.state)
                != Some(ConsentState::Allowed)
        {
            // Writing in a conversation allows it, on every installation of the inbox.
            let record = ConsentRecord {
                entity_type: ConsentEntity::Conversation,
                entity: hex_id,
                state: ConsentState::Allowed,
                updated_at_ns: crate::now_ns(),
            };
            store.set_consent(&record)?;
            Client::queue_consent(store, &record)?;
        }
        Ok(m)
    }

    /// [`send_optimistic`](Self::send_optimistic) of a text message.
    pub async fn send_text_optimistic(&self, text: &str) -> Result<Vec<u8>> {
        self.send_optimistic(text_envelope(text, crate::now_ns()))
            .await
    }

    /// Publishes every message of this conversation still waiting for the node (sent
    /// optimistically, or left by a node that was down), oldest first; returns how many.
    pub async fn publish_messages(&self) -> Result<u64> {
        self.client.publish_outbox(&self.id).await
    }

    /// Fetches and applies what the node has for this conversation (for a DM: each of its
    /// groups); then, when the sync interval has passed, adds or removes installations.
    pub async fn sync(&self) -> Result<u64> {
        self.require_active()?;
        let mut n = 0;
        for id in self.stitched_ids()? {
            let g = self.client.group_handle(id);
            if g.info()?.is_active() {
                n += self.client.sync_group(&g.id).await?;
                if self
                    .client
                    .chore_due(&g.id, self.client.sync_check_interval())?
                {
                    g.add_missing_installations().await?;
                }
            }
        }
        Ok(n)
    }

    /// The group's MLS epoch (how many commits it has seen).
    pub fn epoch(&self) -> Result<u64> {
        let store = self.client.store();
        let provider = Provider::new(store.conn());
        let group = ferry_mls::load_group(&provider, &self.id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
        Ok(ferry_mls::epoch(&group))
    }

    /// The member inboxes and their installations in the group.
    pub fn members(&self) -> Result<Vec<Member>> {
        let store = self.client.store();
        let provider = Provider::new(store.conn());
        let group = ferry_mls::load_group(&provider, &self.id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
        Ok(members_of(&group))
    }

    /// Adds every installation of each inbox.
    pub async fn add_members(&self, inboxes: &[String]) -> Result<()> {
        self.require_active()?;
        let states = self.client.refresh_inboxes(inboxes).await?;
        for i in inboxes {
            if !states.contains_key(i) {
                return Err(Error::UnknownInbox(i.clone()));
            }
        }
        let current: BTreeSet<[u8; 32]> = self.member_installations().await?;
        let wanted: Vec<(String, [u8; 32])> = states
            .iter()
            .flat_map(|(inbox, s)| {
                s.active_installations()
                    .into_iter()
                    .map(move |i| (inbox.clone(), i))
            })
            .filter(|(_, i)| !current.contains(i))
            .collect();
        self.add_installations(&wanted).await
    }

    /// Removes every installation of each inbox.
    pub async fn remove_members(&self, inboxes: &[String]) -> Result<()> {
        self.require_active()?;
        // Chosen when the commit is staged (again after a lost race, from the group as it is
        // then): every leaf of these inboxes, including one added meanwhile, or a leaf left
        // behind would bring the inbox's other installations back at the next member check.
        self.commit(|group, p, identity| {
            let doomed: Vec<Vec<u8>> = ferry_mls::members(group)
                .into_iter()
                .filter(|c| parse_credential(c).is_some_and(|(inbox, _)| inboxes.contains(&inbox)))
                .collect();
            if doomed.is_empty() {
                return Ok(None);
            }
            let doomed: Vec<&[u8]> = doomed.iter().map(|d| d.as_slice()).collect();
            Ok(Some((
                ferry_mls::stage_remove_members(group, p, identity, &doomed)?,
                None,
            )))
        })
        .await
    }

    /// Removes the leaves with these credentials (those still in the group) in one commit.
    pub(super) async fn remove_leaves(&self, credentials: &[Vec<u8>]) -> Result<()> {
        if credentials.is_empty() {
            return Ok(());
        }
        self.commit(|group, p, identity| {
            let present: Vec<&[u8]> = credentials
                .iter()
                .map(|d| d.as_slice())
                .filter(|d| ferry_mls::members(group).iter().any(|m| m == d))
                .collect();
            if present.is_empty() {
                return Ok(None);
            }
            Ok(Some((
                ferry_mls::stage_remove_members(group, p, identity, &present)?,
                None,
            )))
        })
        .await
    }

    /// Renames the group for every member (a commit). Fails with [`Error::Inactive`] on a
    /// restored conversation.
    pub async fn update_name(&self, name: &str) -> Result<()> {
        self.update_metadata(|m| m.name = name.to_string()).await
    }

    /// Changes the group's description for every member (a commit). Fails with
    /// [`Error::Inactive`] on a restored conversation.
    pub async fn update_description(&self, description: &str) -> Result<()> {
        self.update_metadata(|m| m.description = description.to_string())
            .await
    }

    /// Turns on disappearing messages for every member (a commit in the group's metadata):
    /// application messages sent at or after `settings.from_ns` are deleted on every
    /// installation `settings.in_ns` after they were sent. Fails with [`Error::Inactive`] on a
    /// restored conversation and [`Error::InvalidArgument`] for a duration that is not
    /// positive.
    pub async fn update_message_disappearing_settings(
        &self,
        settings: DisappearingSettings,
    ) -> Result<()> {
        if settings.in_ns <= 0 {
            return Err(Error::InvalidArgument(format!(
                "a disappearing duration must be positive, not {} ns",
                settings.in_ns
            )));
        }
        self.update_metadata(|m| {
            m.message_disappear_from_ns = Some(settings.from_ns);
            m.message_disappear_in_ns = Some(settings.in_ns);
        })
        .await
    }

    /// Turns disappearing messages off for every member (a commit). Messages already stored
    /// keep the expiry they were stored with.
    pub async fn remove_message_disappearing_settings(&self) -> Result<()> {
        self.update_metadata(|m| {
            m.message_disappear_from_ns = None;
            m.message_disappear_in_ns = None;
        })
        .await
    }

    /// The conversation's disappearing-messages setting (`None`: off).
    pub fn message_disappearing_settings(&self) -> Result<Option<DisappearingSettings>> {
        Ok(self.info()?.disappearing)
    }

    /// Whether messages sent here now disappear.
    pub fn is_message_disappearing_enabled(&self) -> Result<bool> {
        Ok(self.info()?.disappearing.is_some())
    }

    pub(super) async fn update_metadata(&self, change: impl Fn(&mut GroupMetadata)) -> Result<()> {
        self.require_active()?;
        self.commit(|group, p, identity| {
            let mut meta = metadata_of(group);
            change(&mut meta);
            Ok(Some((
                ferry_mls::stage_update_metadata(group, p, identity, &meta.encode_to_vec())?,
                None,
            )))
        })
        .await
    }

    /// Brings the group in line with its members' identity logs: adds each member inbox's
    /// installations that are not in the group yet and removes revoked ones. Runs by itself
    /// on send and sync (after their intervals); call it to force it.
    pub async fn add_missing_installations(&self) -> Result<()> {
        self.require_active()?;
        let members = self.members()?;
        let inboxes: Vec<String> = members.iter().map(|m| m.inbox_id.to_string()).collect();
        let states = self.client.refresh_inboxes(&inboxes).await?;
        let current = self.member_installations().await?;
        let mut missing = Vec::new();
        let mut revoked = Vec::new();
        for m in &members {
            let Some(state) = states.get(m.inbox_id.as_str()) else {
                continue;
            };
            for inst in state.active_installations() {
                if !current.contains(&inst) {
                    missing.push((m.inbox_id.to_string(), inst));
                }
            }
            for i in &m.installation_ids {
                if !state.is_active(i.as_slice()) {
                    revoked.push(crate::client::credential(&m.inbox_id, i));
                }
            }
        }
        self.remove_leaves(&revoked).await?;
        if !missing.is_empty() {
            self.add_installations(&missing).await?;
        }
        self.client
            .store()
            .set_cursor(&chore_topic(&self.id), crate::now_ns())?;
        Ok(())
    }

    pub(super) async fn member_installations(&self) -> Result<BTreeSet<[u8; 32]>> {
        Ok(self
            .members()?
            .into_iter()
            .flat_map(|m| m.installation_ids.into_iter().map(|i| *i))
            .collect())
    }

    pub(super) async fn add_installations(&self, wanted: &[(String, [u8; 32])]) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let kps = self.client.fetch_verified_key_packages(wanted).await?;
        if kps.is_empty() {
            return Ok(());
        }
        self.commit(|group, p, identity| {
            let present: BTreeSet<Vec<u8>> = ferry_mls::members(group).into_iter().collect();
            let fresh: Vec<&([u8; 32], Vec<u8>)> = kps
                .iter()
                .filter(|(inst, _)| !present.iter().any(|m| m.starts_with(inst)))
                .collect();
            if fresh.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&[u8]> = fresh.iter().map(|(_, kp)| kp.as_slice()).collect();
            let (commit, welcome) = ferry_mls::stage_add_members(group, p, identity, &refs)?;
            let to: Vec<[u8; 32]> = fresh.iter().map(|(i, _)| *i).collect();
            Ok(Some((commit, Some((welcome, to)))))
        })
        .await
    }

    /// Makes a commit with `op` on the current epoch, publishes it, and confirms it by reading
    /// the group's channel in order: if it comes before any rival commit of its epoch it is
    /// merged (everyone else applies it too); if a rival came first, the rival is applied,
    /// ours is dropped, and the change is made again on the new epoch.
    #[allow(clippy::type_complexity)]
    pub(super) async fn commit(
        &self,
        op: impl Fn(
            &mut MlsGroup,
            &Provider<'_>,
            &ferry_mls::Identity,
        ) -> Result<Option<(Vec<u8>, Option<(Vec<u8>, Vec<[u8; 32]>)>)>>,
    ) -> Result<()> {
        let client = &self.client;
        for _ in 0..COMMIT_ATTEMPTS {
            client.sync_group(&self.id).await?;
            if self.republish_pending().await? {
                // An earlier commit of ours whose publication was in doubt: it is on the
                // node now; see where it landed before making another.
                client.sync_group(&self.id).await?;
                continue;
            }
            // 1. Stage the commit and record it (id, bytes, welcome) in one transaction.
            let staged = {
                let store = client.store();
                let provider = Provider::new(store.conn());
                let identity = client.mls_identity(&provider)?;
                provider.transaction(|p| -> Result<_> {
                    let mut group = ferry_mls::load_group(p, &self.id)?
                        .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
                    let epoch = ferry_mls::epoch(&group);
                    let Some((commit, welcome)) = op(&mut group, p, &identity)? else {
                        return Ok(None);
                    };
                    let id = message_id(&self.id, &commit);
                    // MLS cannot decrypt its own handshake messages, so the channel tells us
                    // ours by this id.
                    store.set_pending_commit(
                        &self.id,
                        &ferry_store::PendingCommit {
                            commit_id: id.clone(),
                            commit: commit.clone(),
                            welcome: welcome.as_ref().map(|(w, to)| encode_welcome_record(w, to)),
                        },
                    )?;
                    Ok(Some((id, commit, epoch)))
                })?
            };
            let Some((commit_id, commit, epoch)) = staged else {
                return Ok(());
            };
            // 2. Publish, outside the transaction.
            match client
                .inner
                .transport
                .send_group_messages(vec![GroupMessageInput {
                    group_id: self.id.clone(),
                    data: commit,
                    commit_epoch: Some(epoch),
                }])
                .await
            {
                Ok(_) => {}
                Err(TransportError::Unavailable(e)) => {
                    // Maybe stored, maybe not: the pending commit stays; the next sync or
                    // commit settles it (republishing the same bytes when needed).
                    return Err(TransportError::Unavailable(e).into());
                }
                Err(e) => {
                    self.drop_pending()?;
                    return Err(e.into());
                }
            }
            // 3. Read the channel up to (and past) our commit: merged if it came first in its
            //    epoch (and its welcome sent), dropped if a rival did.
            client.sync_group(&self.id).await?;
            if client.store().message(&commit_id)?.is_some() {
                return Ok(());
            }
            tracing::debug!("another commit took the epoch first; making the change again");
        }
        Err(Error::CommitRetriesExhausted)
    }

    /// Publishes again a pending commit whose publication failed midway; true when there was
    /// one.
    pub(super) async fn republish_pending(&self) -> Result<bool> {
        let client = &self.client;
        let data = {
            let store = client.store();
            let Some(data) = store.pending_commit(&self.id)?.map(|c| c.commit) else {
                return Ok(false);
            };
            let provider = Provider::new(store.conn());
            let pending = ferry_mls::load_group(&provider, &self.id)?
                .is_some_and(|g| ferry_mls::has_pending_commit(&g));
            if !pending {
                return Ok(false);
            }
            data
        };
        let epoch = self.epoch()?;
        client
            .inner
            .transport
            .send_group_messages(vec![GroupMessageInput {
                group_id: self.id.clone(),
                data,
                commit_epoch: Some(epoch),
            }])
            .await?;
        Ok(true)
    }

    /// Forgets a pending commit the node refused.
    pub(super) fn drop_pending(&self) -> Result<()> {
        let store = self.client.store();
        let provider = Provider::new(store.conn());
        provider.transaction(|p| -> Result<()> {
            if let Some(mut g) = ferry_mls::load_group(p, &self.id)? {
                ferry_mls::clear_pending_commit(&mut g, p)?;
            }
            store.take_pending_commit(&self.id)?;
            Ok(())
        })
    }
}
