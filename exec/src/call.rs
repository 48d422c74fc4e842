//! `eth_call` / `eth_estimateGas` execution in a given block environment over any state.

use crate::{
    access_list::AccessListInspector,
    builder::BlockEnvInput,
    chain::ChainConfig,
    error::{split_evm_error, Rejection, StateError},
};
use alloy_evm::{Evm, EvmEnv, EvmFactory};
use alloy_op_evm::{OpEvmFactory, OpTx, OpTxError};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_rpc_types_eth::{state::StateOverride, AccessList, BlockOverrides, TransactionRequest};
use alloy_sol_types::{Revert, SolError};
use op_revm::{OpHaltReason, OpSpecId, OpTransaction, OpTransactionError};
use revm::{
    bytecode::Bytecode,
    context::TxEnv,
    context_interface::result::{
        EVMError, ExecutionResult, HaltReason, InvalidTransaction, OutOfGasError,
    },
    database::CacheDB,
    database_interface::DatabaseRef,
    interpreter::Interpreter,
    Database, Inspector,
};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Largest call input accepted (512 KiB, four times a tx pool's 128 KiB transaction limit):
/// bigger inputs are refused before execution instead of tying up an executor thread.
pub const MAX_CALL_INPUT_BYTES: usize = 512 * 1024;

/// Gas of a plain value transfer.
pub const TRANSFER_GAS: u64 = 21_000;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call reverted; `reason` is the decoded `Error(string)` when there is one.
    #[error("execution reverted{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Revert {
        /// Decoded revert reason.
        reason: Option<String>,
        /// Raw revert data.
        output: Bytes,
    },
    /// The call halted (out of gas, invalid opcode…).
    #[error("{}", halt_message(.0))]
    Halt(OpHaltReason),
    /// The call ran out of gas at the highest allowed limit.
    #[error("gas required exceeds allowance ({0})")]
    GasExceedsAllowance(u64),
    /// The caller cannot pay for value plus gas.
    #[error("insufficient funds for gas * price + value")]
    InsufficientFunds,
    /// The request itself is invalid (our own checks: size, fee fields, overrides, gas cap).
    #[error(transparent)]
    Invalid(#[from] InvalidCall),
    /// The EVM refused the transaction the request makes (nonce, fee, gas-limit checks).
    #[error("{0}")]
    Rejected(#[source] Rejection),
    /// The state could not be read.
    #[error("state unavailable: {0}")]
    State(#[source] StateError),
    /// The request's wall-clock execution budget ran out (geth's `--rpc.evmtimeout`).
    #[error("execution aborted (timeout = {}s)", .0.as_secs_f64())]
    Timeout(Duration),
    /// The caller gave up (its client went away) and the execution was stopped.
    #[error("execution cancelled: the client went away")]
    Cancelled,
}

impl CallError {
    pub(crate) fn state(e: impl core::error::Error + Send + Sync + 'static) -> Self {
        Self::State(StateError::new(e))
    }
}

/// What is wrong with a call request, found by our own checks before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCall {
    /// The call's input is larger than [`MAX_CALL_INPUT_BYTES`].
    #[error("call input of {len} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge {
        /// Bytes of input.
        len: usize,
        /// The limit, bytes.
        limit: usize,
    },
    /// `maxPriorityFeePerGas` is above `maxFeePerGas`.
    #[error("maxPriorityFeePerGas higher than maxFeePerGas")]
    TipAboveFeeCap,
    /// The request asks for more gas than the node's cap.
    #[error("gas {gas} above the cap {cap}")]
    GasAboveCap {
        /// Gas asked for.
        gas: u64,
        /// The cap.
        cap: u64,
    },
    /// A state override sets both the full `state` and a `stateDiff` of one account.
    #[error("account {0} has both 'state' and 'stateDiff'")]
    StateAndStateDiff(Address),
    /// A state override asks for `movePrecompileToAddress`, which this node does not support.
    #[error("movePrecompileToAddress is not supported")]
    MovePrecompileUnsupported,
}

