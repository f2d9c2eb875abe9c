//! Ferry's MLS entry points for bytes from the node (feature `mls`): welcomes
//! (`ferry_mls::join_from_welcome_replacing`), group messages — commits and application
//! messages — (`ferry_mls::process`) and key packages (`ferry_mls::key_package_identity`).
//!
//! Two installations, A and B, are set up once per process, each with its own in-memory SQLite
//! database: A creates a group (with Ferry's group-metadata extension) and adds B (whose key
//! package is last-resort, so the welcome stays usable). Every input then runs on B's side
//! inside a SAVEPOINT that is rolled back, and B's group is reloaded, so one input cannot change
//! the state the next one sees. [`seed_messages`] gives real welcomes, commits, application
//! messages and key packages of this setup as seeds.

use std::cell::RefCell;

use ferry_mls::{MlsGroup, Provider};
use ferry_store::rusqlite::Connection;
use prost::Message;

const GROUP_ID: &[u8] = b"ferry-fuzz-group";

struct Side {
    provider: Provider<'static>,
    group: MlsGroup,
}

struct Setup {
    b: Side,
    /// Real messages of this process's setup: welcome, application, commit, key packages.
    messages: [Vec<u8>; 5],
}

const APPLICATION_TEXT: &[u8] = b"hello from the fuzz setup";

fn connection() -> &'static Connection {
    let mut conn = Connection::open_in_memory().expect("sqlite");
    ferry_mls::migrate(&mut conn).expect("migrate");
    Box::leak(Box::new(conn))
}

fn setup() -> Setup {
    let pa = Provider::new(connection());
    let pb = Provider::new(connection());
    let a = ferry_mls::Identity::generate(&pa, b"installation-a").expect("identity a");
    let b = ferry_mls::Identity::generate(&pb, b"installation-b").expect("identity b");
    let kp_b = ferry_mls::generate_key_package(&pb, &b, true).expect("key package b");
    let kp_a = ferry_mls::generate_key_package(&pa, &a, false).expect("key package a");
    let metadata = ferry_proto::message::GroupMetadata {
        name: "fuzz".into(),
        creator_inbox_id: "a3".repeat(32),
        kind: 1,
        ..Default::default()
    }
    .encode_to_vec();
    let mut group_a =
        ferry_mls::create_group_with_metadata(&pa, &a, GROUP_ID, Some(&metadata)).expect("group");
    let (_commit, welcome) =
        ferry_mls::add_members(&mut group_a, &pa, &a, &[&kp_b]).expect("add b");
    let group_b = ferry_mls::join_from_welcome(&pb, &welcome).expect("b joins");
    let app = ferry_mls::encrypt(&mut group_a, &pa, &a, APPLICATION_TEXT).expect("app");
    let renamed = ferry_proto::message::GroupMetadata {
        name: "renamed".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let commit = ferry_mls::update_metadata(&mut group_a, &pa, &a, &renamed).expect("commit");
    Setup {
        b: Side {
            provider: pb,
            group: group_b,
        },
        messages: [welcome, app, commit, kp_a, kp_b],
    }
}

thread_local! {
    static SETUP: RefCell<Option<Setup>> = const { RefCell::new(None) };
}

fn with_setup<T>(f: impl FnOnce(&mut Setup) -> T) -> T {
    SETUP.with(|s| f(s.borrow_mut().get_or_insert_with(setup)))
}

/// `(name, input)` seeds: each real message of a setup raw (modes 0-2; its keys are this
/// process's, so it parses but does not decrypt in another process) and as mode 3 (this
/// process's message, unchanged or edited).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    const NAMES: [&str; 5] = [
        "welcome",
        "application",
        "commit",
        "key-package-a",
        "key-package-b",
    ];
    const MODES: [u8; 5] = [0x80, 1, 1, 2, 2];
    with_setup(|s| {
        let mut out = Vec::new();
        for (i, m) in s.messages.iter().enumerate() {
            let mut raw = vec![MODES[i]];
            raw.extend_from_slice(m);
            out.push((format!("raw-{}", NAMES[i]), raw));
            out.push((format!("setup-{}", NAMES[i]), vec![3, i as u8]));
            // One edit: flip the last byte.
            out.push((
                format!("setup-{}-flip", NAMES[i]),
                vec![3, i as u8, 0, 0xff, 0xff, 1],
            ));
        }
        out
    })
}

/// The first byte picks the entry point: `& 3` = 0 welcome, 1 group message, 2 key package,
/// each on the rest of the input; 3: one of this process's real messages (next byte: welcome,
/// application, commit, key package A or B) with edits (4-byte groups `op, pos_hi, pos_lo,
/// value`: xor, truncate or insert at `pos`), so the fuzzer reaches past decryption and
/// signatures. Bit 7 on a welcome: replace the group B already holds, so a valid welcome is
/// processed to the end. Nothing may panic; unedited real messages must succeed; every state
/// change is rolled back.
pub fn mls_messages(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    with_setup(|s| {
        let (mode, bytes, pristine) = if which & 3 == 3 {
            let Some((&k, edits)) = rest.split_first() else {
                return;
            };
            let k = k as usize % s.messages.len();
            let mut m = s.messages[k].clone();
            for e in edits.chunks_exact(4) {
                let pos = usize::from(u16::from_be_bytes([e[1], e[2]]));
                match e[0] % 3 {
                    0 if !m.is_empty() => {
                        let i = pos % m.len();
                        m[i] ^= e[3];
                    }
                    1 => m.truncate(pos % (m.len() + 1)),
                    2 => m.insert(pos % (m.len() + 1), e[3]),
                    _ => {}
                }
            }
            let pristine = m == s.messages[k];
            let mode = [0x80u8, 1, 1, 2, 2][k];
            (mode, m, pristine)
        } else {
            (which, rest.to_vec(), false)
        };
        let side = &mut s.b;
        let conn = side.provider.conn();
        conn.execute_batch("SAVEPOINT fuzz_input")
            .expect("savepoint");
        match mode & 3 {
            0 => {
                let replace = mode & 0x80 != 0;
                let r = ferry_mls::join_from_welcome_replacing(&side.provider, &bytes, |_| replace);
                if pristine {
                    r.expect("the setup's welcome joins (replacing B's group)");
                }
            }
            1 => {
                let r = ferry_mls::process(&mut side.group, &side.provider, &bytes);
                match &r {
                    Ok(ferry_mls::Processed::Commit { .. }) => {
                        // What ferry-sdk reads next: the group metadata extension.
                        if let Some(m) = ferry_mls::group_metadata(&side.group) {
                            let _ = ferry_proto::message::GroupMetadata::decode(&m[..]);
                        }
                    }
                    Ok(ferry_mls::Processed::Application { plaintext, .. }) if pristine => {
                        assert_eq!(plaintext, APPLICATION_TEXT);
                    }
                    _ => {}
                }
                if pristine {
                    assert!(r.is_ok(), "the setup's own message failed: {r:?}");
                }
            }
            _ => {
                let r = ferry_mls::key_package_identity(&side.provider, &bytes);
                if pristine {
                    r.expect("the setup's key package validates");
                }
            }
        }
        conn.execute_batch("ROLLBACK TO fuzz_input; RELEASE fuzz_input")
            .expect("rollback");
        side.group = ferry_mls::load_group(&side.provider, GROUP_ID)
            .expect("load")
            .expect("B's group is stored");
    });
}
