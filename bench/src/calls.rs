//! `calls`: latency of a pending `eth_call` on the node (N+1 environment over the preconfirmed
//! state, canonical reads through the upstream cache) side by side with the same call on the
//! upstream's canonical state (anvil `latest`), for an ERC-20 `balanceOf` and a ~100k-gas call,
//! with the node's upstream cache cold (first call after a new block) and warm (repeats).
//!
//! Every round mines an empty block into anvil and streams a one-transaction flashblock for
//! the next block, so each round starts on a new parent hash: nothing of it is cached yet.

use crate::{
    http::{quantity, KeepAlive},
    stats::{loadavg, r3, Machine, Summary},
};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolValue};
use anyhow::{bail, Context};
use clap::Args;
use flashnode_tests::{anvil_chain::*, *};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CHAIN_ID: u64 = 901;
const FEE: u128 = 10_000_000_000;

/// Options of the `calls` scenario.
#[derive(Debug, Args)]
pub struct CallsArgs {
    /// Rounds (new pending blocks); each gives one cold sample per call kind.
    #[arg(long, default_value_t = 60)]
    rounds: usize,
    /// Warm repeats per call kind per round.
    #[arg(long, default_value_t = 20)]
    warm: usize,
    /// Gas the heavy call should use.
    #[arg(long, default_value_t = 100_000)]
    heavy_gas: u64,
}

async fn timed(client: &mut KeepAlive, params: Value) -> anyhow::Result<(f64, Value)> {
    let t = Instant::now();
    let r = client.call("eth_call", params).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if r.get("result").is_none() {
        bail!("eth_call failed: {r}");
    }
    Ok((ms, r["result"].clone()))
}

#[derive(Default)]
struct Samples {
    node_cold: Vec<f64>,
    node_warm: Vec<f64>,
    upstream: Vec<f64>,
}

impl Samples {
    fn report(&self) -> Value {
        let (cold, warm, up) = (
            Summary::of(&self.node_cold),
            Summary::of(&self.node_warm),
            Summary::of(&self.upstream),
        );
        json!({
            "node_pending_cold_ms": cold.clone().rounded(),
            "node_pending_warm_ms": warm.clone().rounded(),
            "upstream_latest_ms": up.clone().rounded(),
            "ratio_p50_cold_vs_upstream": r3(cold.p50 / up.p50),
            "ratio_p50_warm_vs_upstream": r3(warm.p50 / up.p50),
            "ratio_p99_cold_vs_upstream": r3(cold.p99 / up.p99),
            "ratio_p99_warm_vs_upstream": r3(warm.p99 / up.p99),
        })
    }
}

