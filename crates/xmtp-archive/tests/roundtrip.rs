//! Archives built by the test encoder (tests/common) under each nonce scheme read back exactly.

mod common;

use std::collections::HashMap;

use common::{
    archive, element, expected_record, frame, frame_split_prefixes, metadata, nonce_add, read_all,
    record_spans, seal_records, within_time, Interrupting, Scheme, ShortReads,
};
use ferry_xmtp_archive::proto::{
    self, backup_element::Element, BackupElement, Compression, ConsentType, ContentType,
    ContentTypeId, ConversationType, EncodedContent,
};
use ferry_xmtp_archive::{decode_encoded_content, Selection, XmtpReader, XmtpRecord};
use prost::Message;

const MESSAGES: usize = 5_000;
const GROUPS: usize = 12;
const DMS: usize = 8;

fn text_content(text: &str) -> EncodedContent {
    EncodedContent {
        r#type: Some(ContentTypeId {
            authority_id: "xmtp.org".into(),
            type_id: "text".into(),
            version_major: 1,
            version_minor: 0,
        }),
        parameters: HashMap::from([("encoding".to_string(), "UTF-8".to_string())]),
        fallback: None,
        content: text.as_bytes().to_vec(),
        compression: None,
    }
}

fn reaction_content(i: usize) -> EncodedContent {
    EncodedContent {
        r#type: Some(ContentTypeId {
            authority_id: "xmtp.org".into(),
            type_id: "reaction".into(),
            version_major: 1,
            version_minor: 2,
        }),
        parameters: HashMap::new(),
        fallback: Some(format!("Reacted 👍 to message {i}")),
        content: vec![0xde, 0xad, i as u8, 0xbe, 0xef],
        compression: i.is_multiple_of(2).then_some(Compression::Gzip as i32),
    }
}

fn group(i: usize) -> proto::GroupSave {
    let dm = i >= GROUPS;
    proto::GroupSave {
        id: vec![i as u8; 16],
        created_at_ns: 1_700_000_000_000_000_000 + i as i64,
        membership_state: (i % 6) as i32,
        installations_last_checked: 5,
        added_by_inbox_id: format!("inbox-{i}"),
        welcome_id: i.is_multiple_of(2).then_some(i as i64),
        rotated_at_ns: 7,
        conversation_type: if dm {
            ConversationType::Dm
        } else {
            ConversationType::Group
        } as i32,
        dm_id: dm.then(|| format!("dm:inbox-a:inbox-{i}")),
        last_message_ns: Some(i as i64 * 1000),
        message_disappear_from_ns: (i == 3).then_some(1),
        message_disappear_in_ns: (i == 3).then_some(2),
        metadata: Some(proto::ImmutableMetadataSave {
            creator_inbox_id: format!("creator-{i}"),
        }),
        mutable_metadata: Some(proto::MutableMetadataSave {
            attributes: HashMap::from([
                ("group_name".to_string(), format!("Group {i}")),
                ("description".to_string(), String::new()),
                ("_internal".to_string(), "x".to_string()),
            ]),
            admin_list: vec![format!("admin-{i}")],
            super_admin_list: vec![format!("creator-{i}"), "other".into()],
        }),
        paused_for_version: (i == 1).then(|| "1.2.3".to_string()),
    }
}

fn message(i: usize) -> proto::GroupMessageSave {
    let bytes = match i % 3 {
        0 => text_content(&format!("message number {i}")).encode_to_vec(),
        1 => reaction_content(i).encode_to_vec(),
        _ => format!("raw bytes {i}").into_bytes(),
    };
    proto::GroupMessageSave {
        id: (i as u64).to_be_bytes().repeat(4),
        group_id: vec![(i % (GROUPS + DMS)) as u8; 16],
        decrypted_message_bytes: bytes,
        sent_at_ns: 1_762_000_000_000_000_000 + i as i64,
        kind: (i % 3) as i32,
        sender_installation_id: vec![7; 32],
        sender_inbox_id: format!("sender-{}", i % 5),
        delivery_status: (i % 4) as i32,
        content_type_save: (i % 11) as i32,
        version_major: 1,
        version_minor: (i % 2) as i32,
        authority_id: "xmtp.org".into(),
        reference_id: i.is_multiple_of(7).then(|| vec![1, 2, 3]),
        sequence_id: Some(i as i64),
        originator_id: (i % 2 == 1).then_some(100),
        content_type: "text".into(),
    }
}

fn consent(i: usize) -> proto::ConsentSave {
    let entity_type = [
        ConsentType::ConversationId,
        ConsentType::InboxId,
        ConsentType::Address,
    ][i % 3];
    proto::ConsentSave {
        entity_type: entity_type as i32,
        state: (i % 4) as i32,
        entity: match entity_type {
            ConsentType::ConversationId => hex::encode([i as u8; 16]),
            ConsentType::InboxId => format!("{:064x}", i),
            _ => format!("0x{:040x}", i),
        },
        consented_at_ns: i as i64,
    }
}

