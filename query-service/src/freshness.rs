//! Which days a report answer may take from the refresher's derived tables
//! (issue 16: exact and fresh at once). A day is *raw* — answered from raw
//! rows — when any of these holds, else it is answered from the reports:
//!
//! * it holds a row the refresher has not derived: an `arrivals` row (written
//!   by the aggregator before its raw row) above the offset at or below which
//!   every row is derived (`refresh_derived`, per Kafka partition; a partition
//!   without one counts as not derived at all);
//! * a distinct id with events on it changed person since the refresher's
//!   last run: its `person_distinct_ids` row is above the derived offset of
//!   its partition (the row's Kafka position is its identity event's), or,
//!   for rows without a position (ClickHouse migration 0011), newer than
//!   `refresh_identity_marks`;
//! * a person deletion touching it is not finished (`person_deletions`).
//!
//! A derived day holds at least every row below the marks and was computed
//! with the persons of ids that have not changed since, so each day is exact
//! from either source, and person uniques merge across days (`uniqExact`
//! states). Without any refresher state every day is raw.

use crate::pg::Pg;
use crate::sql::{Bind, Sql};
use crate::{AppState, QueryError};
use serde_json::Value;
use std::collections::BTreeSet;

/// The refresher's state as readers need it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshView {
    /// (topic, partition, offset): every row at or below is derived.
    pub derived: Vec<(String, i32, i64)>,
    /// The app's identity version already derived.
    pub identity_mark: Option<i64>,
    /// Days of the app's unfinished person deletions.
    pub deletion_days: Vec<String>,
    /// When the last run that moved `derived` started (epoch ms).
    pub run_started_ms: Option<i64>,
}

/// Reads the refresher's state from PostgreSQL.
#[derive(Debug)]
pub struct RefreshStore {
    pg: Pg,
}

impl RefreshStore {
    /// On `pg`.
    pub fn new(pg: Pg) -> Self {
        RefreshStore { pg }
    }

    /// The state of `scope` for `app_id` (the error is text: readers fall
    /// back to raw rows).
    pub async fn view(&self, scope: &str, app_id: &str) -> Result<RefreshView, String> {
        let (scope, app) = (scope.to_owned(), app_id.to_owned());
        self.pg
            .with(move |client| {
                Box::pin(async move {
                    let derived = client
                        .query(
                            "SELECT kafka_topic, kafka_partition, derived, \
                             (extract(epoch FROM run_started_at) * 1000)::bigint \
                             FROM refresh_derived WHERE scope = $1",
                            &[&scope],
                        )
                        .await?;
                    let mark = client
                        .query_opt(
                            "SELECT version FROM refresh_identity_marks WHERE scope = $1 AND app_id = $2",
                            &[&scope, &app],
                        )
                        .await?;
                    let deletions = client
                        .query(
                            "SELECT DISTINCT unnest(days) FROM person_deletions \
                             WHERE scope = $1 AND app_id = $2 AND status = 'deleting'",
                            &[&scope, &app],
                        )
                        .await?;
                    Ok(RefreshView {
                        run_started_ms: derived.iter().map(|r| r.get::<_, i64>(3)).min(),
                        derived: derived.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect(),
                        identity_mark: mark.map(|r| r.get(0)),
                        deletion_days: deletions.iter().map(|r| r.get(0)).collect(),
                    })
                })
            })
            .await
    }
}

fn statement(text: String, binds: Vec<Bind>) -> Sql {
    Sql::plain(text, binds)
}

/// `(…)`: a row's Kafka position is above what the refresher derived —
/// above its partition's offset in `derived`, or in a partition without one —
/// and its binds.
fn above(derived: &[(String, i32, i64)]) -> (String, Vec<Bind>) {
    let mut binds = Vec::new();
    let mut above = Vec::new();
    let mut known = Vec::new();
    for (topic, partition, offset) in derived {
        binds.extend([Bind::Text(topic.clone()), Bind::Int(i64::from(*partition))]);
        if *offset < 0 {
            // Nothing of the partition derived yet: every row.
            above.push("(kafka_topic = ? AND kafka_partition = ?)");
        } else {
            above.push("(kafka_topic = ? AND kafka_partition = ? AND kafka_offset > ?)");
            binds.push(Bind::Int(*offset));
        }
        known.push("(?, ?)");
    }
    for (topic, partition, _) in derived {
        binds.extend([Bind::Text(topic.clone()), Bind::Int(i64::from(*partition))]);
    }
    let unknown = if known.is_empty() {
        "1".to_owned()
    } else {
        format!(
            "(kafka_topic, kafka_partition) NOT IN ({})",
            known.join(", ")
        )
    };
    above.push(&unknown);
    (format!("({})", above.join(" OR ")), binds)
}

