//! discv5 discovery and connection gating between real hosts on 127.0.0.1 (UDP for discv5,
//! TCP for libp2p): nodes that know only a bootnode's ENR find each other and connect; a node
//! whose `opstack` entry names another chain is discovered but never dialled; a blocked
//! subnet refuses outbound dials until the block expires.

use flashnode_gossip::{
    enr_peer_id, spawn, DiscoveryConfig, Enr, GossipConfig, GossipHandle, OpStackEnr, PeerId,
    Subnet,
};
use std::{sync::atomic::Ordering, time::Duration};
use tokio_util::sync::CancellationToken;

mod support;

use support::{config, tasks, CHAIN};

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A host on `chain` with discv5 on an ephemeral UDP port, fast lookups, and `boot` as its
/// only bootnode record (no TCP bootnodes, no static peers).
fn discovering(chain: u64, boot: Option<&str>) -> GossipConfig {
    let mut c = config();
    c.chain_id = chain;
    let mut d = DiscoveryConfig::new("127.0.0.1:0".parse().unwrap());
    d.interval = Duration::from_millis(200);
    d.bootnodes = boot.map(|b| vec![b.parse().unwrap()]).unwrap_or_default();
    c.discovery = Some(d);
    c
}

async fn connected(h: &GossipHandle) -> Vec<PeerId> {
    h.peers(true).await.unwrap().iter().filter_map(|p| p.peer_id.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_from_a_bootnode_record_and_other_chains_are_not_dialled() {
    let cancel = CancellationToken::new();
    let a = spawn(discovering(CHAIN, None), cancel.clone(), &tasks()).await.unwrap();
    let a_enr = a.enr.clone().expect("a's record");
    let record: Enr = a_enr.parse().unwrap();
    assert_eq!(OpStackEnr::of(&record), Some(Ok(OpStackEnr::new(CHAIN))), "a advertises its chain");
    assert_eq!(enr_peer_id(&record), Some(a.peer_id), "same key as libp2p");
    // The other chain's node joins first, so every lookup afterwards can meet it.
    let other =
        spawn(discovering(CHAIN + 1, Some(&a_enr)), cancel.clone(), &tasks()).await.unwrap();
    let b = spawn(discovering(CHAIN, Some(&a_enr)), cancel.clone(), &tasks()).await.unwrap();
    let c = spawn(discovering(CHAIN, Some(&a_enr)), cancel.clone(), &tasks()).await.unwrap();

    // b and c knew only a's record: they find each other through a's table and connect.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (pb, pc) = (connected(&b).await, connected(&c).await);
        if pb.contains(&c.peer_id) && pc.contains(&b.peer_id) && pb.contains(&a.peer_id) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b {pb:?} / c {pc:?} did not find each other"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No static peers anywhere: both of b's connections were dialled from discovery, by b or
    // by the other end (which side dials first is a race).
    let dials: u64 =
        [&a, &b, &c].iter().map(|h| h.stats.discovery_dials.load(Ordering::Relaxed)).sum();
    assert!(dials >= 2, "{dials} discovery dials for b's two connections");

    // The other chain's node was discovered (it talked to a) but nobody dialled it, and it
    // dialled nobody (a is of another chain for it).
    wait_for("a discovers the other chain's node", || {
        a.stats.discovered_other_chain.load(Ordering::Relaxed) >= 1
    })
    .await;
    wait_for("the other node discovers a", || {
        other.stats.discovered_other_chain.load(Ordering::Relaxed) >= 1
    })
    .await;
    for h in [&a, &b, &c] {
        assert!(
            !connected(h).await.contains(&other.peer_id),
            "{} dialled the other chain's node",
            h.peer_id
        );
    }
    assert!(connected(&other).await.is_empty());
    assert_eq!(other.stats.discovery_dials.load(Ordering::Relaxed), 0);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_dials_no_further_than_the_high_water_mark() {
    let cancel = CancellationToken::new();
    // Two same-chain nodes that only answer (high-water mark 0: they look up and dial nobody).
    let quiet = || {
        let mut c = discovering(CHAIN, None);
        c.peers_lo = 0;
        c.peers_hi = 0;
        c
    };
    let a = spawn(quiet(), cancel.clone(), &tasks()).await.unwrap();
    let c = spawn(quiet(), cancel.clone(), &tasks()).await.unwrap();
    // b wants one peer and knows both records: it meets both in its first lookup.
    let mut cb = discovering(CHAIN, None);
    cb.peers_lo = 1;
    cb.peers_hi = 1;
    cb.discovery.as_mut().unwrap().bootnodes =
        [&a, &c].iter().map(|h| h.enr.clone().unwrap().parse().unwrap()).collect();
    let b = spawn(cb, cancel.clone(), &tasks()).await.unwrap();
    wait_for("b turns a discovered node away at its high-water mark", || {
        b.stats.discovery_full.load(Ordering::Relaxed) >= 1
    })
    .await;
    wait_for("b connects to one", || b.stats.peers.load(Ordering::Relaxed) == 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        b.stats.discovery_dials.load(Ordering::Relaxed),
        1,
        "b dialled past its high-water mark"
    );
    assert_eq!(b.stats.peers.load(Ordering::Relaxed), 1);
    assert_eq!(
        a.stats.discovery_dials.load(Ordering::Relaxed)
            + c.stats.discovery_dials.load(Ordering::Relaxed),
        0
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_subnet_refuses_outbound_dials_until_it_expires() {
    let cancel = CancellationToken::new();
    let b = spawn(config(), cancel.clone(), &tasks()).await.unwrap();
    let mut ca = config();
    ca.static_peers = vec![b.listen_addrs[0].clone()];
    ca.redial_max = Duration::from_millis(500);
    let a = spawn(ca, cancel.clone(), &tasks()).await.unwrap();
    let peers = |h: &GossipHandle| h.stats.peers.load(Ordering::Relaxed);
    wait_for("a connects to b", || peers(&a) == 1).await;

    // A 3 s block of loopback on a: the connection drops and a's redials are refused.
    let net: Subnet = "127.0.0.0/8".parse().unwrap();
    a.block_subnet(net, Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(a.blocked_subnets().await.unwrap(), vec![net]);
    wait_for("a drops b", || peers(&a) == 0 && peers(&b) == 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(peers(&a), 0, "a redialled through the block");
    // The block expires by itself; the static peer is redialled.
    wait_for("the block expires and a reconnects", || peers(&a) == 1).await;
    assert!(a.blocked_subnets().await.unwrap().is_empty());
    // A block without expiry (0) stays until lifted.
    a.block_addr("127.0.0.1".parse().unwrap(), Some(Duration::ZERO)).await.unwrap();
    wait_for("a drops b again", || peers(&a) == 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(peers(&a), 0);
    a.unblock_addr("127.0.0.1".parse().unwrap()).await.unwrap();
    wait_for("a reconnects after the unblock", || peers(&a) == 1).await;
    cancel.cancel();
}
