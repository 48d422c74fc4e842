//! The `opp2p_` admin API: its requests, the shapes it answers with (op-node's JSON field
//! names and strings), and their handling on the host.

use super::{
    peers::{BanReason, GossipView},
    Host,
};
use crate::altsync::PayloadResponse;
use crate::{codec::BlockVersion, gate::now_secs, gate::Subnet};
use libp2p::{gossipsub, request_response::OutboundFailure, PeerId};
use std::{collections::HashSet, net::IpAddr, time::Duration, time::Instant};
use tokio::sync::oneshot;

/// Whether a peer is connected (op-node's `network.Connectedness` strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Connectedness {
    /// `connected`.
    Connected,
    /// `notConnected`.
    NotConnected,
}

impl Connectedness {
    /// The string op-node shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::NotConnected => "notConnected",
        }
    }
}

/// Who opened a peer's connection (op-node's `network.Direction` strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
    /// Not connected.
    Unknown,
}

impl Direction {
    /// The string op-node shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Unknown => "unknown",
        }
    }
}

/// A peer as the `opp2p_` admin API shows it (op-node `p2p.PeerInfo`, trimmed to what this
/// host knows).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// Peer id.
    #[serde(rename = "peerID")]
    pub peer_id: String,
    /// Agent version from identify.
    pub user_agent: String,
    /// Protocol version from identify.
    pub protocol_version: String,
    /// Known addresses.
    pub addresses: Vec<String>,
    /// Protocols from identify.
    pub protocols: Vec<String>,
    /// Connected or not.
    pub connectedness: Connectedness,
    /// Who dialled.
    pub direction: Direction,
    /// A static (protected) peer.
    pub protected: bool,
    /// L2 chain id.
    #[serde(rename = "chainID")]
    pub chain_id: u64,
    /// Latest ping round trip, nanoseconds.
    pub latency: u64,
    /// Whether it is subscribed to a blocks topic.
    pub gossip_blocks: bool,
    /// Total gossipsub score (with the application score) and the application score.
    pub scores: PeerScores,
}

/// Scores of a peer.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerScores {
    /// Total gossipsub score.
    pub gossip: f64,
    /// Application score (alt-sync answers, rejected payloads, floods).
    pub app: f64,
}

/// Counts like op-node's `opp2p_peerStats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStats {
    /// Connected peers.
    pub connected: u64,
    /// Known peers (connected, static, identified).
    pub table: u64,
    /// Peers on the v1 blocks topic.
    pub blocks_topic: u64,
    /// Peers on the v2 blocks topic.
    #[serde(rename = "blocksTopicV2")]
    pub blocks_topic_v2: u64,
    /// Peers on the v3 blocks topic.
    #[serde(rename = "blocksTopicV3")]
    pub blocks_topic_v3: u64,
    /// Peers on the v4 blocks topic.
    #[serde(rename = "blocksTopicV4")]
    pub blocks_topic_v4: u64,
    /// Banned peers.
    pub banned: u64,
    /// Peers known to the host.
    pub known: u64,
}

/// The answer to an admin `payload_by_number` request.
pub(super) type RequestReply = oneshot::Sender<Result<PayloadResponse, OutboundFailure>>;

/// Admin requests (the `opp2p_` namespace).
pub(super) enum Admin {
    Peers(bool, oneshot::Sender<Vec<PeerInfo>>),
    PeerStats(oneshot::Sender<PeerStats>),
    Block(PeerId, Option<Duration>, oneshot::Sender<()>),
    Unblock(PeerId, oneshot::Sender<()>),
    ListBlocked(oneshot::Sender<Vec<PeerId>>),
    BlockAddr(IpAddr, Option<Duration>, oneshot::Sender<()>),
    ListBlockedAddrs(oneshot::Sender<Vec<IpAddr>>),
    UnblockAddr(IpAddr, oneshot::Sender<()>),
    BlockSubnet(Subnet, Option<Duration>, oneshot::Sender<()>),
    UnblockSubnet(Subnet, oneshot::Sender<()>),
    ListBlockedSubnets(oneshot::Sender<Vec<Subnet>>),
    Protect(PeerId, oneshot::Sender<()>),
    Request(PeerId, u64, RequestReply),
}

impl Host {
    /// What gossipsub knows of `peer`.
    fn gossip_view(&self, peer: &PeerId) -> GossipView {
        let gs = &self.swarm.behaviour().gossipsub;
        GossipView {
            score: gs.peer_score(peer).unwrap_or_default(),
            blocks: gs.all_peers().any(|(p, topics)| p == peer && !topics.is_empty()),
        }
    }

