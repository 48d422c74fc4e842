//! Flashblock ingest: the websocket stream client, the sequencing state machine, re-execution
//! of flashblocks into a preconfirmed [`pending::PendingBlock`], and canonical tracking through
//! a [`flashnode_exec::StateSource`] (the embedded devnet or an upstream execution client).
//! Knows nothing of HTTP serving: readers take snapshots from [`service::Overlay`].

pub mod executor;
pub mod frame;
pub mod metrics_names;
pub mod pending;
pub mod sequencer;
pub mod service;
pub mod stream;
pub mod upstream;

pub use pending::{PendingBlock, PendingDb};
pub use service::{spawn, Health, Mode, Overlay, OverlayConfig, OverlayEvent, OverlayStatus};
