//! The raw flashblock fan-out, wire-compatible with Base's websocket proxy: every flashblock
//! that passed sequencing and execution, re-published as received, in order, once each.
//!
//! Paths: `/ws` (public, unless closed), `/ws/{api_key}`, `/ws/{api_key}/filter?addresses=&topics=&match=any|all`,
//! and `/healthz`. Per-IP and global connection limits answer HTTP 429; a subscriber that lags
//! behind its buffer or whose send takes too long is disconnected and counted, never slowing
//! the others.

use alloy_primitives::{Address, B256};
use flashnode_overlay::{frame::encode_brotli, Overlay, OverlayEvent};
use futures::{SinkExt, StreamExt};
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::broadcast,
};
use bytes::Bytes;
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    protocol::frame::{
        coding::{Data, OpCode},
        Frame as WsFrame,
    },
    Message,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// Fan-out settings (defaults as Base's websocket proxy, with a higher instance limit).
#[derive(Clone, Debug)]
pub struct FanoutConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// API keys accepted on `/ws/{key}`.
    pub api_keys: Vec<String>,
    /// Whether `/ws` without a key is served.
    pub public: bool,
    /// Connections per client IP.
    pub per_ip_limit: usize,
    /// Connections in all.
    pub global_limit: usize,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted load balancer only).
    pub trust_forwarded_for: bool,
    /// Send brotli Binary frames to every client (clients may also ask with `?compress=brotli`).
    pub compression: bool,
    /// Messages a client may fall behind before it is disconnected.
    pub buffer: usize,
    /// Longest a single send may take.
    pub send_timeout: Duration,
    /// Ping interval to clients.
    pub ping_interval: Duration,
    /// A client silent (no pong, no message) for this long is dropped.
    pub pong_timeout: Duration,
    /// Kernel send buffer per client: bounds memory per subscriber and makes a stalled reader
    /// show up as a blocked send quickly.
    pub socket_send_buffer: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8546).into(),
            api_keys: Vec::new(),
            public: true,
            per_ip_limit: 10,
            global_limit: 10_000,
            trust_forwarded_for: false,
            compression: false,
            buffer: 20,
            send_timeout: Duration::from_millis(1_000),
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(30),
            socket_send_buffer: 256 * 1024,
        }
    }
}

/// One flashblock ready to send: its complete websocket frame (header and payload), built once.
/// Server frames are unmasked, so the bytes are the same for every client and each delivery is
/// one socket write of shared bytes (no per-client framing or copy).
#[derive(Debug)]
struct Frame {
    json: Arc<str>,
    /// The Text frame's wire bytes.
    text: Bytes,
    /// The brotli Binary frame's wire bytes, built when the first client that wants it asks.
    brotli: std::sync::OnceLock<Bytes>,
    /// Addresses the flashblock touches (tx senders, recipients, log emitters).
    addresses: HashSet<Address>,
    /// Topics of its logs.
    topics: HashSet<B256>,
}

impl Frame {
    fn new(json: Arc<str>, addresses: HashSet<Address>, topics: HashSet<B256>) -> Self {
        let text = wire_frame(OpCode::Data(Data::Text), Bytes::copy_from_slice(json.as_bytes()));
        Self { json, text, brotli: Default::default(), addresses, topics }
    }

    fn brotli(&self) -> Bytes {
        self.brotli.get_or_init(|| wire_frame(OpCode::Data(Data::Binary), encode_brotli(self.json.as_bytes()).into())).clone()
    }
}

/// A final, unmasked server frame as it goes on the wire (tungstenite's own framing).
fn wire_frame(opcode: OpCode, payload: Bytes) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 14);
    // Formatting into a Vec cannot fail: the only error source is the writer.
    if let Err(err) = WsFrame::message(payload, opcode, true).format(&mut out) {
        warn!(%err, "cannot format a fan-out frame");
    }
    out.into()
}

/// A client's filter from `/filter?addresses=&topics=&match=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FrameFilter {
    addresses: HashSet<Address>,
    topics: HashSet<B256>,
    all: bool,
}

impl FrameFilter {
    fn parse(query: &str) -> Result<Self, String> {
        let mut f = FrameFilter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "addresses" => {
                    for a in v.split(',').filter(|s| !s.is_empty()) {
                        f.addresses.insert(a.parse().map_err(|_| format!("bad address {a:?}"))?);
                    }
                }
                "topics" => {
                    for t in v.split(',').filter(|s| !s.is_empty()) {
                        f.topics.insert(t.parse().map_err(|_| format!("bad topic {t:?}"))?);
                    }
                }
                "match" => match v {
                    "any" => f.all = false,
                    "all" => f.all = true,
                    other => return Err(format!("match must be any or all, not {other:?}")),
                },
                "compress" => {}
                other => return Err(format!("unknown filter parameter {other:?}")),
            }
        }
        Ok(f)
    }

    fn matches(&self, frame: &Frame) -> bool {
        let addr = (!self.addresses.is_empty()).then(|| self.addresses.iter().any(|a| frame.addresses.contains(a)));
        let topic = (!self.topics.is_empty()).then(|| self.topics.iter().any(|t| frame.topics.contains(t)));
        match (addr, topic) {
            (None, None) => true,
            (Some(a), None) => a,
            (None, Some(t)) => t,
            (Some(a), Some(t)) => if self.all { a && t } else { a || t },
        }
    }
}

