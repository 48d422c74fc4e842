//! Wiring of the raw fan-out into the node: its settings from the flags, and the overlay's
//! accepted flashblocks turned into the fan-out's source frames.

use crate::cli::FanoutArgs;
use flashnode_fanout::{FanoutConfig, SourceFrame};
use flashnode_overlay::{Overlay, OverlayEvent};
use flashnode_tasks::TaskExecutor;
use std::net::SocketAddr;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

/// Frames queued between the overlay and the fan-out's publisher. When the fan-out's writers
/// fall this far behind, the forwarder waits and the overlay's event channel absorbs (and
/// reports) the lag; ingest never waits on subscribers.
const QUEUE: usize = 64;

/// An API key as configured: `<key>`, or Base's `<app>:<key>` (the key is what follows the
/// colon).
fn api_key(entry: &str) -> String {
    entry.split_once(':').map_or(entry, |(_, key)| key).trim().to_string()
}

impl FanoutArgs {
    /// The fan-out's settings from its flags (node, dev and relay share them), listening on
    /// `addr`: the one place the flags become a [`FanoutConfig`].
    pub fn config(&self, addr: SocketAddr) -> FanoutConfig {
        FanoutConfig {
            addr,
            api_keys: self
                .ws_api_keys
                .iter()
                .map(|k| api_key(k))
                .filter(|k| !k.is_empty())
                .collect(),
            public: !self.ws_close_public,
            per_ip_limit: self.ws_per_ip_limit,
            per_key_limit: self.ws_per_key_limit,
            global_limit: self.ws_global_limit,
            trust_forwarded_for: self.ws_trust_forwarded_for,
            trusted_proxy_hops: self.ws_trusted_proxy_hops,
            compression: self.ws_compression,
            buffer: self.ws_buffer,
            writers: self.ws_writers,
            handshake_timeout: self.ws_handshake_timeout,
            fd_reserve: self.fd_reserve,
            ping_interval: self.ws_ping_interval,
            pong_timeout: self.ws_pong_timeout,
            send_timeout: self.ws_send_timeout,
            ring_frames: self.ws_ring_frames,
            ring_bytes: self.ws_ring_bytes,
            ..Default::default()
        }
    }
}

/// Starts the fan-out fed by every flashblock the overlay applies (its JSON as received, with
/// the addresses and topics its transactions touched, for filters). The forwarder is the
/// critical task `fanout_source` of `tasks`.
pub async fn start(
    config: FanoutConfig,
    overlay: &Overlay,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Result<flashnode_fanout::Fanout, flashnode_fanout::FanoutError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let events = overlay.subscribe();
    let fanout = flashnode_fanout::serve(config, rx, cancel.clone(), tasks).await?;
    tasks.spawn_critical(
        "fanout_source",
        forward(events, tx, cancel).instrument(info_span!("fanout_source")),
    );
    Ok(fanout)
}

async fn forward(
    mut events: broadcast::Receiver<OverlayEvent>,
    frames: mpsc::Sender<SourceFrame>,
    cancel: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(OverlayEvent::Applied { block, flashblock }) => {
                let mut frame = SourceFrame::new(
                    flashblock.raw_json.clone(),
                    flashblock.block_number(),
                    flashblock.index(),
                );
                for t in block.txs.get(block.first_new..).unwrap_or_default() {
                    frame.addresses.insert(t.sender);
                    if let Some(to) = alloy_consensus::Transaction::to(&t.tx) {
                        frame.addresses.insert(to);
                    }
                    for log in alloy_consensus::TxReceipt::logs(&t.receipt) {
                        frame.addresses.insert(log.address);
                        frame.topics.extend(log.topics().iter().copied());
                    }
                }
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "fan-out publisher lagged behind the overlay")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::api_key;

    #[test]
    fn api_keys_take_base_app_prefixes() {
        assert_eq!(api_key("secret"), "secret");
        assert_eq!(api_key("app1:secret"), "secret");
        assert_eq!(api_key(" app : secret "), "secret");
    }
}
