//! Gossip block messages through the node's decode and validation path
//! (`validate::check` + `Validator::decide`: size caps, snappy, signature, SSZ envelope,
//! timestamp window, version rules, block hash, per-height rules) on every `blocks` topic
//! version.
//!
//! Input: a mode byte, then
//! - even: arbitrary bytes as the message, validated on each of the four topics;
//! - odd: a [`common::BlockSpec`] (fields of a block, sealed and signed by the trusted key,
//!   optionally with its payload bytes mutated before signing) so inputs get past the
//!   signature check, validated on its own topic and on one the input picks.
//!
//! Invariants: no panic; an ACCEPTed message decodes to a block whose header hash recomputes
//! to the payload's block hash, signed by the trusted key, on the topic it came on, whose
//! stored form decodes as the alt-sync answer for its number, and whose repeat is IGNOREd as
//! seen; REJECT and IGNORE carry one of the known reasons.
#![no_main]

mod common;

use arbitrary::{Arbitrary, Unstructured};
use common::{BlockSpec, CHAIN, NOW};
use flashnode_gossip::{
    altsync, codec, BlockVersion, MessageIdMode, Outcome, ValidationError, Validator,
};
use libfuzzer_sys::fuzz_target;

/// Every reason a message can be refused with (validate.rs).
const REASONS: &[&str] = &[
    "too_large",
    "too_small",
    "decode",
    "too_old",
    "too_new",
    "version",
    "block_hash",
    "too_many_at_height",
    "seen",
    "signature",
];

fn check_message(version: BlockVersion, data: &[u8]) {
    let trusted = common::signer().address();
    let mut validator = Validator::default();
    let outcome = validator.validate(version, data, NOW, CHAIN, trusted);
    match &outcome {
        Outcome::Accept(b) => {
            assert_eq!(b.version, version);
            assert_eq!(b.header.hash_slow(), b.hash, "accepted block's header hash recomputes");
            assert_eq!(b.envelope.payload.block_hash(), b.hash);
            assert_eq!(b.number(), b.envelope.payload.block_number());
            assert_eq!(codec::recover_signer(&b.envelope, CHAIN), Some(trusted));
            assert_eq!(b.wire, data);
            // What the node stores and serves over alt-sync decodes back to this block.
            let payload = altsync::payload_bytes(&b.wire).expect("accepted message decompresses");
            let answer = altsync::PayloadResponse::Ok {
                version: altsync::response_version(version),
                payload,
            };
            let served = altsync::check_answer(b.number(), answer)
                .expect("stored block is a valid alt-sync answer");
            assert_eq!(served.hash, b.hash);
            let again = validator.validate(version, data, NOW, CHAIN, trusted);
            assert!(
                matches!(again, Outcome::Refuse(ValidationError::Seen(h)) if h == b.hash),
                "repeat of an accepted block: {again:?}"
            );
        }
        Outcome::Refuse(e) => {
            assert!(REASONS.contains(&e.label()), "unknown reason {}: {e}", e.label())
        }
    }
    // The message id function sees every message before validation.
    assert_eq!(codec::message_id(MessageIdMode::OpNode, &version.topic(CHAIN), data).len(), 20);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        for version in BlockVersion::ALL {
            check_message(version, rest);
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(spec) = BlockSpec::arbitrary(&mut u) else { return };
    let Some((version, wire)) = spec.wire() else { return };
    check_message(version, &wire);
    let other = BlockVersion::ALL[(mode >> 1) as usize % 4];
    if other != version {
        check_message(other, &wire);
    }
});
