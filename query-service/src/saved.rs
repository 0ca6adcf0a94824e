//! Saved dashboards and funnels (PostgreSQL `saved_items`), CRUD per app:
//!
//! * `GET|POST /api/v1/analytics/{app_id}/{dashboards|funnels}` — list, create;
//! * `GET|PUT|DELETE /api/v1/analytics/{app_id}/{dashboards|funnels}/{id}`.
//!
//! Every statement carries `app_id = $1`: an id of another app is simply not
//! found. Definitions are validated before they are stored: a funnel is a
//! `/funnel` request body; a dashboard is `{"widgets": [...]}` (at most 50),
//! each widget `{"type": "live"|"query"|"funnel"|"retention", "title"?,
//! "request": <that endpoint's body or query>}`.

use crate::adhoc::AdhocRequest;
use crate::auth::ReadAccess;
use crate::funnel::FunnelRequest;
use crate::retention::RetentionRequest;
use crate::{AppState, QueryError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use tally_common::http::Path;
use tally_common::postgres::PostgresConfig;

/// Largest stored definition, bytes.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;

/// A saved item as answered.
#[derive(Debug, Serialize)]
pub struct Saved {
    /// Id (unique across apps; only visible within its app).
    pub id: i64,
    /// Name.
    pub name: String,
    /// The definition.
    pub definition: Value,
    /// Created, epoch ms.
    pub created_ms: i64,
    /// Last changed, epoch ms.
    pub updated_ms: i64,
}

/// Create/replace body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedBody {
    /// 1..=200 characters.
    pub name: String,
    /// See the module docs.
    pub definition: Value,
}

/// PostgreSQL access, reconnecting after failures.
#[derive(Debug)]
pub struct SavedStore {
    pg: crate::pg::Pg,
}

fn kind_of(plural: &str) -> Result<&'static str, QueryError> {
    match plural {
        "dashboards" => Ok("dashboard"),
        "funnels" => Ok("funnel"),
        _ => Err(QueryError::NotFound),
    }
}

/// Checks a definition of `kind`.
pub fn validate(kind: &str, body: &SavedBody) -> Result<String, QueryError> {
    let bad = |why: String| QueryError::InvalidQuery("definition", why);
    // PostgreSQL text cannot hold NUL (it was a 503 from the database).
    if !(1..=200).contains(&body.name.chars().count()) || body.name.contains('\0') {
        return Err(QueryError::InvalidQuery(
            "name",
            "1..=200 characters, without NUL".into(),
        ));
    }
    let text = body.definition.to_string();
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(bad(format!("at most {MAX_DEFINITION_BYTES} bytes")));
    }
    if kind == "funnel" {
        let funnel: FunnelRequest =
            serde_json::from_value(body.definition.clone()).map_err(|e| bad(e.to_string()))?;
        crate::funnel::build("app", &funnel, (0, 1))
            .map_err(|(f, why)| bad(format!("{f}: {why}")))?;
        return Ok(text);
    }
    let widgets = body
        .definition
        .get("widgets")
        .and_then(Value::as_array)
        .filter(|w| w.len() <= 50)
        .ok_or_else(|| bad("{\"widgets\": [...]} with at most 50 widgets".into()))?;
    for widget in widgets {
        let request = widget.get("request").cloned().unwrap_or(Value::Null);
        let parsed = match widget.get("type").and_then(Value::as_str) {
            Some("live") => request
                .is_object()
                .then_some(())
                .ok_or("live: an object of query parameters".to_owned()),
            Some("query") => serde_json::from_value::<AdhocRequest>(request)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some("funnel") => serde_json::from_value::<FunnelRequest>(request)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some("retention") => serde_json::from_value::<RetentionRequest>(request)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => Err("widget type: live, query, funnel or retention".to_owned()),
        };
        parsed.map_err(bad)?;
    }
    Ok(text)
}

const COLUMNS: &str = "id, name, definition, (extract(epoch from created_at) * 1000)::bigint, \
                       (extract(epoch from updated_at) * 1000)::bigint";

fn saved(row: &tokio_postgres::Row) -> Saved {
    let definition: String = row.get(2);
    Saved {
        id: row.get(0),
        name: row.get(1),
        definition: serde_json::from_str(&definition).unwrap_or(Value::Null),
        created_ms: row.get(3),
        updated_ms: row.get(4),
    }
}

impl SavedStore {
    /// The time zone of `app_id` (UTC for an app without a row).
    pub async fn app_time_zone(&self, app_id: &str) -> Result<String, QueryError> {
        let app_id = app_id.to_owned();
        let zone = self
            .with(move |client| {
                Box::pin(async move { tally_common::postgres::time_zone(client, &app_id).await })
            })
            .await?;
        Ok(zone.unwrap_or_else(|| tally_schemas::time_zone::DEFAULT_TIME_ZONE.to_owned()))
    }

