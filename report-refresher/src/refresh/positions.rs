//! Where a run stands in the log: its ends (the broker's committed offsets,
//! or the highest rows), positions taken on another log forgotten, and the
//! housekeeping of what is derived (the run's
//! table of new rows, the `arrivals` days every row of which is derived).

use super::{Kind, Refresher};
use crate::error::RefreshError;
use crate::state::MarkKey;
use crate::statements::{self, Ends, Stmt};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use tally_common::kafka::PartitionPosition;

/// A mark taken on another log: at or past its partition's log end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenMark {
    /// Topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: u32,
    /// The highest offset the scope had derived.
    pub mark: i64,
    /// The partition's log end on the broker (the next offset).
    pub log_end: i64,
}

/// The marks of `topic` at or past their partition's log end in `ends`
/// (partitions the broker did not describe are not judged).
fn beyond_log_ends(
    topic: &str,
    marks: &HashMap<MarkKey, i64>,
    ends: &BTreeMap<i32, i64>,
) -> Vec<ForgottenMark> {
    let mut out: Vec<ForgottenMark> = marks
        .iter()
        .filter(|((t, _), _)| t == topic)
        .filter_map(|((t, partition), mark)| {
            let log_end = *ends.get(&i32::try_from(*partition).ok()?)?;
            (*mark >= log_end).then(|| ForgottenMark {
                topic: t.clone(),
                partition: *partition,
                mark: *mark,
                log_end,
            })
        })
        .collect();
    out.sort_by_key(|m| m.partition);
    out
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Top {
    kafka_topic: String,
    kafka_partition: u32,
    top: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ArrivalDay {
    day: String,
    kafka_topic: String,
    kafka_partition: i32,
    top: i64,
}

impl Refresher {
    /// Drops the tables of new rows that runs which did not finish left.
    pub(super) async fn drop_leftovers(&self) -> Result<(), RefreshError> {
        let names: Vec<String> = self
            .clickhouse
            .query(statements::STAGED_TABLES_SQL)
            .fetch_all()
            .await?;
        let ours = |name: &str| {
            name.strip_prefix("refresh_facts_")
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        };
        for name in names.into_iter().filter(|n| ours(n)) {
            self.clickhouse
                .query(&format!("DROP TABLE IF EXISTS {name}"))
                .execute()
                .await?;
        }
        Ok(())
    }

    /// Drops each received day of `arrivals` older than yesterday whose
    /// arrivals are all derived (within `marks`).
    pub(super) async fn prune_arrivals(&self, marks: &Ends) -> Result<(), RefreshError> {
        let days: Vec<ArrivalDay> = self
            .fetch(&Stmt::plain(statements::ARRIVAL_DAYS_SQL))
            .await?;
        let yesterday = time::OffsetDateTime::now_utc().date().previous_day();
        let mut droppable: BTreeMap<String, bool> = BTreeMap::new();
        for day in days {
            let partition = u32::try_from(day.kafka_partition).unwrap_or(u32::MAX);
            let all_derived = marks
                .get(&(day.kafka_topic.clone(), partition))
                .is_some_and(|m| day.top <= i64::try_from(*m).unwrap_or(i64::MAX));
            let old = yesterday.is_some_and(|y| day.day < y.to_string());
            *droppable.entry(day.day).or_insert(true) &= all_derived && old;
        }
        for (day, drop) in droppable {
            if drop {
                self.clickhouse
                    .query(&self.cluster_form(statements::DROP_ARRIVALS_SQL))
                    .bind(day.as_str())
                    .execute()
                    .await?;
                tracing::info!(day, "dropped derived arrivals");
            }
        }
        Ok(())
    }

    /// What the broker says at the start of a run, per partition of the
    /// topic: the aggregator group's committed offset and the log end; `None`
    /// without a broker or when it does not answer (then nothing new is
    /// derived and no position is forgotten).
    pub(super) async fn broker(&self) -> Option<Vec<PartitionPosition>> {
        let (kafka, group) = self.kafka.as_ref()?;
        match tally_common::kafka::positions(kafka, group).await {
            Ok(positions) => Some(positions),
            Err(err) => {
                tracing::warn!(error = %err, "broker positions unreadable: nothing new is derived");
                None
            }
        }
    }

    /// The aggregator group's committed offsets less one (every row at or
    /// below is stored), from the broker's `positions`.
    pub(super) fn committed(&self, positions: Option<&[PartitionPosition]>) -> Option<Ends> {
        let (kafka, _) = self.kafka.as_ref()?;
        Some(
            positions?
                .iter()
                .filter_map(|p| {
                    let partition = u32::try_from(p.partition).ok()?;
                    let end = u64::try_from(p.committed? - 1).ok()?;
                    Some(((kafka.topic.clone(), partition), end))
                })
                .collect(),
        )
    }

    /// Forgets the scope's positions when they were taken on another log:
    /// a mark (of `marks`) at or past its partition's log end in the broker's
    /// `positions` (the topic was made anew — a fresh broker, or a new
    /// checkout whose broker and ClickHouse start empty beside a PostgreSQL
    /// that stayed). Kept, such marks would stop every row below them from
    /// being derived and send readers to report rows that are not there.
    /// Returns the marks forgotten (none without the broker's answer: only a
    /// log end it reported is evidence).
    pub(super) async fn forget_another_log(
        &self,
        marks: &HashMap<MarkKey, i64>,
        positions: Option<&[PartitionPosition]>,
    ) -> Result<Vec<ForgottenMark>, RefreshError> {
        let (Some((kafka, _)), Some(positions)) = (self.kafka.as_ref(), positions) else {
            return Ok(Vec::new());
        };
        let ends: BTreeMap<i32, i64> = positions.iter().map(|p| (p.partition, p.log_end)).collect();
        let forgotten = beyond_log_ends(&kafka.topic, marks, &ends);
        if !forgotten.is_empty() {
            self.state.forget_positions().await?;
        }
        Ok(forgotten)
    }

    /// The run's ends: the `committed` offsets (else the arrivals'); a full
    /// run adds every other partition of `events` up to its highest row.
    /// Never below `marks`.
    pub(super) async fn ends(
        &self,
        kind: Kind,
        marks: &Ends,
        committed: Option<Ends>,
    ) -> Result<Ends, RefreshError> {
        let mut ends = match (&committed, &self.kafka) {
            (Some(committed), _) => committed.clone(),
            (None, Some(_)) => Ends::new(),
            (None, None) => self.tops(statements::ARRIVAL_ENDS_SQL).await?,
        };
        if kind == Kind::Full {
            for (key, top) in self.tops(statements::EVENT_ENDS_SQL).await? {
                let known = committed.as_ref().is_some_and(|c| c.contains_key(&key));
                if !known {
                    ends.insert(key, top);
                }
            }
        }
        for (key, mark) in marks {
            let end = ends.entry(key.clone()).or_insert(*mark);
            *end = (*end).max(*mark);
        }
        Ok(ends)
    }

    pub(super) async fn tops(&self, sql: &str) -> Result<Ends, RefreshError> {
        Ok(self
            .fetch::<Top>(&Stmt::plain(sql))
            .await?
            .into_iter()
            .map(|t| ((t.kafka_topic, t.kafka_partition), t.top))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marks_at_or_past_a_reported_log_end_are_from_another_log() {
        let marks: HashMap<MarkKey, i64> = [
            (("events".to_owned(), 0), 99),
            (("events".to_owned(), 1), 100),
            (("events".to_owned(), 2), 5_000),
            (("events".to_owned(), 3), 7),
            (("history".to_owned(), 0), 1_000_000),
        ]
        .into_iter()
        .collect();
        // Partition 3 not described by the broker: not judged.
        let ends: BTreeMap<i32, i64> = [(0, 100), (1, 100), (2, 40)].into_iter().collect();
        let found = beyond_log_ends("events", &marks, &ends);
        assert_eq!(
            found
                .iter()
                .map(|m| (m.partition, m.mark, m.log_end))
                .collect::<Vec<_>>(),
            vec![(1, 100, 100), (2, 5_000, 40)],
            "99 < 100 is a position in the log; 100 is where the next message goes"
        );
        assert!(beyond_log_ends("events", &marks, &BTreeMap::new()).is_empty());
        assert!(beyond_log_ends("other", &marks, &ends).is_empty());
    }
}
