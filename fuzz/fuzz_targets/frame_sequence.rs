//! Arbitrary sequences of flashblock frames (indices, block numbers, payload ids, parents,
//! bases, `prev_flashblock_id`s, compression) through `decode_frame` into
//! `FlashblockSequencer`: no panic, and the sequencer's invariants hold after every step.
#![no_main]

use arbitrary::Arbitrary;
use flashnode_overlay::{decode_frame, encode_brotli, Decision, FlashblockSequencer};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

#[derive(Arbitrary, Debug)]
struct Step {
    /// Block number relative to a base, so most steps stay close together.
    block: u8,
    index: u8,
    payload_id: u8,
    parent: u8,
    with_base: bool,
    /// 0: no metadata.block_number, 1: number, 2: hex string, 3: mismatching number.
    number_shape: u8,
    /// `prev_flashblock_id`: none, the true predecessor, or an arbitrary one.
    prev: Option<(u8, u8)>,
    prev_is_true_predecessor: bool,
    brotli: bool,
    /// Reset the sequencer before this step (canonical reorg).
    reset: bool,
}

fn hash(b: u8) -> String {
    format!("0x{}", format!("{b:02x}").repeat(32))
}

fn frame(step: &Step, base_block: u64) -> Value {
    let block = base_block + u64::from(step.block % 8);
    let mut metadata = serde_json::Map::new();
    match step.number_shape % 4 {
        0 => {}
        1 => {
            metadata.insert("block_number".into(), json!(block));
        }
        2 => {
            metadata.insert("block_number".into(), json!(format!("{block:#x}")));
        }
        _ => {
            metadata.insert("block_number".into(), json!(block + 1));
        }
    }
    if let Some((b, i)) = step.prev {
        let id = if step.prev_is_true_predecessor {
            format!("{block}-{}", u64::from(step.index).saturating_sub(1))
        } else {
            format!("{}-{i}", base_block + u64::from(b % 8))
        };
        metadata.insert("prev_flashblock_id".into(), json!(id));
    }
    let mut v = json!({
        "payload_id": format!("0x{}", format!("{:02x}", step.payload_id % 3).repeat(8)),
        "index": step.index % 80,
        "diff": {
            "state_root": hash(0),
            "receipts_root": hash(0x11),
            "logs_bloom": format!("0x{}", "00".repeat(256)),
            "gas_used": "0x0",
            "block_hash": hash(0x22),
            "transactions": [],
            "withdrawals": [],
            "withdrawals_root": hash(0)
        },
        "metadata": Value::Object(metadata),
    });
    if step.with_base {
        v["base"] = json!({
            "parent_beacon_block_root": hash(0),
            "parent_hash": hash(step.parent % 3),
            "fee_recipient": "0x4200000000000000000000000000000000000011",
            "prev_randao": hash(0),
            "block_number": format!("{block:#x}"),
            "gas_limit": "0x1c9c380",
            "timestamp": "0x6553f100",
            "extra_data": "0x",
            "base_fee_per_gas": "0x3b9aca00"
        });
    }
    v
}

fuzz_target!(|input: (u16, Vec<Step>)| {
    let (base_block, steps) = input;
    let base_block = u64::from(base_block);
    let mut seq = FlashblockSequencer::default();
    for step in steps.iter().take(256) {
        if step.reset {
            seq.reset();
        }
        let json = frame(step, base_block).to_string();
        let bytes = if step.brotli { encode_brotli(json.as_bytes()) } else { json.into_bytes() };
        let Ok(fb) = decode_frame(&bytes, 1 << 20) else { continue };
        let before = seq.current();
        let decision = seq.classify(&fb);
        let after = seq.current();
        match decision {
            Decision::StartBlock => {
                let (number, payload_id, next) = after.expect("a started block is current");
                assert_eq!(fb.payload.index, 0);
                assert_eq!(number, fb.block_number());
                assert_eq!(payload_id, fb.payload.payload_id);
                assert_eq!(next, 1);
                assert!(seq.is_synced());
                if let Some((old, _, _)) = before {
                    assert!(number >= old, "a start never moves the block backwards");
                }
            }
            Decision::Next => {
                let (b_num, b_id, b_next) = before.expect("next needs a current block");
                let (a_num, a_id, a_next) = after.expect("still current");
                assert_eq!((a_num, a_id), (b_num, b_id));
                assert_eq!(fb.payload.index, b_next, "next applies exactly the expected index");
                assert_eq!(a_next, b_next + 1);
                assert!(seq.is_synced());
            }
            // Everything else never advances the prefix or changes the block.
            _ => {
                assert_eq!(
                    after.map(|(n, id, next)| (n, id, next)),
                    before,
                    "{decision:?} must not move the cursor"
                );
            }
        }
    }
});
