//! The methods that honour flashblocks ([`crate::api`]'s traits): preconfirmed receipts and
//! transactions, the `pending` block and state, calls in the real pending-block environment,
//! `eth_sendRawTransactionSync`, and `flashnode_status`. Anything not about `pending`, or asked
//! while no fresh pending block exists, goes to the upstream with `pending` read as `latest`.

use crate::{
    api::{EthApiServer, FlashnodeApiServer, OpApiServer},
    error::{RpcError, RpcResult},
    executor::Executor,
    RpcContext,
};
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256, U64};
use alloy_rpc_types_eth::{
    simulate::SimulatePayload, state::StateOverride, BlockOverrides, Filter, FilterBlockOption,
    Index, Log, TransactionRequest,
};
use alloy_serde::storage::JsonStorageKey;
use flashnode_exec::{
    call_budgeted, create_access_list_budgeted, estimate_gas_budgeted, rpc_logs, rpc_receipt,
    rpc_transaction, simulate, Budget, CallOverrides,
};
use flashnode_overlay::{OverlayEvent, PendingBlock};
use jsonrpsee::core::async_trait;
use revm::{database::CacheDB, DatabaseRef};
use serde::Serialize;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};
use tokio::sync::broadcast::error::RecvError;

pub(crate) use crate::error::invalid_params;

/// Answers the flashblock-aware methods.
#[derive(Clone, Debug)]
pub(crate) struct PendingApi {
    ctx: RpcContext,
    executor: Executor,
}

impl PendingApi {
    /// Over `ctx`, executing calls on `executor`.
    pub(crate) fn new(ctx: RpcContext, executor: Executor) -> Self {
        Self { ctx, executor }
    }

    /// The pending block when `block` names `pending` and a fresh one exists.
    fn pending_at(&self, block: &Option<BlockId>) -> Option<Arc<PendingBlock>> {
        self.pending_for(block, Tagless::Latest)
    }

    /// The pending block when `block` reads pending (with a missing block read as `tagless`
    /// says) and a fresh, readable one exists.
    fn pending_for(&self, block: &Option<BlockId>, tagless: Tagless) -> Option<Arc<PendingBlock>> {
        if let Some(BlockId::Hash(h)) = block {
            // EIP-1898 by a provisional hash: the pending block while it is one.
            return self.ctx.overlay.pending_by_hash(&h.block_hash);
        }
        reads_pending(block, tagless).then(|| self.ctx.overlay.pending()).flatten()
    }

    /// Passes `method` on with `params`; `pending` becomes `latest` since no preconfirmation
    /// applies.
    async fn upstream(&self, method: &str, params: Vec<Option<Value>>) -> RpcResult<Value> {
        Ok(self.ctx.upstream.call(method, Some(forward(params))).await?)
    }

    /// The account fields of `address` in the pending state (canonical fallbacks block).
    async fn account(
        &self,
        method: &str,
        address: Address,
        block: Option<BlockId>,
        field: fn(&PendingBlock, Address) -> RpcResult<Value>,
    ) -> RpcResult<Value> {
        match self.pending_at(&block) {
            Some(pending) => blocking(move || field(&pending, address)).await,
            None => self.upstream(method, vec![arg(&address)?, block_arg(block)?]).await,
        }
    }

    /// `eth_call`, `eth_estimateGas` or `eth_createAccessList`: in the pending block on the
    /// executor pool, or upstream. Without a block parameter they read `pending` too (see
    /// [`Tagless::Pending`]); when no pending block can be served the upstream gets the
    /// request as the client sent it (tagless: its `latest`).
    async fn execute(
        &self,
        method: &str,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
        run: fn(PendingCall, &Budget) -> RpcResult<Value>,
    ) -> RpcResult<Value> {
        let Some(pending) = self.pending_for(&block, Tagless::Pending) else {
            let params = vec![
                arg(&request)?,
                block_arg(block)?,
                arg_opt(&state)?,
                arg_opt(&block_overrides)?,
            ];
            return self.executor.forward(self.upstream(method, params)).await;
        };
        let call = PendingCall {
            pending,
            req: request,
            overrides: CallOverrides { state, block: block_overrides.map(|b| *b) },
            chain: self.ctx.overlay.chain().clone(),
            gas_cap: self.ctx.config.gas_cap,
        };
        call.prefetch().await;
        self.executor.run(move |budget| run(call, budget)).await
    }
}

