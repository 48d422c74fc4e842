//! The fan-out floor: the least any server can do to deliver a flashblock to N websocket
//! subscribers on this machine. A relay process reads the devnet's source websocket and writes
//! each frame, framed once, with one blocking `write` per subscriber socket from one thread: no
//! execution, no per-client task, no per-client copy, no pings, no limits.
//!
//! `flashnode-bench fanout --floor` measures it with the same subscribers, transaction load and
//! statistics as the node, so the node's figures can be read against what the kernel's loopback
//! TCP path costs per delivery (the floor for any implementation on the same cores).

use anyhow::Context;
use flashnode_fanout::encode_brotli;
use flashnode_overlay::decode_frame;
use serde_json::Value;
use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_tungstenite::tungstenite::{
    self,
    protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    },
    Message,
};

/// `fanout-floor-relay` flags (started by `fanout --floor`, not meant to be run by hand).
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// The devnet's source websocket.
    #[arg(long)]
    pub source: String,
    /// Where subscribers connect (`/ws`).
    #[arg(long)]
    pub listen: String,
    /// Kernel send buffer per subscriber socket, as the node's fan-out sets it.
    #[arg(long, default_value_t = 256 * 1024)]
    pub socket_send_buffer: usize,
    /// Send each frame brotli-compressed (once) as a Binary frame, as the node does for
    /// `?compress=brotli` subscribers.
    #[arg(long)]
    pub brotli: bool,
}

/// Runs the relay until its source closes.
pub fn relay(args: RelayArgs) -> anyhow::Result<Value> {
    let listener =
        TcpListener::bind(&args.listen).with_context(|| format!("bind {}", args.listen))?;
    let clients: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    {
        let clients = clients.clone();
        let sndbuf = args.socket_send_buffer;
        std::thread::Builder::new().name("floor-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(sndbuf);
                // Handshake over a borrow so the plain socket is kept for the raw writes.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if tungstenite::accept(&mut stream).is_ok() {
                    let _ = stream.set_read_timeout(None);
                    if let Ok(mut c) = clients.lock() {
                        c.push(stream);
                    }
                }
            }
        })?;
    }
    let (mut source, _) = tungstenite::connect(args.source.as_str())
        .with_context(|| format!("connect {}", args.source))?;
    let mut relayed = 0u64;
    loop {
        let json = match source.read() {
            Ok(Message::Text(t)) => t.as_bytes().to_vec(),
            Ok(Message::Binary(b)) => match decode_frame(&b, 16 << 20) {
                Ok(f) => f.raw_json.as_bytes().to_vec(),
                Err(_) => continue,
            },
            Ok(_) => continue,
            Err(_) => break,
        };
        let (payload, opcode) =
            if args.brotli { (encode_brotli(&json), Data::Binary) } else { (json, Data::Text) };
        let mut wire = Vec::with_capacity(payload.len() + 14);
        Frame::message(payload, OpCode::Data(opcode), true).format(&mut wire)?;
        let Ok(mut c) = clients.lock() else { break };
        c.retain_mut(|s| s.write_all(&wire).is_ok());
        relayed += 1;
    }
    Ok(serde_json::json!({ "scenario": "fanout-floor-relay", "relayed": relayed }))
}

/// The relay process started for one floor run.
pub struct FloorRelay {
    child: std::process::Child,
    /// host:port subscribers connect to.
    pub addr: String,
}

impl FloorRelay {
    /// Starts this binary as a relay of `source` on a free loopback port (brotli frames if asked).
    pub fn start(source: &str, brotli: bool) -> anyhow::Result<Self> {
        let addr = format!("127.0.0.1:{}", flashnode_tests::free_port());
        let mut args = vec!["fanout-floor-relay", "--source", source, "--listen", &addr];
        if brotli {
            args.push("--brotli");
        }
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("start the floor relay")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the floor relay did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, addr })
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FloorRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
