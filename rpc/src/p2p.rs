//! The consensus-layer p2p surface: the `gossip` section of `flashnode_status` and op-node's
//! `opp2p_` admin namespace (`op-node/p2p/rpc_api.go`: `opp2p_self`, `opp2p_peers`,
//! `opp2p_peerStats`, `opp2p_blockPeer`, `opp2p_unblockPeer`, `opp2p_listBlockedPeers`,
//! `opp2p_blockAddr`, `opp2p_unblockAddr`, `opp2p_listBlockedAddrs`, `opp2p_blockSubnet`,
//! `opp2p_unblockSubnet`, `opp2p_listBlockedSubnets`, `opp2p_protectPeer`), its answers as typed
//! structs in op-node's JSON shapes. The rpc crate knows nothing of libp2p: the binary
//! implements [`GossipStatusSource`] over its p2p host.

use crate::{pending::invalid_params, RpcContext};
/// The admin API's peer shapes, from their one home in the gossip crate (built there without
/// libp2p).
pub use flashnode_gossip::{
    Connectedness, Direction, GossipSnapshot, PeerInfo, PeerScores, PeerStats,
};
use futures::future::BoxFuture;
use jsonrpsee::{types::ErrorObjectOwned, RpcModule};
use serde::Serialize;
use serde_json::Value;
use std::{collections::BTreeMap, net::IpAddr, time::Duration};

/// Counters of the p2p host, as `flashnode_status` shows them under `gossip`: the node's
/// peer id and the host's counters as they are ([`GossipSnapshot`], flattened).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GossipStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// The counters (peers, messages, alt-sync, store, discovery).
    #[serde(flatten)]
    pub counters: GossipSnapshot,
}

/// The `opp2p_peers` answer.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerDump {
    /// Peers with [`Connectedness::Connected`].
    pub total_connected: usize,
    /// Peers by peer id.
    pub peers: BTreeMap<String, PeerInfo>,
    /// Banned peer ids.
    pub banned_peers: Vec<String>,
    /// Blocked IP addresses.
    #[serde(rename = "bannedIPS")]
    pub banned_ips: Vec<IpAddr>,
    /// Blocked subnets (CIDR).
    pub banned_subnets: Vec<String>,
}

impl PeerDump {
    /// The answer over `peers` and the blocklists.
    pub fn new(
        peers: Vec<PeerInfo>,
        banned_peers: Vec<String>,
        banned_ips: Vec<IpAddr>,
        banned_subnets: Vec<String>,
    ) -> Self {
        let total_connected =
            peers.iter().filter(|p| p.connectedness == Connectedness::Connected).count();
        let peers = peers.into_iter().map(|p| (p.peer_id.clone(), p)).collect();
        Self { total_connected, peers, banned_peers, banned_ips, banned_subnets }
    }
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum P2pCallError {
    /// A parameter does not parse (e.g. a malformed peer id or subnet).
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The p2p host is not running (or stopped answering).
    #[error("p2p host unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl P2pCallError {
    /// JSON-RPC code of the error.
    pub fn code(&self) -> i32 {
        match self {
            Self::InvalidParams(_) => -32602,
            Self::Unavailable(_) => -32000,
        }
    }
}

/// What an admin call resolves to.
pub type AdminFuture<'a, T> = BoxFuture<'a, Result<T, P2pCallError>>;

/// Where the status of the p2p host comes from, and who answers the `opp2p_` admin calls (the
/// binary, over its p2p host). Peer ids and subnets stay strings here: the implementation
/// parses them (and answers [`P2pCallError::InvalidParams`]). A ban's `expiry` of zero lasts
/// until lifted; `None` is the node's ban duration.
pub trait GossipStatusSource: Send + Sync + std::fmt::Debug + 'static {
    /// The current counters.
    fn gossip_status(&self) -> GossipStatus;
    /// This node as a peer (`opp2p_self`).
    fn self_info(&self) -> PeerInfo;
    /// Known peers, or only the connected ones.
    fn peers(&self, connected_only: bool) -> AdminFuture<'_, Vec<PeerInfo>>;
    /// Peer counts.
    fn peer_stats(&self) -> AdminFuture<'_, PeerStats>;
    /// Bans a peer.
    fn block_peer(&self, peer: String, expiry: Option<Duration>) -> AdminFuture<'_, ()>;
    /// Lifts a peer's ban.
    fn unblock_peer(&self, peer: String) -> AdminFuture<'_, ()>;
    /// Banned peer ids.
    fn blocked_peers(&self) -> AdminFuture<'_, Vec<String>>;
    /// Blocks an IP address.
    fn block_addr(&self, ip: IpAddr, expiry: Option<Duration>) -> AdminFuture<'_, ()>;
    /// Lifts an IP address block.
    fn unblock_addr(&self, ip: IpAddr) -> AdminFuture<'_, ()>;
    /// Blocked IP addresses.
    fn blocked_addrs(&self) -> AdminFuture<'_, Vec<IpAddr>>;
    /// Blocks a subnet (CIDR).
    fn block_subnet(&self, cidr: String, expiry: Option<Duration>) -> AdminFuture<'_, ()>;
    /// Lifts a subnet block.
    fn unblock_subnet(&self, cidr: String) -> AdminFuture<'_, ()>;
    /// Blocked subnets (CIDR).
    fn blocked_subnets(&self) -> AdminFuture<'_, Vec<String>>;
    /// Protects a peer from pruning.
    fn protect_peer(&self, peer: String) -> AdminFuture<'_, ()>;
}

