//! Executes a block's transactions one at a time with op-revm and keeps what a flashblock needs:
//! OP receipts, cumulative gas, the bloom, and the roots and header of the block so far.

use crate::{
    chain::{ChainConfig, SEQUENCER_FEE_VAULT},
    error::ExecError,
};
use alloy_consensus::{
    proofs::ordered_trie_root_with_encoder, Eip658Value, Header, Receipt, Transaction,
    EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::{eip7685::EMPTY_REQUESTS_HASH, Typed2718};
use alloy_evm::{Evm, EvmEnv, EvmFactory, FromTxWithEncoded};
use alloy_op_evm::{OpEvmFactory, OpTx};
use alloy_primitives::{Address, Bloom, Bytes, B256, U256};
use op_alloy_consensus::{OpDepositReceipt, OpReceipt, OpTxEnvelope};
use op_revm::{L1BlockInfo, OpHaltReason, OpSpecId};
use revm::{
    context::{BlockEnv, CfgEnv},
    context_interface::{block::BlobExcessGasAndPrice, result::ExecutionResult},
    state::EvmState,
    Database, DatabaseCommit,
};

/// The fields of a block that are fixed before its first transaction (a flashblock `base`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEnvInput {
    /// Block number.
    pub number: u64,
    /// Block timestamp (seconds).
    pub timestamp: u64,
    /// Fee recipient.
    pub coinbase: Address,
    /// EIP-1559 base fee.
    pub base_fee: u64,
    /// Block gas limit.
    pub gas_limit: u64,
    /// `prev_randao` (the header's mix hash).
    pub prev_randao: B256,
    /// Parent block hash.
    pub parent_hash: B256,
    /// Parent beacon block root (EIP-4788).
    pub parent_beacon_block_root: B256,
    /// Header extra data.
    pub extra_data: Bytes,
}

impl BlockEnvInput {
    /// The revm environment of this block.
    pub fn evm_env(&self, chain: &ChainConfig) -> EvmEnv<OpSpecId> {
        let cfg = CfgEnv::new()
            .with_chain_id(chain.chain_id)
            .with_spec_and_mainnet_gas_params(chain.spec_at(self.timestamp));
        let block = BlockEnv {
            number: U256::from(self.number),
            beneficiary: self.coinbase,
            timestamp: U256::from(self.timestamp),
            difficulty: U256::ZERO,
            prevrandao: Some(self.prev_randao),
            gas_limit: self.gas_limit,
            basefee: self.base_fee,
            blob_excess_gas_and_price: Some(BlobExcessGasAndPrice {
                excess_blob_gas: 0,
                blob_gasprice: 1,
            }),
            slot_num: 0,
        };
        EvmEnv::new(cfg, block)
    }

    /// The environment of an existing block, for calls at that block.
    pub fn from_header(header: &Header) -> Self {
        Self {
            number: header.number,
            timestamp: header.timestamp,
            coinbase: header.beneficiary,
            base_fee: header.base_fee_per_gas.unwrap_or_default(),
            gas_limit: header.gas_limit,
            prev_randao: header.mix_hash,
            parent_hash: header.parent_hash,
            parent_beacon_block_root: header.parent_beacon_block_root.unwrap_or_default(),
            extra_data: header.extra_data.clone(),
        }
    }

    /// The devnet's base of the block after `parent`.
    pub fn next_devnet(
        chain: &ChainConfig,
        parent: &Header,
        timestamp: u64,
        gas_limit: u64,
    ) -> Self {
        let base_fee = parent.next_block_base_fee(chain.base_fee_params).unwrap_or(1_000_000);
        let number = parent.number + 1;
        Self {
            number,
            timestamp,
            coinbase: SEQUENCER_FEE_VAULT,
            base_fee,
            gas_limit,
            prev_randao: alloy_primitives::keccak256(number.to_be_bytes()),
            parent_hash: parent.hash_slow(),
            parent_beacon_block_root: alloy_primitives::keccak256(
                [b"beacon".as_slice(), &number.to_be_bytes()].concat(),
            ),
            extra_data: chain.holocene_extra_data(),
        }
    }
}

