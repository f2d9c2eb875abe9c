//! Faults the simulation injects: a [`Transport`] wrapper in front of one installation's node
//! connection, and a TCP proxy in front of the history server. Each fault is armed by an
//! operation of the scenario and fires once, at the next call (or connection) it fits.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::{GroupMessage, GroupMessageInput, Welcome, WelcomeInput};
use ferry_transport::{Page, Result, Subscription, Transport, TransportError};
use futures::StreamExt;

/// A fault of one node call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request never reaches the node; the caller sees the node unreachable.
    DropRequest,
    /// The node handles the request, the answer is lost (a publish the node stored, reported
    /// as failed).
    DropResponse,
    /// The call waits this many milliseconds first.
    Delay(u16),
    /// The request reaches the node twice (a retry of one that had worked); the caller sees
    /// the second answer.
    Duplicate,
    /// A write is held back and reaches the node later, after the installation's next call
    /// (requests out of order); the caller sees the node unreachable.
    Reorder,
    /// The next subscription ends after its first item.
    CutStream,
}

/// Counts of what was injected, across a run.
#[derive(Default)]
pub struct Counters {
    pub node_faults: AtomicU64,
    pub history_faults: AtomicU64,
}

enum Held {
    Messages(Vec<GroupMessageInput>),
    Welcomes(Vec<WelcomeInput>),
}

/// A node connection with faults armed by the scenario.
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    armed: Mutex<VecDeque<Fault>>,
    held: Mutex<Vec<Held>>,
    counters: Arc<Counters>,
}

impl FaultyTransport {
    pub fn new(inner: Arc<dyn Transport>, counters: Arc<Counters>) -> FaultyTransport {
        FaultyTransport {
            inner,
            armed: Mutex::new(VecDeque::new()),
            held: Mutex::new(Vec::new()),
            counters,
        }
    }

    pub fn arm(&self, f: Fault) {
        self.armed.lock().unwrap().push_back(f);
    }

    /// Disarms what has not fired and delivers what was held back.
    pub async fn settle(&self) {
        self.armed.lock().unwrap().clear();
        self.release().await;
    }

    async fn release(&self) {
        let held: Vec<Held> = std::mem::take(&mut *self.held.lock().unwrap());
        for h in held {
            // The late copy may fail (a commit whose epoch is gone): as on a real network,
            // nobody hears of it.
            let _ = match h {
                Held::Messages(m) => self.inner.send_group_messages(m).await.map(|_| ()),
                Held::Welcomes(w) => self.inner.send_welcomes(w).await,
            };
        }
    }

    /// The fault for this call, if one is armed (`CutStream` waits for a subscription).
    async fn take(&self, subscription: bool) -> Option<Fault> {
        self.release().await;
        let mut armed = self.armed.lock().unwrap();
        let f = *armed.front()?;
        if (f == Fault::CutStream) != subscription {
            return None;
        }
        armed.pop_front();
        self.counters.node_faults.fetch_add(1, Ordering::Relaxed);
        Some(f)
    }
}

fn lost(what: &str) -> TransportError {
    TransportError::Unavailable(format!("injected fault: {what}"))
}

