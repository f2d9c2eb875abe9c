//! Reading archives in one pass and constant memory.

use std::io::Read;

use ferry_proto::archive::{archive_element, ArchiveElement, Metadata};
use prost::Message;

use crate::chunk::{max_chunk_len, ChunkCipher};
use crate::error::{Error, Result};
use crate::header::{read_full, read_header, Header};
use crate::key::ArchiveKey;
use crate::signature::{check_final_chunk, signing_input, ChunkHash, SignedBy};
use crate::{Element, MAX_FRAME};

/// What follows a chunk: the next chunk's length, a clean end of input, or a few stray bytes.
enum Next {
    Len(u32),
    End,
    Partial,
}

/// Reads one archive from `R`.
///
/// [`ArchiveReader::open`] reads the header and the metadata chunk only;
/// [`ArchiveReader::next_element`] then yields the elements in order. A signed archive's
/// signature is verified when the final chunk is read: the end is reported only if it holds
/// ([`Error::BadSignature`] otherwise), so a consumer that commits at the end commits nothing
/// the signature does not cover. Every failure is typed: see [`Error`].
pub struct ArchiveReader<R: Read> {
    input: R,
    header: Header,
    cipher: ChunkCipher,
    metadata: Metadata,
    max_chunk: usize,
    next_index: u64,
    /// Length of the chunk at `next_index`, already read, or the end.
    next: Next,
    finished: bool,
    decompressor: zstd::bulk::Decompressor<'static>,
    chunk: Vec<u8>,
    plain: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    bytes_read: u64,
    unknown: u64,
    /// The first error met: after it the reader is spent and says so (found by fuzzing:
    /// reading on used to go past the damage to a clean-looking end).
    failed: Option<String>,
    /// Signed archives: who the metadata says signed, the running hash of the chunks read
    /// before the final one, and whether the signature has been verified.
    signed_by: Option<SignedBy>,
    chunk_hash: Option<ChunkHash>,
    signature_verified: bool,
}

impl<R: Read> ArchiveReader<R> {
    /// Reads the header, checks the key and reads the metadata chunk.
    pub fn open(mut input: R, key: &ArchiveKey) -> Result<Self> {
        let header = read_header(&mut input)?;
        let keys = header.unlock(key)?;
        let cipher = ChunkCipher::new(&keys);
        drop(keys);
        let max_chunk = max_chunk_len(header.segment_size);
        let decompressor =
            zstd::bulk::Decompressor::new().map_err(|e| Error::Malformed(format!("zstd: {e}")))?;
        let mut r = ArchiveReader {
            input,
            metadata: Metadata::default(),
            max_chunk,
            next_index: 0,
            next: Next::End,
            finished: false,
            decompressor,
            chunk: Vec::new(),
            plain: Vec::new(),
            buf: Vec::with_capacity(header.segment_size as usize),
            pos: 0,
            bytes_read: crate::header::HEADER_LEN as u64,
            unknown: 0,
            failed: None,
            signed_by: None,
            chunk_hash: header.is_signed().then(ChunkHash::default),
            signature_verified: false,
            header,
            cipher,
        };
        r.next = r.read_len()?;
        // Chunk 0 is never final, so this either loads it or fails.
        r.load_chunk()?;
        match r.read_frame()? {
            Some(ArchiveElement {
                element: Some(archive_element::Element::Metadata(m)),
            }) => r.metadata = m,
            _ => return Err(Error::Malformed("first element is not the metadata".into())),
        }
        if r.pos != r.buf.len() || r.next_index != 1 {
            return Err(Error::Malformed(
                "metadata chunk holds more than the metadata".into(),
            ));
        }
        if r.header.is_signed() {
            let installation_id = r.metadata.installation_id.as_slice().try_into();
            match installation_id {
                Ok(installation_id) if !r.metadata.inbox_id.is_empty() => {
                    r.signed_by = Some(SignedBy {
                        inbox_id: r.metadata.inbox_id.clone(),
                        installation_id,
                    })
                }
                _ => {
                    return Err(Error::BadSignature(
                        "a signed archive whose metadata names no inbox or installation".into(),
                    ))
                }
            }
        }
        Ok(r)
    }

    /// Who signed the archive, as its metadata says: `None` for an unsigned archive (format
    /// 1.0). Trust it once [`ArchiveReader::signature_verified`] says so (at the end).
    pub fn signed_by(&self) -> Option<&SignedBy> {
        self.signed_by.as_ref()
    }

