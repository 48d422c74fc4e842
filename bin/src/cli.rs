//! Command-line interface.

use crate::presets::ChainName;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::{net::SocketAddr, time::Duration};
use tracing_subscriber::{fmt, EnvFilter};

/// flashnode: flashblock preconfirmations for OP-stack chains.
#[derive(Debug, Parser)]
#[command(name = "flashnode", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// TOML config file: keys are the subcommand's long flag names (`rpc-addr = "0.0.0.0:8545"`).
    /// Precedence: command line > FLASHNODE_* environment > this file > `--chain` preset.
    #[arg(long, global = true, env = "FLASHNODE_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Print the effective settings (after config file, environment and preset) and exit.
    #[arg(long, global = true)]
    pub print_config: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded OP devnet and the flashblock-aware node in one process.
    Dev(DevArgs),
    /// Run the embedded OP devnet alone: canonical RPC plus the flashblock source websocket.
    Devnet(DevnetArgs),
    /// Run the node as a sidecar of an OP execution client and a flashblock stream.
    Node(NodeArgs),
    /// Show a node's mode, tip, flashblock index, stream lag and counters, live.
    Status(StatusArgs),
    /// Relay another flashblock stream to many subscribers: fan-out only (no RPC, no
    /// execution, no state), with resume, limits, filters and compression as the node's.
    Relay(RelayArgs),
}

/// `flashnode status` flags.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The node's RPC URL.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub rpc: String,
    /// Time between samples.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this many samples (runs until interrupted otherwise).
    #[arg(long)]
    pub count: Option<u64>,
}

