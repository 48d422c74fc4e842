//! Canonical tracking from two sources: the execution client's notifications (the inner
//! [`StateSource`]) and blocks the consensus layer verified before the execution client
//! imported them (OP's unsafe blocks: a node's p2p gossip). The unsafe blocks arrive through a
//! bounded channel, so this crate knows nothing of where they come from; [`MergedSource`]
//! announces each one that extends the tip at once, so the overlay reconciles a sealed block
//! the moment the sequencer signs it.

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, U256};
use flashnode_exec::{
    CanonicalBlock, CanonicalNotification, SourceAccount, SourceError, StateSource,
};
use flashnode_tasks::{Backoff, TaskExecutor};
use futures::future::BoxFuture;
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Unsafe blocks queued for the merge before the feeder waits.
pub const UNSAFE_BLOCK_QUEUE: usize = 256;
/// How long a read at a block known only as an unsafe block waits for the execution client to
/// import it.
pub const UNSAFE_STATE_WAIT: Duration = Duration::from_secs(2);
/// How often such a read is retried meanwhile.
const UNSAFE_STATE_RETRY: Duration = Duration::from_millis(50);
/// Blocks remembered as announced (tip regressions and duplicates are filtered against them).
const ANNOUNCED_WINDOW: usize = 512;
/// Counter: unsafe blocks announced as canonical (the name predates this module: dashboards
/// read it as the gossip path).
const UNSAFE_ANNOUNCED_TOTAL: &str = "flashnode_gossip_canonical_total";

/// A block the sequencer signed and the consensus layer verified, not yet imported by the
/// execution client: its receipts are unknown, so reconciliation compares transaction hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafeBlock {
    /// Header.
    pub header: Header,
    /// Block hash.
    pub hash: B256,
    /// Transaction hashes in order.
    pub tx_hashes: Vec<B256>,
}

impl From<UnsafeBlock> for CanonicalBlock {
    fn from(b: UnsafeBlock) -> Self {
        Self { header: b.header, hash: b.hash, tx_hashes: b.tx_hashes, receipts: Vec::new() }
    }
}

/// A [`StateSource`] whose notifications merge the inner source's with unsafe blocks: an
/// unsafe block that extends the tip is announced at once as `Committed`, and the execution
/// client's later notification of the same block is dropped so the tip never goes backwards;
/// where the two disagree the execution client wins. Reads at a block known only as an unsafe
/// block wait up to [`UNSAFE_STATE_WAIT`] for the execution client to import it; every other
/// call goes to the inner source.
#[derive(Debug)]
pub struct MergedSource {
    inner: Arc<dyn StateSource>,
    notifications: broadcast::Sender<CanonicalNotification>,
    announced: Arc<Mutex<Announced>>,
}

impl MergedSource {
    /// Wraps `inner` and starts the merge (the critical task `canonical_merge` of `tasks`,
    /// until `cancel`); unsafe blocks go into the returned sender (bounded at
    /// [`UNSAFE_BLOCK_QUEUE`]).
    pub fn spawn(
        inner: Arc<dyn StateSource>,
        cancel: CancellationToken,
        tasks: &TaskExecutor,
    ) -> (Self, mpsc::Sender<UnsafeBlock>) {
        let (blocks_tx, blocks) = mpsc::channel(UNSAFE_BLOCK_QUEUE);
        let (notifications, _) = broadcast::channel(256);
        let announced = Arc::new(Mutex::new(Announced::default()));
        let merge = Merge { tx: notifications.clone(), announced: announced.clone() };
        // Subscribed before the task starts, so no notification falls between.
        let updates = inner.subscribe();
        tasks.spawn_critical("canonical_merge", merge.run(inner.clone(), updates, blocks, cancel));
        (Self { inner, notifications, announced }, blocks_tx)
    }

