//! reth's `reth` namespace as far as a flashblocks sidecar uses it, in reth's JSON shapes
//! (plain serde derives of reth's `CanonStateNotification`, `Chain` and `ExecutionOutcome`, and
//! revm's `BundleState`): `reth_subscribeChainNotifications` (a `Commit` per sealed block; the
//! devnet's chain never reorgs) and `reth_getBlockExecutionOutcome`. Built from the states the
//! devnet keeps after each block. Left out: `trie_data` (`{}`, which reth accepts too),
//! `contracts` and each account's `code` (null, as reth sends for accounts loaded from its
//! database), and the bundle's `state_size`/`reverts_size` are counts of entries.

use crate::{
    chain::{ChainStore, SealedBlock},
    Shared,
};
use alloy_eips::BlockId;
use alloy_primitives::{Address, U256, U64};
use flashnode_exec::MemDb;
use jsonrpsee::{server::RpcModule, types::ErrorObjectOwned};
use revm::state::AccountInfo;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Most blocks one `reth_getBlockExecutionOutcome` covers (reth's limit).
const MAX_OUTCOME_BLOCKS: u64 = 128;

/// One account a block (or a run of blocks) changed.
pub(crate) struct AccountChange {
    /// The account.
    pub address: Address,
    /// Before (`None`: it did not exist).
    pub before: Option<AccountInfo>,
    /// After (`None`: it does not exist).
    pub after: Option<AccountInfo>,
    /// Slots whose value changed: (slot, before, after).
    pub slots: Vec<(U256, U256, U256)>,
}

/// What the state `post` changed from the state `pre`: every account whose balance, nonce,
/// code or storage differs (a slot absent from one side is zero there).
pub(crate) fn state_changes(pre: &MemDb, post: &MemDb) -> Vec<AccountChange> {
    let mut out = Vec::new();
    for (address, now) in &post.cache.accounts {
        let was = pre.cache.accounts.get(address);
        let before = was.and_then(|w| w.info());
        let after = now.info();
        let old_storage = was.map(|w| &w.storage);
        let mut slots = Vec::new();
        let keys = now.storage.keys().chain(old_storage.into_iter().flat_map(|m| m.keys()));
        let mut seen = std::collections::HashSet::new();
        for slot in keys {
            if !seen.insert(*slot) {
                continue;
            }
            let old = old_storage.and_then(|m| m.get(slot)).copied().unwrap_or_default();
            let new = now.storage.get(slot).copied().unwrap_or_default();
            if old != new {
                slots.push((*slot, old, new));
            }
        }
        let (b, a) = (before.clone().unwrap_or_default(), after.clone().unwrap_or_default());
        let info_changed = before.is_some() != after.is_some()
            || b.balance != a.balance
            || b.nonce != a.nonce
            || b.code_hash != a.code_hash;
        if info_changed || !slots.is_empty() {
            out.push(AccountChange { address: *address, before, after, slots });
        }
    }
    out
}

/// revm's `AccountInfo` in JSON (`code` null: by hash only).
fn info_json(info: &Option<AccountInfo>) -> Value {
    match info {
        Some(i) => json!({
            "balance": i.balance,
            "nonce": i.nonce,
            "code_hash": i.code_hash,
            "code": null,
        }),
        None => Value::Null,
    }
}

/// A U256 as revm's maps key it (minimal hex).
fn key(slot: &U256) -> String {
    format!("{slot:#x}")
}

/// revm's `BundleAccount` of one change.
fn bundle_account(c: &AccountChange) -> Value {
    let storage: Map<String, Value> = c
        .slots
        .iter()
        .map(|(slot, old, new)| {
            (key(slot), json!({"previous_or_original_value": old, "present_value": new}))
        })
        .collect();
    let status = match (&c.before, &c.after) {
        (Some(_), None) => "Destroyed",
        (None, Some(_)) => "InMemoryChange",
        _ => "Changed",
    };
    json!({
        "info": info_json(&c.after),
        "original_info": info_json(&c.before),
        "storage": storage,
        "status": status,
    })
}

/// revm's `AccountRevert` of one change (what undoes it).
fn account_revert(c: &AccountChange) -> Value {
    let account = match (&c.before, &c.after) {
        (None, _) => json!("DeleteIt"),
        (Some(b), Some(a))
            if b.balance == a.balance && b.nonce == a.nonce && b.code_hash == a.code_hash =>
        {
            json!("DoNothing")
        }
        (before, _) => json!({ "RevertTo": info_json(before) }),
    };
    let storage: Map<String, Value> =
        c.slots.iter().map(|(slot, old, _)| (key(slot), json!({ "Some": old }))).collect();
    json!([c.address, {
        "account": account,
        "storage": storage,
        "previous_status": if c.before.is_some() { "Loaded" } else { "LoadedNotExisting" },
        "wipe_storage": c.before.is_some() && c.after.is_none(),
    }])
}

/// reth's `ExecutionOutcome` of blocks `first..=last`: one bundle from the state before
/// `first` to the state after `last`, and each block's reverts, receipts and (empty) requests.
/// `None` when a state it needs is no longer kept.
fn execution_outcome(store: &ChainStore, first: u64, last: u64) -> Option<Value> {
    let pre = store.state_at(first.checked_sub(1)?)?;
    let post = store.state_at(last)?;
    let state: Map<String, Value> = state_changes(pre, post)
        .iter()
        .map(|c| (c.address.to_string().to_lowercase(), bundle_account(c)))
        .collect();
    let (mut reverts, mut receipts, mut reverts_size) = (Vec::new(), Vec::new(), 0);
    for n in first..=last {
        let (before, after, block) =
            (store.state_at(n - 1)?, store.state_at(n)?, store.by_number(n)?);
        let changes = state_changes(before, after);
        reverts_size += changes.iter().map(|c| 1 + c.slots.len()).sum::<usize>();
        reverts.push(Value::Array(changes.iter().map(account_revert).collect()));
        let block_receipts: Vec<Value> =
            block.txs.iter().filter_map(|t| serde_json::to_value(&t.receipt).ok()).collect();
        receipts.push(Value::Array(block_receipts));
    }
    let state_size = state.len();
    let requests: Vec<Value> = (first..=last).map(|_| json!([])).collect();
    Some(json!({
        "bundle": {
            "state": state,
            "contracts": {},
            "reverts": reverts,
            "state_size": state_size,
            "reverts_size": reverts_size,
        },
        "receipts": receipts,
        "first_block": first,
        "requests": requests,
    }))
}

/// reth's `RecoveredBlock` of a sealed block: the header under `block.header.header` (no
/// hash: reth skips it), the transactions with their hashes, and their senders.
fn recovered_block(block: &SealedBlock) -> Value {
    let transactions: Vec<Value> = block
        .txs
        .iter()
        .map(|t| {
            let mut tx = serde_json::to_value(&t.tx).unwrap_or(Value::Null);
            if let Some(o) = tx.as_object_mut() {
                o.entry("hash").or_insert_with(|| json!(t.hash));
            }
            tx
        })
        .collect();
    let senders: Vec<Address> = block.txs.iter().map(|t| t.sender).collect();
    json!({
        "block": {
            "header": { "header": block.header },
            "body": { "transactions": transactions, "ommers": [], "withdrawals": [] },
        },
        "senders": senders,
    })
}

/// The `Commit` notification of sealed block `block`.
fn commit_of(store: &ChainStore, block: &SealedBlock) -> Option<Value> {
    let n = block.header.number;
    let outcome = execution_outcome(store, n, n)?;
    Some(json!({ "Commit": { "new": {
        "blocks": { n.to_string(): recovered_block(block) },
        "execution_outcome": outcome,
        "trie_data": {},
    }}}))
}

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, msg.into(), None::<()>)
}