/// The L1 data fee fields of a non-deposit receipt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L1FeeInfo {
    /// L1 fee charged, in wei.
    pub l1_fee: u128,
    /// L1 gas used (Fjord: estimated compressed size based).
    pub l1_gas_used: u128,
    /// L1 base fee the fee was computed with.
    pub l1_gas_price: u128,
    /// L1 blob base fee.
    pub l1_blob_base_fee: u128,
    /// Ecotone base fee scalar.
    pub l1_base_fee_scalar: u128,
    /// Ecotone blob base fee scalar.
    pub l1_blob_base_fee_scalar: u128,
    /// Isthmus operator fee scalar.
    pub operator_fee_scalar: u128,
    /// Isthmus operator fee constant.
    pub operator_fee_constant: u128,
}

/// A transaction executed into the block, with its receipt and where it sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutedTx {
    /// The transaction.
    pub tx: OpTxEnvelope,
    /// Its EIP-2718 encoding.
    pub encoded: Bytes,
    /// Transaction hash.
    pub hash: B256,
    /// Recovered sender.
    pub sender: Address,
    /// OP receipt with cumulative gas.
    pub receipt: OpReceipt,
    /// Gas this transaction used.
    pub gas_used: u64,
    /// Price paid per gas.
    pub effective_gas_price: u128,
    /// Address of the contract a creation made.
    pub contract_address: Option<Address>,
    /// Index of the transaction in the block.
    pub index: u64,
    /// Block-wide index of its first log.
    pub first_log_index: u64,
    /// L1 fee fields (None for deposits).
    pub l1: Option<L1FeeInfo>,
}

/// A transaction executed over a block's state but not committed ([`BlockBuilder::transact`]).
#[derive(Clone, Debug)]
pub struct TxOutcome {
    tx: OpTxEnvelope,
    sender: Address,
    encoded: Bytes,
    depositor_nonce: Option<u64>,
    result: ExecutionResult<OpHaltReason>,
    state: EvmState,
    l1: Option<L1FeeInfo>,
}

impl TxOutcome {
    /// The transaction's hash.
    pub fn hash(&self) -> B256 {
        self.tx.tx_hash()
    }
}

/// Builds one block incrementally over a database `DB`.
#[derive(Debug, Clone)]
pub struct BlockBuilder<DB> {
    chain: ChainConfig,
    input: BlockEnvInput,
    evm_env: EvmEnv<OpSpecId>,
    db: DB,
    txs: Vec<ExecutedTx>,
    gas_used: u64,
    log_count: u64,
    bloom: Bloom,
    /// Each receipt's bloom, kept for the receipts root (computed once, at execution).
    blooms: Vec<Bloom>,
    l1_block_info: Option<L1BlockInfo>,
}

