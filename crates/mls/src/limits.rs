//! What openmls alone does on this machine: the yardstick Ferry's messaging figures are
//! divided by (`ferry bench mls`, and `ferry bench node --limits`).
//!
//! Two members in one group; one encrypts `messages` application messages of `size` bytes,
//! the other decrypts them in order. Timed separately, once with openmls' in-memory storage
//! (`openmls_rust_crypto::OpenMlsRustCrypto`: crypto and a hash map, nothing else) and once
//! with its SQLite storage on a file in WAL mode (each call autocommitted, as openmls does it
//! when nobody opens a transaction around it). No Ferry code runs inside the timed loops.

use std::time::Instant;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    BasicCredential, CredentialWithKey, KeyPackage, MlsGroup, MlsGroupCreateConfig,
    MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, ProtocolMessage,
    StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use serde::Serialize;

use crate::{Provider, Result, CIPHERSUITE, MAX_PAST_EPOCHS};

/// Rates for one storage: messages per second on one thread.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    /// `MlsGroup::create_message` + TLS serialization, per second.
    pub encrypt_per_second: f64,
    /// TLS deserialization + `MlsGroup::process_message`, per second.
    pub decrypt_per_second: f64,
}

/// openmls' own rates with both storages.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Limits {
    pub messages: u64,
    pub message_bytes: usize,
    /// openmls with its in-memory storage: the ceiling for anything built on it.
    pub memory: Rates,
    /// openmls with its SQLite storage (one autocommit per call), in a temp file.
    pub sqlite: Rates,
}

/// Measures [`Limits`] with `messages` messages of `size` bytes (at least 1 of each).
pub fn measure(messages: u64, size: usize) -> Result<Limits> {
    let messages = messages.max(1);
    let memory = {
        let (a, b) = (OpenMlsRustCrypto::default(), OpenMlsRustCrypto::default());
        rates(&a, &b, messages, size)?
    };
    let dir = std::env::temp_dir().join(format!(
        "ferry-mls-limits-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::Openmls {
        op: "creating the benchmark's folder",
        source: Box::new(e),
    })?;
    let sqlite = (|| {
        let open = |name: &str| -> Result<rusqlite::Connection> {
            let mut c = rusqlite::Connection::open(dir.join(name))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            crate::migrate(&mut c)?;
            Ok(c)
        };
        let (ca, cb) = (open("a.db")?, open("b.db")?);
        let (a, b) = (Provider::new(&ca), Provider::new(&cb));
        rates(&a, &b, messages, size)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Limits {
        messages,
        message_bytes: size,
        memory,
        sqlite: sqlite?,
    })
}

fn bench_err(what: &str) -> crate::Error {
    crate::Error::Openmls {
        op: "measuring openmls",
        source: what.into(),
    }
}

/// openmls' errors here are generic over the storage's; their text is enough.
fn failed<E: std::fmt::Debug>(op: &'static str) -> impl FnOnce(E) -> crate::Error {
    move |e| bench_err(&format!("{op}: {e:?}"))
}

fn member<P: OpenMlsProvider>(
    provider: &P,
    name: &[u8],
) -> Result<(SignatureKeyPair, CredentialWithKey)> {
    let keys = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
        .map_err(failed("generating a signature key"))?;
    keys.store(provider.storage())
        .map_err(|_| bench_err("storing a signature key"))?;
    let cred = CredentialWithKey {
        credential: BasicCredential::new(name.to_vec()).into(),
        signature_key: keys.public().into(),
    };
    Ok((keys, cred))
}

/// Times `messages` encryptions by a member of a two-member group on `pa` and their
/// decryption by the other on `pb`.
fn rates<A: OpenMlsProvider, B: OpenMlsProvider>(
    pa: &A,
    pb: &B,
    messages: u64,
    size: usize,
) -> Result<Rates> {
    let (ka, ca) = member(pa, b"alice")?;
    let (kb, cb) = member(pb, b"bob")?;
    let bob_kp = KeyPackage::builder()
        .build(CIPHERSUITE, pb, &kb, cb)
        .map_err(failed("building a key package"))?;
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build();
    let mut alice = MlsGroup::new(pa, &ka, &config, ca).map_err(failed("creating a group"))?;
    let (_, welcome, _) = alice
        .add_members(pa, &ka, &[bob_kp.key_package().clone()])
        .map_err(failed("adding a member"))?;
    alice
        .merge_pending_commit(pa)
        .map_err(failed("merging a commit"))?;
    let welcome = welcome
        .tls_serialize_detached()
        .map_err(crate::Error::Malformed)?;
    let welcome = match MlsMessageIn::tls_deserialize_exact(welcome)
        .map_err(crate::Error::Malformed)?
        .extract()
    {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => return Err(bench_err("not a welcome")),
    };
    let join = MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build();
    let mut bob = StagedWelcome::new_from_welcome(pb, &join, welcome, None)
        .map_err(failed("joining"))?
        .into_group(pb)
        .map_err(failed("joining"))?;

    let body = vec![b'x'; size];
    let t = Instant::now();
    let mut wire = Vec::with_capacity(messages as usize);
    for _ in 0..messages {
        let m = alice
            .create_message(pa, &ka, &body)
            .map_err(failed("encrypting"))?;
        wire.push(
            m.tls_serialize_detached()
                .map_err(crate::Error::Malformed)?,
        );
    }
    let encrypt_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for w in &wire {
        let m: ProtocolMessage = match MlsMessageIn::tls_deserialize_exact(w)
            .map_err(crate::Error::Malformed)?
            .extract()
        {
            MlsMessageBodyIn::PrivateMessage(m) => m.into(),
            _ => return Err(bench_err("not a private message")),
        };
        let p = bob.process_message(pb, m).map_err(failed("decrypting"))?;
        if !matches!(
            p.into_content(),
            ProcessedMessageContent::ApplicationMessage(_)
        ) {
            return Err(bench_err("not an application message"));
        }
    }
    let decrypt_s = t.elapsed().as_secs_f64();
    Ok(Rates {
        encrypt_per_second: messages as f64 / encrypt_s,
        decrypt_per_second: messages as f64 / decrypt_s,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_storages_encrypt_and_decrypt() {
        let l = super::measure(20, 64).unwrap();
        assert_eq!(l.messages, 20);
        for r in [l.memory, l.sqlite] {
            assert!(
                r.encrypt_per_second > 0.0 && r.decrypt_per_second > 0.0,
                "{l:?}"
            );
        }
    }
}
