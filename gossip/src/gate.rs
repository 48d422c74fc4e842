//! Connection gating (op-node's `p2p/gating`: blocked peers, IP addresses and subnets, each
//! with an expiry): a [`Gate`] of blocks shared between the swarm task (which adds, lifts,
//! persists and expires them) and [`GateBehaviour`], a libp2p behaviour that denies a
//! connection before it is established: inbound ones as soon as the remote address is known
//! (before the noise handshake), outbound ones before dialling when the peer or every
//! address is blocked, and both again once the peer id is authenticated. Each denial is
//! counted in `flashnode_gossip_gated_total{reason, direction}`.

use libp2p::{
    core::{transport::PortUse, Endpoint},
    multiaddr::Protocol,
    swarm::{
        dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};
use parking_lot::RwLock;
use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

/// Expiry meaning "until lifted by hand".
pub const NEVER: u64 = u64::MAX;

/// An IP subnet in CIDR form (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Whether `ip` is inside the subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.addr, ip) {
            (V4(n), V4(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix.min(32)))
                };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (V6(n), V6(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix.min(128)))
                };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// Why a subnet does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// No `/`.
    #[error("`{0}` is not in CIDR form (a.b.c.d/n)")]
    NotCidr(String),
    /// The part before `/` is not an IP address.
    #[error("`{input}` is not an IP address: {source}")]
    Ip {
        /// The address part.
        input: String,
        /// Why.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The part after `/` is not a number.
    #[error("`{input}` is not a prefix length: {source}")]
    Prefix {
        /// The prefix part.
        input: String,
        /// Why.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The prefix is longer than the address.
    #[error("prefix {prefix} is longer than {max}")]
    TooLong {
        /// The prefix.
        prefix: u8,
        /// 32 or 128.
        max: u8,
    },
}

impl std::str::FromStr for Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Self, SubnetError> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| SubnetError::NotCidr(s.to_string()))?;
        let addr: IpAddr =
            ip.parse().map_err(|source| SubnetError::Ip { input: ip.to_string(), source })?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|source| SubnetError::Prefix { input: prefix.to_string(), source })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(SubnetError::TooLong { prefix, max });
        }
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a connection was refused (the `reason` label of the metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The peer id is banned.
    #[error("peer is blocked")]
    Peer,
    /// The remote IP address is blocked.
    #[error("IP address is blocked")]
    Ip,
    /// The remote IP address is in a blocked subnet.
    #[error("subnet is blocked")]
    Subnet,
}

impl Denied {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Denied::Peer => "peer",
            Denied::Ip => "ip",
            Denied::Subnet => "subnet",
        }
    }
}

/// The blocks in force, each with its expiry in unix seconds ([`NEVER`] for none). An expired
/// block no longer denies anything even before [`Gate::expire`] removes it.
#[derive(Debug, Default)]
pub struct Gate {
    peers: HashMap<PeerId, u64>,
    ips: HashMap<IpAddr, u64>,
    subnets: HashMap<Subnet, u64>,
}

/// What [`Gate::expire`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Peers whose ban ended.
    pub peers: Vec<PeerId>,
    /// IP addresses whose block ended.
    pub ips: Vec<IpAddr>,
    /// Subnets whose block ended.
    pub subnets: Vec<Subnet>,
}

impl Expired {
    /// Nothing expired.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.ips.is_empty() && self.subnets.is_empty()
    }
}

impl Gate {
    /// Blocks a peer until `until`.
    pub fn block_peer(&mut self, peer: PeerId, until: u64) {
        self.peers.insert(peer, until);
    }
    /// Lifts a peer's block; whether there was one.
    pub fn unblock_peer(&mut self, peer: &PeerId) -> bool {
        self.peers.remove(peer).is_some()
    }
    /// Blocks an IP address until `until`.
    pub fn block_ip(&mut self, ip: IpAddr, until: u64) {
        self.ips.insert(ip, until);
    }
    /// Lifts an IP block; whether there was one.
    pub fn unblock_ip(&mut self, ip: &IpAddr) -> bool {
        self.ips.remove(ip).is_some()
    }
    /// Blocks a subnet until `until`.
    pub fn block_subnet(&mut self, net: Subnet, until: u64) {
        self.subnets.insert(net, until);
    }
    /// Lifts a subnet block; whether there was one.
    pub fn unblock_subnet(&mut self, net: &Subnet) -> bool {
        self.subnets.remove(net).is_some()
    }

    /// Whether `peer` is blocked at `now`.
    pub fn peer_blocked(&self, peer: &PeerId, now: u64) -> bool {
        self.peers.get(peer).is_some_and(|until| *until > now)
    }

    /// Why connections from `ip` are refused at `now`, if they are.
    pub fn ip_denied(&self, ip: IpAddr, now: u64) -> Option<Denied> {
        if self.ips.get(&ip).is_some_and(|until| *until > now) {
            return Some(Denied::Ip);
        }
        self.subnets
            .iter()
            .any(|(n, until)| *until > now && n.contains(ip))
            .then_some(Denied::Subnet)
    }

    /// Why a connection to `peer` (when known) at `addr` is refused at `now`, if it is.
    pub fn denied(&self, peer: Option<&PeerId>, addr: &Multiaddr, now: u64) -> Option<Denied> {
        if peer.is_some_and(|p| self.peer_blocked(p, now)) {
            return Some(Denied::Peer);
        }
        ip_of(addr).and_then(|ip| self.ip_denied(ip, now))
    }

