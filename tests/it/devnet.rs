//! Acceptance tests of the embedded devnet (`flashnode devnet`) through its public surface:
//! cast, an alloy provider, raw JSON-RPC and the flashblock websocket.

use alloy_consensus::{Header, TxReceipt};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_provider::Provider;
use alloy_sol_types::SolEvent;
use alloy_trie::{root::storage_root_unhashed, TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use flashnode_tests::*;
use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};

const KEY0: &str = DEV_KEYS[0];

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex quantity").trim_start_matches("0x"), 16)
        .expect("hex")
}

/// cast sends an EIP-1559 transfer; the websocket shows it in a flashblock with index > 0
/// before the block seals, and the sealed receipt matches the flashblock's receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_transfer_is_streamed_before_the_block_seals() {
    let node = start("devnet", &[]).await;
    let mut fbs = collect_flashblocks(&node.ws).await;
    let to = address_of(DEV_KEYS[1]);
    let hash = cast(&[
        "send",
        "--async",
        "--rpc-url",
        &node.rpc,
        "--private-key",
        KEY0,
        &to.to_string(),
        "--value",
        "1ether",
    ]);
    let hash: B256 = hash.parse().expect("cast prints the tx hash");

    let seen = loop {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
        if fb.payload.metadata.receipts.contains_key(&hash) {
            break fb;
        }
    };
    // Preconfirmed: the canonical chain has not reached the flashblock's block yet.
    let canonical = node.provider().get_block_number().await.unwrap();
    assert!(canonical < seen.payload.metadata.block_number, "tx streamed before its block sealed");
    assert!(seen.payload.index > 0, "user txs never ride in index 0");
    assert!(seen.payload.base.is_none());
    let raw_in_diff = seen.payload.diff.transactions.iter().any(|raw| keccak256(raw) == hash);
    assert!(raw_in_diff, "the flashblock diff carries the raw tx");

    let receipt_json: Value = serde_json::from_str(&cast(&[
        "receipt",
        "--json",
        "--rpc-url",
        &node.rpc,
        &hash.to_string(),
    ]))
    .unwrap();
    let fb_receipt = &seen.payload.metadata.receipts[&hash];
    assert_eq!(quantity(&receipt_json["blockNumber"]), seen.payload.metadata.block_number);
    assert_eq!(quantity(&receipt_json["status"]), 1);
    assert!(fb_receipt.status());
    assert_eq!(quantity(&receipt_json["cumulativeGasUsed"]), fb_receipt.cumulative_gas_used());
    assert_eq!(quantity(&receipt_json["gasUsed"]), 21_000);
    assert_eq!(receipt_json["logs"].as_array().unwrap().len(), fb_receipt.logs().len());
    assert!(quantity(&receipt_json["l1Fee"]) > 0, "OP receipts carry a real L1 fee");
}

/// A contract deployment and a call that emits logs round-trip through cast, and the logs
/// appear in the flashblock metadata receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_deploy_and_logs_round_trip() {
    let node = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mut fbs = collect_flashblocks(&node.ws).await;
    let deploy = deploy_probe_receipt(&node.rpc, KEY0);
    let probe: Address = deploy["contractAddress"].as_str().unwrap().parse().unwrap();
    assert_eq!(quantity(&deploy["status"]), 1);
    let code = cast(&["code", "--rpc-url", &node.rpc, &probe.to_string()]);
    assert!(code.len() > 10, "deployed code is served");

    let out = cast(&[
        "send",
        "--json",
        "--rpc-url",
        &node.rpc,
        "--private-key",
        KEY0,
        &probe.to_string(),
        "ping(uint256)",
        "42",
    ]);
    let receipt: Value = serde_json::from_str(&out).unwrap();
    let hash: B256 = receipt["transactionHash"].as_str().unwrap().parse().unwrap();
    let logs = receipt["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["topics"][0].as_str().unwrap(), IProbe::Ping::SIGNATURE_HASH.to_string());

    let mut found = None;
    while found.is_none() {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
        found = fb.payload.metadata.receipts.get(&hash).cloned();
    }
    let fb_receipt = found.unwrap();
    assert_eq!(fb_receipt.logs().len(), 1);
    assert_eq!(fb_receipt.logs()[0].address, probe);
    assert_eq!(fb_receipt.logs()[0].topics()[0], IProbe::Ping::SIGNATURE_HASH);

    let counter = cast(&["call", "--rpc-url", &node.rpc, &probe.to_string(), "counter()(uint256)"]);
    assert_eq!(counter, "1");
}

