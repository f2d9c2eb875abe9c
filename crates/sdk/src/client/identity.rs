//! Identity logs, verified here: the node's word is never taken for who belongs to an inbox.

use std::collections::HashMap;

use ferry_identity::InboxState;
use ferry_mls::{MlsGroup, Provider};
use ferry_transport::Transport;

use super::{parse_credential, Client};
use crate::{Error, Result};

/// An inbox as its verified log describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxInfo {
    pub inbox_id: String,
    /// Installations in the inbox now (hex of their 32-byte ids).
    pub installations: Vec<String>,
    /// Installations revoked from it.
    pub revoked: Vec<String>,
}

/// Fetches `inbox`'s log and verifies it from its first entry; `None` when the node has none.
pub(crate) fn fetch_verified(transport: &dyn Transport, inbox: &str) -> Result<Option<InboxState>> {
    let logs = transport.identity_logs(&[inbox.to_string()])?;
    verify_logs(logs).map(|mut m| m.remove(inbox))
}

fn verify_logs(
    logs: Vec<(String, Vec<ferry_proto::identity::IdentityUpdate>)>,
) -> Result<HashMap<String, InboxState>> {
    let mut out = HashMap::new();
    for (inbox, updates) in logs {
        if updates.is_empty() {
            continue;
        }
        let state = InboxState::replay(&inbox, &updates).map_err(|e| Error::Identity {
            inbox: inbox.clone(),
            source: e,
        })?;
        out.insert(inbox, state);
    }
    Ok(out)
}

impl Client {
    /// The verified states of `inboxes`, fetched from the node now (and cached). A state that
    /// would go backwards (a node hiding entries it served before) keeps the cached one.
    pub(crate) fn refresh_inboxes(
        &self,
        inboxes: &[String],
    ) -> Result<HashMap<String, InboxState>> {
        let mut wanted: Vec<String> = inboxes.to_vec();
        wanted.sort();
        wanted.dedup();
        let fresh = verify_logs(self.inner.transport.identity_logs(&wanted)?)?;
        let mut cache = self.inner.inboxes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::new();
        for inbox in wanted {
            let state = match (fresh.get(&inbox), cache.get(&inbox)) {
                (Some(f), Some(c)) if f.sequence < c.sequence => c.clone(),
                (Some(f), _) => f.clone(),
                (None, Some(c)) => c.clone(),
                (None, None) => continue,
            };
            cache.insert(inbox.clone(), state.clone());
            out.insert(inbox, state);
        }
        Ok(out)
    }

    /// Whether `installation` is in `inbox` now, asking the node only when the cache does not
    /// already say yes.
    fn installation_is_active(&self, inbox: &str, installation: &[u8; 32]) -> Result<bool> {
        if let Some(s) = self
            .inner
            .inboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(inbox)
        {
            if s.is_active(installation) {
                return Ok(true);
            }
        }
        Ok(self
            .refresh_inboxes(&[inbox.to_string()])?
            .get(inbox)
            .is_some_and(|s| s.is_active(installation)))
    }

    /// Checks one MLS leaf: its credential names an installation whose key is the leaf's
    /// signature key and which its inbox's log holds (not revoked).
    pub(crate) fn verify_leaf(
        &self,
        credential: &[u8],
        signature_key: &[u8],
    ) -> Result<(String, [u8; 32])> {
        let (inbox, installation) = parse_credential(credential)
            .ok_or_else(|| Error::InvalidMember("malformed credential".into()))?;
        if signature_key != installation {
            return Err(Error::InvalidMember(format!(
                "installation {} signs with another key",
                hex::encode(installation)
            )));
        }
        if !self.installation_is_active(&inbox, &installation)? {
            return Err(Error::InvalidMember(format!(
                "installation {} is not in inbox {inbox}'s identity log",
                hex::encode(installation)
            )));
        }
        Ok((inbox, installation))
    }

