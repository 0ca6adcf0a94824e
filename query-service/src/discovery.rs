//! Property discovery, for the dashboard's suggestions (bounded answers):
//!
//! * `GET /api/v1/analytics/{app_id}/properties?range=7d` — the built-in
//!   field names (`fields`, as `$name`) and the app's top
//!   [`MAX_SUGGESTIONS`] property keys in the range by the events that carry
//!   them (`properties: [{key, count}]`, most used first, then by name);
//! * `GET …/properties/values?field=properties.plan&range=7d&prefix=p` — the
//!   top [`MAX_SUGGESTIONS`] values of a field (a built-in field or a
//!   property, named as in filters) in the range, optionally only those
//!   starting with `prefix` (case-insensitive), with their event counts; a
//!   bare name that is both a built-in field and a property is refused (400
//!   `ambiguous_field`), as in `/query`.
//!
//! `range` is as in `/query` (default `7d`). Bots are left out. Empty values
//! are not suggested. Answers go through the answer cache like `/query`.

use crate::answer::{cached_rows, respond, to_bytes};
use crate::auth::ReadAccess;
use crate::range::resolve_range;
use crate::sql::{app_and_range, field, Bind, Sql, COLUMNS};
use crate::{AppState, QueryError};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tally_common::http::{Path, Query};

/// Most keys or values in one answer.
pub const MAX_SUGGESTIONS: usize = 100;

/// Query string of both endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryParams {
    /// As in `/query` (default `7d`).
    pub range: Option<String>,
    /// Values: the field (as in filters).
    pub field: Option<String>,
    /// Values: only those starting with this (at most 200 characters).
    pub prefix: Option<String>,
}

fn where_clause(app_id: &str, range: (i64, i64)) -> (String, Vec<Bind>) {
    let (mut conditions, binds) = app_and_range(app_id, range);
    conditions.push("is_bot = 0".into());
    (conditions.join(" AND "), binds)
}

/// The statement of the top property keys.
pub fn keys_statement(app_id: &str, range: (i64, i64)) -> Sql {
    let (condition, binds) = where_clause(app_id, range);
    Sql {
        text: format!(
            "SELECT k AS d0, toFloat64(count()) AS m0 FROM events ARRAY JOIN prop_keys AS k \
             WHERE {condition} GROUP BY k ORDER BY m0 DESC, d0 LIMIT {MAX_SUGGESTIONS}"
        ),
        binds,
        dimensions: vec!["key".into()],
        metrics: vec!["count".into()],
        max_groups: None,
    }
}

/// The statement of a field's top values.
pub fn values_statement(
    app_id: &str,
    range: (i64, i64),
    name: &str,
    prefix: Option<&str>,
) -> Result<Sql, QueryError> {
    let (expr, mut binds) =
        field(name).map_err(|(_, why)| QueryError::InvalidParameter("field", why))?;
    let (condition, guard) = where_clause(app_id, range);
    let mut text = format!(
        "SELECT toString({expr}) AS d0, toFloat64(count()) AS m0 FROM events WHERE {condition} \
         AND d0 != ''"
    );
    binds.extend(guard);
    if let Some(prefix) = prefix {
        text.push_str(" AND startsWith(lowerUTF8(d0), lowerUTF8(?))");
        binds.push(Bind::Text(prefix.to_owned()));
    }
    text.push_str(&format!(
        " GROUP BY d0 ORDER BY m0 DESC, d0 LIMIT {MAX_SUGGESTIONS}"
    ));
    Ok(Sql {
        text,
        binds,
        dimensions: vec!["value".into()],
        metrics: vec!["count".into()],
        max_groups: None,
    })
}

async fn answer(
    state: &AppState,
    app_id: &str,
    params: &DiscoveryParams,
    values: bool,
) -> Result<(Arc<axum::body::Bytes>, bool), QueryError> {
    let range_text = Value::String(params.range.clone().unwrap_or_else(|| "7d".into()));
    let range = resolve_range(
        &range_text,
        state.clock.now_ms(),
        state.config.max_range_days,
    )?;
    let sql = if values {
        let name = params
            .field
            .as_deref()
            .ok_or_else(|| QueryError::InvalidParameter("field", "required".into()))?;
        let prefix = params.prefix.as_deref().filter(|p| !p.is_empty());
        if prefix.is_some_and(|p| p.chars().count() > 200) {
            return Err(QueryError::InvalidParameter(
                "prefix",
                "at most 200 characters".into(),
            ));
        }
        // A bare name that is both a built-in field and a property is
        // refused as in `/query` (400 `ambiguous_field`).
        let fields = crate::fields::Fields {
            names: vec![name],
            builtins: COLUMNS.to_vec(),
            properties: true,
        };
        fields.check(state, app_id).await?;
        values_statement(app_id, range, name, prefix)?
    } else {
        keys_statement(app_id, range)
    };
    let kind = if values { "values" } else { "keys" };
    cached_rows(state, kind, app_id, &sql, |rows, _| {
        let name = if values { "value" } else { "key" };
        let items: Vec<Value> = rows
            .iter()
            .map(|row| {
                let count = row.get("m0").and_then(Value::as_f64).unwrap_or(0.0);
                json!({name: row.get("d0"), "count": count as u64})
            })
            .collect();
        let body = if values {
            json!({"values": items, "from_ms": range.0, "to_ms": range.1})
        } else {
            let fields: Vec<String> = COLUMNS.iter().map(|c| format!("${c}")).collect();
            json!({"fields": fields, "properties": items, "from_ms": range.0, "to_ms": range.1})
        };
        to_bytes(&body)
    })
    .await
}

/// `GET /api/v1/analytics/{app_id}/properties`.
pub async fn keys(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    Query(params): Query<DiscoveryParams>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Response, QueryError> {
    suggest(&state, access, &params, false).await
}

/// `GET /api/v1/analytics/{app_id}/properties/values`.
pub async fn values(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    Query(params): Query<DiscoveryParams>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Response, QueryError> {
    suggest(&state, access, &params, true).await
}

async fn suggest(
    state: &AppState,
    access: Result<ReadAccess, QueryError>,
    params: &DiscoveryParams,
    values: bool,
) -> Result<Response, QueryError> {
    let endpoint = if values {
        "property_values"
    } else {
        "properties"
    };
    let task = async {
        let ReadAccess { app_id } = access?;
        answer(state, &app_id, params, values).await
    };
    respond(state, endpoint, task).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_discovery_statements() {
        let range = (1_700_000_000_000, 1_700_604_800_000);
        crate::sql::assert_golden("discovery_property_keys", &keys_statement("app-1", range));
        let values = values_statement("app-1", range, "properties.plan", Some("Pr")).unwrap();
        crate::sql::assert_golden("discovery_property_values", &values);
        let country = values_statement("app-1", range, "$country", None).unwrap();
        assert!(country.text.starts_with("SELECT toString(country) AS d0"));
        assert!(values_statement("app-1", range, "no such'field", None).is_err());
    }
}
