//! The overlay task: consumes stream events and canonical notifications, drives the sequencer
//! and the executor, publishes [`PendingBlock`] snapshots, and reconciles them with sealed
//! blocks (promote, or drop divergent transactions at once).

use crate::{
    executor::{ApplyError, FlashblockExecutor},
    frame::DecodedFlashblock,
    pending::PendingBlock,
    readiness::{Cutover, Health, Limits, Mode, PendingIssue, Readiness, Transition},
    reconcile::{
        compare, pending_fate, waiting_fate, Anchors, PendingFate, PendingLink, Sealed, Unsealed,
        WaitingFate,
    },
    rejections::{millis, RejectClass, RejectedCounts, RejectedFrame, Rejections},
    sequencer::{Decision, FlashblockSequencer, Rejection, TipView},
    stream::StreamEvent,
    upstream::TRANSPORT_RETRIES,
};
use alloy_primitives::B256;
use arc_swap::ArcSwapOption;
use flashnode_exec::{CanonicalBlock, CanonicalNotification, ChainConfig, StateSource};
use flashnode_tasks::{Backoff, TaskExecutor};
use flashnode_wsclient::WarnLimiter;
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// Overlay settings.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// Chain parameters for re-execution.
    pub chain: ChainConfig,
    /// A pending block older than this (no flashblock applied since) is not served.
    pub stale_after: Duration,
    /// A canonical tip not advanced for this long makes the node not ready.
    pub canonical_stale_after: Duration,
    /// How many blocks the pending block may run ahead of the canonical tip (unverified
    /// blocks chained on streamed ones); frames further ahead are rejected as `ahead`.
    pub max_pending_depth: u64,
    /// Unix time (seconds) from which the chain has native short blocks and no flashblock
    /// stream by design (Base's Denim): from then on `pending` is `latest`, the mode is
    /// [`Mode::NativeBlocks`] and readiness does not depend on the stream. None: never.
    pub native_blocks_at: Option<u64>,
    /// Readiness hysteresis for execution errors: `/readyz` degrades after this many
    /// consecutive blocks with an execution error and recovers after as many clean blocks
    /// (see [`DEFAULT_READINESS_HYSTERESIS_BLOCKS`]).
    pub readiness_hysteresis_blocks: u64,
}

/// Consecutive blocks with an execution error before readiness degrades, and clean blocks
/// before it recovers: one bad block (a builder's bad transaction, a transient divergence)
/// does not flip `/readyz`, a persistent divergence degrades it within a few blocks.
pub const DEFAULT_READINESS_HYSTERESIS_BLOCKS: u64 = 3;

/// What the overlay publishes besides snapshots.
#[derive(Clone, Debug)]
pub enum OverlayEvent {
    /// A flashblock passed sequencing and execution.
    Applied {
        /// The pending block after it.
        block: Arc<PendingBlock>,
        /// The flashblock as received.
        flashblock: Arc<DecodedFlashblock>,
    },
    /// Preconfirmed transactions were dropped by a tail reorg or a divergent parent.
    Dropped {
        /// The dropped pending block (its txs from `first_dropped` on are gone).
        block: Arc<PendingBlock>,
        /// Index of the first dropped transaction in `block.txs`.
        first_dropped: usize,
    },
    /// A canonical block landed.
    Canonical(Arc<CanonicalBlock>),
}

/// Counters behind `flashnode_status` (frames rejected by class are counted by the
/// rejection bookkeeping: [`OverlayStatus::rejected`]).
#[derive(Debug, Default)]
pub struct Counters {
    /// Stream connections after the first.
    pub reconnects: AtomicU64,
    /// Stream drops.
    pub disconnects: AtomicU64,
    /// Undecodable frames.
    pub malformed: AtomicU64,
    /// Gaps in indices.
    pub gaps: AtomicU64,
    /// Duplicate flashblocks.
    pub duplicates: AtomicU64,
    /// Protocol violations.
    pub invalid: AtomicU64,
    /// Applied flashblocks.
    pub applied: AtomicU64,
    /// Sealed blocks that matched the preconfirmations.
    pub promoted: AtomicU64,
    /// Tail reorgs (sealed block differs from the preconfirmations).
    pub reorgs: AtomicU64,
    /// Metadata receipts that disagreed with re-execution.
    pub receipt_mismatches: AtomicU64,
    /// Blocks not served as `pending` because a flashblock carried a Lagoon post-exec tx
    /// (type `0x7D`) whose settlement this node cannot apply.
    pub post_exec_blocks: AtomicU64,
}

