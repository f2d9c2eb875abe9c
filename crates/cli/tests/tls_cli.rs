//! TLS through the `ferry` binary: `ferry node` and `ferry history-server` with a certificate
//! made at test time (a throwaway CA), installations made with `ferry init --tls-ca`.
#![cfg(unix)]

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command};

use common::*;
use ferry_tls::test_certs::{TestPki, TestPkiFiles};

/// A server command, stopped (SIGTERM, then checked) or killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `ferry ARGS` and reads the address of its first line, `listening on HOST:PORT`.
    fn spawn(args: Vec<OsString>) -> Server {
        let (child, addr) = spawn_server(args);
        Server { child, addr }
    }

    fn node(db: &Path, pki: &TestPkiFiles) -> Server {
        Server::spawn(args(
            &["node", "--listen", "127.0.0.1:0", "--db"],
            &[
                db,
                Path::new("--tls-cert"),
                &pki.cert,
                Path::new("--tls-key"),
                &pki.key,
            ],
        ))
    }

    fn history(dir: &Path, pki: &TestPkiFiles) -> Server {
        Server::spawn(args(
            &["history-server", "--listen", "127.0.0.1:0", "--dir"],
            &[
                dir,
                Path::new("--tls-cert"),
                &pki.cert,
                Path::new("--tls-key"),
                &pki.key,
            ],
        ))
    }

    fn https(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn stop(mut self, what: &str) {
        unsafe_kill(self.child.id(), 15);
        exits_cleanly(&mut self.child, what);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(words: &[&str], paths: &[&Path]) -> Vec<OsString> {
    words
        .iter()
        .map(OsString::from)
        .chain(paths.iter().map(|p| p.as_os_str().to_owned()))
        .collect()
}

#[test]
fn installations_talk_through_tls_servers_with_their_ca() {
    let t = tempfile::tempdir().unwrap();
    let pki = TestPki::new().write_to(t.path());
    let node = Server::node(&t.path().join("node.db"), &pki);
    let history = Server::history(&t.path().join("payloads"), &pki);
    let (node_url, history_url) = (node.https(), history.https());
    let (a1, a2, b) = (t.path().join("a1"), t.path().join("a2"), t.path().join("b"));
    let init = |home: &Path, account_key: Option<&Path>| {
        let mut c = ferry(home);
        c.args(["init", "--node", &node_url, "--history-url", &history_url])
            .arg("--tls-ca")
            .arg(&pki.ca)
            .arg("--json");
        if let Some(k) = account_key {
            c.arg("--account-key").arg(k);
        }
        json(&mut c)
    };

    // Without the CA, the node's certificate is refused, and the error says where and why.
    let e = fails(ferry(&t.path().join("nobody")).args(["init", "--node", &node_url, "--json"]));
    assert!(e.contains(&node_url), "{e}");
    assert!(e.contains("not signed by a trusted CA"), "{e}");

    let alice = init(&a1, None);
    assert_eq!(
        alice["tls_ca"],
        pki.ca.canonicalize().unwrap().to_str().unwrap()
    );
    let bob = init(&b, None)["inbox_id"].as_str().unwrap().to_string();
    let who = json(ferry(&b).args(["whoami", "--json"]));
    assert_eq!(who["node_url"], node_url.as_str());
    assert!(who["tls_ca"].as_str().unwrap().ends_with("ca.pem"));

    // A message from alice to bob and back, through the TLS node.
    let gid = json(ferry(&a1).args(["group", "create", &bob, "--json"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    json(ferry(&a1).args(["send", &gid, "hello over tls", "--json"]));
    let synced = json(ferry(&b).args(["sync", "--json"]));
    assert_eq!(synced["conversations_joined"], 1);
    assert_eq!(texts(&b, &gid), ["hello over tls"]);
    json(ferry(&b).args(["send", &gid, "hi back", "--json"]));
    json(ferry(&a1).args(["sync", "--json"]));
    assert_eq!(texts(&a1, &gid), ["hello over tls", "hi back"]);

    // FERRY_TLS_CA overrides the CA kept at init, for one command: another CA fails.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestPki::new().write_to(other_dir.path());
    let e = fails(
        ferry(&b)
            .env("FERRY_TLS_CA", &other.ca)
            .args(["sync", "--json"]),
    );
    assert!(e.contains(&node_url), "{e}");
    assert!(e.contains("not signed by a trusted CA"), "{e}");
    json(
        ferry(&b)
            .env("FERRY_TLS_CA", &pki.ca)
            .args(["sync", "--json"]),
    );

    // History sync over the TLS history server: a new installation of alice's asks, the old
    // one uploads an archive (https), the new one downloads (https) and imports it.
    init(&a2, Some(&a1.join("account.key")));
    let waiting = json(ferry(&a2).args(["history", "sync", "--wait-secs", "0", "--json"]));
    assert_eq!(waiting["status"], "waiting");
    let pin = waiting["pin"].as_str().unwrap().to_string();
    json(ferry(&a1).args(["sync", "--json"]));
    let report = json(ferry(&a2).args(["history", "process", "--pin", &pin, "--json"]));
    assert!(
        report["messages_imported"].as_u64().unwrap() >= 2,
        "{report}"
    );
    let restored = texts(&a2, &gid);
    assert!(
        restored.contains(&"hello over tls".to_string()) && restored.contains(&"hi back".into()),
        "{restored:?}"
    );

    node.stop("the TLS node");
    history.stop("the TLS history server");
}

#[test]
fn server_tls_flags_go_together_and_bad_files_are_named() {
    let t = tempfile::tempdir().unwrap();
    let pki = TestPki::new().write_to(t.path());
    for server in ["node", "history-server"] {
        let mut base = bin();
        base.args([server, "--listen", "127.0.0.1:0"]);
        if server == "history-server" {
            base.arg("--dir").arg(t.path().join("payloads"));
        }
        let with = |extra: &[&Path]| {
            let mut c = Command::new(base.get_program());
            c.args(base.get_args()).args(extra).env_remove("FERRY_HOME");
            c
        };
        let e = fails(&mut with(&[Path::new("--tls-cert"), &pki.cert]));
        assert!(e.contains("--tls-cert needs --tls-key"), "{server}: {e}");
        let e = fails(&mut with(&[Path::new("--tls-key"), &pki.key]));
        assert!(e.contains("--tls-key needs --tls-cert"), "{server}: {e}");

        let missing = t.path().join("missing-key.pem");
        let e = fails(&mut with(&[
            Path::new("--tls-cert"),
            &pki.cert,
            Path::new("--tls-key"),
            &missing,
        ]));
        assert!(e.contains("missing-key.pem"), "{server}: {e}");
        let e = fails(&mut with(&[
            Path::new("--tls-cert"),
            &pki.key,
            Path::new("--tls-key"),
            &pki.key,
        ]));
        assert!(
            e.contains("key.pem") && e.contains("no certificate"),
            "{server}: {e}"
        );
    }

    // `ferry init --tls-ca` with a file that is no CA certificate names it.
    let e = fails(
        ferry(&t.path().join("home"))
            .args(["init", "--node", "https://127.0.0.1:9", "--tls-ca"])
            .arg(&pki.key)
            .arg("--json"),
    );
    assert!(e.contains("TLS CA file") && e.contains("key.pem"), "{e}");
}
