//! Generated person journeys and their brute-force identity model (issue 16).
//!
//! Each journey is one human: an anonymous visitor browsing, who may sign up
//! (an `identify` carrying the anonymous id and traits), come back on a second
//! device (another anonymous id, identified later), change traits (a later
//! identify; sometimes a *stale* identify with an older time sent after it),
//! or have a second history of their own (another user id with its own
//! anonymous past) aliased into the first (a merge of two persons). Part of
//! the identity events are *late*: sent only after the events they
//! re-attribute are stored. [`Model`] computes, by brute force over every
//! event, who is one person (connected components of the links) and each
//! person's traits (per trait, the latest identify's value).

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// One generated event, as brute force sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Distinct id (the user id if any, else the anonymous id).
    pub distinct_id: String,
    /// Event name.
    pub name: String,
    /// Event time, epoch ms.
    pub ts_ms: i64,
    /// The id it links to `distinct_id` (identify's anonymous id, alias's previous id).
    pub links: Option<String>,
    /// Traits it sets (identify).
    pub traits: Vec<(String, String)>,
    /// The event as the native API takes it.
    pub json: Value,
}

/// Generated journeys: what to send first, what to send late, and the model.
#[derive(Debug, Clone)]
pub struct Journeys {
    /// Sent first, shuffled.
    pub early: Vec<Event>,
    /// Sent once `early` is stored, shuffled.
    pub late: Vec<Event>,
}

/// A small deterministic generator (no dependency on a seedable RNG's
/// algorithm), shared by the tests that generate their data.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn event(name: &str, user: Option<&str>, anonymous: Option<&str>, ts_ms: i64) -> Event {
    let distinct = user.or(anonymous).unwrap_or_default().to_owned();
    let mut json =
        json!({"name": name, "timestamp": ts_ms, "properties": {"path": format!("/{name}")}});
    if let Some(user) = user {
        json["user_id"] = json!(user);
    }
    if let Some(anonymous) = anonymous {
        json["anonymous_id"] = json!(anonymous);
    }
    Event {
        distinct_id: distinct,
        name: name.to_owned(),
        ts_ms,
        links: None,
        traits: Vec::new(),
        json,
    }
}

fn identify(user: &str, anonymous: Option<&str>, traits: &[(&str, &str)], ts_ms: i64) -> Event {
    let mut e = event("identify", Some(user), anonymous, ts_ms);
    let map: serde_json::Map<String, Value> = traits
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    e.json["properties"] = json!({"traits": map});
    e.links = anonymous.map(str::to_owned);
    e.traits = traits
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    e
}

fn alias(user: &str, previous: &str, ts_ms: i64) -> Event {
    let mut e = event("alias", Some(user), None, ts_ms);
    e.json["properties"] = json!({"previous_id": previous});
    e.links = Some(previous.to_owned());
    e
}

/// `n` journeys of ids `{tag}-…`, their events within the 10 days before `now`.
pub fn generate(tag: &str, n: usize, seed: u64, now: i64) -> Journeys {
    let mut rng = Lcg(seed);
    let (mut early, mut late) = (Vec::new(), Vec::new());
    let start = now - 10 * DAY;
    let at = |rng: &mut Lcg, from: i64, span: i64| {
        (from + rng.below(span.max(1) as u64) as i64).min(now - 1)
    };
    for k in 0..n {
        let (anon, user) = (format!("{tag}-a{k}"), format!("{tag}-u{k}"));
        let first = at(&mut rng, start, 3 * DAY);
        for i in 0..1 + rng.below(4) {
            early.push(event(
                "page_view",
                None,
                Some(&anon),
                first + i as i64 * HOUR,
            ));
        }
        if !rng.chance(70) {
            continue;
        }
        let signup = first + 5 * HOUR + rng.below(HOUR as u64) as i64;
        let plan = ["free", "trial"][rng.below(2) as usize];
        let id = identify(
            &user,
            Some(&anon),
            &[("plan", plan), ("cohort", &format!("c{}", k % 3))],
            signup,
        );
        if rng.chance(30) {
            late.push(id)
        } else {
            early.push(id)
        }
        for i in 0..rng.below(5) {
            let name = ["purchase", "page_view", "signup_done"][rng.below(3) as usize];
            early.push(event(
                name,
                Some(&user),
                Some(&anon),
                signup + (1 + i as i64) * 2 * HOUR,
            ));
        }
        if rng.chance(30) {
            let device = format!("{tag}-b{k}");
            let when = at(&mut rng, signup, 2 * DAY);
            for i in 0..1 + rng.below(3) {
                early.push(event(
                    "page_view",
                    None,
                    Some(&device),
                    when + i as i64 * HOUR,
                ));
            }
            let link = identify(&user, Some(&device), &[], when + 4 * HOUR);
            if rng.chance(50) {
                late.push(link)
            } else {
                early.push(link)
            }
        }
        if rng.chance(40) {
            let upgrade = at(&mut rng, signup + DAY, 3 * DAY);
            early.push(identify(&user, None, &[("plan", "pro")], upgrade));
            if rng.chance(50) {
                late.push(identify(&user, None, &[("plan", "stale")], signup - HOUR));
            }
        }
        if rng.chance(25) {
            let (other_anon, other) = (format!("{tag}-c{k}"), format!("{tag}-v{k}"));
            let when = at(&mut rng, start, 4 * DAY);
            early.push(event("page_view", None, Some(&other_anon), when));
            early.push(identify(
                &other,
                Some(&other_anon),
                &[("plan", "team"), ("seats", "5")],
                when + HOUR,
            ));
            early.push(event(
                "purchase",
                Some(&other),
                Some(&other_anon),
                when + 2 * HOUR,
            ));
            let merge = alias(
                &user,
                &other,
                at(&mut rng, signup.max(when) + 3 * HOUR, DAY),
            );
            if rng.chance(50) {
                late.push(merge)
            } else {
                early.push(merge)
            }
        }
    }
    shuffle(&mut early, &mut rng);
    shuffle(&mut late, &mut rng);
    Journeys { early, late }
}

