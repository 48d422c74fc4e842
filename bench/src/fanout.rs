//! `fanout`: delivery latency of the node's raw flashblock fan-out (`--flashblocks-addr`, `/ws`)
//! to 1,000 and 10,000 websocket subscribers on loopback, and what they cost the node.
//!
//! For each subscriber count a fresh `flashnode dev` runs (2 s blocks, 200 ms flashblocks, i.e.
//! 5.5 frames/s incl. index 0) while pre-signed transfers are submitted to the node's RPC so
//! each flashblock carries ~80 transactions (frames of tens of KB):
//!
//! 1. warm-up, then a baseline window without subscribers: node CPU (utime + stime from
//!    `/proc/<pid>/stat`) and RSS (VmRSS);
//! 2. N subscribers connect to the fan-out (per-IP and global limits raised by flags);
//! 3. a measuring window: every subscriber records the instant it reads the last byte of each
//!    message, keyed by the `payload_id` and `index` found in the message's first bytes (no
//!    JSON parse per subscriber); a reference client on the devnet's own source websocket (the
//!    stream the node ingests) records t0 for each frame on its own thread.
//!
//! Latency of a frame = (last subscriber's receive instant) − t0; per-delivery latency =
//! (each subscriber's receive instant) − t0. The subscribers are a hand-rolled websocket
//! client (handshake, frame headers, pong replies; payload bytes are read into one
//! thread-local scratch buffer and dropped) on the bench's 2-worker tokio runtime, so the bench
//! competes with the node for the machine's cores; its CPU is reported next to the node's.
//!
//! `--brotli` has the subscribers ask for brotli Binary frames (`/ws?compress=brotli`); the
//! reference client compresses each source frame with the node's encoder and keys it by a hash
//! of the compressed message's first bytes and length, so subscribers still decompress nothing.

use crate::{
    http::KeepAlive,
    node::{findings_in, log_findings, ModeMonitor},
    stats::{loadavg, r3, Machine, Summary},
};
use anyhow::Context;
use clap::Args;
use flashnode_tests::{decode_frame, free_port, Proc, Running, DEV_KEYS};
use futures::StreamExt;
use serde_json::{json, Value};
use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::Message;

/// `fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Subscriber counts; each runs against a fresh node.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub subscribers: Vec<usize>,
    /// Transactions per second submitted to the node (spread over the 10 dev keys).
    #[arg(long, default_value_t = 400)]
    pub rate: u64,
    /// Devnet block time, ms.
    #[arg(long, default_value_t = 2000)]
    pub block_time_ms: u64,
    /// Devnet flashblock interval, ms.
    #[arg(long, default_value_t = 200)]
    pub flashblock_interval_ms: u64,
    /// Seconds of transaction load before the baseline window.
    #[arg(long, default_value_t = 4)]
    pub warmup_secs: u64,
    /// Baseline window without subscribers, seconds.
    #[arg(long, default_value_t = 10)]
    pub baseline_secs: u64,
    /// Seconds between the last subscriber connecting and the measuring window.
    #[arg(long, default_value_t = 3)]
    pub settle_secs: u64,
    /// Measuring window, seconds.
    #[arg(long, default_value_t = 30)]
    pub measure_secs: u64,
    /// After the window, how long subscribers keep reading so frames sent in it can arrive, ms.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
    /// Subscriber handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// The node's `--ws-buffer` (messages a client may lag before it is dropped).
    #[arg(long, default_value_t = 20)]
    pub ws_buffer: usize,
    /// Measure the floor instead of the node: subscribers connect to a minimal relay of the
    /// devnet's stream (one raw write per socket, see `fanout_floor`), the node runs unchanged
    /// without subscribers.
    #[arg(long)]
    pub floor: bool,
    /// Subscribers connect through this many `flashnode relay` processes chained after the
    /// node's fan-out (1: node → relay, 2: node → relay → relay, a two-level tree); CPU and
    /// memory are the last relay's, latency is still from the devnet's source stream.
    #[arg(long, default_value_t = 0, conflicts_with = "floor")]
    pub relays: usize,
    /// Subscribers ask for brotli Binary frames (`/ws?compress=brotli`, as consumers of Base's
    /// compressed stream do); in a floor run the relay compresses each frame once.
    #[arg(long)]
    pub brotli: bool,
    /// Open-file limit set for the bench (and inherited by the node).
    #[arg(long, default_value_t = 65_536)]
    pub nofile: u64,
}

/// One frame as the reference client on the devnet's source websocket saw it.
#[derive(Debug, Clone)]
struct RefFrame {
    t0: Instant,
    payload_id: u64,
    index: u32,
    block: u64,
    txs: usize,
    bytes: usize,
    /// With `--brotli`: the key a subscriber computes from the compressed message, and its size.
    brotli_key: Option<u64>,
    brotli_bytes: Option<usize>,
}

/// What one subscriber saw: (payload_id, index, receive instant) per message, and how it ended.
#[derive(Debug, Default)]
struct SubLog {
    recs: Mutex<Vec<(u64, u32, Instant)>>,
    unparsed: AtomicU64,
    ended: Mutex<Option<(Instant, String)>>,
}

