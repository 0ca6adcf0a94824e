//! Private Redis and ClickHouse servers for tests that stop and restart them
//! (the chaos test): each is a child process on free ports with its data in a
//! fresh directory, removed on drop. The shared servers of `scripts/stack` are
//! never touched, so other tests keep running in parallel. Also Tally's
//! service binaries as child processes ([`service_process`]).
//!
//! Every child goes through the shared launcher ([`tally_common::process`]):
//! ready within a deadline (or a panic quoting its log), killed on drop.
//!
//! ClickHouse uses the stack's own configuration template
//! (`scripts/clickhouse/config.xml.in`, `users.xml`), so a private server
//! behaves like the shared one.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tally_common::process::{http_ok, log_file, ChildProcess};

pub use tally_common::process::ServiceProcess;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    tally_common::process::free_port().unwrap_or_else(|err| panic!("no free port: {err}"))
}

fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    dir
}

/// Spawns `command` as `name` and waits (polling every `every`, ≤ `timeout`)
/// until `ready`; panics with the launcher's reason (and the log's tail) otherwise.
pub(crate) async fn launch<F, Fut>(
    name: &str,
    command: &mut Command,
    log: PathBuf,
    (timeout, every): (Duration, Duration),
    ready: F,
) -> ChildProcess
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut child = ChildProcess::spawn(name, command)
        .unwrap_or_else(|err| panic!("{err}"))
        .with_log(log);
    child
        .wait_ready(timeout, every, ready)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    child
}

/// A Redis server owned by one test; its data survives [`PrivateRedis::stop`]
/// (`SHUTDOWN SAVE`) and is loaded again by [`PrivateRedis::resume`].
#[derive(Debug)]
pub struct PrivateRedis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<ChildProcess>,
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port.
    pub async fn start() -> Self {
        let port = free_port();
        let mut redis = PrivateRedis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            dir: fresh_dir("redis"),
            child: None,
        };
        redis.resume().await;
        redis
    }

    /// (Re)starts the server on the same port and data directory.
    pub async fn resume(&mut self) {
        let log = self.dir.join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--dir", &self.dir.display().to_string()])
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(log_file(&log))
            .stderr(Stdio::null());
        let url = self.url.clone();
        let ping = move || {
            let pong = redis::Client::open(url.as_str())
                .and_then(|client| client.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            std::future::ready(pong)
        };
        let wait = (Duration::from_secs(20), Duration::from_millis(50));
        self.child = Some(launch("private redis", &mut command, log, wait, ping).await);
    }

    /// Stops the server, saving its data first (a maintenance stop, not a crash).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            let saved = redis::Client::open(self.url.as_str())
                .and_then(|client| client.get_connection())
                .and_then(|mut c| redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c));
            // SHUTDOWN closes the connection instead of answering; the process must exit.
            drop(saved);
            child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // Killed (ChildProcess's drop) before its directory goes.
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A ClickHouse server owned by one test, restartable with its data.
#[derive(Debug)]
pub struct PrivateClickHouse {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<ChildProcess>,
}

const CONFIG_TEMPLATE: &str = include_str!("../../scripts/clickhouse/config.xml.in");
const USERS: &str = include_str!("../../scripts/clickhouse/users.xml");

impl PrivateClickHouse {
    /// Starts `clickhouse-server` on free ports.
    pub async fn start() -> Self {
        let dir = fresh_dir("clickhouse");
        for sub in ["log", "data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        }
        let http = free_port();
        let config = CONFIG_TEMPLATE
            .replace("@DIR@", &dir.display().to_string())
            .replace("@HTTP_PORT@", &http.to_string())
            .replace("@TCP_PORT@", &free_port().to_string())
            .replace("@INTERSERVER_PORT@", &free_port().to_string());
        std::fs::write(dir.join("config.xml"), config)
            .and_then(|()| std::fs::write(dir.join("users.xml"), USERS))
            .unwrap_or_else(|err| panic!("writing clickhouse config: {err}"));
        let mut server = PrivateClickHouse {
            url: format!("http://127.0.0.1:{http}"),
            port: http,
            dir,
            child: None,
        };
        server.resume().await;
        server
    }

    /// (Re)starts the server on the same ports and data.
    pub async fn resume(&mut self) {
        let log = self.dir.join("log/stderr.log");
        let mut command = Command::new("clickhouse-server");
        command
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log_file(&log));
        let name = format!("private clickhouse (logs in {})", self.dir.display());
        let addr = format!("127.0.0.1:{}", self.port);
        let wait = (Duration::from_secs(60), Duration::from_millis(100));
        let ping = || http_ok(&addr, "/ping");
        self.child = Some(launch(&name, &mut command, log, wait, ping).await);
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.terminate(None);
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a Tally service binary as a child process a test may kill like a
/// crash ([`ServiceProcess`]): health address in `addr_var`, `TALLY_LOG` as
/// set for the test (default `warn`), ready once `/readyz` answers; panics
/// with the reason otherwise.
pub async fn service_process(
    binary: &std::path::Path,
    addr_var: &str,
    envs: &[(String, String)],
) -> ServiceProcess {
    let log = std::env::var("TALLY_LOG").unwrap_or_else(|_| "warn".into());
    ServiceProcess::start(binary, addr_var, envs, &log)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}
