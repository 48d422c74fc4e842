//! Ingest semantics through the real binary: frames that cannot apply are rejected without
//! moving anything, counted by class and explained (log, `flashnode status`, /readyz);
//! `pending` is served only when its state can be read; an unreachable upstream bounds the
//! pending chain and degrades readiness; `flashnode dev` preconfirms from its first block.

use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use flashnode_tests::{
    relay::{Fault, Relay},
    upstream::UpstreamMode,
    *,
};
use serde_json::{json, Value};
use std::time::Duration;

const CHAIN_ID: u64 = 901;

/// `rejected` count of a class (`other_chain` is `otherChain` in the JSON).
fn count(s: &Value, class: &str) -> u64 {
    let key = match class {
        "other_chain" => "otherChain",
        "unknown_parent" => "unknownParent",
        other => other,
    };
    s["rejected"][key].as_u64().unwrap_or_default()
}

/// `log` without terminal colour codes.
fn strip_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Warnings naming a class of frames not applied.
fn warnings(log: &str, class: &str) -> usize {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("flashblock not applied"))
        .filter(|l| {
            l.contains(&format!("class=\"{class}\"")) || l.contains(&format!("class={class}"))
        })
        .count()
}

/// #16.1: a stream that is otherwise healthy carries index 0s of a block 1,000 numbers ahead.
/// Before, the first one moved the sequencer and every real index 0 after it was "stale": the
/// node fell back and stayed there. Now each is rejected as `ahead` (counted, warned once per
/// window) and preconfirmations go on with pending == tip+1 on the tip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_index_zero_never_turns_preconfirmations_off() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let relay = Relay::start(&devnet.ws).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start_node(&relay.url, &devnet.rpc, &["--metrics-addr", &metrics]).await;
    let flashblocks = || async { status(&node.rpc).await["mode"] == "flashblocks" };
    assert!(eventually(Duration::from_secs(5), flashblocks).await, "{}", status(&node.rpc).await);

    for _ in 0..5 {
        relay.inject(Fault::IndexZeroAhead(1_000)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            count(&status(&node.rpc).await, "ahead") >= 5
        })
        .await,
        "{}",
        status(&node.rpc).await
    );
    let tip = status(&node.rpc).await["canonicalTip"].as_u64().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default() >= tip + 2
        })
        .await
    );
    // Two blocks after the bogus frames: still preconfirming, on the tip.
    let on_tip = eventually(Duration::from_secs(5), || async {
        let s = status(&node.rpc).await;
        let p = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await
            ["result"]
            .clone();
        let l = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["latest", false])).await
            ["result"]
            .clone();
        s["mode"] == "flashblocks"
            && quantity(&p["number"]) == quantity(&l["number"]) + 1
            && p["parentHash"] == l["hash"]
    })
    .await;
    let s = status(&node.rpc).await;
    assert!(on_tip, "preconfirmations went on, on the tip: {s}");
    assert_eq!(s["lastRejected"]["class"], "ahead", "{s}");
    assert!(s["lastRejected"]["block"].as_u64().unwrap() > tip + 900, "{s}");
    let page = scrape(&metrics).await;
    assert!(
        metric(&page, "flashnode_overlay_flashblocks_total", &[("outcome", "ahead")]) >= 5.0,
        "counted by outcome"
    );
    // Warned once for the five (rate-limited), naming the upstream's tip.
    let log = strip_ansi(&node.proc.output());
    assert_eq!(warnings(&log, "ahead"), 1, "{log}");
    assert!(log
        .lines()
        .any(|l| l.contains("flashblock not applied") && l.contains("upstream_tip")));
}

