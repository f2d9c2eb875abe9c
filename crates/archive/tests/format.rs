//! Format-level tests: round trips, every tamper class, truncation, and reads of any size.

use std::io::Read;

use ferry_archive::proto::{Consent, Message, Metadata};
use ferry_archive::{
    ArchiveKey, ArchiveReader, ArchiveWriter, Argon2Params, Element, Error, KeyKind, WriterOptions,
    HEADER_LEN,
};

fn metadata() -> Metadata {
    Metadata {
        attachment_count: 0,
        attachment_piece_count: 0,
        created_at_ns: 42,
        start_ns: Some(10),
        end_ns: Some(20),
        elements: vec![1, 2],
        inbox_id: "inbox-a".into(),
        installation_id: vec![7; 32],
        conversation_count: 0,
        message_count: 3000,
        consent_count: 1,
        label: "before the trip".into(),
        producer: "test".into(),
    }
}

fn message(i: u64) -> Element {
    // Pseudo-random text so chunks do not compress to nothing.
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let text: String = (0..(i % 97 + 5))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    Element::Message(Message {
        id: id.to_vec(),
        conversation_id: vec![1; 16],
        sender_inbox_id: format!("sender-{}", i % 5),
        sent_at_ns: i as i64,
        content: text.into_bytes(),
        ..Default::default()
    })
}

fn elements(n: u64) -> Vec<Element> {
    let mut v: Vec<Element> = (0..n).map(message).collect();
    v.push(Element::Consent(Consent {
        entity: "inbox-b".into(),
        state: 2,
        entity_type: 2,
        updated_at_ns: 5,
    }));
    v
}

fn small_opts(threads: usize) -> WriterOptions {
    WriterOptions {
        segment_size: 4096,
        threads,
        ..WriterOptions::default()
    }
}

fn build(key: &ArchiveKey, els: &[Element], opts: &WriterOptions) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), key, metadata(), opts).unwrap();
    for e in els {
        w.write(e.clone()).unwrap();
    }
    let (bytes, summary) = w.finish().unwrap();
    assert_eq!(summary.bytes_written as usize, bytes.len());
    bytes
}

fn read_all<R: Read>(r: R, key: &ArchiveKey) -> Result<(Metadata, Vec<Element>), Error> {
    let mut r = ArchiveReader::open(r, key)?;
    let meta = r.metadata().clone();
    let mut out = Vec::new();
    while let Some(e) = r.next_element()? {
        out.push(e);
    }
    Ok((meta, out))
}

/// (offset, total length) of every chunk, length prefix included.
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

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[9u8; 32]).unwrap()
}

struct Fixture {
    bytes: Vec<u8>,
    chunks: Vec<(usize, usize)>,
}

fn fixture() -> Fixture {
    let bytes = build(&key(), &elements(3000), &small_opts(2));
    let chunks = chunks(&bytes);
    assert!(chunks.len() > 10, "want many chunks, got {}", chunks.len());
    Fixture { bytes, chunks }
}

#[test]
fn round_trip_keeps_every_element_and_the_metadata() {
    let els = elements(3000);
    for threads in [0, 1, 2, 4] {
        let bytes = build(&key(), &els, &small_opts(threads));
        let (meta, got) = read_all(&bytes[..], &key()).unwrap();
        assert_eq!(meta, metadata());
        assert_eq!(got, els, "threads = {threads}");
    }
}

#[test]
fn empty_archive_round_trips() {
    let bytes = build(&key(), &[], &WriterOptions::default());
    let (meta, got) = read_all(&bytes[..], &key()).unwrap();
    assert_eq!(meta.label, "before the trip");
    assert!(got.is_empty());
    // Header, metadata chunk, one (empty) final chunk.
    assert_eq!(chunks(&bytes).len(), 2);
}

#[test]
fn same_key_gives_fresh_salt_and_different_bytes() {
    let a = build(&key(), &elements(10), &small_opts(0));
    let b = build(&key(), &elements(10), &small_opts(0));
    assert_ne!(a[28..60], b[28..60], "salt must differ");
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn reads_of_one_byte_and_odd_sizes_give_the_same_elements() {
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        n: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // Vary the size per call: 1, then step, then 1 + step / 2, ...
            self.n += 1;
            let want = match self.n % 3 {
                0 => 1,
                1 => self.step,
                _ => 1 + self.step / 2,
            };
            let k = want.min(buf.len()).min(self.data.len());
            buf[..k].copy_from_slice(&self.data[..k]);
            self.data = &self.data[k..];
            Ok(k)
        }
    }
    let f = fixture();
    let expected = read_all(&f.bytes[..], &key()).unwrap();
    for step in [1, 3, 7, 4093, 65537] {
        let got = read_all(
            Trickle {
                data: &f.bytes,
                step,
                n: 0,
            },
            &key(),
        )
        .unwrap();
        assert_eq!(got, expected, "step {step}");
    }
}

