//! A fault-injecting websocket relay between a flashblock source and a consumer: forwards
//! frames as they are and, on command, duplicates, drops, corrupts, goes silent or dies.

use futures::{SinkExt, StreamExt};
use std::{io::Write, time::Duration};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::tungstenite::Message;

/// A fault to inject into the relayed stream.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Send the last frame again.
    Duplicate,
    /// Drop the next frame whose index is not 0.
    Gap,
    /// Send a Text frame that is not JSON.
    MalformedJson,
    /// Send half of the brotli compression of the last frame as a Binary frame.
    TruncatedBrotli,
    /// Send a Binary frame of this many bytes.
    Oversized(usize),
    /// Send the last frame as index 3 of a block five numbers ahead, without base.
    NewBlockNonZeroIndex,
    /// Send the next index of the current block under another payload id.
    WrongPayloadId,
    /// Send the last index 0 again as index 0 of a block this many numbers ahead (base and
    /// metadata agree), under another payload id: a malicious or confused builder.
    IndexZeroAhead(u64),
    /// Stop forwarding and stop reading (no pongs) until the consumer reconnects.
    Silent,
    /// Close the consumer's connection and refuse new ones for this long.
    Kill(Duration),
}

/// A running relay.
pub struct Relay {
    /// ws:// URL consumers connect to.
    pub url: String,
    ctl: mpsc::Sender<Fault>,
}

impl Relay {
    /// Starts a relay of `source` on a free loopback port. One consumer at a time: a new
    /// connection replaces the previous one, and faults apply to the current connection.
    pub async fn start(source: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let (ctl, mut rx) = mpsc::channel::<Fault>(64);
        let source = source.to_string();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut current: Option<mpsc::Sender<Fault>> = None;
            loop {
                let accepted = match listener.as_ref() {
                    Some(l) => tokio::select! {
                        a = l.accept() => Some(a),
                        f = rx.recv() => { match f {
                            Some(Fault::Kill(d)) => {
                                // Dropping the sender ends the connection; dropping the
                                // listener refuses new ones until the restart.
                                current = None;
                                drop(listener.take());
                                tokio::time::sleep(d).await;
                                listener = TcpListener::bind(addr).await.ok();
                            }
                            Some(f) => if let Some(c) = &current { let _ = c.send(f).await; },
                            None => return,
                        }; None }
                    },
                    None => return,
                };
                let Some(Ok((tcp, _))) = accepted else { continue };
                let (tx, conn_rx) = mpsc::channel(64);
                current = Some(tx);
                tokio::spawn(connection(tcp, source.clone(), conn_rx));
            }
        });
        Relay { url: format!("ws://{addr}/ws"), ctl }
    }

    /// Injects a fault.
    pub async fn inject(&self, fault: Fault) {
        self.ctl.send(fault).await.expect("relay running");
    }
}

/// Relays one consumer connection until it closes, the relay replaces it, or a fault ends it.
async fn connection(tcp: tokio::net::TcpStream, source: String, mut rx: mpsc::Receiver<Fault>) {
    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
    let Ok((upstream, _)) = tokio_tungstenite::connect_async(source.as_str()).await else { return };
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut c_tx, mut c_rx) = client.split();
    let mut last: Option<String> = None;
    let mut last_zero: Option<String> = None;
    let mut drop_next_delta = false;
    let mut silent = false;
    loop {
        tokio::select! {
            m = up_rx.next() => {
                let Some(Ok(m)) = m else { return };
                let text = match m {
                    Message::Text(t) => t.to_string(),
                    Message::Ping(p) => { let _ = up_tx.send(Message::Pong(p)).await; continue }
                    _ => continue,
                };
                if silent { continue }
                if drop_next_delta {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if v["index"].as_u64().unwrap_or(0) != 0 { drop_next_delta = false; continue }
                }
                last = Some(text.clone());
                if text.contains("\"base\"") { last_zero = Some(text.clone()); }
                if c_tx.send(Message::Text(text.into())).await.is_err() { return }
            }
            m = c_rx.next(), if !silent => {
                match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
            f = rx.recv() => {
                // The relay replaced or killed this connection.
                let Some(f) = f else { return };
                let out = match f {
                    Fault::Duplicate => last.clone().map(|t| Message::Text(t.into())),
                    Fault::Gap => { drop_next_delta = true; None }
                    Fault::MalformedJson => Some(Message::Text("{\"payload_id\": not json".into())),
                    Fault::TruncatedBrotli => last.clone().map(|t| {
                        let mut out = Vec::new();
                        { let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22); let _ = w.write_all(t.as_bytes()); }
                        out.truncate(out.len() / 2);
                        Message::Binary(out.into())
                    }),
                    Fault::Oversized(n) => Some(Message::Binary(vec![0x8bu8; n].into())),
                    Fault::NewBlockNonZeroIndex => last.clone().map(|t| {
                        let mut v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                        let n = v["metadata"]["block_number"].as_u64().unwrap_or(0) + 5;
                        v["metadata"]["block_number"] = n.into();
                        v["index"] = 3.into();
                        if let Some(o) = v.as_object_mut() { o.remove("base"); }
                        Message::Text(v.to_string().into())
                    }),
                    Fault::WrongPayloadId => last.clone().map(|t| {
                        let mut v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                        v["payload_id"] = "0x0123456789abcdef".into();
                        let i = v["index"].as_u64().unwrap_or(0) + 1;
                        v["index"] = i.into();
                        if let Some(o) = v.as_object_mut() { o.remove("base"); }
                        Message::Text(v.to_string().into())
                    }),
                    Fault::IndexZeroAhead(ahead) => last_zero.clone().map(|t| {
                        let mut v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                        let n = v["metadata"]["block_number"].as_u64().unwrap_or(0).saturating_add(ahead);
                        v["metadata"]["block_number"] = n.into();
                        v["base"]["block_number"] = format!("{n:#x}").into();
                        v["payload_id"] = "0x0badc0ffee0badc0".into();
                        Message::Text(v.to_string().into())
                    }),
                    Fault::Silent => { silent = true; None }
                    Fault::Kill(_) => return,
                };
                if let Some(out) = out {
                    if c_tx.send(out).await.is_err() { return }
                }
            }
        }
    }
}
