//! [`StateSource`] over an OP execution client's JSON-RPC (op-reth, op-geth, anvil): reads
//! pinned to a block hash (EIP-1898), cached in moka with a memory bound, and new heads by
//! polling with reorg detection.

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_provider::{Provider, ProviderBuilder, RootProvider};
use flashnode_exec::{
    CanonicalBlock, CanonicalNotification, SourceAccount, SourceError, StateSource,
};
use flashnode_tasks::TaskExecutor;
use futures::future::{BoxFuture, FutureExt};
use op_alloy_consensus::{OpReceipt, OpReceiptEnvelope};
use op_alloy_rpc_types::OpTransactionReceipt;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

/// An error and its causes on one line ("error sending request: …: Connection refused"): the
/// transport's top-level message alone does not say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Upstream settings.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// HTTP or WS URL of the execution client.
    pub url: String,
    /// How often to poll for new heads.
    pub poll_interval: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Cache bound in bytes.
    pub cache_bytes: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8545".into(),
            poll_interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
            cache_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The upstream client.
#[derive(Clone)]
pub struct UpstreamSource {
    provider: RootProvider,
    chain_id: u64,
    timeout: Duration,
    accounts: moka::future::Cache<(B256, Address), SourceAccount>,
    slots: moka::future::Cache<(B256, Address, U256), U256>,
    blocks: moka::future::Cache<u64, Arc<CanonicalBlock>>,
    notifications: broadcast::Sender<CanonicalNotification>,
}

impl std::fmt::Debug for UpstreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSource").field("chain_id", &self.chain_id).finish_non_exhaustive()
    }
}

impl UpstreamSource {
    /// Connects, reads the chain id, and starts polling for heads until `cancel` (a critical
    /// task of `tasks` named `upstream_heads`: without it the canonical tip freezes).
    pub async fn connect(
        config: UpstreamConfig,
        cancel: CancellationToken,
        tasks: &TaskExecutor,
    ) -> Result<Self, SourceError> {
        let provider = ProviderBuilder::default()
            .connect(&config.url)
            .await
            .map_err(|e| SourceError::Upstream(format!("cannot connect to {}: {e}", config.url)))?;
        let chain_id = tokio::time::timeout(config.request_timeout, provider.get_chain_id())
            .await
            .map_err(|_| SourceError::Upstream(format!("eth_chainId to {} timed out", config.url)))?
            .map_err(|e| {
                SourceError::Upstream(format!("eth_chainId to {}: {}", config.url, error_chain(&e)))
            })?;
        let weigh_account = |_: &(B256, Address), v: &SourceAccount| (96 + v.code.len()) as u32;
        let (notifications, _) = broadcast::channel(256);
        let source = Self {
            provider,
            chain_id,
            timeout: config.request_timeout,
            accounts: moka::future::Cache::builder()
                .max_capacity(config.cache_bytes / 2)
                .weigher(weigh_account)
                .build(),
            slots: moka::future::Cache::builder()
                .max_capacity(config.cache_bytes / 2 / 128)
                .build(),
            blocks: moka::future::Cache::builder().max_capacity(1024).build(),
            notifications,
        };
        let poller = source.clone();
        tasks.spawn_critical(
            "upstream_heads",
            poller
                .poll_heads(config.poll_interval, cancel)
                .instrument(info_span!("upstream_heads", url = %config.url)),
        );
        Ok(source)
    }

