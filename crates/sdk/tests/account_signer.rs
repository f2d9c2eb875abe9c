//! The account key kept outside the SDK: an app's keystore implements `AccountSigner`, and
//! adding and revoking installations only ask it for signatures.

mod net_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use ferry_sdk::{AccountKey, AccountSigner, Client, ClientOptions, Error, KeyPair, SignerError};
use net_common::Net;

/// A keystore that can be locked, counting what it signs.
struct Keystore {
    key: KeyPair,
    locked: AtomicBool,
    signed: AtomicUsize,
}

impl AccountSigner for Keystore {
    fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        if self.locked.load(Ordering::SeqCst) {
            return Err(SignerError("the keystore is locked".into()));
        }
        self.signed.fetch_add(1, Ordering::SeqCst);
        AccountSigner::sign(&self.key, message)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keystore_signer_adds_and_revokes_installations() {
    let net = Net::new();
    let opts = |name: &str, account: AccountKey| {
        ClientOptions::new(net.dir.path().join(name), net.node.url(), account)
    };
    let first = Client::create(opts("first", AccountKey::New))
        .await
        .unwrap();
    let seed = first.account_key.expect("a new inbox's key");
    let first = first.client;
    let keystore = Arc::new(Keystore {
        key: KeyPair::from_seed(&seed),
        locked: AtomicBool::new(true),
        signed: AtomicUsize::new(0),
    });

    // Locked: the installation is not registered, and the error says why.
    let err = match Client::create(opts("second", AccountKey::Signer(keystore.clone()))).await {
        Err(e) => e,
        Ok(_) => panic!("registered without a signature"),
    };
    assert!(matches!(err, Error::Signer(_)), "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(!Client::is_registered(&net.dir.path().join("second")).unwrap());

    // Unlocked: the keystore signs the new installation's entry in the inbox's log.
    keystore.locked.store(false, Ordering::SeqCst);
    let second = Client::create(opts("second-b", AccountKey::Signer(keystore.clone())))
        .await
        .unwrap();
    assert!(second.account_key.is_none(), "the SDK never saw the key");
    let second = second.client;
    assert_eq!(second.inbox_id(), first.inbox_id());
    assert_eq!(keystore.signed.load(Ordering::SeqCst), 1);
    let info = first.inbox_info(first.inbox_id()).await.unwrap();
    assert_eq!(info.installations.len(), 2);

    // Revoking goes through the same signer.
    first
        .revoke_installation(keystore.clone(), second.installation_id())
        .await
        .unwrap();
    assert_eq!(keystore.signed.load(Ordering::SeqCst), 2);
    let info = first.inbox_info(first.inbox_id()).await.unwrap();
    assert_eq!(info.installations.len(), 1);
    assert_eq!(info.revoked, vec![hex::encode(second.installation_id())]);
}
