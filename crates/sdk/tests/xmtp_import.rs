//! Importing libxmtp archives through the SDK: the real vector (legacy nonces) and archives built
//! here in the current nonce scheme (see tests/xmtp_common).

mod xmtp_common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_proto::Message as _;
use ferry_sdk::archive::{
    archive_metadata, import_archive, verify_archive, ArchiveElement, ArchiveFormat, Control,
    ImportReport, Progress,
};
use ferry_sdk::store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
    Table,
};
use ferry_sdk::{ArchiveKey, Error};
use ferry_xmtp_archive::proto::{
    self, backup_element::Element, BackupElement, Compression, ConsentType, ContentTypeId,
    ConversationType, EncodedContent, GroupMessageKind,
};
use ferry_xmtp_archive::XmtpError;
use xmtp_common::{archive, element, metadata, vector, VECTOR};

const GROUP_ID: &str = "4171bfd4a27acabeeb02c1edb4c27c12";
const MESSAGE_ID: &str = "3ca32cdcf6b83f3933da0bdb59079c0f6724b47691a489a7f5db3a5552afb64b";
const INBOX: &str = "6d9f460c2faa1fa9ed31574e59a4451277f5138a80acd087bd56d9eadf20df04";
const SENT_AT_NS: i64 = 1_762_977_827_390_151_000;
const CONSENT_AT_NS: i64 = 1_762_977_827_351_314_000;

// 2025-11-12T00:00:00Z and 2025-11-13T00:00:00Z in nanoseconds.
const NOV_12_NS: i64 = 1_762_905_600 * 1_000_000_000;
const NOV_13_NS: i64 = NOV_12_NS + 86_400 * 1_000_000_000;

fn zero_key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[0; 32]).unwrap()
}

fn wrong_key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[1; 32]).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
    store: Store,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store.db")).unwrap();
    Env { dir, store }
}

impl Env {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn import(&mut self, path: &Path, key: &ArchiveKey) -> ferry_sdk::Result<ImportReport> {
        import_archive(&mut self.store, path, key, &Control::new())
    }

    fn dump(&self) -> Vec<String> {
        self.store.dump().unwrap()
    }

    /// Imports `path`, expects it to fail, and checks that the store did not change.
    fn import_fails(&mut self, path: &Path, key: &ArchiveKey) -> Error {
        let before = self.dump();
        let err = self.import(path, key).unwrap_err();
        assert_eq!(
            self.dump(),
            before,
            "a failed import changed the store ({err})"
        );
        err
    }

    fn all_conversations(&self) -> Vec<Conversation> {
        self.store
            .conversations(&ConversationFilter {
                include_sync: true,
                ..Default::default()
            })
            .unwrap()
    }
}

// ---- the real vector ----------------------------------------------------------------------

#[test]
fn vector_path_resolves() {
    assert!(Path::new(VECTOR).is_file(), "{VECTOR}");
    assert_eq!(vector().len(), 780);
}

