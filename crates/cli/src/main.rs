//! `ferry`: the command-line program over the Ferry SDK.
//!
//! Every command that takes `--json` prints exactly one JSON value on stdout. On failure the
//! program exits non-zero and prints one line on stderr naming the cause.

mod backup_cmd;
mod bench;
mod cmd;
mod demo;
mod output;
mod run_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: your whole message history, safely onto a new installation"
)]
struct Cli {
    /// One installation's data folder (created if missing).
    #[arg(long, global = true, env = "FERRY_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new random 32-byte archive key to OUT (mode 0600).
    Keygen {
        out: PathBuf,
        /// Write 64 hex digits and a newline instead of 32 raw bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Create, inspect, verify and import archives.
    #[command(subcommand)]
    Archive(cmd::ArchiveCmd),
    /// Scheduled backups: policy, run, list, status.
    #[command(subcommand)]
    Backup(backup_cmd::BackupCmd),
    /// List conversations.
    #[command(subcommand)]
    Conversations(cmd::ConversationsCmd),
    /// List messages.
    #[command(subcommand)]
    Messages(cmd::MessagesCmd),
    /// Consent records.
    #[command(subcommand)]
    Consent(cmd::ConsentCmd),
    /// Developer tools.
    #[command(subcommand)]
    Dev(cmd::DevCmd),
    /// Benchmarks (build with --release).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Keep the installation's background work (today: due backups) going until SIGINT/SIGTERM.
    Run {
        /// How often to check whether a backup is due.
        #[arg(long, default_value_t = 60)]
        check_every_secs: u64,
    },
    /// The whole story in one process, on temporary storage.
    Demo {
        /// Keep the demo's folder instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let home = cli.home;
    let result = match cli.command {
        Command::Keygen { out, hex } => cmd::keygen(&out, hex),
        Command::Archive(c) => cmd::archive(home, c),
        Command::Backup(c) => backup_cmd::run(home, c),
        Command::Conversations(c) => cmd::conversations(home, c),
        Command::Messages(c) => cmd::messages(home, c),
        Command::Consent(c) => cmd::consent(home, c),
        Command::Dev(c) => cmd::dev(home, c),
        Command::Bench(c) => bench::run(c),
        Command::Demo { keep } => demo::run(keep),
        Command::Run { check_every_secs } => run_cmd::run(
            home,
            std::time::Duration::from_secs(check_every_secs.max(1)),
        ),
    };
    if let Err(e) = result {
        eprintln!("error: {}", output::one_line(&e));
        std::process::exit(1);
    }
}
