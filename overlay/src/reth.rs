//! reth's own view of the canonical chain, as much of it as flashnode reads: the items of
//! `reth_subscribeChainNotifications` (reth's `CanonStateNotification`, the stream an ExEx
//! consumes, with each block's execution outcome) and the answer of
//! `reth_getBlockExecutionOutcome` (an `ExecutionOutcome`). Both are plain serde derives in
//! reth (external enum tagging, snake_case outcome fields, the alloy header in camelCase); every
//! field flashnode does not read is ignored, so new ones do not break it, except in the header:
//! the block hash is computed from it (reth does not send it), and a header field alloy does
//! not know would change that hash. The follower checks the first notified block's hash
//! against the upstream's and, when they differ, follows `newHeads` instead.
//!
//! What a block touched comes from the outcome's revm `BundleState`. One chain's outcome has
//! ONE bundle for all its blocks (the net change from before the first block to after the
//! last), so the bundle alone cannot say which block touched what; its `reverts` can: reth
//! keeps one entry per block (`reverts[i]` is block `first_block + i`), listing every account
//! and slot that block changed (reth writes its changesets from them, so they are complete).
//! A one-block chain takes the union of the bundle and its revert; a longer one each block's
//! revert; a longer one whose reverts do not line up with its blocks gives every block the
//! whole bundle (more touches than the truth only costs reads, never a stale value).

use crate::carry::BlockTouches;
use alloy_consensus::Header;
use alloy_primitives::{Address, B256, U256};
use flashnode_exec::CanonicalBlock;
use op_alloy_consensus::OpReceipt;
use serde::{de::IgnoredAny, Deserialize};
use std::collections::{BTreeMap, HashMap};

/// JSON-RPC subscription method of reth's canonical-state notifications (`reth` namespace).
pub const CHAIN_NOTIFICATIONS_METHOD: &str = "reth_subscribeChainNotifications";

/// JSON-RPC method of reth's re-executed block outcome (`reth` namespace, reth 2.0 on).
pub const EXECUTION_OUTCOME_METHOD: &str = "reth_getBlockExecutionOutcome";

/// One `reth_subscribeChainNotifications` item (reth's `CanonStateNotification`).
#[derive(Debug, Deserialize)]
pub enum ChainNotification {
    /// Blocks appended to the canonical chain.
    Commit {
        /// The new blocks and their outcome.
        new: Chain,
    },
    /// Blocks replaced (`new` empty: removed without replacement).
    Reorg {
        /// The blocks that left the canonical chain.
        old: Chain,
        /// The blocks that replaced them.
        new: Chain,
    },
}

/// A run of consecutive blocks and their execution outcome (reth's `Chain`).
#[derive(Debug, Deserialize)]
pub struct Chain {
    /// The blocks by number (JSON keys are decimal strings).
    blocks: BTreeMap<u64, RecoveredBlock>,
    /// What executing them did.
    execution_outcome: ExecutionOutcome,
}

/// reth's `RecoveredBlock`: `{ "block": SealedBlock, "senders": [...] }`.
#[derive(Debug, Deserialize)]
struct RecoveredBlock {
    block: SealedBlock,
}

/// reth's `SealedBlock`: `{ "header": SealedHeader, "body": BlockBody }`.
#[derive(Debug, Deserialize)]
struct SealedBlock {
    header: SealedHeader,
    body: BlockBody,
}

/// reth's `SealedHeader`: the hash is `#[serde(skip)]`, so only `{ "header": Header }`.
#[derive(Debug, Deserialize)]
struct SealedHeader {
    header: Header,
}

/// The block body; only each transaction's hash is read.
#[derive(Debug, Deserialize)]
struct BlockBody {
    transactions: Vec<TxHash>,
}

/// A transaction of the body (`OpTxEnvelope` in JSON), of which only its `hash` (missing:
/// the block is fetched instead).
#[derive(Debug, Deserialize)]
struct TxHash {
    hash: Option<B256>,
}

/// reth's `ExecutionOutcome` (also the answer of `reth_getBlockExecutionOutcome`).
#[derive(Debug, Deserialize)]
pub struct ExecutionOutcome {
    /// The state change of all its blocks together, and each block's reverts.
    bundle: Bundle,
    /// Each block's receipts (`OpReceipt`, tagged by `type`), kept raw: one that does not
    /// parse costs that block a fetch of its receipts, not the notification.
    #[serde(default)]
    receipts: Vec<Vec<serde_json::Value>>,
    /// The number of the first block.
    first_block: u64,
}

