//! `ingest-latency`: how long after a flashblock frame arrives are its receipts queryable over
//! the node's RPC?
//!
//! `flashnode dev` runs the devnet and the node in one process; the node consumes the devnet's
//! flashblock websocket over loopback like any external consumer. The bench is a second
//! consumer of the same websocket: the instant its reader task gets a frame is t0. It then
//! polls the node's `eth_getTransactionReceipt` for the frame's last transaction over a
//! kept-alive connection until the answer is non-null: latency = t(first non-null) − t0.
//! Meanwhile the bench submits pre-signed transfers to the node's RPC at a steady rate so each
//! flashblock carries about 100 transactions.

use crate::{
    http::{quantity, rpc_body, KeepAlive},
    node::{applied_times, apply_histogram, log_findings, publish_times, start_dev, ModeMonitor},
    stats::{histogram, loadavg, r3, Machine, Summary},
};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use anyhow::Context;
use clap::Args;
use flashnode_tests::{decode_frame, sign_1559, DEV_KEYS};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::Message;

/// `ingest-latency` flags.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Transactions per second submitted to the node (spread over the 10 dev keys).
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Devnet block time, ms.
    #[arg(long, default_value_t = 2000)]
    pub block_time_ms: u64,
    /// Devnet flashblock interval, ms.
    #[arg(long, default_value_t = 200)]
    pub flashblock_interval_ms: u64,
    /// Devnet block gas limit (large flashblocks need more than the default 30M).
    #[arg(long, default_value_t = 30_000_000)]
    pub gas_limit: u64,
    /// Only flashblocks with at least this many transactions are measured.
    #[arg(long, default_value_t = 90)]
    pub min_txs: usize,
    /// Samples to collect (the run ends earlier only at --max-secs).
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Upper bound on the measuring phase, seconds.
    #[arg(long, default_value_t = 60)]
    pub max_secs: u64,
    /// Seconds of load before the first sample (the pool and fee market settle).
    #[arg(long, default_value_t = 4)]
    pub warmup_secs: u64,
    /// Pause between two polls of a probe, µs (0: back to back, the default).
    #[arg(long, default_value_t = 0)]
    pub poll_interval_us: u64,
    /// A probe gives up after this long without a receipt, ms.
    #[arg(long, default_value_t = 5000)]
    pub probe_timeout_ms: u64,
}

/// One measured flashblock.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Block number.
    pub block: u64,
    /// Flashblock index.
    pub index: u64,
    /// Transactions in the flashblock.
    pub txs: usize,
    /// Last transaction of the flashblock (the one polled).
    pub tx: B256,
    /// t0 as wall-clock time (µs since the Unix epoch), to line samples up with the node's log.
    pub t0_unix_us: u64,
    /// t(first non-null receipt) − t0, ms. None when the probe timed out.
    pub latency_ms: Option<f64>,
    /// t(the same frame arrived from the node's fan-out) − t0, ms: the fan-out re-emits a frame
    /// once the node applied it. None if it never came.
    pub fanout_after_ms: Option<f64>,
    /// t0 − the devnet's log timestamp of publishing this flashblock, ms (needs the sequencer's
    /// debug log). How late the bench's t0 is against the sequencer; None if not logged.
    pub t0_after_publish_ms: Option<f64>,
    /// t(first non-null receipt) − the devnet's publish log timestamp, ms.
    pub latency_from_publish_ms: Option<f64>,
    /// From the node's `flashblock applied` debug line: t(execution started) − t0, ms (the
    /// node's websocket read, decoding, ordering and the hand-off to the executor thread; the
    /// node and the bench read the same frame from the same source at about the same instant).
    pub node_before_apply_ms: Option<f64>,
    /// The node's execution of the flashblock, ms.
    pub node_apply_ms: Option<f64>,
    /// The node's snapshot publish after execution, ms.
    pub node_publish_ms: Option<f64>,
    /// t(first non-null receipt) − t(the node logged the flashblock applied), ms: the RPC side
    /// (the poll that finds it, the lookup, the response), plus the log line's own delay.
    pub receipt_after_applied_ms: Option<f64>,
    /// t(first poll sent) − t0, ms: the bench's own frame parsing and task hand-off.
    pub first_poll_after_ms: f64,
    /// Polls sent until the receipt appeared.
    pub polls: u32,
    /// Whether, right after, the receipt's block was still above the node's eth_blockNumber
    /// (served from a flashblock, not from the sealed block).
    pub preconfirmed: Option<bool>,
    /// Errors answered by the node while polling.
    pub errors: u32,
}