/// Flags of the flashblock-aware node shared by `node` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct OverlayArgs {
    /// Operator endpoint: Prometheus `/metrics`, `/healthz`, `/readyz`; off when unset.
    #[arg(long, env = "FLASHNODE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// A stream with no frame and no pong within this window is dead (fallback to latest).
    /// Unset, at least 4 flashblock intervals of the chain; 2 or less refuses to start.
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "FLASHNODE_STREAM_SILENCE_TIMEOUT")]
    pub stream_silence_timeout: Duration,
    /// Ping interval on the flashblock stream.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub stream_ping_interval: Duration,
    /// Largest accepted flashblock frame, in bytes.
    #[arg(long, default_value_t = flashnode_overlay::DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// A pending block with no new flashblock for this long is not served. Unset, at least 4
    /// flashblock intervals of the chain; 2 or less refuses to start.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub pending_stale_after: Duration,
    /// How many blocks `pending` may run ahead of the upstream's tip: tip+1 always, further
    /// only chained on blocks streamed before it; frames beyond are rejected (`ahead`).
    #[arg(long, default_value_t = flashnode_overlay::DEFAULT_MAX_PENDING_DEPTH, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=64))]
    pub max_pending_depth: u64,
    /// A canonical tip not advanced for this long makes /readyz answer 503. Unset, at least 3
    /// blocks of the chain; under 3 blocks refuses to start.
    #[arg(long, default_value = "12s", value_parser = parse_duration)]
    pub canonical_stale_after: Duration,
    /// Consecutive blocks with an execution error before /readyz degrades (206), and clean
    /// blocks before it recovers: one bad block does not flip readiness.
    #[arg(long, default_value_t = flashnode_overlay::DEFAULT_READINESS_HYSTERESIS_BLOCKS, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..=1000))]
    pub readiness_hysteresis_blocks: u64,
    /// Unix time (seconds) of the chain's switch to native short blocks (Base's Denim), after
    /// which it has no flashblock stream by design: pending is latest, the stream is closed
    /// and never reconnected, readiness stays 200 and status says `native_blocks`. `never`
    /// turns off a preset's. The base and base-sepolia presets carry Base's published times.
    #[arg(long, value_parser = parse_native_blocks)]
    pub native_blocks_timestamp: Option<NativeBlocksAt>,
    /// Longest wait of eth_sendRawTransactionSync.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub send_raw_sync_max: Duration,
    /// Gas cap of eth_call and eth_estimateGas, and of an eth_simulateV1 in all its calls.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_GAS_CAP)]
    pub rpc_gas_cap: u64,
    /// Wall-clock budget of one request's EVM execution (eth_call, eth_estimateGas,
    /// eth_createAccessList, eth_simulateV1), as geth's --rpc.evmtimeout: past it the call
    /// answers "execution aborted (timeout = ...)".
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rpc_evm_timeout: Duration,
    /// Executions run at once on their own threads (0 = every core but one, so flashblock
    /// ingest keeps a core); 16 more per executor may wait, beyond that calls answer -32005.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_MAX_CONCURRENT_EXECUTIONS)]
    pub rpc_max_concurrent_executions: usize,
    /// Open connections to the RPC port in all, HTTP and websocket; beyond it a connection gets
    /// HTTP 429. Lowered at start, with a warning, when RLIMIT_NOFILE minus --fd-reserve cannot
    /// hold it beside the fan-out's --ws-global-limit.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_MAX_CONNECTIONS)]
    pub rpc_max_connections: u32,
    /// Open connections to the RPC port per client IP (0 = no limit); beyond it a connection
    /// gets HTTP 429.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_PER_IP_CONNECTIONS)]
    pub rpc_per_ip_connections: usize,
    /// Live eth_subscribe subscriptions per client IP on the RPC port (0 = no limit); beyond it
    /// eth_subscribe answers -32005.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_PER_IP_SUBSCRIPTIONS)]
    pub rpc_per_ip_subscriptions: usize,
    /// Most calls in one JSON-RPC batch (geth's BatchRequestLimit; 0 = no limit); a larger
    /// batch answers -32010 naming this flag.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_BATCH_REQUEST_LIMIT)]
    pub rpc_batch_request_limit: usize,
    /// Most bytes of one batch's answer (geth's BatchResponseMaxSize); past it the batch
    /// answers -32011 naming this flag.
    #[arg(long, default_value_t = flashnode_rpc::DEFAULT_BATCH_RESPONSE_MAX_BYTES)]
    pub rpc_batch_response_max_bytes: usize,
    /// Timeout of each request to the upstream RPC: canonical state reads and proxied
    /// methods answer a clear error past it instead of hanging.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "FLASHNODE_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Duration,
    /// Raw flashblock fan-out flags.
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// On SIGINT/SIGTERM (or a critical task's failure), how long the shutdown may take:
    /// in-flight RPC calls finish, then the tasks stop; at the deadline the process exits,
    /// whatever still runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Raw flashblock fan-out flags, shared by `node`, `dev` and `relay` (Base websocket-proxy
