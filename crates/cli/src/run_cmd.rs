//! `ferry run`: keeps the installation's background work going until SIGINT or SIGTERM.
//!
//! Today that work is the backup scheduler: every `--check-every-secs` it makes the backup the
//! stored policy says is due (and prunes). Messaging streams join it with the messaging issue.
//! The store is opened for each check and closed after it, so other `ferry` commands on the
//! same folder work meanwhile (SQLite's locking; writes wait up to 10 s for each other).

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
    println!(
        "running in {}: backups checked every {} s; Ctrl-C or SIGTERM stops",
        home.display(),
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
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("stopped");
    Ok(())
}