#[test]
fn vector_imports_its_group_message_and_consent() {
    let mut env = env();
    let report = env.import(Path::new(VECTOR), &zero_key()).unwrap();
    assert_eq!(
        report,
        ImportReport {
            format: ArchiveFormat::Xmtp,
            conversations_added: 1,
            messages_imported: 1,
            consent_applied: 1,
            ..Default::default()
        }
    );

    let convs = env.all_conversations();
    assert_eq!(convs.len(), 1);
    let c = &convs[0];
    assert_eq!(hex::encode(&c.id), GROUP_ID);
    assert_eq!(c.name, "My group");
    assert_eq!(c.kind, ConversationKind::Group);
    assert_eq!(c.membership, Membership::Restored);
    assert!(!c.is_active());
    assert_eq!(c.creator_inbox_id, INBOX);
    assert_eq!((c.description.as_str(), c.image_url.as_str()), ("", ""));
    assert_eq!(
        (c.dm_id.as_deref(), c.dm_peer_inbox_id.as_deref()),
        (None, None)
    );
    assert!((NOV_12_NS..NOV_13_NS).contains(&c.created_at_ns));
    assert_eq!(c.last_message_ns, Some(SENT_AT_NS));

    let msgs = env.store.messages(&MessageFilter::default()).unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(hex::encode(&m.id), MESSAGE_ID);
    assert_eq!(m.conversation_id, c.id);
    assert_eq!(m.text().as_deref(), Some("hello there"));
    assert_eq!(
        ferry_sdk::content::content_of(m),
        ferry_sdk::content::Content::Text("hello there".into()),
        "the vector's message imports as text"
    );
    assert_eq!(m.content, b"hello there");
    assert_eq!(m.content_type, ct("xmtp.org", "text", 1, 0));
    assert_eq!(m.sent_at_ns, SENT_AT_NS);
    assert_eq!(m.sender_inbox_id, INBOX);
    assert_eq!(m.sender_installation_id.len(), 32);
    assert_eq!(m.kind, MessageKind::Application);
    assert_eq!(m.delivery_status, DeliveryStatus::Published);
    assert_eq!(
        (m.fallback.as_deref(), m.parameters.as_deref()),
        (None, None)
    );

    assert_eq!(
        env.store.consent_list().unwrap(),
        vec![ConsentRecord {
            entity_type: ConsentEntity::Conversation,
            entity: GROUP_ID.into(),
            state: ConsentState::Allowed,
            updated_at_ns: CONSENT_AT_NS,
        }]
    );
    // The consent entity is Ferry's conversation convention: the store joins on it.
    let allowed = env
        .store
        .conversations(&ConversationFilter {
            consent: Some(ConsentState::Allowed),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(allowed.len(), 1);
}

#[test]
fn vector_metadata_and_verify() {
    let meta = archive_metadata(Path::new(VECTOR), &zero_key()).unwrap();
    assert_eq!(meta.format, ArchiveFormat::Xmtp);
    assert_eq!(meta.format_version, "0");
    assert_eq!(meta.key_kind, "key");
    assert_eq!(
        meta.elements,
        vec![ArchiveElement::Messages, ArchiveElement::Consent]
    );
    assert!((NOV_12_NS..NOV_13_NS).contains(&meta.created_at_ns));
    assert_eq!((meta.start_ns, meta.end_ns), (None, None));
    assert_eq!(meta.producer, "libxmtp");
    assert_eq!(meta.file_bytes, 780);
    assert_eq!(
        (
            meta.conversation_count,
            meta.message_count,
            meta.consent_count
        ),
        (None, None, None)
    );
    assert_eq!(
        (meta.inbox_id.as_str(), meta.installation_id.as_str()),
        ("", "")
    );

    let v = verify_archive(Path::new(VECTOR), &zero_key()).unwrap();
    assert!(v.intact);
    assert_eq!(
        (v.conversations, v.messages, v.consent, v.unknown),
        (1, 1, 1, 0)
    );
    assert_eq!(v.metadata.format, ArchiveFormat::Xmtp);
}

#[test]
fn reimporting_the_vector_skips_everything() {
    let mut env = env();
    env.import(Path::new(VECTOR), &zero_key()).unwrap();
    let before = env.dump();
    let again = env.import(Path::new(VECTOR), &zero_key()).unwrap();
    assert_eq!(
        again,
        ImportReport {
            format: ArchiveFormat::Xmtp,
            conversations_merged: 1,
            messages_skipped: 1,
            consent_skipped: 1,
            ..Default::default()
        }
    );
    assert_eq!(env.dump(), before);
}

#[test]
fn wrong_key_fails_and_writes_nothing() {
    let mut env = env();
    let err = env.import_fails(Path::new(VECTOR), &wrong_key());
    assert!(
        err.to_string()
            .contains("wrong key or corrupted xmtp archive"),
        "{err}"
    );
    assert!(matches!(
        err,
        Error::Xmtp(XmtpError::WrongKeyOrCorrupted { record: 0 })
    ));
    assert!(env.dump().is_empty());

    env.import(Path::new(VECTOR), &zero_key()).unwrap();
    assert!(!env.dump().is_empty());
    let err = env.import_fails(Path::new(VECTOR), &wrong_key());
    assert!(err
        .to_string()
        .contains("wrong key or corrupted xmtp archive"));

    let err = archive_metadata(Path::new(VECTOR), &wrong_key()).unwrap_err();
    assert!(err
        .to_string()
        .contains("wrong key or corrupted xmtp archive"));
    let err = verify_archive(Path::new(VECTOR), &wrong_key()).unwrap_err();
    assert!(err
        .to_string()
        .contains("wrong key or corrupted xmtp archive"));
}

#[test]
fn a_passphrase_is_refused() {
    let mut env = env();
    let pass = ArchiveKey::passphrase("correct horse battery staple");
    let err = env.import_fails(Path::new(VECTOR), &pass);
    assert!(matches!(err, Error::XmtpPassphrase), "{err}");
    assert_eq!(
        err.to_string(),
        "xmtp archives take a 32-byte key, not a passphrase"
    );
    assert!(matches!(
        archive_metadata(Path::new(VECTOR), &pass),
        Err(Error::XmtpPassphrase)
    ));
    assert!(matches!(
        verify_archive(Path::new(VECTOR), &pass),
        Err(Error::XmtpPassphrase)
    ));
}

#[test]
fn a_cancelled_import_writes_nothing() {
    let mut env = env();
    let ctl = Control::new();
    ctl.cancel();
    let err = import_archive(&mut env.store, Path::new(VECTOR), &zero_key(), &ctl).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(env.dump().is_empty());
}

// ---- generated archives (current nonce scheme) --------------------------------------------

const KEY: [u8; 32] = [7; 32];
/// Low bytes near the top so that N0 + i carries across bytes.
const N0: [u8; 12] = [
    0xf0, 0xff, 0xff, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01,
];
const TEXT_MESSAGES: usize = 3_200;
const GROUPS: usize = 6;
const DMS: usize = 4;
const BASE_NS: i64 = 1_700_000_000_000_000_000;
const EXPORTED_NS: i64 = BASE_NS + 9_000_000_000_000;
const START_NS: i64 = BASE_NS - 1;
const END_NS: i64 = BASE_NS + 8_000_000_000_000;

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&KEY).unwrap()
}

