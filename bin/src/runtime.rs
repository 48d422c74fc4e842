//! A runtime with one worker thread of its own, for a job that must not queue behind the
//! serving tasks of the main runtime: ingest, and in `flashnode dev` the devnet (it stands for
//! the remote sequencer, so an RPC flood on the node must not starve its stream).

use anyhow::Context;

/// A one-worker runtime, shut down in the background when dropped (a runtime cannot be
/// dropped in place from async code).
pub struct DedicatedRuntime(Option<tokio::runtime::Runtime>);

impl DedicatedRuntime {
    /// Starts the runtime; its threads are named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(Self(Some(runtime)))
    }

    /// Makes tasks spawned (and I/O registered) while the guard lives go to this runtime.
    pub fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(|rt| rt.enter())
    }
}

impl Drop for DedicatedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
