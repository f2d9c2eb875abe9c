//! Bugs the convergence simulation (`tests/simulation/`) found, each as a regression test
//! named after what broke, against a real node and history server on loopback. The known
//! re-add bug of issue 21 has its own test in `restore.rs`
//! (`a_message_sent_in_the_epoch_before_a_re_add_reaches_the_re_added_installation`).

// The simulation's fault injection, for the cases that need one.
#[allow(dead_code)]
#[path = "simulation/faults.rs"]
mod faults;
mod net_common;

use std::sync::Arc;
use std::time::Duration;

use ferry_sdk::blocking::Client;
use ferry_sdk::store::{ConsentEntity, ConsentState};
use ferry_sdk::{AccountKey, GroupOptions, KeyPair};
use net_common::{texts, Net};

fn consent(c: &Client, group: &[u8]) -> ConsentState {
    c.consent(ConsentEntity::Conversation, &hex::encode(group))
        .unwrap()
}

fn installations(c: &Client, group: &[u8]) -> usize {
    c.conversation(group)
        .unwrap()
        .members()
        .unwrap()
        .iter()
        .map(|m| m.installation_ids.len())
        .sum()
}

/// Scenario 6 of the first simulation run: writing in a conversation allows it, but only on
/// the installation that wrote; the inbox's other installations kept "unknown".
#[test]
fn consent_implied_by_sending_reaches_the_inboxs_other_installations() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = bob
        .create_group(&[a1.inbox_id().into()], GroupOptions::default())
        .unwrap();
    a1.sync_all().unwrap();
    a2.sync_all().unwrap();
    assert_eq!(consent(&a2, g.id()), ConsentState::Unknown);
    a1.conversation(g.id()).unwrap().send("hi bob").unwrap();
    assert_eq!(consent(&a1, g.id()), ConsentState::Allowed);
    for _ in 0..2 {
        a1.sync_all().unwrap();
        a2.sync_all().unwrap();
    }
    assert_eq!(consent(&a2, g.id()), ConsentState::Allowed);
}

/// Scenario 31: a new installation without a history server never learned the consent its
/// inbox had decided before it came (only an archive carried it).
#[test]
fn a_new_installation_without_a_history_server_learns_the_inboxs_earlier_consent() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = bob
        .create_group(&[a1.inbox_id().into()], GroupOptions::default())
        .unwrap();
    a1.sync_all().unwrap();
    a1.set_consent(
        ConsentEntity::Conversation,
        &hex::encode(g.id()),
        ConsentState::Allowed,
    )
    .unwrap();
    a1.set_consent(
        ConsentEntity::Inbox,
        bob.inbox_id().as_str(),
        ConsentState::Allowed,
    )
    .unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), false);
    for _ in 0..2 {
        a1.sync_all().unwrap();
        a2.sync_all().unwrap();
    }
    assert_eq!(consent(&a2, g.id()), ConsentState::Allowed);
    assert_eq!(
        a2.consent(ConsentEntity::Inbox, bob.inbox_id().as_str())
            .unwrap(),
        ConsentState::Allowed
    );
}

/// Scenario 238: alice denied a group her own inbox had created; her new installation joined
/// it, took "allowed, because my inbox created it" as a decision dated now, and kept it over
/// the older denial, so the two installations disagreed for good.
#[test]
fn a_denial_made_before_a_new_installation_joined_beats_the_creators_default() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    a1.set_consent(
        ConsentEntity::Conversation,
        &hex::encode(g.id()),
        ConsentState::Denied,
    )
    .unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), false);
    // Bob's member check adds alice's new installation (her own one skips a denied group).
    bob.set_check_intervals(Duration::ZERO, Duration::ZERO)
        .unwrap();
    for _ in 0..3 {
        bob.sync_all().unwrap();
        a1.sync_all().unwrap();
        a2.sync_all().unwrap();
    }
    assert!(a2.conversation(g.id()).unwrap().is_active().unwrap());
    assert_eq!(consent(&a1, g.id()), ConsentState::Denied);
    assert_eq!(consent(&a2, g.id()), ConsentState::Denied);
}

