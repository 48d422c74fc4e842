//! The bounded pool RPC executions run on (`eth_call`, `eth_estimateGas`,
//! `eth_createAccessList`, `eth_simulateV1`): at most `max` at once on blocking threads, so
//! they never take every core from flashblock ingest; a bounded number more wait for a free
//! executor, for at most the EVM timeout; beyond that the caller gets
//! [`RpcError::Overloaded`] at once instead of a queue that grows without end. Each execution
//! gets a [`Budget`] of the EVM timeout, cancelled when its caller's future is dropped (the
//! client went away).
//!
//! Executions run on the blocking threads of their own runtime, started at a lower CPU
//! priority (nice +[`EXECUTION_NICE`]; Linux keeps the nice value per thread), so when the
//! machine is saturated the kernel runs flashblock ingest and the RPC's own threads first and a
//! flood of `eth_call`s slows only the calls.

use crate::error::{RpcError, RpcResult};
use flashnode_exec::Budget;
use flashnode_tasks::DedicatedRuntime;
use std::{sync::Arc, time::Duration};
use tokio::sync::Semaphore;

/// Callers that may wait for a free executor, per executor.
pub const QUEUE_PER_EXECUTOR: usize = 16;

/// Executions that may be forwarded to the upstream at once, per executor. A forwarded call
/// costs the node only a socket, but the upstream runs it: without a bound, a flood of
/// gas-cap calls while the node has no pending block (fallback) would all land on the
/// execution client at once.
pub const FORWARDED_PER_EXECUTOR: usize = 64;

/// Forwarded executions refused because every forwarding slot was taken.
pub const RPC_FORWARDS_REFUSED_TOTAL: &str = "flashnode_rpc_forwarded_executions_refused_total";

/// Executions refused because the pool and its queue were full.
pub const RPC_EXECUTIONS_REFUSED_TOTAL: &str = "flashnode_rpc_executions_refused_total";
/// Executions stopped by the EVM timeout.
pub const RPC_EXECUTION_TIMEOUTS_TOTAL: &str = "flashnode_rpc_execution_timeouts_total";
/// Executions stopped because their client went away.
pub const RPC_EXECUTIONS_CANCELLED_TOTAL: &str = "flashnode_rpc_executions_cancelled_total";

/// How much lower than the rest of the process the executions' threads run (nice value).
pub const EXECUTION_NICE: i32 = 10;

/// The pool.
#[derive(Clone, Debug)]
pub struct Executor {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
    threads: Arc<ExecutionThreads>,
    forwarding: Arc<Semaphore>,
}

/// The runtime whose blocking threads run the executions (its one worker stays idle); `None`
/// when it could not be started.
#[derive(Debug)]
struct ExecutionThreads(Option<DedicatedRuntime>);

impl ExecutionThreads {
    fn new(max: usize) -> Self {
        let runtime = DedicatedRuntime::build(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(max)
                .thread_name("flashnode-rpc-exec")
                .on_thread_start(lower_this_threads_priority),
        );
        match runtime {
            Ok(runtime) => Self(Some(runtime)),
            Err(err) => {
                // Executions then share the caller's blocking pool at the normal priority.
                tracing::warn!(%err, "no separate execution threads; RPC executions run beside ingest at its priority");
                Self(None)
            }
        }
    }

    fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        match self.0.as_ref().and_then(DedicatedRuntime::handle) {
            Some(handle) => handle.spawn_blocking(f),
            None => tokio::task::spawn_blocking(f),
        }
    }
}

/// Raises the calling thread's nice value by [`EXECUTION_NICE`] (no privilege needed to lower
/// one's own priority). A failure leaves the thread at the normal priority.
fn lower_this_threads_priority() {
    // SAFETY: getpriority/setpriority on the calling thread's id take no pointers.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, current.saturating_add(EXECUTION_NICE));
    }
}

/// Cancels the execution's budget when the caller's future is dropped before the answer.
struct CancelOnDrop(Option<Budget>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(budget) = self.0.take() {
            budget.cancel();
            metrics::counter!(RPC_EXECUTIONS_CANCELLED_TOTAL).increment(1);
        }
    }
}

impl Executor {
    /// A pool of `max` executors (at least one) whose executions stop after `timeout`.
    pub fn new(max: usize, timeout: Duration) -> Self {
        let max = max.max(1);
        Self {
            running: Arc::new(Semaphore::new(max)),
            admitted: Arc::new(Semaphore::new(max + max * QUEUE_PER_EXECUTOR)),
            max,
            timeout,
            threads: Arc::new(ExecutionThreads::new(max)),
            forwarding: Arc::new(Semaphore::new(max * FORWARDED_PER_EXECUTOR)),
        }
    }

