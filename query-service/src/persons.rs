//! A person's profile (issue 16): `GET /api/v1/analytics/{app_id}/persons/{id}`.
//!
//! `{id}` is any distinct id of the person (the person id is one of them).
//! The answer: the person id, every distinct id linked to it (up to
//! [`MAX_IDS`]), its current traits, when it was first and last seen, and its
//! event counts by name (all of its events, bots included). Read from the
//! replace-on-write tables the aggregator keeps (`person_distinct_ids`,
//! `persons`, migration 0007): the highest version of each key is the
//! current state. An id with no link, no traits and no event is 404
//! `not_found`; so is a deleted person. Not cached: a profile is read rarely
//! and must show a just-applied identify.

use crate::answer::{respond, to_bytes};
use crate::auth::ReadAccess;
use crate::sql::{Bind, Sql};
use crate::{AppState, QueryError};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tally_common::http::Path;

/// Most distinct ids listed.
pub const MAX_IDS: usize = 1_000;
/// Longest id accepted.
const MAX_ID_LEN: usize = 200;

fn statement(text: String, binds: Vec<Bind>) -> Sql {
    Sql::plain(text, binds)
}

/// The person `distinct_id` belongs to (`d0`, '' when never linked) and
/// whether it was deleted (`d1`).
pub fn person_statement(app_id: &str, distinct_id: &str) -> Sql {
    statement(
        "SELECT argMax(person_id, version) AS d0, argMax(is_deleted, version) AS d1 \
         FROM person_distinct_ids WHERE app_id = ? AND distinct_id = ?"
            .into(),
        vec![Bind::Text(app_id.into()), Bind::Text(distinct_id.into())],
    )
}

/// The distinct ids currently linked to `person_id` (`d0`).
pub fn ids_statement(app_id: &str, person_id: &str) -> Sql {
    statement(
        format!(
            "SELECT distinct_id AS d0 FROM person_distinct_ids WHERE app_id = ? \
             GROUP BY distinct_id HAVING argMax(person_id, version) = ? \
             AND argMax(is_deleted, version) = 0 ORDER BY d0 LIMIT {MAX_IDS}"
        ),
        vec![Bind::Text(app_id.into()), Bind::Text(person_id.into())],
    )
}

/// The current traits of `person_id` (`d0` names, `d1` values, `d2` deleted).
pub fn traits_statement(app_id: &str, person_id: &str) -> Sql {
    statement(
        "SELECT prop_keys AS d0, prop_values AS d1, is_deleted AS d2 FROM persons \
         WHERE app_id = ? AND person_id = ? ORDER BY version DESC LIMIT 1"
            .into(),
        vec![Bind::Text(app_id.into()), Bind::Text(person_id.into())],
    )
}

/// Events of the ids by name: count (`m0`), first and last event time (`m1`, `m2`).
pub fn activity_statement(app_id: &str, ids: &[String]) -> Sql {
    statement(
        "SELECT name AS d0, toFloat64(count()) AS m0, toFloat64(min(ts_ms)) AS m1, \
         toFloat64(max(ts_ms)) AS m2 FROM events WHERE app_id = ? AND has(?, distinct_id) \
         GROUP BY name ORDER BY m0 DESC, d0"
            .into(),
        vec![Bind::Text(app_id.into()), Bind::List(ids.to_vec())],
    )
}

fn text(row: &Map<String, Value>, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn number(row: &Map<String, Value>, key: &str) -> f64 {
    match row.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn strings(row: &Map<String, Value>, key: &str) -> Vec<String> {
    row.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The person of `id` and its distinct ids (the person id alone when never
/// linked); `NotFound` for a deleted person.
pub async fn resolve(
    state: &AppState,
    app_id: &str,
    id: &str,
) -> Result<(String, Vec<String>), QueryError> {
    let found = state.events.rows(&person_statement(app_id, id)).await?;
    let row = found.first().cloned().unwrap_or_default();
    if number(&row, "d1") > 0.0 {
        return Err(QueryError::NotFound);
    }
    let person = Some(text(&row, "d0"))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| id.to_owned());
    let mut ids: Vec<String> = state
        .events
        .rows(&ids_statement(app_id, &person))
        .await?
        .iter()
        .map(|row| text(row, "d0"))
        .collect();
    if ids.is_empty() {
        ids.push(person.clone());
    }
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
    }
    Ok((person, ids))
}

/// Checks a distinct id from the path.
pub fn check_id(id: &str) -> Result<(), QueryError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(QueryError::InvalidParameter(
            "id",
            format!("a distinct id of 1 to {MAX_ID_LEN} bytes"),
        ));
    }
    Ok(())
}

async fn profile(state: &AppState, app_id: &str, id: &str) -> Result<Value, QueryError> {
    let (person, ids) = resolve(state, app_id, id).await?;
    let traits_row = state
        .events
        .rows(&traits_statement(app_id, &person))
        .await?;
    let mut traits = Map::new();
    if let Some(row) = traits_row.first() {
        if number(row, "d2") > 0.0 {
            return Err(QueryError::NotFound);
        }
        for (key, value) in strings(row, "d0").into_iter().zip(strings(row, "d1")) {
            traits.insert(key, Value::String(value));
        }
    }
    let activity = state.events.rows(&activity_statement(app_id, &ids)).await?;
    if activity.is_empty() && traits_row.is_empty() && ids.len() == 1 {
        return Err(QueryError::NotFound);
    }
    let total: f64 = activity.iter().map(|r| number(r, "m0")).sum();
    let first = activity.iter().map(|r| number(r, "m1")).reduce(f64::min);
    let last = activity.iter().map(|r| number(r, "m2")).reduce(f64::max);
    let counts: Vec<Value> = activity
        .iter()
        .map(|r| json!({"name": text(r, "d0"), "count": number(r, "m0") as u64}))
        .collect();
    Ok(json!({
        "person_id": person,
        "distinct_ids": ids,
        "traits": traits,
        "first_seen_ms": first.map(|v| v as i64),
        "last_seen_ms": last.map(|v| v as i64),
        "events": total as u64,
        "event_counts": counts,
    }))
}

/// `GET /api/v1/analytics/{app_id}/persons/{id}`.
pub async fn person(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Response, QueryError> {
    let task = async {
        let ReadAccess { app_id } = access?;
        check_id(&id)?;
        let body = profile(&state, &app_id, &id).await?;
        Ok((Arc::new(to_bytes(&body)?), false))
    };
    respond(&state, "person", task).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_person_statements() {
        crate::sql::assert_golden("person_of_id", &person_statement("app-1", "anon-1"));
        crate::sql::assert_golden("person_ids", &ids_statement("app-1", "anon-1"));
        crate::sql::assert_golden("person_traits", &traits_statement("app-1", "anon-1"));
        let ids = ["anon-1".to_owned(), "user-1".to_owned()];
        crate::sql::assert_golden("person_activity", &activity_statement("app-1", &ids));
    }
}
