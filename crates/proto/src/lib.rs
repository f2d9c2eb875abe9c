//! Protobuf types shared by Ferry's crates.
//!
//! The `.proto` sources live in `proto/` beside this crate and are compiled at build time by
//! `protox` and `prost-build`; no `protoc` binary is involved.

/// The generated modules, nested as their packages are (so cross-package references
/// resolve); the flat aliases below are what the rest of Ferry uses.
pub mod ferry {
    pub mod archive {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/ferry.archive.v1.rs"));
        }
    }
    pub mod identity {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/ferry.identity.v1.rs"));
        }
    }
    pub mod message {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/ferry.message.v1.rs"));
        }
    }
    pub mod node {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/ferry.node.v1.rs"));
        }
    }
}

/// Elements of a Ferry archive (`ferry.archive.v1`). See `docs/archive-format.md`.
pub use ferry::archive::v1 as archive;
/// Identity logs (`ferry.identity.v1`): inboxes, installations, signed updates.
pub use ferry::identity::v1 as identity;
/// The plaintext inside MLS application messages (`ferry.message.v1`).
pub use ferry::message::v1 as message;
/// The delivery node's API (`ferry.node.v1`); with the `grpc` feature also its tonic client
/// (`node::node_client`) and server (`node::node_server`).
pub use ferry::node::v1 as node;

pub use prost;
pub use prost::Message;
#[cfg(feature = "grpc")]
pub use tonic;
#[cfg(feature = "grpc")]
pub use tonic_prost;
