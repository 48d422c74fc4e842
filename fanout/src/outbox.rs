//! A subscriber and its outbox: the bytes the fan-out accepted for it but its socket has not
//! taken yet, shared by the writer thread (flashblocks) and the subscriber's task (control
//! frames, and the rest of a write the socket could not take at once).

use crate::{
    filter::FrameFilter,
    frame::{close_frame, Frame},
    resume::{gap_in_stream, Cursor, Step, RESUME_GAP_CLOSE_CODE},
};
use bytes::Bytes;
use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
    time::Duration,
};
use tokio::net::TcpStream;

/// Why the fan-out disconnected a subscriber (the `reason` label of
/// `flashnode_fanout_disconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DisconnectReason {
    /// More than its buffer of frames queued behind a socket that would not take them.
    Lagged,
    /// Its socket took no bytes for the send timeout.
    Slow,
    /// No pong (nor anything else) within the pong timeout.
    PongTimeout,
    /// Shed by a writer that could not keep up with its audience.
    Overload,
    /// Its socket failed on a write from the writer thread.
    Io,
    /// Its task ended (the client left or the fan-out shut down).
    Ended,
    /// It resumed from a point the fan-out cannot continue without a gap (closed with
    /// `RESUME_GAP_CLOSE_CODE` and the reason).
    ResumeGap,
}

impl DisconnectReason {
    /// Stable, low-cardinality label for metrics.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Lagged => "lagged",
            Self::Slow => "slow",
            Self::PongTimeout => "pong_timeout",
            Self::Overload => "overload",
            Self::Io => "io",
            Self::Ended => "ended",
            Self::ResumeGap => "resume_gap",
        }
    }
}

/// Why a subscriber's task ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ended {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the websocket protocol.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// Disconnected by the fan-out.
    #[error("disconnected: {}", .0.label())]
    Dropped(DisconnectReason),
}

/// One connected subscriber, shared by its task and the writer thread.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) stream: TcpStream,
    pub(crate) filter: Option<FrameFilter>,
    pub(crate) brotli: bool,
    /// Frames a client may have queued before it is dropped as lagging.
    buffer: usize,
    out: Mutex<Outbox>,
    /// Wakes the task: bytes to finish writing, or the subscriber was dropped.
    pub(crate) wake: tokio::sync::Notify,
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
    closed: Option<DisconnectReason>,
    /// A Close frame is queued: nothing may follow it (RFC 6455), so flashblocks are refused.
    closing: bool,
    /// Why the fan-out queued that Close itself (its task ends once it is written).
    ending: Option<DisconnectReason>,
    /// The sequence number of the next frame this subscriber takes: a frame with any other
    /// number is not offered to it (it has it already, or is still catching up from the ring).
    next_seq: u64,
    /// Where it is in its stream (resuming, or live).
    cursor: Cursor,
}

/// What offering one frame to a subscriber did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Its bytes (this many) were written or queued.
    Sent(u64),
    /// It was this subscriber's next frame but is not for it (its filter, or it has it).
    Skipped,
    /// Not its next frame (it is catching up, or has it).
    NotNext,
    /// The subscriber is gone (or is closing).
    Gone,
}

/// What one delivery attempt did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Written to the socket or queued.
    Accepted,
    /// The subscriber is gone (or was just dropped as lagging).
    Gone,
}

