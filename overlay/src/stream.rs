//! The flashblock websocket client.
//!
//! [`run_stream`] owns the connection: it connects, keeps the link provably alive (pings plus a
//! silence timeout, because a half-open socket otherwise freezes `pending` forever), decodes
//! frames with [`decode_frame`] and reconnects with jittered exponential backoff. Liveness and
//! backoff live here and nowhere else; the consumer only sees [`StreamEvent`]s.
//!
//! When the upstream advertises resume (a flashnode fan-out or relay answers its 101 with
//! `x-flashnode-resume`), a reconnect asks for `?from=<last flashblock>&on_gap=next_block`: the
//! upstream replays what was missed from its ring, so a blip mid-block no longer costs the rest
//! of the block ([`StreamEvent::Resumed`]).

use std::{sync::Arc, time::Duration};

use flashnode_tasks::Backoff;
use flashnode_wsclient::{
    redact, with_query, StreamClientConfig, WarnLimiter, RESUME_HEADER, WARN_PERIOD,
};
use futures::{SinkExt, StreamExt};
use metrics::{counter, gauge};
use tokio::{
    net::TcpStream,
    sync::mpsc,
    time::{sleep, sleep_until, timeout, timeout_at, Instant, MissedTickBehavior},
};
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{self, Bytes, Message},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::{
    frame::{decode_frame, DecodedFlashblock},
    metrics_names::{
        STREAM_BYTES_TOTAL, STREAM_CONNECTED, STREAM_DISCONNECTS_TOTAL, STREAM_FRAMES_TOTAL,
        STREAM_MALFORMED_TOTAL, STREAM_RECONNECTS_TOTAL, STREAM_RESUMES_TOTAL,
    },
};

pub use flashnode_wsclient::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_PING_INTERVAL, DEFAULT_SILENCE_TIMEOUT,
};

/// How long a goodbye Close frame may take when cancelled.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// Malformed-frame kind for frames above [`StreamConfig::max_frame_bytes`].
const FRAME_TOO_LARGE: &str = "frame_too_large";

/// Configuration of [`run_stream`] (the settings every flashblock stream client shares).
pub type StreamConfig = StreamClientConfig;

/// Why a connection to the stream ended or an attempt failed: the `reason` label of
/// `flashnode_stream_disconnects_total` and of the disconnect logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The server sent a Close frame (or the socket was already closed).
    Closed,
    /// The stream ended without a Close frame.
    Eof,
    /// Neither a frame nor a pong within the silence timeout (or a ping not written in it).
    Silent,
    /// A frame above the frame cap.
    FrameTooLarge,
    /// A socket error.
    Io,
    /// The server broke the websocket protocol.
    Protocol,
    /// Another read error.
    ReadError,
    /// A ping could not be written.
    PingFailed,
    /// The connection attempt failed.
    ConnectFailed,
    /// The handshake did not complete within the connect timeout.
    ConnectTimeout,
}

impl DisconnectReason {
    /// Stable, low-cardinality label for metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Eof => "eof",
            Self::Silent => "silent",
            Self::FrameTooLarge => FRAME_TOO_LARGE,
            Self::Io => "io",
            Self::Protocol => "protocol",
            Self::ReadError => "read_error",
            Self::PingFailed => "ping_failed",
            Self::ConnectFailed => "connect_failed",
            Self::ConnectTimeout => "connect_timeout",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What [`run_stream`] reports to its consumer.
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// A connection was established (a fresh stream: the block in progress is not continued).
    Connected,
    /// A connection was re-established right after the last flashblock delivered: the
    /// upstream replays every flashblock after it (or continues at the next index 0 when it no
    /// longer has them), so the block in progress goes on.
    Resumed {
        /// The last flashblock delivered before, `(block_number, index)`.
        after: (u64, u64),
    },
    /// The connection was lost; a reconnect follows. Only sent after [`Self::Connected`] or
    /// [`Self::Resumed`].
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// What the socket or the server said.
        detail: String,
    },
    /// A decoded flashblock, in arrival order.
    Flashblock(Arc<DecodedFlashblock>),
    /// A frame that could not be decoded; the stream keeps going.
    Malformed {
        /// Stable label: a [`FrameError::kind`](crate::frame::FrameError::kind) or
        /// `frame_too_large`.
        kind: &'static str,
        /// Human-readable error.
        error: String,
    },
}

