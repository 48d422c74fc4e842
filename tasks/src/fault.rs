//! A fault hook that exists only in debug builds (`cfg(debug_assertions)`), for the fault
//! suite (docs/faults.md): with `FLASHNODE_FAULT_PANIC_TASK=<name>[,<name>...]` in the
//! environment, each critical task of that name panics when the process receives SIGUSR1.

use std::future::Future;

/// The environment variable naming the critical tasks to make panic.
pub(crate) const PANIC_TASK_ENV: &str = "FLASHNODE_FAULT_PANIC_TASK";

/// Whether `task` is named in `list` (comma-separated).
fn names(list: &str, task: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == task)
}

/// `fut`, made to panic on SIGUSR1 when the environment names `task`; `fut` unchanged otherwise.
pub(crate) fn arm<F>(task: &'static str, fut: F) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    let armed = std::env::var(PANIC_TASK_ENV).is_ok_and(|list| names(&list, task));
    // Registered now, not at the first poll, so a signal sent once the node answers is seen.
    #[cfg(unix)]
    let trigger = armed
        .then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()))
        .and_then(Result::ok);
    async move {
        #[cfg(unix)]
        if let Some(mut trigger) = trigger {
            tracing::warn!(task, "fault hook armed: this task panics on SIGUSR1");
            tokio::select! {
                _ = fut => {}
                _ = trigger.recv() => panic!("fault injected: {PANIC_TASK_ENV}={task} and SIGUSR1"),
            }
            return;
        }
        #[cfg(not(unix))]
        let _ = armed;
        fut.await
    }
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_match_whole_entries() {
        assert!(names("overlay", "overlay"));
        assert!(names("stream, overlay", "overlay"));
        assert!(!names("overlays", "overlay"));
        assert!(!names("", "overlay"));
    }
}
