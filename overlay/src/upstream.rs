//! [`StateSource`] over an OP execution client's JSON-RPC (op-reth, op-geth, anvil): reads
//! pinned to a block hash (EIP-1898), cached in moka with a memory bound, and new heads pushed
//! where the upstream pushes them (reth's chain notifications, else `newHeads`) and polled
//! (the fallback and gap filler), with reorg detection.

use crate::{
    carry::{touches_of_prestate_diff, BlockTouches, CarriedState, CARRIED_TOTAL},
    coalesce::{BatchFetch, Coalescer},
    reth::{
        ChainNotification, ExecutionOutcome, CHAIN_NOTIFICATIONS_METHOD, EXECUTION_OUTCOME_METHOD,
    },
};
use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_provider::{
    transport::{RpcError, TransportError},
    Provider, ProviderBuilder, RootProvider,
};
use flashnode_exec::{
    CanonicalBlock, CanonicalNotification, SourceAccount, SourceError, StateSource,
};
use flashnode_tasks::{Backoff, TaskExecutor};
use futures::future::{BoxFuture, FutureExt};
use op_alloy_consensus::{OpReceipt, OpReceiptEnvelope};
use op_alloy_rpc_types::OpTransactionReceipt;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

/// Timeout of each request to the upstream unless configured otherwise (`--upstream-timeout`):
/// long enough for a busy execution client's batch of a few thousand reads.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the upstream is polled for new heads unless configured otherwise
/// (`--upstream-poll-interval`).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

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
    /// Use each new block's state diff (from reth's chain notifications where the upstream
    /// pushes them, else `debug_traceBlockByHash` with the prestate tracer in diff mode, else
    /// `reth_getBlockExecutionOutcome`), so state read at one block is carried to the next
    /// ones it did not touch; off, every block reads state afresh.
    pub state_diffs: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8545".into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            cache_bytes: 256 * 1024 * 1024,
            state_diffs: true,
        }
    }
}

/// The upstream client.
#[derive(Clone)]
pub struct UpstreamSource {
    provider: RootProvider,
    chain_id: u64,
    timeout: Duration,
    // Synchronous caches: read-discovery peeks at them from the executor's thread.
    accounts: moka::sync::Cache<(B256, Address), SourceAccount>,
    slots: moka::sync::Cache<(B256, Address, U256), U256>,
    blocks: moka::future::Cache<u64, Arc<CanonicalBlock>>,
    notifications: broadcast::Sender<CanonicalNotification>,
    /// Reads carried across canonical blocks by their state diffs (#24.1).
    carried: Arc<RwLock<CarriedState>>,
    /// Whether block state diffs are used at all (`--upstream-state-diffs`).
    state_diffs: bool,
    /// Which method gives a block's state diff on this upstream ([`DiffMethod`] as a `u8`:
    /// the trace until refused, then reth's execution outcome, then none).
    diff_method: Arc<AtomicU8>,
    /// Whether to ask for reth's chain notifications (off once the upstream refused them).
    chain_notifications: Arc<AtomicBool>,
    /// Demand misses, coalesced into shared batches (#24.2).
    coalescer: Coalescer,
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
            .map_err(|e| SourceError::transport(format!("cannot connect to {}", config.url), e))?;
        let request = || format!("eth_chainId to {}", config.url);
        let chain_id = tokio::time::timeout(config.request_timeout, provider.get_chain_id())
            .await
            .map_err(|_| SourceError::Timeout { request: request() })?
            .map_err(|e| SourceError::transport(request(), e))?;
        let weigh_account = |_: &(B256, Address), v: &SourceAccount| (96 + v.code.len()) as u32;
        let (notifications, _) = broadcast::channel(256);
        let source = Self {
            provider,
            chain_id,
            timeout: config.request_timeout,
            accounts: moka::sync::Cache::builder()
                .max_capacity(config.cache_bytes / 2)
                .weigher(weigh_account)
                .build(),
            slots: moka::sync::Cache::builder().max_capacity(config.cache_bytes / 2 / 128).build(),
            blocks: moka::future::Cache::builder().max_capacity(1024).build(),
            notifications,
            carried: Arc::new(RwLock::new(CarriedState::default())),
            state_diffs: config.state_diffs,
            diff_method: Arc::new(AtomicU8::new(if config.state_diffs {
                DiffMethod::Trace as u8
            } else {
                DiffMethod::None as u8
            })),
            chain_notifications: Arc::new(AtomicBool::new(true)),
            coalescer: Coalescer::default(),
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

    /// One JSON-RPC call; `at` is the block hash the call is pinned to, if any, so an
    /// unknown-block answer names it.
    async fn request(
        &self,
        method: &'static str,
        params: Value,
        at: Option<B256>,
    ) -> Result<Value, SourceError> {
        retrying_transport(|| async {
            let fut = self.provider.raw_request::<_, Value>(method.into(), params.clone());
            let res = tokio::time::timeout(self.timeout, fut)
                .await
                .map_err(|_| SourceError::Timeout { request: method.into() })?;
            metrics::counter!("flashnode_upstream_requests_total", "method" => method).increment(1);
            res.map_err(|e| classify(method, at, e))
        })
        .await
    }

    /// Reads `accounts` (balance, nonce, code) and `slots` at `at` in one JSON-RPC batch (one
    /// HTTP round trip), caches them, and returns them in order.
    async fn fetch_batch(
        &self,
        at: B256,
        accounts: &[Address],
        slots: &[(Address, U256)],
    ) -> Result<(Vec<SourceAccount>, Vec<U256>), SourceError> {
        retrying_transport(|| self.fetch_batch_once(at, accounts, slots)).await
    }

    /// Reads `accounts` and `slots` at `at` in batches within what upstreams accept (geth: 1000
    /// calls a batch): accounts in batches of their own, slots in others, all in flight at once;
    /// the values in order.
    async fn fetch_chunked(
        &self,
        at: B256,
        accounts: &[Address],
        slots: &[(Address, U256)],
    ) -> Result<(Vec<SourceAccount>, Vec<U256>), SourceError> {
        let jobs = accounts
            .chunks(MAX_BATCH_CALLS / 3)
            .map(|c| (c, &[][..]))
            .chain(slots.chunks(MAX_BATCH_CALLS).map(|c| (&[][..], c)))
            .map(|(a, s)| self.fetch_batch(at, a, s));
        let mut out = (Vec::with_capacity(accounts.len()), Vec::with_capacity(slots.len()));
        for (a, s) in futures::future::try_join_all(jobs).await? {
            out.0.extend(a);
            out.1.extend(s);
        }
        Ok(out)
    }

    /// [`Self::fetch_batch`], one attempt.
    async fn fetch_batch_once(
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
            batch.add_call::<_, Value>(method, &params).map_err(|e| classify(method, Some(at), e))
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
            batch.send().await.map_err(|e| classify("batch", Some(at), e))?;
            let mut out_accounts = Vec::with_capacity(account_waiters.len());
            for (balance, nonce, code) in account_waiters {
                let (balance, nonce, code) = (
                    balance.await.map_err(|e| classify("eth_getBalance", Some(at), e))?,
                    nonce.await.map_err(|e| classify("eth_getTransactionCount", Some(at), e))?,
                    code.await.map_err(|e| classify("eth_getCode", Some(at), e))?,
                );
                out_accounts.push(SourceAccount {
                    balance: parse("balance", balance)?,
                    nonce: parse::<U64>("nonce", nonce)?.to::<u64>(),
                    code: parse::<Bytes>("code", code)?,
                });
            }
            let mut out_slots = Vec::with_capacity(slot_waiters.len());
            for w in slot_waiters {
                let raw = w.await.map_err(|e| classify("eth_getStorageAt", Some(at), e))?;
                let value: B256 = parse("slot", raw)?;
                out_slots.push(U256::from_be_bytes(value.0));
            }
            Ok::<_, SourceError>((out_accounts, out_slots))
        };
        let (out_accounts, out_slots) = tokio::time::timeout(self.timeout, answers)
            .await
            .map_err(|_| SourceError::Timeout { request: "state batch".into() })??;
        for (address, acc) in accounts.iter().zip(&out_accounts) {
            self.accounts.insert((at, *address), acc.clone());
        }
        for ((address, slot), value) in slots.iter().zip(&out_slots) {
            self.slots.insert((at, *address, *slot), *value);
        }
        let mut carried = write(&self.carried);
        for (address, acc) in accounts.iter().zip(&out_accounts) {
            carried.record_account(&at, *address, acc.clone());
        }
        for ((address, slot), value) in slots.iter().zip(&out_slots) {
            carried.record_storage(&at, *address, *slot, *value);
        }
        drop(carried);
        Ok((out_accounts, out_slots))
    }