/// Scenario 15: bob applied the commit adding alice's second installation only after alice
/// had revoked it. He refused the commit ("not in its inbox's log") and was stuck in the old
/// epoch for good, reading nothing more of the group.
#[test]
fn a_commit_adding_an_installation_revoked_later_is_applied_by_a_member_who_syncs_after() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let key = key.unwrap();
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), false);
    // a1 adds a2 (a commit bob has not seen), writes, and revokes a2.
    assert_eq!(a1.sync_all().unwrap().installations_added_to, 1);
    assert_eq!(installations(&a1, g.id()), 3);
    g.send("before the revocation").unwrap();
    a1.revoke_installation(Arc::new(KeyPair::from_seed(&key)), a2.installation_id())
        .unwrap();
    // Bob syncs now: he applies the add, reads the message, and removes the revoked
    // installation at once.
    bob.sync_all().unwrap();
    let bg = bob.conversation(g.id()).unwrap();
    assert_eq!(texts(&bg), ["before the revocation"]);
    bob.sync_all().unwrap();
    assert_eq!(installations(&bob, g.id()), 2, "a2's leaf is gone");
    a1.sync_all().unwrap();
    g.send("after").unwrap();
    bob.sync_all().unwrap();
    assert_eq!(texts(&bg), ["before the revocation", "after"]);
}

/// Scenario 232: removing bob's inbox removed the installations the remover knew of when it
/// started; one bob had added meanwhile (the remover lost the epoch race, synced and
/// retried) stayed, and the next member check brought bob's other installations back.
#[test]
fn removing_an_inbox_removes_its_installation_added_while_the_remover_was_behind() {
    let net = Net::new();
    let (alice, _) = net.create("alice", AccountKey::New, false);
    let (b1, key) = net.create("b1", AccountKey::New, false);
    let g = alice
        .create_group(&[b1.inbox_id().into()], GroupOptions::default())
        .unwrap();
    b1.sync_all().unwrap();
    let (_b2, _) = net.create("b2", AccountKey::Existing(key.unwrap()), false);
    // b1 adds b2 (alice has not seen it).
    assert_eq!(b1.sync_all().unwrap().installations_added_to, 1);
    assert_eq!(installations(&alice, g.id()), 2, "alice is behind");
    g.remove_members(&[b1.inbox_id().to_string()]).unwrap();
    assert_eq!(
        installations(&alice, g.id()),
        1,
        "both of bob's leaves are gone"
    );
    alice
        .set_check_intervals(Duration::ZERO, Duration::ZERO)
        .unwrap();
    alice.sync_all().unwrap();
    assert_eq!(installations(&alice, g.id()), 1, "and they stay gone");
}

/// Scenario 343: bob, offline, was removed and added back. Coming online he joined from the
/// first welcome, read the channel to its end (his removal, then commits his old state could
/// not apply), then joined from the second welcome, whose state resumed from that cursor:
/// the commits after the re-add were skipped and he was stuck in the re-add's epoch.
#[test]
fn an_installation_removed_and_added_back_while_offline_catches_up_with_later_commits() {
    let net = Net::new();
    let (alice, _) = net.create("alice", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let (carol, _) = net.create("carol", AccountKey::New, false);
    let g = alice
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let bob_id = bob.inbox_id().to_string();
    g.remove_members(std::slice::from_ref(&bob_id)).unwrap();
    g.add_members(&[bob_id]).unwrap();
    g.add_members(&[carol.inbox_id().into()]).unwrap();
    g.send("after the re-add").unwrap();
    bob.sync_all().unwrap();
    let bg = bob.conversation(g.id()).unwrap();
    assert!(bg.is_active().unwrap());
    assert_eq!(bg.epoch().unwrap(), g.epoch().unwrap());
    assert_eq!(texts(&bg), ["after the re-add"]);
}

/// Scenario 78 (a CI-size run after the fixes above): alice's second installation wrote a
/// consent decision into the sync group it had made itself, before it joined the inbox's older
/// one; it then settled on the older group and left its own, and her first installation, never
/// in that younger group, never learned the decision.
#[test]
fn consent_sent_into_a_sync_group_later_left_reaches_the_inboxs_other_installations() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    a1.sync_all().unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.unwrap()), false);
    a2.sync_all().unwrap();
    // a1 adds a2 to the inbox's (older) sync group; a2 has not joined it yet when it decides.
    a1.sync_all().unwrap();
    a2.set_consent(
        ConsentEntity::Inbox,
        bob.inbox_id().as_str(),
        ConsentState::Denied,
    )
    .unwrap();
    for _ in 0..3 {
        a2.sync_all().unwrap();
        a1.sync_all().unwrap();
    }
    assert_eq!(
        a1.consent(ConsentEntity::Inbox, bob.inbox_id().as_str())
            .unwrap(),
        ConsentState::Denied
    );
}

