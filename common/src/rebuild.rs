//! Rebuilding a table whose partition key changes (a migration's
//! [`Rebuild`]s; ClickHouse cannot alter a partition key), resumable and
//! exclusive.
//!
//! * Resumable: a run starts at the first step not done, judged from what
//!   exists — the table with its marker column (only the old copy is left to
//!   drop), the table without it (start by claiming it), or no table but its
//!   old copy (a run stopped between claim and swap: copy again into a fresh
//!   new table). The copy is checked before the swap: the new table must
//!   hold as many distinct rows ([`Rebuild::key`]) as the old one.
//! * Exclusive: pending migrations (a rebuild among them) run under the
//!   migration lock ([`Lock`], taken by `crate::clickhouse::migrate`), a
//!   table `tally_migration_lock` that only one `CREATE` can make (no `IF
//!   NOT EXISTS`). Its holder writes a heartbeat row every
//!   [`HEARTBEAT`]; a lock without one for [`STALE`] is a holder that died,
//!   and is broken. Others wait for the lock, then find the migrations done.
//!
//! From the claim (the table renamed away) until the swap, inserts into the
//! table fail and are retried by the aggregator: no row is written into the
//! old copy after it was copied.
//!
//! On a cluster (`tally_schemas::cluster`) every step runs in its cluster
//! form, the state is judged from the `_local` tables, the copy check reads
//! through the `Distributed` tables until the replicas agree (replication is
//! asynchronous; a real shortfall stays and stops the rebuild after
//! [`COPY_CHECK`]), and the lock is a table replicated on every node whose
//! creation (`ON CLUSTER`, without `IF NOT EXISTS`) only one runner wins.

use clickhouse::error::Error;
use clickhouse::Client;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tally_schemas::cluster::Cluster;
use tally_schemas::migrations::{Migration, Rebuild, Step};

/// The lock's table.
pub const LOCK_TABLE: &str = "tally_migration_lock";

/// How often the holder proves it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A lock without a heartbeat this long belongs to a dead holder.
pub const STALE: Duration = Duration::from_secs(60);

/// How long a cluster's copy check waits for the replicas to agree.
pub const COPY_CHECK: Duration = Duration::from_secs(120);

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Count {
    count: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Age {
    beats: u64,
    age_secs: i64,
}

/// A token unique to one lock taken by this process (its ZooKeeper path).
fn lock_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}_{nanos}", std::process::id())
}

