//! Remote attachments in S3-compatible object storage (moto's server on loopback, started
//! through ferry-testkit), between two clients on a real node: the sender's file goes to the
//! bucket, the message carries its URL, the receiver downloads it through the store, checks
//! the digest and decrypts it. The store reads its endpoint and credentials from the `AWS_*`
//! environment, so this binary holds this one test, the only one to set them.

#![cfg(feature = "s3")]

mod net_common;

use std::sync::Arc;

use ferry_sdk::content::{self, Attachment, AttachmentStore, Content, ObjectAttachmentStore};
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, Error, GroupOptions, MessageQuery};
use net_common::Net;

#[test]
fn a_photo_goes_through_an_s3_bucket() {
    let s3 = ferry_testkit::S3::start();
    let bucket = format!("ferry-attachments-{}", std::process::id());
    s3.create_bucket(&bucket);
    for (key, value) in s3.env() {
        std::env::set_var(key, value);
    }
    let public = format!("{}/{bucket}/photos", s3.endpoint());
    let store: Arc<dyn AttachmentStore> =
        Arc::new(ObjectAttachmentStore::s3(&format!("s3://{bucket}/photos"), &public).unwrap());

    let net = Net::new();
    let (alice, _) = net.create("alice", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    // Large enough to need the remote path (over the 1,000,000-byte inline limit).
    let photo = Attachment {
        filename: Some("beach.jpg".into()),
        mime_type: "image/jpeg".into(),
        data: (0..3_000_000u32).map(|i| (i % 253) as u8).collect(),
    };
    g.send_remote_attachment(&photo, store.clone()).unwrap();
    bob.sync_all().unwrap();
    let m = bob
        .conversation(g.id())
        .unwrap()
        .messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .find(|m| m.kind == MessageKind::Application)
        .unwrap();
    let Content::RemoteAttachment(remote) = content::content_of(&m) else {
        panic!("a remote attachment")
    };
    assert!(remote.url.starts_with(&public), "{}", remote.url);
    assert!(!bob.holds_attachment_file(&remote).unwrap());

    // Bob fetches it through the bucket: digest checked, decrypted, kept.
    let got =
        ferry_sdk::blocking::block_on(bob.fetch_remote_attachment_from(&remote, store.clone()))
            .unwrap();
    assert_eq!(got, photo);
    assert!(bob.holds_attachment_file(&remote).unwrap());

    // A URL outside the store is refused before any request; an object that is not there is
    // a typed store error.
    let mut elsewhere = remote.clone();
    elsewhere.url = "https://example.com/other".into();
    let err =
        ferry_sdk::blocking::block_on(content::fetch_remote_attachment(&elsewhere, store.clone()))
            .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let mut missing = remote.clone();
    missing.url = format!("{public}/{}", "0".repeat(32));
    let err = ferry_sdk::blocking::block_on(content::fetch_remote_attachment(&missing, store))
        .unwrap_err();
    assert_eq!(err.code(), "ATTACHMENT_STORE_ERROR", "{err}");
}
