//! Dashboard accounts on the real query service and PostgreSQL: login and its
//! cookie, the tenant seal for sessions (every analytics route, the stream and
//! the settings routes), CSRF, the failed-login throttle, logout, idle and
//! absolute expiry, an admin managing keys, members and site domains, and the
//! in-memory accounts store answering as the PostgreSQL one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "accounts/client.rs"]
mod client;
#[path = "accounts/domains.rs"]
mod domains;
#[path = "accounts/parity.rs"]
mod parity;

use client::{Browser, ORIGIN_HEADER};
use serde_json::json;
use std::time::Duration;
use tally_common::accounts::{self, Role};
use tally_testkit::{services, Isolation};

/// Creates `email` with `password` and gives it `role` in `app` (if any).
async fn user(email: &str, password: &str, grants: &[(&str, Role)]) {
    let client = tally_testkit::postgres().connect().await.unwrap();
    let hash = accounts::hash_password(password).unwrap();
    accounts::upsert_user(&client, email, &hash).await.unwrap();
    for (app, role) in grants {
        assert!(accounts::grant(&client, email, app, *role).await.unwrap());
    }
}

/// Polls `check` until it holds (a session lookup is cached for 5 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tally_testkit::eventually(what, Duration::from_secs(15), || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_open_only_their_members_apps() {
    let iso = Isolation::new(1).await;
    let query = services::query(services::query_config(&iso)).await;
    let (a, b) = (
        tally_testkit::unique("acc_a"),
        tally_testkit::unique("acc_b"),
    );
    let read_b = tally_testkit::read_key(&b).await;
    let read_a = tally_testkit::read_key(&a).await;
    let viewer = format!("{}@example.com", tally_testkit::unique("viewer"));
    user(&viewer, "viewer-password", &[(&a, Role::Viewer)]).await;
    let browser = Browser::new(&query.url());

    // Refusals before a session exists.
    let (status, body) = browser.login(&viewer, "wrong-password").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, body) = browser.login("nobody@example.com", "viewer-password").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let cross = browser
        .http
        .post(format!("{}/api/v1/auth/login", query.url()))
        .header(ORIGIN_HEADER, "http://evil.example")
        .json(&json!({"email": viewer, "password": "viewer-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert_eq!(browser.get("/api/v1/auth/me").await.0, 401);

    // Login: the cookie's attributes, /me.
    let (status, body) = browser.login(&shouted(&viewer), "viewer-password").await;
    assert_eq!(status, 200, "{body}");
    let set_cookie = browser.last_set_cookie();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert_eq!(
        body["apps"],
        json!([{"app_id": a, "name": a, "role": "viewer", "time_zone": "UTC"}])
    );
    let (status, me) = browser.get("/api/v1/auth/me").await;
    assert_eq!((status, &me["user"]["email"]), (200, &json!(viewer)));

    // The tenant seal: app A opens through every kind of route, B is 403
    // through every analytics route.
    let routes = |app: &str| {
        vec![
            ("GET", format!("/api/v1/analytics/{app}/live")),
            (
                "GET",
                format!("/api/v1/analytics/{app}/count?event=x&range=1d"),
            ),
            ("POST", format!("/api/v1/analytics/{app}/query")),
            ("POST", format!("/api/v1/analytics/{app}/funnel")),
            ("POST", format!("/api/v1/analytics/{app}/retention")),
            (
                "GET",
                format!("/api/v1/analytics/{app}/reports/pages?range=1d"),
            ),
            ("GET", format!("/api/v1/analytics/{app}/dashboards")),
            ("POST", format!("/api/v1/analytics/{app}/live/token")),
        ]
    };
    let bodies = [
        json!({"metric": "events", "range": "1d"}),
        json!({"steps": ["a", "b"], "range": "1d"}),
        json!({"start_event": "a", "return_event": "b", "range": "7d"}),
    ];
    for (method, path) in routes(&a) {
        let body = bodies.iter().find(|b| {
            path.ends_with("query") == b.get("metric").is_some()
                && path.ends_with("funnel") == b.get("steps").is_some()
                && path.ends_with("retention") == b.get("start_event").is_some()
        });
        let (status, answer) = browser.send(method, &path, body.cloned()).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    // Every analytics route of the service (`ROUTES`), for app B: 403.
    let mut sealed = 0;
    for (method, template) in query_service::ROUTES {
        if !template.starts_with("/api/v1/analytics/") {
            continue;
        }
        let path = template
            .replace("{app_id}", &b)
            .replace("{kind}", "dashboards")
            .replace("{report}", "pages")
            .replace("{id}", "1");
        let method = method.to_uppercase();
        let (status, answer) = browser.send(&method, &path, Some(json!({}))).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("not_a_member")),
            "{method} {path}"
        );
        sealed += 1;
    }
    assert!(sealed >= 14, "{sealed} routes");
    assert_eq!(browser.stream_status(&a).await, 200);
    assert_eq!(browser.stream_status(&b).await, 403);
    // A key still opens only its own app, cookie or not.
    let keyed = browser
        .http
        .get(format!("{}/api/v1/analytics/{a}/live", query.url()))
        .bearer_auth(&read_b)
        .header("cookie", browser.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 403);

    // CSRF: a state-changing request with the session from another origin.
    for origin in [Some("http://evil.example"), None] {
        let (status, answer) = browser
            .send_from(
                origin,
                "POST",
                &format!("/api/v1/analytics/{a}/query"),
                Some(bodies[0].clone()),
            )
            .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("cross_site_request")),
            "{origin:?}"
        );
    }

    // A viewer cannot manage; nor can a read key.
    let (status, answer) = browser.get(&format!("/api/v1/apps/{a}/keys")).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("not_an_admin"))
    );
    let keyed = reqwest::Client::new()
        .get(format!("{}/api/v1/apps/{a}/keys", query.url()))
        .bearer_auth(&read_a)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 403);

    // Logout ends the session for good (a copy of the cookie is refused
    // too), and the browser's cookie is cleared.
    let old_cookie = browser.cookie();
    let (status, _) = browser.send("POST", "/api/v1/auth/logout", None).await;
    assert_eq!(status, 204);
    assert!(browser.last_set_cookie().contains("Max-Age=0"));
    assert!(browser.cookie().is_empty());
    let replayed = browser
        .http
        .get(format!("{}/api/v1/analytics/{a}/live", query.url()))
        .header("cookie", old_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);
    let answer: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(answer["error"], "unauthenticated");
    assert_eq!(browser.get("/api/v1/auth/me").await.0, 401);

    query.stop().await;
    iso.cleanup().await;
}

