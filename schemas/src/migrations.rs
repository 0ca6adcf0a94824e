//! The ClickHouse and PostgreSQL schemas as versioned SQL files, applied in
//! order by the runners in `tally-common`. Files live in
//! `schemas/migrations/{clickhouse,postgres}/NNNN_name.sql`; every statement must be
//! re-runnable (`IF NOT EXISTS`) and valid on ClickHouse 18.16 and current
//! releases. Append new files; never edit an applied one.

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number (the file's `NNNN` prefix); strictly increasing.
    pub version: u32,
    /// Human name (rest of the file name).
    pub name: &'static str,
    /// SQL text; statements separated by `;` at the end of a line.
    pub sql: &'static str,
    /// Tables this migration rebuilds (a new partition key: ClickHouse cannot
    /// alter one). Their new definitions are the file's `CREATE TABLE IF NOT
    /// EXISTS {table}_v{version}` statements; the runner copies the rows and
    /// swaps the tables ([`Rebuild::steps`]) before the file's other statements.
    pub rebuilds: &'static [Rebuild],
}

/// A table rebuilt by a migration.
#[derive(Debug, Clone, Copy)]
pub struct Rebuild {
    /// The table.
    pub table: &'static str,
    /// A column only the rebuilt table has: present means rebuilt.
    pub marker: &'static str,
    /// Columns telling rows apart (a copy is checked by their distinct
    /// tuples: counts, and versions, change when a replacing table merges;
    /// the set of keys does not).
    pub key: &'static [&'static str],
    /// Materialized views reading the table (dropped before the swap; the
    /// migration's own statements create them again).
    pub views: &'static [&'static str],
}

/// One step of a rebuild, in order (see [`Rebuild::steps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `RENAME TABLE {table} TO {old}`: from here inserts fail (and are retried).
    Claim(String),
    /// `DROP TABLE IF EXISTS` a view reading the table.
    DropView(String),
    /// `DROP TABLE IF EXISTS {new}` (a copy that stopped part way) then the new definition.
    Create(Vec<String>),
    /// `INSERT INTO {new} (columns) SELECT columns FROM {old}`.
    Copy(String),
    /// `RENAME TABLE {new} TO {table}`.
    Swap(String),
    /// `DROP TABLE IF EXISTS {old}`.
    Finish(String),
}

impl Step {
    /// The statements of this step.
    pub fn statements(&self) -> Vec<String> {
        match self {
            Step::Claim(sql)
            | Step::DropView(sql)
            | Step::Copy(sql)
            | Step::Swap(sql)
            | Step::Finish(sql) => vec![sql.clone()],
            Step::Create(sqls) => sqls.clone(),
        }
    }
}

impl Rebuild {
    /// The name of the new table while it is filled.
    pub fn new_table(&self, version: u32) -> String {
        format!("{}_v{version}", self.table)
    }

    /// The name of the old table while it is copied.
    pub fn old_table(&self, version: u32) -> String {
        format!("{}_pre_v{version}", self.table)
    }

    /// The statement counting the distinct rows of `table` (the copy check).
    pub fn distinct_rows(&self, table: &str) -> String {
        format!("SELECT uniqExact({}) FROM {table}", self.key.join(", "))
    }

    /// The steps rebuilding the table with `definition` (the migration's
    /// `CREATE TABLE IF NOT EXISTS {table}_v{version}` statement). The rows
    /// are copied into every column of the new table but the marker (which
    /// takes its default). The runner starts at the first step not yet done.
    pub fn steps(&self, version: u32, definition: &str) -> Vec<Step> {
        let (new, old) = (self.new_table(version), self.old_table(version));
        let columns: Vec<&str> = definition_columns(definition)
            .into_iter()
            .filter(|column| *column != self.marker)
            .collect();
        let list = columns.join(", ");
        let mut steps = vec![Step::Claim(format!("RENAME TABLE {} TO {old}", self.table))];
        steps.extend(
            self.views
                .iter()
                .map(|view| Step::DropView(format!("DROP TABLE IF EXISTS {view}"))),
        );
        steps.push(Step::Create(vec![
            format!("DROP TABLE IF EXISTS {new}"),
            definition.to_owned(),
        ]));
        steps.push(Step::Copy(format!(
            "INSERT INTO {new} ({list}) SELECT {list} FROM {old}"
        )));
        steps.push(Step::Swap(format!("RENAME TABLE {new} TO {}", self.table)));
        steps.push(Step::Finish(format!("DROP TABLE IF EXISTS {old}")));
        steps
    }
}

