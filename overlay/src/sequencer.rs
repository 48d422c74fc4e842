//! Ordering of flashblocks: a pure state machine over the block being built.
//!
//! The sequencer tracks (block number, payload id, parent hash, next expected index) and
//! classifies every decoded flashblock into a [`Decision`]. It does no I/O and reads no clock,
//! so every ordering case is a unit test.
//!
//! When a gap is detected the sequencer becomes *desynced*: the consumer keeps serving the
//! consistent prefix it already has, and every further flashblock of that block is a
//! [`Decision::Gap`] until the next index 0 starts a block again.

use alloy_primitives::B256;
use alloy_rpc_types_engine::PayloadId;
use op_alloy_rpc_types_engine::flashblock::OpFlashblockPayload;

use crate::frame::DecodedFlashblock;

/// Default highest accepted flashblock index (Base sends 0..=10 per block).
pub const DEFAULT_MAX_INDEX: u64 = 64;

/// Default bound on how far the pending block may run ahead of the canonical tip (Base's
/// `--max-pending-blocks-depth` is the same idea): tip+1 always, tip+2 and further only while
/// the block before it is being streamed.
pub const DEFAULT_MAX_PENDING_DEPTH: u64 = 3;

/// What the sequencer knows of the canonical chain: the upstream's tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipView {
    /// Tip block number.
    pub number: u64,
    /// Tip block hash.
    pub hash: B256,
    /// Tip timestamp (seconds).
    pub timestamp: u64,
}

/// Why a flashblock cannot apply on top of what the node knows of the canonical chain. Such
/// frames never move the sequencer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The block is more than the allowed depth ahead of the upstream's tip, or ahead of it
    /// without the block before it being streamed.
    #[error("ahead of the upstream's tip")]
    Ahead,
    /// Index 0 of the tip's child whose parent is not the tip.
    #[error("parent is not the upstream's tip")]
    UnknownParent,
    /// A block above the tip with a timestamp not after the tip's: it cannot extend this
    /// chain.
    #[error("timestamp not after the upstream's tip: another chain")]
    OtherChain,
}

impl Rejection {
    /// Stable, low-cardinality label for metrics and status.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Ahead => "ahead",
            Self::UnknownParent => "unknown_parent",
            Self::OtherChain => "other_chain",
        }
    }

    /// The likely cause, for operators.
    pub const fn cause(&self) -> &'static str {
        match self {
            Self::Ahead => {
                "the upstream is still syncing or not advancing (unreachable?), or the stream is for another chain"
            }
            Self::UnknownParent => {
                "the stream builds on a block the upstream does not have as its tip: another chain, a reorg, or an upstream that is behind"
            }
            Self::OtherChain => {
                "the stream is for another chain (its blocks are older than the upstream's tip at higher numbers)"
            }
        }
    }
}

/// What to do with a flashblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Index 0 of a new (or re-built) block: drop the pending block and start this one.
    StartBlock,
    /// The next flashblock of the current block: apply it on top of the prefix.
    Next,
    /// Already applied: ignore.
    Duplicate,
    /// One or more flashblocks were missed: ignore this one and keep serving the prefix until
    /// the next index 0.
    Gap {
        /// Index the sequencer was waiting for (0 when the index 0 of a newer block was
        /// missed).
        expected: u64,
        /// Index that arrived.
        got: u64,
    },
    /// Belongs to an older block (or arrived before any block was started): ignore.
    Stale,
    /// Implausible against the canonical tip (see [`Rejection`]): ignore.
    Rejected(Rejection),
    /// Breaks the protocol: ignore.
    Invalid(InvalidReason),
}

impl Decision {
    /// Stable, low-cardinality label for metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::StartBlock => "start_block",
            Self::Next => "next",
            Self::Duplicate => "duplicate",
            Self::Gap { .. } => "gap",
            Self::Stale => "stale",
            Self::Rejected(r) => r.label(),
            Self::Invalid(_) => "invalid",
        }
    }

    /// Whether the consumer should apply the flashblock ([`Self::StartBlock`] or
    /// [`Self::Next`]).
    pub const fn is_apply(&self) -> bool {
        matches!(self, Self::StartBlock | Self::Next)
    }
}

