//! Wiring of the consensus-layer p2p host (the gossip crate) into `devnet` and `node`: the
//! devnet signs and publishes every sealed block; a node feeds verified gossip blocks into the
//! overlay's canonical tracking as unsafe blocks (the overlay's [`MergedSource`]), so the
//! overlay reconciles preconfirmations the moment a block is sealed and knows nothing of
//! libp2p, and answers the rpc crate's `opp2p_` admin calls over the host.

use crate::cli::{MessageIdArg, P2pArgs};
use alloy_primitives::Address;
use anyhow::Context;
use flashnode_devnet::{chain::SealedBlock, Devnet};
use flashnode_exec::StateSource;
use flashnode_gossip::{
    codec, tcp_multiaddr, GossipConfig, GossipHandle, MessageIdMode, Multiaddr, PeerId,
    VerifiedBlock,
};
use flashnode_overlay::{MergedSource, UnsafeBlock};
use flashnode_rpc::p2p::{
    AdminFuture, Connectedness, Direction, GossipStatus, GossipStatusSource, P2pCallError,
    PeerInfo, PeerScores, PeerStats,
};
use flashnode_tasks::TaskExecutor;
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The production default listen address (op-node's `--p2p.listen.tcp` is 9222).
const DEFAULT_P2P_ADDR: &str = "0.0.0.0:9222";

fn parse_addrs(list: &[String], what: &str) -> anyhow::Result<Vec<Multiaddr>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            flashnode_gossip::parse_peer_addr(s)
                .with_context(|| format!("{what}: cannot use `{s}`"))
        })
        .collect()
}

