//! Read discovery: what a flashblock's transactions will read, found before they execute, so
//! the canonical state they need arrives in one upstream batch instead of one round trip per
//! cold `SLOAD`.
//!
//! The executor runs a flashblock with a source that refuses to wait ([`SourceDb::set_waits`]).
//! When a transaction reads something the node does not hold, it stops untouched and the
//! transactions from it on run speculatively over [`DiscoveryDb`]: the block's state so far,
//! where a read nobody holds is recorded and answered as empty instead of waited for. Every
//! recorded read is fetched in one batch (split at the upstream's batch limit, the parts in
//! flight at once); the values may reveal more (a contract's code, a slot computed from a
//! slot), which the next miss discovers the same way. Hot state costs nothing: no miss, no
//! speculative run. This is what reth's prewarming does for its own database.

use alloy_primitives::{Address, Bytes, B256, U256};
use flashnode_exec::{BlockBuilder, SourceDb, SourceError};
use op_alloy_consensus::OpTxEnvelope;
use revm::{
    bytecode::Bytecode,
    database::{AccountState, CacheDB},
    database_interface::DatabaseRef,
    state::AccountInfo,
};
use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
};

/// Reads a speculative run found that neither the block nor the source holds.
#[derive(Debug, Default)]
pub(crate) struct Misses {
    accounts: BTreeSet<Address>,
    slots: BTreeSet<(Address, U256)>,
}

impl Misses {
    /// Whether nothing was missing.
    pub(crate) fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.slots.is_empty()
    }

    /// How many reads were missing.
    pub(crate) fn len(&self) -> usize {
        self.accounts.len() + self.slots.len()
    }
}

/// The block's state so far as a database that never waits: a read the block has not loaded
/// and the source does not hold is recorded and answered as absent (an account) or zero (a
/// slot). Execution over it is only a guess of the real one, good for finding reads.
#[derive(Debug)]
pub(crate) struct DiscoveryDb<'a> {
    block: &'a CacheDB<SourceDb>,
    misses: RefCell<Misses>,
    /// Nonces to give senders whose earlier transactions run in another lane.
    nonces: HashMap<Address, u64>,
}

impl<'a> DiscoveryDb<'a> {
    /// Over the state of the block in progress, with these senders' nonces as given.
    fn with_nonces(block: &'a CacheDB<SourceDb>, nonces: HashMap<Address, u64>) -> Self {
        Self { block, misses: RefCell::default(), nonces }
    }

    /// `info` with the nonce given for `address`, if any.
    fn nonced(&self, address: Address, info: Option<AccountInfo>) -> Option<AccountInfo> {
        match (info, self.nonces.get(&address)) {
            (Some(mut info), Some(nonce)) => {
                info.nonce = *nonce;
                Some(info)
            }
            (info, _) => info,
        }
    }

    /// What the runs over it found missing.
    pub(crate) fn into_misses(self) -> Misses {
        self.misses.into_inner()
    }
}

