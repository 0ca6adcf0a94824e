//! Kafka helpers for tests: topic creation on the shared broker, and a private
//! tansu broker (in-memory storage, random port) that a test may stop and start
//! (a child process through the shared launcher, [`tally_common::process`]).

use crate::servers::{free_port, launch};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tally_common::process::{tansu_command, tcp_listening, ChildProcess};

/// Creates `topic` on `brokers` (panics with the reason on failure).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    tally_common::kafka::ensure_topic(brokers, topic, partitions)
        .await
        .unwrap_or_else(|err| panic!("creating topic {topic} on {brokers}: {err}"));
    // Wait until metadata shows every partition (creation is asynchronous on some brokers).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = tally_common::kafka::partition_count(brokers, topic)
            .await
            .unwrap_or(0);
        if found >= usize::try_from(partitions).unwrap_or(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} has {found} partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub use tally_common::process::tansu_bin;

/// A broker process owned by one test.
#[derive(Debug)]
pub struct PrivateBroker {
    /// `host:port` to bootstrap from.
    pub brokers: String,
    port: u16,
    child: Option<ChildProcess>,
    storage: String,
    dir: PathBuf,
}

impl PrivateBroker {
    /// Starts tansu with in-memory storage on a free port.
    pub async fn start() -> Self {
        Self::start_with("memory://tansu/".into()).await
    }

    /// Starts tansu with sqlite storage in a fresh directory (survives restarts).
    /// tansu resolves the sqlite path against its working directory.
    pub async fn start_durable() -> Self {
        Self::start_with("sqlite://tansu.db".into()).await
    }

    /// Like [`PrivateBroker::start_durable`], running tansu's maintenance
    /// (retention: deleting messages older than a topic's `retention.ms`)
    /// every `interval` (humantime, e.g. `1s`) instead of every 10 minutes.
    pub async fn start_durable_maintained(interval: &str) -> Self {
        Self::start_with(format!("sqlite://tansu.db?maintenance_interval={interval}")).await
    }

    async fn start_with(storage: String) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(crate::unique("tansu"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        let mut broker = PrivateBroker {
            brokers: format!("127.0.0.1:{port}"),
            port,
            child: None,
            storage,
            dir,
        };
        broker.resume().await;
        broker
    }

    /// (Re)starts the process on the same port.
    pub async fn resume(&mut self) {
        // The broker's log stays beside its data (kept when TALLY_KEEP_BROKER_DIR is set).
        let log = self.dir.join("tansu.log");
        let mut command = tansu_command(&self.dir, self.port, &self.storage, &log);
        let port = self.port;
        let wait = (Duration::from_secs(20), Duration::from_millis(50));
        let child = launch("private tansu", &mut command, log, wait, || {
            tcp_listening(port)
        })
        .await;
        self.child = Some(child);
    }

    /// Stops the process gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.terminate(None);
        }
    }

    /// Kills the process (as a crash would).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            child.kill();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("TALLY_KEEP_BROKER_DIR").is_some() {
            eprintln!("broker directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sets the committed offsets of `group` on every partition of `topic` to the
/// start of the log, as if the group's consumers had crashed after writing
/// everything but before any commit. Call only while no member is running;
/// a broker that still counts a dead member in the group refuses the commit
/// until that member's session (10 s) has expired and the group has settled,
/// which tansu 0.6 has been seen to take longer than 30 s under load, so it is
/// retried for up to 90 s; a failure names the broker's last answer.
pub async fn rewind_group(brokers: &str, group: &str, topic: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_rewind_group(brokers, group, topic).await {
            Ok(()) => return,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("the group's offsets were not rewound in 90 s ({attempts} attempts): {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// One attempt of [`rewind_group`].
pub async fn try_rewind_group(brokers: &str, group: &str, topic: &str) -> Result<(), String> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let partitions = tally_common::kafka::partition_count(brokers, topic)
        .await
        .map_err(|err| format!("describing {topic}: {err}"))?;
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|err| format!("consumer: {err}"))?;
        let mut offsets = TopicPartitionList::new();
        for partition in 0..partitions {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(0))
                .map_err(|err| format!("offset: {err}"))?;
        }
        consumer
            .commit(&offsets, CommitMode::Sync)
            .map_err(|err| format!("rewinding {group}: {err}"))?;
        let committed = consumer
            .committed_offsets(offsets, std::time::Duration::from_secs(5))
            .map_err(|err| format!("reading back {group}: {err}"))?;
        match committed
            .elements()
            .iter()
            .find(|e| e.offset() != Offset::Offset(0))
        {
            Some(e) => Err(format!("partition {} at {:?}", e.partition(), e.offset())),
            None => Ok(()),
        }
    })
    .await
    .map_err(|err| format!("rewind task: {err}"))?
}

