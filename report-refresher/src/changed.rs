//! The rows a change of persons touches, recomputed row by row instead of by
//! whole days: seed 003's "the payment changed, the bill did not" at the
//! grain of the reports.
//!
//! * **Ids moved to another person** (a link, a merge of two persons): a key
//!   of `report_pages_hourly` changes only if one of them has a page view in
//!   it — found in `id_keys` — and only its uniques change: they are
//!   recomputed from every id of the key (`key_ids`) and its person now, the
//!   page views kept ([`pages_keys`]). A row of `person_day_activity` named by
//!   a moved person (a person is named by one of its ids, so the old person
//!   of a moved id is a moved id) is folded into the row of its new person on
//!   the same day and zeroed ([`activity_moves`]). Folding adds, so the days
//!   are recorded as pending first (a repeat recomputes them whole).
//! * **Deleted ids**: the hours they have events in (`id_hours`) are
//!   recomputed from `events` ([`pages_hours`], page views change too), and
//!   their rows of `person_day_activity` zeroed.
//!
//! Statements only (text and binds); [`crate::refresh`] runs them.

use crate::statements::{
    day_list, in_ranges, source, text, vanish, within, Bind, Ends, NewRange, Stmt, ACTIVITY_SHAPE,
    PAGES_SHAPE, PAGE_KEYS,
};
use std::collections::BTreeSet;
use tally_schemas::person::PERSON;

/// Seconds in an hour.
const HOUR: u32 = 3_600;

/// The app's distinct ids whose person changed in versions `(from, to]`,
/// among rows without a Kafka position
/// ([`tally_schemas::person::UNPLACED_CHANGED`]).
pub fn changed_ids(app_id: &str, from: u64, to: u64) -> Stmt {
    Stmt {
        text: format!(
            "SELECT DISTINCT app_id, distinct_id FROM person_distinct_ids WHERE app_id = ? AND {}",
            tally_schemas::person::UNPLACED_CHANGED
        ),
        binds: vec![text(app_id), Bind::UInt(from), Bind::UInt(to)],
    }
}

/// The distinct ids (with their app) whose person changed by identity events
/// within `ranges` — complete up to the ends, since the aggregator commits an
/// offset only after inserting its rows (ClickHouse migration 0011).
pub fn placed_changed_ids(ranges: &[NewRange]) -> Stmt {
    let (within, binds) = in_ranges(ranges);
    Stmt {
        text: format!(
            "SELECT DISTINCT app_id, distinct_id FROM person_distinct_ids WHERE {within}"
        ),
        binds,
    }
}

/// Every linked id of the persons `ids` belong to now (`distinct_id`,
/// `person`).
pub fn members(app_id: &str, ids: &[String]) -> Stmt {
    Stmt {
        text: "SELECT distinct_id, p AS person FROM (SELECT distinct_id, \
               argMax(person_id, version) AS p FROM person_distinct_ids WHERE app_id = ? \
               GROUP BY distinct_id) WHERE p IN (SELECT argMax(person_id, version) \
               FROM person_distinct_ids WHERE app_id = ? AND distinct_id IN \
               (SELECT arrayJoin(?)) GROUP BY distinct_id)"
            .into(),
        binds: vec![text(app_id), text(app_id), Bind::List(ids.to_vec())],
    }
}

/// The hours (`hour`, epoch seconds) in which `ids` have derived events.
pub fn hours(app_id: &str, ids: &[String]) -> Stmt {
    Stmt {
        text: "SELECT DISTINCT toUInt32(hour) AS hour FROM id_hours \
               WHERE app_id = ? AND distinct_id IN (SELECT arrayJoin(?))"
            .into(),
        binds: vec![text(app_id), Bind::List(ids.to_vec())],
    }
}

/// ` AND (timestamp in one of the hours)`, consecutive hours merged into one
/// range (an index range read of `events` each), and its binds.
fn ranges(hours: &BTreeSet<u32>) -> (String, Vec<Bind>) {
    let mut spans: Vec<(u32, u32)> = Vec::new();
    for &hour in hours {
        match spans.last_mut() {
            Some((_, end)) if *end == hour => *end = hour.saturating_add(HOUR),
            _ => spans.push((hour, hour.saturating_add(HOUR))),
        }
    }
    let mut binds = Vec::new();
    let arms: Vec<&str> = spans
        .iter()
        .map(|(from, to)| {
            binds.extend([Bind::UInt(u64::from(*from)), Bind::UInt(u64::from(*to))]);
            "(timestamp >= toDateTime(?) AND timestamp < toDateTime(?))"
        })
        .collect();
    if arms.is_empty() {
        return (" AND 0".into(), binds);
    }
    (format!(" AND ({})", arms.join(" OR ")), binds)
}