    /// Retries a read at an unsafe-only block until the execution client has it.
    async fn read<T, F>(&self, at: B256, f: F) -> Result<T, SourceError>
    where
        F: Fn() -> BoxFuture<'static, Result<T, SourceError>>,
    {
        let deadline = tokio::time::Instant::now() + UNSAFE_STATE_WAIT;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if lock(&self.announced).unsafe_only.contains(&at)
                        && tokio::time::Instant::now() < deadline =>
                {
                    debug!(%at, %e, "state of an unsafe block not imported yet");
                    tokio::time::sleep(UNSAFE_STATE_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl StateSource for MergedSource {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }

    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        self.inner.latest()
    }

    fn block_by_number(
        &self,
        number: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
        self.inner.block_by_number(number)
    }

    fn account(
        &self,
        at: B256,
        address: Address,
    ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
        let inner = self.inner.clone();
        Box::pin(self.read(at, move || {
            let inner = inner.clone();
            Box::pin(async move { inner.account(at, address).await })
        }))
    }

    fn storage(
        &self,
        at: B256,
        address: Address,
        slot: U256,
    ) -> BoxFuture<'_, Result<U256, SourceError>> {
        let inner = self.inner.clone();
        Box::pin(self.read(at, move || {
            let inner = inner.clone();
            Box::pin(async move { inner.storage(at, address, slot).await })
        }))
    }

    fn prefetch(
        &self,
        at: B256,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> BoxFuture<'_, Result<(), SourceError>> {
        self.inner.prefetch(at, accounts, slots)
    }

    fn cached_account(&self, at: B256, address: Address) -> Option<SourceAccount> {
        self.inner.cached_account(at, address)
    }

    fn cached_storage(&self, at: B256, address: Address, slot: U256) -> Option<U256> {
        self.inner.cached_storage(at, address, slot)
    }

    fn reads_are_local(&self) -> bool {
        self.inner.reads_are_local()
    }

    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.notifications.subscribe()
    }
}

/// What the merge has announced, by number, and which of those only as unsafe blocks.
#[derive(Debug, Default)]
struct Announced {
    by_number: BTreeMap<u64, B256>,
    unsafe_only: HashSet<B256>,
}

impl Announced {
    fn highest(&self) -> Option<u64> {
        self.by_number.last_key_value().map(|(n, _)| *n)
    }

    fn insert(&mut self, number: u64, hash: B256) {
        self.by_number.insert(number, hash);
        while self.by_number.len() > ANNOUNCED_WINDOW {
            if let Some((_, h)) = self.by_number.pop_first() {
                self.unsafe_only.remove(&h);
            }
        }
    }

    /// Forgets every block at `number` and above (a reorg or a disagreement voids them).
    fn void_from(&mut self, number: u64) {
        for (_, h) in self.by_number.split_off(&number) {
            self.unsafe_only.remove(&h);
        }
    }
}

/// A lock that survives a panicked holder (the map stays consistent between statements).
fn lock(m: &Mutex<Announced>) -> MutexGuard<'_, Announced> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The merge task's state.
struct Merge {
    tx: broadcast::Sender<CanonicalNotification>,
    announced: Arc<Mutex<Announced>>,
}

impl Merge {
    async fn run(
        self,
        source: Arc<dyn StateSource>,
        mut inner: broadcast::Receiver<CanonicalNotification>,
        mut blocks: mpsc::Receiver<UnsafeBlock>,
        cancel: CancellationToken,
    ) {
        // The execution client's tip is the baseline: unsafe blocks only ever move it forward.
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let tip = tokio::select! {
                _ = cancel.cancelled() => return,
                tip = source.latest() => tip,
            };
            match tip {
                Ok(tip) => {
                    lock(&self.announced).insert(tip.header.number, tip.hash);
                    break;
                }
                Err(err) => {
                    debug!(%err, "no canonical tip yet");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        let mut feeding = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                n = inner.recv() => match n {
                    Ok(n) => self.on_inner(n),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "canonical notifications lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                b = blocks.recv(), if feeding => match b {
                    Some(b) => self.on_unsafe(b),
                    // The feeder is gone: the execution client's notifications still flow.
                    None => {
                        warn!("unsafe block feed closed; following the execution client only");
                        feeding = false;
                    }
                },
            }
        }
    }

