//! Every protobuf message Ferry decodes from bytes it does not control: archive elements, node
//! requests and responses (gRPC bodies), identity updates, the plaintext of MLS application
//! messages (envelopes, sync-group payloads, preference updates), group metadata from welcomes
//! and commits, and the libxmtp archive messages.

use std::fmt::Debug;

use ferry_proto::{archive, identity, message, node};
use ferry_xmtp_archive::proto as xmtp;
use prost::Message;

/// Decodes `bytes` as `M`; a value that decodes must re-encode to bytes of `encoded_len()` that
/// decode to the same value (and, without map fields, re-encode to the same bytes).
fn check<M: Message + Default + PartialEq + Debug, const HAS_MAP: bool>(bytes: &[u8]) {
    let Ok(m) = M::decode(bytes) else {
        return;
    };
    let enc = m.encode_to_vec();
    assert_eq!(enc.len(), m.encoded_len());
    let again = M::decode(&enc[..]).expect("a re-encoded value decodes");
    assert_eq!(m, again);
    let enc2 = again.encode_to_vec();
    if HAS_MAP {
        // Map entries are written in hash order, which differs between two maps.
        assert_eq!(enc.len(), enc2.len());
    } else {
        assert_eq!(enc, enc2);
    }
    let delimited = m.encode_length_delimited_to_vec();
    assert_eq!(
        M::decode_length_delimited(&delimited[..]).expect("delimited"),
        m
    );
}

/// `ferry_xmtp_archive::decode_encoded_content` keeps the bytes verbatim unless they decode with a type id.
fn check_encoded_content(bytes: &[u8]) {
    check::<xmtp::EncodedContent, true>(bytes);
    let got = ferry_xmtp_archive::decode_encoded_content(bytes);
    let want = xmtp::EncodedContent::decode(bytes)
        .ok()
        .filter(|c| c.r#type.as_ref().is_some_and(|t| !t.type_id.is_empty()));
    assert_eq!(got, want);
    let _ = ferry_xmtp_archive::looks_like_xmtp(bytes);
}

macro_rules! entry {
    (map $ty:ty) => {
        (stringify!($ty), check::<$ty, true> as fn(&[u8]))
    };
    ($ty:ty) => {
        (stringify!($ty), check::<$ty, false> as fn(&[u8]))
    };
}

/// Every message type, by name; the first input byte picks one (modulo the length). Append new
/// types at the end, so the committed seeds keep their meaning.
pub const PROTO_TYPES: &[crate::Target] = &[
    // Inside MLS application messages and group contexts (from peers).
    entry!(message::Envelope),
    entry!(message::SyncPayload),
    entry!(message::SyncRequest),
    entry!(message::SyncReply),
    entry!(message::PreferenceUpdates),
    entry!(message::ConsentUpdate),
    entry!(message::HmacKeyUpdate),
    entry!(message::GroupMetadata),
    entry!(message::ContentTypeId),
    // Node responses and streamed items (to clients).
    entry!(node::QueryGroupMessagesResponse),
    entry!(node::GroupMessage),
    entry!(node::QueryWelcomesResponse),
    entry!(node::Welcome),
    entry!(node::GetIdentityLogsResponse),
    entry!(node::IdentityLog),
    entry!(node::FetchKeyPackagesResponse),
    entry!(node::PublishIdentityUpdateResponse),
    entry!(node::SendGroupMessagesResponse),
    entry!(node::SendWelcomesResponse),
    entry!(node::UploadKeyPackageResponse),
    // Node requests (to the node, from any client).
    entry!(node::PublishIdentityUpdateRequest),
    entry!(node::GetIdentityLogsRequest),
    entry!(node::UploadKeyPackageRequest),
    entry!(node::FetchKeyPackagesRequest),
    entry!(node::SendGroupMessagesRequest),
    entry!(node::GroupMessageInput),
    entry!(node::QueryGroupMessagesRequest),
    entry!(node::SubscribeGroupMessagesRequest),
    entry!(node::SendWelcomesRequest),
    entry!(node::WelcomeInput),
    entry!(node::QueryWelcomesRequest),
    entry!(node::SubscribeWelcomesRequest),
    // Identity logs.
    entry!(identity::IdentityUpdate),
    entry!(identity::UnsignedIdentityUpdate),
    // Ferry archive elements.
    entry!(archive::ArchiveElement),
    entry!(archive::Metadata),
    entry!(archive::Conversation),
    entry!(archive::Message),
    entry!(archive::Consent),
    // libxmtp archive records.
    entry!(map xmtp::BackupElement),
    entry!(xmtp::BackupMetadataSave),
    entry!(map xmtp::GroupSave),
    entry!(map xmtp::MutableMetadataSave),
    entry!(xmtp::GroupMessageSave),
    entry!(xmtp::ConsentSave),
    ("xmtp::EncodedContent", check_encoded_content),
];

/// The first byte picks a message type from [`PROTO_TYPES`]; the rest is decoded as it.
pub fn proto_decode(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    (PROTO_TYPES[which as usize % PROTO_TYPES.len()].1)(bytes);
}

/// The selector byte of the type named `name` (as listed in [`PROTO_TYPES`]).
pub fn proto_selector(name: &str) -> u8 {
    PROTO_TYPES
        .iter()
        .position(|(n, _)| n.replace(' ', "") == name)
        .unwrap_or_else(|| panic!("no proto type {name}")) as u8
}
