//! `payload_by_number` responses on the client side: the stream reader (result byte, version,
//! snappy framing, 10 MiB caps, `altsync::read_response`) and the answer check for the
//! requested number (`altsync::check_answer`: decode by response version, version rules,
//! block hash, number).
//!
//! Input: a mode byte, then
//! - even: the requested number (8 bytes LE) and arbitrary bytes as the response stream;
//! - odd: a [`common::BlockSpec`] answered by a well-framed response (optionally with another
//!   result byte or version, its payload mutated, the framed stream patched or cut), for the
//!   block's number or another one.
//!
//! Invariants: no panic; a decoded payload is within the 10 MiB cap; an accepted answer is a
//! block of the requested number whose header hash recomputes; a refused one has a reason.
#![no_main]

mod common;

use arbitrary::{Arbitrary, Unstructured};
use common::{BlockSpec, Mutation};
use flashnode_gossip::altsync::{self, PayloadResponse};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 10 * (1 << 20);

fn check_stream(number: u64, mut stream: &[u8]) {
    let Ok(response) = futures::executor::block_on(altsync::read_response(&mut stream)) else {
        return;
    };
    if let PayloadResponse::Ok { payload, .. } = &response {
        assert!(payload.len() <= MAX, "payload over the cap: {}", payload.len());
    }
    match altsync::check_answer(number, response) {
        Ok(b) => {
            assert_eq!(b.number(), number, "accepted an answer for another block");
            assert_eq!(b.header.hash_slow(), b.hash);
            assert_eq!(b.envelope.payload.block_hash(), b.hash);
        }
        Err(e) => assert!(!e.label().is_empty()),
    }
}

#[derive(Arbitrary, Debug)]
struct Answer {
    block: BlockSpec,
    /// Ask for another number than the block's.
    ask_other: Option<u64>,
    /// A result byte other than ok.
    result: Option<u8>,
    /// A response version other than the block's.
    version: Option<u32>,
    /// Patches of the framed stream (after the 5-byte header).
    stream_mutations: Vec<Mutation>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let (num, stream) = rest.split_at(rest.len().min(8));
        let mut n = [0u8; 8];
        n[..num.len()].copy_from_slice(num);
        check_stream(u64::from_le_bytes(n), stream);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(answer) = Answer::arbitrary(&mut u) else { return };
    let Some((version, payload)) = answer.block.answer_payload() else { return };
    let response = match answer.result {
        Some(code) if code != altsync::RESULT_OK => PayloadResponse::Err(code),
        _ => PayloadResponse::Ok {
            version: answer.version.unwrap_or(altsync::response_version(version)),
            payload,
        },
    };
    let mut stream = Vec::new();
    futures::executor::block_on(altsync::write_response(
        &mut futures::io::Cursor::new(&mut stream),
        response,
    ))
    .expect("writes to memory");
    if stream.len() > 5 {
        let mut framed = stream.split_off(5);
        common::mutate(&mut framed, &answer.stream_mutations);
        stream.extend_from_slice(&framed);
    }
    let (payload, _) = answer.block.payload();
    let number = answer.ask_other.unwrap_or(payload.block_number());
    check_stream(number, &stream);
});
