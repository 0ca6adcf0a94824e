//! Identifier rules shared by every service: what an app id may look like
//! (the gateway refuses another form with 400 `invalid_app_id`, and so does
//! the query service for the `{app_id}` of its routes), and how a site domain
//! is written when it names an app (`app_domains`, migration 0011).

/// Longest app id, bytes.
pub const MAX_APP_ID_LEN: usize = 64;

/// Whether `app_id` has the allowed form `[A-Za-z0-9_-]{1,64}`.
pub fn valid_app_id(app_id: &str) -> bool {
    (1..=MAX_APP_ID_LEN).contains(&app_id.len())
        && app_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Longest site domain, bytes (DNS's limit).
pub const MAX_DOMAIN_LEN: usize = 253;

/// A site domain as stored and compared: trimmed, lower-case, without a final
/// `.` or a leading `www.`; `None` when the result is not a host name
/// (`[a-z0-9-.]`, at most [`MAX_DOMAIN_LEN`] bytes, no empty label).
pub fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.strip_prefix("www.").unwrap_or(&domain);
    let valid = (1..=MAX_DOMAIN_LEN).contains(&domain.len())
        && domain.split('.').all(|label| !label.is_empty())
        && domain
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    valid.then(|| domain.to_owned())
}

/// The entry of a site domain in the gateway's key snapshot (beside the
/// SHA-256 hex of write keys, which never contain `:`).
pub fn domain_entry(domain: &str) -> String {
    format!("domain:{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_written_one_way() {
        assert_eq!(
            normalize_domain(" WWW.Shop.Example. ").as_deref(),
            Some("shop.example")
        );
        assert_eq!(normalize_domain("localhost").as_deref(), Some("localhost"));
        for bad in [
            "",
            ".",
            "a..b",
            "a b.example",
            "shop.example/path",
            "ü.example",
        ] {
            assert_eq!(normalize_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn app_ids_are_short_ascii_words() {
        assert!(valid_app_id("APP-1_x"));
        assert!(valid_app_id(&"a".repeat(64)));
        assert!(!valid_app_id(""));
        assert!(!valid_app_id("a:b"));
        assert!(!valid_app_id("é"));
        assert!(!valid_app_id(&"a".repeat(65)));
    }
}
