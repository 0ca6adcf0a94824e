//! [`Accounts`] in memory, for fast handler tests: the same answers as the
//! PostgreSQL store for the same calls, and a switch that makes every call
//! fail as an unreachable database would.

use super::{Accounts, Fut, KeyRow, Member, Membership, SessionRow, UserRow};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tally_common::accounts::Role;
use tally_common::postgres::{generate_key, KeyKind};

#[derive(Debug, Default)]
struct Data {
    users: BTreeMap<String, UserRow>,
    /// token hash → (user id, created, expires, last seen, ended)
    sessions: BTreeMap<String, (i64, i64, i64, i64, bool)>,
    /// (user id, app) → role
    memberships: BTreeMap<(i64, String), Role>,
    apps: BTreeMap<String, String>,
    keys: Vec<(String, KeyRow)>,
    /// domain → app
    domains: BTreeMap<String, String>,
}

/// Accounts kept in a map.
#[derive(Debug, Default)]
pub struct MemoryAccounts {
    data: Mutex<Data>,
    down: AtomicBool,
}

impl MemoryAccounts {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an app.
    pub fn add_app(&self, app_id: &str) {
        self.edit(|d| {
            d.apps.insert(app_id.into(), app_id.into());
        });
    }

    /// Adds a user with an argon2id `password_hash`; returns the id.
    pub fn add_user(&self, email: &str, password_hash: &str) -> i64 {
        self.edit(|d| insert_user(d, email, password_hash))
    }

    /// Gives user `user_id` `role` in `app_id`.
    pub fn grant(&self, user_id: i64, app_id: &str, role: Role) {
        self.edit(|d| {
            d.memberships.insert((user_id, app_id.into()), role);
        });
    }

    /// Makes every later call fail (`false`) or work again (`true`).
    pub fn set_reachable(&self, reachable: bool) {
        self.down.store(!reachable, Ordering::SeqCst);
    }

    fn edit<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut data)
    }

    fn answer<T: Send + 'static>(&self, f: impl FnOnce(&mut Data) -> T) -> Fut<'_, T> {
        let result = if self.down.load(Ordering::SeqCst) {
            Err("accounts store unreachable (test switch)".to_owned())
        } else {
            Ok(self.edit(f))
        };
        Box::pin(async move { result })
    }
}

fn insert_user(data: &mut Data, email: &str, password_hash: &str) -> i64 {
    let id = i64::try_from(data.users.len()).unwrap_or(0) + 1;
    data.users.insert(
        email.to_owned(),
        UserRow {
            id,
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
        },
    );
    id
}