/// The UTC day (`YYYY-MM-DD`) of an epoch second.
pub fn day(secs: u32) -> String {
    tally_schemas::row::utc_day(i64::from(secs) * 1_000)
}

/// The UTC days (`event_date`) the events of `hours` fall on.
pub fn days_of(hours: &BTreeSet<u32>) -> BTreeSet<String> {
    hours
        .iter()
        .flat_map(|h| [day(*h), day(h.saturating_add(HOUR - 1))])
        .collect()
}

/// Rewrites every key of the app's `hours` in `report_pages_hourly` with
/// `version` (rows within `ends`), then zero rows for the keys of those
/// hours this version did not write.
pub fn pages_hours(app_id: &str, hours: &BTreeSet<u32>, version: u64, ends: &Ends) -> [Stmt; 2] {
    let days: Vec<String> = days_of(hours).into_iter().collect();
    let (source, mut binds) = source(app_id);
    binds.insert(0, Bind::UInt(version));
    binds.push(text(app_id));
    let (list, day_binds) = day_list(&days);
    binds.extend(day_binds);
    let (ranges, range_binds) = ranges(hours);
    binds.extend(range_binds);
    let (within, within_binds) = within(ends);
    binds.extend(within_binds);
    let write = Stmt {
        text: format!(
            "INSERT INTO report_pages_hourly (app_id, hour, {PAGE_KEYS}, page_views, visitors, version) \
             SELECT app_id, toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, count() AS page_views, \
             uniqExactState({PERSON}) AS visitors, toUInt64(?) AS version FROM {source} \
             WHERE app_id = ? AND event_date IN {list} AND name = 'page_view'{ranges}{within} \
             GROUP BY app_id, hour, {PAGE_KEYS}"
        ),
        binds,
    };
    let marks = vec!["toDateTime(?)"; hours.len()].join(", ");
    let filter = (
        format!("hour IN ({marks})"),
        hours.iter().map(|h| Bind::UInt(u64::from(*h))).collect(),
    );
    [write, vanish(PAGES_SHAPE, app_id, filter, version)]
}

/// `(app_id, hour, keys…) IN (…)`: the keys in which the app's `ids` have
/// page views (`id_keys`), and its binds.
fn keys_of(app_id: &str, ids: &[String]) -> (String, Vec<Bind>) {
    (
        format!(
            "(app_id, hour, {PAGE_KEYS}) IN (SELECT app_id, hour, {PAGE_KEYS} FROM id_keys \
             WHERE app_id = ? AND distinct_id IN (SELECT arrayJoin(?)))"
        ),
        vec![text(app_id), Bind::List(ids.to_vec())],
    )
}

/// Rewrites, with `version`, the keys of `report_pages_hourly` in which the
/// app's `ids` have page views: the current page views, and the persons now
/// of every id in the key.
pub fn pages_keys(app_id: &str, ids: &[String], version: u64) -> Stmt {
    let (keys, key_binds) = keys_of(app_id, ids);
    let (join, apps) = tally_schemas::person::join_sql(false);
    let mut binds = vec![Bind::UInt(version)];
    binds.extend(key_binds.iter().cloned());
    binds.extend(std::iter::repeat_n(text(app_id), apps));
    binds.push(text(app_id));
    binds.extend(key_binds);
    Stmt {
        text: format!(
            "INSERT INTO report_pages_hourly (app_id, hour, {PAGE_KEYS}, page_views, visitors, version) \
             SELECT app_id, hour, {PAGE_KEYS}, sum(n), uniqExactMergeState(v), toUInt64(?) FROM (\
             SELECT app_id, hour, {PAGE_KEYS}, any(page_views) AS n, uniqExactStateIf('', 0) AS v \
             FROM report_pages_hourly FINAL WHERE {keys} GROUP BY app_id, hour, {PAGE_KEYS} \
             UNION ALL SELECT app_id, hour, {PAGE_KEYS}, toUInt64(0) AS n, uniqExactState({PERSON}) AS v \
             FROM key_ids{join} WHERE app_id = ? AND {keys} GROUP BY app_id, hour, {PAGE_KEYS}) \
             GROUP BY app_id, hour, {PAGE_KEYS}"
        ),
        binds,
    }
}

