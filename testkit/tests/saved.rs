//! Saved dashboards and funnels in PostgreSQL: create, list, read, replace,
//! delete; definitions validated; an item is invisible from any other app.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use tally_testkit::{services, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboards_and_funnels_crud_sealed_per_app() {
    let iso = Isolation::new(1).await;
    let query = services::query(services::query_config(&iso)).await;
    let http = reqwest::Client::new();
    let (a, b) = (tally_testkit::unique("sva"), tally_testkit::unique("svb"));
    let (key_a, key_b) = (
        tally_testkit::read_key(&a).await,
        tally_testkit::read_key(&b).await,
    );
    let base = |app: &str, rest: &str| format!("{}/api/v1/analytics/{app}/{rest}", query.url());
    let call = |method: reqwest::Method, url: String, key: &str, body: Option<Value>| {
        let mut request = http.request(method, url).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    use reqwest::Method;
    let dashboard = json!({"name": "Overview", "definition": {"widgets": [
        {"type": "live", "title": "Now", "request": {"windows": 60}},
        {"type": "query", "request": {"metric": "unique_users", "group_by": "day", "range": "30d"}},
        {"type": "funnel", "request": {"steps": ["page_view", "purchase"], "range": "30d"}}]}});
    let (status, created) = call(
        Method::POST,
        base(&a, "dashboards"),
        &key_a,
        Some(dashboard.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["definition"], dashboard["definition"]);

    let (status, list) = call(Method::GET, base(&a, "dashboards"), &key_a, None).await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 1));
    let (status, renamed) = call(
        Method::PUT,
        base(&a, &format!("dashboards/{id}")),
        &key_a,
        Some(json!({"name": "Renamed", "definition": {"widgets": []}})),
    )
    .await;
    assert_eq!((status, renamed["name"].as_str()), (200, Some("Renamed")));
    assert!(renamed["updated_ms"].as_i64() >= renamed["created_ms"].as_i64());

    // Sealed: B's key cannot use A's path, and A's id does not exist under B.
    let (status, _) = call(
        Method::GET,
        base(&a, &format!("dashboards/{id}")),
        &key_b,
        None,
    )
    .await;
    assert_eq!(status, 403);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) =
            call(method, base(&b, &format!("dashboards/{id}")), &key_b, None).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    }
    let (status, body) = call(
        Method::PUT,
        base(&b, &format!("dashboards/{id}")),
        &key_b,
        Some(json!({"name": "x", "definition": {"widgets": []}})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (_, list_b) = call(Method::GET, base(&b, "dashboards"), &key_b, None).await;
    assert_eq!(list_b.as_array().unwrap().len(), 0);

    // Funnels are validated as /funnel bodies; dashboards' widgets by their type.
    let refusals = [
        (
            "funnels",
            json!({"name": "one step", "definition": {"steps": ["a"], "range": "7d"}}),
        ),
        (
            "funnels",
            json!({"name": "", "definition": {"steps": ["a", "b"], "range": "7d"}}),
        ),
        (
            "dashboards",
            json!({"name": "bad widget", "definition": {"widgets": [{"type": "sql", "request": {}}]}}),
        ),
        (
            "dashboards",
            json!({"name": "bad query", "definition": {"widgets": [{"type": "query", "request": {"metric": "events"}}]}}),
        ),
        (
            "dashboards",
            json!({"name": "no widgets", "definition": {"tiles": []}}),
        ),
    ];
    for (kind, body) in refusals {
        let (status, answer) = call(Method::POST, base(&a, kind), &key_a, Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_query")),
            "{body}"
        );
    }
    let funnel = json!({"name": "Checkout", "definition": {"steps": ["page_view", "add_to_cart", "purchase"], "range": "30d", "window": "1d"}});
    let (status, saved) = call(Method::POST, base(&a, "funnels"), &key_a, Some(funnel)).await;
    assert_eq!(status, 201, "{saved}");
    let (status, _) = call(Method::GET, base(&a, "reports"), &key_a, None).await;
    assert_eq!(status, 404);

    let (status, _) = call(
        Method::DELETE,
        base(&a, &format!("dashboards/{id}")),
        &key_a,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        Method::GET,
        base(&a, &format!("dashboards/{id}")),
        &key_a,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        Method::GET,
        base(&a, "dashboards/not-a-number"),
        &key_a,
        None,
    )
    .await;
    assert_eq!(status, 404);

    query.stop().await;
    iso.cleanup().await;
}
