//! Ground truth: what the system must show, computed exactly from the record.

use crate::record::Acked;
use std::collections::{BTreeMap, HashMap, HashSet};
use tally_schemas::live::{window_start, WINDOW_MS};

/// The funnel every run measures.
pub const FUNNEL: [&str; 3] = ["page_view", "add_to_cart", "purchase"];

/// Exact figures of one app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppTruth {
    /// Events.
    pub events: u64,
    /// Events per name.
    pub by_name: BTreeMap<String, u64>,
    /// Distinct identities.
    pub uniques: u64,
    /// Events per 5-second window (window start → count).
    pub windows: BTreeMap<i64, u64>,
    /// Distinct identities per window.
    pub window_uniques: BTreeMap<i64, u64>,
    /// Users reaching each funnel step in order ([`FUNNEL`]) at strictly increasing
    /// times, any time span (greedy: earliest first step, earliest next step after it).
    pub funnel: [u64; 3],
    /// Earliest and latest event time.
    pub ts_range: (i64, i64),
}

/// Computes the truth per app.
pub fn compute(records: &[Acked]) -> BTreeMap<String, AppTruth> {
    let mut apps: BTreeMap<String, AppTruth> = BTreeMap::new();
    let mut users: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut window_users: HashMap<(&str, i64), HashSet<&str>> = HashMap::new();
    // Per (app, user): funnel steps reached so far, in time order.
    let mut ordered: Vec<&Acked> = records.iter().collect();
    ordered.sort_by_key(|r| (r.ts_ms, r.sent_ms));
    let mut progress: HashMap<(&str, &str), (usize, i64)> = HashMap::new();
    for record in ordered {
        let app = apps
            .entry(record.app_id.clone())
            .or_insert_with(|| AppTruth {
                ts_range: (i64::MAX, i64::MIN),
                ..AppTruth::default()
            });
        app.events += 1;
        *app.by_name.entry(record.name.clone()).or_default() += 1;
        let window = window_start(record.ts_ms);
        *app.windows.entry(window).or_default() += 1;
        app.ts_range = (
            app.ts_range.0.min(record.ts_ms),
            app.ts_range.1.max(record.ts_ms),
        );
        users
            .entry(&record.app_id)
            .or_default()
            .insert(&record.distinct_id);
        window_users
            .entry((&record.app_id, window))
            .or_default()
            .insert(&record.distinct_id);
        let (step, last_ts) = progress
            .entry((&record.app_id, &record.distinct_id))
            .or_insert((0, i64::MIN));
        if *step < FUNNEL.len() && record.name == FUNNEL[*step] && record.ts_ms > *last_ts {
            app.funnel[*step] += 1;
            *step += 1;
            *last_ts = record.ts_ms;
        }
    }
    for (app_id, app) in &mut apps {
        app.uniques = users.get(app_id.as_str()).map_or(0, |u| u.len() as u64);
    }
    for ((app_id, window), set) in window_users {
        if let Some(app) = apps.get_mut(app_id) {
            app.window_uniques.insert(window, set.len() as u64);
        }
    }
    apps
}

/// A count the live windows must show: at least `sure`, at most `sure + maybe`.
/// `maybe` counts events whose lateness the record cannot decide (the gateway's
/// receive time lies between the record's send and acknowledgement times).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Events certainly counted live.
    pub sure: u64,
    /// Events that may or may not be late.
    pub maybe: u64,
}

impl Bounds {
    /// Whether `n` is a possible live count.
    pub fn admits(&self, n: u64) -> bool {
        n >= self.sure && n <= self.sure + self.maybe
    }
}

/// What the live windows of one app must show: bots excluded, and events the
/// gateway received after their window's end plus the allowed lateness excluded
/// (the aggregator's rule, see `stream_aggregator::processor::liveness`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveTruth {
    /// Per 5-second window.
    pub windows: BTreeMap<i64, Bounds>,
    /// Per event name.
    pub by_name: BTreeMap<String, Bounds>,
    /// Distinct non-bot identities with an event that is live for sure.
    pub uniques: u64,
}

/// Computes the live truth per app for the aggregator's `allowed_lateness_ms`.
pub fn live(records: &[Acked], allowed_lateness_ms: i64) -> BTreeMap<String, LiveTruth> {
    let mut apps: BTreeMap<String, LiveTruth> = BTreeMap::new();
    let mut users: HashMap<&str, HashSet<&str>> = HashMap::new();
    for record in records.iter().filter(|r| !r.bot) {
        let window = window_start(record.ts_ms);
        let deadline = window + WINDOW_MS + allowed_lateness_ms;
        let app = apps.entry(record.app_id.clone()).or_default();
        let (window_bounds, name_bounds) = (
            app.windows.entry(window).or_default(),
            app.by_name.entry(record.name.clone()).or_default(),
        );
        if record.acked_ms <= deadline {
            window_bounds.sure += 1;
            name_bounds.sure += 1;
            users
                .entry(&record.app_id)
                .or_default()
                .insert(&record.distinct_id);
        } else if record.sent_ms <= deadline {
            window_bounds.maybe += 1;
            name_bounds.maybe += 1;
        }
    }
    for (app_id, app) in &mut apps {
        app.uniques = users.get(app_id.as_str()).map_or(0, |u| u.len() as u64);
        app.windows.retain(|_, b| b.sure + b.maybe > 0);
        app.by_name.retain(|_, b| b.sure + b.maybe > 0);
    }
    apps
}

