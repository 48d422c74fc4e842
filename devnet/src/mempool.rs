//! The devnet's transaction pool: validation at the door, fee-ordered selection per flashblock.

use alloy_consensus::{transaction::SignerRecoverable, Transaction};
use alloy_eips::{eip2718::Decodable2718, Typed2718};
use alloy_primitives::{Address, Bytes, B256, U256};
use op_alloy_consensus::OpTxEnvelope;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

/// Largest accepted raw transaction (geth's txMaxSize).
pub const MAX_TX_BYTES: usize = 128 * 1024;

/// A validated pool transaction.
#[derive(Clone, Debug)]
pub struct PoolTx {
    /// The transaction.
    pub tx: OpTxEnvelope,
    /// Recovered sender.
    pub sender: Address,
    /// EIP-2718 encoding as received.
    pub encoded: Bytes,
    /// Hash.
    pub hash: B256,
}

/// Why a transaction was refused, with the JSON-RPC code and message clients know.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// Undecodable bytes.
    #[error("failed to decode signed transaction: {0}")]
    Decode(String),
    /// The signature does not recover.
    #[error("invalid sender: {0}")]
    InvalidSender(String),
    /// Deposit or blob transactions.
    #[error("transaction type not supported")]
    TypeNotSupported,
    /// Signed for another chain.
    #[error("invalid chain id: have {have}, want {want}")]
    WrongChainId {
        /// The chain id in the tx.
        have: u64,
        /// This chain's id.
        want: u64,
    },
    /// Nonce already used.
    #[error("nonce too low: next nonce {next}, tx nonce {tx}")]
    NonceTooLow {
        /// Expected nonce.
        next: u64,
        /// Given nonce.
        tx: u64,
    },
    /// Cannot pay value plus maximal gas cost.
    #[error("insufficient funds for gas * price + value: balance {balance}, tx cost {cost}")]
    InsufficientFunds {
        /// Sender's balance.
        balance: U256,
        /// Maximal cost of the tx.
        cost: U256,
    },
    /// Fee cap below the current base fee.
    #[error(
        "max fee per gas less than block base fee: maxFeePerGas: {max_fee}, baseFee: {base_fee}"
    )]
    FeeCapTooLow {
        /// Tx fee cap.
        max_fee: u128,
        /// Current base fee.
        base_fee: u64,
    },
    /// Tip above fee cap.
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    /// Gas limit above the block's.
    #[error("exceeds block gas limit")]
    GasLimitTooHigh,
    /// Gas limit below the intrinsic gas.
    #[error("intrinsic gas too low: have {have}, want {want}")]
    IntrinsicGasTooLow {
        /// Tx gas limit.
        have: u64,
        /// Intrinsic gas.
        want: u64,
    },
    /// Above [`MAX_TX_BYTES`].
    #[error("oversized data: transaction size {0}, limit {MAX_TX_BYTES}")]
    Oversized(usize),
    /// Same hash already pooled.
    #[error("already known")]
    AlreadyKnown,
    /// Same sender and nonce with a fee not 10% higher.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// Pool at capacity.
    #[error("txpool is full")]
    PoolFull,
}

impl PoolError {
    /// JSON-RPC error code (geth: -32000 for pool rejections, -32602 for bad params).
    pub fn code(&self) -> i32 {
        match self {
            Self::Decode(_) | Self::Oversized(_) => -32602,
            _ => -32000,
        }
    }
}

/// What the pool needs to know about an account to validate a transaction.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountView {
    /// Current nonce.
    pub nonce: u64,
    /// Current balance.
    pub balance: U256,
}

/// Parameters the pool validates against.
#[derive(Clone, Copy, Debug)]
pub struct PoolRules {
    /// Chain id.
    pub chain_id: u64,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Base fee of the block being built.
    pub base_fee: u64,
    /// Capacity.
    pub max_txs: usize,
}

