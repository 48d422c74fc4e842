//! [`TaskManager`] (owned by the binary) and [`TaskExecutor`] (handed to every component that
//! spawns): named, tracked, span-instrumented tasks; critical ones report their death.

use crate::{Backoff, TASK_FAILURES_TOTAL, TASK_RESTARTS_TOTAL};
use futures::FutureExt;
use parking_lot::Mutex;
use std::{
    any::Any,
    collections::BTreeMap,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, error, info_span, warn, Instrument};

/// Why a critical task stopped while the node was not shutting down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFailure {
    /// The task panicked.
    #[error("critical task `{task}` panicked: {message}")]
    Panicked {
        /// The task's name.
        task: &'static str,
        /// The panic's message.
        message: String,
    },
    /// The task returned although nothing asked it to stop.
    #[error("critical task `{task}` ended unexpectedly")]
    Ended {
        /// The task's name.
        task: &'static str,
    },
}

impl TaskFailure {
    /// The name of the task that failed.
    pub fn task(&self) -> &'static str {
        match self {
            Self::Panicked { task, .. } | Self::Ended { task } => task,
        }
    }

    /// A short label of the kind of failure (`panicked`, `ended`), for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Panicked { .. } => "panicked",
            Self::Ended { .. } => "ended",
        }
    }
}

struct Inner {
    tracker: TaskTracker,
    /// Cancelled by [`TaskManager::begin_shutdown`]: from then on a task that ends is expected.
    shutdown: CancellationToken,
    /// The first critical failure (later ones are logged, not kept).
    failure: watch::Sender<Option<TaskFailure>>,
    /// Names of the running tasks, to say which ones a shutdown deadline left behind.
    running: Mutex<BTreeMap<u64, &'static str>>,
    next_id: AtomicU64,
}

impl Inner {
    fn fail(&self, failure: TaskFailure) {
        metrics::counter!(TASK_FAILURES_TOTAL, "task" => failure.task(), "kind" => failure.label())
            .increment(1);
        error!(task = failure.task(), %failure, "critical task failed; the node shuts down");
        self.failure.send_if_modified(|first| {
            if first.is_none() {
                *first = Some(failure);
                true
            } else {
                false
            }
        });
    }

    fn register(self: &Arc<Self>, name: &'static str) -> Running {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.running.lock().insert(id, name);
        Running { inner: self.clone(), id }
    }
}

/// Removes a task from the running list when its future completes or is dropped.
struct Running {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.inner.running.lock().remove(&self.id);
    }
}

/// The panic payload as text (`panic!` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Spawns named tasks that are tracked for shutdown. Cheap to clone; hand one to every
/// component that starts tasks.
#[derive(Clone)]
pub struct TaskExecutor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskExecutor")
            .field("running", &self.inner.tracker.len())
            .field("failure", &*self.inner.failure.borrow())
            .finish_non_exhaustive()
    }
}

