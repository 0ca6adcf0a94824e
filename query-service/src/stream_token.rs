//! Stream tokens: how a browser opens the live stream. `EventSource` cannot
//! send an `Authorization` header, and a secret read key must not travel in a
//! URL (it ends up in logs and histories). So a backend holding the read key
//! asks `POST /api/v1/analytics/{app_id}/live/token` and hands the page a
//! token that only opens `/live/stream?token=…` of that app, and only for
//! [`TOKEN_TTL_SECS`] after it was issued (a stream opened in time runs on).
//!
//! Tokens are 256 random bits; Redis keeps only their SHA-256 (the same
//! `hash_key` as read and write keys) under
//! `{prefix}:stream_token:{hash}` (→ app id, expiring), so every query-service
//! replica accepts a token any of them issued.
//!
//! [`StreamAccess`] is the stream's guard: the `Authorization` header or a
//! session cookie (as [`ReadAccess`]; a dashboard's `EventSource` sends its
//! cookie), else `?token=` — refused as 401
//! `invalid_stream_token` when malformed, unknown or expired, 403
//! `key_app_mismatch` when issued for another app.

use crate::auth::{key_or_session, path_app_id, ReadAccess};
use crate::{AppState, QueryError};
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::Json;
use rand::RngCore;
use serde_json::{json, Value};
use std::sync::Arc;
use tally_common::http::{Path, Query};
use tally_common::postgres::hash_key;

/// How long a token may be used to open a stream, seconds.
pub const TOKEN_TTL_SECS: u64 = 300;
/// What every token starts with.
const TOKEN_PREFIX: &str = "st_";

/// A new random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

/// `POST /api/v1/analytics/{app_id}/live/token` (read key in the header).
pub async fn issue(
    State(state): State<Arc<AppState>>,
    Path(_): Path<String>,
    ReadAccess { app_id }: ReadAccess,
) -> Result<Json<Value>, QueryError> {
    let token = new_token();
    state
        .live
        .put_stream_token(&hash_key(&token), &app_id, TOKEN_TTL_SECS)
        .await?;
    Ok(Json(json!({
        "token": token,
        "expires_in_s": TOKEN_TTL_SECS,
        "stream_path": format!("/api/v1/analytics/{app_id}/live/stream?token={token}"),
    })))
}

/// Query string of the stream.
#[derive(Debug, serde::Deserialize)]
pub struct StreamParams {
    /// A stream token, for clients that cannot send the `Authorization`
    /// header (browsers' `EventSource`).
    pub token: Option<String>,
}

/// A request that may open `app_id`'s live stream: by read key (the
/// `Authorization` header, when present) or by a stream token of that app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAccess {
    /// The app of the path.
    pub app_id: String,
}

impl FromRequestParts<Arc<AppState>> for StreamAccess {
    type Rejection = QueryError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let app_id = path_app_id(parts, state).await?;
        // The handler's own `Query` extractor runs first and refuses a bad query string.
        let token = Query::<StreamParams>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Query(params)| params.token);
        let token = match token {
            Some(token) if !parts.headers.contains_key(header::AUTHORIZATION) => token,
            _ => {
                key_or_session(state, parts, &app_id).await?;
                return Ok(StreamAccess { app_id });
            }
        };
        let well_formed = token.len() == TOKEN_PREFIX.len() + 64
            && token.starts_with(TOKEN_PREFIX)
            && token[TOKEN_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Err(QueryError::InvalidStreamToken);
        }
        match state.live.stream_token_app(&hash_key(&token)).await? {
            Some(owner) if owner == app_id => Ok(StreamAccess { app_id }),
            Some(_) => Err(QueryError::KeyAppMismatch),
            None => Err(QueryError::InvalidStreamToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 67);
        assert!(a.starts_with("st_"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
