//! `soak`: `flashnode dev` under a steady transaction load for a bounded time, sampling the
//! process's RSS, open file descriptors and threads from /proc. Fails when, between the
//! warmed-up start and the end, any of them grows beyond its bound, when the node leaves
//! flashblocks mode for long, or when transactions fail.

use crate::{
    chart::{line_chart, Series},
    http::KeepAlive,
    node::{log_findings, start_dev, ModeMonitor},
    stats::{loadavg, r3, Machine},
};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use anyhow::{ensure, Context};
use clap::Args;
use flashnode_tests::{sign_1559, DEV_KEYS};
use serde::Serialize;
use serde_json::{json, Value};
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// `soak` flags.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long the load runs, seconds.
    #[arg(long, default_value_t = 600)]
    pub duration_secs: u64,
    /// Transactions per second sent to the node (eth_sendRawTransaction).
    #[arg(long, default_value_t = 50)]
    pub rate: u64,
    /// Sampling period, seconds.
    #[arg(long, default_value_t = 5)]
    pub sample_secs: u64,
    /// Samples in the first this-many seconds are warm-up (caches fill): the baseline is the
    /// median of the samples in the window after it.
    #[arg(long, default_value_t = 60)]
    pub warmup_secs: u64,
    /// Largest allowed RSS growth, MiB, from the baseline to the median of the last window.
    #[arg(long, default_value_t = 128.0)]
    pub max_rss_growth_mib: f64,
    /// Largest allowed growth of open file descriptors.
    #[arg(long, default_value_t = 32)]
    pub max_fd_growth: i64,
    /// Largest allowed growth of threads.
    #[arg(long, default_value_t = 16)]
    pub max_thread_growth: i64,
    /// Where the chart goes (next to the JSON by default: bench/results/soak.svg).
    #[arg(long, default_value = "bench/results/soak.svg")]
    pub chart: PathBuf,
}

/// One /proc sample.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_secs: f64,
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// Open file descriptors.
    pub fds: i64,
    /// Threads.
    pub threads: i64,
    /// Transactions accepted so far.
    pub txs_sent: u64,
}

