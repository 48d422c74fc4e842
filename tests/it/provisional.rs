//! #28 and #25.3 through the public surface of `flashnode dev`: every preconfirmed object
//! carries the pending block's provisional `blockHash` and has the execution-apis shape; that
//! hash resolves by every by-hash method while the block is pending and answers as a block
//! that left the chain (`null`) once it sealed; `eth_getLogs` returns preconfirmed logs only
//! when the pending block is inside the range, and the same ranges of sealed blocks on anvil
//! never return a block outside them either.

use alloy_primitives::{keccak256, Address, Bytes, TxKind, U256};
use flashnode_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Long blocks, so the checks fit before the seal.
const BLOCK_TIME: &str = "6s";

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
}

/// `ping(uint256)` calldata for tests/contracts/Probe.sol.
fn ping(value: u64) -> Bytes {
    let mut data = keccak256("ping(uint256)")[..4].to_vec();
    data.extend_from_slice(&U256::from(value).to_be_bytes::<32>());
    data.into()
}

async fn nonce(rpc: &str, key: &str) -> u64 {
    let addr = address_of(key);
    quantity(&raw_rpc(rpc, "eth_getTransactionCount", json!([addr, "pending"])).await["result"])
}

/// Deploys Probe and pings it with `key` through `rpc`; returns (probe, ping tx hash).
async fn deploy_and_ping(rpc: &str, key: &str, chain_id: u64) -> (Address, String) {
    let n = nonce(rpc, key).await;
    let code: Bytes = PROBE_BIN.trim().parse().expect("Probe.bin is hex");
    let deploy =
        sign_1559(key, chain_id, n, TxKind::Create, U256::ZERO, code, 1_000_000, 10_000_000_000);
    let sent = raw_rpc(rpc, "eth_sendRawTransaction", json!([deploy])).await;
    assert!(sent["result"].is_string(), "{sent}");
    let probe = address_of(key).create(n);
    let call = sign_1559(
        key,
        chain_id,
        n + 1,
        TxKind::Call(probe),
        U256::ZERO,
        ping(7),
        200_000,
        10_000_000_000,
    );
    let sent = raw_rpc(rpc, "eth_sendRawTransaction", json!([call])).await;
    let hash = sent["result"].as_str().unwrap_or_else(|| panic!("{sent}")).to_string();
    (probe, hash)
}