#[derive(Debug, Serialize)]
struct SendReport {
    presigned: usize,
    sent: u64,
    errors: u64,
    first_errors: Vec<String>,
    achieved_rate: f64,
}

/// Runs the scenario and returns the result document.
pub async fn run(args: IngestArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();

    // Pre-sign everything before the node starts, so signing does not compete with it.
    let per_key = (args.rate * (args.max_secs + args.warmup_secs + 5))
        .div_ceil(DEV_KEYS.len() as u64) as usize;
    eprintln!("ingest-latency: pre-signing {} transfers…", per_key * DEV_KEYS.len());
    let sign_started = Instant::now();
    let bodies: Vec<Vec<String>> = presign(per_key);
    let presigned: usize = bodies.iter().map(Vec::len).sum();
    eprintln!("ingest-latency: signed {presigned} in {:.1}s", sign_started.elapsed().as_secs_f64());

    let extra: Vec<String> = vec![
        "--block-time".into(),
        format!("{}ms", args.block_time_ms),
        "--flashblock-interval".into(),
        format!("{}ms", args.flashblock_interval_ms),
        "--gas-limit".into(),
        args.gas_limit.to_string(),
    ];
    let dev = start_dev(&extra, Duration::from_millis(args.block_time_ms * 2 + 10_000)).await?;
    eprintln!(
        "ingest-latency: node {} (fan-out {}), devnet {} (flashblocks {}), log {}",
        dev.running.rpc,
        dev.running.ws,
        dev.devnet_rpc,
        dev.devnet_ws,
        dev.running.proc.log.display()
    );

    // The bench's own client of the devnet's flashblock websocket (the node's source): t0 is
    // taken the moment a frame is read.
    let mut frames = spawn_reader(&dev.devnet_ws).await?;
    // A client of the node's fan-out too: it re-emits a frame once the node applied it, so its
    // arrival is a second, independent view of the node's ingest time.
    let mut fanout_frames = spawn_reader(&dev.running.ws).await?;
    let fanout_seen: Arc<std::sync::Mutex<HashMap<(u64, u64), Instant>>> = Arc::default();
    {
        let fanout_seen = fanout_seen.clone();
        tokio::spawn(async move {
            while let Some((t, _, bytes)) = fanout_frames.recv().await {
                if let Ok(v) = decode_frame(&bytes) {
                    let key = (
                        v["metadata"]["block_number"].as_u64().unwrap_or(0),
                        v["index"].as_u64().unwrap_or(0),
                    );
                    fanout_seen.lock().expect("not poisoned").insert(key, t);
                }
            }
        });
    }

    let monitor = ModeMonitor::spawn(dev.running.rpc.clone(), Duration::from_millis(10));

    // Senders: one task and one kept-alive connection per key, so each key's nonces arrive in order.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let send_errors = Arc::new(AtomicU64::new(0));
    let first_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let period = Duration::from_micros(1_000_000 * DEV_KEYS.len() as u64 / args.rate.max(1));
    let send_started = Instant::now();
    let mut senders = Vec::new();
    for (k, key_bodies) in bodies.into_iter().enumerate() {
        let (rpc, stop, sent, send_errors, first_errors) = (
            dev.running.rpc.clone(),
            stop.clone(),
            sent.clone(),
            send_errors.clone(),
            first_errors.clone(),
        );
        senders.push(tokio::spawn(async move {
            // Stagger the keys across one period.
            tokio::time::sleep(period * k as u32 / DEV_KEYS.len() as u32).await;
            let mut conn = KeepAlive::connect(&rpc).await.expect("node rpc");
            let mut tick = tokio::time::interval(period);
            for body in key_bodies {
                tick.tick().await;
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let res = conn.post(&body).await.map_err(|e| e.to_string()).and_then(|b| {
                    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
                    if v["error"].is_null() {
                        Ok(())
                    } else {
                        Err(v["error"].to_string())
                    }
                });
                sent.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = res {
                    send_errors.fetch_add(1, Ordering::Relaxed);
                    let mut fe = first_errors.lock().await;
                    if fe.len() < 10 {
                        fe.push(format!("key {k}: {e}"));
                    }
                }
            }
        }));
    }

    // Probe connections, kept alive across samples.
    let pool: Arc<Mutex<Vec<KeepAlive>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..4 {
        pool.lock().await.push(KeepAlive::connect(&dev.running.rpc).await?);
    }

    let warmup_until = Instant::now() + Duration::from_secs(args.warmup_secs);
    let deadline = warmup_until + Duration::from_secs(args.max_secs);
    let mut counts_all: Vec<usize> = Vec::new();
    let mut frames_seen = 0u64;
    let mut probes = tokio::task::JoinSet::new();
    let mut spawned = 0usize;
    let mut t0s: HashMap<(u64, u64), Instant> = HashMap::new();
    let probe_timeout = Duration::from_millis(args.probe_timeout_ms);
    let poll_interval = Duration::from_micros(args.poll_interval_us);
    eprintln!(
        "ingest-latency: {} tx/s for {}s warm-up, then up to {} samples or {}s",
        args.rate, args.warmup_secs, args.samples, args.max_secs
    );
    while spawned < args.samples {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let Ok(Some((t0, t0_unix_us, bytes))) =
            tokio::time::timeout(deadline - now, frames.recv()).await
        else {
            break;
        };
        frames_seen += 1;
        let v = decode_frame(&bytes)?;
        let index = v["index"].as_u64().unwrap_or(0);
        let block = v["metadata"]["block_number"].as_u64().unwrap_or(0);
        let txs = v["diff"]["transactions"].as_array().cloned().unwrap_or_default();
        if t0 < warmup_until || index == 0 {
            continue;
        }
        counts_all.push(txs.len());
        if txs.len() < args.min_txs {
            continue;
        }
        let last: Bytes = txs.last().and_then(|t| t.as_str()).context("tx hex")?.parse()?;
        let hash = keccak256(&last);
        t0s.insert((block, index), t0);
        let (pool, rpc, n) = (pool.clone(), dev.running.rpc.clone(), txs.len());
        spawned += 1;
        probes.spawn(async move {
            let mut conn = match pool.lock().await.pop() {
                Some(c) => c,
                None => KeepAlive::connect(&rpc).await.expect("node rpc"),
            };
            let sample = probe(
                &mut conn,
                t0,
                t0_unix_us,
                hash,
                block,
                index,
                n,
                probe_timeout,
                poll_interval,
            )
            .await;
            pool.lock().await.push(conn);
            sample
        });
    }
    let measured_secs = Instant::now().saturating_duration_since(warmup_until).as_secs_f64();
    let mut samples: Vec<Sample> = Vec::new();
    while let Some(s) = probes.join_next().await {
        samples.push(s?);
    }
    stop.store(true, Ordering::Release);
    for s in senders {
        let _ = s.await;
    }
    let send_secs = send_started.elapsed().as_secs_f64();
    let modes = monitor.finish().await;
    let findings = log_findings(&dev.running);
    let apply = apply_histogram(&dev.metrics).await;
    let loadavg_at_end = loadavg();
    samples.sort_by_key(|s| (s.block, s.index));
    // Frames still in flight on the fan-out get a moment to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The sequencer's own publish timestamps (wall clock, same machine).
    let published = publish_times(&dev.running);
    for s in samples.iter_mut() {
        if let Some(p) = published.get(&(s.block, s.index)) {
            let after = (s.t0_unix_us as f64 - *p as f64) / 1e3;
            s.t0_after_publish_ms = Some(r3(after));
            s.latency_from_publish_ms = s.latency_ms.map(|l| r3(l + after));
        }
    }
    // The node's own account of each flashblock: when it started and finished executing it.
    let applied = applied_times(&dev.running);
    for s in samples.iter_mut() {
        if let Some(&(logged, apply_us, publish_us)) = applied.get(&(s.block, s.index)) {
            let logged_after_t0 = (logged as f64 - s.t0_unix_us as f64) / 1e3;
            s.node_before_apply_ms =
                Some(r3(logged_after_t0 - (apply_us + publish_us) as f64 / 1e3));
            s.node_apply_ms = Some(r3(apply_us as f64 / 1e3));
            s.node_publish_ms = Some(r3(publish_us as f64 / 1e3));
            s.receipt_after_applied_ms = s.latency_ms.map(|l| r3(l - logged_after_t0));
        }
    }
    // t0 of each sample, to line up with the fan-out's arrival times.
    {
        let seen = fanout_seen.lock().expect("not poisoned");
        for s in samples.iter_mut() {
            if let (Some(t), Some(t0)) =
                (seen.get(&(s.block, s.index)), t0s.get(&(s.block, s.index)))
            {
                s.fanout_after_ms = Some(r3(if t >= t0 {
                    (*t - *t0).as_secs_f64() * 1e3
                } else {
                    -((*t0 - *t).as_secs_f64() * 1e3)
                }));
            }
        }
    }

    let latencies: Vec<f64> = samples.iter().filter_map(|s| s.latency_ms).collect();
    let timeouts = samples.iter().filter(|s| s.latency_ms.is_none()).count();
    let mut by_index: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for s in &samples {
        if let Some(l) = s.latency_ms {
            by_index.entry(s.index).or_default().push(l);
        }
    }
    let latency = Summary::of(&latencies).rounded();
    let overlay: Vec<f64> = samples
        .iter()
        .filter(|s| s.preconfirmed == Some(true))
        .filter_map(|s| s.latency_ms)
        .collect();
    let sealed: Vec<f64> = samples
        .iter()
        .filter(|s| s.preconfirmed == Some(false))
        .filter_map(|s| s.latency_ms)
        .collect();
    let counts_measured: Vec<usize> = samples.iter().map(|s| s.txs).collect();
    let sent_n = sent.load(Ordering::Relaxed);
    let result = json!({
        "scenario": "ingest-latency",
        "started_unix": started_unix,
        "machine": machine,
        "loadavg_at_end": loadavg_at_end,
        "config": {
            "flashnode_args": dev.args,
            "rate_tx_per_s": args.rate,
            "block_time_ms": args.block_time_ms,
            "flashblock_interval_ms": args.flashblock_interval_ms,
            "min_txs": args.min_txs,
            "target_samples": args.samples,
            "warmup_secs": args.warmup_secs,
            "max_secs": args.max_secs,
            "poll_interval_us": args.poll_interval_us,
            "t0": "the instant the bench's own websocket reader task gets the frame from the devnet's flashblock websocket (--devnet-flashblocks-addr: the loopback server the node reads from)",
            "t0_after_publish": "t0 - the devnet sequencer's debug log timestamp for publishing the flashblock (logged just before it is handed to the websocket; wall clock of the same machine, µs resolution)",
            "fanout_after": "t(the frame arrives from the node's fan-out, --flashblocks-addr, which re-emits it after applying it) - t0",
            "latency": "t(first non-null eth_getTransactionReceipt of the flashblock's last tx, polled in a tight loop over a kept-alive HTTP/1.1 connection to the node) - t0",
        },
        "result": {
            "samples": samples.len(),
            "timeouts": timeouts,
            "latency_ms": latency,
            "latency_ms_served_preconfirmed": Summary::of(&overlay).rounded(),
            "latency_ms_served_after_seal": Summary::of(&sealed).rounded(),
            "latency_ms_by_flashblock_index": by_index.iter().map(|(k, v)| (k.to_string(), Summary::of(v).rounded())).collect::<BTreeMap<_, _>>(),
            "t0_after_publish_ms": Summary::of(&samples.iter().filter_map(|s| s.t0_after_publish_ms).collect::<Vec<_>>()).rounded(),
            "latency_from_publish_ms": Summary::of(&samples.iter().filter_map(|s| s.latency_from_publish_ms).collect::<Vec<_>>()).rounded(),
            "fanout_after_ms": Summary::of(&samples.iter().filter_map(|s| s.fanout_after_ms).collect::<Vec<_>>()).rounded(),
            "preconfirmed_breakdown_ms": breakdown(&samples),
            "first_poll_after_ms": Summary::of(&samples.iter().map(|s| s.first_poll_after_ms).collect::<Vec<_>>()).rounded(),
            "polls_per_sample": Summary::of(&samples.iter().map(|s| s.polls as f64).collect::<Vec<_>>()),
            "hit_on_first_poll": samples.iter().filter(|s| s.polls == 1 && s.latency_ms.is_some()).count(),
            "served_preconfirmed": samples.iter().filter(|s| s.preconfirmed == Some(true)).count(),
            "served_after_seal": samples.iter().filter(|s| s.preconfirmed == Some(false)).count(),
            "probe_errors": samples.iter().map(|s| s.errors as u64).sum::<u64>(),
            "measured_secs": r3(measured_secs),
            "flashblocks_seen": frames_seen,
            "tx_count_per_flashblock_all": {
                "summary": Summary::of(&counts_all.iter().map(|c| *c as f64).collect::<Vec<_>>()),
                "histogram": histogram(&counts_all),
            },
            "tx_count_per_flashblock_measured": {
                "summary": Summary::of(&counts_measured.iter().map(|c| *c as f64).collect::<Vec<_>>()),
                "histogram": histogram(&counts_measured),
            },
        },
        "send": SendReport {
            presigned,
            sent: sent_n,
            errors: send_errors.load(Ordering::Relaxed),
            first_errors: first_errors.lock().await.clone(),
            achieved_rate: r3(sent_n as f64 / send_secs),
        },
        "node": {
            "log": dev.running.proc.log.display().to_string(),
            "metrics": dev.metrics,
            "overlay_apply_seconds": apply,
            "mode_monitor": modes,
            "log_findings": findings,
        },
        "samples": samples,
    });
    Ok(result)
}