/// Runs every subscriber count and returns the result document.
pub async fn run(args: FanoutArgs) -> anyhow::Result<Value> {
    let nofile = raise_nofile(args.nofile);
    let machine = Machine::read();
    let started_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let longest_connect = args.subscribers.iter().max().copied().unwrap_or(0) as u64 / 200 + 30;
    let run_secs = args.warmup_secs
        + args.baseline_secs
        + longest_connect
        + args.settle_secs
        + args.measure_secs
        + 10;
    let per_key = (args.rate * run_secs).div_ceil(DEV_KEYS.len() as u64) as usize;
    eprintln!("fanout: pre-signing {} transfers…", per_key * DEV_KEYS.len());
    let bodies = Arc::new(crate::ingest::presign(per_key));

    let mut runs = Vec::new();
    for &n in &args.subscribers {
        let r =
            run_one(&args, n, bodies.clone()).await.with_context(|| format!("{n} subscribers"))?;
        let res = &r["result"];
        eprintln!(
            "fanout {n:>6} subscribers: ingest→last subscriber p50 {} ms p99 {} ms | first→last p50 {} ms p99 {} ms | per delivery p50 {} ms p99 {} ms | missed {} not fanned out {} disconnects {} | node CPU +{} cores, RSS +{} KiB/subscriber | bench CPU {} cores | other processes {} cores",
            res["ingest_to_last_subscriber_ms"]["p50"],
            res["ingest_to_last_subscriber_ms"]["p99"],
            res["first_to_last_subscriber_ms"]["p50"],
            res["first_to_last_subscriber_ms"]["p99"],
            res["per_delivery_ms"]["p50"],
            res["per_delivery_ms"]["p99"],
            res["frames_missed"],
            res["frames_not_fanned_out"],
            res["disconnects"],
            r["node"]["cpu_cores_added"],
            r["node"]["rss_kib_per_subscriber"],
            r["bench_client"]["cpu_cores"],
            r["other_processes_cpu_cores_in_window"],
        );
        runs.push(r);
    }
    Ok(json!({
        "scenario": match (args.floor, args.relays, args.brotli) {
            (true, _, false) => "fanout-floor",
            (true, _, true) => "fanout-floor-brotli",
            (false, 0, false) => "fanout",
            (false, 0, true) => "fanout-brotli",
            (false, 1, _) => "fanout-relay",
            (false, _, _) => "fanout-tree",
        },
        "started_unix": started_unix,
        "machine": machine,
        "nofile_limit": nofile,
        "loadavg_at_end": loadavg(),
        "config": {
            "subscribers": args.subscribers,
            "rate_tx_per_s": args.rate,
            "block_time_ms": args.block_time_ms,
            "flashblock_interval_ms": args.flashblock_interval_ms,
            "warmup_secs": args.warmup_secs,
            "baseline_secs": args.baseline_secs,
            "settle_secs": args.settle_secs,
            "measure_secs": args.measure_secs,
            "grace_ms": args.grace_ms,
            "ws_buffer": args.ws_buffer,
            "relays": args.relays,
            "frames": if args.brotli { "brotli Binary (subscribers connect to /ws?compress=brotli; quality 5, window 22, as Base's proxy)" } else { "Text JSON, as received" },
            "t0": "the instant a reference websocket client (own thread, own current-thread runtime) reads the frame from the devnet's source websocket, the loopback stream the node ingests",
            "per_delivery": "the instant a subscriber reads the last byte of the message from the node's fan-out (/ws), minus t0",
            "ingest_to_last_subscriber": "per frame, max over subscribers of the receive instant, minus t0",
            "ingest_to_first_subscriber": "per frame, min over subscribers of the receive instant, minus t0: mostly the node's execution of the flashblock (the fan-out publishes a frame once it is applied)",
            "first_to_last_subscriber": "per frame, last minus first subscriber's receive instant: the fan-out's own spread",
            "subscribers": "hand-rolled websocket clients, one tokio task each, on the bench's 2-worker runtime: frame headers parsed, payload_id and index read from the first 128 bytes of each message (brotli messages: a hash of their first 128 bytes and length, matched against the reference client's own compression of each frame; nothing is decompressed), payload bytes discarded; pings answered",
            "shared_cores": "the bench (subscribers, reference client, transaction senders) runs on the same 2 cores as the node",
        },
        "runs": runs,
    }))
}