/// Whether `table` exists in the current database.
async fn exists(client: &Client, table: &str) -> Result<bool, Error> {
    let row: Count = client
        .query("SELECT count() AS count FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one()
        .await?;
    Ok(row.count > 0)
}

/// Whether `table` has `column`.
async fn has_column(client: &Client, table: &str, column: &str) -> Result<bool, Error> {
    let row: Count = client
        .query(
            "SELECT count() AS count FROM system.columns \
             WHERE database = currentDatabase() AND table = ? AND name = ?",
        )
        .bind(table)
        .bind(column)
        .fetch_one()
        .await?;
    Ok(row.count > 0)
}

/// Index of the first step of `steps` still to run for `rebuild` (on a
/// cluster, judged from this node's `_local` tables).
async fn first_step(
    client: &Client,
    rebuild: &Rebuild,
    version: u32,
    steps: &[Step],
    cluster: bool,
) -> Result<usize, Error> {
    let position = |wanted: fn(&Step) -> bool| steps.iter().position(wanted).unwrap_or(0);
    let local = |name: &str| {
        if cluster {
            format!("{name}_local")
        } else {
            name.to_owned()
        }
    };
    let table = local(rebuild.table);
    if exists(client, &table).await? {
        if has_column(client, &table, rebuild.marker).await? {
            return Ok(position(|s| matches!(s, Step::Finish(_))));
        }
        return Ok(0);
    }
    if exists(client, &local(&rebuild.old_table(version))).await? {
        // Claimed by a run that stopped before the swap: copy again.
        return Ok(1);
    }
    Err(Error::Custom(format!(
        "migration {version}: neither {} nor {} exists",
        rebuild.table,
        rebuild.old_table(version)
    )))
}

/// Distinct rows of `table` by the rebuild's key.
async fn distinct_rows(client: &Client, rebuild: &Rebuild, table: &str) -> Result<u64, Error> {
    let row: Count = client
        .query(&rebuild.distinct_rows(table))
        .fetch_one()
        .await?;
    Ok(row.count)
}

/// The statements of `step`, in their cluster form on a cluster.
fn step_statements(step: &Step, cluster: Option<Cluster<'_>>) -> Result<Vec<String>, Error> {
    let statements = step.statements();
    let Some(cluster) = cluster else {
        return Ok(statements);
    };
    let mut out = Vec::new();
    for statement in statements {
        out.extend(
            cluster
                .statements(&statement)
                .map_err(|e| Error::Custom(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Whether the copy holds every row: the distinct keys of `new` equal those
/// of `old` (on a cluster, read through the `Distributed` tables until the
/// replicas agree or [`COPY_CHECK`] passes).
async fn check_copy(
    client: &Client,
    rebuild: &Rebuild,
    version: u32,
    cluster: bool,
) -> Result<u64, Error> {
    let old = rebuild.old_table(version);
    let new = rebuild.new_table(version);
    let started = std::time::Instant::now();
    loop {
        let (before, after) = (
            distinct_rows(client, rebuild, &old).await?,
            distinct_rows(client, rebuild, &new).await?,
        );
        if before == after {
            return Ok(after);
        }
        if !cluster || started.elapsed() > COPY_CHECK {
            return Err(Error::Custom(format!(
                "migration {version}: {new} holds {after} distinct rows, {old} {before}; \
                 stopped before the swap (run the migration again)"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the rebuilds of `migration`, each from its first step not done.
pub async fn run(
    client: &Client,
    migration: &Migration,
    cluster: Option<Cluster<'_>>,
) -> Result<(), Error> {
    for rebuild in migration.rebuilds {
        let definition = migration.rebuild_definition(rebuild).ok_or_else(|| {
            Error::Custom(format!(
                "migration {} has no definition of {}",
                migration.version,
                rebuild.new_table(migration.version)
            ))
        })?;
        let steps = rebuild.steps(migration.version, &definition);
        let first = first_step(
            client,
            rebuild,
            migration.version,
            &steps,
            cluster.is_some(),
        )
        .await?;
        for step in &steps[first..] {
            for statement in step_statements(step, cluster)? {
                client.query(&statement).execute().await?;
            }
            if let Step::Copy(_) = step {
                let rows =
                    check_copy(client, rebuild, migration.version, cluster.is_some()).await?;
                tracing::info!(table = rebuild.table, rows, "rebuilt table filled");
            }
        }
    }
    Ok(())
}

/// The migration lock, held until [`Lock::release`] (or the holder dies).
#[derive(Debug)]
pub struct Lock {
    client: Client,
    heartbeat: tokio::task::JoinHandle<()>,
    /// The statement giving it back.
    drop: String,
}

impl Lock {
    /// Waits for the lock and takes it (on a cluster, for every node).
    pub async fn acquire(client: &Client, cluster: Option<Cluster<'_>>) -> Result<Lock, Error> {
        let create = match cluster {
            None => format!("CREATE TABLE {LOCK_TABLE} (at DateTime) ENGINE = Log"),
            // Each lock its own ZooKeeper path: a create right after the last
            // holder's drop never meets that table's half-removed nodes.
            Some(c) => format!(
                "CREATE TABLE {db}.{LOCK_TABLE} ON CLUSTER {name} (at DateTime) ENGINE = \
                 ReplicatedMergeTree('/clickhouse/tables/all/{db}/{LOCK_TABLE}/{token}', '{{replica}}') ORDER BY at",
                db = c.database,
                name = c.name,
                token = lock_token()
            ),
        };
        let drop = match cluster {
            None => format!("DROP TABLE IF EXISTS {LOCK_TABLE}"),
            Some(c) => format!(
                "DROP TABLE IF EXISTS {}.{LOCK_TABLE} ON CLUSTER {}",
                c.database, c.name
            ),
        };
        let mut empty_since: Option<Instant> = None;
        let mut failures = 0;
        loop {
            match client.query(&create).execute().await {
                Ok(()) => break,
                Err(err) if err.to_string().contains("already exists") => {}
                // A cluster's DDL queue may fail a create transiently (a node
                // busy with the previous holder's drop): try again, a while.
                Err(err) if cluster.is_some() && failures < 20 => {
                    failures += 1;
                    tracing::warn!(error = %err, failures, "migration lock: create failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(err) => return Err(err),
            }
            let age: Age = client
                .query(&format!(
                    "SELECT count() AS beats, toInt64(now()) - toInt64(max(at)) AS age_secs FROM {LOCK_TABLE}"
                ))
                .fetch_one()
                .await
                .unwrap_or(Age {
                    beats: 0,
                    age_secs: 0,
                });
            let stale = if age.beats == 0 {
                empty_since.get_or_insert_with(Instant::now).elapsed() > STALE
            } else {
                empty_since = None;
                age.age_secs > i64::try_from(STALE.as_secs()).unwrap_or(i64::MAX)
            };
            if stale {
                tracing::warn!(
                    table = LOCK_TABLE,
                    "breaking a migration lock without a heartbeat (its holder died)"
                );
                client.query(&drop).execute().await?;
                empty_since = None;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let beat = format!("INSERT INTO {LOCK_TABLE} (at) SELECT now()");
        client.query(&beat).execute().await?;
        let beating = client.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                if let Err(err) = beating.query(&beat).execute().await {
                    tracing::warn!(error = %err, "migration lock heartbeat failed");
                }
            }
        });
        Ok(Lock {
            client: client.clone(),
            heartbeat,
            drop,
        })
    }

    /// Gives the lock back.
    pub async fn release(self) -> Result<(), Error> {
        self.heartbeat.abort();
        self.client.clone().query(&self.drop).execute().await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // A lock dropped without release (an error) stops beating and goes
        // stale for the next run.
        self.heartbeat.abort();
    }
}
