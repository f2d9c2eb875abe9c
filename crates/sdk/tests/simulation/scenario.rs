//! A scenario: operations drawn from a seed. Each operation names installations,
//! conversations and inboxes by small numbers taken modulo what exists when it runs, so any
//! subset of a scenario's operations is a scenario too (which is what shrinking needs).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::{Fault, HistoryFault};

#[derive(Debug, Clone)]
pub enum Op {
    CreateGroup { by: u8, with: Vec<u8> },
    CreateDm { by: u8, peer: u8 },
    Add { by: u8, conv: u8, inbox: u8 },
    Remove { by: u8, conv: u8, inbox: u8 },
    Send { by: u8, conv: u8 },
    Rename { by: u8, conv: u8 },
    Consent { by: u8, conv: u8, deny: bool },
    Offline { inst: u8 },
    Online { inst: u8 },
    NewInstallation { inbox: u8, history: bool },
    BackupRestore { from: u8 },
    Revoke { by: u8, victim: u8 },
    RestartNode,
    RestartHistory,
    SyncAll { inst: u8 },
    Worker { inst: u8 },
    Nothing,
    Fault { inst: u8, fault: Fault },
    HistoryFault(HistoryFault),
}

/// Inboxes at the start of every scenario.
pub const INBOXES: usize = 3;

/// The operations of the scenario `seed`.
pub fn generate(seed: u64, len: usize) -> Vec<Op> {
    let mut r = StdRng::seed_from_u64(seed);
    let mut ops = Vec::with_capacity(len);
    // Every scenario starts with a conversation, so the rest has something to act on.
    ops.push(Op::CreateGroup {
        by: r.gen(),
        with: vec![1, 2],
    });
    while ops.len() < len {
        let n: u8 = r.gen();
        let op = match r.gen_range(0..100) {
            0..=5 => Op::CreateGroup {
                by: n,
                with: (0..r.gen_range(1..=2)).map(|_| r.gen()).collect(),
            },
            6..=8 => Op::CreateDm {
                by: n,
                peer: r.gen(),
            },
            9..=13 => Op::Add {
                by: n,
                conv: r.gen(),
                inbox: r.gen(),
            },
            14..=16 => Op::Remove {
                by: n,
                conv: r.gen(),
                inbox: r.gen(),
            },
            17..=38 => Op::Send {
                by: n,
                conv: r.gen(),
            },
            39..=42 => Op::Rename {
                by: n,
                conv: r.gen(),
            },
            43..=45 => Op::Consent {
                by: n,
                conv: r.gen(),
                deny: r.gen_bool(0.5),
            },
            46..=49 => Op::Offline { inst: n },
            50..=53 => Op::Online { inst: n },
            54..=57 => Op::NewInstallation {
                inbox: r.gen(),
                history: r.gen_bool(0.5),
            },
            58..=60 => Op::BackupRestore { from: n },
            61..=62 => Op::Revoke {
                by: n,
                victim: r.gen(),
            },
            63..=64 => Op::RestartNode,
            65 => Op::RestartHistory,
            66..=77 => Op::SyncAll { inst: n },
            78..=80 => Op::Worker { inst: n },
            81..=82 => Op::Nothing,
            83..=96 => Op::Fault {
                inst: n,
                fault: match r.gen_range(0..6) {
                    0 => Fault::DropRequest,
                    1 => Fault::DropResponse,
                    2 => Fault::Delay(r.gen_range(1..30)),
                    3 => Fault::Duplicate,
                    4 => Fault::Reorder,
                    _ => Fault::CutStream,
                },
            },
            _ => Op::HistoryFault(match r.gen_range(0..3) {
                0 => HistoryFault::Refuse,
                1 => HistoryFault::CutAfter(r.gen_range(1..2000)),
                _ => HistoryFault::Delay(r.gen_range(1..50)),
            }),
        };
        ops.push(op);
    }
    ops
}
