//! The alt-sync client (op-node `sync.go`): which block numbers are missing, which are in
//! flight to which peer, the answers held in quarantine until their hash is trusted, and the
//! retry backoff. It owns its state and the store writes it makes; the host gives it the
//! connected peers and a function that sends a request, so its decisions are tested without a
//! swarm.

use crate::{
    altsync::{self, AnswerError, Bucket, PayloadResponse},
    codec::BlockVersion,
    scoring::AppEvent,
    stats::GossipStats,
    store::{Store, StoredBlock},
    validate::VerifiedBlock,
};
use alloy_primitives::B256;
use flashnode_tasks::Backoff;
use libp2p::PeerId;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    hash::Hash,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use tracing::{debug, info, warn};

/// Most quarantined alt-sync answers (op-node: an LRU of 100).
const QUARANTINE: usize = 100;
/// Attempts per missing block before it is given up.
const MAX_ATTEMPTS: u32 = 8;
/// Delay before the first retry of a missing block; it doubles per attempt up to
/// [`RETRY_MAX`]. Peers that came back with the same gap answer "not found" until they have
/// filled it themselves: immediate retries burned every attempt within a second.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest delay between two attempts (all 8 span about 15 s).
const RETRY_MAX: Duration = Duration::from_secs(4);
/// Shortest time between two scans of the store for holes.
const HOLE_SCAN_INTERVAL: Duration = Duration::from_secs(10);
/// Trusted hashes remembered.
const TRUSTED: usize = 10_000;

/// Stores a block's payload to serve it (a failed write, e.g. a full disk, is counted and
/// logged, rate-limited, by the store; gossip goes on without it).
pub(super) fn store_block(
    store: &Store,
    number: u64,
    version: BlockVersion,
    hash: B256,
    wire: &[u8],
) {
    let Some(payload) = altsync::payload_bytes(wire) else { return };
    let _ = store.put_block(&StoredBlock { number, version, hash, payload });
}

/// What an answer to one of the client's requests was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answered {
    /// A block that checks out (quarantined or filled).
    Valid,
    /// The peer had no block (a non-zero result code).
    NotFound,
    /// A payload that does not check out, or another block than asked for.
    Invalid,
}

impl Answered {
    /// The application-score event of the answering peer.
    pub(super) fn app_event(self) -> AppEvent {
        match self {
            Self::Valid => AppEvent::ValidResponse,
            Self::NotFound => AppEvent::ErrorResponse,
            Self::Invalid => AppEvent::RejectedPayload,
        }
    }

    /// Whether the client schedules more requests at once (a "not found" waits for its
    /// retry backoff and the next tick).
    pub(super) fn reschedules(self) -> bool {
        self != Self::NotFound
    }
}

/// The alt-sync client. `R` is the request id (libp2p's `OutboundRequestId` in the host).
pub(super) struct SyncClient<R> {
    wanted: BTreeSet<u64>,
    in_flight: HashMap<R, (u64, PeerId)>,
    numbers_in_flight: HashSet<u64>,
    /// Each retried number's backoff (its attempt count says when to give up).
    attempts: HashMap<u64, Backoff>,
    /// Wanted numbers that wait for their retry backoff, and the peer that last failed them
    /// (asked last when others are free; bounded like `wanted`).
    retry_at: HashMap<u64, (Instant, PeerId)>,
    /// Hashes that let a quarantined answer in (op-node: the range end's parent is trusted,
    /// promoting a block trusts its parent).
    trusted: HashSet<B256>,
    quarantine: BTreeMap<u64, (Arc<VerifiedBlock>, PeerId)>,
    /// Numbers no peer could serve in [`MAX_ATTEMPTS`]; not asked for again by the hole scan
    /// (cleared when it grows past [`TRUSTED`] entries).
    given_up: HashSet<u64>,
    /// Client-side pacing per peer, mirroring the servers' per-peer limit so an honest client
    /// is never rate-limited.
    buckets: HashMap<PeerId, Bucket>,
    /// When the store was last scanned for holes (at most every [`HOLE_SCAN_INTERVAL`], so a
    /// block no peer has is not asked for on every gossiped block).
    holes_checked: Option<Instant>,
    per_peer: usize,
    max_gap: u64,
    store: Arc<Store>,
    stats: Arc<GossipStats>,
}