/// Polls for the receipt of `hash` (the preconfirmed one, on `flashnode dev`).
async fn receipt(rpc: &str, hash: &str) -> Value {
    for _ in 0..200 {
        let r = raw_rpc(rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no receipt for {hash}");
}

async fn tip(rpc: &str) -> u64 {
    quantity(&raw_rpc(rpc, "eth_blockNumber", json!([])).await["result"])
}

/// `flashnode dev` serving flashblocks, right after the seal of a block at least `min_tip`
/// (so the whole block time is left).
async fn dev_after_a_seal(min_tip: u64) -> Running {
    let node = start("dev", &["--block-time", BLOCK_TIME, "--flashblock-interval", "200ms"]).await;
    let rpc = node.rpc.as_str();
    let serving = || async { status(rpc).await["mode"] == "flashblocks" };
    assert!(eventually(Duration::from_secs(30), serving).await);
    assert!(eventually(Duration::from_secs(60), || async { tip(rpc).await >= min_tip }).await);
    let start = tip(rpc).await;
    assert!(eventually(Duration::from_secs(15), || async { tip(rpc).await > start }).await);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisional_hash_is_served_everywhere_and_resolves_while_pending() {
    let node = dev_after_a_seal(1).await;
    let rpc = node.rpc.as_str();
    let (probe, hash) = deploy_and_ping(rpc, DEV_KEYS[9], 901).await;
    let r = receipt(rpc, &hash).await;
    let number = quantity(&r["blockNumber"]);
    assert!(tip(rpc).await < number, "the receipt is preconfirmed: {r}");
    schema::check_receipt(&r).unwrap();
    let provisional = r["blockHash"].clone();
    let index = r["transactionIndex"].clone();

    // Every by-hash method answers with the pending block while it is pending, whatever
    // flashblocks came since the receipt was read.
    let block =
        raw_rpc(rpc, "eth_getBlockByHash", json!([provisional, true])).await["result"].clone();
    assert_eq!(quantity(&block["number"]), number, "{block}");
    schema::check_block(&block).unwrap();
    assert!(block["transactions"].as_array().unwrap().iter().any(|t| t["hash"] == json!(hash)));
    let by_index =
        raw_rpc(rpc, "eth_getTransactionByBlockHashAndIndex", json!([provisional, index])).await
            ["result"]
            .clone();
    assert_eq!(by_index["hash"], json!(hash), "{by_index}");
    schema::check_transaction(&by_index).unwrap();
    let by_number =
        raw_rpc(rpc, "eth_getTransactionByBlockNumberAndIndex", json!(["pending", index])).await
            ["result"]
            .clone();
    assert_eq!(by_number["hash"], json!(hash), "{by_number}");
    let count = raw_rpc(rpc, "eth_getBlockTransactionCountByHash", json!([provisional])).await;
    assert!(quantity(&count["result"]) > quantity(&index), "{count}");
    let receipts =
        raw_rpc(rpc, "eth_getBlockReceipts", json!([provisional])).await["result"].clone();
    let receipts = receipts.as_array().expect("the pending block's receipts");
    assert!(receipts.iter().any(|x| x["transactionHash"] == json!(hash)));
    for x in receipts {
        schema::check_receipt(x).unwrap();
        assert_eq!(x["blockHash"], receipts[0]["blockHash"], "one hash in one answer");
    }
    let logs =
        raw_rpc(rpc, "eth_getLogs", json!([{"blockHash": provisional, "address": probe}])).await;
    let logs = logs["result"].as_array().unwrap_or_else(|| panic!("{logs}")).clone();
    assert_eq!(logs.len(), 1, "{logs:?}");
    schema::check_log(&logs[0]).unwrap();
    // EIP-1898 state reads by the provisional hash read the pending state.
    let code = raw_rpc(rpc, "eth_getCode", json!([probe, {"blockHash": provisional}])).await;
    assert!(code["result"].as_str().is_some_and(|c| c.len() > 2), "{code}");
    // The transaction and the pending block, by the same rule.
    let tx = raw_rpc(rpc, "eth_getTransactionByHash", json!([hash])).await["result"].clone();
    schema::check_transaction(&tx).unwrap();
    let pending =
        raw_rpc(rpc, "eth_getBlockByNumber", json!(["pending", true])).await["result"].clone();
    schema::check_block(&pending).unwrap();

    // After the seal: the canonical values replace the provisional ones, and the provisional
    // hash answers as a block that left the chain does.
    assert!(eventually(Duration::from_secs(15), || async { tip(rpc).await >= number }).await);
    let sealed = raw_rpc(rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
    assert_ne!(sealed["blockHash"], provisional, "{sealed}");
    schema::check_receipt(&sealed).unwrap();
    let canonical =
        raw_rpc(rpc, "eth_getBlockByNumber", json!([format!("0x{number:x}"), false])).await;
    assert_eq!(sealed["blockHash"], canonical["result"]["hash"]);
    let gone = raw_rpc(rpc, "eth_getBlockByHash", json!([provisional, false])).await;
    assert!(gone["result"].is_null(), "{gone}");
    let gone =
        raw_rpc(rpc, "eth_getTransactionByBlockHashAndIndex", json!([provisional, index])).await;
    assert!(gone["result"].is_null(), "{gone}");
}

/// The ranges of #25.3 with the pending block at P (holding a Ping log), and the same shapes
/// of sealed blocks on anvil with its latest block at L (holding one): the block's log comes
/// back only when the block is inside the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_logs_only_inside_the_range_as_anvil_for_sealed_blocks() {
    // Past block 4, so that P - 3 is a block.
    let node = dev_after_a_seal(4).await;
    let rpc = node.rpc.as_str();
    let (probe, hash) = deploy_and_ping(rpc, DEV_KEYS[2], 901).await;
    let p = quantity(&receipt(rpc, &hash).await["blockNumber"]);
    assert!(tip(rpc).await < p, "preconfirmed");

    let anvil = Anvil::start(901).await;
    for _ in 0..20 {
        raw_rpc(&anvil.url, "evm_mine", json!([])).await;
    }
    let (anvil_probe, _) = deploy_and_ping(&anvil.url, DEV_KEYS[2], 901).await;
    raw_rpc(&anvil.url, "evm_mine", json!([])).await;
    let l = tip(&anvil.url).await;

    let q = |n: u64| json!(format!("0x{n:x}"));
    // (range on flashnode with "pending", the same shape on anvil with "latest", included?)
    let shapes = [
        (json!([q(p + 5), "pending"]), json!([q(l + 5), "latest"]), false),
        (json!([q(100_000), "pending"]), json!([q(100_000), "latest"]), false),
        (json!(["pending", q(p - 3)]), json!(["latest", q(l - 3)]), false),
        (json!([q(p), "pending"]), json!([q(l), "latest"]), true),
        (json!(["pending", "pending"]), json!(["latest", "latest"]), true),
        (json!([q(p - 3), "pending"]), json!([q(l - 3), "latest"]), true),
    ];
    for (ours, theirs, included) in shapes {
        let filter = |range: &Value, address: Address| json!([{"fromBlock": range[0], "toBlock": range[1], "address": address}]);
        let got = raw_rpc(rpc, "eth_getLogs", filter(&ours, probe)).await;
        let want = raw_rpc(&anvil.url, "eth_getLogs", filter(&theirs, anvil_probe)).await;
        let has = |v: &Value, block: u64| {
            v["result"]
                .as_array()
                .is_some_and(|logs| logs.iter().any(|x| quantity(&x["blockNumber"]) == block))
        };
        assert_eq!(has(&got, p), included, "flashnode {ours}: {got}");
        assert_eq!(has(&want, l), included, "anvil {theirs}: {want}");
        if !included {
            // Refused with the error other nodes give, or (anvil, an inverted range) empty.
            assert_eq!(got["error"]["code"], -32602, "flashnode {ours}: {got}");
            assert!(want["error"]["code"] == -32602 || want["result"] == json!([]), "{want}");
        }
    }
}
