//! Real libp2p hosts on 127.0.0.1: block gossip across a small mesh, validation verdicts
//! reaching the counters, and a static peer redialled after it restarts with its persisted key.

use alloy_consensus::Block;
use alloy_primitives::B256;
use alloy_signer_local::PrivateKeySigner;
use flashnode_gossip::{codec, spawn, GossipHandle};
use op_alloy_consensus::OpTxEnvelope;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod support;

use support::{config, now, signer, tasks, CHAIN};

fn block(number: u64) -> (Block<OpTxEnvelope>, B256) {
    support::empty_block(number, now(), B256::ZERO, 0)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_until_ok(h: &GossipHandle, signed: codec::SignedBlock) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match h.publish(signed.clone()).await {
            Ok(()) => return,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "publish never succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_cross_a_three_node_mesh_and_bad_ones_are_rejected() {
    let cancel = CancellationToken::new();
    let a = spawn(config(), cancel.clone(), &tasks()).await.unwrap();
    let mut cb = config();
    cb.static_peers = vec![a.listen_addrs[0].clone()];
    let b = spawn(cb, cancel.clone(), &tasks()).await.unwrap();
    let mut cc = config();
    cc.bootnodes = vec![b.listen_addrs[0].clone()];
    let c = spawn(cc, cancel.clone(), &tasks()).await.unwrap();
    let mut b_rx = b.subscribe();
    let mut c_rx = c.subscribe();
    wait_for("a line a-b-c", || {
        a.stats.peers.load(std::sync::atomic::Ordering::Relaxed) >= 1
            && c.stats.peers.load(std::sync::atomic::Ordering::Relaxed) >= 1
    })
    .await;

    let (blk, hash) = block(1);
    let signed = codec::sign_block(&blk, hash, CHAIN, &signer()).unwrap();
    publish_until_ok(&a, signed).await;
    let got_b = tokio::time::timeout(Duration::from_secs(10), b_rx.recv()).await.unwrap().unwrap();
    let got_c = tokio::time::timeout(Duration::from_secs(10), c_rx.recv()).await.unwrap().unwrap();
    assert_eq!(got_b.hash, hash);
    assert_eq!(got_c.hash, hash, "b forwards what it accepted");
    assert_eq!(got_c.version, codec::BlockVersion::V4);

    // A block signed by someone else, sent by a fourth host to b, is rejected by b and never
    // reaches c (the sender gets banned; the honest path a-b-c is unaffected).
    let other: PrivateKeySigner =
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a".parse().unwrap();
    let mut cx = config();
    cx.static_peers = vec![b.listen_addrs[0].clone()];
    let x = spawn(cx, cancel.clone(), &tasks()).await.unwrap();
    let (blk, hash) = block(2);
    publish_until_ok(&x, codec::sign_block(&blk, hash, CHAIN, &other).unwrap()).await;
    wait_for("b rejects", || b.stats.snapshot().rejected >= 1).await;
    let (blk, hash3) = block(3);
    publish_until_ok(&a, codec::sign_block(&blk, hash3, CHAIN, &signer()).unwrap()).await;
    let next = tokio::time::timeout(Duration::from_secs(10), c_rx.recv()).await.unwrap().unwrap();
    assert_eq!(next.hash, hash3, "c saw the valid block 3, never the forged block 2");
    assert_eq!(c.stats.snapshot().rejected, 0);
    assert_eq!(a.stats.snapshot().published, 2);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_peer_is_redialled_after_a_restart_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("opnode_p2p_priv.txt");
    let b_cancel = CancellationToken::new();
    let mut cb = config();
    cb.key_path = Some(key.clone());
    let b = spawn(cb.clone(), b_cancel.clone(), &tasks()).await.unwrap();
    let b_addr = b.listen_addrs[0].clone();
    let cancel = CancellationToken::new();
    let mut ca = config();
    ca.static_peers = vec![b_addr.clone()];
    let a = spawn(ca, cancel.clone(), &tasks()).await.unwrap();
    let peers = |h: &GossipHandle| h.stats.peers.load(std::sync::atomic::Ordering::Relaxed);
    wait_for("a connects to b", || peers(&a) == 1).await;
    b_cancel.cancel();
    drop(b);
    wait_for("a sees b leave", || peers(&a) == 0).await;
    // b comes back on the same port with the key from disk: same peer id, a redials it.
    let mut cb2 = cb;
    cb2.listen = b_addr.iter().take(2).collect();
    let b2_cancel = CancellationToken::new();
    let mut b2 = None;
    for _ in 0..50 {
        match spawn(cb2.clone(), b2_cancel.clone(), &tasks()).await {
            Ok(h) => {
                b2 = Some(h);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let b2 = b2.expect("b restarts on its port");
    assert_eq!(b2.listen_addrs[0], b_addr);
    wait_for("a redials b", || peers(&a) == 1).await;
    b2_cancel.cancel();
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_manager_prunes_to_the_low_water_mark_but_keeps_protected_peers() {
    let cancel = CancellationToken::new();
    let protected = spawn(config(), cancel.clone(), &tasks()).await.unwrap();
    let mut ch = config();
    ch.peers_lo = 2;
    ch.peers_hi = 2;
    ch.peers_grace = Duration::ZERO;
    ch.static_peers = vec![protected.listen_addrs[0].clone()];
    let hub = spawn(ch, cancel.clone(), &tasks()).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..4 {
        let mut c = config();
        c.bootnodes = vec![hub.listen_addrs[0].clone()];
        others.push(spawn(c, cancel.clone(), &tasks()).await.unwrap());
    }
    let peers = |h: &GossipHandle| h.stats.peers.load(std::sync::atomic::Ordering::Relaxed);
    // 5 peers connect; above the high water mark (2) the hub trims to its low water mark (2),
    // keeping the static peer.
    wait_for("trimmed to the low water mark", || peers(&hub) == 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(peers(&hub), 2);
    assert_eq!(peers(&protected), 1, "the protected peer stays connected");
    cancel.cancel();
}
