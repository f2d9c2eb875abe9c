//! The gRPC service: checks requests, calls the storage, relays to subscribers.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_identity::InboxState;
use ferry_proto::identity::{unsigned_identity_update::Action, UnsignedIdentityUpdate};
use ferry_proto::node::node_server::Node;
use ferry_proto::node::*;
use prost::Message;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::access::{self, AccessPolicy, Caller, Class, Limiter, Need};
use crate::storage::{InstallationChange, NodeStorage, StorageError};

/// Largest key package accepted.
pub const MAX_KEY_PACKAGE_BYTES: usize = 64 * 1024;
/// Largest group message or welcome accepted.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Query page size when the request gives none.
pub const DEFAULT_QUERY_LIMIT: u32 = 100;
/// Largest query page.
pub const MAX_QUERY_LIMIT: u32 = 1000;
/// Most inboxes or installations one lookup request may name.
pub const MAX_IDS_PER_REQUEST: usize = 1000;
/// Messages a subscriber may fall behind before its stream is ended.
const SUBSCRIBER_BUFFER: usize = 256;

/// A server stream of the node's responses.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The `Node` service over a [`NodeStorage`].
pub(crate) struct NodeService {
    storage: Arc<dyn NodeStorage>,
    /// Held while storing and broadcasting, so subscribers see sequence-id order.
    write_order: Arc<Mutex<()>>,
    group_messages: broadcast::Sender<Arc<GroupMessage>>,
    welcomes: broadcast::Sender<Arc<Welcome>>,
    /// Becomes true when the node shuts down; open streams end then.
    shutdown: watch::Receiver<bool>,
    policy: AccessPolicy,
    limiter: Limiter,
}

impl NodeService {
    pub(crate) fn new(
        storage: Arc<dyn NodeStorage>,
        policy: AccessPolicy,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let service = NodeService {
            storage,
            write_order: Arc::new(Mutex::new(())),
            group_messages: broadcast::channel(SUBSCRIBER_BUFFER).0,
            welcomes: broadcast::channel(SUBSCRIBER_BUFFER).0,
            shutdown,
            limiter: Limiter::new(policy.limits),
            policy,
        };
        if service.storage.is_shared() {
            service.start_feed();
        }
        service
    }

