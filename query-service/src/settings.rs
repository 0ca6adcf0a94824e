//! An app's settings, for its admins (a session with the `admin` role,
//! [`AdminAccess`]; keys cannot manage):
//!
//! * `GET /api/v1/apps/{app_id}/keys` — the keys (number, kind, first 8
//!   characters, created, revoked), never the keys themselves;
//! * `POST /api/v1/apps/{app_id}/keys` `{"kind": "write"|"read"}` → 201 with
//!   the new key, shown this once;
//! * `DELETE /api/v1/apps/{app_id}/keys/{id}` → 204 (the key stops working
//!   here at once, and in the gateway within its key refresh);
//! * `GET /api/v1/apps/{app_id}/members`, `POST …/members` `{"email",
//!   "role", "password"?}` → 201 (a new user needs a password), `DELETE
//!   …/members/{email}` → 204. An admin cannot remove or demote themself, so
//!   an app never loses its last admin through the dashboard;
//! * `GET /api/v1/apps/{app_id}/domains`, `POST …/domains` `{"domain"}` →
//!   201 with the stored (normalised) form, 409 `domain_taken` when another
//!   app has it, `DELETE …/domains/{domain}` → 204: the site domains that
//!   Plausible's and Umami's trackers name instead of a key
//!   (`tally_common::domains`; the gateway's key snapshot carries them).

use crate::accounts::StoreError;
use crate::auth::AdminAccess;
use crate::session::resolve;
use crate::{AppState, QueryError};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tally_common::accounts::{self, Role};
use tally_common::http::Path;
use tally_common::postgres::KeyKind;
use tally_schemas::ids::normalize_domain;

fn unavailable(err: StoreError) -> QueryError {
    QueryError::AccountsUnavailable(err)
}

/// `GET /api/v1/apps/{app_id}/keys`.
pub async fn keys(
    State(state): State<Arc<AppState>>,
    AdminAccess { app_id }: AdminAccess,
) -> Result<Response, QueryError> {
    let keys = state.accounts.keys(&app_id).await.map_err(unavailable)?;
    Ok(Json(json!({ "keys": keys })).into_response())
}

/// Body of a new key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// `write` or `read`.
    pub kind: String,
}

