//! The L1-info system deposit that opens every OP block, and a minimal `L1Block` predeploy.
//!
//! op-revm reads L1 fee parameters from the storage of `0x4200…0015`. The devnet does not ship
//! the Solidity predeploy; instead it installs [`l1_block_bytecode`], a few dozen bytes that
//! accept the Isthmus `setL1BlockValuesIsthmus` calldata from the depositor account only and
//! store each field in the slot the real contract uses, so op-revm computes real L1 fees.

use alloy_consensus::Sealed;
use alloy_primitives::{address, keccak256, Address, Bytes, TxKind, B256, U256};
use op_alloy_consensus::{OpTxEnvelope, TxDeposit};
use op_revm::constants::L1_BLOCK_CONTRACT;

/// The depositor account that sends the L1-info transaction.
pub const L1_INFO_DEPOSITOR: Address = address!("0xDeaDDEaDDeAdDeAdDEAdDEaddeAddEAdDEAd0001");
/// `setL1BlockValuesIsthmus()` selector.
pub const SET_L1_BLOCK_VALUES_ISTHMUS: [u8; 4] = [0x09, 0x89, 0x99, 0xbe];
/// Gas limit of the L1-info deposit, as op-node sets it.
pub const L1_INFO_GAS_LIMIT: u64 = 1_000_000;

/// The L1 values a block's L1-info deposit carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Info {
    /// L1 origin number.
    pub number: u64,
    /// L1 origin timestamp.
    pub timestamp: u64,
    /// L1 origin base fee.
    pub base_fee: U256,
    /// L1 blob base fee.
    pub blob_base_fee: U256,
    /// L1 origin hash.
    pub hash: B256,
    /// Position of the L2 block in its epoch.
    pub sequence_number: u64,
    /// Batcher address as a bytes32.
    pub batcher_hash: B256,
    /// Ecotone base fee scalar.
    pub base_fee_scalar: u32,
    /// Ecotone blob base fee scalar.
    pub blob_base_fee_scalar: u32,
    /// Isthmus operator fee scalar.
    pub operator_fee_scalar: u32,
    /// Isthmus operator fee constant.
    pub operator_fee_constant: u64,
}

impl L1Info {
    /// Plausible devnet values: Base-like scalars, a 1 gwei L1 base fee.
    pub fn devnet(l2_number: u64, l2_timestamp: u64) -> Self {
        // One L1 block every 6 L2 blocks (12 s / 2 s).
        let number = l2_number / 6;
        Self {
            number,
            timestamp: l2_timestamp.saturating_sub(l2_timestamp % 12),
            base_fee: U256::from(1_000_000_000u64),
            blob_base_fee: U256::from(1u64),
            hash: keccak256(number.to_be_bytes()),
            sequence_number: l2_number % 6,
            batcher_hash: B256::left_padding_from(&[0xba; 20]),
            base_fee_scalar: 2269,
            blob_base_fee_scalar: 1_055_762,
            operator_fee_scalar: 0,
            operator_fee_constant: 0,
        }
    }

    /// The `setL1BlockValuesIsthmus` calldata (176 bytes, tightly packed).
    pub fn calldata(&self) -> Bytes {
        let mut out = Vec::with_capacity(176);
        out.extend_from_slice(&SET_L1_BLOCK_VALUES_ISTHMUS);
        out.extend_from_slice(&self.base_fee_scalar.to_be_bytes());
        out.extend_from_slice(&self.blob_base_fee_scalar.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.base_fee.to_be_bytes::<32>());
        out.extend_from_slice(&self.blob_base_fee.to_be_bytes::<32>());
        out.extend_from_slice(self.hash.as_slice());
        out.extend_from_slice(self.batcher_hash.as_slice());
        out.extend_from_slice(&self.operator_fee_scalar.to_be_bytes());
        out.extend_from_slice(&self.operator_fee_constant.to_be_bytes());
        out.into()
    }

    /// The L1-info deposit transaction with its spec source hash (domain 1).
    pub fn deposit_tx(&self) -> OpTxEnvelope {
        let mut seq = [0u8; 32];
        seq[24..].copy_from_slice(&self.sequence_number.to_be_bytes());
        let inner = keccak256([self.hash.as_slice(), &seq].concat());
        let mut domain = [0u8; 32];
        domain[31] = 1;
        let source_hash = keccak256([&domain[..], inner.as_slice()].concat());
        let tx = TxDeposit {
            source_hash,
            from: L1_INFO_DEPOSITOR,
            to: TxKind::Call(L1_BLOCK_CONTRACT),
            mint: 0,
            value: U256::ZERO,
            gas_limit: L1_INFO_GAS_LIMIT,
            is_system_transaction: false,
            input: self.calldata(),
        };
        OpTxEnvelope::Deposit(Sealed::new(tx))
    }
}

/// Runtime code of the minimal `L1Block` predeploy (see the module docs).
pub fn l1_block_bytecode() -> Bytes {
    let mut code = Vec::with_capacity(96);
    // if caller != depositor { revert(0, 0) }
    code.push(0x33); // CALLER
    code.push(0x73); // PUSH20 depositor
    code.extend_from_slice(L1_INFO_DEPOSITOR.as_slice());
    code.push(0x14); // EQ
    let jumpdest_at = code.len();
    code.extend_from_slice(&[0x60, 0x00]); // PUSH1 <ok>, patched below
    code.push(0x57); // JUMPI
    code.extend_from_slice(&[0x60, 0x00, 0x80, 0xfd]); // PUSH1 0 DUP1 REVERT
    let ok = code.len() as u8;
    code[jumpdest_at + 1] = ok;
    code.push(0x5b); // JUMPDEST
                     // (calldata offset, right shift in bits, storage slot), as the Solidity predeploy stores them.
    for (offset, shift, slot) in [
        (4u8, 128u8, 3u8),
        (20, 128, 0),
        (36, 0, 1),
        (68, 0, 7),
        (100, 0, 2),
        (132, 0, 4),
        (164, 160, 8),
    ] {
        code.extend_from_slice(&[0x60, offset, 0x35]); // PUSH1 off CALLDATALOAD
        if shift != 0 {
            code.extend_from_slice(&[0x60, shift, 0x1c]); // PUSH1 shift SHR
        }
        code.extend_from_slice(&[0x60, slot, 0x55]); // PUSH1 slot SSTORE
    }
    code.push(0x00); // STOP
    code.into()
}
