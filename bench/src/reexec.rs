//! `reexec`: Mgas/s of flashblock re-execution as the flashblock grows, against pure op-revm
//! execution of the same transactions (the floor), in process.
//!
//! For each size N (default 10/100/500/1,000/1,500): a block of N transactions, half ERC-20
//! `transfer`s (tests/contracts/Token.sol) and half ETH transfers, each to a fresh recipient,
//! after the L1-info deposit. Two measurements over the same parent state:
//! - `floor`: the exec crate's `BlockBuilder` over an in-memory state executes the already
//!   decoded, already recovered transactions (what the devnet's sequencer does): op-revm plus
//!   receipts, nothing else;
//! - `reexec`: what the node does with the flashblock: `decode_frame` on its JSON, then the
//!   overlay's `FlashblockExecutor::start_block` (EIP-2718 decode, signer recovery, execution
//!   over a `CacheDB<SourceDb>` reading the parent state through the `StateSource` seam,
//!   receipt checks against the metadata, the `PendingBlock` snapshot).
//!
//! Mgas/s = gas used / wall time of one run; each size runs `--iterations` times and reports
//! the median.

use crate::{
    chart::{line_chart, Series},
    stats::{r3, Machine, Summary},
};
use alloy_consensus::{transaction::SignerRecoverable, Header, SignableTransaction, TxEip1559};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_network::TxSignerSync;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, B64, U256};
use alloy_rpc_types_engine::PayloadId;
use alloy_sol_types::{SolCall, SolValue};
use anyhow::{ensure, Context};
use clap::Args;
use flashnode_devnet::{
    genesis::{dev_accounts, genesis_state, DevAccount},
    sequencer::{build_flashblock, flashblock_base},
};
use flashnode_exec::{
    state_root, BlockBuilder, BlockEnvInput, CanonicalBlock, CanonicalNotification, ChainConfig,
    L1Info, MemDb, SourceAccount, SourceError, StateSource, L1_INFO_DEPOSITOR,
};
use flashnode_overlay::{decode_frame, FlashblockExecutor};
use futures::future::{BoxFuture, FutureExt};
use op_alloy_consensus::OpTxEnvelope;
use revm::DatabaseRef;
use serde_json::{json, Value};
use std::{path::PathBuf, sync::Arc, time::Instant};
use tokio::sync::broadcast;

alloy_sol_types::sol! {
    interface IToken {
        function transfer(address to, uint256 value) external returns (bool);
    }
}

const CHAIN_ID: u64 = 901;
const GAS_LIMIT: u64 = 60_000_000;
const GENESIS_TIME: u64 = 1_700_000_000;
const TIP: u128 = 1_000_000;
const SENDERS_PER_KIND: usize = 5;
const TOKEN_BIN: &str = include_str!("../../tests/contracts/Token.bin");

/// `reexec` flags.
#[derive(Debug, Clone, Args)]
pub struct ReexecArgs {
    /// Flashblock sizes (transactions, besides the deposit).
    #[arg(long, value_delimiter = ',', default_value = "10,100,500,1000,1500")]
    pub sizes: Vec<usize>,
    /// Runs per size (the median is reported).
    #[arg(long, default_value_t = 15)]
    pub iterations: usize,
    /// Where the chart goes.
    #[arg(long, default_value = "bench/results/reexec-mgas.svg")]
    pub chart: PathBuf,
}

#[derive(Clone)]
struct ReadyTx {
    tx: OpTxEnvelope,
    sender: Address,
    encoded: Bytes,
}

fn sign(
    acc: &DevAccount,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas: u64,
    base_fee: u64,
) -> anyhow::Result<ReadyTx> {
    let mut tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: base_fee as u128 * 2 + TIP,
        max_priority_fee_per_gas: TIP,
        to,
        value,
        access_list: Default::default(),
        input,
    };
    let sig = acc.signer.sign_transaction_sync(&mut tx)?;
    let tx: OpTxEnvelope = tx.into_signed(sig).into();
    let encoded = tx.encoded_2718().into();
    Ok(ReadyTx { tx, sender: acc.address, encoded })
}

