//! Every golden statement of the query service (`query-service/tests/golden/`:
//! ad-hoc, session metrics, funnels in every order, retention, persons) and of
//! the report refresher (`report-refresher/tests/golden/`) and of replays
//! (`admin/tests/golden/`: compare) runs on both
//! ClickHouse versions Tally supports: the local server (Debian's 18.16) and
//! current ClickHouse (chdb-core 26.x, embedded, installed by `scripts/stack`
//! into `~/.cache/tally/chdb-<version>`). Both get the same migrations and the
//! same few rows, and a statement passes when it runs without an error: no
//! syntax or function only one version knows.
//!
//! The statements also run on the local ClickHouse cluster (issue 18; 2
//! shards × 2 replicas of 18.16, `scripts/cluster up`) in its cluster layout,
//! as the services run them there (`distributed_product_mode = 'global'`,
//! mutations on every shard's local tables): every read answers exactly what
//! the single server answers, and every read answers on 26.x what it answers
//! on 18.16 (rows compared as JSON values, order-free, numbers to 9
//! significant digits).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tally_testkit::Isolation;

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_versions")
}

/// The Python of the pinned chdb-core install, or why it is not usable.
fn chdb_python() -> Result<PathBuf, String> {
    let requirements = std::fs::read_to_string(support_dir().join("requirements.txt"))
        .map_err(|err| format!("reading requirements.txt: {err}"))?;
    let version = requirements
        .lines()
        .find_map(|line| line.strip_prefix("chdb-core=="))
        .ok_or("requirements.txt pins no chdb-core version")?
        .trim();
    let dir = tally_common::config::cache_dir().join(format!("chdb-{version}"));
    let installed = std::fs::read_to_string(dir.join("requirements.txt")).unwrap_or_default();
    let python = dir.join("bin/python");
    if installed != requirements || !python.is_file() {
        return Err(format!(
            "chdb-core {version} is not installed as pinned in {} (run scripts/stack up)",
            dir.display()
        ));
    }
    Ok(python)
}

/// `value` as a ClickHouse literal (what the client's binder sends).
fn literal(value: &Value) -> String {
    match value {
        Value::String(text) => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(literal).collect();
            format!("[{}]", items.join(", "))
        }
        other => panic!("no literal for {other}"),
    }
}

/// The golden statements, their binds substituted: name → SQL.
fn golden_statements() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        "../query-service/tests/golden",
        "../report-refresher/tests/golden",
        "../admin/tests/golden",
    ];
    let mut statements = BTreeMap::new();
    for entry in dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
    {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let golden = std::fs::read_to_string(&path).unwrap();
        let (text, binds) = golden.split_once("\n-- binds: ").unwrap();
        let binds: Vec<Value> = serde_json::from_str(binds.trim()).unwrap();
        let parts: Vec<&str> = text.split('?').collect();
        assert_eq!(
            parts.len(),
            binds.len() + 1,
            "{name}: placeholders and binds"
        );
        let mut sql = parts[0].to_owned();
        for (bind, rest) in binds.iter().zip(&parts[1..]) {
            sql.push_str(&literal(bind));
            sql.push_str(rest);
        }
        statements.insert(name, sql);
    }
    assert!(
        statements.len() >= 9,
        "golden statements found: {statements:?}"
    );
    statements
}

/// A few rows in the golden statements' app and range (app-1, 2023-11-14 … 21).
const ROWS: &[&str] = &[
    "INSERT INTO events (app_id, event_date, timestamp, ts_ms, event_id, name, distinct_id, prop_keys, prop_values, country) \
     VALUES ('app-1', '2023-11-15', 1700000000, 1700000000500, 'e1', 'signup', 'u1', ['plan', 'price', 'amount'], ['pro', '20.00', '12'], 'US'), \
     ('app-1', '2023-11-15', 1700000100, 1700000100000, 'e2', 'purchase', 'u1', ['price', 'region'], ['35.5', 'north'], 'US'), \
     ('app-1', '2023-11-16', 1700090000, 1700090000000, 'e3', 'page_view', 'u2', ['price'], ['free'], '')",
    "INSERT INTO sessions (app_id, created_date, distinct_id, session_id, start_ms, end_ms, start, duration_ms, events, page_views, entry_page, version) \
     VALUES ('app-1', '2023-11-15', 'u1', 's1', 1700000000500, 1700000100000, 1700000000, 99500, 2, 1, '/', 1)",
    "INSERT INTO person_distinct_ids (app_id, distinct_id, person_id, version, is_deleted) \
     VALUES ('app-1', 'u1', 'u2', 1, 0), ('app-1', 'u2', 'u2', 2, 0)",
    "INSERT INTO persons (app_id, person_id, prop_keys, prop_values, version, is_deleted) \
     VALUES ('app-1', 'u2', ['plan', 'seats'], ['pro', '3'], 3, 0)",
];

