//! The p2p service: one task owns the libp2p swarm (TCP + noise + yamux, identify, ping,
//! connection limits, peer blocking, gossipsub) and talks to the rest of the node through a
//! bounded command channel, a broadcast of verified blocks and shared counters.

pub use crate::gate::Subnet;
use crate::{
    altsync::{self, AnswerError, PayloadByNumberCodec, PayloadResponse, RateLimits},
    codec::{self, BlockVersion, SignedBlock},
    config::{params, GossipConfig},
    gate::{ip_of, now_secs, Gate, GateBehaviour, NEVER},
    key,
    scoring::{self, AppEvent, AppScores},
    stats::GossipStats,
    store::{Store, StoreError, StoredBlock},
    validate::{self, Outcome, Validator, VerifiedBlock},
};
use alloy_primitives::B256;
use futures::StreamExt;
use libp2p::{
    connection_limits, gossipsub, identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use parking_lot::RwLock;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// How many messages may be in validation at once (op-node: concurrency 4).
const VALIDATION_CONCURRENCY: usize = 4;
/// Longest validation of one message (op-node: 3 s) before it is ignored.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages waiting for a validation slot before new ones are ignored (bounded memory).
const VALIDATION_BACKLOG: usize = 256;
/// Commands queued to the swarm task.
const COMMAND_BUFFER: usize = 256;

/// Why the p2p service could not start or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The node key could not be loaded.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// The transport or a behaviour could not be built.
    #[error("cannot build the libp2p host: {0}")]
    Build(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A static peer address lacks its `/p2p/<peer id>` suffix.
    #[error("static peer {0} must end in /p2p/<peer id>")]
    StaticPeerWithoutId(Multiaddr),
    /// The service stopped.
    #[error("the p2p service is not running")]
    Stopped,
    /// discv5 could not start.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// The durable store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// `connected` or `notConnected`.
    pub connectedness: String,
    /// `inbound` / `outbound` / `unknown`.
    pub direction: String,
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

/// Admin requests (the `opp2p_` namespace).
enum Admin {
    Peers(bool, oneshot::Sender<Vec<PeerInfo>>),
    PeerStats(oneshot::Sender<PeerStats>),
    Block(PeerId, Option<Duration>, oneshot::Sender<()>),
    Unblock(PeerId, oneshot::Sender<()>),
    ListBlocked(oneshot::Sender<Vec<PeerId>>),
    BlockAddr(std::net::IpAddr, Option<Duration>, oneshot::Sender<()>),
    ListBlockedAddrs(oneshot::Sender<Vec<std::net::IpAddr>>),
    UnblockAddr(std::net::IpAddr, oneshot::Sender<()>),
    BlockSubnet(Subnet, Option<Duration>, oneshot::Sender<()>),
    UnblockSubnet(Subnet, oneshot::Sender<()>),
    ListBlockedSubnets(oneshot::Sender<Vec<Subnet>>),
    Protect(PeerId, oneshot::Sender<()>),
    Request(PeerId, u64, oneshot::Sender<Result<PayloadResponse, String>>),
}

enum Command {
    Publish(Box<SignedBlock>, oneshot::Sender<Result<(), String>>),
    Dial(Multiaddr),
    /// A node discovery found on this chain.
    Discovered(PeerId, Multiaddr),
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
    commands: mpsc::Sender<Command>,
    blocks: broadcast::Sender<Arc<VerifiedBlock>>,
}

impl GossipHandle {
    /// Publishes a signed block on its version's topic.
    pub async fn publish(&self, block: SignedBlock) -> Result<(), GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(Box::new(block), tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?.map_err(GossipError::Build)
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
        ip: std::net::IpAddr,
        duration: Option<Duration>,
    ) -> Result<(), GossipError> {
        self.admin(|tx| Admin::BlockAddr(ip, duration, tx)).await
    }

    /// Lifts an IP block.
    pub async fn unblock_addr(&self, ip: std::net::IpAddr) -> Result<(), GossipError> {
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
    pub async fn blocked_addrs(&self) -> Result<Vec<std::net::IpAddr>, GossipError> {
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
    ) -> Result<Result<PayloadResponse, String>, GossipError> {
        self.admin(|tx| Admin::Request(peer, number, tx)).await
    }

    /// Dials an address once.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), GossipError> {
        self.commands.send(Command::Dial(addr)).await.map_err(|_| GossipError::Stopped)
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First: a gated connection is refused before any other behaviour sees it.
    gate: GateBehaviour,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    reqresp: request_response::Behaviour<PayloadByNumberCodec>,
}

/// The gossipsub configuration of op-node (see [`params`]), anonymous messages, no PX.
fn gossipsub_config(config: &GossipConfig) -> Result<gossipsub::Config, GossipError> {
    let mode = config.message_id;
    gossipsub::ConfigBuilder::default()
        .mesh_n(params::MESH_D)
        .mesh_n_low(params::MESH_D_LO)
        .mesh_n_high(params::MESH_D_HI)
        .gossip_lazy(params::MESH_D_LAZY)
        .heartbeat_interval(params::HEARTBEAT)
        .fanout_ttl(params::FANOUT_TTL)
        .history_length(params::HISTORY_LENGTH)
        .history_gossip(params::HISTORY_GOSSIP)
        .duplicate_cache_time(params::SEEN_TTL)
        .max_transmit_size(params::MAX_GOSSIP_SIZE)
        // Messages carry no author, seqno or libp2p signature (op-node: StrictNoSign).
        .validation_mode(gossipsub::ValidationMode::None)
        // Forward only what the application accepted.
        .validate_messages()
        .message_id_fn(move |m: &gossipsub::Message| {
            gossipsub::MessageId::new(&codec::message_id(mode, m.topic.as_str(), &m.data))
        })
        .build()
        .map_err(|e| GossipError::Build(e.to_string()))
}

fn build_swarm(
    config: &GossipConfig,
    keypair: Keypair,
    gate: Arc<RwLock<Gate>>,
) -> Result<Swarm<Behaviour>, GossipError> {
    let gs_config = gossipsub_config(config)?;
    let chain_id = config.chain_id;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(config.max_inbound))
        .with_max_established_outgoing(Some(config.max_outbound))
        .with_max_established_per_peer(Some(2));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| GossipError::Build(e.to_string()))?
        .with_behaviour(|key| {
            let mut gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gs_config)?;
            let topics =
                BlockVersion::ALL.map(|v| gossipsub::IdentTopic::new(v.topic(chain_id)).hash());
            gossipsub.with_peer_score(scoring::peer_score_params(topics), scoring::thresholds())?;
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                gate: GateBehaviour::new(gate),
                identify: identify::Behaviour::new(
                    identify::Config::new("optimism".into(), key.public())
                        .with_agent_version(format!("flashnode/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                gossipsub,
                reqresp: request_response::Behaviour::new(
                    altsync::protocols(chain_id).into_iter().map(|p| (p, ProtocolSupport::Full)),
                    request_response::Config::default()
                        .with_request_timeout(altsync::REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(64),
                ),
            })
        })
        .map_err(|e| GossipError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// Starts the p2p host: loads or creates the node key, binds, subscribes to the four block
/// topics, dials static peers and bootnodes, and runs until `cancel`.
pub async fn spawn(
    config: GossipConfig,
    cancel: CancellationToken,
) -> Result<GossipHandle, GossipError> {
    let keypair = match &config.key_path {
        Some(path) => key::load_or_create(path)?,
        None => Keypair::generate_secp256k1(),
    };
    let peer_id = keypair.public().to_peer_id();
    let discovery_key = match &config.discovery {
        Some(_) => Some(crate::discovery::enr_key(&keypair)?),
        None => None,
    };
    let mut statics = HashMap::new();
    let protected: HashSet<PeerId> = config.static_peers.iter().filter_map(peer_id_of).collect();
    for addr in &config.static_peers {
        let id = peer_id_of(addr).ok_or_else(|| GossipError::StaticPeerWithoutId(addr.clone()))?;
        statics.insert(
            id,
            StaticPeer {
                addr: addr.clone(),
                connected: false,
                next_dial: Instant::now(),
                backoff: config.redial_min,
            },
        );
    }
    let store = Arc::new(match &config.store_path {
        Some(path) => Store::open(path, config.store_retain)?,
        None => Store::in_memory(config.store_retain)?,
    });
    let gate = Arc::new(RwLock::new(Gate::default()));
    let mut swarm = build_swarm(&config, keypair, gate.clone())?;
    for v in BlockVersion::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(v.topic(config.chain_id)))
            .map_err(|e| GossipError::Build(e.to_string()))?;
    }
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| GossipError::Listen { addr: config.listen.clone(), reason: e.to_string() })?;
    // Wait for the bound address (port 0 resolves here).
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    while listen_addrs.is_empty() {
        tokio::select! {
            _ = &mut deadline => return Err(GossipError::Listen { addr: config.listen.clone(), reason: "no listen address within 5 s".into() }),
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address.with(Protocol::P2p(peer_id))),
                SwarmEvent::ListenerError { error, .. } | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(GossipError::Listen { addr: config.listen.clone(), reason: error.to_string() });
                }
                _ => {}
            }
        }
    }
    for addr in &config.bootnodes {
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, %e, "cannot dial bootnode");
        }
    }
    let (commands, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let stats = Arc::new(GossipStats::default());
    let (mut enr, mut node_id) = (None, None);
    if let (Some(dc), Some(key)) = (&config.discovery, discovery_key) {
        let tcp_port = listen_addrs
            .iter()
            .find_map(|a| {
                a.iter().find_map(|p| if let Protocol::Tcp(port) = p { Some(port) } else { None })
            })
            .unwrap_or_default();
        let discovery =
            crate::discovery::start(dc, key, tcp_port, config.chain_id, store.clone()).await?;
        enr = Some(discovery.enr.to_base64());
        node_id = Some(hex::encode(discovery.enr.node_id().raw()));
        let (tx, peers, hi) =
            (commands.clone(), stats.clone(), config.peers_hi.max(config.peers_lo) as u64);
        tokio::spawn(
            discovery
                .run(
                    dc.interval,
                    config.chain_id,
                    stats.clone(),
                    move || peers.peers.load(Ordering::Relaxed) < hi,
                    // Bounded: a full command queue drops the node (found again later).
                    move |peer, addr| tx.try_send(Command::Discovered(peer, addr)).is_ok(),
                    cancel.clone(),
                )
                .instrument(info_span!("discv5", %peer_id)),
        );
    }
    let (blocks, _) = broadcast::channel(config.block_buffer.max(1));
    let (verdict_tx, verdict_rx) = mpsc::channel(VALIDATION_BACKLOG);
    let mut task = Task {
        chain_id: config.chain_id,
        signer: config.unsafe_block_signer,
        redial_max: config.redial_max,
        redial_min: config.redial_min,
        swarm,
        statics,
        validator: Validator::default(),
        stats: stats.clone(),
        blocks: blocks.clone(),
        validation_slots: Arc::new(Semaphore::new(VALIDATION_CONCURRENCY)),
        in_validation: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        verdict_tx,
        store,
        limits: RateLimits::default(),
        sync: SyncState::default(),
        max_gap: config.max_gap,
        holes_checked: None,
        per_peer: config.altsync_per_peer.max(1),
        client_buckets: HashMap::new(),
        app_scores: AppScores::default(),
        gate,
        protected,
        ban_duration: config.ban_duration,
        addrs: HashMap::new(),
        peers_lo: config.peers_lo,
        peers_hi: config.peers_hi.max(config.peers_lo),
        peers_grace: config.peers_grace,
        identified: HashMap::new(),
        latency: HashMap::new(),
        admin_requests: HashMap::new(),
    };
    task.load_blocks();
    task.refresh_store_stats();
    info!(%peer_id, addrs = ?listen_addrs, chain_id = config.chain_id, signer = %config.unsafe_block_signer, "p2p host listening");
    tokio::spawn(task.run(command_rx, verdict_rx, cancel).instrument(info_span!("p2p", %peer_id)));
    Ok(GossipHandle {
        peer_id,
        listen_addrs,
        stats,
        chain_id: config.chain_id,
        enr,
        node_id,
        commands,
        blocks,
    })
}

