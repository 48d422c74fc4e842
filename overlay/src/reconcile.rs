//! Reconciling preconfirmations with the canonical chain: when a block seals, what becomes of
//! the snapshot preconfirmed for it (promoted, or a tail reorg from its first divergent
//! transaction), of the pending block built on it (kept, gone with the seal, or void), and of
//! flashblocks waiting for their parent. Pure decisions the overlay task acts on; no I/O, no
//! clock.

use crate::pending::PendingBlock;
use alloy_primitives::B256;
use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

/// Canonical hashes kept as anchors of readable pending state.
pub(crate) const ANCHORS: usize = 16;

/// Snapshots of recent blocks kept for reconciliation.
pub(crate) const UNSEALED: usize = 8;

/// Hashes of recent canonical blocks: a pending block is readable when its state sits on one
/// of them.
#[derive(Debug, Default)]
pub(crate) struct Anchors(VecDeque<B256>);

impl Anchors {
    /// `hash` is a canonical tip; after a reorg, state on the blocks that left the chain is
    /// not readable any more.
    pub(crate) fn canonical(&mut self, hash: B256, reorg: bool) {
        if reorg {
            self.0.clear();
        }
        if !self.0.contains(&hash) {
            self.0.push_back(hash);
        }
        while self.0.len() > ANCHORS {
            self.0.pop_front();
        }
    }

    /// Whether state on `hash` is readable.
    pub(crate) fn contains(&self, hash: &B256) -> bool {
        self.0.contains(hash)
    }
}

/// A block by number (what [`Unsealed`] needs of a snapshot).
pub(crate) trait Numbered {
    /// Its block number.
    fn number(&self) -> u64;
}

impl Numbered for Arc<PendingBlock> {
    fn number(&self) -> u64 {
        PendingBlock::number(self)
    }
}

/// The last snapshot of each recent block that is not canonical yet, oldest first: a sealed
/// block is reconciled against its own even after the next block's flashblocks started.
#[derive(Debug)]
pub(crate) struct Unsealed<T>(VecDeque<T>);

impl<T> Default for Unsealed<T> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<T: Numbered> Unsealed<T> {
    /// Remembers `block` as the latest snapshot of its number (at most [`UNSEALED`] blocks).
    pub(crate) fn push(&mut self, block: T) {
        match self.0.back_mut() {
            Some(last) if last.number() == block.number() => *last = block,
            _ => {
                self.0.push_back(block);
                while self.0.len() > UNSEALED {
                    self.0.pop_front();
                }
            }
        }
    }

    /// Block `number` sealed: forgets it and every older one, returning its snapshot.
    pub(crate) fn take_sealed(&mut self, number: u64) -> Option<T> {
        while self.0.front().is_some_and(|b| b.number() < number) {
            self.0.pop_front();
        }
        self.0.front().is_some_and(|b| b.number() == number).then(|| self.0.pop_front()).flatten()
    }

    /// Forgets everything (a reorg, or the chain of snapshots became void).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// How a sealed block compares with what was preconfirmed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sealed {
    /// Every preconfirmed transaction landed as preconfirmed.
    Promoted {
        /// No more than them either: a child built on our state of it stands.
        exact: bool,
    },
    /// A tail reorg: preconfirmations from `first_dropped` on did not land as preconfirmed.
    Reorg {
        /// Index of the first divergent preconfirmed transaction.
        first_dropped: usize,
        /// How many of those are not in the sealed block at all.
        dropped: usize,
    },
}

impl Sealed {
    /// Whether the sealed block is exactly what was preconfirmed (same transactions, no
    /// more), i.e. whether a child built on our state of it stands.
    pub(crate) fn as_preconfirmed(&self) -> bool {
        matches!(self, Self::Promoted { exact: true })
    }
}

/// Compares the preconfirmed transactions `ours` (their hash and receipt through `part`) with
/// a sealed block's. Matched by transactions and receipts, never by block hash (the pending
/// block's is provisional); receipts too because a tx at the same position with other logs
/// diverged as well. A block announced from p2p gossip carries no receipts: then only hashes
/// are compared.
pub(crate) fn compare<T, R: PartialEq>(
    ours: &[T],
    part: impl Fn(&T) -> (B256, &R),
    sealed_hashes: &[B256],
    sealed_receipts: &[R],
) -> Sealed {
    let with_receipts = sealed_receipts.len() == sealed_hashes.len();
    let first_dropped = ours
        .iter()
        .zip(sealed_hashes)
        .enumerate()
        .position(|(i, (tx, hash))| {
            let (ours_hash, ours_receipt) = part(tx);
            ours_hash != *hash
                || (with_receipts && sealed_receipts.get(i).is_some_and(|r| ours_receipt != r))
        })
        .unwrap_or(ours.len().min(sealed_hashes.len()));
    if first_dropped == ours.len() {
        return Sealed::Promoted { exact: sealed_hashes.len() == ours.len() };
    }
    let sealed: HashSet<&B256> = sealed_hashes.iter().collect();
    let dropped = ours[first_dropped..].iter().filter(|t| !sealed.contains(&part(t).0)).count();
    Sealed::Reorg { first_dropped, dropped }
}

