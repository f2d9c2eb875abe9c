//! `ferry bench archive`: measures create, import, re-import and metadata on a seeded store.
//! `ferry bench passphrase`: measures one Argon2id passphrase stretch.
//! `ferry bench node`: see `bench_node.rs`.
//!
//! Each phase runs in a child process (`ferry bench phase ...`), so its peak RSS is its own.

mod balancer;
mod catchup;
mod guard;
mod history;
mod load;
mod node;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Subcommand;
use ferry_archive::proto::Metadata;
use ferry_archive::{ArchiveWriter, Argon2Params, WriterOptions};
use ferry_sdk::archive::{self, Control, Origin};
use ferry_sdk::store::Store;
use ferry_sdk::ArchiveKey;
use serde::{Deserialize, Serialize};

use crate::output::anyhow_like::Result;
use crate::output::print_json;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Archive create / import / re-import / metadata on a synthetic store.
    Archive {
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        #[arg(long, default_value_t = 1_000)]
        conversations: u64,
        /// Folder for the temporary stores and archive (default: the system temp folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also run it on mixed content (10 % reactions, 5 % replies, 1 % remote
        /// attachments) and print both, with the mixed run's figures as ratios to the
        /// text-only run's.
        #[arg(long)]
        mixed: bool,
        #[arg(long)]
        json: bool,
    },
    /// How long the Argon2id passphrase stretch takes (the default parameters unless given).
    Passphrase {
        /// Passes (default: Argon2Params::DEFAULT).
        #[arg(long)]
        t_cost: Option<u32>,
        /// Memory in KiB (default: Argon2Params::DEFAULT).
        #[arg(long)]
        m_cost_kib: Option<u32>,
        /// Lanes (default: Argon2Params::DEFAULT).
        #[arg(long)]
        p_cost: Option<u32>,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        #[arg(long)]
        json: bool,
    },
    /// Messaging on loopback: send and delivery rates in a group, and adding one new
    /// installation to many conversations.
    Node {
        /// Installations in the group (inboxes of two installations each).
        #[arg(long, default_value_t = 10)]
        installations: usize,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Conversations the new installation is added to.
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Also measure openmls alone on the same messages (in memory and on SQLite) and give
        /// send and deliver as ratios to it.
        #[arg(long)]
        limits: bool,
        #[arg(long)]
        json: bool,
    },
    /// What openmls alone does here: encrypt and decrypt rates of one member pair, with
    /// openmls' in-memory storage and with its SQLite storage (the yardstick of the other
    /// messaging benchmarks).
    Mls {
        #[arg(long, default_value_t = 5000)]
        messages: u64,
        /// Plaintext bytes per message.
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Catch-up: an installation offline while its conversations received `messages` in all
    /// comes back and runs sync_all; seconds, messages/s (and as a ratio to openmls' own
    /// decrypt rate), peak RSS. Once spread over `conversations`, once all in one.
    Catchup {
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Messages in all (each shape).
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        #[arg(long)]
        json: bool,
    },
    /// The messaging benchmarks, small and bounded, as ratios to openmls alone in the same
    /// run; fails when one falls below half of the ratio recorded in FILE for this build
    /// profile (CI runs it). `--record` writes the current ratios to FILE.
    Guard {
        #[arg(long, default_value = "bench/guard.json")]
        file: PathBuf,
        /// Messages per measurement.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        #[arg(long)]
        record: bool,
        #[arg(long)]
        json: bool,
    },
    /// The catching-up installation of `bench catchup`, in its own process.
    #[command(hide = true)]
    CatchupPhase {
        #[arg(long)]
        home: PathBuf,
    },
    /// History sync on loopback: from a new installation's request to its history imported.
    History {
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 100)]
        conversations: u64,
        #[arg(long)]
        json: bool,
    },
    /// Many clients sending at once over several groups, the node killed (SIGKILL) and
    /// restarted midway: messages/s, delivery latency, and a check that every client holds
    /// every message exactly once in the node's order (exits non-zero if not).
    Load {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        groups: usize,
        /// Messages each client sends.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Do not kill the node midway.
        #[arg(long)]
        no_restart: bool,
        /// Also run the load through this many node replicas on the PostgreSQL database
        /// `--db`, behind a loopback balancer, one replica SIGKILLed midway (not restarted);
        /// both figures are printed, the single SQLite node's first.
        #[arg(long, requires = "db")]
        replicas: Option<usize>,
        /// The PostgreSQL database of the replicas (postgres://…).
        #[arg(long, requires = "replicas")]
        db: Option<String>,
        /// Keep the node's and the clients' folders here.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Seconds for `Client::create_archive` (signed, through the async client) on an existing
    /// installation's store: the Rust side of the Node.js SDK's benchmark
    /// (bindings/node/bench), which times the same call through the addon.
    ClientArchive {
        /// The installation's folder.
        #[arg(long)]
        home: PathBuf,
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One measured phase in this process (used by `bench archive`).
    #[command(hide = true)]
    Phase {
        phase: String,
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        archive: PathBuf,
        #[arg(long)]
        key_file: PathBuf,
    },
}

#[derive(Serialize, Deserialize, Default, Debug)]
struct PhaseResult {
    seconds: f64,
    peak_rss_bytes: u64,
    archive_bytes: u64,
    plaintext_bytes: u64,
    messages_imported: u64,
    messages_skipped: u64,
}

#[derive(Serialize)]
struct ArchiveBench {
    /// `text` or `mixed`.
    content: &'static str,
    messages: u64,
    conversations: u64,
    seed_seconds: f64,
    create_seconds: f64,
    import_seconds: f64,
    reimport_seconds: f64,
    metadata_seconds: f64,
    archive_bytes: u64,
    plaintext_bytes: u64,
    archive_to_plaintext: f64,
    create_peak_rss_bytes: u64,
    import_peak_rss_bytes: u64,
    reimport_peak_rss_bytes: u64,
    create_messages_per_second: f64,
    import_messages_per_second: f64,
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kib| kib * 1024)
}

