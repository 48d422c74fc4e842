//! Wiring of the consensus-layer p2p host (the gossip crate) into `devnet` and `node`: the
//! devnet signs and publishes every sealed block; a node feeds verified gossip blocks into the
//! overlay's canonical tracking through [`GossipSource`], a [`StateSource`] wrapper, so the
//! overlay reconciles preconfirmations the moment a block is sealed and knows nothing of
//! libp2p.

use crate::cli::{MessageIdArg, P2pArgs};
use alloy_primitives::{Address, B256, U256};
use anyhow::Context;
use flashnode_devnet::Devnet;
use flashnode_exec::source::{
    CanonicalBlock, CanonicalNotification, SourceAccount, SourceError, StateSource,
};
use flashnode_gossip::{
    codec, tcp_multiaddr, GossipConfig, GossipHandle, MessageIdMode, Multiaddr, PeerId,
    VerifiedBlock,
};
use flashnode_rpc::p2p::{P2pCall, P2pCallError};
use flashnode_tasks::TaskExecutor;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::broadcast;
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
    let handle =
        flashnode_gossip::spawn(config(args, chain_id, key.address(), addr)?, cancel.clone())
            .await
            .context("starting the p2p host")?;
    println!("p2p unsafe-block signer: {}", key.address());
    announce(&handle);
    let mut sealed = devnet.subscribe_sealed();
    let publisher = handle.clone();
    tasks.spawn_critical(
        "p2p_publisher",
        async move {
            loop {
                let block = tokio::select! {
                    _ = cancel.cancelled() => return,
                    b = sealed.recv() => match b {
                        Ok(b) => b,
                        Err(broadcast::error::RecvError::Lagged(n)) => { warn!(missed = n, "publisher lagged behind the sequencer"); continue }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let txs = block.txs.iter().map(|t| t.tx.clone()).collect();
                let signed = match codec::sign_sealed(block.header.clone(), block.hash, txs, chain_id, &key) {
                    Ok(s) => s,
                    Err(err) => { warn!(%err, number = block.header.number, "cannot sign the sealed block"); continue }
                };
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
    let handle = flashnode_gossip::spawn(config(args, chain_id, signer, addr)?, cancel)
        .await
        .context("starting the p2p host")?;
    announce(&handle);
    Ok(Some(handle))
}

/// The node's p2p status for `flashnode_status`.
#[derive(Debug)]
struct P2pStatus(GossipHandle);

impl flashnode_rpc::p2p::GossipStatusSource for P2pStatus {
    fn gossip_status(&self) -> flashnode_rpc::p2p::GossipStatus {
        let s = self.0.stats.snapshot();
        flashnode_rpc::p2p::GossipStatus {
            peer_id: self.0.peer_id.to_string(),
            peers: s.peers,
            accepted: s.accepted,
            ignored: s.ignored,
            rejected: s.rejected,
            published: s.published,
            highest_block: s.highest_block,
            altsync_requested: s.altsync_requested,
            altsync_filled: s.altsync_filled,
            altsync_missing: s.altsync_missing,
            altsync_served: s.altsync_served,
            altsync_rate_limited: s.altsync_rate_limited,
            stored_low: s.stored_low,
            stored_high: s.stored_high,
            stored_count: s.stored_count,
            discovered: s.discovered,
            discovered_other_chain: s.discovered_other_chain,
            discovery_dials: s.discovery_dials,
            discovery_full: s.discovery_full,
        }
    }

    fn call(&self, call: P2pCall) -> BoxFuture<'_, Result<serde_json::Value, P2pCallError>> {
        Box::pin(async move {
            let h = &self.0;
            let down = |e: flashnode_gossip::GossipError| P2pCallError::Unavailable(e.to_string());
            let peer = |s: &str| {
                s.parse::<PeerId>()
                    .map_err(|e| P2pCallError::InvalidParams(format!("peer id `{s}`: {e}")))
            };

            Ok(match call {
                P2pCall::SelfInfo => serde_json::json!({
                    "peerID": h.peer_id.to_string(),
                    "nodeID": h.node_id.clone().unwrap_or_default(),
                    "userAgent": format!("flashnode/{}", env!("CARGO_PKG_VERSION")),
                    "protocolVersion": "optimism",
                    "ENR": h.enr.clone().unwrap_or_default(),
                    "addresses": h.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "protocols": flashnode_gossip::altsync::protocols(h.chain_id).iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "connectedness": "connected",
                    "direction": "unknown",
                    "protected": false,
                    "chainID": h.chain_id,
                    "latency": 0,
                    "gossipBlocks": true,
                    "scores": {},
                }),
                P2pCall::Peers { connected } => {
                    let peers = h.peers(connected).await.map_err(down)?;
                    let banned = h.blocked_peers().await.map_err(down)?;
                    let ips = h.blocked_addrs().await.map_err(down)?;
                    let subnets: Vec<String> = h
                        .blocked_subnets()
                        .await
                        .map_err(down)?
                        .iter()
                        .map(|n| n.to_string())
                        .collect();
                    let total = peers
                        .iter()
                        .filter(|p| p.connectedness == flashnode_gossip::Connectedness::Connected)
                        .count();
                    let map: serde_json::Map<String, serde_json::Value> = peers
                        .iter()
                        .map(|p| Ok((p.peer_id.clone(), to_json(p)?)))
                        .collect::<Result<_, P2pCallError>>()?;
                    serde_json::json!({
                        "totalConnected": total,
                        "peers": map,
                        "bannedPeers": banned.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                        "bannedIPS": ips,
                        "bannedSubnets": subnets,
                    })
                }
                P2pCall::PeerStats => to_json(&h.peer_stats().await.map_err(down)?)?,
                P2pCall::BlockPeer(id, secs) => {
                    h.block_peer(peer(&id)?, secs.map(Duration::from_secs)).await.map_err(down)?;
                    serde_json::Value::Null
                }
                P2pCall::UnblockPeer(id) => {
                    h.unblock_peer(peer(&id)?).await.map_err(down)?;
                    serde_json::Value::Null
                }
                P2pCall::ListBlockedPeers => {
                    serde_json::json!(h
                        .blocked_peers()
                        .await
                        .map_err(down)?
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>())
                }
                P2pCall::BlockAddr(ip, secs) => {
                    h.block_addr(ip, secs.map(Duration::from_secs)).await.map_err(down)?;
                    serde_json::Value::Null
                }
                P2pCall::ListBlockedAddrs => {
                    serde_json::json!(h.blocked_addrs().await.map_err(down)?)
                }
                P2pCall::UnblockAddr(ip) => {
                    h.unblock_addr(ip).await.map_err(down)?;
                    serde_json::Value::Null
                }
                P2pCall::BlockSubnet(cidr, secs) => {
                    let net = cidr.parse().map_err(P2pCallError::InvalidParams)?;
                    h.block_subnet(net, secs.map(Duration::from_secs)).await.map_err(down)?;
                    serde_json::Value::Null
                }
                P2pCall::UnblockSubnet(cidr) => {
                    h.unblock_subnet(cidr.parse().map_err(P2pCallError::InvalidParams)?)
                        .await
                        .map_err(down)?;
                    serde_json::Value::Null
                }
                P2pCall::ListBlockedSubnets => serde_json::json!(h
                    .blocked_subnets()
                    .await
                    .map_err(down)?
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()),
                P2pCall::ProtectPeer(id) => {
                    h.protect_peer(peer(&id)?).await.map_err(down)?;
                    serde_json::Value::Null
                }
            })
        })
    }
}

/// For `flashnode node`: starts the p2p host (when enabled) and wraps `source` so gossiped
/// blocks reach the overlay; returns the source to use and the status section.
pub async fn wrap_source(
    args: &P2pArgs,
    source: Arc<dyn StateSource>,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<(Arc<dyn StateSource>, Option<Arc<dyn flashnode_rpc::p2p::GossipStatusSource>>)>
{
    match start_for_node(args, source.chain_id(), cancel.clone()).await? {
        Some(handle) => {
            let wrapped = GossipSource::new(source, &handle, cancel, tasks);
            Ok((Arc::new(wrapped), Some(Arc::new(P2pStatus(handle)))))
        }
        None => Ok((source, None)),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, P2pCallError> {
    serde_json::to_value(v).map_err(|e| P2pCallError::Unavailable(e.to_string()))
}

/// How long a read at a block known only from gossip waits for the execution client to
/// import it.
const GOSSIP_STATE_WAIT: Duration = Duration::from_secs(2);
/// Blocks remembered as forwarded (tip regressions and duplicates are filtered against them).
const FORWARDED_WINDOW: usize = 512;

/// A [`StateSource`] whose notifications merge the inner source's with verified gossip
/// blocks: a gossiped block that extends the tip is announced at once as `Committed` (its
/// receipts are unknown, so it carries none), and the execution client's later notification
/// of the same block is dropped so the tip never goes backwards. Reads at a block known only
/// from gossip wait briefly for the execution client to import it.
#[derive(Debug)]
pub struct GossipSource {
    inner: Arc<dyn StateSource>,
    notifications: broadcast::Sender<CanonicalNotification>,
    forwarded: Arc<Mutex<Forwarded>>,
}

#[derive(Debug, Default)]
struct Forwarded {
    by_number: BTreeMap<u64, B256>,
    gossip_only: std::collections::HashSet<B256>,
}

impl Forwarded {
    fn highest(&self) -> Option<u64> {
        self.by_number.last_key_value().map(|(n, _)| *n)
    }
    fn insert(&mut self, number: u64, hash: B256) {
        self.by_number.insert(number, hash);
        while self.by_number.len() > FORWARDED_WINDOW {
            if let Some((_, h)) = self.by_number.pop_first() {
                self.gossip_only.remove(&h);
            }
        }
    }
}

impl GossipSource {
    /// Wraps `inner` and starts merging `gossip` blocks into its notifications (a critical
    /// task of `tasks`, `gossip_canonical`).
    pub fn new(
        inner: Arc<dyn StateSource>,
        gossip: &GossipHandle,
        cancel: CancellationToken,
        tasks: &TaskExecutor,
    ) -> Self {
        let (notifications, _) = broadcast::channel(256);
        let forwarded = Arc::new(Mutex::new(Forwarded::default()));
        let task = Merge { tx: notifications.clone(), forwarded: forwarded.clone() };
        tasks.spawn_critical(
            "gossip_canonical",
            task.run(inner.clone(), inner.subscribe(), gossip.subscribe(), cancel),
        );
        Self { inner, notifications, forwarded }
    }

    /// Retries a read at a gossip-only block until the execution client has it.
    async fn read<T, F>(&self, at: B256, f: F) -> Result<T, SourceError>
    where
        F: Fn() -> BoxFuture<'static, Result<T, SourceError>>,
    {
        let deadline = tokio::time::Instant::now() + GOSSIP_STATE_WAIT;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if self.forwarded.lock().gossip_only.contains(&at)
                        && tokio::time::Instant::now() < deadline =>
                {
                    debug!(%at, %e, "state of a gossiped block not imported yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

struct Merge {
    tx: broadcast::Sender<CanonicalNotification>,
    forwarded: Arc<Mutex<Forwarded>>,
}

impl Merge {
    async fn run(
        self,
        source: Arc<dyn StateSource>,
        mut inner: broadcast::Receiver<CanonicalNotification>,
        mut gossip: broadcast::Receiver<Arc<VerifiedBlock>>,
        cancel: CancellationToken,
    ) {
        // The execution client's tip is the baseline: gossip only ever moves it forward.
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                tip = source.latest() => match tip {
                    Ok(tip) => {
                        self.forwarded.lock().insert(tip.header.number, tip.hash);
                        break;
                    }
                    Err(err) => {
                        debug!(%err, "no canonical tip yet");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                },
            }
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                n = inner.recv() => match n {
                    Ok(n) => self.on_inner(n),
                    Err(broadcast::error::RecvError::Lagged(missed)) => warn!(missed, "canonical notifications lagged"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                b = gossip.recv() => match b {
                    Ok(b) => self.on_gossip(&b.header, b.hash, &b.tx_hashes),
                    Err(broadcast::error::RecvError::Lagged(missed)) => warn!(missed, "gossip blocks lagged"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    fn on_inner(&self, n: CanonicalNotification) {
        let n = match n {
            CanonicalNotification::Committed { new } => {
                let mut f = self.forwarded.lock();
                let highest = f.highest();
                let mut out = Vec::new();
                for b in new {
                    let (number, hash) = (b.header.number, b.hash);
                    match f.by_number.get(&number) {
                        // Already announced (from gossip): the tip must not move again.
                        Some(h) if *h == hash => {
                            f.gossip_only.remove(&hash);
                        }
                        // The execution client disagrees with what gossip announced: it wins,
                        // and whatever was announced above it is void.
                        Some(_) => {
                            let above: Vec<u64> =
                                f.by_number.range(number..).map(|(n, _)| *n).collect();
                            for n in above {
                                if let Some(h) = f.by_number.remove(&n) {
                                    f.gossip_only.remove(&h);
                                }
                            }
                            f.insert(number, hash);
                            out.push(b);
                        }
                        // A block below the announced tip that gossip skipped: record it only,
                        // announcing it would move the tip backwards.
                        None if highest.is_some_and(|h| number < h) => f.insert(number, hash),
                        None => {
                            f.insert(number, hash);
                            out.push(b);
                        }
                    }
                }
                if out.is_empty() {
                    return;
                }
                CanonicalNotification::Committed { new: out }
            }
            other => {
                let mut f = self.forwarded.lock();
                if let Some(tip) = other.tip() {
                    // A reorg: everything above the new tip is void.
                    let above: Vec<u64> =
                        f.by_number.range(tip.header.number..).map(|(n, _)| *n).collect();
                    for n in above {
                        f.by_number.remove(&n);
                    }
                    f.insert(tip.header.number, tip.hash);
                }
                other
            }
        };
        let _ = self.tx.send(n);
    }

    fn on_gossip(&self, header: &alloy_consensus::Header, hash: B256, tx_hashes: &[B256]) {
        let number = header.number;
        let mut f = self.forwarded.lock();
        // The baseline is set before gossip is read (see `run`).
        let Some(highest) = f.highest() else { return };
        // Only a block that extends what we announced becomes the tip; a competing block at an
        // announced height is left to the execution client to decide.
        if number <= highest {
            return;
        }
        f.insert(number, hash);
        f.gossip_only.insert(hash);
        drop(f);
        let block = CanonicalBlock {
            header: header.clone(),
            hash,
            tx_hashes: tx_hashes.to_vec(),
            receipts: Vec::new(),
        };
        debug!(number, %hash, "gossiped block announced as canonical");
        metrics::counter!("flashnode_gossip_canonical_total").increment(1);
        let _ = self.tx.send(CanonicalNotification::Committed { new: vec![Arc::new(block)] });
    }
}

impl StateSource for GossipSource {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }
    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        self.inner.latest()
    }
    fn block_by_number(
        &self,
        number: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
        self.inner.block_by_number(number)
    }
    fn account(
        &self,
        at: B256,
        address: Address,
    ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
        let inner = self.inner.clone();
        Box::pin(self.read(at, move || {
            let inner = inner.clone();
            Box::pin(async move { inner.account(at, address).await })
        }))
    }
    fn storage(
        &self,
        at: B256,
        address: Address,
        slot: U256,
    ) -> BoxFuture<'_, Result<U256, SourceError>> {
        let inner = self.inner.clone();
        Box::pin(self.read(at, move || {
            let inner = inner.clone();
            Box::pin(async move { inner.storage(at, address, slot).await })
        }))
    }
    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.notifications.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, salt: u8) -> Arc<CanonicalBlock> {
        let header =
            alloy_consensus::Header { number, extra_data: vec![salt].into(), ..Default::default() };
        let hash = header.hash_slow();
        Arc::new(CanonicalBlock { header, hash, tx_hashes: vec![], receipts: vec![] })
    }

    fn tips(rx: &mut broadcast::Receiver<CanonicalNotification>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            out.push(n.tip().map(|t| t.header.number).unwrap_or_default());
        }
        out
    }

    #[test]
    fn gossip_moves_the_tip_forward_only_and_the_el_wins_disagreements() {
        let (tx, mut rx) = broadcast::channel(16);
        let m = Merge { tx, forwarded: Default::default() };
        let g = |b: &Arc<CanonicalBlock>| m.on_gossip(&b.header, b.hash, &b.tx_hashes);
        // Nothing before the baseline.
        g(&block(5, 0));
        assert!(tips(&mut rx).is_empty());
        m.on_inner(CanonicalNotification::Committed { new: vec![block(4, 0)] });
        assert_eq!(tips(&mut rx), vec![4]);
        // Gossip announces 5 and 7 (6 skipped); a second block at 7 is left to the EL.
        g(&block(5, 0));
        g(&block(7, 0));
        g(&block(7, 1));
        g(&block(3, 0));
        assert_eq!(tips(&mut rx), vec![5, 7]);
        // The EL's later notifications of 5 and 6 do not move the tip back.
        m.on_inner(CanonicalNotification::Committed { new: vec![block(5, 0), block(6, 0)] });
        assert!(tips(&mut rx).is_empty());
        assert!(m.forwarded.lock().gossip_only.contains(&block(7, 0).hash));
        // The EL agrees on 7: nothing new; then it disagrees at 8 vs gossip's 8.
        m.on_inner(CanonicalNotification::Committed { new: vec![block(7, 0)] });
        assert!(tips(&mut rx).is_empty());
        assert!(!m.forwarded.lock().gossip_only.contains(&block(7, 0).hash));
        g(&block(8, 0));
        m.on_inner(CanonicalNotification::Committed { new: vec![block(8, 9)] });
        assert_eq!(tips(&mut rx), vec![8, 8]);
        assert_eq!(m.forwarded.lock().by_number.get(&8), Some(&block(8, 9).hash));
    }
}
