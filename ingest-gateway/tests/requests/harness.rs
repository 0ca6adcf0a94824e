//! An in-process gateway on [`MemorySink`] and [`MemoryKeys`], served on an
//! ephemeral loopback port, with small helpers to send batches.

use ingest_gateway::sink::MemorySink;
use ingest_gateway::{AppState, Config};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tally_common::keys::{KeyCache, MemoryKeys};
use tokio::sync::oneshot;

/// A running gateway and handles on what it stores and which keys it knows.
pub struct Gateway {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// The listening address.
    pub addr: SocketAddr,
    /// Where accepted events and dead letters end up.
    pub sink: MemorySink,
    /// The write keys the gateway's cache loads.
    pub keys: MemoryKeys,
    /// The gateway's state (its key cache, metrics).
    pub state: Arc<AppState<MemorySink>>,
    /// A client.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The settings of a test gateway: the documented defaults, no geo-IP database.
pub fn config() -> Config {
    Config {
        geoip_paths: Vec::new(),
        ..Config::default()
    }
}

impl Gateway {
    /// A gateway with the default test settings.
    pub async fn start() -> Self {
        Self::with(config()).await
    }

    /// A gateway with `config`, its keys loaded once.
    pub async fn with(config: Config) -> Self {
        let sink = MemorySink::new();
        let keys = MemoryKeys::new();
        // Misses reload after 50 ms instead of the service's 1 s: same logic, less waiting.
        let cache = Arc::new(KeyCache::with_reload_gap(
            keys.clone(),
            std::time::Duration::from_millis(50),
        ));
        cache.refresh().await.unwrap();
        let state = Arc::new(
            AppState::new(
                config,
                sink.clone(),
                cache,
                Arc::new(tally_common::SystemClock),
            )
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            ingest_gateway::serve(served, listener, shutdown)
                .await
                .unwrap();
        });
        Gateway {
            url: format!("http://{addr}"),
            addr,
            sink,
            keys,
            state,
            http: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    /// A new write key of `app`, known to the gateway at once.
    pub async fn key(&self, app: &str) -> String {
        let key = format!("tw_{}", uuid::Uuid::new_v4().simple());
        self.keys.add(&key, app);
        self.state.keys.refresh().await.unwrap();
        key
    }

    /// A POST to `path` of the gateway.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    /// Sends `request`: its status and its JSON answer (`Null` if none).
    pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Posts the native batch `body` with `key` as the Basic username.
    pub async fn batch(&self, key: &str, body: &Value) -> (u16, Value) {
        Self::send(
            self.post("/api/v1/events/batch")
                .basic_auth(key, Some(""))
                .json(body),
        )
        .await
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one `series` (name with labels) in a metrics text, 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `n` valid events.
pub fn events(n: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| serde_json::json!({"name": "x", "user_id": format!("u{i}")}))
        .collect();
    serde_json::json!({ "events": list })
}