async fn run_one(
    args: &FanoutArgs,
    n: usize,
    bodies: Arc<Vec<Vec<String>>>,
) -> anyhow::Result<Value> {
    let source_port = free_port();
    let limit = (n + 1000).max(10_000);
    let fanout_flags: Vec<String> = vec![
        "--ws-per-ip-limit".into(),
        limit.to_string(),
        "--ws-global-limit".into(),
        limit.to_string(),
        "--ws-buffer".into(),
        args.ws_buffer.to_string(),
    ];
    let mut extra: Vec<String> = vec![
        "--block-time".into(),
        format!("{}ms", args.block_time_ms),
        "--flashblock-interval".into(),
        format!("{}ms", args.flashblock_interval_ms),
    ];
    extra.extend(fanout_flags.iter().cloned());
    let dev =
        start_node(source_port, &extra, Duration::from_millis(args.block_time_ms * 2 + 10_000))
            .await?;
    let fanout_url = dev.running.ws.clone();
    let fanout_addr = fanout_url.trim_start_matches("ws://").trim_end_matches("/ws").to_string();
    let node_pid = find_child_pid(&fanout_addr).context("the node's pid")?;
    let floor = if args.floor {
        Some(crate::fanout_floor::FloorRelay::start(
            &format!("ws://127.0.0.1:{source_port}/ws"),
            args.brotli,
        )?)
    } else {
        None
    };
    let relays = RelayChain::start(&fanout_url, args.relays, &fanout_flags).await?;
    // In a floor or relay run the subscribers and the CPU/RSS sampling go to the (last) relay.
    let (fanout_addr, pid) = match (&floor, relays.last()) {
        (Some(relay), _) => (relay.addr.clone(), relay.pid()),
        (None, Some((addr, pid))) => (addr, pid),
        (None, None) => (fanout_addr, node_pid),
    };
    eprintln!("fanout[{n}]: node pid {node_pid}, measured pid {pid}, fan-out {fanout_addr}, devnet source ws://127.0.0.1:{source_port}/ws (log {})", dev.running.proc.log.display());

    // Reference client and transaction load, each on its own thread and runtime, so neither
    // waits behind the subscribers on the bench's main runtime.
    let stop = Arc::new(AtomicBool::new(false));
    let ref_frames: Arc<Mutex<Vec<RefFrame>>> = Arc::default();
    let ref_thread = {
        let (url, frames, stop, brotli) = (
            format!("ws://127.0.0.1:{source_port}/ws"),
            ref_frames.clone(),
            stop.clone(),
            args.brotli,
        );
        std::thread::Builder::new()
            .name("fanout-ref".into())
            .spawn(move || reference_client(url, frames, stop, brotli))?
    };
    let sent = Arc::new(AtomicU64::new(0));
    let send_errors = Arc::new(AtomicU64::new(0));
    let first_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (load_handle_tx, load_handle_rx) = std::sync::mpsc::channel();
    let (load_stop_tx, load_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let load_thread = std::thread::Builder::new().name("fanout-load".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("load runtime");
        let _ = load_handle_tx.send(rt.handle().clone());
        let _ = rt.block_on(load_stop_rx);
    })?;
    let load = load_handle_rx.recv()?;
    let period = Duration::from_micros(1_000_000 * DEV_KEYS.len() as u64 / args.rate.max(1));
    for k in 0..DEV_KEYS.len() {
        let (rpc, stop, sent, send_errors, first_errors, bodies) = (
            dev.running.rpc.clone(),
            stop.clone(),
            sent.clone(),
            send_errors.clone(),
            first_errors.clone(),
            bodies.clone(),
        );
        load.spawn(async move {
            tokio::time::sleep(period * k as u32 / DEV_KEYS.len() as u32).await;
            let Ok(mut conn) = KeepAlive::connect(&rpc).await else { return };
            let mut tick = tokio::time::interval(period);
            for body in &bodies[k] {
                tick.tick().await;
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let res = conn.post(body).await.map_err(|e| e.to_string()).and_then(|b| {
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
                    let mut fe = first_errors.lock().unwrap();
                    if fe.len() < 10 {
                        fe.push(format!("key {k}: {e}"));
                    }
                }
            }
        });
    }
    let monitor = {
        let _guard = load.enter();
        ModeMonitor::spawn(dev.running.rpc.clone(), Duration::from_millis(100))
    };

    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
    eprintln!("fanout[{n}]: baseline {}s without subscribers", args.baseline_secs);
    let base0 = Sample::take(pid);
    tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
    let base1 = Sample::take(pid);

    // Connect the subscribers.
    eprintln!("fanout[{n}]: connecting {n} subscribers");
    let connect_started = Instant::now();
    let logs: Vec<Arc<SubLog>> = (0..n).map(|_| Arc::new(SubLog::default())).collect();
    let mut tasks = Vec::with_capacity(n);
    let mut connect_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut handshake_ms: Vec<f64> = Vec::with_capacity(n);
    {
        let addr = fanout_addr.clone();
        let path = if args.brotli { "/ws?compress=brotli" } else { "/ws" };
        let mut pending = futures::stream::iter(logs.iter().cloned().enumerate())
            .map(|(i, log)| {
                let addr = addr.clone();
                async move {
                    let started = Instant::now();
                    let mut last_err = String::new();
                    for attempt in 0..5 {
                        if attempt > 0 {
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        match handshake(&addr, path).await {
                            Ok(c) => return (i, log, Ok(c), started.elapsed(), last_err),
                            Err(e) => last_err = e.to_string(),
                        }
                    }
                    (i, log, Err(last_err.clone()), started.elapsed(), last_err)
                }
            })
            .buffer_unordered(args.connect_concurrency.max(1));
        while let Some((_, log, res, took, last_err)) = pending.next().await {
            if !last_err.is_empty() {
                *connect_errors.entry(last_err).or_insert(0) += 1;
            }
            match res {
                Ok((stream, leftover)) => {
                    handshake_ms.push(took.as_secs_f64() * 1e3);
                    tasks.push(tokio::spawn(subscriber(stream, leftover, log)));
                }
                Err(e) => {
                    *log.ended.lock().unwrap() =
                        Some((Instant::now(), format!("connect failed: {e}")))
                }
            }
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connected = tasks.len();
    eprintln!("fanout[{n}]: {connected} connected in {connect_secs:.1}s; settling {}s, then measuring {}s", args.settle_secs, args.measure_secs);
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;

    let w0 = Sample::take(pid);
    let t_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.measure_secs)).await;
    let t_end = Instant::now();
    let w1 = Sample::take(pid);
    tokio::time::sleep(Duration::from_millis(args.grace_ms)).await;
    let after = Sample::take(pid);

    // Stop the load and the reference client; collect.
    stop.store(true, Ordering::Release);
    let modes = monitor.finish().await;
    let _ = load_stop_tx.send(());
    let _ = load_thread.join();
    let _ = ref_thread.join();
    for t in &tasks {
        t.abort();
    }
    let findings = log_findings(&dev.running);
    let status = modes.final_status.clone();
    let dev_args = dev.args.clone();
    let ref_all = std::mem::take(&mut *ref_frames.lock().unwrap());
    let relay_findings = relays.log_findings();
    drop(floor);
    drop(relays);
    drop(dev);

    // Frames whose t0 falls in the measuring window.
    let window: Vec<&RefFrame> =
        ref_all.iter().filter(|f| f.t0 >= t_start && f.t0 <= t_end).collect();
    let key_of: HashMap<(u64, u32), usize> = window
        .iter()
        .enumerate()
        .map(|(i, f)| (f.brotli_key.map_or((f.payload_id, f.index), |k| (k, BROTLI_INDEX)), i))
        .collect();
    let mut first = vec![f64::INFINITY; window.len()];
    let mut last = vec![f64::NEG_INFINITY; window.len()];
    let mut got = vec![0usize; window.len()];
    let mut per_delivery: Vec<f64> = Vec::with_capacity(window.len() * n);
    let mut per_sub_p50: Vec<f64> = Vec::with_capacity(n);
    let mut per_sub_max: Vec<f64> = Vec::with_capacity(n);
    let mut disconnect_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut disconnects = 0usize;
    let mut live_seen: Vec<Vec<bool>> = Vec::new();
    let mut unparsed = 0u64;
    let mut duplicates = 0usize;
    for log in &logs {
        unparsed += log.unparsed.load(Ordering::Relaxed);
        let ended = log.ended.lock().unwrap().clone();
        if let Some((_, reason)) = &ended {
            disconnects += 1;
            *disconnect_reasons.entry(reason.clone()).or_insert(0) += 1;
        }
        let recs = log.recs.lock().unwrap();
        let mut seen = vec![false; window.len()];
        let mut mine = Vec::new();
        for (pid_, idx, at) in recs.iter() {
            let Some(&i) = key_of.get(&(*pid_, *idx)) else { continue };
            if seen[i] {
                duplicates += 1;
                continue;
            }
            seen[i] = true;
            let ms = at.saturating_duration_since(window[i].t0).as_secs_f64() * 1e3;
            got[i] += 1;
            first[i] = first[i].min(ms);
            last[i] = last[i].max(ms);
            per_delivery.push(ms);
            mine.push(ms);
        }
        if ended.is_none() {
            live_seen.push(seen);
        }
        if !mine.is_empty() {
            let s = Summary::of(&mine);
            per_sub_p50.push(s.p50);
            per_sub_max.push(s.max);
        }
    }
    let frames_delivered_to_all = got.iter().filter(|g| **g == connected).count();
    // A frame no subscriber got was never fanned out (the node did not apply it, e.g. stale);
    // one that some got and a live subscriber did not is a miss.
    let fanned_out: Vec<bool> = got.iter().map(|g| *g > 0).collect();
    let frames_not_fanned_out = fanned_out.iter().filter(|f| !**f).count();
    let missed_by_live: usize = live_seen
        .iter()
        .map(|seen| seen.iter().zip(&fanned_out).filter(|(s, f)| **f && !**s).count())
        .sum();
    let lasts: Vec<f64> = last.iter().copied().filter(|v| v.is_finite()).collect();
    let firsts: Vec<f64> = first.iter().copied().filter(|v| v.is_finite()).collect();
    let spreads: Vec<f64> = first
        .iter()
        .zip(&last)
        .filter(|(f, l)| f.is_finite() && l.is_finite())
        .map(|(f, l)| l - f)
        .collect();
    let frame_bytes: Vec<f64> = window.iter().map(|f| f.bytes as f64).collect();
    let brotli_bytes: Vec<f64> =
        window.iter().filter_map(|f| f.brotli_bytes).map(|b| b as f64).collect();
    let frame_txs: Vec<f64> = window.iter().map(|f| f.txs as f64).collect();
    let per_frame: Vec<Value> = window
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "block": f.block, "index": f.index, "txs": f.txs, "bytes": f.bytes, "received_by": got[i],
                "first_ms": if first[i].is_finite() { Some(r3(first[i])) } else { None },
                "last_ms": if last[i].is_finite() { Some(r3(last[i])) } else { None },
            })
        })
        .collect();

    // CPU and memory.
    let tck = clk_tck();
    let base_secs = (base1.at - base0.at).as_secs_f64();
    let win_secs = (w1.at - w0.at).as_secs_f64();
    let node_base_cores = (base1.node_ticks - base0.node_ticks) as f64 / tck / base_secs;
    let node_win_cores = (w1.node_ticks - w0.node_ticks) as f64 / tck / win_secs;
    let added = node_win_cores - node_base_cores;
    let deliveries_per_sec = per_delivery.len() as f64 / win_secs;
    let bench_cores = (w1.bench_ticks - w0.bench_ticks) as f64 / tck / win_secs;
    let machine_busy = w1.machine.busy_fraction_since(&w0.machine);
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    // CPU used by neither the node nor the bench (other work on the machine) in each window.
    let other_cores = |a: &Sample, b: &Sample| {
        let secs = (b.at - a.at).as_secs_f64();
        let node = (b.node_ticks - a.node_ticks) as f64 / tck / secs;
        let bench = (b.bench_ticks - a.bench_ticks) as f64 / tck / secs;
        r3((b.machine.busy_fraction_since(&a.machine) * nproc - node - bench).max(0.0))
    };
    let rss_added = after.node_rss_kib as f64 - base1.node_rss_kib as f64;
    let thread_cores = |a: &BTreeMap<String, (usize, u64)>,
                        b: &BTreeMap<String, (usize, u64)>|
     -> BTreeMap<String, f64> {
        b.iter()
            .map(|(k, (_, v))| {
                (
                    k.clone(),
                    r3(v.saturating_sub(a.get(k).map(|x| x.1).unwrap_or(0)) as f64
                        / tck
                        / win_secs),
                )
            })
            .collect()
    };

    let sent_n = sent.load(Ordering::Relaxed);
    Ok(json!({
        "target": match (args.floor, args.relays) {
            (true, _) => "floor relay (one raw write per subscriber, no execution)".to_string(),
            (false, 0) => "node fan-out".to_string(),
            (false, 1) => "flashnode relay of the node's fan-out".to_string(),
            (false, n) => format!("the last of {n} chained flashnode relays (node → relay → … → subscribers)"),
        },
        "relay_log_findings": relay_findings,
        "subscribers": n,
        "flashnode_args": dev_args,
        "connected": connected,
        "connect": {
            "secs": r3(connect_secs),
            "handshake_ms": Summary::of(&handshake_ms).rounded(),
            "errors": connect_errors,
        },
        "result": {
            "frames_in_window": window.len(),
            "frames_per_sec": r3(window.len() as f64 / win_secs),
            "frame_bytes": Summary::of(&frame_bytes).rounded(),
            "brotli_message_bytes": (!brotli_bytes.is_empty()).then(|| Summary::of(&brotli_bytes).rounded()),
            "txs_per_frame": Summary::of(&frame_txs).rounded(),
            "ingest_to_last_subscriber_ms": Summary::of(&lasts).rounded(),
            "ingest_to_first_subscriber_ms": Summary::of(&firsts).rounded(),
            "first_to_last_subscriber_ms": Summary::of(&spreads).rounded(),
            "per_delivery_ms": Summary::of(&per_delivery).rounded(),
            "per_subscriber_median_ms": Summary::of(&per_sub_p50).rounded(),
            "per_subscriber_max_ms": Summary::of(&per_sub_max).rounded(),
            "deliveries": per_delivery.len(),
            "frames_delivered_to_every_subscriber": frames_delivered_to_all,
            "frames_missed": missed_by_live,
            "frames_not_fanned_out": frames_not_fanned_out,
            "disconnects": disconnects,
            "disconnect_reasons": disconnect_reasons,
            "unparsed_messages": unparsed,
            "duplicate_messages": duplicates,
        },
        "node": {
            "pid": pid,
            "cpu_cores_baseline": r3(node_base_cores),
            "cpu_cores_with_subscribers": r3(node_win_cores),
            "cpu_cores_added": r3(added),
            "cpu_us_per_subscriber_per_sec": r3(added * 1e6 / n as f64),
            "cpu_us_per_delivery": r3(added * 1e6 / deliveries_per_sec),
            "cpu_cores_by_thread": thread_cores(&w0.node_threads, &w1.node_threads),
            "rss_kib_before_subscribers": base1.node_rss_kib,
            "rss_kib_with_subscribers": after.node_rss_kib,
            "rss_kib_added": rss_added,
            "rss_kib_per_subscriber": r3(rss_added / n as f64),
            "rss_hwm_kib": after.node_hwm_kib,
            "kernel_tcp_mem_kib_before": base1.tcp_mem_kib,
            "kernel_tcp_mem_kib_with_subscribers": w1.tcp_mem_kib,
            "threads": w1.node_threads.values().map(|(n, _)| n).sum::<usize>(),
            "log_findings": findings,
            "mode_monitor": modes,
            "final_status": status,
        },
        "bench_client": {
            "cpu_cores": r3(bench_cores),
            "cpu_cores_by_thread": thread_cores(&w0.bench_threads, &w1.bench_threads),
        },
        "machine_cpu_busy_fraction_in_window": r3(machine_busy),
        "other_processes_cpu_cores_baseline": other_cores(&base0, &base1),
        "other_processes_cpu_cores_in_window": other_cores(&w0, &w1),
        "steal_cores_in_window": r3(w1.machine.steal_fraction_since(&w0.machine) * nproc),
        "loadavg_at_end": loadavg(),
        "send": {
            "sent": sent_n,
            "errors": send_errors.load(Ordering::Relaxed),
            "first_errors": first_errors.lock().unwrap().clone(),
        },
        "reference_frames_total": ref_all.len(),
        "frames": per_frame,
    }))
}