    /// Over a shared storage, subscribers are fed from what the database has committed, by
    /// whichever replica: a thread waits for the storage's write notifications (or a poll
    /// interval) and relays every group message and welcome after the last one it relayed,
    /// in sequence-id order. It stops when the node shuts down.
    fn start_feed(&self) {
        let storage = Arc::clone(&self.storage);
        let group_messages = self.group_messages.clone();
        let welcomes = self.welcomes.clone();
        let shutdown = self.shutdown.clone();
        // Read the heads before the node serves anything, so that nothing stored after a
        // subscription is taken for old. (On a thread of its own: a blocking database client
        // may not run on an async runtime's thread.)
        let initial = {
            let storage = Arc::clone(&storage);
            std::thread::spawn(move || storage.heads())
                .join()
                .ok()
                .and_then(|h| h.ok())
        };
        let spawned = std::thread::Builder::new()
            .name("ferry-node-feed".into())
            .spawn(move || {
                let mut heads = initial;
                while !*shutdown.borrow() {
                    let (m, w) = match heads {
                        Some(h) => h,
                        None => match storage.heads() {
                            Ok(h) => h,
                            Err(e) => {
                                tracing::warn!(error = %e, "feed: cannot read the heads");
                                std::thread::sleep(FEED_POLL);
                                continue;
                            }
                        },
                    };
                    match relay_after(&*storage, m, w, &group_messages, &welcomes) {
                        Ok(h) => heads = Some(h),
                        Err(e) => {
                            tracing::warn!(error = %e, "feed: cannot read new rows");
                            heads = Some((m, w));
                        }
                    }
                    if let Err(e) = storage.wait_for_writes(FEED_POLL) {
                        tracing::debug!(error = %e, "feed: waiting for writes failed");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the feed thread; pushes will not be relayed");
        }
    }

    /// Checks who makes the call `method` (see [`crate::access`]) and takes `cost` from its
    /// rate limit. `named` is the installation the request names, for calls only that
    /// installation may make. A failed check also counts against the caller's address.
    async fn authorize<T: Message>(
        &self,
        request: &Request<T>,
        method: &'static str,
        need: Need,
        named: Option<&[u8]>,
        class: Class,
        cost: usize,
    ) -> Result<Caller, Status> {
        let mut caller = Caller {
            installation: None,
            addr: request.remote_addr().map(|a| a.ip()),
        };
        if self.policy.authenticate {
            let checked = match access::signed_headers(request.metadata()) {
                Ok(None) => Ok(None),
                Ok(Some(headers)) => {
                    let body = request.get_ref().encode_to_vec();
                    self.blocking(move |storage| {
                        access::check_signed(storage, &headers, method, &body, now_ns())
                    })
                    .await
                    .map(Some)
                }
                Err(e) => Err(e),
            };
            match checked.and_then(|check| access::admit(check, need, named)) {
                Ok(installation) => caller.installation = installation,
                Err(refused) => {
                    self.limiter.take(&caller, Class::Read, 1)?;
                    tracing::debug!(method, code = ?refused.code(), "call refused");
                    return Err(refused);
                }
            }
        }
        self.limiter.take(&caller, class, cost)?;
        Ok(caller)
    }

    /// Runs a storage call on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn NodeStorage) -> Result<T, Status> + Send + 'static,
    {
        let storage = Arc::clone(&self.storage);
        tokio::task::spawn_blocking(move || f(storage.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
    }

    /// Stores a batch, then hands it to subscribers, in one critical section so that
    /// subscribers receive messages in sequence-id order.
    async fn store_and_broadcast<I, T, F>(
        &self,
        inputs: Vec<I>,
        sender: &broadcast::Sender<Arc<T>>,
        insert: F,
    ) -> Result<Vec<u64>, Status>
    where
        I: Send + 'static,
        T: HasSequenceId + Send + Sync + 'static,
        F: FnOnce(&dyn NodeStorage, &[I], i64) -> Result<Vec<T>, StorageError> + Send + 'static,
    {
        let order = Arc::clone(&self.write_order);
        let sender = sender.clone();
        self.blocking(move |storage| {
            if storage.is_shared() {
                // The feed relays it, once committed (in the database's order, with what
                // other replicas stored).
                let stored = insert(storage, &inputs, now_ns()).map_err(storage_status)?;
                return Ok(stored.iter().map(HasSequenceId::sequence_id).collect());
            }
            let _order = order.lock().unwrap_or_else(|e| e.into_inner());
            let stored = insert(storage, &inputs, now_ns()).map_err(storage_status)?;
            let ids = stored.iter().map(HasSequenceId::sequence_id).collect();
            for item in stored {
                // No receivers is fine: nobody is subscribed.
                let _ = sender.send(Arc::new(item));
            }
            Ok(ids)
        })
        .await
    }

    /// Over a shared storage, what was committed when a subscription starts (the feed may
    /// still relay some of it; a subscriber gets only what is stored after it subscribed,
    /// as over a storage of its own). Zeros otherwise.
    async fn committed_heads(&self) -> Result<(u64, u64), Status> {
        if !self.storage.is_shared() {
            return Ok((0, 0));
        }
        self.blocking(|storage| storage.heads().map_err(storage_status))
            .await
    }

    /// A stream of what `sender` relays from now on, filtered by `wanted`.
    fn subscribe<T>(
        &self,
        sender: &broadcast::Sender<Arc<T>>,
        wanted: impl Fn(&T) -> bool + Send + 'static,
    ) -> ResponseStream<T>
    where
        T: Clone + Send + Sync + 'static,
    {
        let mut shutdown = self.shutdown.clone();
        Box::pin(Subscription {
            items: BroadcastStream::new(sender.subscribe()),
            shutdown: Box::pin(async move {
                // An error means the sender is gone, which also means shutdown.
                let _ = shutdown.wait_for(|stopped| *stopped).await;
            }),
            wanted: Box::new(wanted),
            done: false,
        })
    }
}

/// How often the feed looks for new rows when no notification came.
const FEED_POLL: Duration = Duration::from_millis(500);
/// Rows the feed reads per query.
const FEED_PAGE: u32 = 1000;

/// Relays every group message after `m` and welcome after `w`; returns the new heads.
fn relay_after(
    storage: &dyn NodeStorage,
    mut m: u64,
    mut w: u64,
    group_messages: &broadcast::Sender<Arc<GroupMessage>>,
    welcomes: &broadcast::Sender<Arc<Welcome>>,
) -> Result<(u64, u64), StorageError> {
    loop {
        let page = storage.group_messages_after(m, FEED_PAGE)?;
        let full = page.len() == FEED_PAGE as usize;
        for item in page {
            m = item.sequence_id;
            let _ = group_messages.send(Arc::new(item));
        }
        if !full {
            break;
        }
    }
    loop {
        let page = storage.welcomes_after(w, FEED_PAGE)?;
        let full = page.len() == FEED_PAGE as usize;
        for item in page {
            w = item.sequence_id;
            let _ = welcomes.send(Arc::new(item));
        }
        if !full {
            break;
        }
    }
    Ok((m, w))
}

trait HasSequenceId {
    fn sequence_id(&self) -> u64;
}

impl HasSequenceId for GroupMessage {
    fn sequence_id(&self) -> u64 {
        self.sequence_id
    }
}

impl HasSequenceId for Welcome {
    fn sequence_id(&self) -> u64 {
        self.sequence_id
    }
}

/// A subscriber's stream: relayed items that pass the filter, until the node shuts down or
/// the subscriber falls too far behind.
struct Subscription<T: Clone + Send + Sync + 'static> {
    items: BroadcastStream<Arc<T>>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    wanted: Box<dyn Fn(&T) -> bool + Send>,
    done: bool,
}

impl<T: Clone + Send + Sync + 'static> Stream for Subscription<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(Some(Err(Status::unavailable("node shutting down"))));
        }
        loop {
            match Pin::new(&mut this.items).poll_next(cx) {
                Poll::Ready(Some(Ok(item))) => {
                    if (this.wanted)(&item) {
                        return Poll::Ready(Some(Ok(T::clone(&item))));
                    }
                }
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    tracing::debug!(missed, "subscriber lagged");
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::resource_exhausted(
                        "subscriber lagged; query and resubscribe",
                    ))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

pub(crate) fn storage_status(e: StorageError) -> Status {
    match e {
        StorageError::SequenceTaken { .. } => Status::already_exists(e.to_string()),
        StorageError::InstallationTaken { .. } => Status::invalid_argument(e.to_string()),
        e => {
            tracing::error!(error = %e, "storage failure");
            Status::internal("storage failure")
        }
    }
}

fn query_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_QUERY_LIMIT,
        n => n.min(MAX_QUERY_LIMIT),
    }
}

fn check_installation_id(id: &[u8]) -> Result<(), Status> {
    if id.len() != 32 {
        return Err(Status::invalid_argument(
            "an installation id is a 32-byte public key",
        ));
    }
    Ok(())
}

fn check_id_count(n: usize) -> Result<(), Status> {
    if n > MAX_IDS_PER_REQUEST {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_IDS_PER_REQUEST} ids per request"
        )));
    }
    Ok(())
}

