//! The cluster layout on a real cluster (issue 18): the local 2 shards × 2
//! replicas of ClickHouse 18.16 with ZooKeeper (`scripts/cluster up`, started
//! by `./tally test`). The migration runner in cluster mode applies every
//! migration's cluster statements (`tally_schemas::cluster`, golden in
//! `schemas/golden/cluster.sql`) to a fresh database in order — the rebuild of
//! migration 0012 included — once, though two runners on two nodes start
//! together; and
//! then (once every replica has synchronised: replication is asynchronous, a
//! read through `Distributed` may ask either replica): rows written through
//! the `Distributed` tables land whole per visitor, on the shard
//! `tally_schemas::cluster::shard_hash` names,
//! on one shard, the replicas of a shard agree, the views count every page
//! view once (not once per replica), and the bookkeeping table is complete on
//! every node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use tally_common::clickhouse::{migrate, ClickHouseConfig};
use tally_schemas::migrations::CLICKHOUSE;
use tally_testkit::unique;

/// The local cluster's nodes (node N = shard (N+1)/2), `TALLY_CLUSTER_NODES`
/// to point elsewhere.
fn nodes() -> Vec<String> {
    std::env::var("TALLY_CLUSTER_NODES")
        .unwrap_or_else(|_| {
            "http://127.0.0.1:8201,http://127.0.0.1:8202,http://127.0.0.1:8203,http://127.0.0.1:8204"
                .into()
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn client(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false)
        .with_setting("insert_distributed_sync", "1")
}

async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client
        .query(sql)
        .fetch_one()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `SYSTEM SYNC REPLICA` of `tables` on every node.
async fn sync(nodes: &[String], database: &str, tables: &[&str]) {
    for node in nodes {
        for table in tables {
            client(node, database)
                .query(&format!("SYSTEM SYNC REPLICA {table}"))
                .execute()
                .await
                .unwrap_or_else(|e| panic!("{node} {table}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_on_the_cluster_and_place_rows_by_visitor() {
    let nodes = nodes();
    let database = format!("tally_{}", unique("cl"));
    let server = client(&nodes[0], "default");
    server
        .query("SELECT 1")
        .execute()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the local cluster (scripts/cluster up) at {}: {e}",
                nodes[0]
            )
        });
    // Two runners, on two nodes, at once: the migration lock (a table
    // replicated on every node) lets one apply everything; the other waits
    // and finds it applied.
    let config = |node: &str| ClickHouseConfig {
        url: node.to_owned(),
        database: database.clone(),
        user: "default".into(),
        password: String::new(),
        cluster: Some("tally".into()),
        shards: Vec::new(),
    };
    let (one, three) = (config(&nodes[0]), config(&nodes[2]));
    let (a, b) = tokio::join!(migrate(&one), migrate(&three));
    let (a, b) = (a.unwrap(), b.unwrap());
    let all: Vec<u32> = CLICKHOUSE.iter().map(|m| m.version).collect();
    assert!(
        (a == all && b.is_empty()) || (b == all && a.is_empty()),
        "{a:?} {b:?}"
    );
    assert!(migrate(&config(&nodes[1])).await.unwrap().is_empty());
    let first = client(&nodes[0], &database);
    for node in &nodes {
        let local = client(node, &database);
        local
            .query("SYSTEM SYNC REPLICA schema_migrations")
            .execute()
            .await
            .unwrap();
        let recorded = count(&local, "SELECT count() FROM schema_migrations").await;
        assert_eq!(
            recorded,
            all.len() as u64,
            "{node}: each migration recorded once"
        );
    }
    // Every node has every table.
    let mut tables = Vec::new();
    for node in &nodes {
        let names: Vec<String> = client(node, &database)
            .query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
            )
            .fetch_all()
            .await
            .unwrap();
        tables.push(names);
    }
    assert!(tables.iter().all(|t| t == &tables[0]), "{tables:?}");
    assert!(tables[0].contains(&"events_local".to_owned()));
    assert!(
        !tables[0].iter().any(|t| t.contains("_v12")),
        "{:?}",
        tables[0]
    );

    // 60 visitors × 20 events (half page views), through `events`.
    first
        .query(
            "INSERT INTO events (app_id, event_date, timestamp, ts_ms, received_at, event_id, name, \
             distinct_id, prop_keys, prop_values, kafka_topic, kafka_partition, kafka_offset, url_path) \
             SELECT 'app', toDate('2026-11-20'), toDateTime('2026-11-20 10:00:00') + number, \
             (1763632800 + number) * 1000, now(), concat('e', toString(number)), \
             if(number % 2 = 0, 'page_view', 'click'), concat('v', toString(number % 60)), \
             ['k'], ['1'], 'events', 0, number, '/p' FROM system.numbers LIMIT 1200",
        )
        .execute()
        .await
        .unwrap();
    // Replication is asynchronous: every replica catches up before reading.
    sync(
        &nodes,
        &database,
        &[
            "events_local",
            "rollup_pages_hourly_local",
            "property_keys_local",
        ],
    )
    .await;
    assert_eq!(count(&first, "SELECT count() FROM events").await, 1200);
    // Each shard's replicas agree; no visitor is on two shards; the shards hold it all.
    let mut per_shard: Vec<BTreeSet<String>> = Vec::new();
    let mut rows = 0;
    for pair in nodes.chunks(2) {
        let mut replicas = Vec::new();
        for node in pair {
            let local = client(node, &database);
            local
                .query("SYSTEM SYNC REPLICA events_local")
                .execute()
                .await
                .unwrap();
            let ids: Vec<(String, u64)> = local
                .query("SELECT distinct_id, count() FROM events_local GROUP BY distinct_id ORDER BY distinct_id")
                .fetch_all()
                .await
                .unwrap();
            replicas.push(ids);
        }
        assert_eq!(replicas[0], replicas[1], "the replicas of a shard agree");
        rows += replicas[0].iter().map(|(_, n)| n).sum::<u64>();
        assert!(
            replicas[0].iter().all(|(_, n)| *n == 20),
            "a visitor is whole on its shard"
        );
        per_shard.push(replicas[0].iter().map(|(id, _)| id.clone()).collect());
    }
    assert_eq!(rows, 1200);
    assert!(
        per_shard.iter().all(|ids| !ids.is_empty()),
        "both shards hold visitors"
    );
    assert!(per_shard[0].is_disjoint(&per_shard[1]));
    // ClickHouse placed every visitor where the aggregator's hash says.
    for (shard, ids) in per_shard.iter().enumerate() {
        for id in ids {
            let hash = tally_schemas::cluster::shard_hash(&["app", id]);
            assert_eq!(hash % 2, shard as u64, "visitor {id}");
        }
    }
    assert_eq!(per_shard[0].len() + per_shard[1].len(), 60);
    // The views fired once per row (on the replica that took the insert).
    assert_eq!(
        count(
            &first,
            "SELECT countMerge(page_views) FROM rollup_pages_hourly"
        )
        .await,
        600
    );
    assert_eq!(
        count(&first, "SELECT uniqExact(key) FROM property_keys").await,
        1
    );
    // Bookkeeping is complete on every node, once.
    for node in &nodes {
        let local = client(node, &database);
        local
            .query("SYSTEM SYNC REPLICA rollup_coverage")
            .execute()
            .await
            .unwrap();
        assert_eq!(
            count(&local, "SELECT count() FROM rollup_coverage").await,
            1,
            "{node}"
        );
    }
    server
        .query(&format!(
            "DROP DATABASE IF EXISTS {database} ON CLUSTER tally"
        ))
        .execute()
        .await
        .unwrap();
}
