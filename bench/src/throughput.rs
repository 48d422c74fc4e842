//! `receipt-throughput`: `eth_getTransactionReceipt` under load (wrk), side by side in one run:
//!
//! - (a) the node, for a preconfirmed transaction (answered from the flashblock overlay),
//! - (b) the devnet's canonical RPC, for a sealed transaction,
//! - (c) the node, for the same sealed transaction (not in the overlay: proxied upstream).
//!
//! `flashnode dev` runs with long blocks (30 s) and 1 s flashblocks so the preconfirmation
//! lives through all three runs; the bench checks before each run that it ends before the block
//! seals, and checks afterwards that the transaction was still preconfirmed.

use crate::{
    http::{quantity, KeepAlive},
    node::{apply_histogram, log_findings, start_dev, ModeMonitor},
    stats::{loadavg, r3, Machine},
};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use anyhow::{bail, ensure, Context};
use clap::Args;
use flashnode_tests::{sign_1559, DEV_KEYS};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `receipt-throughput` flags.
#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    /// Devnet block time, seconds (the preconfirmation must outlive the three runs).
    #[arg(long, default_value_t = 30)]
    pub block_time_secs: u64,
    /// Devnet flashblock interval, ms.
    #[arg(long, default_value_t = 1000)]
    pub flashblock_interval_ms: u64,
    /// The node's `--pending-stale-after`. Must exceed the flashblock interval, or the pending
    /// block lapses for a moment before every flashblock and receipts answer null.
    #[arg(long, default_value = "3s")]
    pub pending_stale_after: String,
    /// Seconds per wrk run (three runs must fit in one block).
    #[arg(long, default_value_t = 8)]
    pub duration_secs: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    pub connections: u32,
    /// The wrk binary.
    #[arg(long, env = "WRK", default_value = "wrk")]
    pub wrk: String,
}

/// One load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRun {
    /// Short label: node_preconfirmed, devnet_canonical, node_proxied_sealed.
    pub label: String,
    /// What is queried, in words.
    pub what: String,
    /// URL under load.
    pub url: String,
    /// The transaction hash asked for.
    pub tx: B256,
    /// The wrk command line.
    pub command: String,
    /// Requests per second (wrk's `Requests/sec`).
    pub requests_per_sec: f64,
    /// Latency percentiles in ms from wrk's `--latency` distribution.
    pub latency_ms: WrkLatency,
    /// Exact figures from the Lua `done()` hook (µs) and the body checks.
    pub lua: Value,
    /// Socket errors and non-2xx counts from the text output.
    pub socket_errors: Value,
    /// Responses checked as non-null receipts / null results / errors (from the Lua hook).
    pub receipts_ok: u64,
    /// Null results seen under load (should be 0).
    pub null_results: u64,
    /// Error responses seen under load (should be 0).
    pub error_responses: u64,
    /// wrk's whole stdout.
    pub wrk_output: String,
}

/// wrk's latency distribution.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WrkLatency {
    /// Average.
    pub avg: f64,
    /// 50%.
    pub p50: f64,
    /// 75%.
    pub p75: f64,
    /// 90%.
    pub p90: f64,
    /// 99%.
    pub p99: f64,
    /// Max.
    pub max: f64,
}

