//! libxmtp archives: read for migration (see the ferry-xmtp-archive crate), mapped onto Ferry's store.
//!
//! * The key is the caller's raw 32 bytes ([`ArchiveKey::Raw`]); libxmtp has no passphrases.
//! * Groups and DMs become conversations, always [`Membership::Restored`] (this installation is
//!   not in their MLS groups). libxmtp's sync groups are not imported, nor are their messages:
//!   both count as `unknown_skipped`.
//! * Messages keep their id, sender, time, kind, delivery status and reference. Their
//!   `decrypted_message_bytes` usually hold an `EncodedContent`, whose type, content and fallback
//!   are stored as they are; deflate- or gzip-compressed content is stored inflated (so text
//!   reads as text), or kept compressed with the compression in `parameters` when it does not
//!   inflate within the record limit. Bytes that are not an
//!   `EncodedContent` are kept verbatim, typed from the message's own content-type fields.
//! * Consent records keep their entity string (for conversations, libxmtp uses the lowercase hex
//!   of the group id, as Ferry does) and take `consented_at_ns` as their update time.
//! * Everything lands in one transaction: any error (wrong key, truncation, trailing bytes, a bad
//!   element) leaves the store as it was.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::BufReader;

use ferry_archive::ArchiveKey;
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationKind,
    DeliveryStatus, Membership, Message, MessageKind,
};
use ferry_xmtp_archive::proto::{self, EncodedContent};
use ferry_xmtp_archive::{decode_encoded_content, Selection, XmtpReader, XmtpRecord};

use super::{
    ArchiveElement, ArchiveFormat, ArchiveMetadata, BatchSink, Item, SignatureStatus, Source,
    VerifyReport, BATCH,
};
use crate::{Error, Result};

/// Whether a file's first bytes look like a libxmtp archive.
/// A libxmtp archive of any version: not a Ferry archive, and a zstd frame at offset 14. (The
/// reader then refuses versions other than 0 by name.)
pub(crate) fn looks_like_xmtp(head: &[u8]) -> bool {
    ferry_xmtp_archive::looks_like_xmtp(head)
        || (!head.starts_with(&ferry_archive::MAGIC)
            && head.len() >= 18
            && head[14..18] == [0x28, 0xb5, 0x2f, 0xfd])
}

/// The raw key libxmtp archives are sealed with.
fn raw_key(key: &ArchiveKey) -> Result<&[u8; 32]> {
    key.raw_bytes().ok_or(Error::XmtpPassphrase)
}

fn open(f: File, key: &ArchiveKey) -> Result<XmtpReader<BufReader<File>>> {
    let key = raw_key(key)?;
    Ok(XmtpReader::open(BufReader::with_capacity(1 << 20, f), key)?)
}

fn archive_metadata(m: &ferry_xmtp_archive::XmtpMetadata, len: u64) -> ArchiveMetadata {
    let mut elements: Vec<ArchiveElement> = m
        .elements
        .iter()
        .filter_map(|e| match e {
            Selection::Messages => Some(ArchiveElement::Messages),
            Selection::Consent => Some(ArchiveElement::Consent),
            Selection::Other(_) => None,
        })
        .collect();
    elements.sort();
    elements.dedup();
    ArchiveMetadata {
        attachment_count: None,
        format: ArchiveFormat::Xmtp,
        format_version: ferry_xmtp_archive::FORMAT_VERSION.to_string(),
        key_kind: "key",
        created_at_ns: m.exported_at_ns,
        start_ns: m.start_ns,
        end_ns: m.end_ns,
        elements,
        inbox_id: String::new(),
        installation_id: String::new(),
        conversation_count: None,
        message_count: None,
        consent_count: None,
        label: String::new(),
        producer: "libxmtp".into(),
        file_bytes: len,
        plaintext_bytes: None,
        signed_by: None,
        signature: SignatureStatus::Unsigned,
        signature_error: None,
        installation_status: None,
    }
}

/// Reads the header and the metadata record only.
pub(crate) fn metadata(f: File, key: &ArchiveKey, len: u64) -> Result<ArchiveMetadata> {
    let reader = open(f, key)?;
    Ok(archive_metadata(reader.metadata(), len))
}

/// Reads and converts every record, as an import would, without writing anything.
pub(crate) fn verify(f: File, key: &ArchiveKey, len: u64) -> Result<VerifyReport> {
    let mut reader = open(f, key)?;
    let metadata = archive_metadata(reader.metadata(), len);
    let mut mapper = Mapper::default();
    let (mut conversations, mut messages, mut consent, mut unknown) = (0u64, 0u64, 0u64, 0u64);
    while let Some(record) = reader.next_record()? {
        match mapper.item(record)? {
            Item::Conversation(_) => conversations += 1,
            Item::Message(_) => messages += 1,
            Item::Consent(_) => consent += 1,
            Item::Skipped | Item::AttachmentFile { .. } => unknown += 1,
        }
    }
    Ok(VerifyReport {
        attachment_pieces: 0,
        metadata,
        intact: true,
        conversations,
        messages,
        consent,
        unknown,
    })
}

