//! Private Redis and ClickHouse servers for tests that stop and restart them
//! (the chaos test): each is a child process on free ports with its data in a
//! fresh directory, removed on drop. The shared servers of `scripts/stack` are
//! never touched, so other tests keep running in parallel.
//!
//! ClickHouse uses the stack's own configuration template
//! (`scripts/clickhouse/config.xml.in`, `users.xml`), so a private server
//! behaves like the shared one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    dir
}

fn log_file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

async fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `url` until it answers 2xx; panics naming `what` after 60 s.
async fn wait_for_http(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(url).await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// A Redis server owned by one test; its data survives [`PrivateRedis::stop`]
/// (`SHUTDOWN SAVE`) and is loaded again by [`PrivateRedis::resume`].
#[derive(Debug)]
pub struct PrivateRedis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
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
        let child = Command::new("redis-server")
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
            .stdout(log_file(&self.dir.join("redis.log")))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("starting redis-server: {err}"));
        self.child = Some(child);
        let url = self.url.clone();
        wait_until("private redis", Duration::from_secs(20), || {
            redis::Client::open(url.as_str())
                .and_then(|client| client.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        })
        .await;
    }

    /// Stops the server, saving its data first (a maintenance stop, not a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let saved = redis::Client::open(self.url.as_str())
                .and_then(|client| client.get_connection())
                .and_then(|mut c| redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c));
            // SHUTDOWN closes the connection instead of answering; the process must exit.
            drop(saved);
            let _ = child.wait();
        }
    }
}

/// Kills `child` (if running) and removes `dir`: what dropping a private server does.
fn discard(child: &mut Option<Child>, dir: &Path) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        discard(&mut self.child, &self.dir);
    }
}

/// A ClickHouse server owned by one test, restartable with its data.
#[derive(Debug)]
pub struct PrivateClickHouse {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: PathBuf,
    child: Option<Child>,
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
            dir,
            child: None,
        };
        server.resume().await;
        server
    }

    /// (Re)starts the server on the same ports and data.
    pub async fn resume(&mut self) {
        let child = Command::new("clickhouse-server")
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("log/stderr.log")))
            .spawn()
            .unwrap_or_else(|err| panic!("starting clickhouse-server: {err}"));
        self.child = Some(child);
        let what = format!("private clickhouse (logs in {})", self.dir.display());
        wait_for_http(&format!("{}/ping", self.url), &what).await;
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        discard(&mut self.child, &self.dir);
    }
}

/// A child process of a Tally binary that a test may kill like a crash.
#[derive(Debug)]
pub struct ServiceProcess {
    /// `http://127.0.0.1:PORT` of its health endpoints.
    pub url: String,
    child: Child,
}

impl ServiceProcess {
    /// Starts `binary` with `envs`, its health address in `addr_var`, and waits for `/readyz`.
    pub async fn start(binary: &Path, addr_var: &str, envs: &[(String, String)]) -> Self {
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .env(addr_var, format!("127.0.0.1:{port}"))
            .env(
                "TALLY_LOG",
                std::env::var("TALLY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", binary.display()));
        let process = ServiceProcess {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let ready = format!("{}/readyz", process.url);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(&ready).await {
                if response.status().is_success() {
                    return process;
                }
            }
            assert!(Instant::now() < deadline, "{} not ready", binary.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (graceful stop).
    pub fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
