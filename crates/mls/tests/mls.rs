//! ferry-mls on real SQLite files: one ferry_store::Store per installation, MLS state in it
//! (ferry-mls itself only needs a rusqlite connection; the store is here to check that its rows
//! and the MLS state commit together).

use std::path::{Path, PathBuf};

use ferry_mls::{
    add_members, create_group, encrypt, epoch, generate_key_package, join_from_welcome, load_group,
    members, migrate, process, remove_members, Error, Identity, MlsGroup, Processed, Provider,
};
use ferry_store::Store;
use rusqlite::{self, Connection};

const GROUP: &[u8] = b"group-0001";
const KEY_SETTING: &str = "mls.signature_public_key";

/// One installation: its store file and MLS identity.
struct Install {
    name: &'static str,
    path: PathBuf,
    store: Store,
    id: Identity,
}

fn open_store(path: &Path) -> Store {
    let mut store = Store::open(path).unwrap();
    migrate(store.conn_mut()).unwrap();
    store
}

impl Install {
    /// A new installation in `dir`, its signature public key kept in the store's settings.
    fn new(dir: &Path, name: &'static str) -> Install {
        let path = dir.join(format!("{name}.db"));
        let store = open_store(&path);
        let id = Identity::generate(&Provider::new(store.conn()), name.as_bytes()).unwrap();
        store
            .set_setting(KEY_SETTING, id.signature_public_key())
            .unwrap();
        Install {
            name,
            path,
            store,
            id,
        }
    }

    /// The same installation after a restart: reopen the file, find the identity again.
    fn reopen(path: &Path, name: &'static str) -> Install {
        let store = open_store(path);
        let public = store.setting(KEY_SETTING).unwrap().expect("key setting");
        let id = Identity::load(&Provider::new(store.conn()), name.as_bytes(), &public)
            .unwrap()
            .expect("identity survives a restart");
        Install {
            name,
            path: path.to_path_buf(),
            store,
            id,
        }
    }

