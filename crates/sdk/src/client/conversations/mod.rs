//! Conversations: groups and DMs (two-inbox groups, stitched), members, sending and reading.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ferry_mls::{MlsGroup, Provider};
use ferry_proto::message::{ContentTypeId, Envelope, GroupMetadata};
use ferry_proto::node::{GroupMessageInput, WelcomeInput};
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, DisappearingSettings, Membership, Message, MessageFilter,
    MessageKind, SentMessage,
};
use ferry_transport::TransportError;
use prost::Message as _;
use rand::RngCore;
use serde::Serialize;

use super::{
    application_message_id, lock, message_id, parse_credential, Client, Event, QueuedSend,
};
use crate::{Error, Result};

mod group;

/// How often a commit that lost its epoch to another member's is retried.
const COMMIT_ATTEMPTS: usize = 8;

/// Options of a new group.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    /// The group's name (may be empty).
    pub name: String,
    /// The group's description (may be empty).
    pub description: String,
    /// Disappearing messages from the start (`None`: off; change it later with
    /// [`Group::update_message_disappearing_settings`]).
    pub message_disappearing_settings: Option<DisappearingSettings>,
}

/// A member of a conversation: an inbox and its installations in the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The member's inbox.
    pub inbox_id: crate::InboxId,
    /// Its installations that are leaves of the group.
    pub installation_ids: Vec<crate::InstallationId>,
}

/// Which messages to read.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Only messages sent after this time (ns since the Unix epoch, exclusive).
    pub sent_after_ns: Option<i64>,
    /// Only messages sent before this time (ns since the Unix epoch, exclusive).
    pub sent_before_ns: Option<i64>,
    /// At most this many.
    pub limit: Option<u64>,
}

/// A conversation of this client (a group, or a DM with all the groups stitched into it).
#[derive(Clone)]
pub struct Group {
    pub(crate) client: Client,
    pub(crate) id: Vec<u8>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("id", &hex::encode(&self.id))
            .finish()
    }
}

pub(crate) fn dm_id(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("dm:{x}:{y}")
}

fn text_envelope(text: &str, sent_at_ns: i64) -> Envelope {
    let ct = ContentType::text();
    Envelope {
        content_type: Some(ContentTypeId {
            authority: ct.authority,
            type_id: ct.type_id,
            major: ct.major,
            minor: ct.minor,
        }),
        content: text.as_bytes().to_vec(),
        fallback: None,
        idempotency_key: None,
        sent_at_ns,
        reference_id: None,
        parameters: None,
    }
}

/// The store row of an application message, with the expiry its conversation's
/// disappearing setting gives it now.
pub(crate) fn envelope_message(
    store: &ferry_store::Store,
    id: Vec<u8>,
    group_id: &[u8],
    sender_inbox: &str,
    sender_installation: &[u8],
    env: Envelope,
    status: DeliveryStatus,
) -> Result<Message> {
    let ct = env.content_type.unwrap_or_default();
    let expire_at_ns = store.expiry_for(group_id, env.sent_at_ns, MessageKind::Application)?;
    Ok(Message {
        id,
        conversation_id: group_id.to_vec(),
        sender_inbox_id: sender_inbox.to_string(),
        sender_installation_id: sender_installation.to_vec(),
        sent_at_ns: env.sent_at_ns,
        kind: MessageKind::Application,
        content_type: ContentType {
            authority: ct.authority,
            type_id: ct.type_id,
            major: ct.major,
            minor: ct.minor,
        },
        content: env.content,
        fallback: env.fallback,
        parameters: env.parameters,
        reference_id: env.reference_id,
        delivery_status: status,
        expire_at_ns,
    })
}