/// The `flashnode_status` answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverlayStatus {
    /// Serving mode.
    pub mode: Mode,
    /// Readiness.
    pub health: Health,
    /// Latest canonical block number.
    pub canonical_tip: Option<u64>,
    /// Latest canonical block hash.
    pub canonical_hash: Option<B256>,
    /// Pending block number (when serving flashblocks).
    pub pending_block: Option<u64>,
    /// Index of the last applied flashblock.
    pub flashblock_index: Option<u64>,
    /// Whether the stream is connected.
    pub stream_connected: bool,
    /// Milliseconds since the last flashblock frame.
    pub stream_lag_ms: Option<u64>,
    /// Reconnects.
    pub reconnects: u64,
    /// Drops.
    pub disconnects: u64,
    /// Malformed frames.
    pub malformed: u64,
    /// Gaps.
    pub gaps: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Stale flashblocks.
    pub stale: u64,
    /// Invalid flashblocks.
    pub invalid: u64,
    /// Applied flashblocks.
    pub applied: u64,
    /// Promoted blocks.
    pub promoted: u64,
    /// Tail reorgs.
    pub reorgs: u64,
    /// Receipt mismatches.
    pub receipt_mismatches: u64,
    /// Execution errors.
    pub execution_errors: u64,
    /// Blocks answered as `latest` because they carry a post-exec tx (type `0x7D`) this node
    /// cannot apply.
    pub post_exec_blocks: u64,
    /// Why the node is not `ready` (None when it is).
    pub reason: Option<String>,
    /// Whether the upstream answered its last probe (false once it stops answering while
    /// the stream moves on).
    pub upstream_reachable: bool,
    /// Frames that could not be applied, by class.
    pub rejected: RejectedCounts,
    /// The last frame that could not be applied.
    pub last_rejected: Option<RejectedFrame>,
    /// The native-blocks cutover (unix seconds), when one is set: from it on the mode is
    /// `native_blocks`.
    pub native_blocks_timestamp: Option<u64>,
    /// Consecutive blocks (the current one included) with an execution error.
    pub execution_error_blocks: u64,
    /// Whether readiness is degraded by execution errors (after
    /// `--readiness-hysteresis-blocks` consecutive bad blocks, until as many clean ones).
    pub execution_degraded: bool,
}

/// What the task records and the handle reads, behind one lock (plain data: a panic while it
/// was held leaves nothing half-updated that matters, so a poisoned lock is used as is).
#[derive(Debug)]
struct State {
    readiness: Readiness,
    rejections: Rejections,
    anchors: Anchors,
}

impl State {
    /// Whether `pending` (ahead of `tip`) can be served: its state sits on a recent canonical
    /// block, within the depth bound, with the upstream answering.
    fn readable(&self, pending: &PendingBlock, tip: &CanonicalBlock) -> bool {
        let anchored = self.anchors.contains(&pending.source_at);
        self.readiness.readable(pending.number(), anchored, tip.header.number)
    }
}

struct Shared {
    config: OverlayConfig,
    source: Arc<dyn StateSource>,
    pending: ArcSwapOption<PendingBlock>,
    tip: ArcSwapOption<CanonicalBlock>,
    events: broadcast::Sender<OverlayEvent>,
    counters: Counters,
    state: Mutex<State>,
}

/// Now, in unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the native-blocks cutover passed (latched, like Base's cutover gate).
    fn native(&self) -> bool {
        let cutover = self.state().readiness.cutover(unix_now());
        if cutover == Cutover::JustPassed {
            self.pending.store(None);
            info!(
                timestamp = self.config.native_blocks_at,
                "native-blocks cutover passed: the chain has no flashblock stream by design; pending is latest from now on"
            );
        }
        cutover.passed()
    }

    /// Why the pending block ahead of the tip cannot be served, if it cannot: its state is
    /// not readable, or it carries a post-exec tx (its state is not exact).
    fn pending_issue(&self, st: &State) -> Option<PendingIssue> {
        let pending = self.pending.load_full()?;
        let tip = self.tip.load_full();
        if let Some(tip) = &tip {
            if pending.number() > tip.header.number && !st.readable(&pending, tip) {
                return Some(PendingIssue::Unreadable {
                    number: pending.number(),
                    source_at: pending.source_at,
                });
            }
        }
        let ahead = tip.as_ref().is_none_or(|t| pending.number() > t.header.number);
        (ahead && pending.post_exec_tx.is_some())
            .then(|| PendingIssue::Inexact { number: pending.number() })
    }
}