pub fn run(c: BenchCmd) -> Result<()> {
    match c {
        BenchCmd::Phase {
            phase,
            db,
            archive,
            key_file,
        } => phase_run(&phase, &db, &archive, &key_file),
        BenchCmd::Archive {
            messages,
            conversations,
            dir,
            mixed,
            json,
        } => bench_archive(messages, conversations, dir, mixed, json),
        BenchCmd::ClientArchive { home, out, json } => client_archive(&home, &out, json),
        BenchCmd::Node {
            installations,
            messages,
            conversations,
            limits,
            json,
        } => node::run(installations, messages, conversations, limits, json),
        BenchCmd::Mls {
            messages,
            size,
            json,
        } => bench_mls(messages, size, json),
        BenchCmd::Catchup {
            conversations,
            messages,
            json,
        } => catchup::run(conversations, messages, json),
        BenchCmd::CatchupPhase { home } => catchup::phase(&home),
        BenchCmd::Guard {
            file,
            messages,
            record,
            json,
        } => guard::run(&file, messages, record, json),
        BenchCmd::Load {
            clients,
            groups,
            messages,
            no_restart,
            replicas,
            db,
            keep,
            json,
        } => load::run(
            load::LoadOptions {
                clients,
                groups,
                messages,
                kill_node: !no_restart,
                keep,
                replicas: replicas.zip(db),
            },
            json,
        ),
        BenchCmd::History {
            messages,
            conversations,
            json,
        } => history::run(messages, conversations, json),
        BenchCmd::Passphrase {
            t_cost,
            m_cost_kib,
            p_cost,
            runs,
            json,
        } => {
            let d = Argon2Params::DEFAULT;
            let params = Argon2Params {
                m_cost_kib: m_cost_kib.unwrap_or(d.m_cost_kib),
                t_cost: t_cost.unwrap_or(d.t_cost),
                p_cost: p_cost.unwrap_or(d.p_cost),
            };
            bench_passphrase(params, runs.max(1), json)
        }
    }
}

