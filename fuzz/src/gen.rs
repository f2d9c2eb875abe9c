//! `Arbitrary` descriptions of protobuf values, so the structured targets start from well-formed
//! elements and records (which the fuzzer then combines, repeats, cuts and corrupts).

use arbitrary::Arbitrary;
use ferry_archive::proto;
use ferry_xmtp_archive::proto as xproto;
use prost::Message;

/// A Ferry archive `Metadata`.
#[derive(Arbitrary, Debug, Clone)]
pub struct MetaSpec {
    pub created_at_ns: i64,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub elements: Vec<i32>,
    pub inbox_id: String,
    pub installation_id: Vec<u8>,
    pub counts: [u64; 3],
    pub label: String,
    pub producer: String,
}

impl MetaSpec {
    pub fn build(&self) -> proto::Metadata {
        proto::Metadata {
            created_at_ns: self.created_at_ns,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            elements: self.elements.clone(),
            inbox_id: self.inbox_id.clone(),
            installation_id: self.installation_id.clone(),
            conversation_count: self.counts[0],
            message_count: self.counts[1],
            consent_count: self.counts[2],
            label: self.label.clone(),
            producer: self.producer.clone(),
            ..Default::default()
        }
    }
}

/// One Ferry archive element after the metadata.
#[derive(Arbitrary, Debug, Clone)]
pub enum ElemSpec {
    Conversation {
        id: Vec<u8>,
        kind: i32,
        created_at_ns: i64,
        name: String,
        description: String,
        creator_inbox_id: String,
        dm_peer_inbox_id: String,
        dm_id: String,
        last_message_ns: Option<i64>,
    },
    Message {
        id: Vec<u8>,
        conversation_id: Vec<u8>,
        sender_inbox_id: String,
        sender_installation_id: Vec<u8>,
        sent_at_ns: i64,
        kind: i32,
        content_type: Option<(String, String, u32, u32)>,
        content: Vec<u8>,
        reference_id: Option<Vec<u8>>,
        delivery_status: i32,
        fallback: Option<String>,
        parameters: Option<Vec<u8>>,
    },
    Consent {
        entity_type: i32,
        entity: String,
        state: i32,
        updated_at_ns: i64,
    },
    /// A message whose content is `len` copies of `byte`: one large frame, to span chunks.
    Big { byte: u8, len: u16 },
    /// An `ArchiveElement` holding only a field this version does not know (a later 1.x oneof
    /// member): readers skip it as unknown.
    Unknown { tag: u16, payload: Vec<u8> },
}

/// What a reader returns for an element: the `ferry_archive::Element`, or the bytes to write.
#[allow(clippy::large_enum_variant)]
pub enum Built {
    Known(ferry_archive::Element),
    /// Encoded `ArchiveElement` bytes with no known oneof member.
    Unknown(Vec<u8>),
}

impl ElemSpec {
    pub fn build(&self) -> Built {
        use ferry_archive::Element;
        match self.clone() {
            ElemSpec::Conversation {
                id,
                kind,
                created_at_ns,
                name,
                description,
                creator_inbox_id,
                dm_peer_inbox_id,
                dm_id,
                last_message_ns,
            } => Built::Known(Element::Conversation(proto::Conversation {
                message_disappear_from_ns: None,
                message_disappear_in_ns: None,
                id,
                kind,
                created_at_ns,
                name,
                description,
                image_url: String::new(),
                creator_inbox_id,
                dm_peer_inbox_id,
                dm_id,
                last_message_ns,
            })),
            ElemSpec::Message {
                id,
                conversation_id,
                sender_inbox_id,
                sender_installation_id,
                sent_at_ns,
                kind,
                content_type,
                content,
                reference_id,
                delivery_status,
                fallback,
                parameters,
            } => Built::Known(Element::Message(proto::Message {
                expire_at_ns: None,
                id,
                conversation_id,
                sender_inbox_id,
                sender_installation_id,
                sent_at_ns,
                kind,
                content_type: content_type.map(|(authority, type_id, major, minor)| {
                    proto::ContentType {
                        authority,
                        type_id,
                        major,
                        minor,
                    }
                }),
                content,
                reference_id,
                delivery_status,
                fallback,
                parameters,
            })),
            ElemSpec::Consent {
                entity_type,
                entity,
                state,
                updated_at_ns,
            } => Built::Known(Element::Consent(proto::Consent {
                entity_type,
                entity,
                state,
                updated_at_ns,
            })),
            ElemSpec::Big { byte, len } => Built::Known(Element::Message(proto::Message {
                id: vec![byte; 32],
                content: vec![byte; len as usize],
                ..Default::default()
            })),
            ElemSpec::Unknown { tag, payload } => {
                // Field numbers 7.. are not in ArchiveElement (5 is the signature of format
                // 1.1, 6 an attachment piece); 19000..19999 are reserved by protobuf, so stay
                // below them.
                let tag = 7 + u32::from(tag) % 18000;
                let mut out = Vec::new();
                prost::encoding::encode_key(
                    tag,
                    prost::encoding::WireType::LengthDelimited,
                    &mut out,
                );
                prost::encoding::encode_varint(payload.len() as u64, &mut out);
                out.extend_from_slice(&payload);
                Built::Unknown(out)
            }
        }
    }
}

