//! Node discovery over discv5 (UDP), as op-node does it (`op-node/p2p/discovery.go`): the
//! local ENR carries `ip`, `tcp`, `udp`, `secp256k1` (the libp2p node key) and `opstack`, the
//! chain's id and version; bootnodes given as `enr:` records seed the routing table; a loop
//! looks up random and own node ids while the host is below its high-water mark, and every
//! node found whose `opstack` entry names this chain is handed to the swarm to dial over TCP.
//! Nodes of other chains (or without the entry) are counted and never dialled.
//!
//! Same-chain nodes are also written to the p2p store (at most every [`FLUSH_INTERVAL`], and on
//! shutdown from the routing table), and a restart seeds discv5 and the swarm with those seen
//! in the last [`NODE_EXPIRY`]: like op-node's discovery database, a node finds its network
//! again without its bootnodes.

use discv5::{
    enr::{CombinedKey, EnrPublicKey, NodeId},
    Discv5, Event, ListenConfig,
};
use flashnode_tasks::Backoff;
use libp2p::{identity, multiaddr::Protocol, Multiaddr, PeerId};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use discv5::Enr;

use crate::{
    config::DiscoveryConfig,
    gate::now_secs,
    stats::GossipStats,
    store::{Store, StoredNode},
};

/// How discovery and the host talk: whether the host wants more peers, the dial of a
/// discovered node (false: the host's queue was full), and the failed dials it reports back.
pub(crate) struct HostLink<W, D> {
    /// Whether the host is below its high-water mark.
    pub(crate) below_high_water: W,
    /// Hands a node to the host to dial.
    pub(crate) dial: D,
    /// Peers whose dial failed.
    pub(crate) failed: mpsc::Receiver<PeerId>,
}

/// `now + after`, or `now` on the (theoretical) overflow: no unchecked `Instant` arithmetic.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after).unwrap_or(now)
}

/// The ENR key of the OP-stack entry.
pub const OPSTACK_KEY: &str = "opstack";
/// Longest discv5 lookup before it is abandoned.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A discovered node is handed to the swarm at most this often.
const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// After a failed dial, a node may be dialled again this soon, doubling with each failure up
/// to [`REDIAL_AFTER`]: a dial lost to a transient failure (two nodes dialling each other in
/// the same instant) is retried at the next sighting instead of 30 s later.
const FAILED_REDIAL_AFTER: Duration = Duration::from_secs(1);
/// Nodes remembered as recently handed to the swarm (bounded memory).
const RECENT: usize = 1024;
/// Discovered nodes are written to the store at most this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// A stored node not seen for this long is not used at start (geth and op-node drop theirs
/// after a day too).
pub const NODE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Nodes kept in the store, the most recently seen.
const NODES_KEPT: usize = 512;
/// Stored nodes used to seed a restart's routing table.
const NODES_RESTORED: usize = 256;
/// Of those, how many are dialled at once (the host wants no more than its high-water mark).
const RESTORED_DIALS: usize = 32;
/// A stored node seen again is rewritten only when its stored time is older than this.
const SEEN_REFRESH: Duration = Duration::from_secs(3600);

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The node key is not a secp256k1 key.
    #[error("discv5 needs a secp256k1 node key")]
    Key,
    /// The local ENR could not be built or signed.
    #[error("cannot build the local ENR: {0}")]
    Enr(#[from] discv5::enr::Error),
    /// The UDP socket could not be bound or the service not started.
    #[error("cannot start discv5 on {addr}: {source}")]
    Start {
        /// UDP address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: StartError,
    },
}

/// Why the discv5 service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The UDP port could not be borrowed from the OS.
    #[error("cannot bind a UDP port: {0}")]
    Bind(#[from] std::io::Error),
    /// discv5 refused its configuration (its reason; discv5 gives a static text).
    #[error("discv5 refused its settings: {0}")]
    Config(&'static str),
    /// The discv5 service failed to start (discv5's error type is not a `std` error, so it is
    /// carried, not chained; boxed, as it is large).
    #[error("discv5 service: {0}")]
    Service(Box<discv5::Error>),
}

/// Why an `opstack` ENR entry does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpStackEnrError {
    /// The entry is not an RLP byte string.
    #[error("opstack entry is not an RLP byte string: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// A varint ends before its last byte.
    #[error("truncated varint")]
    Truncated,
    /// A varint's value does not fit in 64 bits.
    #[error("varint overflows u64")]
    Overflow,
    /// A varint longer than the 10 bytes a u64 needs.
    #[error("varint longer than 10 bytes")]
    TooLong,
}