fn bench_mls(messages: u64, size: usize, json: bool) -> Result<()> {
    let l = ferry_mls::limits::measure(messages, size)?;
    if json {
        print_json(&l)?;
    } else {
        println!(
            "openmls alone, {} messages of {} bytes, one thread:",
            l.messages, l.message_bytes
        );
        for (name, r) in [("in memory", l.memory), ("on SQLite", l.sqlite)] {
            println!(
                "  {name:<10} encrypt {:>8.0}/s ({:.1} µs)  decrypt {:>8.0}/s ({:.1} µs)",
                r.encrypt_per_second,
                1e6 / r.encrypt_per_second,
                r.decrypt_per_second,
                1e6 / r.decrypt_per_second
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct PassphraseBench {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    runs: u32,
    /// Median seconds to seal an empty archive with a passphrase: one Argon2id evaluation
    /// (plus HKDF and a tiny header, which are microseconds).
    median_seconds: f64,
    min_seconds: f64,
    max_seconds: f64,
    release_build: bool,
}

/// Times what a person waits for when sealing (or opening) a passphrase archive: one Argon2id
/// evaluation, measured through the archive writer so it is the real code path.
fn bench_passphrase(params: Argon2Params, runs: u32, json: bool) -> Result<()> {
    if cfg!(debug_assertions) && !json {
        eprintln!("warning: this is a debug build; build with --release for real figures");
    }
    let key = ArchiveKey::passphrase("correct horse battery staple");
    let opts = WriterOptions {
        threads: 0,
        kdf: params,
        ..WriterOptions::default()
    };
    let mut times = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let t = Instant::now();
        let w = ArchiveWriter::new(Vec::new(), &key, Metadata::default(), &opts)?;
        times.push(t.elapsed().as_secs_f64());
        w.finish()?;
    }
    times.sort_by(f64::total_cmp);
    let b = PassphraseBench {
        m_cost_kib: params.m_cost_kib,
        t_cost: params.t_cost,
        p_cost: params.p_cost,
        runs,
        median_seconds: times[times.len() / 2],
        min_seconds: times[0],
        max_seconds: times[times.len() - 1],
        release_build: !cfg!(debug_assertions),
    };
    if json {
        print_json(&b)?;
    } else {
        println!(
            "argon2id m={} KiB t={} p={}: {:.3} s median of {} (min {:.3}, max {:.3})",
            b.m_cost_kib,
            b.t_cost,
            b.p_cost,
            b.median_seconds,
            b.runs,
            b.min_seconds,
            b.max_seconds
        );
    }
    Ok(())
}

fn phase_run(phase: &str, db: &Path, archive: &Path, key_file: &Path) -> Result<()> {
    let key = ArchiveKey::from_key_file(&std::fs::read(key_file)?)?;
    let mut r = PhaseResult::default();
    match phase {
        "create" => {
            let store = Store::open(db)?;
            let t = Instant::now();
            let meta = archive::create_archive(
                &store,
                archive,
                &key,
                &Default::default(),
                &Origin::default(),
                &Control::new(),
            )?;
            r.seconds = t.elapsed().as_secs_f64();
            r.archive_bytes = meta.file_bytes;
            r.plaintext_bytes = meta.plaintext_bytes.unwrap_or(0);
        }
        "import" => {
            let mut store = Store::open(db)?;
            let t = Instant::now();
            let rep = archive::import_archive(&mut store, archive, &key, &Control::new())?;
            r.seconds = t.elapsed().as_secs_f64();
            r.messages_imported = rep.messages_imported;
            r.messages_skipped = rep.messages_skipped;
        }
        "metadata" => {
            // The median of 21 runs.
            let mut times = Vec::new();
            for _ in 0..21 {
                let t = Instant::now();
                archive::archive_metadata(archive, &key)?;
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            r.seconds = times[times.len() / 2];
        }
        other => return Err(format!("unknown phase {other}").into()),
    }
    r.peak_rss_bytes = peak_rss();
    print_json(&r)
}

fn child(phase: &str, db: &Path, archive: &Path, key_file: &Path) -> Result<PhaseResult> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["bench", "phase", phase, "--db"])
        .arg(db)
        .arg("--archive")
        .arg(archive)
        .arg("--key-file")
        .arg(key_file)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "bench phase {phase} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn bench_archive(
    messages: u64,
    conversations: u64,
    dir: Option<PathBuf>,
    mixed: bool,
    json: bool,
) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; build with --release for real figures");
    }
    let text = measure_archive(messages, conversations, dir.as_deref(), false, json)?;
    if !mixed {
        if json {
            print_json(&text)?;
        } else {
            print_archive(&text);
        }
        return Ok(());
    }
    let mixed = measure_archive(messages, conversations, dir.as_deref(), true, json)?;
    let ratios = ArchiveRatios {
        create_messages_per_second: mixed.create_messages_per_second
            / text.create_messages_per_second,
        import_messages_per_second: mixed.import_messages_per_second
            / text.import_messages_per_second,
        reimport_seconds: mixed.reimport_seconds / text.reimport_seconds,
        archive_bytes: mixed.archive_bytes as f64 / text.archive_bytes as f64,
        import_peak_rss_bytes: mixed.import_peak_rss_bytes as f64
            / text.import_peak_rss_bytes as f64,
    };
    if json {
        print_json(&serde_json::json!({ "text": text, "mixed": mixed, "mixed_to_text": ratios }))?;
    } else {
        print_archive(&text);
        print_archive(&mixed);
        println!(
            "mixed / text: create {:.2}x messages/s, import {:.2}x messages/s, re-import {:.2}x time, \
             archive {:.2}x bytes, import peak RSS {:.2}x",
            ratios.create_messages_per_second,
            ratios.import_messages_per_second,
            ratios.reimport_seconds,
            ratios.archive_bytes,
            ratios.import_peak_rss_bytes
        );
    }
    Ok(())
}

/// The mixed run's figures over the text-only run's, from one invocation.
#[derive(Serialize)]
struct ArchiveRatios {
    create_messages_per_second: f64,
    import_messages_per_second: f64,
    reimport_seconds: f64,
    archive_bytes: f64,
    import_peak_rss_bytes: f64,
}

