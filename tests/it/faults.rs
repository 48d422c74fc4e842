//! Fault suite: the node under a flapping stream, an upstream RPC that is down, slow or
//! answering 502, SIGKILL + restart, gossip peers dropping, and a full disk under the p2p store. Each test states the expected behaviour and asserts
//! its recovery time loosely (an upper bound, never a timing race). docs/faults.md lists them.

use flashnode_tests::{
    relay::{Fault, Relay},
    upstream::UpstreamMode,
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
    assert!(
        eventually(Duration::from_secs(5), || async { mode(&node.rpc).await == "flashblocks" })
            .await
    );

    let rpc = node.rpc.clone();
    let flapping = tokio::spawn(async move {
        for _ in 0..5 {
            relay.inject(Fault::Kill(Duration::from_millis(400))).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Each kill must cut a live session: on a loaded machine the reconnect backoff can
            // outlast a 600 ms window, and a kill while the node is between attempts tests
            // nothing.
            eventually(Duration::from_secs(5), || async { mode(&rpc).await == "flashblocks" })
                .await;
        }
        relay
    });
    let mut samples = 0;
    while !flapping.is_finished() {
        // The canonical tip first, then the node's pending: pending may never be older.
        let tip = quantity(&raw_rpc(&devnet.rpc, "eth_blockNumber", json!([])).await["result"])
            .expect("tip");
        let pending = rpc_within(
            Duration::from_secs(5),
            &node.rpc,
            "eth_getBlockByNumber",
            json!(["pending", false]),
        )
        .await;
        let number = quantity(&pending["result"]["number"])
            .unwrap_or_else(|| panic!("a pending block: {pending}"));
        if number < tip {
            // Only allowed in fallback, where `pending` is the node's `latest`, polled from the
            // upstream every 100 ms: at most one block behind, and then it is that canonical
            // block, never preconfirmed state of a block already sealed.
            assert_eq!(
                number + 1,
                tip,
                "pending {number} more than a block behind the canonical tip {tip}"
            );
            let canonical = raw_rpc(
                &devnet.rpc,
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), false]),
            )
            .await;
            assert_eq!(
                pending["result"]["hash"], canonical["result"]["hash"],
                "stale pending {number} behind the tip {tip}"
            );
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _relay = flapping.await.expect("flapping task");
    assert!(samples > 20, "sampled pending throughout the flapping ({samples})");

    let recovered = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async { mode(&node.rpc).await == "flashblocks" })
            .await,
        "back in flashblocks mode: {}",
        status(&node.rpc).await
    );
    // Preconfirming again: pending is the block after latest.
    assert!(
        eventually(Duration::from_secs(3), || async {
            let p = quantity(
                &raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await
                    ["result"]["number"],
            );
            let l = quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]);
            matches!((p, l), (Some(p), Some(l)) if p == l + 1)
        })
        .await,
        "pending is ahead of latest again"
    );
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
    let ProxiedNode { devnet: _devnet, proxy, metrics, node } = ProxiedNode::start("2s").await;

    proxy.set(UpstreamMode::Down);
    assert!(
        readyz_becomes(&metrics, 503, Duration::from_secs(4)).await,
        "not ready while the upstream is down: {:?}",
        http_get(&metrics, "/readyz").await
    );
    let r = rpc_within(Duration::from_secs(2), &node.rpc, "eth_blockNumber", json!([])).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("upstream"), "a clear upstream error: {r}");
    for (method, params) in [
        ("eth_getBalance", json!(["0x00000000000000000000000000000000000000aa", "pending"])),
        ("eth_call", json!([{"to": "0x00000000000000000000000000000000000000aa"}, "pending"])),
        ("eth_getBlockByNumber", json!(["pending", false])),
    ] {
        let r = rpc_within(Duration::from_secs(3), &node.rpc, method, params).await;
        assert!(
            r.get("result").is_some()
                || r["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method}: a result or a clear error: {r}"
        );
    }
    assert!(
        node.proc.output().lines().any(|l| l.contains("polling the upstream head failed")),
        "the failure is logged"
    );

    proxy.set(UpstreamMode::Pass);
    assert!(
        readyz_becomes(&metrics, 200, Duration::from_secs(5)).await,
        "ready again: {:?} {}",
        http_get(&metrics, "/readyz").await,
        status(&node.rpc).await
    );
    assert_eq!(mode(&node.rpc).await, "flashblocks");
    assert!(quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]).is_some());
}

