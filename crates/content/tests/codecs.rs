//! Every built-in type encodes and decodes back, keeps XMTP's ids and wire fields, and refuses
//! what it must.

use ferry_content::remote;
use ferry_content::*;

fn id() -> Vec<u8> {
    (0u8..32).collect()
}

/// The XMTP `EncodedContent` protobuf round trip keeps everything (and goes through the bytes
/// a peer would see).
fn through_wire(c: &EncodedContent) -> EncodedContent {
    let back = EncodedContent::from_protobuf(&c.to_protobuf()).unwrap();
    assert_eq!(&back, c);
    back
}

#[test]
fn text_round_trips_with_xmtps_id_and_encoding() {
    let c = TextCodec::encode(&"hello ✓".to_string()).unwrap();
    assert_eq!(c.content_type.to_string(), "xmtp.org/text:1.0");
    assert_eq!(c.parameters["encoding"], "UTF-8");
    let c = through_wire(&c);
    assert_eq!(TextCodec::decode(&c).unwrap(), "hello ✓");
    assert_eq!(Content::decode(&c), Content::Text("hello ✓".into()));
    // Ferry's own text type reads as text too.
    let ferry = EncodedContent::new(
        ContentTypeId::new("ferry.chat", "text", 1, 0),
        b"hi".to_vec(),
    );
    assert_eq!(Content::decode(&ferry), Content::Text("hi".into()));
}

#[test]
fn a_reply_carries_its_content_and_reference() {
    let reply = Reply::text(&id(), "me too");
    let c = through_wire(&ReplyCodec::encode(&reply).unwrap());
    assert_eq!(c.content_type.to_string(), "xmtp.org/reply:1.0");
    assert_eq!(c.parameters["reference"], hex::encode(id()));
    assert_eq!(c.parameters["contentType"], "xmtp.org/text:1.0");
    assert!(c.fallback.as_deref().unwrap().contains("me too"));
    let back = ReplyCodec::decode(&c).unwrap();
    assert_eq!(back, reply);
    assert_eq!(TextCodec::decode(&back.content).unwrap(), "me too");
    assert_eq!(Content::decode(&c).reference(), Some(id().as_slice()));
    assert_eq!(Content::decode(&c).kind(), "reply");
}