/// What one request may spend on execution: a wall-clock deadline (geth's `--rpc.evmtimeout`)
/// and a cancel flag its caller sets when the client goes away. Checked by a
/// [`BudgetInspector`] every few thousand instructions, in every frame, and before every
/// execution of a request (estimation runs many).
#[derive(Clone, Debug)]
pub struct Budget {
    timeout: Option<(Duration, Instant)>,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    /// No deadline and nobody to cancel: the devnet's and the tests' calls.
    pub fn unlimited() -> Self {
        Self { timeout: None, cancelled: Arc::new(AtomicBool::new(false)) }
    }

    /// A budget of `timeout` from now.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout: Some((timeout, Instant::now() + timeout)),
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops the executions under this budget at their next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Why execution must stop now, if it must.
    pub fn check(&self) -> Result<(), CallError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(CallError::Cancelled);
        }
        match self.timeout {
            Some((timeout, deadline)) if Instant::now() >= deadline => {
                Err(CallError::Timeout(timeout))
            }
            _ => Ok(()),
        }
    }

    fn is_unlimited(&self) -> bool {
        self.timeout.is_none() && !self.cancelled.load(Ordering::Relaxed)
    }
}

/// Instructions between two budget checks (a check reads the clock).
const BUDGET_CHECK_EVERY: u32 = 4096;

/// Halts every frame once its [`Budget`] is spent; the execution then ends as out of gas and
/// the caller reports [`Budget::check`]'s reason instead.
#[derive(Debug)]
pub struct BudgetInspector {
    budget: Budget,
    steps: u32,
    spent: bool,
}

impl BudgetInspector {
    /// Watches `budget`.
    pub fn new(budget: Budget) -> Self {
        Self { budget, steps: 0, spent: false }
    }
}

impl<CTX> Inspector<CTX> for BudgetInspector {
    fn step(&mut self, interp: &mut Interpreter, _context: &mut CTX) {
        if !self.spent {
            self.steps += 1;
            if self.steps < BUDGET_CHECK_EVERY {
                return;
            }
            self.steps = 0;
            self.spent = self.budget.check().is_err();
        }
        if self.spent {
            interp.halt_oog();
        }
    }
}

/// The outcome of a successful call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// Return data.
    pub output: Bytes,
    /// Gas used.
    pub gas_used: u64,
}

/// Turns a request into the OP transaction environment; fees default to zero as in geth.
pub fn tx_env(
    chain: &ChainConfig,
    req: &TransactionRequest,
    gas_limit: u64,
) -> Result<OpTx, CallError> {
    let input_len = req.input.input().map(|d| d.len()).unwrap_or_default();
    if input_len > MAX_CALL_INPUT_BYTES {
        return Err(
            InvalidCall::InputTooLarge { len: input_len, limit: MAX_CALL_INPUT_BYTES }.into()
        );
    }
    let gas_price = req.max_fee_per_gas.or(req.gas_price).unwrap_or_default();
    let priority = req.max_priority_fee_per_gas;
    if let (Some(max), Some(tip)) = (req.max_fee_per_gas, priority) {
        if tip > max {
            return Err(InvalidCall::TipAboveFeeCap.into());
        }
    }
    let base = TxEnv {
        // As geth's call args: 1559 fields make a type-2 tx, an access list alone a type-1
        // one (a legacy tx would ignore the list's gas).
        tx_type: if req.max_fee_per_gas.is_some() || priority.is_some() {
            2
        } else if req.access_list.is_some() {
            1
        } else {
            0
        },
        caller: req.from.unwrap_or_default(),
        gas_limit,
        gas_price,
        gas_priority_fee: priority,
        kind: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or_default(),
        data: req.input.input().cloned().unwrap_or_default(),
        nonce: req.nonce.unwrap_or_default(),
        chain_id: Some(chain.chain_id),
        access_list: req.access_list.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut op = OpTransaction::new(base);
    // An empty envelope: calls pay no L1 data fee, as in op-geth and op-reth.
    op.enveloped_tx = Some(Bytes::new());
    Ok(OpTx(op))
}

/// Runs `req` over `db` in `block`'s environment without committing anything.
pub fn call<DB>(
    db: DB,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas_cap: u64,
) -> Result<CallOutcome, CallError>
where
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    call_budgeted(db, chain, block, req, gas_cap, &Budget::unlimited())
}

