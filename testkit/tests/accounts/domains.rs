//! An admin's site domains (the names Plausible's and Umami's trackers send
//! instead of a key) through the dashboard's settings API, on the real query
//! service, PostgreSQL and gateway: a domain added in Settings routes the
//! site's events to the app without a restart, belongs to one app only, and
//! stops routing once removed.

use super::client::Browser;
use super::{eventually, user};
use serde_json::json;
use tally_common::accounts::Role;
use tally_testkit::{services, Isolation};

/// Status of a Plausible page view of `domain` sent to the gateway at `base`.
async fn plausible_event(base: &str, domain: &str) -> u16 {
    let body = json!({"n": "pageview", "u": format!("https://{domain}/pricing"), "d": domain});
    reqwest::Client::new()
        .post(format!("{base}/api/event"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_manage_site_domains_and_the_gateway_follows_at_once() {
    let iso = Isolation::new(1).await;
    let query = services::query(services::query_config(&iso)).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let (app, other) = (
        tally_testkit::unique("dom_a"),
        tally_testkit::unique("dom_o"),
    );
    tally_testkit::read_key(&app).await;
    tally_testkit::read_key(&other).await;
    let admin = format!("{}@example.com", tally_testkit::unique("dadmin"));
    user(
        &admin,
        "admin-password",
        &[(&app, Role::Admin), (&other, Role::Viewer)],
    )
    .await;
    let browser = Browser::new(&query.url());
    assert_eq!(browser.login(&admin, "admin-password").await.0, 200);
    let site = format!(
        "{}.example",
        tally_testkit::unique("shop").replace('_', "-")
    );
    let path = format!("/api/v1/apps/{app}/domains");
    assert_eq!(plausible_event(&gateway.url(), &site).await, 401);

    // Not a host name: refused with the field named.
    let (status, answer) = browser
        .send("POST", &path, Some(json!({"domain": "shop example/x"})))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_parameter")),
        "{answer}"
    );
    // Written any way, stored in one form; the gateway routes it at once.
    let written = format!("WWW.{}.", site.to_uppercase());
    let (status, answer) = browser
        .send("POST", &path, Some(json!({ "domain": written })))
        .await;
    assert_eq!(
        (status, answer["domain"].as_str()),
        (201, Some(site.as_str()))
    );
    let (status, listed) = browser.get(&path).await;
    assert_eq!((status, &listed["domains"]), (200, &json!([site])));
    eventually("the gateway takes the new domain's events", || async {
        plausible_event(&gateway.url(), &site).await == 202
    })
    .await;

    // One app per domain: another app's admin is told it is taken (not by whom).
    let owner = format!("{}@example.com", tally_testkit::unique("downer"));
    user(&owner, "owner-password", &[(&other, Role::Admin)]).await;
    let them = Browser::new(&query.url());
    assert_eq!(them.login(&owner, "owner-password").await.0, 200);
    let theirs = format!("/api/v1/apps/{other}/domains");
    let (status, answer) = them
        .send("POST", &theirs, Some(json!({ "domain": site })))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("domain_taken")),
        "{answer}"
    );
    assert!(!answer.to_string().contains(&app), "{answer}");
    assert_eq!(
        them.send("DELETE", &format!("{theirs}/{site}"), None)
            .await
            .0,
        404
    );
    // A viewer does not manage domains.
    assert_eq!(browser.get(&theirs).await.0, 403);

    // Removed: gone from the list, and the gateway stops routing the site.
    assert_eq!(
        browser
            .send("DELETE", &format!("{path}/{site}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        browser
            .send("DELETE", &format!("{path}/{site}"), None)
            .await
            .0,
        404
    );
    assert_eq!(browser.get(&path).await.1["domains"], json!([]));
    eventually("the gateway refuses the removed domain", || async {
        plausible_event(&gateway.url(), &site).await == 401
    })
    .await;
    gateway.stop().await;
    query.stop().await;
    iso.cleanup().await;
}
