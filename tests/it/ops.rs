//! Operator surface: /healthz, /readyz (200 / 206 / 503), /metrics families, and the
//! `flashnode status` command.

use alloy_primitives::{Bytes, TxKind, U256};
use flashnode_tests::{
    relay::{Fault, Relay},
    *,
};
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
    assert!(readyz_becomes(&metrics, 200, Duration::from_secs(5)).await);
    relay.inject(Fault::Kill(Duration::from_secs(3))).await;
    assert!(
        readyz_becomes(&metrics, 206, Duration::from_secs(3)).await,
        "degraded while the stream is down: {:?}",
        http_get(&metrics, "/readyz").await
    );
    assert!(
        readyz_becomes(&metrics, 200, Duration::from_secs(8)).await,
        "ready again after recovery"
    );
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
    let (_node, metrics) =
        start_node_with_metrics(&source.url, &anvil.url, &["--canonical-stale-after", "1s"]).await;
    assert!(readyz_becomes(&metrics, 503, Duration::from_secs(5)).await);
    let (_, body) = http_get(&metrics, "/readyz").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["health"], "notready");
    assert_eq!(v["mode"], "fallback");
}

/// A node started before its execution client (a sidecar starting in the same pod) waits for
/// it with backoff, saying why, and serves once it is up, instead of exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_waits_for_an_upstream_that_starts_later() {
    let (up_rpc, up_ws, rpc, fanout) = (free_port(), free_port(), free_port(), free_port());
    let args: Vec<String> = [
        "node",
        "--upstream-rpc",
        &format!("http://127.0.0.1:{up_rpc}"),
        "--flashblocks-url",
        &format!("ws://127.0.0.1:{up_ws}/ws"),
        "--rpc-addr",
        &format!("127.0.0.1:{rpc}"),
        "--flashblocks-addr",
        &format!("127.0.0.1:{fanout}"),
    ]
    .map(String::from)
    .to_vec();
    let mut node = Proc::flashnode(&args);
    let waiting = eventually(Duration::from_secs(10), || {
        let out = node.output();
        async move {
            out.contains("upstream execution client not reachable")
                && out.contains("Connection refused")
        }
    })
    .await;
    assert!(waiting, "no retry line naming the cause:\n{}", node.output());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(node.is_running(), "the node exited instead of waiting:\n{}", node.output());
    let devnet_args: Vec<String> = [
        "devnet",
        "--rpc-addr",
        &format!("127.0.0.1:{up_rpc}"),
        "--flashblocks-addr",
        &format!("127.0.0.1:{up_ws}"),
    ]
    .map(String::from)
    .to_vec();
    let _devnet = Proc::flashnode(&devnet_args);
    let url = format!("http://127.0.0.1:{rpc}");
    let serving = eventually(Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", rpc)).await.is_ok()
            && status(&url).await["mode"] == "flashblocks"
    })
    .await;
    assert!(serving, "the node did not serve once its upstream came up:\n{}", node.output());
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
    assert!(
        lines
            .iter()
            .all(|l| l.contains("mode=flashblocks") && l.contains("tip=") && l.contains("index=")),
        "{text}"
    );
}