fn deposit(input: &BlockEnvInput) -> ReadyTx {
    let tx = L1Info::devnet(input.number, input.timestamp).deposit_tx();
    let encoded = tx.encoded_2718().into();
    ReadyTx { tx, sender: L1_INFO_DEPOSITOR, encoded }
}

fn recipient(kind: &str, i: usize) -> Address {
    Address::from_slice(&keccak256(format!("{kind}-recipient-{i}"))[12..])
}

/// The parent state (token deployed, tokens handed out) and its header.
struct Parent {
    chain: ChainConfig,
    state: MemDb,
    header: Header,
    hash: B256,
    token: Address,
    accounts: Vec<DevAccount>,
}

fn parent() -> anyhow::Result<Parent> {
    let chain = ChainConfig::devnet(CHAIN_ID);
    let accounts = dev_accounts();
    let genesis_db = genesis_state(&accounts);
    let genesis = Header {
        number: 0,
        timestamp: GENESIS_TIME,
        gas_limit: GAS_LIMIT,
        base_fee_per_gas: Some(1_000_000_000),
        state_root: state_root(&genesis_db),
        extra_data: chain.holocene_extra_data(),
        withdrawals_root: Some(alloy_consensus::constants::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
        ..Default::default()
    };
    let input = BlockEnvInput::next_devnet(&chain, &genesis, GENESIS_TIME + 2, GAS_LIMIT);
    let mut b = BlockBuilder::new(chain.clone(), input.clone(), genesis_db);
    let d = deposit(&input);
    b.execute(d.tx, d.sender, d.encoded).context("deposit")?;
    let supply = U256::from(10u64).pow(U256::from(27u64));
    let mut code = alloy_primitives::hex::decode(TOKEN_BIN.trim()).context("Token.bin is hex")?;
    code.extend_from_slice(&supply.abi_encode());
    let deployer = &accounts[0];
    let create =
        sign(deployer, 0, TxKind::Create, U256::ZERO, code.into(), 2_000_000, input.base_fee)?;
    let token = b
        .execute(create.tx, create.sender, create.encoded)
        .context("deploy")?
        .contract_address
        .context("address")?;
    let share = supply / U256::from(SENDERS_PER_KIND as u64 * 2);
    for (i, acc) in accounts[1..SENDERS_PER_KIND].iter().enumerate() {
        let data = IToken::transferCall { to: acc.address, value: share }.abi_encode();
        let t = sign(
            deployer,
            1 + i as u64,
            TxKind::Call(token),
            U256::ZERO,
            data.into(),
            100_000,
            input.base_fee,
        )?;
        b.execute(t.tx, t.sender, t.encoded).context("hand out tokens")?;
    }
    let header = b.header(
        state_root(b.db()),
        flashnode_exec::storage_root_of(b.db(), flashnode_exec::L2_TO_L1_MESSAGE_PASSER),
    );
    let hash = header.hash_slow();
    Ok(Parent { chain, state: b.into_db(), header, hash, token, accounts })
}

fn block_txs(p: &Parent, input: &BlockEnvInput, n: usize) -> anyhow::Result<Vec<ReadyTx>> {
    let mut nonces: Vec<u64> = p
        .accounts
        .iter()
        .map(|a| p.state.basic_ref(a.address).ok().flatten().map(|i| i.nonce).unwrap_or_default())
        .collect();
    let mut txs = vec![deposit(input)];
    for i in 0..n {
        if i % 2 == 0 {
            let s = (i / 2) % SENDERS_PER_KIND;
            let data =
                IToken::transferCall { to: recipient("erc20", i), value: U256::from(1_000 + i) }
                    .abi_encode();
            txs.push(sign(
                &p.accounts[s],
                nonces[s],
                TxKind::Call(p.token),
                U256::ZERO,
                data.into(),
                100_000,
                input.base_fee,
            )?);
            nonces[s] += 1;
        } else {
            let s = SENDERS_PER_KIND + (i / 2) % SENDERS_PER_KIND;
            txs.push(sign(
                &p.accounts[s],
                nonces[s],
                TxKind::Call(recipient("eth", i)),
                U256::from(1_000_000 + i),
                Bytes::new(),
                21_000,
                input.base_fee,
            )?);
            nonces[s] += 1;
        }
    }
    Ok(txs)
}

/// The parent state served through the `StateSource` seam, as the devnet serves it.
#[derive(Debug)]
struct MemSource {
    at: B256,
    state: Arc<MemDb>,
    block: Arc<CanonicalBlock>,
    notifications: broadcast::Sender<CanonicalNotification>,
}

impl StateSource for MemSource {
    fn chain_id(&self) -> u64 {
        CHAIN_ID
    }
    fn latest(&self) -> BoxFuture<'_, Result<Arc<CanonicalBlock>, SourceError>> {
        let b = self.block.clone();
        async move { Ok(b) }.boxed()
    }
    fn block_by_number(
        &self,
        number: u64,
    ) -> BoxFuture<'_, Result<Option<Arc<CanonicalBlock>>, SourceError>> {
        let b = (number == self.block.header.number).then(|| self.block.clone());
        async move { Ok(b) }.boxed()
    }
    fn account(
        &self,
        at: B256,
        address: Address,
    ) -> BoxFuture<'_, Result<SourceAccount, SourceError>> {
        let res = if at == self.at {
            let info = self.state.basic_ref(address).ok().flatten().unwrap_or_default();
            let code = match &info.code {
                Some(c) => c.original_bytes(),
                None => self
                    .state
                    .code_by_hash_ref(info.code_hash)
                    .map(|c| c.original_bytes())
                    .unwrap_or_default(),
            };
            Ok(SourceAccount { balance: info.balance, nonce: info.nonce, code })
        } else {
            Err(SourceError::UnknownBlock(at))
        };
        async move { res }.boxed()
    }
    fn storage(
        &self,
        at: B256,
        address: Address,
        slot: U256,
    ) -> BoxFuture<'_, Result<U256, SourceError>> {
        let res = if at == self.at {
            Ok(self.state.storage_ref(address, slot).unwrap_or_default())
        } else {
            Err(SourceError::UnknownBlock(at))
        };
        async move { res }.boxed()
    }
    fn subscribe(&self) -> broadcast::Receiver<CanonicalNotification> {
        self.notifications.subscribe()
    }
    fn reads_are_local(&self) -> bool {
        true
    }
}

