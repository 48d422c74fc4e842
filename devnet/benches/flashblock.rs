//! Building one flashblock of 100 ERC-20 transfers and 100 ETH transfers, the way the devnet's
//! sequencer does it (`sequencer::build_block` + `publish`).
//!
//! Setup (not measured): genesis with the ten dev accounts, a block that deploys
//! `tests/contracts/Token.sol` and hands tokens to five senders, then 200 pre-signed EIP-1559
//! transactions for the next block: 100 `transfer`s (20 each from dev accounts 0..5) and
//! 100 plain ETH transfers (20 each from dev accounts 5..10), every one to a fresh recipient.
//!
//! `flashblock/100_erc20_100_eth/full`: over a clone of the base state (the clone is batch
//! setup), execute the L1-info deposit and the 200 txs, then what `publish` does: withdrawals
//! root, state root, header (transactions and receipts roots), block hash, touched balances,
//! the pending-view state clone, and the flashblock JSON.
//! `flashblock/100_erc20_100_eth/execute_only`: the deposit and the 200 txs, nothing after.
//!
//! Run: `cargo bench -p flashnode-devnet --bench flashblock`.

use alloy_consensus::{Header, SignableTransaction, TxEip1559, TxReceipt};
use alloy_eips::eip2718::Encodable2718;
use alloy_network::TxSignerSync;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, B64, U256};
use alloy_rpc_types_engine::PayloadId;
use alloy_sol_types::{SolCall, SolValue};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use flashnode_devnet::{
    flashblock::PublishedFlashblock,
    genesis::{dev_accounts, genesis_state, DevAccount},
    sequencer::{build_flashblock, flashblock_base},
};
use flashnode_exec::{
    state_root, storage_root_of, BlockBuilder, BlockEnvInput, ChainConfig, L1Info, MemDb,
    L1_INFO_DEPOSITOR, L2_TO_L1_MESSAGE_PASSER,
};
use op_alloy_consensus::OpTxEnvelope;
use revm::DatabaseRef;
use std::{hint::black_box, sync::Arc, time::Duration};

alloy_sol_types::sol! {
    interface IToken {
        function transfer(address to, uint256 value) external returns (bool);
        function balanceOf(address) external view returns (uint256);
    }
}

const CHAIN_ID: u64 = 901;
const GAS_LIMIT: u64 = 30_000_000;
const GENESIS_TIME: u64 = 1_700_000_000;
const TIP: u128 = 1_000_000;
const ERC20_TXS: usize = 100;
const ETH_TXS: usize = 100;
const SENDERS_PER_KIND: usize = 5;
const TOKEN_BIN: &str = include_str!("../../tests/contracts/Token.bin");

/// A signed transaction ready for `BlockBuilder::execute`.
#[derive(Clone)]
struct ReadyTx {
    tx: OpTxEnvelope,
    sender: Address,
    encoded: Bytes,
}

/// Everything the measured routines need, built once.
struct Fixture {
    chain: ChainConfig,
    input: BlockEnvInput,
    base_state: MemDb,
    /// The L1-info deposit first, then the 200 transfers.
    txs: Vec<ReadyTx>,
    payload_id: PayloadId,
}

fn sign(
    acc: &DevAccount,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas: u64,
    base_fee: u64,
) -> ReadyTx {
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
    let sig = acc.signer.sign_transaction_sync(&mut tx).expect("signing works");
    let tx: OpTxEnvelope = tx.into_signed(sig).into();
    let encoded = tx.encoded_2718().into();
    ReadyTx { tx, sender: acc.address, encoded }
}

fn deposit(input: &BlockEnvInput) -> ReadyTx {
    let tx = L1Info::devnet(input.number, input.timestamp).deposit_tx();
    let encoded = tx.encoded_2718().into();
    ReadyTx { tx, sender: L1_INFO_DEPOSITOR, encoded }
}

fn nonce_of(db: &MemDb, addr: Address) -> u64 {
    db.basic_ref(addr).ok().flatten().map(|a| a.nonce).unwrap_or_default()
}

fn recipient(kind: &str, i: usize) -> Address {
    Address::from_slice(&keccak256(format!("{kind}-recipient-{i}"))[12..])
}

fn execute_all(builder: &mut BlockBuilder<MemDb>, txs: impl IntoIterator<Item = ReadyTx>) {
    for t in txs {
        builder.execute(t.tx, t.sender, t.encoded).expect("bench transactions execute");
    }
}

