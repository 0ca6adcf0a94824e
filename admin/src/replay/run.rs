//! `replay start`: plan (or find) the replay, prepare its target, then run the
//! stream aggregator's library over it until a bounded replay reaches its end
//! (or, for a following replay, until asked to stop), reporting progress.
//!
//! Order of a new replay: plan against the broker (refusing a range the topic
//! no longer holds) → commit the start offsets for the replay's consumer group
//! → record the catalog row. Every run (new or resumed) first creates and
//! migrates the target database, then copies the live tombstones of deleted
//! persons into the target prefix (a replay never brings a deleted person
//! back), then at every heartbeat those of apps with deletions recorded since.
//! The run hosts the aggregator and the report refresher of the target (scope:
//! its database), so its derived tables fill as the live ones do; a bounded
//! replay stops once the refresher has derived everything up to the end.
//! A crash before the catalog row leaves nothing a new `start` does not redo.
//! After it, `start --name` resumes: the group's committed offsets say where,
//! and the target's exactly-once watermarks make re-read messages count once.

use super::catalog::{self, Entry};
use super::plan::{self, Plan, Spec};
use super::reenrich::ReenrichOptions;
use super::{ReplayError, Target};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_common::redis_conn::Redis;
use tally_common::Clock;
use tally_schemas::person::identity_key;
use tokio_postgres::Client;

/// What `replay start` was asked.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Target name.
    pub name: String,
    /// `--from` (required for a new replay; must match when resuming).
    pub from: Option<String>,
    /// `--to` (none: follow the topic).
    pub to: Option<String>,
    /// `--reenrich …` options (new replays only).
    pub reenrich: ReenrichOptions,
    /// Health and metrics address of the replay's aggregator (port 0: any).
    pub addr: Option<SocketAddr>,
}

/// Progress of a running replay, as shown by `replay start` and `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Per partition: start, committed (processed below), end (or log end when following).
    pub partitions: Vec<(i32, i64, i64, i64)>,
    /// Messages processed.
    pub done: i64,
    /// Messages in the range (so far, when following).
    pub total: i64,
    /// Messages per second (recent).
    pub rate: f64,
    /// Whether the replay follows the topic (no end).
    pub following: bool,
}

impl Snapshot {
    /// Seconds left at the current rate.
    pub fn eta_secs(&self) -> Option<f64> {
        (self.rate > 0.0).then(|| (self.total - self.done).max(0) as f64 / self.rate)
    }

    /// Whether every partition reached its end (bounded replays).
    pub fn reached_end(&self) -> bool {
        !self.following && self.partitions.iter().all(|&(_, _, at, end)| at >= end)
    }
}

/// A client of `group` that reads positions and commits, never joins.
fn group_client(
    kafka: &tally_common::kafka::KafkaConfig,
    group: &str,
) -> Result<BaseConsumer, ReplayError> {
    Ok(kafka
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// Reads the group's progress over `start`..`end` once (blocking).
pub fn snapshot(
    kafka: &tally_common::kafka::KafkaConfig,
    group: &str,
    start: &BTreeMap<i32, i64>,
    end: Option<&BTreeMap<i32, i64>>,
) -> Result<Snapshot, ReplayError> {
    progress_of(&group_client(kafka, group)?, &kafka.topic, start, end)
}

/// The progress read through `client` (a [`group_client`], reused by a run).
fn progress_of(
    client: &BaseConsumer,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    end: Option<&BTreeMap<i32, i64>>,
) -> Result<Snapshot, ReplayError> {
    // A broker that is only slow (a read past its deadline) is asked again
    // for up to 30 s before the replay step fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    let positions = loop {
        match stream_aggregator::watchdog::positions(client, topic) {
            Ok(positions) => break positions,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "replay progress read retried");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(ReplayError::Kafka(error)),
        }
    };
    let mut snapshot = Snapshot {
        following: end.is_none(),
        ..Snapshot::default()
    };
    for p in positions {
        let Some(&from) = start.get(&p.partition) else {
            continue;
        };
        let until = end.map_or(p.high, |e| e.get(&p.partition).copied().unwrap_or(from));
        let at = p.committed.unwrap_or(from).clamp(from, until.max(from));
        snapshot.done += at - from;
        snapshot.total += until.max(from) - from;
        snapshot.partitions.push((p.partition, from, at, until));
    }
    Ok(snapshot)
}

