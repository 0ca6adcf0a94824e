//! Every ClickHouse statement of the refresher, as text and binds (the leaf
//! module: it imports nothing else of the crate). Golden files in
//! `tests/golden/` pin them, and `testkit/tests/sql_versions.rs` runs each on
//! ClickHouse 18.16 and current ClickHouse.
//!
//! A *bucket* is one app's day (UTC). Recomputing buckets writes every key of
//! them with the run's version (events joined to the app's current identity
//! mapping, so uniques are persons) and then, for each key of those buckets
//! that this version did not write and whose current row counts something, a
//! row with zero counts: a replace of whole buckets without mutations, exact
//! under `FINAL`. Repeating it gives the same tables.

use tally_schemas::person::{join_sql, PERSON};

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

fn text(value: &str) -> Bind {
    Bind::Text(value.to_owned())
}

/// `(?, ?, …)` of `days` and their binds.
fn day_list(days: &[String]) -> (String, Vec<Bind>) {
    let marks = vec!["?"; days.len()].join(", ");
    (format!("({marks})"), days.iter().map(|d| text(d)).collect())
}

/// The events source of an app's statements: events joined to its persons.
fn source(app_id: &str) -> (String, Vec<Bind>) {
    let (join, apps) = join_sql(false);
    (format!("events{join}"), vec![text(app_id); apps])
}

/// Key columns of `report_pages_hourly` after `app_id, hour`.
pub const PAGE_KEYS: &str = "url_path, referrer_host, country, device_type, browser, is_bot";

/// Per (topic, Kafka partition, day): the highest stored offset and the rows.
pub const TOPS_SQL: &str = "SELECT kafka_topic, kafka_partition, toString(event_date) AS day, \
     max(kafka_offset) AS top FROM events \
     GROUP BY kafka_topic, kafka_partition, event_date";

/// Per app: the highest identity version.
pub const IDENTITY_TOPS_SQL: &str =
    "SELECT app_id, max(version) AS top FROM person_distinct_ids GROUP BY app_id";

/// Every bucket that holds rows (events) or report rows.
pub const ALL_BUCKETS_SQL: &str = "SELECT app_id, toString(event_date) AS day FROM events \
     GROUP BY app_id, event_date UNION ALL SELECT app_id, toString(day) AS day \
     FROM person_day_activity GROUP BY app_id, day UNION ALL SELECT app_id, \
     toString(toDate(hour, 'UTC')) AS day FROM report_pages_hourly GROUP BY app_id, day";

/// One range of new rows: topic, Kafka partition, day, (mark, top].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRange {
    /// Topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: u32,
    /// Day, `YYYY-MM-DD`.
    pub day: String,
    /// Rows above this offset are new (-1: all).
    pub mark: i64,
    /// Up to this offset (the top read at the start of the run).
    pub top: u64,
}

/// The buckets of new rows in `ranges`, with how many new rows each has.
pub fn new_buckets(ranges: &[NewRange]) -> Stmt {
    let mut binds = Vec::new();
    let mut conditions = Vec::new();
    for r in ranges {
        // A mark of -1 (nothing derived yet) means every offset from 0.
        let op = if r.mark < 0 { ">=" } else { ">" };
        conditions.push(format!(
            "(kafka_topic = ? AND kafka_partition = ? AND event_date = toDate(?) \
             AND kafka_offset {op} ? AND kafka_offset <= ?)"
        ));
        binds.extend([
            text(&r.topic),
            Bind::UInt(u64::from(r.partition)),
            text(&r.day),
            Bind::UInt(u64::try_from(r.mark).unwrap_or(0)),
            Bind::UInt(r.top),
        ]);
    }
    Stmt {
        text: format!(
            "SELECT app_id, toString(event_date) AS day, count() AS rows FROM events WHERE {} \
             GROUP BY app_id, event_date",
            conditions.join(" OR ")
        ),
        binds,
    }
}

/// The days on which an app's distinct ids changed in `(from, to]` have events.
pub fn identity_buckets(app_id: &str, from: u64, to: u64) -> Stmt {
    Stmt {
        text: tally_schemas::person::CHANGED_DAYS_SQL.into(),
        binds: vec![text(app_id), text(app_id), Bind::UInt(from), Bind::UInt(to)],
    }
}

/// Writes every key of the app's `days` into `report_pages_hourly` with `version`.
pub fn pages_write(app_id: &str, days: &[String], version: u64) -> Stmt {
    let (source, mut binds) = source(app_id);
    binds.insert(0, Bind::UInt(version));
    binds.push(text(app_id));
    let (list, days) = day_list(days);
    binds.extend(days);
    Stmt {
        text: format!(
            "INSERT INTO report_pages_hourly (app_id, hour, {PAGE_KEYS}, page_views, visitors, version) \
             SELECT app_id, toStartOfHour(timestamp) AS hour, {PAGE_KEYS}, count() AS page_views, \
             uniqExactState({PERSON}) AS visitors, toUInt64(?) AS version FROM {source} \
             WHERE app_id = ? AND event_date IN {list} AND name = 'page_view' \
             GROUP BY app_id, hour, {PAGE_KEYS}"
        ),
        binds,
    }
}

