//! Archive protobuf elements <-> store rows.

use ferry_proto::archive as pb;
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationKind,
    DeliveryStatus, Membership, Message, MessageKind,
};

use super::ArchiveElement;
use crate::{Error, Result};

pub(crate) fn element_to_pb(e: ArchiveElement) -> pb::ElementKind {
    match e {
        ArchiveElement::Messages => pb::ElementKind::Messages,
        ArchiveElement::Consent => pb::ElementKind::Consent,
        ArchiveElement::Attachments => pb::ElementKind::Attachments,
    }
}

pub(crate) fn element_from_pb(e: i32) -> Option<ArchiveElement> {
    match pb::ElementKind::try_from(e).ok()? {
        pb::ElementKind::Messages => Some(ArchiveElement::Messages),
        pb::ElementKind::Consent => Some(ArchiveElement::Consent),
        pb::ElementKind::Attachments => Some(ArchiveElement::Attachments),
        pb::ElementKind::Unspecified => None,
    }
}

pub(crate) fn conversation_to_pb(c: &Conversation) -> pb::Conversation {
    pb::Conversation {
        id: c.id.clone(),
        kind: match c.kind {
            ConversationKind::Group => pb::ConversationKind::Group,
            ConversationKind::Dm => pb::ConversationKind::Dm,
            ConversationKind::Sync => pb::ConversationKind::Sync,
        } as i32,
        created_at_ns: c.created_at_ns,
        name: c.name.clone(),
        description: c.description.clone(),
        image_url: c.image_url.clone(),
        creator_inbox_id: c.creator_inbox_id.clone(),
        dm_peer_inbox_id: c.dm_peer_inbox_id.clone().unwrap_or_default(),
        dm_id: c.dm_id.clone().unwrap_or_default(),
        last_message_ns: c.last_message_ns,
        message_disappear_from_ns: c.disappearing.map(|d| d.from_ns),
        message_disappear_in_ns: c.disappearing.map(|d| d.in_ns),
    }
}

fn invalid(what: impl Into<String>) -> Error {
    Error::InvalidArchive(what.into())
}

/// An archived conversation arrives as restored: this installation is not in its MLS group.
pub(crate) fn conversation_from_pb(c: pb::Conversation) -> Result<Conversation> {
    let kind = match pb::ConversationKind::try_from(c.kind) {
        Ok(pb::ConversationKind::Group) => ConversationKind::Group,
        Ok(pb::ConversationKind::Dm) => ConversationKind::Dm,
        _ => {
            return Err(invalid(format!(
                "conversation {} has kind {}",
                hex::encode(&c.id),
                c.kind
            )))
        }
    };
    if c.id.is_empty() || c.id.len() > 64 {
        return Err(invalid("conversation id must be 1 to 64 bytes"));
    }
    let opt = |s: String| if s.is_empty() { None } else { Some(s) };
    Ok(Conversation {
        id: c.id,
        kind,
        created_at_ns: c.created_at_ns,
        name: c.name,
        description: c.description,
        image_url: c.image_url,
        creator_inbox_id: c.creator_inbox_id,
        dm_peer_inbox_id: opt(c.dm_peer_inbox_id),
        dm_id: opt(c.dm_id),
        membership: Membership::Restored,
        // Set from the messages actually imported (see Merge::commit).
        last_message_ns: None,
        disappearing: ferry_store::DisappearingSettings::from_parts(
            c.message_disappear_from_ns,
            c.message_disappear_in_ns,
        ),
    })
}

