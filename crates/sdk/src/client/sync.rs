//! Pulling from the node: welcomes (joining conversations) and group messages. Each item is
//! applied in one transaction with the cursor that says it was handled, so a crash midway
//! neither loses nor repeats one.

use std::collections::HashSet;

use ferry_mls::{Processed, Provider};
use ferry_proto::message::Envelope;
use ferry_proto::node::{GroupMessage, Welcome};
use ferry_store::{
    ConsentState, ConversationFilter, ConversationKind, DeliveryStatus, Membership, SentMessage,
};
use ferry_transport::Page;
use prost::Message as _;
use serde::Serialize;

use super::conversations::{
    conversation_row, decode_welcome_record, envelope_message, membership_message,
};
use super::{application_message_id, message_id, parse_credential, Client, Event, S_KNOWN_OWN};
use crate::{Error, Result};

const PAGE: u32 = 200;
/// Most messages one publish sends to the node in one call (and bytes, unless one message
/// alone is larger).
pub(crate) const PUBLISH_BATCH: usize = 100;
const PUBLISH_BATCH_BYTES: usize = 2 << 20;
/// Conversations whose first page [`Client::sync_all`] fetches ahead.
const FETCH_AHEAD: usize = 4;

type FetchAhead = tokio::task::JoinHandle<ferry_transport::Result<Page<GroupMessage>>>;

/// A page fetched ahead, not needed any more if dropped before it is joined.
struct AbortOnDrop(FetchAhead);

impl AbortOnDrop {
    /// The page, or None when its fetch failed (the caller fetches it again and sees why).
    async fn join(mut self) -> Option<Page<GroupMessage>> {
        (&mut self.0).await.ok().and_then(|r| r.ok())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches still under way when `sync_all` returns early are not needed any more.
struct AbortAll(std::collections::VecDeque<FetchAhead>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for h in self.0.iter() {
            h.abort();
        }
    }
}
const WELCOMES_TOPIC: &str = "welcomes";
/// Conversations with activity this recent get a new own installation at once.
const RECENT_NS: i64 = 90 * 24 * 3600 * 1_000_000_000;

fn group_topic(group_id: &[u8]) -> String {
    format!("group/{}", hex::encode(group_id))
}

/// Moves a cursor forward to `seq`; false when it is already there or past it.
fn advance_cursor(store: &ferry_store::Store, topic: &str, seq: u64) -> Result<bool> {
    if (store.cursor(topic)? as u64) >= seq {
        return Ok(false);
    }
    store.set_cursor(topic, seq as i64)?;
    Ok(true)
}

/// A message of ours seen on the node: published, out of the send outbox.
fn confirm_published(store: &ferry_store::Store, group_id: &[u8], id: &[u8]) -> Result<()> {
    if store.send_outbox_remove(group_id, id)? {
        store.set_delivery_status(id, DeliveryStatus::Published)?;
    }
    Ok(())
}

/// Errors of this installation's own storage, which must surface instead of moving a cursor
/// past a message that was never applied.
fn is_local(e: &ferry_mls::Error) -> bool {
    matches!(
        e,
        ferry_mls::Error::Sqlite(_) | ferry_mls::Error::Migration(_)
    )
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Conversations joined from welcomes.
    pub conversations_joined: u64,
    /// Group messages applied (application messages and commits).
    pub messages_processed: u64,
    /// Conversations synced.
    pub conversations_synced: u64,
    /// Conversations a new installation of this inbox was added to.
    pub installations_added_to: u64,
    /// History archives (replies to this installation's sync requests) imported.
    pub history_imported: u64,
}

/// What one node item came to.
enum Outcome {
    Applied(Vec<Event>),
    Skipped,
}

impl Client {
    /// Joins the conversations whose welcomes wait on the node; returns how many.
    pub async fn sync_welcomes(&self) -> Result<u64> {
        let mut joined = 0;
        loop {
            let after = self.store().cursor(WELCOMES_TOPIC)? as u64;
            let page = self
                .inner
                .transport
                .query_welcomes(&self.inner.installation_id, after, PAGE)
                .await?;
            let last = page.last_page;
            // A node that answers with nothing new must not keep us here.
            let fresh: Vec<_> = page
                .items
                .into_iter()
                .filter(|w| w.sequence_id > after)
                .collect();
            if fresh.is_empty() {
                break;
            }
            for w in fresh {
                if self.apply_welcome(&w).await? {
                    joined += 1;
                }
            }
            if last {
                break;
            }
        }
        Ok(joined)
    }

