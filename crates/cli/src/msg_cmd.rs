//! Messaging commands: `init`, `whoami`, `group`, `dm`, `send`, `sync`, `installations`,
//! and the delivery node (`node`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Subcommand;
use ferry_sdk::blocking::Client;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions};
use serde::Serialize;

use crate::cmd::{home_dir, home_path, ConversationJson};
use crate::output::anyhow_like::Result;
use crate::output::print_json;

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group with these inboxes (all their installations are added).
    Create {
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        inbox_ids: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Add inboxes to a group.
    Add {
        conversation: String,
        inbox_ids: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove inboxes from a group.
    Remove {
        conversation: String,
        inbox_ids: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rename a group (and optionally change its description).
    Rename {
        conversation: String,
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The members of a conversation: inboxes and their installations.
    Members {
        conversation: String,
        #[arg(long)]
        json: bool,
    },
    /// Turn disappearing messages on (`--after 1h`) or off (`--off`) for every member: messages
    /// sent from now on are deleted on every installation that long after they were sent.
    SetDisappearing {
        conversation: String,
        /// How long messages live: 30s, 5m, 2h, 7d, 1w, 1h30m.
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        after: Option<String>,
        /// Turn disappearing messages off (messages already sent keep their time).
        #[arg(long)]
        off: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add installations that joined member inboxes (and drop revoked ones) now.
    AddMissingInstallations {
        conversation: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum InstallationsCmd {
    /// The installations of an inbox (default: this one), from its verified identity log.
    List {
        inbox_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an installation of this inbox (needs the account key).
    Revoke {
        installation_id: String,
        /// The account key file (default: HOME/account.key).
        #[arg(long)]
        account_key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn account_key_path(home: &Path) -> PathBuf {
    home.join("account.key")
}

fn read_account_key(path: &Path) -> Result<zeroize::Zeroizing<[u8; 32]>> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| format!("cannot read account key {}: {e}", path.display()))?,
    );
    let raw: Vec<u8> = match bytes.len() {
        32 => bytes.to_vec(),
        64 | 65 => hex::decode(String::from_utf8_lossy(&bytes).trim())
            .map_err(|_| format!("account key {} is not 64 hex digits", path.display()))?,
        n => {
            return Err(format!(
                "account key {} must hold 32 bytes or 64 hex digits, not {n} bytes",
                path.display()
            )
            .into())
        }
    };
    if raw.len() != 32 {
        return Err(format!(
            "account key {} must hold 32 bytes or 64 hex digits",
            path.display()
        )
        .into());
    }
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&raw);
    Ok(key)
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[derive(Serialize)]
struct WhoAmI {
    inbox_id: String,
    installation_id: String,
    node_url: String,
    history_sync_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_key_file: Option<String>,
}

fn whoami_of(client: &Client, account_key_file: Option<String>) -> WhoAmI {
    WhoAmI {
        inbox_id: client.inbox_id().to_string(),
        installation_id: hex::encode(client.installation_id()),
        node_url: client.node_url().to_string(),
        history_sync_url: client.history_sync_url(),
        tls_ca: client.tls_ca().map(|p| p.display().to_string()),
        account_key_file,
    }
}

pub struct InitArgs {
    pub node: String,
    pub history_url: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub account_key: Option<PathBuf>,
    pub send_check_interval_ms: Option<u64>,
    pub sync_check_interval_ms: Option<u64>,
}

pub fn init(home: Option<PathBuf>, args: InitArgs, json: bool) -> Result<()> {
    let InitArgs {
        node,
        history_url,
        tls_ca,
        account_key,
        send_check_interval_ms,
        sync_check_interval_ms,
    } = args;
    // A registered folder stays as it is, whatever else was asked.
    let dir = home_path(home)?;
    if Client::is_registered(&dir)? {
        let who = Client::open(&dir)
            .map(|c| {
                format!(
                    " as installation {} of inbox {}",
                    hex::encode(c.installation_id()),
                    c.inbox_id()
                )
            })
            .unwrap_or_default();
        return Err(format!(
            "{} is already registered{who}: `ferry whoami` shows it; another --home makes a \
             new installation",
            dir.display()
        )
        .into());
    }
    let home = home_dir(Some(dir))?;
    let account = match &account_key {
        Some(p) => AccountKey::Existing(read_account_key(p)?),
        None => {
            let p = account_key_path(&home);
            if p.exists() {
                return Err(format!(
                    "{} exists: pass --account-key to add an installation of that inbox",
                    p.display()
                )
                .into());
            }
            AccountKey::New
        }
    };
    let mut options = ClientOptions::new(&home, node, account);
    options.history_sync_url = history_url.unwrap_or_default();
    options.tls_ca = tls_ca;
    if let Some(ms) = send_check_interval_ms {
        options.send_check_interval = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = sync_check_interval_ms {
        options.sync_check_interval = std::time::Duration::from_millis(ms);
    }
    let reg = Client::create(options)?;
    let mut key_file = None;
    if let Some(seed) = &reg.account_key {
        let p = account_key_path(&home);
        let hex = zeroize::Zeroizing::new(format!("{}\n", hex::encode(seed.as_slice())));
        if let Err(e) = write_secret(&p, hex.as_bytes()) {
            // The inbox exists now: never lose the key that controls it.
            eprintln!(
                "warning: could not save the account key ({e}); keep it: {}",
                hex.trim()
            );
        } else {
            key_file = Some(p.display().to_string());
        }
    }
    let who = whoami_of(&reg.client, key_file);
    if json {
        print_json(&who)?;
    } else {
        println!("inbox        {}", who.inbox_id);
        println!("installation {}", who.installation_id);
        if let Some(k) = &who.account_key_file {
            println!("account key  {k} (keep it safe: it adds installations to this inbox)");
        }
    }
    Ok(())
}

/// The installation in the data folder (never creates the folder).
pub fn open_client(home: Option<PathBuf>) -> Result<Client> {
    let home = home_path(home)?;
    Ok(open_installation(&home)?)
}

/// Opens the installation in `home`; `FERRY_TLS_CA`, when set, names the CA file to trust
/// instead of the one given at `ferry init`.
pub fn open_installation(home: &Path) -> ferry_sdk::Result<Client> {
    match std::env::var_os("FERRY_TLS_CA").filter(|v| !v.is_empty()) {
        Some(ca) => Client::open_with_tls_ca(home, Path::new(&ca)),
        None => Client::open(home),
    }
}

pub fn whoami(home: Option<PathBuf>, json: bool) -> Result<()> {
    let client = open_client(home)?;
    let who = whoami_of(&client, None);
    if json {
        print_json(&who)?;
    } else {
        println!("inbox        {}", who.inbox_id);
        println!("installation {}", who.installation_id);
        println!("node         {}", who.node_url);
        if let Some(ca) = &who.tls_ca {
            println!("tls ca       {ca}");
        }
    }
    Ok(())
}

fn parse_id(s: &str) -> Result<Vec<u8>> {
    Ok(hex::decode(s.trim()).map_err(|_| format!("conversation id {s} is not hex"))?)
}

#[derive(Serialize)]
struct Done {
    id: String,
    ok: bool,
}

pub fn group(home: Option<PathBuf>, c: GroupCmd) -> Result<()> {
    let client = open_client(home)?;
    let (json, out): (bool, Box<dyn erased::Out>) = match c {
        GroupCmd::Create {
            name,
            description,
            inbox_ids,
            json,
        } => {
            let g = client.create_group(
                &inbox_ids,
                GroupOptions {
                    name,
                    description,
                    ..Default::default()
                },
            )?;
            (json, Box::new(ConversationJson::from(&g.info()?)))
        }
        GroupCmd::Add {
            conversation,
            inbox_ids,
            json,
        } => {
            let g = client.conversation(&parse_id(&conversation)?)?;
            g.add_members(&inbox_ids)?;
            (json, Box::new(g.members()?))
        }
        GroupCmd::Remove {
            conversation,
            inbox_ids,
            json,
        } => {
            let g = client.conversation(&parse_id(&conversation)?)?;
            g.remove_members(&inbox_ids)?;
            (json, Box::new(g.members()?))
        }
        GroupCmd::Rename {
            conversation,
            name,
            description,
            json,
        } => {
            let g = client.conversation(&parse_id(&conversation)?)?;
            g.update_name(&name)?;
            if let Some(d) = description {
                g.update_description(&d)?;
            }
            (json, Box::new(ConversationJson::from(&g.info()?)))
        }
        GroupCmd::SetDisappearing {
            conversation,
            after,
            off,
            json,
        } => {
            let g = client.conversation(&parse_id(&conversation)?)?;
            match (after, off) {
                (Some(after), false) => {
                    let in_ns = crate::cmd::parse_duration(&after)?;
                    g.update_message_disappearing_settings(ferry_sdk::DisappearingSettings {
                        from_ns: ferry_sdk::now_ns(),
                        in_ns,
                    })?;
                }
                _ => g.remove_message_disappearing_settings()?,
            }
            (json, Box::new(ConversationJson::from(&g.info()?)))
        }
        GroupCmd::Members { conversation, json } => {
            let g = client.conversation(&parse_id(&conversation)?)?;
            (json, Box::new(g.members()?))
        }
        GroupCmd::AddMissingInstallations { conversation, json } => {
            let g = client.conversation(&parse_id(&conversation)?)?;
            g.add_missing_installations()?;
            (
                json,
                Box::new(Done {
                    id: hex::encode(g.id()),
                    ok: true,
                }),
            )
        }
    };
    if json {
        println!("{}", out.to_json()?);
    } else {
        println!("{}", out.to_line()?);
    }
    Ok(())
}

/// Serialize through a box (each subcommand prints a different shape).
mod erased {
    pub trait Out {
        fn to_json(&self) -> serde_json::Result<String>;
        fn to_line(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Out for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string_pretty(self)
        }
        fn to_line(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}

pub fn dm(home: Option<PathBuf>, inbox_id: String, json: bool) -> Result<()> {
    let client = open_client(home)?;
    let g = client.find_or_create_dm(&inbox_id)?;
    let c = ConversationJson::from(&g.info()?);
    if json {
        print_json(&c)?;
    } else {
        println!("{}", c.id);
    }
    Ok(())
}

pub fn sync(home: Option<PathBuf>, json: bool) -> Result<()> {
    let client = open_client(home)?;
    let report = client.sync_all()?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "joined {} conversations, applied {} messages in {} conversations",
            report.conversations_joined, report.messages_processed, report.conversations_synced
        );
    }
    Ok(())
}

pub fn installations(home: Option<PathBuf>, c: InstallationsCmd) -> Result<()> {
    let dir = home_path(home.clone())?;
    let client = open_client(home)?;
    match c {
        InstallationsCmd::List { inbox_id, json } => {
            let info = client.inbox_info(inbox_id.as_deref().unwrap_or(client.inbox_id()))?;
            if json {
                print_json(&info)?;
            } else {
                for i in &info.installations {
                    println!("{i} active");
                }
                for i in &info.revoked {
                    println!("{i} revoked");
                }
            }
        }
        InstallationsCmd::Revoke {
            installation_id,
            account_key,
            json,
        } => {
            let key = read_account_key(&account_key.unwrap_or_else(|| account_key_path(&dir)))?;
            let id: [u8; 32] = hex::decode(installation_id.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or("installation id must be 64 hex digits")?;
            client.revoke_installation(
                std::sync::Arc::new(ferry_sdk::KeyPair::from_seed(&key)),
                &id,
            )?;
            if json {
                print_json(&Done {
                    id: hex::encode(id),
                    ok: true,
                })?;
            } else {
                println!("revoked {}", hex::encode(id));
            }
        }
    }
    Ok(())
}

/// `--tls-cert` and `--tls-key`: both (TLS) or neither (plain).
pub fn server_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<ferry_node::ServerTls>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(ferry_node::ServerTls::new(cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err("--tls-cert needs --tls-key (the certificate's private key)".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert (the certificate chain)".into()),
    }
}

/// `ferry node`: runs the delivery node until SIGINT/SIGTERM. Its data goes to `--db`, else
/// to `node.db` in its data folder (`$FERRY_NODE_DATA`, else `~/.ferry-node`); only
/// `--in-memory` keeps it in memory. The second line of output says where it is.
pub fn node(
    listen: String,
    db: Option<String>,
    pool_size: u32,
    in_memory: bool,
    tls: Option<ferry_node::ServerTls>,
    limits: ferry_node::RateLimits,
) -> Result<()> {
    let db = match (db, in_memory) {
        (_, true) => ferry_node::Database::Memory,
        (Some(db), false) => match ferry_node::Database::parse(&db) {
            ferry_node::Database::Postgres { url, .. } => {
                ferry_node::Database::Postgres { url, pool_size }
            }
            other => other,
        },
        (None, false) => {
            let dir = match std::env::var_os("FERRY_NODE_DATA") {
                Some(d) => PathBuf::from(d),
                None => PathBuf::from(
                    std::env::var_os("HOME")
                        .ok_or("set --db, FERRY_NODE_DATA or HOME (or --in-memory)")?,
                )
                .join(".ferry-node"),
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create node data folder {}: {e}", dir.display()))?;
            ferry_node::Database::Sqlite(dir.join("node.db"))
        }
    };
    let where_ = format!("data in {}", db.describe());
    let running = ferry_node::RunningNode::start(ferry_node::NodeConfig {
        listen,
        db,
        tls,
        access: ferry_node::AccessPolicy {
            authenticate: true,
            limits,
        },
    })?;
    serve_until_stopped(running.addr(), Some(&where_), || running.stop())
}

/// `ferry history-server`: runs the history server until SIGINT/SIGTERM.
pub fn history_server(config: ferry_history_server::HistoryConfig) -> Result<()> {
    let where_ = match &config.store {
        Some(store) => format!("data in {store}"),
        None => format!("data in {}", config.dir.display()),
    };
    let running = ferry_history_server::RunningHistoryServer::start(config)?;
    serve_until_stopped(running.addr(), Some(&where_), || running.stop())
}

/// Prints `listening on HOST:PORT` first (and where the data is on the next line), waits for
/// SIGINT/SIGTERM, then stops cleanly.
fn serve_until_stopped(
    addr: std::net::SocketAddr,
    data: Option<&str>,
    stop_server: impl FnOnce(),
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    println!("listening on {addr}");
    if let Some(d) = data {
        // Whoever started us may read only the first line and close the pipe.
        let _ = writeln!(std::io::stdout(), "{d}");
    }
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop_server();
    // Whoever started us may have stopped reading our output: that is no failure.
    let _ = writeln!(std::io::stdout(), "stopped");
    Ok(())
}
