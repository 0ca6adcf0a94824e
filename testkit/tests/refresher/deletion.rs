//! Person deletion (GDPR/CCPA) end to end: an admin deletes a merged person;
//! the job finishes once no row of the person remains and the reports were
//! re-derived; afterwards no endpoint returns or counts the person — not its
//! profile, not `/query`, not the reports — every report equals brute force
//! over the others, new events of its ids are dropped by the aggregator, and
//! neither do they come back when the aggregator replays the whole topic.

use super::*;
use tally_common::accounts::{self, Role};

/// Logs `email` in; the session cookie.
async fn login(pipeline: &Pipeline, email: &str, password: &str) -> String {
    let response = pipeline
        .http
        .post(format!("{}/api/v1/auth/login", pipeline.query.url()))
        .header("origin", pipeline.query.url())
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_person_is_gone_from_every_answer_and_stays_gone() {
    let journeys = generate("x", 40, 11, now_ms());
    let mut pipeline = Pipeline::start("deletion").await;
    let all: Vec<&Event> = journeys.all().collect();
    let bodies: Vec<Event> = all.iter().map(|e| (*e).clone()).collect();
    deliver(&pipeline, &bodies, &all, all.len()).await;
    let mut wolf = refresher(&pipeline, "wolf-del").await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();

    // The victim: the person with the most distinct ids.
    let model = Model::of(all.iter().copied());
    let victim: BTreeSet<String> = model
        .persons()
        .values()
        .max_by_key(|ids| ids.len())
        .unwrap()
        .clone();
    assert!(victim.len() >= 3, "a merged person: {victim:?}");
    let one = victim.iter().next().unwrap().clone();
    let rest: Vec<&Event> = all
        .iter()
        .copied()
        .filter(|e| !victim.contains(&e.distinct_id))
        .collect();

    // Only an admin may delete.
    let pg = tally_testkit::postgres().connect().await.unwrap();
    let (email, password) = (
        format!("{}@admin.test", pipeline.app),
        "correct horse battery",
    );
    accounts::upsert_user(&pg, &email, &accounts::hash_password(password).unwrap())
        .await
        .unwrap();
    assert!(accounts::grant(&pg, &email, &pipeline.app, Role::Admin)
        .await
        .unwrap());
    let url = format!(
        "{}/api/v1/apps/{}/persons/{one}",
        pipeline.query.url(),
        pipeline.app
    );
    let by_key = pipeline
        .http
        .delete(&url)
        .bearer_auth(&pipeline.read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 403, "a read key cannot delete");
    let cookie = login(&pipeline, &email, password).await;
    let response = pipeline
        .http
        .delete(&url)
        .header("cookie", &cookie)
        .header("origin", pipeline.query.url())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job: serde_json::Value = response.json().await.unwrap();
    let ids: BTreeSet<String> = job["distinct_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, victim, "every id of the person");

    // New events of the person's ids, sent after the deletion, are dropped.
    let late: Vec<_> = victim
        .iter()
        .map(|id| json!({"name": "page_view", "anonymous_id": id, "timestamp": now_ms(), "properties": {"path": "/again"}}))
        .collect();
    pipeline.send(&late).await;
    let aggregator_metrics = pipeline.aggregator.url();
    eventually(
        "the aggregator drops them",
        Duration::from_secs(20),
        || async {
            let dropped = tally_testkit::metric(
                &aggregator_metrics,
                "tally_aggregator_deleted_person_events_total",
            )
            .await;
            (dropped >= late.len() as f64).then_some(())
        },
    )
    .await;

    // The refresher finishes the job once the mutations are done.
    let status_url = format!(
        "{}/api/v1/apps/{}/persons/jobs/{}",
        pipeline.query.url(),
        pipeline.app,
        job["job_id"]
    );
    // ClickHouse applies mutations asynchronously: refresh until the job is done.
    let shared = tokio::sync::Mutex::new(wolf);
    eventually(
        "the deletion job to be done",
        Duration::from_secs(60),
        || async {
            shared.lock().await.run(Kind::Incremental).await.unwrap();
            let status: serde_json::Value = pipeline
                .http
                .get(&status_url)
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (status["status"] == "done").then_some(())
        },
    )
    .await;
    let mut wolf = shared.into_inner();
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&rest),
        "reports without the person"
    );
    let check = |pipeline: &Pipeline| {
        let (http, app, read) = (
            pipeline.http.clone(),
            pipeline.app.clone(),
            pipeline.read_key.clone(),
        );
        let (query, one, expected) = (pipeline.query.url(), one.clone(), rest.len() as f64);
        async move {
            let profile = http
                .get(format!("{query}/api/v1/analytics/{app}/persons/{one}"))
                .bearer_auth(&read)
                .send()
                .await
                .unwrap();
            assert_eq!(profile.status(), 404, "no profile");
            let body = json!({"metrics": ["events", "unique_users"], "range": "30d"});
            let answer: serde_json::Value = http
                .post(format!("{query}/api/v1/analytics/{app}/query"))
                .bearer_auth(&read)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                answer["results"][0]["events"].as_f64(),
                Some(expected),
                "{answer}"
            );
        }
    };
    check(&pipeline).await;
    let client = pipeline.iso.clickhouse_client();
    let id_list: Vec<String> = ids.iter().cloned().collect();
    let person_list = vec![job["person_id"].as_str().unwrap().to_owned()];
    let left: u64 = client
        .query(tally_schemas::person::REMAINING_SQL)
        .bind(pipeline.app.as_str())
        .bind(id_list.as_slice())
        .bind(pipeline.app.as_str())
        .bind(id_list.as_slice())
        .bind(pipeline.app.as_str())
        .bind(id_list.as_slice())
        .bind(pipeline.app.as_str())
        .bind(id_list.as_slice())
        .bind(pipeline.app.as_str())
        .bind(person_list.as_slice())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "no row of the person in events, sessions or person tables"
    );

    // A replay of the whole topic by the aggregator brings nothing back.
    pipeline.aggregator.stop().await;
    let iso = &pipeline.iso;
    tally_testkit::broker::rewind_group(&iso.kafka.brokers, &iso.group_id, &iso.kafka.topic).await;
    pipeline.aggregator =
        tally_testkit::services::aggregator(tally_testkit::services::aggregator_config(iso)).await;
    iso.wait_consumed().await;
    wolf.run(Kind::Incremental).await.unwrap().unwrap();
    assert_eq!(
        derived(&pipeline).await,
        brute_force(&rest),
        "after a replay"
    );
    check(&pipeline).await;
    pipeline.stop().await;
}
