//! The traffic model: deterministic (from a seed) streams of realistic events.
//!
//! * Apps: `apps` tenants with Zipf(1.2) weights, so app 0 is much hotter than the rest.
//! * Visitors: per app a pool of `visitors` with Zipf(1.0) popularity; 30 % are
//!   identified (`user_id`), the rest anonymous (`anonymous_id`).
//! * Sessions: a visitor's journey — a landing `page_view` with referrer/UTM,
//!   more page views (geometric), the funnel `page_view → add_to_cart → purchase`
//!   with [`P_CART`] and [`P_PURCHASE`] drop-offs, custom events — advanced one
//!   step at a time after an exponential think time, so sessions interleave.
//! * Clients: browser and bot user agents (bots are 5 % of sessions and only
//!   view pages), IPs from several countries (sent as `X-Forwarded-For`).
//!
//! Each batch holds events of one client (as a browser SDK sends them).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

/// Probability that a non-bot session adds to cart.
pub const P_CART: f64 = 0.25;
/// Probability that a session that added to cart purchases.
pub const P_PURCHASE: f64 = 0.40;
/// Share of sessions that are bots.
pub const P_BOT: f64 = 0.05;

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];
const BOTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
];
/// (country, first octets of addresses used for it) — documentation/test ranges are avoided
/// on purpose so that geo-IP lookups have something to find.
const COUNTRIES: &[(&str, [u8; 2])] = &[
    ("US", [8, 8]),
    ("DE", [85, 214]),
    ("FR", [90, 84]),
    ("GB", [81, 2]),
    ("BR", [177, 71]),
    ("IN", [49, 36]),
    ("JP", [126, 0]),
];
const PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/docs",
    "/blog/launch",
    "/features",
    "/about",
    "/signup",
];
const REFERRERS: &[&str] = &[
    "",
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "https://twitter.com/",
    "https://www.bing.com/",
];
const CAMPAIGNS: &[(&str, &str, &str)] = &[
    ("google", "cpc", "black_friday"),
    ("newsletter", "email", "november"),
    ("twitter", "social", "launch"),
];
const CUSTOM: &[&str] = &["signup", "video_play", "search"];

/// Zipf sampler over `0..n` by inverse CDF.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Weights `1 / (k+1)^s` for `k in 0..n` (n ≥ 1).
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf = Vec::with_capacity(n.max(1));
        for k in 0..n.max(1) {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Zipf { cdf }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut StdRng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// One generated event, before sending.
#[derive(Debug, Clone, PartialEq)]
pub struct GenEvent {
    /// Client event id (unique per run: `{run}-{n}`).
    pub event_id: String,
    /// Event name.
    pub name: String,
    /// Identified user id, if any.
    pub user_id: Option<String>,
    /// Anonymous id, if any.
    pub anonymous_id: Option<String>,
    /// Properties.
    pub properties: Map<String, Value>,
}

impl GenEvent {
    /// The identity the pipeline counts (`user_id`, else `anonymous_id`).
    pub fn distinct_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or_default()
    }
}

/// Events of one client, sent as one request.
#[derive(Debug, Clone)]
pub struct GenBatch {
    /// App.
    pub app_id: String,
    /// `User-Agent` of the client.
    pub user_agent: &'static str,
    /// Client IP (sent as `X-Forwarded-For`).
    pub ip: String,
    /// Whether the client is a bot.
    pub bot: bool,
    /// Country of the client IP (ISO code).
    pub country: &'static str,
    /// Events in order.
    pub events: Vec<GenEvent>,
}

#[derive(Debug, Clone)]
struct Session {
    app: usize,
    visitor: usize,
    bot: bool,
    ip: String,
    country: &'static str,
    user_agent: &'static str,
    /// Remaining journey, next step first.
    steps: Vec<(String, Map<String, Value>)>,
    next_at_ms: i64,
}

/// The generator state.
#[derive(Debug)]
pub struct Model {
    rng: StdRng,
    run_id: String,
    apps: usize,
    app_zipf: Zipf,
    visitor_zipf: Zipf,
    /// Open sessions by (next step time, arrival number): the next ready one
    /// is the first entry (a lookup that stays cheap at any rate).
    sessions: std::collections::BTreeMap<(i64, u64), Session>,
    arrivals: u64,
    /// Server batches being filled, per app (see [`Model::next_server_batch`]).
    filling: std::collections::HashMap<usize, GenBatch>,
    target_sessions: usize,
    next_event: u64,
    mean_think_ms: f64,
}

