//! Funnels (`POST /api/v1/analytics/{app_id}/funnel`): ordered steps, each an
//! event name with optional filters, within a conversion window.
//!
//! Definition (the reference checker in `testkit/tests/funnel.rs` computes the
//! same by brute force): `range` selects the step-1 events (starts) — their
//! time t must satisfy from <= t < to. A user reaches step k from a start s1
//! when there are events s2 < s3 < … < sk of steps 2…k, each the earliest of
//! its step after the previous one, all within `window` of s1 (relaxed order:
//! other events may come between). Steps 2…k are not limited to the range: a
//! conversion that completes after `to` but within the window of its start
//! counts, so the statement reads events in [from, to + window) (with the
//! matching `event_date` partitions). A user's level is the highest step
//! reached from any of their starts; their conversion times are measured from
//! the earliest start that reaches that level. Per step the answer gives
//! users, conversion from the previous and the first step, drop-off and the
//! median time to convert from step 1; optionally broken down by a column or
//! property of the user's first start.
//!
//! That is the relaxed order (the default); in strict order each next step
//! must be the user's very next event in time (see [`crate::funnel_order`],
//! which builds the per-user part in each order). In any order, a start is an
//! event of any step in the range, and step k counts the users with events of
//! k distinct steps within the window of one start (PostHog's "unordered").
//!
//! One statement, valid on ClickHouse 18.16 (no `windowFunnel`, which there
//! only takes whole seconds, and no strict mode in it that sees events of
//! other names): per user, arrays of times; per start, the chain of next
//! steps; the best start encoded with its level in one number.

use crate::funnel_order::Core;
pub use crate::funnel_order::{MAX_STEP_EVENTS, MAX_STRICT_TIMES};
use crate::sql::{
    app_and_range, events_source, field, filter, invalid, median_if, split_unit, time_bucket, Bind,
    Filter, Invalid, Sql,
};
use serde::Deserialize;
use serde_json::Value;

/// Most steps.
pub const MAX_STEPS: usize = 8;
/// Longest conversion window, ms (90 days).
pub const MAX_WINDOW_MS: i64 = 90 * 86_400_000;
/// One step: an event name, or `{"event": …, "filters": […]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// Just a name.
    Name(String),
    /// A name with conditions.
    Filtered {
        /// Event name.
        event: String,
        /// Conditions on the step's event.
        #[serde(default)]
        filters: Vec<Filter>,
    },
}

/// An exclusion: a user whose conversion from a start has this event between
/// two of its steps does not count from that start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Event name.
    pub event: String,
    /// Conditions on it.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// The steps it may not come between, 1-based `[from, to]` (default: the
    /// first and the last step).
    #[serde(default)]
    pub between: Option<(usize, usize)>,
}

/// A page of the users at a step (`dropped`: of those who reached it and no further).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersAt {
    /// The step, 1-based.
    pub step: usize,
    /// Only the users who reached `step` but not the next one.
    #[serde(default)]
    pub dropped: bool,
    /// Most users in the page (default 100, at most [`MAX_USERS`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Users to skip (by `distinct_id` order).
    #[serde(default)]
    pub offset: usize,
}

/// Most users in one page of a user list.
pub const MAX_USERS: usize = 1_000;

/// The `/funnel` request body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelRequest {
    /// 2..=8 steps in order.
    pub steps: Vec<Step>,
    /// Range of the step-1 events (as in `/query`); later steps count within
    /// the window of their start, even after the range's end.
    pub range: Value,
    /// Conversion window from the first step, e.g. `"1d"`, `"2h"`, `"30m"` (default `"1d"`).
    #[serde(default)]
    pub window: Option<String>,
    /// `relaxed` (default: other events may come between steps), `strict`
    /// (each step is the user's next event) or `any` (the steps in any order,
    /// all within the window of the first of them).
    #[serde(default)]
    pub order: Option<String>,
    /// Break down by a column or property of the user's first step-1 event,
    /// or by its time bucket (`day`, `week`, … in `tz`): a conversion trend.
    #[serde(default)]
    pub breakdown: Option<String>,
    /// Time zone of a time-bucket breakdown (an IANA name; default: the app's).
    #[serde(default)]
    pub tz: Option<String>,
    /// Events that may not come between two steps (relaxed order; at most 5).
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
    /// Instead of the counts: a page of the users at a step, or dropped after it.
    #[serde(default)]
    pub users: Option<UsersAt>,
    /// Count bot traffic too (default: excluded).
    #[serde(default)]
    pub include_bots: bool,
}

/// How steps follow each other (see [`crate::funnel_order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Relaxed,
    Strict,
    Any,
}