/// names are aliases where the proxy has the same setting).
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Fan-out API keys (comma separated), served on /ws/{key}; Base's `<app>:<key>` form is
    /// accepted (the key is what follows the colon).
    #[arg(long, value_delimiter = ',', env = "FLASHNODE_WS_API_KEYS", visible_alias = "api-keys")]
    pub ws_api_keys: Vec<String>,
    /// Close the public /ws path (keys only).
    #[arg(long)]
    pub ws_close_public: bool,
    /// Fan-out connections per client IP.
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_PER_IP_LIMIT, visible_aliases = ["per-ip-connection-limit", "per-ip-connections-limit"])]
    pub ws_per_ip_limit: usize,
    /// Fan-out subscribers per API key (`/ws/{key}`); 0 = no limit. Beyond it, HTTP 429.
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_PER_KEY_LIMIT)]
    pub ws_per_key_limit: usize,
    /// Fan-out connections in all.
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_GLOBAL_LIMIT, visible_aliases = ["instance-connection-limit", "global-connections-limit"])]
    pub ws_global_limit: usize,
    /// Take fan-out client IPs from X-Forwarded-For (only behind a trusted load balancer).
    #[arg(long)]
    pub ws_trust_forwarded_for: bool,
    /// With --ws-trust-forwarded-for: trusted proxies in front of the fan-out. The client is
    /// the X-Forwarded-For entry this many places from the right (1: the one the nearest proxy
    /// appended); entries left of it are the client's own and are ignored.
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_TRUSTED_PROXY_HOPS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16))]
    pub ws_trusted_proxy_hops: usize,
    /// Longest a fan-out connection may take from accept to a complete websocket handshake.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ws_handshake_timeout: Duration,
    /// File descriptors kept for health checks, the upstream, gossip and the node's files:
    /// client connections (--ws-global-limit, and the node's --rpc-max-connections) are lowered
    /// at start, with a warning, to share RLIMIT_NOFILE minus this.
    #[arg(long, default_value_t = flashnode_fd::DEFAULT_RESERVE, visible_alias = "ws-fd-reserve")]
    pub fd_reserve: usize,
    /// Send brotli Binary frames to every fan-out client.
    #[arg(long, visible_alias = "enable-compression")]
    pub ws_compression: bool,
    /// Messages a fan-out client may lag behind before it is disconnected.
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_BUFFER, visible_alias = "message-buffer-size")]
    pub ws_buffer: usize,
    /// Fan-out writer threads (each writes every flashblock to its share of the subscribers);
    /// 0 = one per core, at most 4; at most 64.
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_WRITERS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=64))]
    pub ws_writers: usize,
    /// Interval between the fan-out's pings to each client.
    #[arg(long, default_value = "15s", value_parser = parse_duration, visible_alias = "client-ping-interval-ms")]
    pub ws_ping_interval: Duration,
    /// A fan-out client silent (no pong, no message) for this long is dropped.
    #[arg(long, default_value = "30s", value_parser = parse_duration, visible_alias = "client-pong-timeout-ms")]
    pub ws_pong_timeout: Duration,
    /// Longest a fan-out client's socket may take no bytes before it is dropped as slow.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub ws_send_timeout: Duration,
    /// Frames the fan-out's resume ring keeps for `/ws?from=<block>-<index>` (a few blocks).
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_RING_FRAMES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub ws_ring_frames: usize,
    /// Bytes the fan-out's resume ring keeps (the newest frame is kept whatever its size).
    #[arg(long, default_value_t = flashnode_fanout::DEFAULT_RING_BYTES)]
    pub ws_ring_bytes: usize,
}

/// `flashnode relay` flags: a fan-out tier fed by another stream.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Flashblock websocket to relay: a builder, rollup-boost, Base's websocket proxy, another
    /// flashnode's `/ws` or another relay.
    #[arg(long, visible_aliases = ["upstream-ws", "websocket-url"], env = "FLASHNODE_FLASHBLOCKS_URL")]
    pub flashblocks_url: String,
    /// Fan-out listen address (path /ws).
    #[arg(
        long,
        default_value = "127.0.0.1:8546",
        visible_alias = "listen-addr",
        env = "FLASHNODE_FLASHBLOCKS_ADDR"
    )]
    pub flashblocks_addr: SocketAddr,
    /// Operator endpoint: Prometheus `/metrics`, `/healthz`, `/readyz` (200 while the upstream
    /// is connected and its last frame is fresh); off when unset.
    #[arg(long, env = "FLASHNODE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Ping interval on the upstream stream.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, visible_alias = "subscriber-ping-interval-ms")]
    pub stream_ping_interval: Duration,
    /// The upstream is dead when neither a frame nor a pong arrived within this window.
    #[arg(long, default_value = "2s", value_parser = parse_duration, visible_alias = "subscriber-pong-timeout-ms")]
    pub stream_silence_timeout: Duration,
    /// Largest reconnect delay to the upstream (jittered exponential backoff from 10 ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration, visible_alias = "subscriber-max-interval-ms")]
    pub stream_backoff_max: Duration,
    /// Largest accepted flashblock frame, in bytes.
    #[arg(long, default_value_t = flashnode_overlay::DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// `/readyz` answers 503 when the upstream's last frame is older than this.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ready_stale_after: Duration,
    /// On SIGINT/SIGTERM, how long the shutdown may take (subscribers get a 1001 close).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Fan-out flags.
    #[command(flatten)]
    pub fanout: FanoutArgs,
}

