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
use serde::{Deserialize, Serialize};
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
    /// Rounds, one per block: each runs the three targets once (order rotated).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// 1/5/15-minute load averages just before the run.
    pub loadavg_before: String,
    /// wrk's whole stdout.
    pub wrk_output: String,
}

/// wrk's latency distribution.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
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
    ensure!(
        args.rounds >= 1 && args.rounds < DEV_KEYS.len(),
        "--rounds must be 1..={}",
        DEV_KEYS.len() - 1
    );
    let machine = Machine::read();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
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
    eprintln!(
        "receipt-throughput: node {node_url} devnet {devnet_url} (log {})",
        dev.running.proc.log.display()
    );
    let monitor = ModeMonitor::spawn(node_url.clone(), Duration::from_millis(10));
    let mut node = KeepAlive::connect(&node_url).await?;
    let mut devnet = KeepAlive::connect(&devnet_url).await?;

    let to = TxKind::Call(Address::repeat_byte(0x42));
    let sign =
        |key: &str| sign_1559(key, 901, 0, to, U256::from(1), Bytes::new(), 21_000, 50_000_000_000);

    // The sealed transaction: send, then wait for the devnet's canonical RPC to serve it.
    let raw_a = sign(DEV_KEYS[0]);
    let sealed_tx = keccak256(&raw_a);
    let r = node.call("eth_sendRawTransaction", json!([raw_a])).await?;
    ensure!(r["error"].is_null(), "sending the sealed-to-be tx: {r}");
    eprintln!(
        "receipt-throughput: sent {sealed_tx}; waiting up to {}s for its block to seal",
        args.block_time_secs + 15
    );
    let mut sealed_at =
        wait_for_receipt(&mut devnet, sealed_tx, Duration::from_secs(args.block_time_secs + 15))
            .await?;

    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        // The block that started when the previous one sealed (observed within 20 ms) seals one
        // block time later; keep a margin for the polling delay.
        let seal_eta =
            sealed_at + Duration::from_secs(args.block_time_secs) - Duration::from_millis(100);

        // A fresh preconfirmed transaction (a key not used yet: nonce 0) in the block that has
        // just started.
        let raw_b = sign(DEV_KEYS[1 + round]);
        let preconf_tx = keccak256(&raw_b);
        let r = node.call("eth_sendRawTransaction", json!([raw_b])).await?;
        ensure!(r["error"].is_null(), "sending the preconfirmed tx: {r}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_preconfirmed(&mut node, preconf_tx).await? {
            ensure!(
                Instant::now() < deadline,
                "the node never served {preconf_tx} as preconfirmed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "receipt-throughput: round {}/{}: {preconf_tx} preconfirmed; {:.1}s until the block seals",
            round + 1,
            args.rounds,
            seal_eta.saturating_duration_since(Instant::now()).as_secs_f64()
        );

        // Sanity: every target answers a real receipt; the canonical RPC does not know the
        // preconfirmed tx yet, and its null answer has the exact shape the Lua check looks for.
        let s_pre =
            receipt_summary(&node.call("eth_getTransactionReceipt", json!([preconf_tx])).await?)?;
        let s_canon =
            receipt_summary(&devnet.call("eth_getTransactionReceipt", json!([sealed_tx])).await?)?;
        let s_proxied =
            receipt_summary(&node.call("eth_getTransactionReceipt", json!([sealed_tx])).await?)?;
        let null_body = devnet
            .post(&crate::http::rpc_body("eth_getTransactionReceipt", json!([preconf_tx])))
            .await?;
        let null_body = String::from_utf8_lossy(&null_body).to_string();
        ensure!(
            null_body.contains("\"result\":null"),
            "canonical RPC must not know the preconfirmed tx yet: {null_body}"
        );
        let sanity = json!({
            "node_preconfirmed": s_pre,
            "devnet_canonical_sealed": s_canon,
            "node_proxied_sealed": s_proxied,
            "devnet_canonical_answer_for_preconfirmed_tx": null_body,
        });

        let mut targets = vec![
            (NODE_PRECONFIRMED, "node eth_getTransactionReceipt(preconfirmed tx), answered from the flashblock overlay", node_url.clone(), preconf_tx),
            (DEVNET_CANONICAL, "devnet canonical RPC eth_getTransactionReceipt(sealed tx)", devnet_url.clone(), sealed_tx),
            (NODE_PROXIED, "node eth_getTransactionReceipt(sealed tx): not in the overlay, proxied to the devnet", node_url.clone(), sealed_tx),
        ];
        // Rotate the order each round so no target always runs first or last.
        targets.rotate_left(round % 3);
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
            let load_before = loadavg();
            let mut run = wrk_run(&args, label, what, &url, tx).await?;
            run.loadavg_before = load_before;
            eprintln!(
                "receipt-throughput:   {label:<20} {:>8.0} req/s, p50 {:.3} ms, p99 {:.3} ms, receipts {} nulls {} errors {}",
                run.requests_per_sec, run.latency_ms.p50, run.latency_ms.p99, run.receipts_ok, run.null_results, run.error_responses
            );
            runs.push(run);
            let ok = is_preconfirmed(&mut node, preconf_tx).await?;
            still_preconfirmed.push(json!({"after": label, "preconfirmed": ok}));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let seal_left_s = r3(seal_eta.saturating_duration_since(Instant::now()).as_secs_f64());
        let rps = |l: &str| {
            runs.iter().find(|r| r.label == l).map(|r| r.requests_per_sec).unwrap_or(f64::NAN)
        };
        rounds.push(json!({
            "round": round + 1,
            "preconfirmed_tx": preconf_tx,
            "sanity_before": sanity,
            "preconfirmed_after_each_run": still_preconfirmed,
            "seconds_left_before_seal_at_end": seal_left_s,
            "ratio_node_preconfirmed_vs_devnet_canonical": r3(rps(NODE_PRECONFIRMED) / rps(DEVNET_CANONICAL)),
            "ratio_node_proxied_vs_devnet_canonical": r3(rps(NODE_PROXIED) / rps(DEVNET_CANONICAL)),
            "runs": runs,
        }));

        if round + 1 < args.rounds {
            // Next round in the next block: wait for this round's preconfirmed tx to be sealed.
            eprintln!("receipt-throughput: waiting for the block to seal");
            sealed_at = wait_for_receipt(
                &mut devnet,
                preconf_tx,
                Duration::from_secs(args.block_time_secs + 15),
            )
            .await?;
        }
    }
    let modes = monitor.finish().await;
    let findings = log_findings(&dev.running);
    let apply = apply_histogram(&dev.metrics).await;

    let all_runs: Vec<LoadRun> = rounds
        .iter()
        .flat_map(|r| r["runs"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let all_preconfirmed = rounds
        .iter()
        .flat_map(|r| r["preconfirmed_after_each_run"].as_array().cloned().unwrap_or_default())
        .all(|v| v["preconfirmed"] == true);
    let all_checked =
        all_runs.iter().all(|r| r.null_results == 0 && r.error_responses == 0 && r.receipts_ok > 0);
    let target = |label: &str| -> Value {
        let runs: Vec<&LoadRun> = all_runs.iter().filter(|r| r.label == label).collect();
        let med = |f: &dyn Fn(&LoadRun) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
            r3(median(&v))
        };
        json!({
            "requests_per_sec_median": med(&|r| r.requests_per_sec),
            "requests_per_sec_each_round": runs.iter().map(|r| r.requests_per_sec).collect::<Vec<_>>(),
            "latency_ms_p50_median": med(&|r| r.latency_ms.p50),
            "latency_ms_p99_median": med(&|r| r.latency_ms.p99),
            "requests_total": runs.iter().map(|r| r.receipts_ok + r.null_results + r.error_responses).sum::<u64>(),
        })
    };
    let (a, b, c) = (target(NODE_PRECONFIRMED), target(DEVNET_CANONICAL), target(NODE_PROXIED));
    let ratio = |x: &Value, y: &Value| {
        r3(x["requests_per_sec_median"].as_f64().unwrap_or(f64::NAN)
            / y["requests_per_sec_median"].as_f64().unwrap_or(f64::NAN))
    };
    let per_round = |k: &str| rounds.iter().map(|r| r[k].clone()).collect::<Vec<_>>();
    let median_ratio = |k: &str| {
        let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[k].as_f64()).collect();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        r3(median(&v))
    };
    Ok(json!({
        "scenario": "receipt-throughput",
        "started_unix": started_unix,
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "config": {
            "flashnode_args": dev.args,
            "wrk": wrk_version,
            "rounds": args.rounds,
            "duration_secs": args.duration_secs,
            "threads": args.threads,
            "connections": args.connections,
            "method": "one round per block: a fresh preconfirmed tx, then one wrk run per target (order rotated each round), each checked to end before the block seals; medians across rounds",
        },
        "txs": {"sealed": sealed_tx},
        "preconfirmed_throughout": all_preconfirmed,
        "every_response_checked_ok": all_checked,
        "result": {
            NODE_PRECONFIRMED: a.clone(),
            DEVNET_CANONICAL: b.clone(),
            NODE_PROXIED: c.clone(),
            // Headline: the median of the per-round ratios (each round pairs the targets within
            // one ~30 s window, which cancels slow drifts in background load).
            "ratio_node_preconfirmed_vs_devnet_canonical": median_ratio("ratio_node_preconfirmed_vs_devnet_canonical"),
            "ratio_node_proxied_vs_devnet_canonical": median_ratio("ratio_node_proxied_vs_devnet_canonical"),
            "ratio_node_preconfirmed_vs_devnet_canonical_each_round": per_round("ratio_node_preconfirmed_vs_devnet_canonical"),
            "ratio_node_proxied_vs_devnet_canonical_each_round": per_round("ratio_node_proxied_vs_devnet_canonical"),
            "ratio_of_median_rps_node_preconfirmed_vs_devnet_canonical": ratio(&a, &b),
            "ratio_of_median_rps_node_proxied_vs_devnet_canonical": ratio(&c, &b),
        },
        "rounds": rounds,
        "node": {
            "log": dev.running.proc.log.display().to_string(),
            "metrics": dev.metrics,
            "overlay_apply_seconds": apply,
            "mode_monitor": modes,
            "log_findings": findings,
        },
    }))
}

