//! [`RpcError`]: every way a served method fails, and the one place it becomes a JSON-RPC error
//! object. The codes are the ones geth and reth answer (and the execution-apis ones for
//! `eth_simulateV1`), named in [`code`]; the execution crate's typed failures ([`CallError`],
//! [`SimulateFailure`]) get theirs here and nowhere else.

use crate::proxy::UpstreamError;
use alloy_op_evm::OpTxError;
use alloy_primitives::B256;
use flashnode_exec::{CallError, Rejection, SimulateFailure, SourceError};
use jsonrpsee::types::ErrorObjectOwned;
use op_revm::OpTransactionError;
use revm::context_interface::result::{EVMError, InvalidTransaction};
use std::time::Duration;

/// JSON-RPC error codes this node answers.
pub mod code {
    /// The request object is not a valid JSON-RPC request (JSON-RPC 2.0).
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method, or not on this transport (geth answers subscriptions over HTTP so).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The params do not parse or are out of range (JSON-RPC 2.0).
    pub const INVALID_PARAMS: i32 = -32602;
    /// The node failed: state unreadable, upstream unreachable (JSON-RPC 2.0).
    pub const INTERNAL: i32 = -32603;
    /// A call or transaction the EVM refused (geth's generic server error).
    pub const SERVER: i32 = -32000;
    /// The node is at its limit of concurrent executions (EIP-1474 "limit exceeded").
    pub const LIMIT_EXCEEDED: i32 = -32005;
    /// A batch with more calls than allowed (jsonrpsee's and reth's code for it).
    pub const BATCH_TOO_LARGE: i32 = -32010;
    /// A batch whose answer is larger than allowed (jsonrpsee's and reth's code for it).
    pub const BATCH_RESPONSE_TOO_LARGE: i32 = -32011;
    /// The call reverted; the revert data is the error's `data` (geth, EIP-1474 style).
    pub const EXECUTION_REVERTED: i32 = 3;
    /// `eth_sendRawTransactionSync` gave up waiting for the receipt (EIP-7966).
    pub const TX_SYNC_TIMEOUT: i32 = 4;
    /// `eth_simulateV1`: a call's nonce is below the sender's (execution-apis).
    pub const NONCE_TOO_LOW: i32 = -38010;
    /// `eth_simulateV1`: a call's nonce is above the sender's (execution-apis).
    pub const NONCE_TOO_HIGH: i32 = -38011;
    /// `eth_simulateV1`: a call's fee is below the block's base fee (execution-apis).
    pub const BASE_FEE_TOO_LOW: i32 = -38012;
    /// `eth_simulateV1`: a call's gas does not cover its intrinsic gas (execution-apis).
    pub const INTRINSIC_GAS_TOO_LOW: i32 = -38013;
    /// `eth_simulateV1`: the sender cannot pay for gas and value (execution-apis).
    pub const INSUFFICIENT_FUNDS: i32 = -38014;
    /// `eth_simulateV1`: the calls want more gas than their block has (execution-apis).
    pub const BLOCK_GAS_LIMIT_REACHED: i32 = -38015;
    /// `eth_simulateV1`: block numbers out of order (execution-apis).
    pub const BLOCK_NUMBER_INVALID: i32 = -38020;
    /// `eth_simulateV1`: block timestamps out of order (execution-apis).
    pub const BLOCK_TIMESTAMP_INVALID: i32 = -38021;
    /// `eth_simulateV1`: a limit the client sets was reached (execution-apis).
    pub const CLIENT_LIMIT_EXCEEDED: i32 = -38026;
}

