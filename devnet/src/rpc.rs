//! The devnet's canonical JSON-RPC (HTTP and WS on one port): the sealed chain, the pool, and
//! `devnet_dumpState` so a client can recompute the state root independently.

use crate::{
    chain::SealedBlock,
    filters::{block_hashes, FilterError, FilterKind},
    mempool::{decode_raw, AccountView, PoolRules},
    DevnetError, Shared,
};
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rpc_types_eth::{FeeHistory, TransactionRequest};
use flashnode_exec::{
    call, dump_state, estimate_gas, rpc_block, rpc_receipt, rpc_transaction, rpc_transaction_raw,
    state_root_of_dump, BlockContext, BlockEnvInput, CallError, CallOverrides, MemDb,
};
use flashnode_tasks::TaskExecutor;
use jsonrpsee::{
    server::{RpcModule, Server, ServerConfig},
    types::{ErrorObjectOwned, Params},
};
#[allow(unused_imports)]
use revm::Database as _;
use revm::{database::CacheDB, DatabaseRef};
use serde_json::json;
use std::{net::SocketAddr, sync::Arc};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Highest gas an `eth_call` may ask for.
pub const RPC_GAS_CAP: u64 = 50_000_000;
/// Suggested priority fee (0.001 gwei, as OP chains suggest).
pub const SUGGESTED_TIP: u128 = 1_000_000;
/// Most blocks one `eth_feeHistory` covers.
const MAX_FEE_HISTORY: u64 = 1024;

type RpcResult<T> = Result<T, ErrorObjectOwned>;

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

fn invalid_params(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    err(-32602, format!("invalid params: {msg}"))
}

/// A params parse error from jsonrpsee, with its reason (kept in `data`) as the message: its
/// `Display` is a debug dump of the whole object.
fn bad_params(e: ErrorObjectOwned) -> ErrorObjectOwned {
    match e.data().map(|d| serde_json::from_str::<serde_json::Value>(d.get())) {
        Some(Ok(serde_json::Value::String(reason))) => invalid_params(reason),
        Some(Ok(other)) => invalid_params(other),
        _ => invalid_params(e.message()),
    }
}

/// Maps a call failure to the JSON-RPC error geth returns: a revert is code 3 with its output
/// as the data, unreadable state -32603, anything else -32000.
pub fn call_error(e: CallError) -> ErrorObjectOwned {
    let (code, data) = match &e {
        CallError::Revert { output, .. } => (3, Some(output.clone())),
        CallError::State(_) => (-32603, None),
        _ => (-32000, None),
    };
    ErrorObjectOwned::owned(code, e.to_string(), data)
}

/// Binds `addr` and serves the canonical RPC until cancelled. The server is watched by the
/// critical task `devnet_rpc` of `tasks`: the server stopping before `cancel` is a failure.
pub async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Result<SocketAddr, DevnetError> {
    let config = ServerConfig::builder()
        .max_request_body_size(16 * 1024 * 1024)
        .max_connections(1_000)
        .build();
    let server = Server::builder()
        .set_config(config)
        .build(addr)
        .await
        .map_err(|source| DevnetError::Bind { addr, source })?;
    let local = server.local_addr().map_err(|source| DevnetError::Bind { addr, source })?;
    let handle = server.start(module(shared));
    info!(addr = %local, "devnet canonical RPC listening on http://{local}");
    tasks.spawn_critical("devnet_rpc", async move {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = handle.stop();
            }
            // The server stopped by itself: the task ends, which is the failure.
            _ = handle.clone().stopped() => {}
        }
    });
    Ok(local)
}

/// A resolved block and the state after it.
struct At {
    block: Arc<SealedBlock>,
    state: Arc<MemDb>,
}

