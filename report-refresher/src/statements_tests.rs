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
    let [write, vanish, activity, gone] = recompute("app-1", &days, 7);
    assert_golden("refresh_pages_write", &write);
    assert_golden("refresh_pages_vanish", &vanish);
    assert_golden("refresh_activity_write", &activity);
    assert_golden("refresh_activity_vanish", &gone);
    assert_golden("refresh_pages_drift", &pages_drift("app-1", &[]));
    assert_golden(
        "refresh_activity_drift",
        &activity_drift("app-1", &days[..1]),
    );
    assert_golden("refresh_identity_buckets", &identity_buckets("app-1", 3, 9));
    let ranges = [
        NewRange {
            topic: "events".into(),
            partition: 0,
            day: days[0].clone(),
            mark: -1,
            top: 10,
        },
        NewRange {
            topic: "events".into(),
            partition: 1,
            day: days[1].clone(),
            mark: 4,
            top: 12,
        },
    ];
    assert_golden("refresh_new_buckets", &new_buckets(&ranges));
    let ids = ["anon-1".to_owned(), "user-1".to_owned()];
    assert_golden("refresh_remaining", &remaining("app-1", "anon-1", &ids));
    assert_golden("refresh_person_days", &person_days("app-1", &ids));
    for (name, sql) in [
        ("refresh_pending_mutations", PENDING_MUTATIONS_SQL),
        ("refresh_arrival_days", ARRIVAL_DAYS_SQL),
        ("refresh_tops", TOPS_SQL),
        ("refresh_identity_tops", IDENTITY_TOPS_SQL),
        ("refresh_all_buckets", ALL_BUCKETS_SQL),
    ] {
        assert_golden(
            name,
            &Stmt {
                text: sql.into(),
                binds: Vec::new(),
            },
        );
    }
}