    fn p(&self) -> Provider<'_> {
        Provider::new(self.store.conn())
    }

    fn key_package(&self) -> Vec<u8> {
        generate_key_package(&self.p(), &self.id, false).unwrap()
    }

    fn send(&self, group: &mut MlsGroup, text: &str) -> Vec<u8> {
        let bytes = encrypt(group, &self.p(), &self.id, text.as_bytes()).unwrap();
        assert!(
            !contains(&bytes, text.as_bytes()),
            "plaintext visible on the wire"
        );
        bytes
    }

    /// Processes `msg` and asserts it is `text` from `from`.
    fn receive(&self, group: &mut MlsGroup, msg: &[u8], from: &Install, text: &str) {
        match process(group, &self.p(), msg).unwrap() {
            Processed::Application { sender, plaintext } => {
                assert_eq!(
                    sender,
                    from.name.as_bytes(),
                    "{} got the wrong sender",
                    self.name
                );
                assert_eq!(plaintext, text.as_bytes());
            }
            other => panic!(
                "{} expected an application message, got {other:?}",
                self.name
            ),
        }
    }

    /// The group's epoch as stored on disk, read through a separate connection.
    fn epoch_on_disk(&self) -> u64 {
        let conn = Connection::open(&self.path).unwrap();
        epoch(&load_group(&Provider::new(&conn), GROUP).unwrap().unwrap())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// alice creates the group and adds bob; both at epoch 1.
fn pair(dir: &Path) -> (Install, MlsGroup, Install, MlsGroup) {
    let alice = Install::new(dir, "alice");
    let bob = Install::new(dir, "bob");
    let kp = bob.key_package();
    let mut ag = create_group(&alice.p(), &alice.id, GROUP).unwrap();
    assert_eq!(epoch(&ag), 0);
    let (_commit, welcome) = add_members(&mut ag, &alice.p(), &alice.id, &[&kp]).unwrap();
    assert_eq!(epoch(&ag), 1);
    let bg = join_from_welcome(&bob.p(), &welcome).unwrap();
    assert_eq!(epoch(&bg), 1);
    (alice, ag, bob, bg)
}

/// `adder` adds `new` to `group`; returns the commit and `new`'s group.
fn add(adder: &Install, group: &mut MlsGroup, new: &Install) -> (Vec<u8>, MlsGroup) {
    let kp = new.key_package();
    let (commit, welcome) = add_members(group, &adder.p(), &adder.id, &[&kp]).unwrap();
    let joined = join_from_welcome(&new.p(), &welcome).unwrap();
    assert_eq!(epoch(&joined), epoch(group));
    (commit, joined)
}

fn ids(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

// (a) ---------------------------------------------------------------------------------------

#[test]
fn two_installations_exchange_messages_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    assert_eq!(members(&ag), ids(&["alice", "bob"]));
    assert_eq!(members(&bg), members(&ag));

    for i in 0..3 {
        let m = alice.send(&mut ag, &format!("hello bob {i}"));
        bob.receive(&mut bg, &m, &alice, &format!("hello bob {i}"));
        let m = bob.send(&mut bg, &format!("hello alice {i}"));
        alice.receive(&mut ag, &m, &bob, &format!("hello alice {i}"));
    }
    assert_eq!(epoch(&ag), 1);
    assert_eq!(epoch(&bg), 1);
}

#[test]
fn a_key_package_opens_one_welcome_unless_it_is_last_resort() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Install::new(dir.path(), "alice");
    let bob = Install::new(dir.path(), "bob");

    // An ordinary key package is used up by the first welcome.
    let kp = bob.key_package();
    let mut g1 = create_group(&alice.p(), &alice.id, b"g1").unwrap();
    let mut g2 = create_group(&alice.p(), &alice.id, b"g2").unwrap();
    let (_, w1) = add_members(&mut g1, &alice.p(), &alice.id, &[&kp]).unwrap();
    let (_, w2) = add_members(&mut g2, &alice.p(), &alice.id, &[&kp]).unwrap();
    join_from_welcome(&bob.p(), &w1).unwrap();
    let err = join_from_welcome(&bob.p(), &w2).unwrap_err();
    assert!(matches!(err, Error::NoMatchingKeyPackage), "{err:?}");
    // The failed join left nothing behind.
    assert!(load_group(&bob.p(), b"g2").unwrap().is_none());

    // A last-resort key package validates (its leaf lists the extension) and stays.
    let lr = generate_key_package(&bob.p(), &bob.id, true).unwrap();
    let mut g3 = create_group(&alice.p(), &alice.id, b"g3").unwrap();
    let mut g4 = create_group(&alice.p(), &alice.id, b"g4").unwrap();
    let (_, w3) = add_members(&mut g3, &alice.p(), &alice.id, &[&lr]).unwrap();
    let (_, w4) = add_members(&mut g4, &alice.p(), &alice.id, &[&lr]).unwrap();
    let mut b3 = join_from_welcome(&bob.p(), &w3).unwrap();
    let mut b4 = join_from_welcome(&bob.p(), &w4).unwrap();
    let m = alice.send(&mut g4, "via last resort");
    bob.receive(&mut b4, &m, &alice, "via last resort");
    let m = bob.send(&mut b3, "back");
    alice.receive(&mut g3, &m, &bob, "back");

    // Creating a group whose id exists is refused.
    let err = create_group(&alice.p(), &alice.id, b"g1").unwrap_err();
    assert!(matches!(err, Error::GroupExists), "{err:?}");
}

// (b) ---------------------------------------------------------------------------------------

