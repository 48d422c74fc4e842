//! Decoding of one websocket frame into a flashblock.
//!
//! Builders and rollup-boost send Text frames of JSON; Base's websocket proxy re-emits Binary
//! frames, brotli-compressed when compression is on. A frame is JSON when its first
//! non-whitespace byte is `{`, else brotli.
//!
//! Real streams are looser than [`OpFlashblockPayload`]: `metadata` may be absent or reduced to
//! `{block_number}`, and newer streams add `metadata.prev_flashblock_id`. The decoder
//! normalises those shapes once, here at the edge, so everything downstream can rely on the
//! typed payload.

use std::{io::Read, sync::Arc};

use op_alloy_rpc_types_engine::flashblock::OpFlashblockPayload;
use serde_json::{Map, Value};

/// Default cap on the decompressed size of one frame (32 MiB).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 32 * 1024 * 1024;

/// Brotli quality used by Base's websocket proxy.
pub const BROTLI_QUALITY: u32 = 5;

/// Brotli window (log2 of the window size) used by Base's websocket proxy.
pub const BROTLI_WINDOW: u32 = 22;

/// Size of the chunks the brotli output is read in; bounds the overshoot past the cap.
const DECOMPRESS_CHUNK: usize = 64 * 1024;

/// A flashblock decoded from one websocket frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedFlashblock {
    /// The typed payload, with `metadata` normalised (see [`decode_frame`]).
    pub payload: OpFlashblockPayload,
    /// `metadata.prev_flashblock_id` as `(block_number, index)`, when present and well-formed.
    ///
    /// The `"0-0"` sentinel ("no predecessor", sent after a builder restart) decodes to `None`.
    pub prev_flashblock_id: Option<(u64, u64)>,
    /// The JSON exactly as received (after decompression), so the fan-out can re-publish it
    /// byte for byte.
    pub raw_json: Arc<str>,
    /// Size of the frame on the wire (compressed size for brotli frames).
    pub wire_len: usize,
}

impl DecodedFlashblock {
    /// Index of the flashblock within its block.
    pub const fn index(&self) -> u64 {
        self.payload.index
    }

    /// Block number this flashblock builds: `base.block_number` on index 0 when a base is
    /// present, `metadata.block_number` otherwise.
    pub fn block_number(&self) -> u64 {
        self.payload.base.as_ref().map_or(self.payload.metadata.block_number, |b| b.block_number)
    }
}

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The (decompressed) frame is larger than the configured cap.
    #[error("frame exceeds {limit} bytes once decompressed")]
    TooLarge {
        /// The cap that was exceeded, in bytes.
        limit: usize,
    },
    /// The frame is not a valid brotli stream.
    #[error("brotli: {0}")]
    Brotli(String),
    /// The frame is not valid UTF-8 JSON.
    #[error("json: {0}")]
    Json(String),
    /// The frame is JSON but not a valid flashblock.
    #[error("invalid flashblock: {0}")]
    Invalid(String),
}

