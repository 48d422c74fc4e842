//! Both stream shapes through the real binary (issue #15.1): the legacy flashblock JSON, whose
//! diff carries the builder's state root, block hash and withdrawals root, and the Subblocks
//! shape (`flashnode devnet --subblocks`: those three zero, withdrawals empty), plus Lagoon's
//! `diff.post_exec_tx` (`--post-exec-tx`).
//!
//! On both shapes: preconfirmed receipts, transactions and logs carry the pending block's
//! provisional `blockHash` (#28: never null, never 0x00…00, never the stream's), which is the
//! pending block's `hash`, its served header's own hash, and resolves while the block is
//! pending; subscriptions follow the same rule, the fan-out passes frames through, a tail reorg is
//! reconciled, and index 0 of N+1 builds on N's flashblock state before N is canonical. A
//! block with a post-exec tx is answered as `latest`, counted, and passed through unchanged.

use alloy_eips::BlockNumberOrTag;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_provider::Provider;
use alloy_sol_types::SolEvent;
use flashnode_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Which JSON the devnet streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Legacy,
    Subblocks,
}

impl Shape {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Shape::Legacy => &[],
            Shape::Subblocks => &["--subblocks"],
        }
    }
}

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

fn is_zero_hash(v: &Value) -> bool {
    v.as_str().and_then(|s| s.parse::<B256>().ok()).is_some_and(|h| h.is_zero())
}

/// `flashnode devnet` streaming `shape` (plus `devnet_extra`), and a `flashnode node` on it
/// with `node_extra`, serving preconfirmations.
async fn chain(shape: Shape, devnet_extra: &[&str], node_extra: &[&str]) -> (Running, Running) {
    let mut args = vec!["--block-time", "1s", "--flashblock-interval", "100ms"];
    args.extend_from_slice(shape.flags());
    args.extend_from_slice(devnet_extra);
    let devnet = start("devnet", &args).await;
    let node = start_node(&devnet.ws, &devnet.rpc, node_extra).await;
    (devnet, node)
}

async fn wait_serving(node: &Running) {
    let ok = eventually(Duration::from_secs(10), || async {
        status(&node.rpc).await["mode"] == "flashblocks"
    })
    .await;
    assert!(ok, "the node serves flashblocks: {}\n{}", status(&node.rpc).await, node.proc.output());
}

/// Checks the shape of what the devnet streams.
fn assert_frame_shape(shape: Shape, fb: &Received) {
    let diff = &fb.json["diff"];
    let zeroed = ["state_root", "block_hash", "withdrawals_root"].map(|k| is_zero_hash(&diff[k]));
    match shape {
        Shape::Subblocks => {
            assert_eq!(zeroed, [true; 3], "subblocks zero the commitments: {diff}");
            assert_eq!(diff["withdrawals"], json!([]));
        }
        Shape::Legacy => assert!(!zeroed[0] && !zeroed[1], "legacy carries them: {diff}"),
    }
}

/// The rule for a preconfirmed receipt: block number known, a provisional block hash (not
/// null, not zero), the same in its logs, and the execution-apis shape.
fn assert_preconfirmed_receipt(r: &Value) {
    assert!(
        r["blockHash"].is_string() && !is_zero_hash(&r["blockHash"]),
        "a preconfirmed receipt has a provisional blockHash: {r}"
    );
    assert!(r["blockNumber"].is_string(), "{r}");
    assert!(r["transactionIndex"].is_string(), "{r}");
    for log in r["logs"].as_array().into_iter().flatten() {
        assert_eq!(log["blockHash"], r["blockHash"], "a log carries its receipt's blockHash");
        assert_eq!(log["blockNumber"], r["blockNumber"]);
    }
    schema::check_receipt(r).unwrap();
}

