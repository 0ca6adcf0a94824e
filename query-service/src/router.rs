//! Every route of the query service in one place: [`ROUTES`] (which the
//! OpenAPI document [`OPENAPI`] must list exactly, unit test below, and which
//! all answer, `testkit/tests/openapi.rs`), and [`app`], the router serving
//! them. Every analytics route takes a read-access guard
//! ([`crate::auth::ReadAccess`], or [`crate::stream_token::StreamAccess`] for
//! the live stream), every settings route [`crate::auth::AdminAccess`]; the
//! login routes are [`crate::session`]; the dashboard's page and files
//! ([`crate::web`]: `/`, `/login`, `/app/…`, `/assets/…`) are not API routes
//! and not in [`ROUTES`]. Every error, rejection and unknown route answers JSON.

use crate::adhoc::AdhocRequest;
use crate::funnel::FunnelRequest;
use crate::retention::RetentionRequest;
use crate::{
    api, deletion, discovery, live, persons, reports, saved, session, settings, stream_token, web,
    AppState,
};
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// Every route as (method, path): the OpenAPI document served at
/// `/openapi.json` (`static/openapi.json`) must list exactly these (unit test),
/// and every one of them answers (`testkit/tests/openapi.rs`).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/analytics/{app_id}/live"),
    ("get", "/api/v1/analytics/{app_id}/live/stream"),
    ("post", "/api/v1/analytics/{app_id}/live/token"),
    ("get", "/api/v1/analytics/{app_id}/count"),
    ("get", "/api/v1/analytics/{app_id}/query"),
    ("post", "/api/v1/analytics/{app_id}/query"),
    ("post", "/api/v1/analytics/{app_id}/funnel"),
    ("post", "/api/v1/analytics/{app_id}/retention"),
    ("get", "/api/v1/analytics/{app_id}/reports/{report}"),
    ("get", "/api/v1/analytics/{app_id}/properties"),
    ("get", "/api/v1/analytics/{app_id}/properties/values"),
    ("get", "/api/v1/analytics/{app_id}/persons/{id}"),
    ("get", "/api/v1/analytics/{app_id}/{kind}"),
    ("post", "/api/v1/analytics/{app_id}/{kind}"),
    ("get", "/api/v1/analytics/{app_id}/{kind}/{id}"),
    ("put", "/api/v1/analytics/{app_id}/{kind}/{id}"),
    ("delete", "/api/v1/analytics/{app_id}/{kind}/{id}"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/me"),
    ("get", "/api/v1/apps/{app_id}/keys"),
    ("post", "/api/v1/apps/{app_id}/keys"),
    ("delete", "/api/v1/apps/{app_id}/keys/{id}"),
    ("get", "/api/v1/apps/{app_id}/domains"),
    ("post", "/api/v1/apps/{app_id}/domains"),
    ("delete", "/api/v1/apps/{app_id}/domains/{domain}"),
    ("get", "/api/v1/apps/{app_id}/members"),
    ("post", "/api/v1/apps/{app_id}/members"),
    ("delete", "/api/v1/apps/{app_id}/members/{email}"),
    ("delete", "/api/v1/apps/{app_id}/persons/{id}"),
    ("get", "/api/v1/apps/{app_id}/persons/jobs/{job_id}"),
    ("get", "/openapi.json"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("../static/openapi.json");

/// The query service's routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/analytics/{app_id}/live", get(live::live))
        .route("/api/v1/analytics/{app_id}/live/stream", get(live::stream))
        .route(
            "/api/v1/analytics/{app_id}/live/token",
            axum::routing::post(stream_token::issue),
        )
        .route("/api/v1/analytics/{app_id}/count", get(api::count))
        .route(
            "/api/v1/analytics/{app_id}/query",
            get(api::statement_endpoint::<AdhocRequest>)
                .post(api::statement_endpoint::<AdhocRequest>),
        )
        .route(
            "/api/v1/analytics/{app_id}/funnel",
            axum::routing::post(api::statement_endpoint::<FunnelRequest>),
        )
        .route(
            "/api/v1/analytics/{app_id}/retention",
            axum::routing::post(api::statement_endpoint::<RetentionRequest>),
        )
        .route(
            "/api/v1/analytics/{app_id}/reports/{report}",
            get(reports::report),
        )
        .route(
            "/api/v1/analytics/{app_id}/properties",
            get(discovery::keys),
        )
        .route(
            "/api/v1/analytics/{app_id}/properties/values",
            get(discovery::values),
        )
        .route(
            "/api/v1/analytics/{app_id}/persons/{id}",
            get(persons::person),
        )
        .route(
            "/api/v1/analytics/{app_id}/{kind}",
            get(saved::list).post(saved::create),
        )
        .route(
            "/api/v1/analytics/{app_id}/{kind}/{id}",
            get(saved::get).put(saved::replace).delete(saved::delete),
        )
        .route("/api/v1/auth/login", axum::routing::post(session::login))
        .route("/api/v1/auth/logout", axum::routing::post(session::logout))
        .route("/api/v1/auth/me", get(session::me))
        .route(
            "/api/v1/apps/{app_id}/keys",
            get(settings::keys).post(settings::create_key),
        )
        .route(
            "/api/v1/apps/{app_id}/keys/{id}",
            axum::routing::delete(settings::revoke_key),
        )
        .route(
            "/api/v1/apps/{app_id}/domains",
            get(settings::domains).post(settings::add_domain),
        )
        .route(
            "/api/v1/apps/{app_id}/domains/{domain}",
            axum::routing::delete(settings::remove_domain),
        )
        .route(
            "/api/v1/apps/{app_id}/members",
            get(settings::members).post(settings::add_member),
        )
        .route(
            "/api/v1/apps/{app_id}/members/{email}",
            axum::routing::delete(settings::remove_member),
        )
        .route(
            "/api/v1/apps/{app_id}/persons/{id}",
            axum::routing::delete(deletion::delete_person),
        )
        .route(
            "/api/v1/apps/{app_id}/persons/jobs/{job_id}",
            get(deletion::job),
        )
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI,
                )
            }),
        )
        .route("/", get(web::page))
        .route("/login", get(web::page))
        .route("/app", get(web::page))
        .route("/app/{*page}", get(web::page))
        .route("/assets/{*file}", get(web::asset))
        .route("/livez", get(tally_common::http::livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        // Every request answers from one served pair (see `serving`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::serving::resolve,
        ))
        .with_state(state)
        // Unknown routes, other methods and any plain-text rejection answer JSON too.
        .layer(axum::middleware::from_fn(tally_common::http::json_errors))
}

async fn readyz(State(state): State<Arc<AppState>>) -> axum::response::Response {
    let redis = state.live.ping().await.err();
    let clickhouse = state.events.ping().await.err();
    tally_common::http::readiness(&[("redis", redis), ("clickhouse", clickhouse)])
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> axum::response::Response {
    tally_common::http::render_metrics(&state.metrics.registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, served);
    }
}
