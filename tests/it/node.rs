//! Acceptance tests of the flashblock-aware node (`flashnode dev` and `flashnode node`)
//! through its public surface: cast, raw JSON-RPC, and real websockets with injected faults.

use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_sol_types::SolCall;
use flashnode_tests::{
    relay::{Fault, Relay},
    *,
};
use serde_json::{json, Value};
use std::time::Duration;

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(
        v.as_str().unwrap_or_else(|| panic!("hex quantity, got {v}")).trim_start_matches("0x"),
        16,
    )
    .expect("hex")
}

async fn block_number(rpc: &str) -> u64 {
    quantity(&raw_rpc(rpc, "eth_blockNumber", json!([])).await["result"])
}

/// cast sends to `flashnode dev`; the node serves the receipt while its own eth_blockNumber is
/// still below the receipt's block; pending state and calls see the preconfirmed tx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_preconfirmations_before_the_block_seals() {
    let node = start("dev", &[]).await;
    let mut fbs = collect_flashblocks(&node.ws).await;
    wait_for_early_flashblock(&mut fbs, 1..=4).await;
    let key = DEV_KEYS[5];
    let from = address_of(key);
    let to = Address::repeat_byte(0x42);
    let hash = cast(&[
        "send",
        "--async",
        "--rpc-url",
        &node.rpc,
        "--private-key",
        key,
        &to.to_string(),
        "--value",
        "12345",
    ]);
    let hash: B256 = hash.parse().unwrap();

    let mut preconfirmed = None;
    for _ in 0..100 {
        let r = raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await;
        if !r["result"].is_null() {
            let tip = block_number(&node.rpc).await;
            preconfirmed = Some((r["result"].clone(), tip));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (receipt, tip_then) = preconfirmed.expect("a preconfirmed receipt appears");
    assert!(tip_then < quantity(&receipt["blockNumber"]), "served before its block is canonical");
    assert_eq!(quantity(&receipt["status"]), 1);
    assert!(quantity(&receipt["l1Fee"]) > 0);

    // Pending state sees it; latest may not yet.
    let bal = raw_rpc(&node.rpc, "eth_getBalance", json!([to, "pending"])).await;
    assert_eq!(bal["result"].as_str().unwrap().parse::<U256>().unwrap(), U256::from(12345));
    let nonce = raw_rpc(&node.rpc, "eth_getTransactionCount", json!([from, "pending"])).await;
    assert_eq!(quantity(&nonce["result"]), 1);
    let status = status(&node.rpc).await;
    assert_eq!(status["mode"], "flashblocks", "{status}");

    // The sealed receipt (through cast, which waits) agrees with the preconfirmed one.
    let sealed: Value = serde_json::from_str(&cast(&[
        "receipt",
        "--json",
        "--rpc-url",
        &node.rpc,
        &hash.to_string(),
    ]))
    .unwrap();
    for field in
        ["blockNumber", "transactionIndex", "gasUsed", "cumulativeGasUsed", "status", "l1Fee"]
    {
        assert_eq!(sealed[field], receipt[field], "{field}");
    }
}

/// eth_sendRawTransactionSync answers with a receipt from a flashblock: its block is still
/// ahead of the canonical tip when the answer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_raw_transaction_sync_returns_a_preconfirmed_receipt() {
    let node = start("dev", &[]).await;
    let mut fbs = collect_flashblocks(&node.ws).await;
    for nonce in 0..3u64 {
        wait_for_early_flashblock(&mut fbs, 1..=4).await;
        let raw = sign_1559(
            DEV_KEYS[6],
            901,
            nonce,
            TxKind::Call(Address::repeat_byte(7)),
            U256::from(1),
            Bytes::new(),
            21_000,
            10_000_000_000,
        );
        let r = raw_rpc(&node.rpc, "eth_sendRawTransactionSync", json!([raw, 5000])).await;
        let receipt = &r["result"];
        assert!(!receipt.is_null(), "{r}");
        let tip = block_number(&node.rpc).await;
        assert!(
            tip < quantity(&receipt["blockNumber"]),
            "receipt came from a flashblock, not the sealed block"
        );
    }
    // A timeout above the cap is capped, and a bad tx is refused with the upstream's error.
    let r = raw_rpc(&node.rpc, "eth_sendRawTransactionSync", json!(["0x02ff", 999999])).await;
    assert!(r["error"]["code"].is_i64(), "{r}");
    let caps = raw_rpc(&node.rpc, "op_supportedCapabilities", json!([])).await;
    assert_eq!(caps["result"], json!(["flashblocksv1"]));
}

