//! The served OpenAPI document is true: every documented (method, path)
//! answers on the real service (no 404/405), the analytics and settings paths
//! refuse a request without a read key or session, and the document is the one in the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use tally_testkit::{services, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_route_answers() {
    let iso = Isolation::new(1).await;
    let query = services::query(services::query_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = tally_testkit::unique("doc");
    let read_key = tally_testkit::read_key(&app).await;
    let doc: Value = http
        .get(format!("{}/openapi.json", query.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(query_service::OPENAPI).unwrap()
    );
    let mut checked = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let path_here = path
            .replace("{app_id}", &app)
            .replace("{kind}", "dashboards")
            .replace("{report}", "pages")
            .replace("{id}", "1")
            .replace("{email}", "someone@example.com")
            .replace("{domain}", "shop.example");
        let url = format!("{}{path_here}", query.url());
        for method in methods.as_object().unwrap().keys() {
            let request = |key: Option<&str>| {
                let mut request = match method.as_str() {
                    "get" => http.get(&url),
                    "post" => http.post(&url),
                    "put" => http.put(&url),
                    "delete" => http.delete(&url),
                    other => panic!("undocumented method {other}"),
                };
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                request
                    .header("content-type", "application/json")
                    .body("{}")
            };
            // The stream never ends: only its status line matters.
            let response = request(Some(&read_key)).send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                // Only "this item does not exist", never "no such route" (an empty 404).
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert_eq!(body["error"], "not_found", "{method} {path}");
            }
            assert!(
                status < 500 || path == "/readyz",
                "{method} {path}: {status}"
            );
            if path.starts_with("/api/") {
                // Login and logout refuse a request without the service's
                // Origin first (CSRF); everything else wants a key or session.
                let anonymous = request(None).send().await.unwrap();
                let cross_site = path == "/api/v1/auth/login" || path == "/api/v1/auth/logout";
                let want = if cross_site { 403 } else { 401 };
                assert_eq!(anonymous.status(), want, "{method} {path} without a key");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, query_service::ROUTES.len());
    query.stop().await;
    iso.cleanup().await;
}
