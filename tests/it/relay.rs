//! `flashnode relay` in trees of real processes on loopback: node (dev) → relay → relay →
//! subscribers. Order without gaps at every level, gap-free resume of the leaf across a kill -9
//! and restart of the middle relay, a slow subscriber at the leaf not slowing the others, and
//! API-key limits at each level.

use flashnode_tests::*;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Ring sizes for the tree tests: several seconds of 100 ms flashblocks, so a relay that is
/// down for a moment finds its point still held upstream on a loaded machine.
const RING: &str = "256";

/// A running `flashnode relay`.
struct Relay {
    proc: Proc,
    args: Vec<String>,
    /// Its fan-out, `ws://127.0.0.1:<port>/ws`.
    ws: String,
    /// Its fan-out's host:port.
    addr: String,
    /// Its operator endpoint's host:port.
    metrics: String,
}

impl Relay {
    /// Starts a relay of `upstream` on free ports with `extra` flags; returns once its fan-out
    /// answers `/healthz`.
    async fn start(upstream: &str, extra: &[&str]) -> Relay {
        let (port, metrics) = (free_port(), free_port());
        let mut args: Vec<String> = vec![
            "relay".into(),
            "--flashblocks-url".into(),
            upstream.into(),
            "--flashblocks-addr".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics}"),
            "--ws-ring-frames".into(),
            RING.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut relay = Relay {
            proc: Proc::flashnode(&args),
            args,
            ws: format!("ws://127.0.0.1:{port}/ws"),
            addr: format!("127.0.0.1:{port}"),
            metrics: format!("127.0.0.1:{metrics}"),
        };
        relay.wait_up().await;
        relay
    }

    async fn wait_up(&mut self) {
        let addr = self.addr.clone();
        let up = eventually(Duration::from_secs(20), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.is_ok() }
        })
        .await;
        assert!(up, "the relay's fan-out never listened:\n{}", self.proc.output());
        assert_eq!(http_get(&self.addr, "/healthz").await.0, 200);
    }

    /// kill -9, then the same command again (same ports).
    async fn kill_and_restart(&mut self, down_for: Duration) {
        self.proc.kill();
        tokio::time::sleep(down_for).await;
        self.proc = Proc::flashnode(&self.args);
        self.wait_up().await;
    }

    /// Its `/ws/{key}` (or any path) URL.
    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

fn position(fb: &Received) -> (u64, u64) {
    let block = fb.json["metadata"]["block_number"].as_u64().expect("metadata.block_number");
    (block, fb.json["index"].as_u64().expect("index"))
}

fn assert_contiguous(name: &str, seq: &[(u64, u64)]) {
    for w in seq.windows(2) {
        assert!(follows(w[0], w[1]), "{name}: {:?} then {:?} (a gap or a duplicate)", w[0], w[1]);
    }
}

/// Everything `rx` receives for `window`.
async fn gather(rx: &mut mpsc::Receiver<Received>, window: Duration) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    while let Ok(Some(fb)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(fb);
    }
    out
}

