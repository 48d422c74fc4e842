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
use flashnode_exec::{BlockBuilder, SourceDb, SourceError, TxOutcome};
use op_alloy_consensus::OpTxEnvelope;
use revm::{
    bytecode::Bytecode,
    database::{AccountState, CacheDB},
    database_interface::DatabaseRef,
    state::AccountInfo,
};
use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap},
};
use tracing::trace;

/// Reads a speculative run found that neither the block nor the source holds, each with the
/// index (in the run) of the first transaction that read it.
#[derive(Debug, Default)]
pub(crate) struct Misses {
    accounts: BTreeMap<Address, usize>,
    slots: BTreeMap<(Address, U256), usize>,
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

    fn merge(&mut self, other: Self) {
        for (k, i) in other.accounts {
            self.accounts.entry(k).or_insert(i);
        }
        for (k, i) in other.slots {
            self.slots.entry(k).or_insert(i);
        }
    }
}

/// What a speculative run found: the reads to fetch, and the outcomes of its leading
/// transactions, which are the real ones if every value it guessed was right.
#[derive(Debug, Default)]
pub(crate) struct Speculation {
    misses: Misses,
    /// The first lane's outcomes, in order, up to its first transaction that failed.
    outcomes: Vec<TxOutcome>,
    /// The first transaction that read something whose guess cannot be checked (a block hash
    /// nobody taught the block).
    unverifiable_from: Option<usize>,
}

impl Speculation {
    /// The reads that were missing.
    pub(crate) fn misses(&self) -> &Misses {
        &self.misses
    }

    /// The leading outcomes that are exactly what executing for real gives, now that `source`
    /// holds the fetched values: a transaction's outcome stands when every guess read by it or
    /// by a transaction before it (an absent account, a zero slot) is what `source` holds.
    /// A guess that was wrong ends the run there; what follows executes for real.
    pub(crate) fn into_confirmed(self, source: &SourceDb) -> Vec<TxOutcome> {
        let mut keep = self.outcomes.len().min(self.unverifiable_from.unwrap_or(usize::MAX));
        for (address, first) in &self.misses.accounts {
            if *first < keep && !matches!(source.cached_basic(*address), Some(None)) {
                trace!(%address, tx = first, "a speculative run guessed an account absent wrongly");
                keep = *first;
            }
        }
        for ((address, slot), first) in &self.misses.slots {
            if *first < keep && source.cached_storage(*address, *slot) != Some(U256::ZERO) {
                trace!(%address, %slot, tx = first, "a speculative run guessed a slot zero wrongly");
                keep = *first;
            }
        }
        let mut outcomes = self.outcomes;
        outcomes.truncate(keep);
        outcomes
    }
}

/// The block's state so far as a database that never waits: a read the block has not loaded
/// and the source does not hold is recorded and answered as absent (an account) or zero (a
/// slot). Execution over it is a guess of the real one: good for finding reads, and the real
/// one itself when every guess turns out right.
#[derive(Debug)]
pub(crate) struct DiscoveryDb<'a> {
    block: &'a CacheDB<SourceDb>,
    misses: RefCell<Misses>,
    /// The index of the transaction running, for [`Misses`].
    current: Cell<usize>,
    unverifiable_from: Cell<Option<usize>>,
    /// Nonces to give senders whose earlier transactions run in another lane.
    nonces: HashMap<Address, u64>,
}

