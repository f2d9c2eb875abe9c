//! `ObjectStorage` through `PayloadStorage`, over object_store's in-memory store: multipart
//! uploads, aborts, ranges and sweeps, quickly and without a server (the tests of server.rs and
//! protocol.rs run it against a real S3-compatible server).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::sorted_keys;
use ferry_history_server::object_store::memory::InMemory;
use ferry_history_server::object_store::path::Path as ObjectPath;
use ferry_history_server::object_store::{ObjectStoreExt, PutPayload};
use ferry_history_server::{ObjectStorage, PayloadId, PayloadStorage, PART_BYTES};
use tokio::io::AsyncReadExt;

fn storage(prefix: &str) -> (ObjectStorage, Arc<InMemory>) {
    let memory = Arc::new(InMemory::new());
    let storage = ObjectStorage::new(memory.clone(), prefix, "memory").unwrap();
    (storage, memory)
}

async fn put(storage: &ObjectStorage, data: &[u8], chunk: usize) -> (PayloadId, SystemTime) {
    let id = PayloadId::random().unwrap();
    let mut sink = storage.create(id).await.unwrap();
    for part in data.chunks(chunk) {
        sink.write(part).await.unwrap();
    }
    (id, sink.commit().await.unwrap())
}

async fn read_all(storage: &ObjectStorage, id: PayloadId, offset: u64) -> Vec<u8> {
    let mut payload = storage.open_at(id, offset).await.unwrap().unwrap();
    let mut back = Vec::new();
    payload.reader.read_to_end(&mut back).await.unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_multipart_payloads_round_trip_under_the_prefix() {
    let (storage, memory) = storage("/history/a/");
    let before = SystemTime::now();
    let (small, stored_at) = put(&storage, b"hello", 2).await;
    assert!(stored_at > before && stored_at <= SystemTime::now() + Duration::from_secs(1));
    let big: Vec<u8> = (0..(2 * PART_BYTES + 123))
        .map(|i| (i % 253) as u8)
        .collect();
    let (large, _) = put(&storage, &big, 64 * 1024).await;
    assert_eq!(read_all(&storage, small, 0).await, b"hello");
    assert_eq!(read_all(&storage, large, 0).await, big);
    assert_eq!(read_all(&storage, large, 1000).await, big[1000..]);
    let opened = storage.open(large).await.unwrap().unwrap();
    assert_eq!(opened.len, big.len() as u64);
    assert!(opened.version.is_some());
    let mut expected = vec![storage.key_of(small), storage.key_of(large)];
    expected.sort();
    assert_eq!(sorted_keys(memory.as_ref()).await, expected);
    assert!(expected.iter().all(|k| k.starts_with("history/a/")));
    assert!(storage
        .open(PayloadId::random().unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(storage.remove(small).await.unwrap());
    assert!(!storage.remove(small).await.unwrap());
    storage.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_leaves_nothing() {
    let (storage, memory) = storage("p");
    let id = PayloadId::random().unwrap();
    let mut sink = storage.create(id).await.unwrap();
    let chunk = vec![7u8; 1024 * 1024];
    for _ in 0..12 {
        sink.write(&chunk).await.unwrap();
    }
    drop(sink);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sorted_keys(memory.as_ref()).await, Vec::<String>::new());
    assert!(storage.open(id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_remove_old_payloads_only() {
    let (storage, memory) = storage("p");
    let (id, stored_at) = put(&storage, b"x", 1).await;
    let other = ObjectPath::from("p/README");
    let nested = ObjectPath::from(format!("p/q/{id}"));
    memory
        .put(&other, PutPayload::from_static(b"r"))
        .await
        .unwrap();
    memory
        .put(&nested, PutPayload::from_static(b"n"))
        .await
        .unwrap();
    assert_eq!(storage.sweep(stored_at).await.unwrap(), 0);
    let later = stored_at + Duration::from_millis(1);
    assert_eq!(storage.sweep(later).await.unwrap(), 1);
    assert_eq!(
        sorted_keys(memory.as_ref()).await,
        vec![other.to_string(), nested.to_string()]
    );
}