struct StaticPeer {
    addr: Multiaddr,
    connected: bool,
    next_dial: Instant,
    backoff: Duration,
}

struct Verdict {
    id: gossipsub::MessageId,
    source: PeerId,
    result: Result<validate::Checked, &'static str>,
}

struct Task {
    chain_id: u64,
    signer: alloy_primitives::Address,
    redial_min: Duration,
    redial_max: Duration,
    swarm: Swarm<Behaviour>,
    statics: HashMap<PeerId, StaticPeer>,
    validator: Validator,
    stats: Arc<GossipStats>,
    blocks: broadcast::Sender<Arc<VerifiedBlock>>,
    validation_slots: Arc<Semaphore>,
    in_validation: Arc<std::sync::atomic::AtomicUsize>,
    verdict_tx: mpsc::Sender<Verdict>,
    store: Arc<Store>,
    limits: RateLimits,
    sync: SyncState,
    max_gap: u64,
    /// When the store was last scanned for holes (at most every [`HOLE_SCAN_INTERVAL`], so a
    /// block no peer has is not asked for on every gossiped block).
    holes_checked: Option<Instant>,
    per_peer: usize,
    /// Client-side pacing per peer, mirroring the servers' per-peer limit so an honest client
    /// is never rate-limited.
    client_buckets: HashMap<PeerId, altsync::Bucket>,
    app_scores: AppScores,
    /// Blocked peers, IPs and subnets with their expiry, shared with [`GateBehaviour`].
    gate: Arc<RwLock<Gate>>,
    protected: HashSet<PeerId>,
    ban_duration: Duration,
    /// Remote addresses of connected peers.
    addrs: HashMap<PeerId, (Multiaddr, &'static str, Instant)>,
    peers_lo: usize,
    peers_hi: usize,
    peers_grace: Duration,
    identified: HashMap<PeerId, identify::Info>,
    latency: HashMap<PeerId, Duration>,
    admin_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<PayloadResponse, String>>>,
}

/// Most quarantined alt-sync answers (op-node: an LRU of 100).
const QUARANTINE: usize = 100;
/// Attempts per missing block before it is given up.
const MAX_ATTEMPTS: u32 = 8;
/// Delay before the first retry of a missing block; it doubles per attempt up to
/// [`RETRY_MAX`]. Peers that came back with the same gap answer "not found" until they have
/// filled it themselves: immediate retries burned every attempt within a second.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest delay between two attempts (all 8 span about 15 s).
const RETRY_MAX: Duration = Duration::from_secs(4);
/// Shortest time between two scans of the store for holes.
const HOLE_SCAN_INTERVAL: Duration = Duration::from_secs(10);
/// Trusted hashes remembered.
const TRUSTED: usize = 10_000;

/// The alt-sync client: what is missing, in flight, quarantined, and which hashes are trusted
/// (op-node `sync.go`: the range end's parent is trusted, promoting a block trusts its parent).
#[derive(Default)]
struct SyncState {
    wanted: BTreeSet<u64>,
    in_flight: HashMap<OutboundRequestId, (u64, PeerId)>,
    numbers_in_flight: HashSet<u64>,
    attempts: HashMap<u64, u32>,
    /// Wanted numbers that wait for their retry backoff, and the peer that last failed them
    /// (asked last when others are free; bounded like `wanted`).
    retry_at: HashMap<u64, (Instant, PeerId)>,
    trusted: HashSet<B256>,
    quarantine: BTreeMap<u64, (Arc<VerifiedBlock>, PeerId)>,
    /// Numbers no peer could serve in [`MAX_ATTEMPTS`]; not asked for again by the hole scan
    /// (cleared when it grows past [`TRUSTED`] entries).
    given_up: HashSet<u64>,
}

impl SyncState {
    fn missing(&self) -> u64 {
        (self.wanted.len() + self.numbers_in_flight.len() + self.quarantine.len()) as u64
    }
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut verdicts: mpsc::Receiver<Verdict>,
        cancel: CancellationToken,
    ) {
        let mut redial = tokio::time::interval(Duration::from_millis(250));
        let mut decay = tokio::time::interval(scoring::DECAY_INTERVAL);
        decay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(v) = verdicts.recv() => self.on_verdict(v),
                _ = redial.tick() => {
                    self.redial();
                    self.schedule();
                    self.enforce_bans();
                    self.trim_peers();
                }
                _ = decay.tick() => {
                    for (peer, score) in self.app_scores.decay() {
                        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
                    }
                }
            }
        }
        info!("p2p host stopped");
    }

    fn update_peers(&self) {
        let n = self.swarm.connected_peers().count() as u64;
        self.stats.peers.store(n, Ordering::Relaxed);
        metrics::gauge!("flashnode_gossip_peers").set(n as f64);
    }

    fn redial(&mut self) {
        let now = Instant::now();
        // Blocked static peers are dialled too: the gate refuses them before any socket is
        // opened and counts it, and an unblock resets their backoff.
        let due: Vec<Multiaddr> = self
            .statics
            .values_mut()
            .filter(|p| !p.connected && p.next_dial <= now)
            .map(|p| {
                p.next_dial = now + p.backoff;
                p.backoff = (p.backoff * 2).min(self.redial_max);
                p.addr.clone()
            })
            .collect();
        for addr in due {
            debug!(%addr, "dialling static peer");
            if let Err(e) = self.swarm.dial(addr.clone()) {
                debug!(%addr, %e, "static peer dial failed");
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(block, reply) => {
                let block = *block;
                let topic = gossipsub::IdentTopic::new(block.version.topic(self.chain_id));
                let number = block.envelope.payload.block_number();
                let hash = block.envelope.payload.block_hash();
                // Our own block must not come back as new from a peer; store it to serve it.
                self.validator.mark_seen(number, hash);
                self.store_block(number, block.version, hash, &block.wire);
                let res = match self.swarm.behaviour_mut().gossipsub.publish(topic, block.wire) {
                    Ok(_) => {
                        self.stats.published.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("flashnode_gossip_published_total").increment(1);
                        debug!(number, %hash, version = block.version.as_str(), "published block");
                        Ok(())
                    }
                    Err(e) => {
                        self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("flashnode_gossip_publish_failures_total").increment(1);
                        debug!(number, %e, "publish failed");
                        Err(e.to_string())
                    }
                };
                let _ = reply.send(res);
            }
            Command::Admin(a) => self.on_admin(a),
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, %e, "dial failed");
                }
            }
            Command::Discovered(peer, addr) => {
                // The connection manager's high-water mark bounds what discovery adds; the
                // gate refuses blocked peers and addresses at dial time.
                // Dials in flight count: several nodes found at once must not overshoot.
                let busy = self.swarm.connected_peers().count()
                    + self.swarm.network_info().connection_counters().num_pending_outgoing()
                        as usize;
                let outcome =
                    if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
                        "connected"
                    } else if busy >= self.peers_hi {
                        self.stats.discovery_full.fetch_add(1, Ordering::Relaxed);
                        "full"
                    } else if self.gate.read().denied(Some(&peer), &addr, now_secs()).is_some() {
                        "blocked"
                    } else if let Err(e) = self.swarm.dial(addr.clone()) {
                        debug!(%addr, %e, "dial of a discovered node failed");
                        "failed"
                    } else {
                        self.stats.discovery_dials.fetch_add(1, Ordering::Relaxed);
                        debug!(%peer, %addr, "dialling a discovered node");
                        "dialled"
                    };
                metrics::counter!("flashnode_gossip_discovery_dials_total", "outcome" => outcome)
                    .increment(1);
            }
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                debug!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                let remote = endpoint.get_remote_address().clone();
                if ip_of(&remote).is_some_and(|ip| self.ip_blocked(ip)) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.addrs.entry(peer_id).or_insert((
                    remote,
                    if endpoint.is_dialer() { "outbound" } else { "inbound" },
                    Instant::now(),
                ));
                if let Some(p) = self.statics.get_mut(&peer_id) {
                    p.connected = true;
                    p.backoff = self.redial_min;
                }
                self.update_peers();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                debug!(%peer_id, ?cause, "disconnected");
                if num_established == 0 {
                    self.addrs.remove(&peer_id);
                    self.latency.remove(&peer_id);
                    if let Some(p) = self.statics.get_mut(&peer_id) {
                        p.connected = false;
                        p.next_dial = Instant::now() + p.backoff;
                    }
                }
                self.update_peers();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                self.on_message(propagation_source, message_id, message);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Reqresp(ev)) => self.on_reqresp(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                debug!(%peer_id, agent = %info.agent_version, "identified");
                if self.identified.len() < 1000 || self.identified.contains_key(&peer_id) {
                    self.identified.insert(peer_id, info);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.latency.insert(peer, rtt);
            }
            _ => {}
        }
    }

    fn on_message(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let Some(version) = BlockVersion::from_topic(self.chain_id, message.topic.as_str()) else {
            self.report(&id, &source, Outcome::Reject("topic"));
            return;
        };
        if self.in_validation.load(Ordering::Relaxed) >= VALIDATION_BACKLOG {
            self.report(&id, &source, Outcome::Ignore("overloaded"));
            return;
        }
        self.in_validation.fetch_add(1, Ordering::Relaxed);
        let (slots, tx, chain_id, signer, pending) = (
            self.validation_slots.clone(),
            self.verdict_tx.clone(),
            self.chain_id,
            self.signer,
            self.in_validation.clone(),
        );
        tokio::spawn(async move {
            let result = match slots.acquire_owned().await {
                Ok(_permit) => {
                    let data = message.data;
                    let work = tokio::task::spawn_blocking(move || {
                        validate::check(version, &data, now_secs(), chain_id, signer)
                    });
                    match tokio::time::timeout(VALIDATION_TIMEOUT, work).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(_)) => Err("internal"),
                        Err(_) => Err("timeout"),
                    }
                }
                Err(_) => Err("internal"),
            };
            pending.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(Verdict { id, source, result }).await;
        });
    }

    fn on_verdict(&mut self, v: Verdict) {
        let outcome = match v.result {
            Ok(checked) => self.validator.decide(checked),
            // A validation that ran out of time is not the sender's fault for sure.
            Err(r @ ("timeout" | "internal")) => Outcome::Ignore(r),
            Err(r) => Outcome::Reject(r),
        };
        if let Outcome::Accept(block) = &outcome {
            self.stats.highest_block.fetch_max(block.number(), Ordering::Relaxed);
            debug!(number = block.number(), hash = %block.hash, from = %v.source, "accepted block");
            let _ = self.blocks.send(block.clone());
            self.on_gossip_block(block);
        } else {
            debug!(from = %v.source, outcome = outcome.label(), reason = outcome.reason(), "gossip message not accepted");
            if matches!(outcome, Outcome::Reject(_)) {
                self.app_event(v.source, AppEvent::RejectedPayload);
            }
        }
        self.report(&v.id, &v.source, outcome);
    }

    fn report(&mut self, id: &gossipsub::MessageId, source: &PeerId, outcome: Outcome) {
        let (acceptance, counter) = match &outcome {
            Outcome::Accept(_) => (gossipsub::MessageAcceptance::Accept, &self.stats.accepted),
            Outcome::Ignore(_) => (gossipsub::MessageAcceptance::Ignore, &self.stats.ignored),
            Outcome::Reject(_) => (gossipsub::MessageAcceptance::Reject, &self.stats.rejected),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flashnode_gossip_messages_total", "outcome" => outcome.label(), "reason" => outcome.reason()).increment(1);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }
}

impl Task {
    fn refresh_store_stats(&self) {
        if let (Ok(range), Ok(count)) = (self.store.range(), self.store.count()) {
            let (lo, hi) = range.unwrap_or_default();
            self.stats.stored_low.store(lo, Ordering::Relaxed);
            self.stats.stored_high.store(hi, Ordering::Relaxed);
            self.stats.stored_count.store(count, Ordering::Relaxed);
        }
        self.stats.altsync_missing.store(self.sync.missing(), Ordering::Relaxed);
    }

    fn store_block(&self, number: u64, version: BlockVersion, hash: B256, wire: &[u8]) {
        let Some(payload) = altsync::payload_bytes(wire) else { return };
        // A failed write (disk full) is counted and logged, rate-limited, by the store; gossip
        // goes on without it.
        let _ = self.store.put_block(&StoredBlock { number, version, hash, payload });
    }

    /// A block accepted from gossip: store it, trust its parent, and queue the gap below it.
    fn on_gossip_block(&mut self, block: &Arc<VerifiedBlock>) {
        let number = block.number();
        let before = self.store.range().ok().flatten().map(|(_, hi)| hi);
        self.store_block(number, block.version, block.hash, &block.wire);
        self.trust(block.header.parent_hash);
        if let Some(hi) = before {
            if number > hi + 1 {
                let from = (hi + 1).max(number.saturating_sub(self.max_gap));
                let queued = (from..number)
                    .filter(|n| !self.store.has(*n).unwrap_or(false))
                    .filter(|n| self.sync.wanted.insert(*n))
                    .count();
                if queued > 0 {
                    info!(from, to = number - 1, queued, "gap below a gossiped block: alt-sync");
                }
            }
        }
        self.queue_store_holes();
        self.promote_quarantined();
        self.schedule();
        self.refresh_store_stats();
    }

    /// Queues blocks missing inside the store's range (within `max_gap` of its top): holes left
    /// while the store could not write (a full disk) are filled once it can again. The stored
    /// block above each hole vouches for it (its parent hash is trusted, so the answer is
    /// promoted, and promotion walks down the hole); numbers alt-sync gave up on are skipped.
    fn queue_store_holes(&mut self) {
        if self.holes_checked.is_some_and(|t| t.elapsed() < HOLE_SCAN_INTERVAL) {
            return;
        }
        self.holes_checked = Some(Instant::now());
        let Ok(Some((lo, hi))) = self.store.range() else { return };
        let from = lo.max(hi.saturating_sub(self.max_gap));
        let Ok(stored) = self.store.numbers_in(from, hi) else { return };
        if stored.len() as u64 >= hi - from + 1 {
            return;
        }
        let stored: HashSet<u64> = stored.into_iter().collect();
        let mut queued = 0usize;
        for n in from..hi {
            if stored.contains(&n)
                || self.sync.given_up.contains(&n)
                || self.sync.numbers_in_flight.contains(&n)
                || self.sync.quarantine.contains_key(&n)
            {
                continue;
            }
            if stored.contains(&(n + 1)) {
                if let Ok(Some(above)) = self.store.block(n + 1) {
                    let answer = PayloadResponse::Ok {
                        version: altsync::response_version(above.version),
                        payload: above.payload,
                    };
                    if let Ok(block) = altsync::check_answer(n + 1, answer) {
                        self.trust(block.header.parent_hash);
                    }
                }
            }
            if self.sync.wanted.insert(n) {
                queued += 1;
            }
        }
        if queued > 0 {
            info!(from, to = hi - 1, queued, "holes in the p2p store: alt-sync");
        }
    }

    fn trust(&mut self, hash: B256) {
        if self.sync.trusted.len() >= TRUSTED {
            self.sync.trusted.clear();
        }
        self.sync.trusted.insert(hash);
    }

    /// Hands wanted numbers, highest first, to connected peers with spare capacity.
    fn schedule(&mut self) {
        if self.sync.wanted.is_empty() {
            return;
        }
        let mut load: HashMap<PeerId, usize> =
            self.swarm.connected_peers().map(|p| (*p, 0)).collect();
        for (_, peer) in self.sync.in_flight.values() {
            if let Some(l) = load.get_mut(peer) {
                *l += 1;
            }
        }
        let now = Instant::now();
        let retry_at = &self.sync.retry_at;
        let wanted: Vec<u64> = self
            .sync
            .wanted
            .iter()
            .rev()
            .copied()
            .filter(|n| retry_at.get(n).is_none_or(|(at, _)| *at <= now))
            .collect();
        for number in wanted {
            // A retry goes to another peer than the one that failed it when one is free: a
            // peer without the block would otherwise be asked every time (ties go to the
            // lowest peer id).
            let failed = self.sync.retry_at.get(&number).map(|(_, p)| *p);
            let peer = load
                .iter()
                .filter(|(_, l)| **l < self.per_peer)
                .min_by_key(|(p, l)| (failed == Some(**p), **l, **p))
                .map(|(p, _)| *p);
            let Some(peer) = peer else { break };
            let bucket = self
                .client_buckets
                .entry(peer)
                .or_insert_with(|| altsync::Bucket::new(altsync::PEER_RATE, altsync::PEER_BURST));
            if !bucket.take(now) {
                load.insert(peer, usize::MAX);
                continue;
            }
            *load.entry(peer).or_default() += 1;
            self.sync.wanted.remove(&number);
            self.sync.retry_at.remove(&number);
            self.sync.numbers_in_flight.insert(number);
            let id = self.swarm.behaviour_mut().reqresp.send_request(&peer, number);
            self.sync.in_flight.insert(id, (number, peer));
            self.stats.altsync_requested.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flashnode_altsync_requests_total", "outcome" => "sent").increment(1);
        }
        self.stats.altsync_missing.store(self.sync.missing(), Ordering::Relaxed);
    }

    fn retry(&mut self, number: u64, failed_by: PeerId) {
        let attempts = self.sync.attempts.entry(number).or_default();
        *attempts += 1;
        if *attempts < MAX_ATTEMPTS {
            let delay = RETRY_MIN
                .checked_mul(1 << (*attempts - 1).min(16))
                .unwrap_or(RETRY_MAX)
                .min(RETRY_MAX);
            self.sync.retry_at.insert(number, (Instant::now() + delay, failed_by));
            self.sync.wanted.insert(number);
        } else {
            warn!(number, "alt-sync gave up on a block");
            self.sync.attempts.remove(&number);
            if self.sync.given_up.len() >= TRUSTED {
                self.sync.given_up.clear();
            }
            self.sync.given_up.insert(number);
        }
    }

    fn on_reqresp(&mut self, ev: request_response::Event<u64, PayloadResponse>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.serve(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_response(request_id, peer, response)
                }
            },
            request_response::Event::OutboundFailure { request_id, peer, error, .. } => {
                if let Some(reply) = self.admin_requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                    return;
                }
                self.app_event(peer, AppEvent::ErrorResponse);
                if let Some((number, _)) = self.sync.in_flight.remove(&request_id) {
                    self.sync.numbers_in_flight.remove(&number);
                    debug!(%peer, number, %error, "alt-sync request failed");
                    metrics::counter!("flashnode_altsync_requests_total", "outcome" => "failed")
                        .increment(1);
                    self.retry(number, peer);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "alt-sync serve failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve(
        &mut self,
        peer: PeerId,
        number: u64,
        channel: request_response::ResponseChannel<PayloadResponse>,
    ) {
        if !self.limits.allow(&peer, Instant::now()) {
            // Dropping the channel resets the stream: the client sees an error, like op-node
            // whose server stops waiting on its rate limiter.
            self.stats.altsync_rate_limited.fetch_add(1, Ordering::Relaxed);
            self.app_event(peer, AppEvent::Flood);
            metrics::counter!("flashnode_altsync_served_total", "outcome" => "rate_limited")
                .increment(1);
            debug!(%peer, number, "alt-sync request rate-limited");
            return;
        }
        let (response, outcome) = match self.store.block(number) {
            Ok(Some(b)) => (
                PayloadResponse::Ok {
                    version: altsync::response_version(b.version),
                    payload: b.payload,
                },
                "ok",
            ),
            Ok(None) => (PayloadResponse::Err(altsync::RESULT_NOT_FOUND), "not_found"),
            // Logged (rate-limited) and counted by the store.
            Err(_) => (PayloadResponse::Err(altsync::RESULT_UNKNOWN), "error"),
        };
        self.stats.altsync_served.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flashnode_altsync_served_total", "outcome" => outcome).increment(1);
        let _ = self.swarm.behaviour_mut().reqresp.send_response(channel, response);
    }

    fn on_response(&mut self, id: OutboundRequestId, peer: PeerId, response: PayloadResponse) {
        if let Some(reply) = self.admin_requests.remove(&id) {
            let _ = reply.send(Ok(response));
            return;
        }
        let Some((number, _)) = self.sync.in_flight.remove(&id) else { return };
        self.sync.numbers_in_flight.remove(&number);
        match altsync::check_answer(number, response) {
            Ok(b) => {
                self.app_event(peer, AppEvent::ValidResponse);
                self.sync.quarantine.insert(number, (Arc::new(b), peer));
                while self.sync.quarantine.len() > QUARANTINE {
                    // Evict the lowest: it is the furthest from being trusted.
                    if let Some((n, (_, from))) = self.sync.quarantine.pop_first() {
                        debug!(number = n, %from, "evicted an untrusted alt-sync answer");
                        self.retry(n, from);
                    }
                }
                self.promote_quarantined();
            }
            Err(AnswerError::NoBlock(code)) => {
                debug!(%peer, number, code, "alt-sync answer without a block");
                self.app_event(peer, AppEvent::ErrorResponse);
                metrics::counter!("flashnode_altsync_requests_total", "outcome" => "not_found")
                    .increment(1);
                self.retry(number, peer);
                return;
            }
            Err(err) => {
                warn!(%peer, number, %err, "invalid alt-sync answer");
                self.app_event(peer, AppEvent::RejectedPayload);
                metrics::counter!("flashnode_altsync_requests_total", "outcome" => "invalid")
                    .increment(1);
                self.retry(number, peer);
            }
        }
        self.schedule();
        self.refresh_store_stats();
    }

    /// Promotes quarantined answers whose hash is trusted, highest first (each promotion
    /// trusts the parent, which may promote the next one down).
    fn promote_quarantined(&mut self) {
        loop {
            let next = self
                .sync
                .quarantine
                .iter()
                .rev()
                .find(|(_, (b, _))| self.sync.trusted.contains(&b.hash))
                .map(|(n, _)| *n);
            let Some(number) = next else { break };
            let Some((block, _)) = self.sync.quarantine.remove(&number) else { break };
            self.store_block(number, block.version, block.hash, &block.wire);
            self.trust(block.header.parent_hash);
            self.sync.attempts.remove(&number);
            self.stats.altsync_filled.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flashnode_altsync_requests_total", "outcome" => "filled")
                .increment(1);
            debug!(number, hash = %block.hash, "alt-sync filled a block");
        }
        // An answer at a height we already hold with another hash can never be promoted.
        let stale: Vec<u64> = self
            .sync
            .quarantine
            .keys()
            .copied()
            .filter(|n| self.store.has(*n).unwrap_or(false))
            .collect();
        for n in stale {
            self.sync.quarantine.remove(&n);
        }
        self.sync.wanted.retain(|n| !self.store.has(*n).unwrap_or(false));
        let wanted = &self.sync.wanted;
        self.sync.retry_at.retain(|n, _| wanted.contains(n));
    }
}

impl Task {
    fn app_event(&mut self, peer: PeerId, ev: AppEvent) {
        let score = self.app_scores.record(peer, ev);
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
    }

    /// Restores the blocks in force from the store (a restart, even after `kill -9`, keeps them).
    fn load_blocks(&mut self) {
        let now = now_secs();
        let mut gate = self.gate.write();
        match self.store.bans(now) {
            Ok(bans) => bans.into_iter().for_each(|(peer, until)| gate.block_peer(peer, until)),
            Err(err) => warn!(%err, "cannot read bans"),
        }
        match self.store.blocked_ips(now) {
            Ok(ips) => ips.into_iter().for_each(|(ip, until)| gate.block_ip(ip, until)),
            Err(err) => warn!(%err, "cannot read blocked addresses"),
        }
        match self.store.blocked_subnets(now) {
            Ok(nets) => {
                for (cidr, until) in nets {
                    match cidr.parse::<Subnet>() {
                        Ok(net) => gate.block_subnet(net, until),
                        Err(err) => warn!(cidr, err, "unreadable blocked subnet in the store"),
                    }
                }
            }
            Err(err) => warn!(%err, "cannot read blocked subnets"),
        }
        let (peers, ips, subnets) =
            (gate.peers(now).len(), gate.ips(now).len(), gate.subnets(now).len());
        drop(gate);
        if peers + ips + subnets > 0 {
            info!(peers, ips, subnets, "blocks restored from the store");
        }
        self.stats.banned.store(peers as u64, Ordering::Relaxed);
    }

    /// Expiry (unix seconds) of a block lasting `duration`, the ban duration when None; zero
    /// means until lifted.
    fn expiry(&self, duration: Option<Duration>) -> u64 {
        match duration.unwrap_or(self.ban_duration) {
            d if d.is_zero() => NEVER,
            d => now_secs().saturating_add(d.as_secs().max(1)),
        }
    }

    fn ban(&mut self, peer: PeerId, reason: &str, duration: Option<Duration>) {
        let until = self.expiry(duration);
        warn!(%peer, reason, until, "banning peer");
        let banned = {
            let mut gate = self.gate.write();
            gate.block_peer(peer, until);
            gate.peers(now_secs()).len()
        };
        // The gate refuses new connections; the current ones are closed here.
        let _ = self.swarm.disconnect_peer_id(peer);
        if let Err(err) = self.store.ban(&peer, until) {
            warn!(%err, "cannot persist the ban");
        }
        self.stats.bans.fetch_add(1, Ordering::Relaxed);
        self.stats.banned.store(banned as u64, Ordering::Relaxed);
        metrics::counter!("flashnode_gossip_bans_total").increment(1);
    }

    /// After an unblock: static peers are redialled at once.
    fn reset_redials(&mut self) {
        let now = Instant::now();
        for p in self.statics.values_mut().filter(|p| !p.connected) {
            p.next_dial = now;
            p.backoff = self.redial_min;
        }
    }

    fn unban(&mut self, peer: &PeerId) {
        let banned = {
            let mut gate = self.gate.write();
            gate.unblock_peer(peer);
            gate.peers(now_secs()).len()
        };
        self.app_scores.remove(peer);
        self.swarm.behaviour_mut().gossipsub.set_application_score(peer, 0.0);
        self.reset_redials();
        if let Err(err) = self.store.unban(peer) {
            warn!(%err, "cannot persist the unban");
        }
        self.stats.banned.store(banned as u64, Ordering::Relaxed);
    }

    /// Bans connected peers whose total score fell below the threshold; lifts expired bans.
    fn enforce_bans(&mut self) {
        let low: Vec<(PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter(|p| !self.protected.contains(p))
            .filter_map(|p| self.swarm.behaviour().gossipsub.peer_score(p).map(|s| (*p, s)))
            .filter(|(_, s)| *s < scoring::BAN_THRESHOLD)
            .collect();
        for (peer, score) in low {
            self.ban(peer, &format!("score {score:.1}"), None);
        }
        let expired = self.gate.write().expire(now_secs());
        for peer in expired.peers {
            info!(%peer, "ban expired");
            self.unban(&peer);
        }
        if !(expired.ips.is_empty() && expired.subnets.is_empty()) {
            self.reset_redials();
        }
        for ip in expired.ips {
            info!(%ip, "address block expired");
            if let Err(err) = self.store.unblock_ip(ip) {
                warn!(%err, "cannot persist the end of an address block");
            }
        }
        for net in expired.subnets {
            info!(%net, "subnet block expired");
            if let Err(err) = self.store.unblock_subnet(&net.to_string()) {
                warn!(%err, "cannot persist the end of a subnet block");
            }
        }
    }

    /// The connection manager: above the high water mark, disconnects the lowest-scored peers
    /// that are neither protected nor in their grace period, down to the low water mark.
    fn trim_peers(&mut self) {
        let connected = self.swarm.connected_peers().count();
        if connected <= self.peers_hi {
            return;
        }
        let gs = &self.swarm.behaviour().gossipsub;
        let mut candidates: Vec<(PeerId, f64)> = self
            .addrs
            .iter()
            .filter(|(p, (_, _, since))| {
                !self.protected.contains(p) && since.elapsed() >= self.peers_grace
            })
            .map(|(p, _)| (*p, gs.peer_score(p).unwrap_or_default()))
            .collect();
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (peer, score) in candidates.into_iter().take(connected - self.peers_lo) {
            debug!(%peer, score, "pruning a peer above the high water mark");
            metrics::counter!("flashnode_gossip_pruned_total").increment(1);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn ip_blocked(&self, ip: std::net::IpAddr) -> bool {
        self.gate.read().ip_denied(ip, now_secs()).is_some()
    }

    /// Disconnects connected peers whose address is blocked.
    fn drop_blocked(&mut self) {
        let drop: Vec<PeerId> = self
            .addrs
            .iter()
            .filter(|(_, (a, _, _))| ip_of(a).is_some_and(|ip| self.ip_blocked(ip)))
            .map(|(p, _)| *p)
            .collect();
        for p in drop {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    fn peer_info(&self, peer: &PeerId) -> PeerInfo {
        let id = self.identified.get(peer);
        let conn = self.addrs.get(peer);
        let gs = &self.swarm.behaviour().gossipsub;
        let mut addresses: Vec<String> =
            id.map(|i| i.listen_addrs.iter().map(|a| a.to_string()).collect()).unwrap_or_default();
        if let Some((a, _, _)) = conn {
            if addresses.is_empty() {
                addresses.push(a.to_string());
            }
        }
        PeerInfo {
            peer_id: peer.to_string(),
            user_agent: id.map(|i| i.agent_version.clone()).unwrap_or_default(),
            protocol_version: id.map(|i| i.protocol_version.clone()).unwrap_or_default(),
            addresses,
            protocols: id
                .map(|i| i.protocols.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default(),
            connectedness: if conn.is_some() { "connected" } else { "notConnected" }.into(),
            direction: conn.map(|c| c.1).unwrap_or("unknown").into(),
            protected: self.protected.contains(peer),
            chain_id: self.chain_id,
            latency: self.latency.get(peer).map(|d| d.as_nanos() as u64).unwrap_or_default(),
            gossip_blocks: gs.all_peers().any(|(p, topics)| p == peer && !topics.is_empty()),
            scores: PeerScores {
                gossip: gs.peer_score(peer).unwrap_or_default(),
                app: self.app_scores.score(peer),
            },
        }
    }

    fn on_admin(&mut self, a: Admin) {
        match a {
            Admin::Peers(connected_only, reply) => {
                let mut ids: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
                if !connected_only {
                    ids.extend(self.identified.keys().copied());
                    ids.extend(self.statics.keys().copied());
                }
                let _ = reply.send(ids.iter().map(|p| self.peer_info(p)).collect());
            }
            Admin::PeerStats(reply) => {
                let gs = &self.swarm.behaviour().gossipsub;
                let on = |v: BlockVersion| {
                    let t = gossipsub::IdentTopic::new(v.topic(self.chain_id)).hash();
                    gs.all_peers().filter(|(_, ts)| ts.contains(&&t)).count() as u64
                };
                let connected = self.swarm.connected_peers().count() as u64;
                let mut known: HashSet<PeerId> = self.identified.keys().copied().collect();
                known.extend(self.statics.keys().copied());
                known.extend(self.swarm.connected_peers().copied());
                let _ = reply.send(PeerStats {
                    connected,
                    table: known.len() as u64,
                    blocks_topic: on(BlockVersion::V1),
                    blocks_topic_v2: on(BlockVersion::V2),
                    blocks_topic_v3: on(BlockVersion::V3),
                    blocks_topic_v4: on(BlockVersion::V4),
                    banned: self.gate.read().peers(now_secs()).len() as u64,
                    known: known.len() as u64,
                });
            }
            Admin::Block(peer, duration, reply) => {
                self.ban(peer, "admin", duration);
                let _ = reply.send(());
            }
            Admin::Unblock(peer, reply) => {
                self.unban(&peer);
                let _ = reply.send(());
            }
            Admin::ListBlocked(reply) => {
                let _ = reply
                    .send(self.gate.read().peers(now_secs()).into_iter().map(|(p, _)| p).collect());
            }
            Admin::BlockAddr(ip, duration, reply) => {
                let until = self.expiry(duration);
                info!(%ip, until, "blocking address");
                self.gate.write().block_ip(ip, until);
                if let Err(err) = self.store.block_ip(ip, until) {
                    warn!(%err, "cannot persist the address block");
                }
                self.drop_blocked();
                let _ = reply.send(());
            }
            Admin::UnblockAddr(ip, reply) => {
                self.gate.write().unblock_ip(&ip);
                self.reset_redials();
                if let Err(err) = self.store.unblock_ip(ip) {
                    warn!(%err, "cannot persist the address unblock");
                }
                let _ = reply.send(());
            }
            Admin::BlockSubnet(net, duration, reply) => {
                let until = self.expiry(duration);
                info!(%net, until, "blocking subnet");
                self.gate.write().block_subnet(net, until);
                if let Err(err) = self.store.block_subnet(&net.to_string(), until) {
                    warn!(%err, "cannot persist the subnet block");
                }
                self.drop_blocked();
                let _ = reply.send(());
            }
            Admin::UnblockSubnet(net, reply) => {
                self.gate.write().unblock_subnet(&net);
                self.reset_redials();
                if let Err(err) = self.store.unblock_subnet(&net.to_string()) {
                    warn!(%err, "cannot persist the subnet unblock");
                }
                let _ = reply.send(());
            }
            Admin::ListBlockedSubnets(reply) => {
                let _ = reply.send(
                    self.gate.read().subnets(now_secs()).into_iter().map(|(n, _)| n).collect(),
                );
            }
            Admin::ListBlockedAddrs(reply) => {
                let _ = reply
                    .send(self.gate.read().ips(now_secs()).into_iter().map(|(i, _)| i).collect());
            }
            Admin::Protect(peer, reply) => {
                self.protected.insert(peer);
                let _ = reply.send(());
            }
            Admin::Request(peer, number, reply) => {
                let id = self.swarm.behaviour_mut().reqresp.send_request(&peer, number);
                self.admin_requests.insert(id, reply);
            }
        }
    }
}
