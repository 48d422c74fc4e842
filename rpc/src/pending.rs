//! Methods that honour flashblocks: preconfirmed receipts and transactions, the `pending`
//! block and state, calls in the real pending-block environment, `eth_sendRawTransactionSync`,
//! and `flashnode_status`.

use crate::{proxy::params_json, RpcContext};
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{keccak256, Address, Bytes, B256, U256, U64};
use alloy_rpc_types_eth::{
    simulate::SimulatePayload, Filter, FilterBlockOption, TransactionRequest,
};
// `call::` names the exec crate's call API (`call::call`, `call::estimate_gas`, ...).
use flashnode_exec::{
    self as call, rpc_block, rpc_logs, rpc_receipt, rpc_transaction, simulate, CallError,
};
use flashnode_overlay::{OverlayEvent, PendingBlock};
use jsonrpsee::{
    server::RpcModule,
    types::{ErrorObjectOwned, Params},
};
use revm::{database::CacheDB, DatabaseRef};
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};
use tokio::sync::broadcast::error::RecvError;

type RpcResult<T> = Result<T, ErrorObjectOwned>;

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

/// A -32602 error: "invalid params: " and what was wrong.
pub(crate) fn invalid_params(e: impl ParamsDetail) -> ErrorObjectOwned {
    err(-32602, format!("invalid params: {}", e.detail()))
}

/// What went wrong with a request's params, as one readable phrase.
pub(crate) trait ParamsDetail {
    /// The phrase.
    fn detail(&self) -> String;
}

impl ParamsDetail for &str {
    fn detail(&self) -> String {
        self.to_string()
    }
}

impl ParamsDetail for serde_json::Error {
    fn detail(&self) -> String {
        self.to_string()
    }
}

impl ParamsDetail for ErrorObjectOwned {
    /// jsonrpsee's own parse errors carry the reason in `data` ("No more params", serde's
    /// message); its `Display` is a debug dump of the whole object.
    fn detail(&self) -> String {
        match self.data().map(|d| serde_json::from_str::<Value>(d.get())) {
            Some(Ok(Value::String(s))) => s,
            Some(Ok(other)) => other.to_string(),
            _ => self.message().to_string(),
        }
    }
}

fn to_json<T: serde::Serialize>(v: T) -> RpcResult<Value> {
    serde_json::to_value(v).map_err(|e| err(-32603, e.to_string()))
}

fn call_error(e: CallError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(e.code(), e.to_string(), e.data())
}

/// The block parameter at `pos` of a params array, and whether it names `pending`.
fn tag_at(params: &Option<Value>, pos: usize) -> RpcResult<Option<BlockId>> {
    match params.as_ref().and_then(|p| p.as_array()).and_then(|a| a.get(pos)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value::<BlockId>(v.clone()).map(Some).map_err(invalid_params),
    }
}

fn is_pending(id: &Option<BlockId>) -> bool {
    matches!(id, Some(BlockId::Number(BlockNumberOrTag::Pending)))
}

/// The same params with the block parameter at `pos` turned into `latest` (fallback mode).
fn as_latest(params: Option<Value>, pos: usize) -> Option<Value> {
    params.map(|mut p| {
        if let Some(slot) = p.as_array_mut().and_then(|a| a.get_mut(pos)) {
            if slot.as_str() == Some("pending") {
                *slot = Value::String("latest".into());
            }
        }
        p
    })
}

/// Proxies `method`; `pending` at `pos` becomes `latest` since no preconfirmation applies.
async fn upstream_latest(
    ctx: &RpcContext,
    method: &str,
    params: Option<Value>,
    pos: usize,
) -> RpcResult<Value> {
    ctx.upstream.call(method, as_latest(params, pos)).await
}

/// Runs a read of the pending state on a blocking thread (canonical fallbacks block on I/O).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> RpcResult<T> + Send + 'static,
) -> RpcResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(-32603, format!("execution task failed: {e}")))?
}