fn inbox(i: usize) -> String {
    format!("{:064x}", 0xabc0_0000 + i)
}

fn group_id(i: usize) -> Vec<u8> {
    let mut id = vec![0x10; 16];
    id[0] = i as u8;
    id
}

fn sync_id() -> Vec<u8> {
    vec![0x5c; 16]
}

fn message_id(i: usize) -> Vec<u8> {
    let mut id = vec![0xab; 32];
    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    id
}

fn content_id(type_id: &str, major: u32, minor: u32) -> Option<ContentTypeId> {
    Some(ContentTypeId {
        authority_id: "xmtp.org".into(),
        type_id: type_id.into(),
        version_major: major,
        version_minor: minor,
    })
}

fn text_content(text: &str) -> EncodedContent {
    EncodedContent {
        r#type: content_id("text", 1, 0),
        parameters: HashMap::from([("encoding".to_string(), "UTF-8".to_string())]),
        fallback: None,
        content: text.as_bytes().to_vec(),
        compression: None,
    }
}

fn group_save(id: Vec<u8>, ty: ConversationType, created_at_ns: i64) -> proto::GroupSave {
    proto::GroupSave {
        id,
        created_at_ns,
        membership_state: proto::GroupMembershipState::Allowed as i32,
        conversation_type: ty as i32,
        ..Default::default()
    }
}

fn message_save(i: usize, group: Vec<u8>, bytes: Vec<u8>) -> proto::GroupMessageSave {
    proto::GroupMessageSave {
        id: message_id(i),
        group_id: group,
        decrypted_message_bytes: bytes,
        sent_at_ns: BASE_NS + i as i64 * 1_000_000,
        kind: GroupMessageKind::Application as i32,
        sender_installation_id: vec![(i % 5) as u8; 32],
        sender_inbox_id: inbox(i % 3),
        delivery_status: proto::DeliveryStatus::Published as i32,
        content_type_save: proto::ContentType::Unspecified as i32,
        ..Default::default()
    }
}

/// The conversation ids of the generated archive, in order: groups, then DMs.
fn conversation_ids() -> Vec<Vec<u8>> {
    (0..GROUPS + DMS).map(group_id).collect()
}

/// Message indexes of the special (non-plain-text) messages.
const REACTION: usize = TEXT_MESSAGES;
const RAW_TEXT: usize = TEXT_MESSAGES + 1;
const RAW_BLOB: usize = TEXT_MESSAGES + 2;
const RAW_ENUM_ONLY: usize = TEXT_MESSAGES + 3;
const MEMBERSHIP: usize = TEXT_MESSAGES + 4;
const COMPRESSED: usize = TEXT_MESSAGES + 5;
const UNTYPED_TEXT: usize = TEXT_MESSAGES + 6;
const UNTYPED_BINARY: usize = TEXT_MESSAGES + 7;
const GZIPPED: usize = TEXT_MESSAGES + 8;
const DEFLATED: usize = TEXT_MESSAGES + 9;
const ALL_MESSAGES: usize = TEXT_MESSAGES + 10;
const SYNC_FIRST: usize = 100_000;

fn text_of(i: usize) -> String {
    format!("message {i}: {}", "lorem ipsum ".repeat(i % 7))
}

