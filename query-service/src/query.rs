//! The statement of an ad-hoc query (`/query`): event metrics from `events`
//! ([`adhoc`]), session metrics from `sessions` ([`session_metrics`]), or both
//! side by side in one statement ([`crate::sql::side_by_side`]); with
//! `"compare": "previous"`, the period of the same length before the range
//! alongside, in the same statement ([`crate::sql::with_previous`]).

use crate::adhoc::{self, AdhocRequest};
use crate::session_metrics;
use crate::sql::{invalid, side_by_side, with_previous, Invalid, Sql};

/// The period of the same length just before `[from, to)`.
pub fn previous_range((from, to): (i64, i64)) -> (i64, i64) {
    (from - (to - from), from)
}

/// The statement of `request`, with the previous period alongside when asked.
pub fn statement(app_id: &str, request: &AdhocRequest, range: (i64, i64)) -> Result<Sql, Invalid> {
    let current = period_statement(app_id, request, range)?;
    match request.compare.as_deref() {
        None => Ok(current),
        Some("previous") => {
            let previous = period_statement(app_id, request, previous_range(range))?;
            Ok(with_previous(current, previous))
        }
        Some(_) => Err(invalid(
            "compare",
            "\"previous\" (the period of the same length before the range)",
        )),
    }
}

/// Metrics with their positions in the request.
type Slots<'a> = Vec<(usize, &'a adhoc::Metric)>;

/// The statement of an ad-hoc request: event metrics from events ([`adhoc`]),
/// session metrics from sessions ([`session_metrics`]), and both side by side
/// when the request asks for both — then every dimension and filter must be
/// one both tables have (time buckets, the session's fields).
fn period_statement(
    app_id: &str,
    request: &AdhocRequest,
    range: (i64, i64),
) -> Result<Sql, Invalid> {
    let metrics = request.metric_list()?;
    let (sessions, events): (Slots<'_>, Slots<'_>) = metrics
        .iter()
        .copied()
        .enumerate()
        .partition(|(_, m)| session_metrics::is_session_metric(m));
    let limit = adhoc::check_limits(request)?;
    if sessions.is_empty() {
        return adhoc::build(app_id, request, &metrics, range);
    }
    if events.is_empty() {
        return session_metrics::build(app_id, request, &metrics, range);
    }
    let both = |why: Invalid| {
        invalid(
            why.0,
            format!("event and session metrics together group and filter by what both have (time buckets and the session's fields): {}", why.1),
        )
    };
    let (event_slots, event_metrics): (Vec<usize>, Vec<&adhoc::Metric>) =
        events.into_iter().unzip();
    let (session_slots, session_metrics_list): (Vec<usize>, Vec<&adhoc::Metric>) =
        sessions.into_iter().unzip();
    let event_side = adhoc::select(app_id, request, &event_metrics, range)?;
    let session_side =
        session_metrics::select(app_id, request, &session_metrics_list, range).map_err(both)?;
    let mut names = vec![String::new(); metrics.len()];
    for (slot, (_, name)) in event_slots.iter().zip(&event_side.metrics) {
        names[*slot] = name.clone();
    }
    for (slot, (_, name)) in session_slots.iter().zip(&session_side.metrics) {
        names[*slot] = name.clone();
    }
    Ok(side_by_side(
        vec![(event_side, event_slots), (session_side, session_slots)],
        names,
        limit,
    ))
}
