//! Dashboard sessions: `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`,
//! `GET /api/v1/auth/me`, and [`resolve`], which turns a request's session
//! cookie into its user (for [`crate::auth`]).
//!
//! * Login takes `{"email", "password"}`; the password is checked against the
//!   argon2id hash off the async runtime (an unknown e-mail is checked against
//!   a decoy, so both take as long). Success sets the cookie
//!   `tally_session=ts_…` (`HttpOnly`, `SameSite=Lax`, `Path=/`, `Max-Age` the
//!   session's life, `Secure` over TLS); only the token's SHA-256 is stored.
//!   Refusals: 400 `invalid_parameter`, 401 `invalid_credentials`, 429
//!   `too_many_attempts` (with `retry_after_s`; [`crate::login_throttle`]),
//!   403 `cross_site_request`, 503 `accounts_unavailable`.
//! * A session ends at its absolute expiry, after the idle timeout, or at
//!   logout. Lookups are cached per process for [`SESSION_CACHE`]: a logout
//!   takes effect at once on the replica that served it and within that time
//!   on the others; so do membership changes.
//! * State-changing requests with a session must come from the service's own
//!   origin (CSRF): [`same_origin`].
//!
//! Passwords and tokens are never logged (the body's `Debug` hides them).

use crate::accounts::Membership;
use crate::config::AccountsConfig;
use crate::{AppState, QueryError};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tally_common::accounts::{self, generate_session_token};
use tally_common::postgres::hash_key;

/// The cookie's name.
pub const COOKIE: &str = "tally_session";
/// How long a session lookup is reused.
pub const SESSION_CACHE: Duration = Duration::from_secs(5);

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    /// Id.
    pub user_id: i64,
    /// E-mail.
    pub email: String,
    /// Their apps and roles.
    pub apps: Vec<Membership>,
    /// The session's absolute end, epoch ms.
    pub expires_ms: i64,
}

/// The login body (its `Debug` never shows the password).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// E-mail address.
    pub email: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The session token of a request's cookie, when it has the token's form.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|t| {
            t.len() == 46
                && t.starts_with("ts_")
                && t[3..].bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Whether a state-changing request comes from the service's own origin (its
/// `Host`) or an allowed one. Without `Origin`, `Sec-Fetch-Site:
/// same-origin` counts; without either, it is refused.
pub fn same_origin(headers: &HeaderMap, config: &AccountsConfig) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let Some(origin) = text(header::ORIGIN) else {
        return text(header::HeaderName::from_static("sec-fetch-site")) == Some("same-origin");
    };
    let origin = origin.trim_end_matches('/');
    if config.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some() && authority == text(header::HOST)
}

/// The user of the request's session, if it has a live one.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionUser>, QueryError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let hash = hash_key(&token);
    let now = state.clock.now_ms();
    let (user, _) = state
        .sessions
        .get_or_compute(&hash, || lookup(state, &hash, now))
        .await?;
    Ok(user.as_ref().clone().filter(|u| u.expires_ms > now))
}

async fn lookup(state: &AppState, hash: &str, now: i64) -> Result<Option<SessionUser>, QueryError> {
    let unavailable = QueryError::AccountsUnavailable;
    let Some(row) = state.accounts.session(hash).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let idle = i64::try_from(state.config.accounts.session_idle.as_millis()).unwrap_or(i64::MAX);
    if now >= row.expires_ms || now.saturating_sub(row.last_seen_ms) >= idle {
        return Ok(None);
    }
    state
        .accounts
        .touch_session(hash, now)
        .await
        .map_err(unavailable)?;
    let apps = state
        .accounts
        .memberships(row.user_id)
        .await
        .map_err(unavailable)?;
    Ok(Some(SessionUser {
        user_id: row.user_id,
        email: row.email,
        apps,
        expires_ms: row.expires_ms,
    }))
}

fn me_body(state: &AppState, user: &SessionUser) -> serde_json::Value {
    json!({
        "user": {"id": user.user_id, "email": user.email},
        "apps": user.apps,
        "gateway_url": state.config.accounts.gateway_url,
    })
}

fn cookie(
    headers: &HeaderMap,
    config: &AccountsConfig,
    value: &str,
    max_age_s: u64,
) -> HeaderValue {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = if config.cookie_secure.unwrap_or(tls) {
        "; Secure"
    } else {
        ""
    };
    let text =
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("tally_session=; Max-Age=0"))
}

/// `POST /api/v1/auth/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, QueryError> {
    let config = &state.config.accounts;
    if !same_origin(&headers, config) {
        return Err(QueryError::CrossSiteRequest);
    }
    let Json(body) = body.map_err(|e| QueryError::InvalidParameter("body", e.body_text()))?;
    let email = accounts::normalize_email(&body.email)
        .map_err(|e| QueryError::InvalidParameter("email", e.to_string()))?;
    let address = format!("ip:{}", peer.ip());
    let limit = config.login_failures_per_minute;
    state
        .login_throttle
        .check(&email, limit)
        .and_then(|()| {
            state
                .login_throttle
                .check(&address, limit.saturating_mul(3))
        })
        .map_err(|wait| {
            state.metrics.record_login("throttled");
            QueryError::TooManyLoginAttempts(wait)
        })?;
    let user = state
        .accounts
        .user(&email)
        .await
        .map_err(QueryError::AccountsUnavailable)?;
    let hash = user.as_ref().map_or_else(
        || accounts::decoy_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || accounts::verify_password(&hash, &password))
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    let Some(user) = user.filter(|_| matches) else {
        state.login_throttle.fail(&email);
        state.login_throttle.fail(&address);
        state.metrics.record_login("refused");
        return Err(QueryError::InvalidCredentials);
    };
    state.login_throttle.clear(&email);
    let token = generate_session_token();
    let now = state.clock.now_ms();
    let ttl = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_ms = now.saturating_add(ttl);
    let hash = hash_key(&token);
    let unavailable = QueryError::AccountsUnavailable;
    state
        .accounts
        .create_session(&hash, user.id, now, expires_ms)
        .await
        .map_err(unavailable)?;
    let apps = state
        .accounts
        .memberships(user.id)
        .await
        .map_err(unavailable)?;
    state.metrics.record_login("ok");
    tracing::info!(user_id = user.id, "dashboard login");
    let session = SessionUser {
        user_id: user.id,
        email: user.email,
        apps,
        expires_ms,
    };
    let mut response = Json(me_body(&state, &session)).into_response();
    let cookie = cookie(&headers, config, &token, config.session_ttl.as_secs());
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/auth/me`: the session's user, their apps and the gateway's address.
pub async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let user = resolve(&state, &headers)
        .await?
        .ok_or(QueryError::Unauthenticated)?;
    let mut response = Json(me_body(&state, &user)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /api/v1/auth/logout`: ends the session (if any) and clears the cookie.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let config = &state.config.accounts;
    if !same_origin(&headers, config) {
        return Err(QueryError::CrossSiteRequest);
    }
    if let Some(token) = session_token(&headers) {
        let hash = hash_key(&token);
        state
            .accounts
            .end_session(&hash)
            .await
            .map_err(QueryError::AccountsUnavailable)?;
        state.sessions.forget(&hash);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&headers, config, "", 0));
    Ok(response)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
