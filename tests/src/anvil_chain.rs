//! Playing the builder over anvil: blocks N+1 built as flashblocks over anvil's state at N
//! through flashnode's own upstream `StateSource`, and helpers to deploy and mine.

use crate::raw_rpc;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, B256, U256};
use flashnode_exec::{BlockBuilder, BlockEnvInput, ChainConfig, SourceDb, StateSource};
use flashnode_overlay::{UpstreamConfig, UpstreamSource};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::flashblock::{
    OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
    OpFlashblockPayloadMetadata,
};
use revm::database::CacheDB;
use serde_json::{json, Value};
use std::sync::Arc;

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(
        v.as_str().unwrap_or_else(|| panic!("quantity, got {v}")).trim_start_matches("0x"),
        16,
    )
    .expect("hex quantity")
}

/// Sends `raws` to anvil and mines them into one block.
pub async fn mine(anvil: &str, raws: &[Bytes]) {
    for raw in raws {
        let r = raw_rpc(anvil, "eth_sendRawTransaction", json!([raw])).await;
        assert!(r.get("result").is_some(), "anvil accepts the tx: {r}");
    }
    let r = raw_rpc(anvil, "evm_mine", json!([])).await;
    assert!(r.get("result").is_some(), "{r}");
}

/// Creation code `bin` (hex) followed by ABI-encoded constructor `args`.
pub fn creation(bin: &str, args: &[u8]) -> Bytes {
    let mut code = alloy_primitives::hex::decode(bin.trim()).unwrap();
    code.extend_from_slice(args);
    code.into()
}

/// Executes `chunks` (one per flashblock) over anvil's state at `env.parent_hash` through
/// flashnode's own upstream `StateSource`, and returns the flashblock frames of block N+1.
pub async fn build_frames(
    anvil: &str,
    chain_id: u64,
    env: &BlockEnvInput,
    chunks: Vec<Vec<Bytes>>,
) -> Vec<String> {
    let upstream = UpstreamSource::connect(
        UpstreamConfig { url: anvil.to_string(), ..Default::default() },
        Default::default(),
        &flashnode_tasks::TaskManager::new().executor(),
    )
    .await
    .unwrap();
    let source: Arc<dyn StateSource> = Arc::new(upstream);
    let handle = tokio::runtime::Handle::current();
    let env2 = env.clone();
    tokio::task::spawn_blocking(move || {
        let db = CacheDB::new(SourceDb::new(source, env2.parent_hash, handle));
        let mut builder = BlockBuilder::new(ChainConfig::devnet(chain_id), env2.clone(), db);
        let base = OpFlashblockPayloadBase {
            parent_beacon_block_root: env2.parent_beacon_block_root,
            parent_hash: env2.parent_hash,
            fee_recipient: env2.coinbase,
            prev_randao: env2.prev_randao,
            block_number: env2.number,
            gas_limit: env2.gas_limit,
            timestamp: env2.timestamp,
            extra_data: env2.extra_data.clone(),
            base_fee_per_gas: U256::from(env2.base_fee),
        };
        let payload_id = alloy_rpc_types_engine::PayloadId::new([7; 8]);
        let mut frames = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            let first = builder.transactions().len();
            for raw in chunk {
                let tx = OpTxEnvelope::decode_2718_exact(raw).unwrap();
                let sender =
                    alloy_consensus::transaction::SignerRecoverable::recover_signer(&tx).unwrap();
                builder.execute(tx, sender, raw.clone()).expect("executes over anvil's state");
            }
            let header = builder.header(B256::ZERO, B256::ZERO);
            let new = &builder.transactions()[first..];
            let fb = OpFlashblockPayload {
                payload_id,
                index: index as u64,
                base: (index == 0).then(|| base.clone()),
                diff: OpFlashblockPayloadDelta {
                    state_root: B256::ZERO,
                    receipts_root: header.receipts_root,
                    logs_bloom: header.logs_bloom,
                    gas_used: header.gas_used,
                    block_hash: header.hash_slow(),
                    transactions: new.iter().map(|t| t.encoded.clone()).collect(),
                    withdrawals: Vec::new(),
                    withdrawals_root: B256::ZERO,
                    blob_gas_used: None,
                },
                metadata: OpFlashblockPayloadMetadata {
                    block_number: env2.number,
                    new_account_balances: Default::default(),
                    receipts: new.iter().map(|t| (t.hash, t.receipt.clone())).collect(),
                },
            };
            frames.push(serde_json::to_string(&fb).unwrap());
        }
        frames
    })
    .await
    .unwrap()
}

/// Block N+1's environment over anvil's latest block N.
pub fn next_env(parent: &Value, coinbase: Address) -> BlockEnvInput {
    BlockEnvInput {
        number: quantity(&parent["number"]) + 1,
        timestamp: quantity(&parent["timestamp"]) + 2,
        coinbase,
        base_fee: 1_000_000_000,
        gas_limit: quantity(&parent["gasLimit"]),
        prev_randao: B256::ZERO,
        parent_hash: parent["hash"].as_str().unwrap().parse().unwrap(),
        parent_beacon_block_root: B256::ZERO,
        extra_data: Bytes::new(),
    }
}
