//! Wiring of the flashblock-aware node: stream client → overlay → RPC, over a state source.

use crate::cli::{NodeArgs, OverlayArgs};
use anyhow::Context;
use flashnode_exec::{ChainConfig, StateSource};
use flashnode_overlay::{
    stream::{run_stream, StreamConfig},
    upstream::{UpstreamConfig, UpstreamSource},
    OverlayConfig,
};
use flashnode_rpc::{RpcConfig, RpcContext, Upstream};
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
}

/// Starts the stream client, the overlay and the RPC.
pub async fn start_node(
    flashblocks_url: String,
    source: Arc<dyn StateSource>,
    upstream_url: &str,
    rpc_addr: SocketAddr,
    fanout_addr: SocketAddr,
    args: &OverlayArgs,
    cancel: CancellationToken,
) -> anyhow::Result<NodeParts> {
    let recorder = match args.metrics_addr {
        Some(_) => Some(crate::http::install_recorder()?),
        None => None,
    };
    let mut stream_config = StreamConfig::new(flashblocks_url.clone());
    stream_config.silence_timeout = args.stream_silence_timeout;
    stream_config.ping_interval = args.stream_ping_interval;
    stream_config.max_frame_bytes = args.max_frame_bytes;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(
        run_stream(stream_config, tx, cancel.clone()).instrument(info_span!("stream", url = %flashblocks_url)),
    );
    let chain = ChainConfig::devnet(source.chain_id());
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
    let upstream = Upstream::connect(upstream_url, args.upstream_timeout)
        .await
        .with_context(|| format!("connecting to the upstream RPC {upstream_url}"))?;
    let config = RpcConfig {
        addr: rpc_addr,
        send_raw_sync_max: args.send_raw_sync_max,
        gas_cap: args.rpc_gas_cap,
        ..Default::default()
    };
    if let (Some(addr), Some(handle)) = (args.metrics_addr, recorder) {
        crate::http::serve(addr, handle, overlay.clone(), cancel.clone()).await?;
    }
    let fanout = flashnode_rpc::fanout::FanoutConfig {
        addr: fanout_addr,
        api_keys: args.ws_api_keys.clone(),
        public: !args.ws_close_public,
        per_ip_limit: args.ws_per_ip_limit,
        global_limit: args.ws_global_limit,
        trust_forwarded_for: args.ws_trust_forwarded_for,
        compression: args.ws_compression,
        buffer: args.ws_buffer,
        ..Default::default()
    };
    let fanout_addr = flashnode_rpc::fanout::serve(fanout, overlay.clone(), cancel.clone())
        .await
        .context("starting the flashblock fan-out")?;
    let rpc_addr = flashnode_rpc::serve(RpcContext { overlay, upstream, config }, cancel)
        .await
        .context("starting the RPC server")?;
    Ok(NodeParts { rpc_addr, fanout_addr })
}

/// `flashnode node`.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let source = UpstreamSource::connect(
        UpstreamConfig {
            url: args.upstream_rpc.clone(),
            poll_interval: args.upstream_poll_interval,
            request_timeout: args.overlay.upstream_timeout,
            ..Default::default()
        },
        cancel.clone(),
    )
    .await
    .context("connecting to the upstream execution client")?;
    let parts = start_node(
        args.flashblocks_url.clone(),
        Arc::new(source),
        &args.upstream_rpc,
        args.rpc_addr,
        args.flashblocks_addr,
        &args.overlay,
        cancel.clone(),
    )
    .await?;
    println!(
        "flashnode node\n\nFlashblock-aware RPC: http://{addr}  (ws://{addr})\nFlashblock fan-out:   ws://{fanout}/ws\nFlashblock stream:    {}\nUpstream RPC:         {}\n",
        args.flashblocks_url,
        args.upstream_rpc,
        addr = parts.rpc_addr,
        fanout = parts.fanout_addr
    );
    crate::dev::shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