/// Upstream slow (every request held 3 s, the node's upstream timeout is 1 s): proxied
/// methods answer a timeout error within 2.5 s, never hang; the node turns not ready, and
/// recovers within 5 s once the upstream is fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slow_answers_timeouts_not_hangs() {
    let ProxiedNode { devnet: _devnet, proxy, metrics, node } = ProxiedNode::start("2s").await;

    proxy.set(UpstreamMode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let r = rpc_within(Duration::from_millis(2500), &node.rpc, "eth_blockNumber", json!([])).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(msg.contains("upstream") && msg.contains("time"), "a clear timeout error: {r}");
    eprintln!("timeout error after {:?}", started.elapsed());
    let r = rpc_within(
        Duration::from_secs(4),
        &node.rpc,
        "eth_getBalance",
        json!(["0x00000000000000000000000000000000000000bb", "pending"]),
    )
    .await;
    assert!(r.get("result").is_some() || r["error"]["message"].is_string(), "{r}");
    assert!(
        readyz_becomes(&metrics, 503, Duration::from_secs(5)).await,
        "not ready while canonical heads time out"
    );

    proxy.set(UpstreamMode::Pass);
    assert!(
        readyz_becomes(&metrics, 200, Duration::from_secs(5)).await,
        "ready again: {}",
        status(&node.rpc).await
    );
    assert!(quantity(&raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"]).is_some());
}

/// Upstream answering HTTP 502: proxied methods answer a clear `upstream unavailable` error
/// naming the status within 2 s; the node turns not ready and recovers within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_502_answers_clear_errors_then_recovers() {
    let ProxiedNode { devnet: _devnet, proxy, metrics, node } = ProxiedNode::start("2s").await;

    proxy.set(UpstreamMode::BadGateway);
    let r = rpc_within(Duration::from_secs(2), &node.rpc, "eth_blockNumber", json!([])).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("upstream") && msg.contains("502"), "a clear 502 error: {r}");
    assert!(
        readyz_becomes(&metrics, 503, Duration::from_secs(4)).await,
        "not ready while the upstream fails"
    );
    proxy.set(UpstreamMode::Pass);
    assert!(
        readyz_becomes(&metrics, 200, Duration::from_secs(5)).await,
        "ready again: {}",
        status(&node.rpc).await
    );
    assert_eq!(mode(&node.rpc).await, "flashblocks");
}