#[test]
fn state_survives_a_restart_of_both_installations() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    let m = alice.send(&mut ag, "before restart");
    bob.receive(&mut bg, &m, &alice, "before restart");
    // Sent before the restart, delivered after it: bob's sender ratchet must come from disk.
    let in_flight = alice.send(&mut ag, "in flight");
    let (alice_path, bob_path) = (alice.path.clone(), bob.path.clone());
    let before = epoch(&ag);
    let alice_key = alice.id.signature_public_key().to_vec();
    drop((alice, ag, bob, bg));

    let alice = Install::reopen(&alice_path, "alice");
    let bob = Install::reopen(&bob_path, "bob");
    assert_eq!(alice.id.signature_public_key(), alice_key);
    let mut ag = load_group(&alice.p(), GROUP)
        .unwrap()
        .expect("alice's group");
    let mut bg = load_group(&bob.p(), GROUP).unwrap().expect("bob's group");
    assert_eq!(epoch(&ag), before);
    assert_eq!(epoch(&bg), before);
    assert_eq!(members(&bg), ids(&["alice", "bob"]));
    assert!(load_group(&alice.p(), b"no such group").unwrap().is_none());

    bob.receive(&mut bg, &in_flight, &alice, "in flight");
    let m = alice.send(&mut ag, "after restart");
    bob.receive(&mut bg, &m, &alice, "after restart");
    let m = bob.send(&mut bg, "reply after restart");
    alice.receive(&mut ag, &m, &bob, "reply after restart");

    // Membership changes keep working after the restart too.
    let carol = Install::new(dir.path(), "carol");
    let (commit, mut cg) = add(&alice, &mut ag, &carol);
    assert!(matches!(
        process(&mut bg, &bob.p(), &commit).unwrap(),
        Processed::Commit { epoch: 2, .. }
    ));
    let m = bob.send(&mut bg, "hi carol");
    carol.receive(&mut cg, &m, &bob, "hi carol");
}

/// A fresh Ed25519 key as (32-byte secret seed, public key), the form ferry-identity keeps an
/// installation key in.
fn ed25519() -> ([u8; 32], [u8; 32]) {
    let seed: [u8; 32] = rand::random();
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    (seed, public)
}

#[test]
fn an_identity_from_an_installation_key_is_stored_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let (seed, public) = ed25519();
    let installation_id = public;
    {
        let store = open_store(&path);
        let p = Provider::new(store.conn());
        let (other_seed, _) = ed25519();
        let err = Identity::from_ed25519(&p, &installation_id, &other_seed, &public).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch), "{err:?}");
        assert!(Identity::load(&p, &installation_id, &public)
            .unwrap()
            .is_none());
        let id = Identity::from_ed25519(&p, &installation_id, &seed, &public).unwrap();
        assert_eq!(id.signature_public_key(), public);
        create_group(&p, &id, GROUP).unwrap();
    }
    let store = open_store(&path);
    let p = Provider::new(store.conn());
    let id = Identity::load(&p, &installation_id, &public)
        .unwrap()
        .expect("stored");
    assert_eq!(id.installation_id(), installation_id);
    // The reloaded key still signs for the group: it can send and make key packages.
    let mut g = load_group(&p, GROUP).unwrap().unwrap();
    encrypt(&mut g, &p, &id, b"still mine").unwrap();
    generate_key_package(&p, &id, false).unwrap();
}

// (c) ---------------------------------------------------------------------------------------

#[test]
fn a_later_member_reads_only_what_follows_its_join() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    let before = alice.send(&mut ag, "before carol");
    bob.receive(&mut bg, &before, &alice, "before carol");

    let carol = Install::new(dir.path(), "carol");
    let (commit, mut cg) = add(&alice, &mut ag, &carol);
    match process(&mut bg, &bob.p(), &commit).unwrap() {
        Processed::Commit {
            committer,
            epoch,
            added,
            removed,
            self_removed,
        } => {
            assert_eq!(committer, b"alice");
            assert_eq!(epoch, 2);
            assert_eq!(added, ids(&["carol"]));
            assert!(removed.is_empty());
            assert!(!self_removed);
        }
        other => panic!("expected a commit, got {other:?}"),
    }
    assert_eq!(members(&cg), ids(&["alice", "bob", "carol"]));

    let err = process(&mut cg, &carol.p(), &before).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EpochTooOld {
                message: 1,
                group: 2
            }
        ),
        "{err:?}"
    );

    let after = alice.send(&mut ag, "after carol");
    bob.receive(&mut bg, &after, &alice, "after carol");
    carol.receive(&mut cg, &after, &alice, "after carol");
    let m = carol.send(&mut cg, "hi all");
    alice.receive(&mut ag, &m, &carol, "hi all");
    bob.receive(&mut bg, &m, &carol, "hi all");
}

// (d) ---------------------------------------------------------------------------------------

