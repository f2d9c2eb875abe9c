//! Output helpers: JSON on stdout, one-line errors, progress bars on a terminal.

use std::io::IsTerminal;

use ferry_sdk::archive::{Control, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// The error and its causes on one line.
pub fn one_line(e: &anyhow_like::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s.replace('\n', " ")
}

/// A time (ns since the epoch) as local date-time for text output, e.g. `2026-12-01 21:55:30`
/// (JSON keeps the nanoseconds).
pub fn local_time(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ns.to_string(),
    }
}

/// A second line for errors whose fix is not in the message itself.
pub fn hint(e: &anyhow_like::Error) -> Option<String> {
    match e.downcast_ref::<ferry_sdk::Error>()? {
        ferry_sdk::Error::Inactive => Some(
            "this installation is not an active member of the conversation yet (restored from \
             an archive, or removed); it turns active when a member adds it back: when another \
             member sends, or when an older installation of this inbox runs `ferry sync` or \
             `ferry run`"
                .into(),
        ),
        _ => None,
    }
}

/// A boxed error, so commands can return SDK, I/O and usage errors alike.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
    pub type Result<T> = std::result::Result<T, Error>;
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow_like::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A progress bar on stderr when it is a terminal and the output is not JSON.
pub fn progress(json: bool, what: &'static str) -> (Control, Option<ProgressBar>) {
    if json || !std::io::stderr().is_terminal() {
        return (Control::new(), None);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} elements ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what);
    let b = bar.clone();
    let ctl = Control::new().on_progress(move |p: Progress| {
        b.set_length(p.elements_total.max(p.elements_done));
        b.set_position(p.elements_done);
    });
    (ctl, Some(bar))
}