    async fn fetch_block(&self, id: Value) -> Result<Option<Arc<CanonicalBlock>>, SourceError> {
        let block = self.request("eth_getBlockByNumber", json!([id, false]), None).await?;
        if block.is_null() {
            return Ok(None);
        }
        let header: Header = parse("header", block.clone())?;
        let hash: B256 = parse("block hash", block["hash"].clone())?;
        let tx_hashes: Vec<B256> = parse("tx hashes", block["transactions"].clone())?;
        let receipts =
            if tx_hashes.is_empty() { Vec::new() } else { self.fetch_receipts(hash).await? };
        let block = Arc::new(CanonicalBlock { header, hash, tx_hashes, receipts });
        self.blocks.insert(block.header.number, block.clone()).await;
        Ok(Some(block))
    }

    /// The receipts of block `hash`, in consensus form.
    async fn fetch_receipts(&self, hash: B256) -> Result<Vec<OpReceipt>, SourceError> {
        let raw = self.request("eth_getBlockReceipts", json!([hash]), Some(hash)).await?;
        let receipts: Vec<OpTransactionReceipt> = parse("receipts", raw)?;
        Ok(receipts
            .into_iter()
            .map(|r| OpReceipt::from(OpReceiptEnvelope::<alloy_primitives::Log>::from(r)))
            .collect())
    }

    /// A stream of the upstream's pushed heads where it speaks pub/sub (a ws:// URL): reth's
    /// `reth_subscribeChainNotifications` (blocks with their execution outcome) unless it was
    /// refused once, else `eth_subscribe("newHeads")`. `None` over HTTP, or when the upstream
    /// refuses both.
    async fn pushed_heads(&self) -> Option<Pushed> {
        use futures::StreamExt;
        if self.chain_notifications.load(Ordering::Relaxed) {
            let sub = self.provider.subscribe_to::<ChainNotification>(CHAIN_NOTIFICATIONS_METHOD);
            match tokio::time::timeout(self.timeout, sub).await {
                Ok(Ok(sub)) => {
                    set_head_source(HeadSource::ChainNotifications);
                    return Some(Pushed::Chain(sub.into_result_stream().boxed()));
                }
                Ok(Err(RpcError::ErrorResp(p))) if NOT_SERVED.contains(&p.code) => {
                    self.chain_notifications.store(false, Ordering::Relaxed);
                    debug!(code = p.code, message = %p.message, "the upstream has no reth chain notifications (op-reth: --ws.api …,reth); newHeads");
                }
                Ok(Err(err)) => debug!(%err, "subscribing to reth chain notifications failed"),
                Err(_) => debug!("subscribing to reth chain notifications timed out"),
            }
        }
        let sub = tokio::time::timeout(self.timeout, self.provider.subscribe_blocks()).await;
        match sub {
            Ok(Ok(sub)) => {
                set_head_source(HeadSource::NewHeads);
                Some(Pushed::Heads(sub.into_stream().map(|_| ()).boxed()))
            }
            Ok(Err(err)) => {
                debug!(%err, "the upstream pushes no heads; polling");
                set_head_source(HeadSource::Poll);
                None
            }
            Err(_) => {
                set_head_source(HeadSource::Poll);
                None
            }
        }
    }