#[test]
fn a_removed_member_cannot_read_the_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    let carol = Install::new(dir.path(), "carol");
    let (commit, mut cg) = add(&alice, &mut ag, &carol);
    process(&mut bg, &bob.p(), &commit).unwrap();

    let err = remove_members(&mut ag, &alice.p(), &alice.id, &[b"dave"]).unwrap_err();
    assert!(matches!(err, Error::NotAMember(_)), "{err:?}");
    assert_eq!(epoch(&ag), 2, "a failed removal leaves the epoch");

    // A copy of bob's database from before the removal: bob never seeing the commit.
    let stale_path = dir.path().join("bob-stale.db");
    bob.store
        .conn()
        .execute("VACUUM INTO ?1", [stale_path.to_str().unwrap()])
        .unwrap();

    let commit = remove_members(&mut ag, &alice.p(), &alice.id, &[b"bob"]).unwrap();
    assert_eq!(epoch(&ag), 3);
    assert_eq!(members(&ag), ids(&["alice", "carol"]));
    match process(&mut cg, &carol.p(), &commit).unwrap() {
        Processed::Commit {
            removed,
            self_removed,
            epoch,
            ..
        } => {
            assert_eq!(removed, ids(&["bob"]));
            assert!(!self_removed);
            assert_eq!(epoch, 3);
        }
        other => panic!("expected a commit, got {other:?}"),
    }
    match process(&mut bg, &bob.p(), &commit).unwrap() {
        Processed::Commit { self_removed, .. } => assert!(self_removed),
        other => panic!("expected a commit, got {other:?}"),
    }
    assert!(!bg.is_active());

    let m = alice.send(&mut ag, "bob is gone");
    carol.receive(&mut cg, &m, &alice, "bob is gone");
    let err = process(&mut bg, &bob.p(), &m).unwrap_err();
    assert!(matches!(err, Error::Removed), "{err:?}");
    let err = encrypt(&mut bg, &bob.p(), &bob.id, b"let me in").unwrap_err();
    assert!(matches!(err, Error::Removed), "{err:?}");
    // Also after a restart: the removal is on disk.
    let bg = load_group(&bob.p(), GROUP).unwrap().unwrap();
    assert!(!bg.is_active());

    // Bob without the commit holds only epoch 2's secrets.
    let stale = open_store(&stale_path);
    let sp = Provider::new(stale.conn());
    let mut stale_group = load_group(&sp, GROUP).unwrap().unwrap();
    assert_eq!(epoch(&stale_group), 2);
    let err = process(&mut stale_group, &sp, &m).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongEpoch {
                message: 3,
                group: 2
            }
        ),
        "{err:?}"
    );
}

// (e) ---------------------------------------------------------------------------------------

#[test]
fn replays_and_wrong_epochs_are_rejected_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    let old = alice.send(&mut ag, "epoch 1");

    let carol = Install::new(dir.path(), "carol");
    let (commit, _cg) = add(&alice, &mut ag, &carol);
    let ahead = alice.send(&mut ag, "epoch 2");

    // A message from an epoch bob has not reached: rejected, and bob's state is untouched.
    let err = process(&mut bg, &bob.p(), &ahead).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongEpoch {
                message: 2,
                group: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(epoch(&bg), 1);

    assert!(matches!(
        process(&mut bg, &bob.p(), &commit).unwrap(),
        Processed::Commit { epoch: 2, .. }
    ));
    // The same commit again: a typed error, the epoch stays, nothing on disk moves.
    let err = process(&mut bg, &bob.p(), &commit).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongEpoch {
                message: 1,
                group: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(epoch(&bg), 2);
    assert_eq!(bob.epoch_on_disk(), 2);

    // A message of the epoch bob just left still reads (MAX_PAST_EPOCHS are kept, so a
    // message sent just before a commit its sender had not seen is not lost); a replay does not.
    assert_eq!(
        process(&mut bg, &bob.p(), &old).unwrap(),
        Processed::Application {
            sender: b"alice".to_vec(),
            plaintext: b"epoch 1".to_vec()
        }
    );
    assert!(process(&mut bg, &bob.p(), &old).is_err());
    assert_eq!(epoch(&bg), 2);

    // The message that was ahead now reads; replaying it does not.
    bob.receive(&mut bg, &ahead, &alice, "epoch 2");
    let err = process(&mut bg, &bob.p(), &ahead).unwrap_err();
    assert!(matches!(err, Error::Undecryptable(_)), "{err:?}");

    // Garbage and the wrong kind of message.
    let err = process(&mut bg, &bob.p(), b"not mls").unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    let kp = carol.key_package();
    let err = process(&mut bg, &bob.p(), &kp).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedMessage {
                got: "key package",
                ..
            }
        ),
        "{err:?}"
    );
    let err = join_from_welcome(&bob.p(), &ahead).unwrap_err();
    assert!(matches!(err, Error::UnexpectedMessage { .. }), "{err:?}");

    // After all that, the group still works both ways.
    let m = alice.send(&mut ag, "still fine");
    bob.receive(&mut bg, &m, &alice, "still fine");
    let m = bob.send(&mut bg, "yes");
    alice.receive(&mut ag, &m, &bob, "yes");
}

