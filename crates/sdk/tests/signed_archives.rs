//! Archives signed by the installation that made them (issue 19, part 3), through the SDK:
//! metadata, verify and import report the signer and whether the signature holds; forgeries by
//! someone who holds the archive key (a flipped signature byte, a chunk from another archive of
//! the same installation, a changed header) are refused as `BadSignature` and write nothing; an
//! archive made before signatures still imports, as unsigned; a client checks the signer in its
//! inbox's identity log (a revoked installation's archive is imported and says so); history
//! sync refuses a reply whose archive another installation signed.

mod net_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_archive::raw::RawArchive;
use ferry_archive::{ArchiveSigner, Ed25519Signer, Error as ArchiveError, WriterOptions};
use ferry_proto::message::{sync_payload, SyncPayload, SyncReply};
use ferry_sdk::archive::{
    self, ArchiveMetadata, ArchiveOptions, Control, InstallationStatus, Origin, SignatureStatus,
    SignedBy,
};
use ferry_sdk::dev::{seed, SeedOptions};
use ferry_sdk::store::{ConversationFilter, ConversationKind, MessageFilter, MessageKind, Store};
use ferry_sdk::{AccountKey, ArchiveKey, Error, GroupOptions, SyncOptions};
use net_common::{sync_envelope, texts, Net};
use prost::Message as _;

const SEED: [u8; 32] = [0x31; 32];

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[0x5a; 32]).unwrap()
}

fn signer() -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed("me", &SEED))
}

fn me() -> SignedBy {
    SignedBy {
        inbox_id: "me".into(),
        installation_id: hex::encode(signer().installation_id()),
    }
}

fn seeded(dir: &Path, name: &str, seed_no: u64, messages: u64) -> Store {
    let mut s = Store::open(dir.join(format!("{name}.db"))).unwrap();
    seed(
        &mut s,
        &SeedOptions {
            conversations: 4,
            messages,
            consent: 5,
            seed: seed_no,
            self_inbox_id: "me".into(),
            ..Default::default()
        },
    )
    .unwrap();
    s
}

/// An archive of `store` in small segments (many chunks), signed when `origin` has a signer.
fn make(store: &Store, path: &Path, origin: &Origin, label: &str) -> ArchiveMetadata {
    archive::create_archive_with(
        store,
        path,
        &key(),
        &ArchiveOptions {
            label: label.into(),
            ..Default::default()
        },
        origin,
        &Control::new(),
        &WriterOptions {
            segment_size: 4096,
            ..WriterOptions::default()
        },
    )
    .unwrap()
}

fn signed_origin() -> Origin {
    Origin {
        signer: Some(signer()),
        ..Default::default()
    }
}

#[test]
fn a_signed_archive_names_its_signer_in_metadata_verify_import_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let source = seeded(dir.path(), "source", 1, 500);
    let path = dir.path().join("signed.ferry");
    let made = make(&source, &path, &signed_origin(), "signed");
    assert_eq!(made.format_version, "1.1");
    assert_eq!(made.signed_by, Some(me()));
    assert_eq!(made.signature, SignatureStatus::Valid);
    // The origin recorded is the signer's.
    assert_eq!(made.inbox_id, "me");
    assert_eq!(made.installation_id, me().installation_id);

    let m = archive::archive_metadata(&path, &key()).unwrap();
    assert_eq!(
        (m.format_version.as_str(), m.signed_by.clone(), m.signature),
        ("1.1", Some(me()), SignatureStatus::Valid)
    );
    assert_eq!(m.signature_error, None);
    assert_eq!(m.installation_status, None, "no client, no identity log");
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["signature"], "valid");
    assert_eq!(json["signed_by"]["inbox_id"], "me");
    assert_eq!(json["signed_by"]["installation_id"], me().installation_id);

    let v = archive::verify_archive(&path, &key()).unwrap();
    assert!(v.intact);
    assert_eq!(v.metadata.signature, SignatureStatus::Valid);

    let mut target = Store::open(dir.path().join("target.db")).unwrap();
    let r = archive::import_archive(&mut target, &path, &key(), &Control::new()).unwrap();
    assert_eq!(r.messages_imported, 500);
    assert_eq!(r.unknown_skipped, 0, "the signature is no element");
    assert_eq!(
        (r.signed_by.clone(), r.signature),
        (Some(me()), SignatureStatus::Valid)
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["signature"], "valid");
    assert_eq!(json["signed_by"]["installation_id"], me().installation_id);
}

