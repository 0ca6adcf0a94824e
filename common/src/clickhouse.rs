//! ClickHouse access shared by the services: building a client that works on
//! ClickHouse 18.16 (no `RowBinaryWithNamesAndTypes`, so schema validation is
//! off and rows are plain `RowBinary`) and on current releases, and applying the
//! versioned migrations of `tally_schemas::migrations` in order.
//!
//! Applied versions are recorded in `schema_migrations`; running the migrations
//! again applies only the missing ones (and every statement is `IF NOT EXISTS`).
//! Pending migrations run under the migration lock (one runner at a time; the
//! others find them applied), and a migration that rebuilds tables (a new
//! partition key) resumes where a stopped run left it (`crate::rebuild`). On
//! a cluster (`TALLY_CLICKHOUSE_CLUSTER`) every statement runs in its cluster
//! form (`tally_schemas::cluster`).

use crate::config::{env_string, ConfigError};
use clickhouse::Client;
use serde::Deserialize;
use tally_schemas::migrations::{Migration, CLICKHOUSE};

/// Where ClickHouse is.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// HTTP endpoint (`TALLY_CLICKHOUSE_URL`, default `http://127.0.0.1:8123`).
    pub url: String,
    /// Database holding Tally's tables (`TALLY_CLICKHOUSE_DATABASE`, default `tally`).
    pub database: String,
    /// User (`TALLY_CLICKHOUSE_USER`, default `default`).
    pub user: String,
    /// Password (`TALLY_CLICKHOUSE_PASSWORD`, default empty).
    pub password: String,
    /// The cluster (`TALLY_CLICKHOUSE_CLUSTER`, a name in the servers'
    /// `remote_servers`; empty, the default: one server). On a cluster the
    /// migrations create the cluster layout (`tally_schemas::cluster`) and
    /// inserts into `Distributed` tables are synchronous.
    pub cluster: Option<String>,
    /// HTTP URLs of every shard's replicas, shards in `shard_num` order
    /// (`TALLY_CLICKHOUSE_SHARDS`: `url,url;url,url`): the aggregator writes
    /// each shard directly (exactly once on a cluster, `docs/CLUSTER.md`).
    pub shards: Vec<Vec<String>>,
}

impl ClickHouseConfig {
    /// Reads the `TALLY_CLICKHOUSE_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = ClickHouseConfig {
            url: env_string("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            database: env_string("TALLY_CLICKHOUSE_DATABASE", "tally"),
            user: env_string("TALLY_CLICKHOUSE_USER", "default"),
            password: env_string("TALLY_CLICKHOUSE_PASSWORD", ""),
            cluster: Some(env_string("TALLY_CLICKHOUSE_CLUSTER", "")).filter(|c| !c.is_empty()),
            shards: parse_shards(&env_string("TALLY_CLICKHOUSE_SHARDS", "")),
        };
        crate::config::ensure(
            valid_identifier(&config.database),
            "TALLY_CLICKHOUSE_DATABASE must match [A-Za-z0-9_]{1,64}",
        )?;
        crate::config::ensure(
            config.cluster.as_deref().is_none_or(valid_identifier),
            "TALLY_CLICKHOUSE_CLUSTER must match [A-Za-z0-9_]{1,64}",
        )?;
        crate::config::ensure(
            config
                .shards
                .iter()
                .flatten()
                .all(|url| url.starts_with("http")),
            "TALLY_CLICKHOUSE_SHARDS must list HTTP URLs: replicas separated by ',', shards by ';'",
        )?;
        crate::config::ensure(
            config.shards.is_empty() || config.cluster.is_some(),
            "TALLY_CLICKHOUSE_SHARDS needs TALLY_CLICKHOUSE_CLUSTER",
        )?;
        Ok(config)
    }

    /// A client bound to the configured database.
    pub fn client(&self) -> Client {
        self.server_client().with_database(self.database.clone())
    }

    /// A client with no default database (to create one).
    pub fn server_client(&self) -> Client {
        let client = Client::default()
            .with_url(self.url.clone())
            .with_user(self.user.clone())
            .with_password(self.password.clone())
            .with_validation(false);
        match self.cluster {
            // An insert through a `Distributed` table returns once every
            // shard holds its rows (not when they are queued on this node);
            // a subquery or join over a `Distributed` table inside a query
            // over one is run once over the whole cluster and sent to every
            // shard (`GLOBAL`): exact whatever the tables' placements.
            Some(_) => client
                .with_setting("insert_distributed_sync", "1")
                .with_setting("distributed_product_mode", "global"),
            None => client,
        }
    }

    /// The cluster layout's names, on a cluster.
    pub fn layout(&self) -> Option<tally_schemas::cluster::Cluster<'_>> {
        self.cluster
            .as_deref()
            .map(|name| tally_schemas::cluster::Cluster {
                name,
                database: &self.database,
            })
    }
}

/// The ` ON CLUSTER …` of a database statement on `config`'s layout (empty on
/// one server), once `database` is known to be a safe identifier.
fn database_ddl_suffix(
    config: &ClickHouseConfig,
    database: &str,
) -> Result<String, clickhouse::error::Error> {
    if !valid_identifier(database) {
        return Err(clickhouse::error::Error::Custom(format!(
            "invalid database name {database:?}"
        )));
    }
    Ok(config
        .cluster
        .as_deref()
        .map(|c| format!(" ON CLUSTER {c}"))
        .unwrap_or_default())
}

/// Drops `database` (on every node of the configured cluster, if any) on
/// the server `config` names.
pub async fn drop_database(
    config: &ClickHouseConfig,
    database: &str,
) -> Result<(), clickhouse::error::Error> {
    let on = database_ddl_suffix(config, database)?;
    config
        .server_client()
        .query(&format!("DROP DATABASE IF EXISTS {database}{on}"))
        .execute()
        .await
}