/// The store row recording a commit: a [`ferry_content::GroupUpdated`] notice (XMTP's
/// `group_updated` type: who added or removed whom, which fields changed), with a one-line
/// fallback.
pub(crate) fn membership_message(
    id: Vec<u8>,
    group_id: &[u8],
    committer_installation: &[u8],
    at_ns: i64,
    update: &ferry_content::GroupUpdated,
) -> Message {
    use ferry_content::ContentCodec as _;
    let encoded = ferry_content::GroupUpdatedCodec::encode(update).unwrap_or_else(|_| {
        ferry_content::EncodedContent::new(
            ferry_content::GroupUpdatedCodec::content_type(),
            Vec::new(),
        )
    });
    Message {
        id,
        conversation_id: group_id.to_vec(),
        sender_inbox_id: update.initiated_by_inbox_id.clone(),
        sender_installation_id: committer_installation.to_vec(),
        sent_at_ns: at_ns,
        kind: MessageKind::MembershipChange,
        content_type: ContentType {
            authority: encoded.content_type.authority.clone(),
            type_id: encoded.content_type.type_id.clone(),
            major: encoded.content_type.major,
            minor: encoded.content_type.minor,
        },
        content: encoded.content.clone(),
        fallback: Some(update.summary(short_inbox)),
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
        expire_at_ns: None,
    }
}

/// An inbox id cut to 8 characters, for one-line summaries.
fn short_inbox(inbox: &str) -> String {
    inbox.chars().take(8).collect()
}

/// The inboxes in the group.
pub(crate) fn inboxes_of(group: &MlsGroup) -> BTreeSet<String> {
    ferry_mls::members(group)
        .iter()
        .filter_map(|c| parse_credential(c).map(|(inbox, _)| inbox))
        .collect()
}

/// What a commit changed, for its notice. `before` is the group's inboxes before it (when
/// known); otherwise they are worked out from the installations it `added` and `removed`:
/// an inbox is added when all of its installations are new, removed when none is left.
/// Name, description and image changes come from `old` (the conversation's row before the
/// commit) against the group's metadata now.
pub(crate) fn commit_update(
    group: &MlsGroup,
    committer_inbox: &str,
    before: Option<&BTreeSet<String>>,
    added: &[Vec<u8>],
    removed: &[Vec<u8>],
    old: Option<&ferry_store::Conversation>,
) -> ferry_content::GroupUpdated {
    let after = inboxes_of(group);
    let (added_inboxes, removed_inboxes) = match before {
        Some(before) => (
            after.difference(before).cloned().collect(),
            before.difference(&after).cloned().collect(),
        ),
        None => {
            let inbox = |c: &Vec<u8>| parse_credential(c).map(|(i, _)| i);
            let added_set: BTreeSet<&Vec<u8>> = added.iter().collect();
            let new_inboxes: BTreeSet<String> = added.iter().filter_map(inbox).collect();
            let members = ferry_mls::members(group);
            let added_inboxes = new_inboxes
                .into_iter()
                .filter(|i| {
                    members
                        .iter()
                        .filter(|c| inbox(c).as_deref() == Some(i.as_str()))
                        .all(|c| added_set.contains(c))
                })
                .collect();
            let removed_inboxes = removed
                .iter()
                .filter_map(inbox)
                .filter(|i| !after.contains(i))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            (added_inboxes, removed_inboxes)
        }
    };
    let meta = metadata_of(group);
    let mut changes = Vec::new();
    if let Some(old) = old {
        for (field, was, now) in [
            ("group_name", &old.name, &meta.name),
            ("description", &old.description, &meta.description),
            ("group_image_url_square", &old.image_url, &meta.image_url),
        ] {
            if was != now {
                changes.push(ferry_content::MetadataFieldChange {
                    field_name: field.into(),
                    old_value: (!was.is_empty()).then(|| was.clone()),
                    new_value: (!now.is_empty()).then(|| now.clone()),
                });
            }
        }
        // Disappearing messages, under XMTP's metadata field names, values in decimal.
        let now = DisappearingSettings::from_parts(
            meta.message_disappear_from_ns,
            meta.message_disappear_in_ns,
        );
        for (field, part) in [
            (
                "message_disappear_from_ns",
                (|d: DisappearingSettings| d.from_ns) as fn(_) -> i64,
            ),
            ("message_disappear_in_ns", |d: DisappearingSettings| d.in_ns),
        ] {
            let (was, now) = (old.disappearing.map(part), now.map(part));
            if was != now {
                changes.push(ferry_content::MetadataFieldChange {
                    field_name: field.into(),
                    old_value: was.map(|v| v.to_string()),
                    new_value: now.map(|v| v.to_string()),
                });
            }
        }
    }
    ferry_content::GroupUpdated {
        initiated_by_inbox_id: committer_inbox.to_string(),
        added_inboxes,
        removed_inboxes,
        left_inboxes: Vec::new(),
        metadata_field_changes: changes,
    }
}

