//! XMTP's protobuf messages for content, with XMTP's field numbers (prost structs written
//! here: `xmtp.mls.message_contents.EncodedContent`, `ContentTypeId`, `GroupUpdated` and
//! `content_types.ReactionV2`).

use std::collections::BTreeMap;

use prost::Message;

use crate::{ContentError, ContentTypeId, EncodedContent};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireTypeId {
    #[prost(string, tag = "1")]
    pub authority_id: String,
    #[prost(string, tag = "2")]
    pub type_id: String,
    #[prost(uint32, tag = "3")]
    pub version_major: u32,
    #[prost(uint32, tag = "4")]
    pub version_minor: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireContent {
    #[prost(message, optional, tag = "1")]
    pub r#type: Option<WireTypeId>,
    #[prost(btree_map = "string, string", tag = "2")]
    pub parameters: BTreeMap<String, String>,
    #[prost(string, optional, tag = "3")]
    pub fallback: Option<String>,
    #[prost(bytes = "vec", tag = "4")]
    pub content: Vec<u8>,
    /// 0 deflate, 1 gzip. Never written here; content that says it is compressed is
    /// refused (libxmtp does not compress either).
    #[prost(int32, optional, tag = "5")]
    pub compression: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireReaction {
    #[prost(string, tag = "1")]
    pub reference: String,
    #[prost(string, tag = "2")]
    pub reference_inbox_id: String,
    /// 0 unspecified, 1 added, 2 removed.
    #[prost(int32, tag = "3")]
    pub action: i32,
    #[prost(string, tag = "4")]
    pub content: String,
    /// 0 unspecified, 1 unicode, 2 shortcode, 3 custom.
    #[prost(int32, tag = "5")]
    pub schema: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireInbox {
    #[prost(string, tag = "1")]
    pub inbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireFieldChange {
    #[prost(string, tag = "1")]
    pub field_name: String,
    #[prost(string, optional, tag = "2")]
    pub old_value: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub new_value: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireGroupUpdated {
    #[prost(string, tag = "1")]
    pub initiated_by_inbox_id: String,
    #[prost(message, repeated, tag = "2")]
    pub added_inboxes: Vec<WireInbox>,
    #[prost(message, repeated, tag = "3")]
    pub removed_inboxes: Vec<WireInbox>,
    #[prost(message, repeated, tag = "4")]
    pub metadata_field_changes: Vec<WireFieldChange>,
    #[prost(message, repeated, tag = "5")]
    pub left_inboxes: Vec<WireInbox>,
}

pub(crate) fn encode_content(c: &EncodedContent) -> Vec<u8> {
    WireContent {
        r#type: Some(WireTypeId {
            authority_id: c.content_type.authority.clone(),
            type_id: c.content_type.type_id.clone(),
            version_major: c.content_type.major,
            version_minor: c.content_type.minor,
        }),
        parameters: c.parameters.clone(),
        fallback: c.fallback.clone(),
        content: c.content.clone(),
        compression: None,
    }
    .encode_to_vec()
}

pub(crate) fn decode_content(bytes: &[u8]) -> Result<EncodedContent, ContentError> {
    let w = WireContent::decode(bytes)
        .map_err(|e| ContentError::Invalid(format!("EncodedContent: {e}")))?;
    if w.compression.is_some() {
        return Err(ContentError::Invalid(
            "compressed EncodedContent is not supported".into(),
        ));
    }
    let t = w
        .r#type
        .ok_or_else(|| ContentError::Invalid("EncodedContent without a type".into()))?;
    Ok(EncodedContent {
        content_type: ContentTypeId {
            authority: t.authority_id,
            type_id: t.type_id,
            major: t.version_major,
            minor: t.version_minor,
        },
        parameters: w.parameters,
        fallback: w.fallback,
        content: w.content,
    })
}

pub(crate) fn parameters_bytes(parameters: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    if parameters.is_empty() {
        return None;
    }
    Some(
        WireContent {
            parameters: parameters.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

pub(crate) fn parameters_from_bytes(
    bytes: &[u8],
) -> Result<BTreeMap<String, String>, ContentError> {
    let w = WireContent::decode(bytes)
        .map_err(|e| ContentError::Invalid(format!("stored parameters: {e}")))?;
    Ok(w.parameters)
}