fn check_data(data: &[u8]) -> Result<(), Status> {
    if data.is_empty() {
        return Err(Status::invalid_argument("empty data"));
    }
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(Status::invalid_argument(format!(
            "data larger than {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn publish_identity_update(
        &self,
        request: Request<PublishIdentityUpdateRequest>,
    ) -> Result<Response<PublishIdentityUpdateResponse>, Status> {
        self.authorize(
            &request,
            "PublishIdentityUpdate",
            Need::Anyone,
            None,
            Class::Write,
            1,
        )
        .await?;
        let update = request
            .into_inner()
            .update
            .ok_or_else(|| Status::invalid_argument("missing update"))?;
        let unsigned = UnsignedIdentityUpdate::decode(update.unsigned.as_slice()).map_err(|e| {
            Status::invalid_argument(
                ferry_identity::IdentityError::Decode(e.to_string()).to_string(),
            )
        })?;
        let inbox_id = unsigned.inbox_id;
        let sequence = unsigned.sequence;
        let change = match unsigned.action {
            Some(Action::AddInstallation(a)) => {
                Some(InstallationChange::Add(a.installation_public_key))
            }
            Some(Action::RevokeInstallation(r)) => {
                Some(InstallationChange::Revoke(r.installation_public_key))
            }
            Some(Action::CreateInbox(_)) | None => None,
        };
        self.blocking(move |storage| {
            let log = storage.identity_log(&inbox_id).map_err(storage_status)?;
            let taken = || {
                storage_status(StorageError::SequenceTaken {
                    inbox_id: inbox_id.clone(),
                    sequence,
                })
            };
            let invalid =
                |e: ferry_identity::IdentityError| Status::invalid_argument(e.to_string());
            if sequence == 0 {
                if !log.is_empty() {
                    return Err(taken());
                }
                InboxState::replay(&inbox_id, std::slice::from_ref(&update)).map_err(invalid)?;
            } else {
                if log.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "inbox {inbox_id} does not exist"
                    )));
                }
                if sequence < log.len() as u64 {
                    return Err(taken());
                }
                let mut state = InboxState::replay(&inbox_id, &log).map_err(|e| {
                    tracing::error!(inbox_id, error = %e, "stored identity log does not verify");
                    Status::internal("stored identity log does not verify")
                })?;
                state.apply(&update).map_err(invalid)?;
            }
            storage
                .append_identity_update(&inbox_id, sequence, &update, change.as_ref())
                .map_err(storage_status)?;
            tracing::debug!(inbox_id, sequence, "identity update appended");
            Ok(Response::new(PublishIdentityUpdateResponse { sequence }))
        })
        .await
    }

    async fn get_identity_logs(
        &self,
        request: Request<GetIdentityLogsRequest>,
    ) -> Result<Response<GetIdentityLogsResponse>, Status> {
        self.authorize(
            &request,
            "GetIdentityLogs",
            Need::Anyone,
            None,
            Class::Read,
            1,
        )
        .await?;
        let inbox_ids = request.into_inner().inbox_ids;
        check_id_count(inbox_ids.len())?;
        self.blocking(move |storage| {
            let logs = inbox_ids
                .into_iter()
                .map(|inbox_id| {
                    let updates = storage.identity_log(&inbox_id).map_err(storage_status)?;
                    Ok(IdentityLog { inbox_id, updates })
                })
                .collect::<Result<_, Status>>()?;
            Ok(Response::new(GetIdentityLogsResponse { logs }))
        })
        .await
    }

    async fn upload_key_package(
        &self,
        request: Request<UploadKeyPackageRequest>,
    ) -> Result<Response<UploadKeyPackageResponse>, Status> {
        let named = request.get_ref().installation_id.clone();
        self.authorize(
            &request,
            "UploadKeyPackage",
            Need::Itself,
            Some(&named),
            Class::Read,
            1,
        )
        .await?;
        let req = request.into_inner();
        if req.key_package.is_empty() {
            return Err(Status::invalid_argument("empty key package"));
        }
        if req.key_package.len() > MAX_KEY_PACKAGE_BYTES {
            return Err(Status::invalid_argument(format!(
                "key package larger than {MAX_KEY_PACKAGE_BYTES} bytes"
            )));
        }
        if self.policy.authenticate {
            access::verify_key_package(&req.key_package, &req.installation_id)?;
        }
        self.blocking(move |storage| {
            let record = storage
                .installation(&req.installation_id)
                .map_err(storage_status)?;
            if record.is_none_or(|r| r.revoked) {
                return Err(Status::failed_precondition(
                    "unknown or revoked installation",
                ));
            }
            storage
                .put_key_package(&req.installation_id, &req.key_package, req.last_resort)
                .map_err(storage_status)?;
            Ok(Response::new(UploadKeyPackageResponse {}))
        })
        .await
    }

    async fn fetch_key_packages(
        &self,
        request: Request<FetchKeyPackagesRequest>,
    ) -> Result<Response<FetchKeyPackagesResponse>, Status> {
        self.authorize(
            &request,
            "FetchKeyPackages",
            Need::Installation,
            None,
            Class::Read,
            1,
        )
        .await?;
        let ids = request.into_inner().installation_ids;
        check_id_count(ids.len())?;
        self.blocking(move |storage| {
            let key_packages = ids
                .into_iter()
                .map(|installation_id| {
                    let active = storage
                        .installation(&installation_id)
                        .map_err(storage_status)?
                        .is_some_and(|r| !r.revoked);
                    let key_package = if active {
                        storage
                            .take_key_package(&installation_id)
                            .map_err(storage_status)?
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    Ok(fetch_key_packages_response::Entry {
                        installation_id,
                        key_package,
                    })
                })
                .collect::<Result<_, Status>>()?;
            Ok(Response::new(FetchKeyPackagesResponse { key_packages }))
        })
        .await
    }

    async fn send_group_messages(
        &self,
        request: Request<SendGroupMessagesRequest>,
    ) -> Result<Response<SendGroupMessagesResponse>, Status> {
        let count = request.get_ref().messages.len();
        self.authorize(
            &request,
            "SendGroupMessages",
            Need::Installation,
            None,
            Class::Write,
            count,
        )
        .await?;
        let messages = request.into_inner().messages;
        for m in &messages {
            if m.group_id.is_empty() {
                return Err(Status::invalid_argument("empty group id"));
            }
            check_data(&m.data)?;
        }
        let sequence_ids = self
            .store_and_broadcast(messages, &self.group_messages, |s, m, now| {
                s.insert_group_messages(m, now)
            })
            .await?;
        Ok(Response::new(SendGroupMessagesResponse { sequence_ids }))
    }

    async fn query_group_messages(
        &self,
        request: Request<QueryGroupMessagesRequest>,
    ) -> Result<Response<QueryGroupMessagesResponse>, Status> {
        self.authorize(
            &request,
            "QueryGroupMessages",
            Need::Installation,
            None,
            Class::Read,
            1,
        )
        .await?;
        let req = request.into_inner();
        let limit = query_limit(req.limit);
        self.blocking(move |storage| {
            // One more than asked tells whether anything follows the page.
            let mut messages = storage
                .query_group_messages(&req.group_id, req.after_sequence_id, limit + 1)
                .map_err(storage_status)?;
            let last_page = cap_page(&mut messages, limit, |m| m.data.len());
            let cursor = messages
                .last()
                .map_or(req.after_sequence_id, |m| m.sequence_id);
            Ok(Response::new(QueryGroupMessagesResponse {
                messages,
                cursor,
                last_page,
            }))
        })
        .await
    }

    type SubscribeGroupMessagesStream = ResponseStream<GroupMessage>;

    async fn subscribe_group_messages(
        &self,
        request: Request<SubscribeGroupMessagesRequest>,
    ) -> Result<Response<Self::SubscribeGroupMessagesStream>, Status> {
        self.authorize(
            &request,
            "SubscribeGroupMessages",
            Need::Installation,
            None,
            Class::Read,
            1,
        )
        .await?;
        let groups: HashSet<Vec<u8>> = request.into_inner().group_ids.into_iter().collect();
        check_id_count(groups.len())?;
        let (floor, _) = self.committed_heads().await?;
        let stream = self.subscribe(&self.group_messages, move |m: &GroupMessage| {
            m.sequence_id > floor && groups.contains(&m.group_id)
        });
        Ok(Response::new(stream))
    }

    async fn send_welcomes(
        &self,
        request: Request<SendWelcomesRequest>,
    ) -> Result<Response<SendWelcomesResponse>, Status> {
        let count = request.get_ref().welcomes.len();
        self.authorize(
            &request,
            "SendWelcomes",
            Need::Installation,
            None,
            Class::Write,
            count,
        )
        .await?;
        let welcomes = request.into_inner().welcomes;
        for w in &welcomes {
            check_installation_id(&w.installation_id)?;
            check_data(&w.data)?;
        }
        self.store_and_broadcast(welcomes, &self.welcomes, |s, w, now| {
            s.insert_welcomes(w, now)
        })
        .await?;
        Ok(Response::new(SendWelcomesResponse {}))
    }

    async fn query_welcomes(
        &self,
        request: Request<QueryWelcomesRequest>,
    ) -> Result<Response<QueryWelcomesResponse>, Status> {
        let named = request.get_ref().installation_id.clone();
        self.authorize(
            &request,
            "QueryWelcomes",
            Need::Itself,
            Some(&named),
            Class::Read,
            1,
        )
        .await?;
        let req = request.into_inner();
        check_installation_id(&req.installation_id)?;
        let limit = query_limit(req.limit);
        self.blocking(move |storage| {
            let mut welcomes = storage
                .query_welcomes(&req.installation_id, req.after_sequence_id, limit + 1)
                .map_err(storage_status)?;
            let last_page = cap_page(&mut welcomes, limit, |w| w.data.len());
            let cursor = welcomes
                .last()
                .map_or(req.after_sequence_id, |w| w.sequence_id);
            Ok(Response::new(QueryWelcomesResponse {
                welcomes,
                cursor,
                last_page,
            }))
        })
        .await
    }

    type SubscribeWelcomesStream = ResponseStream<Welcome>;

    async fn subscribe_welcomes(
        &self,
        request: Request<SubscribeWelcomesRequest>,
    ) -> Result<Response<Self::SubscribeWelcomesStream>, Status> {
        let named = request.get_ref().installation_id.clone();
        self.authorize(
            &request,
            "SubscribeWelcomes",
            Need::Itself,
            Some(&named),
            Class::Read,
            1,
        )
        .await?;
        let installation_id = request.into_inner().installation_id;
        check_installation_id(&installation_id)?;
        let (_, floor) = self.committed_heads().await?;
        let stream = self.subscribe(&self.welcomes, move |w: &Welcome| {
            w.sequence_id > floor && w.installation_id == installation_id
        });
        Ok(Response::new(stream))
    }
}

/// The most bytes of payload one page carries (at least one item, whatever its size), so a
/// page always fits a client's 8 MiB decoding limit when items are at most 4 MiB.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// Cuts a page (read with one item more than `limit`) to `limit` items, and before the item
/// that would take it past [`MAX_PAGE_BYTES`]; the client continues from the cursor of the
/// last item kept. True when nothing was cut: the page is the last one for now.
fn cap_page<T>(items: &mut Vec<T>, limit: u32, size: impl Fn(&T) -> usize) -> bool {
    let mut total = 0usize;
    let mut keep = items.len().min(limit as usize);
    for (i, item) in items.iter().enumerate().take(keep) {
        total += size(item);
        if total > MAX_PAGE_BYTES && i > 0 {
            keep = i;
            break;
        }
    }
    let last = keep == items.len();
    items.truncate(keep);
    last
}
