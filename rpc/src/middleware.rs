//! The per-connection RPC middleware: puts the client's IP in every request's extensions (the
//! per-IP subscription limit reads it) and turns jsonrpsee's own terse errors into sentences:
//! a params error reads `"invalid params: <what was wrong>"` (jsonrpsee puts the reason in
//! `data` under "Invalid params"), and `eth_subscribe` over HTTP says it needs a websocket
//! (jsonrpsee answers "Internal error"). Batch entries go through the same path. A request
//! with an id jsonrpsee cannot answer to, which it takes for a notification, is answered
//! -32600 with a null id when the connection noted it ([`crate::invalid_id`]).

use crate::{
    error::{code, RpcError},
    invalid_id::{self, InvalidIds},
    limits::ClientIp,
};
use jsonrpsee::{
    core::middleware::{Batch, BatchEntry, Notification, RpcServiceT},
    server::{BatchResponseBuilder, MethodResponse},
    types::{error::INVALID_PARAMS_MSG, ErrorObjectOwned, Id, Request},
};
use serde::Deserialize;
use std::{
    future::Future,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// The bounds of one JSON-RPC batch (#25.2).
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Most calls (0: no limit).
    pub max_calls: usize,
    /// Most bytes of the answer.
    pub max_response_bytes: usize,
    /// Wall-clock time the batch's executions may take in all, as one request's execution
    /// may: past it the batch's remaining executions are refused.
    pub execution_budget: Duration,
}

/// The methods that execute the EVM, which share a batch's execution budget.
const EXECUTIONS: [&str; 4] =
    ["eth_call", "eth_estimateGas", "eth_createAccessList", "eth_simulateV1"];

/// The middleware around one connection's service.
#[derive(Clone, Debug)]
pub struct Connection<S> {
    service: S,
    ip: Option<IpAddr>,
    batches: BatchLimits,
    invalid_ids: Arc<InvalidIds>,
}

impl<S> Connection<S> {
    /// Wraps `service` of a connection from `ip`, with `batches` bounding its batches, whose
    /// requests with an invalid id are noted in `invalid_ids`.
    pub fn new(
        service: S,
        ip: Option<IpAddr>,
        batches: BatchLimits,
        invalid_ids: Arc<InvalidIds>,
    ) -> Self {
        Self { service, ip, batches, invalid_ids }
    }

    /// Whether the notification `n` is a noted request with an invalid id (to be answered).
    fn invalid_id(&self, n: &Notification<'_>) -> bool {
        self.invalid_ids.take(n.method_name(), n.params.as_ref().map(|p| p.get()))
    }
}

/// The methods jsonrpsee answers "Internal error" for on a transport without subscriptions.
const SUBSCRIPTION_METHODS: [&str; 2] = ["eth_subscribe", "eth_unsubscribe"];

#[derive(Deserialize)]
struct ErrorOf<'a> {
    #[serde(borrow)]
    error: ErrorObjectOwnedRef<'a>,
}

#[derive(Deserialize)]
struct ErrorObjectOwnedRef<'a> {
    code: i32,
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

/// The sentence for `response`, when it is one of jsonrpsee's terse errors.
fn rewrite(method: &str, response: &MethodResponse) -> Option<ErrorObjectOwned> {
    match response.as_error_code()? {
        code::INVALID_PARAMS => {
            let parsed: ErrorOf<'_> = serde_json::from_str(response.as_json().get()).ok()?;
            let e = parsed.error;
            if e.code != code::INVALID_PARAMS || e.message != INVALID_PARAMS_MSG {
                return None;
            }
            let detail = match e.data {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => "malformed params".into(),
            };
            Some(RpcError::InvalidParams(detail).into())
        }
        code::INTERNAL if SUBSCRIPTION_METHODS.contains(&method) => {
            Some(RpcError::SubscriptionNeedsWebsocket.into())
        }
        _ => None,
    }
}

