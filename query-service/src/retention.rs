//! Retention (`POST /api/v1/analytics/{app_id}/retention`): users grouped into
//! cohorts by the calendar day, week (from Monday) or month of their first
//! `start_event` in the range, in the time zone `tz` (default: the app's); for
//! period k = 0…N, how many of them did `return_event` in the cohort's period + k.
//!
//! Exact definition, in milliseconds (`ts_ms`, not the whole-second
//! `timestamp`): a user's *first* is their earliest `start_event` in the
//! range; a return counts when it is a `return_event` in the range at or
//! after the first (`ts_ms >= first`, so one in the same millisecond counts),
//! and its period is the number of calendar days (Monday-based weeks, months)
//! of the time zone between the first and the return. Period 0 is therefore "returned in the cohort's
//! own period, at or after the first". When `return_event` is the same event
//! name as `start_event`, the first itself is not its own return: another
//! occurrence is needed (one in the same millisecond counts). The grid is
//! checked against a brute-force computation in `testkit/tests/retention.rs`.
//! One statement, valid on ClickHouse 18.16 and current ClickHouse: the
//! calendar period of a time comes from `toRelativeDayNum`/`toRelativeMonthNum`
//! of its whole second with the zone given explicitly (no DateTime64, no server
//! time zone); the comparison with the first stays in milliseconds.

use crate::sql::{app_and_range, invalid, Bind, Invalid, Sql};
use serde::Deserialize;
use serde_json::Value;

/// Most periods.
pub const MAX_PERIODS: usize = 52;
/// `toRelativeMonthNum` of 1970-01-01 (year × 12 + month).
const MONTH_1970: i64 = 1970 * 12 + 1;

/// The `/retention` request body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    /// Event whose first occurrence puts a user in a cohort.
    pub start_event: String,
    /// Event that counts as returning.
    pub return_event: String,
    /// `day` (default), `week` or `month`.
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
    /// Time zone of the calendar periods (an IANA name; default: the app's).
    #[serde(default)]
    pub tz: Option<String>,
}

impl RetentionRequest {
    /// The time zone of the periods (UTC unless set).
    pub fn time_zone(&self) -> &str {
        self.tz
            .as_deref()
            .unwrap_or(tally_schemas::time_zone::DEFAULT_TIME_ZONE)
    }
}

/// Builds the statement. Columns: `cohort` (date text), `size`, `p0`…`pN`.
pub fn build(
    app_id: &str,
    request: &RetentionRequest,
    range: (i64, i64),
) -> Result<(Sql, usize), Invalid> {
    // Period number of an epoch-ms expression `x` in the zone (bound: `?`), and
    // the cohort's first day from its period number `c`. Days count from
    // 1970-01-01 (a Thursday: day d is in Monday-week (d + 3) / 7, which starts
    // on day 7w - 3); months from January 1970.
    let (period_of, label): (fn(&str) -> String, String) =
        match request.period.as_deref().unwrap_or("day") {
            "day" => (
                |x| format!("toRelativeDayNum(toDateTime(intDiv({x}, 1000)), ?)"),
                "addDays(toDate('1970-01-01'), c)".to_owned(),
            ),
            "week" => (
                |x| format!("intDiv(toRelativeDayNum(toDateTime(intDiv({x}, 1000)), ?) + 3, 7)"),
                "addDays(toDate('1970-01-01'), c * 7 - 3)".to_owned(),
            ),
            "month" => (
                |x| format!("toRelativeMonthNum(toDateTime(intDiv({x}, 1000)), ?)"),
                format!("addMonths(toDate('1970-01-01'), c - {MONTH_1970})"),
            ),
            _ => return Err(invalid("period", "day, week or month")),
        };
    let periods = request.periods.unwrap_or(7);
    if !(1..=MAX_PERIODS).contains(&periods) {
        return Err(invalid("periods", format!("1..={MAX_PERIODS}")));
    }
    for name in [&request.start_event, &request.return_event] {
        if !(1..=200).contains(&name.chars().count()) {
            return Err(invalid("event", "an event name of 1..=200 characters"));
        }
    }
    let start = Bind::Text(request.start_event.clone());
    let back = Bind::Text(request.return_event.clone());
    let zone = Bind::Text(request.time_zone().to_owned());
    // The two period expressions' zones come first in the text.
    let mut binds = vec![zone.clone(), zone, start.clone(), back.clone()];
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
    // Same name: the sorted array's head is the first itself (minIf over the
    // same rows), which must not count as its own return.
    let returns = if request.start_event == request.return_event {
        "arrayPopFront(arraySort(returns))"
    } else {
        "returns"
    };
    let text = format!(
        "SELECT toString({label}) AS cohort, toFloat64(count()) AS size, {} FROM (\
         SELECT {} AS c, arrayMap(t -> {} - c, arrayFilter(t -> t >= first, {returns})) AS offsets FROM (\
         SELECT minIf(ts_ms, name = ?) AS first, groupArrayIf(ts_ms, name = ?) AS returns \
         FROM events WHERE {} GROUP BY distinct_id HAVING countIf(name = ?) > 0)) \
         GROUP BY c ORDER BY c",
        columns.join(", "),
        period_of("first"),
        period_of("t"),
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
        crate::sql::assert_golden("retention_weekly", &sql);
        let monthly: RetentionRequest = serde_json::from_value(json!({
            "start_event": "signup", "return_event": "purchase", "period": "month", "periods": 3,
            "tz": "Asia/Kolkata", "range": "90d"}))
        .unwrap();
        let (sql, _) = build("app-1", &monthly, (1_700_000_000_000, 1_707_776_000_000)).unwrap();
        crate::sql::assert_golden("retention_monthly_kolkata", &sql);
        // Milliseconds, at or after the first; a same-name first is not its own return.
        assert!(sql.text.contains("arrayFilter(t -> t >= first, returns)"));
        let same: RetentionRequest = serde_json::from_value(json!({
            "start_event": "visit", "return_event": "visit", "range": "7d"}))
        .unwrap();
        let (sql, periods) = build("app-1", &same, (0, 1)).unwrap();
        assert_eq!(periods, 7);
        assert!(sql.text.contains("arrayPopFront(arraySort(returns))"));
        assert!(sql
            .text
            .contains("toRelativeDayNum(toDateTime(intDiv(first, 1000)), ?)"));
        assert_eq!(sql.binds[0], Bind::Text("UTC".into()));
        for (body, field) in [
            (
                json!({"start_event": "a", "return_event": "b", "period": "year", "range": "7d"}),
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
