//! Requests whose `id` is present but not a JSON-RPC id jsonrpsee can answer to (an object,
//! an array, a float, a negative number, `true`): jsonrpsee reads such a request as a
//! notification and answers nothing (over HTTP the literal body `null`, over a websocket
//! silence, in a batch a missing entry). They get `-32600 invalid request` with `"id": null`,
//! as geth answers them:
//!
//! - a single HTTP request is answered by the port's request check (`checked` in `lib.rs`);
//! - a batch over HTTP: the check notes each such entry ([`InvalidIds`]) before jsonrpsee
//!   parses the batch, and the connection middleware answers the notification jsonrpsee makes
//!   of it with the error, in its place in the batch;
//! - over a websocket: [`Tapped`] reads a copy of the client's frames as they arrive (the
//!   connection's socket is wrapped before hyper and jsonrpsee get it), notes such requests,
//!   and the middleware answers them the same way. A real notification (no `id`) is never
//!   noted, so it is still not answered.

use crate::error::code;
use jsonrpsee::types::ErrorObjectOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::{
    borrow::Cow,
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error message.
pub(crate) const MESSAGE: &str =
    "invalid request: the id must be a string, an unsigned integer or null";
/// Requests noted and not yet answered, per connection (the oldest are forgotten).
const MAX_NOTED: usize = 256;
/// Websocket messages longer than this are not looked at (jsonrpsee gets them all the same).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The error object every such request gets.
pub(crate) fn error() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code::INVALID_REQUEST, MESSAGE, None::<()>)
}

/// The parts of a request object the check reads.
#[derive(Deserialize)]
struct Probe<'a> {
    // A JSON null reads as None: a null id is a valid one.
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

/// Whether `raw` (an `id` as sent) is one jsonrpsee answers to: a string, an unsigned integer
/// or null.
fn valid_id(raw: &str) -> bool {
    raw.starts_with('"') || raw == "null" || raw.parse::<u64>().is_ok()
}

/// What identifies a request jsonrpsee turned into a notification: its method and params
/// exactly as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Noted {
    method: String,
    params: Option<String>,
}

/// The request object `raw`, if its id is invalid and jsonrpsee would take it for a
/// notification (a `"jsonrpc": "2.0"` object with a method; anything else jsonrpsee already
/// answers with -32600 itself).
fn noted(raw: &str) -> Option<Noted> {
    let probe: Probe<'_> = serde_json::from_str(raw).ok()?;
    let id = probe.id?;
    if valid_id(id.get()) || probe.jsonrpc.as_deref() != Some("2.0") {
        return None;
    }
    Some(Noted {
        method: probe.method?.into_owned(),
        params: probe.params.map(|p| p.get().to_string()),
    })
}

/// Whether `body` is one request object whose `id` is present but not one jsonrpsee can
/// answer to.
pub(crate) fn single_is_invalid(body: &[u8]) -> bool {
    match serde_json::from_slice::<Probe<'_>>(body) {
        Ok(Probe { id: Some(raw), .. }) => !valid_id(raw.get()),
        _ => false,
    }
}

/// The entries of the batch `body` (a JSON array) with an invalid id.
pub(crate) fn batch_entries(body: &[u8]) -> Vec<Noted> {
    match serde_json::from_slice::<Vec<&RawValue>>(body) {
        Ok(entries) => entries.into_iter().filter_map(|e| noted(e.get())).collect(),
        Err(_) => Vec::new(),
    }
}

