//! Validation of gossiped blocks in the order of the OP-stack p2p spec
//! (`rollup-node-p2p.md`, "Block validation") and op-node (`op-node/p2p/gossip.go`,
//! `BuildBlocksValidator`): REJECT broken encoding, a timestamp outside
//! `[now - 60 s, now + 5 s]`, a block hash that does not match the payload, a payload that
//! breaks its version's rules, a sixth different block at one height; IGNORE a block already
//! seen; REJECT a signature not from the unsafe-block signer; then mark it seen.
//!
//! The work is split in two: [`check`] is pure and costly (decompression, hashing the
//! transactions trie, signature recovery) and runs on blocking threads; [`Validator::decide`]
//! holds the per-height state and applies the verdict in spec order.

use crate::codec::{self, BlockVersion, DecodeError};
use alloy_consensus::Header;
use alloy_eips::eip7685::RequestsOrHash;
use alloy_primitives::{Address, B256};
use alloy_rpc_types_engine::{CancunPayloadFields, PraguePayloadFields};
use op_alloy_rpc_types_engine::{
    OpExecutionPayload, OpExecutionPayloadSidecar, OpNetworkPayloadEnvelope, OpPayloadError,
};
use std::{collections::BTreeMap, sync::Arc};

/// How far in the past a block timestamp may be (spec: 60 s).
pub const MAX_PAST_SECS: u64 = 60;
/// How far in the future a block timestamp may be (spec: 5 s).
pub const MAX_FUTURE_SECS: u64 = 5;
/// Different blocks accepted at one height (spec: reject when more than 5).
pub const MAX_BLOCKS_PER_HEIGHT: usize = 5;
/// Heights remembered by the seen cache (op-node's LRU of 1000).
pub const SEEN_HEIGHTS: usize = 1000;

/// A block that passed validation.
#[derive(Clone, Debug)]
pub struct VerifiedBlock {
    /// Topic version it came on.
    pub version: BlockVersion,
    /// The sealed header rebuilt from the payload (its hash is `hash`).
    pub header: Header,
    /// Block hash.
    pub hash: B256,
    /// Transaction hashes in order.
    pub tx_hashes: Vec<B256>,
    /// The decoded envelope.
    pub envelope: OpNetworkPayloadEnvelope,
    /// The wire bytes (snappy), kept to serve and re-publish as received.
    pub wire: Vec<u8>,
}

impl VerifiedBlock {
    /// Block number.
    pub fn number(&self) -> u64 {
        self.header.number
    }
}

/// What a block that is not accepted is reported to gossipsub as: the spec's classification
/// ("Block validation": IGNORE drops it quietly, REJECT also penalises the sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not forwarded, no penalty.
    Ignore,
    /// Invalid: not forwarded, the sender is penalised.
    Reject,
}

impl Refusal {
    /// `ignore` or `reject` (the `outcome` label of `flashnode_gossip_messages_total`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::Reject => "reject",
        }
    }
}

/// A payload that breaks its topic version's rules (spec: "Block validation", by version).
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// v2+ payloads carry an empty withdrawals list.
    #[error("withdrawals are not empty")]
    Withdrawals,
    /// v3+ payloads have `blobGasUsed = excessBlobGas = 0`.
    #[error("blob gas used {used}, excess blob gas {excess}: both must be 0")]
    BlobGas {
        /// `blobGasUsed`.
        used: u64,
        /// `excessBlobGas`.
        excess: u64,
    },
    /// v3+ envelopes carry the parent beacon block root.
    #[error("the parent beacon block root is missing")]
    BeaconRoot,
    /// The payload does not convert to a block.
    #[error(transparent)]
    Payload(#[from] OpPayloadError),
}

