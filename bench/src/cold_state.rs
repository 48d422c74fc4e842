//! `cold-state` (#24): flashblocks whose transactions read storage nobody read before, applied
//! by `flashnode dev` (canonical state in process) and by `flashnode devnet` + `flashnode node
//! --upstream-rpc` (the sidecar reading its execution client over JSON-RPC), in one run on one
//! machine, with the floor beside them: in-process apply plus one batched fetch of a
//! flashblock's cold reads from the same upstream.
//!
//! Every transaction calls the cold reader (`flashnode_tests::COLD_READER_RUNTIME`), reading
//! `--slots` consecutive slots: `fresh` starts each transaction at slots no transaction read
//! before, `hot` at one of 100 fixed seeds (hot contracts), `mixed` alternates. Transactions
//! are pre-signed and sent to the devnet's own RPC at `--rate` per second over the 10 dev keys.
//! Apply = `flashnode_overlay_apply_seconds` sum / count over the load.

use crate::{
    http::KeepAlive,
    node::start_dev,
    stats::{loadavg, r3, Machine},
};
use alloy_primitives::{TxKind, U256};
use anyhow::Context;
use clap::{Args, ValueEnum};
use flashnode_tests::{
    deploy_cold_reader, free_port, metric, mode_becomes, read_slots, scrape, sign_1559, start,
    start_node, Running, DEV_KEYS,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Which slots the transactions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Every transaction reads slots no transaction read before.
    Fresh,
    /// Every transaction reads the slots of one of 100 fixed seeds.
    Hot,
    /// Fresh and hot alternate.
    Mixed,
}

/// `cold-state` flags.
#[derive(Debug, Clone, Args)]
pub struct ColdStateArgs {
    /// Transactions per second.
    #[arg(long, default_value_t = 250)]
    pub rate: u64,
    /// Storage slots each transaction reads.
    #[arg(long, default_value_t = 20)]
    pub slots: u64,
    /// Workloads to run (each in `dev` and in `devnet` + `node`).
    #[arg(long, value_delimiter = ',', default_value = "fresh,hot,mixed")]
    pub workloads: Vec<Workload>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Devnet block gas limit.
    #[arg(long, default_value_t = 300_000_000)]
    pub gas_limit: u64,
}

/// Counters read from the node's Prometheus endpoint.
#[derive(Debug, Clone, Default)]
struct Counters {
    apply_sum: f64,
    apply_count: f64,
    requests: f64,
    batches: f64,
    stale: f64,
    discovery_rounds: f64,
    kept: f64,
    run_seconds: f64,
    fetch_seconds: f64,
}

async fn counters(metrics: &str) -> Counters {
    let page = scrape(metrics).await;
    Counters {
        apply_sum: metric(&page, "flashnode_overlay_apply_seconds_sum", &[]),
        apply_count: metric(&page, "flashnode_overlay_apply_seconds_count", &[]),
        requests: metric(&page, "flashnode_upstream_requests_total", &[]),
        batches: metric(&page, "flashnode_upstream_batches_total", &[]),
        stale: metric(&page, "flashnode_overlay_flashblocks_total", &[("outcome", "stale")]),
        discovery_rounds: metric(&page, "flashnode_overlay_discovery_rounds_total", &[]),
        kept: metric(&page, "flashnode_overlay_speculated_txs_kept_total", &[]),
        run_seconds: metric(&page, "flashnode_overlay_discovery_run_seconds_sum", &[]),
        fetch_seconds: metric(&page, "flashnode_overlay_discovery_fetch_seconds_sum", &[]),
    }
}

/// One run: a workload on one setup.
#[derive(Debug, Clone, Serialize)]
struct RunResult {
    workload: Workload,
    setup: &'static str,
    apply_mean_ms: f64,
    flashblocks_applied: u64,
    flashblocks_stale: u64,
    upstream_requests_per_flashblock: f64,
    upstream_batches_per_flashblock: f64,
    discovery_rounds_per_flashblock: f64,
    /// Transactions per flashblock whose speculative outcome was kept (not executed again).
    speculated_txs_kept_per_flashblock: f64,
    /// Milliseconds per flashblock in read-discovery's speculative runs.
    discovery_run_ms_per_flashblock: f64,
    /// Milliseconds per flashblock in read-discovery's upstream fetches.
    discovery_fetch_ms_per_flashblock: f64,
    sent: u64,
    send_errors: u64,
}

