//! The node over TLS: a real `RunningNode` on 127.0.0.1 with a certificate made at test time
//! (a throwaway CA), and the SDK's `GrpcTransport` as the client.

use std::time::{SystemTime, UNIX_EPOCH};

use ferry_identity::{Account, KeyPair};
use ferry_node::{NodeConfig, NodeError, RunningNode, ServerTls};
use ferry_tls::test_certs::{TestPki, TestPkiFiles};
use ferry_transport::{CaCerts, GrpcTransport, Transport, TransportError};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn tls_node(pki: &TestPkiFiles) -> RunningNode {
    RunningNode::start(NodeConfig {
        tls: Some(pki.server_tls()),
        ..NodeConfig::default()
    })
    .expect("the TLS node starts")
}

/// Publishes a new inbox and reads its log back: a real round trip through the node.
async fn round_trip(transport: &GrpcTransport) -> Result<(), TransportError> {
    let account = Account::new(KeyPair::generate());
    let inbox = account.inbox_id();
    transport
        .publish_identity_update(account.create_inbox(now_ns()).unwrap())
        .await?;
    let logs = transport
        .identity_logs(std::slice::from_ref(&inbox))
        .await?;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, inbox);
    assert_eq!(logs[0].1.len(), 1, "the published update is stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_ca_talks_to_the_node_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new().write_to(dir.path());
    let node = tls_node(&pki);
    assert!(node.is_tls());
    assert_eq!(node.url(), format!("https://{}", node.addr()));

    let ca = CaCerts::from_file(&pki.ca).unwrap();
    let transport = GrpcTransport::connect_with_ca(&node.url(), Some(&ca)).unwrap();
    round_trip(&transport)
        .await
        .expect("a call over TLS succeeds");

    // By name as well as by IP address (the certificate names both).
    let by_name = format!("https://localhost:{}", node.addr().port());
    let transport = GrpcTransport::connect_with_ca(&by_name, Some(&ca)).unwrap();
    round_trip(&transport)
        .await
        .expect("a call to https://localhost succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_node_is_refused_with_an_error_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new().write_to(dir.path());
    let node = tls_node(&pki);

    // The public roots only: the test CA is unknown.
    let transport = GrpcTransport::connect(&node.url()).unwrap();
    let err = round_trip(&transport).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TransportError::Unavailable(_)), "{text}");
    assert!(text.contains(&node.url()), "names the URL: {text}");
    assert!(
        text.contains("not signed by a trusted CA"),
        "says why: {text}"
    );

    // Another CA than the one that signed the node's certificate: refused just the same.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestPki::new().write_to(other_dir.path());
    let transport = GrpcTransport::connect_with_ca(&node.url(), Some(&other.ca_certs())).unwrap();
    let text = round_trip(&transport).await.unwrap_err().to_string();
    assert!(text.contains("not signed by a trusted CA"), "{text}");

    // Plain HTTP/2 to a TLS port does not get through either.
    let plain = format!("http://{}", node.addr());
    let transport = GrpcTransport::connect(&plain).unwrap();
    let err = round_trip(&transport).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TransportError::Unavailable(_)), "{text}");
    assert!(text.contains(&plain), "{text}");

    // The node is still fine for a client that trusts its CA.
    let transport = GrpcTransport::connect_with_ca(&node.url(), Some(&pki.ca_certs())).unwrap();
    round_trip(&transport).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::with_names(&["node.example"]).write_to(dir.path());
    let node = tls_node(&pki);
    let transport = GrpcTransport::connect_with_ca(&node.url(), Some(&pki.ca_certs())).unwrap();
    let text = round_trip(&transport).await.unwrap_err().to_string();
    assert!(text.contains(&node.url()), "{text}");
    assert!(text.contains("not valid for name"), "{text}");
}

#[test]
fn bad_tls_files_fail_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new().write_to(dir.path());
    let missing = dir.path().join("no-such-key.pem");
    let err = RunningNode::start(NodeConfig {
        tls: Some(ServerTls::new(&pki.cert, &missing)),
        ..NodeConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, NodeError::Tls(_)), "{err}");
    assert!(err.to_string().contains("no-such-key.pem"), "{err}");

    // The CA's certificate with the server's key: rustls refuses the pair.
    let err = RunningNode::start(NodeConfig {
        tls: Some(ServerTls::new(&pki.ca, &pki.key)),
        ..NodeConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, NodeError::Tls(_)), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
}
