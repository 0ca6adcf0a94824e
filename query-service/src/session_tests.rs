//! The cookie's form, the origin rule, and the login body's `Debug`.
use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn session_tokens_are_read_from_the_cookie_only_in_their_form() {
    let token = generate_session_token();
    let found = session_token(&headers(&[(
        "cookie",
        &format!("a=1; {COOKIE}={token}; b=2"),
    )]));
    assert_eq!(found.as_deref(), Some(token.as_str()));
    let second_header = headers(&[("cookie", "a=1"), ("cookie", &format!("{COOKIE}={token}"))]);
    assert_eq!(
        session_token(&second_header).as_deref(),
        Some(token.as_str())
    );
    for bad in [
        "ts_short",
        &format!("{}!", &token[..45]),
        &token.replace("ts_", "tr_"),
        "",
    ] {
        let found = session_token(&headers(&[("cookie", &format!("{COOKIE}={bad}"))]));
        assert_eq!(found, None, "{bad}");
    }
    assert_eq!(
        session_token(&headers(&[("cookie", &format!("x{COOKIE}={token}"))])),
        None
    );
}

#[test]
fn state_changes_need_the_services_own_origin() {
    let config = AccountsConfig {
        allowed_origins: vec!["https://tally.example.com".into()],
        ..AccountsConfig::default()
    };
    let host = ("host", "127.0.0.1:8081");
    for (origin, ok) in [
        ("http://127.0.0.1:8081", true),
        ("https://127.0.0.1:8081", true),
        ("http://127.0.0.1:8081/", true),
        ("https://tally.example.com", true),
        ("http://evil.example", false),
        ("http://127.0.0.1:8082", false),
        ("http://127.0.0.1:8081.evil.example", false),
        ("null", false),
    ] {
        assert_eq!(
            same_origin(&headers(&[host, ("origin", origin)]), &config),
            ok,
            "{origin}"
        );
    }
    assert!(same_origin(
        &headers(&[host, ("sec-fetch-site", "same-origin")]),
        &config
    ));
    assert!(!same_origin(
        &headers(&[host, ("sec-fetch-site", "cross-site")]),
        &config
    ));
    assert!(!same_origin(&headers(&[host]), &config));
}

#[test]
fn the_cookie_is_http_only_lax_and_secure_over_tls() {
    let config = AccountsConfig::default();
    let plain = cookie(&headers(&[]), &config, "ts_x", 60);
    assert_eq!(
        plain,
        "tally_session=ts_x; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
    );
    let proxied = cookie(
        &headers(&[("x-forwarded-proto", "https")]),
        &config,
        "ts_x",
        60,
    );
    assert!(proxied.to_str().unwrap().ends_with("; Secure"));
    let forced = AccountsConfig {
        cookie_secure: Some(false),
        ..AccountsConfig::default()
    };
    let never = cookie(
        &headers(&[("x-forwarded-proto", "https")]),
        &forced,
        "ts_x",
        60,
    );
    assert!(!never.to_str().unwrap().contains("Secure"));
}

#[test]
fn the_login_body_never_shows_its_password() {
    let body: LoginBody =
        serde_json::from_str(r#"{"email": "a@b.c", "password": "hunter2-secret"}"#).unwrap();
    let shown = format!("{body:?}");
    assert!(
        shown.contains("a@b.c") && !shown.contains("hunter2"),
        "{shown}"
    );
}
