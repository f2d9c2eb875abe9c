//! Protobuf types shared by Ferry's crates.
//!
//! The `.proto` sources live in `proto/` beside this crate and are compiled at build time by
//! `protox` and `prost-build`; no `protoc` binary is involved.

/// Elements of a Ferry archive (`ferry.archive.v1`). See `docs/archive-format.md`.
pub mod archive {
    include!(concat!(env!("OUT_DIR"), "/ferry.archive.v1.rs"));
}

/// Identity logs (`ferry.identity.v1`): inboxes, installations, signed updates.
pub mod identity {
    include!(concat!(env!("OUT_DIR"), "/ferry.identity.v1.rs"));
}

/// The delivery node's messages (`ferry.node.v1`). The service definition is compiled into a
/// tonic server and client by the crates that serve and call it.
pub mod node {
    include!(concat!(env!("OUT_DIR"), "/ferry.node.v1.rs"));
}

pub use prost;
pub use prost::Message;
