//! Which ClickHouse database and Redis prefix answer a request.
//!
//! `tally-admin replay switch` records, per deployment (keyed by the database
//! this service is configured with), the pair to answer from in PostgreSQL
//! (`serving`, migration 0009); `rollback` moves it back. A middleware
//! ([`resolve`]) reads it once per request — through a one-second cache, so a
//! switch reaches every instance within a second — and runs the request in a
//! task-local scope holding that pair. The stores ([`crate::stores`]) read the
//! pair from the scope ([`current`]) for every statement and key, so each
//! answer comes wholly from one pair: no answer ever mixes the two. Without a
//! row, or outside a request, the configured pair answers.
//!
//! When PostgreSQL cannot be read, the last pair read keeps answering (and
//! `tally_query_serving_lookup_failures_total` counts it; the next lookup is a
//! second later): a switch is rare, a failed lookup must not turn every query
//! into an error.

use crate::pg::Pg;
use crate::AppState;
use futures::FutureExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The pair answering a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// ClickHouse database.
    pub database: String,
    /// Redis key prefix of the live windows and identity state.
    pub prefix: String,
}

tokio::task_local! {
    static SERVED: Served;
}

/// The pair of the current request, if one was resolved.
pub fn current() -> Option<Served> {
    SERVED.try_with(Clone::clone).ok()
}

/// Runs `work` answering from `served` (for work outside a request's scope,
/// such as each push of a live stream).
pub async fn within<F: std::future::Future>(served: Served, work: F) -> F::Output {
    SERVED.scope(served, work).await
}

/// How long a looked-up pair is reused.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Reads the served pair from PostgreSQL, at most once a second.
#[derive(Debug)]
pub struct ServingStore {
    pg: Pg,
    configured: Served,
    last: Mutex<Option<(Instant, Served)>>,
    /// One lookup at a time; the others wait for it and reuse its answer.
    lookup: tokio::sync::Mutex<()>,
}

impl ServingStore {
    /// The store of the deployment configured with `configured`.
    pub fn new(pg: Pg, configured: Served) -> Self {
        ServingStore {
            pg,
            configured,
            last: Mutex::new(None),
            lookup: tokio::sync::Mutex::new(()),
        }
    }

    fn remembered(&self, fresh: bool) -> Option<Served> {
        let last = self.last.lock().ok()?;
        last.as_ref()
            .filter(|(at, _)| !fresh || at.elapsed() < FRESH_FOR)
            .map(|(_, served)| served.clone())
    }

    /// The pair to answer from now; `Err` carries the lookup failure next to
    /// the pair used instead.
    pub async fn served(&self) -> Result<Served, (Served, String)> {
        if let Some(served) = self.remembered(true) {
            return Ok(served);
        }
        let _one_at_a_time = self.lookup.lock().await;
        if let Some(served) = self.remembered(true) {
            return Ok(served);
        }
        let scope = self.configured.database.clone();
        let looked_up = self
            .pg
            .with(move |client| {
                async move {
                    client
                        .query_opt(
                            "SELECT database, redis_prefix FROM serving WHERE scope = $1",
                            &[&scope],
                        )
                        .await
                }
                .boxed()
            })
            .await;
        match looked_up {
            Ok(row) => {
                let served = row.map_or_else(
                    || self.configured.clone(),
                    |row| Served {
                        database: row.get(0),
                        prefix: row.get(1),
                    },
                );
                if let Ok(mut last) = self.last.lock() {
                    *last = Some((Instant::now(), served.clone()));
                }
                Ok(served)
            }
            Err(err) => {
                // Keep answering from the last pair for a second before trying again.
                let fallback = self
                    .remembered(false)
                    .unwrap_or_else(|| self.configured.clone());
                if let Ok(mut last) = self.last.lock() {
                    *last = Some((Instant::now(), fallback.clone()));
                }
                Err((fallback, err))
            }
        }
    }
}

/// Middleware: resolves the pair once and runs an API request inside it.
pub async fn resolve(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Health, metrics and the dashboard's files never wait on PostgreSQL.
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    SERVED.scope(pair(&state).await, next.run(request)).await
}

/// The pair to answer from now (a failed lookup counted, the last pair used).
pub async fn pair(state: &AppState) -> Served {
    state
        .serving
        .served()
        .await
        .unwrap_or_else(|(served, err)| {
            state.metrics.serving_lookup_failed(&err);
            served
        })
}

/// A cache-key tag of the current pair ("" for the configured one), so that
/// cached answers of one pair never answer for the other.
pub fn cache_tag(configured_database: &str) -> String {
    match current() {
        Some(served) if served.database != configured_database => format!("{}|", served.database),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scope_holds_one_pair_per_request() {
        assert_eq!(current(), None);
        let pair = Served {
            database: "tally_replay_x".into(),
            prefix: "tally_replay_x".into(),
        };
        let seen = SERVED
            .scope(pair.clone(), async { (current(), cache_tag("tally")) })
            .await;
        assert_eq!(seen, (Some(pair), "tally_replay_x|".to_owned()));
        let configured = Served {
            database: "tally".into(),
            prefix: "tally".into(),
        };
        let tag = SERVED.scope(configured, async { cache_tag("tally") }).await;
        assert_eq!(tag, "");
    }
}
