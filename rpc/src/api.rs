//! The API this node answers itself, declared as jsonrpsee traits with typed params. Methods
//! read flashblock state for `pending` and pass the rest to the upstream ([`crate::proxy`]
//! serves the allowlist of methods passed on unchanged).

use crate::error::RpcResult;
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, Bytes, B256, U64};
use alloy_rpc_types_eth::{
    simulate::SimulatePayload, state::StateOverride, BlockOverrides, Filter, Index,
    TransactionRequest,
};
use alloy_serde::storage::JsonStorageKey;
use jsonrpsee::{core::SubscriptionResult, proc_macros::rpc};
use serde_json::Value;

/// The `eth_` methods that honour flashblocks.
#[rpc(server, namespace = "eth")]
pub trait EthApi {
    /// `eth_chainId`.
    #[method(name = "chainId")]
    fn chain_id(&self) -> RpcResult<U64>;

    /// `eth_getTransactionReceipt`: preconfirmed receipts first.
    #[method(name = "getTransactionReceipt")]
    async fn transaction_receipt(&self, hash: B256) -> RpcResult<Value>;

    /// `eth_getTransactionByHash`: preconfirmed transactions first.
    #[method(name = "getTransactionByHash")]
    async fn transaction_by_hash(&self, hash: B256) -> RpcResult<Value>;

    /// `eth_getBlockByNumber`; `pending` is the flashblock block.
    #[method(name = "getBlockByNumber")]
    async fn block_by_number(&self, block: Option<BlockId>, full: Option<bool>)
        -> RpcResult<Value>;

    /// `eth_getBlockByHash`; a provisional hash of the pending block is that block.
    #[method(name = "getBlockByHash")]
    async fn block_by_hash(&self, hash: B256, full: Option<bool>) -> RpcResult<Value>;

    /// `eth_getBlockTransactionCountByHash`.
    #[method(name = "getBlockTransactionCountByHash")]
    async fn block_transaction_count_by_hash(&self, hash: B256) -> RpcResult<Value>;

    /// `eth_getTransactionByBlockHashAndIndex`.
    #[method(name = "getTransactionByBlockHashAndIndex")]
    async fn transaction_by_block_hash_and_index(
        &self,
        hash: B256,
        index: Index,
    ) -> RpcResult<Value>;

    /// `eth_getTransactionByBlockNumberAndIndex`; `pending` is the flashblock block.
    #[method(name = "getTransactionByBlockNumberAndIndex")]
    async fn transaction_by_block_number_and_index(
        &self,
        block: BlockNumberOrTag,
        index: Index,
    ) -> RpcResult<Value>;

    /// `eth_getBlockTransactionCountByNumber`.
    #[method(name = "getBlockTransactionCountByNumber")]
    async fn block_transaction_count(&self, block: Option<BlockId>) -> RpcResult<Value>;

    /// `eth_getBlockReceipts`.
    #[method(name = "getBlockReceipts")]
    async fn block_receipts(&self, block: Option<BlockId>) -> RpcResult<Value>;

    /// `eth_getBalance`.
    #[method(name = "getBalance")]
    async fn balance(&self, address: Address, block: Option<BlockId>) -> RpcResult<Value>;

    /// `eth_getTransactionCount`.
    #[method(name = "getTransactionCount")]
    async fn transaction_count(&self, address: Address, block: Option<BlockId>)
        -> RpcResult<Value>;

    /// `eth_getCode`.
    #[method(name = "getCode")]
    async fn code(&self, address: Address, block: Option<BlockId>) -> RpcResult<Value>;

    /// `eth_getStorageAt`.
    #[method(name = "getStorageAt")]
    async fn storage_at(
        &self,
        address: Address,
        slot: JsonStorageKey,
        block: Option<BlockId>,
    ) -> RpcResult<Value>;

    /// `eth_call` in the pending block's environment.
    #[method(name = "call")]
    async fn call(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
    ) -> RpcResult<Value>;

    /// `eth_estimateGas` in the pending block's environment.
    #[method(name = "estimateGas")]
    async fn estimate_gas(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
    ) -> RpcResult<Value>;

    /// `eth_createAccessList` in the pending block's environment.
    #[method(name = "createAccessList")]
    async fn create_access_list(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        state: Option<StateOverride>,
        block_overrides: Option<Box<BlockOverrides>>,
    ) -> RpcResult<Value>;

    /// `eth_simulateV1` on top of the pending block.
    #[method(name = "simulateV1")]
    async fn simulate_v1(
        &self,
        payload: SimulatePayload,
        block: Option<BlockId>,
    ) -> RpcResult<Value>;

    /// `eth_getLogs`: ranges ending at `pending` include preconfirmed logs.
    #[method(name = "getLogs")]
    async fn logs(&self, filter: Filter) -> RpcResult<Value>;

    /// `eth_flashblocksEnabled` (X Layer's name): whether preconfirmations are served right
    /// now (`flashnode_status` mode `flashblocks`), so a client can choose between `pending`
    /// and polling without parsing a status page.
    #[method(name = "flashblocksEnabled")]
    fn flashblocks_enabled(&self) -> RpcResult<bool>;

    /// `eth_sendRawTransactionSync` (EIP-7966): send, then answer with the receipt.
    #[method(name = "sendRawTransactionSync")]
    async fn send_raw_transaction_sync(
        &self,
        raw: Bytes,
        timeout_ms: Option<u64>,
    ) -> RpcResult<Value>;
}

/// `eth_subscribe` on the websocket: flashblocks, their transactions, pending and canonical logs,
/// canonical heads.
#[rpc(server, namespace = "eth")]
pub trait EthPubSubApi {
    /// `eth_subscribe(kind, options?)`. Both are read as any JSON and checked by the method:
    /// jsonrpsee sends a subscription's params error straight to the socket, past the
    /// middleware that makes params errors read as sentences.
    #[subscription(
        name = "subscribe" => "subscription",
        unsubscribe = "unsubscribe",
        item = Value,
        with_extensions
    )]
    async fn subscribe(&self, kind: Option<Value>, options: Option<Value>) -> SubscriptionResult;
}

/// The `op_` methods.
#[rpc(server, namespace = "op")]
pub trait OpApi {
    /// `op_supportedCapabilities`.
    #[method(name = "supportedCapabilities")]
    fn supported_capabilities(&self) -> RpcResult<Vec<&'static str>>;
}

/// The `flashnode_` methods.
#[rpc(server, namespace = "flashnode")]
pub trait FlashnodeApi {
    /// `flashnode_status`: mode, tip, stream and counters (and `gossip` with p2p).
    #[method(name = "status")]
    fn status(&self) -> RpcResult<Value>;
}
