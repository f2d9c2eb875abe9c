//! `ferry bench catchup`: an installation that was offline while its conversations moved on
//! comes back and runs `sync_all`. Two shapes of the same number of messages: spread over many
//! conversations, and all in one. The catch-up runs in a child process (`ferry bench
//! catchup-phase`), so its peak RSS is its own; openmls' own decrypt rate, measured in the
//! same run, is the yardstick. `FERRY_BENCH_WRAP="perf record -g -o FILE"` runs that child
//! under a profiler.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_sdk::blocking::Client;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions};
use serde::{Deserialize, Serialize};

use crate::output::anyhow_like::Result;
use crate::output::print_json;

/// The text every benchmark message carries (about a chat message's length).
pub(crate) fn bench_text(i: u64) -> String {
    format!("benchmark message {i}: some words to make it a typical length")
}

/// What the child process reports.
#[derive(Serialize, Deserialize)]
pub(crate) struct PhaseReport {
    seconds: f64,
    messages_processed: u64,
    peak_rss_bytes: u64,
}

#[derive(Serialize)]
pub(crate) struct Shape {
    conversations: usize,
    messages: u64,
    /// Seconds from `sync_all` starting to its return, every message applied.
    seconds: f64,
    messages_per_second: f64,
    /// messages_per_second / openmls' own decrypt rate (in-memory storage).
    pub ratio_to_openmls_memory: f64,
    /// messages_per_second / openmls' decrypt rate on its SQLite storage.
    ratio_to_openmls_sqlite: f64,
    /// Of the process that caught up (opened the store, synced, nothing else).
    peak_rss_bytes: u64,
}

#[derive(Serialize)]
pub(crate) struct CatchupReport {
    /// The same number of messages over many conversations, then in one.
    pub spread: Shape,
    pub single: Shape,
    pub openmls: ferry_mls::limits::Limits,
    pub release_build: bool,
}

/// Runs both shapes with `messages` messages in all (`conversations` conversations for the
/// spread one).
pub fn run(conversations: usize, messages: u64, json: bool) -> Result<()> {
    let out = measure(conversations, messages)?;
    if json {
        print_json(&out)?;
    } else {
        println!(
            "openmls alone: decrypt {:.0}/s in memory, {:.0}/s on SQLite; encrypt {:.0}/s, {:.0}/s",
            out.openmls.memory.decrypt_per_second,
            out.openmls.sqlite.decrypt_per_second,
            out.openmls.memory.encrypt_per_second,
            out.openmls.sqlite.encrypt_per_second,
        );
        for (name, s) in [("spread", &out.spread), ("single", &out.single)] {
            println!(
                "  {name:<6} {} messages in {} conversation(s): caught up in {:.2} s, {:.0} messages/s \
                 ({:.2} of openmls in memory, {:.2} of openmls on SQLite), peak RSS {:.1} MB",
                s.messages,
                s.conversations,
                s.seconds,
                s.messages_per_second,
                s.ratio_to_openmls_memory,
                s.ratio_to_openmls_sqlite,
                s.peak_rss_bytes as f64 / 1e6
            );
        }
        if !out.release_build {
            println!("  (debug build: use --release for real figures)");
        }
    }
    Ok(())
}

/// Both shapes and openmls' own rates, in one run.
pub(crate) fn measure(conversations: usize, messages: u64) -> Result<CatchupReport> {
    let conversations = conversations.max(1);
    let messages = messages.max(conversations as u64);
    let openmls = ferry_mls::limits::measure(2_000.min(messages.max(200)), bench_text(0).len())?;
    let spread = shape(conversations, messages, &openmls)?;
    let single = shape(1, messages, &openmls)?;
    Ok(CatchupReport {
        spread,
        single,
        openmls,
        release_build: !cfg!(debug_assertions),
    })
}

/// One shape: a node, a sender, a receiving installation that joins every conversation and
/// goes away, `messages` sent round-robin, then the receiver's catch-up in a child process.
fn shape(
    conversations: usize,
    messages: u64,
    openmls: &ferry_mls::limits::Limits,
) -> Result<Shape> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-catchup-")
        .tempdir()?;
    let node = ferry_node::RunningNode::start(ferry_node::NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: ferry_node::Database::Sqlite(dir.path().join("node.db")),
        access: ferry_node::AccessPolicy {
            authenticate: true,
            limits: ferry_node::RateLimits::unlimited(),
        },
        ..Default::default()
    })?;
    let opts = |name: &str| {
        let mut o = ClientOptions::new(dir.path().join(name), node.url(), AccountKey::New);
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        o
    };
    let sender = Client::create(opts("sender"))?.client;
    let receiver_home = dir.path().join("receiver");
    {
        let receiver = Client::create(opts("receiver"))?.client;
        let inbox = receiver.inbox_id().to_string();
        let mut groups = Vec::new();
        for _ in 0..conversations {
            groups
                .push(sender.create_group(std::slice::from_ref(&inbox), GroupOptions::default())?);
        }
        let joined = receiver.sync_all()?.conversations_joined;
        if joined < conversations as u64 {
            return Err(format!("the receiver joined {joined} of {conversations}").into());
        }
        receiver.close();
        // Offline from here on: the others talk.
        // Queued and published in batches: the setup, not what is measured.
        for i in 0..messages {
            let g = &groups[(i % conversations as u64) as usize];
            g.send_text_optimistic(&bench_text(i))?;
            if (i + 1) % 500 == 0 || i + 1 == messages {
                for g in &groups {
                    g.publish_messages()?;
                }
            }
        }
    }
    let exe = std::env::current_exe()?;
    // A profiler around the catch-up alone: FERRY_BENCH_WRAP="perf record -g -o /tmp/p.data".
    let wrap = std::env::var("FERRY_BENCH_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut cmd = match wrap.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(wrap).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = cmd
        .args(["bench", "catchup-phase", "--home"])
        .arg(&receiver_home)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "the catch-up process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let r: PhaseReport = serde_json::from_slice(&out.stdout)?;
    node.stop();
    if r.messages_processed < messages {
        return Err(format!(
            "the receiver caught up {} of {messages} messages",
            r.messages_processed
        )
        .into());
    }
    let rate = messages as f64 / r.seconds;
    Ok(Shape {
        conversations,
        messages,
        seconds: r.seconds,
        messages_per_second: rate,
        ratio_to_openmls_memory: rate / openmls.memory.decrypt_per_second,
        ratio_to_openmls_sqlite: rate / openmls.sqlite.decrypt_per_second,
        peak_rss_bytes: r.peak_rss_bytes,
    })
}

/// The child: opens the installation at `home`, syncs everything, reports.
pub fn phase(home: &Path) -> Result<()> {
    let client = Client::open(home)?;
    let t = Instant::now();
    let report = client.sync_all()?;
    let seconds = t.elapsed().as_secs_f64();
    print_json(&PhaseReport {
        seconds,
        messages_processed: report.messages_processed,
        peak_rss_bytes: super::peak_rss(),
    })?;
    Ok(())
}
