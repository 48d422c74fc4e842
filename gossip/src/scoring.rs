//! Peer scoring after op-node's "light" profile (`op-node/p2p/peer_params.go`,
//! `topic_params.go`, `app_scores.go`): gossipsub topic scores for the block topics, the
//! thresholds, IP colocation, and the application score fed by alt-sync answers and rejected
//! payloads. A peer whose total score falls below [`BAN_THRESHOLD`] is banned for the
//! configured duration (op-node: `-100`, one hour).

use libp2p::{gossipsub, PeerId};
use std::{collections::HashMap, time::Duration};

/// Total score below which a peer is banned.
pub const BAN_THRESHOLD: f64 = -100.0;
/// How often application counters decay.
pub const DECAY_INTERVAL: Duration = Duration::from_secs(12);
/// Multiplier applied to the counters every decay interval.
pub const DECAY: f64 = 0.9;

/// Application-score weights and caps (op-node `ApplicationScoreParams`).
pub mod app {
    /// Valid alt-sync responses: cap.
    pub const VALID_CAP: f64 = 10.0;
    /// Valid alt-sync responses: weight.
    pub const VALID_WEIGHT: f64 = 0.5;
    /// Error responses (not found, timeouts, resets): cap.
    pub const ERROR_CAP: f64 = 9.0;
    /// Error responses: weight.
    pub const ERROR_WEIGHT: f64 = -1.0;
    /// Rejected payloads (gossip REJECT, invalid alt-sync answers): cap.
    pub const REJECTED_CAP: f64 = 20.0;
    /// Rejected payloads: weight.
    pub const REJECTED_WEIGHT: f64 = -20.0;
}

/// Score thresholds (op-node: gossip -10, publish -40, graylist -40, accept PX 20,
/// opportunistic graft 0.05).
pub fn thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -40.0,
        graylist_threshold: -40.0,
        accept_px_threshold: 20.0,
        opportunistic_graft_threshold: 0.05,
    }
}

/// Topic score parameters of one block topic: time in mesh and first deliveries reward,
/// invalid deliveries weigh heavily (one invalid block costs more than the ban threshold
/// once the topic weight is applied), mesh delivery rates are not scored (blocks come every
/// 2 s, too rare for delivery-rate windows).
pub fn block_topic_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 0.8,
        time_in_mesh_weight: 0.0333,
        time_in_mesh_quantum: Duration::from_secs(2),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 23.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.9,
        mesh_message_deliveries_cap: 1.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(60),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.9,
        invalid_message_deliveries_weight: -140.4475,
        invalid_message_deliveries_decay: 0.97,
    }
}

/// Peer score parameters with the four block topics of `chain_id`.
pub fn peer_score_params(
    topics: impl IntoIterator<Item = gossipsub::TopicHash>,
) -> gossipsub::PeerScoreParams {
    let mut p = gossipsub::PeerScoreParams {
        topic_score_cap: 34.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: -35.0,
        ip_colocation_factor_threshold: 10.0,
        behaviour_penalty_weight: -16.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.9,
        decay_interval: DECAY_INTERVAL,
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(200),
        ..Default::default()
    };
    for t in topics {
        p.topics.insert(t, block_topic_params());
    }
    p
}

/// Per-peer application counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AppCounters {
    /// Valid alt-sync responses.
    pub valid: f64,
    /// Error responses.
    pub errors: f64,
    /// Rejected payloads.
    pub rejected: f64,
}

impl AppCounters {
    /// The application score.
    pub fn score(&self) -> f64 {
        self.valid.min(app::VALID_CAP) * app::VALID_WEIGHT
            + self.errors.min(app::ERROR_CAP) * app::ERROR_WEIGHT
            + self.rejected.min(app::REJECTED_CAP) * app::REJECTED_WEIGHT
    }
}

/// Application scores of all peers.
#[derive(Debug, Default)]
pub struct AppScores {
    peers: HashMap<PeerId, AppCounters>,
}

/// What happened with a peer, for its application score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEvent {
    /// It answered an alt-sync request with a valid block.
    ValidResponse,
    /// It answered with an error, or not at all.
    ErrorResponse,
    /// It sent a payload we rejected.
    RejectedPayload,
    /// It sent an alt-sync request over the rate limit (counts as half a rejected payload:
    /// honest clients pace themselves to the limit, so only a flood gets here).
    Flood,
}

impl AppScores {
    /// Records an event; returns the peer's new application score.
    pub fn record(&mut self, peer: PeerId, ev: AppEvent) -> f64 {
        let c = self.peers.entry(peer).or_default();
        match ev {
            AppEvent::ValidResponse => c.valid = (c.valid + 1.0).min(app::VALID_CAP),
            AppEvent::ErrorResponse => c.errors = (c.errors + 1.0).min(app::ERROR_CAP),
            AppEvent::RejectedPayload => c.rejected = (c.rejected + 1.0).min(app::REJECTED_CAP),
            AppEvent::Flood => c.rejected = (c.rejected + 0.5).min(app::REJECTED_CAP),
        }
        c.score()
    }

    /// Decays every counter; returns the peers with their new scores.
    pub fn decay(&mut self) -> Vec<(PeerId, f64)> {
        self.peers.retain(|_, c| {
            c.valid *= DECAY;
            c.errors *= DECAY;
            c.rejected *= DECAY;
            c.valid + c.errors + c.rejected > 0.01
        });
        self.peers.iter().map(|(p, c)| (*p, c.score())).collect()
    }

    /// A peer's application score.
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map(AppCounters::score).unwrap_or_default()
    }

    /// Forgets a peer.
    pub fn remove(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_scores_cap_weigh_and_decay() {
        let mut s = AppScores::default();
        let p = PeerId::random();
        for _ in 0..30 {
            s.record(p, AppEvent::ValidResponse);
        }
        assert_eq!(s.score(&p), 5.0, "valid responses cap at 10 x 0.5");
        assert_eq!(s.record(p, AppEvent::RejectedPayload), 5.0 - 20.0);
        for _ in 0..10 {
            s.record(p, AppEvent::RejectedPayload);
        }
        assert!(s.score(&p) < BAN_THRESHOLD, "a handful of rejected payloads bans");
        let before = s.score(&p);
        s.decay();
        assert!(s.score(&p) > before, "decay moves the score back towards zero");
    }

    #[test]
    fn params_are_valid_for_gossipsub() {
        let topics =
            (0..4).map(|i| gossipsub::IdentTopic::new(format!("/optimism/901/{i}/blocks")).hash());
        assert!(peer_score_params(topics).validate().is_ok());
        assert!(thresholds().validate().is_ok());
        assert!(block_topic_params().validate().is_ok());
    }
}