/// Why a flashblock was classified [`Decision::Invalid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// Index 0 without a `base`.
    #[error("index 0 without a base")]
    BaseMissingOnIndexZero,
    /// A non-zero index carrying a `base`.
    #[error("base present on a non-zero index")]
    BasePresentOnNonZeroIndex,
    /// A non-zero index of the current block under another payload id.
    #[error("payload id differs from the current block's")]
    PayloadIdMismatch,
    /// Index 0 whose `base.block_number` and `metadata.block_number` disagree.
    #[error("base and metadata block numbers differ")]
    BlockNumberMismatch,
    /// Index 0 repeated with the same payload id but another parent hash.
    #[error("parent hash differs from the current block's")]
    ParentMismatch,
    /// `prev_flashblock_id` does not name the flashblock just before this one.
    #[error("prev_flashblock_id does not link to the previous flashblock")]
    PrevIdMismatch,
    /// Index above the configured maximum.
    #[error("flashblock index above the maximum")]
    IndexTooHigh,
}

impl InvalidReason {
    /// Stable, low-cardinality label for metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::BaseMissingOnIndexZero => "base_missing_on_index_zero",
            Self::BasePresentOnNonZeroIndex => "base_present_on_non_zero_index",
            Self::PayloadIdMismatch => "payload_id_mismatch",
            Self::BlockNumberMismatch => "block_number_mismatch",
            Self::ParentMismatch => "parent_mismatch",
            Self::PrevIdMismatch => "prev_id_mismatch",
            Self::IndexTooHigh => "index_too_high",
        }
    }
}

/// The block currently being followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    block_number: u64,
    payload_id: PayloadId,
    parent_hash: B256,
    /// Index of the next flashblock to apply; also the length of the applied prefix.
    next_index: u64,
    /// False once a gap was seen; stays false until the next index 0.
    synced: bool,
}

/// Classifies flashblocks against the block being built. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlashblockSequencer {
    cursor: Option<Cursor>,
    max_index: u64,
    /// The last rejected block (number, payload id): its other flashblocks share the verdict.
    rejected: Option<(u64, PayloadId, Rejection)>,
}

impl Default for FlashblockSequencer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_INDEX)
    }
}

impl FlashblockSequencer {
    /// Creates a sequencer that rejects indices above `max_index`.
    pub const fn new(max_index: u64) -> Self {
        Self { cursor: None, max_index, rejected: None }
    }

    /// Highest accepted flashblock index.
    pub const fn max_index(&self) -> u64 {
        self.max_index
    }

    /// Forgets the current block; the next index 0 starts one.
    ///
    /// Call it when the canonical chain moved past or away from the current block (e.g. a
    /// reorg, or an upstream restart that builds lower block numbers again), since older
    /// index 0s are otherwise [`Decision::Stale`].
    pub fn reset(&mut self) {
        self.cursor = None;
        self.rejected = None;
    }

    /// The current block as `(block number, payload id, next expected index)`.
    ///
    /// `next_index` is also the number of flashblocks of the consistent prefix.
    pub fn current(&self) -> Option<(u64, PayloadId, u64)> {
        self.cursor.map(|c| (c.block_number, c.payload_id, c.next_index))
    }

    /// Parent hash of the current block.
    pub fn parent_hash(&self) -> Option<B256> {
        self.cursor.map(|c| c.parent_hash)
    }

    /// Whether the current block's prefix is complete so far (no gap seen since its index 0).
    pub fn is_synced(&self) -> bool {
        self.cursor.is_some_and(|c| c.synced)
    }

    /// Classifies `fb` and advances the state on [`Decision::StartBlock`] and
    /// [`Decision::Next`] (and marks the block desynced on gaps).
    pub fn classify(&mut self, fb: &DecodedFlashblock) -> Decision {
        self.classify_payload(&fb.payload, fb.prev_flashblock_id)
    }

    /// [`Self::classify`], after checking `fb` is plausible against the canonical `tip`: a
    /// block at or below the tip is [`Decision::Stale`] (except the last flashblocks of the
    /// block being streamed, sealed while they were in flight); index 0 must be the tip's
    /// child built on it, or the child of the block being streamed, at most `max_depth`
    /// blocks ahead of the tip (tip+2 is also accepted alone: the node may have joined while
    /// tip+1 was streaming). Anything else is [`Decision::Rejected`] and moves nothing.
    pub fn classify_at(
        &mut self,
        fb: &DecodedFlashblock,
        tip: Option<TipView>,
        max_depth: u64,
    ) -> Decision {
        if let Some(tip) = tip {
            if let Some(d) = self.check(fb, tip, max_depth.max(1)) {
                return d;
            }
        }
        self.classify(fb)
    }