    /// Follows the upstream's head: polled every `interval`, and at once on each pushed head
    /// where the upstream pushes them (a lost subscription is asked for again every 5 s,
    /// polling going on meanwhile). Blocks that come in reth's chain notifications are
    /// followed from the notification, their state diff with them; a head the poll sees first
    /// waits [`NOTIFICATION_GRACE`] for its notification before the poll follows it itself
    /// (a notification reth dropped), and a subscription that lets the poll fill in for
    /// [`PUSH_RESUBSCRIBE`] is dropped and asked for again.
    async fn poll_heads(self, interval: Duration, cancel: CancellationToken) {
        use futures::StreamExt;
        let mut tip: Option<Arc<CanonicalBlock>> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        let pubsub = self.provider.client().pubsub_frontend().is_some();
        if !pubsub {
            set_head_source(HeadSource::Poll);
        }
        let mut pushed = if pubsub { self.pushed_heads().await } else { None };
        let mut resubscribe_at = tokio::time::Instant::now() + PUSH_RESUBSCRIBE;
        // Since when the polled head is ahead of the tip while chain notifications are on.
        let mut behind_since: Option<tokio::time::Instant> = None;
        let mut last_notified = tokio::time::Instant::now();
        // Notifications that did not parse since the last one that did, and whether this
        // subscription's block hashes were checked against the upstream's.
        let mut malformed = 0u32;
        let mut verified = false;
        loop {
            let head_pushed = async {
                match pushed.as_mut() {
                    Some(Pushed::Chain(s)) => s.next().await.map(Some),
                    Some(Pushed::Heads(s)) => s.next().await.map(|()| None),
                    None => std::future::pending().await,
                }
            };
            let mut source = HeadSource::Poll;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
                head = head_pushed => match head {
                    Some(Some(Ok(notification))) => {
                        metrics::counter!("flashnode_upstream_heads_pushed_total").increment(1);
                        last_notified = tokio::time::Instant::now();
                        behind_since = None;
                        malformed = 0;
                        if !verified {
                            match self.hashes_agree(&notification).await {
                                Some(true) => verified = true,
                                Some(false) => {
                                    // A header field this build does not know changes the hash:
                                    // every block would look like a reorg. newHeads instead.
                                    warn!("reth chain notifications give block hashes that differ from the upstream's; following newHeads instead");
                                    self.chain_notifications.store(false, Ordering::Relaxed);
                                    set_head_source(HeadSource::Poll);
                                    pushed = None;
                                    resubscribe_at = tokio::time::Instant::now();
                                    continue;
                                }
                                // Not checked (the upstream did not answer): the poll follows.
                                None => continue,
                            }
                        }
                        self.follow_notification(notification, &mut tip).await;
                        continue;
                    }
                    Some(Some(Err(err))) => {
                        // The poll fills in for it after the grace.
                        metrics::counter!("flashnode_upstream_chain_notifications_malformed_total").increment(1);
                        debug!(%err, "a reth chain notification that does not parse");
                        malformed += 1;
                        if malformed >= MAX_MALFORMED_NOTIFICATIONS {
                            warn!(malformed, "reth chain notifications do not parse (a newer shape?); following newHeads instead");
                            self.chain_notifications.store(false, Ordering::Relaxed);
                            set_head_source(HeadSource::Poll);
                            pushed = None;
                            resubscribe_at = tokio::time::Instant::now();
                        }
                        continue;
                    }
                    Some(None) => {
                        metrics::counter!("flashnode_upstream_heads_pushed_total").increment(1);
                        source = HeadSource::NewHeads;
                    }
                    None => {
                        debug!("the upstream's head subscription ended; polling");
                        set_head_source(HeadSource::Poll);
                        pushed = None;
                    }
                },
            }
            if pubsub && pushed.is_none() && tokio::time::Instant::now() >= resubscribe_at {
                resubscribe_at = tokio::time::Instant::now() + PUSH_RESUBSCRIBE;
                pushed = self.pushed_heads().await;
                last_notified = tokio::time::Instant::now();
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
                // Nothing is known of what came before: values read from here on are carried.
                write(&self.carried).commit(latest.header.number, latest.hash, None);
                tip = Some(latest);
                continue;
            };
            if latest.hash == prev.hash {
                behind_since = None;
                continue;
            }
            if matches!(pushed, Some(Pushed::Chain(_))) {
                // The notification brings the block with its diff: wait for it a little.
                let now = tokio::time::Instant::now();
                let since = *behind_since.get_or_insert(now);
                if now.duration_since(since) < NOTIFICATION_GRACE {
                    continue;
                }
                metrics::counter!("flashnode_upstream_chain_notifications_missed_total")
                    .increment(1);
                if now.duration_since(last_notified) >= PUSH_RESUBSCRIBE {
                    debug!("the chain notification subscription is silent; subscribing again");
                    set_head_source(HeadSource::Poll);
                    pushed = None;
                    resubscribe_at = now;
                }
            }
            match self.advance(&prev, latest.clone()).await {
                Ok(n) => {
                    // Announced first: carrying waits for the diffs, and a block not committed
                    // to the carried state yet is never served from it nor recorded in it.
                    count_heads(source, &n);
                    let _ = self.notifications.send(n.clone());
                    self.carry_to(&n, HashMap::new()).await;
                    tip = Some(latest);
                    behind_since = None;
                }
                Err(err) => debug!(%err, "could not walk to the new head; retrying"),
            }
        }
    }

    /// Follows one of reth's chain notifications: a commit that builds on the tip is announced
    /// and carried with the diffs it brings (no trace asked); one after a gap (notifications
    /// reth dropped) walks to its last block as a polled head does, the missed blocks fetched
    /// and their diffs asked for; a reorg or a revert is announced as such.
    async fn follow_notification(
        &self,
        notification: ChainNotification,
        tip: &mut Option<Arc<CanonicalBlock>>,
    ) {
        match notification {
            ChainNotification::Commit { new } => {
                let mut blocks = new.into_blocks();
                if let Some(prev) = tip.as_ref() {
                    // Blocks followed already (the poll filled in), or stale: not completed.
                    blocks.retain(|b| b.block.header.number > prev.header.number);
                }
                let Some((new, known)) = self.notified_blocks(blocks).await else { return };
                let Some(last) = new.last().cloned() else { return };
                let Some(prev) = tip.clone() else {
                    write(&self.carried).commit(last.header.number, last.hash, None);
                    *tip = Some(last);
                    return;
                };
                let links = new.first().is_some_and(|f| {
                    f.header.number == prev.header.number + 1 && f.header.parent_hash == prev.hash
                });
                let n = if links {
                    CanonicalNotification::Committed { new }
                } else {
                    metrics::counter!("flashnode_upstream_chain_notifications_gaps_total")
                        .increment(1);
                    match self.advance(&prev, last.clone()).await {
                        Ok(n) => n,
                        Err(err) => {
                            debug!(%err, "could not walk to the notified head; the poll retries");
                            return;
                        }
                    }
                };
                count_heads(HeadSource::ChainNotifications, &n);
                let _ = self.notifications.send(n.clone());
                self.carry_to(&n, known).await;
                *tip = Some(last);
            }
            ChainNotification::Reorg { old, new } => {
                let new = new.into_blocks();
                if let (Some(t), Some(last)) = (tip.as_ref(), new.last()) {
                    if t.header.number >= last.block.header.number {
                        // The poll followed past it already, reorg included (its walk checks
                        // parent links): announcing it again would move the tip back.
                        return;
                    }
                }
                let old = self.reorged_out(old.into_blocks()).await;
                let Some((new, known)) = self.notified_blocks(new).await else { return };
                let n = if new.is_empty() {
                    let Some(first) = old.first() else { return };
                    // The tip is the block the revert went back to.
                    *tip = match first.header.number.checked_sub(1) {
                        Some(parent) => {
                            self.fetch_block(json!(U64::from(parent))).await.ok().flatten()
                        }
                        None => None,
                    };
                    CanonicalNotification::Reverted { old }
                } else {
                    *tip = new.last().cloned();
                    CanonicalNotification::Reorged { old, new }
                };
                count_heads(HeadSource::ChainNotifications, &n);
                let _ = self.notifications.send(n.clone());
                self.carry_to(&n, known).await;
            }
        }
    }

    /// The canonical blocks of a notification (receipts fetched for a block whose receipts
    /// did not come with it) and what each touched, by hash; `None` when one of them cannot be
    /// completed (not fetched, no longer canonical, receipts not fetched): then nothing is
    /// announced from it and the poll follows those blocks, so a block is never announced
    /// without its transactions (reconcile would take it for a reorg of every one).
    async fn notified_blocks(
        &self,
        blocks: Vec<crate::reth::NotifiedBlock>,
    ) -> Option<(Vec<Arc<CanonicalBlock>>, HashMap<B256, BlockTouches>)> {
        let mut out = Vec::with_capacity(blocks.len());
        let mut touches = HashMap::with_capacity(blocks.len());
        for mut b in blocks {
            if !b.has_tx_hashes {
                // Fetched whole (the hash checked: a block fetched by number may be another).
                let number = json!(U64::from(b.block.header.number));
                match self.fetch_block(number).await {
                    Ok(Some(fetched)) if fetched.hash == b.block.hash => {
                        b.block = CanonicalBlock::clone(&fetched);
                        b.has_receipts = true;
                    }
                    Ok(_) => {
                        debug!(block = %b.block.hash, "a notified block is no longer canonical");
                        return None;
                    }
                    Err(err) => {
                        debug!(%err, block = %b.block.hash, "fetching a notified block");
                        return None;
                    }
                }
            }
            if !b.has_receipts && !b.block.tx_hashes.is_empty() {
                match self.fetch_receipts(b.block.hash).await {
                    Ok(r) => b.block.receipts = r,
                    Err(err) => {
                        debug!(%err, block = %b.block.hash, "the receipts of a notified block");
                        return None;
                    }
                }
            }
            touches.insert(b.block.hash, b.touches);
            out.push(Arc::new(b.block));
        }
        for block in &out {
            self.blocks.insert(block.header.number, block.clone()).await;
        }
        Some((out, touches))
    }

    /// The blocks a reorg or a revert took out, as the notification gives them (nothing
    /// fetched), forgotten by the block cache: a number the new chain does not reach again
    /// must not answer with a block that is no longer canonical.
    async fn reorged_out(
        &self,
        blocks: Vec<crate::reth::NotifiedBlock>,
    ) -> Vec<Arc<CanonicalBlock>> {
        let mut out = Vec::with_capacity(blocks.len());
        for b in blocks {
            self.blocks.invalidate(&b.block.header.number).await;
            out.push(Arc::new(b.block));
        }
        out
    }

    /// Whether the block hashes a notification gives (keccak of its headers: reth does not
    /// send them) are the upstream's, asking for its last block by number. `Some(false)`: the
    /// upstream has that very block (same parent, state and transactions roots) under another
    /// hash, so a header field this build does not parse changes the hash. `None`: not told
    /// (no answer, or another block there since).
    async fn hashes_agree(&self, notification: &ChainNotification) -> Option<bool> {
        let header = match notification {
            ChainNotification::Commit { new } | ChainNotification::Reorg { new, .. } => {
                new.last_header()?
            }
        };
        let hash = header.hash_slow();
        match self.fetch_block(json!(U64::from(header.number))).await {
            Ok(Some(b)) if b.hash == hash => Some(true),
            Ok(Some(b))
                if b.header.parent_hash == header.parent_hash
                    && b.header.state_root == header.state_root
                    && b.header.transactions_root == header.transactions_root =>
            {
                Some(false)
            }
            _ => None,
        }
    }

    /// Brings the carried state along `n`'s new blocks: each block's touches from `known` (the
    /// diffs a chain notification brought), else from its state diff asked of the upstream,
    /// else a barrier; a reorg starts it over.
    async fn carry_to(&self, n: &CanonicalNotification, mut known: HashMap<B256, BlockTouches>) {
        let new = match n {
            CanonicalNotification::Committed { new } => new,
            CanonicalNotification::Reorged { new, .. } => {
                if let Some(first) = new.first() {
                    write(&self.carried).reset(first.header.number);
                }
                new
            }
            CanonicalNotification::Reverted { old } => {
                if let Some(first) = old.first() {
                    write(&self.carried).reset(first.header.number);
                }
                return;
            }
        };
        for block in new {
            let touches = match known.remove(&block.hash) {
                Some(t) if self.state_diffs => {
                    metrics::counter!(DIFFS_TOTAL, "source" => "chain_notification", "outcome" => "ok")
                        .increment(1);
                    Some(t)
                }
                Some(_) => None,
                None => self.block_touches(block.hash).await,
            };
            write(&self.carried).commit(block.header.number, block.hash, touches);
        }
        let (accounts, slots) = read(&self.carried).len();
        metrics::gauge!("flashnode_upstream_carried_keys", "kind" => "account")
            .set(accounts as f64);
        metrics::gauge!("flashnode_upstream_carried_keys", "kind" => "slot").set(slots as f64);
    }

    /// What block `hash` touched, from the upstream's prestate-tracer diff, or where the
    /// upstream refuses that (-32601/-32602), from reth's `reth_getBlockExecutionOutcome`
    /// (which method works is remembered); `None` when diffs are off, the upstream gives
    /// neither (then it is not asked again) or it failed.
    async fn block_touches(&self, hash: B256) -> Option<BlockTouches> {
        loop {
            let method = self.diff_method.load(Ordering::Relaxed);
            let answer = if method == DiffMethod::Trace as u8 {
                self.traced_touches(hash).await
            } else if method == DiffMethod::ExecutionOutcome as u8 {
                self.outcome_touches(hash).await
            } else {
                return None;
            };
            match answer {
                Ok(touches) => return touches,
                Err(Refused { code, message }) => {
                    let next = if method == DiffMethod::Trace as u8 {
                        debug!(code, %message, "debug_traceBlockByHash refused; trying reth_getBlockExecutionOutcome");
                        DiffMethod::ExecutionOutcome
                    } else {
                        warn!(code, %message, "the upstream gives no block state diffs (debug_traceBlockByHash with the prestate tracer, reth_getBlockExecutionOutcome, reth chain notifications): state is read afresh at each block");
                        DiffMethod::None
                    };
                    self.diff_method.store(next as u8, Ordering::Relaxed);
                }
            }
        }
    }

    /// A block's touches from `debug_traceBlockByHash` (prestate tracer, diff mode).
    async fn traced_touches(&self, hash: B256) -> Result<Option<BlockTouches>, Refused> {
        let params =
            json!([hash, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}}]);
        self.diff_request("debug_traceBlockByHash", "debug_trace", params, hash, |answer| {
            touches_of_prestate_diff(answer)
        })
        .await
    }

    /// A block's touches from reth's `reth_getBlockExecutionOutcome` (its bundle state).
    async fn outcome_touches(&self, hash: B256) -> Result<Option<BlockTouches>, Refused> {
        self.diff_request(EXECUTION_OUTCOME_METHOD, "execution_outcome", json!([hash]), hash, |a| {
            serde_json::from_value::<ExecutionOutcome>(a.clone()).ok().map(|o| o.block_touches())
        })
        .await
    }

    /// Asks `method` for block `hash`'s diff within [`DIFF_TIMEOUT`] and reads it with `touches`;
    /// `Err` when the upstream does not serve it. Outcomes count under `source`.
    async fn diff_request(
        &self,
        method: &'static str,
        source: &'static str,
        params: Value,
        hash: B256,
        touches: impl FnOnce(&Value) -> Option<BlockTouches>,
    ) -> Result<Option<BlockTouches>, Refused> {
        let fut = self.provider.raw_request::<_, Value>(method.into(), params);
        metrics::counter!("flashnode_upstream_requests_total", "method" => method).increment(1);
        let outcome = match tokio::time::timeout(DIFF_TIMEOUT.min(self.timeout), fut).await {
            Ok(Ok(answer)) => match touches(&answer) {
                Some(t) => {
                    metrics::counter!(DIFFS_TOTAL, "source" => source, "outcome" => "ok")
                        .increment(1);
                    return Ok(Some(t));
                }
                None => "malformed",
            },
            Ok(Err(RpcError::ErrorResp(p))) if NOT_SERVED.contains(&p.code) => {
                metrics::counter!(DIFFS_TOTAL, "source" => source, "outcome" => "unsupported")
                    .increment(1);
                return Err(Refused { code: p.code, message: p.message.into_owned() });
            }
            Ok(Err(err)) => {
                debug!(%err, block = %hash, method, "block state diff failed");
                "failed"
            }
            Err(_) => "timeout",
        };
        metrics::counter!(DIFFS_TOTAL, "source" => source, "outcome" => outcome).increment(1);
        Ok(None)
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
                .ok_or(SourceError::Missing("parent block"))?;
            // The upstream reorged while we walked: try again from its new head.
            if parent.hash != cursor.header.parent_hash {
                return Err(SourceError::Missing("a parent that links (the upstream reorged)"));
            }
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

impl BatchFetch for UpstreamSource {
    /// One batch, or (past what upstreams take in one) several in flight at once.
    async fn fetch(
        &self,
        at: B256,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> Result<(Vec<SourceAccount>, Vec<U256>), SourceError> {
        if accounts.len() * 3 + slots.len() <= MAX_BATCH_CALLS {
            return self.fetch_batch(at, &accounts, &slots).await;
        }
        self.fetch_chunked(at, &accounts, &slots).await
    }
}

/// Longest wait for a block's state diff: past it the block is a barrier for carried state
/// (the canonical notification waits for the diff, so it must not wait long).
const DIFF_TIMEOUT: Duration = Duration::from_secs(1);

/// JSON-RPC codes of an upstream that does not serve a method: method not found (no `debug`
/// or `reth` namespace), invalid params (no prestate tracer or no diff mode).
const NOT_SERVED: [i64; 2] = [-32601, -32602];

/// Metric: block state diffs, by `source` (`chain_notification`: came with reth's chain
/// notification; `debug_trace`: `debug_traceBlockByHash`; `execution_outcome`:
/// `reth_getBlockExecutionOutcome`) and `outcome` (`ok`, `malformed`, `unsupported`, `failed`,
/// `timeout`).
pub const DIFFS_TOTAL: &str = "flashnode_upstream_state_diffs_total";

/// Metric: canonical blocks followed, by the `source` that brought them
/// (`reth_chain_notifications`, `new_heads`: a pushed head fetched, `poll`).
pub const HEADS_TOTAL: &str = "flashnode_upstream_heads_total";

/// Metric (gauge): 1 for the head source in use (`reth_chain_notifications`, `new_heads`,
/// `poll`: no subscription), 0 for the others.
pub const HEAD_SOURCE: &str = "flashnode_upstream_head_source";

/// Chain notifications in a row that do not parse before the node stops asking for them
/// (an upstream speaking a newer shape) and follows `newHeads`.
const MAX_MALFORMED_NOTIFICATIONS: u32 = 3;

/// How long a head the poll sees ahead of the tip waits for its chain notification before the
/// poll follows it itself (reth drops the notifications of a lagging subscriber).
const NOTIFICATION_GRACE: Duration = Duration::from_secs(1);

/// A head subscription.
enum Pushed {
    /// reth's chain notifications: the blocks and their execution outcome.
    Chain(futures::stream::BoxStream<'static, Result<ChainNotification, serde_json::Error>>),
    /// `newHeads`: a new head to fetch.
    Heads(futures::stream::BoxStream<'static, ()>),
}

/// Where the head follower learns of new blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeadSource {
    ChainNotifications,
    NewHeads,
    Poll,
}

impl HeadSource {
    const ALL: [Self; 3] = [Self::ChainNotifications, Self::NewHeads, Self::Poll];

    fn label(self) -> &'static str {
        match self {
            Self::ChainNotifications => "reth_chain_notifications",
            Self::NewHeads => "new_heads",
            Self::Poll => "poll",
        }
    }
}

/// Marks `current` as the head source in use.
fn set_head_source(current: HeadSource) {
    for s in HeadSource::ALL {
        metrics::gauge!(HEAD_SOURCE, "source" => s.label()).set(if s == current {
            1.0
        } else {
            0.0
        });
    }
}

/// Counts the blocks `n` adds as followed through `source`.
fn count_heads(source: HeadSource, n: &CanonicalNotification) {
    let added = match n {
        CanonicalNotification::Committed { new } | CanonicalNotification::Reorged { new, .. } => {
            new.len()
        }
        CanonicalNotification::Reverted { .. } => 0,
    };
    metrics::counter!(HEADS_TOTAL, "source" => source.label()).increment(added as u64);
}

/// Which upstream method gives a block's state diff.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiffMethod {
    /// `debug_traceBlockByHash`, prestate tracer in diff mode (op-reth, op-geth, anvil).
    Trace = 0,
    /// reth's `reth_getBlockExecutionOutcome` (reth 2.0 on, `reth` namespace).
    ExecutionOutcome = 1,
    /// None: a block not brought by a chain notification is a barrier.
    None = 2,
}

/// The upstream does not serve a diff method (its JSON-RPC code and message).
#[derive(Debug)]
struct Refused {
    code: i64,
    message: String,
}

/// The carried state for reading (a poisoned lock still holds consistent maps: every update is
/// a plain insert or clear).
fn read(c: &RwLock<CarriedState>) -> std::sync::RwLockReadGuard<'_, CarriedState> {
    c.read().unwrap_or_else(|e| e.into_inner())
}

