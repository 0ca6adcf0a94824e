//! Read access to the stores: [`RedisLive`] (live windows, layout in
//! `tally_schemas::live`, and stream tokens) and [`ClickHouseStore`] (raw
//! events, the page-view rollup). Every ClickHouse query binds its inputs as
//! parameters; none is spliced. Data is read from the request's served pair
//! ([`crate::serving::current`]: the configured database and prefix unless a
//! replay was switched to); stream tokens always live under the configured prefix.

use crate::sql::{utc_date, Bind, Sql};
use redis::Cmd;
use tally_common::redis_conn::Redis;
use tally_schemas::live::{window_keys, WindowSnapshot, LIVE_SHARDS};

/// Longest an ad-hoc statement may run on ClickHouse, seconds (over → 400).
pub const MAX_EXECUTION_SECS: u64 = 10;

/// Longest a read waits for ClickHouse's whole answer: the execution limit
/// plus time queued and on the wire. A server that takes the request and
/// never answers (overloaded, a half-dead pooled connection) makes the read
/// fail as "store unavailable" (503) instead of a request, and the dashboard
/// panel waiting on it, hanging for ever.
pub const READ_DEADLINE: std::time::Duration =
    std::time::Duration::from_secs(3 * MAX_EXECUTION_SECS);

/// `read`, or [`clickhouse::error::Error::TimedOut`] after `limit`.
async fn within<T>(
    limit: std::time::Duration,
    read: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, clickhouse::error::Error> {
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(clickhouse::error::Error::TimedOut))
}

/// Live windows and stream tokens on Redis (a server or a Redis Cluster).
#[derive(Clone)]
pub struct RedisLive {
    connection: Redis,
    prefix: String,
}

impl std::fmt::Debug for RedisLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLive")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLive {
    /// Reads keys under `prefix`.
    pub fn new(connection: Redis, prefix: &str) -> Self {
        RedisLive {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix of the data keys (windows, identity state, visitors) the
    /// current request answers from.
    fn data_prefix(&self) -> String {
        crate::serving::current().map_or_else(|| self.prefix.clone(), |served| served.prefix)
    }

    /// Snapshots of `app_id`'s windows starting at `starts` (missing windows are empty).
    pub async fn windows(
        &self,
        app_id: &str,
        starts: &[i64],
    ) -> Result<Vec<WindowSnapshot>, crate::QueryError> {
        let prefix = self.data_prefix();
        let commands: Vec<Cmd> = starts
            .iter()
            .flat_map(|start| window_keys(&prefix, app_id, *start))
            .map(|key| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(key);
                cmd
            })
            .collect();
        let hashes: Vec<Vec<(String, Vec<u8>)>> = self.connection.batch(&commands).await?;
        let shards = usize::try_from(LIVE_SHARDS).unwrap_or(1);
        starts
            .iter()
            .zip(hashes.chunks(shards))
            .map(|(start, split)| {
                Ok(WindowSnapshot::from_fields(
                    *start,
                    split.iter().flatten().cloned(),
                )?)
            })
            .collect()
    }

    /// Stores a stream token's hash for `app_id`, expiring after `ttl_secs`.
    pub async fn put_stream_token(
        &self,
        hash: &str,
        app_id: &str,
        ttl_secs: u64,
    ) -> Result<(), crate::QueryError> {
        redis::cmd("SET")
            .arg(tally_schemas::live::stream_token_key(&self.prefix, hash))
            .arg(app_id)
            .arg("EX")
            .arg(ttl_secs)
            .query_async::<()>(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    /// Deletes a person from the identity state: every id of its person and
    /// `ids` are unlinked and tombstoned (the aggregator drops their later
    /// events), and their session states are dropped. Returns the tombstoned ids.
    pub async fn delete_person(
        &self,
        app_id: &str,
        ids: &[String],
    ) -> Result<Vec<String>, crate::QueryError> {
        use tally_schemas::person::{identity_key, DELETE_SCRIPT};
        let Some(first) = ids.first() else {
            return Ok(Vec::new());
        };
        let prefix = self.data_prefix();
        let key = |rest: &str| identity_key(&prefix, app_id, rest);
        let script = redis::Script::new(DELETE_SCRIPT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key("map"))
            .key(key("ver"))
            .key(key("tombstones"))
            .key(key("pver"))
            .arg(first)
            .arg(key("members:"))
            .arg(key("traits:"))
            .arg(key("stamps:"));
        for id in &ids[1..] {
            invocation.arg(id);
        }
        let mut connection = self.connection.clone();
        let gone: Vec<String> = invocation.invoke_async(&mut connection).await?;
        // One key per command: visitors' keys sit in different cluster slots.
        let deletes: Vec<Cmd> = gone
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(tally_schemas::live::visitor_key(&prefix, app_id, id));
                cmd
            })
            .collect();
        let _: Vec<i64> = self.connection.batch(&deletes).await?;
        Ok(gone)
    }

    /// The app of an unexpired stream token's hash.
    pub async fn stream_token_app(&self, hash: &str) -> Result<Option<String>, crate::QueryError> {
        Ok(redis::cmd("GET")
            .arg(tally_schemas::live::stream_token_key(&self.prefix, hash))
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// `Ok` when reachable.
    pub async fn ping(&self) -> Result<(), String> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.connection.clone())
            .await
            .map(|_| ())
            .map_err(|err| err.to_string())
    }
}

