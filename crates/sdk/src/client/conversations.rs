//! Conversations: groups and DMs (two-inbox groups, stitched), members, sending and reading.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ferry_mls::{MlsGroup, Provider};
use ferry_proto::message::{ContentTypeId, Envelope, GroupMetadata};
use ferry_proto::node::{GroupMessageInput, WelcomeInput};
use ferry_store::{
    ConsentEntity, ConsentRecord, ConsentState, ContentType, Conversation, ConversationFilter,
    ConversationKind, DeliveryStatus, Membership, Message, MessageFilter, MessageKind, Store,
};
use ferry_transport::TransportError;
use prost::Message as _;
use rand::RngCore;
use serde::Serialize;

use super::{message_id, parse_credential, Client, Event};
use crate::{Error, Result};

/// How often a commit that lost its epoch to another member's is retried.
const COMMIT_ATTEMPTS: usize = 8;

/// Options of a new group.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    pub name: String,
    pub description: String,
}

/// A member of a conversation: an inbox and its installations in the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub inbox_id: String,
    /// Hex of the installation ids that are leaves of the group.
    pub installation_ids: Vec<String>,
}

/// Which messages to read.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub sent_after_ns: Option<i64>,
    pub sent_before_ns: Option<i64>,
    pub limit: Option<u64>,
}

/// A conversation of this client (a group, or a DM with all the groups stitched into it).
#[derive(Clone)]
pub struct Group {
    client: Client,
    id: Vec<u8>,
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
        sent_at_ns,
        reference_id: None,
        parameters: None,
    }
}

/// The store row of an application message.
pub(crate) fn envelope_message(
    id: Vec<u8>,
    group_id: &[u8],
    sender_inbox: &str,
    sender_installation: &[u8],
    env: Envelope,
    status: DeliveryStatus,
) -> Message {
    let ct = env.content_type.unwrap_or_default();
    Message {
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
    }
}

/// The store row recording a membership change (a commit).
pub(crate) fn membership_message(
    id: Vec<u8>,
    group_id: &[u8],
    committer_inbox: &str,
    committer_installation: &[u8],
    at_ns: i64,
    summary: &str,
) -> Message {
    Message {
        id,
        conversation_id: group_id.to_vec(),
        sender_inbox_id: committer_inbox.to_string(),
        sender_installation_id: committer_installation.to_vec(),
        sent_at_ns: at_ns,
        kind: MessageKind::MembershipChange,
        content_type: ContentType {
            authority: "ferry.chat".into(),
            type_id: "group_updated".into(),
            major: 1,
            minor: 0,
        },
        content: summary.as_bytes().to_vec(),
        fallback: Some(summary.to_string()),
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
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
    }
}

impl Client {
    // ---- creating -----------------------------------------------------------------------

    /// A new group with `members` (inbox ids; every installation of each is added, and this
    /// inbox's other installations too). It starts allowed.
    pub fn create_group(&self, members: &[String], options: GroupOptions) -> Result<Group> {
        let meta = GroupMetadata {
            name: options.name,
            description: options.description,
            image_url: String::new(),
            creator_inbox_id: self.inner.inbox_id.clone(),
            dm_members: Vec::new(),
            kind: ConversationKind::Group.as_i64() as u32,
            created_at_ns: crate::now_ns(),
        };
        self.create_conversation(members, meta)
    }

    /// The DM with `peer`: the newest active one when there is one (all DM groups with the
    /// same peer are shown as one conversation), else a new one.
    pub fn find_or_create_dm(&self, peer: &str) -> Result<Group> {
        if peer == self.inner.inbox_id {
            return Err(Error::InvalidArgument("a DM needs another inbox".into()));
        }
        // A DM the peer started may be waiting in our welcomes.
        self.sync_welcomes()?;
        if let Some(c) = self.primary_dm(&dm_id(&self.inner.inbox_id, peer))? {
            if c.is_active() {
                return Ok(self.group_handle(c.id));
            }
        }
        self.create_dm(peer)
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
    pub fn ensure_sync_group(&self) -> Result<Vec<u8>> {
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
        };
        Ok(self.create_conversation(&[], meta)?.id().to_vec())
    }