impl Subscriber {
    /// A subscriber on `stream` that may fall `buffer` frames behind.
    pub(crate) fn new(
        stream: TcpStream,
        filter: Option<FrameFilter>,
        brotli: bool,
        buffer: usize,
    ) -> Self {
        Self {
            stream,
            filter,
            brotli,
            buffer: buffer.max(1),
            out: Mutex::new(Outbox::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Starts the subscriber at sequence number `seq` with `cursor` (before it is registered
    /// with a writer).
    pub(crate) fn start_at(&self, seq: u64, cursor: Cursor) {
        if let Ok(mut out) = self.out.lock() {
            out.next_seq = seq;
            out.cursor = cursor;
        }
    }

    /// The sequence number of the next frame it takes.
    pub(crate) fn next_seq(&self) -> u64 {
        self.out.lock().map_or(u64::MAX, |o| o.next_seq)
    }

    /// Offers `frame`: taken only if it is this subscriber's next frame, then sent if its
    /// cursor and filter pass it. `limit` drops a subscriber whose queue is past its buffer
    /// (the writers); catching up from the ring paces itself instead.
    pub(crate) fn offer(&self, frame: &Frame, limit: bool) -> Offer {
        let Ok(mut out) = self.out.lock() else { return Offer::Gone };
        if out.closed.is_some() || out.closing {
            return Offer::Gone;
        }
        if frame.seq != out.next_seq {
            return Offer::NotNext;
        }
        out.next_seq += 1;
        match out.cursor.step(frame.position()) {
            Step::Deliver => {}
            Step::Skip => return Offer::Skipped,
            Step::Gap { after, got } => {
                metrics::counter!("flashnode_fanout_resumes_total", "outcome" => "gap")
                    .increment(1);
                let bytes = close_frame(RESUME_GAP_CLOSE_CODE, &gap_in_stream(after, got));
                out.closing = true;
                out.ending = Some(DisconnectReason::ResumeGap);
                self.write_locked(out, bytes, false);
                return Offer::Gone;
            }
        }
        if self.filter.as_ref().is_some_and(|f| !f.matches(frame)) {
            return Offer::Skipped;
        }
        let wire = if self.brotli { frame.brotli() } else { frame.text.clone() };
        let len = wire.len() as u64;
        match self.write_locked(out, wire, limit) {
            Delivery::Accepted => Offer::Sent(len),
            Delivery::Gone => Offer::Gone,
        }
    }

    /// Queues a Close the fan-out itself sends (`reason` says why); the task ends once it is
    /// written.
    pub(crate) fn close_with(&self, bytes: Bytes, reason: DisconnectReason) {
        let Ok(mut out) = self.out.lock() else { return };
        if out.closed.is_some() || out.closing {
            return;
        }
        out.closing = true;
        out.ending = Some(reason);
        self.write_locked(out, bytes, false);
    }

    /// Why the fan-out closed this subscriber itself, once its Close is written.
    pub(crate) fn finished(&self) -> Option<DisconnectReason> {
        let out = self.out.lock().ok()?;
        out.ending.filter(|_| out.queue.is_empty())
    }

    /// Writes `bytes` now if nothing is queued and the socket takes them; else queues them for
    /// the task. Used by the writer thread for flashblocks and by the task for control frames.
    pub(crate) fn deliver(&self, bytes: Bytes, is_frame: bool) -> Delivery {
        let Ok(out) = self.out.lock() else { return Delivery::Gone };
        if out.closed.is_some() || (is_frame && out.closing) {
            return Delivery::Gone;
        }
        self.write_locked(out, bytes, is_frame)
    }

    /// [`Self::deliver`] under the lock; `limit` applies the lag limit.
    fn write_locked(&self, mut out: MutexGuard<'_, Outbox>, bytes: Bytes, limit: bool) -> Delivery {
        if !out.queue.is_empty() {
            if limit && out.queue.len() >= self.buffer {
                out.closed = Some(DisconnectReason::Lagged);
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
                out.closed = Some(DisconnectReason::Io);
                drop(out);
                self.wake.notify_one();
                return Delivery::Gone;
            }
        }
        drop(out);
        self.wake.notify_one();
        Delivery::Accepted
    }

    /// Queues control bytes (pings, pongs) in order with the flashblocks.
    pub(crate) fn enqueue(&self, bytes: Bytes) {
        self.deliver(bytes, false);
    }

    /// Queues control bytes that end with a Close frame: from now on flashblocks are refused,
    /// so none follows the Close on the wire.
    pub(crate) fn enqueue_close(&self, bytes: Bytes) {
        if let Ok(mut out) = self.out.lock() {
            out.closing = true;
        }
        self.deliver(bytes, false);
    }

    /// Marks the subscriber dropped (first reason wins) and wakes its task.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        if let Ok(mut out) = self.out.lock() {
            out.closed.get_or_insert(reason);
        }
        self.wake.notify_one();
    }

    /// Why it was dropped, if it was.
    pub(crate) fn closed(&self) -> Option<DisconnectReason> {
        self.out.lock().map_or(Some(DisconnectReason::Ended), |o| o.closed)
    }

    /// Writes what the writer thread could not, in order; a client whose socket takes no bytes
    /// for `send_timeout` is dropped as slow.
    pub(crate) async fn drain(&self, send_timeout: Duration) -> Result<(), Ended> {
        loop {
            let (head, offset) = {
                let out = self.out.lock().map_err(|_| Ended::Dropped(DisconnectReason::Lagged))?;
                if let Some(reason) = out.closed {
                    return Err(Ended::Dropped(reason));
                }
                match out.queue.front() {
                    None => return Ok(()),
                    Some(b) => (b.clone(), out.offset),
                }
            };
            match tokio::time::timeout(send_timeout, self.stream.writable()).await {
                Err(_) => {
                    self.close(DisconnectReason::Slow);
                    return Err(Ended::Dropped(DisconnectReason::Slow));
                }
                Ok(Err(e)) => return Err(Ended::Io(e)),
                Ok(Ok(())) => {}
            }
            match self.stream.try_write(&head[offset..]) {
                Ok(n) => {
                    let mut out =
                        self.out.lock().map_err(|_| Ended::Dropped(DisconnectReason::Lagged))?;
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A connected pair over loopback: the server side as a subscriber, the client side to read.
    pub(crate) async fn pair(buffer: usize, recv_buffer: Option<u32>) -> (Subscriber, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = recv_buffer {
            socket.set_recv_buffer_size(n).unwrap();
        }
        let client = socket.connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        if recv_buffer.is_some() {
            socket2::SockRef::from(&server).set_send_buffer_size(4096).unwrap();
        }
        (Subscriber::new(server, None, false, buffer), client)
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_and_nothing_follows_a_close() {
        let (sub, mut client) = pair(4, None).await;
        assert_eq!(sub.deliver(Bytes::from_static(b"one,"), true), Delivery::Accepted);
        sub.enqueue(Bytes::from_static(b"ping,"));
        sub.enqueue_close(Bytes::from_static(b"close"));
        assert_eq!(sub.deliver(Bytes::from_static(b"late"), true), Delivery::Gone);
        sub.drain(Duration::from_secs(5)).await.unwrap();
        drop(sub);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"one,ping,close");
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_lags_then_is_dropped() {
        let (sub, _client) = pair(2, Some(4096)).await;
        let chunk = Bytes::from(vec![7u8; 256 * 1024]);
        let mut outcome = Vec::new();
        for _ in 0..6 {
            outcome.push(sub.deliver(chunk.clone(), true));
        }
        assert_eq!(outcome.last(), Some(&Delivery::Gone), "{outcome:?}");
        assert_eq!(sub.closed(), Some(DisconnectReason::Lagged));
        assert!(matches!(
            sub.drain(Duration::from_millis(50)).await,
            Err(Ended::Dropped(DisconnectReason::Lagged))
        ));
    }

    #[tokio::test]
    async fn a_socket_that_takes_nothing_is_dropped_as_slow() {
        let (sub, _client) = pair(100, Some(4096)).await;
        sub.deliver(Bytes::from(vec![1u8; 512 * 1024]), true);
        assert!(matches!(
            sub.drain(Duration::from_millis(100)).await,
            Err(Ended::Dropped(DisconnectReason::Slow))
        ));
        assert_eq!(sub.closed(), Some(DisconnectReason::Slow));
    }

    #[test]
    fn the_first_reason_wins_and_labels_are_stable() {
        let reasons = [
            DisconnectReason::Lagged,
            DisconnectReason::Slow,
            DisconnectReason::PongTimeout,
            DisconnectReason::Overload,
            DisconnectReason::Io,
            DisconnectReason::Ended,
            DisconnectReason::ResumeGap,
        ];
        let labels: std::collections::HashSet<_> = reasons.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), reasons.len());
        assert_eq!(DisconnectReason::PongTimeout.label(), "pong_timeout");
    }

    #[tokio::test]
    async fn close_keeps_the_first_reason() {
        let (sub, _client) = pair(4, None).await;
        sub.close(DisconnectReason::Overload);
        sub.close(DisconnectReason::Ended);
        assert_eq!(sub.closed(), Some(DisconnectReason::Overload));
    }
}