/// Node → relay → relay: every level delivers the node's flashblocks in order with no gap and
/// no duplicate, the same JSON as the node's own fan-out, Text or brotli as each subscriber asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_tree_delivers_in_order_without_gaps() {
    let node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mid = Relay::start(&node.ws, &[]).await;
    let leaf = Relay::start(&mid.ws, &[]).await;
    let mut direct = collect_flashblocks(&node.ws).await;
    let mut at_mid = collect_flashblocks(&mid.ws).await;
    let mut at_leaf = Vec::new();
    for _ in 0..4 {
        at_leaf.push(collect_flashblocks(&leaf.ws).await);
    }
    let mut brotli = collect_flashblocks(&leaf.url("/ws?compress=brotli")).await;
    let window = Duration::from_secs(4);
    let (direct, at_mid, brotli, leaves) = tokio::join!(
        gather(&mut direct, window + Duration::from_millis(500)),
        gather(&mut at_mid, window),
        gather(&mut brotli, window),
        futures::future::join_all(at_leaf.iter_mut().map(|rx| gather(rx, window)))
    );
    let by_position: std::collections::HashMap<(u64, u64), &serde_json::Value> =
        direct.iter().map(|fb| (position(fb), &fb.json)).collect();
    assert!(brotli.iter().all(|fb| fb.binary), "brotli asked, brotli sent");
    for (name, seq) in std::iter::once(("mid", &at_mid))
        .chain(std::iter::once(("brotli leaf", &brotli)))
        .chain(leaves.iter().map(|l| ("leaf", l)))
    {
        let positions: Vec<(u64, u64)> = seq.iter().map(position).collect();
        assert!(positions.len() >= 20, "{name}: {} flashblocks in {window:?}", positions.len());
        assert_contiguous(name, &positions);
        for fb in seq.iter() {
            if let Some(json) = by_position.get(&position(fb)) {
                assert_eq!(&fb.json, *json, "{name}: relayed as received");
            }
        }
    }
    // The relays' own view: connected upstream, resumable, frames relayed.
    let (code, body) = http_get(&leaf.metrics, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["upstream_resumable"], true, "{ready}");
    assert!(ready["frames_relayed"].as_u64().unwrap() >= 20, "{ready}");
    let page = scrape(&leaf.metrics).await;
    assert!(
        metric(&page, "flashnode_relay_upstream_frames_total", &[("outcome", "relayed")]) >= 20.0
    );
}

/// kill -9 of the middle relay and a restart on the same port: the leaf relay resumes from the
/// restarted relay's ring (refilled from the node's), so its subscriber sees no gap and no
/// duplicate across the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_middle_relay_costs_the_leaf_no_frame() {
    let node = start(
        "dev",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--ws-ring-frames", RING],
    )
    .await;
    let mut mid = Relay::start(&node.ws, &[]).await;
    let leaf = Relay::start(&mid.ws, &[]).await;
    let mut sub = collect_flashblocks(&leaf.ws).await;
    let before: Vec<(u64, u64)> =
        gather(&mut sub, Duration::from_secs(2)).await.iter().map(position).collect();
    assert!(before.len() >= 10, "frames before the kill: {}", before.len());
    let killed_at = Instant::now();
    mid.kill_and_restart(Duration::from_millis(500)).await;
    // Everything the subscriber gets from here on, until well after the restart.
    let mut after = Vec::new();
    let mut caught_up = None;
    let deadline = Instant::now() + Duration::from_secs(6);
    while let Ok(Some(fb)) =
        tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), sub.recv()).await
    {
        if after.is_empty() {
            caught_up = Some(killed_at.elapsed());
        }
        after.push(position(&fb));
    }
    let all: Vec<(u64, u64)> = before.iter().chain(after.iter()).copied().collect();
    assert!(after.len() >= 20, "the leaf kept receiving after the restart: {}", after.len());
    assert_contiguous("leaf subscriber across the kill", &all);
    let page = scrape(&leaf.metrics).await;
    assert!(
        metric(&page, "flashnode_relay_upstream_resumes_total", &[]) >= 1.0,
        "the leaf resumed from the restarted relay"
    );
    eprintln!("kill -9 of the middle relay: the leaf's subscriber had its next frame after {caught_up:?} (500 ms down)");
}

