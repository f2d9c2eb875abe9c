//! Identity logs, verified here: the node's word is never taken for who belongs to an inbox.

use std::collections::{HashMap, HashSet};

use ferry_identity::InboxState;
use ferry_mls::{MlsGroup, Provider};
use ferry_store::DeviceSyncFlag;
use ferry_transport::Transport;

use super::{parse_credential, Client};
use crate::{Error, Result};

/// An inbox as its verified log describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxInfo {
    /// The inbox.
    pub inbox_id: crate::InboxId,
    /// Installations in the inbox now.
    pub installations: Vec<crate::InstallationId>,
    /// Installations revoked from it.
    pub revoked: Vec<crate::InstallationId>,
}

/// Fetches `inbox`'s log and verifies it from its first entry; `None` when the node has none.
pub(crate) async fn fetch_verified(
    transport: &dyn Transport,
    inbox: &str,
) -> Result<Option<InboxState>> {
    let logs = transport.identity_logs(&[inbox.to_string()]).await?;
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
    pub(crate) async fn refresh_inboxes(
        &self,
        inboxes: &[String],
    ) -> Result<HashMap<String, InboxState>> {
        let mut wanted: Vec<String> = inboxes.to_vec();
        wanted.sort();
        wanted.dedup();
        let fresh = verify_logs(self.inner.transport.identity_logs(&wanted).await?)?;
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

    /// Whether the cache holds `inbox`'s state and `known` says yes of it.
    fn cached(&self, inbox: &str, known: impl Fn(&InboxState) -> bool) -> bool {
        self.inner
            .inboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(inbox)
            .is_some_and(known)
    }

    /// Checks one MLS leaf from the cache (for use inside a store transaction, where the
    /// node cannot be asked): its credential names an installation whose key is the leaf's
    /// signature key and which its inbox's log holds (not revoked). When the cache does not
    /// say yes and `refreshed` does not hold the inbox, fails with [`Error::IdentityMiss`]:
    /// the caller refreshes that inbox ([`Client::with_identities`]) and tries again.
    pub(crate) fn verify_leaf_cached(
        &self,
        credential: &[u8],
        signature_key: &[u8],
        refreshed: &HashSet<String>,
    ) -> Result<(String, [u8; 32])> {
        let (inbox, installation) = parse_credential(credential)
            .ok_or_else(|| Error::InvalidMember("malformed credential".into()))?;
        if signature_key != installation {
            return Err(Error::InvalidMember(format!(
                "installation {} signs with another key",
                hex::encode(installation)
            )));
        }
        if !self.cached(&inbox, |s| s.is_active(&installation)) {
            if !refreshed.contains(&inbox) {
                return Err(Error::IdentityMiss(inbox));
            }
            return Err(Error::InvalidMember(format!(
                "installation {} is not in inbox {inbox}'s identity log",
                hex::encode(installation)
            )));
        }
        Ok((inbox, installation))
    }

    /// Notes how many installations this inbox's log has revoked. One revoked since this
    /// installation last looked (by another installation, perhaps one too new to know the
    /// inbox's current HMAC revision) has the secret rotated here too: the highest revision
    /// among the remaining installations wins, and each of theirs is newer than anything the
    /// revoked one saw. `rotated` says this installation has just rotated for them itself.
    pub(crate) fn note_revocations(&self, own: &InboxState, rotated: bool) -> Result<()> {
        // A revoked installation rotates nothing: its secret must not reach the others.
        if !own.is_active(&self.inner.installation_id) {
            return Ok(());
        }
        let revoked = own
            .installations
            .values()
            .filter(|s| s.revoked_at.is_some())
            .count();
        let store = self.store();
        let seen: Option<usize> = store
            .setting(super::S_REVOCATIONS_SEEN)?
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok());
        if !rotated && seen.is_some_and(|n| revoked > n) {
            store.set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, true)?;
        }
        store.set_setting(super::S_REVOCATIONS_SEEN, revoked.to_string().as_bytes())?;
        Ok(())
    }

    /// Checks a leaf that a commit adds, from the cache: as
    /// [`verify_leaf_cached`](Self::verify_leaf_cached), except that an installation revoked
    /// since (its inbox's log holds it, revoked) passes, with `Ok(true)`. The commit may
    /// predate the revocation, and refusing a commit the node has ordered would split the
    /// group: members that applied it before the revocation went on without those applying it
    /// after. The caller has the member checks remove the installation at once instead.
    pub(crate) fn verify_added_leaf_cached(
        &self,
        credential: &[u8],
        signature_key: &[u8],
        refreshed: &HashSet<String>,
    ) -> Result<bool> {
        match self.verify_leaf_cached(credential, signature_key, refreshed) {
            Ok(_) => Ok(false),
            Err(Error::InvalidMember(reason)) => {
                let (inbox, installation) = parse_credential(credential)
                    .ok_or_else(|| Error::InvalidMember("malformed credential".into()))?;
                if signature_key == installation
                    && self.cached(&inbox, |s| s.installations.contains_key(&installation))
                {
                    Ok(true)
                } else {
                    Err(Error::InvalidMember(reason))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Checks every leaf of a group being joined, from the cache (see
    /// [`verify_leaf_cached`](Self::verify_leaf_cached)): each must be an installation its
    /// inbox's log holds. One revoked since it was added passes here (its removal commit may
    /// not have come yet, and refusing the whole group for it would strand this
    /// installation); the member checks remove it.
    pub(crate) fn verify_group_cached(
        &self,
        group: &MlsGroup,
        refreshed: &HashSet<String>,
    ) -> Result<()> {
        for (cred, key) in ferry_mls::member_keys(group) {
            let (inbox, installation) = parse_credential(&cred)
                .ok_or_else(|| Error::InvalidMember("malformed credential".into()))?;
            if key != installation {
                return Err(Error::InvalidMember(format!(
                    "installation {} signs with another key",
                    hex::encode(installation)
                )));
            }
            if !self.cached(&inbox, |s| s.installations.contains_key(&installation)) {
                if !refreshed.contains(&inbox) {
                    return Err(Error::IdentityMiss(inbox));
                }
                return Err(Error::InvalidMember(format!(
                    "installation {} was never in inbox {inbox}'s identity log",
                    hex::encode(installation)
                )));
            }
        }
        Ok(())
    }

    /// Runs `step` (synchronous: a store transaction that verifies leaves from the cache),
    /// refreshing each inbox it misses from the node and running it again, until it needs
    /// nothing more. Each inbox is fetched at most once per call.
    pub(crate) async fn with_identities<T>(
        &self,
        mut step: impl FnMut(&HashSet<String>) -> Result<T>,
    ) -> Result<T> {
        let mut refreshed = HashSet::new();
        loop {
            match step(&refreshed) {
                Err(Error::IdentityMiss(inbox)) if !refreshed.contains(&inbox) => {
                    self.refresh_inboxes(std::slice::from_ref(&inbox)).await?;
                    refreshed.insert(inbox);
                }
                other => return other,
            }
        }
    }

    /// [`verify_leaf_cached`](Self::verify_leaf_cached), asking the node when the cache
    /// does not say yes.
    pub(crate) async fn verify_leaf(
        &self,
        credential: &[u8],
        signature_key: &[u8],
    ) -> Result<(String, [u8; 32])> {
        self.with_identities(|refreshed| {
            self.verify_leaf_cached(credential, signature_key, refreshed)
        })
        .await
    }

    /// Validates a key package fetched for `installation` of `inbox`.
    pub(crate) async fn verify_key_package(
        &self,
        inbox: &str,
        installation: &[u8; 32],
        key_package: &[u8],
    ) -> Result<()> {
        let (cred, key) = {
            let store = self.store();
            ferry_mls::key_package_identity(&Provider::new(store.conn()), key_package)?
        };
        let (kp_inbox, kp_inst) = self.verify_leaf(&cred, &key).await?;
        if kp_inbox != inbox || &kp_inst != installation {
            return Err(Error::InvalidMember(format!(
                "key package for {} names another installation",
                hex::encode(installation)
            )));
        }
        Ok(())
    }

    /// What the node's log (verified here) says of `inbox`.
    pub async fn inbox_info(&self, inbox: &str) -> Result<InboxInfo> {
        let state = self
            .refresh_inboxes(&[inbox.to_string()])
            .await?
            .remove(inbox)
            .ok_or_else(|| Error::UnknownInbox(inbox.to_string()))?;
        let (active, revoked): (Vec<_>, Vec<_>) = state
            .installations
            .iter()
            .partition(|(_, s)| s.revoked_at.is_none());
        Ok(InboxInfo {
            inbox_id: crate::InboxId::trusted(&state.inbox_id),
            installations: active.into_iter().map(|(k, _)| (*k).into()).collect(),
            revoked: revoked.into_iter().map(|(k, _)| (*k).into()).collect(),
        })
    }

    /// Revokes one of this inbox's installations (signed with the account key). Conversations
    /// drop it at their next member check; it can no longer decrypt anything sent after that.
    pub async fn revoke_installation(
        &self,
        account: std::sync::Arc<dyn ferry_identity::AccountSigner>,
        installation_id: &[u8; 32],
    ) -> Result<()> {
        let account = ferry_identity::Account::with_signer(account);
        if account.inbox_id() != self.inner.inbox_id {
            return Err(Error::InvalidArgument(
                "that account key does not control this inbox".into(),
            ));
        }
        for _ in 0..5 {
            let state = fetch_verified(self.inner.transport.as_ref(), &self.inner.inbox_id)
                .await?
                .ok_or_else(|| Error::UnknownInbox(self.inner.inbox_id.clone()))?;
            if !state.is_active(installation_id) {
                return Err(Error::InvalidArgument(format!(
                    "installation {} is not active in this inbox",
                    hex::encode(installation_id)
                )));
            }
            let update = account.revoke_installation(&state, installation_id, crate::now_ns())?;
            // Raised before publishing: a node that stores the revocation but whose answer is
            // lost must still get the secret rotated (the next sync does it); a rotation
            // without a revocation only moves the secret on.
            self.store()
                .set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, true)?;
            match self.inner.transport.publish_identity_update(update).await {
                Ok(_) => {
                    let states = self
                        .refresh_inboxes(std::slice::from_ref(&self.inner.inbox_id))
                        .await?;
                    if let Some(own) = states.get(self.inner.inbox_id.as_str()) {
                        self.note_revocations(own, true)?;
                    }
                    // A revoked installation leaves every sync group at once, then the inbox's HMAC
                    // secret rotates: the new one goes only to the installations that remain.
                    self.rotate_after_revocation().await?;
                    return Ok(());
                }
                Err(ferry_transport::TransportError::IdentityConflict(_)) => continue,
                Err(e @ ferry_transport::TransportError::Rejected { .. }) => {
                    // Refused: nothing was revoked, nothing to rotate.
                    self.store()
                        .set_device_sync_flag(DeviceSyncFlag::HmacRotationPending, false)?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::InvalidArgument(
            "identity log kept changing; try again".into(),
        ))
    }
}