    fn check(&mut self, fb: &DecodedFlashblock, tip: TipView, max_depth: u64) -> Option<Decision> {
        let number = fb.block_number();
        let current = self.cursor.map(|c| c.block_number);
        if number <= tip.number {
            let tail_of_current = number == tip.number && fb.index() > 0 && current == Some(number);
            return (!tail_of_current).then_some(Decision::Stale);
        }
        let ahead = number - tip.number;
        let Some(base) = fb.payload.base.as_ref().filter(|_| fb.index() == 0) else {
            // A delta of a rejected block shares its verdict; the rest is the sequencer's (a
            // delta of a newer block is a gap: it never moves the cursor).
            return self
                .rejected
                .filter(|(n, id, _)| *n == number && *id == fb.payload.payload_id)
                .map(|(_, _, r)| Decision::Rejected(r));
        };
        if base.timestamp <= tip.timestamp {
            return Some(self.reject(fb, Rejection::OtherChain));
        }
        if ahead > max_depth {
            return Some(self.reject(fb, Rejection::Ahead));
        }
        let verdict = match ahead {
            1 if base.parent_hash != tip.hash => Some(Rejection::UnknownParent),
            1 | 2 => None,
            _ if current == Some(number - 1) || current == Some(number) => None,
            _ => Some(Rejection::Ahead),
        };
        verdict.map(|r| self.reject(fb, r))
    }

    fn reject(&mut self, fb: &DecodedFlashblock, r: Rejection) -> Decision {
        if fb.index() == 0 {
            self.rejected = Some((fb.block_number(), fb.payload.payload_id, r));
        }
        Decision::Rejected(r)
    }

    /// [`Self::classify`] on the parts of a [`DecodedFlashblock`].
    pub fn classify_payload(
        &mut self,
        payload: &OpFlashblockPayload,
        prev_flashblock_id: Option<(u64, u64)>,
    ) -> Decision {
        let index = payload.index;
        if index > self.max_index {
            return Decision::Invalid(InvalidReason::IndexTooHigh);
        }
        if index == 0 {
            self.classify_first(payload)
        } else {
            self.classify_delta(payload, prev_flashblock_id)
        }
    }

    fn classify_first(&mut self, payload: &OpFlashblockPayload) -> Decision {
        let Some(base) = &payload.base else {
            return Decision::Invalid(InvalidReason::BaseMissingOnIndexZero);
        };
        if base.block_number != payload.metadata.block_number {
            return Decision::Invalid(InvalidReason::BlockNumberMismatch);
        }

        if let Some(c) = &self.cursor {
            if base.block_number < c.block_number {
                return Decision::Stale;
            }
            // Same block, same build: a repeat of the index 0 we already have.
            if base.block_number == c.block_number && payload.payload_id == c.payload_id {
                return if base.parent_hash == c.parent_hash {
                    Decision::Duplicate
                } else {
                    Decision::Invalid(InvalidReason::ParentMismatch)
                };
            }
        }

        // A newer block, or the same block re-built under a new payload id (it replaces the
        // old build).
        self.cursor = Some(Cursor {
            block_number: base.block_number,
            payload_id: payload.payload_id,
            parent_hash: base.parent_hash,
            next_index: 1,
            synced: true,
        });
        Decision::StartBlock
    }