/// #16.5: with the upstream unreachable and the stream going on, the pending chain stops at
/// the depth bound (tip+3) and /readyz turns 206 naming the upstream long before the
/// canonical tip counts as stale (60 s here); the node recovers when the upstream returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_unreachable_bounds_pending_and_degrades_readiness() {
    let ProxiedNode { devnet: _devnet, proxy, metrics, node } = ProxiedNode::start("60s").await;

    proxy.set(UpstreamMode::Down);
    let degraded = eventually(Duration::from_secs(8), || async {
        let (code, body) = http_get(&metrics, "/readyz").await;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        code == 206 && v["reason"].as_str().is_some_and(|r| r.contains("upstream"))
    })
    .await;
    assert!(degraded, "degraded naming the upstream: {:?}", http_get(&metrics, "/readyz").await);
    // The stream goes on for four more blocks: pending never runs further than the bound.
    let mut deepest = 0;
    for _ in 0..40 {
        let s = status(&node.rpc).await;
        if let (Some(p), Some(t)) = (s["pendingBlock"].as_u64(), s["canonicalTip"].as_u64()) {
            deepest = deepest.max(p.saturating_sub(t));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = status(&node.rpc).await;
    assert!(deepest <= 3, "pending ran {deepest} blocks ahead of the tip: {s}");
    assert_eq!(s["mode"], "fallback", "{s}");
    assert_eq!(s["upstreamReachable"], false, "{s}");
    assert!(count(&s, "ahead") > 0, "frames beyond the bound are rejected as ahead: {s}");

    proxy.set(UpstreamMode::Pass);
    assert!(
        eventually(Duration::from_secs(15), || async {
            http_get(&metrics, "/readyz").await.0 == 200
                && status(&node.rpc).await["mode"] == "flashblocks"
        })
        .await,
        "ready again: {}",
        status(&node.rpc).await
    );
    assert_eq!(status(&node.rpc).await["upstreamReachable"], true);
}

/// #15.2: a pending block whose state sits on a block the upstream does not have is never
/// served: `pending` answers as `latest`, `mode: fallback`, /readyz 206 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_is_served_only_when_its_state_can_be_read() {
    let anvil = Anvil::start(CHAIN_ID).await;
    let source = FlashblockSource::start().await;
    let (node, metrics) = start_node_with_metrics(
        &source.url,
        &anvil.url,
        &["--canonical-stale-after", "120s", "--pending-stale-after", "60s"],
    )
    .await;
    let (n0, h0, t0) = latest_block(&anvil.url).await;
    let dev0 = address_of(DEV_KEYS[0]);
    // Control: block 1 on the tip is served.
    assert!(
        eventually(Duration::from_secs(10), || async {
            source.send(flashblock_frame(n0 + 1, 0, h0, t0 + 2, 1, vec![]));
            status(&node.rpc).await["pendingBlock"] == n0 + 1
        })
        .await,
        "{}",
        status(&node.rpc).await
    );
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
    assert_eq!(http_get(&metrics, "/readyz").await.0, 200);

    // Block 2 on a parent nobody has (no txs: it applies without a single state read).
    source.send(flashblock_frame(n0 + 2, 0, B256::repeat_byte(0xde), t0 + 4, 2, vec![]));
    let unreadable = eventually(Duration::from_secs(5), || async {
        let s = status(&node.rpc).await;
        s["applied"].as_u64().unwrap_or_default() >= 2 && s["mode"] == "fallback"
    })
    .await;
    let s = status(&node.rpc).await;
    assert!(unreadable, "{s}");
    assert_eq!(s["pendingBlock"], Value::Null, "{s}");
    let (code, body) = http_get(&metrics, "/readyz").await;
    assert_eq!(code, 206, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["reason"].as_str().unwrap().contains("cannot be read"), "{body}");
    // Every pending read answers as latest.
    let p = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await;
    assert_eq!(quantity(&p["result"]["number"]), n0, "{p}");
    let bp = raw_rpc(&node.rpc, "eth_getBalance", json!([dev0, "pending"])).await;
    let bl = raw_rpc(&node.rpc, "eth_getBalance", json!([dev0, "latest"])).await;
    assert!(bp.get("result").is_some(), "{bp}");
    assert_eq!(bp["result"], bl["result"]);
    let call =
        raw_rpc(&node.rpc, "eth_call", json!([{"to": Address::repeat_byte(0xaa)}, "pending"]))
            .await;
    assert!(call.get("result").is_some(), "{call}");
}

