//! The shape of a flashblock frame, as a relay checks it without executing anything: JSON or
//! brotli (a first non-whitespace byte of `{` is JSON), a bounded decompression, and the fields
//! that place the frame in the stream (`payload_id`, `index`, `metadata.block_number` or
//! `base.block_number`; index 0 carries `base`). Filter inputs come from the metadata: the
//! addresses of `new_account_balances` and the emitters and topics of the receipts' logs (flat
//! receipts, or tagged by transaction type as Base's are).
//!
//! The JSON is kept byte for byte; nothing is re-encoded.

use crate::frame::SourceFrame;
use alloy_primitives::{Address, B256};
use bytes::Bytes;
use serde::{de::IgnoredAny, Deserialize};
use std::{collections::HashMap, io::Read, sync::Arc};

/// Why a frame is not a flashblock a relay may pass on.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// Larger than the cap, on the wire or once decompressed.
    #[error("frame exceeds {limit} bytes once decompressed")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// Not a valid brotli stream.
    #[error("brotli: {0}")]
    Brotli(#[source] std::io::Error),
    /// Empty, or brotli that decompresses to nothing.
    #[error("empty frame")]
    Empty,
    /// Not UTF-8.
    #[error("invalid utf-8 at byte {0}")]
    Utf8(usize),
    /// Not JSON, or JSON without the fields of a flashblock.
    #[error("not a flashblock: {0}")]
    Json(#[source] serde_json::Error),
    /// Index 0 without `base`.
    #[error("index 0 without base")]
    MissingBase,
    /// Neither `metadata.block_number` nor `base.block_number`.
    #[error("no block number (neither metadata.block_number nor base.block_number)")]
    NoBlockNumber,
}

impl ShapeError {
    /// Stable, low-cardinality label for metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Brotli(_) => "brotli",
            Self::Empty => "empty",
            Self::Utf8(_) => "utf8",
            Self::Json(_) => "json",
            Self::MissingBase => "missing_base",
            Self::NoBlockNumber => "no_block_number",
        }
    }
}

/// A number as JSON writes it, or a hex quantity.
#[derive(Deserialize)]
#[serde(untagged)]
enum Quantity {
    Number(u64),
    Hex(String),
}

