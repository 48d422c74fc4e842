//! Chain presets (`--chain`): what an operator would otherwise look up for each public chain.
//!
//! Sources: chain ids, unsafe-block signers and EIP-1559 parameters from the superchain
//! registry (`superchain/configs/{mainnet,sepolia}/*.toml`, `UnsafeBlockSigner` role; Base's
//! signer is `unsafeBlockSigner()` of its L1 `SystemConfig`); hardfork times from the
//! `alloy-op-hardforks` crate; bootnodes from op-node's `p2p.DefaultBootnodes` (the Superchain's
//! shared discv5 DHT, records filtered by the `opstack` ENR entry); flashblock URLs from Base's
//! public flashblocks endpoints; native-blocks cutovers (Base's Denim: 200 ms native blocks,
//! flashblocks retired) from Base's Denim overview (docs.base.org `base-chain/specs/upgrades/
//! denim/overview`: "activated on Base Sepolia on October 21, 2026 at 18:00 UTC and on Base
//! Mainnet on November 5, 2026 at 18:00 UTC", the dates of Chainstack's Denim notes too).
//! Base's node takes its cutover from the chain spec's Denim activation
//! (`crates/execution/flashblocks/src/rpc/cutover.rs` latches that predicate), so its code
//! carries no literal; the published times are minute-precise, which is enough for a node
//! that only stops expecting a stream (`--native-blocks-timestamp` overrides them).

use crate::cadence::Cadence;
use alloy_eips::eip1559::BaseFeeParams;
use alloy_op_hardforks::{ForkCondition, OpChainHardforks, OpHardfork};
use alloy_primitives::{address, Address};
use clap::ValueEnum;
use flashnode_exec::ChainConfig;

/// The chains flashnode knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChainName {
    /// Base mainnet (8453).
    Base,
    /// Base Sepolia (84532).
    BaseSepolia,
    /// OP Mainnet (10).
    Optimism,
    /// OP Sepolia (11155420).
    OpSepolia,
    /// Unichain mainnet (130): 1 s blocks, flashblocks every 200 ms. No public stream is
    /// published that this preset could confirm: give --flashblocks-url.
    Unichain,
    /// Unichain Sepolia (1301): 1 s blocks, flashblocks every 200 ms, public stream
    /// wss://sepolia-flashblocks.unichain.org/ws.
    UnichainSepolia,
    /// The embedded devnet (901 unless `--chain-id` says otherwise).
    Devnet,
}

/// op-node's default bootnodes (shared by every Superchain network; peers are told apart by
/// the chain id in their `opstack` ENR entry).
const SUPERCHAIN_BOOTNODES: &[&str] = &[
    "enr:-J64QFlJkZT1p0ni81MkprI1d3Tk4XZjurmq6gkPf-YeCoUWYCAdGv9K8Xe8m0u5EKyuHrLVxSOoHti_b1h3-knZA-aGAYo5_RtjgmlkgnY0gmlwhCvPTWyHb3BzdGFja4SWsHsAiXNlY3AyNTZrMaEC6BVMrYa2bDscubLIdcJj8M3_j5jdv-ifyVFoVdFB6VWDdGNwgiQGg3VkcIIkBg",
    "enr:-J64QHyNa7et1FC3rv9oXUZ4B5P8PBSvS7AsKW4xrQRkBtHvGifMjBl0COB2VxzPPHCgku29wSiqM2NbSOFaZI6GV6WGAYo6BJ7mgmlkgnY0gmlwhCvP3bWHb3BzdGFja4SWsHsAiXNlY3AyNTZrMaECQ7X6jd57IWA0rZfCBnrCHUvmLzhgtNOVar1br_7PSM6DdGNwgiQGg3VkcIIkBg",
];

/// Everything a preset fixes about a chain.
#[derive(Debug, Clone)]
pub struct ChainPreset {
    /// Which preset.
    pub name: ChainName,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The address that signs gossiped unsafe blocks (none for the devnet: its key is local).
    pub unsafe_block_signer: Option<Address>,
    /// A public flashblock websocket, where the chain has one.
    pub flashblocks_url: Option<&'static str>,
    /// Consensus-layer bootnodes (ENR).
    pub bootnodes: &'static [&'static str],
    /// Execution parameters, with the hardfork schedule.
    pub chain: ChainConfig,
    /// Unix time of the switch to native short blocks (no flashblock stream after it).
    pub native_blocks_timestamp: Option<u64>,
    /// Block time and flashblock interval, where known: the timing flags are checked
    /// against them at start.
    pub cadence: Option<Cadence>,
}

