//! The relaxed order's per-start step times (`query_service::funnel_order::
//! relaxed_chains`, linear merges with running sums) against a scan by hand,
//! on the local ClickHouse: random users with 2…6 steps, many events in the
//! same millisecond (within a step and across steps), empty steps and random
//! windows.

use query_service::funnel_order::relaxed_chains;
use serde_json::Value;

/// Per start of `steps[0]`, its step-k times (k = 2…n), 0 when not reached:
/// the earliest step-k event strictly after step k-1, within `window` of the start.
fn by_hand(steps: &[Vec<u64>], window: u64) -> Vec<Vec<u64>> {
    let n = steps.len();
    let mut out = vec![Vec::new(); n - 1];
    for &a in &steps[0] {
        let mut previous = Some(a);
        for k in 1..n {
            let next = previous.and_then(|p| {
                steps[k]
                    .iter()
                    .copied()
                    .filter(|&x| x > p && x <= a + window)
                    .min()
            });
            out[k - 1].push(next.unwrap_or(0));
            previous = next;
        }
    }
    out
}

fn array(values: &[u64]) -> String {
    if values.is_empty() {
        return "emptyArrayUInt64()".to_owned();
    }
    let items: Vec<String> = values.iter().map(u64::to_string).collect();
    format!("CAST([{}] AS Array(UInt64))", items.join(", "))
}

fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            Value::String(text) => text.parse().unwrap(),
            other => other.as_u64().unwrap(),
        })
        .collect()
}

#[tokio::test]
async fn relaxed_chains_equal_a_scan_by_hand() {
    let mut rng = tally_testkit::journeys::Lcg(7u64);
    let mut next = |n: u64| rng.below(n);
    let client = reqwest::Client::new();
    for n in [2usize, 3, 4, 6] {
        let window = 3 + next(25);
        let mut users: Vec<Vec<Vec<u64>>> = Vec::new();
        for _ in 0..60 {
            let steps: Vec<Vec<u64>> = (0..n)
                .map(|k| {
                    let len = if k == 0 { 1 + next(8) } else { next(9) };
                    let mut times: Vec<u64> = (0..len).map(|_| 1_000 + next(40)).collect();
                    times.sort_unstable();
                    times
                })
                .collect();
            users.push(steps);
        }
        let rows: Vec<String> = users
            .iter()
            .enumerate()
            .map(|(id, steps)| {
                let arrays: Vec<String> = steps
                    .iter()
                    .enumerate()
                    .map(|(k, s)| format!("{} AS s{}", array(s), k + 1))
                    .collect();
                format!("SELECT {id} AS id, {}", arrays.join(", "))
            })
            .collect();
        let names: Vec<String> = (1..=n).map(|k| format!("s{k}")).collect();
        let outputs: Vec<String> = (2..=n).map(|k| format!("c{k}")).collect();
        let sql = format!(
            "SELECT id, {} FROM (SELECT id, {}, {} FROM ({})) ORDER BY id FORMAT JSONEachRow",
            outputs.join(", "),
            names.join(", "),
            relaxed_chains(n, window as i64).join(", "),
            rows.join(" UNION ALL ")
        );
        let response = client
            .post(tally_testkit::clickhouse_url())
            .body(sql)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {text}");
        let answers: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(answers.len(), users.len());
        for (id, (steps, answer)) in users.iter().zip(&answers).enumerate() {
            let found: Vec<Vec<u64>> = (2..=n).map(|k| numbers(&answer[format!("c{k}")])).collect();
            assert_eq!(
                found,
                by_hand(steps, window),
                "user {id}, {n} steps, window {window}: {steps:?}"
            );
        }
    }
}
