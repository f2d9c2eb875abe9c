//! Signed archives (format 1.1): round trips, the signing input exactly as the spec describes
//! it (docs/archive-format.md §15), and forgeries by someone who holds the archive key but not
//! the installation key — a flipped signature byte, a chunk spliced in from another archive of
//! the same installation, a new header, changed metadata — each refused as `BadSignature`.

use std::sync::Arc;

use ed25519_dalek::{Signature, VerifyingKey};
use ferry_archive::proto::{archive_element, ArchiveElement, Consent, Message, Metadata};
use ferry_archive::raw::RawArchive;
use ferry_archive::{
    ArchiveKey, ArchiveReader, ArchiveSigner, ArchiveWriter, Ed25519Signer, Element, Error,
    SignedBy, WriterOptions, HEADER_LEN, SIGNATURE_CONTEXT,
};
use prost::Message as _;
use sha2::{Digest, Sha256};

const SEED: [u8; 32] = [0x11; 32];
const INBOX: &str = "inbox-alice";

fn key() -> ArchiveKey {
    ArchiveKey::from_bytes(&[3u8; 32]).unwrap()
}

fn signer(seed: &[u8; 32]) -> Arc<Ed25519Signer> {
    Arc::new(Ed25519Signer::from_seed(INBOX, seed))
}

fn metadata() -> Metadata {
    Metadata {
        created_at_ns: 7,
        elements: vec![1, 2],
        label: "signed".into(),
        producer: "test".into(),
        ..Default::default()
    }
}

