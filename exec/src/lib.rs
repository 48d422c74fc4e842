//! OP block execution shared by the embedded devnet (which builds blocks) and the overlay
//! (which re-executes flashblocks): the chain's execution parameters, the L1-info system
//! deposit, transaction execution with op-revm into OP receipts, and the roots and header of a
//! block so far; `eth_call` / `eth_estimateGas` / `eth_createAccessList` / `eth_simulateV1`
//! over any state; the RPC shapes of executed transactions; and the [`StateSource`] seam to
//! canonical state.
//!
//! Errors are typed through every seam: a [`StateSource`] fails with a [`SourceError`], block
//! execution with an [`ExecError`] that keeps the database's error type, calls with a
//! [`CallError`] whose state failures keep their cause as a [`StateError`], simulations with a
//! [`SimulateFailure`]. These say what went wrong and carry no JSON-RPC codes: the RPC crate
//! maps them to the codes it answers.

mod access_list;
mod builder;
mod call;
mod chain;
mod convert;
mod error;
mod l1info;
mod simulate;
mod source;
mod state;
#[cfg(test)]
mod testing;

pub use builder::{receipts_root, BlockBuilder, BlockEnvInput, ExecutedTx, L1FeeInfo, TxOutcome};
pub use call::{
    call, call_budgeted, create_access_list, create_access_list_budgeted, estimate_gas,
    estimate_gas_budgeted, tx_env, AccessListOutcome, Budget, BudgetInspector, CallError,
    CallOutcome, CallOverrides, InvalidCall, MAX_CALL_INPUT_BYTES, TRANSFER_GAS,
};
pub use chain::{ChainConfig, L2_TO_L1_MESSAGE_PASSER, SEQUENCER_FEE_VAULT};
pub use convert::{
    rpc_block, rpc_logs, rpc_receipt, rpc_transaction, rpc_transaction_raw, BlockContext,
};
pub use error::{ExecError, Rejection, StateError};
pub use l1info::{
    l1_block_bytecode, L1Info, L1_INFO_DEPOSITOR, L1_INFO_GAS_LIMIT, SET_L1_BLOCK_VALUES_ISTHMUS,
};
pub use simulate::{
    simulate, SimulateFailure, SimulatedRpcBlock, MAX_SIMULATE_CALLS, SIMULATE_TIMESTAMP_INCREMENT,
};
pub use source::{
    BoxedCause, CanonicalBlock, CanonicalNotification, SourceAccount, SourceDb, SourceError,
    StateSource,
};
pub use state::{
    account_storage_root, dump_state, state_root, state_root_of_dump, storage_root_of, AccountDump,
    MemDb,
};
