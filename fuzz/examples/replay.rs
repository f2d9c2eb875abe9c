//! Runs one target's body on files, without libFuzzer (any toolchain, a debugger, `RUST_BACKTRACE`):
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example replay -- [--describe] TARGET FILE...
//! ```
//!
//! `--describe` first prints the structured input the target sees. Exits non-zero on the first
//! input that panics (the panic message names the failed check).

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let describe = args.first().is_some_and(|a| a == "--describe");
    if describe {
        args.remove(0);
    }
    let mut args = args.into_iter();
    let name = args
        .next()
        .expect("usage: replay [--describe] TARGET FILE...");
    let (_, f) = ferry_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("unknown target {name}"));
    for path in args {
        let data = std::fs::read(&path).expect("read input");
        eprintln!("{name} {path} ({} bytes)", data.len());
        if describe {
            eprintln!("{}", ferry_fuzz::targets::describe(&name, &data));
        }
        f(&data);
    }
    eprintln!("no crash");
}