/// Why a gossiped block is not accepted: the cause, its spec classification
/// ([`ValidationError::refusal`]) and a metric label ([`ValidationError::label`]).
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The message came on a topic that is not one of this chain's block topics.
    #[error("unknown topic `{0}`")]
    Topic(String),
    /// Too many messages wait for validation.
    #[error("the validation backlog is full")]
    Overloaded,
    /// Validation ran out of time (not the sender's fault for sure).
    #[error("validation took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// The validation task failed (panicked or was cancelled).
    #[error("the validation task failed")]
    Internal(#[source] tokio::task::JoinError),
    /// The validation slots were closed (the service is stopping).
    #[error("the validation slots are closed")]
    Closed(#[source] tokio::sync::AcquireError),
    /// Broken encoding, or a message too small or too large.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The timestamp is more than [`MAX_PAST_SECS`] in the past.
    #[error("timestamp {timestamp} is more than {MAX_PAST_SECS} s before {now}")]
    TooOld {
        /// Block timestamp.
        timestamp: u64,
        /// Validation time.
        now: u64,
    },
    /// The timestamp is more than [`MAX_FUTURE_SECS`] in the future.
    #[error("timestamp {timestamp} is more than {MAX_FUTURE_SECS} s after {now}")]
    TooNew {
        /// Block timestamp.
        timestamp: u64,
        /// Validation time.
        now: u64,
    },
    /// The payload breaks its version's rules.
    #[error("the payload breaks its version's rules: {0}")]
    Version(#[from] VersionError),
    /// The payload's block hash is not the hash of its header.
    #[error("block hash {claimed} does not match the payload (hashes to {computed})")]
    BlockHash {
        /// The hash the payload claims.
        claimed: B256,
        /// The hash of the header rebuilt from it.
        computed: B256,
    },
    /// More than [`MAX_BLOCKS_PER_HEIGHT`] different blocks at this height.
    #[error("more than {MAX_BLOCKS_PER_HEIGHT} blocks at height {0}")]
    TooManyAtHeight(u64),
    /// A block already seen.
    #[error("block {0} was already seen")]
    Seen(B256),
    /// Not signed by the unsafe-block signer (the recovered signer, if any).
    #[error("not signed by the unsafe-block signer (recovered {0:?})")]
    Signature(Option<Address>),
}

impl ValidationError {
    /// IGNORE or REJECT, as the spec classifies the cause.
    pub fn refusal(&self) -> Refusal {
        match self {
            // Our own limits, or a block we already have: no fault of the sender.
            Self::Overloaded | Self::Timeout(_) | Self::Internal(_) | Self::Closed(_) => {
                Refusal::Ignore
            }
            Self::Seen(_) => Refusal::Ignore,
            Self::Topic(_)
            | Self::Decode(_)
            | Self::TooOld { .. }
            | Self::TooNew { .. }
            | Self::Version(_)
            | Self::BlockHash { .. }
            | Self::TooManyAtHeight(_)
            | Self::Signature(_) => Refusal::Reject,
        }
    }

    /// The `reason` label of `flashnode_gossip_messages_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Topic(_) => "topic",
            Self::Overloaded => "overloaded",
            Self::Timeout(_) => "timeout",
            Self::Internal(_) | Self::Closed(_) => "internal",
            Self::Decode(DecodeError::TooLarge(_)) => "too_large",
            Self::Decode(DecodeError::TooSmall(_)) => "too_small",
            Self::Decode(DecodeError::Encoding(_)) => "decode",
            Self::TooOld { .. } => "too_old",
            Self::TooNew { .. } => "too_new",
            Self::Version(_) => "version",
            Self::BlockHash { .. } => "block_hash",
            Self::TooManyAtHeight(_) => "too_many_at_height",
            Self::Seen(_) => "seen",
            Self::Signature(_) => "signature",
        }
    }
}

/// The verdict on one message.
#[derive(Debug)]
pub enum Outcome {
    /// Valid: deliver and forward.
    Accept(Arc<VerifiedBlock>),
    /// Not accepted, ignored or rejected as [`ValidationError::refusal`] says.
    Refuse(ValidationError),
}

impl Outcome {
    /// `accept`, `ignore` or `reject`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accept(_) => "accept",
            Self::Refuse(e) => e.refusal().label(),
        }
    }

    /// The reason label (`ok` for accepted blocks).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Accept(_) => "ok",
            Self::Refuse(e) => e.label(),
        }
    }
}

/// The result of the stateless checks.
#[derive(Debug)]
pub struct Checked {
    block: VerifiedBlock,
    signer: Option<Address>,
    signature_ok: bool,
}

/// Stateless checks of one message of topic `version` at time `now` (unix seconds).
pub fn check(
    version: BlockVersion,
    data: &[u8],
    now: u64,
    chain_id: u64,
    signer: Address,
) -> Result<Checked, ValidationError> {
    let envelope = codec::decode(version, data)?;
    let payload = &envelope.payload;
    let timestamp = payload.timestamp();
    if timestamp.saturating_add(MAX_PAST_SECS) < now {
        return Err(ValidationError::TooOld { timestamp, now });
    }
    if timestamp > now.saturating_add(MAX_FUTURE_SECS) {
        return Err(ValidationError::TooNew { timestamp, now });
    }
    let recovered = codec::recover_signer(&envelope, chain_id);
    let block = rebuild(version, envelope, data.to_vec())?;
    Ok(Checked { block, signer: recovered, signature_ok: recovered == Some(signer) })
}

