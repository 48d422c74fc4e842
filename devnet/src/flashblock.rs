//! A flashblock as the devnet publishes it: the typed payload and its wire encodings.

use alloy_primitives::Bytes;
use op_alloy_rpc_types_engine::flashblock::OpFlashblockPayload;
use std::{
    io::Write,
    sync::{Arc, OnceLock},
};

/// One published flashblock.
#[derive(Debug)]
pub struct PublishedFlashblock {
    /// The payload.
    pub payload: OpFlashblockPayload,
    /// Its JSON, as sent in Text frames.
    pub json: Arc<str>,
    brotli: OnceLock<Arc<[u8]>>,
}

impl PublishedFlashblock {
    /// Serialises `payload` once.
    pub fn new(payload: OpFlashblockPayload) -> Self {
        Self::with_post_exec_tx(payload, None)
    }

    /// Serialises `payload` once, with `diff.post_exec_tx` (Lagoon, raw EIP-2718 bytes of a
    /// type `0x7D` transaction) when given: the typed payload has no field for it.
    pub fn with_post_exec_tx(payload: OpFlashblockPayload, post_exec_tx: Option<Bytes>) -> Self {
        let json = match post_exec_tx {
            None => serde_json::to_string(&payload),
            Some(raw) => serde_json::to_value(&payload).and_then(|mut v| {
                v["diff"]["post_exec_tx"] = serde_json::to_value(raw)?;
                serde_json::to_string(&v)
            }),
        }
        .expect("flashblock payloads always serialise");
        Self { payload, json: json.into(), brotli: OnceLock::new() }
    }

    /// The brotli-compressed JSON (quality 5, window 22, as Base's websocket proxy), computed
    /// on first use and shared by every Binary subscriber.
    pub fn brotli(&self) -> Arc<[u8]> {
        self.brotli.get_or_init(|| brotli_compress(self.json.as_bytes()).into()).clone()
    }
}

/// Brotli with Base's websocket proxy settings.
pub fn brotli_compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        writer.write_all(data).expect("writing to a Vec cannot fail");
    }
    out
}
