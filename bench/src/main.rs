//! `flashnode-bench`: whole-scenario benchmarks of the real `flashnode` binary on loopback.
//!
//! - `ingest-latency`: flashblock frame arrival → its receipts queryable over the node's RPC.
//! - `receipt-throughput`: `eth_getTransactionReceipt` under wrk load, node (preconfirmed,
//!   proxied) side by side with the devnet's canonical RPC.
//!
//! The binary under test is `$FLASHNODE_BIN` (use the release build:
//! `FLASHNODE_BIN=target/release/flashnode`). See docs/benchmarks.md.

mod batch;
mod calls;
mod chart;
mod cold_state;
mod fanout;
mod fanout_floor;
mod http;
mod ingest;
mod node;
mod overload;
mod ratio;
mod reexec;
mod resume;
mod soak;
mod stats;
mod throughput;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "flashnode-bench", about = "Benchmarks of flashnode (see docs/benchmarks.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Write the machine-readable result here (e.g. bench/results/ingest-latency.json).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Latency from a flashblock frame's arrival to its receipts being queryable over RPC.
    IngestLatency(ingest::IngestArgs),
    /// eth_getTransactionReceipt throughput: node (preconfirmed, proxied) vs devnet canonical RPC.
    ReceiptThroughput(throughput::ThroughputArgs),
    /// Fan-out delivery latency and per-subscriber cost with 1,000 and 10,000 websocket subscribers.
    Fanout(fanout::FanoutArgs),
    /// The relay process of `fanout --floor` (one raw write per subscriber; started by the bench).
    #[command(hide = true)]
    FanoutFloorRelay(fanout_floor::RelayArgs),
    /// Pending eth_call latency (balanceOf, ~100k gas) vs the same call on the upstream's canonical state, cache cold and warm.
    Calls(calls::CallsArgs),
    /// `flashnode dev` under 256 concurrent gas-cap eth_calls: the mode and a cheap call's latency, idle vs loaded.
    Overload(overload::OverloadArgs),
    /// One client's 1,000-call batches of gas-cap eth_calls vs the same calls one at a time: another client's cheap eth_call p99.
    BatchFairness(batch::BatchArgs),
    /// `flashnode dev` under steady tx load: RSS, open fds and threads must not grow past bounds.
    Soak(soak::SoakArgs),
    /// kill -9 of a middle relay in node → relay → relay → subscribers: time until the leaf's subscribers are caught up, gaps, and what a consumer without resume loses.
    Resume(resume::ResumeArgs),
    /// #24: flashblocks reading cold storage, applied in process (`dev`) and by a sidecar
    /// (`devnet` + `node --upstream-rpc`), with the floor (in-process apply + one batch fetch).
    ColdState(cold_state::ColdStateArgs),
    /// Mgas/s of flashblock re-execution by flashblock size, against pure op-revm execution.
    Reexec(reexec::ReexecArgs),
    /// Receipt, pending balance and pending call throughput: flashnode vs devnet canonical vs anvil.
    RpcRatio(ratio::RatioArgs),
    /// Chart of ingest-latency results by flashblock size (reads the given result files).
    IngestChart {
        /// ingest-latency result files, one per flashblock size.
        files: Vec<PathBuf>,
        /// The SVG to write.
        #[arg(long, default_value = "bench/results/ingest-latency-by-size.svg")]
        chart: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The node's log goes to a file that is scanned afterwards: no colour codes. Set before any
    // thread starts.
    std::env::set_var("NO_COLOR", "1");
    // The devnet's sequencer logs each flashblock as it publishes it, and the node's overlay
    // each flashblock it applied (debug level): the ingest scenario lines its t0 up with those
    // timestamps.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var(
            "RUST_LOG",
            "info,flashnode_devnet::sequencer=debug,flashnode_overlay::service=debug",
        );
    }
    if std::env::var_os("FLASHNODE_BIN").is_none() {
        eprintln!(
            "warning: FLASHNODE_BIN is not set; benchmarking {}",
            flashnode_tests::flashnode_bin().display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::IngestLatency(args) => ingest::run(args).await,
            Command::ReceiptThroughput(args) => throughput::run(args).await,
            Command::Fanout(args) => fanout::run(args).await,
            Command::FanoutFloorRelay(args) => {
                tokio::task::spawn_blocking(move || fanout_floor::relay(args)).await?
            }
            Command::Calls(args) => calls::run(args).await,
            Command::Soak(args) => soak::run(args).await,
            Command::Overload(args) => overload::run(args).await,
            Command::BatchFairness(args) => batch::run(args).await,
            Command::Reexec(args) => reexec::run(args).await,
            Command::ColdState(args) => cold_state::run(args).await,
            Command::Resume(args) => resume::run(args).await,
            Command::RpcRatio(args) => ratio::run(args).await,
            Command::IngestChart { files, chart } => chart::ingest_by_size(&files, &chart),
        }
    })?;
    let text = serde_json::to_string_pretty(&result)?;
    match &cli.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, text + "\n")?;
            eprintln!("wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    print_headline(&result);
    if result["scenario"] == "soak" && result["result"]["passed"] != true {
        anyhow::bail!("soak failed: {}", result["result"]["violations"]);
    }
    Ok(())
}