    fn classify_delta(
        &mut self,
        payload: &OpFlashblockPayload,
        prev_flashblock_id: Option<(u64, u64)>,
    ) -> Decision {
        let index = payload.index;
        if payload.base.is_some() {
            return Decision::Invalid(InvalidReason::BasePresentOnNonZeroIndex);
        }
        let block_number = payload.metadata.block_number;
        let Some(c) = &mut self.cursor else {
            return Decision::Stale;
        };
        if block_number < c.block_number {
            return Decision::Stale;
        }
        if block_number > c.block_number {
            // The index 0 of a newer block was missed. The cursor stays on the old block (one
            // bogus frame must not move it forward), desynced until an index 0 arrives.
            c.synced = false;
            return Decision::Gap { expected: 0, got: index };
        }
        if payload.payload_id != c.payload_id {
            return Decision::Invalid(InvalidReason::PayloadIdMismatch);
        }
        if index < c.next_index {
            return Decision::Duplicate;
        }
        if !c.synced || index > c.next_index {
            c.synced = false;
            return Decision::Gap { expected: c.next_index, got: index };
        }
        // `index >= 1` here, so `index - 1` cannot underflow.
        if prev_flashblock_id.is_some_and(|prev| prev != (block_number, index - 1)) {
            // The upstream's chain of flashblocks no longer matches ours: stop extending.
            c.synced = false;
            return Decision::Invalid(InvalidReason::PrevIdMismatch);
        }
        c.next_index += 1;
        Decision::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Bytes, B64};
    use op_alloy_rpc_types_engine::flashblock::{
        OpFlashblockPayloadBase, OpFlashblockPayloadDelta, OpFlashblockPayloadMetadata,
    };
    use std::sync::Arc;

    const P1: PayloadId = PayloadId(B64::new([1; 8]));
    const P2: PayloadId = PayloadId(B64::new([2; 8]));
    const PARENT: B256 = B256::repeat_byte(0xaa);

    /// A flashblock of `block` at `index`, with a base on index 0.
    fn fb(block: u64, index: u64, payload_id: PayloadId) -> DecodedFlashblock {
        let base = (index == 0).then(|| OpFlashblockPayloadBase {
            parent_hash: PARENT,
            block_number: block,
            gas_limit: 30_000_000,
            timestamp: block.wrapping_mul(2),
            extra_data: Bytes::new(),
            ..Default::default()
        });
        DecodedFlashblock {
            payload: OpFlashblockPayload {
                payload_id,
                index,
                base,
                diff: OpFlashblockPayloadDelta::default(),
                metadata: OpFlashblockPayloadMetadata { block_number: block, ..Default::default() },
            },
            prev_flashblock_id: None,
            post_exec_tx: None,
            raw_json: Arc::from("{}"),
            wire_len: 2,
        }
    }

    fn with_prev(mut f: DecodedFlashblock, prev: (u64, u64)) -> DecodedFlashblock {
        f.prev_flashblock_id = Some(prev);
        f
    }

    fn without_base(mut f: DecodedFlashblock) -> DecodedFlashblock {
        f.payload.base = None;
        f
    }

    fn with_base(mut f: DecodedFlashblock) -> DecodedFlashblock {
        f.payload.base = Some(OpFlashblockPayloadBase {
            block_number: f.payload.metadata.block_number,
            ..Default::default()
        });
        f
    }

    /// A sequencer that has applied indices `0..=last` of `block` under `P1`.
    fn at(block: u64, last: u64) -> FlashblockSequencer {
        let mut s = FlashblockSequencer::default();
        assert_eq!(s.classify(&fb(block, 0, P1)), Decision::StartBlock);
        for i in 1..=last {
            assert_eq!(s.classify(&fb(block, i, P1)), Decision::Next);
        }
        s
    }

    #[test]
    fn first_index_zero_starts_a_block() {
        let mut s = FlashblockSequencer::default();
        assert_eq!(s.current(), None);
        assert!(!s.is_synced());
        assert_eq!(s.classify(&fb(10, 0, P1)), Decision::StartBlock);
        assert_eq!(s.current(), Some((10, P1, 1)));
        assert_eq!(s.parent_hash(), Some(PARENT));
        assert!(s.is_synced());
    }

    #[test]
    fn consecutive_indices_are_next() {
        let mut s = at(10, 0);
        for i in 1..=10 {
            assert_eq!(s.classify(&fb(10, i, P1)), Decision::Next);
            assert_eq!(s.current(), Some((10, P1, i + 1)));
        }
    }

    #[test]
    fn newer_index_zero_starts_a_block() {
        let mut s = at(10, 5);
        assert_eq!(s.classify(&fb(11, 0, P2)), Decision::StartBlock);
        assert_eq!(s.current(), Some((11, P2, 1)));
        // Skipping blocks is fine too: the canonical chain fills them in.
        assert_eq!(s.classify(&fb(15, 0, P1)), Decision::StartBlock);
        assert_eq!(s.current(), Some((15, P1, 1)));
    }

