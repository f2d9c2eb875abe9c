//! Real servers for Ferry's tests, started by the tests and removed when dropped.
//!
//! - [`Postgres`]: a throwaway PostgreSQL cluster (Debian's `postgresql` package: `initdb` into
//!   a temporary folder, started on a free loopback port, as the unprivileged `postgres` user
//!   when the tests run as root, since PostgreSQL refuses to run as root).
//! - [`S3`]: an S3-compatible server on loopback (moto's server mode, from PyPI:
//!   `pip install 'moto[server]'`).
//!
//! `scripts/test` installs both on a fresh machine. When one is missing, starting it panics
//! with what to install: a test that needs a real server never passes without one.

mod postgres;
mod s3;

pub use postgres::Postgres;
pub use s3::S3;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// Waits until `ready` answers true, for at most `limit`; panics with `what` otherwise.
fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "{what} did not come up within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
