//! The upstream execution client, and the methods passed to it unchanged.

use crate::{error::RpcError, RpcContext};
use jsonrpsee::{
    core::{client::ClientT, traits::ToRpcParams},
    http_client::{HttpClient, HttpClientBuilder},
    server::RpcModule,
    types::{ErrorObjectOwned, Params},
    ws_client::{WsClient, WsClientBuilder},
};
use serde_json::{value::RawValue, Value};
use std::{sync::Arc, time::Duration};

/// Methods answered by the upstream as they are.
pub const PROXIED: &[&str] = &[
    "eth_blockNumber",
    "eth_getRawTransactionByHash",
    "eth_getUncleCountByBlockHash",
    "eth_getUncleCountByBlockNumber",
    "eth_getUncleByBlockHashAndIndex",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getHeaderByNumber",
    "eth_getHeaderByHash",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_feeHistory",
    "eth_getProof",
    "eth_getAccount",
    "eth_syncing",
    "eth_accounts",
    "eth_coinbase",
    "eth_mining",
    "eth_hashrate",
    "eth_protocolVersion",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_sendRawTransaction",
    "net_version",
    "net_listening",
    "net_peerCount",
    "web3_clientVersion",
    "web3_sha3",
    "devnet_dumpState",
    "devnet_injectTailReorg",
];

/// Why the upstream could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Client construction failed.
    #[error("cannot reach upstream {url}: {reason}")]
    Connect {
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The upstream answered with a JSON-RPC error (passed on as it is).
    #[error("{}", .0.message())]
    Rejected(ErrorObjectOwned),
    /// The upstream (or its HTTP client's limit) refused the request as too large.
    #[error(
        "request too large for the upstream execution client (HTTP 413 Payload Too Large): send \
         a smaller request"
    )]
    TooLarge,
    /// The upstream could not be reached, timed out or answered HTTP failure.
    #[error("upstream unavailable: {0}")]
    Unavailable(#[source] jsonrpsee::core::client::Error),
    /// The params to forward are not valid JSON.
    #[error("cannot forward params: {0}")]
    Params(#[source] serde_json::Error),
}

impl UpstreamError {
    /// The JSON-RPC code the node answers with.
    pub fn code(&self) -> i32 {
        match self {
            Self::Rejected(obj) => obj.code(),
            Self::TooLarge => crate::error::code::INVALID_REQUEST,
            Self::Connect { .. } | Self::Unavailable(_) | Self::Params(_) => {
                crate::error::code::INTERNAL
            }
        }
    }

    fn from_client(e: jsonrpsee::core::client::Error) -> Self {
        use jsonrpsee::{core::client::Error, http_client::transport::Error as Http};
        match e {
            Error::Call(obj) => Self::Rejected(obj),
            Error::Transport(t) => {
                let too_large = matches!(
                    t.downcast_ref::<Http>(),
                    Some(Http::Rejected { status_code: 413 } | Http::RequestTooLarge)
                );
                if too_large {
                    Self::TooLarge
                } else {
                    Self::Unavailable(Error::Transport(t))
                }
            }
            other => Self::Unavailable(other),
        }
    }
}

/// A JSON-RPC client of the upstream, HTTP or WS.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

enum Inner {
    Http(HttpClient),
    Ws(WsClient),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstream")
    }
}

/// Params forwarded verbatim.
struct Raw(Option<Box<RawValue>>);

impl ToRpcParams for Raw {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(self.0)
    }
}

impl Upstream {
    /// A client of `url` (`http(s)://` or `ws(s)://`).
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, UpstreamError> {
        let err = |e: jsonrpsee::core::client::Error| UpstreamError::Connect {
            url: url.into(),
            reason: e.to_string(),
        };
        let inner = if url.starts_with("ws://") || url.starts_with("wss://") {
            Inner::Ws(
                WsClientBuilder::default()
                    .request_timeout(timeout)
                    .build(url)
                    .await
                    .map_err(err)?,
            )
        } else {
            Inner::Http(
                HttpClientBuilder::default()
                    .request_timeout(timeout)
                    .max_response_size(64 * 1024 * 1024)
                    .build(url)
                    .map_err(err)?,
            )
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Calls `method` with `params` (a JSON array or object, or None).
    pub async fn call(&self, method: &str, params: Option<Value>) -> Result<Value, UpstreamError> {
        let raw = match params {
            Some(v) => Some(RawValue::from_string(v.to_string()).map_err(UpstreamError::Params)?),
            None => None,
        };
        let res = match &*self.inner {
            Inner::Http(c) => c.request::<Value, _>(method, Raw(raw)).await,
            Inner::Ws(c) => c.request::<Value, _>(method, Raw(raw)).await,
        };
        metrics::counter!("flashnode_rpc_proxied_total").increment(1);
        res.map_err(UpstreamError::from_client)
    }
}

/// The request's params as JSON (None when absent).
fn params_json(p: &Params<'_>) -> Result<Option<Value>, RpcError> {
    if p.as_str().is_none() {
        return Ok(None);
    }
    p.parse::<Value>().map(Some).map_err(|e| RpcError::invalid_params(crate::error::detail(&e)))
}

/// Registers every [`PROXIED`] method.
pub fn register(m: &mut RpcModule<RpcContext>) {
    for method in PROXIED {
        m.register_async_method(method, move |params, ctx, _| async move {
            let params = params_json(&params)?;
            ctx.upstream.call(method, params).await.map_err(RpcError::from)
        })
        .expect("proxied method names are unique");
    }
}
