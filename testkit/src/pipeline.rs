//! The whole pipeline for one integration test: an [`Isolation`] (own topic,
//! consumer group, Redis prefix and ClickHouse database), the gateway, the
//! aggregator and the query service on port 0, and one app with a write and a
//! read key. Tests that need other settings tweak the query service's config
//! through [`Pipeline::start_with`]; tests of processes, restarts or several
//! aggregators build their own from [`crate::services`]. Several tests may
//! share one pipeline through [`crate::shared`] ([`Pipeline::start_shared`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::services::{self, Running};
use crate::{clickhouse_counts, eventually, post_batch, Isolation};
use serde_json::{json, Value};
use std::time::Duration;

/// A running pipeline and its app.
pub struct Pipeline {
    /// Topic, group, prefix and database of this test.
    pub iso: Isolation,
    /// Ingest gateway.
    pub gateway: Running,
    /// Stream aggregator.
    pub aggregator: Running,
    /// Query service.
    pub query: Running,
    /// One HTTP client for the test.
    pub http: reqwest::Client,
    /// The app (unique per test).
    pub app: String,
    /// Its write key.
    pub write_key: String,
    /// Its read key.
    pub read_key: String,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts everything on 2 partitions for a new app named `prefix-…`.
    pub async fn start(prefix: &str) -> Pipeline {
        Pipeline::start_with(prefix, |_| {}).await
    }

    /// As [`Pipeline::start`], for a fixture shared by the tests of a binary
    /// ([`crate::shared`]; call it inside the set-up, which runs on the
    /// background runtime): its HTTP client keeps no idle connection, since a
    /// pooled connection belongs to the runtime of the test that opened it.
    pub async fn start_shared(prefix: &str) -> Pipeline {
        let mut pipeline = Pipeline::start(prefix).await;
        pipeline.http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_else(|err| panic!("http client: {err}"));
        pipeline
    }

    /// As [`Pipeline::start`], with the query service's config adjusted by `tweak`.
    pub async fn start_with(
        prefix: &str,
        tweak: impl FnOnce(&mut query_service::Config),
    ) -> Pipeline {
        let iso = Isolation::new(2).await;
        let gateway = services::gateway(services::gateway_config(&iso)).await;
        let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
        let mut config = services::query_config(&iso);
        tweak(&mut config);
        let query = services::query(config).await;
        let app = crate::unique(prefix);
        let write_key = crate::write_key(&app).await;
        let read_key = crate::read_key(&app).await;
        Pipeline {
            iso,
            gateway,
            aggregator,
            query,
            http: reqwest::Client::new(),
            app,
            write_key,
            read_key,
        }
    }

    /// Posts `events` (native event objects) in batches of 200; each batch must be accepted.
    pub async fn send(&self, events: &[Value]) {
        for chunk in events.chunks(200) {
            let body = json!({"app_id": self.app, "events": chunk});
            let (status, answer) =
                post_batch(&self.http, &self.gateway.url(), &self.write_key, &body).await;
            assert_eq!(status, 200, "{answer}");
        }
    }

    /// Waits (≤ 30 s) until ClickHouse holds at least `n` rows of the app.
    pub async fn wait_rows(&self, n: usize) {
        let n = n as u64;
        eventually("rows", Duration::from_secs(30), || async {
            (clickhouse_counts(&self.iso, &self.app).await.0 >= n).then_some(())
        })
        .await;
    }

    /// Waits (≤ 20 s) until ClickHouse holds at least `n` live sessions of the
    /// app (session rows land just after the event rows, in the same flush).
    pub async fn wait_sessions(&self, n: u64) {
        let client = self.iso.clickhouse_client();
        eventually("sessions", Duration::from_secs(20), || async {
            let sessions: u64 = client
                .query("SELECT count() FROM sessions FINAL WHERE app_id = ? AND dropped = 0")
                .bind(self.app.as_str())
                .fetch_one()
                .await
                .ok()?;
            (sessions >= n).then_some(())
        })
        .await;
    }

    /// `…/api/v1/analytics/{app}/{rest}` on the query service.
    pub fn api(&self, rest: &str) -> String {
        format!("{}/api/v1/analytics/{}/{rest}", self.query.url(), self.app)
    }

    /// POSTs `body` to `api(rest)` with the read key: (status, JSON answer).
    pub async fn post(&self, rest: &str, body: &Value) -> (u16, Value) {
        let request = self.http.post(self.api(rest)).json(body);
        answer(request.bearer_auth(&self.read_key)).await
    }

    /// GETs `api(rest)` with the read key: (status, JSON answer).
    pub async fn get(&self, rest: &str) -> (u16, Value) {
        answer(self.http.get(self.api(rest)).bearer_auth(&self.read_key)).await
    }

    /// Stops the services and drops the test's database and keys.
    pub async fn stop(self) {
        self.query.stop().await;
        self.aggregator.stop().await;
        self.gateway.stop().await;
        self.iso.cleanup().await;
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
