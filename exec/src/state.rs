//! The in-memory state the devnet keeps, and the Merkle-Patricia state root over it.

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_trie::{root::storage_root_unhashed, TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use revm::database::{AccountState, CacheDB, EmptyDB};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The devnet's whole world state: revm's in-memory cache over an empty database.
pub type MemDb = CacheDB<EmptyDB>;

/// One account of a state dump, in a shape any client can recompute the state root from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountDump {
    /// Balance in wei.
    pub balance: U256,
    /// Account nonce.
    pub nonce: u64,
    /// Runtime code (empty for EOAs).
    pub code: Bytes,
    /// Non-zero storage slots.
    pub storage: BTreeMap<U256, U256>,
}

/// Every account that exists in the sense of EIP-161 (not empty), with its non-zero storage.
pub fn dump_state(db: &MemDb) -> BTreeMap<Address, AccountDump> {
    db.cache
        .accounts
        .iter()
        .filter(|(_, acc)| !matches!(acc.account_state, AccountState::NotExisting))
        .filter(|(_, acc)| !acc.info.is_empty())
        .map(|(addr, acc)| {
            let code = match &acc.info.code {
                Some(code) => code.original_bytes(),
                None => db
                    .cache
                    .contracts
                    .get(&acc.info.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
            };
            let code = if acc.info.code_hash == KECCAK_EMPTY { Bytes::new() } else { code };
            let storage =
                acc.storage.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (*k, *v)).collect();
            (*addr, AccountDump { balance: acc.info.balance, nonce: acc.info.nonce, code, storage })
        })
        .collect()
}

/// Storage root of one account's slots (zero slots are absent from the trie).
pub fn account_storage_root(storage: &BTreeMap<U256, U256>) -> B256 {
    if storage.is_empty() {
        return EMPTY_ROOT_HASH;
    }
    storage_root_unhashed(storage.iter().map(|(k, v)| (B256::from(*k), *v)))
}

/// The state root of a dump: the same function a client uses to check the devnet.
pub fn state_root_of_dump(dump: &BTreeMap<Address, AccountDump>) -> B256 {
    alloy_trie::root::state_root_unhashed(dump.iter().map(|(addr, acc)| {
        let code_hash =
            if acc.code.is_empty() { KECCAK_EMPTY } else { alloy_primitives::keccak256(&acc.code) };
        (
            *addr,
            TrieAccount {
                nonce: acc.nonce,
                balance: acc.balance,
                storage_root: account_storage_root(&acc.storage),
                code_hash,
            },
        )
    }))
}

/// The state root of the whole in-memory state.
pub fn state_root(db: &MemDb) -> B256 {
    state_root_of_dump(&dump_state(db))
}

/// The storage root of one account (the Isthmus `withdrawals_root` of the message passer).
pub fn storage_root_of(db: &MemDb, address: Address) -> B256 {
    match db.cache.accounts.get(&address) {
        Some(acc) => account_storage_root(
            &acc.storage.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (*k, *v)).collect(),
        ),
        None => EMPTY_ROOT_HASH,
    }
}