    #[test]
    fn older_index_zero_is_stale() {
        let mut s = at(10, 3);
        assert_eq!(s.classify(&fb(9, 0, P2)), Decision::Stale);
        assert_eq!(s.current(), Some((10, P1, 4)));
    }

    #[test]
    fn repeated_index_zero_is_duplicate() {
        let mut s = at(10, 3);
        assert_eq!(s.classify(&fb(10, 0, P1)), Decision::Duplicate);
        // The prefix is untouched.
        assert_eq!(s.current(), Some((10, P1, 4)));
    }

    #[test]
    fn repeated_index_zero_with_other_parent_is_invalid() {
        let mut s = at(10, 3);
        let mut f = fb(10, 0, P1);
        f.payload.base.as_mut().unwrap().parent_hash = B256::repeat_byte(0xbb);
        assert_eq!(s.classify(&f), Decision::Invalid(InvalidReason::ParentMismatch));
        assert_eq!(s.current(), Some((10, P1, 4)));
    }

    #[test]
    fn rebuilt_block_replaces_the_old_one() {
        let mut s = at(10, 3);
        assert_eq!(s.classify(&fb(10, 0, P2)), Decision::StartBlock);
        assert_eq!(s.current(), Some((10, P2, 1)));
        // Late frames of the old build are rejected.
        assert_eq!(s.classify(&fb(10, 4, P1)), Decision::Invalid(InvalidReason::PayloadIdMismatch));
        assert_eq!(s.classify(&fb(10, 1, P2)), Decision::Next);
    }

    #[test]
    fn index_zero_without_base_is_invalid() {
        let mut s = FlashblockSequencer::default();
        assert_eq!(
            s.classify(&without_base(fb(10, 0, P1))),
            Decision::Invalid(InvalidReason::BaseMissingOnIndexZero)
        );
        assert_eq!(s.current(), None);
    }

    #[test]
    fn index_zero_with_disagreeing_numbers_is_invalid() {
        let mut s = FlashblockSequencer::default();
        let mut f = fb(10, 0, P1);
        f.payload.metadata.block_number = 11;
        assert_eq!(s.classify(&f), Decision::Invalid(InvalidReason::BlockNumberMismatch));
        assert_eq!(s.current(), None);
    }

    #[test]
    fn base_on_non_zero_index_is_invalid() {
        let mut s = at(10, 1);
        assert_eq!(
            s.classify(&with_base(fb(10, 2, P1))),
            Decision::Invalid(InvalidReason::BasePresentOnNonZeroIndex)
        );
        assert_eq!(s.classify(&fb(10, 2, P1)), Decision::Next);
    }

    #[test]
    fn delta_without_current_block_is_stale() {
        let mut s = FlashblockSequencer::default();
        assert_eq!(s.classify(&fb(10, 3, P1)), Decision::Stale);
        assert_eq!(s.current(), None);
    }

    #[test]
    fn delta_of_older_block_is_stale() {
        let mut s = at(10, 2);
        assert_eq!(s.classify(&fb(9, 7, P1)), Decision::Stale);
        assert_eq!(s.classify(&fb(10, 3, P1)), Decision::Next);
    }

    #[test]
    fn delta_of_newer_block_is_gap_until_next_index_zero() {
        let mut s = at(10, 2);
        assert_eq!(s.classify(&fb(11, 4, P2)), Decision::Gap { expected: 0, got: 4 });
        assert!(!s.is_synced());
        // The cursor stays on the consistent prefix.
        assert_eq!(s.current(), Some((10, P1, 3)));
        assert_eq!(s.classify(&fb(11, 5, P2)), Decision::Gap { expected: 0, got: 5 });
        // Even the next index of the old block is not applied any more.
        assert_eq!(s.classify(&fb(10, 3, P1)), Decision::Gap { expected: 3, got: 3 });
        // A late index 0 of the newer block resyncs.
        assert_eq!(s.classify(&fb(11, 0, P2)), Decision::StartBlock);
        assert!(s.is_synced());
        assert_eq!(s.classify(&fb(11, 1, P2)), Decision::Next);
    }

