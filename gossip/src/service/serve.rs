//! The alt-sync server: answers `payload_by_number` requests from the store within op-node's
//! global and per-peer rate limits.

use crate::{
    altsync::{self, PayloadResponse, RateLimits},
    stats::GossipStats,
    store::Store,
};
use libp2p::PeerId;
use std::{
    sync::{atomic::Ordering, Arc},
    time::Instant,
};
use tracing::debug;

/// How one request was handled (the `outcome` label of `flashnode_altsync_served_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Served {
    /// The block was sent.
    Ok,
    /// The store does not hold it.
    NotFound,
    /// The store could not be read.
    Error,
    /// Over the rate limit: the stream is reset without an answer.
    RateLimited,
}

impl Served {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Error => "error",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The server's state: its rate limits, and the store it answers from.
pub(super) struct PayloadServer {
    limits: RateLimits<PeerId>,
    store: Arc<Store>,
    stats: Arc<GossipStats>,
}

impl PayloadServer {
    /// A server answering from `store`.
    pub(super) fn new(store: Arc<Store>, stats: Arc<GossipStats>) -> Self {
        Self { limits: RateLimits::default(), store, stats }
    }

    /// The answer to `peer`'s request for block `number`, None when it is over the rate limit
    /// (dropping the response channel resets the stream: the client sees an error, like
    /// op-node whose server stops waiting on its rate limiter).
    pub(super) fn answer(
        &mut self,
        peer: &PeerId,
        number: u64,
        now: Instant,
    ) -> (Served, Option<PayloadResponse>) {
        if !self.limits.allow(peer, now) {
            self.stats.altsync_rate_limited.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("flashnode_altsync_served_total", "outcome" => Served::RateLimited.label())
                .increment(1);
            debug!(%peer, number, "alt-sync request rate-limited");
            return (Served::RateLimited, None);
        }
        let (served, response) = match self.store.block(number) {
            Ok(Some(b)) => (
                Served::Ok,
                PayloadResponse::Ok {
                    version: altsync::response_version(b.version),
                    payload: b.payload,
                },
            ),
            Ok(None) => (Served::NotFound, PayloadResponse::Err(altsync::RESULT_NOT_FOUND)),
            // Logged (rate-limited) and counted by the store.
            Err(_) => (Served::Error, PayloadResponse::Err(altsync::RESULT_UNKNOWN)),
        };
        self.stats.altsync_served.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flashnode_altsync_served_total", "outcome" => served.label())
            .increment(1);
        (served, Some(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec::BlockVersion, store::StoredBlock};
    use alloy_primitives::B256;

    #[test]
    fn answers_from_the_store_until_the_peer_floods() {
        let store = Arc::new(Store::in_memory(10).unwrap());
        let payload = vec![7u8; 100];
        store
            .put_block(&StoredBlock {
                number: 5,
                version: BlockVersion::V4,
                hash: B256::repeat_byte(5),
                payload: payload.clone(),
            })
            .unwrap();
        let stats = Arc::new(GossipStats::default());
        let mut server = PayloadServer::new(store, stats.clone());
        let (peer, now) = (PeerId::random(), Instant::now());
        assert_eq!(
            server.answer(&peer, 5, now),
            (Served::Ok, Some(PayloadResponse::Ok { version: 2, payload }))
        );
        assert_eq!(
            server.answer(&peer, 6, now),
            (Served::NotFound, Some(PayloadResponse::Err(altsync::RESULT_NOT_FOUND)))
        );
        // The rest of the per-peer burst, then the limit.
        for _ in 2..altsync::PEER_BURST as usize {
            assert_eq!(server.answer(&peer, 6, now).0, Served::NotFound);
        }
        assert_eq!(server.answer(&peer, 5, now), (Served::RateLimited, None));
        assert_eq!(stats.altsync_rate_limited.load(Ordering::Relaxed), 1);
        assert_eq!(stats.altsync_served.load(Ordering::Relaxed), altsync::PEER_BURST as u64);
        // Another peer is still served.
        assert_eq!(server.answer(&PeerId::random(), 5, now).0, Served::Ok);
    }
}