#[test]
fn wrong_key_is_reported_as_wrong_key() {
    let f = fixture();
    let err = read_all(&f.bytes[..], &ArchiveKey::from_bytes(&[8u8; 32]).unwrap()).unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
    assert!(err.to_string().starts_with("wrong key"));
}

#[test]
fn keys_of_31_and_33_bytes_are_refused() {
    for n in [0, 31, 33, 64] {
        let err = ArchiveKey::from_bytes(&vec![1u8; n]).unwrap_err();
        assert!(matches!(err, Error::KeyLength(m) if m == n));
        assert_eq!(
            err.to_string(),
            format!("archive key must be exactly 32 bytes, got {n}")
        );
    }
}

#[test]
fn key_files_hold_raw_bytes_or_hex() {
    let raw = [0xabu8; 32];
    let a = ArchiveKey::from_key_file(&raw).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let b = ArchiveKey::from_key_file(format!("{hex}\n").as_bytes()).unwrap();
    let c = ArchiveKey::from_key_file(hex.to_uppercase().as_bytes()).unwrap();
    assert_eq!(a.raw_bytes(), b.raw_bytes());
    assert_eq!(a.raw_bytes(), c.raw_bytes());
    for bad in [&b"short"[..], &[0u8; 33][..], &[b'g'; 64][..]] {
        assert!(matches!(
            ArchiveKey::from_key_file(bad).unwrap_err(),
            Error::KeyFileFormat
        ));
    }
}

#[test]
fn not_an_archive() {
    for junk in [
        &b""[..],
        b"hello world, this is not an archive at all......",
        &[0u8; 200],
    ] {
        let err = read_all(junk, &key()).unwrap_err();
        assert!(matches!(err, Error::NotAnArchive), "{err}");
    }
}

#[test]
fn newer_major_version_is_refused_before_the_key_is_checked() {
    let mut f = fixture();
    f.bytes[8] = 2;
    let err = read_all(&f.bytes[..], &ArchiveKey::from_bytes(&[0u8; 32]).unwrap()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { major: 2, minor: 0 }),
        "{err}"
    );
    // Even with only the first ten bytes present.
    let err = read_all(&f.bytes[..10], &key()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
}

#[test]
fn a_flipped_byte_anywhere_in_the_header_is_detected() {
    let f = fixture();
    for i in 0..HEADER_LEN {
        let mut b = f.bytes.clone();
        b[i] ^= 0x01;
        let err = read_all(&b[..], &key()).unwrap_err();
        let ok = match i {
            0..=7 => matches!(err, Error::NotAnArchive),
            8 => matches!(err, Error::UnsupportedVersion { .. }),
            _ => matches!(err, Error::HeaderCorrupted),
        };
        assert!(ok, "byte {i}: {err:?}");
    }
}

#[test]
fn a_header_changed_with_a_fixed_checksum_fails_authentication() {
    let f = fixture();
    let fix_crc = |b: &mut Vec<u8>| {
        let crc = crc32(&b[..108]);
        b[108..112].copy_from_slice(&crc.to_le_bytes());
    };
    // The minor version (authenticated by the MAC, not by the key check).
    let mut b = f.bytes.clone();
    b[9] = 7;
    fix_crc(&mut b);
    assert!(matches!(
        read_all(&b[..], &key()).unwrap_err(),
        Error::HeaderTampered
    ));
    // The MAC itself.
    let mut b = f.bytes.clone();
    b[80] ^= 0x40;
    fix_crc(&mut b);
    assert!(matches!(
        read_all(&b[..], &key()).unwrap_err(),
        Error::HeaderTampered
    ));
    // The salt: every derived key changes, so the key check fails.
    let mut b = f.bytes.clone();
    b[30] ^= 0x40;
    fix_crc(&mut b);
    assert!(matches!(
        read_all(&b[..], &key()).unwrap_err(),
        Error::WrongKey(_)
    ));
}