/// Registers the flashblock-aware methods.
pub fn register(m: &mut RpcModule<RpcContext>) {
    m.register_method("eth_chainId", |_, ctx, _| -> RpcResult<U64> {
        Ok(U64::from(ctx.overlay.source().chain_id()))
    })
    .expect("unique");
    m.register_method("op_supportedCapabilities", |_, _, _| -> RpcResult<Vec<&'static str>> {
        Ok(vec!["flashblocksv1"])
    })
    .expect("unique");
    m.register_method("flashnode_status", |_, ctx, _| -> RpcResult<Value> {
        let mut status = to_json(ctx.overlay.status())?;
        crate::p2p::extend_status(ctx.gossip.as_deref(), &mut status);
        Ok(status)
    })
    .expect("unique");

    m.register_async_method("eth_getTransactionReceipt", |p, ctx, _| async move {
        let hash: B256 = p.one().map_err(invalid_params)?;
        if let Some(pending) = ctx.overlay.pending() {
            if let Some(tx) = pending.transaction(&hash) {
                return to_json(rpc_receipt(tx, &pending.context()));
            }
        }
        ctx.upstream.call("eth_getTransactionReceipt", Some(json!([hash]))).await
    })
    .expect("unique");
    m.register_async_method("eth_getTransactionByHash", |p, ctx, _| async move {
        let hash: B256 = p.one().map_err(invalid_params)?;
        if let Some(pending) = ctx.overlay.pending() {
            if let Some(tx) = pending.transaction(&hash) {
                return to_json(rpc_transaction(tx, Some(&pending.context())));
            }
        }
        ctx.upstream.call("eth_getTransactionByHash", Some(json!([hash]))).await
    })
    .expect("unique");
    m.register_async_method("eth_getBlockByNumber", |p, ctx, _| async move {
        let params = params_json(&p)?;
        let tag = tag_at(&params, 0)?;
        if is_pending(&tag) {
            let full =
                params.as_ref().and_then(|p| p.get(1)).and_then(|v| v.as_bool()).unwrap_or(false);
            if let Some(pending) = ctx.overlay.pending() {
                return to_json(rpc_block(&pending.header, pending.hash, &pending.txs, full));
            }
        }
        upstream_latest(&ctx, "eth_getBlockByNumber", params, 0).await
    })
    .expect("unique");
    m.register_async_method("eth_getBlockTransactionCountByNumber", |p, ctx, _| async move {
        let params = params_json(&p)?;
        if is_pending(&tag_at(&params, 0)?) {
            if let Some(pending) = ctx.overlay.pending() {
                return to_json(U64::from(pending.txs.len()));
            }
        }
        upstream_latest(&ctx, "eth_getBlockTransactionCountByNumber", params, 0).await
    })
    .expect("unique");
    m.register_async_method("eth_getBlockReceipts", |p, ctx, _| async move {
        let params = params_json(&p)?;
        if is_pending(&tag_at(&params, 0)?) {
            if let Some(pending) = ctx.overlay.pending() {
                let block = pending.context();
                return to_json(
                    pending.txs.iter().map(|t| rpc_receipt(t, &block)).collect::<Vec<_>>(),
                );
            }
        }
        upstream_latest(&ctx, "eth_getBlockReceipts", params, 0).await
    })
    .expect("unique");

    for method in ["eth_getBalance", "eth_getTransactionCount", "eth_getCode"] {
        m.register_async_method(method, move |p, ctx, _| async move {
            let params = params_json(&p)?;
            let tag = tag_at(&params, 1)?;
            if is_pending(&tag) {
                if let Some(pending) = ctx.overlay.pending() {
                    let address: Address = params
                        .as_ref()
                        .and_then(|p| p.get(0))
                        .cloned()
                        .map(serde_json::from_value)
                        .transpose()
                        .map_err(invalid_params)?
                        .ok_or_else(|| invalid_params("missing address"))?;
                    return blocking(move || account_field(&pending, method, address)).await;
                }
            }
            upstream_latest(&ctx, method, params, 1).await
        })
        .expect("unique");
    }
    m.register_async_method("eth_getStorageAt", |p, ctx, _| async move {
        let params = params_json(&p)?;
        if is_pending(&tag_at(&params, 2)?) {
            if let Some(pending) = ctx.overlay.pending() {
                let arr = params.as_ref().and_then(|p| p.as_array()).cloned().unwrap_or_default();
                let address: Address =
                    serde_json::from_value(arr.first().cloned().unwrap_or_default())
                        .map_err(invalid_params)?;
                let slot: U256 = serde_json::from_value(arr.get(1).cloned().unwrap_or_default())
                    .map_err(invalid_params)?;
                return blocking(move || {
                    let value = pending
                        .database()
                        .storage_ref(address, slot)
                        .map_err(|e| err(-32603, e.to_string()))?;
                    to_json(B256::from(value))
                })
                .await;
            }
        }
        upstream_latest(&ctx, "eth_getStorageAt", params, 2).await
    })
    .expect("unique");

    m.register_async_method("eth_call", |p, ctx, _| async move {
        let params = params_json(&p)?;
        match PendingCall::from_params(&ctx, &params)? {
            Some(c) => {
                c.prefetch().await;
                blocking(move || c.call()).await
            }
            None => upstream_latest(&ctx, "eth_call", params, 1).await,
        }
    })
    .expect("unique");
    m.register_async_method("eth_estimateGas", |p, ctx, _| async move {
        let params = params_json(&p)?;
        match PendingCall::from_params(&ctx, &params)? {
            Some(c) => {
                c.prefetch().await;
                blocking(move || c.estimate()).await
            }
            None => upstream_latest(&ctx, "eth_estimateGas", params, 1).await,
        }
    })
    .expect("unique");
    m.register_async_method("eth_createAccessList", |p, ctx, _| async move {
        let params = params_json(&p)?;
        match PendingCall::from_params(&ctx, &params)? {
            Some(c) => {
                c.prefetch().await;
                blocking(move || c.access_list()).await
            }
            None => upstream_latest(&ctx, "eth_createAccessList", params, 1).await,
        }
    })
    .expect("unique");
    m.register_async_method("eth_simulateV1", |p, ctx, _| async move {
        let params = params_json(&p)?;
        if is_pending(&tag_at(&params, 1)?) {
            if let Some(pending) = ctx.overlay.pending() {
                let raw = params
                    .as_ref()
                    .and_then(|p| p.get(0))
                    .cloned()
                    .ok_or_else(|| invalid_params("missing simulation payload"))?;
                let payload: SimulatePayload =
                    serde_json::from_value(raw).map_err(invalid_params)?;
                let (chain, gas_cap) = (ctx.overlay.chain().clone(), ctx.config.gas_cap);
                return blocking(move || {
                    let blocks =
                        simulate(pending.database(), &chain, &pending.env, &payload, gas_cap)
                            .map_err(|e| err(e.code, e.message))?;
                    to_json(blocks)
                })
                .await;
            }
        }
        upstream_latest(&ctx, "eth_simulateV1", params, 1).await
    })
    .expect("unique");

    m.register_async_method("eth_getLogs", |p, ctx, _| async move { get_logs(&ctx, &p).await })
        .expect("unique");

    m.register_async_method("eth_sendRawTransactionSync", |p, ctx, _| async move {
        send_raw_sync(&ctx, p).await
    })
    .expect("unique");
}