/// `flashnode node` reading `devnet` over JSON-RPC, with its metrics at the returned address,
/// once it serves flashblocks.
async fn start_sidecar_node(devnet: &Running) -> anyhow::Result<(Running, String)> {
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &devnet.rpc, &["--metrics-addr", &metrics]).await;
    anyhow::ensure!(
        mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(30)).await,
        "flashnode node did not serve flashblocks:\n{}",
        node.proc.output()
    );
    Ok((node, metrics))
}

/// Pre-signed calls of the reader from the first nine dev keys (nonce 0 up), `count` each.
fn presign(
    reader: alloy_primitives::Address,
    workload: Workload,
    slots: u64,
    count: usize,
    run: u64,
) -> Vec<Vec<String>> {
    // Fresh slots never repeat across runs of one process either (each run has its chain).
    let mut fresh = 1_000_000 + run * 100_000_000;
    let keys = &DEV_KEYS[..9];
    keys.iter()
        .enumerate()
        .map(|(k, key)| {
            (0..count)
                .map(|n| {
                    let i = n * keys.len() + k;
                    let hot = match workload {
                        Workload::Fresh => false,
                        Workload::Hot => true,
                        Workload::Mixed => i.is_multiple_of(2),
                    };
                    let start = if hot {
                        10_000 + (i as u64 * 7919 % 100) * slots
                    } else {
                        fresh += slots;
                        fresh
                    };
                    let raw = sign_1559(
                        key,
                        901,
                        n as u64,
                        TxKind::Call(reader),
                        U256::ZERO,
                        read_slots(start, slots),
                        60_000 + slots * 2_600,
                        100_000_000_000,
                    );
                    crate::http::rpc_body("eth_sendRawTransaction", json!([raw]))
                })
                .collect()
        })
        .collect()
}

/// Sends `bodies` (one list per key) to `rpc` at `rate` per second in total; returns (sent,
/// errors).
async fn send_load(rpc: &str, bodies: Vec<Vec<String>>, rate: u64) -> (u64, u64) {
    let keys = bodies.len() as u64;
    let period = Duration::from_micros(1_000_000 * keys / rate.max(1));
    let mut tasks = Vec::new();
    for (k, key_bodies) in bodies.into_iter().enumerate() {
        let rpc = rpc.to_string();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(period * k as u32 / keys as u32).await;
            let Ok(mut conn) = KeepAlive::connect(&rpc).await else { return (0, 1) };
            let mut tick = tokio::time::interval(period);
            let (mut sent, mut errors) = (0u64, 0u64);
            for body in key_bodies {
                tick.tick().await;
                match conn.post(&body).await {
                    Ok(b)
                        if serde_json::from_slice::<Value>(&b)
                            .is_ok_and(|v| v["error"].is_null()) =>
                    {
                        sent += 1
                    }
                    _ => errors += 1,
                }
            }
            (sent, errors)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        if let Ok((s, e)) = t.await {
            total.0 += s;
            total.1 += e;
        }
    }
    total
}

/// Runs the load on a node whose metrics are at `metrics`, with the devnet at `devnet_rpc`.
async fn measure(
    args: &ColdStateArgs,
    workload: Workload,
    setup: &'static str,
    devnet_rpc: &str,
    metrics: &str,
    run: u64,
    reader: alloy_primitives::Address,
) -> anyhow::Result<RunResult> {
    let per_key = (args.rate * args.secs).div_ceil(9) as usize;
    let bodies = presign(reader, workload, args.slots, per_key, run);
    // Let the node settle on the deploy's block before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = counters(metrics).await;
    let (sent, send_errors) = send_load(devnet_rpc, bodies, args.rate).await;
    // The last transactions' flashblocks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = counters(metrics).await;
    let count = after.apply_count - before.apply_count;
    let per_fb = |a: f64, b: f64| if count > 0.0 { r3((a - b) / count) } else { 0.0 };
    Ok(RunResult {
        workload,
        setup,
        apply_mean_ms: per_fb(after.apply_sum * 1e3, before.apply_sum * 1e3),
        flashblocks_applied: count as u64,
        flashblocks_stale: (after.stale - before.stale) as u64,
        upstream_requests_per_flashblock: per_fb(after.requests, before.requests),
        upstream_batches_per_flashblock: per_fb(after.batches, before.batches),
        discovery_rounds_per_flashblock: per_fb(after.discovery_rounds, before.discovery_rounds),
        speculated_txs_kept_per_flashblock: per_fb(after.kept, before.kept),
        discovery_run_ms_per_flashblock: per_fb(after.run_seconds * 1e3, before.run_seconds * 1e3),
        discovery_fetch_ms_per_flashblock: per_fb(
            after.fetch_seconds * 1e3,
            before.fetch_seconds * 1e3,
        ),
        sent,
        send_errors,
    })
}