/// Reads the group's metadata extension.
pub(crate) fn metadata_of(group: &MlsGroup) -> GroupMetadata {
    ferry_mls::group_metadata(group)
        .and_then(|b| GroupMetadata::decode(b.as_slice()).ok())
        .unwrap_or_default()
}

/// The store row of a conversation as its MLS group describes it.
pub(crate) fn conversation_row(me: &str, group: &MlsGroup, membership: Membership) -> Conversation {
    let meta = metadata_of(group);
    let kind = ConversationKind::from_i64(meta.kind as i64).unwrap_or(ConversationKind::Group);
    let (dm_peer, dm) = if kind == ConversationKind::Dm && meta.dm_members.len() == 2 {
        let peer = meta
            .dm_members
            .iter()
            .find(|m| m.as_str() != me)
            .cloned()
            .unwrap_or_else(|| me.to_string());
        (
            Some(peer),
            Some(dm_id(&meta.dm_members[0], &meta.dm_members[1])),
        )
    } else {
        (None, None)
    };
    Conversation {
        id: group.group_id().as_slice().to_vec(),
        kind,
        created_at_ns: meta.created_at_ns,
        name: meta.name,
        description: meta.description,
        image_url: meta.image_url,
        creator_inbox_id: meta.creator_inbox_id,
        dm_peer_inbox_id: dm_peer,
        dm_id: dm,
        membership,
        last_message_ns: None,
        disappearing: ferry_store::DisappearingSettings::from_parts(
            meta.message_disappear_from_ns,
            meta.message_disappear_in_ns,
        ),
    }
}

impl Client {
    // ---- creating -----------------------------------------------------------------------

    /// A new group with `members` (inbox ids; every installation of each is added, and this
    /// inbox's other installations too). It starts allowed.
    pub async fn create_group(&self, members: &[String], options: GroupOptions) -> Result<Group> {
        let meta = GroupMetadata {
            name: options.name,
            description: options.description,
            image_url: String::new(),
            creator_inbox_id: self.inner.inbox_id.clone(),
            dm_members: Vec::new(),
            kind: ConversationKind::Group.as_i64() as u32,
            created_at_ns: crate::now_ns(),
            message_disappear_from_ns: options.message_disappearing_settings.map(|d| d.from_ns),
            message_disappear_in_ns: options.message_disappearing_settings.map(|d| d.in_ns),
        };
        self.create_conversation(members, meta).await
    }

    /// The DM with `peer`: the newest active one when there is one (all DM groups with the
    /// same peer are shown as one conversation), else a new one.
    pub async fn find_or_create_dm(&self, peer: &str) -> Result<Group> {
        if peer == self.inner.inbox_id {
            return Err(Error::InvalidArgument("a DM needs another inbox".into()));
        }
        // A DM the peer started may be waiting in our welcomes.
        self.sync_welcomes().await?;
        if let Some(c) = self.primary_dm(&dm_id(&self.inner.inbox_id, peer))? {
            if c.is_active() {
                return Ok(self.group_handle(c.id));
            }
        }
        self.create_dm(peer).await
    }

    /// This installation's active sync groups, the inbox's surviving one first: the oldest
    /// created (then the lowest id), the same choice on every installation.
    fn active_sync_groups(&self) -> Result<Vec<Conversation>> {
        let mut groups = self.store().conversations(&ConversationFilter {
            kind: Some(ConversationKind::Sync),
            active: Some(true),
            ..Default::default()
        })?;
        groups.sort_by(|a, b| (a.created_at_ns, &a.id).cmp(&(b.created_at_ns, &b.id)));
        Ok(groups)
    }

    /// Makes sure this installation is in a sync group: the hidden conversation (kind sync) of
    /// this inbox's own installations, over which history sync and preference updates travel.
    /// Creates one (with the inbox's other installations) when there is none; returns its id.
    /// Installations added to the inbox later join it like any own conversation (see
    /// [`Client::add_new_own_installations`]).
    ///
    /// A new installation may have to create a sync group of its own to ask for history
    /// before anyone added it to the inbox's; once it is in more than one, the oldest is the
    /// inbox's and the others are left ([`Client::converge_sync_groups`]).
    pub async fn ensure_sync_group(&self) -> Result<Vec<u8>> {
        if let Some(c) = self.active_sync_groups()?.into_iter().next() {
            return Ok(c.id);
        }
        let meta = GroupMetadata {
            name: String::new(),
            description: String::new(),
            image_url: String::new(),
            creator_inbox_id: self.inner.inbox_id.clone(),
            dm_members: Vec::new(),
            kind: ConversationKind::Sync.as_i64() as u32,
            created_at_ns: crate::now_ns(),
            ..Default::default()
        };
        Ok(self.create_conversation(&[], meta).await?.id().to_vec())
    }

