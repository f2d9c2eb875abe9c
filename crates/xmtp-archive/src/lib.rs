//! A streaming reader of libxmtp archives (format version 0), so people can bring their XMTP
//! history into Ferry. Ferry only ever *reads* this format; it never writes it (Ferry's own archive
//! format is a different design).
//!
//! # The format
//!
//! ```text
//! [0..2)   u16 little-endian format version (0), plaintext
//! [2..14)  12-byte nonce N0, plaintext
//! [14..)   one zstd frame; its decompressed content is a sequence of records:
//!          u32 little-endian length L, then L bytes of AES-256-GCM ciphertext + 16-byte tag
//!          (empty associated data), whose plaintext is one protobuf `BackupElement`
//! ```
//!
//! The key is the caller's 32 bytes, used directly. There is no record count, terminator or
//! whole-file MAC: the archive ends where the zstd frame ends. The first record is always the
//! metadata element; then come groups, messages and consent records (see [`XmtpRecord`]).
//!
//! # Nonces
//!
//! Record `i` (the metadata record is record 0) is sealed with `N0 + i`, the 12 bytes read as a
//! little-endian integer and the sum wrapping at 2^96. Archives written before late 2025 reused N0
//! for every record, so when `N0 + i` does not open record `i`, the reader tries the nonce that
//! record `i - 1` actually opened with (N0 for record 0). A record that opens under neither is
//! [`XmtpError::WrongKeyOrCorrupted`]; a wrong key fails on record 0, inside [`XmtpReader::open`].
//!
//! # Limits and strictness
//!
//! * Streaming in constant memory: the file is never read whole; one record is held at a time, and
//!   a record's length is checked against [`MAX_RECORD`] before anything is allocated for it.
//! * zstd's default window limit (128 MiB) applies to the decoder; data zstd rejects is
//!   [`XmtpError::Compression`].
//! * A stream that ends inside a length prefix or a record is [`XmtpError::Truncated`]; so are 1–3
//!   stray bytes after the last record inside the frame (they are an incomplete length prefix).
//!   Any byte in the file after the zstd frame is [`XmtpError::TrailingData`]. Neither case can
//!   loop forever.
//! * After any error the reader is spent: further calls return [`XmtpError::Spent`].

#![forbid(unsafe_code)]

use std::io::{self, BufReader, Chain, Cursor, Read};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use prost::Message;

pub mod proto;

use proto::backup_element::Element;

/// The only libxmtp archive format version this reader understands.
pub const FORMAT_VERSION: u16 = 0;

/// Largest record (ciphertext with tag) the reader accepts: 16 MiB.
pub const MAX_RECORD: u32 = 16 * 1024 * 1024;

/// Length of the plaintext header: version (2) + nonce (12).
const HEADER_LEN: usize = 14;
/// The magic number that starts every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Nonces are 96-bit integers; sums wrap at 2^96.
const NONCE_MASK: u128 = (1 << 96) - 1;

/// True when `prefix` (the first >= 18 bytes of a file) looks like a libxmtp archive: u16 LE
/// version 0, then 12 nonce bytes, then the zstd frame magic `28 B5 2F FD` at offset 14.
pub fn looks_like_xmtp(prefix: &[u8]) -> bool {
    prefix.len() >= HEADER_LEN + 4
        && prefix[..2] == FORMAT_VERSION.to_le_bytes()
        && prefix[HEADER_LEN..HEADER_LEN + 4] == ZSTD_MAGIC
}

/// Decodes a message's `decrypted_message_bytes` as an [`proto::EncodedContent`].
///
/// Returns `None` when the bytes do not parse, or parse without a content type id (the `type`
/// field absent or its `type_id` empty); callers then keep the bytes verbatim.
pub fn decode_encoded_content(bytes: &[u8]) -> Option<proto::EncodedContent> {
    let content = proto::EncodedContent::decode(bytes).ok()?;
    match &content.r#type {
        Some(id) if !id.type_id.is_empty() => Some(content),
        _ => None,
    }
}

