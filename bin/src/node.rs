//! Wiring of the flashblock-aware node: stream client → overlay → RPC, over a state source.

use crate::{
    cli::{NodeArgs, OverlayArgs},
    presets::ChainPreset,
};
use anyhow::Context;
use flashnode_exec::{ChainConfig, StateSource};
use flashnode_overlay::{
    stream::{run_stream, StreamConfig},
    upstream::{UpstreamConfig, UpstreamSource},
    OverlayConfig,
};
use flashnode_rpc::{RpcConfig, RpcContext, RunningRpc, Upstream};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::info_span;
use tracing::Instrument;

/// The parts a running node is made of.
pub struct NodeParts {
    /// Where the RPC listens.
    pub rpc_addr: SocketAddr,
    /// Where the fan-out listens.
    pub fanout_addr: SocketAddr,
    /// The RPC server, to drain on shutdown.
    rpc: RunningRpc,
    /// Stops the serving side (RPC and fan-out) before the rest.
    serving: CancellationToken,
    /// The ingest runtime (stopped last, when the parts are dropped).
    _ingest: IngestRuntime,
}

/// The runtime ingest runs on; shut down in the background when dropped (a runtime cannot be
/// dropped in place from async code).
struct IngestRuntime(Option<tokio::runtime::Runtime>);

impl IngestRuntime {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flashnode-ingest")
            .enable_all()
            .build()
            .context("starting the ingest runtime")?;
        Ok(Self(Some(runtime)))
    }

    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(|rt| rt.enter())
    }
}

