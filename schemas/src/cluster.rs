//! The cluster layout (issue 18): every ClickHouse migration statement as it
//! runs on a sharded, replicated cluster, derived from the single-node text so
//! that the schema is written once.
//!
//! For a table `t` of the single-node schema the cluster has, on every node,
//! `t_local` — the `Replicated…` form of its engine, replicated among the
//! replicas of one shard (ZooKeeper path `/clickhouse/tables/{shard}/{db}/t_local`)
//! — and `t`, a `Distributed` table over the `t_local`s of every shard. Readers
//! keep reading `t`; a statement reading `t` runs on one replica of each shard
//! and its aggregation is merged by the node that received it (two-level).
//!
//! Rows are placed by [`placement`]: the tables of one visitor's rows
//! (`events`, `sessions`, `arrivals`, `person_distinct_ids`, `id_hours`,
//! `id_keys`) by [`VISITOR_KEY`], a hash of app and visitor that the
//! aggregator computes too ([`shard_hash`]), so a visitor's events, sessions
//! and identity rows share a shard; the person tables by [`PERSON_KEY`];
//! every other sharded table by the hash of
//! its sort key, so the rows a `Replacing`/`Aggregating` engine collapses
//! always meet on one shard. Small bookkeeping tables (`Log` engines) are
//! replicated on every node instead (one replication group for the cluster,
//! no `_local` twin: every node reads its own complete copy).
//!
//! Statement kinds (anything else is refused, so a new kind of migration
//! statement has to be given a cluster form here):
//! * `CREATE TABLE IF NOT EXISTS t (…) ENGINE = E(…) …` → `t_local` and `t`;
//! * `ALTER TABLE t ADD COLUMN …` → on `t_local`, then `t` made again over
//!   it (18.16 refuses a distributed `ALTER` of a `Distributed` table);
//! * `CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS SELECT … FROM s …` →
//!   the view on every node, from `s_local` into `t_local` (an insert fires the
//!   view on the replica that received it only: each row is counted once);
//! * `INSERT INTO t …` → unchanged (one insert through the `Distributed`
//!   tables, run synchronously by the runner);
//! * `RENAME TABLE a TO b`, `DROP TABLE IF EXISTS x` → on both forms.
//!
//! All DDL carries `ON CLUSTER {cluster}` (ClickHouse's distributed DDL
//! queue) and names its tables with their database (a node runs a queued
//! statement in its own default database otherwise). Valid on ClickHouse 18.16 and current releases.

/// Where a table's rows live on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Sharded by this expression (the `Distributed` sharding key).
    Sharded(String),
    /// Every node holds every row (one replication group across the cluster).
    Everywhere,
}

/// Tables whose rows are one visitor's: placed by app and visitor.
pub const VISITOR_TABLES: &[&str] = &[
    "events",
    "sessions",
    "arrivals",
    "person_distinct_ids",
    "id_hours",
    "id_keys",
];

/// Tables whose rows are one person's: placed by app and person.
pub const PERSON_TABLES: &[&str] = &["persons", "person_day_activity"];

/// The sharding key of the visitor tables.
pub const VISITOR_KEY: &str = "sipHash64(concat(app_id, '\\0', distinct_id))";

/// The sharding key of the person tables.
pub const PERSON_KEY: &str = "sipHash64(concat(app_id, '\\0', person_id))";

/// ClickHouse's `sipHash64` of `parts` joined by a zero byte: SipHash-2-4
/// with a zero key over the bytes (what `sipHash64(concat(a, '\0', b))`
/// computes on ClickHouse 18.16 and current releases). The aggregator routes
/// a row to shard `hash % shards` with it, as the `Distributed` table does.
pub fn shard_hash(parts: &[&str]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher24::new_with_keys(0, 0);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.write(&[0]);
        }
        hasher.write(part.as_bytes());
    }
    hasher.finish()
}

/// The table name without a rebuild's `_vN` / `_pre_vN` suffix.
fn base_name(table: &str) -> &str {
    for marker in ["_pre_v", "_v"] {
        if let Some((base, version)) = table.rsplit_once(marker) {
            if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
                return base;
            }
        }
    }
    table
}