/// What a request without a block parameter reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tagless {
    /// `latest`, as the JSON-RPC spec and every client default (state reads, blocks).
    Latest,
    /// `pending` when it can be served, else `latest`: `eth_call`, `eth_estimateGas` and
    /// `eth_createAccessList`. Wallet flows send these without a tag (viem's estimate before
    /// `writeContract`, alloy's gas filler) and then send the transaction into the block
    /// being built, so the estimate must see the preconfirmed state the transaction will
    /// execute on; geth estimated on `pending` until 2023 for the same reason. geth now,
    /// reth/op-reth and Base's node read `latest` (README, "Clients").
    Pending,
}

/// Whether a request with `block` reads the pending block.
fn reads_pending(block: &Option<BlockId>, tagless: Tagless) -> bool {
    match block {
        Some(BlockId::Number(BlockNumberOrTag::Pending)) => true,
        None => tagless == Tagless::Pending,
        Some(_) => false,
    }
}

fn to_json<T: Serialize>(v: T) -> RpcResult<Value> {
    Ok(serde_json::to_value(v)?)
}

fn arg<T: Serialize>(v: &T) -> RpcResult<Option<Value>> {
    Ok(Some(serde_json::to_value(v)?))
}

fn arg_opt<T: Serialize>(v: &Option<T>) -> RpcResult<Option<Value>> {
    v.as_ref().map(serde_json::to_value).transpose().map_err(RpcError::from)
}

/// The block parameter to pass on: `pending` reads as `latest` upstream.
fn block_arg(block: Option<BlockId>) -> RpcResult<Option<Value>> {
    let block = block.map(|b| match b {
        BlockId::Number(tag) => BlockId::Number(pending_as_latest(tag)),
        other => other,
    });
    arg_opt(&block)
}

/// `pending` read as `latest` (what the upstream is asked for), any other tag as it is.
fn pending_as_latest(tag: BlockNumberOrTag) -> BlockNumberOrTag {
    match tag {
        BlockNumberOrTag::Pending => BlockNumberOrTag::Latest,
        other => other,
    }
}

/// Params in order as a JSON array; absent ones are `null`, trailing absent ones left out (so
/// the upstream sees the arity the client sent).
fn forward(params: Vec<Option<Value>>) -> Value {
    let mut params: Vec<Value> = params.into_iter().map(Option::unwrap_or_default).collect();
    while params.last().is_some_and(Value::is_null) {
        params.pop();
    }
    Value::Array(params)
}

/// Runs a read of the pending state on a blocking thread (canonical fallbacks block on I/O).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> RpcResult<T> + Send + 'static,
) -> RpcResult<T> {
    tokio::task::spawn_blocking(f).await?
}

#[async_trait]
impl EthApiServer for PendingApi {
    fn chain_id(&self) -> RpcResult<U64> {
        Ok(U64::from(self.ctx.overlay.source().chain_id()))
    }

    async fn transaction_receipt(&self, hash: B256) -> RpcResult<Value> {
        if let Some(pending) = self.ctx.overlay.pending() {
            if let Some(tx) = pending.transaction(&hash) {
                return to_json(rpc_receipt(tx, &pending.context()));
            }
        }
        self.upstream("eth_getTransactionReceipt", vec![arg(&hash)?]).await
    }

    async fn transaction_by_hash(&self, hash: B256) -> RpcResult<Value> {
        if let Some(pending) = self.ctx.overlay.pending() {
            if let Some(tx) = pending.transaction(&hash) {
                return to_json(rpc_transaction(tx, Some(&pending.context())));
            }
        }
        self.upstream("eth_getTransactionByHash", vec![arg(&hash)?]).await
    }