impl<S> RpcServiceT for Connection<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        if let Some(ip) = self.ip {
            request.extensions_mut().insert(ClientIp(ip));
        }
        let service = self.service.clone();
        async move {
            let id: Id<'static> = request.id().into_owned();
            let method = request.method_name().to_string();
            let response = service.call(request).await;
            match rewrite(&method, &response) {
                Some(e) => {
                    let extensions = response.extensions().clone();
                    MethodResponse::error(id, e).with_extensions(extensions)
                }
                None => response,
            }
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        // As jsonrpsee's own batch loop, but each call through `call` above.
        let this = self.clone();
        async move {
            let limits = this.batches;
            if limits.max_calls != 0 && batch.len() > limits.max_calls {
                metrics::counter!(crate::limits::RPC_LIMITED_TOTAL, "what" => "batch_calls")
                    .increment(1);
                let e = RpcError::BatchTooLarge { calls: batch.len(), limit: limits.max_calls };
                return MethodResponse::error(Id::Null, ErrorObjectOwned::from(e));
            }
            let started = Instant::now();
            let mut out = BatchResponseBuilder::new_with_limit(limits.max_response_bytes);
            let mut got_notification = false;
            for entry in batch.into_iter() {
                let response = match entry {
                    Ok(BatchEntry::Call(req))
                        if EXECUTIONS.contains(&req.method_name())
                            && started.elapsed() >= limits.execution_budget =>
                    {
                        metrics::counter!(crate::limits::RPC_LIMITED_TOTAL, "what" => "batch_budget")
                            .increment(1);
                        let e = RpcError::BatchBudgetSpent { budget: limits.execution_budget };
                        MethodResponse::error(req.id().into_owned(), ErrorObjectOwned::from(e))
                    }
                    Ok(BatchEntry::Call(req)) => this.call(req).await,
                    Ok(BatchEntry::Notification(n)) if this.invalid_id(&n) => {
                        MethodResponse::error(Id::Null, invalid_id::error())
                    }
                    Ok(BatchEntry::Notification(n)) => {
                        got_notification = true;
                        this.service.notification(n).await;
                        continue;
                    }
                    Err(err) => {
                        let (err, id) = err.into_parts();
                        MethodResponse::error(id, err)
                    }
                };
                if out.append(response).is_err() {
                    metrics::counter!(crate::limits::RPC_LIMITED_TOTAL, "what" => "batch_response")
                        .increment(1);
                    let e = RpcError::BatchResponseTooLarge { limit: limits.max_response_bytes };
                    return MethodResponse::error(Id::Null, ErrorObjectOwned::from(e));
                }
            }
            if out.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(out.finish())
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        let invalid = self.invalid_id(&n);
        let service = self.service.clone();
        async move {
            if invalid {
                MethodResponse::error(Id::Null, invalid_id::error())
            } else {
                service.notification(n).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::types::ErrorObject;

    fn response(e: ErrorObjectOwned) -> MethodResponse {
        MethodResponse::error(Id::Number(1), e)
    }

    #[test]
    fn jsonrpsee_params_errors_read_as_sentences() {
        let raw = ErrorObject::owned(-32602, INVALID_PARAMS_MSG, Some("No more params"));
        let e = rewrite("eth_getBalance", &response(raw)).expect("rewritten");
        assert_eq!((e.code(), e.message()), (-32602, "invalid params: No more params"));
        assert!(e.data().is_none());
    }

    #[test]
    fn own_sentences_and_other_errors_stay() {
        let own = ErrorObject::owned(-32602, "invalid params: missing address", None::<()>);
        assert!(rewrite("eth_getBalance", &response(own)).is_none());
        let other = ErrorObject::owned(-32000, "nonce too low", None::<()>);
        assert!(rewrite("eth_sendRawTransaction", &response(other)).is_none());
        let internal = ErrorObject::owned(-32603, "Internal error", None::<()>);
        assert!(rewrite("eth_call", &response(internal)).is_none());
    }

    #[test]
    fn subscribe_over_http_says_it_needs_a_websocket() {
        let internal = ErrorObject::owned(-32603, "Internal error", None::<()>);
        let e = rewrite("eth_subscribe", &response(internal)).expect("rewritten");
        assert_eq!(e.code(), code::METHOD_NOT_FOUND);
        assert!(e.message().contains("websocket"), "{}", e.message());
    }
}
