//! OP block execution shared by the embedded devnet (which builds blocks) and the overlay
//! (which re-executes flashblocks): the chain's execution parameters, the L1-info system
//! deposit, transaction execution with op-revm into OP receipts, and the roots and header of a
//! block so far.

pub mod access_list;
pub mod builder;
pub mod chain;
pub mod l1info;
pub mod state;

pub use builder::{BlockBuilder, BlockEnvInput, ExecError, ExecutedTx, L1FeeInfo};
pub use chain::ChainConfig;
pub use state::{dump_state, state_root, AccountDump, MemDb};
pub mod call;
pub mod convert;
pub mod simulate;
pub mod source;
pub use source::{
    CanonicalBlock, CanonicalNotification, SourceAccount, SourceDb, SourceError, StateSource,
};