/// Handle to the overlay: snapshots, status and events. Cheap to clone.
#[derive(Clone)]
pub struct Overlay {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("mode", &self.mode()).finish_non_exhaustive()
    }
}

impl Overlay {
    /// The pending block if it is fresh, exact and ahead of the canonical tip; None means
    /// `pending` must answer as `latest`. A block with a post-exec tx (Lagoon, type `0x7D`) is
    /// never exact here: op-revm cannot apply its settlement.
    pub fn pending(&self) -> Option<Arc<PendingBlock>> {
        if self.shared.native() {
            return None;
        }
        let pending = self.shared.pending.load_full()?;
        let st = self.shared.state();
        if !st.readiness.connected()
            || pending.post_exec_tx.is_some()
            || st.readiness.is_stale(pending.applied_at, Instant::now())
        {
            return None;
        }
        if let Some(tip) = self.shared.tip.load_full() {
            if pending.number() <= tip.header.number || !st.readable(&pending, &tip) {
                return None;
            }
        }
        Some(pending)
    }

    /// The pending block when `hash` is one of its provisional hashes and it can be served
    /// ([`Self::pending`]); `None` for any other hash, so a provisional hash of a block that
    /// has sealed reads as a block that left the chain.
    pub fn pending_by_hash(&self, hash: &B256) -> Option<Arc<PendingBlock>> {
        self.pending().filter(|p| p.answers_to(hash))
    }

    /// Current serving mode: whether the stream is alive and applying. A pending block that is
    /// momentarily not ahead of the tip (between a seal and the next block's first flashblock)
    /// is answered as `latest` by [`Self::pending`] without flipping the mode.
    pub fn mode(&self) -> Mode {
        self.shared.native();
        let st = self.shared.state();
        st.readiness.mode(Instant::now(), self.shared.pending_issue(&st).as_ref())
    }

    /// Readiness: the canonical tip must be fresh; preconfirmations make it fully ready.
    pub fn health(&self) -> Health {
        self.shared.native();
        let st = self.shared.state();
        let issue = self.shared.pending_issue(&st);
        let diverged = st.rejections.last_is(RejectClass::Diverged);
        st.readiness.health(Instant::now(), issue.as_ref(), diverged)
    }

    /// Latest canonical block known.
    pub fn tip(&self) -> Option<Arc<CanonicalBlock>> {
        self.shared.tip.load_full()
    }

    /// The canonical state source.
    pub fn source(&self) -> &Arc<dyn StateSource> {
        &self.shared.source
    }

    /// Chain parameters.
    pub fn chain(&self) -> &ChainConfig {
        &self.shared.config.chain
    }