/// Every preset loads (through the CLI), the config file / environment / preset layers apply in
/// order, and a bad config value fails fast with one line naming the field.
#[test]
fn presets_and_config_layers() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(flashnode_bin());
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("flashnode runs")
    };
    for (chain, url) in [
        ("base", Some("wss://mainnet.flashblocks.base.org/ws")),
        ("base-sepolia", Some("wss://sepolia.flashblocks.base.org/ws")),
        ("optimism", None),
        ("op-sepolia", None),
        ("unichain", None),
        ("unichain-sepolia", Some("wss://sepolia-flashblocks.unichain.org/ws")),
        ("devnet", None),
    ] {
        let out = run(
            &["node", "--chain", chain, "--upstream-rpc", "http://127.0.0.1:1", "--print-config"],
            &[],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{chain}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("chain = \"{chain}\"")), "{text}");
        match url {
            Some(url) => assert!(
                text.contains(&format!("flashblocks-url = \"{url}\"  # preset {chain}")),
                "{text}"
            ),
            None => assert!(text.contains("# flashblocks-url is unset"), "{text}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("flashnode-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "chain = \"base\"\nupstream-rpc = \"http://10.1.2.3:8545\"\nws-per-ip-limit = 3\nws-global-limit = 500\nflashblocks-url = \"ws://10.9.9.9/ws\"\n").unwrap();
    let out = run(
        &["node", "--config", good.to_str().unwrap(), "--ws-global-limit", "900", "--print-config"],
        &[("FLASHNODE_WS_PER_IP_LIMIT", "5")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ws-per-ip-limit = 5  # environment"), "env beats file: {text}");
    assert!(
        text.contains("ws-global-limit = 900  # command line"),
        "command line beats file: {text}"
    );
    assert!(
        text.contains("flashblocks-url = \"ws://10.9.9.9/ws\"  # "),
        "file beats preset: {text}"
    );
    assert!(text.contains("upstream-rpc = \"http://10.1.2.3:8545\"  # "), "{text}");
    // API keys are secrets: counted, never printed.
    let out = run(
        &[
            "node",
            "--config",
            good.to_str().unwrap(),
            "--ws-api-keys",
            "s3cret-one,s3cret-two",
            "--print-config",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("# ws-api-keys: 2 keys, not printed  # command line")
            && !text.contains("s3cret"),
        "{text}"
    );

    for (body, field) in [
        ("upstream-rpc = \"http://x:1\"\nws-per-ip-limit = \"many\"\n", "`ws-per-ip-limit`"),
        ("upstream-rpc = \"http://x:1\"\nrpc-addr = \"not an address\"\n", "`rpc-addr`"),
        (
            "upstream-rpc = \"http://x:1\"\npending-stale-after = \"2 fortnights\"\n",
            "`pending-stale-after`",
        ),
        ("upstream-rpc = \"http://x:1\"\nws-compression = \"yes\"\n", "`ws-compression`"),
        (
            "upstream-rpc = \"http://x:1\"\nrpc-adress = \"127.0.0.1:1\"\n",
            "`rpc-adress`: unknown key",
        ),
        ("chain = \"mars\"\n", "`chain`"),
        ("upstream-rpc = \"http://x:1\"\nws-writers = 1000\n", "`ws-writers`"),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, body).unwrap();
        let out = run(&["node", "--config", bad.to_str().unwrap()], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(field) && err.contains("bad.toml"), "{field} named in: {err}");
    }
    let out = run(&["node", "--config", dir.join("missing.toml").to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM while transactions wait in `eth_sendRawTransactionSync`: every in-flight call gets
/// its receipt, /readyz turns 503 during the drain, new connections are refused after it, and
/// the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut node = start(
        "dev",
        &["--block-time", "2s", "--flashblock-interval", "400ms", "--metrics-addr", &metrics],
    )
    .await;
    let chain_id = 901;
    let to = address_of(DEV_KEYS[9]);
    let mut calls = Vec::new();
    for (i, key) in DEV_KEYS.iter().take(6).enumerate() {
        let raw = sign_1559(
            key,
            chain_id,
            0,
            TxKind::Call(to),
            U256::from(1000 + i),
            Bytes::new(),
            21_000,
            10_000_000_000,
        );
        let rpc = node.rpc.clone();
        calls.push(tokio::spawn(async move {
            raw_rpc(&rpc, "eth_sendRawTransactionSync", serde_json::json!([raw, 5000])).await
        }));
    }
    // The calls are now waiting for their flashblock (up to 400 ms away).
    tokio::time::sleep(Duration::from_millis(60)).await;
    node.proc.terminate();
    let draining = readyz_becomes(&metrics, 503, Duration::from_secs(2)).await;
    for call in calls {
        let answer = call.await.expect("task");
        assert_eq!(
            answer["result"]["status"], "0x1",
            "in-flight call answered with its receipt: {answer}"
        );
    }
    let status = node
        .proc
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits within the drain deadline");
    assert!(status.success(), "clean exit: {status:?}\n{}", node.proc.output());
    assert!(draining || node.proc.output().contains("draining"), "readyz reported the drain");
    assert!(node.proc.output().contains("RPC drained"), "{}", node.proc.output());
    let refused =
        tokio::net::TcpStream::connect(node.rpc.trim_start_matches("http://")).await.is_err();
    assert!(refused, "no new connections after shutdown");
}

/// SIGTERM while a long simulation runs on a blocking thread (1,000 calls of an endless loop,
/// each burning the 50 M gas cap: tens of seconds of EVM): the process still exits within
/// `--shutdown-timeout`, with code 0. Dropping the runtime used to wait for the execution
/// (24 s after a 10 s deadline). The bound is loose (a margin for a loaded machine), far below
/// the simulation's own length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_shutdown_timeout_during_a_long_simulation() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_secs(6);
    let mut node = start(
        "dev",
        &[
            "--block-time",
            "2s",
            "--flashblock-interval",
            "400ms",
            "--shutdown-timeout",
            "2s",
            // The request's budget (gas summed over its calls, wall clock) must outlast the
            // shutdown, or the simulation ends before SIGTERM and proves nothing.
            "--rpc-gas-cap",
            "50000000000",
            "--rpc-evm-timeout",
            "300s",
        ],
    )
    .await;
    let looper = "0x00000000000000000000000000000000000c0de1";
    let from = address_of(DEV_KEYS[0]);
    let calls: Vec<_> =
        (0..1000).map(|_| serde_json::json!({"from": from, "to": looper})).collect();
    let payload = serde_json::json!([{
        "blockStateCalls": [{
            // Room for every call's full gas cap in the one simulated block.
            "blockOverrides": {"gasLimit": format!("0x{:x}", 1000u64 * 50_000_000)},
            // JUMPDEST; PUSH1 0; JUMP: loops until the gas runs out.
            "stateOverrides": {looper: {"code": "0x5b600056"}},
            "calls": calls,
        }],
    }, "pending"]);
    let rpc = node.rpc.clone();
    let simulation = tokio::spawn(async move { raw_rpc(&rpc, "eth_simulateV1", payload).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!simulation.is_finished(), "the simulation still runs when SIGTERM arrives");
    let sent = std::time::Instant::now();
    node.proc.terminate();
    let status = node
        .proc
        .wait_exit(TIMEOUT + MARGIN + Duration::from_secs(30))
        .await
        .expect("the process exits");
    let took = sent.elapsed();
    assert!(status.success(), "exit code 0 after SIGTERM: {status:?}\n{}", node.proc.output());
    assert!(
        took <= TIMEOUT + MARGIN,
        "exited {took:?} after SIGTERM with --shutdown-timeout {TIMEOUT:?}\n{}",
        node.proc.output()
    );
    assert!(
        node.proc.output().contains("RPC drain deadline passed"),
        "the simulation outlived the drain: {}",
        node.proc.output()
    );
    simulation.abort();
}

/// /metrics parses as Prometheus text and exposes the operator families: stream, overlay, RPC
/// per method (count and latency) and websocket fan-out (the upstream cache families are checked
/// in `readiness_follows_the_stream`, where a JSON-RPC upstream is in use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_a_prometheus_parser() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start(
        "dev",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--metrics-addr", &metrics],
    )
    .await;
    let who = format!("{:?}", address_of(DEV_KEYS[0]));
    for _ in 0..3 {
        raw_rpc(&node.rpc, "eth_getBalance", serde_json::json!([who, "pending"])).await;
        raw_rpc(&node.rpc, "eth_blockNumber", serde_json::json!([])).await;
    }
    raw_rpc(&node.rpc, "eth_getBalance", serde_json::json!(["not an address", "pending"])).await;
    raw_rpc(&node.rpc, "no_suchMethod", serde_json::json!([])).await;
    let _fanout = collect_flashblocks(&node.ws).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, page) = http_get(&metrics, "/metrics").await;
    assert_eq!(code, 200);
    let lines = page.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let sample = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    };
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        prometheus_parse::Value::Histogram(ref h) => h.last().map(|b| b.count).unwrap_or(0.0),
        prometheus_parse::Value::Summary(_) => 1.0,
    };
    let ok =
        sample("flashnode_rpc_requests_total", &[("method", "eth_getBalance"), ("outcome", "ok")])
            .expect("per-method count");
    assert!(value(ok) >= 3.0);
    assert!(sample(
        "flashnode_rpc_requests_total",
        &[("method", "eth_getBalance"), ("outcome", "error")]
    )
    .is_some());
    assert!(
        sample("flashnode_rpc_requests_total", &[("method", "unknown")]).is_some(),
        "unknown methods share one label"
    );
    assert!(
        sample("flashnode_rpc_request_duration_seconds", &[("method", "eth_blockNumber")])
            .is_some(),
        "per-method latency histogram"
    );
    for family in [
        "flashnode_stream_frames_total",
        "flashnode_stream_bytes_total",
        "flashnode_stream_connected",
        "flashnode_stream_lag_seconds",
        "flashnode_overlay_flashblocks_total",
        "flashnode_overlay_apply_seconds",
        "flashnode_fanout_clients",
        "flashnode_fanout_flashblocks_total",
    ] {
        assert!(scrape.samples.iter().any(|s| s.metric == family), "{family} exported");
    }
    assert!(scrape.docs.contains_key("flashnode_rpc_requests_total"), "families carry HELP text");
}