/// Decodes and checks a raw transaction without looking at state.
pub fn decode_raw(raw: &[u8], rules: &PoolRules) -> Result<PoolTx, PoolError> {
    if raw.len() > MAX_TX_BYTES {
        return Err(PoolError::Oversized(raw.len()));
    }
    let tx = OpTxEnvelope::decode_2718_exact(raw).map_err(|e| PoolError::Decode(e.to_string()))?;
    if tx.is_deposit() || tx.ty() == 3 || tx.ty() == 0x7d {
        return Err(PoolError::TypeNotSupported);
    }
    if let Some(have) = tx.chain_id() {
        if have != rules.chain_id {
            return Err(PoolError::WrongChainId { have, want: rules.chain_id });
        }
    }
    let sender = tx.recover_signer().map_err(|e| PoolError::InvalidSender(e.to_string()))?;
    if tx.gas_limit() > rules.gas_limit {
        return Err(PoolError::GasLimitTooHigh);
    }
    if let Some(tip) = tx.max_priority_fee_per_gas() {
        if tip > tx.max_fee_per_gas() {
            return Err(PoolError::TipAboveFeeCap);
        }
    }
    let intrinsic = intrinsic_gas(&tx);
    if tx.gas_limit() < intrinsic {
        return Err(PoolError::IntrinsicGasTooLow { have: tx.gas_limit(), want: intrinsic });
    }
    Ok(PoolTx { hash: tx.tx_hash(), sender, encoded: Bytes::copy_from_slice(raw), tx })
}

/// Intrinsic gas: base cost, calldata, creation and access list (EIP-2028/2930/3860/7702).
pub fn intrinsic_gas(tx: &OpTxEnvelope) -> u64 {
    let input = tx.input();
    let zeros = input.iter().filter(|b| **b == 0).count() as u64;
    let non_zeros = input.len() as u64 - zeros;
    let mut gas = 21_000 + zeros * 4 + non_zeros * 16;
    if tx.is_create() {
        gas += 32_000 + 2 * input.len().div_ceil(32) as u64;
    }
    if let Some(list) = tx.access_list() {
        for item in list.iter() {
            gas += 2_400 + 1_900 * item.storage_keys.len() as u64;
        }
    }
    if let Some(auths) = tx.authorization_list() {
        gas += 25_000 * auths.len() as u64;
    }
    // EIP-7623 (Prague/Isthmus): calldata-heavy txs pay at least 10 gas per token.
    let floor = 21_000 + 10 * (zeros + 4 * non_zeros);
    gas.max(floor)
}

/// Maximal cost of a transaction: value plus gas limit at the fee cap.
pub fn max_cost(tx: &OpTxEnvelope) -> U256 {
    U256::from(tx.gas_limit()) * U256::from(tx.max_fee_per_gas()) + tx.value()
}

/// Pending transactions by sender and nonce.
#[derive(Debug, Default)]
pub struct Mempool {
    by_sender: HashMap<Address, BTreeMap<u64, PoolTx>>,
    hashes: HashSet<B256>,
}

impl Mempool {
    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether a hash is pooled.
    pub fn contains(&self, hash: &B256) -> bool {
        self.hashes.contains(hash)
    }

    /// Looks up a pooled transaction.
    pub fn get(&self, hash: &B256) -> Option<&PoolTx> {
        if !self.hashes.contains(hash) {
            return None;
        }
        self.by_sender.values().flat_map(|m| m.values()).find(|t| t.hash == *hash)
    }

    /// The next nonce of `sender` counting contiguous pooled transactions after `state_nonce`.
    pub fn pending_nonce(&self, sender: Address, state_nonce: u64) -> u64 {
        let mut next = state_nonce;
        if let Some(queue) = self.by_sender.get(&sender) {
            while queue.contains_key(&next) {
                next += 1;
            }
        }
        next
    }

    /// Validates `tx` against the sender's account and adds it.
    pub fn insert(
        &mut self,
        tx: PoolTx,
        account: AccountView,
        rules: &PoolRules,
    ) -> Result<B256, PoolError> {
        if self.hashes.contains(&tx.hash) {
            return Err(PoolError::AlreadyKnown);
        }
        let nonce = tx.tx.nonce();
        if nonce < account.nonce {
            return Err(PoolError::NonceTooLow { next: account.nonce, tx: nonce });
        }
        let cost = max_cost(&tx.tx);
        if cost > account.balance {
            return Err(PoolError::InsufficientFunds { balance: account.balance, cost });
        }
        if tx.tx.max_fee_per_gas() < rules.base_fee as u128 {
            return Err(PoolError::FeeCapTooLow {
                max_fee: tx.tx.max_fee_per_gas(),
                base_fee: rules.base_fee,
            });
        }
        let queue = self.by_sender.entry(tx.sender).or_default();
        if let Some(existing) = queue.get(&nonce) {
            // A replacement must raise the fee cap and the tip by 10%, as in geth.
            let bump = |old: u128, new: u128| new >= old + old / 10;
            let old_tip =
                existing.tx.max_priority_fee_per_gas().unwrap_or(existing.tx.max_fee_per_gas());
            let new_tip = tx.tx.max_priority_fee_per_gas().unwrap_or(tx.tx.max_fee_per_gas());
            if !bump(existing.tx.max_fee_per_gas(), tx.tx.max_fee_per_gas())
                || !bump(old_tip, new_tip)
            {
                return Err(PoolError::ReplacementUnderpriced);
            }
            self.hashes.remove(&existing.hash);
        } else if self.hashes.len() >= rules.max_txs {
            return Err(PoolError::PoolFull);
        }
        let hash = tx.hash;
        self.hashes.insert(hash);
        queue.insert(nonce, tx);
        Ok(hash)
    }

