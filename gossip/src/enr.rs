//! Peer addresses as operators write them: a libp2p multiaddr, or an Ethereum Node Record
//! (`enr:<base64url RLP>`, EIP-778) like op-node's default Superchain bootnodes. An ENR is
//! turned into `/ip4/<ip>/tcp/<tcp>/p2p/<peer id>` from its `ip`, `tcp` and `secp256k1`
//! entries; its signature is not checked here because the noise handshake authenticates the
//! peer id on connection anyway. Discovery itself (discv5, where `enr:` bootnodes seed the
//! routing table) is in [`crate::discovery`].

use alloy_rlp::Header;
use base64::Engine;
use libp2p::{identity, multiaddr::Protocol, Multiaddr, PeerId};

/// Why an address does not parse.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// Neither a multiaddr nor an ENR.
    #[error("`{input}` is neither a multiaddr nor an enr: record ({source})")]
    Invalid {
        /// The address as given.
        input: String,
        /// Why it is not a multiaddr.
        #[source]
        source: libp2p::multiaddr::Error,
    },
    /// An ENR without what a TCP dial needs.
    #[error("enr `{input}`: {source}")]
    Enr {
        /// The record as given.
        input: String,
        /// What is wrong with it.
        #[source]
        source: EnrError,
    },
}

/// Why an `enr:` record cannot be turned into a TCP dial address.
#[derive(Debug, thiserror::Error)]
pub enum EnrError {
    /// The text after `enr:` is not URL-safe base64.
    #[error("bad base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Longer than EIP-778's 300 bytes.
    #[error("record of {0} bytes, longer than 300")]
    TooLong(usize),
    /// An RLP item header does not decode.
    #[error("bad RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// An RLP item announces more bytes than the record has.
    #[error("truncated RLP: an item of {needed} bytes with {left} left")]
    Truncated {
        /// The item's announced length.
        needed: usize,
        /// Bytes left in the record.
        left: usize,
    },
    /// The record is not an RLP list.
    #[error("not an RLP list")]
    NotAList,
    /// No `ip` (IPv4) entry.
    #[error("no ip4 entry")]
    NoIp4,
    /// No `tcp` entry.
    #[error("no tcp entry")]
    NoTcp,
    /// No `secp256k1` entry.
    #[error("no secp256k1 entry")]
    NoKey,
    /// The `secp256k1` entry is not a compressed secp256k1 public key.
    #[error("bad secp256k1 key: {0}")]
    Key(#[source] identity::DecodingError),
}

/// Parses a multiaddr or an `enr:` record into a dialable multiaddr.
pub fn parse_peer_addr(s: &str) -> Result<Multiaddr, AddrError> {
    let s = s.trim();
    match s.strip_prefix("enr:") {
        Some(b64) => {
            enr_to_multiaddr(b64).map_err(|source| AddrError::Enr { input: s.to_string(), source })
        }
        None => s.parse().map_err(|source| AddrError::Invalid { input: s.to_string(), source }),
    }
}

fn take_item<'a>(buf: &mut &'a [u8]) -> Result<(bool, &'a [u8]), EnrError> {
    let h = Header::decode(buf)?;
    if buf.len() < h.payload_length {
        return Err(EnrError::Truncated { needed: h.payload_length, left: buf.len() });
    }
    let (payload, rest) = buf.split_at(h.payload_length);
    *buf = rest;
    Ok((h.list, payload))
}

fn enr_to_multiaddr(b64: &str) -> Result<Multiaddr, EnrError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('='))?;
    if raw.len() > 300 {
        return Err(EnrError::TooLong(raw.len()));
    }
    let mut buf = raw.as_slice();
    let (list, mut items) = take_item(&mut buf)?;
    if !list {
        return Err(EnrError::NotAList);
    }
    let _signature = take_item(&mut items)?;
    let _seq = take_item(&mut items)?;
    let (mut ip, mut tcp, mut key) = (None, None, None);
    while !items.is_empty() {
        let (_, k) = take_item(&mut items)?;
        let (_, v) = take_item(&mut items)?;
        match k {
            b"ip" if v.len() == 4 => ip = Some(std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            b"tcp" if !v.is_empty() && v.len() <= 2 => {
                tcp = Some(v.iter().fold(0u16, |a, b| (a << 8) | *b as u16))
            }
            b"secp256k1" => key = Some(v),
            _ => {}
        }
    }
    let ip = ip.ok_or(EnrError::NoIp4)?;
    let tcp = tcp.ok_or(EnrError::NoTcp)?;
    let key = identity::secp256k1::PublicKey::try_from_bytes(key.ok_or(EnrError::NoKey)?)
        .map_err(EnrError::Key)?;
    let peer = PeerId::from_public_key(&identity::PublicKey::from(key));
    Ok(Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Tcp(tcp))
        .with(Protocol::P2p(peer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of op-node's default Superchain bootnodes.
    const BOOTNODE: &str = "enr:-J64QFlJkZT1p0ni81MkprI1d3Tk4XZjurmq6gkPf-YeCoUWYCAdGv9K8Xe8m0u5EKyuHrLVxSOoHti_b1h3-knZA-aGAYo5_RtjgmlkgnY0gmlwhCvPTWyHb3BzdGFja4SWsHsAiXNlY3AyNTZrMaEC6BVMrYa2bDscubLIdcJj8M3_j5jdv-ifyVFoVdFB6VWDdGNwgiQGg3VkcIIkBg";

    #[test]
    fn enr_becomes_a_tcp_multiaddr_with_the_peer_id() {
        let addr = parse_peer_addr(BOOTNODE).unwrap();
        let s = addr.to_string();
        assert!(s.starts_with("/ip4/43.207.77.108/tcp/9222/p2p/16Uiu2"), "{s}");
        let plain = "/ip4/127.0.0.1/tcp/9222";
        assert_eq!(parse_peer_addr(plain).unwrap().to_string(), plain);
        assert!(matches!(parse_peer_addr("nonsense"), Err(AddrError::Invalid { .. })));
        assert!(matches!(parse_peer_addr("enr:AAAA"), Err(AddrError::Enr { .. })));
    }

    #[test]
    fn a_bad_record_says_what_is_wrong_as_a_type() {
        let cause = |s: &str| match parse_peer_addr(s) {
            Err(AddrError::Enr { source, .. }) => source,
            other => panic!("{s}: {other:?}"),
        };
        assert!(matches!(cause("enr:!!"), EnrError::Base64(_)));
        let long = format!("enr:{}", "A".repeat(420));
        assert!(matches!(cause(&long), EnrError::TooLong(315)));
        // 0xc5: a list of 5 bytes, with none left.
        assert!(matches!(cause("enr:xQ"), EnrError::Rlp(_) | EnrError::Truncated { .. }));
        // 0x80: an empty byte string, not a list.
        assert!(matches!(cause("enr:gA"), EnrError::NotAList));
        // A list of an empty signature and sequence number, no entries.
        assert!(matches!(cause("enr:woCA"), EnrError::NoIp4));
        let err = parse_peer_addr("enr:woCA").unwrap_err();
        assert_eq!(err.to_string(), "enr `enr:woCA`: no ip4 entry");
        assert!(std::error::Error::source(&err).is_some(), "the cause is chained");
    }
}
