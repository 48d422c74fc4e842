//! A minimal HTTP/1.1 keep-alive JSON-RPC client over one tokio `TcpStream`.
//!
//! The latency probe must not pay a TCP handshake (or a client library's pooling and
//! bookkeeping) per poll, so each probe owns one kept-alive connection with `TCP_NODELAY` and
//! writes each request in a single `write_all`.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// One kept-alive HTTP/1.1 connection to a JSON-RPC endpoint.
pub struct KeepAlive {
    host: String,
    path: String,
    conn: Option<BufReader<TcpStream>>,
    line: String,
}

impl KeepAlive {
    /// Connects to `url` (`http://host:port[/path]`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow!("only http:// urls: {url}"))?;
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) => (h.to_string(), format!("/{p}")),
            None => (rest.to_string(), "/".to_string()),
        };
        let mut me = Self { host, path, conn: None, line: String::with_capacity(256) };
        me.reconnect().await?;
        Ok(me)
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        let stream = TcpStream::connect(&self.host)
            .await
            .with_context(|| format!("connecting to {}", self.host))?;
        stream.set_nodelay(true)?;
        self.conn = Some(BufReader::with_capacity(64 * 1024, stream));
        Ok(())
    }

    /// POSTs `body` and returns the response body. Reconnects once if the connection was closed.
    pub async fn post(&mut self, body: &str) -> anyhow::Result<Vec<u8>> {
        match self.post_once(body).await {
            Ok(b) => Ok(b),
            Err(_) => {
                self.reconnect().await?;
                self.post_once(body).await
            }
        }
    }

    async fn post_once(&mut self, body: &str) -> anyhow::Result<Vec<u8>> {
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            self.path,
            self.host,
            body.len(),
            body
        );
        let conn = self.conn.as_mut().ok_or_else(|| anyhow!("not connected"))?;
        conn.get_mut().write_all(req.as_bytes()).await?;

        // Status line and headers.
        let mut status = 0u16;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        let mut first = true;
        loop {
            self.line.clear();
            let n = conn.read_line(&mut self.line).await?;
            if n == 0 {
                bail!("connection closed before the response headers ended");
            }
            let l = self.line.trim_end();
            if first {
                first = false;
                status = l.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                continue;
            }
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }

        let mut out = Vec::new();
        if chunked {
            loop {
                self.line.clear();
                conn.read_line(&mut self.line).await?;
                let size =
                    usize::from_str_radix(self.line.trim().split(';').next().unwrap_or("0"), 16)
                        .context("bad chunk size")?;
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        self.line.clear();
                        conn.read_line(&mut self.line).await?;
                        if self.line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = out.len();
                out.resize(start + size, 0);
                conn.read_exact(&mut out[start..]).await?;
                let mut crlf = [0u8; 2];
                conn.read_exact(&mut crlf).await?;
            }
        } else if let Some(len) = content_length {
            out.resize(len, 0);
            conn.read_exact(&mut out).await?;
        } else {
            conn.read_to_end(&mut out).await?;
            close = true;
        }
        if close {
            self.conn = None;
            self.reconnect().await?;
        }
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&out));
        }
        Ok(out)
    }

    /// Calls `method` with `params` and returns the whole JSON-RPC response object.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                .to_string();
        let bytes = self.post(&body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// A pre-serialized JSON-RPC request body.
pub fn rpc_body(method: &str, params: Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}

/// Parses a `0x…` quantity.
pub fn quantity(v: &Value) -> Option<u64> {
    v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
}
