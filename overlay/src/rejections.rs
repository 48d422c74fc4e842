//! Bookkeeping of frames that could not be applied: counts by [`RejectClass`] and the last
//! rejected frame, as `flashnode_status` reports them. Pure: it reads no clock (every
//! observation carries its `Instant`), so each rule is a unit test.

use crate::sequencer::Rejection;
use serde::{Serialize, Serializer};
use std::{
    fmt,
    time::{Duration, Instant},
};

/// Why a frame could not be applied. [`Self::as_str`] is its label in status, logs and the
/// `outcome` of `flashnode_overlay_flashblocks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectClass {
    /// At or behind the upstream's tip.
    Stale,
    /// Too far ahead of the upstream's tip ([`Rejection::Ahead`]).
    Ahead,
    /// Parent not known to the upstream ([`Rejection::UnknownParent`]).
    UnknownParent,
    /// Cannot extend this chain ([`Rejection::OtherChain`]).
    OtherChain,
    /// Re-execution failed: our state diverges from the builder's.
    Diverged,
    /// Re-execution could not read the upstream (not a divergence).
    Upstream,
}

impl RejectClass {
    /// The stable, low-cardinality label (status JSON, metric label, warning key).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Ahead => Rejection::Ahead.label(),
            Self::UnknownParent => Rejection::UnknownParent.label(),
            Self::OtherChain => Rejection::OtherChain.label(),
            Self::Diverged => "diverged",
            Self::Upstream => "upstream",
        }
    }
}

impl From<Rejection> for RejectClass {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Ahead => Self::Ahead,
            Rejection::UnknownParent => Self::UnknownParent,
            Rejection::OtherChain => Self::OtherChain,
        }
    }
}

impl fmt::Display for RejectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RejectClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Frames that could not be applied, by class (`flashnode_overlay_flashblocks_total` has the
/// same labels as `outcome`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedCounts {
    /// Behind the upstream's tip.
    pub stale: u64,
    /// Too far ahead of the upstream's tip.
    pub ahead: u64,
    /// Parent not known to the upstream.
    pub unknown_parent: u64,
    /// Cannot extend this chain.
    pub other_chain: u64,
    /// Re-execution failed (our state diverges from the builder's, or the upstream could not
    /// be read while re-executing).
    pub diverged: u64,
}

/// The last frame that could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedFrame {
    /// Class: `stale`, `ahead`, `unknown_parent`, `other_chain`, `diverged` or `upstream`.
    pub class: RejectClass,
    /// Its block number.
    pub block: u64,
    /// Its flashblock index.
    pub index: u64,
    /// The upstream's tip then.
    pub upstream_tip: Option<u64>,
    /// The likely cause.
    pub cause: String,
    /// Milliseconds since.
    pub ago_ms: u64,
}

/// A rejection younger than this is the reason given for a fallback (older ones are history).
pub(crate) const RECENT_REJECTION: Duration = Duration::from_secs(10);

/// Counts by class and the last rejected frame.
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    counts: RejectedCounts,
    last: Option<(RejectedFrame, Instant)>,
}

impl Rejections {
    /// Counts one frame of `class` without remembering it (routine: deltas of sealed blocks).
    pub(crate) fn count(&mut self, class: RejectClass) {
        let c = &mut self.counts;
        let counter = match class {
            RejectClass::Stale => &mut c.stale,
            RejectClass::Ahead => &mut c.ahead,
            RejectClass::UnknownParent => &mut c.unknown_parent,
            RejectClass::OtherChain => &mut c.other_chain,
            // Both are execution errors: status has one counter for them.
            RejectClass::Diverged | RejectClass::Upstream => &mut c.diverged,
        };
        *counter = counter.saturating_add(1);
    }

    /// Counts `frame` and remembers it as the last rejected one, seen at `now`.
    pub(crate) fn record(&mut self, frame: RejectedFrame, now: Instant) {
        self.count(frame.class);
        self.last = Some((frame, now));
    }

