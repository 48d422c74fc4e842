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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    /// Neither a multiaddr nor an ENR.
    #[error("`{0}` is neither a multiaddr nor an enr: record")]
    Invalid(String),
    /// An ENR without what a TCP dial needs.
    #[error("enr `{0}`: {1}")]
    Enr(String, &'static str),
}

/// Parses a multiaddr or an `enr:` record into a dialable multiaddr.
pub fn parse_peer_addr(s: &str) -> Result<Multiaddr, AddrError> {
    let s = s.trim();
    match s.strip_prefix("enr:") {
        Some(b64) => enr_to_multiaddr(b64).map_err(|why| AddrError::Enr(s.to_string(), why)),
        None => s.parse().map_err(|_| AddrError::Invalid(s.to_string())),
    }
}

fn take_item<'a>(buf: &mut &'a [u8]) -> Result<(bool, &'a [u8]), &'static str> {
    let h = Header::decode(buf).map_err(|_| "bad RLP")?;
    if buf.len() < h.payload_length {
        return Err("truncated RLP");
    }
    let (payload, rest) = buf.split_at(h.payload_length);
    *buf = rest;
    Ok((h.list, payload))
}

fn enr_to_multiaddr(b64: &str) -> Result<Multiaddr, &'static str> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| "bad base64")?;
    if raw.len() > 300 {
        return Err("record longer than 300 bytes");
    }
    let mut buf = raw.as_slice();
    let (list, mut items) = take_item(&mut buf)?;
    if !list {
        return Err("not an RLP list");
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
    let ip = ip.ok_or("no ip4 entry")?;
    let tcp = tcp.ok_or("no tcp entry")?;
    let key = identity::secp256k1::PublicKey::try_from_bytes(key.ok_or("no secp256k1 entry")?)
        .map_err(|_| "bad secp256k1 key")?;
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
        assert!(matches!(parse_peer_addr("nonsense"), Err(AddrError::Invalid(_))));
        assert!(matches!(parse_peer_addr("enr:AAAA"), Err(AddrError::Enr(..))));
    }
}