/// Commits `positions` for `group` without joining it (the group must be
/// empty: a new replay's group is).
fn commit_start(
    kafka: &tally_common::kafka::KafkaConfig,
    group: &str,
    positions: &BTreeMap<i32, i64>,
) -> Result<(), ReplayError> {
    let client = group_client(kafka, group)?;
    let mut list = TopicPartitionList::new();
    for (p, o) in positions {
        list.add_partition_offset(&kafka.topic, *p, Offset::Offset(*o))?;
    }
    client.commit(&list, CommitMode::Sync)?;
    let committed = tally_common::kafka::patiently(|| {
        client.committed_offsets(list.clone(), Duration::from_secs(5))
    })?;
    for e in committed.elements() {
        let wanted = positions.get(&e.partition()).copied();
        if e.offset() != Offset::Offset(wanted.unwrap_or(-1)) {
            return Err(ReplayError::Kafka(format!(
                "the broker did not keep the start offset of partition {} for group {group} (reads {:?})",
                e.partition(),
                e.offset()
            )));
        }
    }
    Ok(())
}

/// Copies the live tombstones (deleted persons' ids) into the target prefix:
/// of `apps`, or of every app (a SCAN of the live keyspace) when `None`.
pub async fn copy_tombstones(
    redis: &Redis,
    live_prefix: &str,
    target_prefix: &str,
    apps: Option<&[String]>,
) -> Result<usize, ReplayError> {
    let keys = match apps {
        Some(apps) => apps
            .iter()
            .map(|app| identity_key(live_prefix, app, "tombstones"))
            .collect(),
        None => {
            redis
                .scan_match(&format!("{live_prefix}:id:*:tombstones"))
                .await?
        }
    };
    let mut copied = 0;
    for key in keys {
        let Some(rest) = key.strip_prefix(live_prefix) else {
            continue;
        };
        let target = format!("{target_prefix}{rest}");
        // Same hash tag ({app}) on both keys: one slot, one command.
        let _: i64 = redis::cmd("SUNIONSTORE")
            .arg(&target)
            .arg(&target)
            .arg(&key)
            .query_async(&mut redis.clone())
            .await?;
        copied += 1;
    }
    Ok(copied)
}

