//! Fault suite: the node under a flapping stream, an upstream RPC that is down, slow or
//! answering 502, and SIGKILL + restart. Each test states the expected behaviour and asserts
//! its recovery time loosely (an upper bound, never a timing race). docs/faults.md lists them.

use flashnode_tests::{
    relay::{Fault, Relay},
    upstream::{UpstreamMode, UpstreamProxy},
    *,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn quantity(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

async fn mode(rpc: &str) -> Value {
    status(rpc).await["mode"].clone()
}

/// A JSON-RPC call that must answer within `bound` (the node never hangs a client).
async fn rpc_within(bound: Duration, url: &str, method: &str, params: Value) -> Value {
    tokio::time::timeout(bound, raw_rpc(url, method, params))
        .await
        .unwrap_or_else(|_| panic!("{method} did not answer within {bound:?}"))
}

/// Stream flapping: the relay kills the node's stream every second for five seconds. The node
/// never serves a stale pending block: its `pending` is never behind the canonical tip read
/// just before, except by the upstream poll's lag in fallback, and then it is the canonical
/// block. Within 5 s of the last kill it is back in flashblocks mode with `pending` ahead of
/// `latest`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flapping_never_serves_a_stale_pending() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let relay = Relay::start(&devnet.ws).await;
    let node = start_node(&relay.url, &devnet.rpc, &[]).await;
    assert!(eventually(Duration::from_secs(5), || async { mode(&node.rpc).await == "flashblocks" }).await);

    let flapping = tokio::spawn(async move {
        for _ in 0..5 {
            relay.inject(Fault::Kill(Duration::from_millis(400))).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        relay
    });
    let mut samples = 0;
    while !flapping.is_finished() {
        // The canonical tip first, then the node's pending: pending may never be older.
        let tip = quantity(&raw_rpc(&devnet.rpc, "eth_blockNumber", json!([])).await["result"]).expect("tip");
        let pending = rpc_within(Duration::from_secs(5), &node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await;
        let number = quantity(&pending["result"]["number"]).unwrap_or_else(|| panic!("a pending block: {pending}"));
        if number < tip {
            // Only allowed in fallback, where `pending` is the node's `latest`, polled from the
            // upstream every 100 ms: at most one block behind, and then it is that canonical
            // block, never preconfirmed state of a block already sealed.
            assert_eq!(number + 1, tip, "pending {number} more than a block behind the canonical tip {tip}");
            let canonical = raw_rpc(&devnet.rpc, "eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await;
            assert_eq!(pending["result"]["hash"], canonical["result"]["hash"], "stale pending {number} behind the tip {tip}");
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _relay = flapping.await.expect("flapping task");
    assert!(samples > 20, "sampled pending throughout the flapping ({samples})");

    let recovered = Instant::now();
    assert!(eventually(Duration::from_secs(5), || async { mode(&node.rpc).await == "flashblocks" }).await,
        "back in flashblocks mode: {}", status(&node.rpc).await);
    // Preconfirming again: pending is the block after latest.
    assert!(eventually(Duration::from_secs(3), || async {
        let p = quantity(&raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await["result"]["number"]);
        let l = quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]);
        matches!((p, l), (Some(p), Some(l)) if p == l + 1)
    }).await, "pending is ahead of latest again");
    eprintln!("recovered {:?} after the last kill", recovered.elapsed());
    let s = status(&node.rpc).await;
    assert!(s["disconnects"].as_u64().unwrap_or_default() >= 3, "{s}");
    assert!(!node.proc.output().contains("panicked"));
}

/// Upstream RPC down (connections closed at once): within 4 s /readyz answers 503 (no fresh
/// canonical tip), proxied methods answer a clear `upstream unavailable` error within 2 s, and
/// `pending` reads answer (served or a clear error) without hanging. Within 5 s of the
/// upstream's return the node is ready and in flashblocks mode again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_not_ready_then_recovers() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let proxy = UpstreamProxy::start(&devnet.rpc).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &proxy.url, &["--metrics-addr", &metrics, "--canonical-stale-after", "2s", "--upstream-timeout", "1s"]).await;
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await);

    proxy.set(UpstreamMode::Down);
    assert!(eventually(Duration::from_secs(4), || async { http_get(&metrics, "/readyz").await.0 == 503 }).await,
        "not ready while the upstream is down: {:?}", http_get(&metrics, "/readyz").await);
    let r = rpc_within(Duration::from_secs(2), &node.rpc, "eth_blockNumber", json!([])).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("upstream"), "a clear upstream error: {r}");
    for (method, params) in [
        ("eth_getBalance", json!(["0x00000000000000000000000000000000000000aa", "pending"])),
        ("eth_call", json!([{"to": "0x00000000000000000000000000000000000000aa"}, "pending"])),
        ("eth_getBlockByNumber", json!(["pending", false])),
    ] {
        let r = rpc_within(Duration::from_secs(3), &node.rpc, method, params).await;
        assert!(r.get("result").is_some() || r["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method}: a result or a clear error: {r}");
    }
    assert!(node.proc.output().lines().any(|l| l.contains("polling the upstream head failed")), "the failure is logged");

    proxy.set(UpstreamMode::Pass);
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await,
        "ready again: {:?} {}", http_get(&metrics, "/readyz").await, status(&node.rpc).await);
    assert_eq!(mode(&node.rpc).await, "flashblocks");
    assert!(quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]).is_some());
}