    /// Joins from one welcome (if it is new), then catches the group up.
    pub(crate) async fn apply_welcome(&self, w: &Welcome) -> Result<bool> {
        let step = |refreshed: &HashSet<String>| -> Result<Option<(Vec<u8>, Event)>> {
            let store = self.store();
            let provider = Provider::new(store.conn());
            let res = provider.transaction(|p| -> Result<Option<(Vec<u8>, Event)>> {
                // Checked inside the transaction: another process may have just applied it.
                if !advance_cursor(&store, WELCOMES_TOPIC, w.sequence_id)? {
                    return Ok(None);
                }
                // Removed earlier and now added again: the old state gives way. An active
                // group is never replaced.
                let left = |gid: &[u8]| {
                    matches!(
                        store.conversation(gid),
                        Ok(Some(c)) if c.membership == Membership::Left
                    )
                };
                let group = match ferry_mls::join_from_welcome_replacing(p, &w.data, left) {
                    Ok(g) => g,
                    Err(ferry_mls::Error::GroupExists) => return Ok(None),
                    Err(e) if is_local(&e) => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(error = %e, "welcome skipped");
                        return Ok(None);
                    }
                };
                // Every leaf must be an installation its inbox's log holds (a revoked one
                // still waiting for its removal commit is no reason to refuse the group).
                self.verify_group_cached(&group, refreshed)?;
                let row = conversation_row(&self.inner.inbox_id, &group, Membership::Active);
                if row.kind == ConversationKind::Sync {
                    // A sync group holds this inbox's installations and nobody else's.
                    for cred in ferry_mls::members(&group) {
                        match parse_credential(&cred) {
                            Some((inbox, _)) if inbox == self.inner.inbox_id => {}
                            _ => {
                                return Err(Error::InvalidMember(
                                    "a sync group with another inbox's installation".into(),
                                ))
                            }
                        }
                    }
                }
                let id = row.id.clone();
                match store.conversation(&id)? {
                    Some(_) => {
                        // A restored conversation comes back to life, history and all.
                        store.set_membership(&id, Membership::Active)?;
                        // The group's channel is read again from its start with the new state:
                        // a left group's cursor already passed the commits after this welcome
                        // (the old state could not apply them), and skipping them would leave
                        // this installation behind in the welcome's epoch for good. Older
                        // messages fail their epoch check and stored ones are not stored twice.
                        store.set_cursor(&group_topic(&id), 0)?;
                        store.update_conversation_metadata(&row)?;
                    }
                    None => {
                        store.insert_conversation(&row)?;
                    }
                }
                // What this inbox created (on another of its installations) is allowed here
                // too; what others started stays unknown until the person decides.
                if row.creator_inbox_id == self.inner.inbox_id
                    && row.kind != ConversationKind::Sync
                    && store
                        .consent(ferry_store::ConsentEntity::Conversation, &hex::encode(&id))?
                        .is_none()
                {
                    // Dated when the conversation was created, as the creating installation
                    // decided: any later decision of the inbox (a denial) wins over it.
                    store.set_consent(&ferry_store::ConsentRecord {
                        entity_type: ferry_store::ConsentEntity::Conversation,
                        entity: hex::encode(&id),
                        state: ferry_store::ConsentState::Allowed,
                        updated_at_ns: row.created_at_ns,
                    })?;
                }
                let c = store.conversation(&id)?.expect("just written");
                Ok(Some((id, Event::Conversation(c))))
            });
            match res {
                Ok(v) => Ok(v),
                Err(Error::InvalidMember(reason)) => {
                    tracing::warn!(%reason, "welcome rejected: a member is not in its inbox's log");
                    advance_cursor(&store, WELCOMES_TOPIC, w.sequence_id)?;
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        let outcome = self.with_identities(step).await?;
        let Some((id, event)) = outcome else {
            return Ok(false);
        };
        self.emit(vec![event]);
        self.sync_group(&id).await?;
        Ok(true)
    }

    /// Applies everything the node has for one group after its cursor; returns how many
    /// messages were applied.
    pub(crate) async fn sync_group(&self, group_id: &[u8]) -> Result<u64> {
        self.sync_group_from(group_id, None).await
    }

    /// [`sync_group`](Self::sync_group), starting with a first page fetched ahead (by
    /// [`sync_all`](Self::sync_all) while it applied the conversation before).
    async fn sync_group_from(
        &self,
        group_id: &[u8],
        mut prefetched: Option<Page<GroupMessage>>,
    ) -> Result<u64> {
        let mut applied = 0;
        let mut next_page: Option<AbortOnDrop> = None;
        loop {
            let after = self.store().cursor(&group_topic(group_id))? as u64;
            let fetched = match next_page.take() {
                Some(h) => h.join().await,
                None => prefetched.take(),
            };
            let (page, ahead) = match fetched {
                Some(p) => (p, true),
                None => (
                    self.inner
                        .transport
                        .query_group_messages(group_id, after, PAGE)
                        .await?,
                    false,
                ),
            };
            let last = page.last_page;
            let fresh: Vec<_> = page
                .items
                .into_iter()
                .filter(|m| m.sequence_id > after)
                .collect();
            // More to come: the next page is fetched while this one applies.
            if let (false, Some(m)) = (last, fresh.last()) {
                let (transport, id, next) = (
                    self.inner.transport.clone(),
                    group_id.to_vec(),
                    m.sequence_id,
                );
                next_page = Some(AbortOnDrop(tokio::spawn(async move {
                    transport.query_group_messages(&id, next, PAGE).await
                })));
            }
            if !fresh.is_empty() {
                applied += self.apply_group_messages(group_id, &fresh).await?;
            }
            // The node said nothing follows; or it answered with nothing new (a page fetched
            // ahead may just be stale: then ask again).
            if last || (fresh.is_empty() && !ahead) {
                break;
            }
        }
        self.flush_welcome_outbox(group_id).await?;
        self.publish_outbox(group_id).await?;
        Ok(applied)
    }

    /// Publishes the messages waiting in a group's send outbox, oldest first, in batches of
    /// up to [`PUBLISH_BATCH`] per call to the node; each leaves the outbox (and turns
    /// published) once the node took it. One publisher per group at a time: a send that
    /// finds another publishing waits for it, and then usually finds its own message gone
    /// out with that batch. Returns how many went out.
    pub(crate) async fn publish_outbox(&self, group_id: &[u8]) -> Result<u64> {
        let lock = super::lock(&self.inner.publish_locks)
            .entry(group_id.to_vec())
            .or_default()
            .clone();
        let _one_publisher = lock.lock().await;
        let mut sent = 0;
        loop {
            let mut pending = self.store().send_outbox(group_id)?;
            if pending.is_empty() {
                break;
            }
            let mut bytes = 0;
            let keep = pending
                .iter()
                .take(PUBLISH_BATCH)
                .take_while(|e| {
                    bytes += e.data.len();
                    bytes <= PUBLISH_BATCH_BYTES
                })
                .count()
                .max(1);
            pending.truncate(keep);
            let batch = pending
                .iter()
                .map(|e| ferry_proto::node::GroupMessageInput {
                    group_id: group_id.to_vec(),
                    data: e.data.clone(),
                    commit_epoch: None,
                })
                .collect();
            self.inner.transport.send_group_messages(batch).await?;
            let store = self.store();
            Provider::new(store.conn()).transaction(|_| -> Result<()> {
                for e in &pending {
                    store.send_outbox_remove(group_id, &e.message_id)?;
                    store.set_delivery_status(&e.message_id, DeliveryStatus::Published)?;
                }
                Ok(())
            })?;
            sent += pending.len() as u64;
        }
        Ok(sent)
    }

    /// Applies a page of a group's messages (in the node's order) in one transaction: the
    /// group's MLS state is loaded once, each message applies in a savepoint of its own
    /// (with the cursor that says it was handled, so one bad message undoes only itself),
    /// and everything commits at once. Returns how many messages were applied.
    pub(crate) async fn apply_group_messages(
        &self,
        group_id: &[u8],
        page: &[GroupMessage],
    ) -> Result<u64> {
        let mut applied = 0;
        self.with_identities(|refreshed| {
            // A step that stopped for a missing identity log kept what it had applied: it is
            // not applied again when the step runs again (the cursor says so).
            let (n, events) = self.apply_page_step(group_id, page, refreshed)?;
            applied += n;
            self.emit(events);
            Ok(())
        })
        .await?;
        Ok(applied)
    }

    /// [`apply_group_messages`](Self::apply_group_messages) with the identity logs at hand.
    /// When one is missing, what came before the message that needs it commits, and the step
    /// fails with [`Error::IdentityMiss`] (the events of what committed are emitted first).
    fn apply_page_step(
        &self,
        group_id: &[u8],
        page: &[GroupMessage],
        refreshed: &HashSet<String>,
    ) -> Result<(u64, Vec<Event>)> {
        let _in_order = self
            .inner
            .apply_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let topic = group_topic(group_id);
        let store = self.store();
        let provider = Provider::new(store.conn());
        let mut applied = 0;
        let mut events = Vec::new();
        let res = provider.transaction_keeping(
            |p| -> Result<()> {
                let mut group = ferry_mls::load_group(p, group_id)?;
                for m in page {
                    let step = p.savepoint(|| {
                        self.apply_one(&store, p, &mut group, group_id, &topic, m, refreshed)
                    });
                    match step {
                        Ok(Outcome::Applied(ev)) => {
                            applied += 1;
                            events.extend(ev);
                        }
                        Ok(Outcome::Skipped) => {}
                        Err(Error::InvalidMember(reason)) => {
                            tracing::warn!(%reason, seq = m.sequence_id, "commit rejected");
                            // Rolled back: the group in memory went ahead of the disk.
                            group = ferry_mls::load_group(p, group_id)?;
                            advance_cursor(&store, &topic, m.sequence_id)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            },
            |e| matches!(e, Error::IdentityMiss(_)),
        );
        drop(store);
        match res {
            Ok(()) => Ok((applied, events)),
            Err(e @ Error::IdentityMiss(_)) => {
                self.emit(events);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// One message of a page, in its savepoint: the cursor moves past it and what it
    /// carries is applied (or it is skipped).
    #[allow(clippy::too_many_arguments)]
    fn apply_one(
        &self,
        store: &ferry_store::Store,
        p: &Provider<'_>,
        group: &mut Option<ferry_mls::MlsGroup>,
        group_id: &[u8],
        topic: &str,
        m: &GroupMessage,
        refreshed: &HashSet<String>,
    ) -> Result<Outcome> {
        let id = message_id(group_id, &m.data);
        // Checked inside the transaction: another process may have just applied it.
        if !advance_cursor(store, topic, m.sequence_id)? {
            return Ok(Outcome::Skipped);
        }
        let Some(group) = group.as_mut() else {
            return Ok(Outcome::Skipped);
        };
        if store
            .pending_commit(group_id)?
            .is_some_and(|c| c.commit_id == id)
        {
            let had = ferry_mls::has_pending_commit(group);
            let welcome = self.take_pending(store, group_id)?;
            if !had {
                // A rival commit of the same epoch came first and replaced ours.
                return Ok(Outcome::Skipped);
            }
            // Ours came first in its epoch: everyone applies it, so do we; the welcome
            // for the installations it adds goes out once this commits.
            let before = super::conversations::inboxes_of(group);
            ferry_mls::merge_pending_commit(group, p)?;
            if let Some(w) = welcome {
                store.welcome_outbox_push(group_id, &w)?;
            }
            return self.record_own_commit(
                store,
                group,
                group_id,
                id,
                m.created_at_ns,
                Some(&before),
            );
        }
        // One of our application messages: published, or (ordered after a commit it
        // predates) to be sent again.
        if let Some(sent) = store.sent_message_take(group_id, &id)? {
            self.own_message_seen(store, p, group, group_id, sent)?;
            return Ok(Outcome::Skipped);
        }
        let processed = match ferry_mls::process(group, p, &m.data) {
            Ok(x) => x,
            Err(e) if is_local(&e) => return Err(e.into()),
            Err(e) => {
                // Our own message coming back (MLS cannot open its own), one from before
                // we joined, a commit that lost its epoch, or garbage: the node's order
                // is the truth, so move on. Our own one is published now, whether or not
                // its send heard back from the node.
                confirm_published(store, group_id, &id)?;
                tracing::debug!(error = %e, seq = m.sequence_id, "group message skipped");
                return Ok(Outcome::Skipped);
            }
        };
        match processed {
            Processed::Application { sender, plaintext } => {
                let Some((inbox, inst)) = parse_credential(&sender) else {
                    return Ok(Outcome::Skipped);
                };
                // The id hashes the plaintext: a copy sent again in a later epoch is the
                // same message.
                let id = application_message_id(group_id, &inst, &plaintext);
                let Ok(env) = Envelope::decode(plaintext.as_slice()) else {
                    tracing::warn!("undecodable application message skipped");
                    return Ok(Outcome::Skipped);
                };
                let msg = envelope_message(
                    store,
                    id,
                    group_id,
                    &inbox,
                    &inst,
                    env,
                    DeliveryStatus::Published,
                )?;
                // Already here (an archive brought it): nothing new to report.
                if !store.insert_message(&msg)? {
                    return Ok(Outcome::Skipped);
                }
                Ok(Outcome::Applied(vec![Event::Message(msg)]))
            }
            Processed::OwnCommit { .. } => {
                self.take_pending(store, group_id)?;
                self.record_own_commit(store, group, group_id, id, m.created_at_ns, None)
            }
            Processed::Commit {
                committer,
                added,
                removed,
                self_removed,
                ..
            } => {
                // Every leaf the commit adds must be an installation its inbox's log
                // holds (active, or revoked since): otherwise the whole commit is refused
                // (the transaction rolls back) and every honest member refuses it alike.
                let keys = ferry_mls::member_keys(group);
                let sync_group = matches!(
                    store.conversation(group_id)?,
                    Some(c) if c.kind == ConversationKind::Sync
                );
                for cred in &added {
                    // A sync group holds this inbox's installations and nobody else's.
                    if sync_group
                        && parse_credential(cred).map(|(inbox, _)| inbox)
                            != Some(self.inner.inbox_id.clone())
                    {
                        return Err(Error::InvalidMember(
                            "a commit adding another inbox to a sync group".into(),
                        ));
                    }
                    let key = keys
                        .iter()
                        .find(|(c, _)| c == cred)
                        .map(|(_, k)| k.clone())
                        .unwrap_or_default();
                    if self.verify_added_leaf_cached(cred, &key, refreshed)? {
                        // Added before its revocation: the member check removes it now.
                        store.set_cursor(&super::conversations::chore_topic(group_id), 0)?;
                    }
                }
                let (inbox, inst) = parse_credential(&committer).unwrap_or_default();
                let old = store.conversation(group_id)?;
                let update = super::conversations::commit_update(
                    group,
                    &inbox,
                    None,
                    &added,
                    &removed,
                    old.as_ref(),
                );
                let msg = membership_message(id, group_id, &inst, m.created_at_ns, &update);
                let fresh = store.insert_message(&msg)?;
                let row = conversation_row(&self.inner.inbox_id, group, Membership::Active);
                store.update_conversation_metadata(&row)?;
                if self_removed {
                    store.set_membership(group_id, Membership::Left)?;
                }
                Ok(if fresh {
                    Outcome::Applied(vec![Event::Message(msg)])
                } else {
                    Outcome::Applied(Vec::new())
                })
            }
            _ => Ok(Outcome::Skipped),
        }
    }

    /// One of our application messages shown by the channel. Encrypted in the epoch it is in
    /// now, it is published; encrypted before a commit the channel put ahead of it, the members
    /// that commit added cannot read it, so it goes out again in the current epoch (same
    /// plaintext, same id: those who read the first copy keep one).
    fn own_message_seen(
        &self,
        store: &ferry_store::Store,
        p: &Provider<'_>,
        group: &mut ferry_mls::MlsGroup,
        group_id: &[u8],
        sent: SentMessage,
    ) -> Result<()> {
        // The copy the channel shows needs no publishing any more.
        store.send_outbox_remove(group_id, &sent.message_id)?;
        let now = ferry_mls::epoch(group);
        let active = matches!(
            store.conversation(group_id)?,
            Some(c) if c.membership == Membership::Active
        );
        if sent.epoch >= now || !active {
            store.set_delivery_status(&sent.message_id, DeliveryStatus::Published)?;
            return Ok(());
        }
        let identity = self.mls_identity(p)?;
        let data = match ferry_mls::encrypt(group, p, &identity, &sent.plaintext) {
            Ok(d) => d,
            Err(e) if is_local(&e) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot send a message again in the current epoch");
                store.set_delivery_status(&sent.message_id, DeliveryStatus::Published)?;
                return Ok(());
            }
        };
        tracing::debug!(
            from_epoch = sent.epoch,
            to_epoch = now,
            message = %hex::encode(&sent.message_id),
            "own message ordered after a commit it predates: sending it again"
        );
        store.set_delivery_status(&sent.message_id, DeliveryStatus::Unpublished)?;
        store.send_outbox_push(group_id, &sent.message_id, &data)?;
        store.sent_message_put(
            group_id,
            &message_id(group_id, &data),
            &SentMessage { epoch: now, ..sent },
        )?;
        Ok(())
    }

    /// Forgets this installation's pending commit record; returns its welcome, if any.
    fn take_pending(&self, store: &ferry_store::Store, group_id: &[u8]) -> Result<Option<Vec<u8>>> {
        let welcome = store.take_pending_commit(group_id)?.and_then(|c| c.welcome);
        Ok(welcome)
    }

    /// Sends the welcome of a confirmed commit of ours, if one is waiting.
    pub(crate) async fn flush_welcome_outbox(&self, group_id: &[u8]) -> Result<()> {
        let waiting = self.store().welcome_outbox(group_id)?;
        for entry in waiting {
            if let Some((welcome, to)) = decode_welcome_record(&entry.welcome) {
                self.deliver_welcome(&welcome, &to).await?;
            }
            self.store().welcome_outbox_remove(entry.id)?;
        }
        Ok(())
    }

    /// The row of this installation's commit, confirmed by the channel's order.
    fn record_own_commit(
        &self,
        store: &ferry_store::Store,
        group: &ferry_mls::MlsGroup,
        group_id: &[u8],
        id: Vec<u8>,
        at_ns: i64,
        before: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Outcome> {
        let old = store.conversation(group_id)?;
        let update = super::conversations::commit_update(
            group,
            &self.inner.inbox_id,
            before,
            &[],
            &[],
            old.as_ref(),
        );
        let msg = membership_message(id, group_id, &self.inner.installation_id, at_ns, &update);
        store.insert_message(&msg)?;
        let row = conversation_row(&self.inner.inbox_id, group, Membership::Active);
        store.update_conversation_metadata(&row)?;
        Ok(Outcome::Applied(vec![Event::Message(msg)]))
    }

    /// Joins new conversations, then syncs every active one (member checks included when
    /// their interval has passed).
    pub async fn sync_all(&self) -> Result<SyncReport> {
        let mut report = SyncReport {
            conversations_joined: self.sync_welcomes().await?,
            ..Default::default()
        };
        // History sync and preference updates travel over the inbox's sync group.
        if let Err(e) = self.ensure_sync_group().await {
            tracing::warn!(error = %e, "cannot set up the sync group yet");
        }
        // One sync group per inbox in the end, whatever new installations had to create.
        if let Err(e) = self.converge_sync_groups().await {
            tracing::warn!(error = %e, "sync groups not settled yet");
        }
        let conversations = self.store().conversations(&ConversationFilter {
            include_sync: true,
            active: Some(true),
            ..Default::default()
        })?;
        // The first page of the next few conversations is fetched while this one applies:
        // the node's round trips overlap with decrypting.
        let mut ahead = AbortAll(std::collections::VecDeque::new());
        let fetch_ahead = |c: &ferry_store::Conversation| -> Result<FetchAhead> {
            let after = self.store().cursor(&group_topic(&c.id))? as u64;
            let transport = self.inner.transport.clone();
            let id = c.id.clone();
            Ok(tokio::spawn(async move {
                transport.query_group_messages(&id, after, PAGE).await
            }))
        };
        for (i, c) in conversations.iter().enumerate() {
            while ahead.0.len() < FETCH_AHEAD {
                let Some(next) = conversations.get(i + ahead.0.len()) else {
                    break;
                };
                ahead.0.push_back(fetch_ahead(next)?);
            }
            // A fetch that failed is made again (and its error surfaces) by the sync itself.
            let first = match ahead.0.pop_front() {
                Some(h) => h.await.ok().and_then(|r| r.ok()),
                None => None,
            };
            // One broken conversation must not stop the others; the error is logged and the
            // conversation tried again next time.
            // The hidden sync group is synced like any other, but never counted: the report
            // speaks of the person's conversations.
            let shown = c.kind != ConversationKind::Sync;
            match self.sync_group_from(&c.id, first).await {
                Ok(n) if shown => report.messages_processed += n,
                Ok(_) => {}
                Err(e @ Error::Transport(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(conversation = %hex::encode(&c.id), error = %e, "sync failed");
                    continue;
                }
            }
            report.conversations_synced += shown as u64;
            if self.chore_due(&c.id, self.sync_check_interval())? {
                // A member check that fails (say, a dead key package) must not stop the rest.
                if let Err(e) = self
                    .group_handle(c.id.clone())
                    .add_missing_installations()
                    .await
                {
                    tracing::warn!(conversation = %hex::encode(&c.id), error = %e, "member check failed");
                }
            }
        }
        match self.add_new_own_installations().await {
            Ok(n) => report.installations_added_to += n,
            Err(e) => tracing::warn!(error = %e, "adding new own installations failed"),
        }
        // A rotation or a history request a crash or a dead node left undone.
        self.resume_history_chores().await;
        // Preference updates made while the node was away go out now.
        if let Err(e) = self.flush_preference_outbox().await {
            tracing::warn!(error = %e, "preference updates not sent yet");
        }
        match self.process_sync_messages().await {
            Ok(n) => report.history_imported += n,
            Err(e) => tracing::warn!(error = %e, "history sync step failed"),
        }
        Ok(report)
    }

    /// When this inbox's log has gained installations since we last looked, adds them to
    /// every conversation active here in the last 90 days whose consent is not denied, without
    /// waiting for a send or the sync interval (a new device gets its conversations at once).
    /// Returns in how many conversations it ran the member check.
    pub async fn add_new_own_installations(&self) -> Result<u64> {
        let me = self.inner.inbox_id.clone();
        let Some(state) = self
            .refresh_inboxes(std::slice::from_ref(&me))
            .await?
            .remove(&me)
        else {
            return Ok(0);
        };
        self.note_revocations(&state, false)?;
        let active: Vec<String> = state
            .active_installations()
            .iter()
            .map(hex::encode)
            .collect();
        let known: Option<Vec<String>> = self.store().setting(S_KNOWN_OWN)?.map(|v| {
            String::from_utf8_lossy(&v)
                .split(',')
                .map(str::to_string)
                .collect()
        });
        let mine = hex::encode(self.inner.installation_id);
        let new: Vec<&String> = active
            .iter()
            .filter(|i| **i != mine && !known.as_ref().is_some_and(|k| k.contains(i)))
            .collect();
        let mut checked = 0;
        // The first look only records what is there (this installation is new itself).
        if known.is_some() && !new.is_empty() {
            let since = crate::now_ns() - RECENT_NS;
            let conversations = self.store().conversations(&ConversationFilter {
                include_sync: true,
                active: Some(true),
                ..Default::default()
            })?;
            for c in conversations {
                // The sync group always; others when recent and not denied.
                let recent = c.kind == ConversationKind::Sync
                    || c.last_message_ns
                        .unwrap_or(c.created_at_ns)
                        .max(c.created_at_ns)
                        >= since;
                if !recent || self.conversation_consent(&c)? == ConsentState::Denied {
                    continue;
                }
                match self
                    .group_handle(c.id.clone())
                    .add_missing_installations()
                    .await
                {
                    // Counted for the person's conversations, not the hidden sync group.
                    Ok(()) => checked += (c.kind != ConversationKind::Sync) as u64,
                    Err(e) => {
                        tracing::warn!(conversation = %hex::encode(&c.id), error = %e, "adding own installation failed");
                        // Try again on the next sync.
                        return Ok(checked);
                    }
                }
            }
        }
        if known.is_some() && !new.is_empty() {
            // The new installations are in the sync group now: they need the HMAC secret
            // and the consent decisions made before they came.
            self.share_hmac_secret().await?;
            self.share_consent()?;
            self.emit(vec![Event::DeviceSync(
                super::DeviceSyncEvent::InstallationsAdded {
                    installations: new.iter().filter_map(|s| s.parse().ok()).collect(),
                    conversations: checked,
                },
            )]);
        }
        self.store()
            .set_setting(S_KNOWN_OWN, active.join(",").as_bytes())?;
        Ok(checked)
    }
}