pub(crate) fn message_to_pb(m: Message) -> pb::Message {
    pb::Message {
        id: m.id,
        conversation_id: m.conversation_id,
        sender_inbox_id: m.sender_inbox_id,
        sender_installation_id: m.sender_installation_id,
        sent_at_ns: m.sent_at_ns,
        kind: match m.kind {
            MessageKind::Application => pb::MessageKind::Application,
            MessageKind::MembershipChange => pb::MessageKind::MembershipChange,
        } as i32,
        content_type: Some(pb::ContentType {
            authority: m.content_type.authority,
            type_id: m.content_type.type_id,
            major: m.content_type.major,
            minor: m.content_type.minor,
        }),
        content: m.content,
        reference_id: m.reference_id,
        delivery_status: match m.delivery_status {
            DeliveryStatus::Unpublished => pb::DeliveryStatus::Unpublished,
            DeliveryStatus::Published => pb::DeliveryStatus::Published,
            DeliveryStatus::Failed => pb::DeliveryStatus::Failed,
        } as i32,
        fallback: m.fallback,
        parameters: m.parameters,
        expire_at_ns: m.expire_at_ns,
    }
}

pub(crate) fn message_from_pb(m: pb::Message) -> Result<Message> {
    if m.id.len() != 32 {
        return Err(invalid(format!(
            "message id must be 32 bytes, got {}",
            m.id.len()
        )));
    }
    let ct = m.content_type.ok_or_else(|| {
        invalid(format!(
            "message {} has no content type",
            hex::encode(&m.id)
        ))
    })?;
    Ok(Message {
        id: m.id,
        conversation_id: m.conversation_id,
        sender_inbox_id: m.sender_inbox_id,
        sender_installation_id: m.sender_installation_id,
        sent_at_ns: m.sent_at_ns,
        kind: match pb::MessageKind::try_from(m.kind) {
            Ok(pb::MessageKind::MembershipChange) => MessageKind::MembershipChange,
            _ => MessageKind::Application,
        },
        content_type: ContentType {
            authority: ct.authority,
            type_id: ct.type_id,
            major: ct.major,
            minor: ct.minor,
        },
        content: m.content,
        fallback: m.fallback,
        parameters: m.parameters,
        reference_id: m.reference_id,
        delivery_status: match pb::DeliveryStatus::try_from(m.delivery_status) {
            Ok(pb::DeliveryStatus::Unpublished) => DeliveryStatus::Unpublished,
            Ok(pb::DeliveryStatus::Failed) => DeliveryStatus::Failed,
            _ => DeliveryStatus::Published,
        },
        expire_at_ns: m.expire_at_ns,
    })
}

pub(crate) fn consent_to_pb(c: &ConsentRecord) -> pb::Consent {
    pb::Consent {
        entity_type: match c.entity_type {
            ConsentEntity::Conversation => pb::ConsentEntityType::Conversation,
            ConsentEntity::Inbox => pb::ConsentEntityType::Inbox,
            ConsentEntity::Address => pb::ConsentEntityType::Address,
        } as i32,
        entity: c.entity.clone(),
        state: match c.state {
            ConsentState::Unknown => pb::ConsentState::Unknown,
            ConsentState::Allowed => pb::ConsentState::Allowed,
            ConsentState::Denied => pb::ConsentState::Denied,
        } as i32,
        updated_at_ns: c.updated_at_ns,
    }
}

pub(crate) fn consent_from_pb(c: pb::Consent) -> Result<ConsentRecord> {
    let entity_type = match pb::ConsentEntityType::try_from(c.entity_type) {
        Ok(pb::ConsentEntityType::Conversation) => ConsentEntity::Conversation,
        Ok(pb::ConsentEntityType::Inbox) => ConsentEntity::Inbox,
        Ok(pb::ConsentEntityType::Address) => ConsentEntity::Address,
        _ => return Err(invalid(format!("consent entity type {}", c.entity_type))),
    };
    let state = match pb::ConsentState::try_from(c.state) {
        Ok(pb::ConsentState::Unknown) => ConsentState::Unknown,
        Ok(pb::ConsentState::Allowed) => ConsentState::Allowed,
        Ok(pb::ConsentState::Denied) => ConsentState::Denied,
        _ => return Err(invalid(format!("consent state {}", c.state))),
    };
    Ok(ConsentRecord {
        entity_type,
        entity: c.entity,
        state,
        updated_at_ns: c.updated_at_ns,
    })
}