/// A critical task panics (the overlay, through the debug-build fault hook
/// `FLASHNODE_FAULT_PANIC_TASK=overlay` and SIGUSR1): /readyz answers 503 naming the task and
/// the panic, an error naming the task is logged, in-flight calls are drained, and the process
/// exits non-zero (so an orchestrator restarts it) instead of serving `latest` as if all were
/// well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_task_panic_fails_readiness_and_exits_non_zero() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut node = start_env(
        "dev",
        &[
            "--block-time",
            "2s",
            "--flashblock-interval",
            "400ms",
            "--metrics-addr",
            &metrics,
            "--shutdown-timeout",
            "20s",
        ],
        &[("FLASHNODE_FAULT_PANIC_TASK", "overlay")],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            try_get(&metrics, "/readyz").await.is_some_and(|(code, _)| code == 200)
        })
        .await,
        "ready before the fault"
    );
    // An in-flight call holds the drain open while /readyz is watched: a nonce gap keeps the
    // transaction out of every block, so the call waits for its whole 8 s timeout.
    let in_flight = call_held_in_flight(&node.rpc).await;
    node.proc.signal("USR1");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut report = None;
    while report.is_none() && Instant::now() < deadline {
        match try_get(&metrics, "/readyz").await {
            Some((503, body)) => report = Some(body),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(report.is_some(), "/readyz turned 503:\n{}", node.proc.output());
    let body: Value = serde_json::from_str(report.as_deref().unwrap_or_default()).expect("json");
    assert_eq!(body["failure"]["task"], "overlay", "{body}");
    let reason = body["failure"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("critical task `overlay` panicked: fault injected"),
        "the reason names the task and the panic: {body}"
    );
    let answer = in_flight.await.expect("the in-flight call is answered");
    assert!(answer.get("error").is_some() || answer.get("result").is_some(), "{answer}");
    let status = node.proc.wait_exit(Duration::from_secs(30)).await.expect("the process exits");
    assert!(!status.success(), "a non-zero exit: {status:?}");
    assert!(status.code().is_some(), "an exit, not a signal: {status:?}");
    let log = without_ansi(&node.proc.output());
    assert!(
        log.lines().any(|l| l.contains("ERROR") && l.contains("critical task `overlay` panicked")),
        "an error naming the task is logged:\n{log}"
    );
}

/// `text` without terminal colour sequences (the log writer colours its output).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// SIGKILL of `flashnode node` and a restart on the same ports: it answers again and is back
/// in flashblocks mode within 10 s (it joins mid-block and waits for the next index 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_returns_to_flashblocks() {
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mut node = start_node(&devnet.ws, &devnet.rpc, &[]).await;
    assert!(
        eventually(Duration::from_secs(5), || async { mode(&node.rpc).await == "flashblocks" })
            .await
    );
    let rpc_addr = node.rpc.trim_start_matches("http://").to_string();
    let fanout_addr = node.ws.trim_start_matches("ws://").trim_end_matches("/ws").to_string();

    node.proc.kill();
    assert!(!node.proc.is_running());
    let restarted = Instant::now();
    let args: Vec<String> = [
        "node",
        "--flashblocks-url",
        &devnet.ws,
        "--upstream-rpc",
        &devnet.rpc,
        "--rpc-addr",
        &rpc_addr,
        "--flashblocks-addr",
        &fanout_addr,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut again = Proc::flashnode(&args);
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(&rpc_addr).await.is_ok()
        })
        .await,
        "the restarted node listens:\n{}",
        again.output()
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio::time::timeout(Duration::from_secs(1), status(&node.rpc))
                .await
                .is_ok_and(|s| s["mode"] == "flashblocks")
        })
        .await,
        "back in flashblocks mode after the restart:\n{}",
        again.output()
    );
    eprintln!("flashblocks mode {:?} after the restart", restarted.elapsed());
    let p = quantity(
        &raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await["result"]
            ["number"],
    );
    let tip = quantity(&raw_rpc(&devnet.rpc, "eth_blockNumber", json!([])).await["result"]);
    assert!(p.zip(tip).is_some_and(|(p, t)| p >= t), "pending {p:?} not behind the tip {tip:?}");
    assert!(again.is_running());
}

/// Address of the devnet's dev unsafe-block signer (`DEV_UNSAFE_BLOCK_SIGNER_KEY`).
const DEV_SIGNER: &str = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720";

