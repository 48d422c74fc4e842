//! Frames: what the fan-out is fed ([`SourceFrame`]) and what goes on the wire, built once per
//! flashblock and shared by every subscriber.

use alloy_primitives::{Address, B256};
use bytes::Bytes;
use std::{collections::HashSet, sync::Arc, time::Instant};
use tokio_tungstenite::tungstenite::protocol::frame::{
    coding::{CloseCode, Data, OpCode},
    CloseFrame, Frame as WsFrame,
};
use tracing::warn;

/// Brotli quality of Base's websocket proxy (subscribers that ask for brotli get its encoding).
pub const BROTLI_QUALITY: u32 = 5;

/// Brotli window (log2 of its size) of Base's websocket proxy.
pub const BROTLI_WINDOW: u32 = 22;

/// Brotli-compresses `json` as Base's websocket proxy does (quality 5, window 22): what a
/// subscriber of `?compress=brotli` (or of a fan-out with compression on) receives.
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

/// One flashblock to fan out, as its source sent it: the JSON text exactly as received (after
/// decompression), the position it was parsed at, and what it touches (for filters).
///
/// The fan-out never parses or re-encodes the JSON: a node feeds it the frames its overlay
/// accepted, a relay the frames it validated.
#[derive(Debug, Clone)]
pub struct SourceFrame {
    /// The flashblock's JSON, byte for byte as received.
    pub json: Arc<str>,
    /// The block number it builds.
    pub block_number: u64,
    /// Its index within the block.
    pub index: u64,
    /// Addresses it touches (transaction senders and recipients, log emitters), matched by
    /// `/filter?addresses=`.
    pub addresses: HashSet<Address>,
    /// Topics of its logs, matched by `/filter?topics=`.
    pub topics: HashSet<B256>,
    /// The brotli encoding of `json` as the source sent it, if it came compressed: brotli
    /// subscribers get these bytes instead of a re-encoding.
    pub brotli: Option<Bytes>,
}

impl SourceFrame {
    /// A frame with nothing to match filters on (every address or topic filter skips it).
    pub fn new(json: Arc<str>, block_number: u64, index: u64) -> Self {
        Self {
            json,
            block_number,
            index,
            addresses: HashSet::new(),
            topics: HashSet::new(),
            brotli: None,
        }
    }

    /// Its position in the stream: `(block_number, index)`.
    pub fn position(&self) -> (u64, u64) {
        (self.block_number, self.index)
    }
}

/// One flashblock ready to send: its complete websocket frame (header and payload), built once.
/// Server frames are unmasked, so the bytes are the same for every client and each delivery is
/// one socket write of shared bytes (no per-client framing or copy).
#[derive(Debug)]
pub(crate) struct Frame {
    source: SourceFrame,
    /// Its place in the fan-out's sequence (every frame published gets the next number), which
    /// the ring, the writers and resuming subscribers agree on.
    pub(crate) seq: u64,
    /// The Text frame's wire bytes.
    pub(crate) text: Bytes,
    /// The brotli Binary frame's wire bytes, built when the first client that wants it asks.
    brotli: std::sync::OnceLock<Bytes>,
    /// When the frame was built, right after its source handed it over.
    pub(crate) built: Instant,
}

impl Frame {
    /// The first frame of a sequence (tests; the ring numbers frames with [`Frame::numbered`]).
    #[cfg(test)]
    pub(crate) fn new(source: SourceFrame) -> Self {
        Self::numbered(source, 0)
    }

    /// Frame number `seq` of the fan-out's sequence.
    pub(crate) fn numbered(source: SourceFrame, seq: u64) -> Self {
        let text =
            wire_frame(OpCode::Data(Data::Text), Bytes::copy_from_slice(source.json.as_bytes()));
        let brotli = std::sync::OnceLock::new();
        if let Some(compressed) = &source.brotli {
            let _ = brotli.set(wire_frame(OpCode::Data(Data::Binary), compressed.clone()));
        }
        Self { source, seq, text, brotli, built: Instant::now() }
    }

    /// `(block_number, index)`.
    pub(crate) fn position(&self) -> (u64, u64) {
        self.source.position()
    }

