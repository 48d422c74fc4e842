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
//!
//! Subblocks-shaped streams (the OP Stack's standard successor of flashblocks) are the same
//! JSON with `diff.state_root`, `diff.block_hash` and `diff.withdrawals_root` always zero and
//! `diff.withdrawals` empty; the node never uses those four fields (see the README, "What the
//! node serves"). From Lagoon a frame may carry `diff.post_exec_tx`, a type `0x7D`
//! post-execution transaction that [`OpFlashblockPayload`] has no field for (serde drops it):
//! the decoder keeps its raw bytes in [`DecodedFlashblock::post_exec_tx`], and the frame's
//! JSON stays byte for byte in [`DecodedFlashblock::raw_json`] for the fan-out.

use std::{io::Read, sync::Arc};

use alloy_primitives::Bytes;
use op_alloy_rpc_types_engine::flashblock::OpFlashblockPayload;
use serde_json::{Map, Value};

pub use flashnode_wsclient::DEFAULT_MAX_DECOMPRESSED_BYTES;

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
    /// `diff.post_exec_tx` (Lagoon): the raw EIP-2718 bytes of the block's post-execution
    /// transaction so far, when the frame carries one (`null` or absent is `None`).
    pub post_exec_tx: Option<Bytes>,
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

    // The typed path first; any frame it does not take goes through the tolerant one, which
    // also words the error. A Lagoon frame (`diff.post_exec_tx`, which the typed path does
    // not read) always takes the tolerant path.
    let typed = if text.contains("\"post_exec_tx\"") { None } else { fast::parse(&text) };
    let (payload, prev_flashblock_id, post_exec_tx) = match typed {
        Some((payload, prev)) => (payload, prev, None),
        None => {
            let value: Value =
                serde_json::from_str(&text).map_err(|e| FrameError::Json(e.to_string()))?;
            let post_exec_tx = post_exec_tx(&value)?;
            let (payload, prev) = parse_payload(value)?;
            (payload, prev, post_exec_tx)
        }
    };

    Ok(DecodedFlashblock {
        payload,
        prev_flashblock_id,
        post_exec_tx,
        raw_json: text,
        wire_len: bytes.len(),
    })
}

/// `diff.post_exec_tx` as bytes: absent or `null` is `None`, a hex string its bytes; anything
/// else makes the frame invalid.
fn post_exec_tx(value: &Value) -> Result<Option<Bytes>, FrameError> {
    match value.get("diff").and_then(|d| d.get("post_exec_tx")) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::String(_)) => serde_json::from_value::<Bytes>(v.clone())
            .map(Some)
            .map_err(|e| FrameError::Invalid(format!("diff.post_exec_tx is not hex bytes: {e}"))),
        Some(other) => {
            Err(FrameError::Invalid(format!("diff.post_exec_tx has the wrong type: {other}")))
        }
    }
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