const NODE_PRECONFIRMED: &str = "node_preconfirmed";
const DEVNET_CANONICAL: &str = "devnet_canonical";
const NODE_PROXIED: &str = "node_proxied_sealed";

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Polls `rpc` every 20 ms until `tx` has a receipt; returns when it was first seen.
async fn wait_for_receipt(
    rpc: &mut KeepAlive,
    tx: B256,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = rpc.call("eth_getTransactionReceipt", json!([tx])).await?;
        if !r["result"].is_null() {
            return Ok(Instant::now());
        }
        ensure!(Instant::now() < deadline, "{tx} was not sealed within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the node serves `tx` with a block number above its `eth_blockNumber`.
async fn is_preconfirmed(node: &mut KeepAlive, tx: B256) -> anyhow::Result<bool> {
    let r = node.call("eth_getTransactionReceipt", json!([tx])).await?;
    if r["result"].is_null() {
        return Ok(false);
    }
    let tip = node.call("eth_blockNumber", json!([])).await?;
    let (Some(rb), Some(tip)) = (quantity(&r["result"]["blockNumber"]), quantity(&tip["result"]))
    else {
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
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
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

async fn wrk_run(
    args: &ThroughputArgs,
    label: &str,
    what: &str,
    url: &str,
    tx: B256,
) -> anyhow::Result<LoadRun> {
    let body = crate::http::rpc_body("eth_getTransactionReceipt", json!([tx]));
    let script =
        std::env::temp_dir().join(format!("flashnode-bench-{}-{label}.lua", std::process::id()));
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
    let out = tokio::process::Command::new(&args.wrk)
        .args(&cmd_args)
        .output()
        .await
        .context("running wrk")?;
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
    let count = |prefix: &str| -> Option<String> {
        stdout.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|s| s.trim().to_string()))
    };
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
        loadavg_before: String::new(),
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