/// Apps with a person deletion recorded at or after `since_ms` (PostgreSQL
/// `person_deletions`; the query service writes the tombstones first, so
/// they exist once the row does).
async fn apps_deleted_since(pg: &Client, since_ms: i64) -> Result<Vec<String>, ReplayError> {
    let since = since_ms as f64 / 1000.0;
    Ok(pg
        .query(
            "SELECT DISTINCT app_id FROM person_deletions WHERE created_at >= to_timestamp($1)",
            &[&since],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

fn blocking_error(err: tokio::task::JoinError) -> ReplayError {
    ReplayError::Kafka(format!("broker task failed: {err}"))
}

/// Finds or creates the replay `options.name`; returns its catalog row.
pub async fn prepare(
    live: &stream_aggregator::Config,
    pg: &Client,
    options: &StartOptions,
) -> Result<Entry, ReplayError> {
    let target = Target::named(&options.name)?;
    let now_ms = tally_common::SystemClock.now_ms();
    if let Some(entry) = catalog::get(pg, &target.name).await? {
        if entry.state == catalog::state::FINISHED {
            return Err(ReplayError::State(format!(
                "replay {} already finished its range; `replay drop {0}` first to run it again",
                entry.name
            )));
        }
        let same = |given: &Option<String>, stored: Option<&str>| {
            given.as_deref().is_none_or(|g| Some(g) == stored)
        };
        if !same(&options.from, Some(&entry.from_text))
            || !same(&options.to, entry.to_text.as_deref())
        {
            return Err(ReplayError::State(format!(
                "replay {} exists with --from {}{}: omit --from/--to to resume it, or drop it",
                entry.name,
                entry.from_text,
                entry
                    .to_text
                    .as_deref()
                    .map(|t| format!(" --to {t}"))
                    .unwrap_or_default()
            )));
        }
        return Ok(entry);
    }
    let from_text = options.from.clone().ok_or_else(|| {
        ReplayError::Usage("a new replay needs --from <time | partition:offset,…>".into())
    })?;
    let from = Spec::parse(&from_text, now_ms)?;
    let to = options
        .to
        .as_deref()
        .map(|t| Spec::parse(t, now_ms))
        .transpose()?;
    let kafka = live.kafka.clone();
    let (from_at, to_at) = (
        match &from {
            Spec::Time(at) => Some(*at),
            Spec::Positions(_) => None,
        },
        match &to {
            Some(Spec::Time(at)) => Some(*at),
            _ => None,
        },
    );
    let retention_ms =
        tally_common::kafka::topic_retention_ms(&live.kafka.brokers, &live.kafka.topic)
            .await
            .map_err(|e| ReplayError::Kafka(e.to_string()))?;
    let (facts, found_from, found_to) = tokio::task::spawn_blocking(move || {
        let facts = plan::read_facts(&kafka)?;
        let found = |at: Option<i64>| match at {
            Some(at) => plan::offsets_for_time(&kafka, &facts, at),
            None => Ok(BTreeMap::new()),
        };
        let (from_found, to_found) = (found(from_at)?, found(to_at)?);
        Ok::<_, ReplayError>((facts, from_found, to_found))
    })
    .await
    .map_err(blocking_error)??;
    let topic = plan::Topic {
        partitions: facts,
        retention_ms,
    };
    let Plan { start, end } =
        plan::plan(&from, to.as_ref(), &topic, &found_from, &found_to, now_ms)?;
    let (kafka, group, positions) = (live.kafka.clone(), target.group_id.clone(), start.clone());
    tokio::task::spawn_blocking(move || commit_start(&kafka, &group, &positions))
        .await
        .map_err(blocking_error)??;
    let entry = Entry {
        name: target.name.clone(),
        topic: live.kafka.topic.clone(),
        from_text,
        to_text: options.to.clone(),
        start,
        end,
        reenrich: options.reenrich.to_text(),
        state: catalog::state::RUNNING.to_owned(),
        created_ms: now_ms,
        heartbeat_ms: Some(now_ms),
        done: 0,
        rate: 0.0,
        finished_ms: None,
    };
    if !catalog::insert(pg, &entry).await? {
        return Err(ReplayError::State(format!(
            "replay {} was created meanwhile by another command",
            entry.name
        )));
    }
    Ok(entry)
}

/// Overlap of consecutive tombstone checks (clock steps, commit delays).
const TOMBSTONE_MARGIN_MS: i64 = 5_000;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// A bounded replay reached its end.
    Finished(Snapshot),
    /// Stopped on request before the end (resume with `start --name`).
    Stopped(Snapshot),
}

/// Runs the replay `entry` until it finishes or `shutdown` resolves, calling
/// `progress` about once a second.
pub async fn run(
    live: &stream_aggregator::Config,
    pg: &Client,
    entry: &Entry,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: &mut (dyn FnMut(&Snapshot) + Send),
) -> Result<Ended, ReplayError> {
    let target = Target::named(&entry.name)?;
    if !catalog::try_lock(pg, &entry.name).await? {
        return Err(ReplayError::State(format!(
            "replay {} is running in another process",
            entry.name
        )));
    }
    let ran = run_locked(live, pg, entry, &target, addr, shutdown, progress).await;
    let unlocked = catalog::unlock(pg, &entry.name).await;
    let ended = ran?;
    unlocked?;
    Ok(ended)
}

async fn run_locked(
    live: &stream_aggregator::Config,
    pg: &Client,
    entry: &Entry,
    target: &Target,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
    progress: &mut (dyn FnMut(&Snapshot) + Send),
) -> Result<Ended, ReplayError> {
    if entry.topic != live.kafka.topic {
        return Err(ReplayError::State(format!(
            "replay {} reads topic {}, this configuration topic {}",
            entry.name, entry.topic, live.kafka.topic
        )));
    }
    let reenrich = super::reenrich::ReenrichOptions::parse_text(&entry.reenrich)?.build()?;
    let mut config = live.clone();
    config.addr = addr;
    config.group_id = target.group_id.clone();
    config.redis_prefix = target.redis_prefix.clone();
    config.clickhouse = target.clickhouse(&live.clickhouse);
    config.migrate = false;
    config.stop_at = entry.end.clone();
    config.reenrich = reenrich.map(|r| r as Arc<dyn stream_aggregator::message::Reenrich>);
    config
        .validate()
        .map_err(|e| ReplayError::Usage(e.to_string()))?;
    // One client for the run's progress reads (each second), not one per read.
    let client = Arc::new(group_client(&live.kafka, &target.group_id)?);
    let read = {
        let (topic, start, end) = (
            live.kafka.topic.clone(),
            Arc::new(entry.start.clone()),
            Arc::new(entry.end.clone()),
        );
        move || {
            let (client, topic, start, end) =
                (client.clone(), topic.clone(), start.clone(), end.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    progress_of(&client, &topic, &start, end.as_ref().as_ref())
                })
                .await
                .map_err(blocking_error)?
            }
        }
    };
    // The target's tables, migrated once before its aggregator and refresher start.
    tally_common::clickhouse::migrate(&config.clickhouse).await?;
    let first = read().await?;
    if first.reached_end() {
        catalog::finish(pg, &entry.name, first.done).await?;
        return Ok(Ended::Finished(first));
    }
    // Every live tombstone before the first message is processed (a new
    // replay and a resumed one alike); later only the apps with new deletions.
    let redis = Redis::connect(&live.redis_url).await?;
    let mut tombstones_since = tally_common::SystemClock.now_ms() - TOMBSTONE_MARGIN_MS;
    copy_tombstones(&redis, &live.redis_prefix, &target.redis_prefix, None).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ReplayError::Usage(format!("cannot listen on {addr}: {e}")))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    let mut aggregator = tokio::spawn(stream_aggregator::run(config, listener, async move {
        stopper.cancelled().await;
    }));
    // The report refresher of the target (its own scope: the target database),
    // so that its derived tables are filled as the live ones are.
    let refresher_stop = tokio_util::sync::CancellationToken::new();
    let refresher = {
        let mut config = report_refresher::Config::from_env()
            .map_err(|e| ReplayError::Usage(format!("report refresher settings: {e}")))?;
        config.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.clickhouse = target.clickhouse(&live.clickhouse);
        config.kafka = live.kafka.clone();
        config.aggregator_group = target.group_id.clone();
        config.migrate = false;
        config.interval = config.interval.min(Duration::from_secs(2));
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|e| ReplayError::Usage(format!("refresher listener: {e}")))?;
        let stopper = refresher_stop.clone();
        tokio::spawn(report_refresher::run(config, listener, async move {
            stopper.cancelled().await;
        }))
    };
    let requested = (stop.clone(), refresher_stop.clone());
    tokio::spawn(async move {
        shutdown.await;
        requested.0.cancel();
        requested.1.cancel();
    });
    let mut rate = Rate::default();
    let mut last = first;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut beat = Instant::now();
    let ended = loop {
        tokio::select! {
            finished = &mut aggregator => {
                let result = finished.map_err(|e| ReplayError::Aggregator(e.to_string()))?;
                result.map_err(|e| ReplayError::Aggregator(e.to_string()))?;
                // Stopped on request (or on its own after a clean stop).
                let end = read().await.unwrap_or(last.clone());
                if end.reached_end() && !refresher_stop.is_cancelled() {
                    // Let the refresher derive everything up to the end (≤ 2 min).
                    wait_derived(pg, &target.database, tally_common::SystemClock.now_ms()).await;
                }
                refresher_stop.cancel();
                if let Err(err) = refresher.await {
                    tracing::warn!(error = %err, "replay refresher task failed");
                }
                if end.reached_end() {
                    catalog::finish(pg, &entry.name, end.done).await?;
                    break Ended::Finished(end);
                }
                catalog::stopped(pg, &entry.name).await?;
                break Ended::Stopped(end);
            }
            _ = ticker.tick() => {
                match read().await {
                    Ok(mut now) => {
                        now.rate = rate.observe(now.done);
                        progress(&now);
                        last = now;
                    }
                    Err(err) => tracing::warn!(error = %err, "replay progress unreadable"),
                }
                if last.reached_end() {
                    stop.cancel();
                }
                if beat.elapsed() >= Duration::from_secs(2) {
                    beat = Instant::now();
                    if let Err(err) = catalog::heartbeat(pg, &entry.name, last.done, last.rate).await {
                        tracing::warn!(error = %err, "replay heartbeat not recorded");
                    }
                    let checked = tally_common::SystemClock.now_ms() - TOMBSTONE_MARGIN_MS;
                    let copied = match apps_deleted_since(pg, tombstones_since).await {
                        Ok(apps) if apps.is_empty() => Ok(0),
                        Ok(apps) => copy_tombstones(&redis, &live.redis_prefix, &target.redis_prefix, Some(&apps)).await,
                        Err(err) => Err(err),
                    };
                    match copied {
                        Ok(_) => tombstones_since = checked,
                        Err(err) => tracing::warn!(error = %err, "tombstones not copied"),
                    }
                }
            }
        }
    };
    Ok(ended)
}

/// Waits (at most two minutes) until the refresher of scope `database` has
/// committed a run that started after `after_ms` — after the aggregator's last
/// commit, so that run saw every row (rows are written before offsets are
/// committed).
async fn wait_derived(pg: &Client, database: &str, after_ms: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let after = after_ms as f64 / 1000.0;
    while Instant::now() < deadline {
        let done = pg
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM refresh_runs WHERE scope = $1 AND started_at > to_timestamp($2))",
                &[&database, &after],
            )
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::warn!(database, "the replay's refresher did not finish a run within 2 minutes; its next run (or `tally-admin refresh`) derives the rest");
}

/// Messages per second over the last ten seconds.
#[derive(Debug, Default)]
struct Rate {
    samples: std::collections::VecDeque<(Instant, i64)>,
}

impl Rate {
    fn observe(&mut self, done: i64) -> f64 {
        let now = Instant::now();
        self.samples.push_back((now, done));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(10))
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, d0)), Some((t1, d1))) if t1 > t0 => {
                (d1 - d0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
