//! `resume`: what a kill -9 of a middle relay costs the subscribers below it.
//!
//! `flashnode dev` → mid relay → leaf relay → N subscribers on the leaf. The mid relay is
//! killed (SIGKILL) and started again on the same port, `--rounds` times. The leaf reconnects
//! with a resume point (`/ws?from=<block>-<index>`); the restarted mid refills its ring from the
//! node's. Per round and leaf subscriber:
//!
//! - *caught up after restart*: from the instant the restarted mid accepts TCP connections to
//!   the instant the subscriber has the first frame the node published after that instant,
//!   i.e. it has every frame of the outage (replayed) and is live again;
//! - *gaps* and *duplicates* across the whole run (every frame must follow the previous one:
//!   the next index, or a later block's index 0).
//!
//! Beside them a plain consumer of the mid relay (no resume point, reconnects every 20 ms) shows
//! what a stream consumer that knows nothing of resume loses in the same outage. A reference
//! client on the node's own fan-out gives each frame's position and publish instant.

use crate::{
    node::{findings_in, log_findings, start_dev},
    stats::{loadavg, r3, Machine, Summary},
};
use anyhow::Context;
use clap::Args;
use flashnode_tests::{decode_frame, follows, free_port, metric, scrape, Proc};
use futures::StreamExt;
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// `resume` flags.
#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// Subscribers on the leaf relay.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Kill -9 and restart rounds of the middle relay.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// How long the middle relay stays down in each round, ms.
    #[arg(long, default_value_t = 500)]
    pub down_ms: u64,
    /// Seconds of steady stream before the first and after each round.
    #[arg(long, default_value_t = 4)]
    pub between_secs: u64,
    /// Devnet block time, ms.
    #[arg(long, default_value_t = 2000)]
    pub block_time_ms: u64,
    /// Devnet flashblock interval, ms.
    #[arg(long, default_value_t = 200)]
    pub flashblock_interval_ms: u64,
    /// `--ws-ring-frames` of the node and the relays.
    #[arg(long, default_value_t = 64)]
    pub ring_frames: usize,
    /// `--stream-backoff-max` of the leaf relay (its reconnect delays to the mid relay grow
    /// from 10 ms up to this); the relay's default when unset.
    #[arg(long)]
    pub leaf_backoff_max: Option<String>,
}

/// (block number, index) of a frame.
type Position = (u64, u64);

/// Every frame one client received, with its receive instant.
type Log = Arc<Mutex<Vec<(Position, Instant)>>>;

