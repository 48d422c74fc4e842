//! Wiring of the flashblock-aware node: stream client → overlay → RPC, over a state source.

use crate::{
    cli::{NodeArgs, OverlayArgs},
    presets::ChainPreset,
};
use anyhow::Context;
use flashnode_exec::{ChainConfig, StateSource};
use flashnode_fanout::FanoutConfig;
use flashnode_overlay::{run_stream, OverlayConfig, StreamConfig, UpstreamConfig, UpstreamSource};
use flashnode_rpc::{RpcConfig, RpcContext, RunningRpc, Upstream};
use flashnode_tasks::{Backoff, DedicatedRuntime, TaskExecutor, TaskFailure, TaskManager};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

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
    _ingest: DedicatedRuntime,
}

/// The share of `--shutdown-timeout` kept for the tasks to stop after the RPC drain (fan-out
/// close frames, the stream's goodbye), at most [`MAX_TASK_RESERVE`].
const TASK_RESERVE_DIVISOR: u32 = 5;
/// See [`TASK_RESERVE_DIVISOR`].
const MAX_TASK_RESERVE: Duration = Duration::from_secs(1);

impl NodeParts {
    /// Graceful shutdown within `timeout`: stop accepting, let in-flight RPC calls and
    /// websocket sends finish while ingest and state stay up, then stop everything under
    /// `cancel` and wait for the tracked tasks. Returns when they are done or `timeout` passed,
    /// whatever still runs (the process then exits; see `main`).
    pub async fn shutdown(self, tasks: &TaskManager, cancel: CancellationToken, timeout: Duration) {
        let started = tokio::time::Instant::now();
        // First, so the serving tasks that end now are not taken for failures.
        tasks.begin_shutdown();
        tracing::info!(?timeout, "shutting down: draining in-flight RPC calls");
        self.serving.cancel();
        let drain = timeout - (timeout / TASK_RESERVE_DIVISOR).min(MAX_TASK_RESERVE);
        if self.rpc.drained(drain).await {
            tracing::info!(elapsed = ?started.elapsed(), "RPC drained");
        } else {
            tracing::warn!(
                deadline = ?drain,
                "RPC drain deadline passed; closing the remaining connections"
            );
        }
        cancel.cancel();
        let stuck = tasks.wait(timeout.saturating_sub(started.elapsed())).await;
        if stuck.is_empty() {
            tracing::info!(elapsed = ?started.elapsed(), "all tasks stopped");
        } else {
            tracing::warn!(
                ?timeout,
                ?stuck,
                "shutdown deadline passed with tasks still running; exiting anyway"
            );
        }
    }
}

/// Runs until SIGINT/SIGTERM or a critical task's failure, then shuts `parts` down within
/// `timeout`. A failure (also one during the shutdown) is returned: the process exits
/// non-zero, so an orchestrator restarts it.
pub async fn serve_until_stopped(
    parts: NodeParts,
    tasks: &TaskManager,
    cancel: CancellationToken,
    timeout: Duration,
) -> Result<(), TaskFailure> {
    let failure = tokio::select! {
        _ = crate::dev::shutdown_signal() => None,
        failure = tasks.failed() => Some(failure),
    };
    parts.shutdown(tasks, cancel, timeout).await;
    match failure.or_else(|| tasks.executor().failure()) {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// How the stream client is restarted after a panic (it reconnects on its own otherwise).
fn stream_restart() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_jitter()
}

/// Now, in unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sleeps until the unix time `at` (seconds).
async fn sleep_until_unix(at: u64) {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(at);
    let wait = at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait).await;
}

/// Runs the stream client until the native-blocks cutover `at` (if any), then closes it for
/// good: after the cutover the chain has no stream by design, so the client neither
/// reconnects nor reports it; it idles until shutdown.
async fn stream_until_cutover(
    config: StreamConfig,
    tx: tokio::sync::mpsc::Sender<flashnode_overlay::StreamEvent>,
    cancel: CancellationToken,
    at: Option<u64>,
) {
    let Some(at) = at else { return run_stream(config, tx, cancel).await };
    let stream_cancel = cancel.child_token();
    let run = run_stream(config, tx.clone(), stream_cancel.clone());
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => return,
        _ = sleep_until_unix(at) => {}
    }
    tracing::info!(
        timestamp = at,
        "native-blocks cutover: flashblock stream closed for good (the chain has none from now on)"
    );
    stream_cancel.cancel();
    run.await;
    // The sender stays open until shutdown, so the overlay does not take the closed stream
    // for an exit.
    cancel.cancelled().await;
    drop(tx);
}

