//! Where a replay starts and ends in each partition of the events topic.
//!
//! `--from` and `--to` are either a time (RFC 3339, a UTC date, epoch
//! milliseconds, or relative to now: `-90m`, `-6h`, `-7d`) resolved per
//! partition with the broker's offsets-for-times (the first message stamped at
//! or after it), or explicit `partition:offset,…` naming every partition.
//! Without `--to` the replay follows the topic after catching up.
//!
//! The topic must still hold the whole range. A partition whose log no longer
//! starts at offset 0 lost its oldest messages to retention; the range is
//! complete only if the first message it still holds is not newer than the
//! requested start. Otherwise [`plan`] refuses with
//! [`ReplayError::OffsetsGone`], naming the earliest time every partition
//! still holds completely. [`read_facts`] and [`offsets_for_time`] read the
//! broker (blocking calls, run off the async runtime); [`plan`] is pure.

use super::{rfc3339, ReplayError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tally_common::kafka::{patiently, KafkaConfig};

/// A start or end of a replay as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A time, epoch milliseconds.
    Time(i64),
    /// An offset per partition.
    Positions(BTreeMap<i32, i64>),
}

impl Spec {
    /// Parses `text` (see the module header); `now_ms` anchors relative times.
    pub fn parse(text: &str, now_ms: i64) -> Result<Spec, ReplayError> {
        let text = text.trim();
        let bad = || {
            ReplayError::Usage(format!(
                "{text:?}: a time (2026-12-01T08:00:00Z, 2026-12-01, epoch ms, -6h, -7d) or partition:offset,…"
            ))
        };
        if text.contains(':')
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b':' || b == b',')
        {
            return stream_aggregator::config::parse_positions(text)
                .map(Spec::Positions)
                .map_err(|e| ReplayError::Usage(format!("{text:?}: {e}")));
        }
        if let Some(relative) = text.strip_prefix('-') {
            let split = relative.len().saturating_sub(1);
            let (amount, unit) = relative.split_at(split);
            let amount: i64 = amount.parse().map_err(|_| bad())?;
            let unit_ms = match unit {
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            return Ok(Spec::Time(now_ms - amount.saturating_mul(unit_ms)));
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(Spec::Time).map_err(|_| bad());
        }
        let rfc = time::format_description::well_known::Rfc3339;
        if let Ok(at) = time::OffsetDateTime::parse(text, &rfc) {
            return Ok(Spec::Time(
                i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())?,
            ));
        }
        let date_format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, date_format).map_err(|_| bad())?;
        Ok(Spec::Time(
            date.midnight().assume_utc().unix_timestamp() * 1000,
        ))
    }
}

/// One partition as the broker describes it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFacts {
    /// Partition.
    pub partition: i32,
    /// First offset still held (log start).
    pub low: i64,
    /// Log end.
    pub high: i64,
    /// Timestamp of the message at `low` (`None` when the partition is empty).
    pub first_ms: Option<i64>,
}

/// Per partition, the first offset not to replay; `None`: follow the topic.
pub type Ends = Option<BTreeMap<i32, i64>>;

/// The resolved range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// First offset to replay per partition.
    pub start: BTreeMap<i32, i64>,
    /// First offset not to replay per partition (`None`: follow).
    pub end: Ends,
}

/// A start this close to the topic's retention edge is refused: the broker
/// may delete it while the replay runs (a consumer then skips ahead silently).
pub const RETENTION_MARGIN_MS: i64 = 3_600_000;

/// The topic as the broker describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topic {
    /// Every partition.
    pub partitions: Vec<PartitionFacts>,
    /// `retention.ms` (`None`: unlimited or not reported).
    pub retention_ms: Option<i64>,
}

