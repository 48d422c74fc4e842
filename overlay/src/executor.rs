//! Re-executes flashblocks with op-revm on top of canonical state (or on top of the previous
//! block's flashblock state when index 0 of N+1 arrives before N is canonical) and builds the
//! [`PendingBlock`] snapshots.

use crate::{
    frame::DecodedFlashblock,
    metrics_names::{
        CARRIED_BLOCKS_TOTAL, DISCOVERED_READS_TOTAL, DISCOVERY_FETCH_SECONDS,
        DISCOVERY_ROUNDS_TOTAL, DISCOVERY_RUN_SECONDS, SPECULATED_TXS_KEPT_TOTAL,
    },
    pending::{PendingBlock, PendingState},
};
use alloy_consensus::{transaction::SignerRecoverable, TxReceipt};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_engine::PayloadId;
use flashnode_exec::{
    BlockBuilder, BlockEnvInput, CanonicalBlock, ChainConfig, ExecError, ExecutedTx, SourceDb,
    SourceError, StateSource,
};
use op_alloy_consensus::{OpReceipt, OpTxEnvelope};
use op_alloy_rpc_types_engine::flashblock::OpFlashblockPayloadBase;
use revm::database::CacheDB;
use std::{collections::HashMap, sync::Arc, time::Instant};
use tracing::{debug, warn};

/// Why a flashblock could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The block's parent state is not known yet (neither canonical nor our previous block).
    #[error("parent {0} is not available yet")]
    ParentUnavailable(B256),
    /// A transaction does not decode or recover.
    #[error("undecodable transaction at position {index}: {source}")]
    BadTransaction {
        /// Position in the flashblock.
        index: usize,
        /// Why.
        #[source]
        source: TxDecodeError,
    },
    /// A transaction is invalid on our state, or our state cannot be read: we diverge from
    /// the builder.
    #[error("transaction {hash} does not execute: {source}")]
    Diverged {
        /// Transaction hash.
        hash: B256,
        /// Why.
        #[source]
        source: ExecError<SourceError>,
    },
    /// The upstream could not be read (transport failure or timeout after the retries, or a
    /// JSON-RPC error): not a divergence from the builder.
    #[error("transaction {hash}: upstream read failed: {source}")]
    Upstream {
        /// Transaction hash.
        hash: B256,
        /// What failed.
        #[source]
        source: SourceError,
    },
    /// A flashblock for another block than the one in progress.
    #[error("no block in progress for this flashblock")]
    NoBlock,
}

/// Why a flashblock's transaction could not be turned into a signed transaction.
#[derive(Debug, thiserror::Error)]
pub enum TxDecodeError {
    /// Not a valid EIP-2718 encoding.
    #[error(transparent)]
    Decode(#[from] alloy_eips::eip2718::Eip2718Error),
    /// The signature does not recover a signer.
    #[error(transparent)]
    Recover(#[from] alloy_consensus::crypto::RecoveryError),
    /// The thread recovering signers panicked.
    #[error("signer recovery panicked")]
    Panicked,
}

/// A block whose flashblocks are being applied.
struct InProgress {
    builder: BlockBuilder<CacheDB<SourceDb>>,
    payload_id: PayloadId,
    index: u64,
    source_at: B256,
    source_db: SourceDb,
    /// The latest `diff.post_exec_tx` of the block (sticky: once a block has one, its state
    /// is not exact).
    post_exec_tx: Option<Bytes>,
    /// `diff.block_hash` of the last applied flashblock (zero in the Subblocks shape).
    stream_hash: B256,
    /// Blocks between it and the canonical block at `source_at` (0: built on canonical state).
    chained: u64,
    /// The provisional hashes served for this block so far, one per applied flashblock.
    provisional_hashes: Vec<B256>,
}

/// The executor's memory of the last streamed block, to build its child on.
struct Finished {
    number: u64,
    /// Index of its last applied flashblock.
    index: u64,
    /// Whether its state is exact (no post-exec tx this node cannot apply).
    exact: bool,
    /// The stream's hash of it after its last applied flashblock; `None` when zero (Subblocks).
    stream_hash: Option<B256>,
    /// Blocks between it and the canonical block its state reads fall back to.
    chained: u64,
    /// Its transactions and receipts as executed, to recognise it when it seals.
    executed: Vec<(B256, OpReceipt)>,
    db: CacheDB<SourceDb>,
}

/// Most accounts and slots a block's state may hold to be carried over as its child's base
/// (every snapshot copies the block's state, so an unbounded carry would cost every
/// flashblock more as the chain goes on).
pub const MAX_CARRIED_ENTRIES: usize = 50_000;

impl Finished {
    /// Whether `canonical` is this block as executed here: same transactions in the same
    /// order, receipts agreeing, and all of it (a block that sealed with more transactions
    /// than the node saw is not).
    fn sealed_as_executed(&self, canonical: &CanonicalBlock) -> bool {
        sealed_as_executed(self.number, &self.executed, canonical)
    }

    /// Entries of its state (accounts and slots).
    fn entries(&self) -> usize {
        self.db.cache.accounts.values().map(|a| 1 + a.storage.len()).sum()
    }
}

/// Most blocks built one on another's flashblock state before one waits for its canonical
/// parent. Every chained block keeps the first one's canonical anchor for its reads, and a
/// pending block is served only while that anchor is a recent canonical block (the overlay
/// keeps 16): a node whose tip view lags every seal would otherwise chain forever, its anchor
/// would age out, and `pending` would turn into `latest` for good.
pub const MAX_CHAINED_BLOCKS: u64 = 8;

/// Applies flashblocks one at a time; owned by the overlay task, run on blocking threads.
pub struct FlashblockExecutor {
    chain: ChainConfig,
    source: Arc<dyn StateSource>,
    handle: tokio::runtime::Handle,
    current: Option<InProgress>,
    previous: Option<Finished>,
}

impl std::fmt::Debug for FlashblockExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashblockExecutor")
            .field("current", &self.current.as_ref().map(|c| (c.builder.input().number, c.index)))
            .finish_non_exhaustive()
    }
}