impl FrameError {
    /// Stable, low-cardinality label for metrics and log rate-limiting.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Brotli(_) => "brotli",
            Self::Json(_) => "json",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Decodes one websocket frame (Text or Binary payload) into a flashblock.
///
/// The frame is JSON when its first non-whitespace byte is `{`, otherwise it is
/// brotli-decompressed first, never producing more than `max_decompressed` bytes. Plain JSON
/// frames larger than `max_decompressed` are rejected too.
///
/// The JSON is parsed tolerantly:
/// - a missing (or `null`) `metadata` becomes `{block_number: base.block_number}`;
/// - missing `receipts` / `new_account_balances` become empty maps;
/// - a hex-string `metadata.block_number` is accepted;
/// - if neither `metadata.block_number` nor `base` is present the frame is invalid.
pub fn decode_frame(
    bytes: &[u8],
    max_decompressed: usize,
) -> Result<DecodedFlashblock, FrameError> {
    let first = bytes.iter().copied().find(|b| !is_json_whitespace(*b));
    let text: Arc<str> = match first {
        None => return Err(FrameError::Json("empty frame".into())),
        Some(b'{') => {
            if bytes.len() > max_decompressed {
                return Err(FrameError::TooLarge { limit: max_decompressed });
            }
            std::str::from_utf8(bytes).map_err(utf8_error)?.into()
        }
        Some(_) => String::from_utf8(brotli_decompress(bytes, max_decompressed)?)
            .map_err(|e| utf8_error(e.utf8_error()))?
            .into(),
    };

    let value: Value = serde_json::from_str(&text).map_err(|e| FrameError::Json(e.to_string()))?;
    let (payload, prev_flashblock_id) = parse_payload(value)?;

    Ok(DecodedFlashblock { payload, prev_flashblock_id, raw_json: text, wire_len: bytes.len() })
}

/// Brotli-compresses `json` with the settings of Base's websocket proxy (quality 5, window 22).
pub fn encode_brotli(json: &[u8]) -> Vec<u8> {
    use std::io::Write;

    let mut writer = brotli::CompressorWriter::new(
        Vec::with_capacity(json.len() / 4 + 64),
        4096,
        BROTLI_QUALITY,
        BROTLI_WINDOW,
    );
    // Writing into a `Vec` cannot fail, so there is no error to surface.
    let _ = writer.write_all(json);
    // `into_inner` finishes the stream.
    writer.into_inner()
}

/// JSON insignificant whitespace (RFC 8259).
const fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn utf8_error(e: std::str::Utf8Error) -> FrameError {
    FrameError::Json(format!("invalid utf-8 at byte {}", e.valid_up_to()))
}

/// Decompresses a brotli stream, reading in chunks so a bomb allocates at most
/// `max + DECOMPRESS_CHUNK` bytes before being rejected.
fn brotli_decompress(bytes: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut reader = brotli::Decompressor::new(bytes, 4096);
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max).min(1 << 20));
    let mut chunk = vec![0u8; DECOMPRESS_CHUNK];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if out.len().saturating_add(n) > max {
                    return Err(FrameError::TooLarge { limit: max });
                }
                let read = chunk
                    .get(..n)
                    .ok_or_else(|| FrameError::Brotli("reader overran its buffer".into()))?;
                out.extend_from_slice(read);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Brotli(e.to_string())),
        }
    }
    if out.is_empty() {
        return Err(FrameError::Brotli("empty stream".into()));
    }
    Ok(out)
}

/// Normalises the loose wire shapes into what [`OpFlashblockPayload`] requires, then
/// deserializes it. Returns the payload and the parsed `prev_flashblock_id`.
fn parse_payload(
    mut value: Value,
) -> Result<(OpFlashblockPayload, Option<(u64, u64)>), FrameError> {
    let root = value
        .as_object_mut()
        .ok_or_else(|| FrameError::Invalid("frame is not a JSON object".into()))?;

    let metadata = root.entry("metadata").or_insert(Value::Null);
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    let metadata = metadata
        .as_object_mut()
        .ok_or_else(|| FrameError::Invalid("metadata is not an object".into()))?;

    let block_number = match metadata.get("block_number") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            FrameError::Invalid(format!("metadata.block_number is not a u64: {n}"))
        })?),
        Some(Value::String(s)) => Some(parse_quantity(s).ok_or_else(|| {
            FrameError::Invalid(format!("metadata.block_number is not a quantity: {s:?}"))
        })?),
        Some(other) => {
            return Err(FrameError::Invalid(format!(
                "metadata.block_number has the wrong type: {other}"
            )))
        }
    };
    // Placeholder until the base is typed; replaced below.
    metadata.insert("block_number".into(), Value::from(block_number.unwrap_or(0)));

    for key in ["receipts", "new_account_balances"] {
        let entry = metadata.entry(key).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
    }

    let prev_flashblock_id = match metadata.get("prev_flashblock_id") {
        Some(Value::String(s)) => parse_flashblock_id(s).filter(|id| *id != (0, 0)),
        _ => None,
    };

    let mut payload: OpFlashblockPayload =
        serde_json::from_value(value).map_err(|e| FrameError::Invalid(e.to_string()))?;

    if block_number.is_none() {
        payload.metadata.block_number = match &payload.base {
            Some(base) => base.block_number,
            None => {
                return Err(FrameError::Invalid(
                    "metadata.block_number missing and no base to take it from".into(),
                ))
            }
        };
    }

    Ok((payload, prev_flashblock_id))
}

/// Parses a `"<block>-<index>"` flashblock id.
fn parse_flashblock_id(s: &str) -> Option<(u64, u64)> {
    let (block, index) = s.trim().split_once('-')?;
    Some((parse_decimal(block)?, parse_decimal(index)?))
}

/// Parses an unsigned decimal without sign or whitespace (`u64::from_str` accepts `+`).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a `0x`-prefixed hex quantity or a plain decimal string.
fn parse_quantity(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => parse_decimal(s),
    }
}

