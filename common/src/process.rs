//! Child processes for the benchmark (`tally-loadgen bench`) and the
//! integration tests (`tally-testkit`): one launcher that starts a program,
//! waits (with a deadline) until a readiness condition holds, stops it
//! gracefully (SIGTERM) or like a crash (SIGKILL), and never leaves it behind
//! (killed and reaped on drop). Output goes where the caller's
//! [`Command`] says; [`log_file`] appends to a file, and a child started with
//! [`ChildProcess::with_log`] quotes that file's tail when it fails to come up.
//!
//! * [`ChildProcess`] — any program (the test servers: tansu, Redis, ClickHouse).
//! * [`ServiceProcess`] — a Tally service binary on a free port, ready once
//!   its `/readyz` answers 2xx.
//! * [`free_port`], [`tcp_listening`], [`http_ok`] — ports and probes.
//! * [`tansu_command`] — a private tansu broker (the tests' and the bench's).
//!
//! Errors are `String`s naming the process; tests turn them into panics.
//! Nothing here is used by the services themselves.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free TCP port on loopback (bound once and released).
pub fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
}

/// Appends to `path` (created if missing); `Stdio::null()` if it cannot be opened.
pub fn log_file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// The tansu binary built by `scripts/stack` (override with `TALLY_TANSU_BIN`).
pub fn tansu_bin() -> PathBuf {
    match std::env::var_os("TALLY_TANSU_BIN") {
        Some(path) => path.into(),
        None => crate::config::cache_dir().join("tansu-0.6.0/bin/tansu"),
    }
}

/// tansu serving the Kafka protocol on `127.0.0.1:port` with `storage`
/// (`memory://tansu/`, or `sqlite://tansu.db` resolved against `dir`, its
/// working directory), logging to `log`.
pub fn tansu_command(dir: &Path, port: u16, storage: &str, log: &Path) -> Command {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(tansu_bin());
    command
        .current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", storage])
        .stdout(Stdio::null())
        .stderr(log_file(log));
    command
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub async fn tcp_listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Whether `GET path` on `host:port` answers 2xx (one HTTP/1.1 request on a
/// fresh connection, 5 s at most; enough for health endpoints on loopback
/// without an HTTP client in this crate).
pub async fn http_ok(host_port: &str, path: &str) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(host_port).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        // "HTTP/1.1 200 OK"
        let line = String::from_utf8_lossy(&head).into_owned();
        let status = line.split_whitespace().nth(1)?.to_owned();
        Some(status.starts_with('2') && status.len() == 3)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(true))
    )
}

/// A supervised child process: killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    log: Option<PathBuf>,
    /// `None` once reaped (so no signal can reach a reused pid).
    child: Option<Child>,
}

impl ChildProcess {
    /// Spawns `command`; `name` says what it is in every error.
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> Result<Self, String> {
        let name = name.into();
        let child = command.spawn().map_err(|err| {
            format!(
                "starting {name} ({}): {err}",
                Path::new(command.get_program()).display()
            )
        })?;
        Ok(ChildProcess {
            name,
            log: None,
            child: Some(child),
        })
    }

