//! Bad keys, bad versions, truncation, trailing bytes, oversized and corrupt records.

mod common;

use std::io::Cursor;

use common::{
    archive, element, frame, metadata, read_all, seal, seal_records, vector, within_time,
    FailsAtEnd, Scheme, ShortReads,
};
use ferry_xmtp_archive::proto::{backup_element::Element, ConsentSave};
use ferry_xmtp_archive::{XmtpError, XmtpReader, MAX_RECORD};

const ZERO_KEY: [u8; 32] = [0; 32];

fn small_archive_parts() -> ([u8; 32], [u8; 12], Vec<u8>) {
    let key = [4u8; 32];
    let n0 = [7u8; 12];
    let mut elements = vec![metadata(&[2], 1, None, None)];
    for i in 0..6 {
        elements.push(element(Element::Consent(ConsentSave {
            entity_type: 2,
            state: 2,
            entity: format!("inbox-{i}"),
            consented_at_ns: i,
        })));
    }
    let payload = seal_records(&key, n0, &elements, Scheme::Current);
    (key, n0, payload)
}

#[test]
fn wrong_key_fails_on_record_zero() {
    let bytes = vector();
    let mut key = ZERO_KEY;
    key[31] = 1;
    let err = XmtpReader::open(&bytes[..], &key).err().unwrap();
    assert!(
        matches!(err, XmtpError::WrongKeyOrCorrupted { record: 0 }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains("wrong key or corrupted xmtp archive"));
    assert_eq!(
        err.to_string(),
        "wrong key or corrupted xmtp archive (record 0)"
    );
}

#[test]
fn key_must_be_32_bytes() {
    let bytes = vector();
    for len in [0, 16, 31, 33, 64] {
        let key = vec![0u8; len];
        let err = XmtpReader::open(&bytes[..], &key).err().unwrap();
        assert!(
            matches!(err, XmtpError::KeyLength(n) if n == len),
            "{err:?}"
        );
    }
}

#[test]
fn only_version_0_is_read() {
    let mut bytes = vector();
    bytes[0] = 1;
    let err = XmtpReader::open(&bytes[..], &ZERO_KEY).err().unwrap();
    assert!(matches!(err, XmtpError::UnsupportedVersion(1)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "unsupported xmtp archive version 1 (only version 0 is supported)"
    );
    // The version is little-endian: bytes 00 01 are version 256.
    bytes[0] = 0;
    bytes[1] = 1;
    let err = XmtpReader::open(&bytes[..], &ZERO_KEY).err().unwrap();
    assert!(matches!(err, XmtpError::UnsupportedVersion(256)), "{err:?}");
}

#[test]
fn a_corrupt_record_in_the_middle_names_its_index_and_spends_the_reader() {
    let (key, n0, mut payload) = small_archive_parts();
    let spans = common::record_spans(&payload);
    let (start, len) = spans[3];
    payload[start + 4 + len / 2] ^= 0x01;
    let file = frame(0, n0, &payload);
    let mut r = XmtpReader::open(&file[..], &key).unwrap();
    assert!(r.next_record().unwrap().is_some());
    assert!(r.next_record().unwrap().is_some());
    let err = r.next_record().unwrap_err();
    assert!(
        matches!(err, XmtpError::WrongKeyOrCorrupted { record: 3 }),
        "{err:?}"
    );
    assert!(matches!(r.next_record(), Err(XmtpError::Spent)));
}

/// Every cut of the real vector fails; none reads as a clean, shorter archive.
#[test]
fn every_truncation_of_the_vector_is_an_error() {
    within_time(|| {
        let bytes = vector();
        for cut in 0..bytes.len() {
            let result = read_all(&bytes[..cut], &ZERO_KEY);
            match result {
                Err(XmtpError::NotXmtp) => assert!(cut < 18, "cut {cut}"),
                Err(XmtpError::Truncated) => assert!(cut >= 18, "cut {cut}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    });
}

#[test]
fn truncated_generated_archives_fail_even_with_tiny_reads() {
    within_time(|| {
        let (key, n0, payload) = small_archive_parts();
        let file = frame(0, n0, &payload);
        // Inside the nonce, early in the frame, in the middle, and near the end.
        for cut in [8, 20, 30, file.len() / 2, file.len() - 10, file.len() - 1] {
            for max in [1, 7, usize::MAX] {
                let result = read_all(
                    ShortReads {
                        inner: &file[..cut],
                        max,
                    },
                    &key,
                );
                assert!(
                    matches!(result, Err(XmtpError::Truncated) | Err(XmtpError::NotXmtp)),
                    "cut {cut}, reads of {max}: {result:?}"
                );
            }
        }
        assert_eq!(read_all(&file[..], &key).unwrap().1.len(), 6);
    });
}

/// A record that stops short inside a complete zstd frame.
#[test]
fn a_record_cut_short_inside_the_frame_is_truncated() {
    let (key, n0, payload) = small_archive_parts();
    for drop in [1, 10, 17] {
        let file = frame(0, n0, &payload[..payload.len() - drop]);
        let result = within_time(move || read_all(&file[..], &key));
        assert!(
            matches!(result, Err(XmtpError::Truncated)),
            "drop {drop}: {result:?}"
        );
    }
}

#[test]
fn bytes_after_the_zstd_frame_are_trailing_data() {
    within_time(|| {
        let bytes = vector();
        let second_frame = zstd::stream::encode_all(&b"more"[..], 3).unwrap();
        for extra in [vec![0u8], vec![0xAA; 100], second_frame] {
            let mut file = bytes.clone();
            file.extend_from_slice(&extra);
            for max in [1, 7, usize::MAX] {
                let mut r = XmtpReader::open(
                    ShortReads {
                        inner: &file[..],
                        max,
                    },
                    &ZERO_KEY,
                )
                .unwrap();
                let mut n = 0;
                let err = loop {
                    match r.next_record() {
                        Ok(Some(_)) => n += 1,
                        Ok(None) => panic!("trailing bytes went unnoticed"),
                        Err(e) => break e,
                    }
                };
                assert_eq!(n, 3, "all records are still read first");
                assert!(matches!(err, XmtpError::TrailingData), "{err:?}");
                assert_eq!(
                    err.to_string(),
                    "xmtp archive has trailing bytes after its last record"
                );
                assert!(matches!(r.next_record(), Err(XmtpError::Spent)));
            }
        }
    });
}

/// 1–3 stray bytes after the last record, inside the frame, are an incomplete length prefix:
/// `Truncated` (4 or more are read as a length, and then the record is missing: `Truncated` too).
#[test]
fn stray_bytes_after_the_last_record_inside_the_frame_are_truncated() {
    let (key, n0, payload) = small_archive_parts();
    for stray in [&[1u8][..], &[1, 2], &[1, 2, 3], &[5, 0, 0, 0, 9]] {
        let mut p = payload.clone();
        p.extend_from_slice(stray);
        let file = frame(0, n0, &p);
        for max in [1, usize::MAX] {
            let file = file.clone();
            let result = within_time(move || {
                read_all(
                    ShortReads {
                        inner: &file[..],
                        max,
                    },
                    &key,
                )
            });
            assert!(
                matches!(result, Err(XmtpError::Truncated)),
                "{stray:?}: {result:?}"
            );
        }
    }
    assert_eq!(
        XmtpError::Truncated.to_string(),
        "xmtp archive is truncated"
    );
}

#[test]
fn oversized_length_prefix_is_refused() {
    let (key, n0, mut payload) = small_archive_parts();
    for len in [MAX_RECORD + 1, u32::MAX] {
        let mut p = payload.clone();
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(&[0; 64]);
        let file = frame(0, n0, &p);
        let result = read_all(&file[..], &key);
        match result {
            Err(XmtpError::RecordTooLarge { len: got, max }) => {
                assert_eq!((got, max), (u64::from(len), u64::from(MAX_RECORD)));
            }
            other => panic!("{other:?}"),
        }
    }
    // An allowed length on a stream that ends long before it: truncated (the buffer only grows
    // with the bytes really there).
    let mut p = payload.clone();
    p.extend_from_slice(&MAX_RECORD.to_le_bytes());
    p.extend_from_slice(&[0; 64]);
    let file = frame(0, n0, &p);
    assert!(matches!(
        read_all(&file[..], &key),
        Err(XmtpError::Truncated)
    ));
    // The first record too.
    payload.clear();
    payload.extend_from_slice(&(MAX_RECORD + 1).to_le_bytes());
    let file = frame(0, n0, &payload);
    assert!(matches!(
        XmtpReader::open(&file[..], &key),
        Err(XmtpError::RecordTooLarge { .. })
    ));
}

#[test]
fn first_record_must_be_metadata() {
    let key = [1u8; 32];
    let n0 = [0u8; 12];
    // An empty frame: no records at all.
    let file = frame(0, n0, &[]);
    assert!(matches!(
        XmtpReader::open(&file[..], &key),
        Err(XmtpError::MissingMetadata)
    ));
    // A consent record first.
    let consent = element(Element::Consent(ConsentSave::default()));
    let file = archive(&key, n0, &[consent], Scheme::Current);
    assert!(matches!(
        XmtpReader::open(&file[..], &key),
        Err(XmtpError::MissingMetadata)
    ));
}

#[test]
fn a_record_that_is_not_a_backup_element_is_a_decode_error() {
    let key = [1u8; 32];
    let n0 = [0u8; 12];
    let mut payload = seal_records(&key, n0, &[metadata(&[1], 1, None, None)], Scheme::Current);
    // Field 2 (group), length-delimited, claiming 50 bytes that are not there.
    payload.extend(seal(&key, common::nonce_add(n0, 1), &[0x12, 50, 1]));
    let file = frame(0, n0, &payload);
    let mut r = XmtpReader::open(&file[..], &key).unwrap();
    assert!(matches!(r.next_record(), Err(XmtpError::Decode(_))));
}

#[test]
fn not_zstd_after_the_header_is_not_xmtp_and_bad_zstd_is_corrupt() {
    let mut file = vec![0u8; 14];
    file.extend_from_slice(&[0x50; 40]);
    assert!(matches!(
        XmtpReader::open(&file[..], &ZERO_KEY),
        Err(XmtpError::NotXmtp)
    ));

    // The magic is right but the frame header is garbage.
    let mut file = vec![0u8; 14];
    file.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD]);
    file.extend_from_slice(&[0xFF; 40]);
    let result = within_time(move || XmtpReader::open(&file[..], &ZERO_KEY).map(|_| ()));
    assert!(
        matches!(result, Err(XmtpError::Compression(_))),
        "{result:?}"
    );
}

#[test]
fn a_failing_reader_is_an_io_error_not_truncation() {
    let bytes = vector();
    for cut in [10, 100, bytes.len()] {
        let reader = FailsAtEnd {
            data: Cursor::new(bytes[..cut].to_vec()),
        };
        let result = read_all(reader, &ZERO_KEY);
        assert!(
            matches!(result, Err(XmtpError::Io(_))),
            "cut {cut}: {result:?}"
        );
    }
}
