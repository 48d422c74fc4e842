//! The ring: the most recent frames the fan-out published, bounded by count and bytes, each
//! with its sequence number. Resuming subscribers are replayed from it, and every new
//! subscriber catches up from it to the writers' live edge, so joining never races a frame.

use crate::frame::{Frame, SourceFrame};
use std::{collections::VecDeque, sync::Arc};

/// Where a resume point falls in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Located {
    /// The frame at that position is in the ring: replay from the sequence number after it.
    Found(u64),
    /// It is not in the ring, but nothing newer than it is either (the ring is empty, or the
    /// point is ahead of its newest frame): start at the live edge and skip up to the point.
    Ahead(u64),
    /// Frames after it are gone (older than the oldest frame, or a position the ring never
    /// held): `oldest` is the oldest position still held.
    Gap {
        /// The oldest `(block_number, index)` in the ring.
        oldest: (u64, u64),
    },
}

/// The recent frames, oldest first.
#[derive(Debug)]
pub(crate) struct Ring {
    frames: VecDeque<(Arc<Frame>, usize)>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    next_seq: u64,
}

/// A subscriber asked for a frame the ring no longer holds (it fell further behind than the
/// ring reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted;

impl Ring {
    /// A ring of at most `max_frames` frames and `max_bytes` bytes (it always keeps the newest
    /// frame, however large).
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            frames: VecDeque::with_capacity(max_frames.clamp(1, 4096)),
            bytes: 0,
            max_frames: max_frames.max(1),
            max_bytes,
            next_seq: 0,
        }
    }

    /// Numbers `source` with the next sequence number, keeps it, evicts what no longer fits,
    /// and returns the frame to publish.
    pub(crate) fn push(&mut self, source: SourceFrame) -> Arc<Frame> {
        let frame = Arc::new(Frame::numbered(source, self.next_seq));
        self.next_seq += 1;
        let size = frame.size();
        self.frames.push_back((frame.clone(), size));
        self.bytes += size;
        while self.frames.len() > 1
            && (self.frames.len() > self.max_frames || self.bytes > self.max_bytes)
        {
            if let Some((_, size)) = self.frames.pop_front() {
                self.bytes -= size;
            }
        }
        metrics::gauge!("flashnode_fanout_ring_frames").set(self.frames.len() as f64);
        metrics::gauge!("flashnode_fanout_ring_bytes").set(self.bytes as f64);
        frame
    }

    /// The sequence number the next frame will get (the live edge).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The sequence number of the oldest frame held (`next_seq` when empty).
    pub(crate) fn first_seq(&self) -> u64 {
        self.next_seq - self.frames.len() as u64
    }

    /// Up to `max` frames from sequence number `seq` on, oldest first (empty at the live edge);
    /// [`Evicted`] if `seq` is older than the ring.
    pub(crate) fn since(&self, seq: u64, max: usize) -> Result<Vec<Arc<Frame>>, Evicted> {
        let first = self.first_seq();
        if seq < first {
            return Err(Evicted);
        }
        let skip = usize::try_from(seq - first).unwrap_or(usize::MAX);
        Ok(self.frames.iter().skip(skip).take(max).map(|(f, _)| f.clone()).collect())
    }

    /// Where `position` (the last frame a subscriber has) falls.
    pub(crate) fn locate(&self, position: (u64, u64)) -> Located {
        // Newest first: a position seen twice (a block rebuilt) resumes after the latest.
        if let Some((frame, _)) = self.frames.iter().rev().find(|(f, _)| f.position() == position) {
            return Located::Found(frame.seq + 1);
        }
        match (self.frames.front(), self.frames.back()) {
            (Some((oldest, _)), Some((newest, _))) if position < newest.position() => {
                Located::Gap { oldest: oldest.position() }
            }
            _ => Located::Ahead(self.next_seq),
        }
    }

    /// Frames held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(ring: &mut Ring, block: u64, index: u64, len: usize) -> Arc<Frame> {
        ring.push(SourceFrame::new("x".repeat(len).into(), block, index))
    }

    #[test]
    fn bounded_by_count_and_bytes_keeping_the_newest() {
        let mut ring = Ring::new(3, 1_000_000);
        for i in 0..5 {
            assert_eq!(push(&mut ring, 1, i, 10).seq, i);
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.since(2, 10).unwrap().len(), 3);
        assert!(matches!(ring.since(1, 10), Err(Evicted)));
        assert!(ring.since(5, 10).unwrap().is_empty(), "the live edge");
        assert_eq!(ring.since(3, 1).unwrap()[0].seq, 3);
        // Bytes: each frame is ~100 bytes on the wire; a 250-byte ring holds two.
        let mut small = Ring::new(100, 250);
        for i in 0..4 {
            push(&mut small, 1, i, 100);
        }
        assert_eq!(small.len(), 2);
        // A frame larger than the whole bound is still kept (alone).
        push(&mut small, 1, 4, 10_000);
        assert_eq!(small.len(), 1);
        assert_eq!(small.since(4, 10).unwrap()[0].position(), (1, 4));
    }

    #[test]
    fn resume_points_are_found_ahead_or_gaps() {
        let mut ring = Ring::new(4, 1_000_000);
        assert_eq!(ring.locate((7, 3)), Located::Ahead(0), "empty: wait for what follows");
        for (b, i) in [(7, 2), (7, 3), (8, 0), (8, 1)] {
            push(&mut ring, b, i, 10);
        }
        assert_eq!(ring.locate((7, 3)), Located::Found(2));
        assert_eq!(ring.locate((8, 1)), Located::Found(4), "the newest: live from here");
        assert_eq!(ring.locate((8, 2)), Located::Ahead(4));
        assert_eq!(ring.locate((9, 0)), Located::Ahead(4));
        assert_eq!(ring.locate((7, 1)), Located::Gap { oldest: (7, 2) }, "older than the ring");
        assert_eq!(ring.locate((7, 9)), Located::Gap { oldest: (7, 2) }, "never held");
        // A rebuilt block: the latest occurrence wins.
        push(&mut ring, 8, 0, 10);
        assert_eq!(ring.locate((8, 0)), Located::Found(5));
    }
}
