//! What PostHog's SDKs fetch besides capture, answered with an empty, valid
//! configuration so an unmodified SDK starts without errors and sends its
//! events (pure; served by `router.rs`).
//!
//! | request | who | answer |
//! |---|---|---|
//! | `GET /array/{token}/config` | posthog-js (remote config, JSON) | [`remote_config`] |
//! | `GET /array/{token}/config.js` | posthog-js built with its script loader | [`remote_config_js`]: stores the same object in `window._POSTHOG_REMOTE_CONFIG[token]` |
//! | `POST`/`GET /flags/` (`?v=2`) | posthog-js, posthog-node | [`flags`]: no flags |
//! | `POST`/`GET /decide/` | older SDKs | [`decide`]: no flags, nothing enabled |
//!
//! Tally has no feature flags, session recording, surveys or site apps, so
//! every such switch is off; `surveys` and `productTours` are left out of the
//! remote config (posthog-js loads its surveys bundle even for `false`, and
//! not at all without the key). `supportedCompression` lists what `wrapping.rs`
//! undoes: posthog-js then gzips its capture bodies. The token is not checked
//! here (the answer is the same for every project and reveals nothing); the
//! capture routes check it.

use serde_json::{json, Value};

/// Compression schemes posthog-js may use for capture bodies, best first.
pub const SUPPORTED_COMPRESSION: [&str; 2] = ["gzip-js", "base64"];

/// The remote configuration of project `token`: everything optional off.
pub fn remote_config(token: &str) -> Value {
    json!({
        "token": token,
        "supportedCompression": SUPPORTED_COMPRESSION,
        "hasFeatureFlags": false,
        "captureDeadClicks": false,
        "capturePerformance": false,
        "autocapture_opt_out": false,
        "autocaptureExceptions": false,
        "elementsChainAsString": true,
        "sessionRecording": false,
        "heatmaps": false,
        "defaultIdentifiedOnly": true,
        "siteApps": [],
    })
}

/// The script form of [`remote_config`], as posthog-js's loader expects it.
pub fn remote_config_js(token: &str) -> String {
    let entry = json!({ "config": remote_config(token), "siteApps": [] });
    // JSON is valid JavaScript; the token is a JSON string, never code.
    format!(
        "(function(){{var w=window;w._POSTHOG_REMOTE_CONFIG=w._POSTHOG_REMOTE_CONFIG||{{}};\
         w._POSTHOG_REMOTE_CONFIG[{token}]={entry};}})();\n",
        token = Value::String(token.to_owned()),
    )
}

/// `/flags/` (v2): no flags for anyone.
pub fn flags() -> Value {
    json!({
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": false,
        "quotaLimited": [],
    })
}

/// `/decide/`: [`flags`] in the older shape, with the configuration switches.
pub fn decide() -> Value {
    json!({
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": false,
        "supportedCompression": SUPPORTED_COMPRESSION,
        "config": { "enable_collect_everything": true },
        "toolbarParams": {},
        "isAuthenticated": false,
        "sessionRecording": false,
        "capturePerformance": false,
        "autocapture_opt_out": false,
        "autocaptureExceptions": false,
        "heatmaps": false,
        "surveys": false,
        "siteApps": [],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_script_stores_the_json_config_under_the_token() {
        let token = r#"ph"</script>\u2028"#;
        let script = remote_config_js(token);
        let start = script.find("]=").unwrap() + 2;
        let end = script.rfind(";})();").unwrap();
        let entry: Value = serde_json::from_str(&script[start..end]).unwrap();
        assert_eq!(entry["config"], remote_config(token));
        assert!(script.contains(&serde_json::to_string(token).unwrap()));
    }

    #[test]
    fn nothing_is_switched_on() {
        let config = remote_config("t");
        for key in ["hasFeatureFlags", "sessionRecording", "heatmaps"] {
            assert_eq!(config[key], false, "{key}");
        }
        assert!(config.get("surveys").is_none());
        assert_eq!(flags()["flags"], json!({}));
        assert_eq!(decide()["featureFlags"], json!({}));
    }
}
