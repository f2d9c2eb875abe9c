//! Each content type through every path, with a real node and history server on loopback:
//! send → receive, archive → import into a new installation, and history sync. A remote
//! attachment with a wrong digest or a swapped blob is refused.

mod net_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_sdk::archive::{ArchiveOptions, Control};
use ferry_sdk::blocking::Client;
use ferry_sdk::content::{
    self, remote, Attachment, AttachmentStore, Content, HttpAttachmentStore, ReactionAction,
};
use ferry_sdk::store::{Message, MessageKind};
use ferry_sdk::{AccountKey, ArchiveKey, Error, GroupOptions, MessageQuery};
use net_common::Net;

fn photo() -> Attachment {
    Attachment {
        filename: Some("photo.jpg".into()),
        mime_type: "image/jpeg".into(),
        data: (0..200_000u32).map(|i| (i * 7) as u8).collect(),
    }
}

fn icon() -> Attachment {
    Attachment {
        filename: Some("icon.png".into()),
        mime_type: "image/png".into(),
        data: vec![9; 2048],
    }
}

fn app_messages(c: &Client, group: &[u8]) -> Vec<Message> {
    c.conversation(group)
        .unwrap()
        .messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .collect()
}

/// What an installation holds of the group, type by type: (kind, the decoded content's
/// essentials), in order, plus the reactions summary keyed by the text they are on.
/// Per message text: (emoji, how many inboxes have it on).
type Summary = BTreeMap<String, Vec<(String, usize)>>;

fn view(c: &Client, group: &[u8]) -> (Vec<String>, Summary) {
    let messages = app_messages(c, group);
    let text_of: BTreeMap<Vec<u8>, String> = messages
        .iter()
        .filter_map(|m| m.text().map(|t| (m.id.clone(), t)))
        .collect();
    let kinds = messages
        .iter()
        .map(|m| match content::content_of(m) {
            Content::Text(t) => format!("text {t}"),
            Content::Reply(r) => format!(
                "reply to {:?}: {}",
                text_of.get(&r.reference),
                content::TextCodec::decode_text(&r.content)
            ),
            Content::Reaction(r) => format!(
                "reaction {} {:?} to {:?}",
                r.content,
                r.action,
                text_of.get(&r.reference)
            ),
            Content::ReadReceipt => "read receipt".into(),
            Content::Attachment(a) => format!("attachment {:?} {}", a.filename, a.data.len()),
            Content::RemoteAttachment(r) => format!("remote {:?}", r.filename),
            other => format!("{} {:?}", other.kind(), m.fallback),
        })
        .collect();
    let reactions = content::reactions(&messages)
        .into_iter()
        .map(|(id, counts)| {
            (
                text_of.get(&id).cloned().unwrap_or_default(),
                counts
                    .into_iter()
                    .map(|c| (c.content, c.inboxes.len()))
                    .collect(),
            )
        })
        .collect();
    (kinds, reactions)
}

