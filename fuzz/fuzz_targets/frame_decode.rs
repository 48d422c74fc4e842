//! Arbitrary bytes as one websocket frame (Text JSON or brotli Binary): `decode_frame` never
//! panics, respects its size cap, and whatever it accepts decodes again to the same payload
//! from its raw JSON and from the brotli re-encoding the fan-out would publish.
#![no_main]

use flashnode_overlay::{decode_frame, encode_brotli};
use libfuzzer_sys::fuzz_target;

/// Small cap so the size checks are reached.
const CAP: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(fb) = decode_frame(data, CAP) else { return };
    assert_eq!(fb.wire_len, data.len());
    assert!(fb.raw_json.len() <= CAP, "decoded past the cap");
    // The raw JSON is what the fan-out re-publishes: it must decode to the same flashblock.
    let again = decode_frame(fb.raw_json.as_bytes(), CAP).expect("raw_json decodes again");
    assert_eq!(again.payload, fb.payload);
    assert_eq!(again.prev_flashblock_id, fb.prev_flashblock_id);
    let compressed = encode_brotli(fb.raw_json.as_bytes());
    let unpacked = decode_frame(&compressed, CAP).expect("brotli re-encoding decodes");
    assert_eq!(unpacked.payload, fb.payload);
    let _ = fb.block_number();
});