/// Polls the node until `hash` has a receipt.
#[allow(clippy::too_many_arguments)]
async fn probe(
    conn: &mut KeepAlive,
    t0: Instant,
    t0_unix_us: u64,
    hash: B256,
    block: u64,
    index: u64,
    txs: usize,
    timeout: Duration,
    interval: Duration,
) -> Sample {
    let body = rpc_body("eth_getTransactionReceipt", json!([hash]));
    let first_poll_after_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (mut polls, mut errors) = (0u32, 0u32);
    let mut found: Option<(Instant, Value)> = None;
    while t0.elapsed() < timeout {
        if polls > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        polls += 1;
        match conn.post(&body).await {
            Ok(bytes) => {
                let t1 = Instant::now();
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) if !v["result"].is_null() => {
                        found = Some((t1, v["result"].clone()));
                        break;
                    }
                    Ok(v) if !v["error"].is_null() => errors += 1,
                    Ok(_) => {}
                    Err(_) => errors += 1,
                }
            }
            Err(_) => errors += 1,
        }
    }
    let mut preconfirmed = None;
    let latency_ms = found.map(|(t1, receipt)| {
        let l = (t1 - t0).as_secs_f64() * 1e3;
        (l, receipt)
    });
    if let Some((_, receipt)) = &latency_ms {
        if let Ok(tip) = conn.call("eth_blockNumber", json!([])).await {
            if let (Some(tip), Some(rb)) =
                (quantity(&tip["result"]), quantity(&receipt["blockNumber"]))
            {
                preconfirmed = Some(rb > tip);
            }
        }
    }
    Sample {
        block,
        index,
        txs,
        tx: hash,
        t0_unix_us,
        fanout_after_ms: None,
        t0_after_publish_ms: None,
        latency_from_publish_ms: None,
        node_before_apply_ms: None,
        node_apply_ms: None,
        node_publish_ms: None,
        receipt_after_applied_ms: None,
        latency_ms: latency_ms.map(|(l, _)| r3(l)),
        first_poll_after_ms: r3(first_poll_after_ms),
        polls,
        preconfirmed,
        errors,
    }
}