/// `flashnode node` flags.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Chain preset: chain id check, hardfork schedule, unsafe-block signer, bootnodes and the
    /// public flashblock stream where there is one. Without it the chain is recognised by the
    /// upstream's chain id; an id with no preset needs --chain-config (the devnet's 901 runs at
    /// Isthmus).
    #[arg(long, value_enum, env = "FLASHNODE_CHAIN")]
    pub chain: Option<ChainName>,
    /// Any OP Stack chain from its superchain-registry config
    /// (`superchain/configs/<network>/<chain>.toml`: `chain_id`, `[hardforks]` `*_time`,
    /// `[optimism]` EIP-1559 parameters); give --p2p-sequencer-address for gossip and
    /// --flashblocks-url for its stream.
    #[arg(long, value_name = "FILE", conflicts_with = "chain")]
    pub chain_config: Option<std::path::PathBuf>,
    /// The op-node beside the execution client (its RPC URL): the chain's fork schedule,
    /// EIP-1559 parameters and block time come from its optimism_rollupConfig, as for
    /// --chain-config.
    #[arg(long, value_name = "URL", conflicts_with_all = ["chain", "chain_config"])]
    pub rollup_config_rpc: Option<String>,
    /// Flashblock websocket to consume (builder, rollup-boost or Base's websocket proxy);
    /// `--chain base` and `base-sepolia` supply Base's public stream. Optional with p2p
    /// (`--p2p-sequencer-address`): the node then follows sealed blocks from gossip.
    #[arg(long, visible_alias = "websocket-url", env = "FLASHNODE_FLASHBLOCKS_URL")]
    pub flashblocks_url: Option<String>,
    /// JSON-RPC of the OP execution client (HTTP or WS): canonical state and proxied methods.
    #[arg(long, env = "FLASHNODE_UPSTREAM_RPC")]
    pub upstream_rpc: String,
    /// Flashblock-aware JSON-RPC listen address (HTTP and WS).
    #[arg(long, default_value = "127.0.0.1:8545", env = "FLASHNODE_RPC_ADDR")]
    pub rpc_addr: SocketAddr,
    /// Raw flashblock fan-out listen address (path /ws), Base websocket-proxy compatible.
    #[arg(long, default_value = "127.0.0.1:8546", env = "FLASHNODE_FLASHBLOCKS_ADDR")]
    pub flashblocks_addr: SocketAddr,
    /// How often the upstream is polled for new heads.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub upstream_poll_interval: Duration,
    /// Use each new block's state diff (from reth's chain notifications over a ws:// upstream,
    /// else debug_traceBlockByHash with the prestate tracer in diff mode, else reth's
    /// reth_getBlockExecutionOutcome), so state read at one block is reused at later blocks
    /// that did not touch it; `false` reads state afresh at every block (a method the upstream
    /// refuses is detected and not asked again).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub upstream_state_diffs: bool,
    /// Node flags.
    #[command(flatten)]
    pub overlay: OverlayArgs,
    /// Consensus-layer p2p flags.
    #[command(flatten)]
    pub p2p: P2pArgs,
}

