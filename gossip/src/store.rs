//! The durable p2p store (redb, copy-on-write B-trees with atomic commits, so a `kill -9`
//! leaves either the old or the new state): recent sealed blocks to serve alt-sync after a
//! restart, the peer book of bans and blocks, and the discovery node table (so a restarted node
//! finds its network again without its bootnodes, as op-node's discovery database does).

use crate::codec::BlockVersion;
use alloy_primitives::B256;
use libp2p::PeerId;
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Blocks by number: `version(1) ++ hash(32) ++ payload bytes ([beacon root ++] SSZ)`.
const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
/// Banned peers: peer id bytes → ban expiry (unix seconds).
const BANS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("bans");
/// Blocked IP addresses: 4 or 16 address bytes → block expiry (unix seconds, `u64::MAX`: none).
const BLOCKED_IPS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("blocked_ips");
/// Blocked subnets: CIDR text → block expiry (unix seconds, `u64::MAX`: none).
const BLOCKED_SUBNETS: TableDefinition<'_, &str, u64> = TableDefinition::new("blocked_subnets");
/// Discovered nodes of this chain: node id (32 bytes) → (last seen, unix seconds; ENR text as
/// bytes, so a corrupt row is skipped instead of failing to decode).
const NODES: TableDefinition<'_, &[u8], (u64, &[u8])> = TableDefinition::new("discovery_nodes");

/// Failures of one kind of store operation are logged at most this often; every failure is
/// counted in `flashnode_gossip_store_errors_total{op}`. A full disk fails every block's write:
/// one line per block would flood the log.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counter of failed store operations, labelled `op` = `write` or `read`.
pub const STORE_ERRORS: &str = "flashnode_gossip_store_errors_total";

/// Reopens of the store after I/O errors, by `outcome` (`ok`, `failed`).
pub const STORE_REOPENS: &str = "flashnode_gossip_store_reopens_total";

/// Shortest time between two reopen attempts of a failed store.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(5);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("p2p store: {0}")]
    Db(#[from] redb::Error),
    /// The database is closed after an I/O error and could not be reopened yet.
    #[error("p2p store: unavailable until it can be reopened")]
    Unavailable,
    /// A stored record does not parse.
    #[error("p2p store: corrupt record for block {0}")]
    Corrupt(u64),
}

macro_rules! db {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Db(e.into()))
    };
}

/// A discovered node kept for the next start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredNode {
    /// discv5 node id.
    pub id: [u8; 32],
    /// The node's record, `enr:` text.
    pub enr: String,
    /// When it was last seen (unix seconds).
    pub seen: u64,
}

/// A stored block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    /// Number.
    pub number: u64,
    /// Gossip version.
    pub version: BlockVersion,
    /// Block hash.
    pub hash: B256,
    /// `[parentBeaconBlockRoot ++] SSZ(payload)`: the gossip payload without the signature.
    pub payload: Vec<u8>,
}