/// Parses `"30m"`, `"2h"`, `"7d"` into ms.
pub fn window_ms(text: &str) -> Result<i64, Invalid> {
    let bad = || invalid("window", "like \"30m\", \"2h\" or \"7d\", at most 90 days");
    let (number, unit) = split_unit(text);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit).ok_or_else(bad)?;
    if ms <= 0 || ms > MAX_WINDOW_MS {
        return Err(bad());
    }
    Ok(ms)
}

impl FunnelRequest {
    /// The time zone of a time-bucket breakdown (UTC unless set).
    pub fn time_zone(&self) -> &str {
        tally_schemas::time_zone::or_default(self.tz.as_deref())
    }
}

/// The statement of a page of users (`distinct_id`, ordered) from the per-user rows.
fn users_page(
    users: &UsersAt,
    n: usize,
    middle: &str,
    mut binds: Vec<Bind>,
) -> Result<Sql, Invalid> {
    let limit = users.limit.unwrap_or(100);
    if !(1..=n).contains(&users.step)
        || (users.dropped && users.step == n)
        || !(1..=MAX_USERS).contains(&limit)
        || users.offset > 1_000_000
    {
        return Err(invalid(
            "users",
            format!("a step of 1..={n} (dropped: before the last), a limit of 1..={MAX_USERS}, an offset up to 1000000"),
        ));
    }
    let at = if users.dropped {
        "level = ?"
    } else {
        "level >= ?"
    };
    binds.push(Bind::Int(users.step as i64));
    binds.push(Bind::Int(limit as i64 + 1));
    binds.push(Bind::Int(users.offset as i64));
    // The step times are read too: ClickHouse 18.16 loses the step arrays the
    // per-user key reads inside lambdas unless the query above reads them.
    let times: String = (2..=n).map(|k| format!(", e{k}")).collect();
    Ok(Sql {
        text: format!(
            "SELECT person AS distinct_id, level{times} FROM ({middle}) WHERE {at} ORDER BY person LIMIT ? OFFSET ?"
        ),
        binds,
        dimensions: Vec::new(),
        metrics: Vec::new(),
        max_groups: None,
    })
}

/// The step names, in order.
pub fn step_names(request: &FunnelRequest) -> Vec<String> {
    request
        .steps
        .iter()
        .map(|s| match s {
            Step::Name(name) | Step::Filtered { event: name, .. } => name.clone(),
        })
        .collect()
}