/// Model settings.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Seed: same seed, same events.
    pub seed: u64,
    /// Prefix of event ids and app ids (keeps runs apart).
    pub run_id: String,
    /// Number of apps.
    pub apps: usize,
    /// Visitors per app.
    pub visitors: usize,
    /// Sessions open at once.
    pub concurrent_sessions: usize,
    /// Mean think time between a session's events.
    pub mean_think_ms: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            seed: 1,
            run_id: "lg".into(),
            apps: 20,
            visitors: 20_000,
            concurrent_sessions: 2_000,
            mean_think_ms: 5_000.0,
        }
    }
}

impl Model {
    /// A generator.
    pub fn new(config: &ModelConfig) -> Self {
        Model {
            rng: StdRng::seed_from_u64(config.seed),
            run_id: config.run_id.clone(),
            apps: config.apps.max(1),
            app_zipf: Zipf::new(config.apps.max(1), 1.2),
            visitor_zipf: Zipf::new(config.visitors.max(1), 1.0),
            sessions: std::collections::BTreeMap::new(),
            arrivals: 0,
            filling: std::collections::HashMap::new(),
            target_sessions: config.concurrent_sessions.max(1),
            next_event: 0,
            mean_think_ms: config.mean_think_ms,
        }
    }

    /// App id of app number `index`.
    pub fn app_id(&self, index: usize) -> String {
        format!("{}-app-{index:02}", self.run_id)
    }

    /// Number of apps.
    pub fn apps(&self) -> usize {
        self.apps
    }

    fn new_session(&mut self, now_ms: i64) -> Session {
        let rng = &mut self.rng;
        let app = self.app_zipf.sample(rng);
        let visitor = self.visitor_zipf.sample(rng);
        let bot = rng.random_bool(P_BOT);
        let (country, octets) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
        let ip = format!(
            "{}.{}.{}.{}",
            octets[0],
            octets[1],
            rng.random_range(0..256),
            rng.random_range(1..255)
        );
        let user_agent = if bot {
            BOTS[rng.random_range(0..BOTS.len())]
        } else {
            BROWSERS[rng.random_range(0..BROWSERS.len())]
        };
        let mut steps = Vec::new();
        let mut landing = Map::new();
        landing.insert(
            "url".into(),
            json!(format!(
                "https://shop.example{}",
                PAGES[rng.random_range(0..PAGES.len())]
            )),
        );
        let referrer = REFERRERS[rng.random_range(0..REFERRERS.len())];
        if !referrer.is_empty() {
            landing.insert("referrer".into(), json!(referrer));
        }
        if rng.random_bool(0.2) {
            let (source, medium, campaign) = CAMPAIGNS[rng.random_range(0..CAMPAIGNS.len())];
            landing.insert("utm_source".into(), json!(source));
            landing.insert("utm_medium".into(), json!(medium));
            landing.insert("utm_campaign".into(), json!(campaign));
        }
        steps.push(("page_view".to_owned(), landing));
        while rng.random_bool(0.55) && steps.len() < 12 {
            let mut page = Map::new();
            page.insert(
                "url".into(),
                json!(format!(
                    "https://shop.example{}",
                    PAGES[rng.random_range(0..PAGES.len())]
                )),
            );
            steps.push(("page_view".to_owned(), page));
        }
        if !bot {
            if rng.random_bool(0.15) {
                steps.push((
                    CUSTOM[rng.random_range(0..CUSTOM.len())].to_owned(),
                    Map::new(),
                ));
            }
            if rng.random_bool(P_CART) {
                let mut cart = Map::new();
                cart.insert(
                    "sku".into(),
                    json!(format!("sku-{}", rng.random_range(0..50))),
                );
                cart.insert("price".into(), json!(rng.random_range(5..200)));
                steps.push(("add_to_cart".to_owned(), cart));
                if rng.random_bool(P_PURCHASE) {
                    let mut purchase = Map::new();
                    purchase.insert("revenue".into(), json!(rng.random_range(5..400)));
                    steps.push(("purchase".to_owned(), purchase));
                }
            }
        }
        steps.reverse();
        Session {
            app,
            visitor,
            bot,
            ip,
            country,
            user_agent,
            steps,
            next_at_ms: now_ms,
        }
    }