/// `flashnode relay` processes chained after the node's fan-out (`--relays`), killed on drop.
struct RelayChain {
    /// Each relay with its fan-out's host:port, upstream first.
    relays: Vec<(Proc, String)>,
}

impl RelayChain {
    /// Starts `levels` relays, the first fed by `upstream`, each next one by the one before;
    /// `fanout_flags` go to every relay. Returns once each listens.
    async fn start(upstream: &str, levels: usize, fanout_flags: &[String]) -> anyhow::Result<Self> {
        let mut chain = Self { relays: Vec::with_capacity(levels) };
        let mut upstream = upstream.to_string();
        for level in 0..levels {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut args: Vec<String> = vec![
                "relay".into(),
                "--flashblocks-url".into(),
                upstream.clone(),
                "--flashblocks-addr".into(),
                addr.clone(),
            ];
            args.extend(fanout_flags.iter().cloned());
            let proc = Proc::flashnode(&args);
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(&addr).await.is_err() {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "relay {level} did not listen on {addr}:\n{}",
                    proc.output()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            upstream = format!("ws://{addr}/ws");
            chain.relays.push((proc, addr));
        }
        Ok(chain)
    }

    /// The last relay's fan-out address and pid.
    fn last(&self) -> Option<(String, u32)> {
        self.relays.last().map(|(proc, addr)| (addr.clone(), proc.id()))
    }

    /// Warnings and errors in the relays' logs.
    fn log_findings(&self) -> Vec<String> {
        self.relays.iter().flat_map(|(proc, _)| findings_in(&proc.output())).collect()
    }
}

/// A `flashnode dev` started by this scenario.
struct DevNode {
    running: Running,
    args: Vec<String>,
}

/// Starts `flashnode dev` on free loopback ports, the devnet's source websocket on
/// `source_port`, with `extra` flags; waits until the node serves flashblocks.
async fn start_node(
    source_port: u16,
    extra: &[String],
    ready_within: Duration,
) -> anyhow::Result<DevNode> {
    let (rpc, devnet_rpc, fanout) = (free_port(), free_port(), free_port());
    let mut args: Vec<String> = vec![
        "dev".into(),
        "--rpc-addr".into(),
        format!("127.0.0.1:{rpc}"),
        "--devnet-rpc-addr".into(),
        format!("127.0.0.1:{devnet_rpc}"),
        "--flashblocks-addr".into(),
        format!("127.0.0.1:{fanout}"),
        "--devnet-flashblocks-addr".into(),
        format!("127.0.0.1:{source_port}"),
    ];
    args.extend(extra.iter().cloned());
    let running = Running {
        proc: Proc::flashnode(&args),
        rpc: format!("http://127.0.0.1:{rpc}"),
        ws: format!("ws://127.0.0.1:{fanout}/ws"),
    };
    let deadline = Instant::now() + ready_within;
    while Instant::now() < deadline {
        if let Ok(mut node) = KeepAlive::connect(&running.rpc).await {
            if node
                .call("flashnode_status", json!([]))
                .await
                .is_ok_and(|s| s["result"]["mode"] == "flashblocks")
            {
                return Ok(DevNode { running, args });
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "flashnode dev did not serve flashblocks within {ready_within:?}:\n{}",
        running.proc.output()
    )
}

/// The reference client: the devnet's source websocket, t0 taken as each frame is read.
fn reference_client(
    url: String,
    frames: Arc<Mutex<Vec<RefFrame>>>,
    stop: Arc<AtomicBool>,
    brotli: bool,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("reference runtime");
    rt.block_on(async move {
        let Ok((ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            eprintln!("fanout: cannot connect the reference client to {url}");
            return;
        };
        let (_, mut read) = ws.split();
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), read.next()).await;
            if stop.load(Ordering::Acquire) {
                return;
            }
            let msg = match next {
                Err(_) => continue,
                Ok(Some(Ok(m))) => m,
                Ok(_) => return,
            };
            let t0 = Instant::now();
            let bytes = match &msg {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b.as_ref(),
                _ => continue,
            };
            let Ok(v) = decode_frame(bytes) else { continue };
            // The node re-publishes the JSON as received and compresses it with the same encoder,
            // so compressing it here gives the bytes a brotli subscriber will read.
            let compressed = brotli
                .then(|| flashnode_overlay::decode_frame(bytes, 16 << 20).ok())
                .flatten()
                .map(|f| flashnode_fanout::encode_brotli(f.raw_json.as_bytes()));
            let Some(payload_id) = v["payload_id"]
                .as_str()
                .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            else {
                continue;
            };
            frames.lock().unwrap().push(RefFrame {
                t0,
                payload_id,
                index: v["index"].as_u64().unwrap_or(0) as u32,
                block: v["metadata"]["block_number"].as_u64().unwrap_or(0),
                txs: v["diff"]["transactions"].as_array().map(Vec::len).unwrap_or(0),
                bytes: bytes.len(),
                brotli_key: compressed.as_deref().map(brotli_message_key),
                brotli_bytes: compressed.as_ref().map(Vec::len),
            });
        }
    });
}

/// Opens a websocket to `addr` (host:port) on `/ws`; returns the stream and any bytes read past
/// the handshake response.
async fn handshake(addr: &str, path: &str) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .context("connect timeout")??;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .context("handshake timeout")??;
        anyhow::ensure!(r > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..r]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        anyhow::ensure!(buf.len() < 16 * 1024, "handshake response too long");
    };
    let status = buf
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    anyhow::ensure!(status.contains(" 101"), "handshake answered {status:?}");
    Ok((s, buf[end..].to_vec()))
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 256 * 1024]);
}

