//! #24 through the real binaries: `flashnode devnet` as the execution client and `flashnode
//! node` as its sidecar, reading canonical state over JSON-RPC. A transaction that reads 200
//! storage slots nobody read before is preconfirmed with the receipt the chain seals, and its
//! reads reach the upstream in discovery batches, not one round trip per `SLOAD`.

use alloy_primitives::{Address, TxKind, U256};
use flashnode_tests::{upstream::*, *};
use serde_json::{json, Value};
use std::time::Duration;

async fn receipt_of(rpc: &str, hash: &Value) -> Option<Value> {
    let r = raw_rpc(rpc, "eth_getTransactionReceipt", json!([hash])).await["result"].clone();
    (!r.is_null()).then_some(r)
}

/// A devnet with the cold reader deployed by `key` (nonce 0) and sealed, before any node
/// starts: its storage is canonical state no node has read (a contract the node saw created
/// has known-empty storage). Returns the devnet and the reader's address.
async fn devnet_with_cold_reader(key: &str) -> (Running, Address) {
    let devnet = start("devnet", &["--block-time", "2s", "--flashblock-interval", "200ms"]).await;
    let reader = deploy_cold_reader(&devnet.rpc, key).await;
    (devnet, reader)
}

/// Sends `reader` a read of `count` slots from `start` (nonce 1 of `key`) to `send_to` and polls
/// `node` for the receipt.
async fn read_through(
    send_to: &str,
    node: &str,
    key: &str,
    reader: Address,
    start: u64,
    count: u64,
) -> (Value, Value) {
    let call = sign_1559(
        key,
        901,
        1,
        TxKind::Call(reader),
        U256::ZERO,
        read_slots(start, count),
        2_000_000,
        10_000_000_000,
    );
    send_and_wait(send_to, node, call, Duration::from_secs(15)).await
}

/// Sends `raw` to `send_to` and polls `receipts_from` for its receipt for up to `within`.
async fn send_and_wait(
    send_to: &str,
    receipts_from: &str,
    raw: alloy_primitives::Bytes,
    within: Duration,
) -> (Value, Value) {
    let sent = raw_rpc(send_to, "eth_sendRawTransaction", json!([raw])).await;
    let hash = sent["result"].clone();
    assert!(hash.is_string(), "{sent}");
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(r) = receipt_of(receipts_from, &hash).await {
            return (hash, r);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no receipt from {receipts_from} for {hash}");
}

/// Waits for the devnet to seal `hash` and checks the node's receipt is the sealed one.
async fn assert_sealed_as_preconfirmed(devnet: &str, hash: &Value, preconfirmed: &Value) {
    assert!(
        eventually(Duration::from_secs(15), || async { receipt_of(devnet, hash).await.is_some() })
            .await
    );
    let sealed = receipt_of(devnet, hash).await.unwrap();
    for field in ["status", "gasUsed", "cumulativeGasUsed", "blockNumber", "transactionIndex"] {
        assert_eq!(preconfirmed[field], sealed[field], "{field}: {preconfirmed} vs {sealed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_storage_reads_arrive_in_discovery_batches() {
    let key = DEV_KEYS[4];
    let (devnet, reader) = devnet_with_cold_reader(key).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &devnet.rpc, &["--metrics-addr", &metrics_addr]).await;
    assert!(mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(10)).await);
    let before = scrape(&metrics_addr).await;
    let (hash, preconfirmed) = read_through(&node.rpc, &node.rpc, key, reader, 1_000, 200).await;
    assert_eq!(preconfirmed["status"], "0x1", "{preconfirmed}");
    // 200 cold SLOADs at 2,100 gas each.
    assert!(quantity(&preconfirmed["gasUsed"]) > 200 * 2_100, "{preconfirmed}");
    let after = scrape(&metrics_addr).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        metric(&after, name, labels) - metric(&before, name, labels)
    };
    let discovered = delta("flashnode_overlay_discovered_reads_total", &[]);
    let rounds = delta("flashnode_overlay_discovery_rounds_total", &[]);
    let demand = delta("flashnode_upstream_cache_total", &[("kind", "slot"), ("outcome", "miss")]);
    assert!(discovered >= 200.0, "the 200 slots were discovered ahead of execution: {discovered}");
    assert!((1.0..=12.0).contains(&rounds), "a few rounds, not one per slot: {rounds}");
    assert!(demand < 20.0, "slot reads did not go one by one: {demand} demand misses");
    // The 200 slots were never written: every zero the speculative run guessed was right, so
    // its outcome was committed as it was instead of executing again.
    let kept = delta("flashnode_overlay_speculated_txs_kept_total", &[]);
    assert!(kept >= 1.0, "the read's speculative outcome was kept: {kept}");
    // The sealed receipt is the one preconfirmed.
    assert_sealed_as_preconfirmed(&devnet.rpc, &hash, &preconfirmed).await;
}