/// Live connection counts.
#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Releases a connection slot on drop.
#[derive(Debug)]
struct Slot {
    conns: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.conns.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_ip.remove(&self.ip);
                }
            }
        }
        metrics::gauge!("flashnode_fanout_clients").decrement(1.0);
    }
}

/// Errors starting the fan-out.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the fan-out on {addr}: {source}")]
pub struct FanoutError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds and serves until `cancel`; returns the bound address.
pub async fn serve(config: FanoutConfig, overlay: Overlay, cancel: CancellationToken) -> Result<SocketAddr, FanoutError> {
    let addr = config.addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| FanoutError { addr, source })?;
    let local = listener.local_addr().map_err(|source| FanoutError { addr, source })?;
    let (tx, _) = broadcast::channel::<Arc<Frame>>(config.buffer.max(1));
    // One task turns applied flashblocks into frames, so every client shares one encoding.
    let mut events = overlay.subscribe();
    let publisher = tx.clone();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = c2.cancelled() => return,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(OverlayEvent::Applied { block, flashblock }) => {
                    let mut addresses = HashSet::new();
                    let mut topics = HashSet::new();
                    for t in &block.txs[block.first_new..] {
                        addresses.insert(t.sender);
                        if let Some(to) = alloy_consensus::Transaction::to(&t.tx) {
                            addresses.insert(to);
                        }
                        for log in alloy_consensus::TxReceipt::logs(&t.receipt) {
                            addresses.insert(log.address);
                            topics.extend(log.topics().iter().copied());
                        }
                    }
                    let frame = Frame::new(flashblock.raw_json.clone(), addresses, topics);
                    let _ = publisher.send(Arc::new(frame));
                    metrics::counter!("flashnode_fanout_flashblocks_total").increment(1);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => warn!(missed = n, "fan-out publisher lagged behind the overlay"),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let config = Arc::new(config);
    let conns = Arc::new(Mutex::new(Connections::default()));
    info!(addr = %local, "flashblock fan-out on ws://{local}/ws");
    tokio::spawn(
        async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(err) => {
                            debug!(%err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                };
                let (config, conns, rx, cancel) = (config.clone(), conns.clone(), tx.subscribe(), cancel.clone());
                tokio::spawn(
                    async move {
                        if let Err(err) = client(stream, peer, config, conns, rx, cancel).await {
                            debug!(%err, "fan-out client ended");
                        }
                    }
                    .instrument(info_span!("fanout_client", %peer)),
                );
            }
        }
        .instrument(info_span!("fanout", addr = %local)),
    );
    Ok(local)
}

/// What the handshake decided about a connection.
#[derive(Debug, Default)]
struct Admission {
    filter: Option<FrameFilter>,
    brotli: bool,
    slot: Option<Slot>,
}

fn reject(status: StatusCode, msg: &str) -> ErrorResponse {
    let mut err = ErrorResponse::new(Some(msg.to_string()));
    *err.status_mut() = status;
    metrics::counter!("flashnode_fanout_rejected_total", "status" => status.as_u16().to_string()).increment(1);
    err
}