fn config(
    args: &P2pArgs,
    chain_id: u64,
    signer: Address,
    addr: SocketAddr,
) -> anyhow::Result<GossipConfig> {
    let mut c = GossipConfig::new(chain_id, tcp_multiaddr(addr), signer);
    c.static_peers = parse_addrs(&args.static_peers, "--p2p-static")?;
    c.bootnodes = parse_addrs(&args.bootnodes, "--p2p-bootnodes")?;
    c.key_path = args
        .key_path
        .clone()
        .or_else(|| args.data_dir.as_ref().map(|d| d.join("opnode_p2p_priv.txt")));
    c.store_path = args.data_dir.as_ref().map(|d| d.join("p2p.redb"));
    c.ban_duration = args.ban_duration;
    if !args.no_discovery {
        let bootnodes = args
            .bootnodes
            .iter()
            .map(|s| s.trim())
            .filter(|s| s.starts_with("enr:"))
            .map(|s| {
                s.parse::<flashnode_gossip::Enr>()
                    .map_err(|e| anyhow::anyhow!("--p2p-bootnodes: cannot use `{s}`: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut d = flashnode_gossip::DiscoveryConfig::new(args.discovery_addr.unwrap_or(addr));
        d.advertise_ip = args.advertise_ip;
        d.bootnodes = bootnodes;
        d.interval = args.discovery_interval;
        c.discovery = Some(d);
    }
    c.message_id = match args.message_id {
        MessageIdArg::OpNode => MessageIdMode::OpNode,
        MessageIdArg::Spec => MessageIdMode::Spec,
    };
    Ok(c)
}

fn announce(handle: &GossipHandle) {
    for addr in &handle.listen_addrs {
        println!("p2p: {addr}");
    }
    if let Some(enr) = &handle.enr {
        println!("p2p enr: {enr}");
    }
}

/// Starts the devnet's p2p host when `--p2p-addr` is given, and a task that signs every
/// sealed block with the dev unsafe-block signer and publishes it.
pub async fn start_for_devnet(
    args: &P2pArgs,
    devnet: &Devnet,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<Option<GossipHandle>> {
    let Some(addr) = args.addr.filter(|_| !args.disable) else { return Ok(None) };
    let key: alloy_signer_local::PrivateKeySigner =
        flashnode_gossip::DEV_UNSAFE_BLOCK_SIGNER_KEY.parse().context("dev signer key")?;
    let chain_id = devnet.shared.chain.chain_id;
    // Subscribed before the host starts, so every block sealed from here on reaches the
    // publisher; the ones sealed earlier are stored below.
    let mut sealed = devnet.subscribe_sealed();
    let config = config(args, chain_id, key.address(), addr)?;
    let handle = flashnode_gossip::spawn(config, cancel.clone(), tasks)
        .await
        .context("starting the p2p host")?;
    println!("p2p unsafe-block signer: {}", key.address());
    announce(&handle);
    let publisher = handle.clone();
    let shared = devnet.shared.clone();
    tasks.spawn_critical(
        "p2p_publisher",
        async move {
            let sign = |block: &SealedBlock| {
                let txs = block.txs.iter().map(|t| t.tx.clone()).collect();
                codec::sign_sealed(block.header.clone(), block.hash, txs, chain_id, &key)
                    .map_err(|err| warn!(%err, number = block.header.number, "cannot sign the sealed block"))
                    .ok()
            };
            // The next block number the store has not had yet: blocks before it were stored
            // (or published), so alt-sync serves the whole chain without holes.
            let mut next = 1;
            loop {
                let received = tokio::select! {
                    _ = cancel.cancelled() => return,
                    b = sealed.recv() => match b {
                        Ok(b) => Some(b),
                        Err(broadcast::error::RecvError::Lagged(n)) => { warn!(missed = n, "publisher lagged behind the sequencer; storing the blocks it missed"); None }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                // Blocks sealed before the subscription, or skipped by a lag: stored, not
                // gossiped (they are old news to peers).
                let upto = received.as_ref().map_or_else(|| shared.store.read().latest().header.number + 1, |b| b.header.number);
                while next < upto {
                    let old = shared.store.read().by_number(next).cloned();
                    if let Some(signed) = old.as_deref().and_then(sign) {
                        if publisher.remember(signed).await.is_err() { return }
                    }
                    next += 1;
                }
                let Some(block) = received else { continue };
                if block.header.number < next { continue }
                next = block.header.number + 1;
                let Some(signed) = sign(&block) else { continue };
                // No peers yet is normal on a fresh devnet: the block is simply not gossiped.
                if let Err(err) = publisher.publish(signed).await {
                    debug!(%err, number = block.header.number, "block not published");
                }
            }
        },
    );
    Ok(Some(handle))
}

/// Starts a node's p2p host when it knows the sequencer address (and `--p2p-disable` is not
/// set).
pub async fn start_for_node(
    args: &P2pArgs,
    chain_id: u64,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<Option<GossipHandle>> {
    if args.disable {
        return Ok(None);
    }
    let Some(signer) = args.sequencer_address else {
        info!("p2p off: no --p2p-sequencer-address");
        return Ok(None);
    };
    let addr = match args.addr {
        Some(a) => a,
        None => DEFAULT_P2P_ADDR.parse().context("default p2p address")?,
    };
    let handle = flashnode_gossip::spawn(config(args, chain_id, signer, addr)?, cancel, tasks)
        .await
        .context("starting the p2p host")?;
    announce(&handle);
    Ok(Some(handle))
}

/// The node's p2p host behind `flashnode_status` and the `opp2p_` admin API: each call goes
/// to the host, whose answers are already the op-node shapes the rpc crate serves.
#[derive(Debug)]
struct P2pStatus(GossipHandle);

fn down(e: flashnode_gossip::GossipError) -> P2pCallError {
    P2pCallError::Unavailable(Box::new(e))
}

fn peer_id(s: &str) -> Result<PeerId, P2pCallError> {
    s.parse::<PeerId>().map_err(|e| P2pCallError::InvalidParams(format!("peer id `{s}`: {e}")))
}

fn subnet(s: &str) -> Result<flashnode_gossip::Subnet, P2pCallError> {
    s.parse().map_err(|e: flashnode_gossip::SubnetError| P2pCallError::InvalidParams(e.to_string()))
}

impl GossipStatusSource for P2pStatus {
    fn gossip_status(&self) -> GossipStatus {
        GossipStatus { peer_id: self.0.peer_id.to_string(), counters: self.0.stats.snapshot() }
    }

    fn self_info(&self) -> PeerInfo {
        let h = &self.0;
        PeerInfo {
            peer_id: h.peer_id.to_string(),
            node_id: Some(h.node_id.clone().unwrap_or_default()),
            user_agent: format!("flashnode/{}", env!("CARGO_PKG_VERSION")),
            protocol_version: "optimism".into(),
            enr: Some(h.enr.clone().unwrap_or_default()),
            addresses: h.listen_addrs.iter().map(|a| a.to_string()).collect(),
            protocols: flashnode_gossip::altsync::protocols(h.chain_id)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            connectedness: Connectedness::Connected,
            direction: Direction::Unknown,
            protected: false,
            chain_id: h.chain_id,
            latency: 0,
            gossip_blocks: true,
            scores: PeerScores::default(),
        }
    }

    fn peers(&self, connected_only: bool) -> AdminFuture<'_, Vec<PeerInfo>> {
        Box::pin(async move { self.0.peers(connected_only).await.map_err(down) })
    }

    fn peer_stats(&self) -> AdminFuture<'_, PeerStats> {
        Box::pin(async move { self.0.peer_stats().await.map_err(down) })
    }

    fn block_peer(&self, peer: String, expiry: Option<Duration>) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.block_peer(peer_id(&peer)?, expiry).await.map_err(down) })
    }

    fn unblock_peer(&self, peer: String) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.unblock_peer(peer_id(&peer)?).await.map_err(down) })
    }

    fn blocked_peers(&self) -> AdminFuture<'_, Vec<String>> {
        Box::pin(async move {
            let peers = self.0.blocked_peers().await.map_err(down)?;
            Ok(peers.iter().map(|p| p.to_string()).collect())
        })
    }

    fn block_addr(&self, ip: IpAddr, expiry: Option<Duration>) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.block_addr(ip, expiry).await.map_err(down) })
    }

    fn unblock_addr(&self, ip: IpAddr) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.unblock_addr(ip).await.map_err(down) })
    }

    fn blocked_addrs(&self) -> AdminFuture<'_, Vec<IpAddr>> {
        Box::pin(async move { self.0.blocked_addrs().await.map_err(down) })
    }

    fn block_subnet(&self, cidr: String, expiry: Option<Duration>) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.block_subnet(subnet(&cidr)?, expiry).await.map_err(down) })
    }

    fn unblock_subnet(&self, cidr: String) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.unblock_subnet(subnet(&cidr)?).await.map_err(down) })
    }

    fn blocked_subnets(&self) -> AdminFuture<'_, Vec<String>> {
        Box::pin(async move {
            let nets = self.0.blocked_subnets().await.map_err(down)?;
            Ok(nets.iter().map(|n| n.to_string()).collect())
        })
    }

    fn protect_peer(&self, peer: String) -> AdminFuture<'_, ()> {
        Box::pin(async move { self.0.protect_peer(peer_id(&peer)?).await.map_err(down) })
    }
}

