//! `ferry backup ...`: the backup policy, scheduled runs, the list of backups and their status.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ferry_sdk::archive::ArchiveElement;
use ferry_sdk::backup_manager::{
    self, DestinationSpec, Frequency, KeySource, ListedBackup, Policy, Weekday,
};
use ferry_sdk::ArchiveKey;

use crate::archive_cmd::KeyArgs;
use crate::cmd::{home_dir, home_path, open_store};
use crate::output::anyhow_like::Result;
use crate::output::{local_time, print_json};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Set or show the backup policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Make a backup if one is due (or now, with --now), then prune old ones.
    Run {
        /// Make a backup even if none is due.
        #[arg(long)]
        now: bool,
        /// The clock, in ns since the epoch (for tests; default: the system clock).
        #[arg(long, hide = true)]
        clock_ns: Option<i64>,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        dest: DestArgs,
        #[arg(long)]
        json: bool,
    },
    /// List the backups in the destination, reading and verifying each. Without a key (none
    /// given, none in the policy, or --locked) each is listed `locked`: name, size, time, format
    /// version and the kind of secret it needs, read from its header.
    List {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        dest: DestArgs,
        /// Do not use the policy's key file: list without reading past the headers.
        #[arg(long, conflicts_with_all = ["key_file", "passphrase_file"])]
        locked: bool,
        #[arg(long)]
        json: bool,
    },
    /// When the last backup was made, when the next is due, whether one is overdue.
    Status {
        /// The clock, in ns since the epoch (for tests; default: the system clock).
        #[arg(long, hide = true)]
        clock_ns: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Set the policy (replacing any earlier one). The key file's path is stored, never the key.
    Set {
        /// never, daily, weekly or monthly.
        #[arg(long)]
        frequency: String,
        /// Hour of the day (0-23, in --time-zone) for scheduled backups. Default 3.
        #[arg(long)]
        hour: Option<u8>,
        /// Day of the week for weekly backups: mon..sun. Default sun.
        #[arg(long)]
        weekday: Option<String>,
        /// Day of the month for monthly backups (1-31; past the month's end means its last
        /// day). Default 1.
        #[arg(long)]
        day: Option<u8>,
        /// Also back up after this many new messages.
        #[arg(long)]
        every_messages: Option<u64>,
        /// Verified backups to keep. Default 5.
        #[arg(long, default_value_t = backup_manager::DEFAULT_RETENTION)]
        retention: u32,
        /// Label of each archive; {date} and {time} become the backup's local date and time.
        #[arg(long, default_value = backup_manager::DEFAULT_LABEL)]
        label: String,
        /// What to include: messages, consent, attachments (the files of remote attachments,
        /// with messages), comma-separated. Default messages,consent.
        #[arg(long, value_delimiter = ',')]
        elements: Option<Vec<String>>,
        /// Leave out messages that will disappear (disappearing messages).
        #[arg(long)]
        exclude_disappearing_messages: bool,
        /// IANA time zone of --hour, --weekday and --day (e.g. Europe/Berlin). Default UTC.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[command(flatten)]
        dest: DestArgs,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show the policy.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct DestArgs {
    /// A local folder for the backups (default for a new policy: HOME/backups).
    #[arg(long, conflicts_with = "s3")]
    pub destination: Option<PathBuf>,
    /// S3-compatible storage, s3://bucket/prefix (credentials and endpoint from AWS_*
    /// environment variables).
    #[arg(long)]
    pub s3: Option<String>,
}

impl DestArgs {
    fn spec(&self) -> Result<Option<DestinationSpec>> {
        if let Some(d) = &self.destination {
            return Ok(Some(DestinationSpec::Folder { path: absolute(d)? }));
        }
        Ok(self
            .s3
            .as_ref()
            .map(|url| DestinationSpec::S3 { url: url.clone() }))
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

fn key_source(k: &KeyArgs) -> Result<Option<KeySource>> {
    if let Some(p) = &k.key_file {
        return Ok(Some(KeySource::KeyFile { path: absolute(p)? }));
    }
    if let Some(p) = &k.passphrase_file {
        return Ok(Some(KeySource::PassphraseFile { path: absolute(p)? }));
    }
    Ok(None)
}

/// The key: from the flags if given, else from the file the policy names.
fn resolve_key(k: &KeyArgs, policy: Option<&Policy>) -> Result<ArchiveKey> {
    if k.key_file.is_some() || k.passphrase_file.is_some() {
        return k.key();
    }
    match policy.and_then(|p| p.key_source.as_ref()) {
        Some(src) => Ok(src.load()?),
        None => Err(
            "no key: give --key-file or --passphrase-file (or set them in the backup policy)"
                .into(),
        ),
    }
}

/// The destination: from the flags if given, else the policy's, else HOME/backups.
fn resolve_destination(
    home: &Path,
    d: &DestArgs,
    policy: Option<&Policy>,
) -> Result<Box<dyn backup_manager::Destination>> {
    let spec = match d.spec()? {
        Some(s) => s,
        None => match policy.and_then(|p| p.destination.clone()) {
            Some(s) => s,
            None => DestinationSpec::Folder {
                path: home.join("backups"),
            },
        },
    };
    Ok(spec.open()?)
}

fn now_or(clock: Option<i64>) -> i64 {
    clock.unwrap_or_else(ferry_sdk::now_ns)
}

pub fn run(home: Option<PathBuf>, c: BackupCmd) -> Result<()> {
    if let BackupCmd::List {
        key,
        dest,
        locked,
        json,
    } = c
    {
        return list(home, &key, &dest, locked, json);
    }
    let home = home_dir(home)?;
    let store = open_store(Some(home.clone()))?;
    match c {
        BackupCmd::Policy(PolicyCmd::Set {
            frequency,
            hour,
            weekday,
            day,
            every_messages,
            retention,
            label,
            elements,
            exclude_disappearing_messages,
            time_zone,
            dest,
            key,
            json,
        }) => {
            let frequency = parse_frequency(&frequency, hour, weekday.as_deref(), day)?;
            let key_source = key_source(&key)?
                .ok_or("give --key-file or --passphrase-file: scheduled backups need the key")?;
            // Read it once now, so a typo is caught here rather than at 3 am.
            key_source.load()?;
            let mut policy = Policy {
                frequency,
                activity_every: every_messages,
                retention,
                label,
                time_zone,
                destination: Some(dest.spec()?.unwrap_or(DestinationSpec::Folder {
                    path: absolute(&home)?.join("backups"),
                })),
                key_source: Some(key_source),
                exclude_disappearing_messages,
                ..Policy::default()
            };
            if let Some(list) = elements {
                policy.elements = parse_elements(&list)?;
            }
            backup_manager::set_policy(&store, &policy, ferry_sdk::now_ns())?;
            show_policy(&policy, json)?;
        }
        BackupCmd::Policy(PolicyCmd::Show { json }) => {
            let policy = backup_manager::policy(&store)?.ok_or(
                "no backup policy is set (ferry backup policy set --frequency daily --key-file K)",
            )?;
            show_policy(&policy, json)?;
        }
        BackupCmd::Run {
            now,
            clock_ns,
            key,
            dest,
            json,
        } => {
            let policy = backup_manager::policy(&store)?;
            if policy.is_none() && !now {
                return Err(
                    "no backup policy is set: set one with `ferry backup policy set`, or use --now"
                        .into(),
                );
            }
            let key = resolve_key(&key, policy.as_ref())?;
            let destination = resolve_destination(&home, &dest, policy.as_ref())?;
            let clock = now_or(clock_ns);
            hold_attachment_files(&home, policy.as_ref())?;
            let report = if now {
                backup_manager::run_backup_now(&store, clock, &key, &destination)?
            } else {
                backup_manager::run_due_backups(&store, clock, &key, &destination)?
            };
            if json {
                print_json(&report)?;
            } else {
                match &report.made {
                    None => println!("no backup due"),
                    Some(m) => println!(
                        "made {} ({} bytes, {} messages) in {}",
                        m.name, m.size_bytes, m.message_count, m.destination
                    ),
                }
                if let Some(p) = &report.prune {
                    println!("kept {}, deleted {}", p.kept.len(), p.deleted.len());
                    for n in &p.deleted {
                        println!("  deleted {n}");
                    }
                    for n in &p.not_verified {
                        println!("  does not verify: {} ({})", n.name, n.error);
                    }
                }
                if let Some(e) = &report.prune_error {
                    println!("pruning failed: {e}");
                }
            }
        }
        BackupCmd::List { .. } => unreachable!("handled above"),
        BackupCmd::Status { clock_ns, json } => {
            let status = backup_manager::backup_status(&store, now_or(clock_ns))?;
            if json {
                print_json(&status)?;
            } else {
                let t = |v: Option<i64>| v.map_or("never".to_string(), local_time);
                println!("last backup:      {}", t(status.last_backup_ns));
                if let Some(n) = &status.last_backup_name {
                    println!("last backup name: {n}");
                }
                println!(
                    "next due:         {}",
                    status.next_due_ns.map_or("-".to_string(), local_time)
                );
                println!(
                    "due now:          {}",
                    status
                        .due_reason
                        .map_or("no".to_string(), |r| format!("yes ({r:?})").to_lowercase())
                );
                println!(
                    "overdue:          {}",
                    if status.overdue { "yes" } else { "no" }
                );
                println!("new messages:     {}", status.new_messages);
                if let Some(e) = &status.last_error {
                    println!("last error:       {e}");
                }
            }
        }
    }
    Ok(())
}

/// `backup list`: only reads. A folder without a store (a new device) has no policy: its
/// destination is the default, HOME/backups, and nothing is created.
fn list(
    home: Option<PathBuf>,
    key: &KeyArgs,
    dest: &DestArgs,
    locked: bool,
    json: bool,
) -> Result<()> {
    let home = home_path(home)?;
    let db = home.join("ferry.db");
    let policy = if db.exists() {
        backup_manager::policy(&ferry_sdk::store::Store::open(&db)?)?
    } else {
        None
    };
    let destination = resolve_destination(&home, dest, policy.as_ref())?;
    let has_key = key.key_file.is_some()
        || key.passphrase_file.is_some()
        || policy.as_ref().is_some_and(|p| p.key_source.is_some());
    let list = if locked || !has_key {
        backup_manager::list_locked_backups(&destination)?
    } else {
        let key = resolve_key(key, policy.as_ref())?;
        backup_manager::list_backups(&destination, &key)?
    };
    if json {
        print_json(&list)?;
    } else {
        print_list(&destination.describe(), &list);
    }
    Ok(())
}

fn parse_frequency(
    s: &str,
    hour: Option<u8>,
    weekday: Option<&str>,
    day: Option<u8>,
) -> Result<Frequency> {
    let kind = s.trim().to_ascii_lowercase();
    if weekday.is_some() && kind != "weekly" {
        return Err("--weekday applies to --frequency weekly only".into());
    }
    if day.is_some() && kind != "monthly" {
        return Err("--day applies to --frequency monthly only".into());
    }
    if hour.is_some() && kind == "never" {
        return Err("--hour does not apply to --frequency never".into());
    }
    let hour = hour.unwrap_or(backup_manager::DEFAULT_HOUR);
    Ok(match kind.as_str() {
        "never" => Frequency::Never,
        "daily" => Frequency::Daily { hour },
        "weekly" => Frequency::Weekly {
            weekday: match weekday {
                Some(w) => Weekday::parse(w)
                    .ok_or_else(|| format!("unknown weekday {w:?} (use mon..sun)"))?,
                None => Weekday::Sun,
            },
            hour,
        },
        "monthly" => Frequency::Monthly {
            day: day.unwrap_or(1),
            hour,
        },
        other => {
            return Err(
                format!("unknown frequency {other:?} (use never, daily, weekly, monthly)").into(),
            )
        }
    })
}

fn parse_elements(list: &[String]) -> Result<Vec<ArchiveElement>> {
    Ok(list
        .iter()
        .map(|s| {
            ArchiveElement::parse(s).ok_or_else(|| {
                format!("unknown element {s:?} (use messages, consent, attachments)")
            })
        })
        .collect::<std::result::Result<_, _>>()?)
}

fn show_policy(p: &Policy, json: bool) -> Result<()> {
    if json {
        return print_json(p);
    }
    let when = match p.frequency {
        Frequency::Never => "no schedule".to_string(),
        Frequency::Daily { hour } => format!("daily at {hour:02}:00"),
        Frequency::Weekly { weekday, hour } => {
            format!("weekly on {weekday:?} at {hour:02}:00").to_lowercase()
        }
        Frequency::Monthly { day, hour } => format!("monthly on day {day} at {hour:02}:00"),
    };
    println!("schedule:    {when} ({})", p.time_zone);
    if let Some(n) = p.activity_every {
        println!("activity:    every {n} new messages");
    }
    println!("retention:   {} verified backups", p.retention);
    println!("label:       {}", p.label);
    match &p.destination {
        Some(DestinationSpec::Folder { path }) => println!("destination: {}", path.display()),
        Some(DestinationSpec::S3 { url }) => println!("destination: {url}"),
        None => println!("destination: (none)"),
    }
    match &p.key_source {
        Some(KeySource::KeyFile { path }) => println!("key file:    {}", path.display()),
        Some(KeySource::PassphraseFile { path }) => {
            println!("passphrase:  from {}", path.display())
        }
        None => {}
    }
    Ok(())
}

fn print_list(describe: &str, list: &[ListedBackup]) {
    println!("{} backups in {describe}", list.len());
    for b in list {
        let state = if b.locked {
            match (&b.error, b.key_kind) {
                (Some(e), _) => format!("DAMAGED  {e}"),
                (None, kind) => format!(
                    "locked ({}, format {})",
                    kind.unwrap_or("?"),
                    b.format_version.as_deref().unwrap_or("?")
                ),
            }
        } else if b.verified {
            format!("verified  {}", b.label)
        } else {
            format!("NOT VERIFIED  {}", b.error.clone().unwrap_or_default())
        };
        let when = b
            .created_at_ns
            .or(b.modified_ns)
            .map_or("-".to_string(), local_time);
        println!("{} {:>12} bytes  {when}  {state}", b.name, b.size_bytes);
    }
    if list.iter().any(|b| b.locked) {
        println!("locked: give --key-file or --passphrase-file to read and verify them");
    }
}

/// One check of the background scheduler (`ferry run`): makes the backup the stored policy says
/// is due, if any, and says what it did. Nothing happens without a policy.
/// When backups carry attachment files (element `attachments`) and this folder is a
/// registered installation, fetches the files of attachments it does not hold yet, so the
/// backup can carry them (a file that cannot be had is left out and logged).
fn hold_attachment_files(home: &Path, policy: Option<&Policy>) -> Result<()> {
    let Some(policy) = policy else {
        return Ok(());
    };
    if !policy.elements.contains(&ArchiveElement::Attachments) {
        return Ok(());
    }
    if let Some(client) = crate::cmd::registered_client(&Some(home.to_path_buf()))? {
        client.hold_attachment_files(&ferry_sdk::archive::ArchiveOptions {
            elements: policy.elements.clone(),
            exclude_disappearing_messages: policy.exclude_disappearing_messages,
            ..Default::default()
        })?;
    }
    Ok(())
}

pub fn run_due_now(home: &Path) -> Result<Option<String>> {
    let store = ferry_sdk::store::Store::open(home.join("ferry.db"))?;
    let Some(policy) = backup_manager::policy(&store)? else {
        return Ok(None);
    };
    let none = KeyArgs {
        key_file: None,
        passphrase_file: None,
    };
    let key = resolve_key(&none, Some(&policy))?;
    let destination = resolve_destination(
        home,
        &DestArgs {
            destination: None,
            s3: None,
        },
        Some(&policy),
    )?;
    hold_attachment_files(home, Some(&policy))?;
    let report =
        backup_manager::run_due_backups(&store, ferry_sdk::now_ns(), &key, destination.as_ref())?;
    Ok(report.made.map(|m| {
        let deleted = report.prune.as_ref().map_or(0, |p| p.deleted.len());
        format!(
            "made {} ({} bytes, {} messages) in {}; pruned {}",
            m.name, m.size_bytes, m.message_count, m.destination, deleted
        )
    }))
}
