//! The refresher's state in PostgreSQL (migrations `postgres/0005`–`0008`),
//! per scope (the ClickHouse database refreshed): the lease of the one writer,
//! the run versions, the watermarks, the buckets of runs that added rows and
//! never committed, and the finished runs.
//!
//! The lease is a row with an owner, an expiry and a fence that grows with
//! every new holder. A run's writes carry a version taken from a sequence, so
//! a stale holder's late writes lose to any later run in ClickHouse; its
//! watermarks are committed in one transaction that first re-checks the
//! lease (same owner, same fence, not expired) and otherwise commits nothing.

use crate::error::RefreshError;
use crate::statements::Ends;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Client;

/// (topic, Kafka partition).
pub type MarkKey = (String, u32);

/// The `event_date` of a partition's mark in `refresh_marks` (the table
/// once held one mark per partition and day; those rows are ignored).
const PARTITION_MARK_DAY: &str = "1970-01-01";

/// What a finished run records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// `incremental` or `full`.
    pub kind: &'static str,
    /// Version of its rows.
    pub version: u64,
    /// Buckets (app days) recomputed.
    pub buckets: u64,
    /// New raw rows derived.
    pub new_rows: u64,
    /// Keys that differed from a recomputation (full rebuilds).
    pub drift: Option<u64>,
}

/// An open person deletion job (PostgreSQL `person_deletions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// Job id.
    pub id: i64,
    /// App.
    pub app_id: String,
    /// The deleted person.
    pub person_id: String,
    /// Its distinct ids.
    pub distinct_ids: Vec<String>,
    /// Days they had events (`YYYY-MM-DD`).
    pub days: Vec<String>,
}

/// The state of one scope, as one owner.
pub struct PgState {
    client: Client,
    scope: String,
    owner: String,
}