impl<R: Copy + Eq + Hash> SyncClient<R> {
    /// A client filling gaps of up to `max_gap` blocks with `per_peer` requests in flight to
    /// one peer.
    pub(super) fn new(
        store: Arc<Store>,
        stats: Arc<GossipStats>,
        max_gap: u64,
        per_peer: usize,
    ) -> Self {
        Self {
            wanted: BTreeSet::new(),
            in_flight: HashMap::new(),
            numbers_in_flight: HashSet::new(),
            attempts: HashMap::new(),
            retry_at: HashMap::new(),
            trusted: HashSet::new(),
            quarantine: BTreeMap::new(),
            given_up: HashSet::new(),
            buckets: HashMap::new(),
            holes_checked: None,
            per_peer: per_peer.max(1),
            max_gap,
            store,
            stats,
        }
    }

    /// Blocks missing: wanted, in flight or quarantined.
    pub(super) fn missing(&self) -> u64 {
        (self.wanted.len() + self.numbers_in_flight.len() + self.quarantine.len()) as u64
    }

    /// Whether `id` is one of the client's requests.
    #[cfg(test)]
    fn is_in_flight(&self, id: &R) -> bool {
        self.in_flight.contains_key(id)
    }

    /// A block accepted from gossip: store it, trust its parent, and queue the gap below it.
    pub(super) fn on_gossip_block(&mut self, block: &VerifiedBlock, now: Instant) {
        let number = block.number();
        let before = self.store.range().ok().flatten().map(|(_, hi)| hi);
        store_block(&self.store, number, block.version, block.hash, &block.wire);
        self.trust(block.header.parent_hash);
        if let Some(hi) = before {
            if number > hi + 1 {
                let from = (hi + 1).max(number.saturating_sub(self.max_gap));
                let queued = (from..number)
                    .filter(|n| !self.store.has(*n).unwrap_or(false))
                    .filter(|n| self.wanted.insert(*n))
                    .count();
                if queued > 0 {
                    info!(from, to = number - 1, queued, "gap below a gossiped block: alt-sync");
                }
            }
        }
        self.queue_store_holes(now);
        self.promote_quarantined();
    }

    /// Queues blocks missing inside the store's range (within `max_gap` of its top): holes left
    /// while the store could not write (a full disk) are filled once it can again. The stored
    /// block above each hole vouches for it (its parent hash is trusted, so the answer is
    /// promoted, and promotion walks down the hole); numbers alt-sync gave up on are skipped.
    fn queue_store_holes(&mut self, now: Instant) {
        if self.holes_checked.is_some_and(|t| now.saturating_duration_since(t) < HOLE_SCAN_INTERVAL)
        {
            return;
        }
        self.holes_checked = Some(now);
        let Ok(Some((lo, hi))) = self.store.range() else { return };
        let from = lo.max(hi.saturating_sub(self.max_gap));
        let Ok(stored) = self.store.numbers_in(from, hi) else { return };
        if stored.len() as u64 > hi - from {
            return;
        }
        let stored: HashSet<u64> = stored.into_iter().collect();
        let mut queued = 0usize;
        for n in from..hi {
            if stored.contains(&n)
                || self.given_up.contains(&n)
                || self.numbers_in_flight.contains(&n)
                || self.quarantine.contains_key(&n)
            {
                continue;
            }
            if stored.contains(&(n + 1)) {
                if let Ok(Some(above)) = self.store.block(n + 1) {
                    let answer = PayloadResponse::Ok {
                        version: altsync::response_version(above.version),
                        payload: above.payload,
                    };
                    if let Ok(block) = altsync::check_answer(n + 1, answer) {
                        self.trust(block.header.parent_hash);
                    }
                }
            }
            if self.wanted.insert(n) {
                queued += 1;
            }
        }
        if queued > 0 {
            info!(from, to = hi - 1, queued, "holes in the p2p store: alt-sync");
        }
    }

    fn trust(&mut self, hash: B256) {
        if self.trusted.len() >= TRUSTED {
            self.trusted.clear();
        }
        self.trusted.insert(hash);
    }

