//! #15.4: real clients with their defaults against `flashnode dev`. In one block, before it
//! seals: deploy a contract (preconfirmed), then read and write it the way each client does by
//! default. The write must not revert: its gas estimate (viem's carries no block tag) has to
//! see the preconfirmed contract. cast (Foundry 1.7.1), an alloy wallet provider and viem 2.57
//! (tests/js/clients.cjs, installed by scripts/install-test-tools.sh into ./tools).

use alloy_network::{EthereumWallet, TransactionBuilder};
use alloy_primitives::{Address, Bytes, U256};
use alloy_provider::{Provider, ProviderBuilder};
use alloy_rpc_types_eth::TransactionRequest;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use flashnode_tests::*;
use serde_json::{json, Value};
use std::{path::PathBuf, process::Command, time::Duration};

/// Long blocks, so a whole client flow fits before the seal.
const BLOCK_TIME: &str = "8s";
/// cast and the alloy flow never wait for a seal, so their blocks can be longer still: a dozen
/// cast processes on a loaded 2-core CI machine took more than 8 s.
const LONG_BLOCK_TIME: &str = "40s";
const CHAIN_ID: u64 = 901;

fn quantity(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| {
        u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
    })
}

async fn dev(block_time: &str) -> Running {
    start("dev", &["--block-time", block_time, "--flashblock-interval", "200ms"]).await
}

async fn latest(rpc: &str) -> u64 {
    quantity(&raw_rpc(rpc, "eth_blockNumber", json!([])).await["result"])
}

/// Waits until the first flashblocks of a new block are applied, so a whole block time is left
/// before the seal; returns that block's number.
async fn at_block_start(rpc: &str) -> u64 {
    let started = eventually(Duration::from_secs(30), || async {
        let s = status(rpc).await;
        s["flashblockIndex"].as_u64().is_some_and(|i| i <= 1)
            && s["pendingBlock"]
                .as_u64()
                .is_some_and(|p| Some(p) == s["canonicalTip"].as_u64().map(|t| t + 1))
    })
    .await;
    let s = status(rpc).await;
    assert!(started, "no block start seen: {s}");
    quantity(&s["pendingBlock"])
}

