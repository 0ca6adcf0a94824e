//! Concurrent writers against the real Redis: two processors (two processes
//! holding one Kafka partition for a moment, as during a rebalance) race on the
//! same partition's state, and the real compare-and-set Lua scripts of
//! `stream_aggregator::live::RedisLive` refuse the stale writer, which the
//! processor reports as [`AggregatorError::Conflict`]. Retried as the consumer
//! retries (same processor, same pending batch), the stale writer then
//! converges to exactly-once counts.
//!
//! Needs the local Redis (`TALLY_TEST_REDIS`, default `redis://127.0.0.1:6379`);
//! every test uses its own key prefix and deletes its keys. ClickHouse is an
//! in-memory [`RawSink`] shared by both writers: the conflicts are Redis's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use stream_aggregator::config::Fault;
use stream_aggregator::dedup::SeenId;
use stream_aggregator::identity::Change;
use stream_aggregator::live::{
    Claimed, LiveStore, RedisLive, StoredVisitor, Unit, UnitState, UnitWrite, VisitorWrite,
};
use stream_aggregator::processor::{Message, Pending, Processor, Settings};
use stream_aggregator::raw::{RawSink, SessionLookup, Watermark};
use stream_aggregator::AggregatorError;
use tally_common::redis_conn::Redis;
use tally_schemas::live::{shard_of, visitor_key, window_key, window_start, WindowSnapshot};
use tally_schemas::person::{IdentityEvent, PersonDistinctIdRow, PersonRow};
use tally_schemas::row::EventRow;
use tally_schemas::session::SessionRow;
use tally_schemas::Envelope;

/// The wall clock of these tests; every event is in the window starting here.
const NOW_MS: i64 = 1_800_000_000_000;

/// The ClickHouse of both writers, in memory (atomic inserts, like ClickHouse).
#[derive(Debug, Clone, Default)]
struct SharedRaw {
    rows: Arc<Mutex<Vec<EventRow>>>,
    sessions: Arc<Mutex<Vec<SessionRow>>>,
}

impl RawSink for SharedRaw {
    async fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<Watermark>, clickhouse::error::Error> {
        let mut marks: BTreeMap<(u16, u16), i64> = BTreeMap::new();
        for row in self.rows.lock().unwrap().iter() {
            if row.kafka_topic == topic && i64::from(row.kafka_partition) == i64::from(partition) {
                let mark = marks
                    .entry((row.retention_days, row.event_date))
                    .or_insert(-1);
                *mark = (*mark).max(row.kafka_offset as i64);
            }
        }
        Ok(marks
            .into_iter()
            .map(|((retention_days, event_date), offset)| Watermark {
                shard: 0,
                retention_days,
                event_date,
                offset,
            })
            .collect())
    }

    async fn insert(&self, _shard: u16, rows: &[EventRow]) -> Result<(), clickhouse::error::Error> {
        self.rows.lock().unwrap().extend_from_slice(rows);
        Ok(())
    }

    async fn recent_ids(
        &self,
        topic: &str,
        partition: i32,
        since_secs: i64,
    ) -> Result<Vec<SeenId>, clickhouse::error::Error> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.kafka_topic == topic && i64::from(r.kafka_partition) == i64::from(partition)
            })
            .filter(|r| i64::from(r.received_at) >= since_secs)
            .map(|r| SeenId {
                app_id: r.app_id.clone(),
                distinct_id: r.distinct_id.clone(),
                event_id: r.event_id.clone(),
                offset: r.kafka_offset as i64,
                received_secs: i64::from(r.received_at),
            })
            .collect())
    }

    async fn insert_sessions(&self, rows: &[SessionRow]) -> Result<(), clickhouse::error::Error> {
        self.sessions.lock().unwrap().extend_from_slice(rows);
        Ok(())
    }

    async fn sessions_near(
        &self,
        lookups: &[SessionLookup],
    ) -> Result<Vec<SessionRow>, clickhouse::error::Error> {
        // As FINAL does: the highest version of each session, then the filters.
        let mut latest: BTreeMap<String, SessionRow> = BTreeMap::new();
        for row in self.sessions.lock().unwrap().iter() {
            let newer = latest
                .get(&row.session_id)
                .is_none_or(|held| held.version <= row.version);
            if newer {
                latest.insert(row.session_id.clone(), row.clone());
            }
        }
        Ok(latest
            .into_values()
            .filter(|row| lookups.iter().any(|l| l.finds(row)))
            .collect())
    }

    async fn insert_arrivals(
        &self,
        _shard: u16,
        _rows: &[tally_schemas::row::ArrivalRow],
    ) -> Result<(), clickhouse::error::Error> {
        Ok(())
    }

    async fn insert_persons(
        &self,
        _ids: &[PersonDistinctIdRow],
        _persons: &[PersonRow],
    ) -> Result<(), clickhouse::error::Error> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), clickhouse::error::Error> {
        Ok(())
    }
}

