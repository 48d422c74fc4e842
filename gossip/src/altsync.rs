//! Alt-sync: the `payload_by_number` request/response protocol of the OP-stack p2p spec
//! ("Req-Resp", `rollup-node-p2p.md`) and op-node (`op-node/p2p/sync.go`).
//!
//! - Protocol ids: op-node `/opstack/req/payload_by_number/<chainId>/0` and the spec's and
//!   kona's `/opstack/req/payload_by_number/<chainId>/0/`; both are served and spoken.
//! - Request: the block number as a u64 little-endian; the client then closes its side.
//! - Response: one result byte (0 ok, 1 not found, 2 invalid request, 3 unknown), then for
//!   ok a u32 little-endian version (0 payload, 1 Ecotone envelope with the beacon root,
//!   2 Isthmus envelope) and the snappy *framed* SSZ until EOF, read up to 10 MiB.
//! - Limits (op-node): the whole exchange times out after 10 s; the server allows 20 req/s
//!   with a burst of 40 overall and 4 req/s with a burst of 15 per peer.

use crate::{
    codec::{self, BlockVersion},
    validate::{self, ValidationError, VerifiedBlock},
};
use futures::{AsyncReadExt, AsyncWriteExt};
use std::{io, time::Duration};

/// The libp2p side of the protocol: its ids and the request-response codec.
#[cfg(feature = "swarm")]
mod protocol;
#[cfg(feature = "swarm")]
pub use protocol::{protocols, PayloadByNumberCodec};
/// The server's rate limits and the client's pacing (token buckets on `governor`).
#[cfg(feature = "swarm")]
mod limits;
#[cfg(feature = "swarm")]
pub use limits::{Bucket, RateLimits};

/// Timeout of one request/response exchange (op-node: read and write 10 s each).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-wide rate: requests per second.
pub const GLOBAL_RATE: u32 = 20;
/// Server-wide burst.
pub const GLOBAL_BURST: u32 = 40;
/// Per-peer rate: requests per second.
pub const PEER_RATE: u32 = 4;
/// Per-peer burst.
pub const PEER_BURST: u32 = 15;
/// Peers with a rate-limit bucket (op-node keeps an LRU of 1000).
pub const PEER_BUCKETS: usize = 1000;

/// Result byte: the payload follows.
pub const RESULT_OK: u8 = 0;
/// Result byte: no such block.
pub const RESULT_NOT_FOUND: u8 = 1;
/// Result byte: the request is invalid.
pub const RESULT_INVALID: u8 = 2;
/// Result byte: any other error.
pub const RESULT_UNKNOWN: u8 = 3;

/// The response version byte of a gossip version.
pub fn response_version(v: BlockVersion) -> u32 {
    match v {
        BlockVersion::V1 | BlockVersion::V2 => 0,
        BlockVersion::V3 => 1,
        BlockVersion::V4 => 2,
    }
}

/// A `payload_by_number` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadResponse {
    /// The block: version and `[beacon root ++] SSZ(payload)`.
    Ok {
        /// Response version (see [`response_version`]).
        version: u32,
        /// Payload bytes, decompressed.
        payload: Vec<u8>,
    },
    /// A non-zero result byte.
    Err(u8),
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "payload_by_number response larger than 10 MiB")
}

/// Reads one `payload_by_number` response (the client side): the result byte, then for ok
/// the version and the snappy-framed payload until EOF. The framed bytes and the decompressed
/// payload are each capped at 10 MiB; more, broken framing or a short read is an error.
pub async fn read_response<T>(io: &mut T) -> io::Result<PayloadResponse>
where
    T: futures::AsyncRead + Unpin,
{
    let mut result = [0u8; 1];
    io.read_exact(&mut result).await?;
    if result[0] != RESULT_OK {
        return Ok(PayloadResponse::Err(result[0]));
    }
    let mut version = [0u8; 4];
    io.read_exact(&mut version).await?;
    let mut framed = Vec::new();
    io.take(codec::MAX_GOSSIP_SIZE as u64 + 1).read_to_end(&mut framed).await?;
    if framed.len() > codec::MAX_GOSSIP_SIZE {
        return Err(too_large());
    }
    let mut payload = Vec::new();
    let decoder = snap::read::FrameDecoder::new(framed.as_slice());
    std::io::Read::read_to_end(
        &mut std::io::Read::take(decoder, codec::MAX_GOSSIP_SIZE as u64 + 1),
        &mut payload,
    )?;
    if payload.len() > codec::MAX_GOSSIP_SIZE {
        return Err(too_large());
    }
    Ok(PayloadResponse::Ok { version: u32::from_le_bytes(version), payload })
}

