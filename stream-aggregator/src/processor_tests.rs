//! Unit tests of the exactly-once logic with in-memory stores that follow the
//! same contracts as ClickHouse (atomic inserts) and Redis (per-unit CAS).
//! Concurrent writers refused by the real Redis scripts: `tests/conflicts.rs`.

use super::*;
use crate::dedup::SeenId;
use crate::identity::{Change, Identities};
use crate::live::{Claimed, StoredVisitor, UnitState, VisitorWrite, ANY_GUARD};
use crate::live::{Unit, UnitWrite, ANY_OFFSET};
use crate::raw::Watermark;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tally_schemas::live::WindowSnapshot;
use tally_schemas::live::{shard_of, window_key, window_start};
use tally_schemas::person::{IdentityEvent, PersonDistinctIdRow, PersonRow};
use tally_schemas::row::EventRow;
use tally_schemas::session::SessionRow;
use tally_schemas::Envelope;

#[derive(Debug, Default)]
struct MemRaw {
    rows: Mutex<Vec<EventRow>>,
    sessions: Mutex<Vec<SessionRow>>,
    person_ids: Mutex<Vec<PersonDistinctIdRow>>,
    persons: Mutex<Vec<PersonRow>>,
    /// Fail the insert whose 1-based call number equals this (0 = never).
    fail_on_call: AtomicUsize,
    calls: AtomicUsize,
    /// The (shard, class, day)s of each insert that succeeded.
    inserted_slots: Mutex<Vec<std::collections::BTreeSet<(u16, u16, u16)>>>,
    /// Shards of a cluster (0 or 1: one server), placed as `crate::shards` does.
    shards: u16,
}

impl RawSink for MemRaw {
    fn shard_of(&self, app_id: &str, distinct_id: &str) -> u16 {
        let hash = tally_schemas::cluster::shard_hash(&[app_id, distinct_id]);
        (hash % u64::from(self.shards.max(1))) as u16
    }

    async fn watermarks(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<Watermark>, clickhouse::error::Error> {
        let mut marks: HashMap<(u16, u16, u16), i64> = HashMap::new();
        for row in self.rows.lock().unwrap().iter() {
            if row.kafka_topic == topic && row.kafka_partition == partition as u32 {
                let shard = self.shard_of(&row.app_id, &row.distinct_id);
                let mark = marks
                    .entry((shard, row.retention_days, row.event_date))
                    .or_insert(-1);
                *mark = (*mark).max(row.kafka_offset as i64);
            }
        }
        Ok(marks
            .into_iter()
            .map(|((shard, retention_days, event_date), offset)| Watermark {
                shard,
                retention_days,
                event_date,
                offset,
            })
            .collect())
    }

    async fn insert(&self, shard: u16, rows: &[EventRow]) -> Result<(), clickhouse::error::Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.fail_on_call.load(Ordering::SeqCst) {
            return Err(clickhouse::error::Error::Custom("injected".into()));
        }
        assert!(
            rows.iter()
                .all(|r| self.shard_of(&r.app_id, &r.distinct_id) == shard),
            "an insert holds rows of its shard only"
        );
        self.rows.lock().unwrap().extend_from_slice(rows);
        let slots = rows
            .iter()
            .map(|r| (shard, r.retention_days, r.event_date))
            .collect();
        self.inserted_slots.lock().unwrap().push(slots);
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
            .filter(|r| r.kafka_topic == topic && r.kafka_partition == partition as u32)
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
        lookups: &[crate::raw::SessionLookup],
    ) -> Result<Vec<SessionRow>, clickhouse::error::Error> {
        // FINAL (the highest version of each session), then the filters.
        let latest = final_sessions(self);
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
        ids: &[PersonDistinctIdRow],
        persons: &[PersonRow],
    ) -> Result<(), clickhouse::error::Error> {
        self.person_ids.lock().unwrap().extend_from_slice(ids);
        self.persons.lock().unwrap().extend_from_slice(persons);
        Ok(())
    }