    async fn block_by_number(
        &self,
        block: Option<BlockId>,
        full: Option<bool>,
    ) -> RpcResult<Value> {
        match self.pending_at(&block) {
            Some(p) => to_json(p.rpc_block(full.unwrap_or(false))),
            None => {
                self.upstream("eth_getBlockByNumber", vec![block_arg(block)?, arg_opt(&full)?])
                    .await
            }
        }
    }

    async fn block_by_hash(&self, hash: B256, full: Option<bool>) -> RpcResult<Value> {
        match self.ctx.overlay.pending_by_hash(&hash) {
            Some(p) => to_json(p.rpc_block(full.unwrap_or(false))),
            None => self.upstream("eth_getBlockByHash", vec![arg(&hash)?, arg_opt(&full)?]).await,
        }
    }

    async fn block_transaction_count_by_hash(&self, hash: B256) -> RpcResult<Value> {
        match self.ctx.overlay.pending_by_hash(&hash) {
            Some(pending) => to_json(U64::from(pending.txs.len())),
            None => self.upstream("eth_getBlockTransactionCountByHash", vec![arg(&hash)?]).await,
        }
    }

    async fn transaction_by_block_hash_and_index(
        &self,
        hash: B256,
        index: Index,
    ) -> RpcResult<Value> {
        match self.ctx.overlay.pending_by_hash(&hash) {
            Some(pending) => to_json(transaction_at(&pending, index)),
            None => {
                let params = vec![arg(&hash)?, arg(&index)?];
                self.upstream("eth_getTransactionByBlockHashAndIndex", params).await
            }
        }
    }

    async fn transaction_by_block_number_and_index(
        &self,
        block: BlockNumberOrTag,
        index: Index,
    ) -> RpcResult<Value> {
        match self.pending_at(&Some(BlockId::Number(block))) {
            Some(pending) => to_json(transaction_at(&pending, index)),
            None => {
                let params = vec![block_arg(Some(BlockId::Number(block)))?, arg(&index)?];
                self.upstream("eth_getTransactionByBlockNumberAndIndex", params).await
            }
        }
    }

    async fn block_transaction_count(&self, block: Option<BlockId>) -> RpcResult<Value> {
        match self.pending_at(&block) {
            Some(pending) => to_json(U64::from(pending.txs.len())),
            None => {
                self.upstream("eth_getBlockTransactionCountByNumber", vec![block_arg(block)?]).await
            }
        }
    }

    async fn block_receipts(&self, block: Option<BlockId>) -> RpcResult<Value> {
        match self.pending_at(&block) {
            Some(pending) => {
                let ctx = pending.context();
                to_json(pending.txs.iter().map(|t| rpc_receipt(t, &ctx)).collect::<Vec<_>>())
            }
            None => self.upstream("eth_getBlockReceipts", vec![block_arg(block)?]).await,
        }
    }

    async fn balance(&self, address: Address, block: Option<BlockId>) -> RpcResult<Value> {
        self.account("eth_getBalance", address, block, |p, a| to_json(basic(p, a)?.balance)).await
    }

    async fn transaction_count(
        &self,
        address: Address,
        block: Option<BlockId>,
    ) -> RpcResult<Value> {
        self.account("eth_getTransactionCount", address, block, |p, a| {
            to_json(U64::from(basic(p, a)?.nonce))
        })
        .await
    }

    async fn code(&self, address: Address, block: Option<BlockId>) -> RpcResult<Value> {
        self.account("eth_getCode", address, block, code_of).await
    }