/// Writes one `payload_by_number` response (the server side) and closes the stream.
pub async fn write_response<T>(io: &mut T, res: PayloadResponse) -> io::Result<()>
where
    T: futures::AsyncWrite + Unpin,
{
    match res {
        PayloadResponse::Err(code) => io.write_all(&[code]).await?,
        PayloadResponse::Ok { version, payload } => {
            let mut framed =
                snap::write::FrameEncoder::new(Vec::with_capacity(payload.len() / 2 + 64));
            std::io::Write::write_all(&mut framed, &payload)?;
            let framed = framed.into_inner().map_err(|e| io::Error::other(e.to_string()))?;
            io.write_all(&[RESULT_OK]).await?;
            io.write_all(&version.to_le_bytes()).await?;
            io.write_all(&framed).await?;
        }
    }
    io.close().await
}

/// The payload bytes (`[beacon root ++] SSZ`) of a gossip message: what the store keeps and
/// alt-sync serves.
pub fn payload_bytes(wire: &[u8]) -> Option<Vec<u8>> {
    let raw = snap::raw::Decoder::new().decompress_vec(wire).ok()?;
    (raw.len() > 65).then(|| raw[65..].to_vec())
}

/// Decodes an alt-sync answer and checks its version rules and block hash. Version 0 is
/// tried as v2 (Canyon) then v1: without the rollup config the timestamp cannot tell (the
/// error is the last candidate's).
pub fn decode_response(version: u32, payload: &[u8]) -> Result<VerifiedBlock, AnswerError> {
    let candidates: &[BlockVersion] = match version {
        0 => &[BlockVersion::V2, BlockVersion::V1],
        1 => &[BlockVersion::V3],
        2 => &[BlockVersion::V4],
        _ => return Err(AnswerError::UnknownVersion(version)),
    };
    // Reuse the gossip decoder: an all-zero signature in front (alt-sync answers are not
    // signed; they are trusted through the hash chain instead).
    let mut raw = vec![0u8; 65];
    raw.extend_from_slice(payload);
    let wire = snap::raw::Encoder::new().compress_vec(&raw).map_err(AnswerError::Compress)?;
    let mut err = None;
    for v in candidates {
        let block = codec::decode(*v, &wire)
            .map_err(ValidationError::from)
            .and_then(|env| validate::rebuild(*v, env, wire.clone()));
        match block {
            Ok(b) => return Ok(b),
            Err(e) => err = Some(e),
        }
    }
    Err(err.map_or(AnswerError::UnknownVersion(version), AnswerError::Invalid))
}

/// Why an alt-sync answer is not taken for the requested block.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The peer answered with a non-zero result byte.
    #[error("no block: result code {0}")]
    NoBlock(u8),
    /// A response version this node does not know.
    #[error("unknown response version {0}")]
    UnknownVersion(u32),
    /// The payload could not be re-framed for the gossip decoder.
    #[error("cannot re-frame the payload")]
    Compress(#[source] snap::Error),
    /// The payload does not decode, breaks its version's rules or its hash.
    #[error("invalid payload")]
    Invalid(#[source] ValidationError),
    /// A valid block, but not the one asked for.
    #[error("answer for block {got}, asked for {asked}")]
    WrongNumber {
        /// The requested number.
        asked: u64,
        /// The number of the block that came back.
        got: u64,
    },
}

impl AnswerError {
    /// Label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoBlock(_) => "no_block",
            Self::UnknownVersion(_) => "version",
            Self::Compress(_) => "decode",
            Self::Invalid(e) => e.label(),
            Self::WrongNumber { .. } => "wrong_number",
        }
    }
}

