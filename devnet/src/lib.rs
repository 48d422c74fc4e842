//! An embedded OP-style chain that plays sequencer, flashblock builder and execution client:
//! in-memory state with the well-known dev accounts, a mempool, a sequencer that builds every
//! block as flashblocks with op-revm, the flashblock websocket in the Base/rollup-boost wire
//! format, and a canonical JSON-RPC good enough for `cast` and alloy providers.

pub mod chain;
pub mod filters;
pub mod flashblock;
pub mod genesis;
pub mod mempool;
mod reth;
pub mod rpc;
pub mod sequencer;
pub mod source;
pub mod ws;

use alloy_consensus::Header;
use alloy_primitives::B256;
use arc_swap::ArcSwap;
use chain::{ChainStore, SealedBlock};
use flashblock::PublishedFlashblock;
use flashnode_exec::{ChainConfig, MemDb};
use flashnode_tasks::TaskExecutor;
use genesis::DevAccount;
use mempool::Mempool;
use parking_lot::{Mutex, RwLock};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Devnet settings.
#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Chain id (901 by default).
    pub chain_id: u64,
    /// Time between blocks.
    pub block_time: Duration,
    /// Time between flashblocks; `block_time / flashblock_interval` flashblocks carry txs.
    pub flashblock_interval: Duration,
    /// Each flashblock but a block's last is published up to this much earlier or later than
    /// its slot (the Subblocks spec makes the interval a target, not a guarantee); zero keeps
    /// the cadence exact.
    pub flashblock_jitter: Duration,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Canonical JSON-RPC address (HTTP and WS); None to not serve it.
    pub rpc_addr: Option<SocketAddr>,
    /// Flashblock websocket address (path `/ws`); None to not serve it.
    pub flashblocks_addr: Option<SocketAddr>,
    /// Send brotli Binary frames instead of Text JSON.
    pub flashblocks_brotli: bool,
    /// Stream the Subblocks shape (OP Stack `specs/protocol/subblocks.md`): `diff.state_root`,
    /// `diff.block_hash` and `diff.withdrawals_root` zero, `diff.withdrawals` empty.
    pub subblocks: bool,
    /// Add a Lagoon `diff.post_exec_tx` (type `0x7D`, SDM gas refunds of zero for every
    /// transaction so far) to every flashblock after index 0. Only streamed: the sealed
    /// block does not contain it.
    pub post_exec_tx: bool,
    /// Mempool capacity.
    pub max_pool_txs: usize,
    /// Serve reth's `reth` namespace (`reth_subscribeChainNotifications`,
    /// `reth_getBlockExecutionOutcome`) in reth's JSON shape; off, they are unknown methods.
    pub reth_namespace: bool,
}

/// The devnet's chain id unless told otherwise (OP devnets' customary 901).
pub const DEFAULT_CHAIN_ID: u64 = 901;

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            chain_id: DEFAULT_CHAIN_ID,
            block_time: Duration::from_secs(2),
            flashblock_interval: Duration::from_millis(200),
            flashblock_jitter: Duration::ZERO,
            gas_limit: 30_000_000,
            rpc_addr: Some(([127, 0, 0, 1], 8545).into()),
            flashblocks_addr: Some(([127, 0, 0, 1], 8546).into()),
            flashblocks_brotli: false,
            subblocks: false,
            post_exec_tx: false,
            max_pool_txs: 10_000,
            reth_namespace: true,
        }
    }
}

impl DevnetConfig {
    /// Flashblocks with transactions per block (index 0 comes on top of these).
    pub fn flashblocks_per_block(&self) -> u64 {
        (self.block_time.as_millis() / self.flashblock_interval.as_millis().max(1)).max(1) as u64
    }
}

/// Errors starting the devnet.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A listener could not bind.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Invalid settings.
    #[error("invalid devnet config: {0}")]
    Config(String),
}

/// The view of the block being built, for RPC validation and pending nonces.
#[derive(Debug)]
pub struct PendingView {
    /// State after the latest flashblock.
    pub state: Arc<MemDb>,
    /// Base fee of the block being built.
    pub base_fee: u64,
    /// Number of the block being built.
    pub number: u64,
    /// Hashes of the transactions already in it.
    pub tx_hashes: Vec<B256>,
}

