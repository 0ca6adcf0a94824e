//! Enrichment end to end: geo-IP from a trusted `X-Forwarded-For` hop (the
//! installed DB-IP Lite City database), user agent and bot flag, page/referrer/
//! UTM fields, and the anonymised IP, as stored in ClickHouse.

use serde_json::json;
use std::time::Duration;
use tally_testkit::{clickhouse_counts, eventually, services, unique, write_key, Isolation};

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Enriched {
    event_id: String,
    ip: String,
    country: String,
    browser: String,
    os: String,
    device_type: String,
    is_bot: u8,
    url_host: String,
    url_path: String,
    referrer_host: String,
    utm_source: String,
    utm_campaign: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_enriched_and_ips_anonymised() {
    let iso = Isolation::new(1).await;
    let gateway = services::gateway(services::gateway_config(&iso)).await; // trusts 1 proxy hop
    let aggregator = services::aggregator(services::aggregator_config(&iso)).await;
    let http = reqwest::Client::new();
    let app = unique("enrich");
    let key = write_key(&app).await;
    let url = format!("{}/api/v1/events/batch", gateway.url());

    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    for (id, agent, forwarded) in [
        ("human", chrome, "8.8.8.8"),
        ("bot", googlebot, "85.214.132.117"),
    ] {
        let response = http
            .post(&url)
            .basic_auth(&key, Some(""))
            .header("user-agent", agent)
            .header("x-forwarded-for", format!("10.1.1.1, {forwarded}"))
            .json(&json!({"events": [{"name": "page_view", "user_id": "u", "event_id": format!("{app}-{id}"),
                "properties": {"url": "https://shop.example/pricing?utm_source=news&utm_campaign=bf", "referrer": "https://www.google.com/"}}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    eventually("rows", Duration::from_secs(60), || async {
        (clickhouse_counts(&iso, &app).await.0 >= 2).then_some(())
    })
    .await;
    let rows: Vec<Enriched> = iso
        .clickhouse_client()
        .query("SELECT event_id, ip, country, browser, os, device_type, is_bot, url_host, url_path, referrer_host, utm_source, utm_campaign FROM events WHERE app_id = ? ORDER BY event_id")
        .bind(&app)
        .fetch_all()
        .await
        .unwrap();
    let (bot, human) = (&rows[0], &rows[1]);
    assert_eq!(human.event_id, format!("{app}-human"));
    assert_eq!(
        human.ip, "8.8.8.0",
        "truncated, not the socket or first hop"
    );
    assert_eq!(human.country, "US");
    assert_eq!(
        (
            human.browser.as_str(),
            human.os.as_str(),
            human.device_type.as_str(),
            human.is_bot
        ),
        ("Chrome", "Windows 10", "desktop", 0)
    );
    assert_eq!(
        (
            human.url_host.as_str(),
            human.url_path.as_str(),
            human.referrer_host.as_str()
        ),
        ("shop.example", "/pricing", "www.google.com")
    );
    assert_eq!(
        (human.utm_source.as_str(), human.utm_campaign.as_str()),
        ("news", "bf")
    );
    assert_eq!(bot.country, "DE");
    assert_eq!((bot.is_bot, bot.device_type.as_str()), (1, "bot"));

    gateway.stop().await;
    aggregator.stop().await;
    iso.cleanup().await;
}
