//! The storage conformance suite: every test body runs on both backends, SQLite and
//! PostgreSQL (a throwaway cluster started by the tests, one database per test), through the
//! `NodeStorage` trait alone. "Two replicas" are two storages opened on one database: two
//! connections to one SQLite file, or two connection pools on one PostgreSQL database.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use ferry_node::{
    Database, InstallationChange, NodeStorage, PostgresStorage, SqliteStorage, StorageError,
};
use ferry_proto::identity::IdentityUpdate;
use ferry_proto::node::{GroupMessageInput, WelcomeInput};

/// A database of one backend, which tests open as often as they want replicas.
struct Db {
    database: Database,
    _dir: tempfile::TempDir,
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        Db {
            database: Database::Sqlite(dir.path().join("node.db")),
            _dir: dir,
        }
    }

    fn postgres() -> Db {
        Db {
            database: Database::parse(&ferry_testkit::Postgres::shared().fresh_database()),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    fn open(&self) -> Arc<dyn NodeStorage> {
        self.database.open().expect("storage opens")
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Db::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Db::postgres()) } )*
        }
    };
}

conformance!(
    group_messages_get_increasing_ids_and_page_per_group,
    rival_commits_are_kept_in_arrival_order,
    welcomes_page_per_installation,
    the_global_tail_and_heads_follow_every_write,
    identity_log_appends_in_order_and_refuses_a_taken_position,
    an_installation_belongs_to_one_inbox,
    revoking_drops_key_packages,
    key_package_regular_once_then_last_resort,
    a_request_nonce_is_accepted_once,
    concurrent_appends_to_one_inbox_on_two_replicas_never_fork,
    a_key_package_is_handed_out_once_across_replicas,
    ids_from_two_replicas_are_unique_and_page_without_gaps,
    reopening_keeps_everything,
);