/// revm's `BundleState`.
#[derive(Debug, Default, Deserialize)]
struct Bundle {
    #[serde(default)]
    state: HashMap<Address, BundleAccount>,
    #[serde(default)]
    reverts: Vec<Vec<(Address, AccountRevert)>>,
}

/// revm's `BundleAccount`: `info` null means the account does not exist after the bundle.
#[derive(Debug, Deserialize)]
struct BundleAccount {
    info: Option<IgnoredAny>,
    #[serde(default)]
    storage: HashMap<U256, IgnoredAny>,
    #[serde(default)]
    status: Option<String>,
}

/// revm's `AccountRevert`: the slots one block changed, and whether it wiped the storage.
#[derive(Debug, Deserialize)]
struct AccountRevert {
    #[serde(default)]
    storage: HashMap<U256, IgnoredAny>,
    #[serde(default)]
    wipe_storage: bool,
}

/// `AccountStatus` values of an account whose storage was destroyed in the bundle.
const DESTROYED: [&str; 3] = ["Destroyed", "DestroyedChanged", "DestroyedAgain"];

impl Bundle {
    /// Everything the bundle changed.
    fn touches(&self) -> BlockTouches {
        let mut t = BlockTouches::default();
        for (address, account) in &self.state {
            t.accounts.insert(*address);
            if account.info.is_none()
                || account.status.as_deref().is_some_and(|s| DESTROYED.contains(&s))
            {
                t.contracts.insert(*address);
            }
            t.slots.extend(account.storage.keys().map(|slot| (*address, *slot)));
        }
        t
    }

    /// What the block `i` of the bundle changed, from its reverts.
    fn revert_touches(&self, i: usize) -> Option<BlockTouches> {
        let mut t = BlockTouches::default();
        for (address, revert) in self.reverts.get(i)? {
            t.accounts.insert(*address);
            if revert.wipe_storage {
                t.contracts.insert(*address);
            }
            t.slots.extend(revert.storage.keys().map(|slot| (*address, *slot)));
        }
        Some(t)
    }
}

impl ExecutionOutcome {
    /// What block `number` touched, when the outcome covers `blocks` blocks (see the module
    /// docs for how one bundle is split).
    fn touches_of(&self, number: u64, blocks: usize) -> BlockTouches {
        let index = number.checked_sub(self.first_block).map(|i| i as usize);
        let revert = index.and_then(|i| self.bundle.revert_touches(i));
        match revert {
            Some(r) if blocks > 1 && self.bundle.reverts.len() == blocks => r,
            Some(r) => {
                let mut t = self.bundle.touches();
                t.accounts.extend(r.accounts);
                t.slots.extend(r.slots);
                t.contracts.extend(r.contracts);
                t
            }
            None => self.bundle.touches(),
        }
    }

    /// What the one block this outcome covers touched (`reth_getBlockExecutionOutcome` with
    /// the default count of one).
    pub fn block_touches(&self) -> BlockTouches {
        self.touches_of(self.first_block, 1)
    }
}

/// A block of a notification: the canonical block (its receipts `None` when they did not
/// parse) and what it touched.
#[derive(Debug)]
pub struct NotifiedBlock {
    /// Header, hash (keccak of the RLP header: reth does not send it) and transaction hashes.
    pub block: CanonicalBlock,
    /// Whether `block.receipts` came with the notification (else they are to be fetched).
    pub has_receipts: bool,
    /// Whether every transaction's hash came with it (else the block is to be fetched).
    pub has_tx_hashes: bool,
    /// What the block changed.
    pub touches: BlockTouches,
}

impl Chain {
    /// The header of the chain's last block.
    pub fn last_header(&self) -> Option<&Header> {
        self.blocks.last_key_value().map(|(_, b)| &b.block.header.header)
    }