impl<'a> DiscoveryDb<'a> {
    /// Over the state of the block in progress, with these senders' nonces as given.
    fn with_nonces(block: &'a CacheDB<SourceDb>, nonces: HashMap<Address, u64>) -> Self {
        Self {
            block,
            misses: RefCell::default(),
            current: Cell::new(0),
            unverifiable_from: Cell::new(None),
            nonces,
        }
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
        self.misses.borrow_mut().accounts.entry(address).or_insert(self.current.get());
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
        self.misses.borrow_mut().slots.entry((address, index)).or_insert(self.current.get());
        Ok(U256::ZERO)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, SourceError> {
        // A guess is enough to find reads (the real run reads it: rarely needed, and cached),
        // but not to keep the outcome.
        let known = self.block.cache.block_hashes.get(&U256::from(number)).copied();
        match known.or_else(|| self.block.db.known_block_hash(number)) {
            Some(hash) => Ok(hash),
            None => {
                let first = self.unverifiable_from.get().unwrap_or(self.current.get());
                self.unverifiable_from.set(Some(first));
                Ok(B256::ZERO)
            }
        }
    }
}

/// Runs `txs` speculatively on top of `builder`'s block so far: what they would read that
/// nobody holds, and their outcomes. Transactions that fail (a guessed value made them
/// invalid) are skipped; the block itself is never touched.
///
/// With 4 cores or more and enough transactions, the run is split into lanes
/// of consecutive transactions run at once, each over the block so far (a lane does not see
/// the writes of the lanes before it: what those reveal, the next round finds). A sender whose
/// earlier transactions are in another lane starts at its first nonce in this one. Only the
/// first lane's outcomes are kept: the others start from a state that is not the real one.
pub(crate) fn discover(
    builder: &BlockBuilder<CacheDB<SourceDb>>,
    txs: &[(OpTxEnvelope, Address, &Bytes)],
) -> Speculation {
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
) -> Speculation {
    let lanes = lanes.min(DISCOVERY_LANES).min(txs.len() / MIN_LANE_TXS).max(1);
    if lanes == 1 {
        return run_lane(builder, txs, HashMap::new());
    }
    let per_lane = txs.len().div_ceil(lanes);
    let mut chunks = txs.chunks(per_lane);
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks
            .enumerate()
            .map(|(lane, chunk)| {
                let mut nonces = HashMap::new();
                for (tx, sender, _) in chunk {
                    nonces
                        .entry(*sender)
                        .or_insert_with(|| alloy_consensus::Transaction::nonce(tx));
                }
                let offset = (lane + 1) * per_lane;
                scope.spawn(move || (offset, run_lane(builder, chunk, nonces)))
            })
            .collect();
        let mut found = run_lane(builder, first, HashMap::new());
        for lane in others {
            // A lane that panicked found nothing: the real run reads what it would have.
            if let Ok((offset, other)) = lane.join() {
                let mut misses = other.misses;
                // Indices of the whole run: a later lane's first readers come after the first
                // lane's, so they never shorten its kept outcomes wrongly.
                misses.accounts.values_mut().for_each(|i| *i += offset);
                misses.slots.values_mut().for_each(|i| *i += offset);
                found.misses.merge(misses);
            }
        }
        found
    })
}

/// Most lanes one discovery round runs at once.
const DISCOVERY_LANES: usize = 4;

/// Fewest transactions worth a lane of their own (a thread costs tens of microseconds).
const MIN_LANE_TXS: usize = 8;

/// Runs `txs` in order over the block so far, senders in `nonces` at those nonces; keeps the
/// outcomes when no nonce is overridden.
fn run_lane(
    builder: &BlockBuilder<CacheDB<SourceDb>>,
    txs: &[(OpTxEnvelope, Address, &Bytes)],
    nonces: HashMap<Address, u64>,
) -> Speculation {
    let keep = nonces.is_empty();
    let db = CacheDB::new(DiscoveryDb::with_nonces(builder.db(), nonces));
    let mut spec = BlockBuilder::new(builder.chain().clone(), builder.input().clone(), db);
    let mut outcomes = Vec::new();
    let mut failed = false;
    for (i, (tx, sender, raw)) in txs.iter().enumerate() {
        spec.db().db.current.set(i);
        match spec.transact(tx.clone(), *sender, (*raw).clone()) {
            Ok(outcome) => {
                if keep && !failed {
                    outcomes.push(outcome.clone());
                }
                spec.commit(outcome);
            }
            Err(_) => failed = true,
        }
    }
    let db = spec.into_db().db;
    Speculation {
        misses: db.misses.into_inner(),
        outcomes,
        unverifiable_from: db.unverifiable_from.get(),
    }
}

