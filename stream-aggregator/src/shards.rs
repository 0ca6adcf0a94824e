//! The shards of a ClickHouse cluster as the aggregator writes them (issue 18;
//! the argument is in `docs/CLUSTER.md`, "Exactly once on the cluster").
//!
//! Contract:
//! * A row's shard is `shard_hash(app_id, distinct_id) % shards`
//!   ([`Shards::shard_of`]), the `Distributed` tables' own sharding key for
//!   the visitor tables, so rows the aggregator places itself sit where a
//!   `Distributed` insert would have put them.
//! * Per shard the aggregator uses one replica at a time, its *home*
//!   ([`Shards::client`]): every write and every read of that shard goes
//!   there. A replica becomes home only after it proved it holds every part
//!   acknowledged on its shard: `SYSTEM SYNC REPLICA` of the tables read
//!   back ([`SYNCED`]), then its own state must show it: the shared
//!   replication log in ZooKeeper (`system.zookeeper`) holds no entry past
//!   the replica's `log_pointer`, and no inserted part is left to fetch
//!   (`inserts_in_queue`, `system.replicas`). (18.16's `SYNC REPLICA` may
//!   return at its own timeout without an error, so it is not trusted alone.)
//!   A replica must also name itself the configured shard (`system.clusters`,
//!   `is_local`): a wrongly ordered `TALLY_CLICKHOUSE_SHARDS` would place rows
//!   on the wrong shard, so it is refused.
//! * A failed call drops the home ([`Shards::failed`]); so does a rebalance
//!   ([`Shards::invalidate`]); the next call selects again, trying replicas in
//!   configuration order. If the only replica holding an acknowledged part is
//!   down, no other replica can prove itself synced and the shard's calls fail
//!   until it returns: writes wait, no row is lost or doubled.

use clickhouse::error::Error;
use clickhouse::Client;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tally_common::clickhouse::ClickHouseConfig;

/// Longest a replica may take to prove itself synced.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The local tables the aggregator reads back, synchronised before use.
pub const SYNCED: &[&str] = &["events_local", "sessions_local"];

/// One shard: its replicas (configuration order) and the current home.
struct Shard {
    urls: Vec<String>,
    replicas: Vec<Client>,
    home: Mutex<Option<usize>>,
}