/// Runs the scenario and returns the result document.
pub async fn run(args: ThroughputArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let wrk_version = wrk_version(&args.wrk).await?;

    let extra: Vec<String> = vec![
        "--block-time".into(),
        format!("{}s", args.block_time_secs),
        "--flashblock-interval".into(),
        format!("{}ms", args.flashblock_interval_ms),
        "--pending-stale-after".into(),
        args.pending_stale_after.clone(),
    ];
    let dev = start_dev(&extra, Duration::from_secs(args.block_time_secs * 2 + 10)).await?;
    let node_url = dev.running.rpc.clone();
    let devnet_url = dev.devnet_rpc.clone();
    eprintln!("receipt-throughput: node {node_url} devnet {devnet_url} (log {})", dev.running.proc.log.display());
    let monitor = ModeMonitor::spawn(node_url.clone(), Duration::from_millis(10));
    let mut node = KeepAlive::connect(&node_url).await?;
    let mut devnet = KeepAlive::connect(&devnet_url).await?;

    let to = TxKind::Call(Address::repeat_byte(0x42));
    let raw_a = sign_1559(DEV_KEYS[0], 901, 0, to, U256::from(1), Bytes::new(), 21_000, 50_000_000_000);
    let raw_b = sign_1559(DEV_KEYS[1], 901, 0, to, U256::from(1), Bytes::new(), 21_000, 50_000_000_000);
    let (sealed_tx, preconf_tx) = (keccak256(&raw_a), keccak256(&raw_b));

    // The sealed transaction: send, then wait for the devnet's canonical RPC to serve it.
    let r = node.call("eth_sendRawTransaction", json!([raw_a])).await?;
    ensure!(r["error"].is_null(), "sending the sealed-to-be tx: {r}");
    eprintln!("receipt-throughput: sent {sealed_tx}; waiting up to {}s for its block to seal", args.block_time_secs + 5);
    let deadline = Instant::now() + Duration::from_secs(args.block_time_secs + 15);
    let sealed_at = loop {
        let r = devnet.call("eth_getTransactionReceipt", json!([sealed_tx])).await?;
        if !r["result"].is_null() {
            break Instant::now();
        }
        ensure!(Instant::now() < deadline, "the first tx was never sealed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The next block started when the previous sealed (observed within 20 ms): it seals one
    // block time later. Keep a margin for the polling delay.
    let seal_eta = sealed_at + Duration::from_secs(args.block_time_secs) - Duration::from_millis(100);

    // The preconfirmed transaction, in the block that has just started.
    let r = node.call("eth_sendRawTransaction", json!([raw_b])).await?;
    ensure!(r["error"].is_null(), "sending the preconfirmed tx: {r}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if is_preconfirmed(&mut node, preconf_tx).await? {
            break;
        }
        ensure!(Instant::now() < deadline, "the node never served {preconf_tx} as preconfirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "receipt-throughput: {preconf_tx} preconfirmed; {:.1}s until the block seals",
        seal_eta.saturating_duration_since(Instant::now()).as_secs_f64()
    );

    // Sanity: every target answers a real receipt; the canonical RPC does not know the
    // preconfirmed tx yet, and a null result has the exact shape the Lua check looks for.
    let s_pre = receipt_summary(&node.call("eth_getTransactionReceipt", json!([preconf_tx])).await?)?;
    let s_canon = receipt_summary(&devnet.call("eth_getTransactionReceipt", json!([sealed_tx])).await?)?;
    let s_proxied = receipt_summary(&node.call("eth_getTransactionReceipt", json!([sealed_tx])).await?)?;
    let null_body = devnet.post(&crate::http::rpc_body("eth_getTransactionReceipt", json!([preconf_tx]))).await?;
    let null_body = String::from_utf8_lossy(&null_body).to_string();
    ensure!(null_body.contains("\"result\":null"), "canonical RPC must not know the preconfirmed tx yet: {null_body}");
    let sanity = json!({
        "node_preconfirmed": s_pre,
        "devnet_canonical_sealed": s_canon,
        "node_proxied_sealed": s_proxied,
        "devnet_canonical_answer_for_preconfirmed_tx": null_body,
    });

    let targets = [
        ("node_preconfirmed", "node eth_getTransactionReceipt(preconfirmed tx), answered from the flashblock overlay", node_url.clone(), preconf_tx),
        ("devnet_canonical", "devnet canonical RPC eth_getTransactionReceipt(sealed tx)", devnet_url.clone(), sealed_tx),
        ("node_proxied_sealed", "node eth_getTransactionReceipt(sealed tx): not in the overlay, proxied to the devnet", node_url.clone(), sealed_tx),
    ];
    let mut runs = Vec::new();
    let mut still_preconfirmed = Vec::new();
    for (label, what, url, tx) in targets {
        let needed = Duration::from_secs(args.duration_secs) + Duration::from_millis(1500);
        if Instant::now() + needed > seal_eta {
            bail!(
                "run {label} would overlap the seal of the block ({:.1}s left, {:.1}s needed): lower --duration-secs or raise --block-time-secs",
                seal_eta.saturating_duration_since(Instant::now()).as_secs_f64(),
                needed.as_secs_f64()
            );
        }
        eprintln!("receipt-throughput: wrk {label} ({url}, {tx})");
        let run = wrk_run(&args, label, what, &url, tx).await?;
        eprintln!(
            "receipt-throughput:   {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, receipts {} nulls {} errors {}",
            run.requests_per_sec, run.latency_ms.p50, run.latency_ms.p99, run.receipts_ok, run.null_results, run.error_responses
        );
        runs.push(run);
        let ok = is_preconfirmed(&mut node, preconf_tx).await?;
        still_preconfirmed.push(json!({"after": label, "preconfirmed": ok}));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let seal_left_s = r3(seal_eta.saturating_duration_since(Instant::now()).as_secs_f64());
    let modes = monitor.finish().await;
    let findings = log_findings(&dev.running);
    let apply = apply_histogram(&dev.metrics).await;

    let rps = |l: &str| runs.iter().find(|r| r.label == l).map(|r| r.requests_per_sec).unwrap_or(f64::NAN);
    let all_preconfirmed = still_preconfirmed.iter().all(|v| v["preconfirmed"] == true);
    let all_checked = runs.iter().all(|r| r.null_results == 0 && r.error_responses == 0);
    Ok(json!({
        "scenario": "receipt-throughput",
        "started_unix": started_unix,
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "config": {
            "flashnode_args": dev.args,
            "wrk": wrk_version,
            "duration_secs": args.duration_secs,
            "threads": args.threads,
            "connections": args.connections,
        },
        "txs": {"preconfirmed": preconf_tx, "sealed": sealed_tx},
        "sanity_before": sanity,
        "preconfirmed_after_each_run": still_preconfirmed,
        "preconfirmed_throughout": all_preconfirmed,
        "every_response_checked_ok": all_checked,
        "seconds_left_before_seal_at_end": seal_left_s,
        "result": {
            "node_preconfirmed_rps": r3(rps("node_preconfirmed")),
            "devnet_canonical_rps": r3(rps("devnet_canonical")),
            "node_proxied_sealed_rps": r3(rps("node_proxied_sealed")),
            "ratio_node_preconfirmed_vs_devnet_canonical": r3(rps("node_preconfirmed") / rps("devnet_canonical")),
            "ratio_node_proxied_vs_devnet_canonical": r3(rps("node_proxied_sealed") / rps("devnet_canonical")),
            "runs": runs,
        },
        "node": {
            "log": dev.running.proc.log.display().to_string(),
            "metrics": dev.metrics,
            "overlay_apply_seconds": apply,
            "mode_monitor": modes,
            "log_findings": findings,
        },
    }))
}

/// Whether the node serves `tx` with a block number above its `eth_blockNumber`.
async fn is_preconfirmed(node: &mut KeepAlive, tx: B256) -> anyhow::Result<bool> {
    let r = node.call("eth_getTransactionReceipt", json!([tx])).await?;
    if r["result"].is_null() {
        return Ok(false);
    }
    let tip = node.call("eth_blockNumber", json!([])).await?;
    let (Some(rb), Some(tip)) = (quantity(&r["result"]["blockNumber"]), quantity(&tip["result"])) else {
        bail!("unexpected answers: {r} / {tip}");
    };
    Ok(rb > tip)
}

fn receipt_summary(r: &Value) -> anyhow::Result<Value> {
    let res = &r["result"];
    ensure!(!res.is_null(), "expected a receipt, got {r}");
    ensure!(res["status"] == "0x1", "expected a successful receipt: {r}");
    Ok(json!({
        "blockNumber": res["blockNumber"],
        "transactionIndex": res["transactionIndex"],
        "status": res["status"],
        "response_bytes": r.to_string().len(),
    }))
}

async fn wrk_version(wrk: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(wrk)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("running {wrk} (bench/install-tools.sh installs it)"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().next().unwrap_or("wrk").trim().to_string())
}

const LUA: &str = r#"
wrk.method = "POST"
wrk.body = '__BODY__'
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  oks = 0
  nulls = 0
  errs = 0
end

-- Every response is checked: a receipt (has blockNumber), a null result, or an error.
function response(status, headers, body)
  if status ~= 200 then
    errs = errs + 1
  elseif string.find(body, '"result":null', 1, true) then
    nulls = nulls + 1
  elseif string.find(body, '"error"', 1, true) then
    errs = errs + 1
  elseif string.find(body, '"blockNumber"', 1, true) then
    oks = oks + 1
  else
    errs = errs + 1
  end
end

function done(summary, latency, requests)
  local o, n, e = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("oks")
    n = n + t:get("nulls")
    e = e + t:get("errs")
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"latency_us":{"min":%.0f,"mean":%.1f,"stdev":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f},' ..
    '"checked":{"receipts":%.0f,"nulls":%.0f,"errors":%.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.min, latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, o, n, e))
end
"#;

async fn wrk_run(args: &ThroughputArgs, label: &str, what: &str, url: &str, tx: B256) -> anyhow::Result<LoadRun> {
    let body = crate::http::rpc_body("eth_getTransactionReceipt", json!([tx]));
    let script = std::env::temp_dir().join(format!("flashnode-bench-{}-{label}.lua", std::process::id()));
    std::fs::write(&script, LUA.replace("__BODY__", &body))?;
    let url = format!("{url}/");
    let cmd_args: Vec<String> = vec![
        format!("-t{}", args.threads),
        format!("-c{}", args.connections),
        format!("-d{}s", args.duration_secs),
        "--timeout".into(),
        "2s".into(),
        "--latency".into(),
        "-s".into(),
        script.display().to_string(),
        url.clone(),
    ];
    let out = tokio::process::Command::new(&args.wrk).args(&cmd_args).output().await.context("running wrk")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "wrk failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    let lua: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .map(serde_json::from_str)
        .transpose()?
        .context("wrk printed no BENCH_JSON line")?;
    let requests_per_sec = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no Requests/sec in wrk output")?;
    let mut latency = WrkLatency::default();
    let mut in_dist = false;
    for line in stdout.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        let mut parts = t.split_whitespace();
        if t.starts_with("Latency ") && !in_dist {
            // "Latency   1.23ms  456.00us  12.34ms   89.00%"
            parts.next();
            latency.avg = parts.next().and_then(duration_ms).unwrap_or(f64::NAN);
            parts.next();
            latency.max = parts.next().and_then(duration_ms).unwrap_or(f64::NAN);
            continue;
        }
        if in_dist {
            match (parts.next(), parts.next().and_then(duration_ms)) {
                (Some("50%"), Some(v)) => latency.p50 = v,
                (Some("75%"), Some(v)) => latency.p75 = v,
                (Some("90%"), Some(v)) => latency.p90 = v,
                (Some("99%"), Some(v)) => {
                    latency.p99 = v;
                    in_dist = false;
                }
                _ => {}
            }
        }
    }
    let count = |prefix: &str| -> Option<String> { stdout.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|s| s.trim().to_string())) };
    let socket_errors = json!({
        "socket_errors": count("Socket errors:"),
        "non_2xx_3xx": count("Non-2xx or 3xx responses:"),
    });
    let checked = &lua["checked"];
    Ok(LoadRun {
        label: label.into(),
        what: what.into(),
        url,
        tx,
        command: format!("{} {}", args.wrk, cmd_args.join(" ")),
        requests_per_sec,
        latency_ms: latency,
        receipts_ok: checked["receipts"].as_u64().unwrap_or(0),
        null_results: checked["nulls"].as_u64().unwrap_or(0),
        error_responses: checked["errors"].as_u64().unwrap_or(0),
        lua,
        socket_errors,
        wrk_output: stdout,
    })
}

/// `1.23ms`, `456.00us`, `1.02s`, `2.00m` → ms.
fn duration_ms(s: &str) -> Option<f64> {
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| r3(v * mul))
}
