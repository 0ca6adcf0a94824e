//! The gateway's body decoder from raw bytes to envelopes: gzip (capped),
//! UTF-8 and surrogate repair, batch parsing, per-event validation and
//! enrichment. Invariants: no panic; every event is either accepted or rejected
//! exactly once; accepted envelopes survive an encode/decode round trip.
//! The first byte selects gzip (bit 0), the API flavour (bits 1–4: native,
//! Segment batch and single message, PostHog, Plausible, Amplitude, Mixpanel
//! track and engage, Umami, Snowplow POST and pixel — whose body is read as
//! its query string), the retention class (bit 5); each body shape is decoded
//! as its route decodes it (`intake::decode`). For APIs whose SDKs wrap
//! bodies, the vendor wrapping is undone first (`wrapping::unwrap`: gzip by
//! magic bytes, form `data=`, base64), bits 6 and 7 choosing
//! `compression=base64` and a form content type.
#![no_main]

use ingest_gateway::decode;
use ingest_gateway::enrich::Agents;
use ingest_gateway::intake;
use ingest_gateway::mixpanel::Endpoint;
use ingest_gateway::snowplow;
use ingest_gateway::validate::{prepare, Api, Limits, RequestContext};
use ingest_gateway::wrapping;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static AGENTS: LazyLock<Agents> = LazyLock::new(Agents::default);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let limit = 64 * 1024;
    let inflated;
    let body = if mode & 1 == 1 {
        match decode::gunzip(body, limit) {
            Ok(bytes) => {
                assert!(bytes.len() <= limit);
                inflated = bytes;
                &inflated[..]
            }
            Err(_) => return,
        }
    } else {
        body
    };
    let api = match (mode >> 1 & 15) % 11 {
        0 => Api::Native,
        1 => Api::Segment(None),
        2 => Api::Segment(Some("track")),
        3 => Api::PostHog,
        4 => Api::Plausible,
        5 => Api::Amplitude,
        6 => Api::Mixpanel(Endpoint::Track),
        7 => Api::Mixpanel(Endpoint::Engage),
        8 => Api::Umami,
        9 => Api::Snowplow(snowplow::Endpoint::Post),
        _ => Api::Snowplow(snowplow::Endpoint::Pixel),
    };
    let pixel;
    let body = if api == Api::Snowplow(snowplow::Endpoint::Pixel) {
        // The pixel's event is its query string.
        pixel = snowplow::query_to_json(&String::from_utf8_lossy(body));
        pixel.as_bytes()
    } else {
        body
    };
    let unwrapped;
    let body = if api.wrapped_bodies() {
        let query = (mode >> 6 & 1 == 1).then_some("compression=base64");
        let content_type = (mode >> 7 & 1 == 1).then_some("application/x-www-form-urlencoded");
        match wrapping::unwrap(body.to_vec(), query, content_type, limit) {
            Ok(bytes) => {
                assert!(bytes.len() <= limit.max(body.len()));
                unwrapped = bytes;
                &unwrapped[..]
            }
            Err(_) => return,
        }
    } else {
        body
    };
    let Ok(text) = decode::to_text(body) else {
        return;
    };
    let Ok(batch) = intake::decode(&text, api) else {
        return;
    };
    let context = RequestContext {
        received_at_ms: 1_780_000_000_000,
        ip: Some("192.0.2.0".into()),
        user_agent: None,
        enrichment: Default::default(),
        // The app's retention class (0: the installation's default) or an override.
        retention_days: u16::from(mode >> 5 & 1) * 30,
    };
    let prepared = prepare(
        "fuzz",
        &batch.events,
        batch.sent_at,
        batch.api,
        &context,
        &Limits::default(),
        &AGENTS,
    );
    assert_eq!(
        prepared.envelopes.len() + prepared.rejected.len(),
        batch.events.len()
    );
    for envelope in &prepared.envelopes {
        let decoded = tally_schemas::Envelope::decode(&envelope.encode()).expect("round trip");
        assert_eq!(&decoded, envelope);
    }
});