    /// Whether the signature has been read and verified (only at the end of a signed archive).
    pub fn signature_verified(&self) -> bool {
        self.signature_verified
    }

    /// Checks a signed archive's signature without decrypting what lies between: the chunks
    /// after the metadata are only hashed, and the final chunk (the signature) is opened. Must
    /// come right after [`ArchiveReader::open`]. For an unsigned archive it reads nothing.
    /// Returns [`Error::BadSignature`] when the signature does not verify, or the error of a
    /// damaged file (truncated, a bad chunk length, a final chunk that fails authentication).
    pub fn check_signature(mut self) -> Result<()> {
        if self.signed_by.is_none() {
            return Ok(());
        }
        if self.next_index != 1 || self.pos != self.buf.len() || self.failed.is_some() {
            return Err(Error::Malformed(
                "the signature is checked right after opening".into(),
            ));
        }
        loop {
            let (index, at_end) = self.read_chunk()?;
            if at_end {
                self.open_chunk(index, at_end)?;
                return self.check_final();
            }
            self.next_index += 1;
        }
    }

    /// The archive's header (key kind, version, segment size).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The metadata element.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Bytes consumed from the input so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Elements of kinds this version does not know, skipped so far.
    pub fn unknown_skipped(&self) -> u64 {
        self.unknown
    }

    /// The next element, or `None` after the final chunk has been read and verified.
    ///
    /// Elements of kinds this version does not know are returned as [`Element::Unknown`] (and
    /// counted), so a caller can report them.
    pub fn next_element(&mut self) -> Result<Option<Element>> {
        if let Some(first) = &self.failed {
            return Err(Error::Malformed(format!(
                "reading stopped at an earlier error ({first})"
            )));
        }
        let next = self.read_element();
        if let Err(e) = &next {
            self.failed = Some(e.to_string());
        }
        next
    }

    fn read_element(&mut self) -> Result<Option<Element>> {
        let Some(frame) = self.read_frame()? else {
            return Ok(None);
        };
        Ok(Some(match frame.element {
            Some(archive_element::Element::Conversation(c)) => Element::Conversation(c),
            Some(archive_element::Element::Message(m)) => Element::Message(m),
            Some(archive_element::Element::Consent(c)) => Element::Consent(c),
            Some(archive_element::Element::AttachmentPiece(a)) => Element::AttachmentPiece(a),
            Some(archive_element::Element::Metadata(_)) => {
                return Err(Error::Malformed("a second metadata element".into()))
            }
            Some(archive_element::Element::Signature(_)) => {
                return Err(Error::Malformed(
                    "a signature element outside the final chunk of a signed archive".into(),
                ))
            }
            None => {
                self.unknown += 1;
                Element::Unknown
            }
        }))
    }

    /// Reads every remaining element, checking the archive to its end; returns how many
    /// elements of each kind it holds (conversations, messages, consent, attachment pieces,
    /// unknown).
    pub fn verify_rest(&mut self) -> Result<[u64; 5]> {
        let mut counts = [0u64; 5];
        while let Some(e) = self.next_element()? {
            counts[match e {
                Element::Conversation(_) => 0,
                Element::Message(_) => 1,
                Element::Consent(_) => 2,
                Element::AttachmentPiece(_) => 3,
                Element::Unknown => 4,
            }] += 1;
        }
        Ok(counts)
    }

    fn read_frame(&mut self) -> Result<Option<ArchiveElement>> {
        // Length prefix (a protobuf varint), possibly split across chunks.
        let mut len: u64 = 0;
        let mut shift = 0;
        let mut i = 0;
        loop {
            // A chunk may be empty (an empty final chunk), so refill until a byte is there.
            while self.pos + i >= self.buf.len() {
                if !self.refill()? {
                    if i == 0 {
                        return Ok(None);
                    }
                    return Err(Error::Malformed("archive ends inside an element".into()));
                }
            }
            let b = self.buf[self.pos + i];
            i += 1;
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift >= 63 {
                return Err(Error::Malformed("bad element length".into()));
            }
        }
        if len > MAX_FRAME {
            return Err(Error::FrameTooLarge {
                len,
                max: MAX_FRAME,
            });
        }
        self.pos += i;
        while self.buf.len() - self.pos < len as usize {
            if !self.refill()? {
                return Err(Error::Malformed("archive ends inside an element".into()));
            }
        }
        let end = self.pos + len as usize;
        let frame = ArchiveElement::decode(&self.buf[self.pos..end])
            .map_err(|e| Error::Malformed(format!("element does not decode: {e}")))?;
        self.pos = end;
        Ok(Some(frame))
    }