/// Zero rows, with `version`, for the keys of `table` (its `keys` after
/// `app_id`, day column `day`, counts `zeros`, count column `count`) on the
/// app's `days` that `version` did not write and whose current row counts.
fn vanish(
    (table, keys, day, zeros, count): (&str, &str, &str, &str, &str),
    app_id: &str,
    days: &[String],
    version: u64,
) -> Stmt {
    let (list, day_binds) = day_list(days);
    let mut binds = vec![Bind::UInt(version), text(app_id)];
    binds.extend(day_binds);
    binds.push(Bind::UInt(version));
    Stmt {
        text: format!(
            "INSERT INTO {table} SELECT app_id, {keys}, {zeros}, toUInt64(?) FROM {table} \
             WHERE app_id = ? AND {day} IN {list} GROUP BY app_id, {keys} \
             HAVING max(version) < ? AND argMax({count}, version) > 0"
        ),
        binds,
    }
}

/// Zero rows for the keys of the app's `days` that `version` did not write.
pub fn pages_vanish(app_id: &str, days: &[String], version: u64) -> Stmt {
    let keys = format!("hour, {PAGE_KEYS}");
    let shape = (
        "report_pages_hourly",
        keys.as_str(),
        "toDate(hour, 'UTC')",
        "toUInt64(0), uniqExactStateIf('', 0)",
        "page_views",
    );
    vanish(shape, app_id, days, version)
}

/// Writes every person of the app's `days` into `person_day_activity` with `version`.
pub fn activity_write(app_id: &str, days: &[String], version: u64) -> Stmt {
    let (source, mut binds) = source(app_id);
    binds.insert(0, Bind::UInt(version));
    binds.push(text(app_id));
    let (list, days) = day_list(days);
    binds.extend(days);
    Stmt {
        text: format!(
            "INSERT INTO person_day_activity (app_id, day, person_id, events, first_ms, last_ms, version) \
             SELECT app_id, event_date, {PERSON} AS pid, count(), min(ts_ms), max(ts_ms), toUInt64(?) \
             FROM {source} WHERE app_id = ? AND event_date IN {list} AND is_bot = 0 \
             GROUP BY app_id, event_date, pid"
        ),
        binds,
    }
}

/// Zero rows for the persons of the app's `days` that `version` did not write.
pub fn activity_vanish(app_id: &str, days: &[String], version: u64) -> Stmt {
    let shape = (
        "person_day_activity",
        "day, person_id",
        "day",
        "toUInt64(0), toUInt64(0), toUInt64(0)",
        "events",
    );
    vanish(shape, app_id, days, version)
}

/// ` AND {column} NOT IN (…)` of `days` (nothing when empty) and its binds.
fn except_days(column: &str, days: &[String]) -> (String, Vec<Bind>) {
    if days.is_empty() {
        return (String::new(), Vec::new());
    }
    let (list, binds) = day_list(days);
    (format!(" AND {column} NOT IN {list}"), binds)
}

/// A drift statement of the app: `sql(report_skip, source, raw_skip)` is
/// the SQL with the report side (binds: app, its skipped days) before the raw
/// side (binds: the persons join, app, its skipped days); `skip` leaves out
/// days with rows or identity changes not derived yet, `report_day` is the
/// report table's day expression.
fn drift(
    app_id: &str,
    skip: &[String],
    report_day: &str,
    sql: impl FnOnce(&str, &str, &str) -> String,
) -> Stmt {
    let (source, source_binds) = source(app_id);
    let (report_skip, report_binds) = except_days(report_day, skip);
    let (raw_skip, raw_binds) = except_days("event_date", skip);
    let mut binds = vec![text(app_id)];
    binds.extend(report_binds);
    binds.extend(source_binds);
    binds.push(text(app_id));
    binds.extend(raw_binds);
    Stmt {
        text: sql(&report_skip, &source, &raw_skip),
        binds,
    }
}

/// Keys of the app whose `report_pages_hourly` row differs from a
/// recomputation from raw rows (missing on either side, or other counts).
pub fn pages_drift(app_id: &str, skip: &[String]) -> Stmt {
    drift(
        app_id,
        skip,
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
pub fn activity_drift(app_id: &str, skip: &[String]) -> Stmt {
    drift(app_id, skip, "day", |report_skip, source, raw_skip| {
        format!(
            "SELECT toUInt64(uniqExact(day, pid)) AS drift FROM (SELECT day, pid FROM (\
             SELECT day, person_id AS pid, events AS n, first_ms AS f, last_ms AS l \
             FROM person_day_activity FINAL WHERE app_id = ? AND events > 0{report_skip} \
             UNION ALL SELECT event_date AS day, {PERSON} AS pid, count() AS n, min(ts_ms) AS f, \
             max(ts_ms) AS l FROM {source} WHERE app_id = ? AND is_bot = 0{raw_skip} GROUP BY day, pid) \
             GROUP BY day, pid, n, f, l HAVING count() = 1)"
        )
    })
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

/// Rows a deleted person (`person`, `ids`) still has.
pub fn remaining(app_id: &str, person: &str, ids: &[String]) -> Stmt {
    let mut binds = Vec::new();
    for _ in 0..3 {
        binds.extend([text(app_id), Bind::List(ids.to_vec())]);
    }
    binds.extend([text(app_id), Bind::List(vec![person.to_owned()])]);
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

/// Every statement that writes one app's buckets, in order.
pub fn recompute(app_id: &str, days: &[String], version: u64) -> [Stmt; 4] {
    [
        pages_write(app_id, days, version),
        pages_vanish(app_id, days, version),
        activity_write(app_id, days, version),
        activity_vanish(app_id, days, version),
    ]
}

#[cfg(test)]
#[path = "statements_tests.rs"]
mod tests;