/// Another writer's work, run at the moment a read is overtaken.
type Overtake = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which read of an [`Overtaken`] store the other writer overtakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The first read of window units.
    UnitRead,
    /// The `n`-th read of visitor states (1-based).
    VisitorRead(usize),
}

/// A [`LiveStore`] one of whose reads is overtaken: right after the real
/// read, before the reader can write, `overtake` runs to completion.
struct Overtaken {
    inner: RedisLive,
    overtake: Mutex<Option<Overtake>>,
    at: At,
    visitor_reads: Mutex<usize>,
}

impl Overtaken {
    fn new(inner: RedisLive, overtake: Overtake, at: At) -> Self {
        Overtaken {
            inner,
            overtake: Mutex::new(Some(overtake)),
            at,
            visitor_reads: Mutex::new(0),
        }
    }

    async fn overtake_if(&self, now: At) {
        if now != self.at {
            return;
        }
        let overtake = self.overtake.lock().unwrap().take();
        if let Some(overtake) = overtake {
            overtake.await;
        }
    }
}

impl LiveStore for Overtaken {
    async fn read(&self, units: &[Unit]) -> Result<Vec<UnitState>, redis::RedisError> {
        let states = self.inner.read(units).await?;
        self.overtake_if(At::UnitRead).await;
        Ok(states)
    }

    async fn apply(&self, writes: &[UnitWrite]) -> Result<Vec<Unit>, redis::RedisError> {
        self.inner.apply(writes).await
    }

    async fn read_visitors(
        &self,
        keys: &[String],
    ) -> Result<Vec<StoredVisitor>, redis::RedisError> {
        let states = self.inner.read_visitors(keys).await?;
        let n = {
            let mut reads = self.visitor_reads.lock().unwrap();
            *reads += 1;
            *reads
        };
        self.overtake_if(At::VisitorRead(n)).await;
        Ok(states)
    }

    async fn write_visitors(
        &self,
        writes: &[VisitorWrite],
    ) -> Result<Vec<String>, redis::RedisError> {
        self.inner.write_visitors(writes).await
    }

    async fn claim_raw(
        &self,
        keys: &[String],
        token: &str,
        ttl_ms: u64,
    ) -> Result<Vec<Claimed>, redis::RedisError> {
        self.inner.claim_raw(keys, token, ttl_ms).await
    }

    async fn release_raw(
        &self,
        releases: &[(String, Option<Vec<u8>>)],
        token: &str,
    ) -> Result<Vec<String>, redis::RedisError> {
        self.inner.release_raw(releases, token).await
    }

    async fn apply_identity(
        &self,
        prefix: &str,
        events: &[IdentityEvent],
    ) -> Result<Vec<Change>, redis::RedisError> {
        self.inner.apply_identity(prefix, events).await
    }

    async fn tombstoned(
        &self,
        prefix: &str,
        ids: &[(&str, &str)],
    ) -> Result<Vec<bool>, redis::RedisError> {
        self.inner.tombstoned(prefix, ids).await
    }

    async fn ping(&self) -> Result<(), redis::RedisError> {
        self.inner.ping().await
    }
}

/// This test's Redis keys (`{prefix}:*`), deleted when dropped (a failed test too).
struct Keys {
    client: redis::Client,
    prefix: String,
}

impl Keys {
    fn new() -> Self {
        Keys {
            client: redis::Client::open(tally_testkit::redis_url()).unwrap(),
            prefix: tally_testkit::unique("conflict"),
        }
    }

    /// A new connection (one per simulated process).
    async fn connect(&self) -> Redis {
        ConnectionManager::new(self.client.clone())
            .await
            .map(Redis::Server)
            .unwrap_or_else(|err| panic!("Redis at {}: {err}", tally_testkit::redis_url()))
    }

    fn settings(&self) -> Settings {
        Settings {
            topic: "events".into(),
            prefix: self.prefix.clone(),
            allowed_lateness_ms: 30_000,
            fault: Fault::None,
            dedup_window_secs: 900,
            visitor_ttl_ms: 48 * 3_600_000,
            clock: Arc::new(tally_common::ManualClock::at(NOW_MS + 60_000)),
        }
    }