/// The `opstack` ENR entry: the chain id and a version (0), each an unsigned LEB128 varint,
/// concatenated and stored as one RLP byte string (op-node `OpStackENRData`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpStackEnr {
    /// L2 chain id.
    pub chain_id: u64,
    /// Entry version; 0 is the only one defined.
    pub version: u64,
}

impl OpStackEnr {
    /// Version 0 for `chain_id`.
    pub fn new(chain_id: u64) -> Self {
        Self { chain_id, version: 0 }
    }

    /// The entry's bytes (before RLP): `uvarint(chain_id) ++ uvarint(version)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20);
        put_uvarint(&mut out, self.chain_id);
        put_uvarint(&mut out, self.version);
        out
    }

    /// Parses the entry's bytes (after RLP); trailing bytes are allowed, as op-node does.
    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self, OpStackEnrError> {
        let chain_id = read_uvarint(&mut bytes)?;
        let version = read_uvarint(&mut bytes)?;
        Ok(Self { chain_id, version })
    }

    /// The entry of `enr`: None without one, an error when it does not parse.
    pub fn of(enr: &Enr) -> Option<Result<Self, OpStackEnrError>> {
        let mut raw = enr.get_raw_rlp(OPSTACK_KEY)?;
        Some(
            alloy_rlp::Header::decode_bytes(&mut raw, false)
                .map_err(OpStackEnrError::from)
                .and_then(Self::from_bytes),
        )
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_uvarint(buf: &mut &[u8]) -> Result<u64, OpStackEnrError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(OpStackEnrError::Truncated)?;
        *buf = rest;
        if i == 9 && b > 1 {
            return Err(OpStackEnrError::Overflow);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(OpStackEnrError::TooLong)
}

/// The discv5 key for a libp2p secp256k1 node key (the same key, so the ENR's `secp256k1`
/// entry names the libp2p peer id).
pub fn enr_key(keypair: &identity::Keypair) -> Result<CombinedKey, DiscoveryError> {
    let pair = keypair.clone().try_into_secp256k1().map_err(|_| DiscoveryError::Key)?;
    let mut secret = pair.secret().to_bytes();
    CombinedKey::secp256k1_from_bytes(&mut secret).map_err(|_| DiscoveryError::Key)
}

/// Builds and signs the local ENR.
pub fn local_enr(
    key: &CombinedKey,
    ip: Option<IpAddr>,
    tcp: u16,
    udp: u16,
    chain_id: u64,
) -> Result<Enr, DiscoveryError> {
    let mut b = Enr::builder();
    match ip {
        Some(IpAddr::V4(v4)) => {
            b.ip4(v4).tcp4(tcp).udp4(udp);
        }
        Some(IpAddr::V6(v6)) => {
            b.ip6(v6).tcp6(tcp).udp6(udp);
        }
        None => {
            b.tcp4(tcp).udp4(udp);
        }
    }
    let opstack = OpStackEnr::new(chain_id).to_bytes();
    b.add_value(OPSTACK_KEY, &opstack.as_slice());
    // Peers keep records across restarts and only take a higher sequence number: start from
    // the clock (as geth does), so a node back on a new address replaces its old record.
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    b.seq(millis.max(1));
    Ok(b.build(key)?)
}

/// The libp2p peer id of a record's secp256k1 key.
pub fn enr_peer_id(enr: &Enr) -> Option<PeerId> {
    let key = identity::secp256k1::PublicKey::try_from_bytes(&enr.public_key().encode()).ok()?;
    Some(PeerId::from_public_key(&identity::PublicKey::from(key)))
}

/// Where to dial a record's node over TCP: `/ip4|ip6/<ip>/tcp/<tcp>/p2p/<peer id>`.
pub fn dial_addr(enr: &Enr) -> Option<Multiaddr> {
    let peer = enr_peer_id(enr)?;
    let base = match (enr.ip4(), enr.tcp4(), enr.ip6(), enr.tcp6()) {
        (Some(ip), Some(tcp), _, _) => {
            Multiaddr::empty().with(Protocol::Ip4(ip)).with(Protocol::Tcp(tcp))
        }
        (_, _, Some(ip), Some(tcp)) => {
            Multiaddr::empty().with(Protocol::Ip6(ip)).with(Protocol::Tcp(tcp))
        }
        _ => return None,
    };
    Some(base.with(Protocol::P2p(peer)))
}

/// Why a discovered node is or is not dialled (the `outcome` label of
/// `flashnode_gossip_discovered_total`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Same chain, dialable.
    Dial(PeerId, Multiaddr),
    /// Another chain's `opstack` entry, or none.
    OtherChain,
    /// No TCP address or no secp256k1 key.
    NotDialable,
}

