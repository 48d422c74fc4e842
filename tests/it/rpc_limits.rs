//! The RPC port under hostile input and overload, against the real binary: error text for
//! malformed and misdirected requests, per-IP connection and subscription limits (loopback
//! is 127.0.0.0/8, so 127.0.0.2 and 127.0.0.3 are other client IPs), and the execution
//! budget (gas summed over a simulation, the EVM timeout, the bounded executor pool, calls
//! whose client went away).

use alloy_primitives::Address;
use flashnode_tests::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_tungstenite::tungstenite::Message;

fn addr_of(rpc: &str) -> SocketAddr {
    rpc.trim_start_matches("http://").parse().expect("rpc address")
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{from}:0").parse().expect("address")).expect("bind a loopback address");
    socket.connect(to).await.expect("connects")
}

/// One HTTP POST of `body` over `stream`; the status and the body of the answer.
async fn post_on(mut stream: TcpStream, body: &str) -> (u16, String) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("request written");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
    (status, body)
}

async fn post(rpc: &str, body: &str) -> (u16, String) {
    post_on(TcpStream::connect(addr_of(rpc)).await.expect("rpc reachable"), body).await
}

const CHAIN_ID: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;

/// Requests that used to get a misleading answer get a clear one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misdirected_and_malformed_requests_get_clear_errors() {
    let node = start("dev", &[]).await;
    let r = raw_rpc(&node.rpc, "eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("websocket") && msg.contains("ws://"), "{r}");
    for method in ["eth_simulateV1", "eth_createAccessList", "eth_call", "eth_estimateGas"] {
        let r = raw_rpc(&node.rpc, method, json!([])).await;
        assert_eq!(r["error"]["code"], -32602, "{method} []: {r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with("invalid params: "), "{method} []: {r}");
    }
    let r = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", "notbool"])).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or_default().contains("bool"), "{r}");
    let r = raw_rpc(&node.rpc, "eth_getBlockByNumber", json!(["pending", false])).await;
    assert!(r["result"]["number"].is_string(), "the right shape still works: {r}");

    for id in ["{}", "[]", "true"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId","params":[]}}"#);
        let (status, body) = post(&node.rpc, &body).await;
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("id {id}: a JSON-RPC answer, got {status} {body:?}: {e}"));
        assert_eq!(v["error"]["code"], -32600, "id {id}: {v}");
        assert!(v["id"].is_null(), "{v}");
    }
    let (_, body) = post(&node.rpc, CHAIN_ID).await;
    assert!(body.contains("\"result\""), "{body}");
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}

/// Connections are counted per client IP from accept: beyond the limit one gets HTTP 429
/// naming the flag; other IPs are served; a closed connection frees its place.
/// Subscriptions are counted per IP across connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limits_on_the_rpc_port() {
    let node =
        start("dev", &["--rpc-per-ip-connections", "4", "--rpc-per-ip-subscriptions", "2"]).await;
    let addr = addr_of(&node.rpc);
    // Held idle, as a flood of half-open sockets would be.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    let mut refused = None;
    for _ in 0..20 {
        let (status, body) = post_on(connect_from("127.0.0.2", addr).await, CHAIN_ID).await;
        if status == 429 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = refused.expect("the fifth connection from one IP is refused");
    assert!(body.contains("127.0.0.2") && body.contains("--rpc-per-ip-connections"), "{body}");
    let (code, body) = post_on(connect_from("127.0.0.3", addr).await, CHAIN_ID).await;
    assert_eq!(code, 200, "another IP is served: {body}");
    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || async {
            post_on(connect_from("127.0.0.2", addr).await, CHAIN_ID).await.0 == 200
        })
        .await,
        "closed connections free their places"
    );

    // Subscriptions: two per IP, over any number of connections.
    let mut a = ws_from("127.0.0.4", addr).await;
    let mut b = ws_from("127.0.0.4", addr).await;
    let first = ws_request(&mut a, 1, "eth_subscribe", json!(["newHeads"])).await;
    assert!(first["result"].is_string(), "{first}");
    let second = ws_request(&mut b, 2, "eth_subscribe", json!(["newFlashblocks"])).await;
    assert!(second["result"].is_string(), "{second}");
    let third = ws_request(&mut b, 3, "eth_subscribe", json!(["newHeads"])).await;
    assert_eq!(third["error"]["code"], -32005, "{third}");
    assert!(
        third["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--rpc-per-ip-subscriptions"),
        "{third}"
    );
    let mut other = ws_from("127.0.0.5", addr).await;
    let r = ws_request(&mut other, 4, "eth_subscribe", json!(["newHeads"])).await;
    assert!(r["result"].is_string(), "another IP subscribes: {r}");
    let unsub = ws_request(&mut a, 5, "eth_unsubscribe", json!([first["result"]])).await;
    assert_eq!(unsub["result"], true, "{unsub}");
    let again = ws_request(&mut a, 6, "eth_subscribe", json!(["newHeads"])).await;
    assert!(again["result"].is_string(), "an unsubscribe frees a place: {again}");
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}