/// The `p2p: <multiaddr>` line a process prints at start-up.
async fn p2p_addr(p: &Proc) -> String {
    let mut found = None;
    let ok = eventually(Duration::from_secs(10), || {
        found = p.output().lines().find_map(|l| l.strip_prefix("p2p: ").map(str::to_string));
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(ok, "no p2p address printed:\n{}", p.output());
    found.unwrap_or_default()
}

/// The TCP port of a `/ip4/127.0.0.1/tcp/<port>/p2p/<id>` address.
fn tcp_port(addr: &str) -> u16 {
    addr.split('/')
        .skip_while(|p| *p != "tcp")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no tcp port in {addr}"))
}

async fn gossip(rpc: &str) -> Value {
    status(rpc).await["gossip"].clone()
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_default()
}

/// A fresh directory under the temp dir (removed by the caller).
fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flashnode-{what}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The block store holds every block from its lowest to its highest: nothing is missing.
fn contiguous(g: &Value) -> bool {
    n(g, "storedCount") > 0
        && n(g, "storedCount") == n(g, "storedHigh") - n(g, "storedLow") + 1
        && n(g, "altsyncMissing") == 0
}

/// Gossip peers dropping: a node (with a flashblock stream) whose only gossip peers are two
/// static relays loses both (SIGKILL). Within 5 s its peer count and `flashnode_gossip_peers`
/// are 0, and it keeps serving: flashblocks mode, /readyz 200 (readiness follows the stream and
/// the canonical tip, which the upstream poll keeps fresh), `pending` ahead of `latest`, the
/// canonical tip advancing. The relays come back on the same addresses with their keys and
/// stores; the node redials them (backoff 0.5 s doubling, so its next dial is at most about the
/// outage's length away) and reconnects within 2 x outage + 5 s, then catches up: the blocks
/// gossiped while it had no peers are fetched by alt-sync once the relays have them again, and
/// its store is contiguous to the tip within 30 s of their return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_peers_dropping_then_reconnect_and_catch_up() {
    let devnet = start(
        "devnet",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--p2p-addr", "127.0.0.1:0"],
    )
    .await;
    let d = p2p_addr(&devnet.proc).await;
    let dirs = [temp_dir("relay1"), temp_dir("relay2")];
    let relay_args = |dir: &std::path::Path, addr: &str| -> Vec<String> {
        [
            "--p2p-addr",
            addr,
            "--p2p-sequencer-address",
            DEV_SIGNER,
            "--p2p-static",
            &d,
            "--p2p-data-dir",
            &dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let start_relay = |dir: &std::path::Path, addr: &str| {
        let args = relay_args(dir, addr);
        let (ws, rpc) = (devnet.ws.clone(), devnet.rpc.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            start_node(&ws, &rpc, &args).await
        }
    };
    let mut relays = vec![
        start_relay(&dirs[0], "127.0.0.1:0").await,
        start_relay(&dirs[1], "127.0.0.1:0").await,
    ];
    let mut addrs = Vec::new();
    for r in &relays {
        addrs.push(p2p_addr(&r.proc).await);
    }
    let statics = addrs.join(",");
    let (node, metrics) = start_node_with_metrics(
        &devnet.ws,
        &devnet.rpc,
        &[
            "--p2p-addr",
            "127.0.0.1:0",
            "--p2p-sequencer-address",
            DEV_SIGNER,
            "--p2p-static",
            &statics,
        ],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let g = gossip(&node.rpc).await;
            n(&g, "peers") == 2 && n(&g, "accepted") >= 2 && contiguous(&g)
        })
        .await,
        "the node never joined its relays: {}",
        gossip(&node.rpc).await
    );
    assert_eq!(mode(&node.rpc).await, "flashblocks");

    // Both relays die.
    for r in &mut relays {
        r.proc.kill();
    }
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            n(&gossip(&node.rpc).await, "peers") == 0
                && metric(&scrape(&metrics).await, "flashnode_gossip_peers", &[]) == 0.0
        })
        .await,
        "peer count did not drop to 0: {}",
        gossip(&node.rpc).await
    );
    let stored_at_drop = n(&gossip(&node.rpc).await, "storedHigh");
    let tip_at_drop = status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default();
    // Without peers for at least 4 blocks: the node serves from its stream and upstream.
    let mut samples = 0;
    while status(&node.rpc).await["canonicalTip"].as_u64().unwrap_or_default() < tip_at_drop + 4 {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the canonical tip stopped without gossip peers: {}",
            status(&node.rpc).await
        );
        assert_eq!(http_get(&metrics, "/readyz").await.0, 200, "ready without gossip peers");
        assert_eq!(mode(&node.rpc).await, "flashblocks");
        let pending = quantity(
            &rpc_within(
                Duration::from_secs(2),
                &node.rpc,
                "eth_getBlockByNumber",
                json!(["pending", false]),
            )
            .await["result"]["number"],
        );
        assert!(pending.is_some(), "pending served without gossip peers");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(samples >= 5);
    assert_eq!(n(&gossip(&node.rpc).await, "peers"), 0);
    let outage = killed.elapsed();

    // The relays come back on the same ports with the same keys and stores.
    let returned = Instant::now();
    let mut back = Vec::new();
    for (dir, addr) in dirs.iter().zip(&addrs) {
        back.push(start_relay(dir, &format!("127.0.0.1:{}", tcp_port(addr))).await);
    }
    for (r, addr) in back.iter().zip(&addrs) {
        assert_eq!(&p2p_addr(&r.proc).await, addr, "the relay came back with its identity");
    }
    let reconnect_bound = outage * 2 + Duration::from_secs(5);
    assert!(
        eventually(reconnect_bound, || async { n(&gossip(&node.rpc).await, "peers") == 2 }).await,
        "not reconnected within {reconnect_bound:?}: {}",
        gossip(&node.rpc).await
    );
    let reconnected = returned.elapsed();
    assert!(
        eventually(Duration::from_secs(30), || async {
            let g = gossip(&node.rpc).await;
            let tip = quantity(&raw_rpc(&devnet.rpc, "eth_blockNumber", json!([])).await["result"])
                .unwrap_or_default();
            contiguous(&g)
                && n(&g, "storedLow") <= stored_at_drop
                && n(&g, "storedHigh") + 2 >= tip
                && n(&g, "altsyncFilled") >= 3
        })
        .await,
        "the node did not catch up: {}\n{}",
        gossip(&node.rpc).await,
        node.proc.output()
    );
    eprintln!("outage {outage:?}; reconnected {reconnected:?} and caught up {:?} after the relays returned", returned.elapsed());
    assert_eq!(metric(&scrape(&metrics).await, "flashnode_gossip_peers", &[]), 2.0);
    assert!(!node.proc.output().contains("panicked"));
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Disk full under the durable p2p store: the running node's `RLIMIT_FSIZE` is lowered below
/// its store file (prlimit; SIGXFSZ ignored), so every store write fails with EFBIG like on a
/// full disk. The node does not panic or stop; block gossip keeps being accepted and
/// preconfirmations served (flashblocks mode, /readyz 200, `pending` ahead of `latest`); each
/// failed write is counted in `flashnode_gossip_store_errors_total{op="write"}` but logged at
/// most once per 10 s. When space comes back (the limit is lifted) the store reopens itself in
/// place, without a restart (`flashnode_gossip_store_reopens_total{outcome="ok"}`), and the
/// blocks missed meanwhile are fetched by alt-sync within 25 s. After a kill -9 and restart the
/// store opens intact, and the node serves alt-sync again: a peer that was down meanwhile fills
/// its own gap from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_disk_full_keeps_gossip_and_preconfirmations_then_recovers() {
    let devnet = start(
        "devnet",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--p2p-addr", "127.0.0.1:0"],
    )
    .await;
    let d = p2p_addr(&devnet.proc).await;
    let (dir, peer_dir) = (temp_dir("store"), temp_dir("store-peer"));
    let (rpc_port, fanout_port, p2p_port) = (free_port(), free_port(), free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "node",
        "--flashblocks-url",
        &devnet.ws,
        "--upstream-rpc",
        &devnet.rpc,
        "--rpc-addr",
        &format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr",
        &format!("127.0.0.1:{fanout_port}"),
        "--p2p-addr",
        &format!("127.0.0.1:{p2p_port}"),
        "--p2p-sequencer-address",
        DEV_SIGNER,
        "--p2p-static",
        &d,
        "--p2p-data-dir",
        &dir.display().to_string(),
        "--metrics-addr",
        &metrics,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    let rpc_addr = format!("127.0.0.1:{rpc_port}");
    let listening = || async { tokio::net::TcpStream::connect(&rpc_addr).await.is_ok() };
    let mut node = Proc::flashnode_fsize_faults(&args);
    assert!(
        eventually(Duration::from_secs(10), listening).await,
        "the node does not listen:\n{}",
        node.output()
    );
    let a = p2p_addr(&node).await;
    // A peer that follows only this node, with its own store.
    let peer_args: Vec<String> = [
        "--p2p-addr",
        "127.0.0.1:0",
        "--p2p-sequencer-address",
        DEV_SIGNER,
        "--p2p-static",
        &a,
        "--p2p-data-dir",
        &peer_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let peer_refs: Vec<&str> = peer_args.iter().map(String::as_str).collect();
    let mut peer = start_node(&devnet.ws, &devnet.rpc, &peer_refs).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let (g, p) = (gossip(&rpc).await, gossip(&peer.rpc).await);
            n(&g, "accepted") >= 2
                && n(&g, "storedCount") >= 2
                && n(&p, "storedCount") >= 2
                && mode(&rpc).await == "flashblocks"
        })
        .await,
        "not following: {} / {}\n{}",
        gossip(&rpc).await,
        gossip(&peer.rpc).await,
        node.output()
    );
    // The peer goes down for the whole fault: it will need this node's store to fill its gap.
    peer.proc.kill();

    // Disk full: no file of the node may grow past 4 KiB, and the store file is far larger.
    let size = std::fs::metadata(dir.join("p2p.redb")).map(|m| m.len()).unwrap_or_default();
    assert!(size > 4096, "store file {size} bytes");
    let stored_before = n(&gossip(&rpc).await, "storedHigh");
    node.limit_file_size(4096);
    let full = Instant::now();
    let accepted_before = n(&gossip(&rpc).await, "accepted");
    assert!(
        eventually(Duration::from_secs(10), || async {
            metric(
                &scrape(&metrics).await,
                "flashnode_gossip_store_errors_total",
                &[("op", "write")],
            ) >= 5.0
                && n(&gossip(&rpc).await, "accepted") >= accepted_before + 5
        })
        .await,
        "store writes should fail while gossip goes on: {}\n{}",
        gossip(&rpc).await,
        scrape(&metrics).await
    );
    // Preconfirmations are served as before.
    assert_eq!(http_get(&metrics, "/readyz").await.0, 200);
    assert_eq!(mode(&rpc).await, "flashblocks");
    assert!(
        eventually(Duration::from_secs(3), || async {
            let p = quantity(
                &raw_rpc(&rpc, "eth_getBlockByNumber", json!(["pending", false])).await["result"]
                    ["number"],
            );
            let l = quantity(&raw_rpc(&rpc, "eth_blockNumber", json!([])).await["result"]);
            matches!((p, l), (Some(p), Some(l)) if p == l + 1)
        })
        .await,
        "pending ahead of latest while the disk is full"
    );
    assert!(node.is_running(), "the node stopped:\n{}", node.output());
    let failures =
        metric(&scrape(&metrics).await, "flashnode_gossip_store_errors_total", &[("op", "write")]);
    let out = node.output();
    assert!(!out.contains("panicked"), "{out}");
    let logged = out
        .lines()
        .filter(|l| l.contains("p2p store operation failed") && l.contains("write"))
        .count();
    let allowed = 1 + full.elapsed().as_secs() as usize / 10;
    assert!(
        logged >= 1 && logged <= allowed,
        "{logged} log lines for {failures} failed writes in {:?}:\n{out}",
        full.elapsed()
    );
    assert!(failures as usize > logged, "failures are counted, not each logged");

    // Space again, without a restart: the store reopens itself in place (at most every 5 s),
    // stores new blocks again and alt-sync fills what was missed while the disk was full.
    node.lift_file_size_limit();
    let lifted = Instant::now();
    assert!(
        eventually(Duration::from_secs(25), || async {
            let g = tokio::time::timeout(Duration::from_secs(1), gossip(&rpc))
                .await
                .unwrap_or_default();
            contiguous(&g)
                && n(&g, "storedLow") <= stored_before
                && n(&g, "storedHigh") > stored_before + 5
        })
        .await,
        "the store did not recover in place: {}\n{}\n{}",
        gossip(&rpc).await,
        scrape(&metrics).await,
        node.output()
    );
    eprintln!("store contiguous again {:?} after space came back", lifted.elapsed());
    assert!(
        metric(
            &scrape(&metrics).await,
            "flashnode_gossip_store_reopens_total",
            &[("outcome", "ok")]
        ) >= 1.0
    );
    assert!(node.is_running(), "the node stopped:\n{}", node.output());

    // kill -9 and restart: the store opens intact, with everything committed.
    let high = n(&gossip(&rpc).await, "storedHigh");
    node.kill();
    let node = Proc::flashnode(&args);
    assert!(
        eventually(Duration::from_secs(10), listening).await,
        "the restarted node does not listen:\n{}",
        node.output()
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            let g = tokio::time::timeout(Duration::from_secs(1), gossip(&rpc))
                .await
                .unwrap_or_default();
            contiguous(&g) && n(&g, "storedLow") <= stored_before && n(&g, "storedHigh") >= high
        })
        .await,
        "the store did not reopen intact: {}\n{}",
        gossip(&rpc).await,
        node.output()
    );
    assert!(!node.output().contains("p2p store operation failed"), "{}", node.output());
    // ...and it serves alt-sync: the peer, back, fills the blocks it missed from it.
    let peer = start_node(&devnet.ws, &devnet.rpc, &peer_refs).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let p = gossip(&peer.rpc).await;
            contiguous(&p) && n(&p, "altsyncFilled") >= 5
        })
        .await,
        "the peer did not fill its gap from the node: {}\n{}",
        gossip(&peer.rpc).await,
        peer.proc.output()
    );
    assert!(
        metric(&scrape(&metrics).await, "flashnode_altsync_served_total", &[("outcome", "ok")])
            >= 5.0
    );
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(peer_dir);
}
