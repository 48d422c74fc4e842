//! OP-stack consensus-layer p2p for flashnode: a libp2p host (TCP, noise, yamux, identify,
//! ping, connection limits, connection gating of peers, IPs and subnets with expiry), discv5
//! discovery with the `opstack` ENR entry, block gossip on the chain's four `blocks` topics
//! with op-node's gossipsub parameters, validation in the order of the OP-stack p2p spec
//! (`specs/protocol/rollup-node-p2p.md`, "Block validation"), and publishing of signed blocks.
//!
//! Without the default `swarm` feature only the wire format is built (codec, validation,
//! alt-sync response framing): the fuzz targets use that, without libp2p or the store.
//!
//! The crate knows nothing of the overlay or of RPC: verified blocks leave through a
//! broadcast channel and counters through [`stats::GossipStats`]; the binary wires them.

pub mod altsync;
pub mod codec;
pub mod config;
#[cfg(feature = "swarm")]
pub mod discovery;
#[cfg(feature = "swarm")]
pub mod enr;
#[cfg(feature = "swarm")]
pub mod gate;
#[cfg(feature = "swarm")]
pub mod key;
#[cfg(feature = "swarm")]
pub mod scoring;
#[cfg(feature = "swarm")]
pub mod service;
pub mod stats;
#[cfg(feature = "swarm")]
pub mod store;
pub mod validate;

pub use codec::{BlockVersion, SignedBlock};
#[cfg(feature = "swarm")]
pub use config::{tcp_multiaddr, GossipConfig};
pub use config::{MessageIdMode, DEV_UNSAFE_BLOCK_SIGNER_KEY};
#[cfg(feature = "swarm")]
pub use enr::parse_peer_addr;
#[cfg(feature = "swarm")]
pub use libp2p::{Multiaddr, PeerId};
#[cfg(feature = "swarm")]
pub use service::{spawn, GossipError, GossipHandle, PeerInfo, PeerScores, PeerStats, Subnet};
pub use stats::{GossipSnapshot, GossipStats};
pub use validate::{Outcome, Validator, VerifiedBlock};