/// Where the rows of `table` (created by `statement`) live.
pub fn placement(table: &str, statement: &str) -> Placement {
    let base = base_name(table);
    // A key's columns must exist: `arrivals` gets `distinct_id` only in
    // migration 0010, which makes its `Distributed` table again with the key.
    let defines = |column: &str| {
        statement.is_empty() || crate::migrations::definition_columns(statement).contains(&column)
    };
    if VISITOR_TABLES.contains(&base) && defines("distinct_id") {
        return Placement::Sharded(VISITOR_KEY.into());
    }
    if PERSON_TABLES.contains(&base) && defines("person_id") {
        return Placement::Sharded(PERSON_KEY.into());
    }
    match clause(statement, "ORDER BY") {
        Some(order) if !order.contains("tuple()") => {
            let columns = order.trim().trim_start_matches('(').trim_end_matches(')');
            Placement::Sharded(format!("cityHash64({})", columns.trim()))
        }
        _ => Placement::Everywhere,
    }
}

/// Where the rows of `table` live, from the last migration creating it (or
/// its rebuilt form); a table no migration creates is sharded by visitor
/// only if it is one of [`VISITOR_TABLES`], else placed [`Placement::Everywhere`].
pub fn placement_of(table: &str) -> Placement {
    let base = base_name(table);
    let created = crate::migrations::CLICKHOUSE
        .iter()
        .flat_map(|m| m.statements())
        .rfind(|s| {
            let first = s.lines().next().unwrap_or_default();
            first
                .strip_prefix("CREATE TABLE IF NOT EXISTS ")
                .is_some_and(|name| base_name(name.trim()) == base)
        });
    // After its creation a visitor or person table has its key's columns.
    let statement = created.as_deref().unwrap_or("ENGINE = TinyLog");
    match placement(table, "") {
        Placement::Sharded(key) if key == VISITOR_KEY || key == PERSON_KEY => {
            Placement::Sharded(key)
        }
        _ => placement(table, statement),
    }
}

/// The text after `keyword` up to the end of its line (without a trailing `;`).
fn clause<'a>(statement: &'a str, keyword: &str) -> Option<&'a str> {
    statement.lines().find_map(|line| {
        line.trim()
            .strip_prefix(keyword)
            .map(|rest| rest.trim().trim_end_matches(';'))
    })
}

/// The table a cluster's `system.parts` row names, as the single-node schema
/// names it (`events_local` → `events`).
pub fn logical_table(table: &str) -> &str {
    table.strip_suffix("_local").unwrap_or(table)
}

/// A cluster and the database the statements run in.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    /// The cluster's name in `remote_servers`.
    pub name: &'a str,
    /// The database (in ZooKeeper paths and `Distributed` engines).
    pub database: &'a str,
}

/// Why a statement has no cluster form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no cluster form for the migration statement starting {0:?}")]
pub struct Unsupported(pub String);

