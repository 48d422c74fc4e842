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
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error {e}"),
    }
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
    let data = Bytes::from(vec![0xee; 6_000]);
    let load = tokio::spawn({
        let rpc = node.rpc.clone();
        async move {
            for nonce in 0..40u64 {
                for key in &DEV_KEYS[..5] {
                    let raw = sign_1559(
                        key,
                        901,
                        nonce,
                        TxKind::Call(Address::repeat_byte(3)),
                        U256::ZERO,
                        data.clone(),
                        300_000,
                        10_000_000_000,
                    );
                    raw_rpc(&rpc, "eth_sendRawTransaction", serde_json::json!([raw])).await;
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
    });
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
