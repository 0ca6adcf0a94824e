//! B7: the dashboard's Overview in a real browser on the B5 historical
//! dataset — time from navigation to every panel rendered, p50/p95 over
//! `loads` loads, cold (a query service with its answer cache off: every
//! panel's statements run on ClickHouse) and warm (cache on, primed by one
//! load). The browser part is `loadgen/b7/overview.mjs` (Debian's Chromium
//! through `playwright-core` from `web/node_modules`); the dashboard must be
//! built (`web/dist`, which `./tally bench` and `./tally test` build). A load
//! not rendered within 60 s is reported with its reasons (`stalls`) and done
//! again; two in a row fail the run.

use super::process::Service;
use super::BenchConfig;
use crate::stats::{ms, percentile};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tally_common::accounts::{self, Role};

/// The repository (the bench runs from its root; `TALLY_ROOT` overrides).
fn root() -> PathBuf {
    std::env::var_os("TALLY_ROOT").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// A dashboard admin of `app` with a fresh password: (e-mail, password).
async fn login_for(config: &BenchConfig, app: &str) -> Result<(String, String), String> {
    let client = config.postgres.connect().await.map_err(|e| e.to_string())?;
    let email = format!("{}@bench.local", super::unique("b7"));
    let password = accounts::generate_session_token()[3..23].to_owned();
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || accounts::hash_password(&password))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    accounts::upsert_user(&client, &email, &hash)
        .await
        .map_err(|e| e.to_string())?;
    accounts::grant(&client, &email, app, Role::Admin)
        .await
        .map_err(|e| e.to_string())?;
    Ok((email, password))
}

/// Runs B7 against `app` of the history database that `history_env` points
/// the query service at.
pub async fn b7(
    config: &BenchConfig,
    history_env: &[(&'static str, String)],
    app: &str,
    loads: usize,
) -> Result<Value, String> {
    let root = root();
    let web = root.join("web/dist");
    if !web.join("index.html").exists() {
        return Err(format!(
            "B7 needs the dashboard built in {} (cd web && npm ci && npm run build)",
            web.display()
        ));
    }
    let web_dir = std::fs::canonicalize(&web).map_err(|e| e.to_string())?;
    let with = |cache: &str| {
        let mut env: Vec<(&str, String)> = history_env
            .iter()
            .filter(|(name, _)| *name != "TALLY_QUERY_CACHE_SECS")
            .cloned()
            .collect();
        env.push(("TALLY_QUERY_CACHE_SECS", cache.to_owned()));
        env.push(("TALLY_WEB_DIR", web_dir.display().to_string()));
        env
    };
    let cold = Service::start(config, "query-service", "TALLY_QUERY_ADDR", &with("0")).await?;
    let warm = Service::start(config, "query-service", "TALLY_QUERY_ADDR", &with("3600")).await?;
    let (email, password) = login_for(config, app).await?;
    let script = root.join("loadgen/b7/overview.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .env("B7_COLD", &cold.url)
        .env("B7_WARM", &warm.url)
        .env("B7_EMAIL", &email)
        .env("B7_PASSWORD", &password)
        .env("B7_APP", app)
        .env("B7_LOADS", loads.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .map_err(|_| "B7: the browser did not finish in 15 minutes".to_owned())?
        .map_err(|e| format!("B7: node {}: {e}", script.display()))?;
    cold.stop();
    warm.stop();
    if !output.status.success() {
        return Err(format!(
            "B7 failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let result: Value = text
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("B7: no result in {text:?}"))?;
    let series = |name: &str| -> Vec<Duration> {
        result[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect()
    };
    let (cold_ms, warm_ms) = (series("cold_ms"), series("warm_ms"));
    // Loads that were not rendered within 60 s (each done again), with why.
    let stalls = result["stalls"].as_array().cloned().unwrap_or_default();
    for stall in &stalls {
        eprintln!("B7: stalled: {}", stall.as_str().unwrap_or_default());
    }
    Ok(json!({
        "loads": loads,
        "stalled_loads": stalls.len(), "stalls": stalls,
        "cold_p50_ms": ms(percentile(&cold_ms, 0.5)), "cold_p95_ms": ms(percentile(&cold_ms, 0.95)),
        "warm_p50_ms": ms(percentile(&warm_ms, 0.5)), "warm_p95_ms": ms(percentile(&warm_ms, 0.95)),
        "cold_ms": result["cold_ms"], "warm_ms": result["warm_ms"],
    }))
}