/// Raw events on ClickHouse (one server, or a cluster read through its
/// `Distributed` tables).
#[derive(Clone)]
pub struct ClickHouseStore {
    client: clickhouse::Client,
    /// [`READ_DEADLINE`] (shorter in tests).
    read_deadline: std::time::Duration,
    /// (cluster, configured database) on a cluster: mutations run on every
    /// shard's local tables (`tally_schemas::cluster::Cluster::mutation`).
    cluster: Option<(String, String)>,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore").finish_non_exhaustive()
    }
}

impl ClickHouseStore {
    /// Uses `client` (bound to Tally's database).
    pub fn new(client: clickhouse::Client) -> Self {
        ClickHouseStore {
            client,
            read_deadline: READ_DEADLINE,
            cluster: None,
        }
    }

    /// The store of `config` (on its cluster, if it names one).
    pub fn of(config: &tally_common::clickhouse::ClickHouseConfig) -> Self {
        ClickHouseStore {
            client: config.client(),
            read_deadline: READ_DEADLINE,
            cluster: config
                .cluster
                .clone()
                .map(|name| (name, config.database.clone())),
        }
    }

    /// The same store, its reads failing after `limit` instead of [`READ_DEADLINE`].
    pub fn with_read_deadline(mut self, limit: std::time::Duration) -> Self {
        self.read_deadline = limit;
        self
    }

    /// `text` as the current database runs it (a mutation's cluster form on a cluster).
    fn statement(&self, text: &str) -> String {
        let Some((name, configured)) = &self.cluster else {
            return text.to_owned();
        };
        let database = crate::serving::current().map_or(configured.clone(), |s| s.database);
        tally_schemas::cluster::Cluster {
            name,
            database: &database,
        }
        .service_form(text)
    }

    /// The client on the database the current request answers from.
    fn client(&self) -> clickhouse::Client {
        match crate::serving::current() {
            Some(served) => self.client.clone().with_database(served.database),
            None => self.client.clone(),
        }
    }
}

/// `query` with the binds of `sql`, in order.
fn bound(mut query: clickhouse::query::Query, sql: &Sql) -> clickhouse::query::Query {
    for bind in &sql.binds {
        query = match bind {
            Bind::Text(text) => query.bind(text.as_str()),
            Bind::Int(n) => query.bind(*n),
            Bind::Float(x) => query.bind(*x),
            Bind::List(list) => query.bind(list.as_slice()),
        };
    }
    query
}

/// Property names of an app among a list (`property_keys`, migration 0006).
pub const PROPERTY_NAMES_SQL: &str =
    "SELECT DISTINCT key FROM property_keys WHERE app_id = ? AND has(?, key) ORDER BY key";

/// SQL of the count query (run against ClickHouse 18.16 by `testkit/tests/e2e.rs`).
pub const COUNT_SQL: &str = "SELECT count() FROM events \
     WHERE app_id = ? AND event_date >= toDate(?) AND event_date <= toDate(?) \
     AND ts_ms >= ? AND ts_ms < ?";

