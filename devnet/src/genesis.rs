//! The devnet's genesis: the ten well-known dev accounts and the OP predeploys it needs.

use alloy_primitives::{Address, B256, U256};
use alloy_signer_local::{coins_bip39::English, MnemonicBuilder, PrivateKeySigner};
use flashnode_exec::{l1_block_bytecode, MemDb};
use op_revm::constants::L1_BLOCK_CONTRACT;
use revm::{
    database::EmptyDB,
    state::{AccountInfo, Bytecode},
};

/// The mnemonic anvil and hardhat derive their dev accounts from.
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// How many dev accounts are funded.
pub const DEV_ACCOUNTS: u32 = 10;

/// A funded dev account with its key.
#[derive(Clone, Debug)]
pub struct DevAccount {
    /// Address.
    pub address: Address,
    /// Signer holding the private key.
    pub signer: PrivateKeySigner,
}

impl DevAccount {
    /// The private key as 0x-prefixed hex.
    pub fn private_key_hex(&self) -> String {
        format!("0x{}", alloy_primitives::hex::encode(self.signer.to_bytes()))
    }
}

/// The ten dev accounts of [`DEV_MNEMONIC`] (BIP-44 path m/44'/60'/0'/0/i).
pub fn dev_accounts() -> Vec<DevAccount> {
    (0..DEV_ACCOUNTS)
        .map(|i| {
            let signer = MnemonicBuilder::<English>::default()
                .phrase(DEV_MNEMONIC)
                .index(i)
                .and_then(|b| b.build())
                .expect("the dev mnemonic and its derivation path are valid constants");
            DevAccount { address: signer.address(), signer }
        })
        .collect()
}

/// The balance every dev account starts with: 10,000 ETH.
pub fn dev_balance() -> U256 {
    U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18u64))
}

/// Genesis state: funded dev accounts and the `L1Block` predeploy.
pub fn genesis_state(accounts: &[DevAccount]) -> MemDb {
    let mut db = MemDb::new(EmptyDB::default());
    for acc in accounts {
        db.insert_account_info(
            acc.address,
            AccountInfo { balance: dev_balance(), ..Default::default() },
        );
    }
    let code = Bytecode::new_raw(l1_block_bytecode());
    db.insert_account_info(
        L1_BLOCK_CONTRACT,
        AccountInfo {
            code_hash: code.hash_slow(),
            code: Some(code),
            nonce: 1,
            ..Default::default()
        },
    );
    db
}

/// Parent beacon root placeholder of the genesis block.
pub const GENESIS_BEACON_ROOT: B256 = B256::ZERO;

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn derives_the_well_known_dev_accounts() {
        let accounts = dev_accounts();
        assert_eq!(accounts.len(), 10);
        assert_eq!(accounts[0].address, address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"));
        assert_eq!(accounts[9].address, address!("0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"));
        assert_eq!(
            accounts[0].private_key_hex(),
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        );
    }
}