    /// Records where the process logs, for the error when it does not come up.
    pub fn with_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// What the process is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid, while it has not been reaped.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Polls `ready` every `every` until it returns true. Fails when the
    /// process exits first, or after `timeout`.
    pub async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        every: Duration,
        mut ready: F,
    ) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if ready().await {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(self.failure(&format!("exited ({status}) before it was ready")));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("did not come up within {timeout:?}")));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The exit status, if the process has exited (it is reaped then).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    fn failure(&self, what: &str) -> String {
        let mut message = format!("{} {what}", self.name);
        if let Some(log) = &self.log {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            message.push_str(&format!("; last lines of {}:\n{tail}", log.display()));
        }
        message
    }

    /// SIGKILL (a crash) and wait for the exit.
    pub fn kill(mut self) {
        self.reap_killed();
    }

    /// SIGTERM (a graceful stop), then wait for the exit: for ever when
    /// `grace` is `None`, else up to `grace` and SIGKILL after it.
    pub fn terminate(mut self, grace: Option<Duration>) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        match grace {
            None => {
                let _ = child.wait();
            }
            Some(grace) => {
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Waits until the process exits by itself (e.g. after a shutdown command).
    pub fn wait(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn reap_killed(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.reap_killed();
    }
}

/// A Tally service binary (gateway, aggregator, query service) as a child
/// process: health address on a free loopback port, ready once `/readyz`
/// answers 2xx (60 s at most), stdout discarded, stderr inherited.
#[derive(Debug)]
pub struct ServiceProcess {
    /// `http://127.0.0.1:PORT` of its health endpoints (and API).
    pub url: String,
    process: ChildProcess,
}

impl ServiceProcess {
    /// Starts `binary` with `envs`, its address in `addr_var`, `TALLY_LOG=log_level`,
    /// and waits for `/readyz`.
    pub async fn start<K, V>(
        binary: &Path,
        addr_var: &str,
        envs: &[(K, V)],
        log_level: &str,
    ) -> Result<Self, String>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let port = free_port().map_err(|err| format!("no free port: {err}"))?;
        let addr = format!("127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .env(addr_var, &addr)
            .env("TALLY_LOG", log_level)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut process = ChildProcess::spawn(binary.display().to_string(), &mut command)?;
        process
            .wait_ready(Duration::from_secs(60), Duration::from_millis(100), || {
                http_ok(&addr, "/readyz")
            })
            .await?;
        Ok(ServiceProcess {
            url: format!("http://{addr}"),
            process,
        })
    }

    /// Its pid, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.process.id()
    }

    /// `kill -9`.
    pub fn kill(self) {
        self.process.kill();
    }

    /// SIGTERM and wait until it has exited (graceful stop).
    pub fn stop(self) {
        self.process.terminate(None);
    }

    /// SIGTERM, and SIGKILL if it has not exited after `grace`.
    pub fn stop_within(self, grace: Duration) {
        self.process.terminate(Some(grace));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]).stdout(Stdio::null());
        command
    }

    /// A one-shot HTTP server answering `status_line`; returns its address.
    async fn answering(status_line: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request).await;
            let answer = format!("{status_line}\r\ncontent-length: 0\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn http_ok_is_true_for_2xx_only() {
        assert!(http_ok(&answering("HTTP/1.1 200 OK").await, "/readyz").await);
        assert!(http_ok(&answering("HTTP/1.0 204 No Content").await, "/ping").await);
        assert!(
            !http_ok(
                &answering("HTTP/1.1 503 Service Unavailable").await,
                "/readyz"
            )
            .await
        );
        let closed = free_port().unwrap();
        assert!(!http_ok(&format!("127.0.0.1:{closed}"), "/readyz").await);
        assert!(!tcp_listening(closed).await);
    }

    #[tokio::test]
    async fn waiting_fails_fast_when_the_child_exits_and_quotes_its_log() {
        let dir = std::env::temp_dir().join(format!("tally-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("child.log");
        let mut command = sh("echo starting; echo bad config >&2; exit 3");
        command.stderr(log_file(&log));
        let mut child = ChildProcess::spawn("failing child", &mut command)
            .unwrap()
            .with_log(&log);
        let started = Instant::now();
        let err = child
            .wait_ready(Duration::from_secs(30), Duration::from_millis(20), || {
                std::future::ready(false)
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{err}");
        assert!(err.starts_with("failing child exited ("), "{err}");
        assert!(err.ends_with("bad config"), "{err}");
        assert_eq!(child.id(), None, "reaped");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn waiting_gives_up_at_the_deadline_and_succeeds_once_ready() {
        let mut child = ChildProcess::spawn("sleeper", &mut sh("sleep 30")).unwrap();
        let err = child
            .wait_ready(
                Duration::from_millis(200),
                Duration::from_millis(20),
                || std::future::ready(false),
            )
            .await
            .unwrap_err();
        assert_eq!(err, "sleeper did not come up within 200ms");
        let mut polls = 0;
        child
            .wait_ready(Duration::from_secs(5), Duration::from_millis(1), || {
                polls += 1;
                std::future::ready(polls == 3)
            })
            .await
            .unwrap();
        assert!(child.id().is_some(), "still running");
    }

    #[test]
    fn stopping_ends_the_child_by_signal() {
        // SIGTERM: a plain `sleep` exits at once.
        let child = ChildProcess::spawn("sleeper", &mut sh("exec sleep 30")).unwrap();
        let started = Instant::now();
        child.terminate(Some(Duration::from_secs(20)));
        assert!(started.elapsed() < Duration::from_secs(10));
        // A child ignoring SIGTERM is killed once the grace period is over.
        let marker = std::env::temp_dir().join(format!("tally-trap-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let stubborn = format!(
            "trap '' TERM; touch {}; while true; do sleep 0.05; done",
            marker.display()
        );
        let child = ChildProcess::spawn("stubborn", &mut sh(&stubborn)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !marker.exists() {
            assert!(Instant::now() < deadline, "the shell never set its trap");
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        child.terminate(Some(Duration::from_millis(300)));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(10));
        let _ = std::fs::remove_file(&marker);
        // Dropped: killed and reaped (its /proc entry is gone).
        let child = ChildProcess::spawn("sleeper", &mut sh("exec sleep 30")).unwrap();
        let pid = child.id().unwrap();
        drop(child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