/// Resolves `from`/`to` against the broker's `topic`. `found_from` and
/// `found_to` are offsets-for-times of the spec's time (`-1`: no message at or
/// after it), needed only for [`Spec::Time`].
pub fn plan(
    from: &Spec,
    to: Option<&Spec>,
    topic: &Topic,
    found_from: &BTreeMap<i32, i64>,
    found_to: &BTreeMap<i32, i64>,
    now_ms: i64,
) -> Result<Plan, ReplayError> {
    let facts = topic.partitions.as_slice();
    if facts.is_empty() {
        return Err(ReplayError::Usage(
            "the events topic has no partitions".into(),
        ));
    }
    if let (Spec::Time(at), Some(retention)) = (from, topic.retention_ms) {
        let edge = now_ms - retention;
        if *at < edge + RETENTION_MARGIN_MS {
            return Err(ReplayError::OffsetsGone {
                detail: format!(
                    "the topic keeps messages {:.1} days (retention.ms {retention}); a start at {} is deleted by then or may be while the replay runs",
                    retention as f64 / 86_400_000.0,
                    rfc3339(*at)
                ),
                earliest: rfc3339(edge + RETENTION_MARGIN_MS),
            });
        }
    }
    let earliest = || earliest_complete(facts);
    let resolve = |found: &BTreeMap<i32, i64>, f: &PartitionFacts| match found.get(&f.partition) {
        Some(&o) if o >= 0 => o.clamp(f.low, f.high),
        _ => f.high,
    };
    let start: BTreeMap<i32, i64> = match from {
        Spec::Time(at) => {
            for f in facts.iter().filter(|f| f.low > 0) {
                let lost = match f.first_ms {
                    None => Some(format!(
                        "partition {} holds no messages any more (log start {}): its history was removed",
                        f.partition, f.low
                    )),
                    Some(first) if first > *at => Some(format!(
                        "partition {} starts at offset {} stamped {}, after the requested start {}",
                        f.partition,
                        f.low,
                        rfc3339(first),
                        rfc3339(*at)
                    )),
                    Some(_) => None,
                };
                if let Some(detail) = lost {
                    return Err(ReplayError::OffsetsGone {
                        detail,
                        earliest: earliest(),
                    });
                }
            }
            facts
                .iter()
                .map(|f| (f.partition, resolve(found_from, f)))
                .collect()
        }
        Spec::Positions(positions) => {
            named_every_partition(positions, facts)?;
            for f in facts {
                let offset = positions[&f.partition];
                if offset < f.low {
                    return Err(ReplayError::OffsetsGone {
                        detail: format!(
                            "partition {} starts at offset {} now; offset {offset} was removed",
                            f.partition, f.low
                        ),
                        earliest: earliest(),
                    });
                }
                if offset > f.high {
                    return Err(ReplayError::Usage(format!(
                        "partition {} ends at offset {}; {offset} is past its end",
                        f.partition, f.high
                    )));
                }
            }
            positions.clone()
        }
    };
    let end = match to {
        None => None,
        Some(Spec::Time(at)) => {
            if *at > now_ms {
                return Err(ReplayError::Usage(format!(
                    "--to {} is in the future: omit --to to follow the topic",
                    rfc3339(*at)
                )));
            }
            if let Spec::Time(from_at) = from {
                if at <= from_at {
                    return Err(ReplayError::Usage("--to must be later than --from".into()));
                }
            }
            Some(
                facts
                    .iter()
                    .map(|f| (f.partition, resolve(found_to, f).max(start[&f.partition])))
                    .collect(),
            )
        }
        Some(Spec::Positions(positions)) => {
            named_every_partition(positions, facts)?;
            for f in facts {
                let (s, e) = (start[&f.partition], positions[&f.partition]);
                if e < s || e > f.high {
                    return Err(ReplayError::Usage(format!(
                        "partition {}: --to offset {e} must lie within {s}..={}",
                        f.partition, f.high
                    )));
                }
            }
            Some(positions.clone())
        }
    };
    Ok(Plan { start, end })
}

fn named_every_partition(
    positions: &BTreeMap<i32, i64>,
    facts: &[PartitionFacts],
) -> Result<(), ReplayError> {
    let wanted: Vec<i32> = facts.iter().map(|f| f.partition).collect();
    let given: Vec<i32> = positions.keys().copied().collect();
    if wanted == given {
        Ok(())
    } else {
        Err(ReplayError::Usage(format!(
            "name every partition of the topic once: {wanted:?} (given {given:?})"
        )))
    }
}

/// The earliest time every partition still holds completely.
fn earliest_complete(facts: &[PartitionFacts]) -> String {
    let mut latest_first = None::<i64>;
    for f in facts.iter().filter(|f| f.low > 0) {
        match f.first_ms {
            Some(first) => latest_first = Some(latest_first.map_or(first, |l| l.max(first))),
            None => {
                return format!(
                    "unknown (partition {} is empty after retention; replay from partition:offset positions at the log ends)",
                    f.partition
                )
            }
        }
    }
    latest_first.map_or_else(|| "the topic's beginning".to_owned(), rfc3339)
}

fn consumer(kafka: &KafkaConfig) -> Result<BaseConsumer, ReplayError> {
    Ok(kafka
        .client_config()
        .set("group.id", "tally-admin-replay-plan")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // Single-message reads: answer as soon as one message is there.
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .create()?)
}

