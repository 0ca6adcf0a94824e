//! The SQL building blocks every ClickHouse statement of the query service is
//! made of: [`Sql`] and its [`Bind`]s, refusals ([`Invalid`]) and the request
//! limits, the app-and-range guard, columns and property lookups, filters
//! (`filter`), the shared request conditions (bots, sampling, filters,
//! segment), group-by dimensions, time buckets, and [`utc_date`].
//!
//! Contract: nothing the client sends is spliced into SQL — columns and
//! functions come from fixed tables here, every value is a bound parameter —
//! and the app guard (`app_id = ?`) is the first condition of every
//! statement built with [`app_and_range`]. This module is a leaf: it imports
//! nothing else of the crate.

mod filter;
mod number;
mod person;
mod select;

pub use filter::{
    bare_builtins, field, field_in, filter, filter_in, resolved, Filter, Segment, BUILTIN, COLUMNS,
    PROPERTY,
};
pub use number::{comparable, number_of, parse_number, MIN_FILTER_MAGNITUDE, NUMBER_PATTERN};
pub use person::{events_source, join as person_join, reads_traits, PERSON, PERSON_TRAIT};
pub use select::{additive, side_by_side, Select};

/// Most dimensions in `group_by`.
pub const MAX_GROUP_BY: usize = 3;
/// Most filters.
pub const MAX_FILTERS: usize = 20;
/// Most values of an `in`/`not_in` filter.
pub const MAX_IN_VALUES: usize = 1_000;
/// Most result rows.
pub const MAX_ROWS: usize = 10_000;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// Number.
    Float(f64),
    /// List of texts.
    List(Vec<String>),
}

/// A statement with `?` placeholders and their values, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    /// Statement text (no client input inside).
    pub text: String,
    /// Values of the placeholders.
    pub binds: Vec<Bind>,
    /// Output names of the dimensions (`d0`, `d1`… in the statement).
    pub dimensions: Vec<String>,
    /// Output names of the metrics (`m0`, `m1`… in the statement).
    pub metrics: Vec<String>,
    /// Most distinct GROUP BY keys ClickHouse may build (per aggregation
    /// thread); more → 400 `too_many_groups`. Only for statements whose
    /// GROUP BY is the answer's dimensions (not per-user grouping).
    pub max_groups: Option<u64>,
}

/// Why a query was refused (400 with this text).
pub type Invalid = (&'static str, String);

/// A refusal of `field` because of `why`.
pub fn invalid(field: &'static str, why: impl Into<String>) -> Invalid {
    (field, why.into())
}

/// Time buckets for `group_by`, and the 18.16-compatible function of each
/// (applied to a time column: `timestamp` of events, `start` of sessions).
const BUCKETS: &[(&str, &str)] = &[
    ("minute", "toStartOfMinute"),
    ("hour", "toStartOfHour"),
    ("day", "toDate"),
    ("week", "toMonday"),
    ("month", "toStartOfMonth"),
];

/// The time bucket names (built-in dimensions: bare or `$`-prefixed).
pub fn bucket_names() -> impl Iterator<Item = &'static str> {
    BUCKETS.iter().map(|(name, _)| *name)
}

/// The expression of time bucket `name` (bare or `$`-prefixed) over `column`
/// in the calendar of time zone `tz` (a valid IANA name, bound), if `name` is
/// one: a date (`2026-03-08`) for days, weeks (their Monday) and months (their
/// first day); for minutes and hours the local start with its UTC offset
/// (`2026-11-01T01:00:00-04:00`), since a clock change repeats an hour.
pub fn time_bucket(name: &str, column: &str, tz: &str) -> Option<(String, Vec<Bind>)> {
    let name = name.strip_prefix(BUILTIN).unwrap_or(name);
    let (bucket, func) = BUCKETS.iter().find(|(bucket, _)| *bucket == name)?;
    let start = format!("{func}({column}, ?)");
    Some(if matches!(*bucket, "minute" | "hour") {
        local_time_with_offset(&start, tz)
    } else {
        (
            format!("toString({start})"),
            vec![Bind::Text(tz.to_owned())],
        )
    })
}

