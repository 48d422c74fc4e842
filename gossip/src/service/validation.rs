//! Validation dispatch: gossiped messages go to blocking threads for the costly stateless
//! checks (at most [`VALIDATION_CONCURRENCY`] at once, each within [`VALIDATION_TIMEOUT`], at
//! most [`VALIDATION_BACKLOG`] waiting), and their verdicts come back over a bounded channel
//! to the host, which applies the stateful rules in spec order.

use crate::{
    codec::BlockVersion,
    gate::now_secs,
    validate::{self, Checked, Outcome, ValidationError, Validator},
};
use alloy_primitives::{Address, B256};
use libp2p::{gossipsub, PeerId};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::{mpsc, Semaphore};
use tracing::{info_span, Instrument};

/// How many messages may be in validation at once (op-node: concurrency 4).
const VALIDATION_CONCURRENCY: usize = 4;
/// Longest validation of one message (op-node: 3 s) before it is ignored.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages waiting for a validation slot before new ones are ignored (bounded memory).
pub(super) const VALIDATION_BACKLOG: usize = 256;

/// The stateless verdict on one message, back from its validation task.
pub(super) struct Verdict {
    /// gossipsub's id of the message.
    pub id: gossipsub::MessageId,
    /// The peer that forwarded it.
    pub source: PeerId,
    /// The stateless checks' result.
    pub result: Result<Checked, ValidationError>,
}

/// The validation pipeline's state: the seen cache and the slots in use.
pub(super) struct Validation {
    chain_id: u64,
    signer: Address,
    validator: Validator,
    slots: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    verdicts: mpsc::Sender<Verdict>,
}

impl Validation {
    /// A pipeline accepting blocks of `chain_id` signed by `signer`; verdicts arrive on the
    /// returned receiver.
    pub(super) fn new(chain_id: u64, signer: Address) -> (Self, mpsc::Receiver<Verdict>) {
        let (verdicts, rx) = mpsc::channel(VALIDATION_BACKLOG);
        let validation = Self {
            chain_id,
            signer,
            validator: Validator::default(),
            slots: Arc::new(Semaphore::new(VALIDATION_CONCURRENCY)),
            pending: Arc::new(AtomicUsize::new(0)),
            verdicts,
        };
        (validation, rx)
    }

    /// Starts validating a message. An error is the verdict at once (a foreign topic, a full
    /// backlog); otherwise the verdict comes back as a [`Verdict`].
    pub(super) fn submit(
        &self,
        id: gossipsub::MessageId,
        source: PeerId,
        message: gossipsub::Message,
    ) -> Result<(), ValidationError> {
        let topic = message.topic.as_str();
        let Some(version) = BlockVersion::from_topic(self.chain_id, topic) else {
            return Err(ValidationError::Topic(topic.to_string()));
        };
        if self.pending.load(Ordering::Relaxed) >= VALIDATION_BACKLOG {
            return Err(ValidationError::Overloaded);
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let (slots, tx, chain_id, signer, pending) = (
            self.slots.clone(),
            self.verdicts.clone(),
            self.chain_id,
            self.signer,
            self.pending.clone(),
        );
        let span = info_span!("validate", %source, version = version.as_str());
        tokio::spawn(
            async move {
                let result = match slots.acquire_owned().await {
                    Ok(_permit) => {
                        let data = message.data;
                        let work = tokio::task::spawn_blocking(move || {
                            validate::check(version, &data, now_secs(), chain_id, signer)
                        });
                        match tokio::time::timeout(VALIDATION_TIMEOUT, work).await {
                            Ok(Ok(r)) => r,
                            Ok(Err(e)) => Err(ValidationError::Internal(e)),
                            Err(_) => Err(ValidationError::Timeout(VALIDATION_TIMEOUT)),
                        }
                    }
                    Err(e) => Err(ValidationError::Closed(e)),
                };
                pending.fetch_sub(1, Ordering::Relaxed);
                let _ = tx.send(Verdict { id, source, result }).await;
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Applies the stateful rules to a verdict.
    pub(super) fn decide(&mut self, result: Result<Checked, ValidationError>) -> Outcome {
        match result {
            Ok(checked) => self.validator.decide(checked),
            Err(err) => Outcome::Refuse(err),
        }
    }

    /// Marks a block this node publishes as seen (it must not come back as new).
    pub(super) fn mark_seen(&mut self, number: u64, hash: B256) {
        self.validator.mark_seen(number, hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        codec::{sign_block, tests::*},
        validate::Refusal,
    };

    fn message(topic: String, data: Vec<u8>) -> gossipsub::Message {
        gossipsub::Message {
            source: None,
            data,
            sequence_number: None,
            topic: gossipsub::TopicHash::from_raw(topic),
        }
    }

    #[tokio::test]
    async fn a_message_goes_through_both_halves_and_its_repeat_is_ignored() {
        let signer = test_signer();
        let (mut v, mut verdicts) = Validation::new(901, signer.address());
        let (block, hash) = test_block(3, now_secs());
        let msg = sign_block(&block, hash, 901, &signer).unwrap();
        let topic = BlockVersion::V4.topic(901);
        for _ in 0..2 {
            let id = gossipsub::MessageId::new(b"m");
            v.submit(id, PeerId::random(), message(topic.clone(), msg.wire.clone())).unwrap();
        }
        let first = verdicts.recv().await.unwrap().result;
        let Outcome::Accept(b) = v.decide(first) else { panic!("accepted") };
        assert_eq!(b.hash, hash);
        let second = verdicts.recv().await.unwrap().result;
        let Outcome::Refuse(err) = v.decide(second) else { panic!("refused") };
        assert!(matches!(err, ValidationError::Seen(h) if h == hash));
        assert_eq!(err.refusal(), Refusal::Ignore);
    }

    #[tokio::test]
    async fn foreign_topics_are_rejected_and_a_full_backlog_ignored() {
        let (v, _verdicts) = Validation::new(901, Address::ZERO);
        let id = gossipsub::MessageId::new(b"m");
        let err = v
            .submit(id.clone(), PeerId::random(), message(BlockVersion::V4.topic(902), vec![]))
            .unwrap_err();
        assert!(matches!(&err, ValidationError::Topic(t) if *t == BlockVersion::V4.topic(902)));
        assert_eq!((err.refusal(), err.label()), (Refusal::Reject, "topic"));
        v.pending.store(VALIDATION_BACKLOG, Ordering::Relaxed);
        let err = v
            .submit(id, PeerId::random(), message(BlockVersion::V4.topic(901), vec![]))
            .unwrap_err();
        assert!(matches!(err, ValidationError::Overloaded));
        assert_eq!((err.refusal(), err.label()), (Refusal::Ignore, "overloaded"));
    }

    #[tokio::test]
    async fn a_broken_message_is_rejected_with_its_cause() {
        let (mut v, mut verdicts) = Validation::new(901, Address::ZERO);
        let id = gossipsub::MessageId::new(b"m");
        v.submit(id, PeerId::random(), message(BlockVersion::V1.topic(901), vec![1, 2, 3]))
            .unwrap();
        let result = verdicts.recv().await.unwrap().result;
        let Outcome::Refuse(err) = v.decide(result) else { panic!("refused") };
        assert!(matches!(err, ValidationError::Decode(_)), "{err:?}");
        assert_eq!(err.refusal(), Refusal::Reject);
    }
}
