//! The refresher under SIGKILL: the `report-refresher` binary runs as a child
//! process (refreshing every 100 ms) while generated journeys — page views,
//! late identifies, merges of two persons — flow through the real pipeline,
//! and it is killed with SIGKILL again and again at random moments (seeded by
//! `TALLY_CHAOS_SEED`, printed), each time restarted after a random delay (the
//! new process waits out the dead one's lease). Killed runs commit nothing;
//! the runs after them redo the work. At the end, once the last process has
//! caught up, a full rebuild finds drift 0 (every report equals a
//! recomputation from raw rows) and the reports equal brute force.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use report_refresher::refresh::{Kind, Refresher};
use report_refresher::state::PgState;
use std::path::Path;
use std::time::{Duration, Instant};
use tally_testkit::derived::{brute_force, derived};
use tally_testkit::journeys::{generate, Event};
use tally_testkit::servers::{service_process, ServiceProcess};
use tally_testkit::{eventually, now_ms, Pipeline};

const REFRESHER: &str = env!("CARGO_BIN_EXE_report-refresher");

/// Splitmix64: the kill and restart delays, from the seed.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % (max + 1)
    }
}

async fn start(pipeline: &Pipeline) -> ServiceProcess {
    let iso = &pipeline.iso;
    let env: Vec<(String, String)> = [
        ("TALLY_CLICKHOUSE_URL", iso.clickhouse.url.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", iso.clickhouse.database.clone()),
        ("TALLY_CLICKHOUSE_MIGRATE", "false".to_owned()),
        ("TALLY_POSTGRES_URL", tally_testkit::postgres().url),
        ("TALLY_KAFKA_BROKERS", iso.kafka.brokers.clone()),
        ("TALLY_KAFKA_TOPIC", iso.kafka.topic.clone()),
        ("TALLY_KAFKA_DLQ_TOPIC", iso.kafka.dlq_topic.clone()),
        ("TALLY_AGGREGATOR_GROUP", iso.group_id.clone()),
        ("TALLY_REFRESH_INTERVAL_MS", "100".to_owned()),
        ("TALLY_REFRESH_FULL_EVERY_HOURS", "0".to_owned()),
        ("TALLY_REFRESH_LEASE_SECS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    service_process(Path::new(REFRESHER), "TALLY_REFRESHER_ADDR", &env).await
}

/// Whether a run is writing now: the derived table holds a version that no
/// committed run of this scope has.
async fn writing(pipeline: &Pipeline, pg: &tokio_postgres::Client) -> bool {
    let written: u64 = pipeline
        .iso
        .clickhouse_client()
        .query("SELECT max(version) FROM report_pages_hourly")
        .fetch_one()
        .await
        .unwrap_or(0);
    let committed: i64 = pg
        .query_one(
            "SELECT coalesce(max(version), 0) FROM refresh_runs WHERE scope = $1",
            &[&pipeline.iso.clickhouse.database],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0);
    written > u64::try_from(committed).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_refreshers_leave_reports_equal_to_a_recomputation() {
    let seed: u64 = std::env::var("TALLY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    let kills: usize = std::env::var("TALLY_CHAOS_REFRESHER_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    eprintln!("refresher chaos: seed {seed}, {kills} SIGKILLs");
    let mut delays = Delays(seed);
    let journeys = generate("k", 150, seed, now_ms());
    let all: Vec<&Event> = journeys.all().collect();
    let pipeline = Pipeline::start("rfchaos").await;
    let pg = tally_testkit::postgres().connect().await.unwrap();
    let mut process = start(&pipeline).await;
    let chunk = all.len().div_ceil(kills + 1);
    let started = Instant::now();
    for (i, events) in all.chunks(chunk).enumerate() {
        // Kill only a working refresher: one that holds the lease and has
        // committed a run (a restarted one waits out its predecessor's lease).
        let url = process.url.clone();
        eventually("a committed run", Duration::from_secs(30), || async {
            let committed =
                tally_testkit::metric(&url, "tally_refresher_last_success_seconds").await;
            (committed > 0.0).then_some(())
        })
        .await;
        let bodies: Vec<serde_json::Value> = events.iter().map(|e| e.json.clone()).collect();
        pipeline.send(&bodies).await;
        if i < kills {
            // Mid-run if we can: as soon as a version is written that is not
            // committed (else at a random moment within 3 s). Timing is the
            // point here, not a guess: the kill moment and the restart delay
            // are random on purpose.
            let give_up = Instant::now() + Duration::from_millis(1_000 + delays.next_ms(2_000));
            while Instant::now() < give_up && !writing(&pipeline, &pg).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            process.kill();
            tokio::time::sleep(Duration::from_millis(delays.next_ms(1_000))).await;
            process = start(&pipeline).await;
        }
    }
    pipeline.wait_rows(all.len()).await;
    pipeline.iso.wait_consumed().await;

    // The last process catches up: a committed run that found nothing to do.
    let scope = pipeline.iso.clickhouse.database.clone();
    eventually("the refresher to catch up", Duration::from_secs(60), || async {
        let row = pg
            .query_opt(
                "SELECT buckets FROM refresh_runs WHERE scope = $1 AND finished_at > now() - interval '1 second' \
                 ORDER BY id DESC LIMIT 1",
                &[&scope],
            )
            .await
            .unwrap();
        row.is_some_and(|r| r.get::<_, i64>(0) == 0).then_some(())
    })
    .await;
    process.stop();

    // Runs that wrote rows and never committed: killed mid-run.
    let committed: Vec<i64> = pg
        .query(
            "SELECT version FROM refresh_runs WHERE scope = $1",
            &[&scope],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let written: Vec<u64> = pipeline
        .iso
        .clickhouse_client()
        .query("SELECT DISTINCT version FROM report_pages_hourly")
        .fetch_all()
        .await
        .unwrap();
    let interrupted = written
        .iter()
        .filter(|v| !committed.contains(&i64::try_from(**v).unwrap()))
        .count();
    let state = PgState::new(pg, &scope, "final-check");
    let mut check = Refresher::new(
        pipeline.iso.clickhouse_client(),
        state,
        Duration::from_secs(30),
    );
    let full = check
        .run(Kind::Full)
        .await
        .unwrap()
        .expect("the lease was given up");
    assert_eq!(
        full.record.drift,
        Some(0),
        "reports equal a recomputation from raw rows"
    );
    let client = pipeline.iso.clickhouse_client();
    assert_eq!(derived(&client, &pipeline.app).await, brute_force(&all));
    eprintln!(
        "refresher chaos: {} events, {kills} SIGKILLs in {:.1} s ({interrupted} of them mid-run, \
         after writing rows), drift 0 over {} app-days",
        all.len(),
        started.elapsed().as_secs_f64(),
        full.record.buckets
    );
    pipeline.stop().await;
}
