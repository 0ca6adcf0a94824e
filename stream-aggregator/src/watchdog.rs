//! Group watchdog: notices partitions of the events topic that have lag but
//! no consumer, says so (not ready, a warning, a metric) and asks the consume
//! loop to rejoin the group.
//!
//! Why: tansu 0.6's group coordinator can form a group whose only member has
//! an empty assignment. When a member is killed and a new one joins before
//! the dead one's session expires, the dead member stays leader; once it
//! expires, the survivor's follower `SyncGroup` (which carries no assignments)
//! is accepted as the leader's, and the group settles as `Formed` with every
//! partition unassigned — for good, since nothing re-checks it (tansu
//! `coordinator/group/administrator.rs`, `Inner<Forming>::sync`; fixed
//! upstream after 0.6). Apache Kafka never forms a group that way, but a
//! member that consumes nothing while there is lag must be noticed whatever
//! the broker.
//!
//! Rule, checked every [`TICK`]: a partition is *orphaned* when it has lag
//! (log end beyond the group's committed offset), its committed offset has not
//! moved for [`STALL_AFTER`], this member does not own it, and this member's
//! assignment has been settled for [`SETTLE`] (no rebalance in progress) —
//! as long as the stall itself: every member of a new generation gets that
//! long to commit its new partitions before they count as orphaned. (With a
//! 1-s settle, a partition whose commit stood still across a rebalance was
//! called orphaned 2 s after the group settled, while its new owner was still
//! loading its recent ids; the rejoin forced another rebalance, and each
//! rebalance can set off the next member's.) Then
//! the member rejoins — leaving the group and joining afresh, which makes the
//! coordinator rebalance (tansu: leader cleared, new generation) — at most
//! once per [`REJOIN_EVERY`]. Idle members of a healthy group see commits
//! move and never rejoin.

use crate::config::Config;
use crate::consumer::RebalanceWatch;
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the group is looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a partition's committed offset must stand still, with lag.
pub const STALL_AFTER: Duration = Duration::from_secs(5);
/// How long this member's assignment must have been settled (a new owner's
/// time to make its first commit).
pub const SETTLE: Duration = STALL_AFTER;
/// Least time between two rejoins of this member.
pub const REJOIN_EVERY: Duration = Duration::from_secs(10);

/// One partition as read from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed yet).
    pub committed: Option<i64>,
    /// Log start.
    pub low: i64,
    /// Log end.
    pub high: i64,
}

impl Position {
    fn lag(&self) -> i64 {
        self.high - self.committed.unwrap_or(self.low).max(self.low)
    }
}

/// Committed-offset progress per partition (pure; the clock is passed in).
#[derive(Debug, Default)]
pub struct Progress {
    seen: BTreeMap<i32, (Option<i64>, Instant)>,
}

impl Progress {
    /// Records `positions` at `now`; returns the orphaned partitions, given
    /// this member's settled assignment (`None` while a rebalance is in
    /// progress) and since when it has been settled.
    pub fn observe(
        &mut self,
        now: Instant,
        positions: &[Position],
        ours: Option<(&BTreeSet<i32>, Instant)>,
    ) -> Vec<i32> {
        let mut orphaned = Vec::new();
        for position in positions {
            let entry = self
                .seen
                .entry(position.partition)
                .or_insert((position.committed, now));
            if entry.0 != position.committed {
                *entry = (position.committed, now);
            }
            let stalled = position.lag() > 0 && now.duration_since(entry.1) >= STALL_AFTER;
            let settled = ours.filter(|(_, since)| now.duration_since(*since) >= SETTLE);
            if let Some((ours, _)) = settled {
                if stalled && !ours.contains(&position.partition) {
                    orphaned.push(position.partition);
                }
            }
        }
        orphaned
    }
}

/// What the watchdog found last (for `/readyz`).
#[derive(Debug, Default)]
pub struct GroupHealth {
    orphaned: Mutex<Vec<i32>>,
}

impl GroupHealth {
    /// Partitions with lag and no consumer, as last seen (empty: healthy).
    pub fn orphaned(&self) -> Vec<i32> {
        self.orphaned.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn set(&self, orphaned: Vec<i32>) {
        if let Ok(mut current) = self.orphaned.lock() {
            *current = orphaned;
        }
    }
}

/// Reads positions of every partition of the topic (blocking calls; `client`
/// must carry the group's `group.id`).
pub fn positions(client: &BaseConsumer, topic: &str) -> Result<Vec<Position>, String> {
    let timeout = Duration::from_secs(3);
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition(topic, *p);
    }
    let committed = client
        .committed_offsets(list, timeout)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) = client
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| e.to_string())?;
        let committed = committed
            .find_partition(topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        out.push(Position {
            partition: p,
            committed,
            low,
            high,
        });
    }
    Ok(out)
}

