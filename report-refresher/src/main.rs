//! `report-refresher` binary: config → telemetry → [`report_refresher::run`] until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tally_common::service::main(
        "report-refresher",
        report_refresher::Config::from_env,
        |config| config.addr,
        report_refresher::run,
    )
    .await
}
