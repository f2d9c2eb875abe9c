//! Throwaway certificates for tests, made at run time: a self-signed CA and a server
//! certificate it signed for `localhost`, `127.0.0.1` and `::1`.

use std::path::{Path, PathBuf};

use crate::{CaCerts, ServerTls};

/// A CA and a server certificate signed by it, as PEM text.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// [`TestPki`] written to files.
#[derive(Debug, Clone)]
pub struct TestPkiFiles {
    /// The CA certificate: what clients are given (`--tls-ca`).
    pub ca: PathBuf,
    /// The server's certificate (`--tls-cert`).
    pub cert: PathBuf,
    /// The server's private key (`--tls-key`).
    pub key: PathBuf,
}

impl TestPkiFiles {
    pub fn server_tls(&self) -> ServerTls {
        ServerTls::new(&self.cert, &self.key)
    }

    pub fn ca_certs(&self) -> CaCerts {
        CaCerts::from_file(&self.ca).expect("the test CA reads back")
    }
}

impl TestPki {
    /// A new CA ("Ferry test CA") and a server certificate for the loopback names.
    pub fn new() -> TestPki {
        TestPki::with_names(&["localhost", "127.0.0.1", "::1"])
    }

    /// A new CA and a server certificate for `names` (DNS names or IP addresses).
    pub fn with_names(names: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ferry test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("server parameters");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        TestPki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`.
    pub fn write_to(&self, dir: &Path) -> TestPkiFiles {
        let files = TestPkiFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.ca, &self.ca_pem).expect("write ca.pem");
        std::fs::write(&files.cert, &self.cert_pem).expect("write cert.pem");
        std::fs::write(&files.key, &self.key_pem).expect("write key.pem");
        files
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// A fresh [`TestPki`] written into `dir`.
pub fn write_test_pki(dir: &Path) -> TestPkiFiles {
    TestPki::new().write_to(dir)
}
