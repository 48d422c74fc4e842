//! The flashblock source websocket (`ws://ADDR/ws`), as a builder or rollup-boost serves it:
//! every flashblock as one Text JSON frame, or one brotli Binary frame when configured. A new
//! subscriber first gets the current block's flashblocks so far (a consumer joining mid-block,
//! such as the node of `flashnode dev` starting after the devnet, preconfirms from that block).

use crate::{flashblock::PublishedFlashblock, DevnetError, Shared};
use flashnode_tasks::{Backoff, TaskExecutor};
use futures::{SinkExt, StreamExt};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::broadcast::error::RecvError};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    Message,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// A subscriber whose send takes longer than this is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// How the accept loop is restarted after a panic.
fn accept_restart() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

/// Binds `addr` and serves subscribers until cancelled; returns the bound address. The accept
/// loop is the restartable critical task `devnet_ws` of `tasks`: a panic in it restarts it on
/// the same listener after a backoff.
pub async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Result<SocketAddr, DevnetError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| DevnetError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| DevnetError::Bind { addr, source })?;
    info!(addr = %local, "flashblock websocket listening on ws://{local}/ws");
    let listener = Arc::new(listener);
    tasks.spawn_critical_restartable("devnet_ws", accept_restart(), move || {
        accept_loop(listener.clone(), shared.clone(), cancel.clone())
            .instrument(info_span!("flashblock_ws", addr = %local))
    });
    Ok(local)
}

/// Accepts subscribers until `cancel`; each one gets its own task.
async fn accept_loop(listener: Arc<TcpListener>, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(
            async move {
                if let Err(err) = subscriber(shared, stream, cancel).await {
                    debug!(%err, "subscriber ended");
                }
            }
            .instrument(info_span!("flashblock_subscriber", %peer)),
        );
    }
}

#[allow(clippy::result_large_err)]
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/ws" {
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some("not found: flashblocks are served on /ws".into()));
        *err.status_mut() = StatusCode::NOT_FOUND;
        Err(err)
    }
}

async fn subscriber(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    cancel: CancellationToken,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let _ = stream.set_nodelay(true);
    let ws = tokio_tungstenite::accept_hdr_async(stream, check_path).await?;
    let (mut sink, mut source) = ws.split();
    // Subscribe and take the replay under the publisher's lock: no frame lost or doubled.
    let (mut rx, replay) = {
        let current = shared.current_block.lock();
        (shared.flashblocks.subscribe(), current.clone())
    };
    let brotli = shared.config.flashblocks_brotli;
    let encode = |fb: &PublishedFlashblock| {
        if brotli {
            Message::Binary(fb.brotli().to_vec().into())
        } else {
            Message::Text(fb.json.as_ref().into())
        }
    };
    for fb in &replay {
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(encode(fb))).await {
            Ok(res) => res?,
            Err(_) => return Ok(()),
        }
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(());
            }
            msg = source.next() => match msg {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(Message::Ping(data))) => sink.send(Message::Pong(data)).await?,
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
            },
            fb = rx.recv() => match fb {
                Ok(fb) => {
                    let msg = encode(&fb);
                    match tokio::time::timeout(SEND_TIMEOUT, sink.send(msg)).await {
                        Ok(res) => res?,
                        Err(_) => {
                            warn!("subscriber too slow, disconnecting");
                            return Ok(());
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "subscriber lagged behind, disconnecting");
                    return Ok(());
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}