/// The cluster's local tables that [`ROWS`] fill.
const REPLICATED: [&str; 4] = [
    "events_local",
    "sessions_local",
    "person_distinct_ids_local",
    "persons_local",
];

/// Whether a statement writes (an `INSERT … SELECT` of the refresher or a
/// mutation): it takes no output format and runs after every read.
fn writes(sql: &str) -> bool {
    sql.starts_with("INSERT") || sql.starts_with("ALTER")
}

/// Runs the rows, then every read, then every write at `url` (database and
/// settings in it), each statement as `form` gives it; name → output or error.
async fn run_all(
    url: &str,
    statements: &BTreeMap<String, String>,
    form: impl Fn(&str) -> String,
    replicated: Option<&str>,
) -> BTreeMap<String, Result<String, String>> {
    let http = reqwest::Client::new();
    let run = |sql: String| {
        let request = http.post(url).body(sql);
        async move {
            let response = request.send().await.unwrap();
            let ok = response.status().is_success();
            let text = response.text().await.unwrap();
            if ok {
                Ok(text)
            } else {
                Err(text)
            }
        }
    };
    for row in ROWS {
        if let Err(text) = run((*row).to_owned()).await {
            panic!("{url} refused the rows: {text}");
        }
    }
    if let Some(database) = replicated {
        // On the cluster a read may go to the replica that has not fetched
        // the rows yet (seen once: a session missing from `sessions FINAL`).
        tally_testkit::cluster::sync_replicas(database, &REPLICATED).await;
    }
    let mut results = BTreeMap::new();
    let (reads, writes): (Vec<_>, Vec<_>) = statements.iter().partition(|(_, sql)| !writes(sql));
    for (name, sql) in reads {
        let sql = format!("{} FORMAT JSONEachRow", form(sql));
        results.insert(name.clone(), run(sql).await);
    }
    for (name, sql) in writes {
        results.insert(name.clone(), run(form(sql)).await);
    }
    results
}

/// Whether a statement's answers are compared across servers: every read
/// but the storage figures (`lifecycle_storage`: bytes on disk differ by
/// engine and version, and a cluster counts each replicated bookkeeping table
/// once per shard).
fn comparable(name: &str, sql: &str) -> bool {
    !writes(sql) && name != "lifecycle_storage"
}

