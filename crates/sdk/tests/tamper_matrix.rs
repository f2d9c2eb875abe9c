//! The tamper matrix (issue 6): a real archive of a real store, damaged every way the format
//! has to catch — every byte of the header and of the first and last chunks flipped, one flip
//! in every chunk, truncation at every chunk boundary and one byte either side, chunks
//! swapped, duplicated and dropped, bytes appended — each refused with its typed error while
//! the target store stays exactly as it was (a dump of every table compared before and after).
//! The same matrix runs on an unsigned archive (format 1.0) and on a signed one (1.1, whose
//! final chunk is the signature).

use std::sync::Arc;

use ferry_archive::{Ed25519Signer, Error as ArchiveError, WriterOptions, HEADER_LEN};
use ferry_sdk::archive::{self, ArchiveElement, ArchiveOptions, Control, Origin, SignatureStatus};
use ferry_sdk::dev::{seed, SeedOptions};
use ferry_sdk::store::Store;
use ferry_sdk::{ArchiveKey, Error};

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[0x5a; 32]).unwrap()
}

/// (offset, length with its 4-byte length prefix) of every chunk.
fn chunks(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 4 + len));
        at += 4 + len;
    }
    assert_eq!(at, bytes.len());
    out
}

struct Matrix {
    _dir: tempfile::TempDir,
    target: Store,
    before: Vec<String>,
    file: std::path::PathBuf,
    cases: usize,
}

impl Matrix {
    /// Imports `bytes` into the target; it must fail as `expected` says and change nothing.
    fn refuse(&mut self, case: &str, bytes: &[u8], expected: impl Fn(&ArchiveError) -> bool) {
        std::fs::write(&self.file, bytes).unwrap();
        let err = archive::import_archive(&mut self.target, &self.file, &key(), &Control::new())
            .expect_err(case);
        match &err {
            Error::Archive(e) => assert!(expected(e), "{case}: unexpected error {e:?}"),
            other => panic!("{case}: not an archive error: {other:?}"),
        }
        assert_eq!(
            self.target.dump().unwrap(),
            self.before,
            "{case}: the store changed"
        );
        self.cases += 1;
    }
}

