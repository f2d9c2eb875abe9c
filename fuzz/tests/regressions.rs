//! Every committed seed and every regression input goes through its target's body under plain
//! `cargo test` (stable, no fuzzer needed):
//!
//! * `fuzz/seeds/<target>/`: the seed corpus (must never crash);
//! * `fuzz/regressions/<target>/`: inputs that once crashed a target (a fixed crash keeps its
//!   input here, so it cannot come back). See docs/fuzzing.md.

use std::path::Path;

fn run_dir(dir: &Path, f: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        eprintln!("{}", path.display());
        f(&data);
    }
    files.len()
}

#[test]
fn seeds_and_regressions_do_not_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (name, f) in ferry_fuzz::TARGETS {
        let seeds = run_dir(&root.join("seeds").join(name), *f);
        let regressions = run_dir(&root.join("regressions").join(name), *f);
        eprintln!("{name}: {seeds} seeds, {regressions} regression inputs");
        total += seeds;
    }
    assert!(total > 0, "no seeds found under fuzz/seeds");
}
