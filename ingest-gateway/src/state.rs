//! [`AppState`]: every dependency of the gateway's handlers in one place.
//!
//! Generic over the [`EventSink`]: the service runs on [`crate::sink::KafkaSink`];
//! request-level tests run on [`crate::sink::MemorySink`] with an in-memory key
//! source, without a broker or PostgreSQL.

use crate::config::Config;
use crate::enrich::{Agents, Geo};
use crate::metrics::Metrics;
use crate::overload::Overload;
use crate::sink::EventSink;
use std::sync::Arc;
use tally_common::keys::KeyCache;
use tally_common::Clock;

/// Shared dependencies of every handler.
#[derive(Debug)]
pub struct AppState<S> {
    /// Destination of accepted events.
    pub sink: S,
    /// Write keys.
    pub keys: Arc<KeyCache>,
    /// Geo-IP databases.
    pub geo: Geo,
    /// User-agent and bot classification.
    pub agents: Agents,
    /// Rate limits and in-flight caps.
    pub overload: Overload,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Wall clock (server timestamps).
    pub clock: Arc<dyn Clock>,
    /// Limits.
    pub config: Config,
}

impl<S: EventSink> AppState<S> {
    /// The state for `config`, publishing to `sink` and checking keys in `keys`.
    /// Opens the geo-IP databases the config names (a missing one is a warning:
    /// its events get no geo fields).
    pub fn new(
        config: Config,
        sink: S,
        keys: Arc<KeyCache>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, prometheus::Error> {
        let (geo, warnings) = Geo::open(&config.geoip_paths);
        for warning in warnings {
            tracing::warn!(%warning, "geo-IP database unavailable; events get no geo fields from it");
        }
        Ok(AppState {
            sink,
            keys,
            geo,
            agents: Agents::default(),
            overload: Overload::new(config.app_rate, config.app_burst, config.inflight_caps()),
            metrics: Metrics::new()?,
            clock,
            config,
        })
    }
}
