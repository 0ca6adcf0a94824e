//! Golden statements of the refresher (`tests/golden/`, run on both ClickHouse
//! versions by `testkit/tests/sql_versions.rs`).

use super::*;

/// Test support: `stmt` (text, then its binds) must equal
/// `tests/golden/{name}.sql`; `TALLY_UPDATE_GOLDEN=1` rewrites the file.
#[allow(clippy::unwrap_used, clippy::expect_used)]
fn assert_golden(name: &str, stmt: &Stmt) {
    let binds: Vec<String> = stmt
        .binds
        .iter()
        .map(|b| match b {
            Bind::Text(t) => format!("{t:?}"),
            Bind::UInt(n) => n.to_string(),
            Bind::List(list) => format!("{list:?}"),
        })
        .collect();
    let rendered = format!("{}\n-- binds: [{}]\n", stmt.text, binds.join(","));
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.sql"));
    if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TALLY_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(rendered, golden, "{name}");
    assert_eq!(stmt.text.matches('?').count(), stmt.binds.len(), "{name}");
}

#[test]
fn golden_refresher_statements() {
    let days = ["2023-11-15".to_owned(), "2023-11-16".to_owned()];
    let ends: Ends = [
        (("events".to_owned(), 0), 10),
        (("events".to_owned(), 1), 12),
    ]
    .into_iter()
    .collect();
    let [write, vanish, activity, gone] = recompute("app-1", &days, 7, &ends);
    assert_golden("refresh_pages_write", &write);
    assert_golden("refresh_pages_vanish", &vanish);
    assert_golden("refresh_activity_write", &activity);
    assert_golden("refresh_activity_vanish", &gone);
    assert_golden(
        "refresh_pages_drift",
        &pages_drift("app-1", (&[], "1970-01-01"), &ends),
    );
    assert_golden(
        "refresh_activity_drift",
        &activity_drift("app-1", (&days[..1], "2023-11-01"), &Ends::new()),
    );
    let ranges = [
        NewRange {
            topic: "events".into(),
            partition: 0,
            mark: -1,
            end: 10,
        },
        NewRange {
            topic: "events".into(),
            partition: 1,
            mark: 4,
            end: 12,
        },
    ];
    assert_golden("refresh_new_buckets", &new_buckets(&facts(&ranges, &[])));
    assert_golden("refresh_stage_facts", &stage_facts(&ranges, 8));
    assert_golden(
        "refresh_placed_changed_ids",
        &crate::changed::placed_changed_ids(&ranges),
    );
    assert_golden(
        "refresh_staged_buckets",
        &new_buckets(&staged(8, &["app-1|2023-11-15".to_owned()])),
    );
    let ids = ["anon-1".to_owned(), "user-1".to_owned()];
    let facts = facts(&ranges, &["app-1|2023-11-15".to_owned()]);
    assert_golden("refresh_pages_add", &pages_add(&facts, 8));
    assert_golden("refresh_activity_add", &activity_add(&facts, 8));
    assert_golden("refresh_id_hours_add", &id_hours_add(&facts));
    assert_golden("refresh_id_hours_all", &id_hours_all("app-1"));
    let hours: std::collections::BTreeSet<u32> = [1_700_010_000, 1_700_013_600, 1_700_100_000]
        .into_iter()
        .collect();
    let [write, vanish] = crate::changed::pages_hours("app-1", &hours, 9, &ends);
    assert_golden("refresh_changed_pages_write", &write);
    assert_golden("refresh_changed_pages_vanish", &vanish);
    let days = crate::changed::days_of(&hours);
    let moves = [("anon-1".to_owned(), "user-1".to_owned())];
    let [fold, zero] = crate::changed::activity_moves("app-1", &days, &moves, 9);
    assert_golden("refresh_changed_activity_fold", &fold);
    assert_golden("refresh_changed_activity_zero", &zero);
    assert_golden(
        "refresh_changed_activity_deleted",
        &crate::changed::activity_deleted("app-1", &days, &ids, 9),
    );
    assert_golden(
        "refresh_changed_pages_keys",
        &crate::changed::pages_keys("app-1", &ids, 9),
    );
    let [keys, ids_of] = key_ids_add(&facts);
    assert_golden("refresh_key_ids_add", &keys);
    assert_golden("refresh_id_keys_add", &ids_of);
    let [keys, ids_of] = key_ids_all("app-1");
    assert_golden("refresh_key_ids_all", &keys);
    assert_golden("refresh_id_keys_all", &ids_of);
    assert_golden(
        "refresh_changed_ids",
        &crate::changed::changed_ids("app-1", 3, 9),
    );
    assert_golden("refresh_members", &crate::changed::members("app-1", &ids));
    // The data lifecycle's statements (tally_common::lifecycle), run by the refresher.
    use tally_common::lifecycle::{drop_statement, Expired, EXPIRED_SQL, STORAGE_SQL};
    assert_golden("lifecycle_storage", &Stmt::plain(STORAGE_SQL));
    let expired = Stmt {
        text: EXPIRED_SQL.into(),
        binds: vec![Bind::Text("2023-11-16".into())],
    };
    assert_golden("lifecycle_expired", &expired);
    let old = Expired {
        table: "events".into(),
        partition_id: "20231101".into(),
        newest_day: "2023-11-01".into(),
    };
    assert_golden(
        "lifecycle_drop",
        &Stmt::plain(&drop_statement(&old).unwrap()),
    );
    assert_golden("refresh_id_hours", &crate::changed::hours("app-1", &ids));
    let person = ["anon-1".to_owned()];
    assert_golden("refresh_remaining", &remaining("app-1", &person, &ids));
    assert_golden("refresh_person_days", &person_days("app-1", &ids));
    for (name, sql) in [
        ("refresh_pending_mutations", PENDING_MUTATIONS_SQL),
        ("refresh_arrival_days", ARRIVAL_DAYS_SQL),
        ("refresh_arrival_ends", ARRIVAL_ENDS_SQL),
        ("refresh_staged_tables", STAGED_TABLES_SQL),
        ("refresh_event_ends", EVENT_ENDS_SQL),
        ("refresh_identity_tops", IDENTITY_TOPS_SQL),
        ("refresh_all_buckets", ALL_BUCKETS_SQL),
    ] {
        assert_golden(name, &Stmt::plain(sql));
    }
}

#[test]
fn within_without_ends_derives_nothing() {
    let (text, binds) = within(&Ends::new());
    assert_eq!(text, " AND toInt64(kafka_offset) <= toInt64(-1)");
    assert!(binds.is_empty());
}