    fn peer_stats(&self) -> PeerStats {
        let gs = &self.swarm.behaviour().gossipsub;
        let on = |v: BlockVersion| {
            let t = gossipsub::IdentTopic::new(v.topic(self.chain_id)).hash();
            gs.all_peers().filter(|(_, ts)| ts.contains(&&t)).count() as u64
        };
        let mut known: HashSet<PeerId> = self.peers.known().collect();
        known.extend(self.swarm.connected_peers().copied());
        PeerStats {
            connected: self.swarm.connected_peers().count() as u64,
            table: known.len() as u64,
            blocks_topic: on(BlockVersion::V1),
            blocks_topic_v2: on(BlockVersion::V2),
            blocks_topic_v3: on(BlockVersion::V3),
            blocks_topic_v4: on(BlockVersion::V4),
            banned: self.peers.gate().read().peers(now_secs()).len() as u64,
            known: known.len() as u64,
        }
    }

    fn disconnect(&mut self, peers: Vec<PeerId>) {
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    pub(super) fn on_admin(&mut self, a: Admin) {
        let (now, unix) = (Instant::now(), now_secs());
        match a {
            Admin::Peers(connected_only, reply) => {
                let mut ids: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
                if !connected_only {
                    ids.extend(self.peers.known());
                }
                let infos = ids
                    .iter()
                    .map(|p| self.peers.info(p, self.gossip_view(p), self.chain_id))
                    .collect();
                let _ = reply.send(infos);
            }
            Admin::PeerStats(reply) => {
                let _ = reply.send(self.peer_stats());
            }
            Admin::Block(peer, duration, reply) => {
                self.ban(peer, BanReason::Admin, duration);
                let _ = reply.send(());
            }
            Admin::Unblock(peer, reply) => {
                self.unban(&peer);
                let _ = reply.send(());
            }
            Admin::ListBlocked(reply) => {
                let gate = self.peers.gate().read();
                let _ = reply.send(gate.peers(unix).into_iter().map(|(p, _)| p).collect());
            }
            Admin::BlockAddr(ip, duration, reply) => {
                let drop = self.peers.block_ip(ip, duration, unix);
                self.disconnect(drop);
                let _ = reply.send(());
            }
            Admin::UnblockAddr(ip, reply) => {
                self.peers.unblock_ip(ip, now);
                let _ = reply.send(());
            }
            Admin::BlockSubnet(net, duration, reply) => {
                let drop = self.peers.block_subnet(net, duration, unix);
                self.disconnect(drop);
                let _ = reply.send(());
            }
            Admin::UnblockSubnet(net, reply) => {
                self.peers.unblock_subnet(net, now);
                let _ = reply.send(());
            }
            Admin::ListBlockedSubnets(reply) => {
                let gate = self.peers.gate().read();
                let _ = reply.send(gate.subnets(unix).into_iter().map(|(n, _)| n).collect());
            }
            Admin::ListBlockedAddrs(reply) => {
                let gate = self.peers.gate().read();
                let _ = reply.send(gate.ips(unix).into_iter().map(|(i, _)| i).collect());
            }
            Admin::Protect(peer, reply) => {
                self.peers.protect(peer);
                let _ = reply.send(());
            }
            Admin::Request(peer, number, reply) => {
                let id = self.swarm.behaviour_mut().reqresp.send_request(&peer, number);
                self.admin_requests.insert(id, reply);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_info_serialises_in_op_nodes_shape() {
        let info = PeerInfo {
            peer_id: "16Uiu2".into(),
            user_agent: "flashnode/0".into(),
            protocol_version: "optimism".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
            protocols: vec![],
            connectedness: Connectedness::NotConnected,
            direction: Direction::Inbound,
            protected: true,
            chain_id: 901,
            latency: 5,
            gossip_blocks: false,
            scores: PeerScores { gossip: -1.0, app: 0.5 },
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "peerID": "16Uiu2",
                "userAgent": "flashnode/0",
                "protocolVersion": "optimism",
                "addresses": ["/ip4/127.0.0.1/tcp/1"],
                "protocols": [],
                "connectedness": "notConnected",
                "direction": "inbound",
                "protected": true,
                "chainID": 901,
                "latency": 5,
                "gossipBlocks": false,
                "scores": {"gossip": -1.0, "app": 0.5},
            })
        );
        // The labels are the serialised strings.
        for c in [Connectedness::Connected, Connectedness::NotConnected] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.label());
        }
        for d in [Direction::Inbound, Direction::Outbound, Direction::Unknown] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.label());
        }
    }

    #[test]
    fn peer_stats_serialise_with_op_nodes_topic_names() {
        let json =
            serde_json::to_value(PeerStats { blocks_topic_v4: 2, ..Default::default() }).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["connected", "table", "blocksTopic", "blocksTopicV2", "blocksTopicV3", "banned"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        assert_eq!(json["blocksTopicV4"], 2);
    }
}
