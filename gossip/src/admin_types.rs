//! The shapes of the `opp2p_` admin API (op-node's JSON field names and strings): a peer, its
//! scores, connectedness and direction, and the peer counts. They are built without the
//! `swarm` feature, so the rpc crate serves them as they are without linking libp2p; the host
//! fills them in.

use serde::Serialize;

/// Whether a peer is connected (op-node's `network.Connectedness` strings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Connectedness {
    /// `notConnected`.
    #[default]
    NotConnected,
    /// `connected`: at least one open connection.
    Connected,
}

impl Connectedness {
    /// The string op-node shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::NotConnected => "notConnected",
        }
    }
}

/// Who opened a peer's connection (op-node's `network.Direction` strings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Not connected, or not known.
    #[default]
    Unknown,
    /// The peer dialled us.
    Inbound,
    /// We dialled the peer.
    Outbound,
}

impl Direction {
    /// The string op-node shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Unknown => "unknown",
        }
    }
}

/// A peer's scores; both absent for the node itself (`opp2p_self` answers `"scores": {}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PeerScores {
    /// Total gossipsub score (with the application score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip: Option<f64>,
    /// Application score (alt-sync answers, rejected payloads, floods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<f64>,
}

/// One peer, or the node itself, as the `opp2p_` admin API shows it (op-node `p2p.PeerInfo`,
/// trimmed to what this host knows): `opp2p_self` and the values of `opp2p_peers`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// Peer id.
    #[serde(rename = "peerID")]
    pub peer_id: String,
    /// discv5 node id (hex); only the node itself reports one.
    #[serde(rename = "nodeID", skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Agent version from identify.
    pub user_agent: String,
    /// Protocol version from identify.
    pub protocol_version: String,
    /// The node's ENR (empty without discovery); only the node itself reports one.
    #[serde(rename = "ENR", skip_serializing_if = "Option::is_none")]
    pub enr: Option<String>,
    /// Known addresses.
    pub addresses: Vec<String>,
    /// Protocols from identify.
    pub protocols: Vec<String>,
    /// Connected or not.
    pub connectedness: Connectedness,
    /// Who dialled.
    pub direction: Direction,
    /// A static (protected) peer.
    pub protected: bool,
    /// L2 chain id.
    #[serde(rename = "chainID")]
    pub chain_id: u64,
    /// Latest ping round trip, nanoseconds.
    pub latency: u64,
    /// Whether it is subscribed to a blocks topic.
    pub gossip_blocks: bool,
    /// Scores.
    pub scores: PeerScores,
}

/// Counts like op-node's `opp2p_peerStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStats {
    /// Connected peers.
    pub connected: u64,
    /// Known peers (connected, static, identified).
    pub table: u64,
    /// Peers on the v1 blocks topic.
    pub blocks_topic: u64,
    /// Peers on the v2 blocks topic.
    #[serde(rename = "blocksTopicV2")]
    pub blocks_topic_v2: u64,
    /// Peers on the v3 blocks topic.
    #[serde(rename = "blocksTopicV3")]
    pub blocks_topic_v3: u64,
    /// Peers on the v4 blocks topic.
    #[serde(rename = "blocksTopicV4")]
    pub blocks_topic_v4: u64,
    /// Banned peers.
    pub banned: u64,
    /// Peers known to the host.
    pub known: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peer_info_serialises_in_op_nodes_shape() {
        let info = PeerInfo {
            peer_id: "16Uiu2".into(),
            user_agent: "flashnode/0".into(),
            protocol_version: "optimism".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/1".into()],
            protocols: vec![],
            connectedness: Connectedness::NotConnected,
            direction: Direction::Inbound,
            protected: true,
            chain_id: 901,
            latency: 5,
            gossip_blocks: false,
            scores: PeerScores { gossip: Some(-1.0), app: Some(0.5) },
            ..Default::default()
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            json!({
                "peerID": "16Uiu2",
                "userAgent": "flashnode/0",
                "protocolVersion": "optimism",
                "addresses": ["/ip4/127.0.0.1/tcp/1"],
                "protocols": [],
                "connectedness": "notConnected",
                "direction": "inbound",
                "protected": true,
                "chainID": 901,
                "latency": 5,
                "gossipBlocks": false,
                "scores": {"gossip": -1.0, "app": 0.5},
            })
        );
        // The node itself has a node id and an ENR (empty without discovery), no scores.
        let me = PeerInfo {
            node_id: Some("ab".into()),
            enr: Some(String::new()),
            scores: PeerScores::default(),
            ..info
        };
        let me = serde_json::to_value(me).unwrap();
        assert_eq!(me["nodeID"], "ab");
        assert_eq!(me["ENR"], "");
        assert_eq!(me["scores"], json!({}));
        // The labels are the serialised strings.
        for c in [Connectedness::Connected, Connectedness::NotConnected] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.label());
        }
        for d in [Direction::Inbound, Direction::Outbound, Direction::Unknown] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.label());
        }
    }

    #[test]
    fn peer_stats_serialise_with_op_nodes_topic_names() {
        let json =
            serde_json::to_value(PeerStats { blocks_topic_v4: 2, ..Default::default() }).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["connected", "table", "blocksTopic", "blocksTopicV2", "blocksTopicV3", "banned"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        assert_eq!(json["blocksTopicV4"], 2);
        assert_eq!(json["known"], 0);
    }
}