    /// Hands wanted numbers, highest first, to `connected` peers with spare capacity; `send`
    /// sends one request and returns its id.
    pub(super) fn schedule(
        &mut self,
        now: Instant,
        connected: impl IntoIterator<Item = PeerId>,
        mut send: impl FnMut(PeerId, u64) -> R,
    ) {
        if self.wanted.is_empty() {
            return;
        }
        let mut load: HashMap<PeerId, usize> = connected.into_iter().map(|p| (p, 0)).collect();
        for (_, peer) in self.in_flight.values() {
            if let Some(l) = load.get_mut(peer) {
                *l += 1;
            }
        }
        let retry_at = &self.retry_at;
        let wanted: Vec<u64> = self
            .wanted
            .iter()
            .rev()
            .copied()
            .filter(|n| retry_at.get(n).is_none_or(|(at, _)| *at <= now))
            .collect();
        for number in wanted {
            // A retry goes to another peer than the one that failed it when one is free: a
            // peer without the block would otherwise be asked every time (ties go to the
            // lowest peer id).
            let failed = self.retry_at.get(&number).map(|(_, p)| *p);
            let peer = load
                .iter()
                .filter(|(_, l)| **l < self.per_peer)
                .min_by_key(|(p, l)| (failed == Some(**p), **l, **p))
                .map(|(p, _)| *p);
            let Some(peer) = peer else { break };
            let bucket = self
                .buckets
                .entry(peer)
                .or_insert_with(|| Bucket::new(altsync::PEER_RATE, altsync::PEER_BURST));
            if !bucket.take(now) {
                load.insert(peer, usize::MAX);
                continue;
            }
            *load.entry(peer).or_default() += 1;
            self.wanted.remove(&number);
            self.retry_at.remove(&number);
            self.numbers_in_flight.insert(number);
            let id = send(peer, number);
            self.in_flight.insert(id, (number, peer));
            self.stats.altsync_requested.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flashnode_altsync_requests_total", "outcome" => "sent").increment(1);
        }
        self.stats.altsync_missing.store(self.missing(), Ordering::Relaxed);
    }

    fn retry(&mut self, number: u64, failed_by: PeerId, now: Instant) {
        let backoff =
            self.attempts.entry(number).or_insert_with(|| Backoff::new(RETRY_MIN, RETRY_MAX));
        let delay = backoff.next_delay();
        if backoff.attempt() < MAX_ATTEMPTS {
            self.retry_at.insert(number, (now + delay, failed_by));
            self.wanted.insert(number);
        } else {
            warn!(number, "alt-sync gave up on a block");
            self.attempts.remove(&number);
            if self.given_up.len() >= TRUSTED {
                self.given_up.clear();
            }
            self.given_up.insert(number);
        }
    }

    /// A request of the client failed (timeout, reset, unsupported protocol): the number is
    /// retried after its backoff. Returns the number, None when `id` is not the client's.
    pub(super) fn on_failure(&mut self, id: R, peer: PeerId, now: Instant) -> Option<u64> {
        let (number, _) = self.in_flight.remove(&id)?;
        self.numbers_in_flight.remove(&number);
        metrics::counter!("flashnode_altsync_requests_total", "outcome" => "failed").increment(1);
        self.retry(number, peer, now);
        Some(number)
    }

    /// An answer to request `id` from `peer`: a valid block is quarantined and promoted once
    /// its hash is trusted; anything else is retried after its backoff. None when `id` is
    /// not the client's.
    pub(super) fn on_response(
        &mut self,
        id: R,
        peer: PeerId,
        response: PayloadResponse,
        now: Instant,
    ) -> Option<Answered> {
        let (number, _) = self.in_flight.remove(&id)?;
        self.numbers_in_flight.remove(&number);
        let answered = match altsync::check_answer(number, response) {
            Ok(b) => {
                self.quarantine.insert(number, (Arc::new(b), peer));
                while self.quarantine.len() > QUARANTINE {
                    // Evict the lowest: it is the furthest from being trusted.
                    if let Some((n, (_, from))) = self.quarantine.pop_first() {
                        debug!(number = n, %from, "evicted an untrusted alt-sync answer");
                        self.retry(n, from, now);
                    }
                }
                self.promote_quarantined();
                Answered::Valid
            }
            Err(AnswerError::NoBlock(code)) => {
                debug!(%peer, number, code, "alt-sync answer without a block");
                metrics::counter!("flashnode_altsync_requests_total", "outcome" => "not_found")
                    .increment(1);
                self.retry(number, peer, now);
                Answered::NotFound
            }
            Err(err) => {
                warn!(%peer, number, %err, reason = err.label(), "invalid alt-sync answer");
                metrics::counter!("flashnode_altsync_requests_total", "outcome" => "invalid")
                    .increment(1);
                self.retry(number, peer, now);
                Answered::Invalid
            }
        };
        Some(answered)
    }