/// The store. Operations that fail (a full disk, an I/O error) return the error, are counted
/// and logged (rate-limited) here, and never panic: callers carry on without the store. After
/// an I/O error redb refuses every later operation until the database is reopened, so a store
/// on disk closes and reopens itself in place (at most every [`REOPEN_INTERVAL`]; redb then
/// recovers the last committed state): once space is back it works again without a restart.
#[derive(Debug)]
pub struct Store {
    db: RwLock<Option<Database>>,
    /// The file, for reopening (none in memory).
    path: Option<PathBuf>,
    /// The last reopen attempt.
    last_reopen: Mutex<Option<Instant>>,
    retain: u64,
    /// Per op: when a failure was last logged and how many failures were not logged since.
    errors: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl Store {
    /// Opens (or creates) the store at `path`, keeping the latest `retain` blocks.
    pub fn open(path: &Path, retain: u64) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(redb::Error::Io(e)))?;
        }
        let mut store = Self::init(db!(Database::create(path))?, retain)?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// A store in memory (nothing survives a restart).
    pub fn in_memory(retain: u64) -> Result<Self, StoreError> {
        Self::init(
            db!(Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()))?,
            retain,
        )
    }

    fn init(db: Database, retain: u64) -> Result<Self, StoreError> {
        Self::create_tables(&db)?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            path: None,
            last_reopen: Mutex::new(None),
            retain: retain.max(1),
            errors: Mutex::new(HashMap::new()),
        })
    }

    fn create_tables(db: &Database) -> Result<(), StoreError> {
        let tx = db!(db.begin_write())?;
        db!(tx.open_table(BLOCKS))?;
        db!(tx.open_table(BANS))?;
        db!(tx.open_table(BLOCKED_IPS))?;
        db!(tx.open_table(BLOCKED_SUBNETS))?;
        db!(tx.open_table(NODES))?;
        db!(tx.commit())
    }

    /// The open database, or [`StoreError::Unavailable`] while it is closed for a reopen.
    fn db(&self) -> Result<MappedRwLockReadGuard<'_, Database>, StoreError> {
        RwLockReadGuard::try_map(self.db.read(), |d| d.as_ref())
            .map_err(|_| StoreError::Unavailable)
    }

    /// After an I/O error (or while closed), closes and reopens the file, at most every
    /// [`REOPEN_INTERVAL`]: redb refuses every operation after an I/O error until then.
    fn reopen_after(&self, err: &StoreError) {
        let io = matches!(
            err,
            StoreError::Unavailable | StoreError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
        );
        let Some(path) = self.path.as_ref().filter(|_| io) else { return };
        {
            let mut last = self.last_reopen.lock();
            if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        // The old handle holds the file's lock: close it before opening again. The open (redb
        // may repair the file) runs without the lock; callers meanwhile get `Unavailable`.
        let old = self.db.write().take();
        drop(old);
        match Database::create(path)
            .map_err(|e| StoreError::Db(e.into()))
            .and_then(|d| Self::create_tables(&d).map(|_| d))
        {
            Ok(d) => {
                tracing::info!(path = %path.display(), "p2p store reopened");
                metrics::counter!(STORE_REOPENS, "outcome" => "ok").increment(1);
                *self.db.write() = Some(d);
            }
            Err(err) => {
                metrics::counter!(STORE_REOPENS, "outcome" => "failed").increment(1);
                tracing::debug!(%err, "p2p store reopen failed; retrying later");
            }
        }
    }

    /// Counts a failed `op` and logs it at most once per [`ERROR_LOG_INTERVAL`].
    fn track<T>(&self, op: &'static str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(err) = &result {
            self.reopen_after(err);
            metrics::counter!(STORE_ERRORS, "op" => op).increment(1);
            let now = Instant::now();
            let mut errors = self.errors.lock();
            let entry = errors.entry(op).or_insert((None, 0));
            if entry.0.is_none_or(|last| now.duration_since(last) >= ERROR_LOG_INTERVAL) {
                tracing::warn!(%err, op, suppressed = entry.1, "p2p store operation failed (logged at most every 10 s)");
                *entry = (Some(now), 0);
            } else {
                entry.1 += 1;
            }
        }
        result
    }

    /// Stores a block (replacing one at the same number) and prunes old ones.
    pub fn put_block(&self, block: &StoredBlock) -> Result<(), StoreError> {
        self.track("write", self.put_block_inner(block))
    }

    fn put_block_inner(&self, block: &StoredBlock) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(33 + block.payload.len());
        value.push(block.version.index());
        value.extend_from_slice(block.hash.as_slice());
        value.extend_from_slice(&block.payload);
        let tx = db!(self.db()?.begin_write())?;
        {
            let mut t = db!(tx.open_table(BLOCKS))?;
            db!(t.insert(block.number, value.as_slice()))?;
            let highest = db!(t.last())?.map(|(k, _)| k.value()).unwrap_or(block.number);
            let floor = highest.saturating_sub(self.retain - 1);
            db!(t.retain_in(..floor, |_, _| false))?;
        }
        db!(tx.commit())
    }

    /// A block by number.
    pub fn block(&self, number: u64) -> Result<Option<StoredBlock>, StoreError> {
        self.track("read", self.block_inner(number))
    }

    fn block_inner(&self, number: u64) -> Result<Option<StoredBlock>, StoreError> {
        let tx = db!(self.db()?.begin_read())?;
        let t = db!(tx.open_table(BLOCKS))?;
        let Some(v) = db!(t.get(number))? else { return Ok(None) };
        let v = v.value();
        if v.len() < 33 {
            return Err(StoreError::Corrupt(number));
        }
        let version = *BlockVersion::ALL.get(v[0] as usize).ok_or(StoreError::Corrupt(number))?;
        Ok(Some(StoredBlock {
            number,
            version,
            hash: B256::from_slice(&v[1..33]),
            payload: v[33..].to_vec(),
        }))
    }

    /// Lowest and highest stored block numbers.
    pub fn range(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.track("read", self.range_inner())
    }

    fn range_inner(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let tx = db!(self.db()?.begin_read())?;
        let t = db!(tx.open_table(BLOCKS))?;
        let first = db!(t.first())?.map(|(k, _)| k.value());
        let last = db!(t.last())?.map(|(k, _)| k.value());
        Ok(first.zip(last))
    }

    /// Number of stored blocks.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.track("read", self.count_inner())
    }

    fn count_inner(&self) -> Result<u64, StoreError> {
        let tx = db!(self.db()?.begin_read())?;
        let t = db!(tx.open_table(BLOCKS))?;
        db!(t.len())
    }

    /// Whether a block is stored.
    pub fn has(&self, number: u64) -> Result<bool, StoreError> {
        self.track("read", self.has_inner(number))
    }

    fn has_inner(&self, number: u64) -> Result<bool, StoreError> {
        let tx = db!(self.db()?.begin_read())?;
        let t = db!(tx.open_table(BLOCKS))?;
        Ok(db!(t.get(number))?.is_some())
    }

    /// Bans `peer` until `until` (unix seconds).
    pub fn ban(&self, peer: &PeerId, until: u64) -> Result<(), StoreError> {
        self.track("write", self.ban_inner(peer, until))
    }

    fn ban_inner(&self, peer: &PeerId, until: u64) -> Result<(), StoreError> {
        let tx = db!(self.db()?.begin_write())?;
        {
            let mut t = db!(tx.open_table(BANS))?;
            db!(t.insert(peer.to_bytes().as_slice(), until))?;
        }
        db!(tx.commit())
    }

    /// Lifts a ban.
    pub fn unban(&self, peer: &PeerId) -> Result<(), StoreError> {
        self.track("write", self.unban_inner(peer))
    }

    fn unban_inner(&self, peer: &PeerId) -> Result<(), StoreError> {
        let tx = db!(self.db()?.begin_write())?;
        {
            let mut t = db!(tx.open_table(BANS))?;
            db!(t.remove(peer.to_bytes().as_slice()))?;
        }
        db!(tx.commit())
    }

    /// Bans still in force at `now`, with their expiry.
    pub fn bans(&self, now: u64) -> Result<Vec<(PeerId, u64)>, StoreError> {
        self.track("read", self.bans_inner(now))
    }

    fn bans_inner(&self, now: u64) -> Result<Vec<(PeerId, u64)>, StoreError> {
        let tx = db!(self.db()?.begin_read())?;
        let t = db!(tx.open_table(BANS))?;
        let mut out = Vec::new();
        for row in db!(t.iter())? {
            let (k, v) = db!(row)?;
            if let (Ok(peer), until) = (PeerId::from_bytes(k.value()), v.value()) {
                if until > now {
                    out.push((peer, until));
                }
            }
        }
        Ok(out)
    }
}