fn message(i: u64, salt: u8) -> Element {
    let mut id = [salt; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    let text: String = (0..(i % 53 + 20))
        .map(|k| char::from(b'a' + ((i * 7 + k * 13 + salt as u64) % 26) as u8))
        .collect();
    Element::Message(Message {
        id: id.to_vec(),
        conversation_id: vec![1; 16],
        sender_inbox_id: format!("sender-{}", i % 3),
        sent_at_ns: i as i64,
        content: text.into_bytes(),
        ..Default::default()
    })
}

fn elements(n: u64, salt: u8) -> Vec<Element> {
    let mut v: Vec<Element> = (0..n).map(|i| message(i, salt)).collect();
    v.push(Element::Consent(Consent {
        entity: "inbox-bob".into(),
        state: 2,
        entity_type: 2,
        updated_at_ns: 5,
    }));
    v
}

fn opts(threads: usize) -> WriterOptions {
    WriterOptions {
        segment_size: 4096,
        threads,
        ..WriterOptions::default()
    }
}

fn signed(els: &[Element], seed: &[u8; 32], threads: usize) -> Vec<u8> {
    let mut w = ArchiveWriter::signed(Vec::new(), &key(), metadata(), &opts(threads), signer(seed))
        .unwrap();
    for e in els {
        w.write(e.clone()).unwrap();
    }
    let (bytes, summary) = w.finish().unwrap();
    assert!(summary.signed);
    assert_eq!(summary.bytes_written as usize, bytes.len());
    assert_eq!(summary.chunks as usize, chunks(&bytes).len());
    bytes
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

/// Reads every element; the error, if any, and what was yielded before it.
fn read(bytes: &[u8]) -> (Vec<Element>, Result<Option<SignedBy>, Error>) {
    let mut r = match ArchiveReader::open(bytes, &key()) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    loop {
        match r.next_element() {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {
                assert_eq!(r.signature_verified(), r.signed_by().is_some());
                return (out, Ok(r.signed_by().cloned()));
            }
            Err(e) => return (out, Err(e)),
        }
    }
}

fn bad_signature(bytes: &[u8], case: &str) {
    let (_, end) = read(bytes);
    assert!(
        matches!(end, Err(Error::BadSignature(_))),
        "{case}: reading gave {end:?}"
    );
    let skim = ArchiveReader::open(bytes, &key())
        .unwrap()
        .check_signature();
    assert!(
        matches!(skim, Err(Error::BadSignature(_))),
        "{case}: check_signature gave {skim:?}"
    );
}

fn alice() -> SignedBy {
    SignedBy {
        inbox_id: INBOX.into(),
        installation_id: signer(&SEED).installation_id(),
    }
}

/// The metadata in chunk 0's plaintext (one frame).
fn metadata_of(chunk0: &[u8]) -> Metadata {
    let mut rest = chunk0;
    let len = prost::encoding::decode_varint(&mut rest).unwrap();
    assert_eq!(len as usize, rest.len());
    match ArchiveElement::decode(rest).unwrap().element {
        Some(archive_element::Element::Metadata(m)) => m,
        other => panic!("chunk 0 holds {other:?}"),
    }
}

/// A metadata frame, as chunk 0's plaintext.
fn metadata_frame(m: Metadata) -> Vec<u8> {
    let el = ArchiveElement {
        element: Some(archive_element::Element::Metadata(m)),
    };
    let mut frame = Vec::new();
    prost::encoding::encode_varint(el.encoded_len() as u64, &mut frame);
    el.encode(&mut frame).unwrap();
    frame
}

#[test]
fn a_signed_archive_round_trips_and_names_its_signer() {
    let els = elements(1500, 1);
    for threads in [0, 2] {
        let bytes = signed(&els, &SEED, threads);
        assert_eq!(bytes[9], 1, "minor version 1");
        let r = ArchiveReader::open(&bytes[..], &key()).unwrap();
        assert!(r.header().is_signed());
        assert_eq!(r.signed_by(), Some(&alice()));
        assert!(!r.signature_verified(), "not before the end");
        // The writer filled the metadata's origin from the signer.
        assert_eq!(r.metadata().inbox_id, INBOX);
        assert_eq!(
            r.metadata().installation_id,
            alice().installation_id.to_vec()
        );
        r.check_signature().unwrap();
        let (got, end) = read(&bytes);
        assert_eq!(end.unwrap(), Some(alice()));
        assert_eq!(got, els);
    }
    // No elements: the metadata chunk, then the signature.
    let bytes = signed(&[], &SEED, 1);
    assert_eq!(chunks(&bytes).len(), 2);
    let (got, end) = read(&bytes);
    assert!(got.is_empty());
    assert_eq!(end.unwrap(), Some(alice()));
}

#[test]
fn the_signature_covers_exactly_what_the_spec_says() {
    let bytes = signed(&elements(800, 2), &SEED, 2);
    let parts = chunks(&bytes);
    let (final_at, _) = *parts.last().unwrap();
    // §15.2, computed here from the file's bytes.
    let mut input = SIGNATURE_CONTEXT.to_vec();
    assert_eq!(input, b"ferry-archive v1 signature");
    input.extend_from_slice(&bytes[..HEADER_LEN]);
    input.extend_from_slice(&(INBOX.len() as u32).to_le_bytes());
    input.extend_from_slice(INBOX.as_bytes());
    input.extend_from_slice(&alice().installation_id);
    input.extend_from_slice(&Sha256::digest(&bytes[HEADER_LEN..final_at]));
    // The final chunk's plaintext is one frame: varint length, then ArchiveElement{signature}.
    let raw = RawArchive::open(&bytes, &key()).unwrap();
    let last = raw.chunks.last().unwrap();
    assert_eq!(
        last[0] as usize,
        last.len() - 1,
        "one frame, one-byte length"
    );
    let sig = match ArchiveElement::decode(&last[1..]).unwrap().element {
        Some(archive_element::Element::Signature(s)) => s.signature,
        other => panic!("final chunk holds {other:?}"),
    };
    let vk = VerifyingKey::from_bytes(&alice().installation_id).unwrap();
    vk.verify_strict(&input, &Signature::from_slice(&sig).unwrap())
        .expect("the signature verifies over the spec's signing input");
    // The last elements are in a chunk of their own (not final): unsigned readers see every
    // chunk before the signature as an ordinary one.
    assert!(raw.chunks[raw.chunks.len() - 2].len() <= 4096);
}

#[test]
fn a_flipped_signature_byte_is_refused() {
    let bytes = signed(&elements(300, 3), &SEED, 1);
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    let last = raw.chunks.last_mut().unwrap();
    let n = last.len();
    last[n - 1] ^= 0x01;
    let forged = raw.seal().unwrap();
    let (got, _) = read(&forged);
    assert_eq!(got.len(), 301, "every element came before the end");
    bad_signature(&forged, "flipped signature byte");
    // Sealed again unchanged, the archive is fine: the refusal is the flip's doing.
    last_unchanged(&bytes);
}

fn last_unchanged(bytes: &[u8]) {
    let raw = RawArchive::open(bytes, &key()).unwrap();
    let (_, end) = read(&raw.seal().unwrap());
    assert_eq!(end.unwrap(), Some(alice()));
}

#[test]
fn a_chunk_spliced_from_another_archive_of_the_same_installation_is_refused() {
    // Two archives by the same installation under the same key, with different contents.
    let a = signed(&elements(900, 4), &SEED, 2);
    let b = signed(&elements(900, 5), &SEED, 2);
    let raw_b = RawArchive::open(&b, &key()).unwrap();
    let n = raw_b.chunks.len();
    assert!(n > 6);
    for i in [1, n / 2, n - 2] {
        let mut raw_a = RawArchive::open(&a, &key()).unwrap();
        assert_ne!(raw_a.chunks[i], raw_b.chunks[i]);
        raw_a.chunks[i] = raw_b.chunks[i].clone();
        bad_signature(&raw_a.seal().unwrap(), &format!("chunk {i} from b"));
    }
    // b's signature moved onto a, and a chunk dropped (its successors renumbered).
    let mut raw_a = RawArchive::open(&a, &key()).unwrap();
    *raw_a.chunks.last_mut().unwrap() = raw_b.chunks.last().unwrap().clone();
    bad_signature(&raw_a.seal().unwrap(), "b's signature on a");
    // A chunk dropped and the rest resealed at their new positions: the frames no longer line
    // up (reading stops there), and the signature check alone says why.
    let mut raw_a = RawArchive::open(&a, &key()).unwrap();
    raw_a.chunks.remove(2);
    let dropped = raw_a.seal().unwrap();
    assert!(read(&dropped).1.is_err());
    let skim = ArchiveReader::open(&dropped[..], &key())
        .unwrap()
        .check_signature();
    assert!(matches!(skim, Err(Error::BadSignature(_))), "{skim:?}");
}

#[test]
fn a_new_header_or_changed_metadata_is_refused() {
    let bytes = signed(&elements(400, 6), &SEED, 1);
    let salt = ArchiveReader::open(&bytes[..], &key())
        .unwrap()
        .header()
        .salt;
    // Header fields that leave the keys as they are, so every chunk seals to the same bytes
    // and only the header itself differs: the header is signed.
    for (minor, segment) in [(1, 4096), (2, 4096), (1, 8192)] {
        let mut raw = RawArchive::open(&bytes, &key()).unwrap();
        raw.new_header(&key(), salt, minor, segment).unwrap();
        let forged = raw.seal().unwrap();
        assert_eq!(forged[HEADER_LEN..], bytes[HEADER_LEN..], "the same chunks");
        if (minor, segment) == (1, 4096) {
            // The control: the same header again reads fine.
            assert_eq!(forged, bytes);
            continue;
        }
        bad_signature(&forged, &format!("header {minor} {segment}"));
    }
    // A fresh salt (the same key, contents and signature).
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    raw.new_header(&key(), [0xee; 32], 1, 4096).unwrap();
    bad_signature(&raw.seal().unwrap(), "new salt");
    // The metadata rewritten to name another inbox (with the same installation).
    for change in ["inbox", "label"] {
        let mut raw = RawArchive::open(&bytes, &key()).unwrap();
        let mut m = metadata_of(&raw.chunks[0]);
        match change {
            "inbox" => m.inbox_id = "inbox-mallory".into(),
            _ => m.label = "changed".into(),
        }
        raw.chunks[0] = metadata_frame(m);
        bad_signature(&raw.seal().unwrap(), change);
    }
}

#[test]
fn another_installations_signature_is_refused_and_a_lying_signer_cannot_write() {
    // An archive signed by installation B, its metadata rewritten to name A: B's signature
    // does not verify under A's key.
    let other: [u8; 32] = [0x22; 32];
    let bytes = signed(&elements(50, 7), &other, 1);
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    let mut m = metadata_of(&raw.chunks[0]);
    m.installation_id = alice().installation_id.to_vec();
    raw.chunks[0] = metadata_frame(m);
    bad_signature(&raw.seal().unwrap(), "names A, signed by B");

    // A signer that names one installation and signs with another key.
    struct Liar(Ed25519Signer, [u8; 32]);
    impl ArchiveSigner for Liar {
        fn inbox_id(&self) -> &str {
            self.0.inbox_id()
        }
        fn installation_id(&self) -> [u8; 32] {
            self.1
        }
        fn sign(&self, m: &[u8]) -> Result<[u8; 64], String> {
            self.0.sign(m)
        }
    }
    let liar = Arc::new(Liar(
        Ed25519Signer::from_seed(INBOX, &other),
        alice().installation_id,
    ));
    let w = ArchiveWriter::signed(Vec::new(), &key(), metadata(), &opts(0), liar).unwrap();
    assert!(matches!(w.finish(), Err(Error::Signer(_))));
    // A signer of no inbox (a signed archive must name one).
    let nobody = Arc::new(Ed25519Signer::from_seed("", &SEED));
    let r = ArchiveWriter::signed(Vec::new(), &key(), metadata(), &opts(0), nobody);
    assert!(matches!(r, Err(Error::Signer(_))));
    // Metadata that names someone else than the signer.
    let mut m = metadata();
    m.inbox_id = "inbox-other".into();
    let r = ArchiveWriter::signed(Vec::new(), &key(), m, &opts(0), signer(&SEED));
    assert!(matches!(r, Err(Error::Signer(_))));
}

#[test]
fn unsigned_archives_are_version_1_0_and_read_as_unsigned() {
    let els = elements(700, 8);
    let mut m = metadata();
    m.inbox_id = INBOX.into();
    m.installation_id = alice().installation_id.to_vec();
    let mut w = ArchiveWriter::new(Vec::new(), &key(), m, &opts(2)).unwrap();
    for e in &els {
        w.write(e.clone()).unwrap();
    }
    let (bytes, summary) = w.finish().unwrap();
    assert!(!summary.signed);
    assert_eq!(bytes[9], 0, "minor version 0");
    let r = ArchiveReader::open(&bytes[..], &key()).unwrap();
    assert!(!r.header().is_signed());
    assert_eq!(
        r.signed_by(),
        None,
        "an origin in the metadata is no signature"
    );
    r.check_signature().unwrap();
    let (got, end) = read(&bytes);
    assert_eq!(got, els);
    assert_eq!(end.unwrap(), None);
}

#[test]
fn a_signature_stripped_by_a_key_holder_leaves_an_unsigned_archive_or_a_malformed_one() {
    let bytes = signed(&elements(200, 9), &SEED, 1);
    // Minor version 0 and the signature chunk dropped: a well-formed 1.0 archive, which says
    // it is unsigned (as anything a key holder writes can be).
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    raw.new_header(&key(), [0xee; 32], 0, 4096).unwrap();
    raw.chunks.pop();
    let (got, end) = read(&raw.seal().unwrap());
    assert_eq!(got.len(), 201);
    assert_eq!(end.unwrap(), None);
    // Minor version 0 with the signature still there: a signature element in an unsigned
    // archive is malformed.
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    raw.new_header(&key(), [0xee; 32], 0, 4096).unwrap();
    let (_, end) = read(&raw.seal().unwrap());
    assert!(matches!(end, Err(Error::Malformed(_))), "{end:?}");
    // Signed, but the signature chunk dropped: the last data chunk becomes final, and holds
    // elements, not a signature.
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    raw.chunks.pop();
    bad_signature(&raw.seal().unwrap(), "signature chunk dropped");
    // Signed, with elements after the signature in the final chunk.
    let mut raw = RawArchive::open(&bytes, &key()).unwrap();
    let extra = raw.chunks[1][..20].to_vec();
    raw.chunks.last_mut().unwrap().extend_from_slice(&extra);
    bad_signature(&raw.seal().unwrap(), "bytes after the signature");
}

#[test]
fn the_raw_view_is_faithful() {
    // Opening and sealing again without changes gives an archive that reads the same.
    let bytes = signed(&elements(600, 10), &SEED, 2);
    let raw = RawArchive::open(&bytes, &key()).unwrap();
    assert_eq!(raw.chunks.len(), chunks(&bytes).len());
    assert_eq!(raw.header().as_bytes()[..], bytes[..HEADER_LEN]);
    let again = raw.seal().unwrap();
    assert_eq!(read(&again).0, read(&bytes).0);
    // And the raw view refuses damage like the reader.
    let mut damaged = bytes.clone();
    let (at, len) = chunks(&bytes)[3];
    damaged[at + len / 2] ^= 0x04;
    assert!(matches!(
        RawArchive::open(&damaged, &key()),
        Err(Error::ChunkCorrupted { index: 3 })
    ));
}
