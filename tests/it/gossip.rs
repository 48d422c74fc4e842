//! Consensus-layer block gossip across processes on 127.0.0.1: `flashnode devnet` signs and
//! publishes every sealed block; three `flashnode node`s in a small mesh (devnet - n1 - n2,
//! n1 - n3 - n2) receive every block, forwarded by their peers; a node that polls its
//! execution client only every 30 s still follows the chain and promotes its
//! preconfirmations, because gossiped blocks drive its canonical tracking.

use alloy_provider::Provider;
use flashnode_tests::{eventually, free_port, start, start_node, status, Proc, Running};
use std::time::Duration;

/// Address of the devnet's dev unsafe-block signer (`DEV_UNSAFE_BLOCK_SIGNER_KEY`).
const DEV_SIGNER: &str = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720";

/// The `p2p: <multiaddr>` line a process prints at start-up.
async fn p2p_addr(r: &Running) -> String {
    let mut found = None;
    let ok = eventually(Duration::from_secs(10), || {
        found = r.proc.output().lines().find_map(|l| l.strip_prefix("p2p: ").map(str::to_string));
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(ok, "no p2p address printed:\n{}", r.proc.output());
    found.unwrap_or_default()
}

async fn gossip(r: &Running) -> serde_json::Value {
    status(&r.rpc).await["gossip"].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_default()
}

async fn node(devnet: &Running, peers: &[&str], extra: &[&str]) -> Running {
    // Port 0: the node prints the address it bound (fewer free-port races with other tests).
    let addr = "127.0.0.1:0".to_string();
    let statics = peers.join(",");
    let mut args =
        vec!["--p2p-addr", &addr, "--p2p-sequencer-address", DEV_SIGNER, "--p2p-static", &statics];
    args.extend_from_slice(extra);
    start_node(&devnet.ws, &devnet.rpc, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_blocks_reach_every_node_of_a_mesh() {
    let devnet_p2p = "127.0.0.1:0".to_string();
    let devnet = start("devnet", &["--block-time", "1s", "--p2p-addr", &devnet_p2p]).await;
    let d = p2p_addr(&devnet).await;
    assert!(
        devnet.proc.output().contains(&format!("p2p unsafe-block signer: {DEV_SIGNER}")),
        "{}",
        devnet.proc.output()
    );

    let n1 = node(&devnet, &[&d], &[]).await;
    let a1 = p2p_addr(&n1).await;
    let n2 = node(&devnet, &[&a1], &[]).await;
    let a2 = p2p_addr(&n2).await;
    // n3 polls its execution client rarely: only gossip can move its tip every second.
    let n3 = node(&devnet, &[&a1, &a2], &["--upstream-poll-interval", "30s"]).await;
    let nodes = [&n1, &n2, &n3];

    // Everyone accepts blocks (n2 and n3 only through n1's and each other's forwarding).
    for (i, r) in nodes.iter().enumerate() {
        let ok =
            eventually(Duration::from_secs(20), || async { n(&gossip(r).await, "accepted") >= 2 })
                .await;
        assert!(ok, "node {} accepted no gossip: {}\n{}", i + 1, gossip(r).await, r.proc.output());
    }
    let before: Vec<serde_json::Value> =
        futures::future::join_all(nodes.iter().map(|r| gossip(r))).await;
    let target = before.iter().map(|g| n(g, "highestBlock")).max().unwrap_or_default() + 4;
    for (i, r) in nodes.iter().enumerate() {
        let ok = eventually(Duration::from_secs(15), || async {
            n(&gossip(r).await, "highestBlock") >= target
        })
        .await;
        assert!(ok, "node {} stalled below {target}: {}", i + 1, gossip(r).await);
    }
    // Give the last block time to settle everywhere, then compare: no block was missed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, r) in nodes.iter().enumerate() {
        let after = gossip(r).await;
        let (b, a) = (&before[i], &after);
        assert_eq!(
            n(a, "accepted") - n(b, "accepted"),
            n(a, "highestBlock") - n(b, "highestBlock"),
            "node {} missed or doubled blocks: {b} -> {a}",
            i + 1
        );
        assert_eq!(n(a, "rejected"), 0, "node {}: {a}", i + 1);
        assert!(n(a, "peers") >= 1);
    }

    // n3's canonical tip follows gossip although it polls its upstream every 30 s, and the
    // preconfirmations it served were promoted against the gossiped blocks.
    let s3 = status(&n3.rpc).await;
    let tip = s3["canonicalTip"].as_u64().unwrap_or_default();
    assert!(tip + 2 >= target, "n3 tip {tip} behind gossip {target}: {s3}");
    let ok = eventually(Duration::from_secs(10), || async {
        status(&n3.rpc).await["promoted"].as_u64().unwrap_or_default() >= 2
    })
    .await;
    assert!(ok, "n3 promoted nothing: {}", status(&n3.rpc).await);

    // A node without any flashblock stream follows the chain from gossip alone.
    let rpc_port = free_port();
    let args: Vec<String> = [
        "node",
        "--upstream-rpc",
        &devnet.rpc,
        "--upstream-poll-interval",
        "30s",
        "--rpc-addr",
        &format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--p2p-addr",
        "127.0.0.1:0",
        "--p2p-sequencer-address",
        DEV_SIGNER,
        "--p2p-static",
        &a1,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n4 = Running {
        proc: Proc::flashnode(&args),
        rpc: format!("http://127.0.0.1:{rpc_port}"),
        ws: String::new(),
    };
    let tip = |s: serde_json::Value| s["canonicalTip"].as_u64().unwrap_or_default();
    let provider = n4.provider();
    let up =
        eventually(Duration::from_secs(15), || async { provider.get_chain_id().await.is_ok() })
            .await;
    assert!(up, "the stream-less node did not answer:\n{}", n4.proc.output());
    let ok = eventually(Duration::from_secs(15), || async { tip(status(&n4.rpc).await) > 0 }).await;
    assert!(ok, "the stream-less node did not start:\n{}", n4.proc.output());
    let first = tip(status(&n4.rpc).await);
    let ok =
        eventually(Duration::from_secs(10), || async { tip(status(&n4.rpc).await) >= first + 3 })
            .await;
    assert!(
        ok,
        "the stream-less node did not follow gossip: {}\n{}",
        status(&n4.rpc).await,
        n4.proc.output()
    );
    assert!(n4.proc.output().contains("none (sealed blocks from p2p gossip only)"));
}

/// Blocks a node misses while it is down.
const KILLED_BLOCKS: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_catches_up_by_altsync_from_its_peers_stores() {
    let devnet_p2p = "127.0.0.1:0".to_string();
    let devnet = start("devnet", &["--block-time", "1s", "--p2p-addr", &devnet_p2p]).await;
    let d = p2p_addr(&devnet).await;
    let n1 = node(&devnet, &[&d], &[]).await;
    let a1 = p2p_addr(&n1).await;
    let dir = std::env::temp_dir().join(format!(
        "flashnode-gossip-{}-{}",
        std::process::id(),
        free_port()
    ));
    let addr = "127.0.0.1:0".to_string();
    let statics = format!("{d},{a1}");
    let data_dir = dir.display().to_string();
    let args = [
        "--p2p-addr",
        &addr,
        "--p2p-sequencer-address",
        DEV_SIGNER,
        "--p2p-static",
        &statics,
        "--p2p-data-dir",
        &data_dir,
    ];
    let mut n2 = start_node(&devnet.ws, &devnet.rpc, &args).await;
    let id_before = p2p_addr(&n2).await;
    let ok =
        eventually(Duration::from_secs(20), || async { n(&gossip(&n2).await, "accepted") >= 2 })
            .await;
    assert!(ok, "n2 accepted no gossip: {}\n{}", gossip(&n2).await, n2.proc.output());
    let at_kill = n(&gossip(&n2).await, "storedHigh");
    n2.proc.kill();

    let ok = eventually(Duration::from_secs(KILLED_BLOCKS + 20), || async {
        n(&gossip(&n1).await, "highestBlock") >= at_kill + KILLED_BLOCKS
    })
    .await;
    assert!(ok, "the chain did not advance while n2 was down: {}", gossip(&n1).await);

    let n2 = start_node(&devnet.ws, &devnet.rpc, &args).await;
    let peer_id = |a: &str| a.rsplit('/').next().unwrap_or_default().to_string();
    assert_eq!(peer_id(&p2p_addr(&n2).await), peer_id(&id_before), "the node key survived kill -9");
    // The first gossiped block reveals the gap; alt-sync fills it from the devnet's and n1's
    // stores, and the store is contiguous from before the kill to the tip.
    let ok = eventually(Duration::from_secs(30), || async {
        let g = gossip(&n2).await;
        n(&g, "altsyncFilled") >= KILLED_BLOCKS - 1
            && n(&g, "altsyncMissing") == 0
            && n(&g, "storedCount") == n(&g, "storedHigh") - n(&g, "storedLow") + 1
            && n(&g, "storedLow") <= at_kill
    })
    .await;
    assert!(ok, "n2 did not catch up: {}\n{}", gossip(&n2).await, n2.proc.output());
    // ...then it follows gossip again.
    let high = n(&gossip(&n2).await, "highestBlock");
    let ok = eventually(Duration::from_secs(10), || async {
        n(&gossip(&n2).await, "highestBlock") >= high + 2
    })
    .await;
    assert!(ok, "n2 stopped following gossip: {}", gossip(&n2).await);
    let g = gossip(&n2).await;
    assert_eq!(n(&g, "storedCount"), n(&g, "storedHigh") - n(&g, "storedLow") + 1, "no holes: {g}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opp2p_admin_namespace_and_gossip_metrics() {
    use flashnode_tests::{metric, raw_rpc, scrape};
    let devnet_p2p = "127.0.0.1:0".to_string();
    let devnet = start("devnet", &["--block-time", "1s", "--p2p-addr", &devnet_p2p]).await;
    let d = p2p_addr(&devnet).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let n1 = node(&devnet, &[&d], &["--metrics-addr", &metrics_addr]).await;
    let a1 = p2p_addr(&n1).await;
    let n2 = node(&devnet, &[&a1], &[]).await;
    let id2 = p2p_addr(&n2).await.rsplit('/').next().unwrap_or_default().to_string();
    let call = |m: &'static str, p: serde_json::Value| {
        let rpc = n1.rpc.clone();
        async move { raw_rpc(&rpc, m, p).await }
    };

    let me = call("opp2p_self", serde_json::json!([])).await;
    assert!(a1.ends_with(me["result"]["peerID"].as_str().unwrap_or("?")), "{me}");
    assert_eq!(me["result"]["chainID"], 901);
    let ok = eventually(Duration::from_secs(15), || async {
        call("opp2p_peers", serde_json::json!([true])).await["result"]["totalConnected"].as_u64()
            == Some(2)
    })
    .await;
    assert!(
        ok,
        "n1 should see the devnet and n2: {}",
        call("opp2p_peers", serde_json::json!([true])).await
    );
    let peers = call("opp2p_peers", serde_json::json!([true])).await;
    let p2 = &peers["result"]["peers"][&id2];
    assert_eq!(p2["connectedness"], "connected", "{peers}");
    assert_eq!(p2["direction"], "inbound", "{peers}");
    let stats = call("opp2p_peerStats", serde_json::json!([])).await;
    assert_eq!(stats["result"]["connected"], 2, "{stats}");
    assert!(stats["result"]["blocksTopicV4"].as_u64().unwrap_or_default() >= 1, "{stats}");

    // Block n2: it is disconnected, listed, and stays out until unblocked.
    assert!(call("opp2p_blockPeer", serde_json::json!([id2])).await["error"].is_null());
    let listed = call("opp2p_listBlockedPeers", serde_json::json!([])).await;
    assert_eq!(listed["result"], serde_json::json!([id2]), "{listed}");
    let ok =
        eventually(Duration::from_secs(5), || async { n(&gossip(&n2).await, "peers") == 0 }).await;
    assert!(ok, "n2 still connected: {}", gossip(&n2).await);
    assert!(call("opp2p_unblockPeer", serde_json::json!([id2])).await["error"].is_null());
    let ok =
        eventually(Duration::from_secs(15), || async { n(&gossip(&n2).await, "peers") == 1 }).await;
    assert!(ok, "n2 did not come back after the unblock: {}", gossip(&n2).await);
    assert!(call("opp2p_protectPeer", serde_json::json!([id2])).await["error"].is_null());
    let peers = call("opp2p_peers", serde_json::json!([true])).await;
    assert_eq!(peers["result"]["peers"][&id2]["protected"], true, "{peers}");
    assert!(call("opp2p_blockAddr", serde_json::json!(["10.1.2.3"])).await["error"].is_null());
    assert_eq!(
        call("opp2p_listBlockedAddrs", serde_json::json!([])).await["result"],
        serde_json::json!(["10.1.2.3"])
    );
    assert!(call("opp2p_unblockAddr", serde_json::json!(["10.1.2.3"])).await["error"].is_null());
    assert_eq!(
        call("opp2p_listBlockedAddrs", serde_json::json!([])).await["result"],
        serde_json::json!([])
    );
    // Blocking 127.0.0.0/8 drops every loopback peer; unblocking lets the static ones back.
    assert!(call("opp2p_blockSubnet", serde_json::json!(["127.0.0.0/8"])).await["error"].is_null());
    assert_eq!(
        call("opp2p_listBlockedSubnets", serde_json::json!([])).await["result"],
        serde_json::json!(["127.0.0.0/8"])
    );
    let ok =
        eventually(Duration::from_secs(5), || async { n(&gossip(&n1).await, "peers") == 0 }).await;
    assert!(ok, "loopback peers still connected: {}", gossip(&n1).await);
    assert!(
        call("opp2p_unblockSubnet", serde_json::json!(["127.0.0.0/8"])).await["error"].is_null()
    );
    let ok =
        eventually(Duration::from_secs(15), || async { n(&gossip(&n1).await, "peers") >= 1 }).await;
    assert!(ok, "peers did not come back: {}", gossip(&n1).await);
    assert_eq!(
        call("opp2p_blockSubnet", serde_json::json!(["127.0.0.0"])).await["error"]["code"],
        -32602
    );
    let bad = call("opp2p_blockPeer", serde_json::json!(["not-a-peer-id"])).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    // The dashboard's metrics.
    let ok = eventually(Duration::from_secs(10), || async {
        let page = scrape(&metrics_addr).await;
        metric(&page, "flashnode_gossip_messages_total", &[("outcome", "accept")]) >= 2.0
            && metric(&page, "flashnode_gossip_peers", &[]) >= 1.0
    })
    .await;
    assert!(ok, "metrics missing:\n{}", scrape(&metrics_addr).await);
    let page = scrape(&metrics_addr).await;
    assert!(metric(&page, "flashnode_gossip_bans_total", &[]) >= 1.0, "the admin ban is counted");
}

/// The node's peer id from `opp2p_self`.
async fn self_id(r: &Running) -> String {
    let me = flashnode_tests::raw_rpc(&r.rpc, "opp2p_self", serde_json::json!([])).await;
    me["result"]["peerID"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_key_and_blocks_survive_kill_9() {
    use flashnode_tests::{metric, raw_rpc, scrape};
    let devnet = start("devnet", &["--block-time", "1s"]).await;
    let dir = std::env::temp_dir().join(format!(
        "flashnode-restart-{}-{}",
        std::process::id(),
        free_port()
    ));
    let data_dir = dir.display().to_string();
    // A fixed port, so the peer below can redial the restarted node at the same address.
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let args = [
        "--p2p-addr",
        &addr,
        "--p2p-sequencer-address",
        DEV_SIGNER,
        "--p2p-data-dir",
        &data_dir,
        "--metrics-addr",
        &metrics_addr,
    ];
    let mut n1 = start_node(&devnet.ws, &devnet.rpc, &args).await;
    let id = self_id(&n1).await;
    assert!(id.starts_with("16Uiu2"), "a secp256k1 peer id: {id}");
    let a1 = p2p_addr(&n1).await;
    // A peer that keeps dialling n1 (n1 is its static peer).
    let m = node(&devnet, &[&a1], &[]).await;
    let m_id = self_id(&m).await;
    let ok =
        eventually(Duration::from_secs(15), || async { n(&gossip(&n1).await, "peers") == 1 }).await;
    assert!(ok, "m did not connect: {}", gossip(&n1).await);

    let call = |rpc: String, method: &'static str, p: serde_json::Value| async move {
        raw_rpc(&rpc, method, p).await
    };
    assert!(
        call(n1.rpc.clone(), "opp2p_blockPeer", serde_json::json!([m_id])).await["error"].is_null()
    );
    assert!(call(n1.rpc.clone(), "opp2p_blockAddr", serde_json::json!(["10.1.2.3"])).await
        ["error"]
        .is_null());
    assert!(call(n1.rpc.clone(), "opp2p_blockSubnet", serde_json::json!(["10.9.0.0/16"])).await
        ["error"]
        .is_null());
    let ok =
        eventually(Duration::from_secs(5), || async { n(&gossip(&m).await, "peers") == 0 }).await;
    assert!(ok, "the banned peer is still connected: {}", gossip(&m).await);
    n1.proc.kill();

    // Same data dir: same key, same blocks.
    let n1 = {
        let mut restarted = None;
        for _ in 0..20 {
            let r = start_node(&devnet.ws, &devnet.rpc, &args).await;
            let ok = eventually(Duration::from_secs(3), || async { !self_id(&r).await.is_empty() })
                .await;
            if ok {
                restarted = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        restarted.expect("n1 restarts")
    };
    assert_eq!(self_id(&n1).await, id, "the node key survived kill -9");
    let listed = call(n1.rpc.clone(), "opp2p_listBlockedPeers", serde_json::json!([])).await;
    assert_eq!(listed["result"], serde_json::json!([m_id]), "{listed}");
    let ips = call(n1.rpc.clone(), "opp2p_listBlockedAddrs", serde_json::json!([])).await;
    assert_eq!(ips["result"], serde_json::json!(["10.1.2.3"]), "{ips}");
    let nets = call(n1.rpc.clone(), "opp2p_listBlockedSubnets", serde_json::json!([])).await;
    assert_eq!(nets["result"], serde_json::json!(["10.9.0.0/16"]), "{nets}");
    // The banned peer keeps redialling; the gate refuses it at the handshake.
    let ok = eventually(Duration::from_secs(20), || async {
        metric(
            &scrape(&metrics_addr).await,
            "flashnode_gossip_gated_total",
            &[("reason", "peer"), ("direction", "inbound")],
        ) >= 1.0
    })
    .await;
    assert!(ok, "no gated dial:\n{}\n{}", scrape(&metrics_addr).await, n1.proc.output());
    assert_eq!(n(&gossip(&n1).await, "peers"), 0, "{}", gossip(&n1).await);
    assert_eq!(n(&gossip(&m).await, "peers"), 0, "{}", gossip(&m).await);
    // Lifting the ban lets it in: the refusal was the ban.
    assert!(call(n1.rpc.clone(), "opp2p_unblockPeer", serde_json::json!([m_id])).await["error"]
        .is_null());
    let ok =
        eventually(Duration::from_secs(30), || async { n(&gossip(&n1).await, "peers") == 1 }).await;
    assert!(
        ok,
        "m did not come back after the unblock: {}\n{}",
        gossip(&n1).await,
        m.proc.output()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// discv5's node table survives a kill -9: restarted with no bootnode and no static peer, a node
/// dials the nodes it had found before and is back in its network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_bootnodes_finds_its_network_from_the_stored_node_table() {
    use flashnode_tests::{metric, scrape};
    let devnet = start("devnet", &["--block-time", "1s"]).await;
    let fast = ["--p2p-discovery-interval", "200ms"];
    let a = node(&devnet, &[], &fast).await;
    let enr = p2p_enr(&a).await;
    let c = node(&devnet, &[], &["--p2p-bootnodes", enr.as_str(), fast[0], fast[1]]).await;
    let (id_a, id_c) = (self_id(&a).await, self_id(&c).await);
    let dir = std::env::temp_dir().join(format!(
        "flashnode-nodetable-{}-{}",
        std::process::id(),
        free_port()
    ));
    let data_dir = dir.display().to_string();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let b_args = |with_boot: bool, metrics_addr: &str| {
        let mut v: Vec<String> =
            ["--p2p-data-dir", &data_dir, "--metrics-addr", metrics_addr, fast[0], fast[1]]
                .map(String::from)
                .to_vec();
        if with_boot {
            v.extend(["--p2p-bootnodes".to_string(), enr.clone()]);
        }
        v
    };
    let first = b_args(true, &metrics_addr);
    let mut b = node(&devnet, &[], &first.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let connected = |rpc: String, id: String| async move {
        flashnode_tests::raw_rpc(&rpc, "opp2p_peers", serde_json::json!([true])).await["result"]
            ["peers"][&id]["connectedness"]
            == "connected"
    };
    // b found c through a, and has written both down (flushed every 5 s).
    let ok = eventually(Duration::from_secs(30), || async {
        connected(b.rpc.clone(), id_c.clone()).await
            && metric(
                &scrape(&metrics_addr).await,
                "flashnode_gossip_discovery_nodes_stored_total",
                &[],
            ) >= 2.0
    })
    .await;
    assert!(
        ok,
        "b did not find and store c: {}\n{}\n{}",
        gossip(&b).await,
        scrape(&metrics_addr).await,
        b.proc.output()
    );
    b.proc.kill();

    // No bootnode, no static peer: only the store knows a and c.
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let second = b_args(false, &metrics_addr);
    let b = node(&devnet, &[], &second.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let ok = eventually(Duration::from_secs(30), || async {
        connected(b.rpc.clone(), id_a.clone()).await && connected(b.rpc.clone(), id_c.clone()).await
    })
    .await;
    assert!(
        ok,
        "the restarted b did not find a and c again: {}\n{}",
        gossip(&b).await,
        b.proc.output()
    );
    let restored =
        metric(&scrape(&metrics_addr).await, "flashnode_gossip_discovery_nodes_restored", &[]);
    assert!(restored >= 2.0, "restored {restored} nodes:\n{}", b.proc.output());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_addresses_and_subnets_are_refused_before_connecting_until_lifted_or_expired() {
    use flashnode_tests::{metric, raw_rpc, scrape};
    let devnet_p2p = "127.0.0.1:0".to_string();
    let devnet = start("devnet", &["--block-time", "1s", "--p2p-addr", &devnet_p2p]).await;
    let d = p2p_addr(&devnet).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let a = node(&devnet, &[&d], &["--metrics-addr", &metrics_addr]).await;
    let a_addr = p2p_addr(&a).await;
    let ok =
        eventually(Duration::from_secs(15), || async { n(&gossip(&a).await, "peers") == 1 }).await;
    assert!(ok, "a did not reach the devnet: {}", gossip(&a).await);
    let call = |m: &'static str, p: serde_json::Value| {
        let rpc = a.rpc.clone();
        async move { raw_rpc(&rpc, m, p).await }
    };
    let gated = |reason: &'static str, direction: &'static str| {
        let addr = metrics_addr.clone();
        async move {
            metric(
                &scrape(&addr).await,
                "flashnode_gossip_gated_total",
                &[("reason", reason), ("direction", direction)],
            )
        }
    };

    // Block 127.0.0.1: the devnet link drops and a's own redials are refused before dialling.
    assert!(call("opp2p_blockAddr", serde_json::json!(["127.0.0.1"])).await["error"].is_null());
    let ok =
        eventually(Duration::from_secs(5), || async { n(&gossip(&a).await, "peers") == 0 }).await;
    assert!(ok, "a kept its peer: {}", gossip(&a).await);
    let ok = eventually(Duration::from_secs(10), || async { gated("ip", "outbound").await >= 1.0 })
        .await;
    assert!(ok, "a's redial was not gated:\n{}", scrape(&metrics_addr).await);
    // A new node dialling a is refused as soon as its address is seen.
    let b = node(&devnet, &[&a_addr], &[]).await;
    let ok =
        eventually(Duration::from_secs(10), || async { gated("ip", "inbound").await >= 1.0 }).await;
    assert!(ok, "b's dial was not gated:\n{}", scrape(&metrics_addr).await);
    assert_eq!(n(&gossip(&b).await, "peers"), 0, "b got through: {}", gossip(&b).await);
    assert_eq!(n(&gossip(&a).await, "peers"), 0);
    // Unblocked: a and b peer, and a is back with the devnet.
    assert!(call("opp2p_unblockAddr", serde_json::json!(["127.0.0.1"])).await["error"].is_null());
    let ok =
        eventually(Duration::from_secs(20), || async { n(&gossip(&a).await, "peers") == 2 }).await;
    assert!(ok, "a did not get its peers back: {}", gossip(&a).await);

    // A subnet block with a 2 s expiry: peers drop, then come back by themselves.
    assert!(
        call("opp2p_blockSubnet", serde_json::json!(["127.0.0.0/8", 2])).await["error"].is_null()
    );
    assert_eq!(
        call("opp2p_listBlockedSubnets", serde_json::json!([])).await["result"],
        serde_json::json!(["127.0.0.0/8"])
    );
    let ok =
        eventually(Duration::from_secs(5), || async { n(&gossip(&a).await, "peers") == 0 }).await;
    assert!(ok, "the subnet block did not drop a's peers: {}", gossip(&a).await);
    let ok = eventually(Duration::from_secs(20), || async {
        n(&gossip(&a).await, "peers") == 2
            && call("opp2p_listBlockedSubnets", serde_json::json!([])).await["result"]
                == serde_json::json!([])
    })
    .await;
    assert!(ok, "the subnet block did not expire: {}", gossip(&a).await);
    assert!(
        gated("subnet", "outbound").await + gated("subnet", "inbound").await >= 1.0,
        "{}",
        scrape(&metrics_addr).await
    );
    let bad = call("opp2p_blockAddr", serde_json::json!(["127.0.0.1", "soon"])).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
}

/// The `p2p enr: enr:...` line a process prints when discovery runs.
async fn p2p_enr(r: &Running) -> String {
    let mut found = None;
    let ok = eventually(Duration::from_secs(10), || {
        found =
            r.proc.output().lines().find_map(|l| l.strip_prefix("p2p enr: ").map(str::to_string));
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(ok, "no ENR printed:\n{}", r.proc.output());
    found.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_know_only_a_bootnode_record_find_each_other_by_discv5() {
    let devnet = start("devnet", &["--block-time", "1s"]).await;
    let fast = ["--p2p-discovery-interval", "200ms"];
    let a = node(&devnet, &[], &fast).await;
    let enr = p2p_enr(&a).await;
    let me = flashnode_tests::raw_rpc(&a.rpc, "opp2p_self", serde_json::json!([])).await;
    assert_eq!(me["result"]["ENR"], enr.as_str(), "{me}");
    let node_id = me["result"]["nodeID"].as_str().unwrap_or_default();
    assert!(node_id.len() == 64 && node_id.chars().all(|c| c.is_ascii_hexdigit()), "{me}");
    // b and c: no static peers, only a's record as a bootnode.
    let mut with_boot = vec!["--p2p-bootnodes", enr.as_str()];
    with_boot.extend_from_slice(&fast);
    let b = node(&devnet, &[], &with_boot).await;
    let c = node(&devnet, &[], &with_boot).await;
    let (id_b, id_c) = (self_id(&b).await, self_id(&c).await);
    let ok = eventually(Duration::from_secs(20), || async {
        let peers =
            flashnode_tests::raw_rpc(&b.rpc, "opp2p_peers", serde_json::json!([true])).await;
        peers["result"]["peers"][&id_c]["connectedness"] == "connected"
    })
    .await;
    assert!(ok, "b never connected to c: {}\n{}", gossip(&b).await, b.proc.output());
    let g = gossip(&c).await;
    assert!(n(&g, "discovered") >= 1, "{g}");
    assert_eq!(n(&g, "discoveredOtherChain"), 0, "{g}");
    let peers = flashnode_tests::raw_rpc(&c.rpc, "opp2p_peers", serde_json::json!([true])).await;
    assert_eq!(peers["result"]["peers"][&id_b]["connectedness"], "connected", "{peers}");
    // The flag turns it off: no record, no UDP socket.
    let quiet = node(&devnet, &[], &["--p2p-no-discovery"]).await;
    let me = flashnode_tests::raw_rpc(&quiet.rpc, "opp2p_self", serde_json::json!([])).await;
    assert_eq!(me["result"]["ENR"], "", "{me}");
}