/// Consensus-layer p2p flags of `node` and `devnet` (block gossip, see the gossip crate).
///
/// A node joins the p2p network when it knows whose blocks to accept
/// (`--p2p-sequencer-address`); a devnet publishes when given `--p2p-addr`.
#[derive(Debug, Clone, Args)]
pub struct P2pArgs {
    /// Turn the p2p host off.
    #[arg(long = "p2p-disable", env = "FLASHNODE_P2P_DISABLE")]
    pub disable: bool,
    /// TCP listen address of the p2p host (node default 0.0.0.0:9222, like op-node).
    #[arg(long = "p2p-addr", env = "FLASHNODE_P2P_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Static peers (multiaddrs ending in /p2p/<peer id>, or `enr:` records, comma separated): always connected,
    /// redialled with backoff.
    #[arg(long = "p2p-static", value_delimiter = ',', env = "FLASHNODE_P2P_STATIC")]
    pub static_peers: Vec<String>,
    /// Bootnodes (multiaddrs or `enr:` records, comma separated), dialled over TCP at start-up;
    /// `enr:` records also seed discv5 discovery.
    #[arg(long = "p2p-bootnodes", value_delimiter = ',', env = "FLASHNODE_P2P_BOOTNODES")]
    pub bootnodes: Vec<String>,
    /// The chain's unsafe-block signer address (op-node takes it from the rollup config's
    /// `unsafe_block_signer`); the devnet signs with its own dev key.
    #[arg(long = "p2p-sequencer-address", env = "FLASHNODE_P2P_SEQUENCER_ADDRESS")]
    pub sequencer_address: Option<alloy_primitives::Address>,
    /// Node key file (hex secp256k1, created 0600 when missing); default
    /// `<p2p-data-dir>/opnode_p2p_priv.txt`, or an ephemeral key without a data dir.
    #[arg(long = "p2p-key-path", env = "FLASHNODE_P2P_KEY_PATH")]
    pub key_path: Option<std::path::PathBuf>,
    /// Directory for the node key and the durable p2p store (`p2p.redb`: recent blocks served
    /// to alt-sync, bans); without it the store lives in memory.
    #[arg(long = "p2p-data-dir", env = "FLASHNODE_P2P_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Turn discv5 node discovery (UDP) off; only static peers and bootnodes are dialled.
    #[arg(long = "p2p-no-discovery", env = "FLASHNODE_P2P_NO_DISCOVERY")]
    pub no_discovery: bool,
    /// UDP listen address of discv5 discovery (default: the IP and port of `--p2p-addr`, like
    /// op-node's 9222/udp).
    #[arg(long = "p2p-discovery-addr", env = "FLASHNODE_P2P_DISCOVERY_ADDR")]
    pub discovery_addr: Option<SocketAddr>,
    /// IP address advertised in the node's ENR (default: the listen IP unless 0.0.0.0, then
    /// learned from peers).
    #[arg(long = "p2p-advertise-ip", env = "FLASHNODE_P2P_ADVERTISE_IP")]
    pub advertise_ip: Option<std::net::IpAddr>,
    /// Pause between discv5 lookups while the node is below its peer high-water mark.
    #[arg(long = "p2p-discovery-interval", default_value = "5s", value_parser = parse_duration)]
    pub discovery_interval: Duration,
    /// How long a peer whose score falls below -100 stays banned (op-node: 1 h); also the
    /// default expiry of `opp2p_blockPeer`, `opp2p_blockAddr` and `opp2p_blockSubnet`.
    #[arg(long = "p2p-ban-duration", default_value = "60m", value_parser = parse_duration)]
    pub ban_duration: Duration,
    /// Message-id function: op-node's (with the topic) or the spec's / kona's.
    #[arg(long = "p2p-message-id", value_enum, default_value_t = MessageIdArg::OpNode)]
    pub message_id: MessageIdArg,
}

/// `--p2p-message-id` values.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum MessageIdArg {
    /// op-node: SHA-256 over domain, topic and data.
    #[default]
    OpNode,
    /// Spec and kona: SHA-256 over domain and data.
    Spec,
}

/// `flashnode dev` flags: the devnet's, the node's, and where the devnet's own RPC goes.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Devnet flags (`--rpc-addr` is the node's flashblock-aware RPC in `dev`).
    #[command(flatten)]
    pub devnet: DevnetArgs,
    /// Where the devnet's canonical RPC listens (the node's upstream); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub devnet_rpc_addr: SocketAddr,
    /// Where the devnet's own flashblock source websocket listens (the node consumes it;
    /// `--flashblocks-addr` is the node's fan-out of accepted flashblocks).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub devnet_flashblocks_addr: SocketAddr,
    /// Node flags.
    #[command(flatten)]
    pub overlay: OverlayArgs,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging flags; per-component levels come from `RUST_LOG`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Pretty, env = "FLASHNODE_LOG_FORMAT")]
    pub format: LogFormat,
}

