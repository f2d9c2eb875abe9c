//! Disappearing messages with a real node on loopback: the setting travels in the group's
//! metadata to every member's installations, each stores the same expiry, and the worker
//! deletes expired messages on every installation within one tick; a closed installation
//! deletes them when it opens. Archives carry the setting and the expiries, and
//! `exclude_disappearing_messages` leaves those messages out.

mod net_common;

use std::time::{Duration, Instant};

use ferry_sdk::archive::{self, ArchiveOptions, Control};
use ferry_sdk::blocking::Client;
use ferry_sdk::content::{self, Content};
use ferry_sdk::store::{Message, MessageKind};
use ferry_sdk::{
    AccountKey, ArchiveKey, DisappearingSettings, Error, GroupOptions, MessageQuery, EXPIRY_TICK,
};
use net_common::Net;

const LIFETIME: Duration = Duration::from_secs(4);

fn all(c: &Client, group: &[u8]) -> Vec<Message> {
    c.conversation(group)
        .unwrap()
        .messages(&MessageQuery::default())
        .unwrap()
}

fn texts(c: &Client, group: &[u8]) -> Vec<String> {
    all(c, group)
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .filter_map(|m| m.text())
        .collect()
}

fn expiry_of(c: &Client, group: &[u8], text: &str) -> Option<i64> {
    all(c, group)
        .into_iter()
        .find(|m| m.text().as_deref() == Some(text))
        .unwrap_or_else(|| panic!("{text:?} is not there"))
        .expire_at_ns
}

