//! The RPC layer in-process: the module answered with `raw_json_request` and the served port
//! over loopback TCP, against an overlay with no pending block (so every method falls back to
//! a recording upstream) and a recording upstream server.

use super::*;
use alloy_primitives::{Address, B256, U256};
use flashnode_exec::{CanonicalBlock, CanonicalNotification, SourceAccount, SourceError};
use futures::future::BoxFuture;
use jsonrpsee::server::ServerHandle;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// Canonical state that knows nothing: the overlay stays without a tip or pending block.
#[derive(Debug)]
struct NoState(broadcast::Sender<CanonicalNotification>);

impl flashnode_exec::StateSource for NoState {
    fn chain_id(&self) -> u64 {
        901
    }
    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        Box::pin(async { Err(SourceError::Missing("no state in this test")) })
    }
    fn block_by_number(
        &self,
        _: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
        Box::pin(async { Ok(None) })
    }
    fn account(&self, _: B256, _: Address) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
        Box::pin(async { Ok(SourceAccount::default()) })
    }
    fn storage(&self, _: B256, _: Address, _: U256) -> BoxFuture<'_, Result<U256, SourceError>> {
        Box::pin(async { Ok(U256::ZERO) })
    }
    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.0.subscribe()
    }
}

/// An upstream that answers every method it is asked with `{method, params}`.
async fn recording_upstream() -> (String, ServerHandle) {
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut m = RpcModule::new(());
    for method in [
        "eth_getBlockByNumber",
        "eth_call",
        "eth_estimateGas",
        "eth_createAccessList",
        "eth_getBalance",
        "eth_getStorageAt",
        "eth_getLogs",
        "eth_simulateV1",
        "eth_blockNumber",
        "eth_getTransactionReceipt",
    ] {
        m.register_method(method, move |p, _, _| -> Result<Value, ErrorObjectOwned> {
            let params: Value = p.parse().unwrap_or(Value::Null);
            let seen = json!({"method": method, "params": params});
            // Logs are a list.
            Ok(if method == "eth_getLogs" { json!([seen]) } else { seen })
        })
        .unwrap();
    }
    (format!("http://{addr}"), server.start(m))
}

use jsonrpsee::types::ErrorObjectOwned;

struct Fixture {
    module: RpcModule<RpcContext>,
    ctx: RpcContext,
    _upstream: ServerHandle,
    _stream: mpsc::Sender<flashnode_overlay::StreamEvent>,
    _cancel: tokio_util::sync::DropGuard,
    tasks: flashnode_tasks::TaskManager,
}

async fn fixture(config: RpcConfig) -> Fixture {
    let (url, upstream_server) = recording_upstream().await;
    let cancel = CancellationToken::new();
    let tasks = flashnode_tasks::TaskManager::new();
    let (stream, rx) = mpsc::channel::<flashnode_overlay::StreamEvent>(1);
    let overlay = flashnode_overlay::spawn(
        flashnode_overlay::OverlayConfig {
            chain: flashnode_exec::ChainConfig::devnet(901),
            stale_after: Duration::from_secs(1),
            canonical_stale_after: Duration::from_secs(12),
            max_pending_depth: flashnode_overlay::DEFAULT_MAX_PENDING_DEPTH,
            native_blocks_at: None,
            readiness_hysteresis_blocks: flashnode_overlay::DEFAULT_READINESS_HYSTERESIS_BLOCKS,
        },
        Arc::new(NoState(broadcast::channel(1).0)),
        rx,
        cancel.clone(),
        &tasks.executor(),
    );
    let upstream = Upstream::connect(&url, Duration::from_secs(5)).await.unwrap();
    let ctx = RpcContext { overlay, upstream, config, gossip: None };
    Fixture {
        module: module(ctx.clone()),
        ctx,
        _upstream: upstream_server,
        _stream: stream,
        _cancel: cancel.drop_guard(),
        tasks,
    }
}

