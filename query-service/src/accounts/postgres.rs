//! [`Accounts`] on PostgreSQL (tables of migration 0004: `users`,
//! `memberships`, `sessions`; keys in `api_keys`; site domains in
//! `app_domains` through `tally_common::domains`). Every app-scoped
//! statement carries its `app_id`, so an id of another app matches nothing.

use super::{Accounts, Fut, KeyRow, Member, Membership, SessionRow, UserRow};
use crate::pg::Pg;
use tally_common::accounts::Role;
use tally_common::domains;
use tally_common::postgres::{generate_key, hash_key, KeyKind, PostgresConfig};
use tokio_postgres::types::ToSql;

/// Accounts in PostgreSQL.
#[derive(Debug)]
pub struct PgAccounts {
    pg: Pg,
}

impl PgAccounts {
    /// A store on `config` (connects lazily).
    pub fn new(config: PostgresConfig) -> Self {
        PgAccounts {
            pg: Pg::new(config),
        }
    }

    /// Runs one statement with `params` and shapes its rows with `map`.
    fn rows<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        map: fn(Vec<tokio_postgres::Row>) -> T,
    ) -> Fut<'_, T> {
        Box::pin(self.pg.with(move |client| {
            Box::pin(async move {
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                Ok(map(client.query(sql, &refs).await?))
            })
        }))
    }
}

fn ms(column: &str) -> String {
    format!("(extract(epoch from {column}) * 1000)::bigint")
}

fn role_of(text: &str) -> Role {
    Role::parse(text).unwrap_or(Role::Viewer)
}

