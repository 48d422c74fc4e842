//! The consensus-layer p2p section of `flashnode_status`. The rpc crate knows nothing of
//! libp2p: the binary implements [`GossipStatusSource`] over its p2p host.

use serde::Serialize;

/// Counters of the p2p host, as `flashnode_status` shows them under `gossip`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GossipStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Connected peers.
    pub peers: u64,
    /// Gossip messages accepted.
    pub accepted: u64,
    /// Gossip messages ignored.
    pub ignored: u64,
    /// Gossip messages rejected.
    pub rejected: u64,
    /// Blocks this node published.
    pub published: u64,
    /// Highest block number accepted from gossip.
    pub highest_block: u64,
    /// Alt-sync blocks requested from peers.
    pub altsync_requested: u64,
    /// Alt-sync blocks received and accepted.
    pub altsync_filled: u64,
    /// Blocks alt-sync still has to fetch.
    pub altsync_missing: u64,
    /// Alt-sync requests this node served.
    pub altsync_served: u64,
    /// Alt-sync requests refused by the rate limits.
    pub altsync_rate_limited: u64,
    /// Lowest block in the durable store.
    pub stored_low: u64,
    /// Highest block in the durable store.
    pub stored_high: u64,
    /// Blocks in the durable store.
    pub stored_count: u64,
}

/// Where the status of the p2p host comes from.
pub trait GossipStatusSource: Send + Sync + std::fmt::Debug + 'static {
    /// The current counters.
    fn gossip_status(&self) -> GossipStatus;
}

/// Adds the `gossip` section to a `flashnode_status` object (absent when p2p is off).
pub(crate) fn extend_status(source: Option<&dyn GossipStatusSource>, status: &mut serde_json::Value) {
    if let (Some(source), Some(obj)) = (source, status.as_object_mut()) {
        if let Ok(v) = serde_json::to_value(source.gossip_status()) {
            obj.insert("gossip".into(), v);
        }
    }
}
