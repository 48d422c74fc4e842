//! The consensus-layer p2p surface: the `gossip` section of `flashnode_status` and op-node's
//! `opp2p_` admin namespace (`op-node/p2p/rpc_api.go`: `opp2p_self`, `opp2p_peers`,
//! `opp2p_peerStats`, `opp2p_blockPeer`, `opp2p_unblockPeer`, `opp2p_listBlockedPeers`,
//! `opp2p_blockAddr`, `opp2p_unblockAddr`, `opp2p_listBlockedAddrs`, `opp2p_blockSubnet`,
//! `opp2p_unblockSubnet`, `opp2p_listBlockedSubnets`, `opp2p_protectPeer`). The rpc crate knows
//! nothing of libp2p: the binary implements [`GossipStatusSource`] over its p2p host.

use crate::{pending::invalid_params, RpcContext};
use futures::future::BoxFuture;
use jsonrpsee::{types::ErrorObjectOwned, RpcModule};
use serde::Serialize;
use serde_json::Value;

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
    /// Nodes discv5 reported.
    pub discovered: u64,
    /// Discovered nodes of another chain (`opstack` ENR entry), not dialled.
    pub discovered_other_chain: u64,
    /// Discovered nodes dialled.
    pub discovery_dials: u64,
    /// Discovered nodes not dialled because the node was at its high-water mark.
    pub discovery_full: u64,
}

/// An `opp2p_` admin call, with its parameters parsed (peer ids stay strings: the binary
/// parses them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum P2pCall {
    /// `opp2p_self`.
    SelfInfo,
    /// `opp2p_peers(connected)`.
    Peers {
        /// Only connected peers.
        connected: bool,
    },
    /// `opp2p_peerStats`.
    PeerStats,
    /// `opp2p_blockPeer(id, seconds?)`: the ban lasts `seconds` (0: until unblocked), the
    /// node's ban duration when absent.
    BlockPeer(String, Option<u64>),
    /// `opp2p_unblockPeer(id)`.
    UnblockPeer(String),
    /// `opp2p_listBlockedPeers`.
    ListBlockedPeers,
    /// `opp2p_blockAddr(ip, seconds?)`: expiry as for `BlockPeer`.
    BlockAddr(std::net::IpAddr, Option<u64>),
    /// `opp2p_listBlockedAddrs`.
    ListBlockedAddrs,
    /// `opp2p_unblockAddr(ip)`.
    UnblockAddr(std::net::IpAddr),
    /// `opp2p_blockSubnet(cidr, seconds?)`: expiry as for `BlockPeer`.
    BlockSubnet(String, Option<u64>),
    /// `opp2p_unblockSubnet(cidr)`.
    UnblockSubnet(String),
    /// `opp2p_listBlockedSubnets`.
    ListBlockedSubnets,
    /// `opp2p_protectPeer(id)`.
    ProtectPeer(String),
}

/// Why an admin call failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum P2pCallError {
    /// A parameter does not parse (e.g. a malformed peer id).
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The p2p host is not running.
    #[error("p2p host unavailable: {0}")]
    Unavailable(String),
}

/// Where the status of the p2p host comes from, and who answers the admin calls.
pub trait GossipStatusSource: Send + Sync + std::fmt::Debug + 'static {
    /// The current counters.
    fn gossip_status(&self) -> GossipStatus;
    /// Runs an `opp2p_` call; the answer is op-node shaped JSON.
    fn call(&self, call: P2pCall) -> BoxFuture<'_, Result<Value, P2pCallError>>;
}

fn rpc_error(e: P2pCallError) -> ErrorObjectOwned {
    let code = match e {
        P2pCallError::InvalidParams(_) => -32602,
        P2pCallError::Unavailable(_) => -32000,
    };
    ErrorObjectOwned::owned(code, e.to_string(), None::<()>)
}

async fn run(ctx: &RpcContext, call: P2pCall) -> Result<Value, ErrorObjectOwned> {
    let Some(p2p) = ctx.gossip.as_ref() else {
        return Err(ErrorObjectOwned::owned(-32000, "p2p is disabled on this node", None::<()>));
    };
    p2p.call(call).await.map_err(rpc_error)
}

/// Registers the `opp2p_` namespace.
pub(crate) fn register(m: &mut RpcModule<RpcContext>) {
    // Fixed-arity methods without parameters.
    for (name, call) in [
        ("opp2p_self", P2pCall::SelfInfo),
        ("opp2p_peerStats", P2pCall::PeerStats),
        ("opp2p_listBlockedPeers", P2pCall::ListBlockedPeers),
        ("opp2p_listBlockedAddrs", P2pCall::ListBlockedAddrs),
        ("opp2p_listBlockedSubnets", P2pCall::ListBlockedSubnets),
    ] {
        m.register_async_method(name, move |_, ctx, _| {
            let call = call.clone();
            async move { run(&ctx, call).await }
        })
        .expect("unique");
    }
    m.register_async_method("opp2p_peers", |p, ctx, _| async move {
        let connected: Option<bool> = p.sequence().optional_next().map_err(invalid_params)?;
        run(&ctx, P2pCall::Peers { connected: connected.unwrap_or(true) }).await
    })
    .expect("unique");
    type Make = fn(String) -> P2pCall;
    for (name, make) in [
        ("opp2p_unblockPeer", P2pCall::UnblockPeer as Make),
        ("opp2p_protectPeer", P2pCall::ProtectPeer as Make),
        ("opp2p_unblockSubnet", P2pCall::UnblockSubnet as Make),
    ] {
        m.register_async_method(name, move |p, ctx, _| async move {
            let id: String = p.one().map_err(invalid_params)?;
            run(&ctx, make(id)).await
        })
        .expect("unique");
    }
    // The block calls take op-node's one parameter and an optional expiry in seconds.
    m.register_async_method("opp2p_blockPeer", |p, ctx, _| async move {
        let mut seq = p.sequence();
        let id: String = seq.next().map_err(invalid_params)?;
        let secs: Option<u64> = seq.optional_next().map_err(invalid_params)?;
        run(&ctx, P2pCall::BlockPeer(id, secs)).await
    })
    .expect("unique");
    m.register_async_method("opp2p_blockSubnet", |p, ctx, _| async move {
        let mut seq = p.sequence();
        let cidr: String = seq.next().map_err(invalid_params)?;
        let secs: Option<u64> = seq.optional_next().map_err(invalid_params)?;
        run(&ctx, P2pCall::BlockSubnet(cidr, secs)).await
    })
    .expect("unique");
    m.register_async_method("opp2p_blockAddr", |p, ctx, _| async move {
        let mut seq = p.sequence();
        let ip: std::net::IpAddr = seq.next().map_err(invalid_params)?;
        let secs: Option<u64> = seq.optional_next().map_err(invalid_params)?;
        run(&ctx, P2pCall::BlockAddr(ip, secs)).await
    })
    .expect("unique");
    m.register_async_method("opp2p_unblockAddr", |p, ctx, _| async move {
        let ip: std::net::IpAddr = p.one().map_err(invalid_params)?;
        run(&ctx, P2pCall::UnblockAddr(ip)).await
    })
    .expect("unique");
}

/// Adds the `gossip` section to a `flashnode_status` object (absent when p2p is off).
pub(crate) fn extend_status(
    source: Option<&dyn GossipStatusSource>,
    status: &mut serde_json::Value,
) {
    if let (Some(source), Some(obj)) = (source, status.as_object_mut()) {
        if let Ok(v) = serde_json::to_value(source.gossip_status()) {
            obj.insert("gossip".into(), v);
        }
    }
}