/// Runs the flashblock stream client until `cancel` fires or `tx`'s receiver is dropped.
///
/// Connects to `config.url`, pings every `ping_interval`, drops the connection when neither a
/// frame nor a pong arrived within `silence_timeout`, and reconnects forever with full-jitter
/// exponential backoff between `backoff_min` and `backoff_max` (reset after a connection that
/// delivered at least one flashblock). Events are sent with `send().await`, so a slow consumer
/// applies backpressure to the socket instead of growing a queue.
pub async fn run_stream(
    config: StreamConfig,
    tx: mpsc::Sender<StreamEvent>,
    cancel: CancellationToken,
) {
    let span = info_span!("flashblock_stream", url = %redact(&config.url));
    let backoff = Backoff::new(config.backoff_min, config.backoff_max).with_jitter();
    StreamTask {
        config,
        tx,
        cancel,
        backoff,
        malformed_log: WarnLimiter::new(WARN_PERIOD),
        disconnect_log: WarnLimiter::new(WARN_PERIOD),
        last: None,
        resumable: false,
        resume_refused: false,
    }
    .run()
    .instrument(span)
    .await
}

/// The consumer is gone or we were cancelled: stop the task.
#[derive(Debug)]
struct Stop;

/// How a connection ended.
enum SessionEnd {
    Stop,
    Dropped { reason: DisconnectReason, detail: String, delivered: u64 },
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct StreamTask {
    config: StreamConfig,
    tx: mpsc::Sender<StreamEvent>,
    cancel: CancellationToken,
    backoff: Backoff,
    malformed_log: WarnLimiter,
    disconnect_log: WarnLimiter,
    /// The last flashblock delivered, `(block_number, index)`.
    last: Option<(u64, u64)>,
    /// Whether the last handshake advertised resume.
    resumable: bool,
    /// The upstream answered 400 to the resume parameters: never ask again.
    resume_refused: bool,
}

impl StreamTask {
    async fn run(mut self) {
        let mut first_attempt = true;
        loop {
            if !first_attempt {
                let delay = self.backoff.next_delay();
                debug!(?delay, "reconnecting after backoff");
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => break,
                    _ = sleep(delay) => {}
                }
                counter!(STREAM_RECONNECTS_TOTAL).increment(1);
            }
            first_attempt = false;

            let (ws, resumed) = match self.connect().await {
                Ok(Some(ws)) => ws,
                Ok(None) => continue,
                Err(Stop) => break,
            };

            let event = match resumed {
                Some(after) => {
                    info!(
                        block = after.0,
                        index = after.1,
                        "connected, resumed after the last flashblock"
                    );
                    counter!(STREAM_RESUMES_TOTAL).increment(1);
                    StreamEvent::Resumed { after }
                }
                None => {
                    info!("connected");
                    StreamEvent::Connected
                }
            };
            gauge!(STREAM_CONNECTED).set(1.0);
            let end = match self.emit(event).await {
                Ok(()) => self.session(ws).await,
                Err(Stop) => SessionEnd::Stop,
            };
            gauge!(STREAM_CONNECTED).set(0.0);

            match end {
                SessionEnd::Stop => break,
                SessionEnd::Dropped { reason, detail, delivered } => {
                    self.note_disconnect(reason, &detail);
                    if delivered > 0 {
                        self.backoff.reset();
                    }
                    if self.emit(StreamEvent::Disconnected { reason, detail }).await.is_err() {
                        break;
                    }
                }
            }
        }
        debug!("flashblock stream stopped");
    }