    /// Removes one transaction.
    pub fn remove(&mut self, sender: Address, nonce: u64) {
        if let Some(queue) = self.by_sender.get_mut(&sender) {
            if let Some(tx) = queue.remove(&nonce) {
                self.hashes.remove(&tx.hash);
            }
            if queue.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
    }

    /// Drops every transaction whose nonce is below its sender's state nonce.
    pub fn prune(&mut self, mut state_nonce: impl FnMut(Address) -> u64) {
        let hashes = &mut self.hashes;
        self.by_sender.retain(|sender, queue| {
            let next = state_nonce(*sender);
            let stale: Vec<u64> = queue.range(..next).map(|(n, _)| *n).collect();
            for n in stale {
                if let Some(tx) = queue.remove(&n) {
                    hashes.remove(&tx.hash);
                }
            }
            !queue.is_empty()
        });
    }

    /// The executable transactions, best tip first, each sender's in nonce order.
    pub fn best(
        &self,
        base_fee: u64,
        mut state_nonce: impl FnMut(Address) -> u64,
    ) -> BestTransactions {
        let mut queues = HashMap::new();
        let mut heap = BinaryHeap::new();
        for (sender, queue) in &self.by_sender {
            let next = state_nonce(*sender);
            let ready: Vec<PoolTx> = queue
                .range(next..)
                .scan(next, |want, (n, tx)| {
                    (*n == *want).then(|| {
                        *want += 1;
                        tx.clone()
                    })
                })
                .collect();
            if ready.is_empty() {
                continue;
            }
            let mut ready = ready.into_iter();
            if let Some(first) = ready.next() {
                if first.tx.max_fee_per_gas() >= base_fee as u128 {
                    heap.push(Ranked::new(first, base_fee));
                    queues.insert(*sender, ready);
                }
            }
        }
        BestTransactions { heap, queues, base_fee, skipped: HashSet::new() }
    }
}

/// A transaction ranked by its effective tip, then by arrival (hash as a stable tiebreak).
#[derive(Debug)]
struct Ranked {
    tip: u128,
    tx: PoolTx,
}

impl Ranked {
    fn new(tx: PoolTx, base_fee: u64) -> Self {
        Self { tip: tx.tx.effective_tip_per_gas(base_fee).unwrap_or_default(), tx }
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.tip == other.tip && self.tx.hash == other.tx.hash
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.tip.cmp(&other.tip).then_with(|| other.tx.hash.cmp(&self.tx.hash))
    }
}

/// Iterator over executable transactions by fee; [`BestTransactions::skip_sender`] drops the
/// rest of a sender's queue (its next tx cannot run once one failed or did not fit).
#[derive(Debug)]
pub struct BestTransactions {
    heap: BinaryHeap<Ranked>,
    queues: HashMap<Address, std::vec::IntoIter<PoolTx>>,
    base_fee: u64,
    skipped: HashSet<Address>,
}

impl BestTransactions {
    /// Forgets the remaining transactions of `sender`.
    pub fn skip_sender(&mut self, sender: Address) {
        self.queues.remove(&sender);
        self.skipped.insert(sender);
    }
}

impl Iterator for BestTransactions {
    type Item = PoolTx;

    fn next(&mut self) -> Option<PoolTx> {
        let best = loop {
            let best = self.heap.pop()?;
            if !self.skipped.contains(&best.tx.sender) {
                break best;
            }
        };
        let sender = best.tx.sender;
        if let Some(next) = self.queues.get_mut(&sender).and_then(|q| q.next()) {
            if next.tx.max_fee_per_gas() >= self.base_fee as u128 {
                self.heap.push(Ranked::new(next, self.base_fee));
            }
        }
        Some(best.tx)
    }
}
