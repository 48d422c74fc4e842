//! The server: accepting (counted against the limits at once), the handshake under one
//! deadline, `/healthz`, and each subscriber's task (pings, pongs, closes, and writes the
//! socket could not take at once).

use crate::{
    admission::{client_ip, Limits, Paths, Rejection, Route, Slot},
    frame::{close_frame, going_away_frame, ping_frame, Frame, SourceFrame},
    handshake::{read_head, refusal, switching_protocols, HeadError, HEALTH_OK},
    outbox::{DisconnectReason, Ended, Offer, Subscriber},
    resume::{gap_before_ring, Cursor, From, OnGap, Resume, RESUME_GAP_CLOSE_CODE},
    ring::{Evicted, Located, Ring},
    shard::{writer_count, Shards},
    FanoutConfig, FanoutError,
};
use flashnode_tasks::TaskExecutor;
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{mpsc, Semaphore},
};
use tokio_tungstenite::tungstenite::{
    protocol::{Role, WebSocket},
    Message,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, Instrument};

/// Connections refused at accept that may be answered at once (each holds a descriptor for
/// the handshake deadline at most); past that a refused connection is closed unanswered.
pub(crate) const REFUSALS_IN_FLIGHT: usize = 64;

/// A running fan-out.
#[derive(Debug, Clone)]
pub struct Fanout {
    addr: SocketAddr,
    global_limit: usize,
}

impl Fanout {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection limit in force: `global_limit`, or less when the process's descriptor
    /// limit could not hold it.
    pub fn global_limit(&self) -> usize {
        self.global_limit
    }
}

/// Everything a connection's task shares.
#[derive(Debug)]
struct Shared {
    config: FanoutConfig,
    paths: Paths,
    limits: Arc<Limits>,
    shards: Shards,
    refusals: Arc<Semaphore>,
    /// The recent frames, shared with the publisher.
    ring: Arc<Mutex<Ring>>,
}

/// Frames a catching-up subscriber takes from the ring per lock.
const CATCH_UP_BATCH: usize = 16;

