//! Writer shards: threads that each own a share of the subscribers and write every frame to
//! them, so a large audience uses every core without a task wake-up per delivery.

use crate::{
    frame::Frame,
    outbox::{DisconnectReason, Offer, Subscriber},
};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tracing::{info_span, warn};

/// The writer threads' subscriber sets; new subscribers go round-robin.
#[derive(Debug, Clone)]
pub(crate) struct Shards {
    shards: Arc<[Registry]>,
    next: Arc<AtomicUsize>,
}

impl Shards {
    /// Starts `writers` threads, each fed frames through a queue of `queue` frames; returns the
    /// shards and the queues to publish into.
    pub(crate) fn start(
        writers: usize,
        queue: usize,
        max_delay: Duration,
    ) -> std::io::Result<(Self, Vec<mpsc::Sender<Arc<Frame>>>)> {
        let mut shards = Vec::with_capacity(writers);
        let mut queues = Vec::with_capacity(writers);
        for i in 0..writers.max(1) {
            let registry = Registry::default();
            let (frames_tx, frames_rx) = mpsc::channel::<Arc<Frame>>(queue.max(1));
            let shard = registry.clone();
            std::thread::Builder::new()
                .name(format!("flashnode-fanout-{i}"))
                .spawn(move || writer(frames_rx, shard, max_delay))?;
            shards.push(registry);
            queues.push(frames_tx);
        }
        Ok((Self { shards: shards.into(), next: Default::default() }, queues))
    }

    /// Adds a subscriber to the next shard; returns that shard.
    pub(crate) fn add(&self, s: Arc<Subscriber>) -> Registry {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[i].add(s);
        self.shards[i].clone()
    }
}

/// The writer thread count for a configured `writers`: 0 is one per core, at most 4.
pub(crate) fn writer_count(writers: usize) -> usize {
    match writers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4),
        n => n,
    }
}

/// The subscribers one writer thread delivers to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry(Arc<Mutex<Vec<Arc<Subscriber>>>>);

impl Registry {
    pub(crate) fn add(&self, s: Arc<Subscriber>) {
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
            s.close(DisconnectReason::Overload);
        }
        n
    }

    /// Takes `s` out of the set at once (a filtered or idle subscriber would otherwise be found
    /// gone only on a later delivery).
    pub(crate) fn remove(&self, s: &Arc<Subscriber>) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|x| !Arc::ptr_eq(x, s));
        }
    }

    fn remove_gone(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|s| s.closed().is_none());
        }
    }

    /// Subscribers in the set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.snapshot().len()
    }
}

