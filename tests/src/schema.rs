//! The execution-apis schemas (ethereum/execution-apis `src/schemas`: `receipt.yaml`,
//! `transaction.yaml`, `block.yaml`, `base-types.yaml`) as checks on JSON values: the required
//! fields of each object the node serves and the pattern of every field's base type. Strict
//! clients (ethers v6) refuse what these refuse, so every preconfirmed object is checked here.
//! OP's extra receipt and deposit fields are allowed; fields the schemas do not name are not
//! checked.

use serde_json::{Map, Value};

/// A base type of the schemas (`base-types.yaml`).
#[derive(Clone, Copy, Debug)]
enum Ty {
    /// `^0x[0-9a-f]{64}$`
    Hash32,
    /// `^0x(0|[1-9a-f][0-9a-f]*)$`: a quantity without leading zeros.
    Uint,
    /// `^0x[0-9a-fA-F]{40}$`
    Address,
    /// `^0x[0-9a-f]*$`
    Bytes,
    /// `^0x[0-9a-f]{16}$`
    Bytes8,
    /// `^0x[0-9a-f]{512}$`
    Bytes256,
    /// `^0x[0-9a-f]{1,2}$`
    Byte,
    /// A JSON boolean.
    Bool,
    /// An array (its items are checked separately).
    Array,
    /// An address or `null` (`to`, `contractAddress`).
    AddressOrNull,
}

fn hex_body(s: &str) -> Option<&str> {
    let body = s.strip_prefix("0x")?;
    body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)).then_some(body)
}

fn matches(ty: Ty, v: &Value) -> bool {
    let s = v.as_str();
    match ty {
        Ty::Hash32 => s.and_then(hex_body).is_some_and(|b| b.len() == 64),
        Ty::Uint => {
            s.and_then(hex_body).is_some_and(|b| b == "0" || (!b.is_empty() && !b.starts_with('0')))
        }
        Ty::Address => s
            .and_then(|s| s.strip_prefix("0x"))
            .is_some_and(|b| b.len() == 40 && b.bytes().all(|c| c.is_ascii_hexdigit())),
        Ty::Bytes => s.and_then(hex_body).is_some(),
        Ty::Bytes8 => s.and_then(hex_body).is_some_and(|b| b.len() == 16),
        Ty::Bytes256 => s.and_then(hex_body).is_some_and(|b| b.len() == 512),
        Ty::Byte => s.and_then(hex_body).is_some_and(|b| (1..=2).contains(&b.len())),
        Ty::Bool => v.is_boolean(),
        Ty::Array => v.is_array(),
        Ty::AddressOrNull => v.is_null() || matches(Ty::Address, v),
    }
}

/// (field, type, required)
type Fields = &'static [(&'static str, Ty, bool)];

const RECEIPT: Fields = &[
    ("type", Ty::Byte, false),
    ("transactionHash", Ty::Hash32, true),
    ("transactionIndex", Ty::Uint, true),
    ("blockHash", Ty::Hash32, true),
    ("blockNumber", Ty::Uint, true),
    ("from", Ty::Address, true),
    ("to", Ty::AddressOrNull, false),
    ("cumulativeGasUsed", Ty::Uint, true),
    ("gasUsed", Ty::Uint, true),
    ("contractAddress", Ty::AddressOrNull, false),
    ("logs", Ty::Array, true),
    ("logsBloom", Ty::Bytes256, true),
    ("root", Ty::Hash32, false),
    ("status", Ty::Uint, false),
    ("effectiveGasPrice", Ty::Uint, true),
    ("blobGasUsed", Ty::Uint, false),
    ("blobGasPrice", Ty::Uint, false),
];

const LOG: Fields = &[
    ("removed", Ty::Bool, false),
    ("logIndex", Ty::Uint, false),
    ("transactionIndex", Ty::Uint, false),
    ("transactionHash", Ty::Hash32, true),
    ("blockHash", Ty::Hash32, false),
    ("blockNumber", Ty::Uint, false),
    ("blockTimestamp", Ty::Uint, false),
    ("address", Ty::Address, false),
    ("data", Ty::Bytes, false),
    ("topics", Ty::Array, false),
];

/// The context part of `TransactionInfo`: where the transaction sits. None is nullable.
const TX_CONTEXT: Fields = &[
    ("blockHash", Ty::Hash32, true),
    ("blockNumber", Ty::Uint, true),
    ("blockTimestamp", Ty::Uint, true),
    ("from", Ty::Address, true),
    ("hash", Ty::Hash32, true),
    ("transactionIndex", Ty::Uint, true),
];

/// The fields every transaction type has (`to` of 7702 is checked again, as required).
const TX_COMMON: Fields = &[
    ("type", Ty::Byte, true),
    ("nonce", Ty::Uint, true),
    ("to", Ty::AddressOrNull, false),
    ("gas", Ty::Uint, true),
    ("value", Ty::Uint, true),
    ("input", Ty::Bytes, true),
];

/// The signature of a typed (2930, 1559, 7702) transaction.
const TX_TYPED_SIGNATURE: Fields =
    &[("yParity", Ty::Byte, true), ("r", Ty::Uint, true), ("s", Ty::Uint, true)];

const TX_LEGACY: Fields = &[
    ("gasPrice", Ty::Uint, true),
    ("chainId", Ty::Uint, false),
    ("v", Ty::Uint, true),
    ("r", Ty::Uint, true),
    ("s", Ty::Uint, true),
];

const TX_2930: Fields =
    &[("gasPrice", Ty::Uint, true), ("chainId", Ty::Uint, true), ("accessList", Ty::Array, true)];

