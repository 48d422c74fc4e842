//! The raw flashblock fan-out (Base websocket-proxy compatible): order, slow consumers,
//! connection limits, API keys, filters and /healthz, over real websockets.

use alloy_primitives::{Address, Bytes, TxKind, U256};
use flashnode_tests::*;
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

fn position(v: &Value) -> (u64, u64) {
    (v["metadata"]["block_number"].as_u64().unwrap(), v["index"].as_u64().unwrap())
}

async fn status_of(url: &str, xff: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(ip) = xff {
        req.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(ip).unwrap());
    }
    handshake_status(req).await
}

/// The fan-out re-publishes accepted flashblocks in order, once each, and decodes as the
/// source's frames do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_republishes_in_order() {
    let node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let mut rx = collect_flashblocks(&node.ws).await;
    let mut last = None;
    for _ in 0..30 {
        let fb = next_flashblock(&mut rx, Duration::from_secs(5)).await;
        let pos = position(&fb.json);
        if let Some((n, i)) = last {
            assert!(pos == (n, i + 1) || (pos.0 == n + 1 && pos.1 == 0), "({n},{i}) then {pos:?}");
        }
        last = Some(pos);
    }
    // /healthz on the same port.
    let addr = node.ws.trim_start_matches("ws://").trim_end_matches("/ws");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A consumer that never reads is disconnected while 100 fast consumers get every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_dropped_fast_ones_get_everything() {
    let node = start(
        "dev",
        &[
            "--block-time",
            "1s",
            "--flashblock-interval",
            "100ms",
            "--ws-buffer",
            "4",
            "--ws-per-ip-limit",
            "200",
        ],
    )
    .await;
    // The slow one: a tiny receive buffer, a handshake, then never a read.
    let addr: std::net::SocketAddr =
        node.ws.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (slow, _) = tokio_tungstenite::client_async(node.ws.as_str(), tcp).await.unwrap();
    let mut fast = Vec::new();
    for _ in 0..100 {
        fast.push(collect_flashblocks(&node.ws).await);
    }
    // Big flashblocks (~60 KB of calldata each) fill the slow socket quickly.
    let provider = node.provider();
    let load = load_big_flashblocks(node.rpc.clone());
    let _ = provider;
    // Reference: everything the first fast client received over the load period.
    let mut got: Vec<Vec<(u64, u64)>> = vec![Vec::new(); fast.len()];
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        for (i, rx) in fast.iter_mut().enumerate() {
            while let Ok(fb) = rx.try_recv() {
                got[i].push(position(&fb.json));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.abort();
    // Drain the slow socket: it must have been closed by the server.
    let (_, mut slow_read) = slow.split();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = slow_read.next().await {
            match m {
                Ok(Message::Close(_)) | Err(_) => return true,
                _ => {}
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the slow consumer was disconnected");
    // Every fast consumer saw an ordered, gapless sequence, the same one from the moment the
    // last of them connected.
    let start = got.iter().filter_map(|s| s.first().copied()).max().expect("frames arrived");
    let reference: Vec<(u64, u64)> = got[0].iter().copied().skip_while(|p| *p != start).collect();
    assert!(reference.len() >= 20, "enough flashblocks: {}", reference.len());
    for (i, seq) in got.iter().enumerate() {
        for w in seq.windows(2) {
            assert!(
                w[1] == (w[0].0, w[0].1 + 1) || (w[1].0 == w[0].0 + 1 && w[1].1 == 0),
                "consumer {i}: {w:?}"
            );
        }
        let mine: Vec<(u64, u64)> = seq.iter().copied().skip_while(|p| *p != start).collect();
        let n = mine.len().min(reference.len()).saturating_sub(2);
        assert!(n >= 18, "consumer {i} kept receiving ({n})");
        assert_eq!(mine[..n], reference[..n], "fast consumer {i} got every message");
    }
}

/// Per-IP and global limits answer 429; API keys guard /ws/{key}; a closed public path is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_api_keys() {
    let node = start(
        "dev",
        &[
            "--ws-per-ip-limit",
            "2",
            "--ws-global-limit",
            "3",
            "--ws-trust-forwarded-for",
            "--ws-api-keys",
            "alpha,beta",
            "--ws-close-public",
        ],
    )
    .await;
    let base = node.ws.trim_end_matches("/ws").to_string();
    assert_eq!(status_of(&format!("{base}/ws"), None).await, 401, "public path closed");
    assert_eq!(status_of(&format!("{base}/ws/gamma"), None).await, 401, "unknown key");
    assert_eq!(status_of(&format!("{base}/nope"), None).await, 404);
    // Per IP (from X-Forwarded-For): two fit, the third is refused.
    let url = format!("{base}/ws/alpha");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        held.push(tokio_tungstenite::connect_async(req).await.unwrap());
    }
    assert_eq!(status_of(&url, Some("10.1.1.1")).await, 429, "per-IP limit");
    // Global: one more from another IP fits (3), the next is refused.
    let mut req = format!("{base}/ws/beta").into_client_request().unwrap();
    req.headers_mut().insert("x-forwarded-for", HeaderValue::from_static("10.2.2.2"));
    held.push(tokio_tungstenite::connect_async(req).await.unwrap());
    assert_eq!(status_of(&url, Some("10.3.3.3")).await, 429, "global limit");
    drop(held);
    // Slots are released when clients leave.
    assert!(
        eventually(Duration::from_secs(3), || async {
            status_of(&url, Some("10.1.1.1")).await == 101
        })
        .await
    );
    assert_eq!(status_of(&format!("{base}/ws/alpha/filter?match=sometimes"), None).await, 400);
}

/// /ws/{key}/filter?addresses= delivers only flashblocks that touch the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_by_address() {
    let node = start(
        "dev",
        &["--block-time", "1s", "--flashblock-interval", "100ms", "--ws-api-keys", "k"],
    )
    .await;
    let target = Address::repeat_byte(0x5a);
    let base = node.ws.trim_end_matches("/ws").to_string();
    let mut filtered =
        collect_flashblocks(&format!("{base}/ws/k/filter?addresses={target}&match=any")).await;
    let mut all = collect_flashblocks(&node.ws).await;
    let provider = node.provider();
    let _ = provider;
    for nonce in 0..3u64 {
        let raw = sign_1559(
            DEV_KEYS[4],
            901,
            nonce,
            TxKind::Call(target),
            U256::from(1),
            Bytes::new(),
            21_000,
            10_000_000_000,
        );
        raw_rpc(&node.rpc, "eth_sendRawTransaction", serde_json::json!([raw])).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut matched = 0;
    while let Ok(Some(fb)) = tokio::time::timeout(Duration::from_secs(2), filtered.recv()).await {
        let touches = fb
            .payload
            .decoded_transaction::<op_alloy_consensus::OpTxEnvelope>()
            .filter_map(Result::ok)
            .any(|tx| alloy_consensus::Transaction::to(&tx) == Some(target));
        assert!(touches, "a filtered frame touches the address");
        matched += 1;
        if matched == 3 {
            break;
        }
    }
    assert!(matched >= 1, "filtered frames arrive");
    let mut total = 0;
    while let Ok(fb) = all.try_recv() {
        let _ = fb;
        total += 1;
    }
    assert!(total > matched, "the unfiltered client sees more frames ({total} vs {matched})");
}

/// Control frames share the socket with flashblocks written by the fan-out's writer thread: a
/// client's pings are answered with the same payload, every data frame in between still decodes
/// as a flashblock, and a client's close is answered with a close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_close_interleave_with_flashblocks() {
    use futures::SinkExt;
    let node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(node.ws.as_str()).await.unwrap();
    let mut pongs = Vec::new();
    let mut flashblocks = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut sent = 0u8;
    while (pongs.len() < 5 || flashblocks < 20) && std::time::Instant::now() < deadline {
        if usize::from(sent) == pongs.len() && sent < 5 {
            ws.send(Message::Ping(vec![b'p', sent].into())).await.unwrap();
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("valid frame")
        {
            Message::Pong(p) => pongs.push(p.to_vec()),
            Message::Text(t) => {
                let json = decode_frame(t.as_bytes()).expect("a flashblock");
                assert!(json["index"].is_u64(), "{json}");
                flashblocks += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        pongs,
        (0..5u8).map(|i| vec![b'p', i]).collect::<Vec<_>>(),
        "every ping answered in order"
    );
    assert!(flashblocks >= 20, "flashblocks kept flowing: {flashblocks}");
    ws.send(Message::Close(None)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(_)) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the close was answered with a close");
}

/// The fan-out's address (host:port) from its ws URL.
fn fanout_addr(ws: &str) -> std::net::SocketAddr {
    ws.trim_start_matches("ws://").trim_end_matches("/ws").parse().unwrap()
}

/// A raw request on the fan-out port: the whole answer (the server closes after it).
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A reset after the answer still leaves the answer read.
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered");
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `s` (EOF or a reset), reading whatever it answered first; false
/// if it is still open after `within`.
async fn closed_by_server(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut buf)).await.is_ok()
}

/// A refused compression, an unknown parameter and a plain HTTP request get an HTTP answer
/// that says why (not silence or a Text stream), and a shutdown closes subscribers with 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_answers_and_going_away_on_shutdown() {
    let mut node = start("dev", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let addr = fanout_addr(&node.ws);
    let url = node.ws.clone();
    assert_eq!(status_of(&format!("{url}?compress=gzip"), None).await, 400);
    let upgrade = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    };
    let gzip = raw_http(addr, &upgrade("/ws?compress=gzip")).await;
    assert!(gzip.starts_with("HTTP/1.1 400 "), "{gzip}");
    assert!(gzip.contains("compress must be brotli") && gzip.contains("\"gzip\""), "{gzip}");
    let unknown = raw_http(addr, &upgrade("/ws?compres=brotli")).await;
    assert!(unknown.starts_with("HTTP/1.1 400 ") && unknown.contains("\"compres\""), "{unknown}");
    let plain = raw_http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{plain}");
    assert!(plain.contains("/ws is a websocket endpoint"), "{plain}");
    // brotli is still served.
    let mut brotli = collect_flashblocks(&format!("{url}?compress=brotli")).await;
    assert!(next_flashblock(&mut brotli, Duration::from_secs(5)).await.binary);
    // SIGTERM: the subscriber gets a Close with 1001 (going away), not 1005 (no status).
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(matches!(first, Ok(Some(Ok(Message::Text(_))))), "{first:?}");
    node.proc.terminate();
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
        None
    })
    .await
    .expect("closed within the shutdown");
    assert_eq!(code, Some(1001), "going away");
    assert!(node.proc.wait_exit(Duration::from_secs(15)).await.is_some());
}

