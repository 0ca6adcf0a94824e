//! The local cluster of the cluster tests (issue 18): ClickHouse 18.16 as 2
//! shards × 2 replicas with ZooKeeper and a Redis Cluster of 3 masters
//! (`scripts/cluster up`, started by `./tally test`), a test's own database
//! on it ([`on_cluster`]), node kills and restarts through the script
//! ([`kill_node`], [`start_node`], [`restart_redis`]), and an nginx load
//! balancer in front of several gateways ([`Balancer`]).
//!
//! Node N (1–4) is replica N of shard (N+1)/2; `TALLY_CLUSTER_NODES` (HTTP
//! URLs, in node order) points elsewhere.

use crate::servers::{free_port, launch};
use crate::{unique, Isolation};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tally_common::clickhouse::ClickHouseConfig;
use tally_common::process::{tcp_listening, ChildProcess};

/// The cluster's name in the nodes' `remote_servers`.
pub const CLUSTER: &str = "tally";

/// HTTP URLs of the nodes, in node order.
pub fn nodes() -> Vec<String> {
    std::env::var("TALLY_CLUSTER_NODES")
        .unwrap_or_else(|_| {
            (1..=4)
                .map(|n| format!("http://127.0.0.1:{}", 8200 + n))
                .collect::<Vec<_>>()
                .join(",")
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// `SYSTEM SYNC REPLICA` of `tables` (local replicated tables) of
/// `database` on every node, so that a read through any replica sees every
/// row inserted before (an insert returns once one replica of each shard
/// holds it; the other fetches it later).
pub async fn sync_replicas(database: &str, tables: &[&str]) {
    for node in nodes() {
        let client = clickhouse::Client::default()
            .with_url(&node)
            .with_database(database);
        for table in tables {
            client
                .query(&format!("SYSTEM SYNC REPLICA {table}"))
                .execute()
                .await
                .unwrap_or_else(|e| panic!("{node} {table}: {e}"));
        }
    }
}

/// `TALLY_REDIS_URL` of the local Redis Cluster (its masters' URLs;
/// `TALLY_REDIS_CLUSTER_NODES` points elsewhere).
pub fn redis_url() -> String {
    std::env::var("TALLY_REDIS_CLUSTER_NODES").unwrap_or_else(|_| {
        (1..=3)
            .map(|n| format!("redis://127.0.0.1:{}", 7000 + n))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Restarts Redis Cluster master `n` (1–3: `SHUTDOWN`, which keeps its
/// append-only file, then a start) and waits until the cluster is whole.
pub async fn restart_redis(n: usize) {
    let arg = n.to_string();
    tokio::task::spawn_blocking(move || run_script(&["redis-restart", &arg]))
        .await
        .unwrap_or_else(|err| panic!("restart redis {n}: {err}"));
}

/// The nodes grouped by shard (two replicas each, shards in order).
pub fn shards() -> Vec<Vec<String>> {
    nodes().chunks(2).map(<[String]>::to_vec).collect()
}

/// A fresh migrated database on the cluster (cluster layout), reached through
/// node `via` (1-based), with a topic of `partitions` on `brokers` and a
/// Redis prefix on `redis_url`. [`Isolation::cleanup`] drops it on every node.
pub async fn on_cluster(partitions: i32, brokers: &str, redis_url: &str, via: usize) -> Isolation {
    Isolation::build("cl", partitions, brokers, redis_url, |database| {
        ClickHouseConfig {
            url: nodes()[via - 1].clone(),
            database,
            user: "default".into(),
            password: String::new(),
            cluster: Some(CLUSTER.into()),
            shards: shards(),
        }
    })
    .await
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

fn run_script(args: &[&str]) {
    let status = Command::new(script())
        .args(args)
        .status()
        .unwrap_or_else(|err| panic!("scripts/cluster {args:?}: {err}"));
    assert!(status.success(), "scripts/cluster {args:?}: {status}");
}

/// `kill -9` of ClickHouse node `n` (1–4).
pub async fn kill_node(n: usize) {
    let arg = n.to_string();
    tokio::task::spawn_blocking(move || run_script(&["kill", &arg]))
        .await
        .unwrap_or_else(|err| panic!("kill node {n}: {err}"));
}

/// Starts ClickHouse node `n` again and waits until it answers.
pub async fn start_node(n: usize) {
    let arg = n.to_string();
    tokio::task::spawn_blocking(move || run_script(&["start", &arg]))
        .await
        .unwrap_or_else(|err| panic!("start node {n}: {err}"));
}

/// nginx balancing HTTP over several gateways (a failed upstream is skipped
/// for 2 s; a request that could not reach one goes to the next). Stopped on drop.
#[derive(Debug)]
pub struct Balancer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: ChildProcess,
    dir: PathBuf,
}

impl Balancer {
    /// nginx on a free port in front of `upstreams` (`host:port` each).
    pub async fn start(upstreams: &[String]) -> Balancer {
        let dir = std::env::temp_dir().join(unique("nginx"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            "master_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 upstream gateways {{\n{servers}    keepalive 32;\n  }}\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 16m;\n\
             \x20   location / {{\n      proxy_pass http://gateways;\n      proxy_http_version 1.1;\n\
             \x20     proxy_set_header Connection \"\";\n      proxy_set_header X-Forwarded-For $remote_addr;\n\
             \x20     proxy_next_upstream error timeout http_502;\n    }}\n  }}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or_else(|| panic!("nginx is not installed (scripts/cluster up installs it)"));
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"]);
        let child = launch(
            "nginx",
            &mut command,
            dir.join("error.log"),
            (Duration::from_secs(20), Duration::from_millis(50)),
            || tcp_listening(port),
        )
        .await;
        Balancer {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
            dir,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
