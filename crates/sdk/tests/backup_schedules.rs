//! Backup schedules: the daily, weekly and monthly slots of a policy across day, week, month and
//! year boundaries, daylight saving and time zones, computed from an injected clock.

mod backup_common;

use ferry_sdk::backup_manager::{Frequency, Policy, Weekday};

use backup_common::{daily, utc};

#[test]
fn daily_slots_cross_day_boundaries_in_utc_and_other_zones() {
    let p = daily(3, "UTC");
    // Just before 03:00 the last slot is yesterday's; at 03:00 exactly it is today's.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 10, 2, 59)).unwrap(),
        Some(utc(2025, 3, 9, 3, 0))
    );
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 10, 3, 0)).unwrap(),
        Some(utc(2025, 3, 10, 3, 0))
    );
    assert_eq!(
        p.next_slot_after(utc(2025, 3, 10, 3, 0)).unwrap(),
        Some(utc(2025, 3, 11, 3, 0))
    );
    // New Year's Eve to New Year's Day.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 1, 1, 1, 0)).unwrap(),
        Some(utc(2024, 12, 31, 3, 0))
    );

    // Berlin midnight is 23:00 UTC the day before (winter): the local date decides.
    let berlin = daily(0, "Europe/Berlin");
    assert_eq!(
        berlin
            .last_slot_at_or_before(utc(2025, 1, 15, 23, 30))
            .unwrap(),
        Some(utc(2025, 1, 15, 23, 0))
    );
    assert_eq!(
        berlin
            .last_slot_at_or_before(utc(2025, 1, 15, 22, 59))
            .unwrap(),
        Some(utc(2025, 1, 14, 23, 0))
    );
    // A negative offset: 03:00 in Los Angeles (PST, UTC-8) is 11:00 UTC.
    let la = daily(3, "America/Los_Angeles");
    assert_eq!(
        la.last_slot_at_or_before(utc(2025, 1, 15, 10, 0)).unwrap(),
        Some(utc(2025, 1, 14, 11, 0))
    );
    // A half-hour zone: 03:00 in Kolkata (UTC+5:30) is 21:30 UTC the day before.
    let kolkata = daily(3, "Asia/Kolkata");
    assert_eq!(
        kolkata
            .last_slot_at_or_before(utc(2025, 6, 1, 0, 0))
            .unwrap(),
        Some(utc(2025, 5, 31, 21, 30))
    );
}

#[test]
fn daily_slots_follow_the_wall_clock_across_daylight_saving() {
    // Berlin springs forward on 2025-03-30 at 02:00 (to 03:00) and falls back on 2025-10-26 at
    // 03:00 (to 02:00).
    let p = daily(2, "Europe/Berlin");
    // The day before: 02:00 CET = 01:00 UTC.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 29, 12, 0)).unwrap(),
        Some(utc(2025, 3, 29, 1, 0))
    );
    // 02:00 does not exist on the 30th: the slot moves past the gap, 03:00 CEST = 01:00 UTC.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 30, 12, 0)).unwrap(),
        Some(utc(2025, 3, 30, 1, 0))
    );
    // The day after: 02:00 CEST = 00:00 UTC (the UTC time moved by an hour, the local one not).
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 31, 12, 0)).unwrap(),
        Some(utc(2025, 3, 31, 0, 0))
    );
    // 02:00 happens twice on 2025-10-26: the slot is the first (CEST, 00:00 UTC) ...
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 10, 26, 12, 0)).unwrap(),
        Some(utc(2025, 10, 26, 0, 0))
    );
    // ... and so the backup is not due again an hour later at the second 02:00.
    assert_eq!(
        p.next_slot_after(utc(2025, 10, 26, 0, 0)).unwrap(),
        Some(utc(2025, 10, 27, 1, 0))
    );
    // New York too (springs forward 2025-03-09): 09:00 EDT = 13:00 UTC, 09:00 EST = 14:00 UTC.
    let ny = daily(9, "America/New_York");
    assert_eq!(
        ny.next_slot_after(utc(2025, 3, 8, 15, 0)).unwrap(),
        Some(utc(2025, 3, 9, 13, 0))
    );
    assert_eq!(
        ny.last_slot_at_or_before(utc(2025, 3, 8, 15, 0)).unwrap(),
        Some(utc(2025, 3, 8, 14, 0))
    );
}