/// Runs a call under a fault: `call` makes the request (it may be made twice).
macro_rules! faulty {
    ($self:ident, $fault:expr, $call:expr) => {{
        match $fault {
            None => $call.await,
            Some(Fault::DropRequest) | Some(Fault::Reorder) => Err(lost("request dropped")),
            Some(Fault::DropResponse) => {
                let _ = $call.await;
                Err(lost("response lost"))
            }
            Some(Fault::Delay(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                $call.await
            }
            Some(Fault::Duplicate) => {
                let _ = $call.await;
                $call.await
            }
            Some(Fault::CutStream) => unreachable!("taken by subscriptions only"),
        }
    }};
}

#[async_trait::async_trait]
impl Transport for FaultyTransport {
    async fn publish_identity_update(&self, update: IdentityUpdate) -> Result<u64> {
        let f = self.take(false).await;
        faulty!(self, f, self.inner.publish_identity_update(update.clone()))
    }

    async fn identity_logs(
        &self,
        inbox_ids: &[String],
    ) -> Result<Vec<(String, Vec<IdentityUpdate>)>> {
        let f = self.take(false).await;
        faulty!(self, f, self.inner.identity_logs(inbox_ids))
    }

    async fn upload_key_package(
        &self,
        installation_id: &[u8],
        key_package: &[u8],
        last_resort: bool,
    ) -> Result<()> {
        let f = self.take(false).await;
        faulty!(
            self,
            f,
            self.inner
                .upload_key_package(installation_id, key_package, last_resort)
        )
    }

    async fn fetch_key_packages(&self, installation_ids: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let f = self.take(false).await;
        faulty!(self, f, self.inner.fetch_key_packages(installation_ids))
    }

    async fn send_group_messages(&self, messages: Vec<GroupMessageInput>) -> Result<Vec<u64>> {
        let f = self.take(false).await;
        if f == Some(Fault::Reorder) {
            self.held.lock().unwrap().push(Held::Messages(messages));
            return Err(lost("request held back"));
        }
        faulty!(self, f, self.inner.send_group_messages(messages.clone()))
    }

    async fn query_group_messages(
        &self,
        group_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<GroupMessage>> {
        let f = self.take(false).await;
        faulty!(
            self,
            f,
            self.inner.query_group_messages(group_id, after, limit)
        )
    }

    async fn send_welcomes(&self, welcomes: Vec<WelcomeInput>) -> Result<()> {
        let f = self.take(false).await;
        if f == Some(Fault::Reorder) {
            self.held.lock().unwrap().push(Held::Welcomes(welcomes));
            return Err(lost("request held back"));
        }
        faulty!(self, f, self.inner.send_welcomes(welcomes.clone()))
    }

    async fn query_welcomes(
        &self,
        installation_id: &[u8],
        after: u64,
        limit: u32,
    ) -> Result<Page<Welcome>> {
        let f = self.take(false).await;
        faulty!(
            self,
            f,
            self.inner.query_welcomes(installation_id, after, limit)
        )
    }

    async fn subscribe_group_messages(
        &self,
        group_ids: Vec<Vec<u8>>,
    ) -> Result<Subscription<GroupMessage>> {
        let cut = self.take(true).await.is_some();
        let sub = self.inner.subscribe_group_messages(group_ids).await?;
        Ok(if cut { cut_after_one(sub) } else { sub })
    }

    async fn subscribe_welcomes(&self, installation_id: &[u8]) -> Result<Subscription<Welcome>> {
        let cut = self.take(true).await.is_some();
        let sub = self.inner.subscribe_welcomes(installation_id).await?;
        Ok(if cut { cut_after_one(sub) } else { sub })
    }

    fn set_request_signer(&self, signer: std::sync::Arc<dyn ferry_transport::RequestSigner>) {
        self.inner.set_request_signer(signer);
    }
}

/// A subscription that the network cuts after its first item.
fn cut_after_one<T: Send + 'static>(sub: Subscription<T>) -> Subscription<T> {
    Subscription::new(sub.take(1).chain(futures::stream::once(async {
        Err(TransportError::Closed("injected fault: stream cut".into()))
    })))
}

/// A fault of one connection to the history server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFault {
    /// The connection is closed at once.
    Refuse,
    /// The connection is cut after this many bytes from the client (an upload or a request
    /// cut midway).
    CutAfter(u16),
    /// The connection waits this many milliseconds first.
    Delay(u16),
}

/// A TCP proxy in front of the history server; its faults fire on the next connections.
pub struct HistoryProxy {
    pub addr: SocketAddr,
    armed: Arc<Mutex<VecDeque<HistoryFault>>>,
    stop: Arc<AtomicBool>,
}

impl HistoryProxy {
    pub fn start(upstream: SocketAddr, counters: Arc<Counters>) -> HistoryProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let armed: Arc<Mutex<VecDeque<HistoryFault>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (armed.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let fault = a.lock().unwrap().pop_front();
                if fault.is_some() {
                    counters.history_faults.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::spawn(move || relay(client, upstream, fault));
            }
        });
        HistoryProxy { addr, armed, stop }
    }

    pub fn arm(&self, f: HistoryFault) {
        self.armed.lock().unwrap().push_back(f);
    }

    pub fn disarm(&self) {
        self.armed.lock().unwrap().clear();
    }
}

impl Drop for HistoryProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, fault: Option<HistoryFault>) {
    let mut limit = u64::MAX;
    match fault {
        Some(HistoryFault::Refuse) => return,
        Some(HistoryFault::Delay(ms)) => std::thread::sleep(Duration::from_millis(ms as u64)),
        Some(HistoryFault::CutAfter(n)) => limit = n as u64,
        None => {}
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut s2, &mut c2);
        let _ = c2.shutdown(Shutdown::Write);
    });
    let (mut from, mut to) = (client, server);
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = n.min((limit - sent) as usize);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if sent >= limit {
            // Cut midway: both sides see the connection die.
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = back.join();
}
