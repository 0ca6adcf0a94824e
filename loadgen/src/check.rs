//! The ground-truth checker: compares what ClickHouse and the query service
//! return with the truth computed from the generator's record.
//!
//! Failures (the report is `ok == false`):
//! * an acknowledged event missing from ClickHouse (lost) or stored more than
//!   once (duplicated);
//! * a count from the query service that differs from the truth: `/count` per
//!   app, `/live` per 5-second window and per event name (live leaves out bots
//!   and events received after the allowed lateness; see [`crate::truth::live`]);
//! * exact unique users per app in ClickHouse that differ from the truth;
//! * live unique users off by more than 2 % (HyperLogLog++ at precision 14 has
//!   a 0.81 % standard error);
//! * funnel step counts computed in ClickHouse that differ from the brute-force
//!   funnel over the record;
//! * a `sessions` table that differs from sessionizing the record by
//!   definition (30-minute gap per app and visitor).

use crate::record::Acked;
use crate::truth::{compute, live, sessions, AppTruth, LiveTruth, SessionTruth, FUNNEL};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::postgres::PostgresConfig;
use tally_schemas::live::{window_start, WINDOW_MS};
use tally_schemas::session::SESSION_GAP_MS;

/// Where to look (built by [`CheckConfig::for_records`]).
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// ClickHouse holding the `events` table.
    pub clickhouse: ClickHouseConfig,
    /// Query service base URL (`None`: ClickHouse checks only).
    pub query: Option<String>,
    /// Most live windows the query service serves per request.
    pub max_live_windows: i64,
    /// The aggregator's allowed lateness (`TALLY_AGGREGATOR_LATENESS_MS`).
    pub allowed_lateness_ms: i64,
    /// Read key per app for the query service (see [`crate::send::provision_read_keys`]).
    pub read_keys: HashMap<String, String>,
    /// Events of requests left unanswered (see
    /// [`crate::send::run_with_unanswered`]): those found in ClickHouse were
    /// delivered and count like acknowledged ones; the others were not.
    pub unanswered: Vec<Acked>,
}

impl CheckConfig {
    /// The query service's default live horizon (`TALLY_QUERY_MAX_WINDOWS`: one hour).
    pub const MAX_LIVE_WINDOWS: i64 = 720;
    /// The aggregator's default allowed lateness (`TALLY_AGGREGATOR_LATENESS_MS`).
    pub const ALLOWED_LATENESS_MS: i64 = 30_000;

    /// Checks of `records` against ClickHouse at `clickhouse` and the query
    /// service at `query`, with a fresh read key per app of `records` (created
    /// in `postgres`), and the services' default live horizon and lateness
    /// (change them with [`CheckConfig::max_live_windows`] and
    /// [`CheckConfig::allowed_lateness_ms`]).
    pub async fn for_records(
        clickhouse: ClickHouseConfig,
        query: &str,
        postgres: &PostgresConfig,
        records: &[Acked],
    ) -> Result<Self, String> {
        let apps = records.iter().map(|record| record.app_id.as_str());
        Ok(CheckConfig {
            clickhouse,
            query: Some(query.to_owned()),
            max_live_windows: Self::MAX_LIVE_WINDOWS,
            allowed_lateness_ms: Self::ALLOWED_LATENESS_MS,
            read_keys: crate::send::provision_read_keys(postgres, apps).await?,
            unanswered: Vec::new(),
        })
    }

    /// With the events of unanswered requests (a client cannot know whether
    /// those were stored: the gateway may have died after producing them).
    pub fn with_unanswered(mut self, unanswered: Vec<Acked>) -> Self {
        self.unanswered = unanswered;
        self
    }

    /// With the query service serving at most `windows` live windows.
    pub fn max_live_windows(mut self, windows: i64) -> Self {
        self.max_live_windows = windows;
        self
    }

