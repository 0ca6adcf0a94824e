//! `replay compare`: the target against the live tables, per app and day.
//!
//! Like is compared with like: only rows whose Kafka position both pipelines
//! have processed take part — per partition from the replay's start up to the
//! lower of the two groups' committed offsets (and the replay's end) — so a
//! replay still catching up, or live traffic arriving meanwhile, is never a
//! difference. Per app and event day: events, unique distinct ids, bot
//! events, and a digest (sum of a hash of each row's identity and enrichment
//! columns) that differs when any such value of any row differs. Sessions
//! (count, visitors, bots, digest per app and creation day) are compared when
//! that is exact: the replay started at the beginning of every partition and
//! both groups stand at the same positions ([`sessions_comparable`]).

use super::catalog::Entry;
use super::{ReplayError, Target};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Columns hashed into the digest: what a processing or enrichment change alters.
pub const DIGEST_COLUMNS: &str = "event_id, name, distinct_id, user_id, anonymous_id, ts_ms, \
    country, region, city, browser, browser_version, os, device_type, is_bot, \
    url_host, url_path, referrer_host, utm_source, utm_medium, utm_campaign, utm_term, utm_content";

/// Per partition, the compared offsets `[from, until)`.
pub type Bounds = BTreeMap<i32, (i64, i64)>;

/// One app-day of one side.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize, Serialize)]
pub struct DayCounts {
    /// App.
    pub app_id: String,
    /// Event day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// Rows.
    pub events: u64,
    /// Distinct ids.
    pub uniques: u64,
    /// Rows flagged as bots.
    pub bots: u64,
    /// Content digest.
    pub digest: u64,
}

/// An app-day where the two sides differ (`None`: no rows on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// App.
    pub app_id: String,
    /// Day.
    pub day: String,
    /// Live side.
    pub live: Option<DayCounts>,
    /// Target side.
    pub target: Option<DayCounts>,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Offsets compared per partition.
    pub bounds: Bounds,
    /// App-days seen on either side.
    pub app_days: usize,
    /// Rows compared, live and target.
    pub live_events: u64,
    /// See `live_events`.
    pub target_events: u64,
    /// App-days that differ.
    pub differences: Vec<Difference>,
    /// Sessions per app and creation day (`events` = sessions), when
    /// comparable ([`sessions_comparable`]); `None` otherwise.
    pub sessions: Option<SessionsReport>,
}

/// The sessions part of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionsReport {
    /// App-days seen on either side.
    pub app_days: usize,
    /// Sessions, live and target.
    pub live_sessions: u64,
    /// See `live_sessions`.
    pub target_sessions: u64,
    /// App-days that differ.
    pub differences: Vec<Difference>,
}

/// The bounds: the replay's start up to what both groups have committed.
pub fn bounds(
    entry: &Entry,
    target_committed: &BTreeMap<i32, i64>,
    live_committed: &BTreeMap<i32, i64>,
) -> Bounds {
    entry
        .start
        .iter()
        .map(|(&p, &from)| {
            let mut until = target_committed.get(&p).copied().unwrap_or(from);
            until = until.min(live_committed.get(&p).copied().unwrap_or(from));
            if let Some(end) = entry.end.as_ref().and_then(|e| e.get(&p)) {
                until = until.min(*end);
            }
            (p, (from, until.max(from)))
        })
        .collect()
}

/// The per app-day statement over the rows of `bounds` (the topic is bound
/// as `?`), run on each side's database.
pub fn statement(bounds: &Bounds) -> Option<String> {
    let ranges: Vec<String> = bounds
        .iter()
        .filter(|(_, (from, until))| until > from)
        .map(|(p, (from, until))| {
            format!("(kafka_partition = {p} AND kafka_offset >= {from} AND kafka_offset < {until})")
        })
        .collect();
    if ranges.is_empty() {
        return None;
    }
    Some(format!(
        "SELECT app_id, toString(event_date) AS day, count() AS events, \
         uniqExact(distinct_id) AS uniques, toUInt64(sum(is_bot)) AS bots, \
         toUInt64(sum(cityHash64({DIGEST_COLUMNS}))) AS digest \
         FROM events WHERE kafka_topic = ? AND ({}) \
         GROUP BY app_id, day ORDER BY app_id, day",
        ranges.join(" OR ")
    ))
}

