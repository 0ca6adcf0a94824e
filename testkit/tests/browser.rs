//! The dashboard in a real browser (Debian's Chromium driven by npm
//! `playwright-core`): an isolated stack — gateway, aggregator, query service
//! serving the built dashboard (`web/dist`, which `./tally test` builds) —
//! with two weeks of sample traffic sent through the gateway, an admin, a
//! viewer, a user for the login throttle, an app the admin is not a member
//! of, an app without events, and a second query service whose ClickHouse is
//! unreachable; then `testkit/tests/browser/dashboard.mjs` logs in and checks every
//! page against the API (its header lists the checks). Screenshots of every
//! page go to `target/browser-shots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tally_common::accounts::{self, Role};
use tally_testkit::sample::{self, Plan};
use tally_testkit::{clickhouse_counts, eventually, services, Isolation};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A user with a random password and `role` in `app` (if any): (e-mail, password).
async fn user(prefix: &str, grant: Option<(&str, Role)>) -> (String, String) {
    let email = format!("{}@example.com", tally_testkit::unique(prefix));
    let password = tally_common::accounts::generate_session_token()[3..23].to_owned();
    let client = tally_testkit::postgres().connect().await.unwrap();
    let hash = accounts::hash_password(&password).unwrap();
    accounts::upsert_user(&client, &email, &hash).await.unwrap();
    if let Some((app, role)) = grant {
        assert!(accounts::grant(&client, &email, app, role).await.unwrap());
    }
    (email, password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_works_in_chromium() {
    let web = root().join("web");
    assert!(
        web.join("dist/index.html").exists(),
        "the dashboard is not built: ./tally test builds it (cd web && npm ci && npm run build)"
    );
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: cd web && npm ci"
    );
    let iso = Isolation::new(2).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await;
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let query = services::query(services::query_config(&iso)).await;
    // The same service with its event store unreachable (error states).
    let mut broken_config = services::query_config(&iso);
    broken_config.clickhouse.url =
        format!("http://127.0.0.1:{}", tally_testkit::servers::free_port());
    let broken = services::query(broken_config).await;
    let app = tally_testkit::unique("web");
    let other = tally_testkit::unique("web_other");
    let write_key = tally_testkit::write_key(&app).await;
    let read_key = tally_testkit::read_key(&app).await;
    tally_testkit::read_key(&other).await;
    let empty = tally_testkit::unique("web_empty");
    tally_testkit::read_key(&empty).await;
    let (admin, admin_password) = user("admin", Some((&app, Role::Admin))).await;
    let pg = tally_testkit::postgres().connect().await.unwrap();
    assert!(accounts::grant(&pg, &admin, &empty, Role::Admin)
        .await
        .unwrap());
    let (viewer, viewer_password) = user("viewer", Some((&app, Role::Viewer))).await;
    let (throttled, _) = user("throttled", Some((&app, Role::Viewer))).await;

    let plan = Plan {
        gateway: gateway.url(),
        app: app.clone(),
        write_key: write_key.clone(),
        events: 1_500,
        days: 14,
        visitors: 150,
        seed: 7,
        concurrency: 4,
        batch: 8,
    };
    let (acked, refused, ..) = sample::send(&plan).await.unwrap();
    assert_eq!((acked, refused), (1_500, 0));
    eventually("sample rows", Duration::from_secs(60), || async {
        (clickhouse_counts(&iso, &app).await.0 >= acked as u64).then_some(())
    })
    .await;

    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("browser-shots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = root().join("testkit/tests/browser/dashboard.mjs");
    let started = Instant::now();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("TALLY_BASE", query.url())
        .env("TALLY_GATEWAY", gateway.url())
        .env("TALLY_APP", &app)
        .env("TALLY_OTHER_APP", &other)
        .env("TALLY_ADMIN_EMAIL", &admin)
        .env("TALLY_ADMIN_PASSWORD", &admin_password)
        .env("TALLY_VIEWER_EMAIL", &viewer)
        .env("TALLY_VIEWER_PASSWORD", &viewer_password)
        .env("TALLY_THROTTLE_EMAIL", &throttled)
        .env("TALLY_WRITE_KEY", &write_key)
        .env("TALLY_READ_KEY", &read_key)
        .env("TALLY_SHOTS", &shots)
        .env("TALLY_EMPTY_APP", &empty)
        .env("TALLY_BROKEN_BASE", broken.url())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("the browser tests did not finish in 10 minutes")
        .expect("node could not be started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "browser tests ({:.0} s):\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "browser tests failed: {stdout}");
    assert!(
        stdout.contains(" passed, 0 failed"),
        "no summary line: {stdout}"
    );

    query.stop().await;
    broken.stop().await;
    aggregator.stop().await;
    gateway.stop().await;
    iso.cleanup().await;
}
