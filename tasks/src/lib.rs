//! Task supervision for flashnode, the one reconnect [`Backoff`] and the [`DedicatedRuntime`]
//! for work kept off the main runtime.
//!
//! Every long-running task is spawned through a [`TaskExecutor`] with a name and a tracing span.
//! A *critical* task (the overlay, the stream, a server's accept loop) that panics or ends
//! before shutdown was asked for is a [`TaskFailure`]: the owner of the [`TaskManager`] sees it
//! in [`TaskManager::failed`], readiness reports it ([`TaskExecutor::failure`]) and the binary
//! shuts down and exits non-zero, unless the task was spawned restartable
//! ([`TaskExecutor::spawn_critical_restartable`]), in which case it is started again after a
//! [`Backoff`] delay. Shutdown waits for the tracked tasks ([`TaskManager::wait`]) instead of
//! a timer.

mod backoff;
#[cfg(debug_assertions)]
mod fault;
mod manager;
mod runtime;

pub use backoff::Backoff;
pub use manager::{TaskExecutor, TaskFailure, TaskManager};
pub use runtime::DedicatedRuntime;

/// Counter of critical-task failures (panics or unexpected ends), labelled by `task`.
pub const TASK_FAILURES_TOTAL: &str = "flashnode_task_failures_total";
/// Counter of restarts of restartable critical tasks, labelled by `task`.
pub const TASK_RESTARTS_TOTAL: &str = "flashnode_task_restarts_total";
