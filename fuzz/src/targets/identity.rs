//! Identity logs as the node serves them (`GetIdentityLogsResponse`), and logs built from honest
//! and forged updates, signed here from the spec (Ed25519 over a context and the unsigned
//! bytes) so the fuzzer gets past the signatures to the log rules.

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use ed25519_dalek::{Signer, SigningKey};
use ferry_identity::proto::{
    unsigned_identity_update::Action, AddInstallation, CreateInbox, IdentityUpdate,
    RevokeInstallation, UnsignedIdentityUpdate,
};
use ferry_identity::{update_hash, Account, IdentityError, InboxState, KeyPair};
use prost::Message;

const ACCOUNT_CONTEXT: &[u8] = b"ferry identity v1 account\0";
const INSTALLATION_CONTEXT: &[u8] = b"ferry identity v1 installation\0";
const ACCOUNT_SEED: [u8; 32] = [1; 32];
const OTHER_SEED: [u8; 32] = [2; 32];
const INSTALLATIONS: usize = 4;

fn installation_seed(i: u8) -> [u8; 32] {
    [10 + i % INSTALLATIONS as u8; 32]
}

fn sign(seed: &[u8; 32], context: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = context.to_vec();
    m.extend_from_slice(msg);
    SigningKey::from_bytes(seed).sign(&m).to_bytes().to_vec()
}

