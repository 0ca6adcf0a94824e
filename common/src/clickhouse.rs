//! ClickHouse access shared by the services: building a client that works on
//! ClickHouse 18.16 (no `RowBinaryWithNamesAndTypes`, so schema validation is
//! off and rows are plain `RowBinary`) and on current releases, and applying the
//! versioned migrations of `tally_schemas::migrations` in order.
//!
//! Applied versions are recorded in `schema_migrations`; running the migrations
//! again applies only the missing ones (and every statement is `IF NOT EXISTS`).
//! A migration that rebuilds tables (a new partition key) runs under the
//! migration lock and resumes where a stopped run left it (`crate::rebuild`).

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
}

impl ClickHouseConfig {
    /// Reads the `TALLY_CLICKHOUSE_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = ClickHouseConfig {
            url: env_string("TALLY_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            database: env_string("TALLY_CLICKHOUSE_DATABASE", "tally"),
            user: env_string("TALLY_CLICKHOUSE_USER", "default"),
            password: env_string("TALLY_CLICKHOUSE_PASSWORD", ""),
        };
        crate::config::ensure(
            valid_identifier(&config.database),
            "TALLY_CLICKHOUSE_DATABASE must match [A-Za-z0-9_]{1,64}",
        )?;
        Ok(config)
    }

    /// A client bound to the configured database.
    pub fn client(&self) -> Client {
        self.server_client().with_database(self.database.clone())
    }

    /// A client with no default database (to create one).
    pub fn server_client(&self) -> Client {
        Client::default()
            .with_url(self.url.clone())
            .with_user(self.user.clone())
            .with_password(self.password.clone())
            .with_validation(false)
    }
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
    if !valid_identifier(&config.database) {
        return Err(clickhouse::error::Error::Custom(format!(
            "invalid database name {:?}",
            config.database
        )));
    }
    config
        .server_client()
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            config.database
        ))
        .execute()
        .await?;
    let client = config.client();
    client
        .query(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = TinyLog",
        )
        .execute()
        .await?;
    let recorded = applied(&client).await?;
    let mut done = Vec::new();
    let wanted = CLICKHOUSE.iter().filter(|m| m.version <= last);
    let wanted: Vec<Migration> = wanted.copied().collect();
    for migration in pending(&wanted, &recorded) {
        if migration.rebuilds.is_empty() {
            apply(&client, migration, &config.database).await?;
        } else {
            // Rebuilds run under the migration lock; another runner may have
            // applied the migration while this one waited for it.
            let lock = crate::rebuild::Lock::acquire(&client).await?;
            let result = match applied(&client).await {
                Ok(now) if now.contains(&migration.version) => Ok(false),
                Ok(_) => apply(&client, migration, &config.database)
                    .await
                    .map(|()| true),
                Err(err) => Err(err),
            };
            lock.release().await?;
            if !result? {
                continue;
            }
        }
        done.push(migration.version);
    }
    Ok(done)
}

/// The versions recorded in `schema_migrations`.
async fn applied(client: &Client) -> Result<Vec<u32>, clickhouse::error::Error> {
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
    database: &str,
) -> Result<(), clickhouse::error::Error> {
    crate::rebuild::run(client, migration).await?;
    for statement in migration.other_statements() {
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
        database = %database,
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
        let all = [
            Migration {
                version: 1,
                name: "a",
                sql: "",
                rebuilds: &[],
            },
            Migration {
                version: 2,
                name: "b",
                sql: "",
                rebuilds: &[],
            },
        ];
        let left: Vec<u32> = pending(&all, &[1]).iter().map(|m| m.version).collect();
        assert_eq!(left, vec![2]);
    }
}
