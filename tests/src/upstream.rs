//! A fault-injecting TCP proxy in front of an upstream JSON-RPC (the devnet's canonical RPC):
//! passes traffic through, or makes the upstream look down, slow, or failing with HTTP 502.
//!
//! Every mode change closes the connections already open, so HTTP keep-alive clients meet the
//! new mode on their next request.

use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// How the proxy treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// Forward everything.
    Pass,
    /// Accept and close at once: every request fails with a closed connection.
    Down,
    /// Forward, but hold every request this long before passing it on.
    Slow(Duration),
    /// Answer every request with `502 Bad Gateway`.
    BadGateway,
    /// Answer every request with `413 Payload Too Large`, as an upstream with a smaller body
    /// limit than the node's does.
    PayloadTooLarge,
    /// Forward, but close the connection instead of forwarding every `every`-th request (counted
    /// over all connections): the node meets "connection closed before message completed", as
    /// from an upstream that drops a keep-alive connection mid-request.
    Blip {
        /// One request in this many is dropped.
        every: u64,
    },
}

/// Requests a proxy forwarded or dropped, over all its connections ([`UpstreamMode::Blip`]).
type RequestCount = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// A running proxy.
pub struct UpstreamProxy {
    /// http:// URL to give the node as its upstream.
    pub url: String,
    mode: watch::Sender<UpstreamMode>,
}

impl UpstreamProxy {
    /// Starts a proxy of `target` (an http:// URL) on a free loopback port, in [`UpstreamMode::Pass`].
    pub async fn start(target: &str) -> UpstreamProxy {
        let target =
            target.strip_prefix("http://").expect("http url").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (mode, rx) = watch::channel(UpstreamMode::Pass);
        let requests = RequestCount::default();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, target.clone(), rx.clone(), requests.clone()));
            }
        });
        UpstreamProxy { url: format!("http://{addr}"), mode }
    }

    /// Switches the mode and drops the open connections.
    pub fn set(&self, mode: UpstreamMode) {
        self.mode.send_replace(mode);
    }
}

async fn serve(
    mut client: TcpStream,
    target: String,
    mut mode: watch::Receiver<UpstreamMode>,
    requests: RequestCount,
) {
    let current = *mode.borrow_and_update();
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::select! {
            _ = mode.changed() => {}
            _ = handle(&mut client, &target, current, &requests) => {}
        }
    })
    .await;
}

async fn handle(client: &mut TcpStream, target: &str, mode: UpstreamMode, requests: &RequestCount) {
    let mut buf = vec![0u8; 64 * 1024];
    match mode {
        UpstreamMode::Down => {}
        UpstreamMode::BadGateway | UpstreamMode::PayloadTooLarge => {
            let status = match mode {
                UpstreamMode::BadGateway => "502 Bad Gateway",
                _ => "413 Payload Too Large",
            };
            // One read is one request for the small JSON-RPC bodies the node sends.
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let body = &status[4..];
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if client.write_all(resp.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        UpstreamMode::Pass | UpstreamMode::Slow(_) | UpstreamMode::Blip { .. } => {
            let delay = match mode {
                UpstreamMode::Slow(d) => d,
                _ => Duration::ZERO,
            };
            let blip_every = match mode {
                UpstreamMode::Blip { every } => every.max(1),
                _ => 0,
            };
            let Ok(mut upstream) = TcpStream::connect(target).await else { return };
            let (mut cr, mut cw) = client.split();
            let (mut ur, mut uw) = upstream.split();
            let up = async {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    // One read is one request for the JSON-RPC bodies the node sends.
                    let seen = requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if blip_every > 0 && seen % blip_every == blip_every - 1 {
                        break;
                    }
                    if uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            let down = tokio::io::copy(&mut ur, &mut cw);
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        }
    }
}
