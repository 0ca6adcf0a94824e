//! Sessionization against a brute-force definition (sort by time, split at gaps
//! over 30 minutes), for any arrival order and any batch split.

use super::*;
use proptest::prelude::*;

const MIN: i64 = 60_000;

fn event(name: &str, ts: i64, path: &str) -> Envelope {
    let mut envelope: Envelope = serde_json::from_value(serde_json::json!({
        "event_id": format!("e{ts}"),
        "app_id": "a",
        "name": name,
        "distinct_id": "v",
        "timestamp_ms": ts,
        "received_at_ms": ts,
    }))
    .unwrap();
    envelope.enrichment.url_path = path.into();
    envelope.enrichment.country = format!("c{ts}");
    envelope
}

/// (start, end, events) of every session by the definition.
fn brute_force(mut times: Vec<i64>) -> Vec<(i64, i64, u32)> {
    times.sort_unstable();
    let mut out: Vec<(i64, i64, u32)> = Vec::new();
    for ts in times {
        match out.last_mut() {
            Some(last) if ts - last.1 <= SESSION_GAP_MS => {
                last.1 = ts;
                last.2 += 1;
            }
            _ => out.push((ts, ts, 1)),
        }
    }
    out
}

fn shape(sessions: &[Session]) -> Vec<(i64, i64, u32)> {
    let mut out: Vec<(i64, i64, u32)> = sessions
        .iter()
        .map(|s| (s.start_ms, s.end_ms, s.events))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn gap_splits_sessions_and_pages_give_entry_exit_and_bounce() {
    let mut visitor = Visitor::new();
    let mut changes = Changes::default();
    let events = [
        event("page_view", 0, "/a"),
        event("click", 5 * MIN, ""),
        event("page_view", 10 * MIN, "/b"),
        event("page_view", 50 * MIN, "/c"), // 40 min later: new session
    ];
    let ids: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| visitor.apply(0, i as i64, e, &mut changes))
        .collect();
    assert_eq!(ids, ["0-0", "0-0", "0-0", "0-3"]);
    let first = visitor.sessions[0].row("a", "v", false);
    assert_eq!((first.events, first.page_views), (3, 2));
    assert_eq!(
        (first.entry_page.as_str(), first.exit_page.as_str()),
        ("/a", "/b")
    );
    assert_eq!(first.duration_ms, 10 * MIN as u64);
    assert_eq!((first.bounce, first.version), (0, 2));
    assert_eq!(first.country, "c0");
    let second = visitor.sessions[1].row("a", "v", false);
    assert_eq!((second.bounce, second.entry_page.as_str()), (1, "/c"));
    assert_eq!(changes.sessions.len(), 2);
}

#[test]
fn a_late_event_in_the_hole_merges_two_sessions() {
    let mut visitor = Visitor::new();
    let mut changes = Changes::default();
    visitor.apply(0, 0, &event("page_view", 0, "/a"), &mut changes);
    visitor.apply(0, 1, &event("page_view", 50 * MIN, "/z"), &mut changes);
    assert_eq!(visitor.sessions.len(), 2);
    // 25 min: within 30 min of both.
    let id = visitor.apply(0, 2, &event("click", 25 * MIN, ""), &mut changes);
    assert_eq!(id, "0-0");
    assert_eq!(shape(&visitor.sessions), vec![(0, 50 * MIN, 3)]);
    let (gone, dropped) = &changes.sessions["0-1"];
    assert!(*dropped);
    assert_eq!(gone.version, 2);
    assert_eq!(visitor.sessions[0].row("a", "v", false).exit_page, "/z");
}

#[test]
fn an_earlier_event_moves_the_start_and_the_first_touch() {
    let mut visitor = Visitor::new();
    let mut changes = Changes::default();
    visitor.apply(3, 10, &event("page_view", 20 * MIN, "/b"), &mut changes);
    visitor.apply(3, 11, &event("page_view", 5 * MIN, "/a"), &mut changes);
    let row = visitor.sessions[0].row("a", "v", false);
    assert_eq!(row.session_id, "3-10");
    assert_eq!(
        (row.start_ms, row.entry_page.as_str()),
        (5 * MIN as u64, "/a")
    );
    assert_eq!(row.country, format!("c{}", 5 * MIN));
    // The table partition follows the first-seen time, which does not move.
    assert_eq!(row.created_date, event_date(20 * MIN));
    assert!(visitor.has_applied(3, 11) && !visitor.has_applied(3, 12));
    assert!(!visitor.has_applied(2, 5));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// For any arrival order the kept sessions are exactly the brute-force
    /// sessions (when no more than `KEPT_SESSIONS` exist), and the last emitted
    /// version of each session id agrees with the state.
    #[test]
    fn any_arrival_order_gives_the_gap_sessions(
        times in proptest::collection::vec(0i64..(4 * 60), 1..40),
        order in proptest::collection::vec(any::<u32>(), 40),
    ) {
        let times: Vec<i64> = times.into_iter().map(|m| m * MIN).collect();
        let want = brute_force(times.clone());
        prop_assume!(want.len() <= KEPT_SESSIONS);
        let mut arrival: Vec<usize> = (0..times.len()).collect();
        arrival.sort_by_key(|i| order[*i]);
        let mut visitor = Visitor::new();
        let mut changes = Changes::default();
        for (offset, i) in arrival.into_iter().enumerate() {
            visitor.apply(0, offset as i64, &event("e", times[i], ""), &mut changes);
        }
        prop_assert_eq!(shape(&visitor.sessions), want.clone());
        let live: Vec<Session> = changes
            .sessions
            .values()
            .filter(|(_, dropped)| !dropped)
            .map(|(s, _)| s.clone())
            .collect();
        prop_assert_eq!(shape(&live), want);
    }
}
