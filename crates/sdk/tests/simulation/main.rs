//! Convergence under chaos: seeded scenarios of three inboxes with one to three installations
//! each (revoked ones aside), against a real node and a real history server on loopback,
//! with faults injected into the installations' node connections and the history server's
//! TCP connections. After each scenario everyone comes online and syncs until nothing
//! changes; then each conversation gets a probe message, everyone syncs again, and the
//! invariants are checked (see `World::check`).
//!
//! - `FERRY_SIM_SCENARIOS` (default 200): how many scenarios, split over four tests;
//! - `FERRY_SIM_SEED` (default 1): the first scenario's seed (scenario `k` uses `seed + k`);
//! - `FERRY_SIM_OPS` (default 30): operations per scenario;
//! - `FERRY_SIM_REPLAY=<seed>[:<kept operation numbers, comma-separated>]`: runs that one
//!   scenario (as printed by a failure), with only the kept operations.
//!
//! A failure prints the seed, the operations (and what each did), the invariants that broke on
//! which installation, and the shortest failing subset shrinking found, with the line that
//! replays it.

mod faults;
mod scenario;
mod world;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use faults::Counters;
use scenario::{generate, Op};
use world::World;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one scenario came to.
struct Outcome {
    broken: Vec<String>,
    log: String,
    checks: u64,
}

fn run(ops: &[(usize, Op)], counters: &Arc<Counters>) -> Outcome {
    let mut w = World::new(counters.clone());
    for (step, op) in ops {
        w.apply(*step, op);
    }
    let mut broken = Vec::new();
    let mut checks = 0;
    match w.quiesce() {
        Err(e) => broken.push(format!("quiescence: {e}")),
        Ok(_) => {
            w.probe();
            match w.quiesce() {
                Err(e) => broken.push(format!("quiescence after probes: {e}")),
                Ok(_) => {
                    let (b, n) = w.check();
                    broken.extend(b);
                    checks = n;
                    if !broken.is_empty() {
                        w.log.push_str("views at the end:\n");
                        let v = w.views();
                        w.log.push_str(&v);
                    }
                }
            }
        }
    }
    let log = std::mem::take(&mut w.log);
    w.shutdown();
    Outcome {
        broken,
        log,
        checks,
    }
}

/// Shrinks a failing scenario: drops operations one at a time (the first ones kept, as every
/// scenario needs its first group) while it still fails.
fn shrink(ops: Vec<(usize, Op)>, counters: &Arc<Counters>) -> Vec<(usize, Op)> {
    let mut ops = ops;
    let mut i = ops.len();
    let mut budget = 40;
    while i > 1 && budget > 0 {
        i -= 1;
        budget -= 1;
        let mut fewer = ops.clone();
        fewer.remove(i);
        if !run(&fewer, counters).broken.is_empty() {
            ops = fewer;
        }
    }
    ops
}

fn kept(ops: &[(usize, Op)]) -> String {
    ops.iter()
        .map(|(i, _)| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs scenario `seed` (only the `keep` operations, if given); panics with the report when
/// an invariant breaks.
fn scenario(seed: u64, keep: Option<Vec<usize>>, counters: &Arc<Counters>) -> u64 {
    let len = env_u64("FERRY_SIM_OPS", 30) as usize;
    let mut ops: Vec<(usize, Op)> = generate(seed, len).into_iter().enumerate().collect();
    if let Some(k) = keep {
        ops.retain(|(i, _)| k.contains(i));
    }
    let out = run(&ops, counters);
    if std::env::var("FERRY_SIM_REPLAY").is_ok() {
        println!("scenario {seed}:\n{}", out.log);
    }
    if out.broken.is_empty() {
        return out.checks;
    }
    let small = shrink(ops.clone(), counters);
    let again = run(&small, counters);
    panic!(
        "scenario {seed} broke an invariant\n\
         replay: FERRY_SIM_REPLAY={seed}:{}\n\
         operations:\n{}\
         broken:\n  {}\n\n\
         shrunk to {} operations (replay: FERRY_SIM_REPLAY={seed}:{}):\n{}\
         broken:\n  {}\n",
        kept(&ops),
        out.log,
        out.broken.join("\n  "),
        small.len(),
        kept(&small),
        again.log,
        again.broken.join("\n  "),
    );
}

fn part(k: u64) {
    // `RUST_LOG=ferry_sdk=debug` with a replay shows what each installation did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let counters = Arc::new(Counters::default());
    if let Ok(replay) = std::env::var("FERRY_SIM_REPLAY") {
        if k != 0 {
            return;
        }
        let (seed, keep) = match replay.split_once(':') {
            Some((s, k)) => (
                s.parse().unwrap(),
                Some(k.split(',').map(|i| i.parse().unwrap()).collect()),
            ),
            None => (replay.parse().unwrap(), None),
        };
        scenario(seed, keep, &counters);
        return;
    }
    let total = env_u64("FERRY_SIM_SCENARIOS", 200);
    let first = env_u64("FERRY_SIM_SEED", 1);
    let mut runs = 0;
    let mut checks = 0;
    for n in (k..total).step_by(4) {
        checks += scenario(first + n, None, &counters);
        runs += 1;
    }
    // One line per part, for docs/reliability.md and the soak script.
    println!(
        "simulation part {k}: {runs} scenarios, {checks} invariant checks, {} node faults, {} history faults injected, 0 failures",
        counters.node_faults.load(Ordering::Relaxed),
        counters.history_faults.load(Ordering::Relaxed),
    );
}

#[test]
fn scenarios_converge_part_0() {
    part(0);
}

#[test]
fn scenarios_converge_part_1() {
    part(1);
}

#[test]
fn scenarios_converge_part_2() {
    part(2);
}

#[test]
fn scenarios_converge_part_3() {
    part(3);
}