/// Reads flashblocks from `url` into `log` until `stop`; with `reconnect`, connects again
/// (every 20 ms) whenever the stream ends.
async fn record(url: String, log: Log, stop: Arc<AtomicBool>, reconnect: bool) {
    while !stop.load(Ordering::Acquire) {
        if let Ok(Ok((ws, _))) =
            tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(&url))
                .await
        {
            let (_, mut read) = ws.split();
            while let Some(Ok(msg)) = read.next().await {
                let bytes = match &msg {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b.as_ref(),
                    _ => continue,
                };
                let at = Instant::now();
                let Ok(v) = decode_frame(bytes) else { continue };
                if let (Some(block), Some(index)) =
                    (v["metadata"]["block_number"].as_u64(), v["index"].as_u64())
                {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(((block, index), at));
                }
                if stop.load(Ordering::Acquire) {
                    return;
                }
            }
        }
        if !reconnect {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `flashnode relay` with `args`; returns it once `addr` accepts TCP connections.
async fn start_relay(args: &[String], addr: &str) -> anyhow::Result<(Proc, Instant)> {
    let proc = Proc::flashnode(args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not listen on {addr}:\n{}",
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((proc, Instant::now()))
}

/// A relay's command line; `clients` sizes its per-IP limit (everything comes from 127.0.0.1).
fn relay_args(
    upstream: &str,
    addr: &str,
    metrics: &str,
    ring: usize,
    clients: usize,
) -> Vec<String> {
    [
        "relay",
        "--ws-per-ip-limit",
        &(clients + 10).to_string(),
        "--flashblocks-url",
        upstream,
        "--flashblocks-addr",
        addr,
        "--metrics-addr",
        metrics,
        "--ws-ring-frames",
        &ring.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One kill -9 and restart of the middle relay.
struct Round {
    killed: Instant,
    listening: Instant,
}

/// Runs the rounds and returns the result document.
pub async fn run(args: ResumeArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let ring = args.ring_frames.to_string();
    let dev = start_dev(
        &[
            "--block-time".into(),
            format!("{}ms", args.block_time_ms),
            "--flashblock-interval".into(),
            format!("{}ms", args.flashblock_interval_ms),
            "--ws-ring-frames".into(),
            ring,
        ],
        Duration::from_millis(args.block_time_ms * 2 + 10_000),
    )
    .await?;
    let (mid_addr, mid_metrics) =
        (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let (leaf_addr, leaf_metrics) =
        (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let mid_args = relay_args(&dev.running.ws, &mid_addr, &mid_metrics, args.ring_frames, 2);
    let (mut mid, _) = start_relay(&mid_args, &mid_addr).await.context("the middle relay")?;
    let mut leaf_args = relay_args(
        &format!("ws://{mid_addr}/ws"),
        &leaf_addr,
        &leaf_metrics,
        args.ring_frames,
        args.subscribers,
    );
    if let Some(max) = &args.leaf_backoff_max {
        leaf_args.extend(["--stream-backoff-max".to_string(), max.clone()]);
    }
    let (leaf, _) = start_relay(&leaf_args, &leaf_addr).await.context("the leaf relay")?;

    let stop = Arc::new(AtomicBool::new(false));
    let reference: Log = Arc::default();
    let plain: Log = Arc::default();
    let subs: Vec<Log> = (0..args.subscribers).map(|_| Log::default()).collect();
    let mut tasks = vec![
        tokio::spawn(record(dev.running.ws.clone(), reference.clone(), stop.clone(), false)),
        tokio::spawn(record(format!("ws://{mid_addr}/ws"), plain.clone(), stop.clone(), true)),
    ];
    for log in &subs {
        tasks.push(tokio::spawn(record(
            format!("ws://{leaf_addr}/ws"),
            log.clone(),
            stop.clone(),
            false,
        )));
    }
    eprintln!(
        "resume: node → mid {mid_addr} → leaf {leaf_addr} → {} subscribers; {} rounds of kill -9, {} ms down",
        args.subscribers, args.rounds, args.down_ms
    );
    tokio::time::sleep(Duration::from_secs(args.between_secs)).await;
    let mut rounds = Vec::with_capacity(args.rounds);
    for r in 0..args.rounds {
        let killed = Instant::now();
        mid.kill();
        tokio::time::sleep(Duration::from_millis(args.down_ms)).await;
        let (proc, listening) =
            start_relay(&mid_args, &mid_addr).await.with_context(|| format!("restart {r}"))?;
        mid = proc;
        rounds.push(Round { killed, listening });
        eprintln!("resume: round {r}: mid restarted");
        tokio::time::sleep(Duration::from_secs(args.between_secs)).await;
    }
    let resumes =
        metric(&scrape(&leaf_metrics).await, "flashnode_relay_upstream_resumes_total", &[]);
    stop.store(true, Ordering::Release);
    for t in &tasks {
        t.abort();
    }
    let findings = json!({
        "node": log_findings(&dev.running),
        "mid_relay_last_run": findings_in(&mid.output()),
        "leaf_relay": findings_in(&leaf.output()),
    });
    let take = |log: &Log| std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    let reference = take(&reference);
    let plain = take(&plain);
    let subs: Vec<Vec<(Position, Instant)>> = subs.iter().map(take).collect();
    drop((mid, leaf, dev));

    let ref_index: HashMap<Position, usize> =
        reference.iter().enumerate().map(|(i, (p, _))| (*p, i)).collect();
    let mut caught_up_after_restart = Vec::new();
    let mut caught_up_after_kill = Vec::new();
    let mut live_lag = Vec::new();
    let mut never_caught_up = 0usize;
    let mut per_round = Vec::new();
    for (r, round) in rounds.iter().enumerate() {
        // The first frame the node published after the restarted mid listened.
        let Some(live) = reference.iter().find(|(_, t)| *t > round.listening) else {
            anyhow::bail!("round {r}: the node published nothing after the restart");
        };
        let outage_frames =
            reference.iter().filter(|(_, t)| *t > round.killed && *t <= round.listening).count();
        let mut after_restart = Vec::new();
        for sub in &subs {
            match sub.iter().find(|(p, _)| *p == live.0) {
                Some((_, at)) => {
                    let ms = at.saturating_duration_since(round.listening).as_secs_f64() * 1e3;
                    after_restart.push(ms);
                    caught_up_after_kill
                        .push(at.saturating_duration_since(round.killed).as_secs_f64() * 1e3);
                    live_lag.push(at.saturating_duration_since(live.1).as_secs_f64() * 1e3);
                }
                None => never_caught_up += 1,
            }
        }
        // The plain consumer: frames between its last one before the kill and its first after.
        let last_before = plain.iter().rev().find(|(_, t)| *t <= round.killed);
        let first_after = plain.iter().find(|(_, t)| *t > round.killed);
        let plain_lost = match (last_before, first_after) {
            (Some((a, _)), Some((b, _))) => match (ref_index.get(a), ref_index.get(b)) {
                (Some(a), Some(b)) => Some(b.saturating_sub(*a).saturating_sub(1)),
                _ => None,
            },
            _ => None,
        };
        let s = Summary::of(&after_restart).rounded();
        per_round.push(json!({
            "round": r,
            "down_ms": r3(round.listening.duration_since(round.killed).as_secs_f64() * 1e3),
            "frames_published_while_down": outage_frames,
            "leaf_caught_up_after_restart_ms": s,
            "plain_consumer_frames_lost": plain_lost,
        }));
        caught_up_after_restart.extend(after_restart);
    }
    let mut gaps = 0usize;
    let mut duplicates = 0usize;
    for sub in &subs {
        for w in sub.windows(2) {
            if w[1].0 <= w[0].0 {
                duplicates += 1;
            } else if !follows(w[0].0, w[1].0) {
                gaps += 1;
            }
        }
    }
    let plain_lost_total: usize =
        per_round.iter().filter_map(|r| r["plain_consumer_frames_lost"].as_u64()).sum::<u64>()
            as usize;
    eprintln!(
        "resume: leaf subscribers caught up p50 {} ms p99 {} ms after the restart ({} ms after the kill at p50); gaps {gaps}, duplicates {duplicates}, never caught up {never_caught_up}; the plain consumer lost {plain_lost_total} frames in {} rounds",
        r3(Summary::of(&caught_up_after_restart).p50),
        r3(Summary::of(&caught_up_after_restart).p99),
        r3(Summary::of(&caught_up_after_kill).p50),
        rounds.len(),
    );
    Ok(json!({
        "scenario": "resume",
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "config": {
            "subscribers": args.subscribers,
            "rounds": args.rounds,
            "down_ms": args.down_ms,
            "between_secs": args.between_secs,
            "block_time_ms": args.block_time_ms,
            "flashblock_interval_ms": args.flashblock_interval_ms,
            "ring_frames": args.ring_frames,
            "leaf_backoff_max": args.leaf_backoff_max.as_deref().unwrap_or("the relay's default (2s)"),
            "tree": "flashnode dev → mid relay (killed with SIGKILL, restarted on the same port) → leaf relay → subscribers",
            "caught_up_after_restart": "from the restarted mid accepting TCP to the subscriber having the first frame the node published after that instant (every outage frame replayed before it)",
            "plain_consumer": "a websocket client of the mid relay without a resume point, reconnecting every 20 ms",
        },
        "result": {
            "leaf_caught_up_after_restart_ms": Summary::of(&caught_up_after_restart).rounded(),
            "leaf_caught_up_after_kill_ms": Summary::of(&caught_up_after_kill).rounded(),
            "live_frame_lag_behind_node_ms": Summary::of(&live_lag).rounded(),
            "leaf_gaps": gaps,
            "leaf_duplicates": duplicates,
            "leaf_never_caught_up": never_caught_up,
            "leaf_upstream_resumes": resumes,
            "plain_consumer_frames_lost": plain_lost_total,
            "reference_frames": reference.len(),
        },
        "rounds": per_round,
        "log_findings": findings,
    }))
}
