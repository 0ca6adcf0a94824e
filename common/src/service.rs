//! The shape of every service binary: config → telemetry → listen → `run`
//! until SIGTERM/SIGINT. Exit codes: 0 after a clean stop, 2 for invalid
//! configuration, 1 for any other failure (each logged with its reason).

use crate::config::ConfigError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use tokio::net::TcpListener;

/// The shutdown future handed to a service's `run`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs a service binary.
pub async fn main<C, E, F>(
    service: &'static str,
    load: impl FnOnce() -> Result<C, ConfigError>,
    addr: impl FnOnce(&C) -> SocketAddr,
    run: impl FnOnce(C, TcpListener, Shutdown) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    crate::telemetry::init(service);
    let config = match load() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let addr = addr(&config);
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, %addr, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    match run(config, listener, Box::pin(crate::shutdown::signal())).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, service, "service failed");
            ExitCode::FAILURE
        }
    }
}