/// For `flashnode node`: starts the p2p host (when enabled) and wraps `source` in the
/// overlay's [`MergedSource`], fed the host's verified blocks, so gossiped blocks reach the
/// overlay; returns the source to use and the status section.
pub async fn wrap_source(
    args: &P2pArgs,
    source: Arc<dyn StateSource>,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<(Arc<dyn StateSource>, Option<Arc<dyn GossipStatusSource>>)> {
    match start_for_node(args, source.chain_id(), cancel.clone(), tasks).await? {
        Some(handle) => {
            // Subscribed before the merge starts, so no verified block falls between.
            let verified = handle.subscribe();
            let (merged, feed) = MergedSource::spawn(source, cancel.clone(), tasks);
            tasks.spawn_critical("gossip_canonical", feed_unsafe_blocks(verified, feed, cancel));
            Ok((Arc::new(merged), Some(Arc::new(P2pStatus(handle)))))
        }
        None => Ok((source, None)),
    }
}

/// Hands every verified gossip block to the overlay's merge as an unsafe block, until
/// `cancel` or until either side is gone.
async fn feed_unsafe_blocks(
    mut verified: broadcast::Receiver<Arc<VerifiedBlock>>,
    feed: mpsc::Sender<UnsafeBlock>,
    cancel: CancellationToken,
) {
    loop {
        let block = tokio::select! {
            _ = cancel.cancelled() => return,
            b = verified.recv() => match b {
                Ok(b) => b,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "gossip blocks lagged");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let block = UnsafeBlock {
            header: block.header.clone(),
            hash: block.hash,
            tx_hashes: block.tx_hashes.clone(),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = feed.send(block) => if sent.is_err() { return },
        }
    }
}
