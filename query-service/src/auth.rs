//! Read-key authentication: every analytics request carries
//! `Authorization: Bearer <read key>` of the app in its path.
//!
//! Read keys are secrets (write keys ship in web pages and cannot read). The
//! keys live in PostgreSQL and are served from the shared cache of
//! `tally_common::keys` (survives PostgreSQL outages; a key created a moment
//! ago works at once). The app guard: a key only ever opens its own app — a
//! valid key of another app is 403, whatever the path says.

use crate::error::QueryError;
use axum::http::{header, HeaderMap};
use tally_common::keys::{KeyCache, Lookup};

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
        Lookup::App(owner) if owner == app_id => Ok(()),
        Lookup::App(_) => Err(QueryError::KeyAppMismatch),
        Lookup::Unknown => Err(QueryError::InvalidReadKey),
        Lookup::Unavailable => Err(QueryError::KeysUnavailable),
    }
}
