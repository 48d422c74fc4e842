//! OP-stack consensus-layer p2p for flashnode: a libp2p host (TCP, noise, yamux, identify,
//! ping, connection limits, connection gating of peers, IPs and subnets with expiry), discv5
//! discovery with the `opstack` ENR entry, block gossip on the chain's four `blocks` topics
//! with op-node's gossipsub parameters, validation in the order of the OP-stack p2p spec
//! (`specs/protocol/rollup-node-p2p.md`, "Block validation"), and publishing of signed blocks.
//!
//! The crate knows nothing of the overlay or of RPC: verified blocks leave through a
//! broadcast channel and counters through [`stats::GossipStats`]; the binary wires them.

pub mod altsync;
pub mod codec;
pub mod config;
pub mod discovery;
pub mod enr;
pub mod gate;
pub mod key;
pub mod scoring;
pub mod service;
pub mod stats;
pub mod store;
pub mod validate;

pub use codec::{BlockVersion, SignedBlock};
pub use enr::parse_peer_addr;
pub use config::{tcp_multiaddr, GossipConfig, MessageIdMode, DEV_UNSAFE_BLOCK_SIGNER_KEY};
pub use libp2p::{Multiaddr, PeerId};
pub use service::{spawn, GossipError, GossipHandle, PeerInfo, PeerScores, PeerStats, Subnet};
pub use stats::{GossipSnapshot, GossipStats};
pub use validate::{Outcome, Validator, VerifiedBlock};
