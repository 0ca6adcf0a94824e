//! Column lists, once: the ClickHouse `events` and `sessions` columns in table
//! order (= the field order of [`crate::row::EventRow`] and
//! [`crate::session::SessionRow`], the RowBinary contract), and the allowlists
//! of the columns a query may filter and group on (the query service's
//! ad-hoc and session queries).
//!
//! Contract: every list here agrees with the others, with the row structs and
//! with the migrations in [`crate::migrations`] — the tests below check it: the
//! rows' field names are the tables' columns in order, every enrichment field
//! of the [`crate::Envelope`] is an `events` column, and every queryable column
//! is a `String` column of its table (filters compare it as text).

/// Defines a column list and the same list joined by `", "` (for `SELECT`s).
macro_rules! column_list {
    ($(#[$list_doc:meta])* $list:ident, $(#[$joined_doc:meta])* $joined:ident = [$first:literal $(, $rest:literal)* $(,)?]) => {
        $(#[$list_doc])*
        pub const $list: &[&str] = &[$first $(, $rest)*];
        $(#[$joined_doc])*
        pub const $joined: &str = concat!($first $(, ", ", $rest)*);
    };
}

/// The `events` columns in table order (migrations 0001, 0002 and 0012), which is
/// the field order of [`crate::row::EventRow`].
pub const EVENT_ROW_COLUMNS: &[&str] = &[
    "app_id",
    "event_date",
    "timestamp",
    "ts_ms",
    "received_at",
    "event_id",
    "name",
    "distinct_id",
    "user_id",
    "anonymous_id",
    "ip",
    "user_agent",
    "prop_keys",
    "prop_values",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "country",
    "region",
    "city",
    "browser",
    "browser_version",
    "os",
    "device_type",
    "is_bot",
    "url_host",
    "url_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "retention_days",
];

column_list! {
    /// The `sessions` columns in table order (migrations 0003, 0005 and 0012), which
    /// is the field order of [`crate::session::SessionRow`].
    SESSION_ROW_COLUMNS,
    /// [`SESSION_ROW_COLUMNS`] as a `SELECT` list (read into [`crate::session::SessionRow`]).
    SESSION_ROW_SELECT = [
        "app_id",
        "created_date",
        "distinct_id",
        "session_id",
        "start_ms",
        "end_ms",
        "start",
        "duration_ms",
        "events",
        "page_views",
        "entry_page",
        "exit_page",
        "referrer_host",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "country",
        "device_type",
        "browser",
        "os",
        "is_bot",
        "bounce",
        "dropped",
        "version",
        "entry_ms",
        "exit_ms",
        "retention_days",
    ]
}

/// The `person_distinct_ids` columns in table order (migrations 0007 and
/// 0011), which is the field order of [`crate::person::PersonDistinctIdRow`].
pub const PERSON_DISTINCT_ID_COLUMNS: &[&str] = &[
    "app_id",
    "distinct_id",
    "person_id",
    "version",
    "is_deleted",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
];

/// The `persons` columns in table order (migration 0007), which is the field
/// order of [`crate::person::PersonRow`].
pub const PERSON_COLUMNS: &[&str] = &[
    "app_id",
    "person_id",
    "prop_keys",
    "prop_values",
    "version",
    "is_deleted",
];

/// The `arrivals` columns in table order (migrations 0009 and 0010), which is the field
/// order of [`crate::row::ArrivalRow`].
pub const ARRIVAL_COLUMNS: &[&str] = &[
    "app_id",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "event_date",
    "received_date",
    "distinct_id",
    "name",
    "timestamp",
    "ts_ms",
    "url_path",
    "referrer_host",
    "country",
    "device_type",
    "browser",
    "is_bot",
];

/// `events` columns an ad-hoc query may filter and group on (the event name
/// and the enrichment columns; everything else only through properties).
pub const EVENT_QUERY_COLUMNS: &[&str] = &[
    "name",
    "country",
    "region",
    "city",
    "browser",
    "os",
    "device_type",
    "url_host",
    "url_path",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// `sessions` columns (the session's own attributes) a session query may
/// group and filter on.
pub const SESSION_QUERY_COLUMNS: &[&str] = &[
    "country",
    "device_type",
    "browser",
    "os",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "entry_page",
    "exit_page",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Enrichment;
    use crate::migrations::CLICKHOUSE;
    use crate::row::EventRow;
    use crate::session::SessionRow;
    use serde::de::{self, Deserialize, Deserializer, Visitor};
    use std::collections::BTreeSet;

    /// A deserializer that only records the field names a struct asks for
    /// (its serde names, in declaration order) and then gives up.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only structs have field names"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(de::Error::custom("field names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    /// The serialized field names of `T`, in order.
    fn field_names<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
        let mut names = Vec::new();
        let _ = T::deserialize(FieldNames(&mut names));
        names
    }

    /// (column, type) of `table` as the ClickHouse migrations leave it, in order:
    /// the `CREATE TABLE` columns, then every `ADD COLUMN`; a rebuild (a
    /// migration's `CREATE TABLE IF NOT EXISTS {table}_vN`) replaces them.
    fn table_columns(table: &str) -> Vec<(String, String)> {
        let alter = format!("ALTER TABLE {table}\n");
        let mut columns = Vec::new();
        for migration in CLICKHOUSE {
            let rebuilt = migration.rebuilds.iter().any(|r| r.table == table);
            let create = if rebuilt {
                columns.clear();
                format!(
                    "CREATE TABLE IF NOT EXISTS {table}_v{}\n",
                    migration.version
                )
            } else {
                format!("CREATE TABLE IF NOT EXISTS {table}\n")
            };
            for statement in migration.statements() {
                table_statement(&statement, &create, &alter, &mut columns);
            }
        }
        columns
    }

    /// Adds the columns `statement` gives the table (`create` or `alter` it).
    fn table_statement(
        statement: &str,
        create: &str,
        alter: &str,
        columns: &mut Vec<(String, String)>,
    ) {
        {
            if statement.starts_with(create) {
                columns.extend(crate::migrations::definition_lines(statement).map(column));
            } else if statement.starts_with(alter) {
                columns.extend(
                    statement
                        .lines()
                        .filter_map(|line| line.trim().strip_prefix("ADD COLUMN "))
                        .map(|line| column(line.trim_end_matches(','))),
                );
            }
        }
    }

    /// `name Type [DEFAULT …]` → (name, Type).
    fn column(definition: &str) -> (String, String) {
        let mut words = definition.split_whitespace();
        let name = words.next().unwrap_or_default().to_owned();
        let kind = words.next().unwrap_or_default().to_owned();
        (name, kind)
    }

    fn names(columns: &[(String, String)]) -> Vec<&str> {
        columns.iter().map(|(name, _)| name.as_str()).collect()
    }

    fn assert_unique(list: &[&str]) {
        let set: BTreeSet<&&str> = list.iter().collect();
        assert_eq!(set.len(), list.len(), "duplicate column in {list:?}");
    }

    #[test]
    fn event_row_fields_are_the_events_table_columns_in_order() {
        assert_unique(EVENT_ROW_COLUMNS);
        assert_eq!(field_names::<EventRow>(), EVENT_ROW_COLUMNS);
        assert_eq!(names(&table_columns("events")), EVENT_ROW_COLUMNS);
    }

    #[test]
    fn session_row_fields_are_the_sessions_table_columns_in_order() {
        assert_unique(SESSION_ROW_COLUMNS);
        assert_eq!(field_names::<SessionRow>(), SESSION_ROW_COLUMNS);
        assert_eq!(names(&table_columns("sessions")), SESSION_ROW_COLUMNS);
        assert_eq!(SESSION_ROW_SELECT, SESSION_ROW_COLUMNS.join(", "));
        assert_eq!(crate::session::SESSION_COLUMNS, SESSION_ROW_SELECT);
    }

    #[test]
    fn person_rows_fields_are_the_person_tables_columns_in_order() {
        use crate::person::{PersonDistinctIdRow, PersonRow};
        assert_eq!(
            field_names::<PersonDistinctIdRow>(),
            PERSON_DISTINCT_ID_COLUMNS
        );
        assert_eq!(
            names(&table_columns("person_distinct_ids")),
            PERSON_DISTINCT_ID_COLUMNS
        );
        assert_eq!(field_names::<PersonRow>(), PERSON_COLUMNS);
        assert_eq!(field_names::<crate::row::ArrivalRow>(), ARRIVAL_COLUMNS);
        assert_eq!(names(&table_columns("arrivals")), ARRIVAL_COLUMNS);
        assert_eq!(names(&table_columns("persons")), PERSON_COLUMNS);
    }

    #[test]
    fn envelope_enrichment_fields_are_events_columns() {
        let enrichment = field_names::<Enrichment>();
        assert!(enrichment.len() > 10, "{enrichment:?}");
        for field in enrichment {
            assert!(EVENT_ROW_COLUMNS.contains(&field), "{field}");
        }
    }

    #[test]
    fn queryable_columns_are_text_columns_of_their_table() {
        for (table, queryable) in [
            ("events", EVENT_QUERY_COLUMNS),
            ("sessions", SESSION_QUERY_COLUMNS),
        ] {
            assert_unique(queryable);
            let columns = table_columns(table);
            for name in queryable {
                let kind = columns
                    .iter()
                    .find(|(column, _)| column == name)
                    .map(|(_, kind)| kind.as_str());
                assert_eq!(kind, Some("String"), "{table}.{name}");
            }
        }
    }
}
