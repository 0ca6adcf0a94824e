//! The refresher's one error type. It serves no business API: every variant
//! is logged and counted with its reason code, and a failed run is retried at
//! the next interval (its watermarks did not move, so nothing is lost).

/// What can go wrong in the refresher.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// ClickHouse refused or could not be reached.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// PostgreSQL refused or could not be reached.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Another refresher holds the lease (or ours expired mid-run): nothing committed.
    #[error("lease of scope {0} is held by another refresher")]
    NotLeader(String),
    /// Test-only fault injection stopped the run after some writes.
    #[error("injected crash after {0} buckets")]
    Injected(usize),
    /// Metrics registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Socket error serving health endpoints.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl RefreshError {
    /// Machine-readable reason (bounded set, used as a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            RefreshError::ClickHouse(_) => "clickhouse",
            RefreshError::Postgres(_) => "postgres",
            RefreshError::NotLeader(_) => "not_leader",
            RefreshError::Injected(_) => "injected",
            RefreshError::Metrics(_) => "metrics",
            RefreshError::Io(_) => "io",
        }
    }
}
