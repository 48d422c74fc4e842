//! `eth_subscribe` on the RPC websocket: flashblocks (delta or whole block), flashblock
//! transactions, pending logs with `removed: true` retractions, and canonical heads and logs.

use crate::{
    api::EthPubSubApiServer,
    error::RpcError,
    limits::{ClientIp, IpPermit, PerIp},
    RpcContext,
};
use alloy_consensus::TxReceipt;
use alloy_rpc_types_eth::{Filter, Log};
use flashnode_exec::{rpc_logs, rpc_receipt, rpc_transaction, CanonicalBlock};
use flashnode_overlay::{DecodedFlashblock, OverlayEvent, PendingBlock};
use jsonrpsee::{
    core::{async_trait, SubscriptionResult},
    server::{PendingSubscriptionSink, SubscriptionMessage},
    types::{ErrorObjectOwned, Extensions},
    SubscriptionSink,
};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// What a subscriber asked for.
enum Kind {
    Flashblocks { full: bool },
    FlashblockTransactions { full: bool },
    PendingLogs(Box<Filter>),
    NewHeads,
    Logs(Box<Filter>),
}

fn parse_kind(name: Option<Value>, arg: Option<Value>) -> Result<Kind, ErrorObjectOwned> {
    let invalid =
        |m: String| ErrorObjectOwned::owned(crate::error::code::INVALID_PARAMS, m, None::<()>);
    let name: String = match name {
        // jsonrpsee's phrase for a missing parameter, as every other method answers it.
        None => return Err(RpcError::invalid_params("No more params").into()),
        Some(v) => serde_json::from_value(v).map_err(crate::error::invalid_params)?,
    };
    // `true`, `false`, `{"full": bool}` or nothing; anything else is a client's typo, refused
    // rather than silently served in the default shape.
    let flag = |arg: &Option<Value>| -> Result<bool, ErrorObjectOwned> {
        match arg {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Object(o)) if o.keys().all(|k| k == "full") => match o.get("full") {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(invalid(format!(
                    "invalid params: `full` must be true or false, got {other}"
                ))),
            },
            Some(other) => Err(invalid(format!(
                "invalid params: expected true, false or {{\"full\": bool}}, got {other}"
            ))),
        }
    };
    let filter = |arg: Option<Value>| -> Result<Box<Filter>, ErrorObjectOwned> {
        Ok(Box::new(match arg {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| invalid(format!("invalid log filter: {e}")))?,
            None => Filter::default(),
        }))
    };
    Ok(match name.as_str() {
        "newFlashblocks" => Kind::Flashblocks { full: flag(&arg)? },
        "newFlashblockTransactions" => Kind::FlashblockTransactions { full: flag(&arg)? },
        "pendingLogs" => Kind::PendingLogs(filter(arg)?),
        "newHeads" => Kind::NewHeads,
        "logs" => Kind::Logs(filter(arg)?),
        "newPendingTransactions" => {
            return Err(invalid(
                "newPendingTransactions is the mempool's: subscribe on the execution client (flashblock txs are on newFlashblockTransactions)".into(),
            ))
        }
        other => {
            return Err(invalid(format!(
                "unknown subscription {other:?}: expected newFlashblocks, newFlashblockTransactions, pendingLogs, newHeads or logs"
            )))
        }
    })
}

/// Answers `eth_subscribe`, at most `per_ip` live subscriptions per client IP.
#[derive(Clone, Debug)]
pub(crate) struct PubSub {
    ctx: RpcContext,
    per_ip: Arc<PerIp>,
}

impl PubSub {
    /// Over `ctx`, counting subscriptions in `per_ip`.
    pub(crate) fn new(ctx: RpcContext, per_ip: Arc<PerIp>) -> Self {
        Self { ctx, per_ip }
    }
}

#[async_trait]
impl EthPubSubApiServer for PubSub {
    async fn subscribe(
        &self,
        pending: PendingSubscriptionSink,
        ext: &Extensions,
        kind: Option<Value>,
        options: Option<Value>,
    ) -> SubscriptionResult {
        let kind = match parse_kind(kind, options) {
            Ok(k) => k,
            Err(e) => {
                pending.reject(e).await;
                return Ok(());
            }
        };
        // Connections served by [`crate::serve`] always carry their client's IP.
        let permit = match ext.get::<ClientIp>() {
            Some(ClientIp(ip)) => match self.per_ip.try_acquire(*ip) {
                Some(p) => Some(p),
                None => {
                    metrics::counter!(crate::limits::RPC_LIMITED_TOTAL, "what" => "subscription")
                        .increment(1);
                    let limit = self.per_ip.limit();
                    pending.reject(RpcError::TooManySubscriptions { limit }).await;
                    return Ok(());
                }
            },
            None => None,
        };
        serve(kind, pending, &self.ctx, permit).await
    }
}