#[test]
fn every_content_type_goes_through_send_archive_and_history_sync() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let id = g.id().to_vec();
    let hello = g.send("photo time").unwrap();
    bob.sync_all().unwrap();
    let bg = bob.conversation(&id).unwrap();
    bg.send_reply(&hello, "send it!").unwrap();
    bg.send_reaction(&hello, "👍", false).unwrap();
    bg.send_reaction(&hello, "🎉", false).unwrap();
    bg.send_reaction(&hello, "🎉", true).unwrap();
    bg.send_read_receipt().unwrap();
    g.send_attachment(&icon()).unwrap();
    let store: Arc<dyn AttachmentStore> =
        Arc::new(HttpAttachmentStore::new(&net.history_url).unwrap());
    g.send_remote_attachment(&photo(), store.clone()).unwrap();
    g.send_reaction(&hello, "😀", false).unwrap();
    a1.sync_all().unwrap();
    bob.sync_all().unwrap();

    let expected = vec![
        "text photo time".to_string(),
        "reply to Some(\"photo time\"): send it!".into(),
        "reaction 👍 Added to Some(\"photo time\")".into(),
        "reaction 🎉 Added to Some(\"photo time\")".into(),
        "reaction 🎉 Removed to Some(\"photo time\")".into(),
        "read receipt".into(),
        "attachment Some(\"icon.png\") 2048".into(),
        "remote Some(\"photo.jpg\")".into(),
        "reaction 😀 Added to Some(\"photo time\")".into(),
    ];
    let reactions: Summary = BTreeMap::from([(
        "photo time".to_string(),
        vec![("👍".to_string(), 1), ("😀".to_string(), 1)],
    )]);
    // Sent and received: both members hold the same typed history.
    for c in [&a1, &bob] {
        let (kinds, r) = view(c, &id);
        assert_eq!(kinds, expected);
        assert_eq!(r, reactions);
    }
    // Stored references point at the message, for every installation.
    let bob_msgs = app_messages(&bob, &id);
    assert_eq!(bob_msgs[1].reference_id.as_deref(), Some(hello.as_slice()));
    assert_eq!(bob_msgs[2].reference_id.as_deref(), Some(hello.as_slice()));
    // The photo comes back from the remote store on the receiving side, whole.
    let Content::RemoteAttachment(r) = content::content_of(&bob_msgs[7]) else {
        panic!("remote attachment")
    };
    let got =
        ferry_sdk::blocking::block_on(content::fetch_remote_attachment(&r, store.clone())).unwrap();
    assert_eq!(got, photo());

    // A wrong digest, or a swapped blob under the right digest, is refused before decryption.
    let mut wrong = r.clone();
    wrong.content_digest = remote::digest(b"something else");
    let err =
        ferry_sdk::blocking::block_on(content::fetch_remote_attachment(&wrong, store.clone()))
            .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Content(content::ContentError::DigestMismatch { .. })
        ),
        "{err}"
    );
    assert_eq!(err.code(), "ATTACHMENT_REFUSED");
    let other = remote::seal(&icon()).unwrap();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &other.payload).unwrap();
    let swapped_url = store.upload(tmp.path()).unwrap();
    let mut swapped = r.clone();
    swapped.url = swapped_url;
    let err =
        ferry_sdk::blocking::block_on(content::fetch_remote_attachment(&swapped, store.clone()))
            .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Content(content::ContentError::DigestMismatch { .. })
        ),
        "{err}"
    );

    // Archive → import into a new installation: every type and reference survives.
    let archive = net.dir.path().join("a.ferry");
    let akey = ArchiveKey::generate();
    a1.create_archive(&archive, &akey, &ArchiveOptions::default(), &Control::new())
        .unwrap();
    let (restored, _) = net.create("restored", AccountKey::Existing(key.clone()), false);
    restored
        .import_archive(&archive, &akey, &Control::new())
        .unwrap();
    let (kinds, r) = view(&restored, &id);
    assert_eq!(kinds, expected, "after archive and import");
    assert_eq!(r, reactions);

    // History sync: a new installation asks, a1 answers through the history server.
    let (a2, _) = net.create("a2", AccountKey::Existing(key), true);
    a1.sync_all().unwrap();
    assert_eq!(a2.sync_all().unwrap().history_imported, 1);
    let (kinds, r) = view(&a2, &id);
    assert_eq!(kinds, expected, "after history sync");
    assert_eq!(r, reactions);
    assert!(matches!(
        content::content_of(&app_messages(&a2, &id)[2]),
        Content::Reaction(ref x) if x.action == ReactionAction::Added
    ));
}

#[test]
fn an_inline_attachment_over_the_limit_is_refused_and_nothing_is_sent() {
    let net = Net::new();
    let (a1, _) = net.create("a1", AccountKey::New, false);
    let g = a1.create_group(&[], GroupOptions::default()).unwrap();
    let big = Attachment {
        data: vec![0; content::MAX_INLINE_ATTACHMENT_BYTES + 1],
        ..icon()
    };
    let err = g.send_attachment(&big).unwrap_err();
    assert_eq!(err.code(), "ATTACHMENT_TOO_LARGE", "{err}");
    assert!(app_messages(&a1, g.id()).is_empty());
}

