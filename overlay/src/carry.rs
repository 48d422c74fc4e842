//! Canonical state that survives blocks (#24.1): an account or slot read from the upstream at
//! block M is still its value at a later canonical block N when no block in (M, N] touched
//! it. Which keys a block touched comes from the block's state diff (the upstream's
//! `debug_traceBlockByHash` with the prestate tracer in diff mode); a block whose diff is not
//! known is a barrier: nothing read before it is carried past it. A reorg clears everything.
//!
//! The check is lazy: each key keeps the block it was read at and the last block that touched
//! it, so a new block costs the size of its diff, never a walk over the cache.

use alloy_primitives::{Address, B256, U256};
use flashnode_exec::SourceAccount;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Blocks a carried value may be behind the tip before it is read again (bounds the touch log
/// as well as the values' age).
pub const CARRY_WINDOW: u64 = 256;

/// Accounts and slots (each) carried at most; beyond it the carried state starts over.
pub const MAX_CARRIED_KEYS: usize = 500_000;

/// Code bytes the carried accounts may hold (a contract's code is up to 24 KiB); beyond it the
/// carried accounts start over.
pub const MAX_CARRIED_CODE_BYTES: usize = 64 * 1024 * 1024;

/// Metric: reads answered from the carried state, by `kind` (`account`, `slot`).
pub const CARRIED_TOTAL: &str = "flashnode_upstream_carried_total";

/// Metric (gauge): the last canonical block committed to the carried state (its number; after a
/// reset, the block before the one it starts over from). A block is announced before its diff
/// is asked for; reads at it are carried once this reaches it.
pub const CARRIED_BLOCK: &str = "flashnode_upstream_carried_block";

/// Contracts every block writes before its transactions (EIP-4788's beacon roots, EIP-2935's
/// block hashes), in storage a transaction trace does not show: never carried past a block.
pub const SYSTEM_WRITES: [Address; 2] = [
    alloy_primitives::address!("0x000F3df6D732807Ef1319fB7B8bB8522d0Beac02"),
    alloy_primitives::address!("0x0000F90827F1C53a10cb7A02335B175320002935"),
];

/// Accounts whose balance every block with a transaction changes, in the handler's fee
/// payments: the sequencer, base-fee, L1-fee and operator-fee vaults. Not every tracer looks
/// them up (op-geth's prestate tracer reports only the accounts it loads), so they are never
/// carried past a block.
pub const FEE_VAULTS: [Address; 4] = [
    alloy_primitives::address!("0x4200000000000000000000000000000000000011"),
    alloy_primitives::address!("0x4200000000000000000000000000000000000019"),
    alloy_primitives::address!("0x420000000000000000000000000000000000001A"),
    alloy_primitives::address!("0x420000000000000000000000000000000000001B"),
];

/// What a block changed: every account whose balance, nonce, code or storage it changed, and
/// every slot it wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlockTouches {
    /// Accounts touched in any way.
    pub accounts: HashSet<Address>,
    /// Storage slots written.
    pub slots: HashSet<(Address, U256)>,
    /// Accounts all of whose storage may have changed (removed by the block).
    pub contracts: HashSet<Address>,
}

/// The carried state of the canonical chain (one per upstream).
#[derive(Debug, Default)]
pub struct CarriedState {
    /// The canonical blocks the carried values are checked against: number to hash.
    chain: BTreeMap<u64, B256>,
    by_hash: HashMap<B256, u64>,
    /// Values read before this block are not carried to it or later.
    barrier: u64,
    /// The last block that touched each key (since the barrier).
    touched_accounts: HashMap<Address, u64>,
    touched_slots: HashMap<(Address, U256), u64>,
    /// Contracts all of whose storage a block may have written (system contracts, removed
    /// accounts).
    touched_contracts: HashMap<Address, u64>,
    /// Each followed block's touches, oldest first, to expire them in the size of the diff.
    touch_log: VecDeque<(u64, BlockTouches)>,
    /// Code bytes the carried accounts hold.
    code_bytes: usize,
    /// Each key's value and the block it was read at.
    accounts: HashMap<Address, (u64, SourceAccount)>,
    slots: HashMap<(Address, U256), (u64, U256)>,
}