    async fn request(&self, method: &'static str, params: Value) -> Result<Value, SourceError> {
        let fut = self.provider.raw_request::<_, Value>(method.into(), params);
        let res = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| SourceError::Upstream(format!("{method} timed out")))?;
        metrics::counter!("flashnode_upstream_requests_total", "method" => method).increment(1);
        res.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("not found")
                || msg.contains("unknown block")
                || msg.contains("not available")
            {
                SourceError::UnknownBlock(B256::ZERO)
            } else {
                SourceError::Upstream(format!("{method}: {msg}"))
            }
        })
    }

    /// Reads `accounts` (balance, nonce, code) and `slots` at `at` in one JSON-RPC batch (one
    /// HTTP round trip), caches them, and returns them in order.
    async fn fetch_batch(
        &self,
        at: B256,
        accounts: &[Address],
        slots: &[(Address, U256)],
    ) -> Result<(Vec<SourceAccount>, Vec<U256>), SourceError> {
        let block = json!({ "blockHash": at, "requireCanonical": false });
        let client = self.provider.client();
        let mut batch = alloy_rpc_client::BatchRequest::new(client);
        let add = |batch: &mut alloy_rpc_client::BatchRequest<'_>,
                   method: &'static str,
                   params: Value| {
            metrics::counter!("flashnode_upstream_requests_total", "method" => method).increment(1);
            batch
                .add_call::<_, Value>(method, &params)
                .map_err(|e| SourceError::Upstream(format!("{method}: {e}")))
        };
        let mut account_waiters = Vec::with_capacity(accounts.len());
        for address in accounts {
            account_waiters.push((
                add(&mut batch, "eth_getBalance", json!([address, block]))?,
                add(&mut batch, "eth_getTransactionCount", json!([address, block]))?,
                add(&mut batch, "eth_getCode", json!([address, block]))?,
            ));
        }
        let mut slot_waiters = Vec::with_capacity(slots.len());
        for (address, slot) in slots {
            slot_waiters.push(add(&mut batch, "eth_getStorageAt", json!([address, slot, block]))?);
        }
        metrics::counter!("flashnode_upstream_batches_total").increment(1);
        let answers = async {
            batch.send().await.map_err(|e| upstream_error("batch", at, e.to_string()))?;
            let mut out_accounts = Vec::with_capacity(account_waiters.len());
            for (balance, nonce, code) in account_waiters {
                let parse_err =
                    |what: &str, e: serde_json::Error| SourceError::Invalid(format!("{what}: {e}"));
                let (balance, nonce, code) = (
                    balance
                        .await
                        .map_err(|e| upstream_error("eth_getBalance", at, e.to_string()))?,
                    nonce.await.map_err(|e| {
                        upstream_error("eth_getTransactionCount", at, e.to_string())
                    })?,
                    code.await.map_err(|e| upstream_error("eth_getCode", at, e.to_string()))?,
                );
                out_accounts.push(SourceAccount {
                    balance: serde_json::from_value(balance)
                        .map_err(|e| parse_err("balance", e))?,
                    nonce: serde_json::from_value::<U64>(nonce)
                        .map_err(|e| parse_err("nonce", e))?
                        .to::<u64>(),
                    code: serde_json::from_value::<Bytes>(code)
                        .map_err(|e| parse_err("code", e))?,
                });
            }
            let mut out_slots = Vec::with_capacity(slot_waiters.len());
            for w in slot_waiters {
                let raw =
                    w.await.map_err(|e| upstream_error("eth_getStorageAt", at, e.to_string()))?;
                let value: B256 = serde_json::from_value(raw)
                    .map_err(|e| SourceError::Invalid(format!("slot: {e}")))?;
                out_slots.push(U256::from_be_bytes(value.0));
            }
            Ok::<_, SourceError>((out_accounts, out_slots))
        };
        let (out_accounts, out_slots) = tokio::time::timeout(self.timeout, answers)
            .await
            .map_err(|_| SourceError::Upstream("state batch timed out".into()))??;
        for (address, acc) in accounts.iter().zip(&out_accounts) {
            self.accounts.insert((at, *address), acc.clone()).await;
        }
        for ((address, slot), value) in slots.iter().zip(&out_slots) {
            self.slots.insert((at, *address, *slot), *value).await;
        }
        Ok((out_accounts, out_slots))
    }

    async fn fetch_block(&self, id: Value) -> Result<Option<Arc<CanonicalBlock>>, SourceError> {
        let block = self.request("eth_getBlockByNumber", json!([id, false])).await?;
        if block.is_null() {
            return Ok(None);
        }
        let header: Header = serde_json::from_value(block.clone())
            .map_err(|e| SourceError::Invalid(format!("header: {e}")))?;
        let hash: B256 = serde_json::from_value(block["hash"].clone())
            .map_err(|e| SourceError::Invalid(format!("block hash: {e}")))?;
        let tx_hashes: Vec<B256> = serde_json::from_value(block["transactions"].clone())
            .map_err(|e| SourceError::Invalid(format!("tx hashes: {e}")))?;
        let receipts = if tx_hashes.is_empty() {
            Vec::new()
        } else {
            let raw = self.request("eth_getBlockReceipts", json!([hash])).await?;
            let receipts: Vec<OpTransactionReceipt> = serde_json::from_value(raw)
                .map_err(|e| SourceError::Invalid(format!("receipts: {e}")))?;
            receipts
                .into_iter()
                .map(|r| OpReceipt::from(OpReceiptEnvelope::<alloy_primitives::Log>::from(r)))
                .collect()
        };
        let block = Arc::new(CanonicalBlock { header, hash, tx_hashes, receipts });
        self.blocks.insert(block.header.number, block.clone()).await;
        Ok(Some(block))
    }

    async fn poll_heads(self, interval: Duration, cancel: CancellationToken) {
        let mut tip: Option<Arc<CanonicalBlock>> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let latest = match self.fetch_block(json!("latest")).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(err) => {
                    failures += 1;
                    // Log the first failure and then every 50th, not every poll.
                    if failures == 1 || failures.is_multiple_of(50) {
                        warn!(%err, failures, "polling the upstream head failed");
                    }
                    continue;
                }
            };
            failures = 0;
            let Some(prev) = tip.clone() else {
                tip = Some(latest);
                continue;
            };
            if latest.hash == prev.hash {
                continue;
            }
            match self.advance(&prev, latest.clone()).await {
                Ok(n) => {
                    let _ = self.notifications.send(n);
                    tip = Some(latest);
                }
                Err(err) => debug!(%err, "could not walk to the new head; retrying"),
            }
        }
    }

    /// The notification that takes the chain from `prev` to `latest`.
    async fn advance(
        &self,
        prev: &Arc<CanonicalBlock>,
        latest: Arc<CanonicalBlock>,
    ) -> Result<CanonicalNotification, SourceError> {
        // Walk back from the new head until it links to our chain (at most 64 blocks).
        let mut new = vec![latest.clone()];
        let mut cursor = latest;
        while cursor.header.number > prev.header.number + 1 && new.len() < 64 {
            let parent = self
                .fetch_block(json!(U64::from(cursor.header.number - 1)))
                .await?
                .ok_or_else(|| SourceError::Invalid("missing parent".into()))?;
            new.push(parent.clone());
            cursor = parent;
        }
        new.reverse();
        let first = &new[0];
        if first.header.number == prev.header.number + 1 && first.header.parent_hash == prev.hash {
            return Ok(CanonicalNotification::Committed { new });
        }
        // The new chain does not build on our tip: report our tip as reorged away.
        Ok(CanonicalNotification::Reorged { old: vec![prev.clone()], new })
    }
}