fn setup(signed: bool) -> (Matrix, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    // The source: a seeded store, written with small segments so the archive has many chunks.
    let mut source = Store::open(dir.path().join("source.db")).unwrap();
    seed(
        &mut source,
        &SeedOptions {
            conversations: 4,
            messages: 600,
            consent: 5,
            self_inbox_id: "me".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let path = dir.path().join("good.ferry");
    archive::create_archive_with(
        &source,
        &path,
        &key(),
        &ArchiveOptions {
            elements: vec![ArchiveElement::Messages, ArchiveElement::Consent],
            ..Default::default()
        },
        &if signed {
            Origin {
                signer: Some(Arc::new(Ed25519Signer::from_seed("me", &[7; 32]))),
                ..Default::default()
            }
        } else {
            Origin::of_store(&source).unwrap()
        },
        &Control::new(),
        &WriterOptions {
            segment_size: 4096,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let good = std::fs::read(&path).unwrap();
    // The target already holds part of the same history and something of its own.
    let mut target = Store::open(dir.path().join("target.db")).unwrap();
    seed(
        &mut target,
        &SeedOptions {
            conversations: 2,
            messages: 50,
            consent: 2,
            seed: 7,
            self_inbox_id: "me".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let before = target.dump().unwrap();
    let file = dir.path().join("damaged.ferry");
    (
        Matrix {
            _dir: dir,
            target,
            before,
            file,
            cases: 0,
        },
        good,
    )
}

fn reassemble(good: &[u8], parts: &[(usize, usize)], order: &[usize]) -> Vec<u8> {
    let mut b = good[..HEADER_LEN].to_vec();
    for &i in order {
        let (off, len) = parts[i];
        b.extend_from_slice(&good[off..off + len]);
    }
    b
}

fn corrupted(index: usize) -> impl Fn(&ArchiveError) -> bool {
    move |e| matches!(e, ArchiveError::ChunkCorrupted { index: i } if *i == index as u64)
}

/// A flipped byte of a chunk's length prefix makes the chunk look longer or shorter: the
/// reader finds a chunk that fails authentication, or runs out of bytes.
fn length_damage(e: &ArchiveError) -> bool {
    matches!(
        e,
        ArchiveError::ChunkCorrupted { .. } | ArchiveError::Truncated | ArchiveError::TrailingData
    )
}

#[test]
fn every_kind_of_damage_is_refused_with_its_error_and_the_store_is_unchanged() {
    matrix(false);
}

#[test]
fn every_kind_of_damage_to_a_signed_archive_is_refused_the_same_way() {
    matrix(true);
}

fn matrix(signed: bool) {
    let (mut m, good) = setup(signed);
    assert_eq!(good[9], signed as u8, "minor version");
    let parts = chunks(&good);
    let n = parts.len();
    assert!(n >= 8, "the archive has many chunks ({n})");
    // The intact archive imports (so the refusals below are about the damage alone), into a
    // copy of the target.
    {
        let copy = m.file.with_file_name("copy.db");
        std::fs::copy(m.file.with_file_name("target.db"), &copy).unwrap();
        std::fs::write(&m.file, &good).unwrap();
        let mut s = Store::open(&copy).unwrap();
        let r = archive::import_archive(&mut s, &m.file, &key(), &Control::new()).unwrap();
        assert!(r.messages_imported > 0);
        let want = if signed {
            SignatureStatus::Valid
        } else {
            SignatureStatus::Unsigned
        };
        assert_eq!(r.signature, want);
    }

    // Every byte of the header.
    for i in 0..HEADER_LEN {
        let mut b = good.clone();
        b[i] ^= 0x01;
        m.refuse(&format!("header byte {i}"), &b, |e| match i {
            0..=7 => matches!(e, ArchiveError::NotAnArchive),
            8 => matches!(e, ArchiveError::UnsupportedVersion { .. }),
            _ => matches!(e, ArchiveError::HeaderCorrupted),
        });
    }
    // Every byte of the first chunk (the metadata) and of the last chunk.
    for ci in [0, n - 1] {
        let (off, len) = parts[ci];
        for pos in off..off + len {
            let mut b = good.clone();
            b[pos] ^= 0x80;
            let case = format!("chunk {ci} byte {}", pos - off);
            if pos < off + 4 {
                m.refuse(&case, &b, length_damage);
            } else {
                m.refuse(&case, &b, corrupted(ci));
            }
        }
    }
    // One flip inside every chunk.
    for (ci, &(off, len)) in parts.iter().enumerate() {
        let mut b = good.clone();
        b[off + 4 + (len - 4) / 2] ^= 0x10;
        m.refuse(&format!("chunk {ci} middle"), &b, corrupted(ci));
    }
    // Truncation at every chunk boundary and one byte either side.
    for (ci, &(off, _)) in parts.iter().enumerate() {
        for cut in [off - 1, off, off + 1] {
            m.refuse(&format!("cut at {cut} (chunk {ci})"), &good[..cut], |e| {
                matches!(e, ArchiveError::Truncated)
            });
        }
    }
    m.refuse("cut one byte short", &good[..good.len() - 1], |e| {
        matches!(e, ArchiveError::Truncated)
    });
    // Chunks swapped, duplicated, dropped.
    let all: Vec<usize> = (0..n).collect();
    for i in 0..n - 1 {
        let mut order = all.clone();
        order.swap(i, i + 1);
        m.refuse(
            &format!("swap {i} and {}", i + 1),
            &reassemble(&good, &parts, &order),
            |e| matches!(e, ArchiveError::ChunkCorrupted { .. }),
        );
    }
    for i in 0..n {
        let mut dup = all.clone();
        dup.insert(i, i);
        m.refuse(
            &format!("duplicate {i}"),
            &reassemble(&good, &parts, &dup),
            |e| {
                matches!(
                    e,
                    ArchiveError::ChunkCorrupted { .. } | ArchiveError::TrailingData
                )
            },
        );
        let mut dropped = all.clone();
        dropped.remove(i);
        m.refuse(
            &format!("drop {i}"),
            &reassemble(&good, &parts, &dropped),
            |e| {
                if i == n - 1 {
                    // The last chunk gone is a cut at a chunk boundary.
                    matches!(e, ArchiveError::Truncated)
                } else {
                    matches!(e, ArchiveError::ChunkCorrupted { .. })
                }
            },
        );
    }
    // Bytes appended.
    for extra in [&[0u8][..], &[0, 0, 0, 0], &[7u8; 64]] {
        let mut b = good.clone();
        b.extend_from_slice(extra);
        m.refuse(&format!("{} bytes appended", extra.len()), &b, |e| {
            matches!(e, ArchiveError::TrailingData)
        });
    }
    let mut twice = good.clone();
    twice.extend_from_slice(&good);
    m.refuse("the archive appended to itself", &twice, |e| {
        matches!(e, ArchiveError::TrailingData)
    });
    // Sanity: the matrix is as large as it says.
    let (first, last) = (parts[0].1, parts[n - 1].1);
    assert_eq!(
        m.cases,
        HEADER_LEN + first + last + n + 3 * n + 1 + (n - 1) + 2 * n + 4
    );
    eprintln!("{} damaged archives refused, {n} chunks", m.cases);
}