/// [`call`] within `budget`.
pub fn call_budgeted<DB>(
    db: DB,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas_cap: u64,
    budget: &Budget,
) -> Result<CallOutcome, CallError>
where
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    let gas = req.gas.unwrap_or(block.gas_limit.min(gas_cap));
    if gas > gas_cap {
        return Err(InvalidCall::GasAboveCap { gas, cap: gas_cap }.into());
    }
    let result = transact(db, chain, block, req, gas, budget)?;
    // A call that runs out of gas says so, as geth does; estimation reports the allowance.
    outcome(result, gas).map_err(|e| match e {
        CallError::GasExceedsAllowance(_) => {
            CallError::Halt(OpHaltReason::Base(HaltReason::OutOfGas(OutOfGasError::Basic)))
        }
        other => other,
    })
}

fn transact<DB>(
    db: DB,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas: u64,
    budget: &Budget,
) -> Result<ExecutionResult<OpHaltReason>, CallError>
where
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    budget.check()?;
    let (env, tx) = prepare(chain, block, req, gas)?;
    if budget.is_unlimited() {
        let mut evm = OpEvmFactory::<OpTx>::default().create_evm(db, env);
        return evm.transact(tx).map(|r| r.result).map_err(evm_error);
    }
    let inspector = BudgetInspector::new(budget.clone());
    let mut evm = OpEvmFactory::<OpTx>::default().create_evm_with_inspector(db, env, inspector);
    let result = evm.transact(tx).map(|r| r.result).map_err(evm_error);
    // A halted execution reads as out of gas; the budget says what really stopped it.
    budget.check()?;
    result
}

/// The call environment: no block gas limit, no EIP-3607, no nonce check (as geth's
/// SkipNonceChecks), and no base fee when the call pays no gas price.
fn prepare(
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas: u64,
) -> Result<(EvmEnv<OpSpecId>, OpTx), CallError> {
    let mut env = block.evm_env(chain);
    env.cfg_env.disable_block_gas_limit = true;
    env.cfg_env.disable_eip3607 = true;
    env.cfg_env.disable_nonce_check = true;
    let tx = tx_env(chain, req, gas)?;
    if tx.0.base.gas_price == 0 {
        env.cfg_env.disable_base_fee = true;
    }
    Ok((env, tx))
}

fn evm_error<E>(e: EVMError<E, OpTxError>) -> CallError
where
    E: core::error::Error + Send + Sync + 'static,
{
    match split_evm_error(e) {
        Err(db) => CallError::state(db),
        Ok(EVMError::Transaction(OpTxError(OpTransactionError::Base(
            InvalidTransaction::LackOfFundForMaxFee { .. },
        )))) => CallError::InsufficientFunds,
        Ok(rejection) => CallError::Rejected(rejection),
    }
}

/// The answer to `eth_createAccessList`, shaped as geth and reth return it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessListOutcome {
    /// Accounts and slots the call touches (beyond sender, recipient and precompiles).
    pub access_list: AccessList,
    /// Gas the call uses with that access list attached.
    #[serde(with = "alloy_serde_quantity")]
    pub gas_used: u64,
    /// Why the call failed, when it did (the list is still returned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

mod alloy_serde_quantity {
    pub fn serialize<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&alloy_primitives::U64::from(*v), s)
    }
}

/// Runs `req` once with an [`AccessListInspector`] to collect what it touches, then again
/// with that list attached to measure its gas, as reth does.
pub fn create_access_list<DB, F>(
    db_factory: F,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas_cap: u64,
) -> Result<AccessListOutcome, CallError>
where
    F: FnMut() -> DB,
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    create_access_list_budgeted(db_factory, chain, block, req, gas_cap, &Budget::unlimited())
}