/// Imports `bytes` into `target`: it must fail with `BadSignature` and change nothing; the
/// metadata says the signature is invalid.
fn refused(target: &mut Store, file: &Path, bytes: &[u8], case: &str) {
    std::fs::write(file, bytes).unwrap();
    let before = target.dump().unwrap();
    let err = archive::import_archive(target, file, &key(), &Control::new()).expect_err(case);
    assert!(
        matches!(err, Error::Archive(ArchiveError::BadSignature(_))),
        "{case}: {err:?}"
    );
    assert_eq!(target.dump().unwrap(), before, "{case}: the store changed");
    assert!(archive::verify_archive(file, &key()).is_err(), "{case}");
    let m = archive::archive_metadata(file, &key()).unwrap();
    assert_eq!(m.signature, SignatureStatus::Invalid, "{case}");
    assert_eq!(m.signed_by, Some(me()), "{case}: the claim is shown");
    assert!(
        m.signature_error.as_deref().unwrap().contains("signature"),
        "{case}: {:?}",
        m.signature_error
    );
    assert_eq!(
        serde_json::to_value(&m).unwrap()["signature"],
        "invalid",
        "{case}"
    );
}

#[test]
fn forged_signed_archives_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = seeded(dir.path(), "source", 2, 600);
    let a_path = dir.path().join("a.ferry");
    make(&source, &a_path, &signed_origin(), "first");
    // Another archive of the same installation under the same key, of the same store: other
    // metadata (label, time) and another signature; the chunks between are the same.
    let b_path = dir.path().join("b.ferry");
    make(&source, &b_path, &signed_origin(), "second");
    let a = std::fs::read(&a_path).unwrap();
    let raw_b = RawArchive::open(&std::fs::read(&b_path).unwrap(), &key()).unwrap();

    let mut target = seeded(dir.path(), "target", 7, 50);
    let file = dir.path().join("forged.ferry");
    // The intact archive imports into a copy of the target (the refusals are the forgeries').
    {
        let mut copy = seeded(dir.path(), "copy", 7, 50);
        let r = archive::import_archive(&mut copy, &a_path, &key(), &Control::new()).unwrap();
        assert_eq!(r.signature, SignatureStatus::Valid);
        let raw = RawArchive::open(&a, &key()).unwrap();
        std::fs::write(&file, raw.seal().unwrap()).unwrap();
        let m = archive::archive_metadata(&file, &key()).unwrap();
        assert_eq!(m.signature, SignatureStatus::Valid, "resealed unchanged");
    }

    // A flipped byte of the signature (the chunk sealed again, so it authenticates).
    let mut raw = RawArchive::open(&a, &key()).unwrap();
    let last = raw.chunks.last_mut().unwrap();
    let n = last.len();
    last[n - 1] ^= 0x01;
    refused(&mut target, &file, &raw.seal().unwrap(), "signature byte");

    // Chunks from the other archive, sealed at the same position: its metadata, its signature.
    let mut raw = RawArchive::open(&a, &key()).unwrap();
    assert_ne!(raw.chunks[0], raw_b.chunks[0]);
    raw.chunks[0] = raw_b.chunks[0].clone();
    refused(
        &mut target,
        &file,
        &raw.seal().unwrap(),
        "metadata chunk from b",
    );
    let mut raw = RawArchive::open(&a, &key()).unwrap();
    *raw.chunks.last_mut().unwrap() = raw_b.chunks.last().unwrap().clone();
    refused(&mut target, &file, &raw.seal().unwrap(), "signature from b");

    // A changed header: the same salt (so the same keys and chunks), another segment size.
    let mut raw = RawArchive::open(&a, &key()).unwrap();
    let salt = raw.header().salt;
    raw.new_header(&key(), salt, 1, 8192).unwrap();
    let forged = raw.seal().unwrap();
    assert_eq!(forged[112..], a[112..], "only the header differs");
    refused(&mut target, &file, &forged, "segment size in the header");
}

fn vector() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/ferry/archive-1.0.ferry"
    ))
}