/// With blocks full of transactions, flashblock j never uses more than j/n of the gas limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashblocks_respect_their_gas_caps() {
    let gas_limit = 5_000_000u64;
    let node = start(
        "devnet",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--gas-limit", "5000000"],
    )
    .await;
    let provider = node.provider();
    let chain_id = provider.get_chain_id().await.unwrap();
    let mut fbs = collect_flashblocks(&node.ws).await;
    // 60 transactions with 2,500 bytes of calldata (~121k gas each under the EIP-7623 floor):
    // about 7.3M gas, more than a whole block.
    let data = Bytes::from(vec![0xffu8; 2_500]);
    for key in &DEV_KEYS[..6] {
        for nonce in 0..10u64 {
            let raw = sign_1559(
                key,
                chain_id,
                nonce,
                TxKind::Call(Address::repeat_byte(0x11)),
                U256::from(1),
                data.clone(),
                130_000,
                100_000_000_000,
            );
            let _ = provider.send_raw_transaction(&raw).await.unwrap();
        }
    }
    let n = 10u64;
    let mut full_blocks = 0;
    let mut checked = 0;
    while checked < 30 {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
        let j = fb.payload.index;
        if j == 0 {
            assert_eq!(
                fb.payload.diff.transactions.len(),
                1,
                "index 0 carries only the L1-info deposit"
            );
            continue;
        }
        checked += 1;
        let cap = gas_limit / n * j;
        assert!(
            fb.payload.diff.gas_used <= cap,
            "flashblock {j} used {} > cap {cap}",
            fb.payload.diff.gas_used
        );
        if j == n && fb.payload.diff.gas_used > gas_limit * 9 / 10 {
            full_blocks += 1;
        }
    }
    assert!(full_blocks >= 1, "the load filled at least one block, so the caps were binding");
}

/// The sealed block hash recomputed from the header fields matches, equals the last
/// flashblock's block_hash, and the state root matches an independent recomputation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_hash_and_state_root_recompute() {
    let node = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mut fbs = collect_flashblocks(&node.ws).await;
    cast(&[
        "send",
        "--rpc-url",
        &node.rpc,
        "--private-key",
        KEY0,
        "--create",
        TOKEN_BIN.trim(),
        "constructor(uint256)",
        "1000000",
    ]);
    // Follow one whole block from index 0 to its last flashblock.
    let mut last_of_block: BTreeMap<u64, (u64, B256, B256)> = BTreeMap::new();
    let start_block = loop {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
        if fb.payload.index == 0 {
            break fb.payload.metadata.block_number;
        }
    };
    loop {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
        let number = fb.payload.metadata.block_number;
        if number > start_block {
            break;
        }
        last_of_block.insert(
            number,
            (fb.payload.index, fb.payload.diff.block_hash, fb.payload.diff.state_root),
        );
    }
    let (_, fb_hash, fb_state_root) = last_of_block[&start_block];
    let block: Value =
        raw_rpc(&node.rpc, "eth_getBlockByNumber", json!([format!("0x{start_block:x}"), false]))
            .await["result"]
            .clone();
    let header: Header =
        serde_json::from_value(block.clone()).expect("the RPC block header deserialises");
    let hash: B256 = block["hash"].as_str().unwrap().parse().unwrap();
    assert_eq!(header.hash_slow(), hash, "hash recomputed from the header fields");
    assert_eq!(hash, fb_hash, "the sealed hash is the last flashblock's block_hash");
    assert_eq!(header.state_root, fb_state_root);

    // Independent state root: every account from the dump, hashed into a trie here.
    let dump = raw_rpc(&node.rpc, "devnet_dumpState", json!([format!("0x{start_block:x}")])).await
        ["result"]
        .clone();
    let accounts = dump["accounts"].as_object().unwrap();
    assert!(accounts.len() >= 11, "dev accounts and predeploys are in the dump");
    let root = alloy_trie::root::state_root_unhashed(accounts.iter().map(|(addr, acc)| {
        let storage: Vec<(B256, U256)> = acc["storage"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    B256::from(k.parse::<U256>().unwrap()),
                    v.as_str().unwrap().parse::<U256>().unwrap(),
                )
            })
            .collect();
        let code: Bytes = acc["code"].as_str().unwrap().parse().unwrap();
        (
            addr.parse::<Address>().unwrap(),
            TrieAccount {
                nonce: acc["nonce"].as_u64().unwrap(),
                balance: acc["balance"].as_str().unwrap().parse().unwrap(),
                storage_root: if storage.is_empty() {
                    EMPTY_ROOT_HASH
                } else {
                    storage_root_unhashed(storage)
                },
                code_hash: if code.is_empty() { KECCAK_EMPTY } else { keccak256(&code) },
            },
        )
    }));
    assert_eq!(root, header.state_root, "state root recomputed independently");
}