/// [`create_access_list`] within `budget`.
pub fn create_access_list_budgeted<DB, F>(
    mut db_factory: F,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas_cap: u64,
    budget: &Budget,
) -> Result<AccessListOutcome, CallError>
where
    F: FnMut() -> DB,
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    budget.check()?;
    let gas = req.gas.unwrap_or(block.gas_limit.min(gas_cap));
    if gas > gas_cap {
        return Err(InvalidCall::GasAboveCap { gas, cap: gas_cap }.into());
    }
    let (env, tx) = prepare(chain, block, req, gas)?;
    let mut excluded = vec![tx.0.base.caller];
    if let TxKind::Call(to) = tx.0.base.kind {
        excluded.push(to);
    }
    let initial = req.access_list.clone().unwrap_or_default();
    let inspector =
        (AccessListInspector::new(&initial, excluded), BudgetInspector::new(budget.clone()));
    let mut evm =
        OpEvmFactory::<OpTx>::default().create_evm_with_inspector(db_factory(), env, inspector);
    let precompiles: Vec<_> = evm.precompiles().addresses().copied().collect();
    evm.inspector_mut().0.exclude(precompiles);
    evm.transact(tx).map_err(evm_error)?;
    budget.check()?;
    let (_, inspector, _) = evm.components_mut();
    let access_list = std::mem::take(&mut inspector.0).into_access_list();

    let mut with_list = req.clone();
    with_list.access_list = Some(access_list.clone());
    let result = transact(db_factory(), chain, block, &with_list, gas, budget)?;
    let gas_used = result.tx_gas_used();
    let error = match outcome(result, gas) {
        Ok(_) => None,
        Err(CallError::GasExceedsAllowance(_)) => Some("out of gas".into()),
        Err(e) => Some(e.to_string()),
    };
    Ok(AccessListOutcome { access_list, gas_used, error })
}

fn outcome(result: ExecutionResult<OpHaltReason>, gas: u64) -> Result<CallOutcome, CallError> {
    match result {
        ExecutionResult::Success { .. } => {
            let gas_used = result.tx_gas_used();
            Ok(CallOutcome { output: result.into_output().unwrap_or_default(), gas_used })
        }
        ExecutionResult::Revert { output, .. } => {
            Err(CallError::Revert { reason: decode_revert_reason(&output), output })
        }
        ExecutionResult::Halt { reason, .. } => Err(match reason {
            OpHaltReason::Base(HaltReason::OutOfGas(_)) => CallError::GasExceedsAllowance(gas),
            other => CallError::Halt(other),
        }),
    }
}

fn halt_message(reason: &OpHaltReason) -> String {
    match reason {
        OpHaltReason::Base(HaltReason::OutOfGas(OutOfGasError::Basic)) => "out of gas".into(),
        OpHaltReason::Base(HaltReason::OpcodeNotFound | HaltReason::InvalidFEOpcode) => {
            "invalid opcode".into()
        }
        OpHaltReason::Base(HaltReason::StackUnderflow) => "stack underflow".into(),
        OpHaltReason::Base(HaltReason::StackOverflow) => "stack overflow".into(),
        other => format!("execution halted: {other:?}"),
    }
}

/// Decodes a Solidity `Error(string)` revert payload.
pub fn decode_revert_reason(output: &[u8]) -> Option<String> {
    Revert::abi_decode(output).ok().map(|r| r.reason)
}

/// Binary-searches the lowest gas limit at which `req` succeeds: geth's early exits and
/// optimistic first guess from the gas used, then bisection to the exact minimum.
pub fn estimate_gas<DB, F>(
    db_factory: F,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas_cap: u64,
    caller_balance: U256,
) -> Result<u64, CallError>
where
    F: FnMut() -> DB,
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    let budget = Budget::unlimited();
    estimate_gas_budgeted(db_factory, chain, block, req, gas_cap, caller_balance, &budget)
}

