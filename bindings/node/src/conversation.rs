//! Conversations (groups and DMs) and preferences.

use std::collections::HashMap;

use ferry_sdk::{
    ConsentUpdate, ConversationId, GroupOptions, InboxId, ListConversationsOptions, MessageQuery,
};
use napi::bindgen_prelude::BigInt;
use napi_derive::napi;

use crate::stream::{ConsentStream, ConversationStream, MessageStream, Pump};
use crate::types::*;
use crate::{invalid, Js};

fn inbox(id: &str) -> napi::Result<InboxId> {
    id.parse()
        .map_err(|e: ferry_sdk::InvalidId| invalid(format!("inbox id {id:?}: {e}")))
}

fn inboxes(ids: &[String]) -> napi::Result<Vec<InboxId>> {
    ids.iter().map(|i| inbox(i)).collect()
}

/// Options of a new group.
#[napi(object)]
pub struct CreateGroupOptions {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Disappearing messages from the start.
    pub message_disappearing_settings: Option<MessageDisappearingSettings>,
}

/// Which conversations `list` returns.
#[napi(object)]
pub struct ListOptions {
    /// Only conversations with one of these consent states.
    pub consent_states: Option<Vec<String>>,
    /// Only active (true) or only restored, read-only (false) conversations.
    pub active: Option<bool>,
    pub limit: Option<i64>,
}

fn list_options(o: &Option<ListOptions>) -> napi::Result<ListConversationsOptions> {
    let mut out = ListConversationsOptions::default();
    if let Some(o) = o {
        if let Some(states) = &o.consent_states {
            out.consent_states = states
                .iter()
                .map(|s| consent_state(s))
                .collect::<napi::Result<_>>()?;
        }
        out.active = o.active;
        out.limit = o.limit.map(|l| l.max(0) as usize);
    }
    Ok(out)
}

/// The client's conversations.
#[napi]
pub struct Conversations {
    pub(crate) inner: ferry_sdk::Conversations,
}

#[napi]
impl Conversations {
    /// Creates a group with these inboxes (each with all its installations).
    #[napi]
    pub async fn create_group(
        &self,
        inbox_ids: Vec<String>,
        options: Option<CreateGroupOptions>,
    ) -> napi::Result<Conversation> {
        let members = inboxes(&inbox_ids)?;
        let o = GroupOptions {
            message_disappearing_settings: options
                .as_ref()
                .and_then(|o| o.message_disappearing_settings.as_ref())
                .map(|d| ferry_sdk::DisappearingSettings {
                    from_ns: d.from_ns.get_i64().0,
                    in_ns: d.in_ns.get_i64().0,
                }),
            name: options
                .as_ref()
                .and_then(|o| o.name.clone())
                .unwrap_or_default(),
            description: options
                .as_ref()
                .and_then(|o| o.description.clone())
                .unwrap_or_default(),
        };
        let g = self.inner.create_group(&members, o).await.js()?;
        Ok(Conversation {
            inner: ferry_sdk::Conversation::Group(g),
        })
    }

    /// Creates a DM with this inbox.
    #[napi]
    pub async fn create_dm(&self, inbox_id: String) -> napi::Result<Conversation> {
        let peer = inbox(&inbox_id)?;
        let d = self.inner.create_dm(&peer).await.js()?;
        Ok(Conversation {
            inner: ferry_sdk::Conversation::Dm(d),
        })
    }

    /// The DM with this inbox, created if there is none yet.
    #[napi]
    pub async fn find_or_create_dm(&self, inbox_id: String) -> napi::Result<Conversation> {
        let peer = inbox(&inbox_id)?;
        let d = self.inner.find_or_create_dm(&peer).await.js()?;
        Ok(Conversation {
            inner: ferry_sdk::Conversation::Dm(d),
        })
    }

    /// The conversation with this id (hex), or null.
    #[napi]
    pub fn get_conversation_by_id(&self, id: String) -> napi::Result<Option<Conversation>> {
        let Ok(id) = id.parse::<ConversationId>() else {
            return Ok(None);
        };
        Ok(self
            .inner
            .get_conversation_by_id(&id)
            .js()?
            .map(|c| Conversation { inner: c }))
    }