/// Filters a discovered record on its `opstack` entry (this chain, version 0), like op-node.
pub fn judge(enr: &Enr, chain_id: u64) -> Verdict {
    match OpStackEnr::of(enr) {
        Some(Ok(o)) if o.chain_id == chain_id && o.version == 0 => {}
        _ => return Verdict::OtherChain,
    }
    match (enr_peer_id(enr), dial_addr(enr)) {
        (Some(peer), Some(addr)) => Verdict::Dial(peer, addr),
        _ => Verdict::NotDialable,
    }
}

/// A running discv5 service.
pub(crate) struct Discovery {
    discv5: Discv5,
    /// The signed local record.
    pub enr: Enr,
    /// Where discovered nodes are kept across restarts.
    store: Arc<Store>,
    /// Same-chain nodes restored from the store (most recently seen first), handed to the swarm
    /// when `run` starts.
    restored: Vec<(PeerId, Multiaddr)>,
}

/// Which discovered nodes still have to be written to the store (bounded).
#[derive(Default)]
struct NodeBook {
    /// Node id → the `seen` time last written.
    written: HashMap<NodeId, u64>,
    /// Waiting for the next flush.
    dirty: HashMap<NodeId, StoredNode>,
}

impl NodeBook {
    /// Records a node we have talked to (a discv5 session, or connected in the routing table).
    fn seen(&mut self, enr: &Enr, now: u64) {
        let id = enr.node_id();
        if self.written.get(&id).is_some_and(|t| now.saturating_sub(*t) < SEEN_REFRESH.as_secs()) {
            return;
        }
        if self.dirty.len() >= NODES_KEPT {
            return;
        }
        self.dirty.insert(id, StoredNode { id: id.raw(), enr: enr.to_base64(), seen: now });
    }

    /// The batch to write now.
    fn take(&mut self) -> Vec<StoredNode> {
        self.dirty.drain().map(|(_, n)| n).collect()
    }

    /// The batch is on disk: skip these nodes until [`SEEN_REFRESH`] has passed.
    fn written(&mut self, batch: &[StoredNode]) {
        if self.written.len() + batch.len() > 4 * NODES_KEPT {
            self.written.clear();
        }
        for n in batch {
            self.written.insert(NodeId::new(&n.id), n.seen);
        }
    }

    /// The write failed: try the batch again at the next flush (nodes met since come first).
    fn retry(&mut self, batch: Vec<StoredNode>) {
        for n in batch {
            if self.dirty.len() >= NODES_KEPT {
                break;
            }
            self.dirty.entry(NodeId::new(&n.id)).or_insert(n);
        }
    }
}

/// Writes the book's pending nodes off the async runtime; failures are counted and logged by
/// the store, and the nodes are retried at the next flush.
async fn flush_book(store: &Arc<Store>, book: &mut NodeBook) {
    let batch = book.take();
    if batch.is_empty() {
        return;
    }
    let (store, span) = (store.clone(), tracing::Span::current());
    let write = tokio::task::spawn_blocking(move || {
        let result = span.in_scope(|| store.put_nodes(&batch, NODES_KEPT));
        (batch, result)
    });
    match write.await {
        Ok((batch, Ok(()))) => {
            metrics::counter!("flashnode_gossip_discovery_nodes_stored_total")
                .increment(batch.len() as u64);
            book.written(&batch);
        }
        Ok((batch, Err(_))) => book.retry(batch),
        Err(e) => warn!(%e, "writing discovered nodes failed"),
    }
}

