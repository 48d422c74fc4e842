//! Per-method RPC metrics: a jsonrpsee middleware counting every call by method and outcome and
//! timing it. Method labels are limited to the methods the server knows (others count as
//! `unknown`), so a client cannot blow up the label set.

use jsonrpsee::{
    core::middleware::{Batch, BatchEntry, Notification, RpcServiceT},
    server::MethodResponse,
    types::Request,
};
use std::{collections::HashSet, future::Future, sync::Arc, time::Instant};

/// Calls by method and outcome (`ok` / `error` / `cancelled`: the client went away first).
pub const RPC_REQUESTS_TOTAL: &str = "flashnode_rpc_requests_total";
/// Call latency by method, seconds.
pub const RPC_REQUEST_DURATION_SECONDS: &str = "flashnode_rpc_request_duration_seconds";
/// Batches and their sizes.
pub const RPC_BATCH_SIZE: &str = "flashnode_rpc_batch_size";
/// Calls in flight.
pub const RPC_IN_FLIGHT: &str = "flashnode_rpc_in_flight";

/// Registers the descriptions of the RPC metrics.
pub fn describe() {
    metrics::describe_counter!(
        RPC_REQUESTS_TOTAL,
        "JSON-RPC calls by method and outcome (ok, error, cancelled)"
    );
    metrics::describe_histogram!(
        RPC_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "JSON-RPC call latency by method"
    );
    metrics::describe_histogram!(RPC_BATCH_SIZE, "Calls per JSON-RPC batch");
    metrics::describe_gauge!(RPC_IN_FLIGHT, "JSON-RPC calls being answered");
}

/// The middleware (one per connection; the method set is shared).
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    service: S,
    known: Arc<HashSet<&'static str>>,
}

impl<S> RpcMetrics<S> {
    /// Wraps `service`; `known` are the methods that get their own label.
    pub fn new(service: S, known: Arc<HashSet<&'static str>>) -> Self {
        Self { service, known }
    }
}

fn label(known: &HashSet<&'static str>, method: &str) -> &'static str {
    known.get(method).copied().unwrap_or("unknown")
}

/// Decrements the in-flight gauge even when the call's future is dropped (client gone).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(RPC_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(RPC_IN_FLIGHT).decrement(1.0);
    }
}

/// Counts a call whose future is dropped before it answers (its client went away, which
/// cancels the execution) as `outcome="cancelled"`, with its duration until then.
struct Unanswered {
    method: &'static str,
    started: Instant,
    answered: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.answered {
            metrics::counter!(RPC_REQUESTS_TOTAL, "method" => self.method, "outcome" => "cancelled")
                .increment(1);
            metrics::histogram!(RPC_REQUEST_DURATION_SECONDS, "method" => self.method)
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

impl<S> RpcServiceT for RpcMetrics<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let method = label(&self.known, request.method_name());
        let service = self.service.clone();
        async move {
            let _in_flight = InFlight::enter();
            let started = Instant::now();
            let mut unanswered = Unanswered { method, started, answered: false };
            let response = service.call(request).await;
            unanswered.answered = true;
            let outcome = if response.is_error() { "error" } else { "ok" };
            metrics::counter!(RPC_REQUESTS_TOTAL, "method" => method, "outcome" => outcome)
                .increment(1);
            metrics::histogram!(RPC_REQUEST_DURATION_SECONDS, "method" => method)
                .record(started.elapsed().as_secs_f64());
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        // jsonrpsee answers batch entries inside the inner service, so entries are counted here
        // by method; their outcome and latency are the batch's.
        metrics::histogram!(RPC_BATCH_SIZE).record(batch.len() as f64);
        let methods: Vec<&'static str> = batch
            .iter()
            .map(|entry| match entry {
                Ok(BatchEntry::Call(req)) => label(&self.known, req.method_name()),
                Ok(BatchEntry::Notification(n)) => label(&self.known, n.method_name()),
                Err(_) => "invalid",
            })
            .collect();
        let service = self.service.clone();
        async move {
            let _in_flight = InFlight::enter();
            let started = Instant::now();
            let response = service.batch(batch).await;
            let elapsed = started.elapsed().as_secs_f64();
            for method in methods {
                metrics::counter!(RPC_REQUESTS_TOTAL, "method" => method, "outcome" => "batch")
                    .increment(1);
                metrics::histogram!(RPC_REQUEST_DURATION_SECONDS, "method" => method)
                    .record(elapsed);
            }
            response
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        let method = label(&self.known, n.method_name());
        metrics::counter!(RPC_REQUESTS_TOTAL, "method" => method, "outcome" => "notification")
            .increment(1);
        self.service.notification(n)
    }
}