    /// Counts by class.
    pub(crate) fn counts(&self) -> RejectedCounts {
        self.counts
    }

    /// The last rejected frame, its age as of `now`.
    pub(crate) fn last(&self, now: Instant) -> Option<RejectedFrame> {
        self.last.as_ref().map(|(f, at)| RejectedFrame {
            ago_ms: millis(now.saturating_duration_since(*at)),
            ..f.clone()
        })
    }

    /// Whether the last rejected frame was of `class` (a divergence behind a fallback is what
    /// the readiness hysteresis tolerates).
    pub(crate) fn last_is(&self, class: RejectClass) -> bool {
        self.last.as_ref().is_some_and(|(f, _)| f.class == class)
    }
}

/// Whole milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [RejectClass; 6] = [
        RejectClass::Stale,
        RejectClass::Ahead,
        RejectClass::UnknownParent,
        RejectClass::OtherChain,
        RejectClass::Diverged,
        RejectClass::Upstream,
    ];

    fn frame(class: RejectClass, block: u64) -> RejectedFrame {
        RejectedFrame {
            class,
            block,
            index: 0,
            upstream_tip: Some(block.saturating_sub(1)),
            cause: "why".into(),
            ago_ms: 0,
        }
    }

    #[test]
    fn labels_are_the_wire_strings() {
        let labels: Vec<_> = ALL.iter().map(RejectClass::as_str).collect();
        assert_eq!(
            labels,
            ["stale", "ahead", "unknown_parent", "other_chain", "diverged", "upstream"]
        );
        for c in ALL {
            assert_eq!(serde_json::to_value(c).ok(), Some(serde_json::json!(c.as_str())));
            assert_eq!(c.to_string(), c.as_str());
        }
    }

    #[test]
    fn sequencer_rejections_keep_their_label() {
        for r in [Rejection::Ahead, Rejection::UnknownParent, Rejection::OtherChain] {
            assert_eq!(RejectClass::from(r).as_str(), r.label());
        }
    }

    #[test]
    fn counts_by_class_execution_errors_share_one_counter() {
        let mut r = Rejections::default();
        let now = Instant::now();
        for c in ALL {
            r.record(frame(c, 7), now);
        }
        r.count(RejectClass::Stale);
        assert_eq!(
            r.counts(),
            RejectedCounts { stale: 2, ahead: 1, unknown_parent: 1, other_chain: 1, diverged: 2 }
        );
    }

    #[test]
    fn routine_count_does_not_replace_the_last_frame() {
        let mut r = Rejections::default();
        let t0 = Instant::now();
        assert_eq!(r.last(t0), None);
        r.record(frame(RejectClass::Ahead, 9), t0);
        r.count(RejectClass::Stale);
        let last = r.last(t0).map(|f| (f.class, f.block));
        assert_eq!(last, Some((RejectClass::Ahead, 9)));
    }

    #[test]
    fn last_frame_ages_and_never_goes_negative() {
        let mut r = Rejections::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1_500);
        r.record(frame(RejectClass::Diverged, 3), t1);
        assert_eq!(r.last(t1 + Duration::from_millis(250)).map(|f| f.ago_ms), Some(250));
        // A clock read before the record (another thread's `now`): zero, not a panic.
        assert_eq!(r.last(t0).map(|f| f.ago_ms), Some(0));
    }

    #[test]
    fn divergence_is_detected_from_the_last_frame_only() {
        let mut r = Rejections::default();
        let now = Instant::now();
        assert!(!r.last_is(RejectClass::Diverged));
        r.record(frame(RejectClass::Diverged, 5), now);
        assert!(r.last_is(RejectClass::Diverged));
        // An upstream read failure is not a divergence.
        r.record(frame(RejectClass::Upstream, 5), now);
        assert!(!r.last_is(RejectClass::Diverged));
        assert!(r.last_is(RejectClass::Upstream));
    }

    #[test]
    fn millis_saturates() {
        assert_eq!(millis(Duration::from_millis(42)), 42);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