    /// One connection attempt: the socket and, when it resumed, the flashblock it resumed
    /// after. `Ok(None)` when it failed and a retry should follow.
    async fn connect(&mut self) -> Result<Option<(Ws, Option<(u64, u64)>)>, Stop> {
        let resume = self.last.filter(|_| self.resumable && !self.resume_refused);
        let url = match resume {
            Some((block, index)) => {
                with_query(&self.config.url, &format!("from={block}-{index}&on_gap=next_block"))
            }
            None => self.config.url.clone(),
        };
        let attempt = timeout(
            self.config.connect_timeout,
            connect_async_with_config(
                url.as_str(),
                Some(self.config.websocket_config()),
                // Pings and small frames must not wait for Nagle.
                true,
            ),
        );
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(Stop),
            r = attempt => r,
        };
        match result {
            Ok(Ok((ws, response))) => {
                self.resumable = response.headers().contains_key(RESUME_HEADER);
                Ok(Some((ws, resume.filter(|_| self.resumable))))
            }
            Ok(Err(tungstenite::Error::Http(response)))
                if resume.is_some() && response.status().as_u16() == 400 =>
            {
                info!("the upstream refuses the resume parameters; reconnecting without them");
                self.resume_refused = true;
                Ok(None)
            }
            Ok(Err(e)) => {
                self.note_disconnect(DisconnectReason::ConnectFailed, &e.to_string());
                Ok(None)
            }
            Err(_) => {
                let detail = format!("no handshake within {:?}", self.config.connect_timeout);
                self.note_disconnect(DisconnectReason::ConnectTimeout, &detail);
                Ok(None)
            }
        }
    }

    /// Reads one connection until it dies or the task stops.
    async fn session(&mut self, ws: Ws) -> SessionEnd {
        let (mut sink, mut stream) = ws.split();
        let silence = self.config.silence_timeout;
        let period = self.config.ping_interval.max(Duration::from_millis(1));
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Any inbound frame (data, ping, pong) proves the link is alive.
        let mut last_seen = Instant::now();
        let mut delivered = 0u64;

        let dropped = |reason: DisconnectReason, detail: String, delivered: u64| {
            SessionEnd::Dropped { reason, detail, delivered }
        };

        loop {
            let deadline = last_seen + silence;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    // Best-effort goodbye; never let it hold up shutdown.
                    let _ = timeout(CLOSE_GRACE, sink.send(Message::Close(None))).await;
                    return SessionEnd::Stop;
                }
                // Before the deadline, so a frame that is already buffered always wins.
                msg = stream.next() => {
                    last_seen = Instant::now();
                    let data = match msg {
                        Some(Ok(Message::Text(text))) => Bytes::from(text),
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        // tungstenite queues the Pong reply itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Close(frame))) => {
                            let detail = frame.map_or_else(|| "no close frame".to_owned(), |f| f.to_string());
                            return dropped(DisconnectReason::Closed, detail, delivered);
                        }
                        Some(Err(e)) => {
                            let reason = error_reason(&e);
                            if reason == DisconnectReason::FrameTooLarge {
                                // The websocket layer enforces the cap before buffering the
                                // frame, so it surfaces as a read error.
                                if self.malformed(FRAME_TOO_LARGE, e.to_string()).await.is_err() {
                                    return SessionEnd::Stop;
                                }
                            }
                            return dropped(reason, e.to_string(), delivered);
                        }
                        None => return dropped(DisconnectReason::Eof, "stream ended".to_owned(), delivered),
                    };
                    match self.on_data(&data).await {
                        Ok(true) => delivered += 1,
                        Ok(false) => {}
                        Err(Stop) => return SessionEnd::Stop,
                    }
                    // Time spent waiting on a slow consumer is not upstream silence.
                    last_seen = Instant::now();
                }
                _ = ping.tick() => {
                    match timeout_at(deadline, sink.send(Message::Ping(Bytes::new()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return dropped(DisconnectReason::PingFailed, e.to_string(), delivered),
                        Err(_) => {
                            let detail = format!("ping not written within {silence:?}");
                            return dropped(DisconnectReason::Silent, detail, delivered);
                        }
                    }
                }
                _ = sleep_until(deadline) => {
                    let detail = format!("no frame or pong within {silence:?}");
                    return dropped(DisconnectReason::Silent, detail, delivered);
                }
            }
        }
    }

    /// Handles one data frame. `Ok(true)` when a flashblock was delivered.
    async fn on_data(&mut self, data: &[u8]) -> Result<bool, Stop> {
        counter!(STREAM_FRAMES_TOTAL).increment(1);
        counter!(STREAM_BYTES_TOTAL).increment(data.len() as u64);

        if data.len() > self.config.max_frame_bytes {
            let error = format!("{} bytes, limit {}", data.len(), self.config.max_frame_bytes);
            self.malformed(FRAME_TOO_LARGE, error).await?;
            return Ok(false);
        }
        match decode_frame(data, self.config.max_decompressed_bytes) {
            Ok(fb) => {
                let position = (fb.block_number(), fb.index());
                self.emit(StreamEvent::Flashblock(Arc::new(fb))).await?;
                self.last = Some(position);
                Ok(true)
            }
            Err(e) => {
                self.malformed(e.kind(), e.to_string()).await?;
                Ok(false)
            }
        }
    }

    /// Counts, logs (rate-limited) and reports a frame that could not be used.
    async fn malformed(&mut self, kind: &'static str, error: String) -> Result<(), Stop> {
        counter!(STREAM_MALFORMED_TOTAL, "kind" => kind).increment(1);
        match self.malformed_log.check(kind, std::time::Instant::now()) {
            Some(suppressed) => {
                warn!(kind, %error, suppressed, "dropping malformed flashblock frame")
            }
            None => debug!(kind, %error, "dropping malformed flashblock frame"),
        }
        self.emit(StreamEvent::Malformed { kind, error }).await
    }

    /// Counts and logs (rate-limited) a lost connection or a failed attempt.
    fn note_disconnect(&mut self, reason: DisconnectReason, detail: &str) {
        let reason = reason.label();
        counter!(STREAM_DISCONNECTS_TOTAL, "reason" => reason).increment(1);
        match self.disconnect_log.check(reason, std::time::Instant::now()) {
            Some(suppressed) => warn!(reason, detail, suppressed, "flashblock stream disconnected"),
            None => debug!(reason, detail, "flashblock stream disconnected"),
        }
    }

    /// Sends an event, waiting for room; fails when the receiver is gone or on cancellation.
    async fn emit(&self, event: StreamEvent) -> Result<(), Stop> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Stop),
            sent = self.tx.send(event) => sent.map_err(|_| {
                info!("flashblock event receiver dropped; stopping");
                Stop
            }),
        }
    }
}

