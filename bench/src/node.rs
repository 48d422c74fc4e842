//! Starting `flashnode dev`, watching its serving mode while a scenario runs, and reading its
//! log for warnings afterwards.

use crate::http::KeepAlive;
use flashnode_tests::{free_port, Proc, Running};
use serde::Serialize;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;

/// A running `flashnode dev` and the URL of the devnet's own canonical RPC.
pub struct Dev {
    /// The process, the node's flashblock-aware RPC (`rpc`) and the node's flashblock fan-out
    /// (`ws`, `--flashblocks-addr`: re-emits each frame once the node has applied it).
    pub running: Running,
    /// The devnet's own flashblock websocket (`--devnet-flashblocks-addr`): the source the node
    /// consumes.
    pub devnet_ws: String,
    /// The devnet's canonical RPC (the node's upstream).
    pub devnet_rpc: String,
    /// The node's Prometheus endpoint.
    pub metrics: String,
    /// The full command line.
    pub args: Vec<String>,
}

/// Starts `flashnode dev` on free loopback ports (node RPC, devnet canonical RPC, the devnet's
/// flashblock websocket, the node's fan-out, metrics) with `extra` flags; waits up to `ready_within` until both RPCs answer
/// and the node serves flashblocks (it may have joined mid-block and wait for an index 0).
pub async fn start_dev(extra: &[String], ready_within: Duration) -> anyhow::Result<Dev> {
    let (rpc, devnet, ws, devnet_ws, metrics) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let mut args: Vec<String> = vec![
        "dev".into(),
        "--rpc-addr".into(),
        format!("127.0.0.1:{rpc}"),
        "--devnet-rpc-addr".into(),
        format!("127.0.0.1:{devnet}"),
        "--flashblocks-addr".into(),
        format!("127.0.0.1:{ws}"),
        "--devnet-flashblocks-addr".into(),
        format!("127.0.0.1:{devnet_ws}"),
        "--metrics-addr".into(),
        format!("127.0.0.1:{metrics}"),
    ];
    args.extend(extra.iter().cloned());
    let proc = Proc::flashnode(&args);
    let running = Running {
        proc,
        rpc: format!("http://127.0.0.1:{rpc}"),
        ws: format!("ws://127.0.0.1:{ws}/ws"),
    };
    let devnet_rpc = format!("http://127.0.0.1:{devnet}");
    let deadline = Instant::now() + ready_within;
    let mut ready = false;
    while Instant::now() < deadline {
        if let (Ok(mut node), Ok(mut canon)) =
            (KeepAlive::connect(&running.rpc).await, KeepAlive::connect(&devnet_rpc).await)
        {
            let id = canon.call("eth_chainId", json!([])).await.ok();
            let s = node.call("flashnode_status", json!([])).await.ok();
            if id.is_some_and(|v| !v["result"].is_null())
                && s.is_some_and(|v| v["result"]["mode"] == "flashblocks")
            {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(
        ready,
        "flashnode dev did not serve flashblocks within {ready_within:?}:\n{}",
        running.proc.output()
    );
    Ok(Dev {
        running,
        devnet_rpc,
        devnet_ws: format!("ws://127.0.0.1:{devnet_ws}/ws"),
        metrics: format!("127.0.0.1:{metrics}"),
        args,
    })
}

/// The node's `flashnode_overlay_apply_seconds` histogram (time to execute one flashblock into
/// the overlay), from its Prometheus endpoint.
pub async fn apply_histogram(metrics_addr: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let text = async {
        let mut s = tokio::net::TcpStream::connect(metrics_addr).await.ok()?;
        let req =
            format!("GET /metrics HTTP/1.1\r\nHost: {metrics_addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(String::from_utf8_lossy(&out).to_string())
    }
    .await;
    let Some(text) = text else { return Value::Null };
    let mut buckets = serde_json::Map::new();
    let (mut sum, mut count) = (None, None);
    for line in text.lines().filter(|l| l.starts_with("flashnode_overlay_apply_seconds")) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(f64::NAN);
        if let Some(le) = name.split("le=\"").nth(1).and_then(|r| r.split('"').next()) {
            buckets.insert(le.to_string(), json!(value));
        } else if name.ends_with("_sum") {
            sum = Some(value);
        } else if name.ends_with("_count") {
            count = Some(value);
        }
    }
    let mean_ms = match (sum, count) {
        (Some(s), Some(c)) if c > 0.0 => Some(crate::stats::r3(s / c * 1e3)),
        _ => None,
    };
    json!({"count": count, "sum_seconds": sum, "mean_ms": mean_ms, "cumulative_buckets_seconds": buckets})
}

/// What the mode monitor saw.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// Polling period, ms.
    pub period_ms: u64,
    /// Number of `flashnode_status` answers per `mode`.
    pub modes: BTreeMap<String, u64>,
    /// Status polls that failed (timeout or error).
    pub failed_polls: u64,
    /// Episodes of consecutive non-`flashblocks` answers: how many, and their observed length
    /// in ms (first to last such answer; the true length is up to one period longer).
    pub non_flashblocks_episodes: usize,
    /// Observed episode lengths, ms.
    pub episode_ms: Option<crate::stats::Summary>,
    /// The first few episodes: when (ms since the monitor started), how long, and the status
    /// answered at their start.
    pub first_episodes: Vec<Value>,
    /// `flashnode_status` at the end.
    pub final_status: Value,
}

/// Polls `flashnode_status` every `period` until stopped.
pub struct ModeMonitor {
    stop: Arc<AtomicBool>,
    task: JoinHandle<ModeReport>,
}

impl ModeMonitor {
    /// Starts polling `rpc`.
    pub fn spawn(rpc: String, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut report = ModeReport {
                period_ms: period.as_millis() as u64,
                modes: BTreeMap::new(),
                failed_polls: 0,
                non_flashblocks_episodes: 0,
                episode_ms: None,
                first_episodes: Vec::new(),
                final_status: Value::Null,
            };
            // (start, last seen, status at start) of the current non-flashblocks episode.
            let mut episode: Option<(Instant, Instant, Value)> = None;
            let mut lengths: Vec<f64> = Vec::new();
            let close =
                |ep: (Instant, Instant, Value), report: &mut ModeReport, lengths: &mut Vec<f64>| {
                    let ms = (ep.1 - ep.0).as_secs_f64() * 1e3;
                    lengths.push(ms);
                    report.non_flashblocks_episodes += 1;
                    if report.first_episodes.len() < 20 {
                        report.first_episodes.push(json!({
                            "t_ms": (ep.0 - started).as_millis() as u64,
                            "observed_ms": crate::stats::r3(ms),
                            "status": ep.2,
                        }));
                    }
                };
            let mut conn = KeepAlive::connect(&rpc).await.ok();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop2.load(Ordering::Acquire) {
                tick.tick().await;
                let Some(c) = conn.as_mut() else {
                    report.failed_polls += 1;
                    conn = KeepAlive::connect(&rpc).await.ok();
                    continue;
                };
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    c.call("flashnode_status", json!([])),
                )
                .await
                {
                    Ok(Ok(s)) => {
                        let now = Instant::now();
                        let mode = s["result"]["mode"].as_str().unwrap_or("?").to_string();
                        if mode != "flashblocks" {
                            match episode.as_mut() {
                                Some(ep) => ep.1 = now,
                                None => episode = Some((now, now, s["result"].clone())),
                            }
                        } else if let Some(ep) = episode.take() {
                            close(ep, &mut report, &mut lengths);
                        }
                        *report.modes.entry(mode).or_insert(0) += 1;
                    }
                    _ => {
                        report.failed_polls += 1;
                        conn = KeepAlive::connect(&rpc).await.ok();
                    }
                }
            }
            if let Some(ep) = episode.take() {
                close(ep, &mut report, &mut lengths);
            }
            if !lengths.is_empty() {
                report.episode_ms = Some(crate::stats::Summary::of(&lengths).rounded());
            }
            if let Ok(mut c) = KeepAlive::connect(&rpc).await {
                if let Ok(s) = c.call("flashnode_status", json!([])).await {
                    report.final_status = s["result"].clone();
                }
            }
            report
        });
        Self { stop, task }
    }

    /// Stops polling and returns the report.
    pub async fn finish(self) -> ModeReport {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("mode monitor task")
    }
}

