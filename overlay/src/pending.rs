//! The preconfirmed block as readers see it: an immutable snapshot published after every
//! applied flashblock, never half of one.

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_engine::PayloadId;
use alloy_rpc_types_eth::Block;
use flashnode_exec::{rpc_block, BlockContext, BlockEnvInput, ExecutedTx, SourceDb, SourceError};
use op_alloy_rpc_types::Transaction;
use revm::{
    bytecode::Bytecode,
    database::{AccountState, CacheDB, DbAccount},
    database_interface::DatabaseRef,
    state::AccountInfo,
};
use std::{collections::HashMap, sync::Arc, time::Instant};

/// State changed or read by the pending block, on top of the canonical state at `source_at`.
#[derive(Debug, Clone, Default)]
pub struct PendingState {
    accounts: HashMap<Address, DbAccount>,
    contracts: HashMap<B256, Bytecode>,
}

impl PendingState {
    /// Copies the cache of an executing block's database.
    pub fn from_db(db: &CacheDB<SourceDb>) -> Self {
        Self {
            accounts: db.cache.accounts.iter().map(|(a, acc)| (*a, acc.clone())).collect(),
            contracts: db.cache.contracts.iter().map(|(h, c)| (*h, c.clone())).collect(),
        }
    }

    /// The account as the pending block left it; None when the block never touched it.
    pub fn account(&self, address: &Address) -> Option<Option<AccountInfo>> {
        self.accounts.get(address).map(|acc| acc.info())
    }

    /// A storage slot the pending block knows; None when it must be read canonically.
    pub fn storage(&self, address: &Address, slot: &U256) -> Option<U256> {
        let acc = self.accounts.get(address)?;
        if let Some(v) = acc.storage.get(slot) {
            return Some(*v);
        }
        match acc.account_state {
            AccountState::StorageCleared | AccountState::NotExisting => Some(U256::ZERO),
            _ => None,
        }
    }

    /// Code by hash, if the pending block loaded or created it.
    pub fn code(&self, hash: &B256) -> Option<Bytecode> {
        self.contracts.get(hash).cloned()
    }

    /// How many accounts the snapshot holds.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

/// The preconfirmed block after its latest applied flashblock.
#[derive(Debug)]
pub struct PendingBlock {
    /// Block environment (from the flashblock base).
    pub env: BlockEnvInput,
    /// Payload id of the block.
    pub payload_id: PayloadId,
    /// Index of the last applied flashblock.
    pub index: u64,
    /// Header of the block so far: the base's fields and our execution's transactions root,
    /// receipts root, logs bloom and gas used. `state_root` and `withdrawals_root` are zero:
    /// the node computes no state trie and never takes the stream's (zero in the Subblocks
    /// shape).
    pub header: Header,
    /// Provisional hash: keccak256 of [`Self::header`] as served. It changes with every
    /// flashblock and is never the sealed block's hash (the node computes no state root). The
    /// pending block object, its preconfirmed transactions, receipts and logs all carry it
    /// (see [`Self::context`]): strict clients (ethers v6, execution-apis) require a non-null
    /// `blockHash`, and the Subblocks spec makes block fields provisional until the seal.
    pub hash: B256,
    /// Every provisional hash this block was served under, one per applied flashblock, the
    /// last being [`Self::hash`]: a client that read a receipt at flashblock 2 and asks for
    /// its block at flashblock 5 gets this (append-only) block, not `null`.
    pub provisional_hashes: Arc<[B256]>,
    /// `diff.post_exec_tx` of the latest flashblock that carried one (Lagoon, type `0x7D`).
    /// Its settlement cannot be applied here, so a block with one is never served as
    /// `pending` (see `Overlay::pending`); subscriptions and the fan-out still carry it.
    pub post_exec_tx: Option<Bytes>,
    /// Re-executed transactions with receipts.
    pub txs: Arc<Vec<ExecutedTx>>,
    /// Transaction hash to index in `txs`.
    pub positions: Arc<HashMap<B256, usize>>,
    /// State on top of `source_at`.
    pub state: Arc<PendingState>,
    /// The canonical block the state reads fall back to.
    pub source_at: B256,
    /// The database behind the state (canonical reads at `source_at`).
    pub source_db: SourceDb,
    /// When the last flashblock was applied.
    pub applied_at: Instant,
    /// Transactions added by the last flashblock (`txs[first_new..]`).
    pub first_new: usize,
}

impl PendingBlock {
    /// Block number.
    pub fn number(&self) -> u64 {
        self.env.number
    }

    /// Where the block's transactions sit, for RPC shapes: number, timestamp and base fee are
    /// the sealed block's; the hash is the provisional [`Self::hash`] until the seal.
    pub fn context(&self) -> BlockContext {
        BlockContext {
            hash: Some(self.hash),
            number: self.env.number,
            timestamp: self.env.timestamp,
            base_fee: self.env.base_fee,
        }
    }

    /// Whether `hash` is one of the provisional hashes this block was served under.
    pub fn answers_to(&self, hash: &B256) -> bool {
        self.provisional_hashes.contains(hash)
    }

    /// The block as `eth_getBlockByNumber("pending")` and `eth_getBlockByHash` serve it.
    pub fn rpc_block(&self, full: bool) -> Block<Transaction> {
        rpc_block(&self.header, self.hash, &self.txs, full)
    }

    /// A preconfirmed transaction by hash.
    pub fn transaction(&self, hash: &B256) -> Option<&ExecutedTx> {
        self.positions.get(hash).map(|i| &self.txs[*i])
    }

    /// Warms the canonical source for the accounts and slots a call is about to read that the
    /// pending state does not hold (one upstream round trip instead of one per read).
    pub async fn prefetch(
        &self,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> Result<(), SourceError> {
        let accounts: Vec<Address> =
            accounts.into_iter().filter(|a| self.state.account(a).is_none()).collect();
        let slots: Vec<(Address, U256)> =
            slots.into_iter().filter(|(a, k)| self.state.storage(a, k).is_none()).collect();
        if accounts.is_empty() && slots.is_empty() {
            return Ok(());
        }
        self.source_db.prefetch(accounts, slots).await
    }

    /// A revm database over the pending state (reads fall back to canonical state).
    pub fn database(&self) -> PendingDb {
        PendingDb { state: self.state.clone(), source: self.source_db.clone() }
    }
}

/// The pending state as a revm database; canonical reads block, so use it on blocking threads.
#[derive(Debug, Clone)]
pub struct PendingDb {
    state: Arc<PendingState>,
    source: SourceDb,
}

impl DatabaseRef for PendingDb {
    type Error = SourceError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, SourceError> {
        match self.state.account(&address) {
            Some(info) => Ok(info),
            None => self.source.basic_ref(address),
        }
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, SourceError> {
        match self.state.code(&code_hash) {
            Some(code) => Ok(code),
            None => self.source.code_by_hash_ref(code_hash),
        }
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, SourceError> {
        match self.state.storage(&address, &index) {
            Some(v) => Ok(v),
            None => self.source.storage_ref(address, index),
        }
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, SourceError> {
        self.source.block_hash_ref(number)
    }
}