/// Stable label for a websocket read error.
fn error_reason(e: &tungstenite::Error) -> DisconnectReason {
    use tungstenite::Error;
    match e {
        Error::Capacity(_) => DisconnectReason::FrameTooLarge,
        Error::ConnectionClosed | Error::AlreadyClosed => DisconnectReason::Closed,
        Error::Io(_) => DisconnectReason::Io,
        Error::Protocol(_) | Error::Utf8(_) | Error::AttackAttempt => DisconnectReason::Protocol,
        _ => DisconnectReason::ReadError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_brotli, fixtures::flashblock_json};
    use tokio::{net::TcpListener, task::JoinHandle};
    use tokio_tungstenite::accept_async;

    /// Upper bound on any single wait in these tests.
    const WAIT: Duration = Duration::from_secs(3);

    fn config(url: &str) -> StreamConfig {
        StreamConfig {
            url: url.to_owned(),
            ping_interval: Duration::from_millis(50),
            silence_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(1),
            max_frame_bytes: 64 * 1024,
            max_decompressed_bytes: 1024 * 1024,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
        }
    }

    async fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        (listener, url)
    }

    struct Client {
        rx: mpsc::Receiver<StreamEvent>,
        cancel: CancellationToken,
        handle: JoinHandle<()>,
    }

    impl Client {
        fn spawn(config: StreamConfig) -> Self {
            let (tx, rx) = mpsc::channel(16);
            let cancel = CancellationToken::new();
            let handle = tokio::spawn(run_stream(config, tx, cancel.clone()));
            Self { rx, cancel, handle }
        }

        async fn next(&mut self) -> StreamEvent {
            timeout(WAIT, self.rx.recv())
                .await
                .expect("timed out waiting for an event")
                .expect("stream ended")
        }

        async fn expect_connected(&mut self) {
            match self.next().await {
                StreamEvent::Connected => {}
                other => panic!("expected Connected, got {other:?}"),
            }
        }

        async fn expect_flashblock(&mut self) -> Arc<DecodedFlashblock> {
            match self.next().await {
                StreamEvent::Flashblock(fb) => fb,
                other => panic!("expected Flashblock, got {other:?}"),
            }
        }

        async fn expect_disconnected(&mut self) -> DisconnectReason {
            match self.next().await {
                StreamEvent::Disconnected { reason, .. } => reason,
                other => panic!("expected Disconnected, got {other:?}"),
            }
        }

        /// Cancels and checks that the task returns promptly.
        async fn shutdown(self) {
            self.cancel.cancel();
            timeout(WAIT, self.handle).await.expect("run_stream did not return").unwrap();
        }
    }

    /// Serves the next connection: sends `frames`, then answers pings until the client leaves.
    async fn serve(listener: &TcpListener, frames: Vec<Message>) -> JoinHandle<()> {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_async(tcp).await.unwrap();
        tokio::spawn(async move {
            for frame in frames {
                if ws.send(frame).await.is_err() {
                    return;
                }
            }
            while let Some(Ok(_)) = ws.next().await {}
        })
    }

    #[tokio::test]
    async fn receives_text_and_brotli_frames() {
        let (listener, url) = listen().await;
        let mut client = Client::spawn(config(&url));
        let server = serve(
            &listener,
            vec![
                Message::text(flashblock_json(100, 0)),
                Message::binary(encode_brotli(flashblock_json(100, 1).as_bytes())),
                Message::text(format!("\n  {}", flashblock_json(100, 2))),
            ],
        )
        .await;

        client.expect_connected().await;
        for index in 0..3 {
            let fb = client.expect_flashblock().await;
            assert_eq!((fb.block_number(), fb.index()), (100, index));
        }
        client.shutdown().await;
        timeout(WAIT, server).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn reconnects_after_server_close() {
        let (listener, url) = listen().await;
        let mut client = Client::spawn(config(&url));

        for block in [1, 2] {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = accept_async(tcp).await.unwrap();
            ws.send(Message::text(flashblock_json(block, 0))).await.unwrap();
            ws.close(None).await.unwrap();

            client.expect_connected().await;
            assert_eq!(client.expect_flashblock().await.block_number(), block);
            let reason = client.expect_disconnected().await;
            assert!(matches!(reason, DisconnectReason::Closed | DisconnectReason::Eof), "{reason}");
        }
        // And once more, for a connection that stays up.
        let _server = serve(&listener, vec![Message::text(flashblock_json(3, 0))]).await;
        client.expect_connected().await;
        assert_eq!(client.expect_flashblock().await.block_number(), 3);
        client.shutdown().await;
    }

    /// Accepts one connection advertising resume (or not); returns it and the request URI.
    // The callback's error type (an HTTP response) is tungstenite's, not ours.
    #[allow(clippy::result_large_err)]
    async fn accept_resumable(listener: &TcpListener, advertise: bool) -> (Ws2, String) {
        use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
        let (tcp, _) = listener.accept().await.unwrap();
        let uri = Arc::new(std::sync::Mutex::new(String::new()));
        let seen = uri.clone();
        let ws =
            tokio_tungstenite::accept_hdr_async(tcp, move |req: &Request, mut resp: Response| {
                *seen.lock().unwrap() = req.uri().to_string();
                if advertise {
                    resp.headers_mut().insert(RESUME_HEADER, "1".parse().unwrap());
                }
                Ok(resp)
            })
            .await
            .unwrap();
        let uri = uri.lock().unwrap().clone();
        (ws, uri)
    }

    type Ws2 = WebSocketStream<TcpStream>;

    /// After a reconnect to an upstream that advertises resume, the client asks for the
    /// flashblocks after the last one it delivered and says so with `Resumed`; an upstream
    /// that does not advertise it gets a plain reconnect and `Connected`.
    #[tokio::test]
    async fn resumes_after_the_last_flashblock_when_the_upstream_offers_it() {
        let (listener, url) = listen().await;
        let mut client = Client::spawn(config(&url));
        let (mut ws, uri) = accept_resumable(&listener, true).await;
        assert!(!uri.contains("from="), "the first connection is live: {uri}");
        for index in 0..2 {
            ws.send(Message::text(flashblock_json(7, index))).await.unwrap();
        }
        ws.close(None).await.unwrap();
        client.expect_connected().await;
        client.expect_flashblock().await;
        client.expect_flashblock().await;
        client.expect_disconnected().await;
        let (mut ws, uri) = accept_resumable(&listener, true).await;
        assert!(uri.ends_with("?from=7-1&on_gap=next_block"), "{uri}");
        match client.next().await {
            StreamEvent::Resumed { after } => assert_eq!(after, (7, 1)),
            other => panic!("expected Resumed, got {other:?}"),
        }
        ws.send(Message::text(flashblock_json(7, 2))).await.unwrap();
        assert_eq!(client.expect_flashblock().await.index(), 2);
        ws.close(None).await.unwrap();
        client.expect_disconnected().await;
        // This one asks for resume (the last handshake offered it) but gets none: Connected.
        let (ws, uri) = accept_resumable(&listener, false).await;
        assert!(uri.ends_with("?from=7-2&on_gap=next_block"), "{uri}");
        client.expect_connected().await;
        drop(ws);
        client.expect_disconnected().await;
        let (_ws, uri) = accept_resumable(&listener, false).await;
        assert!(!uri.contains("from="), "no resume after an upstream without it: {uri}");
        client.expect_connected().await;
        client.shutdown().await;
    }

    #[tokio::test]
    async fn detects_silent_server_and_reconnects() {
        let (listener, url) = listen().await;
        let cfg = config(&url);
        let silence = cfg.silence_timeout;
        let mut client = Client::spawn(cfg);

        // Completes the handshake, then never reads (so never answers pings) and never sends.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                held.push(accept_async(tcp).await.unwrap());
            }
        });

        client.expect_connected().await;
        let connected_at = Instant::now();
        let reason = client.expect_disconnected().await;
        let elapsed = connected_at.elapsed();
        assert_eq!(reason, DisconnectReason::Silent);
        assert!(elapsed >= silence - Duration::from_millis(20), "declared dead after {elapsed:?}");
        // Generous upper bound for slow CI machines: the point is "about silence_timeout".
        assert!(
            elapsed < silence + Duration::from_secs(1),
            "took {elapsed:?} to notice the silence"
        );
        client.expect_connected().await;

        client.shutdown().await;
        server.abort();
    }

    #[tokio::test]
    async fn pongs_keep_a_quiet_connection_alive() {
        let (listener, url) = listen().await;
        let cfg = config(&url);
        let silence = cfg.silence_timeout;
        let mut client = Client::spawn(cfg);
        // Sends nothing but reads, so tungstenite answers every ping.
        let _server = serve(&listener, Vec::new()).await;

        client.expect_connected().await;
        assert!(
            timeout(silence * 3, client.rx.recv()).await.is_err(),
            "a quiet but responsive server must not be dropped"
        );
        client.shutdown().await;
    }

    #[tokio::test]
    async fn malformed_frames_do_not_break_the_stream() {
        let (listener, url) = listen().await;
        let mut client = Client::spawn(config(&url));
        let _server = serve(
            &listener,
            vec![
                Message::text("garbage"),
                Message::binary(vec![0xff, 0x00, 0x13]),
                Message::text(r#"{"payload_id":"0x01"}"#),
                Message::text("{not json"),
                Message::binary(encode_brotli(&vec![b' '; 2 * 1024 * 1024])),
                Message::text(flashblock_json(9, 0)),
            ],
        )
        .await;

        client.expect_connected().await;
        let mut kinds = Vec::new();
        loop {
            match client.next().await {
                StreamEvent::Malformed { kind, error } => {
                    assert!(!error.is_empty());
                    kinds.push(kind);
                }
                StreamEvent::Flashblock(fb) => {
                    assert_eq!(fb.block_number(), 9);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(kinds, ["brotli", "brotli", "invalid", "json", "too_large"]);
        client.shutdown().await;
    }

    #[tokio::test]
    async fn oversized_frame_is_dropped_and_stream_recovers() {
        let (listener, url) = listen().await;
        let cfg = config(&url);
        let oversized = "x".repeat(cfg.max_frame_bytes + 1);
        let mut client = Client::spawn(cfg);

        let _first = serve(&listener, vec![Message::text(oversized)]).await;
        client.expect_connected().await;
        match client.next().await {
            StreamEvent::Malformed { kind, .. } => assert_eq!(kind, FRAME_TOO_LARGE),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let reason = client.expect_disconnected().await;
        assert_eq!(reason, DisconnectReason::FrameTooLarge);

        let _second = serve(&listener, vec![Message::text(flashblock_json(5, 0))]).await;
        client.expect_connected().await;
        assert_eq!(client.expect_flashblock().await.block_number(), 5);
        client.shutdown().await;
    }

    #[tokio::test]
    async fn retries_while_the_server_is_down() {
        // Grab a free port, then close it so connections are refused.
        let (listener, url) = listen().await;
        let addr = listener.local_addr().unwrap();
        drop(listener);

        let mut client = Client::spawn(config(&url));
        // Failed attempts produce no events.
        assert!(timeout(Duration::from_millis(200), client.rx.recv()).await.is_err());

        // The server comes up on the same port; the client finds it within the backoff cap.
        let listener = TcpListener::bind(addr).await.unwrap();
        let _server = serve(&listener, vec![Message::text(flashblock_json(1, 0))]).await;
        client.expect_connected().await;
        client.expect_flashblock().await;
        client.shutdown().await;
    }

    #[tokio::test]
    async fn stops_when_the_receiver_is_dropped() {
        let (listener, url) = listen().await;
        let (tx, rx) = mpsc::channel(1);
        let handle = tokio::spawn(run_stream(config(&url), tx, CancellationToken::new()));
        let frames = (0..10).map(|i| Message::text(flashblock_json(1, i))).collect();
        let _server = serve(&listener, frames).await;
        drop(rx);
        timeout(WAIT, handle)
            .await
            .expect("run_stream did not notice the receiver is gone")
            .unwrap();
    }

    #[tokio::test]
    async fn cancel_interrupts_backoff_and_connect() {
        let (listener, url) = listen().await;
        drop(listener);
        let mut cfg = config(&url);
        cfg.backoff_min = Duration::from_secs(30);
        cfg.backoff_max = Duration::from_secs(60);
        let client = Client::spawn(cfg);
        sleep(Duration::from_millis(50)).await;
        client.shutdown().await;
    }
}