impl std::fmt::Debug for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgState")
            .field("scope", &self.scope)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgState {
    /// The state of `scope` as `owner`.
    pub fn new(client: Client, scope: &str, owner: &str) -> Self {
        PgState {
            client,
            scope: scope.to_owned(),
            owner: owner.to_owned(),
        }
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Takes or renews the lease for `ttl`; its fence, or `None` when another
    /// owner holds it.
    pub async fn acquire(&self, ttl: Duration) -> Result<Option<i64>, RefreshError> {
        let secs = f64::from(u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX));
        let row = self
            .client
            .query_opt(
                "INSERT INTO refresh_lease (scope, owner, fence, expires_at) \
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
                 ON CONFLICT (scope) DO UPDATE SET owner = EXCLUDED.owner, \
                 expires_at = EXCLUDED.expires_at, fence = CASE WHEN refresh_lease.owner = EXCLUDED.owner \
                 THEN refresh_lease.fence ELSE refresh_lease.fence + 1 END \
                 WHERE refresh_lease.owner = EXCLUDED.owner OR refresh_lease.expires_at < now() \
                 RETURNING fence",
                &[&self.scope, &self.owner, &secs],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Gives the lease up (at shutdown), so another refresher takes over at once.
    pub async fn release(&self) -> Result<(), RefreshError> {
        self.client
            .execute(
                "UPDATE refresh_lease SET expires_at = now() WHERE scope = $1 AND owner = $2",
                &[&self.scope, &self.owner],
            )
            .await?;
        Ok(())
    }

    /// The version of a new run's rows.
    pub async fn next_version(&self) -> Result<u64, RefreshError> {
        let row = self
            .client
            .query_one("SELECT nextval('refresh_version')", &[])
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// The watermarks on insertion: per partition, the highest offset derived.
    pub async fn marks(&self) -> Result<HashMap<MarkKey, i64>, RefreshError> {
        let rows = self
            .client
            .query(
                "SELECT kafka_topic, kafka_partition, mark FROM refresh_marks \
                 WHERE scope = $1 AND event_date = $2::text::date",
                &[&self.scope, &PARTITION_MARK_DAY],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let partition = u32::try_from(row.get::<_, i32>(1)).unwrap_or(0);
                ((row.get(0), partition), row.get(2))
            })
            .collect())
    }

    /// Buckets (`app|YYYY-MM-DD`) of runs that added rows and never committed.
    pub async fn pending(&self) -> Result<Vec<String>, RefreshError> {
        let rows = self
            .client
            .query(
                "SELECT app_id || '|' || to_char(event_date, 'YYYY-MM-DD') FROM refresh_pending \
                 WHERE scope = $1",
                &[&self.scope],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Records the buckets (`(app, YYYY-MM-DD)`) this run is about to add rows
    /// to, before it writes (removed when it commits).
    pub async fn add_pending(&self, buckets: &[(String, String)]) -> Result<(), RefreshError> {
        let (apps, days): (Vec<&str>, Vec<&str>) = buckets
            .iter()
            .map(|(app, day)| (app.as_str(), day.as_str()))
            .unzip();
        self.client
            .execute(
                "INSERT INTO refresh_pending (scope, app_id, event_date) \
                 SELECT $1, a, d::date FROM unnest($2::text[], $3::text[]) AS t(a, d) \
                 ON CONFLICT DO NOTHING",
                &[&self.scope, &apps, &days],
            )
            .await?;
        Ok(())
    }

    /// The identity watermarks, per app.
    pub async fn identity_marks(&self) -> Result<HashMap<String, u64>, RefreshError> {
        let rows = self
            .client
            .query(
                "SELECT app_id, version FROM refresh_identity_marks WHERE scope = $1",
                &[&self.scope],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)))
            .collect())
    }

    /// The person deletion jobs not done yet.
    pub async fn open_deletions(&self) -> Result<Vec<Deletion>, RefreshError> {
        let rows = self
            .client
            .query(
                "SELECT id, app_id, person_id, distinct_ids, days FROM person_deletions \
                 WHERE scope = $1 AND status = 'deleting' ORDER BY id",
                &[&self.scope],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Deletion {
                id: r.get(0),
                app_id: r.get(1),
                person_id: r.get(2),
                distinct_ids: r.get(3),
                days: r.get(4),
            })
            .collect())
    }

    /// Adds `days` to a deletion job's days (rows that arrived after it).
    pub async fn add_deletion_days(&self, job: i64, days: Vec<String>) -> Result<(), RefreshError> {
        self.client
            .execute(
                "UPDATE person_deletions SET days = ARRAY(SELECT DISTINCT unnest(days || $2::text[]) ORDER BY 1) \
                 WHERE id = $1",
                &[&job, &days],
            )
            .await?;
        Ok(())
    }

    /// Records that every row at or below `derived` offsets is derived
    /// (per (topic, partition); never moves back).
    pub async fn set_derived(&self, derived: &Ends, started_secs: f64) -> Result<(), RefreshError> {
        for ((topic, partition), offset) in derived {
            let partition = i32::try_from(*partition).unwrap_or(i32::MAX);
            self.client
                .execute(
                    "INSERT INTO refresh_derived (scope, kafka_topic, kafka_partition, derived, run_started_at) \
                     VALUES ($1, $2, $3, $4, to_timestamp($5)) ON CONFLICT (scope, kafka_topic, kafka_partition) \
                     DO UPDATE SET derived = GREATEST(refresh_derived.derived, EXCLUDED.derived), \
                     run_started_at = EXCLUDED.run_started_at",
                    &[&self.scope, topic, &partition, &to_i64(*offset), &started_secs],
                )
                .await?;
        }
        Ok(())
    }

    /// Forgets the scope's positions in the log — its marks, what readers
    /// may take from reports, the pending buckets and the identity marks —
    /// in one statement, so the next run is a first, full one and readers
    /// answer from raw rows until it commits. For positions taken on another
    /// log ([`crate::refresh::Refresher::run`]).
    pub async fn forget_positions(&self) -> Result<(), RefreshError> {
        self.client
            .execute(
                "WITH marks AS (DELETE FROM refresh_marks WHERE scope = $1), \
                 derived AS (DELETE FROM refresh_derived WHERE scope = $1), \
                 pending AS (DELETE FROM refresh_pending WHERE scope = $1) \
                 DELETE FROM refresh_identity_marks WHERE scope = $1",
                &[&self.scope],
            )
            .await?;
        Ok(())
    }

    /// When the last full rebuild finished (epoch seconds), if any.
    pub async fn last_full_secs(&self) -> Result<Option<f64>, RefreshError> {
        let row = self
            .client
            .query_one(
                "SELECT extract(epoch FROM max(finished_at))::float8 FROM refresh_runs \
                 WHERE scope = $1 AND kind = 'full'",
                &[&self.scope],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Whether an operator asked for a full rebuild.
    pub async fn full_requested(&self) -> Result<bool, RefreshError> {
        let row = self
            .client
            .query_opt(
                "SELECT 1 FROM refresh_requests WHERE scope = $1",
                &[&self.scope],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Commits a run: its watermarks and its record, only while the lease
    /// with `fence` is still ours (else [`RefreshError::NotLeader`]).
    /// `settled` are the pending buckets (`app|YYYY-MM-DD`) the run recomputed
    /// or added to: they stop being pending.
    pub async fn commit(
        &mut self,
        fence: i64,
        marks: &[(MarkKey, u64)],
        identity: &[(String, u64)],
        run: &RunRecord,
        (started_secs, settled): (f64, &[String]),
        finished_deletions: &[i64],
    ) -> Result<(), RefreshError> {
        let tx = self.client.transaction().await?;
        let held = tx
            .query_opt(
                "SELECT 1 FROM refresh_lease WHERE scope = $1 AND owner = $2 AND fence = $3 \
                 AND expires_at > now() FOR UPDATE",
                &[&self.scope, &self.owner, &fence],
            )
            .await?;
        if held.is_none() {
            return Err(RefreshError::NotLeader(self.scope.clone()));
        }
        for ((topic, partition), top) in marks {
            let partition = i32::try_from(*partition).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO refresh_marks (scope, kafka_topic, kafka_partition, event_date, mark) \
                 VALUES ($1, $2, $3, $4::text::date, $5) ON CONFLICT (scope, kafka_topic, kafka_partition, event_date) \
                 DO UPDATE SET mark = GREATEST(refresh_marks.mark, EXCLUDED.mark)",
                &[&self.scope, topic, &partition, &PARTITION_MARK_DAY, &to_i64(*top)],
            )
            .await?;
        }
        if !settled.is_empty() {
            tx.execute(
                "DELETE FROM refresh_pending WHERE scope = $1 \
                 AND app_id || '|' || to_char(event_date, 'YYYY-MM-DD') = ANY($2)",
                &[&self.scope, &settled],
            )
            .await?;
        }
        for (app, version) in identity {
            tx.execute(
                "INSERT INTO refresh_identity_marks (scope, app_id, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, app_id) DO UPDATE \
                 SET version = GREATEST(refresh_identity_marks.version, EXCLUDED.version)",
                &[&self.scope, app, &to_i64(*version)],
            )
            .await?;
        }
        let drift = run.drift.map(to_i64);
        tx.execute(
            "INSERT INTO refresh_runs (scope, kind, version, buckets, new_rows, drift, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7))",
            &[
                &self.scope,
                &run.kind,
                &to_i64(run.version),
                &to_i64(run.buckets),
                &to_i64(run.new_rows),
                &drift,
                &started_secs,
            ],
        )
        .await?;
        if !finished_deletions.is_empty() {
            tx.execute(
                "UPDATE person_deletions SET status = 'done', done_at = now() \
                 WHERE scope = $1 AND id = ANY($2)",
                &[&self.scope, &finished_deletions],
            )
            .await?;
        }
        if run.kind == "full" {
            tx.execute(
                "DELETE FROM refresh_requests WHERE scope = $1 AND requested_at <= to_timestamp($2)",
                &[&self.scope, &started_secs],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