/// Rows of a JSONEachRow output as comparable text: each row's values as
/// JSON with numbers (also quoted 64-bit ones) to 9 significant digits, sorted.
fn normal(output: &str) -> Vec<String> {
    fn value(v: &Value) -> Value {
        match v {
            Value::Number(n) => json!(format!("{:.8e}", n.as_f64().unwrap_or(f64::NAN))),
            Value::String(text) => match text.parse::<f64>() {
                Ok(n)
                    if text
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '-' || c == '.') =>
                {
                    json!(format!("{n:.8e}"))
                }
                _ => v.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(value).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), value(v))).collect())
            }
            other => other.clone(),
        }
    }
    let mut rows: Vec<String> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| value(&serde_json::from_str(line).unwrap()).to_string())
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_statements_run_on_clickhouse_18_16_and_current() {
    let statements = golden_statements();

    // The local server (18.16), in a fresh migrated database.
    let iso = Isolation::new(1).await;
    let url = format!(
        "{}/?database={}",
        iso.clickhouse.url, iso.clickhouse.database
    );
    let version = reqwest::Client::new()
        .post(&url)
        .body("SELECT version()")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let single = run_all(&url, &statements, str::to_owned, None).await;
    iso.cleanup().await;
    let old: BTreeMap<String, Option<String>> = single
        .iter()
        .map(|(name, result)| (name.clone(), result.as_ref().err().cloned()))
        .collect();

    // The local cluster (18.16), in the cluster layout, as the services run
    // statements there.
    let cluster = tally_testkit::cluster::on_cluster(
        1,
        &tally_testkit::kafka_brokers(),
        &tally_testkit::redis_url(),
        1,
    )
    .await;
    let database = cluster.clickhouse.database.clone();
    let layout = tally_schemas::cluster::Cluster {
        name: tally_testkit::cluster::CLUSTER,
        database: &database,
    };
    let url = format!(
        "{}/?database={database}&insert_distributed_sync=1&distributed_product_mode=global",
        cluster.clickhouse.url
    );
    // The lifecycle's reads of `system.parts` cover every shard there; any
    // other statement is read as is, a mutation on every shard's local table.
    let mut on_cluster = run_all(
        &url,
        &statements,
        |sql| layout.service_form(sql),
        Some(&database),
    )
    .await;
    // As the services read them: the local tables' parts under the tables' names.
    for output in on_cluster.values_mut().flatten() {
        *output = output.replace("_local\"", "\"");
    }
    cluster.cleanup().await;
    let mut differences = Vec::new();
    for (name, result) in &on_cluster {
        match (result, &single[name]) {
            (Err(error), _) => differences.push(format!("{name} on the cluster: {error}")),
            (Ok(out), Ok(expected))
                if comparable(name, &statements[name]) && normal(out) != normal(expected) =>
            {
                differences.push(format!(
                    "{name}: the cluster answers {out:?}, one server {expected:?}"
                ));
            }
            _ => {}
        }
    }
    let compared = on_cluster
        .iter()
        .filter(|(name, _)| comparable(name, &statements[*name]))
        .count();
    println!(
        "cluster: {compared} reads compared with one server, {} statements run",
        on_cluster.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));

    // Current ClickHouse, embedded.
    let python = chdb_python().unwrap_or_else(|why| panic!("{why}"));
    // Each migration as a run on the previous version executes it (a
    // rebuild's steps included: the rename, copy and swap run on 26.x too).
    let migrations: Vec<String> = tally_schemas::migrations::CLICKHOUSE
        .iter()
        .map(|m| m.linear_statements().join(";\n"))
        .chain(ROWS.iter().map(|rows| (*rows).to_owned()))
        .collect();
    let request = json!({
        "migrations": migrations,
        // Reads first: a mutation must not change what a read sees.
        "statements": statements
            .iter()
            .filter(|(_, sql)| !writes(sql))
            .chain(statements.iter().filter(|(_, sql)| writes(sql)))
            .map(|(name, sql)| json!({"name": name, "sql": sql}))
            .collect::<Vec<_>>(),
    });
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .arg(support_dir().join("run.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "chdb run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let current = answer["version"].as_str().unwrap_or_default().to_owned();
    println!(
        "ClickHouse {} and {current}: {} statements",
        version.trim(),
        statements.len()
    );
    assert!(
        version.starts_with("18.16"),
        "the local server is {version}"
    );
    assert!(
        current
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok())
            >= Some(24),
        "chdb is {current}"
    );
    let mut failures = Vec::new();
    let mut compared_current = 0;
    for name in statements.keys() {
        if let Some(Some(error)) = old.get(name) {
            failures.push(format!("{name} on 18.16: {error}"));
        }
        if let (Some(out), Ok(expected)) = (answer["outputs"][name].as_str(), &single[name]) {
            if comparable(name, &statements[name]) {
                compared_current += 1;
                if normal(out) != normal(expected) {
                    failures.push(format!(
                        "{name}: {current} answers {out:?}, 18.16 {expected:?}"
                    ));
                }
            }
        }
        if let Some(error) = answer["results"][name].as_str() {
            failures.push(format!("{name} on {current}: {error}"));
        }
        assert!(
            answer["results"].get(name).is_some(),
            "{name} not run on chdb"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("{current}: {compared_current} reads compared with 18.16");
    assert_eq!(
        compared_current, compared,
        "every comparable read answered on {current}"
    );
}
