//! `eth_simulateV1` (execution-apis): chained simulated blocks of calls with per-block state and
//! block overrides, over any state. The first block is the block `base` describes (for
//! `pending`, the flashblock block N+1 on top of its preconfirmed state); later blocks follow it.

use crate::{
    builder::{receipts_root, BlockEnvInput, ExecutedTx},
    call::{
        apply_block_overrides, apply_state_overrides, decode_revert_reason, tx_env, Budget,
        BudgetInspector, CallError, TRANSFER_GAS,
    },
    chain::ChainConfig,
    convert::{rpc_block, rpc_logs, BlockContext},
    error::{split_evm_error, Rejection},
};
use alloy_consensus::{
    proofs::ordered_trie_root_with_encoder, Eip658Value, Header, Receipt, SignableTransaction,
    TxEip1559, EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::{eip2718::Encodable2718, eip7685::EMPTY_REQUESTS_HASH};
use alloy_evm::{Evm, EvmFactory};
use alloy_op_evm::{OpEvmFactory, OpTx, OpTxError};
use alloy_primitives::{Bloom, Signature, TxKind, B256, U256};
use alloy_rpc_types_eth::{
    simulate::{
        SimCallResult, SimulateError, SimulatePayload, SimulatedBlock, MAX_SIMULATE_BLOCKS,
    },
    Block, TransactionRequest,
};
use op_alloy_consensus::{OpReceipt, OpTxEnvelope};
use op_alloy_rpc_types::Transaction;
use op_revm::OpHaltReason;
use revm::{
    context_interface::result::{EVMError, ExecutionResult, HaltReason},
    database::CacheDB,
    database_interface::DatabaseRef,
    Database, DatabaseCommit,
};

/// Most calls one request may simulate across all its blocks.
pub const MAX_SIMULATE_CALLS: usize = 1_000;
/// Seconds between simulated blocks when no timestamp is given (geth's default).
pub const SIMULATE_TIMESTAMP_INCREMENT: u64 = 12;

/// Why a whole simulation failed: the request is invalid, a block is out of order or over its
/// gas, the EVM refused a call, or a call failed as a whole (state, budget).
#[derive(Debug, thiserror::Error)]
pub enum SimulateFailure {
    /// The request asks for `traceTransfers`, which this node does not support.
    #[error("traceTransfers is not supported by this node")]
    TraceTransfersUnsupported,
    /// More blocks than a simulation may have.
    #[error("too many blocks (at most {limit})")]
    TooManyBlocks {
        /// Blocks one simulation may have.
        limit: u64,
    },
    /// More calls, over all blocks, than [`MAX_SIMULATE_CALLS`].
    #[error("too many calls ({calls}, at most {limit})")]
    TooManyCalls {
        /// Calls in the request.
        calls: usize,
        /// Calls one request may have.
        limit: usize,
    },
    /// The gas the calls ask for, summed, is above the request's cap.
    #[error("the calls ask for {asked} gas in all, above the cap of {cap} per request")]
    GasAboveCap {
        /// Gas the calls ask for in all.
        asked: u64,
        /// The request's cap.
        cap: u64,
    },
    /// A block override sets `blockHash`, which this node does not support.
    #[error("blockHash overrides are not supported in eth_simulateV1")]
    BlockHashOverride,
    /// A block's number is not above the previous block's.
    #[error("block numbers must be in order: {number} <= {prev}")]
    BlockNumberNotIncreasing {
        /// The block's number.
        number: u64,
        /// The previous block's number.
        prev: u64,
    },
    /// A block's number skips ahead of the previous block's (not supported).
    #[error("gaps between simulated block numbers are not supported")]
    BlockNumberGap {
        /// The block's number.
        number: u64,
        /// The previous block's number.
        prev: u64,
    },
    /// A block's timestamp is not above the previous block's.
    #[error("block timestamps must be in order: {timestamp} <= {prev}")]
    TimestampNotIncreasing {
        /// The block's timestamp.
        timestamp: u64,
        /// The previous block's timestamp.
        prev: u64,
    },
    /// The first block's number is before the block the simulation starts on.
    #[error("block number {number} is before the base block {base}")]
    BlockBeforeBase {
        /// The first block's number.
        number: u64,
        /// The base block's number.
        base: u64,
    },
    /// A call asks for more gas than its block has left.
    #[error("block gas limit reached: call {index} wants {gas}, {remaining} left")]
    BlockGasLimitReached {
        /// The call's index in its block.
        index: usize,
        /// Gas the call asks for.
        gas: u64,
        /// Gas the block has left.
        remaining: u64,
    },
    /// A call without a gas limit comes after the request's gas is spent.
    #[error("call {index}: the request's gas is spent ({left} left); the cap is per request")]
    RequestGasSpent {
        /// The call's index in its block.
        index: usize,
        /// Gas the request has left.
        left: u64,
    },
    /// A call asks for more gas than the request has left.
    #[error("call {index}: gas {gas} above the {left} left of the request's cap")]
    CallGasAboveRequestCap {
        /// The call's index in its block.
        index: usize,
        /// Gas the call asks for.
        gas: u64,
        /// Gas the request has left.
        left: u64,
    },
    /// The EVM refused a call (nonce, fee, balance or gas-limit checks).
    #[error("call {index}: {rejection}")]
    Rejected {
        /// The call's index in its block.
        index: usize,
        /// What the EVM refused.
        #[source]
        rejection: Rejection,
    },
    /// A call failed as a whole: an invalid request or override, unreadable state, the
    /// request's budget spent or its client gone.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A simulated block as the RPC returns it.
pub type SimulatedRpcBlock = SimulatedBlock<Block<Transaction>>;

/// Runs `payload` over `db`, the first block in `base`'s environment. `gas_cap` is the gas of
/// the whole request (summed over its calls, not per call), and `budget` bounds its time.
pub fn simulate<D>(
    db: D,
    chain: &ChainConfig,
    base: &BlockEnvInput,
    payload: &SimulatePayload,
    gas_cap: u64,
    budget: &Budget,
) -> Result<Vec<SimulatedRpcBlock>, SimulateFailure>
where
    D: DatabaseRef + core::fmt::Debug,
    D::Error: core::error::Error + Send + Sync + 'static,
{
    if payload.trace_transfers {
        return Err(SimulateFailure::TraceTransfersUnsupported);
    }
    if payload.block_state_calls.len() as u64 > MAX_SIMULATE_BLOCKS {
        return Err(SimulateFailure::TooManyBlocks { limit: MAX_SIMULATE_BLOCKS });
    }
    let calls: usize = payload.block_state_calls.iter().map(|b| b.calls.len()).sum();
    if calls > MAX_SIMULATE_CALLS {
        return Err(SimulateFailure::TooManyCalls { calls, limit: MAX_SIMULATE_CALLS });
    }
    // Refused before anything runs: the gas the calls ask for is more than the request may use.
    // A call asking more than its block's gas limit fails on its own (-38015), so it is not
    // counted here.
    let asked = payload
        .block_state_calls
        .iter()
        .flat_map(|b| {
            let limit =
                b.block_overrides.as_ref().and_then(|o| o.gas_limit).unwrap_or(base.gas_limit);
            b.calls.iter().filter_map(move |c| c.gas.filter(|g| *g <= limit))
        })
        .fold(0u64, u64::saturating_add);
    if asked > gas_cap {
        return Err(SimulateFailure::GasAboveCap { asked, cap: gas_cap });
    }
    let mut gas_left = gas_cap;
    let validation = payload.validation;
    let mut db = CacheDB::new(db);
    let mut out = Vec::with_capacity(payload.block_state_calls.len());
    let mut prev: Option<(Header, B256)> = None;
    for block in &payload.block_state_calls {
        let mut env = match &prev {
            None => base.clone(),
            Some((header, hash)) => BlockEnvInput {
                number: header.number + 1,
                timestamp: header.timestamp + SIMULATE_TIMESTAMP_INCREMENT,
                base_fee: header.next_block_base_fee(chain.base_fee_params).unwrap_or_default(),
                parent_hash: *hash,
                ..base.clone()
            },
        };
        if !validation {
            // Without validation calls pay no fees unless the request sets a base fee.
            env.base_fee = 0;
        }
        if let Some(o) = &block.block_overrides {
            if o.block_hash.is_some() {
                return Err(SimulateFailure::BlockHashOverride);
            }
            apply_block_overrides(&mut env, o);
        }
        if let Some((header, _)) = &prev {
            if env.number <= header.number {
                return Err(SimulateFailure::BlockNumberNotIncreasing {
                    number: env.number,
                    prev: header.number,
                });
            }
            if env.number != header.number + 1 {
                return Err(SimulateFailure::BlockNumberGap {
                    number: env.number,
                    prev: header.number,
                });
            }
            if env.timestamp <= header.timestamp {
                return Err(SimulateFailure::TimestampNotIncreasing {
                    timestamp: env.timestamp,
                    prev: header.timestamp,
                });
            }
        } else if env.number < base.number {
            return Err(SimulateFailure::BlockBeforeBase { number: env.number, base: base.number });
        }
        if let Some(state) = &block.state_overrides {
            apply_state_overrides(&mut db, state)?;
        }
        let (header, hash, txs, results) =
            run_block(&mut db, chain, &env, &block.calls, validation, &mut gas_left, budget)?;
        let ctx = BlockContext::of(&header, hash);
        let calls = txs
            .iter()
            .zip(results)
            .map(|(tx, (output, error))| SimCallResult {
                return_data: output,
                logs: rpc_logs(tx, &ctx),
                gas_used: tx.gas_used,
                max_used_gas: None,
                status: error.is_none(),
                error,
            })
            .collect();
        out.push(SimulatedBlock {
            inner: rpc_block(&header, hash, &txs, payload.return_full_transactions),
            calls,
        });
        prev = Some((header, hash));
    }
    Ok(out)
}

type CallResults = Vec<(alloy_primitives::Bytes, Option<SimulateError>)>;

fn run_block<D>(
    db: &mut CacheDB<D>,
    chain: &ChainConfig,
    env: &BlockEnvInput,
    calls: &[TransactionRequest],
    validation: bool,
    gas_left: &mut u64,
    budget: &Budget,
) -> Result<(Header, B256, Vec<ExecutedTx>, CallResults), SimulateFailure>
where
    D: DatabaseRef + core::fmt::Debug,
    D::Error: core::error::Error + Send + Sync + 'static,
{
    let mut evm_env = env.evm_env(chain);
    evm_env.cfg_env.disable_block_gas_limit = true;
    evm_env.cfg_env.disable_nonce_check = !validation;
    evm_env.cfg_env.disable_base_fee = !validation;
    evm_env.cfg_env.disable_eip3607 = !validation;
    let mut txs: Vec<ExecutedTx> = Vec::with_capacity(calls.len());
    let mut results = Vec::with_capacity(calls.len());
    let (mut gas_used, mut log_count, mut bloom) = (0u64, 0u64, Bloom::ZERO);
    for (index, call) in calls.iter().enumerate() {
        let from = call.from.unwrap_or_default();
        let mut req = call.clone();
        // Unset nonces follow the sender's state, so chained calls from one sender validate.
        if req.nonce.is_none() {
            let nonce =
                db.basic(from).map_err(CallError::state)?.map(|a| a.nonce).unwrap_or_default();
            req.nonce = Some(nonce);
        }
        let remaining = env.gas_limit.saturating_sub(gas_used);
        let gas = match req.gas {
            Some(g) if g > remaining => {
                return Err(SimulateFailure::BlockGasLimitReached { index, gas: g, remaining });
            }
            Some(g) => g,
            None if *gas_left < TRANSFER_GAS => {
                return Err(SimulateFailure::RequestGasSpent { index, left: *gas_left });
            }
            None => remaining.min(*gas_left),
        };
        if gas > *gas_left {
            return Err(SimulateFailure::CallGasAboveRequestCap { index, gas, left: *gas_left });
        }
        budget.check()?;
        let tx = tx_env(chain, &req, gas)?;
        let inspector = BudgetInspector::new(budget.clone());
        let mut evm = OpEvmFactory::<OpTx>::default().create_evm_with_inspector(
            &mut *db,
            evm_env.clone(),
            inspector,
        );
        let result = evm.transact(tx).map_err(|e| tx_failure(index, e))?;
        drop(evm);
        budget.check()?;
        db.commit(result.state);
        let result = result.result;
        let used = result.tx_gas_used();
        let contract_address = result.created_address();
        gas_used += used;
        *gas_left = gas_left.saturating_sub(used);
        let (success, logs, output, error) = match result {
            ExecutionResult::Success { logs, output, .. } => (true, logs, output.into_data(), None),
            ExecutionResult::Revert { output, .. } => {
                let message = match decode_revert_reason(&output) {
                    Some(r) => format!("execution reverted: {r}"),
                    None => "execution reverted".into(),
                };
                let err = SimulateError { code: 3, message, data: Some(output.clone()) };
                (false, Vec::new(), output, Some(err))
            }
            ExecutionResult::Halt { reason, .. } => {
                let message = match reason {
                    OpHaltReason::Base(HaltReason::OutOfGas(_)) => "out of gas".to_string(),
                    other => format!("execution halted: {other:?}"),
                };
                let err = SimulateError {
                    code: SimulateError::VM_EXECUTION_ERROR_CODE,
                    message,
                    data: None,
                };
                (false, Vec::new(), Default::default(), Some(err))
            }
        };
        for log in &logs {
            bloom.accrue_log(log);
        }
        let first_log_index = log_count;
        log_count += logs.len() as u64;
        let consensus = TxEip1559 {
            chain_id: chain.chain_id,
            nonce: req.nonce.unwrap_or_default(),
            gas_limit: gas,
            max_fee_per_gas: req.max_fee_per_gas.or(req.gas_price).unwrap_or_default(),
            max_priority_fee_per_gas: req.max_priority_fee_per_gas.unwrap_or_default(),
            to: req.to.unwrap_or(TxKind::Create),
            value: req.value.unwrap_or_default(),
            access_list: req.access_list.clone().unwrap_or_default(),
            input: req.input.input().cloned().unwrap_or_default(),
        };
        // Simulated calls are unsigned: a zero signature, as geth and reth give them.
        let signed = consensus.into_signed(Signature::new(U256::ZERO, U256::ZERO, false));
        let envelope = OpTxEnvelope::Eip1559(signed);
        let encoded = envelope.encoded_2718().into();
        let effective_gas_price =
            alloy_consensus::Transaction::effective_gas_price(&envelope, Some(env.base_fee));
        txs.push(ExecutedTx {
            hash: envelope.tx_hash(),
            tx: envelope,
            encoded,
            sender: from,
            receipt: OpReceipt::Eip1559(Receipt {
                status: Eip658Value::Eip658(success),
                cumulative_gas_used: gas_used,
                logs,
            }),
            gas_used: used,
            effective_gas_price,
            contract_address,
            index: index as u64,
            first_log_index,
            l1: None,
        });
        results.push((output, error));
    }
    let header = Header {
        parent_hash: env.parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: env.coinbase,
        // Simulated blocks carry no state root (computing one needs the full trie).
        state_root: B256::ZERO,
        transactions_root: ordered_trie_root_with_encoder(&txs, |t, buf| {
            buf.extend_from_slice(&t.encoded)
        }),
        receipts_root: receipts_root(txs.iter().map(|t| &t.receipt)),
        logs_bloom: bloom,
        difficulty: U256::ZERO,
        number: env.number,
        gas_limit: env.gas_limit,
        gas_used,
        timestamp: env.timestamp,
        extra_data: env.extra_data.clone(),
        mix_hash: env.prev_randao,
        base_fee_per_gas: Some(env.base_fee),
        withdrawals_root: Some(alloy_trie::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(env.parent_beacon_block_root),
        requests_hash: Some(EMPTY_REQUESTS_HASH),
        ..Default::default()
    };
    let hash = header.hash_slow();
    Ok((header, hash, txs, results))
}

/// A transaction the EVM refused, or the state it could not read.
fn tx_failure<E>(index: usize, e: EVMError<E, OpTxError>) -> SimulateFailure
where
    E: core::error::Error + Send + Sync + 'static,
{
    match split_evm_error(e) {
        Err(db) => CallError::state(db).into(),
        Ok(rejection) => SimulateFailure::Rejected { index, rejection },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use alloy_primitives::Bytes;
    use revm::context_interface::result::InvalidTransaction;
    use serde_json::json;

    fn run(payload: serde_json::Value) -> Result<Vec<SimulatedRpcBlock>, SimulateFailure> {
        let payload: SimulatePayload =
            serde_json::from_value(payload).unwrap_or_else(|e| panic!("payload: {e}"));
        simulate(db(), &chain(), &env(), &payload, 30_000_000, &crate::Budget::unlimited())
    }

    fn call(to: alloy_primitives::Address) -> serde_json::Value {
        json!({ "from": ALICE, "to": to })
    }

    #[test]
    fn blocks_chain_their_state_numbers_timestamps_and_parents() {
        let blocks = run(json!({
            "blockStateCalls": [
                { "calls": [call(COUNTER), call(COUNTER)] },
                { "calls": [call(COUNTER)] },
            ]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(blocks.len(), 2);
        let word = |n: u64| Bytes::from(B256::from(U256::from(n)).0.to_vec());
        let outputs: Vec<Vec<Bytes>> = blocks
            .iter()
            .map(|b| b.calls.iter().map(|c| c.return_data.clone()).collect())
            .collect();
        assert_eq!(outputs, vec![vec![word(1), word(2)], vec![word(3)]]);
        let (first, second) = (&blocks[0].inner.header, &blocks[1].inner.header);
        assert_eq!((first.number, second.number), (env().number, env().number + 1));
        assert_eq!(second.timestamp, first.timestamp + SIMULATE_TIMESTAMP_INCREMENT);
        assert_eq!(first.parent_hash, env().parent_hash);
        assert_eq!(second.parent_hash, first.hash);
        assert!(blocks.iter().flat_map(|b| &b.calls).all(|c| c.status && c.error.is_none()));
    }

    #[test]
    fn a_reverting_call_fails_alone_with_its_reason() {
        let blocks =
            run(json!({ "blockStateCalls": [{ "calls": [call(REVERTER), call(COUNTER)] }] }))
                .unwrap_or_else(|e| panic!("{e}"));
        let calls = &blocks[0].calls;
        let err = calls[0].error.as_ref().map(|e| (e.code, e.message.clone()));
        assert_eq!(err, Some((3, "execution reverted: nope".to_string())));
        assert!(!calls[0].status);
        assert!(calls[1].status);
    }

    #[test]
    fn invalid_payloads_are_refused_with_what_was_wrong() {
        // Block numbers out of order.
        match run(json!({ "blockStateCalls": [
            { "blockOverrides": { "number": "0x5" } },
            { "blockOverrides": { "number": "0x4" } },
        ]})) {
            Err(e @ SimulateFailure::BlockNumberNotIncreasing { number: 4, prev: 5 }) => {
                assert_eq!(e.to_string(), "block numbers must be in order: 4 <= 5")
            }
            other => panic!("expected the order refusal, got {other:?}"),
        }
        // A call wanting more gas than the block has left.
        match run(json!({ "blockStateCalls": [{ "calls": [
            { "from": ALICE, "to": BOB, "gas": "0x1c9c381" }
        ]}]})) {
            Err(e @ SimulateFailure::BlockGasLimitReached { index: 0, .. }) => assert_eq!(
                e.to_string(),
                format!("block gas limit reached: call 0 wants 30000001, {} left", env().gas_limit)
            ),
            other => panic!("expected the block gas refusal, got {other:?}"),
        }
        let calls: Vec<_> = (0..=MAX_SIMULATE_CALLS).map(|_| call(BOB)).collect();
        match run(json!({ "blockStateCalls": [{ "calls": calls }] })) {
            Err(e @ SimulateFailure::TooManyCalls { .. }) => {
                assert_eq!(e.to_string(), "too many calls (1001, at most 1000)")
            }
            other => panic!("expected the call count refusal, got {other:?}"),
        }
        match run(json!({ "blockStateCalls": [], "traceTransfers": true })) {
            Err(e @ SimulateFailure::TraceTransfersUnsupported) => {
                assert_eq!(e.to_string(), "traceTransfers is not supported by this node")
            }
            other => panic!("expected the traceTransfers refusal, got {other:?}"),
        }
        // With validation the nonce is checked: a nonce ahead of the state is too high.
        match run(json!({ "validation": true, "blockStateCalls": [{ "calls": [
            { "from": ALICE, "to": BOB, "nonce": "0x5", "maxFeePerGas": "0x3b9aca00" }
        ]}]})) {
            Err(SimulateFailure::Rejected {
                index: 0,
                rejection:
                    EVMError::Transaction(OpTxError(op_revm::OpTransactionError::Base(
                        InvalidTransaction::NonceTooHigh { tx: 5, .. },
                    ))),
            }) => {}
            other => panic!("expected a nonce too high, got {other:?}"),
        }
    }

    #[test]
    fn evm_refusals_keep_the_call_and_the_reason_and_state_failures_their_cause() {
        let low = InvalidTransaction::NonceTooLow { tx: 1, state: 2 };
        let f =
            tx_failure::<std::convert::Infallible>(3, EVMError::Transaction(OpTxError(low.into())));
        assert!(matches!(f, SimulateFailure::Rejected { index: 3, .. }), "{f:?}");
        assert_eq!(
            f.to_string(),
            "call 3: transaction validation error: nonce 1 too low, expected 2"
        );
        let f = tx_failure::<std::convert::Infallible>(4, EVMError::Custom("boom".into()));
        assert_eq!(f.to_string(), "call 4: boom");
        let db = tx_failure::<SourceErrorLike>(0, EVMError::Database(SourceErrorLike));
        assert!(matches!(db, SimulateFailure::Call(CallError::State(_))), "{db:?}");
        assert_eq!(db.to_string(), "state unavailable: gone");
    }

    /// A database error for the mapping test.
    #[derive(Debug)]
    struct SourceErrorLike;

    impl core::fmt::Display for SourceErrorLike {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("gone")
        }
    }

    impl std::error::Error for SourceErrorLike {}
}