    /// With the aggregator's allowed lateness `ms`.
    pub fn allowed_lateness_ms(mut self, ms: i64) -> Self {
        self.allowed_lateness_ms = ms;
        self
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Acknowledged events checked (with the unanswered ones found stored).
    pub events_checked: u64,
    /// Events of unanswered requests that were stored (counted as delivered).
    pub unanswered_stored: u64,
    /// Apps checked.
    pub apps: usize,
    /// Acknowledged events not in ClickHouse.
    pub lost: u64,
    /// Acknowledged events stored more than once (extra copies).
    pub duplicated: u64,
    /// Human-readable mismatches (first 50).
    pub mismatches: Vec<String>,
    /// Number of mismatches (all).
    pub mismatch_count: u64,
    /// Of those, mismatches of the live windows (`/live`).
    pub live_mismatches: u64,
    /// Sessions of the definition compared with the `sessions` table.
    pub sessions_checked: u64,
    /// Apps whose sessions differ from the definition.
    pub session_mismatches: u64,
    /// Largest relative error of live unique users over the apps.
    pub max_unique_error: f64,
    /// Whether everything matched.
    pub ok: bool,
}

impl Report {
    fn live_mismatch(&mut self, text: String) {
        self.live_mismatches += 1;
        self.mismatch(text);
    }