/// [`estimate_gas`] within `budget` (shared by every execution of the search).
pub fn estimate_gas_budgeted<DB, F>(
    mut db_factory: F,
    chain: &ChainConfig,
    block: &BlockEnvInput,
    req: &TransactionRequest,
    gas_cap: u64,
    caller_balance: U256,
    budget: &Budget,
) -> Result<u64, CallError>
where
    F: FnMut() -> DB,
    DB: Database + core::fmt::Debug,
    DB::Error: core::error::Error + Send + Sync + 'static,
{
    let mut hi = req.gas.unwrap_or(block.gas_limit).min(gas_cap);
    let fee = req.max_fee_per_gas.or(req.gas_price).unwrap_or_default();
    let value = req.value.unwrap_or_default();
    if fee > 0 {
        let available = caller_balance.checked_sub(value).ok_or(CallError::InsufficientFunds)?;
        let allowance = available / U256::from(fee);
        hi = hi.min(allowance.saturating_to::<u64>());
    } else if value > caller_balance {
        return Err(CallError::InsufficientFunds);
    }
    // Plain transfers to accounts without code cost exactly the intrinsic gas.
    let data_empty = req.input.input().map(|d| d.is_empty()).unwrap_or(true);
    if data_empty {
        if let Some(TxKind::Call(to)) = req.to {
            let mut db = db_factory();
            let code_empty = db
                .basic(to)
                .map_err(CallError::state)?
                .map(|a| a.is_empty_code_hash())
                .unwrap_or(true);
            if code_empty && hi >= TRANSFER_GAS {
                let r = transact(db_factory(), chain, block, req, TRANSFER_GAS, budget)?;
                if r.is_success() {
                    return Ok(TRANSFER_GAS);
                }
            }
        }
    }
    let first = transact(db_factory(), chain, block, req, hi, budget)?;
    let used = match &first {
        ExecutionResult::Success { .. } => first.tx_gas_used(),
        _ => return outcome(first, hi).map(|o| o.gas_used),
    };
    let refund = first.gas().final_refunded();
    let mut lo = used.saturating_sub(1);
    // Most calls succeed at used + refund + call stipend, scaled for the 63/64 rule.
    let optimistic = (used + refund + 2_300) * 64 / 63;
    if optimistic < hi {
        let r = transact(db_factory(), chain, block, req, optimistic, budget)?;
        if r.is_success() {
            hi = optimistic;
        } else {
            lo = optimistic;
        }
    }
    // Bisect to the exact minimum (as anvil does) rather than stopping within geth's 1.5%:
    // a dozen more executions, and the answer does not depend on the search's path.
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        let mid = if mid > lo * 2 { lo * 2 } else { mid };
        let r = transact(db_factory(), chain, block, req, mid, budget)?;
        if r.is_success() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Applies `eth_call` state overrides (balance, nonce, code, full `state` or `stateDiff`).
pub fn apply_state_overrides<D>(
    db: &mut CacheDB<D>,
    overrides: &StateOverride,
) -> Result<(), CallError>
where
    D: DatabaseRef,
    D::Error: core::error::Error + Send + Sync + 'static,
{
    for (address, o) in overrides {
        if o.state.is_some() && o.state_diff.is_some() {
            return Err(InvalidCall::StateAndStateDiff(*address).into());
        }
        if o.move_precompile_to.is_some() {
            return Err(InvalidCall::MovePrecompileUnsupported.into());
        }
        let mut info = db.basic(*address).map_err(CallError::state)?.unwrap_or_default();
        if let Some(balance) = o.balance {
            info.balance = balance;
        }
        if let Some(nonce) = o.nonce {
            info.nonce = nonce;
        }
        if let Some(code) = &o.code {
            let code = Bytecode::new_raw(code.clone());
            info.code_hash = code.hash_slow();
            info.code = Some(code);
        }
        db.insert_account_info(*address, info);
        let slot = |k: &alloy_primitives::B256, v: &alloy_primitives::B256| {
            (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0))
        };
        if let Some(state) = &o.state {
            db.replace_account_storage(*address, state.iter().map(|(k, v)| slot(k, v)).collect())
                .map_err(CallError::state)?;
        }
        if let Some(diff) = &o.state_diff {
            for (k, v) in diff {
                let (k, v) = slot(k, v);
                db.insert_account_storage(*address, k, v).map_err(CallError::state)?;
            }
        }
    }
    Ok(())
}

