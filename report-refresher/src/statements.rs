//! Every ClickHouse statement of the refresher, as text and binds (the leaf
//! module: it imports nothing else of the crate). Golden files in
//! `tests/golden/` pin them, and `testkit/tests/sql_versions.rs` runs each on
//! ClickHouse 18.16 and current ClickHouse.
//!
//! Two ways to change report rows, both replace-on-write by version (exact
//! under `FINAL`, no mutation):
//! * *recompute* a bucket (one app's UTC day) from `events` joined to the
//!   app's current identity mapping — every key written, then a zero row for
//!   each key of the bucket this version did not write;
//! * *add* new rows to the keys they fall in: the key's current row plus the
//!   new rows' counts and persons (uniques are `uniqExact` states, so adding
//!   persons is a union), read from `arrivals` by Kafka position.
//!
//! Both see only rows at or below the run's *ends* (per Kafka partition), so
//! a row is derived exactly once: recomputed with its bucket, or added.

use tally_schemas::person::{join_sql, PERSON};

/// Per (topic, Kafka partition): the highest offset derived (or to derive).
pub type Ends = std::collections::BTreeMap<(String, u32), u64>;

/// A bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// Text.
    Text(String),
    /// Unsigned integer.
    UInt(u64),
    /// Array of texts.
    List(Vec<String>),
}

/// A statement with `?` placeholders and their values, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// Text.
    pub text: String,
    /// Values.
    pub binds: Vec<Bind>,
}

