//! The p2p service: one task, the [`Host`], owns the libp2p swarm and talks to the rest of the
//! node through a bounded command channel ([`GossipHandle`]), a broadcast of verified blocks
//! and shared counters.
//!
//! Each job is a type that owns its state, in a file named after it, the way reth's network
//! crate splits `NetworkManager`, `PeersManager`, `FetchClient` and `EthRequestHandler`:
//!
//! - [`handle`]: the handle and its commands;
//! - [`swarm`]: the behaviours, building the swarm and binding it;
//! - [`validation`]: dispatch of gossiped messages to validation and back;
//! - [`sync`]: the alt-sync client (gaps, retries, quarantine, the trusted hash chain);
//! - [`serve`]: the alt-sync server (rate limits, answers from the store);
//! - [`peers`]: the connection manager (static peers, bans, blocks, pruning, scores);
//! - [`admin`]: the `opp2p_` admin API.
//!
//! The [`Host`] loop here routes swarm events, commands and verdicts to them and carries out
//! what they decide on the swarm.

mod admin;
mod handle;
mod peers;
mod serve;
mod swarm;
mod sync;
mod validation;

pub use handle::GossipHandle;

use crate::{
    admin_types::Direction,
    altsync::PayloadResponse,
    codec::SignedBlock,
    config::GossipConfig,
    discovery::{self, DiscoveryError},
    gate::{now_secs, Gate},
    key::{self, KeyError},
    scoring::{self, AppEvent},
    stats::GossipStats,
    store::{Store, StoreError},
    validate::{Outcome, Refusal, VerifiedBlock},
};
use admin::RequestReply;
use flashnode_tasks::TaskExecutor;
use futures::StreamExt;
use handle::Command;
use libp2p::{
    gossipsub, identify,
    identity::Keypair,
    ping,
    request_response::{self, OutboundRequestId},
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        SwarmEvent,
    },
    Multiaddr, PeerId, Swarm,
};
use peers::{BanReason, DialOutcome, PeerSettings, PeersManager};
use serve::{PayloadServer, Served};
use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};
use swarm::Behaviour;
use sync::SyncClient;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};
use validation::{Validation, Verdict};

/// Commands queued to the swarm task.
const COMMAND_BUFFER: usize = 256;
/// Failed dials of discovered nodes queued for discovery (beyond it they are dropped).
const DIAL_FAILED_BUFFER: usize = 256;
/// How often static peers are redialled, alt-sync scheduled, bans enforced and peers pruned.
const TICK: Duration = Duration::from_millis(250);

