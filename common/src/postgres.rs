//! PostgreSQL: apps and API keys (seed 002: accounts live there).
//!
//! Keys look like `tw_…` (write: ingest only, public) and `tr_…` (read: query
//! only, secret) followed by 32 random base-62 characters. Only the SHA-256 of
//! a key is stored, with its first 8 characters for display and revocation.

use crate::config::{env_string, ConfigError};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tally_schemas::migrations::POSTGRES;
use tokio_postgres::{Client, NoTls};

/// Where PostgreSQL is.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Connection URL (`TALLY_POSTGRES_URL`, default `postgres://tally:tally@127.0.0.1:5432/tally`).
    pub url: String,
}

impl Default for PostgresConfig {
    /// The documented default (what [`PostgresConfig::from_env`] gives without the variable).
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://tally:tally@127.0.0.1:5432/tally".into(),
        }
    }
}

impl PostgresConfig {
    /// Reads `TALLY_POSTGRES_URL`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = env_string("TALLY_POSTGRES_URL", &PostgresConfig::default().url);
        url.parse::<tokio_postgres::Config>()
            .map_err(|err| ConfigError::Invalid {
                var: "TALLY_POSTGRES_URL".into(),
                value: url.clone(),
                reason: err.to_string(),
            })?;
        Ok(PostgresConfig { url })
    }

    /// Opens a connection (its driver task runs in the background).
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "postgres connection closed");
            }
        });
        Ok(client)
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Send events.
    Write,
    /// Query an app's data.
    Read,
}

impl KeyKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Read => "read",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Write => "tw_",
            KeyKind::Read => "tr_",
        }
    }
}

/// A fresh random key of `kind`.
pub fn generate_key(kind: KeyKind) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}{body}", kind.prefix())
}

/// Hex SHA-256 of a key (what is stored and looked up).
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Applies the PostgreSQL migrations not yet recorded (serialised by an advisory lock,
/// so concurrent callers are safe). Returns the versions applied.
pub async fn migrate(client: &Client) -> Result<Vec<u32>, tokio_postgres::Error> {
    const LOCK: i64 = 0x7461_6c6c_795f_6d67; // "tally_mg"
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
        let applied: Vec<u32> = client
            .query("SELECT version FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|row| u32::try_from(row.get::<_, i32>(0)).unwrap_or(0))
            .collect();
        let mut done = Vec::new();
        for migration in POSTGRES.iter().filter(|m| !applied.contains(&m.version)) {
            client.batch_execute(migration.sql).await?;
            let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
            client
                .execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[&version, &migration.name],
                )
                .await?;
            tracing::info!(version = migration.version, name = migration.name, "applied PostgreSQL migration");
            done.push(migration.version);
        }
        Ok(done)
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await?;
    result
}

/// Creates an app unless it exists; returns whether it was created.
pub async fn create_app(
    client: &Client,
    app_id: &str,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client
        .execute(
            "INSERT INTO apps (app_id, name) VALUES ($1, $2) ON CONFLICT (app_id) DO NOTHING",
            &[&app_id, &name],
        )
        .await?;
    Ok(rows == 1)
}

/// Sets the time zone of `app_id` (an IANA name, checked by the caller);
/// returns whether the app exists.
pub async fn set_time_zone(
    client: &Client,
    app_id: &str,
    time_zone: &str,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client
        .execute(
            "UPDATE apps SET time_zone = $2 WHERE app_id = $1",
            &[&app_id, &time_zone],
        )
        .await?;
    Ok(rows == 1)
}

/// The time zone of `app_id`, if the app exists.
pub async fn time_zone(
    client: &Client,
    app_id: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT time_zone FROM apps WHERE app_id = $1", &[&app_id])
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Creates a key of `kind` for `app_id` and returns it (the only time it is visible).
pub async fn create_key(
    client: &Client,
    app_id: &str,
    kind: KeyKind,
) -> Result<String, tokio_postgres::Error> {
    let key = generate_key(kind);
    client
        .execute(
            "INSERT INTO api_keys (key_hash, key_prefix, app_id, kind) VALUES ($1, $2, $3, $4)",
            &[&hash_key(&key), &&key[..8], &app_id, &kind.as_str()],
        )
        .await?;
    Ok(key)
}

/// Revokes the keys whose displayed prefix is `prefix`; returns how many.
pub async fn revoke_keys(client: &Client, prefix: &str) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_prefix = $1 AND revoked_at IS NULL",
            &[&prefix],
        )
        .await
}