/// Why a served method failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The params are malformed or out of range: "invalid params: " and what was wrong.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// An `eth_getLogs` range whose start is after its end, once `pending` and `latest` are
    /// read as block numbers (geth's and reth's message).
    #[error("invalid block range params: fromBlock {from} is after toBlock {to}")]
    InvalidBlockRange {
        /// The range's first block.
        from: u64,
        /// The range's last block.
        to: u64,
    },
    /// A call, estimate or access list failed in execution.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A simulation failed as a whole (the execution-apis code is its own).
    #[error(transparent)]
    Simulate(#[from] SimulateFailure),
    /// Pending or canonical state could not be read.
    #[error("state unavailable: {0}")]
    State(#[from] SourceError),
    /// The upstream failed or refused a request the node passed on.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// An answer did not serialize.
    #[error("internal error: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The execution task ended without an answer (it panicked or the runtime stopped).
    #[error("execution task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Every executor is busy and the queue of waiting calls is full or waited too long.
    #[error(
        "too many concurrent executions: all {max} executors are busy; retry later or raise \
         --rpc-max-concurrent-executions"
    )]
    Overloaded {
        /// Executions the node runs at once.
        max: usize,
    },
    /// Executions the node forwards to its upstream (no pending block to run them on, or an
    /// explicit canonical block) are at their limit.
    #[error(
        "too many executions forwarded to the upstream at once: all {max} slots are busy; \
         retry later"
    )]
    ForwardOverloaded {
        /// Executions the node forwards at once.
        max: usize,
    },
    /// This client IP holds its most live subscriptions.
    #[error(
        "too many subscriptions from this IP: at most {limit} at once \
         (--rpc-per-ip-subscriptions); unsubscribe first"
    )]
    TooManySubscriptions {
        /// Subscriptions one IP may hold.
        limit: usize,
    },
    /// A JSON-RPC batch with more calls than `--rpc-batch-request-limit`.
    #[error(
        "batch of {calls} calls is over the limit of {limit} (--rpc-batch-request-limit); split it"
    )]
    BatchTooLarge {
        /// Calls in the batch.
        calls: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch's answer grew past `--rpc-batch-response-max-bytes`.
    #[error(
        "the batch's answer is over {limit} bytes (--rpc-batch-response-max-bytes); ask for less \
         per batch"
    )]
    BatchResponseTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The batch's executions have run for the budget of one request already.
    #[error(
        "execution aborted: this batch's executions used its budget of {}s (--rpc-evm-timeout \
         covers a whole batch); send the rest in another request",
        budget.as_secs_f64()
    )]
    BatchBudgetSpent {
        /// The budget.
        budget: Duration,
    },
    /// `eth_subscribe` arrived over HTTP.
    #[error("subscriptions need a websocket: connect with ws:// to this port")]
    SubscriptionNeedsWebsocket,
    /// `eth_sendRawTransactionSync` did not see the transaction included in time.
    #[error(
        "the transaction was added to the mempool but wasn't processed within {}ms",
        timeout.as_millis()
    )]
    TxSyncTimeout {
        /// The transaction.
        hash: B256,
        /// How long the call waited.
        timeout: Duration,
    },
}

impl RpcError {
    /// An [`RpcError::InvalidParams`] from anything that reads as a phrase.
    pub fn invalid_params(detail: impl std::fmt::Display) -> Self {
        Self::InvalidParams(detail.to_string())
    }

    /// The JSON-RPC code.
    pub fn code(&self) -> i32 {
        match self {
            Self::InvalidParams(_) | Self::InvalidBlockRange { .. } => code::INVALID_PARAMS,
            Self::BatchTooLarge { .. } => code::BATCH_TOO_LARGE,
            Self::BatchResponseTooLarge { .. } => code::BATCH_RESPONSE_TOO_LARGE,
            Self::BatchBudgetSpent { .. } => code::SERVER,
            Self::Call(e) => call_code(e),
            Self::Simulate(e) => simulate_code(e),
            Self::Upstream(e) => e.code(),
            Self::State(_) | Self::Serialize(_) | Self::Task(_) => code::INTERNAL,
            Self::Overloaded { .. }
            | Self::ForwardOverloaded { .. }
            | Self::TooManySubscriptions { .. } => code::LIMIT_EXCEEDED,
            Self::SubscriptionNeedsWebsocket => code::METHOD_NOT_FOUND,
            Self::TxSyncTimeout { .. } => code::TX_SYNC_TIMEOUT,
        }
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        match e {
            // The upstream's own JSON-RPC errors pass through as it sent them.
            RpcError::Upstream(UpstreamError::Rejected(obj)) => obj,
            RpcError::Call(e) => {
                let data = match &e {
                    CallError::Revert { output, .. } => Some(output.clone()),
                    _ => None,
                };
                ErrorObjectOwned::owned(call_code(&e), e.to_string(), data)
            }
            RpcError::TxSyncTimeout { hash, .. } => {
                ErrorObjectOwned::owned(code::TX_SYNC_TIMEOUT, e.to_string(), Some(hash))
            }
            other => ErrorObjectOwned::owned(other.code(), other.to_string(), None::<()>),
        }
    }
}