impl Cluster<'_> {
    /// The statements running `statement` (one single-node migration
    /// statement, as [`crate::migrations::Migration::linear_statements`] gives
    /// them) on the cluster, in order.
    pub fn statements(&self, statement: &str) -> Result<Vec<String>, Unsupported> {
        let head: String = statement.chars().take(60).collect();
        let unsupported = || Unsupported(head.clone());
        let first = statement.lines().next().unwrap_or_default().trim();
        if let Some(table) = first.strip_prefix("CREATE TABLE IF NOT EXISTS ") {
            return self
                .create_table(table.trim(), statement)
                .ok_or_else(unsupported);
        }
        if let Some(table) = first.strip_prefix("ALTER TABLE ") {
            let table = table.split_whitespace().next().ok_or_else(unsupported)?;
            let rest = &statement[statement.find(table).unwrap_or(0) + table.len()..];
            let (db, name) = (self.database, self.name);
            let placement = placement_of(table);
            if placement == Placement::Everywhere {
                return Ok(vec![format!(
                    "ALTER TABLE {db}.{table} ON CLUSTER {name}{rest}"
                )]);
            }
            // ClickHouse 18.16 refuses `ALTER … ON CLUSTER` on a table that is
            // not replicated when the cluster's shards are: the `Distributed`
            // table is made again over the altered local table instead (it
            // takes the local table's columns; readers get an error meanwhile).
            return Ok(vec![
                format!("ALTER TABLE {db}.{table}_local ON CLUSTER {name}{rest}"),
                format!("DROP TABLE IF EXISTS {db}.{table} ON CLUSTER {name}"),
                self.distributed(table, &placement),
            ]);
        }
        if first.starts_with("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
            return self.view(statement).ok_or_else(unsupported);
        }
        if first.starts_with("INSERT INTO ") {
            return Ok(vec![statement.to_owned()]);
        }
        if let Some(rest) = statement.strip_prefix("RENAME TABLE ") {
            let (from, to) = rest.split_once(" TO ").ok_or_else(unsupported)?;
            let (from, to) = (from.trim(), to.trim());
            let (db, name) = (self.database, self.name);
            return Ok(vec![
                format!("RENAME TABLE {db}.{from}_local TO {db}.{to}_local ON CLUSTER {name}"),
                format!("DROP TABLE IF EXISTS {db}.{from} ON CLUSTER {name}"),
                format!("DROP TABLE IF EXISTS {db}.{to} ON CLUSTER {name}"),
                self.distributed(to, &placement_of(to)),
            ]);
        }
        if let Some(table) = statement.strip_prefix("DROP TABLE IF EXISTS ") {
            let table = table.trim();
            let (db, name) = (self.database, self.name);
            return Ok(vec![
                format!("DROP TABLE IF EXISTS {db}.{table}_local ON CLUSTER {name}"),
                format!("DROP TABLE IF EXISTS {db}.{table} ON CLUSTER {name}"),
            ]);
        }
        Err(unsupported())
    }

    /// `{table}_local` (replicated) and `{table}` (distributed).
    fn create_table(&self, table: &str, statement: &str) -> Option<Vec<String>> {
        let engine = clause(statement, "ENGINE =")?;
        let (name, args) = engine.split_once('(').unwrap_or((engine, ""));
        let args = args.trim_end_matches(')').trim();
        let placement = placement(table, statement);
        // (replication group in ZooKeeper, name suffix of the replicated table)
        let (group, suffix) = match placement {
            Placement::Sharded(_) => ("{shard}", "_local"),
            Placement::Everywhere => ("all", ""),
        };
        let path = format!(
            "'/clickhouse/tables/{group}/{}/{table}{suffix}', '{{replica}}'",
            self.database
        );
        let replicated = match name.trim() {
            engine if engine.ends_with("MergeTree") => {
                let args = if args.is_empty() {
                    path
                } else {
                    format!("{path}, {args}")
                };
                format!("ENGINE = Replicated{engine}({args})")
            }
            // Log engines hold bookkeeping: a replicated table without a key.
            "TinyLog" | "Log" | "StripeLog" => {
                format!("ENGINE = ReplicatedMergeTree({path}) ORDER BY tuple()")
            }
            _ => return None,
        };
        let local = statement
            .replacen(
                &format!("CREATE TABLE IF NOT EXISTS {table}"),
                &format!(
                    "CREATE TABLE IF NOT EXISTS {}.{table}{suffix} ON CLUSTER {}",
                    self.database, self.name
                ),
                1,
            )
            .replacen(&format!("ENGINE = {engine}"), &replicated, 1);
        match placement {
            Placement::Sharded(_) => Some(vec![local, self.distributed(table, &placement)]),
            Placement::Everywhere => Some(vec![local]),
        }
    }

    /// The `Distributed` table `table` over `{table}_local`.
    fn distributed(&self, table: &str, placement: &Placement) -> String {
        let key = match placement {
            Placement::Sharded(key) => key.clone(),
            Placement::Everywhere => "rand()".into(),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} AS {db}.{table}_local \
             ENGINE = Distributed({cluster}, {db}, {table}_local, {key})",
            cluster = self.name,
            db = self.database,
        )
    }

    /// The view on every node, from and into the local tables.
    fn view(&self, statement: &str) -> Option<Vec<String>> {
        let first = statement.lines().next()?;
        let rest = first.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ")?;
        let (view, target) = rest.split_once(" TO ")?;
        let target = target.split_whitespace().next()?;
        let db = self.database;
        let header = format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view} ON CLUSTER {} TO {db}.{target}_local AS",
            self.name
        );
        let mut lines = vec![header];
        for line in statement.lines().skip(1) {
            let line = match line.trim_start().strip_prefix("FROM ") {
                Some(source) => {
                    let source = source.trim();
                    let indent = &line[..line.len() - line.trim_start().len()];
                    format!("{indent}FROM {db}.{source}_local")
                }
                None => line.to_owned(),
            };
            lines.push(line);
        }
        Some(vec![lines.join("\n")])
    }

    /// A service's data change — `ALTER TABLE t DELETE WHERE …`, `… UPDATE …`,
    /// `… DROP PARTITION …` — on the cluster: on `t_local` of every shard
    /// (`ON CLUSTER`; the distributed DDL queue runs it on one replica per
    /// shard and replication carries it to the other). Anything else is
    /// returned unchanged (reads and `INSERT`s go through the `Distributed`
    /// tables).
    pub fn mutation(&self, statement: &str) -> String {
        let Some(rest) = statement.strip_prefix("ALTER TABLE ") else {
            return statement.to_owned();
        };
        let Some((table, tail)) = rest.split_once(' ') else {
            return statement.to_owned();
        };
        let (db, name) = (self.database, self.name);
        match placement_of(table) {
            Placement::Everywhere => format!("ALTER TABLE {db}.{table} ON CLUSTER {name} {tail}"),
            Placement::Sharded(_) => {
                format!("ALTER TABLE {db}.{table}_local ON CLUSTER {name} {tail}")
            }
        }
    }

    /// A read of `system.parts` or `system.mutations` of the current
    /// database (storage, expired partitions, pending mutations) over the
    /// whole cluster: `cluster(name, system.…)` reads one replica of every
    /// shard; the database is named (`currentDatabase()` would be the remote
    /// query's), and the tables named in quotes become their local tables
    /// (the parts are theirs). The `table` column then names local tables:
    /// [`logical_table`] maps them back.
    pub fn system_read(&self, statement: &str) -> String {
        let mut out = statement
            .replace(
                "FROM system.parts",
                &format!("FROM cluster('{}', system.parts)", self.name),
            )
            .replace(
                "FROM system.mutations",
                &format!("FROM cluster('{}', system.mutations)", self.name),
            )
            .replace("currentDatabase()", &format!("'{}'", self.database));
        for table in VISITOR_TABLES.iter().chain(PERSON_TABLES) {
            out = out.replace(&format!("'{table}'"), &format!("'{table}_local'"));
        }
        out
    }

    /// A service's statement as the cluster runs it: a read of `system.parts`
    /// or `system.mutations` over every shard ([`Cluster::system_read`]), a
    /// mutation on every shard's local table ([`Cluster::mutation`]), anything
    /// else unchanged.
    pub fn service_form(&self, statement: &str) -> String {
        if statement.contains("FROM system.parts") || statement.contains("FROM system.mutations") {
            self.system_read(statement)
        } else {
            self.mutation(statement)
        }
    }

    /// Every statement of every migration, as a cluster at the previous
    /// version runs it (single-node order, each statement's cluster form).
    pub fn migration_statements(
        &self,
        migration: &crate::migrations::Migration,
    ) -> Result<Vec<String>, Unsupported> {
        let mut out = Vec::new();
        for statement in migration.linear_statements() {
            out.extend(self.statements(&statement)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::CLICKHOUSE;

    #[test]
    fn mutations_run_on_every_shards_local_table() {
        let cluster = Cluster {
            name: "tally",
            database: "db",
        };
        assert_eq!(
            cluster.mutation("ALTER TABLE events DELETE WHERE app_id = ?"),
            "ALTER TABLE db.events_local ON CLUSTER tally DELETE WHERE app_id = ?"
        );
        assert_eq!(
            cluster.mutation("ALTER TABLE arrivals DROP PARTITION ?"),
            "ALTER TABLE db.arrivals_local ON CLUSTER tally DROP PARTITION ?"
        );
        let read = "SELECT count() FROM events";
        assert_eq!(cluster.mutation(read), read);
    }

    #[test]
    fn system_reads_cover_every_shard() {
        let cluster = Cluster {
            name: "tally",
            database: "db",
        };
        assert_eq!(
            cluster.system_read(
                "SELECT table FROM system.parts WHERE database = currentDatabase() \
                 AND table IN ('events', 'sessions')"
            ),
            "SELECT table FROM cluster('tally', system.parts) WHERE database = 'db' \
             AND table IN ('events_local', 'sessions_local')"
        );
        assert_eq!(logical_table("events_local"), "events");
        assert_eq!(logical_table("schema_migrations"), "schema_migrations");
    }

    const TALLY: Cluster<'static> = Cluster {
        name: "tally",
        database: "db",
    };

    #[test]
    fn the_shard_hash_is_clickhouses_siphash64() {
        // Answers of ClickHouse 18.16.1 to `SELECT sipHash64(…)`.
        assert_eq!(shard_hash(&["abc"]), 4_596_069_200_710_135_518);
        assert_eq!(shard_hash(&[""]), 2_202_906_307_356_721_367);
        assert_eq!(shard_hash(&["app", "v1"]), 11_997_464_153_181_524_464);
    }

    #[test]
    fn tables_are_placed_by_visitor_person_or_sort_key() {
        assert_eq!(
            placement("events_v12", ""),
            Placement::Sharded(VISITOR_KEY.into())
        );
        assert_eq!(
            placement("persons", ""),
            Placement::Sharded(PERSON_KEY.into())
        );
        let rollup = "ENGINE = AggregatingMergeTree()\nORDER BY (app_id, hour, url_path);";
        assert_eq!(
            placement("rollup_pages_hourly", rollup),
            Placement::Sharded("cityHash64(app_id, hour, url_path)".into())
        );
        assert_eq!(
            placement("rollup_coverage", "ENGINE = TinyLog;"),
            Placement::Everywhere
        );
        assert_eq!(base_name("sessions_pre_v12"), "sessions");
        assert_eq!(base_name("key_ids"), "key_ids");
    }

    #[test]
    fn a_replacing_table_becomes_replicated_and_distributed() {
        let create = "CREATE TABLE IF NOT EXISTS persons\n(\n    app_id String,\n    person_id String,\n    version UInt64\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY (app_id, person_id)";
        let out = TALLY.statements(create).unwrap();
        assert_eq!(out.len(), 2);
        assert!(
            out[0].starts_with("CREATE TABLE IF NOT EXISTS db.persons_local ON CLUSTER tally\n")
        );
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/persons_local', '{replica}', version)"
        ), "{}", out[0]);
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS db.persons ON CLUSTER tally AS db.persons_local \
             ENGINE = Distributed(tally, db, persons_local, sipHash64(concat(app_id, '\\0', person_id)))"
        );
    }

    #[test]
    fn views_read_and_write_the_local_tables() {
        let view = "CREATE MATERIALIZED VIEW IF NOT EXISTS k_mv TO property_keys AS\nSELECT app_id, arrayJoin(prop_keys) AS key\nFROM events\nGROUP BY app_id, key";
        let out = TALLY.statements(view).unwrap();
        assert_eq!(
            out,
            vec!["CREATE MATERIALIZED VIEW IF NOT EXISTS db.k_mv ON CLUSTER tally TO db.property_keys_local AS\nSELECT app_id, arrayJoin(prop_keys) AS key\nFROM db.events_local\nGROUP BY app_id, key"]
        );
    }

    #[test]
    fn every_migration_has_a_cluster_form() {
        for migration in CLICKHOUSE {
            let statements = TALLY.migration_statements(migration).unwrap();
            assert!(!statements.is_empty(), "{}", migration.name);
            for statement in statements {
                let ddl = !statement.starts_with("INSERT");
                assert!(
                    !ddl || statement.contains(" ON CLUSTER tally"),
                    "{statement}"
                );
                assert!(
                    !statement.contains("ENGINE = MergeTree")
                        && !statement.contains("ENGINE = ReplacingMergeTree")
                        && !statement.contains("ENGINE = TinyLog"),
                    "a local engine left: {statement}"
                );
            }
        }
    }

    /// Every migration's cluster statements equal `golden/cluster.sql`
    /// (`TALLY_UPDATE_GOLDEN=1` rewrites it); `testkit/tests/cluster_layout.rs`
    /// runs them on the local cluster.
    #[test]
    fn cluster_statements_are_golden() {
        let mut rendered = String::new();
        for migration in CLICKHOUSE {
            rendered.push_str(&format!("-- {:04} {}\n", migration.version, migration.name));
            for statement in TALLY.migration_statements(migration).unwrap() {
                rendered.push_str(&statement);
                rendered.push_str(";\n\n");
            }
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/cluster.sql");
        if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (TALLY_UPDATE_GOLDEN=1 writes it)", path.display())
        });
        assert_eq!(rendered, golden);
    }

    #[test]
    fn unknown_statements_are_refused() {
        assert!(TALLY.statements("OPTIMIZE TABLE events FINAL").is_err());
        assert!(TALLY
            .statements("CREATE TABLE IF NOT EXISTS x\n(\n a UInt8\n)\nENGINE = Memory")
            .is_err());
    }
}
