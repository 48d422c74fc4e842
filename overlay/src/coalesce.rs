//! Demand reads that miss the cache, coalesced (#24.2): a read of a key already asked for (by
//! ingest, a pending `eth_call`, anyone) waits for that answer instead of asking again, and
//! reads that arrive while a batch for their block is in flight go out together in the next
//! one. A lone miss is sent at once (no window to wait out); under concurrency the misses of
//! one round trip share the next.

use alloy_primitives::{Address, B256, U256};
use flashnode_exec::{SourceAccount, SourceError};
use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};
use tokio::sync::oneshot;

/// Metric: demand reads that shared a request with another read, by `kind`.
pub const COALESCED_TOTAL: &str = "flashnode_upstream_coalesced_reads_total";

type Waiters<T> = Vec<oneshot::Sender<Result<T, SourceError>>>;

/// Reads of one block: who waits for each key.
#[derive(Default)]
struct Reads {
    accounts: HashMap<Address, Waiters<SourceAccount>>,
    slots: HashMap<(Address, U256), Waiters<U256>>,
}

impl Reads {
    fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.slots.is_empty()
    }
}

/// The reads of one block: queued for the next batch, and in the batch in flight.
#[derive(Default)]
struct Lane {
    queued: Reads,
    in_flight: Reads,
    sending: bool,
}

/// A key to read.
#[derive(Clone, Copy)]
enum Key {
    Account(Address),
    Slot(Address, U256),
}

/// The coalescer of one upstream.
#[derive(Default, Clone)]
pub struct Coalescer {
    lanes: Arc<Mutex<HashMap<B256, Lane>>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

/// Sends one batch: the accounts and slots of a block, answered in order.
pub trait BatchFetch: Clone + Send + Sync + 'static {
    /// Reads `accounts` and `slots` at `at`.
    fn fetch(
        &self,
        at: B256,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> impl Future<Output = Result<(Vec<SourceAccount>, Vec<U256>), SourceError>> + Send;
}

impl Coalescer {
    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<B256, Lane>> {
        // A poisoned lock still holds whole maps: every update is a plain insert or take.
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The account at `at`, read with whatever other reads are due.
    pub async fn account<F: BatchFetch>(
        &self,
        fetch: &F,
        at: B256,
        address: Address,
    ) -> Result<SourceAccount, SourceError> {
        let (tx, rx) = oneshot::channel();
        let start = self.enqueue(at, Key::Account(address), |reads| {
            reads.accounts.entry(address).or_default().push(tx)
        });
        self.start(start, fetch, at).await;
        rx.await.unwrap_or(Err(SourceError::Missing("account: the batch was dropped")))
    }

    /// The slot at `at`, read with whatever other reads are due.
    pub async fn storage<F: BatchFetch>(
        &self,
        fetch: &F,
        at: B256,
        address: Address,
        slot: U256,
    ) -> Result<U256, SourceError> {
        let (tx, rx) = oneshot::channel();
        let start = self.enqueue(at, Key::Slot(address, slot), |reads| {
            reads.slots.entry((address, slot)).or_default().push(tx)
        });
        self.start(start, fetch, at).await;
        rx.await.unwrap_or(Err(SourceError::Missing("slot: the batch was dropped")))
    }

    /// Starts the block's sender when `start`: a task of its own, or (outside a runtime) here,
    /// until the queue is empty.
    async fn start<F: BatchFetch>(&self, start: bool, fetch: &F, at: B256) {
        if !start {
            return;
        }
        let sender = send_batches(self.clone(), fetch.clone(), at);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(sender)),
            Err(_) => sender.await,
        }
    }

    /// Adds a waiter for `key`: to the batch in flight when it asks for the key already, else
    /// to the next batch. True when the block has no sender running (the caller starts one).
    fn enqueue(&self, at: B256, key: Key, add: impl FnOnce(&mut Reads)) -> bool {
        let mut lanes = self.lanes();
        let lane = lanes.entry(at).or_default();
        let (in_flight, queued) = match key {
            Key::Account(a) => {
                (lane.in_flight.accounts.contains_key(&a), lane.queued.accounts.contains_key(&a))
            }
            Key::Slot(a, s) => (
                lane.in_flight.slots.contains_key(&(a, s)),
                lane.queued.slots.contains_key(&(a, s)),
            ),
        };
        if in_flight || queued {
            let kind = if matches!(key, Key::Account(_)) { "account" } else { "slot" };
            metrics::counter!(COALESCED_TOTAL, "kind" => kind).increment(1);
        }
        add(if in_flight { &mut lane.in_flight } else { &mut lane.queued });
        !std::mem::replace(&mut lane.sending, true)
    }
}