/// The carried state for updating.
fn write(c: &RwLock<CarriedState>) -> std::sync::RwLockWriteGuard<'_, CarriedState> {
    c.write().unwrap_or_else(|e| e.into_inner())
}

/// How often a lost head subscription is asked for again.
const PUSH_RESUBSCRIBE: Duration = Duration::from_secs(5);

/// Attempts after the first for a read that failed in transport (a keep-alive connection the
/// upstream closed mid-request, a reset): reads are idempotent, and a blip must not cost the
/// rest of the block (#25.4). Timeouts and JSON-RPC errors are not retried.
pub const TRANSPORT_RETRIES: u32 = 2;

/// Runs `attempt`, again after 10 ms and 50 ms when it fails in transport.
async fn retrying_transport<T, F, Fut>(mut attempt: F) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let mut backoff =
        Backoff::new(Duration::from_millis(10), Duration::from_millis(50)).with_factor(5.0);
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(SourceError::Transport { .. }) if retries < TRANSPORT_RETRIES => {
                retries += 1;
                metrics::counter!("flashnode_upstream_retries_total").increment(1);
                tokio::time::sleep(backoff.next_delay()).await;
            }
            res => return res,
        }
    }
}

/// Most calls in one JSON-RPC batch (geth's default `BatchRequestLimit` is 1000).
const MAX_BATCH_CALLS: usize = 900;

