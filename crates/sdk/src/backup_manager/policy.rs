//! The backup policy and its schedule arithmetic.
//!
//! Every time here is nanoseconds since the Unix epoch (UTC); a policy's hours, weekdays and days
//! of the month are wall-clock values in its IANA time zone, resolved with jiff's bundled time
//! zone database (so they work offline and the same everywhere). Across daylight-saving changes
//! a slot follows the wall clock: a daily 03:00 backup stays at 03:00 local time; an hour that
//! does not exist that day (spring forward) moves to the first instant after the gap, and an
//! hour that happens twice (fall back) is the first of the two.

use std::path::PathBuf;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::archive::ArchiveElement;

use super::{Error, Result};

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// "mon".."sun", or the full English name, any case.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let short = s.get(..3)?;
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        if s.len() > 3 && !full.contains(&s.as_str()) {
            return None;
        }
        Some(match short {
            "mon" => Weekday::Mon,
            "tue" => Weekday::Tue,
            "wed" => Weekday::Wed,
            "thu" => Weekday::Thu,
            "fri" => Weekday::Fri,
            "sat" => Weekday::Sat,
            "sun" => Weekday::Sun,
            _ => return None,
        })
    }

    fn to_jiff(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday as W;
        match self {
            Weekday::Mon => W::Monday,
            Weekday::Tue => W::Tuesday,
            Weekday::Wed => W::Wednesday,
            Weekday::Thu => W::Thursday,
            Weekday::Fri => W::Friday,
            Weekday::Sat => W::Saturday,
            Weekday::Sun => W::Sunday,
        }
    }
}

/// How often a scheduled backup is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "every", rename_all = "lowercase")]
pub enum Frequency {
    /// No scheduled backups (only the activity trigger, if any, and manual ones).
    Never,
    /// Every day at `hour`:00.
    Daily {
        /// 0 to 23, wall-clock time in the policy's time zone.
        hour: u8,
    },
    /// Every week on `weekday` at `hour`:00.
    Weekly {
        /// The day of the week.
        weekday: Weekday,
        /// 0 to 23, wall-clock time in the policy's time zone.
        hour: u8,
    },
    /// Every month on `day` at `hour`:00; a day past the month's end means its last day
    /// (day 31 is the 30th in April and the 28th or 29th in February).
    Monthly {
        /// 1 to 31.
        day: u8,
        /// 0 to 23, wall-clock time in the policy's time zone.
        hour: u8,
    },
}

/// Where the `ferry` command finds the key for scheduled backups. Only the file's path is
/// stored, never the key. Apps keep the key in the platform keychain and pass it in instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeySource {
    /// A file with the 32-byte key (32 raw bytes or 64 hex digits).
    KeyFile {
        /// The file.
        path: PathBuf,
    },
    /// A file whose first line is the passphrase.
    PassphraseFile {
        /// The file.
        path: PathBuf,
    },
}

impl KeySource {
    /// Reads the key from its file.
    pub fn load(&self) -> Result<crate::ArchiveKey> {
        match self {
            KeySource::KeyFile { path } => {
                let bytes = zeroize_vec(std::fs::read(path).map_err(|e| Error::KeyFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?);
                crate::ArchiveKey::from_key_file(&bytes).map_err(|e| Error::KeyFile {
                    path: path.clone(),
                    message: e.to_string(),
                })
            }
            KeySource::PassphraseFile { path } => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Error::KeyFile {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?);
                let line = text.lines().next().unwrap_or("");
                if line.is_empty() {
                    return Err(Error::KeyFile {
                        path: path.clone(),
                        message: "the passphrase file is empty".into(),
                    });
                }
                Ok(crate::ArchiveKey::passphrase(line))
            }
        }
    }
}

fn zeroize_vec(v: Vec<u8>) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(v)
}

/// Where backups go, as stored in a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationSpec {
    /// A local folder (created when missing).
    Folder {
        /// The folder.
        path: PathBuf,
    },
    /// S3-compatible object storage: `s3://bucket/optional/prefix`; credentials, region and
    /// endpoint come from the standard `AWS_*` environment variables.
    S3 {
        /// `s3://bucket/optional/prefix`.
        url: String,
    },
}

impl DestinationSpec {
    /// Opens the destination.
    pub fn open(&self) -> Result<Box<dyn super::Destination>> {
        match self {
            DestinationSpec::Folder { path } => Ok(Box::new(super::LocalFolder::new(path.clone()))),
            #[cfg(feature = "s3")]
            DestinationSpec::S3 { url } => Ok(Box::new(super::ObjectStoreDestination::s3(url)?)),
            #[cfg(not(feature = "s3"))]
            DestinationSpec::S3 { .. } => Err(Error::InvalidPolicy(
                "this build has no S3 support (feature \"s3\")".into(),
            )),
        }
    }
}