/// The code of a failed call, estimate or access list, as geth and reth answer it: a revert is
/// [`code::EXECUTION_REVERTED`] (its output the error's data), unreadable state
/// [`code::INTERNAL`], anything else [`code::SERVER`].
fn call_code(e: &CallError) -> i32 {
    match e {
        CallError::Revert { .. } => code::EXECUTION_REVERTED,
        CallError::State(_) => code::INTERNAL,
        CallError::Halt(_)
        | CallError::GasExceedsAllowance(_)
        | CallError::InsufficientFunds
        | CallError::Invalid(_)
        | CallError::Rejected(_)
        | CallError::Timeout(_)
        | CallError::Cancelled => code::SERVER,
    }
}

/// The code of a failed simulation: the execution-apis codes where the spec names one,
/// invalid params for requests this node refuses, as [`call_code`] otherwise.
fn simulate_code(e: &SimulateFailure) -> i32 {
    match e {
        SimulateFailure::TooManyBlocks { .. } => code::CLIENT_LIMIT_EXCEEDED,
        SimulateFailure::BlockNumberNotIncreasing { .. }
        | SimulateFailure::BlockBeforeBase { .. } => code::BLOCK_NUMBER_INVALID,
        SimulateFailure::TimestampNotIncreasing { .. } => code::BLOCK_TIMESTAMP_INVALID,
        SimulateFailure::BlockGasLimitReached { .. } => code::BLOCK_GAS_LIMIT_REACHED,
        SimulateFailure::TraceTransfersUnsupported
        | SimulateFailure::TooManyCalls { .. }
        | SimulateFailure::GasAboveCap { .. }
        | SimulateFailure::BlockHashOverride
        | SimulateFailure::BlockNumberGap { .. }
        | SimulateFailure::RequestGasSpent { .. }
        | SimulateFailure::CallGasAboveRequestCap { .. }
        | SimulateFailure::Call(CallError::Invalid(_)) => code::INVALID_PARAMS,
        SimulateFailure::Rejected { rejection, .. } => rejection_code(rejection),
        SimulateFailure::Call(CallError::InsufficientFunds) => code::INSUFFICIENT_FUNDS,
        // A revert carries no data here: a simulation's reverts are per call, in its results.
        SimulateFailure::Call(CallError::Revert { .. }) => code::SERVER,
        SimulateFailure::Call(e) => call_code(e),
    }
}

/// The execution-apis code of a call the EVM refused in a simulation, by the check that failed.
fn rejection_code(rejection: &Rejection) -> i32 {
    let EVMError::Transaction(OpTxError(OpTransactionError::Base(invalid))) = rejection else {
        return code::SERVER;
    };
    match invalid {
        InvalidTransaction::NonceTooLow { .. } => code::NONCE_TOO_LOW,
        InvalidTransaction::NonceTooHigh { .. } => code::NONCE_TOO_HIGH,
        InvalidTransaction::GasPriceLessThanBasefee => code::BASE_FEE_TOO_LOW,
        InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
        | InvalidTransaction::GasFloorMoreThanGasLimit { .. } => code::INTRINSIC_GAS_TOO_LOW,
        InvalidTransaction::LackOfFundForMaxFee { .. } => code::INSUFFICIENT_FUNDS,
        _ => code::SERVER,
    }
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
    fn detail(&self) -> String {
        detail(self)
    }
}

