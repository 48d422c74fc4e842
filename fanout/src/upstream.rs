//! The relay's source client: one websocket to the upstream (a builder, rollup-boost, Base's
//! proxy or another flashnode), kept provably alive (pings, a silence timeout), reconnected with
//! jittered backoff, every frame checked for shape and order and handed to the fan-out as
//! received.
//!
//! When the upstream advertises resume ([`RESUME_HEADER`] on its 101), a reconnect asks for
//! `?from=<last frame relayed>&on_gap=next_block`, so a blip costs no frame; the first
//! connection asks for `?from=earliest`, so a relay that restarts refills its own ring from its
//! upstream's and the relays below it can resume from it. Upstreams that do not know the
//! parameters ignore them (a flashnode that refuses them with 400 is retried without).

use crate::{
    frame::SourceFrame,
    resume::RESUME_HEADER,
    shape::{parse, Parsed},
};
use flashnode_tasks::Backoff;
use flashnode_wsclient::{redact, with_query, StreamClientConfig, WarnLimiter, WARN_PERIOD};
use futures::{SinkExt, StreamExt};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{
    sync::mpsc,
    time::{sleep, sleep_until, timeout, Instant, MissedTickBehavior},
};
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// Settings of [`run_upstream`] (the settings every flashblock stream client shares).
pub type UpstreamConfig = StreamClientConfig;

/// What the upstream client knows, for health and status (shared with the caller).
#[derive(Debug, Default)]
pub struct UpstreamState {
    connected: AtomicBool,
    resumable: AtomicBool,
    frames: AtomicU64,
    last: Mutex<Option<((u64, u64), std::time::Instant)>>,
}

impl UpstreamState {
    /// Whether a connection is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Whether the upstream advertised resume on its last handshake.
    pub fn resumable(&self) -> bool {
        self.resumable.load(Ordering::Acquire)
    }

    /// Frames relayed so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The last frame relayed, `(block_number, index)`, and how long ago.
    pub fn last(&self) -> Option<((u64, u64), Duration)> {
        self.last.lock().ok()?.map(|(p, at)| (p, at.elapsed()))
    }

    fn position(&self) -> Option<(u64, u64)> {
        self.last().map(|(p, _)| p)
    }
}

/// Whether a frame continues the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    /// At or before the last frame of its block.
    Duplicate,
    /// Of a block before the current one.
    Stale,
    /// Frames are missing before it: dropped until the next index 0.
    Gap,
}

impl Verdict {
    const fn label(self) -> &'static str {
        match self {
            Self::Accept => "relayed",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Gap => "gap",
        }
    }
}

/// The order check: the next index of the current block, or index 0 of a later block (or of
/// the same block under another payload id, a rebuilt block). The first frame of a connection
/// that did not resume is taken as it comes (a relay may join mid-block, as any subscriber).
#[derive(Debug, Default)]
struct Order {
    last: Option<(u64, u64, String)>,
    desynced: bool,
}

