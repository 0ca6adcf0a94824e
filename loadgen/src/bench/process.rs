//! Service child processes for the benchmark: start on a free port, wait for
//! `/readyz`, read Prometheus counters and peak RSS, stop with SIGTERM.

use super::BenchConfig;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A service child process.
#[derive(Debug)]
pub struct Service {
    /// Binary name.
    pub name: &'static str,
    child: Child,
    /// Base URL.
    pub url: String,
}

impl Service {
    /// Starts `name` with `envs`, listening where `addr_var` says.
    pub async fn start(
        config: &BenchConfig,
        name: &'static str,
        addr_var: &str,
        envs: &[(&str, String)],
    ) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut command = Command::new(config.bin_dir.join(name));
        command
            .env(addr_var, format!("127.0.0.1:{port}"))
            .env("TALLY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", config.bin_dir.join(name).display()))?;
        let service = Service {
            name,
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", service.url)).await {
                if r.status().is_success() {
                    return Ok(service);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{name} not ready"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Peak resident set (KiB) from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// CPU time (user + system) used so far, seconds, from /proc (USER_HZ = 100
    /// on every Linux platform Tally runs on).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
        Some((ticks(11)? + ticks(12)?) / 100.0)
    }

    /// SIGTERM, then SIGKILL after 20 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Value of the Prometheus sample `name` (no labels) served by `url`, or 0.
pub async fn metric(url: &str, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("{url}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
