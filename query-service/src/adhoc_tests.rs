//! Golden statements (`query-service/tests/golden/*.sql`; regenerate with
//! `TALLY_UPDATE_GOLDEN=1`), validation, and a property: whatever the client
//! sends, none of it appears in the statement text.

use super::*;
use crate::query::statement;
use proptest::prelude::*;
use serde_json::json;

const RANGE: (i64, i64) = (1_700_000_000_000, 1_700_604_800_000);

fn request(body: Value) -> AdhocRequest {
    serde_json::from_value(body).unwrap()
}

/// Found by the schema fuzz: a tiny filter number became a decimal literal
/// ClickHouse 18.16 cannot parse (a 503). Every bound number is now short
/// enough and normal; below 1e-290 numbers compare as 0.
#[test]
fn filter_numbers_bind_as_literals_clickhouse_parses() {
    for (value, bound) in [
        (5e-324, 0.0),
        (-2.2250738585072014e-308, 0.0),
        (3.5e-291, 0.0),
        (1.5e-290, 1.5e-290),
        (-1.7976931348623157e308, -1.7976931348623157e308),
        (10.0, 10.0),
    ] {
        let body = json!({"metric": "events", "range": "7d",
                          "filters": [{"property": "amount", "op": "gt", "value": value}]});
        let sql = statement("app", &request(body), RANGE).unwrap();
        let Some(Bind::Float(x)) = sql.binds.last() else {
            panic!("{:?}", sql.binds)
        };
        assert_eq!(*x, bound, "{value}");
        assert!(!x.is_subnormal() && format!("{x}").len() <= 320, "{value}");
    }
}

#[test]
fn golden_statements() {
    for (name, body) in examples() {
        let sql = statement("app-1", &request(body), RANGE).unwrap();
        crate::sql::assert_golden(name, &sql);
    }
}

#[test]
fn sampling_keeps_whole_users_and_refuses_odd_shares() {
    let sampled = statement(
        "a",
        &request(json!({"metric": "events", "range": "7d", "sample": 0.25})),
        RANGE,
    )
    .unwrap();
    assert!(sampled.text.contains("cityHash64(distinct_id) % 10000 < ?"));
    assert!(sampled.binds.contains(&Bind::Int(2_500)));
    let full = statement(
        "a",
        &request(json!({"metric": "events", "range": "7d", "sample": 1.0})),
        RANGE,
    )
    .unwrap();
    assert!(!full.text.contains("cityHash64"));
    for bad in [0.0, -0.5, 1.5, 0.123_45] {
        let err = statement(
            "a",
            &request(json!({"metric": "events", "range": "7d", "sample": bad})),
            RANGE,
        )
        .unwrap_err();
        assert_eq!(err.0, "sample", "{bad}");
    }
    assert!(scales_with_sample("events") && scales_with_sample("sum_amount"));
    assert!(!scales_with_sample("avg_amount") && !scales_with_sample("bounce_rate"));
}

#[test]
fn the_app_guard_comes_first_and_bots_are_excluded_by_default() {
    let sql = statement(
        "app-1",
        &request(json!({"metric": "events", "range": "7d"})),
        RANGE,
    )
    .unwrap();
    assert!(sql.text.contains("WHERE app_id = ? AND"));
    assert!(sql.text.contains("is_bot = 0"));
    assert_eq!(sql.binds[0], Bind::Text("app-1".into()));
}

#[test]
fn refuses_what_is_not_allowed() {
    let refusals = [
        (json!({"range": "7d"}), "metric"),
        (json!({"metric": "revenue", "range": "7d"}), "metric"),
        (
            json!({"metric": "events", "group_by": ["a", "b", "c", "d"], "range": "7d"}),
            "group_by",
        ),
        (
            json!({"metric": "events", "group_by": "ip address", "range": "7d"}),
            "group_by",
        ),
        (
            json!({"metric": "events", "filters": [{"property": "x", "op": "like", "value": "y"}], "range": "7d"}),
            "op",
        ),
        (
            json!({"metric": "events", "filters": [{"property": "x y", "op": "eq", "value": "y"}], "range": "7d"}),
            "property",
        ),
        (
            json!({"metric": "events", "filters": [{"property": "x", "op": "gt", "value": "ten"}], "range": "7d"}),
            "value",
        ),
        (
            json!({"metric": "events", "filters": [{"property": "x", "op": "in", "value": []}], "range": "7d"}),
            "value",
        ),
        (
            json!({"metric": "events", "filters": [{"property": "x", "op": "eq"}], "range": "7d"}),
            "value",
        ),
        (
            json!({"metric": "events", "limit": 0, "range": "7d"}),
            "limit",
        ),
    ];
    for (body, field) in refusals {
        let err = statement("a", &request(body.clone()), RANGE).unwrap_err();
        assert_eq!(err.0, field, "{body}");
    }
    assert!(serde_json::from_value::<AdhocRequest>(
        json!({"metric": "events", "range": "7d", "sql": "x"})
    )
    .is_err());
}

proptest! {
    /// Hostile text in any field is bound, never spliced (the marker `Ω` never
    /// occurs in a statement, which is pure ASCII).
    #[test]
    fn client_text_never_reaches_the_statement(raw in "[ -~]{0,40}", op in 0usize..6) {
        let text = format!("Ω{raw}");
        let ops = ["eq", "neq", "contains", "not_contains", "in", "not_in"];
        let value = if ops[op].ends_with("in") { json!([text.clone()]) } else { json!(text.clone()) };
        let body = json!({"metric": "events", "range": "7d", "segment": {"did": text.clone()},
                          "filters": [{"property": "country", "op": ops[op], "value": value}]});
        let sql = statement("app", &request(body), RANGE).unwrap();
        prop_assert!(sql.text.is_ascii());
        prop_assert!(sql.binds.contains(&Bind::Text(text.clone())));
    }
}