/// `POST /api/v1/apps/{app_id}/keys`.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    AdminAccess { app_id }: AdminAccess,
    body: Result<Json<NewKey>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, QueryError> {
    let Json(body) = body.map_err(|e| QueryError::InvalidParameter("body", e.body_text()))?;
    let kind = match body.kind.as_str() {
        "write" => KeyKind::Write,
        "read" => KeyKind::Read,
        _ => return Err(QueryError::InvalidParameter("kind", "write or read".into())),
    };
    let (id, key) = state
        .accounts
        .create_key(&app_id, kind)
        .await
        .map_err(unavailable)?;
    tracing::info!(
        app_id,
        id,
        kind = kind.as_str(),
        "key created in the dashboard"
    );
    let body = json!({ "id": id, "kind": kind.as_str(), "key": key });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/v1/apps/{app_id}/keys/{id}`.
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Path((_, id)): Path<(String, String)>,
    AdminAccess { app_id }: AdminAccess,
) -> Result<Response, QueryError> {
    let id: i64 = id.parse().map_err(|_| QueryError::NotFound)?;
    if !state
        .accounts
        .revoke_key(&app_id, id)
        .await
        .map_err(unavailable)?
    {
        return Err(QueryError::NotFound);
    }
    tracing::info!(app_id, id, "key revoked in the dashboard");
    // This replica stops accepting a revoked read key at once.
    if let Err(err) = state.keys.refresh().await {
        tracing::warn!(error = %err, "read keys not reloaded after a revocation");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/apps/{app_id}/members`.
pub async fn members(
    State(state): State<Arc<AppState>>,
    AdminAccess { app_id }: AdminAccess,
) -> Result<Response, QueryError> {
    let members = state.accounts.members(&app_id).await.map_err(unavailable)?;
    Ok(Json(json!({ "members": members })).into_response())
}

/// Body of a new member (its `Debug` hides the password).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// E-mail.
    pub email: String,
    /// `viewer` or `admin`.
    pub role: String,
    /// Password of a new user (ignored for an existing one).
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for NewMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMember")
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The e-mail of the admin making the request.
async fn own_email(state: &AppState, headers: &HeaderMap) -> Result<String, QueryError> {
    Ok(resolve(state, headers)
        .await?
        .ok_or(QueryError::Unauthenticated)?
        .email)
}

/// `POST /api/v1/apps/{app_id}/members`.
pub async fn add_member(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AdminAccess { app_id }: AdminAccess,
    body: Result<Json<NewMember>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, QueryError> {
    let Json(body) = body.map_err(|e| QueryError::InvalidParameter("body", e.body_text()))?;
    let email = accounts::normalize_email(&body.email)
        .map_err(|e| QueryError::InvalidParameter("email", e.to_string()))?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| QueryError::InvalidParameter("role", "viewer or admin".into()))?;
    if email == own_email(&state, &headers).await? {
        return Err(QueryError::InvalidParameter(
            "email",
            "you cannot change your own role".into(),
        ));
    }
    let hash = match body.password {
        Some(password) => Some(
            tokio::task::spawn_blocking(move || accounts::hash_password(&password))
                .await
                .map_err(|e| QueryError::Internal(e.to_string()))?
                .map_err(|e| QueryError::InvalidParameter("password", e.to_string()))?,
        ),
        None => None,
    };
    let added = state
        .accounts
        .add_member(&app_id, &email, role, hash)
        .await
        .map_err(unavailable)?;
    if !added {
        return Err(QueryError::InvalidParameter(
            "password",
            format!("{email} has no account yet: give a password to create one"),
        ));
    }
    tracing::info!(
        app_id,
        role = role.as_str(),
        "member added in the dashboard"
    );
    let body = json!({ "email": email, "role": role.as_str() });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/v1/apps/{app_id}/members/{email}`.
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    Path((_, email)): Path<(String, String)>,
    headers: HeaderMap,
    AdminAccess { app_id }: AdminAccess,
) -> Result<Response, QueryError> {
    let email = accounts::normalize_email(&email).map_err(|_| QueryError::NotFound)?;
    if email == own_email(&state, &headers).await? {
        return Err(QueryError::InvalidParameter(
            "email",
            "you cannot remove yourself".into(),
        ));
    }
    if !state
        .accounts
        .remove_member(&app_id, &email)
        .await
        .map_err(unavailable)?
    {
        return Err(QueryError::NotFound);
    }
    tracing::info!(app_id, "member removed in the dashboard");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/apps/{app_id}/domains`.
pub async fn domains(
    State(state): State<Arc<AppState>>,
    AdminAccess { app_id }: AdminAccess,
) -> Result<Response, QueryError> {
    let domains = state.accounts.domains(&app_id).await.map_err(unavailable)?;
    Ok(Json(json!({ "domains": domains })).into_response())
}

/// Body of a new site domain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// A host name (`shop.example`; case, a final `.` and `www.` do not matter).
    pub domain: String,
}

/// `POST /api/v1/apps/{app_id}/domains`.
pub async fn add_domain(
    State(state): State<Arc<AppState>>,
    AdminAccess { app_id }: AdminAccess,
    body: Result<Json<NewDomain>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, QueryError> {
    let Json(body) = body.map_err(|e| QueryError::InvalidParameter("body", e.body_text()))?;
    let domain = normalize_domain(&body.domain).ok_or_else(|| {
        QueryError::InvalidParameter("domain", "a host name such as shop.example".into())
    })?;
    let owner = state
        .accounts
        .claim_domain(&app_id, &domain)
        .await
        .map_err(unavailable)?;
    if owner != app_id {
        return Err(QueryError::DomainTaken(domain));
    }
    tracing::info!(app_id, domain, "site domain added in the dashboard");
    Ok((StatusCode::CREATED, Json(json!({ "domain": domain }))).into_response())
}

/// `DELETE /api/v1/apps/{app_id}/domains/{domain}`.
pub async fn remove_domain(
    State(state): State<Arc<AppState>>,
    Path((_, domain)): Path<(String, String)>,
    AdminAccess { app_id }: AdminAccess,
) -> Result<Response, QueryError> {
    let domain = normalize_domain(&domain).ok_or(QueryError::NotFound)?;
    if !state
        .accounts
        .release_domain(&app_id, &domain)
        .await
        .map_err(unavailable)?
    {
        return Err(QueryError::NotFound);
    }
    tracing::info!(app_id, domain, "site domain removed in the dashboard");
    Ok(StatusCode::NO_CONTENT.into_response())
}
