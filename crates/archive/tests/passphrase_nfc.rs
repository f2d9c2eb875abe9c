//! Passphrases are normalized to Unicode NFC before Argon2id (docs/archive-format.md §4.1).

use ferry_archive::proto::{Consent, Metadata};
use ferry_archive::{
    read_header, ArchiveKey, ArchiveReader, ArchiveWriter, Argon2Params, Element, Error, KeyKind,
    KeyKindName, WriterOptions,
};

/// Cheap Argon2 parameters: the normalization is what is tested, not the cost.
fn opts() -> WriterOptions {
    WriterOptions {
        threads: 0,
        kdf: Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        },
        ..WriterOptions::default()
    }
}

fn seal(key: &ArchiveKey) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), key, Metadata::default(), &opts()).unwrap();
    w.write(Element::Consent(Consent {
        entity: "inbox-1".into(),
        ..Default::default()
    }))
    .unwrap();
    w.finish().unwrap().0
}

fn opens(bytes: &[u8], key: &ArchiveKey) -> Result<(), Error> {
    let mut r = ArchiveReader::open(bytes, key)?;
    assert!(matches!(r.next_element()?, Some(Element::Consent(c)) if c.entity == "inbox-1"));
    assert!(r.next_element()?.is_none());
    Ok(())
}

#[test]
fn composed_and_decomposed_e_acute_open_the_same_archive() {
    let composed = "caf\u{e9} au lait";
    let decomposed = "cafe\u{301} au lait";
    assert_ne!(composed.as_bytes(), decomposed.as_bytes());

    let sealed_composed = seal(&ArchiveKey::passphrase(composed));
    opens(&sealed_composed, &ArchiveKey::passphrase(decomposed)).unwrap();
    opens(&sealed_composed, &ArchiveKey::passphrase(composed)).unwrap();
    let sealed_decomposed = seal(&ArchiveKey::passphrase(decomposed));
    opens(&sealed_decomposed, &ArchiveKey::passphrase(composed)).unwrap();
    // Built directly, without the constructor, it is normalized too.
    let direct = ArchiveKey::Passphrase(zeroize_string(decomposed));
    opens(&sealed_composed, &direct).unwrap();
}

fn zeroize_string(s: &str) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(s.to_string())
}

#[test]
fn normalization_changes_nothing_else() {
    let sealed = seal(&ArchiveKey::passphrase("caf\u{e9}"));
    for other in [
        "cafe",
        "CAF\u{c9}",
        " caf\u{e9}",
        "caf\u{e9} ",
        "cafe\u{300}",
    ] {
        let err = opens(&sealed, &ArchiveKey::passphrase(other)).unwrap_err();
        assert!(
            matches!(err, Error::WrongKey(KeyKindName::Passphrase)),
            "{other:?}: {err:?}"
        );
    }
    let header = read_header(&mut &sealed[..]).unwrap();
    assert!(matches!(header.key_kind, KeyKind::Passphrase(p) if p.t_cost == 1));
}
