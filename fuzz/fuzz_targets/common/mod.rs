//! Shared by the gossip fuzz targets: a block built from fuzzer-chosen fields, sealed with its
//! correct hash (so it can pass validation) unless the input says otherwise, signed with the
//! devnet's unsafe-block signer, optionally with its payload bytes mutated *before* signing, so
//! broken payloads still get past the signature check and reach SSZ decoding, the version
//! rules and the hash check.
#![allow(dead_code)] // each target uses its own subset

use alloy_eips::eip4895::Withdrawal;
use alloy_eips::eip7685::RequestsOrHash;
use alloy_primitives::{Address, Bloom, Bytes, B256, U256};
use alloy_rpc_types_engine::{
    CancunPayloadFields, ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3,
    PraguePayloadFields,
};
use alloy_signer_local::PrivateKeySigner;
use arbitrary::Arbitrary;
use flashnode_gossip::{altsync, codec, BlockVersion};
use op_alloy_rpc_types_engine::{
    OpExecutionPayload, OpExecutionPayloadSidecar, OpExecutionPayloadV4,
};

/// The validation clock of every target (block timestamps are relative to it).
pub const NOW: u64 = 1_700_000_000;
/// The chain id of every target.
pub const CHAIN: u64 = 901;

/// The unsafe-block signer the validator trusts.
pub fn signer() -> PrivateKeySigner {
    flashnode_gossip::DEV_UNSAFE_BLOCK_SIGNER_KEY.parse().expect("dev key parses")
}

/// Another key: its signatures must be rejected.
pub fn other_signer() -> PrivateKeySigner {
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
        .parse()
        .expect("key parses")
}

/// One byte patch of the encoded payload.
#[derive(Arbitrary, Debug)]
pub enum Mutation {
    /// Overwrite the byte at `at % len`.
    Set { at: u16, value: u8 },
    /// Insert bytes at `at % (len + 1)`.
    Insert { at: u16, bytes: Vec<u8> },
    /// Cut the payload to `len % (len + 1)` bytes.
    Truncate { len: u16 },
}

/// A block described by the fuzzer.
#[derive(Arbitrary, Debug)]
pub struct BlockSpec {
    /// Payload version (mod 4).
    pub version: u8,
    pub number: u64,
    /// Timestamp offset from [`NOW`] (the gossip window is -60 s..+5 s).
    pub ts_delta: i8,
    pub gas_limit: u64,
    pub gas_used: u64,
    pub base_fee: u64,
    pub parent_hash: [u8; 32],
    pub extra: Vec<u8>,
    /// Opaque transaction bytes (the payload carries them encoded; the hash covers them).
    pub txs: Vec<Vec<u8>>,
    /// L1 withdrawals in a v2+ payload (must be empty on OP chains).
    pub withdrawals: u8,
    pub blob_gas_used: u64,
    pub excess_blob_gas: u64,
    /// The beacon root; v3/v4 need it.
    pub beacon_root: Option<[u8; 32]>,
    /// Put the recomputed block hash in the payload (else a hash from the fuzzer).
    pub seal: bool,
    pub bogus_hash: [u8; 32],
    /// Sign with a key the validator does not trust.
    pub wrong_signer: bool,
    /// Patches of the encoded payload bytes, applied before signing.
    pub mutations: Vec<Mutation>,
}

fn small(x: u64) -> u64 {
    // Most fuzzer u64s are huge; keep many blocks in a realistic range too.
    if x & 1 == 0 {
        x >> 40
    } else {
        x
    }
}