/// What the pending block is built on, as [`pending_fate`] needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingLink {
    /// Its number.
    pub(crate) number: u64,
    /// Its parent's hash.
    pub(crate) parent_hash: B256,
    /// The canonical block its state reads fall back to.
    pub(crate) source_at: B256,
}

/// What becomes of the pending block when a canonical block arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PendingFate {
    /// It is still ahead of the tip on a parent that stands.
    Keep,
    /// It sealed (or fell behind): no longer pending, nothing to report.
    Sealed,
    /// It is the tip's child built on a parent that did not become canonical, or on our
    /// state of the sealed parent when that sealed with other transactions: everything in it
    /// is void (dropped, counted as a reorg, the block state forgotten).
    Void,
}

/// Decides the pending block's fate against the new tip; `sealed_as_ours`: the tip sealed
/// exactly as preconfirmed ([`Sealed::as_preconfirmed`], true when nothing was preconfirmed
/// for it).
pub(crate) fn pending_fate(
    pending: PendingLink,
    tip_number: u64,
    tip_hash: B256,
    sealed_as_ours: bool,
) -> PendingFate {
    // Built on our flashblock state of the block that just sealed (its state does not sit on
    // the sealed block), which sealed with other transactions than we applied.
    let chained_on_other_state = pending.source_at != tip_hash && !sealed_as_ours;
    if pending.number <= tip_number {
        PendingFate::Sealed
    } else if Some(pending.number) == tip_number.checked_add(1)
        && (pending.parent_hash != tip_hash || chained_on_other_state)
    {
        PendingFate::Void
    } else {
        PendingFate::Keep
    }
}

/// What becomes of flashblocks waiting for their parent when a canonical block arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitingFate {
    /// Their parent is the tip: apply them now.
    Replay,
    /// Their block is at or behind the tip and the parent never became canonical: reject
    /// them as `unknown_parent`.
    ParentNeverCanonical,
    /// Keep waiting.
    Wait,
}

