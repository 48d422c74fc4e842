//! Harness for flashnode's end-to-end tests: spawn the real binary on free loopback ports, talk
//! to it with real clients (cast, alloy providers, a websocket client), and collect flashblocks.

pub mod anvil_chain;
pub mod counting;
pub mod relay;
pub mod upstream;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_network::TxSignerSync;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_provider::{Provider, ProviderBuilder, RootProvider};
use alloy_signer_local::PrivateKeySigner;
use futures::StreamExt;
use op_alloy_rpc_types_engine::flashblock::OpFlashblockPayload;
use std::{
    io::Read,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub mod schema;

/// Runtime code of the cold reader: reads `count` storage slots from slot `start` (calldata
/// words 0 and 1) and stores their sum in slot 0. Hand-assembled: PUSH1 0 CALLDATALOAD, PUSH1
/// 0x20 CALLDATALOAD, PUSH1 0, then a loop (JUMPDEST at 0x08) of DUP3 SLOAD ADD while the count
/// is not zero, and SSTORE at 0x1f. Every slot it reads is cold for a node that never saw the
/// contract used: the storage-heavy load of #24's tests and `bench/run.sh cold-state`.
pub const COLD_READER_RUNTIME: &str =
    "60003560203560005b8115601f5782540191600101919060019003906008565b60005500";

/// Creation code returning [`COLD_READER_RUNTIME`] (36 bytes).
pub fn cold_reader_initcode() -> Bytes {
    cold_reader_initcode_with(&[])
}

/// Creation code that first writes `value` into each `slot` of `written` (PUSH1 value PUSH2
/// slot SSTORE, 6 bytes each), then returns [`COLD_READER_RUNTIME`] (CODECOPY from just after
/// the writes).
pub fn cold_reader_initcode_with(written: &[(u16, u8)]) -> Bytes {
    let mut code = String::from("0x");
    for (slot, value) in written {
        code.push_str(&format!("60{value:02x}61{slot:04x}55"));
    }
    let offset = 12 + 6 * written.len();
    assert!(offset <= 0xff, "at most 40 written slots");
    code.push_str(&format!("602460{offset:02x}60003960246000f3{COLD_READER_RUNTIME}"));
    code.parse().expect("hex")
}

/// Deploys the cold reader with `key` at nonce 0 through `rpc` and waits (up to 20 s) for its
/// receipt there; returns its address.
pub async fn deploy_cold_reader(rpc: &str, key: &str) -> Address {
    deploy_cold_reader_with(rpc, key, &[]).await
}

/// [`deploy_cold_reader`] with the slots of `written` holding their values
/// ([`cold_reader_initcode_with`]).
pub async fn deploy_cold_reader_with(rpc: &str, key: &str, written: &[(u16, u8)]) -> Address {
    let raw = sign_1559(
        key,
        901,
        0,
        TxKind::Create,
        U256::ZERO,
        cold_reader_initcode_with(written),
        200_000 + 23_000 * written.len() as u64,
        100_000_000_000,
    );
    let sent = raw_rpc(rpc, "eth_sendRawTransaction", serde_json::json!([raw])).await;
    let hash = sent["result"].clone();
    assert!(hash.is_string(), "the cold reader's deploy was refused: {sent}");
    let sealed = eventually(Duration::from_secs(20), || async {
        !raw_rpc(rpc, "eth_getTransactionReceipt", serde_json::json!([hash])).await["result"]
            .is_null()
    })
    .await;
    assert!(sealed, "the cold reader's deploy has a receipt");
    address_of(key).create(0)
}

/// Whether the node at `rpc` reports `mode` (`flashblocks`, `fallback`) within `within`.
pub async fn mode_becomes(rpc: &str, mode: &str, within: Duration) -> bool {
    eventually(within, || async { status(rpc).await["mode"] == mode }).await
}

/// Calldata for the cold reader: read `count` slots from `start`.
pub fn read_slots(start: u64, count: u64) -> Bytes {
    let mut data = U256::from(start).to_be_bytes::<32>().to_vec();
    data.extend_from_slice(&U256::from(count).to_be_bytes::<32>());
    data.into()
}

/// The dev keys of the `test … junk` mnemonic, as anvil prints them.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Creation code of `tests/contracts/Token.sol` (constructor takes the supply).
pub const TOKEN_BIN: &str = include_str!("../contracts/Token.bin");
/// Creation code of `tests/contracts/Probe.sol`.
pub const PROBE_BIN: &str = include_str!("../contracts/Probe.bin");

alloy_sol_types::sol! {
    /// The test token's ABI.
    interface IToken {
        function balanceOf(address) external view returns (uint256);
        function transfer(address to, uint256 value) external returns (bool);
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
    /// The probe contract's ABI.
    interface IProbe {
        function env() external view returns (uint256 number, uint256 timestamp, uint256 basefee, address coinbase);
        function ping(uint256 value) external returns (uint256);
        function fail() external pure;
        function burn(uint256 rounds) external returns (uint256 acc);
        function counter() external view returns (uint256);
        event Ping(address indexed from, uint256 indexed seq, uint256 value);
    }
}

/// The `flashnode` binary under test: `$FLASHNODE_BIN`, else the workspace's debug build.
pub fn flashnode_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FLASHNODE_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/flashnode")
}

/// A tool installed by `scripts/install-test-tools.sh`: `$env` if set, else `tools/bin/<name>`,
/// else `<name>` on the PATH.
fn tool_bin(env: &str, name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/bin").join(name);
    if local.exists() {
        local
    } else {
        PathBuf::from(name)
    }
}

/// `cast`.
pub fn cast_bin() -> PathBuf {
    tool_bin("FLASHNODE_CAST", "cast")
}

/// `anvil`.
pub fn anvil_bin() -> PathBuf {
    tool_bin("FLASHNODE_ANVIL", "anvil")
}

/// A TCP port on 127.0.0.1 that is free and reserved for this test process until it exits.
///
/// Binding port 0 and closing the listener is racy: the kernel may hand the same port to
/// another test's `bind(0)` or to an outgoing connection's source port before our child binds
/// it (CI once saw "Address already in use" that way). So the port comes from below the
/// kernel's ephemeral range, which it never assigns on its own, and is reserved across
/// concurrent test processes with an advisory lock on a file named after it, held open for
/// the rest of this process's life (the kernel drops the lock when it exits).
pub fn free_port() -> u16 {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let Some((lo, hi)) = reservable_ports() else {
        return kernel_port();
    };
    let span = u32::from(hi - lo);
    let start = std::process::id().wrapping_mul(7919) % span;
    let dir = std::env::temp_dir().join("flashnode-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return kernel_port();
    }
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = lo + offset as u16;
        let Some(lock) = lock_port_file(&dir, port) else { continue };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            return port;
        }
    }
    kernel_port()
}