#[test]
fn an_archive_made_before_signatures_still_imports_and_says_unsigned() {
    // Written by Ferry before archives were signed (tests/vectors/README.md).
    let key = ArchiveKey::from_bytes(&[0x42; 32]).unwrap();
    let m = archive::archive_metadata(&vector(), &key).unwrap();
    assert_eq!(m.format_version, "1.0");
    assert_eq!(
        (m.signed_by.clone(), m.signature),
        (None, SignatureStatus::Unsigned)
    );
    assert_eq!(m.inbox_id, "fixture-inbox", "an origin, but no signature");
    assert_eq!(m.installation_id, "11".repeat(32));
    assert_eq!(
        (m.conversation_count, m.message_count, m.consent_count),
        (Some(3), Some(40), Some(3))
    );
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["signature"], "unsigned");
    assert!(json["signed_by"].is_null());
    let v = archive::verify_archive(&vector(), &key).unwrap();
    assert!(v.intact);
    assert_eq!(v.metadata.signature, SignatureStatus::Unsigned);
    let dir = tempfile::tempdir().unwrap();
    let mut target = Store::open(dir.path().join("t.db")).unwrap();
    let r = archive::import_archive(&mut target, &vector(), &key, &Control::new()).unwrap();
    assert_eq!((r.conversations_added, r.messages_imported), (3, 40));
    assert_eq!(
        (r.signed_by, r.signature),
        (None, SignatureStatus::Unsigned)
    );

    // A store without an installation (`ferry dev seed`) writes unsigned archives today too.
    let bare = seeded(dir.path(), "bare", 3, 30);
    let origin = Origin::of_store(&bare).unwrap();
    assert!(origin.signer.is_none());
    let path = dir.path().join("bare.ferry");
    let made = make(&bare, &path, &origin, "bare");
    assert_eq!(made.format_version, "1.0");
    assert_eq!(made.signature, SignatureStatus::Unsigned);
    let m = archive::archive_metadata(&path, &ArchiveKey::from_bytes(&[0x5a; 32]).unwrap());
    assert_eq!(m.unwrap().signature, SignatureStatus::Unsigned);
}

#[test]
fn a_clients_archives_are_signed_and_the_signer_is_checked_in_the_identity_log() {
    let net = Net::new();
    let (a1, account) = net.create("a1", AccountKey::New, false);
    let account = account.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    g.send("kept history").unwrap();
    let a1_signed = SignedBy {
        inbox_id: a1.inbox_id().into(),
        installation_id: hex::encode(a1.installation_id()),
    };
    let path = net.dir.path().join("a1.ferry");
    let made = a1
        .create_archive(&path, &key(), &ArchiveOptions::default(), &Control::new())
        .unwrap();
    assert_eq!(made.signed_by.as_ref(), Some(&a1_signed));
    assert_eq!(made.signature, SignatureStatus::Valid);
    // The store-level path (`ferry archive create`, scheduled backups) signs with the same key.
    let bare_path = net.dir.path().join("a1-bare.ferry");
    a1.with_store(|store| {
        let origin = Origin::of_store(store).unwrap();
        archive::create_archive(
            store,
            &bare_path,
            &key(),
            &ArchiveOptions::default(),
            &origin,
            &Control::new(),
        )
    })
    .unwrap();
    let m = archive::archive_metadata(&bare_path, &key()).unwrap();
    assert_eq!(
        (m.signed_by.as_ref(), m.signature),
        (Some(&a1_signed), SignatureStatus::Valid)
    );

    // Another installation of the inbox: the signer is active in the inbox's log.
    let (a2, _) = net.create("a2", AccountKey::Existing(account.clone()), false);
    let m = a2.archive_metadata(&path, &key()).unwrap();
    assert_eq!(m.installation_status, Some(InstallationStatus::Active));
    assert_eq!(
        serde_json::to_value(&m).unwrap()["installation_status"],
        "active"
    );
    let r = a2.import_archive(&path, &key(), &Control::new()).unwrap();
    assert_eq!(r.signed_by.as_ref(), Some(&a1_signed));
    assert_eq!(r.installation_status, Some(InstallationStatus::Active));

    // a1 revoked: its archive is reported as a revoked installation's, and still imports.
    a2.revoke_installation(
        std::sync::Arc::new(ferry_sdk::KeyPair::from_seed(&account)),
        a1.installation_id(),
    )
    .unwrap();
    let m = a2.archive_metadata(&path, &key()).unwrap();
    assert_eq!(m.signature, SignatureStatus::Valid);
    assert_eq!(m.installation_status, Some(InstallationStatus::Revoked));
    let (a3, _) = net.create("a3", AccountKey::Existing(account), false);
    let r = a3.import_archive(&path, &key(), &Control::new()).unwrap();
    assert!(r.messages_imported >= 1);
    assert_eq!(r.installation_status, Some(InstallationStatus::Revoked));
    assert_eq!(
        serde_json::to_value(&r).unwrap()["installation_status"],
        "revoked"
    );
    let kept = a3.conversation(g.id()).unwrap();
    assert_eq!(texts(&kept), ["kept history"]);

    // Signed by a key that is no installation of the inbox it names: unknown there.
    let stranger = Origin {
        signer: Some(Arc::new(Ed25519Signer::from_seed(a2.inbox_id(), &[9; 32]))),
        ..Default::default()
    };
    let path3 = net.dir.path().join("stranger.ferry");
    a2.with_store(|store| {
        archive::create_archive(
            store,
            &path3,
            &key(),
            &ArchiveOptions::default(),
            &stranger,
            &Control::new(),
        )
    })
    .unwrap();
    let m = a2.archive_metadata(&path3, &key()).unwrap();
    assert_eq!(m.signature, SignatureStatus::Valid);
    assert_eq!(m.installation_status, Some(InstallationStatus::Unknown));
}