/// The column lines (`name Type [DEFAULT …]`, without the comma) of a
/// `CREATE TABLE` statement written one column per line between the lines
/// `(` and `)` (as every migration here is).
pub fn definition_lines(statement: &str) -> impl Iterator<Item = &str> {
    statement
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "(")
        .skip(1)
        .take_while(|line| *line != ")")
        .map(|line| line.trim_end_matches(','))
}

/// The column names of a `CREATE TABLE` statement (see [`definition_lines`]).
pub fn definition_columns(statement: &str) -> Vec<&str> {
    definition_lines(statement)
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

/// PostgreSQL migrations in application order (`schemas/migrations/postgres/`).
pub const POSTGRES: &[Migration] = &[
    Migration::plain(
        1,
        "apps_keys",
        include_str!("../migrations/postgres/0001_apps_keys.sql"),
    ),
    Migration::plain(
        2,
        "saved",
        include_str!("../migrations/postgres/0002_saved.sql"),
    ),
    Migration::plain(
        3,
        "app_time_zone",
        include_str!("../migrations/postgres/0003_app_time_zone.sql"),
    ),
    Migration::plain(
        4,
        "accounts",
        include_str!("../migrations/postgres/0004_accounts.sql"),
    ),
    Migration::plain(
        5,
        "refresher",
        include_str!("../migrations/postgres/0005_refresher.sql"),
    ),
    Migration::plain(
        6,
        "person_deletions",
        include_str!("../migrations/postgres/0006_person_deletions.sql"),
    ),
    Migration::plain(
        7,
        "refresh_derived",
        include_str!("../migrations/postgres/0007_refresh_derived.sql"),
    ),
    Migration::plain(
        8,
        "refresh_pending",
        include_str!("../migrations/postgres/0008_refresh_pending.sql"),
    ),
    Migration::plain(
        9,
        "replays",
        include_str!("../migrations/postgres/0009_replays.sql"),
    ),
    Migration::plain(
        10,
        "app_retention",
        include_str!("../migrations/postgres/0010_app_retention.sql"),
    ),
    Migration::plain(
        11,
        "app_domains",
        include_str!("../migrations/postgres/0011_app_domains.sql"),
    ),
];

/// ClickHouse migrations in application order.
pub const CLICKHOUSE: &[Migration] = &[
    Migration::plain(
        1,
        "events",
        include_str!("../migrations/clickhouse/0001_events.sql"),
    ),
    Migration::plain(
        2,
        "enrichment",
        include_str!("../migrations/clickhouse/0002_enrichment.sql"),
    ),
    Migration::plain(
        3,
        "sessions",
        include_str!("../migrations/clickhouse/0003_sessions.sql"),
    ),
    Migration::plain(
        4,
        "rollups",
        include_str!("../migrations/clickhouse/0004_rollups.sql"),
    ),
    Migration::plain(
        5,
        "session_page_times",
        include_str!("../migrations/clickhouse/0005_session_page_times.sql"),
    ),
    Migration::plain(
        6,
        "property_keys",
        include_str!("../migrations/clickhouse/0006_property_keys.sql"),
    ),
    Migration::plain(
        7,
        "persons",
        include_str!("../migrations/clickhouse/0007_persons.sql"),
    ),
    Migration::plain(
        8,
        "reports",
        include_str!("../migrations/clickhouse/0008_reports.sql"),
    ),
    Migration::plain(
        9,
        "arrivals",
        include_str!("../migrations/clickhouse/0009_arrivals.sql"),
    ),
    Migration::plain(
        10,
        "row_level_refresh",
        include_str!("../migrations/clickhouse/0010_row_level_refresh.sql"),
    ),
    Migration::plain(
        11,
        "identity_positions",
        include_str!("../migrations/clickhouse/0011_identity_positions.sql"),
    ),
    Migration {
        version: 12,
        name: "retention_class",
        sql: include_str!("../migrations/clickhouse/0012_retention_class.sql"),
        rebuilds: &[
            Rebuild {
                table: "events",
                marker: "retention_days",
                key: &[
                    "app_id",
                    "event_id",
                    "kafka_topic",
                    "kafka_partition",
                    "kafka_offset",
                ],
                views: &["rollup_pages_hourly_mv", "property_keys_mv"],
            },
            Rebuild {
                table: "sessions",
                marker: "retention_days",
                key: &["app_id", "distinct_id", "session_id"],
                views: &[],
            },
        ],
    },
];

impl Migration {
    /// A migration of statements only (no rebuild).
    pub const fn plain(version: u32, name: &'static str, sql: &'static str) -> Self {
        Migration {
            version,
            name,
            sql,
            rebuilds: &[],
        }
    }

    /// The `CREATE TABLE` statement of `rebuild`'s new table in this file.
    pub fn rebuild_definition(&self, rebuild: &Rebuild) -> Option<String> {
        let head = format!(
            "CREATE TABLE IF NOT EXISTS {}\n",
            rebuild.new_table(self.version)
        );
        self.statements()
            .into_iter()
            .find(|statement| statement.starts_with(&head))
    }

    /// The statements to run after the rebuilds: every statement but the
    /// rebuilt tables' definitions.
    pub fn other_statements(&self) -> Vec<String> {
        let definitions: Vec<String> = self
            .rebuilds
            .iter()
            .filter_map(|rebuild| self.rebuild_definition(rebuild))
            .collect();
        self.statements()
            .into_iter()
            .filter(|statement| !definitions.contains(statement))
            .collect()
    }

    /// Every statement in the order a run on a database at the previous
    /// version executes them (the rebuilds' steps, then the other
    /// statements): what a runner without the resume logic (the test of
    /// current ClickHouse) applies.
    pub fn linear_statements(&self) -> Vec<String> {
        let mut out = Vec::new();
        for rebuild in self.rebuilds {
            if let Some(definition) = self.rebuild_definition(rebuild) {
                for step in rebuild.steps(self.version, &definition) {
                    out.extend(step.statements());
                }
            }
        }
        out.extend(self.other_statements());
        out
    }

    /// The file's statements, comments and blank lines removed.
    pub fn statements(&self) -> Vec<String> {
        let without_comments: String = self
            .sql
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        without_comments
            .split(";\n")
            .map(|statement| statement.trim().trim_end_matches(';').trim().to_owned())
            .filter(|statement| !statement.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase_and_files_parse() {
        let mut last = 0;
        for migration in CLICKHOUSE {
            assert!(migration.version > last, "{}", migration.name);
            last = migration.version;
            assert!(!migration.statements().is_empty());
        }
        last = 0;
        for migration in POSTGRES {
            assert!(migration.version > last, "{}", migration.name);
            last = migration.version;
            assert!(!migration.statements().is_empty());
        }
    }

    #[test]
    fn rebuilds_have_their_definitions_and_copy_every_old_column() {
        let migration = CLICKHOUSE
            .iter()
            .find(|m| m.version == 12)
            .expect("migration 12");
        for rebuild in migration.rebuilds {
            let definition = migration.rebuild_definition(rebuild).expect("definition");
            let columns = definition_columns(&definition);
            assert_eq!(columns.last(), Some(&rebuild.marker), "{}", rebuild.table);
            let steps = rebuild.steps(12, &definition);
            assert!(
                matches!(&steps[0], Step::Claim(sql) if sql == &format!("RENAME TABLE {0} TO {0}_pre_v12", rebuild.table))
            );
            let Some(Step::Copy(copy)) = steps.iter().find(|s| matches!(s, Step::Copy(_))) else {
                panic!("no copy step");
            };
            assert!(!copy.contains(rebuild.marker), "{copy}");
            assert!(
                copy.contains(&columns[..columns.len() - 1].join(", ")),
                "{copy}"
            );
        }
        let linear = migration.linear_statements();
        assert_eq!(
            linear.last().map(|s| s.contains("property_keys_mv")),
            Some(true)
        );
        assert!(!migration
            .other_statements()
            .iter()
            .any(|s| s.contains("_v12\n")));
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let migration = Migration::plain(
            9,
            "t",
            "-- c\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE TABLE b (y UInt8) ENGINE = Memory;\n",
        );
        assert_eq!(
            migration.statements(),
            vec![
                "CREATE TABLE a (x UInt8) ENGINE = Memory",
                "CREATE TABLE b (y UInt8) ENGINE = Memory"
            ]
        );
    }
}