    /// Settles this installation on one sync group per inbox: when it is in several, it keeps
    /// the oldest (the same one on every installation, since every installation of the inbox
    /// is added to it) and leaves the others here after reading what they still hold; they are
    /// no longer synced, checked or written to. Requests of this installation still waiting for
    /// an answer go out again in the kept group, in case they went to a group the answering
    /// installations left, and so do its consent decisions and the HMAC secret. Returns how
    /// many groups it left.
    pub async fn converge_sync_groups(&self) -> Result<u64> {
        let mut groups = self.active_sync_groups()?;
        if groups.len() < 2 {
            return Ok(0);
        }
        let keep = groups.remove(0);
        for g in &groups {
            // What came before leaving is still read (a request sent there, say).
            self.sync_group(&g.id).await?;
            self.store().set_membership(&g.id, Membership::Left)?;
            tracing::info!(
                left = %hex::encode(&g.id),
                kept = %hex::encode(&keep.id),
                "left a younger sync group of this inbox"
            );
        }
        self.resend_pending_requests(&keep.id).await?;
        // Preference updates this installation sent into a group it now leaves may never have
        // reached installations that were only in the kept one: its consent decisions and the
        // HMAC secret go out again there (the newer of each wins wherever they arrive).
        self.share_consent()?;
        self.share_hmac_secret().await?;
        Ok(groups.len() as u64)
    }

    /// A new DM group with `peer`, even when one exists (as when both start a DM at the same
    /// time); it is stitched with the others. Apps want [`Client::find_or_create_dm`].
    pub async fn create_dm(&self, peer: &str) -> Result<Group> {
        if peer == self.inner.inbox_id {
            return Err(Error::InvalidArgument("a DM needs another inbox".into()));
        }
        let mut dm_members = vec![self.inner.inbox_id.clone(), peer.to_string()];
        dm_members.sort();
        let meta = GroupMetadata {
            name: String::new(),
            description: String::new(),
            image_url: String::new(),
            creator_inbox_id: self.inner.inbox_id.clone(),
            dm_members,
            kind: ConversationKind::Dm.as_i64() as u32,
            created_at_ns: crate::now_ns(),
            ..Default::default()
        };
        let g = self.create_conversation(&[peer.to_string()], meta).await?;
        self.set_consent(ConsentEntity::Inbox, peer, ConsentState::Allowed)
            .await?;
        Ok(g)
    }

