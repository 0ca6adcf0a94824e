//! API-key authentication with a cache that survives PostgreSQL outages, shared
//! by the gateway (write keys) and the query service (read keys).
//!
//! The cache holds a snapshot of all active keys of one kind (SHA-256 → app id
//! and the app's retention override, [`KeyOwner`]; for write keys also every
//! site domain, `domains.rs`, looked up with [`KeyCache::lookup_domain`]),
//! refreshed every `key_refresh`. An unknown key triggers an immediate reload at
//! most once per second (so a key created a moment ago works at once, and a
//! flood of bad keys cannot hammer PostgreSQL). When PostgreSQL is unreachable
//! the last snapshot keeps serving the keys it holds; a key it does not hold is
//! `Unavailable` (503, the client retries) rather than `Unknown` (401, the client
//! gives up) — it may have been created since — and before the first successful
//! load every lookup is `Unavailable`. Never a false 401.

pub use crate::postgres::KeyOwner;
use crate::postgres::{active_keys, hash_key, KeyKind, PostgresConfig};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Key hash → its owner.
pub type KeyMap = HashMap<String, KeyOwner>;

/// A boxed future yielding a [`KeyMap`] (keeps [`KeySource`] object-safe).
pub type LoadFuture<'a> = Pin<Box<dyn Future<Output = Result<KeyMap, String>> + Send + 'a>>;

/// Loads the active keys of one kind (hash → owner).
pub trait KeySource: Send + Sync + 'static {
    /// One full load.
    fn load(&self) -> LoadFuture<'_>;
}

/// [`KeySource`] reading PostgreSQL, reconnecting after failures.
#[derive(Debug)]
pub struct PostgresKeys {
    config: PostgresConfig,
    kind: KeyKind,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PostgresKeys {
    /// A source of `kind` keys on `config` (connects lazily).
    pub fn new(config: PostgresConfig, kind: KeyKind) -> Self {
        PostgresKeys {
            config,
            kind,
            client: tokio::sync::Mutex::new(None),
        }
    }
}

impl KeySource for PostgresKeys {
    fn load(&self) -> LoadFuture<'_> {
        Box::pin(async move {
            let mut slot = self.client.lock().await;
            if slot.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
                let connect = tokio::time::timeout(Duration::from_secs(3), self.config.connect());
                let client = connect
                    .await
                    .map_err(|_| "postgres connect timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                *slot = Some(client);
            }
            let Some(client) = slot.as_ref() else {
                return Err("no postgres connection".into());
            };
            let kind = self.kind;
            let load = async move {
                let mut keys = active_keys(client, kind).await?;
                if kind == KeyKind::Write {
                    keys.extend(crate::domains::entries(client).await?);
                }
                Ok::<_, tokio_postgres::Error>(keys)
            };
            let loaded = tokio::time::timeout(Duration::from_secs(3), load).await;
            match loaded {
                Ok(Ok(keys)) => Ok(keys),
                Ok(Err(err)) => {
                    *slot = None;
                    Err(err.to_string())
                }
                Err(_) => {
                    *slot = None;
                    Err("postgres query timed out".into())
                }
            }
        })
    }
}

/// Result of a key lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The key belongs to this app.
    App(KeyOwner),
    /// No active key matches.
    Unknown,
    /// Keys could never be loaded.
    Unavailable,
}

/// The cache.
pub struct KeyCache {
    source: Box<dyn KeySource>,
    /// `tally_keys_reloads_total{result}`: every load, `ok` or `error`, once
    /// [`KeyCache::register`]ed with a service's registry.
    reloads: std::sync::OnceLock<prometheus::IntCounterVec>,
    snapshot: RwLock<Option<Arc<KeyMap>>>,
    last_load: tokio::sync::Mutex<Option<Instant>>,
    /// Whether the last reload succeeded.
    healthy: std::sync::atomic::AtomicBool,
    min_reload_gap: Duration,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("loaded", &self.loaded())
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache over `source` reloading on a miss at most once a second; call
    /// [`KeyCache::refresh`] to load.
    pub fn new(source: impl KeySource) -> Self {
        Self::with_reload_gap(source, Duration::from_secs(1))
    }

    /// A cache over `source` reloading on a miss at most once per `min_reload_gap`.
    pub fn with_reload_gap(source: impl KeySource, min_reload_gap: Duration) -> Self {
        KeyCache {
            source: Box::new(source),
            reloads: std::sync::OnceLock::new(),
            snapshot: RwLock::new(None),
            last_load: tokio::sync::Mutex::new(None),
            healthy: std::sync::atomic::AtomicBool::new(false),
            min_reload_gap,
        }
    }