impl DatabaseRef for DiscoveryDb<'_> {
    type Error = SourceError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, SourceError> {
        if let Some(acc) = self.block.cache.accounts.get(&address) {
            return Ok(self.nonced(address, acc.info()));
        }
        if let Some(info) = self.block.db.cached_basic(address) {
            return Ok(self.nonced(address, info));
        }
        self.misses.borrow_mut().accounts.insert(address);
        Ok(None)
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, SourceError> {
        match self.block.cache.contracts.get(&code_hash) {
            Some(code) => Ok(code.clone()),
            None => self.block.db.code_by_hash_ref(code_hash),
        }
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, SourceError> {
        if let Some(acc) = self.block.cache.accounts.get(&address) {
            if let Some(v) = acc.storage.get(&index) {
                return Ok(*v);
            }
            if matches!(acc.account_state, AccountState::StorageCleared | AccountState::NotExisting)
            {
                return Ok(U256::ZERO);
            }
        }
        if let Some(v) = self.block.db.cached_storage(address, index) {
            return Ok(v);
        }
        self.misses.borrow_mut().slots.insert((address, index));
        Ok(U256::ZERO)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, SourceError> {
        // A guess is enough here: the real run reads it (rarely needed, and cached).
        let known = self.block.cache.block_hashes.get(&U256::from(number)).copied();
        Ok(known.or_else(|| self.block.db.known_block_hash(number)).unwrap_or_default())
    }
}

/// Runs `txs` speculatively on top of `builder`'s block so far and returns what they would
/// read that nobody holds. Transactions that fail (a guessed value made them invalid) are
/// skipped; the block itself is never touched.
///
/// With 4 cores or more and enough transactions, the run is split into lanes
/// of consecutive transactions run at once, each over the block so far (a lane does not see
/// the writes of the lanes before it: what those reveal, the next round finds). A sender whose
/// earlier transactions are in another lane starts at its first nonce in this one.
pub(crate) fn discover(
    builder: &BlockBuilder<CacheDB<SourceDb>>,
    txs: &[(OpTxEnvelope, Address, &Bytes)],
) -> Misses {
    // Half the cores: the rest serve the RPC and, beside a local execution client, the
    // client itself. On 2 cores two lanes were slower than one (16.3 vs 13.8 ms a
    // flashblock of 1,000 cold reads, `bench/run.sh cold-state`): one lane there.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    discover_in(builder, txs, cores / 2)
}

/// [`discover`] in at most `lanes` lanes.
fn discover_in(
    builder: &BlockBuilder<CacheDB<SourceDb>>,
    txs: &[(OpTxEnvelope, Address, &Bytes)],
    lanes: usize,
) -> Misses {
    let lanes = lanes.min(DISCOVERY_LANES).min(txs.len() / MIN_LANE_TXS).max(1);
    if lanes == 1 {
        return run_lane(builder, txs, HashMap::new());
    }
    let per_lane = txs.len().div_ceil(lanes);
    let mut chunks = txs.chunks(per_lane);
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks
            .map(|chunk| {
                let mut nonces = HashMap::new();
                for (tx, sender, _) in chunk {
                    nonces
                        .entry(*sender)
                        .or_insert_with(|| alloy_consensus::Transaction::nonce(tx));
                }
                scope.spawn(move || run_lane(builder, chunk, nonces))
            })
            .collect();
        let mut misses = run_lane(builder, first, HashMap::new());
        for lane in others {
            // A lane that panicked found nothing: the real run reads what it would have.
            if let Ok(found) = lane.join() {
                misses.accounts.extend(found.accounts);
                misses.slots.extend(found.slots);
            }
        }
        misses
    })
}

/// Most lanes one discovery round runs at once.
const DISCOVERY_LANES: usize = 4;

/// Fewest transactions worth a lane of their own (a thread costs tens of microseconds).
const MIN_LANE_TXS: usize = 8;

/// Runs `txs` in order over the block so far, senders in `nonces` at those nonces.
fn run_lane(
    builder: &BlockBuilder<CacheDB<SourceDb>>,
    txs: &[(OpTxEnvelope, Address, &Bytes)],
    nonces: HashMap<Address, u64>,
) -> Misses {
    let db = CacheDB::new(DiscoveryDb::with_nonces(builder.db(), nonces));
    let mut spec = BlockBuilder::new(builder.chain().clone(), builder.input().clone(), db);
    for (tx, sender, raw) in txs {
        let _ = spec.execute(tx.clone(), *sender, (*raw).clone());
    }
    spec.into_db().db.into_misses()
}