/// Metadata, then all groups and DMs, then `messages` messages, then 30 consent records.
fn big_archive_elements(messages: usize) -> Vec<BackupElement> {
    let mut out = vec![metadata(
        &[1, 2],
        1_762_977_827_000_000_000,
        Some(10),
        Some(20),
    )];
    out.extend((0..GROUPS + DMS).map(|i| element(Element::Group(group(i)))));
    out.extend((0..messages).map(|i| element(Element::GroupMessage(message(i)))));
    out.extend((0..30).map(|i| element(Element::Consent(consent(i)))));
    out
}

fn check_roundtrip(scheme: Scheme) {
    let key: [u8; 32] = rand::random();
    let n0: [u8; 12] = rand::random();
    let elements = big_archive_elements(MESSAGES);
    let file = archive(&key, n0, &elements, scheme);

    let (meta, records) = read_all(&file[..], &key).unwrap();
    assert_eq!(meta.elements, vec![Selection::Messages, Selection::Consent]);
    assert_eq!(meta.exported_at_ns, 1_762_977_827_000_000_000);
    assert_eq!((meta.start_ns, meta.end_ns), (Some(10), Some(20)));
    let expected: Vec<XmtpRecord> = elements[1..].iter().map(expected_record).collect();
    assert_eq!(records.len(), GROUPS + DMS + MESSAGES + 30);
    assert_eq!(records, expected);

    // Every content_type_save value, every consent entity type and both conversation types made it.
    let mut content_types = std::collections::BTreeSet::new();
    let (mut texts, mut non_texts, mut raws) = (0, 0, 0);
    for rec in &records {
        if let XmtpRecord::Message(m) = rec {
            content_types.insert(m.content_type_save);
            match decode_encoded_content(&m.decrypted_message_bytes) {
                Some(c) if c.r#type.as_ref().unwrap().type_id == "text" => {
                    assert!(std::str::from_utf8(&c.content)
                        .unwrap()
                        .starts_with("message number"));
                    texts += 1;
                }
                Some(c) => {
                    assert!(c.fallback.unwrap().starts_with("Reacted"));
                    non_texts += 1;
                }
                None => {
                    assert!(m.decrypted_message_bytes.starts_with(b"raw bytes"));
                    raws += 1;
                }
            }
        }
    }
    assert_eq!(
        content_types,
        (0..=ContentType::TransactionReference as i32).collect()
    );
    assert_eq!(texts + non_texts + raws, MESSAGES);
    assert!(texts > 0 && non_texts > 0 && raws > 0);
}

#[test]
fn current_scheme_roundtrips_thousands_of_records() {
    within_time(|| check_roundtrip(Scheme::Current));
}

#[test]
fn legacy_scheme_roundtrips_thousands_of_records() {
    within_time(|| check_roundtrip(Scheme::Legacy));
}

#[test]
fn mixed_scheme_roundtrips_thousands_of_records() {
    within_time(|| check_roundtrip(Scheme::Mixed(100)));
}

/// The reader reports the nonce each record actually opened with.
#[test]
fn reader_tracks_the_nonce_each_record_used() {
    let key = [9u8; 32];
    let n0: [u8; 12] = rand::random();
    let elements = big_archive_elements(20);
    for scheme in [
        Scheme::Current,
        Scheme::Legacy,
        Scheme::Mixed(1),
        Scheme::Mixed(5),
    ] {
        let file = archive(&key, n0, &elements, scheme);
        let mut r = XmtpReader::open(&file[..], &key).unwrap();
        assert_eq!(r.last_nonce(), common::nonce_for(scheme, n0, 0));
        let mut i = 1;
        while r.next_record().unwrap().is_some() {
            assert_eq!(
                r.last_nonce(),
                common::nonce_for(scheme, n0, i),
                "{scheme:?} record {i}"
            );
            i += 1;
        }
        assert_eq!(i, elements.len());
    }
}

/// N0 = 2^96 - 1: record 1 is sealed with nonce 0.
#[test]
fn current_nonce_wraps_at_2_pow_96() {
    let key = [3u8; 32];
    let n0 = [0xff; 12];
    assert_eq!(nonce_add(n0, 1), [0; 12]);
    let elements = big_archive_elements(5);
    let file = archive(&key, n0, &elements, Scheme::Current);
    let mut r = XmtpReader::open(&file[..], &key).unwrap();
    assert_eq!(r.last_nonce(), n0);
    r.next_record().unwrap().unwrap();
    assert_eq!(r.last_nonce(), [0; 12]);
    r.next_record().unwrap().unwrap();
    assert_eq!(r.last_nonce(), nonce_add([0; 12], 1));
}

