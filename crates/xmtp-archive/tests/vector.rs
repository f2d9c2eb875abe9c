//! The real archive written by libxmtp (legacy nonce scheme, key = 32 zero bytes).

mod common;

use common::{read_all, vector, within_time, Interrupting, ShortReads};
use ferry_xmtp_archive::proto::{
    ConsentState, ConsentType, ConversationType, DeliveryStatus, GroupMembershipState,
    GroupMessageKind,
};
use ferry_xmtp_archive::{
    decode_encoded_content, looks_like_xmtp, Selection, XmtpReader, XmtpRecord,
};

const KEY: [u8; 32] = [0; 32];
const GROUP_ID: &str = "4171bfd4a27acabeeb02c1edb4c27c12";
const MESSAGE_ID: &str = "3ca32cdcf6b83f3933da0bdb59079c0f6724b47691a489a7f5db3a5552afb64b";
const INBOX: &str = "6d9f460c2faa1fa9ed31574e59a4451277f5138a80acd087bd56d9eadf20df04";

// 2025-11-12T00:00:00Z and 2025-11-13T00:00:00Z in nanoseconds.
const NOV_12_NS: i64 = 1_762_905_600 * 1_000_000_000;
const NOV_13_NS: i64 = NOV_12_NS + 86_400 * 1_000_000_000;

#[test]
fn vector_reads_exactly_as_libxmtp_wrote_it() {
    let bytes = vector();
    assert_eq!(bytes.len(), 780);
    assert!(looks_like_xmtp(&bytes[..18]));
    let n0: [u8; 12] = bytes[2..14].try_into().unwrap();

    let mut r = XmtpReader::open(&bytes[..], &KEY).unwrap();
    let meta = r.metadata().clone();
    assert_eq!(meta.elements, vec![Selection::Messages, Selection::Consent]);
    assert!((NOV_12_NS..NOV_13_NS).contains(&meta.exported_at_ns));
    assert_eq!(meta.exported_at_ns, 1_762_977_827_392_620_000);
    assert_eq!((meta.start_ns, meta.end_ns), (None, None));
    // Legacy file: every record opens with N0 itself.
    assert_eq!(r.last_nonce(), n0);

    let Some(XmtpRecord::Group(group)) = r.next_record().unwrap() else {
        panic!("second record is not a group");
    };
    assert_eq!(r.last_nonce(), n0);
    assert_eq!(hex::encode(&group.id), GROUP_ID);
    assert_eq!(group.conversation_type(), ConversationType::Group);
    assert_eq!(group.membership_state(), GroupMembershipState::Allowed);
    assert!((NOV_12_NS..NOV_13_NS).contains(&group.created_at_ns));
    assert_eq!(group.added_by_inbox_id, INBOX);
    assert_eq!(group.metadata.as_ref().unwrap().creator_inbox_id, INBOX);
    let mutable = group.mutable_metadata.as_ref().unwrap();
    assert_eq!(
        mutable.attributes.get("group_name").map(String::as_str),
        Some("My group")
    );
    assert_eq!(mutable.super_admin_list, vec![INBOX.to_string()]);
    assert!(mutable.admin_list.is_empty());

    let Some(XmtpRecord::Message(msg)) = r.next_record().unwrap() else {
        panic!("third record is not a message");
    };
    assert_eq!(r.last_nonce(), n0);
    assert_eq!(hex::encode(&msg.id), MESSAGE_ID);
    assert_eq!(msg.group_id, group.id);
    assert_eq!(msg.decrypted_message_bytes, b"hello there");
    assert_eq!(decode_encoded_content(&msg.decrypted_message_bytes), None);
    assert_eq!(msg.sent_at_ns, 1_762_977_827_390_151_000);
    assert_eq!(msg.sender_inbox_id, INBOX);
    assert_eq!(msg.kind(), GroupMessageKind::Application);
    assert_eq!(msg.delivery_status(), DeliveryStatus::Published);
    assert_eq!(msg.sender_installation_id.len(), 32);
    assert_eq!(
        (msg.sequence_id, msg.originator_id),
        (Some(10), Some(188_765))
    );

    let Some(XmtpRecord::Consent(consent)) = r.next_record().unwrap() else {
        panic!("fourth record is not consent");
    };
    assert_eq!(consent.entity_type(), ConsentType::ConversationId);
    assert_eq!(consent.state(), ConsentState::Allowed);
    // The consent entity is the group id in lowercase hex.
    assert_eq!(consent.entity, hex::encode(&group.id));
    assert_eq!(consent.consented_at_ns, 1_762_977_827_351_314_000);

    assert_eq!(r.next_record().unwrap(), None);
    assert_eq!(r.next_record().unwrap(), None, "end is sticky");
    assert_eq!(r.records_read(), 4);
    assert_eq!(r.bytes_read(), 780);
}

#[test]
fn vector_reads_the_same_through_tiny_and_odd_reads() {
    within_time(|| {
        let bytes = vector();
        let plain = read_all(&bytes[..], &KEY).unwrap();
        assert_eq!(plain.1.len(), 3);
        for max in [1, 2, 3, 7, 13, 4096] {
            let short = read_all(
                ShortReads {
                    inner: &bytes[..],
                    max,
                },
                &KEY,
            )
            .unwrap();
            assert_eq!(short, plain, "reads of at most {max} bytes");
        }
        let interrupted = read_all(
            Interrupting {
                inner: ShortReads {
                    inner: &bytes[..],
                    max: 1,
                },
                flip: false,
            },
            &KEY,
        )
        .unwrap();
        assert_eq!(interrupted, plain);
    });
}

#[test]
fn bytes_read_grows_to_the_file_size() {
    let bytes = vector();
    let mut r = XmtpReader::open(
        ShortReads {
            inner: &bytes[..],
            max: 7,
        },
        &KEY,
    )
    .unwrap();
    let mut last = r.bytes_read();
    assert!(last >= 18);
    while r.next_record().unwrap().is_some() {
        assert!(r.bytes_read() >= last);
        last = r.bytes_read();
    }
    assert_eq!(r.bytes_read(), bytes.len() as u64);
}
