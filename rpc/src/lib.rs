//! Flashblock-aware JSON-RPC (HTTP and WS on one port). Reads only overlay snapshots and the
//! canonical state source; every method it does not answer itself is proxied to the upstream
//! execution client unchanged. Knows nothing of libp2p or of how flashblocks arrive.

pub mod api;
pub mod error;
pub mod executor;
mod invalid_id;
pub mod limits;
mod middleware;
pub mod p2p;
mod pending;
mod proxy;
pub mod rpc_metrics;
mod subscriptions;

pub use error::{code, RpcError};
pub use proxy::{Upstream, UpstreamError, PROXIED};

use crate::{
    api::{EthApiServer, EthPubSubApiServer, FlashnodeApiServer, OpApiServer},
    executor::Executor,
    invalid_id::{InvalidIds, Tapped},
    limits::PerIp,
};
use flashnode_overlay::Overlay;
use flashnode_tasks::TaskExecutor;
use jsonrpsee::server::{
    middleware::rpc::RpcServiceBuilder, serve_with_graceful_shutdown, stop_channel, HttpBody,
    Methods, RpcModule, Server, ServerConfig, ServerHandle,
};
use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// Largest request body.
const MAX_REQUEST_BYTES: u32 = 16 * 1024 * 1024;
/// Largest response body.
const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;

/// Default of [`RpcConfig::batch_request_limit`] (geth's `BatchRequestLimit`).
pub const DEFAULT_BATCH_REQUEST_LIMIT: usize = 1_000;

/// Default of [`RpcConfig::batch_response_max_bytes`] (geth's `BatchResponseMaxSize`).
pub const DEFAULT_BATCH_RESPONSE_MAX_BYTES: usize = 25_000_000;
/// Connections the RPC port holds at once, unless configured otherwise (geth has no such cap;
/// jsonrpsee's default is 100, too few for a public endpoint's keep-alive pools).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Default of [`RpcConfig::send_raw_sync_max`] (Base caps `eth_sendRawTransactionSync` at 6 s).
pub const DEFAULT_SEND_RAW_SYNC_MAX: Duration = Duration::from_secs(6);
/// Default of [`RpcConfig::gas_cap`].
pub const DEFAULT_GAS_CAP: u64 = 50_000_000;
/// Default of [`RpcConfig::per_ip_connections`].
pub const DEFAULT_PER_IP_CONNECTIONS: usize = 100;
/// Default of [`RpcConfig::per_ip_subscriptions`].
pub const DEFAULT_PER_IP_SUBSCRIPTIONS: usize = 1_000;
/// Default of [`RpcConfig::evm_timeout`] (geth's `--rpc.evmtimeout`).
pub const DEFAULT_EVM_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`RpcConfig::max_concurrent_executions`]: 0, every core but one.
pub const DEFAULT_MAX_CONCURRENT_EXECUTIONS: usize = 0;
/// Request bodies up to this size are checked for an `id` that is not a JSON-RPC id (bigger
/// ones go to jsonrpsee as they are).
const ID_CHECK_MAX_BYTES: u64 = 64 * 1024;

/// RPC settings.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Listen address (HTTP and WS).
    pub addr: SocketAddr,
    /// Most time `eth_sendRawTransactionSync` waits (Base caps it at 6 s).
    pub send_raw_sync_max: Duration,
    /// Highest gas an `eth_call` / `eth_estimateGas` may use, and an `eth_simulateV1` in all
    /// its calls.
    pub gas_cap: u64,
    /// Connection limit.
    pub max_connections: u32,
    /// Open connections one client IP may hold (0: no limit).
    pub per_ip_connections: usize,
    /// Live websocket subscriptions one client IP may hold (0: no limit).
    pub per_ip_subscriptions: usize,
    /// Wall-clock budget of one request's execution (geth's `--rpc.evmtimeout`).
    pub evm_timeout: Duration,
    /// Executions run at once (0: every core but one).
    pub max_concurrent_executions: usize,
    /// Most calls in one JSON-RPC batch (geth's `BatchRequestLimit`, 1,000; 0: no limit).
    pub batch_request_limit: usize,
    /// Most bytes of one batch's answer (geth's `BatchResponseMaxSize`, 25 MB).
    pub batch_response_max_bytes: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8545).into(),
            send_raw_sync_max: DEFAULT_SEND_RAW_SYNC_MAX,
            gas_cap: DEFAULT_GAS_CAP,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            per_ip_connections: DEFAULT_PER_IP_CONNECTIONS,
            per_ip_subscriptions: DEFAULT_PER_IP_SUBSCRIPTIONS,
            evm_timeout: DEFAULT_EVM_TIMEOUT,
            max_concurrent_executions: DEFAULT_MAX_CONCURRENT_EXECUTIONS,
            batch_request_limit: DEFAULT_BATCH_REQUEST_LIMIT,
            batch_response_max_bytes: DEFAULT_BATCH_RESPONSE_MAX_BYTES,
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
    /// calls are answered: the accept loop stops, then open connections finish. Returns false
    /// if `deadline` passed first.
    pub async fn drained(self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, self.handle.stopped()).await.is_ok()
    }
}