/// The default label template: the date is the backup's local date in the policy's zone.
pub const DEFAULT_LABEL: &str = "Ferry backup {date}";
/// Backups kept unless a policy says otherwise.
pub const DEFAULT_RETENTION: u32 = 5;
/// The quiet hour scheduled backups use unless told otherwise.
pub const DEFAULT_HOUR: u8 = 3;

/// What to back up, when, where, and how many to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// When scheduled backups are made.
    pub frequency: Frequency,
    /// Also back up once this many new messages (sent after the last backup) have arrived.
    pub activity_every: Option<u64>,
    /// Keep the newest this many backups that verify (at least 1).
    pub retention: u32,
    /// The label each archive carries in its metadata. `{date}` becomes the local date
    /// (YYYY-MM-DD) and `{time}` the local time (HH:MM) of the backup.
    pub label: String,
    /// What each backup carries (messages, consent or both).
    #[serde(with = "elements_serde")]
    pub elements: Vec<ArchiveElement>,
    /// Leave out messages that will disappear (see
    /// [`ArchiveOptions::exclude_disappearing_messages`](crate::archive::ArchiveOptions)).
    #[serde(default)]
    pub exclude_disappearing_messages: bool,
    /// IANA time zone name ("Europe/Berlin"); hours and days are wall-clock times there.
    pub time_zone: String,
    /// Where backups go; `None` when the app passes its own [`super::Destination`].
    pub destination: Option<DestinationSpec>,
    /// Where the `ferry` command reads the key; `None` when the app passes the key.
    pub key_source: Option<KeySource>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            frequency: Frequency::Daily { hour: DEFAULT_HOUR },
            activity_every: None,
            retention: DEFAULT_RETENTION,
            label: DEFAULT_LABEL.to_string(),
            elements: vec![ArchiveElement::Messages, ArchiveElement::Consent],
            exclude_disappearing_messages: false,
            time_zone: "UTC".to_string(),
            destination: None,
            key_source: None,
        }
    }
}

mod elements_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::archive::ArchiveElement;

    pub fn serialize<S: Serializer>(v: &[ArchiveElement], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ArchiveElement>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                ArchiveElement::parse(n)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown element {n:?}")))
            })
            .collect()
    }
}

