//! Gap-free resume: `/ws?from=<block_number>-<index>` (the last frame the subscriber has, in
//! the `prev_flashblock_id` format) replays every later frame the ring still holds, then the
//! live stream, with no duplicate and no gap; `from=earliest` replays the whole ring. A point
//! the ring cannot continue from is closed with [`RESUME_GAP_CLOSE_CODE`] and a reason, or with
//! `&on_gap=next_block` continued from the next index 0.
//!
//! The decision per frame is [`Cursor::step`], a pure state machine: everything up to the
//! resume point is skipped, the frame after it must be its successor (the next index, or index
//! 0 of a later block), and from then on every frame is delivered.

/// The response header a fan-out that serves `?from=` sends with its 101.
pub use flashnode_wsclient::RESUME_HEADER;

/// The close code a resuming subscriber gets when frames after its point are gone (a private
/// code, RFC 6455 §7.4.2); the reason text names the point and the oldest frame still held.
pub const RESUME_GAP_CLOSE_CODE: u16 = 4001;

/// Where a subscriber asked to resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// Every frame the ring holds, then live.
    Earliest,
    /// Every frame after `(block_number, index)`, then live.
    After((u64, u64)),
}

/// What to do when the ring cannot continue from the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum OnGap {
    /// Close with [`RESUME_GAP_CLOSE_CODE`] (the default).
    #[default]
    Close,
    /// Continue with the live stream from the next index 0.
    NextBlock,
}

/// A resume request: `from=` and `on_gap=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    pub(crate) from: From,
    pub(crate) on_gap: OnGap,
}

/// `from=` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResumeError {
    /// Not `earliest` nor `<block_number>-<index>`.
    #[error(
        "from must be <block_number>-<index> (the last flashblock you have) or earliest, not {0:?}"
    )]
    From(String),
    /// `on_gap=` is neither `close` nor `next_block`.
    #[error("on_gap must be close or next_block, not {0:?}")]
    OnGap(String),
    /// `on_gap=` without `from=`.
    #[error("on_gap needs from=<block_number>-<index>")]
    OnGapWithoutFrom,
}

/// Parses `from=`.
pub(crate) fn parse_from(value: &str) -> Result<From, ResumeError> {
    if value == "earliest" {
        return Ok(From::Earliest);
    }
    let bad = || ResumeError::From(value.into());
    let (block, index) = value.split_once('-').ok_or_else(bad)?;
    Ok(From::After((block.parse().map_err(|_| bad())?, index.parse().map_err(|_| bad())?)))
}

/// Parses `on_gap=`.
pub(crate) fn parse_on_gap(value: &str) -> Result<OnGap, ResumeError> {
    match value {
        "close" => Ok(OnGap::Close),
        "next_block" => Ok(OnGap::NextBlock),
        other => Err(ResumeError::OnGap(other.into())),
    }
}

/// Where a subscriber is in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Cursor {
    /// Every frame is delivered.
    #[default]
    Live,
    /// Resuming after `after`: frames up to it are skipped, the next must follow it.
    After {
        /// The last frame the subscriber has.
        after: (u64, u64),
        /// What a frame that does not follow it means.
        on_gap: OnGap,
    },
    /// Past a gap with `on_gap=next_block`: waiting for an index 0.
    NextIndexZero,
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send it.
    Deliver,
    /// The subscriber has it already, or is waiting for an index 0.
    Skip,
    /// It does not follow the resume point: the frames in between are lost.
    Gap {
        /// The point the subscriber resumed from.
        after: (u64, u64),
        /// The frame that came instead of its successor.
        got: (u64, u64),
    },
}

/// Whether `next` directly follows `prev`: the next index of its block, or a later block's
/// index 0.
pub(crate) fn follows(prev: (u64, u64), next: (u64, u64)) -> bool {
    next == (prev.0, prev.1.saturating_add(1)) || (next.0 > prev.0 && next.1 == 0)
}