/// Devnet flags.
#[derive(Debug, Clone, Args)]
pub struct DevnetArgs {
    /// JSON-RPC listen address (HTTP and WS): the chain's canonical RPC for `devnet`, the
    /// flashblock-aware node's RPC for `dev` (the chain's own goes to `--devnet-rpc-addr`).
    #[arg(long, default_value = "127.0.0.1:8545", env = "FLASHNODE_RPC_ADDR")]
    pub rpc_addr: SocketAddr,
    /// Flashblock websocket listen address (path /ws): the chain's stream for `devnet`, the
    /// node's fan-out for `dev` (the chain's own goes to `--devnet-flashblocks-addr`).
    #[arg(long, default_value = "127.0.0.1:8546", env = "FLASHNODE_FLASHBLOCKS_ADDR")]
    pub flashblocks_addr: SocketAddr,
    /// Chain id.
    #[arg(long, default_value_t = flashnode_devnet::DEFAULT_CHAIN_ID, env = "FLASHNODE_CHAIN_ID")]
    pub chain_id: u64,
    /// Block time, e.g. `2s` or `500ms`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Time between flashblocks, e.g. `200ms` (`250ms` with `--block-time 2s` is OP Mainnet's
    /// 8 Subblocks per block, `200ms` with `--block-time 1s` Unichain's 5).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub flashblock_interval: Duration,
    /// Publish each flashblock but a block's last up to this much before or after its slot
    /// (the Subblocks interval is a target, not a guarantee); at most half the interval.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub flashblock_jitter: Duration,
    /// Block gas limit.
    #[arg(long, default_value_t = 30_000_000)]
    pub gas_limit: u64,
    /// Send flashblocks as brotli-compressed Binary frames instead of Text JSON.
    #[arg(long)]
    pub flashblocks_brotli: bool,
    /// Stream the Subblocks shape (OP Stack subblocks spec): diff.state_root, diff.block_hash
    /// and diff.withdrawals_root zero, diff.withdrawals empty. The node never uses those four.
    #[arg(long)]
    pub subblocks: bool,
    /// Add a Lagoon diff.post_exec_tx (type 0x7D, zero SDM refunds) to every flashblock after
    /// index 0 (only streamed, not sealed). A node answers such a block's pending as latest.
    #[arg(long)]
    pub post_exec_tx: bool,
    /// Serve reth's `reth` namespace as op-reth does with `--ws.api …,reth`:
    /// reth_subscribeChainNotifications (each sealed block with its execution outcome) and
    /// reth_getBlockExecutionOutcome. `false` answers them -32601 (an op-geth-like upstream).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reth_namespace: bool,
    /// Consensus-layer p2p flags (the devnet signs and publishes its blocks).
    #[command(flatten)]
    pub p2p: P2pArgs,
}

/// When the chain switches to native short blocks (`--native-blocks-timestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeBlocksAt {
    /// Not on this chain (turns a preset's cutover off).
    Never,
    /// At this unix time (seconds).
    At(u64),
}

impl NativeBlocksAt {
    /// The unix time, if any.
    pub fn timestamp(self) -> Option<u64> {
        match self {
            Self::Never => None,
            Self::At(t) => Some(t),
        }
    }
}

/// Parses a unix time in seconds, or `never`.
pub fn parse_native_blocks(s: &str) -> Result<NativeBlocksAt, String> {
    match s.trim() {
        "never" => Ok(NativeBlocksAt::Never),
        t => t.parse().map(NativeBlocksAt::At).map_err(|_| {
            format!("`{s}` is not a unix time in seconds (or `never`), e.g. 1793901600")
        }),
    }
}

