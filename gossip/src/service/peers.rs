//! The connection manager: static peers and their redial backoff, protected peers, the
//! connections in place and what identify and ping said of them, application scores, bans
//! (by score or by an admin) and blocks of addresses and subnets with their expiry, and
//! pruning above the high water mark. It decides; the host carries the decisions out on the
//! swarm (dial, disconnect, set a score), so every rule here is tested without one.

use super::{swarm::peer_id_of, GossipError};
use crate::{
    admin_types::{Connectedness, Direction, PeerInfo, PeerScores},
    config::GossipConfig,
    gate::{ip_of, Gate, Subnet, NEVER},
    scoring::{self, AppEvent, AppScores},
    stats::GossipStats,
    store::Store,
};
use flashnode_tasks::Backoff;
use libp2p::{identify, Multiaddr, PeerId};
use parking_lot::RwLock;
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use tracing::{debug, info, warn};

/// Identified peers remembered (bounded memory: the rest are known while connected).
const IDENTIFIED: usize = 1000;

/// The connection manager's settings (from [`GossipConfig`]).
#[derive(Clone, Debug)]
pub(super) struct PeerSettings {
    /// Pruning stops here.
    pub lo: usize,
    /// Above it the lowest-scored peers are pruned; discovery dials up to it.
    pub hi: usize,
    /// New connections are not pruned for this long.
    pub grace: Duration,
    /// Ban length by score, and the default length of admin blocks.
    pub ban_duration: Duration,
    /// First redial delay of a dropped static peer.
    pub redial_min: Duration,
    /// Longest redial delay.
    pub redial_max: Duration,
}

impl PeerSettings {
    /// The settings of `config`.
    pub(super) fn of(config: &GossipConfig) -> Self {
        Self {
            lo: config.peers_lo,
            hi: config.peers_hi.max(config.peers_lo),
            grace: config.peers_grace,
            ban_duration: config.ban_duration,
            redial_min: config.redial_min,
            redial_max: config.redial_max,
        }
    }
}

/// A connected peer.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    /// Remote address of its first connection.
    pub addr: Multiaddr,
    /// Who dialled.
    pub direction: Direction,
    /// When it connected.
    pub since: Instant,
}

struct StaticPeer {
    addr: Multiaddr,
    connected: bool,
    next_dial: Instant,
    /// Redial delays: `redial_min` doubling to `redial_max`, reset by a connection.
    backoff: Backoff,
}

/// Why a peer is banned (logs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum BanReason {
    /// Its total score fell below [`scoring::BAN_THRESHOLD`].
    Score(f64),
    /// An admin call.
    Admin,
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Score(score) => write!(f, "score {score:.1}"),
            Self::Admin => f.write_str("admin"),
        }
    }
}

/// What became of a node discovery found (the `outcome` label of
/// `flashnode_gossip_discovery_dials_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DialOutcome {
    /// It is this node or already connected.
    Connected,
    /// The host is at its high water mark (dials in flight count).
    Full,
    /// The gate refuses the peer or its address.
    Blocked,
    /// The dial could not start.
    Failed,
    /// Dialled.
    Dialled,
}

impl DialOutcome {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Full => "full",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::Dialled => "dialled",
        }
    }
}

/// What gossipsub knows of a peer, for its [`PeerInfo`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GossipView {
    /// Total gossipsub score.
    pub score: f64,
    /// Subscribed to a blocks topic.
    pub blocks: bool,
}

/// The connection manager's state.
pub(super) struct PeersManager {
    settings: PeerSettings,
    statics: HashMap<PeerId, StaticPeer>,
    protected: HashSet<PeerId>,
    connections: HashMap<PeerId, Connection>,
    identified: HashMap<PeerId, identify::Info>,
    latency: HashMap<PeerId, Duration>,
    app_scores: AppScores,
    /// Blocked peers, IPs and subnets with their expiry, shared with the gate behaviour.
    gate: Arc<RwLock<Gate>>,
    store: Arc<Store>,
    stats: Arc<GossipStats>,
}

