//! The block loop: every block is built as flashblocks. Index 0 carries the L1-info deposit
//! and the block's `base`; indices 1..=n each add the best pool transactions that fit in the
//! cumulative cap `j/n` of the block gas limit; the block seals with the last flashblock's
//! header, so the sealed hash equals the last flashblock's `block_hash` (legacy shape; the
//! Subblocks shape, `DevnetConfig::subblocks`, streams it as zero).

use crate::{
    chain::SealedBlock, flashblock::PublishedFlashblock, mempool::PoolTx, PendingView, Shared,
};
use alloy_consensus::{Header, Transaction};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{keccak256, Address, Bytes, B256, B64, U256};
use alloy_rpc_types_engine::PayloadId;
use flashnode_exec::{
    state_root, storage_root_of, BlockBuilder, BlockEnvInput, ExecError, L1Info, MemDb,
    L1_INFO_DEPOSITOR, L2_TO_L1_MESSAGE_PASSER,
};
use op_alloy_rpc_types_engine::flashblock::{
    OpFlashblockPayload, OpFlashblockPayloadBase, OpFlashblockPayloadDelta,
    OpFlashblockPayloadMetadata,
};
use revm::DatabaseRef;
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// How long an injected tail reorg waits between streaming the last flashblock and sealing.
const TAIL_REORG_DELAY: Duration = Duration::from_millis(300);

/// Runs the block loop until cancelled.
pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let span = info_span!("sequencer", chain_id = shared.chain.chain_id);
    async move {
        let n = shared.config.flashblocks_per_block();
        let interval = shared.config.flashblock_interval;
        let mut block_start = Instant::now();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let sealed = build_block(&shared, n, interval, block_start, &cancel).await;
            let Some(sealed) = sealed else { return };
            info!(number = sealed.header.number, hash = %sealed.hash, txs = sealed.txs.len(),
                gas_used = sealed.header.gas_used, "sealed block");
            block_start += interval * n as u32;
            // Never try to catch up a backlog of blocks after a stall: restart the clock.
            if block_start + interval < Instant::now() {
                block_start = Instant::now();
            }
        }
    }
    .instrument(span)
    .await
}