impl Store {
    /// The stored block numbers in `from..=to`, ascending (one read).
    pub fn numbers_in(&self, from: u64, to: u64) -> Result<Vec<u64>, StoreError> {
        self.track(
            "read",
            (|| -> Result<Vec<u64>, StoreError> {
                let tx = db!(self.db()?.begin_read())?;
                let t = db!(tx.open_table(BLOCKS))?;
                let mut out = Vec::new();
                for row in db!(t.range(from..=to))? {
                    let (k, _) = db!(row)?;
                    out.push(k.value());
                }
                Ok(out)
            })(),
        )
    }

    /// Blocks `ip` until `until` (unix seconds).
    pub fn block_ip(&self, ip: std::net::IpAddr, until: u64) -> Result<(), StoreError> {
        self.track(
            "write",
            (|| -> Result<(), StoreError> {
                let tx = db!(self.db()?.begin_write())?;
                {
                    let mut t = db!(tx.open_table(BLOCKED_IPS))?;
                    db!(t.insert(ip_bytes(ip).as_slice(), until))?;
                }
                db!(tx.commit())
            })(),
        )
    }

    /// Lifts an IP block.
    pub fn unblock_ip(&self, ip: std::net::IpAddr) -> Result<(), StoreError> {
        self.track(
            "write",
            (|| -> Result<(), StoreError> {
                let tx = db!(self.db()?.begin_write())?;
                {
                    let mut t = db!(tx.open_table(BLOCKED_IPS))?;
                    db!(t.remove(ip_bytes(ip).as_slice()))?;
                }
                db!(tx.commit())
            })(),
        )
    }

