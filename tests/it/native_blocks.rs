//! #15.6: a chain that switches to native short blocks at a fork timestamp has no flashblock
//! stream after it, by design (`--native-blocks-timestamp`, Base's Denim in the presets). The
//! real binary against the devnet (which keeps streaming: the node must stop listening by
//! itself): after the cutover `pending` is `latest`, the stream is not reconnected, readiness
//! stays 200, no warning is logged, and status says `native_blocks`.

use flashnode_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `flashnode dev` with a cutover at `at` and an operator endpoint; (process, rpc, metrics).
async fn dev_with_cutover(at: u64) -> (Proc, String, String) {
    let (rpc_port, ws_port, metrics_port) = (free_port(), free_port(), free_port());
    let args: Vec<String> = [
        "dev",
        "--rpc-addr",
        &format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr",
        &format!("127.0.0.1:{ws_port}"),
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
        "--block-time",
        "1s",
        "--flashblock-interval",
        "100ms",
        "--native-blocks-timestamp",
        &at.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let proc = Proc::flashnode(&args);
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    let up = eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", rpc_port)).await.is_ok()
            && status(&rpc).await["canonicalTip"].is_u64()
    })
    .await;
    assert!(up, "flashnode dev did not come up:\n{}", proc.output());
    (proc, rpc, format!("127.0.0.1:{metrics_port}"))
}

/// `pending` answers as `latest` (retried across a seal that lands between the two reads).
async fn pending_is_latest(rpc: &str) -> bool {
    for _ in 0..10 {
        let p = raw_rpc(rpc, "eth_getBlockByNumber", json!(["pending", false])).await;
        let l = raw_rpc(rpc, "eth_getBlockByNumber", json!(["latest", false])).await;
        if p["result"]["number"] == l["result"]["number"]
            && p["result"]["hash"] == l["result"]["hash"]
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Log lines at WARN or above (`flashnode` logs pretty lines with the level).
fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(String::from)
        .collect()
}

/// Checks the post-cutover state for `duration`: every sample native, ready and latest.
async fn stays_native(rpc: &str, metrics: &str, duration: Duration) {
    let until = std::time::Instant::now() + duration;
    while std::time::Instant::now() < until {
        let s = status(rpc).await;
        assert_eq!(s["mode"], "native_blocks", "{s}");
        assert_eq!(s["health"], "ready", "{s}");
        assert_eq!(s["reason"], Value::Null, "{s}");
        assert_eq!(s["pendingBlock"], Value::Null, "{s}");
        assert_eq!(s["streamConnected"], false, "{s}");
        let (code, body) = http_get(metrics, "/readyz").await;
        assert_eq!(code, 200, "{body}");
        assert!(pending_is_latest(rpc).await, "pending is latest");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A cutover in the past: the node never connects to the stream and serves latest as pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_cutover_never_connects_the_stream() {
    let at = unix_now() - 60;
    let (proc, rpc, metrics) = dev_with_cutover(at).await;
    let s = status(&rpc).await;
    assert_eq!(s["nativeBlocksTimestamp"], at, "{s}");
    stays_native(&rpc, &metrics, Duration::from_secs(3)).await;
    let s = status(&rpc).await;
    assert!(s["canonicalTip"].as_u64().is_some_and(|t| t >= 2), "blocks go on: {s}");
    assert_eq!(
        (s["applied"].as_u64(), s["reconnects"].as_u64(), s["disconnects"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{s}"
    );
    let out = std::process::Command::new(flashnode_bin())
        .args(["status", "--rpc", &rpc, "--count", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("mode=native_blocks"), "{out:?}");
    let log = proc.output();
    assert!(warnings(&log).is_empty(), "no warnings: {:?}", warnings(&log));
    assert!(log.contains("native blocks since the cutover"), "{log}");
}

/// A cutover a few seconds ahead: preconfirmations until then, native blocks after, with the
/// stream closed once and never reconnected, and readiness 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_ahead_switches_without_degrading() {
    let at = unix_now() + 6;
    let (proc, rpc, metrics) = dev_with_cutover(at).await;
    let flashblocks = eventually(Duration::from_secs(5), || async {
        let s = status(&rpc).await;
        s["mode"] == "flashblocks" && s["pendingBlock"].is_u64()
    })
    .await;
    assert!(
        flashblocks || unix_now() >= at,
        "preconfirmations before the cutover: {}",
        status(&rpc).await
    );
    // From the first ready answer to well past the cutover, /readyz never leaves 200.
    let ready = readyz_becomes(&metrics, 200, Duration::from_secs(5)).await;
    assert!(ready, "{}", status(&rpc).await);
    while unix_now() < at + 1 {
        let (code, body) = http_get(&metrics, "/readyz").await;
        assert_eq!(code, 200, "readiness stays 200 across the cutover: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = status(&rpc).await["applied"].as_u64().unwrap();
    stays_native(&rpc, &metrics, Duration::from_secs(3)).await;
    let s = status(&rpc).await;
    assert_eq!(s["applied"].as_u64(), Some(applied), "nothing applied after the cutover: {s}");
    assert_eq!(s["reconnects"], 0, "the stream is not reconnected: {s}");
    let log = proc.output();
    assert!(warnings(&log).is_empty(), "no warnings: {:?}", warnings(&log));
    assert!(log.contains("flashblock stream closed for good"), "{log}");
    assert_eq!(log.matches("flashblock stream closed for good").count(), 1, "closed once: {log}");
}
