//! `batch-fairness`: what one client's JSON-RPC batch of gas-cap `eth_call`s costs another
//! client's cheap call (issue #25 point 2).
//!
//! A probe sends a cheap pending `eth_call` (a contract that returns at once, so the call
//! needs an executor like the heavy ones) every `--probe-ms` on its own connection, thread and
//! runtime, in three phases of `--phase-secs` each:
//! 1. idle;
//! 2. **singles**: another client sends the heavy call (a loop to the gas cap) one request
//!    after another: the same load without the batch;
//! 3. **batch**: the same client sends batches of `--batch` heavy calls back to back.
//!
//! Goal: the probe's p99 in the batch phase within 3x of the singles phase. A batch's calls
//! run one after another and share one EVM budget, so a batch holds at most one executor, as a
//! client sending one call at a time does.

use crate::{
    http::KeepAlive,
    node::{log_findings, start_dev},
    overload::{heavy_call, measuring_runtime, outcome_of, probe},
    stats::{loadavg, r3, Machine, Summary},
};
use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Code that returns at once (STOP): the cheap call's target.
const CHEAP_CODE: &str = "0x00";
const CHEAP_TO: &str = "0x6666666666666666666666666666666666666666";

/// Options of the `batch-fairness` scenario.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Heavy calls per batch (the node's `--rpc-batch-request-limit` default).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Seconds of each phase (idle, singles, batch).
    #[arg(long, default_value_t = 20)]
    phase_secs: u64,
    /// Period of the cheap-call probe, ms.
    #[arg(long, default_value_t = 20)]
    probe_ms: u64,
    /// Gas of each heavy call (the node's `--rpc-gas-cap` default).
    #[arg(long, default_value_t = 50_000_000)]
    gas: u64,
    /// Extra flags for `flashnode dev`.
    #[arg(long, allow_hyphen_values = true)]
    node_arg: Vec<String>,
}

fn cheap_call() -> Value {
    json!([{"to": CHEAP_TO, "data": "0x"}, "pending", {CHEAP_TO: {"code": CHEAP_CODE}}])
}

/// What the heavy client sent and how long each request (a call or a whole batch) took.
#[derive(Default)]
struct Heavy {
    requests: u64,
    calls: u64,
    request_ms: Vec<f64>,
    outcomes: BTreeMap<String, u64>,
}

/// Sends heavy calls until `stop`: one per request (`batch` None) or `batch` per request.
async fn heavy(rpc: String, gas: u64, batch: Option<usize>, stop: Arc<AtomicBool>) -> Heavy {
    let mut out = Heavy::default();
    let Ok(mut conn) = KeepAlive::connect(&rpc).await else {
        out.outcomes.insert("connect_failed".into(), 1);
        return out;
    };
    let body = match batch {
        None => json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": heavy_call(gas)}),
        Some(n) => Value::Array(
            (0..n)
                .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": heavy_call(gas)}))
                .collect(),
        ),
    }
    .to_string();
    while !stop.load(Ordering::Acquire) {
        let t = Instant::now();
        let answer =
            conn.post(&body).await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        out.request_ms.push(t.elapsed().as_secs_f64() * 1e3);
        out.requests += 1;
        let items = match answer {
            Some(Value::Array(items)) => items,
            Some(one) => vec![one],
            None => {
                *out.outcomes.entry("transport_error".into()).or_insert(0) += 1;
                continue;
            }
        };
        for item in &items {
            out.calls += 1;
            *out.outcomes.entry(outcome_of(item)).or_insert(0) += 1;
        }
    }
    out
}

fn heavy_report(h: &Heavy) -> Value {
    json!({
        "requests": h.requests,
        "calls": h.calls,
        "request_ms": Summary::of(&h.request_ms).rounded(),
        "outcomes": h.outcomes,
    })
}

/// Runs the scenario.
pub async fn run(args: BatchArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let dev = start_dev(&args.node_arg, Duration::from_secs(60)).await?;
    let rpc = dev.running.rpc.clone();
    let period = Duration::from_millis(args.probe_ms);
    let phase = Duration::from_secs(args.phase_secs);
    let (measure, measure_stop, measure_thread) = measuring_runtime()?;
    let mut phases = Vec::new();
    let mut heavies = Vec::new();
    for batch in [None, Some(None), Some(Some(args.batch))] {
        let stop = Arc::new(AtomicBool::new(false));
        let load = batch.map(|b| tokio::spawn(heavy(rpc.clone(), args.gas, b, stop.clone())));
        if load.is_some() {
            // Let the heavy client take its executor before measuring.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let probe_stop = Arc::new(AtomicBool::new(false));
        let probed =
            measure.spawn(probe(rpc.clone(), period, probe_stop.clone(), "eth_call", cheap_call()));
        tokio::time::sleep(phase).await;
        probe_stop.store(true, Ordering::Release);
        phases.push(probed.await.context("probe")??);
        stop.store(true, Ordering::Release);
        if let Some(load) = load {
            // The request in flight ends within the EVM budget.
            heavies.push(tokio::time::timeout(Duration::from_secs(30), load).await??);
        }
    }
    let _ = measure_stop.send(());
    let _ = measure_thread.join();
    let page = flashnode_tests::scrape(&dev.metrics).await;
    let metric = |name: &str| flashnode_tests::metric(&page, name, &[]);
    let s: Vec<Summary> = phases.iter().map(|p| Summary::of(&p.answered_ms)).collect();
    let ratio_p99 = r3(s[2].p99 / s[1].p99);
    Ok(json!({
        "scenario": "batch-fairness",
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "params": {
            "batch": args.batch,
            "phase_secs": args.phase_secs,
            "probe_ms": args.probe_ms,
            "heavy_call": {"code": crate::overload::LOOP_CODE, "gas": args.gas, "block": "pending"},
            "cheap_call": format!("eth_call to {CHEAP_TO} (code STOP) at pending"),
            "node_args": dev.args,
        },
        "result": {
            "cheap_call_idle_ms": s[0].clone().rounded(),
            "cheap_call_beside_singles_ms": s[1].clone().rounded(),
            "cheap_call_beside_batches_ms": s[2].clone().rounded(),
            "cheap_call_errors": {
                "idle": phases[0].errors,
                "singles": phases[1].errors,
                "batches": phases[2].errors,
            },
            "ratio_p99_batches_vs_singles": ratio_p99,
            "ratio_p99_batches_vs_idle": r3(s[2].p99 / s[0].p99),
            "p99_within_3x_of_singles": ratio_p99 <= 3.0 && phases[2].errors.is_empty(),
            "singles": heavy_report(&heavies[0]),
            "batches": heavy_report(&heavies[1]),
            "node_metrics": {
                "executions_refused_total": metric("flashnode_rpc_executions_refused_total"),
                "execution_timeouts_total": metric("flashnode_rpc_execution_timeouts_total"),
            },
            "log_findings": log_findings(&dev.running),
        },
    }))
}
