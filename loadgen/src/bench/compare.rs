//! `--compare`: each figure of a run against the previous saved run.
//!
//! Every run moves the results it replaces to `<out>-previous.json` before
//! saving its own, so the last two runs are always on disk; `--compare`
//! prints, after the run's table, every numeric figure of both (flattened
//! to dotted paths such as `b1.gateway_events_per_sec`) with its change.
//! `--compare-only` prints the same for the two saved files without running.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the run saved before `out` is kept.
pub fn previous_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("bench");
    out.with_file_name(format!("{stem}-previous.json"))
}

/// Moves the results at `out` (if any) to [`previous_path`].
pub fn keep_previous(out: &Path) -> Result<(), String> {
    if out.exists() {
        std::fs::rename(out, previous_path(out)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Reads saved results.
pub fn load(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every number in `value`, by dotted path.
pub fn figures(value: &Value) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, inner, out);
                }
            }
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(prefix.to_owned(), x);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// A markdown table of every figure of `previous` and `current`.
pub fn compare(previous: &Value, current: &Value) -> String {
    let (before, now) = (figures(previous), figures(current));
    let mut paths: Vec<&String> = before.keys().chain(now.keys()).collect();
    paths.sort();
    paths.dedup();
    let show = |x: Option<&f64>| {
        x.map_or("-".to_owned(), |x| {
            if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.3}")
            }
        })
    };
    let mut out =
        String::from("| figure | previous run | this run | change |\n|---|---|---|---|\n");
    for path in paths {
        let (b, n) = (before.get(path), now.get(path));
        let change = match (b, n) {
            (Some(b), Some(n)) if *b != 0.0 => format!("{:+.1} %", (n - b) / b.abs() * 100.0),
            _ => String::new(),
        };
        out += &format!("| {path} | {} | {} | {change} |\n", show(b), show(n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_are_flattened_and_compared() {
        let before =
            json!({"b1": {"ratio": 0.5, "events": 1000}, "b5c": {"skipped": "no cluster"}});
        let now = json!({"b1": {"ratio": 0.6, "events": 1000}, "b2": {"ratio": 0.9}});
        let table = compare(&before, &now);
        assert!(
            table.contains("| b1.ratio | 0.500 | 0.600 | +20.0 % |"),
            "{table}"
        );
        assert!(
            table.contains("| b1.events | 1000 | 1000 | +0.0 % |"),
            "{table}"
        );
        assert!(table.contains("| b2.ratio | - | 0.900 |  |"), "{table}");
        assert!(!table.contains("skipped"));
        assert_eq!(
            previous_path(Path::new("target/bench/bench.json")),
            Path::new("target/bench/bench-previous.json")
        );
    }
}