/// A boxed error from libp2p's builders (their error types differ per step).
type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// Why the p2p service could not start or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The node key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The transport or a behaviour could not be built.
    #[error("cannot build the libp2p host: {0}")]
    Build(#[source] BuildError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// No address was bound in time.
    #[error("cannot listen on {0}: no listen address within {1:?}")]
    ListenTimeout(Multiaddr, Duration),
    /// A static peer address lacks its `/p2p/<peer id>` suffix.
    #[error("static peer {0} must end in /p2p/<peer id>")]
    StaticPeerWithoutId(Multiaddr),
    /// The service stopped.
    #[error("the p2p service is not running")]
    Stopped,
    /// gossipsub did not take a block to publish (no peers on the topic, a duplicate, ...).
    #[error("cannot publish: {0}")]
    Publish(#[from] gossipsub::PublishError),
    /// discv5 could not start.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The durable store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts the p2p host: loads or creates the node key, binds, subscribes to the four block
/// topics, dials static peers and bootnodes, and runs until `cancel`.
///
/// The host loop (`p2p`) and discovery (`discv5`) are critical tasks of `tasks`: either one
/// panicking or ending before shutdown is a [`flashnode_tasks::TaskFailure`].
pub async fn spawn(
    config: GossipConfig,
    cancel: CancellationToken,
    tasks: &TaskExecutor,
) -> Result<GossipHandle, GossipError> {
    let keypair = match &config.key_path {
        Some(path) => key::load_or_create(path)?,
        None => Keypair::generate_secp256k1(),
    };
    let peer_id = keypair.public().to_peer_id();
    let discovery_key = match &config.discovery {
        Some(_) => Some(discovery::enr_key(&keypair)?),
        None => None,
    };
    let store = Arc::new(match &config.store_path {
        Some(path) => Store::open(path, config.store_retain)?,
        None => Store::in_memory(config.store_retain)?,
    });
    let stats = Arc::new(GossipStats::default());
    let gate = Arc::new(parking_lot::RwLock::new(Gate::default()));
    let settings = PeerSettings::of(&config);
    let peers = PeersManager::new(
        settings,
        &config.static_peers,
        gate.clone(),
        store.clone(),
        stats.clone(),
    )?;
    let mut swarm = swarm::build(&config, keypair, gate)?;
    let listen_addrs = swarm::listen(&mut swarm, &config.listen).await?;
    for addr in &config.bootnodes {
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, %e, "cannot dial bootnode");
        }
    }
    let (commands, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let (mut enr, mut node_id) = (None, None);
    // Failed dials of discovered nodes go back to discovery, which retries them sooner.
    let (dial_failed, dial_failed_rx) = mpsc::channel(DIAL_FAILED_BUFFER);
    let mut dial_failed = Some(dial_failed);
    if let (Some(dc), Some(key)) = (&config.discovery, discovery_key) {
        let tcp_port = swarm::tcp_port(&listen_addrs);
        let discovery = discovery::start(dc, key, tcp_port, config.chain_id, store.clone()).await?;
        enr = Some(discovery.enr.to_base64());
        node_id = Some(hex::encode(discovery.enr.node_id().raw()));
        let (tx, counts, hi) = (commands.clone(), stats.clone(), peers.high_water() as u64);
        tasks.spawn_critical(
            "discv5",
            discovery
                .run(
                    dc.interval,
                    config.chain_id,
                    stats.clone(),
                    discovery::HostLink {
                        below_high_water: move || counts.peers.load(Ordering::Relaxed) < hi,
                        // Bounded: a full command queue drops the node (found again later).
                        dial: move |peer, addr| {
                            tx.try_send(Command::Discovered(peer, addr)).is_ok()
                        },
                        failed: dial_failed_rx,
                    },
                    cancel.clone(),
                )
                .instrument(info_span!("discv5", %peer_id)),
        );
    }
    let (blocks, _) = broadcast::channel(config.block_buffer.max(1));
    let (validation, verdicts) = Validation::new(config.chain_id, config.unsafe_block_signer);
    let sync =
        SyncClient::new(store.clone(), stats.clone(), config.max_gap, config.altsync_per_peer);
    if config.discovery.is_none() {
        dial_failed = None;
    }
    let mut host = Host {
        dial_failed,
        chain_id: config.chain_id,
        swarm,
        stats: stats.clone(),
        blocks: blocks.clone(),
        server: PayloadServer::new(store.clone(), stats.clone()),
        store,
        validation,
        sync,
        peers,
        admin_requests: HashMap::new(),
    };
    host.peers.load_blocks(now_secs());
    host.refresh_store_stats();
    info!(%peer_id, addrs = ?listen_addrs, chain_id = config.chain_id, signer = %config.unsafe_block_signer, "p2p host listening");
    tasks.spawn_critical(
        "p2p",
        host.run(command_rx, verdicts, cancel).instrument(info_span!("p2p", %peer_id)),
    );
    Ok(GossipHandle {
        peer_id,
        listen_addrs,
        stats,
        chain_id: config.chain_id,
        enr,
        node_id,
        commands,
        blocks,
    })
}

/// The swarm loop: owns the swarm and the components, routes events to them and carries out
/// their decisions.
struct Host {
    /// Where failed dials of discovered nodes are reported (None without discovery).
    dial_failed: Option<mpsc::Sender<PeerId>>,
    chain_id: u64,
    swarm: Swarm<Behaviour>,
    stats: Arc<GossipStats>,
    blocks: broadcast::Sender<Arc<VerifiedBlock>>,
    store: Arc<Store>,
    validation: Validation,
    sync: SyncClient<OutboundRequestId>,
    server: PayloadServer,
    peers: PeersManager,
    /// Admin `payload_by_number` requests in flight.
    admin_requests: HashMap<OutboundRequestId, RequestReply>,
}

impl Host {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut verdicts: mpsc::Receiver<Verdict>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        let mut decay = tokio::time::interval(scoring::DECAY_INTERVAL);
        decay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(v) = verdicts.recv() => self.on_verdict(v),
                _ = tick.tick() => {
                    self.redial();
                    self.schedule();
                    self.enforce_bans();
                    self.trim_peers();
                }
                _ = decay.tick() => {
                    for (peer, score) in self.peers.decay() {
                        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
                    }
                }
            }
        }
        info!("p2p host stopped");
    }

    fn update_peers(&self) {
        let n = self.swarm.connected_peers().count() as u64;
        self.stats.peers.store(n, Ordering::Relaxed);
        metrics::gauge!("flashnode_gossip_peers").set(n as f64);
    }

    fn redial(&mut self) {
        for addr in self.peers.due_redials(Instant::now()) {
            debug!(%addr, "dialling static peer");
            if let Err(e) = self.swarm.dial(addr.clone()) {
                debug!(%addr, %e, "static peer dial failed");
            }
        }
    }

    /// Stores our own block to serve it, and marks it seen so it never comes back as new.
    fn remember(&mut self, block: &SignedBlock) {
        let number = block.envelope.payload.block_number();
        let hash = block.envelope.payload.block_hash();
        self.validation.mark_seen(number, hash);
        sync::store_block(&self.store, number, block.version, hash, &block.wire);
    }

    fn publish(&mut self, block: SignedBlock) -> Result<(), gossipsub::PublishError> {
        let topic = gossipsub::IdentTopic::new(block.version.topic(self.chain_id));
        let number = block.envelope.payload.block_number();
        let hash = block.envelope.payload.block_hash();
        self.remember(&block);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, block.wire) {
            Ok(_) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flashnode_gossip_published_total").increment(1);
                debug!(number, %hash, version = block.version.as_str(), "published block");
                Ok(())
            }
            Err(e) => {
                self.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flashnode_gossip_publish_failures_total").increment(1);
                debug!(number, %e, "publish failed");
                Err(e)
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(block, reply) => {
                let _ = reply.send(self.publish(*block));
            }
            Command::Remember(block) => self.remember(&block),
            Command::Admin(a) => self.on_admin(a),
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, %e, "dial failed");
                }
            }
            Command::Discovered(peer, addr) => {
                // The connection manager's high-water mark bounds what discovery adds; the
                // gate refuses blocked peers and addresses at dial time.
                let known = peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer);
                let busy = self.swarm.connected_peers().count()
                    + self.swarm.network_info().connection_counters().num_pending_outgoing()
                        as usize;
                let outcome =
                    match self.peers.judge_discovered(&peer, &addr, known, busy, now_secs()) {
                        Some(outcome) => outcome,
                        // By peer id, so a failure names the peer discovery should retry,
                        // and never a second dial to a peer already being dialled.
                        None => match self.swarm.dial(
                            DialOpts::peer_id(peer)
                                .addresses(vec![addr.clone()])
                                .condition(PeerCondition::DisconnectedAndNotDialing)
                                .build(),
                        ) {
                            Err(e) => {
                                debug!(%addr, %e, "dial of a discovered node failed");
                                DialOutcome::Failed
                            }
                            Ok(()) => {
                                debug!(%peer, %addr, "dialling a discovered node");
                                DialOutcome::Dialled
                            }
                        },
                    };
                self.peers.count_discovered(outcome);
            }
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<swarm::BehaviourEvent>) {
        use swarm::BehaviourEvent as B;
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                let remote = endpoint.get_remote_address().clone();
                debug!(%peer_id, addr = %remote, "connected");
                let direction =
                    if endpoint.is_dialer() { Direction::Outbound } else { Direction::Inbound };
                if !self.peers.connected(peer_id, remote, direction, Instant::now(), now_secs()) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.update_peers();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                debug!(%peer_id, ?cause, "disconnected");
                self.peers.disconnected(&peer_id, num_established, Instant::now());
                self.update_peers();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outgoing connection failed");
                if let (Some(peer), Some(tx)) = (peer_id, &self.dial_failed) {
                    // Full: discovery is behind; the node is retried at the usual pace.
                    let _ = tx.try_send(peer);
                }
            }
            SwarmEvent::Behaviour(B::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                if let Err(err) =
                    self.validation.submit(message_id.clone(), propagation_source, message)
                {
                    self.report(&message_id, &propagation_source, Outcome::Refuse(err));
                }
            }
            SwarmEvent::Behaviour(B::Reqresp(ev)) => self.on_reqresp(ev),
            SwarmEvent::Behaviour(B::Identify(identify::Event::Received {
                peer_id, info, ..
            })) => {
                debug!(%peer_id, agent = %info.agent_version, "identified");
                self.peers.identified(peer_id, info);
            }
            SwarmEvent::Behaviour(B::Ping(ping::Event { peer, result: Ok(rtt), .. })) => {
                self.peers.pong(peer, rtt);
            }
            _ => {}
        }
    }

    fn on_verdict(&mut self, v: Verdict) {
        let outcome = self.validation.decide(v.result);
        match &outcome {
            Outcome::Accept(block) => {
                self.stats.highest_block.fetch_max(block.number(), Ordering::Relaxed);
                debug!(number = block.number(), hash = %block.hash, from = %v.source, "accepted block");
                let _ = self.blocks.send(block.clone());
                self.sync.on_gossip_block(block, Instant::now());
                self.schedule();
                self.refresh_store_stats();
            }
            Outcome::Refuse(err) => {
                debug!(from = %v.source, outcome = outcome.label(), reason = err.label(), %err, "gossip message not accepted");
                if err.refusal() == Refusal::Reject {
                    self.app_event(v.source, AppEvent::RejectedPayload);
                }
            }
        }
        self.report(&v.id, &v.source, outcome);
    }

    fn report(&mut self, id: &gossipsub::MessageId, source: &PeerId, outcome: Outcome) {
        let (acceptance, counter) = match &outcome {
            Outcome::Accept(_) => (gossipsub::MessageAcceptance::Accept, &self.stats.accepted),
            Outcome::Refuse(e) => match e.refusal() {
                Refusal::Ignore => (gossipsub::MessageAcceptance::Ignore, &self.stats.ignored),
                Refusal::Reject => (gossipsub::MessageAcceptance::Reject, &self.stats.rejected),
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flashnode_gossip_messages_total", "outcome" => outcome.label(), "reason" => outcome.reason()).increment(1);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    fn refresh_store_stats(&self) {
        if let (Ok(range), Ok(count)) = (self.store.range(), self.store.count()) {
            let (lo, hi) = range.unwrap_or_default();
            self.stats.stored_low.store(lo, Ordering::Relaxed);
            self.stats.stored_high.store(hi, Ordering::Relaxed);
            self.stats.stored_count.store(count, Ordering::Relaxed);
        }
        self.stats.altsync_missing.store(self.sync.missing(), Ordering::Relaxed);
    }

    /// Hands missing blocks to connected peers.
    fn schedule(&mut self) {
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let reqresp = &mut self.swarm.behaviour_mut().reqresp;
        self.sync.schedule(Instant::now(), connected, |peer, number| {
            reqresp.send_request(&peer, number)
        });
    }

    fn on_reqresp(&mut self, ev: request_response::Event<u64, PayloadResponse>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let (served, response) = self.server.answer(&peer, request, Instant::now());
                    match response {
                        Some(r) => {
                            let _ = self.swarm.behaviour_mut().reqresp.send_response(channel, r);
                        }
                        // Dropping the channel resets the stream.
                        None => drop(channel),
                    }
                    if served == Served::RateLimited {
                        self.app_event(peer, AppEvent::Flood);
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.admin_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                        return;
                    }
                    let answered =
                        self.sync.on_response(request_id, peer, response, Instant::now());
                    if let Some(answered) = answered {
                        self.app_event(peer, answered.app_event());
                        if answered.reschedules() {
                            self.schedule();
                            self.refresh_store_stats();
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, peer, error, .. } => {
                if let Some(reply) = self.admin_requests.remove(&request_id) {
                    let _ = reply.send(Err(error));
                    return;
                }
                self.app_event(peer, AppEvent::ErrorResponse);
                if let Some(number) = self.sync.on_failure(request_id, peer, Instant::now()) {
                    debug!(%peer, number, %error, "alt-sync request failed");
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "alt-sync serve failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn app_event(&mut self, peer: PeerId, ev: AppEvent) {
        let score = self.peers.app_event(peer, ev);
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
    }

    fn ban(&mut self, peer: PeerId, reason: BanReason, duration: Option<Duration>) {
        self.peers.ban(peer, reason, duration, now_secs());
        // The gate refuses new connections; the current ones are closed here.
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn unban(&mut self, peer: &PeerId) {
        self.peers.unban(peer, Instant::now(), now_secs());
        self.swarm.behaviour_mut().gossipsub.set_application_score(peer, 0.0);
    }

    /// Bans connected peers whose total score fell below the threshold; lifts expired bans.
    fn enforce_bans(&mut self) {
        let gs = &self.swarm.behaviour().gossipsub;
        let scores: Vec<(PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter_map(|p| gs.peer_score(p).map(|s| (*p, s)))
            .collect();
        for (peer, reason) in self.peers.to_ban(scores) {
            self.ban(peer, reason, None);
        }
        for peer in self.peers.expire(Instant::now(), now_secs()) {
            self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, 0.0);
        }
    }

    /// The connection manager's pruning above the high water mark.
    fn trim_peers(&mut self) {
        let connected = self.swarm.connected_peers().count();
        let gs = &self.swarm.behaviour().gossipsub;
        let prune = self.peers.to_prune(
            connected,
            |p| gs.peer_score(p).unwrap_or_default(),
            Instant::now(),
        );
        for peer in prune {
            metrics::counter!("flashnode_gossip_pruned_total").increment(1);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}
