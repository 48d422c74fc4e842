//! Execution parameters of an OP chain.

use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::{address, Address};
use op_revm::OpSpecId;

/// The sequencer fee vault, the coinbase of every OP block.
pub const SEQUENCER_FEE_VAULT: Address = address!("0x4200000000000000000000000000000000000011");
/// The L2-to-L1 message passer; its storage root is the Isthmus `withdrawals_root`.
pub const L2_TO_L1_MESSAGE_PASSER: Address = address!("0x4200000000000000000000000000000000000016");

/// What an executor needs to know about the chain it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainConfig {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The OP hardfork active for every block (the devnet starts at Isthmus).
    pub spec: OpSpecId,
    /// EIP-1559 parameters (OP Canyon: denominator 250, elasticity 6).
    pub base_fee_params: BaseFeeParams,
}

impl ChainConfig {
    /// An OP devnet at Isthmus with the given chain id.
    pub fn devnet(chain_id: u64) -> Self {
        Self { chain_id, spec: OpSpecId::ISTHMUS, base_fee_params: BaseFeeParams::optimism_canyon() }
    }

    /// The Holocene `extra_data`: version 0, then the EIP-1559 denominator and elasticity.
    pub fn holocene_extra_data(&self) -> alloy_primitives::Bytes {
        let mut out = Vec::with_capacity(9);
        out.push(0u8);
        out.extend_from_slice(&(self.base_fee_params.max_change_denominator as u32).to_be_bytes());
        out.extend_from_slice(&(self.base_fee_params.elasticity_multiplier as u32).to_be_bytes());
        out.into()
    }
}