/// The same address in capitals, with a space: the same account.
fn shouted(email: &str) -> String {
    format!("  {}", email.to_uppercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_are_throttled_and_sessions_expire() {
    let iso = Isolation::new(1).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = tally_testkit::unique("acc_t");
    tally_testkit::read_key(&app).await;
    let email = format!("{}@example.com", tally_testkit::unique("throttled"));
    user(&email, "the-right-one", &[(&app, Role::Viewer)]).await;
    let browser = Browser::new(&query.url());
    for attempt in 1..=10 {
        let (status, _) = browser.login(&email, &format!("guess-{attempt}")).await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let (status, body) = browser.login(&email, "guess-11").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    let wait = body["retry_after_s"].as_u64().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(browser.last_header("retry-after"), wait.to_string());
    // Even the right password waits: guessing must not go on.
    assert_eq!(browser.login(&email, "the-right-one").await.0, 429);

    // Idle timeout and absolute expiry, set in the database.
    let pg = tally_testkit::postgres().connect().await.unwrap();
    for (column, age) in [("last_seen_at", "13 hours"), ("expires_at", "1 second")] {
        let other = format!("{}@example.com", tally_testkit::unique("expiring"));
        user(&other, "another-password", &[(&app, Role::Viewer)]).await;
        let session = Browser::new(&query.url());
        assert_eq!(session.login(&other, "another-password").await.0, 200);
        assert_eq!(session.get("/api/v1/auth/me").await.0, 200);
        let sql = format!(
            "UPDATE sessions SET {column} = now() - interval '{age}' \
             WHERE user_id = (SELECT id FROM users WHERE email = $1)"
        );
        assert_eq!(pg.execute(&sql, &[&other]).await.unwrap(), 1);
        eventually(&format!("the session ends ({column})"), || async {
            session.get("/api/v1/auth/me").await.0 == 401
        })
        .await;
    }
    query.stop().await;
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_manage_keys_and_members() {
    let iso = Isolation::new(1).await;
    let query = services::query(services::query_config(&iso)).await;
    let app = tally_testkit::unique("acc_m");
    let other_app = tally_testkit::unique("acc_o");
    tally_testkit::read_key(&app).await;
    tally_testkit::read_key(&other_app).await;
    let admin = format!("{}@example.com", tally_testkit::unique("admin"));
    user(
        &admin,
        "admin-password",
        &[(&app, Role::Admin), (&other_app, Role::Viewer)],
    )
    .await;
    let browser = Browser::new(&query.url());
    assert_eq!(browser.login(&admin, "admin-password").await.0, 200);

    // A read key made in the dashboard reads at once, and stops when revoked.
    let (status, created) = browser
        .send(
            "POST",
            &format!("/api/v1/apps/{app}/keys"),
            Some(json!({"kind": "read"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tr_"));
    let (status, listed) = browser.get(&format!("/api/v1/apps/{app}/keys")).await;
    assert_eq!(status, 200);
    let row = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .unwrap()
        .clone();
    assert_eq!(
        (row["prefix"].as_str(), &row["revoked"]),
        (Some(&key[..8]), &json!(false))
    );
    assert!(
        !listed.to_string().contains(&key),
        "the key itself is never listed"
    );
    let live = |key: String| {
        let url = format!("{}/api/v1/analytics/{app}/live", query.url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(live(key.clone()).await, 200);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        browser
            .send("DELETE", &format!("/api/v1/apps/{app}/keys/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(live(key.clone()).await, 401);
    assert_eq!(
        browser
            .send("DELETE", &format!("/api/v1/apps/{app}/keys/{id}"), None)
            .await
            .0,
        404
    );
    // Another app's key number is not found here.
    let theirs = {
        let owner = format!("{}@example.com", tally_testkit::unique("owner"));
        user(&owner, "owner-password", &[(&other_app, Role::Admin)]).await;
        let them = Browser::new(&query.url());
        assert_eq!(them.login(&owner, "owner-password").await.0, 200);
        let path = format!("/api/v1/apps/{other_app}/keys");
        let (status, created) = them
            .send("POST", &path, Some(json!({"kind": "write"})))
            .await;
        assert_eq!(status, 201);
        created["id"].as_i64().unwrap()
    };
    assert_eq!(
        browser
            .send("DELETE", &format!("/api/v1/apps/{app}/keys/{theirs}"), None)
            .await
            .0,
        404
    );
    // Not an admin of the other app.
    let (status, _) = browser
        .get(&format!("/api/v1/apps/{other_app}/members"))
        .await;
    assert_eq!(status, 403);

    // A new member with a password becomes a user who can log in.
    let newcomer = format!("{}@example.com", tally_testkit::unique("new"));
    let path = format!("/api/v1/apps/{app}/members");
    let (status, answer) = browser
        .send(
            "POST",
            &path,
            Some(json!({"email": newcomer, "role": "viewer"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_parameter")),
        "no account, no password"
    );
    let (status, _) = browser
        .send(
            "POST",
            &path,
            Some(json!({"email": newcomer, "role": "viewer", "password": "newcomer-pass"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, members) = browser.get(&path).await;
    assert_eq!(status, 200);
    let emails: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert!(
        emails.contains(&newcomer.as_str()) && emails.contains(&admin.as_str()),
        "{members}"
    );
    let (status, _) = browser
        .send(
            "POST",
            &path,
            Some(json!({"email": admin, "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 400, "an admin cannot demote themself");
    let second = Browser::new(&query.url());
    assert_eq!(second.login(&newcomer, "newcomer-pass").await.0, 200);
    assert_eq!(
        second.get(&format!("/api/v1/analytics/{app}/live")).await.0,
        200
    );
    // Removed: the session no longer opens the app (within the 5-s lookup cache).
    assert_eq!(
        browser
            .send("DELETE", &format!("{path}/{newcomer}"), None)
            .await
            .0,
        204
    );
    eventually("the removed member loses access", || async {
        second.get(&format!("/api/v1/analytics/{app}/live")).await.0 == 403
    })
    .await;
    assert_eq!(
        browser
            .send("DELETE", &format!("{path}/{admin}"), None)
            .await
            .0,
        400
    );
    query.stop().await;
    iso.cleanup().await;
}
