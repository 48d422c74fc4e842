//! Exponential backoff with an optional full jitter, shared by every reconnect and retry loop.
//!
//! Hand-written, not `backon` (measured with backon 1.6's `ExponentialBuilder`): its jitter
//! adds up to one more delay on top (`d + d * rand`), so with jitter every delay of a 10 ms to
//! 5 s backoff lay above its attempt's cap (up to 9.7 s, past `max`) and the first delay after
//! a reset was 11-17 ms, never `initial`; here a jittered delay stays in `[initial, cap]`. Its
//! factor is an `f32` applied to seconds: 100 ms times 3 gave 300.000012 ms, not 300 ms. A zero
//! minimum stays 0 ns (here 1 ms), and its iterator has no peek ([`Backoff::current`], which
//! the static-peer redials use) and is not `Clone`. Keeping this type as a facade over backon
//! would re-implement the cap, the jitter and the peek: all of this module.

use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::time::Duration;

/// The shortest delay a backoff ever returns: a zero setting must not hammer a dead peer.
const FLOOR: Duration = Duration::from_millis(1);

/// Exponential backoff: attempt `n` (from 0) waits `min(max, initial * factor^n)`, or with
/// jitter a uniformly random delay in `[initial, min(max, initial * factor^n)]` ("full jitter"
/// above a floor, so a fleet reconnecting at once spreads out but never retries at once).
///
/// [`Backoff::reset`] starts over from `initial`, e.g. after a connection that worked.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    attempt: u32,
    jitter: Option<SmallRng>,
}

impl Backoff {
    /// Doubling from `initial` up to `max`, without jitter. `initial` is at least 1 ms and
    /// `max` at least `initial`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(FLOOR);
        Self { initial, max: max.max(initial), factor: 2.0, attempt: 0, jitter: None }
    }

    /// Grows by `factor` per attempt instead of 2 (values below 1, or not finite, mean 1: a
    /// constant delay).
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() && factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// Draws each delay uniformly between `initial` and the attempt's cap, seeded from the OS.
    pub fn with_jitter(self) -> Self {
        self.with_jitter_seed(rand::rng().random())
    }

    /// Like [`Backoff::with_jitter`] with a fixed seed (reproducible delays, for tests).
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = Some(SmallRng::seed_from_u64(seed));
        self
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay the next attempt waits at most (without jitter: exactly what
    /// [`Backoff::next_delay`] returns next), without advancing the attempt count.
    pub fn current(&self) -> Duration {
        self.cap(self.attempt)
    }

    /// The delay before the next attempt; advances the attempt count.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.cap(self.attempt);
        // Past 64 attempts the cap is `max` for any factor > 1; stop counting there.
        self.attempt = self.attempt.saturating_add(1).min(64);
        match &mut self.jitter {
            None => cap,
            Some(rng) => {
                let lo = nanos(self.initial);
                let hi = nanos(cap).max(lo);
                Duration::from_nanos(rng.random_range(lo..=hi))
            }
        }
    }

    /// Starts over from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// `min(max, initial * factor^attempt)`, saturating.
    fn cap(&self, attempt: u32) -> Duration {
        let grown = nanos(self.initial) as f64 * self.factor.powi(attempt as i32);
        let max = nanos(self.max);
        if !grown.is_finite() || grown >= max as f64 {
            Duration::from_nanos(max)
        } else {
            Duration::from_nanos(grown.round() as u64)
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(ms(500), Duration::from_secs(10));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [ms(500), ms(1000), ms(2000), ms(4000), ms(8000), ms(10_000), ms(10_000), ms(10_000)]
        );
        assert_eq!(b.attempt(), 8);
        b.reset();
        assert_eq!(b.next_delay(), ms(500));
    }

    #[test]
    fn current_peeks_at_the_next_delay_without_advancing() {
        let mut b = Backoff::new(ms(100), ms(350));
        assert_eq!((b.current(), b.current()), (ms(100), ms(100)));
        assert_eq!(b.next_delay(), ms(100));
        assert_eq!(b.current(), ms(200));
        assert_eq!(b.next_delay(), ms(200));
        assert_eq!(b.current(), ms(350));
        b.next_delay();
        assert_eq!(b.current(), ms(350), "capped at max");
        b.reset();
        assert_eq!(b.current(), ms(100));
        // With jitter it is the cap the next draw stays under.
        let mut j = Backoff::new(ms(100), ms(1000)).with_jitter_seed(7);
        j.next_delay();
        let cap = j.current();
        assert_eq!(cap, ms(200));
        assert!(j.next_delay() <= cap);
    }

    #[test]
    fn custom_factor() {
        let mut b = Backoff::new(ms(100), ms(1000)).with_factor(3.0);
        let delays: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [ms(100), ms(300), ms(900), ms(1000)]);
        // A factor below 1 (or NaN) is a constant delay, never a shrinking one.
        for factor in [0.5, f64::NAN, -2.0] {
            let mut constant = Backoff::new(ms(100), ms(1000)).with_factor(factor);
            assert_eq!((0..5).map(|_| constant.next_delay()).collect::<Vec<_>>(), [ms(100); 5]);
        }
    }

    #[test]
    fn jittered_delay_grows_within_bounds_and_resets() {
        let min = ms(10);
        let max = Duration::from_secs(5);
        let mut backoff = Backoff::new(min, max).with_jitter_seed(1);
        let mut caps = Vec::new();
        for attempt in 0..40u32 {
            let d = backoff.next_delay();
            let cap = min.saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX)).min(max);
            assert!(d >= min && d <= cap, "attempt {attempt}: {d:?} outside [{min:?}, {cap:?}]");
            caps.push(cap);
        }
        assert_eq!(caps.last(), Some(&max));
        backoff.reset();
        assert_eq!(backoff.next_delay(), min);
    }

    #[test]
    fn degenerate_settings_stay_sane() {
        let max = Duration::from_secs(5);
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO).with_jitter_seed(2);
        assert_eq!(zero.next_delay(), ms(1));
        let mut inverted = Backoff::new(max, ms(10)).with_jitter_seed(3);
        assert_eq!(inverted.next_delay(), max);
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX).with_jitter_seed(4);
        for _ in 0..100 {
            huge.next_delay();
        }
        let mut plain_huge = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            assert_eq!(plain_huge.next_delay(), Duration::from_nanos(u64::MAX));
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut backoff = Backoff::new(ms(10), Duration::from_secs(5)).with_jitter_seed(5);
        for _ in 0..10 {
            backoff.next_delay();
        }
        let delays: std::collections::HashSet<_> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 10);
        // Two OS-seeded backoffs do not march in step.
        let mut a = Backoff::new(ms(10), Duration::from_secs(5)).with_jitter();
        let mut b = Backoff::new(ms(10), Duration::from_secs(5)).with_jitter();
        let (a, b): (Vec<_>, Vec<_>) = (0..20).map(|_| (a.next_delay(), b.next_delay())).unzip();
        assert_ne!(a, b);
    }
}