/// The reply with pin `pin` in `c`'s sync groups.
fn reply(c: &ferry_sdk::blocking::Client, pin: &str) -> SyncReply {
    c.with_store(|store| reply_in(store, pin))
}

fn reply_in(store: &ferry_sdk::store::Store, pin: &str) -> SyncReply {
    let syncs = store
        .conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            ..Default::default()
        })
        .unwrap();
    syncs
        .into_iter()
        .flat_map(|g| {
            store
                .messages(&MessageFilter {
                    conversation_id: Some(g.id),
                    include_sync: true,
                    ..Default::default()
                })
                .unwrap()
        })
        .find_map(|m| match SyncPayload::decode(m.content.as_slice()) {
            Ok(SyncPayload {
                kind: Some(sync_payload::Kind::Reply(r)),
            }) if r.request_id == pin => Some(r),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_sync_reply_whose_archive_another_own_installation_signed_is_refused() {
    let net = Net::new();
    // a1 has no history server, so it answers nobody.
    let (a1, account) = net.create("a1", AccountKey::New, false);
    let account = account.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(account.clone()), true);
    a1.sync_all().unwrap();
    g.send("seen by a2").unwrap();
    a2.sync_all().unwrap();
    assert_eq!(texts(&a2.conversation(g.id()).unwrap()), ["seen by a2"]);
    let (a3, _) = net.create("a3", AccountKey::Existing(account), true);
    let pin = a3.pending_sync_requests().unwrap()[0].clone();
    // a2 (itself still waiting for history, so it answers nobody) announces an archive it
    // signed; a1, another active installation of the inbox, sends that reply as its own
    // answer to a3's request.
    a2.sync_all().unwrap();
    let own_pin = a2.send_sync_archive(&SyncOptions::default(), None).unwrap();
    let mut forwarded = reply(&a2, &own_pin);
    forwarded.request_id = pin.clone();
    a1.sync_all().unwrap();
    let sync = a1.ensure_sync_group().unwrap();
    a1.sync_group_conversation(&sync)
        .unwrap()
        .send_envelope(sync_envelope(sync_payload::Kind::Reply(forwarded.clone())))
        .unwrap();

    assert_eq!(a3.sync_all().unwrap().history_imported, 0);
    let listed = a3.list_available_archives(1).unwrap();
    let from_a1 = listed
        .iter()
        .find(|a| a.pin == pin && a.sender_installation_id == hex::encode(a1.installation_id()))
        .unwrap();
    assert_eq!(from_a1.state, "failed", "for good, at once");
    assert_eq!(from_a1.attempts, 1);
    let why = from_a1.last_error.as_deref().unwrap();
    assert!(
        why.contains(&format!(
            "signed by installation {}",
            hex::encode(a2.installation_id())
        )),
        "{why}"
    );
    assert!(!from_a1.imported);
    assert_eq!(
        a3.pending_sync_requests().unwrap(),
        std::slice::from_ref(&pin)
    );
    let imported = a3
        .with_store(|s| s.messages(&MessageFilter::default()))
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .count();
    assert_eq!(imported, 0, "nothing of the archive");

    // The same reply from a2, which signed the archive, is imported.
    let sync2 = a2.ensure_sync_group().unwrap();
    a2.sync_group_conversation(&sync2)
        .unwrap()
        .send_envelope(sync_envelope(sync_payload::Kind::Reply(forwarded)))
        .unwrap();
    assert_eq!(a3.sync_all().unwrap().history_imported, 1);
    assert_eq!(texts(&a3.conversation(g.id()).unwrap()), ["seen by a2"]);
    let reports = a3.sync_import_reports(&pin).unwrap();
    assert_eq!(reports.len(), 1);
    let (sender, report) = &reports[0];
    assert_eq!(sender, &hex::encode(a2.installation_id()));
    assert_eq!(report.signature, SignatureStatus::Valid);
    assert_eq!(
        report.signed_by.as_ref().map(|s| s.installation_id.clone()),
        Some(hex::encode(a2.installation_id()))
    );
    assert_eq!(report.installation_status, Some(InstallationStatus::Active));
}