/// A short human summary on stderr.
fn print_headline(v: &serde_json::Value) {
    let r = &v["result"];
    match v["scenario"].as_str() {
        Some("ingest-latency") => eprintln!(
            "ingest→queryable latency over {} samples: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (txs/flashblock p50 {})",
            r["samples"], r["latency_ms"]["p50"], r["latency_ms"]["p90"], r["latency_ms"]["p99"], r["latency_ms"]["max"],
            r["tx_count_per_flashblock_measured"]["summary"]["p50"]
        ),
        Some("receipt-throughput") => {
            for label in ["node_preconfirmed", "devnet_canonical", "node_proxied_sealed"] {
                let t = &r[label];
                eprintln!(
                    "{label:<22} median {:>10} req/s  p50 {} ms  p99 {} ms  (rounds: {})",
                    t["requests_per_sec_median"], t["latency_ms_p50_median"], t["latency_ms_p99_median"], t["requests_per_sec_each_round"]
                );
            }
            eprintln!(
                "node preconfirmed / devnet canonical: {} (each round {})",
                r["ratio_node_preconfirmed_vs_devnet_canonical"], r["ratio_node_preconfirmed_vs_devnet_canonical_each_round"]
            );
        }
        Some("overload") => eprintln!(
            "overload ({} callers): flashblocks in every sample: {} ({}); cheap call p50 {} → {} ms, p99 {} → {} ms (p99 x{}); heavy calls {}",
            v["params"]["callers"], r["flashblocks_in_every_sample"], r["mode_samples_under_load"],
            r["cheap_call_idle_ms"]["p50"], r["cheap_call_under_load_ms"]["p50"],
            r["cheap_call_idle_ms"]["p99"], r["cheap_call_under_load_ms"]["p99"],
            r["ratio_p99_load_vs_idle"], r["heavy_calls"]
        ),
        Some("batch-fairness") => eprintln!(
            "batch-fairness ({} calls a batch): cheap call p99 idle {} ms, beside single calls {} ms, beside batches {} ms (x{} of singles); errors {}",
            v["params"]["batch"], r["cheap_call_idle_ms"]["p99"], r["cheap_call_beside_singles_ms"]["p99"],
            r["cheap_call_beside_batches_ms"]["p99"], r["ratio_p99_batches_vs_singles"], r["cheap_call_errors"]
        ),
        Some("calls") => {
            for kind in ["balance_of", "call_100k_gas"] {
                let k = &r[kind];
                eprintln!(
                    "{kind:<14} node pending cold p50 {} / p99 {} ms, warm p50 {} / p99 {} ms; upstream latest p50 {} / p99 {} ms; warm/upstream p50 ratio {}",
                    k["node_pending_cold_ms"]["p50"], k["node_pending_cold_ms"]["p99"], k["node_pending_warm_ms"]["p50"],
                    k["node_pending_warm_ms"]["p99"], k["upstream_latest_ms"]["p50"], k["upstream_latest_ms"]["p99"],
                    k["ratio_p50_warm_vs_upstream"]
                );
            }
        }
        Some("reexec") => {
            for row in r["rows"].as_array().into_iter().flatten() {
                eprintln!("{:>4} txs: floor {} Mgas/s, re-execution {} Mgas/s", row["txs"], row["floor_mgas_per_s"], row["reexec_mgas_per_s"]);
            }
        }
        Some("soak") => eprintln!(
            "soak: passed {}, RSS growth {} MiB (max {} MiB), fd growth {}, thread growth {}, {} txs sent, {} failed",
            r["passed"], r["rss_growth_mib"], r["rss_mib_max"], r["fd_growth"], r["thread_growth"], r["txs_sent"], r["txs_failed"]
        ),
        _ => {}
    }
}
