//! Field names of a request and what they resolve to (issue 14): `$name` is
//! a built-in field, `properties.name` a property, a bare name the built-in
//! field of that name if there is one, else the property. A bare name that is
//! both — the app sent a property of a built-in field's name, as recorded in
//! `property_keys` — is refused (400 `ambiguous_field`, with a hint), so a
//! built-in field and a property never shadow each other silently; every
//! answer lists what each name resolved to (`"fields"`), added after the
//! answer cache because two requests may reach one statement by different
//! names (`country`, `$country`).

use crate::sql::{bare_builtins, bucket_names, resolved, BUILTIN, COLUMNS};
use crate::{AppState, QueryError};
use axum::body::Bytes;

/// The field names of a request (filters, dimensions, breakdowns, metric
/// properties), the built-in names bare ones may mean, and whether properties
/// are allowed at all (session queries: no).
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// Names as the request wrote them.
    pub names: Vec<&'a str>,
    /// Built-in fields a bare name may mean.
    pub builtins: Vec<&'static str>,
    /// Whether names may be properties.
    pub properties: bool,
}

impl Fields<'_> {
    /// Refuses a bare name that is both a built-in field and a property of the
    /// app (`property_keys`, read once per app and 30 s: a property of a
    /// built-in name takes up to that long to make the bare name ambiguous).
    pub async fn check(&self, state: &AppState, app_id: &str) -> Result<(), QueryError> {
        if !self.properties {
            return Ok(());
        }
        let bare = bare_builtins(&self.names, &self.builtins);
        if bare.is_empty() {
            return Ok(());
        }
        // The app's property names that are built-in names too: one small read
        // per app and 30 s (cached), not one per request — dashboards poll.
        let names: Vec<&str> = COLUMNS.iter().copied().chain(bucket_names()).collect();
        let (clashing, _) = state
            .clashing_properties
            .get_or_compute(app_id, || state.events.property_names_among(app_id, &names))
            .await?;
        match bare
            .into_iter()
            .find(|name| clashing.iter().any(|c| c == name))
        {
            Some(name) => Err(QueryError::AmbiguousField(name.to_owned())),
            None => Ok(()),
        }
    }

    /// `"fields": {name: resolved}` as JSON text (`{}` when none).
    pub fn resolved_json(&self) -> String {
        let map: std::collections::BTreeMap<&str, String> = self
            .names
            .iter()
            .map(|name| {
                let resolved = if self.properties {
                    resolved(name, &self.builtins)
                } else {
                    format!("{BUILTIN}{}", name.trim_start_matches(BUILTIN))
                };
                (*name, resolved)
            })
            .collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// `answer` with `members` (name, JSON text) added first (answers are
/// non-empty JSON objects; anything else is returned as it is).
pub fn with_members(answer: &Bytes, members: &[(&str, String)]) -> Bytes {
    match answer.strip_prefix(b"{") {
        Some(rest) if rest.first().is_some_and(|b| *b != b'}') && !members.is_empty() => {
            let mut out = Vec::with_capacity(answer.len() + 64);
            out.push(b'{');
            for (name, json) in members {
                out.extend_from_slice(serde_json::Value::from(*name).to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(json.as_bytes());
                out.push(b',');
            }
            out.extend_from_slice(rest);
            Bytes::from(out)
        }
        _ => answer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_go_first_and_keep_the_json_valid() {
        let answer = Bytes::from_static(br#"{"app_id":"a","results":[]}"#);
        let out = with_members(
            &answer,
            &[
                ("fields", r#"{"x":"$x"}"#.into()),
                ("time_zone", "\"UTC\"".into()),
            ],
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["fields"]["x"], "$x");
        assert_eq!(
            (value["time_zone"].as_str(), value["app_id"].as_str()),
            (Some("UTC"), Some("a"))
        );
        assert_eq!(
            with_members(&Bytes::from_static(b"{}"), &[("a", "1".into())]),
            Bytes::from_static(b"{}")
        );
    }
}