    async fn storage_at(
        &self,
        address: Address,
        slot: JsonStorageKey,
        block: Option<BlockId>,
    ) -> RpcResult<Value> {
        match self.pending_at(&block) {
            Some(pending) => {
                blocking(move || {
                    let slot = U256::from_be_bytes(slot.as_b256().0);
                    to_json(B256::from(pending.database().storage_ref(address, slot)?))
                })
                .await
            }
            None => {
                let params = vec![arg(&address)?, arg(&slot)?, block_arg(block)?];
                self.upstream("eth_getStorageAt", params).await
            }
        }
    }

    async fn call(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
    ) -> RpcResult<Value> {
        self.execute("eth_call", request, block, state, block_overrides, PendingCall::call).await
    }

    async fn estimate_gas(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
    ) -> RpcResult<Value> {
        self.execute(
            "eth_estimateGas",
            request,
            block,
            state,
            block_overrides,
            PendingCall::estimate,
        )
        .await
    }

    async fn create_access_list(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
    ) -> RpcResult<Value> {
        self.execute(
            "eth_createAccessList",
            request,
            block,
            state,
            block_overrides,
            PendingCall::access_list,
        )
        .await
    }

    async fn simulate_v1(
        &self,
        payload: SimulatePayload,
        block: Option<BlockId>,
    ) -> RpcResult<Value> {
        let Some(pending) = self.pending_at(&block) else {
            let params = vec![arg(&payload)?, block_arg(block)?];
            return self.executor.forward(self.upstream("eth_simulateV1", params)).await;
        };
        let (chain, gas_cap) = (self.ctx.overlay.chain().clone(), self.ctx.config.gas_cap);
        self.executor
            .run(move |budget| {
                let db = pending.database();
                to_json(simulate(db, &chain, &pending.env, &payload, gas_cap, budget)?)
            })
            .await
    }

    async fn logs(&self, filter: Filter) -> RpcResult<Value> {
        get_logs(&self.ctx, filter).await
    }

    fn flashblocks_enabled(&self) -> RpcResult<bool> {
        Ok(self.ctx.overlay.mode() == flashnode_overlay::Mode::Flashblocks)
    }

    async fn send_raw_transaction_sync(
        &self,
        raw: Bytes,
        timeout_ms: Option<u64>,
    ) -> RpcResult<Value> {
        send_raw_sync(&self.ctx, raw, timeout_ms).await
    }
}

impl OpApiServer for PendingApi {
    fn supported_capabilities(&self) -> RpcResult<Vec<&'static str>> {
        Ok(vec!["flashblocksv1"])
    }
}

impl FlashnodeApiServer for PendingApi {
    fn status(&self) -> RpcResult<Value> {
        let mut status = to_json(self.ctx.overlay.status())?;
        crate::p2p::extend_status(self.ctx.gossip.as_deref(), &mut status);
        Ok(status)
    }
}

/// An `eth_call` / `eth_estimateGas` / `eth_createAccessList` to run in the pending block's
/// environment.
struct PendingCall {
    pending: Arc<PendingBlock>,
    req: TransactionRequest,
    overrides: CallOverrides,
    chain: flashnode_exec::ChainConfig,
    gas_cap: u64,
}

impl PendingCall {
    /// Warms the upstream cache with the caller, the callee and the access list in one batch,
    /// so a cold call costs one round trip for them instead of one per read.
    async fn prefetch(&self) {
        let mut accounts = vec![self.req.from.unwrap_or_default()];
        if let Some(TxKind::Call(to)) = self.req.to {
            accounts.push(to);
        }
        let mut slots = Vec::new();
        for item in self.req.access_list.iter().flat_map(|l| l.0.iter()) {
            accounts.push(item.address);
            slots
                .extend(item.storage_keys.iter().map(|k| (item.address, U256::from_be_bytes(k.0))));
        }
        if let Err(e) = self.pending.prefetch(accounts, slots).await {
            tracing::debug!(err = %e, "call prefetch failed; execution reads one at a time");
        }
    }

    fn call(self, budget: &Budget) -> RpcResult<Value> {
        let db = self.overrides.database(self.pending.database())?;
        let env = self.overrides.env(&self.pending.env);
        let out = call_budgeted(db, &self.chain, &env, &self.req, self.gas_cap, budget)?;
        to_json(out.output)
    }

