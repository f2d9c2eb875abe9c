//! A TCP load balancer on loopback for `ferry bench load --replicas`: what a deployment puts
//! in front of its node replicas. Each new connection goes to the next replica in turn; a
//! replica that refuses the connection (killed) is skipped, so clients that lose their
//! replica reconnect through the balancer and land on a live one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// Stops serving when dropped (its runtime goes with it).
pub struct Balancer {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Balancer {
    /// Listens on a free loopback port and forwards to `backends` (`host:port`).
    pub fn start(backends: Vec<String>) -> std::io::Result<Balancer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferry-balancer")
            .enable_io()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(backends);
        let next = Arc::new(AtomicUsize::new(0));
        runtime.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                let (backends, next) = (backends.clone(), next.clone());
                tokio::spawn(async move {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..backends.len() {
                        let backend = &backends[(start + k) % backends.len()];
                        if let Ok(mut outbound) = TcpStream::connect(backend).await {
                            let _ = outbound.set_nodelay(true);
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                    // No replica answers: the client sees the connection close.
                });
            }
        });
        Ok(Balancer {
            addr,
            _runtime: runtime,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