/// Registers the `reth` namespace on `m`.
pub(crate) fn register(m: &mut RpcModule<Arc<Shared>>) {
    // reth_subscribeChainNotifications: a Commit per sealed block. Lossy as reth's is: a
    // subscriber whose buffer is full misses notifications (a consumer detects the gap by
    // block number), it is not dropped.
    m.register_subscription(
        "reth_subscribeChainNotifications",
        "reth_subscribeChainNotifications",
        "reth_unsubscribeChainNotifications",
        |_, pending, s, _| async move {
            let mut sealed = s.sealed.subscribe();
            let mut sink = pending.accept().await?;
            while let Some(block) = crate::rpc::next_sealed(&sink, &mut sealed, true).await {
                let Some(commit) = commit_of(&s.store.read(), &block) else { continue };
                let msg = serde_json::value::to_raw_value(&commit)?;
                match sink.try_send(msg) {
                    Ok(()) => {}
                    Err(jsonrpsee::core::server::TrySendError::Full(_)) => continue,
                    Err(_) => return Ok(()),
                }
            }
            Ok(())
        },
    )
    .expect("unique");
    // reth_getBlockExecutionOutcome(block, count?): the outcome of `count` blocks (1 to 128)
    // from `block`, cut at the tip; null for an unknown block.
    m.register_method(
        "reth_getBlockExecutionOutcome",
        |p, s, _| -> Result<Value, ErrorObjectOwned> {
            let mut seq = p.sequence();
            let id: BlockId = seq.next().map_err(|e| err(-32602, e.message().to_string()))?;
            let count: Option<U64> =
                seq.optional_next().map_err(|e| err(-32602, e.message().to_string()))?;
            let count = count.map(|c| c.to::<u64>()).unwrap_or(1);
            if !(1..=MAX_OUTCOME_BLOCKS).contains(&count) {
                return Err(err(
                    -32602,
                    format!("count must be between 1 and {MAX_OUTCOME_BLOCKS}"),
                ));
            }
            let Some(start) = crate::rpc::resolve_block(s, Some(id))? else {
                return Ok(Value::Null);
            };
            let first = start.header.number;
            if first == 0 {
                return Ok(json!({"bundle": {"state": {}, "contracts": {}, "reverts": [],
                "state_size": 0, "reverts_size": 0}, "receipts": [], "first_block": 0,
                "requests": []}));
            }
            let store = s.store.read();
            let last = (first + count - 1).min(store.latest().header.number);
            execution_outcome(&store, first, last)
                .ok_or_else(|| err(-32000, format!("the state of block {first} is no longer kept")))
        },
    )
    .expect("unique");
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::database::EmptyDB;

    #[test]
    fn changes_come_in_reths_bundle_and_revert_shapes() {
        let a = Address::repeat_byte(0xa);
        let mut pre = MemDb::new(EmptyDB::default());
        pre.insert_account_info(a, AccountInfo { balance: U256::from(5), ..Default::default() });
        pre.insert_account_storage(a, U256::from(1), U256::from(7)).unwrap();
        let mut post = pre.clone();
        post.insert_account_storage(a, U256::from(1), U256::from(9)).unwrap();
        post.insert_account_storage(a, U256::from(2), U256::ZERO).unwrap();
        let changes = state_changes(&pre, &post);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].slots, vec![(U256::from(1), U256::from(7), U256::from(9))]);
        let bundle = bundle_account(&changes[0]);
        assert_eq!(bundle["storage"]["0x1"]["present_value"], "0x9");
        assert_eq!(bundle["status"], "Changed");
        let revert = account_revert(&changes[0]);
        assert_eq!(revert[1]["account"], "DoNothing");
        assert_eq!(revert[1]["storage"]["0x1"]["Some"], "0x7");
    }
}
