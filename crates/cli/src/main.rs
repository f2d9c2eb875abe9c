//! `ferry`: the command-line program over the Ferry SDK.
//!
//! Every command that takes `--json` prints exactly one JSON value on stdout. On failure the
//! program exits non-zero and prints one line on stderr naming the cause.

mod archive_cmd;
mod backup_cmd;
mod bench;
mod cmd;
mod content_cmd;
mod demo;
mod history_cmd;
mod msg_cmd;
mod output;
mod run_cmd;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: your whole message history, safely onto a new installation"
)]
struct Cli {
    /// One installation's data folder (created by the commands that write to it).
    #[arg(long, global = true, env = "FERRY_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// A server's TLS certificate and key (both or neither).
#[derive(Args)]
struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM, server certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
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
    /// Register this folder as a new installation (of a new inbox, or of --account-key's).
    Init {
        /// The delivery node, http://HOST:PORT or https://HOST:PORT.
        #[arg(long)]
        node: String,
        /// The history server for history sync (none: history sync off).
        #[arg(long)]
        history_url: Option<String>,
        /// CA certificate (PEM) that https:// servers must chain to, instead of the public
        /// roots (a deployment with its own CA); kept for later commands.
        #[arg(long, value_name = "FILE", env = "FERRY_TLS_CA")]
        tls_ca: Option<PathBuf>,
        /// An existing inbox's account key file: add this installation to that inbox.
        #[arg(long)]
        account_key: Option<PathBuf>,
        /// How often, at most, sending checks members for new installations (ms; default 5000).
        #[arg(long)]
        send_check_interval_ms: Option<u64>,
        /// How often, at most, syncing does the same (ms; default 1800000, 30 min).
        #[arg(long)]
        sync_check_interval_ms: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// This installation's inbox and installation ids.
    Whoami {
        #[arg(long)]
        json: bool,
    },
    /// Groups: create, add and remove members, rename, list members.
    #[command(subcommand)]
    Group(msg_cmd::GroupCmd),
    /// The DM with an inbox (found or created).
    Dm {
        inbox_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Send a text message (a reply to message MSG with --reply-to MSG).
    Send {
        conversation_id: String,
        text: String,
        /// Reply to this message (hex id).
        #[arg(long, value_name = "MSG")]
        reply_to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// React to a message with an emoji (or take the reaction back with --remove).
    React {
        conversation_id: String,
        message_id: String,
        emoji: String,
        #[arg(long)]
        remove: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send a file: inside the message when small (up to 1,000,000 bytes), otherwise
    /// encrypted with a fresh key and uploaded to this installation's history server.
    SendFile {
        conversation_id: String,
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Attachments of messages.
    #[command(subcommand)]
    Attachment(content_cmd::AttachmentCmd),
    /// Fetch welcomes and messages from the node and apply them.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// An inbox's installations; revoke one of this inbox's.
    #[command(subcommand)]
    Installations(msg_cmd::InstallationsCmd),
    /// Run the delivery node (gRPC) until SIGINT/SIGTERM.
    Node {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: String,
        /// Where the node keeps its data: a SQLite file (default: node.db in the node's data
        /// folder, which it names when it starts: $FERRY_NODE_DATA, else ~/.ferry-node), or a
        /// PostgreSQL URL (postgres://user@host:port/db) that several node processes
        /// (replicas) may share.
        #[arg(long, conflicts_with = "in_memory")]
        db: Option<String>,
        /// Connections to PostgreSQL this process keeps open at most (with a postgres:// --db).
        #[arg(long, default_value_t = ferry_node::DEFAULT_POOL_SIZE)]
        pool_size: u32,
        /// Keep everything in memory (lost when the node stops; for tests and demos).
        #[arg(long)]
        in_memory: bool,
        #[command(flatten)]
        tls: ServerTlsArgs,
        #[command(flatten)]
        limits: RateLimitArgs,
    },
    /// Run the history server (HTTP) until SIGINT/SIGTERM: it keeps encrypted history
    /// archives for a short time so a new installation can fetch what another uploaded.
    #[command(group(clap::ArgGroup::new("storage").required(true).args(["dir", "store"])))]
    HistoryServer {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7701")]
        listen: String,
        /// Folder for the payloads (created if missing).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the payloads elsewhere than in --dir: `s3://bucket/prefix` (S3-compatible
        /// object storage; credentials, region and endpoint from AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, AWS_ALLOW_HTTP...), or a folder
        /// (`file:///path` or a path). Several servers may share one bucket and prefix.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Largest accepted upload, in bytes.
        #[arg(long, default_value_t = ferry_history_server::HistoryConfig::default().max_bytes)]
        max_bytes: u64,
        /// How long a payload is kept, in seconds.
        #[arg(long, default_value_t = ferry_history_server::HistoryConfig::default().ttl.as_secs())]
        ttl_secs: u64,
        /// How long a remote attachment's file (POST /attachments) is kept, in seconds.
        #[arg(long, default_value_t = ferry_history_server::HistoryConfig::default().attachment_ttl.as_secs())]
        attachment_ttl_secs: u64,
        /// Delete a payload after its first complete download (history archives only:
        /// attachments are fetched by every member).
        #[arg(long)]
        delete_after_download: bool,
        /// Uploads plus downloads per client IP address and minute (0: no limit).
        #[arg(long, default_value_t = ferry_history_server::HistoryConfig::default().requests_per_minute)]
        requests_per_minute: u32,
        #[command(flatten)]
        tls: ServerTlsArgs,
    },
    /// History sync by hand: request, send an archive, list and import announced archives.
    #[command(subcommand)]
    History(history_cmd::HistoryCmd),
    /// The per-conversation HMAC keys (push topics) of this inbox, the same on every one of its
    /// installations.
    HmacKeys {
        #[arg(long)]
        json: bool,
    },
    /// Create, inspect, verify and import archives.
    #[command(subcommand)]
    Archive(archive_cmd::ArchiveCmd),
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
    /// Keep the installation online (node streams, sync, member checks) and its background work
    /// (due backups) going until SIGINT/SIGTERM.
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
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| {
                // openmls logs expected events (a message from before this installation
                // joined) as errors; FERRY_LOG=openmls=debug shows them.
                tracing_subscriber::EnvFilter::new("warn,openmls=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = parse_cli();
    let home = cli.home;
    let result = match cli.command {
        Command::Keygen { out, hex } => archive_cmd::keygen(&out, hex),
        Command::Init {
            node,
            history_url,
            tls_ca,
            account_key,
            send_check_interval_ms,
            sync_check_interval_ms,
            json,
        } => msg_cmd::init(
            home,
            msg_cmd::InitArgs {
                node,
                history_url,
                tls_ca,
                account_key,
                send_check_interval_ms,
                sync_check_interval_ms,
            },
            json,
        ),
        Command::Whoami { json } => msg_cmd::whoami(home, json),
        Command::Group(c) => msg_cmd::group(home, c),
        Command::Dm { inbox_id, json } => msg_cmd::dm(home, inbox_id, json),
        Command::Send {
            conversation_id,
            text,
            reply_to,
            json,
        } => content_cmd::send(home, conversation_id, text, reply_to, json),
        Command::React {
            conversation_id,
            message_id,
            emoji,
            remove,
            json,
        } => content_cmd::react(home, conversation_id, message_id, emoji, remove, json),
        Command::SendFile {
            conversation_id,
            path,
            json,
        } => content_cmd::send_file(home, conversation_id, path, json),
        Command::Attachment(c) => content_cmd::attachment(home, c),
        Command::Sync { json } => msg_cmd::sync(home, json),
        Command::Installations(c) => msg_cmd::installations(home, c),
        Command::Node {
            listen,
            db,
            pool_size,
            in_memory,
            tls,
            limits,
        } => msg_cmd::server_tls(tls.tls_cert, tls.tls_key)
            .and_then(|tls| msg_cmd::node(listen, db, pool_size, in_memory, tls, limits.into())),
        Command::HistoryServer {
            listen,
            dir,
            store,
            max_bytes,
            ttl_secs,
            attachment_ttl_secs,
            delete_after_download,
            requests_per_minute,
            tls,
        } => msg_cmd::server_tls(tls.tls_cert, tls.tls_key).and_then(|tls| {
            msg_cmd::history_server(ferry_history_server::HistoryConfig {
                listen,
                dir: dir.unwrap_or_default(),
                store,
                max_bytes,
                ttl: std::time::Duration::from_secs(ttl_secs.max(1)),
                attachment_ttl: std::time::Duration::from_secs(attachment_ttl_secs.max(1)),
                delete_after_download,
                requests_per_minute,
                tls,
                ..Default::default()
            })
        }),
        Command::History(c) => history_cmd::run(home, c),
        Command::HmacKeys { json } => history_cmd::hmac_keys(home, json),
        Command::Archive(c) => archive_cmd::archive(home, c),
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
        if let Some(hint) = output::hint(&e) {
            eprintln!("hint: {hint}");
        }
        std::process::exit(1);
    }
}

/// The command line, with the client's global `--home` hidden from the servers' help (a
/// server has no installation folder).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    for server in ["node", "history-server"] {
        // A hidden arg of the same id: the global one is then not added to this subcommand.
        command = command.mut_subcommand(server, |s| {
            s.arg(
                clap::Arg::new("home")
                    .long("home")
                    .hide(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            )
        });
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `ferry node`'s rate limits: token buckets per installation (and per IP address for calls
/// without a signature). A call over its limit is answered RESOURCE_EXHAUSTED with a
/// retry-after-ms hint, which Ferry clients wait out. 0 turns a limit off.
#[derive(clap::Args, Debug)]
struct RateLimitArgs {
    /// Group messages and welcomes one installation may store per second.
    #[arg(long, default_value_t = ferry_node::RateLimits::default().writes_per_second)]
    write_rate: u32,
    /// How many of those at once (also the largest batch).
    #[arg(long, default_value_t = ferry_node::RateLimits::default().write_burst)]
    write_burst: u32,
    /// Other calls (queries, subscriptions, key packages) per installation per second.
    #[arg(long, default_value_t = ferry_node::RateLimits::default().reads_per_second)]
    read_rate: u32,
    /// How many of those at once.
    #[arg(long, default_value_t = ferry_node::RateLimits::default().read_burst)]
    read_burst: u32,
    /// Unsigned calls (identity updates and logs) per IP address per second.
    #[arg(long, default_value_t = ferry_node::RateLimits::default().anonymous_per_second)]
    anonymous_rate: u32,
    /// How many of those at once.
    #[arg(long, default_value_t = ferry_node::RateLimits::default().anonymous_burst)]
    anonymous_burst: u32,
}

impl From<RateLimitArgs> for ferry_node::RateLimits {
    fn from(a: RateLimitArgs) -> Self {
        ferry_node::RateLimits {
            writes_per_second: a.write_rate,
            write_burst: a.write_burst,
            reads_per_second: a.read_rate,
            read_burst: a.read_burst,
            anonymous_per_second: a.anonymous_rate,
            anonymous_burst: a.anonymous_burst,
        }
    }
}
