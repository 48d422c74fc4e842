//! OP-stack consensus-layer p2p for flashnode: a libp2p host (TCP, noise, yamux, identify,
//! ping, connection limits, connection gating of peers, IPs and subnets with expiry), discv5
//! discovery with the `opstack` ENR entry, block gossip on the chain's four `blocks` topics
//! with op-node's gossipsub parameters, validation in the order of the OP-stack p2p spec
//! (`specs/protocol/rollup-node-p2p.md`, "Block validation"), and publishing of signed blocks.
//!
//! Without the default `swarm` feature only the wire format is built (codec, validation,
//! alt-sync response framing): the fuzz targets use that, without libp2p or the store. The
//! feature gates whole modules, never items inside one.
//!
//! The crate knows nothing of the overlay or of RPC: verified blocks leave through a
//! broadcast channel and counters through [`GossipStats`]; the binary wires them.
//!
//! Modules are private but for the two wire formats ([`codec`], [`altsync`]); everything else
//! is re-exported below.

mod admin_types;
pub mod altsync;
pub mod codec;
mod stats;
mod validate;

#[cfg(feature = "swarm")]
mod config;
#[cfg(feature = "swarm")]
mod discovery;
#[cfg(feature = "swarm")]
mod enr;
#[cfg(feature = "swarm")]
mod gate;
#[cfg(feature = "swarm")]
mod key;
#[cfg(feature = "swarm")]
mod params;
#[cfg(feature = "swarm")]
mod scoring;
#[cfg(feature = "swarm")]
mod service;
#[cfg(feature = "swarm")]
mod store;

pub use admin_types::{Connectedness, Direction, PeerInfo, PeerScores, PeerStats};
pub use codec::{BlockVersion, MessageIdMode, SignedBlock, DEV_UNSAFE_BLOCK_SIGNER_KEY};
pub use stats::{GossipSnapshot, GossipStats};
pub use validate::{Outcome, Refusal, ValidationError, Validator, VerifiedBlock, VersionError};

/// The libp2p host and everything built on it.
#[cfg(feature = "swarm")]
pub use self::{
    config::{
        tcp_multiaddr, DiscoveryConfig, GossipConfig, DEFAULT_BAN_DURATION,
        DEFAULT_DISCOVERY_INTERVAL,
    },
    discovery::{enr_peer_id, DiscoveryError, Enr, OpStackEnr, OpStackEnrError, StartError},
    enr::{parse_peer_addr, AddrError, EnrError},
    gate::{Subnet, SubnetError},
    key::{load_or_create as load_or_create_key, KeyError},
    service::{spawn, GossipError, GossipHandle},
    store::{Store, StoreError, StoredBlock},
};
#[cfg(feature = "swarm")]
pub use libp2p::{Multiaddr, PeerId};
