//! Arbitrary bytes as an `eth_sendRawTransaction` payload to the devnet's mempool check
//! (`decode_raw`: EIP-2718 decoding, type/chain/fee rules, signer recovery, intrinsic gas):
//! no panic, and an accepted tx re-encodes to the exact input.
#![no_main]

use flashnode_devnet::mempool::{decode_raw, PoolRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules =
        PoolRules { chain_id: 901, gas_limit: 30_000_000, base_fee: 1_000_000_000, max_txs: 1024 };
    if let Ok(tx) = decode_raw(data, &rules) {
        assert_eq!(tx.encoded.as_ref(), data);
    }
});