/// The typed fast path of [`decode_frame`]: the payload straight from the text into its types,
/// without a `serde_json::Value` tree and without the buffering that op-alloy's untagged
/// receipt enum and `flatten`ed logs cost per receipt and per log (most of the decoding time
/// of a large flashblock). It takes the shapes real streams send (receipts internally tagged
/// with `type` first, as op-alloy serializes them, or externally tagged like Base's) and
/// decodes them to exactly what [`parse_payload`] makes of them; anything else (duplicate
/// keys, a `type` that is not the receipt's first key, an error of any kind) returns `None`
/// and is left to the tolerant path.
mod fast {
    use super::{parse_flashblock_id, parse_quantity};
    use alloy_consensus::{Eip658Value, Receipt};
    use alloy_primitives::{Address, Bytes, Log, LogData, B256, U256};
    use alloy_rpc_types_engine::PayloadId;
    use op_alloy_consensus::{OpDepositReceipt, OpReceipt};
    use op_alloy_rpc_types_engine::flashblock::{
        OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
        OpFlashblockPayloadMetadata,
    };
    use serde::{
        de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor},
        Deserialize, Deserializer,
    };
    use serde_json::Value;
    use std::{collections::BTreeMap, fmt, marker::PhantomData};

    /// The payload and its `prev_flashblock_id`, or `None` for the tolerant path.
    pub(super) fn parse(text: &str) -> Option<(OpFlashblockPayload, Option<(u64, u64)>)> {
        let wire: Wire = serde_json::from_str(text).ok()?;
        let meta = wire.metadata.unwrap_or_default();
        let block_number = match meta.block_number {
            Some(BlockNumber(n)) => n,
            None => wire.base.as_ref()?.block_number,
        };
        let prev_flashblock_id = match meta.prev_flashblock_id {
            Some(Value::String(s)) => parse_flashblock_id(&s).filter(|id| *id != (0, 0)),
            _ => None,
        };
        let payload = OpFlashblockPayload {
            payload_id: wire.payload_id,
            index: wire.index,
            base: wire.base,
            diff: wire.diff,
            metadata: OpFlashblockPayloadMetadata {
                block_number,
                new_account_balances: meta.new_account_balances.map(|m| m.0).unwrap_or_default(),
                receipts: meta
                    .receipts
                    .map(|m| m.0.into_iter().map(|(h, r)| (h, r.0)).collect())
                    .unwrap_or_default(),
            },
        };
        Some((payload, prev_flashblock_id))
    }

    #[derive(Deserialize)]
    struct Wire {
        payload_id: PayloadId,
        index: u64,
        base: Option<OpFlashblockPayloadBase>,
        diff: OpFlashblockPayloadDelta,
        metadata: Option<Metadata>,
    }

    #[derive(Deserialize, Default)]
    struct Metadata {
        block_number: Option<BlockNumber>,
        new_account_balances: Option<Unique<Address, U256>>,
        receipts: Option<Unique<B256, WireReceipt>>,
        prev_flashblock_id: Option<Value>,
    }

    /// `metadata.block_number`: a JSON number or a quantity string.
    struct BlockNumber(u64);

    impl<'de> Deserialize<'de> for BlockNumber {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = BlockNumber;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a block number")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<BlockNumber, E> {
                    Ok(BlockNumber(v))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<BlockNumber, E> {
                    parse_quantity(s).map(BlockNumber).ok_or_else(|| E::custom("not a quantity"))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// A map that refuses duplicate keys (the tolerant path resolves those its own way).
    struct Unique<K, V>(BTreeMap<K, V>);

    impl<'de, K: DeserializeOwned + Ord, V: DeserializeOwned> Deserialize<'de> for Unique<K, V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct M<K, V>(PhantomData<(K, V)>);
            impl<'de, K: DeserializeOwned + Ord, V: DeserializeOwned> Visitor<'de> for M<K, V> {
                type Value = Unique<K, V>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = BTreeMap::new();
                    while let Some(k) = map.next_key::<K>()? {
                        if out.insert(k, map.next_value::<V>()?).is_some() {
                            return Err(de::Error::custom("duplicate key"));
                        }
                    }
                    Ok(Unique(out))
                }
            }
            d.deserialize_map(M(PhantomData))
        }
    }

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct QBool(#[serde(with = "alloy_serde::quantity")] bool);

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct QU64(#[serde(with = "alloy_serde::quantity")] u64);

    #[derive(Deserialize)]
    #[serde(transparent)]
    struct QOptU64(#[serde(with = "alloy_serde::quantity::opt")] Option<u64>);

    /// The keys a receipt object may start with or hold.
    #[derive(Deserialize)]
    #[serde(field_identifier)]
    enum Key {
        Legacy,
        Eip2930,
        Eip1559,
        Eip7702,
        Deposit,
        #[serde(rename = "type")]
        Type,
        #[serde(rename = "status")]
        Status,
        #[serde(rename = "root")]
        Root,
        #[serde(rename = "cumulativeGasUsed")]
        CumulativeGasUsed,
        #[serde(rename = "logs")]
        Logs,
        #[serde(rename = "depositNonce")]
        DepositNonce,
        #[serde(rename = "depositReceiptVersion")]
        DepositReceiptVersion,
        #[serde(other)]
        Other,
    }

    #[derive(Clone, Copy)]
    enum Kind {
        Legacy,
        Eip2930,
        Eip1559,
        Eip7702,
        PostExec,
        Deposit,
    }

    /// A metadata receipt, either `{"<Variant>": {fields}}` or `{"type": "0x..", fields}`.
    struct WireReceipt(OpReceipt);

    impl<'de> Deserialize<'de> for WireReceipt {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = WireReceipt;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a receipt")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireReceipt, A::Error> {
                    let external = match map.next_key::<Key>()? {
                        Some(Key::Legacy) => Kind::Legacy,
                        Some(Key::Eip2930) => Kind::Eip2930,
                        Some(Key::Eip1559) => Kind::Eip1559,
                        Some(Key::Eip7702) => Kind::Eip7702,
                        Some(Key::Deposit) => Kind::Deposit,
                        Some(Key::Type) => {
                            let kind = match map.next_value::<&str>()? {
                                "0x0" | "0x00" => Kind::Legacy,
                                "0x1" | "0x01" => Kind::Eip2930,
                                "0x2" | "0x02" => Kind::Eip1559,
                                "0x4" | "0x04" => Kind::Eip7702,
                                "0x7d" | "0x7D" => Kind::PostExec,
                                "0x7e" | "0x7E" => Kind::Deposit,
                                _ => return Err(de::Error::custom("unknown receipt type")),
                            };
                            let fields = Fields::read(&mut map)?;
                            return fields.into_receipt(kind).map(WireReceipt);
                        }
                        _ => return Err(de::Error::custom("unexpected receipt shape")),
                    };
                    let fields = map.next_value::<Fields>()?;
                    if map.next_key::<IgnoredAny>()?.is_some() {
                        return Err(de::Error::custom("more than one key"));
                    }
                    fields.into_receipt(external).map(WireReceipt)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// The fields of a receipt body (unknown keys are ignored, as the typed receipt does).
    #[derive(Default)]
    struct Fields {
        status: Option<bool>,
        root: Option<B256>,
        cumulative_gas_used: Option<u64>,
        logs: Option<Vec<WireLog>>,
        deposit_nonce: Option<Option<u64>>,
        deposit_receipt_version: Option<Option<u64>>,
    }

    fn once<T, E: de::Error>(slot: &mut Option<T>, v: T) -> Result<(), E> {
        if slot.replace(v).is_some() {
            return Err(E::custom("duplicate field"));
        }
        Ok(())
    }

    impl Fields {
        fn read<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
            let mut f = Self::default();
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Status => once(&mut f.status, map.next_value::<QBool>()?.0)?,
                    Key::Root => once(&mut f.root, map.next_value::<B256>()?)?,
                    Key::CumulativeGasUsed => {
                        once(&mut f.cumulative_gas_used, map.next_value::<QU64>()?.0)?
                    }
                    Key::Logs => once(&mut f.logs, map.next_value::<Vec<WireLog>>()?)?,
                    Key::DepositNonce => {
                        once(&mut f.deposit_nonce, map.next_value::<QOptU64>()?.0)?
                    }
                    Key::DepositReceiptVersion => {
                        once(&mut f.deposit_receipt_version, map.next_value::<QOptU64>()?.0)?
                    }
                    // A second tag inside a body: leave such a receipt to the tolerant path.
                    Key::Type => return Err(de::Error::custom("tag inside the body")),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(f)
        }

        fn into_receipt<E: de::Error>(self, kind: Kind) -> Result<OpReceipt, E> {
            let status = match (self.status, self.root) {
                (Some(s), _) => Eip658Value::Eip658(s),
                (None, Some(root)) => Eip658Value::PostState(root),
                (None, None) => return Err(E::custom("no status")),
            };
            let inner = Receipt {
                status,
                cumulative_gas_used: self
                    .cumulative_gas_used
                    .ok_or_else(|| E::custom("no cumulativeGasUsed"))?,
                logs: self
                    .logs
                    .ok_or_else(|| E::custom("no logs"))?
                    .into_iter()
                    .map(|l| l.0)
                    .collect(),
            };
            Ok(match kind {
                Kind::Legacy => OpReceipt::Legacy(inner),
                Kind::Eip2930 => OpReceipt::Eip2930(inner),
                Kind::Eip1559 => OpReceipt::Eip1559(inner),
                Kind::Eip7702 => OpReceipt::Eip7702(inner),
                Kind::PostExec => OpReceipt::PostExec(inner),
                Kind::Deposit => OpReceipt::Deposit(OpDepositReceipt {
                    inner,
                    deposit_nonce: self.deposit_nonce.flatten(),
                    deposit_receipt_version: self.deposit_receipt_version.flatten(),
                }),
            })
        }
    }

    impl<'de> Deserialize<'de> for Fields {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Fields;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("receipt fields")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                    Fields::read(&mut map)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// A log: `address`, `topics`, `data` (other keys ignored, as the flattened log does).
    struct WireLog(Log);

    #[derive(Deserialize)]
    #[serde(field_identifier)]
    enum LogKey {
        #[serde(rename = "address")]
        Address,
        #[serde(rename = "topics")]
        Topics,
        #[serde(rename = "data")]
        Data,
        #[serde(other)]
        Other,
    }

    impl<'de> Deserialize<'de> for WireLog {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = WireLog;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a log")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireLog, A::Error> {
                    let (mut address, mut topics, mut data) = (None, None, None);
                    while let Some(key) = map.next_key::<LogKey>()? {
                        match key {
                            LogKey::Address => once(&mut address, map.next_value::<Address>()?)?,
                            LogKey::Topics => once(&mut topics, map.next_value::<Vec<B256>>()?)?,
                            LogKey::Data => once(&mut data, map.next_value::<Bytes>()?)?,
                            LogKey::Other => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    let missing = || de::Error::custom("incomplete log");
                    Ok(WireLog(Log {
                        address: address.ok_or_else(missing)?,
                        data: LogData::new_unchecked(
                            topics.ok_or_else(missing)?,
                            data.ok_or_else(missing)?,
                        ),
                    }))
                }
            }
            d.deserialize_map(V)
        }
    }
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

    /// A full flashblock of the legacy shape: `base` on index 0, complete metadata, and the
    /// builder's state root, block hash and withdrawals root of the block so far.
    pub(crate) fn flashblock(block: u64, index: u64) -> Value {
        let mut v = json!({
            "payload_id": PAYLOAD_ID,
            "index": index,
            "diff": {
                "state_root": hash(0x33),
                "receipts_root": hash(0x11),
                "logs_bloom": format!("0x{}", "00".repeat(256)),
                "gas_used": "0x5208",
                "block_hash": hash(0x22),
                "transactions": [],
                "withdrawals": [],
                "withdrawals_root": hash(0x44)
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

    /// The same flashblock in the Subblocks shape (OP Stack `specs/protocol/subblocks.md`):
    /// `state_root`, `block_hash` and `withdrawals_root` zero, `withdrawals` empty.
    pub(crate) fn subblock(block: u64, index: u64) -> Value {
        let mut v = flashblock(block, index);
        for key in ["state_root", "block_hash", "withdrawals_root"] {
            v["diff"][key] = json!(ZERO32);
        }
        v["diff"]["withdrawals"] = json!([]);
        v
    }

    /// A Lagoon post-execution transaction: type `0x7D`, RLP `[version 1, block, []]`.
    pub(crate) fn post_exec_tx(block: u8) -> String {
        // 0xc3 = a 3-byte list: 0x01, the block number (< 0x80), 0xc0 (empty list).
        format!("0x7dc301{block:02x}c0")
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

    /// The typed path takes the shapes streams send, and whatever it takes it decodes exactly
    /// as the tolerant path does; what it leaves (odd shapes) the tolerant path still decodes.
    #[test]
    fn fast_path_takes_real_shapes_and_agrees_with_the_tolerant_path() {
        let log = json!({
            "address": "0x4200000000000000000000000000000000000011",
            "topics": [hash(3), hash(4)],
            "data": "0x0102",
            "logIndex": "0x0"
        });
        // Internally tagged receipts as op-alloy serializes them, `type` first (a `json!` map
        // would sort the keys, so this part is text, spliced in below).
        let mut internal = String::from("{");
        for (i, (h, receipt)) in [
            (hash(1), r#""type":"0x2","status":"0x1","cumulativeGasUsed":"0x5208","logs":[LOG]"#),
            (hash(2), r#""type":"0x7e","status":"0x1","cumulativeGasUsed":"0xa410","logs":[],"depositNonce":"0x7","depositReceiptVersion":"0x1""#),
            (hash(5), r#""type":"0x0","status":"0x0","cumulativeGasUsed":"0xa411","logs":[]"#),
            (hash(6), r#""type":"0x7E","status":"0x1","cumulativeGasUsed":"0xa412","logs":[],"depositNonce":null"#),
        ]
        .iter()
        .enumerate()
        {
            let sep = if i == 0 { "" } else { "," };
            internal.push_str(&format!("{sep}\"{h}\":{{{}}}", receipt.replace("LOG", &log.to_string())));
        }
        internal.push('}');
        // What the devnet sends is this shape.
        let devnet = serde_json::to_string(&OpReceipt::Eip1559(alloy_consensus::Receipt::<
            alloy_primitives::Log,
        >::default()))
        .unwrap();
        assert!(devnet.starts_with(r#"{"type":"0x2""#), "{devnet}");
        let external = json!({
            hash(1): { "Eip1559": { "status": "0x1", "cumulativeGasUsed": "0x5208", "logs": [log] } },
            hash(2): { "Deposit": { "status": "0x1", "cumulativeGasUsed": "0xa410", "logs": [],
                                    "depositNonce": "0x7", "depositReceiptVersion": "0x1" } },
            hash(5): { "Legacy": { "root": hash(9), "cumulativeGasUsed": "0x1", "logs": [] } }
        });
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = flashblock(100, 0);
            f(&mut v);
            v
        };
        let taken = [
            flashblock(100, 0),
            flashblock(100, 3),
            with(&|v| v["metadata"]["receipts"] = json!("INTERNAL")),
            with(&|v| v["metadata"]["receipts"] = external.clone()),
            with(&|v| {
                v["metadata"]["new_account_balances"] = json!({ hash(1)[..42].to_string(): "0x10" })
            }),
            with(&|v| drop(v.as_object_mut().unwrap().remove("metadata"))),
            with(&|v| v["metadata"] = Value::Null),
            with(&|v| v["metadata"] = json!({ "block_number": "0x4d" })),
            with(&|v| v["metadata"] = json!({ "block_number": 77, "receipts": null })),
            with(&|v| v["metadata"]["prev_flashblock_id"] = json!("100-3")),
            with(&|v| v["metadata"]["prev_flashblock_id"] = json!("0-0")),
            with(&|v| v["metadata"]["prev_flashblock_id"] = json!({ "odd": 1 })),
            with(&|v| v["extra"] = json!([1, 2])),
        ];
        for v in &taken {
            let text = v.to_string().replace(r#""INTERNAL""#, &internal);
            let tolerant = parse_payload(serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(fast::parse(&text), Some(tolerant), "{text}");
        }
        // Left to the tolerant path: the tag after the fields, a duplicate key, a status that
        // is not a quantity but a root alongside, invalid frames.
        let left = [
            with(&|v| {
                v["metadata"]["receipts"] = json!({ hash(1): {
                    "status": "0x1", "type": "0x2", "cumulativeGasUsed": "0x5208", "logs": [] } })
            }),
            with(&|v| {
                v["metadata"]["receipts"] = json!({ hash(1): {
                    "type": "0x2", "status": "0x2", "root": hash(7), "cumulativeGasUsed": "0x1", "logs": [] } })
            }),
            with(&|v| v["metadata"]["receipts"] = json!({ hash(1): { "Bogus": {} } })),
            with(&|v| v["metadata"] = json!([1, 2])),
            with(&|v| v["metadata"] = json!({ "block_number": true })),
        ];
        for v in &left {
            let text = v.to_string();
            assert_eq!(fast::parse(&text), None, "{text}");
            if let Ok(tolerant) = parse_payload(v.clone()) {
                assert_eq!(decode_frame(text.as_bytes(), MAX).unwrap().payload, tolerant.0);
            }
        }
        let dup = flashblock_json(100, 0).replacen("\"index\":0", "\"index\":0,\"index\":0", 1);
        assert!(dup.contains("\"index\":0,\"index\":0"));
        assert_eq!(fast::parse(&dup), None);
        assert_eq!(decode_frame(dup.as_bytes(), MAX).unwrap().payload.index, 0);
    }

    #[test]
    fn subblocks_shape_decodes_like_the_legacy_one() {
        let legacy = decode_value(&flashblock(100, 0)).unwrap();
        let sub = decode_value(&subblock(100, 0)).unwrap();
        assert_eq!(
            legacy.payload.diff.block_hash,
            b256!("2222222222222222222222222222222222222222222222222222222222222222")
        );
        assert!(sub.payload.diff.block_hash.is_zero());
        assert!(sub.payload.diff.state_root.is_zero());
        assert!(sub.payload.diff.withdrawals_root.is_zero());
        assert!(sub.payload.diff.withdrawals.is_empty());
        // Everything the node uses is the same in both shapes.
        assert_eq!(sub.payload.base, legacy.payload.base);
        assert_eq!(sub.payload.index, legacy.payload.index);
        assert_eq!(sub.payload.payload_id, legacy.payload.payload_id);
        assert_eq!(sub.payload.diff.transactions, legacy.payload.diff.transactions);
        assert_eq!(sub.payload.diff.gas_used, legacy.payload.diff.gas_used);
        assert_eq!(sub.payload.diff.receipts_root, legacy.payload.diff.receipts_root);
        assert_eq!(sub.payload.metadata, legacy.payload.metadata);
        assert_eq!(sub.post_exec_tx, None);
        let next = decode_value(&subblock(100, 1)).unwrap();
        assert_eq!((next.block_number(), next.index()), (100, 1));
    }

    #[test]
    fn post_exec_tx_is_kept_raw_and_the_json_untouched() {
        let mut v = subblock(100, 2);
        v["diff"]["post_exec_tx"] = json!(fixtures::post_exec_tx(100));
        let json = v.to_string();
        let fb = decode_frame(json.as_bytes(), MAX).unwrap();
        assert_eq!(
            fb.post_exec_tx.as_deref().map(|b| &b[..]),
            Some(&[0x7d, 0xc3, 0x01, 0x64, 0xc0][..])
        );
        // The typed payload has no field for it; the raw JSON still has it, byte for byte.
        assert_eq!(&*fb.raw_json, json.as_str());
        assert!(fb.raw_json.contains("\"post_exec_tx\":\"0x7dc30164c0\""));
        // Through brotli too.
        let fb = decode_frame(&encode_brotli(json.as_bytes()), MAX).unwrap();
        assert_eq!(fb.post_exec_tx.as_ref().map(|b| b.len()), Some(5));

        v["diff"]["post_exec_tx"] = Value::Null;
        assert_eq!(decode_value(&v).unwrap().post_exec_tx, None);
        for bad in [json!("zz"), json!(7), json!({"raw": "0x7d"})] {
            v["diff"]["post_exec_tx"] = bad.clone();
            assert_eq!(decode_value(&v).unwrap_err().kind(), "invalid", "{bad}");
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
