//! TLS for Ferry's servers and clients, on rustls.
//!
//! - [`ServerTls`]: a server's certificate chain and private key as PEM files, turned into a
//!   rustls [`ServerConfig`] or a [`TlsAcceptor`]. The delivery node (gRPC, ALPN `h2`) and the
//!   history server (HTTP/1.1) both use it.
//! - [`CaCerts`]: CA certificates from a PEM file, for clients that verify a server signed by
//!   a private CA (self-signed deployments) instead of the public roots.
//! - [`incoming`]: accepts TCP connections and hands out those whose handshake completed,
//!   running handshakes concurrently and bounded in time.
//!
//! **Crypto provider.** The dependency graph has rustls with both the ring and the aws-lc-rs
//! providers compiled in (object_store's S3 support brings aws-lc-rs), so rustls cannot pick
//! a process default by itself and `ServerConfig::builder()` would panic. Everything here
//! names its provider: [`crypto_provider`], ring.
//!
//! With the `test-certs` feature, [`test_certs`] makes a throwaway CA and a server
//! certificate for `localhost`, `127.0.0.1` and `::1` at run time.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

pub use rustls;
pub use tokio_rustls;

#[cfg(feature = "test-certs")]
pub mod test_certs;

/// The ALPN protocol id of HTTP/2 (gRPC).
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";
/// Default for the `handshake_timeout` of [`incoming`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider of every Ferry TLS config: rustls' ring provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS files could not be used. Every variant names the file(s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is for (`TLS certificate file`, `TLS key file`, `TLS CA file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{what} {}: {reason}", path.display())]
    Invalid {
        /// What the file is for (`TLS certificate file`, `TLS key file`, `TLS CA file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate chain and key (e.g. the key is not the certificate's).
    #[error("TLS certificate {} with key {}: {source}", cert.display(), key.display())]
    Config {
        /// The certificate chain's file.
        cert: PathBuf,
        /// The private key's file.
        key: PathBuf,
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
}

impl TlsError {
    /// Whether the same call may succeed if made again later: only when reading a file was
    /// interrupted or timed out. False for a missing or unreadable file, one that does not
    /// hold what it should, and a certificate and key that do not go together: those need
    /// the files fixed.
    pub fn is_retryable(&self) -> bool {
        match self {
            TlsError::Read { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            TlsError::Invalid { .. } | TlsError::Config { .. } => false,
        }
    }
}

const WHAT_CERT: &str = "TLS certificate file";
const WHAT_KEY: &str = "TLS key file";
const WHAT_CA: &str = "TLS CA file";

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        what,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file; at least one.
fn parse_certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            what,
            path,
            "holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
        ));
    }
    Ok(certs)
}

/// A server's TLS identity: its certificate chain and private key, as PEM files.
///
/// `cert` holds the server's certificate first, then any intermediate CA certificates;
/// `key` holds its private key (PKCS#8, PKCS#1 RSA or SEC1 EC). The files are read when the
/// server starts ([`server_config`](Self::server_config)), so a bad or missing file fails the
/// start with an error naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM file with the certificate chain, server certificate first.
    pub cert: PathBuf,
    /// PEM file with the private key of the server certificate.
    pub key: PathBuf,
}