/// A writer thread: every frame, in order, to each subscriber of its shard, with one
/// non-blocking write each (the same bytes for all). A subscriber whose socket is full gets the
/// rest written by its own task; the writer never waits for one.
///
/// A writer that starts a frame more than `max_delay` after it was built cannot keep up with its
/// audience (too many subscribers for the CPU it gets): it drops the newest tenth of its
/// subscribers (counted as `overload`), frame after frame until it is back in time, so the rest
/// keep getting fresh frames instead of everyone falling seconds behind.
fn writer(mut frames: mpsc::Receiver<Arc<Frame>>, registry: Registry, max_delay: Duration) {
    let _span = info_span!("fanout_writer").entered();
    let mut last_warn: Option<Instant> = None;
    let mut last_shed: Option<Instant> = None;
    while let Some(frame) = frames.blocking_recv() {
        let late = frame.built.elapsed();
        // Frames already queued when a shed happened are late because of the backlog that shed
        // addresses: only a frame built after the last shed may trigger the next one.
        if late > max_delay && last_shed.is_none_or(|t| frame.built > t) {
            last_shed = Some(Instant::now());
            let shed = registry.shed_newest(10);
            if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!(
                    late_ms = late.as_millis() as u64,
                    shed, "fan-out overloaded: dropping the newest subscribers"
                );
                last_warn = Some(Instant::now());
            }
        }
        let subscribers = registry.snapshot();
        let (mut bytes, mut gone) = (0u64, 0usize);
        for s in &subscribers {
            // A subscriber still catching up from the ring takes this frame from there.
            match s.offer(&frame, true) {
                Offer::Sent(len) => bytes += len,
                Offer::Skipped | Offer::NotNext => {}
                Offer::Gone => gone += 1,
            }
        }
        metrics::counter!("flashnode_fanout_bytes_total").increment(bytes);
        if gone > 0 {
            registry.remove_gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{frame::SourceFrame, outbox::tests::pair};
    use tokio::io::AsyncReadExt;

    fn frame(json: &str, seq: u64) -> Frame {
        Frame::numbered(SourceFrame::new(json.into(), 1, seq), seq)
    }

    /// An overloaded writer drops the newest tenth of its subscribers once per backlog, and the
    /// others still get every frame, over real loopback sockets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overloaded_writer_sheds_the_newest_subscribers() {
        let registry = Registry::default();
        let (mut clients, mut subs) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let (sub, client) = pair(4, None).await;
            let sub = Arc::new(sub);
            registry.add(sub.clone());
            clients.push(client);
            subs.push(sub);
        }
        let mut first = frame("{\"index\":0}", 0);
        first.built -= Duration::from_secs(5);
        // A second frame that was already waiting when the first one was shed for: late too, but
        // it must not shed again (the backlog it sat in is what the first shed addressed).
        let mut queued = frame("{\"index\":1}", 1);
        queued.built -= Duration::from_secs(5);
        let expected = [first.text.clone(), queued.text.clone()].concat();
        let (tx, rx) = mpsc::channel(2);
        tx.send(Arc::new(first)).await.unwrap();
        tx.send(Arc::new(queued)).await.unwrap();
        let writer_thread = std::thread::spawn({
            let registry = registry.clone();
            move || writer(rx, registry, Duration::from_secs(1))
        });
        drop(tx);
        writer_thread.join().unwrap();
        let reasons: Vec<Option<DisconnectReason>> = subs.iter().map(|s| s.closed()).collect();
        assert_eq!(reasons[..18], [None; 18]);
        assert_eq!(reasons[18..], [Some(DisconnectReason::Overload); 2]);
        for client in clients.iter_mut().take(18) {
            let mut got = vec![0u8; expected.len()];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, expected);
        }
        assert_eq!(registry.len(), 18);
    }

    /// Shards started for real take subscribers round-robin and each writer delivers every
    /// published frame to its own share; a filtered subscriber gets only what matches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shards_spread_subscribers_and_deliver_in_order() {
        let (shards, queues) = Shards::start(2, 8, Duration::from_secs(30)).unwrap();
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for i in 0..4 {
            let (mut sub, client) = pair(8, None).await;
            if i == 3 {
                let mut filter = crate::filter::FrameFilter::default();
                filter
                    .set("addresses", &alloy_primitives::Address::repeat_byte(9).to_string())
                    .unwrap();
                sub.filter = Some(filter);
            }
            let sub = Arc::new(sub);
            held.push((shards.add(sub.clone()), sub));
            clients.push(client);
        }
        assert_eq!(held[0].0.len(), 2, "round-robin over two shards");
        let frames: Vec<Arc<Frame>> =
            (0..3).map(|i| Arc::new(frame(&format!("{{\"index\":{i}}}"), i))).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.text.to_vec()).collect();
        for f in &frames {
            for q in &queues {
                q.send(f.clone()).await.unwrap();
            }
        }
        for client in clients.iter_mut().take(3) {
            let mut got = vec![0u8; expected.len()];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, expected);
        }
        drop(queues);
        for (registry, sub) in &held {
            registry.remove(sub);
        }
        let mut nothing = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), clients[3].read(&mut nothing))
                .await
                .is_err(),
            "the filtered subscriber got no frame"
        );
    }

    #[test]
    fn writer_counts() {
        assert!((1..=4).contains(&writer_count(0)));
        assert_eq!(writer_count(7), 7);
    }
}
