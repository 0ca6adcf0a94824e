//! Tally's ingest gateway: `POST /api/v1/events/batch`, and the tracking APIs
//! of Segment, PostHog, Plausible, Amplitude, Mixpanel, Umami and Snowplow →
//! validate → enrich → Kafka, answering only once the broker acknowledged
//! every accepted event.
//!
//! Module map (each imports only modules below it):
//! * [`router`] — routes and thin handlers (one [`router::Ingest`] extractor)
//!   → [`answers`] (each API's answer shape) and [`intake`], the stages of one
//!   batch (authenticate the header key → receive → decode → authenticate →
//!   admit → prepare → publish); [`posthog_config`] answers PostHog's start-up
//!   fetches;
//! * [`intake`] → [`body`] (reading under the in-flight budget), [`wrapping`]
//!   (vendors' gzip/form/base64), [`decode`], [`bodies`] (each API's body
//!   shape), [`auth`], [`overload`], [`validate`] (per-event rules, enrichment
//!   via [`enrich`] — its repeated lookups remembered in a [`memo`] — and the
//!   vendor mappings [`segment`], [`posthog`], [`plausible`], [`amplitude`],
//!   [`mixpanel`], [`umami`], [`snowplow`] over [`vendor`]), [`sink`] (Kafka,
//!   or memory in tests);
//! * [`state`] holds every dependency; [`metrics`] has one function per notable
//!   event; [`error`] maps every refusal to a status and a JSON reason;
//!   [`config`] reads the environment.
//!
//! [`run`] serves the [`router::app`] until the shutdown future resolves, then
//! stops intake, waits for in-flight requests and flushes the producer.

pub mod amplitude;
pub mod answers;
pub mod auth;
pub mod bodies;
pub mod body;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod error;
pub mod intake;
pub mod memo;
pub mod metrics;
pub mod mixpanel;
pub mod overload;
pub mod plausible;
pub mod posthog;
pub mod posthog_config;
pub mod router;
pub mod segment;
pub mod sink;
pub mod snowplow;
pub mod state;
pub mod umami;
pub mod validate;
pub mod vendor;
pub mod wrapping;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tally_common::keys;
use tally_common::SystemClock;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::GatewayError;
pub use router::app;
pub use state::AppState;

use sink::{EventSink, KafkaSink};

/// Error starting or serving the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The producer could not be created.
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Serving failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the gateway on `listener` until `shutdown` resolves: Kafka as the
/// sink, write keys from PostgreSQL (cached, refreshed in the background).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let sink = KafkaSink::new(
        &config.kafka,
        config.produce_timeout,
        config.linger,
        config.envelope_format,
    )?;
    let keys = Arc::new(keys::KeyCache::new(keys::PostgresKeys::new(
        config.postgres.clone(),
        tally_common::postgres::KeyKind::Write,
    )));
    keys::spawn_refresher(keys.clone(), config.key_refresh);
    let state = Arc::new(AppState::new(config, sink, keys, Arc::new(SystemClock))?);
    state.keys.register(&state.metrics.registry)?;
    state.sink.register(&state.metrics.registry)?;
    serve(state, listener, shutdown).await
}

/// Serves `state` on `listener` until `shutdown` resolves, then flushes its sink.
pub async fn serve<S: EventSink>(
    state: Arc<AppState<S>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    tracing::info!(addr = %listener.local_addr()?, topic = %state.config.kafka.topic, "ingest gateway listening");
    let options = tally_common::serve::ServeOptions {
        header_timeout: state.config.header_timeout,
        max_connections: state.config.max_connections,
        ..Default::default()
    };
    tally_common::serve::serve(listener, app(state.clone()), options, shutdown).await?;
    state.sink.flush(Duration::from_secs(10)).await;
    tracing::info!("ingest gateway stopped");
    Ok(())
}