/// Element kinds the reader does not know come back as `Unknown`, in place.
#[test]
fn unknown_elements_are_reported_not_dropped() {
    let key = [1u8; 32];
    let n0 = [2u8; 12];
    // Tag 5 (the deprecated event) with an empty message body: 0x2a = field 5, length-delimited.
    let event = vec![0x2a, 0x00];
    // An unknown tag 99 varint, and an empty element (oneof unset).
    let unknown_tag = vec![0x98, 0x06, 0x01];
    let meta = metadata(&[1], 1, None, None).encode_to_vec();
    let consent = element(Element::Consent(consent(1)));
    let plaintexts = [
        meta.clone(),
        event,
        unknown_tag,
        Vec::new(),
        meta,
        consent.encode_to_vec(),
    ];
    let mut payload = Vec::new();
    for (i, p) in plaintexts.iter().enumerate() {
        payload.extend(common::seal(&key, nonce_add(n0, i as u64), p));
    }
    let (_, records) = read_all(&frame(0, n0, &payload)[..], &key).unwrap();
    assert_eq!(
        records,
        vec![
            XmtpRecord::Unknown,
            XmtpRecord::Unknown,
            XmtpRecord::Unknown,
            XmtpRecord::Unknown,
            expected_record(&consent)
        ]
    );
}

/// Short reads that split length prefixes (and `Interrupted` errors) change nothing.
#[test]
fn generated_archive_reads_the_same_through_tiny_and_odd_reads() {
    within_time(|| {
        let key = [5u8; 32];
        let n0 = [6u8; 12];
        let elements = big_archive_elements(300);
        let payload = seal_records(&key, n0, &elements, Scheme::Mixed(50));
        let file = frame_split_prefixes(n0, &payload);
        assert_prefixes_come_out_split(&file, &payload);

        let plain = read_all(&file[..], &key).unwrap();
        assert_eq!(plain.1.len(), elements.len() - 1);
        for max in [1, 7] {
            let short = read_all(
                ShortReads {
                    inner: &file[..],
                    max,
                },
                &key,
            )
            .unwrap();
            assert_eq!(short, plain, "reads of at most {max} bytes");
        }
        let interrupted = read_all(
            Interrupting {
                inner: ShortReads {
                    inner: &file[..],
                    max: 7,
                },
                flip: false,
            },
            &key,
        )
        .unwrap();
        assert_eq!(interrupted, plain);
    });
}

/// Checks the fixture itself: fed one byte at a time, a zstd decoder really hands some length
/// prefixes out in two pieces, so the test above covers that case.
fn assert_prefixes_come_out_split(file: &[u8], payload: &[u8]) {
    use std::io::Read;
    let mut decoder = zstd::stream::read::Decoder::new(ShortReads {
        inner: &file[14..],
        max: 1,
    })
    .unwrap();
    let mut ends = Vec::new();
    let mut at = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = decoder.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        at += n;
        ends.push(at);
    }
    assert_eq!(at, payload.len());
    let split = record_spans(payload)
        .iter()
        .filter(|(start, _)| ends.contains(&(start + 2)))
        .count();
    assert!(split > 100, "only {split} length prefixes came out split");
}

#[test]
fn metadata_with_other_selections_is_kept() {
    let key = [8u8; 32];
    let n0 = [0u8; 12];
    let file = archive(
        &key,
        n0,
        &[metadata(&[0, 3, 1, 42], -5, None, Some(9))],
        Scheme::Current,
    );
    let (meta, records) = read_all(&file[..], &key).unwrap();
    assert_eq!(
        meta.elements,
        vec![
            Selection::Other(0),
            Selection::Other(3),
            Selection::Messages,
            Selection::Other(42)
        ]
    );
    assert_eq!(
        (meta.exported_at_ns, meta.start_ns, meta.end_ns),
        (-5, None, Some(9))
    );
    assert!(records.is_empty());
}

#[test]
fn decode_encoded_content_keeps_raw_bytes_apart() {
    assert_eq!(decode_encoded_content(b"hello there"), None);
    assert_eq!(decode_encoded_content(b""), None);
    // Parses, but has no type id.
    let untyped = EncodedContent {
        content: b"x".to_vec(),
        ..Default::default()
    };
    assert_eq!(decode_encoded_content(&untyped.encode_to_vec()), None);

    let text = text_content("hi");
    let decoded = decode_encoded_content(&text.encode_to_vec()).unwrap();
    let id = decoded.r#type.as_ref().unwrap();
    assert_eq!(
        (
            id.authority_id.as_str(),
            id.type_id.as_str(),
            id.version_major
        ),
        ("xmtp.org", "text", 1)
    );
    assert_eq!(decoded.content, b"hi");
    assert_eq!(decoded, text);

    let reaction = reaction_content(4);
    let decoded = decode_encoded_content(&reaction.encode_to_vec()).unwrap();
    assert_eq!(decoded.r#type.as_ref().unwrap().type_id, "reaction");
    assert_eq!(decoded.compression(), Compression::Gzip);
    assert_eq!(decoded.fallback.as_deref(), Some("Reacted 👍 to message 4"));
}
