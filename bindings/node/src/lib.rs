//! The native half of `@ferry/node-sdk`: the Ferry SDK's async client for Node.js, through
//! Node-API (napi-rs). Every async Rust call is a JS Promise run on napi's tokio runtime.
//!
//! The TypeScript layer in `ts/` gives it the shape of @xmtp/node-sdk (classes for groups and
//! DMs, async iterators for streams, `bigint` nanoseconds, errors with a `code`). Errors cross
//! as `[CODE] message`, where `CODE` is [`ferry_sdk::Error::code`]; the TypeScript layer turns
//! that into a JS `Error` whose `code` is `CODE` and whose `message` is the SDK's own.

mod client;
mod conversation;
mod stream;
mod types;

pub use client::*;
pub use conversation::*;
pub use stream::*;
pub use types::*;

/// The SDK's error as a JS error: `[CODE] message`.
pub(crate) fn to_js(e: ferry_sdk::Error) -> napi::Error {
    napi::Error::new(
        napi::Status::GenericFailure,
        format!("[{}] {}", e.code(), e),
    )
}

/// A bad argument from JS.
pub(crate) fn invalid(msg: impl std::fmt::Display) -> napi::Error {
    napi::Error::new(
        napi::Status::InvalidArg,
        format!("[INVALID_ARGUMENT] {msg}"),
    )
}

/// `.js()` turns an SDK result into a napi one.
pub(crate) trait Js<T> {
    fn js(self) -> napi::Result<T>;
}

impl<T> Js<T> for ferry_sdk::Result<T> {
    fn js(self) -> napi::Result<T> {
        self.map_err(to_js)
    }
}
