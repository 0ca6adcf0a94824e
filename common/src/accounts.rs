//! Dashboard users (seed 002: accounts in PostgreSQL), the rules both
//! `tally-admin users …` and the query service follow:
//!
//! * an e-mail is trimmed and lower-cased, 3..=254 characters with one `@`
//!   and no whitespace ([`normalize_email`]);
//! * a password has 8..=1024 characters ([`check_password`]) and is stored only
//!   as an argon2id PHC string ([`hash_password`], [`verify_password`]; both
//!   are CPU work: call them off the async runtime, e.g. `spawn_blocking`);
//! * a membership gives a user a [`Role`] in one app;
//! * a login session is a random `ts_…` token in a cookie ([`generate_session_token`]);
//!   only its SHA-256 ([`crate::postgres::hash_key`]) is stored.
//!
//! The statements here are the shared writes (create, grant, revoke); reads
//! for requests live in the query service's account store.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use tokio_postgres::Client;

/// What a member may do in an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read the app's analytics, saved items included.
    Viewer,
    /// Also manage the app's keys and members.
    Admin,
}

impl Role {
    /// Stored and answered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    /// Parses `viewer` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Why an account input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Not an e-mail address of the accepted form.
    #[error("invalid e-mail: 3..=254 characters with one @ and no spaces")]
    InvalidEmail,
    /// Too short or too long.
    #[error("invalid password: 8..=1024 characters")]
    InvalidPassword,
    /// The hashing library failed (never expected).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// The stored form of an e-mail address.
pub fn normalize_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    let ok = (3..=254).contains(&email.chars().count())
        && email.matches('@').count() == 1
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email).ok_or(AccountError::InvalidEmail)
}

/// Refuses passwords of fewer than 8 or more than 1024 characters.
pub fn check_password(password: &str) -> Result<(), AccountError> {
    if (8..=1024).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(AccountError::InvalidPassword)
    }
}

/// An argon2id PHC string of `password` with a fresh salt (default
/// parameters: 19 MiB, 2 passes, 1 lane). CPU-bound: tens of milliseconds.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    check_password(password)?;
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| AccountError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Hashing(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed
/// hash). CPU-bound like [`hash_password`].
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password matches, verified against when the e-mail is unknown
/// so that a login takes as long either way.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&generate_session_token()).unwrap_or_default())
}

/// A fresh session token: `ts_` and 43 random base-62 characters (256 bits).
pub fn generate_session_token() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let body: String = (0..43)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("ts_{body}")
}

/// Creates a user, or sets the password of an existing one; returns the id.
pub async fn upsert_user(
    client: &Client,
    email: &str,
    password_hash: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO users (email, password_hash) VALUES ($1, $2) \
             ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash RETURNING id",
            &[&email, &password_hash],
        )
        .await?;
    Ok(row.get(0))
}

/// Gives the user `email` `role` in `app_id` (replacing an earlier role);
/// false when the user or the app does not exist.
pub async fn grant(
    client: &Client,
    email: &str,
    app_id: &str,
    role: Role,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client
        .execute(
            "INSERT INTO memberships (user_id, app_id, role) \
             SELECT u.id, a.app_id, $3 FROM users u, apps a WHERE u.email = $1 AND a.app_id = $2 \
             ON CONFLICT (user_id, app_id) DO UPDATE SET role = EXCLUDED.role",
            &[&email, &app_id, &role.as_str()],
        )
        .await?;
    Ok(rows == 1)
}

/// Ends the membership of `email` in `app_id`; false when there was none.
pub async fn revoke(
    client: &Client,
    email: &str,
    app_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let rows = client
        .execute(
            "DELETE FROM memberships m USING users u \
             WHERE m.user_id = u.id AND u.email = $1 AND m.app_id = $2",
            &[&email, &app_id],
        )
        .await?;
    Ok(rows == 1)
}

/// Every user with their memberships: (e-mail, [(app, role)]).
pub async fn list_users(
    client: &Client,
) -> Result<Vec<(String, Vec<(String, String)>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT u.email, m.app_id, m.role FROM users u \
             LEFT JOIN memberships m ON m.user_id = u.id ORDER BY u.email, m.app_id",
            &[],
        )
        .await?;
    let mut users: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for row in rows {
        let email: String = row.get(0);
        if users.last().is_none_or(|(last, _)| *last != email) {
            users.push((email, Vec::new()));
        }
        if let (Some(app), Some(role), Some(last)) = (
            row.get::<_, Option<String>>(1),
            row.get::<_, Option<String>>(2),
            users.last_mut(),
        ) {
            last.1.push((app, role));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalize_email("  Ann@Example.COM "),
            Ok("ann@example.com".into())
        );
        for bad in ["", "a", "@b.c", "a@", "a b@c.d", "a@b@c", "a\n@b.c"] {
            assert_eq!(
                normalize_email(bad),
                Err(AccountError::InvalidEmail),
                "{bad:?}"
            );
        }
        assert!(normalize_email(&format!("{}@b.c", "a".repeat(260))).is_err());
    }

    #[test]
    fn passwords_hash_to_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert_ne!(hash_password("correct horse").unwrap(), hash, "salted");
        assert_eq!(hash_password("short"), Err(AccountError::InvalidPassword));
        assert!(!verify_password(decoy_hash(), ""));
    }

    #[test]
    fn session_tokens_are_long_and_fresh() {
        let token = generate_session_token();
        assert!(token.starts_with("ts_") && token.len() == 46);
        assert_ne!(generate_session_token(), token);
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse(Role::Viewer.as_str()), Some(Role::Viewer));
        assert_eq!(Role::parse("root"), None);
    }
}
