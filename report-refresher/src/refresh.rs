//! One refresh run (seed 003's incremental refresh), exactly as often as asked.
//!
//! A run, as the lease holder:
//! 1. reads what is stored now — the highest offset per (topic, Kafka
//!    partition, day) of `events` and the highest identity version per app —
//!    and the watermarks of the last committed run;
//! 2. finds the *touched buckets* (app, day): those holding rows above the
//!    watermarks (new and late rows: the watermark is on insertion, not on
//!    event time — the raw writer stores each (partition, day) as a prefix of
//!    the log, so "above the mark" is exactly "not derived yet"), and the days
//!    on which any distinct id whose person changed since (a link or a merge
//!    of two persons) has events — the dimension changed, the facts did not;
//! 3. recomputes those buckets with a new version ([`crate::statements`]:
//!    replace-on-write, vanished keys zeroed);
//! 4. commits the watermarks read in step 1, only if the lease is still held.
//!
//! A crashed or refused run commits nothing: the next run finds the same
//! buckets touched (and perhaps more) and writes them again with a higher
//! version, so repeating a run gives the same tables. A *full* run recomputes
//! every bucket; before writing it measures the drift — keys of buckets the
//! last run claimed up to date that differ from a recomputation from raw rows
//! (expected 0). Trait changes touch no derived row: no derived table holds a
//! trait (breakdowns by trait join the persons' current traits when read).

use crate::error::RefreshError;
use crate::state::{MarkKey, PgState, RunRecord};
use crate::statements::{self, NewRange, Stmt};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tally_common::kafka::KafkaConfig;

/// Most days written per statement.
const DAYS_PER_STATEMENT: usize = 31;
/// Most new-row ranges read per statement.
const RANGES_PER_STATEMENT: usize = 64;

/// Which run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only the touched buckets.
    Incremental,
    /// Every bucket, measuring the drift first.
    Full,
}