    /// Checks every leaf of a group being joined: each must be an installation its inbox's
    /// log holds. One revoked since it was added passes here (its removal commit may not have
    /// come yet, and refusing the whole group for it would strand this installation); the
    /// member checks remove it.
    pub(crate) fn verify_group(&self, group: &MlsGroup) -> Result<()> {
        for (cred, key) in ferry_mls::member_keys(group) {
            let (inbox, installation) = parse_credential(&cred)
                .ok_or_else(|| Error::InvalidMember("malformed credential".into()))?;
            if key != installation {
                return Err(Error::InvalidMember(format!(
                    "installation {} signs with another key",
                    hex::encode(installation)
                )));
            }
            let known = |s: &InboxState| s.installations.contains_key(&installation);
            let cached = self
                .inner
                .inboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&inbox)
                .is_some_and(known);
            if !cached
                && !self
                    .refresh_inboxes(std::slice::from_ref(&inbox))?
                    .get(&inbox)
                    .is_some_and(known)
            {
                return Err(Error::InvalidMember(format!(
                    "installation {} was never in inbox {inbox}'s identity log",
                    hex::encode(installation)
                )));
            }
        }
        Ok(())
    }

    /// Validates a key package fetched for `installation` of `inbox`.
    pub(crate) fn verify_key_package(
        &self,
        provider: &Provider<'_>,
        inbox: &str,
        installation: &[u8; 32],
        key_package: &[u8],
    ) -> Result<()> {
        let (cred, key) = ferry_mls::key_package_identity(provider, key_package)?;
        let (kp_inbox, kp_inst) = self.verify_leaf(&cred, &key)?;
        if kp_inbox != inbox || &kp_inst != installation {
            return Err(Error::InvalidMember(format!(
                "key package for {} names another installation",
                hex::encode(installation)
            )));
        }
        Ok(())
    }

    /// What the node's log (verified here) says of `inbox`.
    pub fn inbox_info(&self, inbox: &str) -> Result<InboxInfo> {
        let state = self
            .refresh_inboxes(&[inbox.to_string()])?
            .remove(inbox)
            .ok_or_else(|| Error::UnknownInbox(inbox.to_string()))?;
        let (active, revoked): (Vec<_>, Vec<_>) = state
            .installations
            .iter()
            .partition(|(_, s)| s.revoked_at.is_none());
        Ok(InboxInfo {
            inbox_id: state.inbox_id.clone(),
            installations: active.into_iter().map(|(k, _)| hex::encode(k)).collect(),
            revoked: revoked.into_iter().map(|(k, _)| hex::encode(k)).collect(),
        })
    }

    /// Revokes one of this inbox's installations (signed with the account key). Conversations
    /// drop it at their next member check; it can no longer decrypt anything sent after that.
    pub fn revoke_installation(
        &self,
        account_key: &[u8; 32],
        installation_id: &[u8; 32],
    ) -> Result<()> {
        let account = ferry_identity::Account::new(ferry_identity::KeyPair::from_seed(account_key));
        if account.inbox_id() != self.inner.inbox_id {
            return Err(Error::InvalidArgument(
                "that account key does not control this inbox".into(),
            ));
        }
        for _ in 0..5 {
            let state = fetch_verified(self.inner.transport.as_ref(), &self.inner.inbox_id)?
                .ok_or_else(|| Error::UnknownInbox(self.inner.inbox_id.clone()))?;
            if !state.is_active(installation_id) {
                return Err(Error::InvalidArgument(format!(
                    "installation {} is not active in this inbox",
                    hex::encode(installation_id)
                )));
            }
            let update = account.revoke_installation(&state, installation_id, crate::now_ns());
            match self.inner.transport.publish_identity_update(update) {
                Ok(_) => {
                    self.refresh_inboxes(std::slice::from_ref(&self.inner.inbox_id))?;
                    // A revoked installation leaves every sync group at once, then the inbox's HMAC
                    // secret rotates: the new one goes only to the installations that remain.
                    self.rotate_after_revocation()?;
                    return Ok(());
                }
                Err(ferry_transport::TransportError::IdentityConflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::InvalidArgument(
            "identity log kept changing; try again".into(),
        ))
    }
}