fn rpc_error(e: P2pCallError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(e.code(), e.to_string(), None::<()>)
}

/// The `opp2p_peers` answer from the host.
async fn peer_dump(
    p2p: &dyn GossipStatusSource,
    connected_only: bool,
) -> Result<PeerDump, P2pCallError> {
    let peers = p2p.peers(connected_only).await?;
    let banned = p2p.blocked_peers().await?;
    let ips = p2p.blocked_addrs().await?;
    let subnets = p2p.blocked_subnets().await?;
    Ok(PeerDump::new(peers, banned, ips, subnets))
}

/// The p2p host, or the error of a node without one.
fn host(ctx: &RpcContext) -> Result<&dyn GossipStatusSource, ErrorObjectOwned> {
    ctx.gossip
        .as_deref()
        .ok_or_else(|| ErrorObjectOwned::owned(-32000, "p2p is disabled on this node", None::<()>))
}

/// Serializes an admin answer (`null` for `()`, as op-node).
fn answer<T: Serialize>(r: Result<T, P2pCallError>) -> Result<Value, ErrorObjectOwned> {
    serde_json::to_value(r.map_err(rpc_error)?)
        .map_err(|e| ErrorObjectOwned::owned(-32603, e.to_string(), None::<()>))
}

fn secs(s: Option<u64>) -> Option<Duration> {
    s.map(Duration::from_secs)
}