/// Checks a payload against its version's rules and its block hash, and rebuilds the sealed
/// header (shared by gossip and alt-sync, whose answers carry no signature).
pub fn rebuild(
    version: BlockVersion,
    envelope: OpNetworkPayloadEnvelope,
    wire: Vec<u8>,
) -> Result<VerifiedBlock, ValidationError> {
    let payload = &envelope.payload;
    version_rules(payload, envelope.parent_beacon_block_root)?;
    let sidecar = match (version, envelope.parent_beacon_block_root) {
        (BlockVersion::V3, Some(root)) => {
            OpExecutionPayloadSidecar::v3(CancunPayloadFields::new(root, vec![]))
        }
        (BlockVersion::V4, Some(root)) => OpExecutionPayloadSidecar::v4(
            CancunPayloadFields::new(root, vec![]),
            // Isthmus headers commit to empty EIP-7685 requests.
            PraguePayloadFields::new(RequestsOrHash::empty()),
        ),
        _ => OpExecutionPayloadSidecar::default(),
    };
    let block =
        payload.clone().into_block_with_sidecar_raw(&sidecar).map_err(VersionError::from)?;
    let hash = block.header.hash_slow();
    if hash != payload.block_hash() {
        return Err(ValidationError::BlockHash { claimed: payload.block_hash(), computed: hash });
    }
    let tx_hashes = codec::tx_hashes(payload);
    Ok(VerifiedBlock { version, header: block.header, hash, tx_hashes, envelope, wire })
}

/// The per-version payload rules of the spec ("Block validation", by topic version).
fn version_rules(
    payload: &OpExecutionPayload,
    beacon_root: Option<B256>,
) -> Result<(), VersionError> {
    match payload {
        // v1 carries no withdrawals by construction of `ExecutionPayloadV1`.
        OpExecutionPayload::V1(_) => Ok(()),
        // v2: withdrawals present (by type) and empty; no blob gas, no beacon root.
        OpExecutionPayload::V2(p) if !p.withdrawals.is_empty() => Err(VersionError::Withdrawals),
        OpExecutionPayload::V2(_) => Ok(()),
        OpExecutionPayload::V3(p)
        | OpExecutionPayload::V4(op_alloy_rpc_types_engine::OpExecutionPayloadV4 {
            payload_inner: p,
            ..
        }) => {
            if !p.payload_inner.withdrawals.is_empty() {
                return Err(VersionError::Withdrawals);
            }
            // v3+: blobGasUsed = excessBlobGas = 0 and the beacon root set.
            if p.blob_gas_used != 0 || p.excess_blob_gas != 0 {
                return Err(VersionError::BlobGas {
                    used: p.blob_gas_used,
                    excess: p.excess_blob_gas,
                });
            }
            if beacon_root.is_none() {
                return Err(VersionError::BeaconRoot);
            }
            Ok(())
        }
    }
}

/// The stateful half of validation: the per-height seen cache.
#[derive(Debug, Default)]
pub struct Validator {
    seen: BTreeMap<u64, Vec<B256>>,
}

impl Validator {
    /// Applies the stateful rules to a checked message, in spec order.
    pub fn decide(&mut self, checked: Checked) -> Outcome {
        let Checked { block, signer, signature_ok } = checked;
        let number = block.number();
        let seen = self.seen.get(&number).map(Vec::as_slice).unwrap_or_default();
        let already = seen.contains(&block.hash);
        // A repeat of a block we accepted is not one more block at the height.
        if !already && seen.len() >= MAX_BLOCKS_PER_HEIGHT {
            return Outcome::Refuse(ValidationError::TooManyAtHeight(number));
        }
        if already {
            return Outcome::Refuse(ValidationError::Seen(block.hash));
        }
        if !signature_ok {
            return Outcome::Refuse(ValidationError::Signature(signer));
        }
        self.seen.entry(number).or_default().push(block.hash);
        while self.seen.len() > SEEN_HEIGHTS {
            self.seen.pop_first();
        }
        Outcome::Accept(Arc::new(block))
    }

    /// Marks a block we published ourselves as seen.
    pub fn mark_seen(&mut self, number: u64, hash: B256) {
        let entry = self.seen.entry(number).or_default();
        if !entry.contains(&hash) {
            entry.push(hash);
        }
        while self.seen.len() > SEEN_HEIGHTS {
            self.seen.pop_first();
        }
    }