/// `2026-11-01T01:00:00-04:00` of a zoned DateTime expression `t` (whose one
/// placeholder is the zone `tz`). The offset is the local wall time read as
/// UTC minus the instant (valid on 18.16, which has no offset function).
/// ClickHouse groups by the instant (it takes `toString` as injective), so
/// the two 01:00 hours of an autumn clock change stay two rows; the offset
/// tells them apart.
pub fn local_time_with_offset(t: &str, tz: &str) -> (String, Vec<Bind>) {
    let offset =
        format!("(toUnixTimestamp(toDateTime(toString({t}), 'UTC')) - toUnixTimestamp({t}))");
    let two = |n: &str| format!("substring(toString(100 + {n}), 2, 2)");
    let text = format!(
        "concat(replaceOne(toString({t}), ' ', 'T'), if({offset} < 0, '-', '+'), {}, ':', {})",
        two(&format!("intDiv(abs({offset}), 3600)")),
        two(&format!("intDiv(abs({offset}) % 3600, 60)")),
    );
    let uses = text.matches('?').count();
    (text, vec![Bind::Text(tz.to_owned()); uses])
}

/// The app guard and the time range: conditions and their binds (first in
/// every statement's `WHERE`).
pub fn app_and_range(app_id: &str, (from_ms, to_ms): (i64, i64)) -> (Vec<String>, Vec<Bind>) {
    (
        vec![
            "app_id = ?".to_owned(),
            "event_date >= toDate(?)".to_owned(),
            "event_date <= toDate(?)".to_owned(),
            "ts_ms >= ?".to_owned(),
            "ts_ms < ?".to_owned(),
        ],
        vec![
            Bind::Text(app_id.to_owned()),
            Bind::Text(utc_date(from_ms)),
            Bind::Text(utc_date(to_ms)),
            Bind::Int(from_ms),
            Bind::Int(to_ms),
        ],
    )
}

/// The parts of a request every `/query` statement filters on after its app
/// and range guard.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Count bot traffic too.
    pub include_bots: bool,
    /// Share of users to answer from.
    pub sample: Option<f64>,
    /// Conditions, all of which must hold.
    pub filters: &'a [Filter],
    /// Only users who did an event.
    pub segment: Option<&'a Segment>,
}

/// The conditions every `/query` statement shares after its app and range
/// guard — bots, sampling, filters (on `columns`, and on properties when
/// `properties`), segment — appended in text order with their binds.
pub fn request_conditions(
    scope: Scope<'_>,
    (app_id, range): (&str, (i64, i64)),
    (columns, properties): (&[&str], bool),
    (conditions, binds): (&mut Vec<String>, &mut Vec<Bind>),
) -> Result<(), Invalid> {
    if !scope.include_bots {
        conditions.push("is_bot = 0".into());
    }
    if let Some((condition, bind)) = sample_condition(scope.sample)? {
        conditions.push(condition);
        binds.push(bind);
    }
    for f in scope.filters {
        let (condition, b) = filter_in(f, columns, properties)?;
        conditions.push(condition);
        binds.extend(b);
    }
    if let Some(segment) = scope.segment {
        // Events statements (those that allow properties) follow persons.
        let (condition, b) = segment_condition(app_id, range, segment, properties)?;
        conditions.push(condition);
        binds.extend(b);
    }
    Ok(())
}

/// The sampling condition of a `sample` share (bound: users whose id hashes below the share).
pub fn sample_condition(sample: Option<f64>) -> Result<Option<(String, Bind)>, Invalid> {
    let Some(share) = sample else {
        return Ok(None);
    };
    let per_10k = share * 10_000.0;
    if !(share > 0.0 && share <= 1.0) || (per_10k - per_10k.round()).abs() > 1e-6 {
        return Err(invalid(
            "sample",
            "a share in (0, 1] with at most 4 decimals",
        ));
    }
    if per_10k.round() >= 10_000.0 {
        return Ok(None);
    }
    Ok(Some((
        "cityHash64(distinct_id) % 10000 < ?".to_owned(),
        Bind::Int(per_10k.round() as i64),
    )))
}

/// "Users who did `segment.did` in the range": a condition on the person
/// ([`PERSON`], the statement joins persons) when `persons`, else on
/// `distinct_id` (sessions).
pub fn segment_condition(
    app_id: &str,
    range: (i64, i64),
    segment: &Segment,
    persons: bool,
) -> Result<(String, Vec<Bind>), Invalid> {
    if !(1..=200).contains(&segment.did.chars().count()) {
        return Err(invalid("segment", "did: an event name"));
    }
    let (conditions, guard) = app_and_range(app_id, range);
    let (who, source, mut binds) = if persons {
        let (source, binds) = events_source(app_id, []);
        (PERSON, source, binds)
    } else {
        ("distinct_id", "events".to_owned(), Vec::new())
    };
    binds.extend(guard);
    binds.push(Bind::Text(segment.did.clone()));
    Ok((
        format!(
            "{who} IN (SELECT {who} FROM {source} WHERE {} AND name = ?)",
            conditions.join(" AND ")
        ),
        binds,
    ))
}

