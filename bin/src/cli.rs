//! Command-line interface.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::{net::SocketAddr, time::Duration};
use tracing_subscriber::{fmt, EnvFilter};

/// flashnode: flashblock preconfirmations for OP-stack chains.
#[derive(Debug, Parser)]
#[command(name = "flashnode", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded OP devnet and the flashblock-aware node in one process.
    Dev(DevnetArgs),
    /// Run the embedded OP devnet alone: canonical RPC plus the flashblock source websocket.
    Devnet(DevnetArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging flags; per-component levels come from `RUST_LOG`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Pretty, env = "FLASHNODE_LOG_FORMAT")]
    pub format: LogFormat,
}

/// Devnet flags.
#[derive(Debug, Clone, Args)]
pub struct DevnetArgs {
    /// Canonical JSON-RPC listen address (HTTP and WS).
    #[arg(long, default_value = "127.0.0.1:8545", env = "FLASHNODE_RPC_ADDR")]
    pub rpc_addr: SocketAddr,
    /// Flashblock websocket listen address (served on path /ws).
    #[arg(long, default_value = "127.0.0.1:8546", env = "FLASHNODE_FLASHBLOCKS_ADDR")]
    pub flashblocks_addr: SocketAddr,
    /// Chain id.
    #[arg(long, default_value_t = 901, env = "FLASHNODE_CHAIN_ID")]
    pub chain_id: u64,
    /// Block time, e.g. `2s` or `500ms`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Time between flashblocks, e.g. `200ms`.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub flashblock_interval: Duration,
    /// Block gas limit.
    #[arg(long, default_value_t = 30_000_000)]
    pub gas_limit: u64,
    /// Send flashblocks as brotli-compressed Binary frames instead of Text JSON.
    #[arg(long)]
    pub flashblocks_brotli: bool,
}

/// Parses `2s`, `200ms`, `1.5s` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let value: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (try 2s or 200ms)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use ms, s or m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Installs the tracing subscriber: `RUST_LOG` levels (default info), pretty or JSON lines.
pub fn init_tracing(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = match args.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    res.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("150").unwrap(), Duration::from_millis(150));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("abc").is_err());
    }
}
