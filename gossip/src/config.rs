//! Settings of the p2p host and the gossip protocol.

#[cfg(feature = "swarm")]
use alloy_primitives::Address;
#[cfg(feature = "swarm")]
use libp2p::Multiaddr;
#[cfg(feature = "swarm")]
use std::{path::PathBuf, time::Duration};

/// The devnet's unsafe-block signer key (anvil's tenth dev key,
/// address `0xa0Ee7A142d267C1f36714E4a8F75612F20a79720`): `flashnode devnet` signs every sealed
/// block with it, and nodes following a devnet pass its address as the sequencer address.
/// Public knowledge: for local chains only.
pub const DEV_UNSAFE_BLOCK_SIGNER_KEY: &str =
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

/// A `/ip4|ip6/<ip>/tcp/<port>` multiaddr for a socket address.
#[cfg(feature = "swarm")]
pub fn tcp_multiaddr(addr: std::net::SocketAddr) -> Multiaddr {
    use libp2p::multiaddr::Protocol;
    Multiaddr::empty().with(Protocol::from(addr.ip())).with(Protocol::Tcp(addr.port()))
}

/// Which gossipsub message-id function this node computes.
///
/// Both hash the snappy-decoded data (domain `[1,0,0,0]`) or the raw data when it does not
/// decode (domain `[0,0,0,0]`) with SHA-256 and keep 20 bytes. op-node
/// (`op-node/p2p/gossip.go`, `BuildMsgIdFn`) also mixes in the topic (its length as a u64
/// little-endian, then the topic); the spec and kona (`kona-gossip`) do not. Ids are local to
/// each node (they drive dedup and IHAVE/IWANT), so nodes of either kind share one mesh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageIdMode {
    /// op-node's: domain, topic length, topic, data.
    #[default]
    OpNode,
    /// The spec's and kona's: domain, data.
    Spec,
}

/// Everything the p2p service needs.
#[cfg(feature = "swarm")]
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
    pub discovery: Option<crate::discovery::DiscoveryConfig>,
}

#[cfg(feature = "swarm")]
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
            ban_duration: Duration::from_secs(3600),
            peers_lo: 20,
            peers_hi: 30,
            peers_grace: Duration::from_secs(30),
            discovery: None,
        }
    }
}

/// gossipsub parameters of op-node (`op-node/p2p/gossip.go`, `BuildGlobalGossipParams`) and
/// the OP-stack p2p spec ("Gossipsub configuration").
pub mod params {
    use std::time::Duration;

    /// Target mesh degree D.
    pub const MESH_D: usize = 8;
    /// D_lo.
    pub const MESH_D_LO: usize = 6;
    /// D_hi.
    pub const MESH_D_HI: usize = 12;
    /// D_lazy.
    pub const MESH_D_LAZY: usize = 6;
    /// Heartbeat interval.
    pub const HEARTBEAT: Duration = Duration::from_millis(500);
    /// Fanout TTL.
    pub const FANOUT_TTL: Duration = Duration::from_secs(24);
    /// Heartbeats of message history.
    pub const HISTORY_LENGTH: usize = 12;
    /// Heartbeats of history gossiped.
    pub const HISTORY_GOSSIP: usize = 3;
    /// Seen-messages TTL: 130 heartbeats.
    pub const SEEN_TTL: Duration = Duration::from_millis(500 * 130);
    /// Largest gossip message (10 MiB).
    pub const MAX_GOSSIP_SIZE: usize = 10 * (1 << 20);
    /// Smallest gossip message: a 65-byte signature and at least one byte.
    pub const MIN_GOSSIP_SIZE: usize = 66;
}