    fn estimate(self, budget: &Budget) -> RpcResult<Value> {
        let mut probe = self.overrides.database(self.pending.database())?;
        let balance = revm::Database::basic(&mut probe, self.req.from.unwrap_or_default())?
            .map(|a| a.balance)
            .unwrap_or_default();
        let env = self.overrides.env(&self.pending.env);
        let db = self.pending.database();
        let overrides = &self.overrides;
        let gas = estimate_gas_budgeted(
            || overrides.database(db.clone()).unwrap_or_else(|_| CacheDB::new(db.clone())),
            &self.chain,
            &env,
            &self.req,
            self.gas_cap,
            balance,
            budget,
        )?;
        to_json(U64::from(gas))
    }

    fn access_list(self, budget: &Budget) -> RpcResult<Value> {
        let db = self.pending.database();
        // Reject bad overrides up front; the factory below then cannot fail.
        self.overrides.database(db.clone())?;
        let env = self.overrides.env(&self.pending.env);
        let overrides = &self.overrides;
        let out = create_access_list_budgeted(
            || overrides.database(db.clone()).unwrap_or_else(|_| CacheDB::new(db.clone())),
            &self.chain,
            &env,
            &self.req,
            self.gas_cap,
            budget,
        )?;
        to_json(out)
    }
}

/// The preconfirmed transaction at `index` of the pending block, `None` past its end.
fn transaction_at(pending: &PendingBlock, index: Index) -> Option<op_alloy_rpc_types::Transaction> {
    let tx = pending.txs.get(usize::from(index))?;
    Some(rpc_transaction(tx, Some(&pending.context())))
}

fn basic(pending: &PendingBlock, address: Address) -> RpcResult<revm::state::AccountInfo> {
    Ok(pending.database().basic_ref(address)?.unwrap_or_default())
}

fn code_of(pending: &PendingBlock, address: Address) -> RpcResult<Value> {
    let info = basic(pending, address)?;
    let code = match info.code {
        Some(c) => c.original_bytes(),
        None => pending
            .database()
            .code_by_hash_ref(info.code_hash)
            .map(|c| c.original_bytes())
            .unwrap_or_default(),
    };
    to_json(code)
}

/// `eth_getLogs`. A range that names `pending` reads it as the pending block's number and
/// `latest` as the canonical tip's: the preconfirmed logs are included only when the pending
/// block is inside the range, the canonical part goes to the upstream, and a range whose start
/// is after its end is refused (geth's and reth's error). A provisional `blockHash` is the
/// pending block's logs. Ranges without `pending` go to the upstream unchanged. With no pending
/// block served, `pending` is `latest`.
async fn get_logs(ctx: &RpcContext, filter: Filter) -> RpcResult<Value> {
    let (from, to) = match filter.block_option {
        FilterBlockOption::Range { from_block, to_block } => (from_block, to_block),
        FilterBlockOption::AtBlockHash(hash) => {
            if let Some(pending) = ctx.overlay.pending_by_hash(&hash) {
                return to_json(pending_logs(&pending, &filter));
            }
            return upstream_logs(ctx, &filter).await;
        }
    };
    let names_pending = |b: Option<BlockNumberOrTag>| b == Some(BlockNumberOrTag::Pending);
    if !names_pending(from) && !names_pending(to) {
        return upstream_logs(ctx, &filter).await;
    }
    let Some(pending) = ctx.overlay.pending() else {
        let canonical = filter
            .clone()
            .from_block(pending_as_latest(from.unwrap_or_default()))
            .to_block(pending_as_latest(to.unwrap_or_default()));
        return upstream_logs(ctx, &canonical).await;
    };
    let number = pending.number();
    let tip = ctx.overlay.tip().map_or(number.saturating_sub(1), |t| t.header.number);
    let plan = LogRange::resolve(from, to, number, tip)?;
    let mut logs: Vec<Value> = Vec::new();
    if let Some((from, to)) = plan.canonical {
        let canonical = filter.clone().from_block(from).to_block(to);
        let got = upstream_logs(ctx, &canonical).await?;
        logs = serde_json::from_value(got)?;
    }
    if plan.pending {
        for log in pending_logs(&pending, &filter) {
            logs.push(to_json(log)?);
        }
    }
    Ok(Value::Array(logs))
}

