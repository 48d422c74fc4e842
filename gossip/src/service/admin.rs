//! The `opp2p_` admin API: its requests and their handling on the host. The shapes it answers
//! with are in [`crate::admin_types`].

use super::{
    peers::{BanReason, GossipView},
    Host,
};
use crate::altsync::PayloadResponse;
use crate::{
    admin_types::{PeerInfo, PeerStats},
    codec::BlockVersion,
    gate::now_secs,
    gate::Subnet,
};
use libp2p::{gossipsub, request_response::OutboundFailure, PeerId};
use std::{collections::HashSet, net::IpAddr, time::Duration, time::Instant};
use tokio::sync::oneshot;

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