/// The per app-day statement over `database`'s sessions (latest version of
/// each, merged-away ones left out, by creation day), read as [`DayCounts`]
/// (rows are read by position; the aliases differ from the column names
/// they aggregate, as 18.16 resolves aliases everywhere in a statement).
pub fn sessions_statement() -> String {
    format!(
        "SELECT app_id, toString(created_date) AS day, count() AS session_count, \
         uniqExact(distinct_id) AS visitors, toUInt64(sum(is_bot)) AS bot_sessions, \
         toUInt64(sum(cityHash64({SESSION_DIGEST_COLUMNS}))) AS session_digest \
         FROM sessions FINAL WHERE dropped = 0 \
         GROUP BY app_id, day ORDER BY app_id, day"
    )
}

/// Session columns hashed into the sessions digest.
pub const SESSION_DIGEST_COLUMNS: &str = "session_id, distinct_id, start_ms, end_ms, events, \
    page_views, entry_page, exit_page, referrer_host, utm_source, country, device_type, browser, \
    os, is_bot, bounce";

/// Whether sessions can be compared: a session depends on every earlier event
/// of its visitor, so only when the replay started at the beginning of every
/// partition and both groups stand at the same positions.
pub fn sessions_comparable(
    bounds: &Bounds,
    target_committed: &BTreeMap<i32, i64>,
    live_committed: &BTreeMap<i32, i64>,
) -> bool {
    bounds.iter().all(|(p, (from, _))| {
        *from == 0
            && target_committed.get(p).is_some()
            && target_committed.get(p) == live_committed.get(p)
    })
}

/// Pairs the two sides' app-days.
pub fn differences(live: &[DayCounts], target: &[DayCounts]) -> (usize, Vec<Difference>) {
    let mut days: BTreeMap<(String, String), (Option<DayCounts>, Option<DayCounts>)> =
        BTreeMap::new();
    for row in live {
        days.entry((row.app_id.clone(), row.day.clone()))
            .or_default()
            .0 = Some(row.clone());
    }
    for row in target {
        days.entry((row.app_id.clone(), row.day.clone()))
            .or_default()
            .1 = Some(row.clone());
    }
    let total = days.len();
    let differing = days
        .into_iter()
        .filter(|(_, (l, t))| l != t)
        .map(|((app_id, day), (live, target))| Difference {
            app_id,
            day,
            live,
            target,
        })
        .collect();
    (total, differing)
}