    #[test]
    fn bogus_far_future_delta_does_not_wedge() {
        let mut s = at(10, 2);
        assert_eq!(s.classify(&fb(u64::MAX, 1, P2)), Decision::Gap { expected: 0, got: 1 });
        assert_eq!(s.classify(&fb(11, 0, P1)), Decision::StartBlock);
    }

    #[test]
    fn payload_id_mismatch_is_invalid() {
        let mut s = at(10, 2);
        assert_eq!(s.classify(&fb(10, 3, P2)), Decision::Invalid(InvalidReason::PayloadIdMismatch));
        assert!(s.is_synced());
        assert_eq!(s.classify(&fb(10, 3, P1)), Decision::Next);
    }

    #[test]
    fn lower_index_is_duplicate() {
        let mut s = at(10, 4);
        for i in 1..=4 {
            assert_eq!(s.classify(&fb(10, i, P1)), Decision::Duplicate);
        }
        assert_eq!(s.current(), Some((10, P1, 5)));
        assert!(s.is_synced());
    }

    #[test]
    fn gap_desyncs_until_next_index_zero() {
        let mut s = at(10, 2);
        assert_eq!(s.classify(&fb(10, 5, P1)), Decision::Gap { expected: 3, got: 5 });
        assert!(!s.is_synced());
        // The prefix 0..=2 is what the consumer keeps serving.
        assert_eq!(s.current(), Some((10, P1, 3)));
        // Everything further of this block is ignored, even the missing index arriving late.
        assert_eq!(s.classify(&fb(10, 6, P1)), Decision::Gap { expected: 3, got: 6 });
        assert_eq!(s.classify(&fb(10, 3, P1)), Decision::Gap { expected: 3, got: 3 });
        // Already-applied indices are still plain duplicates.
        assert_eq!(s.classify(&fb(10, 1, P1)), Decision::Duplicate);
        assert_eq!(s.current(), Some((10, P1, 3)));
        // The next block starts cleanly.
        assert_eq!(s.classify(&fb(11, 0, P2)), Decision::StartBlock);
        assert!(s.is_synced());
        assert_eq!(s.classify(&fb(11, 1, P2)), Decision::Next);
    }

    #[test]
    fn gap_then_rebuild_of_same_block_resyncs() {
        let mut s = at(10, 2);
        assert_eq!(s.classify(&fb(10, 4, P1)), Decision::Gap { expected: 3, got: 4 });
        assert_eq!(s.classify(&fb(10, 0, P2)), Decision::StartBlock);
        assert!(s.is_synced());
    }

    #[test]
    fn matching_prev_id_is_next() {
        let mut s = at(10, 0);
        assert_eq!(s.classify(&with_prev(fb(10, 1, P1), (10, 0))), Decision::Next);
        assert_eq!(s.classify(&with_prev(fb(10, 2, P1), (10, 1))), Decision::Next);
    }

    #[test]
    fn prev_id_mismatch_is_invalid_and_desyncs() {
        let mut s = at(10, 1);
        assert_eq!(
            s.classify(&with_prev(fb(10, 2, P1), (10, 0))),
            Decision::Invalid(InvalidReason::PrevIdMismatch)
        );
        assert!(!s.is_synced());
        assert_eq!(s.current(), Some((10, P1, 2)));
        assert_eq!(s.classify(&fb(10, 3, P1)), Decision::Gap { expected: 2, got: 3 });
        let mut s = at(10, 1);
        assert_eq!(
            s.classify(&with_prev(fb(10, 2, P1), (9, 1))),
            Decision::Invalid(InvalidReason::PrevIdMismatch)
        );
    }

    #[test]
    fn prev_id_on_index_zero_is_not_checked() {
        // It names the previous block's last flashblock, which we may not have seen.
        let mut s = at(10, 3);
        assert_eq!(s.classify(&with_prev(fb(11, 0, P1), (10, 9))), Decision::StartBlock);
    }

