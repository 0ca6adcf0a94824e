//! Read access: every analytics request names an app in its path and carries
//! `Authorization: Bearer <read key>` of that app, or the session cookie of a
//! member of that app ([`crate::session`]). [`ReadAccess`] is the one guard
//! every analytics route takes (the live stream also accepts stream tokens:
//! `crate::stream_token::StreamAccess`); [`AdminAccess`] guards the admin
//! routes (a session with the app's admin role; keys cannot manage).
//!
//! The `Authorization` header wins when present; otherwise a session cookie
//! is used. With a session: 401 `unauthenticated` (expired, idle or logged
//! out), 403 `not_a_member`, and for state-changing methods 403
//! `cross_site_request` unless the request comes from the service's origin.
//!
//! Read keys are secrets (write keys ship in web pages and cannot read). The
//! keys live in PostgreSQL and are served from the shared cache of
//! `tally_common::keys` (survives PostgreSQL outages; a key created a moment
//! ago works at once). The app guard: a key only ever opens its own app — a
//! valid key of another app is 403, whatever the path says.
//!
//! Refusals, in order: 400 `invalid_app_id` (not `[A-Za-z0-9_-]{1,64}`), 401
//! `missing_read_key`, 401 `invalid_authorization`, 401 `invalid_read_key`,
//! 403 `key_app_mismatch`, 503 `keys_unavailable`. Handlers take the guard
//! after their `Path` and `Query` extractors, so malformed paths and query
//! strings are refused first, as before; handlers that read a body or record
//! metrics take `Result<ReadAccess, QueryError>` and raise the refusal
//! themselves (after the body was read, inside the timed section).

use crate::error::QueryError;
use crate::session::{resolve, same_origin, session_token};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use std::collections::HashMap;
use std::sync::Arc;
use tally_common::accounts::Role;
use tally_common::keys::{KeyCache, Lookup};

pub use tally_schemas::ids::valid_app_id;

/// Checks that `headers` carry a read key of `app_id`.
pub async fn authorize(
    keys: &KeyCache,
    headers: &HeaderMap,
    app_id: &str,
) -> Result<(), QueryError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(QueryError::MissingReadKey)?;
    let key = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, key) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
        .filter(|key| !key.is_empty() && key.len() <= 256)
        .ok_or(QueryError::InvalidAuthorization)?;
    match keys.lookup(key).await {
        Lookup::App(owner) if owner.app_id == app_id => Ok(()),
        Lookup::App(_) => Err(QueryError::KeyAppMismatch),
        Lookup::Unknown => Err(QueryError::InvalidReadKey),
        Lookup::Unavailable => Err(QueryError::KeysUnavailable),
    }
}

/// The `{app_id}` of the route, checked for its form (400 `invalid_app_id`).
pub(crate) async fn path_app_id(
    parts: &mut Parts,
    state: &Arc<AppState>,
) -> Result<String, QueryError> {
    // The handler's own `Path` extractor runs first and refuses a path that
    // does not decode; here the app id is only looked up.
    let axum::extract::Path(params) =
        axum::extract::Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| QueryError::InvalidAppId)?;
    params
        .get("app_id")
        .filter(|app_id| valid_app_id(app_id))
        .cloned()
        .ok_or(QueryError::InvalidAppId)
}

/// A request that may read `app_id`: the app id has the allowed form and the
/// `Authorization` header carries a read key of that app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAccess {
    /// The app of the path, which the key opens.
    pub app_id: String,
}

impl FromRequestParts<Arc<AppState>> for ReadAccess {
    type Rejection = QueryError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let app_id = path_app_id(parts, state).await?;
        key_or_session(state, parts, &app_id).await?;
        Ok(ReadAccess { app_id })
    }
}

/// Checks the read key of `parts` (when it has an `Authorization` header or
/// no session cookie) or its session: a member's, from this origin when the
/// method changes state. Returns the session's role, if by session.
pub(crate) async fn key_or_session(
    state: &AppState,
    parts: &Parts,
    app_id: &str,
) -> Result<Option<Role>, QueryError> {
    if parts.headers.contains_key(header::AUTHORIZATION) || session_token(&parts.headers).is_none()
    {
        authorize(&state.keys, &parts.headers, app_id).await?;
        return Ok(None);
    }
    let user = resolve(state, &parts.headers)
        .await?
        .ok_or(QueryError::Unauthenticated)?;
    let role = user
        .apps
        .iter()
        .find(|m| m.app_id == app_id)
        .map(|m| m.role)
        .ok_or(QueryError::NotAMember)?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(&parts.headers, &state.config.accounts) {
        return Err(QueryError::CrossSiteRequest);
    }
    Ok(Some(role))
}

/// A request that may manage `app_id`: a session of one of its admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAccess {
    /// The app of the path.
    pub app_id: String,
}

impl FromRequestParts<Arc<AppState>> for AdminAccess {
    type Rejection = QueryError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let app_id = path_app_id(parts, state).await?;
        match key_or_session(state, parts, &app_id).await? {
            Some(Role::Admin) => Ok(AdminAccess { app_id }),
            _ => Err(QueryError::NotAnAdmin),
        }
    }
}
