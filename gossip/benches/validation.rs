//! Gossip validation throughput: how many 500-transaction blocks one core decodes, hashes
//! (transactions trie + header), checks and signature-verifies per second. Results go to the
//! README (never asserted in tests).

use alloy_consensus::{
    proofs::calculate_transaction_root, Block, BlockBody, Header, SignableTransaction, TxEip1559,
};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flashnode_gossip::{codec, BlockVersion, Validator};
use op_alloy_consensus::OpTxEnvelope;
use std::time::{SystemTime, UNIX_EPOCH};

fn block_with_txs(n: usize, signer: &PrivateKeySigner) -> (Block<OpTxEnvelope>, B256) {
    let txs: Vec<OpTxEnvelope> = (0..n as u64)
        .map(|nonce| {
            let tx = TxEip1559 {
                chain_id: 901,
                nonce,
                gas_limit: 21_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000,
                to: TxKind::Call(Address::repeat_byte(0x11)),
                value: U256::from(1u64),
                input: Bytes::new(),
                access_list: Default::default(),
            };
            let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("signs");
            OpTxEnvelope::Eip1559(tx.into_signed(sig))
        })
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let header = Header {
        number: 1,
        timestamp: now,
        gas_limit: 30_000_000,
        gas_used: 21_000 * n as u64,
        base_fee_per_gas: Some(1_000_000_000),
        transactions_root: calculate_transaction_root(&txs),
        withdrawals_root: Some(alloy_consensus::constants::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::repeat_byte(3)),
        requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
        extra_data: Bytes::from_static(&[0; 9]),
        ..Default::default()
    };
    let block = Block {
        header,
        body: BlockBody {
            transactions: txs,
            ommers: vec![],
            withdrawals: Some(Default::default()),
        },
    };
    let hash = block.header.hash_slow();
    (block, hash)
}

fn bench(c: &mut Criterion) {
    let signer: PrivateKeySigner =
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d".parse().expect("key");
    let (block, hash) = block_with_txs(500, &signer);
    let msg = codec::sign_block(&block, hash, 901, &signer).expect("signs");
    let now = block.header.timestamp;
    let mut g = c.benchmark_group("gossip_validation");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("500_tx_block_{}_bytes", msg.wire.len()), |b| {
        b.iter(|| {
            // A fresh seen cache each time: every iteration is a full accept.
            let mut v = Validator::default();
            let o = v.validate(BlockVersion::V4, &msg.wire, now, 901, signer.address());
            assert_eq!(o.label(), "accept");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
