//! `flashnode status --rpc URL`: the node's mode, tip, flashblock index, stream lag and
//! counters, redrawn in place on a terminal (one line per sample otherwise).

use crate::cli::StatusArgs;
use anyhow::Context;
use jsonrpsee::{core::client::ClientT, http_client::HttpClientBuilder, rpc_params};
use serde_json::Value;
use std::io::{IsTerminal, Write};

fn field(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One status line.
pub fn render(v: &Value) -> String {
    format!(
        "mode={} health={} tip={} pending={} index={} lag={}ms stream={} applied={} reconnects={} malformed={} gaps={} reorgs={} stale={} ahead={} unknown_parent={} other_chain={} diverged={}{}",
        field(v, "mode"),
        field(v, "health"),
        field(v, "canonicalTip"),
        field(v, "pendingBlock"),
        field(v, "flashblockIndex"),
        field(v, "streamLagMs"),
        if v["streamConnected"] == true { "up" } else { "down" },
        field(v, "applied"),
        field(v, "reconnects"),
        field(v, "malformed"),
        field(v, "gaps"),
        field(v, "reorgs"),
        field(&v["rejected"], "stale"),
        field(&v["rejected"], "ahead"),
        field(&v["rejected"], "unknownParent"),
        field(&v["rejected"], "otherChain"),
        field(&v["rejected"], "diverged"),
        match &v["reason"] {
            Value::String(r) => format!(" reason=\"{r}\""),
            _ => String::new(),
        },
    )
}

/// Polls `flashnode_status` and prints it.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = HttpClientBuilder::default()
        .request_timeout(std::time::Duration::from_secs(5))
        .build(&args.rpc)
        .with_context(|| format!("bad RPC URL {}", args.rpc))?;
    let tty = std::io::stdout().is_terminal();
    let mut n = 0u64;
    loop {
        let line = match client.request::<Value, _>("flashnode_status", rpc_params![]).await {
            Ok(v) => render(&v),
            Err(e) => format!("unreachable: {e}"),
        };
        let mut out = std::io::stdout().lock();
        if tty {
            // Carriage return and clear-line: the display redraws in place.
            write!(out, "\r\x1b[2K{line}")?;
        } else {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            if tty {
                writeln!(out)?;
            }
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
    }
}
