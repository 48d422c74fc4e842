//! Supervision of the long-running tasks outside the overlay: the devnet's block producer,
//! the fan-out's accept loop and the p2p host are critical (one dying makes `/readyz` 503 with
//! the reason and the process exit non-zero); the devnet's flashblock websocket accept loop is
//! restarted with a backoff. Faults come from the debug-build hook
//! (`FLASHNODE_FAULT_PANIC_TASK=<task>` and SIGUSR1); docs/faults.md lists the cases.

use flashnode_tests::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Starts `flashnode dev` with the fault hook armed for `task`; waits until `/readyz` is 200.
async fn dev_armed(task: &str, metrics: &str, extra: &[&str]) -> Running {
    let mut args = vec![
        "--block-time",
        "1s",
        "--flashblock-interval",
        "200ms",
        "--metrics-addr",
        metrics,
        "--shutdown-timeout",
        "20s",
    ];
    args.extend_from_slice(extra);
    let node = start_env("dev", &args, &[("FLASHNODE_FAULT_PANIC_TASK", task)]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            try_get(metrics, "/readyz").await.is_some_and(|(code, _)| code == 200)
        })
        .await,
        "ready before the fault:\n{}",
        node.proc.output()
    );
    node
}

/// Each of these critical tasks panicking (the devnet's block producer, the fan-out's accept
/// loop, the p2p host's swarm loop) turns `/readyz` 503 with `failure.task` naming it and the
/// panic as the reason, and the process exits with a non-zero code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_critical_task_fails_readiness_and_exits_non_zero() {
    for (task, extra) in [
        ("devnet_sequencer", &[][..]),
        ("fanout", &[][..]),
        ("p2p", &["--p2p-addr", "127.0.0.1:0"][..]),
    ] {
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut node = dev_armed(task, &metrics, extra).await;
        // An in-flight call holds the drain open while /readyz is watched (without one the
        // process may exit before a poll sees the 503): a nonce gap keeps the transaction out
        // of every block, so the call waits for its whole 8 s timeout.
        let in_flight = call_held_in_flight(&node.rpc).await;
        node.proc.signal("USR1");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut report = None;
        while report.is_none() && Instant::now() < deadline {
            match try_get(&metrics, "/readyz").await {
                Some((503, body)) => report = Some(body),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let Some(report) = report else {
            panic!("{task}: /readyz never turned 503:\n{}", node.proc.output());
        };
        let body: Value = serde_json::from_str(&report).expect("json");
        assert_eq!(body["failure"]["task"], task, "{body}");
        let reason = body["failure"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("critical task `{task}` panicked: fault injected")),
            "{task}: the reason names the task and the panic: {body}"
        );
        let answer = in_flight.await.expect("the in-flight call is answered");
        assert!(answer.get("error").is_some() || answer.get("result").is_some(), "{answer}");
        let status = node.proc.wait_exit(Duration::from_secs(30)).await.expect("the process exits");
        assert!(!status.success(), "{task}: a non-zero exit: {status:?}");
        assert!(status.code().is_some(), "{task}: an exit, not a signal: {status:?}");
    }
}

/// The devnet's flashblock websocket accept loop panicking is restarted after a backoff on
/// the same listener: the restart is counted, the node stays ready and preconfirming, and a
/// new subscriber of the devnet's websocket gets flashblocks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restartable_accept_loop_comes_back_and_the_node_stays_ready() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let source = format!("127.0.0.1:{}", free_port());
    let mut node = dev_armed("devnet_ws", &metrics, &["--devnet-flashblocks-addr", &source]).await;
    node.proc.signal("USR1");
    let restarted = eventually(Duration::from_secs(5), || async {
        metric(&scrape(&metrics).await, "flashnode_task_restarts_total", &[("task", "devnet_ws")])
            >= 1.0
    })
    .await;
    assert!(restarted, "the restart is counted:\n{}", node.proc.output());
    let mut rx = collect_flashblocks(&format!("ws://{source}/ws")).await;
    next_flashblock(&mut rx, Duration::from_secs(5)).await;
    assert!(node.proc.is_running(), "a restartable task never stops the node");
    assert_eq!(try_get(&metrics, "/readyz").await.map(|(code, _)| code), Some(200));
    assert_eq!(status(&node.rpc).await["mode"], "flashblocks");
}