/// Sends the block's queued reads as one batch, again while more were queued meanwhile, then
/// ends (the next miss starts it again).
async fn send_batches<F: BatchFetch>(coalescer: Coalescer, fetch: F, at: B256) {
    // A sender that stops early (a panic in the fetch, its future dropped at shutdown) takes
    // its lane with it, so the waiters hear "dropped" instead of waiting forever and the next
    // miss starts a new sender.
    let mut guard = LaneGuard { coalescer: coalescer.clone(), at, armed: true };
    loop {
        let (accounts, slots) = {
            let mut lanes = coalescer.lanes();
            let Some(lane) = lanes.get_mut(&at) else {
                guard.armed = false;
                return;
            };
            if lane.queued.is_empty() {
                lanes.remove(&at);
                guard.armed = false;
                return;
            }
            lane.in_flight = std::mem::take(&mut lane.queued);
            let accounts: Vec<Address> = lane.in_flight.accounts.keys().copied().collect();
            let slots: Vec<(Address, U256)> = lane.in_flight.slots.keys().copied().collect();
            (accounts, slots)
        };
        if accounts.len() + slots.len() > 1 {
            metrics::counter!(COALESCED_TOTAL, "kind" => "batch_shared")
                .increment((accounts.len() + slots.len() - 1) as u64);
        }
        let answer = fetch.fetch(at, accounts.clone(), slots.clone()).await;
        let done = {
            let mut lanes = coalescer.lanes();
            match lanes.get_mut(&at) {
                Some(lane) => std::mem::take(&mut lane.in_flight),
                None => {
                    guard.armed = false;
                    return;
                }
            }
        };
        deliver(done, &accounts, &slots, answer);
    }
}

/// Removes a sender's lane unless the sender ended normally.
struct LaneGuard {
    coalescer: Coalescer,
    at: B256,
    armed: bool,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if self.armed {
            // The lane is this sender's: no other sender starts while it exists.
            self.coalescer.lanes().remove(&self.at);
        }
    }
}