    /// Awaits `forward` (an execution passed to the upstream) in one of the forwarding slots,
    /// or answers [`RpcError::ForwardOverloaded`] at once when all are taken.
    pub async fn forward<T>(
        &self,
        forward: impl std::future::Future<Output = RpcResult<T>>,
    ) -> RpcResult<T> {
        let Ok(_slot) = self.forwarding.try_acquire() else {
            metrics::counter!(RPC_FORWARDS_REFUSED_TOTAL).increment(1);
            return Err(RpcError::ForwardOverloaded { max: self.max * FORWARDED_PER_EXECUTOR });
        };
        forward.await
    }

    /// The default size: every core but one (one at least), so ingest keeps a core.
    pub fn default_size() -> usize {
        std::thread::available_parallelism().map(|n| n.get().saturating_sub(1)).unwrap_or(1).max(1)
    }

    /// Runs `f` on an executor with a fresh budget.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Budget) -> RpcResult<T> + Send + 'static,
    ) -> RpcResult<T> {
        let overloaded = || {
            metrics::counter!(RPC_EXECUTIONS_REFUSED_TOTAL).increment(1);
            RpcError::Overloaded { max: self.max }
        };
        let _admitted = self.admitted.clone().try_acquire_owned().map_err(|_| overloaded())?;
        let permit = tokio::time::timeout(self.timeout, self.running.clone().acquire_owned())
            .await
            .map_err(|_| overloaded())?
            .map_err(|_| overloaded())?;
        let budget = Budget::new(self.timeout);
        let mut guard = CancelOnDrop(Some(budget.clone()));
        let res = self
            .threads
            .spawn(move || {
                let _permit = permit;
                f(&budget)
            })
            .await;
        guard.0 = None;
        let res = res?;
        if let Err(RpcError::Call(flashnode_exec::CallError::Timeout(_))) = &res {
            metrics::counter!(RPC_EXECUTION_TIMEOUTS_TOTAL).increment(1);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashnode_exec::CallError;

    #[tokio::test]
    async fn runs_and_answers() {
        let pool = Executor::new(1, Duration::from_secs(5));
        assert_eq!(pool.run(|_| Ok(7)).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn refuses_beyond_the_queue() {
        let pool = Executor::new(1, Duration::from_secs(5));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        let blocker = {
            let pool = pool.clone();
            let wait = wait.clone();
            tokio::spawn(async move {
                pool.run(move |_| {
                    let _ = wait.lock().map(|w| w.recv());
                    Ok(())
                })
                .await
            })
        };
        // Fill the queue behind the running one.
        let mut queued = Vec::new();
        for _ in 0..QUEUE_PER_EXECUTOR {
            let pool = pool.clone();
            queued.push(tokio::spawn(async move { pool.run(|_| Ok(())).await }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = pool.run(|_| Ok(())).await;
        assert!(matches!(refused, Err(RpcError::Overloaded { max: 1 })), "{refused:?}");
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert!(pool.run(|_| Ok(())).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn a_dropped_caller_cancels_its_budget() {
        let pool = Executor::new(1, Duration::from_secs(30));
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
        let call = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move |budget| {
                    let budget = budget.clone();
                    while budget.check().is_ok() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let _ = seen_tx.send(budget.check());
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        call.abort();
        let why = tokio::time::timeout(Duration::from_secs(10), seen_rx).await.unwrap().unwrap();
        assert!(matches!(why, Err(CallError::Cancelled)), "{why:?}");
    }

    #[tokio::test]
    async fn forwarded_executions_are_bounded() {
        let pool = Executor::new(1, Duration::from_secs(5));
        let (release, hold) = tokio::sync::watch::channel(false);
        let held: Vec<_> = (0..FORWARDED_PER_EXECUTOR)
            .map(|_| {
                let (pool, mut hold) = (pool.clone(), hold.clone());
                tokio::spawn(async move {
                    pool.forward(async move {
                        let _ = hold.wait_for(|go| *go).await;
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = pool.forward(async { Ok(()) }).await;
        assert!(
            matches!(refused, Err(RpcError::ForwardOverloaded { max: FORWARDED_PER_EXECUTOR })),
            "{refused:?}"
        );
        release.send(true).unwrap();
        for h in held {
            h.await.unwrap().unwrap();
        }
        assert!(pool.forward(async { Ok(()) }).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn executions_run_at_a_lower_priority() {
        let pool = Executor::new(1, Duration::from_secs(5));
        // SAFETY: as in `lower_this_threads_priority`.
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let here = nice();
        let there = pool.run(move |_| Ok(nice())).await.unwrap();
        assert_eq!(
            there,
            (here + EXECUTION_NICE).min(19),
            "execution thread nice {there}, caller {here}"
        );
    }

    #[tokio::test]
    async fn the_budget_times_out() {
        let pool = Executor::new(1, Duration::from_millis(50));
        let res = pool
            .run(|budget| -> RpcResult<()> {
                loop {
                    budget.check()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .await;
        assert!(matches!(res, Err(RpcError::Call(CallError::Timeout(_)))), "{res:?}");
    }
}