/// #27.2: an OP Stack chain without a preset is never run on a guessed schedule: against an
/// upstream of chain 777 the node refuses to start, naming `--chain-config`; given the chain's
/// superchain-registry config it starts and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_chain_needs_its_registry_config() {
    let anvil = Anvil::start(777).await;
    let rpc_port = free_port();
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "node",
            "--upstream-rpc",
            anvil.url.as_str(),
            "--flashblocks-url",
            "ws://127.0.0.1:1/ws",
            "--rpc-addr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("127.0.0.1:{rpc_port}"));
        args.push("--flashblocks-addr".into());
        args.push(format!("127.0.0.1:{}", free_port()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let refused = std::process::Command::new(flashnode_bin())
        .args(base(&[]))
        .output()
        .expect("flashnode runs");
    assert!(!refused.status.success(), "an unknown chain is refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("chain 777") && err.contains("--chain-config"), "{err}");

    let dir = std::env::temp_dir().join(format!("flashnode-chain-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("chain777.toml");
    std::fs::write(
        &file,
        "name = \"Test chain\"\nchain_id = 777\nblock_time = 2\n\n[hardforks]\ncanyon_time = 0\n\
         ecotone_time = 0\nfjord_time = 0\ngranite_time = 0\nholocene_time = 0\nisthmus_time = 0\n\n\
         [optimism]\neip1559_elasticity = 6\neip1559_denominator = 50\neip1559_denominator_canyon = 250\n",
    )
    .unwrap();
    let node = Proc::flashnode(&base(&["--chain-config", file.to_str().unwrap()]));
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    assert!(
        eventually(Duration::from_secs(15), || async { raw_rpc_ok(&rpc).await }).await,
        "the node starts with the chain's config:\n{}",
        node.output()
    );
    assert!(node.output().contains("chain config applied"), "{}", node.output());
}

async fn raw_rpc_ok(rpc: &str) -> bool {
    let Ok(Ok(_)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(rpc.trim_start_matches("http://")),
    )
    .await
    else {
        return false;
    };
    raw_rpc(rpc, "eth_chainId", serde_json::json!([])).await["result"] == "0x309"
}

/// #27.2: where an op-node runs beside the execution client, the chain comes from its
/// `optimism_rollupConfig` (the devnet answers it as an op-node would). A devnet of chain 777,
/// which has no preset, is the upstream: `--rollup-config-rpc` naming it starts the node, with
/// the block time it gives checked (`--canonical-stale-after 3s` is under 3 of its 2 s blocks:
/// refused); an op-node of another chain is refused, naming both ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_chain_can_take_its_op_nodes_rollup_config() {
    let upstream = start("devnet", &["--chain-id", "777", "--block-time", "2s"]).await;
    let other = start("devnet", &["--chain-id", "778"]).await;
    let rpc_port = free_port();
    let args = |op_node: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "node".into(),
            "--upstream-rpc".into(),
            upstream.rpc.clone(),
            "--flashblocks-url".into(),
            upstream.ws.clone(),
            "--rpc-addr".into(),
            format!("127.0.0.1:{rpc_port}"),
            "--flashblocks-addr".into(),
            format!("127.0.0.1:{}", free_port()),
            "--rollup-config-rpc".into(),
            op_node.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_to_exit = |args: Vec<String>| {
        let out = std::process::Command::new(flashnode_bin())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("flashnode runs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = run_to_exit(args(&other.rpc, &[]));
    assert!(!ok, "an op-node of another chain is refused");
    assert!(err.contains("rollup is chain 778, the upstream is chain 777"), "{err}");
    let (ok, err) = run_to_exit(args(&upstream.rpc, &["--canonical-stale-after", "3s"]));
    assert!(!ok && err.contains("--canonical-stale-after 3s"), "the block time is checked: {err}");

    let node = Proc::flashnode(&args(&upstream.rpc, &[]));
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    let listening = eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", rpc_port)).await.is_ok()
    })
    .await;
    assert!(listening, "the node starts:\n{}", node.output());
    assert!(
        mode_becomes(&rpc, "flashblocks", Duration::from_secs(20)).await,
        "the node preconfirms on the op-node's config:\n{}",
        node.output()
    );
    assert!(
        node.output().contains("chain config applied from the op-node's optimism_rollupConfig"),
        "{}",
        node.output()
    );
}