async fn upstream_logs(ctx: &RpcContext, filter: &Filter) -> RpcResult<Value> {
    Ok(ctx.upstream.call("eth_getLogs", Some(forward(vec![arg(filter)?]))).await?)
}

/// The pending block's logs that `filter` matches (its addresses and topics).
fn pending_logs(pending: &PendingBlock, filter: &Filter) -> Vec<Log> {
    let block = pending.context();
    pending
        .txs
        .iter()
        .flat_map(|tx| rpc_logs(tx, &block))
        .filter(|log| filter.matches(&log.inner))
        .collect()
}

/// Which parts of the chain an `eth_getLogs` range that names `pending` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogRange {
    /// The sealed blocks to ask the upstream for, as block parameters.
    canonical: Option<(BlockNumberOrTag, BlockNumberOrTag)>,
    /// Whether the pending block is inside the range.
    pending: bool,
}

impl LogRange {
    /// Resolves `from..=to` (absent: `latest`, as the JSON-RPC spec says) with the pending block
    /// at `pending` and the canonical tip at `tip`. `safe` and `finalized` read as the tip: they
    /// are never after it, which is all the pending block's inclusion needs.
    fn resolve(
        from: Option<BlockNumberOrTag>,
        to: Option<BlockNumberOrTag>,
        pending: u64,
        tip: u64,
    ) -> RpcResult<Self> {
        let number = |b: Option<BlockNumberOrTag>| match b.unwrap_or_default() {
            BlockNumberOrTag::Number(n) => n,
            BlockNumberOrTag::Pending => pending,
            BlockNumberOrTag::Earliest => 0,
            BlockNumberOrTag::Latest | BlockNumberOrTag::Safe | BlockNumberOrTag::Finalized => tip,
        };
        let (from_n, to_n) = (number(from), number(to));
        if from_n > to_n {
            return Err(RpcError::InvalidBlockRange { from: from_n, to: to_n });
        }
        let canonical = (from_n <= tip).then(|| {
            let to = if to_n > tip { BlockNumberOrTag::Latest } else { to.unwrap_or_default() };
            (pending_as_latest(from.unwrap_or_default()), to)
        });
        Ok(Self { canonical, pending: from_n <= pending && pending <= to_n })
    }
}