    /// The chain's blocks, oldest first.
    pub fn into_blocks(self) -> Vec<NotifiedBlock> {
        let count = self.blocks.len();
        let outcome = self.execution_outcome;
        self.blocks
            .into_iter()
            .map(|(number, recovered)| {
                let header = recovered.block.header.header;
                let hashes: Option<Vec<B256>> =
                    recovered.block.body.transactions.iter().map(|t| t.hash).collect();
                let has_tx_hashes = hashes.is_some();
                let tx_hashes = hashes.unwrap_or_default();
                let raw = number
                    .checked_sub(outcome.first_block)
                    .and_then(|i| outcome.receipts.get(i as usize));
                let receipts: Option<Vec<OpReceipt>> = raw.and_then(|r| {
                    r.iter().map(|v| serde_json::from_value(v.clone()).ok()).collect()
                });
                let receipts = receipts.filter(|r| r.len() == tx_hashes.len());
                let touches = outcome.touches_of(header.number, count);
                NotifiedBlock {
                    has_receipts: receipts.is_some() && has_tx_hashes,
                    has_tx_hashes,
                    block: CanonicalBlock {
                        hash: header.hash_slow(),
                        header,
                        tx_hashes,
                        receipts: receipts.unwrap_or_default(),
                    },
                    touches,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VAULT: Address = alloy_primitives::address!("0x4200000000000000000000000000000000000015");

    /// The header of the spec's example, block 1000.
    fn header(number: u64, parent: B256) -> serde_json::Value {
        json!({
            "parentHash": parent,
            "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
            "miner": "0x4200000000000000000000000000000000000011",
            "stateRoot": B256::repeat_byte(0x22), "transactionsRoot": B256::repeat_byte(0x33),
            "receiptsRoot": B256::repeat_byte(0x44), "logsBloom": format!("0x{}", "00".repeat(256)),
            "difficulty": "0x0", "number": format!("{number:#x}"), "gasLimit": "0x1c9c380",
            "gasUsed": "0xb5a5", "timestamp": "0x66a1b2c3", "extraData": "0x",
            "mixHash": B256::repeat_byte(0x55), "nonce": "0x0000000000000000",
            "baseFeePerGas": "0x3b9aca00", "withdrawalsRoot": B256::repeat_byte(0x66),
            "blobGasUsed": "0x0", "excessBlobGas": "0x0",
            "parentBeaconBlockRoot": B256::repeat_byte(0x77),
            "requestsHash": "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "someFutureField": "0x1"
        })
    }

    fn block(number: u64, parent: B256) -> serde_json::Value {
        json!({
            "block": {
                "header": {"header": header(number, parent)},
                "body": {
                    "transactions": [{"type": "0x7e", "sourceHash": B256::repeat_byte(0x88),
                        "from": "0xdeaddeaddeaddeaddeaddeaddeaddeaddead0001",
                        "to": "0x4200000000000000000000000000000000000015", "mint": "0x0",
                        "value": "0x0", "gas": "0xf4240", "input": "0x098999be",
                        "hash": B256::repeat_byte(0x99), "r": "0x0", "s": "0x0",
                        "yParity": "0x0", "v": "0x0"}],
                    "ommers": [], "withdrawals": []
                }
            },
            "senders": ["0xdeaddeaddeaddeaddeaddeaddeaddeaddead0001"]
        })
    }

    fn receipt() -> serde_json::Value {
        json!({"type": "0x7e", "status": "0x1", "cumulativeGasUsed": "0xb5a5", "logs": [],
               "depositNonce": "0x3e7", "depositReceiptVersion": "0x1"})
    }

    /// The spec's example Commit (section 6): one OP block, one deposit, one slot changed.
    fn commit() -> serde_json::Value {
        json!({"Commit": {"new": {
            "blocks": {"1000": block(1000, B256::repeat_byte(0x11))},
            "execution_outcome": {
                "bundle": {
                    "state": {"0x4200000000000000000000000000000000000015": {
                        "info": {"balance": "0x0", "nonce": 0, "code_hash": B256::repeat_byte(0xaa), "code": null},
                        "original_info": {"balance": "0x0", "nonce": 0, "code_hash": B256::repeat_byte(0xaa), "code": null},
                        "storage": {"0x1": {"previous_or_original_value": "0x66a1b2b7", "present_value": "0x66a1b2c3"}},
                        "status": "Changed"}},
                    "contracts": {},
                    "reverts": [[["0x4200000000000000000000000000000000000015",
                        {"account": "DoNothing", "storage": {"0x1": {"Some": "0x66a1b2b7"}},
                         "previous_status": "Loaded", "wipe_storage": false}]]],
                    "state_size": 2, "reverts_size": 2},
                "receipts": [[receipt()]],
                "first_block": 1000,
                "requests": [[]]},
            "trie_data": {"1000": {
                "hashed_state": {"accounts": [[B256::repeat_byte(0xbb), {"nonce": 0, "balance": "0x0", "bytecode_hash": B256::repeat_byte(0xaa)}]],
                                 "storages": {}},
                "trie_updates": {"account_nodes": [], "storage_tries": {}}}}
        }}})
    }

    #[test]
    fn a_commit_gives_its_blocks_hashed_and_their_touches() {
        let n: ChainNotification = serde_json::from_value(commit()).unwrap();
        let ChainNotification::Commit { new } = n else { panic!("a commit") };
        let blocks = new.into_blocks();
        assert_eq!(blocks.len(), 1);
        let b = &blocks[0];
        assert_eq!(b.block.header.number, 1000);
        assert_eq!(b.block.header.parent_hash, B256::repeat_byte(0x11));
        assert_eq!(b.block.hash, b.block.header.hash_slow(), "keccak of the RLP header");
        assert_eq!(b.block.tx_hashes, vec![B256::repeat_byte(0x99)]);
        assert!(b.has_receipts);
        assert!(matches!(b.block.receipts[0], OpReceipt::Deposit(_)));
        assert_eq!(b.touches.accounts, [VAULT].into_iter().collect());
        assert_eq!(b.touches.slots, [(VAULT, U256::from(1))].into_iter().collect());
        assert!(b.touches.contracts.is_empty());
    }

    #[test]
    fn a_reorg_gives_both_chains_and_a_removed_account_takes_its_storage() {
        let gone = Address::repeat_byte(0xd);
        let n = json!({"Reorg": {
            "old": {"blocks": {"7": block(7, B256::repeat_byte(1))},
                    "execution_outcome": {"bundle": {"state": {}, "reverts": []},
                        "receipts": [], "first_block": 7, "requests": []},
                    "trie_data": {}},
            "new": {"blocks": {"7": block(7, B256::repeat_byte(1)), "8": block(8, B256::repeat_byte(2))},
                    "execution_outcome": {"bundle": {
                        "state": {
                            format!("{gone}"): {"info": null, "original_info": null, "storage": {}, "status": "Destroyed"},
                            format!("{VAULT}"): {"info": {"balance": "0x1", "nonce": 1, "code_hash": B256::ZERO, "code": null},
                                "original_info": null, "storage": {"0x5": {"previous_or_original_value": "0x0", "present_value": "0x1"}},
                                "status": "InMemoryChange"}},
                        "contracts": {},
                        "reverts": [
                            [[format!("{gone}"), {"account": {"RevertTo": {"balance": "0x0", "nonce": 0, "code_hash": B256::ZERO, "code": null}},
                              "storage": {}, "previous_status": "Loaded", "wipe_storage": true}]],
                            [[format!("{VAULT}"), {"account": "DeleteIt", "storage": {"0x5": "Destroyed"},
                              "previous_status": "LoadedNotExisting", "wipe_storage": false}]]
                        ],
                        "state_size": 2, "reverts_size": 2},
                        "receipts": [[receipt()], [{"type": "0x2", "bogus": true}]],
                        "first_block": 7, "requests": [[], []]},
                    "trie_data": {}}
        }});
        let n: ChainNotification = serde_json::from_value(n).unwrap();
        let ChainNotification::Reorg { old, new } = n else { panic!("a reorg") };
        assert_eq!(old.into_blocks().len(), 1);
        let new = new.into_blocks();
        assert_eq!(new.iter().map(|b| b.block.header.number).collect::<Vec<_>>(), [7, 8]);
        // Two blocks, one bundle: each block's touches come from its own reverts.
        assert_eq!(new[0].touches.accounts, [gone].into_iter().collect());
        assert_eq!(new[0].touches.contracts, [gone].into_iter().collect(), "wiped");
        assert!(new[0].touches.slots.is_empty());
        assert_eq!(new[1].touches.accounts, [VAULT].into_iter().collect());
        assert_eq!(new[1].touches.slots, [(VAULT, U256::from(5))].into_iter().collect());
        assert!(new[0].has_receipts);
        assert!(!new[1].has_receipts, "a receipt that does not parse is fetched instead");
    }

    #[test]
    fn reverts_that_do_not_line_up_give_every_block_the_whole_bundle() {
        let outcome: ExecutionOutcome = serde_json::from_value(json!({
            "bundle": {"state": {format!("{VAULT}"): {"info": null, "storage": {}, "status": "Changed"}},
                       "reverts": []},
            "receipts": [], "first_block": 3
        }))
        .unwrap();
        for n in [3, 4] {
            let t = outcome.touches_of(n, 2);
            assert_eq!(t.accounts, [VAULT].into_iter().collect());
            assert_eq!(t.contracts, [VAULT].into_iter().collect(), "info null: removed");
        }
        assert_eq!(outcome.block_touches().accounts.len(), 1);
        // Block 0's outcome (reth's default) parses and touches nothing.
        let empty: ExecutionOutcome = serde_json::from_value(json!({"bundle": {"state": {},
            "contracts": {}, "reverts": [], "state_size": 0, "reverts_size": 0},
            "receipts": [], "first_block": 0, "requests": []}))
        .unwrap();
        assert_eq!(empty.block_touches(), BlockTouches::default());
    }
}