/// JSON fixtures shared by the unit tests of this crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::{json, Value};

    /// A 32-byte zero hash.
    pub(crate) const ZERO32: &str =
        "0x0000000000000000000000000000000000000000000000000000000000000000";

    /// The payload id every fixture uses unless told otherwise.
    pub(crate) const PAYLOAD_ID: &str = "0x0316ecb1aa1671b5";

    /// A 32-byte hash whose every byte is `b`.
    pub(crate) fn hash(b: u8) -> String {
        format!("0x{}", format!("{b:02x}").repeat(32))
    }

    /// The `base` object of an index-0 flashblock of `block`.
    pub(crate) fn base(block: u64) -> Value {
        json!({
            "parent_beacon_block_root": ZERO32,
            "parent_hash": hash(0xaa),
            "fee_recipient": "0x4200000000000000000000000000000000000011",
            "prev_randao": ZERO32,
            "block_number": format!("{block:#x}"),
            "gas_limit": "0x1c9c380",
            "timestamp": "0x6553f100",
            "extra_data": "0x",
            "base_fee_per_gas": "0x3b9aca00"
        })
    }

    /// A full flashblock: `base` on index 0, complete metadata.
    pub(crate) fn flashblock(block: u64, index: u64) -> Value {
        let mut v = json!({
            "payload_id": PAYLOAD_ID,
            "index": index,
            "diff": {
                "state_root": ZERO32,
                "receipts_root": hash(0x11),
                "logs_bloom": format!("0x{}", "00".repeat(256)),
                "gas_used": "0x5208",
                "block_hash": hash(0x22),
                "transactions": [],
                "withdrawals": [],
                "withdrawals_root": ZERO32
            },
            "metadata": {
                "block_number": block,
                "receipts": {},
                "new_account_balances": {}
            }
        });
        if index == 0 {
            v["base"] = base(block);
        }
        v
    }

    /// [`flashblock`] serialized.
    pub(crate) fn flashblock_json(block: u64, index: u64) -> String {
        flashblock(block, index).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};
    use alloy_primitives::{address, b256, U256};
    use op_alloy_consensus::OpReceipt;
    use serde_json::json;

    const MAX: usize = DEFAULT_MAX_DECOMPRESSED_BYTES;

    fn decode_value(v: &Value) -> Result<DecodedFlashblock, FrameError> {
        decode_frame(v.to_string().as_bytes(), MAX)
    }

    #[test]
    fn text_frame() {
        let json = flashblock_json(100, 0);
        let fb = decode_frame(json.as_bytes(), MAX).unwrap();
        assert_eq!(fb.payload.index, 0);
        assert_eq!(fb.payload.metadata.block_number, 100);
        assert_eq!(fb.payload.base.as_ref().unwrap().block_number, 100);
        assert_eq!(fb.payload.payload_id.to_string(), PAYLOAD_ID);
        assert_eq!(fb.payload.diff.gas_used, 21_000);
        assert_eq!(&*fb.raw_json, json.as_str());
        assert_eq!(fb.wire_len, json.len());
        assert_eq!(fb.prev_flashblock_id, None);
        assert_eq!(fb.block_number(), 100);
        assert_eq!(fb.index(), 0);
    }

    #[test]
    fn leading_whitespace_is_json() {
        let json = format!(" \r\n\t{}", flashblock_json(7, 3));
        let fb = decode_frame(json.as_bytes(), MAX).unwrap();
        assert_eq!(fb.payload.index, 3);
        assert_eq!(fb.block_number(), 7);
        // Re-published exactly as received.
        assert_eq!(&*fb.raw_json, json.as_str());
    }

    #[test]
    fn brotli_frame() {
        let json = flashblock_json(100, 2);
        let compressed = encode_brotli(json.as_bytes());
        assert_ne!(compressed.first(), Some(&b'{'));
        let fb = decode_frame(&compressed, MAX).unwrap();
        assert_eq!(fb.payload.index, 2);
        assert_eq!(&*fb.raw_json, json.as_str());
        assert_eq!(fb.wire_len, compressed.len());
    }

    #[test]
    fn brotli_roundtrip_matches_plain_decode() {
        let json = flashblock_json(5, 0);
        let plain = decode_frame(json.as_bytes(), MAX).unwrap();
        let compressed = decode_frame(&encode_brotli(json.as_bytes()), MAX).unwrap();
        assert_eq!(plain.payload, compressed.payload);
        assert_eq!(plain.raw_json, compressed.raw_json);
    }

    #[test]
    fn truncated_brotli() {
        let json = flashblock_json(100, 2);
        let compressed = encode_brotli(json.as_bytes());
        for cut in [1, compressed.len() / 2, compressed.len() - 1] {
            let err = decode_frame(&compressed[..cut], MAX).unwrap_err();
            assert!(
                matches!(err, FrameError::Brotli(_) | FrameError::Json(_)),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn garbage() {
        for bytes in [
            &b""[..],
            b"   \n",
            b"\x00\x01\x02\x03garbage",
            b"hello world",
            b"\xff\xfe\xfd",
            b"[1,2,3]",
            b"{",
            b"{\"payload_id\":",
            b"{}",
            b"{\"index\":0}",
        ] {
            let err = decode_frame(bytes, MAX).unwrap_err();
            assert!(!err.to_string().is_empty());
            assert!(["brotli", "json", "invalid", "too_large"].contains(&err.kind()));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let valid = encode_brotli(flashblock_json(1, 0).as_bytes());
        for i in 0..2_000 {
            let len = rng.random_range(0..256);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 2 == 0 && !valid.is_empty() {
                // Flip bytes of a valid stream, which reaches deeper into the decoder.
                bytes = valid.clone();
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
            let _ = decode_frame(&bytes, 1 << 20);
        }
    }

    #[test]
    fn invalid_utf8_in_json() {
        let mut bytes = br#"{"payload_id":"#.to_vec();
        bytes.extend_from_slice(b"\"\xff\xfe\"}");
        assert_eq!(decode_frame(&bytes, MAX).unwrap_err().kind(), "json");
    }

    #[test]
    fn oversized_bomb_is_capped() {
        // 64 MiB of spaces compresses to a few KiB.
        let bomb = encode_brotli(&vec![b' '; 64 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024, "bomb is {} bytes", bomb.len());
        let err = decode_frame(&bomb, 1024 * 1024).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { limit: 1024 * 1024 });
        assert_eq!(err.kind(), "too_large");
    }

    #[test]
    fn exactly_at_cap_is_accepted() {
        let json = flashblock_json(1, 0);
        let compressed = encode_brotli(json.as_bytes());
        assert!(decode_frame(&compressed, json.len()).is_ok());
        assert_eq!(decode_frame(&compressed, json.len() - 1).unwrap_err().kind(), "too_large");
        assert!(decode_frame(json.as_bytes(), json.len()).is_ok());
        assert_eq!(decode_frame(json.as_bytes(), json.len() - 1).unwrap_err().kind(), "too_large");
    }

    #[test]
    fn externally_tagged_receipts() {
        let mut v = flashblock(100, 1);
        v["metadata"]["receipts"] = json!({
            hash(1): { "Eip1559": { "status": "0x1", "cumulativeGasUsed": "0x5208", "logs": [] } },
            hash(2): { "Deposit": {
                "status": "0x1", "cumulativeGasUsed": "0xa410", "logs": [],
                "depositNonce": "0x7", "depositReceiptVersion": "0x1"
            } }
        });
        let fb = decode_value(&v).unwrap();
        let receipts = &fb.payload.metadata.receipts;
        assert_eq!(receipts.len(), 2);
        match &receipts[&b256!("0101010101010101010101010101010101010101010101010101010101010101")]
        {
            OpReceipt::Eip1559(r) => assert_eq!(r.cumulative_gas_used, 21_000),
            other => panic!("unexpected receipt {other:?}"),
        }
        match &receipts[&b256!("0202020202020202020202020202020202020202020202020202020202020202")]
        {
            OpReceipt::Deposit(r) => assert_eq!(r.deposit_nonce, Some(7)),
            other => panic!("unexpected receipt {other:?}"),
        }
    }

    #[test]
    fn internally_tagged_receipts() {
        let mut v = flashblock(100, 1);
        v["metadata"]["receipts"] = json!({
            hash(1): { "type": "0x2", "status": "0x1", "cumulativeGasUsed": "0x5208", "logs": [] },
            hash(2): { "type": "0x7e", "status": "0x1", "cumulativeGasUsed": "0xa410", "logs": [],
                       "depositNonce": "0x7", "depositReceiptVersion": "0x1" }
        });
        v["metadata"]["new_account_balances"] =
            json!({ "0x4200000000000000000000000000000000000011": "0x10" });
        let fb = decode_value(&v).unwrap();
        let receipts = &fb.payload.metadata.receipts;
        assert!(matches!(
            receipts[&b256!("0101010101010101010101010101010101010101010101010101010101010101")],
            OpReceipt::Eip1559(_)
        ));
        assert!(matches!(
            receipts[&b256!("0202020202020202020202020202020202020202020202020202020202020202")],
            OpReceipt::Deposit(_)
        ));
        assert_eq!(
            fb.payload.metadata.new_account_balances
                [&address!("4200000000000000000000000000000000000011")],
            U256::from(16)
        );
    }

    #[test]
    fn malformed_receipt_is_invalid() {
        let mut v = flashblock(100, 1);
        v["metadata"]["receipts"] = json!({ hash(1): { "Bogus": {} } });
        assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid");
    }

    #[test]
    fn missing_metadata_defaults_from_base() {
        let mut v = flashblock(4242, 0);
        v.as_object_mut().unwrap().remove("metadata");
        let fb = decode_value(&v).unwrap();
        assert_eq!(fb.payload.metadata.block_number, 4242);
        assert!(fb.payload.metadata.receipts.is_empty());
        assert!(fb.payload.metadata.new_account_balances.is_empty());

        v["metadata"] = Value::Null;
        assert_eq!(decode_value(&v).unwrap().payload.metadata.block_number, 4242);
    }

    #[test]
    fn missing_metadata_without_base_is_invalid() {
        let mut v = flashblock(4242, 3);
        v.as_object_mut().unwrap().remove("metadata");
        assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid");

        v["metadata"] = json!({ "receipts": {} });
        assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid");
    }

    #[test]
    fn metadata_reduced_to_block_number() {
        let mut v = flashblock(77, 5);
        v["metadata"] = json!({ "block_number": 77 });
        let fb = decode_value(&v).unwrap();
        assert_eq!(fb.payload.metadata.block_number, 77);
        assert!(fb.payload.metadata.receipts.is_empty());

        // Some producers send the number as a hex quantity.
        v["metadata"] = json!({ "block_number": "0x4d" });
        assert_eq!(decode_value(&v).unwrap().payload.metadata.block_number, 77);

        for bad in [json!(-1), json!(1.5), json!("0x"), json!("zz"), json!([1]), json!(true)] {
            v["metadata"] = json!({ "block_number": bad });
            assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid", "{bad}");
        }
    }

    #[test]
    fn metadata_block_number_kept_when_base_disagrees() {
        // The sequencer, not the decoder, judges the mismatch.
        let mut v = flashblock(10, 0);
        v["metadata"]["block_number"] = json!(11);
        let fb = decode_value(&v).unwrap();
        assert_eq!(fb.payload.metadata.block_number, 11);
        assert_eq!(fb.payload.base.unwrap().block_number, 10);
    }

    #[test]
    fn metadata_not_an_object() {
        let mut v = flashblock(1, 1);
        v["metadata"] = json!([1, 2]);
        assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid");
    }

    #[test]
    fn prev_flashblock_id() {
        let mut v = flashblock(100, 4);
        v["metadata"]["prev_flashblock_id"] = json!("100-3");
        assert_eq!(decode_value(&v).unwrap().prev_flashblock_id, Some((100, 3)));

        // The no-predecessor sentinel.
        v["metadata"]["prev_flashblock_id"] = json!("0-0");
        assert_eq!(decode_value(&v).unwrap().prev_flashblock_id, None);

        // Malformed ids are ignored, not fatal.
        for bad in [
            json!("100"),
            json!("a-b"),
            json!("100-"),
            json!("-1-2"),
            json!("+1-2"),
            json!(5),
            json!(null),
        ] {
            v["metadata"]["prev_flashblock_id"] = bad.clone();
            let fb = decode_value(&v).unwrap();
            assert_eq!(fb.prev_flashblock_id, None, "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = flashblock(1, 0);
        v["metadata"]["access_list"] = json!({ "anything": [1, 2, 3] });
        v["extra"] = json!("x");
        assert!(decode_value(&v).is_ok());
    }

    #[test]
    fn missing_required_fields_are_invalid() {
        for key in ["payload_id", "index", "diff"] {
            let mut v = flashblock(1, 0);
            v.as_object_mut().unwrap().remove(key);
            assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid", "{key}");
        }
    }

    #[test]
    fn error_kinds_are_stable() {
        assert_eq!(FrameError::TooLarge { limit: 1 }.kind(), "too_large");
        assert_eq!(FrameError::Brotli(String::new()).kind(), "brotli");
        assert_eq!(FrameError::Json(String::new()).kind(), "json");
        assert_eq!(FrameError::Invalid(String::new()).kind(), "invalid");
    }

    #[test]
    fn quantity_parsing() {
        assert_eq!(parse_quantity("0x10"), Some(16));
        assert_eq!(parse_quantity("16"), Some(16));
        assert_eq!(parse_quantity("0x"), None);
        assert_eq!(parse_quantity("0x1g"), None);
        assert_eq!(parse_quantity("0xffffffffffffffffff"), None);
        assert_eq!(parse_quantity(""), None);
    }
}
