//! The raw flashblock fan-out, wire-compatible with Base's websocket proxy: every flashblock
//! that passed sequencing and execution, re-published as received, in order, once each.
//!
//! Paths: `/ws` (public, unless closed), `/ws/{api_key}`, `/ws/{api_key}/filter?addresses=&topics=&match=any|all`,
//! and `/healthz`. Per-IP and global connection limits answer HTTP 429; a subscriber that lags
//! behind its buffer or whose send takes too long is disconnected and counted, never slowing
//! the others.

use alloy_primitives::{Address, B256};
use bytes::Bytes;
use flashnode_overlay::{encode_brotli, Overlay, OverlayEvent};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::broadcast,
};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    protocol::frame::{
        coding::{Data, OpCode},
        Frame as WsFrame,
    },
    protocol::{Role, WebSocket},
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
    /// Writer threads; 0 = one per core, at most 4.
    pub writers: usize,
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
            writers: 0,
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
    /// When the frame was built, right after the overlay applied the flashblock.
    built: std::time::Instant,
}

impl Frame {
    fn new(json: Arc<str>, addresses: HashSet<Address>, topics: HashSet<B256>) -> Self {
        let text = wire_frame(OpCode::Data(Data::Text), Bytes::copy_from_slice(json.as_bytes()));
        Self {
            json,
            text,
            brotli: Default::default(),
            addresses,
            topics,
            built: std::time::Instant::now(),
        }
    }

