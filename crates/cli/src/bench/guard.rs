//! `ferry bench guard`: the messaging benchmarks in a small, bounded form, each figure as a
//! ratio to what openmls alone does in the same run, compared with the ratios recorded in a
//! file (per build profile: a debug build's ratios are not a release build's). Fails when a
//! ratio falls below half of its recorded value. CI runs it on every change
//! (`scripts/test`); `--record` writes the current ratios as the new reference.
//!
//! Ratios, not times: these machines vary twofold from day to day, and openmls slows with
//! them, so the ratio of Ferry's rate to openmls' stays put unless Ferry's own path changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::output::anyhow_like::Result;
use crate::output::print_json;

/// A ratio may fall to this fraction of its recorded value before the guard fails.
const TOLERANCE: f64 = 0.5;

#[derive(Serialize)]
struct Check {
    name: &'static str,
    ratio: f64,
    recorded: Option<f64>,
    /// ratio / recorded.
    relative: Option<f64>,
    ok: bool,
}

#[derive(Serialize)]
struct GuardReport {
    profile: &'static str,
    checks: Vec<Check>,
    passed: bool,
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Runs the bounded benchmarks; compares with (or, with `record`, writes into) `file`.
pub fn run(file: &Path, messages: u64, record: bool, json: bool) -> Result<()> {
    let messages = messages.max(100);
    let catchup = super::catchup::measure(10, messages)?;
    let openmls = &catchup.openmls.memory;
    let node = super::node::measure(
        ferry_node::AccessPolicy {
            authenticate: true,
            limits: ferry_node::RateLimits::unlimited(),
        },
        4,
        messages / 2,
        10,
    )?;
    let figures: Vec<(&'static str, f64)> = vec![
        ("catchup_spread", catchup.spread.ratio_to_openmls_memory),
        ("catchup_single", catchup.single.ratio_to_openmls_memory),
        (
            "send_sequential",
            node.send_per_second / openmls.encrypt_per_second,
        ),
        (
            "send_pipelined",
            node.send_pipelined_per_second / openmls.encrypt_per_second,
        ),
        (
            "deliver",
            node.deliver_per_second / openmls.decrypt_per_second,
        ),
    ];
    // { "debug": { "catchup_spread": 0.12, ... }, "release": { ... } }
    let mut recorded: BTreeMap<String, BTreeMap<String, f64>> = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a guard file: {e}", file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(format!("{}: {e}", file.display()).into()),
    };
    if record {
        let mine = recorded.entry(profile().to_string()).or_default();
        for (name, ratio) in &figures {
            mine.insert((*name).to_string(), (ratio * 1000.0).round() / 1000.0);
        }
        let mut text = serde_json::to_string_pretty(&recorded)?;
        text.push('\n');
        std::fs::write(file, text)?;
    }
    let mine = recorded.get(profile());
    let checks: Vec<Check> = figures
        .iter()
        .map(|(name, ratio)| {
            let rec = mine.and_then(|m| m.get(*name)).copied();
            let relative = rec.map(|r| ratio / r);
            Check {
                name,
                ratio: *ratio,
                recorded: rec,
                relative,
                // A figure never recorded for this profile is reported, not judged.
                ok: relative.is_none_or(|x| x >= TOLERANCE),
            }
        })
        .collect();
    let out = GuardReport {
        profile: profile(),
        passed: checks.iter().all(|c| c.ok),
        checks,
    };
    if json {
        print_json(&out)?;
    } else {
        println!(
            "messaging benchmarks ({} build), as ratios to openmls alone in this run \
             (encrypt {:.0}/s, decrypt {:.0}/s):",
            out.profile, openmls.encrypt_per_second, openmls.decrypt_per_second
        );
        for c in &out.checks {
            match (c.recorded, c.relative) {
                (Some(r), Some(x)) => println!(
                    "  {:<16} {:.3}  recorded {:.3}  ({:.0} % of it) {}",
                    c.name,
                    c.ratio,
                    r,
                    x * 100.0,
                    if c.ok { "ok" } else { "BELOW HALF" }
                ),
                _ => println!("  {:<16} {:.3}  (nothing recorded)", c.name, c.ratio),
            }
        }
        if record {
            println!("recorded in {}", file.display());
        }
    }
    if out.passed {
        Ok(())
    } else {
        Err(format!(
            "a messaging ratio fell below {:.0} % of its recorded value ({})",
            TOLERANCE * 100.0,
            file.display()
        )
        .into())
    }
}