/// Applies `eth_call` block overrides to the environment.
pub fn apply_block_overrides(env: &mut BlockEnvInput, o: &BlockOverrides) {
    if let Some(number) = o.number {
        env.number = number.saturating_to();
    }
    if let Some(time) = o.time {
        env.timestamp = time;
    }
    if let Some(gas_limit) = o.gas_limit {
        env.gas_limit = gas_limit;
    }
    if let Some(coinbase) = o.coinbase {
        env.coinbase = coinbase;
    }
    if let Some(random) = o.random {
        env.prev_randao = random;
    }
    if let Some(base_fee) = o.base_fee {
        env.base_fee = base_fee.saturating_to();
    }
}

/// The optional overrides of an `eth_call` / `eth_estimateGas` request.
#[derive(Clone, Debug, Default)]
pub struct CallOverrides {
    /// State overrides (third `eth_call` param).
    pub state: Option<StateOverride>,
    /// Block overrides (fourth `eth_call` param).
    pub block: Option<BlockOverrides>,
}

impl CallOverrides {
    /// Wraps `db` in a cache with the state overrides applied.
    pub fn database<D>(&self, db: D) -> Result<CacheDB<D>, CallError>
    where
        D: DatabaseRef,
        D::Error: core::error::Error + Send + Sync + 'static,
    {
        let mut cache = CacheDB::new(db);
        if let Some(state) = &self.state {
            apply_state_overrides(&mut cache, state)?;
        }
        Ok(cache)
    }

