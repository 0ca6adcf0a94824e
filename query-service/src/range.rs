//! Time ranges of the ClickHouse-backed endpoints: bounds (`from`/`to`, RFC
//! 3339 or epoch ms, 1970 to 9999), `/count`'s query string (default: the
//! last 24 h), and the `range` of `/query`, `/funnel` and `/retention` bodies
//! (`"7d"`, `"24h"`, … ending at the next 5-second boundary, or
//! `{"from", "to"}`). Every range is `[from, to)` and at most
//! `max_range_days` long; refusals are 400s naming the field.

use crate::sql::split_unit;
use crate::QueryError;
use serde::Deserialize;
use tally_schemas::event::TimestampInput;

/// A day, ms.
pub const DAY_MS: i64 = 86_400_000;
/// The latest time a range may name: 9999-12-31T23:59:59.999Z (RFC 3339's last year).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Query string of `/count`.
#[derive(Debug, Deserialize)]
pub struct CountParams {
    /// Range start (inclusive).
    pub from: Option<String>,
    /// Range end (exclusive).
    pub to: Option<String>,
}

/// Parses a range bound: epoch ms digits or RFC 3339, from 1970 to the end of 9999.
pub fn parse_time(name: &'static str, text: &str) -> Result<i64, QueryError> {
    let input = match text.parse::<i64>() {
        Ok(ms) => TimestampInput::EpochMillis(ms),
        Err(_) => TimestampInput::Text(text.to_owned()),
    };
    input
        .to_epoch_millis()
        .filter(|ms| (0..=MAX_TIME_MS).contains(ms))
        .ok_or_else(|| {
            QueryError::InvalidParameter(
                name,
                "expected RFC 3339 or epoch milliseconds, from 1970 to 9999".into(),
            )
        })
}

/// Resolves the range of a count request.
pub fn count_range(
    params: &CountParams,
    now_ms: i64,
    max_days: i64,
) -> Result<(i64, i64), QueryError> {
    let to = params
        .to
        .as_deref()
        .map(|t| parse_time("to", t))
        .transpose()?
        .unwrap_or(now_ms);
    let from = params
        .from
        .as_deref()
        .map(|f| parse_time("from", f))
        .transpose()?
        .unwrap_or(to - DAY_MS);
    if from >= to {
        return Err(QueryError::InvalidParameter(
            "from",
            "must be before `to`".into(),
        ));
    }
    if to - from > max_days * DAY_MS {
        return Err(QueryError::InvalidParameter(
            "to",
            format!("range longer than {max_days} days"),
        ));
    }
    Ok((from, to))
}

/// Resolves `range`: `"7d"`, `"24h"`, `"90d"` (ending at the current 5-second
/// boundary, so identical polls share a cache entry) or `{"from", "to"}`.
pub fn resolve_range(
    range: &serde_json::Value,
    now_ms: i64,
    max_days: i64,
) -> Result<(i64, i64), QueryError> {
    let bad = |why: &str| QueryError::InvalidQuery("range", why.to_owned());
    let (from, to) = match range {
        serde_json::Value::String(text) => {
            let (number, unit) = split_unit(text);
            let n: i64 = number.parse().map_err(|_| bad("like \"7d\" or \"24h\""))?;
            let unit_ms = match unit {
                "d" => DAY_MS,
                "h" => 3_600_000,
                _ => return Err(bad("like \"7d\" or \"24h\"")),
            };
            if n <= 0 {
                return Err(bad("must be positive"));
            }
            let to = now_ms.div_euclid(5_000) * 5_000 + 5_000;
            (to.saturating_sub(n.saturating_mul(unit_ms)), to)
        }
        serde_json::Value::Object(bounds) => {
            let bound = |name: &'static str| -> Result<i64, QueryError> {
                match bounds.get(name) {
                    Some(serde_json::Value::String(t)) => parse_time(name, t),
                    Some(serde_json::Value::Number(n)) => parse_time(name, &n.to_string()),
                    _ => Err(bad("from and to: RFC 3339 or epoch ms")),
                }
            };
            (bound("from")?, bound("to")?)
        }
        _ => return Err(bad("\"7d\" or {\"from\": …, \"to\": …}")),
    };
    if from < 0 || to <= from {
        return Err(bad("from must be before to"));
    }
    if to - from > max_days * DAY_MS {
        return Err(bad(&format!("at most {max_days} days")));
    }
    Ok((from, to))
}

/// The time zone a request is answered in: `requested` (an IANA name, else 400
/// `invalid_query`), or the app's setting (PostgreSQL, cached briefly).
pub async fn time_zone(
    state: &crate::AppState,
    app_id: &str,
    requested: Option<&str>,
) -> Result<String, QueryError> {
    if let Some(zone) = requested {
        if !tally_schemas::time_zone::valid_time_zone(zone) {
            return Err(QueryError::InvalidQuery(
                "tz",
                format!("{zone:?} is not a time zone: an IANA name such as Europe/Berlin or UTC"),
            ));
        }
        return Ok(zone.to_owned());
    }
    let (zone, _) = state
        .zones
        .get_or_compute(app_id, || state.saved.app_time_zone(app_id))
        .await?;
    Ok(zone.as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_range_defaults_and_limits() {
        let none = CountParams {
            from: None,
            to: None,
        };
        assert_eq!(
            count_range(&none, 10 * DAY_MS, 30).unwrap(),
            (9 * DAY_MS, 10 * DAY_MS)
        );
        let explicit = CountParams {
            from: Some("2023-11-14T22:13:20Z".into()),
            to: Some("1700000001000".into()),
        };
        assert_eq!(
            count_range(&explicit, 0, 30).unwrap(),
            (1_700_000_000_000, 1_700_000_001_000)
        );
        let reversed = CountParams {
            from: Some("2000".into()),
            to: Some("1000".into()),
        };
        assert!(count_range(&reversed, 0, 30).is_err());
        let too_long = CountParams {
            from: Some("0".into()),
            to: Some((31 * DAY_MS).to_string()),
        };
        assert!(count_range(&too_long, 0, 30).is_err());
        let garbage = CountParams {
            from: Some("yesterday".into()),
            to: None,
        };
        assert_eq!(
            count_range(&garbage, DAY_MS, 30).unwrap_err().reason(),
            "invalid_parameter"
        );
    }
}