/// JSON-RPC error code of a missing resource (EIP-1474; EIP-1898 asks for it when a block
/// named by hash is unknown): op-reth, anvil and the devnet answer it.
const RESOURCE_NOT_FOUND: i64 = -32001;

/// Messages op-geth answers with its generic -32000 code when the block a read names is
/// unknown (`header not found` by number, `header for hash not found` by hash).
const GETH_UNKNOWN_BLOCK: [&str; 3] =
    ["header not found", "header for hash not found", "unknown block"];

/// Whether an upstream's JSON-RPC error says the block a read was pinned to is unknown.
fn is_unknown_block(code: i64, message: &str) -> bool {
    code == RESOURCE_NOT_FOUND || (code == -32000 && GETH_UNKNOWN_BLOCK.contains(&message))
}

/// Types a transport-layer failure of `method`: an unknown block (when the call was pinned to
/// `at`), another JSON-RPC error, a malformed answer, or the transport itself.
fn classify(method: &'static str, at: Option<B256>, e: TransportError) -> SourceError {
    match e {
        RpcError::ErrorResp(p) => match at {
            Some(at) if is_unknown_block(p.code, &p.message) => SourceError::UnknownBlock(at),
            _ => SourceError::Rpc { method, code: p.code, message: p.message.into_owned() },
        },
        RpcError::DeserError { err, .. } => SourceError::decode(method, err),
        other => SourceError::transport(method, other),
    }
}

