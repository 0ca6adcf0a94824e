//! The ClickHouse `sessions` row (see `migrations/clickhouse/0003_sessions.sql`).
//!
//! A session is a maximal run of one visitor's events (per app) in which no two
//! consecutive events, by event time, are more than [`SESSION_GAP_MS`] apart.
//! Rows are upserts: the highest `version` of a `(app_id, distinct_id,
//! session_id)` is the session; `dropped = 1` marks a session that a late event
//! merged into an earlier one. Column order equals the table's (RowBinary),
//! listed in [`crate::columns`].

use serde::{Deserialize, Serialize};

/// Inactivity that ends a session: 30 minutes.
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1_000;

/// One version of one session. Times are UTC.
#[cfg_attr(feature = "clickhouse", derive(clickhouse::Row))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// Tenant.
    pub app_id: String,
    /// `Date` the session was first seen (never changes; the table partition).
    pub created_date: u16,
    /// Visitor (`user_id`, else `anonymous_id`).
    pub distinct_id: String,
    /// Stable id: Kafka partition and offset of the first event that opened it.
    pub session_id: String,
    /// Earliest event time, epoch ms.
    pub start_ms: u64,
    /// Latest event time, epoch ms.
    pub end_ms: u64,
    /// `DateTime` of `start_ms`.
    pub start: u32,
    /// `end_ms - start_ms`.
    pub duration_ms: u64,
    /// Events in the session.
    pub events: u32,
    /// `page_view` events in the session.
    pub page_views: u32,
    /// Path of the earliest page view.
    pub entry_page: String,
    /// Path of the latest page view.
    pub exit_page: String,
    /// Referrer host of the earliest event.
    pub referrer_host: String,
    /// UTM source of the earliest event.
    pub utm_source: String,
    /// UTM medium of the earliest event.
    pub utm_medium: String,
    /// UTM campaign of the earliest event.
    pub utm_campaign: String,
    /// Country of the earliest event.
    pub country: String,
    /// Device type of the earliest event.
    pub device_type: String,
    /// Browser of the earliest event.
    pub browser: String,
    /// Operating system of the earliest event.
    pub os: String,
    /// Any event of the session came from a bot.
    pub is_bot: u8,
    /// Exactly one page view (a bounce as Plausible defines it).
    pub bounce: u8,
    /// Merged into another session; not a session any more.
    pub dropped: u8,
    /// Kafka offset of the last event applied; the highest version wins.
    pub version: u64,
    /// Event time of the entry page view, epoch ms (0: no page view).
    pub entry_ms: u64,
    /// Event time of the exit page view, epoch ms (0: no page view).
    pub exit_ms: u64,
    /// Retention class of the event that opened the session (migration
    /// 0012; never changes, like `created_date`): with `created_date`, the
    /// partition, so all versions of a session meet in one.
    pub retention_days: u16,
}

/// The `sessions` columns in row order (for `SELECT`s read into [`SessionRow`]);
/// the list itself is [`crate::columns::SESSION_ROW_COLUMNS`].
pub const SESSION_COLUMNS: &str = crate::columns::SESSION_ROW_SELECT;