impl Cursor {
    /// Decides for the frame at `position`, and advances.
    pub(crate) fn step(&mut self, position: (u64, u64)) -> Step {
        match *self {
            Self::Live => Step::Deliver,
            Self::NextIndexZero if position.1 == 0 => {
                *self = Self::Live;
                Step::Deliver
            }
            Self::NextIndexZero => Step::Skip,
            Self::After { after, .. } if position <= after => Step::Skip,
            Self::After { after, .. } if follows(after, position) => {
                *self = Self::Live;
                Step::Deliver
            }
            Self::After { after, on_gap: OnGap::Close } => Step::Gap { after, got: position },
            Self::After { on_gap: OnGap::NextBlock, .. } => {
                *self = Self::NextIndexZero;
                self.step(position)
            }
        }
    }
}

/// The close reason of a gap found at the handshake (the ring's oldest frame is past the
/// point's successor).
pub(crate) fn gap_before_ring(after: (u64, u64), oldest: (u64, u64)) -> String {
    format!(
        "resume gap: {}-{} is older than the ring (oldest {}-{}); reconnect without from, or add on_gap=next_block",
        after.0, after.1, oldest.0, oldest.1
    )
}

/// The close reason of a gap found in the stream.
pub(crate) fn gap_in_stream(after: (u64, u64), got: (u64, u64)) -> String {
    format!(
        "resume gap: {}-{} is followed by {}-{} here; reconnect without from, or add on_gap=next_block",
        after.0, after.1, got.0, got.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_and_on_gap_parse() {
        assert_eq!(parse_from("12-3"), Ok(From::After((12, 3))));
        assert_eq!(parse_from("earliest"), Ok(From::Earliest));
        for bad in ["", "12", "12-", "-3", "a-b", "12-3-4", "0x1-2"] {
            assert_eq!(parse_from(bad), Err(ResumeError::From(bad.into())), "{bad}");
        }
        assert_eq!(parse_on_gap("next_block"), Ok(OnGap::NextBlock));
        assert_eq!(parse_on_gap("close"), Ok(OnGap::Close));
        assert_eq!(parse_on_gap("skip"), Err(ResumeError::OnGap("skip".into())));
    }

    #[test]
    fn a_resume_skips_what_it_has_then_delivers_everything() {
        let mut c = Cursor::After { after: (10, 3), on_gap: OnGap::Close };
        let steps: Vec<Step> =
            [(10, 1), (10, 2), (10, 3), (10, 4), (10, 5), (11, 0)].map(|p| c.step(p)).to_vec();
        use Step::*;
        assert_eq!(steps, [Skip, Skip, Skip, Deliver, Deliver, Deliver]);
        assert_eq!(c, Cursor::Live);
        // The end of a block: the next block's index 0 follows.
        let mut end = Cursor::After { after: (10, 9), on_gap: OnGap::Close };
        assert_eq!(end.step((11, 0)), Deliver);
    }

    #[test]
    fn a_frame_that_does_not_follow_is_a_gap_or_waits_for_index_zero() {
        let mut close = Cursor::After { after: (10, 3), on_gap: OnGap::Close };
        assert_eq!(close.step((10, 5)), Step::Gap { after: (10, 3), got: (10, 5) });
        assert_eq!(
            Cursor::After { after: (10, 3), on_gap: OnGap::Close }.step((11, 2)),
            Step::Gap { after: (10, 3), got: (11, 2) }
        );
        let mut next = Cursor::After { after: (10, 3), on_gap: OnGap::NextBlock };
        assert_eq!(next.step((10, 5)), Step::Skip);
        assert_eq!(next.step((10, 6)), Step::Skip);
        assert_eq!(next.step((11, 0)), Step::Deliver);
        assert_eq!(next.step((11, 1)), Step::Deliver);
        assert!(follows((5, 2), (5, 3)) && follows((5, 2), (9, 0)));
        assert!(!follows((5, 2), (5, 4)) && !follows((5, 2), (6, 1)) && !follows((5, 2), (5, 0)));
    }

    #[test]
    fn gap_reasons_fit_a_close_frame() {
        let long = gap_before_ring((u64::MAX, u64::MAX), (u64::MAX, u64::MAX));
        assert!(long.starts_with("resume gap: "));
        // Truncated to 123 bytes by the close frame; the head says what happened.
        assert!(long[..123].contains("older than the ring"));
        assert!(gap_in_stream((1, 2), (1, 4)).contains("1-2 is followed by 1-4"));
    }
}