fn notices(c: &Client, group: &[u8]) -> Vec<content::GroupUpdated> {
    c.conversation(group)
        .unwrap()
        .messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::MembershipChange)
        .map(|m| match content::content_of(&m) {
            Content::GroupUpdated(u) => u,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn commits_leave_group_updated_notices_alike_on_every_member() {
    let net = Net::new();
    let (alice, _) = net.create("alice", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let (carol, _) = net.create("carol", AccountKey::New, false);
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let id = g.id().to_vec();
    bob.sync_all().unwrap();
    g.add_members(&[carol.inbox_id().into()]).unwrap();
    bob.sync_all().unwrap();
    bob.conversation(&id).unwrap().update_name("Trip").unwrap();
    alice.sync_all().unwrap();
    g.remove_members(&[carol.inbox_id().into()]).unwrap();
    bob.sync_all().unwrap();

    let (a, b, c) = (
        alice.inbox_id().to_string(),
        bob.inbox_id().to_string(),
        carol.inbox_id().to_string(),
    );
    for (who, client) in [("alice", &alice), ("bob", &bob)] {
        let n = notices(client, &id);
        let adds: Vec<_> = n
            .iter()
            .filter(|u| u.added_inboxes == [c.clone()])
            .collect();
        assert_eq!(adds.len(), 1, "{who}: {n:?}");
        assert_eq!(adds[0].initiated_by_inbox_id, a);
        let renames: Vec<_> = n
            .iter()
            .filter(|u| !u.metadata_field_changes.is_empty())
            .collect();
        assert_eq!(renames.len(), 1, "{who}: {n:?}");
        assert_eq!(renames[0].initiated_by_inbox_id, b);
        assert_eq!(
            renames[0].metadata_field_changes[0].field_name,
            "group_name"
        );
        assert_eq!(
            renames[0].metadata_field_changes[0].new_value.as_deref(),
            Some("Trip")
        );
        let removes: Vec<_> = n
            .iter()
            .filter(|u| u.removed_inboxes == [c.clone()])
            .collect();
        assert_eq!(removes.len(), 1, "{who}: {n:?}");
        assert_eq!(removes[0].initiated_by_inbox_id, a);
    }
    // The fallback reads as a sentence.
    let m = bob
        .conversation(&id)
        .unwrap()
        .messages(&MessageQuery::default())
        .unwrap()
        .into_iter()
        .find(|m| m.kind == MessageKind::MembershipChange && m.text().unwrap().contains("renamed"))
        .unwrap();
    assert_eq!(
        m.text().unwrap(),
        format!("{} renamed the group to \"Trip\"", &b[..8])
    );
    assert_eq!(m.content_type.type_id, "group_updated");
    assert_eq!(m.content_type.authority, "xmtp.org");
}

/// Deletes every file the history server holds (its retention dropped them, say).
fn drop_uploads(net: &Net) -> usize {
    let mut n = 0;
    let mut dirs = vec![net.dir.path().join("history")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                std::fs::remove_file(&p).unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn an_archive_with_attachments_restores_a_photo_after_its_blob_was_deleted() {
    use ferry_sdk::archive::ArchiveElement;
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, true);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, true);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let id = g.id().to_vec();
    bob.sync_all().unwrap();
    // Bob sends the photo: a1 holds only the message, and fetches the file to carry it.
    let store: Arc<dyn AttachmentStore> =
        Arc::new(HttpAttachmentStore::new(&net.history_url).unwrap());
    bob.conversation(&id)
        .unwrap()
        .send_remote_attachment(&photo(), store)
        .unwrap();
    g.send("nice photo").unwrap();
    a1.sync_all().unwrap();
    let msg = app_messages(&a1, &id)
        .into_iter()
        .find(|m| matches!(content::content_of(m), Content::RemoteAttachment(_)))
        .unwrap();
    let Content::RemoteAttachment(remote) = content::content_of(&msg) else {
        unreachable!()
    };
    assert!(!a1.holds_attachment_file(&remote).unwrap());

    let akey = ArchiveKey::generate();
    let with = net.dir.path().join("with.ferry");
    let meta = a1
        .create_archive(
            &with,
            &akey,
            &ArchiveOptions {
                elements: vec![
                    ArchiveElement::Messages,
                    ArchiveElement::Consent,
                    ArchiveElement::Attachments,
                ],
                ..Default::default()
            },
            &Control::new(),
        )
        .unwrap();
    assert_eq!(meta.attachment_count, Some(1));
    assert!(meta.elements.contains(&ArchiveElement::Attachments));
    assert!(
        a1.holds_attachment_file(&remote).unwrap(),
        "kept once fetched"
    );
    let without = net.dir.path().join("without.ferry");
    let meta = a1
        .create_archive(&without, &akey, &ArchiveOptions::default(), &Control::new())
        .unwrap();
    assert_eq!(meta.attachment_count, Some(0));
    let report = ferry_sdk::archive::verify_archive(&with, &akey).unwrap();
    assert!(report.intact);
    assert_eq!(report.attachment_pieces, 1);

    // The history server's retention drops the upload.
    assert!(drop_uploads(&net) >= 1);

    // Restored without the files: the message is there, the photo is gone for good.
    let (r1, _) = net.create("r1", AccountKey::Existing(key.clone()), false);
    r1.import_archive(&without, &akey, &Control::new()).unwrap();
    assert!(!r1.holds_attachment_file(&remote).unwrap());
    assert!(r1.fetch_remote_attachment(&remote).is_err());

    // Restored with them: the photo opens, byte for byte, with no server involved.
    let (r2, _) = net.create("r2", AccountKey::Existing(key), false);
    let report = r2.import_archive(&with, &akey, &Control::new()).unwrap();
    assert_eq!(report.attachments_imported, 1);
    assert_eq!(r2.fetch_remote_attachment(&remote).unwrap(), photo());
    let again = r2.import_archive(&with, &akey, &Control::new()).unwrap();
    assert_eq!(
        (again.attachments_imported, again.attachments_skipped),
        (0, 1)
    );
}