/// Parses `2s`, `200ms`, `1.5s` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let value: f64 =
        num.parse().map_err(|_| format!("`{s}` is not a duration (try 2s or 200ms)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use ms, s or m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Installs the tracing subscriber: `RUST_LOG` levels (default info), pretty or JSON lines.
pub fn init_tracing(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = match args.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    res.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("150").unwrap(), Duration::from_millis(150));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("abc").is_err());
    }

    /// Duration flags whose default the owning crate defines: the flag's text says the same.
    #[test]
    fn duration_defaults_agree_with_their_crates() {
        let cmd = <Cli as clap::CommandFactory>::command();
        let node = cmd.find_subcommand("node").expect("node");
        let default_of = |id: &str| {
            let arg = node.get_arguments().find(|a| a.get_id() == id).expect("flag");
            let text = arg.get_default_values()[0].to_str().expect("utf-8").to_string();
            parse_duration(&text).expect("a duration")
        };
        assert_eq!(default_of("upstream_timeout"), flashnode_overlay::DEFAULT_REQUEST_TIMEOUT);
    }

    /// Every flag's default is its crate's: each component's settings from a command line that
    /// gives only the required flags equal that component's `Default` (or its `DEFAULT_*`).
    #[test]
    fn defaults_agree_with_their_crates() {
        let upstream = "http://127.0.0.1:1";
        let cli = Cli::try_parse_from(["flashnode", "node", "--upstream-rpc", upstream])
            .expect("node parses");
        let Command::Node(node) = cli.command else { panic!("not node: {:?}", cli.command) };
        let debug = |c: &dyn std::fmt::Debug| format!("{c:?}");
        assert_eq!(
            debug(&node.overlay.rpc_config(node.rpc_addr)),
            debug(&flashnode_rpc::RpcConfig::default())
        );
        assert_eq!(
            debug(&node.overlay.fanout.config(node.flashblocks_addr)),
            debug(&flashnode_fanout::FanoutConfig::default())
        );
        assert_eq!(
            node.overlay.stream_config("ws://127.0.0.1:1/ws".into()),
            flashnode_overlay::StreamConfig::new("ws://127.0.0.1:1/ws")
        );
        assert_eq!(
            debug(&node.upstream_config()),
            debug(&flashnode_overlay::UpstreamConfig {
                url: upstream.into(),
                ..Default::default()
            })
        );
        assert_eq!(node.overlay.max_pending_depth, flashnode_overlay::DEFAULT_MAX_PENDING_DEPTH);
        assert_eq!(
            node.overlay.readiness_hysteresis_blocks,
            flashnode_overlay::DEFAULT_READINESS_HYSTERESIS_BLOCKS
        );
        assert_eq!(node.overlay.fanout.fd_reserve, flashnode_fd::DEFAULT_RESERVE);
        assert_eq!(node.p2p.ban_duration, flashnode_gossip::DEFAULT_BAN_DURATION);
        assert_eq!(node.p2p.discovery_interval, flashnode_gossip::DEFAULT_DISCOVERY_INTERVAL);

        let cli = Cli::try_parse_from(["flashnode", "relay", "--flashblocks-url", "ws://h/ws"])
            .expect("relay parses");
        let Command::Relay(relay) = cli.command else { panic!("not relay: {:?}", cli.command) };
        assert_eq!(
            debug(&relay.fanout.config(relay.flashblocks_addr)),
            debug(&flashnode_fanout::FanoutConfig::default())
        );
        // The relay's silence window is its own default (2 s), not the stream client's.
        assert_eq!(
            relay.upstream_config(),
            flashnode_fanout::UpstreamConfig {
                silence_timeout: Duration::from_secs(2),
                ..flashnode_fanout::UpstreamConfig::new("ws://h/ws")
            }
        );
    }

    #[test]
    fn parses_native_block_times() {
        assert_eq!(parse_native_blocks("1793901600"), Ok(NativeBlocksAt::At(1_793_901_600)));
        assert_eq!(parse_native_blocks("never"), Ok(NativeBlocksAt::Never));
        assert!(parse_native_blocks("tomorrow").unwrap_err().contains("unix time"));
        assert_eq!(NativeBlocksAt::Never.timestamp(), None);
    }
}
