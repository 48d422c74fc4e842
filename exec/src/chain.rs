//! Execution parameters of an OP chain.

use alloy_eips::eip1559::BaseFeeParams;
use alloy_op_hardforks::OpChainHardforks;
use alloy_primitives::{address, Address};
use op_revm::OpSpecId;

/// The sequencer fee vault, the coinbase of every OP block.
pub const SEQUENCER_FEE_VAULT: Address = address!("0x4200000000000000000000000000000000000011");
/// The L2-to-L1 message passer; its storage root is the Isthmus `withdrawals_root`.
pub const L2_TO_L1_MESSAGE_PASSER: Address = address!("0x4200000000000000000000000000000000000016");

/// What an executor needs to know about the chain it runs.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The OP hardfork of every block when no schedule is set (the devnet starts at Isthmus).
    pub spec: OpSpecId,
    /// The chain's hardfork schedule (public chains); blocks then run the fork active at their
    /// timestamp.
    pub hardforks: Option<OpChainHardforks>,
    /// EIP-1559 parameters (OP Canyon: denominator 250, elasticity 6).
    pub base_fee_params: BaseFeeParams,
}

impl ChainConfig {
    /// An OP devnet at Isthmus with the given chain id.
    pub fn devnet(chain_id: u64) -> Self {
        Self {
            chain_id,
            spec: OpSpecId::ISTHMUS,
            hardforks: None,
            base_fee_params: BaseFeeParams::optimism_canyon(),
        }
    }

    /// A public chain with its hardfork schedule (from `alloy-op-hardforks`).
    pub fn with_hardforks(
        chain_id: u64,
        hardforks: OpChainHardforks,
        base_fee_params: BaseFeeParams,
    ) -> Self {
        let spec = alloy_op_evm::spec_by_timestamp_after_bedrock(&hardforks, u64::MAX / 2);
        Self { chain_id, spec, hardforks: Some(hardforks), base_fee_params }
    }

    /// The OP hardfork of a block with this timestamp.
    pub fn spec_at(&self, timestamp: u64) -> OpSpecId {
        match &self.hardforks {
            Some(forks) => alloy_op_evm::spec_by_timestamp_after_bedrock(forks, timestamp),
            None => self.spec,
        }
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
