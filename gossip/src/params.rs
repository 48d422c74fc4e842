//! The gossipsub mesh parameters of op-node (`op-node/p2p/gossip.go`, `BuildGlobalGossipParams`) and
//! the OP-stack p2p spec ("Gossipsub configuration").

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