/// Runs the scenario.
pub async fn run(args: CallsArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let anvil = Anvil::start(CHAIN_ID).await;
    let key0 = DEV_KEYS[0];
    let supply = U256::from(10u64).pow(U256::from(24u64));
    let token_deploy = sign_1559(
        key0,
        CHAIN_ID,
        0,
        TxKind::Create,
        U256::ZERO,
        creation(TOKEN_BIN, &supply.abi_encode()),
        2_000_000,
        FEE,
    );
    let probe_deploy = sign_1559(
        key0,
        CHAIN_ID,
        1,
        TxKind::Create,
        U256::ZERO,
        creation(PROBE_BIN, &[]),
        2_000_000,
        FEE,
    );
    mine(&anvil.url, &[token_deploy, probe_deploy]).await;
    let r = raw_rpc(&anvil.url, "eth_getBlockReceipts", json!(["latest"])).await;
    let token: Address = r["result"][0]["contractAddress"].as_str().context("token")?.parse()?;
    let probe: Address = r["result"][1]["contractAddress"].as_str().context("probe")?.parse()?;

    // Calibrate the heavy call: burn(rounds) costs about a + b * rounds gas.
    let gas_of = |rounds: u64| {
        let url = anvil.url.clone();
        async move {
            let data = Bytes::from(IProbe::burnCall { rounds: U256::from(rounds) }.abi_encode());
            let r =
                raw_rpc(&url, "eth_estimateGas", json!([{"to": probe, "data": data}, "latest"]))
                    .await;
            quantity(&r["result"]).unwrap_or(0)
        }
    };
    let (g10, g110) = (gas_of(10).await, gas_of(110).await);
    let per_round = (g110.saturating_sub(g10) / 100).max(1);
    let burn_rounds = 10 + args.heavy_gas.saturating_sub(g10) / per_round;
    let heavy_gas = gas_of(burn_rounds).await;

    let source = FlashblockSource::start().await;
    let node = start_node(
        &source.url,
        &anvil.url,
        &["--pending-stale-after", "60s", "--upstream-poll-interval", "20ms"],
    )
    .await;
    let ready = eventually(Duration::from_secs(10), || async {
        status(&node.rpc).await["streamConnected"] == true
    })
    .await;
    if !ready {
        bail!("node never connected to the flashblock source");
    }
    let mut node_http = KeepAlive::connect(&node.rpc).await?;
    let mut anvil_http = KeepAlive::connect(&anvil.url).await?;
    let mut balance = Samples::default();
    let mut heavy = Samples::default();
    let balance_data = Bytes::from(IToken::balanceOfCall(address_of(key0)).abi_encode());
    let heavy_data = Bytes::from(IProbe::burnCall { rounds: U256::from(burn_rounds) }.abi_encode());
    // The flashblock's one transaction; anvil never mines it, so nonce 0 stays valid.
    let transfer = sign_1559(
        DEV_KEYS[1],
        CHAIN_ID,
        0,
        TxKind::Call(Address::repeat_byte(0xa2)),
        U256::from(5),
        Bytes::new(),
        21_000,
        FEE,
    );
    for round in 0..args.rounds {
        raw_rpc(&anvil.url, "evm_mine", json!([])).await;
        let parent = raw_rpc(&anvil.url, "eth_getBlockByNumber", json!(["latest", false])).await
            ["result"]
            .clone();
        let env = next_env(&parent, Address::repeat_byte(0xcb));
        // Wait for the node to see the new head, then stream block N+1.
        let head = quantity(&parent["number"]).context("number")?;
        let seen = eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["canonicalTip"].as_u64() == Some(head)
        })
        .await;
        if !seen {
            bail!("node did not follow anvil to block {head}");
        }
        for f in build_frames(&anvil.url, CHAIN_ID, &env, vec![vec![transfer.clone()]]).await {
            source.send(f);
        }
        let applied = eventually(Duration::from_secs(5), || async {
            let b = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await;
            quantity(&b["result"]["number"]) == Some(env.number)
                && b["result"]["transactions"].as_array().is_some_and(|t| t.len() == 1)
        })
        .await;
        if !applied {
            bail!("round {round}: the node never applied block {}", env.number);
        }
        // Distinct callers per kind keep both first calls fully cold.
        for (samples, to, data, from) in [
            (&mut balance, token, &balance_data, Address::repeat_byte(0x51)),
            (&mut heavy, probe, &heavy_data, Address::repeat_byte(0x52)),
        ] {
            let call = json!({"from": from, "to": to, "data": data});
            let (cold, pending_answer) = timed(&mut node_http, json!([call, "pending"])).await?;
            samples.node_cold.push(cold);
            for _ in 0..args.warm {
                samples.node_warm.push(timed(&mut node_http, json!([call, "pending"])).await?.0);
                let (ms, latest_answer) = timed(&mut anvil_http, json!([call, "latest"])).await?;
                samples.upstream.push(ms);
                if latest_answer != pending_answer && to == token {
                    bail!("pending and latest balanceOf disagree: {pending_answer} vs {latest_answer}");
                }
            }
        }
    }
    Ok(json!({
        "scenario": "calls",
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "params": {
            "rounds": args.rounds,
            "warm_repeats_per_round": args.warm,
            "heavy_call": {"function": "Probe.burn", "rounds": burn_rounds, "gas": heavy_gas},
            "upstream": "anvil --network optimism --hardfork isthmus (in-memory state, same machine)",
            "client": "one keep-alive HTTP/1.1 connection per endpoint, sequential requests",
        },
        "result": {
            "balance_of": balance.report(),
            "call_100k_gas": heavy.report(),
        },
    }))
}
