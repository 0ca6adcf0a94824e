//! Person deletion (GDPR/CCPA; issue 16), for admins only (a dashboard
//! session with the app's admin role):
//!
//! * `DELETE /api/v1/apps/{app_id}/persons/{id}` (`id`: any distinct id of the
//!   person) tombstones every distinct id of the person in the identity state
//!   (the aggregator drops their later events, so neither new traffic nor a
//!   replay from Kafka brings the person back) and drops their session
//!   states, records a job (PostgreSQL `person_deletions`: the ids and the
//!   days they had events), and issues the ClickHouse mutations that remove
//!   their raw events, sessions and person rows. It answers 202 with the job.
//!   ClickHouse applies mutations asynchronously; the report refresher
//!   finishes the job: once no row of the person remains (it re-issues the
//!   mutations if rows arrived meanwhile) it re-derives every report day the
//!   person touched and marks the job `done`.
//! * `GET /api/v1/apps/{app_id}/persons/jobs/{job_id}` answers the job's status.
//!
//! What cannot be removed exactly: the HyperLogLog registers of live 5-second
//! windows (Redis) keep the person's contribution until they expire (48 h).

use crate::answer::to_bytes;
use crate::auth::AdminAccess;
use crate::persons::{check_id, resolve};
use crate::pg::Pg;
use crate::sql::{Bind, Sql};
use crate::{AppState, QueryError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use tally_common::http::Path;
use tally_schemas::person::{delete_statements as delete_statements_of, PERSON_DAYS_SQL};

/// Deletion jobs in PostgreSQL.
#[derive(Debug)]
pub struct DeletionStore {
    pg: Pg,
}

impl DeletionStore {
    /// Jobs on `pg`.
    pub fn new(pg: Pg) -> Self {
        DeletionStore { pg }
    }

    async fn insert(
        &self,
        scope: &str,
        app_id: &str,
        person: &str,
        ids: &[String],
        days: &[String],
    ) -> Result<i64, QueryError> {
        let (scope, app, person, ids, days) = (
            scope.to_owned(),
            app_id.to_owned(),
            person.to_owned(),
            ids.to_vec(),
            days.to_vec(),
        );
        self.pg
            .with(move |client| {
                Box::pin(async move {
                    let row = client
                        .query_one(
                            "INSERT INTO person_deletions (scope, app_id, person_id, distinct_ids, days, status, requested_by) \
                             VALUES ($1, $2, $3, $4, $5, 'deleting', 'admin') RETURNING id",
                            &[&scope, &app, &person, &ids, &days],
                        )
                        .await?;
                    Ok(row.get::<_, i64>(0))
                })
            })
            .await
            .map_err(QueryError::DeletionsUnavailable)
    }

    async fn get(&self, scope: &str, app_id: &str, job: i64) -> Result<Option<Value>, QueryError> {
        let (scope, app) = (scope.to_owned(), app_id.to_owned());
        self.pg
            .with(move |client| {
                Box::pin(async move {
                    let row = client
                        .query_opt(
                            "SELECT id, person_id, distinct_ids, days, status, created_at::text, done_at::text \
                             FROM person_deletions WHERE scope = $1 AND app_id = $2 AND id = $3",
                            &[&scope, &app, &job],
                        )
                        .await?;
                    Ok(row.map(|r| {
                        json!({
                            "job_id": r.get::<_, i64>(0),
                            "person_id": r.get::<_, String>(1),
                            "distinct_ids": r.get::<_, Vec<String>>(2),
                            "days": r.get::<_, Vec<String>>(3),
                            "status": r.get::<_, String>(4),
                            "created_at": r.get::<_, String>(5),
                            "done_at": r.get::<_, Option<String>>(6),
                        })
                    }))
                })
            })
            .await
            .map_err(QueryError::DeletionsUnavailable)
    }
}

/// The days on which `ids` have events (`day`, `YYYY-MM-DD`).
pub fn days_statement(app_id: &str, ids: &[String]) -> Sql {
    Sql::plain(
        PERSON_DAYS_SQL,
        vec![Bind::Text(app_id.into()), Bind::List(ids.to_vec())],
    )
}

/// The mutations removing the rows of `person` (`ids`).
pub fn delete_statements(app_id: &str, person: &str, ids: &[String]) -> Vec<Sql> {
    delete_statements_of(person, ids)
        .into_iter()
        .map(|(text, list)| Sql::plain(text, vec![Bind::Text(app_id.into()), Bind::List(list)]))
        .collect()
}

/// `DELETE /api/v1/apps/{app_id}/persons/{id}`.
pub async fn delete_person(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    access: Result<AdminAccess, QueryError>,
) -> Result<Response, QueryError> {
    let AdminAccess { app_id } = access?;
    check_id(&id)?;
    let (person, mut ids) = resolve(&state, &app_id, &id).await?;
    let days: Vec<String> = state
        .events
        .rows(&days_statement(&app_id, &ids))
        .await?
        .iter()
        .filter_map(|row| row.get("day").and_then(Value::as_str).map(str::to_owned))
        .collect();
    // Tombstones first: from now on the aggregator drops the person's events.
    let tombstoned = state.live.delete_person(&app_id, &ids).await?;
    ids.extend(tombstoned);
    ids.sort();
    ids.dedup();
    let scope = &state.config.clickhouse.database;
    let job = state
        .deletions
        .insert(scope, &app_id, &person, &ids, &days)
        .await?;
    for statement in delete_statements(&app_id, &person, &ids) {
        state.events.execute(&statement).await?;
    }
    state.metrics.person_deleted();
    tracing::info!(
        app_id,
        job,
        person,
        ids = ids.len(),
        days = days.len(),
        "person deletion requested"
    );
    let body = json!({"job_id": job, "status": "deleting", "person_id": person,
                      "distinct_ids": ids, "days": days});
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        to_bytes(&body)?,
    )
        .into_response())
}

/// `GET /api/v1/apps/{app_id}/persons/jobs/{job_id}`.
pub async fn job(
    State(state): State<Arc<AppState>>,
    Path((_, job)): Path<(String, String)>,
    access: Result<AdminAccess, QueryError>,
) -> Result<Response, QueryError> {
    let AdminAccess { app_id } = access?;
    let job: i64 = job
        .parse()
        .map_err(|_| QueryError::InvalidParameter("job_id", "a job number".into()))?;
    let scope = &state.config.clickhouse.database;
    match state.deletions.get(scope, &app_id, job).await? {
        Some(body) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            to_bytes(&body)?,
        )
            .into_response()),
        None => Err(QueryError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_deletion_statements() {
        let ids = ["anon-1".to_owned(), "user-1".to_owned()];
        crate::sql::assert_golden("person_days", &days_statement("app-1", &ids));
        let names = [
            "delete_key_ids",
            "delete_id_keys",
            "delete_arrivals",
            "delete_events",
            "delete_sessions",
            "delete_person_ids",
            "delete_persons",
        ];
        for (name, sql) in names.iter().zip(delete_statements("app-1", "anon-1", &ids)) {
            crate::sql::assert_golden(name, &sql);
        }
    }
}