#[allow(clippy::result_large_err)]
fn admit(
    req: &Request,
    peer: SocketAddr,
    config: &FanoutConfig,
    conns: &Arc<Mutex<Connections>>,
    out: &mut Admission,
) -> Result<(), ErrorResponse> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["ws"] if config.public => {}
        ["ws"] => return Err(reject(StatusCode::UNAUTHORIZED, "an API key is required: /ws/{key}")),
        ["ws", key] | ["ws", key, "filter"] => {
            if !config.api_keys.iter().any(|k| k == key) {
                return Err(reject(StatusCode::UNAUTHORIZED, "unknown API key"));
            }
            if segments.len() == 3 {
                out.filter = Some(FrameFilter::parse(query).map_err(|e| reject(StatusCode::BAD_REQUEST, &e))?);
            }
        }
        _ => return Err(reject(StatusCode::NOT_FOUND, "not found: flashblocks are served on /ws")),
    }
    out.brotli = config.compression || query.split('&').any(|p| p == "compress=brotli");
    let ip = if config.trust_forwarded_for {
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer.ip())
    } else {
        peer.ip()
    };
    let mut c = conns.lock().map_err(|_| reject(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    if c.total >= config.global_limit {
        return Err(reject(StatusCode::TOO_MANY_REQUESTS, "too many connections"));
    }
    let n = c.per_ip.entry(ip).or_default();
    if *n >= config.per_ip_limit {
        return Err(reject(StatusCode::TOO_MANY_REQUESTS, "too many connections from this address"));
    }
    *n += 1;
    c.total += 1;
    metrics::gauge!("flashnode_fanout_clients").increment(1.0);
    out.slot = Some(Slot { conns: conns.clone(), ip });
    Ok(())
}

async fn client(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: Arc<FanoutConfig>,
    conns: Arc<Mutex<Connections>>,
    mut rx: broadcast::Receiver<Arc<Frame>>,
    cancel: CancellationToken,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(config.socket_send_buffer);
    // Health checks are plain HTTP on the same port.
    let mut head = [0u8; 16];
    if let Ok(n) = tokio::time::timeout(Duration::from_secs(5), stream.peek(&mut head)).await.unwrap_or(Ok(0)) {
        if head[..n].starts_with(b"GET /healthz") {
            // Read the request head first: closing with unread bytes would reset the connection.
            let mut buf = [0u8; 2048];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncReadExt::read(&mut stream, &mut buf)).await {
                    Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
    let mut admission = Admission::default();
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, resp: Response| admit(req, peer, &config, &conns, &mut admission).map(|_| resp),
        Some(client_ws_config()),
    )
    .await?;
    let _slot = admission.slot;
    // One task per client, without splitting the stream: reads (pongs, closes) go through
    // tungstenite, flashblocks are written as pre-built frames straight to the socket. The
    // two never interleave because a frame is written whole (or the client is dropped) before
    // tungstenite is polled again, and tungstenite's own buffer is flushed first.
    let mut ws = ws;
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = tokio::time::timeout(config.send_timeout, ws.send(Message::Close(None))).await;
                return Ok(());
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > config.pong_timeout {
                    metrics::counter!("flashnode_fanout_disconnects_total", "reason" => "pong_timeout").increment(1);
                    return Ok(());
                }
                match tokio::time::timeout(config.send_timeout, ws.send(Message::Ping(Default::default()))).await {
                    Ok(res) => res?,
                    Err(_) => {
                        metrics::counter!("flashnode_fanout_disconnects_total", "reason" => "slow").increment(1);
                        return Ok(());
                    }
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => last_seen = tokio::time::Instant::now(),
                Some(Err(e)) => return Err(e),
            },
            frame = rx.recv() => match frame {
                Ok(frame) => {
                    if admission.filter.as_ref().is_some_and(|f| !f.matches(&frame)) {
                        continue;
                    }
                    let bytes = if admission.brotli { frame.brotli() } else { frame.text.clone() };
                    let write = async {
                        ws.flush().await?;
                        ws.get_mut().write_all(&bytes).await.map_err(tokio_tungstenite::tungstenite::Error::Io)
                    };
                    match tokio::time::timeout(config.send_timeout, write).await {
                        Ok(res) => res?,
                        Err(_) => {
                            metrics::counter!("flashnode_fanout_disconnects_total", "reason" => "slow").increment(1);
                            return Ok(());
                        }
                    }
                    metrics::counter!("flashnode_fanout_bytes_total").increment(bytes.len() as u64);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!("flashnode_fanout_disconnects_total", "reason" => "lagged").increment(1);
                    return Ok(());
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Per-client websocket settings. Clients only send control frames, so reads get a small
/// buffer (tungstenite's default 128 KiB read buffer is zero-filled on every poll: at 10,000
/// clients that was a quarter of the CPU and most of the memory per subscriber) and a small
/// message cap (a client cannot make the node buffer megabytes).
fn client_ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_frames_decode_as_one_final_unmasked_frame() {
        use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 125, 126, 65_535, 65_536, 200_000] {
            let json: Arc<str> = "x".repeat(len).into();
            let frame = Frame::new(json.clone(), HashSet::new(), HashSet::new());
            let mut cursor = std::io::Cursor::new(frame.text.as_ref());
            let (header, payload_len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(payload_len as usize, len);
            assert_eq!(&frame.text[cursor.position() as usize..], json.as_bytes());
        }
        let frame = Frame::new("{\"a\":1}".into(), HashSet::new(), HashSet::new());
        let brotli = frame.brotli();
        let mut cursor = std::io::Cursor::new(brotli.as_ref());
        let (header, _) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!(header.opcode, OpCode::Data(Data::Binary));
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &brotli[cursor.position() as usize..], &mut out).unwrap();
        assert_eq!(out, b"{\"a\":1}");
    }

    #[test]
    fn filters_parse_and_match() {
        let a: Address = "0x1111111111111111111111111111111111111111".parse().unwrap();
        let t = B256::repeat_byte(2);
        let f = FrameFilter::parse(&format!("addresses={a}&topics={t}&match=all")).unwrap();
        let frame = |addrs: &[Address], topics: &[B256]| {
            Frame::new("{}".into(), addrs.iter().copied().collect(), topics.iter().copied().collect())
        };
        assert!(f.matches(&frame(&[a], &[t])));
        assert!(!f.matches(&frame(&[a], &[])));
        let any = FrameFilter::parse(&format!("addresses={a}&topics={t}&match=any")).unwrap();
        assert!(any.matches(&frame(&[a], &[])));
        assert!(!any.matches(&frame(&[], &[])));
        assert!(FrameFilter::parse("match=some").is_err());
        assert!(FrameFilter::parse("addresses=0x12").is_err());
        assert!(FrameFilter::parse("").unwrap().matches(&frame(&[], &[])));
    }
}
