//! Wiring of the raw fan-out into the node: its settings from the flags, and the overlay's
//! accepted flashblocks turned into the fan-out's source frames.

use crate::cli::OverlayArgs;
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

/// The fan-out's settings from the node's flags.
pub fn config(addr: SocketAddr, args: &OverlayArgs) -> FanoutConfig {
    FanoutConfig {
        addr,
        api_keys: args.ws_api_keys.clone(),
        public: !args.ws_close_public,
        per_ip_limit: args.ws_per_ip_limit,
        global_limit: args.ws_global_limit,
        trust_forwarded_for: args.ws_trust_forwarded_for,
        trusted_proxy_hops: args.ws_trusted_proxy_hops,
        compression: args.ws_compression,
        buffer: args.ws_buffer,
        writers: args.ws_writers,
        handshake_timeout: args.ws_handshake_timeout,
        fd_reserve: args.ws_fd_reserve,
        ..Default::default()
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