    /// Adds the cache's reload counter to a service's metrics `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tally_keys_reloads_total",
                "Loads of the API-key snapshot from PostgreSQL, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        let _ = self.reloads.set(reloads);
        Ok(())
    }

    /// Whether a snapshot exists.
    pub fn loaded(&self) -> bool {
        self.snapshot.read().is_ok_and(|s| s.is_some())
    }

    /// Reloads now (keeps the old snapshot on failure).
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_load.lock().await;
        self.reload(&mut last).await
    }

    async fn reload(&self, last: &mut Option<Instant>) -> Result<usize, String> {
        *last = Some(Instant::now());
        let loaded = self.source.load().await;
        self.healthy
            .store(loaded.is_ok(), std::sync::atomic::Ordering::SeqCst);
        if let Some(reloads) = self.reloads.get() {
            let result = if loaded.is_ok() { "ok" } else { "error" };
            reloads.with_label_values(&[result]).inc();
        }
        let keys = loaded?;
        let count = keys.len();
        if let Ok(mut snapshot) = self.snapshot.write() {
            *snapshot = Some(Arc::new(keys));
        }
        Ok(count)
    }

    fn find(&self, hash: &str) -> Option<Option<KeyOwner>> {
        let snapshot = self.snapshot.read().ok()?.clone()?;
        Some(snapshot.get(hash).cloned())
    }

    /// Which app `key` belongs to. A miss waits for a reload that started after
    /// the request arrived (at most one reload per `min_reload_gap`; concurrent
    /// misses share it), so a key created a moment ago is accepted.
    pub async fn lookup(&self, key: &str) -> Lookup {
        self.lookup_entry(hash_key(key)).await
    }

    /// Which app allows the site `domain` (normalised by the caller), with
    /// [`KeyCache::lookup`]'s reload on a miss.
    pub async fn lookup_domain(&self, domain: &str) -> Lookup {
        self.lookup_entry(tally_schemas::ids::domain_entry(domain))
            .await
    }

    async fn lookup_entry(&self, hash: String) -> Lookup {
        if let Some(Some(app)) = self.find(&hash) {
            return Lookup::App(app);
        }
        let arrived = Instant::now();
        let mut last = self.last_load.lock().await;
        let fresh_enough = last.is_some_and(|at| at >= arrived);
        if !fresh_enough {
            if let Some(at) = *last {
                tokio::time::sleep(self.min_reload_gap.saturating_sub(at.elapsed())).await;
            }
            if let Err(err) = self.reload(&mut last).await {
                tracing::warn!(error = %err, "keys could not be reloaded; serving the last snapshot");
            }
        }
        drop(last);
        match self.find(&hash) {
            Some(Some(app)) => Lookup::App(app),
            Some(None) if self.healthy.load(std::sync::atomic::Ordering::SeqCst) => Lookup::Unknown,
            Some(None) | None => Lookup::Unavailable,
        }
    }
}

/// Keeps `cache` fresh every `every` until the process ends.
pub fn spawn_refresher(cache: Arc<KeyCache>, every: Duration) {
    tokio::spawn(async move {
        loop {
            match cache.refresh().await {
                Ok(count) => tracing::debug!(keys = count, "keys refreshed"),
                Err(err) => {
                    tracing::warn!(error = %err, "keys refresh failed; serving the last snapshot")
                }
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// [`KeySource`] held in memory, for fast tests of what sits on top of the cache
/// (request handling, auth forms, revocation, an unreachable store). Clones share
/// one set of keys, so a test keeps a handle while the cache owns another.
#[derive(Debug, Clone, Default)]
pub struct MemoryKeys {
    inner: Arc<RwLock<(KeyMap, bool)>>,
}

impl MemoryKeys {
    /// An empty, reachable source.
    pub fn new() -> Self {
        MemoryKeys {
            inner: Arc::new(RwLock::new((KeyMap::new(), true))),
        }
    }

    /// Adds (or moves) `key` to `app` (with the installation's retention).
    pub fn add(&self, key: &str, app: &str) {
        self.add_owner(key, KeyOwner::app(app));
    }

    /// Adds (or moves) `key` to `owner`.
    pub fn add_owner(&self, key: &str, owner: KeyOwner) {
        if let Ok(mut inner) = self.inner.write() {
            inner.0.insert(hash_key(key), owner);
        }
    }

    /// Revokes `key`.
    pub fn revoke(&self, key: &str) {
        if let Ok(mut inner) = self.inner.write() {
            inner.0.remove(&hash_key(key));
        }
    }

    /// Makes every load succeed (`true`) or fail as an unreachable store would.
    pub fn set_reachable(&self, reachable: bool) {
        if let Ok(mut inner) = self.inner.write() {
            inner.1 = reachable;
        }
    }
}

impl KeySource for MemoryKeys {
    fn load(&self) -> LoadFuture<'_> {
        let result = match self.inner.read() {
            Ok(inner) if inner.1 => Ok(inner.0.clone()),
            Ok(_) => Err("key store unreachable".to_owned()),
            Err(_) => Err("key store poisoned".to_owned()),
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_last_snapshot_while_the_source_is_down() {
        let source = MemoryKeys::new();
        source.add("tw_good", "app-1");
        source.set_reachable(false);
        let cache = KeyCache::new(source.clone());
        let registry = prometheus::Registry::new();
        cache.register(&registry).unwrap();
        assert_eq!(cache.lookup("tw_good").await, Lookup::Unavailable);
        source.set_reachable(true);
        // Within the reload gap: the lookup waits for the next reload instead of failing.
        assert_eq!(
            cache.lookup("tw_good").await,
            Lookup::App(KeyOwner::app("app-1"))
        );
        source.set_reachable(false);
        assert!(cache.refresh().await.is_err());
        assert_eq!(
            cache.lookup("tw_good").await,
            Lookup::App(KeyOwner::app("app-1"))
        );
        // Not in the snapshot and the source is down: maybe new, so "retry", not "wrong".
        assert_eq!(cache.lookup("tw_new").await, Lookup::Unavailable);
        source.set_reachable(true);
        assert_eq!(cache.lookup("tw_bad").await, Lookup::Unknown);
        // Every load was counted, failures included.
        let reloads = cache.reloads.get().unwrap();
        assert_eq!(reloads.with_label_values(&["ok"]).get(), 2);
        assert_eq!(reloads.with_label_values(&["error"]).get(), 3);
    }
}
