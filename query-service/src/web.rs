//! The dashboard's files, same origin as the API: the single-page app built
//! into `TALLY_WEB_DIR` (default `web/dist`, prepared by `./tally up` from
//! `web/` with npm). `/`, `/login` and every `/app/…` path answer its
//! `index.html` (the page routes itself; `no-cache`, so a new build shows at
//! once); `/assets/…` answers the built files, whose names carry a content
//! hash (cached for a year). Nothing else is read from the disk: a path
//! with `..`, a backslash or any character outside `[A-Za-z0-9._/-]` is 404.
//! Without a build, the page routes answer 503 `dashboard_not_built` with the
//! command that builds it.

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The page paths that answer `index.html` (besides `/app/…`).
pub const PAGES: &[&str] = &["/", "/login"];

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "map") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// `relative` under `root`, when it is a plain relative path of allowed characters.
pub fn safe_join(root: &Path, relative: &str) -> Option<PathBuf> {
    let ok = !relative.is_empty()
        && relative.len() <= 256
        && relative
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && relative
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    ok.then(|| root.join(relative))
}

async fn file(path: &Path, cache: &'static str) -> Option<Response> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

fn not_found(uri: &Uri) -> Response {
    let body =
        serde_json::json!({"error": "not_found", "message": format!("no file {}", uri.path())});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// A page path: the app's `index.html`.
pub async fn page(State(state): State<Arc<AppState>>) -> Response {
    let index = state.config.web_dir.join("index.html");
    if let Some(mut response) = file(&index, "no-cache").await {
        // The page may not be framed by another site.
        response
            .headers_mut()
            .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        return response;
    }
    let message = format!(
        "the dashboard is not built in {}: run ./tally up (or `npm ci && npm run build` in web/)",
        state.config.web_dir.display()
    );
    let body = serde_json::json!({"error": "dashboard_not_built", "message": message});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// `/assets/…`: a built file.
pub async fn asset(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let relative = uri.path().trim_start_matches('/');
    match safe_join(&state.config.web_dir, relative) {
        Some(path) => file(&path, "public, max-age=31536000, immutable")
            .await
            .unwrap_or_else(|| not_found(&uri)),
        None => not_found(&uri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        let root = Path::new("/srv/web");
        assert_eq!(
            safe_join(root, "assets/index-AbC_12.js"),
            Some(PathBuf::from("/srv/web/assets/index-AbC_12.js"))
        );
        for bad in [
            "",
            "../secret",
            "assets/../../etc/passwd",
            "assets//x.js",
            "/etc/passwd",
            "assets/./x.js",
            "assets\\x.js",
            "assets/x.js?y",
            "assets/%2e%2e/x",
            "assets/ä.js",
        ] {
            assert_eq!(safe_join(root, bad), None, "{bad}");
        }
        assert_eq!(
            content_type(Path::new("a/b.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a/b")), "application/octet-stream");
    }
}