impl CarriedState {
    /// The canonical block `hash`'s number, if it is one this state follows.
    fn number_of(&self, hash: &B256) -> Option<u64> {
        self.by_hash.get(hash).copied()
    }

    /// Whether a value read at `read_at`, last touched at `touched`, is its value at `n`.
    fn valid(&self, read_at: u64, touched: Option<u64>, n: u64) -> bool {
        read_at <= n && read_at >= self.barrier && touched.is_none_or(|t| t <= read_at)
    }

    /// The account at canonical block `at`, if carried there.
    pub fn account(&self, at: &B256, address: &Address) -> Option<SourceAccount> {
        let n = self.number_of(at)?;
        let (read_at, value) = self.accounts.get(address)?;
        self.valid(*read_at, self.touched_accounts.get(address).copied(), n).then(|| value.clone())
    }

    /// The slot at canonical block `at`, if carried there.
    pub fn storage(&self, at: &B256, address: &Address, slot: &U256) -> Option<U256> {
        let n = self.number_of(at)?;
        let key = (*address, *slot);
        let (read_at, value) = self.slots.get(&key)?;
        let touched =
            self.touched_slots.get(&key).copied().max(self.touched_contracts.get(address).copied());
        self.valid(*read_at, touched, n).then_some(*value)
    }

    /// Records an account read at `at` (kept only when `at` is a canonical block followed here
    /// and the value is newer than the one kept).
    pub fn record_account(&mut self, at: &B256, address: Address, value: SourceAccount) {
        let Some(n) = self.number_of(at) else { return };
        if self.accounts.get(&address).is_some_and(|(m, _)| *m >= n) {
            return;
        }
        if self.accounts.len() >= MAX_CARRIED_KEYS
            || self.code_bytes + value.code.len() > MAX_CARRIED_CODE_BYTES
        {
            self.accounts.clear();
            self.code_bytes = 0;
        }
        self.code_bytes += value.code.len();
        if let Some((_, old)) = self.accounts.insert(address, (n, value)) {
            self.code_bytes = self.code_bytes.saturating_sub(old.code.len());
        }
    }

    /// Records a slot read at `at` (as [`Self::record_account`]).
    pub fn record_storage(&mut self, at: &B256, address: Address, slot: U256, value: U256) {
        let Some(n) = self.number_of(at) else { return };
        let key = (address, slot);
        if self.slots.get(&key).is_some_and(|(m, _)| *m >= n) {
            return;
        }
        if self.slots.len() >= MAX_CARRIED_KEYS {
            self.slots.clear();
        }
        self.slots.insert(key, (n, value));
    }