/// Scenario 5077 (an exploratory run): the node stored a revocation but its answer was lost,
/// so `revoke_installation` failed and the HMAC secret was never rotated; the revoked
/// installation kept the secret the inbox's other installations went on using.
#[test]
fn a_revocation_whose_answer_was_lost_still_rotates_the_hmac_secret() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let key = key.unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), false);
    for _ in 0..2 {
        a1.sync_all().unwrap();
        a2.sync_all().unwrap();
    }
    let before = a1.hmac_key_revision().unwrap();
    assert_eq!(before, a2.hmac_key_revision().unwrap());
    a1.close();
    drop(a1);
    let counters = Arc::new(faults::Counters::default());
    let node: Arc<dyn ferry_transport::Transport> = Arc::new(
        ferry_sdk::blocking::block_on(async {
            ferry_transport::GrpcTransport::connect(&net.node.url())
        })
        .unwrap(),
    );
    let faulty = Arc::new(faults::FaultyTransport::new(node, counters));
    let a1 = Client::open_with(&net.dir.path().join("a1"), faulty.clone()).unwrap();
    // The log is read first (delayed a little), then the revocation is stored and its
    // answer lost.
    faulty.arm(faults::Fault::Delay(1));
    faulty.arm(faults::Fault::DropResponse);
    let err = a1
        .revoke_installation(Arc::new(KeyPair::from_seed(&key)), a2.installation_id())
        .unwrap_err();
    assert!(err.to_string().contains("response lost"), "{err}");
    assert_eq!(
        a1.inbox_info(a1.inbox_id().as_str()).unwrap().revoked.len(),
        1,
        "the node has the revocation"
    );
    a1.sync_all().unwrap();
    let after = a1.hmac_key_revision().unwrap();
    assert!(after > before, "rotated: {before:?} -> {after:?}");
    let _ = a2.sync_all();
    assert_eq!(
        a2.hmac_key_revision().unwrap(),
        before,
        "a2 never gets the new one"
    );
}

/// Scenario 24 (after the revision check joined invariant 4): a brand-new installation, holding
/// no secret yet, revoked its inbox's older installation and "rotated" to revision 0, the
/// revision the revoked one's secret already had, so the two secrets tied on revision.
#[test]
fn a_new_installation_revoking_another_rotates_past_the_revoked_ones_secret() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let key = key.unwrap();
    a1.sync_all().unwrap();
    let old = a1.hmac_key_revision().unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), false);
    a2.revoke_installation(Arc::new(KeyPair::from_seed(&key)), a1.installation_id())
        .unwrap();
    a2.sync_all().unwrap();
    let _ = a1.sync_all();
    let new = a2.hmac_key_revision().unwrap();
    assert!(new > old, "{old:?} -> {new:?}");
    assert_eq!(
        a1.hmac_key_revision().unwrap(),
        old,
        "a1 never gets the new one"
    );
}

/// Scenario 129: a new installation (no secret yet) revoked one that held the inbox's current
/// revision; its rotation tied with that revision, so the remaining installations could settle
/// on the revoked one's secret. Every remaining installation now rotates when it sees a
/// revocation it has not rotated for, so the winner is always a secret made after it.
#[test]
fn after_a_revocation_by_a_new_installation_the_others_rotate_past_the_revoked_ones_secret() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let key = key.unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), false);
    let (old, _) = net.create("old", AccountKey::Existing(key.clone()), false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = bob
        .create_group(&[a1.inbox_id().into()], GroupOptions::default())
        .unwrap();
    for _ in 0..2 {
        for c in [&a1, &a2, &old] {
            c.sync_all().unwrap();
        }
    }
    // a1 revokes "old": a1 and a2 move on together (each rotates once).
    a1.revoke_installation(Arc::new(KeyPair::from_seed(&key)), old.installation_id())
        .unwrap();
    for _ in 0..2 {
        a2.sync_all().unwrap();
        a1.sync_all().unwrap();
    }
    let current = a2.hmac_key_revision().unwrap();
    assert!(current >= Some(1));
    assert_eq!(a1.hmac_key_revision().unwrap(), current);
    // A brand-new installation revokes a1, which knows revision 1.
    let (a3, _) = net.create("a3", AccountKey::Existing(key.clone()), false);
    a3.revoke_installation(Arc::new(KeyPair::from_seed(&key)), a1.installation_id())
        .unwrap();
    bob.set_check_intervals(Duration::ZERO, Duration::ZERO)
        .unwrap();
    for _ in 0..4 {
        for c in [&a3, &a2, &bob] {
            c.sync_all().unwrap();
        }
    }
    let id = hex::encode(g.id());
    let (k1, k2, k3) = (
        a1.hmac_keys().unwrap(),
        a2.hmac_keys().unwrap(),
        a3.hmac_keys().unwrap(),
    );
    assert_eq!(k2.get(&id), k3.get(&id), "a2 and a3 agree");
    assert!(k2.contains_key(&id));
    assert_ne!(
        k1.get(&id),
        k2.get(&id),
        "the revoked a1 holds an older secret"
    );
    assert!(a2.hmac_key_revision().unwrap() > current);
}