/// #24.2: a speculative run guesses zero for a slot nobody holds. When slots were written, the
/// guess is wrong and the outcome is not kept: the read executes again over the fetched values,
/// and the receipt and the stored sum are the real ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_speculative_guess_is_executed_again() {
    let key = DEV_KEYS[6];
    let devnet = start("devnet", &["--block-time", "2s", "--flashblock-interval", "200ms"]).await;
    // Slots 3000, 3010, ..., 3090 hold 1..=10: a read of 3000..3100 sums to 55.
    let written: Vec<(u16, u8)> = (0..10u8).map(|i| (3000 + 10 * u16::from(i), i + 1)).collect();
    let reader = deploy_cold_reader_with(&devnet.rpc, key, &written).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &devnet.rpc, &["--metrics-addr", &metrics_addr]).await;
    assert!(mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(10)).await);
    let before = scrape(&metrics_addr).await;
    let (hash, preconfirmed) = read_through(&node.rpc, &node.rpc, key, reader, 3_000, 100).await;
    assert_eq!(preconfirmed["status"], "0x1", "{preconfirmed}");
    let after = scrape(&metrics_addr).await;
    let name = "flashnode_overlay_speculated_txs_kept_total";
    let rounds = metric(&after, "flashnode_overlay_discovery_rounds_total", &[])
        - metric(&before, "flashnode_overlay_discovery_rounds_total", &[]);
    assert!(rounds >= 1.0, "the read was discovered: {rounds}");
    assert_eq!(metric(&after, name, &[]), metric(&before, name, &[]), "nothing guessed was kept");
    let sum = raw_rpc(&node.rpc, "eth_getStorageAt", json!([reader, "0x0", "pending"])).await;
    assert_eq!(quantity(&sum["result"]), 55, "the pending sum is the real one: {sum}");
    assert_sealed_as_preconfirmed(&devnet.rpc, &hash, &preconfirmed).await;
}

/// #25.4: an upstream that closes one request's connection in four (mid-request, as a
/// keep-alive connection dropped by the upstream) costs retries, not the block: the read is
/// preconfirmed with the sealed receipt, and no flashblock is marked diverged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_blip_is_retried_not_a_divergence() {
    let key = DEV_KEYS[5];
    let (devnet, reader) = devnet_with_cold_reader(key).await;
    let proxy = UpstreamProxy::start(&devnet.rpc).await;
    proxy.set(UpstreamMode::Blip { every: 4 });
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &proxy.url, &["--metrics-addr", &metrics_addr]).await;
    assert!(
        mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(15)).await,
        "{}",
        status(&node.rpc).await
    );
    // Sent to the devnet itself: the blips are for the node's reads, not its forwarding.
    let (hash, preconfirmed) = read_through(&devnet.rpc, &node.rpc, key, reader, 5_000, 100).await;
    assert_eq!(preconfirmed["status"], "0x1", "{preconfirmed}");
    assert_sealed_as_preconfirmed(&devnet.rpc, &hash, &preconfirmed).await;
    let page = scrape(&metrics_addr).await;
    assert!(metric(&page, "flashnode_upstream_retries_total", &[]) > 0.0, "blips were retried");
    let diverged = metric(&page, "flashnode_overlay_flashblocks_total", &[("outcome", "diverged")]);
    assert_eq!(diverged, 0.0, "a transport blip is not a divergence: {}", status(&node.rpc).await);
}