impl BlockSpec {
    /// The payload and its beacon root, with the block hash set per [`BlockSpec::seal`].
    pub fn payload(&self) -> (OpExecutionPayload, Option<B256>) {
        let v1 = ExecutionPayloadV1 {
            parent_hash: B256::from(self.parent_hash),
            fee_recipient: Address::repeat_byte(0x42),
            state_root: B256::repeat_byte(1),
            receipts_root: B256::repeat_byte(2),
            logs_bloom: Bloom::default(),
            prev_randao: B256::repeat_byte(3),
            block_number: small(self.number),
            gas_limit: small(self.gas_limit),
            gas_used: small(self.gas_used),
            timestamp: NOW.saturating_add_signed(self.ts_delta as i64),
            extra_data: Bytes::from(self.extra.clone()),
            base_fee_per_gas: U256::from(small(self.base_fee)),
            block_hash: B256::from(self.bogus_hash),
            transactions: self.txs.iter().take(64).map(|t| Bytes::from(t.clone())).collect(),
        };
        let withdrawals: Vec<Withdrawal> = (0..self.withdrawals % 4)
            .map(|i| Withdrawal {
                index: i as u64,
                validator_index: 7,
                address: Address::repeat_byte(9),
                amount: 1,
            })
            .collect();
        let v2 = ExecutionPayloadV2 { payload_inner: v1, withdrawals };
        let v3 = ExecutionPayloadV3 {
            payload_inner: v2,
            blob_gas_used: small(self.blob_gas_used),
            excess_blob_gas: small(self.excess_blob_gas),
        };
        let beacon_root = self.beacon_root.map(B256::from);
        let mut payload = match self.version % 4 {
            0 => OpExecutionPayload::V1(v3.payload_inner.payload_inner),
            1 => OpExecutionPayload::V2(v3.payload_inner),
            2 => OpExecutionPayload::V3(v3),
            _ => OpExecutionPayload::V4(OpExecutionPayloadV4 {
                payload_inner: v3,
                withdrawals_root: alloy_consensus::constants::EMPTY_ROOT_HASH,
            }),
        };
        if self.seal {
            if let Some(hash) = seal_hash(&payload, beacon_root) {
                set_hash(&mut payload, hash);
            }
        }
        (payload, beacon_root)
    }

    /// The signed wire message (snappy), or None when the payload cannot be encoded (a v3/v4
    /// payload without a beacon root).
    pub fn wire(&self) -> Option<(BlockVersion, Vec<u8>)> {
        let (payload, beacon_root) = self.payload();
        let version = BlockVersion::of(&payload);
        let key = if self.wrong_signer { other_signer() } else { signer() };
        let signed = codec::sign_payload(payload, beacon_root, CHAIN, &key).ok()?;
        if self.mutations.is_empty() {
            return Some((version, signed.wire));
        }
        let mut bytes = altsync::payload_bytes(&signed.wire)?;
        mutate(&mut bytes, &self.mutations);
        let (wire, _, _) = codec::sign_raw(&bytes, CHAIN, &key).ok()?;
        Some((version, wire))
    }

    /// The payload bytes an alt-sync server answers with (`[beacon root ++] SSZ`), mutated.
    pub fn answer_payload(&self) -> Option<(BlockVersion, Vec<u8>)> {
        let (payload, beacon_root) = self.payload();
        let version = BlockVersion::of(&payload);
        let signed = codec::sign_payload(payload, beacon_root, CHAIN, &signer()).ok()?;
        let mut bytes = altsync::payload_bytes(&signed.wire)?;
        mutate(&mut bytes, &self.mutations);
        Some((version, bytes))
    }
}

/// Applies `mutations` to `bytes`, each bounded so inputs stay small.
pub fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations.iter().take(16) {
        match m {
            Mutation::Set { at, value } if !bytes.is_empty() => {
                let i = *at as usize % bytes.len();
                bytes[i] = *value;
            }
            Mutation::Set { .. } => {}
            Mutation::Insert { at, bytes: ins } => {
                let i = *at as usize % (bytes.len() + 1);
                let ins: Vec<u8> = ins.iter().take(256).copied().collect();
                bytes.splice(i..i, ins);
            }
            Mutation::Truncate { len } => {
                let n = *len as usize % (bytes.len() + 1);
                bytes.truncate(n);
            }
        }
    }
}

/// The hash of the header the validator rebuilds from `payload` (same sidecar rules as
/// `validate::rebuild`), if it rebuilds.
fn seal_hash(payload: &OpExecutionPayload, beacon_root: Option<B256>) -> Option<B256> {
    let sidecar = match (payload, beacon_root) {
        (OpExecutionPayload::V3(_), Some(root)) => {
            OpExecutionPayloadSidecar::v3(CancunPayloadFields::new(root, vec![]))
        }
        (OpExecutionPayload::V4(_), Some(root)) => OpExecutionPayloadSidecar::v4(
            CancunPayloadFields::new(root, vec![]),
            PraguePayloadFields::new(RequestsOrHash::empty()),
        ),
        _ => OpExecutionPayloadSidecar::default(),
    };
    let block = payload.clone().into_block_with_sidecar_raw(&sidecar).ok()?;
    Some(block.header.hash_slow())
}

fn set_hash(payload: &mut OpExecutionPayload, hash: B256) {
    match payload {
        OpExecutionPayload::V1(p) => p.block_hash = hash,
        OpExecutionPayload::V2(p) => p.payload_inner.block_hash = hash,
        OpExecutionPayload::V3(p) => p.payload_inner.payload_inner.block_hash = hash,
        OpExecutionPayload::V4(p) => p.payload_inner.payload_inner.payload_inner.block_hash = hash,
    }
}
