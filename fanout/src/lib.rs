//! The raw flashblock fan-out, wire-compatible with Base's websocket proxy: every frame its
//! source hands it, re-published as received, in order, once each.
//!
//! Paths: `/ws` (public, unless closed), `/ws/{api_key}`,
//! `/ws/{api_key}/filter?addresses=&topics=&match=any|all` (each with `?compress=brotli`), and
//! `/healthz`. Connections count against per-IP and global limits from the moment they are
//! accepted (HTTP 429 past them), the whole handshake runs under one deadline, and the global
//! limit is kept below the process's descriptor limit. A subscriber that lags behind its buffer
//! or whose send takes too long is disconnected and counted, never slowing the others.
//!
//! Every fan-out keeps a ring of its most recent frames (bounded by count and bytes): a
//! subscriber that connects with `?from=<block_number>-<index>` (the last frame it has) gets
//! every later frame still in the ring, then the live stream, with no duplicate and no gap
//! (see the `resume` module; the 101 says so with [`RESUME_HEADER`]). A consumer that does not
//! ask sees the live stream as before.
//!
//! [`run_upstream`] is the fan-out's own source client for a process that relays another
//! stream (`flashnode relay`): it validates each frame's shape and order, hands it over as
//! received, and resumes from its upstream's ring after a reconnect.
//!
//! The fan-out knows nothing of execution: it is fed [`SourceFrame`]s through a bounded channel
//! (the node feeds it the flashblocks its overlay accepted), so a process without an overlay can
//! feed it too.

mod admission;
mod fd;
mod filter;
mod frame;
mod handshake;
mod outbox;
mod resume;
mod ring;
mod server;
mod shape;
mod shard;
mod upstream;

pub use frame::{encode_brotli, SourceFrame, BROTLI_QUALITY, BROTLI_WINDOW};
pub use resume::{RESUME_GAP_CLOSE_CODE, RESUME_HEADER};
pub use server::{serve, Fanout};
pub use shape::{parse_frame, ShapeError};
pub use upstream::{run_upstream, UpstreamConfig, UpstreamState};

use std::{net::SocketAddr, time::Duration};

/// Fan-out settings (defaults as Base's websocket proxy, with a higher instance limit).
#[derive(Clone, Debug)]
pub struct FanoutConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// API keys accepted on `/ws/{key}`.
    pub api_keys: Vec<String>,
    /// Whether `/ws` without a key is served.
    pub public: bool,
    /// Connections per client IP (handshakes included).
    pub per_ip_limit: usize,
    /// Subscribers per API key (`/ws/{key}`); 0 is no limit.
    pub per_key_limit: usize,
    /// Connections in all (handshakes and health checks included); lowered at start if the
    /// descriptor limit cannot hold it next to `fd_reserve`.
    pub global_limit: usize,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted load balancer only).
    pub trust_forwarded_for: bool,
    /// Trusted proxies in front of the fan-out: the client is the entry this many places from
    /// the right of `X-Forwarded-For` (1: the one the nearest proxy appended).
    pub trusted_proxy_hops: usize,
    /// Send brotli Binary frames to every client (clients may also ask with `?compress=brotli`).
    pub compression: bool,
    /// Messages a client may fall behind before it is disconnected.
    pub buffer: usize,
    /// Writer threads; 0 = one per core, at most 4.
    pub writers: usize,
    /// Longest a single send may take.
    pub send_timeout: Duration,
    /// Ping interval to clients.
    pub ping_interval: Duration,
    /// A client silent (no pong, no message) for this long is dropped.
    pub pong_timeout: Duration,
    /// Kernel send buffer per client: bounds memory per subscriber and makes a stalled reader
    /// show up as a blocked send quickly.
    pub socket_send_buffer: usize,
    /// Longest a connection may take from accept to a complete handshake (request head read,
    /// checked and answered).
    pub handshake_timeout: Duration,
    /// Descriptors of the process's `RLIMIT_NOFILE` the fan-out leaves to everything else (the
    /// RPC, health checks, upstream connections, files).
    pub fd_reserve: usize,
    /// Frames the resume ring keeps (at least one).
    pub ring_frames: usize,
    /// Bytes the resume ring keeps (the newest frame is kept whatever its size).
    pub ring_bytes: usize,
}

/// Default of [`FanoutConfig::per_ip_limit`].
pub const DEFAULT_PER_IP_LIMIT: usize = 10;
/// Default of [`FanoutConfig::per_key_limit`]: 0, no limit.
pub const DEFAULT_PER_KEY_LIMIT: usize = 0;
/// Default of [`FanoutConfig::global_limit`].
pub const DEFAULT_GLOBAL_LIMIT: usize = 10_000;
/// Default of [`FanoutConfig::trusted_proxy_hops`].
pub const DEFAULT_TRUSTED_PROXY_HOPS: usize = 1;
/// Default of [`FanoutConfig::buffer`].
pub const DEFAULT_BUFFER: usize = 20;
/// Default of [`FanoutConfig::writers`]: 0, one per core, at most 4.
pub const DEFAULT_WRITERS: usize = 0;
/// Default of [`FanoutConfig::send_timeout`].
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Default of [`FanoutConfig::ping_interval`].
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Default of [`FanoutConfig::pong_timeout`].
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`FanoutConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`FanoutConfig::ring_frames`].
pub const DEFAULT_RING_FRAMES: usize = 64;
/// Default of [`FanoutConfig::ring_bytes`] (32 MiB).
pub const DEFAULT_RING_BYTES: usize = 32 * 1024 * 1024;

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8546).into(),
            api_keys: Vec::new(),
            public: true,
            per_ip_limit: DEFAULT_PER_IP_LIMIT,
            per_key_limit: DEFAULT_PER_KEY_LIMIT,
            global_limit: DEFAULT_GLOBAL_LIMIT,
            trust_forwarded_for: false,
            trusted_proxy_hops: DEFAULT_TRUSTED_PROXY_HOPS,
            compression: false,
            buffer: DEFAULT_BUFFER,
            writers: DEFAULT_WRITERS,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            socket_send_buffer: 256 * 1024,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            fd_reserve: flashnode_fd::DEFAULT_RESERVE,
            ring_frames: DEFAULT_RING_FRAMES,
            ring_bytes: DEFAULT_RING_BYTES,
        }
    }
}

/// Errors starting the fan-out.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The listen address cannot be bound.
    #[error("cannot bind the fan-out on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A writer thread cannot start.
    #[error("cannot start a fan-out writer thread: {source}")]
    Writer {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The descriptor limit leaves no room for connections after the reserve.
    #[error("RLIMIT_NOFILE is {nofile}, which leaves no descriptors for fan-out connections after the {reserve} kept for the rest of the node (--fd-reserve); raise it (ulimit -n)")]
    Descriptors {
        /// The soft descriptor limit.
        nofile: u64,
        /// The descriptors kept for the rest.
        reserve: usize,
    },
}
