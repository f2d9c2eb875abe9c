//! Identity logs: building, replaying, and refusing every kind of forgery.

use ferry_identity::proto::{
    unsigned_identity_update::Action, IdentityUpdate, UnsignedIdentityUpdate,
};
use ferry_identity::{Account, IdentityError, InboxState, KeyPair};
use prost::Message;

struct Inbox {
    account: Account,
    log: Vec<IdentityUpdate>,
    state: InboxState,
}

fn new_inbox() -> Inbox {
    let account = Account::new(KeyPair::generate());
    let first = account.create_inbox(1).unwrap();
    let state = InboxState::replay(&account.inbox_id(), std::slice::from_ref(&first)).unwrap();
    Inbox {
        account,
        log: vec![first],
        state,
    }
}

impl Inbox {
    fn push(&mut self, u: IdentityUpdate) -> Result<(), IdentityError> {
        self.state.apply(&u)?;
        self.log.push(u);
        Ok(())
    }
}

#[test]
fn add_and_revoke_installations() {
    let mut inbox = new_inbox();
    let (a, b) = (KeyPair::generate(), KeyPair::generate());
    let u = inbox.account.add_installation(&inbox.state, &a, 2).unwrap();
    inbox.push(u).unwrap();
    let u = inbox.account.add_installation(&inbox.state, &b, 3).unwrap();
    inbox.push(u).unwrap();
    assert!(inbox.state.is_active(&a.public_key()));
    assert_eq!(inbox.state.active_installations().len(), 2);
    let u = inbox
        .account
        .revoke_installation(&inbox.state, &a.public_key(), 4)
        .unwrap();
    inbox.push(u).unwrap();
    assert!(!inbox.state.is_active(&a.public_key()));
    assert!(inbox.state.is_active(&b.public_key()));
    // Replaying the whole log from scratch gives the same state.
    let replayed = InboxState::replay(&inbox.state.inbox_id, &inbox.log).unwrap();
    assert_eq!(replayed, inbox.state);
    // A revoked installation cannot come back, nor be revoked twice.
    let again = inbox.account.add_installation(&inbox.state, &a, 5).unwrap();
    assert!(matches!(
        inbox.push(again),
        Err(IdentityError::InstallationExists(_))
    ));
    let twice = inbox
        .account
        .revoke_installation(&inbox.state, &a.public_key(), 5)
        .unwrap();
    assert!(matches!(
        inbox.push(twice),
        Err(IdentityError::UnknownInstallation(_))
    ));
}

#[test]
fn an_update_signed_by_another_account_is_rejected() {
    let mut inbox = new_inbox();
    let mallory = Account::new(KeyPair::generate());
    let forged = mallory
        .add_installation(&inbox.state, &KeyPair::generate(), 2)
        .unwrap();
    let before = inbox.state.clone();
    assert!(matches!(
        inbox.push(forged),
        Err(IdentityError::BadAccountSignature { sequence: 1 })
    ));
    assert_eq!(inbox.state, before, "a refused update changes nothing");
}

#[test]
fn an_add_without_proof_of_possession_is_rejected() {
    let mut inbox = new_inbox();
    let victim = KeyPair::generate();
    let mut u = inbox
        .account
        .add_installation(&inbox.state, &victim, 2)
        .unwrap();
    // Claim someone else's installation key but sign with a different key.
    u.installation_signature = {
        let other = inbox
            .account
            .add_installation(&inbox.state, &KeyPair::generate(), 2)
            .unwrap();
        other.installation_signature
    };
    assert!(matches!(
        inbox.push(u),
        Err(IdentityError::BadInstallationSignature { .. })
    ));
}

#[test]
fn tampered_reordered_and_replayed_updates_are_rejected() {
    let mut inbox = new_inbox();
    let a = KeyPair::generate();
    let u = inbox.account.add_installation(&inbox.state, &a, 2).unwrap();
    // Tampering with the signed bytes breaks the signature.
    let mut t = u.clone();
    let mut unsigned = UnsignedIdentityUpdate::decode(t.unsigned.as_slice()).unwrap();
    unsigned.created_at_ns = 99;
    t.unsigned = unsigned.encode_to_vec();
    assert!(matches!(
        inbox.state.clone().apply(&t),
        Err(IdentityError::BadAccountSignature { .. })
    ));
    inbox.push(u.clone()).unwrap();
    // Replaying the same update again: wrong sequence.
    assert!(matches!(
        inbox.push(u),
        Err(IdentityError::WrongSequence {
            expected: 2,
            found: 1
        })
    ));
    // An update built on an old head (a fork) is refused.
    let old = InboxState::replay(&inbox.state.inbox_id, &inbox.log[..1]).unwrap();
    let mut fork_state = old.clone();
    fork_state.sequence = inbox.state.sequence;
    let fork = inbox
        .account
        .add_installation(&fork_state, &KeyPair::generate(), 3)
        .unwrap();
    assert!(matches!(
        inbox.push(fork),
        Err(IdentityError::BrokenChain { sequence: 2 })
    ));
}

#[test]
fn a_log_must_start_with_its_own_create_entry() {
    let inbox = new_inbox();
    let other = new_inbox();
    assert!(matches!(
        InboxState::replay(&inbox.state.inbox_id, &other.log),
        Err(IdentityError::WrongInbox { .. })
    ));
    assert!(matches!(
        InboxState::replay(&inbox.state.inbox_id, &[]),
        Err(IdentityError::NotCreated)
    ));
    // A create entry whose key does not hash to the inbox id.
    let mut u = other.log[0].clone();
    let mut unsigned = UnsignedIdentityUpdate::decode(u.unsigned.as_slice()).unwrap();
    unsigned.inbox_id = inbox.state.inbox_id.clone();
    u.unsigned = unsigned.encode_to_vec();
    assert!(matches!(
        InboxState::replay(&inbox.state.inbox_id, &[u]),
        Err(IdentityError::InboxIdMismatch)
    ));
    // A log that starts with an add.
    let mut u = inbox.log[0].clone();
    let mut unsigned = UnsignedIdentityUpdate::decode(u.unsigned.as_slice()).unwrap();
    unsigned.action = Some(Action::RevokeInstallation(Default::default()));
    u.unsigned = unsigned.encode_to_vec();
    assert!(matches!(
        InboxState::replay(&inbox.state.inbox_id, &[u]),
        Err(IdentityError::NotCreated)
    ));
}

#[test]
fn keys_round_trip_through_their_seed() {
    let k = KeyPair::generate();
    let again = KeyPair::from_seed(&k.seed());
    assert_eq!(k.public_key(), again.public_key());
    let a = Account::new(KeyPair::from_seed(&[7; 32]));
    let b = Account::new(KeyPair::from_seed(&[7; 32]));
    assert_eq!(a.inbox_id(), b.inbox_id());
    assert_eq!(a.inbox_id().len(), 64);
}
