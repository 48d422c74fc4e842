//! Operator surface: /healthz, /readyz (200 / 206 / 503), /metrics families, and the
//! `flashnode status` command.

use flashnode_tests::{relay::{Fault, Relay}, *};
use std::time::Duration;

/// /readyz follows the stream: 200 while preconfirming, 206 when the stream goes silent, 200
/// again when it recovers; /metrics exposes the stream, overlay and upstream families.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_stream() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let relay = Relay::start(&devnet.ws).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start_node(&relay.url, &devnet.rpc, &["--metrics-addr", &metrics]).await;
    assert_eq!(http_get(&metrics, "/healthz").await.0, 200);
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await);
    relay.inject(Fault::Kill(Duration::from_secs(3))).await;
    assert!(eventually(Duration::from_secs(3), || async { http_get(&metrics, "/readyz").await.0 == 206 }).await,
        "degraded while the stream is down: {:?}", http_get(&metrics, "/readyz").await);
    assert!(eventually(Duration::from_secs(8), || async { http_get(&metrics, "/readyz").await.0 == 200 }).await,
        "ready again after recovery");
    let (code, page) = http_get(&metrics, "/metrics").await;
    assert_eq!(code, 200);
    for family in [
        "flashnode_stream_frames_total",
        "flashnode_stream_bytes_total",
        "flashnode_stream_disconnects_total",
        "flashnode_overlay_flashblocks_total",
        "flashnode_overlay_apply_seconds_bucket",
        "flashnode_upstream_requests_total",
    ] {
        assert!(metric(&page, family, &[]) > 0.0, "{family} is exported and counted");
    }
    assert_eq!(http_get(&metrics, "/nope").await.0, 404);
    drop(node);
}

/// /readyz answers 503 when the canonical tip stops advancing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_a_fresh_canonical_tip() {
    let anvil = Anvil::start(901).await; // never mines: the tip stays at genesis
    let source = FlashblockSource::start().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let _node = start_node(&source.url, &anvil.url, &["--metrics-addr", &metrics, "--canonical-stale-after", "1s"]).await;
    assert!(eventually(Duration::from_secs(5), || async { http_get(&metrics, "/readyz").await.0 == 503 }).await);
    let (_, body) = http_get(&metrics, "/readyz").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["health"], "notready");
    assert_eq!(v["mode"], "fallback");
}

/// `flashnode status` prints the mode, tip and flashblock index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_shows_the_node() {
    let node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let out = std::process::Command::new(flashnode_bin())
        .args(["status", "--rpc", &node.rpc, "--count", "3", "--interval", "100ms"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|l| l.contains("mode=flashblocks") && l.contains("tip=") && l.contains("index=")), "{text}");
}
