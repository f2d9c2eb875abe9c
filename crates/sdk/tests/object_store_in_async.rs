//! The backup manager's object-store destination is blocking, like the rest of the backup
//! manager; called from an async app's task it must neither panic (blocking on one runtime
//! from another) nor hang, and dropping it there must not panic either.

use ferry_sdk::backup_manager::{Destination, ObjectStoreDestination};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_destination_works_from_inside_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("backup.ferry");
    std::fs::write(&src, b"ciphertext of an archive").unwrap();
    let dest = ObjectStoreDestination::local_filesystem(&dir.path().join("bucket")).unwrap();
    dest.put("one.ferry", &src).unwrap();
    let names: Vec<String> = dest.list().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["one.ferry"]);
    let back = dir.path().join("back.ferry");
    dest.get("one.ferry", &back).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"ciphertext of an archive");
    dest.delete("one.ferry").unwrap();
    assert!(dest.list().unwrap().is_empty());
    // Dropped on a runtime's worker thread.
    drop(dest);
}

#[test]
fn and_from_plain_blocking_code() {
    let dest = ObjectStoreDestination::in_memory().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("b");
    std::fs::write(&src, b"x").unwrap();
    dest.put("b.ferry", &src).unwrap();
    assert_eq!(dest.list().unwrap().len(), 1);
}
