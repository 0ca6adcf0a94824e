//! Every error answer of the three services is JSON `{"error", "message"}`
//! with the right status, also when no handler of ours ran: an unknown route
//! (404 `not_found`), a known route with another method (405
//! `method_not_allowed`, with `Allow`), a path segment that is not UTF-8 once
//! percent-decoded (400 `invalid_path`), and a repeated or ill-typed query
//! parameter (400 `invalid_query_string`). Before, axum answered these with
//! empty or plain-text bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::Value;
use tally_testkit::Pipeline;

/// Sends `method url` (with the read key when given) and returns the status,
/// the `Allow` header and the body, which must be a JSON error.
async fn refused(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = http.request(method.clone(), url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{method} {url}: {status} {text:?}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{method} {url}: {status} {text:?} is not JSON: {err}"));
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{method} {url}: {body}"
    );
    (status, allow, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_routes_methods_and_unparsable_requests_answer_json() {
    let pipeline = Pipeline::start("errors").await;
    let Pipeline {
        gateway,
        aggregator,
        query,
        http,
        app,
        read_key,
        ..
    } = &pipeline;
    let key = Some(read_key.as_str());

    // Unknown routes and methods, on every service.
    for base in [gateway.url(), aggregator.url(), query.url()] {
        let (status, _, body) = refused(http, Method::GET, &format!("{base}/nowhere"), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{base}: {body}"
        );
        let (status, allow, body) =
            refused(http, Method::DELETE, &format!("{base}/livez"), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{base}: {body}"
        );
        assert!(allow.unwrap_or_default().contains("GET"), "{base}");
    }
    let (status, allow, body) = refused(
        http,
        Method::GET,
        &format!("{}/api/v1/events/batch", gateway.url()),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(allow.as_deref(), Some("POST"));
    let live = format!("{}/api/v1/analytics/{app}/live", query.url());
    let (status, allow, body) = refused(http, Method::PUT, &live, key).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert!(allow.unwrap_or_default().contains("GET"));

    // A path segment that is not UTF-8 once decoded.
    for url in [
        format!("{}/api/v1/analytics/%FF/live", query.url()),
        format!("{}/api/v1/analytics/{app}/reports/%C3%28", query.url()),
        format!("{}/api/v1/analytics/{app}/dashboards/%FF", query.url()),
    ] {
        let (status, _, body) = refused(http, Method::GET, &url, key).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_path")),
            "{url}: {body}"
        );
    }
    let (status, _, body) = refused(
        http,
        Method::POST,
        &format!("{}/v1/%FF", gateway.url()),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_path")),
        "{body}"
    );

    // Repeated and ill-typed query parameters.
    for rest in [
        "live?windows=1&windows=2",
        "live?from_event=a&from_event=b&to_event=c",
        "count?from=1&from=2",
        "reports/pages?limit=abc",
        "reports/pages?include_bots=maybe",
    ] {
        let url = format!("{}/api/v1/analytics/{app}/{rest}", query.url());
        let (status, _, body) = refused(http, Method::GET, &url, key).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_query_string")),
            "{rest}: {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty(), "{rest}");
    }
    // Parsed by the handler, as before: a reason of its own.
    let (status, _, body) = refused(http, Method::GET, &format!("{live}?windows=abc"), key).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );

    pipeline.stop().await;
}