    /// Validates one message end to end (both halves; tests and benchmarks).
    pub fn validate(
        &mut self,
        version: BlockVersion,
        data: &[u8],
        now: u64,
        chain_id: u64,
        signer: Address,
    ) -> Outcome {
        match check(version, data, now, chain_id, signer) {
            Ok(c) => self.decide(c),
            Err(err) => Outcome::Refuse(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{sign_block, sign_payload, tests::*};

    const NOW: u64 = 1_700_000_000;

    fn reason(o: &Outcome) -> (&'static str, &'static str) {
        (o.label(), o.reason())
    }

    #[test]
    fn accepts_then_ignores_a_valid_block() {
        let signer = test_signer();
        let (block, hash) = test_block(10, NOW);
        let msg = sign_block(&block, hash, 901, &signer).unwrap();
        let mut v = Validator::default();
        let o = v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address());
        let Outcome::Accept(b) = &o else { panic!("{o:?}") };
        assert_eq!(b.hash, hash);
        assert_eq!(b.number(), 10);
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("ignore", "seen")
        );
    }

    #[test]
    fn rejects_in_spec_order() {
        let signer = test_signer();
        let mut v = Validator::default();
        // Broken snappy.
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &[1, 2, 3], NOW, 901, signer.address())).0,
            "reject"
        );
        // Stale and future timestamps.
        let (old, h) = test_block(1, NOW - 61);
        let msg = sign_block(&old, h, 901, &signer).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("reject", "too_old")
        );
        let (new, h) = test_block(1, NOW + 6);
        let msg = sign_block(&new, h, 901, &signer).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("reject", "too_new")
        );
        // A wrong block hash.
        let (block, _) = test_block(2, NOW);
        let msg = sign_block(&block, B256::repeat_byte(1), 901, &signer).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("reject", "block_hash")
        );
        // Nonzero blob gas breaks the v3+ rules.
        let (block, h) = test_block(3, NOW);
        let (mut payload, _) = OpExecutionPayload::from_block_unchecked(h, &block);
        payload.as_v3_mut().unwrap().blob_gas_used = 1;
        let msg =
            sign_payload(payload, block.header.parent_beacon_block_root, 901, &signer).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("reject", "version")
        );
        // Another signer.
        let (block, h) = test_block(4, NOW);
        let other: alloy_signer_local::PrivateKeySigner =
            "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a".parse().unwrap();
        let msg = sign_block(&block, h, 901, &other).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("reject", "signature")
        );
        // Nothing above was marked seen: the good block at 4 is still accepted.
        let msg = sign_block(&block, h, 901, &signer).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())).0,
            "accept"
        );
    }

    #[test]
    fn sixth_block_at_a_height_is_rejected() {
        let signer = test_signer();
        let mut v = Validator::default();
        for i in 0..6u64 {
            let (block, h) = test_block(7, NOW - i);
            let msg = sign_block(&block, h, 901, &signer).unwrap();
            let o = v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address());
            if i < 5 {
                assert_eq!(o.label(), "accept", "block {i}");
            } else {
                assert_eq!(reason(&o), ("reject", "too_many_at_height"));
            }
        }
        // A repeat of an accepted one is still only ignored.
        let (block, h) = test_block(7, NOW);
        let msg = sign_block(&block, h, 901, &signer).unwrap();
        assert_eq!(
            reason(&v.validate(BlockVersion::V4, &msg.wire, NOW, 901, signer.address())),
            ("ignore", "seen")
        );
    }

    #[test]
    fn our_limits_are_ignored_and_the_senders_faults_rejected() {
        use std::time::Duration;
        let ignored = [
            ValidationError::Timeout(Duration::from_secs(3)),
            ValidationError::Overloaded,
            ValidationError::Seen(B256::ZERO),
        ];
        for e in &ignored {
            assert_eq!(e.refusal(), Refusal::Ignore, "{e}");
        }
        let rejected = [
            ValidationError::Topic("t".into()),
            ValidationError::Decode(DecodeError::TooSmall(1)),
            ValidationError::TooOld { timestamp: 1, now: 100 },
            ValidationError::Version(VersionError::BeaconRoot),
            ValidationError::BlockHash { claimed: B256::ZERO, computed: B256::ZERO },
            ValidationError::TooManyAtHeight(1),
            ValidationError::Signature(None),
        ];
        for e in &rejected {
            assert_eq!(e.refusal(), Refusal::Reject, "{e}");
        }
        let labels: Vec<&str> = ignored.iter().chain(&rejected).map(|e| e.label()).collect();
        assert_eq!(
            labels,
            [
                "timeout",
                "overloaded",
                "seen",
                "topic",
                "too_small",
                "too_old",
                "version",
                "block_hash",
                "too_many_at_height",
                "signature"
            ]
        );
        assert_eq!((Refusal::Ignore.label(), Refusal::Reject.label()), ("ignore", "reject"));
    }
}