/// What went wrong while reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum XmtpError {
    /// The underlying reader failed.
    #[error("cannot read xmtp archive: {0}")]
    Io(#[source] io::Error),
    /// A key that is not 32 bytes long.
    #[error("xmtp archive key must be 32 bytes, got {0}")]
    KeyLength(usize),
    /// A format version other than 0, the only one this reader knows.
    #[error("unsupported xmtp archive version {0} (only version 0 is supported)")]
    UnsupportedVersion(u16),
    /// Shorter than 18 bytes, or no zstd frame at offset 14.
    #[error("not an xmtp archive (too short, or no zstd frame at byte 14)")]
    NotXmtp,
    /// Record `record` (0 = metadata) opened under neither allowed nonce.
    #[error("wrong key or corrupted xmtp archive (record {record})")]
    WrongKeyOrCorrupted {
        /// The record's position (0 is the metadata).
        record: u64,
    },
    /// The zstd stream, a length prefix or a record ended early.
    #[error("xmtp archive is truncated")]
    Truncated,
    /// Bytes in the file after the zstd frame.
    #[error("xmtp archive has trailing bytes after its last record")]
    TrailingData,
    /// A record longer than the reader accepts (a hostile or damaged archive).
    #[error("xmtp archive record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The record's declared length in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// The first record is not the archive's metadata.
    #[error("xmtp archive does not start with a metadata record")]
    MissingMetadata,
    /// A record decrypted but is not a valid protobuf `BackupElement`.
    #[error("xmtp archive record is not a valid backup element: {0}")]
    Decode(#[source] prost::DecodeError),
    /// The zstd decoder rejected the compressed data.
    #[error("xmtp archive has a corrupt zstd stream: {0}")]
    Compression(#[source] io::Error),
    /// A previous call already failed; the reader cannot go on.
    #[error("xmtp archive reader cannot continue after an earlier error")]
    Spent,
}

impl XmtpError {
    /// Whether reading the archive may succeed if tried again later (with a new reader): only
    /// when the underlying read was interrupted or timed out. Every other error is about the
    /// archive or the key (wrong, damaged, truncated, unsupported) and stays the same however
    /// often it is tried; [`XmtpError::Spent`] asks for a new reader, not a retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            XmtpError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            XmtpError::KeyLength(_)
            | XmtpError::UnsupportedVersion(_)
            | XmtpError::NotXmtp
            | XmtpError::WrongKeyOrCorrupted { .. }
            | XmtpError::Truncated
            | XmtpError::TrailingData
            | XmtpError::RecordTooLarge { .. }
            | XmtpError::MissingMetadata
            | XmtpError::Decode(_)
            | XmtpError::Compression(_)
            | XmtpError::Spent => false,
        }
    }
}

/// Which kinds of element the archive was exported with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selection {
    Messages,
    Consent,
    /// Unspecified, the deprecated event kind, or a number this reader does not know.
    Other(i32),
}

impl From<i32> for Selection {
    fn from(value: i32) -> Self {
        match proto::BackupElementSelection::try_from(value) {
            Ok(proto::BackupElementSelection::Messages) => Selection::Messages,
            Ok(proto::BackupElementSelection::Consent) => Selection::Consent,
            _ => Selection::Other(value),
        }
    }
}

/// The archive's first record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmtpMetadata {
    pub elements: Vec<Selection>,
    pub exported_at_ns: i64,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
}

/// One record after the metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum XmtpRecord {
    Group(proto::GroupSave),
    Message(proto::GroupMessageSave),
    Consent(proto::ConsentSave),
    /// Element kinds this reader does not know (the deprecated event, an unset oneof, unknown
    /// tags, or a second metadata element): callers count and skip them.
    Unknown,
}

/// Counts the bytes pulled from the file and remembers whether the file itself failed, so that
/// errors coming out of the zstd decoder can be told apart from the file's own.
struct Counting<R> {
    inner: R,
    count: u64,
    failed: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

/// The compressed side: the 4 magic bytes already read from the file, then the rest of the file.
type Compressed<R> = BufReader<Chain<Cursor<[u8; 4]>, Counting<R>>>;
type Decoder<R> = zstd::stream::read::Decoder<'static, Compressed<R>>;

enum State<R: Read> {
    Reading(Box<Decoder<R>>),
    Done,
    Spent,
}

/// Streams the records of a libxmtp archive. See the crate docs for the format and limits.
pub struct XmtpReader<R: Read> {
    state: State<R>,
    /// Holds the only copy of the key schedule; `aes` zeroizes it on drop.
    cipher: Aes256Gcm,
    first_nonce: u128,
    /// The nonce the previous record opened with (N0 before record 0).
    prev_nonce: u128,
    /// Index of the next record (0 = metadata).
    next_index: u64,
    metadata: XmtpMetadata,
    bytes_read: u64,
    buf: Vec<u8>,
}

impl<R: Read> XmtpReader<R> {
    /// Reads the version (refusing anything but 0), the nonce, and the first record, which must
    /// be the metadata element. `key` must be exactly 32 bytes.
    pub fn open(reader: R, key: &[u8]) -> Result<Self, XmtpError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| XmtpError::KeyLength(key.len()))?;
        let mut file = Counting {
            inner: reader,
            count: 0,
            failed: false,
        };
        let mut head = [0u8; HEADER_LEN + 4];
        let n = read_full(&mut file, &mut head).map_err(XmtpError::Io)?;
        if n < 2 {
            return Err(XmtpError::NotXmtp);
        }
        let version = u16::from_le_bytes([head[0], head[1]]);
        if version != FORMAT_VERSION {
            return Err(XmtpError::UnsupportedVersion(version));
        }
        if !looks_like_xmtp(&head[..n]) {
            return Err(XmtpError::NotXmtp);
        }
        let mut nonce = [0u8; 16];
        nonce[..12].copy_from_slice(&head[2..HEADER_LEN]);
        let first_nonce = u128::from_le_bytes(nonce);
        let magic = Cursor::new(ZSTD_MAGIC);
        let decoder = Decoder::with_buffer(BufReader::new(magic.chain(file)))
            .map_err(XmtpError::Io)?
            .single_frame();