/// Reads the node's fan-out until `count` frames of block `from_block` on that pass `wanted`,
/// asserting that each such frame is the source's frame byte for byte (within 300 frames).
async fn assert_passed_through(
    node: &Running,
    source: &mut tokio::sync::mpsc::Receiver<Received>,
    fanout: &mut tokio::sync::mpsc::Receiver<Received>,
    from_block: u64,
    count: usize,
    wanted: impl Fn(&Received) -> bool,
) {
    let mut from_source = std::collections::HashMap::new();
    let mut compared = 0;
    for seen in 0.. {
        if compared == count {
            return;
        }
        assert!(
            seen < 300,
            "{count} frames compared on the fan-out within 300 frames ({compared}):\n{}",
            node.proc.output()
        );
        while let Ok(fb) = source.try_recv() {
            from_source.insert((fb.payload.metadata.block_number, fb.payload.index), fb.json);
        }
        let fb = next_flashblock(fanout, Duration::from_secs(5)).await;
        let key = (fb.payload.metadata.block_number, fb.payload.index);
        if key.0 < from_block {
            continue;
        }
        // The node may forward a frame before this test's own copy from the source arrives;
        // a copy the test drained earlier never arrives (the source is in order: once it is
        // past the key, there is nothing to compare this frame with).
        let src = loop {
            if let Some(src) = from_source.get(&key) {
                break Some(src.clone());
            }
            let s = next_flashblock(source, Duration::from_secs(5)).await;
            let at = (s.payload.metadata.block_number, s.payload.index);
            from_source.insert(at, s.json);
            if at > key {
                break None;
            }
        };
        let Some(src) = src else { continue };
        assert_eq!(fb.json, src, "frame {key:?} passed through unchanged");
        if wanted(&fb) {
            compared += 1;
        }
    }
}