    fn mismatch(&mut self, text: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < 50 {
            self.mismatches.push(text);
        }
    }
}

/// Error reaching a store.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// ClickHouse failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// The query service failed.
    #[error("query service: {0}")]
    Query(String),
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct IdCount {
    event_id: String,
    n: u64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct FunnelRow {
    level: u8,
    users: u64,
}

/// Runs every check.
pub async fn check(records: &[Acked], config: &CheckConfig) -> Result<Report, CheckError> {
    // Events whose request went unanswered but which the gateway stored were
    // delivered: the truth counts them like acknowledged ones.
    let delivered = stored_unanswered(config).await?;
    let unanswered_stored = delivered.len() as u64;
    let all: Vec<Acked> = records.iter().cloned().chain(delivered).collect();
    let records = all.as_slice();
    let truth = compute(records);
    let live_truth = live(records, config.allowed_lateness_ms);
    let session_truth = sessions(records, SESSION_GAP_MS);
    let mut report = Report {
        events_checked: records.len() as u64,
        unanswered_stored,
        apps: truth.len(),
        ..Report::default()
    };
    let client = config.clickhouse.client();
    let mut by_app: HashMap<&str, Vec<&Acked>> = HashMap::new();
    for record in records {
        by_app.entry(&record.app_id).or_default().push(record);
    }
    for (app_id, app_records) in &by_app {
        let stored: HashMap<String, u64> = client
            .query("SELECT event_id, count() AS n FROM events WHERE app_id = ? GROUP BY event_id")
            .bind(*app_id)
            .fetch_all::<IdCount>()
            .await?
            .into_iter()
            .map(|row| (row.event_id, row.n))
            .collect();
        for record in app_records {
            match stored.get(&record.event_id).copied().unwrap_or(0) {
                0 => {
                    report.lost += 1;
                    report.mismatch(format!("lost: {} ({app_id})", record.event_id));
                }
                1 => {}
                n => {
                    report.duplicated += n - 1;
                    report.mismatch(format!("duplicated x{n}: {} ({app_id})", record.event_id));
                }
            }
        }
    }
    for (app_id, app) in &truth {
        let uniques: u64 = client
            .query("SELECT uniqExact(distinct_id) FROM events WHERE app_id = ?")
            .bind(app_id.as_str())
            .fetch_one()
            .await?;
        if uniques != app.uniques {
            report.mismatch(format!(
                "uniques {app_id}: clickhouse {uniques} vs truth {}",
                app.uniques
            ));
        }
        check_funnel(&client, app_id, app, &mut report).await?;
        let want = session_truth
            .get(app_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        check_sessions(&client, app_id, want, &mut report).await?;
        if let Some(query) = &config.query {
            let live = live_truth.get(app_id).cloned().unwrap_or_default();
            let horizon = (app.ts_range, config.max_live_windows);
            let key = config.read_keys.get(app_id).map_or("", String::as_str);
            let query = (query.as_str(), key);
            check_query_service(query, app_id, app.events, horizon, &live, &mut report).await?;
        }
    }
    report.ok = report.lost == 0 && report.duplicated == 0 && report.mismatch_count == 0;
    Ok(report)
}

/// The events of `config.unanswered` that ClickHouse holds.
async fn stored_unanswered(config: &CheckConfig) -> Result<Vec<Acked>, CheckError> {
    let mut by_app: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    for record in &config.unanswered {
        by_app.entry(&record.app_id).or_default().push(record);
    }
    let client = config.clickhouse.client();
    let mut delivered = Vec::new();
    for (app_id, records) in by_app {
        let ids: Vec<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
        let stored: std::collections::HashSet<String> = client
            .query("SELECT DISTINCT event_id FROM events WHERE app_id = ? AND has(?, event_id)")
            .bind(app_id)
            .bind(ids)
            .fetch_all::<String>()
            .await?
            .into_iter()
            .collect();
        delivered.extend(
            records
                .into_iter()
                .filter(|r| stored.contains(&r.event_id))
                .cloned(),
        );
    }
    Ok(delivered)
}

async fn check_funnel(
    client: &clickhouse::Client,
    app_id: &str,
    app: &AppTruth,
    report: &mut Report,
) -> Result<(), CheckError> {
    // Greedy ordered funnel without a time limit, strictly increasing times
    // (portable: 18.16's windowFunnel only takes second-resolution times).
    let rows = client
        .query(
            "SELECT level, count() AS users FROM ( \
               SELECT if(length(ac2) = 0, 1, if(length(pu3) = 0, 2, 3)) AS level FROM ( \
                 SELECT pv, arrayFilter(x -> x > arrayReduce('min', pv), ac) AS ac2, \
                        arrayFilter(x -> x > arrayReduce('min', ac2), pu) AS pu3 FROM ( \
                   SELECT groupArrayIf(ts_ms, name = ?) AS pv, groupArrayIf(ts_ms, name = ?) AS ac, \
                          groupArrayIf(ts_ms, name = ?) AS pu \
                   FROM events WHERE app_id = ? GROUP BY distinct_id) \
                 WHERE length(pv) > 0)) \
             GROUP BY level",
        )
        .bind(FUNNEL[0])
        .bind(FUNNEL[1])
        .bind(FUNNEL[2])
        .bind(app_id)
        .fetch_all::<FunnelRow>()
        .await?;
    let mut reached = [0u64; 3];
    for row in rows {
        for reached_step in reached.iter_mut().take(usize::from(row.level)) {
            *reached_step += row.users;
        }
    }
    if reached != app.funnel {
        report.mismatch(format!(
            "funnel {app_id}: clickhouse {reached:?} vs truth {:?}",
            app.funnel
        ));
    }
    Ok(())
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct SessionShape {
    distinct_id: String,
    start_ms: u64,
    end_ms: u64,
    events: u32,
}

/// The `sessions` table (latest versions, merged-away ones left out) must hold
/// exactly the sessions of the definition.
async fn check_sessions(
    client: &clickhouse::Client,
    app_id: &str,
    want: &[SessionTruth],
    report: &mut Report,
) -> Result<(), CheckError> {
    let mut got: Vec<SessionTruth> = client
        .query(
            "SELECT distinct_id, start_ms, end_ms, events FROM sessions FINAL \
             WHERE app_id = ? AND dropped = 0",
        )
        .bind(app_id)
        .fetch_all::<SessionShape>()
        .await?
        .into_iter()
        .map(|s| {
            let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            (s.distinct_id, ms(s.start_ms), ms(s.end_ms), s.events)
        })
        .collect();
    got.sort();
    if got != want {
        report.session_mismatches += 1;
        let extra = got.iter().filter(|s| !want.contains(s)).count();
        let missing = want.iter().filter(|s| !got.contains(s)).count();
        report.mismatch(format!(
            "sessions {app_id}: {} in ClickHouse vs {} by definition ({missing} missing, {extra} wrong or extra)",
            got.len(),
            want.len()
        ));
    }
    report.sessions_checked += want.len() as u64;
    Ok(())
}

async fn get_json(url: &str, read_key: &str) -> Result<Value, CheckError> {
    // A hung store must fail the check, not stall it.
    let response = reqwest::Client::new()
        .get(url)
        .timeout(std::time::Duration::from_secs(30))
        .bearer_auth(read_key)
        .send()
        .await
        .map_err(|e| CheckError::Query(e.to_string()))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| CheckError::Query(e.to_string()))?;
    if !status.is_success() {
        return Err(CheckError::Query(format!("{url}: HTTP {status}: {body}")));
    }
    Ok(body)
}

/// `/count` must equal the ClickHouse truth (`events`, bots included); `/live`
/// must show `live` (bots and late events left out) for every window from
/// the first event's on, if the service serves that far back (`max_windows`).
async fn check_query_service(
    (query, read_key): (&str, &str),
    app_id: &str,
    events: u64,
    ((from, to), max_windows): ((i64, i64), i64),
    live: &LiveTruth,
    report: &mut Report,
) -> Result<(), CheckError> {
    let count = get_json(
        &format!(
            "{query}/api/v1/analytics/{app_id}/count?from={from}&to={}",
            to + 1
        ),
        read_key,
    )
    .await?;
    if count["count"].as_u64() != Some(events) {
        report.mismatch(format!(
            "count {app_id}: query service {} vs truth {events}",
            count["count"]
        ));
    }
    // Live: every window from the first event's up to now, if the service serves that far back.
    let now_window = window_start(tally_common::Clock::now_ms(&tally_common::SystemClock));
    let needed = (now_window - window_start(from)) / WINDOW_MS + 1;
    if needed > max_windows {
        return Ok(()); // older than the live horizon: ClickHouse checks only
    }
    let answer = get_json(
        &format!("{query}/api/v1/analytics/{app_id}/live?windows={needed}"),
        read_key,
    )
    .await?;
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for window in answer["windows"].as_array().into_iter().flatten() {
        let start = window["start_ms"].as_i64().unwrap_or_default();
        let got = window["events"].as_u64().unwrap_or_default();
        let want = live.windows.get(&start).copied().unwrap_or_default();
        if !want.admits(got) {
            report.live_mismatch(format!(
                "live {app_id} window {start}: {got} vs truth {} (+{} maybe late)",
                want.sure, want.maybe
            ));
        }
        for (name, n) in window["by_name"].as_object().into_iter().flatten() {
            *names.entry(name.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    for name in names.keys().chain(live.by_name.keys()) {
        let got = names.get(name).copied().unwrap_or(0);
        let want = live.by_name.get(name).copied().unwrap_or_default();
        if !want.admits(got) {
            report.live_mismatch(format!(
                "live {app_id} events named {name}: {got} vs truth {} (+{} maybe late)",
                want.sure, want.maybe
            ));
        }
    }
    let estimate = answer["unique_users"].as_f64().unwrap_or_default();
    let truth = live.uniques as f64;
    let error = (estimate - truth).abs() / truth.max(1.0);
    report.max_unique_error = report.max_unique_error.max(error);
    if error > 0.02 && (estimate - truth).abs() > 2.0 {
        report.live_mismatch(format!(
            "live {app_id} unique users: {estimate} vs truth {truth} ({:.2} % off)",
            error * 100.0
        ));
    }
    Ok(())
}

/// Prints the report for a terminal.
pub fn print(report: &Report) {
    println!(
        "checked {} acknowledged events of {} apps and {} sessions: lost {}, duplicated {}, mismatches {}, max live-uniques error {:.2} %",
        report.events_checked,
        report.apps,
        report.sessions_checked,
        report.lost,
        report.duplicated,
        report.mismatch_count,
        report.max_unique_error * 100.0
    );
    for mismatch in &report.mismatches {
        println!("  MISMATCH {mismatch}");
    }
    println!("{}", if report.ok { "OK" } else { "FAILED" });
}
