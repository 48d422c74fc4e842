//! Flashblock-aware JSON-RPC (HTTP and WS on one port). Reads only overlay snapshots and the
//! canonical state source; every method it does not answer itself is proxied to the upstream
//! execution client unchanged. Knows nothing of libp2p or of how flashblocks arrive.

pub mod p2p;
mod pending;
mod proxy;
pub mod rpc_metrics;
mod subscriptions;

pub use proxy::{Upstream, UpstreamError};

use flashnode_overlay::Overlay;
use jsonrpsee::server::{
    middleware::rpc::RpcServiceBuilder, RpcModule, Server, ServerConfig, ServerHandle,
};
use std::{collections::HashSet, net::SocketAddr, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// RPC settings.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Listen address (HTTP and WS).
    pub addr: SocketAddr,
    /// Most time `eth_sendRawTransactionSync` waits (Base caps it at 6 s).
    pub send_raw_sync_max: Duration,
    /// Highest gas an `eth_call` / `eth_estimateGas` may use.
    pub gas_cap: u64,
    /// Connection limit.
    pub max_connections: u32,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8545).into(),
            send_raw_sync_max: Duration::from_millis(6_000),
            gas_cap: 50_000_000,
            max_connections: 10_000,
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Could not bind.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What every method reads.
#[derive(Debug, Clone)]
pub struct RpcContext {
    /// The overlay's snapshots and status.
    pub overlay: Overlay,
    /// The upstream execution client.
    pub upstream: Upstream,
    /// Settings.
    pub config: RpcConfig,
    /// The p2p host's counters for `flashnode_status` (None when p2p is off).
    pub gossip: Option<std::sync::Arc<dyn p2p::GossipStatusSource>>,
}

/// A running RPC server.
#[derive(Debug)]
pub struct RunningRpc {
    /// The bound address.
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl RunningRpc {
    /// Resolves once the server has stopped (after `cancel`) and every connection's in-flight
    /// calls are answered: jsonrpsee stops accepting, then lets open connections finish.
    /// Returns false if `deadline` passed first.
    pub async fn drained(self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, self.handle.stopped()).await.is_ok()
    }
}

/// Binds and serves until `cancel` (then stops accepting and drains, see
/// [`RunningRpc::drained`]).
pub async fn serve(ctx: RpcContext, cancel: CancellationToken) -> Result<RunningRpc, RpcError> {
    let addr = ctx.config.addr;
    let server_config = ServerConfig::builder()
        .max_request_body_size(16 * 1024 * 1024)
        .max_response_body_size(64 * 1024 * 1024)
        .max_connections(ctx.config.max_connections)
        .set_id_provider(HexIdProvider::default())
        .build();
    let module = module(ctx);
    let known: Arc<HashSet<&'static str>> = Arc::new(module.method_names().collect());
    rpc_metrics::describe();
    let middleware = RpcServiceBuilder::new()
        .layer_fn(move |service| rpc_metrics::RpcMetrics::new(service, known.clone()));
    let server = Server::builder()
        .set_config(server_config)
        .set_rpc_middleware(middleware)
        .build(addr)
        .await
        .map_err(|source| RpcError::Bind { addr, source })?;
    let local = server.local_addr().map_err(|source| RpcError::Bind { addr, source })?;
    let handle = server.start(module);
    info!(addr = %local, "flashblock-aware RPC listening on http://{local} and ws://{local}");
    let stopper = handle.clone();
    tokio::spawn(async move {
        cancel.cancelled().await;
        let _ = stopper.stop();
    });
    Ok(RunningRpc { addr: local, handle })
}

/// Subscription ids as Ethereum clients expect them: `0x`-prefixed hex strings.
#[derive(Debug)]
struct HexIdProvider {
    seed: u64,
    next: std::sync::atomic::AtomicU64,
}

impl Default for HexIdProvider {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        Self { seed: h.finish(), next: Default::default() }
    }
}

impl jsonrpsee::server::IdProvider for HexIdProvider {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Unpredictable across processes, unique within one.
        let id = (self.seed.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as u128
            | ((n as u128) << 64);
        jsonrpsee::types::SubscriptionId::Str(format!("0x{id:032x}").into())
    }
}

/// All methods: flashblock-aware ones, then the proxied rest.
pub fn module(ctx: RpcContext) -> RpcModule<RpcContext> {
    let mut m = RpcModule::new(ctx);
    pending::register(&mut m);
    subscriptions::register(&mut m);
    p2p::register(&mut m);
    proxy::register(&mut m);
    m
}