/// Preconfirmation, the pending block, subscriptions and the fan-out on one shape: every
/// client shape follows the block-hash rule, cast and alloy read them unmodified, the fan-out
/// passes the stream's frames through unchanged, and after the seal the receipt carries the
/// sealed block's hash, which resolves.
async fn preconfirmations_follow_the_block_hash_rule(shape: Shape) {
    let (devnet, node) = chain(shape, &[], &[]).await;
    wait_serving(&node).await;
    // cast waits for a receipt: it takes the preconfirmed one as is.
    let probe = deploy_probe(&node.rpc, DEV_KEYS[1]);

    let mut source = collect_flashblocks(&devnet.ws).await;
    let mut fanout = collect_flashblocks(&node.ws).await;
    let mut ws = WsRpc::connect(&node.rpc).await;
    let delta_sub = ws.subscribe(json!(["newFlashblocks"])).await;
    let full_sub = ws.subscribe(json!(["newFlashblocks", {"full": true}])).await;
    let txs_sub = ws.subscribe(json!(["newFlashblockTransactions", true])).await;
    let logs_sub = ws
        .subscribe(
            json!(["pendingLogs", {"address": probe, "topics": [IProbe::Ping::SIGNATURE_HASH]}]),
        )
        .await;
    // Early in a block, so the tx is preconfirmed well before its block seals.
    loop {
        let fb = next_flashblock(&mut source, Duration::from_secs(5)).await;
        assert_frame_shape(shape, &fb);
        if (1..=3).contains(&fb.payload.index) {
            while source.try_recv().is_ok() {}
            break;
        }
    }
    let hash = ping_async(&node.rpc, DEV_KEYS[2], probe, "5");

    // The preconfirmed receipt, transaction and pending block, before the seal.
    let mut pre = None;
    for _ in 0..100 {
        let r =
            raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
        if !r.is_null() {
            pre = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pre = pre.expect("a preconfirmed receipt");
    let number = quantity(&pre["blockNumber"]);
    let tip = status(&node.rpc).await["canonicalTip"].as_u64().unwrap();
    assert!(tip < number, "served before block {number} is canonical (tip {tip})");
    assert_preconfirmed_receipt(&pre);
    assert_eq!(pre["logs"].as_array().map(Vec::len), Some(1), "{pre}");
    let tx = raw_rpc(&node.rpc, "eth_getTransactionByHash", json!([hash])).await["result"].clone();
    assert!(tx["blockHash"].is_string(), "{tx}");
    assert_eq!(tx["blockNumber"], pre["blockNumber"]);
    schema::check_transaction(&tx).unwrap();
    // alloy's provider reads both unmodified.
    let provider = node.provider();
    let receipt = provider.get_transaction_receipt(hash).await.expect("alloy reads the receipt");
    let receipt = receipt.expect("preconfirmed");
    assert!(receipt.block_hash.is_some_and(|h| !h.is_zero()));
    assert_eq!(receipt.block_number, Some(number));

    // The pending block: its hash is its header's own (alloy needs one), not zero, and the
    // transactions in it carry that hash.
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Pending)
        .await
        .expect("alloy reads the pending block")
        .expect("a pending block");
    let pending_hash = block.header.hash;
    if block.header.number == number {
        assert_eq!(pending_hash, block.header.inner.hash_slow(), "hash of the header as served");
    }
    assert!(!pending_hash.is_zero());
    let full = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", true])).await["result"]
        .clone();
    assert!(full["hash"].is_string() && !is_zero_hash(&full["hash"]), "{full}");
    assert!(is_zero_hash(&full["stateRoot"]), "the state root is not computed: {full}");
    for t in full["transactions"].as_array().expect("full txs") {
        assert_eq!(t["blockHash"], full["hash"], "{t}");
    }
    schema::check_block(&full).unwrap();
    // cast reads the pending block too.
    let cast_block: Value =
        serde_json::from_str(&cast(&["block", "pending", "--json", "--rpc-url", &node.rpc]))
            .unwrap();
    assert!(cast_block["hash"].is_string(), "{cast_block}");
    // The provisional hash resolves to the pending block while it is pending (or to nothing
    // once it sealed: never to another block).
    let by_hash = raw_rpc(&node.rpc, "eth_getBlockByHash", json!([pending_hash, false])).await;
    let by_hash = &by_hash["result"];
    assert!(by_hash.is_null() || quantity(&by_hash["number"]) == number, "{by_hash}");
    // Receipts of the pending block, and pending logs by eth_getLogs.
    let receipts =
        raw_rpc(&node.rpc, "eth_getBlockReceipts", json!(["pending"])).await["result"].clone();
    for r in receipts.as_array().expect("pending receipts") {
        assert_preconfirmed_receipt(r);
    }
    let logs = raw_rpc(
        &node.rpc,
        "eth_getLogs",
        json!([{"fromBlock": "pending", "toBlock": "pending", "address": probe}]),
    )
    .await["result"]
        .clone();
    let logs = logs.as_array().expect("pending logs");
    assert!(!logs.is_empty() && logs.iter().all(|l| l["blockHash"].is_string()), "{logs:?}");
    for log in logs {
        schema::check_log(log).unwrap();
    }

    // Subscriptions, by the same rule.
    let (mut got_delta, mut got_full, mut got_tx, mut got_log) = (false, false, false, false);
    // Notifications keep coming whether or not ours is among them: bound the wait as a whole.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(got_delta && got_full && got_tx && got_log) {
        assert!(
            std::time::Instant::now() < deadline,
            "every subscription notified tx {hash} within 20 s (delta {got_delta}, full {got_full}, tx {got_tx}, log {got_log}): {}",
            status(&node.rpc).await
        );
        let (sub, msg) = ws.notification(Duration::from_secs(5)).await.expect("notifications");
        if sub == delta_sub {
            let mine = msg["receipts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["transactionHash"] == json!(hash));
            if let Some(r) = mine {
                assert_preconfirmed_receipt(r);
                assert!(msg["blockHash"].is_string() && !is_zero_hash(&msg["blockHash"]), "{msg}");
                assert_eq!(r["blockHash"], msg["blockHash"], "{msg}");
                for t in msg["transactions"].as_array().into_iter().flatten() {
                    assert_eq!(t["blockHash"], msg["blockHash"], "{t}");
                    schema::check_transaction(t).unwrap();
                }
                got_delta = true;
            }
        } else if sub == full_sub && quantity(&msg["number"]) == number {
            assert!(msg["hash"].is_string() && !is_zero_hash(&msg["hash"]), "{msg}");
            schema::check_block(&msg).unwrap();
            got_full = true;
        } else if sub == txs_sub && msg["hash"] == json!(hash) {
            assert!(msg["blockHash"].is_string(), "{msg}");
            assert_eq!(msg["logs"][0]["blockHash"], msg["blockHash"], "{msg}");
            schema::check_transaction(&msg).unwrap();
            got_tx = true;
        } else if sub == logs_sub && msg["transactionHash"] == json!(hash) {
            assert!(msg["blockHash"].is_string(), "{msg}");
            assert_eq!(quantity(&msg["blockNumber"]), number);
            schema::check_log(&msg).unwrap();
            got_log = true;
        }
    }

    // The fan-out passes the stream's frames through unchanged (zeros included).
    assert_passed_through(&node, &mut source, &mut fanout, number, 5, |_| true).await;

    // After the seal: the upstream's receipt, with the sealed block's hash, which resolves;
    // everything the preconfirmation said stays true.
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default() >= number
        })
        .await
    );
    let sealed =
        raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
    let sealed_hash = sealed["blockHash"].as_str().expect("a sealed receipt has its block hash");
    let block = raw_rpc(&node.rpc, "eth_getBlockByHash", json!([sealed_hash, false])).await
        ["result"]
        .clone();
    assert_eq!(quantity(&block["number"]), number, "the sealed hash resolves: {block}");
    assert_ne!(block["hash"], json!(pending_hash), "the provisional hash was never the sealed one");
    for field in ["blockNumber", "transactionIndex", "gasUsed", "cumulativeGasUsed", "status"] {
        assert_eq!(sealed[field], pre[field], "{field}");
    }
    assert_eq!(sealed["logs"][0]["logIndex"], pre["logs"][0]["logIndex"]);
    let s = status(&node.rpc).await;
    assert!(s["promoted"].as_u64().unwrap_or_default() >= 1, "{s}");
    assert_eq!(s["executionErrors"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_preconfirmations_follow_the_block_hash_rule() {
    preconfirmations_follow_the_block_hash_rule(Shape::Legacy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subblocks_preconfirmations_follow_the_block_hash_rule() {
    preconfirmations_follow_the_block_hash_rule(Shape::Subblocks).await;
}

/// A tail reorg on one shape: the last flashblock is streamed, then the block seals without
/// it; the node drops those receipts at once (matched by transactions, never by hash).
async fn tail_reorg_is_reconciled(shape: Shape) {
    let (devnet, node) = chain(shape, &[], &[]).await;
    wait_serving(&node).await;
    let mut fbs = collect_flashblocks(&devnet.ws).await;
    let TailReorg { dropped, preconfirmed, .. } = tail_reorg(
        &devnet.rpc,
        &node.rpc,
        &mut fbs,
        |fb| assert_frame_shape(shape, fb),
        |receipt, number| quantity(&receipt["blockNumber"]) == number,
        async |number| {
            status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default() >= number
        },
    )
    .await;
    assert!(!dropped.is_empty(), "the injected tail reorg dropped the last flashblock's txs");
    assert!(preconfirmed, "the node preconfirmed the last flashblock before the seal");
    for hash in &dropped {
        let r = raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await;
        assert!(r["result"].is_null(), "dropped tx {hash} has no receipt: {r}");
    }
    let s = status(&node.rpc).await;
    assert!(s["reorgs"].as_u64().unwrap_or_default() >= 1, "{s}");
    // The blocks after it are promoted (the reorged one may have been the first).
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&node.rpc).await["promoted"].as_u64().unwrap_or_default() >= 1
        })
        .await,
        "{}",
        status(&node.rpc).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tail_reorg_is_reconciled() {
    tail_reorg_is_reconciled(Shape::Legacy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subblocks_tail_reorg_is_reconciled() {
    tail_reorg_is_reconciled(Shape::Subblocks).await;
}

/// Index 0 of N+1 before N is canonical, on one shape: the node's upstream is polled every
/// 1.5 s while blocks come every second, so N+1 starts while the node has not seen N sealed.
/// A chain of nonces, one per block, is preconfirmed throughout: nonce k+1 only executes on
/// N's flashblock state, linked by number (the stream's block hash is zero in the Subblocks
/// shape).
async fn index_zero_of_the_next_block_builds_on_the_unsealed_one(shape: Shape) {
    let (_devnet, node) = chain(shape, &[], &["--upstream-poll-interval", "1500ms"]).await;
    wait_serving(&node).await;
    let key = DEV_KEYS[7];
    let mut last_block = 0u64;
    let mut linked = 0;
    for nonce in 0..6u64 {
        // The next tx goes in a later block than the previous one.
        assert!(
            eventually(Duration::from_secs(5), || async {
                status(&node.rpc).await["pendingBlock"].as_u64().unwrap_or_default() > last_block
            })
            .await,
            "{}",
            status(&node.rpc).await
        );
        let raw = sign_1559(
            key,
            901,
            nonce,
            TxKind::Call(Address::repeat_byte(0x77)),
            U256::from(1),
            Bytes::new(),
            21_000,
            10_000_000_000,
        );
        let r = raw_rpc(&node.rpc, "eth_sendRawTransactionSync", json!([raw, 5000])).await;
        let receipt = r["result"].clone();
        assert!(!receipt.is_null(), "nonce {nonce}: {r}\n{}", status(&node.rpc).await);
        assert_preconfirmed_receipt(&receipt);
        let number = quantity(&receipt["blockNumber"]);
        let tip = status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default();
        if nonce > 0 && number == last_block + 1 && tip < last_block {
            // Preconfirmed on top of block `last_block`, which the node has not seen sealed.
            linked += 1;
        }
        last_block = number;
    }
    assert!(linked >= 1, "no tx was preconfirmed on an unsealed parent");
    let s = status(&node.rpc).await;
    assert_eq!(s["executionErrors"], 0, "{s}");
    assert_eq!(s["rejected"]["diverged"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_index_zero_of_the_next_block_builds_on_the_unsealed_one() {
    index_zero_of_the_next_block_builds_on_the_unsealed_one(Shape::Legacy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subblocks_index_zero_of_the_next_block_builds_on_the_unsealed_one() {
    index_zero_of_the_next_block_builds_on_the_unsealed_one(Shape::Subblocks).await;
}

/// A Subblocks stream whose frames after index 0 carry a Lagoon post-exec tx: those frames
/// are passed through unchanged (fan-out and `newFlashblocks`), but such a block's state is
/// never served as exact: pending is latest for it, its txs have no receipt before the seal,
/// and the fallback is counted (status, metric) and explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_exec_tx_block_falls_back_and_passes_through() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let (devnet, node) =
        chain(Shape::Subblocks, &["--post-exec-tx"], &["--metrics-addr", &metrics_addr]).await;
    let mut source = collect_flashblocks(&devnet.ws).await;
    let mut fanout = collect_flashblocks(&node.ws).await;
    let mut ws = WsRpc::connect(&node.rpc).await;
    let delta_sub = ws.subscribe(json!(["newFlashblocks"])).await;

    // Fan-out: frames with post_exec_tx arrive exactly as the source sent them.
    assert_passed_through(&node, &mut source, &mut fanout, 0, 5, |fb| {
        fb.payload.index > 0
            && fb.json["diff"]["post_exec_tx"].as_str().is_some_and(|raw| raw.starts_with("0x7d"))
    })
    .await;
    // newFlashblocks carries it as received.
    let msg = loop {
        let (sub, msg) = ws.notification(Duration::from_secs(5)).await.expect("notifications");
        if sub == delta_sub && quantity(&msg["index"]) > 0 {
            break msg;
        }
    };
    let raw = msg["postExecTx"].as_str().unwrap_or_else(|| panic!("postExecTx: {msg}"));
    assert!(raw.starts_with("0x7d"), "{msg}");

    // Fallback, counted and explained.
    let mut s = Value::Null;
    for _ in 0..250 {
        s = status(&node.rpc).await;
        if s["mode"] == "fallback" && s["reason"].as_str().is_some_and(|r| r.contains("post-exec"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s["reason"].as_str().is_some_and(|r| r.contains("post-exec")), "{s}");
    assert!(s["postExecBlocks"].as_u64().unwrap_or_default() >= 1, "{s}");
    let counted = metric(
        &scrape(&metrics_addr).await,
        "flashnode_overlay_fallback_blocks_total",
        &[("reason", "post_exec_tx")],
    );
    assert!(counted >= 1.0, "the metric counts post-exec blocks");
    assert!(
        eventually(Duration::from_secs(5), || async {
            node.proc.output().contains("post-exec transaction")
        })
        .await,
        "a warning names it"
    );

    // A tx in such a block: no preconfirmed receipt, pending == latest, until it seals.
    while source.try_recv().is_ok() {}
    loop {
        let fb = next_flashblock(&mut source, Duration::from_secs(5)).await;
        if (1..=3).contains(&fb.payload.index) {
            break;
        }
    }
    let raw = sign_1559(
        DEV_KEYS[3],
        901,
        0,
        TxKind::Call(Address::repeat_byte(0x55)),
        U256::from(1),
        Bytes::new(),
        21_000,
        10_000_000_000,
    );
    let hash: B256 = raw_rpc(&node.rpc, "eth_sendRawTransaction", json!([raw])).await["result"]
        .as_str()
        .expect("sent")
        .parse()
        .unwrap();
    let block = loop {
        let fb = next_flashblock(&mut source, Duration::from_secs(5)).await;
        if fb.payload.metadata.receipts.contains_key(&hash) {
            assert!(fb.json["diff"]["post_exec_tx"].is_string());
            break fb.payload.metadata.block_number;
        }
    };
    // Until the node has seen the block sealed: no preconfirmed receipt (a receipt is the
    // upstream's, of the sealed block, whose hash the upstream knows), and pending never ahead
    // of the upstream's latest.
    let mut checked = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default() < block {
        assert!(
            std::time::Instant::now() < deadline,
            "block {block} seals within 15 s: {}\n{}",
            status(&node.rpc).await,
            node.proc.output()
        );
        let r =
            raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
        if !r.is_null() {
            let sealed =
                raw_rpc(&devnet.rpc, "eth_getBlockByHash", json!([r["blockHash"], false])).await;
            assert!(
                sealed["result"]["hash"] == r["blockHash"],
                "no preconfirmed receipt from a post-exec block: {r}"
            );
        }
        let pending = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await;
        let latest = raw_rpc(&devnet.rpc, "eth_getBlockByNumber", json!(["latest", false])).await;
        let (p, l) =
            (quantity(&pending["result"]["number"]), quantity(&latest["result"]["number"]));
        if p > l {
            // Only legitimate when the block sealed between the loop's check and these reads:
            // the next block is preconfirmed on top of it, the post-exec block never was.
            let tip = status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default();
            assert!(
                tip >= block && p > block,
                "pending {p} is latest, never ahead of the upstream's {l} while block {block} is unsealed (tip {tip}): {pending}"
            );
            break;
        }
        checked += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(checked >= 1, "checked before the seal");
    assert!(
        eventually(Duration::from_secs(3), || async {
            let r = raw_rpc(&node.rpc, "eth_getTransactionReceipt", json!([hash])).await;
            r["result"]["blockHash"].is_string()
        })
        .await,
        "after the seal the upstream's receipt is served"
    );
    let s = status(&node.rpc).await;
    assert_eq!(s["executionErrors"], 0, "{s}");
    assert!(!node.proc.output().contains("panicked"));
}