    /// Promotes quarantined answers whose hash is trusted, highest first (each promotion
    /// trusts the parent, which may promote the next one down).
    fn promote_quarantined(&mut self) {
        loop {
            let next = self
                .quarantine
                .iter()
                .rev()
                .find(|(_, (b, _))| self.trusted.contains(&b.hash))
                .map(|(n, _)| *n);
            let Some(number) = next else { break };
            let Some((block, _)) = self.quarantine.remove(&number) else { break };
            store_block(&self.store, number, block.version, block.hash, &block.wire);
            self.trust(block.header.parent_hash);
            self.attempts.remove(&number);
            self.stats.altsync_filled.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flashnode_altsync_requests_total", "outcome" => "filled")
                .increment(1);
            debug!(number, hash = %block.hash, "alt-sync filled a block");
        }
        // An answer at a height we already hold with another hash can never be promoted.
        let store = &self.store;
        self.quarantine.retain(|n, _| !store.has(*n).unwrap_or(false));
        self.wanted.retain(|n| !store.has(*n).unwrap_or(false));
        let wanted = &self.wanted;
        self.retry_at.retain(|n, _| wanted.contains(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        codec::{sign_block, tests::*},
        validate::Validator,
    };

    const NOW: u64 = 1_700_000_000;

    /// A chain of `n` blocks from 1, each the parent of the next, as gossip would verify them.
    fn chain(n: u64) -> Vec<VerifiedBlock> {
        let signer = test_signer();
        let mut parent = B256::ZERO;
        (1..=n)
            .map(|number| {
                let (mut block, _) = test_block(number, NOW);
                block.header.parent_hash = parent;
                let hash = block.header.hash_slow();
                parent = hash;
                let msg = sign_block(&block, hash, 901, &signer).unwrap();
                match Validator::default().validate(
                    BlockVersion::V4,
                    &msg.wire,
                    NOW,
                    901,
                    signer.address(),
                ) {
                    crate::validate::Outcome::Accept(b) => (*b).clone(),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    fn answer(block: &VerifiedBlock) -> PayloadResponse {
        PayloadResponse::Ok {
            version: altsync::response_version(block.version),
            payload: altsync::payload_bytes(&block.wire).unwrap(),
        }
    }

    fn client() -> SyncClient<u32> {
        let store = Arc::new(Store::in_memory(100).unwrap());
        SyncClient::new(store, Arc::new(GossipStats::default()), 1000, 2)
    }

    /// Runs `schedule` and returns the requests it sent, numbered from `next_id`.
    fn schedule(
        c: &mut SyncClient<u32>,
        now: Instant,
        peers: &[PeerId],
        next_id: &mut u32,
    ) -> Vec<(u32, PeerId, u64)> {
        let mut sent = Vec::new();
        c.schedule(now, peers.iter().copied(), |peer, number| {
            *next_id += 1;
            sent.push((*next_id, peer, number));
            *next_id
        });
        sent
    }

    #[test]
    fn a_gap_below_a_gossiped_block_is_requested_highest_first_within_per_peer() {
        let blocks = chain(6);
        let mut c = client();
        let now = Instant::now();
        c.on_gossip_block(&blocks[0], now);
        c.on_gossip_block(&blocks[5], now);
        assert_eq!(c.missing(), 4, "2..=5 are missing");
        let peers = [PeerId::random(), PeerId::random()];
        let mut id = 0;
        let sent = schedule(&mut c, now, &peers, &mut id);
        let numbers: Vec<u64> = sent.iter().map(|s| s.2).collect();
        assert_eq!(numbers, vec![5, 4, 3, 2], "highest first");
        for p in peers {
            assert_eq!(sent.iter().filter(|s| s.1 == p).count(), 2, "two per peer");
        }
        // Everything is in flight: nothing more is sent.
        assert!(schedule(&mut c, now, &peers, &mut id).is_empty());
        assert_eq!(c.missing(), 4);
    }

    #[test]
    fn answers_are_promoted_down_the_trusted_hash_chain() {
        let blocks = chain(5);
        let mut c = client();
        let now = Instant::now();
        c.on_gossip_block(&blocks[0], now);
        c.on_gossip_block(&blocks[4], now);
        let peer = PeerId::random();
        let mut id = 0;
        let sent = schedule(&mut c, now, &[peer], &mut id);
        assert_eq!(sent.iter().map(|s| s.2).collect::<Vec<_>>(), vec![4, 3]);
        // The answer for 3 waits in quarantine: its hash is not trusted until 4 is promoted.
        let (id3, id4) = (sent[1].0, sent[0].0);
        assert_eq!(c.on_response(id3, peer, answer(&blocks[2]), now), Some(Answered::Valid));
        assert!(!c.store.has(3).unwrap());
        assert_eq!(c.on_response(id4, peer, answer(&blocks[3]), now), Some(Answered::Valid));
        assert!(c.store.has(4).unwrap() && c.store.has(3).unwrap(), "4 vouches for 3");
        assert_eq!(c.stats.altsync_filled.load(Ordering::Relaxed), 2);
        // An id the client never sent is not its business.
        assert_eq!(c.on_response(99, peer, answer(&blocks[1]), now), None);
    }

    #[test]
    fn a_retry_waits_its_backoff_and_goes_to_another_peer() {
        let blocks = chain(3);
        let mut c = client();
        let now = Instant::now();
        c.on_gossip_block(&blocks[0], now);
        c.on_gossip_block(&blocks[2], now);
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut id = 0;
        let sent = schedule(&mut c, now, &[a, b], &mut id);
        assert_eq!(sent.len(), 1);
        let (first, asked, _) = sent[0];
        let other = if asked == a { b } else { a };
        let answered = c.on_response(first, asked, PayloadResponse::Err(1), now).unwrap();
        assert_eq!(answered, Answered::NotFound);
        assert_eq!(answered.app_event(), AppEvent::ErrorResponse);
        assert!(!answered.reschedules());
        // Within the backoff nothing is sent; after it, the other peer is asked.
        assert!(schedule(&mut c, now, &[a, b], &mut id).is_empty());
        let later = now + RETRY_MIN;
        let sent = schedule(&mut c, later, &[a, b], &mut id);
        assert_eq!(sent.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(), vec![(other, 2)]);
        // A failed request is retried too; with only the failing peer left it is asked again.
        assert_eq!(c.on_failure(sent[0].0, other, later), Some(2));
        assert!(!c.is_in_flight(&sent[0].0));
        let sent = schedule(&mut c, later + RETRY_MAX, &[other], &mut id);
        assert_eq!(sent.iter().map(|s| (s.1, s.2)).collect::<Vec<_>>(), vec![(other, 2)]);
    }

    #[test]
    fn a_block_is_given_up_after_max_attempts() {
        let blocks = chain(3);
        let mut c = client();
        let mut now = Instant::now();
        c.on_gossip_block(&blocks[0], now);
        c.on_gossip_block(&blocks[2], now);
        let peer = PeerId::random();
        let mut id = 0;
        for attempt in 1..=MAX_ATTEMPTS {
            let sent = schedule(&mut c, now, &[peer], &mut id);
            assert_eq!(sent.len(), 1, "attempt {attempt}");
            let garbage = PayloadResponse::Ok { version: 2, payload: vec![0; 10] };
            assert_eq!(c.on_response(sent[0].0, peer, garbage, now), Some(Answered::Invalid));
            // Past the longest backoff and with a full bucket again.
            now += RETRY_MAX + Duration::from_secs(1);
        }
        assert_eq!(c.missing(), 0);
        assert!(c.given_up.contains(&2));
        assert!(schedule(&mut c, now, &[peer], &mut id).is_empty());
    }

    #[test]
    fn the_client_paces_itself_to_the_servers_per_peer_burst() {
        let blocks = chain(40);
        let store = Arc::new(Store::in_memory(100).unwrap());
        let mut c: SyncClient<u32> =
            SyncClient::new(store, Arc::new(GossipStats::default()), 1000, 100);
        let now = Instant::now();
        c.on_gossip_block(&blocks[0], now);
        c.on_gossip_block(&blocks[39], now);
        let mut id = 0;
        let sent = schedule(&mut c, now, &[PeerId::random()], &mut id);
        assert_eq!(sent.len(), altsync::PEER_BURST as usize);
    }
}