/// Binds and serves until `cancel` (then stops accepting and drains, see
/// [`RunningRpc::drained`]). Connections are counted from accept, per client IP and in all;
/// one beyond a limit gets an HTTP 429 naming the limit and is closed. The accept loop is a
/// critical task of `tasks` named `rpc`: it ending before `cancel` is a failure.
pub async fn serve(
    ctx: RpcContext,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Result<RunningRpc, ServeError> {
    let addr = ctx.config.addr;
    let listener =
        TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
    let server_config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(ctx.config.max_connections)
        .set_id_provider(HexIdProvider::default())
        .build();
    let limits = Limits {
        total: Arc::new(Semaphore::new(ctx.config.max_connections as usize)),
        max_total: ctx.config.max_connections as usize,
        per_ip: PerIp::new(ctx.config.per_ip_connections),
    };
    let batches = middleware::BatchLimits {
        max_calls: ctx.config.batch_request_limit,
        max_response_bytes: ctx.config.batch_response_max_bytes.min(MAX_RESPONSE_BYTES as usize),
        execution_budget: ctx.config.evm_timeout,
    };
    let module = module(ctx);
    let known: Arc<HashSet<&'static str>> = Arc::new(module.method_names().collect());
    rpc_metrics::describe();
    let methods: Methods = module.into();
    let builder = Server::builder().set_config(server_config).to_service_builder();
    let (stop, handle) = stop_channel();
    let stopper = handle.clone();
    let accept = async move {
        let (mut accept_failures, mut last_warned) = (0u64, None);
        loop {
            let (socket, remote) = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = stopper.stop();
                    break;
                }
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of fds or similar: back off instead of spinning, and say so once
                        // per 5 s with what was suppressed (a descriptor flood would otherwise
                        // write thousands of lines).
                        metrics::counter!(limits::RPC_ACCEPT_ERRORS_TOTAL).increment(1);
                        accept_failures += 1;
                        if last_warned.is_none_or(|t: Instant| t.elapsed() >= ACCEPT_WARN_EVERY) {
                            warn!(err = %e, failures = accept_failures, "RPC accept failed");
                            last_warned = Some(Instant::now());
                            accept_failures = 0;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let ip = remote.ip().to_canonical();
            let permits = match limits.admit(ip) {
                Ok(p) => p,
                Err(why) => {
                    metrics::counter!(limits::RPC_LIMITED_TOTAL, "what" => why.label())
                        .increment(1);
                    debug!(%remote, reason = why.label(), "RPC connection refused");
                    tokio::spawn(refuse(socket, why.message(&limits, ip)));
                    continue;
                }
            };
            let known = known.clone();
            // Requests with an id jsonrpsee cannot answer to, noted for the middleware.
            let ids = Arc::new(InvalidIds::default());
            let noted = ids.clone();
            let middleware = RpcServiceBuilder::new().layer_fn(move |service| {
                let service =
                    middleware::Connection::new(service, Some(ip), batches, noted.clone());
                rpc_metrics::RpcMetrics::new(service, known.clone())
            });
            let service =
                builder.clone().set_rpc_middleware(middleware).build(methods.clone(), stop.clone());
            let noted = ids.clone();
            let service =
                tower::service_fn(move |req| checked(service.clone(), noted.clone(), req));
            // The permits live as long as the socket, not the HTTP connection: an upgraded
            // websocket outlives the HTTP connection future and owns the socket until it closes.
            let socket = Tapped::new(Permitted { io: socket, _permits: permits }, ids);
            let stopped = stop.clone().shutdown();
            tokio::spawn(
                async move {
                    if let Err(e) = serve_with_graceful_shutdown(socket, service, stopped).await {
                        debug!(err = %e, "RPC connection ended");
                    }
                }
                .instrument(tracing::debug_span!("rpc_conn", %remote)),
            );
        }
        // Dropping the last stop handle outside the connections lets `drained` resolve once
        // they end.
        drop(stop);
    };
    tasks
        .spawn_critical("rpc", accept.instrument(tracing::info_span!("rpc_accept", addr = %local)));
    info!(addr = %local, "flashblock-aware RPC listening on http://{local} and ws://{local}");
    Ok(RunningRpc { addr: local, handle })
}

/// The connection limits of the port.
struct Limits {
    total: Arc<Semaphore>,
    max_total: usize,
    per_ip: Arc<PerIp>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    PerIp,
    Total,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::PerIp => "per_ip_connections",
            Self::Total => "connections",
        }
    }

    fn message(self, limits: &Limits, ip: IpAddr) -> String {
        match self {
            Self::PerIp => format!(
                "too many connections from {ip}: at most {} per IP (--rpc-per-ip-connections)",
                limits.per_ip.limit()
            ),
            Self::Total => format!(
                "the server is at its limit of {} connections (--rpc-max-connections); retry later",
                limits.max_total
            ),
        }
    }
}