/// Compares the replay `entry` (target `target`) with `live_database` over `bounds`.
pub async fn compare(
    clickhouse: &clickhouse::Client,
    live_database: &str,
    target: &Target,
    topic: &str,
    bounds: Bounds,
    with_sessions: bool,
) -> Result<Report, ReplayError> {
    if !tally_common::clickhouse::valid_identifier(live_database) {
        return Err(ReplayError::Usage(format!(
            "database name {live_database:?}"
        )));
    }
    let live_side = clickhouse.clone().with_database(live_database);
    let target_side = clickhouse.clone().with_database(&target.database);
    let (mut live, mut replayed) = (Vec::new(), Vec::new());
    if let Some(sql) = statement(&bounds) {
        live = live_side
            .query(&sql)
            .bind(topic)
            .fetch_all::<DayCounts>()
            .await?;
        replayed = target_side
            .query(&sql)
            .bind(topic)
            .fetch_all::<DayCounts>()
            .await?;
    }
    let (app_days, found) = differences(&live, &replayed);
    let sessions = if with_sessions {
        let live = live_side
            .query(&sessions_statement())
            .fetch_all::<DayCounts>()
            .await?;
        let replayed = target_side
            .query(&sessions_statement())
            .fetch_all::<DayCounts>()
            .await?;
        let (app_days, found) = differences(&live, &replayed);
        Some(SessionsReport {
            app_days,
            live_sessions: live.iter().map(|d| d.events).sum(),
            target_sessions: replayed.iter().map(|d| d.events).sum(),
            differences: found,
        })
    } else {
        None
    };
    Ok(Report {
        bounds,
        app_days,
        live_events: live.iter().map(|d| d.events).sum(),
        target_events: replayed.iter().map(|d| d.events).sum(),
        differences: found,
        sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(end: Option<BTreeMap<i32, i64>>) -> Entry {
        Entry {
            name: "r".into(),
            topic: "events".into(),
            from_text: "0:0,1:5".into(),
            to_text: None,
            start: [(0, 0), (1, 5)].into_iter().collect(),
            end,
            reenrich: String::new(),
            state: "running".into(),
            created_ms: 0,
            heartbeat_ms: None,
            done: 0,
            rate: 0.0,
            finished_ms: None,
        }
    }

    #[test]
    fn bounds_stop_where_either_side_or_the_end_stops() {
        let target = [(0, 40), (1, 9)].into_iter().collect();
        let live = [(0, 30), (1, 50)].into_iter().collect();
        assert_eq!(
            bounds(&entry(None), &target, &live),
            [(0, (0, 30)), (1, (5, 9))].into_iter().collect()
        );
        let end = Some([(0, 20), (1, 7)].into_iter().collect());
        assert_eq!(
            bounds(&entry(end), &target, &live),
            [(0, (0, 20)), (1, (5, 7))].into_iter().collect()
        );
        // Nothing committed yet: empty ranges, no statement.
        let none = bounds(&entry(None), &BTreeMap::new(), &live);
        assert_eq!(none, [(0, (0, 0)), (1, (5, 5))].into_iter().collect());
        assert_eq!(statement(&none), None);
    }

    #[test]
    fn sessions_compare_only_from_the_beginning_at_equal_positions() {
        let bounds: Bounds = [(0, (0, 30)), (1, (0, 9))].into_iter().collect();
        let at: BTreeMap<i32, i64> = [(0, 30), (1, 9)].into_iter().collect();
        assert!(sessions_comparable(&bounds, &at, &at));
        let ahead: BTreeMap<i32, i64> = [(0, 31), (1, 9)].into_iter().collect();
        assert!(!sessions_comparable(&bounds, &at, &ahead));
        let later: Bounds = [(0, (5, 30)), (1, (0, 9))].into_iter().collect();
        assert!(!sessions_comparable(&later, &at, &at));
        assert!(sessions_statement().contains("FROM sessions FINAL WHERE dropped = 0"));
    }

    /// `sql` (then its binds) must equal `tests/golden/{name}.sql`
    /// (`TALLY_UPDATE_GOLDEN=1` rewrites it; run on both ClickHouse versions
    /// by `testkit/tests/sql_versions.rs`).
    fn assert_golden(name: &str, sql: &str, binds: &[&str]) {
        let binds: Vec<String> = binds.iter().map(|b| format!("{b:?}")).collect();
        let rendered = format!("{sql}\n-- binds: [{}]\n", binds.join(","));
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/golden/{name}.sql"));
        if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (TALLY_UPDATE_GOLDEN=1 writes it)", path.display())
        });
        assert_eq!(rendered, golden, "{name}");
        assert_eq!(sql.matches('?').count(), binds.len(), "{name}");
    }

    #[test]
    fn the_statement_names_each_range() {
        let sql = statement(
            &[(0, (0, 30)), (1, (5, 5)), (2, (7, 9))]
                .into_iter()
                .collect(),
        )
        .unwrap();
        assert!(sql.contains("(kafka_partition = 0 AND kafka_offset >= 0 AND kafka_offset < 30) OR (kafka_partition = 2 AND kafka_offset >= 7 AND kafka_offset < 9)"), "{sql}");
        assert!(!sql.contains("kafka_partition = 1"));
        assert_golden("replay_compare_events", &sql, &["events"]);
        assert_golden("replay_compare_sessions", &sessions_statement(), &[]);
    }

    #[test]
    fn differences_pair_app_days_from_both_sides() {
        let day = |app: &str, d: &str, events: u64, bots: u64| DayCounts {
            app_id: app.into(),
            day: d.into(),
            events,
            uniques: 1,
            bots,
            digest: events * 7 + bots,
        };
        let live = vec![day("a", "2026-12-01", 5, 0), day("a", "2026-12-02", 3, 0)];
        let target = vec![
            day("a", "2026-12-01", 5, 0),
            day("a", "2026-12-02", 3, 1),
            day("b", "2026-12-02", 1, 0),
        ];
        let (total, diffs) = differences(&live, &target);
        assert_eq!(total, 3);
        assert_eq!(diffs.len(), 2);
        assert_eq!(
            (diffs[0].app_id.as_str(), diffs[0].day.as_str()),
            ("a", "2026-12-02")
        );
        assert!(diffs[1].live.is_none());
    }
}