    #[test]
    fn index_too_high_is_invalid() {
        let mut s = FlashblockSequencer::new(4);
        assert_eq!(s.max_index(), 4);
        assert_eq!(s.classify(&fb(10, 0, P1)), Decision::StartBlock);
        for i in 1..=4 {
            assert_eq!(s.classify(&fb(10, i, P1)), Decision::Next);
        }
        assert_eq!(s.classify(&fb(10, 5, P1)), Decision::Invalid(InvalidReason::IndexTooHigh));
        assert_eq!(
            s.classify(&fb(10, u64::MAX, P1)),
            Decision::Invalid(InvalidReason::IndexTooHigh)
        );
        assert_eq!(FlashblockSequencer::default().max_index(), DEFAULT_MAX_INDEX);
    }

    #[test]
    fn reset_forgets_the_block() {
        let mut s = at(10, 3);
        s.reset();
        assert_eq!(s.current(), None);
        assert_eq!(s.classify(&fb(10, 4, P1)), Decision::Stale);
        // After a reset an older block may start again (e.g. an upstream restart).
        assert_eq!(s.classify(&fb(3, 0, P1)), Decision::StartBlock);
    }

    const TIP: TipView = TipView { number: 10, hash: PARENT, timestamp: 20 };

    #[test]
    fn far_future_index_zero_is_rejected_and_moves_nothing() {
        let mut s = FlashblockSequencer::default();
        assert_eq!(s.classify_at(&fb(11, 0, P1), Some(TIP), 3), Decision::StartBlock);
        let before = s.current();
        for far in [14, u64::MAX, 1_000] {
            assert_eq!(
                s.classify_at(&fb(far, 0, P2), Some(TIP), 3),
                Decision::Rejected(Rejection::Ahead)
            );
            assert_eq!(s.current(), before);
        }
        // Its deltas share the verdict and never desync the block being streamed.
        assert_eq!(
            s.classify_at(&fb(1_000, 1, P2), Some(TIP), 3),
            Decision::Rejected(Rejection::Ahead)
        );
        assert!(s.is_synced());
        assert_eq!(s.classify_at(&fb(11, 1, P1), Some(TIP), 3), Decision::Next);
    }

    #[test]
    fn pending_chain_is_bounded_by_the_depth() {
        let mut s = FlashblockSequencer::default();
        // tip+1, then each child while its parent streams, up to the depth.
        for n in 11..=13 {
            assert_eq!(s.classify_at(&fb(n, 0, P1), Some(TIP), 3), Decision::StartBlock, "{n}");
        }
        assert_eq!(
            s.classify_at(&fb(14, 0, P1), Some(TIP), 3),
            Decision::Rejected(Rejection::Ahead)
        );
        assert_eq!(s.current(), Some((13, P1, 1)));
        // tip+3 alone (its parent never streamed) is too far.
        let mut s = FlashblockSequencer::default();
        assert_eq!(
            s.classify_at(&fb(13, 0, P1), Some(TIP), 3),
            Decision::Rejected(Rejection::Ahead)
        );
        // tip+2 alone is fine: the node may have joined while tip+1 was streaming.
        assert_eq!(s.classify_at(&fb(12, 0, P1), Some(TIP), 3), Decision::StartBlock);
    }

    #[test]
    fn tip_child_on_another_parent_is_unknown_parent() {
        let mut s = at(10, 2);
        let mut f = fb(11, 0, P2);
        f.payload.base.as_mut().unwrap().parent_hash = B256::repeat_byte(0xcc);
        assert_eq!(s.classify_at(&f, Some(TIP), 3), Decision::Rejected(Rejection::UnknownParent));
        assert_eq!(
            s.classify_at(&fb(11, 1, P2), Some(TIP), 3),
            Decision::Rejected(Rejection::UnknownParent)
        );
        assert_eq!(s.current(), Some((10, P1, 3)));
    }

    #[test]
    fn older_timestamp_above_the_tip_is_another_chain() {
        let mut s = FlashblockSequencer::default();
        let mut f = fb(11, 0, P1);
        f.payload.base.as_mut().unwrap().timestamp = 20;
        assert_eq!(s.classify_at(&f, Some(TIP), 3), Decision::Rejected(Rejection::OtherChain));
        assert_eq!(s.current(), None);
    }

