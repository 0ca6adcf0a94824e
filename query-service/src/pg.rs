//! One lazily (re)connected PostgreSQL client shared by a store (saved items,
//! accounts): connects (3 s limit) and migrates on first use, runs each
//! operation under a 5 s limit, and drops the connection after any failure so
//! that the next operation reconnects. Errors are text; each store maps them
//! to its own 503.

use futures::future::BoxFuture;
use std::time::Duration;
use tally_common::postgres::PostgresConfig;

/// A client slot on `config`.
#[derive(Debug)]
pub struct Pg {
    config: PostgresConfig,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl Pg {
    /// Connects on first use.
    pub fn new(config: PostgresConfig) -> Self {
        Pg {
            config,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `op` on a (re)connected client.
    pub async fn with<T, F>(&self, op: F) -> Result<T, String>
    where
        F: for<'c> FnOnce(
            &'c tokio_postgres::Client,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            let connect = tokio::time::timeout(Duration::from_secs(3), self.config.connect());
            let client = connect
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            // The tables may be newer than this database.
            tally_common::postgres::migrate(&client)
                .await
                .map_err(|e| e.to_string())?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_ref() else {
            return Err("no connection".into());
        };
        match tokio::time::timeout(Duration::from_secs(5), op(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                *slot = None;
                Err(err.to_string())
            }
            Err(_) => {
                *slot = None;
                Err("statement timed out".into())
            }
        }
    }
}
