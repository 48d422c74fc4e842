//! Per-client-IP limits of the RPC port: open connections (counted from accept, so idle and
//! half-open sockets count too) and live websocket subscriptions.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// Connections and subscriptions refused by a per-IP limit, by `what`.
pub const RPC_LIMITED_TOTAL: &str = "flashnode_rpc_limited_total";

/// Accepts of the RPC port that failed (out of descriptors, or similar).
pub const RPC_ACCEPT_ERRORS_TOTAL: &str = "flashnode_rpc_accept_errors_total";

/// The client IP of a connection, in every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Counts of something held per IP, with a limit (0 = no limit).
#[derive(Debug)]
pub struct PerIp {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One held unit; released on drop.
#[derive(Debug)]
pub struct IpPermit {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// At most `limit` per IP (0: unlimited).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, held: Mutex::new(HashMap::new()) })
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A permit for `ip`, or None when it holds `limit` already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpPermit> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_default();
        if self.limit != 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpPermit { owner: self.clone(), ip })
    }

    /// How many `ip` holds.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_ip_and_releases_on_drop() {
        let per_ip = PerIp::new(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = per_ip.try_acquire(a).unwrap();
        let _second = per_ip.try_acquire(a).unwrap();
        assert!(per_ip.try_acquire(a).is_none(), "third from one IP");
        assert!(per_ip.try_acquire(b).is_some(), "another IP has its own count");
        drop(first);
        assert_eq!(per_ip.held(a), 1);
        assert!(per_ip.try_acquire(a).is_some(), "a released permit frees a place");
    }

    #[test]
    fn zero_is_unlimited() {
        let per_ip = PerIp::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let permits: Vec<_> = (0..100).filter_map(|_| per_ip.try_acquire(ip)).collect();
        assert_eq!(permits.len(), 100);
        drop(permits);
        assert_eq!(per_ip.held(ip), 0, "the map forgets IPs holding nothing");
    }
}
