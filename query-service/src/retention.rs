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

use crate::sql::{
    app_and_range, events_source, field, filter, invalid, Bind, Filter, Invalid, Sql, MAX_FILTERS,
    PERSON,
};
use serde::Deserialize;
use serde_json::Value;

/// Most periods.
pub const MAX_PERIODS: usize = 52;
/// `toRelativeMonthNum` of 1970-01-01 (year × 12 + month).
const MONTH_1970: i64 = 1970 * 12 + 1;

/// The first day of the cohort whose period number is `c` (see [`build`]),
/// for `period` (`day`, `week`, `month`).
pub(crate) fn cohort_label(period: &str) -> Option<String> {
    Some(match period {
        "day" => "addDays(toDate('1970-01-01'), c)".to_owned(),
        "week" => "addDays(toDate('1970-01-01'), c * 7 - 3)".to_owned(),
        "month" => format!("addMonths(toDate('1970-01-01'), c - {MONTH_1970})"),
        _ => return None,
    })
}

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
    /// Conditions on the start event: only starts that meet them put a user in a cohort.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Break cohorts down by a field of the user's first (qualifying) start event.
    #[serde(default)]
    pub breakdown: Option<String>,
    /// `in_range` (default: a user's first start in the range) or
    /// `first_time` (only users whose first start ever is in the range).
    #[serde(default)]
    pub cohort: Option<String>,
}