/// `url,url;url,url` → shards of replicas (empty parts dropped).
pub fn parse_shards(text: &str) -> Vec<Vec<String>> {
    text.split(';')
        .map(|shard| {
            shard
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|replicas| !replicas.is_empty())
        .collect()
}

/// Whether `name` is safe to splice as a database identifier.
pub fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AppliedVersion {
    version: u32,
}

/// Creates the database if needed and applies every migration not yet recorded.
/// Returns the versions applied by this call.
pub async fn migrate(config: &ClickHouseConfig) -> Result<Vec<u32>, clickhouse::error::Error> {
    migrate_until(config, u32::MAX).await
}

/// As [`migrate`], up to version `last` (tests of an upgrade start there).
pub async fn migrate_until(
    config: &ClickHouseConfig,
    last: u32,
) -> Result<Vec<u32>, clickhouse::error::Error> {
    let on = database_ddl_suffix(config, &config.database)?;
    config
        .server_client()
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}{on}",
            config.database
        ))
        .execute()
        .await?;
    let client = config.client();
    let layout = config.layout();
    let engine = match &layout {
        // Every node holds the record (one replication group for the cluster).
        Some(cluster) => format!(
            "ReplicatedMergeTree('/clickhouse/tables/all/{}/schema_migrations', '{{replica}}') ORDER BY version",
            cluster.database
        ),
        None => "TinyLog".into(),
    };
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {}.schema_migrations{on} \
             (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = {engine}",
            config.database
        ))
        .execute()
        .await?;
    let wanted: Vec<Migration> = CLICKHOUSE
        .iter()
        .filter(|m| m.version <= last)
        .copied()
        .collect();
    let recorded = applied(&client, layout.is_some()).await?;
    if pending(&wanted, &recorded).is_empty() {
        return Ok(Vec::new());
    }
    // Migrations run under the migration lock (a rebuild renames tables an
    // earlier migration of a concurrent runner would touch); a runner that
    // waited for it finds what the holder applied.
    let lock = crate::rebuild::Lock::acquire(&client, layout).await?;
    let result = apply_pending(&client, &wanted, config).await;
    lock.release().await?;
    result
}

/// Applies the migrations of `wanted` not recorded yet (under the lock).
async fn apply_pending(
    client: &Client,
    wanted: &[Migration],
    config: &ClickHouseConfig,
) -> Result<Vec<u32>, clickhouse::error::Error> {
    let recorded = applied(client, config.cluster.is_some()).await?;
    let mut done = Vec::new();
    for migration in pending(wanted, &recorded) {
        apply(client, migration, config).await?;
        done.push(migration.version);
    }
    Ok(done)
}

/// The versions recorded in `schema_migrations` (on a cluster, once this
/// node's copy has caught up with every node's records).
async fn applied(client: &Client, cluster: bool) -> Result<Vec<u32>, clickhouse::error::Error> {
    if cluster {
        client
            .query("SYSTEM SYNC REPLICA schema_migrations")
            .execute()
            .await?;
    }
    Ok(client
        .query("SELECT version FROM schema_migrations")
        .fetch_all::<AppliedVersion>()
        .await?
        .into_iter()
        .map(|row| row.version)
        .collect())
}

/// Applies one migration (its rebuilds first, resuming) and records it.
async fn apply(
    client: &Client,
    migration: &Migration,
    config: &ClickHouseConfig,
) -> Result<(), clickhouse::error::Error> {
    let layout = config.layout();
    crate::rebuild::run(client, migration, layout).await?;
    let mut statements = Vec::new();
    for statement in migration.other_statements() {
        match &layout {
            Some(cluster) => statements.extend(
                cluster
                    .statements(&statement)
                    .map_err(|e| clickhouse::error::Error::Custom(e.to_string()))?,
            ),
            None => statements.push(statement),
        }
    }
    for statement in statements {
        match client.query(&statement).execute().await {
            // 18.16 has no ADD COLUMN IF NOT EXISTS: a column that exists was added
            // by an earlier run that stopped before recording the migration.
            Err(err)
                if statement.contains("ADD COLUMN")
                    && err.to_string().contains("already exists") =>
            {
                tracing::info!(version = migration.version, "columns already present");
            }
            other => other?,
        }
    }
    client
        .query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
        .bind(migration.version)
        .bind(migration.name)
        .execute()
        .await?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        database = %config.database,
        cluster = config.cluster.as_deref().unwrap_or("-"),
        "applied ClickHouse migration"
    );
    Ok(())
}

/// The migrations of `all` whose version is not in `applied`, in order.
fn pending<'a>(all: &'a [Migration], applied: &[u32]) -> Vec<&'a Migration> {
    all.iter()
        .filter(|migration| !applied.contains(&migration.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(valid_identifier("tally_test_01"));
        assert!(!valid_identifier("x; DROP TABLE events"));
        assert!(!valid_identifier(""));
    }

    #[test]
    fn pending_skips_applied() {
        let all = [Migration::plain(1, "a", ""), Migration::plain(2, "b", "")];
        let left: Vec<u32> = pending(&all, &[1]).iter().map(|m| m.version).collect();
        assert_eq!(left, vec![2]);
    }

    #[test]
    fn shards_parse_in_order() {
        assert_eq!(
            parse_shards("http://a:1, http://b:1;http://c:1,http://d:1;"),
            vec![
                vec!["http://a:1".to_owned(), "http://b:1".to_owned()],
                vec!["http://c:1".to_owned(), "http://d:1".to_owned()],
            ]
        );
        assert!(parse_shards("").is_empty());
    }
}