/// Base Sepolia's Denim activation: 2026-10-21 18:00:00 UTC.
pub const BASE_SEPOLIA_DENIM_TIMESTAMP: u64 = 1_792_605_600;
/// Base mainnet's Denim activation: 2026-11-05 18:00:00 UTC.
pub const BASE_MAINNET_DENIM_TIMESTAMP: u64 = 1_793_901_600;

/// Karst (the fork after Jovian) on the Superchain's mainnets and on Sepolia, from the
/// superchain registry (`superchain/configs/{mainnet,sepolia}/*.toml`, `karst_time`, registry
/// commit 8336d2a of 2026-08-04): `alloy-op-hardforks` 0.5 has the fork but no times for it.
pub const SUPERCHAIN_MAINNET_KARST_TIMESTAMP: u64 = 1_783_526_401;
/// Karst on Sepolia (OP Sepolia, Unichain Sepolia).
pub const SUPERCHAIN_SEPOLIA_KARST_TIMESTAMP: u64 = 1_781_712_001;

/// A schedule from `alloy-op-hardforks` with Karst added at `karst`.
fn with_karst(
    forks: impl IntoIterator<Item = (OpHardfork, ForkCondition)>,
    karst: u64,
) -> OpChainHardforks {
    OpChainHardforks::new(
        forks.into_iter().chain([(OpHardfork::Karst, ForkCondition::Timestamp(karst))]),
    )
}

/// Unichain's schedule (superchain registry `superchain/configs/{mainnet,sepolia}/unichain.toml`,
/// commit 3d97455 of 2026-07-21): every fork up to Granite at genesis, then the given times.
fn unichain(holocene: u64, isthmus: u64, jovian: u64, karst: u64) -> OpChainHardforks {
    use OpHardfork::*;
    let at = ForkCondition::Timestamp;
    OpChainHardforks::new([
        (Bedrock, ForkCondition::Block(0)),
        (Regolith, at(0)),
        (Canyon, at(0)),
        (Ecotone, at(0)),
        (Fjord, at(0)),
        (Granite, at(0)),
        (Holocene, at(holocene)),
        (Isthmus, at(isthmus)),
        (Jovian, at(jovian)),
        (Karst, at(karst)),
    ])
}

/// A chain's config in the superchain registry's format
/// (`superchain/configs/<network>/<chain>.toml`, `ops/internal/config/chain.go`): the keys this
/// node executes by. Unknown keys are ignored.
#[derive(Debug, serde::Deserialize)]
struct RegistryChain {
    chain_id: u64,
    #[serde(default)]
    name: Option<String>,
    /// Seconds between blocks.
    #[serde(default)]
    block_time: Option<u64>,
    #[serde(default)]
    hardforks: RegistryForks,
    optimism: RegistryOptimism,
}

/// `[hardforks]`: activation times (Unix seconds) of the forks that change execution.
#[derive(Debug, Default, serde::Deserialize)]
struct RegistryForks {
    regolith_time: Option<u64>,
    canyon_time: Option<u64>,
    ecotone_time: Option<u64>,
    fjord_time: Option<u64>,
    granite_time: Option<u64>,
    holocene_time: Option<u64>,
    isthmus_time: Option<u64>,
    jovian_time: Option<u64>,
    karst_time: Option<u64>,
    interop_time: Option<u64>,
}

/// op-node's rollup config as `optimism_rollupConfig` answers it (`op-node/rollup/types.go`
/// `Config`): the keys this node executes by. Unknown keys are ignored.
#[derive(Debug, serde::Deserialize)]
struct RollupConfig {
    l2_chain_id: u64,
    block_time: u64,
    #[serde(flatten)]
    forks: RegistryForks,
    chain_op_config: RollupOpConfig,
}

/// `chain_op_config`: the execution layer's `OptimismConfig` (EIP-1559 parameters).
#[derive(Debug, serde::Deserialize)]
struct RollupOpConfig {
    #[serde(rename = "eip1559Elasticity")]
    eip1559_elasticity: u64,
    #[serde(rename = "eip1559Denominator")]
    eip1559_denominator: u64,
    #[serde(rename = "eip1559DenominatorCanyon", default)]
    eip1559_denominator_canyon: Option<u64>,
}

