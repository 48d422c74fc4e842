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

/// A cause kept behind an `Arc`, so the error carrying it stays `Clone` (a failed read is
/// handed to every waiter of a shared cache entry).
pub type BoxedCause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why canonical state could not be read. Each variant carries what went wrong in a form a
/// caller can match on: the block hash a read was pinned to, the JSON-RPC code an upstream
/// answered, the transport or decode error as the [`std::error::Error::source`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The block is unknown to the source (pruned, reorged away, or not imported yet).
    #[error("block {0} is not available")]
    UnknownBlock(B256),
    /// A request got no answer within the source's timeout.
    #[error("upstream error: {request} timed out")]
    Timeout {
        /// What was asked (`eth_getBlockByNumber`, `eth_chainId to <url>`).
        request: String,
    },
    /// The transport failed (connection refused or reset, TLS, HTTP status). The message
    /// shows the whole cause chain (`tcp connect error: Connection refused`), since the
    /// transport's own top-level message does not say why.
    #[error("upstream error: {request}: {}", Chain(&**source))]
    Transport {
        /// What was asked.
        request: String,
        /// The transport's error.
        #[source]
        source: BoxedCause,
    },
    /// The upstream answered with a JSON-RPC error other than an unknown block.
    #[error(
        "upstream error: {method}: server returned an error response: error code {code}: {message}"
    )]
    Rpc {
        /// The method called.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// The upstream's message.
        message: String,
    },
    /// The upstream answered something that does not parse.
    #[error("invalid upstream answer: {what}: {source}")]
    Decode {
        /// The field or method whose answer is malformed.
        what: &'static str,
        /// The parse error.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The upstream's answer lacks something it must have (a parent block, a batch entry).
    #[error("invalid upstream answer: {0}")]
    Missing(&'static str),
    /// A read the source does not hold, asked of a [`SourceDb`] told not to wait
    /// ([`SourceDb::set_waits`]): the executor then discovers the flashblock's reads and
    /// fetches them in one batch before it tries again. Never answered to a client.
    #[error("{0} is not cached (a read that would wait was refused)")]
    NotCached(&'static str),
    /// Code asked for by hash that no account read loaded first.
    #[error("invalid upstream answer: code {0} was never loaded")]
    CodeNotLoaded(B256),
}

impl SourceError {
    /// A transport failure while doing `request`.
    pub fn transport(
        request: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Transport { request: request.into(), source: Arc::new(source) }
    }

    /// An answer to `what` that does not parse.
    pub fn decode(what: &'static str, source: serde_json::Error) -> Self {
        Self::Decode { what, source: Arc::new(source) }
    }
}

/// An error and its causes on one line, each cause once (a transport's wrapper often shows
/// its inner error's text and also returns it as the source).
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if text != last {
                write!(f, ": {text}")?;
                last = text;
            }
            cause = c.source();
        }
        Ok(())
    }
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
    /// The account at `at` when the source holds it without a round trip (its cache), `None`
    /// when reading it would go to the upstream. Read-discovery asks this to learn what a
    /// flashblock will read without waiting for any of it. Local sources answer every read
    /// through [`StateSource::account`] and keep the default.
    fn cached_account(&self, at: B256, address: Address) -> Option<SourceAccount> {
        let _ = (at, address);
        None
    }
    /// A storage slot at `at` when the source holds it without a round trip (see
    /// [`StateSource::cached_account`]).
    fn cached_storage(&self, at: B256, address: Address, slot: U256) -> Option<U256> {
        let _ = (at, address, slot);
        None
    }
    /// Canonical notifications from now on.
    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification>;
    /// Whether reads are answered in process, without a round trip (the embedded devnet).
    /// The overlay's executor then executes a flashblock's transactions while their signers
    /// are still being recovered, instead of recovering them all first to batch the reads
    /// with [`StateSource::prefetch`]. Remote sources keep the default, `false`.
    fn reads_are_local(&self) -> bool {
        false
    }
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
    /// Whether an account or slot the source does not hold is read (waiting for the round
    /// trip) or refused with [`SourceError::NotCached`]. Per copy, never shared: the
    /// executor's copy refuses while it executes, the pending block's copy always waits.
    waits: bool,
}

impl std::fmt::Debug for SourceDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceDb").field("at", &self.at).finish_non_exhaustive()
    }
}