impl Stmt {
    /// A statement without binds.
    pub fn plain(text: &str) -> Stmt {
        Stmt {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    /// A `clickhouse` query of this statement.
    pub fn query(&self, client: &clickhouse::Client) -> clickhouse::query::Query {
        let mut query = client.query(&self.text);
        for bind in &self.binds {
            query = match bind {
                Bind::Text(text) => query.bind(text.as_str()),
                Bind::UInt(n) => query.bind(*n),
                Bind::List(list) => query.bind(list.as_slice()),
            };
        }
        query
    }
}

pub(crate) fn text(value: &str) -> Bind {
    Bind::Text(value.to_owned())
}

/// `(?, ?, …)` of `days` and their binds.
pub(crate) fn day_list(days: &[String]) -> (String, Vec<Bind>) {
    let marks = vec!["?"; days.len()].join(", ");
    (format!("({marks})"), days.iter().map(|d| text(d)).collect())
}

/// The events source of an app's statements: events joined to its persons.
pub(crate) fn source(app_id: &str) -> (String, Vec<Bind>) {
    let (join, apps) = join_sql(false);
    (format!("events{join}"), vec![text(app_id); apps])
}

/// Key columns of `report_pages_hourly` after `app_id, hour`.
pub const PAGE_KEYS: &str = "url_path, referrer_host, country, device_type, browser, is_bot";

/// Per (topic, Kafka partition): the highest offset in `arrivals` (the ends
/// of a run without the broker: tests and the bench, which write arrivals
/// after their rows).
pub const ARRIVAL_ENDS_SQL: &str = "SELECT kafka_topic, kafka_partition, max(kafka_offset) AS top \
     FROM arrivals GROUP BY kafka_topic, kafka_partition";

/// Per (topic, Kafka partition): the highest offset in `events` (the ends of
/// a full rebuild for partitions the broker does not know).
pub const EVENT_ENDS_SQL: &str = "SELECT kafka_topic, kafka_partition, max(kafka_offset) AS top \
     FROM events GROUP BY kafka_topic, kafka_partition";

/// ` AND {offset} <= the end of its partition` for `ends` (a partition
/// without an end has nothing derived), and its binds.
pub fn within(ends: &Ends) -> (String, Vec<Bind>) {
    let mut binds = Vec::new();
    let mut arms = String::new();
    for ((topic, partition), end) in ends {
        arms.push_str("kafka_topic = ? AND kafka_partition = ?, toInt64(?), ");
        binds.extend([
            text(topic),
            Bind::UInt(u64::from(*partition)),
            Bind::UInt(*end),
        ]);
    }
    let limit = if ends.is_empty() {
        "toInt64(-1)".to_owned()
    } else {
        format!("multiIf({arms}toInt64(-1))")
    };
    (format!(" AND toInt64(kafka_offset) <= {limit}"), binds)
}

/// Per app: the highest identity version of rows without a Kafka position
/// (see [`tally_schemas::person::UNPLACED_CHANGED`]).
pub const IDENTITY_TOPS_SQL: &str = "SELECT app_id, max(version) AS top FROM person_distinct_ids \
     WHERE kafka_topic = '' GROUP BY app_id";

/// Every bucket that holds rows (events) or report rows.
pub const ALL_BUCKETS_SQL: &str = "SELECT app_id, toString(event_date) AS day FROM events \
     GROUP BY app_id, event_date UNION ALL SELECT app_id, toString(day) AS day \
     FROM person_day_activity GROUP BY app_id, day UNION ALL SELECT app_id, \
     toString(toDate(hour, 'UTC')) AS day FROM report_pages_hourly GROUP BY app_id, day";

/// New rows of one Kafka partition: offsets `(mark, end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRange {
    /// Topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: u32,
    /// Rows above this offset are new (-1: all).
    pub mark: i64,
    /// Up to this offset (the run's end).
    pub end: u64,
}

/// `(…)`: a row's Kafka position is within one of `ranges`, and its binds.
pub fn in_ranges(ranges: &[NewRange]) -> (String, Vec<Bind>) {
    let mut binds = Vec::new();
    let mut conditions = Vec::new();
    for r in ranges {
        conditions.push(
            "(kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ?)",
        );
        binds.extend([
            text(&r.topic),
            Bind::UInt(u64::from(r.partition)),
            Bind::UInt(u64::try_from(r.mark.saturating_add(1)).unwrap_or(0)),
            Bind::UInt(r.end),
        ]);
    }
    if conditions.is_empty() {
        conditions.push("0");
    }
    (format!("({})", conditions.join(" OR ")), binds)
}

/// The new rows of `ranges` as a subquery of their arrivals (each position
/// once: an arrival may be written twice), leaving out the buckets
/// `app|YYYY-MM-DD` in `skip` (recomputed instead).
pub fn facts(ranges: &[NewRange], skip: &[String]) -> (String, Vec<Bind>) {
    let (within, mut binds) = in_ranges(ranges);
    let mut skipped = String::new();
    if !skip.is_empty() {
        skipped = format!(" AND {SKIPPED}");
        binds.push(Bind::List(skip.to_vec()));
    }
    (
        format!(
            "(SELECT app_id, event_date, name, timestamp, ts_ms, distinct_id, {PAGE_KEYS}, \
             kafka_topic, kafka_partition, kafka_offset FROM arrivals WHERE {within}{skipped} \
             LIMIT 1 BY kafka_topic, kafka_partition, kafka_offset)"
        ),
        binds,
    )
}

/// A row's bucket is not one of a list (bind: `app|YYYY-MM-DD` texts).
const SKIPPED: &str = "NOT has(?, concat(app_id, '|', toString(event_date)))";

/// Name of the table a run with `version` keeps its new rows in.
pub fn staged_name(version: u64) -> String {
    format!("refresh_facts_{version}")
}

/// Keeps the new rows of `ranges` (each position once) in a table of the
/// run's own (`Memory`: read several times, cheaply, by one run; dropped
/// after it), so that the run reads `arrivals` once.
pub fn stage_facts(ranges: &[NewRange], version: u64) -> Stmt {
    let (facts, binds) = facts(ranges, &[]);
    Stmt {
        text: format!(
            "CREATE TABLE {} ENGINE = Memory AS SELECT * FROM {facts}",
            staged_name(version)
        ),
        binds,
    }
}

/// The new rows kept by [`stage_facts`], leaving out the buckets in `skip`
/// (as [`facts`] does).
pub fn staged(version: u64, skip: &[String]) -> (String, Vec<Bind>) {
    let name = staged_name(version);
    if skip.is_empty() {
        return (name, Vec::new());
    }
    (
        format!("(SELECT * FROM {name} WHERE {SKIPPED})"),
        vec![Bind::List(skip.to_vec())],
    )
}

/// Drops the table of new rows of the run with `version`.
pub fn drop_staged(version: u64) -> Stmt {
    Stmt::plain(&format!("DROP TABLE IF EXISTS {}", staged_name(version)))
}

/// The tables of runs' new rows (`name`), to drop those of runs that ended
/// without dropping theirs.
pub const STAGED_TABLES_SQL: &str = "SELECT name FROM system.tables \
     WHERE database = currentDatabase() AND startsWith(name, 'refresh_facts_')";

/// The buckets of the new rows `facts`, with how many each has.
pub fn new_buckets(facts: &(String, Vec<Bind>)) -> Stmt {
    Stmt {
        text: format!(
            "SELECT app_id, toString(event_date) AS day, count() AS rows FROM {} \
             GROUP BY app_id, event_date",
            facts.0
        ),
        binds: facts.1.clone(),
    }
}

/// ` AS f ANY LEFT JOIN (…) AS pm USING (app_id, distinct_id)`: the current
/// person of every id of `facts` (any app), adding `pm_person` as
/// [`tally_schemas::person::join_sql`] does for one app.
fn facts_mapping(facts: &(String, Vec<Bind>)) -> (String, Vec<Bind>) {
    (
        format!(
            " AS f ANY LEFT JOIN (SELECT app_id, distinct_id, argMax(person_id, version) AS pm_person \
             FROM person_distinct_ids WHERE (app_id, distinct_id) IN (SELECT app_id, distinct_id \
             FROM {}) GROUP BY app_id, distinct_id) AS pm USING (app_id, distinct_id)",
            facts.0
        ),
        facts.1.clone(),
    )
}

/// Adds the page views of `facts` to their keys of `report_pages_hourly`
/// (the key's current row plus the new rows), with `version`.
pub fn pages_add(facts: &(String, Vec<Bind>), version: u64) -> Stmt {
    let (join, join_binds) = facts_mapping(facts);
    let source = &facts.0;
    let mut binds = vec![Bind::UInt(version)];
    binds.extend(facts.1.iter().cloned());
    binds.extend(facts.1.iter().cloned());
    binds.extend(join_binds);
    Stmt {
        text: format!(
            "INSERT INTO report_pages_hourly (app_id, hour, {PAGE_KEYS}, page_views, visitors, version) \
             SELECT app_id, hour, {PAGE_KEYS}, sum(n), uniqExactMergeState(v), toUInt64(?) FROM (\
             SELECT app_id, hour, {PAGE_KEYS}, page_views AS n, visitors AS v \
             FROM report_pages_hourly FINAL WHERE (app_id, hour, {PAGE_KEYS}) IN (SELECT app_id, \
             toStartOfHour(timestamp), {PAGE_KEYS} FROM {source} WHERE name = 'page_view') \
             UNION ALL SELECT app_id, toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, count() AS n, \
             uniqExactState({PERSON}) AS v FROM {source}{join} WHERE name = 'page_view' \
             GROUP BY app_id, hour, {PAGE_KEYS}) GROUP BY app_id, hour, {PAGE_KEYS}"
        ),
        binds,
    }
}

/// Adds the events of `facts` (bots left out) to their persons' days of
/// `person_day_activity` (the current row plus the new rows), with `version`.
pub fn activity_add(facts: &(String, Vec<Bind>), version: u64) -> Stmt {
    let (join, join_binds) = facts_mapping(facts);
    let source = &facts.0;
    let mut binds = vec![Bind::UInt(version)];
    for _ in 0..2 {
        binds.extend(facts.1.iter().cloned());
        binds.extend(join_binds.iter().cloned());
    }
    Stmt {
        text: format!(
            "INSERT INTO person_day_activity (app_id, day, person_id, events, first_ms, last_ms, version) \
             SELECT app_id, day, pid, sum(n), min(f), max(l), toUInt64(?) FROM (\
             SELECT app_id, day, pid, n, f, l FROM (SELECT app_id, day, person_id AS pid, events AS n, \
             first_ms AS f, last_ms AS l FROM person_day_activity FINAL WHERE (app_id, day, person_id) \
             IN (SELECT app_id, event_date, {PERSON} FROM {source}{join} WHERE is_bot = 0)) WHERE n > 0 \
             UNION ALL SELECT app_id, event_date AS day, {PERSON} AS pid, count() AS n, min(ts_ms) AS f, \
             max(ts_ms) AS l FROM {source}{join} WHERE is_bot = 0 GROUP BY app_id, day, pid) \
             GROUP BY app_id, day, pid"
        ),
        binds,
    }
}

/// Records the (app, distinct id, hour) of `facts` in `id_hours`.
pub fn id_hours_add(facts: &(String, Vec<Bind>)) -> Stmt {
    Stmt {
        text: format!(
            "INSERT INTO id_hours (app_id, distinct_id, hour) SELECT app_id, distinct_id, \
             toStartOfHour(timestamp) AS hour FROM {} GROUP BY app_id, distinct_id, hour",
            facts.0
        ),
        binds: facts.1.clone(),
    }
}

/// Records which ids have page views in which keys of `facts`, in `key_ids`
/// and `id_keys`.
pub fn key_ids_add(facts: &(String, Vec<Bind>)) -> [Stmt; 2] {
    ["key_ids", "id_keys"].map(|table| Stmt {
        text: format!(
            "INSERT INTO {table} (app_id, hour, {PAGE_KEYS}, distinct_id) SELECT app_id, \
             toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, distinct_id FROM {} \
             WHERE name = 'page_view' GROUP BY app_id, hour, {PAGE_KEYS}, distinct_id",
            facts.0
        ),
        binds: facts.1.clone(),
    })
}

/// Records which ids have page views in which keys of the app's events, in
/// `key_ids` and `id_keys` (full rebuilds).
pub fn key_ids_all(app_id: &str) -> [Stmt; 2] {
    ["key_ids", "id_keys"].map(|table| Stmt {
        text: format!(
            "INSERT INTO {table} (app_id, hour, {PAGE_KEYS}, distinct_id) SELECT app_id, \
             toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, distinct_id FROM events \
             WHERE app_id = ? AND name = 'page_view' GROUP BY app_id, hour, {PAGE_KEYS}, distinct_id"
        ),
        binds: vec![text(app_id)],
    })
}

/// Records every (distinct id, hour) of the app's events in `id_hours` (full rebuilds).
pub fn id_hours_all(app_id: &str) -> Stmt {
    Stmt {
        text: "INSERT INTO id_hours (app_id, distinct_id, hour) SELECT app_id, distinct_id, \
               toStartOfHour(timestamp) AS hour FROM events WHERE app_id = ? \
               GROUP BY app_id, distinct_id, hour"
            .into(),
        binds: vec![text(app_id)],
    }
}

/// Writes every key of the app's `days` (rows within `ends`) into
/// `report_pages_hourly` with `version`.
pub fn pages_write(app_id: &str, days: &[String], version: u64, ends: &Ends) -> Stmt {
    let (source, mut binds) = source(app_id);
    binds.insert(0, Bind::UInt(version));
    binds.push(text(app_id));
    let (list, days) = day_list(days);
    binds.extend(days);
    let (within, within_binds) = within(ends);
    binds.extend(within_binds);
    Stmt {
        text: format!(
            "INSERT INTO report_pages_hourly (app_id, hour, {PAGE_KEYS}, page_views, visitors, version) \
             SELECT app_id, toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, count() AS page_views, \
             uniqExactState({PERSON}) AS visitors, toUInt64(?) AS version FROM {source} \
             WHERE app_id = ? AND event_date IN {list} AND name = 'page_view'{within} \
             GROUP BY app_id, hour, {PAGE_KEYS}"
        ),
        binds,
    }
}

/// Zero rows, with `version`, for the keys of `table` (its `keys` after
/// `app_id`, counts `zeros`, count column `count`) of the app's rows passing
/// `filter` (a condition and its binds) that `version` did not write and
/// whose current row counts.
pub(crate) fn vanish(
    (table, keys, zeros, count): (&str, &str, &str, &str),
    app_id: &str,
    (filter, filter_binds): (String, Vec<Bind>),
    version: u64,
) -> Stmt {
    let mut binds = vec![Bind::UInt(version), text(app_id)];
    binds.extend(filter_binds);
    binds.push(Bind::UInt(version));
    Stmt {
        text: format!(
            "INSERT INTO {table} SELECT app_id, {keys}, {zeros}, toUInt64(?) FROM {table} \
             WHERE app_id = ? AND {filter} GROUP BY app_id, {keys} \
             HAVING max(version) < ? AND argMax({count}, version) > 0"
        ),
        binds,
    }
}

/// `{column} IN (?, …)` of `days`, and its binds.
fn in_days(column: &str, days: &[String]) -> (String, Vec<Bind>) {
    let (list, binds) = day_list(days);
    (format!("{column} IN {list}"), binds)
}

/// The shape of `report_pages_hourly` for [`vanish`].
pub(crate) const PAGES_SHAPE: (&str, &str, &str, &str) = (
    "report_pages_hourly",
    "hour, url_path, referrer_host, country, device_type, browser, is_bot",
    "toUInt64(0), uniqExactStateIf('', 0)",
    "page_views",
);

/// The shape of `person_day_activity` for [`vanish`].
pub(crate) const ACTIVITY_SHAPE: (&str, &str, &str, &str) = (
    "person_day_activity",
    "day, person_id",
    "toUInt64(0), toUInt64(0), toUInt64(0)",
    "events",
);

/// Zero rows for the keys of the app's `days` that `version` did not write.
pub fn pages_vanish(app_id: &str, days: &[String], version: u64) -> Stmt {
    let filter = in_days("toDate(hour, 'UTC')", days);
    vanish(PAGES_SHAPE, app_id, filter, version)
}

/// Writes every person of the app's `days` (rows within `ends`) into
/// `person_day_activity` with `version`.
pub fn activity_write(app_id: &str, days: &[String], version: u64, ends: &Ends) -> Stmt {
    let (source, mut binds) = source(app_id);
    binds.insert(0, Bind::UInt(version));
    binds.push(text(app_id));
    let (list, days) = day_list(days);
    binds.extend(days);
    let (within, within_binds) = within(ends);
    binds.extend(within_binds);
    Stmt {
        text: format!(
            "INSERT INTO person_day_activity (app_id, day, person_id, events, first_ms, last_ms, version) \
             SELECT app_id, event_date, {PERSON} AS pid, count(), min(ts_ms), max(ts_ms), toUInt64(?) \
             FROM {source} WHERE app_id = ? AND event_date IN {list} AND is_bot = 0{within} \
             GROUP BY app_id, event_date, pid"
        ),
        binds,
    }
}

/// Zero rows for the persons of the app's `days` that `version` did not write.
pub fn activity_vanish(app_id: &str, days: &[String], version: u64) -> Stmt {
    vanish(ACTIVITY_SHAPE, app_id, in_days("day", days), version)
}

/// ` AND {column} NOT IN (…)` of `days` (nothing when empty) and its binds.
fn except_days(column: &str, (days, since): (&[String], &str)) -> (String, Vec<Bind>) {
    let mut sql = format!(" AND {column} >= toDate(?)");
    let mut binds = vec![text(since)];
    if !days.is_empty() {
        let (list, day_binds) = day_list(days);
        sql.push_str(&format!(" AND {column} NOT IN {list}"));
        binds.extend(day_binds);
    }
    (sql, binds)
}

/// A drift statement of the app: `sql(report_skip, source, raw_skip)` is
/// the SQL with the report side (binds: app, its skipped days) before the raw
/// side (binds: the persons join, app, its skipped days, the ends); `skip`
/// leaves out days recomputed by the run (identity changes, deletions, runs
/// that never committed) and days before `since` (past the retention),
/// `ends` are the rows derived so far, and `report_day` is the report
/// table's day expression.
fn drift(
    app_id: &str,
    (skip, ends): ((&[String], &str), &Ends),
    report_day: &str,
    sql: impl FnOnce(&str, &str, &str) -> String,
) -> Stmt {
    let (source, source_binds) = source(app_id);
    let (report_skip, report_binds) = except_days(report_day, skip);
    let (raw_skip, raw_binds) = except_days("event_date", skip);
    let (within, within_binds) = within(ends);
    let mut binds = vec![text(app_id)];
    binds.extend(report_binds);
    binds.extend(source_binds);
    binds.push(text(app_id));
    binds.extend(raw_binds);
    binds.extend(within_binds);
    Stmt {
        text: sql(&report_skip, &source, &format!("{raw_skip}{within}")),
        binds,
    }
}

/// Keys of the app whose `report_pages_hourly` row differs from a
/// recomputation from raw rows (missing on either side, or other counts).
pub fn pages_drift(app_id: &str, skip: (&[String], &str), ends: &Ends) -> Stmt {
    drift(
        app_id,
        (skip, ends),
        "toDate(hour, 'UTC')",
        |report_skip, source, raw_skip| {
            format!(
            "SELECT toUInt64(uniqExact(hour, {PAGE_KEYS})) AS drift FROM (SELECT hour, {PAGE_KEYS} FROM (\
             SELECT hour, {PAGE_KEYS}, page_views AS n, uniqExactMerge(visitors) AS u \
             FROM report_pages_hourly FINAL WHERE app_id = ? AND page_views > 0{report_skip} \
             GROUP BY hour, {PAGE_KEYS}, n \
             UNION ALL SELECT toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, count() AS n, \
             uniqExact({PERSON}) AS u FROM {source} WHERE app_id = ? AND name = 'page_view'{raw_skip} \
             GROUP BY hour, {PAGE_KEYS}) GROUP BY hour, {PAGE_KEYS}, n, u HAVING count() = 1)"
        )
        },
    )
}

/// Persons-days of the app whose `person_day_activity` row differs from a
/// recomputation from raw rows.
pub fn activity_drift(app_id: &str, skip: (&[String], &str), ends: &Ends) -> Stmt {
    drift(
        app_id,
        (skip, ends),
        "day",
        |report_skip, source, raw_skip| {
            format!(
            "SELECT toUInt64(uniqExact(day, pid)) AS drift FROM (SELECT day, pid FROM (\
             SELECT day, person_id AS pid, events AS n, first_ms AS f, last_ms AS l \
             FROM person_day_activity FINAL WHERE app_id = ? AND events > 0{report_skip} \
             UNION ALL SELECT event_date AS day, {PERSON} AS pid, count() AS n, min(ts_ms) AS f, \
             max(ts_ms) AS l FROM {source} WHERE app_id = ? AND is_bot = 0{raw_skip} GROUP BY day, pid) \
             GROUP BY day, pid, n, f, l HAVING count() = 1)"
        )
        },
    )
}

/// Per received day, topic and Kafka partition of `arrivals`: the highest offset.
pub const ARRIVAL_DAYS_SQL: &str = "SELECT toString(received_date) AS day, kafka_topic, \
     toInt32(kafka_partition) AS kafka_partition, toInt64(max(kafka_offset)) AS top \
     FROM arrivals GROUP BY received_date, kafka_topic, kafka_partition";

/// Drops one received day of `arrivals` (bind: the day, `YYYY-MM-DD`).
pub const DROP_ARRIVALS_SQL: &str = "ALTER TABLE arrivals DROP PARTITION ?";

/// Mutations of this database not finished yet.
pub const PENDING_MUTATIONS_SQL: &str =
    "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0";

/// Rows deleted persons (`persons`, their `ids`) still have.
pub fn remaining(app_id: &str, persons: &[String], ids: &[String]) -> Stmt {
    let mut binds = Vec::new();
    for _ in 0..4 {
        binds.extend([text(app_id), Bind::List(ids.to_vec())]);
    }
    binds.extend([text(app_id), Bind::List(persons.to_vec())]);
    Stmt {
        text: tally_schemas::person::REMAINING_SQL.into(),
        binds,
    }
}

/// The mutations removing a deleted person's rows (issued again when rows
/// arrived after the first ones).
pub fn deletes(app_id: &str, person: &str, ids: &[String]) -> Vec<Stmt> {
    tally_schemas::person::delete_statements(person, ids)
        .into_iter()
        .map(|(sql, list)| Stmt {
            text: sql.to_owned(),
            binds: vec![text(app_id), Bind::List(list)],
        })
        .collect()
}

/// The days on which `ids` still have events.
pub fn person_days(app_id: &str, ids: &[String]) -> Stmt {
    Stmt {
        text: tally_schemas::person::PERSON_DAYS_SQL.into(),
        binds: vec![text(app_id), Bind::List(ids.to_vec())],
    }
}

/// Every statement that recomputes one app's buckets, in order.
pub fn recompute(app_id: &str, days: &[String], version: u64, ends: &Ends) -> [Stmt; 4] {
    [
        pages_write(app_id, days, version, ends),
        pages_vanish(app_id, days, version),
        activity_write(app_id, days, version, ends),
        activity_vanish(app_id, days, version),
    ]
}

#[cfg(test)]
#[path = "statements_tests.rs"]
mod tests;