impl PeersManager {
    /// A manager of `static_peers` (each must end in `/p2p/<peer id>`; they are protected).
    pub(super) fn new(
        settings: PeerSettings,
        static_peers: &[Multiaddr],
        gate: Arc<RwLock<Gate>>,
        store: Arc<Store>,
        stats: Arc<GossipStats>,
    ) -> Result<Self, GossipError> {
        let now = Instant::now();
        let mut statics = HashMap::new();
        for addr in static_peers {
            let id =
                peer_id_of(addr).ok_or_else(|| GossipError::StaticPeerWithoutId(addr.clone()))?;
            let peer = StaticPeer {
                addr: addr.clone(),
                connected: false,
                next_dial: now,
                backoff: Backoff::new(settings.redial_min, settings.redial_max),
            };
            statics.insert(id, peer);
        }
        Ok(Self {
            protected: statics.keys().copied().collect(),
            settings,
            statics,
            connections: HashMap::new(),
            identified: HashMap::new(),
            latency: HashMap::new(),
            app_scores: AppScores::default(),
            gate,
            store,
            stats,
        })
    }

    /// The shared gate.
    pub(super) fn gate(&self) -> &RwLock<Gate> {
        &self.gate
    }

    /// The high water mark.
    pub(super) fn high_water(&self) -> usize {
        self.settings.hi
    }

    /// Restores the blocks in force from the store (a restart, even after `kill -9`, keeps
    /// them).
    pub(super) fn load_blocks(&mut self, unix: u64) {
        let mut gate = self.gate.write();
        match self.store.bans(unix) {
            Ok(bans) => bans.into_iter().for_each(|(peer, until)| gate.block_peer(peer, until)),
            Err(err) => warn!(%err, "cannot read bans"),
        }
        match self.store.blocked_ips(unix) {
            Ok(ips) => ips.into_iter().for_each(|(ip, until)| gate.block_ip(ip, until)),
            Err(err) => warn!(%err, "cannot read blocked addresses"),
        }
        match self.store.blocked_subnets(unix) {
            Ok(nets) => {
                for (cidr, until) in nets {
                    match cidr.parse::<Subnet>() {
                        Ok(net) => gate.block_subnet(net, until),
                        Err(err) => warn!(cidr, %err, "unreadable blocked subnet in the store"),
                    }
                }
            }
            Err(err) => warn!(%err, "cannot read blocked subnets"),
        }
        let (peers, ips, subnets) =
            (gate.peers(unix).len(), gate.ips(unix).len(), gate.subnets(unix).len());
        drop(gate);
        if peers + ips + subnets > 0 {
            info!(peers, ips, subnets, "blocks restored from the store");
        }
        self.stats.banned.store(peers as u64, Ordering::Relaxed);
    }

    fn ip_blocked(&self, ip: IpAddr, unix: u64) -> bool {
        self.gate.read().ip_denied(ip, unix).is_some()
    }

    /// A connection was established. False: its address is blocked, disconnect it.
    pub(super) fn connected(
        &mut self,
        peer: PeerId,
        remote: Multiaddr,
        direction: Direction,
        now: Instant,
        unix: u64,
    ) -> bool {
        if ip_of(&remote).is_some_and(|ip| self.ip_blocked(ip, unix)) {
            return false;
        }
        self.connections.entry(peer).or_insert(Connection { addr: remote, direction, since: now });
        if let Some(p) = self.statics.get_mut(&peer) {
            p.connected = true;
            p.backoff.reset();
        }
        true
    }

    /// A connection closed; `remaining` connections to the peer are left.
    pub(super) fn disconnected(&mut self, peer: &PeerId, remaining: u32, now: Instant) {
        if remaining > 0 {
            return;
        }
        self.connections.remove(peer);
        self.latency.remove(peer);
        if let Some(p) = self.statics.get_mut(peer) {
            p.connected = false;
            p.next_dial = now + p.backoff.current();
        }
    }