impl SourceDb {
    /// A database reading `source` at block `at`, blocking on `handle`.
    pub fn new(source: Arc<dyn StateSource>, at: B256, handle: tokio::runtime::Handle) -> Self {
        Self {
            source,
            at,
            handle,
            codes: Default::default(),
            block_hashes: Default::default(),
            waits: true,
        }
    }

    /// Whether reads the source does not hold wait for the upstream (the default) or fail at
    /// once with [`SourceError::NotCached`].
    pub fn set_waits(&mut self, waits: bool) {
        self.waits = waits;
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

    /// The account at this database's block if the source holds it without a round trip, in
    /// the form [`DatabaseRef::basic_ref`] answers (`Some(None)`: known not to exist).
    pub fn cached_basic(&self, address: Address) -> Option<Option<AccountInfo>> {
        self.source.cached_account(self.at, address).map(|acc| self.account_info(acc))
    }

    /// A slot at this database's block if the source holds it without a round trip.
    pub fn cached_storage(&self, address: Address, slot: U256) -> Option<U256> {
        self.source.cached_storage(self.at, address, slot)
    }

    /// A block hash this database was taught ([`Self::insert_block_hash`]).
    pub fn known_block_hash(&self, number: u64) -> Option<B256> {
        self.block_hashes.lock().ok().and_then(|m| m.get(&number).copied())
    }

    /// The same database pinned to block `at` instead, sharing the code it loaded.
    pub fn pinned_to(&self, at: B256) -> Self {
        Self { at, block_hashes: Default::default(), ..self.clone() }
    }

    fn account_info(&self, acc: SourceAccount) -> Option<AccountInfo> {
        if acc == SourceAccount::default() {
            return None;
        }
        let code = Bytecode::new_raw(acc.code);
        let code_hash = code.hash_slow();
        if let Ok(mut codes) = self.codes.lock() {
            codes.entry(code_hash).or_insert_with(|| code.clone());
        }
        Some(AccountInfo {
            balance: acc.balance,
            nonce: acc.nonce,
            code_hash,
            code: Some(code),
            ..Default::default()
        })
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
        if !self.waits {
            return self.cached_basic(address).ok_or(SourceError::NotCached("account"));
        }
        let acc = self.block_on(self.source.account(self.at, address))?;
        Ok(self.account_info(acc))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, SourceError> {
        self.codes
            .lock()
            .ok()
            .and_then(|c| c.get(&code_hash).cloned())
            .ok_or(SourceError::CodeNotLoaded(code_hash))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, SourceError> {
        if !self.waits {
            return self.cached_storage(address, index).ok_or(SourceError::NotCached("slot"));
        }
        self.block_on(self.source.storage(self.at, address, index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, SourceError> {
        if let Some(hash) = self.known_block_hash(number) {
            return Ok(hash);
        }
        let block = self.block_on(self.source.block_by_number(number))?;
        Ok(block.map(|b| b.hash).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_transport_error_shows_its_causes_once_each_and_keeps_them_as_sources() {
        let refused = E("Connection refused", None);
        // A wrapper showing its inner error's text, which is also its source (alloy's
        // `TransportErrorKind::Custom`), then the chain below it.
        let inner = E("tcp connect error", Some(Box::new(refused)));
        let wrapper = E("error sending request", Some(Box::new(inner)));
        let top = E("error sending request", Some(Box::new(wrapper)));
        let err = SourceError::transport("eth_chainId to http://127.0.0.1:1", top);
        assert_eq!(
            err.to_string(),
            "upstream error: eth_chainId to http://127.0.0.1:1: error sending request: tcp connect error: Connection refused"
        );
        let causes = std::iter::successors(std::error::Error::source(&err), |e| e.source()).count();
        assert_eq!(causes, 4);
    }

    #[test]
    fn every_variant_names_what_failed() {
        let h = B256::repeat_byte(1);
        assert_eq!(SourceError::UnknownBlock(h).to_string(), format!("block {h} is not available"));
        assert_eq!(
            SourceError::Timeout { request: "state batch".into() }.to_string(),
            "upstream error: state batch timed out"
        );
        let bad = serde_json::from_str::<u64>("x").err().map(|e| SourceError::decode("nonce", e));
        assert!(matches!(bad, Some(SourceError::Decode { what: "nonce", .. })));
        assert_eq!(
            SourceError::CodeNotLoaded(h).to_string(),
            format!("invalid upstream answer: code {h} was never loaded")
        );
    }
}
