//! `flashnode devnet` and `flashnode dev`.

use crate::cli::DevnetArgs;
use anyhow::Context;
use flashnode_devnet::{genesis::dev_balance, Devnet, DevnetConfig};
use tokio_util::sync::CancellationToken;

fn devnet_config(args: &DevnetArgs) -> DevnetConfig {
    DevnetConfig {
        chain_id: args.chain_id,
        block_time: args.block_time,
        flashblock_interval: args.flashblock_interval,
        gas_limit: args.gas_limit,
        rpc_addr: Some(args.rpc_addr),
        flashblocks_addr: Some(args.flashblocks_addr),
        flashblocks_brotli: args.flashblocks_brotli,
        ..Default::default()
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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

fn print_banner(devnet: &Devnet, title: &str) {
    let eth = dev_balance() / alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(18u64));
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
    if let Some(addr) = devnet.rpc_addr {
        out.push_str(&format!("\nCanonical RPC:        http://{addr}  (ws://{addr})\n"));
    }
    if let Some(addr) = devnet.flashblocks_addr {
        out.push_str(&format!("Flashblock websocket: ws://{addr}/ws\n"));
    }
    println!("{out}");
}

/// `flashnode devnet`: the chain alone.
pub async fn run_devnet(args: DevnetArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let devnet = Devnet::spawn(devnet_config(&args), cancel.clone()).await.context("starting the devnet")?;
    print_banner(&devnet, "flashnode devnet");
    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    Ok(())
}

/// `flashnode dev`: devnet plus node in one process.
pub async fn run_dev(args: DevnetArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let devnet = Devnet::spawn(devnet_config(&args), cancel.clone()).await.context("starting the devnet")?;
    print_banner(&devnet, "flashnode dev");
    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    Ok(())
}
