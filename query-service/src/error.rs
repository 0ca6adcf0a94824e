//! The query service's one error type and its explicit mapping to HTTP answers.
//! Every error body is JSON: `{"error": "<machine-readable reason>", "message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The app id is not of the allowed form.
    #[error("invalid app_id: must match [A-Za-z0-9_-]{{1,64}}")]
    InvalidAppId,
    /// A query parameter is invalid.
    #[error("invalid parameter {0}: {1}")]
    InvalidParameter(&'static str, String),
    /// Redis is unreachable or failed.
    #[error("live store unavailable: {0}")]
    LiveUnavailable(#[from] redis::RedisError),
    /// ClickHouse is unreachable or failed.
    #[error("event store unavailable: {0}")]
    StoreUnavailable(#[from] clickhouse::error::Error),
    /// Stored live data did not decode.
    #[error("corrupt live data: {0}")]
    CorruptLiveData(#[from] tally_schemas::live::SnapshotError),
    /// The ad-hoc query is not allowed (field, reason).
    #[error("invalid query ({0}): {1}")]
    InvalidQuery(&'static str, String),
    /// A bare field name is both a built-in field and a property the app sent.
    #[error("{0:?} is both a built-in field and a property this app sent: write \"${0}\" for the built-in field or \"properties.{0}\" for the property")]
    AmbiguousField(String),
    /// The query ran longer than allowed (seconds).
    #[error("query exceeded {0} s; narrow the range or the grouping")]
    TooExpensive(u64),
    /// The query needed more memory than a query may take (ClickHouse's
    /// per-query limit): like a timeout, the question is too large, not the
    /// store down, so retrying the same request does not help.
    #[error("query needed more memory than allowed; narrow the range, the grouping or the steps")]
    TooMuchMemory,
    /// The grouping has more distinct keys than allowed.
    #[error("the group-by has more than {0} distinct values; add filters or fewer dimensions")]
    TooManyGroups(u64),
    /// No such saved item (in this app) or collection.
    #[error("not found")]
    NotFound,
    /// PostgreSQL (saved dashboards and funnels) is unreachable; retry.
    #[error("saved items unavailable: {0}")]
    SavedUnavailable(String),
    /// PostgreSQL (person deletion jobs) is unreachable; retry.
    #[error("deletion jobs unavailable: {0}")]
    DeletionsUnavailable(String),
    /// No `Authorization` header.
    #[error("missing read key: send Authorization: Bearer <read key>, or log in")]
    MissingReadKey,
    /// The `Authorization` header is not `Bearer <key>`.
    #[error("invalid Authorization header: expected Bearer <read key>")]
    InvalidAuthorization,
    /// No active read key matches (write keys cannot read).
    #[error("invalid read key")]
    InvalidReadKey,
    /// The stream token is malformed, unknown or expired.
    #[error("invalid or expired stream token: ask POST …/live/token for a new one")]
    InvalidStreamToken,
    /// The read key belongs to another app.
    #[error("the read key does not belong to this app")]
    KeyAppMismatch,
    /// Keys could not be loaded from PostgreSQL; retry.
    #[error("keys unavailable, retry")]
    KeysUnavailable,
    /// Wrong e-mail or password.
    #[error("wrong e-mail or password")]
    InvalidCredentials,
    /// No live session (and no key): log in.
    #[error("not logged in")]
    Unauthenticated,
    /// Too many failed logins in the last minute (seconds to wait).
    #[error("too many failed logins: retry in {0} s")]
    TooManyLoginAttempts(u64),
    /// The session's user is not a member of the app.
    #[error("you are not a member of this app")]
    NotAMember,
    /// The action needs the app's admin role (and a session, not a key).
    #[error("this needs the admin role in this app")]
    NotAnAdmin,
    /// A state-changing request with a session from another origin (CSRF).
    #[error("cross-site request refused: the Origin is not this service's")]
    CrossSiteRequest,
    /// The site domain is another app's (409): a domain maps to one app.
    #[error("{0} is already a site domain of another app; remove it there first")]
    DomainTaken(String),
    /// PostgreSQL (users, sessions) is unreachable; retry.
    #[error("accounts unavailable: {0}")]
    AccountsUnavailable(String),
    /// A bug or broken invariant while answering (500 `internal`).
    #[error("internal error: {0}")]
    Internal(String),
    /// Start-up failure (only from [`crate::run`], never an HTTP answer).
    #[error("start-up: {0}")]
    Startup(String),
}

impl QueryError {
    /// Machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            QueryError::InvalidAppId => "invalid_app_id",
            QueryError::InvalidParameter(..) => "invalid_parameter",
            QueryError::LiveUnavailable(_) => "live_store_unavailable",
            QueryError::StoreUnavailable(_) => "event_store_unavailable",
            QueryError::CorruptLiveData(_) => "corrupt_live_data",
            QueryError::InvalidQuery(..) => "invalid_query",
            QueryError::AmbiguousField(_) => "ambiguous_field",
            QueryError::TooExpensive(_) | QueryError::TooMuchMemory => "query_too_expensive",
            QueryError::TooManyGroups(_) => "too_many_groups",
            QueryError::NotFound => "not_found",
            QueryError::SavedUnavailable(_) => "saved_unavailable",
            QueryError::DeletionsUnavailable(_) => "deletions_unavailable",
            QueryError::MissingReadKey => "missing_read_key",
            QueryError::InvalidAuthorization => "invalid_authorization",
            QueryError::InvalidReadKey => "invalid_read_key",
            QueryError::KeyAppMismatch => "key_app_mismatch",
            QueryError::InvalidStreamToken => "invalid_stream_token",
            QueryError::KeysUnavailable => "keys_unavailable",
            QueryError::InvalidCredentials => "invalid_credentials",
            QueryError::Unauthenticated => "unauthenticated",
            QueryError::TooManyLoginAttempts(_) => "too_many_attempts",
            QueryError::NotAMember => "not_a_member",
            QueryError::NotAnAdmin => "not_an_admin",
            QueryError::CrossSiteRequest => "cross_site_request",
            QueryError::DomainTaken(_) => "domain_taken",
            QueryError::AccountsUnavailable(_) => "accounts_unavailable",
            QueryError::Internal(_) => "internal",
            QueryError::Startup(_) => "startup",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::InvalidAppId
            | QueryError::InvalidParameter(..)
            | QueryError::InvalidQuery(..)
            | QueryError::AmbiguousField(_)
            | QueryError::TooExpensive(_)
            | QueryError::TooMuchMemory
            | QueryError::TooManyGroups(_) => StatusCode::BAD_REQUEST,
            QueryError::MissingReadKey
            | QueryError::InvalidAuthorization
            | QueryError::InvalidReadKey
            | QueryError::InvalidStreamToken
            | QueryError::InvalidCredentials
            | QueryError::Unauthenticated => StatusCode::UNAUTHORIZED,
            QueryError::KeyAppMismatch
            | QueryError::NotAMember
            | QueryError::NotAnAdmin
            | QueryError::CrossSiteRequest => StatusCode::FORBIDDEN,
            QueryError::TooManyLoginAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            QueryError::NotFound => StatusCode::NOT_FOUND,
            QueryError::DomainTaken(_) => StatusCode::CONFLICT,
            QueryError::LiveUnavailable(_)
            | QueryError::StoreUnavailable(_)
            | QueryError::KeysUnavailable
            | QueryError::SavedUnavailable(_)
            | QueryError::DeletionsUnavailable(_)
            | QueryError::AccountsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::CorruptLiveData(_) | QueryError::Internal(_) | QueryError::Startup(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// A refused field and why (from the statement builders) is a 400 `invalid_query`.
impl From<crate::sql::Invalid> for QueryError {
    fn from((field, why): crate::sql::Invalid) -> Self {
        QueryError::InvalidQuery(field, why)
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(reason = self.reason(), error = %self, "query failed");
        }
        let mut body = json!({ "error": self.reason(), "message": self.to_string() });
        if let QueryError::TooManyLoginAttempts(wait) = self {
            body["retry_after_s"] = json!(wait);
            let retry = [(axum::http::header::RETRY_AFTER, wait.to_string())];
            return (self.status(), retry, Json(body)).into_response();
        }
        (self.status(), Json(body)).into_response()
    }
}