    /// The DM with this inbox, or null.
    #[napi]
    pub fn get_dm_by_inbox_id(&self, inbox_id: String) -> napi::Result<Option<Conversation>> {
        let peer = inbox(&inbox_id)?;
        Ok(self
            .inner
            .get_dm_by_inbox_id(&peer)
            .js()?
            .map(|d| Conversation {
                inner: ferry_sdk::Conversation::Dm(d),
            }))
    }

    /// Groups and DMs, newest activity first.
    #[napi]
    pub fn list(&self, options: Option<ListOptions>) -> napi::Result<Vec<Conversation>> {
        let o = list_options(&options)?;
        Ok(self
            .inner
            .list(&o)
            .js()?
            .into_iter()
            .map(|c| Conversation { inner: c })
            .collect())
    }

    /// Groups only.
    #[napi]
    pub fn list_groups(&self, options: Option<ListOptions>) -> napi::Result<Vec<Conversation>> {
        let o = list_options(&options)?;
        Ok(self
            .inner
            .list_groups(&o)
            .js()?
            .into_iter()
            .map(|g| Conversation {
                inner: ferry_sdk::Conversation::Group(g),
            })
            .collect())
    }

    /// DMs only.
    #[napi]
    pub fn list_dms(&self, options: Option<ListOptions>) -> napi::Result<Vec<Conversation>> {
        let o = list_options(&options)?;
        Ok(self
            .inner
            .list_dms(&o)
            .js()?
            .into_iter()
            .map(|d| Conversation {
                inner: ferry_sdk::Conversation::Dm(d),
            })
            .collect())
    }

    /// Joins the conversations this installation was added to; resolves with how many.
    #[napi]
    pub async fn sync(&self) -> napi::Result<i64> {
        Ok(self.inner.sync().await.js()? as i64)
    }

    /// Joins new conversations and syncs every one (only those with these consent states,
    /// when given).
    #[napi]
    pub async fn sync_all(&self, consent_states: Option<Vec<String>>) -> napi::Result<SyncSummary> {
        let states = consent_states
            .unwrap_or_default()
            .iter()
            .map(|s| consent_state(s))
            .collect::<napi::Result<Vec<_>>>()?;
        let r = self.inner.sync_all(&states).await.js()?;
        Ok(summary_to_js(&r))
    }

    /// New conversations as they appear.
    #[napi]
    pub fn stream(&self) -> ConversationStream {
        ConversationStream {
            pump: Pump::new(self.inner.stream()),
        }
    }

    /// Every new message of every conversation.
    #[napi]
    pub fn stream_all_messages(&self) -> MessageStream {
        MessageStream {
            pump: Pump::new(self.inner.stream_all_messages()),
        }
    }
}

/// A group or a DM (`kind` says which).
#[napi]
pub struct Conversation {
    pub(crate) inner: ferry_sdk::Conversation,
}

impl Conversation {
    fn group(&self, what: &str) -> napi::Result<&ferry_sdk::Group> {
        match &self.inner {
            ferry_sdk::Conversation::Group(g) => Ok(g),
            ferry_sdk::Conversation::Dm(_) => Err(invalid(format!("{what}: a DM has no {what}"))),
        }
    }
}

#[napi]
impl Conversation {
    /// The conversation id (hex).
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// `group` or `dm`.
    #[napi(getter)]
    pub fn kind(&self) -> String {
        match &self.inner {
            ferry_sdk::Conversation::Group(_) => "group".into(),
            ferry_sdk::Conversation::Dm(_) => "dm".into(),
        }
    }

    /// Whether this installation can send here (false for a conversation restored from an
    /// archive until a member's installation re-adds this one).
    #[napi]
    pub fn is_active(&self) -> napi::Result<bool> {
        self.inner.is_active().js()
    }

    /// Turns on disappearing messages for every member: messages sent at or after `fromNs`
    /// are deleted on every installation `inNs` after they were sent (XMTP's names).
    #[napi]
    pub async fn update_message_disappearing_settings(
        &self,
        from_ns: BigInt,
        in_ns: BigInt,
    ) -> napi::Result<()> {
        self.inner
            .update_message_disappearing_settings(ferry_sdk::DisappearingSettings {
                from_ns: from_ns.get_i64().0,
                in_ns: in_ns.get_i64().0,
            })
            .await
            .js()
    }

