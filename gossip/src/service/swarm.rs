//! The libp2p host itself: its behaviours (gate, connection limits, identify, ping, gossipsub
//! with op-node's parameters and peer scoring, `payload_by_number`), how it is built, and how
//! it binds its listen address.

use super::GossipError;
use crate::{
    altsync::{self, PayloadByNumberCodec},
    codec::{self, BlockVersion},
    config::GossipConfig,
    gate::{Gate, GateBehaviour},
    params, scoring,
};
use futures::StreamExt;
use libp2p::{
    connection_limits, gossipsub, identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use parking_lot::RwLock;
use std::{sync::Arc, time::Duration};

/// Longest wait for the listen address to be bound.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The host's behaviours.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    /// First: a gated connection is refused before any other behaviour sees it.
    pub gate: GateBehaviour,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub reqresp: request_response::Behaviour<PayloadByNumberCodec>,
}

/// The peer id a multiaddr ends in, if any.
pub(super) fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// The TCP port of the first address that has one (0 when none does).
pub(super) fn tcp_port(addrs: &[Multiaddr]) -> u16 {
    addrs
        .iter()
        .find_map(|a| {
            a.iter().find_map(|p| if let Protocol::Tcp(port) = p { Some(port) } else { None })
        })
        .unwrap_or_default()
}

/// The gossipsub configuration of op-node (see [`params`]), anonymous messages, no PX.
fn gossipsub_config(config: &GossipConfig) -> Result<gossipsub::Config, GossipError> {
    let mode = config.message_id;
    gossipsub::ConfigBuilder::default()
        .mesh_n(params::MESH_D)
        .mesh_n_low(params::MESH_D_LO)
        .mesh_n_high(params::MESH_D_HI)
        .gossip_lazy(params::MESH_D_LAZY)
        .heartbeat_interval(params::HEARTBEAT)
        .fanout_ttl(params::FANOUT_TTL)
        .history_length(params::HISTORY_LENGTH)
        .history_gossip(params::HISTORY_GOSSIP)
        .duplicate_cache_time(params::SEEN_TTL)
        .max_transmit_size(codec::MAX_GOSSIP_SIZE)
        // Messages carry no author, seqno or libp2p signature (op-node: StrictNoSign).
        .validation_mode(gossipsub::ValidationMode::None)
        // Forward only what the application accepted.
        .validate_messages()
        .message_id_fn(move |m: &gossipsub::Message| {
            gossipsub::MessageId::new(&codec::message_id(mode, m.topic.as_str(), &m.data))
        })
        .build()
        .map_err(|e| GossipError::Build(e.into()))
}

/// Builds the swarm and subscribes it to the chain's four block topics.
pub(super) fn build(
    config: &GossipConfig,
    keypair: Keypair,
    gate: Arc<RwLock<Gate>>,
) -> Result<Swarm<Behaviour>, GossipError> {
    let gs_config = gossipsub_config(config)?;
    let chain_id = config.chain_id;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(config.max_inbound))
        .with_max_established_outgoing(Some(config.max_outbound))
        .with_max_established_per_peer(Some(2));
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| GossipError::Build(e.into()))?
        .with_behaviour(|key| {
            let mut gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gs_config)?;
            let topics =
                BlockVersion::ALL.map(|v| gossipsub::IdentTopic::new(v.topic(chain_id)).hash());
            gossipsub.with_peer_score(scoring::peer_score_params(topics), scoring::thresholds())?;
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                gate: GateBehaviour::new(gate),
                identify: identify::Behaviour::new(
                    identify::Config::new("optimism".into(), key.public())
                        .with_agent_version(format!("flashnode/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                gossipsub,
                reqresp: request_response::Behaviour::new(
                    altsync::protocols(chain_id).into_iter().map(|p| (p, ProtocolSupport::Full)),
                    request_response::Config::default()
                        .with_request_timeout(altsync::REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(64),
                ),
            })
        })
        .map_err(|e| GossipError::Build(e.into()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for v in BlockVersion::ALL {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(v.topic(chain_id)))
            .map_err(|e| GossipError::Build(e.into()))?;
    }
    Ok(swarm)
}

/// Binds `addr` and waits for the bound addresses (port 0 resolves here), each returned with
/// the `/p2p/<peer id>` suffix.
pub(super) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addr: &Multiaddr,
) -> Result<Vec<Multiaddr>, GossipError> {
    let peer_id = *swarm.local_peer_id();
    swarm
        .listen_on(addr.clone())
        .map_err(|e| GossipError::Listen { addr: addr.clone(), source: e.into() })?;
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
    tokio::pin!(deadline);
    while listen_addrs.is_empty() {
        tokio::select! {
            _ = &mut deadline => return Err(GossipError::ListenTimeout(addr.clone(), LISTEN_TIMEOUT)),
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => {
                    listen_addrs.push(address.with(Protocol::P2p(peer_id)));
                }
                SwarmEvent::ListenerError { error, .. }
                | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(GossipError::Listen { addr: addr.clone(), source: error.into() });
                }
                _ => {}
            }
        }
    }
    Ok(listen_addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_their_peer_and_port() {
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/9222".parse().unwrap();
        assert_eq!(peer_id_of(&a), None);
        assert_eq!(peer_id_of(&a.clone().with(Protocol::P2p(peer))), Some(peer));
        assert_eq!(tcp_port(&["/ip4/127.0.0.1/udp/1".parse().unwrap(), a]), 9222);
        assert_eq!(tcp_port(&[]), 0);
    }

    #[tokio::test]
    async fn a_host_binds_a_free_port_and_subscribes_to_the_four_topics() {
        let config = GossipConfig::new(
            901,
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            alloy_primitives::Address::ZERO,
        );
        let mut swarm = build(&config, Keypair::generate_secp256k1(), Arc::default()).unwrap();
        assert_eq!(swarm.behaviour().gossipsub.topics().count(), 4);
        let addrs = listen(&mut swarm, &config.listen).await.unwrap();
        assert_ne!(tcp_port(&addrs), 0);
        assert_eq!(peer_id_of(&addrs[0]), Some(*swarm.local_peer_id()));
    }
}
