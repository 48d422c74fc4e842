//! Readiness and serving mode: what `/readyz` and `flashnode_status` answer, from what the
//! overlay task observed. Pure: every observation and question carries its `Instant` (and the
//! cutover check its unix time), so each rule is a unit test; the task records, the handle
//! asks.

use crate::rejections::{millis, RejectedFrame, RECENT_REJECTION};
use alloy_primitives::B256;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Readiness, as rollup-boost reports it (200 / 206 / 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Canonical tip fresh and preconfirmations served.
    Ready,
    /// Canonical tip fresh, but the flashblock stream is down: `pending` is `latest`.
    Degraded,
    /// No fresh canonical tip.
    NotReady,
}

/// Whether `pending` is served from flashblocks or falls back to `latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Preconfirmations are served.
    Flashblocks,
    /// `pending` answers as `latest`.
    Fallback,
    /// Past the native-blocks cutover ([`crate::OverlayConfig::native_blocks_at`]): the
    /// chain has no flashblock stream by design and `pending` is `latest`; nothing is
    /// degraded.
    #[serde(rename = "native_blocks")]
    NativeBlocks,
}

/// The settings readiness is judged by (from [`crate::OverlayConfig`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// No flashblock applied for this long: fallback.
    pub(crate) stale_after: Duration,
    /// Canonical tip not advanced for this long: not ready.
    pub(crate) canonical_stale_after: Duration,
    /// Consecutive bad blocks before degrading, clean ones before recovering (0 acts as 1).
    pub(crate) hysteresis_blocks: u64,
    /// How far ahead of the tip a pending block may be read (0 acts as 1).
    pub(crate) max_pending_depth: u64,
    /// The native-blocks cutover, unix seconds.
    pub(crate) native_blocks_at: Option<u64>,
}

/// Why the pending block ahead of the tip is not served, when that is why the mode falls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PendingIssue {
    /// Its state does not sit on a recent canonical block, it is too far ahead, or the
    /// upstream does not answer.
    Unreadable {
        /// Its number.
        number: u64,
        /// The canonical block its state reads fall back to.
        source_at: B256,
    },
    /// It carries a post-exec tx (Lagoon, type `0x7D`) whose settlement is not applied.
    Inexact {
        /// Its number.
        number: u64,
    },
}

/// A change of the execution-error hysteresis, for the task to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// `streak` consecutive blocks had an execution error: readiness is degraded.
    Degraded {
        /// Consecutive bad blocks.
        streak: u64,
        /// Clean blocks needed to recover.
        recover_after: u64,
    },
    /// `streak` clean blocks after errors: readiness is restored.
    Restored {
        /// The block that finished clean.
        block: u64,
        /// Consecutive clean blocks.
        streak: u64,
    },
}

/// Where the native-blocks cutover stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cutover {
    /// Not passed (or none set).
    Before,
    /// Passed just now (latched by this check).
    JustPassed,
    /// Passed earlier.
    Passed,
}

impl Cutover {
    /// Whether the cutover passed.
    pub(crate) fn passed(self) -> bool {
        self != Self::Before
    }
}

/// What readiness knows. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Readiness {
    limits: Limits,
    /// Latched once the native-blocks cutover passed (it never turns back).
    native: bool,
    connected: bool,
    last_frame: Option<Instant>,
    last_applied: Option<Instant>,
    tip_at: Option<Instant>,
    /// Set when the upstream failed a probe; cleared by any canonical block or good probe.
    upstream_error: Option<String>,
    /// The block whose flashblocks are being applied.
    current_block: Option<u64>,
    /// When the block in progress had an execution error (None: it had none).
    block_broken: Option<Instant>,
    /// Consecutive blocks with an execution error (bad, counted at the first error) and
    /// finished blocks without one (good).
    bad_blocks: u64,
    /// See `bad_blocks`.
    good_blocks: u64,
    /// Readiness degraded by execution errors (hysteresis state).
    execution_degraded: bool,
}