/// Days of the app's arrivals not derived (`day`).
pub fn arrival_days(app_id: &str, derived: &[(String, i32, i64)]) -> Sql {
    let (above, above_binds) = above(derived);
    let mut binds = vec![Bind::Text(app_id.into())];
    binds.extend(above_binds);
    statement(
        format!("SELECT DISTINCT toString(event_date) AS day FROM arrivals WHERE app_id = ? AND {above}"),
        binds,
    )
}

/// Days with events of ids whose person changed since the refresher's last
/// run (`day`): identity rows above the derived positions, and rows without a
/// position (ClickHouse migration 0011) above the app's identity `mark`.
pub fn identity_days(app_id: &str, derived: &[(String, i32, i64)], mark: i64) -> Sql {
    let (above, above_binds) = above(derived);
    let changed = format!("(kafka_topic != '' AND {above}) OR (kafka_topic = '' AND version > ?)");
    let mut binds = vec![Bind::Text(app_id.into()), Bind::Text(app_id.into())];
    binds.extend(above_binds);
    binds.push(Bind::Int(mark));
    statement(tally_schemas::person::changed_days_sql(&changed), binds)
}

fn days(rows: &[serde_json::Map<String, Value>]) -> impl Iterator<Item = String> + '_ {
    rows.iter()
        .filter_map(|r| r.get("day").and_then(Value::as_str).map(str::to_owned))
}

/// How long found raw days are shared (the panels of one dashboard load ask
/// together; a later request finds them again, so answers stay fresh).
pub const RAW_DAYS_SHARED: std::time::Duration = std::time::Duration::from_millis(250);

/// The raw days of an app and the refresher state they were found with.
pub type Fresh = (BTreeSet<String>, RefreshView);

/// The raw days of `app_id` (see the module doc), or `None` when the
/// refresher has no state for this database (answer everything from raw rows).
///
/// The refresher's state is read on every call (one PostgreSQL read); the two
/// ClickHouse statements that find the raw days are shared per app and state
/// by the requests arriving within [`RAW_DAYS_SHARED`] (at most the answer
/// cache's time): a refresher run changes the state and so the key.
pub async fn raw_days(state: &AppState, app_id: &str) -> Result<Option<Fresh>, QueryError> {
    let scope = &state.config.clickhouse.database;
    let view = match state.refresh.view(scope, app_id).await {
        Ok(view) => view,
        Err(err) => {
            // Slower, never wrong: without the refresher's state, raw rows answer.
            state.metrics.refresher_state_unreadable(&err);
            return Ok(None);
        }
    };
    if view.derived.is_empty() {
        return Ok(None);
    }
    let key = format!(
        "{}|{app_id}|{:?}",
        crate::serving::cache_tag(scope),
        (&view.derived, view.identity_mark, &view.deletion_days)
    );
    let (fresh, _) = state
        .raw_days
        .get_or_compute(&key, || find_raw_days(state, app_id, view))
        .await?;
    Ok(Some((*fresh).clone()))
}

async fn find_raw_days(
    state: &AppState,
    app_id: &str,
    view: RefreshView,
) -> Result<Fresh, QueryError> {
    let mut raw: BTreeSet<String> = view.deletion_days.iter().cloned().collect();
    raw.extend(days(
        &state
            .events
            .rows(&arrival_days(app_id, &view.derived))
            .await?,
    ));
    let mark = view.identity_mark.unwrap_or(0);
    raw.extend(days(
        &state
            .events
            .rows(&identity_days(app_id, &view.derived, mark))
            .await?,
    ));
    Ok((raw, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_freshness_statements() {
        let derived = [("events".to_owned(), 0, 41), ("events".to_owned(), 1, -1)];
        crate::sql::assert_golden("fresh_arrival_days", &arrival_days("app-1", &derived));
        crate::sql::assert_golden("fresh_arrival_days_no_state", &arrival_days("app-1", &[]));
        crate::sql::assert_golden("fresh_identity_days", &identity_days("app-1", &derived, 12));
    }
}
