//! Alt-sync retries: a peer that does not hold the missing blocks (it answers "not found") must
//! not absorb every retry. The client below fills a 5-block gap from two peers whose lower peer
//! id (which wins load ties) holds nothing: each retry waits its backoff and goes to the other
//! peer, so the gap fills instead of being given up after a burst of not-found answers.

use alloy_consensus::Block;
use alloy_primitives::B256;
use flashnode_gossip::{
    altsync, codec, load_or_create_key, spawn, GossipHandle, Store, StoredBlock,
};
use op_alloy_consensus::OpTxEnvelope;
use std::{path::Path, sync::atomic::Ordering, time::Duration};
use tokio_util::sync::CancellationToken;

mod support;

use support::{config, now, signer, tasks, CHAIN};

/// Blocks 0..=n linked by parent hash; the last one is fresh enough to gossip.
fn chain(n: u64) -> Vec<(Block<OpTxEnvelope>, B256)> {
    let now = now();
    let mut parent = B256::ZERO;
    (0..=n)
        .map(|number| {
            let (block, hash) = support::empty_block(number, now - (n - number), parent, 0);
            parent = hash;
            (block, hash)
        })
        .collect()
}

fn fill_store(path: &Path, blocks: &[(Block<OpTxEnvelope>, B256)]) {
    let store = Store::open(path, 100).unwrap();
    for (b, h) in blocks {
        let signed = codec::sign_block(b, *h, CHAIN, &signer()).unwrap();
        let payload = altsync::payload_bytes(&signed.wire).unwrap();
        store
            .put_block(&StoredBlock {
                number: b.header.number,
                version: signed.version,
                hash: *h,
                payload,
            })
            .unwrap();
    }
}

async fn host(
    dir: &Path,
    name: &str,
    blocks: &[(Block<OpTxEnvelope>, B256)],
    statics: Vec<flashnode_gossip::Multiaddr>,
    cancel: &CancellationToken,
) -> GossipHandle {
    let path = dir.join(format!("{name}.redb"));
    fill_store(&path, blocks);
    let mut c = config();
    c.key_path = Some(dir.join(format!("{name}.key")));
    c.store_path = Some(path);
    c.static_peers = statics;
    spawn(c, cancel.clone(), &tasks()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_go_to_another_peer_after_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let blocks = chain(6);
    // Two node keys; the one with the lower peer id becomes the peer without blocks.
    let ids: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| {
            load_or_create_key(&dir.path().join(format!("{n}.key"))).unwrap().public().to_peer_id()
        })
        .collect();
    let (empty, full) = if ids[0] < ids[1] { ("a", "b") } else { ("b", "a") };
    let empty = host(dir.path(), empty, &[], vec![], &cancel).await;
    let full = host(dir.path(), full, &blocks[..6], vec![], &cancel).await;
    assert!(empty.peer_id < full.peer_id);
    // The client holds block 0: block 6 by gossip reveals the gap 1..=5.
    let statics = vec![empty.listen_addrs[0].clone(), full.listen_addrs[0].clone()];
    let client = host(dir.path(), "client", &blocks[..1], statics, &cancel).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while client.stats.peers.load(Ordering::Relaxed) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "client never connected to both peers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (tip, tip_hash) = &blocks[6];
    let signed = codec::sign_block(tip, *tip_hash, CHAIN, &signer()).unwrap();
    loop {
        if full.publish(signed.clone()).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "block 6 never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let s = client.stats.snapshot();
        if s.altsync_filled >= 5 && s.altsync_missing == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gap not filled: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = client.stats.snapshot();
    assert_eq!((s.stored_low, s.stored_high, s.stored_count), (0, 6, 7), "{s:?}");
    // The empty peer was asked (and answered not found) yet nothing was given up.
    assert!(empty.stats.snapshot().altsync_served >= 1, "the empty peer was never asked");
    cancel.cancel();
}