#[test]
fn weekly_slots_cross_week_and_year_boundaries() {
    let p = Policy {
        frequency: Frequency::Weekly {
            weekday: Weekday::Mon,
            hour: 9,
        },
        ..Policy::default()
    };
    // 2025-03-16 is a Sunday: the last slot is Monday the 10th.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 16, 23, 0)).unwrap(),
        Some(utc(2025, 3, 10, 9, 0))
    );
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 17, 8, 59)).unwrap(),
        Some(utc(2025, 3, 10, 9, 0))
    );
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 3, 17, 9, 0)).unwrap(),
        Some(utc(2025, 3, 17, 9, 0))
    );
    assert_eq!(
        p.next_slot_after(utc(2025, 3, 17, 9, 0)).unwrap(),
        Some(utc(2025, 3, 24, 9, 0))
    );
    // 2025-01-01 is a Wednesday: the last Monday is in 2024.
    assert_eq!(
        p.last_slot_at_or_before(utc(2025, 1, 1, 12, 0)).unwrap(),
        Some(utc(2024, 12, 30, 9, 0))
    );
    // In Auckland (UTC+13 in January) Monday 01:00 is Sunday 12:00 UTC: the zone's weekday
    // counts, not UTC's.
    let nz = Policy {
        frequency: Frequency::Weekly {
            weekday: Weekday::Mon,
            hour: 1,
        },
        time_zone: "Pacific/Auckland".into(),
        ..Policy::default()
    };
    assert_eq!(
        nz.last_slot_at_or_before(utc(2025, 1, 12, 12, 30)).unwrap(),
        Some(utc(2025, 1, 12, 12, 0))
    );
    assert_eq!(
        nz.last_slot_at_or_before(utc(2025, 1, 12, 11, 59)).unwrap(),
        Some(utc(2025, 1, 5, 12, 0))
    );
}

#[test]
fn monthly_slots_cross_month_and_year_boundaries_and_clamp_short_months() {
    let first = Policy {
        frequency: Frequency::Monthly { day: 1, hour: 3 },
        ..Policy::default()
    };
    assert_eq!(
        first.last_slot_at_or_before(utc(2025, 3, 1, 2, 0)).unwrap(),
        Some(utc(2025, 2, 1, 3, 0))
    );
    assert_eq!(
        first.last_slot_at_or_before(utc(2025, 3, 1, 3, 0)).unwrap(),
        Some(utc(2025, 3, 1, 3, 0))
    );
    assert_eq!(
        first.last_slot_at_or_before(utc(2025, 1, 1, 0, 0)).unwrap(),
        Some(utc(2024, 12, 1, 3, 0))
    );
    // Day 31 is the last day of shorter months, leap years included.
    let last = Policy {
        frequency: Frequency::Monthly { day: 31, hour: 3 },
        ..Policy::default()
    };
    assert_eq!(
        last.next_slot_after(utc(2025, 1, 31, 4, 0)).unwrap(),
        Some(utc(2025, 2, 28, 3, 0))
    );
    assert_eq!(
        last.next_slot_after(utc(2024, 2, 1, 0, 0)).unwrap(),
        Some(utc(2024, 2, 29, 3, 0))
    );
    assert_eq!(
        last.last_slot_at_or_before(utc(2025, 5, 15, 0, 0)).unwrap(),
        Some(utc(2025, 4, 30, 3, 0))
    );
    // In Tokyo (UTC+9), the 1st at 03:00 is 18:00 UTC on the last day of the month before.
    let tokyo = Policy {
        frequency: Frequency::Monthly { day: 1, hour: 3 },
        time_zone: "Asia/Tokyo".into(),
        ..Policy::default()
    };
    assert_eq!(
        tokyo
            .last_slot_at_or_before(utc(2025, 2, 28, 18, 0))
            .unwrap(),
        Some(utc(2025, 2, 28, 18, 0))
    );
    assert_eq!(
        Policy {
            frequency: Frequency::Never,
            ..Policy::default()
        }
        .last_slot_at_or_before(utc(2025, 1, 1, 0, 0))
        .unwrap(),
        None
    );
}