    /// Canonical block `number` (`hash`) was committed on top of the chain followed here, with
    /// what it touched (`None`: not known, so nothing read before it is carried past it).
    pub fn commit(&mut self, number: u64, hash: B256, touches: Option<BlockTouches>) {
        if let Some((&tip, _)) = self.chain.last_key_value() {
            if number <= tip {
                // Out of order or a replacement: start over from here.
                self.reset(number);
            } else if number > tip + 1 {
                // Blocks missed: their changes are unknown.
                self.barrier = self.barrier.max(number);
            }
        }
        match touches {
            Some(mut t) => {
                // Written by the block's system calls and fee payments, which a transaction
                // trace may leave out.
                t.accounts.extend(SYSTEM_WRITES.iter().chain(&FEE_VAULTS));
                t.contracts.extend(SYSTEM_WRITES);
                mark(&mut self.touched_accounts, &t.accounts, number);
                mark(&mut self.touched_slots, &t.slots, number);
                mark(&mut self.touched_contracts, &t.contracts, number);
                self.touch_log.push_back((number, t));
            }
            None => self.barrier = self.barrier.max(number),
        }
        self.chain.insert(number, hash);
        self.by_hash.insert(hash, number);
        // The window: older blocks are no longer read at, older values no longer carried.
        let floor = number.saturating_sub(CARRY_WINDOW);
        self.barrier = self.barrier.max(floor);
        while let Some((&n, &h)) = self.chain.first_key_value() {
            if n >= floor {
                break;
            }
            self.chain.remove(&n);
            self.by_hash.remove(&h);
        }
        // Touches at or before the barrier cannot make a carried value stale any more: expire
        // them block by block (the cost of a diff, never a pass over the maps).
        while self.touch_log.front().is_some_and(|(n, _)| *n <= self.barrier) {
            let Some((n, t)) = self.touch_log.pop_front() else { break };
            expire(&mut self.touched_accounts, &t.accounts, n);
            expire(&mut self.touched_slots, &t.slots, n);
            expire(&mut self.touched_contracts, &t.contracts, n);
        }
        metrics::gauge!(CARRIED_BLOCK).set(number as f64);
    }

    /// A reorg (or blocks that replace ones followed here): nothing carried survives, and
    /// blocks from `from` on are followed anew.
    pub fn reset(&mut self, from: u64) {
        *self = Self { barrier: from, ..Self::default() };
        metrics::gauge!(CARRIED_BLOCK).set(from.saturating_sub(1) as f64);
    }

    /// Keys carried (accounts, slots).
    pub fn len(&self) -> (usize, usize) {
        (self.accounts.len(), self.slots.len())
    }
}

/// Notes block `n` as the last to touch each of `keys`.
fn mark<K: Copy + Eq + std::hash::Hash>(touched: &mut HashMap<K, u64>, keys: &HashSet<K>, n: u64) {
    for k in keys {
        touched.insert(*k, n);
    }
}

/// Forgets block `n`'s touches of `keys`, where no later block touched them since.
fn expire<K: Eq + std::hash::Hash>(touched: &mut HashMap<K, u64>, keys: &HashSet<K>, n: u64) {
    for k in keys {
        if touched.get(k) == Some(&n) {
            touched.remove(k);
        }
    }
}