/// Starts the watchdog; it runs until `stop` is cancelled.
pub fn spawn(
    config: &Config,
    watch: RebalanceWatch,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<Arc<GroupHealth>, rdkafka::error::KafkaError> {
    let client: BaseConsumer = config
        .kafka
        .client_config()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .create()?;
    let client = Arc::new(client);
    let topic = config.kafka.topic.clone();
    let health = Arc::new(GroupHealth::default());
    let shared = health.clone();
    tokio::spawn(async move {
        let mut progress = Progress::default();
        let mut last_rejoin: Option<Instant> = None;
        let mut ticker = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let (client, name) = (client.clone(), topic.clone());
            let read = tokio::task::spawn_blocking(move || positions(&client, &name)).await;
            let positions = match read {
                Ok(Ok(positions)) => positions,
                Ok(Err(err)) => {
                    metrics.watchdog_read_failed(&err);
                    continue;
                }
                Err(err) => {
                    metrics.watchdog_read_failed(&err.to_string());
                    continue;
                }
            };
            let assignment = watch.assignment();
            let ours = assignment.as_ref().map(|(set, since)| (set, *since));
            let orphaned = progress.observe(Instant::now(), &positions, ours);
            metrics.orphaned_partitions(&orphaned);
            let rejoin =
                !orphaned.is_empty() && last_rejoin.is_none_or(|at| at.elapsed() >= REJOIN_EVERY);
            shared.set(orphaned);
            if rejoin {
                last_rejoin = Some(Instant::now());
                watch.request_rejoin();
            }
        }
    });
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: i32, committed: Option<i64>, high: i64) -> Position {
        Position {
            partition: p,
            committed,
            low: 0,
            high,
        }
    }

    #[test]
    fn an_empty_assignment_with_lag_and_no_commits_is_orphaned_after_the_stall() {
        let t0 = Instant::now();
        let mut progress = Progress::default();
        let none = BTreeSet::new();
        let positions = [at(0, Some(10), 50), at(1, None, 7), at(2, Some(5), 5)];
        assert!(progress
            .observe(t0, &positions, Some((&none, t0)))
            .is_empty());
        let later = t0 + STALL_AFTER;
        assert_eq!(
            progress.observe(later, &positions, Some((&none, t0))),
            vec![0, 1],
            "partition 2 has no lag"
        );
        // While a rebalance is in progress nothing is reported.
        assert!(progress.observe(later, &positions, None).is_empty());
        // A freshly settled assignment waits for SETTLE.
        assert!(progress
            .observe(later, &positions, Some((&none, later)))
            .is_empty());
    }

    #[test]
    fn a_stall_across_a_rebalance_leaves_the_new_owner_time_to_commit() {
        let t0 = Instant::now();
        let mut progress = Progress::default();
        let ours: BTreeSet<i32> = [0].into();
        let positions = [at(0, Some(4), 9), at(1, Some(2), 9)];
        progress.observe(t0, &positions, None);
        // Partition 1 stood still through a rebalance that settled at t1.
        let t1 = t0 + STALL_AFTER;
        assert!(progress.observe(t1, &positions, None).is_empty());
        let soon = t1 + SETTLE - Duration::from_millis(1);
        assert!(
            progress
                .observe(soon, &positions, Some((&ours, t1)))
                .is_empty(),
            "its new owner has not had SETTLE to commit"
        );
        assert_eq!(
            progress.observe(t1 + SETTLE, &positions, Some((&ours, t1))),
            vec![1]
        );
    }

    #[test]
    fn owned_or_moving_partitions_are_not_orphaned() {
        let t0 = Instant::now();
        let mut progress = Progress::default();
        let ours: BTreeSet<i32> = [0].into();
        progress.observe(t0, &[at(0, Some(1), 9), at(1, Some(1), 9)], None);
        let t1 = t0 + STALL_AFTER;
        // Partition 1's commit moved: another member consumes it.
        let found = progress.observe(
            t1,
            &[at(0, Some(1), 9), at(1, Some(3), 9)],
            Some((&ours, t0)),
        );
        assert!(found.is_empty());
        let t2 = t1 + STALL_AFTER;
        let found = progress.observe(
            t2,
            &[at(0, Some(1), 9), at(1, Some(3), 9)],
            Some((&ours, t0)),
        );
        assert_eq!(found, vec![1]);
    }
}