impl Drop for IngestRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl NodeParts {
    /// Graceful shutdown: stop accepting, let in-flight RPC calls and websocket sends finish
    /// within `deadline` while ingest and state stay up, then stop everything under `cancel`.
    pub async fn shutdown(self, cancel: CancellationToken, deadline: Duration) {
        tracing::info!(?deadline, "shutting down: draining in-flight RPC calls");
        self.serving.cancel();
        let started = std::time::Instant::now();
        if self.rpc.drained(deadline).await {
            tracing::info!(elapsed = ?started.elapsed(), "RPC drained");
        } else {
            tracing::warn!(
                ?deadline,
                "RPC drain deadline passed; closing the remaining connections"
            );
        }
        cancel.cancel();
        // Fan-out clients get their close frames; the stream and overlay tasks end.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the stream client, the overlay and the RPC.
pub async fn start_node(
    flashblocks_url: Option<String>,
    chain: ChainConfig,
    source: Arc<dyn StateSource>,
    upstream_url: &str,
    rpc_addr: SocketAddr,
    fanout_addr: SocketAddr,
    args: &OverlayArgs,
    gossip: Option<Arc<dyn flashnode_rpc::p2p::GossipStatusSource>>,
    cancel: CancellationToken,
) -> anyhow::Result<NodeParts> {
    let recorder = match args.metrics_addr {
        Some(_) => Some(crate::http::install_recorder()?),
        None => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    // Ingest (stream reader, sequencing, re-execution) gets its own thread and runtime, so the
    // kernel shares the CPU between ingest and serving instead of thousands of fan-out tasks
    // queueing ahead of ingest on one runtime (at 10,000 subscribers that made frames stale).
    let ingest = IngestRuntime::new()?;
    let in_ingest = ingest.enter();
    match flashblocks_url {
        Some(url) => {
            let mut stream_config = StreamConfig::new(url.clone());
            stream_config.silence_timeout = args.stream_silence_timeout;
            stream_config.ping_interval = args.stream_ping_interval;
            stream_config.max_frame_bytes = args.max_frame_bytes;
            tokio::spawn(
                run_stream(stream_config, tx, cancel.clone())
                    .instrument(info_span!("stream", %url)),
            );
        }
        None => {
            // No flashblock stream (p2p only): the overlay follows gossiped blocks; the sender
            // lives until shutdown so the overlay does not take a closed stream for an exit.
            let cancel = cancel.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                drop(tx);
            });
        }
    }
    let overlay = flashnode_overlay::spawn(
        OverlayConfig {
            chain,
            stale_after: args.pending_stale_after,
            canonical_stale_after: args.canonical_stale_after,
        },
        source,
        rx,
        cancel.clone(),
    );
    drop(in_ingest);
    let upstream = Upstream::connect(upstream_url, args.upstream_timeout)
        .await
        .with_context(|| format!("connecting to the upstream RPC {upstream_url}"))?;
    let config = RpcConfig {
        addr: rpc_addr,
        send_raw_sync_max: args.send_raw_sync_max,
        gas_cap: args.rpc_gas_cap,
        ..Default::default()
    };
    // Serving stops first on shutdown (and with everything else if `cancel` fires alone).
    let serving = cancel.child_token();
    if let (Some(addr), Some(handle)) = (args.metrics_addr, recorder) {
        let operator =
            crate::http::Operator::new(handle, overlay.clone(), serving.clone(), gossip.clone());
        crate::http::serve(addr, operator, cancel.clone()).await?;
    }
    let fanout_addr =
        crate::fanout::start(crate::fanout::config(fanout_addr, args), &overlay, serving.clone())
            .await
            .context("starting the flashblock fan-out")?
            .addr();
    let rpc =
        flashnode_rpc::serve(RpcContext { overlay, upstream, config, gossip }, serving.clone())
            .await
            .context("starting the RPC server")?;
    Ok(NodeParts { rpc_addr: rpc.addr, fanout_addr, rpc, serving, _ingest: ingest })
}

/// `flashnode node`.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    // First, so what the upstream client and the p2p host record while starting (first
    // requests, restored discovery nodes) is exported too.
    if args.overlay.metrics_addr.is_some() {
        crate::http::install_recorder()?;
    }
    let upstream = UpstreamConfig {
        url: args.upstream_rpc.clone(),
        poll_interval: args.upstream_poll_interval,
        request_timeout: args.overlay.upstream_timeout,
        ..Default::default()
    };
    // The execution client may start after us (a sidecar in the same pod, a restart): wait for
    // it with backoff instead of exiting into a crash loop; SIGINT/SIGTERM still stop us.
    let mut retry_in = Duration::from_millis(500);
    let source = loop {
        match UpstreamSource::connect(upstream.clone(), cancel.clone()).await {
            Ok(source) => break source,
            Err(err) => {
                tracing::warn!(%err, retry_in_ms = retry_in.as_millis() as u64, "upstream execution client not reachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = crate::dev::shutdown_signal() => {
                        return Err(anyhow::anyhow!("{err}")).context("stopped while waiting for the upstream execution client");
                    }
                }
                retry_in = (retry_in * 2).min(Duration::from_secs(10));
            }
        }
    };
    let chain_id = source.chain_id();
    let preset = match args.chain {
        Some(name) => {
            let preset = ChainPreset::of(name, chain_id);
            anyhow::ensure!(
                preset.chain_id == chain_id,
                "--chain {name:?}: the upstream {} is chain {chain_id}, the preset is chain {}",
                args.upstream_rpc,
                preset.chain_id
            );
            Some(preset)
        }
        None => ChainPreset::by_chain_id(chain_id),
    };
    let chain = preset.map(|p| p.chain).unwrap_or_else(|| ChainConfig::devnet(chain_id));
    let (source, gossip) =
        crate::p2p::wrap_source(&args.p2p, Arc::new(source), cancel.clone()).await?;
    // Without a stream a node with p2p still serves 2 s blocks from gossip and the upstream.
    let flashblocks_url = match args.flashblocks_url.clone() {
        Some(url) => Some(url),
        None if gossip.is_some() => None,
        None => anyhow::bail!(
            "no flashblock stream: set --flashblocks-url (or a --chain preset that has a public one), or join the p2p network with --p2p-sequencer-address"
        ),
    };
    let parts = start_node(
        flashblocks_url.clone(),
        chain,
        source,
        &args.upstream_rpc,
        args.rpc_addr,
        args.flashblocks_addr,
        &args.overlay,
        gossip,
        cancel.clone(),
    )
    .await?;
    println!(
        "flashnode node\n\nFlashblock-aware RPC: http://{addr}  (ws://{addr})\nFlashblock fan-out:   ws://{fanout}/ws\nFlashblock stream:    {}\nUpstream RPC:         {}\n",
        flashblocks_url.as_deref().unwrap_or("none (sealed blocks from p2p gossip only)"),
        args.upstream_rpc,
        addr = parts.rpc_addr,
        fanout = parts.fanout_addr
    );
    crate::dev::shutdown_signal().await;
    parts.shutdown(cancel, args.overlay.shutdown_timeout).await;
    Ok(())
}