/// #25.1: a websocket counts against its IP's connections until it closes, not only until
/// its HTTP upgrade (opened one after another, every one was admitted before): beyond the
/// limit the handshake gets HTTP 429 naming the flag, and a closed websocket frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_count_against_the_per_ip_limit_until_they_close() {
    let node = start("dev", &["--rpc-per-ip-connections", "5"]).await;
    let addr = addr_of(&node.rpc);
    let mut open = Vec::new();
    for id in 0..5 {
        let mut ws = ws_from("127.0.0.6", addr).await;
        let r = ws_request(&mut ws, id, "eth_chainId", json!([])).await;
        assert!(r["result"].is_string(), "{r}");
        open.push(ws);
    }
    // One after another, each after the last one's upgrade: the sixth is refused.
    let stream = connect_from("127.0.0.6", addr).await;
    let refused = tokio_tungstenite::client_async(format!("ws://{addr}"), stream).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("--rpc-per-ip-connections"), "{body}");
        }
        other => panic!("the sixth websocket from one IP is refused with 429: {other:?}"),
    }
    // Another IP is served, and a closed websocket frees its place.
    let mut other = ws_from("127.0.0.7", addr).await;
    assert!(ws_request(&mut other, 9, "eth_chainId", json!([])).await["result"].is_string());
    let mut first = open.remove(0);
    first.close(None).await.expect("closed");
    drop(first);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let stream = connect_from("127.0.0.6", addr).await;
            tokio_tungstenite::client_async(format!("ws://{addr}"), stream).await.is_ok()
        })
        .await,
        "a closed websocket frees its place"
    );
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_from(from: &str, to: SocketAddr) -> Ws {
    let stream = connect_from(from, to).await;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{to}"), stream)
        .await
        .expect("websocket handshake");
    ws
}

/// Sends a request and returns its response (notifications meanwhile are skipped).
async fn ws_request(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::Text(body.to_string().into())).await.expect("sent");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["id"] == id {
                return v;
            }
        }
    }
}

/// Code that loops until its gas runs out: JUMPDEST PUSH1 0 JUMP.
const LOOP_CODE: &str = "0x5b600056";

fn loop_call(gas: u64) -> Value {
    let to = Address::repeat_byte(0x77);
    json!([
        {"to": to, "gas": format!("0x{gas:x}")},
        "pending",
        {to.to_string(): {"code": LOOP_CODE}}
    ])
}