    /// Subscribes to applied flashblocks, drops and canonical blocks.
    pub fn subscribe(&self) -> broadcast::Receiver<OverlayEvent> {
        self.shared.events.subscribe()
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The status report.
    pub fn status(&self) -> OverlayStatus {
        let c = &self.shared.counters;
        let pending = self.pending();
        let tip = self.tip();
        let native = self.shared.native();
        let now = Instant::now();
        let st = self.shared.state();
        let r = &st.readiness;
        let issue = self.shared.pending_issue(&st);
        let health = r.health(now, issue.as_ref(), st.rejections.last_is(RejectClass::Diverged));
        let last_rejected = st.rejections.last(now);
        let rejected = st.rejections.counts();
        OverlayStatus {
            reason: r.reason(now, health, issue.as_ref(), last_rejected.as_ref()),
            upstream_reachable: r.upstream_error().is_none(),
            rejected,
            last_rejected,
            native_blocks_timestamp: self.shared.config.native_blocks_at,
            execution_error_blocks: r.execution_error_blocks(),
            execution_degraded: r.execution_degraded(),
            mode: r.mode(now, issue.as_ref()),
            health,
            canonical_tip: tip.as_ref().map(|t| t.header.number),
            canonical_hash: tip.as_ref().map(|t| t.hash),
            pending_block: pending.as_ref().map(|p| p.number()),
            flashblock_index: pending.as_ref().map(|p| p.index),
            // Past the cutover the stream is closed by design (no event may have said so).
            stream_connected: r.connected() && !native,
            stream_lag_ms: r.stream_lag(now).map(millis),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            gaps: c.gaps.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            stale: rejected.stale,
            invalid: c.invalid.load(Ordering::Relaxed),
            applied: c.applied.load(Ordering::Relaxed),
            promoted: c.promoted.load(Ordering::Relaxed),
            reorgs: c.reorgs.load(Ordering::Relaxed),
            receipt_mismatches: c.receipt_mismatches.load(Ordering::Relaxed),
            execution_errors: rejected.diverged,
            post_exec_blocks: c.post_exec_blocks.load(Ordering::Relaxed),
        }
    }
}

/// Starts the overlay task, a critical task of `tasks` named `overlay` (the node cannot serve
/// preconfirmations without it). `stream` delivers stream events (from
/// [`crate::stream::run_stream`]).
pub fn spawn(
    config: OverlayConfig,
    source: Arc<dyn StateSource>,
    stream: mpsc::Receiver<StreamEvent>,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Overlay {
    let (events, _) = broadcast::channel(4096);
    let shared = Arc::new(Shared {
        source: source.clone(),
        pending: ArcSwapOption::empty(),
        tip: ArcSwapOption::empty(),
        events,
        counters: Counters::default(),
        state: Mutex::new(State {
            readiness: Readiness::new(Limits {
                stale_after: config.stale_after,
                canonical_stale_after: config.canonical_stale_after,
                hysteresis_blocks: config.readiness_hysteresis_blocks,
                max_pending_depth: config.max_pending_depth,
                native_blocks_at: config.native_blocks_at,
            }),
            rejections: Rejections::default(),
            anchors: Anchors::default(),
        }),
        config,
    });
    let overlay = Overlay { shared: shared.clone() };
    let task = Task {
        executor: Some(FlashblockExecutor::new(
            shared.config.chain.clone(),
            source,
            tokio::runtime::Handle::current(),
        )),
        shared,
        sequencer: FlashblockSequencer::default(),
        broken: false,
        waiting: Vec::new(),
        ever_connected: false,
        reset_on_connect: false,
        unsealed: Default::default(),
        ahead_since: None,
        last_probe: None,
        probing: Arc::new(AtomicBool::new(false)),
        warned: WarnLimiter::new(WARN_EVERY),
        post_exec_block: None,
    };
    tasks.spawn_critical("overlay", task.run(stream, cancel));
    overlay
}

struct Task {
    shared: Arc<Shared>,
    executor: Option<FlashblockExecutor>,
    sequencer: FlashblockSequencer,
    /// The block in progress could not be executed: ignore its flashblocks until index 0.
    broken: bool,
    /// Flashblocks of a block whose parent is not available yet, replayed when it is.
    waiting: Vec<Arc<DecodedFlashblock>>,
    ever_connected: bool,
    /// The stream went down: the block in progress is forgotten when it comes back, unless it
    /// comes back resumed (right after the last flashblock, [`StreamEvent::Resumed`]).
    reset_on_connect: bool,
    /// The last snapshot of recent blocks that are not canonical yet: the sealed block is
    /// reconciled against them even after the next block's flashblocks started.
    unsealed: Unsealed<Arc<PendingBlock>>,
    /// Since when the stream has been on a block beyond tip+1 (the upstream should have
    /// shown the block before it by now); cleared when the tip advances.
    ahead_since: Option<Instant>,
    last_probe: Option<Instant>,
    probing: Arc<AtomicBool>,
    /// Rate limit of the rejection warnings: last warning and frames suppressed since, by
    /// class.
    warned: WarnLimiter,
    /// The last block counted in `post_exec_blocks`.
    post_exec_block: Option<u64>,
}

/// At most one warning per class in this window.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// The stream on a block beyond tip+1 for this long makes the overlay probe the upstream.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// Deadline of an upstream probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Task {
    async fn run(mut self, mut stream: mpsc::Receiver<StreamEvent>, cancel: CancellationToken) {
        let mut canonical = self.shared.source.subscribe();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                latest = self.shared.source.latest() => match latest {
                    Ok(tip) => {
                        info!(number = tip.header.number, hash = %tip.hash, "canonical tip");
                        self.canonical_tip(tip, false);
                        break;
                    }
                    Err(err) => {
                        warn!(%err, "canonical source unavailable, retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                },
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = stream.recv() => match ev {
                    Some(ev) => self.on_stream(ev).await,
                    None => return,
                },
                n = canonical.recv() => match n {
                    Ok(n) => self.on_canonical(n).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "canonical notifications lagged; resyncing the tip");
                        if let Ok(tip) = self.shared.source.latest().await {
                            self.on_canonical(CanonicalNotification::Committed { new: vec![tip] }).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    self.expire();
                    self.probe();
                }
            }
        }
    }

    /// A new block's index 0 arrived: the previous block is finished (a clean one counts for
    /// the readiness hysteresis).
    fn next_block(&mut self, number: u64) {
        let restored = self.shared.state().readiness.block_started(number);
        if let Some(Transition::Restored { block, streak }) = restored {
            info!(block, "{streak} clean blocks after execution errors: readiness restored");
        }
    }

    /// Publishes `tip` as the canonical tip (after a reorg, state on the blocks that left the
    /// chain is not readable any more).
    fn canonical_tip(&self, tip: Arc<CanonicalBlock>, reorg: bool) {
        let mut st = self.shared.state();
        st.anchors.canonical(tip.hash, reorg);
        self.shared.tip.store(Some(tip));
        st.readiness.tip_moved(Instant::now());
    }

    /// While the stream is on blocks the upstream has not shown yet, checks that the
    /// upstream still answers (in the background: ingest never waits for it).
    fn probe(&mut self) {
        let due = self.ahead_since.is_some_and(|t| t.elapsed() >= PROBE_AFTER)
            && self.last_probe.is_none_or(|t| t.elapsed() >= PROBE_AFTER);
        if !due || self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_probe = Some(Instant::now());
        let (shared, probing) = (self.shared.clone(), self.probing.clone());
        tokio::spawn(
            async move {
                let err = match tokio::time::timeout(PROBE_TIMEOUT, shared.source.latest()).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(err)) => Some(err.to_string()),
                    Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                };
                let reachable = err.is_none();
                let was = shared.state().readiness.set_upstream_error(err.clone());
                match (&was, &err) {
                    (None, Some(err)) => warn!(%err, "upstream unreachable while the stream moves on: pending is latest, readiness degraded"),
                    (Some(_), None) => info!("upstream answers again"),
                    _ => {}
                }
                metrics::gauge!("flashnode_overlay_upstream_reachable")
                    .set(if reachable { 1.0 } else { 0.0 });
                probing.store(false, Ordering::Release);
            }
            .instrument(info_span!("upstream_probe")),
        );
    }