/// Registers the `opp2p_` namespace.
pub(crate) fn register(m: &mut RpcModule<RpcContext>) {
    m.register_async_method("opp2p_self", |_, ctx, _| async move {
        answer(Ok(host(&ctx)?.self_info()))
    })
    .expect("unique");
    m.register_async_method("opp2p_peers", |p, ctx, _| async move {
        let connected: Option<bool> = p.sequence().optional_next().map_err(invalid_params)?;
        let connected = connected.unwrap_or(true);
        answer(peer_dump(host(&ctx)?, connected).await)
    })
    .expect("unique");
    m.register_async_method("opp2p_peerStats", |_, ctx, _| async move {
        answer(host(&ctx)?.peer_stats().await)
    })
    .expect("unique");
    m.register_async_method("opp2p_listBlockedPeers", |_, ctx, _| async move {
        answer(host(&ctx)?.blocked_peers().await)
    })
    .expect("unique");
    m.register_async_method("opp2p_listBlockedAddrs", |_, ctx, _| async move {
        answer(host(&ctx)?.blocked_addrs().await)
    })
    .expect("unique");
    m.register_async_method("opp2p_listBlockedSubnets", |_, ctx, _| async move {
        answer(host(&ctx)?.blocked_subnets().await)
    })
    .expect("unique");
    m.register_async_method("opp2p_unblockPeer", |p, ctx, _| async move {
        let id: String = p.one().map_err(invalid_params)?;
        answer(host(&ctx)?.unblock_peer(id).await)
    })
    .expect("unique");
    m.register_async_method("opp2p_protectPeer", |p, ctx, _| async move {
        let id: String = p.one().map_err(invalid_params)?;
        answer(host(&ctx)?.protect_peer(id).await)
    })
    .expect("unique");
    m.register_async_method("opp2p_unblockSubnet", |p, ctx, _| async move {
        let cidr: String = p.one().map_err(invalid_params)?;
        answer(host(&ctx)?.unblock_subnet(cidr).await)
    })
    .expect("unique");
    // The block calls take op-node's one parameter and an optional expiry in seconds.
    m.register_async_method("opp2p_blockPeer", |p, ctx, _| async move {
        let mut seq = p.sequence();
        let id: String = seq.next().map_err(invalid_params)?;
        let expiry: Option<u64> = seq.optional_next().map_err(invalid_params)?;
        answer(host(&ctx)?.block_peer(id, secs(expiry)).await)
    })
    .expect("unique");
    m.register_async_method("opp2p_blockSubnet", |p, ctx, _| async move {
        let mut seq = p.sequence();
        let cidr: String = seq.next().map_err(invalid_params)?;
        let expiry: Option<u64> = seq.optional_next().map_err(invalid_params)?;
        answer(host(&ctx)?.block_subnet(cidr, secs(expiry)).await)
    })
    .expect("unique");
    m.register_async_method("opp2p_blockAddr", |p, ctx, _| async move {
        let mut seq = p.sequence();
        let ip: IpAddr = seq.next().map_err(invalid_params)?;
        let expiry: Option<u64> = seq.optional_next().map_err(invalid_params)?;
        answer(host(&ctx)?.block_addr(ip, secs(expiry)).await)
    })
    .expect("unique");
    m.register_async_method("opp2p_unblockAddr", |p, ctx, _| async move {
        let ip: IpAddr = p.one().map_err(invalid_params)?;
        answer(host(&ctx)?.unblock_addr(ip).await)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer(id: &str, connectedness: Connectedness, direction: Direction) -> PeerInfo {
        PeerInfo {
            peer_id: id.into(),
            user_agent: "op-node".into(),
            protocol_version: "optimism".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/9222".into()],
            protocols: vec!["/meshsub/1.1.0".into()],
            connectedness,
            direction,
            chain_id: 901,
            latency: 5,
            gossip_blocks: true,
            scores: PeerScores { gossip: Some(1.5), app: Some(-2.0) },
            ..Default::default()
        }
    }

    #[test]
    fn peers_serialize_in_op_node_shapes() {
        let p = serde_json::to_value(peer("a", Connectedness::Connected, Direction::Inbound));
        assert_eq!(
            p.ok(),
            Some(json!({
                "peerID": "a", "userAgent": "op-node", "protocolVersion": "optimism",
                "addresses": ["/ip4/127.0.0.1/tcp/9222"], "protocols": ["/meshsub/1.1.0"],
                "connectedness": "connected", "direction": "inbound", "protected": false,
                "chainID": 901, "latency": 5, "gossipBlocks": true,
                "scores": {"gossip": 1.5, "app": -2.0},
            }))
        );
        // The node itself has a node id and an ENR (empty without discovery), no scores.
        let me = PeerInfo {
            node_id: Some("ab".into()),
            enr: Some(String::new()),
            scores: PeerScores::default(),
            ..peer("me", Connectedness::Connected, Direction::Unknown)
        };
        let me = serde_json::to_value(me).unwrap_or_default();
        assert_eq!(me["nodeID"], "ab");
        assert_eq!(me["ENR"], "");
        assert_eq!(me["direction"], "unknown");
        assert_eq!(me["scores"], json!({}));
    }

    #[test]
    fn the_peer_dump_counts_connected_peers_and_keys_them_by_id() {
        let dump = PeerDump::new(
            vec![
                peer("b", Connectedness::Connected, Direction::Outbound),
                peer("a", Connectedness::NotConnected, Direction::Unknown),
                peer("c", Connectedness::Connected, Direction::Inbound),
            ],
            vec!["x".into()],
            vec!["10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))],
            vec!["10.0.0.0/8".into()],
        );
        let v = serde_json::to_value(dump).unwrap_or_default();
        assert_eq!(v["totalConnected"], 2);
        assert_eq!(v["peers"]["a"]["connectedness"], "notConnected");
        assert_eq!(v["peers"]["b"]["direction"], "outbound");
        assert_eq!(v["bannedPeers"], json!(["x"]));
        assert_eq!(v["bannedIPS"], json!(["10.1.2.3"]));
        assert_eq!(v["bannedSubnets"], json!(["10.0.0.0/8"]));
    }

    #[test]
    fn peer_stats_and_errors_keep_op_node_names_and_codes() {
        let stats = PeerStats { connected: 2, blocks_topic_v4: 1, ..Default::default() };
        let v = serde_json::to_value(stats).unwrap_or_default();
        for key in ["connected", "table", "blocksTopic", "blocksTopicV2", "blocksTopicV3"] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        assert_eq!(v["blocksTopicV4"], 1);
        assert_eq!(v["banned"], 0);
        assert_eq!(v["known"], 0);
        let bad = P2pCallError::InvalidParams("peer id `x`: bad".into());
        assert_eq!(
            (bad.code(), bad.to_string()),
            (-32602, "invalid params: peer id `x`: bad".into())
        );
        let down = P2pCallError::Unavailable("host stopped".into());
        assert_eq!(
            (down.code(), down.to_string()),
            (-32000, "p2p host unavailable: host stopped".into())
        );
        assert_eq!(answer(Ok(())).ok(), Some(Value::Null));
    }
}
