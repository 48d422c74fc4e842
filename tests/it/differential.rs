//! Differential test against a real execution client: anvil (OP mode, Isthmus) is the
//! canonical upstream. This test plays the builder: it executes block N+1's transactions over
//! anvil's state at N through flashnode's own upstream `StateSource`, streams them as
//! flashblocks to `flashnode node`, records the node's preconfirmed answers, then mines the
//! same transactions into anvil and compares.

use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_sol_types::{SolCall, SolValue};
use flashnode_exec::BlockEnvInput;
use flashnode_tests::{anvil_chain::*, *};
use serde_json::{json, Value};
use std::time::Duration;

const CHAIN_ID: u64 = 901;
const FEE: u128 = 10_000_000_000;

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(
        v.as_str().unwrap_or_else(|| panic!("quantity, got {v}")).trim_start_matches("0x"),
        16,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconfirmations_match_anvil() {
    let anvil = Anvil::start(CHAIN_ID).await;
    let key0 = DEV_KEYS[0];
    let (a1, a2, a3) =
        (address_of(DEV_KEYS[1]), Address::repeat_byte(0xa2), Address::repeat_byte(0xa3));

    // Setup blocks: deploy the token and the probe.
    let token_deploy = sign_1559(
        key0,
        CHAIN_ID,
        0,
        TxKind::Create,
        U256::ZERO,
        creation(TOKEN_BIN, &U256::from(10u64).pow(U256::from(24u64)).abi_encode()),
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
    let token: Address = r["result"][0]["contractAddress"].as_str().unwrap().parse().unwrap();
    let probe: Address = r["result"][1]["contractAddress"].as_str().unwrap().parse().unwrap();

    // The node follows anvil and a scripted flashblock source.
    let source_ws = FlashblockSource::start().await;
    let node = start_node(
        &source_ws.url,
        &anvil.url,
        &["--pending-stale-after", "60s", "--upstream-poll-interval", "50ms"],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["streamConnected"] == true
        })
        .await
    );

    // Block N+1's environment, which anvil will be made to use too.
    let parent = raw_rpc(&anvil.url, "eth_getBlockByNumber", json!(["latest", false])).await
        ["result"]
        .clone();
    let parent_hash: B256 = parent["hash"].as_str().unwrap().parse().unwrap();
    let coinbase = Address::repeat_byte(0xcb);
    let env = BlockEnvInput {
        number: quantity(&parent["number"]) + 1,
        timestamp: quantity(&parent["timestamp"]) + 2,
        coinbase,
        base_fee: 1_000_000_000,
        gas_limit: quantity(&parent["gasLimit"]),
        prev_randao: B256::ZERO,
        parent_hash,
        parent_beacon_block_root: B256::ZERO,
        extra_data: Bytes::new(),
    };
    let call = |to: Address, data: Vec<u8>| (TxKind::Call(to), Bytes::from(data));
    let txs: Vec<Bytes> = [
        (
            key0,
            2u64,
            call(token, IToken::transferCall { to: a1, value: U256::from(1000) }.abi_encode()),
            100_000u64,
        ),
        (DEV_KEYS[1], 0, (TxKind::Call(a2), Bytes::new()), 21_000),
        (key0, 3, call(probe, IProbe::pingCall { value: U256::from(7) }.abi_encode()), 100_000),
        (DEV_KEYS[2], 0, call(probe, IProbe::failCall {}.abi_encode()), 100_000),
        (
            DEV_KEYS[3],
            0,
            call(probe, IProbe::burnCall { rounds: U256::from(100_000) }.abi_encode()),
            60_000,
        ),
        (
            key0,
            4,
            call(token, IToken::transferCall { to: a3, value: U256::from(5) }.abi_encode()),
            100_000,
        ),
    ]
    .into_iter()
    .map(|(key, nonce, (to, data), gas)| {
        let value = if data.is_empty() { U256::from(12345) } else { U256::ZERO };
        sign_1559(key, CHAIN_ID, nonce, to, value, data, gas, FEE)
    })
    .collect();

    // Build the flashblocks over anvil's state at N, through flashnode's upstream StateSource.
    let frames = build_frames(
        &anvil.url,
        CHAIN_ID,
        &env,
        vec![Vec::new(), txs[..3].to_vec(), txs[3..].to_vec()],
    )
    .await;
    for f in frames {
        source_ws.send(f);
    }
    let hashes: Vec<B256> = txs.iter().map(alloy_primitives::keccak256).collect();
    let last = hashes[5];
    assert!(
        eventually(Duration::from_secs(5), || async {
            !raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([last])).await["result"]
                .is_null()
        })
        .await,
        "the node preconfirms the streamed txs: {}",
        status(&node.rpc).await
    );

    // The node's answers while N+1 is only preconfirmed.
    let mut pre_receipts = Vec::new();
    for h in &hashes {
        pre_receipts.push(
            raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([h])).await["result"].clone(),
        );
    }
    let calls: Vec<(&str, Value)> = vec![
        (
            "balanceOf",
            json!({"to": token, "data": Bytes::from(IToken::balanceOfCall(a1).abi_encode())}),
        ),
        (
            "transfer",
            json!({"from": address_of(key0), "to": token, "data": Bytes::from(IToken::transferCall { to: a2, value: U256::from(1) }.abi_encode())}),
        ),
        ("env", json!({"to": probe, "data": Bytes::from(IProbe::envCall {}.abi_encode())})),
        ("counter", json!({"to": probe, "data": Bytes::from(IProbe::counterCall {}.abi_encode())})),
        ("fail", json!({"to": probe, "data": Bytes::from(IProbe::failCall {}.abi_encode())})),
        (
            "out_of_gas",
            json!({"to": probe, "gas": "0xea60", "data": Bytes::from(IProbe::burnCall { rounds: U256::from(100_000) }.abi_encode())}),
        ),
    ];
    let mut pre_calls = Vec::new();
    for (_, c) in &calls {
        pre_calls.push(raw_rpc(&node.rpc, "eth_call", json!([c, "pending"])).await);
    }
    let estimates: Vec<Value> = vec![
        calls[1].1.clone(),
        json!({"from": address_of(key0), "to": probe, "data": Bytes::from(IProbe::pingCall { value: U256::from(1) }.abi_encode())}),
    ];
    let mut pre_estimates = Vec::new();
    for e in &estimates {
        pre_estimates.push(raw_rpc(&node.rpc, "eth_estimateGas", json!([e, "pending"])).await);
    }
    // eth_createAccessList in pending: an ERC-20 transfer and a storage-reading probe call.
    let access_list_calls: Vec<Value> = vec![calls[1].1.clone(), calls[3].1.clone()];
    let mut pre_lists = Vec::new();
    for c in &access_list_calls {
        pre_lists.push(raw_rpc(&node.rpc, "eth_createAccessList", json!([c, "pending"])).await);
    }
    // eth_simulateV1 in pending: block 1 is N+1 over the preconfirmed state, block 2 is N+2.
    let fresh = Address::repeat_byte(0x77);
    let sim = raw_rpc(&node.rpc, "eth_simulateV1", json!([{
        "blockStateCalls": [
            {"calls": [
                {"to": probe, "data": Bytes::from(IProbe::envCall {}.abi_encode())},
                {"from": address_of(key0), "to": token, "data": Bytes::from(IToken::transferCall { to: fresh, value: U256::from(777) }.abi_encode())},
                {"to": probe, "data": Bytes::from(IProbe::failCall {}.abi_encode())},
            ]},
            {"calls": [
                {"to": token, "data": Bytes::from(IToken::balanceOfCall(fresh).abi_encode())},
                {"to": probe, "data": Bytes::from(IProbe::envCall {}.abi_encode())},
            ]},
        ],
    }, "pending"])).await;
    let blocks = sim["result"].as_array().unwrap_or_else(|| panic!("simulated blocks: {sim}"));
    assert_eq!(blocks.len(), 2);
    assert_eq!(quantity(&blocks[0]["number"]), env.number, "the first simulated block is N+1");
    assert_eq!(quantity(&blocks[1]["number"]), env.number + 1);
    assert_eq!(blocks[1]["parentHash"], blocks[0]["hash"], "simulated blocks chain");
    let ret = |b: usize, c: usize| -> Bytes {
        blocks[b]["calls"][c]["returnData"].as_str().unwrap().parse().unwrap()
    };
    let env1 = IProbe::envCall::abi_decode_returns(&ret(0, 0)).unwrap();
    assert_eq!(env1.number, U256::from(env.number), "block.number in a pending simulation is N+1");
    assert_eq!(env1.timestamp, U256::from(env.timestamp));
    assert_eq!(env1.coinbase, coinbase);
    let env2 = IProbe::envCall::abi_decode_returns(&ret(1, 1)).unwrap();
    assert_eq!(env2.number, U256::from(env.number + 1));
    assert!(env2.timestamp > env1.timestamp);
    let transfer = &blocks[0]["calls"][1];
    assert_eq!(transfer["status"], "0x1", "{transfer}");
    assert_eq!(transfer["logs"].as_array().unwrap().len(), 1, "the Transfer event: {transfer}");
    assert_eq!(transfer["logs"][0]["blockNumber"], blocks[0]["number"]);
    assert_eq!(U256::from_be_slice(&ret(1, 0)), U256::from(777), "block 2 sees block 1's transfer");
    let failed = &blocks[0]["calls"][2];
    assert_eq!(failed["status"], "0x0", "{failed}");
    assert_eq!(failed["error"]["code"], 3, "{failed}");
    assert!(
        failed["error"]["message"].as_str().unwrap().contains("Probe: deliberate failure"),
        "{failed}"
    );
    assert!(failed["returnData"].as_str().unwrap().len() > 10, "revert data returned: {failed}");
    // The simulation changed nothing: the pending balance of `fresh` is still zero.
    let r = raw_rpc(&node.rpc, "eth_call", json!([{"to": token, "data": Bytes::from(IToken::balanceOfCall(fresh).abi_encode())}, "pending"])).await;
    assert_eq!(
        U256::from_be_slice(&r["result"].as_str().unwrap().parse::<Bytes>().unwrap()),
        U256::ZERO
    );
    // Unsupported and invalid parts get clear errors.
    let r = raw_rpc(
        &node.rpc,
        "eth_simulateV1",
        json!([{"blockStateCalls": [{"calls": []}], "traceTransfers": true}, "pending"]),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("traceTransfers"), "{r}");
    let r = raw_rpc(&node.rpc, "eth_simulateV1", json!([{"blockStateCalls": [
        {"blockOverrides": {"number": format!("0x{:x}", env.number + 5)}}, {"blockOverrides": {"number": format!("0x{:x}", env.number + 2)}}]}, "pending"])).await;
    assert_eq!(r["error"]["code"], -38020, "{r}");
    let r =
        raw_rpc(&node.rpc, "eth_simulateV1", json!([{"blockStateCalls": "nope"}, "pending"])).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = raw_rpc(&node.rpc, "eth_simulateV1", json!([{"blockStateCalls": [{"calls": [{"to": probe, "gas": "0xffffffffffff"}]}]}, "pending"])).await;
    assert_eq!(r["error"]["code"], -38015, "gas above the block's: {r}");

    let pending_env = pre_calls[2]["result"].as_str().unwrap().parse::<Bytes>().unwrap();
    let pending_env = IProbe::envCall::abi_decode_returns(&pending_env).unwrap();
    assert_eq!(pending_env.number, U256::from(env.number), "pending calls run as N+1");

    // Mine the same txs into anvil in the same environment.
    raw_rpc(&anvil.url, "evm_setNextBlockTimestamp", json!([env.timestamp])).await;
    raw_rpc(
        &anvil.url,
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("0x{:x}", env.base_fee)]),
    )
    .await;
    raw_rpc(&anvil.url, "anvil_setCoinbase", json!([coinbase])).await;
    mine(&anvil.url, &txs).await;
    let mined_block = raw_rpc(&anvil.url, "eth_getBlockByNumber", json!(["latest", false])).await
        ["result"]
        .clone();
    assert_eq!(quantity(&mined_block["number"]), env.number);
    assert_eq!(
        mined_block["transactions"].as_array().unwrap().len(),
        txs.len(),
        "anvil mined all txs in one block"
    );

    for (i, h) in hashes.iter().enumerate() {
        let mined =
            raw_rpc(&anvil.url, "eth_getTransactionReceipt", json!([h])).await["result"].clone();
        let pre = &pre_receipts[i];
        for field in ["status", "gasUsed", "cumulativeGasUsed", "transactionIndex", "blockNumber"] {
            assert_eq!(
                pre[field], mined[field],
                "tx {i} {field}: preconfirmed {pre} vs mined {mined}"
            );
        }
        let strip = |logs: &Value| -> Vec<(Value, Value, Value, Value)> {
            logs.as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["address"].clone(),
                        l["topics"].clone(),
                        l["data"].clone(),
                        l["logIndex"].clone(),
                    )
                })
                .collect()
        };
        assert_eq!(strip(&pre["logs"]), strip(&mined["logs"]), "tx {i} logs");
    }
    assert_eq!(quantity(&pre_receipts[3]["status"]), 0, "the reverting tx failed in both");
    assert_eq!(quantity(&pre_receipts[4]["status"]), 0, "the out-of-gas tx failed in both");

    for (i, (name, c)) in calls.iter().enumerate() {
        let latest = raw_rpc(&anvil.url, "eth_call", json!([c, "latest"])).await;
        match (pre_calls[i].get("result"), latest.get("result")) {
            (Some(a), Some(b)) => {
                assert_eq!(a, b, "{name}: pending answer equals anvil's latest after mining")
            }
            (None, None) => {
                let (a, b) = (&pre_calls[i]["error"], &latest["error"]);
                if *name == "out_of_gas" {
                    // anvil answers -32603 "EVM error OutOfGas"; flashnode answers as geth does
                    // (-32000 "out of gas"): both must say the call ran out of gas.
                    for e in [a, b] {
                        assert!(
                            e["message"].as_str().unwrap().to_lowercase().contains("outofgas")
                                || e["message"]
                                    .as_str()
                                    .unwrap()
                                    .to_lowercase()
                                    .contains("out of gas"),
                            "{name}: {e}"
                        );
                    }
                    continue;
                }
                assert_eq!(a["code"], b["code"], "{name}: same error code ({a} vs {b})");
                if *name == "fail" {
                    assert_eq!(a["data"], b["data"], "revert data");
                    assert!(
                        a["message"].as_str().unwrap().contains("Probe: deliberate failure"),
                        "{a}"
                    );
                }
            }
            other => panic!("{name}: pending and latest disagree: {other:?}"),
        }
    }
    for (i, e) in estimates.iter().enumerate() {
        let latest = raw_rpc(&anvil.url, "eth_estimateGas", json!([e, "latest"])).await;
        let (ours, theirs) = (quantity(&pre_estimates[i]["result"]), quantity(&latest["result"]));
        assert_eq!(ours, theirs, "estimate {i}: ours {ours} vs anvil {theirs}");
    }
    let sorted = |list: &Value| -> Vec<(String, Vec<String>)> {
        let mut items: Vec<(String, Vec<String>)> = list
            .as_array()
            .unwrap_or_else(|| panic!("an access list, got {list}"))
            .iter()
            .map(|item| {
                let mut keys: Vec<String> = item["storageKeys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap().to_lowercase())
                    .collect();
                keys.sort();
                (item["address"].as_str().unwrap().to_lowercase(), keys)
            })
            .collect();
        items.sort();
        items
    };
    for (i, c) in access_list_calls.iter().enumerate() {
        let latest = raw_rpc(&anvil.url, "eth_createAccessList", json!([c, "latest"])).await;
        let (ours, theirs) = (&pre_lists[i]["result"], &latest["result"]);
        assert!(ours.is_object(), "access list {i}: {}", pre_lists[i]);
        let list = sorted(&ours["accessList"]);
        assert_eq!(
            list,
            sorted(&theirs["accessList"]),
            "access list {i}: pending before mining equals anvil's latest after"
        );
        assert_eq!(
            ours["gasUsed"], theirs["gasUsed"],
            "access list {i} gasUsed: ours {ours} vs anvil {theirs}"
        );
        assert!(ours.get("error").is_none(), "{ours}");
        let target = if i == 0 { token } else { probe };
        let entry = list
            .iter()
            .find(|(a, _)| *a == format!("{target:?}").to_lowercase())
            .expect("the called contract is listed with its slots");
        assert_eq!(
            entry.1.len(),
            if i == 0 { 2 } else { 1 },
            "transfer touches two balances, counter() one slot"
        );
    }
    // Other tags are the upstream's answer.
    let via_node =
        raw_rpc(&node.rpc, "eth_createAccessList", json!([access_list_calls[0], "latest"])).await;
    let direct =
        raw_rpc(&anvil.url, "eth_createAccessList", json!([access_list_calls[0], "latest"])).await;
    assert_eq!(sorted(&via_node["result"]["accessList"]), sorted(&direct["result"]["accessList"]));
    assert_eq!(via_node["result"]["gasUsed"], direct["result"]["gasUsed"]);
}

