//! Starting `flashnode dev`, watching its serving mode while a scenario runs, and reading its
//! log for warnings afterwards.

use crate::http::KeepAlive;
use flashnode_tests::{free_port, start, Running};
use serde::Serialize;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;

/// A running `flashnode dev` and the URL of the devnet's own canonical RPC.
pub struct Dev {
    /// The process, the node's flashblock-aware RPC (`rpc`) and the devnet's websocket (`ws`).
    pub running: Running,
    /// The devnet's canonical RPC (the node's upstream).
    pub devnet_rpc: String,
    /// The full command line.
    pub args: Vec<String>,
}

/// Starts `flashnode dev` with `extra` flags and an explicit `--devnet-rpc-addr`; waits until
/// both RPCs answer and the node serves flashblocks.
pub async fn start_dev(extra: &[String]) -> anyhow::Result<Dev> {
    let devnet_addr = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = vec!["--devnet-rpc-addr".into(), devnet_addr.clone()];
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = start("dev", &refs).await;
    let devnet_rpc = format!("http://{devnet_addr}");
    let mut devnet = KeepAlive::connect(&devnet_rpc).await?;
    let id = devnet.call("eth_chainId", json!([])).await?;
    anyhow::ensure!(!id["result"].is_null(), "devnet canonical RPC answers eth_chainId: {id}");
    let mut node = KeepAlive::connect(&running.rpc).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = node.call("flashnode_status", json!([])).await?;
        if s["result"]["mode"] == "flashblocks" {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "node never reached flashblocks mode: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut full = vec!["dev".to_string()];
    full.extend(args);
    Ok(Dev { running, devnet_rpc, args: full })
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
    /// The first few non-`flashblocks` answers, with the time since the monitor started.
    pub non_flashblocks: Vec<Value>,
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
                non_flashblocks: Vec::new(),
                final_status: Value::Null,
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
                match tokio::time::timeout(Duration::from_secs(2), c.call("flashnode_status", json!([]))).await {
                    Ok(Ok(s)) => {
                        let mode = s["result"]["mode"].as_str().unwrap_or("?").to_string();
                        if mode != "flashblocks" && report.non_flashblocks.len() < 20 {
                            report.non_flashblocks.push(json!({
                                "t_ms": started.elapsed().as_millis() as u64,
                                "status": s["result"],
                            }));
                        }
                        *report.modes.entry(mode).or_insert(0) += 1;
                    }
                    _ => {
                        report.failed_polls += 1;
                        conn = KeepAlive::connect(&rpc).await.ok();
                    }
                }
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
    let out = running.proc.output();
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