/// Reads one subscriber's stream until it ends, recording each message's key and arrival.
async fn subscriber(stream: TcpStream, leftover: Vec<u8>, log: Arc<SubLog>) {
    let mut parser = WsParser::default();
    let mut out = Vec::new();
    parser.feed(&leftover, &mut out);
    let now = Instant::now();
    if let Some(reason) = handle(&stream, &log, &mut out, now).await {
        *log.ended.lock().unwrap() = Some((Instant::now(), reason));
        return;
    }
    loop {
        if let Err(e) = stream.readable().await {
            *log.ended.lock().unwrap() = Some((Instant::now(), format!("readable: {e}")));
            return;
        }
        let res = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            match stream.try_read(&mut s[..]) {
                Ok(0) => Err("eof".to_string()),
                Ok(n) => {
                    parser.feed(&s[..n], &mut out);
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(format!("read: {e}")),
            }
        });
        let now = Instant::now();
        let reason = match res {
            Err(r) => Some(r),
            Ok(()) => handle(&stream, &log, &mut out, now).await,
        };
        if let Some(reason) = reason {
            *log.ended.lock().unwrap() = Some((Instant::now(), reason));
            return;
        }
    }
}

/// Records messages, answers pings; returns why the connection ended, if it did.
async fn handle(
    stream: &TcpStream,
    log: &SubLog,
    out: &mut Vec<WsEvent>,
    now: Instant,
) -> Option<String> {
    for ev in out.drain(..) {
        match ev {
            WsEvent::Message(key) => match key {
                Some((key, index)) => log.recs.lock().unwrap().push((key, index, now)),
                None => {
                    log.unparsed.fetch_add(1, Ordering::Relaxed);
                }
            },
            WsEvent::Ping(payload) => {
                // Client frames are masked; a zero mask leaves the payload as is.
                let mut pong = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                let mut off = 0;
                while off < pong.len() {
                    if stream.writable().await.is_err() {
                        return Some("pong write failed".into());
                    }
                    match stream.try_write(&pong[off..]) {
                        Ok(n) => off += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Some(format!("pong write: {e}")),
                    }
                }
            }
            WsEvent::Close => return Some("closed by the node".into()),
            WsEvent::Protocol(e) => return Some(format!("protocol: {e}")),
        }
    }
    None
}

