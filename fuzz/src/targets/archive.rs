//! Ferry archives: the reader on raw bytes (`archive_reader`), a round trip through the crate's
//! own writer (`archive_frames`), and chunks sealed from the spec with any plaintext, checked
//! against the spec's model (`archive_chunks`).

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use ferry_archive::{
    ArchiveKey, ArchiveReader, ArchiveWriter, Argon2Params, Element, Error, WriterOptions,
    HEADER_LEN, MIN_SEGMENT,
};
use prost::Message;

use crate::gen::{encode_element, encode_metadata, Built, ElemSpec, MetaSpec};
use crate::model;
use crate::{archive_key, frame, spec};

/// Everything a reader returned for one input.
#[derive(Debug)]
struct Read {
    open: Result<ferry_archive::proto::Metadata, Error>,
    elements: Vec<Element>,
    /// `None`: the clean end; `Some(e)`: the error that stopped the reading.
    end: Option<Error>,
}

/// Opens `data` and reads it to its end or first error, checking the reader's own promises on
/// the way: a clean end consumed every byte and stays at the end; an error leaves a reader
/// that does not panic when called again.
fn read_all(data: &[u8], key: &ArchiveKey) -> Read {
    let mut r = match ArchiveReader::open(data, key) {
        Ok(r) => r,
        Err(e) => {
            return Read {
                open: Err(e),
                elements: Vec::new(),
                end: None,
            }
        }
    };
    let mut elements = Vec::new();
    let end = loop {
        match r.next_element() {
            Ok(Some(e)) => elements.push(e),
            Ok(None) => {
                assert_eq!(
                    r.bytes_read(),
                    data.len() as u64,
                    "a clean end must have consumed the whole input"
                );
                assert!(
                    matches!(r.next_element(), Ok(None)),
                    "a reader at its clean end must stay there"
                );
                break None;
            }
            Err(e) => break Some(e),
        }
    };
    let unknown = elements
        .iter()
        .filter(|e| matches!(e, Element::Unknown))
        .count() as u64;
    assert_eq!(r.unknown_skipped(), unknown);
    if end.is_some() {
        // Not specified after an error, but it must not panic.
        let _ = r.next_element();
    }
    Read {
        open: Ok(r.metadata().clone()),
        elements,
        end,
    }
}