    fn on_inner(&self, n: CanonicalNotification) {
        let n = match n {
            CanonicalNotification::Committed { new } => {
                let mut a = lock(&self.announced);
                let highest = a.highest();
                let mut out = Vec::new();
                for b in new {
                    let (number, hash) = (b.header.number, b.hash);
                    match a.by_number.get(&number) {
                        // Already announced (as an unsafe block): the tip must not move again.
                        Some(h) if *h == hash => {
                            a.unsafe_only.remove(&hash);
                        }
                        // The execution client disagrees with what was announced: it wins,
                        // and whatever was announced above it is void.
                        Some(_) => {
                            a.void_from(number);
                            a.insert(number, hash);
                            out.push(b);
                        }
                        // A block below the announced tip that the unsafe feed skipped: record
                        // it only, announcing it would move the tip backwards.
                        None if highest.is_some_and(|h| number < h) => a.insert(number, hash),
                        None => {
                            a.insert(number, hash);
                            out.push(b);
                        }
                    }
                }
                if out.is_empty() {
                    return;
                }
                CanonicalNotification::Committed { new: out }
            }
            other => {
                let mut a = lock(&self.announced);
                if let Some(tip) = other.tip() {
                    // A reorg: everything from the new tip's height up is void.
                    a.void_from(tip.header.number);
                    a.insert(tip.header.number, tip.hash);
                }
                other
            }
        };
        let _ = self.tx.send(n);
    }

    fn on_unsafe(&self, block: UnsafeBlock) {
        let (number, hash) = (block.header.number, block.hash);
        {
            let mut a = lock(&self.announced);
            // The baseline is set before the feed is read (see `run`).
            let Some(highest) = a.highest() else { return };
            // Only a block that extends what was announced becomes the tip; a competing block
            // at an announced height is left to the execution client to decide.
            if number <= highest {
                return;
            }
            a.insert(number, hash);
            a.unsafe_only.insert(hash);
        }
        debug!(number, %hash, "unsafe block announced as canonical");
        metrics::counter!(UNSAFE_ANNOUNCED_TOTAL).increment(1);
        let block = Arc::new(CanonicalBlock::from(block));
        let _ = self.tx.send(CanonicalNotification::Committed { new: vec![block] });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64, salt: u8) -> Arc<CanonicalBlock> {
        let header = Header { number, extra_data: vec![salt].into(), ..Default::default() };
        let hash = header.hash_slow();
        Arc::new(CanonicalBlock { header, hash, tx_hashes: vec![], receipts: vec![] })
    }

    fn unsafe_block(number: u64, salt: u8) -> UnsafeBlock {
        let b = block(number, salt);
        UnsafeBlock {
            header: b.header.clone(),
            hash: b.hash,
            tx_hashes: vec![B256::repeat_byte(salt)],
        }
    }

    fn merge() -> (Merge, broadcast::Receiver<CanonicalNotification>) {
        let (tx, rx) = broadcast::channel(64);
        (Merge { tx, announced: Default::default() }, rx)
    }