/// The app's rows of `person_day_activity` on `days` named by one of
/// `moves`' old persons (its FINAL state, counting rows only).
fn moved_rows(app_id: &str, days: &BTreeSet<String>, from: &[String]) -> (String, Vec<Bind>) {
    let days: Vec<String> = days.iter().cloned().collect();
    let (list, day_binds) = day_list(&days);
    let mut binds = vec![text(app_id)];
    binds.extend(day_binds);
    binds.push(Bind::List(from.to_vec()));
    (
        format!(
            "(SELECT app_id, day, pid, n, f, l FROM (SELECT app_id, day, person_id AS pid, \
             events AS n, first_ms AS f, last_ms AS l FROM person_day_activity FINAL \
             WHERE app_id = ? AND day IN {list} AND person_id IN (SELECT arrayJoin(?))) WHERE n > 0)"
        ),
        binds,
    )
}

/// Folds, with `version`, the app's `person_day_activity` rows on `days` of
/// each old person in `moves` (old → new person) into its new person's row of
/// the same day, then zeroes the old rows.
pub fn activity_moves(
    app_id: &str,
    days: &BTreeSet<String>,
    moves: &[(String, String)],
    version: u64,
) -> [Stmt; 2] {
    let from: Vec<String> = moves.iter().map(|(old, _)| old.clone()).collect();
    let to: Vec<String> = moves.iter().map(|(_, new)| new.clone()).collect();
    let mut involved = from.clone();
    involved.extend(to.iter().cloned());
    let (rows, row_binds) = moved_rows(app_id, days, &involved);
    let mut binds = vec![
        Bind::UInt(version),
        Bind::List(from.clone()),
        Bind::List(to.clone()),
    ];
    binds.extend(row_binds.iter().cloned());
    let fold = Stmt {
        text: format!(
            "INSERT INTO person_day_activity (app_id, day, person_id, events, first_ms, last_ms, version) \
             SELECT app_id, day, np, sum(n), min(f), max(l), toUInt64(?) FROM (SELECT app_id, day, \
             transform(pid, ?, ?, pid) AS np, n, f, l FROM {rows}) GROUP BY app_id, day, np"
        ),
        binds,
    };
    let (old_rows, old_binds) = moved_rows(app_id, days, &from);
    let mut binds = vec![Bind::UInt(version)];
    binds.extend(old_binds);
    let zero = Stmt {
        text: format!(
            "INSERT INTO person_day_activity (app_id, day, person_id, events, first_ms, last_ms, version) \
             SELECT app_id, day, pid, toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(?) FROM {old_rows}"
        ),
        binds,
    };
    [fold, zero]
}

/// Zero rows, with `version`, for the app's `person_day_activity` rows of
/// `persons` (deleted) on `days`.
pub fn activity_deleted(
    app_id: &str,
    days: &BTreeSet<String>,
    persons: &[String],
    version: u64,
) -> Stmt {
    let days: Vec<String> = days.iter().cloned().collect();
    let (list, mut filter_binds) = day_list(&days);
    filter_binds.push(Bind::List(persons.to_vec()));
    let filter = (format!("day IN {list} AND has(?, person_id)"), filter_binds);
    vanish(ACTIVITY_SHAPE, app_id, filter, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_hours_are_one_range() {
        let hours: BTreeSet<u32> = [0, HOUR, 2 * HOUR, 10 * HOUR].into_iter().collect();
        let (text, binds) = ranges(&hours);
        assert_eq!(text.matches("timestamp >=").count(), 2);
        assert_eq!(
            binds,
            vec![
                Bind::UInt(0),
                Bind::UInt(3 * u64::from(HOUR)),
                Bind::UInt(10 * u64::from(HOUR)),
                Bind::UInt(11 * u64::from(HOUR)),
            ]
        );
        assert_eq!(ranges(&BTreeSet::new()).0, " AND 0");
    }

    #[test]
    fn an_hour_falls_on_its_utc_days() {
        let hours: BTreeSet<u32> = [86_400 - HOUR, 86_400].into_iter().collect();
        let days: Vec<String> = days_of(&hours).into_iter().collect();
        assert_eq!(days, ["1970-01-01", "1970-01-02"]);
    }
}
