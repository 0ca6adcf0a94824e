//! Boots Tally's services in-process on port 0 through their real `run`
//! functions, with a shutdown handle (graceful) and an abort (crash-like).

use crate::Isolation;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running service.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop (SIGTERM path): waits until `run` returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }

    /// Crash-like stop: the task is dropped wherever it is (no flush, no commit).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn spawn<F>(start: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> F) -> Running
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    // Logs of in-process services follow TALLY_LOG (quiet unless asked).
    if std::env::var("TALLY_LOG").is_ok() {
        tally_common::telemetry::init("test");
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|err| panic!("bind: {err}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|err| panic!("addr: {err}"));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(start(listener, stopped));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn on(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// Gateway settings for `iso` (produce timeout 3 s).
pub fn gateway_config(iso: &Isolation) -> ingest_gateway::Config {
    ingest_gateway::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka: iso.kafka.clone(),
        produce_timeout: Duration::from_secs(3),
        postgres: crate::postgres(),
        key_refresh: Duration::from_secs(1),
        trusted_proxies: 1,
        app_rate: 100_000,
        app_burst: 200_000,
        // Every test client shares 127.0.0.1: no per-client cap unless a test sets one.
        max_inflight_per_client_bytes: 256 * 1024 * 1024,
        max_connections: 1_000,
        ..ingest_gateway::Config::default()
    }
}

/// Starts a gateway and waits (at most 60 s) until its `/readyz` answers 200:
/// its producer reached the broker and saw the topic, and the write keys are
/// loaded, so a test's first request is not refused for a slow start.
pub async fn gateway(config: ingest_gateway::Config) -> Running {
    let running = gateway_unready(config).await;
    let url = format!("{}/readyz", running.url());
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|response| response.status());
        match status {
            Ok(status) if status.is_success() => return running,
            _ if tokio::time::Instant::now() >= deadline => {
                panic!("gateway not ready within 60 s (last answer: {status:?})")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Starts a gateway without waiting for it to be ready (tests of a gateway
/// started while its broker is away).
pub async fn gateway_unready(config: ingest_gateway::Config) -> Running {
    spawn(|listener, stopped| async move {
        if let Err(err) = ingest_gateway::run(config, listener, on(stopped)).await {
            panic!("gateway failed: {err}");
        }
    })
    .await
}

/// Aggregator settings for `iso` (live every 100 ms, full flush every 500 ms).
pub fn aggregator_config(iso: &Isolation) -> stream_aggregator::Config {
    stream_aggregator::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka: iso.kafka.clone(),
        group_id: iso.group_id.clone(),
        redis_url: iso.redis_url.clone(),
        redis_prefix: iso.redis_prefix.clone(),
        live_ttl: Duration::from_secs(3_600),
        clickhouse: iso.clickhouse.clone(),
        migrate: true,
        flush_interval: Duration::from_millis(500),
        live_flush_interval: Duration::from_millis(100),
        fetch_wait: Duration::from_millis(100),
        max_batch_rows: 10_000,
        allowed_lateness: Duration::from_secs(30),
        fault: stream_aggregator::config::Fault::None,
        dedup_window: Duration::from_secs(900),
        stop_at: None,
        reenrich: None,
    }
}

/// Starts an aggregator.
pub async fn aggregator(config: stream_aggregator::Config) -> Running {
    spawn(|listener, stopped| async move {
        if let Err(err) = stream_aggregator::run(config, listener, on(stopped)).await {
            panic!("aggregator failed: {err}");
        }
    })
    .await
}

/// Report-refresher settings for `iso` (its scope is the test's database).
pub fn refresher_config(iso: &Isolation) -> report_refresher::Config {
    report_refresher::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        clickhouse: iso.clickhouse.clone(),
        postgres: crate::postgres(),
        kafka: iso.kafka.clone(),
        aggregator_group: iso.group_id.clone(),
        migrate: false,
        interval: Duration::from_millis(200),
        full_every: Duration::ZERO,
        lease: Duration::from_secs(10),
        retention_days: 730,
        lifecycle_every: Duration::from_secs(3_600),
    }
}

/// Starts a report refresher.
pub async fn refresher(config: report_refresher::Config) -> Running {
    spawn(|listener, stopped| async move {
        if let Err(err) = report_refresher::run(config, listener, on(stopped)).await {
            panic!("refresher failed: {err}");
        }
    })
    .await
}

/// Query-service settings for `iso`.
pub fn query_config(iso: &Isolation) -> query_service::Config {
    query_service::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        redis_url: iso.redis_url.clone(),
        redis_prefix: iso.redis_prefix.clone(),
        clickhouse: iso.clickhouse.clone(),
        max_windows: 720,
        max_range_days: 731,
        postgres: crate::postgres(),
        key_refresh: Duration::from_secs(1),
        live_cache: Duration::from_millis(250),
        allowed_lateness_ms: 30_000,
        query_cache: Duration::from_secs(5),
        max_groups: 100_000,
        accounts: Default::default(),
        web_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"),
    }
}

/// Starts a query service.
pub async fn query(config: query_service::Config) -> Running {
    spawn(|listener, stopped| async move {
        if let Err(err) = query_service::run(config, listener, on(stopped)).await {
            panic!("query service failed: {err}");
        }
    })
    .await
}