impl RetentionRequest {
    /// The time zone of the periods (UTC unless set).
    pub fn time_zone(&self) -> &str {
        tally_schemas::time_zone::or_default(self.tz.as_deref())
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
    let period = request.period.as_deref().unwrap_or("day");
    let period_of: fn(&str) -> String = match period {
        "day" => |x| format!("toRelativeDayNum(toDateTime(intDiv({x}, 1000)), ?)"),
        "week" => |x| format!("intDiv(toRelativeDayNum(toDateTime(intDiv({x}, 1000)), ?) + 3, 7)"),
        "month" => |x| format!("toRelativeMonthNum(toDateTime(intDiv({x}, 1000)), ?)"),
        _ => return Err(invalid("period", "day, week or month")),
    };
    let label = cohort_label(period).ok_or_else(|| invalid("period", "day, week or month"))?;
    let periods = request.periods.unwrap_or(7);
    if !(1..=MAX_PERIODS).contains(&periods) {
        return Err(invalid("periods", format!("1..={MAX_PERIODS}")));
    }
    for name in [&request.start_event, &request.return_event] {
        if !(1..=200).contains(&name.chars().count()) {
            return Err(invalid("event", "an event name of 1..=200 characters"));
        }
    }
    if request.filters.len() > MAX_FILTERS {
        return Err(invalid("filters", format!("at most {MAX_FILTERS} filters")));
    }
    let first_time = match request.cohort.as_deref().unwrap_or("in_range") {
        "in_range" => false,
        "first_time" => true,
        _ => return Err(invalid("cohort", "in_range or first_time")),
    };
    let start = Bind::Text(request.start_event.clone());
    let back = Bind::Text(request.return_event.clone());
    let zone = Bind::Text(request.time_zone().to_owned());
    // A qualifying start: the start event meeting the filters.
    let (mut qualifies, mut qualifies_binds) = ("name = ?".to_owned(), vec![start.clone()]);
    for f in &request.filters {
        let (condition, b) = filter(f)?;
        qualifies.push_str(&format!(" AND {condition}"));
        qualifies_binds.extend(b);
    }
    let breakdown = match &request.breakdown {
        Some(name) => {
            Some(field(name).map_err(|_| invalid("breakdown", "a built-in field or a property"))?)
        }
        None => None,
    };
    // Binds in text order: the two periods' zones, then the inner select's.
    let mut binds = vec![zone.clone(), zone];
    binds.extend(qualifies_binds.iter().cloned());
    let by = match &breakdown {
        Some((expr, b)) => {
            binds.extend(b.iter().cloned());
            binds.extend(qualifies_binds.iter().cloned());
            format!("argMinIf({expr}, ts_ms, {qualifies}) AS b, ")
        }
        None => String::new(),
    };
    binds.push(back.clone());
    // Users are persons: every distinct id linked to one person is one user.
    let texts = || {
        let by = breakdown.iter().map(|(b, _)| b.as_str());
        by.chain(std::iter::once(qualifies.as_str()))
    };
    let (source, source_binds) = events_source(app_id, texts());
    binds.extend(source_binds);
    let (mut conditions, guard) = app_and_range(app_id, range);
    binds.extend(guard);
    if !request.include_bots {
        conditions.push("is_bot = 0".into());
    }
    conditions.push("(name = ? OR name = ?)".into());
    binds.extend([start, back]);
    if first_time {
        // Users whose first qualifying start ever (not only in the range) is in it.
        let bots = if request.include_bots {
            ""
        } else {
            " AND is_bot = 0"
        };
        conditions.push(format!(
            "{PERSON} IN (SELECT {PERSON} AS first_person FROM {source} WHERE app_id = ? \
             AND {qualifies}{bots} GROUP BY first_person HAVING min(ts_ms) >= ? AND min(ts_ms) < ?)"
        ));
        binds.extend(events_source(app_id, texts()).1);
        binds.push(Bind::Text(app_id.to_owned()));
        binds.extend(qualifies_binds.iter().cloned());
        binds.extend([Bind::Int(range.0), Bind::Int(range.1)]);
    }
    binds.extend(qualifies_binds);
    let columns: Vec<String> = (0..=periods)
        .map(|k| format!("toFloat64(countIf(has(offsets, {k}))) AS p{k}"))
        .collect();
    // Same name: the first itself is one of the returns and must not count as
    // its own return; exactly that one occurrence is left out.
    let sorted = "arraySort(returns)";
    let returns = if request.start_event == request.return_event {
        format!("arrayFilter((t, i) -> i != indexOf({sorted}, first), {sorted}, arrayEnumerate({sorted}))")
    } else {
        "returns".to_owned()
    };
    let (b_out, b_mid, b_group) = if breakdown.is_some() {
        ("toString(b) AS breakdown, ", "b, ", ", b")
    } else {
        ("", "", "")
    };
    let text = format!(
        "SELECT toString({label}) AS cohort, {b_out}toFloat64(count()) AS size, {} FROM (\
         SELECT {} AS c, {b_mid}arrayMap(t -> {} - c, arrayFilter(t -> t >= first, {returns})) AS offsets FROM (\
         SELECT minIf(ts_ms, {qualifies}) AS first, {by}groupArrayIf(ts_ms, name = ?) AS returns \
         FROM {source} WHERE {} GROUP BY {PERSON} HAVING countIf({qualifies}) > 0)) \
         GROUP BY c{b_group} ORDER BY c{b_group}",
        columns.join(", "),
        period_of("first"),
        period_of("t"),
        conditions.join(" AND "),
    );
    Ok((Sql::plain(text, binds), periods))
}

/// The answer's `cohorts` from the rows of a retention statement (`cohort`,
/// `size`, `p0`…`p{periods}`, and `breakdown` when `by`).
pub(crate) fn cohorts(rows: &[crate::answer::Row], periods: usize, by: bool) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            let size = row.get("size").and_then(Value::as_f64).unwrap_or(0.0);
            let retained: Vec<u64> = (0..=periods)
                .map(|k| row.get(&format!("p{k}")).and_then(Value::as_f64).unwrap_or(0.0) as u64)
                .collect();
            let rates: Vec<f64> = retained
                .iter()
                .map(|n| if size > 0.0 { *n as f64 / size } else { 0.0 })
                .collect();
            let mut cohort = serde_json::json!({"cohort": row.get("cohort"), "size": size as u64, "retained": retained, "rates": rates});
            if by {
                cohort["breakdown"] = row.get("breakdown").cloned().unwrap_or(Value::Null);
            }
            cohort
        })
        .collect()
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
        let weekly = sql.clone();
        let monthly: RetentionRequest = serde_json::from_value(json!({
            "start_event": "signup", "return_event": "purchase", "period": "month", "periods": 3,
            "tz": "Asia/Kolkata", "range": "90d"}))
        .unwrap();
        let (monthly, _) =
            build("app-1", &monthly, (1_700_000_000_000, 1_707_776_000_000)).unwrap();
        crate::sql::assert_golden("retention_monthly_kolkata", &monthly);
        let by_plan: RetentionRequest = serde_json::from_value(json!({
            "start_event": "signup", "return_event": "purchase", "breakdown": "person.plan",
            "filters": [{"property": "person.plan", "op": "neq", "value": "stale"}], "range": "30d"}))
        .unwrap();
        let (by_plan, _) =
            build("app-1", &by_plan, (1_700_000_000_000, 1_702_592_000_000)).unwrap();
        crate::sql::assert_golden("retention_by_person_trait", &by_plan);
        let options: RetentionRequest = serde_json::from_value(json!({
            "start_event": "signup", "return_event": "signup", "filters": [{"property": "plan", "op": "eq", "value": "pro"}],
            "breakdown": "$country", "cohort": "first_time", "range": "30d"})).unwrap();
        let (with_options, _) =
            build("app-1", &options, (1_700_000_000_000, 1_702_592_000_000)).unwrap();
        crate::sql::assert_golden("retention_first_time_filtered_by_country", &with_options);
        // Milliseconds, at or after the first; a same-name first is not its own return.
        assert!(weekly
            .text
            .contains("arrayFilter(t -> t >= first, returns)"));
        let same: RetentionRequest = serde_json::from_value(json!({
            "start_event": "visit", "return_event": "visit", "range": "7d"}))
        .unwrap();
        let (sql, periods) = build("app-1", &same, (0, 1)).unwrap();
        assert_eq!(periods, 7);
        assert!(sql.text.contains("i != indexOf(arraySort(returns), first)"));
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