impl<DB> BlockBuilder<DB>
where
    DB: Database + DatabaseCommit + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    /// Starts a block over `db`, the state after the parent.
    pub fn new(chain: ChainConfig, input: BlockEnvInput, db: DB) -> Self {
        let evm_env = input.evm_env(&chain);
        Self {
            chain,
            input,
            evm_env,
            db,
            txs: Vec::new(),
            gas_used: 0,
            log_count: 0,
            bloom: Bloom::ZERO,
            blooms: Vec::new(),
            l1_block_info: None,
        }
    }

    /// The block's fixed fields.
    pub fn input(&self) -> &BlockEnvInput {
        &self.input
    }

    /// The revm environment the block executes in.
    pub fn evm_env(&self) -> &EvmEnv<OpSpecId> {
        &self.evm_env
    }

    /// Chain parameters.
    pub fn chain(&self) -> &ChainConfig {
        &self.chain
    }

    /// Gas used so far.
    pub fn gas_used(&self) -> u64 {
        self.gas_used
    }

    /// Transactions executed so far.
    pub fn transactions(&self) -> &[ExecutedTx] {
        &self.txs
    }

    /// The state after the last executed transaction.
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Mutable access to the state (for reads that warm caches).
    pub fn db_mut(&mut self) -> &mut DB {
        &mut self.db
    }

    /// Gives back the state.
    pub fn into_db(self) -> DB {
        self.db
    }

    /// Executes `tx` (signed by `sender`, encoded as `encoded`) on top of the block so far and
    /// commits it. An invalid transaction leaves the block untouched.
    pub fn execute(
        &mut self,
        tx: OpTxEnvelope,
        sender: Address,
        encoded: Bytes,
    ) -> Result<&ExecutedTx, ExecError<DB::Error>> {
        let outcome = self.transact(tx, sender, encoded)?;
        Ok(self.commit(outcome))
    }

    /// Executes `tx` on top of the block so far without committing it: the block is untouched
    /// until [`Self::commit`]. An outcome committed into another builder whose state answers
    /// every read the same way gives that builder exactly what [`Self::execute`] would.
    pub fn transact(
        &mut self,
        tx: OpTxEnvelope,
        sender: Address,
        encoded: Bytes,
    ) -> Result<TxOutcome, ExecError<DB::Error>> {
        let is_deposit = tx.is_deposit();
        let op_tx = OpTx::from_encoded_tx(&tx, sender, encoded.clone());
        let depositor_nonce = if is_deposit {
            Some(
                self.db
                    .basic(sender)
                    .map_err(ExecError::State)?
                    .map(|a| a.nonce)
                    .unwrap_or_default(),
            )
        } else {
            None
        };
        let mut evm =
            OpEvmFactory::<OpTx>::default().create_evm(&mut self.db, self.evm_env.clone());
        let result = evm.transact(op_tx).map_err(ExecError::from)?;
        drop(evm);
        // The L1 fee parameters before the commit: a user transaction cannot change them (only
        // the depositor writes L1Block).
        let l1 = if is_deposit { None } else { Some(self.l1_fee_info(&encoded)?) };
        Ok(TxOutcome {
            tx,
            sender,
            encoded,
            depositor_nonce,
            result: result.result,
            state: result.state,
            l1,
        })
    }

    /// Commits an outcome of [`Self::transact`] into the block: its state changes, receipt,
    /// gas and logs. Infallible, so a block is never left half committed.
    pub fn commit(&mut self, outcome: TxOutcome) -> &ExecutedTx {
        let TxOutcome { tx, sender, encoded, depositor_nonce, result, state, l1 } = outcome;
        if tx.is_deposit() {
            // The L1-info deposit changes the fee parameters: read them afresh after it.
            self.l1_block_info = None;
        }
        let gas_used = result.tx_gas_used();
        let contract_address = result.created_address();
        let success = result.is_success();
        let logs = match result {
            ExecutionResult::Success { logs, .. } => logs,
            _ => Vec::new(),
        };
        self.db.commit(state);

        self.gas_used += gas_used;
        let first_log_index = self.log_count;
        self.log_count += logs.len() as u64;
        let receipt_bloom = alloy_primitives::logs_bloom(&logs);
        self.bloom.accrue_bloom(&receipt_bloom);
        let inner = Receipt {
            status: Eip658Value::Eip658(success),
            cumulative_gas_used: self.gas_used,
            logs,
        };
        let receipt = match tx.ty() {
            0 => OpReceipt::Legacy(inner),
            1 => OpReceipt::Eip2930(inner),
            2 => OpReceipt::Eip1559(inner),
            4 => OpReceipt::Eip7702(inner),
            0x7d => OpReceipt::PostExec(inner),
            _ => OpReceipt::Deposit(OpDepositReceipt {
                inner,
                deposit_nonce: depositor_nonce,
                deposit_receipt_version: Some(1),
            }),
        };

        let effective_gas_price =
            if tx.is_deposit() { 0 } else { tx.effective_gas_price(Some(self.input.base_fee)) };
        let index = self.txs.len() as u64;
        self.blooms.push(receipt_bloom);
        self.txs.push(ExecutedTx {
            hash: tx.tx_hash(),
            tx,
            encoded,
            sender,
            receipt,
            gas_used,
            effective_gas_price,
            contract_address,
            index,
            first_log_index,
            l1,
        });
        self.txs.last().expect("just pushed")
    }

    fn l1_fee_info(&mut self, encoded: &[u8]) -> Result<L1FeeInfo, ExecError<DB::Error>> {
        let spec = self.chain.spec_at(self.input.timestamp);
        if self.l1_block_info.is_none() {
            let info = L1BlockInfo::try_fetch(&mut self.db, U256::from(self.input.number), spec)
                .map_err(ExecError::State)?;
            self.l1_block_info = Some(info);
        }
        let info = self.l1_block_info.as_mut().expect("fetched above");
        info.clear_tx_l1_cost();
        let l1_fee = info.calculate_tx_l1_cost(encoded, spec);
        info.clear_tx_l1_cost();
        let l1_gas_used = info.data_gas(encoded, spec);
        Ok(L1FeeInfo {
            l1_fee: l1_fee.saturating_to(),
            l1_gas_used: l1_gas_used.saturating_to(),
            l1_gas_price: info.l1_base_fee.saturating_to(),
            l1_blob_base_fee: info.l1_blob_base_fee.unwrap_or_default().saturating_to(),
            l1_base_fee_scalar: info.l1_base_fee_scalar.saturating_to(),
            l1_blob_base_fee_scalar: info
                .l1_blob_base_fee_scalar
                .unwrap_or_default()
                .saturating_to(),
            operator_fee_scalar: info.operator_fee_scalar.unwrap_or_default().saturating_to(),
            operator_fee_constant: info.operator_fee_constant.unwrap_or_default().saturating_to(),
        })
    }

    /// Receipts root over the receipts so far.
    pub fn receipts_root(&self) -> B256 {
        use alloy_consensus::Eip2718EncodableReceipt;
        let receipts: Vec<(&OpReceipt, &Bloom)> =
            self.txs.iter().map(|t| &t.receipt).zip(&self.blooms).collect();
        ordered_trie_root_with_encoder(&receipts, |(r, bloom), buf| {
            r.eip2718_encode_with_bloom(bloom, buf)
        })
    }

    /// Transactions root over the transactions so far.
    pub fn transactions_root(&self) -> B256 {
        ordered_trie_root_with_encoder(&self.txs, |t, buf| buf.extend_from_slice(&t.encoded))
    }

    /// Logs bloom of the block so far.
    pub fn logs_bloom(&self) -> Bloom {
        self.bloom
    }

    /// The header of the block if it ended after the last executed transaction.
    pub fn header(&self, state_root: B256, withdrawals_root: B256) -> Header {
        Header {
            parent_hash: self.input.parent_hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: self.input.coinbase,
            state_root,
            transactions_root: self.transactions_root(),
            receipts_root: self.receipts_root(),
            logs_bloom: self.bloom,
            difficulty: U256::ZERO,
            number: self.input.number,
            gas_limit: self.input.gas_limit,
            gas_used: self.gas_used,
            timestamp: self.input.timestamp,
            extra_data: self.input.extra_data.clone(),
            mix_hash: self.input.prev_randao,
            nonce: Default::default(),
            base_fee_per_gas: Some(self.input.base_fee),
            withdrawals_root: Some(withdrawals_root),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(self.input.parent_beacon_block_root),
            requests_hash: Some(EMPTY_REQUESTS_HASH),
            ..Default::default()
        }
    }
}

/// Receipts root of OP receipts (EIP-2718 encoding with bloom).
pub fn receipts_root<'a>(receipts: impl IntoIterator<Item = &'a OpReceipt>) -> B256 {
    use alloy_consensus::{Eip2718EncodableReceipt, TxReceipt};
    let receipts: Vec<&OpReceipt> = receipts.into_iter().collect();
    ordered_trie_root_with_encoder(&receipts, |r, buf| r.eip2718_encode_with_bloom(&r.bloom(), buf))
}
