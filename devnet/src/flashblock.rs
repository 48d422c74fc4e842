//! A flashblock as the devnet publishes it: the typed payload and its wire encodings.

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
        let json = serde_json::to_string(&payload).expect("flashblock payloads always serialise");
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
