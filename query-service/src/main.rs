//! `query-service` binary: config → telemetry → [`query_service::run`] until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tally_common::service::main(
        "query-service",
        query_service::Config::from_env,
        |config| config.addr,
        query_service::run,
    )
    .await
}