/// Binds, and serves the frames from `frames` until `cancel` (once `frames` closes nothing more
/// is published; connected subscribers stay until they leave). Returns once listening.
///
/// Frames are published in the order received; each is built once and written to every
/// subscriber by the writer threads. If the writers fall a queue behind, the publisher waits,
/// so `frames` fills and its sender sees the backpressure; subscribers never slow the source.
///
/// The publisher (`fanout_publisher`) and the accept loop (`fanout`) are critical tasks of
/// `tasks`: a panic in either, or the accept loop ending before shutdown, is a
/// [`flashnode_tasks::TaskFailure`].
pub async fn serve(
    config: FanoutConfig,
    frames: mpsc::Receiver<SourceFrame>,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Result<Fanout, FanoutError> {
    let addr = config.addr;
    let global_limit = crate::fd::connection_cap(config.global_limit, config.fd_reserve)?;
    let listener =
        TcpListener::bind(addr).await.map_err(|source| FanoutError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| FanoutError::Bind { addr, source })?;
    let (shards, queues) =
        Shards::start(writer_count(config.writers), config.buffer, config.send_timeout)
            .map_err(|source| FanoutError::Writer { source })?;
    let ring = Arc::new(Mutex::new(Ring::new(config.ring_frames, config.ring_bytes)));
    tasks.spawn_critical(
        "fanout_publisher",
        publish(frames, queues, ring.clone(), cancel.clone())
            .instrument(info_span!("fanout_publisher")),
    );
    let shared = Arc::new(Shared {
        ring,
        paths: Paths { public: config.public, api_keys: config.api_keys.clone() },
        limits: Limits::with_per_key(config.per_ip_limit, global_limit, config.per_key_limit),
        shards,
        refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
        config,
    });
    info!(addr = %local, global_limit, "flashblock fan-out on ws://{local}/ws");
    tasks.spawn_critical(
        "fanout",
        accept_loop(listener, shared, cancel).instrument(info_span!("fanout", addr = %local)),
    );
    Ok(Fanout { addr: local, global_limit })
}

/// Turns source frames into wire frames, once each, keeps them in the ring (before any writer
/// sees them, so a subscriber catching up finds every frame a writer skipped for it), and hands
/// them to every writer. When the source closes it idles until `cancel` (the writers keep
/// serving who is connected): only a shutdown ends it.
async fn publish(
    mut frames: mpsc::Receiver<SourceFrame>,
    queues: Vec<mpsc::Sender<Arc<Frame>>>,
    ring: Arc<Mutex<Ring>>,
    cancel: CancellationToken,
) {
    loop {
        let source = tokio::select! {
            _ = cancel.cancelled() => return,
            f = frames.recv() => match f {
                Some(f) => f,
                None => {
                    debug!("fan-out source closed; nothing more to publish");
                    cancel.cancelled().await;
                    return;
                }
            },
        };
        let frame = match ring.lock() {
            Ok(mut ring) => ring.push(source),
            Err(_) => return,
        };
        for queue in &queues {
            if queue.send(frame.clone()).await.is_err() {
                // A writer thread is gone (it panicked): the fan-out cannot publish.
                tracing::error!("a fan-out writer thread stopped");
                return;
            }
        }
        metrics::counter!("flashnode_fanout_flashblocks_total").increment(1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(err) => {
                    // Out of descriptors (or a transient error): back off instead of spinning.
                    debug!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Counted now: behind a trusted proxy the client's own address is known only from
        // its request, so then only the global limit applies until the head is read.
        let ip = (!shared.config.trust_forwarded_for).then(|| peer.ip());
        match shared.limits.accept(ip) {
            Ok(slot) => {
                let (shared, cancel) = (shared.clone(), cancel.clone());
                tokio::spawn(
                    async move {
                        if let Err(err) = client(stream, peer, slot, &shared, &cancel).await {
                            debug!(%err, "fan-out client ended");
                        }
                    }
                    .instrument(info_span!("fanout_client", %peer)),
                );
            }
            Err(rejection) => refuse_at_accept(stream, rejection, &shared, &cancel),
        }
    }
}

/// A connection past a limit: answered (429, or 200 to a health check) if few others are being
/// answered, else closed at once; either way it holds no slot.
fn refuse_at_accept(
    mut stream: TcpStream,
    rejection: Rejection,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) {
    count_rejection(&rejection);
    let Ok(permit) = shared.refusals.clone().try_acquire_owned() else {
        metrics::counter!("flashnode_fanout_refused_unanswered_total").increment(1);
        return;
    };
    let (deadline, cancel) = (shared.config.handshake_timeout, cancel.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let answer = async {
            // Read the request first: closing with unread bytes would reset the connection
            // before the client reads the answer.
            let health = read_head(&mut stream).await.is_ok_and(|h| h.is_health());
            let bytes = if health { HEALTH_OK.to_vec() } else { refusal(&rejection) };
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::timeout(deadline, answer) => {}
        }
    });
}

fn count_rejection(rejection: &Rejection) {
    metrics::counter!(
        "flashnode_fanout_rejected_total",
        "status" => rejection.status().to_string(),
        "reason" => rejection.label()
    )
    .increment(1);
}

/// What the handshake ended with.
enum Handshake {
    /// Answered (health check or refusal); the connection is done.
    Answered,
    /// A subscriber: its route (boxed: it is large) and the bytes it sent after its request.
    Subscribe(Box<Route>, Vec<u8>, Slot),
}

/// Why a handshake failed without an answer.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("handshake not complete within {0:?}")]
    Timeout(Duration),
    #[error("request head: {0}")]
    Head(#[from] HeadError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl HandshakeError {
    const fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Head(e) => e.label(),
            Self::Io(_) => "io",
        }
    }
}

