//! One refresh run (seed 003's incremental refresh), exactly as often as asked.
//!
//! A run, as the lease holder:
//! 1. reads its *ends*: per Kafka partition, the offset up to which it
//!    derives — the aggregator group's committed offset (every row below it is
//!    stored), or without the broker the highest arrival (tests, the bench);
//!    rows between the last run's marks and the ends are new;
//! 2. copies the new rows from their arrivals into a table of its own, and
//!    *adds* them to the report keys they fall in (a late row costs its own
//!    keys, not its day), after recording those buckets as pending; it also
//!    adds them to the sets `id_hours`, `key_ids` and `id_keys`;
//! 3. *rewrites* what a change of persons touches ([`crate::changed`]): the
//!    report keys of ids that moved to another person — identity rows at new
//!    positions (they carry their identity event's Kafka position, so they
//!    are complete up to the ends like the raw rows), or, for rows without a
//!    position, above the app's identity mark — and their old persons'
//!    activity rows (the dimension changed, the facts did not), and the hours
//!    of persons whose deletion finished;
//! 4. *recomputes* from raw rows the buckets (app, day) of runs that added
//!    rows and never committed (`refresh_pending`) — every bucket in a full
//!    run;
//! 5. commits the ends as marks, only if the lease is still held.
//!
//! Before step 1, marks at or past their partition's log end on the broker
//! were taken on another log (the topic was made anew: a fresh broker beside
//! a PostgreSQL that stayed): the scope's positions are forgotten, and the
//! run is a first, full one ([`positions`]).
//!
//! Recomputing is idempotent; adding is not, which is why a run that never
//! committed has its added buckets recomputed by the next run. A *full* run
//! recomputes every bucket within fresh ends; before writing it measures the
//! drift — keys that differ from a recomputation from raw rows within the
//! marks, outside the buckets being recomputed (expected 0). The first run of
//! a scope (no marks) is a full one, and builds the sets from `events`. Trait
//! changes touch no derived row: no derived table holds a trait (breakdowns
//! by trait join the persons' current traits when read).

use crate::changed;
use crate::error::RefreshError;
use crate::state::{PgState, RunRecord};
use crate::statements::{self, Ends, NewRange, Stmt};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tally_common::kafka::KafkaConfig;

/// Most days written per statement.
const DAYS_PER_STATEMENT: usize = 31;
/// Most hours rewritten per statement.
const HOURS_PER_STATEMENT: usize = 48;

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
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The run's record (as committed).
    pub record: RunRecord,
    /// The buckets recomputed: app → days.
    pub buckets: BTreeMap<String, BTreeSet<String>>,
    /// How many buckets new rows were added to (not recomputed).
    pub added: u64,
    /// The days on which rows of changed persons were recomputed row by row:
    /// app → days.
    pub reworked: BTreeMap<String, BTreeSet<String>>,
    /// Seconds spent per step, in order (where a run's time goes).
    pub seconds: Vec<(&'static str, f64)>,
    /// Marks taken on another log, forgotten before the run (which was then
    /// a first, full one).
    pub forgotten: Vec<ForgottenMark>,
}

mod positions;
mod rework;

pub use positions::ForgottenMark;