/// Most calls in one JSON-RPC batch (geth's default `BatchRequestLimit` is 1000).
const MAX_BATCH_CALLS: usize = 900;

fn upstream_error(method: &str, at: B256, msg: String) -> SourceError {
    if msg.contains("not found") || msg.contains("unknown block") || msg.contains("not available") {
        SourceError::UnknownBlock(at)
    } else {
        SourceError::Upstream(format!("{method}: {msg}"))
    }
}

impl StateSource for UpstreamSource {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        async move {
            self.fetch_block(json!("latest"))
                .await?
                .ok_or_else(|| SourceError::Invalid("no latest block".into()))
        }
        .boxed()
    }

    fn block_by_number(
        &self,
        number: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
        async move {
            if let Some(b) = self.blocks.get(&number).await {
                return Ok(Some(b));
            }
            self.fetch_block(json!(U64::from(number))).await
        }
        .boxed()
    }

    fn account(
        &self,
        at: B256,
        address: Address,
    ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
        async move {
            if let Some(hit) = self.accounts.get(&(at, address)).await {
                metrics::counter!("flashnode_upstream_cache_total", "kind" => "account", "outcome" => "hit").increment(1);
                return Ok(hit);
            }
            metrics::counter!("flashnode_upstream_cache_total", "kind" => "account", "outcome" => "miss").increment(1);
            // Balance, nonce and code in one JSON-RPC batch: one round trip per account.
            let (mut accounts, _) = self.fetch_batch(at, &[address], &[]).await?;
            accounts.pop().ok_or_else(|| SourceError::Invalid("empty batch answer".into()))
        }
        .boxed()
    }

    fn prefetch(
        &self,
        at: B256,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> BoxFuture<'_, Result<(), SourceError>> {
        async move {
            let mut seen = std::collections::HashSet::new();
            let accounts: Vec<Address> = accounts
                .into_iter()
                .filter(|a| seen.insert(*a) && !self.accounts.contains_key(&(at, *a)))
                .collect();
            let mut seen = std::collections::HashSet::new();
            let slots: Vec<(Address, U256)> = slots
                .into_iter()
                .filter(|(a, k)| seen.insert((*a, *k)) && !self.slots.contains_key(&(at, *a, *k)))
                .collect();
            if accounts.is_empty() && slots.is_empty() {
                return Ok(());
            }
            // Counted apart from the cache's hit/miss so the hit rate stays about demand reads.
            metrics::counter!("flashnode_upstream_prefetch_total", "kind" => "account")
                .increment(accounts.len() as u64);
            metrics::counter!("flashnode_upstream_prefetch_total", "kind" => "slot")
                .increment(slots.len() as u64);
            // Chunks keep each batch within what upstreams accept (geth: 1000 calls a batch).
            let per_chunk = MAX_BATCH_CALLS / 3;
            let account_chunks: Vec<&[Address]> = accounts.chunks(per_chunk).collect();
            let slot_chunks: Vec<&[(Address, U256)]> = slots.chunks(MAX_BATCH_CALLS).collect();
            let jobs = account_chunks
                .into_iter()
                .map(|c| (c, &[][..]))
                .chain(slot_chunks.into_iter().map(|c| (&[][..], c)))
                .map(|(a, s)| self.fetch_batch(at, a, s));
            futures::future::try_join_all(jobs).await?;
            Ok(())
        }
        .boxed()
    }

    fn storage(
        &self,
        at: B256,
        address: Address,
        slot: U256,
    ) -> BoxFuture<'_, Result<U256, SourceError>> {
        async move {
            if let Some(hit) = self.slots.get(&(at, address, slot)).await {
                metrics::counter!("flashnode_upstream_cache_total", "kind" => "slot", "outcome" => "hit").increment(1);
                return Ok(hit);
            }
            metrics::counter!("flashnode_upstream_cache_total", "kind" => "slot", "outcome" => "miss").increment(1);
            let block = json!({ "blockHash": at, "requireCanonical": false });
            let raw = self
                .request("eth_getStorageAt", json!([address, slot, block]))
                .await
                .map_err(|e| match e {
                    SourceError::UnknownBlock(_) => SourceError::UnknownBlock(at),
                    other => other,
                })?;
            let value: B256 = serde_json::from_value(raw).map_err(|e| SourceError::Invalid(format!("slot: {e}")))?;
            let value = U256::from_be_bytes(value.0);
            self.slots.insert((at, address, slot), value).await;
            Ok(value)
        }
        .boxed()
    }

    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.notifications.subscribe()
    }
}