#[derive(Debug)]
enum WsEvent {
    /// A complete data message and its key: (payload_id, index) found in a Text message's first
    /// bytes, or (`brotli_message_key`, `BROTLI_INDEX`) for a Binary one.
    Message(Option<(u64, u32)>),
    Ping(Vec<u8>),
    Close,
    Protocol(&'static str),
}

const PREFIX: usize = 128;

/// The index recorded for a brotli message, whose first field is a hash instead of a payload id.
const BROTLI_INDEX: u32 = u32::MAX;

/// A brotli message's key: FNV-1a over its first `PREFIX` bytes and its length. Compressed
/// frames start with different bytes (the stream opens with the payload id and index), so the
/// key tells them apart without decompressing.
fn brotli_message_key(message: &[u8]) -> u64 {
    brotli_key_of(&message[..message.len().min(PREFIX)], message.len() as u64)
}

fn brotli_key_of(prefix: &[u8], len: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix.iter().chain(&len.to_le_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Incremental websocket frame reader (server → client frames, never masked). Keeps only the
/// first `PREFIX` bytes of each message and the payload of control frames.
struct WsParser {
    hdr: [u8; 14],
    hlen: usize,
    need: usize,
    in_payload: bool,
    opcode: u8,
    fin: bool,
    remaining: u64,
    prefix: [u8; PREFIX],
    plen: usize,
    /// Opcode of the data message being read (continuations keep it) and its length so far.
    msg_opcode: u8,
    msg_len: u64,
    ctrl: Vec<u8>,
    failed: bool,
}

impl Default for WsParser {
    fn default() -> Self {
        Self {
            hdr: [0; 14],
            hlen: 0,
            need: 2,
            in_payload: false,
            opcode: 0,
            fin: false,
            remaining: 0,
            prefix: [0; PREFIX],
            plen: 0,
            msg_opcode: 0,
            msg_len: 0,
            ctrl: Vec::new(),
            failed: false,
        }
    }
}

impl WsParser {
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<WsEvent>) {
        if self.failed {
            return;
        }
        while !data.is_empty() || (self.in_payload && self.remaining == 0) {
            if !self.in_payload {
                let take = (self.need - self.hlen).min(data.len());
                self.hdr[self.hlen..self.hlen + take].copy_from_slice(&data[..take]);
                self.hlen += take;
                data = &data[take..];
                if self.hlen < self.need {
                    return;
                }
                if self.hlen == 2 {
                    let len7 = self.hdr[1] & 0x7f;
                    let masked = self.hdr[1] & 0x80 != 0;
                    self.need =
                        2 + match len7 {
                            126 => 2,
                            127 => 8,
                            _ => 0,
                        } + if masked { 4 } else { 0 };
                    if self.need > 2 {
                        continue;
                    }
                }
                if self.hdr[1] & 0x80 != 0 {
                    self.failed = true;
                    out.push(WsEvent::Protocol("masked server frame"));
                    return;
                }
                self.fin = self.hdr[0] & 0x80 != 0;
                self.opcode = self.hdr[0] & 0x0f;
                self.remaining = match self.hdr[1] & 0x7f {
                    126 => u16::from_be_bytes([self.hdr[2], self.hdr[3]]) as u64,
                    127 => u64::from_be_bytes(self.hdr[2..10].try_into().expect("8 bytes")),
                    l => l as u64,
                };
                match self.opcode {
                    1 | 2 => {
                        self.plen = 0;
                        self.msg_len = 0;
                        self.msg_opcode = self.opcode;
                    }
                    0 => {}
                    _ => self.ctrl.clear(),
                }
                self.in_payload = true;
                self.hlen = 0;
                self.need = 2;
                continue;
            }
            let take = (self.remaining.min(data.len() as u64)) as usize;
            let chunk = &data[..take];
            if self.opcode < 8 {
                let room = (PREFIX - self.plen).min(chunk.len());
                self.prefix[self.plen..self.plen + room].copy_from_slice(&chunk[..room]);
                self.plen += room;
                self.msg_len += chunk.len() as u64;
            } else {
                self.ctrl.extend_from_slice(chunk);
            }
            self.remaining -= take as u64;
            data = &data[take..];
            if self.remaining == 0 {
                self.in_payload = false;
                match self.opcode {
                    0..=2 if self.fin => out.push(WsEvent::Message(if self.msg_opcode == 2 {
                        Some((brotli_key_of(&self.prefix[..self.plen], self.msg_len), BROTLI_INDEX))
                    } else {
                        parse_key(&self.prefix[..self.plen])
                    })),
                    0..=2 => {}
                    8 => out.push(WsEvent::Close),
                    9 => out.push(WsEvent::Ping(std::mem::take(&mut self.ctrl))),
                    _ => {}
                }
            }
        }
    }
}

/// `payload_id` (hex, as u64) and `index` from the first bytes of a flashblock's JSON.
fn parse_key(prefix: &[u8]) -> Option<(u64, u32)> {
    let find = |pat: &[u8]| prefix.windows(pat.len()).position(|w| w == pat).map(|p| p + pat.len());
    let p = find(b"\"payload_id\":\"0x")?;
    let hex_end = prefix[p..].iter().position(|b| !b.is_ascii_hexdigit())? + p;
    let payload_id =
        u64::from_str_radix(std::str::from_utf8(&prefix[p..hex_end]).ok()?, 16).ok()?;
    let i = find(b"\"index\":")?;
    let digits_end = prefix[i..].iter().position(|b| !b.is_ascii_digit())? + i;
    let index = std::str::from_utf8(&prefix[i..digits_end]).ok()?.parse().ok()?;
    Some((payload_id, index))
}

/// Process and machine counters at one instant.
struct Sample {
    at: Instant,
    node_ticks: u64,
    node_threads: BTreeMap<String, (usize, u64)>,
    node_rss_kib: u64,
    node_hwm_kib: u64,
    bench_ticks: u64,
    bench_threads: BTreeMap<String, (usize, u64)>,
    tcp_mem_kib: u64,
    machine: CpuTimes,
}

impl Sample {
    fn take(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64 / 1024).max(1);
        let tcp_mem_kib = std::fs::read_to_string("/proc/net/sockstat")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("TCP:"))
            .and_then(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "mem")
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * page_kib;
        Self {
            at: Instant::now(),
            node_ticks: proc_ticks(&format!("/proc/{pid}/stat")).map(|(_, t)| t).unwrap_or(0),
            node_threads: thread_ticks(&format!("/proc/{pid}/task")),
            node_rss_kib: kib("VmRSS:"),
            node_hwm_kib: kib("VmHWM:"),
            bench_ticks: proc_ticks("/proc/self/stat").map(|(_, t)| t).unwrap_or(0),
            bench_threads: thread_ticks("/proc/self/task"),
            tcp_mem_kib,
            machine: CpuTimes::read(),
        }
    }
}