/// Builds the funnel statement. Result columns: `b` (breakdown, if any), then
/// per step k ≥ 1 `r{k}` (users reaching it) and `t{k}` (median ms from step 1
/// to step k, -1 when nobody reached it).
pub fn build(app_id: &str, request: &FunnelRequest, range: (i64, i64)) -> Result<Sql, Invalid> {
    let n = request.steps.len();
    if !(2..=MAX_STEPS).contains(&n) {
        return Err(invalid("steps", format!("2..={MAX_STEPS} steps")));
    }
    let order = match request.order.as_deref() {
        None | Some("relaxed") => Order::Relaxed,
        Some("strict") => Order::Strict,
        Some("any") => Order::Any,
        Some(_) => return Err(invalid("order", "\"relaxed\", \"strict\" or \"any\"")),
    };
    let window = window_ms(request.window.as_deref().unwrap_or("1d"))?;
    // Step conditions (each used twice: in its groupArrayIf and in the WHERE).
    // Step 1 carries the range's end: only starts in the range count.
    let mut steps: Vec<(String, Vec<Bind>)> = Vec::new();
    for (k, step) in request.steps.iter().enumerate() {
        let (name, filters) = match step {
            Step::Name(name) => (name, &[][..]),
            Step::Filtered { event, filters } => (event, filters.as_slice()),
        };
        if !(1..=200).contains(&name.chars().count()) || filters.len() > 10 {
            return Err(invalid(
                "steps",
                "an event name of 1..=200 characters and at most 10 filters",
            ));
        }
        let mut condition = vec!["name = ?".to_owned()];
        let mut binds = vec![Bind::Text(name.clone())];
        if k == 0 && order != Order::Any {
            condition.push("ts_ms < ?".to_owned());
            binds.push(Bind::Int(range.1));
        }
        for f in filters {
            let (c, b) = filter(f)?;
            condition.push(c);
            binds.extend(b);
        }
        steps.push((format!("({})", condition.join(" AND ")), binds));
    }
    if !request.exclusions.is_empty() && order != Order::Relaxed {
        return Err(invalid(
            "exclusions",
            "exclusions apply to the relaxed order (in strict order no event may come between steps; in any order there is no \"between\")",
        ));
    }
    if request.exclusions.len() > 5 {
        return Err(invalid("exclusions", "at most 5"));
    }
    let mut exclusions = Vec::new();
    for exclusion in &request.exclusions {
        let (from, to) = exclusion.between.unwrap_or((1, n));
        let steps_ok = 1 <= from && from < to && to <= n;
        if !steps_ok
            || !(1..=200).contains(&exclusion.event.chars().count())
            || exclusion.filters.len() > 10
        {
            return Err(invalid(
                "exclusions",
                format!("an event name of 1..=200 characters, at most 10 filters, between steps 1 <= from < to <= {n}"),
            ));
        }
        let mut condition = vec!["name = ?".to_owned()];
        let mut binds = vec![Bind::Text(exclusion.event.clone())];
        for f in &exclusion.filters {
            let (c, b) = filter(f)?;
            condition.push(c);
            binds.extend(b);
        }
        exclusions.push((
            (format!("({})", condition.join(" AND ")), binds),
            (from, to),
        ));
    }
    // Read [from, to + window): a start before `to` converts before `to + window`.
    let (conditions, guard) = app_and_range(app_id, (range.0, range.1.saturating_add(window)));
    let breakdown = match request.breakdown.as_deref() {
        None => None,
        Some(b) => Some(match time_bucket(b, "timestamp", request.time_zone()) {
            Some(bucket) => bucket,
            None => field(b)
                .map_err(|_| invalid("breakdown", "a column, a property or a time bucket"))?,
        }),
    };
    let texts = steps
        .iter()
        .map(|(c, _)| c.as_str())
        .chain(exclusions.iter().map(|((c, _), _)| c.as_str()))
        .chain(breakdown.iter().map(|(b, _)| b.as_str()));
    let (source, source_binds) = events_source(app_id, texts);
    let core = Core {
        steps: &steps,
        breakdown,
        source,
        source_binds,
        conditions,
        guard,
        include_bots: request.include_bots,
        exclusions: &exclusions,
        with_user: request.users.is_some(),
        window,
        starts_before: range.1,
    };
    let (middle, binds) = match order {
        Order::Relaxed => core.relaxed(),
        Order::Strict => core.strict(),
        Order::Any => core.any_order(),
    };
    if let Some(users) = &request.users {
        return users_page(users, n, &middle, binds);
    }
    // Counts as Float64 (JSONEachRow quotes 64-bit integers); no median → -1.
    let mut outer = Vec::new();
    for k in 1..=n {
        outer.push(format!("toFloat64(countIf(level >= {k})) AS r{k}"));
        // Step 1 is the start itself: 0 ms.
        let median = if k == 1 {
            "0".to_owned()
        } else {
            median_if(
                &format!("toFloat64(e{k} - start)"),
                &format!("level >= {k}"),
            )
        };
        outer.push(format!("if(r{k} = 0, -1, {median}) AS t{k}"));
    }
    let (select_b, group_b) = if request.breakdown.is_some() {
        (
            "toString(b) AS b, ",
            " GROUP BY b ORDER BY r1 DESC LIMIT 1001",
        )
    } else {
        ("", "")
    };
    let text = format!(
        "SELECT {select_b}{} FROM ({middle}){group_b}",
        outer.join(", ")
    );
    Ok(Sql {
        text,
        binds,
        dimensions: Vec::new(),
        metrics: Vec::new(),
        max_groups: None,
    })
}

/// One step of an answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepResult {
    /// Event name.
    pub step: String,
    /// Users who reached it.
    pub users: u64,
    /// Share of the previous step's users (1 for the first step).
    pub conversion_from_previous: f64,
    /// Share of the first step's users.
    pub conversion_from_first: f64,
    /// Previous step's users who did not reach this one.
    pub drop_off: u64,
    /// Median time from step 1 to this step, ms (null if nobody reached it).
    pub median_ms_to_convert: Option<f64>,
}

/// Shapes one result row (`r{k}`, `t{k}`) into steps.
pub fn steps_of(row: &serde_json::Map<String, Value>, names: &[String]) -> Vec<StepResult> {
    let number = |key: String| row.get(&key).and_then(Value::as_f64).unwrap_or(0.0);
    let first = number("r1".into());
    let mut previous = first;
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let users = number(format!("r{}", i + 1));
            let median = number(format!("t{}", i + 1));
            let share = |of: f64| if of > 0.0 { users / of } else { 0.0 };
            let result = StepResult {
                step: name.clone(),
                users: users as u64,
                conversion_from_previous: if i == 0 { 1.0 } else { share(previous) },
                conversion_from_first: share(first),
                drop_off: (previous - users).max(0.0) as u64,
                median_ms_to_convert: (median >= 0.0).then_some(median),
            };
            previous = users;
            result
        })
        .collect()
}

#[cfg(test)]
#[path = "funnel_tests.rs"]
mod tests;