    fn brotli(&self) -> Bytes {
        self.brotli
            .get_or_init(|| {
                wire_frame(OpCode::Data(Data::Binary), encode_brotli(self.json.as_bytes()).into())
            })
            .clone()
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
        let addr = (!self.addresses.is_empty())
            .then(|| self.addresses.iter().any(|a| frame.addresses.contains(a)));
        let topic =
            (!self.topics.is_empty()).then(|| self.topics.iter().any(|t| frame.topics.contains(t)));
        match (addr, topic) {
            (None, None) => true,
            (Some(a), None) => a,
            (None, Some(t)) => t,
            (Some(a), Some(t)) => {
                if self.all {
                    a && t
                } else {
                    a || t
                }
            }
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
pub async fn serve(
    config: FanoutConfig,
    overlay: Overlay,
    cancel: CancellationToken,
) -> Result<SocketAddr, FanoutError> {
    let addr = config.addr;
    let listener = TcpListener::bind(addr).await.map_err(|source| FanoutError { addr, source })?;
    let local = listener.local_addr().map_err(|source| FanoutError { addr, source })?;
    // Writer threads, one per core (at most 4): each owns a share of the subscribers and writes
    // every frame to them, so a large audience uses every core without a task wake-up per
    // delivery. Frames reach each writer through a bounded queue: if a writer falls that far
    // behind, the publisher waits and the overlay's event channel absorbs (and reports) the
    // lag; the ingest path never waits on subscribers.
    let writers = match config.writers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4),
        n => n,
    };
    let mut shards = Vec::with_capacity(writers);
    let mut queues = Vec::with_capacity(writers);
    for i in 0..writers {
        let registry = Registry::default();
        let (frames_tx, frames_rx) = tokio::sync::mpsc::channel::<Arc<Frame>>(config.buffer.max(1));
        let shard = registry.clone();
        std::thread::Builder::new()
            .name(format!("flashnode-fanout-{i}"))
            .spawn({
                let max_delay = config.send_timeout;
                move || writer(frames_rx, shard, max_delay)
            })
            .map_err(|source| FanoutError { addr, source })?;
        shards.push(registry);
        queues.push(frames_tx);
    }
    let registry = Shards { shards: shards.into(), next: Default::default() };
    // One task turns applied flashblocks into frames, so every client shares one encoding.
    let mut events = overlay.subscribe();
    let c2 = cancel.clone();
    tokio::spawn(
        async move {
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
                        let frame =
                            Arc::new(Frame::new(flashblock.raw_json.clone(), addresses, topics));
                        for queue in &queues {
                            if queue.send(frame.clone()).await.is_err() {
                                return;
                            }
                        }
                        metrics::counter!("flashnode_fanout_flashblocks_total").increment(1);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "fan-out publisher lagged behind the overlay")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
        .instrument(info_span!("fanout_publisher")),
    );
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
                let (config, conns, registry, cancel) =
                    (config.clone(), conns.clone(), registry.clone(), cancel.clone());
                tokio::spawn(
                    async move {
                        if let Err(err) =
                            client(stream, peer, config, conns, registry, cancel).await
                        {
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
    metrics::counter!("flashnode_fanout_rejected_total", "status" => status.as_u16().to_string())
        .increment(1);
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
        ["ws"] => {
            return Err(reject(StatusCode::UNAUTHORIZED, "an API key is required: /ws/{key}"))
        }
        ["ws", key] | ["ws", key, "filter"] => {
            if !config.api_keys.iter().any(|k| k == key) {
                return Err(reject(StatusCode::UNAUTHORIZED, "unknown API key"));
            }
            if segments.len() == 3 {
                out.filter = Some(
                    FrameFilter::parse(query).map_err(|e| reject(StatusCode::BAD_REQUEST, &e))?,
                );
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
    let mut c =
        conns.lock().map_err(|_| reject(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    if c.total >= config.global_limit {
        return Err(reject(StatusCode::TOO_MANY_REQUESTS, "too many connections"));
    }
    let n = c.per_ip.entry(ip).or_default();
    if *n >= config.per_ip_limit {
        return Err(reject(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        ));
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
    registry: Shards,
    cancel: CancellationToken,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(config.socket_send_buffer);
    // Health checks are plain HTTP on the same port.
    let mut head = [0u8; 16];
    if let Ok(n) =
        tokio::time::timeout(Duration::from_secs(5), stream.peek(&mut head)).await.unwrap_or(Ok(0))
    {
        if head[..n].starts_with(b"GET /healthz") {
            // Read the request head first: closing with unread bytes would reset the connection.
            let mut buf = [0u8; 2048];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 8192 {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                )
                .await
                {
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
        |req: &Request, resp: Response| {
            admit(req, peer, &config, &conns, &mut admission).map(|_| resp)
        },
        Some(client_ws_config()),
    )
    .await?;
    let _slot = admission.slot;
    // From here the socket is shared with the writer thread, which writes flashblocks straight
    // to it; this task reads (pongs, pings, closes, through tungstenite over an in-memory
    // transport), sends pings, and finishes writes the socket could not take at once.
    let stream = ws.into_inner();
    let conn = Arc::new(Subscriber {
        stream,
        filter: admission.filter,
        brotli: admission.brotli,
        buffer: config.buffer.max(1),
        out: Mutex::new(Outbox::default()),
        wake: tokio::sync::Notify::new(),
    });
    let shard = registry.add(conn.clone());
    let result = serve_subscriber(&conn, &config, &cancel).await;
    conn.close("ended");
    // Out of the writer's set at once (a filtered or idle subscriber would otherwise be found
    // gone only on a later delivery), and the socket shut so the client sees the end now.
    shard.remove(&conn);
    let _ = socket2::SockRef::from(&conn.stream).shutdown(std::net::Shutdown::Both);
    match result {
        Ok(()) => Ok(()),
        Err(Ended::Io(e)) => Err(tokio_tungstenite::tungstenite::Error::Io(e)),
        Err(Ended::Ws(e)) => Err(e),
        Err(Ended::Dropped(reason)) => {
            metrics::counter!("flashnode_fanout_disconnects_total", "reason" => reason)
                .increment(1);
            Ok(())
        }
    }
}

/// Why a subscriber's task ended early.
#[derive(Debug)]
enum Ended {
    /// The socket failed.
    Io(std::io::Error),
    /// The client broke the websocket protocol.
    Ws(tokio_tungstenite::tungstenite::Error),
    /// Disconnected by the fan-out: `lagged`, `slow` or `pong_timeout`.
    Dropped(&'static str),
}

async fn serve_subscriber(
    conn: &Subscriber,
    config: &FanoutConfig,
    cancel: &CancellationToken,
) -> Result<(), Ended> {
    let mut reader = WebSocket::from_raw_socket(
        MemoryTransport::default(),
        Role::Server,
        Some(client_ws_config()),
    );
    let mut buf = [0u8; 4096];
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                conn.enqueue_close(control_frame(WsFrame::close(None)));
                let _ = tokio::time::timeout(config.send_timeout, drain(conn, config.send_timeout)).await;
                return Ok(());
            }
            _ = conn.wake.notified() => drain(conn, config.send_timeout).await?,
            _ = ping.tick() => {
                if last_seen.elapsed() > config.pong_timeout {
                    return Err(Ended::Dropped("pong_timeout"));
                }
                conn.enqueue(control_frame(WsFrame::ping(Bytes::new())));
                drain(conn, config.send_timeout).await?;
            }
            ready = conn.stream.readable() => {
                ready.map_err(Ended::Io)?;
                let n = match conn.stream.try_read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(Ended::Io(e)),
                };
                last_seen = tokio::time::Instant::now();
                reader.get_mut().input.extend(&buf[..n]);
                let mut closed = false;
                loop {
                    match reader.read() {
                        Ok(Message::Close(_)) => closed = true,
                        Ok(_) => {}
                        Err(tokio_tungstenite::tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed | tokio_tungstenite::tungstenite::Error::AlreadyClosed) => {
                            closed = true;
                            break;
                        }
                        Err(e) => return Err(Ended::Ws(e)),
                    }
                }
                // Pong and close replies tungstenite queued go out in order with the flashblocks.
                let _ = reader.flush();
                let replies = std::mem::take(&mut reader.get_mut().output);
                if !replies.is_empty() {
                    // After the client's Close, tungstenite's replies end with the close reply.
                    if closed { conn.enqueue_close(replies.into()) } else { conn.enqueue(replies.into()) }
                    drain(conn, config.send_timeout).await?;
                }
                if closed {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes what the writer thread could not, in order; a client whose socket takes no bytes for
/// `send_timeout` is dropped as slow.
async fn drain(conn: &Subscriber, send_timeout: Duration) -> Result<(), Ended> {
    loop {
        let (head, offset) = {
            let out = conn.out.lock().map_err(|_| Ended::Dropped("lagged"))?;
            if let Some(reason) = out.closed {
                return Err(Ended::Dropped(reason));
            }
            match out.queue.front() {
                None => return Ok(()),
                Some(b) => (b.clone(), out.offset),
            }
        };
        match tokio::time::timeout(send_timeout, conn.stream.writable()).await {
            Err(_) => {
                conn.close("slow");
                return Err(Ended::Dropped("slow"));
            }
            Ok(Err(e)) => return Err(Ended::Io(e)),
            Ok(Ok(())) => {}
        }
        match conn.stream.try_write(&head[offset..]) {
            Ok(n) => {
                let mut out = conn.out.lock().map_err(|_| Ended::Dropped("lagged"))?;
                out.offset += n;
                if out.offset >= head.len() {
                    out.queue.pop_front();
                    out.offset = 0;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Ended::Io(e)),
        }
    }
}

/// One connected subscriber, shared by its task and the writer thread.
#[derive(Debug)]
struct Subscriber {
    stream: TcpStream,
    filter: Option<FrameFilter>,
    brotli: bool,
    /// Frames a client may have queued before it is dropped as lagging.
    buffer: usize,
    out: Mutex<Outbox>,
    /// Wakes the task: bytes to finish writing, or the subscriber was dropped.
    wake: tokio::sync::Notify,
}

/// Bytes accepted for a subscriber but not yet taken by its socket. Whoever finds the queue
/// empty may write straight to the socket (under the lock); otherwise bytes are appended and the
/// task writes them in order, so frames never interleave.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Bytes>,
    /// Bytes of `queue[0]` already written.
    offset: usize,
    /// Set once the subscriber is dropped, with the reason.
    closed: Option<&'static str>,
    /// A Close frame is queued: nothing may follow it (RFC 6455), so flashblocks are refused.
    closing: bool,
}

/// What one delivery attempt did.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// Written to the socket or queued.
    Accepted,
    /// The subscriber is gone (or was just dropped as lagging).
    Gone,
}

impl Subscriber {
    /// Writes `bytes` now if nothing is queued and the socket takes them; else queues them for
    /// the task. Used by the writer thread for flashblocks and by the task for control frames.
    fn deliver(&self, bytes: Bytes, is_frame: bool) -> Delivery {
        let Ok(mut out) = self.out.lock() else { return Delivery::Gone };
        if out.closed.is_some() || (is_frame && out.closing) {
            return Delivery::Gone;
        }
        if !out.queue.is_empty() {
            if is_frame && out.queue.len() >= self.buffer {
                out.closed = Some("lagged");
                drop(out);
                self.wake.notify_one();
                return Delivery::Gone;
            }
            out.queue.push_back(bytes);
            return Delivery::Accepted;
        }
        match self.stream.try_write(&bytes) {
            Ok(n) if n == bytes.len() => return Delivery::Accepted,
            Ok(n) => {
                out.queue.push_back(bytes);
                out.offset = n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                out.queue.push_back(bytes);
                out.offset = 0;
            }
            Err(_) => {
                out.closed = Some("io");
                drop(out);
                self.wake.notify_one();
                return Delivery::Gone;
            }
        }
        drop(out);
        self.wake.notify_one();
        Delivery::Accepted
    }

    fn enqueue(&self, bytes: Bytes) {
        self.deliver(bytes, false);
    }

    /// Queues control bytes that end with a Close frame: from now on flashblocks are refused,
    /// so none follows the Close on the wire.
    fn enqueue_close(&self, bytes: Bytes) {
        if let Ok(mut out) = self.out.lock() {
            out.closing = true;
        }
        self.deliver(bytes, false);
    }

    /// Marks the subscriber dropped (first reason wins) and wakes its task.
    fn close(&self, reason: &'static str) {
        if let Ok(mut out) = self.out.lock() {
            out.closed.get_or_insert(reason);
        }
        self.wake.notify_one();
    }
}

/// The writer threads' subscriber sets; new subscribers go round-robin.
#[derive(Debug, Clone)]
struct Shards {
    shards: Arc<[Registry]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl Shards {
    /// Adds a subscriber to the next shard; returns that shard.
    fn add(&self, s: Arc<Subscriber>) -> Registry {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.shards.len();
        self.shards[i].add(s);
        self.shards[i].clone()
    }
}

/// The subscribers one writer thread delivers to.
#[derive(Debug, Clone, Default)]
struct Registry(Arc<Mutex<Vec<Arc<Subscriber>>>>);

impl Registry {
    fn add(&self, s: Arc<Subscriber>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(s);
        }
    }

    fn snapshot(&self) -> Vec<Arc<Subscriber>> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Drops the newest `1/divisor` of the subscribers (at least one) as `overload`; returns how
    /// many.
    fn shed_newest(&self, divisor: usize) -> usize {
        let Ok(mut v) = self.0.lock() else { return 0 };
        let n = v.len().div_ceil(divisor.max(1)).min(v.len());
        let keep = v.len() - n;
        for s in v.drain(keep..) {
            s.close("overload");
        }
        n
    }

    fn remove(&self, s: &Arc<Subscriber>) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|x| !Arc::ptr_eq(x, s));
        }
    }

    fn remove_gone(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|s| s.out.lock().is_ok_and(|o| o.closed.is_none()));
        }
    }
}

/// A writer thread: every frame, in order, to each subscriber of its shard, with one
/// non-blocking write each (the same bytes for all). A subscriber whose socket is full gets the rest written by its
/// own task; the writer never waits for one.
///
/// A writer that starts a frame more than `max_delay` after it was built cannot keep up with its
/// audience (too many subscribers for the CPU it gets): it drops the newest tenth of its
/// subscribers (counted as `overload`), frame after frame until it is back in time, so the rest
/// keep getting fresh frames instead of everyone falling seconds behind.
fn writer(
    mut frames: tokio::sync::mpsc::Receiver<Arc<Frame>>,
    registry: Registry,
    max_delay: Duration,
) {
    let _span = info_span!("fanout_writer").entered();
    let mut last_warn: Option<std::time::Instant> = None;
    let mut last_shed: Option<std::time::Instant> = None;
    while let Some(frame) = frames.blocking_recv() {
        let late = frame.built.elapsed();
        // Frames already queued when a shed happened are late because of the backlog that shed
        // addresses: only a frame built after the last shed may trigger the next one.
        if late > max_delay && last_shed.is_none_or(|t| frame.built > t) {
            last_shed = Some(std::time::Instant::now());
            let shed = registry.shed_newest(10);
            if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!(
                    late_ms = late.as_millis() as u64,
                    shed, "fan-out overloaded: dropping the newest subscribers"
                );
                last_warn = Some(std::time::Instant::now());
            }
        }
        let subscribers = registry.snapshot();
        let (mut bytes, mut gone) = (0u64, 0usize);
        for s in &subscribers {
            if s.filter.as_ref().is_some_and(|f| !f.matches(&frame)) {
                continue;
            }
            let wire = if s.brotli { frame.brotli() } else { frame.text.clone() };
            let len = wire.len() as u64;
            match s.deliver(wire, true) {
                Delivery::Accepted => bytes += len,
                Delivery::Gone => gone += 1,
            }
        }
        metrics::counter!("flashnode_fanout_bytes_total").increment(bytes);
        if gone > 0 {
            registry.remove_gone();
        }
    }
}

/// A control frame's wire bytes.
fn control_frame(frame: WsFrame) -> Bytes {
    let mut out = Vec::with_capacity(frame.len());
    if let Err(err) = frame.format(&mut out) {
        warn!(%err, "cannot format a control frame");
    }
    out.into()
}

/// tungstenite's transport for a subscriber's inbound bytes: reads what the task put in
/// `input` (WouldBlock when empty), writes replies to `output` for the task to send in order.
#[derive(Debug, Default)]
struct MemoryTransport {
    input: VecDeque<u8>,
    output: Vec<u8>,
}

impl std::io::Read for MemoryTransport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.input.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        std::io::Read::read(&mut self.input, buf)
    }
}

impl std::io::Write for MemoryTransport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

    /// An overloaded writer drops the newest tenth of its subscribers once per backlog, and the
    /// others still get every frame, over real loopback sockets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overloaded_writer_sheds_the_newest_subscribers() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::default();
        let (mut clients, mut subs) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let sub = Arc::new(Subscriber {
                stream: server,
                filter: None,
                brotli: false,
                buffer: 4,
                out: Mutex::new(Outbox::default()),
                wake: tokio::sync::Notify::new(),
            });
            registry.add(sub.clone());
            clients.push(client);
            subs.push(sub);
        }
        let mut frame = Frame::new("{\"index\":0}".into(), HashSet::new(), HashSet::new());
        frame.built -= Duration::from_secs(5);
        // A second frame that was already waiting when the first one was shed for: late too, but
        // it must not shed again (the backlog it sat in is what the first shed addressed).
        let mut queued = Frame::new("{\"index\":1}".into(), HashSet::new(), HashSet::new());
        queued.built -= Duration::from_secs(5);
        let expected = [frame.text.clone(), queued.text.clone()].concat();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.send(Arc::new(frame)).await.unwrap();
        tx.send(Arc::new(queued)).await.unwrap();
        let writer_thread = std::thread::spawn({
            let registry = registry.clone();
            move || writer(rx, registry, Duration::from_secs(1))
        });
        drop(tx);
        writer_thread.join().unwrap();
        let reasons: Vec<Option<&str>> =
            subs.iter().map(|s| s.out.lock().unwrap().closed).collect();
        assert_eq!(reasons[..18], [None; 18]);
        assert_eq!(reasons[18..], [Some("overload"); 2]);
        for client in clients.iter_mut().take(18) {
            let mut got = vec![0u8; expected.len()];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, expected);
        }
        assert_eq!(registry.snapshot().len(), 18);
    }

    #[test]
    fn filters_parse_and_match() {
        let a: Address = "0x1111111111111111111111111111111111111111".parse().unwrap();
        let t = B256::repeat_byte(2);
        let f = FrameFilter::parse(&format!("addresses={a}&topics={t}&match=all")).unwrap();
        let frame = |addrs: &[Address], topics: &[B256]| {
            Frame::new(
                "{}".into(),
                addrs.iter().copied().collect(),
                topics.iter().copied().collect(),
            )
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