    /// Counts a frame that cannot be applied, remembers it for status, and warns (at most
    /// once per class every [`WARN_EVERY`]).
    fn rejected(&mut self, class: RejectClass, block: u64, index: u64, cause: &str) {
        let upstream_tip = self.shared.tip.load().as_ref().map(|t| t.header.number);
        let frame = RejectedFrame {
            class,
            block,
            index,
            upstream_tip,
            cause: cause.to_string(),
            ago_ms: 0,
        };
        let now = Instant::now();
        self.shared.state().rejections.record(frame, now);
        let class = class.as_str();
        if let Some(suppressed) = self.warned.check(class, now) {
            let tip = upstream_tip.map_or("unknown".into(), |t| t.to_string());
            warn!(class, block, index, upstream_tip = %tip, suppressed, "flashblock not applied: {cause}");
        } else {
            debug!(class, block, index, "flashblock not applied");
        }
    }

    /// Counts (once per block) and warns (at most once every [`WARN_EVERY`]) that `block`
    /// carries a post-exec tx: it is answered as `latest` until it seals.
    fn post_exec(&mut self, block: &PendingBlock) {
        if self.post_exec_block == Some(block.number()) {
            return;
        }
        self.post_exec_block = Some(block.number());
        self.shared.counters.post_exec_blocks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flashnode_overlay_fallback_blocks_total", "reason" => "post_exec_tx")
            .increment(1);
        if let Some(suppressed) = self.warned.check("post_exec", Instant::now()) {
            warn!(
                block = block.number(),
                index = block.index,
                suppressed,
                "block carries a post-exec transaction (Lagoon, type 0x7D) whose settlement this node cannot apply (op-revm has no 0x7D): pending is latest for this block; its flashblocks are still passed through"
            );
        } else {
            debug!(block = block.number(), "block carries a post-exec transaction");
        }
    }

    fn expire(&mut self) {
        if let Some(p) = self.shared.pending.load_full() {
            let expiry = self.shared.config.stale_after.saturating_mul(4);
            if Instant::now().saturating_duration_since(p.applied_at) > expiry {
                debug!(number = p.number(), "pending block expired");
                self.shared.pending.store(None);
            }
        }
    }

