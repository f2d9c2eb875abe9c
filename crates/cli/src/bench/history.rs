//! `ferry bench history`: history sync on loopback, end to end (real node, real history server,
//! real clients): from a new installation's request to its history imported.
//!
//! The old installation's store is filled with synthetic conversations and messages (as
//! `ferry dev seed` does) rather than sent one by one through MLS: this measures history sync
//! (archive, upload, reply over the sync group, download, import), not sending.

use std::time::{Duration, Instant};

use ferry_sdk::blocking::Client;
use ferry_sdk::{AccountKey, ClientOptions};
use serde::Serialize;

use crate::output::anyhow_like::Result;
use crate::output::print_json;

#[derive(Serialize)]
struct HistoryBench {
    messages: u64,
    conversations: u64,
    /// Seconds from the new installation's request (sent when it is created) to its history
    /// imported: the old installation joins the new sync group, builds the archive, uploads it
    /// and replies; the new one downloads, verifies and imports it.
    request_to_imported_seconds: f64,
    /// Of which: the old installation's sync that answers (archive, upload, reply).
    answer_seconds: f64,
    /// Of which: the new installation's sync that imports (download, verify, import).
    import_seconds: f64,
    /// The archive uploaded to the history server.
    bytes_uploaded: u64,
    messages_imported: u64,
    release_build: bool,
}

pub fn run(messages: u64, conversations: u64, json: bool) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-history-")
        .tempdir()?;
    let node = ferry_node::RunningNode::start(ferry_node::NodeConfig {
        listen: "127.0.0.1:0".into(),
        db: ferry_node::Database::Sqlite(dir.path().join("node.db")),
        ..Default::default()
    })?;
    let history =
        ferry_history_server::RunningHistoryServer::start(ferry_history_server::HistoryConfig {
            dir: dir.path().join("payloads"),
            ..Default::default()
        })?;
    let opts = |name: &str, account: AccountKey| {
        let mut o = ClientOptions::new(dir.path().join(name), node.url(), account);
        o.history_sync_url = history.url();
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        o
    };
    let reg = Client::create(opts("old", AccountKey::New))?;
    let old = reg.client;
    let key = reg.account_key.expect("a new inbox has a key");
    // History only, with no MLS group behind it: not something to add the new installation
    // to (`bench node` measures that).
    ferry_sdk::dev::seed_history(
        &old,
        &ferry_sdk::dev::SeedOptions {
            conversations,
            messages,
            consent: conversations.min(100),
            self_inbox_id: old.inbox_id().to_string(),
            ..Default::default()
        },
    )?;
    old.sync_all()?;

    // The request goes out as the new installation is created.
    let new = Client::create(opts("new", AccountKey::Existing(key)))?.client;
    let pin = new
        .pending_sync_requests()?
        .into_iter()
        .next()
        .ok_or("the new installation sent no request")?;
    let t = Instant::now();
    old.sync_all()?;
    let answer_seconds = t.elapsed().as_secs_f64();
    let t_import = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    let report = loop {
        new.sync_all()?;
        if let Some(r) = new.sync_import_report(&pin)? {
            break r;
        }
        if Instant::now() > deadline {
            return Err("the history did not arrive within 10 minutes".into());
        }
    };
    let import_seconds = t_import.elapsed().as_secs_f64();
    let total = t.elapsed().as_secs_f64();
    let bytes_uploaded = new
        .list_available_archives(1)?
        .into_iter()
        .find(|a| a.pin == pin)
        .map_or(0, |a| a.size_bytes);
    let out = HistoryBench {
        messages,
        conversations,
        request_to_imported_seconds: total,
        answer_seconds,
        import_seconds,
        bytes_uploaded,
        messages_imported: report.messages_imported,
        release_build: !cfg!(debug_assertions),
    };
    drop((old, new));
    history.stop();
    node.stop();
    if json {
        print_json(&out)
    } else {
        println!(
            "history sync of {} messages in {} conversations: request to imported {:.2} s \
             (answer {:.2} s, import {:.2} s), {} bytes uploaded, {} messages imported{}",
            out.messages,
            out.conversations,
            out.request_to_imported_seconds,
            out.answer_seconds,
            out.import_seconds,
            out.bytes_uploaded,
            out.messages_imported,
            if out.release_build {
                ""
            } else {
                " (debug build: use --release)"
            }
        );
        Ok(())
    }
}
