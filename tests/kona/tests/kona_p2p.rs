//! Interop with kona-p2p 0.1.2 (crates.io), an independent OP-stack consensus-layer p2p
//! implementation (libp2p 0.56, alloy 1.x, op-alloy 0.18), over real sockets on 127.0.0.1.
//!
//! Only wire bytes cross the boundary: the kona side holds its own types
//! (`OpNetworkPayloadEnvelope` of op-alloy 0.18, signing with `k256`), the flashnode side is
//! the real `flashnode` binary, and the two meet through gossipsub, `payload_by_number`
//! streams and JSON-RPC.
//!
//! The flashnode side is the binary built by the root workspace (`$FLASHNODE_BIN`, else
//! `target/debug/flashnode`); this crate is a workspace of its own (see its Cargo.toml).
//!
//! - flashnode -> kona: a `flashnode devnet` publishes every sealed block; a kona gossip driver
//!   dialled into it validates them with kona's own `BlockHandler` (signer, hash, timestamp
//!   window, version rules) and they match the devnet's RPC. Kona then fetches an older block
//!   from the devnet's store over `payload_by_number` (kona's protocol id, with the trailing
//!   slash) and recomputes its hash with alloy 1.x.
//! - kona -> flashnode: kona signs a block with the devnet's unsafe-block key and publishes it
//!   with `GossipDriver::publish`; two `flashnode node`s connected only to kona, one with each
//!   message-id function (op-node's, and the spec's that kona uses), accept it and it moves
//!   their canonical tip. A second block five heights up makes the nodes alt-sync the gap from
//!   kona, whose server answers "not found" to everything: they parse that answer.

use alloy_consensus::Block;
use alloy_eips::eip7685::EMPTY_REQUESTS_HASH;
use alloy_primitives::{Address, Signature, B256};
use futures::{AsyncReadExt, AsyncWriteExt};
use kona_genesis::{HardForkConfig, RollupConfig};
use kona_p2p::GossipDriverBuilder;
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr, PeerId, StreamProtocol};
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{OpExecutionPayload, OpNetworkPayloadEnvelope};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

mod harness;
use harness::{eventually, free_port, metric, raw_rpc, scrape, start, start_node, status, Running};

/// The devnet's chain id.
const CHAIN: u64 = 901;
/// The devnet's dev unsafe-block signer key (`flashnode_gossip::DEV_UNSAFE_BLOCK_SIGNER_KEY`,
/// anvil's tenth dev key): public, for local chains only.
const DEV_SIGNER_KEY: &str = "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";
/// Its address.
const DEV_SIGNER: &str = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720";
/// kona's `payload_by_number` protocol id (the spec's, with the trailing slash).
fn kona_sync_protocol() -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/opstack/req/payload_by_number/{CHAIN}/0/"))
        .expect("valid protocol id")
}

/// kona's view of the devnet: chain 901 with every fork up to Isthmus active from genesis
/// (blocks travel on the v4 topic), 1 s blocks.
fn rollup_config() -> RollupConfig {
    let at_genesis = Some(0);
    RollupConfig {
        l2_chain_id: alloy_chains::Chain::from_id(CHAIN),
        block_time: 1,
        hardforks: HardForkConfig {
            regolith_time: at_genesis,
            canyon_time: at_genesis,
            delta_time: at_genesis,
            ecotone_time: at_genesis,
            fjord_time: at_genesis,
            granite_time: at_genesis,
            holocene_time: at_genesis,
            isthmus_time: at_genesis,
            ..Default::default()
        },
        ..Default::default()
    }
}

enum Cmd {
    Dial(Multiaddr),
    Publish(Box<OpNetworkPayloadEnvelope>, oneshot::Sender<Result<(), String>>),
    Peers(oneshot::Sender<usize>),
}