    /// identify's answer.
    pub(super) fn identified(&mut self, peer: PeerId, info: identify::Info) {
        if self.identified.len() < IDENTIFIED || self.identified.contains_key(&peer) {
            self.identified.insert(peer, info);
        }
    }

    /// A ping round trip.
    pub(super) fn pong(&mut self, peer: PeerId, rtt: Duration) {
        self.latency.insert(peer, rtt);
    }

    /// Static peers due for a redial; each one's backoff doubles up to the maximum. Blocked
    /// static peers are dialled too: the gate refuses them before any socket is opened and
    /// counts it, and an unblock resets their backoff.
    pub(super) fn due_redials(&mut self, now: Instant) -> Vec<Multiaddr> {
        self.statics
            .values_mut()
            .filter(|p| !p.connected && p.next_dial <= now)
            .map(|p| {
                p.next_dial = now + p.backoff.next_delay();
                p.addr.clone()
            })
            .collect()
    }

    /// After an unblock: static peers are redialled at once.
    fn reset_redials(&mut self, now: Instant) {
        for p in self.statics.values_mut().filter(|p| !p.connected) {
            p.next_dial = now;
            p.backoff.reset();
        }
    }

    /// Whether to dial a node discovery found: None to dial it, else why not. `known`: it is
    /// this node or connected; `busy`: connections plus dials in flight (several nodes found
    /// at once must not overshoot the high water mark).
    pub(super) fn judge_discovered(
        &self,
        peer: &PeerId,
        addr: &Multiaddr,
        known: bool,
        busy: usize,
        unix: u64,
    ) -> Option<DialOutcome> {
        if known {
            Some(DialOutcome::Connected)
        } else if busy >= self.settings.hi {
            Some(DialOutcome::Full)
        } else if self.gate.read().denied(Some(peer), addr, unix).is_some() {
            Some(DialOutcome::Blocked)
        } else {
            None
        }
    }