    /// The next client batch at `now_ms`: up to `max_events` events of one ready
    /// session (several steps are taken at once when the client is behind).
    pub fn next_batch(&mut self, now_ms: i64, max_events: usize) -> GenBatch {
        self.next_of_session(now_ms, max_events).1
    }

    /// [`Model::next_batch`], with the app number of the batch.
    fn next_of_session(&mut self, now_ms: i64, max_events: usize) -> (usize, GenBatch) {
        while self.sessions.len() < self.target_sessions {
            let session = self.new_session(now_ms);
            self.open(session);
        }
        let ready = self
            .sessions
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= now_ms);
        let mut session = match ready.then(|| self.sessions.pop_first()).flatten() {
            Some((_, session)) => session,
            // Nobody is ready: a new visitor arrives.
            None => self.new_session(now_ms),
        };
        let take = self.rng.random_range(1..=max_events.max(1));
        let think = -self.mean_think_ms * (1.0 - self.rng.random::<f64>()).ln();
        let mut events = Vec::new();
        let identified = session.visitor % 10 < 3;
        let (user_id, anonymous_id) = if identified {
            (Some(format!("user-{}", session.visitor)), None)
        } else {
            (None, Some(format!("anon-{}", session.visitor)))
        };
        while events.len() < take {
            let Some((name, properties)) = session.steps.pop() else {
                break;
            };
            events.push(GenEvent {
                event_id: format!("{}-{}", self.run_id, self.next_event),
                name,
                user_id: user_id.clone(),
                anonymous_id: anonymous_id.clone(),
                properties,
            });
            self.next_event += 1;
        }
        session.next_at_ms = now_ms + think as i64;
        let batch = GenBatch {
            app_id: format!("{}-app-{:02}", self.run_id, session.app),
            user_agent: session.user_agent,
            ip: session.ip.clone(),
            bot: session.bot,
            country: session.country,
            events,
        };
        let app = session.app;
        if !session.steps.is_empty() {
            self.open(session);
        }
        (app, batch)
    }

    fn open(&mut self, session: Session) {
        self.arrivals += 1;
        self.sessions
            .insert((session.next_at_ms, self.arrivals), session);
    }

    /// A batch of exactly `size` events from many clients of one app
    /// (server-side SDK style): client batches are gathered per app, and the
    /// first app to reach `size` is sent (nothing generated is thrown away;
    /// the rest wait for later calls).
    pub fn next_server_batch(&mut self, now_ms: i64, size: usize) -> GenBatch {
        let size = size.max(1);
        loop {
            let (app, batch) = self.next_of_session(now_ms, size);
            let filling = self.filling.entry(app).or_insert_with(|| GenBatch {
                events: Vec::with_capacity(size),
                app_id: batch.app_id.clone(),
                user_agent: batch.user_agent,
                ip: batch.ip.clone(),
                bot: batch.bot,
                country: batch.country,
            });
            filling.events.extend(batch.events);
            if filling.events.len() < size {
                continue;
            }
            let Some(mut full) = self.filling.remove(&app) else {
                continue;
            };
            let rest = full.events.split_off(size);
            if !rest.is_empty() {
                let waiting = GenBatch {
                    events: rest,
                    app_id: full.app_id.clone(),
                    user_agent: full.user_agent,
                    ip: full.ip.clone(),
                    bot: full.bot,
                    country: full.country,
                };
                self.filling.insert(app, waiting);
            }
            return full;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn server_batches_are_full_single_app_and_never_repeat_an_event() {
        let mut model = Model::new(&ModelConfig {
            seed: 3,
            ..ModelConfig::default()
        });
        let mut seen = HashSet::new();
        let mut apps = HashSet::new();
        for i in 0..400 {
            let batch = model.next_server_batch(1_000 * i, 50);
            assert_eq!(batch.events.len(), 50);
            apps.insert(batch.app_id.clone());
            for event in &batch.events {
                assert!(seen.insert(event.event_id.clone()), "{}", event.event_id);
            }
        }
        assert!(apps.len() > 1, "several apps send");
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let run = || {
            let mut model = Model::new(&ModelConfig::default());
            (0..200)
                .flat_map(|i| model.next_batch(i * 100, 5).events)
                .map(|e| (e.distinct_id().to_owned(), e.event_id, e.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