/// Counts of what an applied flashblock showed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyReport {
    /// Metadata receipts that disagreed with our execution.
    pub receipt_mismatches: u64,
    /// Whether our cumulative gas differs from the stream's.
    pub gas_mismatch: bool,
}

impl FlashblockExecutor {
    /// An executor reading canonical state from `source`.
    pub fn new(
        chain: ChainConfig,
        source: Arc<dyn StateSource>,
        handle: tokio::runtime::Handle,
    ) -> Self {
        Self { chain, source, handle, current: None, previous: None }
    }

    /// Forgets the block in progress (after a gap, a reorg, or a stream reset).
    pub fn reset_current(&mut self) {
        self.current = None;
    }

    /// Forgets everything, including the previous block's state.
    pub fn reset(&mut self) {
        self.current = None;
        self.previous = None;
    }

    /// The block number in progress.
    pub fn current_block(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.builder.input().number)
    }

    /// Starts block `base` from index 0 and applies it. `canonical_tip` is the number and hash
    /// of the latest canonical block the node knows.
    ///
    /// Index 0 of N+1 is linked to the block N in progress by number, never by the stream's
    /// `block_hash` alone (zero in the Subblocks shape): it builds on N's flashblock state when
    /// N is the block streamed just before it (and, when the frame names its predecessor, N's
    /// last applied flashblock), N's state is exact, N is not canonical yet, and a non-zero
    /// stream hash of N (legacy) does not contradict N+1's `parent_hash` (a child of another
    /// N, or N's last flashblocks missed). Otherwise it builds
    /// on canonical state at `base.parent_hash`, which the source refuses
    /// ([`ApplyError::ParentUnavailable`]) until the upstream has that block.
    ///
    /// When N is canonical already and sealed exactly as the node executed it (same
    /// transactions, receipts agreeing, none missing; the blocks it was chained on were
    /// reconciled as they sealed), N's state as executed here is N's canonical post-state: N+1
    /// starts from it, reads of what N never touched now pinned to N, instead of reading
    /// everything again (state that survives blocks, #24).
    pub fn start_block(
        &mut self,
        fb: &DecodedFlashblock,
        canonical_tip: Option<&CanonicalBlock>,
    ) -> Result<(Arc<PendingBlock>, ApplyReport), ApplyError> {
        let base = fb.payload.base.as_ref().ok_or(ApplyError::NoBlock)?;
        // Keep the last block's state until its child starts: it may be the parent.
        if let Some(cur) = self.current.take() {
            let number = cur.builder.input().number;
            let (index, exact) = (cur.index, cur.post_exec_tx.is_none());
            let stream_hash = (!cur.stream_hash.is_zero()).then_some(cur.stream_hash);
            let chained = cur.chained;
            let executed =
                cur.builder.transactions().iter().map(|t| (t.hash, t.receipt.clone())).collect();
            let db = cur.builder.into_db();
            self.previous =
                Some(Finished { number, index, exact, stream_hash, chained, executed, db });
        }
        let mut chained = 0;
        let tip = canonical_tip.map(|t| (t.header.number, t.hash));
        let db = match &self.previous {
            Some(prev)
                if prev.exact
                    && prev.chained < MAX_CHAINED_BLOCKS
                    && prev.number + 1 == base.block_number
                    && tip.is_none_or(|(n, _)| n < prev.number)
                    && fb.prev_flashblock_id.is_none_or(|id| id == (prev.number, prev.index))
                    && prev.stream_hash.is_none_or(|h| h == base.parent_hash) =>
            {
                // Index 0 of N+1 before N is canonical: build on N's flashblock state. The
                // base names N's hash, which BLOCKHASH(N) answers in N+1.
                let db = prev.db.clone();
                db.db.insert_block_hash(prev.number, base.parent_hash);
                chained = prev.chained + 1;
                db
            }
            // A chained N qualifies too: each block of its chain that sealed otherwise than
            // executed here reset this executor when it sealed (the overlay's reconcile), so
            // what N's state holds is what those blocks wrote.
            Some(prev)
                if prev.exact
                    && prev.number + 1 == base.block_number
                    && canonical_tip.is_some_and(|t| {
                        t.hash == base.parent_hash && prev.sealed_as_executed(t)
                    })
                    && prev.entries() <= MAX_CARRIED_ENTRIES =>
            {
                // N sealed as executed here, on canonical state: its state is N's canonical
                // post-state. What N never touched is read at N from now on.
                let mut db = prev.db.clone();
                db.db = db.db.pinned_to(base.parent_hash);
                metrics::counter!(CARRIED_BLOCKS_TOTAL).increment(1);
                db
            }
            _ => {
                if tip.map(|(_, h)| h) != Some(base.parent_hash) {
                    // The parent may still be canonical even if our tip view lags; the source
                    // errors on the first read otherwise.
                    debug!(parent = %base.parent_hash, "starting a block whose parent is not our canonical tip");
                }
                CacheDB::new(SourceDb::new(
                    self.source.clone(),
                    base.parent_hash,
                    self.handle.clone(),
                ))
            }
        };
        let source_db = db.db.clone();
        let source_at = source_db.at();
        let env = env_of(base);
        let builder = BlockBuilder::new(self.chain.clone(), env, db);
        self.current = Some(InProgress {
            builder,
            payload_id: fb.payload.payload_id,
            index: 0,
            source_at,
            source_db,
            post_exec_tx: None,
            stream_hash: B256::ZERO,
            chained,
            provisional_hashes: Vec::new(),
        });
        match self.apply_txs(fb) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.current = None;
                Err(e)
            }
        }
    }

    /// Applies the next flashblock of the block in progress.
    pub fn apply_next(
        &mut self,
        fb: &DecodedFlashblock,
    ) -> Result<(Arc<PendingBlock>, ApplyReport), ApplyError> {
        match &self.current {
            Some(cur) if cur.payload_id == fb.payload.payload_id => {}
            _ => return Err(ApplyError::NoBlock),
        }
        // A flashblock that fails part-way leaves the block half applied: forget it, so the
        // next block never builds on that state.
        let res = self.apply_txs(fb);
        if res.is_err() {
            self.current = None;
        }
        res
    }

    fn apply_txs(
        &mut self,
        fb: &DecodedFlashblock,
    ) -> Result<(Arc<PendingBlock>, ApplyReport), ApplyError> {
        let local = self.source.reads_are_local();
        let cur = self.current.as_mut().ok_or(ApplyError::NoBlock)?;
        let first_new = cur.builder.transactions().len();
        let mut report = ApplyReport::default();
        let raws = &fb.payload.diff.transactions;
        if local {
            // Reads cost no round trip: execute each transaction as soon as its signer is
            // known while the other cores recover the next ones.
            recover_pipelined(raws, |tx, sender, raw| {
                execute_one(cur, fb, &mut report, tx, sender, raw)
            })?;
        } else {
            // Recover every signer first so the block's reads go upstream in one batch.
            let decoded: Vec<(OpTxEnvelope, Address, &Bytes)> = decode_and_recover(raws)?
                .into_iter()
                .zip(raws)
                .map(|((tx, sender), raw)| (tx, sender, raw))
                .collect();
            prefetch(cur, &decoded);
            execute_discovering(cur, fb, &mut report, &decoded)?;
        }
        cur.index = fb.payload.index;
        cur.stream_hash = fb.payload.diff.block_hash;
        if fb.post_exec_tx.is_some() {
            cur.post_exec_tx = fb.post_exec_tx.clone();
        }
        report.gas_mismatch = cur.builder.gas_used() != fb.payload.diff.gas_used;
        // Never the stream's state root, withdrawals root or block hash (zero in the Subblocks
        // shape): the roots are not computed here, the hash is the served header's own.
        let header = cur.builder.header(B256::ZERO, B256::ZERO);
        let hash = header.hash_slow();
        cur.provisional_hashes.push(hash);
        let txs: Vec<_> = cur.builder.transactions().to_vec();
        let positions: HashMap<B256, usize> =
            txs.iter().enumerate().map(|(i, t)| (t.hash, i)).collect();
        let pending = PendingBlock {
            env: cur.builder.input().clone(),
            payload_id: cur.payload_id,
            index: cur.index,
            header,
            hash,
            provisional_hashes: cur.provisional_hashes.clone().into(),
            post_exec_tx: cur.post_exec_tx.clone(),
            txs: Arc::new(txs),
            positions: Arc::new(positions),
            state: Arc::new(PendingState::from_db(cur.builder.db())),
            source_at: cur.source_at,
            source_db: cur.source_db.clone(),
            applied_at: Instant::now(),
            first_new,
        };
        Ok((Arc::new(pending), report))
    }
}

