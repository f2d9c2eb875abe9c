//! Backup keys: passphrase-sealed archives, a wrong passphrase named as such, the key kind read
//! from a header without any key (Ferry, libxmtp and foreign files), and passphrase backups
//! through the manager.

mod backup_common;

use ferry_sdk::archive::{self, ArchiveFormat, ArchiveOptions, Control, Origin};
use ferry_sdk::backup_manager::{self, archive_key_kind, Destination, ObjectStoreDestination};
use ferry_sdk::{ArchiveKey, Error};

use backup_common::{key, made, utc, Env};

#[test]
fn passphrase_round_trip_and_header_tells_the_key_kind() {
    let env = Env::new();
    let src = env.store("src", 25);
    let pass = ArchiveKey::passphrase("correct horse battery staple");
    let path = env.path("p.ferry");
    let meta = archive::create_archive(
        &src,
        &path,
        &pass,
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    assert_eq!(meta.key_kind, "passphrase");

    // Readable without any key: format, version, key kind and the Argon2 cost.
    let kind = archive_key_kind(&path).unwrap();
    assert_eq!(kind.format, ArchiveFormat::Ferry);
    assert_eq!(kind.format_version, "1.0");
    assert_eq!(kind.key_kind, "passphrase");
    let a = kind.argon2.expect("argon2 parameters");
    let d = ferry_archive::Argon2Params::DEFAULT;
    assert_eq!(
        (a.m_cost_kib, a.t_cost, a.p_cost),
        (d.m_cost_kib, d.t_cost, d.p_cost)
    );

    // The same passphrase restores everything.
    let mut dst = env.store("dst", 0);
    let report = archive::import_archive(&mut dst, &path, &pass, &Control::new()).unwrap();
    assert_eq!(report.messages_imported, 25);

    // A raw-key archive says "key" and has no Argon2 parameters.
    let raw_path = env.path("k.ferry");
    archive::create_archive(
        &src,
        &raw_path,
        &key(),
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    let kind = archive_key_kind(&raw_path).unwrap();
    assert_eq!((kind.key_kind, kind.argon2), ("key", None));
}

#[test]
fn wrong_passphrase_is_reported_as_such() {
    let env = Env::new();
    let src = env.store("src", 3);
    let path = env.path("p.ferry");
    archive::create_archive(
        &src,
        &path,
        &ArchiveKey::passphrase("right"),
        &ArchiveOptions::default(),
        &Origin::default(),
        &Control::new(),
    )
    .unwrap();
    let mut dst = env.store("dst", 0);
    let err = archive::import_archive(
        &mut dst,
        &path,
        &ArchiveKey::passphrase("wrong"),
        &Control::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Archive(ferry_archive::Error::WrongKey(
                ferry_archive::KeyKindName::Passphrase
            ))
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "wrong key: this archive was sealed with a different passphrase"
    );
    // A raw key on a passphrase archive names the kind it needs.
    let err = archive::archive_metadata(&path, &key()).unwrap_err();
    assert!(
        err.to_string().contains("sealed with a passphrase"),
        "{err}"
    );
}

#[test]
fn key_kind_of_libxmtp_and_foreign_files() {
    let env = Env::new();
    // A libxmtp archive starts with u16 version 0, a 12-byte nonce, then a zstd frame.
    let mut xmtp = vec![0u8, 0];
    xmtp.extend_from_slice(&[9u8; 12]);
    xmtp.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]);
    std::fs::write(env.path("x.zst"), &xmtp).unwrap();
    let kind = archive_key_kind(&env.path("x.zst")).unwrap();
    assert_eq!(kind.format, ArchiveFormat::Xmtp);
    assert_eq!((kind.format_version.as_str(), kind.key_kind), ("0", "key"));

    std::fs::write(env.path("t.txt"), b"hello, this is not an archive").unwrap();
    let err = archive_key_kind(&env.path("t.txt")).unwrap_err();
    assert!(err.to_string().contains("not a Ferry archive"), "{err}");
}

#[test]
fn passphrase_backups_through_the_manager() {
    let env = Env::new();
    let store = env.store("s", 12);
    let dest = ObjectStoreDestination::in_memory().unwrap();
    let pass = ArchiveKey::passphrase("tr\u{e8}s secret");
    let r = backup_manager::run_backup_now(&store, utc(2025, 5, 5, 5, 5), &pass, &dest).unwrap();
    let name = made(&r).name.clone();
    let fetched = dest.fetch(&name).unwrap();
    assert_eq!(
        archive_key_kind(fetched.path()).unwrap().key_kind,
        "passphrase"
    );
    // The same passphrase typed with a combining accent lists it as verified.
    let decomposed = ArchiveKey::passphrase("tre\u{300}s secret");
    let listed = backup_manager::list_backups(&dest, &decomposed).unwrap();
    assert!(listed[0].verified, "{:?}", listed[0].error);
    let listed =
        backup_manager::list_backups(&dest, &ArchiveKey::passphrase("tres secret")).unwrap();
    assert!(!listed[0].verified);
    assert!(listed[0]
        .error
        .as_deref()
        .unwrap()
        .contains("different passphrase"));
}