    /// A store on `config` (connects lazily).
    pub fn new(config: PostgresConfig) -> Self {
        SavedStore {
            pg: crate::pg::Pg::new(config),
        }
    }

    /// Runs `op` on a (re)connected client (see [`crate::pg::Pg`]).
    async fn with<T, F>(&self, op: F) -> Result<T, QueryError>
    where
        F: for<'c> FnOnce(
            &'c tokio_postgres::Client,
        )
            -> futures::future::BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        self.pg.with(op).await.map_err(QueryError::SavedUnavailable)
    }
}

/// The kind of `plural` once read access is granted (404 for another collection).
fn guard(access: Result<ReadAccess, QueryError>, plural: &str) -> Result<&'static str, QueryError> {
    access?;
    kind_of(plural)
}

/// An id that is not a number names nothing.
fn parse_id(text: &str) -> Result<i64, QueryError> {
    text.parse().map_err(|_| QueryError::NotFound)
}

fn parse_body(body: &[u8]) -> Result<SavedBody, QueryError> {
    serde_json::from_slice(body).map_err(|e| QueryError::InvalidQuery("body", e.to_string()))
}

/// `GET /{kind}`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path((app_id, plural)): Path<(String, String)>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Json<Vec<Saved>>, QueryError> {
    let kind = guard(access, &plural)?;
    let sql =
        format!("SELECT {COLUMNS} FROM saved_items WHERE app_id = $1 AND kind = $2 ORDER BY id");
    let rows = state
        .saved
        .with(|c| Box::pin(async move { c.query(&sql, &[&app_id, &kind]).await }))
        .await?;
    Ok(Json(rows.iter().map(saved).collect()))
}

/// `POST /{kind}`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path((app_id, plural)): Path<(String, String)>,
    access: Result<ReadAccess, QueryError>,
    body: axum::body::Bytes,
) -> Result<Response, QueryError> {
    let kind = guard(access, &plural)?;
    let body = parse_body(&body)?;
    let definition = validate(kind, &body)?;
    let sql = format!("INSERT INTO saved_items (app_id, kind, name, definition) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}");
    let row = state
        .saved
        .with(|c| {
            Box::pin(async move {
                c.query_one(&sql, &[&app_id, &kind, &body.name, &definition])
                    .await
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(saved(&row))).into_response())
}

/// `GET /{kind}/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path((app_id, plural, id)): Path<(String, String, String)>,
    access: Result<ReadAccess, QueryError>,
) -> Result<Json<Saved>, QueryError> {
    let kind = guard(access, &plural)?;
    let id = parse_id(&id)?;
    let sql =
        format!("SELECT {COLUMNS} FROM saved_items WHERE app_id = $1 AND kind = $2 AND id = $3");
    let row = state
        .saved
        .with(|c| Box::pin(async move { c.query_opt(&sql, &[&app_id, &kind, &id]).await }))
        .await?;
    row.map(|r| Json(saved(&r))).ok_or(QueryError::NotFound)
}

/// `PUT /{kind}/{id}`.
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Path((app_id, plural, id)): Path<(String, String, String)>,
    access: Result<ReadAccess, QueryError>,
    body: axum::body::Bytes,
) -> Result<Json<Saved>, QueryError> {
    let kind = guard(access, &plural)?;
    let id = parse_id(&id)?;
    let body = parse_body(&body)?;
    let definition = validate(kind, &body)?;
    let sql = format!(
        "UPDATE saved_items SET name = $4, definition = $5, updated_at = now() \
         WHERE app_id = $1 AND kind = $2 AND id = $3 RETURNING {COLUMNS}"
    );
    let row = state
        .saved
        .with(|c| {
            Box::pin(async move {
                c.query_opt(&sql, &[&app_id, &kind, &id, &body.name, &definition])
                    .await
            })
        })
        .await?;
    row.map(|r| Json(saved(&r))).ok_or(QueryError::NotFound)
}

/// `DELETE /{kind}/{id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((app_id, plural, id)): Path<(String, String, String)>,
    access: Result<ReadAccess, QueryError>,
) -> Result<StatusCode, QueryError> {
    let kind = guard(access, &plural)?;
    let id = parse_id(&id)?;
    let sql = "DELETE FROM saved_items WHERE app_id = $1 AND kind = $2 AND id = $3";
    let deleted = state
        .saved
        .with(|c| Box::pin(async move { c.execute(sql, &[&app_id, &kind, &id]).await }))
        .await?;
    if deleted == 0 {
        return Err(QueryError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