/// #24.4: with a ws:// upstream the node subscribes to `newHeads` and follows each sealed block
/// as it is pushed (polling stays as the fallback); the devnet serves the subscription as an
/// execution client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_pushed_by_a_websocket_upstream() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "200ms"]).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let upstream = devnet.rpc.replace("http://", "ws://");
    let node = start_node(&devnet.ws, &upstream, &["--metrics-addr", &metrics_addr]).await;
    assert!(
        mode_becomes(&node.rpc, "flashblocks", Duration::from_secs(10)).await,
        "{}",
        status(&node.rpc).await
    );
    let first = status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || async {
            let page = scrape(&metrics_addr).await;
            metric(&page, "flashnode_upstream_heads_pushed_total", &[]) >= 2.0
                && status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default() >= first + 2
        })
        .await,
        "heads pushed and followed: {}",
        scrape(&metrics_addr).await
    );
}

/// Runtime of a writer: stores calldata word 1 at the slot of word 0 (PUSH1 0x20 CALLDATALOAD
/// PUSH1 0 CALLDATALOAD SSTORE STOP).
const WRITER_RUNTIME: &str = "6020356000355500";

/// Sends `raw` to the devnet and waits for its receipt there.
async fn sealed_on(devnet: &str, raw: alloy_primitives::Bytes) -> Value {
    send_and_wait(devnet, devnet, raw, Duration::from_secs(20)).await.1
}

/// A writer deployed by `key` (nonce 0) on `devnet`, slot 1 = 11 and slot 2 = 22 written and
/// sealed (nonces 1 and 2): its address.
async fn writer_with_two_slots(devnet: &str, key: &str) -> Address {
    let deploy = sign_1559(
        key,
        901,
        0,
        TxKind::Create,
        U256::ZERO,
        format!("0x6008600c60003960086000f3{WRITER_RUNTIME}").parse().expect("hex"),
        200_000,
        10_000_000_000,
    );
    sealed_on(devnet, deploy).await;
    let writer = address_of(key).create(0);
    sealed_on(devnet, write_slot(key, writer, 1, 1, 11)).await;
    sealed_on(devnet, write_slot(key, writer, 2, 2, 22)).await;
    writer
}

/// `key`'s transaction (nonce `nonce`) writing `value` at `slot` of `writer`.
fn write_slot(
    key: &str,
    writer: Address,
    nonce: u64,
    slot: u64,
    value: u64,
) -> alloy_primitives::Bytes {
    let mut data = U256::from(slot).to_be_bytes::<32>().to_vec();
    data.extend_from_slice(&U256::from(value).to_be_bytes::<32>());
    sign_1559(
        key,
        901,
        nonce,
        TxKind::Call(writer),
        U256::ZERO,
        data.into(),
        100_000,
        10_000_000_000,
    )
}

/// Makes `node` pending over the devnet's latest block: an empty index 0 of the next, streamed
/// by `source` as soon as the node follows that block (before the devnet seals the next).
async fn pend_over_latest(devnet: &str, node: &str, source: &FlashblockSource) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let latest = loop {
        let l = raw_rpc(devnet, "eth_getBlockByNumber", json!(["latest", false])).await["result"]
            .clone();
        if status(node).await["canonicalTip"].as_u64() == Some(quantity(&l["number"])) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "the node follows the devnet");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let env = flashnode_tests::anvil_chain::next_env(&latest, Address::repeat_byte(0xcb));
    for frame in flashnode_tests::anvil_chain::build_frames(devnet, 901, &env, vec![vec![]]).await {
        source.send(frame);
    }
    let number = env.number;
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(node).await["pendingBlock"].as_u64() == Some(number)
        })
        .await,
        "pending is block {number}"
    );
}