    /// Counts what became of a discovered node.
    pub(super) fn count_discovered(&self, outcome: DialOutcome) {
        match outcome {
            DialOutcome::Full => self.stats.discovery_full.fetch_add(1, Ordering::Relaxed),
            DialOutcome::Dialled => self.stats.discovery_dials.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        metrics::counter!("flashnode_gossip_discovery_dials_total", "outcome" => outcome.label())
            .increment(1);
    }

    /// Expiry (unix seconds) of a block lasting `duration`, the ban duration when None; zero
    /// means until lifted.
    pub(super) fn expiry(&self, duration: Option<Duration>, unix: u64) -> u64 {
        match duration.unwrap_or(self.settings.ban_duration) {
            d if d.is_zero() => NEVER,
            d => unix.saturating_add(d.as_secs().max(1)),
        }
    }

    /// Bans a peer (persisted); the host closes its connections (the gate refuses new ones).
    pub(super) fn ban(
        &mut self,
        peer: PeerId,
        reason: BanReason,
        duration: Option<Duration>,
        unix: u64,
    ) {
        let until = self.expiry(duration, unix);
        warn!(%peer, %reason, until, "banning peer");
        let banned = {
            let mut gate = self.gate.write();
            gate.block_peer(peer, until);
            gate.peers(unix).len()
        };
        if let Err(err) = self.store.ban(&peer, until) {
            warn!(%err, "cannot persist the ban");
        }
        self.stats.bans.fetch_add(1, Ordering::Relaxed);
        self.stats.banned.store(banned as u64, Ordering::Relaxed);
        metrics::counter!("flashnode_gossip_bans_total").increment(1);
    }

    /// Lifts a ban and forgets the peer's application score (the host resets it in
    /// gossipsub).
    pub(super) fn unban(&mut self, peer: &PeerId, now: Instant, unix: u64) {
        let banned = {
            let mut gate = self.gate.write();
            gate.unblock_peer(peer);
            gate.peers(unix).len()
        };
        self.app_scores.remove(peer);
        self.reset_redials(now);
        if let Err(err) = self.store.unban(peer) {
            warn!(%err, "cannot persist the unban");
        }
        self.stats.banned.store(banned as u64, Ordering::Relaxed);
    }

    /// Connected peers (with their total `scores`) to ban: below the threshold and not
    /// protected.
    pub(super) fn to_ban(
        &self,
        scores: impl IntoIterator<Item = (PeerId, f64)>,
    ) -> Vec<(PeerId, BanReason)> {
        scores
            .into_iter()
            .filter(|(p, s)| !self.protected.contains(p) && *s < scoring::BAN_THRESHOLD)
            .map(|(p, s)| (p, BanReason::Score(s)))
            .collect()
    }

    /// Lifts the blocks that expired by `unix`; returns the peers unbanned (the host resets
    /// their gossipsub application score).
    pub(super) fn expire(&mut self, now: Instant, unix: u64) -> Vec<PeerId> {
        let expired = self.gate.write().expire(unix);
        if expired.is_empty() {
            return Vec::new();
        }
        for peer in &expired.peers {
            info!(%peer, "ban expired");
            self.unban(peer, now, unix);
        }
        if !(expired.ips.is_empty() && expired.subnets.is_empty()) {
            self.reset_redials(now);
        }
        for ip in expired.ips {
            info!(%ip, "address block expired");
            if let Err(err) = self.store.unblock_ip(ip) {
                warn!(%err, "cannot persist the end of an address block");
            }
        }
        for net in expired.subnets {
            info!(%net, "subnet block expired");
            if let Err(err) = self.store.unblock_subnet(&net.to_string()) {
                warn!(%err, "cannot persist the end of a subnet block");
            }
        }
        expired.peers
    }

    /// Above the high water mark (`connected` peers), the lowest-scored peers that are neither
    /// protected nor in their grace period, down to the low water mark.
    pub(super) fn to_prune(
        &self,
        connected: usize,
        score: impl Fn(&PeerId) -> f64,
        now: Instant,
    ) -> Vec<PeerId> {
        if connected <= self.settings.hi {
            return Vec::new();
        }
        let mut candidates: Vec<(PeerId, f64)> = self
            .connections
            .iter()
            .filter(|(p, c)| {
                !self.protected.contains(p)
                    && now.saturating_duration_since(c.since) >= self.settings.grace
            })
            .map(|(p, _)| (*p, score(p)))
            .collect();
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
        candidates
            .into_iter()
            .take(connected - self.settings.lo)
            .inspect(
                |(peer, score)| debug!(%peer, score, "pruning a peer above the high water mark"),
            )
            .map(|(p, _)| p)
            .collect()
    }

    /// Connected peers whose address is blocked.
    pub(super) fn blocked_connections(&self, unix: u64) -> Vec<PeerId> {
        self.connections
            .iter()
            .filter(|(_, c)| ip_of(&c.addr).is_some_and(|ip| self.ip_blocked(ip, unix)))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Blocks an IP address (persisted); returns the connected peers to drop.
    pub(super) fn block_ip(
        &mut self,
        ip: IpAddr,
        duration: Option<Duration>,
        unix: u64,
    ) -> Vec<PeerId> {
        let until = self.expiry(duration, unix);
        info!(%ip, until, "blocking address");
        self.gate.write().block_ip(ip, until);
        if let Err(err) = self.store.block_ip(ip, until) {
            warn!(%err, "cannot persist the address block");
        }
        self.blocked_connections(unix)
    }

    /// Lifts an IP block.
    pub(super) fn unblock_ip(&mut self, ip: IpAddr, now: Instant) {
        self.gate.write().unblock_ip(&ip);
        self.reset_redials(now);
        if let Err(err) = self.store.unblock_ip(ip) {
            warn!(%err, "cannot persist the address unblock");
        }
    }

    /// Blocks a subnet (persisted); returns the connected peers to drop.
    pub(super) fn block_subnet(
        &mut self,
        net: Subnet,
        duration: Option<Duration>,
        unix: u64,
    ) -> Vec<PeerId> {
        let until = self.expiry(duration, unix);
        info!(%net, until, "blocking subnet");
        self.gate.write().block_subnet(net, until);
        if let Err(err) = self.store.block_subnet(&net.to_string(), until) {
            warn!(%err, "cannot persist the subnet block");
        }
        self.blocked_connections(unix)
    }

    /// Lifts a subnet block.
    pub(super) fn unblock_subnet(&mut self, net: Subnet, now: Instant) {
        self.gate.write().unblock_subnet(&net);
        self.reset_redials(now);
        if let Err(err) = self.store.unblock_subnet(&net.to_string()) {
            warn!(%err, "cannot persist the subnet unblock");
        }
    }

    /// Protects a peer: never banned by score nor pruned.
    pub(super) fn protect(&mut self, peer: PeerId) {
        self.protected.insert(peer);
    }

    /// Records an application event; returns the peer's new application score.
    pub(super) fn app_event(&mut self, peer: PeerId, ev: AppEvent) -> f64 {
        self.app_scores.record(peer, ev)
    }

    /// Decays the application scores; returns every peer's new one.
    pub(super) fn decay(&mut self) -> Vec<(PeerId, f64)> {
        self.app_scores.decay()
    }

    /// Peers known without a connection: identified ones and static ones.
    pub(super) fn known(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.identified.keys().chain(self.statics.keys()).copied()
    }

    /// A peer as the admin API shows it.
    pub(super) fn info(&self, peer: &PeerId, gossip: GossipView, chain_id: u64) -> PeerInfo {
        let id = self.identified.get(peer);
        let conn = self.connections.get(peer);
        let mut addresses: Vec<String> =
            id.map(|i| i.listen_addrs.iter().map(|a| a.to_string()).collect()).unwrap_or_default();
        if let Some(c) = conn {
            if addresses.is_empty() {
                addresses.push(c.addr.to_string());
            }
        }
        PeerInfo {
            peer_id: peer.to_string(),
            user_agent: id.map(|i| i.agent_version.clone()).unwrap_or_default(),
            protocol_version: id.map(|i| i.protocol_version.clone()).unwrap_or_default(),
            addresses,
            protocols: id
                .map(|i| i.protocols.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default(),
            connectedness: if conn.is_some() {
                Connectedness::Connected
            } else {
                Connectedness::NotConnected
            },
            direction: conn.map_or(Direction::Unknown, |c| c.direction),
            protected: self.protected.contains(peer),
            chain_id,
            latency: self.latency.get(peer).map(|d| d.as_nanos() as u64).unwrap_or_default(),
            gossip_blocks: gossip.blocks,
            scores: PeerScores {
                gossip: Some(gossip.score),
                app: Some(self.app_scores.score(peer)),
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::now_secs;
    use libp2p::multiaddr::Protocol;

    fn settings() -> PeerSettings {
        PeerSettings {
            lo: 2,
            hi: 3,
            grace: Duration::from_secs(30),
            ban_duration: Duration::from_secs(3600),
            redial_min: Duration::from_millis(500),
            redial_max: Duration::from_secs(2),
        }
    }

    fn manager(statics: &[Multiaddr]) -> PeersManager {
        PeersManager::new(
            settings(),
            statics,
            Arc::new(RwLock::new(Gate::default())),
            Arc::new(Store::in_memory(10).unwrap()),
            Arc::new(GossipStats::default()),
        )
        .unwrap()
    }

    fn addr(last: u8) -> Multiaddr {
        format!("/ip4/10.0.0.{last}/tcp/9222").parse().unwrap()
    }

    #[test]
    fn static_peers_need_an_id_and_redial_with_doubling_backoff() {
        let bare = addr(1);
        assert!(matches!(
            PeersManager::new(
                settings(),
                std::slice::from_ref(&bare),
                Arc::new(RwLock::new(Gate::default())),
                Arc::new(Store::in_memory(10).unwrap()),
                Arc::new(GossipStats::default()),
            ),
            Err(GossipError::StaticPeerWithoutId(a)) if a == bare
        ));
        let peer = PeerId::random();
        let full = addr(1).with(Protocol::P2p(peer));
        let mut m = manager(std::slice::from_ref(&full));
        let t0 = Instant::now();
        assert_eq!(m.due_redials(t0), vec![full.clone()]);
        // Not again before the backoff; then the backoff doubles up to the maximum.
        assert!(m.due_redials(t0 + Duration::from_millis(499)).is_empty());
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(m.due_redials(t1).len(), 1);
        assert!(m.due_redials(t1 + Duration::from_millis(999)).is_empty());
        assert_eq!(m.due_redials(t1 + Duration::from_secs(1)).len(), 1);
        // Connected: never redialled; a drop waits the reset backoff.
        assert!(m.connected(peer, addr(1), Direction::Outbound, t1, now_secs()));
        assert!(m.due_redials(t1 + Duration::from_secs(60)).is_empty());
        let t2 = t1 + Duration::from_secs(60);
        m.disconnected(&peer, 0, t2);
        assert!(m.due_redials(t2).is_empty());
        assert_eq!(m.due_redials(t2 + Duration::from_millis(500)).len(), 1);
        // Static peers are protected: never banned by score.
        assert!(m.to_ban([(peer, -1000.0)]).is_empty());
    }

    #[test]
    fn low_scores_are_banned_persisted_and_expire() {
        let mut m = manager(&[]);
        let (bad, good) = (PeerId::random(), PeerId::random());
        let unix = now_secs();
        let bans = m.to_ban([(bad, scoring::BAN_THRESHOLD - 1.0), (good, 0.0)]);
        assert_eq!(bans, vec![(bad, BanReason::Score(scoring::BAN_THRESHOLD - 1.0))]);
        m.ban(bad, bans[0].1, Some(Duration::from_secs(10)), unix);
        assert!(m.gate().read().peer_blocked(&bad, unix));
        assert_eq!(m.store.bans(unix).unwrap(), vec![(bad, unix + 10)]);
        assert_eq!(m.stats.banned.load(Ordering::Relaxed), 1);
        assert!(m.expire(Instant::now(), unix + 5).is_empty());
        assert_eq!(m.expire(Instant::now(), unix + 10), vec![bad]);
        assert!(!m.gate().read().peer_blocked(&bad, unix + 10));
        assert!(m.store.bans(unix).unwrap().is_empty());
        assert_eq!(m.stats.banned.load(Ordering::Relaxed), 0);
        // A zero duration blocks until lifted.
        assert_eq!(m.expiry(Some(Duration::ZERO), unix), NEVER);
        assert_eq!(m.expiry(None, unix), unix + 3600);
    }

    #[test]
    fn pruning_keeps_protected_and_new_peers_and_drops_the_lowest_scores() {
        let mut m = manager(&[]);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            assert!(m.connected(*p, addr(i as u8), Direction::Inbound, t0, now_secs()));
        }
        let late = PeerId::random();
        let t1 = t0 + Duration::from_secs(30);
        assert!(m.connected(late, addr(9), Direction::Inbound, t1, now_secs()));
        m.protect(peers[0]);
        let score = |p: &PeerId| {
            if *p == late {
                -50.0
            } else {
                -(peers.iter().position(|q| q == p).unwrap_or(0) as f64)
            }
        };
        // At the high water mark nothing is pruned.
        assert!(m.to_prune(3, score, t1).is_empty());
        // 6 connected, low water 2: four go, lowest scores first; the protected peer and the
        // one in its grace period stay.
        let pruned = m.to_prune(6, score, t1);
        assert_eq!(pruned, vec![peers[4], peers[3], peers[2], peers[1]]);
    }

    #[test]
    fn address_and_subnet_blocks_drop_connections_and_reset_redials() {
        let peer = PeerId::random();
        let full = addr(7).with(Protocol::P2p(peer));
        let mut m = manager(std::slice::from_ref(&full));
        let (t0, unix) = (Instant::now(), now_secs());
        assert!(m.connected(peer, addr(7), Direction::Outbound, t0, unix));
        let other = PeerId::random();
        assert!(m.connected(other, addr(8), Direction::Inbound, t0, unix));
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(m.block_ip(ip, None, unix), vec![peer]);
        assert_eq!(m.store.blocked_ips(unix).unwrap(), vec![(ip, unix + 3600)]);
        // A new connection from a blocked address is refused.
        assert!(!m.connected(PeerId::random(), addr(7), Direction::Inbound, t0, unix));
        m.disconnected(&peer, 0, t0);
        m.unblock_ip(ip, t0);
        assert!(m.blocked_connections(unix).is_empty());
        assert_eq!(m.due_redials(t0), vec![full], "an unblock redials at once");
        let net: Subnet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(m.block_subnet(net, Some(Duration::ZERO), unix), vec![other]);
        assert_eq!(m.store.blocked_subnets(unix).unwrap(), vec![(net.to_string(), NEVER)]);
        m.unblock_subnet(net, t0);
        assert!(m.store.blocked_subnets(unix).unwrap().is_empty());
    }

    #[test]
    fn discovered_nodes_are_dialled_below_the_high_water_mark_unless_blocked() {
        let mut m = manager(&[]);
        let (peer, unix) = (PeerId::random(), now_secs());
        let a = addr(3).with(Protocol::P2p(peer));
        assert_eq!(m.judge_discovered(&peer, &a, true, 0, unix), Some(DialOutcome::Connected));
        assert_eq!(m.judge_discovered(&peer, &a, false, 3, unix), Some(DialOutcome::Full));
        assert_eq!(m.judge_discovered(&peer, &a, false, 2, unix), None);
        m.ban(peer, BanReason::Admin, None, unix);
        assert_eq!(m.judge_discovered(&peer, &a, false, 2, unix), Some(DialOutcome::Blocked));
        m.count_discovered(DialOutcome::Full);
        m.count_discovered(DialOutcome::Dialled);
        assert_eq!(m.stats.discovery_full.load(Ordering::Relaxed), 1);
        assert_eq!(m.stats.discovery_dials.load(Ordering::Relaxed), 1);
        assert_eq!(DialOutcome::Dialled.label(), "dialled");
    }

    #[test]
    fn info_shows_connection_direction_and_scores() {
        let mut m = manager(&[]);
        let (peer, t0) = (PeerId::random(), Instant::now());
        let unknown = m.info(&peer, GossipView::default(), 901);
        assert_eq!(
            (unknown.connectedness, unknown.direction),
            (Connectedness::NotConnected, Direction::Unknown)
        );
        assert!(m.connected(peer, addr(4), Direction::Outbound, t0, now_secs()));
        m.pong(peer, Duration::from_millis(3));
        let app = m.app_event(peer, AppEvent::ValidResponse);
        let info = m.info(&peer, GossipView { score: 1.5, blocks: true }, 901);
        assert_eq!(info.connectedness, Connectedness::Connected);
        assert_eq!(info.direction, Direction::Outbound);
        assert_eq!(info.addresses, vec![addr(4).to_string()]);
        assert_eq!(info.latency, 3_000_000);
        assert!(info.gossip_blocks);
        assert_eq!((info.scores.gossip, info.scores.app), (Some(1.5), Some(app)));
        m.disconnected(&peer, 0, t0);
        assert_eq!(m.info(&peer, GossipView::default(), 901).latency, 0);
    }
}
