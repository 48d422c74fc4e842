//! rollup-boost's own flashblock types and flashnode agree on the wire, both ways.

use flashnode_overlay::{decode_frame, encode_brotli};
use flashnode_tests::{collect_flashblocks, next_flashblock, start};
use rollup_boost_types::flashblocks::FlashblocksPayloadV1;
use std::time::Duration;

/// A frame in rollup-boost's shape, as its builder sends it (index 0 with base, then a delta).
fn rollup_boost_frames() -> Vec<FlashblocksPayloadV1> {
    let base = serde_json::json!({
        "payload_id": "0x0316ecb1aa1671b5",
        "index": 0,
        "base": {
            "parent_beacon_block_root": "0x1111111111111111111111111111111111111111111111111111111111111111",
            "parent_hash": "0x2222222222222222222222222222222222222222222222222222222222222222",
            "fee_recipient": "0x4200000000000000000000000000000000000011",
            "prev_randao": "0x3333333333333333333333333333333333333333333333333333333333333333",
            "block_number": "0x23e6a2a",
            "gas_limit": "0x7270e00",
            "timestamp": "0x68b5b4a0",
            "extra_data": "0x00000000fa00000006",
            "base_fee_per_gas": "0x3b9aca00"
        },
        "diff": {
            "state_root": "0x0000000000000000000000000000000000000000000000000000000000000000",
            "receipts_root": "0x4444444444444444444444444444444444444444444444444444444444444444",
            "logs_bloom": format!("0x{}", "00".repeat(256)),
            "gas_used": "0xb0f8",
            "block_hash": "0x5555555555555555555555555555555555555555555555555555555555555555",
            "transactions": ["0x7ef8f8a0deadbeef"],
            "withdrawals": [],
            "withdrawals_root": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
        },
        "metadata": { "block_number": 37646890, "new_account_balances": {}, "receipts": {} }
    });
    let mut delta = base.clone();
    delta["index"] = 1.into();
    delta.as_object_mut().unwrap().remove("base");
    delta["diff"]["gas_used"] = "0x1b0f8".into();
    delta["metadata"] = serde_json::json!({ "block_number": 37646890 });
    [base, delta]
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("rollup-boost parses its own shape"))
        .collect()
}

#[test]
fn flashnode_decodes_rollup_boost_frames_text_and_brotli() {
    for rb in rollup_boost_frames() {
        let json = serde_json::to_vec(&rb).unwrap();
        for bytes in [json.clone(), encode_brotli(&json)] {
            let ours =
                decode_frame(&bytes, 1 << 20).expect("flashnode decodes rollup-boost's frame");
            assert_eq!(ours.payload.index, rb.index);
            assert_eq!(ours.payload.payload_id.0 .0, rb.payload_id.0 .0);
            assert_eq!(ours.payload.diff.gas_used, rb.diff.gas_used);
            assert_eq!(ours.payload.diff.block_hash.0, rb.diff.block_hash.0);
            assert_eq!(ours.payload.diff.transactions.len(), rb.diff.transactions.len());
            assert_eq!(ours.payload.base.is_some(), rb.base.is_some());
            if let (Some(a), Some(b)) = (&ours.payload.base, &rb.base) {
                assert_eq!(a.block_number, b.block_number);
                assert_eq!(a.timestamp, b.timestamp);
                assert_eq!(a.parent_hash.0, b.parent_hash.0);
            }
        }
    }
}

/// A Base websocket-proxy style Binary frame (brotli, quality 5, window 22) decodes too.
#[test]
fn flashnode_decodes_a_base_style_brotli_binary_frame() {
    let rb = &rollup_boost_frames()[0];
    let json = serde_json::to_vec(rb).unwrap();
    let mut compressed = Vec::new();
    {
        use std::io::Write;
        let mut w = brotli::CompressorWriter::new(&mut compressed, 4096, 5, 22);
        w.write_all(&json).unwrap();
    }
    assert_ne!(compressed.first(), Some(&b'{'));
    let ours = decode_frame(&compressed, 1 << 20).unwrap();
    assert_eq!(ours.payload.metadata.block_number, 37646890);
}

/// rollup-boost's types decode every frame the flashnode devnet streams, Text and Binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_boost_decodes_flashnode_frames() {
    for extra in [&[][..], &["--flashblocks-brotli"][..]] {
        let mut args = vec!["--block-time", "1s", "--flashblock-interval", "100ms"];
        args.extend_from_slice(extra);
        let node = start("devnet", &args).await;
        let mut fbs = collect_flashblocks(&node.ws).await;
        let mut saw_base = false;
        for _ in 0..12 {
            let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
            let rb: FlashblocksPayloadV1 = serde_json::from_value(fb.json.clone())
                .expect("rollup-boost decodes flashnode's frame");
            assert_eq!(rb.index, fb.payload.index);
            assert_eq!(rb.diff.block_hash.0, fb.payload.diff.block_hash.0);
            assert_eq!(rb.diff.transactions.len(), fb.payload.diff.transactions.len());
            assert_eq!(
                rb.metadata["block_number"].as_u64(),
                Some(fb.payload.metadata.block_number)
            );
            saw_base |= rb.base.is_some();
            assert_eq!(fb.binary, !extra.is_empty());
        }
        assert!(saw_base);
    }
}

/// A third-party consumer of Base's stream format decodes the node's fan-out frames, Text and
/// brotli Binary (`--ws-compression`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_boost_decodes_the_fanout() {
    for extra in [&[][..], &["--ws-compression"][..]] {
        let mut args = vec!["--block-time", "1s", "--flashblock-interval", "100ms"];
        args.extend_from_slice(extra);
        let node = start("dev", &args).await;
        let mut fbs = collect_flashblocks(&node.ws).await;
        for _ in 0..12 {
            let fb = next_flashblock(&mut fbs, Duration::from_secs(10)).await;
            assert_eq!(fb.binary, !extra.is_empty());
            let rb: FlashblocksPayloadV1 = serde_json::from_value(fb.json.clone())
                .expect("rollup-boost decodes the fan-out frame");
            assert_eq!(rb.index, fb.payload.index);
            assert_eq!(rb.diff.block_hash.0, fb.payload.diff.block_hash.0);
        }
    }
}
