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
}

/// PostgreSQL migrations in application order (`schemas/migrations/postgres/`).
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "apps_keys",
        sql: include_str!("../migrations/postgres/0001_apps_keys.sql"),
    },
    Migration {
        version: 2,
        name: "saved",
        sql: include_str!("../migrations/postgres/0002_saved.sql"),
    },
    Migration {
        version: 3,
        name: "app_time_zone",
        sql: include_str!("../migrations/postgres/0003_app_time_zone.sql"),
    },
    Migration {
        version: 4,
        name: "accounts",
        sql: include_str!("../migrations/postgres/0004_accounts.sql"),
    },
    Migration {
        version: 5,
        name: "refresher",
        sql: include_str!("../migrations/postgres/0005_refresher.sql"),
    },
    Migration {
        version: 6,
        name: "person_deletions",
        sql: include_str!("../migrations/postgres/0006_person_deletions.sql"),
    },
    Migration {
        version: 7,
        name: "refresh_derived",
        sql: include_str!("../migrations/postgres/0007_refresh_derived.sql"),
    },
    Migration {
        version: 8,
        name: "refresh_pending",
        sql: include_str!("../migrations/postgres/0008_refresh_pending.sql"),
    },
    Migration {
        version: 9,
        name: "replays",
        sql: include_str!("../migrations/postgres/0009_replays.sql"),
    },
];

/// ClickHouse migrations in application order.
pub const CLICKHOUSE: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/clickhouse/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "enrichment",
        sql: include_str!("../migrations/clickhouse/0002_enrichment.sql"),
    },
    Migration {
        version: 3,
        name: "sessions",
        sql: include_str!("../migrations/clickhouse/0003_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "rollups",
        sql: include_str!("../migrations/clickhouse/0004_rollups.sql"),
    },
    Migration {
        version: 5,
        name: "session_page_times",
        sql: include_str!("../migrations/clickhouse/0005_session_page_times.sql"),
    },
    Migration {
        version: 6,
        name: "property_keys",
        sql: include_str!("../migrations/clickhouse/0006_property_keys.sql"),
    },
    Migration {
        version: 7,
        name: "persons",
        sql: include_str!("../migrations/clickhouse/0007_persons.sql"),
    },
    Migration {
        version: 8,
        name: "reports",
        sql: include_str!("../migrations/clickhouse/0008_reports.sql"),
    },
    Migration {
        version: 9,
        name: "arrivals",
        sql: include_str!("../migrations/clickhouse/0009_arrivals.sql"),
    },
    Migration {
        version: 10,
        name: "row_level_refresh",
        sql: include_str!("../migrations/clickhouse/0010_row_level_refresh.sql"),
    },
    Migration {
        version: 11,
        name: "identity_positions",
        sql: include_str!("../migrations/clickhouse/0011_identity_positions.sql"),
    },
];

impl Migration {
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
    fn splits_statements_and_drops_comments() {
        let migration = Migration {
            version: 9,
            name: "t",
            sql: "-- c\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE TABLE b (y UInt8) ENGINE = Memory;\n",
        };
        assert_eq!(
            migration.statements(),
            vec![
                "CREATE TABLE a (x UInt8) ENGINE = Memory",
                "CREATE TABLE b (y UInt8) ENGINE = Memory"
            ]
        );
    }
}
