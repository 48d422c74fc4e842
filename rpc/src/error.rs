//! [`RpcError`]: every way a served method fails, and the one place it becomes a JSON-RPC error
//! object. The codes are the ones geth and reth answer, named in [`code`].

use crate::proxy::UpstreamError;
use alloy_primitives::B256;
use flashnode_exec::{CallError, SimulateFailure, SourceError};
use jsonrpsee::types::ErrorObjectOwned;
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
            Self::Call(e) => e.code(),
            Self::Simulate(e) => e.code,
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
            RpcError::Call(e) => ErrorObjectOwned::owned(e.code(), e.to_string(), e.data()),
            RpcError::TxSyncTimeout { hash, .. } => {
                ErrorObjectOwned::owned(code::TX_SYNC_TIMEOUT, e.to_string(), Some(hash))
            }
            other => ErrorObjectOwned::owned(other.code(), other.to_string(), None::<()>),
        }
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

    #[test]
    fn upstream_json_rpc_errors_pass_through() {
        let upstream = ErrorObjectOwned::owned(-32000, "nonce too low", Some("x"));
        let obj =
            ErrorObjectOwned::from(RpcError::Upstream(UpstreamError::Rejected(upstream.clone())));
        assert_eq!((obj.code(), obj.message()), (upstream.code(), upstream.message()));
        assert_eq!(obj.data().map(|d| d.get()), Some("\"x\""));
    }
}