/// The reason in one of jsonrpsee's own params errors: it is in `data` ("No more params",
/// serde's message); its `Display` is a debug dump of the whole object.
pub(crate) fn detail(e: &ErrorObjectOwned) -> String {
    match e.data().map(|d| serde_json::from_str::<serde_json::Value>(d.get())) {
        Some(Ok(serde_json::Value::String(s))) => s,
        Some(Ok(other)) => other.to_string(),
        _ => e.message().to_string(),
    }
}

/// A -32602 error object: "invalid params: " and what was wrong.
pub(crate) fn invalid_params(e: impl ParamsDetail) -> ErrorObjectOwned {
    RpcError::InvalidParams(e.detail()).into()
}

/// What a served method returns.
pub type RpcResult<T> = Result<T, RpcError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let cases: Vec<(RpcError, i32, &str)> = vec![
            (RpcError::invalid_params("missing address"), -32602, "invalid params: missing address"),
            (
                RpcError::Call(CallError::Revert { reason: Some("no".into()), output: vec![1].into() }),
                3,
                "execution reverted: no",
            ),
            (RpcError::Overloaded { max: 2 }, -32005, "too many concurrent executions: all 2 executors are busy; retry later or raise --rpc-max-concurrent-executions"),
            (RpcError::ForwardOverloaded { max: 64 }, -32005, "too many executions forwarded to the upstream at once: all 64 slots are busy; retry later"),
            (
                RpcError::SubscriptionNeedsWebsocket,
                -32601,
                "subscriptions need a websocket: connect with ws:// to this port",
            ),
            (
                RpcError::State(SourceError::UnknownBlock(B256::ZERO)),
                -32603,
                "state unavailable: block 0x0000000000000000000000000000000000000000000000000000000000000000 is not available",
            ),
        ];
        for (e, code, msg) in cases {
            assert_eq!(e.code(), code, "{e}");
            let obj = ErrorObjectOwned::from(e);
            assert_eq!((obj.code(), obj.message()), (code, msg));
        }
    }

    #[test]
    fn revert_and_sync_timeout_carry_data() {
        let obj = ErrorObjectOwned::from(RpcError::Call(CallError::Revert {
            reason: None,
            output: vec![0xab].into(),
        }));
        assert_eq!(obj.data().map(|d| d.get()), Some("\"0xab\""));
        let obj = ErrorObjectOwned::from(RpcError::TxSyncTimeout {
            hash: B256::repeat_byte(1),
            timeout: Duration::from_millis(250),
        });
        assert_eq!(obj.code(), 4);
        assert!(obj.message().ends_with("within 250ms"), "{}", obj.message());
        assert_eq!(obj.data().map(|d| d.get().len()), Some(68));
    }

    /// The wire answer of an error: code, message, data.
    fn wire(e: impl Into<RpcError>) -> (i32, String, Option<String>) {
        let e: RpcError = e.into();
        let code = e.code();
        let obj = ErrorObjectOwned::from(e);
        assert_eq!(obj.code(), code, "{}", obj.message());
        (obj.code(), obj.message().to_string(), obj.data().map(|d| d.get().to_string()))
    }

    fn rejection(invalid: InvalidTransaction) -> Rejection {
        EVMError::Transaction(OpTxError(invalid.into()))
    }

    fn unknown_block() -> flashnode_exec::StateError {
        flashnode_exec::StateError::new(SourceError::UnknownBlock(B256::ZERO))
    }

    const UNKNOWN: &str = "state unavailable: block \
        0x0000000000000000000000000000000000000000000000000000000000000000 is not available";

    #[test]
    fn call_errors_answer_geths_codes_and_messages() {
        use flashnode_exec::InvalidCall;
        use op_revm::OpHaltReason;
        use revm::context_interface::result::{HaltReason, OutOfGasError};
        let cases: Vec<(CallError, i32, String)> = vec![
            (
                CallError::Halt(OpHaltReason::Base(HaltReason::OutOfGas(OutOfGasError::Basic))),
                -32000,
                "out of gas".into(),
            ),
            (
                CallError::Halt(OpHaltReason::Base(HaltReason::OpcodeNotFound)),
                -32000,
                "invalid opcode".into(),
            ),
            (
                CallError::GasExceedsAllowance(1_000_000),
                -32000,
                "gas required exceeds allowance (1000000)".into(),
            ),
            (
                CallError::InsufficientFunds,
                -32000,
                "insufficient funds for gas * price + value".into(),
            ),
            (
                InvalidCall::InputTooLarge { len: 524_289, limit: 524_288 }.into(),
                -32000,
                "call input of 524289 bytes exceeds the limit of 524288 bytes".into(),
            ),
            (
                InvalidCall::TipAboveFeeCap.into(),
                -32000,
                "maxPriorityFeePerGas higher than maxFeePerGas".into(),
            ),
            (
                InvalidCall::GasAboveCap { gas: 10_000_000, cap: 1_000_000 }.into(),
                -32000,
                "gas 10000000 above the cap 1000000".into(),
            ),
            (
                InvalidCall::StateAndStateDiff(alloy_primitives::Address::ZERO).into(),
                -32000,
                "account 0x0000000000000000000000000000000000000000 has both 'state' and \
                 'stateDiff'"
                    .into(),
            ),
            (
                InvalidCall::MovePrecompileUnsupported.into(),
                -32000,
                "movePrecompileToAddress is not supported".into(),
            ),
            (
                CallError::Rejected(rejection(InvalidTransaction::GasPriceLessThanBasefee)),
                -32000,
                "transaction validation error: gas price is less than basefee".into(),
            ),
            (CallError::State(unknown_block()), -32603, UNKNOWN.into()),
            (
                CallError::Timeout(Duration::from_millis(1500)),
                -32000,
                "execution aborted (timeout = 1.5s)".into(),
            ),
            (CallError::Cancelled, -32000, "execution cancelled: the client went away".into()),
        ];
        for (e, code, message) in cases {
            assert_eq!(wire(e), (code, message, None));
        }
        let revert = |reason: Option<&str>| CallError::Revert {
            reason: reason.map(Into::into),
            output: vec![0x08, 0xc3].into(),
        };
        let data = Some("\"0x08c3\"".to_string());
        assert_eq!(
            wire(revert(Some("nope"))),
            (3, "execution reverted: nope".into(), data.clone())
        );
        assert_eq!(wire(revert(None)), (3, "execution reverted".into(), data));
    }

    #[test]
    fn simulate_failures_answer_the_execution_apis_codes_and_messages() {
        use flashnode_exec::InvalidCall;
        let cases: Vec<(SimulateFailure, i32, String)> = vec![
            (
                SimulateFailure::TraceTransfersUnsupported,
                -32602,
                "traceTransfers is not supported by this node".into(),
            ),
            (
                SimulateFailure::TooManyBlocks { limit: 256 },
                -38026,
                "too many blocks (at most 256)".into(),
            ),
            (
                SimulateFailure::TooManyCalls { calls: 1001, limit: 1000 },
                -32602,
                "too many calls (1001, at most 1000)".into(),
            ),
            (
                SimulateFailure::GasAboveCap { asked: 60, cap: 50 },
                -32602,
                "the calls ask for 60 gas in all, above the cap of 50 per request".into(),
            ),
            (
                SimulateFailure::BlockHashOverride,
                -32602,
                "blockHash overrides are not supported in eth_simulateV1".into(),
            ),
            (
                SimulateFailure::BlockNumberNotIncreasing { number: 4, prev: 5 },
                -38020,
                "block numbers must be in order: 4 <= 5".into(),
            ),
            (
                SimulateFailure::BlockNumberGap { number: 7, prev: 5 },
                -32602,
                "gaps between simulated block numbers are not supported".into(),
            ),
            (
                SimulateFailure::TimestampNotIncreasing { timestamp: 10, prev: 12 },
                -38021,
                "block timestamps must be in order: 10 <= 12".into(),
            ),
            (
                SimulateFailure::BlockBeforeBase { number: 3, base: 9 },
                -38020,
                "block number 3 is before the base block 9".into(),
            ),
            (
                SimulateFailure::BlockGasLimitReached {
                    index: 0,
                    gas: 30_000_001,
                    remaining: 30_000_000,
                },
                -38015,
                "block gas limit reached: call 0 wants 30000001, 30000000 left".into(),
            ),
            (
                SimulateFailure::RequestGasSpent { index: 2, left: 100 },
                -32602,
                "call 2: the request's gas is spent (100 left); the cap is per request".into(),
            ),
            (
                SimulateFailure::CallGasAboveRequestCap { index: 1, gas: 5, left: 4 },
                -32602,
                "call 1: gas 5 above the 4 left of the request's cap".into(),
            ),
            (
                SimulateFailure::Rejected {
                    index: 0,
                    rejection: rejection(InvalidTransaction::NonceTooLow { tx: 1, state: 2 }),
                },
                -38010,
                "call 0: transaction validation error: nonce 1 too low, expected 2".into(),
            ),
            (
                SimulateFailure::Rejected { index: 4, rejection: EVMError::Custom("boom".into()) },
                -32000,
                "call 4: boom".into(),
            ),
            (
                CallError::InsufficientFunds.into(),
                -38014,
                "insufficient funds for gas * price + value".into(),
            ),
            (
                CallError::from(InvalidCall::MovePrecompileUnsupported).into(),
                -32602,
                "movePrecompileToAddress is not supported".into(),
            ),
            (CallError::State(unknown_block()).into(), -32603, UNKNOWN.into()),
            (
                CallError::Timeout(Duration::from_secs(2)).into(),
                -32000,
                "execution aborted (timeout = 2s)".into(),
            ),
            (
                CallError::Cancelled.into(),
                -32000,
                "execution cancelled: the client went away".into(),
            ),
            (
                CallError::Revert { reason: None, output: vec![1].into() }.into(),
                -32000,
                "execution reverted".into(),
            ),
        ];
        for (e, code, message) in cases {
            assert_eq!(wire(e), (code, message, None));
        }
    }

    #[test]
    fn evm_refusals_in_a_simulation_get_the_spec_codes_by_variant() {
        let code = |invalid| {
            simulate_code(&SimulateFailure::Rejected { index: 0, rejection: rejection(invalid) })
        };
        assert_eq!(code(InvalidTransaction::NonceTooLow { tx: 1, state: 2 }), -38010);
        assert_eq!(code(InvalidTransaction::NonceTooHigh { tx: 3, state: 2 }), -38011);
        assert_eq!(code(InvalidTransaction::GasPriceLessThanBasefee), -38012);
        assert_eq!(
            code(InvalidTransaction::CallGasCostMoreThanGasLimit { initial_gas: 2, gas_limit: 1 }),
            -38013
        );
        assert_eq!(
            code(InvalidTransaction::GasFloorMoreThanGasLimit { gas_floor: 2, gas_limit: 1 }),
            -38013
        );
        assert_eq!(
            code(InvalidTransaction::LackOfFundForMaxFee {
                fee: Box::new(alloy_primitives::U256::from(2)),
                balance: Box::new(alloy_primitives::U256::from(1)),
            }),
            -38014
        );
        assert_eq!(code(InvalidTransaction::InvalidChainId), -32000);
        // Outside a simulation the same refusals are geth's generic server error.
        let outside =
            CallError::Rejected(rejection(InvalidTransaction::NonceTooLow { tx: 1, state: 2 }));
        assert_eq!(call_code(&outside), -32000);
    }

    #[test]
    fn upstream_json_rpc_errors_pass_through() {
        let upstream = ErrorObjectOwned::owned(-32000, "nonce too low", Some("x"));
        let obj =
            ErrorObjectOwned::from(RpcError::Upstream(UpstreamError::Rejected(upstream.clone())));
        assert_eq!((obj.code(), obj.message()), (upstream.code(), upstream.message()));
        assert_eq!(obj.data().map(|d| d.get()), Some("\"x\""));
    }
}
