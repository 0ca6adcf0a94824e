//! `ingest-gateway` binary: config → telemetry → [`ingest_gateway::run`] until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tally_common::service::main(
        "ingest-gateway",
        ingest_gateway::Config::from_env,
        |config| config.addr,
        ingest_gateway::run,
    )
    .await
}
