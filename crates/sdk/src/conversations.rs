//! Conversations the way XMTP's SDKs organise them: [`Client::conversations`] gives
//! [`Conversations`] (create, find, list, sync, stream), which hands out a [`Conversation`]:
//! a [`Group`] or a [`Dm`], the kind visible in the type.
//!
//! ```
//! # include!("../doctests/net.rs");
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> ferry_sdk::Result<()> {
//! # let net = Net::start();
//! # let (alice, bob) = (net.client("alice").await?, net.client("bob").await?);
//! use ferry_sdk::{Conversation, GroupOptions, InboxId, ListConversationsOptions};
//!
//! let bob_inbox = bob.inbox_id().clone();
//! let conversations = alice.conversations();
//! let options = GroupOptions {
//!     name: "weekend".into(),
//!     ..Default::default()
//! };
//! let group = conversations.create_group(&[bob_inbox.clone()], options).await?;
//! group.send_text("who brings the tent?").await?;
//! let dm = conversations.find_or_create_dm(&bob_inbox).await?;
//! dm.send_text("hi").await?;
//! // The same DM, found again by its peer.
//! assert_eq!(conversations.find_or_create_dm(&bob_inbox).await?.id(), dm.id());
//! assert_eq!(conversations.get_dm_by_inbox_id(&bob_inbox)?.map(|d| d.id()), Some(dm.id()));
//!
//! // Bob joins both from their welcomes.
//! assert_eq!(bob.conversations().sync().await?, 2);
//! let listed = bob.conversations().list(&ListConversationsOptions::default())?;
//! assert_eq!(listed.len(), 2);
//! for c in listed {
//!     match c {
//!         Conversation::Group(g) => assert_eq!(g.name()?, "weekend"),
//!         Conversation::Dm(d) => assert_eq!(d.peer_inbox_id()?.as_str(), alice.inbox_id()),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use ferry_proto::message::Envelope;
use ferry_store::{
    ConsentEntity, ConsentState, ConversationFilter, ConversationKind, Membership, Message,
};
use futures::StreamExt;

use crate::client::{Client, EventStream, Group, Member, MessageQuery, SyncReport};
use crate::{ConversationId, Error, GroupOptions, InboxId, MessageId, Result};

/// A conversation: a group, or a DM (one peer; every group between the two inboxes stitched
/// into one conversation).
#[derive(Clone, Debug)]
pub enum Conversation {
    /// A group with a name, a description and members that can change.
    Group(Group),
    /// A conversation with one other inbox.
    Dm(Dm),
}

/// A DM: a conversation with one other inbox.
#[derive(Clone, Debug)]
pub struct Dm {
    group: Group,
}

/// What [`Conversations::list`] returns. The default: every conversation (not the hidden
/// sync groups), active or restored, whatever its consent, newest activity first.
#[derive(Debug, Clone, Default)]
pub struct ListConversationsOptions {
    /// Only conversations whose consent is one of these (empty: any).
    pub consent_states: Vec<ConsentState>,
    /// Only active ones (`Some(true)`), only restored or left ones (`Some(false)`), or both.
    pub active: Option<bool>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// [`Client::conversations`]: the conversations of one installation.
#[derive(Clone)]
pub struct Conversations {
    client: Client,
}

impl Client {
    /// This installation's conversations: create, find, list, sync and stream them.
    pub fn conversations(&self) -> Conversations {
        Conversations {
            client: self.clone(),
        }
    }
}

fn inbox_strings(inboxes: &[InboxId]) -> Vec<String> {
    inboxes.iter().map(|i| i.to_string()).collect()
}

impl Conversations {
    /// Creates a group with these inboxes (every installation of each is added) and this
    /// installation's inbox.
    pub async fn create_group(&self, members: &[InboxId], options: GroupOptions) -> Result<Group> {
        self.client
            .create_group(&inbox_strings(members), options)
            .await
    }

    /// Creates a new DM with `peer` (see [`find_or_create_dm`](Self::find_or_create_dm) to
    /// reuse an existing one).
    pub async fn create_dm(&self, peer: &InboxId) -> Result<Dm> {
        Ok(Dm {
            group: self.client.create_dm(peer.as_str()).await?,
        })
    }

    /// The DM with `peer`, created if there is none yet.
    pub async fn find_or_create_dm(&self, peer: &InboxId) -> Result<Dm> {
        Ok(Dm {
            group: self.client.find_or_create_dm(peer.as_str()).await?,
        })
    }

    /// The conversation with this id (`None` if there is none here).
    pub fn get_conversation_by_id(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        match self.client.conversation(id.as_bytes()) {
            Ok(g) => Ok(Some(Conversation::from_handle(g)?)),
            Err(Error::NoSuchConversation(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The DM with `peer`, if there is one.
    pub fn get_dm_by_inbox_id(&self, peer: &InboxId) -> Result<Option<Dm>> {
        let dms = self.client.list_conversations(&ConversationFilter {
            kind: Some(ConversationKind::Dm),
            ..Default::default()
        })?;
        match dms
            .into_iter()
            .find(|c| c.dm_peer_inbox_id.as_deref() == Some(peer.as_str()))
        {
            Some(c) => Ok(Some(Dm {
                group: self.client.conversation(&c.id)?,
            })),
            None => Ok(None),
        }
    }

    /// Conversations, newest activity first (see [`ListConversationsOptions`]).
    pub fn list(&self, options: &ListConversationsOptions) -> Result<Vec<Conversation>> {
        self.list_kind(None, options)
    }

    /// Groups only.
    pub fn list_groups(&self, options: &ListConversationsOptions) -> Result<Vec<Group>> {
        Ok(self
            .list_kind(Some(ConversationKind::Group), options)?
            .into_iter()
            .filter_map(|c| match c {
                Conversation::Group(g) => Some(g),
                Conversation::Dm(_) => None,
            })
            .collect())
    }

    /// DMs only.
    pub fn list_dms(&self, options: &ListConversationsOptions) -> Result<Vec<Dm>> {
        Ok(self
            .list_kind(Some(ConversationKind::Dm), options)?
            .into_iter()
            .filter_map(|c| match c {
                Conversation::Dm(d) => Some(d),
                Conversation::Group(_) => None,
            })
            .collect())
    }

    fn list_kind(
        &self,
        kind: Option<ConversationKind>,
        options: &ListConversationsOptions,
    ) -> Result<Vec<Conversation>> {
        let rows = self.client.list_conversations(&ConversationFilter {
            kind,
            active: options.active,
            ..Default::default()
        })?;
        let mut out = Vec::new();
        for row in rows {
            if !options.consent_states.is_empty()
                && !options
                    .consent_states
                    .contains(&self.client.conversation_consent(&row)?)
            {
                continue;
            }
            if options.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            out.push(Conversation::from_handle(
                self.client.conversation(&row.id)?,
            )?);
        }
        Ok(out)
    }

    /// Joins the conversations whose welcomes wait on the node; returns how many.
    pub async fn sync(&self) -> Result<u64> {
        self.client.sync_welcomes().await
    }

    /// Joins new conversations, then syncs the active ones whose consent is one of
    /// `consent_states` (all of them, with device sync and member checks, when it is empty).
    pub async fn sync_all(&self, consent_states: &[ConsentState]) -> Result<SyncReport> {
        if consent_states.is_empty() {
            return self.client.sync_all().await;
        }
        let mut report = SyncReport {
            conversations_joined: self.client.sync_welcomes().await?,
            ..Default::default()
        };
        let options = ListConversationsOptions {
            consent_states: consent_states.to_vec(),
            active: Some(true),
            limit: None,
        };
        for c in self.list(&options)? {
            report.messages_processed += c.sync().await?;
            report.conversations_synced += 1;
        }
        Ok(report)
    }

    /// Conversations as they appear (created here, joined from a welcome, or reactivated).
    pub fn stream(&self) -> impl futures::Stream<Item = Conversation> + Send + Unpin + 'static {
        let client = self.client.clone();
        self.client.stream_conversations().filter_map(move |row| {
            let handle = client
                .conversation(&row.id)
                .and_then(Conversation::from_handle);
            futures::future::ready(handle.ok())
        })
    }

    /// New messages in every conversation, as they are stored: sent here, or received when
    /// this client syncs (run a [`Worker`](crate::Worker) to stay online). Membership changes
    /// come too, as messages of kind `Membership`. The stream ends when the client closes.
    ///
    /// ```
    /// # include!("../doctests/net.rs");
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() -> ferry_sdk::Result<()> {
    /// # let net = Net::start();
    /// # let (alice, bob) = (net.client("alice").await?, net.client("bob").await?);
    /// use std::time::Duration;
    ///
    /// use ferry_sdk::store::MessageKind;
    /// use ferry_sdk::InboxId;
    /// use futures::StreamExt;
    ///
    /// let (alice_inbox, bob_inbox): (InboxId, InboxId) = (
    ///     alice.inbox_id().clone(),
    ///     bob.inbox_id().clone(),
    /// );
    /// // Bob streams every new text; his worker keeps him online (it joins and syncs).
    /// let mut texts = bob
    ///     .conversations()
    ///     .stream_all_messages()
    ///     .filter(|m| std::future::ready(m.kind == MessageKind::Application));
    /// let worker = bob.start_worker();
    ///
    /// let dm = alice.conversations().find_or_create_dm(&bob_inbox).await?;
    /// dm.send_text("are you there?").await?;
    /// let first = tokio::time::timeout(Duration::from_secs(10), texts.next())
    ///     .await
    ///     .expect("it arrives")
    ///     .expect("the stream is open");
    /// assert_eq!(first.text().as_deref(), Some("are you there?"));
    ///
    /// // One conversation's messages only.
    /// let mut from_alice = bob
    ///     .conversations()
    ///     .get_dm_by_inbox_id(&alice_inbox)?
    ///     .expect("bob joined the DM")
    ///     .stream();
    /// dm.send_text("ok, later").await?;
    /// let next = tokio::time::timeout(Duration::from_secs(10), from_alice.next())
    ///     .await
    ///     .expect("it arrives")
    ///     .expect("the stream is open");
    /// assert_eq!(next.text().as_deref(), Some("ok, later"));
    /// worker.stop().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_all_messages(&self) -> EventStream<Message> {
        self.client.stream_messages()
    }
}

impl Conversation {
    fn from_handle(group: Group) -> Result<Conversation> {
        Ok(match group.info()?.kind {
            ConversationKind::Dm => Conversation::Dm(Dm { group }),
            _ => Conversation::Group(group),
        })
    }

    /// The group underneath (for a DM: its primary group).
    fn handle(&self) -> &Group {
        match self {
            Conversation::Group(g) => g,
            Conversation::Dm(d) => &d.group,
        }
    }

    /// The conversation's id.
    pub fn id(&self) -> ConversationId {
        self.handle().conversation_id()
    }

    /// Whether this installation can send (restored history is read-only until this
    /// installation is added again).
    pub fn is_active(&self) -> Result<bool> {
        self.handle().is_active()
    }

    /// Turns on disappearing messages for every member (see
    /// [`Group::update_message_disappearing_settings`]).
    pub async fn update_message_disappearing_settings(
        &self,
        settings: crate::DisappearingSettings,
    ) -> Result<()> {
        self.handle()
            .update_message_disappearing_settings(settings)
            .await
    }

    /// Turns disappearing messages off for every member.
    pub async fn remove_message_disappearing_settings(&self) -> Result<()> {
        self.handle().remove_message_disappearing_settings().await
    }

    /// The disappearing-messages setting (`None`: off).
    pub fn message_disappearing_settings(&self) -> Result<Option<crate::DisappearingSettings>> {
        self.handle().message_disappearing_settings()
    }

    /// Whether messages sent here now disappear.
    pub fn is_message_disappearing_enabled(&self) -> Result<bool> {
        self.handle().is_message_disappearing_enabled()
    }

    /// Sends any content; returns the message's id.
    pub async fn send(&self, content: Envelope) -> Result<MessageId> {
        Ok(self.handle().send(content).await?.into())
    }

    /// Sends a text message; returns its id.
    pub async fn send_text(&self, text: &str) -> Result<MessageId> {
        Ok(self.handle().send_text(text).await?.into())
    }

    /// Encrypts, stores and queues a message without waiting for the node (it shows as
    /// unpublished); [`publish_messages`](Self::publish_messages), the next send or the next
    /// sync publishes it, in the order queued. Returns its id.
    pub async fn send_optimistic(&self, content: Envelope) -> Result<MessageId> {
        Ok(self.handle().send_optimistic(content).await?.into())
    }

    /// [`send_optimistic`](Self::send_optimistic) of a text message.
    pub async fn send_text_optimistic(&self, text: &str) -> Result<MessageId> {
        Ok(self.handle().send_text_optimistic(text).await?.into())
    }

    /// Publishes the messages still waiting for the node, oldest first; returns how many.
    pub async fn publish_messages(&self) -> Result<u64> {
        self.handle().publish_messages().await
    }

    /// Stored messages, oldest first.
    pub fn messages(&self, query: &MessageQuery) -> Result<Vec<Message>> {
        self.handle().messages(query)
    }

    /// Fetches and applies what the node has for this conversation.
    pub async fn sync(&self) -> Result<u64> {
        self.handle().sync().await
    }

    /// The members: inboxes and their installations.
    pub fn members(&self) -> Result<Vec<Member>> {
        self.handle().members()
    }

    /// This installation's consent for the conversation.
    pub fn consent_state(&self) -> Result<ConsentState> {
        self.handle().consent_state()
    }

    /// Records a consent decision for the conversation (it reaches this inbox's other
    /// installations).
    pub async fn update_consent_state(&self, state: ConsentState) -> Result<()> {
        self.handle().update_consent_state(state).await
    }

    /// New messages of this conversation.
    pub fn stream(&self) -> EventStream<Message> {
        self.handle().stream()
    }
}

impl Dm {
    /// The other inbox.
    pub fn peer_inbox_id(&self) -> Result<InboxId> {
        let info = self.group.info()?;
        info.dm_peer_inbox_id
            .as_deref()
            .map(InboxId::trusted)
            .ok_or_else(|| Error::InvalidArgument("a DM without a peer".into()))
    }

    /// The conversation's id.
    pub fn id(&self) -> ConversationId {
        self.group.conversation_id()
    }

    /// See [`Conversation::is_active`].
    pub fn is_active(&self) -> Result<bool> {
        self.group.is_active()
    }

    /// Sends any content; returns the message's id.
    pub async fn send(&self, content: Envelope) -> Result<MessageId> {
        Ok(self.group.send(content).await?.into())
    }

    /// Sends a text message; returns its id.
    pub async fn send_text(&self, text: &str) -> Result<MessageId> {
        Ok(self.group.send_text(text).await?.into())
    }

    /// See [`Conversation::send_optimistic`].
    pub async fn send_optimistic(&self, content: Envelope) -> Result<MessageId> {
        Ok(self.group.send_optimistic(content).await?.into())
    }

    /// See [`Conversation::send_text_optimistic`].
    pub async fn send_text_optimistic(&self, text: &str) -> Result<MessageId> {
        Ok(self.group.send_text_optimistic(text).await?.into())
    }

    /// See [`Conversation::publish_messages`].
    pub async fn publish_messages(&self) -> Result<u64> {
        self.group.publish_messages().await
    }

    /// Stored messages of every group stitched into this DM, oldest first.
    pub fn messages(&self, query: &MessageQuery) -> Result<Vec<Message>> {
        self.group.messages(query)
    }

    /// Fetches and applies what the node has for this DM.
    pub async fn sync(&self) -> Result<u64> {
        self.group.sync().await
    }

    /// The two inboxes and their installations.
    pub fn members(&self) -> Result<Vec<Member>> {
        self.group.members()
    }

    /// This installation's consent for the DM.
    pub fn consent_state(&self) -> Result<ConsentState> {
        self.group.consent_state()
    }

    /// Records a consent decision for the DM.
    pub async fn update_consent_state(&self, state: ConsentState) -> Result<()> {
        self.group.update_consent_state(state).await
    }

    /// New messages of this DM.
    pub fn stream(&self) -> EventStream<Message> {
        self.group.stream()
    }
}

impl Group {
    /// The conversation's id, typed.
    pub fn conversation_id(&self) -> ConversationId {
        ConversationId::from(self.id.clone())
    }

    /// The group's name.
    pub fn name(&self) -> Result<String> {
        Ok(self.info()?.name)
    }

    /// The group's description.
    pub fn description(&self) -> Result<String> {
        Ok(self.info()?.description)
    }

    /// This installation's consent for the conversation.
    pub fn consent_state(&self) -> Result<ConsentState> {
        let info = self.info()?;
        self.client.conversation_consent(&info)
    }

    /// Records a consent decision for the conversation.
    pub async fn update_consent_state(&self, state: ConsentState) -> Result<()> {
        self.client
            .set_consent(ConsentEntity::Conversation, &hex::encode(&self.id), state)
            .await
    }

    /// New messages of this conversation (for a DM: of every group stitched into it).
    pub fn stream(&self) -> EventStream<Message> {
        let me = self.id.clone();
        let client = self.client.clone();
        self.client.stream_of(move |e| match e {
            crate::Event::Message(m) if m.conversation_id == me => Some(m),
            crate::Event::Message(m) => {
                // A DM's other groups carry its messages too.
                let same_dm = client
                    .conversation(&m.conversation_id)
                    .is_ok_and(|g| g.id == me);
                same_dm.then_some(m)
            }
            _ => None,
        })
    }

    /// Whether this installation's membership is restored history (not yet re-added).
    pub fn is_restored(&self) -> Result<bool> {
        Ok(self.info()?.membership == Membership::Restored)
    }
}