/// Fetches `misses` at the block's canonical anchor in one batch (split at the upstream's
/// batch limit). An error only costs the round trips the batch would have saved.
pub(crate) fn fetch(source: &SourceDb, misses: &Misses) -> Result<(), SourceError> {
    source.prefetch_blocking(
        misses.accounts.keys().copied().collect(),
        misses.slots.keys().copied().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashnode_exec::{CanonicalBlock, CanonicalNotification, SourceAccount, StateSource};
    use futures::future::BoxFuture;
    use std::{
        collections::{BTreeSet, HashMap},
        sync::{Arc, Mutex},
    };
    use tokio::sync::broadcast;

    /// Accounts and slots fetched so far.
    type Fetched = (BTreeSet<Address>, BTreeSet<(Address, U256)>);

    /// A contract with `code` and a funded signer, both fetched already, over a source that
    /// holds `slots`: what the signer's calls need before any of their storage reads.
    struct Fixture {
        contract: Address,
        signer: alloy_signer_local::PrivateKeySigner,
        remote: Arc<Remote>,
        rt: tokio::runtime::Runtime,
        source: SourceDb,
    }

    impl Fixture {
        fn new(contract: Address, code: &'static [u8], slots: &[(u64, u64)]) -> Self {
            let signer = alloy_signer_local::PrivateKeySigner::random();
            let mut remote = Remote::default();
            let code = Bytes::from_static(code);
            remote.accounts.insert(contract, SourceAccount { code, ..Default::default() });
            remote.accounts.insert(
                signer.address(),
                SourceAccount { balance: U256::from(10u128.pow(21)), ..Default::default() },
            );
            for (slot, value) in slots {
                remote.slots.insert((contract, U256::from(*slot)), U256::from(*value));
            }
            let remote = Arc::new(remote);
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
            let source = SourceDb::new(remote.clone(), B256::ZERO, rt.handle().clone());
            let known = Misses {
                accounts: remote.accounts.keys().map(|a| (*a, 0)).collect(),
                slots: BTreeMap::new(),
            };
            fetch_off_runtime(&source, &known);
            Self { contract, signer, remote, rt, source }
        }

        /// `count` calls of the contract, the n-th with calldata word `word(n)`.
        fn calls(&self, count: u64, word: impl Fn(u64) -> u64) -> Vec<(OpTxEnvelope, Bytes)> {
            calls(&self.signer, self.contract, count, word)
        }

        /// A block builder over a fresh database on the same source.
        fn builder(&self) -> BlockBuilder<CacheDB<SourceDb>> {
            let chain = flashnode_exec::ChainConfig::devnet(901);
            BlockBuilder::new(chain, block_one(), CacheDB::new(self.source.clone()))
        }
    }

    /// [`fetch`] from a thread outside the source's runtime (it blocks on it).
    fn fetch_off_runtime(source: &SourceDb, misses: &Misses) {
        std::thread::scope(|s| s.spawn(|| fetch(source, misses)).join().unwrap()).unwrap();
    }

    /// The slots a speculative run found missing.
    fn slots(s: &Speculation) -> BTreeSet<(Address, U256)> {
        s.misses().slots.keys().copied().collect()
    }

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
        assert!(first.misses().accounts.contains_key(&contract), "{first:?}");
        let fetch_blocking = |m: &Speculation| {
            std::thread::scope(|s| s.spawn(|| fetch(&source, m.misses())).join().unwrap())
        };
        fetch_blocking(&first).unwrap();
        // Round 2: with the code known, slot 1 is read (and slot 0, which SSTORE prices).
        let second = discover(&builder, &txs);
        let expected = BTreeSet::from([(contract, U256::ZERO), (contract, U256::from(1))]);
        assert_eq!(slots(&second), expected, "{second:?}");
        fetch_blocking(&second).unwrap();
        // Round 3: slot 1's value (42) names the next slot.
        let third = discover(&builder, &txs);
        assert_eq!(slots(&third), BTreeSet::from([(contract, U256::from(42))]), "{third:?}");
        fetch_blocking(&third).unwrap();
        assert!(discover(&builder, &txs).misses().is_empty(), "everything is known now");
        assert_eq!(*remote.batches.lock().unwrap(), 3);
    }

    /// 24 transactions of one sender (nonces 0-23), each reading the slot its calldata names:
    /// however many lanes run them, one round finds all 24 slots (a lane whose sender's earlier
    /// transactions run elsewhere starts at its own first nonce).
    #[test]
    fn lanes_find_what_one_run_finds() {
        // PUSH1 0 CALLDATALOAD SLOAD STOP
        let f = Fixture::new(Address::repeat_byte(0xc1), &[0x60, 0x00, 0x35, 0x54, 0x00], &[]);
        let (contract, builder) = (f.contract, f.builder());
        let signed = f.calls(24, |nonce| 1000 + nonce);
        let txs: Vec<_> =
            signed.iter().map(|(tx, raw)| (tx.clone(), f.signer.address(), raw)).collect();
        let found = discover_in(&builder, &txs, 3);
        assert_eq!(slots(&found), slots(&discover_in(&builder, &txs, 1)), "as one lane finds");
        let expected: BTreeSet<_> = (0..24u64).map(|n| (contract, U256::from(1000 + n))).collect();
        assert_eq!(slots(&found), expected);
    }

    /// Signs `count` EIP-1559 calls of `to` from `signer` (nonces 0..count), the calldata of
    /// the n-th being the word `word(n)`.
    fn calls(
        signer: &alloy_signer_local::PrivateKeySigner,
        to: Address,
        count: u64,
        word: impl Fn(u64) -> u64,
    ) -> Vec<(OpTxEnvelope, Bytes)> {
        use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
        use alloy_network::TxSignerSync;
        (0..count)
            .map(|nonce| {
                let mut tx = TxEip1559 {
                    chain_id: 901,
                    nonce,
                    gas_limit: 100_000,
                    max_fee_per_gas: 1_000_000_000,
                    to: alloy_primitives::TxKind::Call(to),
                    input: U256::from(word(nonce)).to_be_bytes::<32>().to_vec().into(),
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
            .collect()
    }

    /// Three calls copy the slot their calldata names (10, 20, 30) into slot 1, whose price
    /// depends on the value. Slots 10 and 30 are unwritten, slot 20 holds 7: the speculative
    /// run guessed zero for all three, so the first outcome is kept, and the second (a wrong
    /// guess) and third run again. The block ends exactly as executing with waiting reads.
    #[test]
    fn speculative_outcomes_are_kept_up_to_the_first_wrong_guess() {
        // PUSH1 0 CALLDATALOAD SLOAD PUSH1 1 SSTORE STOP
        let code = &[0x60, 0x00, 0x35, 0x54, 0x60, 0x01, 0x55, 0x00];
        let f = Fixture::new(Address::repeat_byte(0xc2), code, &[(20, 7)]);
        let (contract, source) = (f.contract, &f.source);
        let signed = f.calls(3, |n| 10 * (n + 1));
        let txs: Vec<_> =
            signed.iter().map(|(tx, raw)| (tx.clone(), f.signer.address(), raw)).collect();
        let mut kept = f.builder();
        let spec = discover_in(&kept, &txs, 1);
        assert_eq!(spec.outcomes.len(), 3, "every call ran speculatively");
        fetch_off_runtime(source, spec.misses());
        let confirmed = spec.into_confirmed(source);
        assert_eq!(confirmed.len(), 1, "kept up to the call that read slot 20");
        for outcome in confirmed {
            kept.commit(outcome);
        }
        for (tx, sender, raw) in &txs[1..] {
            kept.execute(tx.clone(), *sender, (*raw).clone()).unwrap();
        }

        let fresh = SourceDb::new(f.remote.clone(), B256::ZERO, f.rt.handle().clone());
        let chain = flashnode_exec::ChainConfig::devnet(901);
        let mut real = BlockBuilder::new(chain, block_one(), CacheDB::new(fresh));
        for (tx, sender, raw) in &txs {
            real.execute(tx.clone(), *sender, (*raw).clone()).unwrap();
        }
        assert_eq!(kept.transactions(), real.transactions());
        assert_eq!(kept.gas_used(), real.gas_used());
        let slot_one = |b: &BlockBuilder<CacheDB<SourceDb>>| {
            b.db().cache.accounts[&contract].storage[&U256::from(1)]
        };
        assert_eq!(slot_one(&kept), U256::ZERO, "the third call copied unwritten slot 30");
        assert_eq!(slot_one(&kept), slot_one(&real));
    }

    /// A speculative run that read a block hash nobody taught the block keeps no outcome from
    /// that transaction on: a guessed hash cannot be checked.
    #[test]
    fn a_guessed_block_hash_keeps_no_outcome() {
        // PUSH1 0 CALLDATALOAD BLOCKHASH PUSH1 1 SSTORE STOP
        let code = &[0x60, 0x00, 0x35, 0x40, 0x60, 0x01, 0x55, 0x00];
        let f = Fixture::new(Address::repeat_byte(0xc3), code, &[]);
        // Block 1 asks for block 0's hash.
        let signed = f.calls(2, |_| 0);
        let txs: Vec<_> =
            signed.iter().map(|(tx, raw)| (tx.clone(), f.signer.address(), raw)).collect();
        let builder = f.builder();
        let spec = discover_in(&builder, &txs, 1);
        assert_eq!(spec.outcomes.len(), 2);
        assert_eq!(spec.unverifiable_from, Some(0));
        fetch_off_runtime(&f.source, spec.misses());
        assert!(spec.into_confirmed(&f.source).is_empty());
    }
}