    /// The events total of app `a`'s window (partition 0's shard) as stored.
    async fn window_total(&self) -> u64 {
        let key = window_key(&self.prefix, "a", NOW_MS, shard_of(0));
        let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.connect().await)
            .await
            .unwrap();
        WindowSnapshot::from_fields(NOW_MS, fields).unwrap().total
    }

    /// The stored guard of visitor `distinct_id` of app `a`.
    async fn guard(&self, distinct_id: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(visitor_key(&self.prefix, "a", distinct_id))
            .arg("g")
            .query_async(&mut self.connect().await)
            .await
            .unwrap()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(mut connection) = self.client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut connection)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut connection);
        }
    }
}

/// `n` page views of app `a` on partition 0 (offsets 0..n), visitor `u{i}`,
/// all in the window starting at [`NOW_MS`].
fn messages(n: i64) -> Vec<Message> {
    assert_eq!(window_start(NOW_MS), NOW_MS);
    (0..n)
        .map(|i| {
            let ts = NOW_MS + i * 100;
            Message {
                partition: 0,
                offset: i,
                envelope: Envelope {
                    event_id: format!("e{i}"),
                    app_id: "a".into(),
                    name: "page_view".into(),
                    distinct_id: format!("u{i}"),
                    user_id: None,
                    anonymous_id: None,
                    timestamp_ms: ts,
                    received_at_ms: ts,
                    sent_at_ms: None,
                    ip: None,
                    user_agent: None,
                    properties: Default::default(),
                    enrichment: Default::default(),
                    retention_days: 0,
                },
            }
        })
        .collect()
}

fn pending(messages: &[Message]) -> Pending {
    let mut pending = Pending::default();
    for message in messages {
        pending.push(message.clone());
    }
    pending
}

/// Each stored event id, sorted (repeats would show twice).
fn row_ids(raw: &SharedRaw) -> Vec<String> {
    let mut ids: Vec<String> = raw
        .rows
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.event_id.clone())
        .collect();
    ids.sort();
    ids
}

fn all_ids(n: i64) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    ids.sort();
    ids
}

/// A second writer advances the partition's window unit between the first
/// writer's read and its compare-and-set: the window script refuses the stale
/// write and the processor reports the window as a conflict. Retried, the
/// stale writer's visitor states (read before the other writer stored its
/// own) are refused too, and the next retry, from re-read states, stores each
/// event once.
#[tokio::test]
async fn concurrent_writer_is_reported_as_conflict() {
    let keys = Keys::new();
    let all = messages(10);
    let raw = SharedRaw::default();

    // The other writer: a process that took over the partition and writes its
    // first five messages completely.
    let mut other = Processor::new(
        raw.clone(),
        RedisLive::new(keys.connect().await, 600),
        keys.settings(),
    );
    let first_five = all[..5].to_vec();
    let overtake: Overtake = Box::pin(async move {
        let outcome = other.apply(&first_five).await.unwrap();
        assert_eq!((outcome.live_written, outcome.raw_written), (5, 5));
    });
    let live = Overtaken::new(
        RedisLive::new(keys.connect().await, 600),
        overtake,
        At::UnitRead,
    );
    let mut stale = Processor::new(raw.clone(), live, keys.settings());
    let mut batch = pending(&all);

    let err = stale.apply_live(&mut batch).await.unwrap_err();
    let window = window_key(&keys.prefix, "a", NOW_MS, shard_of(0));
    assert!(
        matches!(&err, AggregatorError::Conflict(key) if *key == window),
        "{err:?}"
    );
    assert_eq!(err.reason(), "conflict");
    // The refused write left nothing: only the other writer's five count.
    assert_eq!(keys.window_total().await, 5);

    // The consumer retries the same batch: the window is re-read (the five
    // stored are skipped), but the visitor states this writer read before the
    // other one wrote them are stale, so their compare-and-set is refused
    // (the others, u5…u9, are written).
    let err = stale.apply_all(&mut batch).await.unwrap_err();
    let first_visitor = visitor_key(&keys.prefix, "a", "u0");
    assert!(
        matches!(&err, AggregatorError::Conflict(key) if *key == first_visitor),
        "{err:?}"
    );

    // The next retry re-reads the visitor states and goes through.
    let outcome = stale.apply_all(&mut batch).await.unwrap();
    assert_eq!((outcome.raw_written, outcome.raw_skipped), (0, 10));
    assert_eq!(keys.window_total().await, 10);
    assert_eq!(row_ids(&raw), all_ids(10));
    assert_eq!(keys.guard("u7").await.as_deref(), Some("0:7"));
}