    /// Turns disappearing messages off for every member.
    #[napi]
    pub async fn remove_message_disappearing_settings(&self) -> napi::Result<()> {
        self.inner.remove_message_disappearing_settings().await.js()
    }

    /// The disappearing-messages setting, or null when off.
    #[napi]
    pub fn message_disappearing_settings(
        &self,
    ) -> napi::Result<Option<MessageDisappearingSettings>> {
        Ok(self
            .inner
            .message_disappearing_settings()
            .js()?
            .map(|d| MessageDisappearingSettings {
                from_ns: BigInt::from(d.from_ns),
                in_ns: BigInt::from(d.in_ns),
            }))
    }

    /// Whether messages sent here now disappear.
    #[napi]
    pub fn is_message_disappearing_enabled(&self) -> napi::Result<bool> {
        self.inner.is_message_disappearing_enabled().js()
    }

    /// Sends a text; resolves with the message id.
    #[napi]
    pub async fn send_text(&self, text: String) -> napi::Result<String> {
        Ok(self.inner.send_text(&text).await.js()?.to_string())
    }

    /// Sends encoded content; resolves with the message id.
    #[napi]
    pub async fn send(&self, content: EncodedContent) -> napi::Result<String> {
        let env = envelope_from_js(content);
        Ok(self.inner.send(env).await.js()?.to_string())
    }

    /// The messages held here, oldest first.
    #[napi]
    pub fn messages(&self, options: Option<ListMessagesOptions>) -> napi::Result<Vec<Message>> {
        let q = match &options {
            None => MessageQuery::default(),
            Some(o) => MessageQuery {
                sent_after_ns: ns(&o.sent_after_ns),
                sent_before_ns: ns(&o.sent_before_ns),
                limit: o.limit.map(|l| l.max(0) as u64),
            },
        };
        Ok(self
            .inner
            .messages(&q)
            .js()?
            .iter()
            .map(message_to_js)
            .collect())
    }

    /// Fetches and applies what the node holds for this conversation; resolves with how many
    /// messages were processed.
    #[napi]
    pub async fn sync(&self) -> napi::Result<i64> {
        Ok(self.inner.sync().await.js()? as i64)
    }

    /// The members: inboxes and their installations here.
    #[napi]
    pub fn members(&self) -> napi::Result<Vec<GroupMember>> {
        Ok(self
            .inner
            .members()
            .js()?
            .iter()
            .map(member_to_js)
            .collect())
    }

    /// `allowed`, `denied` or `unknown`.
    #[napi]
    pub fn consent_state(&self) -> napi::Result<String> {
        Ok(self.inner.consent_state().js()?.as_str().to_string())
    }

    /// Sets this conversation's consent (it reaches the inbox's other installations).
    #[napi]
    pub async fn update_consent_state(&self, state: String) -> napi::Result<()> {
        let s = consent_state(&state)?;
        self.inner.update_consent_state(s).await.js()
    }

    /// New messages of this conversation.
    #[napi]
    pub fn stream(&self) -> MessageStream {
        MessageStream {
            pump: Pump::new(self.inner.stream()),
        }
    }

    /// A group's name ('' for a DM).
    #[napi(getter)]
    pub fn name(&self) -> napi::Result<String> {
        match &self.inner {
            ferry_sdk::Conversation::Group(g) => g.name().js(),
            ferry_sdk::Conversation::Dm(_) => Ok(String::new()),
        }
    }

    /// A group's description ('' for a DM).
    #[napi(getter)]
    pub fn description(&self) -> napi::Result<String> {
        match &self.inner {
            ferry_sdk::Conversation::Group(g) => g.description().js(),
            ferry_sdk::Conversation::Dm(_) => Ok(String::new()),
        }
    }

    /// A DM's other inbox (null for a group).
    #[napi(getter)]
    pub fn peer_inbox_id(&self) -> napi::Result<Option<String>> {
        match &self.inner {
            ferry_sdk::Conversation::Dm(d) => Ok(Some(d.peer_inbox_id().js()?.to_string())),
            ferry_sdk::Conversation::Group(_) => Ok(None),
        }
    }