/// Seeds a store (text only, or `mixed` content), then times create, import, re-import and
/// metadata, each in a child process.
fn measure_archive(
    messages: u64,
    conversations: u64,
    dir: Option<&Path>,
    mixed: bool,
    json: bool,
) -> Result<ArchiveBench> {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let src = tmp.path().join("source.db");
    let dst = tmp.path().join("target.db");
    let archive = tmp.path().join("bench.ferry");
    let key_file = tmp.path().join("bench.key");
    std::fs::write(&key_file, ArchiveKey::generate().raw_bytes().expect("raw"))?;

    let t = Instant::now();
    {
        let mut store = Store::open(&src)?;
        ferry_sdk::dev::seed(
            &mut store,
            &ferry_sdk::dev::SeedOptions {
                conversations,
                messages,
                consent: conversations,
                seed: 7,
                mixed_content: mixed,
                ..Default::default()
            },
        )?;
    }
    let seed_seconds = t.elapsed().as_secs_f64();
    if !json {
        eprintln!(
            "seeded {messages} messages in {conversations} conversations in {seed_seconds:.2} s"
        );
    }
    // Warm the OS cache for the source like an app that has been running.
    let create = child("create", &src, &archive, &key_file)?;
    let create = {
        std::fs::remove_file(&archive)?;
        let second = child("create", &src, &archive, &key_file)?;
        if second.seconds < create.seconds {
            second
        } else {
            create
        }
    };
    let import = child("import", &dst, &archive, &key_file)?;
    let reimport = child("import", &dst, &archive, &key_file)?;
    let metadata = child("metadata", &dst, &archive, &key_file)?;
    if import.messages_imported != messages || reimport.messages_skipped != messages {
        return Err(format!(
            "bench check failed: imported {} and skipped {} of {messages} messages",
            import.messages_imported, reimport.messages_skipped
        )
        .into());
    }
    let b = ArchiveBench {
        content: if mixed { "mixed" } else { "text" },
        messages,
        conversations,
        seed_seconds,
        create_seconds: create.seconds,
        import_seconds: import.seconds,
        reimport_seconds: reimport.seconds,
        metadata_seconds: metadata.seconds,
        archive_bytes: create.archive_bytes,
        plaintext_bytes: create.plaintext_bytes,
        archive_to_plaintext: create.archive_bytes as f64 / create.plaintext_bytes.max(1) as f64,
        create_peak_rss_bytes: create.peak_rss_bytes,
        import_peak_rss_bytes: import.peak_rss_bytes,
        reimport_peak_rss_bytes: reimport.peak_rss_bytes,
        create_messages_per_second: messages as f64 / create.seconds,
        import_messages_per_second: messages as f64 / import.seconds,
    };
    Ok(b)
}

fn print_archive(b: &ArchiveBench) {
    {
        let mb = |v: u64| v as f64 / 1e6;
        println!(
            "archive benchmark ({} content): {} messages, {} conversations",
            b.content, b.messages, b.conversations
        );
        println!(
            "  create      {:>8.3} s  ({:.0} messages/s)",
            b.create_seconds, b.create_messages_per_second
        );
        println!(
            "  import      {:>8.3} s  ({:.0} messages/s)",
            b.import_seconds, b.import_messages_per_second
        );
        println!(
            "  re-import   {:>8.3} s  (all duplicates)",
            b.reimport_seconds
        );
        println!(
            "  metadata    {:>8.3} ms (median of 21)",
            b.metadata_seconds * 1e3
        );
        println!(
            "  size        {:>8.1} MB archive / {:.1} MB plaintext = {:.1} %",
            mb(b.archive_bytes),
            mb(b.plaintext_bytes),
            100.0 * b.archive_to_plaintext
        );
        println!(
            "  peak RSS    {:>8.1} MB create, {:.1} MB import, {:.1} MB re-import",
            mb(b.create_peak_rss_bytes),
            mb(b.import_peak_rss_bytes),
            mb(b.reimport_peak_rss_bytes)
        );
    }
}

#[derive(Serialize)]
struct ClientArchiveBench {
    seconds: f64,
    messages: Option<u64>,
    archive_bytes: u64,
}

/// Times `Client::create_archive` (the blocking facade over the async client) on `home`.
fn client_archive(home: &Path, out: &Path, json: bool) -> Result<()> {
    let client = ferry_sdk::blocking::Client::open(home)?;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    let key = ArchiveKey::from_bytes(&key)?;
    let t = Instant::now();
    let meta = client.create_archive(
        out,
        &key,
        &archive::ArchiveOptions::default(),
        &Control::new(),
    )?;
    let r = ClientArchiveBench {
        seconds: t.elapsed().as_secs_f64(),
        messages: meta.message_count,
        archive_bytes: meta.file_bytes,
    };
    if json {
        print_json(&r)?;
    } else {
        println!(
            "Client::create_archive: {:.3} s, {} messages, {} bytes",
            r.seconds,
            r.messages.unwrap_or(0),
            r.archive_bytes
        );
    }
    Ok(())
}