/// A kona `GossipDriver` running on its own task.
struct Kona {
    /// Listen address ending in `/p2p/<peer id>`.
    addr: Multiaddr,
    /// Blocks kona's `BlockHandler` accepted.
    blocks: mpsc::Receiver<OpNetworkPayloadEnvelope>,
    cmds: mpsc::Sender<Cmd>,
    /// kona's `payload_by_number` stream control (its swarm opens the streams).
    sync: libp2p_stream::Control,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kona {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kona {
    async fn spawn() -> Kona {
        let signer: Address = DEV_SIGNER.parse().expect("address");
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
        let (mut driver, signer_tx) = GossipDriverBuilder::new(
            rollup_config(),
            signer,
            listen,
            Keypair::generate_secp256k1(),
        )
        .build()
        .expect("kona gossip driver");
        tokio::time::timeout(Duration::from_secs(10), driver.start())
            .await
            .expect("kona listens in time")
            .expect("kona listens");
        let peer_id = *driver.local_peer_id();
        let bound = driver.swarm.listeners().next().cloned().expect("a listen address");
        let addr = bound.with(Protocol::P2p(peer_id));
        let sync = driver.sync_handler.clone();
        let (block_tx, blocks) = mpsc::channel(256);
        let (cmds, mut cmd_rx) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            // The signer watch must outlive the driver's handler.
            let _signer_tx = signer_tx;
            loop {
                tokio::select! {
                    ev = driver.next() => {
                        let Some(ev) = ev else { break };
                        if let Some(envelope) = driver.handle_event(ev) {
                            let _ = block_tx.try_send(envelope);
                        }
                    }
                    cmd = cmd_rx.recv() => match cmd {
                        None => break,
                        Some(Cmd::Dial(a)) => driver.dial_multiaddr(a),
                        Some(Cmd::Peers(reply)) => { let _ = reply.send(driver.connected_peers()); }
                        Some(Cmd::Publish(envelope, reply)) => {
                            let timestamp = envelope.payload.timestamp();
                            let r = driver.publish(|h| h.topic(timestamp), Some(*envelope));
                            let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
                        }
                    },
                }
            }
        });
        Kona { addr, blocks, cmds, sync, task }
    }

    async fn dial(&self, addr: &str) {
        self.cmds.send(Cmd::Dial(addr.parse().expect("multiaddr"))).await.expect("kona task alive");
    }

    async fn peers(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Peers(tx)).await.expect("kona task alive");
        rx.await.unwrap_or_default()
    }

    async fn publish(&self, envelope: OpNetworkPayloadEnvelope) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Publish(Box::new(envelope), tx)).await.expect("kona task alive");
        rx.await.map_err(|e| e.to_string())?
    }

    /// Publishes, retrying while gossipsub has no peer on the topic yet.
    async fn publish_until_ok(&self, envelope: &OpNetworkPayloadEnvelope) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match self.publish(envelope.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "kona never published: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The next block kona accepted.
    async fn next_block(&mut self) -> OpNetworkPayloadEnvelope {
        tokio::time::timeout(Duration::from_secs(20), self.blocks.recv())
            .await
            .expect("kona accepted a block in time")
            .expect("kona task alive")
    }

    /// One `payload_by_number` exchange from kona's swarm: the raw response bytes.
    async fn request_payload(&mut self, peer: PeerId, number: u64) -> Vec<u8> {
        let exchange = async {
            let mut stream = self
                .sync
                .open_stream(peer, kona_sync_protocol())
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&number.to_le_bytes()).await.map_err(|e| e.to_string())?;
            stream.close().await.map_err(|e| e.to_string())?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(response)
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("alt-sync answer in time")
            .expect("alt-sync exchange")
    }
}