impl Accounts for MemoryAccounts {
    fn user(&self, email: &str) -> Fut<'_, Option<UserRow>> {
        let email = email.to_owned();
        self.answer(move |d| d.users.get(&email).cloned())
    }

    fn create_session(&self, hash: &str, user_id: i64, now: i64, expires: i64) -> Fut<'_, ()> {
        let hash = hash.to_owned();
        self.answer(move |d| {
            d.sessions.insert(hash, (user_id, now, expires, now, false));
        })
    }

    fn session(&self, hash: &str) -> Fut<'_, Option<SessionRow>> {
        let hash = hash.to_owned();
        self.answer(move |d| {
            let &(user_id, _, expires_ms, last_seen_ms, ended) = d.sessions.get(&hash)?;
            let email = d.users.values().find(|u| u.id == user_id)?.email.clone();
            (!ended).then_some(SessionRow {
                user_id,
                email,
                expires_ms,
                last_seen_ms,
            })
        })
    }

    fn touch_session(&self, hash: &str, now_ms: i64) -> Fut<'_, ()> {
        let hash = hash.to_owned();
        self.answer(move |d| {
            if let Some(session) = d.sessions.get_mut(&hash) {
                session.3 = session.3.max(now_ms);
            }
        })
    }

    fn end_session(&self, hash: &str) -> Fut<'_, ()> {
        let hash = hash.to_owned();
        self.answer(move |d| {
            if let Some(session) = d.sessions.get_mut(&hash) {
                session.4 = true;
            }
        })
    }

    fn memberships(&self, user_id: i64) -> Fut<'_, Vec<Membership>> {
        self.answer(move |d| {
            d.memberships
                .iter()
                .filter(|((user, _), _)| *user == user_id)
                .map(|((_, app), role)| Membership {
                    app_id: app.clone(),
                    name: d.apps.get(app).cloned().unwrap_or_else(|| app.clone()),
                    role: *role,
                    time_zone: tally_schemas::time_zone::DEFAULT_TIME_ZONE.to_owned(),
                })
                .collect()
        })
    }

    fn keys(&self, app_id: &str) -> Fut<'_, Vec<KeyRow>> {
        let app_id = app_id.to_owned();
        self.answer(move |d| {
            let mut keys: Vec<KeyRow> = d
                .keys
                .iter()
                .filter(|(app, _)| *app == app_id)
                .map(|(_, key)| key.clone())
                .collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.id));
            keys
        })
    }

    fn create_key(&self, app_id: &str, kind: KeyKind) -> Fut<'_, (i64, String)> {
        let app_id = app_id.to_owned();
        self.answer(move |d| {
            let key = generate_key(kind);
            let id = i64::try_from(d.keys.len()).unwrap_or(0) + 1;
            let row = KeyRow {
                id,
                kind: kind.as_str().into(),
                prefix: key[..8].to_owned(),
                created_ms: 0,
                revoked: false,
            };
            d.keys.push((app_id, row));
            (id, key)
        })
    }

    fn revoke_key(&self, app_id: &str, id: i64) -> Fut<'_, bool> {
        let app_id = app_id.to_owned();
        self.answer(move |d| {
            d.keys
                .iter_mut()
                .find(|(app, key)| *app == app_id && key.id == id && !key.revoked)
                .map(|(_, key)| key.revoked = true)
                .is_some()
        })
    }

    fn members(&self, app_id: &str) -> Fut<'_, Vec<Member>> {
        let app_id = app_id.to_owned();
        self.answer(move |d| {
            let mut members: Vec<Member> = d
                .memberships
                .iter()
                .filter(|((_, app), _)| *app == app_id)
                .filter_map(|((user, _), role)| {
                    let email = d.users.values().find(|u| u.id == *user)?.email.clone();
                    Some(Member { email, role: *role })
                })
                .collect();
            members.sort_by(|a, b| a.email.cmp(&b.email));
            members
        })
    }

    fn add_member(
        &self,
        app_id: &str,
        email: &str,
        role: Role,
        password_hash: Option<String>,
    ) -> Fut<'_, bool> {
        let (app_id, email) = (app_id.to_owned(), email.to_owned());
        self.answer(move |d| {
            let id = match (d.users.get(&email), password_hash) {
                (Some(user), _) => user.id,
                (None, Some(hash)) => insert_user(d, &email, &hash),
                (None, None) => return false,
            };
            d.memberships.insert((id, app_id), role);
            true
        })
    }

    fn remove_member(&self, app_id: &str, email: &str) -> Fut<'_, bool> {
        let (app_id, email) = (app_id.to_owned(), email.to_owned());
        self.answer(move |d| {
            let Some(id) = d.users.get(&email).map(|u| u.id) else {
                return false;
            };
            d.memberships.remove(&(id, app_id)).is_some()
        })
    }

    fn domains(&self, app_id: &str) -> Fut<'_, Vec<String>> {
        let app_id = app_id.to_owned();
        self.answer(move |d| {
            d.domains
                .iter()
                .filter(|(_, app)| **app == app_id)
                .map(|(domain, _)| domain.clone())
                .collect()
        })
    }

    fn claim_domain(&self, app_id: &str, domain: &str) -> Fut<'_, String> {
        let (app_id, domain) = (app_id.to_owned(), domain.to_owned());
        self.answer(move |d| d.domains.entry(domain).or_insert(app_id).clone())
    }

    fn release_domain(&self, app_id: &str, domain: &str) -> Fut<'_, bool> {
        let (app_id, domain) = (app_id.to_owned(), domain.to_owned());
        self.answer(move |d| {
            if d.domains.get(&domain) != Some(&app_id) {
                return false;
            }
            d.domains.remove(&domain).is_some()
        })
    }
}
