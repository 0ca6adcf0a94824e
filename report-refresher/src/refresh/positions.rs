//! Where a run stands in the log: its ends (the broker's committed offsets,
//! or the highest rows), and the housekeeping of what is derived (the run's
//! table of new rows, the `arrivals` days every row of which is derived).

use super::{Kind, Refresher};
use crate::error::RefreshError;
use crate::statements::{self, Ends, Stmt};
use serde::Deserialize;
use std::collections::BTreeMap;

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

    /// The aggregator group's committed offsets less one (every row at or
    /// below is stored), when the broker is configured and answers.
    pub(super) async fn committed(&self) -> Option<Ends> {
        let (kafka, group) = self.kafka.as_ref()?;
        match tally_common::kafka::committed_offsets(kafka, group).await {
            Ok(committed) => Some(
                committed
                    .into_iter()
                    .filter_map(|(p, offset)| {
                        let p = u32::try_from(p).ok()?;
                        let end = u64::try_from(offset - 1).ok()?;
                        Some(((kafka.topic.clone(), p), end))
                    })
                    .collect(),
            ),
            Err(err) => {
                tracing::warn!(error = %err, "committed offsets unreadable: nothing new is derived");
                None
            }
        }
    }

    /// The run's ends: the committed offsets (else the arrivals'); a full run
    /// adds every other partition of `events` up to its highest row. Never
    /// below `marks`.
    pub(super) async fn ends(&self, kind: Kind, marks: &Ends) -> Result<Ends, RefreshError> {
        let committed = self.committed().await;
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
