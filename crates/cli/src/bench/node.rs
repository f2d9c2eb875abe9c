//! `ferry bench node`: the messaging path on loopback, end to end (real node, real clients,
//! MLS, SQLite): how fast a group of installations sends and receives, and how long adding one
//! new installation to many conversations takes.

use std::time::{Duration, Instant};

use ferry_sdk::blocking::Client;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions};
use serde::Serialize;

use crate::output::anyhow_like::Result;
use crate::output::print_json;

/// Sends in flight at once in the pipelined send measurement.
const SEND_WINDOW: u64 = 64;

#[derive(Serialize)]
struct NodeBench {
    installations: usize,
    messages: u64,
    /// Messages sent (encrypt, publish, store) per second by one sender, one after another
    /// (each waits for the node).
    send_per_second: f64,
    /// The same with up to `send_window` sends in flight (joined futures of the async API):
    /// queued in call order, published in batches, in that order.
    send_pipelined_per_second: f64,
    send_window: u64,
    /// Messages received (fetch, decrypt, store) per second by one receiving installation.
    deliver_per_second: f64,
    /// Messages delivered per second summed over all receiving installations (they sync one
    /// after the other here, so this is one core's worth).
    deliver_total_per_second: f64,
    conversations: usize,
    /// Seconds for an existing installation to add a new installation of its inbox to every
    /// one of `conversations` conversations (commit + welcome each).
    add_installation_seconds: f64,
    /// Seconds for the new installation to join all of them (process the welcomes).
    join_seconds: f64,
    /// How the node checked the calls above: every call signed by its installation and
    /// checked (signature, identity log, nonce), rate limits off (they would measure the limit).
    access: &'static str,
    /// The same run on a node that checks nothing (as before signed requests), measured
    /// first in the same process: the cost of checking signatures is the ratio.
    unsigned_baseline: Baseline,
    /// send_per_second / the baseline's.
    signed_send_ratio: f64,
    /// deliver_per_second / the baseline's.
    signed_deliver_ratio: f64,
    /// openmls alone on messages of the same size (`--limits`), and the figures above as
    /// ratios to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    openmls: Option<ferry_mls::limits::Limits>,
    /// send_pipelined_per_second / openmls' encrypt rate (in-memory storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    send_ratio_to_openmls: Option<f64>,
    /// deliver_per_second / openmls' decrypt rate (in-memory storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    deliver_ratio_to_openmls: Option<f64>,
    release_build: bool,
}

#[derive(Serialize)]
struct Baseline {
    send_per_second: f64,
    deliver_per_second: f64,
    add_installation_seconds: f64,
    join_seconds: f64,
}

/// One run's figures.
pub(crate) struct Figures {
    pub(crate) send_per_second: f64,
    pub(crate) send_pipelined_per_second: f64,
    pub(crate) deliver_per_second: f64,
    pub(crate) deliver_total_per_second: f64,
    pub(crate) add_installation_seconds: f64,
    pub(crate) join_seconds: f64,
}

pub fn run(
    installations: usize,
    messages: u64,
    conversations: usize,
    limits: bool,
    json: bool,
) -> Result<()> {
    let installations = installations.max(2);
    let openmls = if limits {
        Some(ferry_mls::limits::measure(
            messages.clamp(200, 5_000),
            super::catchup::bench_text(0).len(),
        )?)
    } else {
        None
    };
    let unsigned = measure(
        ferry_node::AccessPolicy::open(),
        installations,
        messages,
        conversations,
    )?;
    let signed = measure(
        ferry_node::AccessPolicy {
            authenticate: true,
            limits: ferry_node::RateLimits::unlimited(),
        },
        installations,
        messages,
        conversations,
    )?;
    let out = NodeBench {
        installations,
        messages,
        send_per_second: signed.send_per_second,
        send_pipelined_per_second: signed.send_pipelined_per_second,
        send_window: SEND_WINDOW,
        deliver_per_second: signed.deliver_per_second,
        deliver_total_per_second: signed.deliver_total_per_second,
        conversations,
        add_installation_seconds: signed.add_installation_seconds,
        join_seconds: signed.join_seconds,
        access: "signed requests checked, rate limits off",
        signed_send_ratio: signed.send_per_second / unsigned.send_per_second,
        signed_deliver_ratio: signed.deliver_per_second / unsigned.deliver_per_second,
        unsigned_baseline: Baseline {
            send_per_second: unsigned.send_per_second,
            deliver_per_second: unsigned.deliver_per_second,
            add_installation_seconds: unsigned.add_installation_seconds,
            join_seconds: unsigned.join_seconds,
        },
        send_ratio_to_openmls: openmls
            .map(|l| signed.send_pipelined_per_second / l.memory.encrypt_per_second),
        deliver_ratio_to_openmls: openmls
            .map(|l| signed.deliver_per_second / l.memory.decrypt_per_second),
        openmls,
        release_build: !cfg!(debug_assertions),
    };
    if json {
        print_json(&out)?;
    } else {
        println!(
            "group of {} installations, {} messages; every call signed and checked",
            out.installations, out.messages
        );
        println!(
            "  send     {:>8.0} messages/s (one sender; unsigned baseline {:.0}/s, ratio {:.2})",
            out.send_per_second, out.unsigned_baseline.send_per_second, out.signed_send_ratio
        );
        println!(
            "  send     {:>8.0} messages/s with up to {} in flight",
            out.send_pipelined_per_second, out.send_window
        );
        println!(
            "  deliver  {:>8.0} messages/s per receiving installation, {:.0}/s over all {} \
             (unsigned baseline {:.0}/s, ratio {:.2})",
            out.deliver_per_second,
            out.deliver_total_per_second,
            installations - 1,
            out.unsigned_baseline.deliver_per_second,
            out.signed_deliver_ratio
        );
        println!(
            "  adding one new installation to {} conversations: {:.2} s (joining them: {:.2} s; \
             unsigned {:.2} s and {:.2} s)",
            out.conversations,
            out.add_installation_seconds,
            out.join_seconds,
            out.unsigned_baseline.add_installation_seconds,
            out.unsigned_baseline.join_seconds
        );
        if let (Some(l), Some(s), Some(d)) = (
            out.openmls,
            out.send_ratio_to_openmls,
            out.deliver_ratio_to_openmls,
        ) {
            println!(
                "  openmls alone: encrypt {:.0}/s, decrypt {:.0}/s in memory ({:.0}/s, {:.0}/s on \
                 SQLite); send is {s:.3} of its encrypt rate, deliver {d:.3} of its decrypt rate",
                l.memory.encrypt_per_second,
                l.memory.decrypt_per_second,
                l.sqlite.encrypt_per_second,
                l.sqlite.decrypt_per_second
            );
        }
        if !out.release_build {
            println!("  (debug build: use --release for real figures)");
        }
    }
    Ok(())
}