/// `slot` moved by up to ±`jitter`, the same for a given block and index on every run
/// (keccak of both picks the offset: no random generator to seed).
fn jittered(slot: Instant, jitter: Duration, number: u64, index: u64) -> Instant {
    if jitter.is_zero() {
        return slot;
    }
    let seed = alloy_primitives::keccak256([number.to_be_bytes(), index.to_be_bytes()].concat());
    let unit = u16::from_be_bytes([seed[0], seed[1]]) as f64 / u16::MAX as f64;
    let offset = jitter.mul_f64((unit * 2.0 - 1.0).abs());
    if unit < 0.5 {
        slot.checked_sub(offset).unwrap_or(slot)
    } else {
        slot + offset
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Builds, streams and seals one block. None when cancelled.
async fn build_block(
    shared: &Arc<Shared>,
    n: u64,
    interval: Duration,
    start: Instant,
    cancel: &CancellationToken,
) -> Option<Arc<SealedBlock>> {
    let (parent, parent_state) = {
        let store = shared.store.read();
        (store.latest().clone(), store.latest_state().clone())
    };
    let block_secs = (shared.config.block_time.as_secs()).max(1);
    let timestamp = (parent.header.timestamp + block_secs).max(now_secs());
    let input = BlockEnvInput::next_devnet(
        &shared.chain,
        &parent.header,
        timestamp,
        shared.config.gas_limit,
    );
    let payload_id = payload_id(parent.hash, timestamp);
    let mut builder =
        BlockBuilder::new(shared.chain.clone(), input.clone(), (*parent_state).clone());

    // Index 0: the L1-info deposit only.
    let deposit = L1Info::devnet(input.number, timestamp).deposit_tx();
    let encoded = deposit.encoded_2718().into();
    if let Err(err) = builder.execute(deposit, L1_INFO_DEPOSITOR, encoded) {
        // The system deposit cannot fail on this state; if it does the chain must stop.
        warn!(%err, "L1-info deposit failed, the sequencer stops");
        cancel.cancel();
        return None;
    }
    let base = flashblock_base(&input);
    let mut header = publish(shared, &builder, payload_id, 0, Some(base), 0);
    let mut before_tail = None;

    let jitter = shared.config.flashblock_jitter;
    for j in 1..=n {
        let slot = start + interval * j as u32;
        // The last flashblock keeps the block's end; the others move within ±jitter.
        let at = if j == n { slot } else { jittered(slot, jitter, input.number, j) };
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep_until(at) => {}
        }
        let before = builder.transactions().len();
        if j == n && shared.inject_tail_reorg.swap(false, std::sync::atomic::Ordering::AcqRel) {
            // A tail-flashblock reorg: the last flashblock is streamed, then the block is sealed
            // without it and its transactions are discarded.
            before_tail = Some((builder.clone(), header.clone()));
        }
        let cap = shared.config.gas_limit / n * j;
        fill(shared, &mut builder, cap);
        header = publish(shared, &builder, payload_id, j, None, before);
    }

    if let Some((kept, kept_header)) = before_tail {
        // Like a sequencer that gave up on its builder: the last flashblock was streamed and
        // consumers applied it before the block is sealed without it.
        tokio::time::sleep(TAIL_REORG_DELAY).await;
        warn!(
            number = kept_header.number,
            dropped = builder.transactions().len() - kept.transactions().len(),
            "injected tail reorg: sealing without the last flashblock"
        );
        builder = kept;
        header = kept_header;
    }
    let hash = header.hash_slow();
    let state = Arc::new(builder.db().clone());
    let txs = builder.transactions().to_vec();
    let block = {
        let mut store = shared.store.write();
        store.push(SealedBlock { header, hash, txs }, state.clone())
    };
    let _ = shared.sealed.send(block.clone());
    shared.pending.store(Arc::new(PendingView {
        state,
        base_fee: block
            .header
            .next_block_base_fee(shared.chain.base_fee_params)
            .unwrap_or_default(),
        number: block.header.number + 1,
        tx_hashes: Vec::new(),
    }));
    Some(block)
}

/// Executes pool transactions, best tip first, until the cumulative gas cap.
fn fill(shared: &Shared, builder: &mut BlockBuilder<MemDb>, cap: u64) {
    let base_fee = builder.input().base_fee;
    let best: Vec<PoolTx> = {
        let pool = shared.mempool.lock();
        let db = builder.db();
        pool.best(base_fee, |a| db.basic_ref(a).ok().flatten().map(|i| i.nonce).unwrap_or_default())
            .collect()
    };
    let mut skipped: Vec<Address> = Vec::new();
    let mut included = Vec::new();
    let mut dropped = Vec::new();
    for tx in best {
        if skipped.contains(&tx.sender) {
            continue;
        }
        if builder.gas_used() + tx.tx.gas_limit() > cap {
            // Does not fit this flashblock; later nonces of the sender must wait too.
            skipped.push(tx.sender);
            continue;
        }
        let (sender, nonce) = (tx.sender, tx.tx.nonce());
        match builder.execute(tx.tx, tx.sender, tx.encoded) {
            Ok(_) => included.push((sender, nonce)),
            Err(ExecError::InvalidTx(err)) => {
                debug!(%err, %sender, nonce, "dropping a transaction that no longer executes");
                skipped.push(sender);
                dropped.push((sender, nonce));
            }
            Err(err) => {
                warn!(%err, "state error while building");
                skipped.push(sender);
            }
        }
    }
    let mut pool = shared.mempool.lock();
    for (sender, nonce) in included.into_iter().chain(dropped) {
        pool.remove(sender, nonce);
    }
}

/// The `base` of a block's index 0.
pub fn flashblock_base(input: &BlockEnvInput) -> OpFlashblockPayloadBase {
    OpFlashblockPayloadBase {
        parent_beacon_block_root: input.parent_beacon_block_root,
        parent_hash: input.parent_hash,
        fee_recipient: input.coinbase,
        prev_randao: input.prev_randao,
        block_number: input.number,
        gas_limit: input.gas_limit,
        timestamp: input.timestamp,
        extra_data: input.extra_data.clone(),
        base_fee_per_gas: U256::from(input.base_fee),
    }
}

/// The flashblock of the block so far: the transactions from `first_new` on, the cumulative
/// roots and the hash of the block if it ended here, and the balances the new transactions
/// touched. Returns it with the header of the block so far.
pub fn build_flashblock(
    builder: &BlockBuilder<MemDb>,
    payload_id: PayloadId,
    index: u64,
    base: Option<OpFlashblockPayloadBase>,
    first_new: usize,
) -> (OpFlashblockPayload, Header) {
    let db = builder.db();
    let withdrawals_root = storage_root_of(db, L2_TO_L1_MESSAGE_PASSER);
    let header = builder.header(state_root(db), withdrawals_root);
    let block_hash = header.hash_slow();
    let new_txs = &builder.transactions()[first_new..];
    let mut touched: Vec<Address> = vec![header.beneficiary];
    for tx in new_txs {
        touched.push(tx.sender);
        if let Some(to) = tx.tx.to() {
            touched.push(to);
        }
    }
    let balances: BTreeMap<Address, U256> = touched
        .into_iter()
        .map(|addr| {
            (addr, db.basic_ref(addr).ok().flatten().map(|a| a.balance).unwrap_or_default())
        })
        .collect();
    let payload = OpFlashblockPayload {
        payload_id,
        index,
        base,
        diff: OpFlashblockPayloadDelta {
            state_root: header.state_root,
            receipts_root: header.receipts_root,
            logs_bloom: header.logs_bloom,
            gas_used: header.gas_used,
            block_hash,
            transactions: new_txs.iter().map(|t| t.encoded.clone()).collect(),
            withdrawals: Vec::new(),
            withdrawals_root,
            blob_gas_used: Some(0),
        },
        metadata: OpFlashblockPayloadMetadata {
            block_number: header.number,
            new_account_balances: balances,
            receipts: new_txs.iter().map(|t| (t.hash, t.receipt.clone())).collect(),
        },
    };
    (payload, header)
}

/// Publishes the flashblock of the block so far and returns its header.
fn publish(
    shared: &Shared,
    builder: &BlockBuilder<MemDb>,
    payload_id: PayloadId,
    index: u64,
    base: Option<OpFlashblockPayloadBase>,
    first_new: usize,
) -> Header {
    let (mut payload, header) = build_flashblock(builder, payload_id, index, base, first_new);
    if shared.config.subblocks {
        subblocks_shape(&mut payload);
    }
    let post_exec_tx = (shared.config.post_exec_tx && index > 0)
        .then(|| post_exec_tx(header.number, builder.transactions().len()));
    debug!(
        number = header.number,
        index,
        txs = payload.diff.transactions.len(),
        gas_used = header.gas_used,
        "flashblock"
    );
    shared.pending.store(Arc::new(PendingView {
        state: Arc::new(builder.db().clone()),
        base_fee: builder.input().base_fee,
        number: header.number,
        tx_hashes: builder.transactions().iter().map(|t| t.hash).collect(),
    }));
    metrics::counter!("flashnode_devnet_flashblocks_total").increment(1);
    let published = Arc::new(PublishedFlashblock::with_post_exec_tx(payload, post_exec_tx));
    {
        // Under the lock, so a subscriber taking the replay sees each frame exactly once.
        let mut current = shared.current_block.lock();
        if index == 0 {
            current.clear();
        }
        current.push(published.clone());
        let _ = shared.flashblocks.send(published);
    }
    header
}

/// Turns a flashblock into the Subblocks shape: the commitments a builder cannot know before
/// sealing are zero, and withdrawals empty.
pub fn subblocks_shape(payload: &mut OpFlashblockPayload) {
    payload.diff.state_root = B256::ZERO;
    payload.diff.block_hash = B256::ZERO;
    payload.diff.withdrawals_root = B256::ZERO;
    payload.diff.withdrawals.clear();
}

/// The Lagoon post-exec transaction of block `number` after `txs` transactions: type `0x7D`,
/// payload version 1 with a zero SDM gas refund for each transaction, as raw EIP-2718 bytes.
pub fn post_exec_tx(number: u64, txs: usize) -> Bytes {
    use op_alloy_consensus::{PostExecPayload, SDMGasEntry, TxPostExec, POST_EXEC_PAYLOAD_VERSION};
    let payload = PostExecPayload {
        version: POST_EXEC_PAYLOAD_VERSION,
        block_number: number,
        gas_refund_entries: (0..txs as u64)
            .map(|index| SDMGasEntry { index, gas_refund: 0 })
            .collect(),
    };
    TxPostExec::new(payload).encoded_2718().into()
}

/// A payload id derived from the parent and the timestamp, stable for one block.
fn payload_id(parent: B256, timestamp: u64) -> PayloadId {
    let digest = keccak256([parent.as_slice(), &timestamp.to_be_bytes()].concat());
    PayloadId(B64::from_slice(&digest[..8]))
}