    /// Adds these inboxes to the group.
    #[napi]
    pub async fn add_members(&self, inbox_ids: Vec<String>) -> napi::Result<()> {
        let ids = inboxes(&inbox_ids)?;
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        self.group("members")?.add_members(&ids).await.js()
    }

    /// Removes these inboxes from the group.
    #[napi]
    pub async fn remove_members(&self, inbox_ids: Vec<String>) -> napi::Result<()> {
        let ids = inboxes(&inbox_ids)?;
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        self.group("members")?.remove_members(&ids).await.js()
    }

    /// Renames the group.
    #[napi]
    pub async fn update_name(&self, name: String) -> napi::Result<()> {
        self.group("name")?.update_name(&name).await.js()
    }

    /// Changes the group's description.
    #[napi]
    pub async fn update_description(&self, description: String) -> napi::Result<()> {
        self.group("description")?
            .update_description(&description)
            .await
            .js()
    }
}

/// Consent and HMAC keys of the inbox.
#[napi]
pub struct Preferences {
    pub(crate) inner: ferry_sdk::Preferences,
}

#[napi]
impl Preferences {
    /// Sets consent decisions; they reach the inbox's other installations.
    #[napi]
    pub async fn set_consent_states(&self, records: Vec<ConsentInput>) -> napi::Result<()> {
        let updates = records
            .iter()
            .map(|r| {
                Ok(ConsentUpdate {
                    entity_type: consent_entity(&r.entity_type)?,
                    entity: r.entity.clone(),
                    state: consent_state(&r.state)?,
                })
            })
            .collect::<napi::Result<Vec<_>>>()?;
        self.inner.set_consent_states(&updates).await.js()
    }

    /// The consent held for an entity (`unknown` if none).
    #[napi]
    pub fn get_consent_state(&self, entity_type: String, entity: String) -> napi::Result<String> {
        let t = consent_entity(&entity_type)?;
        Ok(self
            .inner
            .get_consent_state(t, &entity)
            .js()?
            .as_str()
            .to_string())
    }

    /// Every consent decision held.
    #[napi]
    pub fn consent_list(&self) -> napi::Result<Vec<ConsentRecord>> {
        Ok(self
            .inner
            .consent_list()
            .js()?
            .iter()
            .map(consent_to_js)
            .collect())
    }

    /// An inbox's state from its verified identity log (this inbox's when none is given).
    #[napi]
    pub async fn fetch_inbox_state(&self, inbox_id: Option<String>) -> napi::Result<InboxState> {
        let id = inbox_id.as_deref().map(inbox).transpose()?;
        let info = self.inner.fetch_inbox_state(id.as_ref()).await.js()?;
        let inst = |v: &[ferry_sdk::InstallationId]| {
            v.iter()
                .map(|i| Installation { id: i.to_string() })
                .collect::<Vec<_>>()
        };
        Ok(InboxState {
            inbox_id: info.inbox_id.to_string(),
            installations: inst(&info.installations),
            revoked_installations: inst(&info.revoked),
        })
    }

    /// Sends this installation's preference changes and applies the other installations'.
    #[napi]
    pub async fn sync(&self) -> napi::Result<i64> {
        Ok(self.inner.sync().await.js()? as i64)
    }

    /// Consent decisions as they change.
    #[napi]
    pub fn stream_consent(&self) -> ConsentStream {
        ConsentStream {
            pump: Pump::new(self.inner.stream_consent()),
        }
    }

    /// The HMAC keys of every conversation (by conversation id), for push notifications.
    #[napi]
    pub async fn get_hmac_keys(&self) -> napi::Result<HashMap<String, Vec<HmacKeyJs>>> {
        let keys = self.inner.hmac_keys().await.js()?;
        let mut out = HashMap::new();
        for (conv, list) in keys {
            let mut v = Vec::new();
            for k in list {
                let bytes = hex::decode(&k.key).map_err(|e| invalid(format!("hmac key: {e}")))?;
                v.push(HmacKeyJs {
                    epoch: BigInt::from(k.epoch),
                    key: bytes.into(),
                });
            }
            out.insert(conv, v);
        }
        Ok(out)
    }
}
