//! Where a request's write key comes from, in order: the HTTP Basic username
//! (Segment's SDKs send `writeKey:`), a Bearer token, or the body's
//! `write_key`/`writeKey`. A key in the headers is used (and checked) before the
//! body is read; the body's key only when the headers carry none.

use axum::http::{header, HeaderMap};
use base64::Engine;

/// The write key of a request, if any.
pub fn credential(headers: &HeaderMap, body_key: Option<&str>) -> Option<String> {
    header_credential(headers)
        .or_else(|| body_key.map(str::to_owned))
        .filter(|key| !key.is_empty())
}

/// The write key carried by the headers (Basic username or Bearer token), if any:
/// known before a byte of the body is read, so it is checked first (see `lib.rs`).
pub fn header_credential(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, rest) = value.trim().split_once(' ')?;
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                Some(text.split(':').next().unwrap_or_default().to_owned())
            } else if scheme.eq_ignore_ascii_case("bearer") {
                Some(rest.trim().to_owned())
            } else {
                None
            }
        })
        .filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_bearer_and_body() {
        // base64("tw_abc:") — Segment's form.
        assert_eq!(
            credential(&with_auth("Basic dHdfYWJjOg=="), None).as_deref(),
            Some("tw_abc")
        );
        assert_eq!(
            credential(&with_auth("bearer tw_xyz"), None).as_deref(),
            Some("tw_xyz")
        );
        assert_eq!(
            credential(&HeaderMap::new(), Some("tw_body")).as_deref(),
            Some("tw_body")
        );
        assert_eq!(
            credential(&with_auth("Basic %%%"), Some("tw_body")).as_deref(),
            Some("tw_body")
        );
        assert_eq!(credential(&HeaderMap::new(), Some("")), None);
        assert_eq!(credential(&HeaderMap::new(), None), None);
        assert_eq!(
            header_credential(&with_auth("Bearer tw_h")).as_deref(),
            Some("tw_h")
        );
        assert_eq!(
            header_credential(&with_auth("Basic Og==")),
            None,
            "empty user name"
        );
        assert_eq!(header_credential(&HeaderMap::new()), None);
    }
}