/// Upstream slow (every request held 3 s, the node's upstream timeout is 1 s): proxied
/// methods answer a timeout error within 2.5 s, never hang; the node turns not ready, and
/// recovers within 5 s once the upstream is fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slow_answers_timeouts_not_hangs() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let proxy = UpstreamProxy::start(&devnet.rpc).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &proxy.url, &["--metrics-addr", &metrics, "--canonical-stale-after", "2s", "--upstream-timeout", "1s"]).await;
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await);

    proxy.set(UpstreamMode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let r = rpc_within(Duration::from_millis(2500), &node.rpc, "eth_blockNumber", json!([])).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(msg.contains("upstream") && msg.contains("time"), "a clear timeout error: {r}");
    eprintln!("timeout error after {:?}", started.elapsed());
    let r = rpc_within(Duration::from_secs(4), &node.rpc, "eth_getBalance", json!(["0x00000000000000000000000000000000000000bb", "pending"])).await;
    assert!(r.get("result").is_some() || r["error"]["message"].is_string(), "{r}");
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 503 }).await,
        "not ready while canonical heads time out");

    proxy.set(UpstreamMode::Pass);
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await,
        "ready again: {}", status(&node.rpc).await);
    assert!(quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]).is_some());
}

/// Upstream answering HTTP 502: proxied methods answer a clear `upstream unavailable` error
/// naming the status within 2 s; the node turns not ready and recovers within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_502_answers_clear_errors_then_recovers() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let proxy = UpstreamProxy::start(&devnet.rpc).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start_node(&devnet.ws, &proxy.url, &["--metrics-addr", &metrics, "--canonical-stale-after", "2s", "--upstream-timeout", "1s"]).await;
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await);

    proxy.set(UpstreamMode::BadGateway);
    let r = rpc_within(Duration::from_secs(2), &node.rpc, "eth_blockNumber", json!([])).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("upstream") && msg.contains("502"), "a clear 502 error: {r}");
    assert!(eventually(Duration::from_secs(4), || async { http_get(&metrics, "/readyz").await.0 == 503 }).await,
        "not ready while the upstream fails");
    proxy.set(UpstreamMode::Pass);
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await,
        "ready again: {}", status(&node.rpc).await);
    assert_eq!(mode(&node.rpc).await, "flashblocks");
}

/// SIGKILL of `flashnode node` and a restart on the same ports: it answers again and is back
/// in flashblocks mode within 10 s (it joins mid-block and waits for the next index 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_returns_to_flashblocks() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mut node = start_node(&devnet.ws, &devnet.rpc, &[]).await;
    assert!(eventually(Duration::from_secs(5), || async { mode(&node.rpc).await == "flashblocks" }).await);
    let rpc_addr = node.rpc.trim_start_matches("http://").to_string();
    let fanout_addr = node.ws.trim_start_matches("ws://").trim_end_matches("/ws").to_string();

    node.proc.kill();
    assert!(!node.proc.is_running());
    let restarted = Instant::now();
    let args: Vec<String> = [
        "node", "--flashblocks-url", &devnet.ws, "--upstream-rpc", &devnet.rpc,
        "--rpc-addr", &rpc_addr, "--flashblocks-addr", &fanout_addr,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut again = Proc::flashnode(&args);
    assert!(eventually(Duration::from_secs(10), || async { tokio::net::TcpStream::connect(&rpc_addr).await.is_ok() }).await,
        "the restarted node listens:\n{}", again.output());
    assert!(eventually(Duration::from_secs(10), || async {
        tokio::time::timeout(Duration::from_secs(1), status(&node.rpc)).await.is_ok_and(|s| s["mode"] == "flashblocks")
    }).await, "back in flashblocks mode after the restart:\n{}", again.output());
    eprintln!("flashblocks mode {:?} after the restart", restarted.elapsed());
    let p = quantity(&raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await["result"]["number"]);
    let tip = quantity(&raw_rpc(&devnet.rpc, "eth_blockNumber", json!([])).await["result"]);
    assert!(p.zip(tip).is_some_and(|(p, t)| p >= t), "pending {p:?} not behind the tip {tip:?}");
    assert!(again.is_running());
}