pub(crate) fn resolve_block(
    shared: &Shared,
    id: Option<BlockId>,
) -> RpcResult<Option<Arc<SealedBlock>>> {
    let store = shared.store.read();
    Ok(match id.unwrap_or_default() {
        BlockId::Hash(h) => store.by_hash(&h.block_hash).cloned(),
        BlockId::Number(n) => match n {
            BlockNumberOrTag::Number(n) => store.by_number(n).cloned(),
            BlockNumberOrTag::Earliest => store.by_number(0).cloned(),
            // The devnet is the canonical chain: its tip is latest, safe, finalized and pending.
            _ => Some(store.latest().clone()),
        },
    })
}

fn resolve_state(shared: &Shared, id: Option<BlockId>) -> RpcResult<At> {
    let block = resolve_block(shared, id)?.ok_or_else(|| err(-32001, "block not found"))?;
    let store = shared.store.read();
    let state = store.state_at(block.header.number).cloned().ok_or_else(|| {
        err(-32000, format!("historical state for block {} is not available", block.header.number))
    })?;
    Ok(At { block, state })
}

fn is_pending(id: &Option<BlockId>) -> bool {
    matches!(id, Some(BlockId::Number(BlockNumberOrTag::Pending)))
}

fn account(state: &MemDb, address: Address) -> AccountView {
    state
        .basic_ref(address)
        .ok()
        .flatten()
        .map(|a| AccountView { nonce: a.nonce, balance: a.balance })
        .unwrap_or_default()
}

fn addr_and_block(params: Params<'_>) -> RpcResult<(Address, Option<BlockId>)> {
    let mut seq = params.sequence();
    let address: Address = seq.next().map_err(bad_params)?;
    let id: Option<BlockId> = seq.optional_next().map_err(bad_params)?;
    Ok((address, id))
}

/// What the state after a block changed from the state before it, in the prestate tracer's
/// diff-mode shape (`pre`: the changed accounts' fields and slots before, `post`: after; a slot
/// cleared to zero is absent from `post`). The devnet keeps states per block, not per
/// transaction, so the answer is one entry for the whole block (`txHash` null) where a tracing
/// client gives one per transaction; the union is the same.
fn block_state_diff(pre: &MemDb, post: &MemDb) -> serde_json::Value {
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    let word = |v: &U256| json!(B256::from(v.to_be_bytes::<32>()));
    for change in crate::reth::state_changes(pre, post) {
        let (mut b, mut a) = (serde_json::Map::new(), serde_json::Map::new());
        let old_info = change.before.unwrap_or_default();
        let new_info = change.after.unwrap_or_default();
        if old_info.balance != new_info.balance {
            b.insert("balance".into(), json!(old_info.balance));
            a.insert("balance".into(), json!(new_info.balance));
        }
        if old_info.nonce != new_info.nonce {
            b.insert("nonce".into(), json!(old_info.nonce));
            a.insert("nonce".into(), json!(new_info.nonce));
        }
        if old_info.code_hash != new_info.code_hash {
            let code = |i: &revm::state::AccountInfo| {
                i.code.as_ref().map(|c| c.original_bytes()).unwrap_or_default()
            };
            b.insert("code".into(), json!(code(&old_info)));
            a.insert("code".into(), json!(code(&new_info)));
        }
        let (mut bs, mut as_) = (serde_json::Map::new(), serde_json::Map::new());
        for (slot, old, new) in &change.slots {
            let key = B256::from(slot.to_be_bytes::<32>()).to_string();
            if !old.is_zero() {
                bs.insert(key.clone(), word(old));
            }
            if !new.is_zero() {
                as_.insert(key, word(new));
            }
        }
        if !bs.is_empty() {
            b.insert("storage".into(), serde_json::Value::Object(bs));
        }
        if !as_.is_empty() {
            a.insert("storage".into(), serde_json::Value::Object(as_));
        }
        if b.is_empty() && a.is_empty() {
            continue;
        }
        before.insert(change.address.to_string(), serde_json::Value::Object(b));
        after.insert(change.address.to_string(), serde_json::Value::Object(a));
    }
    json!([{ "txHash": null, "result": { "pre": before, "post": after } }])
}