/// Runs cast, returning (success, stdout, stderr).
fn cast_run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cast_bin()).args(args).output().expect("cast runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// cast's defaults: `cast send` (waits for the receipt), `cast call`, `cast estimate`,
/// `cast access-list`, and `cast send --async` + `cast receipt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_defaults_see_preconfirmed_state() {
    let node = dev(LONG_BLOCK_TIME).await;
    let rpc = node.rpc.as_str();
    let key = DEV_KEYS[3];
    let block = at_block_start(rpc).await;
    let deploy = deploy_probe_receipt(rpc, key);
    assert_eq!(quantity(&deploy["status"]), 1, "{deploy}");
    let deployed_in = quantity(&deploy["blockNumber"]);
    assert!(deployed_in >= block, "{deploy}");
    assert!(latest(rpc).await < deployed_in, "cast send's receipt is the preconfirmed one");
    let probe = deploy["contractAddress"].as_str().unwrap().to_string();

    // `cast call` asks for `latest` explicitly (it checks the code there first): the contract
    // is not canonical yet. `--block pending` reads it.
    let (ok, _, err) = cast_run(&["call", "--rpc-url", rpc, &probe, "counter()(uint256)"]);
    assert!(!ok && err.contains("does not have any code"), "cast call reads latest: {err}");
    let (ok, counter, err) =
        cast_run(&["call", "--block", "pending", "--rpc-url", rpc, &probe, "counter()(uint256)"]);
    assert!(ok && counter == "0", "cast call --block pending sees the contract: {counter} {err}");
    // `cast estimate` sends `latest` too; `--block pending` sees the contract.
    let from = address_of(key).to_string();
    let estimate = |block: Option<&str>| -> u64 {
        let mut args = vec!["estimate", "--rpc-url", rpc, "--from", &from];
        if let Some(b) = block {
            args.extend(["--block", b]);
        }
        args.extend([probe.as_str(), "ping(uint256)", "7"]);
        cast(&args).parse().unwrap()
    };
    let (default_gas, latest_gas, pending_gas) =
        (estimate(None), estimate(Some("latest")), estimate(Some("pending")));
    assert_eq!(default_gas, latest_gas, "cast estimate asks for latest");
    assert!(pending_gas > latest_gas + 10_000, "pending {pending_gas}, latest {latest_gas}");
    let (ok, list, err) = cast_run(&[
        "access-list",
        "--json",
        "--block",
        "pending",
        "--rpc-url",
        rpc,
        "--from",
        &from,
        &probe,
        "ping(uint256)",
        "7",
    ]);
    assert!(ok, "{err}");
    assert!(
        list.to_lowercase().contains(&probe.to_lowercase()),
        "the list touches the contract: {list}"
    );

    // `cast send` takes its nonce and gas from `latest` (it has no --block): in the block that
    // deployed the contract, give it both from `pending`. It then waits for the receipt by
    // polling eth_getTransactionReceipt: the preconfirmed one.
    let nonce = cast(&["nonce", "--block", "pending", "--rpc-url", rpc, &from]);
    let gas = pending_gas.to_string();
    let sent: Value = serde_json::from_str(&cast(&[
        "send",
        "--json",
        "--rpc-url",
        rpc,
        "--private-key",
        key,
        "--nonce",
        &nonce,
        "--gas-limit",
        &gas,
        &probe,
        "ping(uint256)",
        "7",
    ]))
    .unwrap();
    assert_eq!(quantity(&sent["status"]), 1, "the write did not revert: {sent}");
    assert_eq!(quantity(&sent["blockNumber"]), deployed_in, "{sent}");
    assert!(quantity(&sent["gasUsed"]) > 40_000, "it ran the contract: {sent}");
    assert!(latest(rpc).await < deployed_in, "still before the seal");

    // `cast send --async` then `cast receipt`: the preconfirmed receipt.
    let nonce = cast(&["nonce", "--block", "pending", "--rpc-url", rpc, &from]);
    let hash = cast(&[
        "send",
        "--async",
        "--rpc-url",
        rpc,
        "--private-key",
        key,
        "--nonce",
        &nonce,
        "--gas-limit",
        &gas,
        &probe,
        "ping(uint256)",
        "8",
    ]);
    let receipt: Value =
        serde_json::from_str(&cast(&["receipt", "--json", "--rpc-url", rpc, hash.trim()])).unwrap();
    assert_eq!(quantity(&receipt["status"]), 1, "{receipt}");
    assert!(
        latest(rpc).await < quantity(&receipt["blockNumber"]),
        "cast receipt is preconfirmed: {receipt}"
    );
    let (_, counter, _) =
        cast_run(&["call", "--block", "pending", "--rpc-url", rpc, &probe, "counter()(uint256)"]);
    assert_eq!(counter, "2");
}

/// An alloy wallet provider (`ProviderBuilder::new().wallet(..)`, its recommended fillers):
/// deploy, call, send; `get_receipt()` polls and returns the preconfirmed receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alloy_wallet_provider_defaults_see_preconfirmed_state() {
    let node = dev(LONG_BLOCK_TIME).await;
    let rpc = node.rpc.as_str();
    let signer: PrivateKeySigner = DEV_KEYS[4].parse().unwrap();
    let from = signer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc.parse().unwrap());
    let block = at_block_start(rpc).await;
    let code = Bytes::from(alloy_primitives::hex::decode(PROBE_BIN.trim()).unwrap());
    let deploy = TransactionRequest::default().with_from(from).with_deploy_code(code);
    let receipt = provider.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "{receipt:?}");
    let deployed_in = receipt.block_number.unwrap();
    assert!(deployed_in >= block);
    assert!(latest(rpc).await < deployed_in, "get_receipt returned the preconfirmed receipt");
    let probe: Address = receipt.contract_address.unwrap();

    let counter = || {
        TransactionRequest::default().with_to(probe).with_input(IProbe::counterCall {}.abi_encode())
    };
    let out = provider.call(counter()).await.unwrap();
    assert_eq!(U256::from_be_slice(&out), U256::ZERO, "the call sees the preconfirmed contract");
    let ping = TransactionRequest::default()
        .with_from(from)
        .with_to(probe)
        .with_input(IProbe::pingCall { value: U256::from(7) }.abi_encode());
    // `create_access_list` sends `latest` unless told otherwise.
    let list = provider.create_access_list(&ping).pending().await.unwrap();
    assert!(list.access_list.0.iter().any(|i| i.address == probe), "{list:?}");
    let sent = provider.send_transaction(ping).await.unwrap().get_receipt().await.unwrap();
    assert!(sent.status(), "the write did not revert: {sent:?}");
    assert_eq!(sent.block_number, Some(deployed_in));
    assert!(sent.gas_used > 40_000, "{sent:?}");
    assert!(latest(rpc).await < deployed_in, "still before the seal");
    let out = provider.call(counter()).await.unwrap();
    assert_eq!(U256::from_be_slice(&out), U256::from(1));
}