/// A cold pending `eth_call` of `balanceOf` reads the caller and the token in one JSON-RPC
/// batch and the balance slot in one more request: at most two HTTP round trips to the
/// upstream, where one request per read cost seven. A second, warm call costs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_pending_call_costs_two_round_trips() {
    let anvil = Anvil::start(CHAIN_ID).await;
    let key0 = DEV_KEYS[0];
    let deploy = sign_1559(
        key0,
        CHAIN_ID,
        0,
        TxKind::Create,
        U256::ZERO,
        creation(TOKEN_BIN, &U256::from(10u64).pow(U256::from(24u64)).abi_encode()),
        2_000_000,
        FEE,
    );
    mine(&anvil.url, &[deploy]).await;
    let r = raw_rpc(&anvil.url, "eth_getBlockReceipts", json!(["latest"])).await;
    let token: Address = r["result"][0]["contractAddress"].as_str().unwrap().parse().unwrap();

    let proxy = flashnode_tests::counting::CountingProxy::start(&anvil.url).await;
    let source_ws = FlashblockSource::start().await;
    let node = start_node(
        &source_ws.url,
        &proxy.url,
        &["--pending-stale-after", "60s", "--upstream-poll-interval", "50ms"],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["streamConnected"] == true
        })
        .await
    );
    let parent = raw_rpc(&anvil.url, "eth_getBlockByNumber", json!(["latest", false])).await
        ["result"]
        .clone();
    let env = next_env(&parent, Address::repeat_byte(0xcb));
    // One plain transfer: the pending block then holds the coinbase, fee vaults and L1 block
    // info, as every real pending block does.
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
    for f in build_frames(&anvil.url, CHAIN_ID, &env, vec![vec![transfer.clone()]]).await {
        source_ws.send(f);
    }
    let hash = alloy_primitives::keccak256(&transfer);
    assert!(
        eventually(Duration::from_secs(5), || async {
            !raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await["result"]
                .is_null()
        })
        .await
    );

    let call = json!({"to": token, "data": Bytes::from(IToken::balanceOfCall(address_of(key0)).abi_encode())});
    let before = proxy.state();
    let cold = raw_rpc(&node.rpc, "eth_call", json!([call, "pending"])).await;
    let after = proxy.state();
    let expected = raw_rpc(&anvil.url, "eth_call", json!([call, "latest"])).await;
    assert_eq!(cold["result"], expected["result"], "{cold}");
    let (http, calls) = (after.0 - before.0, after.1 - before.1);
    eprintln!("cold pending balanceOf: {http} upstream HTTP requests carrying {calls} state reads");
    assert!((1..=2).contains(&http), "a cold pending balanceOf costs at most 2 upstream round trips, took {http} ({calls} reads)");
    assert!(calls > http, "reads were batched: {calls} reads in {http} requests");
    let warm = raw_rpc(&node.rpc, "eth_call", json!([call, "pending"])).await;
    assert_eq!(warm["result"], cold["result"]);
    assert_eq!(proxy.state(), after, "a warm call reads nothing upstream");
}