fn public(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

#[derive(Arbitrary, Debug)]
pub enum IdentityInput {
    /// A node's `GetIdentityLogsResponse`: every log replayed under the inbox id it claims.
    Response(Vec<u8>),
    Log {
        created_at_ns: i64,
        ops: Vec<Op>,
        mutations: Vec<Mutation>,
        claimed_inbox: Option<String>,
    },
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    Add {
        installation: u8,
        at: i64,
    },
    Revoke {
        installation: u8,
        at: i64,
    },
    Forge {
        forgery: Forgery,
        installation: u8,
        at: i64,
    },
}

/// An update signed by the account key (so it reaches the rule it breaks).
#[derive(Arbitrary, Debug)]
pub enum Forgery {
    WrongSequence(u64),
    WrongPrevious([u8; 32]),
    WrongInbox(String),
    NoAction,
    CreateAgain,
    /// An add whose installation signature is by another key, or missing.
    InstallationSignature(Option<u8>),
    /// Signed by another account key.
    OtherAccount,
    /// An installation key of the wrong length.
    BadKey(Vec<u8>),
    /// Any unsigned bytes at all, signed by the account (and an installation).
    Unsigned(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum Mutation {
    FlipByte {
        entry: u8,
        field: u8,
        pos: u16,
        xor: u8,
    },
    Swap(u8, u8),
    Drop(u8),
    Duplicate(u8),
    Truncate(u8),
    /// Any bytes as an encoded `IdentityUpdate`.
    Insert(u8, Vec<u8>),
}

/// Honest updates must apply, forged ones must be refused with the right error and leave the
/// state unchanged; the accepted log must replay to the same state; and after mutations a log
/// may only verify if it is a prefix of the accepted one.
pub fn identity_log(data: &[u8]) {
    let Ok(input) = IdentityInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (created_at_ns, ops, mutations, claimed_inbox) = match input {
        IdentityInput::Response(bytes) => {
            if let Ok(resp) = ferry_proto::node::GetIdentityLogsResponse::decode(&bytes[..]) {
                for log in resp.logs {
                    let _ = InboxState::replay(&log.inbox_id, &log.updates);
                }
            }
            return;
        }
        IdentityInput::Log {
            created_at_ns,
            ops,
            mutations,
            claimed_inbox,
        } => (created_at_ns, ops, mutations, claimed_inbox),
    };

    let account = Account::new(KeyPair::from_seed(&ACCOUNT_SEED));
    let inbox = account.inbox_id();
    let first = account
        .create_inbox(created_at_ns)
        .expect("an in-memory key signs");
    let mut state = InboxState::replay(&inbox, std::slice::from_ref(&first)).expect("create");
    let mut log = vec![first];
    // Installation public key -> revoked?
    let mut model: BTreeMap<[u8; 32], bool> = BTreeMap::new();

    for op in ops.iter().take(16) {
        let next = |action: Action, at: i64| UnsignedIdentityUpdate {
            inbox_id: inbox.clone(),
            sequence: state.sequence + 1,
            previous_hash: state.head.to_vec(),
            created_at_ns: at,
            action: Some(action),
        };
        type Check = fn(&IdentityError) -> bool;
        let (update, expect): (IdentityUpdate, Option<Check>) = match op {
            Op::Add { installation, at } => {
                let seed = installation_seed(*installation);
                let key = public(&seed);
                let unsigned = next(
                    Action::AddInstallation(AddInstallation {
                        installation_public_key: key.to_vec(),
                    }),
                    *at,
                )
                .encode_to_vec();
                let update = IdentityUpdate {
                    account_signature: sign(&ACCOUNT_SEED, ACCOUNT_CONTEXT, &unsigned),
                    installation_signature: sign(&seed, INSTALLATION_CONTEXT, &unsigned),
                    unsigned,
                };
                // Ed25519 is deterministic: the crate's own writer must produce the same bytes.
                let theirs = account
                    .add_installation(&state, &KeyPair::from_seed(&seed), *at)
                    .expect("an in-memory key signs");
                assert_eq!(
                    theirs, update,
                    "Account::add_installation differs from the spec"
                );
                let ok = !model.contains_key(&key);
                (
                    update,
                    (!ok).then_some(
                        (|e| matches!(e, IdentityError::InstallationExists(_))) as Check,
                    ),
                )
            }
            Op::Revoke { installation, at } => {
                let key = public(&installation_seed(*installation));
                let unsigned = next(
                    Action::RevokeInstallation(RevokeInstallation {
                        installation_public_key: key.to_vec(),
                    }),
                    *at,
                )
                .encode_to_vec();
                let update = IdentityUpdate {
                    account_signature: sign(&ACCOUNT_SEED, ACCOUNT_CONTEXT, &unsigned),
                    installation_signature: Vec::new(),
                    unsigned,
                };
                let theirs = account
                    .revoke_installation(&state, &key, *at)
                    .expect("an in-memory key signs");
                assert_eq!(
                    theirs, update,
                    "Account::revoke_installation differs from the spec"
                );
                let ok = model.get(&key) == Some(&false);
                (
                    update,
                    (!ok).then_some(
                        (|e| matches!(e, IdentityError::UnknownInstallation(_))) as Check,
                    ),
                )
            }
            Op::Forge {
                forgery,
                installation,
                at,
            } => {
                let seed = installation_seed(*installation);
                let add = Action::AddInstallation(AddInstallation {
                    installation_public_key: public(&seed).to_vec(),
                });
                let mut u = next(add.clone(), *at);
                let mut account_seed = ACCOUNT_SEED;
                let mut installation_signer = Some(seed);
                let check: Check = match forgery {
                    Forgery::WrongSequence(s) => {
                        if *s == u.sequence {
                            continue;
                        }
                        u.sequence = *s;
                        |e| matches!(e, IdentityError::WrongSequence { .. })
                    }
                    Forgery::WrongPrevious(h) => {
                        if h[..] == u.previous_hash[..] {
                            continue;
                        }
                        u.previous_hash = h.to_vec();
                        |e| matches!(e, IdentityError::BrokenChain { .. })
                    }
                    Forgery::WrongInbox(other) => {
                        if *other == inbox {
                            continue;
                        }
                        u.inbox_id = other.clone();
                        |e| matches!(e, IdentityError::WrongInbox { .. })
                    }
                    Forgery::NoAction => {
                        u.action = None;
                        |e| matches!(e, IdentityError::NoAction)
                    }
                    Forgery::CreateAgain => {
                        u.action = Some(Action::CreateInbox(CreateInbox {
                            account_public_key: public(&ACCOUNT_SEED).to_vec(),
                        }));
                        |e| matches!(e, IdentityError::WrongSequence { .. })
                    }
                    Forgery::InstallationSignature(by) => {
                        installation_signer = by.map(installation_seed).filter(|s| *s != seed);
                        if installation_signer.is_none() && by.is_some() {
                            continue;
                        }
                        |e| matches!(e, IdentityError::BadInstallationSignature { .. })
                    }
                    Forgery::OtherAccount => {
                        account_seed = OTHER_SEED;
                        |e| matches!(e, IdentityError::BadAccountSignature { .. })
                    }
                    Forgery::BadKey(k) => {
                        if k.len() == 32 {
                            continue;
                        }
                        u.action = Some(Action::AddInstallation(AddInstallation {
                            installation_public_key: k.clone(),
                        }));
                        |e| matches!(e, IdentityError::BadKey { .. })
                    }
                    Forgery::Unsigned(bytes) => {
                        // Anything goes, but nothing may panic, and a refusal changes nothing.
                        let update = IdentityUpdate {
                            account_signature: sign(&ACCOUNT_SEED, ACCOUNT_CONTEXT, bytes),
                            installation_signature: sign(&seed, INSTALLATION_CONTEXT, bytes),
                            unsigned: bytes.clone(),
                        };
                        let before = state.clone();
                        if state.apply(&update).is_ok() {
                            // A valid update written by the fuzzer: keep the model in step.
                            log.push(update);
                            sync_model(&state, &mut model);
                        } else {
                            assert_eq!(state, before, "a refused update changed the state");
                        }
                        continue;
                    }
                };
                let unsigned = u.encode_to_vec();
                let update = IdentityUpdate {
                    account_signature: sign(&account_seed, ACCOUNT_CONTEXT, &unsigned),
                    installation_signature: installation_signer
                        .map(|s| sign(&s, INSTALLATION_CONTEXT, &unsigned))
                        .unwrap_or_default(),
                    unsigned,
                };
                (update, Some(check))
            }
        };
        let before = state.clone();
        match (state.apply(&update), expect) {
            (Ok(()), None) => {
                log.push(update);
                match op {
                    Op::Add { installation, .. } => {
                        model.insert(public(&installation_seed(*installation)), false);
                    }
                    Op::Revoke { installation, .. } => {
                        model.insert(public(&installation_seed(*installation)), true);
                    }
                    Op::Forge { .. } => unreachable!("forgeries expect a refusal"),
                }
                let mut mirror = BTreeMap::new();
                sync_model(&state, &mut mirror);
                assert_eq!(mirror, model, "installations differ from the model");
                assert_eq!(state.sequence as usize + 1, log.len());
                assert_eq!(state.head, update_hash(log.last().unwrap()));
            }
            (Err(e), Some(check)) => {
                assert!(
                    check(&e),
                    "refused with an unexpected error: {e:?} ({op:?})"
                );
                assert_eq!(state, before, "a refused update changed the state");
            }
            (Ok(()), Some(_)) => panic!("a forged or invalid update was accepted: {op:?}"),
            (Err(e), None) => panic!("an honest update was refused: {e:?} ({op:?})"),
        }
    }

    let replayed = InboxState::replay(&inbox, &log).expect("the accepted log replays");
    assert_eq!(replayed, state);

    // Mutations of the accepted log, then replay under the claimed inbox id.
    let mut mutated = log.clone();
    let mut inserted = false;
    for m in mutations.iter().take(4) {
        let n = mutated.len();
        if n == 0 {
            break;
        }
        let at = |i: u8| i as usize % n;
        match m {
            Mutation::FlipByte {
                entry,
                field,
                pos,
                xor,
            } => {
                let e = &mut mutated[at(*entry)];
                let f = match field % 3 {
                    0 => &mut e.unsigned,
                    1 => &mut e.account_signature,
                    _ => &mut e.installation_signature,
                };
                if !f.is_empty() {
                    let i = *pos as usize % f.len();
                    f[i] ^= xor | 1;
                }
            }
            Mutation::Swap(a, b) => mutated.swap(at(*a), at(*b)),
            Mutation::Drop(i) => {
                mutated.remove(at(*i));
            }
            Mutation::Duplicate(i) => {
                let e = mutated[at(*i)].clone();
                mutated.insert(at(*i), e);
            }
            Mutation::Truncate(k) => mutated.truncate(*k as usize % (n + 1)),
            Mutation::Insert(i, bytes) => {
                if let Ok(u) = IdentityUpdate::decode(&bytes[..]) {
                    mutated.insert(at(*i), u);
                    inserted = true;
                }
            }
        }
    }
    let claimed = claimed_inbox.unwrap_or_else(|| inbox.clone());
    if let Ok(s) = InboxState::replay(&claimed, &mutated) {
        assert_eq!(claimed, inbox, "a log verified under another inbox id");
        if !inserted {
            assert!(
                mutated.len() <= log.len() && mutated[..] == log[..mutated.len()],
                "a tampered log verified"
            );
            assert_eq!(s.sequence as usize + 1, mutated.len());
        }
    }
}

fn sync_model(state: &InboxState, model: &mut BTreeMap<[u8; 32], bool>) {
    model.clear();
    for (k, s) in &state.installations {
        model.insert(*k, s.revoked_at.is_some());
    }
}
