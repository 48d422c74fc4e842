//! `rpc-ratio`: the same three queries under the same wrk load against flashnode (its
//! flashblock-aware RPC, `pending` from the overlay), the devnet's canonical RPC, and anvil
//! (OP mode): `eth_getTransactionReceipt`, `eth_getBalance(pending)` and `eth_call(pending)`
//! (Probe.env()), then the ratio of each target's requests/s to flashnode's.
//!
//! Each target holds the same data: the Probe contract deployed and a transfer to a fixed
//! recipient. On flashnode the transfer is preconfirmed (in the block being built, 30 s
//! blocks) during its three runs, so its receipt and the balance come from flashblocks.

use crate::{
    http::KeepAlive,
    node::start_dev,
    stats::{loadavg, r3, Machine},
};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, U256};
use alloy_sol_types::SolCall;
use anyhow::{ensure, Context};
use clap::Args;
use flashnode_tests::{sign_1559, Anvil, IProbe, DEV_KEYS, PROBE_BIN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `rpc-ratio` flags.
#[derive(Debug, Clone, Args)]
pub struct RatioArgs {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
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

const LUA: &str = r#"
wrk.method = "POST"
wrk.body = '__BODY__'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) oks = 0 bad = 0 end
-- A good answer is HTTP 200 with a non-null result and no error.
function response(status, headers, body)
  if status == 200 and string.find(body, '"result":', 1, true) and not string.find(body, '"result":null', 1, true)
     and not string.find(body, '"error"', 1, true) then oks = oks + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("oks") b = b + t:get("bad") end
  io.write(string.format('BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p99_us":%.0f,"ok":%.0f,"bad":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), o, b))
end
"#;

async fn wrk(args: &RatioArgs, url: &str, body: &str) -> anyhow::Result<Value> {
    let script = std::env::temp_dir().join(format!("flashnode-ratio-{}.lua", std::process::id()));
    std::fs::write(&script, LUA.replace("__BODY__", body))?;
    let out = tokio::process::Command::new(&args.wrk)
        .args([
            format!("-t{}", args.threads),
            format!("-c{}", args.connections),
            format!("-d{}s", args.duration_secs),
        ])
        .args(["--timeout", "2s", "-s", &script.display().to_string(), &format!("{url}/")])
        .output()
        .await
        .context("running wrk (bench/install-tools.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "wrk failed: {stdout}");
    let v: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .map(serde_json::from_str)
        .transpose()?
        .context("wrk printed no BENCH_JSON line")?;
    let secs = v["duration_us"].as_f64().unwrap_or(1.0) / 1e6;
    Ok(json!({
        "requests_per_sec": r3(v["requests"].as_f64().unwrap_or_default() / secs),
        "latency_ms_p50": r3(v["p50_us"].as_f64().unwrap_or_default() / 1e3),
        "latency_ms_p99": r3(v["p99_us"].as_f64().unwrap_or_default() / 1e3),
        "ok": v["ok"], "bad": v["bad"],
        "loadavg_before": loadavg(),
    }))
}

async fn receipt(
    rpc: &mut KeepAlive,
    hash: alloy_primitives::B256,
    within: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let r = rpc.call("eth_getTransactionReceipt", json!([hash])).await?;
        if !r["result"].is_null() {
            return Ok(r["result"].clone());
        }
        ensure!(Instant::now() < deadline, "no receipt for {hash} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Target {
    label: &'static str,
    url: String,
    tx: alloy_primitives::B256,
    probe: Address,
}

/// Runs the comparison and returns the result document.
pub async fn run(args: RatioArgs) -> anyhow::Result<Value> {
    let recipient = Address::repeat_byte(0x77);
    let deploy = |key: &str| {
        sign_1559(
            key,
            901,
            0,
            TxKind::Create,
            U256::ZERO,
            Bytes::from(alloy_primitives::hex::decode(PROBE_BIN.trim()).unwrap_or_default()),
            1_000_000,
            50_000_000_000,
        )
    };
    let transfer = |key: &str| {
        sign_1559(
            key,
            901,
            0,
            TxKind::Call(recipient),
            U256::from(12345),
            Bytes::new(),
            21_000,
            50_000_000_000,
        )
    };

    // anvil: deploy and transfer, mined.
    let anvil = Anvil::start(901).await;
    let mut a = KeepAlive::connect(&anvil.url).await?;
    let (d, t) = (deploy(DEV_KEYS[0]), transfer(DEV_KEYS[1]));
    for raw in [&d, &t] {
        let r = a.call("eth_sendRawTransaction", json!([raw])).await?;
        ensure!(r["error"].is_null(), "anvil: {r}");
    }
    a.call("evm_mine", json!([])).await?;
    let anvil_probe: Address = serde_json::from_value(
        receipt(&mut a, keccak256(&d), Duration::from_secs(5)).await?["contractAddress"].clone(),
    )?;
    let anvil_target =
        Target { label: "anvil", url: anvil.url.clone(), tx: keccak256(&t), probe: anvil_probe };

    // flashnode dev: deploy, wait for the seal, then a preconfirmed transfer in the next block.
    let dev = start_dev(
        &[
            "--block-time".into(),
            "30s".into(),
            "--flashblock-interval".into(),
            "1s".into(),
            "--pending-stale-after".into(),
            "3s".into(),
        ],
        Duration::from_secs(70),
    )
    .await?;
    let mut node = KeepAlive::connect(&dev.running.rpc).await?;
    let mut canon = KeepAlive::connect(&dev.devnet_rpc).await?;
    let r = node.call("eth_sendRawTransaction", json!([d])).await?;
    ensure!(r["error"].is_null(), "node: {r}");
    eprintln!("rpc-ratio: waiting up to 40 s for the deployment to seal");
    let deployed = receipt(&mut canon, keccak256(&d), Duration::from_secs(40)).await?;
    let probe: Address = serde_json::from_value(deployed["contractAddress"].clone())?;
    let r = node.call("eth_sendRawTransaction", json!([t])).await?;
    ensure!(r["error"].is_null(), "node: {r}");
    let pre = receipt(&mut node, keccak256(&t), Duration::from_secs(5)).await?;
    let tip = node.call("eth_blockNumber", json!([])).await?;
    ensure!(
        crate::http::quantity(&pre["blockNumber"]) > crate::http::quantity(&tip["result"]),
        "the transfer is preconfirmed on flashnode"
    );
    // The canonical RPC gets a sealed transfer of its own: the deployment tx.
    let targets = [
        Target { label: "flashnode", url: dev.running.rpc.clone(), tx: keccak256(&t), probe },
        Target { label: "devnet_canonical", url: dev.devnet_rpc.clone(), tx: keccak256(&d), probe },
        anvil_target,
    ];

    let env = Bytes::from(IProbe::envCall {}.abi_encode());
    let mut runs = serde_json::Map::new();
    let mut still = false;
    for target in &targets {
        let queries = [
            ("eth_getTransactionReceipt", json!([target.tx])),
            ("eth_getBalance_pending", json!([recipient, "pending"])),
            ("eth_call_pending", json!([{"to": target.probe, "data": env}, "pending"])),
        ];
        let mut per = serde_json::Map::new();
        for (name, params) in queries {
            let method = name.trim_end_matches("_pending");
            let body = crate::http::rpc_body(method, params.clone());
            let mut check = KeepAlive::connect(&target.url).await?;
            let answer = check.call(method, params).await?;
            ensure!(
                !answer["result"].is_null() && answer["error"].is_null(),
                "{} {name}: {answer}",
                target.label
            );
            let r = wrk(&args, &target.url, &body).await?;
            eprintln!(
                "rpc-ratio {:<17} {name:<26} {:>9} req/s  p50 {} ms  p99 {} ms  bad {}",
                target.label,
                r["requests_per_sec"],
                r["latency_ms_p50"],
                r["latency_ms_p99"],
                r["bad"]
            );
            per.insert(name.into(), r);
        }
        runs.insert(target.label.into(), Value::Object(per));
        if target.label == "flashnode" {
            // Its transfer must still be preconfirmed after its runs (they ran inside one block).
            let tip = node.call("eth_blockNumber", json!([])).await?;
            still =
                crate::http::quantity(&pre["blockNumber"]) > crate::http::quantity(&tip["result"]);
        }
    }

    let mut ratios = serde_json::Map::new();
    for q in ["eth_getTransactionReceipt", "eth_getBalance_pending", "eth_call_pending"] {
        let f = runs["flashnode"][q]["requests_per_sec"].as_f64().unwrap_or(f64::NAN);
        let mut row = serde_json::Map::new();
        for t in ["devnet_canonical", "anvil"] {
            let o = runs[t][q]["requests_per_sec"].as_f64().unwrap_or(f64::NAN);
            row.insert(format!("flashnode_over_{t}"), json!(r3(f / o)));
        }
        ratios.insert(q.into(), Value::Object(row));
    }
    Ok(json!({
        "scenario": "rpc-ratio",
        "machine": Machine::read(),
        "command": dev.args,
        "params": {"duration_secs": args.duration_secs, "threads": args.threads, "connections": args.connections,
                   "anvil": "anvil --network optimism --hardfork isthmus (tools/bin/anvil)"},
        "result": {"runs": runs, "ratios": ratios, "flashnode_transfer_preconfirmed_throughout": still},
    }))
}