// (f) ---------------------------------------------------------------------------------------

#[test]
fn mls_writes_join_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    let carol = Install::new(dir.path(), "carol");
    let (commit, _cg) = add(&alice, &mut ag, &carol);
    assert_eq!(bob.epoch_on_disk(), 1);

    bob.store.conn().execute_batch("BEGIN").unwrap();
    assert!(matches!(
        process(&mut bg, &bob.p(), &commit).unwrap(),
        Processed::Commit { epoch: 2, .. }
    ));
    // Inside the transaction the new epoch is visible; to other connections it is not.
    let inside = load_group(&bob.p(), GROUP).unwrap().unwrap();
    assert_eq!(epoch(&inside), 2);
    assert_eq!(bob.epoch_on_disk(), 1);
    bob.store.conn().execute_batch("ROLLBACK").unwrap();

    assert_eq!(bob.epoch_on_disk(), 1, "the rollback undid the MLS writes");
    let mut bg = load_group(&bob.p(), GROUP).unwrap().unwrap();
    assert_eq!(epoch(&bg), 1);
    // The rolled-back commit applies again, since the state never moved.
    process(&mut bg, &bob.p(), &commit).unwrap();
    assert_eq!(bob.epoch_on_disk(), 2);
}

#[test]
fn a_message_row_and_its_mls_state_commit_together() {
    use ferry_store::{
        ContentType, Conversation, ConversationKind, DeliveryStatus, Membership, Message,
        MessageKind, Table,
    };
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    bob.store
        .insert_conversation(&Conversation {
            disappearing: None,
            id: GROUP.to_vec(),
            kind: ConversationKind::Group,
            created_at_ns: 1,
            name: String::new(),
            description: String::new(),
            image_url: String::new(),
            creator_inbox_id: "alice".into(),
            dm_peer_inbox_id: None,
            dm_id: None,
            membership: Membership::Active,
            last_message_ns: None,
        })
        .unwrap();
    let row = |id: u8, plaintext: Vec<u8>| Message {
        expire_at_ns: None,
        id: vec![id; 32],
        conversation_id: GROUP.to_vec(),
        sender_inbox_id: "alice".into(),
        sender_installation_id: b"alice".to_vec(),
        sent_at_ns: id as i64,
        kind: MessageKind::Application,
        content_type: ContentType::text(),
        content: plaintext,
        fallback: None,
        parameters: None,
        reference_id: None,
        delivery_status: DeliveryStatus::Published,
    };

    let m1 = alice.send(&mut ag, "one");
    let p = bob.p();
    // Decrypt and store, then fail (say the app's insert failed later): neither remains.
    let failed: Result<(), Error> = p.transaction(|p| {
        let Processed::Application { plaintext, .. } = process(&mut bg, p, &m1)? else {
            panic!("expected an application message")
        };
        assert!(bob.store.insert_message(&row(1, plaintext)).unwrap());
        Err(Error::Removed) // any error
    });
    assert!(failed.is_err());
    assert_eq!(bob.store.count(Table::Messages).unwrap(), 0);
    // The ratchet step was rolled back too: the same ciphertext decrypts again.
    let mut bg = load_group(&p, GROUP).unwrap().unwrap();
    p.transaction(|p| {
        let Processed::Application { plaintext, .. } = process(&mut bg, p, &m1)? else {
            panic!("expected an application message")
        };
        assert_eq!(plaintext, b"one");
        bob.store.insert_message(&row(1, plaintext)).unwrap();
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(bob.store.count(Table::Messages).unwrap(), 1);
    let err = process(&mut bg, &p, &m1).unwrap_err();
    assert!(matches!(err, Error::Undecryptable(_)), "{err:?}");
}

#[test]
fn a_failed_operation_inside_a_transaction_leaves_it_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut ag, bob, mut bg) = pair(dir.path());
    let m = alice.send(&mut ag, "kept");
    // Two commits: bob gets only the second (for epoch 2 while he is at 1).
    let carol = Install::new(dir.path(), "carol");
    let dave = Install::new(dir.path(), "dave");
    add(&alice, &mut ag, &carol);
    let (second, _) = add(&alice, &mut ag, &dave);

    let conn = bob.store.conn();
    conn.execute_batch("BEGIN").unwrap();
    bob.store.set_setting("marker", b"1").unwrap();
    process(&mut bg, &bob.p(), b"junk").unwrap_err();
    let err = process(&mut bg, &bob.p(), &second).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongEpoch {
                message: 2,
                group: 1
            }
        ),
        "{err:?}"
    );
    assert!(
        !conn.is_autocommit(),
        "the failures did not end the caller's transaction"
    );
    bob.receive(&mut bg, &m, &alice, "kept");
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(bob.store.setting("marker").unwrap(), Some(b"1".to_vec()));
    // The ratchet step of "kept" was committed with the marker: it does not decrypt twice.
    let mut reloaded = load_group(&bob.p(), GROUP).unwrap().unwrap();
    let err = process(&mut reloaded, &bob.p(), &m).unwrap_err();
    assert!(matches!(err, Error::Undecryptable(_)), "{err:?}");
}