/// Ports below the kernel's ephemeral range (`ip_local_port_range`), from 10000 up.
fn reservable_ports() -> Option<(u16, u16)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_lo: u16 = range.split_whitespace().next()?.parse().ok()?;
    (ephemeral_lo > 12_000).then_some((10_000, ephemeral_lo))
}

/// An exclusive, non-blocking `flock` on `<dir>/<port>`: `None` if another test holds it.
fn lock_port_file(dir: &std::path::Path, port: u16) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .ok()?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(file)
}

/// A port the kernel says is free now (the racy fallback).
fn kernel_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `flashnode` run under a soft and hard `RLIMIT_NOFILE`, killed on drop; its log is printed
/// when the test failed.
pub struct NofileProc {
    child: Child,
    log: PathBuf,
}

impl NofileProc {
    /// Spawns `flashnode` with `args` under an `RLIMIT_NOFILE` of `nofile`.
    pub fn spawn(args: &[String], nofile: u64) -> Self {
        use std::os::unix::process::CommandExt;
        let log = std::env::temp_dir().join(format!(
            "flashnode-test-nofile-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(flashnode_bin());
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self { child: cmd.spawn().expect("flashnode starts"), log }
    }

    /// `flashnode dev` with its RPC, fan-out and operator endpoint on the given loopback ports,
    /// then `extra`, under an `RLIMIT_NOFILE` of `nofile`.
    pub fn dev(ports: (u16, u16, u16), extra: &[&str], nofile: u64) -> Self {
        let (rpc, fanout, metrics) = ports;
        let mut args: Vec<String> = vec![
            "dev".into(),
            "--rpc-addr".into(),
            format!("127.0.0.1:{rpc}"),
            "--flashblocks-addr".into(),
            format!("127.0.0.1:{fanout}"),
            "--metrics-addr".into(),
            format!("127.0.0.1:{metrics}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(&args, nofile)
    }

    /// What the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NofileProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log_text());
        }
    }
}

/// A child process killed on drop, whose output goes to a log file shown on failure.
pub struct Proc {
    child: Child,
    /// Where stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `flashnode` with `args`.
    pub fn flashnode(args: &[String]) -> Self {
        Self::flashnode_env(args, &[])
    }

    /// Spawns `flashnode` with `args` and the extra environment variables `envs`.
    pub fn flashnode_env(args: &[String], envs: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "flashnode-test-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(flashnode_bin())
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (run scripts/test.sh, which builds it)",
                    flashnode_bin().display()
                )
            });
        Self { child, log }
    }

    /// Spawns `flashnode` with `args` for file-size faults: SIGXFSZ is ignored (so a write past
    /// `RLIMIT_FSIZE` fails with EFBIG instead of killing the process) and its output goes
    /// through a pipe, which the limit does not cover, into the log file written by this
    /// process. See [`Proc::limit_file_size`].
    pub fn flashnode_fsize_faults(args: &[String]) -> Self {
        use std::os::unix::process::CommandExt;
        let log = std::env::temp_dir().join(format!(
            "flashnode-test-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let mut file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(flashnode_bin());
        cmd.args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            // Both streams into one pipe, like the log file of `flashnode`.
            .stdin(Stdio::null());
        let (reader, writer) = std::io::pipe().expect("a pipe");
        cmd.stdout(writer.try_clone().expect("pipe")).stderr(writer);
        // SAFETY: only async-signal-safe calls between fork and exec; an ignored signal stays
        // ignored across exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (run scripts/test.sh, which builds it)",
                flashnode_bin().display()
            )
        });
        drop(cmd); // closes our copies of the pipe's write end: EOF when the child exits
        std::thread::spawn(move || {
            let mut reader = reader;
            let _ = std::io::copy(&mut reader, &mut file);
        });
        Self { child, log }
    }

    /// Lowers the process's `RLIMIT_FSIZE` to `bytes` while it runs (prlimit): from then on
    /// any write or growth of a file past `bytes` fails with EFBIG, as on a full disk. Start
    /// the process with [`Proc::flashnode_fsize_faults`], else SIGXFSZ kills it.
    pub fn limit_file_size(&self, bytes: u64) {
        self.set_file_size_limit(Some(bytes));
    }

    /// Lifts the limit of [`Proc::limit_file_size`] ("space again").
    pub fn lift_file_size_limit(&self) {
        self.set_file_size_limit(None);
    }

    /// Sets the soft RLIMIT_FSIZE (the hard one is kept, so lifting needs no privilege).
    fn set_file_size_limit(&self, bytes: Option<u64>) {
        let pid = self.child.id() as libc::pid_t;
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: prlimit with a null new limit only writes the current one into `old`.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
        assert_eq!(rc, 0, "prlimit(RLIMIT_FSIZE): {}", std::io::Error::last_os_error());
        let limit = libc::rlimit {
            rlim_cur: bytes.unwrap_or(old.rlim_max).min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        // SAFETY: prlimit reads `limit` and writes nothing (old limit pointer is null).
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "prlimit(RLIMIT_FSIZE): {}", std::io::Error::last_os_error());
    }

    /// The output so far.
    pub fn output(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `USR1`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit; its status, or None if still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- flashnode output ({}) ----\n{}", self.log.display(), self.output());
        }
    }
}

