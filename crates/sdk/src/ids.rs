//! Ids a user can hold: newtypes with a lowercase-hex [`Display`](std::fmt::Display) and a
//! [`FromStr`] that accepts either case, serialised as hex strings.
//!
//! ```
//! use ferry_sdk::{ConversationId, InstallationId};
//!
//! let id: ConversationId = "0a0B".parse().unwrap();
//! assert_eq!(id.to_string(), "0a0b");
//! assert_eq!(id.as_bytes(), &[0x0a, 0x0b]);
//! assert!("zz".parse::<ConversationId>().is_err());
//! assert!("00".parse::<InstallationId>().is_err()); // an installation id is 32 bytes
//! ```

use std::fmt;
use std::str::FromStr;

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not valid: {reason}")]
pub struct InvalidId {
    /// Which id was expected.
    pub kind: &'static str,
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

fn decode_hex(kind: &'static str, s: &str) -> Result<Vec<u8>, InvalidId> {
    hex::decode(s.trim()).map_err(|e| InvalidId {
        kind,
        value: s.to_string(),
        reason: e.to_string(),
    })
}

macro_rules! bytes_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Vec<u8>);

        impl $name {
            /// The id's bytes.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            /// The id's bytes, owned.
            pub fn into_bytes(self) -> Vec<u8> {
                self.0
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(bytes: Vec<u8>) -> Self {
                $name(bytes)
            }
        }

        impl From<&[u8]> for $name {
            fn from(bytes: &[u8]) -> Self {
                $name(bytes.to_vec())
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let bytes = decode_hex($kind, s)?;
                if bytes.is_empty() {
                    return Err(InvalidId {
                        kind: $kind,
                        value: s.to_string(),
                        reason: "empty".into(),
                    });
                }
                Ok($name(bytes))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
    };
}

bytes_id!(
    /// A conversation's id (an MLS group id), the same on every member's installations.
    ConversationId,
    "conversation id"
);
bytes_id!(
    /// A message's id, the same on every installation that has the message.
    MessageId,
    "message id"
);

/// An installation's id: its 32-byte Ed25519 public key (also its MLS signature key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstallationId([u8; 32]);

impl InstallationId {
    /// The id's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for InstallationId {
    fn from(bytes: [u8; 32]) -> Self {
        InstallationId(bytes)
    }
}

impl TryFrom<&[u8]> for InstallationId {
    type Error = InvalidId;
    fn try_from(bytes: &[u8]) -> Result<Self, InvalidId> {
        bytes.try_into().map(InstallationId).map_err(|_| InvalidId {
            kind: "installation id",
            value: hex::encode(bytes),
            reason: format!("{} bytes, not 32", bytes.len()),
        })
    }
}

impl AsRef<[u8]> for InstallationId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstallationId({self})")
    }
}

impl FromStr for InstallationId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let bytes = decode_hex("installation id", s)?;
        InstallationId::try_from(bytes.as_slice()).map_err(|mut e| {
            e.value = s.to_string();
            e
        })
    }
}

impl serde::Serialize for InstallationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// An inbox's id: the hex of a hash of the account key that controls it (64 hex digits).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboxId(String);

impl InboxId {
    /// The id as text (lowercase hex).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InboxId({})", self.0)
    }
}

impl FromStr for InboxId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let bytes = decode_hex("inbox id", s)?;
        if bytes.len() != 32 {
            return Err(InvalidId {
                kind: "inbox id",
                value: s.to_string(),
                reason: format!("{} bytes, not 32", bytes.len()),
            });
        }
        Ok(InboxId(hex::encode(bytes)))
    }
}

impl AsRef<str> for InboxId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for InboxId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl InboxId {
    /// An inbox id known to be well formed (made by this SDK).
    pub(crate) fn trusted(s: &str) -> InboxId {
        InboxId(s.to_string())
    }
}

// An inbox id reads as the text it is, and an installation id as its 32 bytes, so both pass
// where a `&str` or a `&[u8; 32]` is taken.

impl std::ops::Deref for InboxId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for InboxId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for InboxId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for InboxId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<InboxId> for str {
    fn eq(&self, other: &InboxId) -> bool {
        self == other.0
    }
}

impl PartialEq<InboxId> for String {
    fn eq(&self, other: &InboxId) -> bool {
        *self == other.0
    }
}

impl From<InboxId> for String {
    fn from(id: InboxId) -> String {
        id.0
    }
}

impl From<&InboxId> for String {
    fn from(id: &InboxId) -> String {
        id.0.clone()
    }
}

impl std::ops::Deref for InstallationId {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq<[u8; 32]> for InstallationId {
    fn eq(&self, other: &[u8; 32]) -> bool {
        &self.0 == other
    }
}

impl PartialEq<String> for &InboxId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<&InboxId> for String {
    fn eq(&self, other: &&InboxId) -> bool {
        *self == other.0
    }
}

// An installation id compares with its hex text (as older code and JSON carry it).

impl PartialEq<String> for InstallationId {
    fn eq(&self, other: &String) -> bool {
        hex::decode(other).is_ok_and(|b| b.as_slice() == self.0.as_slice())
    }
}

impl PartialEq<&str> for InstallationId {
    fn eq(&self, other: &&str) -> bool {
        hex::decode(other).is_ok_and(|b| b.as_slice() == self.0.as_slice())
    }
}