/// What a connection holds while it is open.
struct ConnectionPermits {
    _total: tokio::sync::OwnedSemaphorePermit,
    _per_ip: limits::IpPermit,
}

/// How often a failing accept is logged at most.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(5);

/// A socket with the connection permits it holds: they are released when the socket is
/// dropped, whichever of HTTP or an upgraded websocket owns it last.
struct Permitted<IO> {
    io: IO,
    _permits: ConnectionPermits,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Permitted<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Permitted<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Limits {
    fn admit(&self, ip: IpAddr) -> Result<ConnectionPermits, Refusal> {
        let per_ip = self.per_ip.try_acquire(ip).ok_or(Refusal::PerIp)?;
        let total = self.total.clone().try_acquire_owned().map_err(|_| Refusal::Total)?;
        Ok(ConnectionPermits { _total: total, _per_ip: per_ip })
    }
}

/// Answers a refused connection with an HTTP 429 and closes it (bounded in time, so a flood
/// of refused sockets cannot pile up).
async fn refuse(mut socket: TcpStream, why: String) {
    let body = format!("{why}\n");
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        socket.write_all(response.as_bytes()).await?;
        socket.shutdown().await?;
        // Drain what the client sent, so closing does not reset the connection before it has
        // read the answer.
        let mut buf = [0u8; 4096];
        while socket.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A request whose `id` is not a string, an unsigned integer or null is answered -32600 here:
/// jsonrpsee would read it as a notification and answer nothing (the literal body `null`). In
/// a batch such entries are noted in `ids` for the middleware to answer in their place.
async fn checked<S>(
    mut service: S,
    ids: Arc<InvalidIds>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<HttpBody>, jsonrpsee::core::BoxError>
where
    S: tower::Service<
        http::Request<HttpBody>,
        Response = http::Response<HttpBody>,
        Error = jsonrpsee::core::BoxError,
    >,
{
    use http_body_util::BodyExt;
    let small = req.method() == http::Method::POST
        && http_body::Body::size_hint(req.body()).upper().is_some_and(|n| n <= ID_CHECK_MAX_BYTES);
    if !small {
        return service.call(req.map(HttpBody::new)).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    if invalid_id::single_is_invalid(&bytes) {
        metrics::counter!(rpc_metrics::RPC_REQUESTS_TOTAL, "method" => "invalid", "outcome" => "error")
            .increment(1);
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": code::INVALID_REQUEST, "message": invalid_id::MESSAGE },
        });
        let mut response = http::Response::new(HttpBody::from(body.to_string()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
        return Ok(response);
    }
    let batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let noted = if batch { invalid_id::batch_entries(&bytes) } else { Vec::new() };
    ids.add(&noted);
    let response =
        service.call(http::Request::from_parts(parts, HttpBody::from(bytes.to_vec()))).await;
    ids.forget(&noted);
    response
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

/// All methods: the typed API ([`api`]), the `opp2p_` admin namespace, then the allowlist of
/// methods passed to the upstream unchanged ([`PROXIED`]).
pub fn module(ctx: RpcContext) -> RpcModule<RpcContext> {
    let executor = Executor::new(
        match ctx.config.max_concurrent_executions {
            0 => Executor::default_size(),
            n => n,
        },
        ctx.config.evm_timeout,
    );
    let api = pending::PendingApi::new(ctx.clone(), executor);
    let pubsub =
        subscriptions::PubSub::new(ctx.clone(), PerIp::new(ctx.config.per_ip_subscriptions));
    let mut m = RpcModule::new(ctx);
    let typed: [Methods; 4] = [
        EthApiServer::into_rpc(api.clone()).into(),
        OpApiServer::into_rpc(api.clone()).into(),
        FlashnodeApiServer::into_rpc(api).into(),
        EthPubSubApiServer::into_rpc(pubsub).into(),
    ];
    for methods in typed {
        m.merge(methods).expect("method names are unique");
    }
    p2p::register(&mut m);
    proxy::register(&mut m);
    m
}

#[cfg(test)]
mod tests;
