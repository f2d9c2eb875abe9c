//! The bodies of Ferry's fuzz targets, and the encoders they use.
//!
//! Every fuzz target in `fuzz_targets/` is one line that calls a function of [`targets`], so the
//! same code runs under libFuzzer (`scripts/fuzz`) and under `cargo test` (the regression inputs
//! in `fuzz/regressions/<target>/`, see `tests/regressions.rs`). A target returns normally for
//! every input; a panic (a crash, or a failed assertion of an oracle) is a finding.
//!
//! * [`spec`]: an encoder of Ferry archives written from `docs/archive-format.md` alone (not
//!   through `ferry_archive::ArchiveWriter`), so the fuzzer can seal *any* plaintext chunk and
//!   reach the reader's decompression and frame parsing behind the authentication.
//! * [`xmtp`]: an encoder of libxmtp archives written from the vector's `FORMAT.md`.
//! * [`model`]: what a conforming reader must return for a chunk sequence (§6 and §9 of the spec).
//! * [`gen`]: `Arbitrary` descriptions of elements and records, turned into protobuf values.

pub mod gen;
pub mod model;
pub mod spec;
pub mod targets;
pub mod xmtp;

/// The raw key every Ferry archive of the fuzz targets and seeds is sealed with: `00 01 .. 1f`
/// (the key of the worked example in docs/archive-format.md §14).
pub const ARCHIVE_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

/// The key of libxmtp archives in the fuzz targets: 32 zero bytes, the key of the real vector
/// `tests/vectors/xmtp/archive-legacy.xmtp`, so the vector is a useful seed.
pub const XMTP_KEY: [u8; 32] = [0u8; 32];

/// [`ARCHIVE_KEY`] as a `ferry_archive` key.
pub fn archive_key() -> ferry_archive::ArchiveKey {
    ferry_archive::ArchiveKey::from_bytes(&ARCHIVE_KEY).expect("32 bytes")
}

/// Every fuzz target, by name, as `(name, body)`: what `tests/regressions.rs` and the seed
/// generator iterate over (with the `mls` feature, `mls_messages` too).
#[cfg(feature = "mls")]
pub const TARGETS: &[Target] = &[
    ("archive_reader", targets::archive_reader),
    ("archive_frames", targets::archive_frames),
    ("archive_chunks", targets::archive_chunks),
    ("proto_decode", targets::proto_decode),
    ("identity_log", targets::identity_log),
    ("xmtp_reader", targets::xmtp_reader),
    ("xmtp_records", targets::xmtp_records),
    ("mls_messages", targets::mls_messages),
];

/// Every fuzz target, by name, as `(name, body)`: what `tests/regressions.rs` and the seed
/// generator iterate over (with the `mls` feature, `mls_messages` too).
#[cfg(not(feature = "mls"))]
pub const TARGETS: &[Target] = &[
    ("archive_reader", targets::archive_reader),
    ("archive_frames", targets::archive_frames),
    ("archive_chunks", targets::archive_chunks),
    ("proto_decode", targets::proto_decode),
    ("identity_log", targets::identity_log),
    ("xmtp_reader", targets::xmtp_reader),
    ("xmtp_records", targets::xmtp_records),
];

/// A fuzz target: its name and its body.
pub type Target = (&'static str, fn(&[u8]));

/// `varint(len) || bytes`: one frame of a Ferry archive's plaintext stream.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 5);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}