/// Every shard of the cluster.
pub struct Shards {
    cluster: String,
    database: String,
    shards: Vec<Shard>,
    sync_timeout: Duration,
    /// Bumped by every drop of a home: a proof that began before a drop
    /// (a readiness ping during a rebalance) does not make a home after it.
    epoch: AtomicU64,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&Vec<String>> = self.shards.iter().map(|s| &s.urls).collect();
        f.debug_struct("Shards")
            .field("cluster", &self.cluster)
            .field("shards", &urls)
            .finish()
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Position {
    shard_num: u32,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ReplicaState {
    table: String,
    zookeeper_path: String,
    is_readonly: u8,
    log_pointer: u64,
    inserts_in_queue: u32,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct LogEntry {
    name: String,
}

impl Shards {
    /// The shards of `config`'s cluster, from `config.shards` (HTTP URLs of
    /// each shard's replicas, shards in `shard_num` order). `None` on one server.
    pub fn of(config: &ClickHouseConfig) -> Option<Shards> {
        let cluster = config.cluster.clone()?;
        let shards = config
            .shards
            .iter()
            .map(|urls| Shard {
                urls: urls.clone(),
                replicas: urls
                    .iter()
                    .map(|url| {
                        ClickHouseConfig {
                            url: url.clone(),
                            ..config.clone()
                        }
                        .client()
                    })
                    .collect(),
                home: Mutex::new(None),
            })
            .collect();
        Some(Shards {
            cluster,
            database: config.database.clone(),
            shards,
            sync_timeout: SYNC_TIMEOUT,
            epoch: AtomicU64::new(0),
        })
    }

    /// The longest a replica may take to prove itself synced (default [`SYNC_TIMEOUT`]).
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// The URL of `shard`'s current home, if it has one.
    pub fn home(&self, shard: u16) -> Option<&str> {
        let entry = self.shards.get(usize::from(shard))?;
        let home = (*lock(&entry.home))?;
        entry.urls.get(home).map(String::as_str)
    }

    /// Number of shards.
    pub fn count(&self) -> usize {
        self.shards.len()
    }

    /// The shard (0-based) of a visitor's rows.
    pub fn shard_of(&self, app_id: &str, distinct_id: &str) -> u16 {
        let n = self.shards.len().max(1) as u64;
        let shard = tally_schemas::cluster::shard_hash(&[app_id, distinct_id]) % n;
        u16::try_from(shard).unwrap_or(0)
    }

    /// The home replica of `shard`, selected (and proven synced) if there is none.
    pub async fn client(&self, shard: u16) -> Result<Client, Error> {
        let index = usize::from(shard);
        let entry = self
            .shards
            .get(index)
            .ok_or_else(|| Error::Custom(format!("no shard {index} configured")))?;
        if let Some(home) = *lock(&entry.home) {
            return Ok(entry.replicas[home].clone());
        }
        let mut last = Error::Custom(format!("shard {} has no replica configured", index + 1));
        let epoch = self.epoch.load(Ordering::SeqCst);
        for (replica, client) in entry.replicas.iter().enumerate() {
            match tokio::time::timeout(self.sync_timeout, self.prove(index, client)).await {
                Ok(Ok(())) => {
                    let mut home = lock(&entry.home);
                    if self.epoch.load(Ordering::SeqCst) == epoch {
                        *home = Some(replica);
                    }
                    drop(home);
                    crate::metrics::replica_selected(index + 1, &entry.urls[replica]);
                    return Ok(client.clone());
                }
                Ok(Err(err)) => last = err,
                Err(_) => last = Error::TimedOut,
            }
            crate::metrics::replica_unusable(index + 1, &entry.urls[replica], &last);
        }
        Err(last)
    }

    /// Drops `shard`'s home after a failed call.
    pub fn failed(&self, shard: u16) {
        if let Some(entry) = self.shards.get(usize::from(shard)) {
            let mut home = lock(&entry.home);
            self.epoch.fetch_add(1, Ordering::SeqCst);
            *home = None;
        }
    }

    /// Drops every home (after a rebalance, or before reading watermarks after
    /// an unclean release: another process may have written since).
    pub fn invalidate(&self) {
        for entry in &self.shards {
            let mut home = lock(&entry.home);
            self.epoch.fetch_add(1, Ordering::SeqCst);
            *home = None;
        }
    }

    /// Runs `call` on `shard`'s home; a failure drops the home.
    pub async fn on<T, F, Fut>(&self, shard: u16, call: F) -> Result<T, Error>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let client = self.client(shard).await?;
        let result = call(client).await;
        if result.is_err() {
            self.failed(shard);
        }
        result
    }

    /// Whether `client` is a replica of shard `index` holding every part
    /// acknowledged on that shard.
    async fn prove(&self, index: usize, client: &Client) -> Result<(), Error> {
        // 18.16 marks every replica row of the node's own shard `is_local`.
        let position = client
            .query(
                "SELECT DISTINCT shard_num FROM system.clusters WHERE cluster = ? AND is_local = 1",
            )
            .bind(self.cluster.as_str())
            .fetch_all::<Position>()
            .await?;
        let expected = u32::try_from(index + 1).unwrap_or(u32::MAX);
        if position.iter().map(|p| p.shard_num).ne([expected]) {
            return Err(Error::Custom(format!(
                "TALLY_CLICKHOUSE_SHARDS: a replica listed for shard {expected} is shard {:?} of cluster {} (shards must be listed in shard_num order)",
                position.iter().map(|p| p.shard_num).collect::<Vec<_>>(),
                self.cluster
            )));
        }
        for table in SYNCED {
            let sql = format!("SYSTEM SYNC REPLICA {}.{table}", self.database);
            client.query(&sql).execute().await?;
        }
        // The replica's own state decides (see the module header).
        let deadline = tokio::time::Instant::now() + self.sync_timeout;
        loop {
            let states = client
                .query(
                    "SELECT table, zookeeper_path, is_readonly, log_pointer, inserts_in_queue \
                     FROM system.replicas WHERE database = ? AND has(?, table)",
                )
                .bind(self.database.as_str())
                .bind(SYNCED)
                .fetch_all::<ReplicaState>()
                .await?;
            let mut behind = Vec::new();
            for state in &states {
                let log = client
                    .query("SELECT name FROM system.zookeeper WHERE path = ?")
                    .bind(format!("{}/log", state.zookeeper_path))
                    .fetch_all::<LogEntry>()
                    .await?;
                let last = log.iter().filter_map(|e| log_index(&e.name)).max();
                if !caught_up(state, last) {
                    behind.push(state);
                }
            }
            if states.len() == SYNCED.len() && behind.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Custom(format!(
                    "replica not synced: {:?}",
                    behind.iter().map(|s| s.table.as_str()).collect::<Vec<_>>()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Ok` when every shard has a home (selecting one where needed).
    pub async fn ping(&self) -> Result<(), Error> {
        for shard in 0..self.shards.len() {
            let shard = u16::try_from(shard).unwrap_or(u16::MAX);
            self.on(shard, |client| async move {
                client.query("SELECT 1").execute().await
            })
            .await?;
        }
        Ok(())
    }
}

/// Whether a replica's table has read the replication log (whose newest
/// entry is `last`) to its end and has no inserted part left to fetch
/// (`log_pointer` is the index of the next entry to read).
fn caught_up(state: &ReplicaState, last: Option<u64>) -> bool {
    state.is_readonly == 0
        && state.inserts_in_queue == 0
        && last.is_none_or(|last| last < state.log_pointer)
}

/// The index of a replication log entry (`log-0000000042` → 42).
fn log_index(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?.parse().ok()
}

fn lock(home: &Mutex<Option<usize>>) -> std::sync::MutexGuard<'_, Option<usize>> {
    home.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pointer: u64, inserts: u32) -> ReplicaState {
        ReplicaState {
            table: "events_local".into(),
            zookeeper_path: "/clickhouse/tables/1/tally/events_local".into(),
            is_readonly: 0,
            log_pointer: pointer,
            inserts_in_queue: inserts,
        }
    }

    #[test]
    fn a_replica_is_caught_up_only_past_the_log_with_nothing_to_fetch() {
        assert!(caught_up(&state(8, 0), Some(7)));
        assert!(!caught_up(&state(7, 0), Some(7)), "entry 7 not read yet");
        assert!(
            !caught_up(&state(0, 0), Some(0)),
            "the first entry not read yet"
        );
        assert!(caught_up(&state(0, 0), None), "an empty log");
        assert!(!caught_up(&state(8, 1), Some(7)), "a part still to fetch");
        let mut readonly = state(8, 0);
        readonly.is_readonly = 1;
        assert!(!caught_up(&readonly, Some(7)));
        assert_eq!(log_index("log-0000000042"), Some(42));
        assert_eq!(log_index("other"), None);
    }

    #[test]
    fn rows_go_to_the_shard_the_distributed_key_names() {
        let config = ClickHouseConfig {
            url: "http://127.0.0.1:1".into(),
            database: "tally".into(),
            user: "default".into(),
            password: String::new(),
            cluster: Some("tally".into()),
            shards: vec![vec!["http://a".into()], vec!["http://b".into()]],
        };
        let shards = Shards::of(&config).expect("a cluster");
        assert_eq!(shards.count(), 2);
        let mut seen = [0usize; 2];
        for i in 0..200 {
            let id = format!("visitor-{i}");
            let shard = shards.shard_of("app", &id);
            let hash = tally_schemas::cluster::shard_hash(&["app", &id]);
            assert_eq!(u64::from(shard), hash % 2);
            seen[usize::from(shard)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
    }
}