/// Decides for the first waiting flashblock of block `number` on `parent`.
pub(crate) fn waiting_fate(
    number: u64,
    parent: Option<B256>,
    tip_number: u64,
    tip_hash: B256,
) -> WaitingFate {
    if parent == Some(tip_hash) {
        WaitingFate::Replay
    } else if number <= tip_number {
        WaitingFate::ParentNeverCanonical
    } else {
        WaitingFate::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> B256 {
        B256::repeat_byte(n)
    }

    /// Preconfirmed txs as (hash, receipt) with receipt = the hash's byte.
    fn ours(bytes: &[u8]) -> Vec<(B256, u8)> {
        bytes.iter().map(|&b| (h(b), b)).collect()
    }

    fn cmp(ours: &[(B256, u8)], hashes: &[u8], receipts: &[u8]) -> Sealed {
        let hashes: Vec<B256> = hashes.iter().map(|&b| h(b)).collect();
        compare(ours, |t| (t.0, &t.1), &hashes, receipts)
    }

    #[test]
    fn identical_block_is_promoted_exactly() {
        let s = cmp(&ours(&[1, 2, 3]), &[1, 2, 3], &[1, 2, 3]);
        assert_eq!(s, Sealed::Promoted { exact: true });
        assert!(s.as_preconfirmed());
    }

    #[test]
    fn a_block_with_more_txs_is_promoted_but_not_exact() {
        let s = cmp(&ours(&[1, 2]), &[1, 2, 3], &[1, 2, 3]);
        assert_eq!(s, Sealed::Promoted { exact: false });
        assert!(!s.as_preconfirmed());
        // Nothing preconfirmed: promoted, exact only for an empty block.
        assert_eq!(cmp(&[], &[], &[]), Sealed::Promoted { exact: true });
        assert_eq!(cmp(&[], &[1], &[1]), Sealed::Promoted { exact: false });
    }

    #[test]
    fn divergent_tail_is_a_reorg_from_the_first_difference() {
        // 3 replaced by 9; 4 landed elsewhere in the block: only 3 is dropped.
        let s = cmp(&ours(&[1, 2, 3, 4]), &[1, 2, 9, 4], &[1, 2, 9, 4]);
        assert_eq!(s, Sealed::Reorg { first_dropped: 2, dropped: 1 });
        assert!(!s.as_preconfirmed());
    }

    #[test]
    fn fewer_sealed_txs_drop_the_rest() {
        let s = cmp(&ours(&[1, 2, 3]), &[1], &[1]);
        assert_eq!(s, Sealed::Reorg { first_dropped: 1, dropped: 2 });
    }

    #[test]
    fn same_hash_other_receipt_diverged() {
        let s = cmp(&ours(&[1, 2]), &[1, 2], &[1, 7]);
        assert_eq!(s, Sealed::Reorg { first_dropped: 1, dropped: 0 });
    }

    #[test]
    fn without_receipts_only_hashes_count() {
        // A gossip block: no receipts (or not one per tx) compares hashes alone.
        assert_eq!(cmp(&ours(&[1, 2]), &[1, 2], &[]), Sealed::Promoted { exact: true });
        assert_eq!(cmp(&ours(&[1, 2]), &[1, 2], &[7]), Sealed::Promoted { exact: true });
    }

    #[test]
    fn pending_at_or_behind_the_tip_sealed() {
        let p = PendingLink { number: 10, parent_hash: h(9), source_at: h(9) };
        assert_eq!(pending_fate(p, 10, h(10), true), PendingFate::Sealed);
        assert_eq!(pending_fate(p, 11, h(11), false), PendingFate::Sealed);
    }

    #[test]
    fn child_of_the_tip_on_its_state_is_kept() {
        let p = PendingLink { number: 11, parent_hash: h(10), source_at: h(10) };
        assert_eq!(pending_fate(p, 10, h(10), false), PendingFate::Keep);
    }

    #[test]
    fn child_on_our_state_of_the_tip_stands_only_if_it_sealed_as_ours() {
        // Started before 10 sealed: its state sits on 9 plus our flashblocks of 10.
        let p = PendingLink { number: 11, parent_hash: h(10), source_at: h(9) };
        assert_eq!(pending_fate(p, 10, h(10), true), PendingFate::Keep);
        assert_eq!(pending_fate(p, 10, h(10), false), PendingFate::Void);
    }

    #[test]
    fn child_of_a_parent_that_did_not_become_canonical_is_void() {
        let p = PendingLink { number: 11, parent_hash: h(0xee), source_at: h(10) };
        assert_eq!(pending_fate(p, 10, h(10), true), PendingFate::Void);
    }

    #[test]
    fn further_ahead_is_kept() {
        let p = PendingLink { number: 12, parent_hash: h(0xee), source_at: h(0xee) };
        assert_eq!(pending_fate(p, 10, h(10), false), PendingFate::Keep);
        // No overflow at the top of the range.
        let p = PendingLink { number: u64::MAX, parent_hash: h(1), source_at: h(1) };
        assert_eq!(pending_fate(p, u64::MAX, h(2), false), PendingFate::Sealed);
    }

    #[test]
    fn waiting_flashblocks() {
        assert_eq!(waiting_fate(11, Some(h(10)), 10, h(10)), WaitingFate::Replay);
        assert_eq!(waiting_fate(11, Some(h(0xee)), 10, h(10)), WaitingFate::Wait);
        assert_eq!(waiting_fate(11, Some(h(0xee)), 11, h(11)), WaitingFate::ParentNeverCanonical);
        assert_eq!(waiting_fate(11, None, 12, h(12)), WaitingFate::ParentNeverCanonical);
    }

    #[test]
    fn anchors_are_bounded_and_cleared_by_a_reorg() {
        let mut a = Anchors::default();
        for n in 0..=ANCHORS as u8 {
            a.canonical(h(n), false);
        }
        assert!(!a.contains(&h(0)) && a.contains(&h(1)) && a.contains(&h(ANCHORS as u8)));
        // A repeated tip is not added twice (it would push an older anchor out).
        a.canonical(h(ANCHORS as u8), false);
        assert!(a.contains(&h(1)));
        a.canonical(h(0xee), true);
        assert!(a.contains(&h(0xee)) && !a.contains(&h(1)));
    }

    impl Numbered for (u64, char) {
        fn number(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn unsealed_keeps_the_last_snapshot_per_block() {
        let mut u = Unsealed::default();
        u.push((10, 'a'));
        u.push((10, 'b'));
        u.push((11, 'c'));
        assert_eq!(u.take_sealed(10), Some((10, 'b')));
        assert_eq!(u.take_sealed(10), None);
        assert_eq!(u.take_sealed(11), Some((11, 'c')));
    }

    #[test]
    fn unsealed_forgets_older_blocks_and_is_bounded() {
        let mut u = Unsealed::default();
        for n in 0..20u64 {
            u.push((n, 'x'));
        }
        assert_eq!(u.take_sealed(11), None, "12 snapshots ago: pushed out");
        assert_eq!(u.take_sealed(13), Some((13, 'x')));
        // Skipped blocks are forgotten when a later one seals.
        assert_eq!(u.take_sealed(15), Some((15, 'x')));
        assert_eq!(u.take_sealed(14), None);
        u.clear();
        assert_eq!(u.take_sealed(16), None);
    }
}