fn crc32(data: &[u8]) -> u32 {
    // IEEE CRC-32, bitwise: independent of the crate under test.
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_flipped_byte_in_metadata_middle_and_last_chunks_is_detected() {
    let f = fixture();
    let n = f.chunks.len();
    for (ci, expect_index) in [
        (0usize, 0u64),
        (n / 2, (n / 2) as u64),
        (n - 1, (n - 1) as u64),
    ] {
        let (off, len) = f.chunks[ci];
        for pos in [off + 4, off + len / 2, off + len - 1] {
            let mut b = f.bytes.clone();
            b[pos] ^= 0x80;
            let err = read_all(&b[..], &key()).unwrap_err();
            assert!(
                matches!(err, Error::ChunkCorrupted { index } if index == expect_index),
                "chunk {ci} byte {pos}: {err:?}"
            );
        }
    }
}

#[test]
fn a_changed_chunk_length_is_detected() {
    let f = fixture();
    let (off, _) = f.chunks[3];
    for delta in [1i64, -1, 1 << 30] {
        let mut b = f.bytes.clone();
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as i64 + delta;
        b[off..off + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let err = read_all(&b[..], &key()).unwrap_err();
        assert!(
            matches!(err, Error::ChunkCorrupted { .. } | Error::Truncated),
            "delta {delta}: {err:?}"
        );
    }
}

#[test]
fn truncation_at_and_between_chunk_boundaries_is_detected() {
    let f = fixture();
    let mut cuts = vec![0, 5, 10, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 2];
    for &(off, len) in &f.chunks[1..] {
        cuts.extend([off, off + 1, off + 3, off + 4, off + len / 2, off + len - 1]);
    }
    for cut in cuts {
        let err = read_all(&f.bytes[..cut], &key()).unwrap_err();
        let ok = match cut {
            0 => matches!(err, Error::NotAnArchive),
            _ => matches!(err, Error::Truncated),
        };
        assert!(ok, "cut at {cut}: {err:?}");
    }
}

fn reassemble(f: &Fixture, order: &[usize]) -> Vec<u8> {
    let mut b = f.bytes[..HEADER_LEN].to_vec();
    for &i in order {
        let (off, len) = f.chunks[i];
        b.extend_from_slice(&f.bytes[off..off + len]);
    }
    b
}

#[test]
fn chunks_swapped_duplicated_or_dropped_are_detected() {
    let f = fixture();
    let n = f.chunks.len();
    let all: Vec<usize> = (0..n).collect();
    let mut cases: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut swapped = all.clone();
    swapped.swap(2, 3);
    cases.push(("swap middle", swapped));
    let mut swapped_last = all.clone();
    swapped_last.swap(n - 2, n - 1);
    cases.push(("swap last two", swapped_last));
    let mut dup = all.clone();
    dup.insert(4, 4);
    cases.push(("duplicate middle", dup));
    let mut dup_last = all.clone();
    dup_last.push(n - 1);
    cases.push(("duplicate last", dup_last));
    let mut dropped = all.clone();
    dropped.remove(5);
    cases.push(("drop middle", dropped));
    let mut drop_first = all.clone();
    drop_first.remove(0);
    cases.push(("drop metadata", drop_first));
    for (name, order) in cases {
        let b = reassemble(&f, &order);
        let err = read_all(&b[..], &key()).unwrap_err();
        assert!(
            matches!(err, Error::ChunkCorrupted { .. } | Error::TrailingData),
            "{name}: {err:?}"
        );
    }
    // Dropping the final chunk is a truncation at a chunk boundary.
    let b = reassemble(&f, &all[..n - 1]);
    assert!(matches!(
        read_all(&b[..], &key()).unwrap_err(),
        Error::Truncated
    ));
}

#[test]
fn bytes_appended_are_detected() {
    let f = fixture();
    for extra in [&[0u8][..], &[1, 2, 3], &[0, 0, 0, 0], &[5u8; 100]] {
        let mut b = f.bytes.clone();
        b.extend_from_slice(extra);
        let err = read_all(&b[..], &key()).unwrap_err();
        assert!(
            matches!(err, Error::TrailingData),
            "{} bytes: {err:?}",
            extra.len()
        );
    }
    // A whole second archive appended.
    let mut b = f.bytes.clone();
    b.extend_from_slice(&f.bytes);
    assert!(matches!(
        read_all(&b[..], &key()).unwrap_err(),
        Error::TrailingData
    ));
}

#[test]
fn metadata_is_readable_from_the_first_chunk_alone() {
    let f = fixture();
    let (off, len) = f.chunks[1];
    // Header, metadata chunk, and the next chunk's length: all `open` reads.
    let r = ArchiveReader::open(&f.bytes[..off + 4], &key()).unwrap();
    assert_eq!(r.metadata(), &metadata());
    assert_eq!(r.bytes_read() as usize, off + 4);
    let _ = len;
}

#[test]
fn passphrase_archives_say_so_and_check_the_passphrase() {
    let opts = WriterOptions {
        // Small cost so the test is quick; the defaults are measured in the docs.
        kdf: Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..small_opts(0)
    };
    let pass = ArchiveKey::passphrase("correct horse battery staple");
    let bytes = build(&pass, &elements(50), &opts);
    let header = ferry_archive::read_header(&mut &bytes[..]).unwrap();
    assert!(matches!(header.key_kind, KeyKind::Passphrase(p) if p.m_cost_kib == 64));
    let (_, got) = read_all(&bytes[..], &pass).unwrap();
    assert_eq!(got, elements(50));
    let err = read_all(&bytes[..], &ArchiveKey::passphrase("wrong")).unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
    assert!(err.to_string().contains("passphrase"));
    let err = read_all(&bytes[..], &key()).unwrap_err();
    assert!(matches!(err, Error::KeyKindMismatch { .. }), "{err}");
    // And the other way round.
    let raw = build(&key(), &elements(1), &small_opts(0));
    assert!(matches!(
        read_all(&raw[..], &pass).unwrap_err(),
        Error::KeyKindMismatch { .. }
    ));
}

#[test]
fn oversized_elements_are_refused_by_the_writer() {
    let mut w = ArchiveWriter::new(Vec::new(), &key(), metadata(), &small_opts(0)).unwrap();
    let big = Element::Message(Message {
        content: vec![0; ferry_archive::MAX_FRAME as usize + 1],
        ..Default::default()
    });
    assert!(matches!(
        w.write(big).unwrap_err(),
        Error::FrameTooLarge { .. }
    ));
}

#[test]
fn unknown_element_kinds_are_returned_as_unknown_and_counted() {
    let mut w = ArchiveWriter::new(Vec::new(), &key(), metadata(), &small_opts(0)).unwrap();
    w.write(message(1)).unwrap();
    // An ArchiveElement whose only field is number 15 (a kind a newer 1.x writer might add):
    // tag (15 << 3 | 2), length 3, "new".
    w.write_encoded(&[0x7a, 3, b'n', b'e', b'w']).unwrap();
    w.write(message(2)).unwrap();
    let (bytes, _) = w.finish().unwrap();
    let mut r = ArchiveReader::open(&bytes[..], &key()).unwrap();
    assert_eq!(r.next_element().unwrap(), Some(message(1)));
    assert_eq!(r.next_element().unwrap(), Some(Element::Unknown));
    assert_eq!(r.next_element().unwrap(), Some(message(2)));
    assert_eq!(r.next_element().unwrap(), None);
    assert_eq!(r.unknown_skipped(), 1);
}

#[test]
fn metadata_that_does_not_fit_one_segment_is_refused_by_the_writer() {
    let big = Metadata {
        label: "x".repeat(5000),
        ..metadata()
    };
    let err = ArchiveWriter::new(Vec::new(), &key(), big, &small_opts(0))
        .err()
        .unwrap();
    assert!(err.to_string().contains("label"), "{err}");
}

/// Found by fuzzing (`fuzz/artifacts-found/archive-reader-continues-after-error.ferry`): an
/// archive with a second metadata element between two consent records. The reader used to
/// go on after the error and end cleanly; now it stays failed.
#[test]
fn a_reader_stays_failed_after_an_error() {
    let bytes = include_bytes!("data/reader-continues-after-error.ferry");
    let key = ArchiveKey::from_bytes(&(0u8..32).collect::<Vec<u8>>()).unwrap();
    let mut r = ArchiveReader::open(&bytes[..], &key).unwrap();
    assert!(matches!(r.next_element(), Ok(Some(Element::Consent(_)))));
    let first = r.next_element().unwrap_err();
    assert!(
        matches!(first, Error::Malformed(ref m) if m.contains("second metadata")),
        "{first}"
    );
    for _ in 0..3 {
        let again = r.next_element().unwrap_err();
        assert!(
            matches!(again, Error::Malformed(ref m) if m.contains("earlier error")),
            "{again}"
        );
    }
}
