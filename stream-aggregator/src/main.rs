//! `stream-aggregator` binary: config → telemetry → [`stream_aggregator::run`] until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tally_common::service::main(
        "stream-aggregator",
        stream_aggregator::Config::from_env,
        |config| config.addr,
        stream_aggregator::run,
    )
    .await
}
