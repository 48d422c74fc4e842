//! The operator endpoint on `--metrics-addr`: `/metrics` (Prometheus text), `/healthz` (alive),
//! `/readyz` (200 ready, 206 degraded: canonical fresh but no preconfirmations, 503 not ready,
//! draining, or a critical task failed), as rollup-boost reports health, and a live status page
//! at `/` (polling `/api/status`).

use anyhow::Context;
use flashnode_overlay::{Health, Overlay, OverlayEvent};
use flashnode_tasks::TaskExecutor;
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use std::{collections::VecDeque, sync::Arc};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Seconds since the last flashblock frame (NaN before the first).
pub const STREAM_LAG_SECONDS: &str = "flashnode_stream_lag_seconds";

/// The status page (static; it polls `/api/status`).
const STATUS_PAGE: &str = include_str!("status.html");

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    // Installed once per process; a second call (the p2p host starts before the node) gets it.
    static RECORDER: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    flashnode_overlay::metrics_names::describe();
    metrics::describe_gauge!(
        STREAM_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Time since the last flashblock frame"
    );
    Ok(RECORDER.get_or_init(|| handle).clone())
}

/// One applied flashblock, as the status page lists it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlashblockRow {
    /// Block number.
    pub block: u64,
    /// Flashblock index.
    pub index: u64,
    /// Transactions this flashblock added.
    pub new_txs: usize,
    /// Transactions in the pending block so far.
    pub txs: usize,
    /// Cumulative gas used.
    pub gas_used: u64,
    /// When it was applied (wall clock, ms since the epoch).
    pub received_unix_ms: u64,
    /// Applied time minus the block's timestamp, ms (negative: before the block's time).
    pub since_block_time_ms: i64,
}

/// Rows the status page keeps.
const RECENT_ROWS: usize = 40;

/// What the operator endpoint reads.
#[derive(Clone)]
pub struct Operator {
    metrics: PrometheusHandle,
    overlay: Overlay,
    recent: Arc<Mutex<VecDeque<FlashblockRow>>>,
    draining: CancellationToken,
    gossip: Option<Arc<dyn flashnode_rpc::p2p::GossipStatusSource>>,
    tasks: TaskExecutor,
}

impl Operator {
    /// `draining` is cancelled when the node starts its graceful shutdown: `/readyz` then
    /// answers 503 so load balancers stop routing here while in-flight calls finish. A failed
    /// critical task of `tasks` makes it 503 too, with the failure in the body.
    pub fn new(
        metrics: PrometheusHandle,
        overlay: Overlay,
        draining: CancellationToken,
        gossip: Option<Arc<dyn flashnode_rpc::p2p::GossipStatusSource>>,
        tasks: TaskExecutor,
    ) -> Self {
        Self { metrics, overlay, recent: Default::default(), draining, gossip, tasks }
    }

    /// The failed critical task, as `/readyz` and `/api/status` report it.
    fn failure(&self) -> Option<serde_json::Value> {
        self.tasks
            .failure()
            .map(|f| serde_json::json!({ "task": f.task(), "reason": f.to_string() }))
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Keeps the last flashblocks for the status page.
async fn track_recent(operator: Operator, cancel: CancellationToken) {
    let mut events = operator.overlay.subscribe();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(OverlayEvent::Applied { block, flashblock }) => {
                let now = unix_ms();
                let row = FlashblockRow {
                    block: block.number(),
                    index: flashblock.index(),
                    new_txs: block.txs.len().saturating_sub(block.first_new),
                    txs: block.txs.len(),
                    gas_used: block.header.gas_used,
                    received_unix_ms: now,
                    since_block_time_ms: now as i64
                        - (block.header.timestamp as i64).saturating_mul(1000),
                };
                let mut recent = operator.recent.lock();
                if recent.len() == RECENT_ROWS {
                    recent.pop_front();
                }
                recent.push_back(row);
            }
            Ok(_) => {}
            // Missing rows on a slow page are fine; the next flashblock refills it.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Serves the operator endpoint until `cancel`; its accept loop is a critical task of `tasks`
/// (`operator_http`).
pub async fn serve(
    addr: SocketAddr,
    operator: Operator,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "status page on http://{local}/, metrics on /metrics, health on /healthz and /readyz");
    tasks.spawn("status_page", track_recent(operator.clone(), cancel.clone()));
    serve_gets(listener, cancel, tasks, move |path| route(&operator, path));
    Ok(local)
}

/// An answer to a GET: status line, content type, body.
pub type Answer = (&'static str, &'static str, String);

/// Answers tiny GETs on `listener` until `cancel`, each from `route` given the request path;
/// the accept loop is a critical task of `tasks` (`operator_http`), each request a task.
pub fn serve_gets<R>(
    listener: TcpListener,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
    route: R,
) where
    R: Fn(&str) -> Answer + Clone + Send + Sync + 'static,
{
    let requests = tasks.clone();
    tasks.spawn_critical("operator_http", async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
            };
            let route = route.clone();
            requests.spawn("operator_request", async move {
                if let Err(err) = answer(stream, route).await {
                    debug!(%err, "operator request failed");
                }
            });
        }
    });
}

async fn answer(mut stream: TcpStream, route: impl Fn(&str) -> Answer) -> std::io::Result<()> {
    // Requests are tiny GETs; read the head with a bound and a deadline.
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => len += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let (status, content_type, body) = route(head.split_whitespace().nth(1).unwrap_or("/"));
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// The node's operator routes.
fn route(operator: &Operator, path: &str) -> Answer {
    match path {
        "/metrics" => {
            // Time since the last flashblock frame, sampled at scrape time (a gauge set only
            // on frames would freeze at its last value exactly when the stream stops).
            let status = operator.overlay.status();
            let lag = status.stream_lag_ms.map(|ms| ms as f64 / 1000.0).unwrap_or(f64::NAN);
            metrics::gauge!(STREAM_LAG_SECONDS).set(lag);
            ("200 OK", "text/plain; version=0.0.4", operator.metrics.render())
        }
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let status = operator.overlay.status();
            let failure = operator.failure();
            let code = match status.health {
                // A dead critical task (the overlay) would leave `pending` silently `latest`.
                _ if failure.is_some() => "503 Service Unavailable",
                _ if operator.draining.is_cancelled() => "503 Service Unavailable",
                Health::Ready => "200 OK",
                Health::Degraded => "206 Partial Content",
                Health::NotReady => "503 Service Unavailable",
            };
            let mut body = serde_json::to_value(&status).unwrap_or_default();
            if let (Some(failure), Some(fields)) = (failure, body.as_object_mut()) {
                fields.insert("failure".into(), failure);
            }
            (code, "application/json", body.to_string())
        }
        "/" | "/index.html" => ("200 OK", "text/html; charset=utf-8", STATUS_PAGE.to_string()),
        "/api/status" => {
            let recent: Vec<FlashblockRow> = operator.recent.lock().iter().cloned().collect();
            let body = serde_json::json!({
                "status": operator.overlay.status(),
                "draining": operator.draining.is_cancelled(),
                "failure": operator.failure(),
                "peers": operator.gossip.as_ref().map(|g| g.gossip_status().counters.peers),
                "gossip": operator.gossip.as_ref().map(|g| g.gossip_status()),
                "recent": recent,
            });
            ("200 OK", "application/json", body.to_string())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}