/// Opens a libxmtp archive (version, key, metadata record) and returns its reading work, which
/// converts every record as the import maps it (see the module docs). libxmtp archives carry no
/// element counts.
pub(crate) fn source(
    f: File,
    key: &ArchiveKey,
) -> Result<Source<impl FnOnce(&BatchSink) -> Result<()> + Send>> {
    let mut reader = open(f, key)?;
    let produce = move |tx: &BatchSink| -> Result<()> {
        let mut mapper = Mapper::default();
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(record) = reader.next_record()? {
            batch.push(mapper.item(record)?);
            if batch.len() == BATCH {
                let b = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if !tx.send(b, reader.bytes_read()) {
                    // The writer stopped (and says why).
                    return Ok(());
                }
            }
        }
        tx.send(batch, reader.bytes_read());
        Ok(())
    };
    Ok(Source {
        elements_total: 0,
        messages: 0,
        signed_by: None,
        produce,
    })
}

/// Turns records into store items, remembering the sync groups so their messages are skipped.
#[derive(Default)]
struct Mapper {
    sync_groups: HashSet<Vec<u8>>,
}

impl Mapper {
    fn item(&mut self, record: XmtpRecord) -> Result<Item> {
        Ok(match record {
            XmtpRecord::Group(g) => {
                if g.conversation_type() == proto::ConversationType::Sync {
                    self.sync_groups.insert(g.id);
                    Item::Skipped
                } else {
                    Item::Conversation(conversation(g)?)
                }
            }
            XmtpRecord::Message(m) => {
                if self.sync_groups.contains(&m.group_id) {
                    Item::Skipped
                } else {
                    Item::Message(message(m)?)
                }
            }
            XmtpRecord::Consent(c) => match consent(c) {
                Some(c) => Item::Consent(c),
                None => Item::Skipped,
            },
            XmtpRecord::Unknown => Item::Skipped,
        })
    }
}

fn invalid(what: impl Into<String>) -> Error {
    Error::InvalidArchive(what.into())
}

/// A group or DM (never a sync group) as a restored conversation.
fn conversation(g: proto::GroupSave) -> Result<Conversation> {
    // The same bound as for Ferry archives.
    if g.id.is_empty() || g.id.len() > 64 {
        return Err(invalid(format!(
            "conversation id must be 1 to 64 bytes, got {} ({})",
            g.id.len(),
            hex::encode(&g.id)
        )));
    }
    let kind = match g.conversation_type() {
        proto::ConversationType::Dm => ConversationKind::Dm,
        // Unspecified (older archives) is a group.
        _ => ConversationKind::Group,
    };
    let creator_inbox_id = g.metadata.map(|m| m.creator_inbox_id).unwrap_or_default();
    let mut attributes = g.mutable_metadata.map(|m| m.attributes).unwrap_or_default();
    let mut attribute = |k: &str| attributes.remove(k).unwrap_or_default();
    let name = attribute("group_name");
    let description = attribute("description");
    let image_url = attribute("group_image_url_square");
    let dm_peer_inbox_id = match (kind, &g.dm_id) {
        (ConversationKind::Dm, Some(dm_id)) => dm_peer(dm_id, &creator_inbox_id),
        _ => None,
    };
    Ok(Conversation {
        id: g.id,
        kind,
        created_at_ns: g.created_at_ns,
        name,
        description,
        image_url,
        creator_inbox_id,
        dm_peer_inbox_id,
        dm_id: g.dm_id,
        // An imported conversation is read-only here, whatever its state was in libxmtp.
        membership: Membership::Restored,
        // Set from the messages actually imported (see Merge::commit).
        last_message_ns: None,
        // libxmtp's group save carries the setting; its messages take their expiry from it.
        disappearing: ferry_store::DisappearingSettings::from_parts(
            g.message_disappear_from_ns,
            g.message_disappear_in_ns,
        ),
    })
}

/// libxmtp's `dm_id` is `dm:<inboxA>:<inboxB>`; the peer is the inbox that is not the creator.
/// `None` when the id does not have that form or the creator is neither inbox.
fn dm_peer(dm_id: &str, creator: &str) -> Option<String> {
    let rest = dm_id.strip_prefix("dm:")?;
    let (a, b) = rest.split_once(':')?;
    if a.is_empty() || b.is_empty() || b.contains(':') {
        return None;
    }
    if creator == a {
        Some(b.to_string())
    } else if creator == b {
        Some(a.to_string())
    } else {
        None
    }
}