fn shuffle(events: &mut [Event], rng: &mut Lcg) {
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

impl Journeys {
    /// Every event, early then late.
    pub fn all(&self) -> impl Iterator<Item = &Event> {
        self.early.iter().chain(&self.late)
    }

    /// The brute-force model of every event.
    pub fn model(&self) -> Model {
        Model::of(self.all())
    }
}

/// Persons by brute force: components of the links, latest trait per component.
#[derive(Debug, Clone, Default)]
pub struct Model {
    root: HashMap<String, String>,
    members: BTreeMap<String, BTreeSet<String>>,
    traits: HashMap<String, BTreeMap<String, (i64, String)>>,
}

impl Model {
    /// The model of `events`.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Model {
        let events: Vec<&Event> = events.into_iter().collect();
        let links: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                (
                    e.distinct_id.clone(),
                    e.links.clone().unwrap_or_else(|| e.distinct_id.clone()),
                )
            })
            .collect();
        let mut model = Model::default();
        for (id, root) in components(&links) {
            model
                .members
                .entry(root.clone())
                .or_default()
                .insert(id.clone());
            model.root.insert(id, root);
        }
        for e in &events {
            let root = model.root[&e.distinct_id].clone();
            let held = model.traits.entry(root).or_default();
            for (k, v) in &e.traits {
                let stamped = (e.ts_ms, v.clone());
                if held.get(k).is_none_or(|c| *c < stamped) {
                    held.insert(k.clone(), stamped);
                }
            }
        }
        model
    }

    /// The person of `distinct_id` (its component's smallest id).
    pub fn person(&self, distinct_id: &str) -> String {
        self.root
            .get(distinct_id)
            .cloned()
            .unwrap_or_else(|| distinct_id.to_owned())
    }

    /// Every distinct id of the person of `distinct_id`.
    pub fn ids(&self, distinct_id: &str) -> BTreeSet<String> {
        self.members
            .get(&self.person(distinct_id))
            .cloned()
            .unwrap_or_default()
    }

    /// Current traits of the person of `distinct_id`.
    pub fn traits(&self, distinct_id: &str) -> BTreeMap<String, String> {
        self.traits
            .get(&self.person(distinct_id))
            .map(|t| t.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Every person (by its component's smallest id) with its ids.
    pub fn persons(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.members
    }
}

/// Connected components of `links` (pairs of ids; a pair of one id twice
/// only names it): every id → the smallest id of its component.
pub fn components(links: &[(String, String)]) -> HashMap<String, String> {
    fn find(parent: &mut HashMap<String, String>, x: &str) -> String {
        let p = parent.get(x).cloned().unwrap_or_else(|| x.to_owned());
        if p == x {
            return p;
        }
        let root = find(parent, &p);
        parent.insert(x.to_owned(), root.clone());
        root
    }
    let mut parent: HashMap<String, String> = HashMap::new();
    for (a, b) in links {
        for id in [a, b] {
            parent.entry(id.clone()).or_insert_with(|| id.clone());
        }
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            let (small, big) = if ra < rb { (ra, rb) } else { (rb, ra) };
            parent.insert(big, small);
        }
    }
    let ids: BTreeSet<String> = parent.keys().cloned().collect();
    ids.into_iter()
        .map(|id| {
            let root = find(&mut parent, &id);
            (id, root)
        })
        .collect()
}