/// `[optimism]`: the EIP-1559 parameters.
#[derive(Debug, serde::Deserialize)]
struct RegistryOptimism {
    eip1559_elasticity: u64,
    eip1559_denominator_canyon: u64,
}

/// Why a chain config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a registry chain config.
    #[error("{path} is not a superchain-registry chain config: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
}

/// A cadence of `block_ms` blocks and `interval_ms` flashblocks (`None`: not published).
fn cadence(block_ms: u64, interval_ms: Option<u64>) -> Cadence {
    Cadence {
        block_time: std::time::Duration::from_millis(block_ms),
        flashblock_interval: interval_ms.map(std::time::Duration::from_millis),
    }
}

/// EIP-1559 parameters after Canyon with a given elasticity (denominator 250 on every chain
/// here; Holocene moves them into `extra_data`, which flashblocks carry).
fn canyon(elasticity: u64) -> BaseFeeParams {
    BaseFeeParams::new(250, elasticity as u128)
}

impl ChainPreset {
    /// The preset of a chain. `devnet_chain_id` is the devnet's (configurable) id.
    pub fn of(name: ChainName, devnet_chain_id: u64) -> Self {
        let public = |chain_id, signer, url, forks, params| Self {
            name,
            chain_id,
            unsafe_block_signer: Some(signer),
            flashblocks_url: url,
            bootnodes: SUPERCHAIN_BOOTNODES,
            chain: ChainConfig::with_hardforks(chain_id, forks, params),
            native_blocks_timestamp: match name {
                ChainName::Base => Some(BASE_MAINNET_DENIM_TIMESTAMP),
                ChainName::BaseSepolia => Some(BASE_SEPOLIA_DENIM_TIMESTAMP),
                _ => None,
            },
            // Base: 2 s blocks, 10 flashblocks each (until Denim); OP Mainnet: 2 s, Subblocks
            // every 250 ms (8 a block); Unichain: 1 s, every 200 ms (5 a block). OP Sepolia's
            // Subblocks interval is not published: its 2 s blocks alone are checked.
            cadence: Some(match name {
                ChainName::Unichain | ChainName::UnichainSepolia => cadence(1_000, Some(200)),
                ChainName::Optimism => cadence(2_000, Some(250)),
                ChainName::OpSepolia => cadence(2_000, None),
                _ => cadence(2_000, Some(200)),
            }),
        };
        match name {
            ChainName::Base => public(
                8453,
                address!("0xAf6E19BE0F9cE7f8afd49a1824851023A8249e8a"),
                Some("wss://mainnet.flashblocks.base.org/ws"),
                OpChainHardforks::base_mainnet(),
                canyon(6),
            ),
            ChainName::BaseSepolia => public(
                84532,
                address!("0xb830b99c95Ea32300039624Cb567d324D4b1D83C"),
                Some("wss://sepolia.flashblocks.base.org/ws"),
                OpChainHardforks::base_sepolia(),
                canyon(10),
            ),
            ChainName::Optimism => public(
                10,
                address!("0xAAAA45d9549EDA09E70937013520214382Ffc4A2"),
                None,
                with_karst(OpHardfork::op_mainnet(), SUPERCHAIN_MAINNET_KARST_TIMESTAMP),
                canyon(6),
            ),
            ChainName::OpSepolia => public(
                11155420,
                address!("0x57CACBB0d30b01eb2462e5dC940c161aff3230D3"),
                None,
                with_karst(OpHardfork::op_sepolia(), SUPERCHAIN_SEPOLIA_KARST_TIMESTAMP),
                canyon(6),
            ),
            // Signers: the registry's `superchain/extra/addresses/addresses.json`,
            // `UnsafeBlockSigner` of "130" and "1301". EIP-1559: denominator 250 after Canyon,
            // elasticity 6 (`[optimism]` of unichain.toml).
            ChainName::Unichain => public(
                130,
                address!("0x833C6f278474A78658af91aE8edC926FE33a230e"),
                None,
                unichain(
                    1_736_445_601,
                    1_746_806_401,
                    1_764_691_201,
                    SUPERCHAIN_MAINNET_KARST_TIMESTAMP,
                ),
                canyon(6),
            ),
            ChainName::UnichainSepolia => public(
                1301,
                address!("0x565B71025Ab4de80AcA33c62E51439af56301493"),
                Some("wss://sepolia-flashblocks.unichain.org/ws"),
                unichain(
                    1_734_559_200,
                    1_744_905_600,
                    1_763_568_001,
                    SUPERCHAIN_SEPOLIA_KARST_TIMESTAMP,
                ),
                canyon(6),
            ),
            ChainName::Devnet => Self {
                name,
                chain_id: devnet_chain_id,
                unsafe_block_signer: None,
                flashblocks_url: None,
                bootnodes: &[],
                chain: ChainConfig::devnet(devnet_chain_id),
                native_blocks_timestamp: None,
                // The devnet's cadence is its own flags'; `dev` checks against them.
                cadence: None,
            },
        }
    }