/// One session by the definition: (visitor, start, end, events).
pub type SessionTruth = (String, i64, i64, u32);

/// Sessions per app: each visitor's events by time, split where two consecutive
/// events are more than `gap_ms` apart (bots included, as in the table).
pub fn sessions(records: &[Acked], gap_ms: i64) -> BTreeMap<String, Vec<SessionTruth>> {
    let mut times: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for record in records {
        times
            .entry((&record.app_id, &record.distinct_id))
            .or_default()
            .push(record.ts_ms);
    }
    let mut apps: BTreeMap<String, Vec<SessionTruth>> = BTreeMap::new();
    for ((app_id, visitor), mut ts) in times {
        ts.sort_unstable();
        let out = apps.entry(app_id.to_owned()).or_default();
        let mut current: Option<SessionTruth> = None;
        for t in ts {
            match current.as_mut() {
                Some(session) if t - session.2 <= gap_ms => {
                    session.2 = t;
                    session.3 += 1;
                }
                _ => {
                    out.extend(current.take());
                    current = Some((visitor.to_owned(), t, t, 1));
                }
            }
        }
        out.extend(current);
    }
    for list in apps.values_mut() {
        list.sort();
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(id: &str, user: &str, name: &str, ts: i64) -> Acked {
        Acked {
            event_id: id.into(),
            app_id: "a".into(),
            name: name.into(),
            distinct_id: user.into(),
            bot: false,
            ts_ms: ts,
            sent_ms: ts,
            acked_ms: ts,
        }
    }

    #[test]
    fn counts_windows_uniques_and_ordered_funnel() {
        let records = vec![
            acked("1", "u1", "page_view", 1_000),
            acked("2", "u1", "add_to_cart", 2_000),
            acked("3", "u1", "purchase", 6_000),
            acked("4", "u2", "add_to_cart", 1_500), // before any page view: not a funnel step
            acked("5", "u2", "page_view", 7_000),
            acked("6", "u3", "page_view", 7_500),
            acked("7", "u3", "purchase", 8_000), // skipped add_to_cart
            acked("8", "u4", "page_view", 9_000),
            acked("9", "u4", "add_to_cart", 9_000), // same time: not after the page view
        ];
        let truth = &compute(&records)["a"];
        assert_eq!(truth.events, 9);
        assert_eq!(truth.uniques, 4);
        assert_eq!(truth.windows, BTreeMap::from([(0, 3), (5_000, 6)]));
        assert_eq!(truth.window_uniques, BTreeMap::from([(0, 2), (5_000, 4)]));
        assert_eq!(truth.funnel, [4, 1, 1]);
        assert_eq!(truth.by_name["page_view"], 4);
        assert_eq!(truth.ts_range, (1_000, 9_000));
    }

    #[test]
    fn sessions_split_at_the_gap() {
        let records = vec![
            acked("1", "u1", "page_view", 0),
            acked("2", "u1", "click", 1_000),
            acked("3", "u1", "page_view", 3_000),
            acked("4", "u2", "page_view", 500),
        ];
        let truth = &sessions(&records, 1_500)["a"];
        assert_eq!(
            truth,
            &vec![
                ("u1".to_owned(), 0, 1_000, 2),
                ("u1".to_owned(), 3_000, 3_000, 1),
                ("u2".to_owned(), 500, 500, 1),
            ]
        );
    }

    #[test]
    fn live_truth_leaves_out_bots_and_late_events() {
        let mut records = vec![
            acked("1", "u1", "page_view", 1_000),
            acked("2", "u2", "page_view", 2_000),
            acked("3", "u3", "page_view", 3_000),
            acked("4", "u4", "click", 4_000),
        ];
        records[1].bot = true;
        // Window [0, 5000) closes for good at 5000 + 1000 lateness.
        records[2].sent_ms = 7_000; // surely late
        records[2].acked_ms = 7_100;
        records[3].sent_ms = 5_900; // may be late
        records[3].acked_ms = 6_100;
        let truth = &live(&records, 1_000)["a"];
        assert_eq!(truth.windows[&0], Bounds { sure: 1, maybe: 1 });
        assert_eq!(truth.by_name["page_view"], Bounds { sure: 1, maybe: 0 });
        assert_eq!(truth.by_name["click"], Bounds { sure: 0, maybe: 1 });
        assert_eq!(truth.uniques, 1);
        assert!(truth.windows[&0].admits(2) && !truth.windows[&0].admits(3));
    }
}
