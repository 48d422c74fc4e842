//! Polling filters of the devnet's canonical RPC (`eth_newFilter`, `eth_newBlockFilter`,
//! `eth_getFilterChanges`, `eth_getFilterLogs`, `eth_uninstallFilter`), as geth serves them:
//! ethers' `contract.on(...)` and web3.py's `create_filter` use them by default, and
//! `flashnode node` passes them to its execution client unchanged. Bounded in number, and a
//! filter nobody polls for 5 minutes is removed (geth's deadline).

use alloy_primitives::{B256, U256};
use alloy_rpc_types_eth::{Filter, FilterBlockOption};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Most filters installed at once.
pub const MAX_FILTERS: usize = 1024;

/// A filter unpolled this long is removed.
pub const FILTER_TIMEOUT: Duration = Duration::from_secs(300);

/// What a filter reports.
#[derive(Clone, Debug)]
pub enum FilterKind {
    /// Logs matching the filter in blocks sealed since the last poll.
    Logs(Box<Filter>),
    /// Hashes of blocks sealed since the last poll.
    Blocks,
}

#[derive(Debug)]
struct Installed {
    kind: FilterKind,
    /// The first block the next poll reports.
    next: u64,
    polled: Instant,
}

/// Why a filter call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// The id names no installed filter (never installed, uninstalled or expired).
    #[error("filter not found")]
    NotFound,
    /// [`MAX_FILTERS`] are installed.
    #[error("too many filters: at most {MAX_FILTERS}; uninstall one first")]
    TooMany,
}

/// The installed filters.
#[derive(Debug, Default)]
pub struct Filters {
    installed: HashMap<U256, Installed>,
    last_id: u64,
}

/// What a poll must read: the blocks `from..=to` and the filter to apply.
#[derive(Debug)]
pub struct Poll {
    /// The filter.
    pub kind: FilterKind,
    /// First block to report.
    pub from: u64,
    /// Last block to report (the chain's tip at the poll).
    pub to: u64,
}

impl Filters {
    /// Installs `kind`; it reports blocks after `latest` (a log filter whose `fromBlock` is a
    /// number reports from there).
    pub fn install(&mut self, kind: FilterKind, latest: u64) -> Result<U256, FilterError> {
        self.installed.retain(|_, f| f.polled.elapsed() < FILTER_TIMEOUT);
        if self.installed.len() >= MAX_FILTERS {
            return Err(FilterError::TooMany);
        }
        let next = match &kind {
            FilterKind::Logs(f) => match f.block_option {
                FilterBlockOption::Range { from_block: Some(b), .. } => {
                    b.as_number().unwrap_or(latest + 1)
                }
                _ => latest + 1,
            },
            FilterKind::Blocks => latest + 1,
        };
        self.last_id += 1;
        let id = U256::from(self.last_id);
        self.installed.insert(id, Installed { kind, next, polled: Instant::now() });
        Ok(id)
    }

    /// The blocks a poll of `id` covers with the tip at `latest`, and marks them reported.
    pub fn poll(&mut self, id: U256, latest: u64) -> Result<Poll, FilterError> {
        let f = self.installed.get_mut(&id).ok_or(FilterError::NotFound)?;
        f.polled = Instant::now();
        let poll = Poll { kind: f.kind.clone(), from: f.next, to: latest };
        f.next = f.next.max(latest + 1);
        Ok(poll)
    }

    /// The filter of `id`, for `eth_getFilterLogs`.
    pub fn get(&mut self, id: U256) -> Result<FilterKind, FilterError> {
        let f = self.installed.get_mut(&id).ok_or(FilterError::NotFound)?;
        f.polled = Instant::now();
        Ok(f.kind.clone())
    }

    /// Removes `id`; whether it was installed.
    pub fn uninstall(&mut self, id: U256) -> bool {
        self.installed.remove(&id).is_some()
    }
}

/// Block hashes a block filter reports: `hashes` of blocks `from..=to`.
pub fn block_hashes(from: u64, to: u64, hash_of: impl Fn(u64) -> Option<B256>) -> Vec<B256> {
    (from..=to).filter_map(hash_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_poll_reports_what_sealed_since_the_last_and_ids_expire_on_uninstall() {
        let mut filters = Filters::default();
        let id = filters.install(FilterKind::Blocks, 10).unwrap();
        let first = filters.poll(id, 12).unwrap();
        assert_eq!((first.from, first.to), (11, 12));
        let nothing = filters.poll(id, 12).unwrap();
        assert!(nothing.from > nothing.to, "nothing new");
        let next = filters.poll(id, 13).unwrap();
        assert_eq!((next.from, next.to), (13, 13));
        assert!(filters.uninstall(id));
        assert_eq!(filters.poll(id, 14).unwrap_err(), FilterError::NotFound);
        assert!(!filters.uninstall(id));
    }

    #[test]
    fn filters_are_bounded() {
        let mut filters = Filters::default();
        for _ in 0..MAX_FILTERS {
            filters.install(FilterKind::Blocks, 0).unwrap();
        }
        assert_eq!(filters.install(FilterKind::Blocks, 0).unwrap_err(), FilterError::TooMany);
    }
}
