//! Staying online: a background thread that follows the node's streams and applies what they
//! bring, so [`Client::stream`] subscribers see messages and conversations as they arrive.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_store::ConversationFilter;

use super::Client;
use crate::Result;

/// The background sync of one client. Stops when dropped (or with [`Worker::stop`]).
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// How long to wait on the streams before a full sync anyway (also the resubscribe period
/// after the node went away).
const FALLBACK_SYNC: Duration = Duration::from_secs(10);

impl Client {
    /// Starts following the node: new welcomes and messages of every active conversation
    /// are applied as the node pushes them, with a full sync at start, after a stream breaks
    /// and every few seconds as a safety net. Member checks run as in [`Client::sync_all`].
    pub fn start_worker(&self) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let client = self.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-worker".into())
            .spawn(move || client.worker_loop(&flag))
            .expect("spawn the worker thread");
        Worker {
            stop,
            thread: Some(thread),
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

    fn worker_loop(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self.follow(stop) {
                tracing::warn!(error = %e, "worker: node stream interrupted; retrying");
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// One subscription round: subscribe first, then catch up, then apply what streams in
    /// until the group set changes, a stream ends or the fallback period passes.
    fn follow(&self, stop: &AtomicBool) -> Result<()> {
        let groups = self.active_group_ids(None)?;
        let t = &self.inner.transport;
        let welcomes = t.subscribe_welcomes(&self.inner.installation_id)?;
        let messages = t.subscribe_group_messages(groups.iter().cloned().collect())?;
        self.sync_all()?;
        // Catching up joined (or left) conversations: subscribe again with them at once, or
        // their messages would wait for the fallback sync.
        if self.active_group_ids(None)? != groups {
            return Ok(());
        }
        let deadline = Instant::now() + FALLBACK_SYNC;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            crossbeam_channel::select! {
                recv(welcomes.receiver()) -> w => {
                    let w = w.map_err(|_| ferry_transport::TransportError::Closed("welcomes".into()))??;
                    self.apply_welcome(&w)?;
                    // A new conversation: resubscribe with it included.
                    if self.active_group_ids(None)? != groups {
                        return Ok(());
                    }
                }
                recv(messages.receiver()) -> m => {
                    let m = m.map_err(|_| ferry_transport::TransportError::Closed("messages".into()))??;
                    // Apply in order: whatever came before it too.
                    self.sync_group(&m.group_id)?;
                    // The sync group: answer requests and import replies at once.
                    if self.is_sync_group(&m.group_id)? {
                        if let Err(e) = self.process_sync_messages() {
                            tracing::warn!(error = %e, "history sync step failed");
                        }
                    }
                    // A commit that removed us, or history that restored conversations.
                    if self.active_group_ids(None)? != groups {
                        return Ok(());
                    }
                }
                default(Duration::from_millis(100)) => {}
            }
        }
        Ok(())
    }
}
