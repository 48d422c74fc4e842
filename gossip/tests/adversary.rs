//! Adversarial peers against a real host on 127.0.0.1: invalid signatures, wrong block hashes,
//! stale timestamps, oversized (decompression bomb) messages, more than five blocks at one
//! height, and a `payload_by_number` flood. Each is rejected or rate-limited, the sender's
//! score drops below the ban threshold and it is banned (the ban survives a restart), while
//! the honest publisher and an honest peer keep exchanging blocks.

use alloy_consensus::Block;
use alloy_primitives::B256;
use alloy_signer_local::PrivateKeySigner;
use flashnode_gossip::{altsync::PayloadResponse, codec, spawn, GossipHandle, PeerId};
use op_alloy_consensus::OpTxEnvelope;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod support;

use support::{config, now, signer, tasks, CHAIN};

fn block(number: u64, timestamp: u64, salt: u8) -> (Block<OpTxEnvelope>, B256) {
    support::empty_block(number, timestamp, B256::ZERO, salt)
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish(h: &GossipHandle, signed: codec::SignedBlock) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Err(e) = h.publish(signed.clone()).await {
        assert!(tokio::time::Instant::now() < deadline, "publish never succeeded: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn adversary(victim: &GossipHandle, cancel: &CancellationToken) -> GossipHandle {
    let mut c = config();
    c.static_peers = vec![victim.listen_addrs[0].clone()];
    let x = spawn(c, cancel.clone(), &tasks()).await.unwrap();
    let peers = |h: &GossipHandle| h.stats.peers.load(std::sync::atomic::Ordering::Relaxed);
    wait_for("adversary connects", 15, || async { peers(&x) >= 1 }).await;
    x
}

async fn banned(v: &GossipHandle, x: &GossipHandle) -> bool {
    v.blocked_peers().await.unwrap().contains(&x.peer_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_are_rejected_scored_down_and_banned() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let v_cancel = CancellationToken::new();
    let mut cv = config();
    cv.store_path = Some(dir.path().join("p2p.redb"));
    cv.key_path = Some(dir.path().join("key"));
    let v = spawn(cv.clone(), v_cancel.clone(), &tasks()).await.unwrap();
    // The honest sequencer and an honest follower.
    let mut ca = config();
    ca.static_peers = vec![v.listen_addrs[0].clone()];
    let a = spawn(ca, cancel.clone(), &tasks()).await.unwrap();
    let mut ch = config();
    ch.static_peers = vec![v.listen_addrs[0].clone()];
    let h = spawn(ch, cancel.clone(), &tasks()).await.unwrap();
    let mut h_rx = h.subscribe();
    // Both honest peers connected and subscriptions exchanged before the first block.
    wait_for("a and h connect to v", 15, || async {
        v.stats.peers.load(std::sync::atomic::Ordering::Relaxed) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b, hash) = block(1, now(), 0);
    publish(&a, codec::sign_block(&b, hash, CHAIN, &signer()).unwrap()).await;
    let got = tokio::time::timeout(Duration::from_secs(10), h_rx.recv()).await.unwrap().unwrap();
    assert_eq!(got.hash, hash, "honest block relayed a -> v -> h");

    let forger: PrivateKeySigner =
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a".parse().unwrap();
    let mut adversaries = Vec::new();

    // 1. Invalid signature.
    let x = adversary(&v, &cancel).await;
    let (b, hash) = block(2, now(), 1);
    publish(&x, codec::sign_block(&b, hash, CHAIN, &forger).unwrap()).await;
    adversaries.push(("signature", x));
    // 2. Wrong block hash.
    let x = adversary(&v, &cancel).await;
    let (b, _) = block(3, now(), 2);
    publish(&x, codec::sign_block(&b, B256::repeat_byte(9), CHAIN, &signer()).unwrap()).await;
    adversaries.push(("block_hash", x));
    // 3. Stale timestamp.
    let x = adversary(&v, &cancel).await;
    let (b, hash) = block(4, now() - 120, 3);
    publish(&x, codec::sign_block(&b, hash, CHAIN, &signer()).unwrap()).await;
    adversaries.push(("too_old", x));
    // 4. Oversized: a snappy bomb announcing 11 MiB.
    let x = adversary(&v, &cancel).await;
    let (b, hash) = block(5, now(), 4);
    let mut bomb = codec::sign_block(&b, hash, CHAIN, &signer()).unwrap();
    bomb.wire = snap::raw::Encoder::new().compress_vec(&vec![0u8; 11 << 20]).unwrap();
    publish(&x, bomb).await;
    adversaries.push(("too_large", x));
    // 5. Six validly signed blocks at one height (an equivocating sequencer, replayed).
    let x = adversary(&v, &cancel).await;
    for salt in 0..6u8 {
        let (b, hash) = block(6, now(), 10 + salt);
        publish(&x, codec::sign_block(&b, hash, CHAIN, &signer()).unwrap()).await;
    }
    adversaries.push(("too_many_at_height", x));
    // 6. A payload_by_number flood.
    let x = adversary(&v, &cancel).await;
    let reqs = (0..60).map(|_| x.request_payload(v.peer_id, 1));
    let answers = futures::future::join_all(reqs).await;
    let served = answers.iter().filter(|r| matches!(r, Ok(Ok(PayloadResponse::Ok { .. })))).count();
    assert!(served <= 15, "at most the per-peer burst is served, got {served}");
    assert!(served >= 1, "the first requests are served");
    adversaries.push(("flood", x));

    for (what, x) in &adversaries {
        wait_for(&format!("the {what} adversary is banned"), 10, || banned(&v, x)).await;
    }
    let s = v.stats.snapshot();
    assert!(s.rejected >= 5, "{s:?}");
    assert!(s.altsync_rate_limited >= 45, "{s:?}");
    assert!(s.bans >= 6, "{s:?}");
    let blocked = v.blocked_peers().await.unwrap();
    assert!(
        !blocked.contains(&a.peer_id) && !blocked.contains(&h.peer_id),
        "honest peers are not banned"
    );

    // Honest traffic still flows.
    let (b, hash) = block(7, now(), 20);
    publish(&a, codec::sign_block(&b, hash, CHAIN, &signer()).unwrap()).await;
    loop {
        let got =
            tokio::time::timeout(Duration::from_secs(10), h_rx.recv()).await.unwrap().unwrap();
        if got.hash == hash {
            break;
        }
        assert_ne!(got.number(), 2, "a forged block reached the honest peer");
    }

    // The bans survive a restart of v (same store, same key).
    let ids: Vec<PeerId> = adversaries.iter().map(|(_, x)| x.peer_id).collect();
    v_cancel.cancel();
    drop(v);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cv2 = cv;
    cv2.listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let v2 = spawn(cv2, cancel.clone(), &tasks()).await.unwrap();
    let restored = v2.blocked_peers().await.unwrap();
    for id in &ids {
        assert!(restored.contains(id), "ban of {id} lost across the restart");
    }
    // An admin unban lifts it.
    v2.unblock_peer(ids[0]).await.unwrap();
    assert!(!v2.blocked_peers().await.unwrap().contains(&ids[0]));
    cancel.cancel();
}
