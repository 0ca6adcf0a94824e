//! The Redis identity store answers exactly as the in-memory rules
//! (`stream_aggregator::identity`): the same random journeys — links with
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
    let store = RedisIdentities::new(connection, &prefix);
    let _cleanup = Cleanup(client.clone(), prefix.clone());
    let (mut merges, mut links, mut replays, mut deletions) = (0, 0, 0, 0);
    for journey in 0..40u64 {
        let app = format!("app{journey}");
        let mut rules = Identities::new();
        let mut rng = StdRng::seed_from_u64(journey);
        for step in 0..120 {
            let user = format!("id{}", rng.random_range(0..10));
            let other = format!("id{}", rng.random_range(0..10));
            if rng.random_range(0..40) == 0 {
                let want = rules.delete(&user);
                let got = store.delete(&app, &user).await.unwrap();
                assert_eq!(got, want, "journey {journey}, step {step}: delete {user}");
                deletions += 1;
                continue;
            }
            // A fifth of the events are replays of an earlier event id.
            let event = if step > 0 && rng.random_range(0..5) == 0 {
                replays += 1;
                format!("e{}", rng.random_range(0..step))
            } else {
                format!("e{step}")
            };
            let linked_before = (rules.is_linked(&user), rules.is_linked(&other));
            let merged =
                linked_before == (true, true) && rules.person(&user) != rules.person(&other);
            let want = rules.link(&event, &user, &other);
            let got = store.link(&app, &event, &user, &other).await.unwrap();
            assert_eq!(
                got, want,
                "journey {journey}, step {step}: link {other} → {user} ({event})"
            );
            if !want.is_empty() {
                links += 1;
                merges += usize::from(merged);
            }
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
    eprintln!("identity parity: {links} links applied ({merges} merges of two persons), {replays} replayed event ids, {deletions} deletions");
    assert!(
        merges > 20 && deletions > 20 && replays > 500,
        "the journeys exercise every case"
    );
}