/// Bad transactions get the usual JSON-RPC errors and never stop the sequencer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transactions_get_clear_errors() {
    let node = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let provider = node.provider();
    let to = TxKind::Call(Address::repeat_byte(0x22));
    let fee = 100_000_000_000u128;

    let malformed = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!(["0x02deadbeef"])).await;
    assert_eq!(malformed["error"]["code"], -32602, "{malformed}");
    assert!(malformed["error"]["message"].as_str().unwrap().contains("decode"));

    let not_hex = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!(["hello"])).await;
    assert_eq!(not_hex["error"]["code"], -32602, "{not_hex}");

    let wrong_chain = sign_1559(KEY0, 1, 0, to, U256::from(1), Bytes::new(), 21_000, fee);
    let r = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!([wrong_chain])).await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("chain id"), "{r}");

    // Spend nonce 0, then reuse it.
    let ok = sign_1559(KEY0, 901, 0, to, U256::from(1), Bytes::new(), 21_000, fee);
    let pending = provider.send_raw_transaction(&ok).await.unwrap();
    pending.with_timeout(Some(Duration::from_secs(10))).watch().await.unwrap();
    let reused = sign_1559(KEY0, 901, 0, to, U256::from(2), Bytes::new(), 21_000, fee);
    let r = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!([reused])).await;
    assert_eq!(r["error"]["code"], -32000);
    assert!(r["error"]["message"].as_str().unwrap().starts_with("nonce too low"), "{r}");

    let whale = U256::from(20_000u64) * U256::from(10u64).pow(U256::from(18u64));
    let broke = sign_1559(DEV_KEYS[3], 901, 0, to, whale, Bytes::new(), 21_000, fee);
    let r = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!([broke])).await;
    assert_eq!(r["error"]["code"], -32000);
    assert!(r["error"]["message"].as_str().unwrap().starts_with("insufficient funds"), "{r}");

    let too_little_gas =
        sign_1559(DEV_KEYS[4], 901, 0, to, U256::from(1), Bytes::new(), 20_000, fee);
    let r = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!([too_little_gas])).await;
    assert!(r["error"]["message"].as_str().unwrap().starts_with("intrinsic gas too low"), "{r}");

    let bad_params = raw_rpc(&node.rpc, "eth_getBalance", json!(["0x1234"])).await;
    assert_eq!(bad_params["error"]["code"], -32602, "{bad_params}");

    // The sequencer keeps going and a valid tx still lands.
    let before = provider.get_block_number().await.unwrap();
    let ok = sign_1559(KEY0, 901, 1, to, U256::from(1), Bytes::new(), 21_000, fee);
    let receipt = provider
        .send_raw_transaction(&ok)
        .await
        .unwrap()
        .with_timeout(Some(Duration::from_secs(10)))
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert!(provider.get_block_number().await.unwrap() > before);
    assert!(node.proc.output().contains("sealed block"));
}

/// With `--flashblocks-brotli` every frame is a brotli Binary frame that decodes to the same
/// JSON shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brotli_binary_frames() {
    let node = start(
        "devnet",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--flashblocks-brotli"],
    )
    .await;
    let mut fbs = collect_flashblocks(&node.ws).await;
    let mut saw_base = false;
    for _ in 0..15 {
        let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
        assert!(fb.binary);
        assert!(fb.json.get("payload_id").is_some() && fb.json.get("diff").is_some());
        saw_base |= fb.payload.base.is_some();
    }
    assert!(saw_base, "index 0 frames carry the base");
}