impl OverlayArgs {
    /// The stream client's settings for `url` from the node's flags.
    pub fn stream_config(&self, url: String) -> StreamConfig {
        StreamConfig {
            silence_timeout: self.stream_silence_timeout,
            ping_interval: self.stream_ping_interval,
            max_frame_bytes: self.max_frame_bytes,
            ..StreamConfig::new(url)
        }
    }

    /// The overlay's settings for `chain` (its native-blocks cutover `native_blocks_at`) from
    /// the node's flags.
    pub fn overlay_config(
        &self,
        chain: ChainConfig,
        native_blocks_at: Option<u64>,
    ) -> OverlayConfig {
        OverlayConfig {
            chain,
            stale_after: self.pending_stale_after,
            canonical_stale_after: self.canonical_stale_after,
            max_pending_depth: self.max_pending_depth,
            native_blocks_at,
            readiness_hysteresis_blocks: self.readiness_hysteresis_blocks,
        }
    }

    /// The RPC server's settings, listening on `addr`, from the node's flags (the connection
    /// limit as configured, before [`connection_budget`]).
    pub fn rpc_config(&self, addr: SocketAddr) -> RpcConfig {
        RpcConfig {
            addr,
            max_connections: self.rpc_max_connections,
            send_raw_sync_max: self.send_raw_sync_max,
            gas_cap: self.rpc_gas_cap,
            evm_timeout: self.rpc_evm_timeout,
            max_concurrent_executions: self.rpc_max_concurrent_executions,
            per_ip_connections: self.rpc_per_ip_connections,
            per_ip_subscriptions: self.rpc_per_ip_subscriptions,
            batch_request_limit: self.rpc_batch_request_limit,
            batch_response_max_bytes: self.rpc_batch_response_max_bytes,
        }
    }
}

impl NodeArgs {
    /// The upstream execution client's settings from the node's flags.
    pub fn upstream_config(&self) -> UpstreamConfig {
        UpstreamConfig {
            url: self.upstream_rpc.clone(),
            poll_interval: self.upstream_poll_interval,
            request_timeout: self.overlay.upstream_timeout,
            state_diffs: self.upstream_state_diffs,
            ..Default::default()
        }
    }
}

/// What `dev` and `node` choose differently when they start the node's parts.
pub struct NodeWiring<'a> {
    /// The flashblock stream to consume; None: none (p2p only).
    pub flashblocks_url: Option<String>,
    /// The chain's native-blocks cutover (flag or preset): no stream after it.
    pub native_blocks_at: Option<u64>,
    /// The chain re-executed.
    pub chain: ChainConfig,
    /// Canonical state.
    pub source: Arc<dyn StateSource>,
    /// The upstream RPC's URL (proxied methods).
    pub upstream_url: &'a str,
    /// Where the RPC listens.
    pub rpc_addr: SocketAddr,
    /// Where the fan-out listens.
    pub fanout_addr: SocketAddr,
    /// The node's flags.
    pub args: &'a OverlayArgs,
    /// The p2p host's counters, when p2p is on.
    pub gossip: Option<Arc<dyn flashnode_rpc::p2p::GossipStatusSource>>,
}

