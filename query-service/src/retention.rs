//! Retention (`POST /api/v1/analytics/{app_id}/retention`): users grouped into
//! cohorts by the day or week of their first `start_event` in the range; for
//! each of the next N periods, how many of them did `return_event` (strictly
//! after their first `start_event`) in that period. Period 0 is the cohort's
//! own period. The grid is checked against a brute-force computation in
//! `testkit/tests/retention.rs`. One statement, valid on ClickHouse 18.16.

use crate::adhoc::{app_and_range, invalid, Bind, Invalid, Sql};
use serde::Deserialize;
use serde_json::Value;

/// Most periods.
pub const MAX_PERIODS: usize = 52;

/// The `/retention` request body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    /// Event whose first occurrence puts a user in a cohort.
    pub start_event: String,
    /// Event that counts as returning.
    pub return_event: String,
    /// `day` (default) or `week`.
    #[serde(default)]
    pub period: Option<String>,
    /// Periods after the cohort's (default 7, at most [`MAX_PERIODS`]).
    #[serde(default)]
    pub periods: Option<usize>,
    /// Range (as in `/query`).
    pub range: Value,
    /// Count bot traffic too (default: excluded).
    #[serde(default)]
    pub include_bots: bool,
}

/// Builds the statement. Columns: `cohort` (date text), `size`, `p0`…`pN`.
pub fn build(
    app_id: &str,
    request: &RetentionRequest,
    range: (i64, i64),
) -> Result<(Sql, usize), Invalid> {
    let (bucket, relative) = match request.period.as_deref().unwrap_or("day") {
        "day" => ("toDate", "toRelativeDayNum"),
        "week" => ("toMonday", "toRelativeWeekNum"),
        _ => return Err(invalid("period", "day or week")),
    };
    let periods = request.periods.unwrap_or(7);
    if !(1..=MAX_PERIODS).contains(&periods) {
        return Err(invalid("periods", format!("1..={MAX_PERIODS}")));
    }
    for name in [&request.start_event, &request.return_event] {
        if !(1..=200).contains(&name.len()) {
            return Err(invalid("event", "an event name of 1..=200 bytes"));
        }
    }
    let start = Bind::Text(request.start_event.clone());
    let back = Bind::Text(request.return_event.clone());
    let mut binds = vec![start.clone(), back.clone()];
    let (mut conditions, guard) = app_and_range(app_id, range);
    binds.extend(guard);
    if !request.include_bots {
        conditions.push("is_bot = 0".into());
    }
    conditions.push("(name = ? OR name = ?)".into());
    binds.extend([start, back]);
    let columns: Vec<String> = (0..=periods)
        .map(|k| format!("toFloat64(countIf(has(offsets, {k}))) AS p{k}"))
        .collect();
    let text = format!(
        "SELECT toString({bucket}(first)) AS cohort, toFloat64(count()) AS size, {} FROM (\
         SELECT first, arrayMap(t -> {relative}(t) - {relative}(first), arrayFilter(t -> t > first, returns)) AS offsets FROM (\
         SELECT minIf(timestamp, name = ?) AS first, groupArrayIf(timestamp, name = ?) AS returns \
         FROM events WHERE {} GROUP BY distinct_id HAVING countIf(name = ?) > 0)) \
         GROUP BY cohort ORDER BY cohort",
        columns.join(", "),
        conditions.join(" AND "),
    );
    binds.push(Bind::Text(request.start_event.clone()));
    Ok((
        Sql {
            text,
            binds,
            dimensions: Vec::new(),
            metrics: Vec::new(),
            max_groups: None,
        },
        periods,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn golden_retention_statement_and_refusals() {
        let request: RetentionRequest = serde_json::from_value(json!({
            "start_event": "signup", "return_event": "page_view", "period": "week", "periods": 4, "range": "90d"})).unwrap();
        let (sql, periods) =
            build("app-1", &request, (1_700_000_000_000, 1_707_776_000_000)).unwrap();
        assert_eq!(periods, 4);
        assert_eq!(sql.text.matches('?').count(), sql.binds.len());
        let rendered = format!("{}\n-- binds: {:?}\n", sql.text, sql.binds);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/retention_weekly.sql");
        if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        assert_eq!(rendered, std::fs::read_to_string(&path).unwrap());
        for (body, field) in [
            (
                json!({"start_event": "a", "return_event": "b", "period": "month", "range": "7d"}),
                "period",
            ),
            (
                json!({"start_event": "a", "return_event": "b", "periods": 0, "range": "7d"}),
                "periods",
            ),
            (
                json!({"start_event": "", "return_event": "b", "range": "7d"}),
                "event",
            ),
        ] {
            let request: RetentionRequest = serde_json::from_value(body).unwrap();
            assert_eq!(build("a", &request, (0, 1)).unwrap_err().0, field);
        }
    }
}