/// Seconds per step of a run.
struct Laps {
    last: std::time::Instant,
    done: Vec<(&'static str, f64)>,
}

impl Laps {
    fn start() -> Self {
        Laps {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    /// Adds the time since the last lap to `step`.
    fn lap(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64();
        match self.done.iter_mut().find(|(s, _)| *s == step) {
            Some((_, total)) => *total += secs,
            None => self.done.push((step, secs)),
        }
        self.last = now;
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Bucket {
    app_id: String,
    day: String,
    rows: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ChangedId {
    app_id: String,
    distinct_id: String,
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

/// Runs refreshes of one scope.
#[derive(Debug)]
pub struct Refresher {
    clickhouse: clickhouse::Client,
    state: PgState,
    lease: Duration,
    /// Test-only: fail the run after its additions and this many apps' recomputations.
    crash_after: Option<usize>,
    /// The broker and the aggregator's group: which rows are stored.
    kafka: Option<(KafkaConfig, String)>,
    /// Raw rows are kept this many days ([`tally_common::lifecycle`]).
    retention_days: Option<u32>,
    /// (cluster, database) on a ClickHouse cluster: its mutations and system
    /// reads take their cluster forms ([`Refresher::cluster_form`]).
    cluster: Option<(String, String)>,
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
            retention_days: None,
            cluster: None,
        }
    }

    /// On a ClickHouse cluster (`config.cluster`): mutations run on every
    /// shard's local tables and reads of `system.mutations` cover every shard.
    pub fn with_cluster(mut self, config: &tally_common::clickhouse::ClickHouseConfig) -> Self {
        self.cluster = config
            .cluster
            .clone()
            .map(|name| (name, config.database.clone()));
        self
    }

    /// `sql` as this refresher's ClickHouse runs it.
    pub(crate) fn cluster_form(&self, sql: &str) -> String {
        match &self.cluster {
            None => sql.to_owned(),
            Some((name, database)) => {
                tally_schemas::cluster::Cluster { name, database }.service_form(sql)
            }
        }
    }

    /// Raw rows are kept `days` days: buckets before that keep their derived
    /// rows and are never recomputed from raw rows, nor measured for drift
    /// (their raw rows may be gone; reports are kept forever).
    pub fn with_retention(mut self, days: u32) -> Self {
        self.retention_days = Some(days);
        self
    }

    /// The first day whose raw rows are kept (`1970-01-01` without a retention).
    fn since(&self) -> String {
        match self.retention_days {
            Some(days) => tally_common::lifecycle::cutoff_day((now_secs() * 1_000.0) as i64, days),
            None => "1970-01-01".to_owned(),
        }
    }

    /// Reads the aggregator group's committed offsets on `kafka` at the start
    /// of each run and records, once the run is committed, that every row
    /// below them is derived (readers then answer those days from reports).
    pub fn with_kafka(mut self, kafka: KafkaConfig, aggregator_group: &str) -> Self {
        self.kafka = Some((kafka, aggregator_group.to_owned()));
        self
    }

    /// Test-only: the next runs fail after adding their new rows and
    /// recomputing `apps` apps' buckets (as a process killed mid-run would);
    /// `None` turns it off.
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

    /// One run; `None` when another refresher holds the lease. The first run
    /// of a scope is a full one, whatever is asked.
    pub async fn run(&mut self, kind: Kind) -> Result<Option<Report>, RefreshError> {
        let started = now_secs();
        let Some(fence) = self.state.acquire(self.lease).await? else {
            return Ok(None);
        };
        // Additions take the lowest version, rewrites of moved ids' keys the
        // next, recomputations from raw rows the highest: where two write a
        // key in one run, the later step (which includes the earlier one's
        // rows) is the row that stays.
        let add_version = self.state.next_version().await?;
        let rework_version = self.state.next_version().await?;
        let version = self.state.next_version().await?;
        let mut laps = Laps::start();
        let broker = self.broker().await;
        let mut marks = self.state.marks().await?;
        // Positions taken on another log (the topic made anew) are forgotten
        // first: this run is then a first, full one.
        let forgotten = self.forget_another_log(&marks, broker.as_deref()).await?;
        if !forgotten.is_empty() {
            marks.clear();
        }
        let marks: Ends = marks
            .into_iter()
            .filter_map(|(key, mark)| Some((key, u64::try_from(mark).ok()?)))
            .collect();
        let kind = if marks.is_empty() { Kind::Full } else { kind };
        let since = self.since();
        let ends = self
            .ends(kind, &marks, self.committed(broker.as_deref()))
            .await?;
        laps.lap("ends");
        // New positions: between the marks and the ends.
        let ranges: Vec<NewRange> = ends
            .iter()
            .filter_map(|((topic, partition), end)| {
                let mark = marks
                    .get(&(topic.clone(), *partition))
                    .map_or(-1, |m| i64::try_from(*m).unwrap_or(i64::MAX));
                (i64::try_from(*end).unwrap_or(i64::MAX) > mark).then(|| NewRange {
                    topic: topic.clone(),
                    partition: *partition,
                    mark,
                    end: *end,
                })
            })
            .collect();

        // Ids that changed person: identity rows at new positions, and rows
        // without a position above the app's identity mark (by version). The
        // first run of a scope recomputes everything: it needs none.
        let first = marks.is_empty();
        let mut changed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if !ranges.is_empty() && !first {
            let stmt = changed::placed_changed_ids(&ranges);
            for c in self.fetch::<ChangedId>(&stmt).await? {
                changed.entry(c.app_id).or_default().insert(c.distinct_id);
            }
        }
        let identity_tops: Vec<AppTop> = self
            .fetch(&Stmt::plain(statements::IDENTITY_TOPS_SQL))
            .await?;
        let identity_marks = self.state.identity_marks().await?;
        let mut new_identity = Vec::new();
        for top in &identity_tops {
            let from = identity_marks.get(&top.app_id).copied().unwrap_or(0);
            if top.top > from {
                if !first {
                    let stmt = changed::changed_ids(&top.app_id, from, top.top);
                    for c in self.fetch::<ChangedId>(&stmt).await? {
                        changed.entry(c.app_id).or_default().insert(c.distinct_id);
                    }
                }
                new_identity.push((top.app_id.clone(), top.top));
            }
        }

        // Buckets recomputed: runs that never committed; in full runs also
        // the days of identity changes and deletions (which incremental runs
        // recompute row by row: `changed`).
        let pending = self.state.pending().await?;
        let mut touched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for bucket in &pending {
            if let Some((app, day)) = bucket.split_once('|') {
                touched
                    .entry(app.to_owned())
                    .or_default()
                    .insert(day.to_owned());
            }
        }
        let mut moved: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        match kind {
            Kind::Incremental => moved = changed,
            Kind::Full => {
                for (app, ids) in changed {
                    let ids: Vec<String> = ids.into_iter().collect();
                    let hours = self.hours_of(&app, &ids).await?;
                    touched
                        .entry(app)
                        .or_default()
                        .extend(changed::days_of(&hours));
                }
            }
        }
        laps.lap("identity");
        let mut deleted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let finished = self.deletions().await?;
        laps.lap("deletions");
        for job in &finished {
            if kind == Kind::Full {
                let days = touched.entry(job.app_id.clone()).or_default();
                days.extend(job.days.iter().cloned());
                let ids = statements::person_days(&job.app_id, &job.distinct_ids);
                days.extend(self.fetch::<Day>(&ids).await?.into_iter().map(|d| d.day));
            } else {
                let ids = deleted.entry(job.app_id.clone()).or_default();
                ids.extend(job.distinct_ids.iter().cloned());
                ids.insert(job.person_id.clone());
            }
        }
        let finished: Vec<i64> = finished.iter().map(|job| job.id).collect();
        touched.retain(|_, days| !days.is_empty());

        // New rows: arrivals between the marks and the ends.
        let mut new_rows = 0;
        let mut new_buckets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        self.drop_leftovers().await?;
        if !ranges.is_empty() {
            statements::stage_facts(&ranges, add_version)
                .query(&self.clickhouse)
                .execute()
                .await?;
            let buckets = statements::new_buckets(&statements::staged(add_version, &[]));
            for bucket in self.fetch::<Bucket>(&buckets).await? {
                new_rows += bucket.rows;
                new_buckets
                    .entry(bucket.app_id)
                    .or_default()
                    .insert(bucket.day);
            }
        }

        laps.lap("new_rows");
        let (recomputed, drift) = match kind {
            Kind::Incremental => (touched, None),
            Kind::Full => {
                let mut all = touched.clone();
                for b in self
                    .fetch::<AppDay>(&Stmt::plain(statements::ALL_BUCKETS_SQL))
                    .await?
                {
                    all.entry(b.app_id).or_default().insert(b.day);
                }
                for (app, days) in &new_buckets {
                    all.entry(app.clone())
                        .or_default()
                        .extend(days.iter().cloned());
                }
                let mut drift = 0;
                for app in all.keys().filter(|_| !marks.is_empty()) {
                    let skip: Vec<String> =
                        touched.get(app).into_iter().flatten().cloned().collect();
                    for stmt in [
                        statements::pages_drift(app, (&skip, &since), &marks),
                        statements::activity_drift(app, (&skip, &since), &marks),
                    ] {
                        // ClickHouse 18.16 answers no row for a count over an
                        // empty subquery with GROUP BY: that is 0.
                        let found = stmt.query(&self.clickhouse).fetch_all::<u64>().await?;
                        drift += found.first().copied().unwrap_or(0);
                    }
                }
                laps.lap("drift");
                // Before the first run nothing was derived: no drift to measure.
                (all, (!marks.is_empty()).then_some(drift))
            }
        };
        // Days past the retention keep their derived rows (no raw rows to
        // recompute them from).
        let mut recomputed = recomputed;
        for days in recomputed.values_mut() {
            days.retain(|day| *day >= since);
        }
        recomputed.retain(|_, days| !days.is_empty());
        let bucket_names = |buckets: &BTreeMap<String, BTreeSet<String>>| -> Vec<String> {
            buckets
                .iter()
                .flat_map(|(app, days)| days.iter().map(move |d| format!("{app}|{d}")))
                .collect()
        };
        let skip = bucket_names(&recomputed);
        let added: Vec<(String, String)> = new_buckets
            .iter()
            .flat_map(|(app, days)| days.iter().map(move |d| (app.clone(), d.clone())))
            .filter(|(app, day)| !recomputed.get(app).is_some_and(|d| d.contains(day)))
            .collect();
        if !added.is_empty() {
            self.state.add_pending(&added).await?;
        }
        if !ranges.is_empty() {
            let all = statements::staged(add_version, &[]);
            let [keys, ids] = statements::key_ids_add(&all);
            for stmt in [statements::id_hours_add(&all), keys, ids] {
                stmt.query(&self.clickhouse).execute().await?;
            }
        }
        laps.lap("add_id_hours");
        if !added.is_empty() {
            let facts = statements::staged(add_version, &skip);
            statements::pages_add(&facts, add_version)
                .query(&self.clickhouse)
                .execute()
                .await?;
            laps.lap("add_pages");
            statements::activity_add(&facts, add_version)
                .query(&self.clickhouse)
                .execute()
                .await?;
        }
        laps.lap("add_activity");
        let mut reworked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (app, ids) in &moved {
            let days = self
                .rework_moves(app, ids, rework_version, &mut laps)
                .await?;
            reworked.entry(app.clone()).or_default().extend(days);
        }
        for (app, ids) in &deleted {
            let days = self
                .rework_deleted(app, ids, (version, &ends, &since), &mut laps)
                .await?;
            reworked.entry(app.clone()).or_default().extend(days);
        }
        reworked.retain(|_, days| !days.is_empty());
        for (done, (app, days)) in recomputed.iter().enumerate() {
            if self.crash_after == Some(done) {
                return Err(RefreshError::Injected(done));
            }
            // The sets are kept by every run from its new rows: built from
            // `events` once, by the first run of a scope.
            if marks.is_empty() {
                let [keys, ids] = statements::key_ids_all(app);
                for stmt in [statements::id_hours_all(app), keys, ids] {
                    stmt.query(&self.clickhouse).execute().await?;
                }
            }
            let days: Vec<String> = days.iter().cloned().collect();
            for chunk in days.chunks(DAYS_PER_STATEMENT) {
                for stmt in statements::recompute(app, chunk, version, &ends) {
                    stmt.query(&self.clickhouse).execute().await?;
                }
            }
        }
        if self.crash_after == Some(recomputed.len()) {
            return Err(RefreshError::Injected(recomputed.len()));
        }
        laps.lap("recompute");
        let record = RunRecord {
            kind: kind.name(),
            version,
            buckets: recomputed.values().map(|d| d.len() as u64).sum(),
            new_rows,
            drift,
        };
        let new_marks: Vec<((String, u32), u64)> = ends
            .iter()
            .filter(|(key, end)| marks.get(*key) != Some(*end))
            .map(|(key, end)| (key.clone(), *end))
            .collect();
        let mut settled = pending;
        settled.extend(added.iter().map(|(app, day)| format!("{app}|{day}")));
        // Days folded for moved persons were pending for the length of the run.
        for (app, days) in &reworked {
            settled.extend(days.iter().map(|day| format!("{app}|{day}")));
        }
        self.state
            .commit(
                fence,
                &new_marks,
                &new_identity,
                &record,
                (started, &settled),
                &finished,
            )
            .await?;
        if self.kafka.is_some() {
            self.state.set_derived(&ends, started).await?;
        }
        if !ranges.is_empty() {
            statements::drop_staged(add_version)
                .query(&self.clickhouse)
                .execute()
                .await?;
        }
        self.prune_arrivals(&ends).await?;
        laps.lap("commit");
        Ok(Some(Report {
            seconds: laps.done,
            record,
            buckets: recomputed,
            added: added.len() as u64,
            reworked,
            forgotten,
        }))
    }
}
