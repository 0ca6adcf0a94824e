//! Unit tests of `/query` from derived tables: which requests are covered,
//! how a range splits into report hours and raw pieces (property: every
//! instant once), and golden statements.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn request(body: serde_json::Value) -> AdhocRequest {
    serde_json::from_value(body).unwrap()
}

fn page_views(extra: serde_json::Value) -> AdhocRequest {
    let mut body = json!({
        "metrics": ["events", "unique_users"],
        "filters": [{"property": "name", "op": "eq", "value": "page_view"}],
        "range": "90d",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    request(body)
}

#[test]
fn page_view_questions_on_page_dimensions_are_covered_and_nothing_else() {
    let covered_by = |r: &AdhocRequest| covered(r).is_some();
    assert!(covered_by(&page_views(json!({}))));
    let by_device = page_views(json!({"group_by": ["$device_type", "url_path"]}));
    let checked = covered(&by_device).unwrap();
    assert_eq!(checked.dims, ["device_type", "url_path"]);
    assert_eq!(checked.dim_names, ["$device_type", "url_path"]);
    assert_eq!(checked.metrics, [PageMetric::Events, PageMetric::Users]);
    assert!(checked.filters.is_empty());
    assert!(covered_by(&page_views(json!({
        "filters": [{"property": "$name", "op": "eq", "value": "page_view"},
                    {"property": "country", "op": "in", "value": ["DE", "FR"]}],
        "source": "auto", "include_bots": true,
    }))));
    for not in [
        json!({"filters": []}),
        json!({"filters": [{"property": "name", "op": "eq", "value": "signup"}]}),
        json!({"filters": [{"property": "name", "op": "neq", "value": "page_view"}]}),
        json!({"group_by": "day"}),
        json!({"group_by": "os"}),
        json!({"group_by": "properties.plan"}),
        json!({"metrics": ["events", {"sum": "amount"}]}),
        json!({"metrics": ["sessions"]}),
        json!({"source": "raw"}),
        json!({"source": "rollup"}),
        json!({"sample": 0.5}),
        json!({"compare": "previous"}),
        json!({"segment": {"did": "signup"}}),
        json!({"limit": 0}),
    ] {
        let mut body = page_views(json!({}));
        let extra = page_views(not.clone());
        body.filters = extra.filters;
        body.group_by = extra.group_by;
        body.metrics = extra.metrics;
        body.source = extra.source;
        body.sample = extra.sample;
        body.compare = extra.compare;
        body.segment = extra.segment;
        body.limit = extra.limit;
        assert!(!covered_by(&body), "covered: {not}");
    }
    let other_filter = page_views(json!({"filters": [
        {"property": "name", "op": "eq", "value": "page_view"},
        {"property": "plan", "op": "eq", "value": "pro"}]}));
    assert!(!covered_by(&other_filter));
}

const H: i64 = HOUR_MS;
/// 2023-11-14T00:00:00Z.
const DAY0: i64 = 1_699_920_000_000;

fn days(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|d| (*d).to_owned()).collect()
}

#[test]
fn a_range_splits_into_whole_hours_and_raw_pieces() {
    let none = BTreeSet::new();
    // Inside one hour: raw only.
    let inside = (DAY0 + 10 * H + 5, DAY0 + 10 * H + 900);
    assert_eq!(pieces(inside, &none), (None, vec![inside]));
    // Partial first and last hours around whole hours.
    let range = (DAY0 + 1_000, DAY0 + 5 * H + 7);
    assert_eq!(
        pieces(range, &none),
        (
            Some((DAY0 + H, DAY0 + 5 * H)),
            vec![(DAY0 + 1_000, DAY0 + H), (DAY0 + 5 * H, DAY0 + 5 * H + 7)]
        )
    );
    // A raw day inside the range, adjacent to the partial last hour: merged.
    let three_days = (DAY0 + 30 * 60_000, DAY0 + 2 * 24 * H + 5);
    let (report, raw) = pieces(three_days, &days(&["2023-11-15", "2023-11-16"]));
    assert_eq!(report, Some((DAY0 + H, DAY0 + 48 * H)));
    assert_eq!(
        raw,
        vec![
            (DAY0 + 30 * 60_000, DAY0 + H),
            (DAY0 + 24 * H, DAY0 + 48 * H + 5)
        ]
    );
    // Every whole hour on raw days: no report piece.
    let (report, raw) = pieces((DAY0, DAY0 + 24 * H), &days(&["2023-11-14"]));
    assert_eq!((report, raw), (None, vec![(DAY0, DAY0 + 24 * H)]));
    assert_eq!(
        raw_days_in(
            (DAY0, DAY0 + 3 * 24 * H),
            &days(&["2023-11-15", "2024-01-01"])
        ),
        1
    );
}

proptest! {
    #[test]
    fn every_instant_is_in_one_piece(
        from in 0i64..(5 * 24 * H),
        len in 1i64..(5 * 24 * H),
        raw_mask in 0u8..32,
        probes in proptest::collection::vec(0i64..(10 * 24 * H), 20),
    ) {
        let raw_days: BTreeSet<String> = (0..5)
            .filter(|d| raw_mask & (1 << d) != 0)
            .map(|d| crate::sql::utc_date(DAY0 + d * 24 * H))
            .collect();
        let range = (DAY0 + from, DAY0 + from + len);
        let (report, raw) = pieces(range, &raw_days);
        for w in raw.windows(2) {
            prop_assert!(w[0].1 < w[1].0, "pieces sorted, apart: {raw:?}");
        }
        if let Some((a, b)) = report {
            prop_assert!(a % H == 0 && b % H == 0 && a < b);
        }
        for probe in probes {
            let t = DAY0 + probe;
            let in_range = t >= range.0 && t < range.1;
            let in_raw = raw.iter().filter(|(a, b)| t >= *a && t < *b).count();
            // The report answers its hours except those of raw days.
            let in_report = report.is_some_and(|(a, b)| {
                t >= a && t < b && !raw_days.contains(&crate::sql::utc_date(t))
            });
            prop_assert_eq!(in_raw + usize::from(in_report), usize::from(in_range), "t={}", t);
        }
    }
}

fn golden_range() -> (i64, i64) {
    (DAY0 + 17 * 60_000, DAY0 + 3 * 24 * H + 42 * 60_000)
}

#[test]
fn golden_derived_statements() {
    let by_device = page_views(json!({
        "group_by": ["url_path", "device_type"],
        "filters": [{"property": "name", "op": "eq", "value": "page_view"},
                    {"property": "$country", "op": "in", "value": ["DE", "FR"]}],
        "limit": 20,
    }));
    let sql = build(
        "app-1",
        &covered(&by_device).unwrap(),
        golden_range(),
        &days(&["2023-11-15"]),
    )
    .unwrap()
    .unwrap();
    crate::sql::assert_golden("derived_pages_by_device", &sql);
    let total = page_views(json!({"metrics": ["events"], "include_bots": true}));
    let sql = build(
        "app-1",
        &covered(&total).unwrap(),
        golden_range(),
        &days(&[]),
    )
    .unwrap()
    .unwrap();
    crate::sql::assert_golden("derived_total_no_raw_days", &sql);
    let hour = (DAY0 + 60_000, DAY0 + 50 * 60_000);
    let users = page_views(json!({"metrics": ["unique_users"], "group_by": "referrer_host"}));
    let sql = build("app-1", &covered(&users).unwrap(), hour, &days(&[]))
        .unwrap()
        .unwrap();
    crate::sql::assert_golden("derived_within_one_hour", &sql);
}

#[test]
fn scattered_raw_days_leave_the_request_to_raw_rows() {
    let every_other: Vec<String> = (0..60)
        .step_by(2)
        .map(|d| crate::sql::utc_date(DAY0 + d * 24 * H))
        .collect();
    let refs: Vec<&str> = every_other.iter().map(String::as_str).collect();
    let request = page_views(json!({}));
    let built = build(
        "app-1",
        &covered(&request).unwrap(),
        (DAY0, DAY0 + 60 * 24 * H),
        &days(&refs),
    )
    .unwrap();
    assert!(built.is_none());
}