impl ClickHouseStore {
    /// Events of `app_id` with `from_ms <= ts < to_ms`.
    pub async fn count(
        &self,
        app_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, crate::QueryError> {
        let read = self
            .client()
            .query(COUNT_SQL)
            .bind(app_id)
            .bind(utc_date(from_ms))
            .bind(utc_date(to_ms))
            .bind(u64::try_from(from_ms).unwrap_or(0))
            .bind(u64::try_from(to_ms).unwrap_or(0))
            .fetch_one::<u64>();
        let count = within(self.read_deadline, read).await?;
        Ok(count)
    }

    /// Which of `names` the app has sent as property names (`property_keys`,
    /// kept by migration 0006's materialized view).
    pub async fn property_names_among(
        &self,
        app_id: &str,
        names: &[&str],
    ) -> Result<Vec<String>, crate::QueryError> {
        let read = self
            .client()
            .query(PROPERTY_NAMES_SQL)
            .bind(app_id)
            .bind(names)
            .fetch_all::<String>();
        let found = within(self.read_deadline, read).await?;
        Ok(found)
    }

    /// Runs a statement; one JSON object per row (`d0…`, `m0…`).
    pub async fn rows(
        &self,
        sql: &Sql,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, crate::QueryError> {
        let mut query = self
            .client()
            .query(&sql.text)
            .with_setting("max_execution_time", MAX_EXECUTION_SECS.to_string());
        if let Some(groups) = sql.max_groups {
            query = query
                .with_setting("max_rows_to_group_by", groups.to_string())
                .with_setting("group_by_overflow_mode", "throw");
        }
        query = bound(query, sql);
        let mut cursor = query.fetch_bytes("JSONEachRow")?;
        let bytes = within(self.read_deadline, cursor.collect())
            .await
            .map_err(|err| query_fault(err, sql.max_groups))?;
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line)
                    .map_err(|e| crate::QueryError::Internal(format!("ClickHouse row: {e}")))
            })
            .collect()
    }

    /// Runs a statement that answers nothing (a mutation).
    pub async fn execute(&self, sql: &Sql) -> Result<(), crate::QueryError> {
        let text = self.statement(&sql.text);
        Ok(bound(self.client().query(&text), sql).execute().await?)
    }

    /// `Ok` when reachable.
    pub async fn ping(&self) -> Result<(), String> {
        let read = self.client().query("SELECT 1").execute();
        within(self.read_deadline, read)
            .await
            .map_err(|err| err.to_string())
    }
}

/// What a failed read means: TIMEOUT_EXCEEDED (159), MEMORY_LIMIT_EXCEEDED
/// (241) and TOO_MANY_ROWS (158, from `max_rows_to_group_by`) say the
/// question is too large — the query, not the store, is the problem (400);
/// anything else is the store failing (503).
pub fn query_fault(err: clickhouse::error::Error, max_groups: Option<u64>) -> crate::QueryError {
    let text = err.to_string();
    match max_groups {
        _ if text.contains("Code: 159") => crate::QueryError::TooExpensive(MAX_EXECUTION_SECS),
        _ if text.contains("Code: 241") => crate::QueryError::TooMuchMemory,
        Some(groups) if text.contains("Code: 158") => crate::QueryError::TooManyGroups(groups),
        _ => crate::QueryError::StoreUnavailable(err),
    }
}

#[cfg(test)]
mod tests {
    use super::{query_fault, ClickHouseStore};
    use crate::sql::Sql;
    use crate::QueryError;
    use clickhouse::error::Error;
    use std::time::{Duration, Instant};

    /// A server that takes connections and requests and never answers.
    #[tokio::test]
    async fn a_store_that_never_answers_fails_the_read_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let store = ClickHouseStore::new(clickhouse::Client::default().with_url(url))
            .with_read_deadline(Duration::from_millis(300));
        let started = Instant::now();
        let sql = Sql {
            text: "SELECT 1 AS m0".into(),
            binds: Vec::new(),
            dimensions: Vec::new(),
            metrics: vec!["m0".into()],
            max_groups: None,
        };
        let err = tokio::time::timeout(Duration::from_secs(10), store.rows(&sql))
            .await
            .unwrap_or_else(|_| panic!("the read waited past its deadline"))
            .unwrap_err();
        assert!(
            matches!(err, QueryError::StoreUnavailable(Error::TimedOut)),
            "{err:?}"
        );
        assert_eq!(err.status().as_u16(), 503);
        assert_eq!(err.reason(), "event_store_unavailable");
        assert!(store.count("a", 0, 1).await.is_err());
        assert!(store.ping().await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        silent.abort();
    }

    fn fault(text: &str, max_groups: Option<u64>) -> QueryError {
        query_fault(Error::BadResponse(text.to_owned()), max_groups)
    }

    #[test]
    fn a_question_too_large_is_the_clients_and_a_failing_store_is_ours() {
        let memory =
            "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded";
        assert!(matches!(fault(memory, None), QueryError::TooMuchMemory));
        assert_eq!(fault(memory, None).status(), 400);
        assert_eq!(fault(memory, None).reason(), "query_too_expensive");
        let timeout = "Code: 159, e.displayText() = DB::Exception: Timeout exceeded";
        assert!(matches!(
            fault(timeout, Some(5)),
            QueryError::TooExpensive(_)
        ));
        let groups =
            "Code: 158, e.displayText() = DB::Exception: Limit for rows to GROUP BY exceeded";
        assert!(matches!(
            fault(groups, Some(5)),
            QueryError::TooManyGroups(5)
        ));
        // Without a group limit, 158 is not ours to explain: the store failed.
        assert_eq!(fault(groups, None).status(), 503);
        let down = "Code: 210, Connection refused";
        assert!(matches!(fault(down, None), QueryError::StoreUnavailable(_)));
        assert_eq!(fault(down, None).reason(), "event_store_unavailable");
    }
}