impl ServerTls {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> ServerTls {
        ServerTls {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Reads the two files and makes a rustls server config (ring provider, TLS 1.2 and 1.3,
    /// no client certificates) that offers the ALPN protocols `alpn`, in order.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = parse_certs(WHAT_CERT, &self.cert, &read(WHAT_CERT, &self.cert)?)?;
        let key_pem = read(WHAT_KEY, &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => invalid(
                WHAT_KEY,
                &self.key,
                "holds no private key (expected a PEM \"BEGIN PRIVATE KEY\" block)",
            ),
            e => invalid(WHAT_KEY, &self.key, format!("not valid PEM: {e}")),
        })?;
        let config_err = |source| TlsError::Config {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(config_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(config_err)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// [`server_config`](Self::server_config) as a tokio acceptor.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(self.server_config(alpn)?))
    }
}

/// CA certificates a client trusts, read from a PEM file.
///
/// Clients given a `CaCerts` trust these certificates *instead of* the public roots (like
/// curl's `--cacert`): a deployment with its own CA pins it.
#[derive(Clone)]
pub struct CaCerts {
    path: PathBuf,
    pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
}

impl CaCerts {
    /// Reads every certificate of the PEM file at `path` (at least one).
    pub fn from_file(path: impl AsRef<Path>) -> Result<CaCerts, TlsError> {
        let path = path.as_ref();
        let pem = read(WHAT_CA, path)?;
        let certs = parse_certs(WHAT_CA, path, &pem)?;
        Ok(CaCerts {
            path: path.to_path_buf(),
            pem,
            certs,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's PEM text, as read.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// The certificates, DER-encoded.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCerts")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// Accepts connections on `listener` and yields those whose TLS handshake completed within
/// `handshake_timeout`. Handshakes run on tasks of their own, so a slow or silent client
/// holds up nobody; failed ones are logged (debug) and dropped. Sets `TCP_NODELAY` on each
/// connection when `nodelay`.
///
/// Spawns its accept loop on the current tokio runtime; the loop ends (closing the listener)
/// when the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    nodelay: bool,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = tx.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if nodelay {
                let _ = stream.set_nodelay(true);
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(tls) = handshake(&acceptor, stream, peer, handshake_timeout).await {
                    let _ = tx.send(Ok(tls)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The server side of one handshake, bounded by `timeout`; `None` (logged) when it failed.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// When `err` or an error in its source chain is a rustls error (a failed handshake), says
/// in words what went wrong, starting with `TLS:`; `None` for other errors.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        let found = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = found {
            return Some(describe(tls));
        }
        next = e.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        // A CA of the same name as a trusted one, but another key: a bad signature.
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "TLS: the server's certificate is not signed by a trusted CA ({}); for a server \
             with its own CA, give that CA's certificate as the TLS CA file",
            if matches!(e, rustls::Error::InvalidCertificate(C::UnknownIssuer)) {
                "unknown issuer"
            } else {
                "bad signature"
            }
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName) => {
            "TLS: the server's certificate is not valid for this host name".to_string()
        }
        e => format!("TLS: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let paths = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        std::fs::write(&paths.0, ca_cert.pem()).unwrap();
        std::fs::write(&paths.1, cert.pem()).unwrap();
        std::fs::write(&paths.2, key.serialize_pem()).unwrap();
        (paths.0, paths.1, paths.2)
    }

    #[test]
    fn a_good_pair_makes_a_config_with_its_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pki(dir.path());
        let config = ServerTls::new(&cert, &key)
            .server_config(&[ALPN_H2])
            .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let ca = CaCerts::from_file(&ca).unwrap();
        assert_eq!(ca.certs().len(), 1);
        assert!(format!("{ca:?}").contains("ca.pem"));
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pki(dir.path());
        let missing = dir.path().join("missing.pem");

        let err = ServerTls::new(&missing, &key)
            .server_config(&[])
            .unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");

        // A key where the certificate should be, and the other way round.
        let err = ServerTls::new(&key, &key).server_config(&[]).unwrap_err();
        assert!(
            err.to_string().contains("key.pem") && err.to_string().contains("no certificate"),
            "{err}"
        );
        let err = ServerTls::new(&cert, &cert).server_config(&[]).unwrap_err();
        assert!(
            err.to_string().contains("cert.pem") && err.to_string().contains("no private key"),
            "{err}"
        );

        // A key that is not the certificate's.
        let other_key = dir.path().join("other-key.pem");
        std::fs::write(
            &other_key,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let err = ServerTls::new(&cert, &other_key)
            .server_config(&[])
            .unwrap_err();
        assert!(matches!(err, TlsError::Config { .. }), "{err}");
        assert!(err.to_string().contains("other-key.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let err = CaCerts::from_file(&garbage).unwrap_err();
        assert!(err.to_string().contains("garbage.pem"), "{err}");
        let err = CaCerts::from_file(&key).unwrap_err();
        assert!(err.to_string().contains("TLS CA file"), "{err}");
        CaCerts::from_file(&ca).unwrap();
    }

    #[test]
    fn only_an_interrupted_read_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = pki(dir.path());
        let missing = dir.path().join("missing.pem");
        let interrupted = TlsError::Read {
            what: WHAT_CA,
            path: missing.clone(),
            source: io::Error::new(io::ErrorKind::Interrupted, "x"),
        };
        assert!(interrupted.is_retryable());
        for e in [
            CaCerts::from_file(&missing).unwrap_err(),
            CaCerts::from_file(&key).unwrap_err(),
            ServerTls::new(&key, &key).server_config(&[]).unwrap_err(),
            ServerTls::new(&cert, &cert).server_config(&[]).unwrap_err(),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn incoming_hands_out_completed_handshakes_only() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_stream::StreamExt;

        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pki(dir.path());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let acceptor = ServerTls::new(&cert, &key).acceptor(&[]).unwrap();
            let mut conns = incoming(listener, acceptor, Duration::from_secs(60), true);

            // A client that never says hello does not hold up the next one (its handshake
            // waits for up to a minute; the good one must come well before).
            let _silent = TcpStream::connect(addr).await.unwrap();

            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(CaCerts::from_file(&ca).unwrap().certs().to_vec());
            let client = rustls::ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let client = tokio::spawn(async move {
                let mut tls = connector.connect(name, tcp).await.unwrap();
                tls.write_all(b"ping").await.unwrap();
                tls.flush().await.unwrap();
                tls
            });
            let mut server = tokio::time::timeout(Duration::from_secs(5), conns.next())
                .await
                .expect("a connection within 5 s")
                .unwrap()
                .unwrap();
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            drop(client.await.unwrap());
        });
    }
}
