//! `overload`: `flashnode dev` under 256 concurrent gas-cap `eth_call`s (issue #16 point 3).
//!
//! Each caller has its own kept-alive connection and sends, again and again, a pending
//! `eth_call` of a contract that loops until its gas runs out (`JUMPDEST PUSH1 0 JUMP`, given
//! as a state override) with the node's whole gas cap: every one of them is work the node
//! bounds (the executor pool and its queue, the EVM timeout) or refuses at once (-32005).
//! Meanwhile a probe sends a cheap call (`eth_getBalance` of a dev account on `pending`) every
//! `--probe-ms` and the mode monitor samples `flashnode_status`. The same probe runs first
//! with the node idle.
//!
//! Goal: the mode is `flashblocks` in every sample and the cheap call's p99 under load stays
//! within 5x of its idle p99.
//!
//! The probe and the mode monitor run on a thread and runtime of their own, so their figures
//! are the node's and not the bench's: the callers' answers (thousands a second) are parsed on
//! the bench's main runtime. `--floor` has the callers send `eth_chainId` instead, the same
//! flood of requests with no execution behind it: what 256 tight-loop callers cost the cheap
//! call on this machine whatever the node does with their calls.

use crate::{
    http::KeepAlive,
    node::{log_findings, start_dev, ModeMonitor},
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

/// Code that loops until its gas runs out: JUMPDEST PUSH1 0 JUMP.
pub(crate) const LOOP_CODE: &str = "0x5b600056";
/// The first dev account (the cheap call reads its pending balance).
const DEV_ACCOUNT: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// The cheap call: the pending balance of [`DEV_ACCOUNT`].
const CHEAP: &str = "eth_getBalance";

fn cheap() -> Value {
    json!([DEV_ACCOUNT, "pending"])
}

/// Options of the `overload` scenario.
#[derive(Debug, Args)]
pub struct OverloadArgs {
    /// Concurrent gas-cap callers.
    #[arg(long, default_value_t = 256)]
    callers: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Seconds of idle probing before the load.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Period of the cheap-call probe, ms.
    #[arg(long, default_value_t = 20)]
    probe_ms: u64,
    /// Period of the `flashnode_status` mode samples, ms.
    #[arg(long, default_value_t = 1000)]
    sample_ms: u64,
    /// Gas of each heavy call (the node's `--rpc-gas-cap` default).
    #[arg(long, default_value_t = 50_000_000)]
    gas: u64,
    /// The floor: the callers send `eth_chainId` (no execution) instead of the heavy call.
    #[arg(long)]
    floor: bool,
    /// Extra flags for `flashnode dev` (e.g. `--rpc-max-concurrent-executions=4`).
    #[arg(long, allow_hyphen_values = true)]
    node_arg: Vec<String>,
}

pub(crate) fn heavy_call(gas: u64) -> Value {
    let to = "0x7777777777777777777777777777777777777777";
    json!([
        {"to": to, "gas": format!("0x{gas:x}")},
        "pending",
        {to: {"code": LOOP_CODE}}
    ])
}

/// What the probe saw: the latency of each answered cheap call (ms) and the errors answered.
#[derive(Default)]
pub(crate) struct Probed {
    pub(crate) answered_ms: Vec<f64>,
    pub(crate) errors: BTreeMap<String, u64>,
}

/// Sends the cheap call `method(params)` every `period` until `stop`.
pub(crate) async fn probe(
    rpc: String,
    period: Duration,
    stop: Arc<AtomicBool>,
    method: &'static str,
    params: Value,
) -> anyhow::Result<Probed> {
    let mut conn = KeepAlive::connect(&rpc).await?;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Probed::default();
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let t = Instant::now();
        let r = conn.call(method, params.clone()).await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if r["result"].is_string() {
            out.answered_ms.push(ms);
        } else {
            let error = r["error"]["message"].as_str().unwrap_or("no result").to_string();
            *out.errors.entry(error).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// How the heavy calls were answered.
#[derive(Default)]
struct Outcomes {
    by_outcome: BTreeMap<String, u64>,
    answered_ms: Vec<f64>,
}

/// How a heavy call was answered: `result`, `refused_busy` (-32005), `batch_budget_spent`,
/// `evm_timeout` or `execution_error` (-32000), or `error_<code>`.
pub(crate) fn outcome_of(answer: &Value) -> String {
    match answer["error"]["code"].as_i64() {
        None => "result".into(),
        Some(-32005) => "refused_busy".into(),
        Some(-32000) => {
            let msg = answer["error"]["message"].as_str().unwrap_or_default();
            if msg.contains("budget") {
                "batch_budget_spent".into()
            } else if msg.contains("timeout") {
                "evm_timeout".into()
            } else {
                "execution_error".into()
            }
        }
        Some(code) => format!("error_{code}"),
    }
}

/// One caller: the heavy call again and again until `stop`.
async fn caller(rpc: String, gas: Option<u64>, stop: Arc<AtomicBool>) -> Outcomes {
    let mut out = Outcomes::default();
    let Ok(mut conn) = KeepAlive::connect(&rpc).await else {
        out.by_outcome.insert("connect_failed".into(), 1);
        return out;
    };
    while !stop.load(Ordering::Acquire) {
        let t = Instant::now();
        let call = match gas {
            Some(gas) => conn.call("eth_call", heavy_call(gas)).await,
            None => conn.call("eth_chainId", json!([])).await,
        };
        let outcome = match call {
            Ok(r) => outcome_of(&r),
            Err(_) => "transport_error".to_string(),
        };
        out.answered_ms.push(t.elapsed().as_secs_f64() * 1e3);
        *out.by_outcome.entry(outcome).or_insert(0) += 1;
    }
    out
}

/// Runs the scenario.
pub async fn run(args: OverloadArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    // The callers all come from 127.0.0.1: lift the per-IP connection limit above them.
    let mut extra: Vec<String> =
        vec!["--rpc-per-ip-connections".into(), (args.callers + 64).to_string()];
    extra.extend(args.node_arg.iter().cloned());
    let dev = start_dev(&extra, Duration::from_secs(60)).await?;
    let rpc = dev.running.rpc.clone();
    let probe_period = Duration::from_millis(args.probe_ms);
    let (measure, measure_stop, measure_thread) = measuring_runtime()?;
    let monitor = |rpc: String| {
        let _in_measure = measure.enter();
        ModeMonitor::spawn(rpc, Duration::from_millis(args.sample_ms))
    };

    // Idle.
    let stop = Arc::new(AtomicBool::new(false));
    let idle_modes = monitor(rpc.clone());
    let idle_probe = measure.spawn(probe(rpc.clone(), probe_period, stop.clone(), CHEAP, cheap()));
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    stop.store(true, Ordering::Release);
    let idle = idle_probe.await.context("idle probe")??;
    let idle_modes = idle_modes.finish().await;

    // Under load.
    let stop = Arc::new(AtomicBool::new(false));
    let gas = (!args.floor).then_some(args.gas);
    let callers: Vec<_> =
        (0..args.callers).map(|_| tokio::spawn(caller(rpc.clone(), gas, stop.clone()))).collect();
    // Let every caller connect and the pool fill before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let modes = monitor(rpc.clone());
    let probe_stop = Arc::new(AtomicBool::new(false));
    let load_probe =
        measure.spawn(probe(rpc.clone(), probe_period, probe_stop.clone(), CHEAP, cheap()));
    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    probe_stop.store(true, Ordering::Release);
    let loaded = load_probe.await.context("load probe")??;
    let modes = modes.finish().await;
    stop.store(true, Ordering::Release);
    let mut outcomes = Outcomes::default();
    for c in callers {
        // A caller finishes the call in flight (at most the EVM timeout).
        match tokio::time::timeout(Duration::from_secs(30), c).await {
            Ok(Ok(o)) => {
                for (k, v) in o.by_outcome {
                    *outcomes.by_outcome.entry(k).or_insert(0) += v;
                }
                outcomes.answered_ms.extend(o.answered_ms);
            }
            _ => *outcomes.by_outcome.entry("caller_stuck".into()).or_insert(0) += 1,
        }
    }
    let _ = measure_stop.send(());
    let _ = measure_thread.join();
    let page = flashnode_tests::scrape(&dev.metrics).await;
    let metric = |name: &str| flashnode_tests::metric(&page, name, &[]);

    let (idle_s, load_s) = (Summary::of(&idle.answered_ms), Summary::of(&loaded.answered_ms));
    let samples: u64 = modes.modes.values().sum();
    let flashblocks = modes.modes.get("flashblocks").copied().unwrap_or(0);
    let p50_ratio = r3(load_s.p50 / idle_s.p50);
    let p99_ratio = r3(load_s.p99 / idle_s.p99);
    Ok(json!({
        "scenario": if args.floor { "overload-floor" } else { "overload" },
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "params": {
            "callers": args.callers,
            "duration_secs": args.duration_secs,
            "idle_secs": args.idle_secs,
            "probe_ms": args.probe_ms,
            "sample_ms": args.sample_ms,
            "heavy_call": if args.floor { json!("eth_chainId (the floor: no execution)") } else { json!({"code": LOOP_CODE, "gas": args.gas, "block": "pending"}) },
            "measuring": "the probe and the mode monitor on their own thread and current-thread runtime",
            "cheap_call": format!("eth_getBalance({DEV_ACCOUNT}, pending)"),
            "node_args": dev.args,
        },
        "result": {
            "mode_samples_under_load": modes.modes,
            "mode_samples_idle": idle_modes.modes,
            "flashblocks_in_every_sample": samples > 0 && flashblocks == samples && modes.failed_polls == 0,
            "failed_status_polls": modes.failed_polls,
            "cheap_call_idle_ms": idle_s.rounded(),
            "cheap_call_under_load_ms": load_s.rounded(),
            "cheap_call_errors_idle": idle.errors,
            "cheap_call_errors_under_load": loaded.errors,
            "ratio_p50_load_vs_idle": p50_ratio,
            "ratio_p99_load_vs_idle": p99_ratio,
            "p99_within_5x": p99_ratio <= 5.0 && loaded.errors.is_empty(),
            "heavy_calls": outcomes.by_outcome,
            "heavy_call_answer_ms": Summary::of(&outcomes.answered_ms).rounded(),
            "node_metrics": {
                "executions_refused_total": metric("flashnode_rpc_executions_refused_total"),
                "execution_timeouts_total": metric("flashnode_rpc_execution_timeouts_total"),
                "executions_cancelled_total": metric("flashnode_rpc_executions_cancelled_total"),
            },
            "final_status": modes.final_status,
            "log_findings": log_findings(&dev.running),
        },
    }))
}

/// A thread with a current-thread runtime for the probe and the mode monitor: its handle, the
/// sender that stops it and the thread.
pub(crate) fn measuring_runtime() -> anyhow::Result<(
    tokio::runtime::Handle,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
)> {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("overload-probe".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        let _ = handle_tx.send(rt.handle().clone());
        let _ = rt.block_on(stop_rx);
    })?;
    let handle = handle_rx.recv().context("the probe runtime did not start")?;
    Ok((handle, stop_tx, thread))
}
