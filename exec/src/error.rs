//! Errors of executing transactions into a block, typed through the seam: revm's
//! [`EVMError`] splits into what the transaction did wrong ([`Rejection`]) and what the state
//! behind it could not give ([`ExecError::State`], the database's own error type).

use alloy_op_evm::OpTxError;
use revm::context_interface::result::EVMError;
use std::{convert::Infallible, sync::Arc};

/// Why the EVM refused a transaction before running it: revm's error without its database
/// variant (nonce, balance, fee and gas-limit checks, an invalid block header, a fatal
/// precompile error).
pub type Rejection = EVMError<Infallible, OpTxError>;

/// Splits an EVM error into the database's error and the transaction's rejection.
pub(crate) fn split_evm_error<E>(e: EVMError<E, OpTxError>) -> Result<Rejection, E> {
    Ok(match e {
        EVMError::Database(e) => return Err(e),
        EVMError::Transaction(e) => EVMError::Transaction(e),
        EVMError::Header(e) => EVMError::Header(e),
        EVMError::Custom(e) => EVMError::Custom(e),
        EVMError::CustomAny(e) => EVMError::CustomAny(e),
    })
}

/// Why a transaction could not be executed into the block, over a database whose reads fail
/// with `E` (revm's `EVMError<DB, Tx>` shape: the database error stays typed, so the overlay
/// can tell an unknown parent block from a divergent transaction).
#[derive(Debug, thiserror::Error)]
pub enum ExecError<E> {
    /// The transaction is invalid against the current state (nonce, balance, gas limit…).
    #[error("invalid transaction: {0}")]
    InvalidTx(#[source] Rejection),
    /// The state could not be read.
    #[error("state unavailable: {0}")]
    State(#[source] E),
}

impl<E> From<EVMError<E, OpTxError>> for ExecError<E> {
    fn from(e: EVMError<E, OpTxError>) -> Self {
        match split_evm_error(e) {
            Ok(rejection) => Self::InvalidTx(rejection),
            Err(db) => Self::State(db),
        }
    }
}

/// A state read that failed, from a database of any type: the cause is kept as the source
/// (and can be downcast), so a call error stays one type whatever state it ran over.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct StateError(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl StateError {
    /// Wraps a database error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// The database error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceError;
    use alloy_primitives::B256;
    use op_revm::OpTransactionError;
    use revm::context_interface::result::InvalidTransaction;

    #[test]
    fn evm_errors_split_into_state_and_rejection_with_their_messages() {
        let unknown = SourceError::UnknownBlock(B256::repeat_byte(1));
        match ExecError::from(EVMError::<_, OpTxError>::Database(unknown.clone())) {
            ExecError::State(SourceError::UnknownBlock(h)) => assert_eq!(h, B256::repeat_byte(1)),
            other => panic!("expected the source error, got {other:?}"),
        }
        let low = InvalidTransaction::NonceTooLow { tx: 1, state: 2 };
        let e = ExecError::<SourceError>::from(EVMError::Transaction(OpTxError(low.into())));
        assert!(matches!(
            &e,
            ExecError::InvalidTx(EVMError::Transaction(OpTxError(OpTransactionError::Base(
                InvalidTransaction::NonceTooLow { tx: 1, state: 2 }
            ))))
        ));
        assert_eq!(
            e.to_string(),
            "invalid transaction: transaction validation error: nonce 1 too low, expected 2"
        );
        let custom = ExecError::<SourceError>::from(EVMError::Custom("fatal precompile".into()));
        assert_eq!(custom.to_string(), "invalid transaction: fatal precompile");
        let state = StateError::new(unknown);
        assert!(matches!(state.downcast_ref(), Some(SourceError::UnknownBlock(_))));
        assert_eq!(state.to_string(), format!("block {} is not available", B256::repeat_byte(1)));
    }
}
