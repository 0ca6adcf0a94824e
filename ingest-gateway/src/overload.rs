//! Overload protection.
//!
//! * Per-app token bucket (events/s with a burst): an app over its rate gets
//!   429 `rate_limited` with `Retry-After`, so a hot app cannot starve the
//!   others. Excess is refused rather than diverted to an overflow topic: events
//!   are keyed by app *and* user, so a hot app is already spread over every
//!   partition (no single hot partition to relieve), and a second topic would
//!   give the aggregator a second exactly-once source for the same windows.
//!   SDKs retry 429s with backoff, so nothing acknowledged is ever lost.
//! * A budget of request bytes in flight, so memory stays bounded at any load.
//!   Only bytes that actually arrived are reserved (header bytes first, then the
//!   body frame by frame, then the inflated size of a gzip body) — never a
//!   declared `Content-Length`, so a client that announces a large body and sends
//!   nothing holds nothing. A [`Reservation`] is refused when it would pass:
//!   - the whole budget ([`InflightCaps::total`]) → 503 `overloaded`;
//!   - the share of requests whose write key was *not* verified from the headers
//!     (key in the body, or none yet: [`Pool::Unverified`], capped at
//!     [`InflightCaps::unverified`]) → 503 `overloaded`; requests with a verified
//!     header key ([`Pool::Verified`]) always find the rest of the budget;
//!   - the cap of one client address ([`InflightCaps::per_client`]; IPv6 counted
//!     per /64) → 429 `client_overloaded`, so one address cannot take the budget.
//!
//!   Every reservation is given back when the request ends (on drop).
//! * Metric labels per app are bounded: the first [`MAX_APP_LABELS`] apps seen
//!   get their own label, later ones share `other`.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Distinct app labels before `other`.
pub const MAX_APP_LABELS: usize = 100;

/// Byte caps of the in-flight budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflightCaps {
    /// All requests together.
    pub total: usize,
    /// Requests whose write key has not been verified from their headers.
    pub unverified: usize,
    /// One client address (IPv4 address, IPv6 /64).
    pub per_client: usize,
}

/// Which share of the budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The write key came in the headers and is known.
    Verified,
    /// The write key is in the body (or missing): not known before the body is read.
    Unverified,
}

/// Why bytes could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The whole budget is in use.
    Total,
    /// The share of unverified requests is in use.
    Unverified,
    /// The client address holds its cap.
    Client,
}

impl Refusal {
    /// Metric label (a fixed set).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "inflight_full",
            Refusal::Unverified => "unverified_share_full",
            Refusal::Client => "client_cap",
        }
    }
}

/// The address a per-client cap applies to: IPv4 as is (IPv4-mapped IPv6 too),
/// IPv6 per /64 (one subscriber's usual allocation).
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Bytes a request's head occupies: its target and every header, with separators
/// (what the server buffered before the handler ran; hyper answers 431 to an
/// HTTP/1.1 head larger than its read buffer, about 400 KiB).
pub fn head_bytes(uri: &axum::http::Uri, headers: &axum::http::HeaderMap) -> usize {
    let line = uri
        .path_and_query()
        .map_or(1, |target| target.as_str().len())
        + 16;
    headers.iter().fold(line, |sum, (name, value)| {
        sum + name.as_str().len() + value.len() + 4
    })
}

#[derive(Debug, Default)]
struct Ledger {
    total: usize,
    unverified: usize,
    clients: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Budget {
    caps: InflightCaps,
    ledger: Mutex<Ledger>,
}

impl Budget {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is plain counters, consistent after every statement: a panic
        // elsewhere while holding the lock leaves nothing half-done.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(
        &self,
        ledger: &Ledger,
        client: IpAddr,
        pool: Pool,
        bytes: usize,
    ) -> Result<(), Refusal> {
        let held = ledger.clients.get(&client).copied().unwrap_or(0);
        if held.saturating_add(bytes) > self.caps.per_client {
            return Err(Refusal::Client);
        }
        if pool == Pool::Unverified
            && ledger.unverified.saturating_add(bytes) > self.caps.unverified
        {
            return Err(Refusal::Unverified);
        }
        if ledger.total.saturating_add(bytes) > self.caps.total {
            return Err(Refusal::Total);
        }
        Ok(())
    }
}

