//! [`Client::preferences`]: what a person decided (consent) and the keys their installations
//! share (HMAC keys for push topics), kept the same on every installation of the inbox over
//! the hidden sync group.
//!
//! ```
//! # include!("../doctests/net.rs");
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> ferry_sdk::Result<()> {
//! # let net = Net::start();
//! # let (client, spammer) = (net.client("alice").await?, net.client("spammer").await?);
//! # let spammer = spammer.inbox_id().clone();
//! use ferry_sdk::{ConsentEntity, ConsentState, ConsentUpdate};
//!
//! let preferences = client.preferences();
//! preferences
//!     .set_consent_states(&[ConsentUpdate {
//!         entity_type: ConsentEntity::Inbox,
//!         entity: spammer.to_string(),
//!         state: ConsentState::Denied,
//!     }])
//!     .await?;
//! assert_eq!(
//!     preferences.get_consent_state(ConsentEntity::Inbox, &spammer.to_string())?,
//!     ConsentState::Denied
//! );
//! assert!(preferences
//!     .consent_list()?
//!     .iter()
//!     .any(|r| r.entity == spammer.as_str() && r.state == ConsentState::Denied));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use ferry_store::{ConsentEntity, ConsentRecord, ConsentState};

use crate::client::{Client, EventStream, HmacKey, InboxInfo};
use crate::{InboxId, Result};

/// One consent decision to record (see [`Preferences::set_consent_states`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUpdate {
    /// What the decision is about: a conversation (hex id), an inbox, an address.
    pub entity_type: ConsentEntity,
    /// The conversation id (hex), inbox id or address.
    pub entity: String,
    /// Allowed, denied or unknown.
    pub state: ConsentState,
}

/// A preference that changed (see [`Preferences::stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreferenceEvent {
    /// A consent decision, made here or on another installation of this inbox.
    Consent(ConsentRecord),
    /// The inbox's HMAC secret changed: fetch [`Preferences::hmac_keys`] again.
    HmacKeyChanged {
        /// The new secret's revision.
        revision: u64,
    },
}

/// [`Client::preferences`]: consent and HMAC keys.
#[derive(Clone)]
pub struct Preferences {
    client: Client,
}

impl Client {
    /// Consent decisions and HMAC keys, shared by this inbox's installations.
    pub fn preferences(&self) -> Preferences {
        Preferences {
            client: self.clone(),
        }
    }
}

impl Preferences {
    /// Records consent decisions now (each wins over older ones, also from archives) and
    /// sends them to this inbox's other installations.
    pub async fn set_consent_states(&self, updates: &[ConsentUpdate]) -> Result<()> {
        for u in updates {
            self.client
                .set_consent(u.entity_type, &u.entity, u.state)
                .await?;
        }
        Ok(())
    }

    /// The consent state of one entity (unknown when nothing was decided).
    pub fn get_consent_state(
        &self,
        entity_type: ConsentEntity,
        entity: &str,
    ) -> Result<ConsentState> {
        self.client.consent(entity_type, entity)
    }

    /// Every consent decision, with when it was made.
    pub fn consent_list(&self) -> Result<Vec<ConsentRecord>> {
        self.client.consent_list()
    }

    /// Per-conversation HMAC keys (hex, by conversation id in hex) for the previous, current
    /// and next 30-day period: the same on every installation of the inbox.
    pub async fn hmac_keys(&self) -> Result<BTreeMap<String, Vec<HmacKey>>> {
        self.client.hmac_keys().await
    }

    /// The inbox's state in its verified identity log: its installations and the revoked
    /// ones (this inbox's when `inbox` is `None`).
    pub async fn fetch_inbox_state(&self, inbox: Option<&InboxId>) -> Result<InboxInfo> {
        let id = match inbox {
            Some(i) => i.to_string(),
            None => self.client.inbox_id().to_string(),
        };
        self.client.inbox_info(&id).await
    }

    /// Sends what waits in the preference outbox and applies what other installations sent
    /// (syncs the sync groups); returns how many sync-group messages were applied.
    pub async fn sync(&self) -> Result<u64> {
        self.client.flush_preference_outbox().await?;
        self.client
            .device_sync()
            .sync_all_device_sync_groups()
            .await
    }

    /// Consent changes, made here or on another installation of this inbox.
    pub fn stream_consent(&self) -> EventStream<ConsentRecord> {
        self.client.stream_consent()
    }

    /// Every preference change: consent decisions and new HMAC keys.
    pub fn stream(&self) -> EventStream<PreferenceEvent> {
        self.client.stream_of(|e| match e {
            crate::Event::Consent(c) => Some(PreferenceEvent::Consent(c)),
            crate::Event::HmacKeyChanged { revision } => {
                Some(PreferenceEvent::HmacKeyChanged { revision })
            }
            _ => None,
        })
    }
}