/// A `pending` eth_call runs in the real N+1 environment: block.number is N+1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_call_sees_the_next_block() {
    let node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let probe = deploy_probe(&node.rpc, DEV_KEYS[7]);
    let data = Bytes::from(IProbe::envCall {}.abi_encode());
    let mut checked = false;
    for _ in 0..20 {
        let pending = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await
            ["result"]
            .clone();
        let r =
            raw_rpc(&node.rpc, "eth_call", json!([{"to": probe, "data": data}, "pending"])).await;
        // The same call through eth_simulateV1 and eth_createAccessList, in the same window.
        let sim = raw_rpc(
            &node.rpc,
            "eth_simulateV1",
            json!([{"blockStateCalls": [{"calls": [{"to": probe, "data": data}]}]}, "pending"]),
        )
        .await;
        let list = raw_rpc(
            &node.rpc,
            "eth_createAccessList",
            json!([{"to": probe, "data": data}, "pending"]),
        )
        .await;
        let after = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await
            ["result"]
            .clone();
        if pending["number"] != after["number"] || status(&node.rpc).await["mode"] != "flashblocks"
        {
            continue; // raced a block boundary; try again
        }
        let ret: Bytes = r["result"].as_str().unwrap().parse().unwrap();
        let env = IProbe::envCall::abi_decode_returns(&ret).unwrap();
        let latest = block_number(&node.rpc).await;
        assert_eq!(env.number, U256::from(quantity(&pending["number"])));
        assert!(env.number > U256::from(latest), "pending runs as N+1");
        assert_eq!(env.timestamp, U256::from(quantity(&pending["timestamp"])));
        assert_eq!(env.basefee, U256::from(quantity(&pending["baseFeePerGas"])));
        assert_eq!(env.coinbase, pending["miner"].as_str().unwrap().parse::<Address>().unwrap());
        // eth_simulateV1 in pending: its first block is the pending block's number, on the
        // in-process devnet as against anvil (tests/it/differential.rs).
        let block = &sim["result"][0];
        assert_eq!(quantity(&block["number"]), quantity(&pending["number"]), "{sim}");
        let call = &block["calls"][0];
        assert_eq!(call["status"], "0x1", "{sim}");
        let sim_ret: Bytes = call["returnData"].as_str().unwrap().parse().unwrap();
        let sim_env = IProbe::envCall::abi_decode_returns(&sim_ret).unwrap();
        assert_eq!(sim_env.number, env.number);
        assert_eq!(sim_env.coinbase, env.coinbase);
        // eth_createAccessList in pending: a pure environment read touches no storage.
        assert!(list["result"]["accessList"].is_array(), "{list}");
        assert!(list["result"].get("error").is_none_or(|e| e.is_null()), "{list}");
        assert!(quantity(&list["result"]["gasUsed"]) > 21_000, "{list}");
        checked = true;
        break;
    }
    assert!(checked, "a pending call was checked against the pending block");
}