/// The client's check of an answer to a request for block `number`: a block that decodes,
/// passes its version's rules, whose hash recomputes, and that is block `number`. (Whether
/// its hash is trusted is decided later, against the hash chain.)
pub fn check_answer(number: u64, response: PayloadResponse) -> Result<VerifiedBlock, AnswerError> {
    let (version, payload) = match response {
        PayloadResponse::Ok { version, payload } => (version, payload),
        PayloadResponse::Err(code) => return Err(AnswerError::NoBlock(code)),
    };
    let block = decode_response(version, &payload)?;
    if block.number() != number {
        return Err(AnswerError::WrongNumber { asked: number, got: block.number() });
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_payload_decodes_as_an_altsync_answer() {
        let (block, hash) = crate::codec::tests::test_block(9, 1_700_000_000);
        let signed =
            crate::codec::sign_block(&block, hash, 901, &crate::codec::tests::test_signer())
                .unwrap();
        let payload = payload_bytes(&signed.wire).unwrap();
        let got = decode_response(response_version(signed.version), &payload).unwrap();
        assert_eq!(got.hash, hash);
        assert_eq!(got.number(), 9);
        let mut bad = payload.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_response(2, &bad).is_err());
        assert_eq!(decode_response(9, &payload).unwrap_err().label(), "version");
    }

    #[test]
    fn check_answer_wants_the_requested_block() {
        let (block, hash) = crate::codec::tests::test_block(9, 1_700_000_000);
        let signed =
            crate::codec::sign_block(&block, hash, 901, &crate::codec::tests::test_signer())
                .unwrap();
        let ok = PayloadResponse::Ok { version: 2, payload: payload_bytes(&signed.wire).unwrap() };
        assert_eq!(check_answer(9, ok.clone()).unwrap().hash, hash);
        assert!(matches!(
            check_answer(10, ok).unwrap_err(),
            AnswerError::WrongNumber { asked: 10, got: 9 }
        ));
        assert_eq!(
            check_answer(9, PayloadResponse::Err(RESULT_NOT_FOUND)).unwrap_err().label(),
            "no_block"
        );
        let garbage = PayloadResponse::Ok { version: 2, payload: vec![0; 10] };
        let err = check_answer(9, garbage).unwrap_err();
        assert!(matches!(err, AnswerError::Invalid(ValidationError::Decode(_))), "{err:?}");
        assert_eq!(err.label(), "decode");
    }

    #[test]
    fn oversize_and_broken_responses_are_errors() {
        futures::executor::block_on(async {
            // A stream of more than 10 MiB after the header.
            let mut big = vec![RESULT_OK, 2, 0, 0, 0];
            big.resize(5 + codec::MAX_GOSSIP_SIZE + 1, 0);
            assert_eq!(
                read_response(&mut big.as_slice()).await.unwrap_err().kind(),
                io::ErrorKind::InvalidData
            );
            // Framing that decompresses past 10 MiB: 161 uncompressed-literal chunks of 64 KiB
            // would do, but a few compressed chunks of zeros reach it cheaply.
            let mut enc = snap::write::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut enc, &vec![0u8; codec::MAX_GOSSIP_SIZE + 1]).unwrap();
            let framed = enc.into_inner().unwrap();
            assert!(framed.len() < codec::MAX_GOSSIP_SIZE);
            let mut bomb = vec![RESULT_OK, 2, 0, 0, 0];
            bomb.extend_from_slice(&framed);
            assert!(read_response(&mut bomb.as_slice()).await.is_err());
            // Broken framing and a truncated header.
            assert!(read_response(&mut [RESULT_OK, 2, 0, 0, 0, 1, 2, 3].as_slice()).await.is_err());
            assert!(read_response(&mut [RESULT_OK, 2].as_slice()).await.is_err());
            assert!(read_response(&mut [].as_slice()).await.is_err());
        });
    }
}