/// Where scripts/install-test-tools.sh put viem: `$FLASHNODE_NODE_MODULES`, else
/// `tools/node_modules` of the workspace.
fn node_modules() -> PathBuf {
    let dir = std::env::var("FLASHNODE_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules")
    });
    assert!(
        dir.join("viem/package.json").exists(),
        "viem is not in {} (run scripts/install-test-tools.sh)",
        dir.display()
    );
    dir
}

/// Runs tests/js/clients.cjs (viem) against `rpc` for a chain defined as `kind` ("preconf":
/// with `experimental_preconfirmationTime`, like viem's `basePreconf`; "plain": without).
fn viem(rpc: &str, key: &str, kind: &str) -> Value {
    let code = format!("0x{}", PROBE_BIN.trim().trim_start_matches("0x"));
    client_script(
        &node_bin(),
        "js/clients.cjs",
        &[rpc, &CHAIN_ID.to_string(), key, &code, kind],
        &[("NODE_PATH", node_modules())],
    )
}

/// node (it comes with npm, which installs the test tools): `$FLASHNODE_NODE` or `node`.
fn node_bin() -> String {
    std::env::var("FLASHNODE_NODE").unwrap_or_else(|_| "node".into())
}

/// viem 2.57's defaults: deployContract, readContract, writeContract + polling
/// getTransactionReceipt, writeContractSync (eth_sendRawTransactionSync) and
/// waitForTransactionReceipt; on a chain with `experimental_preconfirmationTime` and on one
/// without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viem_defaults_see_preconfirmed_state() {
    let node = dev(BLOCK_TIME).await;
    let rpc = node.rpc.as_str();
    for (kind, key) in [("preconf", DEV_KEYS[5]), ("plain", DEV_KEYS[6])] {
        at_block_start(rpc).await;
        let v = viem(rpc, key, kind);
        let deployed_in = quantity(&v["deploy"]["blockNumber"]);
        assert_eq!(v["deploy"]["status"], "success", "{v}");
        assert!(quantity(&v["deploy"]["latestAfter"]) < deployed_in, "preconfirmed deploy: {v}");
        // writeContract's tagless estimate saw the preconfirmed contract: no revert, and the
        // receipt polled with getTransactionReceipt is the preconfirmed one.
        assert_eq!(v["write"]["status"], "success", "{kind}: the write did not revert: {v}");
        assert_eq!(quantity(&v["write"]["blockNumber"]), deployed_in, "{v}");
        assert!(quantity(&v["write"]["gasUsed"]) > 40_000, "{v}");
        assert!(quantity(&v["write"]["latestAfter"]) < deployed_in, "preconfirmed: {v}");
        // writeContractSync answers with the preconfirmed receipt.
        assert_eq!(v["writeSync"]["status"], "success", "{v}");
        assert!(
            quantity(&v["writeSync"]["latestAfter"]) < quantity(&v["writeSync"]["blockNumber"]),
            "writeContractSync's receipt is preconfirmed: {v}"
        );
        // waitForTransactionReceipt resolves (at the seal, unless the receipt was already
        // there when it was called).
        assert_eq!(v["waitForReceipt"]["status"], "success", "{v}");
        if kind == "preconf" {
            // Reads default to pending on such a chain.
            assert_eq!(v["readBefore"]["value"], 0, "{v}");
            assert_eq!(v["readAfter"]["value"], 3, "{v}");
        } else {
            // A plain chain's reads send `latest`, where the contract does not exist yet.
            assert!(v["readBefore"]["error"].is_string(), "{v}");
        }
    }
}

/// Runs a client script (`program script args…`) and parses the one JSON object it prints.
fn client_script(program: &str, script: &str, args: &[&str], envs: &[(&str, PathBuf)]) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(program);
    cmd.arg(dir.join(script)).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A receipt the script saw before its block sealed: a non-null hash, the block the test
/// started in, and the canonical tip still before it.
fn assert_preconfirmed(what: &str, v: &Value, block: u64) {
    let hash = v["blockHash"].as_str().unwrap_or_else(|| panic!("{what}: blockHash: {v}"));
    assert_eq!(hash.len(), 66, "{what}: {v}");
    assert_eq!(v["blockNumber"].as_u64(), Some(block), "{what}: in the block started: {v}");
    assert!(v["latestAfter"].as_u64().unwrap() < block, "{what}: preconfirmed: {v}");
    assert_eq!(v["status"].as_u64(), Some(1), "{what}: {v}");
}