/// Slot `n` of `contract` at `node`'s pending block.
async fn pending_slot(node: &str, contract: Address, n: u64) -> u64 {
    let v = raw_rpc(node, "eth_getStorageAt", json!([contract, U256::from(n), "pending"])).await;
    quantity(&v["result"])
}

/// Waits (up to 10 s) until `node` (metrics at `metrics`) has carried its state to its pending
/// block's parent: a block is announced before its diff is asked for, so a read right after
/// it may still go upstream.
async fn carried_to_pending(node: &str, metrics: &str) {
    let pending = status(node).await["pendingBlock"].as_u64();
    let parent = pending.expect("a pending block").saturating_sub(1);
    let carried = eventually(Duration::from_secs(10), || async {
        metric(&scrape(metrics).await, "flashnode_upstream_carried_block", &[]) >= parent as f64
    })
    .await;
    let page = scrape(metrics).await;
    let lines: Vec<_> =
        page.lines().filter(|l| l.contains("carried") || l.contains("diffs")).collect();
    assert!(carried, "the carried state reached block {parent}: {lines:#?}");
}

/// Slots 1 and 2 of `writer` at `node`'s pending block.
async fn both_slots(node: &str, writer: Address) -> (u64, u64) {
    (pending_slot(node, writer, 1).await, pending_slot(node, writer, 2).await)
}

/// A node fed by the test's `source` and reading `upstream` (pending state kept for a minute,
/// heads polled every 50 ms, and `extra` flags), serving a pending block over `devnet`'s
/// latest; with its metrics address.
async fn carrying_node(
    devnet: &Running,
    source: &FlashblockSource,
    upstream: &str,
    extra: &[&str],
) -> (Running, String) {
    let mut args = vec!["--pending-stale-after", "60s", "--upstream-poll-interval", "50ms"];
    args.extend_from_slice(extra);
    let (node, metrics) = start_node_with_metrics(&source.url, upstream, &args).await;
    pend_over_latest(&devnet.rpc, &node.rpc, source).await;
    (node, metrics)
}

/// #24.1: state read at one canonical block is carried to later blocks that did not touch it,
/// by each block's state diff (`debug_traceBlockByHash`, prestate tracer in diff mode, which
/// the devnet serves as op-reth and op-geth do). The node reads two slots at block N; block
/// N+k, which the node never saw (its stream is the test's, silent meanwhile; the blocks
/// between are deposit-only), writes one of them. Reading both again on top of N+k fetches only
/// the written one, and both values are the canonical ones. With `--upstream-state-diffs false`
/// both are read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_blocks_that_did_not_touch_it() {
    let devnet = start("devnet", &["--block-time", "2s"]).await;
    let key = DEV_KEYS[4];
    let writer = writer_with_two_slots(&devnet.rpc, key).await;
    for diffs in [true, false] {
        let proxy = flashnode_tests::counting::CountingProxy::start(&devnet.rpc).await;
        let source = FlashblockSource::start().await;
        let flag = if diffs { "true" } else { "false" };
        let (node, metrics) =
            carrying_node(&devnet, &source, &proxy.url, &["--upstream-state-diffs", flag]).await;
        let slots = || both_slots(&node.rpc, writer);
        let before_write = if diffs { 22 } else { 102 };
        assert_eq!(slots().await, (11, before_write), "read at N");
        // Block N+k, never streamed to the node, writes slot 2.
        let nonce = if diffs { 3 } else { 4 };
        sealed_on(&devnet.rpc, write_slot(key, writer, nonce, 2, 99 + nonce)).await;
        pend_over_latest(&devnet.rpc, &node.rpc, &source).await;
        if diffs {
            carried_to_pending(&node.rpc, &metrics).await;
        }
        let before = proxy.state().1;
        let values = slots().await;
        let reads = proxy.state().1 - before;
        assert_eq!(values, (11, 99 + nonce), "the canonical values on top of N+k");
        if diffs {
            assert_eq!(reads, 1, "only the slot N+k wrote is read again");
            let page = scrape(&metrics).await;
            assert!(
                metric(&page, "flashnode_upstream_state_diffs_total", &[("outcome", "ok")]) >= 1.0
            );
            assert!(metric(&page, "flashnode_upstream_carried_total", &[("kind", "slot")]) >= 1.0);
        } else {
            assert_eq!(reads, 2, "without diffs both slots are read again");
        }
    }
}