#[test]
fn an_operation_that_fails_midway_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Install::new(dir.path(), "alice");
    let bob = Install::new(dir.path(), "bob");
    let kp = bob.key_package();
    let mut ag = create_group(&alice.p(), &alice.id, GROUP).unwrap();
    let (_, welcome) = add_members(&mut ag, &alice.p(), &alice.id, &[&kp]).unwrap();

    // Make the last part of a join (writing the group's state) fail, after openmls has
    // already deleted the key package the welcome used.
    let conn = bob.store.conn();
    conn.execute_batch(
        "CREATE TEMP TRIGGER fail_group_writes BEFORE INSERT ON openmls_group_data
         BEGIN SELECT RAISE(ABORT, 'disk full, say'); END",
    )
    .unwrap();
    let err = join_from_welcome(&bob.p(), &welcome).unwrap_err();
    assert!(matches!(err, Error::Sqlite(_)), "{err:?}");
    assert!(conn.is_autocommit(), "no transaction left open");
    assert!(load_group(&bob.p(), GROUP).unwrap().is_none());
    conn.execute_batch("DROP TRIGGER fail_group_writes")
        .unwrap();

    // The key package deletion was rolled back with the rest: the same welcome still works.
    let mut bg = join_from_welcome(&bob.p(), &welcome).unwrap();
    let m = alice.send(&mut ag, "made it");
    bob.receive(&mut bg, &m, &alice, "made it");
}

