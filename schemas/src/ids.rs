//! Identifier rules shared by every service: what an app id may look like.
//! The gateway refuses another form with 400 `invalid_app_id`, and so does the
//! query service for the `{app_id}` of its routes.

/// Longest app id, bytes.
pub const MAX_APP_ID_LEN: usize = 64;

/// Whether `app_id` has the allowed form `[A-Za-z0-9_-]{1,64}`.
pub fn valid_app_id(app_id: &str) -> bool {
    (1..=MAX_APP_ID_LEN).contains(&app_id.len())
        && app_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

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
