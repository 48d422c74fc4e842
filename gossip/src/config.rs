//! Settings of the p2p host ([`GossipConfig`]) and of its node discovery
//! ([`DiscoveryConfig`]). Plain data: this module depends on no other module of the crate but
//! the codec's [`MessageIdMode`], so every module that reads settings points here.

use crate::codec::MessageIdMode;
use alloy_primitives::Address;
use discv5::Enr;
use libp2p::{multiaddr::Protocol, Multiaddr};
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// A `/ip4|ip6/<ip>/tcp/<port>` multiaddr for a socket address.
pub fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty().with(Protocol::from(addr.ip())).with(Protocol::Tcp(addr.port()))
}

/// Everything the p2p service needs.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// L2 chain id (topics, signature domain).
    pub chain_id: u64,
    /// TCP listen address, e.g. `/ip4/127.0.0.1/tcp/9222`.
    pub listen: Multiaddr,
    /// Peers that are always dialled, redialled with backoff when they drop, and never
    /// pruned. Each must end in `/p2p/<peer id>`.
    pub static_peers: Vec<Multiaddr>,
    /// Peers dialled once at start-up.
    pub bootnodes: Vec<Multiaddr>,
    /// File holding the node's secp256k1 key (hex, like op-node's `opnode_p2p_priv.txt`);
    /// created with mode 0600 when missing. None: an ephemeral key.
    pub key_path: Option<PathBuf>,
    /// The chain's unsafe-block signer: the only accepted block signer.
    pub unsafe_block_signer: Address,
    /// Message-id function.
    pub message_id: MessageIdMode,
    /// Most inbound connections (op-node's connection manager high water is 30).
    pub max_inbound: u32,
    /// Most outbound connections.
    pub max_outbound: u32,
    /// First redial delay of a dropped static peer (doubles up to `redial_max`).
    pub redial_min: Duration,
    /// Longest redial delay (op-node redials static peers every minute).
    pub redial_max: Duration,
    /// Capacity of the verified-block broadcast.
    pub block_buffer: usize,
    /// Durable store file (redb); None keeps the store in memory (lost on restart).
    pub store_path: Option<PathBuf>,
    /// Recent blocks kept in the store to serve alt-sync.
    pub store_retain: u64,
    /// Largest gap alt-sync fills at once.
    pub max_gap: u64,
    /// Requests in flight to one peer.
    pub altsync_per_peer: usize,
    /// Connection manager low water: pruning stops here (op-node: 20).
    pub peers_lo: usize,
    /// Connection manager high water: above it the lowest-scored peers are pruned (op-node: 30).
    pub peers_hi: usize,
    /// New connections are not pruned during this grace period (op-node: 30 s).
    pub peers_grace: Duration,
    /// How long a peer whose score fell below the ban threshold stays banned (op-node: 1 h);
    /// also the default expiry of admin blocks of peers, addresses and subnets.
    pub ban_duration: Duration,
    /// discv5 node discovery on UDP; None turns it off.
    pub discovery: Option<DiscoveryConfig>,
}

/// Default of [`GossipConfig::ban_duration`] (op-node: 1 h).
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(3600);

/// Default of [`DiscoveryConfig::interval`].
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

impl GossipConfig {
    /// Defaults for `chain_id` and `signer`, listening on `listen`.
    pub fn new(chain_id: u64, listen: Multiaddr, unsafe_block_signer: Address) -> Self {
        Self {
            chain_id,
            listen,
            static_peers: Vec::new(),
            bootnodes: Vec::new(),
            key_path: None,
            unsafe_block_signer,
            message_id: MessageIdMode::OpNode,
            max_inbound: 30,
            max_outbound: 30,
            redial_min: Duration::from_millis(500),
            redial_max: Duration::from_secs(60),
            block_buffer: 256,
            store_path: None,
            store_retain: 4096,
            max_gap: 1000,
            altsync_per_peer: 4,
            ban_duration: DEFAULT_BAN_DURATION,
            peers_lo: 20,
            peers_hi: 30,
            peers_grace: Duration::from_secs(30),
            discovery: None,
        }
    }
}

/// Settings of discovery.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// UDP listen address (port 0: a free port is picked before the ENR is signed).
    pub listen: SocketAddr,
    /// IP address put in the local ENR; None: the listen IP unless unspecified (then discv5
    /// learns it from its peers' votes).
    pub advertise_ip: Option<IpAddr>,
    /// Bootnode records that seed the routing table.
    pub bootnodes: Vec<Enr>,
    /// Pause between lookups (op-node looks up continuously while below its peer target).
    pub interval: Duration,
}

impl DiscoveryConfig {
    /// Discovery on `listen` with no bootnodes and a 5 s lookup interval.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise_ip: None,
            bootnodes: Vec::new(),
            interval: DEFAULT_DISCOVERY_INTERVAL,
        }
    }
}