    #[test]
    fn behind_the_tip_is_stale_except_the_tail_of_the_streamed_block() {
        let mut s = at(10, 2);
        assert_eq!(s.classify_at(&fb(10, 3, P1), Some(TIP), 3), Decision::Next);
        assert_eq!(s.classify_at(&fb(10, 0, P2), Some(TIP), 3), Decision::Stale);
        assert_eq!(s.classify_at(&fb(9, 4, P1), Some(TIP), 3), Decision::Stale);
        let mut s = FlashblockSequencer::default();
        assert_eq!(s.classify_at(&fb(10, 3, P1), Some(TIP), 3), Decision::Stale);
        assert_eq!(Decision::Rejected(Rejection::Ahead).label(), "ahead");
        assert!(!Rejection::OtherChain.cause().is_empty());
    }

    #[test]
    fn labels_are_stable() {
        let all = [
            InvalidReason::BaseMissingOnIndexZero,
            InvalidReason::BasePresentOnNonZeroIndex,
            InvalidReason::PayloadIdMismatch,
            InvalidReason::BlockNumberMismatch,
            InvalidReason::ParentMismatch,
            InvalidReason::PrevIdMismatch,
            InvalidReason::IndexTooHigh,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), all.len());
        assert!(all.iter().all(|r| !r.to_string().is_empty()));
        assert_eq!(Decision::Gap { expected: 1, got: 2 }.label(), "gap");
        assert_eq!(Decision::Invalid(InvalidReason::IndexTooHigh).label(), "invalid");
        assert!(Decision::StartBlock.is_apply() && Decision::Next.is_apply());
        assert!(!Decision::Duplicate.is_apply() && !Decision::Stale.is_apply());
    }

    /// Random streams never panic, and whatever is applied is gap-free: `StartBlock` is always
    /// index 0 and `Next` always extends the last applied flashblock by exactly one.
    #[test]
    fn random_sequences_never_skip_an_index() {
        use rand::{rngs::StdRng, Rng, SeedableRng};

        let mut rng = StdRng::seed_from_u64(0x5eed);
        let ids = [P1, P2, PayloadId::new([3; 8])];
        let mut applied = 0usize;
        for _ in 0..3_000 {
            let mut s = FlashblockSequencer::new(rng.random_range(0..12));
            // (block, payload id, last applied index)
            let mut last: Option<(u64, PayloadId, u64)> = None;
            let mut block = rng.random_range(0..4u64);
            for _ in 0..rng.random_range(1..40) {
                // Mostly well-behaved streams, with drops, repeats, reorders and junk.
                if rng.random_bool(0.15) {
                    block = block.saturating_add(1);
                }
                let b = match rng.random_range(0..10) {
                    0 => block.saturating_sub(1),
                    1 => block.saturating_add(1),
                    2 => u64::MAX - rng.random_range(0..2),
                    _ => block,
                };
                let index = match rng.random_range(0..10) {
                    0 => u64::MAX - rng.random_range(0..2),
                    1..=3 => 0,
                    _ => rng.random_range(0..14),
                };
                let mut f = fb(b, index, ids[rng.random_range(0..ids.len())]);
                match rng.random_range(0..20) {
                    0 => f = without_base(f),
                    1 => f = with_base(f),
                    2 => f.payload.metadata.block_number = rng.random(),
                    3 => f.prev_flashblock_id = Some((b, index.wrapping_sub(1))),
                    4 => f.prev_flashblock_id = Some((rng.random(), rng.random())),
                    _ => {}
                }

                let before = s.current();
                let decision = s.classify(&f);
                let p = &f.payload;
                match decision {
                    Decision::StartBlock => {
                        assert_eq!(p.index, 0);
                        last = Some((f.block_number(), p.payload_id, 0));
                        applied += 1;
                    }
                    Decision::Next => {
                        let (lb, lid, li) = last.expect("Next without a started block");
                        assert_eq!((p.metadata.block_number, p.payload_id), (lb, lid));
                        assert_eq!(p.index, li + 1, "Next skipped an index");
                        last = Some((lb, lid, p.index));
                        applied += 1;
                    }
                    // Ignored flashblocks never move the prefix.
                    _ => assert_eq!(s.current(), before, "{decision:?} moved the cursor"),
                }
                if let Some((lb, lid, li)) = last {
                    assert_eq!(s.current(), Some((lb, lid, li + 1)));
                }
                assert!(s.current().is_none_or(|(_, _, next)| next <= s.max_index() + 1));
            }
        }
        // The generator must actually exercise the accepting paths.
        assert!(applied > 10_000, "only {applied} applied");
    }
}
