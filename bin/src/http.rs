//! The operator endpoint on `--metrics-addr`: `/metrics` (Prometheus text), `/healthz` (alive)
//! and `/readyz` (200 ready, 206 degraded: canonical fresh but no preconfirmations, 503 not
//! ready), as rollup-boost reports health.

use anyhow::Context;
use flashnode_overlay::{Health, Overlay};
use metrics_exporter_prometheus::PrometheusHandle;
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, Instrument};

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    flashnode_overlay::metrics_names::describe();
    Ok(handle)
}

/// Serves the operator endpoint until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    overlay: Overlay,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))?;
    let local = listener.local_addr()?;
    info!(addr = %local, "metrics on http://{local}/metrics, health on /healthz and /readyz");
    tokio::spawn(
        async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let (metrics, overlay) = (metrics.clone(), overlay.clone());
                tokio::spawn(async move {
                    if let Err(err) = answer(stream, &metrics, &overlay).await {
                        debug!(%err, "metrics request failed");
                    }
                });
            }
        }
        .instrument(info_span!("operator_http", addr = %local)),
    );
    Ok(local)
}

async fn answer(mut stream: TcpStream, metrics: &PrometheusHandle, overlay: &Overlay) -> std::io::Result<()> {
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
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = match path {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let status = overlay.status();
            let code = match status.health {
                Health::Ready => "200 OK",
                Health::Degraded => "206 Partial Content",
                Health::NotReady => "503 Service Unavailable",
            };
            (code, "application/json", serde_json::to_string(&status).unwrap_or_default())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}