/// Most read-discovery rounds per flashblock; past them the rest of its reads wait one by one
/// (a bound on the speculative work a flashblock of pathological transactions can cause).
const MAX_DISCOVERY_ROUNDS: usize = 8;

/// Executes `txs` with reads that never wait: a transaction that reads state the node does not
/// hold stops untouched, read-discovery ([`crate::discover`]) runs it and the ones after it
/// speculatively and fetches what they read in one batch. Where every value the speculative run
/// guessed (an absent account, a zero slot) turns out right, its outcomes are the real ones and
/// are committed as they are; from the first wrong guess on, the transactions run again. Hot
/// state costs no discovery at all.
fn execute_discovering(
    cur: &mut InProgress,
    fb: &DecodedFlashblock,
    report: &mut ApplyReport,
    txs: &[(OpTxEnvelope, Address, &Bytes)],
) -> Result<(), ApplyError> {
    let mut rounds = 0;
    let mut run = |cur: &mut InProgress| -> Result<(), ApplyError> {
        let source_at = cur.source_at;
        let mut i = 0;
        while let Some((tx, sender, raw)) = txs.get(i) {
            let waits = rounds >= MAX_DISCOVERY_ROUNDS;
            cur.builder.db_mut().db.set_waits(waits);
            let hash = tx.tx_hash();
            match cur.builder.execute(tx.clone(), *sender, (*raw).clone()) {
                Err(ExecError::State(SourceError::NotCached(_))) if !waits => {
                    rounds += 1;
                    let started = Instant::now();
                    let spec = crate::discover::discover(&cur.builder, &txs[i..]);
                    metrics::histogram!(DISCOVERY_RUN_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(DISCOVERY_ROUNDS_TOTAL).increment(1);
                    metrics::counter!(DISCOVERED_READS_TOTAL).increment(spec.misses().len() as u64);
                    if spec.misses().is_empty() {
                        // The guess found nothing new: read what is missing one by one.
                        rounds = MAX_DISCOVERY_ROUNDS;
                    } else if let Err(err) = timed_fetch(&cur.source_db, spec.misses()) {
                        debug!(%err, "read-discovery fetch failed; reads wait one by one");
                        rounds = MAX_DISCOVERY_ROUNDS;
                    } else {
                        let confirmed = spec.into_confirmed(&cur.source_db);
                        metrics::counter!(SPECULATED_TXS_KEPT_TOTAL)
                            .increment(confirmed.len() as u64);
                        for outcome in confirmed {
                            let hash = outcome.hash();
                            let executed = cur.builder.commit(outcome);
                            check_executed(source_at, fb, report, hash, Ok(executed))?;
                            i += 1;
                        }
                    }
                }
                res => {
                    check_executed(source_at, fb, report, hash, res)?;
                    i += 1;
                }
            }
        }
        Ok(())
    };
    let res = run(cur);
    // The block's state is read by the next block and by nothing else with this copy; reads
    // through it wait again.
    cur.builder.db_mut().db.set_waits(true);
    res
}

/// [`crate::discover::fetch`], timed.
fn timed_fetch(
    source: &flashnode_exec::SourceDb,
    misses: &crate::discover::Misses,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let fetched = crate::discover::fetch(source, misses);
    metrics::histogram!(DISCOVERY_FETCH_SECONDS).record(started.elapsed().as_secs_f64());
    fetched
}

/// Executes one decoded transaction of `fb` into the block and checks its receipt against the
/// stream's metadata receipt.
fn execute_one(
    cur: &mut InProgress,
    fb: &DecodedFlashblock,
    report: &mut ApplyReport,
    tx: OpTxEnvelope,
    sender: Address,
    raw: &Bytes,
) -> Result<(), ApplyError> {
    let (hash, source_at) = (tx.tx_hash(), cur.source_at);
    let res = cur.builder.execute(tx, sender, raw.clone());
    check_executed(source_at, fb, report, hash, res)
}

/// Checks an executed transaction's receipt against the stream's metadata receipt, or types
/// why it did not execute.
fn check_executed(
    source_at: B256,
    fb: &DecodedFlashblock,
    report: &mut ApplyReport,
    hash: B256,
    res: Result<&ExecutedTx, ExecError<SourceError>>,
) -> Result<(), ApplyError> {
    match res {
        Ok(executed) => {
            if let Some(meta) = fb.payload.metadata.receipts.get(&hash) {
                if !receipts_agree(meta, &executed.receipt) {
                    report.receipt_mismatches += 1;
                    warn!(%hash, "metadata receipt disagrees with re-execution; the executed receipt wins");
                }
            }
            Ok(())
        }
        // The block's state is unknown to the source: its parent is not there yet.
        Err(ExecError::State(SourceError::UnknownBlock(_))) => {
            Err(ApplyError::ParentUnavailable(source_at))
        }
        Err(ExecError::State(
            source @ (SourceError::Transport { .. }
            | SourceError::Timeout { .. }
            | SourceError::Rpc { .. }),
        )) => Err(ApplyError::Upstream { hash, source }),
        Err(source) => Err(ApplyError::Diverged { hash, source }),
    }
}

/// Flashblocks with at least this many transactions recover their signers on every core.
const PARALLEL_RECOVERY_MIN: usize = 16;

/// Flashblocks with at least this many transactions recover signers on helper threads while
/// executing (below it, starting a thread costs about what it saves).
const PIPELINE_MIN: usize = 4;

/// How many cores the process may use (read once: on Linux the answer comes from
/// sched_getaffinity and cgroup files).
fn cores() -> usize {
    static CORES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    });
    *CORES
}

