//! `eth_createAccessList`: an inspector that records the accounts and storage slots a call
//! touches, as geth's access-list tracer and reth's inspector do.

use alloy_primitives::{Address, B256};
use alloy_rpc_types_eth::{AccessList, AccessListItem};
use revm::{
    bytecode::opcode,
    interpreter::{
        interpreter_types::{InputsTr, Jumps},
        Interpreter,
    },
    Inspector,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Records touched accounts and slots. Addresses warm by definition (sender, recipient,
/// precompiles) are left out unless a slot of theirs is touched.
#[derive(Debug, Default)]
pub struct AccessListInspector {
    excluded: HashSet<Address>,
    list: BTreeMap<Address, BTreeSet<B256>>,
}

impl AccessListInspector {
    /// Starts from the request's own access list.
    pub fn new(initial: &AccessList, excluded: impl IntoIterator<Item = Address>) -> Self {
        let list = initial
            .0
            .iter()
            .map(|item| (item.address, item.storage_keys.iter().copied().collect()))
            .collect();
        Self { excluded: excluded.into_iter().collect(), list }
    }

    /// Adds addresses that need no access-list entry.
    pub fn exclude(&mut self, addresses: impl IntoIterator<Item = Address>) {
        self.excluded.extend(addresses);
    }

    /// The access list, sorted by address and slot.
    pub fn into_access_list(self) -> AccessList {
        AccessList(
            self.list
                .into_iter()
                .map(|(address, slots)| AccessListItem {
                    address,
                    storage_keys: slots.into_iter().collect(),
                })
                .collect(),
        )
    }

    fn touch(&mut self, address: Address) {
        if !self.excluded.contains(&address) {
            self.list.entry(address).or_default();
        }
    }
}

impl<CTX> Inspector<CTX> for AccessListInspector {
    fn step(&mut self, interp: &mut Interpreter, _context: &mut CTX) {
        let op = interp.bytecode.opcode();
        let word_address = |i: usize| {
            interp.stack.peek(i).ok().map(|w| Address::from_word(B256::from(w.to_be_bytes())))
        };
        match op {
            opcode::SLOAD | opcode::SSTORE => {
                if let Ok(slot) = interp.stack.peek(0) {
                    let contract = interp.input.target_address();
                    self.list.entry(contract).or_default().insert(B256::from(slot.to_be_bytes()));
                }
            }
            opcode::EXTCODECOPY
            | opcode::EXTCODEHASH
            | opcode::EXTCODESIZE
            | opcode::BALANCE
            | opcode::SELFDESTRUCT => {
                if let Some(a) = word_address(0) {
                    self.touch(a);
                }
            }
            opcode::CALL | opcode::CALLCODE | opcode::DELEGATECALL | opcode::STATICCALL => {
                if let Some(a) = word_address(1) {
                    self.touch(a);
                }
            }
            _ => {}
        }
    }
}