/// Binds UDP and starts discv5 with the local record; seeds the bootnodes.
pub(crate) async fn start(
    config: &DiscoveryConfig,
    key: CombinedKey,
    tcp_port: u16,
    chain_id: u64,
    store: Arc<Store>,
) -> Result<Discovery, DiscoveryError> {
    let err = |source: StartError| DiscoveryError::Start { addr: config.listen, source };
    let mut listen = config.listen;
    if listen.port() == 0 {
        // The ENR must carry the real port before discv5 binds: borrow one from the OS.
        let probe = std::net::UdpSocket::bind(listen).map_err(|e| err(e.into()))?;
        listen = probe.local_addr().map_err(|e| err(e.into()))?;
    }
    let ip = config.advertise_ip.or(Some(listen.ip()).filter(|ip| !ip.is_unspecified()));
    let enr = local_enr(&key, ip, tcp_port, listen.port(), chain_id)?;
    let discv5_config =
        discv5::ConfigBuilder::new(ListenConfig::from_ip(listen.ip(), listen.port())).build();
    let mut discv5 =
        Discv5::new(enr.clone(), key, discv5_config).map_err(|e| err(StartError::Config(e)))?;
    discv5.start().await.map_err(|e| err(StartError::Service(Box::new(e))))?;
    for boot in &config.bootnodes {
        if let Err(e) = discv5.add_enr(boot.clone()) {
            warn!(enr = %boot.to_base64(), e, "bootnode not added to the discovery table");
        }
    }
    // Nodes seen before the restart. A record of another chain (the data dir was reused for
    // another network) or one discv5 refuses is skipped.
    let since = now_secs().saturating_sub(NODE_EXPIRY.as_secs());
    let stored = {
        let (store, span) = (store.clone(), tracing::Span::current());
        match tokio::task::spawn_blocking(move || span.in_scope(|| store.nodes(since))).await {
            Ok(Ok(nodes)) => nodes,
            // Counted and logged by the store.
            Ok(Err(_)) => Vec::new(),
            Err(e) => {
                warn!(%e, "reading the stored discovery nodes failed");
                Vec::new()
            }
        }
    };
    let mut restored = Vec::new();
    for node in stored.into_iter().take(NODES_RESTORED) {
        let Ok(record) = node.enr.parse::<Enr>() else { continue };
        if record.node_id() == enr.node_id() {
            continue;
        }
        let Verdict::Dial(peer, addr) = judge(&record, chain_id) else { continue };
        if discv5.add_enr(record).is_ok() {
            restored.push((peer, addr));
        }
    }
    metrics::gauge!("flashnode_gossip_discovery_nodes_restored").set(restored.len() as f64);
    info!(
        enr = %enr.to_base64(),
        udp = %listen,
        bootnodes = config.bootnodes.len(),
        restored = restored.len(),
        "discv5 started"
    );
    Ok(Discovery { discv5, enr, store, restored })
}

