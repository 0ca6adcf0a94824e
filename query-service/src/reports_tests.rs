//! Unit tests of the report statements: golden SQL of every source, and raw
//! and rollup statements grouping alike.

use super::*;

#[test]
fn ranges_are_hour_aligned_and_routing_waits_a_day() {
    let now = 1_700_000_123_456;
    let (from, to) = report_range("24h", now, 30).unwrap();
    assert_eq!((to % HOUR_MS, to - from), (0, 24 * HOUR_MS));
    assert!(to > now && to - now <= HOUR_MS);
    assert!(report_range("31d", now, 30).is_err());
    assert!(report_range("7w", now, 30).is_err());
    assert!(report_range("😀", now, 30).is_err());
    assert!(!rollup_covers(None, from));
    assert!(!rollup_covers(Some(from), from));
    assert!(rollup_covers(Some(from - 24 * HOUR_MS), from));
}

#[test]
fn golden_report_statements() {
    let range = (
        1_700_000_000_000 / HOUR_MS * HOUR_MS,
        1_700_604_000_000 / HOUR_MS * HOUR_MS,
    );
    let raw = build(
        "app-1",
        ("pages", "day", "UTC"),
        range,
        (10, false),
        Source::Raw,
    )
    .unwrap();
    crate::sql::assert_golden("report_pages_raw", &raw);
    let days = ["2023-11-15".to_owned(), "2023-11-16".to_owned()];
    let over_time = ("pages_over_time", "hour", "UTC");
    let fresh = build_refreshed("app-1", over_time, range, (10, false), &days).unwrap();
    crate::sql::assert_golden("report_pages_over_time_refreshed", &fresh);
    let derived =
        build_refreshed("app-1", ("countries", "day", "UTC"), range, (5, true), &[]).unwrap();
    crate::sql::assert_golden("report_countries_all_derived", &derived);
    assert!(build_refreshed(
        "app-1",
        ("pages_over_time", "hour", "Asia/Kolkata"),
        range,
        (5, true),
        &[]
    )
    .is_err());
}

#[test]
fn raw_and_rollup_statements_group_alike() {
    for report in [
        "pages",
        "pages_over_time",
        "sources",
        "countries",
        "devices",
        "browsers",
    ] {
        let raw = build(
            "a",
            (report, "day", "UTC"),
            (0, HOUR_MS),
            (10, false),
            Source::Raw,
        )
        .unwrap();
        let rollup = build(
            "a",
            (report, "day", "UTC"),
            (0, HOUR_MS),
            (10, false),
            Source::Rollup,
        )
        .unwrap();
        assert_eq!(raw.dimensions, rollup.dimensions);
        assert_eq!(raw.text.matches('?').count(), raw.binds.len());
        assert_eq!(rollup.text.matches('?').count(), rollup.binds.len());
        assert!(rollup.text.contains("FROM rollup_pages_hourly"));
    }
    assert_eq!(
        build(
            "a",
            ("revenue", "day", "UTC"),
            (0, 1),
            (10, false),
            Source::Raw
        )
        .unwrap_err()
        .0,
        "report"
    );
    assert_eq!(
        build(
            "a",
            ("pages_over_time", "week", "UTC"),
            (0, 1),
            (10, false),
            Source::Raw
        )
        .unwrap_err()
        .0,
        "granularity"
    );
    // The rollup's hours are UTC hours: another zone's days come from raw rows.
    let over_time = ("pages_over_time", "day", "Asia/Kolkata");
    assert!(build("a", over_time, (0, 1), (10, false), Source::Rollup).is_err());
    let raw = build("a", over_time, (0, 1), (10, false), Source::Raw).unwrap();
    assert_eq!(raw.binds[0], Bind::Text("Asia/Kolkata".into()));
    assert!(rollup_answers("pages", "Asia/Kolkata"));
}