async fn serve(
    kind: Kind,
    pending: PendingSubscriptionSink,
    ctx: &RpcContext,
    _permit: Option<IpPermit>,
) -> SubscriptionResult {
    // Subscribe before accepting, so nothing published in between is missed.
    let mut events = ctx.overlay.subscribe();
    let mut sink = pending.accept().await?;
    metrics::gauge!("flashnode_ws_subscriptions").increment(1.0);
    let res = async {
        loop {
            let ev = tokio::select! {
                _ = sink.closed() => return Ok(()),
                ev = events.recv() => ev,
            };
            let ev = match ev {
                Ok(ev) => ev,
                // Never skip silently: a subscriber that fell behind is told and must resubscribe.
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("flashnode_ws_lagged_total").increment(1);
                    return Err(
                        format!("subscription lagged behind by {n} events; resubscribe").into()
                    );
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            for msg in messages(&kind, &ev) {
                send(&mut sink, msg)?;
            }
        }
    }
    .await;
    metrics::gauge!("flashnode_ws_subscriptions").decrement(1.0);
    res
}

/// Queues a message without waiting: a subscriber whose buffer is full is dropped, so it never
/// slows the node or the other subscribers.
fn send(
    sink: &mut SubscriptionSink,
    msg: Value,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let raw = serde_json::value::to_raw_value(&msg)?;
    sink.try_send(SubscriptionMessage::from(raw)).map_err(|e| {
        metrics::counter!("flashnode_ws_lagged_total").increment(1);
        format!("subscriber too slow: {e}")
    })?;
    Ok(())
}

fn messages(kind: &Kind, ev: &OverlayEvent) -> Vec<Value> {
    match (kind, ev) {
        (Kind::Flashblocks { full }, OverlayEvent::Applied { block, flashblock }) => {
            vec![flashblock_message(block, flashblock, *full)]
        }
        (Kind::FlashblockTransactions { full }, OverlayEvent::Applied { block, .. }) => {
            let ctx = block.context();
            block.txs[block.first_new..]
                .iter()
                .map(|tx| {
                    if *full {
                        let mut v = serde_json::to_value(rpc_transaction(tx, Some(&ctx)))
                            .unwrap_or_default();
                        v["logs"] = serde_json::to_value(rpc_logs(tx, &ctx)).unwrap_or_default();
                        v
                    } else {
                        json!(tx.hash)
                    }
                })
                .collect()
        }
        (Kind::PendingLogs(filter), OverlayEvent::Applied { block, .. }) => {
            let ctx = block.context();
            matching(
                filter,
                block.txs[block.first_new..].iter().flat_map(|t| rpc_logs(t, &ctx)),
                false,
            )
        }
        (Kind::PendingLogs(filter), OverlayEvent::Dropped { block, first_dropped }) => {
            let ctx = block.context();
            matching(
                filter,
                block.txs[*first_dropped..].iter().flat_map(|t| rpc_logs(t, &ctx)),
                true,
            )
        }
        (Kind::NewHeads, OverlayEvent::Canonical(block)) => {
            vec![serde_json::to_value(alloy_rpc_types_eth::Header {
                hash: block.hash,
                inner: block.header.clone(),
                total_difficulty: None,
                size: None,
            })
            .unwrap_or_default()]
        }
        (Kind::Logs(filter), OverlayEvent::Canonical(block)) => {
            matching(filter, canonical_logs(block), false)
        }
        _ => Vec::new(),
    }
}

fn matching(filter: &Filter, logs: impl Iterator<Item = Log>, removed: bool) -> Vec<Value> {
    logs.filter(|l| filter.matches(&l.inner))
        .map(|mut l| {
            l.removed = removed;
            serde_json::to_value(l).unwrap_or_default()
        })
        .collect()
}

fn canonical_logs(block: &CanonicalBlock) -> impl Iterator<Item = Log> + '_ {
    let mut log_index = 0u64;
    block.receipts.iter().zip(block.tx_hashes.iter()).enumerate().flat_map(move |(i, (r, hash))| {
        let logs: Vec<Log> = r
            .logs()
            .iter()
            .map(|inner| {
                let l = Log {
                    inner: inner.clone(),
                    block_hash: Some(block.hash),
                    block_number: Some(block.header.number),
                    block_timestamp: Some(block.header.timestamp),
                    transaction_hash: Some(*hash),
                    transaction_index: Some(i as u64),
                    log_index: Some(log_index),
                    removed: false,
                };
                log_index += 1;
                l
            })
            .collect();
        logs
    })
}

/// One `newFlashblocks` message: the delta (new txs and receipts plus the cumulative header
/// fields), or with `full` the whole pending block as Base sends it. `blockHash` (`hash`) is
/// the pending block's provisional hash, and its transactions, receipts and logs carry the
/// same (README, "What the node serves"). A frame's `diff.post_exec_tx` is passed
/// on as `postExecTx`, the bytes as received.
fn flashblock_message(block: &PendingBlock, flashblock: &DecodedFlashblock, full: bool) -> Value {
    let mut msg = if full {
        serde_json::to_value(block.rpc_block(true)).unwrap_or_default()
    } else {
        delta_message(block)
    };
    if let (Some(raw), Some(obj)) = (&flashblock.post_exec_tx, msg.as_object_mut()) {
        obj.insert("postExecTx".into(), json!(raw));
    }
    msg
}

fn delta_message(block: &PendingBlock) -> Value {
    let ctx = block.context();
    let new = &block.txs[block.first_new..];
    json!({
        "blockNumber": format!("0x{:x}", block.number()),
        "index": block.index,
        "payloadId": block.payload_id,
        "blockHash": block.hash,
        "parentHash": block.header.parent_hash,
        "timestamp": format!("0x{:x}", block.header.timestamp),
        "gasUsed": format!("0x{:x}", block.header.gas_used),
        "stateRoot": block.header.state_root,
        "receiptsRoot": block.header.receipts_root,
        "logsBloom": block.header.logs_bloom,
        "transactions": new.iter().map(|t| rpc_transaction(t, Some(&ctx))).collect::<Vec<_>>(),
        "receipts": new.iter().map(|t| rpc_receipt(t, &ctx)).collect::<Vec<_>>(),
    })
}
