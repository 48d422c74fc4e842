//! The sealed chain: blocks, their transactions, and the state after each recent block.

use alloy_consensus::Header;
use alloy_primitives::B256;
use flashnode_exec::{ExecutedTx, MemDb};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

/// How many recent states are kept for historical queries.
pub const STATE_HISTORY: usize = 256;

/// A sealed block.
#[derive(Debug)]
pub struct SealedBlock {
    /// Header.
    pub header: Header,
    /// Header hash.
    pub hash: B256,
    /// Executed transactions with receipts.
    pub txs: Vec<ExecutedTx>,
}

/// The canonical chain of the devnet.
#[derive(Debug)]
pub struct ChainStore {
    blocks: Vec<Arc<SealedBlock>>,
    by_hash: HashMap<B256, u64>,
    tx_index: HashMap<B256, (u64, usize)>,
    states: VecDeque<(u64, Arc<MemDb>)>,
}

impl ChainStore {
    /// A chain holding only `genesis` and its state.
    pub fn new(genesis: Header, state: MemDb) -> Self {
        let hash = genesis.hash_slow();
        let mut store = Self {
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            tx_index: HashMap::new(),
            states: VecDeque::new(),
        };
        store.push(SealedBlock { header: genesis, hash, txs: Vec::new() }, Arc::new(state));
        store
    }

    /// Appends a block and the state after it.
    pub fn push(&mut self, block: SealedBlock, state: Arc<MemDb>) -> Arc<SealedBlock> {
        let number = block.header.number;
        self.by_hash.insert(block.hash, number);
        for (i, tx) in block.txs.iter().enumerate() {
            self.tx_index.insert(tx.hash, (number, i));
        }
        let block = Arc::new(block);
        self.blocks.push(block.clone());
        self.states.push_back((number, state));
        while self.states.len() > STATE_HISTORY {
            self.states.pop_front();
        }
        block
    }

    /// The latest block.
    pub fn latest(&self) -> &Arc<SealedBlock> {
        self.blocks.last().expect("the chain always holds genesis")
    }

    /// The state after the latest block.
    pub fn latest_state(&self) -> &Arc<MemDb> {
        &self.states.back().expect("the chain always holds genesis state").1
    }

    /// Block by number.
    pub fn by_number(&self, number: u64) -> Option<&Arc<SealedBlock>> {
        self.blocks.get(number as usize)
    }

    /// Block by hash.
    pub fn by_hash(&self, hash: &B256) -> Option<&Arc<SealedBlock>> {
        self.by_hash.get(hash).and_then(|n| self.by_number(*n))
    }

    /// State after block `number`, if still kept.
    pub fn state_at(&self, number: u64) -> Option<&Arc<MemDb>> {
        let first = self.states.front()?.0;
        self.states.get(number.checked_sub(first)? as usize).map(|(_, s)| s)
    }

    /// A sealed transaction with its block.
    pub fn transaction(&self, hash: &B256) -> Option<(&Arc<SealedBlock>, usize)> {
        let (number, index) = self.tx_index.get(hash)?;
        Some((self.by_number(*number)?, *index))
    }
}
