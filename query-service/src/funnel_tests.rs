//! Funnel statements: golden files (each order, a trend, exclusions, a user
//! page), the range rule, and a property that client text never reaches SQL.
use super::*;
use proptest::prelude::*;
use serde_json::json;

proptest! {
    /// In each order, hostile text in step names and filter values is
    /// bound, never spliced, and every placeholder has its value.
    #[test]
    fn funnel_text_is_bound(raw in "[ -~]{0,30}", steps in 2usize..=8, order in 0usize..3) {
        let text = format!("Ω{raw}");
        let order = ["relaxed", "strict", "any"][order];
        let mut list = vec![json!(text.clone())];
        for _ in 1..steps {
            list.push(json!({"event": text.clone(), "filters": [{"property": "plan", "op": "contains", "value": text.clone()}]}));
        }
        let request: FunnelRequest = serde_json::from_value(json!({"steps": list, "range": "7d",
            "order": order, "breakdown": "properties.plan"})).unwrap();
        let sql = build("app", &request, (0, 86_400_000)).unwrap();
        prop_assert!(sql.text.is_ascii());
        prop_assert!(sql.binds.contains(&Bind::Text(text.clone())));
        prop_assert_eq!(sql.text.matches('?').count(), sql.binds.len());
    }
}

#[test]
fn windows_parse_and_refusals() {
    assert_eq!(window_ms("30m"), Ok(1_800_000));
    assert_eq!(window_ms("1d"), Ok(86_400_000));
    for bad in [
        "",
        "d",
        "0d",
        "-1h",
        "91d",
        "1w",
        "99999999999999999d",
        "😀",
        "1😀",
    ] {
        assert!(window_ms(bad).is_err(), "{bad}");
    }
    let one_step: FunnelRequest =
        serde_json::from_value(json!({"steps": ["a"], "range": "7d"})).unwrap();
    assert_eq!(build("a", &one_step, (0, 1)).unwrap_err().0, "steps");
    let sideways: FunnelRequest =
        serde_json::from_value(json!({"steps": ["a", "b"], "range": "7d", "order": "sideways"}))
            .unwrap();
    assert_eq!(build("a", &sideways, (0, 1)).unwrap_err().0, "order");
    let any_excluding: FunnelRequest = serde_json::from_value(json!({"steps": ["a", "b"],
        "range": "7d", "order": "any", "exclusions": [{"event": "c"}]}))
    .unwrap();
    assert_eq!(
        build("a", &any_excluding, (0, 1)).unwrap_err().0,
        "exclusions"
    );
}

#[test]
fn golden_funnel_statements() {
    golden("funnel_three_steps_breakdown", None);
    golden("funnel_strict_three_steps_breakdown", Some("strict"));
    golden("funnel_any_order_three_steps_breakdown", Some("any"));
    // A conversion trend: by the week (in New York) of each user's first start.
    let trend: FunnelRequest = serde_json::from_value(json!({
        "steps": ["page_view", "purchase"], "range": "90d", "breakdown": "$week", "tz": "America/New_York"}))
    .unwrap();
    let sql = build("app-1", &trend, (1_700_000_000_000, 1_707_776_000_000)).unwrap();
    crate::sql::assert_golden("funnel_weekly_trend_new_york", &sql);
    // Exclusion steps (relaxed order).
    let excluding: FunnelRequest = serde_json::from_value(json!({
        "steps": ["page_view", "add_to_cart", "purchase"], "range": "30d",
        "exclusions": [{"event": "support_chat", "between": [2, 3]},
                       {"event": "refund", "filters": [{"property": "amount", "op": "gt", "value": 0}]}]}))
    .unwrap();
    let excluded = build("app-1", &excluding, (1_700_000_000_000, 1_702_592_000_000)).unwrap();
    crate::sql::assert_golden("funnel_with_exclusions", &excluded);
    // By a person trait (the persons' traits joined), step 2 filtered on one.
    let by_plan: FunnelRequest = serde_json::from_value(json!({
        "steps": ["page_view", {"event": "purchase", "filters": [{"property": "person.seats", "op": "is_set"}]}],
        "range": "30d", "breakdown": "person.plan", "order": "strict"}))
    .unwrap();
    let by_plan = build("app-1", &by_plan, (1_700_000_000_000, 1_702_592_000_000)).unwrap();
    assert!(by_plan.text.contains("pm_values[indexOf(pm_keys, ?)]"));
    crate::sql::assert_golden("funnel_strict_by_person_trait", &by_plan);
    // A page of the users who dropped after step 2, in strict order.
    let dropped: FunnelRequest = serde_json::from_value(json!({
        "steps": ["page_view", "add_to_cart", "purchase"], "range": "30d", "order": "strict",
        "users": {"step": 2, "dropped": true, "limit": 50, "offset": 100}}))
    .unwrap();
    let page = build("app-1", &dropped, (1_700_000_000_000, 1_702_592_000_000)).unwrap();
    crate::sql::assert_golden("funnel_users_dropped_after_step_2", &page);
    assert_eq!(
        sql.binds
            .iter()
            .filter(|b| **b == Bind::Text("America/New_York".into()))
            .count(),
        1
    );
}

