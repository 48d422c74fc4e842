//! Flashblock ingest: the websocket stream client, the sequencing state machine, re-execution
//! of flashblocks into a preconfirmed [`PendingBlock`], and canonical tracking through a
//! [`flashnode_exec::StateSource`] (the embedded devnet or an upstream execution client,
//! optionally merged with unsafe blocks by [`MergedSource`]). Knows nothing of HTTP serving or
//! of libp2p: readers take snapshots from [`Overlay`].

mod canonical;
mod carry;
mod coalesce;
mod discover;
mod executor;
mod frame;
pub mod metrics_names;
mod pending;
mod readiness;
mod reconcile;
mod rejections;
mod reth;
mod sequencer;
mod service;
mod stream;
mod upstream;

pub use canonical::{MergedSource, UnsafeBlock, UNSAFE_BLOCK_QUEUE, UNSAFE_STATE_WAIT};
pub use carry::{CARRIED_BLOCK, CARRIED_TOTAL, CARRY_WINDOW};
pub use coalesce::COALESCED_TOTAL;
pub use executor::{env_of, ApplyError, ApplyReport, FlashblockExecutor, TxDecodeError};
pub use frame::{
    decode_frame, encode_brotli, DecodedFlashblock, FrameError, BROTLI_QUALITY, BROTLI_WINDOW,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
};
pub use pending::{PendingBlock, PendingDb, PendingState};
pub use readiness::{Health, Mode};
pub use rejections::RejectClass;
pub use reth::{CHAIN_NOTIFICATIONS_METHOD, EXECUTION_OUTCOME_METHOD};
pub use sequencer::{
    Decision, FlashblockSequencer, InvalidReason, Rejection, TipView, DEFAULT_MAX_INDEX,
    DEFAULT_MAX_PENDING_DEPTH,
};
pub use service::{
    spawn, Overlay, OverlayConfig, OverlayEvent, OverlayStatus, DEFAULT_READINESS_HYSTERESIS_BLOCKS,
};
pub use stream::{
    run_stream, DisconnectReason, StreamConfig, StreamEvent, DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_PING_INTERVAL, DEFAULT_SILENCE_TIMEOUT,
};
pub use upstream::{
    UpstreamConfig, UpstreamSource, DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT, DIFFS_TOTAL,
    HEADS_TOTAL, HEAD_SOURCE,
};
