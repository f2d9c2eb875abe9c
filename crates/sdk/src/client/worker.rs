//! Staying online: a background task that follows the node's streams and applies what they
//! bring, so [`Client::stream`] subscribers see messages and conversations as they arrive.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use ferry_proto::node::GroupMessage;
use ferry_store::ConversationFilter;
use futures::{FutureExt as _, StreamExt};
use tokio::task::JoinHandle;

use super::Client;
use crate::Result;

/// The background sync of one client: a task on the tokio runtime it was started from. Stops
/// when dropped (or with [`Worker::stop`], which also waits for it to finish).
pub struct Worker {
    task: Option<JoinHandle<()>>,
}

impl Worker {
    /// Stops the worker and waits until it has stopped. It stops between steps: a message
    /// being applied is applied whole (its store transaction) or not at all.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Whether the worker still runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Most pushed messages applied together.
const PUSH_BATCH: usize = 1000;

/// How often the worker deletes messages whose disappearing time has come: an expired
/// message is gone from an online installation at most this long after its time.
pub const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// How long to wait on the streams before a full sync anyway (also the resubscribe period
/// after the node went away).
const FALLBACK_SYNC: Duration = Duration::from_secs(10);

impl Client {
    /// Starts following the node: new welcomes and messages of every active conversation
    /// are applied as the node pushes them, with a full sync at start, after a stream breaks
    /// and every few seconds as a safety net. Member checks run as in [`Client::sync_all`].
    /// Every [`EXPIRY_TICK`] it deletes the messages whose disappearing time has come.
    /// Must be called within a tokio runtime (the worker is a task on it).
    pub fn start_worker(&self) -> Worker {
        let client = self.clone();
        Worker {
            task: Some(tokio::spawn(async move {
                tokio::join!(client.worker_loop(), client.expiry_loop());
            })),
        }
    }

    /// Deletes expired messages every [`EXPIRY_TICK`], for ever (a store error is logged and
    /// tried again at the next tick).
    async fn expiry_loop(&self) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.delete_expired_messages() {
                tracing::warn!(error = %e, "deleting expired messages failed; trying again");
            }
        }
    }

    /// The ids of the active conversations (of one kind, or all with the sync group).
    pub(crate) fn active_group_ids(
        &self,
        kind: Option<ferry_store::ConversationKind>,
    ) -> Result<BTreeSet<Vec<u8>>> {
        Ok(self
            .store()
            .conversations(&ConversationFilter {
                kind,
                include_sync: true,
                active: Some(true),
                ..Default::default()
            })?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }

    fn is_sync_group(&self, id: &[u8]) -> Result<bool> {
        Ok(self
            .store()
            .conversation(id)?
            .is_some_and(|c| c.kind == ferry_store::ConversationKind::Sync))
    }

    /// Applies messages the node pushed, one page per group. The first push of a group in a
    /// subscription syncs the group from its cursor (whatever the catch-up could not apply
    /// comes first); after that the stream alone is enough: it carries every message of the
    /// group in the node's order from that point on (it ends rather than drop one). Then
    /// publishes what the groups' outboxes hold (a confirmed commit's welcome, a message to
    /// send again). True when one was the sync group's.
    async fn apply_pushed(
        &self,
        batch: Vec<GroupMessage>,
        synced: &mut HashSet<Vec<u8>>,
    ) -> Result<bool> {
        let mut by_group: Vec<(Vec<u8>, Vec<GroupMessage>)> = Vec::new();
        for m in batch {
            match by_group.iter_mut().find(|(g, _)| *g == m.group_id) {
                Some((_, ms)) => ms.push(m),
                None => by_group.push((m.group_id.clone(), vec![m])),
            }
        }
        let mut sync_group = false;
        for (gid, ms) in by_group {
            if synced.contains(&gid) {
                self.apply_group_messages(&gid, &ms).await?;
                self.flush_welcome_outbox(&gid).await?;
                self.publish_outbox(&gid).await?;
            } else {
                self.sync_group(&gid).await?;
                synced.insert(gid.clone());
            }
            sync_group |= self.is_sync_group(&gid)?;
        }
        Ok(sync_group)
    }

    async fn worker_loop(&self) {
        loop {
            if let Err(e) = self.follow().await {
                tracing::warn!(error = %e, "worker: node stream interrupted; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// One subscription round: subscribe first, then catch up, then apply what streams in
    /// until the group set changes, a stream ends or the fallback period passes.
    async fn follow(&self) -> Result<()> {
        let groups = self.active_group_ids(None)?;
        let t = &self.inner.transport;
        let mut welcomes = t.subscribe_welcomes(&self.inner.installation_id).await?;
        let mut messages = t
            .subscribe_group_messages(groups.iter().cloned().collect())
            .await?;
        self.sync_all().await?;
        // Catching up joined (or left) conversations: subscribe again with them at once, or
        // their messages would wait for the fallback sync.
        if self.active_group_ids(None)? != groups {
            return Ok(());
        }
        let deadline = tokio::time::sleep(FALLBACK_SYNC);
        tokio::pin!(deadline);
        // Groups synced from their cursor since the subscription began.
        let mut synced = HashSet::new();
        loop {
            tokio::select! {
                _ = &mut deadline => return Ok(()),
                w = welcomes.next() => {
                    let w = w.ok_or_else(|| ferry_transport::TransportError::Closed("welcomes".into()))??;
                    self.apply_welcome(&w).await?;
                    // A new conversation: resubscribe with it included.
                    if self.active_group_ids(None)? != groups {
                        return Ok(());
                    }
                }
                m = messages.next() => {
                    let m = m.ok_or_else(|| ferry_transport::TransportError::Closed("messages".into()))??;
                    // What else has arrived already goes with it: one transaction per group
                    // and batch instead of one per message.
                    let mut batch = vec![m];
                    let mut broken = None;
                    while batch.len() < PUSH_BATCH {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(m))) => batch.push(m),
                            Some(Some(Err(e))) => {
                                broken = Some(e);
                                break;
                            }
                            Some(None) => {
                                broken = Some(ferry_transport::TransportError::Closed("messages".into()));
                                break;
                            }
                            None => break,
                        }
                    }
                    let sync_group_touched = self.apply_pushed(batch, &mut synced).await?;
                    if let Some(e) = broken {
                        return Err(e.into());
                    }
                    // The sync group: answer requests and import replies at once.
                    if sync_group_touched {
                        if let Err(e) = self.process_sync_messages().await {
                            tracing::warn!(error = %e, "history sync step failed");
                        }
                    }
                    // A commit that removed us, or history that restored conversations.
                    if self.active_group_ids(None)? != groups {
                        return Ok(());
                    }
                }
            }
        }
    }
}
