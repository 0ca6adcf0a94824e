//! The replay catalog in PostgreSQL (migration 0009): one row per target with
//! its range, options, state and last progress, written by the running
//! replay (a heartbeat every few seconds) and read by `replay status`.

use super::ReplayError;
use std::collections::BTreeMap;
use tokio_postgres::{Client, Row};

/// States of a replay.
pub mod state {
    /// Started, not finished (running if its heartbeat is fresh, else stopped).
    pub const RUNNING: &str = "running";
    /// A bounded replay that reached its end.
    pub const FINISHED: &str = "finished";
}

/// A heartbeat older than this means the replay process is gone.
pub const STALE_MS: i64 = 15_000;

/// One catalog row.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Target name.
    pub name: String,
    /// Topic replayed.
    pub topic: String,
    /// `--from` as given.
    pub from_text: String,
    /// `--to` as given.
    pub to_text: Option<String>,
    /// First offset replayed per partition.
    pub start: BTreeMap<i32, i64>,
    /// First offset not replayed per partition (`None`: follows the topic).
    pub end: Option<BTreeMap<i32, i64>>,
    /// Re-enrichment options (empty: the enrichment on the topic is kept).
    pub reenrich: String,
    /// [`state`].
    pub state: String,
    /// Creation, epoch ms.
    pub created_ms: i64,
    /// Last heartbeat of the replay process, epoch ms.
    pub heartbeat_ms: Option<i64>,
    /// Messages processed (committed) so far.
    pub done: i64,
    /// Messages per second over the last heartbeat interval.
    pub rate: f64,
    /// When a bounded replay reached its end, epoch ms.
    pub finished_ms: Option<i64>,
}

impl Entry {
    /// Whether a replay process is alive for it (fresh heartbeat).
    pub fn alive(&self, now_ms: i64) -> bool {
        self.heartbeat_ms.is_some_and(|at| now_ms - at < STALE_MS)
    }
}

/// `partition:offset,…`.
pub fn format_positions(positions: &BTreeMap<i32, i64>) -> String {
    positions
        .iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn positions(text: &str) -> BTreeMap<i32, i64> {
    stream_aggregator::config::parse_positions(text).unwrap_or_default()
}

const COLUMNS: &str = "name, topic, from_text, to_text, start_offsets, end_offsets, reenrich, state, \
    (extract(epoch FROM created_at) * 1000)::bigint, (extract(epoch FROM heartbeat_at) * 1000)::bigint, \
    done, rate, (extract(epoch FROM finished_at) * 1000)::bigint";

fn entry(row: &Row) -> Entry {
    Entry {
        name: row.get(0),
        topic: row.get(1),
        from_text: row.get(2),
        to_text: row.get(3),
        start: positions(row.get(4)),
        end: row.get::<_, Option<String>>(5).as_deref().map(positions),
        reenrich: row.get(6),
        state: row.get(7),
        created_ms: row.get(8),
        heartbeat_ms: row.get(9),
        done: row.get(10),
        rate: row.get(11),
        finished_ms: row.get(12),
    }
}

/// The replay called `name`.
pub async fn get(client: &Client, name: &str) -> Result<Option<Entry>, ReplayError> {
    let sql = format!("SELECT {COLUMNS} FROM replays WHERE name = $1");
    Ok(client.query_opt(&sql, &[&name]).await?.as_ref().map(entry))
}

/// Every replay, oldest first.
pub async fn list(client: &Client) -> Result<Vec<Entry>, ReplayError> {
    let sql = format!("SELECT {COLUMNS} FROM replays ORDER BY created_at, name");
    Ok(client.query(&sql, &[]).await?.iter().map(entry).collect())
}

/// Records a new replay; `false` when the name is taken.
pub async fn insert(client: &Client, entry: &Entry) -> Result<bool, ReplayError> {
    let end = entry.end.as_ref().map(format_positions);
    let inserted = client
        .execute(
            "INSERT INTO replays (name, topic, from_text, to_text, start_offsets, end_offsets, reenrich, state, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) ON CONFLICT (name) DO NOTHING",
            &[
                &entry.name,
                &entry.topic,
                &entry.from_text,
                &entry.to_text,
                &format_positions(&entry.start),
                &end,
                &entry.reenrich,
                &entry.state,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// The running replay's progress.
pub async fn heartbeat(
    client: &Client,
    name: &str,
    done: i64,
    rate: f64,
) -> Result<(), ReplayError> {
    client
        .execute(
            "UPDATE replays SET heartbeat_at = now(), done = $2, rate = $3 WHERE name = $1",
            &[&name, &done, &rate],
        )
        .await?;
    Ok(())
}

/// Marks a bounded replay finished (its process stops).
pub async fn finish(client: &Client, name: &str, done: i64) -> Result<(), ReplayError> {
    client
        .execute(
            "UPDATE replays SET state = $2, done = $3, rate = 0, heartbeat_at = NULL, finished_at = now() WHERE name = $1",
            &[&name, &state::FINISHED, &done],
        )
        .await?;
    Ok(())
}

/// Marks the process gone (a clean stop before the end; `start` resumes it).
pub async fn stopped(client: &Client, name: &str) -> Result<(), ReplayError> {
    client
        .execute(
            "UPDATE replays SET heartbeat_at = NULL, rate = 0 WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(())
}

/// First key of the advisory locks of replays (the second is the name's hash).
const LOCK_SPACE: i32 = 17_017;

/// Takes the replay's lock for this PostgreSQL session; `false` when another
/// session (a replay process, or a drop in progress) holds it. The lock dies
/// with the session, so a process killed with SIGKILL frees it at once and a
/// resume never waits for a heartbeat to go stale.
pub async fn try_lock(client: &Client, name: &str) -> Result<bool, ReplayError> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LOCK_SPACE, &name],
        )
        .await?
        .get(0))
}

/// Releases [`try_lock`].
pub async fn unlock(client: &Client, name: &str) -> Result<(), ReplayError> {
    client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&LOCK_SPACE, &name],
        )
        .await?;
    Ok(())
}

/// Forgets the replay.
pub async fn delete(client: &Client, name: &str) -> Result<(), ReplayError> {
    client
        .execute("DELETE FROM replays WHERE name = $1", &[&name])
        .await?;
    Ok(())
}