    async fn ping(&self) -> Result<(), clickhouse::error::Error> {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct MemLive {
    hashes: Mutex<HashMap<String, HashMap<String, Vec<u8>>>>,
    visitors: Mutex<HashMap<String, (String, Vec<u8>)>>,
    claims: Mutex<HashMap<String, MemClaim>>,
    /// Identity state per (prefix, app).
    identities: Mutex<HashMap<(String, String), Identities>>,
    /// Fail the visitor write whose 1-based call number equals this (0 = never).
    fail_visitors_on_call: AtomicUsize,
    visitor_calls: AtomicUsize,
}

/// A raw claim: (holder, marks, clean).
type MemClaim = (Option<String>, Vec<u8>, bool);

impl LiveStore for MemLive {
    async fn read(&self, units: &[Unit]) -> Result<Vec<UnitState>, redis::RedisError> {
        let hashes = self.hashes.lock().unwrap();
        Ok(units
            .iter()
            .map(|unit| {
                let hash = hashes.get(&unit.key);
                let field = |name: String| hash.and_then(|h| h.get(&name)).cloned();
                UnitState {
                    offset: field(format!("p{}:off", unit.partition))
                        .map_or(-1, |v| String::from_utf8(v).unwrap().parse().unwrap()),
                    sketch: field(format!("p{}:hll", unit.partition)),
                    sessions: field(format!("p{}:ses", unit.partition)),
                }
            })
            .collect())
    }

    async fn apply(&self, writes: &[UnitWrite]) -> Result<Vec<Unit>, redis::RedisError> {
        let mut hashes = self.hashes.lock().unwrap();
        let mut conflicts = Vec::new();
        for write in writes {
            let p = write.unit.partition;
            let hash = hashes.entry(write.unit.key.clone()).or_default();
            let current = hash.get(&format!("p{p}:off")).map_or(-1, |v| {
                String::from_utf8(v.clone()).unwrap().parse().unwrap()
            });
            if current != write.expected_offset && write.expected_offset != ANY_OFFSET {
                conflicts.push(write.unit.clone());
                continue;
            }
            let mut incr = |field: String, by: u64| {
                let old: u64 = hash.get(&field).map_or(0, |v| {
                    String::from_utf8(v.clone()).unwrap().parse().unwrap()
                });
                hash.insert(field, (old + by).to_string().into_bytes());
            };
            incr(format!("p{p}:n"), write.total);
            for (name, count) in &write.by_name {
                incr(format!("p{p}:e:{name}"), *count);
            }
            hash.insert(
                format!("p{p}:off"),
                write.new_offset.to_string().into_bytes(),
            );
            hash.insert(format!("p{p}:hll"), write.sketch.clone());
            hash.insert(format!("p{p}:ses"), write.sessions.clone());
        }
        Ok(conflicts)
    }

    async fn claim_raw(
        &self,
        keys: &[String],
        token: &str,
        _ttl_ms: u64,
    ) -> Result<Vec<Claimed>, redis::RedisError> {
        let mut claims = self.claims.lock().unwrap();
        Ok(keys
            .iter()
            .map(|key| {
                let entry = claims.entry(key.clone()).or_default();
                match &entry.0 {
                    Some(holder) if holder != token => Claimed::Busy,
                    held => {
                        let clean = held.is_none() && entry.2;
                        entry.0 = Some(token.to_owned());
                        entry.2 = false;
                        if clean {
                            Claimed::Clean(entry.1.clone())
                        } else {
                            Claimed::Unknown
                        }
                    }
                }
            })
            .collect())
    }

    async fn release_raw(
        &self,
        releases: &[(String, Option<Vec<u8>>)],
        token: &str,
    ) -> Result<Vec<String>, redis::RedisError> {
        let mut claims = self.claims.lock().unwrap();
        let mut lost = Vec::new();
        for (key, marks) in releases {
            let entry = claims.entry(key.clone()).or_default();
            if entry.0.as_deref() != Some(token) {
                lost.push(key.clone());
                continue;
            }
            if let Some(marks) = marks {
                (entry.1, entry.2) = (marks.clone(), true);
            }
            entry.0 = None;
        }
        Ok(lost)
    }

    async fn read_visitors(
        &self,
        keys: &[String],
    ) -> Result<Vec<StoredVisitor>, redis::RedisError> {
        let visitors = self.visitors.lock().unwrap();
        Ok(keys.iter().map(|key| visitors.get(key).cloned()).collect())
    }

    async fn write_visitors(
        &self,
        writes: &[VisitorWrite],
    ) -> Result<Vec<String>, redis::RedisError> {
        let call = self.visitor_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.fail_visitors_on_call.load(Ordering::SeqCst) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "injected",
            )));
        }
        let mut visitors = self.visitors.lock().unwrap();
        let mut conflicts = Vec::new();
        for write in writes {
            let current = visitors
                .get(&write.key)
                .map(|(g, _)| g.clone())
                .unwrap_or_default();
            if current != write.expected_guard && write.expected_guard != ANY_GUARD {
                conflicts.push(write.key.clone());
                continue;
            }
            visitors.insert(
                write.key.clone(),
                (write.new_guard.clone(), write.state.clone()),
            );
        }
        Ok(conflicts)
    }

    async fn apply_identity(
        &self,
        prefix: &str,
        events: &[IdentityEvent],
    ) -> Result<Vec<Change>, redis::RedisError> {
        let mut identities = self.identities.lock().unwrap();
        Ok(events
            .iter()
            .map(|event| {
                identities
                    .entry((prefix.to_owned(), event.app_id.clone()))
                    .or_default()
                    .apply(event)
            })
            .collect())
    }

    async fn tombstoned(
        &self,
        prefix: &str,
        ids: &[(&str, &str)],
    ) -> Result<Vec<bool>, redis::RedisError> {
        let identities = self.identities.lock().unwrap();
        Ok(ids
            .iter()
            .map(|(app, id)| {
                identities
                    .get(&(prefix.to_owned(), (*app).to_owned()))
                    .is_some_and(|i| i.is_deleted(id))
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), redis::RedisError> {
        Ok(())
    }
}

fn settings() -> Settings {
    Settings {
        topic: "t".into(),
        prefix: "x".into(),
        allowed_lateness_ms: 30_000,
        fault: Fault::None,
        dedup_window_secs: 900,
        visitor_ttl_ms: 48 * 3_600_000,
        clock: std::sync::Arc::new(tally_common::ManualClock::at(NOW_MS)),
    }
}

/// The wall clock of these tests: after every generated event.
const NOW_MS: i64 = 1_800_000_000_000;

/// An event with no properties or enrichment; `times` = (event, received).
fn envelope(
    event_id: String,
    app_id: &str,
    name: &str,
    distinct_id: String,
    (timestamp_ms, received_at_ms): (i64, i64),
) -> Envelope {
    Envelope {
        event_id,
        app_id: app_id.into(),
        name: name.into(),
        distinct_id,
        user_id: None,
        anonymous_id: None,
        timestamp_ms,
        received_at_ms,
        sent_at_ms: None,
        ip: None,
        user_agent: None,
        properties: Default::default(),
        enrichment: Default::default(),
        retention_days: 0,
    }
}

/// `n` messages over `partitions` partitions, spread over two days and several windows.
fn messages(n: usize, partitions: i32) -> Vec<Message> {
    let mut next_offset = vec![0i64; partitions as usize];
    (0..n)
        .map(|i| {
            let partition = (i % partitions as usize) as i32;
            let offset = next_offset[partition as usize];
            next_offset[partition as usize] += 1;
            // Around midnight of day 20000 so batches span two table partitions.
            let timestamp_ms = 20_000 * 86_400_000 - 30_000 + (i as i64 * 997) % 60_000;
            Message {
                partition,
                offset,
                envelope: envelope(
                    format!("e{i}"),
                    if i % 3 == 0 { "a" } else { "b" },
                    if i % 2 == 0 { "page_view" } else { "click" },
                    format!("u{}", i % 17),
                    (timestamp_ms, timestamp_ms),
                ),
            }
        })
        .collect()
}

fn live_totals(live: &MemLive) -> BTreeMap<String, (u64, BTreeMap<String, u64>, u64)> {
    let hashes = live.hashes.lock().unwrap();
    hashes
        .iter()
        .map(|(key, fields)| {
            let mut snapshot =
                WindowSnapshot::from_fields(0, fields.iter().map(|(k, v)| (k.clone(), v.clone())))
                    .unwrap();
            let users = snapshot.users.estimate();
            (key.clone(), (snapshot.total, snapshot.by_name, users))
        })
        .collect()
}

/// `n` messages over 3 partitions in which every 7th repeats (a client retry)
/// the message 3 positions earlier (same partition), received a second later.
fn with_retries(n: usize) -> Vec<Message> {
    let mut all = messages(n, 3);
    for i in (7..n).step_by(7) {
        let (partition, offset) = (all[i].partition, all[i].offset);
        all[i] = all[i - 3].clone();
        all[i].envelope.received_at_ms += 1_000;
        (all[i].partition, all[i].offset) = (partition, offset);
    }
    all
}

/// The sessions table as a reader sees it: highest version per session, dropped ones left out.
fn final_sessions(raw: &MemRaw) -> BTreeMap<(String, String, String), SessionRow> {
    let mut latest: BTreeMap<(String, String, String), SessionRow> = BTreeMap::new();
    for row in raw.sessions.lock().unwrap().iter() {
        let key = (
            row.app_id.clone(),
            row.distinct_id.clone(),
            row.session_id.clone(),
        );
        if latest
            .get(&key)
            .is_none_or(|old| old.version <= row.version)
        {
            latest.insert(key, row.clone());
        }
    }
    latest.retain(|_, row| row.dropped == 0);
    latest
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn row_ids(raw: &MemRaw) -> Vec<String> {
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

#[test]
fn applying_twice_changes_nothing() {
    run(async {
        let all = messages(200, 3);
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        let first = processor.apply(&all).await.unwrap();
        assert_eq!((first.raw_written, first.live_written), (200, 200));
        let once = live_totals(processor.live());
        let again = processor.apply(&all).await.unwrap();
        assert_eq!((again.raw_written, again.raw_skipped), (0, 200));
        assert_eq!((again.live_written, again.live_skipped), (0, 200));
        assert_eq!(live_totals(processor.live()), once);
        assert_eq!(row_ids(processor.raw()).len(), 200);
        let total: u64 = once.values().map(|(n, _, _)| n).sum();
        assert_eq!(total, 200);
    });
}

#[test]
fn failed_insert_then_retry_from_a_fresh_process_stores_each_row_once() {
    run(async {
        let all = messages(120, 2);
        let raw = MemRaw::default();
        raw.fail_on_call.store(2, Ordering::SeqCst); // second day's insert fails
        let mut processor = Processor::new(raw, MemLive::default(), settings());
        assert!(processor.apply(&all).await.is_err());
        // Retry in the same process, then a "restarted" process replays everything.
        processor.apply(&all).await.unwrap();
        let Processor { raw, live, .. } = processor;
        let mut restarted = Processor::new(raw, live, settings());
        let replay = restarted.apply(&all).await.unwrap();
        assert_eq!(replay.raw_written, 0);
        let expected: Vec<String> = {
            let mut ids: Vec<String> = all.iter().map(|m| m.envelope.event_id.clone()).collect();
            ids.sort();
            ids
        };
        assert_eq!(row_ids(restarted.raw()), expected);
    });
}

#[test]
fn rows_of_two_retention_classes_are_inserted_per_table_partition() {
    run(async {
        // App `a` keeps 30 days, `b` the default: each day holds two classes,
        // so two table partitions, each written by its own all-or-nothing insert.
        let mut all = messages(120, 2);
        for message in &mut all {
            if message.envelope.app_id == "a" {
                message.envelope.retention_days = 30;
            }
        }
        let raw = MemRaw::default();
        raw.fail_on_call.store(3, Ordering::SeqCst);
        let mut processor = Processor::new(raw, MemLive::default(), settings());
        assert!(processor.apply(&all).await.is_err());
        processor.apply(&all).await.unwrap();
        let Processor { raw, live, .. } = processor;
        let mut restarted = Processor::new(raw, live, settings());
        assert_eq!(restarted.apply(&all).await.unwrap().raw_written, 0);
        let slots = restarted.raw().inserted_slots.lock().unwrap().clone();
        assert!(slots.iter().all(|s| s.len() == 1), "{slots:?}");
        let distinct: std::collections::BTreeSet<_> = slots.iter().flatten().collect();
        assert_eq!(distinct.len(), 4, "2 classes × 2 days: {distinct:?}");
        let mut expected: Vec<(String, u16)> = all
            .iter()
            .map(|m| (m.envelope.event_id.clone(), m.envelope.retention_days))
            .collect();
        expected.sort();
        let mut stored: Vec<(String, u16)> = restarted
            .raw()
            .rows
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.event_id.clone(), r.retention_days))
            .collect();
        stored.sort();
        assert_eq!(stored, expected, "every row once, with its class");
        // The sessions carry the class of the event that opened them.
        assert!(final_sessions(restarted.raw())
            .values()
            .all(|row| row.retention_days == if row.app_id == "a" { 30 } else { 0 }));
    });
}

#[test]
fn on_a_cluster_each_shard_is_its_own_prefix_and_a_failure_between_shards_is_not_repeated() {
    run(async {
        // Two shards, two days: four inserts per batch; the third fails after
        // two have landed, so the shards' stored prefixes differ.
        let all = messages(160, 2);
        let raw = MemRaw {
            shards: 2,
            ..MemRaw::default()
        };
        raw.fail_on_call.store(3, Ordering::SeqCst);
        let mut processor = Processor::new(raw, MemLive::default(), settings());
        assert!(processor.apply(&all).await.is_err());
        let stored_before = row_ids(processor.raw()).len();
        assert!(stored_before > 0 && stored_before < 160, "{stored_before}");
        processor.apply(&all).await.unwrap();
        let Processor { raw, live, .. } = processor;
        let mut restarted = Processor::new(raw, live, settings());
        assert_eq!(restarted.apply(&all).await.unwrap().raw_written, 0);
        let mut expected: Vec<String> = all.iter().map(|m| m.envelope.event_id.clone()).collect();
        expected.sort();
        assert_eq!(row_ids(restarted.raw()), expected, "every row once");
        let slots = restarted.raw().inserted_slots.lock().unwrap().clone();
        assert!(slots.iter().all(|s| s.len() == 1), "{slots:?}");
        let distinct: std::collections::BTreeSet<_> = slots.iter().flatten().collect();
        assert_eq!(distinct.len(), 4, "2 shards × 2 days: {distinct:?}");
        // A process that lost its claims' marks reads them per shard.
        let marks = restarted.raw().watermarks("t", 0).await.unwrap();
        let shards: std::collections::BTreeSet<u16> = marks.iter().map(|m| m.shard).collect();
        assert_eq!(shards.len(), 2, "{marks:?}");
    });
}

#[test]
fn bots_and_late_events_get_rows_but_stay_out_of_live_windows() {
    run(async {
        let mut all = messages(60, 2);
        for (i, message) in all.iter_mut().enumerate() {
            let envelope = &mut message.envelope;
            match i % 4 {
                0 => envelope.enrichment.is_bot = true,
                // Received 35 s after its window ended: beyond the 30 s lateness.
                1 => envelope.received_at_ms = window_start(envelope.timestamp_ms) + 40_000,
                // Received 29 s after its window ended: still live.
                2 => envelope.received_at_ms = window_start(envelope.timestamp_ms) + 34_000,
                _ => {}
            }
        }
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        let outcome = processor.apply(&all).await.unwrap();
        assert_eq!((outcome.bots, outcome.late), (15, 15));
        assert_eq!(outcome.live_written, 30);
        assert_eq!(outcome.made_visible.len(), 30);
        assert_eq!(outcome.raw_written, 60);
        let live: u64 = live_totals(processor.live())
            .values()
            .map(|(n, _, _)| n)
            .sum();
        assert_eq!(live, 30);
        // A replay decides the same, whatever the time is now.
        let again = processor.apply(&all).await.unwrap();
        assert_eq!((again.live_written, again.late, again.bots), (0, 15, 15));
    });
}

#[test]
fn windows_are_split_over_shards_by_partition() {
    run(async {
        let all = messages(80, 6);
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        processor.apply(&all).await.unwrap();
        let keys: Vec<String> = live_totals(processor.live()).into_keys().collect();
        for message in &all {
            let shard = shard_of(message.partition);
            let key = window_key(
                "x",
                &message.envelope.app_id,
                window_start(message.envelope.timestamp_ms),
                shard,
            );
            assert!(keys.contains(&key), "{key}");
        }
        assert!(keys.iter().any(|k| k.ends_with(":3")));
    });
}

#[test]
fn broken_idempotence_double_counts_replays() {
    // The control for the chaos test: with the guards off, a replay must show.
    run(async {
        let all = messages(50, 2);
        let broken = Settings {
            fault: Fault::IgnoreOffsets,
            ..settings()
        };
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), broken);
        processor.apply(&all).await.unwrap();
        processor.apply(&all).await.unwrap();
        assert_eq!(row_ids(processor.raw()).len(), 100);
        let live: u64 = live_totals(processor.live())
            .values()
            .map(|(n, _, _)| n)
            .sum();
        assert_eq!(live, 100);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Any split into batches, with any replays of earlier messages (crash before
    /// commit, re-delivery), gives exactly the result of applying everything once.
    #[test]
    fn replays_and_batch_boundaries_do_not_change_results(
        n in 1usize..150,
        cuts in proptest::collection::vec(0usize..150, 0..6),
        replay_from in proptest::collection::vec(0usize..150, 0..4),
    ) {
        let all = with_retries(n);
        let mut reference = Processor::new(MemRaw::default(), MemLive::default(), settings());
        run(reference.apply(&all)).unwrap();

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (n + 1)).collect();
        cuts.push(n);
        cuts.sort_unstable();
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        let mut start = 0;
        for (i, end) in cuts.into_iter().enumerate() {
            run(processor.apply(&all[start..end])).unwrap();
            if let Some(from) = replay_from.get(i) {
                // A new process re-reads from an older committed position.
                let from = from % (end + 1);
                let Processor { raw, live, .. } = processor;
                processor = Processor::new(raw, live, settings());
                run(processor.apply(&all[from..end])).unwrap();
            }
            start = end;
        }
        prop_assert_eq!(row_ids(processor.raw()), row_ids(reference.raw()));
        let mut unique = row_ids(reference.raw());
        unique.dedup();
        prop_assert_eq!(unique.len(), n - (7..n).step_by(7).count());
        prop_assert_eq!(row_ids(reference.raw()).len(), unique.len());
        prop_assert_eq!(live_totals(processor.live()), live_totals(reference.live()));
        prop_assert_eq!(final_sessions(processor.raw()), final_sessions(reference.raw()));
    }

    /// The live step run often and the full step now and then, with crashes
    /// (a new process replays from the last committed position) anywhere in
    /// between, gives exactly the result of applying everything once.
    #[test]
    fn live_and_full_steps_in_any_interleaving_with_crashes(
        n in 1usize..120,
        ops in proptest::collection::vec((0u8..4, 1usize..25), 0..20),
    ) {
        let all = with_retries(n);
        let mut reference = Processor::new(MemRaw::default(), MemLive::default(), settings());
        run(reference.apply(&all)).unwrap();

        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        let mut pending = Pending::default();
        let (mut next, mut committed) = (0, 0);
        for (op, k) in ops {
            match op {
                0 | 1 => {
                    for message in &all[next..(next + k).min(n)] {
                        pending.push(message.clone());
                    }
                    next = (next + k).min(n);
                    run(processor.apply_live(&mut pending)).unwrap();
                }
                2 => {
                    run(processor.apply_all(&mut pending)).unwrap();
                    committed = next;
                }
                _ => {
                    let Processor { raw, live, .. } = processor;
                    processor = Processor::new(raw, live, settings());
                    pending = Pending::default();
                    next = committed;
                }
            }
        }
        for message in &all[next..] {
            pending.push(message.clone());
        }
        run(processor.apply_all(&mut pending)).unwrap();
        prop_assert_eq!(row_ids(processor.raw()), row_ids(reference.raw()));
        prop_assert_eq!(live_totals(processor.live()), live_totals(reference.live()));
        prop_assert_eq!(final_sessions(processor.raw()), final_sessions(reference.raw()));
    }
}

/// The sessions of the generated late-delivery stream: events of two visitors
/// in clusters days apart, all received at [`NOW_MS`] in `order`.
fn late_deliveries(clusters: &[(i64, u8)], order: &[u32]) -> Vec<Message> {
    const MIN: i64 = 60_000;
    let mut events: Vec<(String, i64)> = Vec::new();
    for (i, (day, size)) in clusters.iter().enumerate() {
        let visitor = format!("v{}", i % 2);
        let start = NOW_MS - day * 86_400_000 - (i as i64 % 5) * 7 * MIN;
        for k in 0..i64::from(*size) {
            // Gaps of 29 min: one session only if every event is there.
            events.push((visitor.clone(), start + k * 29 * MIN));
        }
    }
    let mut arrival: Vec<usize> = (0..events.len()).collect();
    arrival.sort_by_key(|i| (order.get(*i).copied().unwrap_or(0), *i));
    let mut next_offset = [0i64; 2];
    arrival
        .into_iter()
        .map(|i| {
            let (visitor, timestamp_ms) = events[i].clone();
            let partition = i32::from(visitor == "v1");
            let offset = next_offset[partition as usize];
            next_offset[partition as usize] += 1;
            Message {
                partition,
                offset,
                envelope: envelope(
                    format!("e{i}"),
                    "a",
                    "page_view",
                    visitor,
                    (timestamp_ms, NOW_MS),
                ),
            }
        })
        .collect()
}

/// Per visitor, (start, end, events) of every session by the definition.
fn gap_sessions(messages: &[Message]) -> BTreeMap<String, Vec<(u64, u64, u32)>> {
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for m in messages {
        times
            .entry(m.envelope.distinct_id.clone())
            .or_default()
            .push(m.envelope.timestamp_ms);
    }
    times
        .into_iter()
        .map(|(visitor, mut times)| {
            times.sort_unstable();
            let mut out: Vec<(u64, u64, u32)> = Vec::new();
            for ts in times {
                let ts = ts as u64;
                match out.last_mut() {
                    Some(last) if ts - last.1 <= tally_schemas::session::SESSION_GAP_MS as u64 => {
                        last.1 = ts;
                        last.2 += 1;
                    }
                    _ => out.push((ts, ts, 1)),
                }
            }
            (visitor, out)
        })
        .collect()
}

/// The sessions table, per visitor, in the shape of [`gap_sessions`].
fn stored_sessions(raw: &MemRaw) -> BTreeMap<String, Vec<(u64, u64, u32)>> {
    let mut out: BTreeMap<String, Vec<(u64, u64, u32)>> = BTreeMap::new();
    for row in final_sessions(raw).into_values() {
        out.entry(row.distinct_id.clone()).or_default().push((
            row.start_ms,
            row.end_ms,
            row.events,
        ));
    }
    for sessions in out.values_mut() {
        sessions.sort_unstable();
    }
    out
}

#[test]
fn sessions_days_apart_delivered_newest_first_are_not_split() {
    // Issue 12, defect 4: three 3-event sessions on days -5, -3 and -1,
    // delivered newest first (a phone syncing after a laptop).
    run(async {
        let clusters = [(5, 3), (3, 3), (1, 3)];
        let mut all = late_deliveries(&clusters, &[]);
        all.retain(|m| m.envelope.distinct_id == "v0" || m.partition == 1);
        all.sort_by_key(|m| std::cmp::Reverse(m.envelope.timestamp_ms));
        for (offset, m) in all.iter_mut().enumerate() {
            m.offset = offset as i64;
        }
        // One event a batch: every one is applied to a state read back from the stores.
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        for m in &all {
            processor.apply(std::slice::from_ref(m)).await.unwrap();
        }
        assert_eq!(stored_sessions(processor.raw()), gap_sessions(&all));
        assert_eq!(
            stored_sessions(processor.raw())
                .values()
                .map(Vec::len)
                .sum::<usize>(),
            3,
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    /// Late events of any age (sessions days apart, delivered in any order)
    /// give the sessions of the definition, with batches cut anywhere and
    /// crashes anywhere — between the session rows and the state write too.
    #[test]
    fn late_events_of_any_age_give_the_gap_sessions(
        clusters in proptest::collection::vec((0i64..40, 1u8..4), 1..12),
        order in proptest::collection::vec(any::<u32>(), 40),
        ops in proptest::collection::vec((0u8..5, 1usize..8), 0..25),
        fail_visitor_write in 0usize..12,
    ) {
        let all = late_deliveries(&clusters, &order);
        let n = all.len();
        let want = gap_sessions(&all);
        let mut in_order = all.clone();
        in_order.sort_by_key(|m| m.envelope.timestamp_ms);
        for (offset, m) in in_order.iter_mut().enumerate() {
            m.offset = offset as i64;
        }
        let mut reference = Processor::new(MemRaw::default(), MemLive::default(), settings());
        for m in &in_order {
            run(reference.apply(std::slice::from_ref(m))).unwrap();
        }
        prop_assert_eq!(stored_sessions(reference.raw()), want.clone());

        let live = MemLive::default();
        live.fail_visitors_on_call.store(fail_visitor_write, Ordering::SeqCst);
        let mut processor = Processor::new(MemRaw::default(), live, settings());
        let mut pending = Pending::default();
        let (mut next, mut committed) = (0, 0);
        let crash = |processor: Processor<MemRaw, MemLive>| {
            let Processor { raw, live, .. } = processor;
            Processor::new(raw, live, settings())
        };
        for (op, k) in ops {
            let result = match op {
                0 | 1 => {
                    for message in &all[next..(next + k).min(n)] {
                        pending.push(message.clone());
                    }
                    next = (next + k).min(n);
                    run(processor.apply_live(&mut pending)).map(|_| ())
                }
                2 | 3 => run(processor.apply_all(&mut pending)).map(|_| {
                    committed = next;
                }),
                _ => Err(AggregatorError::State("crash".into())),
            };
            if result.is_err() {
                processor = crash(processor);
                pending = Pending::default();
                next = committed;
            }
        }
        for message in &all[next..] {
            pending.push(message.clone());
        }
        if run(processor.apply_all(&mut pending)).is_err() {
            processor = crash(processor);
            run(processor.apply(&all[committed..])).unwrap();
        }
        prop_assert_eq!(stored_sessions(processor.raw()), want);
    }
}

/// The current person of every distinct id in the stored rows (highest version).
fn stored_persons(raw: &MemRaw) -> BTreeMap<String, String> {
    let mut best: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for row in raw.person_ids.lock().unwrap().iter() {
        let held = best.entry(row.distinct_id.clone()).or_default();
        if row.version >= held.0 {
            *held = (row.version, row.person_id.clone());
        }
    }
    best.into_iter()
        .map(|(id, (_, person))| (id, person))
        .collect()
}

#[test]
fn identity_events_reach_the_person_tables_once_replayed_or_not() {
    run(async {
        let ts = 20_000 * 86_400_000;
        let mut identify = envelope("i1".into(), "a", "identify", "user".into(), (ts, ts));
        identify.anonymous_id = Some("anon".into());
        identify
            .properties
            .insert("traits.plan".into(), "pro".into());
        let mut alias = envelope("i2".into(), "a", "alias", "user".into(), (ts, ts));
        alias
            .properties
            .insert("previous_id".into(), "old-device".into());
        let batch: Vec<Message> = [identify, alias]
            .into_iter()
            .enumerate()
            .map(|(offset, envelope)| Message {
                partition: 0,
                offset: offset as i64,
                envelope,
            })
            .collect();
        let mut processor = Processor::new(MemRaw::default(), MemLive::default(), settings());
        let first = processor.apply(&batch).await.unwrap();
        assert_eq!((first.identity_events, first.raw_written), (2, 2));
        let want: BTreeMap<String, String> = ["anon", "user", "old-device"]
            .into_iter()
            .map(|id| (id.to_owned(), "anon".to_owned()))
            .collect();
        assert_eq!(stored_persons(processor.raw()), want);
        // A replay rewrites the current rows (a lost insert is redone) and changes nothing.
        let again = processor.apply(&batch).await.unwrap();
        assert_eq!(again.identity_events, 2);
        assert_eq!(stored_persons(processor.raw()), want);
        let persons = processor.raw().persons.lock().unwrap().clone();
        assert!(persons
            .iter()
            .all(|p| p.person_id == "anon" && p.prop_values == ["pro"] && p.version == 3));
    });
}