// migrations ---------------------------------------------------------------------------------

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn applied_openmls_migrations(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM openmls_sqlite_storage_migrations",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn openmls_migrations_leave_the_stores_user_version_alone() {
    let dir = tempfile::tempdir().unwrap();

    // Store first, then openmls.
    let path = dir.path().join("a.db");
    let mut store = Store::open(&path).unwrap();
    let store_version = user_version(store.conn());
    assert!(store_version >= 1);
    migrate(store.conn_mut()).unwrap();
    assert_eq!(user_version(store.conn()), store_version);
    let applied = applied_openmls_migrations(store.conn());
    assert!(applied >= 1);
    migrate(store.conn_mut()).unwrap(); // idempotent
    assert_eq!(applied_openmls_migrations(store.conn()), applied);
    drop(store);
    let mut store = Store::open(&path).unwrap(); // the store's migrations still see their number
    migrate(store.conn_mut()).unwrap();
    assert_eq!(user_version(store.conn()), store_version);
    let tables: Vec<String> = store
        .conn()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'openmls_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for t in [
        "openmls_group_data",
        "openmls_key_packages",
        "openmls_signature_keys",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }

    // openmls first, then the store: the store still runs all its own migrations.
    let path = dir.path().join("b.db");
    let mut conn = Connection::open(&path).unwrap();
    migrate(&mut conn).unwrap();
    assert_eq!(user_version(&conn), 0);
    drop(conn);
    let store = Store::open(&path).unwrap();
    assert_eq!(user_version(store.conn()), store_version);
    assert_eq!(store.count(ferry_store::Table::Messages).unwrap(), 0);

    // Migrations need the connection outside a transaction (each runs in its own).
    let mut store = store;
    store.conn().execute_batch("BEGIN").unwrap();
    assert!(matches!(
        migrate(store.conn_mut()),
        Err(Error::Migration(_))
    ));
    store.conn().execute_batch("ROLLBACK").unwrap();
    migrate(store.conn_mut()).unwrap();
}

// sizes --------------------------------------------------------------------------------------

#[test]
fn sizes() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Install::new(dir.path(), "alice");
    let bob = Install::new(dir.path(), "bob");
    let kp = bob.key_package();
    let lr = generate_key_package(&bob.p(), &bob.id, true).unwrap();
    let mut ag = create_group(&alice.p(), &alice.id, GROUP).unwrap();
    let (commit, welcome) = add_members(&mut ag, &alice.p(), &alice.id, &[&kp]).unwrap();
    let mut bg = join_from_welcome(&bob.p(), &welcome).unwrap();
    let app_100 = alice.send(&mut ag, &"x".repeat(100));
    bob.receive(&mut bg, &app_100, &alice, &"x".repeat(100));

    // Eight more members in one commit.
    let others: Vec<Install> = ["c", "d", "e", "f", "g", "h", "i", "j"]
        .into_iter()
        .map(|n| Install::new(dir.path(), n))
        .collect();
    let kps: Vec<Vec<u8>> = others.iter().map(|o| o.key_package()).collect();
    let refs: Vec<&[u8]> = kps.iter().map(|k| k.as_slice()).collect();
    let (commit8, welcome8) = add_members(&mut ag, &alice.p(), &alice.id, &refs).unwrap();
    process(&mut bg, &bob.p(), &commit8).unwrap();
    let remove = remove_members(&mut ag, &alice.p(), &alice.id, &[b"c"]).unwrap();
    let state: i64 = alice
        .store
        .conn()
        .query_row(
            "SELECT sum(length(group_data)) FROM openmls_group_data WHERE group_id = \
             (SELECT group_id FROM openmls_group_data LIMIT 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();

    let secrets: i64 = alice
        .store
        .conn()
        .query_row(
            "SELECT length(group_data) FROM openmls_group_data WHERE data_type = 'message_secrets'",
            [],
            |r| r.get(0),
        )
        .unwrap();

    println!("key package                      {:>6} B", kp.len());
    println!("key package (last resort)        {:>6} B", lr.len());
    println!("commit adding 1                  {:>6} B", commit.len());
    println!("welcome for 1 (tree of 2)        {:>6} B", welcome.len());
    println!("application message, 100 B text  {:>6} B", app_100.len());
    println!("commit adding 8 (to 10)          {:>6} B", commit8.len());
    println!("welcome for 8 (tree of 10)       {:>6} B", welcome8.len());
    println!("commit removing 1 (of 10)        {:>6} B", remove.len());
    println!(
        "group state on disk, 9 members   {:>6} B (openmls_group_data, JSON)",
        state
    );
    println!(
        "  of which message secrets       {:>6} B (rewritten on every send/receive)",
        secrets
    );

    assert!(kp.len() > 200 && kp.len() < 1000, "{}", kp.len());
    assert!(lr.len() > kp.len());
    assert!(welcome8.len() > welcome.len());
    assert!(app_100.len() > 100 && app_100.len() < 400);
}