/// State shared by the sequencer, the RPC and the websocket.
#[derive(Debug)]
pub struct Shared {
    /// Chain parameters.
    pub chain: ChainConfig,
    /// Settings.
    pub config: DevnetConfig,
    /// Dev accounts.
    pub accounts: Vec<DevAccount>,
    /// The sealed chain.
    pub store: RwLock<ChainStore>,
    /// The pool.
    pub mempool: Mutex<Mempool>,
    /// The block being built.
    pub pending: ArcSwap<PendingView>,
    /// Every published flashblock.
    pub flashblocks: broadcast::Sender<Arc<PublishedFlashblock>>,
    /// The flashblocks of the block being built so far, sent first to a new websocket
    /// subscriber so that a consumer joining mid-block preconfirms from that block.
    pub current_block: Mutex<Vec<Arc<PublishedFlashblock>>>,
    /// Every sealed block (committed notifications).
    pub sealed: broadcast::Sender<Arc<SealedBlock>>,
    /// Fault injection for tests: seal the next block without its last flashblock.
    pub inject_tail_reorg: std::sync::atomic::AtomicBool,
    /// Polling filters of the canonical RPC.
    pub filters: Mutex<filters::Filters>,
}

/// A running devnet.
#[derive(Debug, Clone)]
pub struct Devnet {
    /// Shared state (read-only use outside this crate).
    pub shared: Arc<Shared>,
    /// Where the canonical RPC listens.
    pub rpc_addr: Option<SocketAddr>,
    /// Where the flashblock websocket listens.
    pub flashblocks_addr: Option<SocketAddr>,
}

impl Devnet {
    /// Builds genesis, binds the listeners and spawns the sequencer, RPC and websocket tasks
    /// on `tasks`: the block producer (`devnet_sequencer`) and the canonical RPC
    /// (`devnet_rpc`) are critical; the flashblock websocket's accept loop (`devnet_ws`) is
    /// restarted with a backoff. All stop on `cancel`.
    pub async fn spawn(
        config: DevnetConfig,
        cancel: CancellationToken,
        tasks: &TaskExecutor,
    ) -> Result<Self, DevnetError> {
        if config.flashblock_jitter * 2 > config.flashblock_interval {
            return Err(DevnetError::Config(
                "flashblock jitter must be at most half the flashblock interval (flashblocks stay in order)".into(),
            ));
        }
        if config.flashblock_interval.is_zero() || config.block_time < config.flashblock_interval {
            return Err(DevnetError::Config(
                "flashblock interval must be non-zero and at most the block time".into(),
            ));
        }
        if config.gas_limit < 1_000_000 {
            return Err(DevnetError::Config("gas limit must be at least 1,000,000".into()));
        }
        let chain = ChainConfig::devnet(config.chain_id);
        let accounts = genesis::dev_accounts();
        let state = genesis::genesis_state(&accounts);
        let genesis = genesis_header(&chain, &config, &state);
        let store = ChainStore::new(genesis.clone(), state.clone());
        let pending = PendingView {
            state: Arc::new(state),
            base_fee: genesis.base_fee_per_gas.unwrap_or_default(),
            number: 1,
            tx_hashes: Vec::new(),
        };
        let (flashblocks, _) = broadcast::channel(1024);
        let (sealed, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            chain,
            config: config.clone(),
            accounts,
            store: RwLock::new(store),
            mempool: Mutex::new(Mempool::default()),
            pending: ArcSwap::from_pointee(pending),
            flashblocks,
            current_block: Mutex::new(Vec::new()),
            sealed,
            inject_tail_reorg: Default::default(),
            filters: Default::default(),
        });

        let rpc_addr = match config.rpc_addr {
            Some(addr) => Some(rpc::serve(shared.clone(), addr, cancel.clone(), tasks).await?),
            None => None,
        };
        let flashblocks_addr = match config.flashblocks_addr {
            Some(addr) => Some(ws::serve(shared.clone(), addr, cancel.clone(), tasks).await?),
            None => None,
        };
        tasks.spawn_critical("devnet_sequencer", sequencer::run(shared.clone(), cancel));
        Ok(Self { shared, rpc_addr, flashblocks_addr })
    }

    /// Subscribes to flashblocks as they are published.
    pub fn subscribe_flashblocks(&self) -> broadcast::Receiver<Arc<PublishedFlashblock>> {
        self.shared.flashblocks.subscribe()
    }

    /// Subscribes to sealed blocks.
    pub fn subscribe_sealed(&self) -> broadcast::Receiver<Arc<SealedBlock>> {
        self.shared.sealed.subscribe()
    }
}

fn genesis_header(chain: &ChainConfig, config: &DevnetConfig, state: &MemDb) -> Header {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Header {
        number: 0,
        timestamp: now,
        gas_limit: config.gas_limit,
        base_fee_per_gas: Some(1_000_000_000),
        state_root: flashnode_exec::state_root(state),
        extra_data: chain.holocene_extra_data(),
        withdrawals_root: Some(alloy_consensus::constants::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(genesis::GENESIS_BEACON_ROOT),
        requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}
