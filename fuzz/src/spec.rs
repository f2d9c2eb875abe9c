//! A Ferry archive encoder written from `docs/archive-format.md` (§3 header, §4 keys, §5 chunks),
//! independent of `ferry_archive`'s writer. It seals whatever chunk payload it is given, so the
//! fuzz targets can hand the reader authenticated chunks with any plaintext (or any "compressed"
//! bytes at all), and write any header field.

use aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header length (§3).
pub const HEADER_LEN: usize = 112;
/// `\x89FERRY\r\n` (§3).
pub const MAGIC: [u8; 8] = *b"\x89FERRY\r\n";

/// The keys of §4, derived with HKDF-SHA256 from a raw key and the archive's salt.
pub struct Keys {
    pub key_check: [u8; 16],
    pub header_mac_key: [u8; 32],
    pub payload_key: [u8; 32],
    pub nonce_prefix: [u8; 7],
}

pub fn derive(ikm: &[u8; 32], salt: &[u8; 32]) -> Keys {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut k = Keys {
        key_check: [0; 16],
        header_mac_key: [0; 32],
        payload_key: [0; 32],
        nonce_prefix: [0; 7],
    };
    hk.expand(b"ferry-archive v1 key-check", &mut k.key_check)
        .expect("hkdf");
    hk.expand(b"ferry-archive v1 header-mac", &mut k.header_mac_key)
        .expect("hkdf");
    hk.expand(b"ferry-archive v1 payload-key", &mut k.payload_key)
        .expect("hkdf");
    hk.expand(b"ferry-archive v1 payload-nonce", &mut k.nonce_prefix)
        .expect("hkdf");
    k
}

/// A raw-key header (key kind 1, zstd) with segment size `segment_size`, and its keys.
pub fn header(key: &[u8; 32], salt: &[u8; 32], segment_size: u32) -> ([u8; HEADER_LEN], Keys) {
    let keys = derive(key, salt);
    let mut b = [0u8; HEADER_LEN];
    b[0..8].copy_from_slice(&MAGIC);
    b[8] = 1; // major
    b[9] = 0; // minor
    b[10] = 1; // raw key
    b[11] = 1; // zstd
    b[12..16].copy_from_slice(&segment_size.to_le_bytes());
    // 16..28: Argon2 parameters, zero for a raw key.
    b[28..60].copy_from_slice(salt);
    b[60..76].copy_from_slice(&keys.key_check);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&keys.header_mac_key).expect("any key");
    mac.update(&b[..76]);
    b[76..108].copy_from_slice(&mac.finalize().into_bytes());
    fix_crc(&mut b);
    (b, keys)
}

/// Rewrites bytes `108..112` of a header with the CRC-32 of bytes `0..108` (§3).
pub fn fix_crc(header: &mut [u8]) {
    if header.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&header[..108]);
        header[108..112].copy_from_slice(&crc.to_le_bytes());
    }
}

/// AES-256-GCM under STREAM (big-endian 32-bit counter, last-chunk flag) with the archive's
/// payload key and 7-byte nonce prefix (§5).
pub struct Sealer {
    stream: StreamBE32<Aes256Gcm>,
}

impl Sealer {
    pub fn new(keys: &Keys) -> Self {
        let aead = Aes256Gcm::new_from_slice(&keys.payload_key).expect("32-byte key");
        Sealer {
            stream: StreamBE32::from_aead(aead, (&keys.nonce_prefix).into()),
        }
    }

    /// `u32 LE length || AES-GCM(payload)` for chunk `index` with the last flag `last`.
    pub fn chunk(&self, index: u32, last: bool, payload: &[u8]) -> Vec<u8> {
        let mut buf = payload.to_vec();
        self.stream
            .encrypt_in_place(index, last, &[], &mut buf)
            .expect("seal");
        let mut out = (buf.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&buf);
        out
    }
}

/// One zstd frame that declares its content size, as §5 requires.
pub fn compress(plain: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(plain, level).expect("zstd")
}

/// One zstd frame *without* a content size (the streaming encoder does not know it): a reader
/// must refuse such a chunk (§9 C6).
pub fn compress_without_size(plain: &[u8], level: i32) -> Vec<u8> {
    zstd::stream::encode_all(plain, level).expect("zstd")
}

/// A whole, valid archive: chunk 0 with `metadata_frame`, then `segments` (each one chunk's
/// plaintext; the last one is final). `segments` must not be empty.
pub fn archive(
    key: &[u8; 32],
    salt: &[u8; 32],
    segment_size: u32,
    metadata_frame: &[u8],
    segments: &[Vec<u8>],
) -> Vec<u8> {
    let (h, keys) = header(key, salt, segment_size);
    let sealer = Sealer::new(&keys);
    let mut out = h.to_vec();
    out.extend(sealer.chunk(0, false, &compress(metadata_frame, 3)));
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        out.extend(sealer.chunk(i as u32 + 1, last, &compress(s, 3)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// This encoder reproduces the worked example of docs/archive-format.md §14.
    #[test]
    fn header_matches_the_spec_worked_example() {
        let salt: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
        let (b, keys) = header(&crate::ARCHIVE_KEY, &salt, 1 << 20);
        assert_eq!(hex(&b[60..76]), "3bff4a7c6c13ecbcdf02b4b382ab6f0d");
        assert_eq!(
            hex(&b[76..108]),
            "3668f860f9b0af4b1060beae41603a0cafb3852c2ff09342e6f4e1a7e8a831e7"
        );
        assert_eq!(hex(&b[108..112]), "3f95c1b3");
        assert_eq!(hex(&keys.nonce_prefix), "73d8e4b2b655ee");
    }

    /// ferry_archive reads what this encoder writes.
    #[test]
    fn ferry_reads_a_spec_archive() {
        use ferry_archive::{proto, ArchiveReader, Element};
        use prost::Message;
        let meta = proto::ArchiveElement {
            element: Some(proto::archive_element::Element::Metadata(proto::Metadata {
                label: "spec".into(),
                ..Default::default()
            })),
        };
        let consent = proto::Consent {
            entity: "inbox".into(),
            ..Default::default()
        };
        let el = proto::ArchiveElement {
            element: Some(proto::archive_element::Element::Consent(consent.clone())),
        };
        let stream = crate::frame(&el.encode_to_vec());
        let a = archive(
            &crate::ARCHIVE_KEY,
            &[7; 32],
            4096,
            &crate::frame(&meta.encode_to_vec()),
            &[stream[..3].to_vec(), Vec::new(), stream[3..].to_vec()],
        );
        let mut r = ArchiveReader::open(&a[..], &crate::archive_key()).unwrap();
        assert_eq!(r.metadata().label, "spec");
        assert_eq!(r.next_element().unwrap(), Some(Element::Consent(consent)));
        assert_eq!(r.next_element().unwrap(), None);
    }
}
