//! The in-memory accounts store (for fast tests) against the PostgreSQL one:
//! one script of calls on both, the answers compared.

use query_service::accounts::memory::MemoryAccounts;
use query_service::accounts::postgres::PgAccounts;
use query_service::accounts::Accounts;
use tally_common::accounts::{self, Role};
use tally_common::postgres::KeyKind;

/// One script of store calls; what each answered, as text.
async fn script(store: &dyn Accounts, app: &str, other: &str, tag: &str) -> Vec<String> {
    let email = format!("{tag}@example.com");
    let hash = accounts::hash_password("script-password").unwrap();
    let mut out = Vec::new();
    let mut log = |what: &str, value: String| out.push(format!("{what}: {value}"));
    log(
        "unknown user",
        format!(
            "{:?}",
            store
                .user("nobody-here@example.com")
                .await
                .unwrap()
                .is_none()
        ),
    );
    log(
        "add without password",
        format!(
            "{:?}",
            store.add_member(app, &email, Role::Viewer, None).await
        ),
    );
    log(
        "add with password",
        format!(
            "{:?}",
            store
                .add_member(app, &email, Role::Viewer, Some(hash.clone()))
                .await
        ),
    );
    log(
        "promote",
        format!(
            "{:?}",
            store.add_member(app, &email, Role::Admin, None).await
        ),
    );
    let user = store.user(&email).await.unwrap().unwrap();
    log("hash kept", format!("{}", user.password_hash == hash));
    let roles: Vec<String> = store
        .memberships(user.id)
        .await
        .unwrap()
        .iter()
        .map(|m| format!("{}={}", m.app_id == app, m.role.as_str()))
        .collect();
    log("memberships", format!("{roles:?}"));
    let (id, key) = store.create_key(app, KeyKind::Read).await.unwrap();
    log(
        "key form",
        format!("{}", key.starts_with("tr_") && key.len() == 35),
    );
    log(
        "revoke elsewhere",
        format!("{:?}", store.revoke_key(other, id).await),
    );
    log("revoke", format!("{:?}", store.revoke_key(app, id).await));
    log(
        "revoke again",
        format!("{:?}", store.revoke_key(app, id).await),
    );
    let keys: Vec<String> = store
        .keys(app)
        .await
        .unwrap()
        .iter()
        .filter(|k| k.id == id)
        .map(|k| format!("{} {} {}", k.kind, k.prefix == key[..8], k.revoked))
        .collect();
    log("keys", format!("{keys:?}"));
    let token = format!("hash-of-{tag}");
    store
        .create_session(&token, user.id, 1_000_000, 2_000_000)
        .await
        .unwrap();
    store.touch_session(&token, 1_500_000).await.unwrap();
    let session = store
        .session(&token)
        .await
        .unwrap()
        .map(|s| (s.email == email, s.expires_ms, s.last_seen_ms));
    log("session", format!("{session:?}"));
    store.end_session(&token).await.unwrap();
    log(
        "ended",
        format!("{:?}", store.session(&token).await.unwrap()),
    );
    let members: Vec<String> = store
        .members(app)
        .await
        .unwrap()
        .iter()
        .map(|m| format!("{}={}", m.email == email, m.role.as_str()))
        .collect();
    log("members", format!("{members:?}"));
    log(
        "remove",
        format!("{:?}", store.remove_member(app, &email).await),
    );
    log(
        "remove again",
        format!("{:?}", store.remove_member(app, &email).await),
    );
    // Site domains: one app each; the answers name the app, so compare roles.
    let site = format!("{}.example", tag.replace('_', "-"));
    let whose = |owner: Result<String, String>| match owner {
        Ok(owner) if owner == app => "app".to_owned(),
        Ok(owner) if owner == other => "other".to_owned(),
        other => format!("{other:?}"),
    };
    log("claim", whose(store.claim_domain(app, &site).await));
    log("claim again", whose(store.claim_domain(app, &site).await));
    log(
        "claim elsewhere",
        whose(store.claim_domain(other, &site).await),
    );
    log(
        "domains",
        format!(
            "{:?}",
            store.domains(app).await.map(|d| d == [site.clone()])
        ),
    );
    log(
        "domains elsewhere",
        format!("{:?}", store.domains(other).await),
    );
    log(
        "release elsewhere",
        format!("{:?}", store.release_domain(other, &site).await),
    );
    log(
        "release",
        format!("{:?}", store.release_domain(app, &site).await),
    );
    log(
        "release again",
        format!("{:?}", store.release_domain(app, &site).await),
    );
    log(
        "claimed after release",
        whose(store.claim_domain(other, &site).await),
    );
    let _ = store.release_domain(other, &site).await;
    out
}

/// The in-memory store (for fast tests) answers as the PostgreSQL one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_answers_as_postgresql_does() {
    let (app, other) = (
        tally_testkit::unique("acc_s"),
        tally_testkit::unique("acc_x"),
    );
    tally_testkit::read_key(&app).await;
    tally_testkit::read_key(&other).await;
    let pg = PgAccounts::new(tally_testkit::postgres());
    let memory = MemoryAccounts::new();
    memory.add_app(&app);
    memory.add_app(&other);
    let tag = tally_testkit::unique("script");
    let real = script(&pg, &app, &other, &tag).await;
    let fake = script(&memory, &app, &other, &tag).await;
    assert_eq!(fake, real);
    assert!(
        real.iter().any(|line| line == "revoke: Ok(true)"),
        "{real:?}"
    );
    assert!(
        real.iter().any(|line| line == "claim elsewhere: app"),
        "{real:?}"
    );
    memory.set_reachable(false);
    assert!(memory.user("a@b.c").await.is_err());
}
