//! Counters of the p2p service, shared with the binary (status RPC) and mirrored into the
//! Prometheus metrics the dashboard reads (`flashnode_gossip_*`, `flashnode_altsync_*`).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Connected peers.
    pub peers: AtomicU64,
    /// Messages accepted.
    pub accepted: AtomicU64,
    /// Messages ignored.
    pub ignored: AtomicU64,
    /// Messages rejected.
    pub rejected: AtomicU64,
    /// Blocks published by this node.
    pub published: AtomicU64,
    /// Publishes that failed (no peers yet, encoding).
    pub publish_failures: AtomicU64,
    /// Alt-sync blocks requested from peers.
    pub altsync_requested: AtomicU64,
    /// Alt-sync blocks received and accepted.
    pub altsync_filled: AtomicU64,
    /// Number of the highest accepted block.
    pub highest_block: AtomicU64,
    /// Blocks alt-sync still has to fetch (wanted, in flight or quarantined).
    pub altsync_missing: AtomicU64,
    /// Alt-sync requests this node served.
    pub altsync_served: AtomicU64,
    /// Alt-sync requests refused by the rate limits.
    pub altsync_rate_limited: AtomicU64,
    /// Lowest stored block.
    pub stored_low: AtomicU64,
    /// Highest stored block.
    pub stored_high: AtomicU64,
    /// Blocks in the store.
    pub stored_count: AtomicU64,
    /// Bans imposed since start.
    pub bans: AtomicU64,
    /// Peers banned now.
    pub banned: AtomicU64,
    /// Nodes discv5 reported (found by a query or met in a session).
    pub discovered: AtomicU64,
    /// Discovered nodes of another chain (their `opstack` entry), never dialled.
    pub discovered_other_chain: AtomicU64,
    /// Discovered nodes handed to the swarm to dial.
    pub discovery_dials: AtomicU64,
    /// Discovered nodes not dialled because the host was at its high-water mark.
    pub discovery_full: AtomicU64,
}

/// A point-in-time copy of [`GossipStats`].
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GossipSnapshot {
    /// Connected peers.
    pub peers: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages ignored.
    pub ignored: u64,
    /// Messages rejected.
    pub rejected: u64,
    /// Blocks published by this node.
    pub published: u64,
    /// Publishes that failed.
    pub publish_failures: u64,
    /// Alt-sync blocks requested.
    pub altsync_requested: u64,
    /// Alt-sync blocks filled.
    pub altsync_filled: u64,
    /// Highest accepted block number.
    pub highest_block: u64,
    /// Blocks alt-sync still has to fetch.
    pub altsync_missing: u64,
    /// Alt-sync requests served.
    pub altsync_served: u64,
    /// Alt-sync requests refused by the rate limits.
    pub altsync_rate_limited: u64,
    /// Lowest stored block.
    pub stored_low: u64,
    /// Highest stored block.
    pub stored_high: u64,
    /// Blocks in the store.
    pub stored_count: u64,
    /// Bans imposed since start.
    pub bans: u64,
    /// Peers banned now.
    pub banned: u64,
    /// Nodes discv5 reported.
    pub discovered: u64,
    /// Discovered nodes of another chain, not dialled.
    pub discovered_other_chain: u64,
    /// Discovered nodes dialled.
    pub discovery_dials: u64,
    /// Discovered nodes not dialled at the high-water mark.
    pub discovery_full: u64,
}

impl GossipStats {
    /// Copies the counters.
    pub fn snapshot(&self) -> GossipSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GossipSnapshot {
            peers: l(&self.peers),
            accepted: l(&self.accepted),
            ignored: l(&self.ignored),
            rejected: l(&self.rejected),
            published: l(&self.published),
            publish_failures: l(&self.publish_failures),
            altsync_requested: l(&self.altsync_requested),
            altsync_filled: l(&self.altsync_filled),
            highest_block: l(&self.highest_block),
            altsync_missing: l(&self.altsync_missing),
            altsync_served: l(&self.altsync_served),
            altsync_rate_limited: l(&self.altsync_rate_limited),
            stored_low: l(&self.stored_low),
            stored_high: l(&self.stored_high),
            stored_count: l(&self.stored_count),
            bans: l(&self.bans),
            banned: l(&self.banned),
            discovered: l(&self.discovered),
            discovered_other_chain: l(&self.discovered_other_chain),
            discovery_dials: l(&self.discovery_dials),
            discovery_full: l(&self.discovery_full),
        }
    }
}
