//! libxmtp archives: the reader on raw bytes (`xmtp_reader`), and archives sealed here from
//! FORMAT.md with fuzzer-chosen records, nonces, zstd settings and damage, checked against a
//! model of the format (`xmtp_records`).

use arbitrary::{Arbitrary, Unstructured};
use ferry_xmtp_archive::proto::{backup_element::Element as E, BackupElement};
use ferry_xmtp_archive::{XmtpError, XmtpMetadata, XmtpReader, XmtpRecord};
use prost::Message;

use crate::gen::RecSpec;
use crate::xmtp::{file, nonce_add, record, Zstd};
use crate::XMTP_KEY;

#[derive(Debug)]
struct Read {
    open: Result<XmtpMetadata, XmtpError>,
    records: Vec<XmtpRecord>,
    end: Option<XmtpError>,
}

/// Reads `data` to its end or first error, checking the reader's promises: a clean end consumed
/// the whole file and stays at the end; after an error the reader is spent.
fn read_all(data: &[u8]) -> Read {
    let mut r = match XmtpReader::open(data, &XMTP_KEY) {
        Ok(r) => r,
        Err(e) => {
            return Read {
                open: Err(e),
                records: Vec::new(),
                end: None,
            }
        }
    };
    let mut records = Vec::new();
    let end = loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                if let XmtpRecord::Message(m) = &rec {
                    let _ = ferry_xmtp_archive::decode_encoded_content(&m.decrypted_message_bytes);
                }
                records.push(rec);
            }
            Ok(None) => {
                assert_eq!(
                    r.bytes_read(),
                    data.len() as u64,
                    "a clean end must have consumed the whole file"
                );
                assert!(matches!(r.next_record(), Ok(None)));
                break None;
            }
            Err(e) => {
                assert!(
                    matches!(r.next_record(), Err(XmtpError::Spent)),
                    "the reader must be spent after {e}"
                );
                break Some(e);
            }
        }
    };
    // A record that opened but did not decode counts as read.
    let opened_not_decoded = u64::from(matches!(end, Some(XmtpError::Decode(_))));
    assert_eq!(
        r.records_read(),
        1 + records.len() as u64 + opened_not_decoded
    );
    Read {
        open: Ok(r.metadata().clone()),
        records,
        end,
    }
}

/// Arbitrary bytes as a libxmtp archive with the vector's key (32 zero bytes).
pub fn xmtp_reader(data: &[u8]) {
    let _ = ferry_xmtp_archive::looks_like_xmtp(data);
    let _ = ferry_xmtp_archive::decode_encoded_content(data);
    assert!(matches!(
        XmtpReader::open(data, &[0u8; 31]).err(),
        Some(XmtpError::KeyLength(31))
    ));
    read_all(data);
}

#[derive(Arbitrary, Debug)]
pub struct XmtpInput {
    version: Option<u16>,
    n0: [u8; 12],
    records: Vec<(RecSpec, NonceChoice)>,
    level: u8,
    checksum: bool,
    content_size: bool,
    fault: Option<XFault>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum NonceChoice {
    /// N0 + i (current libxmtp).
    Current,
    /// The nonce the previous record opened with (legacy files: always N0).
    Previous,
    First,
    Other([u8; 12]),
}

#[derive(Arbitrary, Debug)]
pub enum XFault {
    /// Bytes after the zstd frame.
    Trailing(Vec<u8>),
    /// 1 to 3 bytes after the last record, inside the frame (an incomplete length prefix).
    Stray(u8),
    /// The record stream ends inside record `record`.
    Cut { record: u8, at: u16 },
    /// Record `record`'s length prefix replaced.
    Length { record: u8, len: u32 },
    /// One byte of record `record`'s ciphertext or tag flipped.
    Flip { record: u8, pos: u16, xor: u8 },
    /// The file cut short by 1.. bytes.
    Truncate(u16),
}

/// What the reader must report.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    WrongKey(u64),
    Truncated,
    Trailing,
    Decode,
    MissingMetadata,
    Unsupported(u16),
    /// Some error, the model does not say which.
    Any,
}

impl Want {
    fn matches(self, e: &XmtpError) -> bool {
        match (self, e) {
            (Want::WrongKey(i), XmtpError::WrongKeyOrCorrupted { record }) => i == *record,
            (Want::Truncated, XmtpError::Truncated) => true,
            (Want::Trailing, XmtpError::TrailingData) => true,
            (Want::Decode, XmtpError::Decode(_)) => true,
            (Want::MissingMetadata, XmtpError::MissingMetadata) => true,
            (Want::Unsupported(v), XmtpError::UnsupportedVersion(w)) => v == *w,
            (Want::Any, _) => true,
            _ => false,
        }
    }
}