/// Decodes one transaction (EIP-2718) and recovers its signer.
fn decode_one(index: usize, raw: &Bytes) -> Result<(OpTxEnvelope, Address), ApplyError> {
    let bad = |source: TxDecodeError| ApplyError::BadTransaction { index, source };
    let tx = OpTxEnvelope::decode_2718_exact(raw).map_err(|e| bad(e.into()))?;
    let sender = match &tx {
        OpTxEnvelope::Deposit(d) => d.from,
        other => other.recover_signer().map_err(|e| bad(e.into()))?,
    };
    Ok((tx, sender))
}

/// Decodes and recovers `raws` and hands each transaction to `exec` in order, as soon as its
/// signer is known. This thread goes front to back, executing each transaction and recovering
/// it first when no helper has; helper threads (one per other core) recover from the back
/// towards it and stop where they meet. This thread never waits for a helper, neither for a
/// transaction a helper has claimed but not delivered yet (it is recovered here too: a busy
/// machine may not run the helper soon) nor for the helpers to end, so the worst case is the
/// serial one plus starting the helpers. Execution thus overlaps recovery
/// instead of following it (recovery is most of the CPU of re-execution). The first error in
/// order wins: a transaction that does not decode stops the flashblock where it stands, after
/// the transactions before it were executed.
fn recover_pipelined<F>(raws: &[Bytes], mut exec: F) -> Result<(), ApplyError>
where
    F: FnMut(OpTxEnvelope, Address, &Bytes) -> Result<(), ApplyError>,
{
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    };
    type Recovered = Result<(OpTxEnvelope, Address), ApplyError>;
    let n = raws.len();
    let helpers = cores().saturating_sub(1).min(n / PIPELINE_MIN);
    if helpers == 0 {
        for (i, raw) in raws.iter().enumerate() {
            let (tx, sender) = decode_one(i, raw)?;
            exec(tx, sender, raw)?;
        }
        return Ok(());
    }
    // `front`: the first transaction this thread has not taken yet; `back`: one past the
    // lowest transaction a helper has claimed. Helpers stop once they pass `front`. They are
    // not joined: on a busy machine a helper may start late, and waiting for it to see that
    // nothing is left would cost more than the flashblock (they own what they read).
    let front = Arc::new(AtomicUsize::new(0));
    let back = Arc::new(AtomicUsize::new(n));
    let shared: Arc<[Bytes]> = raws.into();
    // Bounded at the flashblock's size: a helper never waits to hand a result over.
    let (results, ready_rx) = mpsc::sync_channel::<(usize, Recovered)>(n);
    for _ in 0..helpers {
        let (results, front, back, raws) =
            (results.clone(), front.clone(), back.clone(), shared.clone());
        // A helper that cannot start leaves its share to this thread.
        let _ = std::thread::Builder::new().name("recover".into()).spawn(move || loop {
            let claimed = back.fetch_sub(1, Ordering::AcqRel);
            let Some(i) = claimed.checked_sub(1) else { return };
            if i < front.load(Ordering::Acquire) {
                return;
            }
            let Some(raw) = raws.get(i) else { return };
            if results.send((i, decode_one(i, raw))).is_err() {
                return;
            }
        });
    }
    drop(results);
    let mut slots: Vec<Option<Recovered>> = (0..n).map(|_| None).collect();
    let mut run = || -> Result<(), ApplyError> {
        for (k, raw) in raws.iter().enumerate() {
            front.store(k + 1, Ordering::Release);
            while let Ok((i, r)) = ready_rx.try_recv() {
                slots[i] = Some(r);
            }
            let (tx, sender) = match slots[k].take() {
                Some(item) => item?,
                None => decode_one(k, raw)?,
            };
            exec(tx, sender, raw)?;
        }
        Ok(())
    };
    let res = run();
    // Helpers still running stop at their next claim (or their next send).
    front.store(n, Ordering::Release);
    res
}

