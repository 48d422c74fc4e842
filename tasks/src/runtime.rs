//! A tokio runtime of its own, for work that must not queue behind the serving tasks of the
//! main runtime (the node's ingest, `flashnode dev`'s devnet, the RPC's executions).

use tokio::runtime::{Builder, EnterGuard, Runtime};

/// A runtime of its own, shut down in the background when dropped: a runtime cannot be
/// dropped in place from async code, and dropping one in place would wait for its blocking
/// work (an execution stops on its own budget).
#[derive(Debug)]
pub struct DedicatedRuntime(Option<Runtime>);

impl DedicatedRuntime {
    /// A runtime with one worker thread and every driver (I/O, time); its threads are named
    /// `name`.
    pub fn new(name: &str) -> std::io::Result<Self> {
        Self::build(Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all())
    }

    /// The runtime `builder` builds.
    pub fn build(builder: &mut Builder) -> std::io::Result<Self> {
        Ok(Self(Some(builder.build()?)))
    }

    /// Makes tasks spawned (and I/O registered) while the guard lives go to this runtime.
    pub fn enter(&self) -> Option<EnterGuard<'_>> {
        self.0.as_ref().map(|rt| rt.enter())
    }

    /// A handle to spawn on this runtime (`None` only while it is dropped).
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(Runtime::handle)
    }
}

impl Drop for DedicatedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