    async fn on_stream(&mut self, ev: StreamEvent) {
        let c = &self.shared.counters;
        match ev {
            StreamEvent::Connected => {
                if self.ever_connected {
                    c.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                self.ever_connected = true;
                if std::mem::take(&mut self.reset_on_connect) {
                    // A fresh stream: the block in progress waits for the next index 0.
                    self.sequencer.reset();
                    if let Some(ex) = self.executor.as_mut() {
                        ex.reset_current();
                    }
                    self.waiting.clear();
                }
                self.shared.state().readiness.set_connected(true);
            }
            StreamEvent::Resumed { after } => {
                c.reconnects.fetch_add(1, Ordering::Relaxed);
                self.ever_connected = true;
                // The upstream continues right after `after`: the block in progress goes on.
                self.reset_on_connect = false;
                info!(
                    block = after.0,
                    index = after.1,
                    "flashblock stream resumed after the last flashblock"
                );
                self.shared.state().readiness.set_connected(true);
            }
            // Closed at the native-blocks cutover, by design: nothing to report.
            StreamEvent::Disconnected { .. } if self.shared.native() => {
                self.shared.state().readiness.set_connected(false);
            }
            StreamEvent::Disconnected { reason, detail } => {
                c.disconnects.fetch_add(1, Ordering::Relaxed);
                info!(reason = reason.label(), %detail, "flashblock stream down: serving latest for pending");
                self.shared.state().readiness.set_connected(false);
                self.shared.pending.store(None);
                // The block state is kept until the stream is back: a resumed stream carries
                // on with it, a fresh one forgets it then.
                self.reset_on_connect = true;
            }
            StreamEvent::Malformed { .. } => {
                c.malformed.fetch_add(1, Ordering::Relaxed);
            }
            // Past the cutover the chain has no flashblocks: whatever still arrives (the
            // last legacy block's tail) is not served, counted or warned about.
            StreamEvent::Flashblock(_) if self.shared.native() => {}
            StreamEvent::Flashblock(fb) => {
                self.shared.state().readiness.frame_seen(Instant::now());
                self.on_flashblock(fb).await;
            }
        }
    }

    async fn on_flashblock(&mut self, fb: Arc<DecodedFlashblock>) {
        let tip = self.shared.tip.load_full();
        let view = tip.as_ref().map(|t| TipView {
            number: t.header.number,
            hash: t.hash,
            timestamp: t.header.timestamp,
        });
        if view.is_some_and(|t| fb.block_number() >= t.number.saturating_add(2))
            && self.ahead_since.is_none()
        {
            self.ahead_since = Some(Instant::now());
        }
        let was_synced = self.sequencer.is_synced();
        // The tail of a block that was sealed while its last flashblocks were in flight is
        // still applied (subscribers see every flashblock); anything older is stale, and
        // blocks the tip cannot lead to are rejected without moving the sequencer.
        let decision = self.sequencer.classify_at(&fb, view, self.shared.config.max_pending_depth);
        let c = &self.shared.counters;
        metrics::counter!("flashnode_overlay_flashblocks_total", "outcome" => decision.label())
            .increment(1);
        match decision {
            Decision::StartBlock => {
                self.next_block(fb.block_number());
                self.broken = false;
                self.waiting.clear();
                self.apply(fb, true).await;
            }
            Decision::Next => {
                if !self.waiting.is_empty() {
                    self.waiting.push(fb);
                } else if !self.broken {
                    self.apply(fb, false).await;
                }
            }
            Decision::Duplicate => {
                c.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Gap { expected, got } => {
                c.gaps.fetch_add(1, Ordering::Relaxed);
                // The block's state is a prefix now: never build the next block on it.
                if let Some(ex) = self.executor.as_mut() {
                    ex.reset_current();
                }
                // Once out of sync every later frame of the block is a gap: warn only once.
                if was_synced {
                    warn!(
                        block = fb.block_number(),
                        expected,
                        got,
                        "gap in flashblocks: serving the prefix until the next block"
                    );
                } else {
                    debug!(block = fb.block_number(), expected, got, "still out of sync");
                }
            }
            Decision::Stale => {
                let behind = view.is_some_and(|t| fb.block_number() <= t.number);
                if behind && fb.index() == 0 {
                    self.rejected(
                        RejectClass::Stale,
                        fb.block_number(),
                        0,
                        "the block is at or behind the upstream's tip: the stream is behind the upstream, or late",
                    );
                } else {
                    // Deltas of sealed blocks, or of a block joined mid-way: routine.
                    self.shared.state().rejections.count(RejectClass::Stale);
                }
            }
            Decision::Rejected(r) => {
                let cause = match (r, view) {
                    (Rejection::Ahead, Some(t)) => format!(
                        "{} blocks ahead of the upstream's tip (at most {} allowed): {}",
                        fb.block_number().saturating_sub(t.number),
                        self.shared.config.max_pending_depth,
                        r.cause()
                    ),
                    _ => r.cause().to_string(),
                };
                self.rejected(r.into(), fb.block_number(), fb.index(), &cause);
            }
            Decision::Invalid(reason) => {
                c.invalid.fetch_add(1, Ordering::Relaxed);
                warn!(block = fb.block_number(), index = fb.index(), %reason, "invalid flashblock ignored");
            }
        }
    }

    /// Executes one flashblock on a blocking thread and publishes the snapshot.
    async fn apply(&mut self, fb: Arc<DecodedFlashblock>, start: bool) {
        let Some(mut executor) = self.executor.take() else { return };
        let tip = self.shared.tip.load_full();
        let fb2 = fb.clone();
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let res = if start {
                executor.start_block(&fb2, tip.as_deref())
            } else {
                executor.apply_next(&fb2)
            };
            (executor, res)
        })
        .await;
        let (executor, res) = match joined {
            Ok(v) => v,
            Err(err) => {
                // A panic in execution must not take the node down; start afresh.
                warn!(%err, "flashblock execution task failed");
                self.executor = Some(FlashblockExecutor::new(
                    self.shared.config.chain.clone(),
                    self.shared.source.clone(),
                    tokio::runtime::Handle::current(),
                ));
                self.broken = true;
                return;
            }
        };
        self.executor = Some(executor);
        let executed = started.elapsed();
        metrics::histogram!("flashnode_overlay_apply_seconds").record(executed.as_secs_f64());
        let c = &self.shared.counters;
        match res {
            Ok((block, report)) => {
                c.applied.fetch_add(1, Ordering::Relaxed);
                self.shared.state().readiness.applied(Instant::now());
                if report.receipt_mismatches > 0 {
                    c.receipt_mismatches.fetch_add(report.receipt_mismatches, Ordering::Relaxed);
                    metrics::counter!("flashnode_overlay_receipt_mismatches_total")
                        .increment(report.receipt_mismatches);
                }
                if report.gas_mismatch {
                    debug!(
                        number = block.number(),
                        index = block.index,
                        "cumulative gas differs from the stream's"
                    );
                }
                if block.post_exec_tx.is_some() {
                    self.post_exec(&block);
                }
                self.shared.pending.store(Some(block.clone()));
                self.unsealed.push(block.clone());
                let (number, index) = (block.number(), block.index);
                let _ = self.shared.events.send(OverlayEvent::Applied { block, flashblock: fb });
                // Where a frame's time goes once it is in order (the ingest bench reads these).
                debug!(
                    block = number,
                    index,
                    apply_us = executed.as_micros() as u64,
                    publish_us = started.elapsed().saturating_sub(executed).as_micros() as u64,
                    "flashblock applied"
                );
            }
            Err(ApplyError::ParentUnavailable(parent)) if start => {
                debug!(%parent, "parent not available yet; waiting for it");
                self.waiting.push(fb);
            }
            Err(err) => {
                metrics::counter!("flashnode_overlay_execution_errors_total").increment(1);
                let (class, cause) = match &err {
                    ApplyError::Upstream { .. } => (
                        RejectClass::Upstream,
                        format!("re-execution could not read the upstream ({err}; transport failures are retried {TRANSPORT_RETRIES} times): not a divergence; serving the prefix until the next block"),
                    ),
                    _ => (
                        RejectClass::Diverged,
                        format!("re-execution failed ({err}): the upstream's state differs from the builder's (another chain, or an upstream behind or ahead); serving the prefix until the next block"),
                    ),
                };
                metrics::counter!("flashnode_overlay_flashblocks_total", "outcome" => class.as_str())
                    .increment(1);
                self.rejected(class, fb.block_number(), fb.index(), &cause);
                self.broken = true;
                // Its state is not the builder's: never build the next block on it.
                if let Some(ex) = self.executor.as_mut() {
                    ex.reset_current();
                }
                let degraded = self.shared.state().readiness.block_error(Instant::now());
                if let Some(Transition::Degraded { streak, recover_after }) = degraded {
                    warn!(block = fb.block_number(), blocks = streak, "execution errors in {streak} consecutive blocks: readiness degraded until {recover_after} clean blocks");
                }
            }
        }
    }