impl Kind {
    /// Its name (metrics label, `refresh_runs.kind`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Incremental => "incremental",
            Kind::Full => "full",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The run's record (as committed).
    pub record: RunRecord,
    /// The buckets recomputed: app → days.
    pub buckets: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Top {
    kafka_topic: String,
    kafka_partition: u32,
    day: String,
    top: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Bucket {
    app_id: String,
    day: String,
    rows: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AppTop {
    app_id: String,
    top: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AppDay {
    app_id: String,
    day: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Day {
    day: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ArrivalDay {
    day: String,
    kafka_topic: String,
    kafka_partition: i32,
    top: i64,
}

/// Runs refreshes of one scope.
#[derive(Debug)]
pub struct Refresher {
    clickhouse: clickhouse::Client,
    state: PgState,
    lease: Duration,
    /// Test-only: fail the run after writing this many apps' buckets.
    crash_after: Option<usize>,
    /// The broker and the aggregator's group: which rows are stored.
    kafka: Option<(KafkaConfig, String)>,
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Refresher {
    /// A refresher writing through `clickhouse` with its state in `state`.
    pub fn new(clickhouse: clickhouse::Client, state: PgState, lease: Duration) -> Self {
        Refresher {
            clickhouse,
            state,
            lease,
            crash_after: None,
            kafka: None,
        }
    }

    /// Reads the aggregator group's committed offsets on `kafka` at the start
    /// of each run and records, once the run is committed, that every row
    /// below them is derived (readers then answer those days from reports).
    pub fn with_kafka(mut self, kafka: KafkaConfig, aggregator_group: &str) -> Self {
        self.kafka = Some((kafka, aggregator_group.to_owned()));
        self
    }

    /// Test-only: the next runs fail after writing `apps` apps' buckets
    /// (as a process killed mid-run would); `None` turns it off.
    pub fn crash_after(&mut self, apps: Option<usize>) {
        self.crash_after = apps;
    }

    /// The state store.
    pub fn state(&self) -> &PgState {
        &self.state
    }

    /// Which run is due: full when asked for or when the last full one is
    /// older than `full_every` (never when it is zero), else incremental.
    pub async fn due(&self, full_every: Duration) -> Result<Kind, RefreshError> {
        if self.state.full_requested().await? {
            return Ok(Kind::Full);
        }
        if full_every.is_zero() {
            return Ok(Kind::Incremental);
        }
        let last = self.state.last_full_secs().await?.unwrap_or(0.0);
        Ok(if now_secs() - last >= full_every.as_secs_f64() {
            Kind::Full
        } else {
            Kind::Incremental
        })
    }

    async fn fetch<T>(&self, stmt: &Stmt) -> Result<Vec<T>, RefreshError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        Ok(stmt.query(&self.clickhouse).fetch_all::<T>().await?)
    }

    /// Person deletions: the days of each job whose person has no row left
    /// are touched (its reports re-derived; the job finishes with the run);
    /// a job whose rows came back after its mutations finished (events in
    /// flight at the deletion) gets its mutations again. Returns the jobs
    /// this run finishes.
    async fn deletions(
        &self,
        touched: &mut BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Vec<i64>, RefreshError> {
        let mut finished = Vec::new();
        for job in self.state.open_deletions().await? {
            let left = statements::remaining(&job.app_id, &job.person_id, &job.distinct_ids);
            let left: u64 = left.query(&self.clickhouse).fetch_one().await?;
            if left == 0 {
                touched
                    .entry(job.app_id.clone())
                    .or_default()
                    .extend(job.days.iter().cloned());
                finished.push(job.id);
                continue;
            }
            let pending: u64 = self
                .clickhouse
                .query(statements::PENDING_MUTATIONS_SQL)
                .fetch_one()
                .await?;
            if pending == 0 {
                tracing::info!(
                    job = job.id,
                    left,
                    "rows of a deleted person remain: deleting again"
                );
                // Their days join the job's, so that they are re-derived too.
                let days = statements::person_days(&job.app_id, &job.distinct_ids);
                let days: Vec<Day> = self.fetch(&days).await?;
                self.state
                    .add_deletion_days(job.id, days.into_iter().map(|d| d.day).collect())
                    .await?;
                for stmt in statements::deletes(&job.app_id, &job.person_id, &job.distinct_ids) {
                    stmt.query(&self.clickhouse).execute().await?;
                }
            }
        }
        Ok(finished)
    }

    /// Drops each received day of `arrivals` older than yesterday whose
    /// arrivals are all derived.
    async fn prune_arrivals(&self) -> Result<(), RefreshError> {
        let derived = self.state.derived().await?;
        let days: Vec<ArrivalDay> = self
            .fetch(&Stmt {
                text: statements::ARRIVAL_DAYS_SQL.into(),
                binds: Vec::new(),
            })
            .await?;
        let yesterday = time::OffsetDateTime::now_utc().date().previous_day();
        let mut droppable: BTreeMap<String, bool> = BTreeMap::new();
        for day in days {
            let all_derived = derived
                .get(&(day.kafka_topic.clone(), day.kafka_partition))
                .is_some_and(|d| day.top <= *d);
            let old = yesterday.is_some_and(|y| day.day < y.to_string());
            *droppable.entry(day.day).or_insert(true) &= all_derived && old;
        }
        for (day, drop) in droppable {
            if drop {
                self.clickhouse
                    .query(statements::DROP_ARRIVALS_SQL)
                    .bind(day.as_str())
                    .execute()
                    .await?;
                tracing::info!(day, "dropped derived arrivals");
            }
        }
        Ok(())
    }

    /// One run; `None` when another refresher holds the lease.
    pub async fn run(&mut self, kind: Kind) -> Result<Option<Report>, RefreshError> {
        let started = now_secs();
        let Some(fence) = self.state.acquire(self.lease).await? else {
            return Ok(None);
        };
        let version = self.state.next_version().await?;
        // Stored before this run began: every message below the group's
        // commit (read first, so the run derives all of them).
        let committed = match &self.kafka {
            None => Vec::new(),
            Some((kafka, group)) => {
                match tally_common::kafka::committed_offsets(kafka, group).await {
                    Ok(committed) => committed
                        .into_iter()
                        .map(|(p, offset)| (kafka.topic.clone(), p, offset - 1))
                        .collect(),
                    Err(err) => {
                        tracing::warn!(error = %err, "committed offsets unreadable: derived marks stay");
                        Vec::new()
                    }
                }
            }
        };
        let plain = |text: &str| Stmt {
            text: text.to_owned(),
            binds: Vec::new(),
        };
        let tops: Vec<Top> = self.fetch(&plain(statements::TOPS_SQL)).await?;
        let marks = self.state.marks().await?;
        let identity_tops: Vec<AppTop> = self.fetch(&plain(statements::IDENTITY_TOPS_SQL)).await?;
        let identity_marks = self.state.identity_marks().await?;

        let mut new_marks: Vec<(MarkKey, u64)> = Vec::new();
        let mut ranges = Vec::new();
        for top in &tops {
            let key = (
                top.kafka_topic.clone(),
                top.kafka_partition,
                top.day.clone(),
            );
            let mark = marks.get(&key).copied().unwrap_or(-1);
            if i64::try_from(top.top).unwrap_or(i64::MAX) > mark {
                ranges.push(NewRange {
                    topic: key.0.clone(),
                    partition: key.1,
                    day: key.2.clone(),
                    mark,
                    top: top.top,
                });
                new_marks.push((key, top.top));
            }
        }
        let mut touched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut new_rows = 0;
        for chunk in ranges.chunks(RANGES_PER_STATEMENT) {
            for bucket in self
                .fetch::<Bucket>(&statements::new_buckets(chunk))
                .await?
            {
                new_rows += bucket.rows;
                touched.entry(bucket.app_id).or_default().insert(bucket.day);
            }
        }
        let mut new_identity = Vec::new();
        for top in &identity_tops {
            let from = identity_marks.get(&top.app_id).copied().unwrap_or(0);
            if top.top > from {
                let stmt = statements::identity_buckets(&top.app_id, from, top.top);
                let days = touched.entry(top.app_id.clone()).or_default();
                days.extend(self.fetch::<Day>(&stmt).await?.into_iter().map(|d| d.day));
                new_identity.push((top.app_id.clone(), top.top));
            }
        }
        let finished = self.deletions(&mut touched).await?;
        touched.retain(|_, days| !days.is_empty());

        let (buckets, drift) = match kind {
            Kind::Incremental => (touched, None),
            Kind::Full => {
                let mut all = touched.clone();
                for b in self
                    .fetch::<AppDay>(&plain(statements::ALL_BUCKETS_SQL))
                    .await?
                {
                    all.entry(b.app_id).or_default().insert(b.day);
                }
                let mut drift = 0;
                for app in all.keys() {
                    let skip: Vec<String> =
                        touched.get(app).into_iter().flatten().cloned().collect();
                    for stmt in [
                        statements::pages_drift(app, &skip),
                        statements::activity_drift(app, &skip),
                    ] {
                        // ClickHouse 18.16 answers no row for a count over an
                        // empty subquery with GROUP BY: that is 0.
                        let found = stmt.query(&self.clickhouse).fetch_all::<u64>().await?;
                        drift += found.first().copied().unwrap_or(0);
                    }
                }
                (all, Some(drift))
            }
        };
        for (done, (app, days)) in buckets.iter().enumerate() {
            if self.crash_after == Some(done) {
                return Err(RefreshError::Injected(done));
            }
            let days: Vec<String> = days.iter().cloned().collect();
            for chunk in days.chunks(DAYS_PER_STATEMENT) {
                for stmt in statements::recompute(app, chunk, version) {
                    stmt.query(&self.clickhouse).execute().await?;
                }
            }
        }
        let record = RunRecord {
            kind: kind.name(),
            version,
            buckets: buckets.values().map(|d| d.len() as u64).sum(),
            new_rows,
            drift,
        };
        self.state
            .commit(
                fence,
                &new_marks,
                &new_identity,
                &record,
                started,
                &finished,
            )
            .await?;
        if !committed.is_empty() {
            self.state.set_derived(&committed, started).await?;
        }
        self.prune_arrivals().await?;
        Ok(Some(Report { record, buckets }))
    }
}