/// Reads the request and answers it: a health check, a refusal with its reason, or the 101 of
/// a subscriber (whose per-address share is claimed here when it comes from a trusted proxy).
async fn handshake(
    stream: &mut TcpStream,
    peer: SocketAddr,
    mut slot: Slot,
    shared: &Shared,
) -> Result<Handshake, HandshakeError> {
    let config = &shared.config;
    let head = match read_head(stream).await {
        Ok(head) => head,
        Err(err) => {
            if let Some(rejection) = err.rejection() {
                count_rejection(&rejection);
                drop(slot);
                stream.write_all(&refusal(&rejection)).await?;
                let _ = stream.shutdown().await;
            }
            return Err(err.into());
        }
    };
    let decided = if head.is_health() {
        Ok(None)
    } else if head.method != "GET" {
        Err(Rejection::Method)
    } else {
        shared.paths.route(&head.path, &head.query).and_then(|route| {
            let key = head.upgrade_key()?;
            if let Some(api_key) = &route.key {
                slot.claim_key(api_key)?;
            }
            if config.trust_forwarded_for {
                let ip = client_ip(
                    peer.ip(),
                    head.headers("x-forwarded-for"),
                    config.trusted_proxy_hops,
                );
                slot.claim(ip)?;
            }
            Ok(Some((route, key)))
        })
    };
    let answer = match decided {
        Ok(Some((route, key))) => {
            stream.write_all(&switching_protocols(&key)).await?;
            return Ok(Handshake::Subscribe(Box::new(route), head.rest, slot));
        }
        Ok(None) => HEALTH_OK.to_vec(),
        Err(rejection) => {
            count_rejection(&rejection);
            refusal(&rejection)
        }
    };
    // Released before the answer, so a client that reads it and connects again is not
    // refused for the connection it just finished.
    drop(slot);
    stream.write_all(&answer).await?;
    let _ = stream.shutdown().await;
    Ok(Handshake::Answered)
}

async fn client(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Result<(), Ended> {
    let config = &shared.config;
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(config.socket_send_buffer);
    // One deadline for the whole handshake (request head, checks, 101): a socket that sends
    // nothing, or a byte at a time, holds its slot for this long at most.
    let deadline = config.handshake_timeout;
    let outcome = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = tokio::time::timeout(deadline, handshake(&mut stream, peer, slot, shared)) => {
            r.unwrap_or(Err(HandshakeError::Timeout(deadline)))
        }
    };
    let (route, rest, slot) = match outcome {
        Ok(Handshake::Answered) => return Ok(()),
        Ok(Handshake::Subscribe(route, rest, slot)) => (*route, rest, slot),
        Err(err) => {
            metrics::counter!("flashnode_fanout_handshake_failures_total", "reason" => err.label())
                .increment(1);
            debug!(%err, "fan-out handshake failed");
            return Ok(());
        }
    };
    // From here the socket is shared with the writer thread, which writes flashblocks straight
    // to it; this task reads (pongs, pings, closes, through tungstenite over an in-memory
    // transport), sends pings, and finishes writes the socket could not take at once.
    let conn = Arc::new(Subscriber::new(
        stream,
        route.filter,
        config.compression || route.brotli,
        config.buffer,
    ));
    metrics::gauge!("flashnode_fanout_clients").increment(1.0);
    let gap = start(&conn, route.resume, &shared.ring);
    let shard = shared.shards.add(conn.clone());
    let result = match gap {
        Some(reason) => {
            conn.close_with(
                close_frame(RESUME_GAP_CLOSE_CODE, &reason),
                DisconnectReason::ResumeGap,
            );
            conn.drain(config.send_timeout)
                .await
                .and(Err(Ended::Dropped(DisconnectReason::ResumeGap)))
        }
        None => match catch_up(&conn, &shared.ring, config.send_timeout).await {
            Ok(()) => serve_subscriber(&conn, config, cancel, rest).await,
            Err(e) => Err(e),
        },
    };
    conn.close(DisconnectReason::Ended);
    // Out of the writer's set at once, and the socket shut so the client sees the end now.
    shard.remove(&conn);
    let _ = socket2::SockRef::from(&conn.stream).shutdown(std::net::Shutdown::Both);
    metrics::gauge!("flashnode_fanout_clients").decrement(1.0);
    drop(slot);
    match result {
        Err(Ended::Dropped(reason)) => {
            metrics::counter!("flashnode_fanout_disconnects_total", "reason" => reason.label())
                .increment(1);
            Ok(())
        }
        other => other,
    }
}

