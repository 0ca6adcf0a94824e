//! The statement of an ad-hoc query (`/query`): event metrics from `events`
//! ([`adhoc`]), session metrics from `sessions` ([`session_metrics`]), or both
//! side by side in one statement ([`crate::sql::side_by_side`]).

use crate::adhoc::{self, AdhocRequest};
use crate::session_metrics;
use crate::sql::{invalid, side_by_side, Invalid, Sql};

/// Metrics with their positions in the request.
type Slots<'a> = Vec<(usize, &'a adhoc::Metric)>;

/// The statement of an ad-hoc request: event metrics from events ([`adhoc`]),
/// session metrics from sessions ([`session_metrics`]), and both side by side
/// when the request asks for both — then every dimension and filter must be
/// one both tables have (time buckets, the session's fields).
pub fn statement(app_id: &str, request: &AdhocRequest, range: (i64, i64)) -> Result<Sql, Invalid> {
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
