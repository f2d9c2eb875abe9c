//! `ferry run`: keeps the installation's background work going until SIGINT or SIGTERM.
//!
//! When the folder is a registered installation, it stays online: a worker follows the node's
//! streams, joins new conversations, applies messages and runs member checks, and each new
//! message is printed as a line. Every `--check-every-secs` it also makes the backup the
//! stored policy says is due (and prunes). Other `ferry` commands on the same folder work
//! meanwhile: every MLS change runs in an immediate SQLite transaction, so two processes take
//! turns (writes wait up to 10 s for each other) and never interleave inside one change.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::anyhow_like::Result;

pub fn run(home: Option<PathBuf>, check_every: Duration) -> Result<()> {
    let home = crate::cmd::home_dir(home)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    let online = match crate::msg_cmd::open_installation(&home) {
        Ok(client) => {
            let messages = client.stream();
            let worker = client.start_worker();
            Some((client, worker, messages))
        }
        Err(ferry_sdk::Error::NotRegistered(_)) => None,
        Err(e) => return Err(e.into()),
    };
    println!(
        "running in {}: {}backups checked every {} s; Ctrl-C or SIGTERM stops",
        home.display(),
        if online.is_some() { "online, " } else { "" },
        check_every.as_secs()
    );
    std::io::stdout().flush()?;
    while !stop.load(Ordering::SeqCst) {
        match crate::backup_cmd::run_due_now(&home) {
            Ok(Some(line)) => println!("{line}"),
            Ok(None) => {}
            // A failed backup is recorded in the journal (see `backup status`); keep running.
            Err(e) => eprintln!(
                "warning: background backup failed: {}",
                crate::output::one_line(&e)
            ),
        }
        std::io::stdout().flush()?;
        let until = Instant::now() + check_every;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            if let Some((_, _, messages)) = &online {
                while let Ok(event) = messages.try_recv() {
                    if let Some(line) = event_line(event) {
                        println!("{line}");
                    }
                }
                std::io::stdout().flush()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some((_, worker, _)) = online {
        worker.stop();
    }
    println!("stopped");
    Ok(())
}

/// The line `ferry run` prints for what happened in the background (none for the rest).
fn event_line(event: ferry_sdk::Event) -> Option<String> {
    use ferry_sdk::{DeviceSyncEvent, Event};
    Some(match event {
        Event::Message(m) => format!(
            "message {} in {} from {}: {}",
            hex::encode(&m.id),
            hex::encode(&m.conversation_id),
            m.sender_inbox_id,
            m.text().unwrap_or_default().replace('\n', " ")
        ),
        Event::DeviceSync(DeviceSyncEvent::RequestAnswered {
            pin,
            requester_installation_id,
            conversations,
            messages,
        }) => format!(
            "history request {pin} from installation {} answered: an archive of {messages} \
             messages in {conversations} conversations",
            &requester_installation_id.to_string()[..16]
        ),
        Event::DeviceSync(DeviceSyncEvent::HistoryImported { pin, report }) => format!(
            "history {pin} imported: {} messages new, {} already here; {} conversations new",
            report.messages_imported, report.messages_skipped, report.conversations_added
        ),
        Event::DeviceSync(DeviceSyncEvent::InstallationsAdded {
            installations,
            conversations,
        }) => format!(
            "new installation{} of this inbox ({}) added to {conversations} conversations",
            if installations.len() == 1 { "" } else { "s" },
            installations
                .iter()
                .map(|i| i.to_string()[..16].to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::MessagesExpired {
            conversation_id,
            message_ids,
        } => format!(
            "{} message{} in {} disappeared (disappearing messages)",
            message_ids.len(),
            if message_ids.len() == 1 { "" } else { "s" },
            hex::encode(&conversation_id)
        ),
        _ => return None,
    })
}