    /// Blocked peers in force at `now`, with their expiry.
    pub fn peers(&self, now: u64) -> Vec<(PeerId, u64)> {
        self.peers.iter().filter(|(_, u)| **u > now).map(|(p, u)| (*p, *u)).collect()
    }
    /// Blocked IP addresses in force at `now`, sorted.
    pub fn ips(&self, now: u64) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<_> =
            self.ips.iter().filter(|(_, u)| **u > now).map(|(i, u)| (*i, *u)).collect();
        v.sort();
        v
    }
    /// Blocked subnets in force at `now`, sorted by their text.
    pub fn subnets(&self, now: u64) -> Vec<(Subnet, u64)> {
        let mut v: Vec<_> =
            self.subnets.iter().filter(|(_, u)| **u > now).map(|(n, u)| (*n, *u)).collect();
        v.sort_by_key(|(n, _)| n.to_string());
        v
    }

    /// Removes the blocks that ended at or before `now` and says which.
    pub fn expire(&mut self, now: u64) -> Expired {
        fn take<K: Copy + Eq + std::hash::Hash>(m: &mut HashMap<K, u64>, now: u64) -> Vec<K> {
            let gone: Vec<K> = m.iter().filter(|(_, u)| **u <= now).map(|(k, _)| *k).collect();
            for k in &gone {
                m.remove(k);
            }
            gone
        }
        Expired {
            peers: take(&mut self.peers, now),
            ips: take(&mut self.ips, now),
            subnets: take(&mut self.subnets, now),
        }
    }
}

/// The IP address of a multiaddr, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The libp2p side of the gate: refuses connections the shared [`Gate`] blocks.
#[derive(Debug, Clone, Default)]
pub struct GateBehaviour {
    gate: Arc<RwLock<Gate>>,
}

impl GateBehaviour {
    /// A behaviour enforcing `gate`.
    pub fn new(gate: Arc<RwLock<Gate>>) -> Self {
        Self { gate }
    }

    fn check(
        &self,
        peer: Option<&PeerId>,
        addr: &Multiaddr,
        direction: &'static str,
    ) -> Result<(), ConnectionDenied> {
        match self.gate.read().denied(peer, addr, now_secs()) {
            None => Ok(()),
            Some(why) => {
                metrics::counter!("flashnode_gossip_gated_total", "reason" => why.label(), "direction" => direction).increment(1);
                tracing::debug!(?peer, %addr, direction, reason = why.label(), "connection gated");
                Err(ConnectionDenied::new(why))
            }
        }
    }
}

impl NetworkBehaviour for GateBehaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check(None, remote, "inbound")
    }

    fn handle_established_inbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(Some(&peer), remote, "inbound").map(|_| dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(p) = peer.as_ref() {
            if self.gate.read().peer_blocked(p, now_secs()) {
                return self.check(Some(p), &Multiaddr::empty(), "outbound").map(|_| vec![]);
            }
        }
        // Refuse the dial when every explicit address is blocked; a mix is checked per
        // connection once established.
        if let Some(first) = addresses.first() {
            let gate = self.gate.read();
            let now = now_secs();
            if addresses.iter().all(|a| gate.denied(None, a, now).is_some()) {
                drop(gate);
                return self.check(None, first, "outbound").map(|_| vec![]);
            }
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(Some(&peer), addr, "outbound").map(|_| dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _event: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_match() {
        let n: Subnet = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Subnet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert_eq!(n.to_string(), "10.1.0.0/16");
        assert!(matches!("10.0.0.0".parse::<Subnet>(), Err(SubnetError::NotCidr(_))));
        assert_eq!(
            "10.0.0.0/33".parse::<Subnet>(),
            Err(SubnetError::TooLong { prefix: 33, max: 32 })
        );
        assert!(matches!("nonsense/8".parse::<Subnet>(), Err(SubnetError::Ip { .. })));
        assert!(matches!("10.0.0.0/x".parse::<Subnet>(), Err(SubnetError::Prefix { .. })));
    }

    #[test]
    fn blocks_deny_until_they_expire() {
        let mut g = Gate::default();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/10.1.2.3/tcp/9222".parse().unwrap();
        let other: Multiaddr = "/ip4/10.9.0.1/tcp/9222".parse().unwrap();
        assert_eq!(g.denied(Some(&peer), &addr, 100), None);
        g.block_ip("10.1.2.3".parse().unwrap(), 200);
        g.block_subnet("10.9.0.0/16".parse().unwrap(), 150);
        g.block_peer(peer, NEVER);
        assert_eq!(g.denied(None, &addr, 100), Some(Denied::Ip));
        assert_eq!(g.denied(None, &other, 100), Some(Denied::Subnet));
        assert_eq!(
            g.denied(Some(&peer), &"/ip4/1.1.1.1/tcp/1".parse().unwrap(), 100),
            Some(Denied::Peer)
        );
        assert_eq!(
            g.denied(None, &"/dns4/example.com/tcp/1".parse().unwrap(), 100),
            None,
            "no IP: nothing to match"
        );
        // An expired block stops denying before it is swept, and the sweep reports it.
        assert_eq!(g.denied(None, &other, 150), None);
        assert_eq!(g.subnets(150), vec![]);
        assert_eq!(g.ips(150).len(), 1);
        let gone = g.expire(200);
        assert_eq!(gone.ips, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(gone.subnets, vec!["10.9.0.0/16".parse::<Subnet>().unwrap()]);
        assert!(gone.peers.is_empty(), "a block without expiry stays");
        assert_eq!(g.denied(None, &addr, 201), None);
        assert!(g.peer_blocked(&peer, u64::MAX - 1));
        assert!(g.unblock_peer(&peer));
        assert!(!g.unblock_peer(&peer));
        assert!(g.expire(300).is_empty());
    }
}
