//! #15.7 through the real binary: `/readyz` hysteresis for execution errors (no 200 <-> 206
//! flip every block), `--print-config` naming the chain and where its preset came from, and
//! the start-up line naming the preset applied.

use alloy_primitives::{Address, Bytes, TxKind, U256};
use flashnode_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

const CHAIN_ID: u64 = 901;

/// /readyz codes sampled `n` times, 100 ms apart.
async fn readyz_samples(metrics: &str, n: usize) -> Vec<u16> {
    let mut codes = Vec::new();
    for _ in 0..n {
        codes.push(http_get(metrics, "/readyz").await.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    codes
}

/// Every block applies its index 0 and then fails to execute index 1 (a transaction the
/// upstream's state refuses). Before, `/readyz` went 200 at each index 0 and 206 once the
/// block's pending went stale: a flip every block. Now it stays 200 for the first K-1 = 2 bad
/// blocks, degrades at the 3rd, and recovers only after 3 clean blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_has_hysteresis_for_execution_errors() {
    let anvil = Anvil::start(CHAIN_ID).await;
    let source = FlashblockSource::start().await;
    let (node, metrics) = start_node_with_metrics(
        &source.url,
        &anvil.url,
        &[
            "--canonical-stale-after",
            "120s",
            "--pending-stale-after",
            "300ms",
            "--readiness-hysteresis-blocks",
            "3",
        ],
    )
    .await;
    let bad_nonce = sign_1559(
        DEV_KEYS[0],
        CHAIN_ID,
        7,
        TxKind::Call(Address::repeat_byte(0x11)),
        U256::from(1),
        Bytes::new(),
        21_000,
        2_000_000_000,
    );
    // One block: index 0 applies, then (when `bad`) index 1 diverges; then anvil seals.
    let mut id = 0u8;
    let mut block = |bad: bool| {
        id += 1;
        let (id, anvil, source, node, bad_nonce) = (id, &anvil, &source, &node, bad_nonce.clone());
        async move {
            let (n, h, t) = latest_block(&anvil.url).await;
            let applied = eventually(Duration::from_secs(10), || async {
                source.send(flashblock_frame(n + 1, 0, h, t + 2, id, vec![]));
                status(&node.rpc).await["pendingBlock"] == n + 1
            })
            .await;
            assert!(applied, "index 0 of {}: {}", n + 1, status(&node.rpc).await);
            if bad {
                let before = status(&node.rpc).await["rejected"]["diverged"].as_u64().unwrap_or(0);
                let diverged = eventually(Duration::from_secs(10), || async {
                    source.send(flashblock_frame(n + 1, 1, h, t + 2, id, vec![bad_nonce.clone()]));
                    status(&node.rpc).await["rejected"]["diverged"].as_u64().unwrap_or(0) > before
                })
                .await;
                assert!(diverged, "{}", status(&node.rpc).await);
            }
            n + 1
        }
    };
    let seal = || async {
        assert!(raw_rpc(&anvil.url, "evm_mine", json!([])).await.get("result").is_some());
    };
    // Two bad blocks: pending falls back within each (stale after 300 ms), readiness does not.
    for k in 1..=2u64 {
        block(true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = status(&node.rpc).await;
        assert_eq!(s["mode"], "fallback", "the bad block's pending went stale: {s}");
        assert_eq!(s["executionErrorBlocks"], k, "{s}");
        assert_eq!(s["health"], "ready", "{s}");
        let codes = readyz_samples(&metrics, 5).await;
        assert!(codes.iter().all(|&c| c == 200), "bad block {k}: /readyz {codes:?}");
        seal().await;
    }
    // The third in a row degrades readiness, with the reason.
    block(true).await;
    let degraded = readyz_becomes(&metrics, 206, Duration::from_secs(5)).await;
    let (code, body) = http_get(&metrics, "/readyz").await;
    assert!(degraded, "{code} {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("3 consecutive blocks")), "{body}");
    assert_eq!(v["executionDegraded"], true, "{body}");
    seal().await;
    // Clean blocks: still 206 until three of them have finished, then 200.
    for k in 1..=3 {
        block(false).await;
        let s = status(&node.rpc).await;
        assert_eq!(s["mode"], "flashblocks", "{s}");
        assert_eq!(http_get(&metrics, "/readyz").await.0, 206, "clean block {k} of 3: {s}");
        seal().await;
    }
    block(false).await;
    let recovered = readyz_becomes(&metrics, 200, Duration::from_secs(5)).await;
    assert!(recovered, "{}", http_get(&metrics, "/readyz").await.1);
    assert!(node.proc.output().contains("readiness restored"), "{}", node.proc.output());
}

/// `--print-config` of a `node` without `--chain` asks the upstream for its chain id and names
/// the preset it selects (or says none does); with `--chain` it names the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_config_names_the_chain_and_its_source() {
    let print = |args: &[&str]| {
        let out = std::process::Command::new(flashnode_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let base = Anvil::start(8453).await;
    let text = print(&["node", "--upstream-rpc", &base.url, "--print-config"]);
    assert!(
        text.contains(&format!("chain = \"base\"  # the upstream's chain id 8453 ({})", base.url)),
        "{text}"
    );
    assert!(!text.contains("chain is unset"), "{text}");
    assert!(text.contains("native-blocks-timestamp = 1793901600 comes with it"), "{text}");
    let devnet = Anvil::start(CHAIN_ID).await;
    let text = print(&["node", "--upstream-rpc", &devnet.url, "--print-config"]);
    assert!(text.contains("no preset has the upstream's chain id 901"), "{text}");
    let text = print(&["node", "--upstream-rpc", "http://127.0.0.1:1", "--print-config"]);
    assert!(text.contains("taken at start from the upstream's chain id"), "{text}");
    let text =
        print(&["node", "--chain", "optimism", "--upstream-rpc", &base.url, "--print-config"]);
    assert!(text.contains("chain = \"optimism\"  # command line"), "{text}");
    // The Base presets carry the Denim cutover; `never` turns it off.
    let text =
        print(&["node", "--chain", "base-sepolia", "--upstream-rpc", &base.url, "--print-config"]);
    assert!(text.contains("native-blocks-timestamp = 1792605600  # preset base-sepolia"), "{text}");
    let text = print(&[
        "node",
        "--chain",
        "base",
        "--native-blocks-timestamp",
        "never",
        "--upstream-rpc",
        &base.url,
        "--print-config",
    ]);
    assert!(text.contains("native-blocks-timestamp = \"never\"  # command line"), "{text}");
}

/// The node logs one start-up line naming the preset applied and where it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_names_the_preset_applied() {
    let source = FlashblockSource::start().await;
    let devnet = Anvil::start(CHAIN_ID).await;
    let node = start_node(&source.url, &devnet.url, &[]).await;
    let found = eventually(Duration::from_secs(5), || async {
        node.proc.output().contains("no chain preset has chain id 901 (the upstream's)")
    })
    .await;
    assert!(found, "{}", node.proc.output());
    drop(node);
    // OP Mainnet's chain id: the optimism preset, from the upstream's chain id.
    let op = Anvil::start(10).await;
    let node = start_node(&source.url, &op.url, &["--p2p-disable"]).await;
    let found = eventually(Duration::from_secs(5), || async {
        let log = node.proc.output();
        log.lines()
            .filter(|l| {
                l.contains("chain preset optimism applied (chain 10, from the upstream's chain id")
            })
            .count()
            == 1
    })
    .await;
    assert!(found, "{}", node.proc.output());
    drop(node);
    let node = start_node(&source.url, &op.url, &["--chain", "optimism", "--p2p-disable"]).await;
    let found = eventually(Duration::from_secs(5), || async {
        node.proc.output().contains("chain preset optimism applied (chain 10, from --chain flag)")
    })
    .await;
    assert!(found, "{}", node.proc.output());
}