/// The encoding of an `ArchiveElement` holding `e` (which must not be `Unknown`).
pub fn encode_element(e: &ferry_archive::Element) -> Vec<u8> {
    use ferry_archive::Element;
    use proto::archive_element::Element as E;
    let element = match e.clone() {
        Element::Conversation(c) => E::Conversation(c),
        Element::Message(m) => E::Message(m),
        Element::Consent(c) => E::Consent(c),
        Element::AttachmentPiece(a) => E::AttachmentPiece(a),
        Element::Unknown => panic!("no encoding for an unknown element"),
    };
    proto::ArchiveElement {
        element: Some(element),
    }
    .encode_to_vec()
}

/// The `ArchiveElement` encoding of a metadata element.
pub fn encode_metadata(m: &proto::Metadata) -> Vec<u8> {
    proto::ArchiveElement {
        element: Some(proto::archive_element::Element::Metadata(m.clone())),
    }
    .encode_to_vec()
}

/// One libxmtp record's plaintext.
#[derive(Arbitrary, Debug, Clone)]
pub enum RecSpec {
    Metadata {
        elements: Vec<i32>,
        exported_at_ns: i64,
        start_ns: Option<i64>,
        end_ns: Option<i64>,
    },
    Group {
        id: Vec<u8>,
        created_at_ns: i64,
        membership_state: i32,
        conversation_type: i32,
        dm_id: Option<String>,
        creator: Option<String>,
        attributes: Vec<(String, String)>,
        admins: Vec<String>,
    },
    Message {
        id: Vec<u8>,
        group_id: Vec<u8>,
        content: Vec<u8>,
        sent_at_ns: i64,
        kind: i32,
        content_type_save: i32,
        sender_inbox_id: String,
        reference_id: Option<Vec<u8>>,
    },
    Consent {
        entity_type: i32,
        state: i32,
        entity: String,
        consented_at_ns: i64,
    },
    /// A message whose content is `len` copies of `byte`: one large record.
    Big { byte: u8, len: u16 },
    /// Any plaintext at all (it may not decode as a `BackupElement`).
    Raw(Vec<u8>),
}

impl RecSpec {
    pub fn plaintext(&self) -> Vec<u8> {
        use xproto::backup_element::Element as E;
        let element = match self.clone() {
            RecSpec::Metadata {
                elements,
                exported_at_ns,
                start_ns,
                end_ns,
            } => E::Metadata(xproto::BackupMetadataSave {
                elements,
                exported_at_ns,
                start_ns,
                end_ns,
            }),
            RecSpec::Group {
                id,
                created_at_ns,
                membership_state,
                conversation_type,
                dm_id,
                creator,
                attributes,
                admins,
            } => E::Group(xproto::GroupSave {
                id,
                created_at_ns,
                membership_state,
                conversation_type,
                dm_id,
                metadata: creator.map(|c| xproto::ImmutableMetadataSave {
                    creator_inbox_id: c,
                }),
                mutable_metadata: Some(xproto::MutableMetadataSave {
                    attributes: attributes.into_iter().collect(),
                    admin_list: admins,
                    super_admin_list: Vec::new(),
                }),
                ..Default::default()
            }),
            RecSpec::Message {
                id,
                group_id,
                content,
                sent_at_ns,
                kind,
                content_type_save,
                sender_inbox_id,
                reference_id,
            } => E::GroupMessage(xproto::GroupMessageSave {
                id,
                group_id,
                decrypted_message_bytes: content,
                sent_at_ns,
                kind,
                content_type_save,
                sender_inbox_id,
                reference_id,
                ..Default::default()
            }),
            RecSpec::Consent {
                entity_type,
                state,
                entity,
                consented_at_ns,
            } => E::Consent(xproto::ConsentSave {
                entity_type,
                state,
                entity,
                consented_at_ns,
            }),
            RecSpec::Big { byte, len } => E::GroupMessage(xproto::GroupMessageSave {
                id: vec![byte; 32],
                decrypted_message_bytes: vec![byte; len as usize],
                ..Default::default()
            }),
            RecSpec::Raw(bytes) => return bytes,
        };
        xproto::BackupElement {
            element: Some(element),
        }
        .encode_to_vec()
    }
}