/// Fetches `misses` at the block's canonical anchor in one batch (split at the upstream's
/// batch limit). An error only costs the round trips the batch would have saved.
pub(crate) fn fetch(source: &SourceDb, misses: Misses) -> Result<(), SourceError> {
    source.prefetch_blocking(
        misses.accounts.into_iter().collect(),
        misses.slots.into_iter().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashnode_exec::{CanonicalBlock, CanonicalNotification, SourceAccount, StateSource};
    use futures::future::BoxFuture;
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };
    use tokio::sync::broadcast;

    /// Accounts and slots fetched so far.
    type Fetched = (BTreeSet<Address>, BTreeSet<(Address, U256)>);

    /// A source that holds only what was fetched, and counts reads and batches.
    #[derive(Debug, Default)]
    struct Remote {
        slots: HashMap<(Address, U256), U256>,
        accounts: HashMap<Address, SourceAccount>,
        fetched: Mutex<Fetched>,
        batches: Mutex<usize>,
    }

    impl StateSource for Remote {
        fn chain_id(&self) -> u64 {
            901
        }
        fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
            Box::pin(async { Err(SourceError::Missing("latest")) })
        }
        fn block_by_number(
            &self,
            _: u64,
        ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
            Box::pin(async { Ok(None) })
        }
        fn account(
            &self,
            _: B256,
            a: Address,
        ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
            let acc = self.accounts.get(&a).cloned().unwrap_or_default();
            Box::pin(async move { Ok(acc) })
        }
        fn storage(
            &self,
            _: B256,
            a: Address,
            k: U256,
        ) -> BoxFuture<'_, Result<U256, SourceError>> {
            let v = self.slots.get(&(a, k)).copied().unwrap_or_default();
            Box::pin(async move { Ok(v) })
        }
        fn cached_account(&self, _: B256, a: Address) -> Option<SourceAccount> {
            let fetched = self.fetched.lock().unwrap();
            fetched.0.contains(&a).then(|| self.accounts.get(&a).cloned().unwrap_or_default())
        }
        fn cached_storage(&self, _: B256, a: Address, k: U256) -> Option<U256> {
            let fetched = self.fetched.lock().unwrap();
            fetched
                .1
                .contains(&(a, k))
                .then(|| self.slots.get(&(a, k)).copied().unwrap_or_default())
        }
        fn prefetch(
            &self,
            _: B256,
            accounts: Vec<Address>,
            slots: Vec<(Address, U256)>,
        ) -> BoxFuture<'_, Result<(), SourceError>> {
            *self.batches.lock().unwrap() += 1;
            let mut fetched = self.fetched.lock().unwrap();
            fetched.0.extend(accounts);
            fetched.1.extend(slots);
            Box::pin(async { Ok(()) })
        }
        fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
            broadcast::channel(1).1
        }
    }

    /// Block 1's environment.
    fn block_one() -> flashnode_exec::BlockEnvInput {
        flashnode_exec::BlockEnvInput {
            number: 1,
            timestamp: 1_700_000_000,
            coinbase: Address::ZERO,
            base_fee: 1,
            gas_limit: 30_000_000,
            prev_randao: B256::ZERO,
            parent_hash: B256::ZERO,
            parent_beacon_block_root: B256::ZERO,
            extra_data: Bytes::new(),
        }
    }

    /// Runtime code that SLOADs slot 1, then the slot whose index is the value of slot 1,
    /// and stores the sum in slot 0: the second read is known only once the first is.
    fn chained_reader() -> Bytes {
        // PUSH1 1 SLOAD DUP1 SLOAD ADD PUSH1 0 SSTORE STOP
        Bytes::from_static(&[0x60, 0x01, 0x54, 0x80, 0x54, 0x01, 0x60, 0x00, 0x55, 0x00])
    }

    #[test]
    fn misses_are_recorded_and_revealed_reads_found_in_a_later_round() {
        let contract = Address::repeat_byte(0xc0);
        let mut remote = Remote::default();
        remote
            .accounts
            .insert(contract, SourceAccount { code: chained_reader(), ..Default::default() });
        remote.slots.insert((contract, U256::from(1)), U256::from(42));
        let remote = Arc::new(remote);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let source = SourceDb::new(remote.clone(), B256::ZERO, rt.handle().clone());
        let chain = flashnode_exec::ChainConfig::devnet(901);
        let input = block_one();
        let builder = BlockBuilder::new(chain, input, CacheDB::new(source.clone()));
        // A deposit calling the contract: no signature, no fee, no L1 info needed.
        let deposit = op_alloy_consensus::TxDeposit {
            from: Address::repeat_byte(1),
            to: alloy_primitives::TxKind::Call(contract),
            gas_limit: 100_000,
            ..Default::default()
        };
        let tx = OpTxEnvelope::Deposit(alloy_primitives::Sealed::new(deposit));
        let raw = Bytes::from(alloy_eips::eip2718::Encodable2718::encoded_2718(&tx));
        let txs = [(tx, Address::repeat_byte(1), &raw)];
        // Round 1: the sender and the contract are unknown.
        let first = discover(&builder, &txs);
        assert!(first.accounts.contains(&contract), "{first:?}");
        let fetch_blocking =
            |m| std::thread::scope(|s| s.spawn(|| fetch(&source, m)).join().unwrap());
        fetch_blocking(first).unwrap();
        // Round 2: with the code known, slot 1 is read (and slot 0, which SSTORE prices).
        let second = discover(&builder, &txs);
        let expected = BTreeSet::from([(contract, U256::ZERO), (contract, U256::from(1))]);
        assert_eq!(second.slots, expected, "{second:?}");
        fetch_blocking(second).unwrap();
        // Round 3: slot 1's value (42) names the next slot.
        let third = discover(&builder, &txs);
        assert_eq!(third.slots, BTreeSet::from([(contract, U256::from(42))]), "{third:?}");
        fetch_blocking(third).unwrap();
        assert!(discover(&builder, &txs).is_empty(), "everything is known now");
        assert_eq!(*remote.batches.lock().unwrap(), 3);
    }

    /// 24 transactions of one sender (nonces 0-23), each reading the slot its calldata names:
    /// however many lanes run them, one round finds all 24 slots (a lane whose sender's earlier
    /// transactions run elsewhere starts at its own first nonce).
    #[test]
    fn lanes_find_what_one_run_finds() {
        use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
        use alloy_network::TxSignerSync;
        use alloy_signer_local::PrivateKeySigner;
        let contract = Address::repeat_byte(0xc1);
        let signer = PrivateKeySigner::random();
        let mut remote = Remote::default();
        // PUSH1 0 CALLDATALOAD SLOAD STOP
        let code = Bytes::from_static(&[0x60, 0x00, 0x35, 0x54, 0x00]);
        remote.accounts.insert(contract, SourceAccount { code, ..Default::default() });
        remote.accounts.insert(
            signer.address(),
            SourceAccount { balance: U256::from(10u128.pow(21)), ..Default::default() },
        );
        let remote = Arc::new(remote);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let source = SourceDb::new(remote.clone(), B256::ZERO, rt.handle().clone());
        std::thread::scope(|s| {
            s.spawn(|| {
                fetch(
                    &source,
                    Misses {
                        accounts: remote.accounts.keys().copied().collect(),
                        slots: BTreeSet::new(),
                    },
                )
            })
            .join()
            .unwrap()
        })
        .unwrap();
        let input = block_one();
        let chain = flashnode_exec::ChainConfig::devnet(901);
        let builder = BlockBuilder::new(chain, input, CacheDB::new(source));
        let signed: Vec<(OpTxEnvelope, Bytes)> = (0..24u64)
            .map(|nonce| {
                let mut tx = TxEip1559 {
                    chain_id: 901,
                    nonce,
                    gas_limit: 100_000,
                    max_fee_per_gas: 1_000_000_000,
                    to: alloy_primitives::TxKind::Call(contract),
                    input: U256::from(1000 + nonce).to_be_bytes::<32>().to_vec().into(),
                    ..Default::default()
                };
                let sig = signer.sign_transaction_sync(&mut tx).unwrap();
                let raw: Bytes = alloy_eips::eip2718::Encodable2718::encoded_2718(
                    &TxEnvelope::from(tx.into_signed(sig)),
                )
                .into();
                let op =
                    alloy_eips::eip2718::Decodable2718::decode_2718(&mut raw.as_ref()).unwrap();
                (op, raw)
            })
            .collect();
        let txs: Vec<_> =
            signed.iter().map(|(tx, raw)| (tx.clone(), signer.address(), raw)).collect();
        let found = discover_in(&builder, &txs, 3);
        assert_eq!(found.slots, discover_in(&builder, &txs, 1).slots, "as one lane finds");
        let expected: BTreeSet<_> = (0..24u64).map(|n| (contract, U256::from(1000 + n))).collect();
        assert_eq!(found.slots, expected);
    }
}
