//! The seam between flashnode and canonical state: [`StateSource`], implemented by the
//! embedded devnet and by an upstream OP execution client over JSON-RPC, and [`SourceDb`], the
//! revm database that reads through it pinned to one block hash.

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256};
use futures::future::BoxFuture;
use op_alloy_consensus::OpReceipt;
use revm::{bytecode::Bytecode, database_interface::DatabaseRef, state::AccountInfo};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::broadcast;

/// Why canonical state could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// The block is unknown to the source (pruned, or reorged away).
    #[error("block {0} is not available")]
    UnknownBlock(B256),
    /// The upstream failed or timed out.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The upstream answered something that does not parse.
    #[error("invalid upstream answer: {0}")]
    Invalid(String),
}

impl revm::database_interface::DBErrorMarker for SourceError {}

/// An account as the source reports it, with its code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceAccount {
    /// Balance.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Runtime code (empty for EOAs).
    pub code: Bytes,
}

/// A sealed canonical block with what reconciliation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalBlock {
    /// Header.
    pub header: Header,
    /// Hash.
    pub hash: B256,
    /// Transaction hashes in order.
    pub tx_hashes: Vec<B256>,
    /// Receipts in order (consensus form).
    pub receipts: Vec<OpReceipt>,
}

/// Canonical-chain notifications, shaped like reth's ExEx notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanonicalNotification {
    /// New blocks extend the chain.
    Committed {
        /// The new blocks, oldest first.
        new: Vec<Arc<CanonicalBlock>>,
    },
    /// Blocks were replaced.
    Reorged {
        /// Blocks that left the canonical chain, oldest first.
        old: Vec<Arc<CanonicalBlock>>,
        /// Blocks that replaced them, oldest first.
        new: Vec<Arc<CanonicalBlock>>,
    },
    /// Blocks were removed without replacement.
    Reverted {
        /// Removed blocks, oldest first.
        old: Vec<Arc<CanonicalBlock>>,
    },
}

impl CanonicalNotification {
    /// The tip after this notification, if it adds blocks.
    pub fn tip(&self) -> Option<&Arc<CanonicalBlock>> {
        match self {
            Self::Committed { new } | Self::Reorged { new, .. } => new.last(),
            Self::Reverted { .. } => None,
        }
    }
}

/// Canonical state, read at a block hash.
pub trait StateSource: Send + Sync + std::fmt::Debug + 'static {
    /// Chain id of the chain.
    fn chain_id(&self) -> u64;
    /// The latest canonical block.
    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>>;
    /// A canonical block by number.
    fn block_by_number(
        &self,
        number: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>>;
    /// An account at block `at`.
    fn account(
        &self,
        at: B256,
        address: Address,
    ) -> BoxFuture<'_, Result<SourceAccount, SourceError>>;
    /// A storage slot at block `at`.
    fn storage(
        &self,
        at: B256,
        address: Address,
        slot: U256,
    ) -> BoxFuture<'_, Result<U256, SourceError>>;
    /// Warms the source for reads of `accounts` and `slots` at `at` that are about to come
    /// (a flashblock's senders and recipients, a call's `from` / `to` / access list), in as
    /// few round trips as the source allows. Sources whose reads are local (the embedded
    /// devnet) have nothing to warm, which is the default.
    fn prefetch(
        &self,
        at: B256,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> BoxFuture<'_, Result<(), SourceError>> {
        let _ = (at, accounts, slots);
        Box::pin(async { Ok(()) })
    }
    /// Canonical notifications from now on.
    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification>;
}

/// A revm database over a [`StateSource`] pinned to one block hash. Reads block on the
/// source, so it is used only on blocking threads (the overlay's executor, `spawn_blocking`).
#[derive(Clone)]
pub struct SourceDb {
    source: Arc<dyn StateSource>,
    at: B256,
    handle: tokio::runtime::Handle,
    codes: Arc<Mutex<HashMap<B256, Bytecode>>>,
    block_hashes: Arc<Mutex<HashMap<u64, B256>>>,
}

impl std::fmt::Debug for SourceDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceDb").field("at", &self.at).finish_non_exhaustive()
    }
}

impl SourceDb {
    /// A database reading `source` at block `at`, blocking on `handle`.
    pub fn new(source: Arc<dyn StateSource>, at: B256, handle: tokio::runtime::Handle) -> Self {
        Self { source, at, handle, codes: Default::default(), block_hashes: Default::default() }
    }

    /// The block the reads are pinned to.
    pub fn at(&self) -> B256 {
        self.at
    }

    /// Teaches the database a block hash that is not canonical yet (a pending parent).
    pub fn insert_block_hash(&self, number: u64, hash: B256) {
        if let Ok(mut map) = self.block_hashes.lock() {
            map.insert(number, hash);
        }
    }

    /// Warms the source for reads at this database's block (see [`StateSource::prefetch`]).
    pub async fn prefetch(
        &self,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> Result<(), SourceError> {
        self.source.prefetch(self.at, accounts, slots).await
    }

    /// [`SourceDb::prefetch`] from a blocking thread.
    pub fn prefetch_blocking(
        &self,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> Result<(), SourceError> {
        self.block_on(self.source.prefetch(self.at, accounts, slots))
    }

    /// Runs a source read to completion. Callers are blocking threads, never async workers
    /// (where `Handle::block_on` would panic).
    fn block_on<T>(&self, fut: BoxFuture<'_, Result<T, SourceError>>) -> Result<T, SourceError> {
        self.handle.block_on(fut)
    }
}

impl DatabaseRef for SourceDb {
    type Error = SourceError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, SourceError> {
        let acc = self.block_on(self.source.account(self.at, address))?;
        if acc == SourceAccount::default() {
            return Ok(None);
        }
        let code = Bytecode::new_raw(acc.code);
        let code_hash = code.hash_slow();
        if let Ok(mut codes) = self.codes.lock() {
            codes.entry(code_hash).or_insert_with(|| code.clone());
        }
        Ok(Some(AccountInfo {
            balance: acc.balance,
            nonce: acc.nonce,
            code_hash,
            code: Some(code),
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, SourceError> {
        self.codes
            .lock()
            .ok()
            .and_then(|c| c.get(&code_hash).cloned())
            .ok_or_else(|| SourceError::Invalid(format!("code {code_hash} was never loaded")))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, SourceError> {
        self.block_on(self.source.storage(self.at, address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, SourceError> {
        if let Some(hash) = self.block_hashes.lock().ok().and_then(|m| m.get(&number).copied()) {
            return Ok(hash);
        }
        let block = self.block_on(self.source.block_by_number(number))?;
        Ok(block.map(|b| b.hash).unwrap_or_default())
    }
}