/// Execution has a budget per request: gas summed over a simulation, a wall-clock timeout, a
/// bounded pool that answers -32005 beyond its queue, and calls stopped when their client
/// goes away. Ingest keeps serving flashblocks throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_budget_timeout_and_overload() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start(
        "dev",
        &[
            "--rpc-gas-cap",
            "100000000000",
            "--rpc-evm-timeout",
            "1s",
            "--rpc-max-concurrent-executions",
            "1",
            "--metrics-addr",
            &metrics,
        ],
    )
    .await;
    // Gas summed over the calls of one simulation, refused before anything runs.
    let small = json!({"to": Address::repeat_byte(0x77), "gas": "0xf4240"});
    let call =
        json!({"to": Address::repeat_byte(0x77), "gas": format!("0x{:x}", 40_000_000_000u64)});
    let r = raw_rpc(
        &node.rpc,
        "eth_simulateV1",
        json!([{"blockStateCalls": [
            {"blockOverrides": {"gasLimit": "0xe8d4a51000"}, "calls": [call, call]},
            {"blockOverrides": {"gasLimit": "0xe8d4a51000"}, "calls": [call]}
        ]}, "pending"]),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(r["error"]["message"].as_str().unwrap_or_default().contains("in all"), "{r}");
    let r = raw_rpc(
        &node.rpc,
        "eth_simulateV1",
        json!([{"blockStateCalls": [{"calls": [small, small]}]}, "pending"]),
    )
    .await;
    assert!(r["result"].is_array(), "within the cap it runs: {r}");

    // A call that would loop for minutes is stopped by the timeout.
    let r = raw_rpc(&node.rpc, "eth_call", loop_call(100_000_000_000)).await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(r["error"]["message"], "execution aborted (timeout = 1s)", "{r}");

    // One executor and 16 places to wait: of 24 at once, some are refused with -32005 at
    // once; the rest time out; none hangs.
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let rpc = node.rpc.clone();
            tokio::spawn(async move { raw_rpc(&rpc, "eth_call", loop_call(100_000_000_000)).await })
        })
        .collect();
    let (mut overloaded, mut timed_out) = (0, 0);
    for c in calls {
        let r = tokio::time::timeout(Duration::from_secs(60), c).await.expect("answered").unwrap();
        match r["error"]["code"].as_i64() {
            Some(-32005) => {
                assert!(
                    r["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("executors are busy"),
                    "{r}"
                );
                overloaded += 1;
            }
            Some(-32000) => timed_out += 1,
            _ => panic!("an overload or a timeout: {r}"),
        }
    }
    assert!(overloaded >= 7, "{overloaded} refused, {timed_out} timed out");
    assert!(timed_out >= 1);

    // A client that goes away: its execution is cancelled.
    let mut s = TcpStream::connect(addr_of(&node.rpc)).await.unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": loop_call(100_000_000_000)})
        .to_string();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&scrape(&metrics).await, "flashnode_rpc_executions_cancelled_total", &[]) >= 1.0
        })
        .await,
        "the execution of a client that went away is cancelled"
    );
    let page = scrape(&metrics).await;
    assert!(metric(&page, "flashnode_rpc_executions_refused_total", &[]) >= 7.0);
    assert!(metric(&page, "flashnode_rpc_execution_timeouts_total", &[]) >= 2.0);
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}

/// An upstream that refuses a request as too large (HTTP 413) is reported as that, not as
/// "upstream unavailable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_413_says_the_request_is_too_large() {
    use flashnode_tests::upstream::{UpstreamMode, UpstreamProxy};
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let proxy = UpstreamProxy::start(&devnet.rpc).await;
    let node = start_node(&devnet.ws, &proxy.url, &["--upstream-timeout", "2s"]).await;
    proxy.set(UpstreamMode::PayloadTooLarge);
    let r = raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("413") && msg.contains("too large"), "{r}");
    assert!(!msg.contains("unavailable"), "{r}");
    proxy.set(UpstreamMode::Pass);
    assert!(
        eventually(Duration::from_secs(5), || async {
            raw_rpc(&node.rpc, "eth_blockNumber", json!([])).await["result"].is_string()
        })
        .await
    );
}

/// The next text frame of `ws`, as JSON, within 10 s.
async fn ws_next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

