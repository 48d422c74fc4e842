//! Fixtures of the unit tests: a chain, a block environment and an in-memory state with
//! hand-assembled contracts.

use crate::{BlockEnvInput, ChainConfig, MemDb};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_rpc_types_eth::TransactionRequest;
use revm::{
    bytecode::Bytecode,
    database::{CacheDB, EmptyDB},
    state::AccountInfo,
};

/// A funded sender.
pub const ALICE: Address = Address::repeat_byte(0xa1);
/// An account without code.
pub const BOB: Address = Address::repeat_byte(0xb0);
/// `SSTORE(0, 1)`.
pub const STORER: Address = Address::repeat_byte(0x51);
/// Calls [`STORER`] with all its gas and reverts if that call fails.
pub const FORWARDER: Address = Address::repeat_byte(0xf0);
/// Reverts with `Error("nope")`.
pub const REVERTER: Address = Address::repeat_byte(0x4e);
/// Loops forever.
pub const LOOPER: Address = Address::repeat_byte(0xee);
/// Reads its own slot 1 and the balance of [`BOB`].
pub const TOUCHER: Address = Address::repeat_byte(0x70);
/// Increments its slot 0 and returns the new value.
pub const COUNTER: Address = Address::repeat_byte(0xc0);

/// The devnet chain (Isthmus).
pub fn chain() -> ChainConfig {
    ChainConfig::devnet(901)
}

/// Block 2 of the devnet, with a 30M gas limit and a base fee of 1 gwei.
pub fn env() -> BlockEnvInput {
    BlockEnvInput {
        number: 2,
        timestamp: 1_700_000_000,
        coinbase: Address::ZERO,
        base_fee: 1_000_000_000,
        gas_limit: 30_000_000,
        prev_randao: B256::ZERO,
        parent_hash: B256::repeat_byte(0x22),
        parent_beacon_block_root: B256::ZERO,
        extra_data: Bytes::new(),
    }
}

fn code(bytes: Vec<u8>) -> AccountInfo {
    let code = Bytecode::new_raw(bytes.into());
    AccountInfo { code_hash: code.hash_slow(), code: Some(code), ..Default::default() }
}

fn revert_with_nope() -> Vec<u8> {
    // CODECOPY the payload after this 12-byte prefix to memory 0, then REVERT with it.
    let mut out = vec![0x60, 100, 0x60, 12, 0x60, 0, 0x39, 0x60, 100, 0x60, 0, 0xfd];
    out.extend_from_slice(&[0x08, 0xc3, 0x79, 0xa0]);
    out.extend_from_slice(&B256::from(U256::from(0x20)).0);
    out.extend_from_slice(&B256::from(U256::from(4)).0);
    let mut word = [0u8; 32];
    word[..4].copy_from_slice(b"nope");
    out.extend_from_slice(&word);
    out
}

/// The state every test starts from: [`ALICE`] with 10 ETH and the contracts above.
pub fn db() -> MemDb {
    let mut db = CacheDB::new(EmptyDB::default());
    let eth = U256::from(10u64).pow(U256::from(19));
    db.insert_account_info(ALICE, AccountInfo { balance: eth, ..Default::default() });
    db.insert_account_info(STORER, code(vec![0x60, 0x01, 0x60, 0x00, 0x55, 0x00]));
    let mut forwarder = vec![0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0, 0x60, 0, 0x73];
    forwarder.extend_from_slice(STORER.as_slice());
    // GAS CALL ISZERO PUSH1 38 JUMPI STOP; 38: JUMPDEST PUSH1 0 PUSH1 0 REVERT
    forwarder.extend_from_slice(&[0x5a, 0xf1, 0x15, 0x60, 38, 0x57, 0x00, 0x5b]);
    forwarder.extend_from_slice(&[0x60, 0, 0x60, 0, 0xfd]);
    db.insert_account_info(FORWARDER, code(forwarder));
    db.insert_account_info(REVERTER, code(revert_with_nope()));
    db.insert_account_info(LOOPER, code(vec![0x5b, 0x60, 0x00, 0x56]));
    let mut toucher = vec![0x60, 0x01, 0x54, 0x50, 0x73];
    toucher.extend_from_slice(BOB.as_slice());
    toucher.extend_from_slice(&[0x31, 0x50, 0x00]);
    db.insert_account_info(TOUCHER, code(toucher));
    db.insert_account_info(
        COUNTER,
        code(vec![
            0x60, 0x00, 0x54, 0x60, 0x01, 0x01, 0x80, 0x60, 0x00, 0x55, 0x60, 0x00, 0x52, 0x60,
            0x20, 0x60, 0x00, 0xf3,
        ]),
    );
    db
}

/// A call from [`ALICE`] to `to`, paying no gas price.
pub fn req(to: Address) -> TransactionRequest {
    TransactionRequest { from: Some(ALICE), to: Some(TxKind::Call(to)), ..Default::default() }
}