async fn call(m: &RpcModule<RpcContext>, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (resp, _) = m.raw_json_request(&req, 1).await.unwrap();
    serde_json::from_str(resp.get()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_methods_answer_in_process() {
    let f = fixture(RpcConfig::default()).await;
    assert_eq!(call(&f.module, "eth_chainId", json!([])).await["result"], "0x385");
    assert_eq!(
        call(&f.module, "op_supportedCapabilities", json!([])).await["result"],
        json!(["flashblocksv1"])
    );
    let status = call(&f.module, "flashnode_status", json!([])).await;
    assert!(status["result"]["mode"].is_string(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pending_block_pending_goes_upstream_as_latest() {
    let f = fixture(RpcConfig::default()).await;
    let r = call(&f.module, "eth_getBlockByNumber", json!(["pending", true])).await;
    assert_eq!(r["result"]["params"], json!(["latest", true]), "{r}");
    // The arity the client sent: no `full` flag added.
    let r = call(&f.module, "eth_getBlockByNumber", json!(["0x10"])).await;
    assert_eq!(r["result"]["params"], json!(["0x10"]), "{r}");
    let to = Address::repeat_byte(1);
    let r =
        call(&f.module, "eth_call", json!([{"to": to}, "pending", null, {"number": "0x5"}])).await;
    assert_eq!(r["result"]["params"][1], "latest", "{r}");
    assert!(r["result"]["params"][2].is_null(), "{r}");
    assert_eq!(r["result"]["params"][3]["number"], "0x5", "{r}");
    let r = call(&f.module, "eth_getBalance", json!([to, "pending"])).await;
    assert_eq!(r["result"]["params"], json!([to, "latest"]), "{r}");
    let slot = format!("0x{}", "00".repeat(31) + "01");
    let r = call(&f.module, "eth_getStorageAt", json!([to, slot, "pending"])).await;
    assert_eq!(r["result"]["params"], json!([to, slot, "latest"]), "{r}");
    // A range ending at pending asks the upstream up to latest.
    let r =
        call(&f.module, "eth_getLogs", json!([{"fromBlock": "0x1", "toBlock": "pending"}])).await;
    assert_eq!(r["result"][0]["params"][0]["toBlock"], "latest", "{r}");
    assert_eq!(r["result"][0]["params"][0]["fromBlock"], "0x1", "{r}");
    // Without a block parameter a call, an estimate or an access list reads pending; with no
    // pending block the upstream gets the request as sent (tagless: its latest).
    for method in ["eth_call", "eth_estimateGas", "eth_createAccessList"] {
        let r = call(&f.module, method, json!([{"to": to}])).await;
        assert_eq!(r["result"]["method"], method, "{r}");
        assert_eq!(r["result"]["params"].as_array().map(Vec::len), Some(1), "{method}: {r}");
        let r = call(&f.module, method, json!([{"to": to}, "pending"])).await;
        assert_eq!(r["result"]["params"][1], "latest", "{method}: {r}");
    }
    // The allowlist goes as it came.
    let r = call(&f.module, "eth_blockNumber", json!([])).await;
    assert_eq!(r["result"]["method"], "eth_blockNumber", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_params_refuse_what_does_not_parse() {
    let f = fixture(RpcConfig::default()).await;
    for (method, params) in [
        ("eth_getBlockByNumber", json!(["pending", "notbool"])),
        ("eth_simulateV1", json!([])),
        ("eth_createAccessList", json!([])),
        ("eth_call", json!([{"to": "0x12"}, "pending"])),
        ("eth_getBalance", json!(["0xnothex", "latest"])),
        ("eth_getTransactionReceipt", json!([])),
        ("eth_sendRawTransactionSync", json!([5])),
    ] {
        let r = call(&f.module, method, params.clone()).await;
        assert_eq!(r["error"]["code"], -32602, "{method} {params}: {r}");
    }
    let r = call(&f.module, "eth_noSuchMethod", json!([])).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
}

/// Sends `body` as one HTTP POST to `addr` and returns the status and body.
async fn post(addr: SocketAddr, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_port_reads_errors_as_sentences() {
    let f = fixture(RpcConfig { addr: ([127, 0, 0, 1], 0).into(), ..Default::default() }).await;
    let cancel = CancellationToken::new();
    let rpc = serve(f.ctx.clone(), cancel.clone(), &f.tasks.executor()).await.unwrap();
    let (_, body) =
        post(rpc.addr, r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[]}"#).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["message"], "invalid params: No more params", "{v}");
    // The same in a batch.
    let (_, body) = post(
        rpc.addr,
        r#"[{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[]},{"jsonrpc":"2.0","id":2,"method":"eth_chainId"}]"#,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["error"]["message"], "invalid params: No more params", "{v}");
    assert_eq!(v[1]["result"], "0x385", "{v}");
    let (_, body) = post(
        rpc.addr,
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32601, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("websocket"), "{v}");
    for id in ["{}", "[]", "true", "-1", "1.5"] {
        let req = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId","params":[]}}"#);
        let (_, body) = post(rpc.addr, &req).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], -32600, "{id}: {v}");
        assert!(v["id"].is_null(), "{v}");
    }
    // Valid ids of every kind still work.
    for id in ["1", "\"a\"", "null", "18446744073709551615"] {
        let req = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId","params":[]}}"#);
        let (_, body) = post(rpc.addr, &req).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["result"], "0x385", "{id}: {v}");
    }
    cancel.cancel();
    assert!(rpc.drained(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_port_limits_connections_per_ip() {
    let config =
        RpcConfig { addr: ([127, 0, 0, 1], 0).into(), per_ip_connections: 2, ..Default::default() };
    let f = fixture(config).await;
    let cancel = CancellationToken::new();
    let rpc = serve(f.ctx.clone(), cancel.clone(), &f.tasks.executor()).await.unwrap();
    let _held: Vec<TcpStream> = vec![
        TcpStream::connect(rpc.addr).await.unwrap(),
        TcpStream::connect(rpc.addr).await.unwrap(),
    ];
    let (status, body) =
        post(rpc.addr, r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--rpc-per-ip-connections"), "{body}");
    // Another loopback address is another IP.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = other.connect(rpc.addr).await.unwrap();
    let req = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let http = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{req}",
        req.len()
    );
    s.write_all(http.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(_held);
    // Closed connections give their places back.
    assert!(
        {
            let mut ok = false;
            for _ in 0..50 {
                let (status, _) = post(rpc.addr, req).await;
                if status == 200 {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ok
        },
        "a place is free again"
    );
    cancel.cancel();
}
