//! `HistoryConfig::store = "s3://bucket/prefix"` with the endpoint and credentials in the
//! process environment (`AWS_*`), as `ferry history-server --store` runs. This binary's only
//! test sets the variables, so no other test sees them change.

mod common;

use std::time::Duration;

use common::*;
use ferry_history_server::{HistoryConfig, RunningHistoryServer};
use ferry_transport::HistoryClient;

#[test]
fn an_s3_store_from_the_environment() {
    let bucket = Bucket::new();
    for (key, value) in bucket.s3.env() {
        std::env::set_var(key, value);
    }
    let server = RunningHistoryServer::start(HistoryConfig {
        store: Some(bucket.url()),
        ttl: Duration::from_secs(600),
        ..HistoryConfig::default()
    })
    .unwrap();
    let client = HistoryClient::new(&server.url()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = pseudo_random(200_000, 1);
    let up = root.path().join("up");
    std::fs::write(&up, &data).unwrap();
    let url = client.upload_file(&up).unwrap();
    let id = id_of(&url);
    assert_eq!(
        bucket.keys(),
        vec![format!("{}/{id}", bucket.prefix)],
        "one object, under the prefix"
    );
    let down = root.path().join("down");
    client.download_to(&url, &down).unwrap();
    assert_eq!(std::fs::read(&down).unwrap(), data);
}