/// A running `flashnode devnet` (or `dev`) with its endpoints.
pub struct Running {
    /// The process.
    pub proc: Proc,
    /// Canonical RPC URL (http).
    pub rpc: String,
    /// Flashblock websocket URL: the devnet's source for `devnet`, the node's fan-out for
    /// `dev` and `node`.
    pub ws: String,
}

impl Running {
    /// An alloy provider on the RPC.
    pub fn provider(&self) -> RootProvider {
        ProviderBuilder::default().connect_http(self.rpc.parse().expect("valid url"))
    }
}

/// Starts `flashnode <sub>` on free ports with `extra` flags and waits until the RPC answers.
pub async fn start(sub: &str, extra: &[&str]) -> Running {
    start_env(sub, extra, &[]).await
}

/// [`start`] with the extra environment variables `envs`.
pub async fn start_env(sub: &str, extra: &[&str], envs: &[(&str, &str)]) -> Running {
    let (rpc_port, ws_port) = (free_port(), free_port());
    let mut args = vec![
        sub.to_string(),
        "--rpc-addr".into(),
        format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr".into(),
        format!("127.0.0.1:{ws_port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proc = Proc::flashnode_env(&args, envs);
    let running = Running {
        proc,
        rpc: format!("http://127.0.0.1:{rpc_port}"),
        ws: format!("ws://127.0.0.1:{ws_port}/ws"),
    };
    let provider = running.provider();
    for _ in 0..200 {
        if provider.get_chain_id().await.is_ok() {
            // `dev` is ready once its node serves preconfirmations (it joined mid-block, so it
            // waits for the next index 0).
            if sub == "dev" {
                let ready = eventually(Duration::from_secs(10), || async {
                    status(&running.rpc).await["mode"] == "flashblocks"
                })
                .await;
                assert!(
                    ready,
                    "flashnode dev never served flashblocks:\n{}",
                    running.proc.output()
                );
            }
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("flashnode {sub} did not answer on {}:\n{}", running.rpc, running.proc.output());
}

/// A flashblock as it came over the wire.
#[derive(Debug, Clone)]
pub struct Received {
    /// Typed payload.
    pub payload: OpFlashblockPayload,
    /// The JSON as received (after brotli, if any).
    pub json: serde_json::Value,
    /// Whether it came in a Binary (brotli) frame.
    pub binary: bool,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// Decodes one frame: JSON text, or brotli when the first byte is not `{`.
pub fn decode_frame(bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'{') {
        return Ok(serde_json::from_slice(bytes)?);
    }
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out)?;
    Ok(serde_json::from_slice(&out)?)
}

/// Connects to a flashblock websocket and forwards every flashblock.
pub async fn collect_flashblocks(url: &str) -> mpsc::Receiver<Received> {
    let (ws, _) =
        tokio_tungstenite::connect_async(url).await.expect("flashblock websocket connects");
    let (tx, rx) = mpsc::channel(100_000);
    tokio::spawn(async move {
        let (_, mut read) = ws.split();
        while let Some(Ok(msg)) = read.next().await {
            let (bytes, binary) = match msg {
                Message::Text(t) => (t.as_bytes().to_vec(), false),
                Message::Binary(b) => (b.to_vec(), true),
                _ => continue,
            };
            let json = decode_frame(&bytes).expect("every frame decodes");
            let payload: OpFlashblockPayload =
                serde_json::from_value(json.clone()).expect("every frame is a flashblock");
            if tx
                .send(Received { payload, json, binary, at: std::time::Instant::now() })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Receives the next flashblock within `timeout`.
pub async fn next_flashblock(rx: &mut mpsc::Receiver<Received>, timeout: Duration) -> Received {
    tokio::time::timeout(timeout, rx.recv())
        .await
        .expect("a flashblock within the timeout")
        .expect("the flashblock stream stays open")
}

/// Runs `cast` with `args`, returning stdout; panics with stderr on failure.
pub fn cast(args: &[&str]) -> String {
    let out = Command::new(cast_bin())
        .args(args)
        .output()
        .expect("cast runs (scripts/install-test-tools.sh installs it)");
    assert!(
        out.status.success(),
        "cast {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Signs an EIP-1559 transaction with a dev key.
#[allow(clippy::too_many_arguments)]
pub fn sign_1559(
    key: &str,
    chain_id: u64,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas_limit: u64,
    max_fee: u128,
) -> Bytes {
    let signer: PrivateKeySigner = key.parse().expect("valid key");
    let mut tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: 1_000_000,
        to,
        value,
        access_list: Default::default(),
        input,
    };
    let sig = signer.sign_transaction_sync(&mut tx).expect("signing works");
    TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into()
}
/// Keeps every flashblock of the next `rounds` × 50 ms busy: each round sends a transfer from
/// every dev key (nonce `round`) through `rpc`.
pub fn keep_flashblocks_busy(rpc: String, rounds: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for round in 0..rounds {
            for key in DEV_KEYS {
                let raw = sign_1559(
                    key,
                    901,
                    round,
                    TxKind::Call(Address::repeat_byte(9)),
                    U256::from(1),
                    Bytes::new(),
                    21_000,
                    10_000_000_000,
                );
                raw_rpc(&rpc, "eth_sendRawTransaction", serde_json::json!([raw])).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// What [`tail_reorg`] saw.
pub struct TailReorg {
    /// The block that sealed without its last flashblock's transactions.
    pub block: u64,
    /// Those transactions.
    pub dropped: Vec<alloy_primitives::B256>,
    /// Whether the node served one of them before the seal.
    pub preconfirmed: bool,
}

/// Waits for the start of a block on `fbs` (the devnet's stream; `each` sees those frames),
/// arms the devnet's tail-reorg fault, keeps every flashblock busy and follows the stream until
/// a block seals without its last flashblock's (index 10) transactions. For each block, one of
/// those receipts is polled on the node for 250 ms (`served(receipt, block)`: it is the
/// preconfirmed one), then `sealed(block)` must hold within 3 s before the sealed block is
/// compared with the flashblock.
pub async fn tail_reorg(
    devnet_rpc: &str,
    node_rpc: &str,
    fbs: &mut mpsc::Receiver<Received>,
    each: impl Fn(&Received),
    served: impl Fn(&serde_json::Value, u64) -> bool,
    sealed: impl AsyncFn(u64) -> bool,
) -> TailReorg {
    use alloy_primitives::B256;
    loop {
        let fb = next_flashblock(fbs, Duration::from_secs(5)).await;
        each(&fb);
        if fb.payload.index == 0 {
            break;
        }
    }
    raw_rpc(devnet_rpc, "devnet_injectTailReorg", serde_json::json!([])).await;
    // Keep every flashblock of the next ~1.5 s busy, so the last one has txs.
    let sender = keep_flashblocks_busy(node_rpc.to_string(), 30);
    let mut seen = TailReorg { block: 0, dropped: Vec::new(), preconfirmed: false };
    for _ in 0..60 {
        let fb = next_flashblock(fbs, Duration::from_secs(5)).await;
        if fb.payload.index != 10 || fb.payload.metadata.receipts.is_empty() {
            continue;
        }
        let number = fb.payload.metadata.block_number;
        let last_txs: Vec<B256> = fb.payload.metadata.receipts.keys().copied().collect();
        // During the sealing delay the node serves the last flashblock's receipts.
        let probe = last_txs[0];
        seen.preconfirmed |= eventually(Duration::from_millis(250), || async {
            let r =
                raw_rpc(node_rpc, "eth_getTransactionReceipt", serde_json::json!([probe])).await;
            !r["result"].is_null() && served(&r["result"], number)
        })
        .await;
        assert!(
            eventually(Duration::from_secs(3), || sealed(number)).await,
            "the node has block {number}"
        );
        let block = raw_rpc(
            node_rpc,
            "eth_getBlockByNumber",
            serde_json::json!([format!("0x{number:x}"), false]),
        )
        .await["result"]
            .clone();
        let sealed_txs: Vec<B256> =
            serde_json::from_value(block["transactions"].clone()).expect("the sealed block's txs");
        let missing: Vec<B256> = last_txs.into_iter().filter(|h| !sealed_txs.contains(h)).collect();
        if !missing.is_empty() {
            seen.dropped = missing;
            seen.block = number;
            break;
        }
    }
    sender.await.expect("the tx sender");
    seen
}

/// A call that stays in flight for 8 s (an `eth_sendRawTransactionSync` whose nonce gap keeps
/// the transaction out of every block), so a graceful shutdown's drain is held open while a
/// test watches it. Its answer (result or error) comes out of the handle.
pub async fn call_held_in_flight(rpc: &str) -> tokio::task::JoinHandle<serde_json::Value> {
    let gap = sign_1559(
        DEV_KEYS[7],
        901,
        5,
        TxKind::Call(address_of(DEV_KEYS[8])),
        U256::from(1),
        Bytes::new(),
        21_000,
        10_000_000_000,
    );
    let rpc = rpc.to_string();
    let call = tokio::spawn(async move {
        raw_rpc(&rpc, "eth_sendRawTransactionSync", serde_json::json!([gap, 8000])).await
    });
    // Long enough for the request to reach the node.
    tokio::time::sleep(Duration::from_millis(500)).await;
    call
}

/// The address of a dev key.
pub fn address_of(key: &str) -> Address {
    key.parse::<PrivateKeySigner>().expect("valid key").address()
}

/// Sends a raw JSON-RPC request and returns the whole response object (result or error).
pub async fn raw_rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let url = url.strip_prefix("http://").expect("http url");
    let (host, path) =
        url.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((url, "/".into()));
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("rpc reachable");
    stream.write_all(req.as_bytes()).await.expect("request written");
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).await.expect("response read");
    let text = String::from_utf8_lossy(&resp);
    let (_, body) = text.split_once("\r\n\r\n").expect("http response");
    // jsonrpsee answers with a plain body (no chunking) for small responses.
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("bad json-rpc body {body:?}: {e}"))
}

/// `flashnode_status` of a node.
pub async fn status(rpc: &str) -> serde_json::Value {
    raw_rpc(rpc, "flashnode_status", serde_json::json!([])).await["result"].clone()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts `flashnode node` against a flashblock URL and an upstream RPC.
pub async fn start_node(flashblocks_url: &str, upstream: &str, extra: &[&str]) -> Running {
    let (rpc_port, fanout_port) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "node".into(),
        "--flashblocks-url".into(),
        flashblocks_url.into(),
        "--upstream-rpc".into(),
        upstream.into(),
        "--rpc-addr".into(),
        format!("127.0.0.1:{rpc_port}"),
        "--flashblocks-addr".into(),
        format!("127.0.0.1:{fanout_port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proc = Proc::flashnode(&args);
    let running = Running {
        proc,
        rpc: format!("http://127.0.0.1:{rpc_port}"),
        ws: format!("ws://127.0.0.1:{fanout_port}/ws"),
    };
    let provider = running.provider();
    for _ in 0..200 {
        if provider.get_chain_id().await.is_ok() {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("flashnode node did not answer on {}:\n{}", running.rpc, running.proc.output());
}

/// Starts `flashnode node` as [`start_node`] does, with `--metrics-addr` on a free loopback
/// port; returns the node and that address (`/metrics`, `/readyz`).
pub async fn start_node_with_metrics(
    flashblocks_url: &str,
    upstream: &str,
    extra: &[&str],
) -> (Running, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--metrics-addr", metrics.as_str()];
    args.extend_from_slice(extra);
    (start_node(flashblocks_url, upstream, &args).await, metrics)
}

/// The status of a websocket handshake to `request` (a URL or a built request): 101 when it
/// upgrades, else the HTTP status of the refusal; panics on any other error.
pub async fn handshake_status<R>(request: R) -> u16
where
    R: tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
{
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error {e}"),
    }
}

/// Fetches a Prometheus text page.
pub async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint reachable");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("request written");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("response read");
    let text = String::from_utf8_lossy(&out).to_string();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(text)
}

/// Sum of the samples of `name` whose label set contains every `labels` pair.
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, label_part) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| label_part.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A raw JSON-RPC websocket client for subscriptions.
pub struct WsRpc {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    /// Notifications read while waiting for a response.
    backlog: std::collections::VecDeque<serde_json::Value>,
}

impl WsRpc {
    /// Connects to `http://` or `ws://` RPC URL (same port serves both).
    pub async fn connect(url: &str) -> WsRpc {
        let url = url.replace("http://", "ws://");
        let (ws, _) =
            tokio_tungstenite::connect_async(url.as_str()).await.expect("rpc websocket connects");
        WsRpc { ws, next_id: 1, backlog: Default::default() }
    }

    /// Sends a request and waits for its response (notifications meanwhile are kept).
    pub async fn request(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use futures::SinkExt;
        let id = self.next_id;
        self.next_id += 1;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws.send(Message::Text(body.to_string().into())).await.expect("request sent");
        loop {
            let v = self.read(Duration::from_secs(10)).await.expect("a response");
            if v["id"] == id {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    /// Subscribes; returns the subscription id.
    pub async fn subscribe(&mut self, params: serde_json::Value) -> String {
        let r = self.request("eth_subscribe", params).await;
        r["result"].as_str().unwrap_or_else(|| panic!("subscribed: {r}")).to_string()
    }

    async fn read(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        loop {
            let msg = tokio::time::timeout(timeout, self.ws.next()).await.ok()??.ok()?;
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).ok();
            }
        }
    }

    /// The next notification: (subscription id, result).
    pub async fn notification(&mut self, timeout: Duration) -> Option<(String, serde_json::Value)> {
        let v = match self.backlog.pop_front() {
            Some(v) => v,
            None => self.read(timeout).await?,
        };
        let sub = v["params"]["subscription"].as_str()?.to_string();
        Some((sub, v["params"]["result"].clone()))
    }
}

/// A running anvil in OP mode, killed on drop.
pub struct Anvil {
    child: Child,
    /// HTTP URL.
    pub url: String,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    /// Starts `anvil --network optimism --hardfork isthmus` with manual mining and FIFO order.
    pub async fn start(chain_id: u64) -> Anvil {
        let port = free_port();
        let child = Command::new(anvil_bin())
            .args([
                "--network",
                "optimism",
                "--hardfork",
                "isthmus",
                "--no-mining",
                "--order",
                "fifo",
            ])
            .args([
                "--chain-id",
                &chain_id.to_string(),
                "--port",
                &port.to_string(),
                "--host",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil runs (scripts/install-test-tools.sh installs it)");
        let anvil = Anvil { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..200 {
            if raw_rpc_try(&anvil.url, "eth_chainId").await {
                return anvil;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("anvil did not start");
    }
}

async fn raw_rpc_try(url: &str, method: &str) -> bool {
    let host = url.trim_start_matches("http://").to_string();
    let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(host))
            .await
    else {
        return false;
    };
    raw_rpc(url, method, serde_json::json!([])).await.get("result").is_some()
}

/// A scripted flashblock source: every frame handed to [`FlashblockSource::send`] goes to every
/// connected client as a Text frame.
pub struct FlashblockSource {
    /// ws:// URL.
    pub url: String,
    tx: tokio::sync::broadcast::Sender<String>,
}

impl FlashblockSource {
    /// Listens on a free loopback port.
    pub async fn start() -> FlashblockSource {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, _) = tokio::sync::broadcast::channel::<String>(1024);
        let tx2 = tx.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mut rx = tx2.subscribe();
                tokio::spawn(async move {
                    use futures::SinkExt;
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                    let (mut sink, mut source) = ws.split();
                    loop {
                        tokio::select! {
                            m = source.next() => match m {
                                Some(Ok(Message::Ping(p))) => { let _ = sink.send(Message::Pong(p)).await; }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                            f = rx.recv() => match f {
                                Ok(f) => if sink.send(Message::Text(f.into())).await.is_err() { return },
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(_) => return,
                            },
                        }
                    }
                });
            }
        });
        FlashblockSource { url: format!("ws://{addr}/ws"), tx }
    }

    /// Sends a frame to every client.
    pub fn send(&self, frame: String) {
        let _ = self.tx.send(frame);
    }
}

/// A plain HTTP GET on loopback: (status code, body). Panics when the endpoint does not
/// answer; [`try_get`] for one that may be gone.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_get(addr, path).await.unwrap_or_else(|| panic!("GET {path} on {addr} answered"))
}

/// A plain HTTP GET on loopback: `None` once the endpoint is gone (the process is exiting) or
/// does not answer within 2 s.
pub async fn try_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut out)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n")?.1.to_string()))
}

/// A hex quantity as a number; 0 when it is missing or not hex.
pub fn quantity(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
}

/// (number, hash, timestamp) of the latest block at `url`.
pub async fn latest_block(url: &str) -> (u64, alloy_primitives::B256, u64) {
    let b = raw_rpc(url, "eth_getBlockByNumber", serde_json::json!(["latest", false])).await
        ["result"]
        .clone();
    (
        quantity(&b["number"]),
        b["hash"].as_str().expect("a block hash").parse().expect("a 32-byte hash"),
        quantity(&b["timestamp"]),
    )
}

/// Flashblock `index` of block `number` under payload id `[id; 8]`, as JSON text, carrying
/// `txs`; index 0 carries the base (on `parent`, at `timestamp`, 30 M gas, 1 gwei base fee).
pub fn flashblock_frame(
    number: u64,
    index: u64,
    parent: alloy_primitives::B256,
    timestamp: u64,
    id: u8,
    txs: Vec<Bytes>,
) -> String {
    use op_alloy_rpc_types_engine::flashblock::{
        OpFlashblockPayloadBase, OpFlashblockPayloadDelta, OpFlashblockPayloadMetadata,
    };
    let fb = OpFlashblockPayload {
        payload_id: alloy_rpc_types_engine::PayloadId::new([id; 8]),
        index,
        base: (index == 0).then(|| OpFlashblockPayloadBase {
            parent_hash: parent,
            fee_recipient: Address::repeat_byte(0xcb),
            block_number: number,
            gas_limit: 30_000_000,
            timestamp,
            base_fee_per_gas: U256::from(1_000_000_000u64),
            ..Default::default()
        }),
        diff: OpFlashblockPayloadDelta {
            block_hash: alloy_primitives::B256::repeat_byte(id),
            transactions: txs,
            ..Default::default()
        },
        metadata: OpFlashblockPayloadMetadata { block_number: number, ..Default::default() },
    };
    serde_json::to_string(&fb).expect("a flashblock serializes")
}

/// Whether `next` directly follows `prev` in a flashblock stream, both (block, index): the
/// next index of the same block, or a later block's index 0.
pub fn follows(prev: (u64, u64), next: (u64, u64)) -> bool {
    next == (prev.0, prev.1 + 1) || (next.0 > prev.0 && next.1 == 0)
}

/// Deploys the probe contract ([`PROBE_BIN`]) through `rpc` with `key`; `cast send` waits for
/// the receipt (a preconfirmed one on a node). Returns the contract's address.
pub fn deploy_probe(rpc: &str, key: &str) -> Address {
    let out = deploy_probe_receipt(rpc, key);
    out["contractAddress"].as_str().expect("a contract address").parse().expect("an address")
}

/// [`deploy_probe`]'s receipt, as `cast send --json` prints it.
pub fn deploy_probe_receipt(rpc: &str, key: &str) -> serde_json::Value {
    let args = ["send", "--json", "--rpc-url", rpc, "--private-key", key, "--create"];
    let mut args = args.to_vec();
    args.push(PROBE_BIN.trim());
    serde_json::from_str(&cast(&args)).expect("cast send --json prints the receipt")
}

/// Sends `ping(value)` to the probe at `probe` through `rpc` with `key`, without waiting for
/// the receipt (`cast send --async`). Returns the transaction's hash.
pub fn ping_async(rpc: &str, key: &str, probe: Address, value: &str) -> alloy_primitives::B256 {
    cast(&[
        "send",
        "--async",
        "--rpc-url",
        rpc,
        "--private-key",
        key,
        &probe.to_string(),
        "ping(uint256)",
        value,
    ])
    .parse()
    .expect("cast send --async prints the hash")
}

/// Waits (5 s a frame) for a flashblock whose index is in `early` (a block's start) on `fbs`,
/// then drops what queued up meanwhile so the next wait is fresh.
pub async fn wait_for_early_flashblock(
    fbs: &mut mpsc::Receiver<Received>,
    early: std::ops::RangeInclusive<u64>,
) {
    loop {
        let fb = next_flashblock(fbs, Duration::from_secs(5)).await;
        if early.contains(&fb.payload.index) {
            while fbs.try_recv().is_ok() {}
            return;
        }
    }
}

/// Whether the /readyz at `metrics` answers `code` within `within`.
pub async fn readyz_becomes(metrics: &str, code: u16, within: Duration) -> bool {
    eventually(within, || async { http_get(metrics, "/readyz").await.0 == code }).await
}

/// Sends a transaction carrying 6 KB of calldata from each of the first five dev keys every
/// 60 ms, 40 rounds (nonces 0 to 39), through `rpc`: flashblocks of ~60 KB each, enough to
/// fill a slow subscriber's socket quickly.
pub fn load_big_flashblocks(rpc: String) -> tokio::task::JoinHandle<()> {
    let data = Bytes::from(vec![0xee; 6_000]);
    tokio::spawn(async move {
        for nonce in 0..40u64 {
            for key in &DEV_KEYS[..5] {
                let raw = sign_1559(
                    key,
                    901,
                    nonce,
                    TxKind::Call(Address::repeat_byte(3)),
                    U256::ZERO,
                    data.clone(),
                    300_000,
                    10_000_000_000,
                );
                raw_rpc(&rpc, "eth_sendRawTransaction", serde_json::json!([raw])).await;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    })
}

/// A devnet (`flashnode devnet`, 1 s blocks, 100 ms flashblocks) behind an
/// [`upstream::UpstreamProxy`], and a node that follows the devnet's stream and reads its
/// upstream through the proxy (so a test can take the upstream down, slow it or fail it).
pub struct ProxiedNode {
    /// The node (dropped first).
    pub node: Running,
    /// The node's metrics address (`/metrics`, `/readyz`).
    pub metrics: String,
    /// The proxy between the node and the devnet's RPC.
    pub proxy: upstream::UpstreamProxy,
    /// The devnet.
    pub devnet: Running,
}

impl ProxiedNode {
    /// Starts the three, the node with `--canonical-stale-after canonical_stale_after` and
    /// `--upstream-timeout 1s`; returns once the node's /readyz answers 200 (panics if it does
    /// not within 5 s).
    pub async fn start(canonical_stale_after: &str) -> ProxiedNode {
        let devnet =
            start("devnet", &["--block-time", "1s", "--flashblock-interval", "100ms"]).await;
        let proxy = upstream::UpstreamProxy::start(&devnet.rpc).await;
        let (node, metrics) = start_node_with_metrics(
            &devnet.ws,
            &proxy.url,
            &["--canonical-stale-after", canonical_stale_after, "--upstream-timeout", "1s"],
        )
        .await;
        assert!(readyz_becomes(&metrics, 200, Duration::from_secs(5)).await, "ready at start");
        ProxiedNode { node, metrics, proxy, devnet }
    }
}