fn fixture() -> Fixture {
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

    // Block 1: deploy the token from dev account 0 and give tokens to the other ERC-20 senders.
    let input1 = BlockEnvInput::next_devnet(&chain, &genesis, GENESIS_TIME + 2, GAS_LIMIT);
    let mut b1 = BlockBuilder::new(chain.clone(), input1.clone(), genesis_db);
    execute_all(&mut b1, [deposit(&input1)]);
    let supply = U256::from(10u64).pow(U256::from(27u64));
    let mut code = alloy_primitives::hex::decode(TOKEN_BIN.trim()).expect("Token.bin is hex");
    code.extend_from_slice(&supply.abi_encode());
    let deployer = &accounts[0];
    let create =
        sign(deployer, 0, TxKind::Create, U256::ZERO, code.into(), 2_000_000, input1.base_fee);
    let token = {
        let created = b1.execute(create.tx, create.sender, create.encoded).expect("deploys");
        assert!(created.receipt.status(), "token deployment reverted");
        created.contract_address.expect("a creation has an address")
    };
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
            input1.base_fee,
        );
        execute_all(&mut b1, [t]);
    }
    assert!(b1.transactions().iter().all(|t| t.receipt.status()));
    let header1 = b1.header(state_root(b1.db()), storage_root_of(b1.db(), L2_TO_L1_MESSAGE_PASSER));
    let base_state = b1.into_db();

    // Block 2, the measured one: 100 ERC-20 and 100 ETH transfers, interleaved.
    let input = BlockEnvInput::next_devnet(&chain, &header1, GENESIS_TIME + 4, GAS_LIMIT);
    let mut nonces: Vec<u64> = accounts.iter().map(|a| nonce_of(&base_state, a.address)).collect();
    let mut txs = vec![deposit(&input)];
    for i in 0..ERC20_TXS.max(ETH_TXS) {
        if i < ERC20_TXS {
            let s = i % SENDERS_PER_KIND;
            let data =
                IToken::transferCall { to: recipient("erc20", i), value: U256::from(1_000 + i) }
                    .abi_encode();
            txs.push(sign(
                &accounts[s],
                nonces[s],
                TxKind::Call(token),
                U256::ZERO,
                data.into(),
                100_000,
                input.base_fee,
            ));
            nonces[s] += 1;
        }
        if i < ETH_TXS {
            let s = SENDERS_PER_KIND + i % SENDERS_PER_KIND;
            let value = U256::from(1_000_000_000_000_000u64 + i as u64);
            txs.push(sign(
                &accounts[s],
                nonces[s],
                TxKind::Call(recipient("eth", i)),
                value,
                Bytes::new(),
                21_000,
                input.base_fee,
            ));
            nonces[s] += 1;
        }
    }
    let payload_id = PayloadId(B64::from_slice(
        &keccak256([input.parent_hash.as_slice(), &input.timestamp.to_be_bytes()].concat())[..8],
    ));

    // Check once that the block is what it claims to be: every transfer succeeds.
    let mut check = BlockBuilder::new(chain.clone(), input.clone(), base_state.clone());
    execute_all(&mut check, txs.clone());
    assert_eq!(check.transactions().len(), 1 + ERC20_TXS + ETH_TXS);
    assert!(check.transactions().iter().all(|t| t.receipt.status()));
    let logs: usize = check.transactions().iter().map(|t| t.receipt.logs().len()).sum();
    assert_eq!(logs, ERC20_TXS, "one Transfer log per ERC-20 transfer");
    eprintln!(
        "fixture: block {} with {} txs (1 deposit + {ERC20_TXS} ERC-20 + {ETH_TXS} ETH), gas used {}, base fee {}",
        input.number,
        check.transactions().len(),
        check.gas_used(),
        input.base_fee
    );

    Fixture { chain, input, base_state, txs, payload_id }
}

/// What the sequencer's `publish` computes for a flashblock holding every tx of the builder.
fn publish(
    builder: &BlockBuilder<MemDb>,
    input: &BlockEnvInput,
    payload_id: PayloadId,
) -> (PublishedFlashblock, Arc<MemDb>) {
    let (payload, _) = build_flashblock(builder, payload_id, 0, Some(flashblock_base(input)), 0);
    // `publish` also hands the RPC a snapshot of the state after the flashblock.
    let pending_state = Arc::new(builder.db().clone());
    (PublishedFlashblock::new(payload), pending_state)
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("flashblock");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements((ERC20_TXS + ETH_TXS) as u64));
    let setup = || (f.base_state.clone(), f.txs.clone());

    group.bench_function(BenchmarkId::new("100_erc20_100_eth", "full"), |b| {
        b.iter_batched(
            setup,
            |(db, txs)| {
                let mut builder = BlockBuilder::new(f.chain.clone(), f.input.clone(), db);
                execute_all(&mut builder, txs);
                let published = publish(&builder, &f.input, f.payload_id);
                black_box(published.0.json.len());
                (builder, published)
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function(BenchmarkId::new("100_erc20_100_eth", "execute_only"), |b| {
        b.iter_batched(
            setup,
            |(db, txs)| {
                let mut builder = BlockBuilder::new(f.chain.clone(), f.input.clone(), db);
                execute_all(&mut builder, txs);
                black_box(builder.gas_used());
                builder
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