impl Discovery {
    /// Runs lookups and hands same-chain nodes to `dial` until `cancel`. `below_high_water`
    /// says whether the host wants more peers.
    pub(crate) async fn run(
        mut self,
        interval: Duration,
        chain_id: u64,
        stats: Arc<GossipStats>,
        host: HostLink<impl Fn() -> bool, impl Fn(PeerId, Multiaddr) -> bool>,
        cancel: CancellationToken,
    ) {
        let HostLink { below_high_water, dial, failed: mut dial_failed } = host;
        let mut events = match self.discv5.event_stream().await {
            Ok(e) => e,
            Err(e) => {
                warn!(%e, "no discv5 event stream: discovery stops");
                return;
            }
        };
        let local = self.enr.node_id();
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When each node handed to the swarm may be handed again, and the backoff of its
        // failed dials.
        let mut recent: HashMap<PeerId, Instant> = HashMap::new();
        let mut failures: HashMap<PeerId, Backoff> = HashMap::new();
        let mut query: Option<futures::future::BoxFuture<'static, Vec<Enr>>> = None;
        let mut lookups = 0u64;
        let mut book = NodeBook::default();
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // `book`: the node answered a handshake, so its record is kept for the next start.
        let consider =
            |enr: Enr, recent: &mut HashMap<PeerId, Instant>, book: Option<&mut NodeBook>| {
                stats.discovered.fetch_add(1, Ordering::Relaxed);
                let outcome = match judge(&enr, chain_id) {
                    Verdict::OtherChain => {
                        stats.discovered_other_chain.fetch_add(1, Ordering::Relaxed);
                        debug!(enr = %enr.to_base64(), "discovered a node of another chain");
                        "other_chain"
                    }
                    Verdict::NotDialable => "not_dialable",
                    Verdict::Dial(peer, addr) => {
                        if let Some(book) = book {
                            book.seen(&enr, now_secs());
                        }
                        let now = Instant::now();
                        if recent.get(&peer).is_some_and(|next| now < *next) {
                            "recent"
                        } else {
                            if recent.len() >= RECENT {
                                recent.retain(|_, next| now < *next);
                                if recent.len() >= RECENT {
                                    recent.clear();
                                }
                            }
                            recent.insert(peer, later(now, REDIAL_AFTER));
                            if dial(peer, addr) {
                                "dial"
                            } else {
                                "queue_full"
                            }
                        }
                    }
                };
                metrics::counter!("flashnode_gossip_discovered_total", "outcome" => outcome)
                    .increment(1);
            };
        // The last network first: dial the most recently seen of the nodes known before the
        // restart (the rest are in the routing table for lookups). They are stored again only
        // once a session with them is established.
        for (peer, addr) in std::mem::take(&mut self.restored).into_iter().take(RESTORED_DIALS) {
            recent.insert(peer, later(Instant::now(), REDIAL_AFTER));
            let outcome = if dial(peer, addr) { "dial" } else { "queue_full" };
            metrics::counter!("flashnode_gossip_restored_dials_total", "outcome" => outcome)
                .increment(1);
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = flush.tick() => flush_book(&self.store, &mut book).await,
                _ = tick.tick(), if query.is_none() => {
                    if below_high_water() {
                        // Alternate our own id (fills the buckets near us) and random ids.
                        lookups += 1;
                        let target = if lookups % 2 == 1 { local } else { NodeId::random() };
                        let q = self.discv5.find_node(target);
                        query = Some(Box::pin(async move {
                            match tokio::time::timeout(QUERY_TIMEOUT, q).await {
                                Ok(Ok(found)) => found,
                                Ok(Err(e)) => { debug!(%e, "discv5 lookup failed"); Vec::new() }
                                Err(_) => { debug!("discv5 lookup timed out"); Vec::new() }
                            }
                        }));
                    }
                }
                found = async { match query.as_mut() { Some(q) => q.await, None => std::future::pending().await } } => {
                    query = None;
                    for enr in found {
                        consider(enr, &mut recent, None);
                    }
                }
                Some(peer) = dial_failed.recv() => {
                    // Only a node this loop handed over is retried sooner; its next sighting
                    // dials it again once the backoff passed.
                    if let Some(next) = recent.get_mut(&peer) {
                        if failures.len() >= RECENT {
                            failures.clear();
                        }
                        let backoff = failures
                            .entry(peer)
                            .or_insert_with(|| Backoff::new(FAILED_REDIAL_AFTER, REDIAL_AFTER));
                        let delay = backoff.next_delay();
                        *next = later(Instant::now(), delay);
                        debug!(%peer, failures = backoff.attempt(), ?delay, "discovered node's dial failed: retried sooner");
                    }
                }
                ev = events.recv() => match ev {
                    Some(Event::Discovered(enr)) => consider(enr, &mut recent, None),
                    // A session is a handshake with the node itself: the record is live, unlike
                    // the ones other nodes pass on in lookups, so only these are stored.
                    Some(Event::SessionEstablished(enr, _)) => consider(enr, &mut recent, Some(&mut book)),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        // On a clean stop (best effort: the process may exit first), the routing table's
        // connected same-chain nodes are the freshest view.
        let now = now_secs();
        for (_, enr, status) in self.discv5.table_entries() {
            if status.is_connected() && matches!(judge(&enr, chain_id), Verdict::Dial(..)) {
                book.seen(&enr, now);
            }
        }
        flush_book(&self.store, &mut book).await;
        self.discv5.shutdown();
        info!("discv5 stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of op-node's default Superchain bootnodes.
    const BOOTNODE: &str = "enr:-J64QFlJkZT1p0ni81MkprI1d3Tk4XZjurmq6gkPf-YeCoUWYCAdGv9K8Xe8m0u5EKyuHrLVxSOoHti_b1h3-knZA-aGAYo5_RtjgmlkgnY0gmlwhCvPTWyHb3BzdGFja4SWsHsAiXNlY3AyNTZrMaEC6BVMrYa2bDscubLIdcJj8M3_j5jdv-ifyVFoVdFB6VWDdGNwgiQGg3VkcIIkBg";

    #[test]
    fn opstack_entry_encodes_as_op_node_does() {
        // chain 10, version 0: two one-byte varints.
        assert_eq!(OpStackEnr::new(10).to_bytes(), vec![0x0a, 0x00]);
        // 901 = 0x385: 0x85 0x07.
        assert_eq!(OpStackEnr::new(901).to_bytes(), vec![0x85, 0x07, 0x00]);
        let big = OpStackEnr { chain_id: u64::MAX, version: 3 };
        assert_eq!(OpStackEnr::from_bytes(&big.to_bytes()), Ok(big));
        assert_eq!(OpStackEnr::from_bytes(&[0x80]), Err(OpStackEnrError::Truncated));
        // The tenth byte may carry one bit only.
        assert_eq!(OpStackEnr::from_bytes(&[0xff; 11]), Err(OpStackEnrError::Overflow));
        assert_eq!(
            OpStackEnr::from_bytes(&[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00
            ]),
            Err(OpStackEnrError::Overflow)
        );
    }

    #[test]
    fn op_node_bootnode_record_parses_with_its_opstack_entry() {
        let enr: Enr = BOOTNODE.parse().unwrap();
        let entry = OpStackEnr::of(&enr).unwrap().unwrap();
        assert_eq!(entry.version, 0);
        // Its bytes are 96 b0 7b 00: uvarint 0x96 0xb0 0x7b.
        assert_eq!(entry.chain_id, 0x16 | (0x30 << 7) | (0x7b << 14));
        let addr = dial_addr(&enr).unwrap().to_string();
        assert!(addr.starts_with("/ip4/43.207.77.108/tcp/9222/p2p/16Uiu2"), "{addr}");
        assert_eq!(
            judge(&enr, entry.chain_id),
            Verdict::Dial(enr_peer_id(&enr).unwrap(), dial_addr(&enr).unwrap())
        );
        assert_eq!(judge(&enr, 10), Verdict::OtherChain);
    }

    #[test]
    fn local_record_names_the_libp2p_peer_and_the_chain() {
        let keypair = identity::Keypair::generate_secp256k1();
        let key = enr_key(&keypair).unwrap();
        let enr = local_enr(&key, Some("127.0.0.1".parse().unwrap()), 9222, 9223, 901).unwrap();
        assert_eq!(enr_peer_id(&enr), Some(keypair.public().to_peer_id()));
        assert_eq!(enr.udp4(), Some(9223));
        assert_eq!(OpStackEnr::of(&enr), Some(Ok(OpStackEnr::new(901))));
        let reparsed: Enr =
            format!("enr:{}", enr.to_base64().trim_start_matches("enr:")).parse().unwrap();
        assert_eq!(
            dial_addr(&reparsed).unwrap().to_string(),
            format!("/ip4/127.0.0.1/tcp/9222/p2p/{}", keypair.public().to_peer_id())
        );
        assert!(enr_key(&identity::Keypair::generate_ed25519()).is_err());
        // A record without the entry is another chain's.
        let mut b = Enr::builder();
        b.ip4("127.0.0.1".parse().unwrap()).tcp4(1);
        assert_eq!(judge(&b.build(&key).unwrap(), 901), Verdict::OtherChain);
        // Sequence numbers start from the clock, so a restarted node's record replaces its old one.
        assert!(enr.seq() > 1_700_000_000_000, "seq {}", enr.seq());
        std::thread::sleep(Duration::from_millis(2));
        assert!(local_enr(&key, None, 1, 2, 901).unwrap().seq() > enr.seq());
    }

    fn stored(enr: &Enr, seen: u64) -> StoredNode {
        StoredNode { id: enr.node_id().raw(), enr: enr.to_base64(), seen }
    }

    #[test]
    fn node_book_skips_fresh_nodes_caps_its_batch_and_retries_failed_writes() {
        let key = CombinedKey::generate_secp256k1();
        let enr = local_enr(&key, Some("127.0.0.1".parse().unwrap()), 1, 2, 901).unwrap();
        let mut book = NodeBook::default();
        book.seen(&enr, 1_000);
        let batch = book.take();
        assert_eq!(batch, vec![stored(&enr, 1_000)]);
        // A failed write comes back at the next flush.
        book.retry(batch);
        let batch = book.take();
        assert_eq!(batch.len(), 1);
        book.written(&batch);
        // Seen again within the refresh window: nothing to write; after it: written again.
        book.seen(&enr, 1_000 + SEEN_REFRESH.as_secs() - 1);
        assert!(book.take().is_empty());
        book.seen(&enr, 1_000 + SEEN_REFRESH.as_secs());
        assert_eq!(book.take(), vec![stored(&enr, 1_000 + SEEN_REFRESH.as_secs())]);
        // The pending batch is bounded.
        for _ in 0..NODES_KEPT + 10 {
            let other = local_enr(&CombinedKey::generate_secp256k1(), None, 1, 2, 901).unwrap();
            book.seen(&other, 5_000);
        }
        assert_eq!(book.take().len(), NODES_KEPT);
    }

    #[tokio::test]
    async fn start_restores_recent_same_chain_records_only() {
        let store = Arc::new(Store::in_memory(10).unwrap());
        let key = CombinedKey::generate_secp256k1();
        let own_key = key.encode();
        let same = local_enr(
            &CombinedKey::generate_secp256k1(),
            Some("127.0.0.1".parse().unwrap()),
            30_001,
            30_002,
            901,
        )
        .unwrap();
        let other_chain = local_enr(
            &CombinedKey::generate_secp256k1(),
            Some("127.0.0.1".parse().unwrap()),
            30_003,
            30_004,
            10,
        )
        .unwrap();
        let stale = local_enr(
            &CombinedKey::generate_secp256k1(),
            Some("127.0.0.1".parse().unwrap()),
            30_005,
            30_006,
            901,
        )
        .unwrap();
        let now = now_secs();
        let mut corrupt = stored(&same, now);
        corrupt.id = [7; 32];
        corrupt.enr = "enr:not-a-record".into();
        // An older record of this node itself (same key).
        let own = local_enr(
            &CombinedKey::secp256k1_from_bytes(&mut own_key.clone()).unwrap(),
            None,
            1,
            2,
            901,
        )
        .unwrap();
        store
            .put_nodes(
                &[
                    stored(&same, now),
                    stored(&other_chain, now),
                    stored(&stale, now - NODE_EXPIRY.as_secs() - 1),
                    corrupt,
                    stored(&own, now),
                ],
                64,
            )
            .unwrap();
        let config = DiscoveryConfig::new("127.0.0.1:0".parse().unwrap());
        let mut discovery = start(&config, key, 9222, 901, store).await.unwrap();
        assert_eq!(discovery.enr.node_id(), own.node_id());
        let restored: Vec<PeerId> = discovery.restored.iter().map(|(peer, _)| *peer).collect();
        assert_eq!(
            restored,
            enr_peer_id(&same).into_iter().collect::<Vec<_>>(),
            "only the recent same-chain record of another node"
        );
        assert!(
            discovery.discv5.table_entries_id().contains(&same.node_id()),
            "it seeds the routing table"
        );
        discovery.discv5.shutdown();
    }
}