/// The exact median of `expr` over the rows where `cond` holds, as an
/// aggregate: the middle value, or the mean of the two middle values of an even
/// count (ClickHouse's `quantileExact(0.5)` gives the upper one). NaN when no
/// row counts. Valid on 18.16 and current releases.
pub fn median_if(expr: &str, cond: &str) -> String {
    let sorted = format!("arraySort(groupArrayIf({expr}, {cond}))");
    format!(
        "if(length({sorted}) = 0, nan, ({sorted}[intDiv(length({sorted}) + 1, 2)] + {sorted}[intDiv(length({sorted}), 2) + 1]) / 2)"
    )
}

/// Two statements of the same columns as one: every row of `current` with
/// `p = 0`, then every row of `previous` with `p = 1` (each keeping its own
/// order and limit), so both periods come from one read.
pub fn with_previous(current: Sql, previous: Sql) -> Sql {
    let order = if current.dimensions.is_empty() {
        " ORDER BY p"
    } else {
        " ORDER BY p, m0 DESC"
    };
    Sql {
        text: format!(
            "SELECT * FROM (SELECT *, 0 AS p FROM ({}) UNION ALL SELECT *, 1 AS p FROM ({})){order}",
            current.text, previous.text
        ),
        binds: current.binds.into_iter().chain(previous.binds).collect(),
        dimensions: current.dimensions,
        metrics: current.metrics,
        max_groups: current.max_groups,
    }
}

/// ` GROUP BY d0, … ORDER BY m0 DESC` for `n` dimensions (nothing for none).
pub fn group_by_dimensions(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let names: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    format!(" GROUP BY {} ORDER BY m0 DESC", names.join(", "))
}

/// Splits `"30m"` into `("30", "m")`: the last character is the unit (safe
/// for any UTF-8 input).
pub fn split_unit(text: &str) -> (&str, &str) {
    match text.char_indices().last() {
        Some((at, _)) => text.split_at(at),
        None => ("", ""),
    }
}

/// `YYYY-MM-DD` (UTC) of an epoch-ms time, for partition pruning on `event_date`.
pub fn utc_date(ms: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl Sql {
    /// A statement answered as rows of its own columns (no named dimensions
    /// or metrics, no group limit).
    pub fn plain(text: impl Into<String>, binds: Vec<Bind>) -> Self {
        Sql {
            text: text.into(),
            binds,
            dimensions: Vec::new(),
            metrics: Vec::new(),
            max_groups: None,
        }
    }
}

impl Bind {
    /// The value as JSON (golden files; `testkit/tests/sql_versions.rs` reads it
    /// back): text as a string, an integer as an integer, a number always with a
    /// fraction or exponent, lists as arrays.
    pub fn to_json(&self) -> serde_json::Value {
        let float = |x: f64| {
            serde_json::Number::from_f64(x)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)
        };
        match self {
            Bind::Text(text) => serde_json::Value::from(text.as_str()),
            Bind::Int(n) => serde_json::Value::from(*n),
            Bind::Float(x) => float(*x),
            Bind::List(list) => serde_json::Value::from(list.clone()),
        }
    }
}

/// Test support: `sql` rendered (text, then its binds as JSON) must equal
/// `tests/golden/{name}.sql`; `TALLY_UPDATE_GOLDEN=1` rewrites the file.
/// Also checks that placeholders equal binds.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub fn assert_golden(name: &str, sql: &Sql) {
    let binds: Vec<serde_json::Value> = sql.binds.iter().map(Bind::to_json).collect();
    let binds = serde_json::to_string(&binds).unwrap();
    let rendered = format!("{}\n-- binds: {binds}\n", sql.text);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let path = dir.join(format!("{name}.sql"));
    if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TALLY_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(rendered, golden, "{name}");
    assert_eq!(sql.text.matches('?').count(), sql.binds.len(), "{name}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_700_000_000_000), "2023-11-14");
        assert_eq!(utc_date(-1), "1969-12-31");
    }
}