/// The requests with an invalid id in one websocket message (a request or a batch).
fn message_entries(message: &[u8]) -> Vec<Noted> {
    let start = message.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| (i, message[i])) {
        Some((i, b'[')) => batch_entries(&message[i..]),
        Some((i, b'{')) => {
            std::str::from_utf8(&message[i..]).ok().and_then(noted).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

/// One connection's requests with an invalid id, noted until the middleware answers them.
#[derive(Debug, Default)]
pub(crate) struct InvalidIds(Mutex<VecDeque<Noted>>);

impl InvalidIds {
    fn noted(&self) -> std::sync::MutexGuard<'_, VecDeque<Noted>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes `entries`.
    pub(crate) fn add(&self, entries: &[Noted]) {
        let mut noted = self.noted();
        for e in entries {
            if noted.len() == MAX_NOTED {
                noted.pop_front();
            }
            noted.push_back(e.clone());
        }
    }

    /// Whether the notification `method(params)` is a noted request (it is then answered, so
    /// it is forgotten).
    pub(crate) fn take(&self, method: &str, params: Option<&str>) -> bool {
        let mut noted = self.noted();
        let found = noted.iter().position(|n| n.method == method && n.params.as_deref() == params);
        found.map(|i| noted.remove(i)).is_some()
    }

    /// Forgets `entries` that were not answered (their request is done).
    pub(crate) fn forget(&self, entries: &[Noted]) {
        let mut noted = self.noted();
        for e in entries {
            if let Some(i) = noted.iter().position(|n| n == e) {
                noted.remove(i);
            }
        }
    }
}

/// A passive reader of the client-to-server websocket frames of one connection: reassembles
/// data messages (unmasking a copy) and hands each complete one to a callback. It stops
/// reading at the first thing it does not follow (a compressed frame), which only means
/// requests are no longer noted.
#[derive(Debug, Default)]
struct FrameReader {
    header: Vec<u8>,
    in_frame: bool,
    remaining: u64,
    mask: Option<[u8; 4]>,
    mask_pos: usize,
    data: bool,
    fin: bool,
    keep: bool,
    message: Vec<u8>,
    in_message: bool,
    message_ok: bool,
    stopped: bool,
}

impl FrameReader {
    /// The header's length once its first two bytes are known.
    fn header_len(&self) -> usize {
        match self.header.get(1) {
            None => 2,
            Some(b) => {
                let ext = match b & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                2 + ext + if b & 0x80 != 0 { 4 } else { 0 }
            }
        }
    }

    fn start_frame(&mut self) {
        let (b0, b1) = (self.header[0], self.header[1]);
        if b0 & 0x70 != 0 {
            // RSV bits: an extension (permessage-deflate) this reader does not follow.
            self.stopped = true;
            return;
        }
        let opcode = b0 & 0x0f;
        let (len, rest) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([self.header[2], self.header[3]])), 4),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.header[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask = (b1 & 0x80 != 0).then(|| {
            let mut m = [0u8; 4];
            m.copy_from_slice(&self.header[rest..rest + 4]);
            m
        });
        self.mask_pos = 0;
        self.fin = b0 & 0x80 != 0;
        self.data = opcode < 8;
        if self.data && opcode != 0 {
            // Text or binary: a new message.
            self.message.clear();
            self.in_message = true;
            self.message_ok = true;
        }
        let fits = (self.message.len() as u64).saturating_add(len) <= MAX_MESSAGE_BYTES as u64;
        if self.data && !fits {
            self.message_ok = false;
            self.message.clear();
        }
        self.keep = self.data && self.in_message && self.message_ok;
        self.remaining = len;
        self.in_frame = true;
        self.header.clear();
    }

    fn end_frame(&mut self, on_message: &mut impl FnMut(&[u8])) {
        self.in_frame = false;
        if self.data && self.fin && self.in_message {
            if self.message_ok {
                on_message(&self.message);
            }
            self.message.clear();
            self.in_message = false;
        }
    }

    /// Reads `bytes`, the next ones the client sent.
    fn feed(&mut self, mut bytes: &[u8], mut on_message: impl FnMut(&[u8])) {
        while !bytes.is_empty() && !self.stopped {
            if !self.in_frame {
                let want = self.header_len() - self.header.len();
                let n = want.min(bytes.len());
                self.header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.header.len() >= 2 && self.header.len() == self.header_len() {
                    self.start_frame();
                    if self.in_frame && self.remaining == 0 {
                        self.end_frame(&mut on_message);
                    }
                }
                continue;
            }
            let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(bytes.len());
            if self.keep {
                for &b in &bytes[..n] {
                    let m = self.mask.map_or(0, |m| m[self.mask_pos % 4]);
                    self.message.push(b ^ m);
                    self.mask_pos += 1;
                }
            }
            self.remaining -= n as u64;
            bytes = &bytes[n..];
            if self.remaining == 0 {
                self.end_frame(&mut on_message);
            }
        }
    }
}

/// A connection's socket, read through: once the server has answered `101 Switching
/// Protocols`, every websocket message the client sends is looked at for requests with an
/// invalid id, which are noted in [`InvalidIds`]. The bytes are passed on unchanged.
#[derive(Debug)]
pub(crate) struct Tapped<IO> {
    io: IO,
    websocket: bool,
    frames: FrameReader,
    ids: Arc<InvalidIds>,
}

impl<IO> Tapped<IO> {
    /// Wraps `io`, noting into `ids`.
    pub(crate) fn new(io: IO, ids: Arc<InvalidIds>) -> Self {
        Self { io, websocket: false, frames: FrameReader::default(), ids }
    }

    fn on_write(&mut self, first: &[u8]) {
        if !self.websocket && first.starts_with(b"HTTP/1.1 101") {
            self.websocket = true;
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tapped<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if this.websocket {
            let ids = &this.ids;
            this.frames.feed(&buf.filled()[before..], |message| {
                let entries = message_entries(message);
                if !entries.is_empty() {
                    ids.add(&entries);
                }
            });
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tapped<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.on_write(buf);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.on_write(first);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn messages(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut reader = FrameReader::default();
        let mut out = Vec::new();
        for part in stream.chunks(chunk) {
            reader.feed(part, |m| out.push(String::from_utf8_lossy(m).to_string()));
        }
        out
    }

    #[test]
    fn ids_jsonrpsee_cannot_answer_are_invalid() {
        for bad in ["{}", "[]", "1.5", "-1", "true", "1e3"] {
            assert!(!valid_id(bad), "{bad}");
        }
        for good in ["\"a\"", "null", "0", "18446744073709551615"] {
            assert!(valid_id(good), "{good}");
        }
        assert!(single_is_invalid(br#"{"jsonrpc":"2.0","id":{},"method":"eth_chainId"}"#));
        assert!(!single_is_invalid(br#"{"jsonrpc":"2.0","id":null,"method":"eth_chainId"}"#));
        assert!(!single_is_invalid(br#"{"jsonrpc":"2.0","method":"eth_chainId"}"#));
    }

    #[test]
    fn batch_entries_with_a_bad_id_are_noted_by_method_and_params() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},
            {"jsonrpc":"2.0","id":{},"method":"eth_getBalance","params":["0x01", "latest"]},
            {"jsonrpc":"2.0","id":2.5,"method":"eth_chainId"},
            {"jsonrpc":"2.0","method":"eth_chainId"},
            {"id":[],"method":"no_version"}]"#;
        let noted = batch_entries(body);
        assert_eq!(
            noted,
            [
                Noted {
                    method: "eth_getBalance".into(),
                    params: Some(r#"["0x01", "latest"]"#.into())
                },
                Noted { method: "eth_chainId".into(), params: None },
            ]
        );
        let ids = InvalidIds::default();
        ids.add(&noted);
        assert!(!ids.take("eth_chainId", Some("[]")), "params must match exactly");
        assert!(ids.take("eth_chainId", None));
        assert!(!ids.take("eth_chainId", None), "answered once");
        ids.forget(&noted);
        assert!(!ids.take("eth_getBalance", Some(r#"["0x01", "latest"]"#)), "forgotten");
    }

    #[test]
    fn the_noted_set_is_bounded() {
        let ids = InvalidIds::default();
        let one = Noted { method: "m".into(), params: None };
        ids.add(&vec![one; MAX_NOTED + 10]);
        assert_eq!(ids.noted().len(), MAX_NOTED);
    }

    #[test]
    fn frames_are_reassembled_across_reads_and_fragments() {
        let mut stream = frame(true, 1, br#"{"id":{}}"#);
        // A ping between two fragments of one message.
        stream.extend(frame(false, 1, b"[1,"));
        stream.extend(frame(true, 9, b"ping"));
        stream.extend(frame(true, 0, b"2]"));
        let long = "x".repeat(300);
        stream.extend(frame(true, 2, long.as_bytes()));
        stream.extend(frame(true, 1, b""));
        for chunk in [1, 3, 7, 1000] {
            assert_eq!(
                messages(&stream, chunk),
                [r#"{"id":{}}"#.to_string(), "[1,2]".into(), long.clone(), String::new()],
                "read {chunk} bytes at a time"
            );
        }
        // Too long to look at: skipped, and the next message is read.
        let mut stream = frame(true, 1, &vec![b' '; MAX_MESSAGE_BYTES + 1]);
        stream.extend(frame(true, 1, b"{}"));
        assert_eq!(messages(&stream, 4096), ["{}"]);
        // A compressed frame stops the reader.
        let mut compressed = frame(true, 1, b"{}");
        compressed[0] |= 0x40;
        assert!(messages(&compressed, 100).is_empty());
    }

    #[test]
    fn a_websocket_message_is_one_request_or_a_batch() {
        let single = br#" {"jsonrpc":"2.0","id":1.5,"method":"eth_chainId","params":[]}"#;
        assert_eq!(
            message_entries(single),
            [Noted { method: "eth_chainId".into(), params: Some("[]".into()) }]
        );
        let batch =
            br#"[{"jsonrpc":"2.0","id":[],"method":"a"},{"jsonrpc":"2.0","id":3,"method":"b"}]"#;
        assert_eq!(message_entries(batch), [Noted { method: "a".into(), params: None }]);
        assert!(message_entries(b"not json").is_empty());
    }
}