/// Groups (one with an unspecified type), DMs, a sync group with messages, 3,200 text messages,
/// special messages, two unknown elements, and consent of every kind (one unspecified).
fn generated_elements() -> Vec<BackupElement> {
    let mut out = vec![metadata(
        &[
            proto::BackupElementSelection::Messages as i32,
            proto::BackupElementSelection::Consent as i32,
        ],
        EXPORTED_NS,
        Some(START_NS),
        Some(END_NS),
    )];
    for g in 0..GROUPS {
        let ty = if g == GROUPS - 1 {
            ConversationType::Unspecified
        } else {
            ConversationType::Group
        };
        let mut save = group_save(group_id(g), ty, BASE_NS - 1_000 + g as i64);
        save.metadata = Some(proto::ImmutableMetadataSave {
            creator_inbox_id: inbox(g % 3),
        });
        if g != GROUPS - 1 {
            save.mutable_metadata = Some(proto::MutableMetadataSave {
                attributes: HashMap::from([
                    ("group_name".to_string(), format!("Group {g}")),
                    ("description".to_string(), format!("About {g}")),
                    (
                        "group_image_url_square".to_string(),
                        format!("https://example.com/{g}.png"),
                    ),
                    ("_internal".to_string(), "x".to_string()),
                ]),
                admin_list: vec![inbox(0)],
                super_admin_list: vec![inbox(g % 3)],
            });
        }
        out.push(element(Element::Group(save)));
    }
    for d in 0..DMS {
        let mut save = group_save(group_id(GROUPS + d), ConversationType::Dm, BASE_NS);
        let (me, peer) = (inbox(0), inbox(10 + d));
        // libxmtp sorts the two inboxes; the creator may be either.
        save.dm_id = Some(if d % 2 == 0 {
            format!("dm:{me}:{peer}")
        } else {
            format!("dm:{peer}:{me}")
        });
        save.metadata = Some(proto::ImmutableMetadataSave {
            creator_inbox_id: me,
        });
        out.push(element(Element::Group(save)));
    }
    let mut sync = group_save(sync_id(), ConversationType::Sync, BASE_NS);
    sync.metadata = Some(proto::ImmutableMetadataSave {
        creator_inbox_id: inbox(0),
    });
    out.push(element(Element::Group(sync)));

    let ids = conversation_ids();
    for i in 0..TEXT_MESSAGES {
        let mut m = message_save(
            i,
            ids[i % ids.len()].clone(),
            text_content(&text_of(i)).encode_to_vec(),
        );
        m.content_type_save = proto::ContentType::Text as i32;
        m.delivery_status = (i % 4) as i32; // unspecified, unpublished, published, failed
        if i % 100 == 1 {
            m.reference_id = Some(message_id(i - 1));
        }
        out.push(element(Element::GroupMessage(m)));
        if i % 80 == 0 {
            // Sync-group messages interleaved with the others.
            let k = SYNC_FIRST + i / 80;
            out.push(element(Element::GroupMessage(message_save(
                k,
                sync_id(),
                text_content("sync payload").encode_to_vec(),
            ))));
        }
    }

    let reaction = EncodedContent {
        r#type: content_id("reaction", 1, 2),
        parameters: HashMap::new(),
        fallback: Some("Reacted 👍 to an earlier message".into()),
        content: br#"{"action":"added","content":"+1"}"#.to_vec(),
        compression: None,
    };
    let mut m = message_save(REACTION, ids[0].clone(), reaction.encode_to_vec());
    m.reference_id = Some(message_id(0));
    out.push(element(Element::GroupMessage(m)));

    // Bytes that are not an EncodedContent, typed by the message's own fields.
    let mut m = message_save(RAW_TEXT, ids[1].clone(), b"raw hello".to_vec());
    m.content_type_save = proto::ContentType::Text as i32;
    (m.authority_id, m.content_type) = ("xmtp.org".into(), "text".into());
    (m.version_major, m.version_minor) = (1, 0);
    out.push(element(Element::GroupMessage(m)));

    let mut m = message_save(RAW_BLOB, ids[2].clone(), vec![0xff, 0xfe, 0x00, 0x01]);
    m.content_type_save = proto::ContentType::Unknown as i32;
    (m.authority_id, m.content_type) = ("example.com".into(), "blob".into());
    (m.version_major, m.version_minor) = (2, 1);
    out.push(element(Element::GroupMessage(m)));

    let mut m = message_save(RAW_ENUM_ONLY, ids[3].clone(), vec![0xff, 0x07]);
    m.content_type_save = proto::ContentType::Reaction as i32;
    out.push(element(Element::GroupMessage(m)));

    let change = EncodedContent {
        r#type: content_id("group_membership_change", 1, 0),
        parameters: HashMap::new(),
        fallback: None,
        content: vec![1, 2, 3],
        compression: None,
    };
    let mut m = message_save(MEMBERSHIP, ids[4].clone(), change.encode_to_vec());
    m.kind = GroupMessageKind::MembershipChange as i32;
    out.push(element(Element::GroupMessage(m)));

    let compressed = EncodedContent {
        r#type: content_id("text", 1, 0),
        parameters: HashMap::new(),
        fallback: Some("compressed text".into()),
        content: vec![0x1f, 0x8b, 0x08, 0x00, 0x99],
        compression: Some(Compression::Gzip as i32),
    };
    let m = message_save(COMPRESSED, ids[GROUPS].clone(), compressed.encode_to_vec());
    out.push(element(Element::GroupMessage(m)));
    for (id, words, c) in [
        (GZIPPED, "squeezed by gzip", Compression::Gzip),
        (DEFLATED, "squeezed by deflate", Compression::Deflate),
    ] {
        let packed = match c {
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut e, words.as_bytes()).unwrap();
                e.finish().unwrap()
            }
            Compression::Deflate => {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut e, words.as_bytes()).unwrap();
                e.finish().unwrap()
            }
        };
        let ec = EncodedContent {
            r#type: content_id("text", 1, 0),
            parameters: HashMap::new(),
            fallback: None,
            content: packed,
            compression: Some(c as i32),
        };
        let m = message_save(id, ids[GROUPS].clone(), ec.encode_to_vec());
        out.push(element(Element::GroupMessage(m)));
    }

    // Plain bytes with no type at all (as in the vector): text when UTF-8, else unknown.
    let mut m = message_save(
        UNTYPED_TEXT,
        ids[GROUPS + 1].clone(),
        b"untyped words".to_vec(),
    );
    m.content_type_save = proto::ContentType::Unknown as i32;
    out.push(element(Element::GroupMessage(m)));
    let m = message_save(
        UNTYPED_BINARY,
        ids[GROUPS + 1].clone(),
        vec![0xff, 0x00, 0x80],
    );
    out.push(element(Element::GroupMessage(m)));

    // Elements this reader does not know: an empty oneof and a second metadata record.
    out.push(BackupElement { element: None });
    out.push(metadata(&[1], 1, None, None));

    for (entity_type, state, entity) in [
        (
            ConsentType::ConversationId,
            proto::ConsentState::Allowed,
            hex::encode(group_id(0)),
        ),
        (ConsentType::InboxId, proto::ConsentState::Denied, inbox(10)),
        (
            ConsentType::Address,
            proto::ConsentState::Unknown,
            "0x00000000000000000000000000000000000000aa".to_string(),
        ),
        (
            ConsentType::InboxId,
            proto::ConsentState::Unspecified,
            inbox(11),
        ),
        (
            ConsentType::Unspecified,
            proto::ConsentState::Allowed,
            "ignored".to_string(),
        ),
    ] {
        out.push(element(Element::Consent(proto::ConsentSave {
            entity_type: entity_type as i32,
            state: state as i32,
            entity,
            consented_at_ns: BASE_NS + 5,
        })));
    }
    out
}