    /// Settles this installation on one sync group per inbox: when it is in several, it keeps
    /// the oldest (the same one on every installation, since every installation of the inbox
    /// is added to it) and leaves the others here after reading what they still hold; they are
    /// no longer synced, checked or written to. Requests of this installation still waiting for
    /// an answer go out again in the kept group, in case they went to a group the answering
    /// installations left. Returns how many groups it left.
    pub fn converge_sync_groups(&self) -> Result<u64> {
        let mut groups = self.active_sync_groups()?;
        if groups.len() < 2 {
            return Ok(0);
        }
        let keep = groups.remove(0);
        for g in &groups {
            // What came before leaving is still read (a request sent there, say).
            self.sync_group(&g.id)?;
            self.store().set_membership(&g.id, Membership::Left)?;
            tracing::info!(
                left = %hex::encode(&g.id),
                kept = %hex::encode(&keep.id),
                "left a younger sync group of this inbox"
            );
        }
        self.resend_pending_requests(&keep.id)?;
        Ok(groups.len() as u64)
    }

    /// A new DM group with `peer`, even when one exists (as when both start a DM at the same
    /// time); it is stitched with the others. Apps want [`Client::find_or_create_dm`].
    pub fn create_dm(&self, peer: &str) -> Result<Group> {
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
        };
        let g = self.create_conversation(&[peer.to_string()], meta)?;
        self.set_consent(ConsentEntity::Inbox, peer, ConsentState::Allowed)?;
        Ok(g)
    }

    fn create_conversation(&self, members: &[String], meta: GroupMetadata) -> Result<Group> {
        let mut inboxes: Vec<String> = members.to_vec();
        inboxes.push(self.inner.inbox_id.clone());
        let states = self.refresh_inboxes(&inboxes)?;
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
        let store = self.store();
        let kps = self.fetch_verified_key_packages(&store, &wanted)?;
        let provider = Provider::new(store.conn());
        let identity = self.mls_identity(&provider)?;
        let conversation = provider.transaction(|p| -> Result<_> {
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
                store.set_setting(
                    &welcome_outbox_key(&group_id),
                    &encode_welcome_record(&w, &to),
                )?;
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
        })?;
        drop(store);
        self.emit(vec![Event::Conversation(conversation)]);
        if let Err(e) = self.flush_welcome_outbox(&group_id) {
            // The group exists; its welcome waits in the outbox for the next sync.
            tracing::warn!(error = %e, "welcome not delivered yet; will retry on sync");
        }
        Ok(self.group_handle(group_id))
    }

    /// Key packages for `wanted`, each checked against its inbox's log; installations
    /// without a valid one are left out (and logged).
    fn fetch_verified_key_packages(
        &self,
        store: &Store,
        wanted: &[(String, [u8; 32])],
    ) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Vec<u8>> = wanted.iter().map(|(_, i)| i.to_vec()).collect();
        let kps = self.inner.transport.fetch_key_packages(&ids)?;
        let provider = Provider::new(store.conn());
        let mut out = Vec::new();
        for ((inbox, inst), kp) in wanted.iter().zip(kps) {
            if kp.is_empty() {
                tracing::warn!(installation = %hex::encode(inst), "no key package on the node");
                continue;
            }
            match self.verify_key_package(&provider, inbox, inst, &kp) {
                Ok(()) => out.push((*inst, kp)),
                Err(e) => {
                    tracing::warn!(installation = %hex::encode(inst), error = %e, "key package rejected")
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn deliver_welcome(&self, welcome: &[u8], to: &[[u8; 32]]) -> Result<()> {
        let inputs: Vec<WelcomeInput> = to
            .iter()
            .map(|i| WelcomeInput {
                installation_id: i.to_vec(),
                data: welcome.to_vec(),
            })
            .collect();
        let mut last = None;
        for attempt in 0..3 {
            match self.inner.transport.send_welcomes(inputs.clone()) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(200 << attempt));
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

impl Group {
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The conversation as stored (for a DM: its primary group's row).
    pub fn info(&self) -> Result<Conversation> {
        self.client
            .store()
            .conversation(&self.id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))
    }

    /// Whether this installation can send and sync here (false for restored conversations
    /// until an active member's installation adds this one).
    pub fn is_active(&self) -> Result<bool> {
        Ok(self.info()?.is_active())
    }

    fn require_active(&self) -> Result<Conversation> {
        let c = self.info()?;
        if !c.is_active() {
            return Err(Error::Inactive);
        }
        Ok(c)
    }

    /// The ids of every group shown as this conversation (one, or a DM's stitched groups).
    fn stitched_ids(&self) -> Result<Vec<Vec<u8>>> {
        let c = self.info()?;
        if let (ConversationKind::Dm, Some(dm)) = (c.kind, &c.dm_id) {
            let all = self.client.store().conversations(&ConversationFilter {
                kind: Some(ConversationKind::Dm),
                ..Default::default()
            })?;
            return Ok(all
                .into_iter()
                .filter(|o| o.dm_id.as_deref() == Some(dm.as_str()))
                .map(|o| o.id)
                .collect());
        }
        Ok(vec![c.id])
    }

    /// Messages in sending order (for a DM: of all its stitched groups).
    pub fn messages(&self, q: &MessageQuery) -> Result<Vec<Message>> {
        let mut all = Vec::new();
        for id in self.stitched_ids()? {
            all.extend(self.client.store().messages(&MessageFilter {
                conversation_id: Some(id),
                sent_after_ns: q.sent_after_ns,
                sent_before_ns: q.sent_before_ns,
                limit: None,
                include_sync: false,
            })?);
        }
        all.sort_by(|a, b| (a.sent_at_ns, &a.id).cmp(&(b.sent_at_ns, &b.id)));
        if let Some(l) = q.limit {
            // The newest `l`, still in order.
            let skip = all.len().saturating_sub(l as usize);
            all.drain(..skip);
        }
        Ok(all)
    }

    /// Sends a text message; returns its id (the same on every installation).
    pub fn send(&self, text: &str) -> Result<Vec<u8>> {
        self.send_envelope(text_envelope(text, crate::now_ns()))
    }

    /// Sends any content (an [`Envelope`] with its content type).
    pub fn send_envelope(&self, env: Envelope) -> Result<Vec<u8>> {
        let c = self.require_active()?;
        if self
            .client
            .chore_due(&self.id, self.client.send_check_interval())?
        {
            // The seed's debounce: at most every few seconds per conversation.
            if let Err(e) = self.add_missing_installations() {
                tracing::warn!(error = %e, "member check before sending failed");
            }
        }
        let client = &self.client;
        // 1. Encrypt and keep, in one transaction: the ratchet step (a generation used once is
        //    never used again), the sender's own copy (unpublished until the node has it) with
        //    the id every member derives, and the ciphertext in the group's send outbox.
        let m = {
            let store = client.store();
            let provider = Provider::new(store.conn());
            let identity = client.mls_identity(&provider)?;
            provider.transaction(|p| -> Result<Message> {
                let mut group = ferry_mls::load_group(p, &self.id)?
                    .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
                let data = ferry_mls::encrypt(&mut group, p, &identity, &env.encode_to_vec())?;
                let id = message_id(&self.id, &data);
                let m = envelope_message(
                    id.clone(),
                    &self.id,
                    &client.inner.inbox_id,
                    &client.inner.installation_id,
                    env,
                    DeliveryStatus::Unpublished,
                );
                store.insert_message(&m)?;
                store.set_setting(&send_outbox_key(&self.id, &id), &data)?;
                let hex_id = hex::encode(&c.id);
                if c.kind != ConversationKind::Sync
                    && store
                        .consent(ConsentEntity::Conversation, &hex_id)?
                        .map(|r| r.state)
                        != Some(ConsentState::Allowed)
                {
                    store.set_consent(&ConsentRecord {
                        entity_type: ConsentEntity::Conversation,
                        entity: hex_id,
                        state: ConsentState::Allowed,
                        updated_at_ns: crate::now_ns(),
                    })?;
                }
                Ok(m)
            })?
        };
        let id = m.id.clone();
        client.emit(vec![Event::Message(m)]);
        // 2. Publish (no store lock held over the network), after anything still waiting in
        //    this group's outbox. On failure the message stays unpublished and goes out with
        //    the next send or sync: the same ciphertext, so members see it once whatever
        //    happens (a node that stored it but could not answer included).
        client.publish_outbox(&self.id)?;
        Ok(id)
    }

    /// Fetches and applies what the node has for this conversation (for a DM: each of its
    /// groups); then, when the sync interval has passed, adds or removes installations.
    pub fn sync(&self) -> Result<u64> {
        self.require_active()?;
        let mut n = 0;
        for id in self.stitched_ids()? {
            let g = self.client.group_handle(id);
            if g.info()?.is_active() {
                n += self.client.sync_group(&g.id)?;
                if self
                    .client
                    .chore_due(&g.id, self.client.sync_check_interval())?
                {
                    g.add_missing_installations()?;
                }
            }
        }
        Ok(n)
    }

    /// The group's MLS epoch (how many commits it has seen).
    pub fn epoch(&self) -> Result<u64> {
        let store = self.client.store();
        let provider = Provider::new(store.conn());
        let group = ferry_mls::load_group(&provider, &self.id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
        Ok(ferry_mls::epoch(&group))
    }

    /// The member inboxes and their installations in the group.
    pub fn members(&self) -> Result<Vec<Member>> {
        let store = self.client.store();
        let provider = Provider::new(store.conn());
        let group = ferry_mls::load_group(&provider, &self.id)?
            .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
        Ok(members_of(&group))
    }

    /// Adds every installation of each inbox.
    pub fn add_members(&self, inboxes: &[String]) -> Result<()> {
        self.require_active()?;
        let states = self.client.refresh_inboxes(inboxes)?;
        for i in inboxes {
            if !states.contains_key(i) {
                return Err(Error::UnknownInbox(i.clone()));
            }
        }
        let current: BTreeSet<[u8; 32]> = self.member_installations()?;
        let wanted: Vec<(String, [u8; 32])> = states
            .iter()
            .flat_map(|(inbox, s)| {
                s.active_installations()
                    .into_iter()
                    .map(move |i| (inbox.clone(), i))
            })
            .filter(|(_, i)| !current.contains(i))
            .collect();
        self.add_installations(&wanted)
    }

    /// Removes every installation of each inbox.
    pub fn remove_members(&self, inboxes: &[String]) -> Result<()> {
        self.require_active()?;
        let doomed: Vec<Vec<u8>> = self
            .members()?
            .into_iter()
            .filter(|m| inboxes.contains(&m.inbox_id))
            .flat_map(|m| {
                m.installation_ids
                    .into_iter()
                    .map(move |i| super::credential(&m.inbox_id, &to32(&i)))
            })
            .collect();
        self.remove_leaves(&doomed)
    }

    /// Removes the leaves with these credentials (those still in the group) in one commit.
    fn remove_leaves(&self, credentials: &[Vec<u8>]) -> Result<()> {
        if credentials.is_empty() {
            return Ok(());
        }
        self.commit(|group, p, identity| {
            let present: Vec<&[u8]> = credentials
                .iter()
                .map(|d| d.as_slice())
                .filter(|d| ferry_mls::members(group).iter().any(|m| m == d))
                .collect();
            if present.is_empty() {
                return Ok(None);
            }
            Ok(Some((
                ferry_mls::stage_remove_members(group, p, identity, &present)?,
                None,
            )))
        })
    }

    pub fn update_name(&self, name: &str) -> Result<()> {
        self.update_metadata(|m| m.name = name.to_string())
    }

    pub fn update_description(&self, description: &str) -> Result<()> {
        self.update_metadata(|m| m.description = description.to_string())
    }

    fn update_metadata(&self, change: impl Fn(&mut GroupMetadata)) -> Result<()> {
        self.require_active()?;
        self.commit(|group, p, identity| {
            let mut meta = metadata_of(group);
            change(&mut meta);
            Ok(Some((
                ferry_mls::stage_update_metadata(group, p, identity, &meta.encode_to_vec())?,
                None,
            )))
        })
    }

    /// Brings the group in line with its members' identity logs: adds each member inbox's
    /// installations that are not in the group yet and removes revoked ones. Runs by itself
    /// on send and sync (after their intervals); call it to force it.
    pub fn add_missing_installations(&self) -> Result<()> {
        self.require_active()?;
        let members = self.members()?;
        let inboxes: Vec<String> = members.iter().map(|m| m.inbox_id.clone()).collect();
        let states = self.client.refresh_inboxes(&inboxes)?;
        let current = self.member_installations()?;
        let mut missing = Vec::new();
        let mut revoked = Vec::new();
        for m in &members {
            let Some(state) = states.get(&m.inbox_id) else {
                continue;
            };
            for inst in state.active_installations() {
                if !current.contains(&inst) {
                    missing.push((m.inbox_id.clone(), inst));
                }
            }
            for i in &m.installation_ids {
                let i = to32(i);
                if !state.is_active(&i) {
                    revoked.push(super::credential(&m.inbox_id, &i));
                }
            }
        }
        self.remove_leaves(&revoked)?;
        if !missing.is_empty() {
            self.add_installations(&missing)?;
        }
        self.client
            .store()
            .set_cursor(&chore_topic(&self.id), crate::now_ns())?;
        Ok(())
    }

    fn member_installations(&self) -> Result<BTreeSet<[u8; 32]>> {
        Ok(self
            .members()?
            .into_iter()
            .flat_map(|m| m.installation_ids.into_iter().map(|i| to32(&i)))
            .collect())
    }

    fn add_installations(&self, wanted: &[(String, [u8; 32])]) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let kps = {
            let store = self.client.store();
            self.client.fetch_verified_key_packages(&store, wanted)?
        };
        if kps.is_empty() {
            return Ok(());
        }
        self.commit(|group, p, identity| {
            let present: BTreeSet<Vec<u8>> = ferry_mls::members(group).into_iter().collect();
            let fresh: Vec<&([u8; 32], Vec<u8>)> = kps
                .iter()
                .filter(|(inst, _)| !present.iter().any(|m| m.starts_with(inst)))
                .collect();
            if fresh.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&[u8]> = fresh.iter().map(|(_, kp)| kp.as_slice()).collect();
            let (commit, welcome) = ferry_mls::stage_add_members(group, p, identity, &refs)?;
            let to: Vec<[u8; 32]> = fresh.iter().map(|(i, _)| *i).collect();
            Ok(Some((commit, Some((welcome, to)))))
        })
    }

    /// Makes a commit with `op` on the current epoch, publishes it, and confirms it by reading
    /// the group's channel in order: if it comes before any rival commit of its epoch it is
    /// merged (everyone else applies it too); if a rival came first, the rival is applied,
    /// ours is dropped, and the change is made again on the new epoch.
    #[allow(clippy::type_complexity)]
    fn commit(
        &self,
        op: impl Fn(
            &mut MlsGroup,
            &Provider<'_>,
            &ferry_mls::Identity,
        ) -> Result<Option<(Vec<u8>, Option<(Vec<u8>, Vec<[u8; 32]>)>)>>,
    ) -> Result<()> {
        let client = &self.client;
        for _ in 0..COMMIT_ATTEMPTS {
            client.sync_group(&self.id)?;
            if self.republish_pending()? {
                // An earlier commit of ours whose publication was in doubt: it is on the
                // node now; see where it landed before making another.
                client.sync_group(&self.id)?;
                continue;
            }
            // 1. Stage the commit and record it (id, bytes, welcome) in one transaction.
            let staged = {
                let store = client.store();
                let provider = Provider::new(store.conn());
                let identity = client.mls_identity(&provider)?;
                provider.transaction(|p| -> Result<_> {
                    let mut group = ferry_mls::load_group(p, &self.id)?
                        .ok_or_else(|| Error::NoSuchConversation(hex::encode(&self.id)))?;
                    let epoch = ferry_mls::epoch(&group);
                    let Some((commit, welcome)) = op(&mut group, p, &identity)? else {
                        return Ok(None);
                    };
                    let id = message_id(&self.id, &commit);
                    // MLS cannot decrypt its own handshake messages, so the channel tells us
                    // ours by this id.
                    store.set_setting(&pending_commit_key(&self.id), &id)?;
                    store.set_setting(&pending_data_key(&self.id), &commit)?;
                    match &welcome {
                        Some((w, to)) => store.set_setting(
                            &pending_welcome_key(&self.id),
                            &encode_welcome_record(w, to),
                        )?,
                        None => store.delete_setting(&pending_welcome_key(&self.id))?,
                    }
                    Ok(Some((id, commit, epoch)))
                })?
            };
            let Some((commit_id, commit, epoch)) = staged else {
                return Ok(());
            };
            // 2. Publish, outside the transaction.
            match client
                .inner
                .transport
                .send_group_messages(vec![GroupMessageInput {
                    group_id: self.id.clone(),
                    data: commit,
                    commit_epoch: Some(epoch),
                }]) {
                Ok(_) => {}
                Err(TransportError::Unavailable(e)) => {
                    // Maybe stored, maybe not: the pending commit stays; the next sync or
                    // commit settles it (republishing the same bytes when needed).
                    return Err(TransportError::Unavailable(e).into());
                }
                Err(e) => {
                    self.drop_pending()?;
                    return Err(e.into());
                }
            }
            // 3. Read the channel up to (and past) our commit: merged if it came first in its
            //    epoch (and its welcome sent), dropped if a rival did.
            client.sync_group(&self.id)?;
            if client.store().message(&commit_id)?.is_some() {
                return Ok(());
            }
            tracing::debug!("another commit took the epoch first; making the change again");
        }
        Err(Error::CommitRetriesExhausted)
    }

    /// Publishes again a pending commit whose publication failed midway; true when there was
    /// one.
    fn republish_pending(&self) -> Result<bool> {
        let client = &self.client;
        let data = {
            let store = client.store();
            let Some(data) = store.setting(&pending_data_key(&self.id))? else {
                return Ok(false);
            };
            let provider = Provider::new(store.conn());
            let pending = ferry_mls::load_group(&provider, &self.id)?
                .is_some_and(|g| ferry_mls::has_pending_commit(&g));
            if !pending {
                return Ok(false);
            }
            data
        };
        let epoch = self.epoch()?;
        client
            .inner
            .transport
            .send_group_messages(vec![GroupMessageInput {
                group_id: self.id.clone(),
                data,
                commit_epoch: Some(epoch),
            }])?;
        Ok(true)
    }

    /// Forgets a pending commit the node refused.
    fn drop_pending(&self) -> Result<()> {
        let store = self.client.store();
        let provider = Provider::new(store.conn());
        provider.transaction(|p| -> Result<()> {
            if let Some(mut g) = ferry_mls::load_group(p, &self.id)? {
                ferry_mls::clear_pending_commit(&mut g, p)?;
            }
            store.delete_setting(&pending_commit_key(&self.id))?;
            store.delete_setting(&pending_data_key(&self.id))?;
            store.delete_setting(&pending_welcome_key(&self.id))?;
            Ok(())
        })
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

pub(crate) fn pending_data_key(group_id: &[u8]) -> String {
    format!("pending_commit_data/{}", hex::encode(group_id))
}

pub(crate) fn pending_welcome_key(group_id: &[u8]) -> String {
    format!("pending_welcome/{}", hex::encode(group_id))
}

/// A sent message's ciphertext waiting for the node: ordered by time within its group.
pub(crate) fn send_outbox_key(group_id: &[u8], message_id: &[u8]) -> String {
    format!(
        "{}{:020}-{}",
        send_outbox_prefix(group_id),
        crate::now_ns(),
        hex::encode(message_id)
    )
}

pub(crate) fn send_outbox_prefix(group_id: &[u8]) -> String {
    format!("send_outbox/{}/", hex::encode(group_id))
}

pub(crate) fn welcome_outbox_key(group_id: &[u8]) -> String {
    format!("welcome_outbox/{}", hex::encode(group_id))
}

/// The settings key holding the id of this installation's pending commit in a group.
pub(crate) fn pending_commit_key(group_id: &[u8]) -> String {
    format!("pending_commit/{}", hex::encode(group_id))
}

pub(crate) fn chore_topic(group_id: &[u8]) -> String {
    format!("check/{}", hex::encode(group_id))
}

fn to32(hex_id: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(b) = hex::decode(hex_id) {
        if b.len() == 32 {
            out.copy_from_slice(&b);
        }
    }
    out
}

/// The members of a group, by inbox.
pub(crate) fn members_of(group: &MlsGroup) -> Vec<Member> {
    let mut by_inbox: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for cred in ferry_mls::members(group) {
        if let Some((inbox, inst)) = parse_credential(&cred) {
            by_inbox.entry(inbox).or_default().push(hex::encode(inst));
        }
    }
    by_inbox
        .into_iter()
        .map(|(inbox_id, installation_ids)| Member {
            inbox_id,
            installation_ids,
        })
        .collect()
}

/// A one-line summary of the group after a commit (who is in it, its name).
pub(crate) fn describe_commit(group: &MlsGroup, _me: &str) -> String {
    let members = members_of(group);
    let meta = metadata_of(group);
    format!(
        "group updated: epoch {}, {} members{}",
        ferry_mls::epoch(group),
        members.len(),
        if meta.name.is_empty() {
            String::new()
        } else {
            format!(", name \"{}\"", meta.name)
        }
    )
}

impl Client {
    /// Whether the member check of `group_id` last ran longer than `interval` ago.
    pub(crate) fn chore_due(&self, group_id: &[u8], interval: std::time::Duration) -> Result<bool> {
        let last = self.store().cursor(&chore_topic(group_id))?;
        Ok(crate::now_ns().saturating_sub(last) >= interval.as_nanos() as i64)
    }
}