/// Bytes one request holds of the in-flight budget; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    client: IpAddr,
    pool: Pool,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` more, or says which cap they would pass (nothing is taken then).
    pub fn grow(&mut self, bytes: usize) -> Result<(), Refusal> {
        let mut ledger = self.budget.ledger();
        self.budget.check(&ledger, self.client, self.pool, bytes)?;
        ledger.total += bytes;
        if self.pool == Pool::Unverified {
            ledger.unverified += bytes;
        }
        *ledger.clients.entry(self.client).or_insert(0) += bytes;
        self.bytes += bytes;
        Ok(())
    }

    /// Whether `bytes` more would fit right now (nothing is reserved).
    pub fn fits(&self, bytes: usize) -> Result<(), Refusal> {
        let ledger = self.budget.ledger();
        self.budget.check(&ledger, self.client, self.pool, bytes)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut ledger = self.budget.ledger();
        ledger.total = ledger.total.saturating_sub(self.bytes);
        if self.pool == Pool::Unverified {
            ledger.unverified = ledger.unverified.saturating_sub(self.bytes);
        }
        if let Some(held) = ledger.clients.get_mut(&self.client) {
            *held = held.saturating_sub(self.bytes);
            if *held == 0 {
                ledger.clients.remove(&self.client);
            }
        }
    }
}

/// Admission control state.
pub struct Overload {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    budget: Arc<Budget>,
    labels: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overload")
            .field("caps", &self.budget.caps)
            .finish_non_exhaustive()
    }
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl Overload {
    /// `rate` events/s per app with `burst`, and the in-flight byte `caps`.
    pub fn new(rate: u32, burst: u32, caps: InflightCaps) -> Self {
        let quota = Quota::per_second(non_zero(rate)).allow_burst(non_zero(burst));
        Overload {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            budget: Arc::new(Budget {
                caps,
                ledger: Mutex::new(Ledger::default()),
            }),
            labels: Mutex::new(HashSet::new()),
        }
    }

    /// An empty reservation for a request from `client` (see [`client_of`]) drawing on `pool`.
    pub fn reservation(&self, client: IpAddr, pool: Pool) -> Reservation {
        Reservation {
            budget: self.budget.clone(),
            client: client_of(client),
            pool,
            bytes: 0,
        }
    }

    /// Bytes currently reserved by all requests.
    pub fn inflight_bytes(&self) -> usize {
        self.budget.ledger().total
    }

    /// Takes `events` tokens from `app`'s bucket, or says how long to wait.
    pub fn admit_events(&self, app: &str, events: usize) -> Result<(), Duration> {
        let n = non_zero(u32::try_from(events).unwrap_or(u32::MAX));
        match self.limiter.check_key_n(&app.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            // More events than the burst can ever hold: retrying later will not help much,
            // but the client should still back off.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Metric label for `app` (bounded cardinality).
    pub fn app_label(&self, app: &str) -> String {
        let Ok(mut labels) = self.labels.lock() else {
            return "other".into();
        };
        if labels.contains(app) || (labels.len() < MAX_APP_LABELS && labels.insert(app.to_owned()))
        {
            app.to_owned()
        } else {
            "other".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_app() {
        let overload = Overload::new(100, 100, caps(1 << 20, 1 << 20, 1 << 20));
        assert!(overload.admit_events("hot", 100).is_ok());
        let wait = overload.admit_events("hot", 50).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            overload.admit_events("calm", 100).is_ok(),
            "another app is not starved"
        );
        assert!(
            overload.admit_events("calm", 1_000).is_err(),
            "more than the burst"
        );
    }

    #[test]
    fn inflight_bytes_are_capped_and_released() {
        let overload = Overload::new(1, 1, caps(64 * 1024, 64 * 1024, 64 * 1024));
        let mut first = overload.reservation(ip("10.0.0.1"), Pool::Verified);
        first.grow(40 * 1024).unwrap();
        assert_eq!(overload.inflight_bytes(), 40 * 1024);
        let mut second = overload.reservation(ip("10.0.0.2"), Pool::Verified);
        assert_eq!(second.fits(40 * 1024), Err(Refusal::Total));
        assert_eq!(second.grow(40 * 1024), Err(Refusal::Total));
        assert_eq!(
            overload.inflight_bytes(),
            40 * 1024,
            "a refusal takes nothing"
        );
        drop(first);
        assert_eq!(overload.inflight_bytes(), 0);
        second.grow(40 * 1024).unwrap();
        assert_eq!(second.bytes(), 40 * 1024);
    }

    #[test]
    fn bytes_are_reserved_as_they_arrive() {
        let overload = Overload::new(1, 1, caps(10_000, 10_000, 20_000));
        let mut growing = overload.reservation(ip("10.0.0.1"), Pool::Verified);
        for _ in 0..10 {
            growing.grow(1_000).unwrap();
        }
        assert_eq!(growing.grow(1), Err(Refusal::Total));
        assert_eq!(overload.inflight_bytes(), 10_000);
        // Many requests that announced bodies but sent nothing hold nothing.
        let idle: Vec<Reservation> = (0..1_000)
            .map(|i| {
                overload.reservation(
                    ip(&format!("10.1.{}.{}", i / 256, i % 256)),
                    Pool::Unverified,
                )
            })
            .collect();
        drop(growing);
        assert_eq!(overload.inflight_bytes(), 0);
        let mut keyed = overload.reservation(ip("10.0.0.9"), Pool::Verified);
        keyed.grow(10_000).unwrap();
        drop(idle);
    }

    #[test]
    fn unverified_requests_cannot_take_the_verified_share() {
        let overload = Overload::new(1, 1, caps(10_000, 4_000, 10_000));
        let mut anonymous: Vec<Reservation> = (0..4)
            .map(|i| overload.reservation(ip(&format!("10.0.0.{i}")), Pool::Unverified))
            .collect();
        for reservation in &mut anonymous {
            reservation.grow(1_000).unwrap();
        }
        let mut late = overload.reservation(ip("10.0.0.200"), Pool::Unverified);
        assert_eq!(late.grow(1), Err(Refusal::Unverified));
        let mut keyed = overload.reservation(ip("10.0.0.201"), Pool::Verified);
        keyed.grow(6_000).unwrap();
        assert_eq!(keyed.grow(1), Err(Refusal::Total));
        drop(anonymous);
        late.grow(4_000).unwrap();
    }

    #[test]
    fn one_client_cannot_take_the_budget() {
        let overload = Overload::new(1, 1, caps(10_000, 10_000, 3_000));
        let mut first = overload.reservation(ip("192.0.2.1"), Pool::Verified);
        let mut second = overload.reservation(ip("192.0.2.1"), Pool::Unverified);
        first.grow(2_000).unwrap();
        second.grow(1_000).unwrap();
        assert_eq!(second.grow(1), Err(Refusal::Client));
        let mut other = overload.reservation(ip("192.0.2.2"), Pool::Verified);
        other.grow(3_000).unwrap();
        // IPv6 is counted per /64; IPv4-mapped addresses as IPv4.
        let mut v6a = overload.reservation(ip("2001:db8:1:2::1"), Pool::Verified);
        let mut v6b = overload.reservation(ip("2001:db8:1:2:ffff::9"), Pool::Verified);
        v6a.grow(3_000).unwrap();
        assert_eq!(v6b.grow(1), Err(Refusal::Client));
        let mut mapped = overload.reservation(ip("::ffff:192.0.2.1"), Pool::Verified);
        assert_eq!(mapped.grow(1), Err(Refusal::Client));
        drop((first, second));
        mapped.grow(3_000).unwrap();
    }

    #[test]
    fn head_bytes_count_the_target_and_every_header() {
        let mut headers = axum::http::HeaderMap::new();
        let uri: axum::http::Uri = "/api/v1/events/batch?x=1".parse().unwrap();
        let bare = head_bytes(&uri, &headers);
        assert_eq!(bare, "/api/v1/events/batch?x=1".len() + 16);
        let agent = "a".repeat(256 * 1024);
        headers.insert("user-agent", agent.parse().unwrap());
        assert_eq!(
            head_bytes(&uri, &headers),
            bare + "user-agent".len() + agent.len() + 4
        );
    }

    fn caps(total: usize, unverified: usize, per_client: usize) -> InflightCaps {
        InflightCaps {
            total,
            unverified,
            per_client,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn app_labels_are_bounded() {
        let overload = Overload::new(1, 1, caps(1024, 1024, 1024));
        for i in 0..MAX_APP_LABELS {
            assert_eq!(overload.app_label(&format!("a{i}")), format!("a{i}"));
        }
        assert_eq!(overload.app_label("late"), "other");
        assert_eq!(overload.app_label("a0"), "a0");
    }
}