    async fn create_conversation(&self, members: &[String], meta: GroupMetadata) -> Result<Group> {
        let mut inboxes: Vec<String> = members.to_vec();
        inboxes.push(self.inner.inbox_id.clone());
        let states = self.refresh_inboxes(&inboxes).await?;
        for m in members {
            if !states.contains_key(m) {
                return Err(Error::UnknownInbox(m.clone()));
            }
        }
        let mut wanted: Vec<(String, [u8; 32])> = Vec::new();
        for (inbox, state) in &states {
            for inst in state.active_installations() {
                if inst != self.inner.installation_id {
                    wanted.push((inbox.clone(), inst));
                }
            }
        }
        let group_id = {
            let mut id = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut id);
            id
        };
        let kps = self.fetch_verified_key_packages(&wanted).await?;
        let conversation = {
            let store = self.store();
            let provider = Provider::new(store.conn());
            let identity = self.mls_identity(&provider)?;
            provider.transaction(|p| -> Result<_> {
                let mut group = ferry_mls::create_group_with_metadata(
                    p,
                    &identity,
                    &group_id,
                    Some(&meta.encode_to_vec()),
                )?;
                if !kps.is_empty() {
                    let refs: Vec<&[u8]> = kps.iter().map(|(_, kp)| kp.as_slice()).collect();
                    let (_commit, w) = ferry_mls::add_members(&mut group, p, &identity, &refs)?;
                    // Kept with the group, so a welcome that fails to go out now is sent again on
                    // the group's next sync instead of being lost.
                    let to: Vec<[u8; 32]> = kps.iter().map(|(i, _)| *i).collect();
                    store.welcome_outbox_push(&group_id, &encode_welcome_record(&w, &to))?;
                }
                let c = conversation_row(&self.inner.inbox_id, &group, Membership::Active);
                store.insert_conversation(&c)?;
                // The hidden sync group is nobody's consent decision.
                if c.kind != ConversationKind::Sync {
                    store.set_consent(&ConsentRecord {
                        entity_type: ConsentEntity::Conversation,
                        entity: hex::encode(&group_id),
                        state: ConsentState::Allowed,
                        updated_at_ns: crate::now_ns(),
                    })?;
                }
                Ok(c)
            })?
        };
        self.emit(vec![Event::Conversation(conversation)]);
        if let Err(e) = self.flush_welcome_outbox(&group_id).await {
            // The group exists; its welcome waits in the outbox for the next sync.
            tracing::warn!(error = %e, "welcome not delivered yet; will retry on sync");
        }
        Ok(self.group_handle(group_id))
    }

    /// Key packages for `wanted`, each checked against its inbox's log; installations
    /// without a valid one are left out (and logged).
    async fn fetch_verified_key_packages(
        &self,
        wanted: &[(String, [u8; 32])],
    ) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Vec<u8>> = wanted.iter().map(|(_, i)| i.to_vec()).collect();
        let kps = self.inner.transport.fetch_key_packages(&ids).await?;
        let mut out = Vec::new();
        for ((inbox, inst), kp) in wanted.iter().zip(kps) {
            if kp.is_empty() {
                tracing::warn!(installation = %hex::encode(inst), "no key package on the node");
                continue;
            }
            match self.verify_key_package(inbox, inst, &kp).await {
                Ok(()) => out.push((*inst, kp)),
                Err(e) => {
                    tracing::warn!(installation = %hex::encode(inst), error = %e, "key package rejected")
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn deliver_welcome(&self, welcome: &[u8], to: &[[u8; 32]]) -> Result<()> {
        let inputs: Vec<WelcomeInput> = to
            .iter()
            .map(|i| WelcomeInput {
                installation_id: i.to_vec(),
                data: welcome.to_vec(),
            })
            .collect();
        let mut last = None;
        for attempt in 0..3 {
            match self.inner.transport.send_welcomes(inputs.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        Err(last.expect("an error").into())
    }

    // ---- finding ------------------------------------------------------------------------

    pub(crate) fn group_handle(&self, id: Vec<u8>) -> Group {
        Group {
            client: self.clone(),
            id,
        }
    }

    /// The conversation with this id (any of a DM's stitched groups finds the DM).
    pub fn conversation(&self, id: &[u8]) -> Result<Group> {
        // The hidden sync groups are not conversations anyone can open.
        let c = self
            .store()
            .conversation(id)?
            .filter(|c| c.kind != ConversationKind::Sync)
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(id)))?;
        if c.kind == ConversationKind::Dm {
            if let Some(dm) = &c.dm_id {
                if let Some(p) = self.primary_dm(dm)? {
                    return Ok(self.group_handle(p.id));
                }
            }
        }
        Ok(self.group_handle(c.id))
    }

    /// A handle to one of this installation's hidden sync groups, by id (for tests and
    /// diagnostics: apps never need it, and [`Client::conversation`] does not open them).
    #[doc(hidden)]
    pub fn sync_group_conversation(&self, id: &[u8]) -> Result<Group> {
        match self.store().conversation(id)? {
            Some(c) if c.kind == ConversationKind::Sync => Ok(self.group_handle(c.id)),
            _ => Err(Error::NoSuchConversation(hex::encode(id))),
        }
    }

    /// The conversation a DM's groups are shown as: active before inactive, then the newest.
    fn primary_dm(&self, dm: &str) -> Result<Option<Conversation>> {
        let all = self.store().conversations(&ConversationFilter {
            kind: Some(ConversationKind::Dm),
            ..Default::default()
        })?;
        Ok(all
            .into_iter()
            .filter(|c| c.dm_id.as_deref() == Some(dm))
            .max_by(|a, b| {
                (a.is_active(), a.created_at_ns, &a.id).cmp(&(
                    b.is_active(),
                    b.created_at_ns,
                    &b.id,
                ))
            }))
    }

    /// The conversation's effective consent: its own record, else (DMs) the peer's.
    pub fn conversation_consent(&self, c: &Conversation) -> Result<ConsentState> {
        let store = self.store();
        if let Some(r) = store.consent(ConsentEntity::Conversation, &hex::encode(&c.id))? {
            return Ok(r.state);
        }
        if let Some(peer) = &c.dm_peer_inbox_id {
            if let Some(r) = store.consent(ConsentEntity::Inbox, peer)? {
                return Ok(r.state);
            }
        }
        Ok(ConsentState::Unknown)
    }

    /// Conversations, newest activity first; a DM's groups appear once (its primary group,
    /// with the newest activity of all of them).
    pub fn list_conversations(&self, filter: &ConversationFilter) -> Result<Vec<Conversation>> {
        let mut base = filter.clone();
        base.consent = None;
        base.active = None;
        let all = self.store().conversations(&base)?;
        let mut dms: HashMap<String, Vec<Conversation>> = HashMap::new();
        let mut out = Vec::new();
        for c in all {
            match (&c.kind, &c.dm_id) {
                (ConversationKind::Dm, Some(d)) => dms.entry(d.clone()).or_default().push(c),
                _ => out.push(c),
            }
        }
        for (_, group) in dms {
            let last = group.iter().filter_map(|c| c.last_message_ns).max();
            let mut primary = group
                .into_iter()
                .max_by(|a, b| {
                    (a.is_active(), a.created_at_ns, &a.id).cmp(&(
                        b.is_active(),
                        b.created_at_ns,
                        &b.id,
                    ))
                })
                .expect("non-empty");
            primary.last_message_ns = last;
            out.push(primary);
        }
        let mut kept = Vec::new();
        for c in out {
            if filter.active.is_some_and(|a| a != c.is_active()) {
                continue;
            }
            if let Some(want) = filter.consent {
                if self.conversation_consent(&c)? != want {
                    continue;
                }
            }
            kept.push(c);
        }
        kept.sort_by(|a, b| {
            b.last_message_ns
                .unwrap_or(b.created_at_ns)
                .cmp(&a.last_message_ns.unwrap_or(a.created_at_ns))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(kept)
    }
}

/// A welcome and its recipients, as kept in settings until the commit is confirmed.
fn encode_welcome_record(welcome: &[u8], to: &[[u8; 32]]) -> Vec<u8> {
    let mut out = (to.len() as u32).to_be_bytes().to_vec();
    for i in to {
        out.extend_from_slice(i);
    }
    out.extend_from_slice(welcome);
    out
}

pub(crate) fn decode_welcome_record(b: &[u8]) -> Option<(Vec<u8>, Vec<[u8; 32]>)> {
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let end = 4usize.checked_add(n.checked_mul(32)?)?;
    let to = b
        .get(4..end)?
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    Some((b.get(end..)?.to_vec(), to))
}

pub(crate) fn chore_topic(group_id: &[u8]) -> String {
    format!("check/{}", hex::encode(group_id))
}

/// The members of a group, by inbox.
pub(crate) fn members_of(group: &MlsGroup) -> Vec<Member> {
    let mut by_inbox: BTreeMap<String, Vec<crate::InstallationId>> = BTreeMap::new();
    for cred in ferry_mls::members(group) {
        if let Some((inbox, inst)) = parse_credential(&cred) {
            by_inbox.entry(inbox).or_default().push(inst.into());
        }
    }
    by_inbox
        .into_iter()
        .map(|(inbox_id, installation_ids)| Member {
            inbox_id: crate::InboxId::trusted(&inbox_id),
            installation_ids,
        })
        .collect()
}

impl Client {
    /// Whether the member check of `group_id` last ran longer than `interval` ago.
    pub(crate) fn chore_due(&self, group_id: &[u8], interval: std::time::Duration) -> Result<bool> {
        let last = self.store().cursor(&chore_topic(group_id))?;
        Ok(crate::now_ns().saturating_sub(last) >= interval.as_nanos() as i64)
    }
}
