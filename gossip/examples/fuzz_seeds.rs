//! Writes the seed inputs of the gossip fuzz targets (`fuzz/seeds/gossip_decode_validate/`,
//! `fuzz/seeds/payload_by_number_response/`): an empty block of each gossip version, signed by
//! the devnet's unsafe-block signer at the targets' clock (1_700_000_000), as a raw-mode gossip
//! message and as an ok `payload_by_number` response stream, plus a not-found answer.
//! Usage: `cargo run --example fuzz_seeds -- <repo root>` (default `.`).

use alloy_consensus::{constants::EMPTY_ROOT_HASH, Header};
use alloy_primitives::{Bytes, B256};
use alloy_signer_local::PrivateKeySigner;
use flashnode_gossip::{altsync, codec, DEV_UNSAFE_BLOCK_SIGNER_KEY};
use std::path::PathBuf;

/// The fuzz targets' clock and chain (fuzz/fuzz_targets/common/mod.rs).
const NOW: u64 = 1_700_000_000;
const CHAIN: u64 = 901;

fn header(version: usize) -> Header {
    let mut h = Header {
        number: 42,
        parent_hash: B256::repeat_byte(0x11),
        timestamp: NOW,
        gas_limit: 30_000_000,
        base_fee_per_gas: Some(1_000_000_000),
        extra_data: Bytes::from_static(&[0; 9]),
        ..Default::default()
    };
    if version >= 2 {
        h.withdrawals_root = Some(EMPTY_ROOT_HASH);
    }
    if version >= 3 {
        h.blob_gas_used = Some(0);
        h.excess_blob_gas = Some(0);
        h.parent_beacon_block_root = Some(B256::repeat_byte(3));
    }
    if version >= 4 {
        h.requests_hash = Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH);
    }
    h
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let gossip_dir = root.join("fuzz/seeds/gossip_decode_validate");
    let answer_dir = root.join("fuzz/seeds/payload_by_number_response");
    std::fs::create_dir_all(&gossip_dir)?;
    std::fs::create_dir_all(&answer_dir)?;
    let key: PrivateKeySigner = DEV_UNSAFE_BLOCK_SIGNER_KEY.parse()?;
    for version in 1..=4 {
        let h = header(version);
        let hash = h.hash_slow();
        let number = h.number;
        let signed = codec::sign_sealed(h, hash, vec![], CHAIN, &key)?;
        assert_eq!(signed.version.as_str(), format!("v{version}"));
        // Each seed reaches the accepting end of the targets.
        let outcome = flashnode_gossip::Validator::default().validate(
            signed.version,
            &signed.wire,
            NOW,
            CHAIN,
            key.address(),
        );
        assert_eq!(outcome.label(), "accept", "v{version}: {outcome:?}");
        // Mode byte 0: raw message.
        let mut seed = vec![0u8];
        seed.extend_from_slice(&signed.wire);
        std::fs::write(gossip_dir.join(format!("v{version}.bin")), seed)?;
        // Mode byte 0: requested number, then the response stream.
        let payload = altsync::payload_bytes(&signed.wire).ok_or("payload bytes")?;
        let mut stream = Vec::new();
        let response = altsync::PayloadResponse::Ok {
            version: altsync::response_version(signed.version),
            payload,
        };
        futures::executor::block_on(altsync::write_response(
            &mut futures::io::Cursor::new(&mut stream),
            response,
        ))?;
        let read = futures::executor::block_on(altsync::read_response(&mut stream.as_slice()))?;
        assert_eq!(
            altsync::check_answer(number, read).map(|b| b.hash).map_err(|e| e.label()),
            Ok(hash)
        );
        let mut seed = vec![0u8];
        seed.extend_from_slice(&number.to_le_bytes());
        seed.extend_from_slice(&stream);
        std::fs::write(answer_dir.join(format!("ok_v{version}.bin")), seed)?;
    }
    let mut seed = vec![0u8];
    seed.extend_from_slice(&42u64.to_le_bytes());
    seed.push(altsync::RESULT_NOT_FOUND);
    std::fs::write(answer_dir.join("not_found.bin"), seed)?;
    println!("seeds written under {}", root.join("fuzz/seeds").display());
    Ok(())
}