/// Waits (up to `timeout`) until `group` has committed the log end of every
/// partition of `topic`: everything on the topic is consumed and, since the
/// aggregator commits only after both stores hold a batch, stored. What a
/// test reads afterwards cannot change any more.
pub async fn wait_consumed(brokers: &str, group: &str, topic: &str, timeout: std::time::Duration) {
    let what = format!("group {group} to consume all of {topic}");
    crate::eventually(&what, timeout, || async {
        let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || consumed_everything(&brokers, &group, &topic))
            .await
            .ok()
            .flatten()
    })
    .await;
}

/// `Some(())` when the committed offset of every partition equals its log end.
fn consumed_everything(brokers: &str, group: &str, topic: &str) -> Option<()> {
    group_positions(brokers, group, topic)?
        .iter()
        .all(|p| p.committed.unwrap_or(p.low).max(p.low) >= p.high)
        .then_some(())
}

/// The group's committed offset and the log's bounds per partition (blocking).
fn group_positions(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Option<Vec<stream_aggregator::watchdog::Position>> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .ok()?;
    stream_aggregator::watchdog::positions(&consumer, topic).ok()
}

/// The group's progress per partition, for a failing test's message.
pub async fn describe_group(brokers: &str, group: &str, topic: &str) -> String {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    let positions = tokio::task::spawn_blocking(move || group_positions(&brokers, &group, &topic))
        .await
        .ok()
        .flatten();
    match positions {
        None => "group positions unreadable".into(),
        Some(positions) => positions
            .iter()
            .map(|p| {
                format!(
                    "p{}: committed {:?} of {}..{}",
                    p.partition, p.committed, p.low, p.high
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Event ids of every message on `topic` (read from the start, until `expected` or 20 s).
pub async fn event_ids(brokers: &str, topic: &str, expected: usize) -> Vec<String> {
    payloads(brokers, topic, expected)
        .await
        .iter()
        .filter_map(|payload| tally_schemas::Envelope::decode(payload).ok())
        .map(|envelope| envelope.event_id)
        .collect()
}

/// Every message payload on `topic`, read from the start until `expected` arrived
/// (or 20 s), then one more second to catch anything beyond `expected`.
pub async fn payloads(brokers: &str, topic: &str, expected: usize) -> Vec<Vec<u8>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", crate::unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|err| panic!("consumer: {err}"));
        consumer
            .subscribe(&[&topic])
            .unwrap_or_else(|err| panic!("subscribe: {err}"));
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut settle: Option<Instant> = None;
        loop {
            let now = Instant::now();
            match settle {
                None if out.len() >= expected || now >= deadline => {
                    settle = Some(now + Duration::from_secs(1));
                }
                Some(until) if now >= until => break,
                _ => {}
            }
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                out.push(message.payload().unwrap_or_default().to_vec());
            }
        }
        out
    })
    .await
    .unwrap_or_else(|err| panic!("reader: {err}"))
}

/// The values of every message on `topic` (all partitions, from the start to
/// the end seen now), read without a consumer group; each partition is read
/// for at most 20 s.
pub async fn read_all(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let partitions = tally_common::kafka::partition_count(brokers, topic)
        .await
        .unwrap_or_else(|err| panic!("describing {topic}: {err}"));
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "tally-testkit-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|err| panic!("reader: {err}"));
        let mut values = Vec::new();
        for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
            let timeout = std::time::Duration::from_secs(5);
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .unwrap_or_else(|err| panic!("watermarks of {topic}/{partition}: {err}"));
            let mut list = TopicPartitionList::new();
            let _ = list.add_partition_offset(&topic, partition, Offset::Beginning);
            consumer
                .assign(&list)
                .unwrap_or_else(|err| panic!("assigning {topic}/{partition}: {err}"));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut next = 0;
            while next < high && std::time::Instant::now() < deadline {
                if let Some(Ok(message)) = consumer.poll(std::time::Duration::from_millis(200)) {
                    values.push(message.payload().unwrap_or_default().to_vec());
                    next = message.offset() + 1;
                }
            }
        }
        values
    })
    .await
    .unwrap_or_default()
}