    /// IP blocks still in force at `now`, with their expiry.
    pub fn blocked_ips(&self, now: u64) -> Result<Vec<(std::net::IpAddr, u64)>, StoreError> {
        self.track(
            "read",
            (|| -> Result<Vec<(std::net::IpAddr, u64)>, StoreError> {
                let tx = db!(self.db()?.begin_read())?;
                let t = db!(tx.open_table(BLOCKED_IPS))?;
                let mut out = Vec::new();
                for row in db!(t.iter())? {
                    let (k, v) = db!(row)?;
                    let ip = match k.value().len() {
                        4 => <[u8; 4]>::try_from(k.value()).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(k.value()).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip.filter(|_| v.value() > now) {
                        out.push((ip, v.value()));
                    }
                }
                Ok(out)
            })(),
        )
    }

    /// Blocks a subnet (CIDR text) until `until` (unix seconds).
    pub fn block_subnet(&self, cidr: &str, until: u64) -> Result<(), StoreError> {
        self.track(
            "write",
            (|| -> Result<(), StoreError> {
                let tx = db!(self.db()?.begin_write())?;
                {
                    let mut t = db!(tx.open_table(BLOCKED_SUBNETS))?;
                    db!(t.insert(cidr, until))?;
                }
                db!(tx.commit())
            })(),
        )
    }

    /// Lifts a subnet block.
    pub fn unblock_subnet(&self, cidr: &str) -> Result<(), StoreError> {
        self.track(
            "write",
            (|| -> Result<(), StoreError> {
                let tx = db!(self.db()?.begin_write())?;
                {
                    let mut t = db!(tx.open_table(BLOCKED_SUBNETS))?;
                    db!(t.remove(cidr))?;
                }
                db!(tx.commit())
            })(),
        )
    }

    /// Subnet blocks (CIDR text) still in force at `now`, with their expiry.
    pub fn blocked_subnets(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.track(
            "read",
            (|| -> Result<Vec<(String, u64)>, StoreError> {
                let tx = db!(self.db()?.begin_read())?;
                let t = db!(tx.open_table(BLOCKED_SUBNETS))?;
                let mut out = Vec::new();
                for row in db!(t.iter())? {
                    let (k, v) = db!(row)?;
                    if v.value() > now {
                        out.push((k.value().to_string(), v.value()));
                    }
                }
                Ok(out)
            })(),
        )
    }

    /// Inserts or refreshes discovered nodes in one commit, then keeps only the `keep` most
    /// recently seen. The commit is durable: a non-durable one would be lost on a crash unless
    /// a block write followed, and a node with no block traffic would then forget its network.
    /// Writes are rare (new sessions, batched every few seconds, each node at most hourly).
    pub fn put_nodes(&self, nodes: &[StoredNode], keep: usize) -> Result<(), StoreError> {
        self.track(
            "write",
            (|| -> Result<(), StoreError> {
                let tx = db!(self.db()?.begin_write())?;
                {
                    let mut t = db!(tx.open_table(NODES))?;
                    for n in nodes {
                        db!(t.insert(n.id.as_slice(), (n.seen, n.enr.as_bytes())))?;
                    }
                    let len = db!(t.len())? as usize;
                    if len > keep {
                        let mut by_age = Vec::with_capacity(len);
                        for row in db!(t.iter())? {
                            let (k, v) = db!(row)?;
                            by_age.push((v.value().0, k.value().to_vec()));
                        }
                        by_age.sort_unstable();
                        for (_, id) in by_age.into_iter().take(len - keep) {
                            db!(t.remove(id.as_slice()))?;
                        }
                    }
                }
                db!(tx.commit())
            })(),
        )
    }

    /// Stored nodes seen at or after `seen_since` (unix seconds), most recently seen first.
    pub fn nodes(&self, seen_since: u64) -> Result<Vec<StoredNode>, StoreError> {
        self.track(
            "read",
            (|| -> Result<Vec<StoredNode>, StoreError> {
                let tx = db!(self.db()?.begin_read())?;
                let t = db!(tx.open_table(NODES))?;
                let mut out = Vec::new();
                for row in db!(t.iter())? {
                    let (k, v) = db!(row)?;
                    let (seen, enr) = v.value();
                    let (Ok(id), Ok(enr)) =
                        (<[u8; 32]>::try_from(k.value()), std::str::from_utf8(enr))
                    else {
                        continue;
                    };
                    if seen >= seen_since {
                        out.push(StoredNode { id, enr: enr.to_string(), seen });
                    }
                }
                out.sort_unstable_by_key(|n| std::cmp::Reverse(n.seen));
                Ok(out)
            })(),
        )
    }
}

fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u64) -> StoredBlock {
        StoredBlock {
            number: n,
            version: BlockVersion::V4,
            hash: B256::repeat_byte(n as u8),
            payload: vec![n as u8; 100],
        }
    }

    #[test]
    fn blocks_and_bans_survive_reopen_and_old_blocks_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p.redb");
        let peer = PeerId::random();
        {
            let s = Store::open(&path, 3).unwrap();
            for n in 1..=5 {
                s.put_block(&block(n)).unwrap();
            }
            s.ban(&peer, 2_000).unwrap();
        }
        let s = Store::open(&path, 3).unwrap();
        assert_eq!(s.range().unwrap(), Some((3, 5)));
        assert_eq!(s.block(4).unwrap(), Some(block(4)));
        assert_eq!(s.block(2).unwrap(), None);
        assert_eq!(s.bans(1_000).unwrap(), vec![(peer, 2_000)]);
        assert!(s.bans(3_000).unwrap().is_empty(), "expired bans are not in force");
        s.unban(&peer).unwrap();
        assert!(s.bans(1_000).unwrap().is_empty());
    }

    #[test]
    fn discovered_nodes_survive_reopen_newest_first_and_the_oldest_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p.redb");
        let node =
            |i: u8, seen: u64| StoredNode { id: [i; 32], enr: format!("enr:-node{i}"), seen };
        {
            let s = Store::open(&path, 3).unwrap();
            s.put_nodes(&[node(1, 100), node(2, 300), node(3, 200)], 8).unwrap();
            // Seen again: refreshed in place, not duplicated.
            s.put_nodes(&[node(1, 400)], 8).unwrap();
            // Over the cap: the least recently seen (3 at 200) goes.
            s.put_nodes(&[node(4, 500)], 3).unwrap();
        }
        let s = Store::open(&path, 3).unwrap();
        assert_eq!(s.nodes(0).unwrap(), vec![node(4, 500), node(1, 400), node(2, 300)]);
        assert_eq!(
            s.nodes(350).unwrap(),
            vec![node(4, 500), node(1, 400)],
            "nodes not seen since the cut-off are left out"
        );
    }

    /// A file whose writes and growth fail once `full` is set, like a full disk (EFBIG, what
    /// RLIMIT_FSIZE gives, or ENOSPC).
    #[derive(Debug)]
    struct FullDisk {
        file: redb::backends::FileBackend,
        full: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl FullDisk {
        fn check(&self) -> std::io::Result<()> {
            match self.full.load(std::sync::atomic::Ordering::SeqCst) {
                true => Err(std::io::Error::from_raw_os_error(27)), // EFBIG
                false => Ok(()),
            }
        }
    }

    impl redb::StorageBackend for FullDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.file.close()
        }
    }

    #[test]
    fn full_disk_fails_writes_without_panic_and_reopens_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p.redb");
        let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap();
            let backend = FullDisk {
                file: redb::backends::FileBackend::new(file).unwrap(),
                full: full.clone(),
            };
            let s = Store::init(Database::builder().create_with_backend(backend).unwrap(), 100)
                .unwrap();
            for n in 1..=5 {
                s.put_block(&block(n)).unwrap();
            }
            full.store(true, std::sync::atomic::Ordering::SeqCst);
            // Every write fails with an error, none panics; redb then refuses reads too.
            for n in 6..=20 {
                assert!(s.put_block(&block(n)).is_err());
            }
            assert!(s.ban(&PeerId::random(), 10).is_err());
            assert!(s.block(3).is_err() || s.block(3).unwrap() == Some(block(3)));
            // Failures after the first are counted but not logged until the interval passes.
            let errors = s.errors.lock();
            assert!(errors
                .get("write")
                .is_some_and(|(logged, suppressed)| logged.is_some() && *suppressed >= 15));
        }
        // "Space again": the store reopens with every block committed before the failure.
        let s = Store::open(&path, 100).unwrap();
        assert_eq!(s.range().unwrap(), Some((1, 5)));
        for n in 1..=5 {
            assert_eq!(s.block(n).unwrap(), Some(block(n)));
        }
        s.put_block(&block(6)).unwrap();
        assert_eq!(s.range().unwrap(), Some((1, 6)));
    }

    #[test]
    fn address_and_subnet_blocks_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p.redb");
        let v4: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let v6: std::net::IpAddr = "fd00::1".parse().unwrap();
        {
            let s = Store::open(&path, 3).unwrap();
            s.block_ip(v4, 2_000).unwrap();
            s.block_ip(v6, u64::MAX).unwrap();
            s.block_subnet("127.0.0.0/8", 1_500).unwrap();
        }
        let s = Store::open(&path, 3).unwrap();
        let mut ips = s.blocked_ips(1_000).unwrap();
        ips.sort();
        assert_eq!(ips, vec![(v4, 2_000), (v6, u64::MAX)]);
        assert_eq!(s.blocked_subnets(1_000).unwrap(), vec![("127.0.0.0/8".to_string(), 1_500)]);
        assert!(s.blocked_subnets(1_500).unwrap().is_empty(), "expired");
        assert_eq!(s.blocked_ips(5_000).unwrap(), vec![(v6, u64::MAX)]);
        s.unblock_ip(v6).unwrap();
        s.unblock_subnet("127.0.0.0/8").unwrap();
        assert_eq!(s.blocked_ips(0).unwrap(), vec![(v4, 2_000)]);
        assert!(s.blocked_subnets(0).unwrap().is_empty());
    }
}