impl Order {
    fn check(&mut self, (block, index): (u64, u64), payload_id: &str) -> Verdict {
        let verdict = match &self.last {
            None => Verdict::Accept,
            Some((b, i, p)) => {
                let new_block = block > *b || (block == *b && payload_id != p);
                if index == 0 && new_block {
                    Verdict::Accept
                } else if block < *b {
                    Verdict::Stale
                } else if self.desynced || new_block {
                    Verdict::Gap
                } else if index <= *i {
                    Verdict::Duplicate
                } else if index == i + 1 {
                    Verdict::Accept
                } else {
                    Verdict::Gap
                }
            }
        };
        match verdict {
            Verdict::Accept => {
                self.last = Some((block, index, payload_id.to_string()));
                self.desynced = false;
            }
            Verdict::Gap => self.desynced = true,
            Verdict::Duplicate | Verdict::Stale => {}
        }
        verdict
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a connection ended.
enum End {
    Stop,
    Dropped { reason: &'static str, detail: String, relayed: u64 },
}

/// Runs the upstream client until `cancel` or until `frames` closes: connects, relays every
/// frame that passes the shape and order checks into `frames` (waiting for room: the fan-out's
/// backpressure reaches the socket, never a queue), and reconnects with jittered backoff
/// between `backoff_min` and `backoff_max` (reset after a connection that relayed a frame).
pub async fn run_upstream(
    config: UpstreamConfig,
    frames: mpsc::Sender<SourceFrame>,
    state: Arc<UpstreamState>,
    cancel: CancellationToken,
) {
    let span = info_span!("relay_upstream", url = %redact(&config.url));
    async move {
        let mut backoff = Backoff::new(config.backoff_min, config.backoff_max).with_jitter();
        // An upstream that is down fails every reconnect the same way: one warn per period.
        let mut log = WarnLimiter::new(WARN_PERIOD);
        let mut order = Order::default();
        // Until a handshake says otherwise, ask for resume (upstreams that do not know the
        // parameters ignore them); a flashnode too old to know them answers 400.
        let mut try_resume = true;
        let mut first = true;
        loop {
            if !first {
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = sleep(delay) => {}
                }
                metrics::counter!("flashnode_relay_upstream_reconnects_total").increment(1);
            }
            first = false;
            let resume_from = state.position();
            let url = match (try_resume, resume_from) {
                (false, _) => config.url.clone(),
                (true, None) => with_query(&config.url, "from=earliest"),
                (true, Some((b, i))) => with_query(&config.url, &format!("from={b}-{i}&on_gap=next_block")),
            };
            let attempt = timeout(
                config.connect_timeout,
                tokio_tungstenite::connect_async_with_config(
                    url.as_str(),
                    Some(config.websocket_config()),
                    true,
                ),
            );
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = attempt => r,
            };
            let (ws, response) = match result {
                Ok(Ok(ok)) => ok,
                Ok(Err(tungstenite::Error::Http(response)))
                    if try_resume && response.status().as_u16() == 400 =>
                {
                    info!("the upstream refuses the resume parameters; connecting without them");
                    try_resume = false;
                    first = true;
                    continue;
                }
                Ok(Err(err)) => {
                    note_disconnect(&mut log, "connect_failed", &err.to_string());
                    continue;
                }
                Err(_) => {
                    note_disconnect(&mut log, "connect_timeout", &format!("no handshake within {:?}", config.connect_timeout));
                    continue;
                }
            };
            let resumable = response.headers().contains_key(RESUME_HEADER);
            state.resumable.store(resumable, Ordering::Release);
            // A connection that resumed continues the order check; any other starts it over
            // (a relay joins mid-block, and an upstream that restarted may count from lower
            // block numbers).
            if !(resumable && resume_from.is_some()) {
                order = Order::default();
            } else {
                metrics::counter!("flashnode_relay_upstream_resumes_total").increment(1);
            }
            info!(resumable, resumed_after = ?resume_from.filter(|_| resumable), "connected to the upstream");
            state.connected.store(true, Ordering::Release);
            metrics::gauge!("flashnode_relay_upstream_connected").set(1.0);
            let end = session(ws, &config, &mut order, &frames, &state, &cancel).await;
            state.connected.store(false, Ordering::Release);
            metrics::gauge!("flashnode_relay_upstream_connected").set(0.0);
            match end {
                End::Stop => return,
                End::Dropped { reason, detail, relayed } => {
                    note_disconnect(&mut log, reason, &detail);
                    if relayed > 0 {
                        backoff.reset();
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn note_disconnect(log: &mut WarnLimiter, reason: &'static str, detail: &str) {
    metrics::counter!("flashnode_relay_upstream_disconnects_total", "reason" => reason)
        .increment(1);
    match log.check(reason, std::time::Instant::now()) {
        Some(suppressed) => {
            warn!(reason, detail, suppressed, "upstream flashblock stream disconnected")
        }
        None => debug!(reason, detail, "upstream flashblock stream disconnected"),
    }
}

/// Reads one connection until it dies or the client stops.
async fn session(
    ws: Ws,
    config: &UpstreamConfig,
    order: &mut Order,
    frames: &mpsc::Sender<SourceFrame>,
    state: &UpstreamState,
    cancel: &CancellationToken,
) -> End {
    let (mut sink, mut stream) = ws.split();
    let period = config.ping_interval.max(Duration::from_millis(1));
    let mut ping = tokio::time::interval_at(Instant::now() + period, period);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silence = config.silence_timeout;
    let mut last_seen = Instant::now();
    let mut relayed = 0u64;
    let dropped = |reason, detail, relayed| End::Dropped { reason, detail, relayed };
    loop {
        let deadline = last_seen + silence;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                let _ = timeout(Duration::from_millis(100), sink.send(Message::Close(None))).await;
                return End::Stop;
            }
            msg = stream.next() => {
                last_seen = Instant::now();
                let data = match msg {
                    Some(Ok(Message::Text(text))) => Bytes::from(text),
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(frame))) => {
                        let detail = frame.map_or_else(|| "no close frame".to_owned(), |f| f.to_string());
                        return dropped("closed", detail, relayed);
                    }
                    Some(Err(e)) => return dropped("read_error", e.to_string(), relayed),
                    None => return dropped("eof", "stream ended".to_owned(), relayed),
                };
                let Parsed { frame, payload_id } = match parse(&data, config.max_decompressed_bytes) {
                    Ok(parsed) => parsed,
                    Err(err) => {
                        metrics::counter!("flashnode_relay_upstream_frames_total", "outcome" => err.label()).increment(1);
                        debug!(%err, "dropping a malformed upstream frame");
                        continue;
                    }
                };
                let position = frame.position();
                let verdict = order.check(position, &payload_id);
                metrics::counter!("flashnode_relay_upstream_frames_total", "outcome" => verdict.label()).increment(1);
                if verdict != Verdict::Accept {
                    debug!(?position, verdict = verdict.label(), "upstream frame not relayed");
                    continue;
                }
                tokio::select! {
                    _ = cancel.cancelled() => return End::Stop,
                    sent = frames.send(frame) => if sent.is_err() { return End::Stop },
                }
                relayed += 1;
                state.frames.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = state.last.lock() {
                    *last = Some((position, std::time::Instant::now()));
                }
                // Time spent waiting on the fan-out is not upstream silence.
                last_seen = Instant::now();
            }
            _ = ping.tick() => {
                match tokio::time::timeout_at(deadline, sink.send(Message::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return dropped("ping_failed", e.to_string(), relayed),
                    Err(_) => return dropped("silent", format!("ping not written within {silence:?}"), relayed),
                }
            }
            _ = sleep_until(deadline) => {
                return dropped("silent", format!("no frame or pong within {silence:?}"), relayed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_takes_the_next_index_or_a_new_block() {
        let mut o = Order::default();
        use Verdict::*;
        assert_eq!(o.check((10, 3), "a"), Accept, "joins mid-block");
        assert_eq!(o.check((10, 4), "a"), Accept);
        assert_eq!(o.check((10, 4), "a"), Duplicate);
        assert_eq!(o.check((10, 2), "a"), Duplicate);
        assert_eq!(o.check((9, 0), "z"), Stale);
        assert_eq!(o.check((11, 0), "b"), Accept);
        assert_eq!(o.check((11, 2), "b"), Gap, "index 1 is missing");
        assert_eq!(o.check((11, 3), "b"), Gap, "desynced until an index 0");
        assert_eq!(o.check((12, 1), "c"), Gap);
        assert_eq!(o.check((12, 0), "c"), Accept);
        assert_eq!(o.check((12, 1), "c"), Accept);
        assert_eq!(o.check((12, 0), "d"), Accept, "a rebuilt block under another payload id");
        assert_eq!(o.check((12, 1), "e"), Gap, "another payload id mid-block");
    }
}
