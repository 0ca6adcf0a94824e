//! A minimal browser for the accounts tests: keeps the session cookie the
//! service sets, sends the service's own `Origin` on state changes (as a
//! browser does for a same-origin page), and records the last answer's headers.

use serde_json::Value;
use std::sync::Mutex;

/// The `Origin` header's name.
pub const ORIGIN_HEADER: &str = "origin";

/// One browser profile (one cookie jar).
#[derive(Debug)]
pub struct Browser {
    /// The HTTP client (no cookie store of its own).
    pub http: reqwest::Client,
    base: String,
    cookie: Mutex<Option<String>>,
    last: Mutex<reqwest::header::HeaderMap>,
}

impl Browser {
    /// A profile for the service at `base`.
    pub fn new(base: &str) -> Self {
        Browser {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            cookie: Mutex::new(None),
            last: Mutex::new(Default::default()),
        }
    }

    /// `POST /api/v1/auth/login` from the service's origin.
    pub async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        let body = serde_json::json!({"email": email, "password": password});
        self.send("POST", "/api/v1/auth/login", Some(body)).await
    }

    /// The `Cookie` header value to send (empty without a session).
    pub fn cookie(&self) -> String {
        self.cookie.lock().unwrap().clone().unwrap_or_default()
    }

    /// The last answer's `Set-Cookie`.
    pub fn last_set_cookie(&self) -> String {
        self.last_header("set-cookie")
    }

    /// A header of the last answer.
    pub fn last_header(&self, name: &str) -> String {
        let last = self.last.lock().unwrap();
        last.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// A GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    /// A request from the service's own origin.
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let origin = self.base.clone();
        self.send_from(Some(&origin), method, path, body).await
    }

    /// A request with the given `Origin` (none: a client that sends none).
    pub async fn send_from(
        &self,
        origin: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(origin) = origin {
            request = request.header(ORIGIN_HEADER, origin);
        }
        let cookie = self.cookie();
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if let Some(set) = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            let pair = set.split(';').next().unwrap_or_default().to_owned();
            *self.cookie.lock().unwrap() = pair.ends_with('=').then(String::new).or(Some(pair));
        }
        *self.last.lock().unwrap() = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The status of opening `app`'s live stream with the cookie (as an
    /// `EventSource` would); the stream itself is dropped.
    pub async fn stream_status(&self, app: &str) -> u16 {
        let url = format!("{}/api/v1/analytics/{app}/live/stream", self.base);
        let response = self
            .http
            .get(url)
            .header("cookie", self.cookie())
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }
}