#[test]
fn disappearing_messages_vanish_everywhere_and_stay_out_of_archives_that_exclude_them() {
    let net = Net::new();
    let (a1, key) = net.create("a1", AccountKey::New, false);
    let key = key.unwrap();
    let (a2, _) = net.create("a2", AccountKey::Existing(key.clone()), false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let g = a1
        .create_group(&[bob.inbox_id().into()], GroupOptions::default())
        .unwrap();
    let id = g.id().to_vec();
    g.send("kept: sent before the setting").unwrap();
    assert!(!g.is_message_disappearing_enabled().unwrap());

    // A duration that is not positive is refused before anything is committed.
    let err = g
        .update_message_disappearing_settings(DisappearingSettings {
            from_ns: ferry_sdk::now_ns(),
            in_ns: 0,
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

    let setting = DisappearingSettings {
        from_ns: ferry_sdk::now_ns(),
        in_ns: LIFETIME.as_nanos() as i64,
    };
    g.update_message_disappearing_settings(setting).unwrap();
    for c in [&a2, &bob] {
        c.sync_all().unwrap();
    }
    // Every installation of every member holds the setting, from the group's metadata.
    for c in [&a1, &a2, &bob] {
        assert_eq!(
            c.conversation(&id)
                .unwrap()
                .message_disappearing_settings()
                .unwrap(),
            Some(setting)
        );
    }
    // The change shows as a group-updated notice, alike everywhere.
    let notice = all(&bob, &id)
        .into_iter()
        .rev()
        .find(|m| m.kind == MessageKind::MembershipChange)
        .unwrap();
    let Content::GroupUpdated(u) = content::content_of(&notice) else {
        panic!("not a group-updated notice")
    };
    assert!(u
        .metadata_field_changes
        .iter()
        .any(|c| c.field_name == "message_disappear_in_ns"
            && c.new_value.as_deref() == Some(&setting.in_ns.to_string()[..])));
    assert!(
        notice
            .fallback
            .as_deref()
            .unwrap()
            .ends_with("set messages to disappear after 4s"),
        "{:?}",
        notice.fallback
    );

    bob.conversation(&id)
        .unwrap()
        .send("gone: from bob")
        .unwrap();
    g.send("gone: from alice").unwrap();
    for c in [&a1, &a2, &bob] {
        c.sync_all().unwrap();
    }
    // Each installation stored the same expiry: sent time + the duration.
    let mut deadlines = Vec::new();
    for text in ["gone: from bob", "gone: from alice"] {
        let at = all(&a1, &id)
            .into_iter()
            .find(|m| m.text().as_deref() == Some(text))
            .unwrap();
        let expected = at.sent_at_ns + setting.in_ns;
        for c in [&a1, &a2, &bob] {
            assert_eq!(expiry_of(c, &id, text), Some(expected), "{text}");
        }
        deadlines.push(expected);
    }
    assert_eq!(expiry_of(&bob, &id, "kept: sent before the setting"), None);

    // Archives: with the option the expiring messages stay out; without it they travel with
    // their expiry, and either way the setting travels with the conversation.
    let akey = ArchiveKey::generate();
    let excluded = net.dir.path().join("excluded.ferry");
    let meta = a1
        .create_archive(
            &excluded,
            &akey,
            &ArchiveOptions {
                exclude_disappearing_messages: true,
                ..Default::default()
            },
            &Control::new(),
        )
        .unwrap();
    let full = net.dir.path().join("full.ferry");
    let full_meta = a1
        .create_archive(&full, &akey, &ArchiveOptions::default(), &Control::new())
        .unwrap();
    assert_eq!(full_meta.message_count, meta.message_count.map(|n| n + 2));
    let restored_home = net.dir.path().join("restored");
    {
        let (restored, _) = net.create("restored", AccountKey::Existing(key.clone()), false);
        restored
            .import_archive(&excluded, &akey, &Control::new())
            .unwrap();
        let t = texts(&restored, &id);
        assert_eq!(t, vec!["kept: sent before the setting".to_string()]);
        assert_eq!(
            restored
                .conversation(&id)
                .unwrap()
                .message_disappearing_settings()
                .unwrap(),
            Some(setting),
            "an import restores the setting"
        );
        // The whole archive brings them, with the expiry they had.
        restored
            .import_archive(&full, &akey, &Control::new())
            .unwrap();
        assert_eq!(
            expiry_of(&restored, &id, "gone: from bob"),
            Some(deadlines[0])
        );
        // Closed (no worker) until after the expiry: see below.
    }

    // Online installations: each deletes them within one worker tick of their time.
    let workers: Vec<_> = [&a1, &a2, &bob].iter().map(|c| c.start_worker()).collect();
    let last = *deadlines.iter().max().unwrap();
    let mut lateness = Vec::new();
    for (name, c) in [("a1", &a1), ("a2", &a2), ("bob", &bob)] {
        let start = Instant::now();
        loop {
            let t = texts(c, &id);
            if !t.iter().any(|t| t.starts_with("gone")) {
                break;
            }
            assert!(
                ferry_sdk::now_ns() < last + (EXPIRY_TICK * 3).as_nanos() as i64,
                "{name} still holds expired messages {:?} after {:?}",
                t,
                start.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lateness.push((name, (ferry_sdk::now_ns() - last) as f64 / 1e6));
        // What was not under the setting stays, and so do the notices.
        assert_eq!(texts(c, &id), vec!["kept: sent before the setting"]);
        assert!(all(c, &id)
            .iter()
            .any(|m| m.kind == MessageKind::MembershipChange));
    }
    eprintln!("deleted after their time (ms, tick {EXPIRY_TICK:?}): {lateness:?}");
    drop(workers);

    // A closed installation deletes them as it opens, before anything reads them.
    let restored = Client::open(&restored_home).unwrap();
    assert_eq!(
        texts(&restored, &id),
        vec!["kept: sent before the setting".to_string()]
    );

    // Turned off: later messages keep.
    g.remove_message_disappearing_settings().unwrap();
    bob.sync_all().unwrap();
    assert!(!bob
        .conversation(&id)
        .unwrap()
        .is_message_disappearing_enabled()
        .unwrap());
    bob.conversation(&id)
        .unwrap()
        .send("kept: after off")
        .unwrap();
    a1.sync_all().unwrap();
    assert_eq!(expiry_of(&a1, &id, "kept: after off"), None);
    assert_eq!(expiry_of(&bob, &id, "kept: after off"), None);
    assert_eq!(
        archive::archive_metadata(&excluded, &akey)
            .unwrap()
            .message_count,
        meta.message_count
    );
}

#[test]
fn a_group_made_with_disappearing_messages_applies_them_from_its_first_message() {
    let net = Net::new();
    let (alice, _) = net.create("alice", AccountKey::New, false);
    let (bob, _) = net.create("bob", AccountKey::New, false);
    let setting = DisappearingSettings {
        from_ns: 0,
        in_ns: Duration::from_secs(3600).as_nanos() as i64,
    };
    let g = alice
        .create_group(
            &[bob.inbox_id().into()],
            GroupOptions {
                message_disappearing_settings: Some(setting),
                ..Default::default()
            },
        )
        .unwrap();
    let sent = g.send("first").unwrap();
    bob.sync_all().unwrap();
    let id = g.id().to_vec();
    assert_eq!(
        bob.conversation(&id)
            .unwrap()
            .message_disappearing_settings()
            .unwrap(),
        Some(setting)
    );
    let m = all(&bob, &id).into_iter().find(|m| m.id == sent).unwrap();
    assert_eq!(m.expire_at_ns, Some(m.sent_at_ns + setting.in_ns));
}