/// Half-open sockets from one address count against its limit from accept: past it they are
/// answered 429 or closed at once, the admitted ones are closed at the handshake deadline, and
/// the RPC and /healthz answer meanwhile. (Before, each held a slot-less socket forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_are_bounded_per_address_and_time_out() {
    let metrics = free_port();
    let node = start(
        "dev",
        &[
            "--ws-per-ip-limit",
            "5",
            "--ws-handshake-timeout",
            "1s",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
        ],
    )
    .await;
    let addr = fanout_addr(&node.ws);
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // A complete request from the same address is refused while the 5 hold their slots.
    let refused = raw_http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    let (code, _) = http_get(&format!("127.0.0.1:{metrics}"), "/healthz").await;
    assert_eq!(code, 200, "/healthz answers");
    assert!(raw_rpc(&node.rpc, "eth_chainId", serde_json::json!([])).await["result"].is_string());
    // Every silent socket is closed by the server, the admitted ones at the deadline.
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(closed_by_server(s, Duration::from_secs(15)).await, "socket {i} still open");
    }
    // The slots are free again.
    assert!(
        eventually(Duration::from_secs(5), || async { status_of(&node.ws, None).await == 101 })
            .await
    );
}

/// With a 400-descriptor process limit and 200 kept back, the fan-out's connection cap is
/// lowered at start to its share of the rest (100, beside the RPC's 100) with a log line, and
/// 500 half-open sockets do not take the descriptors the RPC and /healthz need; they are
/// refused or closed at the handshake deadline. (Before, they exhausted the process's
/// descriptors and the RPC stopped answering.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_keeps_the_rpc_and_health_answering() {
    let (rpc, fanout, metrics) = (free_port(), free_port(), free_port());
    let node = NofileProc::dev(
        (rpc, fanout, metrics),
        &["--ws-per-ip-limit", "10000", "--ws-fd-reserve", "200", "--ws-handshake-timeout", "2s"],
        400,
    );
    let host = format!("127.0.0.1:{rpc}");
    let chain_id = || {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]})
            .to_string();
        let host = host.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), post_json(host, body)).await.ok().flatten()
        }
    };
    assert!(
        eventually(Duration::from_secs(30), || async { chain_id().await.is_some() }).await,
        "the node starts"
    );
    let text = node.log_text();
    assert!(
        text.contains("fan-out connection limit lowered to 100: RLIMIT_NOFILE is 400"),
        "the clamp is logged: {text}"
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{fanout}").parse().unwrap();
    let mut sockets = Vec::new();
    for _ in 0..500 {
        sockets.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Give the node time to accept them all (or fail to), then ask the RPC and health.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert!(chain_id().await.is_some(), "the RPC answers while the fan-out is full");
        let health = tokio::time::timeout(
            Duration::from_secs(5),
            http_get(&format!("127.0.0.1:{metrics}"), "/healthz"),
        )
        .await
        .expect("/healthz answers in time");
        assert_eq!(health.0, 200);
    }
    for (i, s) in sockets.iter_mut().enumerate() {
        assert!(closed_by_server(s, Duration::from_secs(20)).await, "socket {i} still open");
    }
}