/// Decodes each transaction (EIP-2718) and recovers its signer. Signer recovery is most of a
/// flashblock's re-execution time (an ECDSA public-key recovery per transaction, about half of
/// the profile at 250 transactions), and transactions are independent, so large flashblocks
/// are split over the cores; the first failure (lowest index) is the error.
fn decode_and_recover(raws: &[Bytes]) -> Result<Vec<(OpTxEnvelope, Address)>, ApplyError> {
    let one = decode_one;
    let cores = cores();
    if raws.len() < PARALLEL_RECOVERY_MIN || cores < 2 {
        return raws.iter().enumerate().map(|(i, raw)| one(i, raw)).collect();
    }
    let chunk = raws.len().div_ceil(cores);
    let serial = |offset: usize, part: &[Bytes]| -> Result<Vec<_>, ApplyError> {
        part.iter().enumerate().map(|(i, raw)| one(offset + i, raw)).collect()
    };
    std::thread::scope(|scope| {
        let mut chunks = raws.chunks(chunk).enumerate();
        let first = chunks.next();
        // A chunk whose thread cannot be started runs here instead.
        let others: Vec<_> = chunks
            .map(|(c, part)| {
                let handle = std::thread::Builder::new()
                    .spawn_scoped(scope, move || serial(c * chunk, part));
                (c, part, handle.ok())
            })
            .collect();
        let mine = first.map(|(_, part)| serial(0, part)).unwrap_or_else(|| Ok(Vec::new()));
        // Join every thread before returning, then the lowest failing index wins.
        let results: Vec<Result<Vec<_>, ApplyError>> = std::iter::once(mine)
            .chain(others.into_iter().map(|(c, part, handle)| match handle {
                Some(h) => h.join().unwrap_or_else(|_| {
                    Err(ApplyError::BadTransaction {
                        index: c * chunk,
                        source: TxDecodeError::Panicked,
                    })
                }),
                None => serial(c * chunk, part),
            }))
            .collect();
        let mut out = Vec::with_capacity(raws.len());
        for part in results {
            out.extend(part?);
        }
        Ok(out)
    })
}