    /// The tip of every notification sent so far (0 for a revert).
    fn tips(rx: &mut broadcast::Receiver<CanonicalNotification>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            out.push(n.tip().map(|t| t.header.number).unwrap_or_default());
        }
        out
    }

    fn committed(blocks: &[Arc<CanonicalBlock>]) -> CanonicalNotification {
        CanonicalNotification::Committed { new: blocks.to_vec() }
    }

    #[test]
    fn unsafe_blocks_move_the_tip_forward_only_and_the_el_wins_disagreements() {
        let (m, mut rx) = merge();
        // Nothing before the baseline.
        m.on_unsafe(unsafe_block(5, 0));
        assert!(tips(&mut rx).is_empty());
        m.on_inner(committed(&[block(4, 0)]));
        assert_eq!(tips(&mut rx), vec![4]);
        // 5 and 7 are announced (6 skipped); a second block at 7 is left to the EL.
        m.on_unsafe(unsafe_block(5, 0));
        m.on_unsafe(unsafe_block(7, 0));
        m.on_unsafe(unsafe_block(7, 1));
        m.on_unsafe(unsafe_block(3, 0));
        assert_eq!(tips(&mut rx), vec![5, 7]);
        // The EL's later notifications of 5 and 6 do not move the tip back.
        m.on_inner(committed(&[block(5, 0), block(6, 0)]));
        assert!(tips(&mut rx).is_empty());
        assert!(lock(&m.announced).unsafe_only.contains(&block(7, 0).hash));
        // The EL agrees on 7: nothing new; then it disagrees at 8 with the unsafe 8.
        m.on_inner(committed(&[block(7, 0)]));
        assert!(tips(&mut rx).is_empty());
        assert!(!lock(&m.announced).unsafe_only.contains(&block(7, 0).hash));
        m.on_unsafe(unsafe_block(8, 0));
        m.on_inner(committed(&[block(8, 9)]));
        assert_eq!(tips(&mut rx), vec![8, 8]);
        assert_eq!(lock(&m.announced).by_number.get(&8), Some(&block(8, 9).hash));
    }

    #[test]
    fn an_announced_unsafe_block_carries_its_transactions_and_no_receipts() {
        let (m, mut rx) = merge();
        m.on_inner(committed(&[block(1, 0)]));
        let _ = tips(&mut rx);
        m.on_unsafe(unsafe_block(2, 3));
        match rx.try_recv() {
            Ok(CanonicalNotification::Committed { new }) => {
                assert_eq!(new.len(), 1);
                assert_eq!(new[0].hash, block(2, 3).hash);
                assert_eq!(new[0].tx_hashes, vec![B256::repeat_byte(3)]);
                assert!(new[0].receipts.is_empty());
            }
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    #[test]
    fn duplicates_are_announced_once_from_either_side() {
        let (m, mut rx) = merge();
        m.on_inner(committed(&[block(4, 0)]));
        m.on_inner(committed(&[block(4, 0)]));
        assert_eq!(tips(&mut rx), vec![4], "the EL's duplicate of the baseline");
        m.on_unsafe(unsafe_block(5, 0));
        m.on_unsafe(unsafe_block(5, 0));
        assert_eq!(tips(&mut rx), vec![5], "a re-gossiped block");
        m.on_inner(committed(&[block(5, 0)]));
        m.on_inner(committed(&[block(5, 0)]));
        assert!(tips(&mut rx).is_empty(), "the EL's import of an announced block");
        assert!(lock(&m.announced).unsafe_only.is_empty());
    }

    #[test]
    fn out_of_order_blocks_never_move_the_tip_back() {
        let (m, mut rx) = merge();
        m.on_inner(committed(&[block(4, 0)]));
        m.on_unsafe(unsafe_block(7, 0));
        m.on_unsafe(unsafe_block(6, 0));
        m.on_unsafe(unsafe_block(5, 0));
        assert_eq!(tips(&mut rx), vec![4, 7]);
        // The EL catches up in one notification: only what is above the tip is announced.
        m.on_inner(committed(&[block(5, 0), block(6, 0), block(7, 0), block(8, 0)]));
        match rx.try_recv() {
            Ok(CanonicalNotification::Committed { new }) => {
                assert_eq!(new.iter().map(|b| b.header.number).collect::<Vec<_>>(), vec![8]);
            }
            other => panic!("expected a commit of 8, got {other:?}"),
        }
        let a = lock(&m.announced);
        assert_eq!(a.by_number.keys().copied().collect::<Vec<_>>(), vec![4, 5, 6, 7, 8]);
        assert!(a.unsafe_only.is_empty());
    }

    #[test]
    fn a_reorg_voids_what_was_announced_above_the_new_tip() {
        let (m, mut rx) = merge();
        m.on_inner(committed(&[block(4, 0)]));
        m.on_unsafe(unsafe_block(5, 0));
        m.on_unsafe(unsafe_block(6, 0));
        assert_eq!(tips(&mut rx), vec![4, 5, 6]);
        // The EL replaces 5 and drops 6: the reorg is forwarded as it is.
        m.on_inner(CanonicalNotification::Reorged {
            old: vec![block(5, 0)],
            new: vec![block(5, 1)],
        });
        assert_eq!(tips(&mut rx), vec![5]);
        {
            let a = lock(&m.announced);
            assert_eq!(a.by_number.get(&5), Some(&block(5, 1).hash));
            assert!(!a.by_number.contains_key(&6));
            assert!(a.unsafe_only.is_empty(), "reorged-away unsafe blocks are forgotten");
        }
        // The next unsafe block on the new branch is announced again.
        m.on_unsafe(unsafe_block(6, 1));
        assert_eq!(tips(&mut rx), vec![6]);
        // A revert has no tip: it is forwarded and changes nothing announced.
        m.on_inner(CanonicalNotification::Reverted { old: vec![block(6, 1)] });
        assert_eq!(tips(&mut rx), vec![0]);
        assert_eq!(lock(&m.announced).highest(), Some(6));
    }

    #[test]
    fn the_announced_window_is_bounded() {
        let (m, _rx) = merge();
        m.on_inner(committed(&[block(0, 0)]));
        for n in 1..=(ANNOUNCED_WINDOW as u64 + 100) {
            m.on_unsafe(unsafe_block(n, 0));
        }
        let a = lock(&m.announced);
        assert_eq!(a.by_number.len(), ANNOUNCED_WINDOW);
        assert_eq!(a.unsafe_only.len(), ANNOUNCED_WINDOW);
        assert_eq!(a.by_number.first_key_value().map(|(n, _)| *n), Some(101));
    }

    /// An execution client that knows the state of the blocks in `imported`.
    #[derive(Debug)]
    struct Fake {
        tip: Arc<CanonicalBlock>,
        imported: Mutex<HashSet<B256>>,
        prefetched: Mutex<Vec<(B256, Vec<Address>)>>,
        tx: broadcast::Sender<CanonicalNotification>,
    }

    impl Fake {
        fn new(tip: Arc<CanonicalBlock>) -> Arc<Self> {
            let imported = Mutex::new(HashSet::from([tip.hash]));
            let (tx, _) = broadcast::channel(16);
            Arc::new(Self { tip, imported, prefetched: Default::default(), tx })
        }

        fn has(&self, at: B256) -> Result<(), SourceError> {
            match self.imported.lock().unwrap_or_else(PoisonError::into_inner).contains(&at) {
                true => Ok(()),
                false => Err(SourceError::UnknownBlock(at)),
            }
        }

        fn import(&self, at: B256) {
            self.imported.lock().unwrap_or_else(PoisonError::into_inner).insert(at);
        }
    }

    impl StateSource for Fake {
        fn chain_id(&self) -> u64 {
            901
        }
        fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
            Box::pin(async { Ok(self.tip.clone()) })
        }
        fn block_by_number(
            &self,
            number: u64,
        ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
            Box::pin(
                async move { Ok((number == self.tip.header.number).then(|| self.tip.clone())) },
            )
        }
        fn account(
            &self,
            at: B256,
            _: Address,
        ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
            Box::pin(async move {
                self.has(at).map(|_| SourceAccount { nonce: 7, ..Default::default() })
            })
        }
        fn storage(
            &self,
            at: B256,
            _: Address,
            slot: U256,
        ) -> BoxFuture<'_, Result<U256, SourceError>> {
            Box::pin(async move { self.has(at).map(|_| slot + U256::from(1)) })
        }
        fn prefetch(
            &self,
            at: B256,
            accounts: Vec<Address>,
            _: Vec<(Address, U256)>,
        ) -> BoxFuture<'_, Result<(), SourceError>> {
            self.prefetched.lock().unwrap_or_else(PoisonError::into_inner).push((at, accounts));
            Box::pin(async { Ok(()) })
        }
        fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
            self.tx.subscribe()
        }
    }

    async fn next_tip(rx: &mut broadcast::Receiver<CanonicalNotification>) -> u64 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Ok(n)) => n.tip().map(|t| t.header.number).unwrap_or_default(),
            other => panic!("no notification: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_merged_source_forwards_reads_and_notifications_and_waits_for_unsafe_state() {
        let fake = Fake::new(block(10, 0));
        let cancel = CancellationToken::new();
        let tasks = flashnode_tasks::TaskManager::new();
        let (merged, feed) = MergedSource::spawn(fake.clone(), cancel.clone(), &tasks.executor());
        let mut rx = merged.subscribe();
        // Calls go to the inner source.
        assert_eq!(merged.chain_id(), 901);
        assert_eq!(merged.latest().await.ok().map(|b| b.hash), Some(fake.tip.hash));
        assert!(matches!(merged.block_by_number(10).await, Ok(Some(b)) if b.hash == fake.tip.hash));
        assert_eq!(
            merged.storage(fake.tip.hash, Address::ZERO, U256::from(1)).await.ok(),
            Some(U256::from(2))
        );
        merged.prefetch(fake.tip.hash, vec![Address::repeat_byte(1)], vec![]).await.ok();
        assert_eq!(fake.prefetched.lock().unwrap_or_else(PoisonError::into_inner).len(), 1);
        // An unsafe block through the feed is announced.
        let b11 = unsafe_block(11, 0);
        feed.send(b11.clone()).await.ok();
        assert_eq!(next_tip(&mut rx).await, 11);
        // A read at it waits until the EL imports it.
        let importer = {
            let fake = fake.clone();
            tokio::spawn(async move {
                tokio::time::sleep(UNSAFE_STATE_RETRY * 3).await;
                fake.import(b11.hash);
            })
        };
        let acc = merged.account(b11.hash, Address::ZERO).await;
        assert_eq!(acc.ok().map(|a| a.nonce), Some(7));
        importer.await.ok();
        // A read at a block that is neither imported nor announced fails at once, typed.
        let unknown = B256::repeat_byte(0xee);
        assert!(matches!(
            merged.account(unknown, Address::ZERO).await,
            Err(SourceError::UnknownBlock(h)) if h == unknown
        ));
        // The EL's notifications flow on, even after the feed is gone.
        drop(feed);
        fake.tx.send(committed(&[block(12, 0)])).ok();
        assert_eq!(next_tip(&mut rx).await, 12);
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_read_at_an_unsafe_block_the_el_never_imports_gives_up_with_the_inner_error() {
        let fake = Fake::new(block(1, 0));
        let cancel = CancellationToken::new();
        let tasks = flashnode_tasks::TaskManager::new();
        let (merged, feed) = MergedSource::spawn(fake.clone(), cancel.clone(), &tasks.executor());
        let mut rx = merged.subscribe();
        let b2 = unsafe_block(2, 0);
        feed.send(b2.clone()).await.ok();
        assert_eq!(next_tip(&mut rx).await, 2);
        assert!(matches!(
            merged.storage(b2.hash, Address::ZERO, U256::ZERO).await,
            Err(SourceError::UnknownBlock(h)) if h == b2.hash
        ));
        cancel.cancel();
    }
}
