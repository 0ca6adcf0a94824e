//! The range rules of [`super::plan`], without a broker.

use super::*;

const NOW: i64 = 1_800_000_000_000;

fn facts(parts: &[(i64, i64, Option<i64>)]) -> Topic {
    let partitions = parts
        .iter()
        .enumerate()
        .map(|(p, &(low, high, first_ms))| PartitionFacts {
            partition: p as i32,
            low,
            high,
            first_ms,
        })
        .collect();
    Topic {
        partitions,
        retention_ms: None,
    }
}

fn map(pairs: &[(i32, i64)]) -> BTreeMap<i32, i64> {
    pairs.iter().copied().collect()
}

#[test]
fn specs_parse() {
    assert_eq!(
        Spec::parse("1700000000000", NOW).unwrap(),
        Spec::Time(1_700_000_000_000)
    );
    assert_eq!(
        Spec::parse("-6h", NOW).unwrap(),
        Spec::Time(NOW - 6 * 3_600_000)
    );
    assert_eq!(
        Spec::parse("-7d", NOW).unwrap(),
        Spec::Time(NOW - 7 * 86_400_000)
    );
    assert_eq!(
        Spec::parse("2023-11-14T22:13:20Z", NOW).unwrap(),
        Spec::Time(1_700_000_000_000)
    );
    assert_eq!(
        Spec::parse("2023-11-14", NOW).unwrap(),
        Spec::Time(1_699_920_000_000)
    );
    assert_eq!(
        Spec::parse("0:5,1:7", NOW).unwrap(),
        Spec::Positions(map(&[(0, 5), (1, 7)]))
    );
    for bad in [
        "",
        "yesterday",
        "-6y",
        "0:5,0:6",
        "0:-1",
        "2023-13-01",
        "-h",
    ] {
        assert!(Spec::parse(bad, NOW).is_err(), "{bad:?}");
    }
}

#[test]
fn a_time_resolves_per_partition_and_follows_without_an_end() {
    let facts = facts(&[(0, 100, None), (0, 50, None)]);
    let found = map(&[(0, 40), (1, -1)]);
    let plan = plan(
        &Spec::Time(NOW - 1),
        None,
        &facts,
        &found,
        &BTreeMap::new(),
        NOW,
    )
    .unwrap();
    assert_eq!(plan.start, map(&[(0, 40), (1, 50)]));
    assert_eq!(plan.end, None);
}

#[test]
fn an_end_time_bounds_each_partition_and_never_precedes_the_start() {
    let facts = facts(&[(0, 100, None), (0, 50, None)]);
    let plan = plan(
        &Spec::Time(NOW - 10),
        Some(&Spec::Time(NOW - 5)),
        &facts,
        &map(&[(0, 40), (1, 20)]),
        &map(&[(0, 60), (1, -1)]),
        NOW,
    )
    .unwrap();
    assert_eq!(plan.end, Some(map(&[(0, 60), (1, 50)])));
    let future = plan_err(&Spec::Time(NOW - 10), Some(&Spec::Time(NOW + 1)), &facts);
    assert!(future.contains("future"), "{future}");
    let backwards = plan_err(&Spec::Time(NOW - 10), Some(&Spec::Time(NOW - 20)), &facts);
    assert!(backwards.contains("later than"), "{backwards}");
}

fn plan_err(from: &Spec, to: Option<&Spec>, facts: &Topic) -> String {
    plan(from, to, facts, &BTreeMap::new(), &BTreeMap::new(), NOW)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_start_the_topic_no_longer_holds_is_refused_with_the_earliest_time() {
    // Partition 1 lost offsets 0..30; its first message left is stamped NOW-500.
    let facts = facts(&[(0, 100, None), (30, 80, Some(NOW - 500))]);
    let err = plan(
        &Spec::Time(NOW - 1_000),
        None,
        &facts,
        &map(&[(0, 0), (1, 30)]),
        &BTreeMap::new(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(err, ReplayError::OffsetsGone { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("partition 1 starts at offset 30"), "{text}");
    assert!(text.contains(&rfc3339(NOW - 500)), "{text}");
    // From that time on, the range is complete.
    assert!(plan(
        &Spec::Time(NOW - 500),
        None,
        &facts,
        &map(&[(0, 70), (1, 30)]),
        &BTreeMap::new(),
        NOW
    )
    .is_ok());
    // Positions below the log start are refused too; at it they are fine.
    let gone = plan_err(&Spec::Positions(map(&[(0, 0), (1, 29)])), None, &facts);
    assert!(gone.contains("offset 29 was removed"), "{gone}");
    assert!(plan(
        &Spec::Positions(map(&[(0, 0), (1, 30)])),
        None,
        &facts,
        &BTreeMap::new(),
        &BTreeMap::new(),
        NOW
    )
    .is_ok());
}

#[test]
fn an_emptied_partition_is_refused_for_times() {
    let facts = facts(&[(0, 10, None), (7, 7, None)]);
    let err = plan_err(&Spec::Time(NOW - 10), None, &facts);
    assert!(err.contains("partition 1 holds no messages"), "{err}");
}

#[test]
fn positions_name_every_partition_within_the_log() {
    let facts = facts(&[(0, 10, None), (0, 10, None)]);
    assert!(plan_err(&Spec::Positions(map(&[(0, 1)])), None, &facts).contains("every partition"));
    assert!(
        plan_err(&Spec::Positions(map(&[(0, 1), (1, 11)])), None, &facts).contains("past its end")
    );
    let to = Spec::Positions(map(&[(0, 0), (1, 5)]));
    assert!(
        plan_err(&Spec::Positions(map(&[(0, 1), (1, 1)])), Some(&to), &facts)
            .contains("partition 0")
    );
    let ok = plan(
        &Spec::Positions(map(&[(0, 1), (1, 1)])),
        Some(&Spec::Positions(map(&[(0, 4), (1, 10)]))),
        &facts,
        &BTreeMap::new(),
        &BTreeMap::new(),
        NOW,
    )
    .unwrap();
    assert_eq!(ok.end, Some(map(&[(0, 4), (1, 10)])));
}

#[test]
fn a_start_near_the_retention_edge_is_refused() {
    let mut topic = facts(&[(0, 10, None)]);
    topic.retention_ms = Some(30 * DAY_MS);
    let err = plan_err(&Spec::Time(NOW - 30 * DAY_MS + 60_000), None, &topic);
    assert!(err.contains("keeps messages 30.0 days"), "{err}");
    assert!(
        err.contains(&rfc3339(NOW - 30 * DAY_MS + RETENTION_MARGIN_MS)),
        "{err}"
    );
    assert!(plan(
        &Spec::Time(NOW - 29 * DAY_MS),
        None,
        &topic,
        &BTreeMap::new(),
        &BTreeMap::new(),
        NOW
    )
    .is_ok());
}

const DAY_MS: i64 = 86_400_000;