/// EIP-7966: send, then answer with the receipt as soon as a flashblock (or a sealed block)
/// includes the transaction. Subscribes before sending and checks current state after, so a
/// receipt that lands in between is never missed.
async fn send_raw_sync(ctx: &RpcContext, raw: Bytes, timeout_ms: Option<u64>) -> RpcResult<Value> {
    let max = ctx.config.send_raw_sync_max;
    let timeout = timeout_ms.map(Duration::from_millis).unwrap_or(max).min(max);
    let hash = keccak256(&raw);
    let mut events = ctx.overlay.subscribe();
    ctx.upstream.call("eth_sendRawTransaction", Some(json!([raw]))).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let found = |pending: &Arc<PendingBlock>| {
        pending.transaction(&hash).map(|tx| rpc_receipt(tx, &pending.context()))
    };
    if let Some(pending) = ctx.overlay.pending() {
        if let Some(r) = found(&pending) {
            return to_json(r);
        }
    }
    let landed = ctx.upstream.call("eth_getTransactionReceipt", Some(json!([hash]))).await?;
    if !landed.is_null() {
        return Ok(landed);
    }
    loop {
        let ev = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(OverlayEvent::Applied { block, .. }) => {
                if let Some(r) = found(&block) {
                    return to_json(r);
                }
            }
            Ok(OverlayEvent::Canonical(block)) if block.tx_hashes.contains(&hash) => {
                return Ok(ctx
                    .upstream
                    .call("eth_getTransactionReceipt", Some(json!([hash])))
                    .await?);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                if let Some(pending) = ctx.overlay.pending() {
                    if let Some(r) = found(&pending) {
                        return to_json(r);
                    }
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
    Err(RpcError::TxSyncTimeout { hash, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_params_keep_the_clients_arity() {
        assert_eq!(forward(vec![Some(json!("0x1")), None, None]), json!(["0x1"]));
        assert_eq!(
            forward(vec![Some(json!({})), None, Some(json!({"a": 1}))]),
            json!([{}, null, {"a": 1}])
        );
        assert_eq!(forward(vec![]), json!([]));
    }

    #[test]
    fn a_missing_block_reads_pending_only_for_executions() {
        let pending = Some(BlockId::Number(BlockNumberOrTag::Pending));
        let latest = Some(BlockId::Number(BlockNumberOrTag::Latest));
        let number = Some(BlockId::Number(BlockNumberOrTag::Number(7)));
        for tagless in [Tagless::Latest, Tagless::Pending] {
            assert!(reads_pending(&pending, tagless));
            assert!(!reads_pending(&latest, tagless), "an explicit latest stays latest");
            assert!(!reads_pending(&number, tagless));
            assert!(!reads_pending(&Some(BlockId::Hash(B256::ZERO.into())), tagless));
        }
        assert!(reads_pending(&None, Tagless::Pending), "eth_call / estimateGas / accessList");
        assert!(!reads_pending(&None, Tagless::Latest), "state reads and blocks");
    }

    #[test]
    fn pending_logs_only_inside_the_range() {
        use BlockNumberOrTag::{Latest, Number, Pending};
        let (pending, tip) = (214, 213);
        let resolve = |from, to| LogRange::resolve(from, to, pending, tip);
        // Starting after the pending block: inverted.
        for from in [219, 100_000] {
            let err = resolve(Some(Number(from)), Some(Pending)).unwrap_err();
            assert!(matches!(err, RpcError::InvalidBlockRange { to: 214, .. }), "{err}");
        }
        // Pending to a block before it: inverted.
        let err = resolve(Some(Pending), Some(Number(211))).unwrap_err();
        assert!(matches!(err, RpcError::InvalidBlockRange { from: 214, to: 211 }), "{err}");
        // Pending alone: the preconfirmed logs only.
        assert_eq!(
            resolve(Some(Pending), Some(Pending)).unwrap(),
            LogRange { canonical: None, pending: true }
        );
        // From a sealed block to pending: both parts.
        assert_eq!(
            resolve(Some(Number(200)), Some(Pending)).unwrap(),
            LogRange { canonical: Some((Number(200), Latest)), pending: true }
        );
        // From the pending block's own number.
        assert_eq!(
            resolve(Some(Number(214)), Some(Pending)).unwrap(),
            LogRange { canonical: None, pending: true }
        );
        // Pending to a later number: the pending block, no canonical part.
        assert_eq!(
            resolve(Some(Pending), Some(Number(300))).unwrap(),
            LogRange { canonical: None, pending: true }
        );
        // From `latest` (the default) to pending.
        assert_eq!(
            resolve(None, Some(Pending)).unwrap(),
            LogRange { canonical: Some((Latest, Latest)), pending: true }
        );
    }

    #[test]
    fn pending_reads_as_latest_upstream() {
        let pending = Some(BlockId::Number(BlockNumberOrTag::Pending));
        assert_eq!(block_arg(pending).unwrap(), Some(json!("latest")));
        let number = Some(BlockId::Number(BlockNumberOrTag::Number(0x10)));
        assert_eq!(block_arg(number).unwrap(), Some(json!("0x10")));
        assert_eq!(block_arg(None).unwrap(), None);
    }
}
