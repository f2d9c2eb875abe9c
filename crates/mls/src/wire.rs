//! The wire format: TLS-serialized `MLSMessage`s in and out, and credential helpers.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    Credential, KeyPackage, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    ProtocolVersion,
};
use openmls_traits::OpenMlsProvider;

use crate::{Error, Provider, Result, CIPHERSUITE};

pub(crate) fn parse_key_package(provider: &Provider<'_>, bytes: &[u8]) -> Result<KeyPackage> {
    let kp: KeyPackageIn = match deserialize(bytes)?.extract() {
        MlsMessageBodyIn::KeyPackage(kp) => kp,
        other => {
            return Err(Error::UnexpectedMessage {
                expected: "key package",
                got: body_name(&other),
            })
        }
    };
    let kp = kp
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(Error::InvalidKeyPackage)?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(Error::WrongCiphersuite(kp.ciphersuite()));
    }
    Ok(kp)
}

pub(crate) fn serialize(msg: &MlsMessageOut) -> Result<Vec<u8>> {
    msg.tls_serialize_detached().map_err(Error::Malformed)
}

pub(crate) fn deserialize(bytes: &[u8]) -> Result<MlsMessageIn> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(Error::Malformed)
}

pub(crate) fn body_name(body: &MlsMessageBodyIn) -> &'static str {
    match body {
        MlsMessageBodyIn::PublicMessage(_) => "public message",
        MlsMessageBodyIn::PrivateMessage(_) => "private message",
        MlsMessageBodyIn::Welcome(_) => "welcome",
        MlsMessageBodyIn::GroupInfo(_) => "group info",
        MlsMessageBodyIn::KeyPackage(_) => "key package",
        #[allow(unreachable_patterns)]
        _ => "other message",
    }
}

/// The installation id in a credential: a basic credential's identity bytes.
pub(crate) fn credential_id(c: &Credential) -> Vec<u8> {
    c.serialized_content().to_vec()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