/// Warms the canonical source with what the flashblock's transactions will read first (senders,
/// recipients, access lists) that the block has not loaded yet: one upstream batch instead of a
/// round trip per account. A failed prefetch only costs the reads it would have saved.
fn prefetch(cur: &InProgress, txs: &[(OpTxEnvelope, Address, &Bytes)]) {
    use alloy_consensus::Transaction;
    let loaded = &cur.builder.db().cache.accounts;
    let mut accounts = Vec::new();
    let mut slots = Vec::new();
    // Every fee-paying transaction credits the block's beneficiary and the fee vaults: unread,
    // a speculative run would guess them absent, and that wrong guess would cost the whole
    // run its outcomes.
    if txs.iter().any(|(tx, _, _)| !tx.is_deposit()) {
        accounts.push(cur.builder.input().coinbase);
        accounts.extend(crate::carry::FEE_VAULTS);
    }
    for (tx, sender, _) in txs {
        accounts.push(*sender);
        if let Some(to) = tx.to() {
            accounts.push(to);
        }
        for item in tx.access_list().map(|l| l.0.as_slice()).unwrap_or_default() {
            accounts.push(item.address);
            slots
                .extend(item.storage_keys.iter().map(|k| (item.address, U256::from_be_bytes(k.0))));
        }
    }
    accounts.retain(|a| !loaded.contains_key(a));
    slots.retain(|(a, k)| loaded.get(a).is_none_or(|acc| !acc.storage.contains_key(k)));
    if accounts.is_empty() && slots.is_empty() {
        return;
    }
    if let Err(err) = cur.source_db.prefetch_blocking(accounts, slots) {
        debug!(%err, "prefetch of flashblock state failed; reads fall back to one at a time");
    }
}

