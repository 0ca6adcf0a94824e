//! The dashboard's files on the real query service: page paths answer
//! `index.html` (not cached), built assets are served with a long cache, and
//! nothing outside the build folder is reachable; without a build the pages
//! answer 503 `dashboard_not_built`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tally_testkit::{services, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_are_served_from_the_build_only() {
    let iso = Isolation::new(1).await;
    let dir = std::env::temp_dir().join(tally_testkit::unique("web"));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>Tally</title>",
    )
    .unwrap();
    std::fs::write(dir.join("assets/app-1a2b.js"), "console.log(1)").unwrap();
    std::fs::write(dir.join("secret.txt"), "not an asset").unwrap();
    let mut config = services::query_config(&iso);
    config.web_dir = dir.clone();
    let query = services::query(config).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", query.url())).send();
    for page in ["/", "/login", "/app", "/app/my-site/overview"] {
        let response = get(page).await.unwrap();
        assert_eq!(response.status(), 200, "{page}");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("<title>Tally</title>"));
    }
    let asset = get("/assets/app-1a2b.js").await.unwrap();
    assert_eq!(asset.status(), 200);
    assert!(asset.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(asset.text().await.unwrap(), "console.log(1)");
    for outside in [
        "/assets/../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/secret.txt",
        "/assets/missing.js",
    ] {
        let response = get(outside).await.unwrap();
        assert_eq!(response.status(), 404, "{outside}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{outside}");
    }
    query.stop().await;

    let mut config = services::query_config(&iso);
    config.web_dir = dir.join("missing");
    let query = services::query(config).await;
    let response = reqwest::get(format!("{}/app/x", query.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "dashboard_not_built");
    query.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
    iso.cleanup().await;
}