impl TaskExecutor {
    /// Spawns a task whose end or panic does not concern the node (a panic is logged). Runs on
    /// the runtime of the calling context, inside a `task` span naming it.
    pub fn spawn<F>(&self, name: &'static str, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let running = self.inner.register(name);
        let task = async move {
            let _running = running;
            if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
                error!(task = name, panic = %panic_message(&*panic), "task panicked");
            }
        };
        self.inner.tracker.spawn(task.instrument(info_span!("task", name)))
    }

    /// Spawns a task the node cannot work without: if it panics, or returns before
    /// [`TaskManager::begin_shutdown`], that is a [`TaskFailure`] (logged as an error naming
    /// the task, counted, reported by [`Self::failure`] and [`TaskManager::failed`]).
    pub fn spawn_critical<F>(&self, name: &'static str, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        #[cfg(debug_assertions)]
        let fut = crate::fault::arm(name, fut);
        let inner = self.inner.clone();
        let running = self.inner.register(name);
        let task = async move {
            let _running = running;
            let failure = match AssertUnwindSafe(fut).catch_unwind().await {
                Err(panic) => TaskFailure::Panicked { task: name, message: panic_message(&*panic) },
                Ok(()) if inner.shutdown.is_cancelled() => {
                    debug!("stopped");
                    return;
                }
                Ok(()) => TaskFailure::Ended { task: name },
            };
            inner.fail(failure);
        };
        self.inner.tracker.spawn(task.instrument(info_span!("task", name)))
    }

    /// Spawns a critical task that is started again (a fresh future from `make`) after a
    /// `backoff` delay whenever it panics or ends before shutdown; it never fails the node.
    /// The backoff starts over once a run lasted at least `backoff.max()`.
    pub fn spawn_critical_restartable<F, M>(
        &self,
        name: &'static str,
        mut backoff: Backoff,
        mut make: M,
    ) -> JoinHandle<()>
    where
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = self.inner.clone();
        let running = self.inner.register(name);
        let task = async move {
            let _running = running;
            let mut restarts = 0u64;
            loop {
                let fut = make();
                #[cfg(debug_assertions)]
                let fut = crate::fault::arm(name, fut);
                let started = tokio::time::Instant::now();
                let outcome = AssertUnwindSafe(fut).catch_unwind().await;
                if inner.shutdown.is_cancelled() {
                    debug!("stopped");
                    return;
                }
                let reason = match outcome {
                    Err(panic) => format!("panicked: {}", panic_message(&*panic)),
                    Ok(()) => "ended unexpectedly".to_string(),
                };
                if started.elapsed() >= backoff.max() {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                restarts += 1;
                metrics::counter!(TASK_RESTARTS_TOTAL, "task" => name).increment(1);
                warn!(task = name, %reason, restarts, ?delay, "critical task stopped; restarting");
                tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        };
        self.inner.tracker.spawn(task.instrument(info_span!("task", name)))
    }

    /// The first critical failure, if any (readiness reports it).
    pub fn failure(&self) -> Option<TaskFailure> {
        self.inner.failure.borrow().clone()
    }

    /// Whether [`TaskManager::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }
}

/// Owns the tasks: learns of critical failures and waits for every task on shutdown.
pub struct TaskManager {
    executor: TaskExecutor,
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManager").field("executor", &self.executor).finish()
    }
}

impl Default for TaskManager {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskManager {
    /// A manager with no tasks yet.
    pub fn new() -> Self {
        let inner = Inner {
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            failure: watch::channel(None).0,
            running: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        };
        Self { executor: TaskExecutor { inner: Arc::new(inner) } }
    }

    /// A spawner for this manager's tasks.
    pub fn executor(&self) -> TaskExecutor {
        self.executor.clone()
    }