    async fn on_canonical(&mut self, n: CanonicalNotification) {
        let reorg = matches!(
            n,
            CanonicalNotification::Reorged { .. } | CanonicalNotification::Reverted { .. }
        );
        let tip = match n.tip() {
            Some(t) => t.clone(),
            None => match self.shared.source.latest().await {
                Ok(t) => t,
                Err(_) => return,
            },
        };
        self.canonical_tip(tip.clone(), reorg);
        self.ahead_since = None;
        self.shared.state().readiness.set_upstream_error(None);
        let _ = self.shared.events.send(OverlayEvent::Canonical(tip.clone()));
        if reorg {
            if let Some(ex) = self.executor.as_mut() {
                ex.reset();
            }
            self.sequencer.reset();
            self.unsealed.clear();
        }
        // Reconcile the sealed block with what we preconfirmed for it, even if the next
        // block's flashblocks already started.
        let sealed_as_ours = match self.unsealed.take_sealed(tip.header.number) {
            Some(ours) => self.reconcile(&ours, &tip),
            None => true,
        };
        if let Some(pending) = self.shared.pending.load_full() {
            let link = PendingLink {
                number: pending.number(),
                parent_hash: pending.env.parent_hash,
                source_at: pending.source_at,
            };
            match pending_fate(link, tip.header.number, tip.hash, sealed_as_ours) {
                PendingFate::Keep => {}
                PendingFate::Sealed => self.shared.pending.store(None),
                PendingFate::Void => {
                    self.shared.counters.reorgs.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        number = pending.number(),
                        "pending block built on a non-canonical parent (or on state the sealed parent does not have): dropped"
                    );
                    let _ = self
                        .shared
                        .events
                        .send(OverlayEvent::Dropped { block: pending.clone(), first_dropped: 0 });
                    self.shared.pending.store(None);
                    self.unsealed.clear();
                    if let Some(ex) = self.executor.as_mut() {
                        ex.reset();
                    }
                    self.sequencer.reset();
                }
            }
        }
        if let Some(first) = self.waiting.first().cloned() {
            let parent = first.payload.base.as_ref().map(|b| b.parent_hash);
            match waiting_fate(first.block_number(), parent, tip.header.number, tip.hash) {
                WaitingFate::Wait => {}
                WaitingFate::Replay => {
                    let waiting = std::mem::take(&mut self.waiting);
                    let mut iter = waiting.into_iter();
                    if let Some(first) = iter.next() {
                        self.apply(first, true).await;
                    }
                    for fb in iter {
                        if self.broken || !self.waiting.is_empty() {
                            break;
                        }
                        self.apply(fb, false).await;
                    }
                }
                WaitingFate::ParentNeverCanonical => {
                    self.waiting.clear();
                    self.rejected(
                        RejectClass::UnknownParent,
                        first.block_number(),
                        0,
                        &format!("its parent {} never became canonical on the upstream (another chain, a reorg, or an upstream behind)", parent.unwrap_or_default()),
                    );
                }
            }
        }
    }

    /// Compares the sealed block with the preconfirmed one ([`compare`]): promote, or drop
    /// what diverged. Returns whether the sealed block is exactly what was preconfirmed,
    /// i.e. whether a child built on our state of it stands.
    fn reconcile(&self, pending: &Arc<PendingBlock>, sealed: &CanonicalBlock) -> bool {
        let c = &self.shared.counters;
        let verdict =
            compare(&pending.txs, |t| (t.hash, &t.receipt), &sealed.tx_hashes, &sealed.receipts);
        match verdict {
            Sealed::Promoted { .. } => {
                c.promoted.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flashnode_overlay_reconcile_total", "outcome" => "promoted")
                    .increment(1);
            }
            Sealed::Reorg { first_dropped, dropped } => {
                c.reorgs.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flashnode_overlay_reconcile_total", "outcome" => "reorg")
                    .increment(1);
                warn!(
                    number = sealed.header.number,
                    first_dropped, dropped, "tail reorg: preconfirmations dropped"
                );
                let _ = self
                    .shared
                    .events
                    .send(OverlayEvent::Dropped { block: pending.clone(), first_dropped });
            }
        }
        verdict.as_preconfirmed()
    }
}