/// Lines of the node's log that deserve a look: warnings, errors, stream loss and fallback.
pub fn log_findings(running: &Running) -> Vec<String> {
    findings_in(&running.proc.output())
}

/// The lines of a flashnode log worth a look (warnings, errors, panics, stream and mode
/// changes), at most 60 of them.
pub fn findings_in(out: &str) -> Vec<String> {
    let mut lines: Vec<String> = out
        .lines()
        .map(strip_ansi)
        .filter(|l| {
            l.contains("WARN")
                || l.contains("ERROR")
                || l.contains("panicked")
                || l.contains("stream down")
                || l.contains("fallback")
                || l.contains("lagged")
        })
        .collect();
    if lines.len() > 60 {
        let more = lines.len() - 60;
        lines.truncate(60);
        lines.push(format!("… {more} more"));
    }
    lines
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if ('@'..='~').contains(&c2) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// When the devnet's sequencer published each flashblock, from its debug log lines
/// (`<RFC 3339 UTC> DEBUG …: flashblock number=N index=I …`): (block, index) → µs since the epoch.
pub fn publish_times(running: &Running) -> HashMap<(u64, u64), u64> {
    debug_events(running, " flashblock number=")
        .into_iter()
        .filter_map(|(ts, f)| Some(((*f.get("number")?, *f.get("index")?), ts)))
        .collect()
}

/// What the node's overlay logged once it applied a flashblock (`flashblock applied`, debug):
/// (block, index) → (µs since the epoch when it was logged, execution µs, publish µs).
pub fn applied_times(running: &Running) -> HashMap<(u64, u64), (u64, u64, u64)> {
    debug_events(running, " flashblock applied ")
        .into_iter()
        .filter_map(|(ts, f)| {
            Some((
                (*f.get("block")?, *f.get("index")?),
                (ts, *f.get("apply_us")?, *f.get("publish_us")?),
            ))
        })
        .collect()
}

/// The debug lines of the log that contain `needle`: their timestamp (µs since the epoch) and
/// their numeric `name=value` fields.
fn debug_events(running: &Running, needle: &str) -> Vec<(u64, HashMap<String, u64>)> {
    running
        .proc
        .output()
        .lines()
        .map(strip_ansi)
        .filter(|line| line.contains("DEBUG") && line.contains(needle))
        .filter_map(|line| {
            let ts = line.split_whitespace().next().and_then(parse_rfc3339_us)?;
            let fields = line
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse::<u64>().ok()?)))
                .collect();
            Some((ts, fields))
        })
        .collect()
}

/// `2026-11-21T20:35:40.123456Z` → µs since the Unix epoch.
fn parse_rfc3339_us(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let frac_us: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1_000_000 + frac_us).ok()
}
