//! The devnet as a [`StateSource`]: in-process reads of its sealed states, and its sealed
//! blocks as `Committed` notifications.

use crate::{chain::SealedBlock, Shared};
use alloy_primitives::{Address, B256, U256};
use flashnode_exec::{
    CanonicalBlock, CanonicalNotification, MemDb, SourceAccount, SourceError, StateSource,
};
use flashnode_tasks::TaskExecutor;
use futures::future::{BoxFuture, FutureExt};
use revm::DatabaseRef;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Reads the devnet's canonical chain in process.
#[derive(Debug, Clone)]
pub struct DevnetSource {
    shared: Arc<Shared>,
    notifications: broadcast::Sender<CanonicalNotification>,
}

impl DevnetSource {
    /// Wraps a running devnet; spawns the critical task `devnet_source` on `tasks` that turns
    /// sealed blocks into notifications until `cancel`.
    pub fn new(shared: Arc<Shared>, cancel: CancellationToken, tasks: &TaskExecutor) -> Self {
        let (notifications, _) = broadcast::channel(256);
        let mut sealed = shared.sealed.subscribe();
        let tx = notifications.clone();
        tasks.spawn_critical("devnet_source", async move {
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    next = sealed.recv() => next,
                };
                match next {
                    Ok(block) => {
                        let _ = tx.send(CanonicalNotification::Committed {
                            new: vec![canonical(&block)],
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self { shared, notifications }
    }

    fn state(&self, at: B256) -> Result<Arc<MemDb>, SourceError> {
        let store = self.shared.store.read();
        let block = store.by_hash(&at).ok_or(SourceError::UnknownBlock(at))?;
        store.state_at(block.header.number).cloned().ok_or(SourceError::UnknownBlock(at))
    }
}

/// A sealed devnet block in the source's terms.
pub fn canonical(block: &SealedBlock) -> Arc<CanonicalBlock> {
    Arc::new(CanonicalBlock {
        header: block.header.clone(),
        hash: block.hash,
        tx_hashes: block.txs.iter().map(|t| t.hash).collect(),
        receipts: block.txs.iter().map(|t| t.receipt.clone()).collect(),
    })
}

impl StateSource for DevnetSource {
    fn chain_id(&self) -> u64 {
        self.shared.chain.chain_id
    }

    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        let block = canonical(self.shared.store.read().latest());
        async move { Ok(block) }.boxed()
    }

    fn block_by_number(
        &self,
        number: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
        let block = self.shared.store.read().by_number(number).map(|b| canonical(b));
        async move { Ok(block) }.boxed()
    }

    fn account(
        &self,
        at: B256,
        address: Address,
    ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
        let res = self.state(at).map(|state| {
            let info = state.basic_ref(address).ok().flatten().unwrap_or_default();
            let code = match &info.code {
                Some(c) => c.original_bytes(),
                None => state
                    .code_by_hash_ref(info.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
            };
            SourceAccount { balance: info.balance, nonce: info.nonce, code }
        });
        async move { res }.boxed()
    }

    fn storage(
        &self,
        at: B256,
        address: Address,
        slot: U256,
    ) -> BoxFuture<'_, Result<U256, SourceError>> {
        let res = self.state(at).map(|s| s.storage_ref(address, slot).unwrap_or_default());
        async move { res }.boxed()
    }

    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.notifications.subscribe()
    }

    fn reads_are_local(&self) -> bool {
        true
    }
}