/// #24.4: over a ws:// upstream of the reth family the node follows reth's
/// `reth_subscribeChainNotifications` (the ExEx's canonical-state stream, which the devnet
/// serves in reth's shape): heads come from it, and so does each block's state diff (the
/// notification's execution outcome), so state read at N is carried across a block N+k the
/// node never executed without a single `debug_traceBlockByHash`. With the devnet's reth
/// namespace off (`--reth-namespace false`, an op-geth-like upstream) the node falls back to
/// `newHeads` and the trace, with the same reads saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reth_chain_notifications_bring_heads_and_state_diffs() {
    for reth in [true, false] {
        let flag = if reth { "true" } else { "false" };
        let devnet = start("devnet", &["--block-time", "2s", "--reth-namespace", flag]).await;
        let key = DEV_KEYS[4];
        let writer = writer_with_two_slots(&devnet.rpc, key).await;
        let source = FlashblockSource::start().await;
        let upstream = devnet.rpc.replace("http://", "ws://");
        let (node, metrics) = carrying_node(&devnet, &source, &upstream, &[]).await;
        let slots = || both_slots(&node.rpc, writer);
        assert_eq!(slots().await, (11, 22), "read at N");
        // Block N+k, never streamed to the node, writes slot 2.
        let receipt = sealed_on(&devnet.rpc, write_slot(key, writer, 3, 2, 102)).await;
        // The devnet's reth_getBlockExecutionOutcome (the node's second diff source) has the
        // write in reth's shape, or is an unknown method with the namespace off.
        let outcome =
            raw_rpc(&devnet.rpc, "reth_getBlockExecutionOutcome", json!([receipt["blockHash"]]))
                .await;
        if reth {
            let account =
                &outcome["result"]["bundle"]["state"][format!("{writer:?}").to_lowercase()];
            assert_eq!(account["storage"]["0x2"]["present_value"], "0x66", "{outcome}");
            assert_eq!(outcome["result"]["first_block"], quantity(&receipt["blockNumber"]));
        } else {
            assert_eq!(outcome["error"]["code"], -32601, "{outcome}");
        }
        pend_over_latest(&devnet.rpc, &node.rpc, &source).await;
        carried_to_pending(&node.rpc, &metrics).await;
        let storage_reads = |page: &str| {
            metric(page, "flashnode_upstream_requests_total", &[("method", "eth_getStorageAt")])
        };
        let before = storage_reads(&scrape(&metrics).await);
        assert_eq!(slots().await, (11, 102), "the canonical values on top of N+k");
        let page = scrape(&metrics).await;
        assert_eq!(storage_reads(&page) - before, 1.0, "only the slot N+k wrote is read again");
        let traces = metric(
            &page,
            "flashnode_upstream_requests_total",
            &[("method", "debug_traceBlockByHash")],
        );
        let heads =
            |source: &str| metric(&page, "flashnode_upstream_heads_total", &[("source", source)]);
        let in_use =
            |source: &str| metric(&page, "flashnode_upstream_head_source", &[("source", source)]);
        let diffs = |source: &str| {
            metric(
                &page,
                "flashnode_upstream_state_diffs_total",
                &[("source", source), ("outcome", "ok")],
            )
        };
        if reth {
            assert_eq!(in_use("reth_chain_notifications"), 1.0, "{page}");
            assert!(heads("reth_chain_notifications") >= 1.0, "{page}");
            assert!(diffs("chain_notification") >= 1.0, "{page}");
            assert_eq!(traces, 0.0, "no block was traced: {page}");
        } else {
            assert_eq!(in_use("new_heads"), 1.0, "{page}");
            assert_eq!(heads("reth_chain_notifications"), 0.0, "{page}");
            assert!(diffs("debug_trace") >= 1.0, "{page}");
            assert!(traces >= 1.0, "{page}");
        }
    }
}
