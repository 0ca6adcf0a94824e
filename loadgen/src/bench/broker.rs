//! The bench's own broker: a tansu process (the binary `scripts/stack`
//! builds) on a free port with its sqlite file in a fresh directory, removed
//! with the process when the run ends. A full run writes millions of messages;
//! on the stack's shared broker they stayed (tansu's file grew to several GB
//! over a day of runs and slowed every test that used it afterwards), and
//! each run measured a broker of a different size.
//!
//! [`BenchBroker::start`] is used unless the run is pointed at a broker
//! (`TALLY_KAFKA_BROKERS`) or told `--shared-broker`.

use std::path::PathBuf;
use std::time::Duration;
use tally_common::process::{free_port, tansu_bin, tansu_command, tcp_listening, ChildProcess};

/// A tansu broker owned by one bench run.
#[derive(Debug)]
pub struct BenchBroker {
    /// `host:port` to bootstrap from.
    pub brokers: String,
    /// Where its data and log are.
    pub dir: PathBuf,
    child: Option<ChildProcess>,
}

impl BenchBroker {
    /// Starts tansu with sqlite storage in a fresh directory under the
    /// system's temporary directory; fails when the binary is missing or it
    /// does not listen within 30 s.
    pub async fn start(run: &str) -> Result<Self, String> {
        let bin = tansu_bin();
        if !bin.exists() {
            return Err(format!(
                "no tansu binary at {} (scripts/stack up builds it)",
                bin.display()
            ));
        }
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let dir = std::env::temp_dir().join(format!("tally-bench-broker-{run}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = dir.join("tansu.log");
        let mut broker = BenchBroker {
            brokers: format!("127.0.0.1:{port}"),
            dir,
            child: None,
        };
        let mut command = tansu_command(&broker.dir, port, "sqlite://tansu.db", &log);
        let mut child = ChildProcess::spawn("bench tansu", &mut command)?.with_log(log);
        child
            .wait_ready(Duration::from_secs(30), Duration::from_millis(50), || {
                tcp_listening(port)
            })
            .await?;
        broker.child = Some(child);
        Ok(broker)
    }
}

impl Drop for BenchBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            child.terminate(Some(Duration::from_secs(10)));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
