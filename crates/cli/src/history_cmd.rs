//! History sync by hand (`ferry history ...`) and the inbox's HMAC keys (`ferry hmac-keys`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use ferry_sdk::archive::ImportReport;
use ferry_sdk::blocking::Client;
use ferry_sdk::SyncOptions;
use serde::Serialize;

use crate::msg_cmd::open_client;
use crate::output::anyhow_like::Result;
use crate::output::print_json;

#[derive(Args, Clone, Copy)]
#[group(multiple = false)]
pub struct Elements {
    /// Consent only (no messages).
    #[arg(long)]
    consent_only: bool,
    /// Messages only (no consent).
    #[arg(long)]
    messages_only: bool,
}

impl Elements {
    fn options(self) -> SyncOptions {
        if self.consent_only {
            SyncOptions::consent_only()
        } else if self.messages_only {
            SyncOptions::messages_only()
        } else {
            SyncOptions::default()
        }
    }
}

#[derive(Subcommand)]
pub enum HistoryCmd {
    /// Ask this inbox's other installations for history and wait a little for the answer; an
    /// answer that comes later is imported by the next `ferry sync` (or `ferry run`).
    Sync {
        #[command(flatten)]
        elements: Elements,
        /// How long to wait for an online installation to answer.
        #[arg(long, default_value_t = 5)]
        wait_secs: u64,
        #[arg(long)]
        json: bool,
    },
    /// Send a history request and print its pin (do not wait).
    Request {
        #[command(flatten)]
        elements: Elements,
        #[arg(long)]
        json: bool,
    },
    /// Build an archive now, upload it and announce it in the sync group (answering the request
    /// with --pin, or under a new pin).
    SendArchive {
        #[arg(long)]
        pin: Option<String>,
        #[command(flatten)]
        elements: Elements,
        #[arg(long)]
        json: bool,
    },
    /// The archives announced in the sync group.
    List {
        /// Only those announced in the last N days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
    /// The history server this installation uses (`set URL`, `show`, `clear`).
    #[command(subcommand)]
    Url(UrlCmd),
    /// Download, verify and import an announced archive (--pin, or the newest).
    Process {
        #[arg(long)]
        pin: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum UrlCmd {
    /// Use this history server (http:// or https://) for history sync from now on.
    Set {
        url: String,
        #[arg(long)]
        json: bool,
    },
    /// The history server in use (empty: history sync is off).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Turn history sync off on this installation.
    Clear {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct HistoryUrl {
    history_sync_url: String,
    enabled: bool,
}

fn url_cmd(client: &Client, c: UrlCmd) -> Result<()> {
    let json = match c {
        UrlCmd::Set { url, json } => {
            client.set_history_sync_url(&url)?;
            json
        }
        UrlCmd::Clear { json } => {
            client.set_history_sync_url("")?;
            json
        }
        UrlCmd::Show { json } => json,
    };
    let out = HistoryUrl {
        history_sync_url: client.history_sync_url(),
        enabled: !client.history_sync_url().is_empty(),
    };
    if json {
        print_json(&out)
    } else {
        if out.enabled {
            println!("history sync uses {}", out.history_sync_url);
        } else {
            println!("history sync is off (`ferry history url set URL` turns it on)");
        }
        Ok(())
    }
}

/// One pin of `history list`: its newest reply's fields (as each entry had before replies
/// were grouped), and every reply under it, newest first.
#[derive(Serialize)]
struct PinEntry {
    #[serde(flatten)]
    newest: ferry_sdk::AvailableArchive,
    replies: Vec<ferry_sdk::AvailableArchive>,
}

/// Groups replies (newest first) by pin, keeping that order.
fn by_pin(archives: Vec<ferry_sdk::AvailableArchive>) -> Vec<PinEntry> {
    let mut out: Vec<PinEntry> = Vec::new();
    for a in archives {
        match out.iter_mut().find(|p| p.newest.pin == a.pin) {
            Some(p) => p.replies.push(a),
            None => out.push(PinEntry {
                newest: a.clone(),
                replies: vec![a],
            }),
        }
    }
    out
}

#[derive(Serialize)]
struct Pin {
    pin: String,
}

/// `history sync --json`: what happened to the request.
#[derive(Serialize)]
struct SyncOutcome {
    pin: String,
    /// `imported`, or `waiting` (no installation of this inbox answered in time).
    status: &'static str,
    /// Whether the pin is that of a request already pending (sent by `init --history-url` or
    /// an earlier `history sync`): nothing new was sent, so no second archive is made for it.
    reused: bool,
    /// The inbox's other active installations (the ones that could answer).
    other_installations: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<ImportReport>,
    message: String,
}

#[derive(Serialize)]
struct Processed {
    pin: String,
    #[serde(flatten)]
    report: ImportReport,
}

pub fn run(home: Option<PathBuf>, c: HistoryCmd) -> Result<()> {
    let client = open_client(home)?;
    match c {
        HistoryCmd::Sync {
            elements,
            wait_secs,
            json,
        } => sync(
            &client,
            elements.options(),
            Duration::from_secs(wait_secs),
            json,
        ),
        HistoryCmd::Request { elements, json } => {
            let pin = client.send_sync_request(&elements.options())?;
            show_pin(pin, json)
        }
        HistoryCmd::SendArchive {
            pin,
            elements,
            json,
        } => {
            let pin = client.send_sync_archive(&elements.options(), pin.as_deref())?;
            show_pin(pin, json)
        }
        HistoryCmd::List { days, json } => {
            let pins = by_pin(client.list_available_archives(days)?);
            if json {
                return print_json(&pins);
            }
            if pins.is_empty() {
                println!("no history archives announced in the last {days} days");
            }
            for p in pins {
                println!(
                    "{}  {} repl{}",
                    p.newest.pin,
                    p.replies.len(),
                    if p.replies.len() == 1 { "y" } else { "ies" }
                );
                for a in &p.replies {
                    println!(
                        "    {} conversations, {} messages{}  from {}  {}{}",
                        a.conversation_count,
                        a.message_count,
                        if a.consent { ", consent" } else { "" },
                        &a.sender_installation_id.to_string()[..16],
                        a.state,
                        if a.imported { " (imported here)" } else { "" },
                    );
                }
            }
            Ok(())
        }
        HistoryCmd::Url(c) => url_cmd(&client, c),
        HistoryCmd::Process { pin, json } => {
            // The newest announced one unless a pin is given (chosen before importing, so the
            // pin printed is the one imported).
            let pin = match pin {
                Some(p) => p,
                None => client
                    .list_available_archives(u32::MAX)?
                    .into_iter()
                    .next()
                    .map(|a| a.pin)
                    .ok_or(ferry_sdk::Error::NoSuchArchive("(latest)".into()))?,
            };
            let report = client.process_sync_archive(Some(&pin))?;
            if json {
                print_json(&Processed { pin, report })
            } else {
                println!(
                    "imported archive {pin}: {} messages new, {} already here; {} conversations new",
                    report.messages_imported, report.messages_skipped, report.conversations_added
                );
                Ok(())
            }
        }
    }
}

fn show_pin(pin: String, json: bool) -> Result<()> {
    if json {
        print_json(&Pin { pin })
    } else {
        println!("{pin}");
        Ok(())
    }
}

/// Sends the request (or takes the one still pending for the same thing), then syncs until it
/// is answered or `wait` has passed.
fn sync(client: &Client, options: SyncOptions, wait: Duration, json: bool) -> Result<()> {
    let ferry_sdk::HistoryRequest { pin, reused } = client.request_history(&options)?;
    let others = client
        .inbox_info(client.inbox_id())?
        .installations
        .iter()
        .filter(|i| **i != hex::encode(client.installation_id()))
        .count();
    let until = Instant::now() + wait;
    let import = loop {
        if let Err(e) = client.sync_all() {
            tracing::warn!(error = %e, "sync failed; trying again");
        }
        if let Some(r) = client.sync_import_report(&pin)? {
            break Some(r);
        }
        if Instant::now() >= until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let (status, message) = match &import {
        Some(r) => (
            "imported",
            format!(
                "history imported: {} messages new, {} already here; {} conversations new",
                r.messages_imported, r.messages_skipped, r.conversations_added
            ),
        ),
        None if others == 0 => (
            "waiting",
            format!("request {pin} sent, but this inbox has no other installation to answer it"),
        ),
        None => {
            (
                "waiting",
                format!(
                "request {pin}{} is waiting for an online installation of this inbox to answer \
                 (`ferry run` or `ferry sync` on one of the other {others}); the next \
                 `ferry sync` here imports the answer",
                if reused { " (already pending, not sent again)" } else { "" }
            ),
            )
        }
    };
    if json {
        print_json(&SyncOutcome {
            pin,
            status,
            reused,
            other_installations: others,
            import,
            message,
        })
    } else {
        println!("{message}");
        Ok(())
    }
}

#[derive(Serialize)]
struct HmacKeys {
    /// The revision of the inbox's secret (it grows when an installation is revoked).
    revision: Option<u64>,
    /// By conversation id (hex): the keys of the previous, current and next 30-day period.
    keys: std::collections::BTreeMap<String, Vec<ferry_sdk::HmacKey>>,
}

pub fn hmac_keys(home: Option<PathBuf>, json: bool) -> Result<()> {
    let client = open_client(home)?;
    let keys = client.hmac_keys()?;
    let out = HmacKeys {
        revision: client.hmac_key_revision()?,
        keys,
    };
    if json {
        return print_json(&out);
    }
    for (conversation, keys) in &out.keys {
        for k in keys {
            println!("{conversation}  epoch {}  {}", k.epoch, k.key);
        }
    }
    Ok(())
}
