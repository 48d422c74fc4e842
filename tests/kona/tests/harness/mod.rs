//! Just enough of a process harness to drive the `flashnode` binary over its sockets (this
//! crate cannot use `flashnode-tests`: that crate is on alloy 2, this one on alloy 1.x).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The binary under test: `$FLASHNODE_BIN`, else `$CARGO_TARGET_DIR/debug/flashnode`, else the
/// root workspace's `target/debug/flashnode`.
fn flashnode_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FLASHNODE_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("debug/flashnode");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/flashnode")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `flashnode` child process, killed on drop; its output goes to a log file.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[String]) -> Proc {
        let log = std::env::temp_dir().join(format!(
            "flashnode-kona-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(flashnode_bin())
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (build it: cargo build --bin flashnode)",
                    flashnode_bin().display()
                )
            });
        Proc { child, log }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A running `flashnode devnet` or `node`.
pub struct Running {
    /// The process.
    pub proc: Proc,
    /// JSON-RPC URL (http).
    pub rpc: String,
    /// Flashblock websocket URL (the devnet's source, or the node's fan-out).
    pub ws: String,
}

async fn started(proc: Proc, rpc_port: u16, ws_port: u16) -> Running {
    let running = Running {
        proc,
        rpc: format!("http://127.0.0.1:{rpc_port}"),
        ws: format!("ws://127.0.0.1:{ws_port}/ws"),
    };
    let up = eventually(Duration::from_secs(15), || async {
        try_rpc(&running.rpc, "eth_chainId", serde_json::json!([]))
            .await
            .is_some_and(|r| r["result"].is_string())
    })
    .await;
    assert!(up, "flashnode did not answer on {}:\n{}", running.rpc, running.proc.output());
    running
}

/// `flashnode <sub>` on free ports with `extra` flags, once its RPC answers.
pub async fn start(sub: &str, extra: &[&str]) -> Running {
    let (rpc_port, ws_port) = (free_port(), free_port());
    let mut args = vec![
        sub.to_string(),
        "--rpc-addr".into(),
        format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr".into(),
        format!("127.0.0.1:{ws_port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    started(Proc::spawn(&args), rpc_port, ws_port).await
}

/// `flashnode node` on a flashblock URL and an upstream RPC, once its RPC answers.
pub async fn start_node(flashblocks_url: &str, upstream: &str, extra: &[&str]) -> Running {
    let (rpc_port, ws_port) = (free_port(), free_port());
    let mut args = vec![
        "node".to_string(),
        "--flashblocks-url".into(),
        flashblocks_url.into(),
        "--upstream-rpc".into(),
        upstream.into(),
        "--rpc-addr".into(),
        format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr".into(),
        format!("127.0.0.1:{ws_port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    started(Proc::spawn(&args), rpc_port, ws_port).await
}

/// One HTTP/1.1 exchange on 127.0.0.1 (`Connection: close`): status line and body.
async fn http(addr: &str, request: String) -> Option<String> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

async fn try_rpc(url: &str, method: &str, params: serde_json::Value) -> Option<serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let host = url.strip_prefix("http://")?.trim_end_matches('/');
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    serde_json::from_str(http(host, req).await?.trim()).ok()
}

/// A JSON-RPC call: the whole response object (result or error).
pub async fn raw_rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    try_rpc(url, method, params).await.unwrap_or_else(|| panic!("{method} on {url} failed"))
}

/// `flashnode_status`.
pub async fn status(rpc: &str) -> serde_json::Value {
    raw_rpc(rpc, "flashnode_status", serde_json::json!([])).await["result"].clone()
}

/// The Prometheus page at `addr`/metrics.
pub async fn scrape(addr: &str) -> String {
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http(addr, req).await.unwrap_or_default()
}

/// Sum of the samples of `name` carrying every label in `labels`.
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric_name == name
                && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then_some(value)
        })
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