/// Starts the stream client, the overlay and the RPC, their tasks on `tasks`.
pub async fn start_node(
    wiring: NodeWiring<'_>,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<NodeParts> {
    let NodeWiring {
        flashblocks_url,
        native_blocks_at,
        chain,
        source,
        upstream_url,
        rpc_addr,
        fanout_addr,
        args,
        gossip,
    } = wiring;
    let recorder = match args.metrics_addr {
        Some(_) => Some(crate::http::install_recorder()?),
        None => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    // Ingest (stream reader, sequencing, re-execution) gets its own thread and runtime, so the
    // kernel shares the CPU between ingest and serving instead of thousands of fan-out tasks
    // queueing ahead of ingest on one runtime (at 10,000 subscribers that made frames stale).
    let ingest = DedicatedRuntime::new("flashnode-ingest")
        .context("starting the flashnode-ingest runtime")?;
    let in_ingest = ingest.enter();
    let cutover_passed = native_blocks_at.is_some_and(|at| unix_now() >= at);
    if let (true, Some(at)) = (cutover_passed, native_blocks_at) {
        tracing::info!(
            timestamp = at,
            "native blocks since the cutover: the chain has no flashblock stream by design; pending is latest"
        );
    }
    match flashblocks_url.filter(|_| !cutover_passed) {
        Some(url) => {
            let stream_config = args.stream_config(url);
            // The client holds only a socket and its own backoff, so a panic in it is safe to
            // recover from by starting it again.
            let cancel = cancel.clone();
            tasks.spawn_critical_restartable("stream", stream_restart(), move || {
                stream_until_cutover(
                    stream_config.clone(),
                    tx.clone(),
                    cancel.clone(),
                    native_blocks_at,
                )
            });
        }
        None => {
            // No flashblock stream (p2p only, or past the native-blocks cutover): the overlay
            // follows gossiped or canonical blocks; the sender
            // lives until shutdown so the overlay does not take a closed stream for an exit.
            let cancel = cancel.clone();
            tasks.spawn("stream_sender", async move {
                cancel.cancelled().await;
                drop(tx);
            });
        }
    }
    let overlay = flashnode_overlay::spawn(
        args.overlay_config(chain, native_blocks_at),
        source,
        rx,
        cancel.clone(),
        tasks,
    );
    drop(in_ingest);
    let upstream = Upstream::connect(upstream_url, args.upstream_timeout)
        .await
        .with_context(|| format!("connecting to the upstream RPC {upstream_url}"))?;
    let (rpc_connections, fanout_connections) = connection_budget(
        args.rpc_max_connections,
        args.fanout.ws_global_limit,
        args.fanout.fd_reserve,
        flashnode_fd::nofile_limit(),
    )?;
    let config = RpcConfig { max_connections: rpc_connections, ..args.rpc_config(rpc_addr) };
    // Serving stops first on shutdown (and with everything else if `cancel` fires alone).
    let serving = cancel.child_token();
    if let (Some(addr), Some(handle)) = (args.metrics_addr, recorder) {
        let operator = crate::http::Operator::new(
            handle,
            overlay.clone(),
            serving.clone(),
            gossip.clone(),
            tasks.clone(),
        );
        crate::http::serve(addr, operator, cancel.clone(), tasks).await?;
    }
    let fanout_config =
        FanoutConfig { global_limit: fanout_connections, ..args.fanout.config(fanout_addr) };
    let fanout_addr = crate::fanout::start(fanout_config, &overlay, serving.clone(), tasks)
        .await
        .context("starting the flashblock fan-out")?
        .addr();
    let rpc = flashnode_rpc::serve(
        RpcContext { overlay, upstream, config, gossip },
        serving.clone(),
        tasks,
    )
    .await
    .context("starting the RPC server")?;
    Ok(NodeParts { rpc_addr: rpc.addr, fanout_addr, rpc, serving, _ingest: ingest })
}

/// The connection limits of the RPC port and the fan-out in force: as configured when
/// `nofile` minus `reserve` holds both, else that room shared between them (max-min fair, see
/// [`flashnode_fd::share`]) with a warning for each one lowered. A listener out of descriptors
/// fails every accept and answers no one; one at its limit answers 429 and stays up.
fn connection_budget(
    rpc: u32,
    fanout: usize,
    reserve: usize,
    nofile: Option<u64>,
) -> anyhow::Result<(u32, usize)> {
    let room = flashnode_fd::room(reserve, nofile).map_err(|e| {
        anyhow::anyhow!("{e} (--fd-reserve); raise it (ulimit -n) or lower --fd-reserve")
    })?;
    let wanted = [rpc as usize, fanout];
    let shares = flashnode_fd::share(&wanted, room);
    let nofile = nofile.unwrap_or_default();
    let named =
        [("RPC", "fan-out", "--rpc-max-connections"), ("fan-out", "RPC", "--ws-global-limit")];
    for ((what, other, flag), (share, configured)) in named.iter().zip(shares.iter().zip(wanted)) {
        if *share < configured {
            tracing::warn!(
                configured,
                cap = share,
                nofile,
                reserve,
                "{what} connection limit lowered to {share}: RLIMIT_NOFILE is {nofile}, {reserve} descriptors are kept for health checks and the node (--fd-reserve) and the {other}'s connections share the rest; raise the limit (ulimit -n) to serve {flag} {configured}"
            );
        }
    }
    Ok((u32::try_from(shares[0]).unwrap_or(rpc), shares[1]))
}

/// The chain from the op-node at `url` (`optimism_rollupConfig`), refused when it is another
/// chain than the upstream's `chain_id`.
async fn rollup_config(url: &str, timeout: Duration, chain_id: u64) -> anyhow::Result<ChainPreset> {
    let op_node = Upstream::connect(url, timeout)
        .await
        .with_context(|| format!("--rollup-config-rpc: connecting to the op-node {url}"))?;
    let config = op_node
        .call("optimism_rollupConfig", None)
        .await
        .with_context(|| format!("--rollup-config-rpc: optimism_rollupConfig of {url}"))?;
    let chain = ChainPreset::from_rollup_config(config).with_context(|| {
        format!("--rollup-config-rpc: {url} answered optimism_rollupConfig with no rollup config")
    })?;
    anyhow::ensure!(
        chain.chain_id == chain_id,
        "--rollup-config-rpc {url}: the op-node's rollup is chain {}, the upstream is chain {chain_id}",
        chain.chain_id
    );
    tracing::info!(
        chain_id,
        op_node = url,
        "chain config applied from the op-node's optimism_rollupConfig"
    );
    Ok(chain)
}

/// Logs the one line that names the chain preset applied and where it came from.
fn log_preset(preset: Option<&ChainPreset>, named: bool, chain_id: u64, upstream: &str) {
    match (preset, named) {
        (Some(p), true) => {
            let from = crate::config::chain_origin().unwrap_or("--chain");
            tracing::info!(
                chain = %p.label(),
                chain_id,
                from,
                "chain preset {} applied (chain {chain_id}, from {from})",
                p.label()
            );
        }
        (Some(p), false) => tracing::info!(
            chain = %p.label(),
            chain_id,
            from = "upstream chain id",
            "chain preset {} applied (chain {chain_id}, from the upstream's chain id; {upstream})",
            p.label()
        ),
        (None, _) => tracing::info!(
            chain_id,
            from = "upstream chain id",
            "no chain preset has chain id {chain_id} (the upstream's): running as a devnet-like chain at Isthmus"
        ),
    }
}

/// `flashnode node`.
pub async fn run_node(mut args: NodeArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tasks = TaskManager::new();
    // First, so what the upstream client and the p2p host record while starting (first
    // requests, restored discovery nodes) is exported too.
    if args.overlay.metrics_addr.is_some() {
        crate::http::install_recorder()?;
    }
    let upstream = args.upstream_config();
    // The execution client may start after us (a sidecar in the same pod, a restart): wait for
    // it with backoff instead of exiting into a crash loop; SIGINT/SIGTERM still stop us.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let source = loop {
        match UpstreamSource::connect(upstream.clone(), cancel.clone(), &tasks.executor()).await {
            Ok(source) => break source,
            Err(err) => {
                let retry_in = backoff.next_delay();
                tracing::warn!(%err, retry_in_ms = retry_in.as_millis() as u64, "upstream execution client not reachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = crate::dev::shutdown_signal() => {
                        return Err(anyhow::anyhow!("{err}")).context("stopped while waiting for the upstream execution client");
                    }
                }
            }
        }
    };
    let chain_id = source.chain_id();
    let from_file = match &args.chain_config {
        Some(path) => {
            let chain = ChainPreset::from_registry_file(path)?;
            anyhow::ensure!(
                chain.chain_id == chain_id,
                "--chain-config {}: the upstream {} is chain {chain_id}, the file is chain {}",
                path.display(),
                args.upstream_rpc,
                chain.chain_id
            );
            tracing::info!(chain_id, file = %path.display(), "chain config applied");
            Some(chain)
        }
        None => match &args.rollup_config_rpc {
            Some(url) => Some(rollup_config(url, args.overlay.upstream_timeout, chain_id).await?),
            None => None,
        },
    };
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
    if from_file.is_none() {
        log_preset(preset.as_ref(), args.chain.is_some(), chain_id, &args.upstream_rpc);
    }
    // Never a guessed schedule: a chain id with neither a preset nor a config is refused (the
    // devnet's, which runs at Isthmus, excepted).
    anyhow::ensure!(
        from_file.is_some() || preset.is_some() || chain_id == flashnode_devnet::DEFAULT_CHAIN_ID,
        "the upstream {} is chain {chain_id}, which has no preset: give its superchain-registry \
         config with --chain-config <superchain/configs/<network>/<chain>.toml> (its hardfork \
         times and EIP-1559 parameters; re-executing with guessed rules would serve wrong \
         receipts), the op-node beside it with --rollup-config-rpc <url>, or --chain for one of \
         the presets",
        args.upstream_rpc
    );
    let preset = from_file.or(preset);
    crate::cadence::enforce(preset.as_ref().and_then(|p| p.cadence), &mut args.overlay)?;
    // The flag (`never` included) wins over the preset's cutover.
    let native_blocks_at = match args.overlay.native_blocks_timestamp {
        Some(flag) => flag.timestamp(),
        None => preset.as_ref().and_then(|p| p.native_blocks_timestamp),
    };
    let cutover_passed = native_blocks_at.is_some_and(|at| unix_now() >= at);
    let chain = preset.map(|p| p.chain).unwrap_or_else(|| ChainConfig::devnet(chain_id));
    let (source, gossip) =
        crate::p2p::wrap_source(&args.p2p, Arc::new(source), cancel.clone(), &tasks.executor())
            .await?;
    // Without a stream a node with p2p still serves 2 s blocks from gossip and the upstream.
    let flashblocks_url = match args.flashblocks_url.clone() {
        Some(url) => Some(url),
        None if gossip.is_some() || cutover_passed => None,
        None => anyhow::bail!(
            "no flashblock stream: set --flashblocks-url (or a --chain preset that has a public one), or join the p2p network with --p2p-sequencer-address"
        ),
    };
    let parts = start_node(
        NodeWiring {
            flashblocks_url: flashblocks_url.clone(),
            native_blocks_at,
            chain,
            source,
            upstream_url: &args.upstream_rpc,
            rpc_addr: args.rpc_addr,
            fanout_addr: args.flashblocks_addr,
            args: &args.overlay,
            gossip,
        },
        cancel.clone(),
        &tasks.executor(),
    )
    .await?;
    println!(
        "flashnode node\n\nFlashblock-aware RPC: http://{addr}  (ws://{addr})\nFlashblock fan-out:   ws://{fanout}/ws\nFlashblock stream:    {}\nUpstream RPC:         {}\n",
        match (&flashblocks_url, cutover_passed) {
            (_, true) => "none: native blocks since the cutover (no stream by design)",
            (Some(url), false) => url.as_str(),
            (None, false) => "none (sealed blocks from p2p gossip only)",
        },
        args.upstream_rpc,
        addr = parts.rpc_addr,
        fanout = parts.fanout_addr
    );
    serve_until_stopped(parts, &tasks, cancel, args.overlay.shutdown_timeout).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::connection_budget;

    #[test]
    fn the_rpc_and_the_fan_out_share_the_descriptors_left_after_the_reserve() {
        assert_eq!(connection_budget(10_000, 10_000, 256, None).unwrap(), (10_000, 10_000));
        assert_eq!(connection_budget(100, 50, 256, Some(1024)).unwrap(), (100, 50));
        assert_eq!(connection_budget(10_000, 10_000, 200, Some(400)).unwrap(), (100, 100));
        assert_eq!(connection_budget(50, 10_000, 200, Some(400)).unwrap(), (50, 150));
        let err = connection_budget(10, 10, 256, Some(200)).unwrap_err().to_string();
        assert!(err.contains("--fd-reserve") && err.contains("RLIMIT_NOFILE is 200"), "{err}");
    }
}