    /// Bytes the frame holds (what the ring counts against its byte bound).
    pub(crate) fn size(&self) -> usize {
        self.text.len() + self.brotli.get().map_or(0, Bytes::len)
    }

    /// The brotli Binary frame, compressed on first use and shared afterwards.
    pub(crate) fn brotli(&self) -> Bytes {
        self.brotli
            .get_or_init(|| {
                wire_frame(
                    OpCode::Data(Data::Binary),
                    encode_brotli(self.source.json.as_bytes()).into(),
                )
            })
            .clone()
    }

    /// Addresses the flashblock touches.
    pub(crate) fn addresses(&self) -> &HashSet<Address> {
        &self.source.addresses
    }

    /// Topics of its logs.
    pub(crate) fn topics(&self) -> &HashSet<B256> {
        &self.source.topics
    }
}

/// A final, unmasked server frame as it goes on the wire (tungstenite's own framing).
fn wire_frame(opcode: OpCode, payload: Bytes) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 14);
    // Formatting into a Vec cannot fail: the only error source is the writer.
    if let Err(err) = WsFrame::message(payload, opcode, true).format(&mut out) {
        warn!(%err, "cannot format a fan-out frame");
    }
    out.into()
}

/// A control frame's wire bytes.
pub(crate) fn control_frame(frame: WsFrame) -> Bytes {
    let mut out = Vec::with_capacity(frame.len());
    if let Err(err) = frame.format(&mut out) {
        warn!(%err, "cannot format a control frame");
    }
    out.into()
}

/// An empty ping.
pub(crate) fn ping_frame() -> Bytes {
    control_frame(WsFrame::ping(Bytes::new()))
}

/// A Close frame with `code` and `reason` (at most 123 bytes of it are sent, as RFC 6455
/// allows in a control frame).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    control_frame(WsFrame::close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_string().into(),
    })))
}

/// The Close a subscriber gets when the fan-out shuts down: 1001 (going away), so a client can
/// tell a restart from a protocol error and reconnect.
pub(crate) fn going_away_frame() -> Bytes {
    control_frame(WsFrame::close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "the fan-out is shutting down".into(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    fn source(json: &str) -> SourceFrame {
        SourceFrame::new(json.into(), 1, 0)
    }

    fn parse(bytes: &[u8]) -> (FrameHeader, &[u8]) {
        let mut cursor = std::io::Cursor::new(bytes);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        let start = cursor.position() as usize;
        assert_eq!(bytes.len() - start, len as usize, "one frame, nothing after it");
        (header, &bytes[start..])
    }

    #[test]
    fn wire_frames_decode_as_one_final_unmasked_frame() {
        for len in [0usize, 125, 126, 65_535, 65_536, 200_000] {
            let json = "x".repeat(len);
            let frame = Frame::new(source(&json));
            let (header, payload) = parse(&frame.text);
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(payload, json.as_bytes());
        }
        let frame = Frame::new(source("{\"a\":1}"));
        let brotli = frame.brotli();
        let (header, payload) = parse(&brotli);
        assert_eq!(header.opcode, OpCode::Data(Data::Binary));
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &payload[..], &mut out).unwrap();
        assert_eq!(out, b"{\"a\":1}");
        // Built once: the second subscriber gets the same bytes.
        assert_eq!(frame.brotli().as_ptr(), brotli.as_ptr());
    }

    #[test]
    fn shutdown_closes_with_going_away() {
        let bytes = going_away_frame();
        let (header, payload) = parse(&bytes);
        assert_eq!(
            header.opcode,
            OpCode::Control(
                tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Close
            )
        );
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
        assert_eq!(&payload[2..], b"the fan-out is shutting down");
    }

    #[test]
    fn brotli_uses_the_proxy_settings_and_round_trips() {
        let json = "{\"index\":3,\"diff\":{}}".repeat(100);
        let compressed = encode_brotli(json.as_bytes());
        assert!(compressed.len() < json.len());
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &compressed[..], &mut out).unwrap();
        assert_eq!(out, json.as_bytes());
    }
}
