//! The fuzz target bodies. Each takes the fuzzer's bytes and panics only on a finding.

mod archive;
mod identity;
#[cfg(feature = "mls")]
pub mod mls;
mod proto;
mod xmtp;

pub use archive::{archive_chunks, archive_frames, archive_reader};
pub use identity::identity_log;
pub use proto::{proto_decode, proto_selector, PROTO_TYPES};
pub use xmtp::{xmtp_reader, xmtp_records};

#[cfg(feature = "mls")]
pub use mls::mls_messages;

/// The structured input a target sees in `data` (for triage: `examples/replay.rs --describe`).
pub fn describe(target: &str, data: &[u8]) -> String {
    use arbitrary::{Arbitrary, Unstructured};
    fn show<'a, T: Arbitrary<'a> + std::fmt::Debug>(data: &'a [u8]) -> String {
        match T::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(v) => format!("{v:#?}"),
            Err(e) => format!("(does not parse: {e})"),
        }
    }
    match target {
        "archive_frames" => show::<archive::FramesInput>(data),
        "archive_chunks" => show::<archive::ChunksInput>(data),
        "identity_log" => show::<identity::IdentityInput>(data),
        "xmtp_records" => show::<xmtp::XmtpInput>(data),
        "proto_decode" => match data.split_first() {
            Some((&w, rest)) => format!(
                "{} ({} bytes)",
                PROTO_TYPES[w as usize % PROTO_TYPES.len()].0,
                rest.len()
            ),
            None => "(empty)".into(),
        },
        _ => format!("{} raw bytes", data.len()),
    }
}