fn message(m: proto::GroupMessageSave) -> Result<Message> {
    if m.id.len() != 32 {
        return Err(invalid(format!(
            "message {} has an id of {} bytes (32 expected)",
            hex::encode(&m.id),
            m.id.len()
        )));
    }
    let kind = match m.kind() {
        proto::GroupMessageKind::MembershipChange => MessageKind::MembershipChange,
        _ => MessageKind::Application,
    };
    let delivery_status = match m.delivery_status() {
        proto::DeliveryStatus::Unpublished => DeliveryStatus::Unpublished,
        proto::DeliveryStatus::Failed => DeliveryStatus::Failed,
        proto::DeliveryStatus::Published | proto::DeliveryStatus::Unspecified => {
            DeliveryStatus::Published
        }
    };
    let (content_type, content, fallback, parameters) =
        match decode_encoded_content(&m.decrypted_message_bytes) {
            Some(mut ec) => {
                // Compressed content is stored decompressed. Where it does not decompress, it
                // is kept as it is and `parameters` records the compression.
                if let Some(plain) = decompress(&ec) {
                    ec.content = plain;
                    ec.compression = None;
                }
                let parameters = encoded_parameters(&ec);
                let id = ec.r#type.unwrap_or_default();
                (
                    ContentType {
                        authority: id.authority_id,
                        type_id: id.type_id,
                        major: id.version_major,
                        minor: id.version_minor,
                    },
                    ec.content,
                    ec.fallback,
                    parameters,
                )
            }
            None => (raw_content_type(&m), m.decrypted_message_bytes, None, None),
        };
    Ok(Message {
        id: m.id,
        conversation_id: m.group_id,
        sender_inbox_id: m.sender_inbox_id,
        sender_installation_id: m.sender_installation_id,
        sent_at_ns: m.sent_at_ns,
        kind,
        content_type,
        content,
        fallback,
        parameters,
        reference_id: m.reference_id,
        delivery_status,
        // Its conversation's setting gives it one (libxmtp's save has no expiry).
        expire_at_ns: None,
    })
}

/// The content type of bytes that are not an `EncodedContent`, from the message's own fields.
///
/// Text when the fields say so, and also when they say nothing at all (no type string, content
/// type unspecified or unknown) and the bytes are UTF-8: that is how libxmtp saves a message sent
/// as plain bytes (the vector's "hello there" has content_type_save unknown and every other type
/// field empty). Text keeps its version, except that an unset 0.0 reads as 1.0.
fn raw_content_type(m: &proto::GroupMessageSave) -> ContentType {
    let save = m.content_type_save();
    let untyped = m.content_type.is_empty()
        && matches!(
            save,
            proto::ContentType::Unspecified | proto::ContentType::Unknown
        );
    let major = u32::try_from(m.version_major).unwrap_or(0);
    let minor = u32::try_from(m.version_minor).unwrap_or(0);
    if save == proto::ContentType::Text
        || m.content_type == "text"
        || (untyped && std::str::from_utf8(&m.decrypted_message_bytes).is_ok())
    {
        return ContentType {
            authority: "xmtp.org".into(),
            type_id: "text".into(),
            major: if (major, minor) == (0, 0) { 1 } else { major },
            minor,
        };
    }
    let (authority, type_id) = if m.content_type.is_empty() {
        // Only the enum is set: its libxmtp names, all under xmtp.org.
        let name = match save {
            proto::ContentType::GroupMembershipChange => "group_membership_change",
            proto::ContentType::GroupUpdated => "group_updated",
            proto::ContentType::Reaction => "reaction",
            proto::ContentType::ReadReceipt => "readReceipt",
            proto::ContentType::Reply => "reply",
            proto::ContentType::Attachment => "attachment",
            proto::ContentType::RemoteAttachment => "remoteStaticAttachment",
            proto::ContentType::TransactionReference => "transactionReference",
            _ => "unknown",
        };
        let authority = if m.authority_id.is_empty() {
            "xmtp.org".to_string()
        } else {
            m.authority_id.clone()
        };
        (authority, name.to_string())
    } else {
        (m.authority_id.clone(), m.content_type.clone())
    };
    ContentType {
        authority,
        type_id,
        major,
        minor,
    }
}

/// The largest content a compressed message may inflate to (the archive record limit).
const MAX_INFLATED: u64 = ferry_xmtp_archive::MAX_RECORD as u64;