#[test]
fn reactions_are_v2_protobuf_and_v1_json_still_reads() {
    let mut r = Reaction::emoji(&id(), "👍");
    r.reference_inbox_id = Some("abc".into());
    let c = through_wire(&ReactionCodec::encode(&r).unwrap());
    assert_eq!(c.content_type.to_string(), "xmtp.org/reaction:2.0");
    assert!(!ReactionCodec::should_push());
    assert_eq!(ReactionCodec::decode(&c).unwrap(), r);
    // The fields XMTP numbers: reference 1, inbox 2, action 3, content 4, schema 5.
    let mut wire = Vec::new();
    prost::encoding::string::encode(1, &hex::encode(id()), &mut wire);
    prost::encoding::int32::encode(3, &2, &mut wire);
    prost::encoding::string::encode(4, &"👍".to_string(), &mut wire);
    prost::encoding::int32::encode(5, &2, &mut wire);
    let removed =
        ReactionCodec::decode(&EncodedContent::new(ReactionCodec::content_type(), wire)).unwrap();
    assert_eq!(removed.action, ReactionAction::Removed);
    assert_eq!(removed.schema, ReactionSchema::Shortcode);
    assert_eq!(removed.reference_inbox_id, None);

    let v1 = EncodedContent::new(
        ContentTypeId::new(XMTP, "reaction", 1, 0),
        format!(
            r#"{{"reference":"{}","action":"added","content":"smile","schema":"shortcode"}}"#,
            hex::encode(id())
        )
        .into_bytes(),
    );
    match Content::decode(&v1) {
        Content::Reaction(r) => {
            assert_eq!(r.content, "smile");
            assert_eq!(r.schema, ReactionSchema::Shortcode);
            assert_eq!(r.reference, id());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_receipts_and_group_updates_round_trip() {
    let c = through_wire(&ReadReceiptCodec::encode(&ReadReceipt).unwrap());
    assert_eq!(c.content_type.to_string(), "xmtp.org/readReceipt:1.0");
    assert!(c.content.is_empty());
    assert_eq!(Content::decode(&c), Content::ReadReceipt);

    let u = GroupUpdated {
        initiated_by_inbox_id: "alice".into(),
        added_inboxes: vec!["bob".into(), "carol".into()],
        metadata_field_changes: vec![MetadataFieldChange {
            field_name: "group_name".into(),
            old_value: None,
            new_value: Some("Trip".into()),
        }],
        ..Default::default()
    };
    let c = through_wire(&GroupUpdatedCodec::encode(&u).unwrap());
    assert_eq!(c.content_type.to_string(), "xmtp.org/group_updated:1.0");
    assert_eq!(GroupUpdatedCodec::decode(&c).unwrap(), u);
    assert_eq!(
        u.summary(|i| i.to_string()),
        "alice added bob, carol; renamed the group to \"Trip\""
    );
}

#[test]
fn attachments_inline_up_to_the_limit() {
    let a = Attachment {
        filename: Some("cat.jpg".into()),
        mime_type: "image/jpeg".into(),
        data: vec![7; 1000],
    };
    let c = through_wire(&AttachmentCodec::encode(&a).unwrap());
    assert_eq!(c.content_type.to_string(), "xmtp.org/attachment:1.0");
    assert_eq!(c.parameters["filename"], "cat.jpg");
    assert_eq!(c.parameters["mimeType"], "image/jpeg");
    assert_eq!(AttachmentCodec::decode(&c).unwrap(), a);
    let big = Attachment {
        data: vec![0; MAX_INLINE_ATTACHMENT_BYTES + 1],
        ..a
    };
    assert!(matches!(
        AttachmentCodec::encode(&big),
        Err(ContentError::TooLarge { .. })
    ));
}

#[test]
fn a_remote_attachment_opens_only_with_its_digest_and_key() {
    let a = Attachment {
        filename: Some("photo.png".into()),
        mime_type: "image/png".into(),
        data: (0..5000u32).map(|i| i as u8).collect(),
    };
    let sealed = remote::seal(&a).unwrap();
    assert_eq!(sealed.digest(), remote::digest(&sealed.payload));
    let r = sealed.at("https://files.example/x").unwrap();
    assert_eq!(r.content_length, Some(sealed.payload.len() as u64));
    let c = through_wire(&RemoteAttachmentCodec::encode(&r).unwrap());
    assert_eq!(
        c.content_type.to_string(),
        "xmtp.org/remoteStaticAttachment:1.0"
    );
    for p in [
        "contentDigest",
        "secret",
        "salt",
        "nonce",
        "scheme",
        "contentLength",
        "filename",
    ] {
        assert!(c.parameters.contains_key(p), "{p}");
    }
    assert_eq!(c.parameters["scheme"], "https");
    let r = RemoteAttachmentCodec::decode(&c).unwrap();
    assert!(!format!("{r:?}").contains(&hex::encode(r.secret.as_slice())));
    assert_eq!(remote::open(&r, &sealed.payload).unwrap(), a);

    // A damaged or swapped blob is refused before decryption.
    let mut damaged = sealed.payload.clone();
    damaged[10] ^= 1;
    assert!(matches!(
        remote::open(&r, &damaged),
        Err(ContentError::DigestMismatch { .. })
    ));
    let other = remote::seal(&a).unwrap();
    assert!(matches!(
        remote::open(&r, &other.payload),
        Err(ContentError::DigestMismatch { .. })
    ));
    // A blob that matches a forged digest still does not open with the key.
    let mut forged = r.clone();
    forged.content_digest = other.digest().to_string();
    assert!(matches!(
        remote::open(&forged, &other.payload),
        Err(ContentError::Decrypt)
    ));
}

#[test]
fn remote_urls_must_be_https_or_loopback() {
    assert!(remote::check_url("https://x.example/a").is_ok());
    assert!(remote::check_url("http://127.0.0.1:7701/files/ab").is_ok());
    assert!(remote::check_url("http://localhost/files/ab").is_ok());
    assert!(remote::check_url("http://evil.example/a").is_err());
    assert!(remote::check_url("http://127.0.0.1.evil.example/a").is_err());
    assert!(remote::check_url("ftp://x").is_err());
}

#[test]
fn unknown_and_broken_content_falls_back() {
    let mut mine = EncodedContent::new(ContentTypeId::new("app.example", "poll", 1, 0), vec![1]);
    mine.fallback = Some("A poll".into());
    assert_eq!(Content::decode(&mine), Content::Unknown(mine.clone()));
    // A known type that does not decode is shown by its fallback, not an error.
    let broken = EncodedContent::new(ReactionCodec::content_type(), vec![0xff, 0xff]);
    assert_eq!(Content::decode(&broken).kind(), "unknown");
    assert!(matches!(
        ReplyCodec::decode(&mine),
        Err(ContentError::WrongType { .. })
    ));
    let parsed: ContentTypeId = "xmtp.org/reply:1.0".parse().unwrap();
    assert_eq!(parsed, ReplyCodec::content_type());
    assert!("nonsense".parse::<ContentTypeId>().is_err());
}

#[test]
fn stored_parameters_are_the_same_bytes_everywhere() {
    let a = AttachmentCodec::encode(&Attachment {
        filename: Some("b".into()),
        mime_type: "a".into(),
        data: vec![],
    })
    .unwrap();
    let bytes = a.parameters_bytes().unwrap();
    assert_eq!(
        EncodedContent::parameters_from_bytes(&bytes).unwrap(),
        a.parameters
    );
    // Keys in order: filename before mimeType.
    let f = bytes.windows(8).position(|w| w == b"filename").unwrap();
    let m = bytes.windows(8).position(|w| w == b"mimeType").unwrap();
    assert!(f < m);
    assert_eq!(
        EncodedContent::new(ReadReceiptCodec::content_type(), vec![]).parameters_bytes(),
        None
    );
}

/// An app's own type goes through the same trait.
struct Poll;

impl ContentCodec for Poll {
    type Value = Vec<String>;
    fn content_type() -> ContentTypeId {
        ContentTypeId::new("app.example", "poll", 1, 0)
    }
    fn encode(options: &Vec<String>) -> Result<EncodedContent, ContentError> {
        let mut c = EncodedContent::new(Self::content_type(), options.join("\n").into_bytes());
        c.fallback = Some(format!("A poll: {}", options.join(" / ")));
        Ok(c)
    }
    fn decode(c: &EncodedContent) -> Result<Vec<String>, ContentError> {
        Ok(String::from_utf8_lossy(&c.content)
            .split('\n')
            .map(str::to_string)
            .collect())
    }
}

#[test]
fn an_apps_own_codec_works_beside_the_built_in_ones() {
    let c = Poll::encode(&vec!["yes".into(), "no".into()]).unwrap();
    assert_eq!(Poll::decode(&c).unwrap(), ["yes", "no"]);
    assert!(matches!(Content::decode(&c), Content::Unknown(_)));
    assert_eq!(c.fallback.as_deref(), Some("A poll: yes / no"));
}

#[test]
fn disappearing_changes_read_as_one_line() {
    let change = |field: &str, old: Option<&str>, new: Option<&str>| MetadataFieldChange {
        field_name: field.into(),
        old_value: old.map(Into::into),
        new_value: new.map(Into::into),
    };
    let update = |changes| GroupUpdated {
        initiated_by_inbox_id: "alice".into(),
        added_inboxes: vec![],
        removed_inboxes: vec![],
        left_inboxes: vec![],
        metadata_field_changes: changes,
    };
    let on = update(vec![
        change("message_disappear_from_ns", None, Some("5")),
        change("message_disappear_in_ns", None, Some("5400000000000")),
    ]);
    assert_eq!(
        on.summary(|i| i.to_string()),
        "alice set messages to disappear after 1h 30m"
    );
    let off = update(vec![
        change("message_disappear_from_ns", Some("5"), None),
        change("message_disappear_in_ns", Some("5400000000000"), None),
    ]);
    assert_eq!(
        off.summary(|i| i.to_string()),
        "alice turned off disappearing messages"
    );
    assert_eq!(short_duration(7 * 86_400_000_000_000), "7d");
    assert_eq!(short_duration(500_000_000), "500ms");
    assert_eq!(short_duration(61_000_000_000), "1m 1s");
}
