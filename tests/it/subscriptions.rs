//! eth_subscribe over a real websocket: flashblocks in order, flashblock transactions, pending
//! logs (with `removed: true` on a tail reorg) and canonical heads.

use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent};
use flashnode_tests::*;
use serde_json::{json, Value};
use std::{collections::HashSet, time::Duration};

fn quantity(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().expect("u64"),
        _ => u64::from_str_radix(
            v.as_str().unwrap_or_else(|| panic!("quantity, got {v}")).trim_start_matches("0x"),
            16,
        )
        .expect("hex"),
    }
}

/// Every flashblock of `flashnode dev`, in order and without a gap, across 20 blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_flashblocks_arrive_in_order_without_gaps() {
    let node = start("dev", &["--block-time", "500ms", "--flashblock-interval", "50ms"]).await;
    let mut ws = WsRpc::connect(&node.rpc).await;
    let delta = ws.subscribe(json!(["newFlashblocks"])).await;
    let full = ws.subscribe(json!(["newFlashblocks", {"full": true}])).await;
    let heads = ws.subscribe(json!(["newHeads"])).await;
    let mut last: Option<(u64, u64)> = None;
    let mut blocks = HashSet::new();
    let mut saw_full = false;
    let mut saw_head = false;
    while blocks.len() < 20 {
        let (sub, msg) = ws.notification(Duration::from_secs(5)).await.expect("a notification");
        if sub == full {
            saw_full |= msg["transactions"].is_array() && msg["hash"].is_string();
            continue;
        }
        if sub == heads {
            saw_head |= msg["number"].is_string();
            continue;
        }
        assert_eq!(sub, delta);
        let (number, index) = (quantity(&msg["blockNumber"]), quantity(&msg["index"]));
        if let Some((n, i)) = last {
            let next_in_block = number == n && index == i + 1;
            let next_block = number == n + 1 && index == 0 && i == 10;
            assert!(next_in_block || next_block, "({n},{i}) then ({number},{index})");
        } else {
            // Start counting at a block boundary.
            if index != 0 {
                continue;
            }
        }
        last = Some((number, index));
        blocks.insert(number);
    }
    assert!(saw_full, "the full-block variant works");
    assert!(saw_head, "newHeads delivers canonical heads");
}

/// pendingLogs delivers a contract's event while its block is still pending, and
/// newFlashblockTransactions carries the tx with its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_logs_deliver_events_from_flashblocks() {
    let node = start("dev", &["--block-time", "2s", "--flashblock-interval", "200ms"]).await;
    let probe = deploy_probe(&node.rpc, DEV_KEYS[1]);
    let mut ws = WsRpc::connect(&node.rpc).await;
    let logs_sub = ws
        .subscribe(
            json!(["pendingLogs", {"address": probe, "topics": [IProbe::Ping::SIGNATURE_HASH]}]),
        )
        .await;
    let txs_sub = ws.subscribe(json!(["newFlashblockTransactions", true])).await;
    // Send early in a block so the event is delivered while its block is still pending.
    let mut fbs = collect_flashblocks(&node.ws).await;
    loop {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(5)).await;
        if (1..=3).contains(&fb.payload.index) && fbs.is_empty() {
            break;
        }
    }
    let hash = ping_async(&node.rpc, DEV_KEYS[2], probe, "5");
    let (mut got_log, mut got_tx) = (None, false);
    while got_log.is_none() || !got_tx {
        let (sub, msg) = ws.notification(Duration::from_secs(5)).await.expect("notifications");
        if sub == logs_sub && msg["transactionHash"] == json!(hash) {
            assert_eq!(msg["removed"], false);
            assert_eq!(msg["address"].as_str().unwrap().parse::<Address>().unwrap(), probe);
            let tip = quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]);
            got_log = Some((quantity(&msg["blockNumber"]), tip));
        }
        if sub == txs_sub && msg["hash"] == json!(hash) {
            got_tx = msg["logs"].as_array().is_some_and(|l| l.len() == 1);
        }
    }
    let (log_block, tip_then) = got_log.unwrap();
    assert!(
        log_block > tip_then,
        "the log was delivered from a flashblock, before its block was canonical"
    );
    let bad = ws.request("eth_subscribe", json!(["noSuchThing"])).await;
    assert_eq!(bad["error"]["code"], -32602);
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("newFlashblocks, newFlashblockTransactions")),
        "{bad}"
    );
    // Misspelt or mistyped options are refused, not served in the default shape.
    for params in [
        json!(["newFlashblocks", {"fulll": true}]),
        json!(["newFlashblocks", {"full": "yes"}]),
        json!(["newFlashblockTransactions", "x"]),
    ] {
        let bad = ws.request("eth_subscribe", params.clone()).await;
        assert_eq!(bad["error"]["code"], -32602, "{params}: {bad}");
    }
    // Missing params read as a sentence, not a debug dump of jsonrpsee's error.
    let bad = ws.request("eth_subscribe", json!([])).await;
    assert_eq!(bad["error"]["message"], "invalid params: No more params", "{bad}");
    for method in ["eth_getBalance", "eth_getTransactionReceipt"] {
        let bad = raw_rpc(&node.rpc, method, json!([])).await;
        let msg = bad["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("invalid params: ") && !msg.contains("ErrorObject"),
            "{method}: {bad}"
        );
    }
}

/// A forced tail reorg delivers `removed: true` for the logs of the dropped transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reorg_retracts_pending_logs() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let node = start_node(&devnet.ws, &devnet.rpc, &[]).await;
    let probe = deploy_probe(&devnet.rpc, DEV_KEYS[0]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await
    );
    let mut ws = WsRpc::connect(&node.rpc).await;
    let logs_sub = ws.subscribe(json!(["pendingLogs", {"address": probe}])).await;
    raw_rpc(&devnet.rpc, "devnet_injectTailReorg", json!([])).await;
    let ping = Bytes::from(IProbe::pingCall { value: U256::from(1) }.abi_encode());
    let sender = tokio::spawn({
        let rpc = devnet.rpc.clone();
        async move {
            for round in 0..30u64 {
                for key in &DEV_KEYS[1..] {
                    let raw = sign_1559(
                        key,
                        901,
                        round,
                        TxKind::Call(probe),
                        U256::ZERO,
                        ping.clone(),
                        100_000,
                        10_000_000_000,
                    );
                    raw_rpc(&rpc, "eth_sendRawTransaction", json!([raw])).await;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    let mut added = HashSet::new();
    let mut removed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while removed.is_empty() && std::time::Instant::now() < deadline {
        let Some((sub, msg)) = ws.notification(Duration::from_secs(2)).await else { continue };
        assert_eq!(sub, logs_sub);
        let key = (msg["transactionHash"].clone(), msg["logIndex"].clone());
        if msg["removed"] == true {
            removed.push(key);
        } else {
            added.insert(key);
        }
    }
    sender.abort();
    assert!(!removed.is_empty(), "a tail reorg retracts logs with removed: true");
    for key in &removed {
        assert!(added.contains(key), "only logs that were delivered are retracted: {key:?}");
        let r = raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([key.0])).await;
        assert!(r["result"].is_null(), "a retracted log's tx has no receipt: {r}");
    }
}
