//! Fixtures shared by the gossip crate's integration tests and its alt-sync example
//! (`#[path]`-included there): the dev sequencer key, a host config on 127.0.0.1, and an empty
//! block that passes Isthmus (v4) validation.
#![allow(dead_code)] // each includer uses its own subset

use alloy_consensus::{Block, BlockBody, Header};
use alloy_primitives::{Bytes, B256};
use alloy_signer_local::PrivateKeySigner;
use flashnode_gossip::GossipConfig;
use op_alloy_consensus::OpTxEnvelope;
use std::time::{SystemTime, UNIX_EPOCH};

/// The chain id every fixture uses.
pub const CHAIN: u64 = 901;

/// The unsafe-block signer of the fixtures.
pub fn signer() -> PrivateKeySigner {
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d".parse().unwrap()
}

/// Wall-clock seconds (block timestamps must be inside the gossip window).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A host listening on an ephemeral 127.0.0.1 port, trusting [`signer`].
pub fn config() -> GossipConfig {
    GossipConfig::new(CHAIN, "/ip4/127.0.0.1/tcp/0".parse().unwrap(), signer().address())
}

/// An empty Isthmus block (v4 rules: empty withdrawals, withdrawals root, blob fields zero,
/// beacon root set) and its hash; `salt` fills `extra_data` so blocks at one height differ.
pub fn empty_block(
    number: u64,
    timestamp: u64,
    parent_hash: B256,
    salt: u8,
) -> (Block<OpTxEnvelope>, B256) {
    let header = Header {
        number,
        parent_hash,
        timestamp,
        gas_limit: 30_000_000,
        base_fee_per_gas: Some(1_000_000_000),
        withdrawals_root: Some(alloy_consensus::constants::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::repeat_byte(3)),
        requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
        extra_data: Bytes::from(vec![salt; 9]),
        ..Default::default()
    };
    let block = Block {
        header,
        body: BlockBody {
            transactions: vec![],
            ommers: vec![],
            withdrawals: Some(Default::default()),
        },
    };
    let hash = block.header.hash_slow();
    (block, hash)
}

/// A task executor for a host under test (nothing watches its failures: a test cancels its
/// hosts without a shutdown).
pub fn tasks() -> flashnode_tasks::TaskExecutor {
    flashnode_tasks::TaskManager::new().executor()
}