        let mut this = XmtpReader {
            state: State::Reading(Box::new(decoder)),
            cipher,
            first_nonce,
            prev_nonce: first_nonce,
            next_index: 0,
            metadata: XmtpMetadata {
                elements: Vec::new(),
                exported_at_ns: 0,
                start_ns: None,
                end_ns: None,
            },
            bytes_read: n as u64,
            buf: Vec::new(),
        };
        match this.next_element()?.and_then(|e| e.element) {
            Some(Element::Metadata(m)) => {
                this.metadata = XmtpMetadata {
                    elements: m.elements.into_iter().map(Selection::from).collect(),
                    exported_at_ns: m.exported_at_ns,
                    start_ns: m.start_ns,
                    end_ns: m.end_ns,
                };
                Ok(this)
            }
            _ => Err(XmtpError::MissingMetadata),
        }
    }

    /// The archive's metadata record (read by [`XmtpReader::open`]).
    pub fn metadata(&self) -> &XmtpMetadata {
        &self.metadata
    }

    /// The next record after the metadata; `Ok(None)` at a clean end (the zstd frame ended right
    /// after a record and nothing follows it in the file).
    pub fn next_record(&mut self) -> Result<Option<XmtpRecord>, XmtpError> {
        let Some(element) = self.next_element()? else {
            return Ok(None);
        };
        Ok(Some(match element.element {
            Some(Element::Group(g)) => XmtpRecord::Group(g),
            Some(Element::GroupMessage(m)) => XmtpRecord::Message(m),
            Some(Element::Consent(c)) => XmtpRecord::Consent(c),
            Some(Element::Metadata(_)) | None => XmtpRecord::Unknown,
        }))
    }

    /// How many records (the metadata record included) have been opened so far.
    pub fn records_read(&self) -> u64 {
        self.next_index
    }

    /// The nonce the last opened record was sealed with (N0 before any record has been opened).
    /// In a legacy archive this stays N0; in a current one it is N0 + `records_read() - 1`.
    pub fn last_nonce(&self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&self.prev_nonce.to_le_bytes()[..12]);
        nonce
    }

    /// Compressed bytes consumed from the underlying reader so far, header included (for
    /// progress bars; it runs slightly ahead of decoding because reads are buffered).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads, opens and decodes one record, moving to `Spent` on any error.
    fn next_element(&mut self) -> Result<Option<proto::BackupElement>, XmtpError> {
        let result = match &mut self.state {
            State::Done => return Ok(None),
            State::Spent => return Err(XmtpError::Spent),
            State::Reading(decoder) => {
                let r = read_record(decoder, &mut self.buf);
                self.bytes_read = file_of(decoder).count;
                r
            }
        };
        let result = match result {
            Ok(true) => self.open_record().map(Some),
            Ok(false) => self.finish().map(|()| None),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.state = State::Spent;
        }
        result
    }

    /// Decrypts the record in `self.buf` (trying both nonce rules) and decodes it.
    fn open_record(&mut self) -> Result<proto::BackupElement, XmtpError> {
        let index = self.next_index;
        let current = (self.first_nonce + u128::from(index)) & NONCE_MASK;
        let mut candidates = vec![current];
        if self.prev_nonce != current {
            candidates.push(self.prev_nonce);
        }
        for nonce in candidates {
            let bytes = nonce.to_le_bytes();
            if let Ok(plain) = self
                .cipher
                .decrypt(Nonce::from_slice(&bytes[..12]), self.buf.as_slice())
            {
                self.prev_nonce = nonce;
                self.next_index += 1;
                return proto::BackupElement::decode(plain.as_slice()).map_err(XmtpError::Decode);
            }
        }
        Err(XmtpError::WrongKeyOrCorrupted { record: index })
    }

    /// After the frame's clean end: the file must end too.
    fn finish(&mut self) -> Result<(), XmtpError> {
        let State::Reading(decoder) = std::mem::replace(&mut self.state, State::Done) else {
            return Ok(());
        };
        let compressed = decoder.finish();
        let leftover_in_buffer = !compressed.buffer().is_empty();
        let mut rest = compressed.into_inner();
        let mut probe = [0u8; 1];
        let more = read_full(&mut rest, &mut probe).map_err(XmtpError::Io)?;
        self.bytes_read = rest.get_ref().1.count;
        if leftover_in_buffer || more > 0 {
            return Err(XmtpError::TrailingData);
        }
        Ok(())
    }
}

