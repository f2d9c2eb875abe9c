//! `ferry demo`, the README's main command, runs to the end, and its story holds: the photo
//! and bob's 👍 survive the backup → restore and arrive on the watch by history sync.

mod common;

use common::bin;

#[test]
fn the_demo_runs_and_the_photo_and_its_reaction_survive_restore_and_history_sync() {
    let out = bin().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[photo route-map.png, 40008 bytes, image/png] (👍 bob)"),
        "{text}"
    );
    assert!(text.contains("(a reply to the photo)"), "{text}");
    assert!(
        text.contains(
            "restored from the backup: the photo (40008 bytes, byte for byte) with bob's 👍 on it"
        ),
        "{text}"
    );
    let watch = text
        .lines()
        .find(|l| l.contains("on the watch starts with"))
        .expect("the history sync chapter");
    assert!(
        watch.ends_with("the photo (40008 bytes, byte for byte) with bob's 👍 on it"),
        "{watch}"
    );
}