impl Accounts for PgAccounts {
    fn user(&self, email: &str) -> Fut<'_, Option<UserRow>> {
        self.rows(
            "SELECT id, email, password_hash FROM users WHERE email = $1",
            vec![Box::new(email.to_owned())],
            |rows| {
                rows.first().map(|r| UserRow {
                    id: r.get(0),
                    email: r.get(1),
                    password_hash: r.get(2),
                })
            },
        )
    }

    fn create_session(&self, hash: &str, user_id: i64, now: i64, expires: i64) -> Fut<'_, ()> {
        self.rows(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, to_timestamp($3::float8 / 1000), to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000))",
            vec![
                Box::new(hash.to_owned()),
                Box::new(user_id),
                Box::new(now as f64),
                Box::new(expires as f64),
            ],
            |_| (),
        )
    }

    fn session(&self, hash: &str) -> Fut<'_, Option<SessionRow>> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "SELECT s.user_id, u.email, {}, {} FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.revoked_at IS NULL",
                ms("s.expires_at"),
                ms("s.last_seen_at")
            )
        });
        self.rows(sql, vec![Box::new(hash.to_owned())], |rows| {
            rows.first().map(|r| SessionRow {
                user_id: r.get(0),
                email: r.get(1),
                expires_ms: r.get(2),
                last_seen_ms: r.get(3),
            })
        })
    }

    fn touch_session(&self, hash: &str, now_ms: i64) -> Fut<'_, ()> {
        self.rows(
            "UPDATE sessions SET last_seen_at = greatest(last_seen_at, to_timestamp($2::float8 / 1000)) \
             WHERE token_hash = $1",
            vec![Box::new(hash.to_owned()), Box::new(now_ms as f64)],
            |_| (),
        )
    }

    fn end_session(&self, hash: &str) -> Fut<'_, ()> {
        self.rows(
            "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
            vec![Box::new(hash.to_owned())],
            |_| (),
        )
    }

    fn memberships(&self, user_id: i64) -> Fut<'_, Vec<Membership>> {
        self.rows(
            "SELECT m.app_id, a.name, m.role, a.time_zone FROM memberships m \
             JOIN apps a ON a.app_id = m.app_id WHERE m.user_id = $1 ORDER BY m.app_id",
            vec![Box::new(user_id)],
            |rows| {
                rows.iter()
                    .map(|r| Membership {
                        app_id: r.get(0),
                        name: r.get(1),
                        role: role_of(r.get(2)),
                        time_zone: r.get(3),
                    })
                    .collect()
            },
        )
    }

    fn keys(&self, app_id: &str) -> Fut<'_, Vec<KeyRow>> {
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "SELECT id, kind, key_prefix, {}, revoked_at IS NOT NULL FROM api_keys \
                 WHERE app_id = $1 ORDER BY id DESC",
                ms("created_at")
            )
        });
        self.rows(sql, vec![Box::new(app_id.to_owned())], |rows| {
            rows.iter()
                .map(|r| KeyRow {
                    id: r.get(0),
                    kind: r.get(1),
                    prefix: r.get(2),
                    created_ms: r.get(3),
                    revoked: r.get(4),
                })
                .collect()
        })
    }

    fn create_key(&self, app_id: &str, kind: KeyKind) -> Fut<'_, (i64, String)> {
        let key = generate_key(kind);
        let (hash, prefix) = (hash_key(&key), key[..8].to_owned());
        let app_id = app_id.to_owned();
        Box::pin(async move {
            let ids = self
                .rows(
                    "INSERT INTO api_keys (key_hash, key_prefix, app_id, kind) VALUES ($1, $2, $3, $4) RETURNING id",
                    vec![
                        Box::new(hash),
                        Box::new(prefix),
                        Box::new(app_id),
                        Box::new(kind.as_str().to_owned()),
                    ],
                    |rows| rows.first().map(|r| r.get::<_, i64>(0)),
                )
                .await?;
            let id = ids.ok_or("the key was not stored")?;
            Ok((id, key))
        })
    }

    fn revoke_key(&self, app_id: &str, id: i64) -> Fut<'_, bool> {
        self.rows(
            "UPDATE api_keys SET revoked_at = now() \
             WHERE app_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
            vec![Box::new(app_id.to_owned()), Box::new(id)],
            |rows| !rows.is_empty(),
        )
    }

    fn members(&self, app_id: &str) -> Fut<'_, Vec<Member>> {
        self.rows(
            "SELECT u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.app_id = $1 ORDER BY u.email",
            vec![Box::new(app_id.to_owned())],
            |rows| {
                rows.iter()
                    .map(|r| Member {
                        email: r.get(0),
                        role: role_of(r.get(1)),
                    })
                    .collect()
            },
        )
    }

    fn add_member(
        &self,
        app_id: &str,
        email: &str,
        role: Role,
        password_hash: Option<String>,
    ) -> Fut<'_, bool> {
        // One statement: the user is created (when a password is given and
        // the e-mail is new) and the membership upserted together.
        self.rows(
            "WITH new_user AS ( \
                 INSERT INTO users (email, password_hash) SELECT $2::text, $4::text WHERE $4::text IS NOT NULL \
                 ON CONFLICT (email) DO NOTHING RETURNING id), \
             who AS (SELECT id FROM new_user UNION ALL SELECT id FROM users WHERE email = $2::text) \
             INSERT INTO memberships (user_id, app_id, role) \
             SELECT id, $1::text, $3::text FROM who LIMIT 1 \
             ON CONFLICT (user_id, app_id) DO UPDATE SET role = EXCLUDED.role RETURNING user_id",
            vec![
                Box::new(app_id.to_owned()),
                Box::new(email.to_owned()),
                Box::new(role.as_str().to_owned()),
                Box::new(password_hash),
            ],
            |rows| !rows.is_empty(),
        )
    }

    fn domains(&self, app_id: &str) -> Fut<'_, Vec<String>> {
        let app_id = app_id.to_owned();
        Box::pin(
            self.pg
                .with(move |client| Box::pin(async move { domains::list(client, &app_id).await })),
        )
    }

    fn claim_domain(&self, app_id: &str, domain: &str) -> Fut<'_, String> {
        let (app_id, domain) = (app_id.to_owned(), domain.to_owned());
        Box::pin(self.pg.with(move |client| {
            Box::pin(async move { domains::claim(client, &app_id, &domain).await })
        }))
    }

    fn release_domain(&self, app_id: &str, domain: &str) -> Fut<'_, bool> {
        let (app_id, domain) = (app_id.to_owned(), domain.to_owned());
        Box::pin(self.pg.with(move |client| {
            Box::pin(async move { domains::release(client, &app_id, &domain).await })
        }))
    }

    fn remove_member(&self, app_id: &str, email: &str) -> Fut<'_, bool> {
        self.rows(
            "DELETE FROM memberships m USING users u \
             WHERE m.user_id = u.id AND m.app_id = $1 AND u.email = $2 RETURNING m.user_id",
            vec![Box::new(app_id.to_owned()), Box::new(email.to_owned())],
            |rows| !rows.is_empty(),
        )
    }
}
