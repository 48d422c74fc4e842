//! #27.4: the cadences of the chains that stream today, on the devnet: Unichain's (1 s blocks,
//! a flashblock every 200 ms, 5 per block) and OP Mainnet's Subblocks (2 s blocks, 250 ms, 8
//! per block, here with an interval that jitters by up to 60 ms, as the spec allows). At each:
//! the stream's blocks have that many flashblocks, a transfer is preconfirmed before its block
//! seals, a pending read and call see it, `newFlashblocks` delivers, the fan-out passes frames
//! through; the sidecar on the 1 s cadence keeps serving flashblocks without flapping, falls
//! back when its stream dies and recovers.

use alloy_primitives::{Address, Bytes, TxKind, U256};
use flashnode_tests::{relay::*, *};
use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
}

/// The highest flashblock index seen per block on `frames`, over `blocks` complete blocks.
async fn indices_per_block(url: &str, blocks: usize) -> BTreeMap<u64, u64> {
    let mut frames = collect_flashblocks(url).await;
    let mut max: BTreeMap<u64, u64> = BTreeMap::new();
    while max.len() < blocks + 2 {
        let fb = next_flashblock(&mut frames, Duration::from_secs(5)).await;
        let n = fb.payload.metadata.block_number;
        let e = max.entry(n).or_default();
        *e = (*e).max(fb.payload.index);
    }
    // The first block may have been joined midway and the last is still streaming.
    let complete: Vec<u64> = max.keys().copied().collect();
    max.retain(|n, _| *n != complete[0] && Some(n) != complete.last());
    max
}

async fn preconfirms_at(block_time: &str, interval: &str, jitter: &str, per_block: u64, key: &str) {
    let node = start(
        "dev",
        &[
            "--block-time",
            block_time,
            "--flashblock-interval",
            interval,
            "--flashblock-jitter",
            jitter,
        ],
    )
    .await;
    let rpc = node.rpc.as_str();
    assert!(mode_becomes(rpc, "flashblocks", Duration::from_secs(20)).await);
    // Every complete block carries index 0 (the base) and `per_block` flashblocks after it, on
    // the node's fan-out (frames as received).
    let counts = indices_per_block(&node.ws, 2).await;
    assert!(counts.values().all(|&max| max == per_block), "{block_time}/{interval}: {counts:?}");

    let mut ws = WsRpc::connect(&rpc.replace("http", "ws")).await;
    let sub = ws.subscribe(json!(["newFlashblocks"])).await;
    // Sent at a block's start, so its seal is a whole block time away.
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(rpc).await["flashblockIndex"].as_u64().is_some_and(|i| i <= 1)
        })
        .await
    );
    let to = Address::repeat_byte(0x27);
    let raw = sign_1559(
        key,
        901,
        0,
        TxKind::Call(to),
        U256::from(27),
        Bytes::new(),
        21_000,
        10_000_000_000,
    );
    let sent = raw_rpc(rpc, "eth_sendRawTransaction", json!([raw])).await;
    let hash = sent["result"].clone();
    assert!(hash.is_string(), "{sent}");
    let mut receipt = Value::Null;
    for _ in 0..200 {
        receipt = raw_rpc(rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
        if !receipt.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let number = quantity(&receipt["blockNumber"]);
    let tip = quantity(&raw_rpc(rpc, "eth_blockNumber", json!([])).await["result"]);
    assert!(
        tip < number,
        "{block_time}/{interval}: preconfirmed before block {number} sealed (tip {tip})"
    );
    let balance = raw_rpc(rpc, "eth_getBalance", json!([to, "pending"])).await["result"].clone();
    assert_eq!(quantity(&balance), 27, "{block_time}/{interval}: the pending balance");
    let call = raw_rpc(rpc, "eth_call", json!([{"to": to, "data": "0x"}, "pending"])).await;
    assert_eq!(call["result"], "0x", "{call}");
    let (got, msg) =
        ws.notification(Duration::from_secs(5)).await.expect("a newFlashblocks message");
    assert_eq!(got, sub);
    assert!(msg["blockHash"].is_string(), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unichain_cadence_1s_200ms() {
    preconfirms_at("1s", "200ms", "0ms", 5, DEV_KEYS[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_mainnet_subblocks_cadence_2s_250ms_with_jitter() {
    preconfirms_at("2s", "250ms", "60ms", 8, DEV_KEYS[2]).await;
}

/// The sidecar on a 1 s chain with the default `--pending-stale-after 1s` and
/// `--stream-silence-timeout 1s`: sampled every 50 ms for 4 s it serves `flashblocks` every
/// time (a stale-after equal to the block time does not flap: it is measured from the last
/// flashblock, 200 ms apart), falls back when the stream dies, and recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_blocks_do_not_flap_and_fall_back_when_the_stream_dies() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "200ms"]).await;
    let relay = Relay::start(&devnet.ws).await;
    let node = start_node(&relay.url, &devnet.rpc, &[]).await;
    assert!(mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(10)).await);
    let mut modes = BTreeMap::<String, u32>::new();
    for _ in 0..80 {
        let m = status(&node.rpc).await["mode"].as_str().unwrap_or_default().to_string();
        *modes.entry(m).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(modes.get("flashblocks"), Some(&80), "no flapping on 1 s blocks: {modes:?}");
    relay.inject(Fault::Kill(Duration::from_secs(3))).await;
    assert!(
        mode_becomes(&node.rpc, "fallback", Duration::from_secs(3)).await,
        "fell back: {}",
        status(&node.rpc).await
    );
    assert!(
        mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(8)).await,
        "recovered: {}",
        status(&node.rpc).await
    );
}

/// #27.3: the timing flags against the chain's cadence. A value that would flap refuses to
/// start, naming the flag and what fits; a default too short for a slow chain derives from its
/// cadence. With 30 s blocks the canonical tip stands still 30 s at a time, past the 12 s
/// default of `--canonical-stale-after`: it becomes 90 s (3 blocks, logged) and `/readyz` stays
/// 200 through the block (before: 503 from 12 s into every block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_flags_fit_the_chains_cadence() {
    let mut refused = std::process::Command::new(flashnode_bin())
        .args([
            "dev",
            "--rpc-addr",
            "127.0.0.1:0",
            "--flashblocks-addr",
            "127.0.0.1:0",
            "--flashblock-interval",
            "500ms",
            "--pending-stale-after",
            "800ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flashnode runs");
    let exited = eventually(Duration::from_secs(20), || {
        let done = matches!(refused.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    if !exited {
        let _ = refused.kill();
    }
    let out = refused.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(exited && !out.status.success(), "a flapping stale window is refused: {err}");
    assert!(
        err.contains("--pending-stale-after 800ms is at most 2 flashblock intervals")
            && err.contains("500ms"),
        "{err}"
    );

    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start(
        "dev",
        &["--block-time", "30s", "--flashblock-interval", "200ms", "--metrics-addr", &metrics],
    )
    .await;
    assert!(mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(20)).await);
    let log = node.proc.output();
    assert!(log.contains("--canonical-stale-after 90s: derived from the chain's cadence"), "{log}");
    let first = status(&node.rpc).await["canonicalTip"].clone();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        let (code, body) = http_get(&metrics, "/readyz").await;
        assert_eq!(code, 200, "{:?} into a 30 s block: {body}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The block really stood still that long (else the check proved nothing).
    let tip = status(&node.rpc).await["canonicalTip"].clone();
    assert!(first == tip || tip.is_null(), "the tip moved: {first} -> {tip}");
}
