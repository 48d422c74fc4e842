//! `flashnode devnet` and `flashnode dev`.

use crate::cli::{DevArgs, DevnetArgs};
use anyhow::Context;
use flashnode_devnet::{genesis::dev_balance, Devnet, DevnetConfig};
use flashnode_tasks::TaskManager;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long `flashnode devnet` waits for its tasks on shutdown.
const DEVNET_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

fn devnet_config(args: &DevnetArgs) -> DevnetConfig {
    DevnetConfig {
        chain_id: args.chain_id,
        block_time: args.block_time,
        flashblock_interval: args.flashblock_interval,
        flashblock_jitter: args.flashblock_jitter,
        gas_limit: args.gas_limit,
        rpc_addr: Some(args.rpc_addr),
        flashblocks_addr: Some(args.flashblocks_addr),
        flashblocks_brotli: args.flashblocks_brotli,
        subblocks: args.subblocks,
        post_exec_tx: args.post_exec_tx,
        reth_namespace: args.reth_namespace,
        ..Default::default()
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn print_banner(
    devnet: &Devnet,
    title: &str,
    node: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
) {
    let node_rpc = node.map(|n| n.0);
    let eth = dev_balance()
        / alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(18u64));
    let mut out = String::new();
    out.push_str(&format!("\n{title}\n\nAvailable Accounts\n==================\n"));
    for (i, acc) in devnet.shared.accounts.iter().enumerate() {
        out.push_str(&format!("({i}) {} ({eth} ETH)\n", acc.address));
    }
    out.push_str("\nPrivate Keys\n==================\n");
    for (i, acc) in devnet.shared.accounts.iter().enumerate() {
        out.push_str(&format!("({i}) {}\n", acc.private_key_hex()));
    }
    out.push_str(&format!("\nChain ID\n==================\n{}\n", devnet.shared.chain.chain_id));
    if let Some(addr) = node_rpc {
        out.push_str(&format!("\nRPC (flashblock-aware): http://{addr}  (ws://{addr})\n"));
    }
    if let Some(addr) = devnet.rpc_addr {
        let label =
            if node_rpc.is_some() { "Devnet canonical RPC:  " } else { "\nCanonical RPC:        " };
        out.push_str(&format!("{label}http://{addr}  (ws://{addr})\n"));
    }
    match (node, devnet.flashblocks_addr) {
        (Some((_, fanout)), Some(source)) => {
            out.push_str(&format!("Flashblock fan-out:     ws://{fanout}/ws\n"));
            out.push_str(&format!("Devnet flashblocks:     ws://{source}/ws\n"));
        }
        (None, Some(addr)) => out.push_str(&format!("Flashblock websocket: ws://{addr}/ws\n")),
        _ => {}
    }
    println!("{out}");
}

/// `flashnode devnet`: the chain alone.
pub async fn run_devnet(args: DevnetArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tasks = TaskManager::new();
    let devnet = Devnet::spawn(devnet_config(&args), cancel.clone(), &tasks.executor())
        .await
        .context("starting the devnet")?;
    print_banner(&devnet, "flashnode devnet", None);
    let _p2p =
        crate::p2p::start_for_devnet(&args.p2p, &devnet, cancel.clone(), &tasks.executor()).await?;
    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        failure = tasks.failed() => Some(failure),
    };
    tracing::info!("shutting down");
    tasks.begin_shutdown();
    cancel.cancel();
    let stuck = tasks.wait(DEVNET_SHUTDOWN_TIMEOUT).await;
    if !stuck.is_empty() {
        tracing::warn!(?stuck, "tasks still running at exit");
    }
    match failure.or_else(|| tasks.executor().failure()) {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

/// `flashnode dev`: devnet plus node in one process. The node's RPC takes `--rpc-addr`; the
/// devnet's own canonical RPC (the node's upstream) goes to `--devnet-rpc-addr`.
pub async fn run_dev(mut args: DevArgs) -> anyhow::Result<()> {
    let cadence = crate::cadence::Cadence {
        block_time: args.devnet.block_time,
        flashblock_interval: Some(args.devnet.flashblock_interval),
    };
    crate::cadence::enforce(Some(cadence), &mut args.overlay)?;
    let cancel = CancellationToken::new();
    let tasks = TaskManager::new();
    let mut config = devnet_config(&args.devnet);
    config.rpc_addr = Some(args.devnet_rpc_addr);
    config.flashblocks_addr = Some(args.devnet_flashblocks_addr);
    // The devnet stands for the remote sequencer: it gets its own thread, so load on the node's
    // RPC (on the main runtime) cannot starve the stream the node ingests.
    let devnet_runtime = flashnode_tasks::DedicatedRuntime::new("flashnode-devnet")
        .context("starting the flashnode-devnet runtime")?;
    let in_devnet = devnet_runtime.enter();
    let devnet = Devnet::spawn(config, cancel.clone(), &tasks.executor())
        .await
        .context("starting the devnet")?;
    drop(in_devnet);
    let (Some(devnet_rpc), Some(ws)) = (devnet.rpc_addr, devnet.flashblocks_addr) else {
        anyhow::bail!("the devnet serves its RPC and websocket in dev mode");
    };
    let source = flashnode_devnet::source::DevnetSource::new(
        devnet.shared.clone(),
        cancel.clone(),
        &tasks.executor(),
    );
    tracing::info!(
        chain = "devnet",
        chain_id = args.devnet.chain_id,
        from = "flashnode dev",
        "chain preset devnet applied (chain {}, the embedded devnet)",
        args.devnet.chain_id
    );
    let upstream_url = format!("http://{devnet_rpc}");
    let parts = crate::node::start_node(
        crate::node::NodeWiring {
            flashblocks_url: Some(format!("ws://{ws}/ws")),
            native_blocks_at: args.overlay.native_blocks_timestamp.and_then(|t| t.timestamp()),
            chain: flashnode_exec::ChainConfig::devnet(args.devnet.chain_id),
            source: std::sync::Arc::new(source),
            upstream_url: &upstream_url,
            rpc_addr: args.devnet.rpc_addr,
            fanout_addr: args.devnet.flashblocks_addr,
            args: &args.overlay,
            gossip: None,
        },
        cancel.clone(),
        &tasks.executor(),
    )
    .await?;
    print_banner(&devnet, "flashnode dev", Some((parts.rpc_addr, parts.fanout_addr)));
    let _p2p =
        crate::p2p::start_for_devnet(&args.devnet.p2p, &devnet, cancel.clone(), &tasks.executor())
            .await?;
    crate::node::serve_until_stopped(parts, &tasks, cancel, args.overlay.shutdown_timeout).await?;
    drop(devnet_runtime);
    Ok(())
}