/// Sidecar: `flashnode devnet` + `flashnode node`; the stream dies mid-block: the node falls
/// back to latest within the liveness window, reconnects and serves preconfirmations again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_falls_back_and_recovers_when_the_stream_dies() {
    let devnet = start("devnet", &[]).await;
    let relay = Relay::start(&devnet.ws).await;
    let node = start_node(&relay.url, &devnet.rpc, &[]).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await,
        "serving flashblocks: {}",
        status(&node.rpc).await
    );

    relay.inject(Fault::Kill(Duration::from_secs(3))).await;
    // Liveness window 1 s: the node must fall back well within 3 s.
    assert!(
        eventually(Duration::from_secs(3), || async {
            status(&node.rpc).await["mode"] == "fallback"
        })
        .await,
        "fell back: {}",
        status(&node.rpc).await
    );
    // #27.5: a client asks whether preconfirmations are served without parsing the status.
    let enabled = raw_rpc(&node.rpc, "eth_flashblocksEnabled", json!([])).await;
    assert_eq!(enabled["result"], false, "{enabled}");
    // In fallback `pending` answers exactly as `latest`.
    let consistent = eventually(Duration::from_secs(2), || async {
        let p = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await
            ["result"]
            .clone();
        let l = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["latest", false])).await
            ["result"]
            .clone();
        !p.is_null() && p["hash"] == l["hash"]
    })
    .await;
    assert!(consistent, "pending equals latest in fallback");

    // The relay comes back after 3 s; preconfirmations resume within about a block.
    assert!(
        eventually(Duration::from_secs(8), || async {
            status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await,
        "recovered: {}",
        status(&node.rpc).await
    );
    let enabled = raw_rpc(&node.rpc, "eth_flashblocksEnabled", json!([])).await;
    assert_eq!(enabled["result"], true, "{enabled}");
    let s = status(&node.rpc).await;
    assert!(s["disconnects"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{s}");
}

/// A scripted stream injects duplicates, a gap, a new block with a non-zero index, a wrong
/// payload id, malformed JSON, a truncated brotli frame, a 20 MiB frame and a silent-but-open
/// connection: no panic, each shows in the counters, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_faults_are_counted_and_survived() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let relay = Relay::start(&devnet.ws).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut node = start_node(&relay.url, &devnet.rpc, &["--metrics-addr", &metrics_addr]).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await
    );

    async fn counter(rpc: &str, name: &str) -> u64 {
        status(rpc).await[name].as_u64().unwrap_or_default()
    }
    // Each fault: the status counter and the Prometheus series both increase.
    let m = metrics_addr.as_str();
    let rpc = node.rpc.clone();
    let outcome = "flashnode_overlay_flashblocks_total";
    let malformed = "flashnode_stream_malformed_total";
    let faults: [(Fault, &str, &str, (&str, &str)); 8] = [
        (Fault::Duplicate, "duplicates", outcome, ("outcome", "duplicate")),
        (Fault::Gap, "gaps", outcome, ("outcome", "gap")),
        (Fault::NewBlockNonZeroIndex, "gaps", outcome, ("outcome", "gap")),
        (Fault::WrongPayloadId, "invalid", outcome, ("outcome", "invalid")),
        (Fault::MalformedJson, "malformed", malformed, ("kind", "json")),
        (Fault::TruncatedBrotli, "malformed", malformed, ("kind", "brotli")),
        (Fault::Oversized(20 * 1024 * 1024), "disconnects", malformed, ("kind", "frame_too_large")),
        (Fault::Silent, "disconnects", "flashnode_stream_disconnects_total", ("reason", "silent")),
    ];
    for (fault, counter_name, series, label) in faults {
        assert!(
            eventually(Duration::from_secs(5), || async {
                status(&rpc).await["mode"] == "flashblocks"
            })
            .await
        );
        let before = counter(&rpc, counter_name).await;
        let before_metric = metric(&scrape(m).await, series, &[label]);
        relay.inject(fault.clone()).await;
        let ok = eventually(Duration::from_secs(5), || async {
            counter(&rpc, counter_name).await > before
                && metric(&scrape(m).await, series, &[label]) > before_metric
        })
        .await;
        assert!(
            ok,
            "{fault:?} increments {counter_name} and {series}{label:?}: {}\n{}",
            status(&rpc).await,
            scrape(m)
                .await
                .lines()
                .filter(|l| l.starts_with("flashnode_"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // After all of it: alive, reconnected, serving preconfirmations, never stuck on index 0
    // arriving before its parent is canonical.
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&rpc).await["mode"] == "flashblocks"
        })
        .await,
        "{}",
        status(&rpc).await
    );
    assert!(node.proc.is_running());
    let s = status(&rpc).await;
    assert_eq!(s["executionErrors"], 0, "{s}");
    assert!(s["promoted"].as_u64().unwrap() >= 1, "{s}");
    assert!(!node.proc.output().contains("panicked"));
}

/// Tail reorg: the sealed block omits the last flashblock's txs; their receipts vanish from
/// the node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reorg_drops_preconfirmed_receipts_at_once() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let node = start_node(&devnet.ws, &devnet.rpc, &[]).await;
    let mut fbs = collect_flashblocks(&devnet.ws).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await
    );
    // The reorged block: its last flashblock's txs are preconfirmed, then not sealed.
    let TailReorg { block: reorged_block, dropped, preconfirmed } = tail_reorg(
        &devnet.rpc,
        &node.rpc,
        &mut fbs,
        |_| {},
        |receipt, number| quantity(&receipt["blockNumber"]) == number,
        async |number| block_number(&node.rpc).await >= number,
    )
    .await;
    assert!(!dropped.is_empty(), "the injected tail reorg dropped the last flashblock's txs");
    assert!(preconfirmed, "the node preconfirmed the last flashblock before the seal");
    for hash in &dropped {
        let r = raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await;
        assert!(
            r["result"].is_null(),
            "dropped tx {hash} of block {reorged_block} has no receipt: {r}"
        );
    }
    let s = status(&node.rpc).await;
    assert!(s["reorgs"].as_u64().unwrap() >= 1, "{s}");
}

