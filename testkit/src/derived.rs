//! The report refresher's derived tables against brute force (issue 16):
//! [`brute_force`] computes, from generated journeys, what
//! `report_pages_hourly` (page views and persons per hour) and
//! `person_day_activity` (per person and day: events, first and last time)
//! must hold; [`derived`] reads what they hold (`FINAL`, non-zero rows).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::journeys::{Event, Model};
use std::collections::{BTreeMap, BTreeSet};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Hour (epoch s) → (page views, persons).
pub type Pages = BTreeMap<i64, (u64, u64)>;
/// Sorted (day epoch s, events, first ms, last ms), one per person and day.
pub type Activity = Vec<(i64, u64, u64, u64)>;

/// What the derived tables must hold for `events` (none of them a bot's).
pub fn brute_force(events: &[&Event]) -> (Pages, Activity) {
    let model = Model::of(events.iter().copied());
    let mut hours: BTreeMap<i64, (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut days: BTreeMap<(i64, String), (u64, i64, i64)> = BTreeMap::new();
    for e in events {
        let person = model.person(&e.distinct_id);
        if e.name == "page_view" {
            let hour = hours.entry(e.ts_ms.div_euclid(HOUR) * 3_600).or_default();
            hour.0 += 1;
            hour.1.insert(person.clone());
        }
        let day = days
            .entry((e.ts_ms.div_euclid(DAY) * 86_400, person))
            .or_insert((0, i64::MAX, i64::MIN));
        *day = (day.0 + 1, day.1.min(e.ts_ms), day.2.max(e.ts_ms));
    }
    let pages = hours
        .into_iter()
        .map(|(h, (n, persons))| (h, (n, persons.len() as u64)))
        .collect();
    let mut activity: Activity = days
        .into_iter()
        .map(|((day, _), (n, first, last))| (day, n, first as u64, last as u64))
        .collect();
    activity.sort_unstable();
    (pages, activity)
}

/// What the derived tables of `app` hold.
pub async fn derived(client: &clickhouse::Client, app: &str) -> (Pages, Activity) {
    let pages: Vec<(i64, u64, u64)> = client
        .query(
            "SELECT toInt64(toUnixTimestamp(hour)) AS h, sum(page_views), toUInt64(uniqExactMerge(visitors)) \
             FROM report_pages_hourly FINAL WHERE app_id = ? AND page_views > 0 GROUP BY h ORDER BY h",
        )
        .bind(app)
        .fetch_all()
        .await
        .unwrap();
    let mut activity: Activity = client
        .query(
            "SELECT toInt64(toUInt16(day)) * 86400 AS d, events, first_ms, last_ms \
             FROM person_day_activity FINAL WHERE app_id = ? AND events > 0",
        )
        .bind(app)
        .fetch_all()
        .await
        .unwrap();
    activity.sort_unstable();
    (
        pages.into_iter().map(|(h, n, u)| (h, (n, u))).collect(),
        activity,
    )
}