    /// Appends the next chunk's plaintext to `buf`; false at the verified end.
    fn refill(&mut self) -> Result<bool> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.load_chunk()
    }

    fn load_chunk(&mut self) -> Result<bool> {
        if self.finished {
            return Ok(false);
        }
        let (index, at_end) = self.read_chunk()?;
        self.open_chunk(index, at_end)?;
        self.next_index += 1;
        if at_end {
            self.finished = true;
            if self.signed_by.is_some() {
                // The final chunk of a signed archive is its signature, not part of the frames.
                self.check_final()?;
                return Ok(false);
            }
        }
        self.buf.extend_from_slice(&self.plain);
        Ok(true)
    }

    /// Reads the next chunk's ciphertext into `chunk` and the length after it; returns its
    /// index and whether nothing follows it. A chunk with something after it goes into the
    /// running hash of a signed archive.
    fn read_chunk(&mut self) -> Result<(u64, bool)> {
        let len = match self.next {
            Next::Len(n) => n as usize,
            // The previous chunk was not final, yet nothing (or too little) follows it.
            Next::End | Next::Partial => return Err(Error::Truncated),
        };
        if len > self.max_chunk {
            return Err(Error::ChunkCorrupted {
                index: self.next_index,
            });
        }
        self.chunk.clear();
        self.chunk.resize(len, 0);
        if read_full(&mut self.input, &mut self.chunk)? < len {
            return Err(Error::Truncated);
        }
        self.bytes_read += len as u64;
        let index = self.next_index;
        self.next = self.read_len()?;
        let at_end = matches!(self.next, Next::End);
        if !at_end {
            if let Some(h) = &mut self.chunk_hash {
                h.chunk(&self.chunk);
            }
        }
        Ok((index, at_end))
    }

    /// Authenticates chunk `index` (in `chunk`) and decompresses it into `plain`.
    fn open_chunk(&mut self, index: u64, at_end: bool) -> Result<()> {
        // Try the flag the position suggests; on failure, the other flag tells truncation and
        // appended data apart from corruption. (A failed open leaves the buffer unchanged.)
        let mut ct = std::mem::take(&mut self.chunk);
        if !self.cipher.open(index, at_end, &mut ct) {
            let other = self.cipher.open(index, !at_end, &mut ct);
            return Err(match (other, at_end) {
                (true, true) => Error::Truncated,
                (true, false) => Error::TrailingData,
                (false, _) => Error::ChunkCorrupted { index },
            });
        }
        if index == 0 && at_end {
            // Chunk 0 is never final.
            return Err(Error::ChunkCorrupted { index });
        }
        // A chunk must declare its size, and may not inflate past the segment size.
        let bad = || Error::Malformed(format!("chunk {index} does not decompress"));
        let size = match zstd::zstd_safe::get_frame_content_size(&ct) {
            Ok(Some(n)) if n <= u64::from(self.header.segment_size) => n as usize,
            _ => return Err(bad()),
        };
        self.plain.clear();
        self.plain.reserve(size);
        let n = self
            .decompressor
            .decompress_to_buffer(&ct[..], &mut self.plain)
            .map_err(|_| bad())?;
        if n != size {
            return Err(bad());
        }
        self.chunk = ct;
        Ok(())
    }

    /// Verifies the signature in `plain`, the final chunk of a signed archive.
    fn check_final(&mut self) -> Result<()> {
        let who = self.signed_by.as_ref().expect("a signed archive");
        let hash = self
            .chunk_hash
            .take()
            .expect("signed archives hash their chunks");
        let input = signing_input(self.header.as_bytes(), who, hash);
        check_final_chunk(&self.plain, who, &input)?;
        self.signature_verified = true;
        Ok(())
    }

    fn read_len(&mut self) -> Result<Next> {
        let mut b = [0u8; 4];
        let n = read_full(&mut self.input, &mut b)?;
        self.bytes_read += n as u64;
        Ok(match n {
            0 => Next::End,
            4 => Next::Len(u32::from_le_bytes(b)),
            _ => Next::Partial,
        })
    }
}