/// A subscriber of the leaf relay that never reads is disconnected as lagging, while the
/// others get every flashblock in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_at_the_leaf_does_not_slow_the_others() {
    let node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mid = Relay::start(&node.ws, &[]).await;
    let leaf = Relay::start(&mid.ws, &["--ws-buffer", "4", "--ws-per-ip-limit", "200"]).await;
    let addr: std::net::SocketAddr = leaf.addr.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(leaf.ws.as_str(), tcp).await.unwrap();
    let mut fast = Vec::new();
    for _ in 0..20 {
        fast.push(collect_flashblocks(&leaf.ws).await);
    }
    // Big flashblocks (~60 KB of calldata each) fill the slow socket quickly.
    let load = load_big_flashblocks(node.rpc.clone());
    let got =
        futures::future::join_all(fast.iter_mut().map(|rx| gather(rx, Duration::from_secs(5))))
            .await;
    load.abort();
    let (_, mut slow_read) = slow.split();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = slow_read.next().await {
            if matches!(m, Ok(Message::Close(_)) | Err(_)) {
                return true;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the slow subscriber was disconnected");
    let page = scrape(&leaf.metrics).await;
    assert!(
        metric(&page, "flashnode_fanout_disconnects_total", &[("reason", "lagged")])
            + metric(&page, "flashnode_fanout_disconnects_total", &[("reason", "slow")])
            >= 1.0,
        "counted as lagging or slow"
    );
    let seqs: Vec<Vec<(u64, u64)>> = got.iter().map(|s| s.iter().map(position).collect()).collect();
    let start = seqs.iter().filter_map(|s| s.first().copied()).max().expect("frames arrived");
    let reference: Vec<(u64, u64)> = seqs[0].iter().copied().skip_while(|p| *p != start).collect();
    assert!(reference.len() >= 20, "enough flashblocks: {}", reference.len());
    for (i, seq) in seqs.iter().enumerate() {
        assert_contiguous(&format!("fast subscriber {i}"), seq);
        let mine: Vec<(u64, u64)> = seq.iter().copied().skip_while(|p| *p != start).collect();
        let n = mine.len().min(reference.len()).saturating_sub(2);
        assert!(n >= 18, "fast subscriber {i} kept receiving ({n})");
        assert_eq!(mine[..n], reference[..n], "fast subscriber {i} got every flashblock");
    }
}

/// Each level has its own API keys (Base's `<app>:<key>` form accepted) and per-key limits: a
/// relay holds its upstream key's share, a key past its share gets 429, a closed public path
/// 401, and frames still flow to the leaf's subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_limits_hold_at_each_level() {
    let node = start(
        "dev",
        &[
            "--block-time",
            "1s",
            "--flashblock-interval",
            "100ms",
            "--ws-api-keys",
            "nodekey",
            "--ws-close-public",
            "--ws-per-key-limit",
            "1",
        ],
    )
    .await;
    let node_base = node.ws.trim_end_matches("/ws").to_string();
    let mid = Relay::start(
        &format!("{node_base}/ws/nodekey"),
        &["--api-keys", "leafapp:midkey", "--ws-close-public", "--ws-per-key-limit", "2"],
    )
    .await;
    let leaf = Relay::start(
        &mid.url("/ws/midkey"),
        &["--ws-api-keys", "leafkey", "--ws-per-key-limit", "1"],
    )
    .await;
    // The leaf's subscribers: one on its key, any number on its public path.
    let mut keyed = collect_flashblocks(&leaf.url("/ws/leafkey")).await;
    let mut public = collect_flashblocks(&leaf.ws).await;
    next_flashblock(&mut keyed, Duration::from_secs(20)).await;
    next_flashblock(&mut public, Duration::from_secs(5)).await;
    // The node: the middle relay holds nodekey's only slot.
    assert_eq!(handshake_status(&format!("{node_base}/ws/nodekey")).await, 429);
    assert_eq!(handshake_status(&node.ws).await, 401, "public path closed");
    // The middle relay: the leaf holds one of midkey's two; one more fits, then 429.
    assert_eq!(handshake_status(&mid.ws).await, 401, "public path closed");
    let held = tokio_tungstenite::connect_async(mid.url("/ws/midkey"))
        .await
        .expect("a second midkey subscriber");
    assert_eq!(handshake_status(&mid.url("/ws/midkey")).await, 429);
    assert_eq!(handshake_status(&mid.url("/ws/nope")).await, 401);
    // The leaf: leafkey is taken.
    assert_eq!(handshake_status(&leaf.url("/ws/leafkey")).await, 429);
    drop(held);
    // A slot comes back when its subscriber leaves.
    assert!(
        eventually(Duration::from_secs(5), || async {
            handshake_status(&mid.url("/ws/midkey")).await == 101
        })
        .await
    );
    let page = scrape(&mid.metrics).await;
    assert!(
        metric(&page, "flashnode_fanout_rejected_total", &[("reason", "per_key_limit")]) >= 1.0
    );
    // Frames kept flowing through all three levels.
    next_flashblock(&mut keyed, Duration::from_secs(5)).await;
}