/// Whether `canonical` is block `number` with exactly the transactions `executed` (hash and
/// receipt, in order) and no other.
fn sealed_as_executed(
    number: u64,
    executed: &[(B256, OpReceipt)],
    canonical: &CanonicalBlock,
) -> bool {
    canonical.header.number == number
        && canonical.tx_hashes.len() == executed.len()
        && canonical.receipts.len() == executed.len()
        && executed
            .iter()
            .zip(canonical.tx_hashes.iter().zip(&canonical.receipts))
            .all(|((hash, ours), (h, theirs))| hash == h && receipts_agree(theirs, ours))
}

/// Whether a metadata receipt says what our execution says.
fn receipts_agree(meta: &OpReceipt, ours: &OpReceipt) -> bool {
    meta.status() == ours.status()
        && meta.cumulative_gas_used() == ours.cumulative_gas_used()
        && meta.logs() == ours.logs()
}

/// The block environment of a flashblock base.
pub fn env_of(base: &OpFlashblockPayloadBase) -> BlockEnvInput {
    BlockEnvInput {
        number: base.block_number,
        timestamp: base.timestamp,
        coinbase: base.fee_recipient,
        base_fee: base.base_fee_per_gas.saturating_to(),
        gas_limit: base.gas_limit,
        prev_randao: base.prev_randao,
        parent_hash: base.parent_hash,
        parent_beacon_block_root: base.parent_beacon_block_root,
        extra_data: base.extra_data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_network::TxSignerSync;
    use alloy_primitives::TxKind;
    use alloy_signer_local::PrivateKeySigner;

    fn signed(signer: &PrivateKeySigner, nonce: u64) -> Bytes {
        let mut tx = TxEip1559 {
            chain_id: 901,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(7)),
            ..Default::default()
        };
        let sig = signer.sign_transaction_sync(&mut tx).unwrap();
        TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into()
    }

    #[test]
    fn a_block_is_carried_only_when_it_sealed_exactly_as_executed() {
        use alloy_consensus::{Eip658Value, Receipt};
        let receipt = |gas: u64, ok: bool| {
            OpReceipt::Eip1559(Receipt {
                status: Eip658Value::Eip658(ok),
                cumulative_gas_used: gas,
                logs: Vec::new(),
            })
        };
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let executed = vec![(a, receipt(21_000, true)), (b, receipt(42_000, true))];
        let canonical = |hashes: Vec<B256>, receipts: Vec<OpReceipt>| CanonicalBlock {
            header: alloy_consensus::Header { number: 7, ..Default::default() },
            hash: B256::repeat_byte(9),
            tx_hashes: hashes,
            receipts,
        };
        let same = canonical(vec![a, b], executed.iter().map(|(_, r)| r.clone()).collect());
        assert!(sealed_as_executed(7, &executed, &same));
        assert!(!sealed_as_executed(8, &executed, &same), "another block");
        // A tail the node never saw, a dropped tail, another order, another outcome.
        let longer = canonical(
            vec![a, b, B256::repeat_byte(3)],
            vec![receipt(21_000, true), receipt(42_000, true), receipt(63_000, true)],
        );
        assert!(!sealed_as_executed(7, &executed, &longer));
        let shorter = canonical(vec![a], vec![receipt(21_000, true)]);
        assert!(!sealed_as_executed(7, &executed, &shorter));
        let swapped = canonical(vec![b, a], vec![receipt(21_000, true), receipt(42_000, true)]);
        assert!(!sealed_as_executed(7, &executed, &swapped));
        let failed = canonical(vec![a, b], vec![receipt(21_000, true), receipt(42_000, false)]);
        assert!(!sealed_as_executed(7, &executed, &failed));
    }

    #[test]
    fn parallel_recovery_keeps_order_and_reports_the_first_bad_transaction() {
        let signers: Vec<PrivateKeySigner> = (0..5).map(|_| PrivateKeySigner::random()).collect();
        let raws: Vec<Bytes> = (0..40).map(|i| signed(&signers[i % 5], i as u64)).collect();
        let decoded = decode_and_recover(&raws).unwrap();
        assert_eq!(decoded.len(), 40);
        for (i, (tx, sender)) in decoded.iter().enumerate() {
            assert_eq!(*sender, signers[i % 5].address(), "tx {i}");
            assert_eq!(alloy_consensus::Transaction::nonce(tx), i as u64);
        }
        // Small flashblocks take the serial path and agree.
        assert_eq!(decode_and_recover(&raws[..3]).unwrap(), decoded[..3].to_vec());
        let mut bad = raws.clone();
        bad[33] = Bytes::from_static(&[0x02, 0xff]);
        bad[37] = Bytes::from_static(&[0x7f]);
        match decode_and_recover(&bad) {
            Err(ApplyError::BadTransaction { index, .. }) => assert_eq!(index, 33),
            other => panic!("expected a bad transaction, got {other:?}"),
        }
    }

    #[test]
    fn pipelined_recovery_executes_in_order_and_stops_at_the_first_bad_transaction() {
        let signers: Vec<PrivateKeySigner> = (0..5).map(|_| PrivateKeySigner::random()).collect();
        let raws: Vec<Bytes> = (0..60).map(|i| signed(&signers[i % 5], i as u64)).collect();
        for len in [0, 1, PIPELINE_MIN - 1, PIPELINE_MIN, 60] {
            let mut seen = Vec::new();
            recover_pipelined(&raws[..len], |tx, sender, raw| {
                assert_eq!(raw, &raws[seen.len()]);
                seen.push((alloy_consensus::Transaction::nonce(&tx), sender));
                Ok(())
            })
            .unwrap();
            let want: Vec<_> = (0..len).map(|i| (i as u64, signers[i % 5].address())).collect();
            assert_eq!(seen, want, "{len} transactions");
        }
        let mut bad = raws.clone();
        bad[41] = Bytes::from_static(&[0x02, 0xff]);
        bad[45] = Bytes::from_static(&[0x7f]);
        let mut executed = 0;
        match recover_pipelined(&bad, |_, _, _| {
            executed += 1;
            Ok(())
        }) {
            Err(ApplyError::BadTransaction { index, .. }) => assert_eq!(index, 41),
            other => panic!("expected a bad transaction, got {other:?}"),
        }
        // Everything before the bad transaction was executed, nothing after it.
        assert_eq!(executed, 41);
        // An execution error stops the flashblock there too.
        let mut calls = 0;
        let res = recover_pipelined(&raws, |_, _, _| {
            calls += 1;
            if calls == 7 {
                return Err(ApplyError::NoBlock);
            }
            Ok(())
        });
        assert!(matches!(res, Err(ApplyError::NoBlock)));
        assert_eq!(calls, 7);
    }
}