impl Readiness {
    /// Nothing observed yet: not ready, fallback.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            native: false,
            connected: false,
            last_frame: None,
            last_applied: None,
            tip_at: None,
            upstream_error: None,
            current_block: None,
            block_broken: None,
            bad_blocks: 0,
            good_blocks: 0,
            execution_degraded: false,
        }
    }

    /// Checks the native-blocks cutover at `unix_secs`, latching it once passed.
    pub(crate) fn cutover(&mut self, unix_secs: u64) -> Cutover {
        if self.native {
            return Cutover::Passed;
        }
        if self.limits.native_blocks_at.is_some_and(|at| unix_secs >= at) {
            self.native = true;
            return Cutover::JustPassed;
        }
        Cutover::Before
    }

    /// The stream connected (or resumed) or dropped.
    pub(crate) fn set_connected(&mut self, connected: bool) {
        self.connected = connected;
    }

    /// Whether the stream is connected.
    pub(crate) fn connected(&self) -> bool {
        self.connected
    }

    /// A flashblock frame arrived (the stream is connected).
    pub(crate) fn frame_seen(&mut self, now: Instant) {
        self.last_frame = Some(now);
        self.connected = true;
    }

    /// Time since the last flashblock frame.
    pub(crate) fn stream_lag(&self, now: Instant) -> Option<Duration> {
        self.last_frame.map(|t| now.saturating_duration_since(t))
    }

    /// A flashblock was applied.
    pub(crate) fn applied(&mut self, now: Instant) {
        self.last_applied = Some(now);
    }

    /// The canonical tip was (re)read.
    pub(crate) fn tip_moved(&mut self, now: Instant) {
        self.tip_at = Some(now);
    }

    /// Records the outcome of an upstream probe (None: it answered); returns the previous.
    pub(crate) fn set_upstream_error(&mut self, error: Option<String>) -> Option<String> {
        std::mem::replace(&mut self.upstream_error, error)
    }

    /// Why the upstream is unreachable, if it is.
    pub(crate) fn upstream_error(&self) -> Option<&str> {
        self.upstream_error.as_deref()
    }

    /// Index 0 of block `number` started it: the previous block, if another, is finished (a
    /// clean one counts towards recovery).
    pub(crate) fn block_started(&mut self, number: u64) -> Option<Transition> {
        let finished = self.current_block.filter(|&n| n != number);
        self.current_block = Some(number);
        let previous = finished?;
        if self.block_broken.take().is_some() {
            return None;
        }
        self.bad_blocks = 0;
        self.good_blocks = self.good_blocks.saturating_add(1);
        let recovered = self.good_blocks >= self.k() && self.execution_degraded;
        if recovered {
            self.execution_degraded = false;
        }
        recovered.then_some(Transition::Restored { block: previous, streak: self.good_blocks })
    }

    /// The block in progress had an execution error at `now`; only its first counts.
    pub(crate) fn block_error(&mut self, now: Instant) -> Option<Transition> {
        if self.block_broken.is_some() {
            return None;
        }
        self.block_broken = Some(now);
        self.good_blocks = 0;
        self.bad_blocks = self.bad_blocks.saturating_add(1);
        let degraded = self.bad_blocks >= self.k() && !self.execution_degraded;
        if degraded {
            self.execution_degraded = true;
        }
        degraded
            .then_some(Transition::Degraded { streak: self.bad_blocks, recover_after: self.k() })
    }

    /// Consecutive blocks (the current one included) with an execution error.
    pub(crate) fn execution_error_blocks(&self) -> u64 {
        self.bad_blocks
    }

    /// Whether readiness is degraded by execution errors.
    pub(crate) fn execution_degraded(&self) -> bool {
        self.execution_degraded
    }

    fn k(&self) -> u64 {
        self.limits.hysteresis_blocks.max(1)
    }

    /// Whether a snapshot applied at `applied_at` is too old to serve at `now`.
    pub(crate) fn is_stale(&self, applied_at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(applied_at) > self.limits.stale_after
    }

    /// Whether a pending block `number` whose state sits on `source_at` can be read with the
    /// canonical tip at `tip`: within the depth bound, on a recent canonical block
    /// (`anchored`), with the upstream answering.
    pub(crate) fn readable(&self, number: u64, anchored: bool, tip: u64) -> bool {
        number <= tip.saturating_add(self.limits.max_pending_depth.max(1))
            && anchored
            && self.upstream_error.is_none()
    }

    /// The serving mode at `now`: flashblocks while they apply, the stream is up, the
    /// upstream answers and the pending block has no `issue`. Call [`Self::cutover`] first.
    pub(crate) fn mode(&self, now: Instant, issue: Option<&PendingIssue>) -> Mode {
        if self.native {
            return Mode::NativeBlocks;
        }
        let applying = self.last_applied.is_some_and(|t| !self.is_stale(t, now));
        if applying && self.connected && self.upstream_error.is_none() && issue.is_none() {
            Mode::Flashblocks
        } else {
            Mode::Fallback
        }
    }

    /// Readiness at `now`: the canonical tip must be fresh; preconfirmations make it fully
    /// ready. `last_diverged`: the last rejected frame was a divergence.
    pub(crate) fn health(
        &self,
        now: Instant,
        issue: Option<&PendingIssue>,
        last_diverged: bool,
    ) -> Health {
        let fresh = self
            .tip_at
            .is_some_and(|t| now.saturating_duration_since(t) <= self.limits.canonical_stale_after);
        match (fresh, self.mode(now, issue)) {
            (false, _) => Health::NotReady,
            (true, Mode::NativeBlocks) => Health::Ready,
            _ if self.execution_degraded => Health::Degraded,
            (true, Mode::Flashblocks) => Health::Ready,
            // Hysteresis: the block in progress failed to execute (its prefix was served,
            // now `pending` is `latest` until the next block), but fewer than K blocks in a
            // row did: still ready, so `/readyz` does not flip every block.
            (true, Mode::Fallback)
                if self.fallback_is_this_blocks_execution_error(now, issue, last_diverged) =>
            {
                Health::Ready
            }
            (true, Mode::Fallback) => Health::Degraded,
        }
    }

    /// Whether the fallback is due only to an execution error in the block in progress (the
    /// stream is connected, the upstream answers, nothing unreadable is pending).
    fn fallback_is_this_blocks_execution_error(
        &self,
        now: Instant,
        issue: Option<&PendingIssue>,
        last_diverged: bool,
    ) -> bool {
        // Bounded in time: a stream that sends nothing applicable after a bad block degrades
        // readiness once the canonical tip would be stale anyway.
        let recent = self.block_broken.is_some_and(|at| {
            now.saturating_duration_since(at) <= self.limits.canonical_stale_after
        });
        recent
            && last_diverged
            && self.connected
            && self.upstream_error.is_none()
            && !matches!(issue, Some(PendingIssue::Unreadable { .. }))
    }

    /// Why the node is not ready at `now`, in a sentence (None when `health` is ready).
    pub(crate) fn reason(
        &self,
        now: Instant,
        health: Health,
        issue: Option<&PendingIssue>,
        last_rejected: Option<&RejectedFrame>,
    ) -> Option<String> {
        let limits = &self.limits;
        if health == Health::Ready {
            return None;
        }
        if health == Health::Degraded && self.execution_degraded {
            return Some(format!(
                "execution errors in {} consecutive blocks (readiness recovers after {} clean blocks): the upstream's state differs from the builder's",
                self.bad_blocks.max(limits.hysteresis_blocks),
                self.k()
            ));
        }
        if health == Health::NotReady {
            let since = self.tip_at.map(|t| now.saturating_duration_since(t).as_secs());
            return Some(match since {
                Some(secs) => format!("canonical tip not advanced for {secs} s: the upstream is unreachable or stalled"),
                None => "no canonical tip from the upstream yet".into(),
            });
        }
        if !self.connected {
            return Some("flashblock stream disconnected: pending is latest".into());
        }
        if let Some(err) = &self.upstream_error {
            return Some(format!("upstream unreachable ({err}): pending is latest"));
        }
        match issue {
            Some(PendingIssue::Unreadable { number, source_at }) => return Some(format!(
                "pending block {number} cannot be read: its state sits on {source_at}, which is not a recent canonical block of the upstream (or it is more than {} blocks ahead): pending is latest",
                limits.max_pending_depth
            )),
            Some(PendingIssue::Inexact { number }) => return Some(format!(
                "block {number} carries a post-exec transaction (Lagoon, type 0x7D) whose settlement this node cannot apply: pending is latest for it"
            )),
            None => {}
        }
        if let Some(r) = last_rejected.filter(|r| r.ago_ms < millis(RECENT_REJECTION)) {
            return Some(format!(
                "flashblocks not applied: {} block {} (upstream tip {}): {}",
                r.class,
                r.block,
                r.upstream_tip.map_or("unknown".into(), |t| t.to_string()),
                r.cause
            ));
        }
        Some("no flashblock applied recently: pending is latest".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejections::RejectClass;

    const SEC: Duration = Duration::from_secs(1);

    fn limits() -> Limits {
        Limits {
            stale_after: 2 * SEC,
            canonical_stale_after: 10 * SEC,
            hysteresis_blocks: 3,
            max_pending_depth: 3,
            native_blocks_at: None,
        }
    }

    /// Tip fresh, stream connected, a flashblock applied: ready, at `t0`.
    fn serving(t0: Instant) -> Readiness {
        let mut r = Readiness::new(limits());
        r.tip_moved(t0);
        r.frame_seen(t0);
        r.applied(t0);
        r
    }

    fn unreadable() -> PendingIssue {
        PendingIssue::Unreadable { number: 9, source_at: B256::repeat_byte(1) }
    }

    #[test]
    fn nothing_observed_is_not_ready() {
        let r = Readiness::new(limits());
        let now = Instant::now();
        assert_eq!(r.mode(now, None), Mode::Fallback);
        assert_eq!(r.health(now, None, false), Health::NotReady);
        assert_eq!(
            r.reason(now, Health::NotReady, None, None).as_deref(),
            Some("no canonical tip from the upstream yet")
        );
    }

    #[test]
    fn serving_flashblocks_is_ready() {
        let t0 = Instant::now();
        let r = serving(t0);
        assert_eq!(r.mode(t0 + SEC, None), Mode::Flashblocks);
        assert_eq!(r.health(t0 + SEC, None, false), Health::Ready);
        assert_eq!(r.reason(t0, Health::Ready, None, None), None);
    }

    #[test]
    fn no_flashblock_applied_within_stale_after_falls_back() {
        let t0 = Instant::now();
        let r = serving(t0);
        // Exactly at the bound still serves; past it falls back.
        assert_eq!(r.mode(t0 + 2 * SEC, None), Mode::Flashblocks);
        let later = t0 + 3 * SEC;
        assert_eq!(r.mode(later, None), Mode::Fallback);
        assert_eq!(r.health(later, None, false), Health::Degraded);
        assert_eq!(
            r.reason(later, Health::Degraded, None, None).as_deref(),
            Some("no flashblock applied recently: pending is latest")
        );
    }

    #[test]
    fn stale_canonical_tip_is_not_ready() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        let later = t0 + 11 * SEC;
        r.applied(later);
        assert_eq!(r.mode(later, None), Mode::Flashblocks);
        assert_eq!(r.health(later, None, false), Health::NotReady);
        let reason = r.reason(later, Health::NotReady, None, None);
        assert!(reason.is_some_and(|s| s.starts_with("canonical tip not advanced for 11 s")));
        r.tip_moved(later);
        assert_eq!(r.health(later, None, false), Health::Ready);
    }

    #[test]
    fn a_clock_read_before_the_observation_does_not_panic() {
        let t0 = Instant::now();
        let r = serving(t0 + SEC);
        assert_eq!(r.mode(t0, None), Mode::Flashblocks);
        assert_eq!(r.health(t0, None, false), Health::Ready);
        assert_eq!(r.stream_lag(t0), Some(Duration::ZERO));
        assert!(!r.is_stale(t0 + SEC, t0));
    }

    #[test]
    fn disconnected_stream_falls_back_with_its_reason() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        r.set_connected(false);
        assert!(!r.connected());
        assert_eq!(r.mode(t0, None), Mode::Fallback);
        assert_eq!(r.health(t0, None, false), Health::Degraded);
        assert_eq!(
            r.reason(t0, Health::Degraded, None, None).as_deref(),
            Some("flashblock stream disconnected: pending is latest")
        );
        // Any frame reconnects it.
        r.frame_seen(t0 + SEC);
        assert_eq!(r.mode(t0 + SEC, None), Mode::Flashblocks);
        assert_eq!(r.stream_lag(t0 + 3 * SEC), Some(2 * SEC));
    }

    #[test]
    fn unreachable_upstream_falls_back_and_makes_pending_unreadable() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        assert!(r.readable(11, true, 10));
        assert_eq!(r.set_upstream_error(Some("timeout".into())), None);
        assert_eq!(r.upstream_error(), Some("timeout"));
        assert!(!r.readable(11, true, 10));
        assert_eq!(r.mode(t0, None), Mode::Fallback);
        assert_eq!(
            r.reason(t0, Health::Degraded, None, None).as_deref(),
            Some("upstream unreachable (timeout): pending is latest")
        );
        assert_eq!(r.set_upstream_error(None).as_deref(), Some("timeout"));
        assert_eq!(r.mode(t0, None), Mode::Flashblocks);
    }

    #[test]
    fn readable_within_depth_and_on_an_anchor() {
        let r = serving(Instant::now());
        assert!(r.readable(13, true, 10));
        assert!(!r.readable(14, true, 10));
        assert!(!r.readable(11, false, 10));
        // A depth of 0 acts as 1; the bound saturates.
        let mut l = limits();
        l.max_pending_depth = 0;
        let r = Readiness::new(l);
        assert!(r.readable(11, true, 10) && !r.readable(12, true, 10));
        assert!(r.readable(u64::MAX, true, u64::MAX - 1));
    }

    #[test]
    fn pending_issues_fall_back_unreadable_first() {
        let t0 = Instant::now();
        let r = serving(t0);
        let inexact = PendingIssue::Inexact { number: 9 };
        for issue in [unreadable(), inexact] {
            assert_eq!(r.mode(t0, Some(&issue)), Mode::Fallback);
            assert_eq!(r.health(t0, Some(&issue), false), Health::Degraded);
        }
        let reason = r.reason(t0, Health::Degraded, Some(&unreadable()), None);
        assert!(reason.is_some_and(|s| s.starts_with("pending block 9 cannot be read")));
        let reason = r.reason(t0, Health::Degraded, Some(&inexact), None);
        assert!(reason.is_some_and(|s| s.starts_with("block 9 carries a post-exec transaction")));
    }

    #[test]
    fn a_recent_rejection_is_the_reason() {
        let t0 = Instant::now();
        let r = serving(t0);
        let mut frame = RejectedFrame {
            class: RejectClass::UnknownParent,
            block: 12,
            index: 0,
            upstream_tip: None,
            cause: "a reorg".into(),
            ago_ms: 9_999,
        };
        assert_eq!(
            r.reason(t0, Health::Degraded, None, Some(&frame)).as_deref(),
            Some(
                "flashblocks not applied: unknown_parent block 12 (upstream tip unknown): a reorg"
            )
        );
        frame.ago_ms = 10_000;
        assert_eq!(
            r.reason(t0, Health::Degraded, None, Some(&frame)).as_deref(),
            Some("no flashblock applied recently: pending is latest")
        );
    }

    #[test]
    fn one_bad_block_keeps_ready_while_its_divergence_is_recent() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        assert_eq!(r.block_started(1), None);
        assert_eq!(r.block_error(t0), None);
        // The later errors of the same block do not count again.
        assert_eq!(r.block_error(t0 + SEC), None);
        assert_eq!(r.execution_error_blocks(), 1);
        let later = t0 + 3 * SEC;
        r.tip_moved(later);
        assert_eq!(r.mode(later, None), Mode::Fallback);
        assert_eq!(r.health(later, None, true), Health::Ready);
        // Not when the last rejection was no divergence, nor with an unreadable pending block,
        // nor once the error is older than the canonical bound.
        assert_eq!(r.health(later, None, false), Health::Degraded);
        assert_eq!(r.health(later, Some(&unreadable()), true), Health::Degraded);
        let inexact = PendingIssue::Inexact { number: 2 };
        assert_eq!(r.health(later, Some(&inexact), true), Health::Ready);
        let old = t0 + 11 * SEC;
        r.tip_moved(old);
        assert_eq!(r.health(old, None, true), Health::Degraded);
    }

    #[test]
    fn hysteresis_degrades_after_k_bad_blocks_and_recovers_after_k_clean() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        r.block_started(1);
        assert_eq!(r.block_error(t0), None);
        r.block_started(2);
        assert_eq!(r.block_error(t0), None);
        r.block_started(3);
        assert_eq!(r.block_error(t0), Some(Transition::Degraded { streak: 3, recover_after: 3 }));
        assert!(r.execution_degraded());
        // Degraded wins over a flashblocks mode.
        r.applied(t0);
        assert_eq!(r.mode(t0, None), Mode::Flashblocks);
        assert_eq!(r.health(t0, None, true), Health::Degraded);
        let reason = r.reason(t0, Health::Degraded, None, None);
        assert!(reason.is_some_and(|s| s.starts_with("execution errors in 3 consecutive blocks")));
        // A fourth bad block keeps it degraded without a new transition.
        r.block_started(4);
        assert_eq!(r.block_error(t0), None);
        assert_eq!(r.execution_error_blocks(), 4);
        // Block 4 was bad: finishing it counts nothing.
        assert_eq!(r.block_started(5), None);
        assert_eq!(r.block_started(6), None);
        assert_eq!(r.execution_error_blocks(), 0);
        assert_eq!(r.block_started(7), None);
        assert_eq!(r.block_started(8), Some(Transition::Restored { block: 7, streak: 3 }));
        assert!(!r.execution_degraded());
        assert_eq!(r.health(t0, None, false), Health::Ready);
    }

    #[test]
    fn a_clean_block_breaks_the_bad_streak() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        for n in 1..=2 {
            r.block_started(n);
            r.block_error(t0);
        }
        r.block_started(3);
        r.block_started(4);
        r.block_error(t0);
        assert_eq!(r.execution_error_blocks(), 1);
        assert!(!r.execution_degraded());
    }

    #[test]
    fn a_rebuilt_block_is_not_finished() {
        let t0 = Instant::now();
        let mut r = serving(t0);
        r.block_started(1);
        r.block_error(t0);
        // Index 0 of the same block again (a new payload id): still the same bad block.
        r.block_started(1);
        assert_eq!(r.block_error(t0), None);
        assert_eq!(r.execution_error_blocks(), 1);
    }

    #[test]
    fn zero_hysteresis_acts_as_one() {
        let t0 = Instant::now();
        let mut l = limits();
        l.hysteresis_blocks = 0;
        let mut r = Readiness::new(l);
        r.block_started(1);
        assert_eq!(r.block_error(t0), Some(Transition::Degraded { streak: 1, recover_after: 1 }));
        assert_eq!(r.block_started(2), None);
        assert_eq!(r.block_started(3), Some(Transition::Restored { block: 2, streak: 1 }));
    }

    #[test]
    fn native_cutover_latches_and_is_always_ready() {
        let t0 = Instant::now();
        let mut l = limits();
        l.native_blocks_at = Some(1_000);
        let mut r = Readiness::new(l);
        r.tip_moved(t0);
        assert_eq!(r.cutover(999), Cutover::Before);
        assert_eq!(r.mode(t0, None), Mode::Fallback);
        assert_eq!(r.cutover(1_000), Cutover::JustPassed);
        // Latched: an earlier clock (NTP step) does not turn it back.
        assert_eq!(r.cutover(5), Cutover::Passed);
        assert!(r.cutover(5).passed() && !Cutover::Before.passed());
        assert_eq!(r.mode(t0, None), Mode::NativeBlocks);
        assert_eq!(r.health(t0, None, false), Health::Ready);
        // A stale tip is still not ready.
        assert_eq!(r.health(t0 + 11 * SEC, None, false), Health::NotReady);
    }

    #[test]
    fn no_cutover_set_never_passes() {
        let mut r = Readiness::new(limits());
        assert_eq!(r.cutover(u64::MAX), Cutover::Before);
    }
}