/// The time of one JSON-RPC batch of `n` `eth_getStorageAt` of fresh slots at `latest` on
/// `rpc` (median of 5): the floor's fetch.
async fn batch_fetch_ms(rpc: &str, n: u64) -> anyhow::Result<f64> {
    let reader = flashnode_tests::address_of(DEV_KEYS[9]).create(0);
    let mut times = Vec::new();
    for round in 0..5u64 {
        let batch: Vec<Value> = (0..n)
            .map(|i| {
                json!({"jsonrpc": "2.0", "id": i, "method": "eth_getStorageAt",
                       "params": [reader, U256::from(900_000_000_000u64 + round * 1_000_000 + i), "latest"]})
            })
            .collect();
        let mut c = KeepAlive::connect(rpc).await?;
        let body = serde_json::to_string(&batch)?;
        let t0 = Instant::now();
        let out = c.post(&body).await?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        let v: Value = serde_json::from_slice(&out).context("batch answer")?;
        anyhow::ensure!(v.as_array().is_some_and(|a| a.len() == n as usize), "batch answered {v}");
    }
    times.sort_by(f64::total_cmp);
    Ok(r3(times[times.len() / 2]))
}

/// Runs every workload in `dev` and in `devnet` + `node`, and the floor.
pub async fn run(args: ColdStateArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let mut runs = Vec::new();
    let mut floors = Vec::new();
    for (i, workload) in args.workloads.iter().copied().enumerate() {
        let extra: Vec<String> = vec!["--gas-limit".into(), args.gas_limit.to_string()];
        // The last dev key deploys the reader (the load uses the first nine).
        let dev = start_dev(&extra, Duration::from_secs(30)).await?;
        let reader = deploy_cold_reader(&dev.devnet_rpc, DEV_KEYS[9]).await;
        eprintln!("cold-state: {workload:?} in dev ({})", loadavg());
        let in_process =
            measure(&args, workload, "dev", &dev.devnet_rpc, &dev.metrics, 2 * i as u64, reader)
                .await?;
        drop(dev);
        // The sidecar starts once the reader is sealed: its storage is canonical state the node
        // never read, as a DEX deployed long ago is (a contract the node saw created has
        // known-empty storage and would cost no reads at all).
        let devnet = start("devnet", &["--gas-limit", &args.gas_limit.to_string()]).await;
        let devnet_rpc = devnet.rpc.clone();
        let reader = deploy_cold_reader(&devnet_rpc, DEV_KEYS[9]).await;
        let (node, metrics) = start_sidecar_node(&devnet).await?;
        eprintln!("cold-state: {workload:?} in devnet + node ({})", loadavg());
        let sidecar = measure(
            &args,
            workload,
            "devnet+node",
            &devnet_rpc,
            &metrics,
            2 * i as u64 + 1,
            reader,
        )
        .await?;
        // The floor: in-process apply plus one batch of the flashblock's cold reads.
        let txs_per_fb = args.rate as f64 * 0.2;
        let reads = match workload {
            Workload::Fresh => txs_per_fb * args.slots as f64,
            Workload::Hot => 0.0,
            Workload::Mixed => txs_per_fb * args.slots as f64 / 2.0,
        };
        let fetch =
            if reads > 0.0 { batch_fetch_ms(&devnet_rpc, reads as u64).await? } else { 0.0 };
        let floor = r3(in_process.apply_mean_ms + fetch);
        floors.push(json!({
            "workload": workload,
            "cold_reads_per_flashblock": reads,
            "batch_fetch_ms": fetch,
            "floor_ms": floor,
            "sidecar_over_floor": if floor > 0.0 { r3(sidecar.apply_mean_ms / floor) } else { 0.0 },
            "sidecar_over_in_process": if in_process.apply_mean_ms > 0.0 { r3(sidecar.apply_mean_ms / in_process.apply_mean_ms) } else { 0.0 },
        }));
        drop(node);
        drop(devnet);
        runs.push(in_process);
        runs.push(sidecar);
    }
    Ok(json!({
        "scenario": "cold-state",
        "machine": machine,
        "args": {"rate": args.rate, "slots": args.slots, "secs": args.secs, "gas_limit": args.gas_limit},
        "result": {"runs": runs, "floors": floors},
    }))
}
