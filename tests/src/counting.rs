//! A counting HTTP JSON-RPC proxy: forwards every request to an upstream and counts HTTP
//! requests and the JSON-RPC calls inside them (batches count once as HTTP, once per call), so
//! tests can assert how many round trips a feature costs.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Counters of one proxy.
#[derive(Debug, Default)]
pub struct Counts {
    /// HTTP requests that carried at least one state read (`eth_getBalance`,
    /// `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`).
    pub state_http: AtomicU64,
    /// State-read JSON-RPC calls inside those requests.
    pub state_calls: AtomicU64,
}

/// A running proxy.
pub struct CountingProxy {
    /// http:// URL to use instead of the upstream's.
    pub url: String,
    /// What went through.
    pub counts: Arc<Counts>,
}

const STATE_METHODS: [&str; 4] =
    ["eth_getBalance", "eth_getTransactionCount", "eth_getCode", "eth_getStorageAt"];

impl CountingProxy {
    /// Proxies `upstream` (an http:// URL) on a free loopback port.
    pub async fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let counts = Arc::new(Counts::default());
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let c = counts.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, upstream.clone(), c.clone()));
            }
        });
        CountingProxy { url: format!("http://{addr}"), counts }
    }

    /// (HTTP requests with state reads, state-read calls) so far.
    pub fn state(&self) -> (u64, u64) {
        (
            self.counts.state_http.load(Ordering::SeqCst),
            self.counts.state_calls.load(Ordering::SeqCst),
        )
    }
}

/// Serves one keep-alive client connection, request by request.
async fn serve(mut tcp: TcpStream, upstream: String, counts: Arc<Counts>) {
    let mut buf = Vec::new();
    loop {
        let Some((head_len, body_len)) = read_head(&mut tcp, &mut buf).await else { return };
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 8192];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_len..head_len + body_len].to_vec();
        buf.drain(..head_len + body_len);
        count(&body, &counts);
        let Some(answer) = forward(&upstream, &body).await else { return };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if tcp.write_all(resp.as_bytes()).await.is_err() || tcp.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Reads until the end of the headers; returns (header length, Content-Length).
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            return Some((pos + 4, len));
        }
        let mut chunk = [0u8; 8192];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn count(body: &[u8], counts: &Counts) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let calls: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let state = calls
        .iter()
        .filter(|c| c["method"].as_str().is_some_and(|m| STATE_METHODS.contains(&m)))
        .count() as u64;
    if state > 0 {
        counts.state_http.fetch_add(1, Ordering::SeqCst);
        counts.state_calls.fetch_add(state, Ordering::SeqCst);
    }
}

/// Sends `body` to the upstream on a fresh connection and returns the response body.
async fn forward(upstream: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await.ok()?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    up.write_all(head.as_bytes()).await.ok()?;
    up.write_all(body).await.ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await.ok()?;
    let pos = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..pos]).to_ascii_lowercase();
    let rest = &resp[pos + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Some(rest.to_vec());
    }
    // De-chunk: size line, data, CRLF, until a zero-size chunk.
    let (mut out, mut i) = (Vec::new(), 0);
    loop {
        let line_end = rest[i..].windows(2).position(|w| w == b"\r\n")? + i;
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[i..line_end]).trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(line_end + 2..line_end + 2 + size)?);
        i = line_end + 2 + size + 2;
    }
}