fn generated() -> Vec<u8> {
    archive(&KEY, N0, &generated_elements())
}

/// 1 sync group, its messages, 2 unknown elements, 1 consent record of unspecified type.
const EXPECTED_SKIPPED: u64 = 1 + (TEXT_MESSAGES as u64).div_ceil(80) + 2 + 1;

fn expected_report() -> ImportReport {
    ImportReport {
        format: ArchiveFormat::Xmtp,
        conversations_added: (GROUPS + DMS) as u64,
        messages_imported: ALL_MESSAGES as u64,
        consent_applied: 4,
        unknown_skipped: EXPECTED_SKIPPED,
        ..Default::default()
    }
}

/// (parameters, compression) of a stored message's parameters blob.
fn params_of(m: &Message) -> Option<(HashMap<String, String>, Option<i32>)> {
    let bytes = m.parameters.as_ref()?;
    let ec = EncodedContent::decode(&bytes[..]).expect("parameters are an EncodedContent");
    assert_eq!((ec.r#type.as_ref(), ec.fallback.as_ref()), (None, None));
    assert!(ec.content.is_empty());
    Some((ec.parameters, ec.compression))
}

fn ct(authority: &str, type_id: &str, major: u32, minor: u32) -> ContentType {
    ContentType {
        authority: authority.into(),
        type_id: type_id.into(),
        major,
        minor,
    }
}

#[test]
fn generated_archive_imports_everything() {
    let mut env = env();
    let bytes = generated();
    let path = env.write("generated.xmtp", &bytes);

    let seen = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let seen2 = seen.clone();
    let ctl = Control::new().on_progress(move |p| seen2.lock().unwrap().push(p));
    let report = import_archive(&mut env.store, &path, &key(), &ctl).unwrap();
    assert_eq!(report, expected_report());
    let last = *seen.lock().unwrap().last().expect("progress was reported");
    assert_eq!(
        (last.bytes_done, last.bytes_total),
        (bytes.len() as u64, bytes.len() as u64)
    );

    // Conversations: groups and DMs, all restored; no sync group.
    let convs = env.all_conversations();
    assert_eq!(convs.len(), GROUPS + DMS);
    assert!(env.store.conversation(&sync_id()).unwrap().is_none());
    assert_eq!(
        env.store.count(Table::Conversations).unwrap(),
        (GROUPS + DMS) as u64
    );
    let by_id: HashMap<Vec<u8>, Conversation> =
        convs.into_iter().map(|c| (c.id.clone(), c)).collect();
    for g in 0..GROUPS {
        let c = &by_id[&group_id(g)];
        assert_eq!(c.kind, ConversationKind::Group, "group {g}");
        assert_eq!(c.membership, Membership::Restored);
        assert_eq!(c.creator_inbox_id, inbox(g % 3));
        assert_eq!(c.created_at_ns, BASE_NS - 1_000 + g as i64);
        assert_eq!(
            (c.dm_id.as_deref(), c.dm_peer_inbox_id.as_deref()),
            (None, None)
        );
        if g == GROUPS - 1 {
            // Unspecified type, no mutable metadata.
            assert_eq!((c.name.as_str(), c.description.as_str()), ("", ""));
            assert_eq!(c.image_url, "");
        } else {
            assert_eq!(c.name, format!("Group {g}"));
            assert_eq!(c.description, format!("About {g}"));
            assert_eq!(c.image_url, format!("https://example.com/{g}.png"));
        }
    }
    for d in 0..DMS {
        let c = &by_id[&group_id(GROUPS + d)];
        assert_eq!(c.kind, ConversationKind::Dm, "dm {d}");
        assert_eq!(c.membership, Membership::Restored);
        assert_eq!(c.creator_inbox_id, inbox(0));
        assert_eq!(c.dm_peer_inbox_id.as_deref(), Some(inbox(10 + d).as_str()));
        assert!(c.dm_id.as_deref().unwrap().starts_with("dm:"));
    }

    // Messages: every text message reads back; nothing of the sync group.
    assert_eq!(
        env.store.count(Table::Messages).unwrap(),
        ALL_MESSAGES as u64
    );
    let ids = conversation_ids();
    let mut newest: HashMap<Vec<u8>, i64> = HashMap::new();
    let all = env.store.messages(&MessageFilter::default()).unwrap();
    assert_eq!(all.len(), ALL_MESSAGES);
    let by_msg: HashMap<Vec<u8>, Message> = all.into_iter().map(|m| (m.id.clone(), m)).collect();
    for i in 0..ALL_MESSAGES {
        let m = &by_msg[&message_id(i)];
        assert_eq!(m.sent_at_ns, BASE_NS + i as i64 * 1_000_000);
        assert_eq!(m.sender_inbox_id, inbox(i % 3));
        assert_eq!(m.sender_installation_id, vec![(i % 5) as u8; 32]);
        let n = newest.entry(m.conversation_id.clone()).or_default();
        *n = (*n).max(m.sent_at_ns);
        if i < TEXT_MESSAGES {
            assert_eq!(m.conversation_id, ids[i % ids.len()]);
            assert_eq!(
                m.text().as_deref(),
                Some(text_of(i).as_str()),
                "message {i}"
            );
            assert_eq!(m.content_type, ct("xmtp.org", "text", 1, 0));
            assert_eq!(m.kind, MessageKind::Application);
            assert_eq!(
                m.delivery_status,
                [
                    DeliveryStatus::Published,
                    DeliveryStatus::Unpublished,
                    DeliveryStatus::Published,
                    DeliveryStatus::Failed
                ][i % 4]
            );
            let want_ref = (i % 100 == 1).then(|| message_id(i - 1));
            assert_eq!(m.reference_id, want_ref);
            assert_eq!(m.fallback, None);
            let (params, compression) = params_of(m).unwrap();
            assert_eq!(params["encoding"], "UTF-8");
            assert_eq!(compression, None);
        }
    }
    for k in 0..(TEXT_MESSAGES as u64).div_ceil(80) as usize {
        assert!(env
            .store
            .message(&message_id(SYNC_FIRST + k))
            .unwrap()
            .is_none());
    }
    for (id, c) in &by_id {
        assert_eq!(
            c.last_message_ns,
            newest.get(id).copied(),
            "{}",
            hex::encode(id)
        );
    }

    let reaction = &by_msg[&message_id(REACTION)];
    assert_eq!(reaction.content_type, ct("xmtp.org", "reaction", 1, 2));
    assert_eq!(reaction.content, br#"{"action":"added","content":"+1"}"#);
    assert_eq!(
        reaction.fallback.as_deref(),
        Some("Reacted 👍 to an earlier message")
    );
    assert_eq!(reaction.text().as_deref(), reaction.fallback.as_deref());
    assert_eq!(reaction.reference_id, Some(message_id(0)));
    assert_eq!(reaction.parameters, None);
    // It imports as a reaction (not as bytes): on the message it refers to.
    match ferry_sdk::content::content_of(reaction) {
        ferry_sdk::content::Content::Reaction(r) => {
            assert_eq!(r.reference, message_id(0));
            assert_eq!(r.content, "+1");
            assert_eq!(r.action, ferry_sdk::content::ReactionAction::Added);
        }
        other => panic!("{other:?}"),
    }
    let summary = ferry_sdk::content::reactions(std::slice::from_ref(reaction));
    assert_eq!(summary[&message_id(0)][0].content, "+1");
    // Text imports as text.
    assert!(matches!(
        ferry_sdk::content::content_of(&by_msg[&message_id(1)]),
        ferry_sdk::content::Content::Text(_)
    ));

    let raw = &by_msg[&message_id(RAW_TEXT)];
    assert_eq!(raw.text().as_deref(), Some("raw hello"));
    assert_eq!(raw.content_type, ct("xmtp.org", "text", 1, 0));
    assert_eq!(
        (raw.fallback.as_ref(), raw.parameters.as_ref()),
        (None, None)
    );

    let blob = &by_msg[&message_id(RAW_BLOB)];
    assert_eq!(blob.content_type, ct("example.com", "blob", 2, 1));
    assert_eq!(blob.content, [0xff, 0xfe, 0x00, 0x01]);
    assert_eq!(blob.text(), None);

    let enum_only = &by_msg[&message_id(RAW_ENUM_ONLY)];
    assert_eq!(enum_only.content_type, ct("xmtp.org", "reaction", 0, 0));
    assert_eq!(enum_only.content, [0xff, 0x07]);

    let change = &by_msg[&message_id(MEMBERSHIP)];
    assert_eq!(change.kind, MessageKind::MembershipChange);
    assert_eq!(
        change.content_type,
        ct("xmtp.org", "group_membership_change", 1, 0)
    );
    assert_eq!(change.content, [1, 2, 3]);

    // Content that claims compression but does not inflate is kept as it is; its parameters
    // say how it is compressed, and the fallback is what shows.
    let compressed = &by_msg[&message_id(COMPRESSED)];
    assert_eq!(compressed.content_type, ct("xmtp.org", "text", 1, 0));
    assert_eq!(compressed.content, [0x1f, 0x8b, 0x08, 0x00, 0x99]);
    assert_eq!(compressed.fallback.as_deref(), Some("compressed text"));
    assert_eq!(compressed.text().as_deref(), Some("compressed text"));
    assert_eq!(
        params_of(compressed),
        Some((HashMap::new(), Some(Compression::Gzip as i32)))
    );
    // Real gzip and deflate content is stored inflated.
    for (id, words) in [
        (GZIPPED, "squeezed by gzip"),
        (DEFLATED, "squeezed by deflate"),
    ] {
        let m = &by_msg[&message_id(id)];
        assert_eq!(m.content, words.as_bytes());
        assert_eq!(m.text().as_deref(), Some(words));
        assert_eq!(params_of(m), None);
    }

    let untyped = &by_msg[&message_id(UNTYPED_TEXT)];
    assert_eq!(untyped.content_type, ct("xmtp.org", "text", 1, 0));
    assert_eq!(untyped.text().as_deref(), Some("untyped words"));
    let untyped = &by_msg[&message_id(UNTYPED_BINARY)];
    assert_eq!(untyped.content_type, ct("xmtp.org", "unknown", 0, 0));
    assert_eq!(untyped.content, [0xff, 0x00, 0x80]);
    assert_eq!(untyped.text(), None);

    // Consent: all three entity types; the unspecified one is skipped.
    let consent = env.store.consent_list().unwrap();
    assert_eq!(consent.len(), 4);
    let find = |t, e: &str| env.store.consent(t, e).unwrap().unwrap();
    let c = find(ConsentEntity::Conversation, &hex::encode(group_id(0)));
    assert_eq!(
        (c.state, c.updated_at_ns),
        (ConsentState::Allowed, BASE_NS + 5)
    );
    assert_eq!(
        find(ConsentEntity::Inbox, &inbox(10)).state,
        ConsentState::Denied
    );
    assert_eq!(
        find(ConsentEntity::Inbox, &inbox(11)).state,
        ConsentState::Unknown
    );
    assert_eq!(
        find(
            ConsentEntity::Address,
            "0x00000000000000000000000000000000000000aa"
        )
        .state,
        ConsentState::Unknown
    );

    // Importing again changes nothing.
    let before = env.dump();
    let again = env.import(&path, &key()).unwrap();
    assert_eq!(
        again,
        ImportReport {
            format: ArchiveFormat::Xmtp,
            conversations_merged: (GROUPS + DMS) as u64,
            messages_skipped: ALL_MESSAGES as u64,
            consent_skipped: 4,
            unknown_skipped: EXPECTED_SKIPPED,
            ..Default::default()
        }
    );
    assert_eq!(env.dump(), before);
}

#[test]
fn generated_archive_metadata_and_verify() {
    let env = env();
    let bytes = generated();
    let path = env.write("generated.xmtp", &bytes);
    let meta = archive_metadata(&path, &key()).unwrap();
    assert_eq!(meta.format, ArchiveFormat::Xmtp);
    assert_eq!(
        (meta.created_at_ns, meta.start_ns, meta.end_ns),
        (EXPORTED_NS, Some(START_NS), Some(END_NS))
    );
    assert_eq!(
        meta.elements,
        vec![ArchiveElement::Messages, ArchiveElement::Consent]
    );
    assert_eq!(meta.file_bytes, bytes.len() as u64);

    let v = verify_archive(&path, &key()).unwrap();
    assert!(v.intact);
    assert_eq!(
        (v.conversations, v.messages, v.consent, v.unknown),
        (
            (GROUPS + DMS) as u64,
            ALL_MESSAGES as u64,
            4,
            EXPECTED_SKIPPED
        )
    );

    // Only consent selected: the metadata lists what the archive says.
    let only_consent = archive(
        &KEY,
        N0,
        &[metadata(
            &[proto::BackupElementSelection::Consent as i32, 3, 0],
            EXPORTED_NS,
            None,
            None,
        )],
    );
    let path = env.write("consent.xmtp", &only_consent);
    let meta = archive_metadata(&path, &key()).unwrap();
    assert_eq!(meta.elements, vec![ArchiveElement::Consent]);
}

/// A store that already holds the vector, so "unchanged" is checked on non-empty data.
fn env_with_vector() -> Env {
    let mut env = env();
    env.import(Path::new(VECTOR), &zero_key()).unwrap();
    env
}

#[test]
fn truncated_archives_fail_and_write_nothing() {
    let mut env = env_with_vector();
    let bytes = generated();
    for cut in [bytes.len() / 2, bytes.len() - 1, bytes.len() - 20, 40] {
        let path = env.write("cut.xmtp", &bytes[..cut]);
        let err = env.import_fails(&path, &key());
        assert!(
            matches!(err, Error::Xmtp(XmtpError::Truncated)),
            "cut at {cut}: {err}"
        );
        assert!(verify_archive(&path, &key()).is_err());
    }
    // Truncated before the metadata record ends: nothing can even be opened.
    let path = env.write("cut.xmtp", &bytes[..20]);
    env.import_fails(&path, &key());
    assert!(archive_metadata(&path, &key()).is_err());
}

#[test]
fn trailing_bytes_fail_and_write_nothing() {
    let mut env = env_with_vector();
    let mut bytes = generated();
    bytes.extend_from_slice(b"junk");
    let path = env.write("trailing.xmtp", &bytes);
    let err = env.import_fails(&path, &key());
    assert!(matches!(err, Error::Xmtp(XmtpError::TrailingData)), "{err}");
    assert!(matches!(
        verify_archive(&path, &key()),
        Err(Error::Xmtp(XmtpError::TrailingData))
    ));

    let mut vector = vector();
    vector.push(0);
    let path = env.write("vector-trailing.xmtp", &vector);
    let err = env.import_fails(&path, &zero_key());
    assert!(matches!(err, Error::Xmtp(XmtpError::TrailingData)), "{err}");
}

#[test]
fn wrong_key_on_a_generated_archive_writes_nothing() {
    let mut env = env_with_vector();
    let path = env.write("generated.xmtp", &generated());
    let err = env.import_fails(&path, &wrong_key());
    assert!(err
        .to_string()
        .contains("wrong key or corrupted xmtp archive"));
}

/// Metadata, `extra` elements, then one text message for `group`.
fn with_message(extra: Vec<BackupElement>, id: Vec<u8>, group: Vec<u8>) -> Vec<u8> {
    let mut elements = vec![metadata(&[1], EXPORTED_NS, None, None)];
    elements.extend(extra);
    let mut m = message_save(0, group, text_content("late").encode_to_vec());
    m.id = id;
    elements.push(element(Element::GroupMessage(m)));
    archive(&KEY, N0, &elements)
}

#[test]
fn a_message_for_a_group_nowhere_fails_and_writes_nothing() {
    let mut env = env_with_vector();
    // A full batch of good elements first, so some were applied before the failure.
    let mut extra = vec![element(Element::Group(group_save(
        group_id(1),
        ConversationType::Group,
        BASE_NS,
    )))];
    for i in 0..3_000 {
        extra.push(element(Element::GroupMessage(message_save(
            1_000 + i,
            group_id(1),
            text_content("fine").encode_to_vec(),
        ))));
    }
    let path = env.write(
        "orphan.xmtp",
        &with_message(extra, message_id(0), group_id(2)),
    );
    let err = env.import_fails(&path, &key());
    assert!(
        matches!(&err, Error::InvalidArchive(s) if s.contains("does not hold")),
        "{err}"
    );
    assert!(err.to_string().contains(&hex::encode(group_id(2))), "{err}");

    // A group the store already holds is fine.
    let vector_group = hex::decode(GROUP_ID).unwrap();
    let path = env.write(
        "known.xmtp",
        &with_message(vec![], message_id(0), vector_group.clone()),
    );
    let report = env.import(&path, &key()).unwrap();
    assert_eq!(report.messages_imported, 1);
    let c = env.store.conversation(&vector_group).unwrap().unwrap();
    assert_eq!(c.last_message_ns, Some(SENT_AT_NS));
    assert_eq!(
        env.store
            .message(&message_id(0))
            .unwrap()
            .unwrap()
            .text()
            .as_deref(),
        Some("late")
    );
}

#[test]
fn a_message_with_a_bad_id_fails_and_writes_nothing() {
    let mut env = env_with_vector();
    let group = vec![element(Element::Group(group_save(
        group_id(1),
        ConversationType::Group,
        BASE_NS,
    )))];
    let path = env.write(
        "bad-id.xmtp",
        &with_message(group, vec![0xee; 31], group_id(1)),
    );
    let err = env.import_fails(&path, &key());
    assert!(
        matches!(&err, Error::InvalidArchive(s) if s.contains(&hex::encode([0xee; 31]))),
        "{err}"
    );
    assert!(verify_archive(&path, &key()).is_err());
}

#[test]
fn a_group_with_an_empty_id_fails_and_writes_nothing() {
    let mut env = env_with_vector();
    let path = env.write(
        "empty-group.xmtp",
        &archive(
            &KEY,
            N0,
            &[
                metadata(&[1], EXPORTED_NS, None, None),
                element(Element::Group(group_save(
                    Vec::new(),
                    ConversationType::Group,
                    BASE_NS,
                ))),
            ],
        ),
    );
    let err = env.import_fails(&path, &key());
    assert!(matches!(err, Error::InvalidArchive(_)), "{err}");
}

#[test]
fn another_xmtp_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vector();
    bytes[0] = 3;
    let path = dir.path().join("v3.xmtp");
    std::fs::write(&path, &bytes).unwrap();
    let err = ferry_sdk::archive::archive_metadata(
        &path,
        &ferry_sdk::ArchiveKey::from_bytes(&[0; 32]).unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains('3'), "{err}");
    assert!(!err.to_string().contains("not a Ferry archive"), "{err}");
}