const TX_1559: Fields = &[
    ("maxFeePerGas", Ty::Uint, true),
    ("maxPriorityFeePerGas", Ty::Uint, true),
    ("gasPrice", Ty::Uint, true),
    ("chainId", Ty::Uint, true),
    ("accessList", Ty::Array, true),
];

const TX_7702: Fields = &[
    ("to", Ty::Address, true),
    ("maxFeePerGas", Ty::Uint, true),
    ("maxPriorityFeePerGas", Ty::Uint, true),
    ("chainId", Ty::Uint, true),
    ("accessList", Ty::Array, true),
    ("authorizationList", Ty::Array, true),
];

/// OP deposit transactions (type `0x7e`) are not in execution-apis: the fields every client
/// reads of them (op-alloy's `TxDeposit` shape) besides [`TX_COMMON`].
const TX_DEPOSIT: Fields = &[("sourceHash", Ty::Hash32, true), ("mint", Ty::Uint, false)];

const BLOCK: Fields = &[
    ("hash", Ty::Hash32, true),
    ("parentHash", Ty::Hash32, true),
    ("sha3Uncles", Ty::Hash32, true),
    ("miner", Ty::Address, true),
    ("stateRoot", Ty::Hash32, true),
    ("transactionsRoot", Ty::Hash32, true),
    ("receiptsRoot", Ty::Hash32, true),
    ("logsBloom", Ty::Bytes256, true),
    ("difficulty", Ty::Uint, false),
    ("number", Ty::Uint, true),
    ("gasLimit", Ty::Uint, true),
    ("gasUsed", Ty::Uint, true),
    ("timestamp", Ty::Uint, true),
    ("extraData", Ty::Bytes, true),
    ("mixHash", Ty::Hash32, true),
    ("nonce", Ty::Bytes8, true),
    ("baseFeePerGas", Ty::Uint, false),
    ("withdrawalsRoot", Ty::Hash32, false),
    ("blobGasUsed", Ty::Uint, false),
    ("excessBlobGas", Ty::Uint, false),
    ("parentBeaconBlockRoot", Ty::Hash32, false),
    ("requestsHash", Ty::Hash32, false),
    ("size", Ty::Uint, true),
    ("transactions", Ty::Array, true),
    ("uncles", Ty::Array, true),
];

fn check_fields(what: &str, v: &Value, fields: Fields) -> Result<(), String> {
    let obj: &Map<String, Value> =
        v.as_object().ok_or_else(|| format!("{what}: not an object: {v}"))?;
    for (name, ty, required) in fields {
        match obj.get(*name) {
            None if *required => return Err(format!("{what}: required `{name}` missing: {v}")),
            None => {}
            Some(field) if !matches(*ty, field) => {
                return Err(format!("{what}: `{name}` is not {ty:?}: {field} in {v}"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks an `eth_getLogs` / `pendingLogs` item.
pub fn check_log(v: &Value) -> Result<(), String> {
    check_fields("log", v, LOG)?;
    for topic in v["topics"].as_array().into_iter().flatten() {
        if !matches(Ty::Hash32, topic) {
            return Err(format!("log: topic {topic} is not bytes32"));
        }
    }
    Ok(())
}

/// Checks an `eth_getTransactionReceipt` answer (`ReceiptInfo`), its logs included.
pub fn check_receipt(v: &Value) -> Result<(), String> {
    check_fields("receipt", v, RECEIPT)?;
    if v.get("status").is_none() && v.get("root").is_none() {
        return Err(format!("receipt: neither `status` nor `root`: {v}"));
    }
    for log in v["logs"].as_array().into_iter().flatten() {
        check_log(log)?;
    }
    Ok(())
}

/// Checks an `eth_getTransactionByHash` answer (`TransactionInfo`): where it sits, and the
/// fields of its type.
pub fn check_transaction(v: &Value) -> Result<(), String> {
    check_fields("transaction", v, TX_CONTEXT)?;
    check_fields("transaction", v, TX_COMMON)?;
    let (fields, typed) = match v["type"].as_str() {
        Some("0x0") => (TX_LEGACY, false),
        Some("0x1") => (TX_2930, true),
        Some("0x2") => (TX_1559, true),
        Some("0x4") => (TX_7702, true),
        Some("0x7e") => (TX_DEPOSIT, false),
        other => return Err(format!("transaction: type {other:?} not checked: {v}")),
    };
    if typed {
        check_fields("transaction", v, TX_TYPED_SIGNATURE)?;
    }
    check_fields("transaction", v, fields)
}

/// Checks an `eth_getBlockByNumber` / `eth_getBlockByHash` answer, and its transactions when
/// they are full objects.
pub fn check_block(v: &Value) -> Result<(), String> {
    check_fields("block", v, BLOCK)?;
    for tx in v["transactions"].as_array().into_iter().flatten() {
        if tx.is_string() {
            if !matches(Ty::Hash32, tx) {
                return Err(format!("block: transaction hash {tx} is not hash32"));
            }
        } else {
            check_transaction(tx)?;
            if tx["blockHash"] != v["hash"] {
                return Err(format!("block: a transaction's blockHash is not the block's: {tx}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_block_hash_is_refused() {
        let log = json!({"transactionHash": format!("0x{}", "ab".repeat(32)), "blockHash": null});
        assert!(check_log(&log).unwrap_err().contains("blockHash"));
        assert!(matches(Ty::Uint, &json!("0x0")) && matches(Ty::Uint, &json!("0x1f")));
        assert!(!matches(Ty::Uint, &json!("0x01")) && !matches(Ty::Uint, &json!("0x")));
        assert!(!matches(Ty::Hash32, &json!(format!("0x{}", "AB".repeat(32)))));
    }
}
