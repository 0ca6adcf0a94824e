//! The Redis identity store answers exactly as the in-memory rules
//! (`stream_aggregator::identity`): the same random journeys — links and
//! trait changes (out of order, with ties and non-ASCII values) with
//! replays, merges of two histories, self-links and deletions, over a small
//! pool of ids so that merges are frequent — applied to both, every answer
//! and the final person of every id compared. On the real Redis
//! (`TALLY_TEST_REDIS`, default `redis://127.0.0.1:6379`), under a key prefix
//! of its own, deleted at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stream_aggregator::identity::Identities;
use stream_aggregator::identity_store::RedisIdentities;
use tally_schemas::person::IdentityEvent;

fn redis_url() -> String {
    std::env::var("TALLY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes the test's keys, also when an assertion failed.
struct Cleanup(redis::Client, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut sync) = self.0.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.1))
            .query(&mut sync)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut sync);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_identities_answer_as_the_rules_do() {
    let client = redis::Client::open(redis_url()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client.clone())
        .await
        .unwrap();
    let prefix = tally_testkit::unique("idparity");
    let store = RedisIdentities::new(tally_common::redis_conn::Redis::Server(connection), &prefix);
    let _cleanup = Cleanup(client.clone(), prefix.clone());
    let (mut merges, mut links, mut replays, mut deletions, mut trait_changes) = (0, 0, 0, 0, 0);
    for journey in 0..40u64 {
        let app = format!("app{journey}");
        let mut rules = Identities::new();
        let mut rng = StdRng::seed_from_u64(journey);
        let mut history: Vec<IdentityEvent> = Vec::new();
        for step in 0..120 {
            let user = format!("id{}", rng.random_range(0..10));
            if rng.random_range(0..40) == 0 {
                let want = rules.delete(&user);
                let got = store.delete(&app, &user).await.unwrap();
                assert_eq!(got, want, "journey {journey}, step {step}: delete {user}");
                deletions += 1;
                continue;
            }
            // A fifth of the events are replays of an earlier event.
            let event = if !history.is_empty() && rng.random_range(0..5) == 0 {
                replays += 1;
                history[rng.random_range(0..history.len())].clone()
            } else {
                let other = rng.random_range(0..12);
                let mut traits = Vec::new();
                for key in ["plan", "seats", "région"] {
                    if rng.random_range(0..3) == 0 {
                        let value =
                            ["free", "pro", "Équipe", "team", "10", "9"][rng.random_range(0..6)];
                        traits.push((key.to_owned(), value.to_owned()));
                    }
                }
                traits.sort();
                IdentityEvent {
                    app_id: app.clone(),
                    event_id: format!("e{step}"),
                    other: (other < 10)
                        .then(|| format!("id{other}"))
                        .filter(|o| *o != user),
                    user,
                    traits,
                    // Out of order, with ties.
                    ts_ms: rng.random_range(0..50) * 1_000,
                }
            };
            history.push(event.clone());
            let linked_before = event
                .other
                .as_ref()
                .map(|other| (rules.is_linked(&event.user), rules.is_linked(other)));
            let merged = linked_before == Some((true, true))
                && event
                    .other
                    .as_ref()
                    .is_some_and(|o| rules.person(&event.user) != rules.person(o));
            let version = rules.version();
            let want = rules.apply(&event);
            let got = store.apply(&event).await.unwrap();
            assert_eq!(got, want, "journey {journey}, step {step}: {event:?}");
            if want.mappings.iter().any(|row| row.version > version) {
                links += 1;
                merges += usize::from(merged);
            }
            trait_changes += usize::from(want.person.as_ref().is_some_and(|p| p.version > version));
        }
        for i in 0..10 {
            let id = format!("id{i}");
            assert_eq!(
                store.person(&app, &id).await.unwrap(),
                rules.person(&id),
                "journey {journey}: {id}"
            );
            assert_eq!(
                store.is_deleted(&app, &id).await.unwrap(),
                rules.is_deleted(&id)
            );
        }
    }
    eprintln!("identity parity: {links} links applied ({merges} merges of two persons), {trait_changes} trait changes, {replays} replayed events, {deletions} deletions");
    assert!(
        merges > 20 && deletions > 20 && replays > 500 && trait_changes > 300,
        "the journeys exercise every case"
    );
}