/// Parses one field of an upstream answer.
fn parse<T: serde::de::DeserializeOwned>(what: &'static str, v: Value) -> Result<T, SourceError> {
    serde_json::from_value(v).map_err(|e| SourceError::decode(what, e))
}

impl StateSource for UpstreamSource {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        async move {
            self.fetch_block(json!("latest")).await?.ok_or(SourceError::Missing("latest block"))
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
            if let Some(hit) = self.accounts.get(&(at, address)) {
                metrics::counter!("flashnode_upstream_cache_total", "kind" => "account", "outcome" => "hit").increment(1);
                return Ok(hit);
            }
            if let Some(hit) = read(&self.carried).account(&at, &address) {
                metrics::counter!(CARRIED_TOTAL, "kind" => "account").increment(1);
                return Ok(hit);
            }
            metrics::counter!("flashnode_upstream_cache_total", "kind" => "account", "outcome" => "miss").increment(1);
            // Balance, nonce and code in the batch of whatever else misses meanwhile.
            self.coalescer.account(self, at, address).await
        }
        .boxed()
    }

    fn cached_account(&self, at: B256, address: Address) -> Option<SourceAccount> {
        self.accounts.get(&(at, address)).or_else(|| read(&self.carried).account(&at, &address))
    }

    fn cached_storage(&self, at: B256, address: Address, slot: U256) -> Option<U256> {
        self.slots
            .get(&(at, address, slot))
            .or_else(|| read(&self.carried).storage(&at, &address, &slot))
    }

    fn prefetch(
        &self,
        at: B256,
        accounts: Vec<Address>,
        slots: Vec<(Address, U256)>,
    ) -> BoxFuture<'_, Result<(), SourceError>> {
        async move {
            let (accounts, slots) = {
                let mut seen = std::collections::HashSet::new();
                let carried = read(&self.carried);
                let accounts: Vec<Address> = accounts
                    .into_iter()
                    .filter(|a| {
                        seen.insert(*a)
                            && !self.accounts.contains_key(&(at, *a))
                            && carried.account(&at, a).is_none()
                    })
                    .collect();
                let mut seen = std::collections::HashSet::new();
                let slots: Vec<(Address, U256)> = slots
                    .into_iter()
                    .filter(|(a, k)| {
                        seen.insert((*a, *k))
                            && !self.slots.contains_key(&(at, *a, *k))
                            && carried.storage(&at, a, k).is_none()
                    })
                    .collect();
                (accounts, slots)
            };
            if accounts.is_empty() && slots.is_empty() {
                return Ok(());
            }
            // Counted apart from the cache's hit/miss so the hit rate stays about demand reads.
            metrics::counter!("flashnode_upstream_prefetch_total", "kind" => "account")
                .increment(accounts.len() as u64);
            metrics::counter!("flashnode_upstream_prefetch_total", "kind" => "slot")
                .increment(slots.len() as u64);
            self.fetch_chunked(at, &accounts, &slots).await?;
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
            if let Some(hit) = self.slots.get(&(at, address, slot)) {
                metrics::counter!("flashnode_upstream_cache_total", "kind" => "slot", "outcome" => "hit").increment(1);
                return Ok(hit);
            }
            if let Some(hit) = read(&self.carried).storage(&at, &address, &slot) {
                metrics::counter!(CARRIED_TOTAL, "kind" => "slot").increment(1);
                return Ok(hit);
            }
            metrics::counter!("flashnode_upstream_cache_total", "kind" => "slot", "outcome" => "miss").increment(1);
            self.coalescer.storage(self, at, address, slot).await
        }
        .boxed()
    }

    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.notifications.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    /// Blocks the mock upstream treats specially.
    const KNOWN: B256 = B256::repeat_byte(0x11);
    const OTHER: B256 = B256::repeat_byte(0x12);
    const UNKNOWN: B256 = B256::repeat_byte(0xdd);
    const GETH_UNKNOWN: B256 = B256::repeat_byte(0xde);
    const BROKEN: B256 = B256::repeat_byte(0xbb);
    const GARBAGE: B256 = B256::repeat_byte(0x9a);
    const SLOW: B256 = B256::repeat_byte(0x51);
    const A: Address = Address::repeat_byte(0xa);
    const B: Address = Address::repeat_byte(0xb);

    /// The methods the mock was asked for state, in order (batches flattened).
    type Seen = Arc<Mutex<Vec<&'static str>>>;

    fn seen(s: &Seen) -> Vec<&'static str> {
        s.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// One JSON-RPC answer: the result or error, and how long to wait before sending it.
    fn answer(request: &Value, seen: &Seen) -> (Value, Duration) {
        let method = request["method"].as_str().unwrap_or_default();
        let at: Option<B256> = request["params"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(|b| serde_json::from_value(b["blockHash"].clone()).ok());
        let state = match method {
            "eth_getBalance" => Some(("eth_getBalance", json!("0x64"))),
            "eth_getTransactionCount" => Some(("eth_getTransactionCount", json!("0x3"))),
            "eth_getCode" => Some(("eth_getCode", json!("0x6001"))),
            "eth_getStorageAt" => Some(("eth_getStorageAt", json!(B256::with_last_byte(7)))),
            _ => None,
        };
        let mut delay = Duration::ZERO;
        let diff = matches!(method, "debug_traceBlockByHash" | "reth_getBlockExecutionOutcome");
        if diff {
            if let Ok(mut s) = seen.lock() {
                s.push(if method == "debug_traceBlockByHash" {
                    "debug_traceBlockByHash"
                } else {
                    "reth_getBlockExecutionOutcome"
                });
            }
        }
        let outcome = match (method, state) {
            ("eth_chainId", _) => Ok(json!("0x385")),
            // An upstream without the debug namespace, with reth's.
            ("debug_traceBlockByHash", _) => Err((-32601, "Method not found")),
            ("reth_getBlockExecutionOutcome", _) => Ok(json!({
                "bundle": {"state": {format!("{A}"): {"info": {"balance": "0x1", "nonce": 1,
                    "code_hash": B256::ZERO, "code": null}, "original_info": null,
                    "storage": {"0x7": {"previous_or_original_value": "0x0", "present_value": "0x1"}},
                    "status": "Changed"}},
                    "contracts": {}, "reverts": [[]], "state_size": 1, "reverts_size": 0},
                "receipts": [[]], "first_block": 5, "requests": [[]]
            })),
            (_, Some((name, value))) => {
                if let Ok(mut s) = seen.lock() {
                    s.push(name);
                }
                match at {
                    Some(UNKNOWN) => Err((-32001, "block not found")),
                    Some(GETH_UNKNOWN) => Err((-32000, "header for hash not found")),
                    Some(BROKEN) => Err((-32000, "missing trie node 0xabc")),
                    Some(GARBAGE) => Ok(json!("not hex")),
                    Some(SLOW) => {
                        delay = Duration::from_secs(3);
                        Ok(value)
                    }
                    _ => Ok(value),
                }
            }
            // Head polling: no block yet.
            _ => Ok(Value::Null),
        };
        let id = request["id"].clone();
        let reply = match outcome {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, message)) => {
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
            }
        };
        (reply, delay)
    }

    /// Answers HTTP/1.1 JSON-RPC requests (single and batched) on one connection.
    async fn connection(mut sock: TcpStream, seen: Seen) {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 8192];
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or_default();
            while buf.len() < end + len {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Value = serde_json::from_slice(&buf[end..end + len]).unwrap_or_default();
            buf.drain(..end + len);
            let (reply, delay) = match &body {
                Value::Array(requests) => {
                    let answers: Vec<_> = requests.iter().map(|r| answer(r, &seen)).collect();
                    let delay = answers.iter().map(|(_, d)| *d).max().unwrap_or_default();
                    (Value::Array(answers.into_iter().map(|(r, _)| r).collect()), delay)
                }
                single => answer(single, &seen),
            };
            tokio::time::sleep(delay).await;
            let reply = reply.to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                reply.len()
            );
            if sock.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// A mock execution client on a loopback port, and the source connected to it.
    async fn upstream(cancel: &CancellationToken) -> (UpstreamSource, Seen) {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let url =
            format!("http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
        let seen: Seen = Default::default();
        let served = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, served.clone()));
            }
        });
        let config = UpstreamConfig {
            url,
            poll_interval: Duration::from_secs(3600),
            request_timeout: Duration::from_millis(500),
            cache_bytes: 1 << 20,
            state_diffs: true,
        };
        match UpstreamSource::connect(
            config,
            cancel.clone(),
            &flashnode_tasks::TaskManager::new().executor(),
        )
        .await
        {
            Ok(source) => (source, seen),
            Err(e) => panic!("connect: {e}"),
        }
    }

    #[tokio::test]
    async fn reads_are_batched_and_cached_per_block() {
        let cancel = CancellationToken::new();
        let (up, seen_by) = upstream(&cancel).await;
        assert_eq!(up.chain_id(), 901);
        let want =
            SourceAccount { balance: U256::from(100), nonce: 3, code: vec![0x60, 0x01].into() };
        assert_eq!(up.account(KNOWN, A).await.ok(), Some(want.clone()));
        assert_eq!(up.account(KNOWN, A).await.ok(), Some(want.clone()));
        assert_eq!(
            seen(&seen_by),
            vec!["eth_getBalance", "eth_getTransactionCount", "eth_getCode"]
        );
        assert_eq!(up.storage(KNOWN, A, U256::from(1)).await.ok(), Some(U256::from(7)));
        assert_eq!(up.storage(KNOWN, A, U256::from(1)).await.ok(), Some(U256::from(7)));
        assert_eq!(seen(&seen_by).len(), 4, "one storage read");
        // Another block is another cache entry.
        assert_eq!(up.account(OTHER, A).await.ok(), Some(want));
        assert_eq!(seen(&seen_by).len(), 7);
        // A prefetch asks only for what is not cached, once each, and warms the cache.
        let fetched = up
            .prefetch(
                KNOWN,
                vec![A, B, B],
                vec![(A, U256::from(1)), (A, U256::from(2)), (A, U256::from(2))],
            )
            .await;
        assert!(fetched.is_ok(), "{fetched:?}");
        assert_eq!(
            seen(&seen_by)[7..],
            ["eth_getBalance", "eth_getTransactionCount", "eth_getCode", "eth_getStorageAt"]
        );
        assert!(up.account(KNOWN, B).await.is_ok());
        assert!(up.storage(KNOWN, A, U256::from(2)).await.is_ok());
        assert_eq!(seen(&seen_by).len(), 11, "the prefetched reads are cache hits");
        cancel.cancel();
    }

    #[tokio::test]
    async fn errors_are_typed_and_an_unknown_block_keeps_its_hash() {
        let cancel = CancellationToken::new();
        let (up, seen_by) = upstream(&cancel).await;
        // op-reth, anvil and the devnet: -32001; op-geth: -32000 with its message.
        assert!(
            matches!(up.account(UNKNOWN, A).await, Err(SourceError::UnknownBlock(h)) if h == UNKNOWN)
        );
        assert!(matches!(
            up.storage(GETH_UNKNOWN, A, U256::ZERO).await,
            Err(SourceError::UnknownBlock(h)) if h == GETH_UNKNOWN
        ));
        match up.account(BROKEN, A).await {
            Err(e @ SourceError::Rpc { code: -32000, .. }) => assert_eq!(
                e.to_string(),
                "upstream error: eth_getBalance: server returned an error response: error code -32000: missing trie node 0xabc"
            ),
            other => panic!("expected the upstream's error, got {other:?}"),
        }
        assert!(matches!(
            up.storage(GARBAGE, A, U256::ZERO).await,
            Err(SourceError::Decode { what: "slot", .. })
        ));
        assert!(matches!(up.account(SLOW, A).await, Err(SourceError::Timeout { .. })));
        // Failures are not cached: a second read asks again.
        let before = seen(&seen_by).len();
        assert!(up.account(UNKNOWN, A).await.is_err());
        assert_eq!(seen(&seen_by).len(), before + 3);
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error_with_its_cause() {
        // A port that was just free: nothing listens there.
        let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => a.port(),
            Err(e) => panic!("{e}"),
        };
        let config =
            UpstreamConfig { url: format!("http://127.0.0.1:{port}"), ..Default::default() };
        let err = UpstreamSource::connect(
            config,
            CancellationToken::new(),
            &flashnode_tasks::TaskManager::new().executor(),
        )
        .await
        .err();
        let Some(err @ SourceError::Transport { .. }) = err else {
            panic!("expected a transport error, got {err:?}")
        };
        let refused = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        assert!(refused, "the io error is in the source chain: {err}");
    }

    #[tokio::test]
    async fn a_refused_trace_falls_back_to_reths_execution_outcome_and_is_remembered() {
        let cancel = CancellationToken::new();
        let (up, seen_by) = upstream(&cancel).await;
        let touches = up.block_touches(KNOWN).await;
        let want = BlockTouches {
            accounts: [A].into_iter().collect(),
            slots: [(A, U256::from(7))].into_iter().collect(),
            contracts: Default::default(),
        };
        assert_eq!(touches, Some(want.clone()));
        assert_eq!(seen(&seen_by), ["debug_traceBlockByHash", "reth_getBlockExecutionOutcome"]);
        // The next block asks the method that works straight away.
        assert_eq!(up.block_touches(OTHER).await, Some(want));
        assert_eq!(seen(&seen_by)[2..], ["reth_getBlockExecutionOutcome"]);
        cancel.cancel();
    }

    #[test]
    fn unknown_block_answers_are_recognised_by_code_and_geth_message() {
        assert!(is_unknown_block(-32001, "Resource not found"));
        assert!(is_unknown_block(-32000, "header not found"));
        assert!(is_unknown_block(-32000, "header for hash not found"));
        assert!(!is_unknown_block(-32000, "missing trie node 0xabc"));
        assert!(!is_unknown_block(-32602, "header not found"));
    }
}