/// The range selects starts only: step 1 is limited to `ts_ms < to`, and
/// the statement reads until `to + window` for the later steps.
#[test]
fn range_limits_starts_and_reads_one_window_past_its_end() {
    for order in ["relaxed", "strict"] {
        let request: FunnelRequest = serde_json::from_value(json!({
            "steps": ["a", "b"], "range": "1d", "window": "2h", "order": order}))
        .unwrap();
        let (from, to) = (1_700_000_000_000, 1_700_086_400_000);
        let sql = build("app", &request, (from, to)).unwrap();
        assert!(sql.text.contains("(name = ? AND ts_ms < ?)"), "{order}");
        assert!(!sql.text.contains("HAVING min(ts_ms) < ?"), "{order}");
        let ints: Vec<i64> = sql
            .binds
            .iter()
            .filter_map(|b| match b {
                Bind::Int(i) => Some(*i),
                _ => None,
            })
            .collect();
        assert!(ints.contains(&to), "{order}: {ints:?}");
        assert!(ints.contains(&from), "{order}: {ints:?}");
        assert!(ints.contains(&(to + 7_200_000)), "{order}: {ints:?}");
        assert!(sql.text.contains("ts_ms >= ? AND ts_ms < ?"), "{order}");
    }
}

/// In any order, a start is an event of any step before `to`: no step's
/// condition carries the end; the starts are filtered by it instead.
#[test]
fn any_order_limits_starts_of_every_step() {
    let request: FunnelRequest = serde_json::from_value(json!({
        "steps": ["a", "b", "c"], "range": "1d", "window": "2h", "order": "any"}))
    .unwrap();
    let (from, to) = (1_700_000_000_000, 1_700_086_400_000);
    let sql = build("app", &request, (from, to)).unwrap();
    assert!(!sql.text.contains("(name = ? AND ts_ms < ?)"));
    assert!(sql
        .text
        .contains("arrayFilter(a -> a < ?, arrayConcat(s1, s2, s3))"));
    assert!(sql.text.contains("HAVING min(ts_ms) < ?"));
    assert_eq!(sql.binds.iter().filter(|b| **b == Bind::Int(to)).count(), 2);
    assert!(sql.binds.contains(&Bind::Int(to + 7_200_000)));
}

fn golden(name: &str, order: Option<&str>) {
    let request: FunnelRequest = serde_json::from_value(json!({
        "steps": ["page_view", {"event": "add_to_cart", "filters": [{"property": "plan", "op": "eq", "value": "pro"}]}, "purchase"],
        "range": "30d", "window": "1h", "breakdown": "country", "order": order})).unwrap();
    let sql = build("app-1", &request, (1_700_000_000_000, 1_702_592_000_000)).unwrap();
    crate::sql::assert_golden(name, &sql);
    assert!(sql.text.is_ascii());
}