    /// The environment with the block overrides applied.
    pub fn env(&self, env: &BlockEnvInput) -> BlockEnvInput {
        let mut env = env.clone();
        if let Some(block) = &self.block {
            apply_block_overrides(&mut env, block);
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use alloy_primitives::B256;

    fn estimate(req: &TransactionRequest, gas_cap: u64) -> Result<u64, CallError> {
        let db = db();
        let balance = db.cache.accounts.get(&req.from.unwrap_or_default()).map(|a| a.info.balance);
        estimate_gas(|| db.clone(), &chain(), &env(), req, gas_cap, balance.unwrap_or_default())
    }

    fn call_with_gas(req: &TransactionRequest, gas: u64) -> Result<CallOutcome, CallError> {
        let req = TransactionRequest { gas: Some(gas), ..req.clone() };
        call(db(), &chain(), &env(), &req, 30_000_000)
    }

    #[test]
    fn the_estimate_is_the_exact_minimum_gas() {
        // Through a forwarding call, where the 63/64 rule makes the minimum non-obvious.
        for to in [STORER, FORWARDER, COUNTER] {
            let gas = estimate(&req(to), 30_000_000).unwrap_or_else(|e| panic!("{to}: {e}"));
            assert!(call_with_gas(&req(to), gas).is_ok(), "{to} fails at its estimate {gas}");
            assert!(call_with_gas(&req(to), gas - 1).is_err(), "{to} succeeds below {gas}");
        }
        // A forwarded call needs more than the direct one: the estimate saw the 63/64 rule.
        assert!(
            estimate(&req(FORWARDER), 30_000_000).ok() > estimate(&req(STORER), 30_000_000).ok()
        );
    }

    #[test]
    fn a_plain_transfer_costs_exactly_the_intrinsic_gas() {
        let transfer = TransactionRequest { value: Some(U256::from(1)), ..req(BOB) };
        assert_eq!(estimate(&transfer, 30_000_000).ok(), Some(TRANSFER_GAS));
    }

    #[test]
    fn a_reverting_call_reports_the_revert_with_its_reason_and_data() {
        match estimate(&req(REVERTER), 30_000_000) {
            Err(e @ CallError::Revert { .. }) => {
                assert_eq!(e.to_string(), "execution reverted: nope");
                if let CallError::Revert { output: data, .. } = &e {
                    assert_eq!(&data[..4], &[0x08, 0xc3, 0x79, 0xa0]);
                    assert_eq!(decode_revert_reason(data).as_deref(), Some("nope"));
                }
            }
            other => panic!("expected a revert, got {other:?}"),
        }
        assert!(matches!(call_with_gas(&req(REVERTER), 100_000), Err(CallError::Revert { .. })));
    }

    #[test]
    fn running_out_of_gas_reports_the_allowance_in_estimates_and_out_of_gas_in_calls() {
        match estimate(&req(LOOPER), 1_000_000) {
            Err(e @ CallError::GasExceedsAllowance(1_000_000)) => {
                assert_eq!(e.to_string(), "gas required exceeds allowance (1000000)");
            }
            other => panic!("expected the allowance, got {other:?}"),
        }
        match call_with_gas(&req(LOOPER), 100_000) {
            Err(e @ CallError::Halt(_)) => assert_eq!(e.to_string(), "out of gas"),
            other => panic!("expected out of gas, got {other:?}"),
        }
    }

    #[test]
    fn the_gas_cap_bounds_the_estimate_and_refuses_calls_above_it() {
        // The store needs more than a 30k cap allows, even if the request asks for more.
        let greedy = TransactionRequest { gas: Some(10_000_000), ..req(STORER) };
        assert!(matches!(estimate(&greedy, 30_000), Err(CallError::GasExceedsAllowance(30_000))));
        let err = call(db(), &chain(), &env(), &greedy, 1_000_000).err();
        assert!(
            matches!(
                &err,
                Some(CallError::Invalid(InvalidCall::GasAboveCap {
                    gas: 10_000_000,
                    cap: 1_000_000
                }))
            ),
            "{err:?}"
        );
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("gas 10000000 above the cap 1000000")
        );
        // Within the cap the estimate is unaffected by it.
        assert_eq!(estimate(&req(STORER), 1_000_000).ok(), estimate(&req(STORER), 30_000_000).ok());
    }

    #[test]
    fn a_caller_that_cannot_pay_gets_insufficient_funds_not_a_rejection() {
        let poor = TransactionRequest {
            from: Some(BOB),
            gas_price: Some(1_000_000_000),
            value: Some(U256::from(1)),
            ..req(ALICE)
        };
        assert!(matches!(estimate(&poor, 30_000_000), Err(CallError::InsufficientFunds)));
        match call_with_gas(&poor, 21_000) {
            Err(e @ CallError::InsufficientFunds) => {
                assert_eq!(e.to_string(), "insufficient funds for gas * price + value")
            }
            other => panic!("expected insufficient funds, got {other:?}"),
        }
        // Other EVM refusals stay typed, with revm's message.
        let low_fee = TransactionRequest { max_fee_per_gas: Some(1), ..req(BOB) };
        match call_with_gas(&low_fee, 21_000) {
            Err(e @ CallError::Rejected(_)) => {
                assert_eq!(
                    e.to_string(),
                    "transaction validation error: gas price is less than basefee"
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn the_access_list_holds_what_the_call_touches_and_its_gas_uses_it() {
        let out = create_access_list(db, &chain(), &env(), &req(TOUCHER), 30_000_000)
            .unwrap_or_else(|e| panic!("{e}"));
        let slot = B256::from(U256::from(1));
        let items: Vec<_> =
            out.access_list.0.iter().map(|i| (i.address, i.storage_keys.clone())).collect();
        // The callee is listed for its slot only; the sender is not listed at all.
        assert_eq!(items, vec![(TOUCHER, vec![slot]), (BOB, vec![])]);
        assert_eq!(out.error, None);
        let with_list =
            TransactionRequest { access_list: Some(out.access_list.clone()), ..req(TOUCHER) };
        let used = call(db(), &chain(), &env(), &with_list, 30_000_000).map(|o| o.gas_used);
        assert_eq!(used.ok(), Some(out.gas_used));
        let json = serde_json::to_value(&out).unwrap_or_default();
        assert_eq!(json["gasUsed"], format!("{:#x}", out.gas_used));
        assert!(json.get("error").is_none());
        // A failing call still returns its list, with the reason.
        let failing = create_access_list(db, &chain(), &env(), &req(REVERTER), 30_000_000);
        assert_eq!(failing.ok().and_then(|o| o.error).as_deref(), Some("execution reverted: nope"));
    }

    #[test]
    fn state_and_block_overrides_apply_and_conflicts_are_refused() {
        use alloy_rpc_types_eth::state::AccountOverride;
        let mut state = StateOverride::default();
        // Code that returns the single byte 0x01.
        let code = Bytes::from_static(&[0x60, 1, 0x60, 0, 0x52, 0x60, 1, 0x60, 0x1f, 0xf3]);
        state.insert(BOB, AccountOverride { code: Some(code), ..Default::default() });
        let o = CallOverrides { state: Some(state), block: None };
        let base = db();
        let cache = match o.database(&base) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let out = call(cache, &chain(), &env(), &req(BOB), 1_000_000);
        assert_eq!(out.map(|o| o.output).ok(), Some(Bytes::from_static(&[1])));
        let mut both = StateOverride::default();
        both.insert(
            BOB,
            AccountOverride {
                state: Some(Default::default()),
                state_diff: Some(Default::default()),
                ..Default::default()
            },
        );
        let o = CallOverrides { state: Some(both), block: None };
        match o.database(&base) {
            Err(e @ CallError::Invalid(InvalidCall::StateAndStateDiff(BOB))) => {
                assert_eq!(e.to_string(), format!("account {BOB} has both 'state' and 'stateDiff'"))
            }
            other => panic!("expected the conflict, got {other:?}"),
        }
        let mut moved = StateOverride::default();
        moved
            .insert(BOB, AccountOverride { move_precompile_to: Some(ALICE), ..Default::default() });
        let o = CallOverrides { state: Some(moved), block: None };
        match o.database(&base) {
            Err(e @ CallError::Invalid(InvalidCall::MovePrecompileUnsupported)) => {
                assert_eq!(e.to_string(), "movePrecompileToAddress is not supported")
            }
            other => panic!("expected the refusal, got {other:?}"),
        }
        let block =
            BlockOverrides { number: Some(U256::from(9)), time: Some(5), ..Default::default() };
        let o = CallOverrides { state: None, block: Some(block) };
        assert_eq!((o.env(&env()).number, o.env(&env()).timestamp), (9, 5));
    }

    #[test]
    fn oversized_input_and_inverted_fees_are_refused_before_execution() {
        let big = TransactionRequest {
            input: Bytes::from(vec![0u8; MAX_CALL_INPUT_BYTES + 1]).into(),
            ..req(BOB)
        };
        match tx_env(&chain(), &big, 21_000) {
            Err(e @ CallError::Invalid(InvalidCall::InputTooLarge { .. })) => assert_eq!(
                e.to_string(),
                format!(
                    "call input of {} bytes exceeds the limit of {MAX_CALL_INPUT_BYTES} bytes",
                    MAX_CALL_INPUT_BYTES + 1
                )
            ),
            other => panic!("expected the size refusal, got {other:?}"),
        }
        let inverted = TransactionRequest {
            max_fee_per_gas: Some(1),
            max_priority_fee_per_gas: Some(2),
            ..req(BOB)
        };
        match tx_env(&chain(), &inverted, 21_000) {
            Err(e @ CallError::Invalid(InvalidCall::TipAboveFeeCap)) => {
                assert_eq!(e.to_string(), "maxPriorityFeePerGas higher than maxFeePerGas")
            }
            other => panic!("expected the fee refusal, got {other:?}"),
        }
    }
}