/// (comm, utime + stime) from a /proc stat file.
fn proc_ticks(path: &str) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let fields: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // After ") ": state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Thread count and CPU ticks per thread name under a `/proc/<pid>/task` directory.
fn thread_ticks(dir: &str) -> BTreeMap<String, (usize, u64)> {
    let mut out: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Some((comm, t)) = proc_ticks(&format!("{}/stat", e.path().display())) {
                let entry = out.entry(comm).or_default();
                entry.0 += 1;
                entry.1 += t;
            }
        }
    }
    out
}

/// The machine's aggregate CPU times from /proc/stat.
struct CpuTimes {
    /// Busy, excluding steal.
    busy: u64,
    /// Time the hypervisor ran something else.
    steal: u64,
    total: u64,
}

impl CpuTimes {
    fn read() -> Self {
        let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = s
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        let steal = v.get(7).copied().unwrap_or(0);
        Self { busy: total.saturating_sub(idle + steal), steal, total }
    }

    fn busy_fraction_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total) as f64;
        if total == 0.0 {
            return f64::NAN;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total
    }

    fn steal_fraction_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total) as f64;
        if total == 0.0 {
            return f64::NAN;
        }
        self.steal.saturating_sub(earlier.steal) as f64 / total
    }
}

fn clk_tck() -> f64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// Raises RLIMIT_NOFILE (soft and, as root, hard) so 10,000 sockets fit; the node inherits it.
fn raise_nofile(want: u64) -> Value {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let before = (lim.rlim_cur, lim.rlim_max);
    let target = libc::rlimit {
        rlim_cur: want as libc::rlim_t,
        rlim_max: (want as libc::rlim_t).max(lim.rlim_max),
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &target) } != 0 {
        // Not allowed above the hard limit: take the hard limit.
        let capped = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) };
    }
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    json!({"before": [before.0, before.1], "after": [lim.rlim_cur, lim.rlim_max]})
}

