//! The status page at `/` of the metrics address, rendered by a real browser (Debian's
//! Chromium, headless): the page's script fetches `/api/status` and lists the flashblocks as
//! they arrive. The test keeps a screenshot (`target/status-page.png`; set
//! `FLASHNODE_SCREENSHOT_DIR` to keep it elsewhere, e.g. docs/img).

use flashnode_tests::*;
use std::{path::PathBuf, process::Command, time::Duration};

fn chromium() -> PathBuf {
    std::env::var_os("FLASHNODE_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .expect("Chromium is installed by scripts/install-browser.sh (scripts/test.sh runs it)")
}

/// Runs headless Chromium on `url` with `extra` flags (a fresh profile, no background traffic:
/// this machine has no network beyond loopback).
fn browse(url: &str, extra: &[String]) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!(
        "flashnode-chromium-{}-{}",
        std::process::id(),
        free_port()
    ));
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        // Lets the page's polling run a few rounds before the DOM or the picture is taken.
        "--virtual-time-budget=3000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd.args(extra);
    cmd.arg(url);
    let out = cmd.output().expect("chromium runs");
    let _ = std::fs::remove_dir_all(profile);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_flashblocks_live_in_a_browser() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start(
        "dev",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--metrics-addr", &metrics],
    )
    .await;
    // Steady traffic while the browser looks, so rows carry transactions.
    let rpc = node.rpc.clone();
    let traffic = tokio::spawn(async move {
        let to = address_of(DEV_KEYS[9]);
        for nonce in 0..200u64 {
            for key in DEV_KEYS.iter().take(3) {
                let raw = sign_1559(
                    key,
                    901,
                    nonce,
                    alloy_primitives::TxKind::Call(to),
                    alloy_primitives::U256::from(1),
                    Default::default(),
                    21_000,
                    10_000_000_000,
                );
                raw_rpc(&rpc, "eth_sendRawTransaction", serde_json::json!([raw])).await;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let url = format!("http://{metrics}/");

    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || browse(&url, &["--dump-dom".to_string()])
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let rows = dom.matches("data-block=\"").count();
    assert!(rows >= 3, "the page lists flashblocks ({rows} rows):\n{dom}");
    assert!(dom.contains(">flashblocks<"), "mode shown: {dom}");
    assert!(dom.contains(">ready<"), "health shown: {dom}");
    assert!(dom.contains(">connected<"), "stream state shown: {dom}");

    let dir = std::env::var_os("FLASHNODE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            browse(
                &url,
                &[format!("--screenshot={}", shot.display()), "--window-size=1280,760".to_string()],
            )
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(png.len() > 10_000, "a real picture, not a blank page ({} bytes)", png.len());
    traffic.abort();
    drop(node);
}