/// A request whose `id` is not a JSON-RPC id (an object, an array, a float) gets -32600 with
/// `"id": null` over a websocket (alone and in a batch) and inside an HTTP batch, in the
/// batch next to the answers of the valid entries; a real notification (no id) is still not
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_id_over_a_websocket_and_in_a_batch_gets_invalid_request() {
    let node = start("dev", &[]).await;
    let bad_ids = ["{}", "[]", "1.5"];
    let request =
        |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId","params":[]}}"#);

    // HTTP batch: each bad entry answered in place, the valid one answered as usual.
    for id in bad_ids {
        let batch = format!("[{},{CHAIN_ID}]", request(id));
        let (status, body) = post(&node.rpc, &batch).await;
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("id {id}: a JSON answer, got {status} {body:?}: {e}"));
        let entries = v.as_array().unwrap_or_else(|| panic!("id {id}: an array: {v}"));
        assert_eq!(entries.len(), 2, "id {id}: one answer per entry: {v}");
        let error = entries.iter().find(|e| e.get("error").is_some()).expect("an error entry");
        assert_eq!(error["error"]["code"], -32600, "id {id}: {v}");
        assert!(error["id"].is_null(), "id {id}: {v}");
        let ok = entries.iter().find(|e| e["id"] == 1).expect("the valid entry's answer");
        assert!(ok["result"].is_string(), "id {id}: {v}");
    }
    // A batch of bad entries only.
    let only_bad = format!("[{},{}]", request("{}"), request("2.5"));
    let (_, body) = post(&node.rpc, &only_bad).await;
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{body}");
    assert!(v.as_array().into_iter().flatten().all(|e| e["error"]["code"] == -32600), "{v}");

    // Websocket: a single request, then a batch, each with a bad id.
    let mut ws = ws_from("127.0.0.1", addr_of(&node.rpc)).await;
    for id in bad_ids {
        ws.send(Message::Text(request(id).into())).await.expect("sent");
        let v = ws_next_json(&mut ws).await;
        assert_eq!(v["error"]["code"], -32600, "id {id} over a websocket: {v}");
        assert!(v["id"].is_null(), "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or_default().contains("the id must be"),
            "{v}"
        );
    }
    ws.send(Message::Text(format!("[{},{CHAIN_ID}]", request("{}")).into())).await.expect("sent");
    let v = ws_next_json(&mut ws).await;
    let entries = v.as_array().unwrap_or_else(|| panic!("a batch answer: {v}"));
    assert_eq!(entries.len(), 2, "{v}");
    assert!(entries.iter().any(|e| e["error"]["code"] == -32600 && e["id"].is_null()), "{v}");
    assert!(entries.iter().any(|e| e["id"] == 1 && e["result"].is_string()), "{v}");
    // A notification gets no answer: only the request sent after it is answered.
    let notification = r#"{"jsonrpc":"2.0","method":"eth_chainId","params":[]}"#;
    ws.send(Message::Text(notification.into())).await.expect("sent");
    let after = json!({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []});
    ws.send(Message::Text(after.to_string().into())).await.expect("sent");
    let mut frames = vec![ws_next_json(&mut ws).await];
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(500), ws.next()).await
    {
        frames.push(serde_json::from_str(&t).unwrap_or_default());
    }
    assert_eq!(frames.len(), 1, "one answer, for the request: {frames:?}");
    assert_eq!(frames[0]["id"], 7, "{frames:?}");
    // The connection still serves.
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}