/// An `eth_call` / `eth_estimateGas` to run in the pending block's environment.
struct PendingCall {
    pending: Arc<PendingBlock>,
    req: TransactionRequest,
    overrides: call::CallOverrides,
    chain: flashnode_exec::ChainConfig,
    gas_cap: u64,
}

impl PendingCall {
    /// Some when the request names `pending` and a fresh pending block exists.
    fn from_params(ctx: &RpcContext, params: &Option<Value>) -> RpcResult<Option<Self>> {
        if !is_pending(&tag_at(params, 1)?) {
            return Ok(None);
        }
        let Some(pending) = ctx.overlay.pending() else { return Ok(None) };
        Ok(Some(Self {
            pending,
            req: request_at(params)?,
            overrides: overrides_at(params, 2)?,
            chain: ctx.overlay.chain().clone(),
            gas_cap: ctx.config.gas_cap,
        }))
    }

    /// Warms the upstream cache with the caller, the callee and the access list in one batch,
    /// so a cold call costs one round trip for them instead of one per read.
    async fn prefetch(&self) {
        let mut accounts = vec![self.req.from.unwrap_or_default()];
        if let Some(alloy_primitives::TxKind::Call(to)) = self.req.to {
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

    fn call(self) -> RpcResult<Value> {
        let db = self.overrides.database(self.pending.database()).map_err(call_error)?;
        let env = self.overrides.env(&self.pending.env);
        let out = call::call(db, &self.chain, &env, &self.req, self.gas_cap).map_err(call_error)?;
        to_json(out.output)
    }

    fn estimate(self) -> RpcResult<Value> {
        let mut probe = self.overrides.database(self.pending.database()).map_err(call_error)?;
        let balance = revm::Database::basic(&mut probe, self.req.from.unwrap_or_default())
            .map_err(|e| err(-32603, e.to_string()))?
            .map(|a| a.balance)
            .unwrap_or_default();
        let env = self.overrides.env(&self.pending.env);
        let db = self.pending.database();
        let overrides = &self.overrides;
        let gas = call::estimate_gas(
            || overrides.database(db.clone()).unwrap_or_else(|_| CacheDB::new(db.clone())),
            &self.chain,
            &env,
            &self.req,
            self.gas_cap,
            balance,
        )
        .map_err(call_error)?;
        to_json(U64::from(gas))
    }

    fn access_list(self) -> RpcResult<Value> {
        let db = self.pending.database();
        // Reject bad overrides up front; the factory below then cannot fail.
        self.overrides.database(db.clone()).map_err(call_error)?;
        let env = self.overrides.env(&self.pending.env);
        let overrides = &self.overrides;
        let out = call::create_access_list(
            || overrides.database(db.clone()).unwrap_or_else(|_| CacheDB::new(db.clone())),
            &self.chain,
            &env,
            &self.req,
            self.gas_cap,
        )
        .map_err(call_error)?;
        to_json(out)
    }
}

/// State overrides at `pos` and block overrides at `pos + 1`.
fn overrides_at(params: &Option<Value>, pos: usize) -> RpcResult<call::CallOverrides> {
    let get = |i: usize| params.as_ref().and_then(|p| p.get(i)).filter(|v| !v.is_null()).cloned();
    Ok(call::CallOverrides {
        state: get(pos).map(serde_json::from_value).transpose().map_err(invalid_params)?,
        block: get(pos + 1).map(serde_json::from_value).transpose().map_err(invalid_params)?,
    })
}

fn request_at(params: &Option<Value>) -> RpcResult<TransactionRequest> {
    let v = params
        .as_ref()
        .and_then(|p| p.get(0))
        .cloned()
        .ok_or_else(|| invalid_params("missing call object"))?;
    serde_json::from_value(v).map_err(invalid_params)
}

/// `eth_getLogs`: a range ending at `pending` is the upstream's logs up to `latest` plus the
/// preconfirmed logs that match; a range starting at `pending` is the preconfirmed logs only.
async fn get_logs(ctx: &RpcContext, p: &Params<'_>) -> RpcResult<Value> {
    let params = params_json(p)?;
    let raw = params
        .as_ref()
        .and_then(|p| p.get(0))
        .cloned()
        .ok_or_else(|| invalid_params("missing filter"))?;
    let filter: Filter = serde_json::from_value(raw.clone()).map_err(invalid_params)?;
    let (from, to) = match filter.block_option {
        FilterBlockOption::Range { from_block, to_block } => (from_block, to_block),
        FilterBlockOption::AtBlockHash(_) => return ctx.upstream.call("eth_getLogs", params).await,
    };
    let to_pending = to == Some(BlockNumberOrTag::Pending);
    let from_pending = from == Some(BlockNumberOrTag::Pending);
    if !to_pending && !from_pending {
        return ctx.upstream.call("eth_getLogs", params).await;
    }
    let mut logs: Vec<Value> = Vec::new();
    if !from_pending {
        let mut canonical = raw;
        canonical["toBlock"] = Value::String("latest".into());
        let got = ctx.upstream.call("eth_getLogs", Some(json!([canonical]))).await?;
        logs =
            serde_json::from_value(got).map_err(|e| err(-32603, format!("upstream logs: {e}")))?;
    }
    if let Some(pending) = ctx.overlay.pending() {
        let block = pending.context();
        for tx in pending.txs.iter() {
            for log in rpc_logs(tx, &block) {
                if filter.matches(&log.inner) {
                    logs.push(to_json(log)?);
                }
            }
        }
    }
    Ok(Value::Array(logs))
}

fn account_field(pending: &PendingBlock, method: &str, address: Address) -> RpcResult<Value> {
    let db = pending.database();
    let info = db.basic_ref(address).map_err(|e| err(-32603, e.to_string()))?.unwrap_or_default();
    match method {
        "eth_getBalance" => to_json(info.balance),
        "eth_getTransactionCount" => to_json(U64::from(info.nonce)),
        _ => {
            let code = match info.code {
                Some(c) => c.original_bytes(),
                None => db
                    .code_by_hash_ref(info.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
            };
            to_json(code)
        }
    }
}

/// EIP-7966: send, then answer with the receipt as soon as a flashblock (or a sealed block)
/// includes the transaction. Subscribes before sending and checks current state after, so a
/// receipt that lands in between is never missed.
async fn send_raw_sync(ctx: &RpcContext, p: Params<'_>) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let raw: Bytes = seq.next().map_err(invalid_params)?;
    let timeout_ms: Option<u64> = seq.optional_next().map_err(invalid_params)?;
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
                return ctx.upstream.call("eth_getTransactionReceipt", Some(json!([hash]))).await;
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
    Err(ErrorObjectOwned::owned(
        4,
        format!(
            "the transaction was added to the mempool but wasn't processed within {}ms",
            timeout.as_millis()
        ),
        Some(hash),
    ))
}
