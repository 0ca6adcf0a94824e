//! The benchmark results as a markdown table.

use serde_json::Value;

/// The results as a markdown table.
pub fn table(results: &Value) -> String {
    let f = |v: &Value| {
        v.as_f64().map_or("-".into(), |x| {
            if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        })
    };
    let (b1, b2, b3, b4, b5, b6) = (
        &results["b1"],
        &results["b2"],
        &results["b3"],
        &results["b4"],
        &results["b5"],
        &results["b6"],
    );
    let mut out =
        String::from("| bench | figure | Tally | peer | ratio |\n|---|---|---|---|---|\n");
    out += &format!("| B1 gateway | events/s accepted, batches of 50 (p50 {} / p99 {} ms) | {} | {} (plain rdkafka producer) | {} |\n",
        f(&b1["gateway_p50_ms"]), f(&b1["gateway_p99_ms"]), f(&b1["gateway_events_per_sec"]), f(&b1["plain_producer_events_per_sec"]), f(&b1["ratio"]));
    out += &format!("| B2 aggregator | events/s into Redis + ClickHouse ({} events) | {} | {} (plain consumer) | {} |\n",
        b2["events"], f(&b2["aggregator_events_per_sec"]), f(&b2["plain_consumer_events_per_sec"]), f(&b2["ratio"]));
    out += &format!(
        "| B1 per core | events per CPU-second of the gateway process | {} | | |\n",
        f(&b1["gateway_events_per_cpu_second"])
    );
    if let Some(apis) = results["b1v"].as_object() {
        let native = apis.get("native").cloned().unwrap_or_default();
        out += &format!(
            "| B1v intake by API | native: events/s, 50 per request ({} events per gateway CPU-second) | {} | | |\n",
            f(&native["events_per_gateway_cpu_second"]),
            f(&native["events_per_sec"])
        );
        for (name, figures) in apis.iter().filter(|(name, _)| *name != "native") {
            out += &format!(
                "| B1v intake by API | {name}: events/s, {} per request, `{}` (p99 {} ms; {} events per gateway CPU-second, {} of native's) | {} | {} (native API) | {} |\n",
                figures["events_per_request"],
                figures["path"].as_str().unwrap_or("?"),
                f(&figures["p99_ms"]),
                f(&figures["events_per_gateway_cpu_second"]),
                f(&figures["cpu_ratio_to_native"]),
                f(&figures["events_per_sec"]),
                f(&native["events_per_sec"]),
                f(&figures["ratio_to_native"])
            );
        }
    }
    out += &format!(
        "| B2 per core | events per CPU-second of the aggregator process | {} | | |\n",
        f(&b2["aggregator_events_per_cpu_second"])
    );
    let b2r = &results["b2r"];
    out += &format!(
        "| B2r replay | events/s of `tally-admin replay` over the same events ({} events per CPU-second; {} s from command to exit) | {} | {} (B2 aggregator) | {} |\n",
        f(&b2r["replay_events_per_cpu_second"]),
        f(&b2r["replay_wall_seconds"]),
        f(&b2r["replay_events_per_sec"]),
        f(&b2["aggregator_events_per_sec"]),
        f(&b2r["ratio_to_aggregator"])
    );
    let b2c = &results["b2c"];
    out += &match b2c["skipped"].as_str() {
        Some(why) => format!("| B2c cluster | skipped: {why} | | | |\n"),
        None => format!(
            "| B2c cluster | events/s of an aggregator on ClickHouse {} shards × {} replicas and a {}-master Redis Cluster, all on this machine ({} events per CPU-second) | {} | {} (B2, one server) | {} |\n",
            b2c["shards"], b2c["replicas_per_shard"], b2c["redis_masters"],
            f(&b2c["events_per_cpu_second"]), f(&b2c["events_per_sec"]),
            f(&b2["aggregator_events_per_sec"]), f(&b2c["ratio_to_single_node"])
        ),
    };
    out += &format!(
        "| B3 freshness | send → push of the live stream, p50 / p99 ms ({} of {} probes at {} events/s) | {} / {} | | |\n",
        b3["pushed_probes"],
        b3["probes"],
        f(&b3["load_events_per_sec"]),
        f(&b3["push_p50_ms"]),
        f(&b3["push_p99_ms"])
    );
    for (what, key) in [
        ("send → acknowledged", "ack"),
        ("send → counted by /live (polled every 10 ms)", "live"),
        ("send → ClickHouse row", "clickhouse"),
    ] {
        out += &format!(
            "| B3 freshness | {what}, p50 / p99 ms | {} / {} | | |\n",
            f(&b3[format!("{key}_p50_ms")]),
            f(&b3[format!("{key}_p99_ms")])
        );
    }
    out += &format!(
        "| B4 live reads | /live p50 / p99 ms at {} req/s (achieved {}) | {} / {} | | |\n",
        f(&b4["target_rate"]),
        f(&b4["achieved_rate"]),
        f(&b4["p50_ms"]),
        f(&b4["p99_ms"])
    );
    out += &format!(
        "| B5 ad-hoc | /query 90-day group-by, p50 / p95 ms ({} rows, hot app {}) | {} / {} | | |\n",
        b5["dataset_rows"],
        b5["hot_app_rows"],
        f(&b5["group_by_90d_p50_ms"]),
        f(&b5["group_by_90d_p95_ms"])
    );
    let pages = &b5["pages"];
    out += &format!(
        "| B5 pages | /query 90-day page views and persons by page and device from {} (answers equal to raw: {}), p50 / p95 ms | {} / {} | raw rows: {} / {} | {} |\n",
        pages["source"].as_str().unwrap_or("?"),
        pages["answers_equal"],
        f(&pages["derived_p50_ms"]),
        f(&pages["derived_p95_ms"]),
        f(&pages["raw_p50_ms"]),
        f(&pages["raw_p95_ms"]),
        f(&pages["speedup_p95"])
    );
    out += &format!(
        "| B5 funnel | /funnel 30-day 3 steps, p50 / p95 ms | {} / {} | | |\n",
        f(&b5["funnel_30d_p50_ms"]),
        f(&b5["funnel_30d_p95_ms"])
    );
    out += &format!(
        "| B5 funnel | /funnel strict order, same steps, p50 / p95 ms | {} / {} | | |\n",
        f(&b5["strict_funnel_30d_p50_ms"]),
        f(&b5["strict_funnel_30d_p95_ms"])
    );
    let b5c = &results["b5c"];
    match b5c["skipped"].as_str() {
        Some(why) => out += &format!("| B5c cluster | skipped: {why} | | | |\n"),
        None => {
            for (what, figure) in [
                ("/query 90-day group-by", "group_by_90d"),
                ("/funnel 30-day 3 steps", "funnel_30d"),
                ("/funnel strict order", "strict_funnel_30d"),
            ] {
                let (p50, p95) = (format!("{figure}_p50_ms"), format!("{figure}_p95_ms"));
                let ratio = b5c[&p95]
                    .as_f64()
                    .zip(b5[&p95].as_f64())
                    .map(|(c, s)| c / s);
                out += &format!(
                    "| B5c cluster | {what} on ClickHouse {} shards × {} replicas (same dataset), p50 / p95 ms | {} / {} | {} (B5 p95, one server) | {} |\n",
                    b5c["shards"], b5c["replicas_per_shard"], f(&b5c[&p50]), f(&b5c[&p95]), f(&b5[&p95]),
                    f(&ratio.map_or(Value::Null, Value::from))
                );
            }
        }
    }
    for name in ["ingest-gateway", "stream-aggregator", "query-service"] {
        out += &format!("| B6 peak RSS | {name}, MiB | {} | | |\n", f(&b6[name]));
    }
    let b7 = &results["b7"];
    out += &format!(
        "| B7 dashboard | Overview, navigation → every panel rendered, cold (answer cache off), p50 / p95 ms over {} loads ({} stalled > 60 s and done again) | {} / {} | | |\n",
        b7["loads"],
        b7["stalled_loads"].as_u64().unwrap_or(0),
        f(&b7["cold_p50_ms"]),
        f(&b7["cold_p95_ms"])
    );
    out += &format!(
        "| B7 dashboard | the same, warm answer cache, p50 / p95 ms | {} / {} | | |\n",
        f(&b7["warm_p50_ms"]),
        f(&b7["warm_p95_ms"])
    );
    let p8 = &results["p8"];
    out += &format!(
        "| P8 refresh | incremental refresh after a minute of traffic ({} new rows, {} merges, {} deletions) on {} rows, s ({} app-days) | {} | {} (full rebuild, {} app-days; drift {}) | {} |\n",
        p8["minute"]["new_rows"],
        p8["minute"]["merges"],
        p8["minute"]["deletions"],
        p8["rows"],
        p8["incremental_app_days"],
        f(&p8["incremental_s"]),
        f(&p8["full_s"]),
        p8["full_app_days"],
        p8["drift"],
        f(&p8["ratio"])
    );
    out
}