/// ethers 6.17's defaults (#28): ethers refuses `blockHash: null`, so every preconfirmed
/// object must carry the provisional hash. Deploy + call in one block, `wait()` on a
/// preconfirmed transaction, `receipt.getBlock()` (eth_getBlockByHash of the provisional hash),
/// `getTransaction`, the pending block, pending logs decoded with the ABI, and an event filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethers_defaults_accept_preconfirmations() {
    let node = dev(BLOCK_TIME).await;
    let rpc = node.rpc.as_str();
    let block = at_block_start(rpc).await;
    let code = format!("0x{}", PROBE_BIN.trim().trim_start_matches("0x"));
    let node_path = node_modules();
    assert!(node_path.join("ethers/package.json").exists(), "run scripts/install-test-tools.sh");
    let v = client_script(
        &node_bin(),
        "js/ethers.cjs",
        &[rpc, &CHAIN_ID.to_string(), DEV_KEYS[7], &code],
        &[("NODE_PATH", node_path)],
    );
    assert_preconfirmed("deploy", &v["deploy"], block);
    assert_preconfirmed("wait() after the preconfirmation", &v["waitAfterPreconf"], block);
    assert!(v["waitAfterPreconf"]["gasUsed"].as_u64().unwrap() > 40_000, "{v}");
    // The block a preconfirmed receipt names resolves to the pending block.
    assert_eq!(v["receiptBlock"]["number"].as_u64(), Some(block), "{v}");
    assert!(v["receiptBlock"]["txs"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["transaction"]["blockNumber"].as_u64(), Some(block), "{v}");
    assert!(v["transaction"]["blockHash"].is_string(), "{v}");
    assert_eq!(v["pendingBlock"]["number"].as_u64(), Some(block), "{v}");
    let logs = v["pendingLogs"].as_array().expect("pending logs");
    assert!(logs.iter().any(|l| l["seq"] == 1), "the ping's event, decoded: {v}");
    assert!(logs.iter().all(|l| l["blockHash"].is_string()), "{v}");
    assert_eq!(v["counterPending"], 1, "a call at pending sees the write: {v}");
    // send + wait() resolves, whether at the preconfirmation or at the seal.
    assert_eq!(v["sendWait"]["status"], 1, "{v}");
    let event = &v["event"];
    assert!(event["value"] == 7 || event["value"] == 11, "the event filter fired: {v}");
}

/// Where scripts/install-test-tools.sh put web3.py's python: `$FLASHNODE_PYTHON`, else
/// `tools/py/bin/python` of the workspace.
fn web3_python() -> PathBuf {
    let py = std::env::var("FLASHNODE_PYTHON").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/py/bin/python")
    });
    assert!(
        py.exists(),
        "no web3.py python at {} (run scripts/install-test-tools.sh)",
        py.display()
    );
    py
}

/// web3.py 8's defaults (#28): `wait_for_transaction_receipt` resolves at the
/// preconfirmation, a contract deployed and called in one block, the preconfirmed transaction,
/// the pending block and the block a receipt names, pending logs, and an event filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web3py_defaults_accept_preconfirmations() {
    let node = dev(BLOCK_TIME).await;
    let rpc = node.rpc.as_str();
    let block = at_block_start(rpc).await;
    let code = format!("0x{}", PROBE_BIN.trim().trim_start_matches("0x"));
    let py = web3_python();
    let v =
        client_script(py.to_str().unwrap(), "py/web3_flows.py", &[rpc, DEV_KEYS[8], &code], &[]);
    assert_preconfirmed("deploy", &v["deploy"], block);
    assert_preconfirmed("ping", &v["ping"], block);
    assert_eq!(v["pingEvent"], 7, "{v}");
    assert_eq!(v["transaction"]["blockNumber"].as_u64(), Some(block), "{v}");
    assert_eq!(v["pendingBlock"]["number"].as_u64(), Some(block), "{v}");
    assert_eq!(v["receiptBlock"]["number"].as_u64(), Some(block), "{v}");
    let logs = v["pendingLogs"].as_array().expect("pending logs");
    assert!(!logs.is_empty() && logs.iter().all(|l| l["blockNumber"] == block), "{v}");
    assert_eq!(v["counterPending"], 1, "{v}");
    let events = v["filterEvents"].as_array().expect("filter events");
    assert!(events.iter().any(|e| e["value"] == 7 && e["blockNumber"] == block), "{v}");
}