/// Executions the node forwards to its upstream (here the stream is unreachable, so there is
/// no pending block and every `eth_call` goes upstream) are bounded like the ones it runs: with
/// one executor, 64 may be in flight at the upstream; the rest answer -32005 at once instead of
/// all landing on the execution client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_executions_are_bounded() {
    use flashnode_tests::upstream::{UpstreamMode, UpstreamProxy};
    let devnet = start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
    let proxy = UpstreamProxy::start(&devnet.rpc).await;
    let no_stream = format!("ws://127.0.0.1:{}/ws", free_port());
    let (node, metrics) = start_node_with_metrics(
        &no_stream,
        &proxy.url,
        &[
            "--rpc-max-concurrent-executions",
            "1",
            "--rpc-per-ip-connections",
            "200",
            "--upstream-timeout",
            "10s",
        ],
    )
    .await;
    // Every forwarded call now stays in flight for 3 s.
    proxy.set(UpstreamMode::Slow(Duration::from_secs(3)));
    let call = json!([{"to": "0x7777777777777777777777777777777777777777"}, "latest"]);
    let answers =
        futures::future::join_all((0..80).map(|_| raw_rpc(&node.rpc, "eth_call", call.clone())))
            .await;
    let refused: Vec<&Value> = answers.iter().filter(|a| a["error"]["code"] == -32005).collect();
    assert!(refused.len() >= 16, "80 calls, 64 slots: {} refused; {answers:?}", refused.len());
    for a in &refused {
        assert_eq!(
            a["error"]["message"],
            "too many executions forwarded to the upstream at once: all 64 slots are busy; retry later"
        );
    }
    let served = answers.iter().filter(|a| a["result"].is_string()).count();
    assert!(served >= 1, "the forwarded calls are answered once the upstream is: {answers:?}");
    let page = scrape(&metrics).await;
    assert!(
        metric(&page, "flashnode_rpc_forwarded_executions_refused_total", &[])
            >= refused.len() as f64
    );
}

/// #25.2: a JSON-RPC batch is bounded in calls (`--rpc-batch-request-limit`, geth's 1,000) and
/// in answer size (`--rpc-batch-response-max-bytes`), each refusal naming its flag, and its
/// executions share one `--rpc-evm-timeout`: a batch of gas-cap loops is cut once the budget is
/// spent instead of holding an executor for the sum of their timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_in_calls_size_and_execution_time() {
    let node =
        start("dev", &["--rpc-evm-timeout", "1s", "--rpc-batch-response-max-bytes", "20000"]).await;
    let batch = |n: usize, method: &str| {
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": method, "params": []}))
            .collect();
        Value::Array(calls).to_string()
    };
    // A batch within both limits is answered; 1,001 calls are refused whole.
    let (_, body) = post(&node.rpc, &batch(200, "eth_chainId")).await;
    let answers: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answers.as_array().map(Vec::len), Some(200), "{body}");
    let (_, body) = post(&node.rpc, &batch(1_001, "eth_chainId")).await;
    let refused: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(refused["error"]["code"], -32010, "{body}");
    let msg = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("1001") && msg.contains("--rpc-batch-request-limit"), "{msg}");
    // 1,000 calls of ~40 bytes each: over the 20,000-byte answer limit.
    let (_, body) = post(&node.rpc, &batch(1_000, "eth_chainId")).await;
    let too_big: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(too_big["error"]["code"], -32011, "{body}");
    assert!(body.contains("--rpc-batch-response-max-bytes"), "{body}");
    // Twenty gas-cap loops: the batch's executions stop at its 1 s budget.
    let calls: Vec<Value> = (0..20)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": loop_call(50_000_000)}))
        .collect();
    let started = std::time::Instant::now();
    let (_, body) = post(&node.rpc, &Value::Array(calls).to_string()).await;
    let took = started.elapsed();
    let answers: Value = serde_json::from_str(&body).expect("json");
    let answers = answers.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 20);
    let spent = answers
        .iter()
        .filter(|a| a["error"]["message"].as_str().is_some_and(|m| m.contains("used its budget")))
        .count();
    assert!(spent > 0, "later executions are refused once the budget is spent: {body}");
    assert!(answers[0]["error"]["message"].as_str().is_none_or(|m| !m.contains("budget")));
    assert!(took < Duration::from_secs(10), "the batch ended near its budget: {took:?}");
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}