/// The pid of this process's child whose command line contains `needle`.
fn find_child_pid(needle: &str) -> Option<u32> {
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rfind(')')
            .and_then(|c| stat[c + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            l if l < 126 => f.push(l as u8),
            l if l < 65536 => {
                f.push(126);
                f.extend_from_slice(&(l as u16).to_be_bytes());
            }
            l => {
                f.push(127);
                f.extend_from_slice(&(l as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_frames_split_anywhere() {
        let big = format!(
            "{{\"payload_id\":\"0x00000000000000ab\",\"index\":7,\"diff\":\"{}\"}}",
            "x".repeat(70_000)
        );
        let small = "{\"payload_id\":\"0x0000000000000001\",\"index\":0}";
        let mut wire = frame(1, big.as_bytes());
        wire.extend(frame(9, b"hi"));
        wire.extend(frame(1, small.as_bytes()));
        wire.extend(frame(8, &[]));
        for step in [1usize, 3, 100, 4096, wire.len()] {
            let mut p = WsParser::default();
            let mut out = Vec::new();
            for c in wire.chunks(step) {
                p.feed(c, &mut out);
            }
            let kinds: Vec<String> = out.iter().map(|e| format!("{e:?}")).collect();
            assert_eq!(
                kinds,
                vec![
                    "Message(Some((171, 7)))",
                    "Ping([104, 105])",
                    "Message(Some((1, 0)))",
                    "Close"
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn brotli_messages_are_keyed_like_the_reference_compression() {
        let json = format!(
            "{{\"payload_id\":\"0x00000000000000ab\",\"index\":3,\"diff\":\"{}\"}}",
            "ab".repeat(20_000)
        );
        let compressed = flashnode_fanout::encode_brotli(json.as_bytes());
        let other =
            flashnode_fanout::encode_brotli(json.replace("\"index\":3", "\"index\":4").as_bytes());
        // Split across a Binary frame and a continuation, fed a few bytes at a time.
        let (head, tail) = compressed.split_at(compressed.len() / 2);
        let mut wire = frame(2, head);
        wire[0] &= 0x7f;
        wire.extend(frame(0, tail));
        wire.extend(frame(2, &other));
        let mut p = WsParser::default();
        let mut out = Vec::new();
        for c in wire.chunks(7) {
            p.feed(c, &mut out);
        }
        let keys: Vec<Option<(u64, u32)>> = out
            .iter()
            .map(|e| match e {
                WsEvent::Message(k) => *k,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                Some((brotli_message_key(&compressed), BROTLI_INDEX)),
                Some((brotli_message_key(&other), BROTLI_INDEX))
            ]
        );
        assert_ne!(keys[0], keys[1]);
    }
}
