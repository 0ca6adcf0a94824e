//! Test support for Tally's integration tests. Every test gets its own Kafka
//! topic and consumer group, Redis key prefix and ClickHouse database, so tests
//! run in parallel against one shared set of real servers (started by
//! `scripts/stack up`). Services are booted in-process on port 0 through their
//! real `run` functions. A slow set-up can be shared by the tests of one
//! binary ([`shared`]).
//!
//! Server addresses come from `TALLY_TEST_KAFKA` (default `127.0.0.1:9092`),
//! `TALLY_TEST_REDIS` (`redis://127.0.0.1:6379`) and `TALLY_TEST_CLICKHOUSE`
//! (`http://127.0.0.1:8123`).

pub mod broker;
pub mod cluster;
pub mod derived;
pub mod journeys;
pub mod pipeline;
pub mod proxy;
pub mod sample;
pub mod servers;
pub mod services;
pub mod shared;

pub use pipeline::Pipeline;

use rand::Rng;
use std::time::{Duration, Instant};
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::kafka::KafkaConfig;
use tally_common::postgres::{KeyKind, PostgresConfig};

/// Shared Kafka-protocol broker of the local stack.
pub fn kafka_brokers() -> String {
    std::env::var("TALLY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Shared Redis of the local stack.
pub fn redis_url() -> String {
    std::env::var("TALLY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Shared ClickHouse of the local stack.
pub fn clickhouse_url() -> String {
    std::env::var("TALLY_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// Shared PostgreSQL of the local stack (`TALLY_TEST_POSTGRES`).
pub fn postgres() -> PostgresConfig {
    PostgresConfig {
        url: std::env::var("TALLY_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://tally:tally@127.0.0.1:5432/tally".into()),
    }
}

/// Creates `app_id` (if needed) and returns a new write key for it.
pub async fn write_key(app_id: &str) -> String {
    tally_common::postgres::provision(&postgres(), app_id, KeyKind::Write)
        .await
        .unwrap_or_else(|err| panic!("provisioning a write key for {app_id}: {err}"))
}

/// Creates `app_id` (if needed) and returns a new read key for it.
pub async fn read_key(app_id: &str) -> String {
    tally_common::postgres::provision(&postgres(), app_id, KeyKind::Read)
        .await
        .unwrap_or_else(|err| panic!("provisioning a read key for {app_id}: {err}"))
}

/// Creates `app_id` (if needed) and lets it receive events naming the site
/// `domain` (Plausible); returns the domain as stored.
pub async fn allow_domain(app_id: &str, domain: &str) -> String {
    tally_common::postgres::provision(&postgres(), app_id, KeyKind::Write)
        .await
        .unwrap_or_else(|err| panic!("provisioning {app_id}: {err}"));
    let client = postgres()
        .connect()
        .await
        .unwrap_or_else(|err| panic!("postgresql: {err}"));
    tally_common::domains::add(&client, app_id, domain)
        .await
        .unwrap_or_else(|err| panic!("allowing {domain} for {app_id}: {err}"))
}

/// A random lowercase suffix for isolating names.
pub fn unique(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..10)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    format!("{prefix}_{suffix}")
}

/// An isolated slice of the stack for one test.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// Kafka settings with a fresh topic and dead-letter topic.
    pub kafka: KafkaConfig,
    /// Consumer group for aggregators of this test.
    pub group_id: String,
    /// Redis server.
    pub redis_url: String,
    /// Redis key prefix.
    pub redis_prefix: String,
    /// ClickHouse settings with a fresh database.
    pub clickhouse: ClickHouseConfig,
}

impl Isolation {
    /// Creates a topic with `partitions`, and a migrated ClickHouse database.
    pub async fn new(partitions: i32) -> Self {
        Self::on_broker(partitions, &kafka_brokers()).await
    }

    /// Like [`Isolation::new`], with the topics on `brokers` (a test's own broker).
    pub async fn on_broker(partitions: i32, brokers: &str) -> Self {
        Self::on_servers(partitions, brokers, &clickhouse_url(), &redis_url()).await
    }

    /// Like [`Isolation::new`], on the given servers (a test's own servers).
    pub async fn on_servers(
        partitions: i32,
        brokers: &str,
        clickhouse_url: &str,
        redis_url: &str,
    ) -> Self {
        Self::build("t", partitions, brokers, redis_url, |database| {
            ClickHouseConfig {
                url: clickhouse_url.to_owned(),
                database,
                user: "default".into(),
                password: String::new(),
                cluster: None,
                shards: Vec::new(),
            }
        })
        .await
    }

    /// Topics of `partitions` on `brokers`, a Redis prefix on `redis_url` and
    /// the ClickHouse `clickhouse` makes of a fresh database name, migrated
    /// (on a cluster, in its layout). Names start with `prefix`.
    pub async fn build(
        prefix: &str,
        partitions: i32,
        brokers: &str,
        redis_url: &str,
        clickhouse: impl FnOnce(String) -> ClickHouseConfig,
    ) -> Self {
        let id = unique(prefix);
        let kafka = KafkaConfig {
            brokers: brokers.to_owned(),
            topic: format!("{id}_events"),
            dlq_topic: format!("{id}_dlq"),
        };
        let clickhouse = clickhouse(format!("tally_{id}"));
        broker::create_topic(&kafka.brokers, &kafka.topic, partitions).await;
        broker::create_topic(&kafka.brokers, &kafka.dlq_topic, 1).await;
        tally_common::clickhouse::migrate(&clickhouse)
            .await
            .unwrap_or_else(|err| panic!("migrating {}: {err}", clickhouse.database));
        Isolation {
            group_id: format!("{id}_group"),
            redis_url: redis_url.to_owned(),
            redis_prefix: id,
            kafka,
            clickhouse,
        }
    }

    /// Waits (≤ 30 s) until this test's consumer group has consumed and
    /// committed everything on its topic (see [`broker::wait_consumed`]).
    pub async fn wait_consumed(&self) {
        broker::wait_consumed(
            &self.kafka.brokers,
            &self.group_id,
            &self.kafka.topic,
            Duration::from_secs(30),
        )
        .await;
    }

    /// ClickHouse client on the test database.
    pub fn clickhouse_client(&self) -> clickhouse::Client {
        self.clickhouse.client()
    }

    /// Drops the test database and the Redis keys (topics are left to the broker's retention).
    pub async fn cleanup(&self) {
        let _ =
            tally_common::clickhouse::drop_database(&self.clickhouse, &self.clickhouse.database)
                .await;
        // Every master of a Redis Cluster holds some of the keys.
        if let Ok(redis) = tally_common::redis_conn::Redis::connect(&self.redis_url).await {
            let keys = redis
                .scan_match(&format!("{}:*", self.redis_prefix))
                .await
                .unwrap_or_default();
            // One key per command: keys of several slots.
            for key in keys {
                let _: Result<(), _> = redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut redis.clone())
                    .await;
            }
        }
    }
}

/// Sum of the samples of a Prometheus family (`name` and any labels) in the
/// `/metrics` of the service at `url` (0 when it does not answer).
pub async fn metric(url: &str, family: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("{url}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `fetch` (every 200 ms) until `done` holds for its value or `timeout`
/// passes: `Ok(value)` when it held, else `Err(last value)` for the caller's
/// failure message.
pub async fn poll<T, F, Fut>(
    timeout: Duration,
    mut fetch: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = fetch().await;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(value);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Current time, epoch ms.
pub fn now_ms() -> i64 {
    use tally_common::Clock;
    tally_common::SystemClock.now_ms()
}

/// Posts one native batch with `key` as HTTP Basic username; returns the status and the JSON answer.
pub async fn post_batch(
    http: &reqwest::Client,
    gateway: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = http
        .post(format!("{gateway}/api/v1/events/batch"))
        .basic_auth(key, Some(""))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("posting batch: {err}"));
    let status = response.status().as_u16();
    let json = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Where `scripts/stack` installed the third-party SDKs used by the compatibility
/// tests (`node_modules` inside; pinned by `tests/sdk/package-lock.json`, installed by `scripts/stack`).
pub fn node_clients_dir() -> std::path::PathBuf {
    tally_common::config::cache_dir().join("node-clients")
}

/// The `Authorization` header value Segment's SDKs send: Basic, key as user name.
pub fn basic_auth(key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// `(rows, distinct event ids)` of `app_id` in the test database.
pub async fn clickhouse_counts(iso: &Isolation, app_id: &str) -> (u64, u64) {
    iso.clickhouse_client()
        .query("SELECT count(), uniqExact(event_id) FROM events WHERE app_id = ?")
        .bind(app_id)
        .fetch_one::<(u64, u64)>()
        .await
        .unwrap_or_else(|err| panic!("counting rows: {err}"))
}

/// A `/retention` answer's cohorts: (cohort, breakdown or "") → (size, retained per period).
pub fn retention_grid(
    answer: &serde_json::Value,
) -> std::collections::BTreeMap<(String, String), (u64, Vec<u64>)> {
    answer["cohorts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let retained = c["retained"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|n| n.as_u64().unwrap_or_default())
                .collect();
            let cohort = c["cohort"].as_str().unwrap_or_default().to_owned();
            let by = c["breakdown"].as_str().unwrap_or_default().to_owned();
            (
                (cohort, by),
                (c["size"].as_u64().unwrap_or_default(), retained),
            )
        })
        .collect()
}
