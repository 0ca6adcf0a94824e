//! Which days a report answer may take from the refresher's derived tables
//! (issue 16: exact and fresh at once). A day is *raw* — answered from raw
//! rows — when any of these holds, else it is answered from the reports:
//!
//! * it holds a row the refresher has not derived: an `arrivals` row (written
//!   by the aggregator before its raw row) above the offset at or below which
//!   every row is derived (`refresh_derived`, per Kafka partition; a partition
//!   without one counts as not derived at all);
//! * a distinct id with events on it changed person since the refresher's
//!   last run (`person_distinct_ids` newer than `refresh_identity_marks`);
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

/// Days of the app's arrivals not derived (`day`).
pub fn arrival_days(app_id: &str, derived: &[(String, i32, i64)]) -> Sql {
    let mut binds = vec![Bind::Text(app_id.into())];
    let mut above = Vec::new();
    let mut known = Vec::new();
    for (topic, partition, offset) in derived {
        binds.extend([Bind::Text(topic.clone()), Bind::Int(i64::from(*partition))]);
        if *offset < 0 {
            // Nothing of the partition derived yet: every arrival.
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
    statement(
        format!(
            "SELECT DISTINCT toString(event_date) AS day FROM arrivals WHERE app_id = ? AND ({})",
            above.join(" OR ")
        ),
        binds,
    )
}

/// The app's highest identity version (`m0`).
pub fn identity_top(app_id: &str) -> Sql {
    statement(
        "SELECT toFloat64(max(version)) AS m0 FROM person_distinct_ids WHERE app_id = ?".into(),
        vec![Bind::Text(app_id.into())],
    )
}

/// Days with events of ids whose person changed in versions `(mark, top]` (`day`).
pub fn identity_days(app_id: &str, mark: i64, top: i64) -> Sql {
    statement(
        tally_schemas::person::CHANGED_DAYS_SQL.into(),
        vec![
            Bind::Text(app_id.into()),
            Bind::Text(app_id.into()),
            Bind::Int(mark),
            Bind::Int(top),
        ],
    )
}

fn days(rows: &[serde_json::Map<String, Value>]) -> impl Iterator<Item = String> + '_ {
    rows.iter()
        .filter_map(|r| r.get("day").and_then(Value::as_str).map(str::to_owned))
}

/// The raw days of `app_id` (see the module doc), or `None` when the
/// refresher has no state for this database (answer everything from raw rows).
pub async fn raw_days(
    state: &AppState,
    app_id: &str,
) -> Result<Option<(BTreeSet<String>, RefreshView)>, QueryError> {
    let scope = &state.config.clickhouse.database;
    let view = match state.refresh.view(scope, app_id).await {
        Ok(view) => view,
        Err(err) => {
            // Slower, never wrong: without the refresher's state, raw rows answer.
            tracing::warn!(error = %err, "refresher state unreadable: reports answered from raw rows");
            return Ok(None);
        }
    };
    if view.derived.is_empty() {
        return Ok(None);
    }
    let mut raw: BTreeSet<String> = view.deletion_days.iter().cloned().collect();
    raw.extend(days(
        &state
            .events
            .rows(&arrival_days(app_id, &view.derived))
            .await?,
    ));
    let top = state.events.rows(&identity_top(app_id)).await?;
    let top = top
        .first()
        .and_then(|r| r.get("m0"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0) as i64;
    let mark = view.identity_mark.unwrap_or(0);
    if top > mark {
        raw.extend(days(
            &state.events.rows(&identity_days(app_id, mark, top)).await?,
        ));
    }
    Ok(Some((raw, view)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_freshness_statements() {
        let derived = [("events".to_owned(), 0, 41), ("events".to_owned(), 1, -1)];
        crate::sql::assert_golden("fresh_arrival_days", &arrival_days("app-1", &derived));
        crate::sql::assert_golden("fresh_arrival_days_no_state", &arrival_days("app-1", &[]));
        crate::sql::assert_golden("fresh_identity_top", &identity_top("app-1"));
        crate::sql::assert_golden("fresh_identity_days", &identity_days("app-1", 12, 20));
    }
}