/// The content of a deflate- or gzip-compressed `EncodedContent`, inflated; `None` when it is
/// not compressed, does not inflate, or inflates past [`MAX_INFLATED`].
fn decompress(ec: &EncodedContent) -> Option<Vec<u8>> {
    use std::io::Read;
    let c = ec.compression?;
    let mut out = Vec::new();
    let limit = MAX_INFLATED + 1;
    let read = if c == proto::Compression::Deflate as i32 {
        flate2::read::DeflateDecoder::new(&ec.content[..])
            .take(limit)
            .read_to_end(&mut out)
    } else if c == proto::Compression::Gzip as i32 {
        flate2::read::GzDecoder::new(&ec.content[..])
            .take(limit)
            .read_to_end(&mut out)
    } else {
        return None;
    };
    match read {
        Ok(n) if (n as u64) <= MAX_INFLATED => Some(out),
        _ => None,
    }
}

/// What Ferry keeps of an `EncodedContent` besides its type, content and fallback: its
/// parameters and compression, as the protobuf encoding of an `EncodedContent` holding only
/// those two fields (field 2, the map, with entries in key order so the bytes are the same on
/// every import; then field 5). `None` when the content has neither.
fn encoded_parameters(ec: &EncodedContent) -> Option<Vec<u8>> {
    if ec.parameters.is_empty() && ec.compression.is_none() {
        return None;
    }
    let mut out = Vec::new();
    let sorted: BTreeMap<&String, &String> = ec.parameters.iter().collect();
    for (k, v) in sorted {
        let mut entry = Vec::with_capacity(k.len() + v.len() + 4);
        put_bytes(&mut entry, 1, k.as_bytes());
        put_bytes(&mut entry, 2, v.as_bytes());
        put_bytes(&mut out, 2, &entry);
    }
    if let Some(c) = ec.compression {
        put_varint(&mut out, 5 << 3);
        // int32 enums are encoded as sign-extended 64-bit varints.
        put_varint(&mut out, i64::from(c) as u64);
    }
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `None` for an unspecified entity type (skipped).
fn consent(c: proto::ConsentSave) -> Option<ConsentRecord> {
    let entity_type = match c.entity_type() {
        proto::ConsentType::ConversationId => ConsentEntity::Conversation,
        proto::ConsentType::InboxId => ConsentEntity::Inbox,
        proto::ConsentType::Address => ConsentEntity::Address,
        proto::ConsentType::Unspecified => return None,
    };
    let state = match c.state() {
        proto::ConsentState::Allowed => ConsentState::Allowed,
        proto::ConsentState::Denied => ConsentState::Denied,
        proto::ConsentState::Unknown | proto::ConsentState::Unspecified => ConsentState::Unknown,
    };
    Some(ConsentRecord {
        entity_type,
        entity: c.entity,
        state,
        updated_at_ns: c.consented_at_ns,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const A: &str = "aaaa";
    const B: &str = "bbbb";

    #[test]
    fn dm_peer_is_the_inbox_that_is_not_the_creator() {
        assert_eq!(dm_peer("dm:aaaa:bbbb", A).as_deref(), Some(B));
        assert_eq!(dm_peer("dm:aaaa:bbbb", B).as_deref(), Some(A));
        assert_eq!(dm_peer("dm:aaaa:bbbb", "cccc"), None);
        assert_eq!(dm_peer("dm:aaaa:aaaa", A).as_deref(), Some(A));
        for bad in [
            "aaaa:bbbb",
            "dm:aaaa",
            "dm::bbbb",
            "dm:aaaa:",
            "dm:aaaa:bbbb:cccc",
            "",
        ] {
            assert_eq!(dm_peer(bad, A), None, "{bad}");
        }
    }

    #[test]
    fn parameters_encode_sorted_with_compression() {
        let mut ec = EncodedContent {
            r#type: None,
            parameters: HashMap::from([
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
            ]),
            fallback: None,
            content: Vec::new(),
            compression: Some(proto::Compression::Gzip as i32),
        };
        let bytes = encoded_parameters(&ec).unwrap();
        assert_eq!(
            bytes,
            [
                0x12, 6, 0x0a, 1, b'a', 0x12, 1, b'1', //
                0x12, 6, 0x0a, 1, b'b', 0x12, 1, b'2', //
                0x28, 1,
            ]
        );
        // It is a valid EncodedContent holding exactly those fields.
        let back = <EncodedContent as ferry_proto::Message>::decode(&bytes[..]).unwrap();
        assert_eq!(back.parameters, ec.parameters);
        assert_eq!(back.compression, ec.compression);
        ec.parameters.clear();
        ec.compression = None;
        assert_eq!(encoded_parameters(&ec), None);
        ec.compression = Some(proto::Compression::Deflate as i32);
        assert_eq!(encoded_parameters(&ec).unwrap(), [0x28, 0]);
    }
}
