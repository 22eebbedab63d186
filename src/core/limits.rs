//! Abuse limits: token buckets for message rates, login failures and
//! registrations, keyed per session, per account name or per address.
//!
//! Every limiter reads time from an injected [`Clock`], so the unit tests
//! drive time by hand and never sleep. Keyed limiters forget keys whose
//! bucket has refilled (they are the same as new ones), so an attacker
//! cycling through names or addresses cannot grow the maps without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LimitsConfig;

/// Where limiters read the time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real, monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A rate: `burst` events at once, refilled at `burst` per `window`
/// (so `per_second` = burst / window).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Bucket size: events allowed at once from a full bucket.
    pub burst: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

impl Rate {
    /// `count` events per `window`, all of them allowed at once.
    pub fn per(count: u32, window: Duration) -> Rate {
        Rate {
            burst: f64::from(count),
            per_second: f64::from(count) / window.as_secs_f64().max(1e-9),
        }
    }

    /// Whether this rate limits anything (a zero rate means "no limit").
    pub fn is_enabled(&self) -> bool {
        self.burst > 0.0 && self.per_second > 0.0
    }
}

/// One token bucket; starts full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens now (fractional between refills).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate`.
    pub fn full(rate: Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// Takes a token if there is one; returns whether it did.
    pub fn try_take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token is available, without taking it.
    pub fn has_token(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    /// Whether the bucket is full again (it can be forgotten).
    fn is_full(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

/// Token buckets by key (account name, address), behind one lock held only
/// for the arithmetic.
pub struct KeyedLimiter<K> {
    /// The rate of every key's bucket.
    rate: Rate,
    /// Buckets of keys that used tokens recently.
    buckets: Mutex<HashMap<K, TokenBucket>>,
    /// Where time comes from.
    clock: Arc<dyn Clock>,
}

/// Past this many remembered keys, full buckets are swept out.
const SWEEP_AT: usize = 4096;

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// A limiter at `rate`; a disabled rate allows everything.
    pub fn new(rate: Rate, clock: Arc<dyn Clock>) -> KeyedLimiter<K> {
        KeyedLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// Whether `key` may act now (has a token), without using one.
    pub fn allows(&self, key: &K) -> bool {
        if !self.rate.is_enabled() {
            return true;
        }
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .get_mut(key)
            .is_none_or(|bucket| bucket.has_token(self.rate, now))
    }

    /// Uses one of `key`'s tokens (a failure, a registration); returns
    /// whether there was one.
    pub fn take(&self, key: &K) -> bool {
        if !self.rate.is_enabled() {
            return true;
        }
        let now = self.clock.now();
        let rate = self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= SWEEP_AT && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| !bucket.is_full(rate, now));
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::full(rate, now))
            .try_take(rate, now)
    }

    /// How many keys are remembered (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Whether PROTOCOL.md 5.5 exempts `addr` from per-address limits:
/// `127.0.0.0/8`, `::1` and `::ffff:127.0.0.0/104`.
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The shared limiters, built from [`LimitsConfig`].
pub struct Limits {
    /// The settings.
    pub config: LimitsConfig,
    /// Per-session message rate (each session keeps its own bucket).
    pub msg_rate: Rate,
    /// Failed logins by lower-cased account name.
    pub account_failures: KeyedLimiter<String>,
    /// Failed logins by source address.
    pub address_failures: KeyedLimiter<IpAddr>,
    /// Registrations by source address.
    pub registrations: KeyedLimiter<IpAddr>,
    /// Rooms created by account id.
    pub room_creations: KeyedLimiter<i64>,
    /// The clock every limiter reads.
    pub clock: Arc<dyn Clock>,
}

impl Limits {
    /// Builds the limiters over `clock`.
    pub fn new(config: LimitsConfig, clock: Arc<dyn Clock>) -> Limits {
        let msg_rate = Rate {
            burst: f64::from(config.msg_burst),
            per_second: config.msg_rate.max(0.0),
        };
        Limits {
            msg_rate,
            account_failures: KeyedLimiter::new(
                Rate::per(config.login_failures_per_account, Duration::from_secs(60)),
                Arc::clone(&clock),
            ),
            address_failures: KeyedLimiter::new(
                Rate::per(config.login_failures_per_address, Duration::from_secs(15 * 60)),
                Arc::clone(&clock),
            ),
            registrations: KeyedLimiter::new(
                Rate::per(config.registrations_per_address, Duration::from_secs(3600)),
                Arc::clone(&clock),
            ),
            room_creations: KeyedLimiter::new(
                Rate::per(config.rooms_created_per_hour, Duration::from_secs(3600)),
                Arc::clone(&clock),
            ),
            clock,
            config,
        }
    }

    /// Whether per-address limits apply to `addr`.
    pub fn applies_to(&self, addr: IpAddr) -> bool {
        self.config.limit_loopback || !is_loopback(addr)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A clock moved by hand.
    pub(crate) struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        pub(crate) fn new() -> Arc<ManualClock> {
            Arc::new(ManualClock(Mutex::new(Instant::now())))
        }
        pub(crate) fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let clock = ManualClock::new();
        let rate = Rate {
            burst: 200.0,
            per_second: 20.0,
        };
        let mut bucket = TokenBucket::full(rate, clock.now());
        for i in 0..200 {
            assert!(bucket.try_take(rate, clock.now()), "message {i} of the burst");
        }
        assert!(!bucket.try_take(rate, clock.now()));
        clock.advance(Duration::from_millis(49));
        assert!(!bucket.try_take(rate, clock.now()));
        clock.advance(Duration::from_millis(1));
        assert!(bucket.try_take(rate, clock.now()));
        clock.advance(Duration::from_secs(3600));
        assert!(bucket.has_token(rate, clock.now()));
        for _ in 0..200 {
            assert!(bucket.try_take(rate, clock.now()));
        }
        assert!(
            !bucket.try_take(rate, clock.now()),
            "a long pause refills only to the burst"
        );
    }

    #[test]
    fn keyed_failures_throttle_one_key_and_recover() {
        let clock = ManualClock::new();
        let limiter = KeyedLimiter::new(Rate::per(10, Duration::from_secs(60)), clock.clone());
        let ana = "ana".to_string();
        for _ in 0..10 {
            assert!(limiter.allows(&ana));
            assert!(limiter.take(&ana));
        }
        assert!(!limiter.allows(&ana), "the 11th failure within a minute is refused");
        assert!(limiter.allows(&"juan".to_string()), "other names are not affected");
        clock.advance(Duration::from_secs(6));
        assert!(limiter.allows(&ana), "one failure's worth refilled after 6 s");
    }

    #[test]
    fn a_zero_rate_disables_the_limit() {
        let limiter = KeyedLimiter::new(
            Rate {
                burst: 0.0,
                per_second: 0.0,
            },
            ManualClock::new(),
        );
        for _ in 0..10_000 {
            assert!(limiter.take(&1u32));
        }
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn refilled_keys_are_forgotten_so_the_map_stays_bounded() {
        let clock = ManualClock::new();
        let limiter = KeyedLimiter::new(Rate::per(5, Duration::from_secs(1)), clock.clone());
        for i in 0..SWEEP_AT {
            limiter.take(&i);
        }
        clock.advance(Duration::from_secs(2));
        limiter.take(&usize::MAX);
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn loopback_addresses_per_the_protocol() {
        for a in ["127.0.0.1", "127.200.3.4", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(a.parse().unwrap()), "{a}");
        }
        for a in ["10.0.0.1", "192.168.1.1", "::ffff:10.0.0.1", "2001:db8::1"] {
            assert!(!is_loopback(a.parse().unwrap()), "{a}");
        }
    }
}