/// Runs `work(thread)` on `threads` threads at once (released together by a barrier), thread
/// `t` on replica `t % 2`, and returns what each returned, in thread order.
fn race<T: Send + 'static>(
    replicas: &[Arc<dyn NodeStorage>; 2],
    threads: usize,
    work: impl Fn(usize, &dyn NodeStorage) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(threads));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = Arc::clone(&replicas[t % 2]);
            let (barrier, work) = (Arc::clone(&barrier), Arc::clone(&work));
            std::thread::spawn(move || {
                barrier.wait();
                work(t, s.as_ref())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn msg(group: &[u8], data: &[u8], epoch: Option<u64>) -> GroupMessageInput {
    GroupMessageInput {
        group_id: group.to_vec(),
        data: data.to_vec(),
        commit_epoch: epoch,
    }
}

fn update(n: u8) -> IdentityUpdate {
    IdentityUpdate {
        unsigned: vec![n],
        ..Default::default()
    }
}

fn group_messages_get_increasing_ids_and_page_per_group(db: Db) {
    let s = db.open();
    let first = s
        .insert_group_messages(&[msg(b"a", b"a1", None), msg(b"b", b"b1", None)], 10)
        .unwrap();
    let second = s
        .insert_group_messages(&[msg(b"a", b"a2", None), msg(b"a", b"a3", None)], 20)
        .unwrap();
    let ids: Vec<u64> = first.iter().chain(&second).map(|m| m.sequence_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(second[0].created_at_ns, 20);
    assert!(s.insert_group_messages(&[], 30).unwrap().is_empty());

    let a = s.query_group_messages(b"a", 0, 100).unwrap();
    let data: Vec<&[u8]> = a.iter().map(|m| m.data.as_slice()).collect();
    assert_eq!(data, [b"a1".as_slice(), b"a2", b"a3"]);
    // Paging by cursor.
    let page1 = s.query_group_messages(b"a", 0, 2).unwrap();
    let page2 = s
        .query_group_messages(b"a", page1[1].sequence_id, 2)
        .unwrap();
    assert_eq!(page1.len(), 2);
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].data, b"a3");
    assert!(s
        .query_group_messages(b"a", page2[0].sequence_id, 2)
        .unwrap()
        .is_empty());
    assert_eq!(s.query_group_messages(b"b", 0, 100).unwrap().len(), 1);
    assert!(s.query_group_messages(b"none", 0, 100).unwrap().is_empty());
    // A cursor beyond any id (u64 on the wire) is not an error.
    assert!(s
        .query_group_messages(b"a", u64::MAX, 10)
        .unwrap()
        .is_empty());
}

fn rival_commits_are_kept_in_arrival_order(db: Db) {
    let s = db.open();
    s.insert_group_messages(&[msg(b"g", b"c1", Some(1))], 1)
        .unwrap();
    s.insert_group_messages(&[msg(b"g", b"m", None), msg(b"g", b"c1'", Some(1))], 2)
        .unwrap();
    let all = s.query_group_messages(b"g", 0, 100).unwrap();
    let data: Vec<&[u8]> = all.iter().map(|m| m.data.as_slice()).collect();
    assert_eq!(data, [b"c1".as_slice(), b"m", b"c1'"]);
    // Epochs above i64::MAX are stored too (bit for bit).
    s.insert_group_messages(&[msg(b"g", b"big", Some(u64::MAX))], 3)
        .unwrap();
    assert_eq!(s.query_group_messages(b"g", 0, 100).unwrap().len(), 4);
}

fn welcomes_page_per_installation(db: Db) {
    let s = db.open();
    let w = |i: u8, d: &[u8]| WelcomeInput {
        installation_id: vec![i; 32],
        data: d.to_vec(),
    };
    let stored = s
        .insert_welcomes(&[w(1, b"w1"), w(2, b"w2"), w(1, b"w3")], 5)
        .unwrap();
    assert!(stored
        .windows(2)
        .all(|p| p[0].sequence_id < p[1].sequence_id));
    let mine = s.query_welcomes(&[1; 32], 0, 10).unwrap();
    let data: Vec<&[u8]> = mine.iter().map(|w| w.data.as_slice()).collect();
    assert_eq!(data, [b"w1".as_slice(), b"w3"]);
    assert_eq!(
        s.query_welcomes(&[1; 32], mine[0].sequence_id, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(s.query_welcomes(&[3; 32], 0, 10).unwrap().is_empty());
}

fn the_global_tail_and_heads_follow_every_write(db: Db) {
    let s = db.open();
    assert_eq!(s.heads().unwrap(), (0, 0));
    let m = s
        .insert_group_messages(&[msg(b"a", b"1", None), msg(b"b", b"2", None)], 1)
        .unwrap();
    let w = s
        .insert_welcomes(
            &[WelcomeInput {
                installation_id: vec![1; 32],
                data: b"w".to_vec(),
            }],
            1,
        )
        .unwrap();
    assert_eq!(s.heads().unwrap(), (m[1].sequence_id, w[0].sequence_id));
    let tail = s.group_messages_after(0, 10).unwrap();
    assert_eq!(tail, m);
    assert_eq!(
        s.group_messages_after(m[0].sequence_id, 10).unwrap(),
        &m[1..]
    );
    assert_eq!(s.group_messages_after(0, 1).unwrap(), &m[..1]);
    assert_eq!(s.welcomes_after(0, 10).unwrap(), w);
    assert!(s.welcomes_after(w[0].sequence_id, 10).unwrap().is_empty());
    // Waiting for writes returns (woken or timed out) without error.
    s.wait_for_writes(std::time::Duration::from_millis(10))
        .unwrap();
}

fn identity_log_appends_in_order_and_refuses_a_taken_position(db: Db) {
    let s = db.open();
    assert!(s.identity_log("inbox").unwrap().is_empty());
    s.append_identity_update("inbox", 0, &update(0), None)
        .unwrap();
    s.append_identity_update("inbox", 1, &update(1), None)
        .unwrap();
    let err = s
        .append_identity_update("inbox", 1, &update(9), None)
        .unwrap_err();
    assert!(
        matches!(err, StorageError::SequenceTaken { sequence: 1, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let err = s
        .append_identity_update("inbox", 0, &update(9), None)
        .unwrap_err();
    assert!(matches!(err, StorageError::SequenceTaken { .. }), "{err:?}");
    assert_eq!(s.identity_log("inbox").unwrap(), [update(0), update(1)]);
    assert!(s.identity_log("other").unwrap().is_empty());
}

fn an_installation_belongs_to_one_inbox(db: Db) {
    let s = db.open();
    let inst = vec![7u8; 32];
    s.append_identity_update(
        "a",
        0,
        &update(0),
        Some(&InstallationChange::Add(inst.clone())),
    )
    .unwrap();
    let record = s.installation(&inst).unwrap().unwrap();
    assert_eq!(record.inbox_id, "a");
    assert!(!record.revoked);
    let err = s
        .append_identity_update(
            "b",
            0,
            &update(0),
            Some(&InstallationChange::Add(inst.clone())),
        )
        .unwrap_err();
    match &err {
        StorageError::InstallationTaken { inbox_id, .. } => assert_eq!(inbox_id, "a"),
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    // All or nothing: b's update was not kept either.
    assert!(s.identity_log("b").unwrap().is_empty());
    assert!(s.installation(&[8; 32]).unwrap().is_none());
}

fn revoking_drops_key_packages(db: Db) {
    let s = db.open();
    let inst = vec![7u8; 32];
    s.append_identity_update(
        "a",
        0,
        &update(0),
        Some(&InstallationChange::Add(inst.clone())),
    )
    .unwrap();
    s.put_key_package(&inst, b"kp", false).unwrap();
    s.put_key_package(&inst, b"last", true).unwrap();
    s.append_identity_update(
        "a",
        1,
        &update(1),
        Some(&InstallationChange::Revoke(inst.clone())),
    )
    .unwrap();
    assert!(s.installation(&inst).unwrap().unwrap().revoked);
    assert_eq!(s.take_key_package(&inst).unwrap(), None);
}

fn key_package_regular_once_then_last_resort(db: Db) {
    let s = db.open();
    let inst = [1u8; 32];
    assert_eq!(s.take_key_package(&inst).unwrap(), None);
    s.put_key_package(&inst, b"old", false).unwrap();
    s.put_key_package(&inst, b"kp", false).unwrap(); // replaces
    s.put_key_package(&inst, b"last", true).unwrap();
    assert_eq!(
        s.take_key_package(&inst).unwrap().as_deref(),
        Some(&b"kp"[..])
    );
    assert_eq!(
        s.take_key_package(&inst).unwrap().as_deref(),
        Some(&b"last"[..])
    );
    assert_eq!(
        s.take_key_package(&inst).unwrap().as_deref(),
        Some(&b"last"[..])
    );
}

fn a_request_nonce_is_accepted_once(db: Db) {
    let s = db.open();
    let (a, b) = ([1u8; 32], [2u8; 32]);
    assert!(s.remember_request(&a, &[7; 16], 100, 0).unwrap());
    assert!(!s.remember_request(&a, &[7; 16], 101, 0).unwrap());
    assert!(s.remember_request(&b, &[7; 16], 102, 0).unwrap());
    // Another replica sees the same nonces: a replay through it is refused too.
    let other = db.open();
    assert!(!other.remember_request(&a, &[7; 16], 103, 0).unwrap());
}

/// Threads on two replicas race to append each position of one inbox's log: every position
/// gets exactly one update, the losers are told the position is taken, and the log is one
/// chain.
fn concurrent_appends_to_one_inbox_on_two_replicas_never_fork(db: Db) {
    let replicas = [db.open(), db.open()];
    const POSITIONS: u64 = 15;
    let mut winners: Vec<u64> = race(&replicas, 6, |t, s| {
        let mut won = Vec::new();
        for pos in 0..POSITIONS {
            // Each thread writes its own bytes at every position.
            let u = IdentityUpdate {
                unsigned: (pos * 100 + t as u64).to_be_bytes().to_vec(),
                ..Default::default()
            };
            loop {
                match s.append_identity_update("inbox", pos, &u, None) {
                    Ok(()) => {
                        won.push(pos);
                        break;
                    }
                    Err(StorageError::SequenceTaken { .. }) => break,
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        won
    })
    .concat();
    winners.sort();
    assert_eq!(
        winners,
        (0..POSITIONS).collect::<Vec<_>>(),
        "one winner per position"
    );
    let log = replicas[1].identity_log("inbox").unwrap();
    assert_eq!(log.len() as u64, POSITIONS);
    for (pos, u) in log.iter().enumerate() {
        let marker = u64::from_be_bytes(u.unsigned.as_slice().try_into().unwrap());
        assert_eq!(marker / 100, pos as u64, "position {pos}");
    }
}

/// Many members ask two replicas for one installation's key package at once: exactly one
/// gets the regular package, everyone else the last-resort one.
fn a_key_package_is_handed_out_once_across_replicas(db: Db) {
    let replicas = [db.open(), db.open()];
    let inst = [5u8; 32];
    for round in 0..5u8 {
        replicas[0]
            .put_key_package(&inst, &[b'k', round], false)
            .unwrap();
        replicas[1].put_key_package(&inst, b"last", true).unwrap();
        const THREADS: usize = 8;
        let got: Vec<Vec<u8>> = race(&replicas, THREADS, move |_, s| loop {
            match s.take_key_package(&inst) {
                Ok(kp) => return kp.expect("a package"),
                Err(e) if e.is_retryable() => continue,
                Err(e) => panic!("{e:?}"),
            }
        });
        let regular = got
            .iter()
            .filter(|kp| kp.as_slice() == [b'k', round])
            .count();
        assert_eq!(regular, 1, "round {round}: {got:?}");
        assert_eq!(
            got.iter().filter(|kp| kp.as_slice() == b"last").count(),
            THREADS - 1
        );
    }
}

/// Two replicas store batches into one group at once: ids are unique, each batch's ids are
/// consecutive in its order, and a reader paging by cursor sees every message once.
fn ids_from_two_replicas_are_unique_and_page_without_gaps(db: Db) {
    let replicas = [db.open(), db.open()];
    const THREADS: usize = 4;
    const BATCHES: usize = 25;
    let written: BTreeSet<u64> = race(&replicas, THREADS, |t, s| {
        let mut ids = Vec::new();
        for b in 0..BATCHES {
            let batch: Vec<_> = (0..3)
                .map(|i| msg(b"g", format!("{t}-{b}-{i}").as_bytes(), None))
                .collect();
            let stored = loop {
                match s.insert_group_messages(&batch, 1) {
                    Ok(stored) => break stored,
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => panic!("{e:?}"),
                }
            };
            assert!(stored
                .windows(2)
                .all(|w| w[0].sequence_id < w[1].sequence_id));
            ids.extend(stored.iter().map(|m| m.sequence_id));
        }
        ids
    })
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(written.len(), THREADS * BATCHES * 3, "ids are unique");
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let page = replicas[1].query_group_messages(b"g", cursor, 7).unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.sequence_id;
        seen.extend(page.iter().map(|m| m.sequence_id));
    }
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), written);
    assert_eq!(seen.len(), written.len());
}

fn reopening_keeps_everything(db: Db) {
    let s = db.open();
    s.append_identity_update("a", 0, &update(0), None).unwrap();
    let m = s
        .insert_group_messages(&[msg(b"g", b"1", None)], 1)
        .unwrap();
    drop(s);
    let s = db.open();
    assert_eq!(s.identity_log("a").unwrap(), [update(0)]);
    assert_eq!(s.query_group_messages(b"g", 0, 10).unwrap(), m);
    let next = s
        .insert_group_messages(&[msg(b"g", b"2", None)], 2)
        .unwrap();
    assert!(next[0].sequence_id > m[0].sequence_id);
}

#[test]
fn only_the_postgres_backend_is_shared() {
    let sqlite = SqliteStorage::in_memory().unwrap();
    assert!(!sqlite.is_shared());
    let url = ferry_testkit::Postgres::shared().fresh_database();
    let pg = PostgresStorage::open(&url, 2).unwrap();
    assert!(pg.is_shared());
}

#[test]
fn a_postgres_database_migrated_by_a_newer_node_is_refused() {
    let url = ferry_testkit::Postgres::shared().fresh_database();
    drop(PostgresStorage::open(&url, 2).unwrap());
    // Opening again finds nothing to migrate.
    drop(PostgresStorage::open(&url, 2).unwrap());
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM ferry_node_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known: Vec<i32> = ferry_node::POSTGRES_MIGRATIONS
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(versions, known, "each migration applied once");
    client
        .execute(
            "INSERT INTO ferry_node_migrations (version) VALUES ($1)",
            &[&(PostgresStorage::schema_version() + 1)],
        )
        .unwrap();
    let err = PostgresStorage::open(&url, 2).err().expect("refused");
    assert!(
        matches!(err, StorageError::UnsupportedVersion { .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
}