/// What a block touched, from `debug_traceBlockByHash`'s prestate-tracer diff (one `{pre,
/// post}` per transaction, or one for the whole block): every account in either side, and
/// every slot in either side's `storage` (a slot cleared to zero is absent from `post` but
/// present in `pre`). `None` when the answer is not such a diff.
pub fn touches_of_prestate_diff(answer: &serde_json::Value) -> Option<BlockTouches> {
    let mut touches = BlockTouches::default();
    for item in answer.as_array()? {
        let result = item.get("result")?;
        // Both sides, or it is not a diff (a tracer that ignored diffMode answers the plain
        // prestate, which says nothing of what changed).
        let (pre, post) = (result.get("pre")?.as_object()?, result.get("post")?.as_object()?);
        // In `pre` and not in `post`: the account is gone, and with it every slot (the tracer
        // lists only those it looked up).
        for address in pre.keys().filter(|a| !post.contains_key(*a)) {
            touches.contracts.insert(address.parse().ok()?);
        }
        for accounts in [pre, post] {
            for (address, account) in accounts {
                let address: Address = address.parse().ok()?;
                touches.accounts.insert(address);
                if let Some(storage) = account.get("storage").and_then(|s| s.as_object()) {
                    for slot in storage.keys() {
                        let slot: B256 = slot.parse().ok()?;
                        touches.slots.insert((address, U256::from_be_bytes(slot.0)));
                    }
                }
            }
        }
    }
    Some(touches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Bytes;

    const A: Address = Address::repeat_byte(0xa);
    const B: Address = Address::repeat_byte(0xb);

    fn h(n: u64) -> B256 {
        B256::from(U256::from(n))
    }

    fn acc(balance: u64) -> SourceAccount {
        SourceAccount { balance: U256::from(balance), nonce: 0, code: Bytes::new() }
    }

    fn touching(accounts: &[Address], slots: &[(Address, u64)]) -> BlockTouches {
        BlockTouches {
            accounts: accounts.iter().copied().collect(),
            slots: slots.iter().map(|(a, s)| (*a, U256::from(*s))).collect(),
            contracts: HashSet::new(),
        }
    }

    /// Blocks 10 and 11 committed with nothing touched.
    fn following() -> CarriedState {
        let mut c = CarriedState::default();
        c.commit(10, h(10), Some(BlockTouches::default()));
        c
    }

    #[test]
    fn an_untouched_value_is_carried_and_a_touched_one_is_read_again() {
        let mut c = following();
        c.record_storage(&h(10), A, U256::from(1), U256::from(7));
        c.record_storage(&h(10), A, U256::from(2), U256::from(8));
        c.record_account(&h(10), A, acc(5));
        c.record_account(&h(10), B, acc(6));
        c.commit(11, h(11), Some(touching(&[B], &[(A, 2)])));
        assert_eq!(c.storage(&h(11), &A, &U256::from(1)), Some(U256::from(7)), "untouched");
        assert_eq!(c.storage(&h(11), &A, &U256::from(2)), None, "written in 11");
        assert_eq!(c.account(&h(11), &A), Some(acc(5)));
        assert_eq!(c.account(&h(11), &B), None, "B's balance changed in 11");
        // Only the last touch is kept, so a value touched since is not answered even at the
        // block it was read at (the upstream's per-block cache answers there).
        assert_eq!(c.storage(&h(10), &A, &U256::from(2)), None);
        assert_eq!(c.storage(&h(10), &A, &U256::from(1)), Some(U256::from(7)));
        // Read again at 11: carried from there.
        c.record_storage(&h(11), A, U256::from(2), U256::from(9));
        c.commit(12, h(12), Some(BlockTouches::default()));
        assert_eq!(c.storage(&h(12), &A, &U256::from(2)), Some(U256::from(9)));
        // An unknown block hash (not canonical here) carries nothing.
        assert_eq!(c.storage(&B256::repeat_byte(0xee), &A, &U256::from(1)), None);
    }

    #[test]
    fn a_block_whose_diff_is_unknown_is_a_barrier() {
        let mut c = following();
        c.record_storage(&h(10), A, U256::from(1), U256::from(7));
        c.commit(11, h(11), None);
        assert_eq!(c.storage(&h(11), &A, &U256::from(1)), None);
        c.record_storage(&h(11), A, U256::from(1), U256::from(7));
        c.commit(12, h(12), Some(BlockTouches::default()));
        assert_eq!(c.storage(&h(12), &A, &U256::from(1)), Some(U256::from(7)));
        // A gap (13 never committed) is a barrier too.
        c.commit(14, h(14), Some(BlockTouches::default()));
        assert_eq!(c.storage(&h(14), &A, &U256::from(1)), None);
    }

    #[test]
    fn a_reorg_or_a_replaced_block_carries_nothing() {
        let mut c = following();
        c.commit(11, h(11), Some(BlockTouches::default()));
        c.record_storage(&h(11), A, U256::from(1), U256::from(7));
        // 11 replaced by 11' (another hash at the same height).
        c.commit(11, B256::repeat_byte(0x77), Some(BlockTouches::default()));
        assert_eq!(c.storage(&B256::repeat_byte(0x77), &A, &U256::from(1)), None);
        assert_eq!(c.storage(&h(11), &A, &U256::from(1)), None, "11 is no longer followed");
        c.reset(20);
        c.commit(20, h(20), Some(BlockTouches::default()));
        c.record_account(&h(20), A, acc(1));
        assert_eq!(c.account(&h(20), &A), Some(acc(1)));
    }

    #[test]
    fn a_value_read_late_never_replaces_a_newer_one_and_old_values_age_out() {
        let mut c = following();
        c.commit(11, h(11), Some(BlockTouches::default()));
        c.record_storage(&h(11), A, U256::from(1), U256::from(9));
        c.record_storage(&h(10), A, U256::from(1), U256::from(7));
        assert_eq!(c.storage(&h(11), &A, &U256::from(1)), Some(U256::from(9)));
        for n in 12..=11 + CARRY_WINDOW {
            c.commit(n, h(n), Some(BlockTouches::default()));
        }
        let tip = 11 + CARRY_WINDOW;
        assert_eq!(c.storage(&h(tip), &A, &U256::from(1)), Some(U256::from(9)), "in the window");
        c.commit(tip + 1, h(tip + 1), Some(BlockTouches::default()));
        assert_eq!(c.storage(&h(tip + 1), &A, &U256::from(1)), None, "older than the window");
    }

    #[test]
    fn system_contracts_are_never_carried_past_a_block() {
        let mut c = following();
        for a in SYSTEM_WRITES {
            c.record_storage(&h(10), a, U256::from(1), U256::from(7));
        }
        c.commit(11, h(11), Some(BlockTouches::default()));
        for a in SYSTEM_WRITES {
            assert_eq!(c.storage(&h(11), &a, &U256::from(1)), None);
        }
    }

    #[test]
    fn fee_vaults_and_removed_contracts_are_never_carried_past_a_block() {
        let mut c = following();
        for v in FEE_VAULTS {
            c.record_account(&h(10), v, acc(1));
        }
        c.record_storage(&h(10), A, U256::from(9), U256::from(1));
        let mut removed = BlockTouches::default();
        removed.contracts.insert(A);
        c.commit(11, h(11), Some(removed));
        for v in FEE_VAULTS {
            assert_eq!(c.account(&h(11), &v), None);
        }
        assert_eq!(c.storage(&h(11), &A, &U256::from(9)), None, "every slot of a removed one");
    }

    #[test]
    fn touches_expire_with_the_window_in_the_size_of_each_diff() {
        let mut c = following();
        c.commit(11, h(11), Some(touching(&[A], &[(A, 1)])));
        assert!(c.touched_slots.contains_key(&(A, U256::from(1))));
        for n in 12..=11 + CARRY_WINDOW + 1 {
            c.commit(n, h(n), Some(BlockTouches::default()));
        }
        assert!(!c.touched_slots.contains_key(&(A, U256::from(1))), "expired with block 11");
        assert!(c.touch_log.len() <= CARRY_WINDOW as usize + 1, "{}", c.touch_log.len());
    }

    #[test]
    fn touches_come_from_a_prestate_diff() {
        let answer = serde_json::json!([
            {"txHash": "0x01", "result": {
                "pre": {
                    "0x0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a": {"balance": "0x1",
                        "storage": {"0x0000000000000000000000000000000000000000000000000000000000000002": "0x05"}}
                },
                "post": {
                    "0x0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b": {"nonce": 1,
                        "storage": {"0x0000000000000000000000000000000000000000000000000000000000000003": "0x01"}}
                }
            }}
        ]);
        let t = touches_of_prestate_diff(&answer).unwrap();
        let mut expected = touching(&[A, B], &[(A, 2), (B, 3)]);
        expected.contracts.insert(A);
        assert_eq!(t, expected, "A is in pre only: removed, all its storage with it");
        // The plain prestate (a tracer that ignored diffMode) is no diff.
        let plain = serde_json::json!([{"txHash": "0x01", "result": {
            "0x0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a": {"balance": "0x1"}
        }}]);
        assert_eq!(touches_of_prestate_diff(&plain), None);
        assert_eq!(touches_of_prestate_diff(&serde_json::json!({"pre": {}})), None);
        assert_eq!(touches_of_prestate_diff(&serde_json::json!([{"result": {"pre": 1}}])), None);
    }
}
