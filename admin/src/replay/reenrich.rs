//! Re-enrichment during a replay: a corrected classification reaching history.
//!
//! What the topic carries decides what can be derived again
//! ([`tally_schemas::Envelope`]):
//! * **user agent** → browser, version, OS, device type and the bot flag:
//!   exactly, the message holds the agent the gateway classified
//!   (`--reenrich`, with `--bot-marker TEXT` for new bot rules);
//! * **page fields** (URL host/path, referrer host, UTM) → from the event's
//!   properties, exactly (re-derived whenever re-enrichment is on);
//! * **geo** (country, region, city) → only from the *anonymised* IP the
//!   message holds (last octet / last 80 bits zeroed, or none in `drop`
//!   mode), so a new database gives the location of that network, which is
//!   usually the same country and often a coarser city (`--geoip-db PATH`);
//! * not re-derivable: anything from the request that is not in the message
//!   (the full client IP, other headers), and the server's receive time.

use super::ReplayError;
use ingest_gateway::enrich::{page_fields, Agents, Geo};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tally_schemas::{Enrichment, Envelope};

/// What a replay derives again (stored with the replay as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReenrichOptions {
    /// Re-classify user agents and re-derive page fields.
    #[serde(default)]
    pub agents: bool,
    /// Extra literal bot markers (imply `agents`).
    #[serde(default)]
    pub bot_markers: Vec<String>,
    /// Geo-IP databases for a new geo lookup of the anonymised IP.
    #[serde(default)]
    pub geoip_dbs: Vec<PathBuf>,
}

impl ReenrichOptions {
    /// Whether anything is derived again.
    pub fn any(&self) -> bool {
        self.agents || !self.bot_markers.is_empty() || !self.geoip_dbs.is_empty()
    }

    /// The catalog's text ("" when nothing is derived again).
    pub fn to_text(&self) -> String {
        if self.any() {
            serde_json::to_string(self).unwrap_or_default()
        } else {
            String::new()
        }
    }

    /// Reads the catalog's text back.
    pub fn parse_text(text: &str) -> Result<Self, ReplayError> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(text).map_err(|e| {
            ReplayError::State(format!("stored re-enrichment options unreadable: {e}"))
        })
    }

    /// The re-enricher, or `None` when nothing is derived again.
    pub fn build(&self) -> Result<Option<Arc<Reenricher>>, ReplayError> {
        if !self.any() {
            return Ok(None);
        }
        let geo = if self.geoip_dbs.is_empty() {
            None
        } else {
            let (geo, warnings) = Geo::open(&self.geoip_dbs);
            if let Some(warning) = warnings.first() {
                return Err(ReplayError::Usage(warning.clone()));
            }
            Some(geo)
        };
        let agents = (self.agents || !self.bot_markers.is_empty())
            .then(|| Agents::with_extra_bots(&self.bot_markers));
        Ok(Some(Arc::new(Reenricher { agents, geo })))
    }
}

/// Derives enrichment again from a message's own fields.
#[derive(Debug)]
pub struct Reenricher {
    agents: Option<Agents>,
    geo: Option<Geo>,
}

impl stream_aggregator::message::Reenrich for Reenricher {
    fn reenrich(&self, envelope: &mut Envelope) {
        let old = &envelope.enrichment;
        let mut fresh = Enrichment {
            country: old.country.clone(),
            region: old.region.clone(),
            city: old.city.clone(),
            ..Enrichment::default()
        };
        if let Some(agents) = &self.agents {
            agents.classify(
                envelope.user_agent.as_deref().unwrap_or_default(),
                &mut fresh,
            );
            page_fields(&envelope.properties, &mut fresh);
        } else {
            let geo = (fresh.country, fresh.region, fresh.city);
            fresh = Enrichment {
                country: geo.0,
                region: geo.1,
                city: geo.2,
                ..old.clone()
            };
        }
        if let Some(geo) = &self.geo {
            let ip = envelope
                .ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            (fresh.country, fresh.region, fresh.city) =
                ip.map(|ip| geo.lookup(ip)).unwrap_or_default();
        }
        envelope.enrichment = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_aggregator::message::Reenrich;

    fn envelope(agent: &str) -> Envelope {
        let mut properties = serde_json::Map::new();
        properties.insert(
            "url".into(),
            "https://shop.test/cart?utm_source=mail".into(),
        );
        Envelope {
            event_id: "e1".into(),
            app_id: "a".into(),
            name: "page_view".into(),
            distinct_id: "u".into(),
            user_id: None,
            anonymous_id: Some("u".into()),
            timestamp_ms: 1,
            received_at_ms: 1,
            sent_at_ms: None,
            ip: Some("192.0.2.0".into()),
            user_agent: Some(agent.into()),
            properties,
            enrichment: Enrichment {
                country: "DE".into(),
                browser: "stale".into(),
                ..Enrichment::default()
            },
            retention_days: 0,
        }
    }

    #[test]
    fn options_round_trip_through_the_catalog_text() {
        assert_eq!(ReenrichOptions::default().to_text(), "");
        let options = ReenrichOptions {
            agents: true,
            bot_markers: vec!["NightlyCheck".into()],
            geoip_dbs: vec![],
        };
        assert_eq!(
            ReenrichOptions::parse_text(&options.to_text()).unwrap(),
            options
        );
        assert!(ReenrichOptions::default().build().unwrap().is_none());
    }

    #[test]
    fn agents_and_page_fields_are_derived_again_and_geo_kept() {
        let options = ReenrichOptions {
            agents: false,
            bot_markers: vec!["NightlyCheck".into()],
            geoip_dbs: vec![],
        };
        let reenricher = options.build().unwrap().unwrap();
        let mut bot = envelope("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 NightlyCheck/2");
        reenricher.reenrich(&mut bot);
        assert!(bot.enrichment.is_bot);
        assert_eq!(bot.enrichment.country, "DE", "geo kept without a database");
        assert_eq!(bot.enrichment.url_host, "shop.test");
        assert_eq!(bot.enrichment.utm_source, "mail");
        let mut person = envelope("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36");
        reenricher.reenrich(&mut person);
        assert!(!person.enrichment.is_bot);
        assert_eq!(person.enrichment.browser, "Chrome");
    }

    #[test]
    fn a_missing_geo_database_is_a_usage_error() {
        let options = ReenrichOptions {
            geoip_dbs: vec!["/nonexistent/geo.mmdb".into()],
            ..ReenrichOptions::default()
        };
        assert!(matches!(options.build(), Err(ReplayError::Usage(_))));
    }
}