/// Places a new subscriber in the sequence: a plain one at the live edge, a resuming one after
/// its point (or at the ring's start, or the live edge, to skip up to it); the close reason when
/// the ring cannot continue from its point.
fn start(conn: &Subscriber, resume: Option<Resume>, ring: &Mutex<Ring>) -> Option<String> {
    let Ok(ring) = ring.lock() else { return Some("the fan-out's ring is unavailable".into()) };
    let Some(Resume { from, on_gap }) = resume else {
        conn.start_at(ring.next_seq(), Cursor::Live);
        return None;
    };
    let outcome = match from {
        From::Earliest => {
            conn.start_at(ring.first_seq(), Cursor::Live);
            "earliest"
        }
        From::After(after) => match ring.locate(after) {
            Located::Found(seq) => {
                conn.start_at(seq, Cursor::After { after, on_gap });
                "replayed"
            }
            Located::Ahead(seq) => {
                conn.start_at(seq, Cursor::After { after, on_gap });
                "ahead"
            }
            Located::Gap { oldest } => match on_gap {
                OnGap::Close => {
                    metrics::counter!("flashnode_fanout_resumes_total", "outcome" => "gap")
                        .increment(1);
                    return Some(gap_before_ring(after, oldest));
                }
                OnGap::NextBlock => {
                    conn.start_at(ring.next_seq(), Cursor::NextIndexZero);
                    "next_block"
                }
            },
        },
    };
    metrics::counter!("flashnode_fanout_resumes_total", "outcome" => outcome).increment(1);
    None
}

/// Brings a subscriber from its start to the live edge with the frames in the ring, at the pace
/// its socket takes them; from there its writer delivers. A subscriber that falls further
/// behind than the ring reaches is dropped as lagged.
async fn catch_up(
    conn: &Subscriber,
    ring: &Mutex<Ring>,
    send_timeout: Duration,
) -> Result<(), Ended> {
    loop {
        let batch = match ring.lock() {
            Ok(ring) => ring.since(conn.next_seq(), CATCH_UP_BATCH),
            Err(_) => Err(Evicted),
        };
        let frames = match batch {
            Ok(frames) if frames.is_empty() => return Ok(()),
            Ok(frames) => frames,
            Err(Evicted) => {
                conn.close(DisconnectReason::Lagged);
                return Err(Ended::Dropped(DisconnectReason::Lagged));
            }
        };
        for frame in &frames {
            match conn.offer(frame, false) {
                Offer::Sent(_) => {
                    metrics::counter!("flashnode_fanout_replayed_frames_total").increment(1)
                }
                Offer::Skipped | Offer::NotNext => continue,
                Offer::Gone => {}
            }
            conn.drain(send_timeout).await?;
            if let Some(reason) = conn.finished() {
                return Err(Ended::Dropped(reason));
            }
        }
    }
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

/// Feeds inbound bytes to tungstenite and queues its replies (pongs, the close reply) in order
/// with the flashblocks; true once the client closed.
async fn on_input(
    reader: &mut WebSocket<MemoryTransport>,
    conn: &Subscriber,
    bytes: &[u8],
    send_timeout: Duration,
) -> Result<bool, Ended> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    reader.get_mut().input.extend(bytes);
    let mut closed = false;
    loop {
        match reader.read() {
            Ok(Message::Close(_)) => closed = true,
            Ok(_) => {}
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                closed = true;
                break;
            }
            Err(e) => return Err(Ended::Ws(e)),
        }
    }
    let _ = reader.flush();
    let replies = std::mem::take(&mut reader.get_mut().output);
    if !replies.is_empty() {
        // After the client's Close, tungstenite's replies end with the close reply.
        if closed {
            conn.enqueue_close(replies.into())
        } else {
            conn.enqueue(replies.into())
        }
        conn.drain(send_timeout).await?;
    }
    Ok(closed)
}