/// The next sealed block for a subscriber; `None` once it closed or the chain stopped. A
/// subscriber that lagged skips what it missed when `lossy` (as reth's chain notifications
/// do), else it is done.
pub(crate) async fn next_sealed(
    sink: &jsonrpsee::SubscriptionSink,
    sealed: &mut tokio::sync::broadcast::Receiver<Arc<SealedBlock>>,
    lossy: bool,
) -> Option<Arc<SealedBlock>> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            _ = sink.closed() => return None,
            b = sealed.recv() => match b {
                Ok(b) => return Some(b),
                Err(RecvError::Lagged(_)) if lossy => continue,
                Err(_) => return None,
            },
        }
    }
}

/// The RPC methods.
pub fn module(shared: Arc<Shared>) -> RpcModule<Arc<Shared>> {
    let reth_namespace = shared.config.reth_namespace;
    let mut m = RpcModule::new(shared);
    let chain_id = m.register_method("eth_chainId", |_, s, _| -> RpcResult<U64> {
        Ok(U64::from(s.chain.chain_id))
    });
    chain_id.expect("method names are unique");
    m.register_method("net_version", |_, s, _| -> RpcResult<String> {
        Ok(s.chain.chain_id.to_string())
    })
    .expect("unique");
    m.register_method("net_listening", |_, _, _| -> RpcResult<bool> { Ok(true) }).expect("unique");
    // What an op-node beside this chain would answer (op-node's `rollup.Config`): every fork
    // through Isthmus at genesis, Canyon's EIP-1559 parameters, the block time in whole
    // seconds (op-node has no shorter one).
    m.register_method("optimism_rollupConfig", |_, s, _| -> RpcResult<serde_json::Value> {
        let store = s.store.read();
        let genesis = store.by_number(0).ok_or_else(|| err(-32000, "no genesis"))?;
        let params = &s.chain.base_fee_params;
        Ok(serde_json::json!({
            "genesis": {
                "l2": { "hash": genesis.hash, "number": 0 },
                "l2_time": genesis.header.timestamp,
            },
            "block_time": s.config.block_time.as_secs().max(1),
            "l2_chain_id": s.chain.chain_id,
            "regolith_time": 0,
            "canyon_time": 0,
            "delta_time": 0,
            "ecotone_time": 0,
            "fjord_time": 0,
            "granite_time": 0,
            "holocene_time": 0,
            "isthmus_time": 0,
            "chain_op_config": {
                "eip1559Elasticity": params.elasticity_multiplier as u64,
                "eip1559Denominator": 50,
                "eip1559DenominatorCanyon": params.max_change_denominator as u64,
            },
        }))
    })
    .expect("unique");
    m.register_method("web3_clientVersion", |_, _, _| -> RpcResult<String> {
        Ok(format!("flashnode-devnet/v{}", env!("CARGO_PKG_VERSION")))
    })
    .expect("unique");
    m.register_method("eth_syncing", |_, _, _| -> RpcResult<bool> { Ok(false) }).expect("unique");
    m.register_method("eth_accounts", |_, _, _| -> RpcResult<Vec<Address>> { Ok(Vec::new()) })
        .expect("unique");
    m.register_method("eth_blockNumber", |_, s, _| -> RpcResult<U64> {
        Ok(U64::from(s.store.read().latest().header.number))
    })
    .expect("unique");
    m.register_method("eth_gasPrice", |_, s, _| -> RpcResult<U256> {
        Ok(U256::from(s.pending.load().base_fee as u128 + SUGGESTED_TIP))
    })
    .expect("unique");
    m.register_method("eth_maxPriorityFeePerGas", |_, _, _| -> RpcResult<U256> {
        Ok(U256::from(SUGGESTED_TIP))
    })
    .expect("unique");
    m.register_method("eth_getBlockByNumber", |p, s, _| -> RpcResult<serde_json::Value> {
        let mut seq = p.sequence();
        let n: BlockNumberOrTag = seq.next().map_err(bad_params)?;
        let full: Option<bool> = seq.optional_next().map_err(bad_params)?;
        block_json(s, Some(BlockId::Number(n)), full.unwrap_or(false))
    })
    .expect("unique");
    m.register_method("debug_traceBlockByHash", |p, s, _| -> RpcResult<serde_json::Value> {
        let mut seq = p.sequence();
        let hash: B256 = seq.next().map_err(bad_params)?;
        let options: Option<serde_json::Value> = seq.optional_next().map_err(bad_params)?;
        let options = options.unwrap_or_default();
        let prestate_diff =
            options["tracer"] == "prestateTracer" && options["tracerConfig"]["diffMode"] == true;
        if !prestate_diff {
            return Err(err(
                -32602,
                "the devnet traces blocks with the prestate tracer in diff mode only \
                 ({\"tracer\":\"prestateTracer\",\"tracerConfig\":{\"diffMode\":true}})",
            ));
        }
        let store = s.store.read();
        let block = store.by_hash(&hash).ok_or_else(|| err(-32001, "block not found"))?;
        let number = block.header.number;
        let (Some(pre), Some(post)) =
            (number.checked_sub(1).and_then(|n| store.state_at(n)), store.state_at(number))
        else {
            return Err(err(-32000, format!("the state of block {number} is no longer kept")));
        };
        Ok(block_state_diff(pre, post))
    })
    .expect("unique");
    m.register_method("eth_getBlockByHash", |p, s, _| -> RpcResult<serde_json::Value> {
        let mut seq = p.sequence();
        let h: B256 = seq.next().map_err(bad_params)?;
        let full: Option<bool> = seq.optional_next().map_err(bad_params)?;
        block_json(s, Some(BlockId::from(h)), full.unwrap_or(false))
    })
    .expect("unique");
    m.register_method(
        "eth_getBlockTransactionCountByNumber",
        |p, s, _| -> RpcResult<Option<U64>> {
            let n: BlockNumberOrTag = p.one().map_err(bad_params)?;
            Ok(resolve_block(s, Some(BlockId::Number(n)))?.map(|b| U64::from(b.txs.len())))
        },
    )
    .expect("unique");
    m.register_method("eth_getBlockReceipts", |p, s, _| -> RpcResult<serde_json::Value> {
        let id: BlockId = p.one().map_err(bad_params)?;
        let Some(block) = resolve_block(s, Some(id))? else { return Ok(serde_json::Value::Null) };
        let ctx = BlockContext::of(&block.header, block.hash);
        let receipts: Vec<_> = block.txs.iter().map(|t| rpc_receipt(t, &ctx)).collect();
        serde_json::to_value(receipts).map_err(|e| err(-32603, e.to_string()))
    })
    .expect("unique");
    m.register_method("eth_getTransactionReceipt", |p, s, _| -> RpcResult<serde_json::Value> {
        let hash: B256 = p.one().map_err(bad_params)?;
        let store = s.store.read();
        let Some((block, i)) = store.transaction(&hash) else { return Ok(serde_json::Value::Null) };
        let ctx = BlockContext::of(&block.header, block.hash);
        serde_json::to_value(rpc_receipt(&block.txs[i], &ctx))
            .map_err(|e| err(-32603, e.to_string()))
    })
    .expect("unique");
    m.register_method("eth_getTransactionByHash", |p, s, _| -> RpcResult<serde_json::Value> {
        let hash: B256 = p.one().map_err(bad_params)?;
        let store = s.store.read();
        if let Some((block, i)) = store.transaction(&hash) {
            let ctx = BlockContext::of(&block.header, block.hash);
            return serde_json::to_value(rpc_transaction(&block.txs[i], Some(&ctx)))
                .map_err(|e| err(-32603, e.to_string()));
        }
        drop(store);
        let pool = s.mempool.lock();
        match pool.get(&hash) {
            Some(tx) => serde_json::to_value(rpc_transaction_raw(
                tx.tx.clone(),
                tx.sender,
                None,
                None,
                None,
            ))
            .map_err(|e| err(-32603, e.to_string())),
            None => Ok(serde_json::Value::Null),
        }
    })
    .expect("unique");
    m.register_method("eth_getBalance", |p, s, _| -> RpcResult<U256> {
        let (address, id) = addr_and_block(p)?;
        Ok(account(&resolve_state(s, id)?.state, address).balance)
    })
    .expect("unique");
    m.register_method("eth_getTransactionCount", |p, s, _| -> RpcResult<U64> {
        let (address, id) = addr_and_block(p)?;
        if is_pending(&id) {
            let pending = s.pending.load();
            let latest = account(s.store.read().latest_state(), address).nonce;
            let state_nonce = account(&pending.state, address).nonce.max(latest);
            return Ok(U64::from(s.mempool.lock().pending_nonce(address, state_nonce)));
        }
        Ok(U64::from(account(&resolve_state(s, id)?.state, address).nonce))
    })
    .expect("unique");
    m.register_method("eth_getCode", |p, s, _| -> RpcResult<Bytes> {
        let (address, id) = addr_and_block(p)?;
        let at = resolve_state(s, id)?;
        let info = at.state.basic_ref(address).ok().flatten();
        Ok(match info {
            Some(info) => match info.code {
                Some(code) => code.original_bytes(),
                None => at
                    .state
                    .code_by_hash_ref(info.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
            },
            None => Bytes::new(),
        })
    })
    .expect("unique");
    m.register_method("eth_getStorageAt", |p, s, _| -> RpcResult<B256> {
        let mut seq = p.sequence();
        let address: Address = seq.next().map_err(bad_params)?;
        let slot: U256 = seq.next().map_err(bad_params)?;
        let id: Option<BlockId> = seq.optional_next().map_err(bad_params)?;
        let at = resolve_state(s, id)?;
        let value = at.state.storage_ref(address, slot).unwrap_or_default();
        Ok(B256::from(value))
    })
    .expect("unique");
    // Executions run on blocking threads: a gas-cap call takes seconds, and inline it would
    // hold the runtime the sequencer and the flashblock websocket run on.
    m.register_blocking_method("eth_call", |p, s, _| -> RpcResult<Bytes> {
        let mut seq = p.sequence();
        let req: TransactionRequest = seq.next().map_err(bad_params)?;
        let id: Option<BlockId> = seq.optional_next().map_err(bad_params)?;
        let overrides = CallOverrides {
            state: seq.optional_next().map_err(bad_params)?,
            block: seq.optional_next().map_err(bad_params)?,
        };
        let at = resolve_state(&s, id)?;
        let env = overrides.env(&BlockEnvInput::from_header(&at.block.header));
        let db = overrides.database(&*at.state).map_err(call_error)?;
        call(db, &s.chain, &env, &req, RPC_GAS_CAP).map(|o| o.output).map_err(call_error)
    })
    .expect("unique");
    m.register_blocking_method("eth_estimateGas", |p, s, _| -> RpcResult<U64> {
        let mut seq = p.sequence();
        let req: TransactionRequest = seq.next().map_err(bad_params)?;
        let id: Option<BlockId> = seq.optional_next().map_err(bad_params)?;
        let at = resolve_state(&s, id)?;
        let env = BlockEnvInput::from_header(&at.block.header);
        let balance = account(&at.state, req.from.unwrap_or_default()).balance;
        estimate_gas(|| CacheDB::new(&*at.state), &s.chain, &env, &req, RPC_GAS_CAP, balance)
            .map(U64::from)
            .map_err(call_error)
    })
    .expect("unique");
    m.register_method("eth_feeHistory", |p, s, _| -> RpcResult<FeeHistory> {
        let mut seq = p.sequence();
        let count: U64 = seq.next().map_err(bad_params)?;
        let newest: BlockNumberOrTag = seq.next().map_err(bad_params)?;
        let percentiles: Option<Vec<f64>> = seq.optional_next().map_err(bad_params)?;
        fee_history(s, count.to::<u64>(), newest, percentiles)
    })
    .expect("unique");
    m.register_method("eth_sendRawTransaction", |p, s, _| -> RpcResult<B256> {
        let raw: Bytes = p.one().map_err(bad_params)?;
        send_raw(s, &raw)
    })
    .expect("unique");
    m.register_method("eth_getLogs", |p, s, _| -> RpcResult<Vec<alloy_rpc_types_eth::Log>> {
        let filter: alloy_rpc_types_eth::Filter = p.one().map_err(bad_params)?;
        get_logs(s, &filter)
    })
    .expect("unique");
    m.register_method("eth_newFilter", |p, s, _| -> RpcResult<U256> {
        let filter: alloy_rpc_types_eth::Filter = p.one().map_err(bad_params)?;
        let latest = s.store.read().latest().header.number;
        s.filters.lock().install(FilterKind::Logs(Box::new(filter)), latest).map_err(filter_err)
    })
    .expect("unique");
    m.register_method("eth_newBlockFilter", |_, s, _| -> RpcResult<U256> {
        let latest = s.store.read().latest().header.number;
        s.filters.lock().install(FilterKind::Blocks, latest).map_err(filter_err)
    })
    .expect("unique");
    m.register_method("eth_getFilterChanges", |p, s, _| -> RpcResult<serde_json::Value> {
        let id: U256 = p.one().map_err(bad_params)?;
        let latest = s.store.read().latest().header.number;
        let poll = s.filters.lock().poll(id, latest).map_err(filter_err)?;
        let answer = match poll.kind {
            FilterKind::Blocks => {
                let store = s.store.read();
                serde_json::to_value(block_hashes(poll.from, poll.to, |n| {
                    store.by_number(n).map(|b| b.hash)
                }))
            }
            FilterKind::Logs(_) if poll.from > poll.to => Ok(json!([])),
            FilterKind::Logs(filter) => {
                let range = filter.from_block(poll.from).to_block(poll.to);
                serde_json::to_value(get_logs(s, &range)?)
            }
        };
        answer.map_err(|e| err(-32603, e.to_string()))
    })
    .expect("unique");
    m.register_method("eth_getFilterLogs", |p, s, _| -> RpcResult<serde_json::Value> {
        let id: U256 = p.one().map_err(bad_params)?;
        match s.filters.lock().get(id).map_err(filter_err)? {
            FilterKind::Logs(filter) => {
                serde_json::to_value(get_logs(s, &filter)?).map_err(|e| err(-32603, e.to_string()))
            }
            FilterKind::Blocks => Err(err(-32000, "filter not found")),
        }
    })
    .expect("unique");
    m.register_method("eth_uninstallFilter", |p, s, _| -> RpcResult<bool> {
        let id: U256 = p.one().map_err(bad_params)?;
        Ok(s.filters.lock().uninstall(id))
    })
    .expect("unique");
    // `eth_subscribe("newHeads")` over the websocket, as an execution client serves it: a
    // sidecar whose upstream URL is ws:// is told of each sealed block at once. Other kinds
    // are refused; a subscriber that falls behind is dropped.
    m.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, s, _| async move {
            let kind: String = match params.one() {
                Ok(k) => k,
                Err(e) => {
                    pending.reject(bad_params(e)).await;
                    return Ok(());
                }
            };
            if kind != "newHeads" {
                pending.reject(invalid_params(format!("unsupported subscription {kind}"))).await;
                return Ok(());
            }
            let mut sealed = s.sealed.subscribe();
            let mut sink = pending.accept().await?;
            while let Some(block) = next_sealed(&sink, &mut sealed, false).await {
                let header = alloy_rpc_types_eth::Header {
                    hash: block.hash,
                    inner: block.header.clone(),
                    total_difficulty: None,
                    size: None,
                };
                let msg = serde_json::value::to_raw_value(&header)?;
                if sink.try_send(msg).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        },
    )
    .expect("unique");
    if reth_namespace {
        crate::reth::register(&mut m);
    }
    m.register_method("devnet_injectTailReorg", |_, s, _| -> RpcResult<bool> {
        // Test fault injection: the next block is sealed without its last flashblock.
        s.inject_tail_reorg.store(true, std::sync::atomic::Ordering::Release);
        Ok(true)
    })
    .expect("unique");
    m.register_method("devnet_dumpState", |p, s, _| -> RpcResult<serde_json::Value> {
        let id: Option<BlockId> = p.sequence().optional_next().map_err(bad_params)?;
        let at = resolve_state(s, id)?;
        let dump = dump_state(&at.state);
        Ok(json!({
            "blockNumber": U64::from(at.block.header.number),
            "stateRoot": state_root_of_dump(&dump),
            "accounts": dump,
        }))
    })
    .expect("unique");
    m
}

/// geth's answer to a filter call it cannot serve (-32000, "filter not found").
fn filter_err(e: FilterError) -> ErrorObjectOwned {
    err(-32000, e.to_string())
}

/// Most blocks one `eth_getLogs` may span, as public endpoints limit it.
pub const MAX_LOG_RANGE: u64 = 10_000;

fn get_logs(
    s: &Shared,
    filter: &alloy_rpc_types_eth::Filter,
) -> RpcResult<Vec<alloy_rpc_types_eth::Log>> {
    use alloy_rpc_types_eth::FilterBlockOption;
    let store = s.store.read();
    let latest = store.latest().header.number;
    let resolve = |tag: Option<BlockNumberOrTag>| match tag {
        Some(BlockNumberOrTag::Number(n)) => n.min(latest),
        Some(BlockNumberOrTag::Earliest) => 0,
        _ => latest,
    };
    let blocks: Vec<Arc<SealedBlock>> = match filter.block_option {
        FilterBlockOption::AtBlockHash(h) => store
            .by_hash(&h)
            .cloned()
            .map(|b| vec![b])
            .ok_or_else(|| err(-32001, "block not found"))?,
        FilterBlockOption::Range { from_block, to_block } => {
            let (from, to) = (resolve(from_block), resolve(to_block));
            if from > to {
                return Err(invalid_params("fromBlock is after toBlock"));
            }
            if to - from >= MAX_LOG_RANGE {
                return Err(err(-32005, format!("query exceeds max block range {MAX_LOG_RANGE}")));
            }
            (from..=to).filter_map(|n| store.by_number(n).cloned()).collect()
        }
    };
    let mut out = Vec::new();
    for block in blocks {
        if !filter.matches_bloom(block.header.logs_bloom) {
            continue;
        }
        let ctx = BlockContext::of(&block.header, block.hash);
        for tx in &block.txs {
            out.extend(
                flashnode_exec::rpc_logs(tx, &ctx).into_iter().filter(|l| filter.matches(&l.inner)),
            );
        }
    }
    Ok(out)
}

fn block_json(s: &Shared, id: Option<BlockId>, full: bool) -> RpcResult<serde_json::Value> {
    match resolve_block(s, id)? {
        Some(b) => serde_json::to_value(rpc_block(&b.header, b.hash, &b.txs, full))
            .map_err(|e| err(-32603, e.to_string())),
        None => Ok(serde_json::Value::Null),
    }
}

/// Validates and pools a raw transaction.
pub fn send_raw(s: &Shared, raw: &[u8]) -> RpcResult<B256> {
    let pending = s.pending.load();
    let rules = PoolRules {
        chain_id: s.chain.chain_id,
        gas_limit: s.config.gas_limit,
        base_fee: pending.base_fee,
        max_txs: s.config.max_pool_txs,
    };
    let tx = decode_raw(raw, &rules).map_err(|e| err(e.code(), e.to_string()))?;
    let already_mined = s.store.read().transaction(&tx.hash).is_some();
    if already_mined || pending.tx_hashes.contains(&tx.hash) {
        return Err(err(-32000, "already known"));
    }
    let view = account(&pending.state, tx.sender);
    let hash =
        s.mempool.lock().insert(tx, view, &rules).map_err(|e| err(e.code(), e.to_string()))?;
    metrics::counter!("flashnode_devnet_txs_accepted_total").increment(1);
    Ok(hash)
}

fn fee_history(
    s: &Shared,
    count: u64,
    newest: BlockNumberOrTag,
    percentiles: Option<Vec<f64>>,
) -> RpcResult<FeeHistory> {
    if let Some(p) = &percentiles {
        if p.len() > 100
            || p.windows(2).any(|w| w[0] > w[1])
            || p.iter().any(|x| !(0.0..=100.0).contains(x))
        {
            return Err(invalid_params("reward percentiles must be ascending values in [0, 100]"));
        }
    }
    let store = s.store.read();
    let latest = store.latest().header.number;
    let newest = match newest {
        BlockNumberOrTag::Number(n) => n.min(latest),
        BlockNumberOrTag::Earliest => 0,
        _ => latest,
    };
    let count = count.clamp(1, MAX_FEE_HISTORY).min(newest + 1);
    let oldest = newest + 1 - count;
    let mut history = FeeHistory { oldest_block: oldest, ..Default::default() };
    let mut rewards = Vec::new();
    for n in oldest..=newest {
        let Some(block) = store.by_number(n) else { break };
        let h = &block.header;
        history.base_fee_per_gas.push(h.base_fee_per_gas.unwrap_or_default() as u128);
        history.gas_used_ratio.push(h.gas_used as f64 / h.gas_limit.max(1) as f64);
        history.base_fee_per_blob_gas.push(0);
        history.blob_gas_used_ratio.push(0.0);
        if let Some(p) = &percentiles {
            rewards.push(block_rewards(block, p));
        }
    }
    if let Some(last) = store.by_number(newest) {
        history
            .base_fee_per_gas
            .push(last.header.next_block_base_fee(s.chain.base_fee_params).unwrap_or_default()
                as u128);
        history.base_fee_per_blob_gas.push(0);
    }
    history.reward = percentiles.map(|_| rewards);
    Ok(history)
}

/// Gas-weighted tip percentiles of one block, as geth computes them.
fn block_rewards(block: &SealedBlock, percentiles: &[f64]) -> Vec<u128> {
    use alloy_consensus::Transaction;
    let base_fee = block.header.base_fee_per_gas.unwrap_or_default();
    let mut tips: Vec<(u128, u64)> = block
        .txs
        .iter()
        .filter(|t| !t.tx.is_deposit())
        .map(|t| (t.tx.effective_tip_per_gas(base_fee).unwrap_or_default(), t.gas_used))
        .collect();
    if tips.is_empty() {
        return vec![0; percentiles.len()];
    }
    tips.sort_unstable();
    let total: u64 = tips.iter().map(|(_, g)| g).sum();
    percentiles
        .iter()
        .map(|p| {
            let threshold = (total as f64 * p / 100.0) as u64;
            let mut acc = 0;
            for (tip, gas) in &tips {
                acc += gas;
                if acc >= threshold {
                    return *tip;
                }
            }
            tips.last().map(|t| t.0).unwrap_or_default()
        })
        .collect()
}