/// Sealed archives with any records, nonce schemes (current, legacy, mixed, wrong), zstd
/// settings and one optional fault: the reader must return what the format says.
pub fn xmtp_records(data: &[u8]) {
    let Ok(input) = XmtpInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let n0 = input.n0;
    let version = input.version.unwrap_or(0);

    // Seal the records and predict what the reader yields for each.
    let mut stream = Vec::new();
    let mut bounds = Vec::new(); // (start, end) of each record in `stream`
    let mut plains = Vec::new();
    let mut prev = n0;
    let mut opens = Vec::new(); // does record i open under the reader's nonce rule?
    for (i, (spec, choice)) in input.records.iter().enumerate() {
        let current = nonce_add(n0, i as u64);
        let nonce = match choice {
            NonceChoice::Current => current,
            NonceChoice::Previous => prev,
            NonceChoice::First => n0,
            NonceChoice::Other(x) => *x,
        };
        let ok = nonce == current || nonce == prev;
        opens.push(ok);
        if ok {
            prev = nonce;
        }
        let plain = spec.plaintext();
        let start = stream.len();
        stream.extend(record(&XMTP_KEY, nonce, &plain));
        bounds.push((start, stream.len()));
        plains.push(plain);
    }

    // The model up to the end of the records, or up to a fault at record `stop`.
    let mut stop_at = None; // (record index, error) injected by a fault
    let mut end_error = None; // error after the last record
    let mut file_fault = false;
    match &input.fault {
        None => {}
        Some(XFault::Trailing(b)) if !b.is_empty() => end_error = Some(Want::Trailing),
        Some(XFault::Stray(k)) => {
            let k = 1 + *k as usize % 3;
            stream.extend(std::iter::repeat_n(0xa5, k));
            end_error = Some(Want::Truncated);
        }
        Some(XFault::Cut { record, at }) if !bounds.is_empty() => {
            let r = *record as usize % bounds.len();
            let (start, end) = bounds[r];
            let cut = start + 1 + *at as usize % (end - start - 1);
            stream.truncate(cut);
            stop_at = Some((r, Want::Truncated));
        }
        Some(XFault::Length { record, len }) if !bounds.is_empty() => {
            let r = *record as usize % bounds.len();
            let (start, end) = bounds[r];
            if *len as usize != end - start - 4 {
                stream[start..start + 4].copy_from_slice(&len.to_le_bytes());
                stop_at = Some((r, Want::Any));
            }
        }
        Some(XFault::Flip { record, pos, xor }) if !bounds.is_empty() => {
            let r = *record as usize % bounds.len();
            let (start, end) = bounds[r];
            let i = start + 4 + *pos as usize % (end - start - 4);
            stream[i] ^= xor | 1;
            if opens[r] {
                stop_at = Some((r, Want::WrongKey(r as u64)));
            }
        }
        Some(XFault::Truncate(_)) => file_fault = true,
        Some(_) => {}
    }

    let z = Zstd {
        level: 1 + i32::from(input.level % 3),
        checksum: input.checksum,
        content_size: input.content_size,
    };
    let mut bytes = file(version, n0, &stream, z);
    match &input.fault {
        Some(XFault::Trailing(b)) => bytes.extend_from_slice(b),
        Some(XFault::Truncate(k)) => {
            let cut = 1 + *k as usize % (bytes.len() - 14);
            bytes.truncate(bytes.len() - cut);
        }
        _ => {}
    }

    let got = read_all(&bytes);

    // Expected records and the first error, in reading order.
    let mut want_records = Vec::new();
    let mut want_error = end_error;
    for (i, plain) in plains.iter().enumerate() {
        if let Some((r, e)) = stop_at {
            if r == i {
                want_error = Some(e);
                break;
            }
        }
        if !opens[i] {
            want_error = Some(Want::WrongKey(i as u64));
            break;
        }
        let Ok(el) = BackupElement::decode(&plain[..]) else {
            want_error = Some(Want::Decode);
            break;
        };
        if i == 0 {
            if !matches!(el.element, Some(E::Metadata(_))) {
                want_error = Some(Want::MissingMetadata);
                break;
            }
            continue;
        }
        want_records.push(match el.element {
            Some(E::Group(g)) => XmtpRecord::Group(g),
            Some(E::GroupMessage(m)) => XmtpRecord::Message(m),
            Some(E::Consent(c)) => XmtpRecord::Consent(c),
            Some(E::Metadata(_)) | None => XmtpRecord::Unknown,
        });
    }
    if plains.is_empty() && want_error.is_none() {
        want_error = Some(Want::MissingMetadata);
    }
    if version != 0 {
        want_error = Some(Want::Unsupported(version));
        want_records.clear();
    }
    if file_fault {
        assert!(
            got.open.is_err() || got.end.is_some(),
            "a truncated file read cleanly: {got:?}"
        );
        return;
    }

    // Compare. Errors at record 0 (or before) surface from `open`.
    let fails_at_open = version != 0
        || (want_error.is_some() && want_records.is_empty() && {
            // The error is at record 0 unless record 0 opened and decoded as metadata.
            let first_ok = !plains.is_empty()
                && opens[0]
                && stop_at.map(|(r, _)| r) != Some(0)
                && matches!(
                    BackupElement::decode(&plains[0][..]).map(|e| e.element),
                    Ok(Some(E::Metadata(_)))
                );
            !first_ok
        });
    match (&got.open, fails_at_open) {
        (Err(e), true) => {
            let w = want_error.expect("an error");
            assert!(w.matches(e), "open: want {w:?}, got {e}");
            return;
        }
        (Ok(m), false) => {
            let Some(E::Metadata(meta)) = BackupElement::decode(&plains[0][..]).unwrap().element
            else {
                unreachable!()
            };
            assert_eq!(m.exported_at_ns, meta.exported_at_ns);
            assert_eq!(m.start_ns, meta.start_ns);
            assert_eq!(m.end_ns, meta.end_ns);
            assert_eq!(m.elements.len(), meta.elements.len());
        }
        (g, _) => panic!("open: want error {want_error:?} at open = {fails_at_open}, got {g:?}"),
    }
    assert_eq!(got.records, want_records);
    match (want_error, &got.end) {
        (None, None) => {}
        (Some(w), Some(e)) if w.matches(e) => {}
        (w, g) => panic!("end: want {w:?}, got {g:?}"),
    }
}