/// One JSON-RPC POST over a raw socket: the body, or None if the connection failed.
async fn post_json(host: String, body: String) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&host).await.ok()?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.contains("\"result\"").then_some(text)
}

/// Behind a trusted proxy the client is the entry the proxy appended (the rightmost, or the
/// `--ws-trusted-proxy-hops`-th from the right): entries the client forged to its left do not
/// give it more connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_entries_do_not_evade_the_per_ip_limit() {
    let node = start("dev", &["--ws-per-ip-limit", "2", "--ws-trust-forwarded-for"]).await;
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let forged = format!("6.6.6.{i}, 10.9.9.9");
        let mut req = node.ws.as_str().into_client_request().unwrap();
        req.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(&forged).unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok(ws) => {
                held.push(ws);
                statuses.push(101)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                statuses.push(resp.status().as_u16())
            }
            Err(e) => panic!("unexpected handshake error {e}"),
        }
    }
    assert_eq!(statuses, [101, 101, 429, 429, 429, 429], "counted as 10.9.9.9");
    // Another client behind the same proxy still gets in.
    assert_eq!(status_of(&node.ws, Some("6.6.6.0, 10.8.8.8")).await, 101);
    drop(node);
    // Two hops: the balancer appended the CDN (rightmost), the CDN appended the client.
    let node = start(
        "dev",
        &["--ws-per-ip-limit", "1", "--ws-trust-forwarded-for", "--ws-trusted-proxy-hops", "2"],
    )
    .await;
    let mut req = node.ws.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 10.1.1.1, 10.0.0.2"));
    let _first = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(status_of(&node.ws, Some("2.2.2.2, 10.1.1.1, 10.0.0.2")).await, 429);
    assert_eq!(status_of(&node.ws, Some("1.1.1.1, 10.2.2.2, 10.0.0.2")).await, 101);
}