/// #25.5: a call whose client disconnects before the answer is counted, as
/// `flashnode_rpc_requests_total{outcome="cancelled"}` with its duration, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_by_its_client_is_counted() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let node = start("dev", &["--metrics-addr", &metrics]).await;
    let addr = addr_of(&node.rpc);
    let cancelled = |page: &str| {
        metric(
            page,
            "flashnode_rpc_requests_total",
            &[("method", "eth_call"), ("outcome", "cancelled")],
        )
    };
    let before = cancelled(&scrape(&metrics).await);
    for _ in 0..3 {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": loop_call(50_000_000)});
        let mut stream = connect_from("127.0.0.8", addr).await;
        let req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.to_string().len()
        );
        stream.write_all(req.as_bytes()).await.expect("sent");
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(stream);
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            cancelled(&scrape(&metrics).await) > before
        })
        .await,
        "a call whose client went away is counted as cancelled"
    );
}

/// Under a 400-descriptor process limit with 200 kept back, the RPC port's connection limit is
/// lowered at start to its share (100, beside the fan-out's 100) with a log line. 450
/// websockets held open from one address (per-IP limit lifted) are admitted up to it and
/// answered 429 naming `--rpc-max-connections` past it; meanwhile `/healthz` and the fan-out
/// answer, a held websocket still serves calls, accept never fails, and once they close the
/// port serves new clients. (Before: the websockets took every descriptor, accept failed in a
/// loop with a log line each time, and nothing on the port answered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_connections_stay_inside_the_descriptor_budget() {
    let (rpc, fanout, metrics) = (free_port(), free_port(), free_port());
    let node = NofileProc::dev(
        (rpc, fanout, metrics),
        &["--rpc-per-ip-connections", "0", "--fd-reserve", "200"],
        400,
    );
    let url = format!("http://127.0.0.1:{rpc}");
    let answers = || async {
        let Ok(stream) = TcpStream::connect(addr_of(&url)).await else { return false };
        tokio::time::timeout(Duration::from_secs(5), post_on(stream, CHAIN_ID))
            .await
            .is_ok_and(|(code, body)| code == 200 && body.contains("\"result\""))
    };
    assert!(eventually(Duration::from_secs(30), answers).await, "the node starts");
    let log = node.log_text();
    assert!(log.contains("RPC connection limit lowered to 100: RLIMIT_NOFILE is 400"), "{log}");

    let ws_url = format!("ws://127.0.0.1:{rpc}");
    let (mut held, mut refused, mut other) = (Vec::new(), 0, Vec::new());
    let to = addr_of(&url);
    for _ in 0..450 {
        let stream = TcpStream::connect(to).await.expect("the kernel accepts");
        match tokio_tungstenite::client_async(ws_url.as_str(), stream).await {
            Ok((ws, _)) => held.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body =
                    String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
                assert_eq!(resp.status().as_u16(), 429, "{body}");
                assert!(body.contains("--rpc-max-connections"), "{body}");
                refused += 1;
            }
            Err(e) => other.push(e.to_string()),
        }
    }
    // The polls above may still hold a slot or two while their sockets close.
    assert!((95..=100).contains(&held.len()), "{} admitted, {refused} refused", held.len());
    assert_eq!(held.len() + refused, 450, "other failures: {other:?}");
    let (code, _) = tokio::time::timeout(
        Duration::from_secs(5),
        http_get(&format!("127.0.0.1:{metrics}"), "/healthz"),
    )
    .await
    .expect("/healthz answers while the RPC port is full");
    assert_eq!(code, 200);
    let fanout_ws = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{fanout}/ws")),
    )
    .await;
    assert!(matches!(fanout_ws, Ok(Ok(_))), "the fan-out admits a subscriber: {fanout_ws:?}");
    let first = held.first_mut().expect("one admitted");
    let answer = ws_request(first, 1, "eth_chainId", json!([])).await;
    assert!(answer["result"].is_string(), "{answer}");
    assert!(!node.log_text().contains("RPC accept failed"), "accept never ran out");
    drop(held);
    assert!(eventually(Duration::from_secs(10), answers).await, "the port serves again");
}