/// eth_getLogs with `pending` returns preconfirmed logs with correct indices; eth_call honours
/// state and block overrides on top of the pending state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_logs_and_call_overrides() {
    let node = start("dev", &["--block-time", "2s", "--flashblock-interval", "200ms"]).await;
    let probe = deploy_probe(&node.rpc, DEV_KEYS[8]);
    let mut fbs = collect_flashblocks(&node.ws).await;
    wait_for_early_flashblock(&mut fbs, 1..=4).await;
    // Another key: cast takes the `latest` nonce, and the deployment may still be preconfirmed.
    let hash = ping_async(&node.rpc, DEV_KEYS[3], probe, "77");
    let mut found = None;
    for _ in 0..40 {
        let r = raw_rpc(
            &node.rpc,
            "eth_getLogs",
            json!([{"fromBlock": "pending", "toBlock": "pending", "address": probe}]),
        )
        .await;
        let logs = r["result"].as_array().cloned().unwrap_or_default();
        if let Some(log) = logs.into_iter().find(|l| l["transactionHash"] == json!(hash)) {
            found = Some(log);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = found.expect("the Ping log is served from the pending block");
    let receipt =
        raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
    assert_eq!(log["logIndex"], receipt["logs"][0]["logIndex"]);
    assert_eq!(log["transactionIndex"], receipt["transactionIndex"]);
    assert_eq!(log["blockNumber"], receipt["blockNumber"]);
    assert!(
        quantity(&log["blockNumber"]) > block_number(&node.rpc).await,
        "preconfirmed, not yet canonical"
    );
    // A range ending at pending also carries it; a range of canonical blocks only does not.
    let r = raw_rpc(
        &node.rpc,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "pending", "address": probe}]),
    )
    .await;
    assert!(
        r["result"].as_array().unwrap().iter().any(|l| l["transactionHash"] == json!(hash)),
        "{r}"
    );
    let r = raw_rpc(
        &node.rpc,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "latest", "address": probe}]),
    )
    .await;
    assert!(
        !r["result"].as_array().unwrap().iter().any(|l| l["transactionHash"] == json!(hash)),
        "{r}"
    );

    // Overrides: the counter slot and the block number.
    let counter = Bytes::from(IProbe::counterCall {}.abi_encode());
    let r = raw_rpc(
        &node.rpc,
        "eth_call",
        json!([{"to": probe, "data": counter}, "pending",
        {probe.to_string(): {"stateDiff": {format!("0x{:064x}", 0): format!("0x{:064x}", 4242)}}}]),
    )
    .await;
    let ret: Bytes = r["result"].as_str().unwrap_or_else(|| panic!("{r}")).parse().unwrap();
    assert_eq!(U256::from_be_slice(&ret), U256::from(4242));
    let env = Bytes::from(IProbe::envCall {}.abi_encode());
    let r = raw_rpc(
        &node.rpc,
        "eth_call",
        json!([{"to": probe, "data": env}, "pending", null, {"number": "0x1234"}]),
    )
    .await;
    let ret: Bytes = r["result"].as_str().unwrap_or_else(|| panic!("{r}")).parse().unwrap();
    assert_eq!(IProbe::envCall::abi_decode_returns(&ret).unwrap().number, U256::from(0x1234));
}