/// The app a key belongs to, with the app settings the gateway applies to
/// every event it accepts with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The app.
    pub app_id: String,
    /// The app's retention override in days; 0: the installation's.
    pub retention_days: u16,
}

impl KeyOwner {
    /// An app with the installation's retention.
    pub fn app(app_id: &str) -> Self {
        KeyOwner {
            app_id: app_id.to_owned(),
            retention_days: 0,
        }
    }
}

/// Active keys of `kind`: key hash → app id and the app's retention
/// override (0: none).
pub async fn active_keys(
    client: &Client,
    kind: KeyKind,
) -> Result<HashMap<String, KeyOwner>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT k.key_hash, k.app_id, COALESCE(a.retention_days, 0) FROM api_keys k \
             JOIN apps a ON a.app_id = k.app_id WHERE k.kind = $1 AND k.revoked_at IS NULL",
            &[&kind.as_str()],
        )
        .await?
        .iter()
        .map(|row| {
            let days: i32 = row.get(2);
            let owner = KeyOwner {
                app_id: row.get(1),
                retention_days: u16::try_from(days).unwrap_or(0),
            };
            (row.get(0), owner)
        })
        .collect())
}

/// Sets the retention override of `app_id` (`None`: the installation's
/// retention; else 1 to [`crate::lifecycle::MAX_RETENTION_DAYS`] days,
/// checked by the caller and the table); returns whether the app exists.
pub async fn set_retention(
    client: &Client,
    app_id: &str,
    days: Option<u16>,
) -> Result<bool, tokio_postgres::Error> {
    let days = days.map(i32::from);
    let rows = client
        .execute(
            "UPDATE apps SET retention_days = $2 WHERE app_id = $1",
            &[&app_id, &days],
        )
        .await?;
    Ok(rows == 1)
}

/// The retention override of `app_id` (`Some(None)`: none), if the app exists.
pub async fn retention(
    client: &Client,
    app_id: &str,
) -> Result<Option<Option<u16>>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT retention_days FROM apps WHERE app_id = $1",
            &[&app_id],
        )
        .await?;
    Ok(row.map(|row| {
        let days: Option<i32> = row.get(0);
        days.and_then(|days| u16::try_from(days).ok())
    }))
}

/// Migrates, creates `app_id` if needed and returns a new key of `kind` for it
/// (for tests, the load generator and the demo).
pub async fn provision(
    config: &PostgresConfig,
    app_id: &str,
    kind: KeyKind,
) -> Result<String, tokio_postgres::Error> {
    let client = config.connect().await?;
    migrate(&client).await?;
    create_app(&client, app_id, app_id).await?;
    create_key(&client, app_id, kind).await
}

/// Asks the report refresher of `scope` (its ClickHouse database) for a full
/// rebuild at its next run (`tally-admin refresh --full`; table
/// `refresh_requests`, migration 0005).
pub async fn request_full_refresh(
    client: &Client,
    scope: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO refresh_requests (scope) VALUES ($1) ON CONFLICT (scope) \
             DO UPDATE SET requested_at = now()",
            &[&scope],
        )
        .await
        .map(|_| ())
}

/// The last finished runs of the report refresher of `scope`, newest first:
/// (kind, version, buckets, new rows, drift, finished at).
pub async fn refresh_runs(
    client: &Client,
    scope: &str,
    limit: i64,
) -> Result<Vec<(String, i64, i64, i64, Option<i64>, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT kind, version, buckets, new_rows, drift, finished_at::text FROM refresh_runs \
             WHERE scope = $1 ORDER BY id DESC LIMIT $2",
            &[&scope, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_kind_prefix_and_stable_hash() {
        let write = generate_key(KeyKind::Write);
        assert!(write.starts_with("tw_") && write.len() == 35);
        assert!(generate_key(KeyKind::Read).starts_with("tr_"));
        assert_ne!(generate_key(KeyKind::Write), write);
        // SHA-256("abc"), a published test vector.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