    /// A chain from its superchain-registry config file (`--chain-config`): its id, schedule
    /// (forks the file leaves out never activate; a chain's own file lists every fork it
    /// inherits since registry v2) and EIP-1559 parameters; the Superchain's bootnodes. The
    /// signer and the stream are not in the file: --p2p-sequencer-address and
    /// --flashblocks-url give them.
    pub fn from_registry_file(path: &std::path::Path) -> Result<Self, ChainConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ChainConfigError::Read { path: shown.clone(), source })?;
        let chain: RegistryChain = toml::from_str(&text)
            .map_err(|source| ChainConfigError::Parse { path: shown, source })?;
        let params = BaseFeeParams::new(
            chain.optimism.eip1559_denominator_canyon as u128,
            chain.optimism.eip1559_elasticity as u128,
        );
        tracing::debug!(name = ?chain.name, chain_id = chain.chain_id, "chain config loaded");
        Ok(Self::from_schedule(chain.chain_id, &chain.hardforks, params, chain.block_time))
    }

    /// A chain from its op-node's rollup config (`optimism_rollupConfig`, op-node's
    /// `rollup.Config` as JSON): `l2_chain_id`, the `*_time` fork activations, `block_time`,
    /// and the EIP-1559 parameters of `chain_op_config`. As with a registry file the signer and
    /// the stream are not in it.
    pub fn from_rollup_config(config: serde_json::Value) -> Result<Self, serde_json::Error> {
        let rollup: RollupConfig = serde_json::from_value(config)?;
        let op = &rollup.chain_op_config;
        let params = BaseFeeParams::new(
            op.eip1559_denominator_canyon.unwrap_or(op.eip1559_denominator) as u128,
            op.eip1559_elasticity as u128,
        );
        Ok(Self::from_schedule(rollup.l2_chain_id, &rollup.forks, params, Some(rollup.block_time)))
    }

    /// A chain with this id, fork schedule (a fork left out never activates), EIP-1559
    /// parameters and block time; the Superchain's bootnodes.
    fn from_schedule(
        chain_id: u64,
        f: &RegistryForks,
        params: BaseFeeParams,
        block_time: Option<u64>,
    ) -> Self {
        let at = |t: Option<u64>| t.map_or(ForkCondition::Never, ForkCondition::Timestamp);
        let forks = OpChainHardforks::new([
            (OpHardfork::Bedrock, ForkCondition::Block(0)),
            (OpHardfork::Regolith, at(f.regolith_time.or(Some(0)))),
            (OpHardfork::Canyon, at(f.canyon_time)),
            (OpHardfork::Ecotone, at(f.ecotone_time)),
            (OpHardfork::Fjord, at(f.fjord_time)),
            (OpHardfork::Granite, at(f.granite_time)),
            (OpHardfork::Holocene, at(f.holocene_time)),
            (OpHardfork::Isthmus, at(f.isthmus_time)),
            (OpHardfork::Jovian, at(f.jovian_time)),
            (OpHardfork::Karst, at(f.karst_time)),
            (OpHardfork::Interop, at(f.interop_time)),
        ]);
        Self {
            name: ChainName::Devnet,
            chain_id,
            unsafe_block_signer: None,
            flashblocks_url: None,
            bootnodes: SUPERCHAIN_BOOTNODES,
            chain: ChainConfig::with_hardforks(chain_id, forks, params),
            native_blocks_timestamp: None,
            // The config gives the block time; the flashblock interval is the stream's own.
            cadence: block_time.map(|secs| Cadence {
                block_time: std::time::Duration::from_secs(secs),
                flashblock_interval: None,
            }),
        }
    }

    /// The preset's name as `--chain` takes it.
    pub fn label(&self) -> String {
        self.name.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }

    /// The preset whose chain id this is, if any (the devnet's default id included).
    pub fn by_chain_id(chain_id: u64) -> Option<Self> {
        [
            ChainName::Base,
            ChainName::BaseSepolia,
            ChainName::Optimism,
            ChainName::OpSepolia,
            ChainName::Unichain,
            ChainName::UnichainSepolia,
        ]
        .into_iter()
        .map(|n| Self::of(n, 901))
        .find(|p| p.chain_id == chain_id)
    }

    /// The flag defaults this preset sets, by long flag name. Flags a subcommand does not have
    /// are skipped by the config loader, so presets can name flags of optional features.
    pub fn flag_defaults(&self) -> Vec<(&'static str, toml::Value)> {
        let mut out = Vec::new();
        if let Some(url) = self.flashblocks_url {
            out.push(("flashblocks-url", toml::Value::String(url.to_string())));
        }
        if let Some(signer) = self.unsafe_block_signer {
            out.push(("p2p-sequencer-address", toml::Value::String(signer.to_string())));
        }
        if !self.bootnodes.is_empty() {
            let nodes = self.bootnodes.iter().map(|n| toml::Value::String(n.to_string())).collect();
            out.push(("p2p-bootnodes", toml::Value::Array(nodes)));
        }
        if let Some(at) = self.native_blocks_timestamp {
            out.push(("native-blocks-timestamp", toml::Value::Integer(at as i64)));
        }
        if self.name == ChainName::Devnet {
            out.push(("chain-id", toml::Value::Integer(self.chain_id as i64)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use op_revm::OpSpecId;

    /// Unichain Sepolia's registry file (`superchain/configs/sepolia/unichain.toml`, the keys
    /// this node reads) gives the schedule and fee parameters of the preset.
    #[test]
    fn a_registry_chain_config_gives_the_same_rules_as_the_preset() {
        let dir = std::env::temp_dir().join(format!("flashnode-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unichain.toml");
        std::fs::write(
            &path,
            "name = \"Unichain Sepolia Testnet\"\nchain_id = 1301\nblock_time = 1\n\
             superchain_time = 1734559200\n\n[hardforks]\ncanyon_time = 0\ndelta_time = 0\n\
             ecotone_time = 0\nfjord_time = 0\ngranite_time = 0\nholocene_time = 1734559200\n\
             pectra_blob_schedule_time = 1742486400\nisthmus_time = 1744905600\n\
             jovian_time = 1763568001\nkarst_time = 1781712001\n\n[optimism]\n\
             eip1559_elasticity = 6\neip1559_denominator = 50\neip1559_denominator_canyon = 250\n",
        )
        .unwrap();
        let loaded = ChainPreset::from_registry_file(&path).unwrap();
        let preset = ChainPreset::of(ChainName::UnichainSepolia, 901);
        assert_eq!(loaded.chain_id, 1301);
        assert_eq!(loaded.chain.base_fee_params, preset.chain.base_fee_params);
        for t in [0, 1_734_559_199, 1_734_559_200, 1_744_905_600, 1_763_568_001, 1_781_712_001] {
            assert_eq!(loaded.chain.spec_at(t), preset.chain.spec_at(t), "at {t}");
        }
        std::fs::write(&path, "chain_id = \"x\"").unwrap();
        let err = ChainPreset::from_registry_file(&path).unwrap_err().to_string();
        assert!(err.contains("not a superchain-registry chain config"), "{err}");
    }

    /// The same chain as its op-node's `optimism_rollupConfig` answers it (op-node's
    /// `rollup.Config` JSON, with keys this node ignores) gives the same rules.
    #[test]
    fn an_op_node_rollup_config_gives_the_same_rules_as_the_preset() {
        let config = serde_json::json!({
            "genesis": {"l1": {"hash": "0x01", "number": 7}, "l2": {"hash": "0x02", "number": 0},
                        "l2_time": 1730748359, "system_config": {"gasLimit": 30000000}},
            "block_time": 1, "max_sequencer_drift": 600, "seq_window_size": 3600,
            "channel_timeout": 300, "l1_chain_id": 11155111, "l2_chain_id": 1301,
            "regolith_time": 0, "canyon_time": 0, "delta_time": 0, "ecotone_time": 0,
            "fjord_time": 0, "granite_time": 0, "holocene_time": 1734559200,
            "pectra_blob_schedule_time": 1742486400, "isthmus_time": 1744905600,
            "jovian_time": 1763568001, "karst_time": 1781712001,
            "batch_inbox_address": "0xff00000000000000000000000000000000001301",
            "chain_op_config": {"eip1559Elasticity": 6, "eip1559Denominator": 50,
                                "eip1559DenominatorCanyon": 250},
        });
        let loaded = ChainPreset::from_rollup_config(config).unwrap();
        let preset = ChainPreset::of(ChainName::UnichainSepolia, 901);
        assert_eq!(loaded.chain_id, 1301);
        assert_eq!(loaded.chain.base_fee_params, preset.chain.base_fee_params);
        assert_eq!(loaded.cadence.map(|c| c.block_time), Some(std::time::Duration::from_secs(1)));
        for t in [0, 1_734_559_199, 1_734_559_200, 1_744_905_600, 1_763_568_001, 1_781_712_001] {
            assert_eq!(loaded.chain.spec_at(t), preset.chain.spec_at(t), "at {t}");
        }
        assert!(ChainPreset::from_rollup_config(serde_json::json!({"block_time": 2})).is_err());
    }

    #[test]
    fn every_preset_loads_with_its_schedule() {
        for name in ChainName::value_variants() {
            let preset = ChainPreset::of(*name, 901);
            assert_eq!(preset.chain.chain_id, preset.chain_id);
            if *name != ChainName::Devnet {
                assert!(preset.unsafe_block_signer.is_some(), "{name:?} has a signer");
                // Isthmus activated on every public chain in May 2025 (1746806401 on mainnets).
                assert!(matches!(
                    preset.chain.spec_at(1_747_000_000),
                    OpSpecId::ISTHMUS | OpSpecId::JOVIAN
                ));
                assert!(preset.chain.spec_at(1_700_000_000) < OpSpecId::ISTHMUS);
                assert_eq!(ChainPreset::by_chain_id(preset.chain_id).map(|p| p.name), Some(*name));
            }
        }
        // Denim, after Jovian, in the published order (Sepolia first).
        let base = ChainPreset::of(ChainName::Base, 901);
        assert_eq!(base.native_blocks_timestamp, Some(BASE_MAINNET_DENIM_TIMESTAMP));
        const {
            assert!(BASE_SEPOLIA_DENIM_TIMESTAMP < BASE_MAINNET_DENIM_TIMESTAMP);
            assert!(
                BASE_MAINNET_DENIM_TIMESTAMP > alloy_op_hardforks::BASE_MAINNET_JOVIAN_TIMESTAMP
            );
        }
        assert!(base.flag_defaults().iter().any(|(k, _)| *k == "native-blocks-timestamp"));
        // Karst, from the registry, on the OP Stack chains that stream (Jovian before it).
        for (name, karst) in [
            (ChainName::Optimism, SUPERCHAIN_MAINNET_KARST_TIMESTAMP),
            (ChainName::Unichain, SUPERCHAIN_MAINNET_KARST_TIMESTAMP),
            (ChainName::OpSepolia, SUPERCHAIN_SEPOLIA_KARST_TIMESTAMP),
            (ChainName::UnichainSepolia, SUPERCHAIN_SEPOLIA_KARST_TIMESTAMP),
        ] {
            let chain = ChainPreset::of(name, 901).chain;
            assert_eq!(chain.spec_at(karst), OpSpecId::KARST, "{name:?}");
            assert_eq!(chain.spec_at(karst - 1), OpSpecId::JOVIAN, "{name:?}");
        }
        // Unichain: every fork to Granite at genesis; its own Holocene and Isthmus.
        let uni = ChainPreset::of(ChainName::Unichain, 901);
        assert_eq!(uni.chain.spec_at(1_730_748_359), OpSpecId::GRANITE, "at genesis");
        assert_eq!(uni.chain.spec_at(1_736_445_601), OpSpecId::HOLOCENE);
        assert_eq!(uni.chain.spec_at(1_746_806_401), OpSpecId::ISTHMUS);
        assert_eq!(
            ChainPreset::by_chain_id(1301).map(|p| p.flashblocks_url),
            Some(Some("wss://sepolia-flashblocks.unichain.org/ws"))
        );
        assert_eq!(ChainPreset::of(ChainName::Optimism, 901).native_blocks_timestamp, None);
        assert_eq!(base.label(), "base");
        let jovian = alloy_op_hardforks::BASE_MAINNET_JOVIAN_TIMESTAMP;
        assert_eq!(ChainPreset::of(ChainName::Base, 901).chain.spec_at(jovian), OpSpecId::JOVIAN);
        assert_eq!(
            ChainPreset::of(ChainName::Base, 901).chain.spec_at(jovian - 1),
            OpSpecId::ISTHMUS
        );
    }
}