/// #15.3: every class of frame that cannot be applied has its own counter and metric label,
/// one warning naming the block, the upstream's tip and the likely cause, and shows in
/// `flashnode status` and /readyz. A frame 37.6 M blocks ahead is `ahead`, never `stale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unapplicable_frames_are_classified_and_explained() {
    let anvil = Anvil::start(CHAIN_ID).await;
    let source = FlashblockSource::start().await;
    let (node, metrics) =
        start_node_with_metrics(&source.url, &anvil.url, &["--canonical-stale-after", "120s"])
            .await;
    let (n0, h0, t0) = latest_block(&anvil.url).await;
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
    let cases: [(&str, String); 4] = [
        // A Base mainnet block number, against a chain at genesis.
        ("ahead", flashblock_frame(37_646_058, 0, B256::repeat_byte(0x37), t0 + 100, 1, vec![])),
        // The tip's child, but older than the tip.
        ("other_chain", flashblock_frame(n0 + 1, 0, h0, t0, 2, vec![])),
        ("unknown_parent", flashblock_frame(n0 + 1, 0, B256::repeat_byte(0xde), t0 + 2, 3, vec![])),
        // On the tip, but its transaction does not execute on the upstream's state.
        ("diverged", flashblock_frame(n0 + 1, 0, h0, t0 + 2, 4, vec![bad_nonce])),
    ];
    for (class, frame) in cases {
        let seen = eventually(Duration::from_secs(10), || async {
            source.send(frame.clone());
            let s = status(&node.rpc).await;
            count(&s, class) >= 1 && s["lastRejected"]["class"] == class
        })
        .await;
        let s = status(&node.rpc).await;
        assert!(seen, "{class}: {s}");
        assert_eq!(s["lastRejected"]["upstreamTip"], n0, "{s}");
        assert!(s["lastRejected"]["cause"].as_str().is_some_and(|c| c.len() > 20), "{s}");
        if class == "ahead" {
            assert_eq!(count(&s, "stale"), 0, "ahead is not stale: {s}");
            assert_eq!(s["stale"], 0, "{s}");
            assert!(s["lastRejected"]["cause"].as_str().unwrap().contains("another chain"), "{s}");
        }
    }
    // Behind: the upstream moves past block 1, then block 1's index 0 arrives.
    for _ in 0..2 {
        assert!(raw_rpc(&anvil.url, "evm_mine", json!([])).await.get("result").is_some());
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(&node.rpc).await["canonicalTip"] == n0 + 2
        })
        .await
    );
    let behind = eventually(Duration::from_secs(10), || async {
        source.send(flashblock_frame(n0 + 1, 0, h0, t0 + 2, 5, vec![]));
        let s = status(&node.rpc).await;
        s["canonicalTip"] == n0 + 2
            && count(&s, "stale") >= 1
            && s["lastRejected"]["class"] == "stale"
    })
    .await;
    assert!(behind, "{}", status(&node.rpc).await);

    let log = strip_ansi(&node.proc.output());
    for class in ["ahead", "other_chain", "unknown_parent", "diverged", "stale"] {
        assert!(warnings(&log, class) >= 1, "a warning for {class}:\n{log}");
    }
    assert!(log.contains("37646058"), "the warning names the block:\n{log}");
    let page = scrape(&metrics).await;
    for class in ["ahead", "other_chain", "unknown_parent", "diverged", "stale"] {
        assert!(
            metric(&page, "flashnode_overlay_flashblocks_total", &[("outcome", class)]) >= 1.0,
            "{class} counted"
        );
    }
    let (code, body) = http_get(&metrics, "/readyz").await;
    assert_eq!(code, 206, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rejected"]["ahead"].as_u64(), Some(count(&status(&node.rpc).await, "ahead")));
    assert!(v["reason"].as_str().is_some_and(|r| r.contains("stale")), "{body}");
    let (_, api) = http_get(&metrics, "/api/status").await;
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["status"]["lastRejected"]["class"], "stale", "status page data: {api}");
    let out = std::process::Command::new(flashnode_bin())
        .args(["status", "--rpc", &node.rpc, "--count", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Each class shows with its count (frames above were re-sent until seen, so a count can
    // exceed one).
    for class in ["ahead", "unknown_parent", "other_chain", "diverged", "stale"] {
        let shown = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{class}=")))
            .and_then(|n| n.parse::<u64>().ok());
        assert!(shown.is_some_and(|n| n >= 1), "{class}=<count> in {text}");
    }
    assert!(text.contains("reason="), "reason in {text}");
}

/// #15.5: the node of `flashnode dev` connects after the devnet streamed block 1's index 0;
/// the devnet sends a new subscriber the block so far, so block 1 is preconfirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_preconfirms_from_its_first_block() {
    let (rpc_port, ws_port) = (free_port(), free_port());
    let args: Vec<String> = [
        "dev",
        "--rpc-addr",
        &format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr",
        &format!("127.0.0.1:{ws_port}"),
        "--block-time",
        "4s",
        "--flashblock-interval",
        "400ms",
    ]
    .map(String::from)
    .to_vec();
    let node = Proc::flashnode(&args);
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    let first = eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", rpc_port)).await.is_ok()
            && status(&rpc).await["mode"] == "flashblocks"
    })
    .await;
    let s = status(&rpc).await;
    assert!(first, "never preconfirmed: {s}\n{}", node.output());
    assert_eq!(s["pendingBlock"], 1, "the first block is preconfirmed: {s}");
    assert_eq!(s["canonicalTip"], 0, "{s}");
    drop(node);
}