fn read_proc(pid: u32) -> anyhow::Result<(f64, i64, i64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc status (is the node alive?)")?;
    let field = |name: &str| -> Option<i64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    let rss_kib = field("VmRSS:").context("VmRSS")?;
    let threads = field("Threads:").context("Threads")?;
    let fds =
        std::fs::read_dir(format!("/proc/{pid}/fd")).context("reading /proc fd")?.count() as i64;
    Ok((rss_kib as f64 / 1024.0, fds, threads))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the soak and returns the result document; its `result.passed` is the verdict (the
/// caller writes the document, then fails on a violation).
pub async fn run(args: SoakArgs) -> anyhow::Result<Value> {
    ensure!(
        args.duration_secs >= 3 * args.sample_secs,
        "duration must cover at least three samples"
    );
    let dev = start_dev(
        &["--block-time".into(), "1s".into(), "--flashblock-interval".into(), "200ms".into()],
        Duration::from_secs(30),
    )
    .await?;
    let pid = dev.running.proc.id();
    let monitor = ModeMonitor::spawn(dev.running.rpc.clone(), Duration::from_millis(250));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error: Arc<first_error::Slot> = Arc::default();

    // One sender per dev key, each with its own nonce, spread over the rate.
    let keys = DEV_KEYS.len() as u64;
    let per_key_interval = Duration::from_secs_f64(keys as f64 / args.rate.max(1) as f64);
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let mut senders = Vec::new();
    for (k, key) in DEV_KEYS.iter().enumerate() {
        let (url, sent, failed, first_error) =
            (dev.running.rpc.clone(), sent.clone(), failed.clone(), first_error.clone());
        let key = key.to_string();
        senders.push(tokio::spawn(async move {
            let mut conn = match KeepAlive::connect(&url).await {
                Ok(c) => c,
                Err(e) => {
                    first_error.set(format!("connect: {e}"));
                    return;
                }
            };
            let mut ticker = tokio::time::interval(per_key_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let to = Address::repeat_byte(0x50 + k as u8);
            let mut nonce = 0u64;
            while Instant::now() < deadline {
                ticker.tick().await;
                let raw = sign_1559(
                    &key,
                    901,
                    nonce,
                    TxKind::Call(to),
                    U256::from(1),
                    Bytes::new(),
                    21_000,
                    10_000_000_000,
                );
                match conn.call("eth_sendRawTransaction", json!([raw])).await {
                    Ok(v) if v.get("result").is_some_and(|r| r.is_string()) => {
                        nonce += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(v) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.set(v.to_string());
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.set(e.to_string());
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(args.sample_secs));
    while Instant::now() < deadline {
        ticker.tick().await;
        let (rss_mib, fds, threads) = read_proc(pid)?;
        let s = Sample {
            t_secs: r3(started.elapsed().as_secs_f64()),
            rss_mib: r3(rss_mib),
            fds,
            threads,
            txs_sent: sent.load(Ordering::Relaxed),
        };
        eprintln!(
            "soak t={:>6.1}s rss {:>7.1} MiB fds {:>4} threads {:>3} txs {}",
            s.t_secs, s.rss_mib, s.fds, s.threads, s.txs_sent
        );
        samples.push(s);
    }
    for s in senders {
        let _ = s.await;
    }
    let modes = monitor.finish().await;
    let findings = log_findings(&dev.running);

    // Baseline: the first window after warm-up; end: the last window of the same length.
    let warm: Vec<&Sample> =
        samples.iter().filter(|s| s.t_secs >= args.warmup_secs as f64).collect();
    let window = (warm.len() / 5).max(1);
    let (base, end) = if warm.len() >= 2 * window {
        (&warm[..window], &warm[warm.len() - window..])
    } else {
        let n = (samples.len() / 3).max(1);
        (
            &samples.iter().collect::<Vec<_>>()[..n],
            &samples.iter().collect::<Vec<_>>()[samples.len() - n..],
        )
    };
    let base: Vec<Sample> = base.iter().map(|s| (*s).clone()).collect();
    let end: Vec<Sample> = end.iter().map(|s| (*s).clone()).collect();
    let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let rss_growth = m(&end, |s| s.rss_mib) - m(&base, |s| s.rss_mib);
    let fd_growth = (m(&end, |s| s.fds as f64) - m(&base, |s| s.fds as f64)) as i64;
    let thread_growth = (m(&end, |s| s.threads as f64) - m(&base, |s| s.threads as f64)) as i64;
    let total_sent = sent.load(Ordering::Relaxed);
    let total_failed = failed.load(Ordering::Relaxed);
    let mut violations = Vec::new();
    if rss_growth > args.max_rss_growth_mib {
        violations.push(format!("RSS grew {rss_growth:.1} MiB > {} MiB", args.max_rss_growth_mib));
    }
    if fd_growth > args.max_fd_growth {
        violations.push(format!("open fds grew {fd_growth} > {}", args.max_fd_growth));
    }
    if thread_growth > args.max_thread_growth {
        violations.push(format!("threads grew {thread_growth} > {}", args.max_thread_growth));
    }
    // A few rejections at a block boundary are normal (nonce races); a steady stream is not.
    if total_failed * 100 > total_sent.max(1) {
        violations.push(format!(
            "{total_failed} of {} transactions failed: {:?}",
            total_sent + total_failed,
            first_error.get()
        ));
    }

    let chart = |label: &str, f: fn(&Sample) -> f64| Series {
        label: label.into(),
        points: samples.iter().map(|s| (s.t_secs, f(s))).collect(),
    };
    line_chart(
        &args.chart,
        &format!("flashnode dev soak: {} tx/s for {} s", args.rate, args.duration_secs),
        "seconds",
        "RSS (MiB) / open fds / threads",
        &[
            chart("RSS MiB", |s| s.rss_mib),
            chart("open fds", |s| s.fds as f64),
            chart("threads", |s| s.threads as f64),
        ],
    )?;

    let doc = json!({
        "scenario": "soak",
        "machine": Machine::read(),
        "load_average_after": loadavg(),
        "command": dev.args,
        "params": {
            "duration_secs": args.duration_secs, "rate_tx_per_sec": args.rate, "sample_secs": args.sample_secs,
            "warmup_secs": args.warmup_secs, "max_rss_growth_mib": args.max_rss_growth_mib,
            "max_fd_growth": args.max_fd_growth, "max_thread_growth": args.max_thread_growth,
        },
        "result": {
            "passed": violations.is_empty(),
            "violations": violations,
            "rss_growth_mib": r3(rss_growth),
            "fd_growth": fd_growth,
            "thread_growth": thread_growth,
            "txs_sent": total_sent,
            "txs_failed": total_failed,
            "first_error": first_error.get(),
            "rss_mib_max": samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
            "modes": modes,
            "log_findings": findings,
            "chart": args.chart,
            "samples": samples,
        }
    });
    Ok(doc)
}

/// A first-error slot shared by the senders (std only).
mod first_error {
    use std::sync::Mutex;

    /// Keeps the first message set.
    #[derive(Default)]
    pub struct Slot(Mutex<Option<String>>);

    impl Slot {
        /// Sets the message unless one is already there.
        pub fn set(&self, msg: String) {
            if let Ok(mut g) = self.0.lock() {
                g.get_or_insert(msg);
            }
        }

        /// The first message, if any.
        pub fn get(&self) -> Option<String> {
            self.0.lock().ok().and_then(|g| g.clone())
        }
    }
}
