//! Redis for the services: one server or a Redis Cluster (issue 18).
//!
//! `TALLY_REDIS_URL` is one URL for a server, or a comma-separated list of a
//! Redis Cluster's nodes (`redis://h1:6379,redis://h2:6379,…`, two or more
//! seeds): the cluster connection learns the slot map from them and follows
//! its changes. Both forms are a [`Redis`], which is a
//! [`redis::aio::ConnectionLike`], so commands and scripts run on either.
//!
//! Slot rules every key layout follows (`tally_schemas::live`,
//! `tally_schemas::person`): a script or command touches keys of one slot
//! only — one key, or keys sharing a hash tag (`{…}`): an app's identity
//! state (`{app}`), a partition claim's marks and lock (`{topic:partition}`).
//! Independent commands go through [`Redis::batch`]: one pipeline on a
//! server; on a cluster each command is routed to its slot's node (the
//! cluster connection multiplexes them), since a pipeline there must hold one
//! slot only.
//!
//! A cluster connection that met a timeout or a broken connection (a master
//! restarted: redis-rs's cluster connection may keep using the dead socket)
//! is replaced by a fresh one and the command retried once; a command that
//! still fails returns its error (callers retry).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// A Redis Cluster's client and its current connection (with a generation,
/// so concurrent failures replace it once).
pub struct ClusterHandle {
    client: ClusterClient,
    current: RwLock<(u64, ClusterConnection)>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle").finish_non_exhaustive()
    }
}

impl ClusterHandle {
    async fn connection(&self) -> (u64, ClusterConnection) {
        self.current.read().await.clone()
    }

    /// Replaces the connection of generation `failed` (if nobody did yet).
    async fn replace(&self, failed: u64) -> RedisResult<()> {
        let mut current = self.current.write().await;
        if current.0 == failed {
            let fresh = self.client.get_async_connection().await?;
            *current = (failed + 1, fresh);
            tracing::warn!(generation = failed + 1, "redis cluster connection replaced");
        }
        Ok(())
    }
}

/// Whether `error` says the connection (not the command) failed.
fn connection_failed(error: &RedisError) -> bool {
    error.is_timeout()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}

/// A connection to a Redis server or a Redis Cluster (cheap to clone).
#[derive(Clone)]
pub enum Redis {
    /// One server (reconnects by itself).
    Server(ConnectionManager),
    /// A Redis Cluster.
    Cluster(Arc<ClusterHandle>),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redis::Server(_) => "Redis::Server",
            Redis::Cluster(_) => "Redis::Cluster",
        })
    }
}

/// The seed URLs of `url` (more than one: a cluster).
pub fn seeds(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .collect()
}

impl Redis {
    /// Connects to `url` (see the module header).
    pub async fn connect(url: &str) -> RedisResult<Redis> {
        let seeds = seeds(url);
        if seeds.len() > 1 {
            // A restarted or failed-over master must surface as an error
            // (the callers retry), never as a request waiting forever.
            let client = redis::cluster::ClusterClient::builder(seeds)
                .retries(6)
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(3))
                .build()?;
            let connection = client.get_async_connection().await?;
            Ok(Redis::Cluster(Arc::new(ClusterHandle {
                client,
                current: RwLock::new((0, connection)),
            })))
        } else {
            let client = redis::Client::open(url)?;
            Ok(Redis::Server(ConnectionManager::new(client).await?))
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }

    /// Every key matching `pattern`, by SCAN (never blocking a server): on a
    /// cluster, of every master the cluster currently lists. A key written
    /// meanwhile may be missed, one deleted meanwhile may be listed.
    pub async fn scan_match(&self, pattern: &str) -> RedisResult<Vec<String>> {
        match self {
            Redis::Server(connection) => scan_node(&mut connection.clone(), pattern).await,
            Redis::Cluster(handle) => {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut self.clone())
                    .await?;
                let mut found = Vec::new();
                for (host, port) in masters(&nodes) {
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let mut cursor = 0u64;
                    loop {
                        let reply = handle
                            .connection()
                            .await
                            .1
                            .route_command(&scan_command(cursor, pattern), routing.clone())
                            .await?;
                        let (next, keys): (u64, Vec<String>) =
                            redis::from_owned_redis_value(reply)?;
                        found.extend(keys);
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
                Ok(found)
            }
        }
    }

    /// Runs independent commands (each of one slot, no transaction) and
    /// returns their replies in order.
    pub async fn batch<T: FromRedisValue>(&self, commands: &[Cmd]) -> RedisResult<Vec<T>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Redis::Server(connection) => {
                let mut pipe = redis::pipe();
                for command in commands {
                    pipe.add_command(command.clone());
                }
                pipe.query_async(&mut connection.clone()).await
            }
            Redis::Cluster(_) => {
                futures::future::try_join_all(commands.iter().map(|command| {
                    let mut connection = self.clone();
                    async move { command.query_async::<T>(&mut connection).await }
                }))
                .await
            }
        }
    }
}

/// One SCAN step.
fn scan_command(cursor: u64, pattern: &str) -> Cmd {
    let mut command = redis::cmd("SCAN");
    command
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    command
}

/// SCAN of one server.
async fn scan_node(
    connection: &mut impl ConnectionLike,
    pattern: &str,
) -> RedisResult<Vec<String>> {
    let (mut cursor, mut found) = (0u64, Vec::new());
    loop {
        let (next, keys): (u64, Vec<String>) = scan_command(cursor, pattern)
            .query_async(connection)
            .await?;
        found.extend(keys);
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// The reachable masters' addresses in a `CLUSTER NODES` reply (a line per
/// node: id, `host:port@bus[,hostname]`, flags, …).
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let (host, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
            let port = port.parse().ok()?;
            (is_master && !failed).then(|| (host.to_owned(), port))
        })
        .collect()
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Server(connection) => connection.req_packed_command(cmd),
            Redis::Cluster(handle) => {
                let handle = handle.clone();
                Box::pin(async move {
                    let (generation, mut connection) = handle.connection().await;
                    match connection.req_packed_command(cmd).await {
                        Err(error) if connection_failed(&error) => {
                            handle.replace(generation).await?;
                            handle.connection().await.1.req_packed_command(cmd).await
                        }
                        answer => answer,
                    }
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Redis::Server(connection) => connection.req_packed_commands(cmd, offset, count),
            Redis::Cluster(handle) => {
                let handle = handle.clone();
                Box::pin(async move {
                    let (generation, mut connection) = handle.connection().await;
                    match connection.req_packed_commands(cmd, offset, count).await {
                        Err(error) if connection_failed(&error) => {
                            handle.replace(generation).await?;
                            let mut connection = handle.connection().await.1;
                            connection.req_packed_commands(cmd, offset, count).await
                        }
                        answer => answer,
                    }
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Server(connection) => connection.get_db(),
            Redis::Cluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_urls_is_a_cluster() {
        assert_eq!(seeds("redis://127.0.0.1:6379"), ["redis://127.0.0.1:6379"]);
        assert_eq!(
            seeds("redis://a:7001, redis://b:7002,"),
            ["redis://a:7001", "redis://b:7002"]
        );
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host-b master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7004@17004 slave b2 0 1 2 connected
d4 10.0.0.9:7003@17003 master,fail - 0 1 3 disconnected
";
        assert_eq!(
            masters(nodes),
            [
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}