/// A second writer stores visitor states between the first writer's live
/// step (which read them) and its full step (which writes them): the visitor
/// script refuses the stale states and the processor reports the visitor as a
/// conflict; the retry re-reads them and stores each event once.
#[tokio::test]
async fn concurrent_visitor_writer_is_reported_as_conflict() {
    let keys = Keys::new();
    let all = messages(6);
    let raw = SharedRaw::default();
    let mut stale = Processor::new(
        raw.clone(),
        RedisLive::new(keys.connect().await, 600),
        keys.settings(),
    );
    let mut batch = pending(&all[..4]);
    let outcome = stale.apply_live(&mut batch).await.unwrap();
    assert_eq!(outcome.live_written, 4);

    // The other writer replays the whole partition meanwhile: the window
    // offsets skip what the first one made live, the rest is its own.
    let mut other = Processor::new(
        raw.clone(),
        RedisLive::new(keys.connect().await, 600),
        keys.settings(),
    );
    let outcome = other.apply(&all).await.unwrap();
    assert_eq!((outcome.live_skipped, outcome.live_written), (4, 2));
    assert_eq!(keys.guard("u0").await.as_deref(), Some("0:0"));

    let err = stale.apply_all(&mut batch).await.unwrap_err();
    let first_visitor = visitor_key(&keys.prefix, "a", "u0");
    assert!(
        matches!(&err, AggregatorError::Conflict(key) if *key == first_visitor),
        "{err:?}"
    );

    let outcome = stale.apply_all(&mut batch).await.unwrap();
    assert_eq!(outcome.raw_written, 0);
    assert_eq!(keys.window_total().await, 6);
    assert_eq!(row_ids(&raw), all_ids(6));
}

/// A late event of a visitor whose state expired from Redis touches a session
/// stored long ago: reviving it re-reads the visitor's state, and another
/// writer (a process that took over the partition) stored that state between
/// the first read and the re-read. The revival is refused as a conflict; the
/// retry must read the held states afresh (a retry that kept the stale guard
/// met the same conflict for ever, with consumption paused), and then stores
/// each event once, in one session.
#[tokio::test]
async fn a_conflict_while_reviving_a_cold_session_is_retried_from_fresh_states() {
    let keys = Keys::new();
    let raw = SharedRaw::default();
    // Three days old: older than the visitor TTL (48 h) plus the 24 h an
    // event's time may run ahead, so an absent state means "look it up".
    let old = NOW_MS - 3 * 86_400_000;
    let mut late = messages(2);
    for (message, ts) in late.iter_mut().zip([old, old + 60_000]) {
        message.envelope.distinct_id = "u0".into();
        message.envelope.timestamp_ms = ts;
    }

    // Long ago the first event was stored with its session; the visitor's
    // state has expired from Redis since.
    let mut earlier = Processor::new(
        raw.clone(),
        RedisLive::new(keys.connect().await, 600),
        keys.settings(),
    );
    earlier.apply(&late[..1]).await.unwrap();
    assert_eq!(raw.sessions.lock().unwrap().len(), 1);
    let state = visitor_key(&keys.prefix, "a", "u0");
    let _: () = redis::cmd("DEL")
        .arg(&state)
        .query_async(&mut keys.connect().await)
        .await
        .unwrap();

    // The other writer handles the second event completely (reviving the
    // stored session) while this writer is between its two reads.
    let mut other = Processor::new(
        raw.clone(),
        RedisLive::new(keys.connect().await, 600),
        keys.settings(),
    );
    let second = late[1..].to_vec();
    let overtake: Overtake = Box::pin(async move {
        let outcome = other.apply(&second).await.unwrap();
        assert_eq!(outcome.raw_written, 1);
    });
    let live = Overtaken::new(
        RedisLive::new(keys.connect().await, 600),
        overtake,
        At::VisitorRead(2),
    );
    let mut stale = Processor::new(raw.clone(), live, keys.settings());
    let mut batch = pending(&late[1..]);

    let err = stale.apply_live(&mut batch).await.unwrap_err();
    assert!(
        matches!(&err, AggregatorError::Conflict(key) if *key == state),
        "{err:?}"
    );
    assert_eq!(keys.guard("u0").await.as_deref(), Some("0:1"));

    // The consumer retries the same batch: the states are read afresh, the
    // event is seen as handled, and nothing is stored twice.
    stale.apply_live(&mut batch).await.unwrap();
    let outcome = stale.apply_all(&mut batch).await.unwrap();
    assert_eq!((outcome.raw_written, outcome.raw_skipped), (0, 1));
    let mut ids = row_ids(&raw);
    ids.dedup();
    assert_eq!(ids, all_ids(2));
    assert_eq!(row_ids(&raw).len(), 2);
    // Both events belong to the one revived session.
    let sessions = raw.sessions.lock().unwrap().clone();
    let newest = sessions.iter().max_by_key(|row| row.version).unwrap();
    assert_eq!(
        (newest.events, newest.start_ms, newest.end_ms),
        (2, old as u64, old as u64 + 60_000)
    );
    assert!(sessions
        .iter()
        .all(|row| row.session_id == newest.session_id));
}
