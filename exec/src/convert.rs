//! Conversions from executed transactions to the JSON-RPC shapes OP clients expect.

use crate::builder::ExecutedTx;
use alloy_consensus::{transaction::Recovered, Header, ReceiptWithBloom, TxReceipt};
use alloy_primitives::{B256, U256};
use alloy_rpc_types_eth::{Block, BlockTransactions, Log, TransactionReceipt};
use op_alloy_consensus::{OpReceipt, OpTxEnvelope};
use op_alloy_rpc_types::{L1BlockInfo, OpTransactionReceipt, Transaction};

/// Where a transaction sits: the block it is (pre)confirmed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockContext {
    /// Block hash: the sealed block's, or a preconfirmed block's provisional hash (the hash of
    /// its header as served). `None` serves `blockHash: null`, which strict clients (ethers v6,
    /// the execution-apis schemas) refuse: only for a transaction outside any block.
    pub hash: Option<B256>,
    /// Block number.
    pub number: u64,
    /// Block timestamp.
    pub timestamp: u64,
    /// Base fee of the block.
    pub base_fee: u64,
}

impl BlockContext {
    /// The context of a sealed block's header.
    pub fn of(header: &Header, hash: B256) -> Self {
        Self {
            hash: Some(hash),
            number: header.number,
            timestamp: header.timestamp,
            base_fee: header.base_fee_per_gas.unwrap_or_default(),
        }
    }
}

/// The RPC logs of one executed transaction.
pub fn rpc_logs(tx: &ExecutedTx, block: &BlockContext) -> Vec<Log> {
    tx.receipt
        .logs()
        .iter()
        .enumerate()
        .map(|(i, log)| Log {
            inner: log.clone(),
            block_hash: block.hash,
            block_number: Some(block.number),
            block_timestamp: Some(block.timestamp),
            transaction_hash: Some(tx.hash),
            transaction_index: Some(tx.index),
            log_index: Some(tx.first_log_index + i as u64),
            removed: false,
        })
        .collect()
}

/// The `eth_getTransactionReceipt` answer for an executed transaction.
pub fn rpc_receipt(tx: &ExecutedTx, block: &BlockContext) -> OpTransactionReceipt {
    let logs = rpc_logs(tx, block);
    let receipt: OpReceipt<Log> = match &tx.receipt {
        OpReceipt::Legacy(r) => OpReceipt::Legacy(with_logs(r, logs)),
        OpReceipt::Eip2930(r) => OpReceipt::Eip2930(with_logs(r, logs)),
        OpReceipt::Eip1559(r) => OpReceipt::Eip1559(with_logs(r, logs)),
        OpReceipt::Eip7702(r) => OpReceipt::Eip7702(with_logs(r, logs)),
        OpReceipt::PostExec(r) => OpReceipt::PostExec(with_logs(r, logs)),
        OpReceipt::Deposit(r) => OpReceipt::Deposit(op_alloy_consensus::OpDepositReceipt {
            inner: with_logs(&r.inner, logs),
            deposit_nonce: r.deposit_nonce,
            deposit_receipt_version: r.deposit_receipt_version,
        }),
    };
    let bloom = tx.receipt.bloom();
    let l1_block_info = tx
        .l1
        .as_ref()
        .map(|l1| L1BlockInfo {
            l1_gas_price: Some(l1.l1_gas_price),
            l1_gas_used: Some(l1.l1_gas_used),
            l1_fee: Some(l1.l1_fee),
            l1_fee_scalar: None,
            l1_base_fee_scalar: Some(l1.l1_base_fee_scalar),
            l1_blob_base_fee: Some(l1.l1_blob_base_fee),
            l1_blob_base_fee_scalar: Some(l1.l1_blob_base_fee_scalar),
            operator_fee_scalar: Some(l1.operator_fee_scalar),
            operator_fee_constant: Some(l1.operator_fee_constant),
            da_footprint_gas_scalar: None,
        })
        .unwrap_or_default();
    OpTransactionReceipt {
        inner: TransactionReceipt {
            inner: ReceiptWithBloom { receipt, logs_bloom: bloom },
            transaction_hash: tx.hash,
            transaction_index: Some(tx.index),
            block_hash: block.hash,
            block_number: Some(block.number),
            gas_used: tx.gas_used,
            effective_gas_price: tx.effective_gas_price,
            blob_gas_used: None,
            blob_gas_price: None,
            from: tx.sender,
            to: alloy_consensus::Transaction::to(&tx.tx),
            contract_address: tx.contract_address,
        },
        l1_block_info,
        op_gas_refund: None,
    }
}

fn with_logs<T>(r: &alloy_consensus::Receipt<T>, logs: Vec<Log>) -> alloy_consensus::Receipt<Log> {
    alloy_consensus::Receipt { status: r.status, cumulative_gas_used: r.cumulative_gas_used, logs }
}

/// The `eth_getTransactionByHash` answer; `block` is None for a mempool transaction.
pub fn rpc_transaction(tx: &ExecutedTx, block: Option<&BlockContext>) -> Transaction {
    let (deposit_nonce, deposit_receipt_version) = match &tx.receipt {
        OpReceipt::Deposit(r) => (r.deposit_nonce, r.deposit_receipt_version),
        _ => (None, None),
    };
    rpc_transaction_raw(
        tx.tx.clone(),
        tx.sender,
        block.map(|b| (b, tx.index)),
        deposit_nonce,
        deposit_receipt_version,
    )
}

/// An RPC transaction from its parts.
pub fn rpc_transaction_raw(
    tx: OpTxEnvelope,
    sender: alloy_primitives::Address,
    position: Option<(&BlockContext, u64)>,
    deposit_nonce: Option<u64>,
    deposit_receipt_version: Option<u64>,
) -> Transaction {
    let info = op_alloy_consensus::transaction::OpTransactionInfo {
        inner: alloy_consensus::transaction::TransactionInfo {
            hash: Some(tx.tx_hash()),
            index: position.map(|(_, i)| i),
            block_hash: position.and_then(|(b, _)| b.hash),
            block_number: position.map(|(b, _)| b.number),
            block_timestamp: position.map(|(b, _)| b.timestamp),
            base_fee: position.map(|(b, _)| b.base_fee),
        },
        deposit_meta: op_alloy_consensus::transaction::OpDepositInfo {
            deposit_nonce,
            deposit_receipt_version,
        },
    };
    Transaction::from_transaction(Recovered::new_unchecked(tx, sender), info)
}

/// An RPC block from a header, its hash (a preconfirmed block's provisional hash) and its
/// transactions (hashes only unless `full`), which carry the same `blockHash`.
pub fn rpc_block(
    header: &Header,
    hash: B256,
    txs: &[ExecutedTx],
    full: bool,
) -> Block<Transaction> {
    let ctx = BlockContext::of(header, hash);
    let transactions = if full {
        BlockTransactions::Full(txs.iter().map(|t| rpc_transaction(t, Some(&ctx))).collect())
    } else {
        BlockTransactions::Hashes(txs.iter().map(|t| t.hash).collect())
    };
    let size =
        alloy_rlp::Encodable::length(header) + txs.iter().map(|t| t.encoded.len()).sum::<usize>();
    Block {
        header: alloy_rpc_types_eth::Header {
            hash,
            inner: header.clone(),
            total_difficulty: Some(U256::ZERO),
            size: Some(U256::from(size)),
        },
        uncles: Vec::new(),
        transactions,
        withdrawals: Some(Default::default()),
    }
}