impl Policy {
    /// Checks the fields: hours 0..=23, days 1..=31, a known time zone, retention ≥ 1, at
    /// least one element, an activity threshold ≥ 1.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidPolicy(m));
        let hour = match self.frequency {
            Frequency::Never => None,
            Frequency::Daily { hour } | Frequency::Weekly { hour, .. } => Some(hour),
            Frequency::Monthly { day, hour } => {
                if !(1..=31).contains(&day) {
                    return bad(format!("day of the month must be 1..31, got {day}"));
                }
                Some(hour)
            }
        };
        if let Some(h) = hour {
            if h > 23 {
                return bad(format!("hour must be 0..23, got {h}"));
            }
        }
        if self.retention == 0 {
            return bad("retention must keep at least 1 backup".into());
        }
        if self.elements.is_empty() {
            return bad("no elements selected (choose messages, consent or both)".into());
        }
        if self.activity_every == Some(0) {
            return bad("the activity trigger needs at least 1 message".into());
        }
        self.zone()?;
        Ok(())
    }

    /// The policy's time zone.
    pub fn zone(&self) -> Result<TimeZone> {
        jiff::tz::db()
            .get(&self.time_zone)
            .map_err(|_| Error::InvalidPolicy(format!("unknown time zone {:?}", self.time_zone)))
    }

    /// The label for a backup made at `at_ns`.
    pub fn label_at(&self, at_ns: i64) -> String {
        let Ok(zone) = self.zone() else {
            return self.label.clone();
        };
        let Ok(ts) = Timestamp::from_nanosecond(at_ns as i128) else {
            return self.label.clone();
        };
        let local = ts.to_zoned(zone);
        self.label
            .replace("{date}", &local.strftime("%Y-%m-%d").to_string())
            .replace("{time}", &local.strftime("%H:%M").to_string())
    }

    /// The most recent scheduled time at or before `now_ns`; `None` for [`Frequency::Never`].
    pub fn last_slot_at_or_before(&self, now_ns: i64) -> Result<Option<i64>> {
        let zone = self.zone()?;
        let now = ts(now_ns)?;
        let today = now.to_zoned(zone.clone()).date();
        // Walk back from today's candidate: a day (daily), up to a week (weekly), up to two
        // months (monthly) always reaches a slot at or before now.
        for candidate in self.candidates_back(today)? {
            let at = slot(&zone, candidate, self.hour())?;
            if at <= now {
                return Ok(Some(ns(at)));
            }
        }
        Ok(None)
    }

    /// The first scheduled time strictly after `after_ns`; `None` for [`Frequency::Never`].
    pub fn next_slot_after(&self, after_ns: i64) -> Result<Option<i64>> {
        let zone = self.zone()?;
        let after = ts(after_ns)?;
        let day = after.to_zoned(zone.clone()).date();
        for candidate in self.candidates_forward(day)? {
            let at = slot(&zone, candidate, self.hour())?;
            if at > after {
                return Ok(Some(ns(at)));
            }
        }
        Ok(None)
    }

    fn hour(&self) -> u8 {
        match self.frequency {
            Frequency::Never => 0,
            Frequency::Daily { hour }
            | Frequency::Weekly { hour, .. }
            | Frequency::Monthly { hour, .. } => hour,
        }
    }

    /// Scheduled dates from the one on or before `from`, going back.
    fn candidates_back(&self, from: Date) -> Result<Vec<Date>> {
        Ok(match self.frequency {
            Frequency::Never => Vec::new(),
            Frequency::Daily { .. } => (0..3).map(|k| add_days(from, -k)).collect::<Result<_>>()?,
            Frequency::Weekly { weekday, .. } => {
                let mut d = from;
                while d.weekday() != weekday.to_jiff() {
                    d = add_days(d, -1)?;
                }
                vec![d, add_days(d, -7)?, add_days(d, -14)?]
            }
            Frequency::Monthly { day, .. } => (0..3)
                .map(|k| month_day(from, -k, day))
                .collect::<Result<_>>()?,
        })
    }

    /// Scheduled dates from the one on or after `from`, going forward.
    fn candidates_forward(&self, from: Date) -> Result<Vec<Date>> {
        Ok(match self.frequency {
            Frequency::Never => Vec::new(),
            Frequency::Daily { .. } => (0..3).map(|k| add_days(from, k)).collect::<Result<_>>()?,
            Frequency::Weekly { weekday, .. } => {
                let mut d = from;
                while d.weekday() != weekday.to_jiff() {
                    d = add_days(d, 1)?;
                }
                vec![d, add_days(d, 7)?, add_days(d, 14)?]
            }
            Frequency::Monthly { day, .. } => (0..3)
                .map(|k| month_day(from, k, day))
                .collect::<Result<_>>()?,
        })
    }
}

fn ts(ns_since_epoch: i64) -> Result<Timestamp> {
    Timestamp::from_nanosecond(ns_since_epoch as i128)
        .map_err(|e| Error::InvalidPolicy(format!("time out of range: {e}")))
}

fn ns(t: Timestamp) -> i64 {
    t.as_nanosecond() as i64
}

fn time_err(e: jiff::Error) -> Error {
    Error::InvalidPolicy(format!("date out of range: {e}"))
}

fn add_days(d: Date, days: i64) -> Result<Date> {
    d.checked_add(days.days()).map_err(time_err)
}

/// Day `day` (clamped to the month's length) of the month `months` away from `from`'s.
fn month_day(from: Date, months: i64, day: u8) -> Result<Date> {
    let first = from
        .first_of_month()
        .checked_add(months.months())
        .map_err(time_err)?;
    let day = (day as i8).min(first.days_in_month());
    Date::new(first.year(), first.month(), day).map_err(time_err)
}

/// `hour`:00 on `date` in `zone`: a skipped hour moves past the gap, a repeated one is the first.
fn slot(zone: &TimeZone, date: Date, hour: u8) -> Result<Timestamp> {
    let dt: DateTime = date.at(hour as i8, 0, 0, 0);
    let z = zone.to_ambiguous_zoned(dt).compatible().map_err(time_err)?;
    Ok(z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_parse() {
        assert_eq!(Weekday::parse("mon"), Some(Weekday::Mon));
        assert_eq!(Weekday::parse("Sunday"), Some(Weekday::Sun));
        assert_eq!(Weekday::parse("sundae"), None);
        assert_eq!(Weekday::parse("x"), None);
    }

    #[test]
    fn month_day_clamps_to_the_months_end() {
        let d = Date::new(2025, 1, 31).unwrap();
        assert_eq!(
            month_day(d, 1, 31).unwrap(),
            Date::new(2025, 2, 28).unwrap()
        );
        assert_eq!(
            month_day(d, 3, 31).unwrap(),
            Date::new(2025, 4, 30).unwrap()
        );
        assert_eq!(
            month_day(d, -1, 15).unwrap(),
            Date::new(2024, 12, 15).unwrap()
        );
    }
}