/// The kona side's signature of a payload hash with the dev unsafe-block key (`k256`, the
/// spec's signing domain as op-alloy 0.18 computes it).
fn kona_sign(envelope: &OpNetworkPayloadEnvelope) -> Signature {
    let key = k256::ecdsa::SigningKey::from_slice(&hex_decode(DEV_SIGNER_KEY)).expect("key");
    let message = envelope.payload_hash.signature_message(CHAIN);
    let (sig, recid) = key.sign_prehash_recoverable(message.as_slice()).expect("signature");
    Signature::from_signature_and_parity(sig, recid.is_y_odd())
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// The block hash of a v4 payload recomputed with alloy 1.x, the way kona's validator does
/// (beacon root from the envelope, empty requests hash under Isthmus).
fn kona_block_hash(envelope: &OpNetworkPayloadEnvelope) -> B256 {
    let mut block: Block<OpTxEnvelope> =
        envelope.payload.clone().try_into_block().expect("payload converts to a block");
    block.header.parent_beacon_block_root = envelope.parent_beacon_block_root;
    block.header.requests_hash = Some(EMPTY_REQUESTS_HASH);
    block.header.hash_slow()
}

/// The devnet's canonical hash of block `number`, from its JSON-RPC.
async fn rpc_hash(rpc: &str, number: u64) -> B256 {
    let r =
        raw_rpc(rpc, "eth_getBlockByNumber", serde_json::json!([format!("{number:#x}"), false]))
            .await;
    r["result"]["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("block {number}: {r}"))
        .parse()
        .expect("hash")
}

/// The `p2p: <multiaddr>` line a flashnode process prints at start-up.
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

fn peer_of(addr: &str) -> PeerId {
    addr.rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no peer id in {addr}"))
}

async fn gossip(r: &Running) -> serde_json::Value {
    status(&r.rpc).await["gossip"].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_default()
}

/// Decodes a `payload_by_number` success answer with kona's types: result byte 0, version 2
/// (Isthmus), snappy-framed `beacon root ++ SSZ(payload v4)`, re-wrapped as a v4 gossip
/// envelope (unsigned) for op-alloy 0.18's decoder.
fn decode_altsync_v4(response: &[u8]) -> OpNetworkPayloadEnvelope {
    assert!(response.len() > 5, "short alt-sync answer: {response:?}");
    assert_eq!(response[0], 0, "result byte: ok");
    assert_eq!(
        u32::from_le_bytes(response[1..5].try_into().unwrap_or_default()),
        2,
        "version: Isthmus envelope"
    );
    let mut payload = Vec::new();
    std::io::Read::read_to_end(&mut snap::read::FrameDecoder::new(&response[5..]), &mut payload)
        .expect("snappy framed");
    let mut gossip = vec![0u8; 65];
    gossip.extend_from_slice(&payload);
    let wire = snap::raw::Encoder::new().compress_vec(&gossip).expect("snappy");
    OpNetworkPayloadEnvelope::decode_v4(&wire).expect("op-alloy 0.18 decodes flashnode's answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashnode_devnet_blocks_reach_kona_and_kona_fetches_one_by_altsync() {
    let devnet = start("devnet", &["--block-time", "1s", "--p2p-addr", "127.0.0.1:0"]).await;
    let d = p2p_addr(&devnet).await;
    let mut kona = Kona::spawn().await;
    // Let the devnet seal a few blocks first: kona fetches one of them by alt-sync below.
    let sealed = eventually(Duration::from_secs(15), || async {
        let r = raw_rpc(&devnet.rpc, "eth_blockNumber", serde_json::json!([])).await;
        r["result"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .unwrap_or_default()
            >= 3
    })
    .await;
    assert!(sealed, "the devnet sealed no blocks:\n{}", devnet.proc.output());
    // kona dials flashnode (kona outbound, flashnode inbound).
    kona.dial(&d).await;

    // Every block kona's validator accepts is the devnet's block, consecutively.
    let first = kona.next_block().await;
    let mut last = first.payload.block_number();
    for _ in 0..3 {
        let env = kona.next_block().await;
        assert!(
            matches!(env.payload, OpExecutionPayload::V4(_)),
            "Isthmus blocks ride the v4 topic"
        );
        let number = env.payload.block_number();
        assert_eq!(number, last + 1, "kona missed or reordered a block");
        assert_eq!(env.payload.block_hash(), rpc_hash(&devnet.rpc, number).await, "block {number}");
        assert_eq!(kona_block_hash(&env), env.payload.block_hash());
        last = number;
    }

    // kona -> flashnode alt-sync over kona's protocol id: block 1, sealed before kona
    // connected, from the devnet's store; kona recomputes its hash.
    let older = 1;
    assert!(older < first.payload.block_number());
    let answer = kona.request_payload(peer_of(&d), older).await;
    let env = decode_altsync_v4(&answer);
    assert_eq!(env.payload.block_number(), older);
    let want = rpc_hash(&devnet.rpc, older).await;
    assert_eq!(env.payload.block_hash(), want);
    assert_eq!(kona_block_hash(&env), want, "alloy 1.x recomputes the block hash flashnode served");
    // A block flashnode does not have: result byte 1 (not found) and nothing else.
    let missing = kona.request_payload(peer_of(&d), last + 1_000_000).await;
    assert_eq!(missing, vec![1u8], "not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kona_publishes_blocks_that_flashnode_nodes_accept_with_either_message_id() {
    let devnet = start("devnet", &["--block-time", "1s", "--p2p-addr", "127.0.0.1:0"]).await;
    let d = p2p_addr(&devnet).await;
    // kona #1 follows the devnet: the source of real blocks, in kona's types.
    let mut source = Kona::spawn().await;
    source.dial(&d).await;
    // kona #2 is the only peer of two flashnode nodes (flashnode outbound, kona inbound).
    let mut kona = Kona::spawn().await;
    let k = kona.addr.to_string();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let common = [
        "--p2p-addr",
        "127.0.0.1:0",
        "--p2p-sequencer-address",
        DEV_SIGNER,
        "--p2p-static",
        &k,
        "--upstream-poll-interval",
        "30s",
    ];
    let mut op_args = common.to_vec();
    op_args.extend(["--metrics-addr", &metrics_addr]);
    let op_node = start_node(&devnet.ws, &devnet.rpc, &op_args).await;
    let mut spec_args = common.to_vec();
    spec_args.extend(["--p2p-message-id", "spec"]);
    let spec_node = start_node(&devnet.ws, &devnet.rpc, &spec_args).await;
    let spec_addr = p2p_addr(&spec_node).await;
    let nodes = [("op-node message ids", &op_node), ("spec message ids", &spec_node)];
    let ok = eventually(Duration::from_secs(15), || async { kona.peers().await == 2 }).await;
    assert!(
        ok,
        "the nodes did not connect to kona:\n{}\n{}",
        op_node.proc.output(),
        spec_node.proc.output()
    );

    // A block past both nodes' canonical tip (they poll their upstream every 30 s).
    let tip = |s: serde_json::Value| s["canonicalTip"].as_u64().unwrap_or_default();
    let mut floor = 0;
    for (_, r) in nodes {
        floor = floor.max(tip(status(&r.rpc).await));
    }
    let mut env = source.next_block().await;
    while env.payload.block_number() <= floor {
        env = source.next_block().await;
    }
    // kona signs it with the chain's unsafe-block key and publishes it on the v4 topic.
    env.signature = kona_sign(&env);
    let signer = env
        .signature
        .recover_address_from_prehash(&env.payload_hash.signature_message(CHAIN))
        .expect("recoverable");
    assert_eq!(signer, DEV_SIGNER.parse::<Address>().expect("address"));
    let h = env.payload.block_number();
    kona.publish_until_ok(&env).await;
    for (what, r) in nodes {
        let ok = eventually(Duration::from_secs(15), || async {
            n(&gossip(r).await, "highestBlock") == h
        })
        .await;
        assert!(
            ok,
            "{what}: kona's block {h} not accepted: {}\n{}",
            gossip(r).await,
            r.proc.output()
        );
        let g = gossip(r).await;
        assert!(n(&g, "accepted") >= 1 && n(&g, "rejected") == 0, "{what}: {g}");
        // The overlay's canonical view moved to kona's block (no upstream poll in between).
        let ok =
            eventually(Duration::from_secs(5), || async { tip(status(&r.rpc).await) >= h }).await;
        assert!(
            ok,
            "{what}: canonical tip did not follow kona's block {h}: {}",
            status(&r.rpc).await
        );
    }
    let page = scrape(&metrics_addr).await;
    assert!(
        metric(&page, "flashnode_gossip_messages_total", &[("outcome", "accept")]) >= 1.0,
        "{page}"
    );

    // kona -> flashnode alt-sync: the block the spec-id node accepted from kona, from its store.
    let answer = kona.request_payload(peer_of(&spec_addr), h).await;
    let served = decode_altsync_v4(&answer);
    assert_eq!(served.payload.block_hash(), rpc_hash(&devnet.rpc, h).await);
    assert_eq!(kona_block_hash(&served), served.payload.block_hash());

    // flashnode -> kona alt-sync: block h+5 reveals a gap of four; the nodes ask their only
    // peer, kona, whose server answers "not found" (`0x01 0x00`) to every request.
    let mut gap = source.next_block().await;
    while gap.payload.block_number() < h + 5 {
        gap = source.next_block().await;
    }
    assert_eq!(gap.payload.block_number(), h + 5, "kona #1 saw every block");
    gap.signature = kona_sign(&gap);
    kona.publish_until_ok(&gap).await;
    for (what, r) in nodes {
        let ok = eventually(Duration::from_secs(15), || async {
            let g = gossip(r).await;
            n(&g, "highestBlock") == h + 5 && n(&g, "altsyncRequested") >= 4
        })
        .await;
        assert!(ok, "{what}: no alt-sync towards kona: {}\n{}", gossip(r).await, r.proc.output());
    }
    let ok = eventually(Duration::from_secs(10), || async {
        metric(
            &scrape(&metrics_addr).await,
            "flashnode_altsync_requests_total",
            &[("outcome", "not_found")],
        ) >= 4.0
    })
    .await;
    assert!(ok, "kona's answers were not read as not-found:\n{}", scrape(&metrics_addr).await);
    for (what, r) in nodes {
        let g = gossip(r).await;
        assert_eq!(n(&g, "altsyncFilled"), 0, "{what}: kona serves no blocks: {g}");
        // "Not found" costs kona a little application score, not the connection.
        assert_eq!(n(&g, "peers"), 1, "{what}: kona still connected: {g}");
    }
}