fn file_of<R: Read>(decoder: &Decoder<R>) -> &Counting<R> {
    decoder.get_ref().get_ref().get_ref().1
}

/// Reads one length-prefixed record into `buf`. `Ok(false)` at a clean end of the stream (no byte
/// of a new record); `Truncated` if it ends inside one.
fn read_record<R: Read>(decoder: &mut Decoder<R>, buf: &mut Vec<u8>) -> Result<bool, XmtpError> {
    let mut len = [0u8; 4];
    let n = read_full(decoder, &mut len).map_err(|e| stream_error(e, decoder))?;
    match n {
        0 => return Ok(false),
        1..=3 => return Err(XmtpError::Truncated),
        _ => {}
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_RECORD {
        return Err(XmtpError::RecordTooLarge {
            len: u64::from(len),
            max: u64::from(MAX_RECORD),
        });
    }
    buf.clear();
    // `take` + `read_to_end` grows the buffer with the data actually present, so a lying length
    // on a short stream does not allocate the full amount up front.
    decoder
        .by_ref()
        .take(u64::from(len))
        .read_to_end(buf)
        .map_err(|e| stream_error(e, decoder))?;
    if buf.len() < len as usize {
        return Err(XmtpError::Truncated);
    }
    Ok(true)
}

/// Sorts an error out of the decoder: the file's own failure, an early end, or bad zstd data.
fn stream_error<R: Read>(e: io::Error, decoder: &Decoder<R>) -> XmtpError {
    if file_of(decoder).failed {
        XmtpError::Io(e)
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        XmtpError::Truncated
    } else {
        XmtpError::Compression(e)
    }
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read. Short reads and
/// `Interrupted` are retried, so a length prefix split across reads is put back together.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_xmtp_checks_version_and_magic() {
        let mut prefix = [0u8; 18];
        prefix[14..18].copy_from_slice(&ZSTD_MAGIC);
        assert!(looks_like_xmtp(&prefix));
        assert!(!looks_like_xmtp(&prefix[..17]));
        prefix[0] = 1;
        assert!(!looks_like_xmtp(&prefix));
        prefix[0] = 0;
        prefix[14] = 0;
        assert!(!looks_like_xmtp(&prefix));
    }

    #[test]
    fn reader_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<XmtpReader<std::fs::File>>();
        assert_send::<XmtpError>();
    }

    #[test]
    fn selection_maps_known_and_other_values() {
        assert_eq!(Selection::from(1), Selection::Messages);
        assert_eq!(Selection::from(2), Selection::Consent);
        assert_eq!(Selection::from(3), Selection::Other(3));
        assert_eq!(Selection::from(0), Selection::Other(0));
        assert_eq!(Selection::from(99), Selection::Other(99));
    }

    #[test]
    fn only_an_interrupted_read_is_retryable() {
        let io = |kind| io::Error::new(kind, "x");
        assert!(XmtpError::Io(io(io::ErrorKind::Interrupted)).is_retryable());
        assert!(XmtpError::Io(io(io::ErrorKind::TimedOut)).is_retryable());
        let not_xmtp = XmtpReader::open(&[0u8; 40][..], &[0u8; 32]).err().unwrap();
        for e in [
            not_xmtp,
            XmtpError::Io(io(io::ErrorKind::NotFound)),
            XmtpError::Compression(io(io::ErrorKind::InvalidData)),
            XmtpError::WrongKeyOrCorrupted { record: 0 },
            XmtpError::Truncated,
            XmtpError::KeyLength(16),
            XmtpError::Spent,
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn short_inputs_are_not_xmtp() {
        let key = [0u8; 32];
        for input in [&b""[..], &[0u8][..], &[0u8; 10][..], &[0u8; 17][..]] {
            assert!(matches!(
                XmtpReader::open(input, &key),
                Err(XmtpError::NotXmtp)
            ));
        }
        // Right length, no zstd magic.
        assert!(matches!(
            XmtpReader::open(&[0u8; 40][..], &key),
            Err(XmtpError::NotXmtp)
        ));
    }
}