impl Quantity {
    fn value(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Hex(s) => {
                let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
                u64::from_str_radix(digits, 16).ok()
            }
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    payload_id: String,
    index: u64,
    #[serde(default)]
    base: Option<Base>,
    // Required (a flashblock always has a diff), never looked into.
    #[allow(dead_code)]
    diff: IgnoredAny,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Base {
    block_number: Quantity,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    block_number: Option<Quantity>,
    #[serde(default)]
    receipts: Option<HashMap<String, Receipt>>,
    #[serde(default)]
    new_account_balances: Option<HashMap<Address, IgnoredAny>>,
}

/// A receipt: flat (`{"logs": [...]}`), tagged by its type (`{"Deposit": {"logs": [...]}}`),
/// or something else (no filter inputs).
#[derive(Deserialize)]
#[serde(untagged)]
enum Receipt {
    Flat { logs: Vec<Log> },
    Tagged(HashMap<String, Logs>),
    Other(#[allow(dead_code)] IgnoredAny),
}

#[derive(Deserialize)]
struct Logs {
    #[serde(default)]
    logs: Vec<Log>,
}

#[derive(Deserialize)]
struct Log {
    address: Address,
    #[serde(default)]
    topics: Vec<B256>,
}

/// A frame that passed: the fan-out's source frame and the payload id (for the order check).
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) frame: SourceFrame,
    pub(crate) payload_id: String,
}

/// Checks one websocket message and turns it into a source frame: its JSON as received (after
/// decompression, at most `max_decompressed` bytes), its position and its filter inputs; a
/// brotli message keeps its compressed bytes for brotli subscribers.
pub fn parse_frame(bytes: &[u8], max_decompressed: usize) -> Result<SourceFrame, ShapeError> {
    parse(bytes, max_decompressed).map(|p| p.frame)
}

pub(crate) fn parse(bytes: &[u8], max_decompressed: usize) -> Result<Parsed, ShapeError> {
    let first = bytes.iter().copied().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let (json, brotli): (Arc<str>, Option<Bytes>) = match first {
        None => return Err(ShapeError::Empty),
        Some(b'{') => {
            if bytes.len() > max_decompressed {
                return Err(ShapeError::TooLarge { limit: max_decompressed });
            }
            let text = std::str::from_utf8(bytes).map_err(|e| ShapeError::Utf8(e.valid_up_to()))?;
            (text.into(), None)
        }
        Some(_) => {
            let out = decompress(bytes, max_decompressed)?;
            let text = String::from_utf8(out)
                .map_err(|e| ShapeError::Utf8(e.utf8_error().valid_up_to()))?;
            (text.into(), Some(Bytes::copy_from_slice(bytes)))
        }
    };
    let wire: Wire = serde_json::from_str(&json).map_err(ShapeError::Json)?;
    let from_base = wire.base.as_ref().and_then(|b| b.block_number.value());
    if wire.index == 0 && wire.base.is_none() {
        return Err(ShapeError::MissingBase);
    }
    let from_metadata =
        wire.metadata.as_ref().and_then(|m| m.block_number.as_ref()).and_then(Quantity::value);
    let block_number = from_base.or(from_metadata).ok_or(ShapeError::NoBlockNumber)?;
    let mut frame = SourceFrame::new(json.clone(), block_number, wire.index);
    frame.brotli = brotli;
    if let Some(metadata) = wire.metadata {
        frame.addresses.extend(metadata.new_account_balances.unwrap_or_default().into_keys());
        for receipt in metadata.receipts.unwrap_or_default().into_values() {
            let logs: Vec<Log> = match receipt {
                Receipt::Flat { logs } => logs,
                Receipt::Tagged(by_type) => by_type.into_values().flat_map(|l| l.logs).collect(),
                Receipt::Other(_) => Vec::new(),
            };
            for log in logs {
                frame.addresses.insert(log.address);
                frame.topics.extend(log.topics);
            }
        }
    }
    Ok(Parsed { frame, payload_id: wire.payload_id })
}

/// Brotli-decompresses, reading in chunks so a bomb allocates at most the cap plus a chunk.
fn decompress(bytes: &[u8], max: usize) -> Result<Vec<u8>, ShapeError> {
    let mut reader = brotli::Decompressor::new(bytes, 4096);
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max).min(1 << 20));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if out.len().saturating_add(n) > max {
                    return Err(ShapeError::TooLarge { limit: max });
                }
                out.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ShapeError::Brotli(e)),
        }
    }
    if out.is_empty() {
        return Err(ShapeError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frame::encode_brotli;

    /// A flashblock as builders send it (index 0 with a base).
    pub(crate) fn flashblock(block: u64, index: u64) -> String {
        let base = if index == 0 {
            format!(",\"base\":{{\"block_number\":\"{block:#x}\",\"parent_hash\":\"0x00\"}}")
        } else {
            String::new()
        };
        format!(
            "{{\"payload_id\":\"0x0000000000000001\",\"index\":{index}{base},\"diff\":{{\"transactions\":[]}},\"metadata\":{{\"block_number\":{block},\"receipts\":{{}},\"new_account_balances\":{{}}}}}}"
        )
    }

    #[test]
    fn json_and_brotli_frames_keep_their_bytes_and_position() {
        let json = flashblock(12, 0);
        let text = parse(json.as_bytes(), 1 << 20).unwrap();
        assert_eq!(text.frame.position(), (12, 0));
        assert_eq!(&*text.frame.json, json.as_str(), "byte for byte");
        assert!(text.frame.brotli.is_none());
        assert_eq!(text.payload_id, "0x0000000000000001");
        let compressed = encode_brotli(flashblock(12, 3).as_bytes());
        let binary = parse(&compressed, 1 << 20).unwrap();
        assert_eq!(binary.frame.position(), (12, 3));
        assert_eq!(&*binary.frame.json, flashblock(12, 3).as_str());
        assert_eq!(binary.frame.brotli.as_deref(), Some(&compressed[..]), "kept as received");
    }

    #[test]
    fn filter_inputs_come_from_balances_and_receipt_logs_in_either_encoding() {
        let a = Address::repeat_byte(0x11);
        let b = Address::repeat_byte(0x22);
        let c = Address::repeat_byte(0x33);
        let t = B256::repeat_byte(0x44);
        let json = format!(
            "{{\"payload_id\":\"0x01\",\"index\":1,\"diff\":{{}},\"metadata\":{{\"block_number\":\"0x5\",\"new_account_balances\":{{\"{a}\":\"0x1\"}},\"receipts\":{{\"0xaa\":{{\"type\":\"0x2\",\"logs\":[{{\"address\":\"{b}\",\"topics\":[\"{t}\"],\"data\":\"0x\"}}]}},\"0xbb\":{{\"Deposit\":{{\"status\":\"0x1\",\"logs\":[{{\"address\":\"{c}\",\"topics\":[]}}]}}}},\"0xcc\":{{\"status\":\"0x1\"}}}}}}}}"
        );
        let parsed = parse(json.as_bytes(), 1 << 20).unwrap();
        assert_eq!(parsed.frame.position(), (5, 1), "hex block number");
        assert_eq!(parsed.frame.addresses, [a, b, c].into_iter().collect());
        assert_eq!(parsed.frame.topics, [t].into_iter().collect());
    }

    #[test]
    fn what_is_not_a_flashblock_is_named() {
        let cap = 1 << 20;
        assert!(matches!(parse(b"", cap), Err(ShapeError::Empty)));
        assert!(matches!(parse(b"{not json", cap), Err(ShapeError::Json(_))));
        assert!(matches!(
            parse(b"{\"payload_id\":\"0x1\",\"index\":2}", cap),
            Err(ShapeError::Json(_))
        ));
        let no_base =
            "{\"payload_id\":\"0x1\",\"index\":0,\"diff\":{},\"metadata\":{\"block_number\":1}}";
        assert!(matches!(parse(no_base.as_bytes(), cap), Err(ShapeError::MissingBase)));
        let no_number = "{\"payload_id\":\"0x1\",\"index\":1,\"diff\":{}}";
        assert!(matches!(parse(no_number.as_bytes(), cap), Err(ShapeError::NoBlockNumber)));
        assert!(matches!(parse(&[0xff, 0x00, 0x13], cap), Err(ShapeError::Brotli(_))));
        let bomb = encode_brotli(&vec![b' '; 4 * 1024 * 1024]);
        assert!(matches!(parse(&bomb, 1 << 20), Err(ShapeError::TooLarge { .. })));
        let big = flashblock(1, 1);
        assert!(matches!(parse(big.as_bytes(), 10), Err(ShapeError::TooLarge { limit: 10 })));
        assert_eq!(ShapeError::MissingBase.label(), "missing_base");
    }
}
