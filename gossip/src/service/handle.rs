//! The handle the rest of the node keeps, and the commands it sends to the host's loop over
//! a bounded channel.

use super::{admin::Admin, GossipError};
use crate::admin_types::{PeerInfo, PeerStats};
use crate::{
    altsync::PayloadResponse, codec::SignedBlock, gate::Subnet, stats::GossipStats,
    validate::VerifiedBlock,
};
use libp2p::{gossipsub::PublishError, request_response::OutboundFailure, Multiaddr, PeerId};
use std::{net::IpAddr, sync::Arc, time::Duration};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What the handle asks of the host.
pub(super) enum Command {
    /// Publish a block; the reply says whether gossipsub took it.
    Publish(Box<SignedBlock>, oneshot::Sender<Result<(), PublishError>>),
    /// Store a block to serve it by alt-sync, without gossiping it.
    Remember(Box<SignedBlock>),
    /// Dial an address once.
    Dial(Multiaddr),
    /// A node discovery found on this chain.
    Discovered(PeerId, Multiaddr),
    /// An admin request.
    Admin(Admin),
}

/// The handle the node keeps: publish, subscribe to verified blocks, read counters.
#[derive(Clone, Debug)]
pub struct GossipHandle {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses the host listens on (ports resolved), each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Counters.
    pub stats: Arc<GossipStats>,
    /// Chain id.
    pub chain_id: u64,
    /// The local discv5 record (`enr:...`) when discovery runs.
    pub enr: Option<String>,
    /// The discv5 node id (hex, keccak of the public key) when discovery runs.
    pub node_id: Option<String>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) blocks: broadcast::Sender<Arc<VerifiedBlock>>,
}

impl GossipHandle {
    /// Publishes a signed block on its version's topic.
    pub async fn publish(&self, block: SignedBlock) -> Result<(), GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(Box::new(block), tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        Ok(rx.await.map_err(|_| GossipError::Stopped)??)
    }

    /// Stores a signed block to serve it by alt-sync without gossiping it: a block sealed
    /// before the host started, or one a lagging publisher skipped, is too old to gossip but
    /// must not leave a hole in what alt-sync serves.
    pub async fn remember(&self, block: SignedBlock) -> Result<(), GossipError> {
        self.commands
            .send(Command::Remember(Box::new(block)))
            .await
            .map_err(|_| GossipError::Stopped)
    }

    /// Verified blocks from gossip, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<VerifiedBlock>> {
        self.blocks.subscribe()
    }

    async fn admin<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Admin,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Admin(make(tx))).await.map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Peers: connected ones, or every known one.
    pub async fn peers(&self, connected_only: bool) -> Result<Vec<PeerInfo>, GossipError> {
        self.admin(|tx| Admin::Peers(connected_only, tx)).await
    }

    /// Peer counts.
    pub async fn peer_stats(&self) -> Result<PeerStats, GossipError> {
        self.admin(Admin::PeerStats).await
    }

    /// Bans a peer (persisted) for `duration`, or the configured ban duration when None; a
    /// zero duration blocks it until unblocked.
    pub async fn block_peer(
        &self,
        peer: PeerId,
        duration: Option<Duration>,
    ) -> Result<(), GossipError> {
        self.admin(|tx| Admin::Block(peer, duration, tx)).await
    }

    /// Lifts a ban.
    pub async fn unblock_peer(&self, peer: PeerId) -> Result<(), GossipError> {
        self.admin(|tx| Admin::Unblock(peer, tx)).await
    }

    /// Banned peers.
    pub async fn blocked_peers(&self) -> Result<Vec<PeerId>, GossipError> {
        self.admin(Admin::ListBlocked).await
    }

    /// Refuses and drops connections to and from an IP address (persisted) for `duration`, or
    /// the configured ban duration when None; a zero duration blocks it until unblocked.
    pub async fn block_addr(
        &self,
        ip: IpAddr,
        duration: Option<Duration>,
    ) -> Result<(), GossipError> {
        self.admin(|tx| Admin::BlockAddr(ip, duration, tx)).await
    }

    /// Lifts an IP block.
    pub async fn unblock_addr(&self, ip: IpAddr) -> Result<(), GossipError> {
        self.admin(|tx| Admin::UnblockAddr(ip, tx)).await
    }

    /// Refuses and drops connections to and from a subnet (persisted) for `duration`, or the
    /// configured ban duration when None; a zero duration blocks it until unblocked.
    pub async fn block_subnet(
        &self,
        subnet: Subnet,
        duration: Option<Duration>,
    ) -> Result<(), GossipError> {
        self.admin(|tx| Admin::BlockSubnet(subnet, duration, tx)).await
    }

    /// Lifts a subnet block.
    pub async fn unblock_subnet(&self, subnet: Subnet) -> Result<(), GossipError> {
        self.admin(|tx| Admin::UnblockSubnet(subnet, tx)).await
    }

    /// Blocked subnets.
    pub async fn blocked_subnets(&self) -> Result<Vec<Subnet>, GossipError> {
        self.admin(Admin::ListBlockedSubnets).await
    }

    /// Blocked IP addresses.
    pub async fn blocked_addrs(&self) -> Result<Vec<IpAddr>, GossipError> {
        self.admin(Admin::ListBlockedAddrs).await
    }

    /// Protects a peer: never banned by score, redialled like a static peer once known.
    pub async fn protect_peer(&self, peer: PeerId) -> Result<(), GossipError> {
        self.admin(|tx| Admin::Protect(peer, tx)).await
    }

    /// Sends one `payload_by_number` request to `peer` (admin and tests).
    pub async fn request_payload(
        &self,
        peer: PeerId,
        number: u64,
    ) -> Result<Result<PayloadResponse, OutboundFailure>, GossipError> {
        self.admin(|tx| Admin::Request(peer, number, tx)).await
    }

    /// Dials an address once.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), GossipError> {
        self.commands.send(Command::Dial(addr)).await.map_err(|_| GossipError::Stopped)
    }
}
