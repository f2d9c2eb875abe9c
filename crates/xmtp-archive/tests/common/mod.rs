//! Test-only helpers: a small libxmtp archive *encoder* written from FORMAT.md (Ferry itself never
//! writes this format), element builders, and `Read` wrappers that misbehave on purpose.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use ferry_xmtp_archive::proto::{self, backup_element::Element, BackupElement};
use ferry_xmtp_archive::{XmtpError, XmtpMetadata, XmtpReader, XmtpRecord};
use prost::Message;

pub const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/xmtp/archive-legacy.xmtp"
);

pub fn vector() -> Vec<u8> {
    std::fs::read(VECTOR).expect("the libxmtp vector is readable")
}

/// How record nonces are chosen.
#[derive(Clone, Copy, Debug)]
pub enum Scheme {
    /// Record i uses N0 + i.
    Current,
    /// Every record uses N0.
    Legacy,
    /// Records 0..k use N0 + i; every later record reuses the nonce of the record before it
    /// (so all of them use N0 + k - 1). k >= 1.
    Mixed(usize),
}

/// N0 + i over 12 little-endian bytes, wrapping at 2^96 (byte-wise carry, independent of the
/// reader's u128 arithmetic).
pub fn nonce_add(n0: [u8; 12], i: u64) -> [u8; 12] {
    let add = i.to_le_bytes();
    let mut out = [0u8; 12];
    let mut carry = 0u16;
    for j in 0..12 {
        let sum = u16::from(n0[j]) + u16::from(*add.get(j).unwrap_or(&0)) + carry;
        out[j] = sum as u8;
        carry = sum >> 8;
    }
    out
}

pub fn nonce_for(scheme: Scheme, n0: [u8; 12], i: usize) -> [u8; 12] {
    match scheme {
        Scheme::Current => nonce_add(n0, i as u64),
        Scheme::Legacy => n0,
        Scheme::Mixed(k) => {
            assert!(k >= 1);
            nonce_add(n0, i.min(k - 1) as u64)
        }
    }
}

/// One record: u32 LE length, then AES-256-GCM ciphertext + tag of `plaintext`.
pub fn seal(key: &[u8; 32], nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key).unwrap();
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .unwrap();
    let mut out = (ct.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&ct);
    out
}

/// The decompressed content: every element sealed under the scheme's nonce.
pub fn seal_records(
    key: &[u8; 32],
    n0: [u8; 12],
    elements: &[BackupElement],
    scheme: Scheme,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in elements.iter().enumerate() {
        out.extend(seal(key, nonce_for(scheme, n0, i), &e.encode_to_vec()));
    }
    out
}

/// Header (version, N0) + one zstd frame of `payload`.
pub fn frame(version: u16, n0: [u8; 12], payload: &[u8]) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    out.extend_from_slice(&n0);
    out.extend(zstd::stream::encode_all(payload, 3).unwrap());
    out
}

/// Like [`frame`], but ends a zstd block in the middle of every length prefix (after its first
/// two bytes), so a decoder fed small reads hands the prefix out in two pieces.
pub fn frame_split_prefixes(n0: [u8; 12], payload: &[u8]) -> Vec<u8> {
    let mut out = 0u16.to_le_bytes().to_vec();
    out.extend_from_slice(&n0);
    let mut enc = zstd::stream::write::Encoder::new(out, 3).unwrap();
    for (start, len) in record_spans(payload) {
        enc.write_all(&payload[start..start + 2]).unwrap();
        enc.flush().unwrap();
        enc.write_all(&payload[start + 2..start + 4 + len]).unwrap();
    }
    enc.finish().unwrap()
}

/// (offset of the length prefix, record length) for each record of a payload.
pub fn record_spans(payload: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let len = u32::from_le_bytes(payload[at..at + 4].try_into().unwrap()) as usize;
        spans.push((at, len));
        at += 4 + len;
    }
    spans
}

pub fn archive(
    key: &[u8; 32],
    n0: [u8; 12],
    elements: &[BackupElement],
    scheme: Scheme,
) -> Vec<u8> {
    frame(0, n0, &seal_records(key, n0, elements, scheme))
}

pub fn element(e: Element) -> BackupElement {
    BackupElement { element: Some(e) }
}

pub fn metadata(
    elements: &[i32],
    exported_at_ns: i64,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
) -> BackupElement {
    element(Element::Metadata(proto::BackupMetadataSave {
        elements: elements.to_vec(),
        exported_at_ns,
        start_ns,
        end_ns,
    }))
}

/// The record a reader should hand back for `e` (metadata after the first record reads as Unknown).
pub fn expected_record(e: &BackupElement) -> XmtpRecord {
    match &e.element {
        Some(Element::Group(g)) => XmtpRecord::Group(g.clone()),
        Some(Element::GroupMessage(m)) => XmtpRecord::Message(m.clone()),
        Some(Element::Consent(c)) => XmtpRecord::Consent(c.clone()),
        Some(Element::Metadata(_)) | None => XmtpRecord::Unknown,
    }
}

/// Opens and drains an archive.
pub fn read_all<R: Read>(
    reader: R,
    key: &[u8],
) -> Result<(XmtpMetadata, Vec<XmtpRecord>), XmtpError> {
    let mut r = XmtpReader::open(reader, key)?;
    let mut records = Vec::new();
    while let Some(rec) = r.next_record()? {
        records.push(rec);
    }
    Ok((r.metadata().clone(), records))
}

/// Returns at most `max` bytes per read call.
pub struct ShortReads<R> {
    pub inner: R,
    pub max: usize,
}

impl<R: Read> Read for ShortReads<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max);
        self.inner.read(&mut buf[..n])
    }
}

/// Fails every other call with `Interrupted`.
pub struct Interrupting<R> {
    pub inner: R,
    pub flip: bool,
}

impl<R: Read> Read for Interrupting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.flip = !self.flip;
        if self.flip {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        self.inner.read(buf)
    }
}

/// Serves `data`, then fails with a hard I/O error instead of reporting the end.
pub struct FailsAtEnd {
    pub data: io::Cursor<Vec<u8>>,
}

impl Read for FailsAtEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.data.read(buf)? {
            0 => Err(io::Error::other("disk on fire")),
            n => Ok(n),
        }
    }
}

/// Runs `f` on its own thread and fails the test if it has not finished within 60 s, so a reader
/// that loops forever shows up as a failure instead of a hung test run.
pub fn within_time<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("reader did not finish within 60 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("reader thread panicked"),
    }
}
