//! Dashboard accounts as the query service reads and changes them: users,
//! sessions, memberships, and the keys, members and site domains an admin
//! manages. One
//! small trait, [`Accounts`], with PostgreSQL ([`postgres::PgAccounts`]) and
//! in-memory ([`memory::MemoryAccounts`], for fast handler tests) versions.
//!
//! The rules (e-mail form, argon2id, roles, token form) are
//! `tally_common::accounts`; sessions and their cookie are [`crate::session`];
//! the admin routes are [`crate::settings`].

pub mod memory;
pub mod postgres;

use futures::future::BoxFuture;
use serde::Serialize;
use tally_common::accounts::Role;
use tally_common::postgres::KeyKind;

/// A store failure (the database is unreachable or refused): 503.
pub type StoreError = String;
/// What every store operation returns.
pub type Fut<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// A user as a login needs them.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Normalised e-mail.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A stored session with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The user.
    pub user_id: i64,
    /// Their e-mail.
    pub email: String,
    /// Absolute end, epoch ms.
    pub expires_ms: i64,
    /// Last use, epoch ms (the idle timeout counts from here).
    pub last_seen_ms: i64,
}

/// One of a user's apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// App id.
    pub app_id: String,
    /// App name.
    pub name: String,
    /// The user's role there.
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    /// The app's time zone (its calendar: "today", days, weeks).
    pub time_zone: String,
}

/// An app's key as an admin sees it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    /// Number (to revoke it by).
    pub id: i64,
    /// `write` or `read`.
    pub kind: String,
    /// The first 8 characters.
    pub prefix: String,
    /// Created, epoch ms.
    pub created_ms: i64,
    /// Revoked already.
    pub revoked: bool,
}

/// A member of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// E-mail.
    pub email: String,
    /// Role.
    #[serde(serialize_with = "role_name")]
    pub role: Role,
}

fn role_name<S: serde::Serializer>(role: &Role, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(role.as_str())
}

/// What the query service reads and changes of accounts.
pub trait Accounts: Send + Sync + std::fmt::Debug + 'static {
    /// The user with this (normalised) e-mail.
    fn user(&self, email: &str) -> Fut<'_, Option<UserRow>>;
    /// Stores a new session.
    fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now_ms: i64,
        expires_ms: i64,
    ) -> Fut<'_, ()>;
    /// A session that was not ended (expiry is the caller's check).
    fn session(&self, token_hash: &str) -> Fut<'_, Option<SessionRow>>;
    /// Records a use of the session.
    fn touch_session(&self, token_hash: &str, now_ms: i64) -> Fut<'_, ()>;
    /// Ends a session (logout).
    fn end_session(&self, token_hash: &str) -> Fut<'_, ()>;
    /// The user's apps, by app id.
    fn memberships(&self, user_id: i64) -> Fut<'_, Vec<Membership>>;
    /// The app's keys, newest first.
    fn keys(&self, app_id: &str) -> Fut<'_, Vec<KeyRow>>;
    /// Creates a key: (id, the key — shown once).
    fn create_key(&self, app_id: &str, kind: KeyKind) -> Fut<'_, (i64, String)>;
    /// Revokes the app's key `id`; false when it has no such active key.
    fn revoke_key(&self, app_id: &str, id: i64) -> Fut<'_, bool>;
    /// The app's members, by e-mail.
    fn members(&self, app_id: &str) -> Fut<'_, Vec<Member>>;
    /// Makes `email` a member with `role`, creating the user when
    /// `password_hash` is given and the e-mail is new (an existing user's
    /// password is left as it is); false when the user does not exist and no
    /// password was given.
    fn add_member(
        &self,
        app_id: &str,
        email: &str,
        role: Role,
        password_hash: Option<String>,
    ) -> Fut<'_, bool>;
    /// Ends a membership; false when there was none.
    fn remove_member(&self, app_id: &str, email: &str) -> Fut<'_, bool>;
    /// The app's site domains (normalised), sorted.
    fn domains(&self, app_id: &str) -> Fut<'_, Vec<String>>;
    /// Gives the normalised `domain` to the app unless another app has it:
    /// the app that has it afterwards.
    fn claim_domain(&self, app_id: &str, domain: &str) -> Fut<'_, String>;
    /// Takes the normalised `domain` from the app; false when it had not it.
    fn release_domain(&self, app_id: &str, domain: &str) -> Fut<'_, bool>;
}