async fn serve_subscriber(
    conn: &Subscriber,
    config: &FanoutConfig,
    cancel: &CancellationToken,
    early: Vec<u8>,
) -> Result<(), Ended> {
    let mut reader = WebSocket::from_raw_socket(
        MemoryTransport::default(),
        Role::Server,
        Some(client_ws_config()),
    );
    if !early.is_empty() && on_input(&mut reader, conn, &early, config.send_timeout).await? {
        return Ok(());
    }
    let mut buf = [0u8; 4096];
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_seen = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                conn.enqueue_close(going_away_frame());
                let _ = tokio::time::timeout(config.send_timeout, conn.drain(config.send_timeout)).await;
                return Ok(());
            }
            _ = conn.wake.notified() => {
                conn.drain(config.send_timeout).await?;
                if let Some(reason) = conn.finished() {
                    return Err(Ended::Dropped(reason));
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > config.pong_timeout {
                    return Err(Ended::Dropped(DisconnectReason::PongTimeout));
                }
                conn.enqueue(ping_frame());
                conn.drain(config.send_timeout).await?;
            }
            ready = conn.stream.readable() => {
                ready?;
                let n = match conn.stream.try_read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(Ended::Io(e)),
                };
                last_seen = tokio::time::Instant::now();
                if on_input(&mut reader, conn, &buf[..n], config.send_timeout).await? {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    async fn start(config: FanoutConfig) -> (Fanout, mpsc::Sender<SourceFrame>, CancellationToken) {
        let (tx, rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let tasks = flashnode_tasks::TaskManager::new().executor();
        let config = FanoutConfig { addr: ([127, 0, 0, 1], 0).into(), ..config };
        let fanout = serve(config, rx, cancel.clone(), &tasks).await.unwrap();
        (fanout, tx, cancel)
    }

    async fn http(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_reach_subscribers_as_sent_and_shutdown_says_going_away() {
        let (fanout, tx, cancel) = start(FanoutConfig::default()).await;
        let url = format!("ws://{}/ws", fanout.addr());
        let (mut text, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        let (mut brotli, _) =
            tokio_tungstenite::connect_async(format!("{url}?compress=brotli")).await.unwrap();
        // Both are registered once a ping round-trips (the handshake is done server-side).
        for ws in [&mut text, &mut brotli] {
            ws.send(Message::Ping(b"x".to_vec().into())).await.unwrap();
            assert!(matches!(ws.next().await, Some(Ok(Message::Pong(_)))));
        }
        for i in 0..3 {
            tx.send(SourceFrame::new(format!("{{\"index\":{i}}}").into(), 7, i)).await.unwrap();
        }
        for i in 0..3 {
            let Some(Ok(Message::Text(t))) = text.next().await else { panic!("a text frame") };
            assert_eq!(t.as_str(), format!("{{\"index\":{i}}}"));
            let Some(Ok(Message::Binary(b))) = brotli.next().await else {
                panic!("a binary frame")
            };
            let mut out = Vec::new();
            brotli::BrotliDecompress(&mut &b[..], &mut out).unwrap();
            assert_eq!(out, format!("{{\"index\":{i}}}").as_bytes());
        }
        cancel.cancel();
        match text.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    }

    fn numbered(block: u64, index: u64) -> SourceFrame {
        SourceFrame::new(format!("{block}-{index}").into(), block, index)
    }

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Connects to `path` and checks the 101 advertises resume.
    async fn connect(addr: SocketAddr, path: &str) -> Client {
        let (ws, response) =
            tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await.unwrap();
        assert_eq!(
            response.headers().get(crate::RESUME_HEADER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        ws
    }

    /// The next Text frame, or what came instead.
    async fn next_text(ws: &mut Client) -> Result<String, Option<(u16, String)>> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// Waits until the publisher has put `n` frames in the ring.
    async fn published(tx: &mpsc::Sender<SourceFrame>, frames: &[(u64, u64)]) {
        for &(b, i) in frames {
            tx.send(numbered(b, i)).await.unwrap();
        }
        // The channel is empty once the publisher took them all (it rings them first).
        while tx.capacity() < tx.max_capacity() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// `from=` replays every later frame still in the ring, then the live stream: no
    /// duplicate, no gap; a subscriber without it gets only what is published after it joined.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resume_replays_the_ring_then_goes_live() {
        let (fanout, tx, _cancel) = start(FanoutConfig::default()).await;
        published(&tx, &[(7, 0), (7, 1), (7, 2), (7, 3), (7, 4)]).await;
        let mut resumed = connect(fanout.addr(), "/ws?from=7-1").await;
        let mut plain = connect(fanout.addr(), "/ws").await;
        let mut earliest = connect(fanout.addr(), "/ws?from=earliest").await;
        for want in ["7-2", "7-3", "7-4"] {
            assert_eq!(next_text(&mut resumed).await.unwrap(), want);
        }
        // Registered (a ping round trip), then live.
        for ws in [&mut plain, &mut resumed] {
            ws.send(Message::Ping(b"x".to_vec().into())).await.unwrap();
            assert!(matches!(ws.next().await, Some(Ok(Message::Pong(_)))));
        }
        published(&tx, &[(7, 5), (8, 0)]).await;
        assert_eq!(next_text(&mut resumed).await.unwrap(), "7-5");
        assert_eq!(next_text(&mut resumed).await.unwrap(), "8-0");
        assert_eq!(next_text(&mut plain).await.unwrap(), "7-5", "nothing replayed unasked");
        assert_eq!(next_text(&mut plain).await.unwrap(), "8-0");
        for want in ["7-0", "7-1", "7-2", "7-3", "7-4", "7-5", "8-0"] {
            assert_eq!(next_text(&mut earliest).await.unwrap(), want);
        }
    }

    /// A point older than the ring is closed with the gap code and a reason; with
    /// `on_gap=next_block` the subscriber gets the live stream from the next index 0. A point
    /// ahead of the ring waits for the frame after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gaps_close_with_a_reason_or_continue_at_the_next_block() {
        let (fanout, tx, _cancel) =
            start(FanoutConfig { ring_frames: 3, ..Default::default() }).await;
        published(&tx, &[(7, 0), (7, 1), (7, 2), (7, 3), (7, 4)]).await;
        let mut old = connect(fanout.addr(), "/ws?from=7-0").await;
        let (code, reason) = next_text(&mut old).await.unwrap_err().expect("a close frame");
        assert_eq!(code, RESUME_GAP_CLOSE_CODE);
        assert!(reason.contains("7-0 is older than the ring (oldest 7-2)"), "{reason}");
        let mut next = connect(fanout.addr(), "/ws?from=7-0&on_gap=next_block").await;
        let mut ahead = connect(fanout.addr(), "/ws?from=7-6").await;
        for ws in [&mut next, &mut ahead] {
            ws.send(Message::Ping(b"x".to_vec().into())).await.unwrap();
            assert!(matches!(ws.next().await, Some(Ok(Message::Pong(_)))));
        }
        published(&tx, &[(7, 5), (7, 6), (7, 7), (8, 0), (8, 1)]).await;
        assert_eq!(next_text(&mut next).await.unwrap(), "8-0");
        assert_eq!(next_text(&mut next).await.unwrap(), "8-1");
        assert_eq!(next_text(&mut ahead).await.unwrap(), "7-7", "skipped up to its point");
        // A point the stream jumps over is a gap too.
        let mut jumped = connect(fanout.addr(), "/ws?from=8-5").await;
        jumped.send(Message::Ping(b"x".to_vec().into())).await.unwrap();
        assert!(matches!(jumped.next().await, Some(Ok(Message::Pong(_)))));
        published(&tx, &[(8, 2)]).await;
        published(&tx, &[(8, 7)]).await;
        let (code, reason) = next_text(&mut jumped).await.unwrap_err().expect("a close frame");
        assert_eq!(code, RESUME_GAP_CLOSE_CODE);
        assert!(reason.contains("8-5 is followed by 8-7"), "{reason}");
    }

    /// Subscribers that join (plain or resuming) while frames stream get a contiguous sequence:
    /// the hand-over from the ring to the writer loses and repeats nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn joining_mid_stream_never_loses_or_repeats_a_frame() {
        let (fanout, tx, _cancel) =
            start(FanoutConfig { ring_frames: 1_000, per_ip_limit: 100, ..Default::default() })
                .await;
        let addr = fanout.addr();
        let publisher = tokio::spawn(async move {
            for i in 0..400u64 {
                tx.send(numbered(1, i)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tx
        });
        let mut joined = Vec::new();
        for k in 0..16u64 {
            let path = if k % 2 == 0 { "/ws".to_string() } else { format!("/ws?from=1-{}", k * 5) };
            joined.push((path.clone(), connect(addr, &path).await));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let _tx = publisher.await.unwrap();
        for (path, mut ws) in joined {
            let mut prev: Option<u64> = path.split_once("from=1-").map(|(_, i)| i.parse().unwrap());
            loop {
                let text = next_text(&mut ws).await.unwrap();
                let i: u64 = text.trim_start_matches("1-").parse().unwrap();
                if let Some(p) = prev {
                    assert_eq!(i, p + 1, "{path}: {p} then {i}");
                }
                prev = Some(i);
                if i == 399 {
                    break;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_http_gets_answers_not_silence() {
        let (fanout, _tx, _cancel) = start(FanoutConfig::default()).await;
        let addr = fanout.addr();
        let health = http(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok"), "{health}");
        let plain = http(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(plain.starts_with("HTTP/1.1 426 Upgrade Required"), "{plain}");
        assert!(plain.contains("/ws is a websocket endpoint"), "{plain}");
        let gzip = http(addr, "GET /ws?compress=gzip HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            gzip.starts_with("HTTP/1.1 400 Bad Request") && gzip.contains("\"gzip\""),
            "{gzip}"
        );
        let post = http(addr, "POST /ws HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let lost = http(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(lost.starts_with("HTTP/1.1 404"), "{lost}");
    }

    /// Half-open sockets count from accept: past the per-address limit they are refused at
    /// once, and those admitted are closed at the handshake deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_open_sockets_are_bounded_and_time_out() {
        let (fanout, _tx, _cancel) = start(FanoutConfig {
            per_ip_limit: 3,
            handshake_timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .await;
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(TcpStream::connect(fanout.addr()).await.unwrap());
        }
        // A fourth is over the limit while the three hold their slots.
        let refused = http(fanout.addr(), "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
        // The silent ones are closed by the deadline (EOF, nothing written).
        for s in &mut silent {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
                .await
                .expect("closed by the handshake deadline")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        // And the slots are free again.
        let url = format!("ws://{}/ws", fanout.addr());
        let mut ok = false;
        for _ in 0..50 {
            if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "slots released after the deadline");
    }
}
