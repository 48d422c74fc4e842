//! Arbitrary JSON as the params of the pending calls (`eth_call` / `eth_estimateGas`:
//! call object, block id, state overrides, block overrides; `eth_getLogs` filters), parsed
//! into the same types the RPC layer deserializes into, then through the exec crate's pure
//! request handling: `tx_env`, `CallOverrides::database` (state overrides on an empty
//! state), `CallOverrides::env` and `call` itself. No panic on any input.
#![no_main]

use alloy_eips::BlockId;
use alloy_primitives::{Address, Bytes, B256};
use alloy_rpc_types_eth::{state::StateOverride, BlockOverrides, Filter, TransactionRequest};
use flashnode_exec::{call, tx_env, BlockEnvInput, CallOverrides, ChainConfig};
use libfuzzer_sys::fuzz_target;
use revm::{database::EmptyDB, Database};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(params) = serde_json::from_slice::<Value>(data) else { return };
    let get = |i: usize| params.get(i).filter(|v| !v.is_null()).cloned();
    let _ = params.get(1).map(|v| serde_json::from_value::<BlockId>(v.clone()));
    let _ = params.get(0).map(|v| serde_json::from_value::<Filter>(v.clone()));
    let overrides = CallOverrides {
        state: get(2).and_then(|v| serde_json::from_value::<StateOverride>(v).ok()),
        block: get(3).and_then(|v| serde_json::from_value::<BlockOverrides>(v).ok()),
    };
    let chain = ChainConfig::devnet(901);
    let block = BlockEnvInput {
        number: 2,
        timestamp: 1_700_000_000,
        coinbase: Address::ZERO,
        base_fee: 1_000_000,
        gas_limit: 30_000_000,
        prev_randao: B256::ZERO,
        parent_hash: B256::ZERO,
        parent_beacon_block_root: B256::ZERO,
        extra_data: Bytes::new(),
    };
    let env = overrides.env(&block);
    let _ = env.evm_env(&chain);
    if let Ok(mut db) = overrides.database(EmptyDB::default()) {
        // Every overridden account reads back without error.
        for address in overrides.state.iter().flat_map(|s| s.keys()) {
            let _ = db.basic(*address);
        }
        let _ = db.basic(Address::ZERO);
    }
    if let Some(req) = get(0).and_then(|v| serde_json::from_value::<TransactionRequest>(v).ok()) {
        let _ = tx_env(&chain, &req, req.gas.unwrap_or(30_000_000));
        // The pending eth_call itself, over the overridden (otherwise empty) state, with a
        // small gas cap so one input stays fast.
        if let Ok(db) = overrides.database(EmptyDB::default()) {
            let _ = call(db, &chain, &env, &req, 1_000_000);
        }
    }
});
