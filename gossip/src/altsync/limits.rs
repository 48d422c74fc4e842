//! op-node's alt-sync rate limits (the server's global and per-peer limits, the client's
//! pacing) as token buckets. The bucket arithmetic is `governor`'s GCRA; what is kept here is
//! the caller's clock and the bound on the number of per-peer buckets.

use super::{GLOBAL_BURST, GLOBAL_RATE, PEER_BUCKETS, PEER_BURST, PEER_RATE};
use governor::{
    clock::FakeRelativeClock,
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{InMemoryState, NotKeyed},
    Quota, RateLimiter,
};
use std::{
    collections::HashMap,
    hash::Hash,
    num::NonZeroU32,
    time::{Duration, Instant},
};

/// governor's direct (single-state) limiter on a clock this module steps.
type Limiter = RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<Nanos>>;

/// A token bucket: full at `burst` tokens, refilled at `rate` per second, one token a request.
///
/// The decisions are governor's GCRA (the token bucket in its "theoretical arrival time" form,
/// in integer nanoseconds). Time is the caller's `now`, not a clock read inside: the host
/// decides with its event time and tests step time by hand. governor's `FakeRelativeClock` (a
/// clock that only moves when told) is advanced to `now` before each decision, never back.
#[derive(Debug)]
pub struct Bucket {
    limiter: Limiter,
    /// The caller's time of the first decision: the clock's zero.
    origin: Option<Instant>,
    /// How far the clock has been advanced past `origin`.
    elapsed: Duration,
    /// The caller's time of the last decision.
    last: Option<Instant>,
}

impl Bucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second (each at least 1).
    pub fn new(rate: u32, burst: u32) -> Self {
        let at_least_one = |n| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(at_least_one(rate)).allow_burst(at_least_one(burst));
        Self {
            limiter: RateLimiter::direct_with_clock(quota, FakeRelativeClock::default()),
            origin: None,
            elapsed: Duration::ZERO,
            last: None,
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let origin = *self.origin.get_or_insert(now);
        let at = now.saturating_duration_since(origin);
        if at > self.elapsed {
            self.limiter.clock().advance(at - self.elapsed);
            self.elapsed = at;
        }
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        self.limiter.check().is_ok()
    }
}

/// The server's global and per-peer rate limits, keyed by peer (`K`: the libp2p peer id in
/// the host; anything hashable in tests, so this stays free of libp2p).
///
/// At most [`PEER_BUCKETS`] per-peer buckets are kept; a new peer past that evicts the least
/// recently used one (op-node's LRU). A bucket idle for `burst / rate` (3.75 s) is full again,
/// as good as a new one, so while any such bucket exists it is the one evicted.
#[derive(Debug)]
pub struct RateLimits<K> {
    global: Bucket,
    peers: HashMap<K, Bucket>,
}

impl<K> Default for RateLimits<K> {
    fn default() -> Self {
        Self { global: Bucket::new(GLOBAL_RATE, GLOBAL_BURST), peers: HashMap::new() }
    }
}

impl<K: Hash + Eq + Copy> RateLimits<K> {
    /// Whether a request from `peer` may be served now. The per-peer bucket is checked first
    /// so one flooding peer cannot drain the global budget of the others.
    pub fn allow(&mut self, peer: &K, now: Instant) -> bool {
        if !self.peers.contains_key(peer) && self.peers.len() >= PEER_BUCKETS {
            // Forget the least recently used bucket: bounded memory.
            let idle = self.peers.iter().min_by_key(|(_, b)| b.last).map(|(p, _)| *p);
            if let Some(p) = idle {
                self.peers.remove(&p);
            }
        }
        let bucket = self.peers.entry(*peer).or_insert_with(|| Bucket::new(PEER_RATE, PEER_BURST));
        bucket.take(now) && self.global.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_per_peer_and_global() {
        let mut rl = RateLimits::default();
        let now = Instant::now();
        let a = 0u64;
        let served = (0..100).filter(|_| rl.allow(&a, now)).count();
        assert_eq!(served, PEER_BURST as usize, "a burst of 15 per peer");
        // Other peers share the remaining global burst of 40.
        let served: usize = (0..10u64)
            .map(|p| p + 1u64)
            .map(|p| (0..100).filter(|_| rl.allow(&p, now)).count())
            .sum();
        assert_eq!(served, (GLOBAL_BURST - PEER_BURST) as usize);
        // One second later the global bucket has 20 more tokens.
        let later = now + Duration::from_secs(1);
        let b = 100u64;
        assert_eq!((0..100).filter(|_| rl.allow(&b, later)).count(), PEER_BURST as usize);
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst_on_the_callers_clock() {
        let t0 = Instant::now();
        let mut b = Bucket::new(PEER_RATE, PEER_BURST);
        assert_eq!((0..100).filter(|_| b.take(t0)).count(), PEER_BURST as usize);
        // 4 per second: one token every 250 ms, none before.
        assert!(!b.take(t0 + Duration::from_millis(249)));
        assert!(b.take(t0 + Duration::from_millis(250)));
        assert!(!b.take(t0 + Duration::from_millis(250)));
        // A time before the last one does not refill (nor move the clock back).
        assert!(!b.take(t0));
        // Long idle: full again, never more than the burst.
        let idle = t0 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| b.take(idle)).count(), PEER_BURST as usize);
        // Degenerate settings: at least one token, one per second.
        let mut zero = Bucket::new(0, 0);
        assert!(zero.take(t0) && !zero.take(t0) && zero.take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn past_the_peer_bound_the_least_recently_used_bucket_is_forgotten() {
        let mut rl = RateLimits::default();
        let t0 = Instant::now();
        // Peer 0 drains its bucket first, then PEER_BUCKETS - 1 others ask once each later
        // (every bucket is kept; the global bucket refills between them).
        assert_eq!((0..100).filter(|_| rl.allow(&0u64, t0)).count(), PEER_BURST as usize);
        for p in 1..PEER_BUCKETS as u64 {
            assert!(rl.allow(&p, t0 + Duration::from_secs(p)), "peer {p}");
        }
        assert_eq!(rl.peers.len(), PEER_BUCKETS);
        // A new peer evicts peer 0, the one used longest ago.
        let late = t0 + Duration::from_secs(PEER_BUCKETS as u64);
        assert!(rl.allow(&u64::MAX, late));
        assert_eq!(rl.peers.len(), PEER_BUCKETS);
        assert!(!rl.peers.contains_key(&0));
    }
}