    /// Resolves with the first critical failure (at once if one already happened).
    pub async fn failed(&self) -> TaskFailure {
        let mut rx = self.executor.inner.failure.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        loop {
            if let Some(failure) = rx.borrow_and_update().clone() {
                return failure;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// From now on critical tasks that end are stopping as asked, not failing. Call it before
    /// cancelling the tasks.
    pub fn begin_shutdown(&self) {
        self.executor.inner.shutdown.cancel();
    }

    /// Tasks still running.
    pub fn running(&self) -> Vec<&'static str> {
        self.executor.inner.running.lock().values().copied().collect()
    }

    /// Waits up to `timeout` for every task to finish (tasks spawned later are waited for
    /// too). Returns the names of those still running when the deadline passed (empty: all
    /// done).
    pub async fn wait(&self, timeout: Duration) -> Vec<&'static str> {
        let tracker = &self.executor.inner.tracker;
        tracker.close();
        let done = tokio::time::timeout(timeout, tracker.wait()).await.is_ok();
        tracker.reopen();
        if done {
            Vec::new()
        } else {
            self.running()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_panicking_critical_task_is_a_failure_naming_it() {
        let tasks = TaskManager::new();
        tasks.executor().spawn_critical("overlay", async { panic!("boom") });
        let failure = tokio::time::timeout(Duration::from_secs(5), tasks.failed())
            .await
            .expect("the failure is reported");
        assert_eq!(failure, TaskFailure::Panicked { task: "overlay", message: "boom".into() });
        assert_eq!(failure.to_string(), "critical task `overlay` panicked: boom");
        assert_eq!(tasks.executor().failure(), Some(failure));
    }

    #[tokio::test]
    async fn a_critical_task_that_returns_early_is_a_failure() {
        let tasks = TaskManager::new();
        tasks.executor().spawn_critical("stream", async {});
        let failure = tokio::time::timeout(Duration::from_secs(5), tasks.failed())
            .await
            .expect("the failure is reported");
        assert_eq!(failure, TaskFailure::Ended { task: "stream" });
    }

    #[tokio::test]
    async fn the_first_failure_is_kept() {
        let tasks = TaskManager::new();
        tasks.executor().spawn_critical("first", async { panic!("one") });
        tasks.failed().await;
        tasks.executor().spawn_critical("second", async { panic!("two") });
        tasks.wait(Duration::from_secs(5)).await;
        assert_eq!(tasks.failed().await.task(), "first");
    }

    #[tokio::test]
    async fn ending_after_shutdown_began_is_not_a_failure() {
        let tasks = TaskManager::new();
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        tasks.executor().spawn_critical("rpc", async move { token.cancelled().await });
        tasks.begin_shutdown();
        cancel.cancel();
        assert!(tasks.wait(Duration::from_secs(5)).await.is_empty());
        assert_eq!(tasks.executor().failure(), None);
    }

    #[tokio::test]
    async fn a_plain_task_panic_does_not_fail_the_node() {
        let tasks = TaskManager::new();
        let handle = tasks.executor().spawn("status_page", async { panic!("ignored") });
        handle.await.expect("the panic is caught inside the task");
        assert_eq!(tasks.executor().failure(), None);
        assert!(tasks.running().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restartable_task_restarts_with_backoff() {
        let tasks = TaskManager::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (r, s) = (runs.clone(), starts.clone());
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        tasks.executor().spawn_critical_restartable("stream", backoff, move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            s.lock().push(started.elapsed());
            async move {
                if n < 3 {
                    panic!("run {n} fails");
                }
                // The fourth run stays up.
                std::future::pending::<()>().await
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let starts = starts.lock().clone();
        // Restarted after 100, 200 and 400 ms (the clock is paused: exact).
        let gaps: Vec<_> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            gaps,
            [Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(400)]
        );
        assert_eq!(tasks.executor().failure(), None, "a restartable task never fails the node");
        // Shutdown stops it without a restart.
        tasks.begin_shutdown();
        assert_eq!(tasks.wait(Duration::from_secs(1)).await, vec!["stream"]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_interrupts_a_restart_delay() {
        let tasks = TaskManager::new();
        let backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        tasks.executor().spawn_critical_restartable("stream", backoff, || async {});
        tokio::time::sleep(Duration::from_millis(10)).await;
        tasks.begin_shutdown();
        assert!(tasks.wait(Duration::from_secs(1)).await.is_empty(), "no 60 s wait");
    }

    #[tokio::test]
    async fn wait_returns_once_every_task_finished() {
        let tasks = TaskManager::new();
        let cancel = CancellationToken::new();
        let finished = Arc::new(AtomicUsize::new(0));
        for name in ["a", "b", "c"] {
            let (cancel, finished) = (cancel.clone(), finished.clone());
            tasks.executor().spawn_critical(name, async move {
                cancel.cancelled().await;
                // Cleanup after the signal (close frames, flushes) is waited for too.
                tokio::time::sleep(Duration::from_millis(50)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(tasks.running(), ["a", "b", "c"]);
        tasks.begin_shutdown();
        cancel.cancel();
        assert!(tasks.wait(Duration::from_secs(5)).await.is_empty());
        assert_eq!(finished.load(Ordering::SeqCst), 3);
        assert_eq!(tasks.executor().failure(), None);
    }

    #[tokio::test]
    async fn wait_names_the_tasks_a_deadline_left_behind() {
        let tasks = TaskManager::new();
        tasks.executor().spawn("stuck", std::future::pending::<()>());
        tasks.executor().spawn("quick", async {});
        tasks.begin_shutdown();
        assert_eq!(tasks.wait(Duration::from_millis(100)).await, vec!["stuck"]);
    }
}