/// One run of the benchmark against a new node with `access`.
pub(crate) fn measure(
    access: ferry_node::AccessPolicy,
    installations: usize,
    messages: u64,
    conversations: usize,
) -> Result<Figures> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-node-")
        .tempdir()?;
    let node = ferry_node::RunningNode::start(ferry_node::NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: ferry_node::Database::Sqlite(dir.path().join("node.db")),
        access,
        ..Default::default()
    })?;
    let opts = |name: &str, account: AccountKey| {
        let mut o = ClientOptions::new(dir.path().join(name), node.url(), account);
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        o
    };
    // Five inboxes with two installations each (for 10): members are inboxes.
    let mut clients: Vec<Client> = Vec::new();
    let mut keys = Vec::new();
    while clients.len() < installations {
        let i = clients.len();
        if i.is_multiple_of(2) {
            let reg = Client::create(opts(&format!("c{i}"), AccountKey::New))?;
            keys.push(reg.account_key.expect("new inbox"));
            clients.push(reg.client);
        } else {
            let key = keys.last().expect("a key").clone();
            clients.push(Client::create(opts(&format!("c{i}"), AccountKey::Existing(key)))?.client);
        }
    }
    let inboxes: Vec<String> = keys
        .iter()
        .skip(1)
        .map(|k| ferry_identity_inbox(k))
        .collect();
    let group = clients[0].create_group(&inboxes, GroupOptions::default())?;
    for c in &clients[1..] {
        c.sync_all()?;
    }
    let t = Instant::now();
    for i in 0..messages {
        group.send(&super::catchup::bench_text(i))?;
    }
    let send_s = t.elapsed().as_secs_f64();
    // The same sender with several sends in flight: they queue in the outbox in call order
    // and go out in batches.
    let t = Instant::now();
    let mut i = messages;
    while i < 2 * messages {
        let window = SEND_WINDOW.min(2 * messages - i);
        let sends = (i..i + window).map(|k| {
            let text = super::catchup::bench_text(k);
            let g: &ferry_sdk::Group = &group;
            async move { g.send_text(&text).await }
        });
        for r in ferry_sdk::blocking::block_on(futures::future::join_all(sends)) {
            r?;
        }
        i += window;
    }
    let pipelined_s = t.elapsed().as_secs_f64();
    let messages = 2 * messages;
    let mut per_receiver = Vec::new();
    let t_all = Instant::now();
    for c in &clients[1..] {
        let t = Instant::now();
        let r = c.sync_all()?;
        if r.messages_processed < messages {
            return Err(format!(
                "a receiver got {} of {messages} messages",
                r.messages_processed
            )
            .into());
        }
        per_receiver.push(t.elapsed().as_secs_f64());
    }
    let total_s = t_all.elapsed().as_secs_f64();
    per_receiver.sort_by(f64::total_cmp);
    let median = per_receiver[per_receiver.len() / 2];

    // Adding a new installation to many conversations.
    let owner = &clients[0];
    let mut convs = Vec::new();
    for _ in 0..conversations {
        // With two installations there is no other inbox: the groups are the owner's alone.
        let peers = &inboxes[..inboxes.len().min(1)];
        convs.push(owner.create_group(peers, GroupOptions::default())?);
    }
    let newcomer = Client::create(opts("newcomer", AccountKey::Existing(keys[0].clone())))?.client;
    let t = Instant::now();
    for g in &convs {
        g.add_missing_installations()?;
    }
    let add_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let joined = newcomer.sync_welcomes()?;
    let join_s = t.elapsed().as_secs_f64();
    if joined < conversations as u64 {
        return Err(format!("the new installation joined {joined} of {conversations}").into());
    }
    node.stop();
    Ok(Figures {
        send_per_second: messages as f64 / 2.0 / send_s,
        send_pipelined_per_second: messages as f64 / 2.0 / pipelined_s,
        deliver_per_second: messages as f64 / median,
        deliver_total_per_second: (messages as f64 * (installations - 1) as f64) / total_s,
        add_installation_seconds: add_s,
        join_seconds: join_s,
    })
}

/// The inbox id an account key controls.
fn ferry_identity_inbox(key: &[u8; 32]) -> String {
    ferry_sdk::inbox_id_of_account_key(key)
}