/// Hands each waiter its value, or the batch's error.
fn deliver(
    mut done: Reads,
    accounts: &[Address],
    slots: &[(Address, U256)],
    answer: Result<(Vec<SourceAccount>, Vec<U256>), SourceError>,
) {
    match answer {
        Ok((values, slot_values)) => {
            for (address, value) in accounts.iter().zip(values) {
                for w in done.accounts.remove(address).unwrap_or_default() {
                    let _ = w.send(Ok(value.clone()));
                }
            }
            for (key, value) in slots.iter().zip(slot_values) {
                for w in done.slots.remove(key).unwrap_or_default() {
                    let _ = w.send(Ok(value));
                }
            }
            // An answer shorter than asked (a broken upstream) leaves some unanswered.
            let missing = SourceError::Missing("a read in the batch answer");
            for w in done.accounts.into_values().flatten() {
                let _ = w.send(Err(missing.clone()));
            }
            for w in done.slots.into_values().flatten() {
                let _ = w.send(Err(missing.clone()));
            }
        }
        Err(e) => {
            for w in done.accounts.into_values().flatten() {
                let _ = w.send(Err(e.clone()));
            }
            for w in done.slots.into_values().flatten() {
                let _ = w.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fetch that answers after `delay`, counting batches and the keys in each.
    #[derive(Clone, Default)]
    struct Counting {
        batches: Arc<AtomicUsize>,
        keys: Arc<Mutex<Vec<usize>>>,
        fail: bool,
        delay_ms: u64,
    }

    impl BatchFetch for Counting {
        async fn fetch(
            &self,
            _at: B256,
            accounts: Vec<Address>,
            slots: Vec<(Address, U256)>,
        ) -> Result<(Vec<SourceAccount>, Vec<U256>), SourceError> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.keys.lock().unwrap().push(accounts.len() + slots.len());
            if self.delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(self.delay_ms)).await;
            }
            if self.fail {
                return Err(SourceError::Missing("test failure"));
            }
            let accounts = accounts
                .iter()
                .map(|a| SourceAccount {
                    balance: U256::from(a.0[19]),
                    nonce: 0,
                    code: Bytes::new(),
                })
                .collect();
            Ok((accounts, slots.iter().map(|(_, s)| *s * U256::from(2)).collect()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_batches_and_the_same_key_is_asked_once() {
        let c = Coalescer::default();
        let f = Counting { delay_ms: 20, ..Default::default() };
        let at = B256::repeat_byte(1);
        let a = Address::repeat_byte(7);
        // The first miss goes out alone; the 20 that arrive while it is in flight (ten of them
        // for the same slot) share the next batch.
        let first = tokio::spawn({
            let (c, f) = (c.clone(), f.clone());
            async move { c.storage(&f, at, a, U256::from(1)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut rest = Vec::new();
        for i in 0..20u64 {
            let (c, f) = (c.clone(), f.clone());
            let slot = if i < 10 { U256::from(100) } else { U256::from(i) };
            rest.push(tokio::spawn(async move { (slot, c.storage(&f, at, a, slot).await) }));
        }
        let acct = c.account(&f, at, a).await.unwrap();
        assert_eq!(acct.balance, U256::from(7));
        assert_eq!(first.await.unwrap().unwrap(), U256::from(2));
        for r in rest {
            let (slot, value) = r.await.unwrap();
            assert_eq!(value.unwrap(), slot * U256::from(2));
        }
        assert_eq!(f.batches.load(Ordering::SeqCst), 2, "{:?}", f.keys.lock().unwrap());
        assert_eq!(*f.keys.lock().unwrap(), vec![1, 12], "slot 100 asked once, with the account");
        assert!(drained(&c).await, "nothing left behind");
    }

    /// Whether every lane is gone within a second (a sender removes its lane just after it
    /// answers its last waiters).
    async fn drained(c: &Coalescer) -> bool {
        for _ in 0..100 {
            if c.lanes().is_empty() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    /// A fetch that panics: its waiters hear the batch was dropped, and the next read works.
    #[derive(Clone)]
    struct Panicking(Arc<AtomicUsize>);

    impl BatchFetch for Panicking {
        async fn fetch(
            &self,
            _at: B256,
            _accounts: Vec<Address>,
            slots: Vec<(Address, U256)>,
        ) -> Result<(Vec<SourceAccount>, Vec<U256>), SourceError> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the first fetch fails");
            }
            Ok((Vec::new(), slots.iter().map(|_| U256::from(1)).collect()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sender_that_dies_answers_its_waiters_and_the_lane_starts_over() {
        let c = Coalescer::default();
        let f = Panicking(Arc::default());
        let dropped = c.storage(&f, B256::ZERO, Address::ZERO, U256::from(1)).await;
        assert!(matches!(dropped, Err(SourceError::Missing(_))), "{dropped:?}");
        let again = c.storage(&f, B256::ZERO, Address::ZERO, U256::from(1)).await;
        assert_eq!(again.unwrap(), U256::from(1));
        assert!(drained(&c).await, "the lane is gone");
    }

    #[test]
    fn outside_a_runtime_the_reader_sends_the_batch_itself() {
        let c = Coalescer::default();
        let f = Counting::default();
        let v =
            futures::executor::block_on(c.storage(&f, B256::ZERO, Address::ZERO, U256::from(4)));
        assert_eq!(v.unwrap(), U256::from(8));
        assert!(c.lanes().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_answers_every_waiter_with_its_error() {
        let c = Coalescer::default();
        let f = Counting { fail: true, delay_ms: 20, ..Default::default() };
        let at = B256::repeat_byte(2);
        let a = Address::repeat_byte(7);
        let (x, y) =
            tokio::join!(c.storage(&f, at, a, U256::from(1)), c.storage(&f, at, a, U256::from(1)));
        assert!(matches!(x, Err(SourceError::Missing("test failure"))));
        assert!(matches!(y, Err(SourceError::Missing("test failure"))));
        assert_eq!(f.batches.load(Ordering::SeqCst), 1);
    }
}
