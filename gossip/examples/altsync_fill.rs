//! Alt-sync fill time: a node that holds block 0 hears block N+1 by gossip and fills the
//! N-block gap from 3 peers over real sockets on 127.0.0.1, each serving from its own store.
//! Prints the fill time and the bound the servers' per-peer rate limit allows
//! (burst 15, then 4 req/s, per peer). Usage: `altsync_fill [N]` (default 1000).

use alloy_consensus::Block;
use alloy_primitives::B256;
use flashnode_gossip::{altsync, codec, spawn, GossipConfig, GossipHandle, Store, StoredBlock};
use op_alloy_consensus::OpTxEnvelope;
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{tasks, CHAIN};

/// Blocks 0..=n linked by parent hash, timestamps one second apart ending now.
fn chain(n: u64) -> Vec<(Block<OpTxEnvelope>, B256)> {
    let now = support::now();
    let mut parent = B256::ZERO;
    (0..=n)
        .map(|number| {
            let (block, hash) =
                support::empty_block(number, now - (n - number).min(now), parent, 0);
            parent = hash;
            (block, hash)
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gap: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let signer = support::signer();
    let blocks = chain(gap + 1);
    let dir = std::env::temp_dir().join(format!("altsync-fill-{}", std::process::id()));
    let cancel = CancellationToken::new();
    let mut servers: Vec<GossipHandle> = Vec::new();
    for i in 0..3 {
        let path = dir.join(format!("server{i}.redb"));
        {
            let store = Store::open(&path, 10_000)?;
            for (b, h) in blocks.iter().take(gap as usize + 1) {
                let signed = codec::sign_block(b, *h, CHAIN, &signer)?;
                let payload = altsync::payload_bytes(&signed.wire).ok_or("payload")?;
                store.put_block(&StoredBlock {
                    number: b.header.number,
                    version: signed.version,
                    hash: *h,
                    payload,
                })?;
            }
        }
        let mut c = GossipConfig::new(CHAIN, "/ip4/127.0.0.1/tcp/0".parse()?, signer.address());
        c.store_path = Some(path);
        c.store_retain = 10_000;
        servers.push(spawn(c, cancel.clone(), &tasks()).await?);
    }
    // The client holds block 0 only.
    let client_path = dir.join("client.redb");
    {
        let store = Store::open(&client_path, 10_000)?;
        let (b, h) = &blocks[0];
        let signed = codec::sign_block(b, *h, CHAIN, &signer)?;
        let payload = altsync::payload_bytes(&signed.wire).ok_or("payload")?;
        store.put_block(&StoredBlock { number: 0, version: signed.version, hash: *h, payload })?;
    }
    let mut c = GossipConfig::new(CHAIN, "/ip4/127.0.0.1/tcp/0".parse()?, signer.address());
    c.store_path = Some(client_path);
    c.store_retain = 10_000;
    c.static_peers = servers.iter().map(|s| s.listen_addrs[0].clone()).collect();
    let client = spawn(c, cancel.clone(), &tasks()).await?;
    while client.stats.peers.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Block gap+1, fresh and signed, by gossip from server 0.
    let (tip, tip_hash) = &blocks[gap as usize + 1];
    let mut fresh = tip.clone();
    fresh.header.timestamp = support::now();
    let fresh_hash = fresh.header.hash_slow();
    let _ = tip_hash;
    // Its parent must still be block `gap`: only the timestamp changed.
    let signed = codec::sign_block(&fresh, fresh_hash, CHAIN, &signer)?;
    let start = loop {
        if servers[0].publish(signed.clone()).await.is_ok() {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        let s = client.stats.snapshot();
        if s.altsync_filled >= gap && s.altsync_missing == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("not filled after 600 s: {s:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed().as_secs_f64();
    let peers = 3.0;
    let bound = ((gap as f64 - peers * f64::from(altsync::PEER_BURST))
        / (peers * f64::from(altsync::PEER_RATE)))
    .max(0.0);
    let s = client.stats.snapshot();
    println!(
        "alt-sync fill of {gap} blocks from 3 peers: {took:.1} s ({:.1} blocks/s); rate-limit bound {bound:.1} s ({:.1} blocks/s); {} requests for {} blocks",
        gap as f64 / took,
        gap as f64 / bound.max(f64::EPSILON),
        s.altsync_requested,
        s.altsync_filled
    );
    cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