/// Bad call input gets clear JSON-RPC errors and never hurts the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_call_input_gets_clear_errors() {
    let node = start("dev", &[]).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await
    );
    let cases = [
        ("malformed call object", json!([{"to": "0x12"}, "pending"]), -32602),
        ("unknown block tag", json!([{"to": Address::ZERO}, "pendingg"]), -32602),
        (
            "gas above the cap",
            json!([{"to": Address::ZERO, "gas": "0xffffffffff"}, "pending"]),
            -32000,
        ),
        (
            "both state and stateDiff",
            json!([{"to": Address::ZERO}, "pending", {Address::ZERO.to_string(): {"state": {}, "stateDiff": {}}}]),
            -32000,
        ),
    ];
    for (what, params, code) in cases {
        for method in ["eth_call", "eth_estimateGas", "eth_createAccessList"] {
            if method == "eth_estimateGas" && what == "gas above the cap" {
                continue; // estimation caps the gas, as geth does
            }
            let r = raw_rpc(&node.rpc, method, params.clone()).await;
            assert_eq!(r["error"]["code"], code, "{method} {what}: {r}");
            assert!(
                !r["error"]["message"].as_str().unwrap_or_default().is_empty(),
                "{method} {what}"
            );
        }
    }
    // Calldata over the documented limit (512 KiB) is refused before execution; just under
    // it runs.
    let huge = format!("0x{}", "ab".repeat(1_000_000));
    for method in ["eth_call", "eth_estimateGas", "eth_createAccessList"] {
        let r = raw_rpc(
            &node.rpc,
            method,
            json!([{"to": Address::repeat_byte(1), "data": huge}, "pending"]),
        )
        .await;
        assert_eq!(r["error"]["code"], -32000, "{method}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("exceeds the limit of 524288 bytes"),
            "{method}: {r}"
        );
    }
    let big = format!("0x{}", "ab".repeat(500 * 1024));
    let r = raw_rpc(
        &node.rpc,
        "eth_call",
        json!([{"to": Address::repeat_byte(1), "data": big}, "pending"]),
    )
    .await;
    assert_eq!(r["result"], "0x", "{}", r["error"]);
    // eth_simulateV1: a malformed payload, a non-hex input, over-limit calldata, unsupported
    // traceTransfers: -32602 each, with a message.
    let sim_cases = [
        ("payload not an object", json!(["nope", "pending"])),
        ("calls not an array", json!([{"blockStateCalls": [{"calls": 5}]}, "pending"])),
        (
            "non-hex input",
            json!([{"blockStateCalls": [{"calls": [{"to": Address::ZERO, "input": "0xzz"}]}]}, "pending"]),
        ),
        (
            "calldata over the limit",
            json!([{"blockStateCalls": [{"calls": [{"to": Address::ZERO, "input": huge}]}]}, "pending"]),
        ),
        ("traceTransfers", json!([{"blockStateCalls": [], "traceTransfers": true}, "pending"])),
        ("unknown block tag", json!([{"blockStateCalls": []}, "pendingg"])),
    ];
    for (what, params) in sim_cases {
        let r = raw_rpc(&node.rpc, "eth_simulateV1", params).await;
        assert_eq!(r["error"]["code"], -32602, "eth_simulateV1 {what}: {r}");
        assert!(!r["error"]["message"].as_str().unwrap_or_default().is_empty(), "{what}");
    }
    // A reverting call reports the reason; an out-of-gas call says so.
    let probe = deploy_probe(&node.rpc, DEV_KEYS[9]);
    let fail = Bytes::from(IProbe::failCall {}.abi_encode());
    let r = raw_rpc(&node.rpc, "eth_call", json!([{"to": probe, "data": fail}, "pending"])).await;
    assert_eq!(r["error"]["code"], 3, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("Probe: deliberate failure"), "{r}");
    let burn = Bytes::from(IProbe::burnCall { rounds: U256::from(100_000) }.abi_encode());
    let r = raw_rpc(
        &node.rpc,
        "eth_call",
        json!([{"to": probe, "data": burn, "gas": "0x30000"}, "pending"]),
    )
    .await;
    assert!(r["error"]["message"].as_str().unwrap().contains("gas"), "{r}");
    let r = raw_rpc(&node.rpc, "eth_estimateGas", json!([{"to": probe, "data": fail}, "pending"]))
        .await;
    assert_eq!(r["error"]["code"], 3, "{r}");
    assert!(status(&node.rpc).await["mode"] == "flashblocks");
}