/// Reads single messages of one partition (blocking).
struct Reader<'a> {
    client: BaseConsumer,
    topic: &'a str,
    partition: i32,
}

impl<'a> Reader<'a> {
    fn new(kafka: &'a KafkaConfig, partition: i32) -> Result<Self, ReplayError> {
        Ok(Reader {
            client: consumer(kafka)?,
            topic: &kafka.topic,
            partition,
        })
    }

    /// The offset and timestamp of the first message at or after `offset`
    /// (`None` when none arrives within `wait`).
    fn first_from(
        &self,
        offset: i64,
        wait: Duration,
    ) -> Result<Option<(i64, Option<i64>)>, ReplayError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(self.topic, self.partition, Offset::Offset(offset))?;
        self.client.assign(&list)?;
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            match self.client.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    return Ok(Some((message.offset(), message.timestamp().to_millis())))
                }
                Some(Err(err)) => return Err(err.into()),
                None => {}
            }
        }
        Ok(None)
    }

    /// The timestamp of the first message at or after `offset` (≤ 10 s).
    fn timestamp_at(&self, offset: i64) -> Result<Option<i64>, ReplayError> {
        match self.first_from(offset, Duration::from_secs(10))? {
            Some((_, at)) => Ok(at),
            None => Err(ReplayError::Kafka(format!(
                "no message read at partition {} offset {offset} within 10 s",
                self.partition
            ))),
        }
    }
}

/// Reads every partition's log start (the first message actually held) and
/// end, and the time of that first message (blocking; the retention is read
/// separately, see [`Topic`]).
pub fn read_facts(kafka: &KafkaConfig) -> Result<Vec<PartitionFacts>, ReplayError> {
    let client = consumer(kafka)?;
    let timeout = Duration::from_secs(5);
    let metadata = patiently(|| client.fetch_metadata(Some(&kafka.topic), timeout))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == kafka.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut facts = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (reported_low, high) =
            patiently(|| client.fetch_watermarks(&kafka.topic, partition, timeout))?;
        // The log start is where the first message actually is: tansu 0.6
        // deletes messages past the retention but keeps reporting log start 0.
        let (low, first_ms) = if high > reported_low {
            match Reader::new(kafka, partition)?.first_from(reported_low, Duration::from_secs(3))? {
                Some((offset, at)) => (offset.max(reported_low), at),
                None => (high, None),
            }
        } else {
            (reported_low, None)
        };
        facts.push(PartitionFacts {
            partition,
            low,
            high,
            first_ms,
        });
    }
    facts.sort_by_key(|f| f.partition);
    Ok(facts)
}

/// Per partition of `facts`, the first offset whose message is stamped at or
/// after `at_ms` (the log end when none is). The broker's offsets-for-times
/// answer is checked against the messages around it — tansu 0.6 answers 0,
/// not "none", for a time after the last message — and where it does not
/// hold, the offset is found by a binary search over message timestamps.
pub fn offsets_for_time(
    kafka: &KafkaConfig,
    facts: &[PartitionFacts],
    at_ms: i64,
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let client = consumer(kafka)?;
    let mut list = TopicPartitionList::new();
    for f in facts {
        list.add_partition_offset(&kafka.topic, f.partition, Offset::Offset(at_ms))?;
    }
    let answered = client.offsets_for_times(list, Duration::from_secs(10))?;
    let mut found = BTreeMap::new();
    for f in facts {
        let candidate = answered
            .find_partition(&kafka.topic, f.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o.clamp(f.low, f.high)),
                _ => None,
            })
            .unwrap_or(f.high);
        let reader = Reader::new(kafka, f.partition)?;
        let stamped = |offset: i64| -> Result<i64, ReplayError> {
            Ok(reader.timestamp_at(offset)?.unwrap_or(i64::MAX))
        };
        let holds = |c: i64| -> Result<bool, ReplayError> {
            let at_or_after = c == f.high || stamped(c)? >= at_ms;
            let before = c == f.low || stamped(c - 1)? < at_ms;
            Ok(at_or_after && before)
        };
        let offset = if holds(candidate)? {
            candidate
        } else if f.high == f.low || stamped(f.high - 1)? < at_ms {
            // Nothing stamped at or after it (the usual `--to` of "now").
            f.high
        } else {
            // The first offset in [low, high) stamped at or after `at_ms`.
            let (mut lo, mut hi) = (f.low, f.high);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if stamped(mid)? >= at_ms {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            lo
        };
        found.insert(f.partition, offset);
    }
    Ok(found)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