/// Signs `per_key` transfers for each dev key (nonces 0..per_key) as ready-to-send JSON-RPC
/// bodies, on all cores. Shared by the ingest and fan-out scenarios.
pub(crate) fn presign(per_key: usize) -> Vec<Vec<String>> {
    let to = TxKind::Call(Address::repeat_byte(0x42));
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1);
    let mut out: Vec<Vec<String>> = vec![Vec::new(); DEV_KEYS.len()];
    std::thread::scope(|s| {
        let chunks: Vec<Vec<usize>> = (0..threads)
            .map(|t| (0..DEV_KEYS.len()).filter(|k| k % threads == t).collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|keys| {
                s.spawn(move || {
                    keys.into_iter()
                        .map(|k| {
                            let bodies = (0..per_key as u64)
                                .map(|nonce| {
                                    // 50 gwei fee cap: far above the 1 gwei genesis base fee even
                                    // after a minute of full blocks.
                                    let raw = sign_1559(
                                        DEV_KEYS[k],
                                        901,
                                        nonce,
                                        to,
                                        U256::from(1),
                                        Bytes::new(),
                                        21_000,
                                        50_000_000_000,
                                    );
                                    rpc_body("eth_sendRawTransaction", json!([raw]))
                                })
                                .collect::<Vec<_>>();
                            (k, bodies)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (k, bodies) in h.join().expect("signing thread") {
                out[k] = bodies;
            }
        }
    });
    out
}

/// Reads a flashblock websocket; every frame is stamped the moment it is read.
async fn spawn_reader(
    url: &str,
) -> anyhow::Result<mpsc::UnboundedReceiver<(Instant, u64, Vec<u8>)>> {
    let (ws, _) =
        tokio_tungstenite::connect_async(url).await.with_context(|| format!("websocket {url}"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (_, mut read) = ws.split();
        while let Some(Ok(msg)) = read.next().await {
            let t = Instant::now();
            let t_unix_us = unix_us();
            let bytes = match msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                _ => continue,
            };
            if tx.send((t, t_unix_us, bytes)).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Where a preconfirmed receipt's latency goes, over the samples served preconfirmed that the
/// node logged: before execution, execution, publish, RPC; and latency / execution per sample.
fn breakdown(samples: &[Sample]) -> Value {
    let served: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.preconfirmed == Some(true) && s.node_apply_ms.is_some())
        .collect();
    let of = |f: &dyn Fn(&Sample) -> Option<f64>| {
        Summary::of(&served.iter().filter_map(|s| f(s)).collect::<Vec<_>>()).rounded()
    };
    json!({
        "samples": served.len(),
        "before_apply": of(&|s| s.node_before_apply_ms),
        "apply": of(&|s| s.node_apply_ms),
        "publish": of(&|s| s.node_publish_ms),
        "receipt_after_applied": of(&|s| s.receipt_after_applied_ms),
        "latency": of(&|s| s.latency_ms),
        "latency_over_apply": of(&|s| Some(s.latency_ms? / s.node_apply_ms?.max(0.001))),
    })
}