fn mgas(gas: u64, secs: f64) -> f64 {
    gas as f64 / 1e6 / secs
}

/// Runs the sweep (blocking: call from a blocking thread inside a runtime).
fn sweep(args: &ReexecArgs, handle: tokio::runtime::Handle) -> anyhow::Result<Value> {
    let p = parent()?;
    let input = BlockEnvInput::next_devnet(&p.chain, &p.header, GENESIS_TIME + 4, GAS_LIMIT);
    ensure!(input.parent_hash == p.hash, "the block builds on the parent");
    let source: Arc<dyn StateSource> = Arc::new(MemSource {
        at: p.hash,
        state: Arc::new(p.state.clone()),
        block: Arc::new(CanonicalBlock {
            header: p.header.clone(),
            hash: p.hash,
            tx_hashes: vec![],
            receipts: vec![],
        }),
        notifications: broadcast::channel(4).0,
    });
    let payload_id = PayloadId(B64::new([7; 8]));
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let txs = block_txs(&p, &input, n)?;
        // The flashblock the sequencer would publish for these txs, and the floor's gas.
        let mut b = BlockBuilder::new(p.chain.clone(), input.clone(), p.state.clone());
        for t in txs.clone() {
            let r = b.execute(t.tx, t.sender, t.encoded).context("fixture tx executes")?;
            ensure!(alloy_consensus::TxReceipt::status(&r.receipt), "fixture tx succeeds");
        }
        let gas = b.gas_used();
        let (payload, _) = build_flashblock(&b, payload_id, 0, Some(flashblock_base(&input)), 0);
        let json = serde_json::to_vec(&payload)?;

        let (mut floor, mut reexec, mut decode) = (Vec::new(), Vec::new(), Vec::new());
        let mut recover = Vec::new();
        for _ in 0..args.iterations {
            // What signer recovery alone costs on one core (the floor's transactions come
            // recovered): EIP-2718 decoding and an ECDSA recovery per transaction.
            let t0 = Instant::now();
            for t in &txs {
                let tx = OpTxEnvelope::decode_2718_exact(&t.encoded).context("tx decodes")?;
                let sender = match &tx {
                    OpTxEnvelope::Deposit(d) => d.from,
                    other => other.recover_signer().context("signer recovers")?,
                };
                ensure!(sender == t.sender, "recovered sender");
            }
            recover.push(t0.elapsed().as_secs_f64());

            let (state, batch) = (p.state.clone(), txs.clone());
            let t0 = Instant::now();
            let mut b = BlockBuilder::new(p.chain.clone(), input.clone(), state);
            for t in batch {
                b.execute(t.tx, t.sender, t.encoded).context("floor executes")?;
            }
            floor.push(t0.elapsed().as_secs_f64());
            ensure!(b.gas_used() == gas);

            let mut executor =
                FlashblockExecutor::new(p.chain.clone(), source.clone(), handle.clone());
            let t0 = Instant::now();
            let fb = decode_frame(&json, usize::MAX).context("frame decodes")?;
            let t_decoded = t0.elapsed().as_secs_f64();
            let parent = flashnode_exec::CanonicalBlock {
                header: p.header.clone(),
                hash: p.hash,
                tx_hashes: Vec::new(),
                receipts: Vec::new(),
            };
            let (pending, report) = executor
                .start_block(&fb, Some(&parent))
                .map_err(|e| anyhow::anyhow!("re-execution: {e}"))?;
            reexec.push(t0.elapsed().as_secs_f64());
            decode.push(t_decoded);
            ensure!(
                pending.txs.len() == n + 1
                    && !report.gas_mismatch
                    && report.receipt_mismatches == 0,
                "re-execution agrees"
            );
        }
        let floor_s = Summary::of(&floor).p50;
        let reexec_s = Summary::of(&reexec).p50;
        let row = json!({
            "txs": n,
            "gas_used": gas,
            "frame_bytes": json.len(),
            "floor_ms_p50": r3(floor_s * 1e3),
            "reexec_ms_p50": r3(reexec_s * 1e3),
            "decode_frame_ms_p50": r3(Summary::of(&decode).p50 * 1e3),
            "recover_one_core_ms_p50": r3(Summary::of(&recover).p50 * 1e3),
            "floor_mgas_per_s": r3(mgas(gas, floor_s)),
            "reexec_mgas_per_s": r3(mgas(gas, reexec_s)),
            "reexec_over_floor_time": r3(reexec_s / floor_s),
        });
        eprintln!("reexec {n:>4} txs: gas {gas:>9}  floor {:>8.1} Mgas/s  re-exec {:>8.1} Mgas/s  ({:.2}x the floor's time: {:.2} / {:.2} ms; decode {:.2} ms, recovery alone {:.2} ms on one core)",
            mgas(gas, floor_s), mgas(gas, reexec_s), reexec_s / floor_s, floor_s * 1e3, reexec_s * 1e3,
            Summary::of(&decode).p50 * 1e3, Summary::of(&recover).p50 * 1e3);
        rows.push(row);
    }
    let series = |label: &str, key: &str| Series {
        label: label.into(),
        points: rows
            .iter()
            .map(|r| (r["txs"].as_f64().unwrap_or_default(), r[key].as_f64().unwrap_or_default()))
            .collect(),
    };
    line_chart(
        &args.chart,
        "Flashblock re-execution vs pure op-revm execution",
        "transactions in the flashblock (half ERC-20, half ETH transfers)",
        "Mgas/s (median)",
        &[
            series("floor: BlockBuilder over MemDb", "floor_mgas_per_s"),
            series("node: decode + recover + execute + snapshot", "reexec_mgas_per_s"),
        ],
    )?;
    Ok(json!({
        "scenario": "reexec",
        "machine": Machine::read(),
        "params": {"sizes": args.sizes, "iterations": args.iterations, "mix": "half ERC-20 transfer, half ETH transfer, fresh recipients, after the L1-info deposit"},
        "result": {"rows": rows, "chart": args.chart},
    }))
}

/// Runs the sweep on a blocking thread (the executor's state reads block on the runtime).
pub async fn run(args: ReexecArgs) -> anyhow::Result<Value> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || sweep(&args, handle)).await.context("sweep task")?
}