/// Arbitrary bytes as an archive sealed with the fixed key: header, metadata, every element.
/// Also the same bytes with the header checksum recomputed, so that mutations of header fields
/// reach the checks behind the CRC (key kind, Argon2 bounds, segment size, key check, MAC).
pub fn archive_reader(data: &[u8]) {
    let _ = ArchiveKey::from_key_file(data);
    let key = archive_key();
    let header = ferry_archive::read_header(&mut &data[..]);
    let read = read_all(data, &key);
    match (&header, &read.open) {
        (Err(h), Err(o)) => assert_eq!(h.to_string(), o.to_string()),
        (Err(h), Ok(_)) => panic!("read_header failed ({h}) but open succeeded"),
        _ => {}
    }
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        spec::fix_crc(&mut fixed);
        if fixed != data {
            read_all(&fixed, &key);
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct FramesInput {
    segment: u16,
    level: i8,
    threads: bool,
    meta: MetaSpec,
    items: Vec<WriteItem>,
}

#[derive(Arbitrary, Debug)]
pub enum WriteItem {
    /// `ArchiveWriter::write` of a typed element (unknown kinds through `write_encoded`).
    Element(ElemSpec),
    /// `ArchiveWriter::write_encoded` of any bytes: the reader must return what decoding them
    /// as an `ArchiveElement` gives, or `Malformed`.
    Encoded(Vec<u8>),
    /// The same element 1 to 8 times.
    Repeat(ElemSpec, u8),
}

/// What the reader must return for one written frame.
#[allow(clippy::large_enum_variant)]
enum Want {
    Element(Element),
    Malformed,
}

/// A valid archive written by `ferry_archive::ArchiveWriter` (fixed key, fuzzer-chosen segment
/// size, level, threads, metadata and elements) must read back exactly.
pub fn archive_frames(data: &[u8]) {
    let Ok(input) = FramesInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let key = archive_key();
    let segment = MIN_SEGMENT + u32::from(input.segment) % 4096;
    let opts = WriterOptions {
        segment_size: segment,
        level: i32::from(input.level) % 4,
        threads: usize::from(input.threads),
        kdf: Argon2Params::DEFAULT,
    };
    let metadata = input.meta.build();
    let meta_frame = frame(&encode_metadata(&metadata)).len();
    let mut w = match ArchiveWriter::new(Vec::new(), &key, metadata.clone(), &opts) {
        Ok(w) => {
            assert!(
                meta_frame <= segment as usize,
                "oversized metadata accepted"
            );
            w
        }
        Err(Error::Malformed(_)) if meta_frame > segment as usize => return,
        Err(e) => panic!("writer refused {meta_frame} bytes of metadata (segment {segment}): {e}"),
    };
    assert!(w.write(Element::Unknown).is_err());
    let mut want = Vec::new();
    let push = |w: &mut ArchiveWriter<Vec<u8>>, want: &mut Vec<Want>, spec: &ElemSpec| match spec
        .build()
    {
        Built::Known(e) => {
            w.write(e.clone()).expect("write");
            want.push(Want::Element(e));
        }
        Built::Unknown(bytes) => {
            w.write_encoded(&bytes).expect("write_encoded");
            want.push(Want::Element(Element::Unknown));
        }
    };
    for item in &input.items {
        match item {
            WriteItem::Element(spec) => push(&mut w, &mut want, spec),
            WriteItem::Repeat(spec, n) => {
                for _ in 0..=(n % 8) {
                    push(&mut w, &mut want, spec);
                }
            }
            WriteItem::Encoded(bytes) => {
                w.write_encoded(bytes).expect("write_encoded");
                use ferry_archive::proto::{archive_element::Element as E, ArchiveElement};
                want.push(match ArchiveElement::decode(&bytes[..]) {
                    Ok(ArchiveElement { element: None }) => Want::Element(Element::Unknown),
                    Ok(ArchiveElement {
                        element: Some(E::Conversation(c)),
                    }) => Want::Element(Element::Conversation(c)),
                    Ok(ArchiveElement {
                        element: Some(E::Message(m)),
                    }) => Want::Element(Element::Message(m)),
                    Ok(ArchiveElement {
                        element: Some(E::Consent(c)),
                    }) => Want::Element(Element::Consent(c)),
                    Ok(ArchiveElement {
                        element: Some(E::AttachmentPiece(a)),
                    }) => Want::Element(Element::AttachmentPiece(a)),
                    Ok(ArchiveElement {
                        element: Some(E::Metadata(_) | E::Signature(_)),
                    })
                    | Err(_) => Want::Malformed,
                });
            }
        }
    }
    let written = want.len() as u64;
    let (out, summary) = w.finish().expect("finish");
    assert_eq!(summary.bytes_written, out.len() as u64);
    assert_eq!(summary.elements, written);
    // Walk the length prefixes: as many chunks as the summary says, and nothing left over.
    let mut pos = HEADER_LEN;
    let mut chunks = 0;
    while pos < out.len() {
        let len = u32::from_le_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4 + len;
        chunks += 1;
    }
    assert_eq!(pos, out.len());
    assert_eq!(chunks, summary.chunks);

    let mut r = ArchiveReader::open(&out[..], &key).expect("open what the writer wrote");
    assert_eq!(r.metadata(), &metadata);
    assert_eq!(r.header().segment_size, segment);
    for (i, w) in want.into_iter().enumerate() {
        match w {
            Want::Element(e) => assert_eq!(r.next_element().expect("element"), Some(e), "{i}"),
            Want::Malformed => {
                let got = r.next_element();
                assert!(matches!(got, Err(Error::Malformed(_))), "{i}: {got:?}");
                return;
            }
        }
    }
    assert_eq!(r.next_element().expect("end"), None);
    assert_eq!(r.bytes_read(), out.len() as u64);
}

#[derive(Arbitrary, Debug)]
pub struct ChunksInput {
    segment: u16,
    level: i8,
    chunk0: Chunk0,
    items: Vec<Item>,
    /// Plaintext sizes of the chunks after chunk 0 (each modulo S + 1); the rest of the stream
    /// goes in S-byte chunks.
    cuts: Vec<u16>,
    empty_final: bool,
    faults: Vec<Fault>,
}

#[derive(Arbitrary, Debug)]
pub enum Chunk0 {
    Metadata(MetaSpec),
    Items(Vec<Item>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub enum Item {
    Element(ElemSpec),
    Metadata(MetaSpec),
    /// `varint(len) || bytes`.
    Frame(Vec<u8>),
    /// Bytes as they are: broken varints, partial frames.
    Raw(Vec<u8>),
    Repeat(ElemSpec, u8),
}

#[derive(Arbitrary, Debug)]
pub enum Fault {
    /// Seal these bytes as chunk `chunk`'s zstd frame (anything at all: the decompression path).
    Compressed {
        chunk: u8,
        bytes: Vec<u8>,
    },
    NoContentSize {
        chunk: u8,
    },
    WrongIndex {
        chunk: u8,
    },
    FlipLast {
        chunk: u8,
    },
    FlipByte {
        chunk: u8,
        pos: u16,
        xor: u8,
    },
    BadLength {
        chunk: u8,
        delta: i16,
    },
    DropFinal,
    Swap {
        a: u8,
        b: u8,
    },
    Duplicate {
        chunk: u8,
    },
    Trailing(Vec<u8>),
    Truncate(u16),
}

fn items_bytes(items: &[Item], out: &mut Vec<u8>) {
    for item in items {
        match item {
            Item::Element(spec) => out.extend(frame(&spec_bytes(spec))),
            Item::Repeat(spec, n) => {
                let f = frame(&spec_bytes(spec));
                for _ in 0..=(n % 8) {
                    out.extend_from_slice(&f);
                }
            }
            Item::Metadata(m) => out.extend(frame(&encode_metadata(&m.build()))),
            Item::Frame(b) => out.extend(frame(b)),
            Item::Raw(b) => out.extend_from_slice(b),
        }
    }
}

fn spec_bytes(spec: &ElemSpec) -> Vec<u8> {
    match spec.build() {
        Built::Known(e) => encode_element(&e),
        Built::Unknown(b) => b,
    }
}

/// One chunk before it is written out.
#[derive(Clone)]
struct Chunk {
    index: u32,
    last: bool,
    /// The plaintext `payload` decompresses to.
    plain: Vec<u8>,
    payload: Vec<u8>,
    /// The zstd frame declares its content size (§5).
    sized: bool,
    len_delta: i16,
    flip: Option<(u16, u8)>,
}

const SALT: [u8; 32] = [0x5a; 32];

/// The header, then every chunk sealed (and damaged as the chunk says); and where each chunk
/// ends in the file.
fn serialize(header: &[u8], chunks: &[Chunk]) -> (Vec<u8>, Vec<usize>) {
    let mut file = header.to_vec();
    let mut ends = Vec::with_capacity(chunks.len());
    for c in chunks {
        let mut sealed = sealer().chunk(c.index, c.last, &c.payload);
        if let Some((pos, xor)) = c.flip {
            let i = 4 + pos as usize % (sealed.len() - 4);
            sealed[i] ^= xor;
        }
        if c.len_delta != 0 {
            let len = u32::from_le_bytes(sealed[..4].try_into().unwrap());
            let len = len.wrapping_add_signed(i32::from(c.len_delta));
            sealed[..4].copy_from_slice(&len.to_le_bytes());
        }
        file.extend(sealed);
        ends.push(file.len());
    }
    (file, ends)
}

fn sealer() -> &'static spec::Sealer {
    static SEALER: OnceLock<spec::Sealer> = OnceLock::new();
    SEALER.get_or_init(|| spec::Sealer::new(&spec::derive(&crate::ARCHIVE_KEY, &SALT)))
}

/// Chunks sealed from the spec around any plaintext (frames split anywhere, empty chunks,
/// broken frames, oversized lengths, any zstd bytes) and optionally damaged. Without damage
/// the reader must return exactly what `model::expect` says; with damage it must fail.
pub fn archive_chunks(data: &[u8]) {
    let Ok(input) = ChunksInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let s = MIN_SEGMENT + u32::from(input.segment) % 4096;
    let level = 1 + i32::from(input.level).rem_euclid(3);
    let chunk0 = match &input.chunk0 {
        Chunk0::Metadata(m) => frame(&encode_metadata(&m.build())),
        Chunk0::Items(items) => {
            let mut b = Vec::new();
            items_bytes(items, &mut b);
            b
        }
        Chunk0::Raw(b) => b.clone(),
    };
    let mut rest = Vec::new();
    items_bytes(&input.items, &mut rest);

    let mut plains: Vec<&[u8]> = vec![&chunk0];
    let mut pos = 0;
    for &c in &input.cuts {
        if pos >= rest.len() {
            break;
        }
        let n = (c as usize % (s as usize + 1)).min(rest.len() - pos);
        plains.push(&rest[pos..pos + n]);
        pos += n;
    }
    while pos < rest.len() {
        let n = (s as usize).min(rest.len() - pos);
        plains.push(&rest[pos..pos + n]);
        pos += n;
    }
    if plains.len() == 1 || (input.empty_final && !plains.last().unwrap().is_empty()) {
        plains.push(&[]);
    }
    let n = plains.len();
    let mut chunks: Vec<Chunk> = plains
        .iter()
        .enumerate()
        .map(|(i, p)| Chunk {
            index: i as u32,
            last: i + 1 == n,
            plain: p.to_vec(),
            payload: spec::compress(p, level),
            sized: true,
            len_delta: 0,
            flip: None,
        })
        .collect();

    // Damage. Faults can cancel out or even make another valid archive (the final chunk
    // dropped after the one before it was sealed as final), so validity is decided on the
    // result below; `unpredictable` (any zstd bytes sealed): any result, but no panic.
    let mut unpredictable = false;
    let mut trailing = Vec::new();
    let mut truncate = None;
    for f in input.faults.iter().take(4) {
        let pick = |c: u8, len: usize| c as usize % len;
        let len = chunks.len();
        match f {
            Fault::Compressed { chunk, bytes } => {
                chunks[pick(*chunk, len)].payload = bytes.clone();
                unpredictable = true;
            }
            Fault::NoContentSize { chunk } => {
                let c = &mut chunks[pick(*chunk, len)];
                c.payload = spec::compress_without_size(&c.plain, level);
                c.sized = matches!(
                    zstd::zstd_safe::get_frame_content_size(&c.payload),
                    Ok(Some(_))
                );
            }
            Fault::WrongIndex { chunk } => {
                chunks[pick(*chunk, len)].index += 1;
            }
            Fault::FlipLast { chunk } => {
                let c = &mut chunks[pick(*chunk, len)];
                c.last = !c.last;
            }
            Fault::FlipByte { chunk, pos, xor } => {
                chunks[pick(*chunk, len)].flip = Some((*pos, xor | 1));
            }
            Fault::BadLength { chunk, delta } if *delta != 0 => {
                chunks[pick(*chunk, len)].len_delta = *delta;
            }
            Fault::DropFinal => {
                chunks.pop();
            }
            Fault::Swap { a, b } if pick(*a, len) != pick(*b, len) => {
                chunks.swap(pick(*a, len), pick(*b, len));
            }
            Fault::Duplicate { chunk } => {
                let copy = chunks[pick(*chunk, len)].clone();
                chunks.insert(pick(*chunk, len), copy);
            }
            Fault::Trailing(b) if !b.is_empty() => {
                trailing.extend_from_slice(b);
            }
            Fault::Truncate(k) => {
                truncate = Some(*k);
            }
            _ => {}
        }
        if chunks.is_empty() {
            break;
        }
    }

    let (header, _) = spec::header(&crate::ARCHIVE_KEY, &SALT, s);
    let (sealed, ends) = serialize(&header, &chunks);
    let mut file = sealed.clone();
    file.extend(trailing);
    if let Some(k) = truncate {
        let body = file.len() - HEADER_LEN;
        if body > 0 {
            file.truncate(file.len() - (1 + k as usize % body));
        }
    }

    // The chunks the file holds whole: all of them, or the first k when it was cut exactly at
    // a chunk boundary (a cut can remove a trailing chunk and leave a valid archive).
    let kept = if file == sealed {
        Some(chunks.len())
    } else if sealed.starts_with(&file) {
        ends.iter().position(|&e| e == file.len()).map(|i| i + 1)
    } else {
        None
    };
    // A valid archive: chunks 0..k in order, k >= 2, only the last one final, each sealed intact
    // with a sized zstd frame, and nothing else in the file.
    let valid = kept.is_some_and(|k| {
        k >= 2
            && chunks[..k].iter().enumerate().all(|(i, c)| {
                c.index as usize == i
                    && c.last == (i + 1 == k)
                    && c.sized
                    && c.flip.is_none()
                    && c.len_delta == 0
            })
    });
    let got = read_all(&file, &archive_key());
    if unpredictable {
        return;
    }
    if !valid {
        assert!(
            got.open.is_err() || got.end.is_some(),
            "a damaged archive read cleanly: {got:?}"
        );
        return;
    }
    let chunks = &chunks[..kept.expect("valid")];
    let chunk0 = &chunks[0].plain;
    let rest: Vec<u8> = chunks[1..].iter().flat_map(|c| c.plain.clone()).collect();
    if chunk0.len() > s as usize {
        // §9 C6: chunk 0 inflates past the segment size.
        assert!(
            matches!(got.open, Err(Error::Malformed(_))),
            "oversized chunk 0: {got:?}"
        );
        return;
    }
    let want = model::expect(chunk0, &rest);
    match (&want.metadata, &got.open) {
        (None, Err(e)) => {
            let w = want.error.expect("no metadata means an error");
            assert!(w.matches(e), "open: want {w:?}, got {e}");
            return;
        }
        (Some(m), Ok(got_m)) => assert_eq!(m, got_m),
        (w, g) => panic!("open: want {w:?} / {:?}, got {g:?}", want.error),
    }
    assert_eq!(got.elements, want.elements);
    match (want.error, &got.end) {
        (None, None) => {}
        (Some(w), Some(e)) if w.matches(e) => {}
        (w, g) => panic!("end: want {w:?}, got {g:?}"),
    }
}
