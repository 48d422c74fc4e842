//! `flashnode relay`: a fan-out tier. One upstream stream in (checked for shape and order,
//! resumed after a blip), the node's fan-out out (`/ws`, `/ws/{key}`, filters, limits,
//! compression, pings, lag handling, resume); no RPC, no execution, no state.

use crate::cli::RelayArgs;
use anyhow::Context;
use flashnode_fanout::{run_upstream, UpstreamConfig, UpstreamState};
use flashnode_tasks::{Backoff, TaskExecutor, TaskManager};
use metrics_exporter_prometheus::PrometheusHandle;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Frames queued between the upstream client and the fan-out's publisher; when the writers
/// fall this far behind the client stops reading and the upstream socket absorbs it.
const QUEUE: usize = 64;

/// What the operator endpoint reads.
#[derive(Clone)]
struct Operator {
    metrics: PrometheusHandle,
    state: Arc<UpstreamState>,
    stale_after: Duration,
    draining: CancellationToken,
    tasks: TaskExecutor,
}

impl RelayArgs {
    /// The upstream stream client's settings from the relay's flags.
    pub fn upstream_config(&self) -> UpstreamConfig {
        UpstreamConfig {
            url: self.flashblocks_url.clone(),
            ping_interval: self.stream_ping_interval,
            silence_timeout: self.stream_silence_timeout,
            max_frame_bytes: self.max_frame_bytes,
            backoff_max: self.stream_backoff_max,
            ..Default::default()
        }
    }
}

/// `flashnode relay`.
pub async fn run_relay(args: RelayArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let cancel = CancellationToken::new();
    let tasks = TaskManager::new();
    let recorder = match args.metrics_addr {
        Some(_) => Some(crate::http::install_recorder()?),
        None => None,
    };
    // Serving (fan-out, operator endpoint) stops first on shutdown, the upstream client last.
    let serving = cancel.child_token();
    let (tx, rx) = mpsc::channel(QUEUE);
    let fanout = flashnode_fanout::serve(
        args.fanout.config(args.flashblocks_addr),
        rx,
        serving.clone(),
        &tasks.executor(),
    )
    .await
    .context("starting the relay's fan-out")?;
    let state = Arc::new(UpstreamState::default());
    let upstream = args.upstream_config();
    {
        let (state, cancel) = (state.clone(), cancel.clone());
        // The client holds a socket, its backoff and the last position relayed (in `state`,
        // which outlives a restart, so a restarted client still resumes).
        tasks.executor().spawn_critical_restartable(
            "relay_upstream",
            Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).with_jitter(),
            move || run_upstream(upstream.clone(), tx.clone(), state.clone(), cancel.clone()),
        );
    }
    let metrics_addr = match (args.metrics_addr, recorder) {
        (Some(addr), Some(metrics)) => {
            let operator = Operator {
                metrics,
                state: state.clone(),
                stale_after: args.ready_stale_after,
                draining: serving.clone(),
                tasks: tasks.executor(),
            };
            Some(serve_operator(addr, operator, cancel.clone(), &tasks.executor()).await?)
        }
        _ => None,
    };
    info!(elapsed_ms = started.elapsed().as_millis() as u64, "relay started");
    println!(
        "flashnode relay\n\nFlashblock fan-out: ws://{fanout}/ws  (limit {limit} connections)\nUpstream stream:    {upstream}\nOperator endpoint:  {operator}\nStarted in {ms} ms\n",
        fanout = fanout.addr(),
        limit = fanout.global_limit(),
        upstream = args.flashblocks_url,
        operator = metrics_addr.map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics")),
        ms = started.elapsed().as_millis(),
    );
    let failure = tokio::select! {
        _ = crate::dev::shutdown_signal() => None,
        failure = tasks.failed() => Some(failure),
    };
    tasks.begin_shutdown();
    info!(timeout = ?args.shutdown_timeout, "relay shutting down: closing subscribers with 1001");
    serving.cancel();
    // The fan-out's subscribers get their Close frames (each bounded by the send timeout).
    tokio::time::sleep(Duration::from_millis(100).min(args.shutdown_timeout)).await;
    cancel.cancel();
    let stuck = tasks.wait(args.shutdown_timeout).await;
    if !stuck.is_empty() {
        tracing::warn!(?stuck, "relay shutdown deadline passed with tasks still running");
    }
    match failure.or_else(|| tasks.executor().failure()) {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `cancel`; the accept loop is a critical
/// task (`operator_http`).
async fn serve_operator(
    addr: SocketAddr,
    operator: Operator,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "relay metrics on http://{local}/metrics, health on /healthz and /readyz");
    crate::http::serve_gets(listener, cancel, tasks, move |path| route(&operator, path));
    Ok(local)
}

/// The relay's readiness: the upstream connected and its last frame fresh, not draining, no
/// failed critical task.
fn readiness(operator: &Operator) -> (bool, serde_json::Value) {
    let state = &operator.state;
    let last = state.last();
    let fresh = last.is_some_and(|(_, age)| age <= operator.stale_after);
    let failure = operator.tasks.failure().map(|f| f.to_string());
    let draining = operator.draining.is_cancelled();
    let ready = state.connected() && fresh && !draining && failure.is_none();
    let body = serde_json::json!({
        "ready": ready,
        "upstream_connected": state.connected(),
        "upstream_resumable": state.resumable(),
        "last_flashblock": last.map(|((b, i), _)| format!("{b}-{i}")),
        "last_frame_age_ms": last.map(|(_, age)| age.as_millis() as u64),
        "frames_relayed": state.frames(),
        "draining": draining,
        "failure": failure,
    });
    (ready, body)
}

/// The relay's operator routes.
fn route(operator: &Operator, path: &str) -> crate::http::Answer {
    match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", operator.metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let (ready, body) = readiness(operator);
            let status = if ready { "200 OK" } else { "503 Service Unavailable" };
            (status, "application/json", body.to_string())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}
